
/*
 * Objects on their owner worker: the table of active objects, their
 * activation and eviction.
 *
 * A worker keeps its active objects in a chained hash table by ID.  An
 * object comes into being with its first call, takes its shard's hold
 * first if its class asks for deferred durability, and its memory is read
 * again whenever another worker may have changed its stored state.
 * Storage, not this table, is the truth: an object is only this worker's
 * cache of it, and each of its turns checks and commits against the
 * stored version (ngx_do_turn.c, ngx_do_commit.c).  Idle objects run the
 * class's evict turn and go after do_idle_timeout, once their deferred
 * writes are stored.  do_max_objects caps how many a worker holds: a new
 * object first makes room by evicting the least recently called idle ones
 * (their state is in storage; they come back at their next call).  The
 * turn pools and the objects gauge live here too.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do_object.h"
#include "ngx_do_cluster.h"


static void ngx_do_object_sweep_handler(ngx_event_t *ev);
static void ngx_do_object_stats(void);
static ngx_uint_t ngx_do_object_hash(u_char *id);
static void ngx_do_objects_grow(void);
static void ngx_do_objects_trim(void);
static ngx_uint_t ngx_do_object_evictable(ngx_do_object_t *obj);
static void ngx_do_object_idle(ngx_event_t *ev);
static void ngx_do_object_follow(ngx_do_object_t *obj);


/*
 * The worker's objects: a chained hash table on the first 8 bytes of the
 * ID (random or HMAC output, so already uniform), doubled when it holds
 * more objects than buckets.
 */
static ngx_do_object_t       **ngx_do_objects;
static ngx_uint_t              ngx_do_objects_mask;
static ngx_uint_t              ngx_do_nobjects;
static uint64_t                ngx_do_activations;

/* every object, the least recently called first; O(1) per call */
static ngx_queue_t             ngx_do_objects_lru;

/*
 * Turn pools are reset and reused, not created per turn; a list (not one
 * pool) because a turn's reply can start another object's turn at once.
 */
static ngx_uint_t              ngx_do_objects_final;
static ngx_event_t             ngx_do_sweep_event;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_object_dumb;
static ngx_pool_t             *ngx_do_pools[8];
static ngx_uint_t              ngx_do_npools;

/* mails too: every call needs one, for as long as its turn */
static ngx_do_mail_t          *ngx_do_mails[64];
static ngx_uint_t              ngx_do_nmails;

ngx_do_backend_t              *ngx_do_object_backend;
ngx_do_deliver_pt              ngx_do_object_deliver;
ngx_do_resend_pt               ngx_do_object_resend;


ngx_int_t
ngx_do_objects_init(ngx_cycle_t *cycle, ngx_do_backend_t *backend,
    ngx_do_deliver_pt deliver, ngx_do_resend_pt resend)
{
    ngx_do_objects_mask = 1023;
    ngx_do_objects = ngx_calloc((ngx_do_objects_mask + 1)
                                * sizeof(ngx_do_object_t *), cycle->log);
    if (ngx_do_objects == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&ngx_do_objects_lru);

    ngx_do_object_backend = backend;
    ngx_do_object_deliver = deliver;
    ngx_do_object_resend = resend;

    if (backend->sweep && ngx_worker == 0) {
        ngx_do_sweep_event.handler = ngx_do_object_sweep_handler;
        ngx_do_sweep_event.data = &ngx_do_object_dumb;
        ngx_do_object_dumb.fd = (ngx_socket_t) -1;
        ngx_do_sweep_event.log = cycle->log;
        ngx_do_sweep_event.cancelable = 1;
        ngx_add_timer(&ngx_do_sweep_event, 1000);
    }

    return NGX_OK;
}


void
ngx_do_objects_exit(void)
{
    ngx_uint_t        i;
    ngx_do_object_t  *obj;

    if (ngx_do_objects == NULL) {
        return;
    }

    ngx_do_objects_final = 1;

    for (i = 0; i <= ngx_do_objects_mask; i++) {
        while (ngx_do_objects[i]) {
            obj = ngx_do_objects[i];

            /* a flush to an asynchronous backend is sent, not awaited */
            (void) ngx_do_defer_flush(obj);
            ngx_do_object_free(obj);
        }
    }

    ngx_free(ngx_do_objects);
    ngx_do_objects = NULL;

    if (ngx_do_sweep_event.timer_set) {
        ngx_del_timer(&ngx_do_sweep_event);
    }

    while (ngx_do_npools) {
        ngx_destroy_pool(ngx_do_pools[--ngx_do_npools]);
    }

    while (ngx_do_nmails) {
        ngx_free(ngx_do_mails[--ngx_do_nmails]);
    }
}


