
/*
 * ngx_do runtime: what the nginx-facing shell and the runtime files share.
 * Classes never include this file; they see only ngx_http_do.h.
 */


#ifndef _NGX_DO_H_INCLUDED_
#define _NGX_DO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_do.h"


#define NGX_DO_TAG_LEN            16
#define NGX_DO_BODY_LEN           16

/* ngx_cpymem() that accepts a NULL source of length 0 (no UB) */
#define ngx_do_cpymem(dst, src, n)                                           \
    (((n) == 0) ? (u_char *) (dst) : ngx_cpymem(dst, src, n))

#define NGX_DO_VERSION_ANY        ((uint64_t) -1)

/* a commit that a namespace's quota refused: max_bytes=, max_objects= */
#define NGX_DO_QUOTA_BYTES        -100
#define NGX_DO_QUOTA_OBJECTS      -101

#define ngx_do_quota_refused(rc)                                             \
    ((rc) == NGX_DO_QUOTA_BYTES || (rc) == NGX_DO_QUOTA_OBJECTS)

/*
 * cluster mode: storage refused a commit or a flush by its epoch (this
 * node does not hold the shard's lease at that epoch): nothing was stored
 */
#define NGX_DO_FENCED             -102

/* an object ID's first 8 hex digits, as debug lines print it ("%08xD") */
#define ngx_do_id_prefix(id)                                                 \
    (((uint32_t) (id)[0] << 24) | ((uint32_t) (id)[1] << 16)                 \
     | ((uint32_t) (id)[2] << 8) | (uint32_t) (id)[3])

#define NGX_DO_IPC_CALL           1
#define NGX_DO_IPC_REPLY          2
#define NGX_DO_IPC_FANOUT         3


/*
 * Runtime-wide settings, copied from the http main configuration when a
 * worker starts (the runtime must not reach into the shell's structures).
 */
typedef struct {
    ngx_array_t               *namespaces;    /* ngx_do_namespace_t * */
    ngx_uint_t                 workers;
    ngx_msec_t                 idle_timeout;
    ngx_msec_t                 flush_interval;
    ngx_msec_t                 call_timeout;
    ngx_uint_t                 max_objects;   /* per worker, 0: no cap */
    ngx_uint_t                 generation;
    u_char                     secret[32];
} ngx_do_runtime_t;

extern ngx_do_runtime_t        ngx_do_runtime;


/*
 * The wire form of a call: this header, then args, if_match,
 * if_none_match and body, back to back.  The same bytes serve a local call
 * and an IPC message, so a call is built once.
 */
typedef struct {
    uint32_t                   ns;
    uint32_t                   kind;          /* NGX_DO_TURN_HTTP, ... */
    uint32_t                   method;
    uint32_t                   args_len;      /* the strings' lengths, */
    uint32_t                   if_match_len;  /* in their order */
    uint32_t                   if_none_match_len;
    uint32_t                   body_len;
    uint32_t                   member_len;    /* WebSocket turns, then: */
    uint64_t                   conn;
    u_char                     id[NGX_DO_ID_LEN];
} ngx_do_call_wire_t;


/*
 * The wire form of a reply: this header, then content type and body.  A
 * reply to a WebSocket turn: status 101 (accepted), 200, or the close
 * code the connection gets (1000-4999); body the frames for it; content
 * type the close reason; etag the sequence number the connection is at.
 */
typedef struct {
    uint32_t                   status;
    uint32_t                   owner;
    uint64_t                   activation;
    uint64_t                   etag;
    uint32_t                   content_type_len;
    uint32_t                   body_len;
} ngx_do_reply_wire_t;


/* a batch of writes committed atomically at the end of a turn */
typedef struct {
    ngx_str_t                  key;
    ngx_str_t                  value;
    unsigned                   delete:1;
} ngx_do_write_t;


/*
 * epoch: in cluster mode, the epoch of the shard's lease the object was
 * loaded under; storage stores nothing unless the lease is still at it
 */
typedef struct {
    ngx_array_t                writes;        /* ngx_do_write_t */
    ngx_msec_t                 expire;        /* 0: the state stays */
    uint64_t                   epoch;
    uint64_t                   alarm;         /* the next alarm, 0: none */
    unsigned                   clear:1;
    unsigned                   alarm_set:1;   /* alarm goes to the index */
} ngx_do_batch_t;


