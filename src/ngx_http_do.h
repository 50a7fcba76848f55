
/*
 * ngx_do public class API.
 *
 * A class is a table of callbacks that the runtime calls on the owner worker
 * of an object, one turn at a time.  A turn reads the object's storage
 * through ngx_do_get()/ngx_do_list() (which see the turn's own buffered
 * writes first), buffers writes with ngx_do_put()/ngx_do_delete(), and sets
 * its reply with ngx_do_reply().  The runtime commits the writes as one
 * atomic batch after the handler returns and releases the reply only when the
 * commit succeeded (the output gate).  A handler never blocks and never keeps
 * pointers into a turn after it returned: memory from ngx_do_turn_pool() dies
 * with the turn.
 *
 * A class in another nginx module registers itself from its preconfiguration
 * handler with ngx_do_register_class().
 */


#ifndef _NGX_HTTP_DO_H_INCLUDED_
#define _NGX_HTTP_DO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* the module's version: do_status reports it, packages are named by it */
#define NGX_DO_VERSION            "0.5.0"

#define NGX_DO_ID_LEN             32
/* the shards of object IDs (ngx_do_shard_mine()) */
#define NGX_DO_SHARDS             1024
#define NGX_DO_ID_HEX_LEN         64
#define NGX_DO_MAX_BATCH          128
/* no call carries a longer body: one channel message holds it */
#define NGX_DO_MAX_BODY           (32 * 1024 * 1024)
#define NGX_DO_ETAG_COMMIT        ((uint64_t) -1)

/*
 * The kind of a call, in ngx_do_request_t.kind: what made the turn.
 *
 * NGX_DO_TURN_HTTP    an HTTP request through do_pass: method, args,
 *                     If-Match, If-None-Match and body as the client sent
 * NGX_DO_TURN_GATE    a call of an nginx module for a request
 *                     (ngx_http_do_call(): do_limit, do_lock), whose reply
 *                     the module reads; method and args are the module's
 * NGX_DO_TURN_NOTICE  a call whose reply nobody waits for
 *                     (ngx_http_do_notify(): do_lock's release or renewal
 *                     at the end of a request); it cannot park
 * NGX_DO_TURN_ALARM   an alarm came due: the class sees class->alarm
 * NGX_DO_TURN_WAKE    the object has parked calls: the class sees
 *                     class->wake
 *
 * NGX_DO_TURN_WS_OPEN     a WebSocket handshake through do_pass: args
 *                         and member (do_pass member=); the class sees
 *                         class->ws_open, and accepts the connection with
 *                         ngx_do_ws_accept() or refuses it with an HTTP
 *                         error reply
 * NGX_DO_TURN_WS_MESSAGE  a whole message of an accepted connection: body,
 *                         method NGX_DO_WS_TEXT or NGX_DO_WS_BINARY,
 *                         member; class->ws_message
 * NGX_DO_TURN_WS_CLOSE    the connection is gone (the client closed it,
 *                         broke the protocol, fell behind, or its worker
 *                         stopped): class->ws_close, no reply
 *
 * class->fetch sees HTTP, GATE and NOTICE calls.  WebSocket turns carry
 * conn, the connection's number, unique among the running workers.
 */
#define NGX_DO_TURN_HTTP          0
#define NGX_DO_TURN_GATE          1
#define NGX_DO_TURN_NOTICE        2
#define NGX_DO_TURN_ALARM         3
#define NGX_DO_TURN_WAKE          4
#define NGX_DO_TURN_WS_OPEN       5
#define NGX_DO_TURN_WS_MESSAGE    6
#define NGX_DO_TURN_WS_CLOSE      7

/* the method of a NGX_DO_TURN_WS_MESSAGE call: its frames' opcode */
#define NGX_DO_WS_TEXT            1
#define NGX_DO_WS_BINARY          2


typedef struct ngx_do_turn_s         ngx_do_turn_t;
typedef struct ngx_do_namespace_s    ngx_do_namespace_t;
typedef struct ngx_do_class_s        ngx_do_class_t;
typedef struct ngx_http_do_reply_s   ngx_http_do_reply_t;
typedef struct ngx_do_table_usage_s  ngx_do_table_usage_t;


