
/*
 * The buckets of a rate_limiter namespace.
 *
 * A key of a rate limiter is a bucket, and a bucket is one TAT (see
 * ngx_do_rate_limiter_gcra()): it needs no object, no owner worker and no
 * call.  The namespace keeps its buckets in a shared zone of its own,
 * "do_buckets:<namespace>" (size=, so its mutex is nobody else's), and the
 * worker that accepted a request reads the TAT, decides and writes it
 * back under the zone's mutex.  One read-modify-write under one lock is as
 * serial as one owner's turns: exact across all workers, and across
 * reloads, since nginx keeps a zone whose name and size stay the same, and
 * old and new workers share it while they overlap.
 *
 * Nodes are kept as limit_req keeps its own: a red-black tree keyed by the
 * CRC32 of the key (then its bytes), the key inline in the node, and a
 * queue of the buckets from the most recently used.  The node is small: the
 * tree's links, the key's length, the queue's links, the TAT and the key.
 *
 * A full bucket (TAT <= now) is worth nothing: no bucket reads the same.
 * So a new key first frees the least recently used buckets that are full,
 * two at most, as limit_req does, and stops at a live one: with one rate
 * per namespace, the buckets behind it were mostly used later and are live
 * too.  Not always (a bucket with a long backlog stays live long after its
 * last use), so when the zone has no room left, the look goes on through
 * 64 more, and moves the live ones it passes to the head of the queue,
 * where later looks do not stop at them again.  A live bucket is never
 * dropped to make room: when there is still none, the take fails
 * (NGX_DECLINED) and the gate fails open or closed as the namespace says.
 *
 * On Redis the table is "stored": the node's authoritative copy of what
 * Redis keeps, one string per key.  A key the table does not have, or has
 * full for over NGX_DO_BUCKETS_COLD, is cold: it is not decided before
 * storage was read (ngx_do_buckets_store.c), for it may be exhausted from
 * before a restart, or by another node.  The load fills the table only
 * where it has no warm bucket (fill), so that however many workers load
 * a key at once, every decision is made on one bucket under the lock.  A
 * bucket whose TAT changed is dirty: it is pushed on one of
 * NGX_DO_SHARDS lists (by its CRC32), linked through the zone offsets of
 * its nodes, and the list's owner worker stores it (collect): a TAT still
 * ahead is written, a full one that storage may hold ahead (STORED) is
 * forgotten there, and a full one leaves the table once it is cold.  A
 * dirty bucket is never freed elsewhere (it is linked), so the look for
 * room passes it over like a live one.
 *
 * In cluster mode a stored bucket also keeps, after its key, the shard of
 * its key's ID and the epoch of the shard's lease it was loaded under: a
 * bucket of another epoch than the one this node holds now is cold (the
 * shard went and came back: another node may have decided the key
 * meanwhile), the dirty lists are the shards (a write to storage carries
 * one shard's epoch), and dirty buckets of an epoch this node no longer
 * holds are not stored but forgotten (collect): storage would refuse
 * them.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_do.h"
#include "ngx_do_rate_limiter.h"
#include "ngx_do_buckets.h"


#define NGX_DO_BUCKETS_ZONE       "do_buckets:"

/* full buckets a new key looks for; and when the zone is out of memory */
#define NGX_DO_BUCKETS_LOOK       2
#define NGX_DO_BUCKETS_LOOK_FULL  64

/* a stored table's bucket: in a dirty list; storage may hold it ahead */
#define NGX_DO_BUCKET_DIRTY       0x01
#define NGX_DO_BUCKET_STORED      0x02

/* cluster mode: the epoch (8 bytes) and the shard (4) after the key */
#define NGX_DO_BUCKET_LEASE_LEN   12


/*
 * A bucket, laid over its tree node from the node's color on (as
 * limit_req's nodes): the node's key is the CRC32 of the key's bytes.
 * next: the next bucket of its dirty list, as the offset of its node in
 * the zone over 8 (slab chunks are 8-aligned), 0 ending the list.
 */
typedef struct {
    u_char                     color;
    u_char                     flags;
    u_short                    len;
    uint32_t                   next;
    ngx_queue_t                queue;
    int64_t                    tat;
    u_char                     data[1];
} ngx_do_bucket_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;         /* most recently used first */
    ngx_uint_t                 count;
    int64_t                    now;           /* the latest time decided at */
    uint32_t                   dirty[NGX_DO_SHARDS];
} ngx_do_buckets_sh_t;


