
/*
 * The router: how a call reaches its object's owner and how its answer
 * comes back.  A call gets an id ((pid << 32) | counter) and waits in the
 * worker's pending tree with a timer; it goes to this worker's mailbox or
 * over a channel to the owner (ngx_do_id_owner(), from the shard map),
 * and the reply, local or from a channel, finds it again by its id.  Calls
 * without a request (ngx_http_do_notify()) wait in a queue for a posted
 * event.  While calls wait for other workers, a watch answers those whose
 * owner died.  The shell (ngx_http_do_module.c) builds calls from requests
 * and turns replies into responses; it knows nothing of the rest.
 *
 * In cluster mode the shard's route comes first (ngx_do_cluster_route()):
 * a shard another node holds gets the same bytes over the channel between
 * nodes (ngx_do_node.c), and its reply frame comes back to the call by its
 * id; a shard that nobody holds yet keeps the call (and its bytes) waiting,
 * asking again every NGX_DO_ROUTER_WAIT ms until its timeout.  A call that
 * arrives from another node is a relay: it takes the same path here, with
 * one more hop, and its reply (or failure) goes back as the answer frame.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_do.h"
#include "ngx_do_cluster.h"
#include "ngx_do_node.h"


#define NGX_DO_ROUTER_WATCH       250
#define NGX_DO_ROUTER_WAIT        20
#define NGX_DO_ROUTER_NOTICE_RETRY  50


/*
 * A call waiting for its reply, in the worker's pending tree: a request's
 * (in its pool), a WebSocket's (request NULL, ws_handler set, in memory
 * of its own, freed once answered), or a relay's (a call from another
 * node: request NULL, relay set, in memory of its own).  buf holds the
 * call's bytes while its shard has no holder (retry armed).
 */
typedef struct {
    ngx_rbtree_node_t          node;          /* key: the call id */
    ngx_http_request_t        *request;
    ngx_event_t                timer;
    ngx_event_t                retry;
    ngx_http_do_reply_pt       handler;
    ngx_do_router_ws_pt        ws_handler;
    ngx_do_node_reply_t       *relay;
    void                      *data;
    ngx_uint_t                 owner;
    ngx_uint_t                 shard;
    ngx_uint_t                 hops;          /* between nodes so far */
    ngx_do_namespace_t        *ns;
    u_char                    *buf;
    size_t                     len;
    uint64_t                   start;         /* usec, for do_status */
    ngx_uint_t                 back_src;      /* back: who waits for it */
    uint64_t                   back_id;
    unsigned                   in_tree:1;
    unsigned                   remote:1;      /* sent over a channel */
    unsigned                   back:1;        /* sent on (resend) */
} ngx_do_pending_t;


/*
 * A call without a request, waiting for the notify event: built here
 * (buf NULL until the event builds it), or its bytes from another node
 */
typedef struct {
    ngx_queue_t                queue;
    ngx_do_namespace_t        *ns;
    ngx_uint_t                 method;        /* kind NGX_DO_TURN_NOTICE */
    u_char                     id[NGX_DO_ID_LEN];
    ngx_str_t                  args;
    u_char                    *buf;
    size_t                     len;
    ngx_uint_t                 hops;
    ngx_msec_t                 start;
} ngx_do_router_notice_t;


static ngx_int_t ngx_do_router_send(ngx_http_request_t *r,
    ngx_do_namespace_t *ns, u_char *id, ngx_uint_t kind, ngx_uint_t method,
    ngx_str_t *args, ngx_str_t *if_match, ngx_str_t *if_none_match,
    ngx_str_t *body, ngx_msec_t timeout, ngx_http_do_reply_pt handler,
    void *data);
static ngx_int_t ngx_do_router_request(ngx_http_request_t *r, u_char *id,
    u_char *buf, size_t len, ngx_msec_t timeout,
    ngx_http_do_reply_pt handler, void *data);
static ngx_int_t ngx_do_router_pend(ngx_do_pending_t *pending, u_char *id,
    u_char *buf, size_t len, ngx_msec_t timeout, ngx_log_t *log);
static void ngx_do_router_route(ngx_do_pending_t *pending);
static void ngx_do_router_retry(ngx_event_t *ev);
static void ngx_do_router_wait(ngx_do_pending_t *pending, u_char *buf,
    size_t len);
static void ngx_do_router_back(ngx_do_pending_t *pending, u_char *buf,
    size_t len);
static void ngx_do_router_forward(ngx_do_pending_t *pending, ngx_uint_t peer,
    u_char *buf, size_t len);
static void ngx_do_router_node_answer(uint64_t id, void *data,
    ngx_uint_t status, u_char *buf, size_t len);
static void ngx_do_router_node(ngx_do_node_reply_t *reply, ngx_uint_t peer,
    ngx_uint_t hops, u_char *buf, size_t len);
