
/*
 * The "store" class: HTTP over one object's key/value storage.  Its calls
 * and replies are in ngx_do_store.h.
 *
 * A key PUT with ttl= is deleted by a named alarm "ttl:K" when it comes
 * due, and reads as absent from that moment even if the alarm is a little
 * late.
 *
 * It uses nothing but the public class API (ngx_http_do.h).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_do.h"
#include "ngx_do_store.h"


#define NGX_DO_STORE_LIST_DEFAULT  1000
#define NGX_DO_STORE_LIST_MAX      10000

/* a listing's response, as encoded, unless its first item alone is longer */
#define NGX_DO_STORE_LIST_BUDGET   (8 * 1024 * 1024)

/* what follows the key in a reply of ngx_do_store_json_key(), at most */
#define NGX_DO_STORE_REST_LEN                                                \
    (sizeof(",\"size\":,\"ttl_ms\":}") - 1 + 2 * NGX_INT64_LEN)


static size_t ngx_do_store_max_body(ngx_do_namespace_t *ns,
    ngx_http_request_t *r, const char **msg);
static size_t ngx_do_store_batch_max(ngx_do_namespace_t *ns);
static ngx_uint_t ngx_do_store_has_arg(ngx_str_t *args, const char *name);
static ngx_int_t ngx_do_store_fetch(ngx_do_turn_t *t);
static ngx_int_t ngx_do_store_alarm(ngx_do_turn_t *t, ngx_str_t *name);
static ngx_int_t ngx_do_store_ttl_name(ngx_do_turn_t *t, ngx_str_t *key,
    ngx_str_t *name);
static ngx_int_t ngx_do_store_expired(ngx_do_turn_t *t, ngx_str_t *key);
static ngx_int_t ngx_do_store_read(ngx_do_turn_t *t, ngx_str_t *key,
    ngx_str_t *value, uint64_t *version);
static ngx_int_t ngx_do_store_get(ngx_do_turn_t *t, ngx_str_t *key);
static ngx_int_t ngx_do_store_list(ngx_do_turn_t *t);
static ngx_int_t ngx_do_store_put(ngx_do_turn_t *t, ngx_str_t *key);
static ngx_int_t ngx_do_store_delete(ngx_do_turn_t *t, ngx_str_t *key);
static ngx_int_t ngx_do_store_incr(ngx_do_turn_t *t, ngx_str_t *key);
static ngx_int_t ngx_do_store_batch(ngx_do_turn_t *t);
static ngx_int_t ngx_do_store_batch_parse(ngx_do_turn_t *t, json_t *in,
    ngx_array_t *gets, ngx_array_t *dels, const char **err);
static ngx_int_t ngx_do_store_batch_get(ngx_do_turn_t *t, ngx_array_t *gets,
    json_t *got);
static ngx_int_t ngx_do_store_batch_delete(ngx_do_turn_t *t,
    ngx_array_t *dels, ngx_uint_t *deleted);
static ngx_int_t ngx_do_store_batch_put(ngx_do_turn_t *t, json_t *put,
    ngx_uint_t *status, const char **err);
static ngx_int_t ngx_do_store_batch_keys(ngx_do_turn_t *t, json_t *array,
    ngx_array_t *keys);
static ngx_int_t ngx_do_store_parse_int(ngx_str_t *s, int64_t *n);
static u_char *ngx_do_store_decimal(u_char *p, int64_t n);
static ngx_int_t ngx_do_store_parse_etag(ngx_str_t *s, uint64_t *version);
static json_t *ngx_do_store_json_bytes(ngx_str_t *s);


static ngx_str_t  ngx_do_store_deleted_all =
    ngx_string("{\"deleted\":\"all\"}\n");