static void
ngx_do_object_sweep_handler(ngx_event_t *ev)
{
    ngx_do_object_backend->sweep();

    if (!ngx_exiting) {
        ngx_add_timer(ev, 1000);
    }
}


/*
 * The objects gauge of this worker's status slot, unless a newer worker
 * took the slot over (an old worker finishing after a reload).
 */
static void
ngx_do_object_stats(void)
{
    if (ngx_do_stats->pid == (ngx_atomic_uint_t) ngx_pid) {
        ngx_do_stats->objects = ngx_do_nobjects;
    }
}


static ngx_uint_t
ngx_do_object_hash(u_char *id)
{
    uint64_t  h;

    ngx_memcpy(&h, id + 4, sizeof(uint64_t));

    return (ngx_uint_t) h;
}


/* doubles the table; keeps the old one when memory is short */
static void
ngx_do_objects_grow(void)
{
    ngx_uint_t         i, mask;
    ngx_do_object_t  **table, *obj, *next;

    mask = ngx_do_objects_mask * 2 + 1;

    table = ngx_calloc((mask + 1) * sizeof(ngx_do_object_t *),
                       ngx_cycle->log);
    if (table == NULL) {
        return;
    }

    for (i = 0; i <= ngx_do_objects_mask; i++) {
        for (obj = ngx_do_objects[i]; obj; obj = next) {
            next = obj->next;
            obj->next = table[ngx_do_object_hash(obj->id) & mask];
            table[ngx_do_object_hash(obj->id) & mask] = obj;
        }
    }

    ngx_free(ngx_do_objects);
    ngx_do_objects = table;
    ngx_do_objects_mask = mask;
}


ngx_pool_t *
ngx_do_object_pool_get(void)
{
    if (ngx_do_npools) {
        return ngx_do_pools[--ngx_do_npools];
    }

    return ngx_create_pool(4096, ngx_cycle->log);
}


void
ngx_do_object_pool_put(ngx_pool_t *pool)
{
    if (ngx_do_npools == sizeof(ngx_do_pools) / sizeof(ngx_do_pools[0])) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_reset_pool(pool);
    ngx_do_pools[ngx_do_npools++] = pool;
}


/* a zeroed mail */
ngx_do_mail_t *
ngx_do_object_mail_get(void)
{
    ngx_do_mail_t  *mail;

    if (ngx_do_nmails) {
        mail = ngx_do_mails[--ngx_do_nmails];
        ngx_memzero(mail, sizeof(ngx_do_mail_t));
        return mail;
    }

    return ngx_calloc(sizeof(ngx_do_mail_t), ngx_cycle->log);
}


/* a mail of ngx_do_object_mail_get() (its buffer is the caller's) */
void
ngx_do_object_mail_put(ngx_do_mail_t *mail)
{
    if (ngx_do_nmails == sizeof(ngx_do_mails) / sizeof(ngx_do_mails[0])
        || ngx_do_objects == NULL)
    {
        ngx_free(mail);
        return;
    }

    ngx_do_mails[ngx_do_nmails++] = mail;
}


