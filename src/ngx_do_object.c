
/*
 * Objects, mailboxes and turns on the owner worker.
 *
 * A worker keeps a table of its active objects.  Every call for an object
 * goes into the object's mailbox; the object runs one call at a time (a
 * turn), so no two turns of one object overlap in this worker.  A turn
 * reads through the object's cache, buffers its writes, and at its end the
 * writes are committed as one batch; the reply is released only after the
 * commit succeeded (the output gate).  A failed commit discards the reply
 * and drops the cache, so the next turn reads storage again.
 *
 * Storage, not this table, is the truth.  Each turn first checks that the
 * object's version in storage is the one its cache was filled at, and each
 * commit is conditional on that version: when two workers act for one
 * object (old and new workers overlap during a reload), the loser's turn is
 * run again on fresh state, so no acknowledged write is ever lost.  Idle
 * objects are evicted after do_idle_timeout.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <jansson.h>

#include "ngx_do.h"


#define NGX_DO_TURN_TRIES         32
#define NGX_DO_GROUP_MAX          64
#define NGX_DO_CACHE_MAX_VALUE    (64 * 1024)
#define NGX_DO_CACHE_MAX_SIZE     (1024 * 1024)


typedef struct {
    ngx_rbtree_node_t          node;
    ngx_str_t                  key;
    ngx_str_t                  value;         /* data NULL: known absent */
    uint64_t                   version;
} ngx_do_cache_t;


/* a write of a deferred-durability class, waiting for the next flush */
typedef struct ngx_do_dirty_s  ngx_do_dirty_t;

struct ngx_do_dirty_s {
    ngx_do_dirty_t            *next;
    ngx_str_t                  key;
    ngx_str_t                  value;
    unsigned                   delete:1;
};


typedef struct ngx_do_object_s  ngx_do_object_t;

/*
 * An object in its owner.  busy: its mailbox is being run (maybe waiting
 * for storage: req is the load or commit in flight, turn the turn whose
 * commit it is).  Deferred writes wait in dirty; a flush moves them to
 * flushing until storage answered (flush_req).  loaded: an asynchronous
 * backend's complete state is in the cache.  closing: evicted as soon as
 * its last flush is stored.  held: this worker holds the object's shard
 * for deferred state (see ngx_do_handover.c); deferred: the class asks for
 * deferred durability and gets it, since the shard is held and no older
 * worker runs; otherwise its turns check and commit like any other's.
 */
struct ngx_do_object_s {
    ngx_do_object_t           *next;          /* in its hash bucket */
    u_char                     id[NGX_DO_ID_LEN];
    ngx_do_namespace_t        *ns;
    void                      *state;         /* class->object_size bytes */
    ngx_do_dirty_t            *dirty;
    ngx_do_dirty_t            *flushing;
    ngx_event_t                flush;
    ngx_msec_t                 idle_timeout;  /* 0: do_idle_timeout */
    ngx_queue_t                mailbox;
    ngx_queue_t                parked;        /* ngx_do_park_t */
    ngx_rbtree_t               cache;
    ngx_rbtree_node_t          sentinel;
    size_t                     cache_size;
    uint64_t                   version;
    uint64_t                   activation;
    ngx_event_t                idle;
    ngx_event_t                retry;         /* a group's next try */
    ngx_event_t                wake;          /* parked calls, see below */
    ngx_do_storage_req_t      *req;
    ngx_do_storage_req_t      *flush_req;
    ngx_do_turn_t             *turn;
    ngx_do_turn_t             *group[NGX_DO_GROUP_MAX];
    ngx_uint_t                 ngroup;
    ngx_uint_t                 tries;
    ngx_msec_t                 expire;
    unsigned                   busy:1;
    unsigned                   active:1;
    unsigned                   loaded:1;
    unsigned                   transient:1;
    unsigned                   closing:1;
    unsigned                   evicting:1;
    unsigned                   wake_pending:1;
    unsigned                   placed:1;      /* the hold was decided */
    unsigned                   held:1;        /* its shard's hold */
    unsigned                   deferred:1;    /* deferred durability now */
    ngx_msec_t                 hold_waited;
};


typedef struct ngx_do_park_s  ngx_do_park_t;

typedef struct {
    ngx_queue_t                queue;
    ngx_uint_t                 src;
    uint64_t                   call_id;
    u_char                    *buf;
    ngx_do_park_t             *park;          /* set: kept, not freed */
    ngx_do_request_t           req;
} ngx_do_call_t;


/*
 * A parked call: unanswered after its turn, in the object's parked queue
 * until a later turn answers it (reply: that answer, waiting for the
 * turn's commit) or its timer answers status and msg.
 */
struct ngx_do_park_s {
    ngx_queue_t                queue;
    ngx_do_call_t             *call;
    ngx_do_object_t           *obj;
    ngx_event_t                timer;
    ngx_uint_t                 status;
    const char                *msg;
    u_char                    *reply;
    size_t                     reply_len;
};


struct ngx_do_turn_s {
    ngx_do_object_t           *obj;
    ngx_do_call_t             *call;
    ngx_int_t                (*handler)(ngx_do_turn_t *t);
    ngx_pool_t                *pool;
    ngx_do_batch_t             batch;
    ngx_uint_t                 status;
    ngx_str_t                  content_type;
    ngx_str_t                  body;
    uint64_t                   etag;
    ngx_array_t               *answers;       /* ngx_do_park_t * */
    ngx_msec_t                 park_timeout;
    ngx_uint_t                 park_status;
    const char                *park_msg;
    unsigned                   replied:1;
    unsigned                   failed:1;
    unsigned                   park:1;
    unsigned                   alarms:1;      /* alarms changed */
};


static ngx_do_object_t *ngx_do_object_get(u_char *id, ngx_do_namespace_t *ns,
    ngx_uint_t transient);
static void ngx_do_object_run(ngx_do_object_t *obj);
static void ngx_do_object_continue(ngx_do_object_t *obj);
static ngx_int_t ngx_do_object_place(ngx_do_object_t *obj);
static void ngx_do_object_refresh(ngx_do_object_t *obj);
static ngx_uint_t ngx_do_object_stale(ngx_do_object_t *obj,
    ngx_int_t (*handler)(ngx_do_turn_t *t));
static void ngx_do_object_loaded(ngx_do_storage_req_t *req);
static void ngx_do_object_fail_all(ngx_do_object_t *obj, const char *msg);
static ngx_int_t ngx_do_object_turn(ngx_do_object_t *obj,
    ngx_do_call_t *call, ngx_int_t (*handler)(ngx_do_turn_t *t));
static ngx_int_t ngx_do_object_group(ngx_do_object_t *obj);
static void ngx_do_object_group_done(ngx_do_storage_req_t *req);
static void ngx_do_object_retry_handler(ngx_event_t *ev);
static void ngx_do_object_group_end(ngx_do_object_t *obj, ngx_int_t rc,
    uint64_t version, ngx_do_storage_req_t *fresh);
static ngx_int_t ngx_do_object_turn_fail(ngx_do_object_t *obj,
    ngx_do_call_t *call);
static ngx_int_t ngx_do_object_turn_run(ngx_do_object_t *obj,
    ngx_do_call_t *call, ngx_int_t (*handler)(ngx_do_turn_t *t),
    ngx_do_turn_t **tp);
static ngx_int_t ngx_do_object_committed(ngx_do_object_t *obj,
    ngx_do_turn_t *t, ngx_int_t rc, uint64_t version);
static void ngx_do_object_commit_done(ngx_do_storage_req_t *req);
static void ngx_do_object_close(ngx_do_object_t *obj);
static void ngx_do_object_flushed(ngx_do_storage_req_t *req);
static ngx_int_t ngx_do_object_flush_done(ngx_do_object_t *obj,
    ngx_int_t rc);
static ngx_do_storage_req_t *ngx_do_req_create(ngx_do_object_t *obj,
    ngx_do_storage_handler_pt handler);
static void ngx_do_req_free(ngx_do_storage_req_t *req);
static void ngx_do_dirty_list_free(ngx_do_dirty_t *d);
static ngx_do_dirty_t *ngx_do_dirty_find(ngx_do_dirty_t *d, ngx_str_t *key);
static ngx_int_t ngx_do_list_cache(ngx_do_turn_t *t,
    ngx_do_list_opts_t *opts, ngx_array_t *out);
static int ngx_libc_cdecl ngx_do_kv_cmp(const void *one, const void *two);
static void ngx_do_object_idle(ngx_event_t *ev);
static ngx_msec_t ngx_do_object_idle_time(ngx_do_object_t *obj);
static ngx_int_t ngx_do_object_defer(ngx_do_object_t *obj,
    ngx_do_batch_t *batch);
static ngx_int_t ngx_do_object_flush(ngx_do_object_t *obj);
static void ngx_do_object_flush_handler(ngx_event_t *ev);
static void ngx_do_dirty_free(ngx_do_object_t *obj);
static void ngx_do_object_free(ngx_do_object_t *obj);
static void ngx_do_reply_send(ngx_do_object_t *obj, ngx_do_call_t *call,
    ngx_do_turn_t *t, uint64_t version);
static void ngx_do_turn_release(ngx_do_object_t *obj, ngx_do_call_t *call,
    ngx_do_turn_t *t, uint64_t version);
static void ngx_do_turn_free(ngx_do_turn_t *t);
static void ngx_do_call_free(ngx_do_call_t *call);
static void ngx_do_call_abandon(ngx_do_call_t *call);
static void ngx_do_reply_deliver(ngx_uint_t src, uint64_t call_id,
    u_char *buf, size_t len);
static u_char *ngx_do_reply_build(ngx_do_object_t *obj, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body, uint64_t etag, size_t *len);
static void ngx_do_park_timeout(ngx_event_t *ev);
static void ngx_do_object_wake(ngx_event_t *ev);
static ngx_int_t ngx_do_object_wake_enqueue(ngx_do_object_t *obj);
static ngx_int_t ngx_do_object_wake_turn(ngx_do_turn_t *t);
static void ngx_do_park_free_all(ngx_do_object_t *obj);
static ngx_int_t ngx_do_turn_alarm_index(ngx_do_turn_t *t);
static void ngx_do_reply_simple(ngx_uint_t src, uint64_t call_id,
    ngx_uint_t status, const char *msg);
static ngx_do_cache_t *ngx_do_cache_find(ngx_do_object_t *obj,
    ngx_str_t *key, uint32_t hash);
static void ngx_do_cache_set(ngx_do_object_t *obj, ngx_str_t *key,
    ngx_str_t *value, uint64_t version, ngx_uint_t copy);
static void ngx_do_cache_remove(ngx_do_object_t *obj, ngx_do_cache_t *e);
static void ngx_do_cache_version(ngx_do_object_t *obj, ngx_str_t *key,
    uint64_t version);
