
/*
 * The class API of ngx_http_do.h over a turn: the request and the
 * object's memory, query arguments, reads (the turn's own writes first,
 * then deferred writes not stored yet, then the cache, then storage),
 * buffered writes, listings and the reply.  Nothing here writes to
 * storage: the turn's batch is committed after its handler returned
 * (ngx_do_commit.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <jansson.h>

#include "ngx_do_object.h"


/* keys that start with a zero byte are the runtime's (alarms) */
#define ngx_do_key_reserved(key)  ((key)->len && (key)->data[0] == '\0')


static ngx_do_write_t *ngx_do_api_batch_find(ngx_do_turn_t *t, ngx_str_t *key);
static ngx_do_write_t *ngx_do_api_write(ngx_do_turn_t *t, ngx_str_t *key);
static ngx_int_t ngx_do_api_copy(ngx_do_turn_t *t, ngx_str_t *from,
    ngx_str_t *value);
static ngx_int_t ngx_do_api_stored(ngx_do_turn_t *t, ngx_str_t *prefix,
    ngx_uint_t limit, ngx_array_t *out);
static int ngx_libc_cdecl ngx_do_api_key_cmp(const void *one, const void *two);


/* keys that start with a zero byte are the runtime's (alarms) */
#define ngx_do_key_reserved(key)  ((key)->len && (key)->data[0] == '\0')

/*
 * the longest reserved key: an alarm's name (up to max_key +
 * NGX_DO_ALARM_MAX_NAME) and a prefix of its own
 */
#define ngx_do_key_reserved_max(ns)                                           \
    ((ns)->max_key + NGX_DO_ALARM_MAX_NAME + 16)


ngx_do_request_t *
ngx_do_turn_request(ngx_do_turn_t *t)
{
    return &t->mail->req;
}


void *
ngx_do_turn_state(ngx_do_turn_t *t)
{
    return t->obj->state;
}


void
ngx_do_set_idle_timeout(ngx_do_turn_t *t, ngx_msec_t timeout)
{
    t->obj->idle_timeout = timeout;
}


void
ngx_do_set_expire(ngx_do_turn_t *t, ngx_msec_t ttl)
{
    t->obj->expire = ttl;
    t->batch.expire = ttl;
}


ngx_do_namespace_t *
ngx_do_turn_namespace(ngx_do_turn_t *t)
{
    return t->obj->ns;
}


ngx_pool_t *
ngx_do_turn_pool(ngx_do_turn_t *t)
{
    return t->pool;
}


ngx_log_t *
ngx_do_turn_log(ngx_do_turn_t *t)
{
    return ngx_cycle->log;
}


ngx_int_t
ngx_do_arg(ngx_do_turn_t *t, const char *name, ngx_str_t *value)
{
    if (t->mail == NULL) {
        return NGX_DECLINED;
    }

    return ngx_do_request_arg(t, &t->mail->req, name, value);
}


