
/*
 * The "rate_limiter" class: a bucket per key, deciding every request of
 * that key alone, so a limit is exact however many workers accept traffic.
 *
 * GCRA (a token bucket of burst + 1 refilled at rate): a bucket keeps one
 * theoretical arrival time (TAT, microseconds of wall-clock time).  With T
 * the interval between two requests at the rate and tau = burst * T, a
 * request at "now" passes when max(TAT, now) - now <= tau, and then TAT
 * moves on by T.  A rejected request changes nothing.  Integer arithmetic
 * only; a rate is read as thousandths, like limit_req's milli-requests.
 *
 * A key needs no object: its bucket is one TAT in the namespace's table
 * (ngx_do_buckets.c), decided under the table's lock by the worker that
 * accepted the request.  On Redis the table is stored: a key is read from
 * Redis when it is cold, and its TAT stored within do_flush_interval
 * (ngx_do_buckets_store.c), expiring when the bucket is full again.
 *
 * What do_limit reads is in ngx_do_rate_limiter.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_do.h"
#include "ngx_do_rate_limiter.h"
#include "ngx_do_buckets.h"


/* a bucket table's zone, unless size= says otherwise */
#define NGX_DO_RATE_LIMITER_SIZE  (10 * 1024 * 1024)

/*
 * microseconds by which the clocks of two workers may disagree (each
 * reads its own cached time) before a TAT counts as from a clock that
 * went back
 */
#define NGX_DO_RATE_LIMITER_SKEW  1000000


static void *ngx_do_rate_limiter_create_conf(ngx_conf_t *cf);
static char *ngx_do_rate_limiter_parse_param(ngx_conf_t *cf, void *conf,
    ngx_str_t *param);
static char *ngx_do_rate_limiter_init_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_do_rate_limiter_fetch(ngx_do_turn_t *t);
static ngx_int_t ngx_do_rate_limiter_init_namespace(ngx_conf_t *cf,
    ngx_do_namespace_t *ns, ngx_uint_t local);
static ngx_int_t ngx_do_rate_limiter_pass(ngx_http_request_t *r,
    ngx_do_namespace_t *ns, ngx_str_t *name, ngx_http_do_reply_t *reply);
static ngx_int_t ngx_do_rate_limiter_inspect_reply(ngx_http_request_t *r,
    ngx_do_rate_limiter_conf_t *conf, int64_t tat,
    ngx_http_do_reply_t *reply);
static void ngx_do_rate_limiter_inspected(ngx_do_buckets_wait_t *w);
static void ngx_do_rate_limiter_cleanup(void *data);
static ngx_int_t ngx_do_rate_limiter_usage(ngx_do_namespace_t *ns,
    ngx_do_table_usage_t *usage);
static uint64_t ngx_do_rate_limiter_window(ngx_do_rate_limiter_conf_t *conf,
    uint64_t q);


ngx_do_class_t  ngx_do_rate_limiter_class = {
    ngx_string("rate_limiter"),
    0,                                     /* object_size */
    1,                                     /* deferred: stored after replies */
    ngx_do_rate_limiter_create_conf,       /* create_conf */
    ngx_do_rate_limiter_parse_param,       /* parse_param */
    ngx_do_rate_limiter_init_conf,         /* init_conf */
    NULL,                                  /* init */
    ngx_do_rate_limiter_fetch,             /* fetch */
    NULL,                                  /* evict */
    NULL,                                  /* alarm */
    NULL,                                  /* wake */
    NULL,                                  /* ws_open */
    NULL,                                  /* ws_message */
    NULL,                                  /* ws_close */
    NULL,                                  /* max_body */
    ngx_do_rate_limiter_init_namespace,    /* init_namespace */
    ngx_do_rate_limiter_pass,              /* pass */
    ngx_do_rate_limiter_usage,             /* usage */
    ngx_do_buckets_init_worker,            /* init_worker */
    ngx_do_buckets_exit_worker             /* exit_worker */
};


/* a do_pass request that waits for its key's load */
typedef struct {
    ngx_http_request_t          *request;
    ngx_do_rate_limiter_conf_t  *conf;
    ngx_do_buckets_wait_t        wait;
} ngx_do_rate_limiter_pass_t;


static void *
ngx_do_rate_limiter_create_conf(ngx_conf_t *cf)
{
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_do_rate_limiter_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->delay = -1;
    conf->size = NGX_DO_RATE_LIMITER_SIZE;

    return conf;
}