static void ngx_do_cache_drop(ngx_do_object_t *obj);
static void ngx_do_cache_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_do_write_t *ngx_do_batch_find(ngx_do_turn_t *t, ngx_str_t *key);
static ngx_pool_t *ngx_do_pool_get(void);
static void ngx_do_sweep_handler(ngx_event_t *ev);
static void ngx_do_stats_objects(void);
static ngx_uint_t ngx_do_object_hash(u_char *id);
static void ngx_do_objects_grow(void);
static void ngx_do_pool_put(ngx_pool_t *pool);


/*
 * The worker's objects: a chained hash table on the first 8 bytes of the
 * ID (random or HMAC output, so already uniform), doubled when it holds
 * more objects than buckets.
 */
static ngx_do_object_t       **ngx_do_objects;
static ngx_uint_t              ngx_do_objects_mask;
static ngx_uint_t              ngx_do_nobjects;
static uint64_t                ngx_do_activations;
static ngx_do_backend_t       *ngx_do_backend;
static ngx_do_deliver_pt       ngx_do_deliver;

/*
 * Turn pools are reset and reused, not created per turn; a list (not one
 * pool) because a turn's reply can start another object's turn at once.
 */
static ngx_uint_t              ngx_do_objects_final;
static ngx_event_t             ngx_do_sweep_event;
static ngx_pool_t             *ngx_do_pools[8];
static ngx_uint_t              ngx_do_npools;


ngx_int_t
ngx_do_objects_init(ngx_cycle_t *cycle, ngx_do_backend_t *backend,
    ngx_do_deliver_pt deliver)
{
    ngx_do_objects_mask = 1023;
    ngx_do_objects = ngx_calloc((ngx_do_objects_mask + 1)
                                * sizeof(ngx_do_object_t *), cycle->log);
    if (ngx_do_objects == NULL) {
        return NGX_ERROR;
    }

    ngx_do_backend = backend;
    ngx_do_deliver = deliver;

    if (backend->sweep && ngx_worker == 0) {
        ngx_do_sweep_event.handler = ngx_do_sweep_handler;
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
            (void) ngx_do_object_flush(obj);
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
}


static void
ngx_do_sweep_handler(ngx_event_t *ev)
{
    ngx_do_backend->sweep();

    if (!ngx_exiting) {
        ngx_add_timer(ev, 1000);
    }
}


/*
 * The objects gauge of this worker's status slot, unless a newer worker
 * took the slot over (an old worker finishing after a reload).
 */
static void
ngx_do_stats_objects(void)
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


static ngx_pool_t *
ngx_do_pool_get(void)
{
    if (ngx_do_npools) {
        return ngx_do_pools[--ngx_do_npools];
    }

    return ngx_create_pool(4096, ngx_cycle->log);
}


static void
ngx_do_pool_put(ngx_pool_t *pool)
{
    if (ngx_do_npools == sizeof(ngx_do_pools) / sizeof(ngx_do_pools[0])) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_reset_pool(pool);
    ngx_do_pools[ngx_do_npools++] = pool;
}


/*
 * A call arrived for an object this worker runs (its own or, with
 * transient set, one it runs once while its workers are being replaced).
 * Takes ownership of buf.
 */
void
ngx_do_call_receive(ngx_uint_t src, uint64_t call_id, u_char *buf,
    size_t len, ngx_uint_t transient)
{
    u_char               *p;
    size_t                need;
    ngx_do_call_t        *call;
    ngx_do_object_t      *obj;
    ngx_do_namespace_t  **nss;
    ngx_do_call_wire_t   *w;

    w = (ngx_do_call_wire_t *) buf;

    if (len < sizeof(ngx_do_call_wire_t)) {
        goto invalid;
    }

    need = sizeof(ngx_do_call_wire_t) + (size_t) w->args_len
           + w->if_match_len + w->if_none_match_len + w->body_len;

    if (need != len || w->ns >= ngx_do_runtime.namespaces->nelts) {
        goto invalid;
    }

    call = ngx_calloc(sizeof(ngx_do_call_t), ngx_cycle->log);
    if (call == NULL) {
        ngx_free(buf);
        ngx_do_reply_simple(src, call_id, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "out of memory");
        return;
    }

    call->src = src;
    call->call_id = call_id;
    call->buf = buf;
    call->req.method = w->method;

    p = buf + sizeof(ngx_do_call_wire_t);
    call->req.args.data = p;
    call->req.args.len = w->args_len;
    p += w->args_len;
    call->req.if_match.data = p;
    call->req.if_match.len = w->if_match_len;
    p += w->if_match_len;
    call->req.if_none_match.data = p;
    call->req.if_none_match.len = w->if_none_match_len;
    p += w->if_none_match_len;
    call->req.body.data = p;
    call->req.body.len = w->body_len;

    nss = ngx_do_runtime.namespaces->elts;

    obj = ngx_do_object_get(w->id, nss[w->ns], transient);
    if (obj == NULL) {
        ngx_free(buf);
        ngx_free(call);
        ngx_do_reply_simple(src, call_id, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "out of memory");
        return;
    }

    ngx_queue_insert_tail(&obj->mailbox, &call->queue);

    ngx_do_object_run(obj);

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "do: malformed call of %uz bytes from worker %ui",
                  len, src);
    ngx_free(buf);
    ngx_do_reply_simple(src, call_id, NGX_HTTP_INTERNAL_SERVER_ERROR,
                        "malformed call");
}


/*
 * The wire form of a call (ngx_do_call_receive() reads it), in memory of
 * ngx_alloc(); NULL strings are empty.
 */
u_char *
ngx_do_call_build(ngx_do_namespace_t *ns, u_char *id, ngx_uint_t method,
    ngx_str_t *args, ngx_str_t *if_match, ngx_str_t *if_none_match,
    ngx_str_t *body, size_t *len)
{
    u_char              *buf, *p;
    ngx_str_t            empty, *part[4];
    ngx_uint_t           i;
    ngx_do_call_wire_t  *w;

    ngx_str_null(&empty);

    part[0] = args ? args : &empty;
    part[1] = if_match ? if_match : &empty;
    part[2] = if_none_match ? if_none_match : &empty;
    part[3] = body ? body : &empty;

    *len = sizeof(ngx_do_call_wire_t);

    for (i = 0; i < 4; i++) {
        *len += part[i]->len;
    }

    buf = ngx_alloc(*len, ngx_cycle->log);
    if (buf == NULL) {
        return NULL;
    }

    w = (ngx_do_call_wire_t *) buf;
    w->ns = (uint32_t) ns->index;
    w->method = (uint32_t) method;
    w->args_len = (uint32_t) part[0]->len;
    w->if_match_len = (uint32_t) part[1]->len;
    w->if_none_match_len = (uint32_t) part[2]->len;
    w->body_len = (uint32_t) part[3]->len;
    ngx_memcpy(w->id, id, NGX_DO_ID_LEN);

    p = buf + sizeof(ngx_do_call_wire_t);

    for (i = 0; i < 4; i++) {
        p = ngx_do_cpymem(p, part[i]->data, part[i]->len);
    }

    return buf;
}


static ngx_do_object_t *
ngx_do_object_get(u_char *id, ngx_do_namespace_t *ns, ngx_uint_t transient)
{
    ngx_do_object_t  *obj, **bucket;

    bucket = &ngx_do_objects[ngx_do_object_hash(id) & ngx_do_objects_mask];

    for (obj = *bucket; obj; obj = obj->next) {
        if (ngx_memcmp(obj->id, id, NGX_DO_ID_LEN) == 0) {
            /* its idle timer stays: re-armed lazily after the turn */
            return obj;
        }
    }

    obj = ngx_calloc(sizeof(ngx_do_object_t) + ns->class->object_size,
                     ngx_cycle->log);
    if (obj == NULL) {
        return NULL;
    }

    obj->state = ns->class->object_size ? (void *) (obj + 1) : NULL;

    obj->flush.handler = ngx_do_object_flush_handler;
    obj->flush.data = obj;
    obj->flush.log = ngx_cycle->log;
    obj->flush.cancelable = 1;

    obj->retry.handler = ngx_do_object_retry_handler;
    obj->retry.data = obj;
    obj->retry.log = ngx_cycle->log;

    obj->wake.handler = ngx_do_object_wake;
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
    ngx_do_nobjects++;

    if (ngx_do_nobjects > ngx_do_objects_mask) {
        ngx_do_objects_grow();
    }
    ngx_do_stats_objects();
    ngx_do_stats->activations++;

    return obj;
}


/*
 * Runs the mailbox until it is empty.  Activation (an asynchronous
 * backend's load, then the class's init) runs first and alone, like
 * blockConcurrencyWhile: calls that arrive meanwhile wait in the mailbox.
 * Whenever storage must answer first, this returns with the object busy,
 * and the storage handler continues here.
 */
static void
ngx_do_object_run(ngx_do_object_t *obj)
{
    if (obj->busy) {
        return;
    }

    obj->busy = 1;
    obj->closing = 0;

    ngx_do_object_continue(obj);
}


static void
ngx_do_object_continue(ngx_do_object_t *obj)
{
    ngx_int_t       rc;
    ngx_queue_t    *q;
    ngx_do_call_t  *call;

    for ( ;; ) {

        if (!obj->placed && ngx_do_object_place(obj) == NGX_AGAIN) {
            return;
        }

        if (obj->held && !obj->deferred && obj->ngroup == 0
            && !ngx_do_handover_overlap() && !ngx_do_handover_old()
            && ngx_do_handover_deferred(obj->id) == NGX_OK)
        {
            /*
             * The older workers are gone: back to deferred durability,
             * which trusts memory from now on.  So memory is read again
             * first: an old worker may have committed since the last
             * strict turn here.
             */
            ngx_do_object_refresh(obj);
            obj->deferred = 1;
        }

        if (ngx_do_backend->async && !obj->loaded) {
            obj->req = ngx_do_req_create(obj, ngx_do_object_loaded);

            rc = (obj->req == NULL)
                 ? NGX_ERROR
                 : ngx_do_backend->load(obj->ns, obj->id, obj->req);

            if (rc == NGX_AGAIN) {
                return;
            }

            if (obj->req) {
                ngx_free(obj->req);
                obj->req = NULL;
            }

            ngx_do_object_fail_all(obj, "storage is unavailable");
            return;
        }

        if (!obj->active) {
            if (obj->ns->class->init) {
                rc = ngx_do_object_turn(obj, NULL, obj->ns->class->init);

                if (rc == NGX_AGAIN) {
                    return;
                }

                if (rc == NGX_BUSY && ++obj->tries < NGX_DO_TURN_TRIES) {
                    continue;
                }

                if (rc != NGX_OK) {
                    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                                  "do: activation of an object of namespace "
                                  "\"%V\" failed", &obj->ns->name);
                    ngx_do_object_fail_all(obj, "object activation failed");
                    return;
                }
            }

            obj->active = 1;
            obj->tries = 0;
        }

        if (ngx_queue_empty(&obj->mailbox)) {
            if (obj->wake_pending && !ngx_queue_empty(&obj->parked)) {
                obj->wake_pending = 0;

                if (ngx_do_object_wake_enqueue(obj) == NGX_OK) {
                    continue;
                }
            }

            break;
        }

        if (ngx_do_backend->async && !obj->deferred) {
            if (ngx_do_object_group(obj) == NGX_AGAIN) {
                return;
            }

            continue;
        }

        q = ngx_queue_head(&obj->mailbox);
        call = ngx_queue_data(q, ngx_do_call_t, queue);

        rc = ngx_do_object_turn(obj, call, obj->ns->class->fetch);

        if (rc == NGX_AGAIN) {
            return;
        }

        if (rc == NGX_BUSY) {
            if (++obj->tries < NGX_DO_TURN_TRIES) {
                continue;
            }

            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "do: a turn of namespace \"%V\" lost %ui commit "
                          "races", &obj->ns->name, obj->tries);
            ngx_do_reply_simple(call->src, call->call_id,
                                NGX_HTTP_SERVICE_UNAVAILABLE,
                                "object is busy, try again");
        }

        obj->tries = 0;
        ngx_queue_remove(q);
        ngx_do_call_free(call);
    }

    obj->busy = 0;

    if ((obj->transient || ngx_exiting
         || (obj->ns->class->deferred && ngx_do_handover_old()))
        && ngx_queue_empty(&obj->parked))
    {
        ngx_do_object_close(obj);
        return;
    }

    ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
}