/* one call as the class sees it; all strings live as long as the turn */
typedef struct {
    ngx_uint_t                 kind;          /* NGX_DO_TURN_HTTP, ... */
    ngx_uint_t                 method;        /* NGX_HTTP_GET, ... */
    ngx_str_t                  args;          /* raw query string */
    ngx_str_t                  if_match;
    ngx_str_t                  if_none_match;
    ngx_str_t                  body;
    ngx_str_t                  member;        /* WebSocket turns */
    uint64_t                   conn;          /* WebSocket turns */
} ngx_do_request_t;


typedef struct {
    ngx_str_t                  key;
    ngx_str_t                  value;
    uint64_t                   version;
} ngx_do_kv_t;


/* ngx_do_list() options; empty strings mean "not set" */
typedef struct {
    ngx_str_t                  prefix;
    ngx_str_t                  start;         /* inclusive */
    ngx_str_t                  end;           /* exclusive */
    ngx_uint_t                 limit;
    size_t                     max_bytes;     /* 0: 8 MiB */
    unsigned                   reverse:1;
    unsigned                   truncated:1;   /* set: max_bytes was hit */
} ngx_do_list_opts_t;


struct ngx_do_class_s {
    ngx_str_t                  name;

    /* bytes of zeroed per-object memory, see ngx_do_turn_state() */
    size_t                     object_size;

    /*
     * deferred durability: writes are stored within do_flush_interval
     * after the turn instead of before its reply (for hot, loss-tolerant
     * state)
     */
    unsigned                   deferred:1;

    /* allocates the class part of a namespace's configuration */
    void                    *(*create_conf)(ngx_conf_t *cf);

    /*
     * parses one "name=value" parameter of do_namespace; returns
     * NGX_CONF_OK, NGX_CONF_ERROR (already logged) or a message
     */
    char                    *(*parse_param)(ngx_conf_t *cf, void *conf,
                                             ngx_str_t *param);

    /* checks the parameters as a whole; same returns as parse_param */
    char                    *(*init_conf)(ngx_conf_t *cf, void *conf);

    /*
     * runs at activation, before any call (may read and write), and again
     * whenever another worker or node changed the object's stored state
     * (a reload overlap, another node on one Redis): what it reads into
     * the object's memory is never staler than storage
     */
    ngx_int_t                (*init)(ngx_do_turn_t *t);

    /* handles one call; NGX_OK with a reply set, or NGX_ERROR (500) */
    ngx_int_t                (*fetch)(ngx_do_turn_t *t);

    /*
     * runs when the object is about to be evicted for idleness; its writes
     * are stored before the object goes.  NGX_DECLINED keeps the object.
     */
    ngx_int_t                (*evict)(ngx_do_turn_t *t);

    /*
     * runs an alarm of the object that came due (name: "" for the default
     * alarm); NGX_ERROR rolls the turn back and retries the alarm later
     */
    ngx_int_t                (*alarm)(ngx_do_turn_t *t, ngx_str_t *name);

    /*
     * runs every 250 ms (100 ms in a worker being replaced), on state read
     * again from storage, for an object with parked calls: another worker
     * or node may have changed the state (a reload overlap, several nginx
     * on one Redis), and this lets the class answer the calls parked here
     * (a lock released elsewhere goes to a waiter of this worker)
     */
    ngx_int_t                (*wake)(ngx_do_turn_t *t);

    /*
     * WebSockets (a class without ws_open answers an upgrade request
     * like any other request, through fetch): a connection's handshake,
     * its messages and its end, each a turn like any other, in the order
     * the connection made them.  What a turn sends to its own connection
     * (ngx_do_ws_reply()) and to every connection of the object
     * (ngx_do_ws_broadcast()) leaves after the turn's commit.
     */
    ngx_int_t                (*ws_open)(ngx_do_turn_t *t);
    ngx_int_t                (*ws_message)(ngx_do_turn_t *t);
    ngx_int_t                (*ws_close)(ngx_do_turn_t *t);

    /*
     * the longest body that a request through do_pass may bring: what the
     * request could store (NULL: the namespace's max_value).  A longer one
     * is refused with 413 where it arrives, from its Content-Length or
     * while it is read, and never reaches the object; *msg is the error
     * the 413 says, "body too large" unless set.
     */
    size_t                   (*max_body)(ngx_do_namespace_t *ns,
                                         ngx_http_request_t *r,
                                         const char **msg);