/*
 * One storage operation of an object, for backends that answer later: the
 * handler runs once with rc (and version, and for a load the object's keys
 * in kvs, allocated in pool, which the handler destroys).  When its object
 * goes away first, data is set to NULL and the handler only frees the req.
 */
typedef struct ngx_do_storage_req_s  ngx_do_storage_req_t;

typedef void (*ngx_do_storage_handler_pt)(ngx_do_storage_req_t *req);

struct ngx_do_storage_req_s {
    ngx_do_storage_handler_pt  handler;
    void                      *data;
    ngx_int_t                  rc;
    uint64_t                   version;
    ngx_array_t               *kvs;           /* ngx_do_kv_t */
    ngx_pool_t                *pool;
    ngx_uint_t                 shard;         /* cluster mode: a commit's */
    uint64_t                   epoch;
};


/*
 * A storage backend.  Every object has a version (0: never written, or
 * empty).  A commit carries the version the turn saw and fails with
 * NGX_BUSY when storage moved on, which is how two owners that overlap
 * during a reload never lose each other's writes; NGX_DO_VERSION_ANY
 * commits unconditionally (deferred state).  NGX_DECLINED: storage full.
 *
 * A synchronous backend (memory) answers everything at once; reads go
 * through version/get/list (version also tells the time of the object's
 * next alarm, 0: it has none, so that a turn need not look for any).  An
 * asynchronous one (redis) loads a whole object at activation (load),
 * after which the object's cache is complete and reads never leave the
 * worker, and answers commits later (NGX_AGAIN, then req->handler).
 *
 * A backend also owns its lifecycle, so that the shell knows none by name:
 * do_storage's first argument picks the backend whose forms it matches
 * (create_conf parses it, NULL when do_storage is absent: the defaults),
 * parse_param each further argument (NGX_DECLINED: not one of its own);
 * init_conf adds what the configuration needs (shared zones, with tag);
 * local says that state lives in this node's shared memory, which is
 * what classes learn through their init_namespace;
 * init_worker and exit_worker run in each worker; secret gives the random
 * key of IDs when do_secret is unset (NULL: do_secret is required); usage
 * fills the status page; capacity says how many bytes the configured
 * storage holds at most (0: no bound known), against which the shell
 * checks the namespaces' max_bytes=.
 *
 * Quotas: a commit also keeps each namespace's count of bytes (keys and
 * values) and of objects with state, atomically with the writes, and
 * refuses a batch that would take a count over max_bytes= or
 * max_objects= (NGX_DO_QUOTA_BYTES, NGX_DO_QUOTA_OBJECTS) before it
 * changes anything; a batch that does not grow a count always passes.
 * State with an expiry (batch.expire) is not counted: storage drops it on
 * its own.
 *
 * Fencing, in cluster mode: a commit (and a write of cells) carries the
 * epoch of its shard's lease that its state was read or decided under
 * (batch.epoch) and stores nothing unless the lease is still at that
 * epoch: NGX_DO_FENCED, logged, counted and told to the cluster core.
 */
typedef struct {
    size_t                     size;          /* a memory zone, or 0 */
    size_t                     free;
    ngx_uint_t                 connected;     /* connections ready */
} ngx_do_storage_usage_t;


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 async;
    ngx_uint_t                 local;         /* this node's shared memory */

    /* "name" alone, or a URL scheme "name://" followed by the rest */
    const char               **forms;         /* NULL-terminated */
    void                    *(*create_conf)(ngx_conf_t *cf, ngx_str_t *arg);
    ngx_int_t                (*parse_param)(ngx_conf_t *cf, void *conf,
                                            ngx_str_t *param);
    ngx_int_t                (*init_conf)(ngx_conf_t *cf, void *conf,
                                          void *tag);
    ngx_int_t                (*init_worker)(ngx_cycle_t *cycle, void *conf);
    void                     (*exit_worker)(void);
    ngx_int_t                (*secret)(u_char *secret);
    void                     (*usage)(ngx_do_storage_usage_t *usage);
    size_t                   (*capacity)(void *conf);

    ngx_int_t                (*version)(u_char *id, uint64_t *version,
                                        uint64_t *alarm);
    ngx_int_t                (*get)(u_char *id, ngx_str_t *key,
                                    ngx_str_t *value, uint64_t *version);
    ngx_int_t                (*list)(u_char *id, ngx_do_list_opts_t *opts,
                                     ngx_pool_t *pool, ngx_array_t *out);
    ngx_int_t                (*load)(ngx_do_namespace_t *ns, u_char *id,
                                     ngx_do_storage_req_t *req);
    ngx_int_t                (*commit)(ngx_do_namespace_t *ns, u_char *id,
                                       uint64_t expected,
                                       ngx_do_batch_t *batch,
                                       ngx_do_storage_req_t *req);
    void                     (*sweep)(void);  /* every second, worker 0 */

    /*
     * The alarm index of a shard: its entries due at now (up to limit)
     * into req->kvs, as key = namespace name, value = the object's ID,
     * version = the time; req->version = the next time after those (0:
     * none).  NGX_OK (answered), NGX_AGAIN (req->handler answers later)
     * or NGX_ERROR.
     */
    ngx_int_t                (*alarms)(ngx_uint_t shard, uint64_t now,
                                       ngx_uint_t limit,
                                       ngx_do_storage_req_t *req);

    /*
     * Cells (ngx_do_cell_get(), ngx_do_cell_put() in ngx_http_do.h);
     * NULL: the backend keeps none
     */
    ngx_int_t                (*cell_get)(ngx_do_namespace_t *ns, u_char *id,
                                         ngx_do_cell_pt handler, void *data);
    ngx_int_t                (*cell_put)(ngx_do_namespace_t *ns,
                                         ngx_do_cell_t *cells, ngx_uint_t n,
                                         uint64_t epoch,
                                         ngx_do_cell_pt handler, void *data);
} ngx_do_backend_t;