/*
 * Before its first turn, a deferred object takes its shard's hold; while
 * another live worker holds it (one of the generation being replaced,
 * still storing its state), its calls wait, NGX_DO_HANDOVER_WAIT at most.
 * Without the hold (a worker being replaced, a transient run) it runs
 * strictly: every turn checks the version and commits; it waits only
 * while another worker keeps deferred state of the shard.
 */
static ngx_int_t
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
static void
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

    ngx_do_object_continue(obj);

done:

    ngx_do_req_free(req);
}


/* storage failed before the object could run: every waiting call hears it */
static void
ngx_do_object_fail_all(ngx_do_object_t *obj, const char *msg)
{
    ngx_queue_t    *q;
    ngx_do_call_t  *call;

    while (!ngx_queue_empty(&obj->mailbox)) {
        q = ngx_queue_head(&obj->mailbox);
        ngx_queue_remove(q);
        call = ngx_queue_data(q, ngx_do_call_t, queue);
        ngx_do_reply_simple(call->src, call->call_id,
                            NGX_HTTP_SERVICE_UNAVAILABLE, msg);
        ngx_do_call_free(call);
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


/*
 * One turn: validate the cache against storage (synchronous backends),
 * run the handler, commit, release the reply.  NGX_OK or NGX_ERROR: done
 * (a reply went out); NGX_BUSY: the commit lost a race with another writer
 * and the turn must run again on fresh state (nothing was released, so
 * this is safe); NGX_AGAIN: the commit is in flight.
 */
static ngx_int_t
ngx_do_object_turn(ngx_do_object_t *obj, ngx_do_call_t *call,
    ngx_int_t (*handler)(ngx_do_turn_t *t))
{
    ngx_int_t              rc;
    ngx_do_turn_t         *t;
    ngx_do_storage_req_t   sreq, *req;

    rc = ngx_do_object_turn_run(obj, call, handler, &t);

    if (rc != NGX_OK) {
        return rc;
    }

    if (obj->deferred && !t->batch.clear) {
        if (ngx_do_object_defer(obj, &t->batch) != NGX_OK) {
            ngx_do_turn_free(t);
            goto failed;
        }

        return ngx_do_object_committed(obj, t, NGX_OK, obj->version);
    }

    if (t->batch.writes.nelts == 0 && !t->batch.clear
        && !t->batch.alarm_set)
    {
        return ngx_do_object_committed(obj, t, NGX_OK, obj->version);
    }

    if (obj->deferred) {
        /* a clear replaces whatever was waiting to be stored */
        ngx_do_dirty_free(obj);
        obj->version = NGX_DO_VERSION_ANY;
    }

    if (t->batch.expire == 0) {
        t->batch.expire = obj->expire;
    }

    if (!ngx_do_backend->async) {
        rc = ngx_do_backend->commit(obj->ns, obj->id, obj->version,
                                    &t->batch, &sreq);

        return ngx_do_object_committed(obj, t, rc, sreq.version);
    }

    req = ngx_do_req_create(obj, ngx_do_object_commit_done);
    if (req == NULL) {
        ngx_do_turn_free(t);
        goto failed;
    }

    rc = ngx_do_backend->commit(obj->ns, obj->id, obj->version, &t->batch,
                                req);

    if (rc == NGX_AGAIN) {
        obj->req = req;
        obj->turn = t;
        return NGX_AGAIN;
    }

    ngx_do_req_free(req);

    return ngx_do_object_committed(obj, t, rc, 0);

failed:

    return ngx_do_object_turn_fail(obj, call);
}


/* a turn that could not run: the cache may be stale, the caller hears 503 */
static ngx_int_t
ngx_do_object_turn_fail(ngx_do_object_t *obj, ngx_do_call_t *call)
{
    ngx_do_cache_drop(obj);

    if (call) {
        ngx_do_reply_simple(call->src, call->call_id,
                            NGX_HTTP_SERVICE_UNAVAILABLE,
                            "object is busy, try again");
    }

    return NGX_ERROR;
}


/*
 * The first half of a turn: the handler, with its reply held.  NGX_OK
 * with *tp (writes in (*tp)->batch), NGX_DECLINED (an evict that keeps
 * the object), or NGX_ERROR (the call got its error reply).
 */
static ngx_int_t
ngx_do_object_turn_run(ngx_do_object_t *obj, ngx_do_call_t *call,
    ngx_int_t (*handler)(ngx_do_turn_t *t), ngx_do_turn_t **tp)
{
    uint64_t               version;
    ngx_int_t              rc;
    ngx_pool_t            *pool;
    ngx_do_turn_t         *t;

    ngx_do_stats->turns++;

    /*
     * A deferred-durability object trusts its memory: its writes reach
     * storage later, so storage cannot tell it anything newer.  An
     * asynchronous backend's objects trust their loaded state and find out
     * at commit time.
     */
    if (!obj->deferred && !ngx_do_backend->async) {
        if (ngx_do_backend->version(obj->id, &version) != NGX_OK) {
            goto failed;
        }

        if (version != obj->version) {
            ngx_do_cache_drop(obj);
            obj->version = version;

            if (ngx_do_object_stale(obj, handler)) {
                return NGX_BUSY;
            }
        }
    }

    pool = ngx_do_pool_get();
    if (pool == NULL) {
        goto failed;
    }

    t = ngx_pcalloc(pool, sizeof(ngx_do_turn_t));
    if (t == NULL
        || ngx_array_init(&t->batch.writes, pool, 4, sizeof(ngx_do_write_t))
           != NGX_OK)
    {
        ngx_do_pool_put(pool);
        goto failed;
    }

    t->pool = pool;
    t->obj = obj;
    t->call = call;

    if (call && call->req.method == NGX_DO_METHOD_ALARM) {
        handler = ngx_do_alarm_fire;

    } else if (call && call->req.method == NGX_DO_METHOD_WAKE) {
        handler = ngx_do_object_wake_turn;
    }

    t->handler = handler;

    rc = handler(t);

    if (rc == NGX_OK && t->alarms && !t->failed) {
        rc = ngx_do_turn_alarm_index(t);
    }

    if (rc == NGX_DECLINED && call == NULL) {
        ngx_do_turn_free(t);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK || t->failed || (call && !t->replied && !t->park)) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "do: a handler of namespace \"%V\" failed",
                      &obj->ns->name);
        ngx_do_cache_drop(obj);
        ngx_do_turn_free(t);

        if (call) {
            ngx_do_reply_simple(call->src, call->call_id,
                                NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "object handler failed");
        }

        return NGX_ERROR;
    }

    *tp = t;

    return NGX_OK;

failed:

    return ngx_do_object_turn_fail(obj, call);
}


/* the object's cache and its class's memory are read again from storage */
static void
ngx_do_object_refresh(ngx_do_object_t *obj)
{
    uint64_t  version;

    ngx_do_cache_drop(obj);

    if (ngx_do_backend->async) {
        obj->loaded = 0;

    } else if (ngx_do_backend->version(obj->id, &version) == NGX_OK) {
        obj->version = version;
    }

    (void) ngx_do_object_stale(obj, NULL);
}


/*
 * Another worker or node changed the object's stored state: what the
 * class's init read into the object's memory is stale, so init runs again
 * before the next call (the turn of handler, unless it is init itself,
 * is retried after it).
 */
static ngx_uint_t
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


/*
 * Group commit, for asynchronous backends: the calls waiting in the
 * mailbox run one after the other, each seeing the writes of those before
 * it (applied to the cache at once), and all their writes go to storage as
 * one commit.  Their replies, which may rest on those writes, are held
 * until it is stored (the output gate), then released in order.  A hot
 * object thus pays one round trip per batch of calls, not per call.  A
 * lost race puts the calls back and runs them again on fresh state.  A
 * group of reads only makes the same round trip with an empty commit,
 * which checks the version: a read never returns a value older than a
 * write that was acknowledged before it arrived.
 */