    /*
     * State a class keeps outside objects (a rate limiter's buckets on
     * memory storage), for the three callbacks below.  init_namespace
     * runs once the http block is parsed, for each of the class's
     * namespaces, with local set when the storage is this node's shared
     * memory (do_storage memory); it may add shared zones.
     */
    ngx_int_t                (*init_namespace)(ngx_conf_t *cf,
                                               ngx_do_namespace_t *ns,
                                               ngx_uint_t local);

    /*
     * answers a do_pass request in the worker that accepted it, without
     * an object: name is the name of name=, NULL for id= and unique.
     * NGX_OK with reply's status, content type and body set (in the
     * request pool); NGX_AGAIN: the class answers later, once, with
     * ngx_http_do_pass_answer(); NGX_DECLINED: the object answers;
     * NGX_ERROR: 500.
     */
    ngx_int_t                (*pass)(ngx_http_request_t *r,
                                     ngx_do_namespace_t *ns, ngx_str_t *name,
                                     ngx_http_do_reply_t *reply);

    /* do_status: the namespace's own table; NGX_DECLINED: it has none */
    ngx_int_t                (*usage)(ngx_do_namespace_t *ns,
                                      ngx_do_table_usage_t *usage);

    /*
     * For state outside objects, per namespace: init_worker runs in each
     * worker once the runtime and storage are up; exit_worker when the
     * worker exits, while storage still takes writes (they are waited
     * for, up to the storage's timeout).
     */
    ngx_int_t                (*init_worker)(ngx_do_namespace_t *ns,
                                            ngx_cycle_t *cycle);
    void                     (*exit_worker)(ngx_do_namespace_t *ns);
};


/* a class's table outside objects, as do_status shows it (class->usage) */
struct ngx_do_table_usage_s {
    ngx_uint_t                 entries;
    size_t                     size;          /* bytes of its zone */
    size_t                     free;          /* bytes not allocated */
};


struct ngx_do_namespace_s {
    ngx_str_t                  name;
    ngx_uint_t                 index;
    ngx_do_class_t            *class;
    void                      *conf;
    size_t                     max_key;
    size_t                     max_value;
    size_t                     max_message;   /* one WebSocket message */
    void                      *stats;         /* do_status's counters */

    /*
     * quotas (0: none): the bytes of keys and values, and the objects
     * with any state, that the namespace's objects may keep in storage
     */
    off_t                      max_bytes;
    ngx_uint_t                 max_objects;
    u_char                    *file;          /* where it is declared */
    ngx_uint_t                 line;
};


ngx_int_t ngx_do_register_class(ngx_conf_t *cf, ngx_do_class_t *class);


/*
 * For nginx modules that call objects from a request (gates such as
 * do_limit): the reply of a call, or failed set with status 504 (the owner
 * did not answer within do_call_timeout) or 503 (its channel is full).
 * The strings live as long as the request.
 */
struct ngx_http_do_reply_s {
    ngx_uint_t                 status;
    ngx_str_t                  content_type;
    ngx_str_t                  body;
    uint64_t                   etag;
    uint64_t                   activation;
    ngx_uint_t                 owner;
    unsigned                   failed:1;
};

typedef void (*ngx_http_do_reply_pt)(ngx_http_request_t *r, void *data,
    ngx_http_do_reply_t *reply);

/*
 * Sends a call of kind NGX_DO_TURN_GATE (an HTTP method and query args, no
 * body) to the object with this ID;
 * the handler runs exactly once, possibly before this returns, at the
 * latest after timeout (0: do_call_timeout).  NGX_ERROR: the call could
 * not be made (the handler will not run).
 */
ngx_int_t ngx_http_do_call(ngx_http_request_t *r, ngx_do_namespace_t *ns,
    u_char *id, ngx_uint_t method, ngx_str_t *args, ngx_msec_t timeout,
    ngx_http_do_reply_pt handler, void *data);

/*
 * A call of kind NGX_DO_TURN_NOTICE, whose reply nobody waits for, sent
 * once the current event is handled (safe from a pool cleanup): a lock
 * release at a request's end.
 */
ngx_int_t ngx_http_do_notify(ngx_do_namespace_t *ns, u_char *id,
    ngx_uint_t method, ngx_str_t *args);