ngx_do_object_t *
ngx_do_object_get(u_char *id, ngx_do_namespace_t *ns, ngx_uint_t transient)
{
    ngx_do_object_t  *obj, **bucket;

    bucket = &ngx_do_objects[ngx_do_object_hash(id) & ngx_do_objects_mask];

    for (obj = *bucket; obj; obj = obj->next) {
        if (ngx_memcmp(obj->id, id, NGX_DO_ID_LEN) == 0) {
            /* its idle timer stays: re-armed lazily after the turn */
            ngx_queue_remove(&obj->lru);
            ngx_queue_insert_tail(&ngx_do_objects_lru, &obj->lru);
            return obj;
        }
    }

    if (ngx_do_runtime.max_objects
        && ngx_do_nobjects >= ngx_do_runtime.max_objects
        && !ngx_exiting && !ngx_do_objects_final)
    {
        ngx_do_objects_trim();
    }

    obj = ngx_calloc(sizeof(ngx_do_object_t) + ns->class->object_size,
                     ngx_cycle->log);
    if (obj == NULL) {
        return NULL;
    }

    obj->state = ns->class->object_size ? (void *) (obj + 1) : NULL;

    obj->flush.handler = ngx_do_defer_flush_handler;
    obj->flush.data = obj;
    obj->flush.log = ngx_cycle->log;
    obj->flush.cancelable = 1;

    obj->retry.handler = ngx_do_commit_retry_handler;
    obj->retry.data = obj;
    obj->retry.log = ngx_cycle->log;

    obj->wake.handler = ngx_do_park_wake_handler;
    obj->wake.data = obj;
    obj->wake.log = ngx_cycle->log;
    obj->wake.cancelable = 1;

    ngx_memcpy(obj->id, id, NGX_DO_ID_LEN);
    obj->ns = ns;
    ngx_queue_init(&obj->mailbox);
    ngx_queue_init(&obj->parked);
    ngx_rbtree_init(&obj->cache, &obj->sentinel, ngx_do_cache_insert);
    obj->activation = ((uint64_t) ngx_pid << 32) | ++ngx_do_activations;
    obj->transient = transient ? 1 : 0;

    obj->idle.handler = ngx_do_object_idle;
    obj->idle.data = obj;
    obj->idle.log = ngx_cycle->log;
    obj->idle.cancelable = 1;

    obj->next = *bucket;
    *bucket = obj;
    ngx_queue_insert_tail(&ngx_do_objects_lru, &obj->lru);
    ngx_do_nobjects++;

    if (ngx_do_nobjects > ngx_do_objects_mask) {
        ngx_do_objects_grow();
    }
    ngx_do_object_stats();
    ngx_do_stats->activations++;
    ngx_do_status_count(ns, NGX_DO_STAT_ACTIVATIONS);

    return obj;
}


/*
 * Makes room under do_max_objects: the least recently called objects that
 * are idle go.  A few are looked at; those that cannot go now move to the
 * queue's end, so that the next look starts elsewhere.  While none is
 * idle (all run or wait for calls), the cap is passed.
 */
static void
ngx_do_objects_trim(void)
{
    ngx_uint_t           n;
    ngx_queue_t         *q;
    ngx_do_object_t     *obj;
    ngx_do_namespace_t  *ns;

    for (n = 0;
         n < 16 && ngx_do_nobjects >= ngx_do_runtime.max_objects
         && !ngx_queue_empty(&ngx_do_objects_lru);
         n++)
    {
        q = ngx_queue_head(&ngx_do_objects_lru);
        obj = ngx_queue_data(q, ngx_do_object_t, lru);

        ngx_queue_remove(q);
        ngx_queue_insert_tail(&ngx_do_objects_lru, q);

        if (!ngx_do_object_evictable(obj)) {
            continue;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                       "do evict: object %08xD of \"%V\" for "
                       "do_max_objects", ngx_do_id_prefix(obj->id),
                       &obj->ns->name);

        ns = obj->ns;

        if (ngx_do_object_close(obj) == NGX_OK) {
            ngx_do_stats->cap_evictions++;
            ngx_do_status_count(ns, NGX_DO_STAT_EVICTIONS);
        }
    }
}


/*
 * Idle: no call runs or waits, none is parked, and nothing it keeps
 * would be lost (deferred writes are stored first, which an asynchronous
 * backend cannot do at once: such an object waits for its flush).
 */
static ngx_uint_t
ngx_do_object_evictable(ngx_do_object_t *obj)
{
    return !obj->busy && !obj->closing && obj->ngroup == 0
           && ngx_queue_empty(&obj->mailbox)
           && ngx_queue_empty(&obj->parked)
           && obj->flushing == NULL
           && (obj->dirty == NULL || !ngx_do_object_backend->async);
}


/*
 * Before its first turn, a deferred object takes its shard's hold; while
 * another live worker holds it (one of the generation being replaced,
 * still storing its state), its calls wait, NGX_DO_HANDOVER_WAIT at most.
 * Without the hold (a worker being replaced, a transient run) it runs
 * strictly: every turn checks the version and commits; it waits only
 * while another worker keeps deferred state of the shard.
 */