/*
 * rate=N[.ddd]r/s|r/m  burst=N  delay=N  nodelay  dry_run  fail=open|closed
 * size=SIZE
 */
static char *
ngx_do_rate_limiter_parse_param(ngx_conf_t *cf, void *data, ngx_str_t *param)
{
    ngx_do_rate_limiter_conf_t  *conf = data;

    u_char     *p, *last;
    ssize_t     size;
    uint64_t    milli;
    ngx_int_t   n, frac;
    ngx_str_t   s;

    if (ngx_strncmp(param->data, "size=", 5) == 0) {
        s.data = param->data + 5;
        s.len = param->len - 5;

        size = ngx_parse_size(&s);

        if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid bucket table size \"%V\", "
                               "at least %uzk is needed", param,
                               (8 * ngx_pagesize) >> 10);
            return NGX_CONF_ERROR;
        }

        /* a bucket's place in the zone is 32 bits of 8-byte units */
        if ((uint64_t) size > ((uint64_t) 32 << 30)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid bucket table size \"%V\", "
                               "at most 32g", param);
            return NGX_CONF_ERROR;
        }

        conf->size = size;

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(param->data, "rate=", 5) == 0) {
        p = param->data + 5;
        last = param->data + param->len;

        if (last - p < 4) {
            return "invalid rate";
        }

        if (ngx_strncmp(last - 3, "r/s", 3) == 0) {
            conf->period = 1;

        } else if (ngx_strncmp(last - 3, "r/m", 3) == 0) {
            conf->period = 60;

        } else {
            return "invalid rate (expected r/s or r/m)";
        }

        last -= 3;
        milli = 0;
        frac = -1;

        for ( /* void */ ; p < last; p++) {
            if (*p == '.' && frac == -1) {
                frac = 0;
                continue;
            }

            if (*p < '0' || *p > '9' || frac >= 3 || milli > 1000000000000) {
                return "invalid rate";
            }

            milli = milli * 10 + (*p - '0');

            if (frac >= 0) {
                frac++;
            }
        }

        for (frac = (frac == -1) ? 0 : frac; frac < 3; frac++) {
            milli *= 10;
        }

        if (milli == 0) {
            return "rate must be positive";
        }

        conf->rate_milli = milli;
        conf->interval = (int64_t) (conf->period * 1000000000ULL / milli);

        if (conf->interval == 0) {
            return "rate is too high (at most 1000000r/s)";
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(param->data, "burst=", 6) == 0
        || ngx_strncmp(param->data, "delay=", 6) == 0)
    {
        n = ngx_atoi(param->data + 6, param->len - 6);

        if (n == NGX_ERROR || n > 1000000000) {
            return "invalid number";
        }

        if (param->data[0] == 'b') {
            conf->burst = n;

        } else {
            conf->delay = n;
        }

        return NGX_CONF_OK;
    }

    if (param->len == 7 && ngx_strncmp(param->data, "nodelay", 7) == 0) {
        conf->delay = -1;
        return NGX_CONF_OK;
    }

    if (param->len == 7 && ngx_strncmp(param->data, "dry_run", 7) == 0) {
        conf->dry_run = 1;
        return NGX_CONF_OK;
    }

    if (param->len == 9 && ngx_strncmp(param->data, "fail=open", 9) == 0) {
        conf->fail_closed = 0;
        return NGX_CONF_OK;
    }

    if (param->len == 11 && ngx_strncmp(param->data, "fail=closed", 11) == 0)
    {
        conf->fail_closed = 1;
        return NGX_CONF_OK;
    }

    return "invalid parameter";
}


static char *
ngx_do_rate_limiter_init_conf(ngx_conf_t *cf, void *data)
{
    ngx_do_rate_limiter_conf_t  *conf = data;

    if (conf->rate_milli == 0) {
        return "rate= is required";
    }

    if (conf->delay > (ngx_int_t) conf->burst) {
        return "delay= must not exceed burst=";
    }

    if (!ngx_do_rate_limiter_burst_fits(conf, conf->burst)) {
        return "burst= is too large for the rate";
    }

    conf->burst_max = conf->burst;

    return NGX_CONF_OK;
}


/* (burst + 1) intervals stay far from int64_t's end: TATs add to them */
ngx_uint_t
ngx_do_rate_limiter_burst_fits(ngx_do_rate_limiter_conf_t *conf,
    ngx_uint_t burst)
{
    return (int64_t) burst + 1 <= INT64_MAX / 4 / conf->interval;
}