static ngx_int_t ngx_do_buckets_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static int64_t ngx_do_buckets_now(ngx_do_buckets_sh_t *sh);
static ngx_do_bucket_t *ngx_do_buckets_lookup(ngx_do_buckets_sh_t *sh,
    ngx_str_t *key, uint32_t hash);
static ngx_do_bucket_t *ngx_do_buckets_insert(ngx_slab_pool_t *shpool,
    ngx_do_buckets_sh_t *sh, ngx_str_t *key, uint32_t hash, int64_t now);
static void ngx_do_buckets_expire(ngx_slab_pool_t *shpool,
    ngx_do_buckets_sh_t *sh, ngx_uint_t n, ngx_uint_t full, int64_t now);
static void ngx_do_buckets_dirty(ngx_slab_pool_t *shpool,
    ngx_do_buckets_sh_t *sh, ngx_do_bucket_t *b);
static void ngx_do_buckets_free(ngx_slab_pool_t *shpool,
    ngx_do_buckets_sh_t *sh, ngx_do_bucket_t *b);
static void ngx_do_buckets_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static uint64_t ngx_do_bucket_epoch(ngx_do_bucket_t *b, ngx_uint_t *shard);
static void ngx_do_bucket_lease(ngx_do_bucket_t *b, ngx_uint_t shard,
    uint64_t epoch);
static ngx_uint_t ngx_do_bucket_stale(ngx_do_rate_limiter_conf_t *conf,
    ngx_do_bucket_t *b);


#define ngx_do_bucket_node(b)                                                \
    ((ngx_rbtree_node_t *) ((u_char *) (b)                                   \
                            - offsetof(ngx_rbtree_node_t, color)))

/* a bucket's place in the zone, for the dirty lists, and back */
#define ngx_do_bucket_offset(shpool, b)                                      \
    ((uint32_t) (((u_char *) ngx_do_bucket_node(b) - (u_char *) (shpool))    \
                 >> 3))

#define ngx_do_bucket_at(shpool, off)                                        \
    ((ngx_do_bucket_t *) &((ngx_rbtree_node_t *)                             \
                           ((u_char *) (shpool) + ((size_t) (off) << 3)))    \
                         ->color)

/* a bucket of a stored table that is no longer decided without a load */
#define ngx_do_bucket_cold(b, now)                                           \
    ((b)->tat + NGX_DO_BUCKETS_COLD < (now))


ngx_int_t
ngx_do_buckets_add(ngx_conf_t *cf, ngx_do_namespace_t *ns)
{
    ngx_str_t                    name;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;

    name.len = sizeof(NGX_DO_BUCKETS_ZONE) - 1 + ns->name.len;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(name.data, NGX_DO_BUCKETS_ZONE,
                          sizeof(NGX_DO_BUCKETS_ZONE) - 1),
               ns->name.data, ns->name.len);

    conf->buckets = ngx_shared_memory_add(cf, &name, conf->size,
                                          &ngx_do_rate_limiter_class);
    if (conf->buckets == NULL) {
        return NGX_ERROR;
    }

    conf->buckets->init = ngx_do_buckets_init_zone;

    return NGX_OK;
}


/* a new zone gets an empty table; a zone kept by a reload keeps its own */
static ngx_int_t
ngx_do_buckets_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t      *shpool;
    ngx_do_buckets_sh_t  *sh;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    sh = ngx_slab_alloc(shpool, sizeof(ngx_do_buckets_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sh, sizeof(ngx_do_buckets_sh_t));
    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_do_buckets_rbtree_insert);
    ngx_queue_init(&sh->queue);

    shpool->data = sh;

    /* the gate logs a full table itself, throttled */
    shpool->log_nomem = 0;

    shm_zone->data = sh;

    return NGX_OK;
}


/*
 * Under the lock: the time to decide at, from this worker's clock.  Each
 * worker's clock is the one it cached at its last event loop turn, so
 * workers lag one another by a few milliseconds; a bucket's time must not
 * go back when the next worker is behind (it would see a fuller bucket as
 * emptier and reject within the limit), as limit_req counts no negative
 * elapsed time.  A clock set back by more than a second is taken as it
 * is.
 */
static int64_t
ngx_do_buckets_now(ngx_do_buckets_sh_t *sh)
{
    int64_t  now;

    now = ngx_do_rate_limiter_now();

    if (now < sh->now && sh->now - now < 1000000) {
        return sh->now;
    }

    sh->now = now;

    return now;
}