static ngx_int_t
ngx_do_object_group(ngx_do_object_t *obj)
{
    ngx_int_t              rc;
    ngx_uint_t             i, j, n;
    ngx_pool_t            *pool;
    ngx_queue_t           *q;
    ngx_do_turn_t         *t;
    ngx_do_call_t         *call;
    ngx_do_batch_t         batch;
    ngx_do_write_t        *w, *m;
    ngx_do_storage_req_t  *req;

    while (!ngx_queue_empty(&obj->mailbox)
           && obj->ngroup < NGX_DO_GROUP_MAX
           && obj->loaded)
    {
        q = ngx_queue_head(&obj->mailbox);
        call = ngx_queue_data(q, ngx_do_call_t, queue);
        ngx_queue_remove(q);

        rc = ngx_do_object_turn_run(obj, call, obj->ns->class->fetch, &t);

        if (rc != NGX_OK) {
            /* answered already */
            ngx_do_call_free(call);
            continue;
        }

        /* the next calls see these writes */
        if (t->batch.clear) {
            ngx_do_cache_drop(obj);
            obj->loaded = 1;
        }

        w = t->batch.writes.elts;

        for (i = 0; i < t->batch.writes.nelts; i++) {
            ngx_do_cache_set(obj, &w[i].key, w[i].delete ? NULL : &w[i].value,
                             0, 1);
        }

        obj->group[obj->ngroup++] = t;

        if (t->park) {
            /*
             * its call joins the parked queue only with the commit: the
             * calls after it must see it there
             */
            break;
        }
    }

    if (obj->ngroup == 0) {
        return NGX_OK;
    }

    /* one batch: the last write of a key wins; a clear drops what was before */
    pool = ngx_do_pool_get();
    if (pool == NULL) {
        ngx_do_object_group_end(obj, NGX_ERROR, 0, NULL);
        return NGX_OK;
    }

    ngx_memzero(&batch, sizeof(ngx_do_batch_t));
    batch.expire = obj->expire;

    if (ngx_array_init(&batch.writes, pool, 8, sizeof(ngx_do_write_t))
        != NGX_OK)
    {
        ngx_do_pool_put(pool);
        ngx_do_object_group_end(obj, NGX_ERROR, 0, NULL);
        return NGX_OK;
    }

    for (n = 0; n < obj->ngroup; n++) {
        t = obj->group[n];

        if (t->batch.clear) {
            batch.clear = 1;
            batch.writes.nelts = 0;
        }

        if (t->batch.alarm_set) {
            /* computed on the state the turns before it left: the last wins */
            batch.alarm_set = 1;
            batch.alarm = t->batch.alarm;
        }

        w = t->batch.writes.elts;

        for (i = 0; i < t->batch.writes.nelts; i++) {
            m = batch.writes.elts;

            for (j = 0; j < batch.writes.nelts; j++) {
                if (m[j].key.len == w[i].key.len
                    && ngx_memcmp(m[j].key.data, w[i].key.data,
                                  w[i].key.len) == 0)
                {
                    break;
                }
            }

            if (j == batch.writes.nelts) {
                m = ngx_array_push(&batch.writes);
                if (m == NULL) {
                    ngx_do_pool_put(pool);
                    ngx_do_object_group_end(obj, NGX_ERROR, 0, NULL);
                    return NGX_OK;
                }

            } else {
                m = &m[j];
            }

            *m = w[i];
        }
    }

    /*
     * A group of reads only stores nothing, but still goes to storage: the
     * empty commit checks the version, so that another worker's or node's
     * acknowledged write is never hidden by this object's cache.
     */

    req = ngx_do_req_create(obj, ngx_do_object_group_done);

    rc = (req == NULL)
         ? NGX_ERROR
         : ngx_do_backend->commit(obj->ns, obj->id, obj->version, &batch,
                                  req);

    ngx_do_pool_put(pool);

    if (rc == NGX_AGAIN) {
        obj->req = req;
        return NGX_AGAIN;
    }

    if (req) {
        ngx_do_req_free(req);
    }

    ngx_do_object_group_end(obj, rc, 0, NULL);

    return NGX_OK;
}


static void
ngx_do_object_group_done(ngx_do_storage_req_t *req)
{
    ngx_do_object_t  *obj;

    obj = req->data;

    if (obj == NULL) {
        ngx_do_req_free(req);
        return;
    }

    obj->req = NULL;

    ngx_do_object_group_end(obj, req->rc, req->version, req);

    ngx_do_req_free(req);

    /*
     * After a few lost races, wait a little before the next try: the
     * winner may hold the claim on the next commit for a while (a worker
     * that gave up or exited), and spinning would only burn the tries.
     */
    if (obj->tries > 4) {
        ngx_add_timer(&obj->retry, ngx_min(obj->tries, 20));
        return;
    }

    ngx_do_object_continue(obj);
}


static void
ngx_do_object_retry_handler(ngx_event_t *ev)
{
    ngx_do_object_continue(ev->data);
}


/* the group's commit is decided: release, retry or fail its calls */
static void
ngx_do_object_group_end(ngx_do_object_t *obj, ngx_int_t rc, uint64_t version,
    ngx_do_storage_req_t *fresh)
{
    ngx_uint_t       i, n;
    ngx_do_kv_t     *kv;
    ngx_do_turn_t   *t;
    ngx_do_call_t   *call;
    ngx_do_write_t  *w;

    n = obj->ngroup;
    obj->ngroup = 0;

    if (rc == NGX_OK) {
        obj->version = version;

        for (i = 0; i < n; i++) {
            t = obj->group[i];

            /* the cache held these under no version: now they have one */
            for (w = t->batch.writes.elts;
                 w < (ngx_do_write_t *) t->batch.writes.elts
                     + t->batch.writes.nelts;
                 w++)
            {
                ngx_do_cache_version(obj, &w->key, version);
            }

            if (t->batch.alarm_set && t->batch.alarm) {
                ngx_do_alarm_scheduled(obj->id, t->batch.alarm);
            }
        }

        for (i = 0; i < n; i++) {
            t = obj->group[i];
            call = t->call;
            ngx_do_turn_release(obj, call, t, version);
            ngx_do_turn_free(t);
            ngx_do_call_free(call);
        }

        obj->tries = 0;
        return;
    }

    /* the optimistic cache is wrong now: load again */
    ngx_do_cache_drop(obj);

    if (rc == NGX_BUSY) {
        (void) ngx_do_object_stale(obj, NULL);
    }

    if (rc == NGX_BUSY && ++obj->tries < NGX_DO_TURN_TRIES) {
        ngx_do_stats->conflicts++;

        if (fresh && fresh->kvs) {
            /* the commit brought the state that won: no load needed */
            kv = fresh->kvs->elts;

            for (i = 0; i < fresh->kvs->nelts; i++) {
                ngx_do_cache_set(obj, &kv[i].key, &kv[i].value,
                                 kv[i].version, 1);
            }

            obj->version = fresh->version;
            obj->loaded = 1;
        }

        /* back to the front of the mailbox, in their order */
        for (i = n; i > 0; i--) {
            t = obj->group[i - 1];
            ngx_queue_insert_head(&obj->mailbox, &t->call->queue);
            ngx_do_turn_free(t);
        }

        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_do_stats->storage_full++;
    }

    /* an unavailable storage fails every commit: log it once a second */
    if (rc != NGX_ERROR || ngx_do_log_gate()) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "do: a commit of %ui calls of namespace \"%V\" "
                      "failed%s", n, &obj->ns->name,
                      rc == NGX_BUSY ? " (lost every race)" : "");
    }

    for (i = 0; i < n; i++) {
        t = obj->group[i];
        call = t->call;
        ngx_do_reply_simple(call->src, call->call_id,
                            rc == NGX_DECLINED ? 507
                                               : NGX_HTTP_SERVICE_UNAVAILABLE,
                            rc == NGX_DECLINED ? "storage is full"
                                               : "storage is unavailable");
        ngx_do_turn_free(t);
        ngx_do_call_free(call);
    }

    obj->tries = 0;
}


/* the end of a turn, once its writes are stored (or not) */
static ngx_int_t
ngx_do_object_committed(ngx_do_object_t *obj, ngx_do_turn_t *t, ngx_int_t rc,
    uint64_t version)
{
    ngx_uint_t       i;
    ngx_do_call_t   *call;
    ngx_do_write_t  *w;

    call = t->call;

    if (rc == NGX_BUSY) {
        ngx_do_stats->conflicts++;
        ngx_do_cache_drop(obj);
        (void) ngx_do_object_stale(obj, NULL);
        ngx_do_turn_free(t);
        return NGX_BUSY;
    }

    if (rc != NGX_OK) {
        ngx_do_cache_drop(obj);
        ngx_do_turn_free(t);

        if (rc == NGX_DECLINED) {
            ngx_do_stats->storage_full++;
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "do: storage is full, a turn of namespace \"%V\" "
                          "was not committed", &obj->ns->name);
        }

        if (call) {
            ngx_do_reply_simple(call->src, call->call_id,
                                rc == NGX_DECLINED
                                ? 507 : NGX_HTTP_SERVICE_UNAVAILABLE,
                                rc == NGX_DECLINED
                                ? "storage is full"
                                : "storage is unavailable");
        }

        return NGX_ERROR;
    }

    if (t->batch.writes.nelts || t->batch.clear) {
        if (!obj->deferred || t->batch.clear) {
            if (t->batch.clear) {
                ngx_do_cache_drop(obj);
                obj->loaded = ngx_do_backend->async ? 1 : 0;
            }

            obj->version = version;
            w = t->batch.writes.elts;

            for (i = 0; i < t->batch.writes.nelts; i++) {
                ngx_do_cache_set(obj, &w[i].key,
                                 w[i].delete ? NULL : &w[i].value,
                                 version, 1);
            }
        }
    }

    if (t->batch.alarm_set && t->batch.alarm) {
        ngx_do_alarm_scheduled(obj->id, t->batch.alarm);
    }

    ngx_do_turn_release(obj, call, t, version);

    ngx_do_turn_free(t);

    return NGX_OK;
}


static void
ngx_do_object_commit_done(ngx_do_storage_req_t *req)
{
    ngx_int_t         rc;
    ngx_queue_t      *q;
    ngx_do_call_t    *call;
    ngx_do_turn_t    *t;
    ngx_do_object_t  *obj;

    obj = req->data;

    if (obj == NULL) {
        ngx_do_req_free(req);
        return;
    }

    t = obj->turn;
    obj->turn = NULL;
    obj->req = NULL;

    rc = ngx_do_object_committed(obj, t, req->rc, req->version);

    ngx_do_req_free(req);

    if (obj->evicting) {
        obj->evicting = 0;
        obj->busy = 0;

        if (!ngx_queue_empty(&obj->mailbox)) {
            ngx_do_object_run(obj);

        } else if (rc == NGX_OK || !obj->active) {
            /* evicted, or its memory turned out stale: it goes */
            ngx_do_stats->evictions++;
            ngx_do_object_close(obj);

        } else {
            ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
        }

        return;
    }

    if (rc == NGX_BUSY && ++obj->tries < NGX_DO_TURN_TRIES) {
        ngx_do_object_continue(obj);
        return;
    }

    if (!obj->active) {
        if (rc != NGX_OK) {
            ngx_do_object_fail_all(obj, "object activation failed");
            return;
        }

        obj->active = 1;

    } else if (!ngx_queue_empty(&obj->mailbox)) {
        q = ngx_queue_head(&obj->mailbox);
        call = ngx_queue_data(q, ngx_do_call_t, queue);

        if (rc == NGX_BUSY) {
            ngx_do_reply_simple(call->src, call->call_id,
                                NGX_HTTP_SERVICE_UNAVAILABLE,
                                "object is busy, try again");
        }

        ngx_queue_remove(q);
        ngx_do_call_free(call);
    }

    obj->tries = 0;

    ngx_do_object_continue(obj);
}


static void
ngx_do_req_free(ngx_do_storage_req_t *req)
{
    if (req->pool) {
        ngx_destroy_pool(req->pool);
    }

    ngx_free(req);
}


