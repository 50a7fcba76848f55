
/*
 * A stored bucket table (a rate_limiter namespace on Redis): its keys are
 * loaded from storage when they are cold, and its dirty buckets stored.
 *
 * A key's TAT is a cell (ngx_do_cell_get(), ngx_do_cell_put()) of the
 * key's ID (idFromName), so that every node with the same do_secret finds
 * it.  A take that finds its key cold waits for a load: a read of the cell
 * by the worker that accepted the request, which other requests of this
 * worker for the same key wait for too (one read per key and worker);
 * once it answers, the table gets the TAT unless a warm bucket came first
 * (ngx_do_buckets_fill()), and the waiters are decided there, under the
 * table's lock.  Workers that load one key at once thus all decide on one
 * bucket: the limit stays exact without an owner worker, and a worker
 * that is stopped holds up nobody's keys.
 *
 * Each worker stores the dirty lists of the shards it owns every
 * do_flush_interval: their buckets' cells in writes of up to
 * NGX_DO_BUCKETS_BATCH at once (a TAT with an expiry of when its bucket
 * is full again and a second more, or a delete).  A write that fails
 * leaves its buckets dirty, for the next flush.  The table is in shared
 * memory, so a reload changes nothing, and a worker killed and respawned
 * finds its lists as they were; a worker that exits stores every list, so
 * that the decisions of workers that exited before it are stored too.
 *
 * In cluster mode a list is a shard, and its write carries the epoch of
 * the shard's lease this node holds: storage refuses it once the shard
 * went (the buckets are then forgotten, not tried again).  Lists of
 * shards this node does not hold are emptied by whichever worker looks
 * first.  Before this node gives a shard up, the cluster core has its
 * list stored at once (ngx_do_shard_flush(), through the handler this
 * file registers), and learns when storage answered.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_do.h"
#include "ngx_do_rate_limiter.h"
#include "ngx_do_buckets.h"


/* cells in one write */
#define NGX_DO_BUCKETS_BATCH      128


/* a key being loaded in this worker, and the takes that wait for it */
typedef struct {
    ngx_str_node_t             node;          /* str: the key */
    ngx_do_namespace_t        *ns;
    ngx_queue_t                waiters;       /* ngx_do_buckets_wait_t */
    uint64_t                   epoch;         /* cluster mode: as sent */
    u_char                     id[NGX_DO_ID_LEN];
} ngx_do_buckets_load_t;


/* a write of cells being stored, and the keys to mark again if it fails */
typedef struct {
    ngx_pool_t                *pool;
    ngx_do_namespace_t        *ns;
    ngx_array_t               *cells;         /* ngx_do_cell_t */
    ngx_array_t               *keys;          /* ngx_str_t */
    uint64_t                   epoch;         /* cluster mode */
    ngx_do_shard_done_pt       done;          /* ngx_do_shard_flush() */
    void                      *ctx;
} ngx_do_buckets_batch_t;


/* a namespace's loads and flush in this worker */
typedef struct {
    ngx_event_t                timer;
    ngx_do_namespace_t        *ns;
    ngx_rbtree_t               loads;         /* ngx_do_buckets_load_t */
    ngx_rbtree_node_t          sentinel;
    ngx_do_buckets_batch_t    *batch;         /* being filled */
    uint64_t                   epoch;         /* of the lists collected */
    ngx_do_shard_done_pt       done;
    void                      *ctx;
} ngx_do_buckets_flush_t;


static void ngx_do_buckets_loaded(void *data, ngx_int_t rc,
    ngx_str_t *value);
static void ngx_do_buckets_flush_handler(ngx_event_t *ev);
static void ngx_do_buckets_flush(ngx_do_buckets_flush_t *f, ngx_uint_t all);
static ngx_uint_t ngx_do_buckets_flush_list(ngx_do_buckets_flush_t *f,
    ngx_uint_t list);
static ngx_uint_t ngx_do_buckets_flush_shard(void *data, ngx_uint_t shard,
    ngx_do_shard_done_pt done, void *ctx);
static ngx_int_t ngx_do_buckets_emit(void *data, u_char *key, size_t len,
    int64_t tat, int64_t now);
static ngx_uint_t ngx_do_buckets_send(ngx_do_buckets_flush_t *f);
static void ngx_do_buckets_written(void *data, ngx_int_t rc,
    ngx_str_t *value);
static void ngx_do_buckets_failed(ngx_do_buckets_batch_t *batch);


/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_buckets_dumb;


