
/*
 * The "lock" class: a lease-based mutex with fencing tokens.  Its calls and
 * replies are in ngx_do_lock.h.
 *
 * A grant is {"token", "fence", "ttl_ms", "expires"}.  The token (random
 * unless the caller chose one) is what release and renew need; the fence
 * is strictly increasing per lock, forever: max(last + 1, the wall clock
 * in microseconds), and stored with the grant (the reply leaves only once
 * it is stored), so it keeps increasing across restarts and, with the
 * clock, even across the loss of the memory backend's zone.  An origin
 * that remembers the highest fence it saw can refuse a stale holder.
 *
 * Waiters (wait=) are parked calls, answered in arrival order when the lock
 * is released, or when the holder's lease ends: the named alarm "lease"
 * comes due then, with or without any further request.  A waiter whose
 * wait ends first gets 423 and leaves the queue.
 *
 * Stored keys: "fence" (the last fence) and "holder" ("<token> <fence>
 * <expires ms>").
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "ngx_http_do.h"
#include "ngx_do_lock.h"


#define NGX_DO_LOCK_MAX_TOKEN     64


typedef struct {
    ngx_str_t                  token;
    uint64_t                   fence;
    uint64_t                   expires;
} ngx_do_lock_holder_t;


static void *ngx_do_lock_create_conf(ngx_conf_t *cf);
static char *ngx_do_lock_parse_param(ngx_conf_t *cf, void *conf,
    ngx_str_t *param);
static char *ngx_do_lock_init_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_do_lock_fetch(ngx_do_turn_t *t);
static ngx_int_t ngx_do_lock_alarm(ngx_do_turn_t *t, ngx_str_t *name);
static ngx_int_t ngx_do_lock_wake(ngx_do_turn_t *t);
static ngx_int_t ngx_do_lock_acquire(ngx_do_turn_t *t);
static ngx_int_t ngx_do_lock_release(ngx_do_turn_t *t);
static ngx_int_t ngx_do_lock_renew(ngx_do_turn_t *t);
static ngx_int_t ngx_do_lock_status(ngx_do_turn_t *t);
static ngx_int_t ngx_do_lock_grant(ngx_do_turn_t *t, ngx_do_request_t *req,
    ngx_uint_t parked);
static ngx_int_t ngx_do_lock_grant_next(ngx_do_turn_t *t);
static ngx_int_t ngx_do_lock_holder(ngx_do_turn_t *t,
    ngx_do_lock_holder_t *h);
static ngx_int_t ngx_do_lock_store(ngx_do_turn_t *t, ngx_do_lock_holder_t *h);
static const char *ngx_do_lock_args(ngx_do_turn_t *t,
    ngx_do_request_t *req, ngx_msec_t *ttl, ngx_msec_t *wait,
    ngx_str_t *token);
static ngx_int_t ngx_do_lock_time(ngx_str_t *s, ngx_msec_t *ms);


ngx_do_class_t  ngx_do_lock_class = {
    ngx_string("lock"),
    0,                                     /* object_size */
    0,                                     /* deferred */
    ngx_do_lock_create_conf,               /* create_conf */
    ngx_do_lock_parse_param,               /* parse_param */
    ngx_do_lock_init_conf,                 /* init_conf */
    NULL,                                  /* init */
    ngx_do_lock_fetch,                     /* fetch */
    NULL,                                  /* evict */
    ngx_do_lock_alarm,                     /* alarm */
    ngx_do_lock_wake,                      /* wake */
    NULL,                                  /* ws_open */
    NULL,                                  /* ws_message */
    NULL,                                  /* ws_close */
    NULL,                                  /* max_body */
    NULL,                                  /* init_namespace */
    NULL,                                  /* pass */
    NULL,                                  /* usage */
    NULL,                                  /* init_worker */
    NULL                                   /* exit_worker */
};


