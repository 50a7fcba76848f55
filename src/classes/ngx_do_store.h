
/*
 * The "store" class: HTTP over one object's key/value storage.  Its calls
 * and replies, which are also do_pass's responses:
 *
 *   GET    ?key=K         200 the value (application/octet-stream) with
 *                         ETag "<version>"; 404 when absent or expired
 *   GET    [?prefix=P&start=S&end=E&reverse=1&limit=N]
 *                         200 {"items": [{"key", "value", "version"}, ...],
 *                         "truncated": bool}, in key order; at most 8 MiB
 *                         of JSON (or its first item), truncated beyond
 *   PUT    ?key=K[&ttl=T], body = the value
 *                         200 {"key", "size"[, "ttl_ms"]} with the new ETag;
 *                         If-Match: "V" | * and If-None-Match: * are
 *                         checked first: 412 when they fail
 *   DELETE ?key=K         200 {"key", "deleted": bool}
 *   DELETE ?all=1         200 {"deleted": "all"}
 *   POST   ?key=K&op=incr[&by=N]
 *                         200 {"key", "value": the new integer}; 409 when
 *                         the value is not an integer or would overflow
 *   POST   {"get": [K, ...], "put": {K: V, ...}, "delete": [K, ...]}
 *                         one atomic batch: 200 {"get": {K: V | null},
 *                         "put": n, "deleted": n} with the new ETag; 128
 *                         entries a member at most, and a body of at most
 *                         128 * (max_value + 3 * max_key + 192) + 1024
 *                         bytes (32 MiB at most)
 *
 * Keys and values that are not UTF-8 appear in JSON as {"base64": "..."}.
 * Errors are {"error": "..."}: 400 (bad arguments), 405, 412, 413 (over
 * max_key= or max_value=; a body longer than its request could store,
 * max_value or a batch's bound, is refused by do_pass before it is read),
 * 414 (a GET of a key over max_key=), 507 (storage full, or a namespace
 * quota: "namespace quota max_bytes exceeded", "... max_objects
 * exceeded").  A ttl= (nginx time syntax;
 * a bare number is seconds) deletes the key when it comes due; a PUT
 * without ttl= removes it, incr and a batch's puts keep it, DELETE and a
 * batch's delete remove it.
 */


#ifndef _NGX_DO_STORE_H_INCLUDED_
#define _NGX_DO_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_do.h"


extern ngx_do_class_t  ngx_do_store_class;


/* the class's own: ngx_do_store_json.c, the JSON written by hand */
#define NGX_DO_STORE_NOT_OBJECT   "body must be a JSON object"
#define NGX_DO_STORE_BAD_MEMBER                                              \
    "a batch has at most three members: get, put and delete"
#define NGX_DO_STORE_BAD_BATCH                                               \
    "get and delete take arrays of at most 128 strings, put an object of "   \
    "at most 128 strings"

ngx_int_t ngx_do_store_json_list(ngx_do_turn_t *t, ngx_do_kv_t *kv,
    ngx_uint_t n, ngx_uint_t truncated, size_t budget);
ngx_int_t ngx_do_store_json_key(ngx_do_turn_t *t, ngx_str_t *key,
    ngx_str_t *rest, uint64_t etag);
const char *ngx_do_store_json_batch_scan(ngx_str_t *body);


#endif /* _NGX_DO_STORE_H_INCLUDED_ */
