
/*
 * The shard map: the one function that says which worker owns a shard.
 * An object's shard comes from its ID (ngx_do_id_shard()); everything that
 * routes a call, scans an alarm index or asks "is this mine" goes through
 * ngx_do_shard_owner().  Today the rule is shard % worker_processes within
 * one node; cluster mode will change this function, and only it, to map a
 * shard to a node and a worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"
#include "ngx_do_cluster.h"


ngx_uint_t
ngx_do_shard_owner(ngx_uint_t shard)
{
    return shard % ngx_do_runtime.workers;
}


ngx_uint_t
ngx_do_shard_mine(ngx_uint_t shard)
{
    return ngx_do_shard_owner(shard) == ngx_worker;
}


/* cluster mode: the classes' handlers of ngx_do_shard_flush() */
typedef struct ngx_do_shard_hook_s  ngx_do_shard_hook_t;

struct ngx_do_shard_hook_s {
    ngx_do_shard_hook_t       *next;
    ngx_do_shard_flush_pt      handler;
    void                      *data;
};


/* one ngx_do_shard_flush() until storage answered its writes */
typedef struct {
    void                     (*done)(void *data, ngx_int_t rc);
    void                      *data;
    ngx_uint_t                 pending;
    ngx_int_t                  rc;
} ngx_do_shard_flushing_t;


static void ngx_do_shard_leave(ngx_uint_t shard);
static void ngx_do_shard_flushed(void *ctx, ngx_int_t rc);


static ngx_do_shard_hook_t  *ngx_do_shard_hooks;


ngx_uint_t
ngx_do_clustered(void)
{
    return ngx_do_cluster != NULL;
}


uint64_t
ngx_do_shard_epoch(ngx_uint_t shard)
{
    return ngx_do_cluster ? ngx_do_cluster_epoch(shard) : 0;
}


/* from a class's init_worker: the list lives as long as the cycle */
ngx_int_t
ngx_do_shard_on_flush(ngx_do_shard_flush_pt handler, void *data)
{
    ngx_do_shard_hook_t  *h;

    h = ngx_palloc(ngx_cycle->pool, sizeof(ngx_do_shard_hook_t));
    if (h == NULL) {
        return NGX_ERROR;
    }

    if (ngx_do_shard_hooks == NULL) {
        /* the agent's handover calls them, a tick before it lets go */
        ngx_do_cluster_on_leave(ngx_do_shard_leave);
    }

    h->handler = handler;
    h->data = data;
    h->next = ngx_do_shard_hooks;
    ngx_do_shard_hooks = h;

    return NGX_OK;
}


ngx_int_t
ngx_do_shard_flush(ngx_uint_t shard, void (*done)(void *data, ngx_int_t rc),
    void *data)
{
    ngx_do_shard_hook_t      *h;
    ngx_do_shard_flushing_t  *f;

    f = ngx_alloc(sizeof(ngx_do_shard_flushing_t), ngx_cycle->log);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->done = done;
    f->data = data;
    f->pending = 0;
    f->rc = NGX_OK;

    /* storage answers later, never from inside a handler */
    for (h = ngx_do_shard_hooks; h; h = h->next) {
        f->pending += h->handler(h->data, shard, ngx_do_shard_flushed, f);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_CORE, ngx_cycle->log, 0,
                   "do shard %ui: flushing, %ui writes", shard, f->pending);

    if (f->pending == 0) {
        ngx_free(f);
        return NGX_OK;
    }

    return NGX_AGAIN;
}


static void
ngx_do_shard_leave(ngx_uint_t shard)
{
    (void) ngx_do_shard_flush(shard, NULL, NULL);
}


static void
ngx_do_shard_flushed(void *ctx, ngx_int_t rc)
{
    ngx_do_shard_flushing_t  *f = ctx;

    if (rc != NGX_OK) {
        f->rc = NGX_ERROR;
    }

    if (--f->pending) {
        return;
    }

    if (f->done) {
        f->done(f->data, f->rc);
    }

    ngx_free(f);
}