ngx_do_class_t  ngx_do_store_class = {
    ngx_string("store"),
    0,                                     /* object_size */
    0,                                     /* deferred */
    NULL,                                  /* create_conf */
    NULL,                                  /* parse_param */
    NULL,                                  /* init_conf */
    NULL,                                  /* init */
    ngx_do_store_fetch,                    /* fetch */
    NULL,                                  /* evict */
    ngx_do_store_alarm,                    /* alarm */
    NULL,                                  /* wake */
    NULL,                                  /* ws_open */
    NULL,                                  /* ws_message */
    NULL,                                  /* ws_close */
    ngx_do_store_max_body,                 /* max_body */
    NULL,                                  /* init_namespace */
    NULL,                                  /* pass */
    NULL,                                  /* usage */
    NULL,                                  /* init_worker */
    NULL                                   /* exit_worker */
};


/* a batch's body holds at most a batch; any other's, one value */
static size_t
ngx_do_store_max_body(ngx_do_namespace_t *ns, ngx_http_request_t *r,
    const char **msg)
{
    if (r->method == NGX_HTTP_POST && !ngx_do_store_has_arg(&r->args, "op")) {
        *msg = "batch too large";
        return ngx_do_store_batch_max(ns);
    }

    *msg = "key or value too large";

    return ns->max_value;
}


/*
 * The longest batch: 128 puts of a key and a value, 128 gets and 128
 * deletes of a key, each at the namespace's limits and with 64 bytes of
 * JSON around it (quotes, separators, white space, a few escapes)
 */
static size_t
ngx_do_store_batch_max(ngx_do_namespace_t *ns)
{
    size_t  max;

    max = NGX_DO_MAX_BATCH * (ns->max_value + 3 * ns->max_key + 3 * 64)
          + 1024;

    return ngx_min(max, NGX_DO_MAX_BODY);
}


/* the argument is in the query string, as ngx_do_arg() finds it */
static ngx_uint_t
ngx_do_store_has_arg(ngx_str_t *args, const char *name)
{
    u_char  *p, *last, *amp;
    size_t   len;

    len = ngx_strlen(name);
    p = args->data;
    last = p + args->len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if ((size_t) (amp - p) >= len && ngx_strncmp(p, name, len) == 0
            && ((size_t) (amp - p) == len || p[len] == '='))
        {
            return 1;
        }

        p = amp + 1;
    }

    return 0;
}