/*
 * ngx_do_quota.c: a namespace's count in a backend's shared memory zone
 * (bytes of keys and values, objects with state), under the zone's lock
 */
typedef struct ngx_do_quota_s  ngx_do_quota_t;

struct ngx_do_quota_s {
    ngx_do_quota_t            *next;
    off_t                      bytes;
    ngx_int_t                  objects;
    size_t                     name_len;
    u_char                     name[1];
};

ngx_do_quota_t *ngx_do_quota_find(ngx_slab_pool_t *shpool,
    ngx_do_quota_t **list, ngx_do_namespace_t *ns);
ngx_int_t ngx_do_quota_allow(ngx_do_namespace_t *ns, ngx_do_quota_t *q,
    off_t bytes, ngx_int_t objects);
void ngx_do_quota_add(ngx_do_quota_t *q, off_t bytes, ngx_int_t objects);


/* ngx_do_storage.c: the backends, the first one the default */
extern ngx_do_backend_t       *ngx_do_backends[];

ngx_do_backend_t *ngx_do_storage_find(ngx_str_t *arg);

/* in a worker: the backend that the cells of ngx_http_do.h go to */
void ngx_do_storage_init_worker(ngx_do_backend_t *backend);
u_char *ngx_do_storage_forms(u_char *p, u_char *last);


/* ngx_do_router.c */
ngx_int_t ngx_do_router_init(ngx_cycle_t *cycle);
void ngx_do_router_exit(ngx_cycle_t *cycle);
ngx_int_t ngx_do_router_dispatch(ngx_http_request_t *r,
    ngx_do_namespace_t *ns, u_char *id, ngx_uint_t method, ngx_str_t *args,
    ngx_str_t *if_match, ngx_str_t *if_none_match, ngx_str_t *body,
    ngx_msec_t timeout, ngx_http_do_reply_pt handler, void *data);
void ngx_do_router_deliver(uint64_t call_id, u_char *buf, size_t len);
ngx_int_t ngx_do_router_resend(ngx_uint_t src, uint64_t call_id, u_char *buf,
    size_t len);

/*
 * WebSocket calls: the open carries the handshake's request; a message or
 * a close has none, its handler gets the reply (or failed) once and the
 * reply's strings only during the call.
 */
typedef void (*ngx_do_router_ws_pt)(void *data, ngx_http_do_reply_t *reply);

ngx_int_t ngx_do_router_ws_open(ngx_http_request_t *r, ngx_do_namespace_t *ns,
    u_char *id, ngx_str_t *member, uint64_t conn,
    ngx_http_do_reply_pt handler, void *data);
ngx_int_t ngx_do_router_ws(ngx_do_namespace_t *ns, u_char *id,
    ngx_uint_t kind, ngx_uint_t method, ngx_str_t *member, uint64_t conn,
    ngx_str_t *body, ngx_log_t *log, ngx_do_router_ws_pt handler, void *data);
void ngx_do_router_ipc(ngx_uint_t type, ngx_uint_t src, uint64_t call_id,
    u_char *buf, size_t len);
