
/*
 * ngx_http_do_limit_module: the do_limit gate.
 *
 * In the access phase, every do_limit of the location takes from the
 * bucket of its key, in the namespace's table (ngx_do_buckets.c), decided
 * here at once.  On Redis a key that the table has cold is read from
 * Redis first (ngx_do_buckets_load()); the loads of one request go out
 * together, so it waits one round trip at most.  When all have answered:
 * any rejection answers the request with the limit's status, Retry-After
 * and RateLimit headers, and gives back the tokens the other limits took;
 * otherwise the request goes on (after a delay, with delay=).  A limiter
 * that cannot answer (Redis, or a table full of live buckets) fails open
 * or closed as its namespace says.
 *
 * Rejections are logged at do_limit_log_level, delays one level lower,
 * with the namespace and the key, and counted per namespace in do_status
 * (passed, delayed, rejected).
 *
 * Like limit_req, a request is limited once: an internal redirect (index,
 * try_files, error_page) clears the module contexts, so the context is
 * also kept in a pool cleanup and found there again; a request that has
 * been decided is neither charged nor given its headers a second time.
 *
 * What it reads of the rate_limiter class is in ngx_do_rate_limiter.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_do.h"
#include "ngx_do_rate_limiter.h"
#include "ngx_do_buckets.h"


#define NGX_HTTP_DO_LIMIT_PASSED            1
#define NGX_HTTP_DO_LIMIT_DELAYED           2
#define NGX_HTTP_DO_LIMIT_REJECTED          3
#define NGX_HTTP_DO_LIMIT_REJECTED_DRY_RUN  4
#define NGX_HTTP_DO_LIMIT_DELAYED_DRY_RUN   5


#define NGX_HTTP_DO_LIMIT_UNSET            -2
#define NGX_HTTP_DO_LIMIT_NODELAY          -1

/* the bytes of a key that a log line shows */
#define NGX_HTTP_DO_LIMIT_LOG_KEY           128