/*
 * A key is a bucket of the namespace's table, never an object: a call
 * that reaches one (ngx_http_do_call() of another module) is refused
 */
static ngx_int_t
ngx_do_rate_limiter_fetch(ngx_do_turn_t *t)
{
    return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                              "a rate_limiter key is a bucket of its "
                              "namespace's table, not an object");
}


ngx_int_t
ngx_do_rate_limiter_gcra(ngx_do_rate_limiter_conf_t *conf, int64_t burst,
    int64_t delay, int64_t now, int64_t *tat,
    ngx_do_rate_limiter_verdict_t *v)
{
    int64_t  t, tau, wait, reset, next;

    tau = burst * conf->interval;
    t = ngx_max(*tat, now);

    /*
     * a TAT further ahead than any take leaves (the largest burst, one
     * interval, and what the workers' clocks may disagree by): the clock
     * went back; start afresh
     */
    if (t - now > (int64_t) conf->burst_max * conf->interval + conf->interval
                  + NGX_DO_RATE_LIMITER_SKEW)
    {
        t = now;
    }

    wait = t - now - tau;

    if (wait > 0) {
        v->remaining = 0;
        v->next = (wait + 999) / 1000;
        v->retry = v->next;
        v->delay = 0;

        return NGX_BUSY;
    }

    v->retry = 0;
    v->delay = 0;

    if (delay >= 0) {
        delay = ngx_min(delay, burst);
        v->delay = ngx_max(t - now - delay * conf->interval, 0);
        v->delay = (v->delay + 999) / 1000;
    }

    *tat = t + conf->interval;

    /*
     * "remaining" more pass at once; the one after them passes when the
     * TAT they leave, reset + remaining * T from now, is within tau: in
     * (0, T] from now
     */
    reset = *tat - now;
    v->remaining = ngx_max((tau + conf->interval - reset) / conf->interval,
                           0);
    next = reset + v->remaining * conf->interval - tau;
    v->next = (ngx_max(next, 0) + 999) / 1000;

    return NGX_OK;
}


void
ngx_do_rate_limiter_gcra_refund(ngx_do_rate_limiter_conf_t *conf,
    int64_t now, int64_t *tat)
{
    if (*tat > now) {
        *tat = ngx_max(*tat - conf->interval, now);
    }
}


size_t
ngx_do_rate_limiter_inspect(ngx_do_rate_limiter_conf_t *conf, int64_t tat,
    int64_t now, u_char *buf)
{
    int64_t  reset, remaining;

    reset = ngx_max(tat, now) - now;
    remaining = (conf->burst * conf->interval + conf->interval - reset)
                / conf->interval;

    return ngx_sprintf(buf, "{\"limit\":%ui,\"remaining\":%L,"
                       "\"reset_ms\":%L}\n",
                       conf->burst + 1, ngx_max(remaining, 0),
                       (reset + 999) / 1000)
           - buf;
}


/*
 * The bucket (burst + 1 requests, refilled at the rate) as a quota q per
 * window w of whole seconds.  A client that sends q at once every w
 * seconds is never rejected when q <= burst + 1 and q <= rate * w; r (at
 * most burst after a request passed) never exceeds q when q >= burst.  So
 * q is burst or burst + 1 (1 without a burst), each with the fewest whole
 * seconds that refill it, w = ceil(q / rate); of the two, the one with the
 * higher q / w wins, on a tie the larger q.  q / w is the rate itself when
 * some w in whole seconds refills q exactly, and below it otherwise (at
 * most burst + 1 per second when the bucket holds less than a second).
 */
void
ngx_do_rate_limiter_policy(ngx_do_rate_limiter_conf_t *conf, uint64_t burst,
    uint64_t *q, uint64_t *w)
{
    uint64_t  q1, w1, w2;

    *q = burst + 1;
    *w = ngx_do_rate_limiter_window(conf, *q);

    if (burst == 0) {
        return;
    }

    q1 = burst;
    w1 = ngx_do_rate_limiter_window(conf, q1);
    w2 = *w;

    /*
     * q1 / w1 > (q1 + 1) / w2, that is q1 * (w2 - w1) > w1: no overflow,
     * as w2 - w1 is at most 60001 (at 0.001r/m)
     */
    if (q1 * (w2 - w1) > w1) {
        *q = q1;
        *w = w1;
    }
}


/* the fewest whole seconds in which the rate grants q requests */
static uint64_t
ngx_do_rate_limiter_window(ngx_do_rate_limiter_conf_t *conf, uint64_t q)
{
    uint64_t  n;

    /* the rate is rate_milli / 1000 per period: q * period * 1000 / milli */
    n = q * conf->period * 1000;

    return (n + conf->rate_milli - 1) / conf->rate_milli;
}


