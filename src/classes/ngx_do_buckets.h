
/*
 * The bucket table of a rate_limiter namespace on memory storage: each key
 * a bucket (its bytes and one TAT) in a shared zone of the namespace's
 * own, decided by any worker under the zone's lock.  See ngx_do_buckets.c.
 *
 * A bucket costs 64 bytes and its key, which the slab allocator rounds up
 * to a power of two: 128 bytes for keys up to 64 bytes, 256 up to 192.
 */


#ifndef _NGX_DO_BUCKETS_H_INCLUDED_
#define _NGX_DO_BUCKETS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_do.h"
#include "ngx_do_rate_limiter.h"


/* the longest key a bucket holds (its length is 16 bits) */
#define NGX_DO_BUCKETS_MAX_KEY    65535


/* adds the namespace's zone, "do_buckets:<namespace>" of size= bytes */
ngx_int_t ngx_do_buckets_add(ngx_conf_t *cf, ngx_do_namespace_t *ns);

/*
 * A take from the key's bucket, judged by burst and delay (-1: nodelay),
 * as ngx_do_rate_limiter_gcra(): NGX_OK (passes), NGX_BUSY (rejected),
 * NGX_DECLINED (no room for a new bucket: the table cannot answer; *v is
 * zero), NGX_ERROR (a key over NGX_DO_BUCKETS_MAX_KEY bytes; *v is zero).
 * Counted in do_status as a call of the namespace, as a call to an
 * object would be.
 */
ngx_int_t ngx_do_buckets_take(ngx_do_namespace_t *ns, ngx_str_t *key,
    int64_t burst, int64_t delay, ngx_do_rate_limiter_verdict_t *v,
    ngx_log_t *log);

/*
 * gives back the token a take took (another limit rejected the request);
 * a call too
 */
void ngx_do_buckets_refund(ngx_do_namespace_t *ns, ngx_str_t *key);

/* the key's TAT, 0 when it has no bucket (full) */
int64_t ngx_do_buckets_tat(ngx_do_namespace_t *ns, ngx_str_t *key);

void ngx_do_buckets_usage(ngx_do_namespace_t *ns,
    ngx_do_table_usage_t *usage);


#endif /* _NGX_DO_BUCKETS_H_INCLUDED_ */