static ngx_str_t  ngx_do_lock_holder_key = ngx_string("holder");
static ngx_str_t  ngx_do_lock_fence_key = ngx_string("fence");
static ngx_str_t  ngx_do_lock_lease = ngx_string("lease");


static void *
ngx_do_lock_create_conf(ngx_conf_t *cf)
{
    ngx_do_lock_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_do_lock_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->ttl = NGX_CONF_UNSET_MSEC;
    conf->max_ttl = NGX_CONF_UNSET_MSEC;

    return conf;
}


/* ttl=30s (the lease when a request names none)  max_ttl=1h */
static char *
ngx_do_lock_parse_param(ngx_conf_t *cf, void *data, ngx_str_t *param)
{
    ngx_do_lock_conf_t  *conf = data;

    ngx_str_t    s;
    ngx_msec_t  *field;

    if (ngx_strncmp(param->data, "ttl=", 4) == 0) {
        field = &conf->ttl;
        s.data = param->data + 4;
        s.len = param->len - 4;

    } else if (ngx_strncmp(param->data, "max_ttl=", 8) == 0) {
        field = &conf->max_ttl;
        s.data = param->data + 8;
        s.len = param->len - 8;

    } else {
        return "unknown lock parameter";
    }

    if (ngx_do_lock_time(&s, field) != NGX_OK || *field == 0) {
        return "invalid time";
    }

    return NGX_CONF_OK;
}


static char *
ngx_do_lock_init_conf(ngx_conf_t *cf, void *data)
{
    ngx_do_lock_conf_t  *conf = data;

    ngx_conf_init_msec_value(conf->ttl, 30000);
    ngx_conf_init_msec_value(conf->max_ttl, 3600000);

    if (conf->ttl > conf->max_ttl) {
        return "ttl= exceeds max_ttl=";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_do_lock_fetch(ngx_do_turn_t *t)
{
    switch (ngx_do_turn_request(t)->method) {

    case NGX_HTTP_POST:
        return ngx_do_lock_acquire(t);

    case NGX_HTTP_PUT:
        return ngx_do_lock_renew(t);

    case NGX_HTTP_DELETE:
        return ngx_do_lock_release(t);

    case NGX_HTTP_GET:
    case NGX_HTTP_HEAD:
        return ngx_do_lock_status(t);

    default:
        return ngx_do_reply_error(t, NGX_HTTP_NOT_ALLOWED,
                                  "method not allowed");
    }
}


static ngx_int_t
ngx_do_lock_acquire(ngx_do_turn_t *t)
{
    json_t                *root;
    ngx_int_t              rc;
    ngx_str_t              token;
    ngx_msec_t             ttl, wait;
    const char            *err;
    ngx_do_request_t      *req;
    ngx_do_lock_holder_t   h;

    req = ngx_do_turn_request(t);

    err = ngx_do_lock_args(t, req, &ttl, &wait, &token);
    if (err) {
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST, err);
    }

    if (req->kind == NGX_DO_TURN_HTTP
        && wait + 500 > ngx_do_call_timeout())
    {
        /* the caller would give up first, and a grant would go nowhere */
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                  "wait= must end 500ms before "
                                  "do_call_timeout");
    }

    rc = ngx_do_lock_holder(t, &h);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK && token.len && token.len == h.token.len
        && ngx_strncmp(token.data, h.token.data, token.len) == 0)
    {
        /* a retried acquire of the holder: the same grant */
        root = json_pack("{s:s%,s:I,s:I}", "token", h.token.data,
                         h.token.len, "fence", (json_int_t) h.fence,
                         "expires", (json_int_t) h.expires);

        return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, root, 0);
    }

    if (rc == NGX_DECLINED) {
        /* free: the first waiter, if any is left, comes first */
        if (ngx_do_parked_next(t, NULL) == NULL) {
            return ngx_do_lock_grant(t, req, 0);
        }

        if (ngx_do_lock_grant_next(t) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (wait == 0) {
        return ngx_do_reply_error(t, 423, "lock is held");
    }

    if (ngx_do_park(t, wait, 423, "lock is held (wait timed out)") != NGX_OK)
    {
        return ngx_do_reply_error(t, 423, "lock is held");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_do_lock_release(ngx_do_turn_t *t)
{
    json_t                *root;
    ngx_int_t              rc;
    ngx_str_t              token, other;
    ngx_do_request_t      *waiter;
    ngx_do_lock_holder_t   h;

    if (ngx_do_arg(t, "token", &token) != NGX_OK || token.len == 0) {
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                  "token= is required");
    }

    rc = ngx_do_lock_holder(t, &h);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK && token.len == h.token.len
        && ngx_strncmp(token.data, h.token.data, token.len) == 0)
    {
        if (ngx_do_delete(t, &ngx_do_lock_holder_key) == NGX_ERROR
            || ngx_do_delete_alarm(t, &ngx_do_lock_lease) == NGX_ERROR
            || ngx_do_lock_grant_next(t) != NGX_OK)
        {
            return NGX_ERROR;
        }

        root = json_pack("{s:b,s:I}", "released", 1,
                         "fence", (json_int_t) h.fence);

        return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, root, 0);
    }

    /* a waiter that gives up (a do_lock request that went away) */
    for (waiter = ngx_do_parked_next(t, NULL); waiter;
         waiter = ngx_do_parked_next(t, waiter))
    {
        if (ngx_do_request_arg(t, waiter, "token", &other) == NGX_OK
            && other.len == token.len
            && ngx_strncmp(other.data, token.data, token.len) == 0)
        {
            if (ngx_do_reply_json(t, waiter, 423,
                                  json_pack("{s:s}", "error",
                                            "wait cancelled"), 0)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            root = json_pack("{s:b,s:b}", "released", 0, "cancelled", 1);

            return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, root, 0);
        }
    }

    return ngx_do_reply_error(t, NGX_HTTP_CONFLICT,
                              "token does not hold the lock");
}