ngx_int_t
ngx_do_object_place(ngx_do_object_t *obj)
{
    ngx_int_t  rc;

    if (!obj->ns->class->deferred) {
        obj->placed = 1;
        return NGX_OK;
    }

    rc = ngx_do_handover_hold(obj->id, obj->transient,
                              obj->hold_waited >= NGX_DO_HANDOVER_WAIT);

    if (rc == NGX_BUSY) {
        obj->hold_waited += NGX_DO_HANDOVER_RETRY;
        ngx_add_timer(&obj->retry, NGX_DO_HANDOVER_RETRY);
        return NGX_AGAIN;
    }

    obj->placed = 1;
    obj->held = (rc == NGX_OK);
    obj->deferred = obj->held && !ngx_do_handover_overlap();

    if (obj->hold_waited) {
        ngx_log_debug2(NGX_LOG_DEBUG_CORE, ngx_cycle->log, 0,
                       "do: object of \"%V\" waited %M ms for its shard",
                       &obj->ns->name, obj->hold_waited);
    }

    return NGX_OK;
}


/*
 * A newer generation started: the held objects that are idle store their
 * state and go, so that their shards pass to the new owners.
 */
void
ngx_do_objects_hand_over(void)
{
    ngx_uint_t        i;
    ngx_do_object_t  *obj, *next;

    for (i = 0; i <= ngx_do_objects_mask; i++) {
        for (obj = ngx_do_objects[i]; obj; obj = next) {
            next = obj->next;

            if (obj->held && !obj->busy && !obj->closing
                && ngx_queue_empty(&obj->mailbox)
                && ngx_queue_empty(&obj->parked))
            {
                ngx_do_object_close(obj);
            }
        }
    }
}


/* an asynchronous backend loaded the whole object: fill the cache */
void
ngx_do_object_loaded(ngx_do_storage_req_t *req)
{
    ngx_uint_t        i;
    ngx_do_kv_t      *kv;
    ngx_do_object_t  *obj;

    obj = req->data;

    if (obj == NULL) {
        goto done;
    }

    obj->req = NULL;

    if (req->rc != NGX_OK) {
        ngx_do_object_fail_all(obj, "storage is unavailable");
        goto done;
    }

    ngx_do_cache_drop(obj);

    if (req->kvs) {
        kv = req->kvs->elts;

        for (i = 0; i < req->kvs->nelts; i++) {
            ngx_do_cache_set(obj, &kv[i].key, &kv[i].value, kv[i].version,
                             1);
        }
    }

    obj->version = req->version;
    obj->loaded = 1;

    ngx_do_turn_continue(obj);

done:

    ngx_do_commit_req_free(req);
}


/*
 * Cluster mode: this node no longer holds the object's shard, and the
 * calls in its mailbox, not run, go where the shard is now
 */
static void
ngx_do_object_follow(ngx_do_object_t *obj)
{
    ngx_queue_t    *q, *next;
    ngx_do_mail_t  *mail;

    for (q = ngx_queue_head(&obj->mailbox);
         q != ngx_queue_sentinel(&obj->mailbox);
         q = next)
    {
        next = ngx_queue_next(q);
        mail = ngx_queue_data(q, ngx_do_mail_t, queue);

        if (ngx_do_object_resend_mail(mail)) {
            ngx_queue_remove(q);
            ngx_do_turn_mail_free(mail);
        }
    }
}


/*
 * A call of a worker (not an alarm, a wake or a notice) sent on by the
 * router, the way it came: its bytes taken, its reply to the worker that
 * sent it as the owner's would be.  1: sent; 0: it is to be answered here.
 */
ngx_uint_t
ngx_do_object_resend_mail(ngx_do_mail_t *mail)
{
    size_t  len;

    if (ngx_do_object_resend == NULL || mail->call_id == 0
        || mail->src == NGX_DO_ALARM_SRC || mail->src == NGX_DO_WAKE_SRC
        || mail->buf == NULL)
    {
        return 0;
    }

    len = ngx_do_wire_call_len((ngx_do_call_wire_t *) mail->buf);

    if (ngx_do_object_resend(mail->src, mail->call_id, mail->buf, len)
        != NGX_OK)
    {
        return 0;
    }

    mail->buf = NULL;

    return 1;
}