void ngx_do_router_bounce(ngx_uint_t type, ngx_uint_t src, uint64_t call_id,
    u_char *buf, size_t len);


/* ngx_do_shard.c: the one shard -> owner rule */
ngx_uint_t ngx_do_shard_owner(ngx_uint_t shard);

/*
 * Cluster mode, when this node is about to give the shard up (a planned
 * handover): the deferred state that classes keep of the shard (rate
 * limiter buckets) is stored now, from this worker, under the epoch this
 * node holds.  NGX_OK: nothing was waiting; NGX_AGAIN: writes are in
 * flight, and done(data, rc), unless NULL, runs once when storage
 * answered them all (rc NGX_OK: all stored; NGX_ERROR: some were not).
 * The cluster core's leave handlers call it (ngx_do_cluster_on_leave(),
 * registered with the first class handler).  Deferred objects
 * are not flushed here: their writes are refused by epoch once the
 * shard has gone.
 */
ngx_int_t ngx_do_shard_flush(ngx_uint_t shard,
    void (*done)(void *data, ngx_int_t rc), void *data);


/* ngx_do_id.c */

/* the head of anything kept in a tree by object ID (hash, then bytes) */
typedef struct {
    ngx_rbtree_node_t          node;
    u_char                     id[NGX_DO_ID_LEN];
} ngx_do_id_node_t;

void ngx_do_id_init(u_char *secret);
ssize_t ngx_do_id_read_secret(ngx_conf_t *cf, ngx_str_t *file, u_char *buf,
    size_t size);
uint32_t ngx_do_id_hash(u_char *id);
void ngx_do_id_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
ngx_do_id_node_t *ngx_do_id_rbtree_lookup(ngx_rbtree_t *tree, u_char *id);
ngx_int_t ngx_do_id_unique(ngx_do_namespace_t *ns, u_char *id);
ngx_int_t ngx_do_id_from_string(ngx_do_namespace_t *ns, ngx_str_t *hex,
    u_char *id);
ngx_uint_t ngx_do_id_owner(u_char *id);


/* ngx_do_ipc.c */
typedef void (*ngx_do_ipc_handler_pt)(ngx_uint_t type, ngx_uint_t src,
    uint64_t call_id, u_char *buf, size_t len);

ngx_int_t ngx_do_ipc_init_master(ngx_cycle_t *cycle, ngx_uint_t n);
ngx_int_t ngx_do_ipc_init_worker(ngx_cycle_t *cycle,
    ngx_do_ipc_handler_pt handler, ngx_do_ipc_handler_pt bouncer);
void ngx_do_ipc_exit_worker(void);
ngx_int_t ngx_do_ipc_send(ngx_uint_t dst, ngx_uint_t type, uint64_t call_id,
    u_char *buf, size_t len);


/* ngx_do_turn.c: "http", "gate", ... for debug lines */
char *ngx_do_turn_kind_name(ngx_uint_t kind);


/* ngx_do_object.c */
typedef void (*ngx_do_deliver_pt)(uint64_t call_id, u_char *buf, size_t len);
/* a call its object cannot run here, sent on: NGX_OK (buf taken) */
typedef ngx_int_t (*ngx_do_resend_pt)(ngx_uint_t src, uint64_t call_id,
    u_char *buf, size_t len);

ngx_int_t ngx_do_objects_init(ngx_cycle_t *cycle, ngx_do_backend_t *backend,
    ngx_do_deliver_pt deliver, ngx_do_resend_pt resend);
void ngx_do_objects_exit(void);
void ngx_do_objects_hand_over(void);

/* ngx_do_wire.c */
void ngx_do_wire_receive(ngx_uint_t src, uint64_t call_id, u_char *buf,
    size_t len, ngx_uint_t transient);
size_t ngx_do_wire_call_len(ngx_do_call_wire_t *w);
/* an answer, or an error answer, to the call call_id of worker src */
void ngx_do_wire_deliver(ngx_uint_t src, uint64_t call_id,
    u_char *buf, size_t len);
void ngx_do_wire_error(ngx_uint_t src, uint64_t call_id,
    ngx_uint_t status, const char *msg);

/* cluster mode: what a call hears when its shard is not held here now */
#define NGX_DO_MOVED              "the shard moved to another node"
u_char *ngx_do_wire_call(ngx_do_namespace_t *ns, u_char *id,
    ngx_uint_t kind, ngx_uint_t method, ngx_str_t *args, ngx_str_t *if_match,
    ngx_str_t *if_none_match, ngx_str_t *body, size_t *len);