ngx_int_t
ngx_do_buckets_init_worker(ngx_do_namespace_t *ns, ngx_cycle_t *cycle)
{
    ngx_do_buckets_flush_t      *f;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;

    if (!conf->stored) {
        return NGX_OK;
    }

    f = ngx_pcalloc(cycle->pool, sizeof(ngx_do_buckets_flush_t));
    if (f == NULL) {
        return NGX_ERROR;
    }

    ngx_do_buckets_dumb.fd = (ngx_socket_t) -1;

    f->ns = ns;
    ngx_rbtree_init(&f->loads, &f->sentinel, ngx_str_rbtree_insert_value);
    f->timer.handler = ngx_do_buckets_flush_handler;
    f->timer.data = &ngx_do_buckets_dumb;
    f->timer.log = cycle->log;
    f->timer.cancelable = 1;

    /* this worker's copy of the configuration */
    conf->flush = f;
    conf->clustered = ngx_do_buckets_remote_init();

    if (ngx_do_clustered()
        && ngx_do_shard_on_flush(ngx_do_buckets_flush_shard, f) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_add_timer(&f->timer, ngx_do_flush_interval());

    return NGX_OK;
}


/* at exit: every list is stored, and the loads answer nobody */
void
ngx_do_buckets_exit_worker(ngx_do_namespace_t *ns)
{
    ngx_queue_t                 *q;
    ngx_rbtree_node_t           *node;
    ngx_do_buckets_load_t       *load;
    ngx_do_buckets_wait_t       *w;
    ngx_do_buckets_flush_t      *f;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;
    f = conf->flush;

    if (f == NULL) {
        return;
    }

    if (f->timer.timer_set) {
        ngx_del_timer(&f->timer);
    }

    ngx_do_buckets_flush(f, 1);

    if (f->loads.root == f->loads.sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(f->loads.root, f->loads.sentinel);
         node;
         node = ngx_rbtree_next(&f->loads, node))
    {
        load = (ngx_do_buckets_load_t *) node;

        while (!ngx_queue_empty(&load->waiters)) {
            q = ngx_queue_head(&load->waiters);
            ngx_queue_remove(q);
            w = ngx_queue_data(q, ngx_do_buckets_wait_t, queue);
            w->load = NULL;
        }
    }
}


ngx_int_t
ngx_do_buckets_load(ngx_do_namespace_t *ns, ngx_str_t *key,
    ngx_do_buckets_wait_t *w)
{
    uint32_t                     hash;
    ngx_int_t                    rc;
    ngx_do_buckets_load_t       *load;
    ngx_do_buckets_flush_t      *f;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;
    f = conf->flush;

    if (f == NULL) {
        return NGX_ERROR;
    }

    if (conf->clustered) {
        rc = ngx_do_buckets_remote(ns, key, w);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    hash = ngx_crc32_short(key->data, key->len);

    load = (ngx_do_buckets_load_t *) ngx_str_rbtree_lookup(&f->loads, key,
                                                           hash);

    w->start = ngx_do_status_usec();

    if (load) {
        ngx_queue_insert_tail(&load->waiters, &w->queue);
        w->load = load;
        return NGX_OK;
    }

    load = ngx_alloc(sizeof(ngx_do_buckets_load_t) + key->len,
                     ngx_cycle->log);
    if (load == NULL) {
        return NGX_ERROR;
    }

    load->node.node.key = hash;
    load->node.str.data = (u_char *) (load + 1);
    load->node.str.len = key->len;
    ngx_memcpy(load->node.str.data, key->data, key->len);
    load->ns = ns;
    ngx_queue_init(&load->waiters);

    ngx_do_id_from_name(ns, key, load->id);
    load->epoch = ngx_do_shard_epoch(ngx_do_id_shard(load->id));

    if (ngx_do_cell_get(ns, load->id, ngx_do_buckets_loaded, load) != NGX_OK)
    {
        ngx_free(load);
        return NGX_ERROR;
    }

    ngx_rbtree_insert(&f->loads, &load->node.node);

    ngx_queue_insert_tail(&load->waiters, &w->queue);
    w->load = load;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do buckets \"%V\": loading key of object %08xD",
                   &ns->name, ngx_crc32_short(load->id, NGX_DO_ID_LEN));

    return NGX_OK;
}


void
ngx_do_buckets_cancel(ngx_do_buckets_wait_t *w)
{
    if (w->load) {
        ngx_queue_remove(&w->queue);
        w->load = NULL;
    }
}


/* the key's cell read: into the table, then every waiter is answered */
static void
ngx_do_buckets_loaded(void *data, ngx_int_t rc, ngx_str_t *value)
{
    ngx_do_buckets_load_t  *load = data;

    int64_t                      tat;
    uint64_t                     now;
    ngx_queue_t                 *q;
    ngx_do_buckets_wait_t       *w;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = load->ns->conf;

    ngx_rbtree_delete(&((ngx_do_buckets_flush_t *) conf->flush)->loads,
                      &load->node.node);

    tat = 0;

    if (rc == NGX_OK) {
        tat = ngx_atoof(value->data, value->len);

        if (tat == NGX_ERROR) {
            ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                                 NGX_DO_LOG_REPLY,
                                 "do: rate limiter \"%V\": a stored TAT is "
                                 "not a number, taken as none",
                                 &load->ns->name);
            tat = 0;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do buckets \"%V\": key loaded, rc %i",
                   &load->ns->name, rc);

    if (rc != NGX_ERROR) {
        ngx_do_buckets_fill(load->ns, &load->node.str,
                            ngx_do_id_shard(load->id), load->epoch, tat,
                            &load->waiters);
    }

    now = ngx_do_status_usec();

    while (!ngx_queue_empty(&load->waiters)) {
        q = ngx_queue_head(&load->waiters);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_do_buckets_wait_t, queue);
        w->load = NULL;

        if (rc == NGX_ERROR) {
            w->rc = NGX_ERROR;
        }

        ngx_do_status_count(load->ns, NGX_DO_STAT_CALLS);
        ngx_do_status_observe(load->ns, now - w->start);

        w->handler(w);
    }

    ngx_free(load);
}