/* the answer of a class's pass that returned NGX_AGAIN: the response */
void ngx_http_do_pass_answer(ngx_http_request_t *r,
    ngx_http_do_reply_t *reply);

/* registers a module's variables: a table ending with ngx_http_null_variable */
ngx_int_t ngx_http_do_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars);

/* adds a response header; the value must live as long as the request */
ngx_int_t ngx_http_do_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len);

/* the namespace of that name, once the http block is parsed; or NULL */
ngx_do_namespace_t *ngx_http_do_find_namespace(ngx_conf_t *cf,
    ngx_str_t *name);

/*
 * For a gate's postconfiguration: the namespace its directive at
 * file:line names, which must be of class; NULL, logged, otherwise
 */
ngx_do_namespace_t *ngx_http_do_gate_namespace(ngx_conf_t *cf,
    ngx_str_t *name, ngx_do_class_t *class, const char *directive,
    u_char *file, ngx_uint_t line);

/*
 * For a gate's directive: the parameters every gate takes, key=EXPR
 * (compiled into key; an empty one leaves it unset) and status=400..599.
 * NGX_OK: it was one of them; NGX_DECLINED: it was not; NGX_ERROR:
 * invalid (logged).
 */
ngx_int_t ngx_http_do_gate_param(ngx_conf_t *cf, ngx_str_t *param,
    ngx_http_complex_value_t *key, ngx_uint_t *status);

/* the ID of a name in a namespace (Cloudflare's idFromName) */
void ngx_do_id_from_name(ngx_do_namespace_t *ns, ngx_str_t *name, u_char *id);

/*
 * 1: this worker owns the shard (0 .. NGX_DO_SHARDS - 1), by the rule
 * that places objects: for a class that splits work of its own by shard
 */
ngx_uint_t ngx_do_shard_mine(ngx_uint_t shard);

/* the shard of an object ID (0 .. NGX_DO_SHARDS - 1) */
ngx_uint_t ngx_do_id_shard(u_char *id);

/*
 * Cluster mode (do_cluster), for a class that keeps state of its own by
 * shard.  ngx_do_clustered(): 1 in cluster mode.  ngx_do_shard_epoch():
 * the epoch of this node's lease on the shard, 0 when it holds none
 * (0 outside cluster mode); what the class keeps of a shard under
 * another epoch is stale.  ngx_do_shard_on_flush(), in each worker:
 * handler(data, shard, done, ctx) runs when this node is about to give
 * the shard up, sends the writes of the shard's deferred state at once
 * and returns how many it sent; done(ctx, rc) runs once for each as
 * storage answers it (rc NGX_OK: stored).
 */
typedef void (*ngx_do_shard_done_pt)(void *ctx, ngx_int_t rc);
typedef ngx_uint_t (*ngx_do_shard_flush_pt)(void *data, ngx_uint_t shard,
    ngx_do_shard_done_pt done, void *ctx);

ngx_uint_t ngx_do_clustered(void);
uint64_t ngx_do_shard_epoch(ngx_uint_t shard);
ngx_int_t ngx_do_shard_on_flush(ngx_do_shard_flush_pt handler, void *data);


/*
 * Cells: one small value per ID of a namespace, kept by storage outside
 * objects, for state that a class keeps in a table of its own and stores
 * later (a rate limiter's TAT on Redis).  No versions: the last write
 * wins; each value may expire.  Storage that keeps nothing outside this
 * node (memory) has no cells: both calls return NGX_DECLINED.
 */
typedef struct {
    u_char                    *id;
    ngx_str_t                  value;
    ngx_msec_t                 ttl;           /* 0: it stays */
    unsigned                   delete:1;
} ngx_do_cell_t;

/*
 * rc NGX_OK (value set, alive only during the handler), NGX_DECLINED (no
 * value) or NGX_ERROR (storage failed)
 */
typedef void (*ngx_do_cell_pt)(void *data, ngx_int_t rc, ngx_str_t *value);

/*
 * Reads the cell of id: NGX_OK, the handler runs later, once; NGX_ERROR
 * (storage is unavailable) or NGX_DECLINED: it does not
 */