ngx_int_t
ngx_do_request_arg(ngx_do_turn_t *t, ngx_do_request_t *req, const char *name,
    ngx_str_t *value)
{
    u_char     *p, *last, *amp, *dst, *src;
    size_t      len;

    len = ngx_strlen(name);
    p = req->args.data;
    last = p + req->args.len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if ((size_t) (amp - p) > len && p[len] == '='
            && ngx_strncmp(p, name, len) == 0)
        {
            p += len + 1;

            dst = ngx_pnalloc(t->pool, (amp - p) + 1);
            if (dst == NULL) {
                return NGX_ERROR;
            }

            value->data = dst;
            src = p;
            ngx_unescape_uri(&dst, &src, amp - p, 0);
            value->len = dst - value->data;

            return NGX_OK;
        }

        if ((size_t) (amp - p) == len && ngx_strncmp(p, name, len) == 0) {
            value->data = (u_char *) "";
            value->len = 0;
            return NGX_OK;
        }

        p = amp + 1;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_do_get(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value,
    uint64_t *version)
{
    if (ngx_do_key_reserved(key)) {
        return NGX_DECLINED;
    }

    return ngx_do_get_reserved(t, key, value, version);
}


/* ngx_do_get() of any key, the runtime's reserved ones too */
ngx_int_t
ngx_do_get_reserved(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value,
    uint64_t *version)
{
    ngx_int_t        rc;
    ngx_str_t        v;
    ngx_do_dirty_t  *d;
    ngx_do_cache_t  *e;
    ngx_do_write_t  *w;

    if (key->len > t->obj->ns->max_key && !ngx_do_key_reserved(key)) {
        /* no such key can be stored: neither read nor cached */
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                       "do get: a key of %uz bytes is over max_key",
                       key->len);
        return NGX_DECLINED;
    }

    w = ngx_do_api_batch_find(t, key);

    if (w) {
        if (w->delete) {
            return NGX_DECLINED;
        }

        *value = w->value;
        *version = 0;
        return NGX_OK;
    }

    if (t->batch.clear) {
        return NGX_DECLINED;
    }

    /* deferred writes not stored yet are the truth, whatever the cache kept */
    d = ngx_do_defer_find(t->obj->dirty, key);

    if (d == NULL) {
        d = ngx_do_defer_find(t->obj->flushing, key);
    }

    if (d) {
        if (d->delete) {
            return NGX_DECLINED;
        }

        *version = 0;

        return ngx_do_api_copy(t, &d->value, value);
    }

    e = ngx_do_cache_find(t->obj, key);

    if (e == NULL && ngx_do_object_backend->async) {
        /* the loaded state is complete: not in it, not in storage */
        return NGX_DECLINED;
    }

    if (e == NULL) {
        rc = ngx_do_object_backend->get(t->obj->id, key, &v, version);

        if (rc == NGX_ERROR) {
            t->failed = 1;
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_do_cache_set(t->obj, key, NULL, 0, 1);
            return NGX_DECLINED;
        }

        value->data = ngx_pnalloc(t->pool, v.len + 1);
        if (value->data == NULL) {
            ngx_free(v.data);
            t->failed = 1;
            return NGX_ERROR;
        }

        ngx_memcpy(value->data, v.data, v.len);
        value->len = v.len;

        if (*version > t->obj->version && !t->obj->deferred) {
            /*
             * written after this turn checked the object's version: another
             * worker acts for it (a reload overlap); the commit will tell
             */
            ngx_free(v.data);
            return NGX_OK;
        }

        ngx_do_cache_set(t->obj, key, &v, *version, 0);

        return NGX_OK;
    }

    if (e->value.data == NULL) {
        return NGX_DECLINED;
    }

    /* a copy: the cache may change before the turn ends */
    *version = e->version;

    return ngx_do_api_copy(t, &e->value, value);
}


/* the turn's buffered write of key, new or the one it made before */
static ngx_do_write_t *
ngx_do_api_write(ngx_do_turn_t *t, ngx_str_t *key)
{
    ngx_do_write_t  *w;

    w = ngx_do_api_batch_find(t, key);

    if (w == NULL) {
        w = ngx_array_push(&t->batch.writes);
        if (w == NULL) {
            t->failed = 1;
            return NULL;
        }

        w->key = *key;
    }

    return w;
}