static ngx_int_t ngx_do_router_notice(ngx_event_t *ev,
    ngx_do_router_notice_t *n);
static void ngx_do_router_answer(ngx_do_pending_t *pending,
    ngx_http_do_reply_t *reply);
static void ngx_do_router_notify_handler(ngx_event_t *ev);
static ngx_do_pending_t *ngx_do_router_find(uint64_t call_id);
static void ngx_do_router_fail(ngx_do_pending_t *pending,
    ngx_uint_t status);
static void ngx_do_router_timeout(ngx_event_t *ev);
static void ngx_do_router_cleanup(void *data);
static void ngx_do_router_unpend(ngx_do_pending_t *pending);
static void ngx_do_router_watch(ngx_event_t *ev);


static ngx_rbtree_t            ngx_do_router_pending;
static ngx_rbtree_node_t       ngx_do_router_sentinel;
static uint32_t                ngx_do_router_calls;
static ngx_uint_t              ngx_do_router_enabled;
static ngx_event_t             ngx_do_router_notify_event;
static ngx_uint_t              ngx_do_router_final;
static ngx_queue_t             ngx_do_router_notices;

/*
 * Calls sent over a channel and not answered yet, per owner worker, and
 * the PID each owner had when the watch last looked: a call whose owner
 * died (kill -9, a crash) is answered at once, not at its timeout.
 */
static ngx_uint_t             *ngx_do_router_remote;
static ngx_pid_t              *ngx_do_router_owner_pid;
static ngx_event_t             ngx_do_router_watch_event;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_router_dumb;


/* in a worker, once the runtime settings are known */
ngx_int_t
ngx_do_router_init(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_do_router_pending, &ngx_do_router_sentinel,
                    ngx_rbtree_insert_value);

    ngx_do_router_remote = ngx_calloc(ngx_do_runtime.workers
                                      * sizeof(ngx_uint_t), cycle->log);
    ngx_do_router_owner_pid = ngx_calloc(ngx_do_runtime.workers
                                         * sizeof(ngx_pid_t), cycle->log);
    if (ngx_do_router_remote == NULL || ngx_do_router_owner_pid == NULL) {
        return NGX_ERROR;
    }

    ngx_do_router_dumb.fd = (ngx_socket_t) -1;

    ngx_do_router_watch_event.handler = ngx_do_router_watch;
    ngx_do_router_watch_event.data = &ngx_do_router_dumb;
    ngx_do_router_watch_event.log = cycle->log;
    ngx_do_router_watch_event.cancelable = 1;

    ngx_do_router_notify_event.handler = ngx_do_router_notify_handler;
    ngx_do_router_notify_event.data = &ngx_do_router_dumb;
    ngx_do_router_notify_event.log = cycle->log;
    ngx_do_router_notify_event.cancelable = 1;
    ngx_queue_init(&ngx_do_router_notices);

    ngx_do_node_handle(NGX_DO_NODE_CALL, ngx_do_router_node);

    ngx_do_router_enabled = 1;

    return NGX_OK;
}


/* at exit, first: the last notices go out, the watch stops */
void
ngx_do_router_exit(ngx_cycle_t *cycle)
{
    ngx_queue_t             *q;
    ngx_do_router_notice_t  *n;

    if (!ngx_do_router_enabled) {
        return;
    }

    ngx_do_router_final = 1;
    ngx_do_router_notify_handler(&ngx_do_router_notify_event);

    while (!ngx_queue_empty(&ngx_do_router_notices)) {
        q = ngx_queue_head(&ngx_do_router_notices);
        ngx_queue_remove(q);
        n = ngx_queue_data(q, ngx_do_router_notice_t, queue);

        if (n->buf) {
            ngx_free(n->buf);
        }

        ngx_free(n);
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "do: a lock release was not sent at exit, its lease "
                      "ends it");
    }

    if (ngx_do_router_watch_event.timer_set) {
        ngx_del_timer(&ngx_do_router_watch_event);
    }
}


ngx_int_t
ngx_http_do_call(ngx_http_request_t *r, ngx_do_namespace_t *ns, u_char *id,
    ngx_uint_t method, ngx_str_t *args, ngx_msec_t timeout,
    ngx_http_do_reply_pt handler, void *data)
{
    ngx_str_t  empty;

    ngx_str_null(&empty);

    return ngx_do_router_send(r, ns, id, NGX_DO_TURN_GATE, method, args,
                              &empty, &empty, &empty, timeout, handler, data);
}


/*
 * A call without a request: kept in a queue and sent from a posted event,
 * so that a pool cleanup never runs another object's turn (and maybe other
 * requests' handlers) in the middle of freeing its request.
 */