static void
ngx_do_buckets_flush_handler(ngx_event_t *ev)
{
    ngx_do_buckets_flush_t  *f;

    f = (ngx_do_buckets_flush_t *) ((u_char *) ev
                                    - offsetof(ngx_do_buckets_flush_t, timer));

    ngx_do_buckets_flush(f, 0);

    ngx_add_timer(&f->timer, ngx_do_flush_interval());
}


/*
 * The dirty lists of this worker's shards (all: every list) to storage.
 * In cluster mode each list goes in writes of its own, under the epoch
 * this node holds; the lists of shards it does not hold are emptied.
 */
static void
ngx_do_buckets_flush(ngx_do_buckets_flush_t *f, ngx_uint_t all)
{
    ngx_uint_t  list, clustered;

    clustered = ngx_do_clustered();

    for (list = 0; list < NGX_DO_SHARDS; list++) {
        f->epoch = clustered ? ngx_do_shard_epoch(list) : 0;

        if (clustered && f->epoch == 0) {
            (void) ngx_do_buckets_collect(f->ns, list, 0,
                                          ngx_do_buckets_emit, f);
            continue;
        }

        if (!all && !ngx_do_shard_mine(list)) {
            continue;
        }

        (void) ngx_do_buckets_flush_list(f, list);

        if (clustered && f->batch) {
            (void) ngx_do_buckets_send(f);
        }
    }

    if (f->batch) {
        (void) ngx_do_buckets_send(f);
    }
}


/* a list into batches, each sent when full: the number sent */
static ngx_uint_t
ngx_do_buckets_flush_list(ngx_do_buckets_flush_t *f, ngx_uint_t list)
{
    ngx_uint_t  n;

    n = 0;

    while (ngx_do_buckets_collect(f->ns, list, f->epoch, ngx_do_buckets_emit,
                                  f)
           != NGX_OK)
    {
        /* a full batch, or no memory: send what there is, if any */
        if (f->batch == NULL) {
            break;
        }

        if (f->batch->cells->nelts == 0) {
            ngx_destroy_pool(f->batch->pool);
            f->batch = NULL;
            break;
        }

        n += ngx_do_buckets_send(f);
    }

    return n;
}


/*
 * Cluster mode, from ngx_do_shard_flush(): the shard's list is stored
 * now, whichever worker's it is, under the epoch this node still holds;
 * done(ctx) hears each write sent
 */
static ngx_uint_t
ngx_do_buckets_flush_shard(void *data, ngx_uint_t shard,
    ngx_do_shard_done_pt done, void *ctx)
{
    ngx_do_buckets_flush_t *f = data;

    ngx_uint_t  n;

    f->epoch = ngx_do_shard_epoch(shard);

    if (f->epoch == 0) {
        return 0;
    }

    if (f->batch) {
        /* of other shards: not to be waited for */
        (void) ngx_do_buckets_send(f);
    }

    f->done = done;
    f->ctx = ctx;

    n = ngx_do_buckets_flush_list(f, shard);

    if (f->batch) {
        n += ngx_do_buckets_send(f);
    }

    f->done = NULL;
    f->ctx = NULL;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do buckets \"%V\": shard %ui flushed, %ui writes",
                   &f->ns->name, shard, n);

    return n;
}