static ngx_int_t
ngx_do_lock_renew(ngx_do_turn_t *t)
{
    json_t                *root;
    ngx_int_t              rc;
    ngx_str_t              token;
    ngx_msec_t             ttl, wait;
    const char            *err;
    ngx_do_lock_holder_t   h;

    err = ngx_do_lock_args(t, ngx_do_turn_request(t), &ttl, &wait, &token);
    if (err) {
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST, err);
    }

    if (token.len == 0) {
        return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                  "token= is required");
    }

    rc = ngx_do_lock_holder(t, &h);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK || token.len != h.token.len
        || ngx_strncmp(token.data, h.token.data, token.len) != 0)
    {
        return ngx_do_reply_error(t, NGX_HTTP_CONFLICT,
                                  "token does not hold the lock");
    }

    h.expires = ngx_do_now() + ttl;

    if (ngx_do_lock_store(t, &h) != NGX_OK) {
        return NGX_ERROR;
    }

    root = json_pack("{s:I,s:I,s:I}", "fence", (json_int_t) h.fence,
                     "ttl_ms", (json_int_t) ttl,
                     "expires", (json_int_t) h.expires);

    return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, root, 0);
}


static ngx_int_t
ngx_do_lock_status(ngx_do_turn_t *t)
{
    json_t                *root;
    uint64_t               version;
    ngx_int_t              rc, fence;
    ngx_str_t              value;
    ngx_do_lock_holder_t   h;

    rc = ngx_do_lock_holder(t, &h);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    fence = 0;

    if (ngx_do_get(t, &ngx_do_lock_fence_key, &value, &version) == NGX_OK) {
        fence = ngx_atoi(value.data, value.len);
        if (fence == NGX_ERROR) {
            fence = 0;
        }
    }

    root = json_pack("{s:b,s:I,s:I}", "held", rc == NGX_OK,
                     "fence", (json_int_t) fence,
                     "waiters", (json_int_t) ngx_do_parked_count(t));

    if (root && rc == NGX_OK) {
        json_object_set_new(root, "expires", json_integer(h.expires));
        json_object_set_new(root, "ttl_ms",
                            json_integer(h.expires - ngx_do_now()));
    }

    return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, root, 0);
}