/* a TTL came due: the key goes */
static ngx_int_t
ngx_do_store_alarm(ngx_do_turn_t *t, ngx_str_t *name)
{
    ngx_str_t  key;

    if (name->len <= 4 || ngx_strncmp(name->data, "ttl:", 4) != 0) {
        return NGX_OK;
    }

    key.data = name->data + 4;
    key.len = name->len - 4;

    return (ngx_do_delete(t, &key) == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_do_store_ttl_name(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *name)
{
    name->data = ngx_pnalloc(ngx_do_turn_pool(t), key->len + 4);
    if (name->data == NULL) {
        return NGX_ERROR;
    }

    name->len = ngx_cpymem(ngx_cpymem(name->data, "ttl:", 4), key->data,
                           key->len)
                - name->data;

    return NGX_OK;
}


/*
 * ngx_do_get(), but a key whose TTL is over (its alarm has not run yet) is
 * absent, and this turn deletes it as the alarm would
 */
static ngx_int_t
ngx_do_store_read(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value,
    uint64_t *version)
{
    ngx_int_t  rc;
    ngx_str_t  name;

    rc = ngx_do_get(t, key, value, version);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_do_store_expired(t, key);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK
        || ngx_do_store_ttl_name(t, key, &name) != NGX_OK
        || ngx_do_delete(t, key) == NGX_ERROR
        || ngx_do_delete_alarm(t, &name) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


/* NGX_OK: the key's TTL is over (its alarm has not run yet) */
static ngx_int_t
ngx_do_store_expired(ngx_do_turn_t *t, ngx_str_t *key)
{
    uint64_t   when;
    ngx_str_t  name;

    if (ngx_do_store_ttl_name(t, key, &name) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_do_get_alarm(t, &name, &when) == NGX_OK
        && when <= ngx_do_now())
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_do_store_fetch(ngx_do_turn_t *t)
{
    ngx_str_t          key, op, all;
    ngx_uint_t         has_key;
    ngx_do_request_t  *req;

    req = ngx_do_turn_request(t);

    has_key = (ngx_do_arg(t, "key", &key) == NGX_OK);

    if (has_key && key.len == 0) {
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST, "empty key");
    }

    if (has_key && key.data[0] == '\0') {
        /* such keys are the runtime's */
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST, "invalid key");
    }

    switch (req->method) {

    case NGX_HTTP_GET:
    case NGX_HTTP_HEAD:
        if (has_key && key.len > ngx_do_turn_namespace(t)->max_key) {
            /* no such key can be stored: nothing is read, nothing cached */
            return ngx_do_reply_error(t, NGX_HTTP_REQUEST_URI_TOO_LARGE,
                                      "key is longer than max_key");
        }

        return has_key ? ngx_do_store_get(t, &key) : ngx_do_store_list(t);

    case NGX_HTTP_PUT:
        if (!has_key) {
            return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                      "key= is required");
        }

        return ngx_do_store_put(t, &key);

    case NGX_HTTP_DELETE:
        if (has_key) {
            return ngx_do_store_delete(t, &key);
        }

        if (ngx_do_arg(t, "all", &all) == NGX_OK
            && all.len == 1 && all.data[0] == '1')
        {
            ngx_do_delete_all(t);
            return ngx_do_reply(t, NGX_HTTP_OK, "application/json",
                                &ngx_do_store_deleted_all, NGX_DO_ETAG_COMMIT);
        }

        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                  "key= or all=1 is required");

    case NGX_HTTP_POST:
        if (ngx_do_arg(t, "op", &op) != NGX_OK) {
            return ngx_do_store_batch(t);
        }

        if (op.len == 4 && ngx_strncmp(op.data, "incr", 4) == 0) {
            if (!has_key) {
                return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                          "key= is required");
            }

            return ngx_do_store_incr(t, &key);
        }

        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST, "unknown op");

    default:
        return ngx_do_reply_error(t, NGX_HTTP_NOT_ALLOWED,
                                  "method not allowed");
    }
}


static ngx_int_t
ngx_do_store_get(ngx_do_turn_t *t, ngx_str_t *key)
{
    u_char    *p;
    uint64_t   version;
    ngx_int_t  rc;
    ngx_str_t  value;

    rc = ngx_do_store_read(t, key, &value, &version);

    if (rc == NGX_DECLINED) {
        return ngx_do_reply_error(t, NGX_HTTP_NOT_FOUND, "no such key");
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /* straight into the reply's buffer: one copy less than ngx_do_reply() */
    p = ngx_do_reply_buf(t, NGX_HTTP_OK, "application/octet-stream",
                         value.len, version);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, value.data, value.len);

    return NGX_OK;
}


static ngx_int_t
ngx_do_store_list(ngx_do_turn_t *t)
{
    int64_t              limit;
    ngx_str_t            s;
    ngx_uint_t           n;
    ngx_array_t         *out;
    ngx_do_list_opts_t   opts;

    ngx_memzero(&opts, sizeof(ngx_do_list_opts_t));

    (void) ngx_do_arg(t, "prefix", &opts.prefix);
    (void) ngx_do_arg(t, "start", &opts.start);
    (void) ngx_do_arg(t, "end", &opts.end);

    if (ngx_do_arg(t, "reverse", &s) == NGX_OK
        && !(s.len == 1 && s.data[0] == '0'))
    {
        opts.reverse = 1;
    }

    limit = NGX_DO_STORE_LIST_DEFAULT;

    if (ngx_do_arg(t, "limit", &s) == NGX_OK
        && (ngx_do_store_parse_int(&s, &limit) != NGX_OK
            || limit < 1 || limit > NGX_DO_STORE_LIST_MAX))
    {
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                  "limit must be 1..10000");
    }

    /* one more than asked tells whether the list was cut */
    opts.limit = (ngx_uint_t) limit + 1;

    /* raw bytes never take more room encoded: this bounds the copies */
    opts.max_bytes = NGX_DO_STORE_LIST_BUDGET;

    if (ngx_do_list(t, &opts, &out) != NGX_OK) {
        return NGX_ERROR;
    }

    n = ngx_min(out->nelts, (ngx_uint_t) limit);

    return ngx_do_store_json_list(t, out->elts, n,
                                  out->nelts > n || opts.truncated,
                                  NGX_DO_STORE_LIST_BUDGET);
}


