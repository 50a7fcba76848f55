
/*
 * The rate_limiter class's parameters, shared with its gate (do_limit in
 * ngx_http_do_limit_module.c), which builds RateLimit headers from them.
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
} ngx_do_rl_conf_t;


extern ngx_do_class_t  ngx_do_rate_limiter_class;


#endif /* _NGX_DO_RATE_LIMITER_H_INCLUDED_ */