/* the lease ended: the holder loses the lock, the first waiter gets it */
static ngx_int_t
ngx_do_lock_alarm(ngx_do_turn_t *t, ngx_str_t *name)
{
    ngx_int_t              rc;
    ngx_do_lock_holder_t   h;

    if (name->len != ngx_do_lock_lease.len
        || ngx_strncmp(name->data, ngx_do_lock_lease.data, name->len) != 0)
    {
        return NGX_OK;
    }

    rc = ngx_do_lock_holder(t, &h);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        /* renewed meanwhile: the alarm follows the lease */
        return (ngx_do_set_alarm(t, &ngx_do_lock_lease, h.expires) == NGX_OK)
               ? NGX_OK : NGX_ERROR;
    }

    if (ngx_do_delete(t, &ngx_do_lock_holder_key) == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_do_lock_grant_next(t);
}


/* in a worker being replaced: a lock freed at the new owner goes to a
 * waiter parked here */
static ngx_int_t
ngx_do_lock_wake(ngx_do_turn_t *t)
{
    ngx_int_t              rc;
    ngx_do_lock_holder_t   h;

    rc = ngx_do_lock_holder(t, &h);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_do_lock_grant_next(t);
}


/* the first waiter, if any, gets the lock */
static ngx_int_t
ngx_do_lock_grant_next(ngx_do_turn_t *t)
{
    ngx_do_request_t  *waiter;

    waiter = ngx_do_parked_next(t, NULL);

    if (waiter == NULL) {
        return NGX_OK;
    }

    return ngx_do_lock_grant(t, waiter, 1);
}