/* under the table's lock: one cell into the batch being filled */
static ngx_int_t
ngx_do_buckets_emit(void *data, u_char *key, size_t len, int64_t tat,
    int64_t now)
{
    ngx_do_buckets_flush_t *f = data;

    u_char                  *p;
    ngx_pool_t              *pool;
    ngx_str_t               *k;
    ngx_do_cell_t           *cell;
    ngx_do_buckets_batch_t  *batch;

    batch = f->batch;

    if (batch && batch->cells->nelts == NGX_DO_BUCKETS_BATCH) {
        return NGX_ERROR;
    }

    if (batch == NULL) {
        pool = ngx_create_pool(NGX_DO_BUCKETS_BATCH * 128, ngx_cycle->log);
        if (pool == NULL) {
            return NGX_ERROR;
        }

        batch = ngx_palloc(pool, sizeof(ngx_do_buckets_batch_t));
        if (batch == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        batch->pool = pool;
        batch->ns = f->ns;
        batch->epoch = f->epoch;
        batch->done = f->done;
        batch->ctx = f->ctx;
        batch->cells = ngx_array_create(pool, NGX_DO_BUCKETS_BATCH,
                                        sizeof(ngx_do_cell_t));
        batch->keys = ngx_array_create(pool, NGX_DO_BUCKETS_BATCH,
                                       sizeof(ngx_str_t));
        if (batch->cells == NULL || batch->keys == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        f->batch = batch;
    }

    p = ngx_pnalloc(batch->pool, len + NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* within the arrays' first allocation: they do not grow */
    cell = ngx_array_push(batch->cells);
    k = ngx_array_push(batch->keys);

    k->data = p;
    k->len = len;
    p = ngx_cpymem(p, key, len);

    ngx_memzero(cell, sizeof(ngx_do_cell_t));

    if (tat == 0) {
        cell->delete = 1;
        return NGX_OK;
    }

    cell->value.data = p;
    cell->value.len = ngx_sprintf(p, "%L", tat) - p;

    /* full again at tat: worth nothing a second after that */
    cell->ttl = (ngx_msec_t) ((tat - now + 999) / 1000) + 1000;

    return NGX_OK;
}


/*
 * The batch being filled goes to storage, its keys' IDs first: 1 when it
 * was sent (its handler runs later), 0 when it failed at once
 */
static ngx_uint_t
ngx_do_buckets_send(ngx_do_buckets_flush_t *f)
{
    ngx_int_t                rc;
    ngx_str_t               *k;
    ngx_uint_t               i;
    ngx_do_cell_t           *cell;
    ngx_do_buckets_batch_t  *batch;

    batch = f->batch;
    f->batch = NULL;

    cell = batch->cells->elts;
    k = batch->keys->elts;

    for (i = 0; i < batch->cells->nelts; i++) {
        cell[i].id = ngx_pnalloc(batch->pool, NGX_DO_ID_LEN);
        if (cell[i].id == NULL) {
            ngx_do_buckets_failed(batch);
            return 0;
        }

        ngx_do_id_from_name(batch->ns, &k[i], cell[i].id);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do buckets \"%V\": storing %ui keys",
                   &batch->ns->name, batch->cells->nelts);

    rc = ngx_do_cell_put(batch->ns, batch->cells->elts, batch->cells->nelts,
                         batch->epoch, ngx_do_buckets_written, batch);

    if (rc == NGX_OK) {
        return 1;
    }

    if (rc == NGX_DECLINED && ngx_do_clustered()) {
        /* refused by epoch at once: the shard is not held here */
        ngx_destroy_pool(batch->pool);
        return 0;
    }

    ngx_do_buckets_failed(batch);

    return 0;
}


/* stored; or refused by epoch (cluster mode): forgotten, not retried */
static void
ngx_do_buckets_written(void *data, ngx_int_t rc, ngx_str_t *value)
{
    ngx_do_buckets_batch_t  *batch = data;

    if (batch->done) {
        batch->done(batch->ctx, rc);
    }

    if (rc == NGX_OK || rc == NGX_DECLINED) {
        ngx_destroy_pool(batch->pool);
        return;
    }

    ngx_do_buckets_failed(batch);
}


/* a write that failed: its keys are dirty again, for the next flush */
static void
ngx_do_buckets_failed(ngx_do_buckets_batch_t *batch)
{
    ngx_str_t   *k;
    ngx_uint_t   i;

    ngx_do_status_count(batch->ns, NGX_DO_STAT_COMMIT_FAILURES);

    ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                         NGX_DO_LOG_UNAVAILABLE,
                         "do: deferred writes of namespace \"%V\" could not "
                         "be stored, will retry", &batch->ns->name);

    k = batch->keys->elts;

    for (i = 0; i < batch->keys->nelts; i++) {
        ngx_do_buckets_redirty(batch->ns, &k[i]);
    }

    ngx_destroy_pool(batch->pool);
}
