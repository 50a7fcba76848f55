
/*
 * ngx_http_do_lock_module: the do_lock gate.
 *
 * In the access phase the request asks the lock object of its key
 * (idFromName of the key in the namespace) for the lock, with a token of
 * its own, and waits in the lock's queue for up to wait=.  Granted, it
 * goes on to its content handler (proxy_pass, ...) holding the lock, with
 * the grant's fencing token in $do_lock_fence for the upstream.  When the
 * request ends, however it ends (response sent, client gone, upstream
 * error), its pool cleanup releases the lock with that token; a request
 * that goes away while still waiting leaves the queue the same way.  So
 * the lease is bound to the request, and ttl= only bounds how long a
 * crashed worker can keep the lock.
 *
 * A request refused because the lock stayed held is logged at
 * do_lock_log_level with the namespace and the key; grants and such
 * refusals are counted per namespace in do_status.
 *
 * The calls it makes and the replies it reads are those of the lock class,
 * documented in ngx_do_lock.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "ngx_http_do.h"
#include "ngx_do_lock.h"


#define NGX_HTTP_DO_LOCK_TOKEN_LEN  32

/* the bytes of a key that a log line shows */
#define NGX_HTTP_DO_LOCK_LOG_KEY    128


typedef struct {
    ngx_str_t                  ns_name;
    ngx_do_namespace_t        *ns;
    ngx_http_complex_value_t   key;
    ngx_msec_t                 ttl;           /* 0: the namespace's */
    ngx_msec_t                 wait;
    ngx_uint_t                 status;
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_http_do_lock_t;


typedef struct {
    ngx_http_do_lock_t        *lock;
    ngx_uint_t                 log_level;
} ngx_http_do_lock_loc_conf_t;


typedef struct {
    ngx_array_t                all;           /* ngx_http_do_lock_t * */
} ngx_http_do_lock_main_conf_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_http_do_lock_t        *lock;
    ngx_str_t                  key;
    u_char                     id[NGX_DO_ID_LEN];
    u_char                     token[NGX_HTTP_DO_LOCK_TOKEN_LEN];
    ngx_str_t                  fence;
    ngx_msec_t                 ttl;           /* the grant's lease */
    ngx_event_t                renew;
    ngx_uint_t                 status;        /* the answer, 0: granted */
    unsigned                   waiting:1;
    unsigned                   in_handler:1;
    unsigned                   done:1;
    unsigned                   release:1;     /* at the end, send a release */
} ngx_http_do_lock_ctx_t;


static ngx_int_t ngx_http_do_lock_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_do_lock_acquire(ngx_http_request_t *r,
    ngx_http_do_lock_t *lock, ngx_str_t *key, u_char *id);
static void ngx_http_do_lock_reply(ngx_http_request_t *r, void *data,
    ngx_http_do_reply_t *reply);
static void ngx_http_do_lock_refused(ngx_http_request_t *r,
    ngx_http_do_lock_ctx_t *ctx);
static void ngx_http_do_lock_cleanup(void *data);
static ngx_http_do_lock_ctx_t *ngx_http_do_lock_find(ngx_http_request_t *r,
    ngx_http_do_lock_t *lock, u_char *id);
static void ngx_http_do_lock_renew(ngx_event_t *ev);
static void ngx_http_do_lock_send(ngx_http_do_lock_ctx_t *ctx,
    ngx_uint_t method);
