
/*
 * The "rate_limiter" class: one object per key, deciding every request of
 * that key alone, so a limit is exact however many workers accept traffic.
 *
 * GCRA (a token bucket of burst + 1 refilled at rate): the object keeps one
 * theoretical arrival time (TAT, microseconds of wall-clock time).  With T
 * the interval between two requests at the rate and tau = burst * T, a
 * request at "now" passes when max(TAT, now) - now <= tau, and then TAT
 * moves on by T.  A rejected request changes nothing.  Integer arithmetic
 * only; a rate is read as thousandths, like limit_req's milli-requests.
 *
 * The state is hot and loss-tolerant: the class uses deferred durability
 * (replies go out at once, the TAT is stored within do_flush_interval), and
 * once the bucket is full again the object forgets itself: it is evicted
 * and its key deleted, so idle keys cost nothing.
 *
 * Its calls and replies (what do_limit reads) are in ngx_do_rate_limiter.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_do.h"
#include "ngx_do_rate_limiter.h"


typedef struct {
    int64_t                    tat;           /* microseconds, 0: full */
} ngx_do_rate_limiter_state_t;


static void *ngx_do_rate_limiter_create_conf(ngx_conf_t *cf);
static char *ngx_do_rate_limiter_parse_param(ngx_conf_t *cf, void *conf,
    ngx_str_t *param);
static char *ngx_do_rate_limiter_init_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_do_rate_limiter_init(ngx_do_turn_t *t);
static ngx_int_t ngx_do_rate_limiter_fetch(ngx_do_turn_t *t);
static ngx_int_t ngx_do_rate_limiter_evict(ngx_do_turn_t *t);
static ngx_int_t ngx_do_rate_limiter_take(ngx_do_turn_t *t,
    ngx_do_rate_limiter_conf_t *conf, ngx_do_rate_limiter_state_t *st,
    int64_t now);
static void ngx_do_rate_limiter_args(ngx_do_turn_t *t,
    ngx_do_rate_limiter_conf_t *conf, int64_t *burst, int64_t *delay);
static ngx_int_t ngx_do_rate_limiter_refund(ngx_do_turn_t *t,
    ngx_do_rate_limiter_conf_t *conf, ngx_do_rate_limiter_state_t *st,
    int64_t now);
static ngx_int_t ngx_do_rate_limiter_store(ngx_do_turn_t *t,
    ngx_do_rate_limiter_state_t *st, int64_t now);
static int64_t ngx_do_rate_limiter_now(void);


ngx_do_class_t  ngx_do_rate_limiter_class = {
    ngx_string("rate_limiter"),
    sizeof(ngx_do_rate_limiter_state_t),   /* object_size */
    1,                                     /* deferred */
    ngx_do_rate_limiter_create_conf,       /* create_conf */
    ngx_do_rate_limiter_parse_param,       /* parse_param */
    ngx_do_rate_limiter_init_conf,         /* init_conf */
    ngx_do_rate_limiter_init,              /* init */
    ngx_do_rate_limiter_fetch,             /* fetch */
    ngx_do_rate_limiter_evict,             /* evict */
    NULL,                                  /* alarm */
    NULL,                                  /* wake */
    NULL,                                  /* ws_open */
    NULL,                                  /* ws_message */
    NULL,                                  /* ws_close */
    NULL,                                  /* init_namespace */
    NULL,                                  /* pass */
    NULL                                   /* usage */
};


static ngx_str_t  ngx_do_rate_limiter_key = ngx_string("tat");


static void *
ngx_do_rate_limiter_create_conf(ngx_conf_t *cf)
{
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_do_rate_limiter_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->delay = -1;

    return conf;
}


/* rate=N[.ddd]r/s|r/m  burst=N  delay=N  nodelay  dry_run  fail=open|closed */
static char *
ngx_do_rate_limiter_parse_param(ngx_conf_t *cf, void *data, ngx_str_t *param)
{
    ngx_do_rate_limiter_conf_t  *conf = data;

    u_char     *p, *last;
    uint64_t    milli;
    ngx_int_t   n, frac;

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

    return NGX_CONF_OK;
}