static ngx_do_storage_req_t *
ngx_do_req_create(ngx_do_object_t *obj, ngx_do_storage_handler_pt handler)
{
    ngx_do_storage_req_t  *req;

    req = ngx_calloc(sizeof(ngx_do_storage_req_t), ngx_cycle->log);
    if (req == NULL) {
        return NULL;
    }

    req->handler = handler;
    req->data = obj;

    return req;
}


/* the class's choice for this object, or do_idle_timeout */
static ngx_msec_t
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

    if (obj->ns->class->evict && obj->active
        && !(ngx_do_backend->async && !obj->loaded))
    {
        /*
         * a turn like any other: nothing else runs meanwhile (an object
         * whose state could not be loaded has nothing to say and goes)
         */
        obj->busy = 1;
        obj->evicting = 1;

        rc = ngx_do_object_turn(obj, NULL, obj->ns->class->evict);

        if (rc == NGX_AGAIN) {
            /* its commit is in flight: ngx_do_object_commit_done() ends it */
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
    ngx_do_object_close(obj);
}


/*
 * Drops the object once its deferred writes are stored; an asynchronous
 * flush finishes the job from its handler.  A flush that fails keeps the
 * object (and its unsaved state) for another try.
 */
static void
ngx_do_object_close(ngx_do_object_t *obj)
{
    ngx_int_t  rc;

    obj->closing = 1;

    rc = ngx_do_object_flush(obj);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc != NGX_OK && !ngx_exiting) {
        obj->closing = 0;
        ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
        return;
    }

    ngx_do_object_free(obj);
}


/* a call that its object drops unrun: another worker's caller hears 503 */
static void
ngx_do_call_abandon(ngx_do_call_t *call)
{
    if (call->src < ngx_do_runtime.workers && call->src != ngx_worker) {
        ngx_do_reply_simple(call->src, call->call_id,
                            NGX_HTTP_SERVICE_UNAVAILABLE,
                            "owner worker is exiting");
    }

    ngx_do_call_free(call);
}


static void
ngx_do_object_free(ngx_do_object_t *obj)
{
    ngx_queue_t       *q;
    ngx_do_turn_t     *t;
    ngx_do_call_t     *call;
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
        ngx_do_call_abandon(t->call);
        ngx_do_turn_free(t);
    }

    /* calls that their answers start wait in the mailbox, freed below */
    obj->busy = 1;
    ngx_do_park_free_all(obj);

    ngx_do_dirty_free(obj);
    ngx_do_dirty_list_free(obj->flushing);
    obj->flushing = NULL;

    while (!ngx_queue_empty(&obj->mailbox)) {
        q = ngx_queue_head(&obj->mailbox);
        ngx_queue_remove(q);
        call = ngx_queue_data(q, ngx_do_call_t, queue);
        ngx_do_call_abandon(call);
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
    ngx_do_nobjects--;
    ngx_do_stats_objects();
    ngx_free(obj);
}


/*
 * Deferred durability: the turn's writes go into the object's dirty list
 * (the last write of a key wins) and into its cache; the reply is released
 * at once, and a flush within do_flush_interval stores them.
 */
static ngx_int_t
ngx_do_object_defer(ngx_do_object_t *obj, ngx_do_batch_t *batch)
{
    u_char          *p;
    ngx_uint_t       i;
    ngx_do_dirty_t  *d, *old, **dp;
    ngx_do_write_t  *w;

    w = batch->writes.elts;

    for (i = 0; i < batch->writes.nelts; i++) {

        for (dp = &obj->dirty, old = obj->dirty; old; old = old->next) {
            if (old->key.len == w[i].key.len
                && ngx_memcmp(old->key.data, w[i].key.data, w[i].key.len)
                   == 0)
            {
                break;
            }

            dp = &old->next;
        }

        if (old && old->value.len == w[i].value.len) {
            (void) ngx_do_cpymem(old->value.data, w[i].value.data,
                                 w[i].value.len);
            old->delete = w[i].delete;
            goto cache;
        }

        /* the new entry first: out of memory leaves the old one intact */
        d = ngx_alloc(sizeof(ngx_do_dirty_t) + w[i].key.len + w[i].value.len,
                      ngx_cycle->log);
        if (d == NULL) {
            return NGX_ERROR;
        }

        if (old) {
            *dp = old->next;
            ngx_free(old);
        }

        p = (u_char *) (d + 1);
        d->key.data = p;
        d->key.len = w[i].key.len;
        p = ngx_cpymem(p, w[i].key.data, w[i].key.len);
        d->value.data = p;
        d->value.len = w[i].value.len;
        (void) ngx_do_cpymem(p, w[i].value.data, w[i].value.len);
        d->delete = w[i].delete;

        d->next = obj->dirty;
        obj->dirty = d;

    cache:

        ngx_do_cache_set(obj, &w[i].key, w[i].delete ? NULL : &w[i].value,
                         0, 1);
    }

    if (obj->dirty && !obj->flush.timer_set) {
        ngx_add_timer(&obj->flush, ngx_do_runtime.flush_interval);
    }

    return NGX_OK;
}


/*
 * Stores the dirty list unconditionally (deferred state is last-writer-
 * wins).  The list moves to flushing while storage works, so that turns go
 * on writing to a fresh one.  NGX_OK, NGX_AGAIN (in flight) or NGX_ERROR
 * (the writes stay for another try).
 */
static ngx_int_t
ngx_do_object_flush(ngx_do_object_t *obj)
{
    ngx_int_t              rc;
    ngx_pool_t            *pool;
    ngx_do_batch_t         batch;
    ngx_do_dirty_t        *d;
    ngx_do_write_t        *w;
    ngx_do_storage_req_t   sreq, *req;

    if (obj->flushing) {
        return NGX_AGAIN;
    }

    if (obj->dirty == NULL) {
        return NGX_OK;
    }

    pool = ngx_do_pool_get();
    if (pool == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&batch, sizeof(ngx_do_batch_t));
    batch.expire = obj->expire;

    if (ngx_array_init(&batch.writes, pool, 4, sizeof(ngx_do_write_t))
        != NGX_OK)
    {
        ngx_do_pool_put(pool);
        return NGX_ERROR;
    }

    for (d = obj->dirty; d; d = d->next) {
        w = ngx_array_push(&batch.writes);
        if (w == NULL) {
            ngx_do_pool_put(pool);
            return NGX_ERROR;
        }

        w->key = d->key;
        w->value = d->value;
        w->delete = d->delete;
    }

    obj->flushing = obj->dirty;
    obj->dirty = NULL;

    if (!ngx_do_backend->async) {
        rc = ngx_do_backend->commit(obj->ns, obj->id, NGX_DO_VERSION_ANY,
                                    &batch, &sreq);
        ngx_do_pool_put(pool);

        if (rc == NGX_OK) {
            obj->version = sreq.version;
        }

        return ngx_do_object_flush_done(obj, rc);
    }

    req = ngx_do_req_create(obj, ngx_do_object_flushed);

    rc = (req == NULL) ? NGX_ERROR
                       : ngx_do_backend->commit(obj->ns, obj->id,
                                                NGX_DO_VERSION_ANY, &batch,
                                                req);
    ngx_do_pool_put(pool);

    if (rc == NGX_AGAIN) {
        obj->flush_req = req;
        return NGX_AGAIN;
    }

    if (req) {
        ngx_do_req_free(req);
    }

    return ngx_do_object_flush_done(obj, rc);
}


/* what a finished flush leaves: writes made meanwhile win over its own */
static ngx_int_t
ngx_do_object_flush_done(ngx_do_object_t *obj, ngx_int_t rc)
{
    ngx_do_dirty_t  *d, *n, *newer;

    if (rc == NGX_OK) {
        ngx_do_dirty_list_free(obj->flushing);
        obj->flushing = NULL;
        return NGX_OK;
    }

    /* put back what no later write replaced */
    for (d = obj->flushing; d; d = n) {
        n = d->next;

        for (newer = obj->dirty; newer; newer = newer->next) {
            if (newer->key.len == d->key.len
                && ngx_memcmp(newer->key.data, d->key.data, d->key.len) == 0)
            {
                break;
            }
        }

        if (newer) {
            ngx_free(d);
            continue;
        }

        d->next = obj->dirty;
        obj->dirty = d;
    }

    obj->flushing = NULL;

    if (rc == NGX_DECLINED) {
        ngx_do_stats->storage_full++;
    }

    if (ngx_do_log_gate()) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "do: deferred writes of namespace \"%V\" could not "
                      "be stored%s, will retry", &obj->ns->name,
                      rc == NGX_DECLINED ? " (storage is full)" : "");
    }

    if (!obj->flush.timer_set) {
        ngx_add_timer(&obj->flush, ngx_do_runtime.flush_interval);
    }

    return NGX_ERROR;
}


static void
ngx_do_object_flushed(ngx_do_storage_req_t *req)
{
    ngx_int_t         rc;
    ngx_do_object_t  *obj;

    obj = req->data;

    if (obj == NULL) {
        ngx_do_req_free(req);
        return;
    }

    obj->flush_req = NULL;

    if (req->rc == NGX_OK) {
        obj->version = req->version;
    }

    rc = ngx_do_object_flush_done(obj, req->rc);

    ngx_do_req_free(req);

    if (obj->closing) {
        if (obj->busy || !ngx_queue_empty(&obj->mailbox)) {
            /* a call came meanwhile: stay */
            obj->closing = 0;
            return;
        }

        if (rc == NGX_OK && obj->dirty == NULL) {
            ngx_do_object_free(obj);
            return;
        }

        ngx_do_object_close(obj);
        return;
    }

    if (obj->dirty && !obj->flush.timer_set) {
        ngx_add_timer(&obj->flush, ngx_do_runtime.flush_interval);
    }
}


static void
ngx_do_object_flush_handler(ngx_event_t *ev)
{
    (void) ngx_do_object_flush(ev->data);
}


static void
ngx_do_dirty_free(ngx_do_object_t *obj)
{
    ngx_do_dirty_list_free(obj->dirty);
    obj->dirty = NULL;
}


static ngx_do_dirty_t *
ngx_do_dirty_find(ngx_do_dirty_t *d, ngx_str_t *key)
{
    for ( /* void */ ; d; d = d->next) {
        if (d->key.len == key->len
            && ngx_memcmp(d->key.data, key->data, key->len) == 0)
        {
            return d;
        }
    }

    return NULL;
}


static void
ngx_do_dirty_list_free(ngx_do_dirty_t *d)
{
    ngx_do_dirty_t  *n;

    for ( /* void */ ; d; d = n) {
        n = d->next;
        ngx_free(d);
    }
}


/*
 * What a committed turn lets out: its call's reply (or the call goes to
 * the parked queue), and the answers it gave parked calls.
 */