ngx_int_t ngx_do_cell_get(ngx_do_namespace_t *ns, u_char *id,
    ngx_do_cell_pt handler, void *data);

/*
 * Writes n cells at once (each applied whole, in order; the strings are
 * copied before this returns): NGX_OK, the handler runs later, once, with
 * NGX_OK or NGX_ERROR and no value; NGX_ERROR or NGX_DECLINED: it does not.
 * In cluster mode the cells' IDs are of one shard, and epoch is the epoch
 * of its lease they were decided under (ngx_do_shard_epoch()): storage
 * writes nothing unless the lease is still at it, and the handler gets
 * NGX_DECLINED (0 outside cluster mode)
 */
ngx_int_t ngx_do_cell_put(ngx_do_namespace_t *ns, ngx_do_cell_t *cells,
    ngx_uint_t n, uint64_t epoch, ngx_do_cell_pt handler, void *data);

ngx_do_request_t *ngx_do_turn_request(ngx_do_turn_t *t);

/* the object's class->object_size bytes, kept until it is evicted */
void *ngx_do_turn_state(ngx_do_turn_t *t);

/* how long the object may idle before eviction (0: do_idle_timeout) */
void ngx_do_set_idle_timeout(ngx_do_turn_t *t, ngx_msec_t timeout);

/*
 * storage may drop the object's whole state this long after its last
 * write (0: never): for state that is worth nothing once old, such as a
 * full rate limiter bucket left behind by a restart
 */
void ngx_do_set_expire(ngx_do_turn_t *t, ngx_msec_t ttl);
ngx_do_namespace_t *ngx_do_turn_namespace(ngx_do_turn_t *t);
ngx_pool_t *ngx_do_turn_pool(ngx_do_turn_t *t);
ngx_log_t *ngx_do_turn_log(ngx_do_turn_t *t);

/* a query argument, URI-unescaped into the turn pool; NGX_DECLINED: absent */
ngx_int_t ngx_do_arg(ngx_do_turn_t *t, const char *name, ngx_str_t *value);

/* NGX_OK, NGX_DECLINED (no such key), NGX_ERROR (storage failed) */
ngx_int_t ngx_do_get(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value,
    uint64_t *version);

/* NGX_OK, NGX_DECLINED (key or value over the namespace limits) */
ngx_int_t ngx_do_put(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *value);

/* NGX_OK (the key existed), NGX_DECLINED (it did not), NGX_ERROR */
ngx_int_t ngx_do_delete(ngx_do_turn_t *t, ngx_str_t *key);

ngx_int_t ngx_do_delete_all(ngx_do_turn_t *t);

/* forgets every write the turn buffered so far: nothing will be committed */
void ngx_do_rollback(ngx_do_turn_t *t);

/*
 * committed keys in byte order (reverse: descending); fills an array of
 * ngx_do_kv_t allocated in the turn pool; NGX_OK or NGX_ERROR
 */
ngx_int_t ngx_do_list(ngx_do_turn_t *t, ngx_do_list_opts_t *opts,
    ngx_array_t **items);

/*
 * sets the reply (the body is copied); a non-zero etag adds ETag: "<etag>",
 * and NGX_DO_ETAG_COMMIT the version that the turn's own commit produced
 */
ngx_int_t ngx_do_reply(ngx_do_turn_t *t, ngx_uint_t status,
    const char *content_type, ngx_str_t *body, uint64_t etag);

/*
 * ngx_do_reply() with a body of len bytes that the handler writes at the
 * address returned, before it returns: the body is built once, in the
 * buffer the reply leaves in, not copied (for large replies; not with
 * ngx_do_ws_reply()).  NULL: out of memory.
 */
u_char *ngx_do_reply_buf(ngx_do_turn_t *t, ngx_uint_t status,
    const char *content_type, size_t len, uint64_t etag);

/*
 * A reply of jansson's JSON (compact), to the turn's call (parked NULL) or
 * to a parked call; takes root (NULL: out of memory, NGX_ERROR)
 */
struct json_t;
ngx_int_t ngx_do_reply_json(ngx_do_turn_t *t, ngx_do_request_t *parked,
    ngx_uint_t status, struct json_t *root, uint64_t etag);

/* a JSON error reply: {"error": msg} */
ngx_int_t ngx_do_reply_error(ngx_do_turn_t *t, ngx_uint_t status,
    const char *msg);