/* PUT with the HTTP preconditions: If-Match: "V" or *, If-None-Match: * */
static ngx_int_t
ngx_do_store_put(ngx_do_turn_t *t, ngx_str_t *key)
{
    uint64_t           version, want;
    ngx_int_t          rc, exists, ttl;
    ngx_str_t          value, arg, name, rest;
    ngx_do_request_t  *req;
    u_char             buf[NGX_DO_STORE_REST_LEN];

    req = ngx_do_turn_request(t);

    ttl = 0;

    if (ngx_do_arg(t, "ttl", &arg) == NGX_OK) {
        ttl = ngx_parse_time(&arg, 0);

        if (ttl == NGX_ERROR || ttl == 0) {
            return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                      "invalid ttl");
        }
    }

    if (req->if_match.len || req->if_none_match.len) {
        rc = ngx_do_store_read(t, key, &value, &version);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        exists = (rc == NGX_OK);

        if (req->if_match.len) {
            if (req->if_match.len == 1 && req->if_match.data[0] == '*') {
                if (!exists) {
                    return ngx_do_reply_error(t,
                                              NGX_HTTP_PRECONDITION_FAILED,
                                              "key does not exist");
                }

            } else if (ngx_do_store_parse_etag(&req->if_match, &want)
                       != NGX_OK)
            {
                return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                          "invalid If-Match");

            } else if (!exists || version != want) {
                return ngx_do_reply_error(t, NGX_HTTP_PRECONDITION_FAILED,
                                          "version mismatch");
            }
        }

        if (req->if_none_match.len) {
            if (!(req->if_none_match.len == 1
                  && req->if_none_match.data[0] == '*'))
            {
                return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                          "only If-None-Match: * is "
                                          "supported");
            }

            if (exists) {
                return ngx_do_reply_error(t, NGX_HTTP_PRECONDITION_FAILED,
                                          "key exists");
            }
        }
    }

    rc = ngx_do_put(t, key, &req->body);

    if (rc == NGX_DECLINED) {
        return ngx_do_reply_error(t, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "key or value too large");
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_do_store_ttl_name(t, key, &name) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ttl ? ngx_do_set_alarm(t, &name, ngx_do_now() + ttl)
             : ngx_do_delete_alarm(t, &name);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED && ttl) {
        /* not for a key within max_key: an alarm's name may be longer */
        ngx_do_rollback(t);
        return ngx_do_reply_error(t, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "key too large for a ttl");
    }

    rest.data = buf;
    rest.len = (ttl ? ngx_sprintf(buf, ",\"size\":%uz,\"ttl_ms\":%i}",
                                  req->body.len, ttl)
                    : ngx_sprintf(buf, ",\"size\":%uz}", req->body.len))
               - buf;

    return ngx_do_store_json_key(t, key, &rest, NGX_DO_ETAG_COMMIT);
}


static ngx_int_t
ngx_do_store_delete(ngx_do_turn_t *t, ngx_str_t *key)
{
    ngx_int_t   rc;
    ngx_str_t   name, rest;

    rc = ngx_do_delete(t, key);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_do_store_ttl_name(t, key, &name) != NGX_OK
        || ngx_do_delete_alarm(t, &name) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        ngx_str_set(&rest, ",\"deleted\":true}");

    } else {
        ngx_str_set(&rest, ",\"deleted\":false}");
    }

    return ngx_do_store_json_key(t, key, &rest, 0);
}