static void
ngx_do_turn_release(ngx_do_object_t *obj, ngx_do_call_t *call,
    ngx_do_turn_t *t, uint64_t version)
{
    ngx_uint_t      i;
    ngx_do_park_t  *park, **pp;

    if (t->answers) {
        pp = t->answers->elts;

        for (i = 0; i < t->answers->nelts; i++) {
            park = pp[i];
            ngx_queue_remove(&park->queue);

            if (park->timer.timer_set) {
                ngx_del_timer(&park->timer);
            }

            ngx_do_reply_deliver(park->call->src, park->call->call_id,
                                 park->reply, park->reply_len);
            park->call->park = NULL;
            ngx_do_call_free(park->call);
            ngx_free(park);
        }

        t->answers->nelts = 0;
    }

    if (call == NULL) {
        return;
    }

    if (call->src == NGX_DO_ALARM_SRC) {
        ngx_do_alarm_done(call->call_id, t->status);
        return;
    }

    if (call->src == NGX_DO_WAKE_SRC) {
        return;
    }

    if (!t->park) {
        ngx_do_reply_send(obj, call, t, version);
        return;
    }

    park = ngx_calloc(sizeof(ngx_do_park_t), ngx_cycle->log);
    if (park == NULL) {
        ngx_do_reply_simple(call->src, call->call_id,
                            NGX_HTTP_SERVICE_UNAVAILABLE, "out of memory");
        return;
    }

    park->call = call;
    park->obj = obj;
    park->status = t->park_status;
    park->msg = t->park_msg;
    park->timer.handler = ngx_do_park_timeout;
    park->timer.data = park;
    park->timer.log = ngx_cycle->log;

    /* not cancelable: a worker being replaced stays until it answered */

    call->park = park;
    ngx_queue_insert_tail(&obj->parked, &park->queue);
    ngx_do_stats->parked++;
    ngx_add_timer(&park->timer, t->park_timeout);

    if (!obj->wake.timer_set && obj->ns->class->wake) {
        ngx_add_timer(&obj->wake, ngx_exiting ? 100 : 250);
    }
}


/*
 * While an object has parked calls it runs a wake turn four times a second
 * (ten while its worker is being replaced), on state read again from
 * storage: another worker may act for the object meanwhile (the old and
 * the new owner during a reload, or another nginx node on the same Redis),
 * and what it does there (a lock released) must reach the calls parked
 * here.  On Redis this is one load per wake.
 */
static void
ngx_do_object_wake(ngx_event_t *ev)
{
    ngx_do_object_t  *obj;

    obj = ev->data;

    if (ngx_queue_empty(&obj->parked)) {
        return;
    }

    ngx_add_timer(ev, ngx_exiting ? 100 : 250);

    if (obj->busy || !ngx_queue_empty(&obj->mailbox)) {
        /* the end of the calls before it runs it (they may not re-read) */
        obj->wake_pending = 1;
        return;
    }

    if (ngx_do_object_wake_enqueue(obj) == NGX_OK) {
        ngx_do_object_run(obj);
    }
}


/* a wake call at the end of the mailbox, on state read again */
static ngx_int_t
ngx_do_object_wake_enqueue(ngx_do_object_t *obj)
{
    ngx_do_call_t  *call;

    call = ngx_calloc(sizeof(ngx_do_call_t), ngx_cycle->log);
    if (call == NULL) {
        return NGX_ERROR;
    }

    call->buf = ngx_alloc(1, ngx_cycle->log);
    if (call->buf == NULL) {
        ngx_free(call);
        return NGX_ERROR;
    }

    call->src = NGX_DO_WAKE_SRC;
    call->req.method = NGX_DO_METHOD_WAKE;

    if (ngx_do_backend->async && !obj->deferred) {
        /* the loaded state is what this worker last saw: read it again */
        ngx_do_cache_drop(obj);
    }

    ngx_queue_insert_tail(&obj->mailbox, &call->queue);

    return NGX_OK;
}


static ngx_int_t
ngx_do_object_wake_turn(ngx_do_turn_t *t)
{
    if (t->obj->ns->class->wake(t) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_do_reply(t, NGX_HTTP_OK, "text/plain", NULL, 0);
}


/* a turn that ends: answers it gave to parked calls but never sent are void */
static void
ngx_do_turn_free(ngx_do_turn_t *t)
{
    ngx_uint_t      i;
    ngx_do_park_t  **pp;

    if (t->answers) {
        pp = t->answers->elts;

        for (i = 0; i < t->answers->nelts; i++) {
            ngx_free(pp[i]->reply);
            pp[i]->reply = NULL;
        }
    }

    ngx_do_pool_put(t->pool);
}


static void
ngx_do_call_free(ngx_do_call_t *call)
{
    if (call->park) {
        return;
    }

    ngx_free(call->buf);
    ngx_free(call);
}


static void
ngx_do_park_timeout(ngx_event_t *ev)
{
    ngx_uint_t        busy;
    ngx_do_park_t    *park;
    ngx_do_call_t    *call;
    ngx_do_object_t  *obj;

    park = ev->data;
    obj = park->obj;
    call = park->call;

    if (park->reply) {
        /* answered by a turn whose commit is in flight */
        ngx_add_timer(ev, 100);
        return;
    }

    ngx_queue_remove(&park->queue);
    ngx_do_stats->park_timeouts++;

    /*
     * A local caller's handler runs within the reply and may call this
     * object again: such a call waits in the mailbox, and the object
     * cannot go away under us meanwhile.
     */
    busy = obj->busy;
    obj->busy = 1;

    ngx_do_reply_simple(call->src, call->call_id, park->status, park->msg);
    call->park = NULL;
    ngx_do_call_free(call);
    ngx_free(park);

    obj->busy = busy;

    if (busy) {
        /* the turn in progress finishes the job */
        return;
    }

    if (!ngx_queue_empty(&obj->mailbox)) {
        ngx_do_object_run(obj);
        return;
    }

    if ((obj->transient || ngx_exiting) && ngx_queue_empty(&obj->parked)) {
        ngx_do_object_close(obj);
    }
}


/* the object goes: its parked calls hear so */
static void
ngx_do_park_free_all(ngx_do_object_t *obj)
{
    ngx_queue_t    *q;
    ngx_do_park_t  *park;

    while (!ngx_queue_empty(&obj->parked)) {
        q = ngx_queue_head(&obj->parked);
        ngx_queue_remove(q);
        park = ngx_queue_data(q, ngx_do_park_t, queue);

        if (park->timer.timer_set) {
            ngx_del_timer(&park->timer);
        }

        if (park->reply) {
            ngx_free(park->reply);
        }

        ngx_do_reply_simple(park->call->src, park->call->call_id,
                            NGX_HTTP_SERVICE_UNAVAILABLE,
                            "object was shut down");
        park->call->park = NULL;
        ngx_do_call_free(park->call);
        ngx_free(park);
    }
}


static u_char *
ngx_do_reply_build(ngx_do_object_t *obj, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body, uint64_t etag, size_t *len)
{
    u_char               *buf, *p;
    ngx_do_reply_wire_t  *w;

    *len = sizeof(ngx_do_reply_wire_t) + content_type->len + body->len;

    buf = ngx_alloc(*len, ngx_cycle->log);
    if (buf == NULL) {
        return NULL;
    }

    w = (ngx_do_reply_wire_t *) buf;
    w->status = (uint32_t) status;
    w->owner = (uint32_t) ngx_worker;
    w->activation = obj->activation;
    w->etag = etag;
    w->content_type_len = (uint32_t) content_type->len;
    w->body_len = (uint32_t) body->len;

    p = buf + sizeof(ngx_do_reply_wire_t);
    p = ngx_do_cpymem(p, content_type->data, content_type->len);
    (void) ngx_do_cpymem(p, body->data, body->len);

    return buf;
}


static void
ngx_do_reply_send(ngx_do_object_t *obj, ngx_do_call_t *call, ngx_do_turn_t *t,
    uint64_t version)
{
    u_char  *buf;
    size_t   len;

    buf = ngx_do_reply_build(obj, t->status, &t->content_type, &t->body,
                             (t->etag == NGX_DO_ETAG_COMMIT) ? version
                                                             : t->etag,
                             &len);
    if (buf == NULL) {
        return;
    }

    ngx_do_reply_deliver(call->src, call->call_id, buf, len);
}


/* a reply to its caller: this worker, or another over its channel */
static void
ngx_do_reply_deliver(ngx_uint_t src, uint64_t call_id, u_char *buf,
    size_t len)
{
    if (src == ngx_worker) {
        ngx_do_deliver(call_id, buf, len);
        return;
    }

    if (ngx_do_ipc_send(src, NGX_DO_IPC_REPLY, call_id, buf, len) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "do: reply of %uz bytes to worker %ui could not be "
                      "sent", len, src);
        ngx_free(buf);

        /* a short answer may still pass, and the client is not left hanging */
        ngx_do_reply_simple(src, call_id, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "reply could not be sent");
    }
}


/* a runtime error reply, for calls that no class handler answered */
static void
ngx_do_reply_simple(ngx_uint_t src, uint64_t call_id, ngx_uint_t status,
    const char *msg)
{
    u_char               *buf, *p;
    size_t                len;
    ngx_do_reply_wire_t  *w;

    if (src == NGX_DO_ALARM_SRC) {
        ngx_do_alarm_done(call_id, status);
        return;
    }

    if (src == NGX_DO_WAKE_SRC) {
        return;
    }

    len = sizeof(ngx_do_reply_wire_t) + sizeof("application/json") - 1
          + sizeof("{\"error\":\"\"}\n") - 1 + ngx_strlen(msg);

    buf = ngx_alloc(len, ngx_cycle->log);
    if (buf == NULL) {
        return;
    }

    w = (ngx_do_reply_wire_t *) buf;
    w->status = (uint32_t) status;
    w->owner = (uint32_t) ngx_worker;
    w->activation = 0;
    w->etag = 0;
    w->content_type_len = sizeof("application/json") - 1;
    w->body_len = (uint32_t) (len - sizeof(ngx_do_reply_wire_t)
                              - w->content_type_len);

    p = buf + sizeof(ngx_do_reply_wire_t);
    p = ngx_cpymem(p, "application/json", sizeof("application/json") - 1);
    (void) ngx_sprintf(p, "{\"error\":\"%s\"}\n", msg);

    if (src == ngx_worker) {
        ngx_do_deliver(call_id, buf, len);
        return;
    }

    if (ngx_do_ipc_send(src, NGX_DO_IPC_REPLY, call_id, buf, len) != NGX_OK) {
        ngx_free(buf);
    }
}