/*
 * Alarms: scheduled turns.  An object has any number of named alarms
 * (the empty name is Cloudflare's single alarm), each an absolute time in
 * milliseconds of the wall clock.  They are stored with the object's state
 * by the turn's commit (so a rolled back turn sets none), each on its own
 * (looking one up costs O(log n), and storage bounds how many there are),
 * and fire as turns of their own, through class->alarm, after restarts
 * too.  A failed alarm turn is retried from 2 s on, doubling, 6 times,
 * then dropped.  Deferred-durability classes have no alarms (NGX_ERROR).
 *
 * A name is at most NGX_DO_ALARM_MAX_NAME bytes longer than the
 * namespace's max_key: any key can name an alarm, with a prefix (the
 * store's TTLs are "ttl:K").
 */
#define NGX_DO_ALARM_MAX_NAME     2048

/* NGX_OK, NGX_DECLINED (name too long), NGX_ERROR */
ngx_int_t ngx_do_set_alarm(ngx_do_turn_t *t, ngx_str_t *name, uint64_t when);

/* NGX_OK with *when, NGX_DECLINED (not set), NGX_ERROR */
ngx_int_t ngx_do_get_alarm(ngx_do_turn_t *t, ngx_str_t *name, uint64_t *when);

/* NGX_OK (it was set), NGX_DECLINED (it was not), NGX_ERROR */
ngx_int_t ngx_do_delete_alarm(ngx_do_turn_t *t, ngx_str_t *name);

/* in an alarm turn: how many times this alarm failed before (0: first) */
ngx_uint_t ngx_do_alarm_retries(ngx_do_turn_t *t);

/* the wall clock in milliseconds, as alarms use it */
uint64_t ngx_do_now(void);

/* how long a caller waits for a reply (do_call_timeout) */
ngx_msec_t ngx_do_call_timeout(void);

/* within how long deferred state is stored (do_flush_interval) */
ngx_msec_t ngx_do_flush_interval(void);

/*
 * Errors that can repeat with every request go through
 * ngx_do_log_throttled(): at most one line a second of each kind for the
 * whole nginx, whichever worker logs first; the next line of the kind ends
 * with "(N similar errors suppressed)".  err as in ngx_log_error().
 *
 * NGX_DO_LOG_UNAVAILABLE  storage or an object did not answer: Redis
 *                         connections and commands, failed commits and
 *                         flushes, gates left without an answer
 * NGX_DO_LOG_FULL         storage refused a write: it is full
 * NGX_DO_LOG_BUSY         turns that lost every commit race
 * NGX_DO_LOG_REPLY        storage answered what it should not (damaged
 *                         data, script errors)
 * NGX_DO_LOG_HANDLER      class handlers and activations that failed
 * NGX_DO_LOG_IPC          messages not sent to another worker
 * NGX_DO_LOG_TIMEOUT      calls whose owner did not answer in time
 * NGX_DO_LOG_ALARM        alarms that could not run, or were skipped
 * NGX_DO_LOG_QUOTA        commits refused by a namespace quota
 * NGX_DO_LOG_FENCED       commits and flushes refused by their shard's
 *                         epoch (cluster mode)
 * NGX_DO_LOG_NODE         the channel between nodes: peers unreachable,
 *                         refused or full
 */
#define NGX_DO_LOG_UNAVAILABLE    0
#define NGX_DO_LOG_FULL           1
#define NGX_DO_LOG_BUSY           2
#define NGX_DO_LOG_REPLY          3
#define NGX_DO_LOG_HANDLER        4
#define NGX_DO_LOG_IPC            5
#define NGX_DO_LOG_TIMEOUT        6
#define NGX_DO_LOG_ALARM          7
#define NGX_DO_LOG_QUOTA          8
#define NGX_DO_LOG_FENCED         9
#define NGX_DO_LOG_NODE           10
#define NGX_DO_LOG_KINDS          11

void ngx_do_log_throttled(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    ngx_uint_t kind, const char *fmt, ...);

/*
 * Bytes from clients or storage (IDs, names, keys, replies) in a log line:
 * into buf, as many as its size holds (NGX_DO_LOG_ESCAPE_LEN: 64; a buf
 * of 4 * N + 3 bytes holds N), with control and non-ASCII bytes, the
 * backslash and the double quote as \xNN, and "..." when cut; the length
 * (print with "%*s").
 */