ngx_int_t
ngx_http_do_notify(ngx_do_namespace_t *ns, u_char *id, ngx_uint_t method,
    ngx_str_t *args)
{
    ngx_do_router_notice_t  *n;

    if (!ngx_do_router_enabled) {
        return NGX_ERROR;
    }

    n = ngx_calloc(sizeof(ngx_do_router_notice_t) + args->len,
                   ngx_cycle->log);
    if (n == NULL) {
        return NGX_ERROR;
    }

    n->start = ngx_current_msec;
    n->ns = ns;
    n->method = method;
    ngx_memcpy(n->id, id, NGX_DO_ID_LEN);
    n->args.data = (u_char *) (n + 1);
    n->args.len = args->len;
    (void) ngx_do_cpymem(n->args.data, args->data, args->len);

    ngx_queue_insert_tail(&ngx_do_router_notices, &n->queue);
    ngx_do_status_count(ns, NGX_DO_STAT_CALLS);

    if (!ngx_do_router_notify_event.posted) {
        ngx_post_event(&ngx_do_router_notify_event, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_do_router_notify_handler(ngx_event_t *ev)
{
    ngx_queue_t             *q;
    ngx_do_router_notice_t  *n;

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    while (!ngx_queue_empty(&ngx_do_router_notices)) {
        q = ngx_queue_head(&ngx_do_router_notices);
        n = ngx_queue_data(q, ngx_do_router_notice_t, queue);

        if (ngx_do_router_notice(ev, n) == NGX_AGAIN) {
            /* in order: the next ones wait behind it */
            if (!ngx_do_router_final && !ev->timer_set) {
                ngx_add_timer(ev, NGX_DO_ROUTER_NOTICE_RETRY);
            }

            return;
        }

        ngx_queue_remove(q);

        if (n->buf) {
            ngx_free(n->buf);
        }

        ngx_free(n);
    }
}


/*
 * Sends one notice: NGX_OK (gone: n->buf was taken, or dropped),
 * NGX_AGAIN (it waits: no memory, a full queue, a shard without a holder,
 * a peer not reachable; dropped after do_call_timeout).
 */
static ngx_int_t
ngx_do_router_notice(ngx_event_t *ev, ngx_do_router_notice_t *n)
{
    u_char              *buf;
    size_t               len;
    ngx_int_t            rc;
    ngx_uint_t           owner, peer, route;
    ngx_do_call_wire_t  *w;

    if (n->buf == NULL) {
        n->buf = ngx_do_wire_call(n->ns, n->id, NGX_DO_TURN_NOTICE,
                                  n->method, &n->args, NULL, NULL, NULL,
                                  &n->len);
        if (n->buf == NULL) {
            return NGX_AGAIN;
        }
    }

    w = (ngx_do_call_wire_t *) n->buf;
    route = ngx_do_cluster_route(ngx_do_id_shard(w->id), &peer);

    if (route != NGX_DO_CLUSTER_HERE) {
        if (route == NGX_DO_CLUSTER_PEER
            && n->hops < NGX_DO_NODE_MAX_HOPS)
        {
            rc = ngx_do_node_message(peer, NGX_DO_NODE_CALL, n->hops + 1,
                                     n->buf, n->len);
            if (rc == NGX_OK) {
                ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ev->log, 0,
                               "do notice to object %08xD, to node %ui",
                               ngx_do_id_prefix(w->id), peer);
                n->buf = NULL;
                return NGX_OK;
            }
        }

        if (ngx_do_router_final
            || n->hops >= NGX_DO_NODE_MAX_HOPS
            || ngx_current_msec - n->start >= ngx_do_runtime.call_timeout)
        {
            ngx_do_log_throttled(NGX_LOG_WARN, ev->log, 0, NGX_DO_LOG_NODE,
                                 "do: a lock release found no holder of "
                                 "its shard, its lease ends it");
            return NGX_OK;
        }

        return NGX_AGAIN;
    }

    buf = n->buf;
    len = n->len;
    owner = ngx_do_id_owner(w->id);

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ev->log, 0,
                   "do notice to object %08xD, owner worker %ui",
                   ngx_do_id_prefix(w->id), owner);

    /* call id 0: no reply is awaited, any that comes is dropped */

    if (owner != ngx_worker && ngx_do_runtime.workers > 1
        && !ngx_exiting && !ngx_do_router_final)
    {
        rc = ngx_do_ipc_send(owner, NGX_DO_IPC_CALL, 0, buf, len);

        if (rc == NGX_BUSY) {
            /* the owner's queue is full: it must still be the owner */
            return NGX_AGAIN;
        }

        if (rc == NGX_OK) {
            n->buf = NULL;
            return NGX_OK;
        }

        /* the owner is gone: run it here, as calls do */
    }

    n->buf = NULL;
    ngx_do_wire_receive(ngx_worker, 0, buf, len, owner != ngx_worker);

    return NGX_OK;
}


/* a call of kind NGX_DO_TURN_HTTP, for do_pass */
ngx_int_t
ngx_do_router_dispatch(ngx_http_request_t *r, ngx_do_namespace_t *ns,
    u_char *id, ngx_uint_t method, ngx_str_t *args, ngx_str_t *if_match,
    ngx_str_t *if_none_match, ngx_str_t *body, ngx_msec_t timeout,
    ngx_http_do_reply_pt handler, void *data)
{
    return ngx_do_router_send(r, ns, id, NGX_DO_TURN_HTTP, method, args,
                              if_match, if_none_match, body, timeout, handler,
                              data);
}


/*
 * Builds the call, parks it in the pending tree with its timeout, and hands
 * it to the owner: this worker's mailbox or a channel.  The handler runs
 * once, maybe before this returns (a local owner answers at once).
 */
static ngx_int_t
ngx_do_router_send(ngx_http_request_t *r, ngx_do_namespace_t *ns,
    u_char *id, ngx_uint_t kind, ngx_uint_t method, ngx_str_t *args,
    ngx_str_t *if_match, ngx_str_t *if_none_match, ngx_str_t *body,
    ngx_msec_t timeout, ngx_http_do_reply_pt handler, void *data)
{
    u_char  *buf;
    size_t   len;

    buf = ngx_do_wire_call(ns, id, kind, method, args, if_match,
                           if_none_match, body, &len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    return ngx_do_router_request(r, id, buf, len, timeout, handler, data);
}


/* a WebSocket's handshake: a call of its request, with member and conn */
ngx_int_t
ngx_do_router_ws_open(ngx_http_request_t *r, ngx_do_namespace_t *ns,
    u_char *id, ngx_str_t *member, uint64_t conn,
    ngx_http_do_reply_pt handler, void *data)
{
    u_char  *buf;
    size_t   len;

    buf = ngx_do_wire_call_ws(ns, id, NGX_DO_TURN_WS_OPEN, NGX_HTTP_GET,
                              &r->args, member, conn, NULL, &len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    return ngx_do_router_request(r, id, buf, len, 0, handler, data);
}


/* a built call that a request waits for: pending as long as its pool */
static ngx_int_t
ngx_do_router_request(ngx_http_request_t *r, u_char *id, u_char *buf,
    size_t len, ngx_msec_t timeout, ngx_http_do_reply_pt handler,
    void *data)
{
    ngx_pool_cleanup_t  *cln;
    ngx_do_pending_t    *pending;

    pending = ngx_pcalloc(r->pool, sizeof(ngx_do_pending_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (pending == NULL || cln == NULL) {
        ngx_free(buf);
        return NGX_ERROR;
    }

    pending->request = r;
    pending->handler = handler;
    pending->data = data;

    cln->handler = ngx_do_router_cleanup;
    cln->data = pending;

    return ngx_do_router_pend(pending, id, buf, len, timeout,
                              r->connection->log);
}


/*
 * A WebSocket's message or close: no request waits, the handler does,
 * exactly once (with failed set after do_call_timeout or when the owner's
 * channel is full or the owner died).
 */
ngx_int_t
ngx_do_router_ws(ngx_do_namespace_t *ns, u_char *id, ngx_uint_t kind,
    ngx_uint_t method, ngx_str_t *member, uint64_t conn, ngx_str_t *body,
    ngx_log_t *log, ngx_do_router_ws_pt handler, void *data)
{
    u_char            *buf;
    size_t             len;
    ngx_do_pending_t  *pending;

    pending = ngx_calloc(sizeof(ngx_do_pending_t), log);
    if (pending == NULL) {
        return NGX_ERROR;
    }

    buf = ngx_do_wire_call_ws(ns, id, kind, method, NULL, member, conn, body,
                              &len);
    if (buf == NULL) {
        ngx_free(pending);
        return NGX_ERROR;
    }

    pending->ws_handler = handler;
    pending->data = data;

    return ngx_do_router_pend(pending, id, buf, len, 0, log);
}


/*
 * Parks a built call in the pending tree with its timeout and hands it to
 * the owner: this worker's mailbox or a channel.  The handler runs once,
 * maybe before this returns (a local owner answers at once).
 */
static ngx_int_t
ngx_do_router_pend(ngx_do_pending_t *pending, u_char *id, u_char *buf,
    size_t len, ngx_msec_t timeout, ngx_log_t *log)
{
    uint64_t              call_id;
    ngx_do_call_wire_t   *w;
    ngx_do_namespace_t  **nss;

    if (timeout == 0) {
        timeout = ngx_do_runtime.call_timeout;
    }

    w = (ngx_do_call_wire_t *) buf;
    call_id = ((uint64_t) ngx_pid << 32) | ++ngx_do_router_calls;

    nss = ngx_do_runtime.namespaces->elts;
    pending->ns = nss[w->ns];
    pending->start = ngx_do_status_usec();

    if (pending->relay == NULL && !pending->back) {
        /* counted once, by the node that accepted it */
        ngx_do_status_count(pending->ns, NGX_DO_STAT_CALLS);
    }

    pending->owner = ngx_do_id_owner(id);
    pending->shard = ngx_do_id_shard(id);
    pending->buf = buf;
    pending->len = len;

    pending->node.key = (ngx_rbtree_key_t) call_id;
    ngx_rbtree_insert(&ngx_do_router_pending, &pending->node);
    pending->in_tree = 1;

    pending->timer.handler = ngx_do_router_timeout;
    pending->timer.data = pending;
    pending->timer.log = log;

    pending->retry.handler = ngx_do_router_retry;
    pending->retry.data = pending;
    pending->retry.log = log;
    pending->retry.cancelable = 1;

    /*
     * The timer is armed before the call is handed over: a local owner may
     * answer at once, and the answer may finalize the request and free its
     * pool, call included.  Nothing of the call is read after the handover.
     */
    ngx_add_timer(&pending->timer, timeout);

    ngx_do_router_route(pending);

    return NGX_OK;
}


/*
 * Hands the call over where its shard's route says: this node (this
 * worker's mailbox or a channel to the owner worker), another node, or,
 * while the shard has no holder, nowhere yet (it asks again later)
 */
static void
ngx_do_router_route(ngx_do_pending_t *pending)
{
    u_char              *buf;
    size_t               len;
    uint64_t             call_id;
    ngx_int_t            rc;
    ngx_uint_t           local, peer, route;
    ngx_log_t           *log;

    buf = pending->buf;
    len = pending->len;
    call_id = (uint64_t) pending->node.key;
    log = pending->timer.log;

    route = ngx_do_cluster_route(pending->shard, &peer);

    if (route == NGX_DO_CLUSTER_WAIT) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "do call %uL: shard %ui has no holder, waiting",
                       call_id, pending->shard);
        ngx_add_timer(&pending->retry, NGX_DO_ROUTER_WAIT);
        return;
    }

    pending->buf = NULL;

    if (route == NGX_DO_CLUSTER_PEER) {
        ngx_do_router_forward(pending, peer, buf, len);
        return;
    }

    /*
     * A worker that is being replaced runs calls itself: the owner of its
     * generation may exit with the call unread, and conditional commits
     * keep such a turn safe beside the new owner.
     */
    local = (pending->owner == ngx_worker || ngx_do_runtime.workers == 1
             || ngx_exiting);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, log, 0,
                   "do call %uL: %s to object %08xD, %s worker %ui",
                   call_id,
                   ngx_do_turn_kind_name(((ngx_do_call_wire_t *) buf)->kind),
                   ngx_do_id_prefix(((ngx_do_call_wire_t *) buf)->id),
                   local ? "here, owner" : "forwarded to", pending->owner);

    if (!local) {
        rc = ngx_do_ipc_send(pending->owner, NGX_DO_IPC_CALL, call_id, buf,
                             len);

        if (rc == NGX_OK) {
            ngx_do_stats->forwarded++;
            pending->remote = 1;

            if (ngx_do_router_remote[pending->owner]++ == 0) {
                /*
                 * The owner's PID as the first call waits for it (a PID
                 * noted while nothing waited may be of a worker that
                 * died since: its successor's would look like the death
                 * of this call's owner)
                 */
                ngx_do_router_owner_pid[pending->owner] =
                                    ngx_do_handover_peer(pending->owner, 0);
            }

            if (!ngx_do_router_watch_event.timer_set) {
                ngx_add_timer(&ngx_do_router_watch_event,
                              NGX_DO_ROUTER_WATCH);
            }

            return;
        }

        if (rc == NGX_BUSY) {
            ngx_free(buf);
            ngx_do_router_fail(pending, NGX_HTTP_SERVICE_UNAVAILABLE);
            return;
        }

        ngx_do_log_throttled(NGX_LOG_WARN, log, 0, NGX_DO_LOG_IPC,
                             "do: owner worker %ui is unreachable, "
                             "running the call here", pending->owner);
    }

    ngx_do_wire_receive(ngx_worker, call_id, buf, len,
                        pending->owner != ngx_worker);
}


/* a call whose shard had no holder asks again */
static void
ngx_do_router_retry(ngx_event_t *ev)
{
    ngx_do_router_route(ev->data);
}


/*
 * The call goes to the node that holds its shard, one hop more; a call
 * that made its last hop finds the shard moving (503).
 */
static void
ngx_do_router_forward(ngx_do_pending_t *pending, ngx_uint_t peer,
    u_char *buf, size_t len)
{
    uint64_t   call_id;
    ngx_int_t  rc;

    call_id = (uint64_t) pending->node.key;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pending->timer.log, 0,
                   "do call %uL: to node %ui, hop %ui", call_id, peer,
                   pending->hops + 1);

    if (pending->hops >= NGX_DO_NODE_MAX_HOPS) {
        ngx_free(buf);
        ngx_do_log_throttled(NGX_LOG_WARN, pending->timer.log, 0,
                             NGX_DO_LOG_NODE, "do: a call made %ui hops "
                             "between nodes, its shard is moving",
                             pending->hops);
        ngx_do_router_fail(pending, NGX_HTTP_SERVICE_UNAVAILABLE);
        return;
    }

    rc = ngx_do_node_request(peer, NGX_DO_NODE_CALL, call_id,
                             pending->hops + 1, buf, len,
                             ngx_do_router_node_answer, NULL);

    if (rc == NGX_OK) {
        return;
    }

    if (rc == NGX_DECLINED) {
        /*
         * The holder cannot be reached now (it stopped or died, and the
         * placement does not know yet): nothing was sent, so the call
         * waits for the shard's next holder as when it has none
         */
        ngx_do_router_wait(pending, buf, len);
        return;
    }

    ngx_free(buf);
    ngx_do_router_fail(pending, (rc == NGX_BUSY)
                                ? NGX_HTTP_SERVICE_UNAVAILABLE
                                : NGX_HTTP_BAD_GATEWAY);
}


/* the call keeps its bytes and asks its shard's route again later */
static void
ngx_do_router_wait(ngx_do_pending_t *pending, u_char *buf, size_t len)
{
    pending->buf = buf;
    pending->len = len;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pending->timer.log, 0,
                   "do call %uL: the holder of shard %ui is unreachable, "
                   "waiting", (uint64_t) pending->node.key, pending->shard);

    ngx_add_timer(&pending->retry, NGX_DO_ROUTER_WAIT);
}