ngx_int_t
ngx_do_buckets_take(ngx_do_namespace_t *ns, ngx_str_t *key, int64_t burst,
    int64_t delay, ngx_do_rate_limiter_verdict_t *v, ngx_log_t *log)
{
    int64_t                      now;
    uint32_t                     hash;
    uint64_t                     start;
    ngx_int_t                    rc;
    ngx_slab_pool_t             *shpool;
    ngx_do_bucket_t             *b;
    ngx_do_buckets_sh_t         *sh;
    ngx_do_rate_limiter_conf_t  *conf;

    ngx_memzero(v, sizeof(ngx_do_rate_limiter_verdict_t));

    if (key->len > NGX_DO_BUCKETS_MAX_KEY) {
        return NGX_ERROR;
    }

    conf = ns->conf;

    if (conf->clustered && !ngx_do_buckets_here(ns, key)) {
        /* another node decides it: ngx_do_buckets_load() asks it */
        return NGX_AGAIN;
    }

    shpool = (ngx_slab_pool_t *) conf->buckets->shm.addr;
    sh = conf->buckets->data;

    start = ngx_do_status_usec();
    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&shpool->mutex);

    now = ngx_do_buckets_now(sh);

    b = ngx_do_buckets_lookup(sh, key, hash);

    if (conf->stored
        && (b == NULL || ngx_do_bucket_cold(b, now)
            || ngx_do_bucket_stale(conf, b)))
    {
        ngx_shmtx_unlock(&shpool->mutex);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "do buckets \"%V\": cold key, loading it",
                       &ns->name);
        return NGX_AGAIN;
    }

    if (b) {
        ngx_queue_remove(&b->queue);
        ngx_queue_insert_head(&sh->queue, &b->queue);

        rc = ngx_do_rate_limiter_gcra(conf, burst, delay, now, &b->tat, v);

        if (rc == NGX_OK && conf->stored) {
            ngx_do_buckets_dirty(shpool, sh, b);
        }

    } else {
        b = ngx_do_buckets_insert(shpool, sh, key, hash, now);

        rc = b ? ngx_do_rate_limiter_gcra(conf, burst, delay, now, &b->tat, v)
               : NGX_DECLINED;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_do_status_count(ns, NGX_DO_STAT_CALLS);
    ngx_do_status_observe(ns, ngx_do_status_usec() - start);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, log, 0,
                   "do buckets \"%V\": take %i, remaining %L, %ui buckets",
                   &ns->name, rc, v->remaining, sh->count);

    return rc;
}