ngx_int_t
ngx_do_reply_parse(u_char *buf, size_t len, ngx_do_reply_wire_t **hdr,
    ngx_str_t *content_type, ngx_str_t *body)
{
    ngx_do_reply_wire_t  *w;

    if (len < sizeof(ngx_do_reply_wire_t)) {
        return NGX_ERROR;
    }

    w = (ngx_do_reply_wire_t *) buf;

    if (sizeof(ngx_do_reply_wire_t) + (size_t) w->content_type_len
        + w->body_len != len
        || w->status < 100 || w->status > 599)
    {
        return NGX_ERROR;
    }

    *hdr = w;
    content_type->data = buf + sizeof(ngx_do_reply_wire_t);
    content_type->len = w->content_type_len;
    body->data = content_type->data + content_type->len;
    body->len = w->body_len;

    return NGX_OK;
}


/* the class API */


ngx_do_request_t *
ngx_do_turn_request(ngx_do_turn_t *t)
{
    return &t->call->req;
}


void *
ngx_do_turn_state(ngx_do_turn_t *t)
{
    return t->obj->state;
}


void
ngx_do_set_idle_timeout(ngx_do_turn_t *t, ngx_msec_t timeout)
{
    t->obj->idle_timeout = timeout;
}


void
ngx_do_set_expire(ngx_do_turn_t *t, ngx_msec_t ttl)
{
    t->obj->expire = ttl;
    t->batch.expire = ttl;
}


ngx_do_namespace_t *
ngx_do_turn_namespace(ngx_do_turn_t *t)
{
    return t->obj->ns;
}


ngx_pool_t *
ngx_do_turn_pool(ngx_do_turn_t *t)
{
    return t->pool;
}


ngx_log_t *
ngx_do_turn_log(ngx_do_turn_t *t)
{
    return ngx_cycle->log;
}


ngx_int_t
ngx_do_arg(ngx_do_turn_t *t, const char *name, ngx_str_t *value)
{
    if (t->call == NULL) {
        return NGX_DECLINED;
    }

    return ngx_do_request_arg(t, &t->call->req, name, value);
}