/* the answer of another node to a call: its reply, or a failure */
static void
ngx_do_router_node_answer(uint64_t id, void *data, ngx_uint_t status,
    u_char *buf, size_t len)
{
    ngx_do_pending_t  *pending;

    if (status == 0) {
        ngx_do_router_deliver(id, buf, len);
        return;
    }

    pending = ngx_do_router_find(id);

    if (status == NGX_DO_NODE_UNSENT) {
        /* its connection failed before it was written: it waits again */
        if (pending && pending->buf == NULL) {
            ngx_do_router_wait(pending, buf, len);

        } else {
            ngx_free(buf);
        }

        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do call %uL: node answered %ui", id, status);

    if (pending) {
        ngx_do_router_fail(pending, status);
    }
}


/*
 * A call from another node (a request: its answer goes back through
 * reply; a message: a notice, no answer), run as if it arrived here
 */
static void
ngx_do_router_node(ngx_do_node_reply_t *reply, ngx_uint_t peer,
    ngx_uint_t hops, u_char *buf, size_t len)
{
    ngx_do_pending_t        *pending;
    ngx_do_call_wire_t      *w;
    ngx_do_router_notice_t  *n;

    w = (ngx_do_call_wire_t *) buf;

    if (!ngx_do_router_enabled || len < sizeof(ngx_do_call_wire_t)
        || w->ns >= ngx_do_runtime.namespaces->nelts)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "do: malformed call of %uz bytes from node %ui",
                      len, peer);
        ngx_free(buf);

        if (reply) {
            ngx_do_node_reply(reply, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL,
                              0);
        }

        return;
    }

    if (reply == NULL) {
        n = ngx_calloc(sizeof(ngx_do_router_notice_t), ngx_cycle->log);
        if (n == NULL) {
            ngx_free(buf);
            return;
        }

        n->start = ngx_current_msec;
        n->buf = buf;
        n->len = len;
        n->hops = hops;
        ngx_queue_insert_tail(&ngx_do_router_notices, &n->queue);

        if (!ngx_do_router_notify_event.posted) {
            ngx_post_event(&ngx_do_router_notify_event, &ngx_posted_events);
        }

        return;
    }

    pending = ngx_calloc(sizeof(ngx_do_pending_t), ngx_cycle->log);
    if (pending == NULL) {
        ngx_free(buf);
        ngx_do_node_reply(reply, NGX_HTTP_SERVICE_UNAVAILABLE, NULL, 0);
        return;
    }

    pending->relay = reply;
    pending->hops = hops;

    (void) ngx_do_router_pend(pending, w->id, buf, len, 0, ngx_cycle->log);
}