void
ngx_do_buckets_refund(ngx_do_namespace_t *ns, ngx_str_t *key)
{
    int64_t                      now;
    uint32_t                     hash;
    uint64_t                     start;
    ngx_slab_pool_t             *shpool;
    ngx_do_bucket_t             *b;
    ngx_do_rate_limiter_conf_t  *conf;

    if (key->len > NGX_DO_BUCKETS_MAX_KEY) {
        return;
    }

    conf = ns->conf;

    if (conf->clustered && ngx_do_buckets_remote_refund(ns, key)
                           != NGX_DECLINED)
    {
        return;
    }

    shpool = (ngx_slab_pool_t *) conf->buckets->shm.addr;

    start = ngx_do_status_usec();
    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&shpool->mutex);

    now = ngx_do_buckets_now(conf->buckets->data);

    /* a bucket that is gone was full: there is nothing to give back */
    b = ngx_do_buckets_lookup(conf->buckets->data, key, hash);

    if (b && b->tat > now && !ngx_do_bucket_stale(conf, b)) {
        ngx_do_rate_limiter_gcra_refund(conf, now, &b->tat);

        if (conf->stored) {
            ngx_do_buckets_dirty(shpool, conf->buckets->data, b);
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_do_status_count(ns, NGX_DO_STAT_CALLS);
    ngx_do_status_observe(ns, ngx_do_status_usec() - start);
}


ngx_int_t
ngx_do_buckets_tat(ngx_do_namespace_t *ns, ngx_str_t *key, int64_t *tat)
{
    int64_t                      now;
    uint32_t                     hash;
    ngx_int_t                    rc;
    ngx_slab_pool_t             *shpool;
    ngx_do_bucket_t             *b;
    ngx_do_rate_limiter_conf_t  *conf;

    *tat = 0;

    if (key->len > NGX_DO_BUCKETS_MAX_KEY) {
        return NGX_OK;
    }

    conf = ns->conf;

    if (conf->clustered && !ngx_do_buckets_here(ns, key)) {
        return NGX_AGAIN;
    }

    shpool = (ngx_slab_pool_t *) conf->buckets->shm.addr;

    hash = ngx_crc32_short(key->data, key->len);
    rc = NGX_OK;

    ngx_shmtx_lock(&shpool->mutex);

    now = ngx_do_buckets_now(conf->buckets->data);

    b = ngx_do_buckets_lookup(conf->buckets->data, key, hash);

    if (conf->stored
        && (b == NULL || ngx_do_bucket_cold(b, now)
            || ngx_do_bucket_stale(conf, b)))
    {
        rc = NGX_AGAIN;

    } else if (b) {
        *tat = b->tat;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return rc;
}


void
ngx_do_buckets_fill(ngx_do_namespace_t *ns, ngx_str_t *key, ngx_uint_t shard,
    uint64_t epoch, int64_t tat, ngx_queue_t *waiters)
{
    int64_t                      now;
    uint32_t                     hash;
    ngx_queue_t                 *q;
    ngx_slab_pool_t             *shpool;
    ngx_do_bucket_t             *b;
    ngx_do_buckets_sh_t         *sh;
    ngx_do_buckets_wait_t       *w;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;
    shpool = (ngx_slab_pool_t *) conf->buckets->shm.addr;
    sh = conf->buckets->data;

    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&shpool->mutex);

    now = ngx_do_buckets_now(sh);

    b = ngx_do_buckets_lookup(sh, key, hash);

    if (b == NULL) {
        b = ngx_do_buckets_insert(shpool, sh, key, hash, now);

        if (b && ngx_do_clustered()) {
            ngx_do_bucket_lease(b, shard, epoch);
        }
    }

    /*
     * a new bucket (TAT 0) or a cold one takes what was read; a warm one
     * was filled or decided since the read: it is newer, unless it is of
     * another epoch than the read's (cluster mode)
     */
    if (b
        && (ngx_do_bucket_cold(b, now)
            || (ngx_do_clustered() && ngx_do_bucket_epoch(b, NULL) != epoch)))
    {
        b->tat = tat;

        if (tat > now) {
            b->flags |= NGX_DO_BUCKET_STORED;
        }

        if (ngx_do_clustered()) {
            ngx_do_bucket_lease(b, shard, epoch);
        }
    }

    for (q = ngx_queue_head(waiters);
         q != ngx_queue_sentinel(waiters);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_do_buckets_wait_t, queue);

        if (b == NULL) {
            w->rc = NGX_DECLINED;
            continue;
        }

        if (w->inspect) {
            w->tat = b->tat;
            w->rc = NGX_OK;
            continue;
        }

        w->rc = ngx_do_rate_limiter_gcra(conf, w->burst, w->delay, now,
                                         &b->tat, &w->v);

        if (w->rc == NGX_OK) {
            ngx_do_buckets_dirty(shpool, sh, b);
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * The dirty buckets of a list, as collected: a TAT ahead is written (and
 * storage holds it from then on), a full one that storage may hold ahead
 * is forgotten there; full ones stay in the list until they are cold,
 * then leave the table.
 */
ngx_int_t
ngx_do_buckets_collect(ngx_do_namespace_t *ns, ngx_uint_t list,
    uint64_t epoch, ngx_do_buckets_emit_pt emit, void *data)
{
    int64_t                      now;
    uint32_t                     off, keep;
    ngx_int_t                    rc;
    ngx_uint_t                   clustered;
    ngx_slab_pool_t             *shpool;
    ngx_do_bucket_t             *b;
    ngx_do_buckets_sh_t         *sh;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;
    shpool = (ngx_slab_pool_t *) conf->buckets->shm.addr;
    sh = conf->buckets->data;

    if (sh->dirty[list] == 0) {
        return NGX_OK;
    }

    rc = NGX_OK;
    keep = 0;
    clustered = ngx_do_clustered();

    ngx_shmtx_lock(&shpool->mutex);

    now = ngx_do_buckets_now(sh);
    off = sh->dirty[list];

    while (off) {
        b = ngx_do_bucket_at(shpool, off);

        if (clustered
            && (epoch == 0 || ngx_do_bucket_epoch(b, NULL) != epoch))
        {
            /* decided under a lease this node no longer holds: forgotten */
            off = b->next;
            b->flags = 0;
            continue;
        }

        if (b->tat > now || (b->flags & NGX_DO_BUCKET_STORED)) {
            if (emit(data, b->data, b->len, (b->tat > now) ? b->tat : 0, now)
                != NGX_OK)
            {
                rc = NGX_ERROR;
                break;
            }
        }

        off = b->next;

        if (b->tat > now) {
            b->flags = NGX_DO_BUCKET_STORED;
            continue;
        }

        b->flags &= ~NGX_DO_BUCKET_STORED;

        if (ngx_do_bucket_cold(b, now)) {
            ngx_do_buckets_free(shpool, sh, b);
            continue;
        }

        /* full, not cold yet: in the list again, for the next look */
        b->next = keep;
        keep = ngx_do_bucket_offset(shpool, b);
    }

    /* what was not looked at, then what stays */
    sh->dirty[list] = off;

    while (keep) {
        b = ngx_do_bucket_at(shpool, keep);
        keep = b->next;
        b->next = sh->dirty[list];
        sh->dirty[list] = ngx_do_bucket_offset(shpool, b);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return rc;
}


void
ngx_do_buckets_redirty(ngx_do_namespace_t *ns, ngx_str_t *key)
{
    uint32_t                     hash;
    ngx_slab_pool_t             *shpool;
    ngx_do_bucket_t             *b;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;
    shpool = (ngx_slab_pool_t *) conf->buckets->shm.addr;

    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&shpool->mutex);

    b = ngx_do_buckets_lookup(conf->buckets->data, key, hash);

    if (b) {
        b->flags |= NGX_DO_BUCKET_STORED;
        ngx_do_buckets_dirty(shpool, conf->buckets->data, b);
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/* under the lock: b goes on its list, once */
static void
ngx_do_buckets_dirty(ngx_slab_pool_t *shpool, ngx_do_buckets_sh_t *sh,
    ngx_do_bucket_t *b)
{
    ngx_uint_t  list;

    if (b->flags & NGX_DO_BUCKET_DIRTY) {
        return;
    }

    if (ngx_do_clustered()) {
        (void) ngx_do_bucket_epoch(b, &list);

    } else {
        list = ngx_do_bucket_node(b)->key % NGX_DO_SHARDS;
    }

    b->flags |= NGX_DO_BUCKET_DIRTY;
    b->next = sh->dirty[list];
    sh->dirty[list] = ngx_do_bucket_offset(shpool, b);
}


/* under the lock: b leaves the table (and no dirty list holds it) */
static void
ngx_do_buckets_free(ngx_slab_pool_t *shpool, ngx_do_buckets_sh_t *sh,
    ngx_do_bucket_t *b)
{
    ngx_queue_remove(&b->queue);
    ngx_rbtree_delete(&sh->rbtree, ngx_do_bucket_node(b));
    ngx_slab_free_locked(shpool, ngx_do_bucket_node(b));
    sh->count--;
}


/*
 * Read without the lock (a gauge may be a take behind): the free bytes are
 * the free pages and the free chunks of the pages in use, from the slab
 * pool's statistics (slot i holds chunks of 1 << (min_shift + i) bytes)
 */
void
ngx_do_buckets_usage(ngx_do_namespace_t *ns, ngx_do_table_usage_t *usage)
{
    ngx_uint_t                   i;
    ngx_slab_pool_t             *shpool;
    ngx_do_buckets_sh_t         *sh;
    ngx_do_rate_limiter_conf_t  *conf;

    conf = ns->conf;
    shpool = (ngx_slab_pool_t *) conf->buckets->shm.addr;
    sh = conf->buckets->data;

    usage->entries = sh->count;
    usage->size = shpool->end - (u_char *) shpool;
    usage->free = shpool->pfree * ngx_pagesize;

    for (i = 0; i < ngx_pagesize_shift - shpool->min_shift; i++) {
        usage->free += (shpool->stats[i].total - shpool->stats[i].used)
                       << (shpool->min_shift + i);
    }
}


static ngx_do_bucket_t *
ngx_do_buckets_lookup(ngx_do_buckets_sh_t *sh, ngx_str_t *key,
    uint32_t hash)
{
    ngx_int_t           rc;
    ngx_do_bucket_t    *b;
    ngx_rbtree_node_t  *node, *sentinel;

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        b = (ngx_do_bucket_t *) &node->color;

        rc = ngx_memn2cmp(key->data, b->data, key->len, (size_t) b->len);

        if (rc == 0) {
            return b;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * A new key's bucket, at the head of the queue, full (TAT 0); full buckets
 * are freed first, and never a live one: NULL when there is no room
 */
static ngx_do_bucket_t *
ngx_do_buckets_insert(ngx_slab_pool_t *shpool, ngx_do_buckets_sh_t *sh,
    ngx_str_t *key, uint32_t hash, int64_t now)
{
    size_t              size;
    ngx_do_bucket_t    *b;
    ngx_rbtree_node_t  *node;

    ngx_do_buckets_expire(shpool, sh, NGX_DO_BUCKETS_LOOK, 0, now);

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_do_bucket_t, data) + key->len
           + (ngx_do_clustered() ? NGX_DO_BUCKET_LEASE_LEN : 0);

    node = ngx_slab_alloc_locked(shpool, size);

    if (node == NULL) {
        ngx_do_buckets_expire(shpool, sh, NGX_DO_BUCKETS_LOOK_FULL, 1, now);

        node = ngx_slab_alloc_locked(shpool, size);

        if (node == NULL) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                           "do buckets: no room for a new key, %ui live",
                           sh->count);
            return NULL;
        }
    }

    node->key = hash;

    b = (ngx_do_bucket_t *) &node->color;

    b->flags = 0;
    b->len = (u_short) key->len;
    b->next = 0;
    b->tat = 0;
    ngx_memcpy(b->data, key->data, key->len);

    if (ngx_do_clustered()) {
        ngx_do_bucket_lease(b, 0, 0);
    }

    ngx_rbtree_insert(&sh->rbtree, node);
    ngx_queue_insert_head(&sh->queue, &b->queue);
    sh->count++;

    return b;
}


/*
 * Looks at up to n of the least recently used buckets and frees the full
 * ones; at a live one (or a dirty one: a list holds it) it stops, or,
 * when the zone is full, moves it to the head of the queue and goes on
 */
static void
ngx_do_buckets_expire(ngx_slab_pool_t *shpool, ngx_do_buckets_sh_t *sh,
    ngx_uint_t n, ngx_uint_t full, int64_t now)
{
    ngx_uint_t        i;
    ngx_queue_t      *q;
    ngx_do_bucket_t  *b;

    n = ngx_min(n, sh->count);

    for (i = 0; i < n; i++) {
        q = ngx_queue_last(&sh->queue);
        b = ngx_queue_data(q, ngx_do_bucket_t, queue);

        if (b->tat > now || (b->flags & NGX_DO_BUCKET_DIRTY)) {
            if (!full) {
                return;
            }

            ngx_queue_remove(q);
            ngx_queue_insert_head(&sh->queue, q);
            continue;
        }

        ngx_do_buckets_free(shpool, sh, b);
    }
}


/* by the CRC32, then by the key's bytes, as ngx_do_buckets_lookup() */
static void
ngx_do_buckets_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_do_bucket_t     *b, *bt;
    ngx_rbtree_node_t  **p;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            b = (ngx_do_bucket_t *) &node->color;
            bt = (ngx_do_bucket_t *) &temp->color;

            p = (ngx_memn2cmp(b->data, bt->data, b->len, bt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* cluster mode: the epoch a bucket was loaded under, and its shard */
static uint64_t
ngx_do_bucket_epoch(ngx_do_bucket_t *b, ngx_uint_t *shard)
{
    uint32_t  s;
    uint64_t  epoch;

    /* after the key: unaligned */
    ngx_memcpy(&epoch, b->data + b->len, sizeof(uint64_t));

    if (shard) {
        ngx_memcpy(&s, b->data + b->len + sizeof(uint64_t), sizeof(uint32_t));
        *shard = s % NGX_DO_SHARDS;
    }

    return epoch;
}


static void
ngx_do_bucket_lease(ngx_do_bucket_t *b, ngx_uint_t shard, uint64_t epoch)
{
    uint32_t  s;

    s = (uint32_t) shard;

    ngx_memcpy(b->data + b->len, &epoch, sizeof(uint64_t));
    ngx_memcpy(b->data + b->len + sizeof(uint64_t), &s, sizeof(uint32_t));
}


/*
 * cluster mode: a bucket of a stored table loaded under another epoch
 * than the one this node holds now is read again before it decides
 */
static ngx_uint_t
ngx_do_bucket_stale(ngx_do_rate_limiter_conf_t *conf, ngx_do_bucket_t *b)
{
    uint64_t    epoch;
    ngx_uint_t  shard;

    if (!conf->stored || !ngx_do_clustered()) {
        return 0;
    }

    epoch = ngx_do_bucket_epoch(b, &shard);

    return epoch == 0 || epoch != ngx_do_shard_epoch(shard);
}
