
/*
 * The lock class's parameters, shared with its gate (do_lock in
 * ngx_http_do_lock_module.c), which checks its ttl= against them.
 */


#ifndef _NGX_DO_LOCK_H_INCLUDED_
#define _NGX_DO_LOCK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_do.h"


typedef struct {
    ngx_msec_t                 ttl;
    ngx_msec_t                 max_ttl;
} ngx_do_lock_conf_t;


extern ngx_do_class_t  ngx_do_lock_class;


#endif /* _NGX_DO_LOCK_H_INCLUDED_ */