/* storage failed before the object could run: every waiting call hears it */
void
ngx_do_object_fail_all(ngx_do_object_t *obj, const char *msg)
{
    ngx_queue_t    *q;
    ngx_do_mail_t  *mail;

    while (!ngx_queue_empty(&obj->mailbox)) {
        q = ngx_queue_head(&obj->mailbox);
        ngx_queue_remove(q);
        mail = ngx_queue_data(q, ngx_do_mail_t, queue);
        ngx_do_wire_error(mail->src, mail->call_id,
                          NGX_HTTP_SERVICE_UNAVAILABLE, msg);
        ngx_do_turn_mail_free(mail);
    }

    if (!ngx_queue_empty(&obj->parked)) {
        /* its parked calls wait on: the next wake or call tries again */
        ngx_do_cache_drop(obj);
        obj->busy = 0;
        obj->tries = 0;

        if (!obj->idle.timer_set) {
            ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
        }

        return;
    }

    ngx_do_object_free(obj);
}


/* the object's cache and its class's memory are read again from storage */
void
ngx_do_object_refresh(ngx_do_object_t *obj)
{
    uint64_t  version, alarm;

    ngx_do_cache_drop(obj);

    if (ngx_do_object_backend->async) {
        obj->loaded = 0;

    } else if (ngx_do_object_backend->version(obj->id, &version, &alarm)
               == NGX_OK)
    {
        obj->version = version;
    }

    (void) ngx_do_object_stale(obj, NULL);
}


/*
 * Cluster mode, before the object's next calls: its state must have been
 * loaded under the epoch of the shard's lease this node holds now.  Under
 * another (the shard went and came back), what the object keeps is stale:
 * it is loaded again and init runs again; its deferred writes, which
 * storage would refuse, are dropped; its parked calls stay and meet the
 * fresh state at their next wake.  Without a lease, its calls and parked
 * calls hear 503 and the object goes.  NGX_OK, or NGX_AGAIN: it is gone.
 */
ngx_int_t
ngx_do_object_epoch(ngx_do_object_t *obj)
{
    uint64_t  epoch;

    epoch = ngx_do_cluster_epoch(ngx_do_id_shard(obj->id));

    if (epoch == obj->epoch) {
        return NGX_OK;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do object %08xD: epoch %uL, its shard's now %uL",
                   ngx_do_id_prefix(obj->id), obj->epoch, epoch);

    if (epoch == 0) {
        /* its calls follow the shard, parked ones first (they came first) */
        ngx_do_park_free_all(obj, NGX_DO_MOVED, 1);
        ngx_do_defer_free(obj);
        ngx_do_object_follow(obj);
        ngx_do_object_fail_all(obj, NGX_DO_MOVED);
        return NGX_AGAIN;
    }

    if (obj->epoch) {
        ngx_do_defer_free(obj);
        ngx_do_object_refresh(obj);
    }

    obj->epoch = epoch;

    return NGX_OK;
}


/*
 * Another worker or node changed the object's stored state: what the
 * class's init read into the object's memory is stale, so init runs again
 * before the next call (the turn of handler, unless it is init itself,
 * is retried after it).
 */
ngx_uint_t
ngx_do_object_stale(ngx_do_object_t *obj,
    ngx_int_t (*handler)(ngx_do_turn_t *t))
{
    if (!obj->active || obj->ns->class->init == NULL
        || handler == obj->ns->class->init)
    {
        return 0;
    }

    obj->active = 0;

    return 1;
}


/* the class's choice for this object, or do_idle_timeout */
ngx_msec_t
ngx_do_object_idle_time(ngx_do_object_t *obj)
{
    return obj->idle_timeout ? obj->idle_timeout
                             : ngx_do_runtime.idle_timeout;
}