static ngx_int_t
ngx_do_lock_grant(ngx_do_turn_t *t, ngx_do_request_t *req, ngx_uint_t parked)
{
    json_t                *root;
    u_char                *p;
    uint64_t               version, clock;
    ngx_int_t              n;
    ngx_str_t              value;
    ngx_msec_t             ttl, wait;
    ngx_do_lock_holder_t   h;
    u_char                 random[16];

    /* checked when the request came: a parked one cannot be wrong now */
    if (ngx_do_lock_args(t, req, &ttl, &wait, &h.token) != NULL) {
        return NGX_ERROR;
    }

    if (h.token.len == 0) {
        if (RAND_bytes(random, sizeof(random)) != 1) {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(ngx_do_turn_pool(t), 2 * sizeof(random));
        if (p == NULL) {
            return NGX_ERROR;
        }

        h.token.data = p;
        h.token.len = ngx_hex_dump(p, random, sizeof(random)) - p;
    }

    h.fence = 0;

    if (ngx_do_get(t, &ngx_do_lock_fence_key, &value, &version) == NGX_OK) {
        n = ngx_atoi(value.data, value.len);
        h.fence = (n == NGX_ERROR) ? 0 : (uint64_t) n;
    }

    clock = ngx_do_now() * 1000;
    h.fence = ngx_max(h.fence + 1, clock);
    h.expires = ngx_do_now() + ttl;

    if (ngx_do_lock_store(t, &h) != NGX_OK) {
        return NGX_ERROR;
    }

    root = json_pack("{s:s%,s:I,s:I,s:I}", "token", h.token.data,
                     h.token.len, "fence", (json_int_t) h.fence,
                     "ttl_ms", (json_int_t) ttl,
                     "expires", (json_int_t) h.expires);

    return ngx_do_reply_json(t, parked ? req : NULL, NGX_HTTP_OK, root, 0);
}


/* writes holder, fence and the lease alarm */
static ngx_int_t
ngx_do_lock_store(ngx_do_turn_t *t, ngx_do_lock_holder_t *h)
{
    u_char     *p;
    ngx_str_t   value, fence;

    p = ngx_pnalloc(ngx_do_turn_pool(t),
                    h->token.len + 2 * NGX_INT64_LEN + 2 + NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    p = ngx_sprintf(p, "%V %uL %uL", &h->token, h->fence, h->expires);
    value.len = p - value.data;

    fence.data = p;
    fence.len = ngx_sprintf(p, "%uL", h->fence) - p;

    if (ngx_do_put(t, &ngx_do_lock_holder_key, &value) != NGX_OK
        || ngx_do_put(t, &ngx_do_lock_fence_key, &fence) != NGX_OK
        || ngx_do_set_alarm(t, &ngx_do_lock_lease, h->expires) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* NGX_OK: held (its lease not over); NGX_DECLINED: free */
static ngx_int_t
ngx_do_lock_holder(ngx_do_turn_t *t, ngx_do_lock_holder_t *h)
{
    u_char     *p, *last, *sp;
    uint64_t    version;
    ngx_int_t   rc, n;
    ngx_str_t   value;

    rc = ngx_do_get(t, &ngx_do_lock_holder_key, &value, &version);

    if (rc != NGX_OK) {
        return rc;
    }

    p = value.data;
    last = p + value.len;

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL) {
        goto damaged;
    }

    h->token.data = p;
    h->token.len = sp - p;
    p = sp + 1;

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL) {
        goto damaged;
    }

    n = ngx_atoi(p, sp - p);
    if (n == NGX_ERROR) {
        goto damaged;
    }

    h->fence = (uint64_t) n;
    p = sp + 1;

    n = ngx_atoi(p, last - p);
    if (n == NGX_ERROR) {
        goto damaged;
    }

    h->expires = (uint64_t) n;

    return (h->expires > ngx_do_now()) ? NGX_OK : NGX_DECLINED;

damaged:

    ngx_log_error(NGX_LOG_ERR, ngx_do_turn_log(t), 0,
                  "do: lock holder record of namespace \"%V\" is damaged, "
                  "the lock is treated as free",
                  &ngx_do_turn_namespace(t)->name);

    return NGX_DECLINED;
}


/* ttl=, wait= and token= of a request, checked: NULL or what is wrong */
static const char *
ngx_do_lock_args(ngx_do_turn_t *t, ngx_do_request_t *req, ngx_msec_t *ttl,
    ngx_msec_t *wait, ngx_str_t *token)
{
    u_char               c;
    ngx_str_t            s;
    ngx_uint_t           i;
    ngx_do_lock_conf_t  *conf;

    conf = ngx_do_turn_namespace(t)->conf;

    *ttl = conf->ttl;
    *wait = 0;
    token->len = 0;
    token->data = NULL;

    if (ngx_do_request_arg(t, req, "ttl", &s) == NGX_OK) {
        if (ngx_do_lock_time(&s, ttl) != NGX_OK || *ttl == 0) {
            return "invalid ttl";
        }

        if (*ttl > conf->max_ttl) {
            return "ttl exceeds max_ttl";
        }
    }

    if (ngx_do_request_arg(t, req, "wait", &s) == NGX_OK
        && ngx_do_lock_time(&s, wait) != NGX_OK)
    {
        return "invalid wait";
    }

    if (ngx_do_request_arg(t, req, "token", token) == NGX_OK) {
        if (token->len == 0 || token->len > NGX_DO_LOCK_MAX_TOKEN) {
            return "invalid token";
        }

        for (i = 0; i < token->len; i++) {
            c = token->data[i];

            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
                  || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
            {
                return "invalid token";
            }
        }
    }

    return NULL;
}


/* nginx time syntax (30s, 500ms, 1h); a bare number is seconds */
static ngx_int_t
ngx_do_lock_time(ngx_str_t *s, ngx_msec_t *ms)
{
    ngx_int_t  n;

    n = ngx_parse_time(s, 0);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    *ms = (ngx_msec_t) n;

    return NGX_OK;
}