/*
 * the namespace's keys are buckets in a table, which storage that is not
 * this node's memory (Redis) keeps too
 */
static ngx_int_t
ngx_do_rate_limiter_init_namespace(ngx_conf_t *cf, ngx_do_namespace_t *ns,
    ngx_uint_t local)
{
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;
    conf->stored = !local;

    return ngx_do_buckets_add(cf, ns);
}


/*
 * do_pass: a key's bucket inspected in the table (a GET or HEAD with
 * name=, the name being the key), once it is loaded when a stored table
 * has it cold; an ID names no bucket
 */
static ngx_int_t
ngx_do_rate_limiter_pass(ngx_http_request_t *r, ngx_do_namespace_t *ns,
    ngx_str_t *name, ngx_http_do_reply_t *reply)
{
    int64_t                      tat;
    ngx_pool_cleanup_t          *cln;
    ngx_do_rate_limiter_pass_t  *p;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;

    ngx_str_set(&reply->content_type, "application/json");

    if (name == NULL) {
        reply->status = NGX_HTTP_BAD_REQUEST;
        ngx_str_set(&reply->body, "{\"error\":\"a rate_limiter is keyed "
                    "by name: use do_pass name=\"}\n");
        return NGX_OK;
    }

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        reply->status = NGX_HTTP_NOT_ALLOWED;
        ngx_str_set(&reply->body, "{\"error\":\"method not allowed\"}\n");
        return NGX_OK;
    }

    if (ngx_do_buckets_tat(ns, name, &tat) == NGX_OK) {
        return ngx_do_rate_limiter_inspect_reply(r, conf, tat, reply);
    }

    p = ngx_pcalloc(r->pool, sizeof(ngx_do_rate_limiter_pass_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (p == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    p->request = r;
    p->conf = conf;
    p->wait.inspect = 1;
    p->wait.handler = ngx_do_rate_limiter_inspected;
    p->wait.data = p;

    if (ngx_do_buckets_load(ns, name, &p->wait) != NGX_OK) {
        reply->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        ngx_str_set(&reply->body, "{\"error\":\"storage is "
                    "unavailable\"}\n");
        return NGX_OK;
    }

    cln->handler = ngx_do_rate_limiter_cleanup;
    cln->data = &p->wait;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_do_rate_limiter_inspect_reply(ngx_http_request_t *r,
    ngx_do_rate_limiter_conf_t *conf, int64_t tat, ngx_http_do_reply_t *reply)
{
    reply->body.data = ngx_pnalloc(r->pool, NGX_DO_RATE_LIMITER_INSPECT_LEN);
    if (reply->body.data == NULL) {
        return NGX_ERROR;
    }

    reply->status = NGX_HTTP_OK;
    reply->body.len = ngx_do_rate_limiter_inspect(conf, tat,
                                                  ngx_do_rate_limiter_now(),
                                                  reply->body.data);

    return NGX_OK;
}


/* the key of a do_pass request is loaded: its answer */
static void
ngx_do_rate_limiter_inspected(ngx_do_buckets_wait_t *w)
{
    ngx_http_request_t          *r;
    ngx_http_do_reply_t          reply;
    ngx_do_rate_limiter_pass_t  *p;

    p = w->data;
    r = p->request;

    ngx_memzero(&reply, sizeof(ngx_http_do_reply_t));
    ngx_str_set(&reply.content_type, "application/json");

    if (w->rc == NGX_OK) {
        if (ngx_do_rate_limiter_inspect_reply(r, p->conf, w->tat, &reply)
            != NGX_OK)
        {
            reply.status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        reply.status = NGX_HTTP_SERVICE_UNAVAILABLE;
        ngx_str_set(&reply.body, "{\"error\":\"storage is "
                    "unavailable\"}\n");
    }

    ngx_http_do_pass_answer(r, &reply);
}


static void
ngx_do_rate_limiter_cleanup(void *data)
{
    ngx_do_buckets_cancel(data);
}


static ngx_int_t
ngx_do_rate_limiter_usage(ngx_do_namespace_t *ns, ngx_do_table_usage_t *usage)
{
    ngx_do_buckets_usage(ns, usage);

    return NGX_OK;
}


int64_t
ngx_do_rate_limiter_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000000 + (int64_t) tp->msec * 1000;
}