static void
ngx_do_object_idle(ngx_event_t *ev)
{
    ngx_int_t         rc;
    ngx_do_object_t  *obj;

    obj = ev->data;

    if (obj->busy || !ngx_queue_empty(&obj->mailbox) || obj->closing
        || !ngx_queue_empty(&obj->parked))
    {
        ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
        return;
    }

    if (ngx_do_cluster
        && ngx_do_cluster_epoch(ngx_do_id_shard(obj->id)) != obj->epoch)
    {
        /* stale: its shard went meanwhile, and nothing of it is stored */
        ngx_do_defer_free(obj);

    } else if (obj->ns->class->evict && obj->active
               && !(ngx_do_object_backend->async && !obj->loaded))
    {
        /*
         * a turn like any other: nothing else runs meanwhile (an object
         * whose state could not be loaded has nothing to say and goes)
         */
        obj->busy = 1;
        obj->evicting = 1;

        rc = ngx_do_turn_one(obj, NULL, obj->ns->class->evict);

        if (rc == NGX_AGAIN) {
            /* its commit is in flight: ngx_do_commit_handler() ends it */
            return;
        }

        obj->busy = 0;
        obj->evicting = 0;

        if (rc != NGX_OK && obj->active) {
            /* the class wants to stay */
            ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
            return;
        }

        /* its memory turned out stale: it goes without a say */
    }

    ngx_do_stats->evictions++;
    ngx_do_status_count(obj->ns, NGX_DO_STAT_EVICTIONS);
    ngx_do_object_close(obj);
}


/*
 * Drops the object once its deferred writes are stored; an asynchronous
 * flush finishes the job from its handler.  A flush that fails keeps the
 * object (and its unsaved state) for another try.  NGX_OK: it is gone;
 * NGX_AGAIN: it goes after the flush; NGX_DECLINED: it stays.
 */
ngx_int_t
ngx_do_object_close(ngx_do_object_t *obj)
{
    ngx_int_t  rc;

    obj->closing = 1;

    rc = ngx_do_defer_flush(obj);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (rc != NGX_OK && !ngx_exiting) {
        obj->closing = 0;
        ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
        return NGX_DECLINED;
    }

    ngx_do_object_free(obj);

    return NGX_OK;
}


void
ngx_do_object_free(ngx_do_object_t *obj)
{
    ngx_queue_t       *q;
    ngx_do_turn_t     *t;
    ngx_do_mail_t     *mail;
    ngx_do_object_t  **op;

    if (obj->idle.timer_set) {
        ngx_del_timer(&obj->idle);
    }

    if (obj->flush.timer_set) {
        ngx_del_timer(&obj->flush);
    }

    if (obj->retry.timer_set) {
        ngx_del_timer(&obj->retry);
    }

    if (obj->wake.timer_set) {
        ngx_del_timer(&obj->wake);
    }

    /* storage answers for a gone object are dropped by their handlers */
    if (obj->req) {
        obj->req->data = NULL;
    }

    if (obj->flush_req) {
        obj->flush_req->data = NULL;
    }

    if (obj->turn) {
        ngx_do_turn_free(obj->turn);
    }

    /*
     * Only at exit may calls still wait here: those of other workers hear
     * it now rather than at their timeout (this worker's own requests end
     * with it; a group's commit may or may not have been stored).
     */
    while (obj->ngroup) {
        t = obj->group[--obj->ngroup];
        ngx_do_turn_mail_abandon(t->mail);
        ngx_do_turn_free(t);
    }

    /* calls that their answers start wait in the mailbox, freed below */
    obj->busy = 1;
    ngx_do_park_free_all(obj, "object was shut down", 0);

    ngx_do_defer_free(obj);
    ngx_do_defer_list_free(obj->flushing);
    obj->flushing = NULL;

    while (!ngx_queue_empty(&obj->mailbox)) {
        q = ngx_queue_head(&obj->mailbox);
        ngx_queue_remove(q);
        mail = ngx_queue_data(q, ngx_do_mail_t, queue);
        ngx_do_turn_mail_abandon(mail);
    }

    ngx_do_cache_drop(obj);

    /* at exit the hold goes once the last flushes were answered */
    if (obj->held && !ngx_do_objects_final) {
        ngx_do_handover_release(obj->id);
    }

    for (op = &ngx_do_objects[ngx_do_object_hash(obj->id)
                              & ngx_do_objects_mask];
         *op != obj;
         op = &(*op)->next)
    {
        /* void */
    }

    *op = obj->next;
    ngx_queue_remove(&obj->lru);
    ngx_do_nobjects--;
    ngx_do_object_stats();
    ngx_free(obj);
}