/*
 * Cluster mode: a call that an object of this worker cannot run (its
 * shard is no longer this node's) goes where the shard is now, as a call
 * of this worker; its reply, or failure, goes to the worker src as the
 * owner's answer to its call_id.  NGX_OK: buf is taken.
 */
ngx_int_t
ngx_do_router_resend(ngx_uint_t src, uint64_t call_id, u_char *buf,
    size_t len)
{
    ngx_do_pending_t  *pending;

    if (!ngx_do_router_enabled || ngx_do_router_final || ngx_exiting
        || len < sizeof(ngx_do_call_wire_t))
    {
        return NGX_DECLINED;
    }

    pending = ngx_calloc(sizeof(ngx_do_pending_t), ngx_cycle->log);
    if (pending == NULL) {
        return NGX_DECLINED;
    }

    pending->back = 1;
    pending->back_src = src;
    pending->back_id = call_id;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do call %uL of worker %ui: its shard moved, sent on",
                   call_id, src);

    (void) ngx_do_router_pend(pending, ((ngx_do_call_wire_t *) buf)->id, buf,
                              len, 0, ngx_cycle->log);

    return NGX_OK;
}


/* the answer of a call sent on goes to the worker that waits for it */
static void
ngx_do_router_back(ngx_do_pending_t *pending, u_char *buf, size_t len)
{
    ngx_do_wire_deliver(pending->back_src, pending->back_id, buf, len);
    ngx_free(pending);
}