static ngx_int_t ngx_http_do_lock_fence_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_do_lock_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_do_lock_init(ngx_conf_t *cf);
static void *ngx_http_do_lock_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_do_lock_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_do_lock_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_do_lock(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_http_do_lock_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_do_lock_commands[] = {

    { ngx_string("do_lock"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_do_lock,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_lock_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_do_lock_loc_conf_t, log_level),
      &ngx_http_do_lock_log_levels },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_do_lock_module_ctx = {
    ngx_http_do_lock_preconfiguration,     /* preconfiguration */
    ngx_http_do_lock_init,                 /* postconfiguration */

    ngx_http_do_lock_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_do_lock_create_loc_conf,      /* create location configuration */
    ngx_http_do_lock_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_do_lock_module = {
    NGX_MODULE_V1,
    &ngx_http_do_lock_module_ctx,          /* module context */
    ngx_http_do_lock_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_do_lock_fence_name = ngx_string("do_lock_fence");


static ngx_int_t
ngx_http_do_lock_handler(ngx_http_request_t *r)
{
    ngx_str_t                     key;
    ngx_http_do_lock_t           *lock;
    ngx_http_do_lock_ctx_t       *ctx;
    ngx_http_do_lock_loc_conf_t  *dlcf;
    u_char                        id[NGX_DO_ID_LEN];

    if (r != r->main) {
        return NGX_DECLINED;
    }

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_do_lock_module);
    lock = dlcf->lock;

    if (lock == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_do_lock_module);

    if (ctx == NULL) {
        if (ngx_http_complex_value(r, &lock->key, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (key.len == 0) {
            /* like limit_req: an empty key is not locked */
            return NGX_DECLINED;
        }

        ngx_do_id_from_name(lock->ns, &key, id);

        /* after an internal redirect: the same lock is held already */
        ctx = ngx_http_do_lock_find(r, lock, id);

        if (ctx) {
            ngx_http_set_ctx(r, ctx, ngx_http_do_lock_module);
        }
    }

    if (ctx) {
        if (!ctx->done) {
            return NGX_AGAIN;
        }

        r->read_event_handler = ngx_http_block_reading;

        return ctx->status ? (ngx_int_t) ctx->status : NGX_DECLINED;
    }

    return ngx_http_do_lock_acquire(r, lock, &key, id);
}


/*
 * Asks the lock object for the lock, with a random token; the request
 * waits (NGX_AGAIN) until it answers, unless it answered at once.
 */
static ngx_int_t
ngx_http_do_lock_acquire(ngx_http_request_t *r, ngx_http_do_lock_t *lock,
    ngx_str_t *key, u_char *id)
{
    u_char                  *p;
    ngx_str_t                args;
    ngx_pool_cleanup_t      *cln;
    ngx_http_do_lock_ctx_t  *ctx;
    u_char                   random[NGX_HTTP_DO_LOCK_TOKEN_LEN / 2];

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_do_lock_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->lock = lock;
    ctx->key = *key;

    if (RAND_bytes(random, sizeof(random)) != 1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_hex_dump(ctx->token, random, sizeof(random));
    ngx_memcpy(ctx->id, id, NGX_DO_ID_LEN);

    args.data = ngx_pnalloc(r->pool, sizeof("ttl=ms&wait=ms&token=") - 1
                                     + 2 * NGX_INT_T_LEN
                                     + NGX_HTTP_DO_LOCK_TOKEN_LEN);
    if (args.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = args.data;

    if (lock->ttl) {
        p = ngx_sprintf(p, "ttl=%Mms&", lock->ttl);
    }

    p = ngx_sprintf(p, "wait=%Mms&token=%*s", lock->wait,
                    (size_t) NGX_HTTP_DO_LOCK_TOKEN_LEN, ctx->token);
    args.len = p - args.data;

    /* before the call's own cleanup: cleanups run last added first */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_do_lock_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_do_lock_module);

    ctx->release = 1;
    ctx->waiting = 1;
    ctx->in_handler = 1;

    if (ngx_http_do_call(r, lock->ns, ctx->id, NGX_HTTP_POST, &args,
                         lock->wait + ngx_do_call_timeout(),
                         ngx_http_do_lock_reply, ctx)
        != NGX_OK)
    {
        ctx->in_handler = 0;
        ctx->release = 0;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->in_handler = 0;

    if (!ctx->done) {
        /* a client that goes away while it waits leaves the queue */
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;
    }

    return ctx->status ? (ngx_int_t) ctx->status : NGX_DECLINED;
}


static void
ngx_http_do_lock_reply(ngx_http_request_t *r, void *data,
    ngx_http_do_reply_t *reply)
{
    ngx_http_do_lock_ctx_t  *ctx = data;

    size_t         n;
    json_t        *root, *fence, *ttl;
    json_error_t   err;
    u_char         esc[NGX_DO_LOG_ESCAPE_LEN];

    ctx->waiting = 0;
    ctx->done = 1;

    if (reply->failed) {
        /* the owner may still grant it: the cleanup releases it then */
        ngx_do_log_throttled(NGX_LOG_ERR, r->connection->log, 0,
                             NGX_DO_LOG_UNAVAILABLE,
                             "do: lock \"%V\" did not answer (%ui)",
                             &ctx->lock->ns_name, reply->status);
        ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        goto done;
    }

    if (reply->status == 423) {
        ngx_http_do_lock_refused(r, ctx);
        ctx->status = ctx->lock->status;
        ctx->release = 0;
        goto done;
    }

    if (reply->status != NGX_HTTP_OK) {
        n = ngx_do_log_escape(esc, sizeof(esc), reply->body.data,
                              reply->body.len);
        ngx_do_log_throttled(NGX_LOG_ERR, r->connection->log, 0,
                             NGX_DO_LOG_UNAVAILABLE,
                             "do: lock \"%V\" answered %ui: %*s",
                             &ctx->lock->ns_name, reply->status, n, esc);
        ctx->status = (reply->status == 507 || reply->status >= 500)
                      ? NGX_HTTP_SERVICE_UNAVAILABLE
                      : NGX_HTTP_INTERNAL_SERVER_ERROR;
        ctx->release = (reply->status >= 500);
        goto done;
    }

    root = json_loadb((char *) reply->body.data, reply->body.len, 0, &err);
    fence = root ? json_object_get(root, "fence") : NULL;

    if (fence == NULL || !json_is_integer(fence)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "do: lock \"%V\" granted without a fence",
                      &ctx->lock->ns_name);
        ctx->status = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        ctx->fence.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);

        if (ctx->fence.data == NULL) {
            ctx->status = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            ctx->fence.len = ngx_sprintf(ctx->fence.data, "%L",
                                         (int64_t) json_integer_value(fence))
                             - ctx->fence.data;

            ngx_do_status_count(ctx->lock->ns, NGX_DO_STAT_LOCK_GRANTS);
        }

        /* the lease is renewed while the request runs: a third of it */
        ttl = json_object_get(root, "ttl_ms");

        if (ttl && json_is_integer(ttl) && json_integer_value(ttl) >= 3) {
            ctx->ttl = (ngx_msec_t) json_integer_value(ttl);
            ctx->renew.handler = ngx_http_do_lock_renew;
            ctx->renew.data = ctx;
            ctx->renew.log = r->connection->log;
            ctx->renew.cancelable = 1;
            ngx_add_timer(&ctx->renew, ctx->ttl / 3);
        }
    }

    if (root) {
        json_decref(root);
    }

done:

    if (!ctx->in_handler) {
        ngx_http_core_run_phases(r);
    }
}


/*
 * The lock stayed held for wait=: counted, and logged at do_lock_log_level
 * with the key (its first NGX_HTTP_DO_LOCK_LOG_KEY bytes, escaped)
 */
static void
ngx_http_do_lock_refused(ngx_http_request_t *r, ngx_http_do_lock_ctx_t *ctx)
{
    size_t                        len;
    ngx_http_do_lock_loc_conf_t  *dlcf;
    u_char                        key[4 * NGX_HTTP_DO_LOCK_LOG_KEY + 3];

    ngx_do_status_count(ctx->lock->ns, NGX_DO_STAT_LOCK_TIMEOUTS);

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_do_lock_module);

    if (r->connection->log->log_level < dlcf->log_level) {
        return;
    }

    len = ngx_do_log_escape(key, sizeof(key), ctx->key.data, ctx->key.len);

    ngx_log_error(dlcf->log_level, r->connection->log, 0,
                  "do: lock \"%V\" is held, request refused after "
                  "wait=%Mms, key \"%*s\"", &ctx->lock->ns_name,
                  ctx->lock->wait, len, key);
}


/* the request ends: whatever it holds or waits for is let go */
static void
ngx_http_do_lock_cleanup(void *data)
{
    ngx_http_do_lock_ctx_t  *ctx = data;

    if (ctx->renew.timer_set) {
        ngx_del_timer(&ctx->renew);
    }

    if (ctx->release) {
        ngx_http_do_lock_send(ctx, NGX_HTTP_DELETE);
    }
}


static void
ngx_http_do_lock_renew(ngx_event_t *ev)
{
    ngx_http_do_lock_ctx_t  *ctx = ev->data;

    ngx_http_do_lock_send(ctx, NGX_HTTP_PUT);
    ngx_add_timer(ev, ctx->ttl / 3);
}


/* a release (DELETE) or a renewal (PUT) that nobody waits for */
static void
ngx_http_do_lock_send(ngx_http_do_lock_ctx_t *ctx, ngx_uint_t method)
{
    u_char     buf[sizeof("token=&ttl=ms") - 1 + NGX_HTTP_DO_LOCK_TOKEN_LEN
                   + NGX_INT_T_LEN];
    u_char    *p;
    ngx_str_t  args;

    p = ngx_sprintf(buf, "token=%*s", (size_t) NGX_HTTP_DO_LOCK_TOKEN_LEN,
                    ctx->token);

    if (method == NGX_HTTP_PUT) {
        p = ngx_sprintf(p, "&ttl=%Mms", ctx->ttl);
    }

    args.data = buf;
    args.len = p - buf;

    if (ngx_http_do_notify(ctx->lock->ns, ctx->id, method, &args)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "do: lock \"%V\" could not be %s, its lease ends it",
                      &ctx->lock->ns_name,
                      method == NGX_HTTP_PUT ? "renewed" : "released");
    }
}


/*
 * The context of this lock and object in a request whose module contexts
 * an internal redirect cleared: found again through its pool cleanup.
 * (lock NULL: the last lock the request took, for $do_lock_fence.)
 */
static ngx_http_do_lock_ctx_t *
ngx_http_do_lock_find(ngx_http_request_t *r, ngx_http_do_lock_t *lock,
    u_char *id)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_do_lock_ctx_t  *ctx;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_do_lock_cleanup) {
            continue;
        }

        ctx = cln->data;

        if (lock == NULL
            || (ctx->lock == lock
                && ngx_memcmp(ctx->id, id, NGX_DO_ID_LEN) == 0))
        {
            return ctx;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_do_lock_fence_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_do_lock_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_do_lock_module);

    if (ctx == NULL) {
        ctx = ngx_http_do_lock_find(r->main, NULL, NULL);
    }

    if (ctx == NULL || ctx->fence.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ctx->fence.data;
    v->len = ctx->fence.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_do_lock_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_do_lock_fence_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_do_lock_fence_variable;

    return NGX_OK;
}


/* resolves the namespaces (they may come later in the file), adds the gate */
static ngx_int_t
ngx_http_do_lock_init(ngx_conf_t *cf)
{
    ngx_uint_t                     i;
    ngx_do_lock_conf_t            *conf;
    ngx_http_handler_pt           *h;
    ngx_http_do_lock_t           **all;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_do_lock_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_do_lock_module);

    all = lmcf->all.elts;

    for (i = 0; i < lmcf->all.nelts; i++) {
        all[i]->ns = ngx_http_do_gate_namespace(cf, &all[i]->ns_name,
                                                &ngx_do_lock_class, "do_lock",
                                                all[i]->file, all[i]->line);
        if (all[i]->ns == NULL) {
            return NGX_ERROR;
        }

        /* the lock would refuse every request of this location */
        conf = all[i]->ns->conf;

        if (all[i]->ttl > conf->max_ttl) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "do_lock ttl=%Mms exceeds max_ttl=%Mms of do "
                          "namespace \"%V\" in %s:%ui", all[i]->ttl,
                          conf->max_ttl, &all[i]->ns_name, all[i]->file,
                          all[i]->line);
            return NGX_ERROR;
        }
    }

    if (lmcf->all.nelts == 0) {
        return NGX_OK;
    }

    /*
     * Access handlers run in the reverse order of their registration, and
     * this module comes before do_limit: a request is rate limited before
     * it takes a lock.
     */
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_do_lock_handler;

    return NGX_OK;
}


