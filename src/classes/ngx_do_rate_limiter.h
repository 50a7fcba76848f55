
/*
 * The "rate_limiter" class: its parameters and its arithmetic, read by its
 * gate (do_limit, ngx_http_do_limit_module.c) and its bucket table
 * (ngx_do_buckets.c), from which the gate builds the RateLimit headers.
 *
 * A key is a bucket in the namespace's table, never an object: do_limit
 * takes from it in the worker that accepted the request (on Redis after a
 * read of a cold key), and gives a token back when another limit rejected
 * the request.  A take decides a verdict (ngx_do_rate_limiter_verdict_t):
 * "remaining" requests pass at once; "next" is the time until one request
 * more than those would pass (the RateLimit field's t; on a rejection, the
 * retry time); "retry" is 0 on a pass; "delay" is how long the gate holds
 * a passing request (delay=), 0 on a rejection.
 *
 * do_pass name= inspects a key's bucket without taking: GET or HEAD,
 * 200 {"limit", "remaining", "reset_ms"}; other methods 405; id= and
 * unique 400 (the table knows keys, not IDs).
 */


#ifndef _NGX_DO_RATE_LIMITER_H_INCLUDED_
#define _NGX_DO_RATE_LIMITER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_do.h"


/* the JSON of an inspection, {"limit", "remaining", "reset_ms"} */
#define NGX_DO_RATE_LIMITER_INSPECT_LEN  (64 + 3 * NGX_INT64_LEN)


/*
 * A namespace's parameters.  burst_max is the largest burst any do_limit
 * judges its keys by (the namespace's or a do_limit's own): a TAT further
 * ahead than that allows means the clock went back.  buckets is the table
 * of the namespace's keys; stored, it is the node's copy of Redis, and
 * flush this worker's loads and flush of it (ngx_do_buckets_store.c).
 */
typedef struct {
    uint64_t                   rate_milli;    /* requests x 1000 per period */
    ngx_uint_t                 period;        /* seconds: 1 or 60 */
    ngx_uint_t                 burst;
    ngx_uint_t                 burst_max;
    ngx_int_t                  delay;         /* -1: nodelay */
    int64_t                    interval;      /* microseconds per request */
    size_t                     size;          /* size=: the table's zone */
    ngx_shm_zone_t            *buckets;
    void                      *flush;         /* this worker's, if stored */
    unsigned                   stored:1;      /* storage keeps the table */
    unsigned                   clustered:1;   /* nodes share it: remote.c */
    unsigned                   dry_run:1;
    unsigned                   fail_closed:1;
} ngx_do_rate_limiter_conf_t;


/*
 * What a take decided, in milliseconds rounded up, as the gate reports
 * it: remaining requests pass at once; next is the time until one more
 * than those would pass (on a rejection, the retry time); retry is 0 on a
 * pass; delay is how long the gate holds a passing request (delay=).
 */
typedef struct {
    int64_t                    remaining;
    int64_t                    next;
    int64_t                    retry;
    int64_t                    delay;
} ngx_do_rate_limiter_verdict_t;


extern ngx_do_class_t  ngx_do_rate_limiter_class;


ngx_uint_t ngx_do_rate_limiter_burst_fits(ngx_do_rate_limiter_conf_t *conf,
    ngx_uint_t burst);

/*
 * GCRA: a take at now (microseconds of wall clock) from the bucket whose
 * TAT is *tat (0: full), judged by burst and delay (-1: nodelay).
 * NGX_OK: it passes and *tat moved on; NGX_BUSY: rejected, *tat kept.
 */
ngx_int_t ngx_do_rate_limiter_gcra(ngx_do_rate_limiter_conf_t *conf,
    int64_t burst, int64_t delay, int64_t now, int64_t *tat,
    ngx_do_rate_limiter_verdict_t *v);

/* gives back the token of a take whose request another limit rejected */
void ngx_do_rate_limiter_gcra_refund(ngx_do_rate_limiter_conf_t *conf,
    int64_t now, int64_t *tat);

/* the inspection's JSON into buf (NGX_DO_RATE_LIMITER_INSPECT_LEN) */
size_t ngx_do_rate_limiter_inspect(ngx_do_rate_limiter_conf_t *conf,
    int64_t tat, int64_t now, u_char *buf);

/*
 * A bucket of burst + 1 as the RateLimit-Policy field's quota q per
 * window w of whole seconds
 */
void ngx_do_rate_limiter_policy(ngx_do_rate_limiter_conf_t *conf,
    uint64_t burst, uint64_t *q, uint64_t *w);

/* the wall clock in microseconds, as TATs use it */
int64_t ngx_do_rate_limiter_now(void);


#endif /* _NGX_DO_RATE_LIMITER_H_INCLUDED_ */