u_char *ngx_do_wire_call_ws(ngx_do_namespace_t *ns, u_char *id,
    ngx_uint_t kind, ngx_uint_t method, ngx_str_t *args, ngx_str_t *member,
    uint64_t conn, ngx_str_t *body, size_t *len);
ngx_int_t ngx_do_wire_parse(u_char *buf, size_t len,
    ngx_do_reply_wire_t **hdr, ngx_str_t *content_type, ngx_str_t *body);


/* ngx_do_fanout.c: WebSocket members of objects, per worker */
ngx_int_t ngx_do_fanout_init(ngx_cycle_t *cycle);
void ngx_do_fanout_exit(void);
void ngx_do_fanout_receive(ngx_uint_t src, u_char *buf, size_t len);
ngx_int_t ngx_do_fanout_send(ngx_do_namespace_t *ns, u_char *id,
    uint64_t seq, ngx_str_t *frames);
ngx_pid_t ngx_do_fanout_conn_pid(uint64_t conn);


/* ngx_do_alarm.c */
ngx_int_t ngx_do_alarms_init(ngx_cycle_t *cycle, ngx_do_backend_t *backend);
void ngx_do_alarms_exit(void);


/*
 * Objects and alarms know each other only through these two small
 * interfaces.  Alarms, for objects: a commit put an alarm time into the
 * index (scheduled); the turn of an alarm call runs fire, and its end,
 * committed or failed, is told to done with the alarm's data; a turn that
 * changed alarms asks next for the time that goes to the index.
 */
void ngx_do_alarm_scheduled(u_char *id, uint64_t when);
void ngx_do_alarm_done(void *data, ngx_uint_t status);
ngx_int_t ngx_do_alarm_fire(ngx_do_turn_t *t);
ngx_int_t ngx_do_alarm_next(ngx_do_turn_t *t, uint64_t *when);

/*
 * Objects, for alarms (ngx_do_wire.c, ngx_do_api.c): an alarm call into
 * an object's mailbox, which always ends in ngx_do_alarm_done(data), and
 * in its turn the data back, the runtime's reserved keys, and the note
 * that alarms changed.
 */
void ngx_do_wire_alarm(ngx_do_namespace_t *ns, u_char *id, void *data);
void *ngx_do_turn_alarm_data(ngx_do_turn_t *t);
ngx_int_t ngx_do_get_reserved(ngx_do_turn_t *t, ngx_str_t *key,
    ngx_str_t *value, uint64_t *version);
ngx_int_t ngx_do_put_reserved(ngx_do_turn_t *t, ngx_str_t *key,
    ngx_str_t *value);
ngx_int_t ngx_do_delete_reserved(ngx_do_turn_t *t, ngx_str_t *key);
ngx_int_t ngx_do_list_reserved(ngx_do_turn_t *t, ngx_str_t *prefix,
    ngx_uint_t limit, ngx_array_t **keys);
void ngx_do_turn_alarms_changed(ngx_do_turn_t *t);
ngx_uint_t ngx_do_turn_alarm_free(ngx_do_turn_t *t);


/* ngx_do_log.c: a kind's slot, shared by the workers (in the status zone) */
typedef struct {
    ngx_atomic_t               second;        /* of the last line */
    ngx_atomic_t               suppressed;    /* lines since */
} ngx_do_log_slot_t;

void ngx_do_log_share(ngx_do_log_slot_t *slots);
u_char *ngx_do_log_url(u_char *buf, u_char *last, ngx_str_t *url);


/*
 * ngx_do_status.c: per-worker counters, each written by its worker only;
 * per-namespace ones (ngx_do_status_count()) are shared
 */
typedef struct {
    ngx_atomic_uint_t          pid;
    ngx_atomic_uint_t          objects;
    ngx_atomic_uint_t          activations;
    ngx_atomic_uint_t          evictions;
    ngx_atomic_uint_t          cap_evictions;
    ngx_atomic_uint_t          turns;
    ngx_atomic_uint_t          forwarded;
    ngx_atomic_uint_t          timeouts;
    ngx_atomic_uint_t          conflicts;
    ngx_atomic_uint_t          storage_full;
    ngx_atomic_uint_t          quota_exceeded;
    ngx_atomic_uint_t          fenced;
    ngx_atomic_uint_t          alarms_fired;
    ngx_atomic_uint_t          alarms_failed;
    ngx_atomic_uint_t          parked;
    ngx_atomic_uint_t          park_timeouts;
    ngx_atomic_uint_t          ws_connections;
    ngx_atomic_uint_t          ws_queued_bytes;
    ngx_atomic_uint_t          ws_messages_in;
    ngx_atomic_uint_t          ws_frames_out;
    ngx_atomic_uint_t          ws_slow_closed;
} ngx_do_stats_t;

