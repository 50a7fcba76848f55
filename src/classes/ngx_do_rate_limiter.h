
/*
 * The "rate_limiter" class: its calls and replies, read by its gate
 * (do_limit, ngx_http_do_limit_module.c), and its parameters, from which
 * the gate builds the RateLimit headers.
 *
 *   gate call (kind NGX_DO_TURN_GATE, POST), args "op=take"
 *       200 (pass) or 429 (reject), text/plain body
 *       "<remaining> <next ms> <retry ms> <delay ms>": remaining requests
 *       pass at once; "next" is the time until one request more than those
 *       would pass (the RateLimit field's t; on a rejection, the retry
 *       time); "retry" is 0 on a pass; "delay" is how long the gate holds
 *       a passing request (delay=), 0 on a rejection
 *       a do_limit with its own burst= or delay= adds "&burst=N" and
 *       "&delay=N" or "&delay=nodelay": the bucket of that take
 *   gate call, args "op=refund"
 *       gives back the token a take took (the request was rejected by
 *       another limit); nobody waits for its answer
 *   GET or HEAD (through do_pass: inspect without taking)
 *       200 {"limit", "remaining", "reset_ms"}; other methods 405
 */


#ifndef _NGX_DO_RATE_LIMITER_H_INCLUDED_
#define _NGX_DO_RATE_LIMITER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_do.h"


typedef struct {
    uint64_t                   rate_milli;    /* requests x 1000 per period */
    ngx_uint_t                 period;        /* seconds: 1 or 60 */
    ngx_uint_t                 burst;
    ngx_int_t                  delay;         /* -1: nodelay */
    int64_t                    interval;      /* microseconds per request */
    unsigned                   dry_run:1;
    unsigned                   fail_closed:1;
} ngx_do_rate_limiter_conf_t;


extern ngx_do_class_t  ngx_do_rate_limiter_class;


ngx_uint_t ngx_do_rate_limiter_burst_fits(ngx_do_rate_limiter_conf_t *conf,
    ngx_uint_t burst);


#endif /* _NGX_DO_RATE_LIMITER_H_INCLUDED_ */