ngx_int_t
ngx_do_request_arg(ngx_do_turn_t *t, ngx_do_request_t *req, const char *name,
    ngx_str_t *value)
{
    u_char     *p, *last, *amp, *dst, *src;
    size_t      len;

    len = ngx_strlen(name);
    p = req->args.data;
    last = p + req->args.len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if ((size_t) (amp - p) > len && p[len] == '='
            && ngx_strncmp(p, name, len) == 0)
        {
            p += len + 1;

            dst = ngx_pnalloc(t->pool, (amp - p) + 1);
            if (dst == NULL) {
                return NGX_ERROR;
            }

            value->data = dst;
            src = p;
            ngx_unescape_uri(&dst, &src, amp - p, 0);
            value->len = dst - value->data;

            return NGX_OK;
        }

        if ((size_t) (amp - p) == len && ngx_strncmp(p, name, len) == 0) {
            value->data = (u_char *) "";
            value->len = 0;
            return NGX_OK;
        }

        p = amp + 1;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_do_get(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value,
    uint64_t *version)
{
    uint32_t         hash;
    ngx_int_t        rc;
    ngx_str_t        v;
    ngx_do_dirty_t  *d;
    ngx_do_cache_t  *e;
    ngx_do_write_t  *w;

    w = ngx_do_batch_find(t, key);

    if (w) {
        if (w->delete) {
            return NGX_DECLINED;
        }

        *value = w->value;
        *version = 0;
        return NGX_OK;
    }

    if (t->batch.clear) {
        return NGX_DECLINED;
    }

    /* deferred writes not stored yet are the truth, whatever the cache kept */
    d = ngx_do_dirty_find(t->obj->dirty, key);

    if (d == NULL) {
        d = ngx_do_dirty_find(t->obj->flushing, key);
    }

    if (d) {
        if (d->delete) {
            return NGX_DECLINED;
        }

        value->data = ngx_pnalloc(t->pool, d->value.len + 1);
        if (value->data == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }

        ngx_memcpy(value->data, d->value.data, d->value.len);
        value->len = d->value.len;
        *version = 0;

        return NGX_OK;
    }

    hash = ngx_crc32_short(key->data, key->len);
    e = ngx_do_cache_find(t->obj, key, hash);

    if (e == NULL && ngx_do_backend->async) {
        /* the loaded state is complete: not in it, not in storage */
        return NGX_DECLINED;
    }

    if (e == NULL) {
        rc = ngx_do_backend->get(t->obj->id, key, &v, version);

        if (rc == NGX_ERROR) {
            t->failed = 1;
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_do_cache_set(t->obj, key, NULL, 0, 1);
            return NGX_DECLINED;
        }

        value->data = ngx_pnalloc(t->pool, v.len + 1);
        if (value->data == NULL) {
            ngx_free(v.data);
            t->failed = 1;
            return NGX_ERROR;
        }

        ngx_memcpy(value->data, v.data, v.len);
        value->len = v.len;

        if (*version > t->obj->version && !t->obj->deferred) {
            /*
             * written after this turn checked the object's version: another
             * worker acts for it (a reload overlap); the commit will tell
             */
            ngx_free(v.data);
            return NGX_OK;
        }

        ngx_do_cache_set(t->obj, key, &v, *version, 0);

        return NGX_OK;
    }

    if (e->value.data == NULL) {
        return NGX_DECLINED;
    }

    /* a copy: the cache may change before the turn ends */
    value->data = ngx_pnalloc(t->pool, e->value.len + 1);
    if (value->data == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    ngx_memcpy(value->data, e->value.data, e->value.len);
    value->len = e->value.len;
    *version = e->version;

    return NGX_OK;
}


/* keys that start with a zero byte are the runtime's (alarms) */
#define ngx_do_key_reserved(key)  ((key)->len && (key)->data[0] == '\0')


ngx_int_t
ngx_do_put(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value)
{
    if (ngx_do_key_reserved(key)) {
        return NGX_DECLINED;
    }

    return ngx_do_put_reserved(t, key, value);
}


ngx_int_t
ngx_do_put_reserved(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value)
{
    ngx_do_write_t  *w;

    if (key->len == 0 || key->len > t->obj->ns->max_key
        || value->len > t->obj->ns->max_value)
    {
        return NGX_DECLINED;
    }

    w = ngx_do_batch_find(t, key);

    if (w == NULL) {
        w = ngx_array_push(&t->batch.writes);
        if (w == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }

        w->key = *key;
    }

    w->value = *value;
    w->delete = 0;

    return NGX_OK;
}


ngx_int_t
ngx_do_delete(ngx_do_turn_t *t, ngx_str_t *key)
{
    if (ngx_do_key_reserved(key)) {
        return NGX_DECLINED;
    }

    return ngx_do_delete_reserved(t, key);
}


ngx_int_t
ngx_do_delete_reserved(ngx_do_turn_t *t, ngx_str_t *key)
{
    uint64_t         version;
    ngx_int_t        rc;
    ngx_str_t        value;
    ngx_do_write_t  *w;

    if (key->len == 0 || key->len > t->obj->ns->max_key) {
        return NGX_DECLINED;
    }

    rc = ngx_do_get(t, key, &value, &version);

    if (rc != NGX_OK) {
        return rc;
    }

    w = ngx_do_batch_find(t, key);

    if (w == NULL) {
        w = ngx_array_push(&t->batch.writes);
        if (w == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }

        w->key = *key;
    }

    w->value.len = 0;
    w->value.data = NULL;
    w->delete = 1;

    return NGX_OK;
}


/* deletes the alarms too, as Cloudflare's deleteAll() now does */
ngx_int_t
ngx_do_delete_all(ngx_do_turn_t *t)
{
    t->batch.writes.nelts = 0;
    t->batch.clear = 1;
    t->alarms = 1;

    return NGX_OK;
}


void
ngx_do_rollback(ngx_do_turn_t *t)
{
    t->batch.writes.nelts = 0;
    t->batch.clear = 0;
}


ngx_int_t
ngx_do_list(ngx_do_turn_t *t, ngx_do_list_opts_t *opts, ngx_array_t **items)
{
    ngx_array_t  *out;

    out = ngx_array_create(t->pool, 16, sizeof(ngx_do_kv_t));
    if (out == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    if (opts->max_bytes == 0) {
        opts->max_bytes = 8 * 1024 * 1024;
    }

    if (ngx_do_key_reserved(&opts->prefix)) {
        *items = out;
        return NGX_OK;
    }

    /* the runtime's keys sort first: the listing starts after them */
    if (opts->start.len == 0 || opts->start.data[0] == '\0') {
        opts->start.data = (u_char *) "\1";
        opts->start.len = 1;
    }

    if (ngx_do_backend->async) {
        if (ngx_do_list_cache(t, opts, out) != NGX_OK) {
            t->failed = 1;
            return NGX_ERROR;
        }

        *items = out;
        return NGX_OK;
    }

    if (ngx_do_backend->list(t->obj->id, opts, t->pool, out) != NGX_OK) {
        t->failed = 1;
        return NGX_ERROR;
    }

    *items = out;

    return NGX_OK;
}


ngx_int_t
ngx_do_reply(ngx_do_turn_t *t, ngx_uint_t status, const char *content_type,
    ngx_str_t *body, uint64_t etag)
{
    t->status = status;
    t->content_type.data = (u_char *) content_type;
    t->content_type.len = ngx_strlen(content_type);
    t->etag = etag;
    t->body.len = 0;

    if (body && body->len) {
        t->body.data = ngx_pnalloc(t->pool, body->len);
        if (t->body.data == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }

        ngx_memcpy(t->body.data, body->data, body->len);
        t->body.len = body->len;
    }

    t->replied = 1;

    return NGX_OK;
}


ngx_int_t
ngx_do_reply_json(ngx_do_turn_t *t, ngx_do_request_t *parked,
    ngx_uint_t status, json_t *root, uint64_t etag)
{
    char       *text;
    ngx_int_t   rc;
    ngx_str_t   body;

    if (root == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);

    if (text == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    body.data = (u_char *) text;
    body.len = ngx_strlen(text);

    rc = parked ? ngx_do_reply_parked(t, parked, status, "application/json",
                                      &body)
                : ngx_do_reply(t, status, "application/json", &body, etag);

    free(text);

    return rc;
}


ngx_int_t
ngx_do_reply_error(ngx_do_turn_t *t, ngx_uint_t status, const char *msg)
{
    ngx_str_t  body;

    body.data = ngx_pnalloc(t->pool, ngx_strlen(msg) + 16);
    if (body.data == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    body.len = ngx_sprintf(body.data, "{\"error\":\"%s\"}\n", msg)
               - body.data;

    return ngx_do_reply(t, status, "application/json", &body, 0);
}


ngx_int_t
ngx_do_park(ngx_do_turn_t *t, ngx_msec_t timeout, ngx_uint_t status,
    const char *msg)
{
    if (t->call == NULL || t->call->src == NGX_DO_ALARM_SRC
        || t->call->src == NGX_DO_WAKE_SRC || t->call->call_id == 0)
    {
        /* nobody waits for this call's answer */
        return NGX_DECLINED;
    }

    t->park = 1;
    t->park_timeout = timeout ? timeout : 1;
    t->park_status = status;
    t->park_msg = msg;

    return NGX_OK;
}


ngx_do_request_t *
ngx_do_parked_next(ngx_do_turn_t *t, ngx_do_request_t *prev)
{
    ngx_queue_t    *q;
    ngx_do_call_t  *call;
    ngx_do_park_t  *park;

    if (prev == NULL) {
        q = ngx_queue_head(&t->obj->parked);

    } else {
        call = (ngx_do_call_t *) ((u_char *) prev
                                  - offsetof(ngx_do_call_t, req));
        q = ngx_queue_next(&call->park->queue);
    }

    for ( /* void */ ; q != ngx_queue_sentinel(&t->obj->parked);
         q = ngx_queue_next(q))
    {
        park = ngx_queue_data(q, ngx_do_park_t, queue);

        if (park->reply == NULL) {
            return &park->call->req;
        }
    }

    return NULL;
}


ngx_uint_t
ngx_do_parked_count(ngx_do_turn_t *t)
{
    ngx_uint_t         n;
    ngx_do_request_t  *req;

    n = 0;

    for (req = ngx_do_parked_next(t, NULL); req;
         req = ngx_do_parked_next(t, req))
    {
        n++;
    }

    return n;
}


ngx_int_t
ngx_do_reply_parked(ngx_do_turn_t *t, ngx_do_request_t *req,
    ngx_uint_t status, const char *content_type, ngx_str_t *body)
{
    ngx_str_t        ct, empty;
    ngx_do_call_t   *call;
    ngx_do_park_t   *park, **pp;

    call = (ngx_do_call_t *) ((u_char *) req - offsetof(ngx_do_call_t, req));
    park = call->park;

    if (park == NULL || park->reply) {
        return NGX_DECLINED;
    }

    if (t->answers == NULL) {
        t->answers = ngx_array_create(t->pool, 2, sizeof(ngx_do_park_t *));
        if (t->answers == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }
    }

    pp = ngx_array_push(t->answers);
    if (pp == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    ngx_str_null(&empty);
    ct.data = (u_char *) content_type;
    ct.len = ngx_strlen(content_type);

    park->reply = ngx_do_reply_build(t->obj, status, &ct,
                                     body ? body : &empty, 0,
                                     &park->reply_len);
    if (park->reply == NULL) {
        t->answers->nelts--;
        t->failed = 1;
        return NGX_ERROR;
    }

    *pp = park;

    return NGX_OK;
}


ngx_msec_t
ngx_do_call_timeout(void)
{
    return ngx_do_runtime.call_timeout;
}


void
ngx_do_turn_alarms_changed(ngx_do_turn_t *t)
{
    t->alarms = 1;
}


uint64_t
ngx_do_turn_call_id(ngx_do_turn_t *t)
{
    return t->call ? t->call->call_id : 0;
}


/* the turn changed alarms: its commit puts the next one in the index */
static ngx_int_t
ngx_do_turn_alarm_index(ngx_do_turn_t *t)
{
    uint64_t  when;

    if (ngx_do_alarm_next(t, &when) != NGX_OK) {
        return NGX_ERROR;
    }

    t->batch.alarm = when;
    t->batch.alarm_set = 1;

    return NGX_OK;
}


/* list() over a complete cache: the same order and bounds as storage */
static ngx_int_t
ngx_do_list_cache(ngx_do_turn_t *t, ngx_do_list_opts_t *opts,
    ngx_array_t *out)
{
    size_t              bytes;
    ngx_uint_t          i, n;
    ngx_array_t         all;
    ngx_do_kv_t        *kv, *item, *copy;
    ngx_do_cache_t     *e;
    ngx_rbtree_node_t  *node;
    ngx_do_object_t    *obj;

    obj = t->obj;

    if (ngx_array_init(&all, t->pool, 16, sizeof(ngx_do_kv_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    if (obj->cache.root != obj->cache.sentinel) {
        for (node = ngx_rbtree_min(obj->cache.root, obj->cache.sentinel);
             node;
             node = ngx_rbtree_next(&obj->cache, node))
        {
            e = (ngx_do_cache_t *) node;

            if (e->value.data == NULL
                || (opts->prefix.len
                    && (e->key.len < opts->prefix.len
                        || ngx_memcmp(e->key.data, opts->prefix.data,
                                      opts->prefix.len) != 0))
                || (opts->start.len
                    && ngx_memn2cmp(e->key.data, opts->start.data,
                                    e->key.len, opts->start.len) < 0)
                || (opts->end.len
                    && ngx_memn2cmp(e->key.data, opts->end.data,
                                    e->key.len, opts->end.len) >= 0))
            {
                continue;
            }

            kv = ngx_array_push(&all);
            if (kv == NULL) {
                return NGX_ERROR;
            }

            kv->key = e->key;
            kv->value = e->value;
            kv->version = e->version;
        }
    }

    ngx_qsort(all.elts, all.nelts, sizeof(ngx_do_kv_t), ngx_do_kv_cmp);

    kv = all.elts;
    n = all.nelts;
    bytes = 0;

    for (i = 0; i < n && out->nelts < opts->limit; i++) {
        item = &kv[opts->reverse ? n - 1 - i : i];

        bytes += item->key.len + item->value.len;

        if (opts->max_bytes && bytes > opts->max_bytes && out->nelts) {
            opts->truncated = 1;
            break;
        }

        copy = ngx_array_push(out);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        /* copies: the cache may change before the turn ends */
        copy->key.data = ngx_pnalloc(t->pool,
                                     item->key.len + item->value.len + 1);
        if (copy->key.data == NULL) {
            return NGX_ERROR;
        }

        copy->key.len = item->key.len;
        ngx_memcpy(copy->key.data, item->key.data, item->key.len);
        copy->value.data = copy->key.data + item->key.len;
        copy->value.len = item->value.len;
        (void) ngx_do_cpymem(copy->value.data, item->value.data,
                             item->value.len);
        copy->version = item->version;
    }

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_do_kv_cmp(const void *one, const void *two)
{
    const ngx_do_kv_t  *a = one, *b = two;

    return (int) ngx_memn2cmp(a->key.data, b->key.data, a->key.len,
                              b->key.len);
}


static ngx_do_write_t *
ngx_do_batch_find(ngx_do_turn_t *t, ngx_str_t *key)
{
    ngx_uint_t       i;
    ngx_do_write_t  *w;

    w = t->batch.writes.elts;

    for (i = 0; i < t->batch.writes.nelts; i++) {
        if (w[i].key.len == key->len
            && ngx_memcmp(w[i].key.data, key->data, key->len) == 0)
        {
            return &w[i];
        }
    }

    return NULL;
}


/* the object cache: what this owner read or wrote, valid at obj->version */


static ngx_do_cache_t *
ngx_do_cache_find(ngx_do_object_t *obj, ngx_str_t *key, uint32_t hash)
{
    ngx_int_t           rc;
    ngx_do_cache_t     *e;
    ngx_rbtree_node_t  *node;

    node = obj->cache.root;

    while (node != obj->cache.sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        e = (ngx_do_cache_t *) node;
        rc = ngx_memn2cmp(key->data, e->key.data, key->len, e->key.len);

        if (rc == 0) {
            return e;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Caches a value (NULL: known absent).  With copy unset the cache takes
 * the ngx_alloc()ed value->data or frees it.  Large values are not cached.
 */
static void
ngx_do_cache_set(ngx_do_object_t *obj, ngx_str_t *key, ngx_str_t *value,
    uint64_t version, ngx_uint_t copy)
{
    u_char          *data;
    uint32_t         hash;
    ngx_do_cache_t  *e;

    hash = ngx_crc32_short(key->data, key->len);

    e = ngx_do_cache_find(obj, key, hash);

    if (e && copy && value && e->value.data && e->value.len == value->len) {
        /* the common case of a counter or a timestamp: no allocation */
        ngx_memcpy(e->value.data, value->data, value->len);
        e->version = version;
        return;
    }

    if (e) {
        ngx_do_cache_remove(obj, e);
    }

    data = NULL;

    if (value) {
        if (value->len > NGX_DO_CACHE_MAX_VALUE && !ngx_do_backend->async) {
            goto nocache;
        }

        if (copy) {
            data = ngx_alloc(value->len + 1, ngx_cycle->log);
            if (data == NULL) {
                return;
            }

            ngx_memcpy(data, value->data, value->len);

        } else {
            data = value->data;
        }
    }

    /* a complete cache (asynchronous backends) is never trimmed */
    if (obj->cache_size + key->len + (value ? value->len : 0)
        > NGX_DO_CACHE_MAX_SIZE
        && !ngx_do_backend->async)
    {
        ngx_do_cache_drop(obj);
    }

    e = ngx_alloc(sizeof(ngx_do_cache_t) + key->len, ngx_cycle->log);
    if (e == NULL) {
        if (data) {
            ngx_free(data);
        }

        return;
    }

    e->node.key = hash;
    e->key.data = (u_char *) (e + 1);
    e->key.len = key->len;
    ngx_memcpy(e->key.data, key->data, key->len);
    e->value.data = data;
    e->value.len = value ? value->len : 0;
    e->version = version;

    ngx_rbtree_insert(&obj->cache, &e->node);
    obj->cache_size += key->len + e->value.len;

    return;

nocache:

    if (!copy) {
        ngx_free(value->data);
    }
}


static void
ngx_do_cache_version(ngx_do_object_t *obj, ngx_str_t *key, uint64_t version)
{
    ngx_do_cache_t  *e;

    e = ngx_do_cache_find(obj, key, ngx_crc32_short(key->data, key->len));

    if (e) {
        e->version = version;
    }
}


static void
ngx_do_cache_remove(ngx_do_object_t *obj, ngx_do_cache_t *e)
{
    ngx_rbtree_delete(&obj->cache, &e->node);
    obj->cache_size -= e->key.len + e->value.len;

    if (e->value.data) {
        ngx_free(e->value.data);
    }

    ngx_free(e);
}


static void
ngx_do_cache_drop(ngx_do_object_t *obj)
{
    ngx_rbtree_node_t  *node;

    while (obj->cache.root != obj->cache.sentinel) {
        node = ngx_rbtree_min(obj->cache.root, obj->cache.sentinel);
        ngx_do_cache_remove(obj, (ngx_do_cache_t *) node);
    }

    obj->cache_size = 0;
    obj->loaded = 0;
}


static void
ngx_do_cache_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t  **p;
    ngx_do_cache_t      *n, *t;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            n = (ngx_do_cache_t *) node;
            t = (ngx_do_cache_t *) temp;

            p = (ngx_memn2cmp(n->key.data, t->key.data, n->key.len,
                              t->key.len) < 0)
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