extern ngx_do_stats_t         *ngx_do_stats;

size_t ngx_do_status_zone_size(ngx_uint_t namespaces);

/* cluster mode: the commits and flushes refused by epoch, every worker's */
ngx_uint_t ngx_do_status_fenced(void);

/* shm_zone->data: the namespaces (ngx_do_namespace_t *), each gets stats */
ngx_int_t ngx_do_status_init_zone(ngx_shm_zone_t *shm_zone, void *data);
void ngx_do_status_init_worker(ngx_shm_zone_t *shm_zone, ngx_uint_t workers);
ngx_int_t ngx_do_status_render(ngx_pool_t *pool, ngx_uint_t prometheus,
    const char *backend, ngx_uint_t connected, size_t storage_size,
    size_t storage_free, ngx_str_t *out);


/* ngx_do_handover.c */
#define NGX_DO_HANDOVER_WAIT      2000
#define NGX_DO_HANDOVER_RETRY     5

size_t ngx_do_handover_zone_size(void);
ngx_int_t ngx_do_handover_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_int_t ngx_do_handover_init_worker(ngx_cycle_t *cycle,
    ngx_shm_zone_t *shm_zone, void (*release_all)(void));
void ngx_do_handover_exit_worker(void);
ngx_uint_t ngx_do_handover_old(void);
void ngx_do_handover_announce(ngx_shm_zone_t *shm_zone,
    ngx_uint_t generation);
ngx_uint_t ngx_do_handover_replaced(void);
ngx_uint_t ngx_do_handover_overlap(void);
ngx_int_t ngx_do_handover_hold(u_char *id, ngx_uint_t transient,
    ngx_uint_t force);
ngx_int_t ngx_do_handover_deferred(u_char *id);
void ngx_do_handover_unregister(void);
void ngx_do_handover_release(u_char *id);
ngx_pid_t ngx_do_handover_peer(ngx_uint_t worker, ngx_uint_t exact);


/*
 * ngx_do_storage_memory.c and ngx_do_storage_memory_keys.c: the memory
 * backend's objects in its zone, touched only under the zone's mutex.  An
 * object: alarm is its place in its shard's alarm index (key: the time of
 * its next alarm, 0: not in the index); ns its namespace's name, for the
 * alarm calls; keys its keys (ngx_do_memory_kv_t) in the order of list().
 */
typedef struct {
    ngx_do_id_node_t           node;
    uint64_t                   version;
    uint64_t                   expires;       /* ms of wall clock, 0: never */
    ngx_rbtree_t               keys;
    ngx_rbtree_node_t          sentinel;
    ngx_uint_t                 nkeys;
    off_t                      bytes;         /* of its keys and values */
    ngx_rbtree_node_t          alarm;
    size_t                     ns_len;
    u_char                     ns[1];
} ngx_do_memory_object_t;


typedef struct {
    ngx_rbtree_node_t          node;
    uint64_t                   version;
    u_char                    *value;
    size_t                     value_len;
    size_t                     key_len;
    u_char                     key[1];
} ngx_do_memory_kv_t;

extern ngx_slab_pool_t        *ngx_do_memory_shpool;

void ngx_do_memory_keys_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
ngx_do_memory_kv_t *ngx_do_memory_keys_find(ngx_do_memory_object_t *obj,
    ngx_str_t *key);
ngx_int_t ngx_do_memory_keys_list(ngx_do_memory_object_t *obj,
    ngx_do_list_opts_t *opts, ngx_pool_t *pool, ngx_array_t *out);
ngx_int_t ngx_do_memory_keys_reserve(ngx_do_memory_object_t *obj,
    ngx_do_batch_t *batch, u_char **values, ngx_do_memory_kv_t **nodes);
void ngx_do_memory_keys_apply(ngx_do_memory_object_t *obj,
    ngx_do_batch_t *batch, u_char **values, ngx_do_memory_kv_t **nodes,
    uint64_t version);
void ngx_do_memory_keys_free(ngx_do_memory_object_t *obj,
    ngx_do_memory_kv_t *kv);


#endif /* _NGX_DO_H_INCLUDED_ */
