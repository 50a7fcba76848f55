
/*
 * The runtime's objects, shared by the files that run them and private to
 * them: ngx_do_object.c (the table, activation, eviction), ngx_do_turn.c
 * (the mailbox and its turns), ngx_do_commit.c (per-turn and group
 * commits), ngx_do_defer.c (deferred writes), ngx_do_park.c (parked calls
 * and wake turns), ngx_do_wire.c (calls and replies on the wire),
 * ngx_do_api.c (the class API) and ngx_do_cache.c (the object cache).
 * The shell, the router, alarms and classes never include it.
 */


#ifndef _NGX_DO_OBJECT_H_INCLUDED_
#define _NGX_DO_OBJECT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do.h"


/* the callers of alarm and wake calls, which are not workers */
#define NGX_DO_ALARM_SRC          ((ngx_uint_t) -1)
#define NGX_DO_WAKE_SRC           ((ngx_uint_t) -2)

#define NGX_DO_TURN_TRIES         32
#define NGX_DO_GROUP_MAX          64


typedef ngx_int_t (*ngx_do_turn_handler_pt)(ngx_do_turn_t *t);


/* a key of the object cache, in a tree of ngx_do_cache_insert() */
typedef struct {
    ngx_str_node_t             node;          /* node.str: the key */
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
 * lru: its place in the worker's queue of objects, the least recently
 * called first (do_max_objects evicts from there).  solo: so many next
 * group commits take one call each (a quota refused a group).  no_alarms:
 * a synchronous backend said, as the turn began, that the object has no
 * alarm (a turn then needs no look for one).  epoch: in cluster mode,
 * the epoch of its shard's lease its state was loaded under (0: none
 * yet); its commits carry it (ngx_do_object_epoch()).
 */
struct ngx_do_object_s {
    ngx_do_object_t           *next;          /* in its hash bucket */
    ngx_queue_t                lru;
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
    uint64_t                   epoch;
    ngx_event_t                idle;
    ngx_event_t                retry;         /* a group's next try */
    ngx_event_t                wake;          /* parked calls, see below */
    ngx_do_storage_req_t      *req;
    ngx_do_storage_req_t      *flush_req;
    ngx_do_turn_t             *turn;
    ngx_do_turn_t             *group[NGX_DO_GROUP_MAX];
    ngx_uint_t                 ngroup;
    ngx_uint_t                 solo;
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
    unsigned                   no_alarms:1;
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
} ngx_do_mail_t;


/*
 * A parked call: unanswered after its turn, in the object's parked queue
 * until a later turn answers it (reply: that answer, waiting for the
 * turn's commit) or its timer answers status and msg.
 */
struct ngx_do_park_s {
    ngx_queue_t                queue;
    ngx_do_mail_t             *mail;
    ngx_do_object_t           *obj;
    ngx_event_t                timer;
    ngx_uint_t                 status;
    const char                *msg;
    u_char                    *reply;
    size_t                     reply_len;
};


/* a message a turn sends to its object's WebSockets once committed */
typedef struct {
    ngx_str_t                  frame;
    uint64_t                   seq;
} ngx_do_turn_cast_t;


struct ngx_do_turn_s {
    ngx_do_object_t           *obj;
    ngx_do_mail_t             *mail;
    ngx_int_t                (*handler)(ngx_do_turn_t *t);
    ngx_pool_t                *pool;
    ngx_do_batch_t             batch;
    ngx_uint_t                 status;
    ngx_str_t                  content_type;
    ngx_str_t                  body;
    uint64_t                   etag;
    u_char                    *wire;          /* ngx_do_reply_buf() */
    size_t                     wire_len;
    ngx_array_t               *answers;       /* ngx_do_park_t * */
    ngx_msec_t                 park_timeout;
    ngx_uint_t                 park_status;
    const char                *park_msg;
    ngx_array_t               *casts;         /* ngx_do_turn_cast_t */
    size_t                     body_size;     /* ngx_do_ws_reply() room */
    unsigned                   replied:1;
    unsigned                   failed:1;
    unsigned                   park:1;
    unsigned                   alarms:1;      /* alarms changed */
};


extern ngx_do_backend_t       *ngx_do_object_backend;
extern ngx_do_deliver_pt       ngx_do_object_deliver;
extern ngx_do_resend_pt        ngx_do_object_resend;


/* ngx_do_object.c */
ngx_pool_t *ngx_do_object_pool_get(void);
void ngx_do_object_pool_put(ngx_pool_t *pool);
ngx_do_mail_t *ngx_do_object_mail_get(void);
void ngx_do_object_mail_put(ngx_do_mail_t *mail);
ngx_do_object_t *ngx_do_object_get(u_char *id, ngx_do_namespace_t *ns,
    ngx_uint_t transient);