/* a value the turn reads, copied into its pool */
static ngx_int_t
ngx_do_api_copy(ngx_do_turn_t *t, ngx_str_t *from, ngx_str_t *value)
{
    value->data = ngx_pnalloc(t->pool, from->len + 1);
    if (value->data == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    ngx_memcpy(value->data, from->data, from->len);
    value->len = from->len;

    return NGX_OK;
}


ngx_int_t
ngx_do_put(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value)
{
    if (ngx_do_key_reserved(key) || key->len > t->obj->ns->max_key) {
        return NGX_DECLINED;
    }

    return ngx_do_put_reserved(t, key, value);
}


ngx_int_t
ngx_do_put_reserved(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value)
{
    ngx_do_write_t  *w;

    /* the runtime's values are its own, and small */
    if (key->len == 0 || key->len > ngx_do_key_reserved_max(t->obj->ns)
        || (value->len > t->obj->ns->max_value && !ngx_do_key_reserved(key)))
    {
        return NGX_DECLINED;
    }

    w = ngx_do_api_write(t, key);
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->value = *value;
    w->delete = 0;

    return NGX_OK;
}


ngx_int_t
ngx_do_delete(ngx_do_turn_t *t, ngx_str_t *key)
{
    if (ngx_do_key_reserved(key) || key->len > t->obj->ns->max_key) {
        return NGX_DECLINED;
    }

    return ngx_do_delete_reserved(t, key);
}


ngx_int_t
ngx_do_delete_reserved(ngx_do_turn_t *t, ngx_str_t *key)
{
    uint64_t         version;
    ngx_int_t        rc;
    ngx_str_t        value;
    ngx_do_write_t  *w;

    if (key->len == 0 || key->len > ngx_do_key_reserved_max(t->obj->ns)) {
        return NGX_DECLINED;
    }

    rc = ngx_do_get_reserved(t, key, &value, &version);

    if (rc != NGX_OK) {
        return rc;
    }

    w = ngx_do_api_write(t, key);
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->value.len = 0;
    w->value.data = NULL;
    w->delete = 1;

    return NGX_OK;
}


/* deletes the alarms too, as Cloudflare's deleteAll() now does */
ngx_int_t
ngx_do_delete_all(ngx_do_turn_t *t)
{
    t->batch.writes.nelts = 0;
    t->batch.clear = 1;
    t->alarms = 1;

    return NGX_OK;
}


void
ngx_do_rollback(ngx_do_turn_t *t)
{
    t->batch.writes.nelts = 0;
    t->batch.clear = 0;
}


ngx_int_t
ngx_do_list(ngx_do_turn_t *t, ngx_do_list_opts_t *opts, ngx_array_t **items)
{
    ngx_array_t  *out;

    out = ngx_array_create(t->pool, 16, sizeof(ngx_do_kv_t));
    if (out == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    if (opts->max_bytes == 0) {
        opts->max_bytes = 8 * 1024 * 1024;
    }

    if (ngx_do_key_reserved(&opts->prefix)) {
        *items = out;
        return NGX_OK;
    }

    /* the runtime's keys sort first: the listing starts after them */
    if (opts->start.len == 0 || opts->start.data[0] == '\0') {
        opts->start.data = (u_char *) "\1";
        opts->start.len = 1;
    }

    if (ngx_do_object_backend->async) {
        if (ngx_do_cache_list(t, opts, out) != NGX_OK) {
            t->failed = 1;
            return NGX_ERROR;
        }

        *items = out;
        return NGX_OK;
    }

    if (ngx_do_object_backend->list(t->obj->id, opts, t->pool, out) != NGX_OK) {
        t->failed = 1;
        return NGX_ERROR;
    }

    *items = out;

    return NGX_OK;
}


/*
 * The first keys of a reserved prefix in byte order, as the turn sees
 * them (its own writes included), at most limit, into an array of
 * ngx_str_t: for the alarm index of an object, whose first key is its
 * next alarm.  Costs O(log n) in the object's keys, plus the turn's
 * writes.  Not for deferred classes (their unstored writes are not seen).
 */
ngx_int_t
ngx_do_list_reserved(ngx_do_turn_t *t, ngx_str_t *prefix, ngx_uint_t limit,
    ngx_array_t **keys)
{
    ngx_str_t       *k, *s;
    ngx_uint_t       i, deletes;
    ngx_array_t     *out, stored;
    ngx_do_write_t  *w;

    out = ngx_array_create(t->pool, limit + 1, sizeof(ngx_str_t));
    if (out == NULL) {
        goto failed;
    }

    deletes = 0;
    w = t->batch.writes.elts;

    for (i = 0; i < t->batch.writes.nelts; i++) {
        if (w[i].key.len < prefix->len
            || ngx_memcmp(w[i].key.data, prefix->data, prefix->len) != 0)
        {
            continue;
        }

        if (w[i].delete) {
            deletes++;
            continue;
        }

        k = ngx_array_push(out);
        if (k == NULL) {
            goto failed;
        }

        *k = w[i].key;
    }

    if (!t->batch.clear) {
        /* the turn's deletes hide at most as many stored keys */
        if (ngx_array_init(&stored, t->pool, limit + deletes,
                           sizeof(ngx_str_t))
            != NGX_OK
            || ngx_do_api_stored(t, prefix, limit + deletes, &stored)
               != NGX_OK)
        {
            goto failed;
        }

        s = stored.elts;

        for (i = 0; i < stored.nelts; i++) {
            if (ngx_do_api_batch_find(t, &s[i])) {
                /* deleted, or written again: then it is in out already */
                continue;
            }

            k = ngx_array_push(out);
            if (k == NULL) {
                goto failed;
            }

            *k = s[i];
        }
    }

    ngx_qsort(out->elts, out->nelts, sizeof(ngx_str_t), ngx_do_api_key_cmp);

    if (out->nelts > limit) {
        out->nelts = limit;
    }

    *keys = out;

    return NGX_OK;

failed:

    t->failed = 1;
    return NGX_ERROR;
}


/* the first stored keys of a reserved prefix: the cache or storage */
static ngx_int_t
ngx_do_api_stored(ngx_do_turn_t *t, ngx_str_t *prefix, ngx_uint_t limit,
    ngx_array_t *out)
{
    ngx_str_t           *k;
    ngx_uint_t           i;
    ngx_array_t          kvs;
    ngx_do_kv_t         *kv;
    ngx_do_list_opts_t   opts;

    if (ngx_do_object_backend->async) {
        return ngx_do_cache_range(t->obj, prefix, limit, t->pool, out);
    }

    ngx_memzero(&opts, sizeof(ngx_do_list_opts_t));
    opts.prefix = *prefix;
    opts.limit = limit;

    if (ngx_array_init(&kvs, t->pool, limit, sizeof(ngx_do_kv_t)) != NGX_OK
        || ngx_do_object_backend->list(t->obj->id, &opts, t->pool, &kvs)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    kv = kvs.elts;

    for (i = 0; i < kvs.nelts; i++) {
        k = ngx_array_push(out);
        if (k == NULL) {
            return NGX_ERROR;
        }

        *k = kv[i].key;
    }

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_do_api_key_cmp(const void *one, const void *two)
{
    const ngx_str_t  *a = one, *b = two;

    return (int) ngx_memn2cmp(a->data, b->data, a->len, b->len);
}


ngx_int_t
ngx_do_reply(ngx_do_turn_t *t, ngx_uint_t status, const char *content_type,
    ngx_str_t *body, uint64_t etag)
{
    if (t->wire) {
        ngx_free(t->wire);
        t->wire = NULL;
    }

    t->status = status;
    t->content_type.data = (u_char *) content_type;
    t->content_type.len = ngx_strlen(content_type);
    t->etag = etag;
    t->body.len = 0;

    if (body && body->len) {
        t->body.data = ngx_pnalloc(t->pool, body->len);
        if (t->body.data == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }

        ngx_memcpy(t->body.data, body->data, body->len);
        t->body.len = body->len;
    }

    t->replied = 1;

    return NGX_OK;
}


/* the reply's body is written into the wire form it is sent in */
u_char *
ngx_do_reply_buf(ngx_do_turn_t *t, ngx_uint_t status,
    const char *content_type, size_t len, uint64_t etag)
{
    if (ngx_do_reply(t, status, content_type, NULL, etag) != NGX_OK) {
        return NULL;
    }

    t->wire = ngx_do_wire_reply_alloc(t->obj, status, &t->content_type, len,
                                      0, &t->wire_len);
    if (t->wire == NULL) {
        t->failed = 1;
        return NULL;
    }

    t->body.data = t->wire + t->wire_len - len;
    t->body.len = len;

    return t->body.data;
}


ngx_int_t
ngx_do_reply_json(ngx_do_turn_t *t, ngx_do_request_t *parked,
    ngx_uint_t status, json_t *root, uint64_t etag)
{
    char       *text;
    ngx_int_t   rc;
    ngx_str_t   body;

    if (root == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);

    if (text == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    body.data = (u_char *) text;
    body.len = ngx_strlen(text);

    rc = parked ? ngx_do_reply_parked(t, parked, status, "application/json",
                                      &body)
                : ngx_do_reply(t, status, "application/json", &body, etag);

    free(text);

    return rc;
}


ngx_int_t
ngx_do_reply_error(ngx_do_turn_t *t, ngx_uint_t status, const char *msg)
{
    ngx_str_t  body;

    body.data = ngx_pnalloc(t->pool, ngx_strlen(msg) + 16);
    if (body.data == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    body.len = ngx_sprintf(body.data, "{\"error\":\"%s\"}\n", msg)
               - body.data;

    return ngx_do_reply(t, status, "application/json", &body, 0);
}


ngx_msec_t
ngx_do_call_timeout(void)
{
    return ngx_do_runtime.call_timeout;
}


ngx_msec_t
ngx_do_flush_interval(void)
{
    return ngx_do_runtime.flush_interval;
}


void
ngx_do_turn_alarms_changed(ngx_do_turn_t *t)
{
    t->alarms = 1;
}


/*
 * No alarm can be found: storage had none as the turn began, and the turn
 * set none since (a commit that another worker made meanwhile fails this
 * turn's commit, which then runs again)
 */
ngx_uint_t
ngx_do_turn_alarm_free(ngx_do_turn_t *t)
{
    return t->obj->no_alarms && !t->alarms;
}


/* an alarm call's call id is the data ngx_do_wire_alarm() was given */
void *
ngx_do_turn_alarm_data(ngx_do_turn_t *t)
{
    return t->mail ? (void *) (uintptr_t) t->mail->call_id : NULL;
}


static ngx_do_write_t *
ngx_do_api_batch_find(ngx_do_turn_t *t, ngx_str_t *key)
{
    ngx_uint_t       i;
    ngx_do_write_t  *w;

    w = t->batch.writes.elts;

    for (i = 0; i < t->batch.writes.nelts; i++) {
        if (w[i].key.len == key->len
            && ngx_memcmp(w[i].key.data, key->data, key->len) == 0)
        {
            return &w[i];
        }
    }

    return NULL;
}