static ngx_int_t
ngx_do_store_incr(ngx_do_turn_t *t, ngx_str_t *key)
{
    u_char     *p;
    int64_t     by, current;
    uint64_t    version;
    ngx_int_t   rc;
    ngx_str_t   s, value, rest;
    u_char      buf[NGX_DO_STORE_REST_LEN];

    by = 1;

    if (ngx_do_arg(t, "by", &s) == NGX_OK
        && ngx_do_store_parse_int(&s, &by) != NGX_OK)
    {
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                  "by= must be an integer");
    }

    rc = ngx_do_store_read(t, key, &value, &version);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    current = 0;

    if (rc == NGX_OK && ngx_do_store_parse_int(&value, &current) != NGX_OK) {
        return ngx_do_reply_error(t, NGX_HTTP_CONFLICT,
                                  "value is not an integer");
    }

    if ((by > 0 && current > INT64_MAX - by)
        || (by < 0 && current < INT64_MIN - by))
    {
        return ngx_do_reply_error(t, NGX_HTTP_CONFLICT, "integer overflow");
    }

    current += by;

    value.data = ngx_pnalloc(ngx_do_turn_pool(t), NGX_INT64_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_do_store_decimal(value.data, current) - value.data;

    rc = ngx_do_put(t, key, &value);

    if (rc == NGX_DECLINED) {
        return ngx_do_reply_error(t, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "key or value too large");
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, ",\"value\":", sizeof(",\"value\":") - 1);
    p = ngx_cpymem(p, value.data, value.len);
    *p++ = '}';

    rest.data = buf;
    rest.len = p - buf;

    return ngx_do_store_json_key(t, key, &rest, NGX_DO_ETAG_COMMIT);
}


/*
 * {"get":[k,..], "delete":[k,..], "put":{k:v,..}}: reads see the state
 * before the batch; deletes apply before puts; all of it commits at once.
 * Its length and its entries are bounded before jansson parses it.
 */
static ngx_int_t
ngx_do_store_batch(ngx_do_turn_t *t)
{
    json_t            *in, *put, *out, *got;
    ngx_int_t          rc;
    ngx_uint_t         deleted, status;
    ngx_array_t        gets, dels;
    const char        *err;
    json_error_t       jerr;
    ngx_do_request_t  *req;

    req = ngx_do_turn_request(t);

    /* do_pass refused longer ones where they arrived */
    if (req->body.len > ngx_do_store_batch_max(ngx_do_turn_namespace(t))) {
        return ngx_do_reply_error(t, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "batch too large");
    }

    err = ngx_do_store_json_batch_scan(&req->body);

    if (err) {
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST, err);
    }

    in = json_loadb((const char *) req->body.data, req->body.len, 0, &jerr);

    if (in == NULL || !json_is_object(in)) {
        json_decref(in);
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                  NGX_DO_STORE_NOT_OBJECT);
    }

    rc = ngx_do_store_batch_parse(t, in, &gets, &dels, &err);

    if (rc != NGX_OK) {
        json_decref(in);
        return (rc == NGX_DECLINED)
               ? ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST, err)
               : NGX_ERROR;
    }

    out = json_object();
    got = json_object();

    if (out == NULL || got == NULL) {
        json_decref(out);
        json_decref(got);
        json_decref(in);
        return NGX_ERROR;
    }

    json_object_set_new(out, "get", got);

    if (ngx_do_store_batch_get(t, &gets, got) != NGX_OK
        || ngx_do_store_batch_delete(t, &dels, &deleted) != NGX_OK)
    {
        goto failed;
    }

    put = json_object_get(in, "put");

    if (put) {
        rc = ngx_do_store_batch_put(t, put, &status, &err);

        if (rc == NGX_DECLINED) {
            ngx_do_rollback(t);
            json_decref(out);
            json_decref(in);
            return ngx_do_reply_error(t, status, err);
        }

        if (rc != NGX_OK) {
            goto failed;
        }

        json_object_set_new(out, "put", json_integer(json_object_size(put)));
    }

    json_object_set_new(out, "deleted", json_integer(deleted));
    json_decref(in);

    return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, out, NGX_DO_ETAG_COMMIT);

