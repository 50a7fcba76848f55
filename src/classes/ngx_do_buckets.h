
/*
 * The bucket table of a rate_limiter namespace: each key a bucket (its
 * bytes and one TAT) in a shared zone of the namespace's own, decided by
 * any worker under the zone's lock.  On memory storage the table is the
 * state; on Redis it is the node's copy of it, loaded key by key and
 * stored later (a "stored" table).  See ngx_do_buckets.c, and
 * ngx_do_buckets_store.c for the loads and the flush.
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

/*
 * microseconds a bucket of a stored table may have been full before it is
 * cold: read again from storage before it decides, so that what another
 * node stored meanwhile counts (an object's idle second, before tables)
 */
#define NGX_DO_BUCKETS_COLD       1000000


/* adds the namespace's zone, "do_buckets:<namespace>" of size= bytes */
ngx_int_t ngx_do_buckets_add(ngx_conf_t *cf, ngx_do_namespace_t *ns);

/*
 * A take from the key's bucket, judged by burst and delay (-1: nodelay),
 * as ngx_do_rate_limiter_gcra(): NGX_OK (passes), NGX_BUSY (rejected),
 * NGX_DECLINED (no room for a new bucket: the table cannot answer; *v is
 * zero), NGX_ERROR (a key over NGX_DO_BUCKETS_MAX_KEY bytes; *v is zero),
 * NGX_AGAIN (a stored table has the key cold: ngx_do_buckets_load()
 * decides it once storage was read).  Counted in do_status as a call of
 * the namespace, as a call to an object would be, when it decides.
 */
ngx_int_t ngx_do_buckets_take(ngx_do_namespace_t *ns, ngx_str_t *key,
    int64_t burst, int64_t delay, ngx_do_rate_limiter_verdict_t *v,
    ngx_log_t *log);

/*
 * gives back the token a take took (another limit rejected the request);
 * a call too
 */
void ngx_do_buckets_refund(ngx_do_namespace_t *ns, ngx_str_t *key);

/* NGX_OK with the key's TAT (0: no bucket, full), or NGX_AGAIN (cold) */
ngx_int_t ngx_do_buckets_tat(ngx_do_namespace_t *ns, ngx_str_t *key,
    int64_t *tat);

void ngx_do_buckets_usage(ngx_do_namespace_t *ns,
    ngx_do_table_usage_t *usage);


/*
 * Stored tables (ngx_do_buckets_store.c).  A request that found its key
 * cold waits for the key's load: one read of storage per key and worker,
 * after which its take is decided (or, inspect set, its TAT read) under
 * the table's lock; handler then runs once with rc as a take's, or
 * NGX_ERROR when storage did not answer.
 */
typedef struct ngx_do_buckets_wait_s  ngx_do_buckets_wait_t;

typedef void (*ngx_do_buckets_wait_pt)(ngx_do_buckets_wait_t *w);

struct ngx_do_buckets_wait_s {
    ngx_queue_t                    queue;
    void                          *load;      /* NULL: not waiting */
    int64_t                        burst;
    int64_t                        delay;
    ngx_int_t                      rc;
    ngx_do_rate_limiter_verdict_t  v;
    int64_t                        tat;       /* inspect */
    uint64_t                       start;     /* usec, for do_status */
    ngx_do_buckets_wait_pt         handler;
    void                          *data;
    unsigned                       inspect:1;
};

/* NGX_OK: w waits (handler, data, burst, delay set); NGX_ERROR: it cannot */
ngx_int_t ngx_do_buckets_load(ngx_do_namespace_t *ns, ngx_str_t *key,
    ngx_do_buckets_wait_t *w);

/* w waits no more (its request went away); its handler will not run */
void ngx_do_buckets_cancel(ngx_do_buckets_wait_t *w);

/*
 * Cluster mode (ngx_do_buckets_remote.c): a key is decided by the node
 * that holds the shard of its ID.  here: this node decides the key (or
 * not in cluster mode); remote: ngx_do_buckets_load() of a key another
 * node decides (NGX_DECLINED: this node does, after all); remote_refund:
 * a refund sent to the node that decides (NGX_DECLINED: it is this one);
 * remote_init: 1 in cluster mode, where a worker takes the other nodes'
 * takes from then on.
 */
ngx_uint_t ngx_do_buckets_here(ngx_do_namespace_t *ns, ngx_str_t *key);
ngx_uint_t ngx_do_buckets_shard(ngx_do_namespace_t *ns, ngx_str_t *key);
ngx_int_t ngx_do_buckets_remote(ngx_do_namespace_t *ns, ngx_str_t *key,
    ngx_do_buckets_wait_t *w);
ngx_int_t ngx_do_buckets_remote_refund(ngx_do_namespace_t *ns,
    ngx_str_t *key);
ngx_uint_t ngx_do_buckets_remote_init(void);

ngx_int_t ngx_do_buckets_init_worker(ngx_do_namespace_t *ns,
    ngx_cycle_t *cycle);
void ngx_do_buckets_exit_worker(ngx_do_namespace_t *ns);


/*
 * For ngx_do_buckets_store.c, under the table's lock inside.  fill: a
 * loaded TAT becomes the key's bucket unless the table has a warm one
 * (of the read's epoch, in cluster mode: shard is the key's ID's, epoch
 * the one held when the read was sent), then the waiters of the load
 * (ngx_do_buckets_wait_t) are decided.  collect: the dirty buckets of one
 * list (0 .. NGX_DO_SHARDS - 1; in cluster mode, a shard) to store, each
 * given to emit with its TAT, or with tat 0 where storage must forget it;
 * NGX_ERROR from emit leaves the rest dirty; in cluster mode only those
 * of epoch, which the writes carry (the others are forgotten; epoch 0:
 * all are).  redirty: the key is dirty again (its write failed).
 */
typedef ngx_int_t (*ngx_do_buckets_emit_pt)(void *data, u_char *key,
    size_t len, int64_t tat, int64_t now);

void ngx_do_buckets_fill(ngx_do_namespace_t *ns, ngx_str_t *key,
    ngx_uint_t shard, uint64_t epoch, int64_t tat, ngx_queue_t *waiters);
ngx_int_t ngx_do_buckets_collect(ngx_do_namespace_t *ns, ngx_uint_t list,
    uint64_t epoch, ngx_do_buckets_emit_pt emit, void *data);
void ngx_do_buckets_redirty(ngx_do_namespace_t *ns, ngx_str_t *key);


#endif /* _NGX_DO_BUCKETS_H_INCLUDED_ */