static void *
ngx_http_do_lock_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_do_lock_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_do_lock_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->all, cf->pool, 4, sizeof(ngx_http_do_lock_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static void *
ngx_http_do_lock_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_do_lock_loc_conf_t  *dlcf;

    dlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_do_lock_loc_conf_t));
    if (dlcf == NULL) {
        return NULL;
    }

    dlcf->log_level = NGX_CONF_UNSET_UINT;

    return dlcf;
}


static char *
ngx_http_do_lock_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_do_lock_loc_conf_t  *prev = parent;
    ngx_http_do_lock_loc_conf_t  *conf = child;

    if (conf->lock == NULL) {
        conf->lock = prev->lock;
    }

    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_ERR);

    return NGX_CONF_OK;
}


/* do_lock NS key=EXPR [ttl=TIME] [wait=TIME] [status=423] */
static char *
ngx_http_do_lock(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_lock_loc_conf_t  *dlcf = conf;

    ngx_int_t                      n;
    ngx_str_t                     *value, s;
    ngx_uint_t                     i;
    ngx_http_do_lock_t            *lock, **ref;
    ngx_http_do_lock_main_conf_t  *lmcf;

    if (dlcf->lock) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lock = ngx_pcalloc(cf->pool, sizeof(ngx_http_do_lock_t));
    if (lock == NULL) {
        return NGX_CONF_ERROR;
    }

    lock->ns_name = value[1];
    lock->status = 423;
    lock->file = cf->conf_file->file.name.data;
    lock->line = cf->conf_file->line;

    for (i = 2; i < cf->args->nelts; i++) {

        n = ngx_http_do_gate_param(cf, &value[i], &lock->key, &lock->status);

        if (n == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (n == NGX_OK) {
            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0
            || ngx_strncmp(value[i].data, "wait=", 5) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || (value[i].data[0] == 't' && n == 0)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid time in \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (value[i].data[0] == 't') {
                lock->ttl = (ngx_msec_t) n;

            } else {
                lock->wait = (ngx_msec_t) n;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (lock->key.value.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "do_lock \"%V\" needs key=", &value[1]);
        return NGX_CONF_ERROR;
    }

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_do_lock_module);

    ref = ngx_array_push(&lmcf->all);
    if (ref == NULL) {
        return NGX_CONF_ERROR;
    }

    *ref = lock;
    dlcf->lock = lock;

    return NGX_CONF_OK;
}
