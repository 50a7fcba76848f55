
/*
 * The "lock" class: its calls and replies, read by its gate (do_lock,
 * ngx_http_do_lock_module.c) and by anyone who calls it through do_pass,
 * and its parameters, against which the gate checks its ttl=.
 *
 *   POST   [?ttl=T&wait=T&token=S]   acquire
 *       200 the grant {"token", "fence", "ttl_ms", "expires"} (a retried
 *           acquire of the holder: {"token", "fence", "expires"});
 *       423 {"error"} held, or the wait= ended first.  Through do_pass,
 *           wait= must end 500 ms before do_call_timeout (400 otherwise);
 *           the gate's calls (NGX_DO_TURN_GATE) wait as long as they
 *           say.
 *   PUT    ?token=S[&ttl=T]          renew the lease
 *       200 {"fence", "ttl_ms", "expires"}; 409 the token does not hold it
 *   DELETE ?token=S                  release, or leave the queue
 *       200 {"released": true, "fence"}, or {"released": false,
 *           "cancelled": true} for a waiter; 409 the token does not hold it
 *   GET                              status
 *       200 {"held", "fence", "waiters"[, "expires", "ttl_ms"]}
 *
 * T is nginx time syntax (30s, 500ms); "expires" is the lease's end in ms
 * of wall clock; "fence" increases strictly per lock, forever.  Errors are
 * {"error": "..."}: 400 (bad arguments, token= missing), 405, 507 (storage
 * full).  The gate sends its release and renewals with the token of its
 * grant and does not wait for their answers.
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