#define NGX_DO_LOG_ESCAPE_LEN     (4 * 64 + 3)

size_t ngx_do_log_escape(u_char *buf, size_t size, u_char *data,
    size_t len);


/*
 * Per-namespace counters of do_status, shared by all workers: what a gate
 * decided (do_limit, do_lock) and what the runtime did for the namespace.
 */
#define NGX_DO_STAT_CALLS            0
#define NGX_DO_STAT_LIMIT_PASSED     1
#define NGX_DO_STAT_LIMIT_DELAYED    2
#define NGX_DO_STAT_LIMIT_REJECTED   3
#define NGX_DO_STAT_LOCK_GRANTS      4
#define NGX_DO_STAT_LOCK_TIMEOUTS    5
#define NGX_DO_STAT_ACTIVATIONS      6
#define NGX_DO_STAT_EVICTIONS        7
#define NGX_DO_STAT_COMMIT_FAILURES  8
#define NGX_DO_STAT_N                9

void ngx_do_status_count(ngx_do_namespace_t *ns, ngx_uint_t counter);

/* a call of the namespace was answered usec after it was made */
void ngx_do_status_observe(ngx_do_namespace_t *ns, uint64_t usec);

/* a monotonic clock in microseconds, for durations */
uint64_t ngx_do_status_usec(void);


/*
 * Parked calls: a turn may leave its call unanswered (a lock waiter); a
 * later turn of the object answers it with ngx_do_reply_parked(), released
 * after that turn's commit like any reply.  A parked call that nobody
 * answers within timeout gets status and {"error": msg}.  Parked calls
 * keep the object in memory; they live in this worker only, so a restart
 * answers them 503.
 */
ngx_int_t ngx_do_park(ngx_do_turn_t *t, ngx_msec_t timeout,
    ngx_uint_t status, const char *msg);

/* the parked calls in arrival order: NULL starts, NULL ends */
ngx_do_request_t *ngx_do_parked_next(ngx_do_turn_t *t,
    ngx_do_request_t *prev);

ngx_uint_t ngx_do_parked_count(ngx_do_turn_t *t);

ngx_int_t ngx_do_reply_parked(ngx_do_turn_t *t, ngx_do_request_t *req,
    ngx_uint_t status, const char *content_type, ngx_str_t *body);

/* a query argument of any request of the turn (ngx_do_arg() for parked) */
ngx_int_t ngx_do_request_arg(ngx_do_turn_t *t, ngx_do_request_t *req,
    const char *name, ngx_str_t *value);



/*
 * WebSockets.  In a ws_open turn: accepts the connection (101); seq is the
 * object's sequence number the connection starts after (0 for a class
 * that numbers nothing).  Without it the turn's reply refuses the
 * handshake with its HTTP status.
 */
ngx_int_t ngx_do_ws_accept(ngx_do_turn_t *t, uint64_t seq);

/* a text message to the turn's own connection (ws_open, ws_message) */
ngx_int_t ngx_do_ws_reply(ngx_do_turn_t *t, ngx_str_t *text);

/*
 * closes the turn's own connection with code (1000-4999) and a reason of
 * at most 123 bytes, after what the turn sent it; in ws_open, instead of
 * accepting (the client sees the reason, which an HTTP refusal hides)
 */
ngx_int_t ngx_do_ws_reply_close(ngx_do_turn_t *t, ngx_uint_t code,
    const char *reason);

/*
 * A text message to every WebSocket of the object, in every worker, after
 * the turn's commit.  seq: the object's own sequence number for it, one
 * more than the last; each connection receives numbered messages in
 * order and each once, or is closed with 1013 (it missed one, or fell
 * behind) so that it can resume.  seq 0: not numbered (presence).
 */
ngx_int_t ngx_do_ws_broadcast(ngx_do_turn_t *t, ngx_str_t *text,
    uint64_t seq);

/* 1: conn (from a WebSocket turn) may still be open: its worker runs */
ngx_uint_t ngx_do_ws_alive(ngx_do_turn_t *t, uint64_t conn);


#endif /* _NGX_HTTP_DO_H_INCLUDED_ */