failed:

    json_decref(out);
    json_decref(in);

    return NGX_ERROR;
}


/*
 * The batch's members checked, its get and delete keys copied into gets
 * and dels.  NGX_DECLINED: a bad batch, *err says why.
 */
static ngx_int_t
ngx_do_store_batch_parse(ngx_do_turn_t *t, json_t *in, ngx_array_t *gets,
    ngx_array_t *dels, const char **err)
{
    json_t      *member;
    ngx_int_t    rc;
    const char  *name;

    if (ngx_array_init(gets, ngx_do_turn_pool(t), 4, sizeof(ngx_str_t))
        != NGX_OK
        || ngx_array_init(dels, ngx_do_turn_pool(t), 4, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_object_foreach(in, name, member) {
        if (ngx_strcmp(name, "get") != 0 && ngx_strcmp(name, "put") != 0
            && ngx_strcmp(name, "delete") != 0)
        {
            *err = "unknown batch member";
            return NGX_DECLINED;
        }
    }

    rc = ngx_do_store_batch_keys(t, json_object_get(in, "get"), gets);

    if (rc == NGX_OK) {
        rc = ngx_do_store_batch_keys(t, json_object_get(in, "delete"), dels);
    }

    member = json_object_get(in, "put");

    if (rc == NGX_OK && member
        && (!json_is_object(member)
            || json_object_size(member) > NGX_DO_MAX_BATCH))
    {
        rc = NGX_DECLINED;
    }

    *err = NGX_DO_STORE_BAD_BATCH;

    return rc;
}


/* the batch's reads: each key's value, or null, into got */
static ngx_int_t
ngx_do_store_batch_get(ngx_do_turn_t *t, ngx_array_t *gets, json_t *got)
{
    uint64_t    version;
    ngx_int_t   rc;
    ngx_str_t  *k, value;
    ngx_uint_t  i;

    k = gets->elts;

    for (i = 0; i < gets->nelts; i++) {
        rc = ngx_do_store_read(t, &k[i], &value, &version);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        json_object_setn_new(got, (const char *) k[i].data, k[i].len,
                             rc == NGX_OK ? ngx_do_store_json_bytes(&value)
                                          : json_null());
    }

    return NGX_OK;
}


/* the batch's deletes, with their TTLs, as DELETE does; *deleted counts */
static ngx_int_t
ngx_do_store_batch_delete(ngx_do_turn_t *t, ngx_array_t *dels,
    ngx_uint_t *deleted)
{
    ngx_int_t   rc;
    ngx_str_t  *k, name;
    ngx_uint_t  i;

    *deleted = 0;
    k = dels->elts;

    for (i = 0; i < dels->nelts; i++) {
        rc = ngx_do_delete(t, &k[i]);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        *deleted += (rc == NGX_OK);

        if (ngx_do_store_ttl_name(t, &k[i], &name) != NGX_OK
            || ngx_do_delete_alarm(t, &name) == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the batch's puts.  NGX_DECLINED: refused with *status and *err */
static ngx_int_t
ngx_do_store_batch_put(ngx_do_turn_t *t, json_t *put, ngx_uint_t *status,
    const char **err)
{
    json_t      *v;
    ngx_int_t    rc;
    ngx_str_t    key, value;
    const char  *name;

    *status = NGX_HTTP_BAD_REQUEST;

    json_object_foreach(put, name, v) {
        if (!json_is_string(v)) {
            *err = "put values must be strings";
            return NGX_DECLINED;
        }

        if (name[0] == '\0') {
            *err = "put keys must not be empty";
            return NGX_DECLINED;
        }

        key.len = ngx_strlen(name);
        key.data = ngx_pnalloc(ngx_do_turn_pool(t), key.len + 1);
        value.len = json_string_length(v);
        value.data = ngx_pnalloc(ngx_do_turn_pool(t), value.len + 1);

        if (key.data == NULL || value.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(key.data, name, key.len);
        ngx_memcpy(value.data, json_string_value(v), value.len);

        rc = ngx_do_put(t, &key, &value);

        if (rc == NGX_DECLINED) {
            *status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
            *err = "key or value too large";
            return NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* an array of at most 128 non-empty strings, copied into the turn pool */
static ngx_int_t
ngx_do_store_batch_keys(ngx_do_turn_t *t, json_t *array, ngx_array_t *keys)
{
    size_t      i;
    json_t     *v;
    ngx_str_t  *k;

    if (array == NULL) {
        return NGX_OK;
    }

    if (!json_is_array(array) || json_array_size(array) > NGX_DO_MAX_BATCH) {
        return NGX_DECLINED;
    }

    json_array_foreach(array, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            return NGX_DECLINED;
        }

        k = ngx_array_push(keys);
        if (k == NULL) {
            return NGX_ERROR;
        }

        k->len = json_string_length(v);
        k->data = ngx_pnalloc(ngx_do_turn_pool(t), k->len + 1);
        if (k->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(k->data, json_string_value(v), k->len);
    }

    return NGX_OK;
}


/* a decimal int64, optionally negative, nothing else */
static ngx_int_t
ngx_do_store_parse_int(ngx_str_t *s, int64_t *n)
{
    u_char    *p, *last;
    uint64_t   v, max;
    ngx_int_t  neg;

    p = s->data;
    last = p + s->len;
    neg = 0;

    if (p < last && *p == '-') {
        neg = 1;
        p++;
    }

    if (p == last) {
        return NGX_ERROR;
    }

    max = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
    v = 0;

    for ( /* void */ ; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        if (v > (max - (*p - '0')) / 10) {
            return NGX_ERROR;
        }

        v = v * 10 + (*p - '0');
    }

    *n = neg ? (int64_t) (0 - v) : (int64_t) v;

    return NGX_OK;
}


/* n in decimal, as ngx_sprintf()'s "%L" writes it, at a fraction of its cost */
static u_char *
ngx_do_store_decimal(u_char *p, int64_t n)
{
    u_char    *q, buf[NGX_INT64_LEN];
    uint64_t   v;

    v = (n < 0) ? 0 - (uint64_t) n : (uint64_t) n;
    q = buf + sizeof(buf);

    do {
        *--q = (u_char) ('0' + v % 10);
        v /= 10;
    } while (v);

    if (n < 0) {
        *--q = '-';
    }

    return ngx_cpymem(p, q, buf + sizeof(buf) - q);
}


/* "123" or 123 */
static ngx_int_t
ngx_do_store_parse_etag(ngx_str_t *s, uint64_t *version)
{
    int64_t    n;
    ngx_str_t  v;

    v = *s;

    if (v.len >= 2 && v.data[0] == '"' && v.data[v.len - 1] == '"') {
        v.data++;
        v.len -= 2;
    }

    if (ngx_do_store_parse_int(&v, &n) != NGX_OK || n <= 0) {
        return NGX_ERROR;
    }

    *version = (uint64_t) n;

    return NGX_OK;
}


/* a JSON string, or {"base64": "..."} for bytes that are not UTF-8 */
static json_t *
ngx_do_store_json_bytes(ngx_str_t *s)
{
    json_t     *v, *o;
    ngx_str_t   enc;
    u_char      stack[1024];

    v = json_stringn((const char *) s->data, s->len);
    if (v) {
        return v;
    }

    enc.len = ngx_base64_encoded_length(s->len);
    enc.data = enc.len <= sizeof(stack) ? stack : ngx_alloc(enc.len,
                                                            ngx_cycle->log);
    if (enc.data == NULL) {
        return json_null();
    }

    ngx_encode_base64(&enc, s);

    o = json_object();
    if (o) {
        json_object_set_new(o, "base64",
                            json_stringn((const char *) enc.data, enc.len));
    }

    if (enc.data != stack) {
        ngx_free(enc.data);
    }

    return o ? o : json_null();
}