/* a reply came back for a call this worker sent; takes ownership of buf */
void
ngx_do_router_deliver(uint64_t call_id, u_char *buf, size_t len)
{
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
    ngx_pool_cleanup_t    *cln;
    ngx_do_pending_t      *pending;
    ngx_do_reply_wire_t   *w;
    ngx_http_do_reply_t    reply;

    pending = ngx_do_router_find(call_id);

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do call %uL: reply of %uz bytes%s", call_id, len,
                   pending ? "" : " dropped, nobody waits");

    if (pending == NULL) {
        /* the request timed out or went away meanwhile */
        ngx_free(buf);
        return;
    }

    ngx_do_router_unpend(pending);

    if (pending->relay) {
        /* the bytes go back to the node that sent the call, as they are */
        ngx_do_node_reply(pending->relay, 0, buf, len);
        ngx_free(pending);
        return;
    }

    if (pending->back) {
        ngx_do_router_back(pending, buf, len);
        return;
    }

    ngx_do_status_observe(pending->ns,
                          ngx_do_status_usec() - pending->start);

    ngx_memzero(&reply, sizeof(ngx_http_do_reply_t));

    if (ngx_do_wire_parse(buf, len, &w, &reply.content_type, &reply.body)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, pending->timer.log, 0,
                      "do: malformed reply of %uz bytes dropped", len);
        ngx_free(buf);
        ngx_do_router_fail(pending, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    reply.status = w->status;
    reply.owner = w->owner;
    reply.etag = w->etag;
    reply.activation = w->activation;

    if (pending->request == NULL) {
        ngx_do_router_answer(pending, &reply);
        ngx_free(buf);
        return;
    }

    r = pending->request;
    c = r->connection;

    /* the reply lives as long as the request: no copy of the body */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_free(buf);
        ngx_do_router_fail(pending, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_free;
    cln->data = buf;

    pending->handler(r, pending->data, &reply);
    ngx_http_run_posted_requests(c);
}


/* a WebSocket's call is answered: its handler, then the call is freed */
static void
ngx_do_router_answer(ngx_do_pending_t *pending, ngx_http_do_reply_t *reply)
{
    pending->ws_handler(pending->data, reply);
    ngx_free(pending);
}


static ngx_do_pending_t *
ngx_do_router_find(uint64_t call_id)
{
    ngx_rbtree_key_t    key;
    ngx_rbtree_node_t  *node;

    key = (ngx_rbtree_key_t) call_id;
    node = ngx_do_router_pending.root;

    while (node != ngx_do_router_pending.sentinel && node->key != key) {
        node = (key < node->key) ? node->left : node->right;
    }

    return (node == ngx_do_router_pending.sentinel)
           ? NULL : (ngx_do_pending_t *) node;
}


/* answers a call that got no reply: handler sees reply->failed */
static void
ngx_do_router_fail(ngx_do_pending_t *pending, ngx_uint_t status)
{
    ngx_connection_t     *c;
    ngx_http_request_t   *r;
    ngx_http_do_reply_t   reply;

    ngx_do_router_unpend(pending);

    if (pending->relay) {
        ngx_do_node_reply(pending->relay, status, NULL, 0);
        ngx_free(pending);
        return;
    }

    if (pending->back) {
        ngx_do_wire_error(pending->back_src, pending->back_id, status,
                          status == NGX_HTTP_GATEWAY_TIME_OUT
                          ? "the call timed out" : NGX_DO_MOVED);
        ngx_free(pending);
        return;
    }

    ngx_memzero(&reply, sizeof(ngx_http_do_reply_t));
    reply.status = status;
    reply.owner = pending->owner;
    reply.failed = 1;

    if (pending->request == NULL) {
        ngx_do_router_answer(pending, &reply);
        return;
    }

    r = pending->request;
    c = r->connection;

    pending->handler(r, pending->data, &reply);
    ngx_http_run_posted_requests(c);
}


static void
ngx_do_router_timeout(ngx_event_t *ev)
{
    ngx_do_pending_t  *pending;

    pending = ev->data;

    ngx_do_log_throttled(NGX_LOG_ERR, ev->log, 0, NGX_DO_LOG_TIMEOUT,
                         "do: call to owner worker %ui timed out",
                         pending->owner);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "do call %uL: timed out", (uint64_t) pending->node.key);

    ngx_do_stats->timeouts++;

    ngx_do_router_fail(pending, NGX_HTTP_GATEWAY_TIME_OUT);
}