typedef struct {
    ngx_str_t                  ns_name;
    ngx_do_namespace_t        *ns;
    ngx_http_complex_value_t   key;
    ngx_uint_t                 status;        /* 0: do_limit_status */
    ngx_flag_t                 headers;
    ngx_int_t                  burst;         /* or UNSET: the namespace's */
    ngx_int_t                  delay;         /* or UNSET, or NODELAY */
    int64_t                    bucket_burst;  /* in force: the limit's, */
    int64_t                    bucket_delay;  /* or the namespace's */
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_http_do_limit_t;


typedef struct {
    ngx_array_t               *limits;        /* ngx_http_do_limit_t * */
    ngx_uint_t                 limit_log_level;
    ngx_uint_t                 delay_log_level;
    ngx_uint_t                 status;        /* do_limit_status */
    ngx_flag_t                 dry_run;       /* unset: the namespace's */
} ngx_http_do_limit_loc_conf_t;


typedef struct {
    ngx_array_t                all;           /* ngx_http_do_limit_t * */
} ngx_http_do_limit_main_conf_t;


/* the answer of one limit */
typedef struct {
    ngx_http_do_limit_t       *limit;
    ngx_http_request_t        *request;
    ngx_str_t                  key;
    ngx_do_buckets_wait_t      wait;          /* a cold key's load */
    ngx_uint_t                 status;        /* 0: skipped (empty key) */
    int64_t                    remaining;
    int64_t                    next;          /* ms, see the class */
    int64_t                    retry;         /* ms */
    int64_t                    delay;         /* ms */
    unsigned                   failed:1;
} ngx_http_do_limit_result_t;


typedef struct {
    ngx_http_do_limit_result_t  *results;
    ngx_uint_t                   n;
    ngx_uint_t                   outstanding;
    ngx_uint_t                   status;      /* $do_limit_status */
    int64_t                      remaining;   /* $do_limit_remaining */
    unsigned                     waiting:1;
    unsigned                     in_handler:1;
    unsigned                     done:1;
} ngx_http_do_limit_ctx_t;


static ngx_int_t ngx_http_do_limit_handler(ngx_http_request_t *r);
static ngx_http_do_limit_ctx_t *ngx_http_do_limit_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_do_limit_cleanup(void *data);
static ngx_int_t ngx_http_do_limit_table(ngx_http_do_limit_result_t *res);
static void ngx_http_do_limit_verdict(ngx_http_do_limit_result_t *res,
    ngx_int_t rc, ngx_do_rate_limiter_verdict_t *v);
static void ngx_http_do_limit_loaded(ngx_do_buckets_wait_t *w);
static ngx_int_t ngx_http_do_limit_decide(ngx_http_request_t *r,
    ngx_http_do_limit_ctx_t *ctx);
static ngx_flag_t ngx_http_do_limit_dry_run(ngx_http_request_t *r,
    ngx_http_do_limit_t *limit);
static ngx_int_t ngx_http_do_limit_weigh(ngx_http_request_t *r,
    ngx_http_do_limit_ctx_t *ctx, ngx_http_do_limit_result_t *res,
    ngx_uint_t *dry);
static ngx_int_t ngx_http_do_limit_reject(ngx_http_request_t *r,
    ngx_http_do_limit_ctx_t *ctx, ngx_http_do_limit_result_t *rejected);
static ngx_int_t ngx_http_do_limit_hold(ngx_http_request_t *r,
    ngx_http_do_limit_ctx_t *ctx, int64_t delay);
static ngx_int_t ngx_http_do_limit_headers(ngx_http_request_t *r,
    ngx_http_do_limit_result_t *res, ngx_uint_t rejected);
static void ngx_http_do_limit_delay(ngx_http_request_t *r);
static ngx_int_t ngx_http_do_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_do_limit_remaining_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_do_limit_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_do_limit_init(ngx_conf_t *cf);
static void *ngx_http_do_limit_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_do_limit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_do_limit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_do_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_do_limit_bucket(ngx_conf_t *cf,
    ngx_http_do_limit_t *limit, ngx_str_t *param);
static ngx_int_t ngx_http_do_limit_bucket_check(ngx_conf_t *cf,
    ngx_http_do_limit_t *limit);


static ngx_conf_num_bounds_t  ngx_http_do_limit_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_conf_enum_t  ngx_http_do_limit_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_do_limit_commands[] = {

    { ngx_string("do_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_do_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_limit_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_do_limit_loc_conf_t, limit_log_level),
      &ngx_http_do_limit_log_levels },

    { ngx_string("do_limit_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_do_limit_loc_conf_t, status),
      &ngx_http_do_limit_status_bounds },

    { ngx_string("do_limit_dry_run"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_do_limit_loc_conf_t, dry_run),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_do_limit_module_ctx = {
    ngx_http_do_limit_preconfiguration,    /* preconfiguration */
    ngx_http_do_limit_init,                /* postconfiguration */

    ngx_http_do_limit_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_do_limit_create_loc_conf,     /* create location configuration */
    ngx_http_do_limit_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_do_limit_module = {
    NGX_MODULE_V1,
    &ngx_http_do_limit_module_ctx,         /* module context */
    ngx_http_do_limit_commands,            /* module directives */
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


static ngx_http_variable_t  ngx_http_do_limit_vars[] = {

    { ngx_string("do_limit_status"), NULL,
      ngx_http_do_limit_status_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("do_limit_remaining"), NULL,
      ngx_http_do_limit_remaining_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_do_limit_status_names[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("DELAYED"),
    ngx_string("REJECTED"),
    ngx_string("REJECTED_DRY_RUN"),
    ngx_string("DELAYED_DRY_RUN")
};


static ngx_int_t
ngx_http_do_limit_handler(ngx_http_request_t *r)
{
    ngx_str_t                      key;
    ngx_uint_t                     i;
    ngx_pool_cleanup_t            *cln;
    ngx_http_do_limit_t          **limit;
    ngx_http_do_limit_ctx_t       *ctx;
    ngx_http_do_limit_result_t    *res;
    ngx_http_do_limit_loc_conf_t  *llcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_do_limit_module);

    if (llcf->limits == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_do_limit_get_ctx(r);

    if (ctx) {
        if (ctx->done) {
            return NGX_DECLINED;
        }

        if (ctx->waiting) {
            return ctx->outstanding ? NGX_AGAIN
                                    : ngx_http_do_limit_decide(r, ctx);
        }

        return NGX_AGAIN;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_do_limit_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->n = llcf->limits->nelts;
    ctx->remaining = -1;
    ctx->results = ngx_pcalloc(r->pool,
                               ctx->n * sizeof(ngx_http_do_limit_result_t));
    if (ctx->results == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_do_limit_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_do_limit_module);

    limit = llcf->limits->elts;

    /* all limits are asked at once; cold keys are loaded together */
    ctx->in_handler = 1;
    ctx->waiting = 1;

    for (i = 0; i < ctx->n; i++) {
        res = &ctx->results[i];
        res->limit = limit[i];
        res->request = r;

        if (ngx_http_complex_value(r, &limit[i]->key, &key) != NGX_OK) {
            ctx->in_handler = 0;
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (key.len == 0) {
            continue;
        }

        res->key = key;

        if (ngx_http_do_limit_table(res) == NGX_AGAIN) {
            ctx->outstanding++;
        }
    }

    ctx->in_handler = 0;

    if (ctx->outstanding) {
        return NGX_AGAIN;
    }

    return ngx_http_do_limit_decide(r, ctx);
}


/*
 * The request's context, also after an internal redirect cleared it (as
 * the realip module finds its own); set again, so that later phases and
 * variables see it.
 */
static ngx_http_do_limit_ctx_t *
ngx_http_do_limit_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_do_limit_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_do_limit_module);

    if (ctx != NULL || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_do_limit_cleanup) {
            ctx = cln->data;

            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "do_limit context found after a redirect");

            ngx_http_set_ctx(r, ctx, ngx_http_do_limit_module);
            break;
        }
    }

    return ctx;
}


/*
 * The take decided in the namespace's bucket table; NGX_AGAIN: its key is
 * cold, and the load answers (ngx_http_do_limit_loaded())
 */
static ngx_int_t
ngx_http_do_limit_table(ngx_http_do_limit_result_t *res)
{
    ngx_int_t                       rc;
    ngx_do_rate_limiter_verdict_t   v;

    rc = ngx_do_buckets_take(res->limit->ns, &res->key,
                             res->limit->bucket_burst,
                             res->limit->bucket_delay, &v,
                             res->request->connection->log);

    if (rc != NGX_AGAIN) {
        ngx_http_do_limit_verdict(res, rc, &v);
        return NGX_OK;
    }

    res->wait.burst = res->limit->bucket_burst;
    res->wait.delay = res->limit->bucket_delay;
    res->wait.handler = ngx_http_do_limit_loaded;
    res->wait.data = res;

    if (ngx_do_buckets_load(res->limit->ns, &res->key, &res->wait)
        != NGX_OK)
    {
        /* storage is unavailable: the limiter did not answer */
        res->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        res->failed = 1;
        return NGX_OK;
    }

    return NGX_AGAIN;
}


static void
ngx_http_do_limit_verdict(ngx_http_do_limit_result_t *res, ngx_int_t rc,
    ngx_do_rate_limiter_verdict_t *v)
{
    res->status = (rc == NGX_OK) ? NGX_HTTP_OK
                  : (rc == NGX_BUSY) ? NGX_HTTP_TOO_MANY_REQUESTS
                  : (rc == NGX_DECLINED) ? NGX_HTTP_INSUFFICIENT_STORAGE
                                         : NGX_HTTP_INTERNAL_SERVER_ERROR;
    res->failed = (rc != NGX_OK && rc != NGX_BUSY);
    res->remaining = v->remaining;
    res->next = v->next;
    res->retry = v->retry;
    res->delay = v->delay;
}


/* the cleanup carries the context (see above), and ends the loads */
static void
ngx_http_do_limit_cleanup(void *data)
{
    ngx_http_do_limit_ctx_t  *ctx = data;

    ngx_uint_t  i;

    for (i = 0; ctx->results && i < ctx->n; i++) {
        ngx_do_buckets_cancel(&ctx->results[i].wait);
    }
}


/* a cold key was loaded and its take decided (or storage failed) */
static void
ngx_http_do_limit_loaded(ngx_do_buckets_wait_t *w)
{
    ngx_http_do_limit_result_t  *res = w->data;

    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_http_do_limit_ctx_t  *ctx;

    r = res->request;
    c = r->connection;
    ctx = ngx_http_do_limit_get_ctx(r);

    if (w->rc == NGX_ERROR) {
        /* storage did not answer: the limiter did not */
        res->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        res->failed = 1;

    } else {
        ngx_http_do_limit_verdict(res, w->rc, &w->v);
    }

    ctx->outstanding--;

    if (ctx->outstanding || ctx->in_handler) {
        return;
    }

    /* the last answer: let the access phase go on */
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_do_limit_decide(ngx_http_request_t *r, ngx_http_do_limit_ctx_t *ctx)
{
    int64_t                      delay;
    ngx_int_t                    rc;
    ngx_uint_t                   i, dry, dry_delayed, applied;
    ngx_http_do_limit_result_t  *res, *rejected;

    ctx->waiting = 0;
    rejected = NULL;
    delay = 0;
    dry = 0;
    dry_delayed = 0;
    applied = 0;

    for (i = 0; i < ctx->n; i++) {
        res = &ctx->results[i];

        if (res->status == 0) {
            continue;
        }

        applied = 1;

        rc = ngx_http_do_limit_weigh(r, ctx, res, &dry);

        if (rc == NGX_OK && res->delay > 0
            && ngx_http_do_limit_dry_run(r, res->limit))
        {
            /* as limit_req's dry run: not held, but marked */
            dry_delayed = 1;

        } else if (rc == NGX_OK) {
            delay = ngx_max(delay, res->delay);

        } else if (rc == NGX_BUSY
                   && (rejected == NULL
                       || (rejected->failed && !res->failed)))
        {
            /* a rejection by a limiter wins over a failure closed */
            rejected = res;
        }
    }

    if (rejected) {
        return ngx_http_do_limit_reject(r, ctx, rejected);
    }

    for (i = 0; i < ctx->n; i++) {
        res = &ctx->results[i];

        if (res->status != 0 && !res->failed && res->limit->headers
            && ngx_http_do_limit_headers(r, res, 0) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (delay > 0) {
        return ngx_http_do_limit_hold(r, ctx, delay);
    }

    if (applied) {
        ctx->status = dry ? NGX_HTTP_DO_LIMIT_REJECTED_DRY_RUN
                          : dry_delayed ? NGX_HTTP_DO_LIMIT_DELAYED_DRY_RUN
                                        : NGX_HTTP_DO_LIMIT_PASSED;
    }

    ctx->done = 1;

    return NGX_DECLINED;
}


/* do_limit_dry_run of the location, or the namespace's dry_run */
static ngx_flag_t
ngx_http_do_limit_dry_run(ngx_http_request_t *r, ngx_http_do_limit_t *limit)
{
    ngx_do_rate_limiter_conf_t    *conf;
    ngx_http_do_limit_loc_conf_t  *llcf;

    conf = limit->ns->conf;
    llcf = ngx_http_get_module_loc_conf(r, ngx_http_do_limit_module);

    return (llcf->dry_run != NGX_CONF_UNSET) ? llcf->dry_run : conf->dry_run;
}


/*
 * One limit's answer: NGX_OK (passed), NGX_BUSY (rejects the request: a
 * rejection, or a failure where the limit fails closed), NGX_DECLINED (no
 * say: failed open, or rejected in a dry run, which sets *dry).
 */
static ngx_int_t
ngx_http_do_limit_weigh(ngx_http_request_t *r, ngx_http_do_limit_ctx_t *ctx,
    ngx_http_do_limit_result_t *res, ngx_uint_t *dry)
{
    size_t                         len;
    ngx_flag_t                     dry_run;
    ngx_do_namespace_t            *ns;
    ngx_do_rate_limiter_conf_t    *conf;
    ngx_http_do_limit_loc_conf_t  *llcf;
    u_char                         key[4 * NGX_HTTP_DO_LIMIT_LOG_KEY + 3];

    ns = res->limit->ns;
    conf = ns->conf;
    dry_run = ngx_http_do_limit_dry_run(r, res->limit);

    if (res->failed && res->status == NGX_HTTP_INSUFFICIENT_STORAGE) {
        ngx_do_log_throttled(NGX_LOG_ERR, r->connection->log, 0,
                             NGX_DO_LOG_FULL,
                             "do: rate limiter \"%V\": no room for a new "
                             "key among the live buckets (size=), failing %s",
                             &ns->name, conf->fail_closed ? "closed" : "open");

        return conf->fail_closed ? NGX_BUSY : NGX_DECLINED;
    }

    if (res->failed) {
        ngx_do_log_throttled(NGX_LOG_ERR, r->connection->log, 0,
                             NGX_DO_LOG_UNAVAILABLE,
                             "do: rate limiter \"%V\" did not answer (%ui), "
                             "failing %s", &res->limit->ns->name, res->status,
                             conf->fail_closed ? "closed" : "open");

        return conf->fail_closed ? NGX_BUSY : NGX_DECLINED;
    }

    if (ctx->remaining < 0 || res->remaining < ctx->remaining) {
        ctx->remaining = res->remaining;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_do_limit_module);

    if (res->status != NGX_HTTP_TOO_MANY_REQUESTS) {

        if (res->delay <= 0) {
            ngx_do_status_count(ns, NGX_DO_STAT_LIMIT_PASSED);
            return NGX_OK;
        }

        ngx_do_status_count(ns, NGX_DO_STAT_LIMIT_DELAYED);

        if (r->connection->log->log_level >= llcf->delay_log_level) {
            len = ngx_do_log_escape(key, sizeof(key), res->key.data,
                                    res->key.len);

            ngx_log_error(llcf->delay_log_level, r->connection->log, 0,
                          "do: delaying request%s by \"%V\", %L ms, "
                          "key \"%*s\"", dry_run ? ", dry run," : "",
                          &ns->name, res->delay, len, key);
        }

        return NGX_OK;
    }

    ngx_do_status_count(ns, NGX_DO_STAT_LIMIT_REJECTED);

    if (r->connection->log->log_level >= llcf->limit_log_level) {
        len = ngx_do_log_escape(key, sizeof(key), res->key.data,
                                res->key.len);

        ngx_log_error(llcf->limit_log_level, r->connection->log, 0,
                      "do: limiting requests%s by \"%V\", retry in %L ms, "
                      "key \"%*s\"", dry_run ? ", dry run," : "",
                      &ns->name, res->retry, len, key);
    }

    if (dry_run) {
        *dry = 1;
        return NGX_DECLINED;
    }

    return NGX_BUSY;
}


/* the request is rejected: the other limits get their tokens back */
static ngx_int_t
ngx_http_do_limit_reject(ngx_http_request_t *r, ngx_http_do_limit_ctx_t *ctx,
    ngx_http_do_limit_result_t *rejected)
{
    ngx_uint_t                     i;
    ngx_http_do_limit_result_t    *res;
    ngx_http_do_limit_loc_conf_t  *llcf;

    ctx->status = NGX_HTTP_DO_LIMIT_REJECTED;
    ctx->remaining = 0;
    ctx->done = 1;

    for (i = 0; i < ctx->n; i++) {
        res = &ctx->results[i];

        if (res->status != NGX_HTTP_OK || res->failed) {
            continue;
        }

        ngx_do_buckets_refund(res->limit->ns, &res->key);
    }

    if (rejected->failed) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (ngx_http_do_limit_headers(r, rejected, 1) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rejected->limit->status) {
        return rejected->limit->status;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_do_limit_module);

    return llcf->status;
}


/* delay= of a passing request: it waits, then the access phase goes on */
static ngx_int_t
ngx_http_do_limit_hold(ngx_http_request_t *r, ngx_http_do_limit_ctx_t *ctx,
    int64_t delay)
{
    ctx->status = NGX_HTTP_DO_LIMIT_DELAYED;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "do_limit delaying request for %L ms", delay);

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_do_limit_delay;

    r->connection->write->delayed = 1;
    ngx_add_timer(r->connection->write, (ngx_msec_t) delay);

    return NGX_AGAIN;
}


static void
ngx_http_do_limit_delay(ngx_http_request_t *r)
{
    ngx_event_t              *wev;
    ngx_http_do_limit_ctx_t  *ctx;

    wev = r->connection->write;

    if (wev->delayed) {
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_do_limit_module);
    ctx->done = 1;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


/*
 * draft-ietf-httpapi-ratelimit-headers-10, see ngx_do_rate_limiter_policy:
 *   RateLimit-Policy: "ns";q=<quota>;w=<window seconds>
 *   RateLimit: "ns";r=<remaining>;t=<seconds until one more than r passes>
 * and Retry-After on a rejection (then t is the same).
 */
static ngx_int_t
ngx_http_do_limit_headers(ngx_http_request_t *r,
    ngx_http_do_limit_result_t *res, ngx_uint_t rejected)
{
    u_char                      *p;
    uint64_t                     q, w;
    ngx_str_t                   *name;
    ngx_do_rate_limiter_conf_t  *conf;

    name = &res->limit->ns->name;
    conf = res->limit->ns->conf;

    ngx_do_rate_limiter_policy(conf, res->limit->bucket_burst, &q, &w);

    p = ngx_pnalloc(r->pool, name->len + 2 * NGX_INT64_LEN + 16);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_do_add_header(r, "RateLimit-Policy", p,
                                     ngx_sprintf(p, "\"%V\";q=%uL;w=%uL",
                                                 name, q, w) - p)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, name->len + 2 * NGX_INT64_LEN + 16);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_do_add_header(r, "RateLimit", p,
                                     ngx_sprintf(p, "\"%V\";r=%L;t=%L",
                                                 name, res->remaining,
                                                 (res->next + 999) / 1000)
                                     - p)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!rejected) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_do_add_header(r, "Retry-After", p,
                                        ngx_sprintf(p, "%L",
                                                    ngx_max((res->retry + 999)
                                                            / 1000, 1))
                                        - p);
}


static ngx_int_t
ngx_http_do_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_do_limit_ctx_t  *ctx;

    ctx = ngx_http_do_limit_get_ctx(r->main);

    if (ctx == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_http_do_limit_status_names[ctx->status].data;
    v->len = ngx_http_do_limit_status_names[ctx->status].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_do_limit_remaining_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_do_limit_ctx_t  *ctx;

    ctx = ngx_http_do_limit_get_ctx(r->main);

    if (ctx == NULL || ctx->remaining < 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(v->data, "%L", ctx->remaining) - v->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_do_limit_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_do_add_variables(cf, ngx_http_do_limit_vars);
}


/* resolves the namespaces (they may come later in the file), adds the gate */
static ngx_int_t
ngx_http_do_limit_init(ngx_conf_t *cf)
{
    ngx_uint_t                      i;
    ngx_http_handler_pt            *h;
    ngx_http_do_limit_t           **all;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_do_limit_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_do_limit_module);

    all = lmcf->all.elts;

    for (i = 0; i < lmcf->all.nelts; i++) {
        all[i]->ns = ngx_http_do_gate_namespace(cf, &all[i]->ns_name,
                                                &ngx_do_rate_limiter_class,
                                                "do_limit", all[i]->file,
                                                all[i]->line);
        if (all[i]->ns == NULL
            || ngx_http_do_limit_bucket_check(cf, all[i]) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (lmcf->all.nelts == 0) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_do_limit_handler;

    return NGX_OK;
}


static void *
ngx_http_do_limit_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_do_limit_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_do_limit_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->all, cf->pool, 4, sizeof(ngx_http_do_limit_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static void *
ngx_http_do_limit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_do_limit_loc_conf_t  *llcf;

    llcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_do_limit_loc_conf_t));
    if (llcf == NULL) {
        return NULL;
    }

    llcf->limit_log_level = NGX_CONF_UNSET_UINT;
    llcf->status = NGX_CONF_UNSET_UINT;
    llcf->dry_run = NGX_CONF_UNSET;

    return llcf;
}


static char *
ngx_http_do_limit_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_do_limit_loc_conf_t  *prev = parent;
    ngx_http_do_limit_loc_conf_t  *conf = child;

    if (conf->limits == NULL) {
        conf->limits = prev->limits;
    }

    ngx_conf_merge_uint_value(conf->limit_log_level, prev->limit_log_level,
                              NGX_LOG_ERR);

    /* as limit_req: delays one level below rejections, info at least */
    conf->delay_log_level = (conf->limit_log_level == NGX_LOG_INFO)
                            ? NGX_LOG_INFO : conf->limit_log_level + 1;

    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);

    /* still unset: each namespace's dry_run decides */
    ngx_conf_merge_value(conf->dry_run, prev->dry_run, NGX_CONF_UNSET);

    return NGX_CONF_OK;
}


/*
 * do_limit NS key=EXPR [burst=N] [delay=N | nodelay] [status=CODE]
 *     [headers=on|off]
 */
static char *
ngx_http_do_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_limit_loc_conf_t  *llcf = conf;

    ngx_int_t                       rc;
    ngx_str_t                      *value;
    ngx_uint_t                      i;
    ngx_http_do_limit_t            *limit, **ref;
    ngx_http_do_limit_main_conf_t  *lmcf;

    value = cf->args->elts;

    if (llcf->limits == NULL) {
        llcf->limits = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_http_do_limit_t *));
        if (llcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    limit = ngx_pcalloc(cf->pool, sizeof(ngx_http_do_limit_t));
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    ref = ngx_array_push(llcf->limits);
    if (ref == NULL) {
        return NGX_CONF_ERROR;
    }

    *ref = limit;

    limit->ns_name = value[1];
    limit->burst = NGX_HTTP_DO_LIMIT_UNSET;
    limit->delay = NGX_HTTP_DO_LIMIT_UNSET;
    limit->file = cf->conf_file->file.name.data;
    limit->line = cf->conf_file->line;

    for (i = 2; i < cf->args->nelts; i++) {

        rc = ngx_http_do_gate_param(cf, &value[i], &limit->key,
                                    &limit->status);

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_OK) {
            continue;
        }

        if (ngx_strcmp(value[i].data, "headers=on") == 0) {
            limit->headers = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "headers=off") == 0) {
            limit->headers = 0;
            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0
            || ngx_strncmp(value[i].data, "delay=", 6) == 0
            || ngx_strcmp(value[i].data, "nodelay") == 0)
        {
            if (ngx_http_do_limit_bucket(cf, limit, &value[i])
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (limit->key.value.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "do_limit \"%V\" needs key=", &value[1]);
        return NGX_CONF_ERROR;
    }

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_do_limit_module);

    ref = ngx_array_push(&lmcf->all);
    if (ref == NULL) {
        return NGX_CONF_ERROR;
    }

    *ref = limit;

    return NGX_CONF_OK;
}


/* burst=N, delay=N, nodelay: this limit's bucket, as limit_req's own */
static char *
ngx_http_do_limit_bucket(ngx_conf_t *cf, ngx_http_do_limit_t *limit,
    ngx_str_t *param)
{
    ngx_int_t  n;

    if (param->data[0] == 'n') {
        if (limit->delay != NGX_HTTP_DO_LIMIT_UNSET) {
            goto duplicate;
        }

        limit->delay = NGX_HTTP_DO_LIMIT_NODELAY;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(param->data + 6, param->len - 6);

    if (n == NGX_ERROR || n > 1000000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number in \"%V\"", param);
        return NGX_CONF_ERROR;
    }

    if (param->data[0] == 'b') {
        if (limit->burst != NGX_HTTP_DO_LIMIT_UNSET) {
            goto duplicate;
        }

        limit->burst = n;

    } else {
        if (limit->delay != NGX_HTTP_DO_LIMIT_UNSET) {
            goto duplicate;
        }

        limit->delay = n;
    }

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\": burst= or delay= given twice", param);
    return NGX_CONF_ERROR;
}


/*
 * The limit's bucket, once the namespace is known: its own burst= and
 * delay= if it has them, checked against the namespace's rate and the
 * other's value.
 */
static ngx_int_t
ngx_http_do_limit_bucket_check(ngx_conf_t *cf, ngx_http_do_limit_t *limit)
{
    ngx_int_t                    burst, delay;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = limit->ns->conf;

    burst = (limit->burst != NGX_HTTP_DO_LIMIT_UNSET) ? limit->burst
                                                      : (ngx_int_t) conf->burst;
    delay = (limit->delay != NGX_HTTP_DO_LIMIT_UNSET) ? limit->delay
                                                      : conf->delay;

    if (delay > burst) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "do_limit \"%V\": delay %i exceeds burst %i in %s:%ui",
                      &limit->ns_name, delay, burst, limit->file, limit->line);
        return NGX_ERROR;
    }

    if (!ngx_do_rate_limiter_burst_fits(conf, burst)) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "do_limit \"%V\": burst %i is too large for the rate "
                      "in %s:%ui", &limit->ns_name, burst, limit->file,
                      limit->line);
        return NGX_ERROR;
    }

    limit->bucket_burst = burst;
    limit->bucket_delay = delay;
    conf->burst_max = ngx_max(conf->burst_max, (ngx_uint_t) burst);

    return NGX_OK;
}