ngx_int_t ngx_do_object_place(ngx_do_object_t *obj);
void ngx_do_object_loaded(ngx_do_storage_req_t *req);
void ngx_do_object_fail_all(ngx_do_object_t *obj, const char *msg);
ngx_uint_t ngx_do_object_resend_mail(ngx_do_mail_t *mail);
void ngx_do_object_refresh(ngx_do_object_t *obj);
ngx_int_t ngx_do_object_epoch(ngx_do_object_t *obj);
ngx_uint_t ngx_do_object_stale(ngx_do_object_t *obj,
    ngx_int_t (*handler)(ngx_do_turn_t *t));
ngx_msec_t ngx_do_object_idle_time(ngx_do_object_t *obj);
ngx_int_t ngx_do_object_close(ngx_do_object_t *obj);
void ngx_do_object_free(ngx_do_object_t *obj);


/* ngx_do_turn.c */
void ngx_do_turn_mailbox(ngx_do_object_t *obj);
void ngx_do_turn_continue(ngx_do_object_t *obj);
ngx_int_t ngx_do_turn_one(ngx_do_object_t *obj,
    ngx_do_mail_t *mail, ngx_int_t (*handler)(ngx_do_turn_t *t));
ngx_int_t ngx_do_turn_run(ngx_do_object_t *obj,
    ngx_do_mail_t *mail, ngx_int_t (*handler)(ngx_do_turn_t *t),
    ngx_do_turn_t **tp);
ngx_int_t ngx_do_turn_fail(ngx_do_object_t *obj, ngx_do_mail_t *mail);
void ngx_do_turn_mail_abandon(ngx_do_mail_t *mail);
void ngx_do_turn_release(ngx_do_object_t *obj, ngx_do_mail_t *mail,
    ngx_do_turn_t *t, uint64_t version);
void ngx_do_turn_free(ngx_do_turn_t *t);
void ngx_do_turn_mail_free(ngx_do_mail_t *mail);


/* ngx_do_commit.c */
ngx_int_t ngx_do_commit_turn(ngx_do_object_t *obj, ngx_do_turn_t *t);
ngx_int_t ngx_do_commit_group(ngx_do_object_t *obj);
void ngx_do_commit_retry_handler(ngx_event_t *ev);
void ngx_do_commit_req_free(ngx_do_storage_req_t *req);
ngx_do_storage_req_t *ngx_do_commit_req_create(ngx_do_object_t *obj,
    ngx_do_storage_handler_pt handler);


/* ngx_do_defer.c */
ngx_int_t ngx_do_defer_writes(ngx_do_object_t *obj,
    ngx_do_batch_t *batch);
ngx_int_t ngx_do_defer_flush(ngx_do_object_t *obj);
void ngx_do_defer_flush_handler(ngx_event_t *ev);
void ngx_do_defer_free(ngx_do_object_t *obj);
ngx_do_dirty_t *ngx_do_defer_find(ngx_do_dirty_t *d, ngx_str_t *key);
void ngx_do_defer_list_free(ngx_do_dirty_t *d);


/* ngx_do_park.c */
void ngx_do_park_wake_handler(ngx_event_t *ev);
ngx_int_t ngx_do_park_wake_enqueue(ngx_do_object_t *obj);
ngx_int_t ngx_do_park_wake_turn(ngx_do_turn_t *t);
void ngx_do_park_timeout(ngx_event_t *ev);
void ngx_do_park_free_all(ngx_do_object_t *obj, const char *msg,
    ngx_uint_t follow);


/* ngx_do_wire.c */
u_char *ngx_do_wire_reply(ngx_do_object_t *obj, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body, uint64_t etag, size_t *len);
u_char *ngx_do_wire_reply_alloc(ngx_do_object_t *obj, ngx_uint_t status,
    ngx_str_t *content_type, size_t body_len, uint64_t etag, size_t *len);
void ngx_do_wire_send(ngx_do_object_t *obj, ngx_do_mail_t *mail,
    ngx_do_turn_t *t, uint64_t version);


/* ngx_do_cache.c */
ngx_int_t ngx_do_cache_list(ngx_do_turn_t *t,
    ngx_do_list_opts_t *opts, ngx_array_t *out);
void ngx_do_cache_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
ngx_do_cache_t *ngx_do_cache_find(ngx_do_object_t *obj, ngx_str_t *key);
ngx_int_t ngx_do_cache_range(ngx_do_object_t *obj, ngx_str_t *prefix,
    ngx_uint_t limit, ngx_pool_t *pool, ngx_array_t *out);
void ngx_do_cache_set(ngx_do_object_t *obj, ngx_str_t *key,
    ngx_str_t *value, uint64_t version, ngx_uint_t copy);
void ngx_do_cache_version(ngx_do_object_t *obj, ngx_str_t *key,
    uint64_t version);
void ngx_do_cache_drop(ngx_do_object_t *obj);


#endif /* _NGX_DO_OBJECT_H_INCLUDED_ */