static void
ngx_do_router_cleanup(void *data)
{
    ngx_do_router_unpend(data);
}


/* the call waits no more: out of the pending tree, its timer stopped */
static void
ngx_do_router_unpend(ngx_do_pending_t *pending)
{
    if (pending->in_tree) {
        ngx_rbtree_delete(&ngx_do_router_pending, &pending->node);
        pending->in_tree = 0;
    }

    if (pending->remote) {
        ngx_do_router_remote[pending->owner]--;
        pending->remote = 0;
    }

    if (pending->timer.timer_set) {
        ngx_del_timer(&pending->timer);
    }

    if (pending->retry.timer_set) {
        ngx_del_timer(&pending->retry);
    }

    if (pending->buf) {
        /* it waited for a holder of its shard */
        ngx_free(pending->buf);
        pending->buf = NULL;
    }
}


/*
 * While calls wait for other workers: an owner whose PID changed or that
 * is gone died with them, and they are answered 502 now.
 */
static void
ngx_do_router_watch(ngx_event_t *ev)
{
    uint64_t              *ids;
    ngx_pid_t              pid;
    ngx_uint_t             w, n, waiting;
    ngx_rbtree_node_t     *node;
    ngx_do_pending_t      *pending;

    waiting = 0;

    for (w = 0; w < ngx_do_runtime.workers; w++) {
        if (ngx_do_router_remote[w] == 0) {
            /* nothing waits for it: its first call notes its PID */
            continue;
        }

        pid = ngx_do_handover_peer(w, 1);

        if (pid == ngx_do_router_owner_pid[w]) {
            waiting = 1;
            continue;
        }

        if (ngx_do_router_owner_pid[w] == 0) {
            ngx_do_router_owner_pid[w] = pid;
            waiting = 1;
            continue;
        }

        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "do: owner worker %ui (pid %P) exited, answering %ui "
                      "calls that wait for it", w, ngx_do_router_owner_pid[w],
                      ngx_do_router_remote[w]);

        ngx_do_router_owner_pid[w] = pid;

        /*
         * The ids first, in one pass: answering a call runs its handler,
         * which may end other calls and change the tree.
         */
        ids = ngx_alloc(ngx_do_router_remote[w] * sizeof(uint64_t), ev->log);
        if (ids == NULL) {
            waiting = 1;
            continue;
        }

        n = 0;

        for (node = ngx_rbtree_min(ngx_do_router_pending.root,
                                   ngx_do_router_pending.sentinel);
             node && n < ngx_do_router_remote[w];
             node = ngx_rbtree_next(&ngx_do_router_pending, node))
        {
            pending = (ngx_do_pending_t *) node;

            if (pending->remote && pending->owner == w) {
                ids[n++] = (uint64_t) node->key;
            }
        }

        while (n) {
            pending = ngx_do_router_find(ids[--n]);

            if (pending && pending->remote && pending->owner == w) {
                ngx_do_router_fail(pending, NGX_HTTP_BAD_GATEWAY);
            }
        }

        ngx_free(ids);
    }

    if (waiting && !ngx_exiting) {
        ngx_add_timer(ev, NGX_DO_ROUTER_WATCH);
    }
}