/* (burst + 1) intervals stay far from int64_t's end: TATs add to them */
ngx_uint_t
ngx_do_rate_limiter_burst_fits(ngx_do_rate_limiter_conf_t *conf,
    ngx_uint_t burst)
{
    return (int64_t) burst + 1 <= INT64_MAX / 4 / conf->interval;
}


/* activation: the stored TAT, if the bucket was not full */
static ngx_int_t
ngx_do_rate_limiter_init(ngx_do_turn_t *t)
{
    uint64_t                      version;
    ngx_int_t                     rc, n;
    ngx_str_t                     value;
    ngx_do_rate_limiter_state_t  *st;

    st = ngx_do_turn_state(t);

    rc = ngx_do_get(t, &ngx_do_rate_limiter_key, &value, &version);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    st->tat = 0;

    if (rc == NGX_OK) {
        n = ngx_atoof(value.data, value.len);
        st->tat = (n == NGX_ERROR) ? 0 : n;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_do_rate_limiter_fetch(ngx_do_turn_t *t)
{
    int64_t                       now, tat, reset;
    ngx_str_t                     op, body;
    ngx_do_request_t             *req;
    ngx_do_rate_limiter_conf_t   *conf;
    ngx_do_rate_limiter_state_t  *st;
    u_char                        buf[128];

    req = ngx_do_turn_request(t);
    conf = ngx_do_turn_namespace(t)->conf;
    st = ngx_do_turn_state(t);
    now = ngx_do_rate_limiter_now();

    if (req->kind == NGX_DO_TURN_GATE || req->kind == NGX_DO_TURN_NOTICE) {
        if (ngx_do_arg(t, "op", &op) == NGX_OK
            && op.len == 6 && ngx_strncmp(op.data, "refund", 6) == 0)
        {
            return ngx_do_rate_limiter_refund(t, conf, st, now);
        }

        return ngx_do_rate_limiter_take(t, conf, st, now);
    }

    if (req->method != NGX_HTTP_GET && req->method != NGX_HTTP_HEAD) {
        return ngx_do_reply_error(t, NGX_HTTP_NOT_ALLOWED,
                                  "method not allowed");
    }

    tat = ngx_max(st->tat, now);
    reset = tat - now;

    body.data = buf;
    body.len = ngx_sprintf(buf, "{\"limit\":%uz,\"remaining\":%L,"
                           "\"reset_ms\":%L}\n",
                           conf->burst + 1,
                           (conf->burst * conf->interval + conf->interval
                            - reset) / conf->interval,
                           (reset + 999) / 1000)
               - buf;

    return ngx_do_reply(t, NGX_HTTP_OK, "application/json", &body, 0);
}


static ngx_int_t
ngx_do_rate_limiter_take(ngx_do_turn_t *t, ngx_do_rate_limiter_conf_t *conf,
    ngx_do_rate_limiter_state_t *st, int64_t now)
{
    int64_t     tat, tau, wait, delay, reset, remaining, next, burst, nd;
    ngx_str_t   body;
    u_char      buf[96];

    ngx_do_rate_limiter_args(t, conf, &burst, &nd);

    tau = burst * conf->interval;
    tat = ngx_max(st->tat, now);

    /* a TAT beyond any possible one: the clock went back; start afresh */
    if (tat - now > tau + conf->interval) {
        tat = now;
    }

    wait = tat - now - tau;

    if (wait > 0) {
        body.data = buf;
        body.len = ngx_sprintf(buf, "0 %L %L 0", (wait + 999) / 1000,
                               (wait + 999) / 1000)
                   - buf;

        return ngx_do_reply(t, NGX_HTTP_TOO_MANY_REQUESTS, "text/plain",
                            &body, 0);
    }

    delay = 0;

    if (nd >= 0) {
        delay = tat - now - nd * conf->interval;
        delay = ngx_max(delay, 0);
    }

    st->tat = tat + conf->interval;

    if (ngx_do_rate_limiter_store(t, st, now) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * "remaining" more pass at once; the one after them passes when the
     * TAT they leave, reset + remaining * T from now, is within tau: in
     * (0, T] from now
     */
    reset = st->tat - now;
    remaining = ngx_max((tau + conf->interval - reset) / conf->interval, 0);
    next = reset + remaining * conf->interval - tau;

    body.data = buf;
    body.len = ngx_sprintf(buf, "%L %L 0 %L", remaining,
                           (ngx_max(next, 0) + 999) / 1000,
                           (delay + 999) / 1000)
               - buf;

    return ngx_do_reply(t, NGX_HTTP_OK, "text/plain", &body, 0);
}


/*
 * The bucket of this take: the namespace's burst= and delay=, or those of
 * the do_limit that asks ("burst=N", "delay=N" or "delay=nodelay", checked
 * against the rate when nginx.conf was read), as limit_req's burst and
 * delay belong to each limit_req, not to its zone.
 */
static void
ngx_do_rate_limiter_args(ngx_do_turn_t *t, ngx_do_rate_limiter_conf_t *conf,
    int64_t *burst, int64_t *delay)
{
    ngx_int_t  n;
    ngx_str_t  s;

    *burst = conf->burst;
    *delay = conf->delay;

    if (ngx_do_arg(t, "burst", &s) == NGX_OK) {
        n = ngx_atoi(s.data, s.len);

        if (n != NGX_ERROR) {
            *burst = n;
        }
    }

    if (ngx_do_arg(t, "delay", &s) == NGX_OK) {
        n = ngx_atoi(s.data, s.len);

        if (n != NGX_ERROR) {
            *delay = n;

        } else if (s.len == 7 && ngx_strncmp(s.data, "nodelay", 7) == 0) {
            *delay = -1;
        }
    }

    if (*delay > *burst) {
        *delay = *burst;
    }
}


/* gives back a token taken by a request that another limit rejected */
static ngx_int_t
ngx_do_rate_limiter_refund(ngx_do_turn_t *t, ngx_do_rate_limiter_conf_t *conf,
    ngx_do_rate_limiter_state_t *st, int64_t now)
{
    if (st->tat > now) {
        st->tat = ngx_max(st->tat - conf->interval, now);

        if (ngx_do_rate_limiter_store(t, st, now) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_do_reply(t, NGX_HTTP_OK, "text/plain", NULL, 0);
}


/* the TAT to storage (deferred), and an idle timeout for when it is full */
static ngx_int_t
ngx_do_rate_limiter_store(ngx_do_turn_t *t, ngx_do_rate_limiter_state_t *st,
    int64_t now)
{
    u_char     *p;
    ngx_str_t   value;

    p = ngx_pnalloc(ngx_do_turn_pool(t), NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%L", st->tat) - p;

    if (ngx_do_put(t, &ngx_do_rate_limiter_key, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * full again at TAT: stay a second longer, then go; and the stored
     * TAT is worth nothing after that either, whoever holds it
     */
    ngx_do_set_idle_timeout(t, (ngx_msec_t) ((st->tat - now) / 1000) + 1000);
    ngx_do_set_expire(t, (ngx_msec_t) ((st->tat - now) / 1000) + 1000);

    return NGX_OK;
}


/* a full bucket needs no object and no storage: forget it */
static ngx_int_t
ngx_do_rate_limiter_evict(ngx_do_turn_t *t)
{
    int64_t                       now;
    ngx_int_t                     rc;
    ngx_do_rate_limiter_state_t  *st;

    st = ngx_do_turn_state(t);
    now = ngx_do_rate_limiter_now();

    if (st->tat > now) {
        ngx_do_set_idle_timeout(t, (ngx_msec_t) ((st->tat - now) / 1000)
                                   + 1000);
        return NGX_DECLINED;
    }

    rc = ngx_do_delete(t, &ngx_do_rate_limiter_key);

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


static int64_t
ngx_do_rate_limiter_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000000 + (int64_t) tp->msec * 1000;
}