void
ngx_do_router_ipc(ngx_uint_t type, ngx_uint_t src, uint64_t call_id,
    u_char *buf, size_t len)
{
    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do ipc received: %s %uL from worker %ui, %uz bytes",
                   type == NGX_DO_IPC_REPLY ? "reply" : "call", call_id, src,
                   len);

    if (type == NGX_DO_IPC_REPLY) {
        ngx_do_router_deliver(call_id, buf, len);
        return;
    }

    if (type == NGX_DO_IPC_FANOUT) {
        ngx_do_fanout_receive(src, buf, len);
        return;
    }

    ngx_do_wire_receive(src, call_id, buf, len, 0);
}


/*
 * A message that could not leave: the owner's channel is gone.  A call of
 * ours then runs here (its commit is conditional); a reply is lost, and
 * its requester gets 504 when its timer fires.
 */
void
ngx_do_router_bounce(ngx_uint_t type, ngx_uint_t src, uint64_t call_id,
    u_char *buf, size_t len)
{
    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do ipc bounced: %s %uL for worker %ui",
                   type == NGX_DO_IPC_CALL ? "call, runs here" : "reply, lost",
                   call_id, src);

    if (type == NGX_DO_IPC_CALL) {
        ngx_do_wire_receive(ngx_worker, call_id, buf, len, 1);
        return;
    }

    ngx_free(buf);
}
