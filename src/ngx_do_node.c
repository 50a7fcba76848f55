
/*
 * The channel between nodes (its interface: ngx_do_node.h): the peers as
 * this worker sees them, its connections (accepted on listen=, or made to
 * a peer on first use, again after a backoff when one failed), requests
 * and their answers, replies, and the handlers by type.  The bytes on a
 * connection are ngx_do_node_stream.c's; the counters
 * ngx_do_node_status.c's.
 *
 * Requests go out on the worker's own connection to a peer and their
 * replies come back on it; requests from peers come in on connections
 * they made, and the replies go back there.  A request waits in its
 * connection's tree of calls until its reply; a connection that closes
 * answers those still there with 502.  A reply handle outlives its
 * connection: answering it then only frees it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_do_node_conn.h"


#define NGX_DO_NODE_HANDSHAKE     5000        /* ms to finish it */
#define NGX_DO_NODE_DRAIN         2000        /* ms to wait for a GOAWAY */
#define NGX_DO_NODE_DIAL          1000        /* ms between dials */
#define NGX_DO_NODE_BACKOFF_MIN   50
#define NGX_DO_NODE_BACKOFF_MAX   2000


struct ngx_do_node_reply_s {
    ngx_queue_t                queue;         /* in its connection's */
    ngx_do_node_conn_t        *conn;          /* NULL: it is gone */
    uint64_t                   id;
};


/* a peer as this worker sees it */
typedef struct {
    ngx_do_node_conn_t        *conn;          /* outgoing, NULL: none */
    ngx_msec_t                 retry_at;      /* no new one before */
    ngx_msec_t                 backoff;
} ngx_do_node_peer_t;


static void ngx_do_node_accept(ngx_connection_t *c);
static ngx_do_node_conn_t *ngx_do_node_conn(ngx_connection_t *c,
    ngx_uint_t peer, ngx_uint_t incoming);
static ngx_do_node_conn_t *ngx_do_node_connect(ngx_uint_t peer);
static void ngx_do_node_connected(ngx_event_t *wev);
static ngx_int_t ngx_do_node_send(ngx_uint_t peer, ngx_uint_t kind,
    ngx_uint_t type, uint64_t id, ngx_uint_t hops, u_char *buf, size_t len,
    ngx_do_node_answer_pt handler, void *data);
static void ngx_do_node_backoff(ngx_do_node_peer_t *p);
static void ngx_do_node_timeout(ngx_event_t *ev);
static void ngx_do_node_dial(ngx_event_t *ev);
static ngx_uint_t ngx_do_node_stale(ngx_do_node_conn_t *nc, ngx_uint_t peer);
static ngx_do_node_call_t *ngx_do_node_call(ngx_do_node_conn_t *nc,
    uint64_t id);
static void ngx_do_node_goaway(ngx_do_node_conn_t *nc);
static void ngx_do_node_drained(ngx_event_t *ev);


ngx_do_node_key_t              ngx_do_node_secret;

static ngx_uint_t              ngx_do_node_enabled;
static ngx_do_node_peer_t      ngx_do_node_peers[NGX_DO_CLUSTER_PEERS];
static ngx_queue_t             ngx_do_node_conns;
static ngx_do_node_handler_pt  ngx_do_node_handlers[NGX_DO_NODE_TYPES];
static ngx_event_t             ngx_do_node_dial_event;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_node_dumb;


/*
 * do_cluster listen=: a listening socket that every worker accepts on,
 * as nginx's stream and mail modules make theirs, and the status zone
 */
ngx_int_t
ngx_do_node_listen(ngx_conf_t *cf, ngx_addr_t *addr)
{
    ngx_listening_t  *ls;

    ls = ngx_create_listening(cf, addr->sockaddr, addr->socklen);
    if (ls == NULL) {
        return NGX_ERROR;
    }

    ls->addr_ntop = 1;
    ls->handler = ngx_do_node_accept;
    ls->pool_size = 256;
    ls->logp = &cf->cycle->new_log;
    ls->log.data = &ls->addr_text;
    ls->log.handler = ngx_accept_log_error;
    ls->keepalive = 1;

    return ngx_do_node_status_zone(cf);
}


ngx_int_t
ngx_do_node_init_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t  i;

    if (ngx_do_cluster == NULL) {
        return NGX_OK;
    }

    ngx_queue_init(&ngx_do_node_conns);

    for (i = 0; i < NGX_DO_CLUSTER_PEERS; i++) {
        ngx_do_node_peers[i].conn = NULL;
        ngx_do_node_peers[i].retry_at = 0;
        ngx_do_node_peers[i].backoff = 0;
    }

    ngx_do_node_status_init_worker();

    ngx_do_node_key(&ngx_do_node_secret, ngx_do_runtime.secret, 32);
    ngx_do_node_enabled = 1;

    ngx_do_node_dumb.fd = (ngx_socket_t) -1;
    ngx_do_node_dial_event.handler = ngx_do_node_dial;
    ngx_do_node_dial_event.data = &ngx_do_node_dumb;
    ngx_do_node_dial_event.log = cycle->log;
    ngx_do_node_dial_event.cancelable = 1;
    ngx_add_timer(&ngx_do_node_dial_event, NGX_DO_NODE_DIAL);

    return NGX_OK;
}


/* a connection made to the node a peer's slot named before */
static ngx_uint_t
ngx_do_node_stale(ngx_do_node_conn_t *nc, ngx_uint_t peer)
{
    ngx_str_t  name, addr;

    if (ngx_do_cluster_peer(peer, &name, &addr) != NGX_OK) {
        return 0;
    }

    return name.len != nc->name_len
           || ngx_strncmp(name.data, nc->name, name.len) != 0;
}


/*
 * Every NGX_DO_NODE_DIAL ms: a connection to each live peer that has none
 * (and whose backoff ended), so that the first call finds it ready and
 * do_status tells a peer that cannot be reached before any call does.
 */
static void
ngx_do_node_dial(ngx_event_t *ev)
{
    ngx_str_t            name, addr;
    ngx_uint_t           i;
    ngx_do_node_peer_t  *p;

    if (!ngx_do_node_enabled || ngx_exiting) {
        return;
    }

    for (i = 0; i < NGX_DO_CLUSTER_PEERS; i++) {
        p = &ngx_do_node_peers[i];

        if (p->conn || i == ngx_do_cluster_self()
            || (ngx_msec_int_t) (p->retry_at - ngx_current_msec) > 0
            || ngx_do_cluster_peer(i, &name, &addr) != NGX_OK)
        {
            continue;
        }

        p->conn = ngx_do_node_connect(i);

        if (p->conn == NULL) {
            ngx_do_node_backoff(p);
        }
    }

    ngx_add_timer(ev, NGX_DO_NODE_DIAL);
}


/* at exit: what is queued leaves if it can, then every connection closes */
void
ngx_do_node_exit_worker(void)
{
    ngx_queue_t         *q;
    ngx_do_node_conn_t  *nc;

    if (!ngx_do_node_enabled) {
        return;
    }

    ngx_do_node_enabled = 0;

    if (ngx_do_node_dial_event.timer_set) {
        ngx_del_timer(&ngx_do_node_dial_event);
    }

    while (!ngx_queue_empty(&ngx_do_node_conns)) {
        q = ngx_queue_head(&ngx_do_node_conns);
        nc = ngx_queue_data(q, ngx_do_node_conn_t, queue);

        if (nc->state == NGX_DO_NODE_READY) {
            (void) ngx_do_node_flush(nc);
        }

        ngx_do_node_close(nc, 0);
    }

    ngx_explicit_memzero(&ngx_do_node_secret, sizeof(ngx_do_node_key_t));
}


void
ngx_do_node_handle(ngx_uint_t type, ngx_do_node_handler_pt handler)
{
    if (type < NGX_DO_NODE_TYPES) {
        ngx_do_node_handlers[type] = handler;
    }
}


/* a peer connected: it has NGX_DO_NODE_HANDSHAKE to prove itself */
static void
ngx_do_node_accept(ngx_connection_t *c)
{
    ngx_do_node_conn_t  *nc;

    if (!ngx_do_node_enabled) {
        ngx_close_connection(c);
        ngx_destroy_pool(c->pool);
        return;
    }

    nc = ngx_do_node_conn(c, NGX_DO_CLUSTER_NONE, 1);
    if (nc == NULL) {
        ngx_close_connection(c);
        ngx_destroy_pool(c->pool);
        return;
    }

    nc->addr_len = ngx_sock_ntop(c->sockaddr, c->socklen, nc->addr,
                                 sizeof(nc->addr), 1);

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, c->log, 0,
                   "do node: connection from %V", &c->addr_text);

    nc->state = NGX_DO_NODE_WAIT_HELLO;
    ngx_add_timer(&nc->timer, NGX_DO_NODE_HANDSHAKE);

    /* when the worker begins to exit, nginx tells it (c->close) */
    c->idle = 1;

    ngx_do_node_read(c->read);
}


/* the state of a connection, either way; NULL: no memory */
static ngx_do_node_conn_t *
ngx_do_node_conn(ngx_connection_t *c, ngx_uint_t peer, ngx_uint_t incoming)
{
    ngx_do_node_conn_t  *nc;

    nc = ngx_calloc(sizeof(ngx_do_node_conn_t), ngx_cycle->log);
    if (nc == NULL) {
        return NULL;
    }

    nc->rbuf = ngx_alloc(NGX_DO_NODE_BUF, ngx_cycle->log);
    if (nc->rbuf == NULL) {
        ngx_free(nc);
        return NULL;
    }

    nc->c = c;
    nc->peer = peer;
    nc->incoming = incoming;

    ngx_queue_init(&nc->out);
    ngx_queue_init(&nc->replies);
    ngx_rbtree_init(&nc->calls, &nc->sentinel, ngx_rbtree_insert_value);

    nc->post.handler = ngx_do_node_kick;
    nc->post.data = nc;
    nc->post.log = ngx_cycle->log;

    nc->timer.handler = ngx_do_node_timeout;
    nc->timer.data = c;
    nc->timer.log = ngx_cycle->log;
    nc->timer.cancelable = 1;

    c->data = nc;
    c->read->handler = ngx_do_node_read;
    c->write->handler = ngx_do_node_write;

    ngx_queue_insert_tail(&ngx_do_node_conns, &nc->queue);

    return nc;
}


/* a new connection to a peer, from its address in the registry */
static ngx_do_node_conn_t *
ngx_do_node_connect(ngx_uint_t peer)
{
    ngx_int_t               rc;
    ngx_str_t               name, addr;
    ngx_addr_t              a;
    ngx_pool_t             *pool;
    ngx_do_node_conn_t     *nc;
    ngx_peer_connection_t   pc;

    if (ngx_do_cluster_peer(peer, &name, &addr) != NGX_OK
        || name.len > NGX_DO_NODE_NAME || name.len == 0)
    {
        return NULL;
    }

    pool = ngx_create_pool(512, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    if (ngx_parse_addr_port(pool, &a, addr.data, addr.len) != NGX_OK) {
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0, NGX_DO_LOG_NODE,
                             "do: node \"%V\" has an invalid address "
                             "\"%V\"", &name, &addr);
        ngx_destroy_pool(pool);
        return NULL;
    }

    ngx_memzero(&pc, sizeof(ngx_peer_connection_t));
    pc.sockaddr = a.sockaddr;
    pc.socklen = a.socklen;
    pc.name = &addr;
    pc.get = ngx_event_get_peer;
    pc.log = ngx_cycle->log;

    /* nginx's own lines on this connection (a refused connect, a reset) */
    pc.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&pc);

    ngx_destroy_pool(pool);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (pc.connection) {
            ngx_close_connection(pc.connection);
        }

        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0, NGX_DO_LOG_NODE,
                             "do: node \"%V\" at %V is unreachable",
                             &name, &addr);
        return NULL;
    }

    nc = ngx_do_node_conn(pc.connection, peer, 0);
    if (nc == NULL) {
        ngx_close_connection(pc.connection);
        return NULL;
    }

    nc->name_len = name.len;
    ngx_memcpy(nc->name, name.data, name.len);
    nc->addr_len = ngx_min(addr.len, sizeof(nc->addr));
    ngx_memcpy(nc->addr, addr.data, nc->addr_len);

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do node: connecting to \"%V\" at %V", &name, &addr);

    ngx_add_timer(&nc->timer, NGX_DO_NODE_HANDSHAKE);

    if (rc == NGX_AGAIN) {
        nc->state = NGX_DO_NODE_CONNECTING;
        nc->c->read->handler = ngx_do_node_connected;
        nc->c->write->handler = ngx_do_node_connected;
        return nc;
    }

    if (ngx_do_node_hello(nc) != NGX_OK) {
        ngx_do_node_close(nc, 0);
        return NULL;
    }

    return nc;
}


/*
 * The connect finished (or failed), told by either event (a refused one
 * wakes both, the read one first); a failure is logged here, once a
 * second, rather than as nginx's recv() error
 */
static void
ngx_do_node_connected(ngx_event_t *ev)
{
    int                  err;
    socklen_t            len;
    ngx_connection_t    *c;
    ngx_do_node_conn_t  *nc;

    c = ev->data;
    nc = c->data;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, err,
                             NGX_DO_LOG_NODE, "do: connect() to node "
                             "\"%*s\" at %*s failed", nc->name_len, nc->name,
                             nc->addr_len, nc->addr);
        ngx_do_node_close(nc, 1);
        return;
    }

    c->read->handler = ngx_do_node_read;
    c->write->handler = ngx_do_node_write;

    if (ngx_do_node_hello(nc) != NGX_OK) {
        ngx_do_node_close(nc, 1);
        return;
    }

    if (c->read->ready) {
        ngx_do_node_read(c->read);
    }
}


/* the handshake is over, both ways: frames may flow */
void
ngx_do_node_ready(ngx_do_node_conn_t *nc)
{
    nc->state = NGX_DO_NODE_READY;

    if (nc->timer.timer_set) {
        ngx_del_timer(&nc->timer);
    }

    if (!nc->incoming) {
        ngx_do_node_peers[nc->peer].backoff = 0;
    }

    ngx_do_node_gauges(nc);

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do node: %s node \"%*s\" authenticated",
                   nc->incoming ? "from" : "to", nc->name_len, nc->name);

    if (!ngx_queue_empty(&nc->out) && !nc->post.posted) {
        ngx_post_event(&nc->post, &ngx_posted_events);
    }

    if (nc->incoming && ngx_exiting) {
        /* accepted before the listener closed: a GOAWAY at once */
        nc->c->close = 1;
        ngx_post_event(nc->c->read, &ngx_posted_events);
    }
}


/*
 * The worker is exiting (nginx closes its idle connections at the start
 * of a graceful shutdown, and an incoming node connection counts as one):
 * a peer's connection that brings its requests here gets a GOAWAY, so
 * that the peer sends its next requests on a new connection (to a worker
 * of the next generation after a reload; after a stop, they wait for the
 * shard's next holder), and what it sent before is run and answered.
 * The worker waits for the peer's GOAWAY back, at most NGX_DO_NODE_DRAIN
 * ms: the stream is ordered, so after it nothing more comes.  A second
 * close (worker_shutdown_timeout), or one of an outgoing connection or of
 * a handshake, closes it.  NGX_ERROR: closed.
 */
ngx_int_t
ngx_do_node_shutdown(ngx_do_node_conn_t *nc)
{
    if (!nc->incoming || nc->goaway || nc->state != NGX_DO_NODE_READY) {
        ngx_do_node_close(nc, 1);
        return NGX_ERROR;
    }

    if (ngx_do_node_queue(nc, NGX_DO_NODE_GOAWAY, 0, 0, 0, 0, NULL, 0)
        != NGX_OK)
    {
        ngx_do_node_close(nc, 1);
        return NGX_ERROR;
    }

    nc->goaway = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do node: GOAWAY to \"%*s\"", nc->name_len, nc->name);

    /* not cancelable: the worker stays until the peer answered */
    nc->timer.handler = ngx_do_node_drained;
    nc->timer.cancelable = 0;
    ngx_add_timer(&nc->timer, NGX_DO_NODE_DRAIN);

    return NGX_OK;
}


/* the peer never answered the GOAWAY: the worker may exit all the same */
static void
ngx_do_node_drained(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_do_node_conn_t  *nc;

    c = ev->data;
    nc = c->data;

    ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0, NGX_DO_LOG_NODE,
                         "do: node \"%*s\" did not answer the GOAWAY of an "
                         "exiting worker within %d ms", nc->name_len,
                         nc->name, NGX_DO_NODE_DRAIN);
}


/*
 * A GOAWAY: on a connection to a peer, the peer's worker exits; the
 * connection takes no new request (it stays for the replies) and the
 * answer says so.  On a connection from a peer, that answer.
 */
static void
ngx_do_node_goaway(ngx_do_node_conn_t *nc)
{
    ngx_do_node_peer_t  *p;

    if (nc->incoming) {
        if (nc->goaway && nc->timer.timer_set) {
            ngx_del_timer(&nc->timer);
        }

        return;
    }

    if (nc->goaway) {
        return;
    }

    nc->goaway = 1;

    p = &ngx_do_node_peers[nc->peer];

    if (p->conn == nc) {
        p->conn = NULL;
        p->retry_at = ngx_current_msec;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do node: GOAWAY from \"%*s\"", nc->name_len, nc->name);

    (void) ngx_do_node_queue(nc, NGX_DO_NODE_GOAWAY, 0, 0, 0, 0, NULL, 0);
}


/* a frame authenticated: a reply to its call, a request or a message */
void
ngx_do_node_dispatch(ngx_do_node_conn_t *nc, ngx_uint_t kind,
    ngx_uint_t type, ngx_uint_t hops, ngx_uint_t status, uint64_t id,
    u_char *buf, size_t len)
{
    ngx_do_node_call_t      *call;
    ngx_do_node_reply_t     *reply;
    ngx_do_node_handler_pt   handler;

    ngx_log_debug7(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do node: frame %ui type %ui id %uL, %uz bytes, %s "
                   "\"%*s\"", kind, type, id, len,
                   nc->incoming ? "from" : "to", nc->name_len, nc->name);

    if (kind == NGX_DO_NODE_GOAWAY) {
        ngx_free(buf);
        ngx_do_node_goaway(nc);
        return;
    }

    if (kind == NGX_DO_NODE_REPLY) {
        call = ngx_do_node_call(nc, id);

        if (call == NULL) {
            ngx_free(buf);
            return;
        }

        ngx_do_node_observe(nc->peer, ngx_do_status_usec() - call->start);

        if (status) {
            ngx_free(buf);
            buf = NULL;
            len = 0;
        }

        call->handler(id, call->data, status, buf, len);
        ngx_free(call);
        return;
    }

    ngx_do_node_count(nc->peer, NGX_DO_NODE_RECEIVED);

    handler = (type < NGX_DO_NODE_TYPES) ? ngx_do_node_handlers[type] : NULL;
    reply = NULL;

    if (kind == NGX_DO_NODE_REQUEST) {
        reply = ngx_alloc(sizeof(ngx_do_node_reply_t), ngx_cycle->log);
        if (reply == NULL) {
            ngx_free(buf);
            (void) ngx_do_node_queue(nc, NGX_DO_NODE_REPLY, 0, 0,
                                     NGX_HTTP_SERVICE_UNAVAILABLE, id, NULL,
                                     0);
            return;
        }

        reply->conn = nc;
        reply->id = id;
        ngx_queue_insert_tail(&nc->replies, &reply->queue);
    }

    if (handler == NULL) {
        ngx_free(buf);

        if (reply) {
            ngx_do_node_reply(reply, NGX_HTTP_NOT_IMPLEMENTED, NULL, 0);
        }

        return;
    }

    handler(reply, nc->peer, hops, buf, len);
}


ngx_int_t
ngx_do_node_request(ngx_uint_t peer, ngx_uint_t type, uint64_t id,
    ngx_uint_t hops, u_char *buf, size_t len, ngx_do_node_answer_pt handler,
    void *data)
{
    return ngx_do_node_send(peer, NGX_DO_NODE_REQUEST, type, id, hops, buf,
                            len, handler, data);
}


ngx_int_t
ngx_do_node_message(ngx_uint_t peer, ngx_uint_t type, ngx_uint_t hops,
    u_char *buf, size_t len)
{
    return ngx_do_node_send(peer, NGX_DO_NODE_MESSAGE, type, 0, hops, buf,
                            len, NULL, NULL);
}


/* a request or a message on the worker's connection to the peer */
static ngx_int_t
ngx_do_node_send(ngx_uint_t peer, ngx_uint_t kind, ngx_uint_t type,
    uint64_t id, ngx_uint_t hops, u_char *buf, size_t len,
    ngx_do_node_answer_pt handler, void *data)
{
    ngx_int_t             rc;
    ngx_do_node_conn_t   *nc;
    ngx_do_node_call_t   *call;
    ngx_do_node_peer_t   *p;

    if (!ngx_do_node_enabled || peer >= NGX_DO_CLUSTER_PEERS
        || peer == ngx_do_cluster_self())
    {
        return NGX_DECLINED;
    }

    p = &ngx_do_node_peers[peer];
    nc = p->conn;

    if (nc && ngx_do_node_stale(nc, peer)) {
        /* the slot names another node now: its calls end 502 */
        ngx_do_node_close(nc, 1);
        nc = p->conn;
    }

    if (nc == NULL) {
        if (ngx_current_msec < p->retry_at) {
            ngx_do_node_count(peer, NGX_DO_NODE_FAILURES);
            return NGX_DECLINED;
        }

        nc = ngx_do_node_connect(peer);

        if (nc == NULL) {
            ngx_do_node_backoff(p);
            ngx_do_node_count(peer, NGX_DO_NODE_FAILURES);
            return NGX_DECLINED;
        }

        p->conn = nc;
    }

    if (len > NGX_DO_NODE_MAX_FRAME
        || nc->queued + len > NGX_DO_NODE_MAX_QUEUE)
    {
        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0, NGX_DO_LOG_NODE,
                             "do: channel to node \"%*s\" is full "
                             "(%uz bytes queued), frame of %uz bytes "
                             "refused", nc->name_len, nc->name, nc->queued,
                             len);
        ngx_do_node_count(peer, NGX_DO_NODE_FAILURES);
        return NGX_BUSY;
    }

    call = NULL;

    if (kind == NGX_DO_NODE_REQUEST) {
        call = ngx_alloc(sizeof(ngx_do_node_call_t), ngx_cycle->log);
        if (call == NULL) {
            return NGX_ERROR;
        }
    }

    rc = ngx_do_node_queue(nc, kind, type, hops, 0, id, buf, len);

    if (rc != NGX_OK) {
        if (call) {
            ngx_free(call);
        }

        return rc;
    }

    if (call) {
        call->node.key = (ngx_rbtree_key_t) id;
        call->handler = handler;
        call->data = data;
        call->start = ngx_do_status_usec();
        ngx_rbtree_insert(&nc->calls, &call->node);
        ngx_do_node_count(peer, NGX_DO_NODE_FORWARDS);

    } else {
        ngx_do_node_count(peer, NGX_DO_NODE_MESSAGES);
    }

    ngx_log_debug5(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do node: %s %uL of %uz bytes to \"%*s\"",
                   call ? "request" : "message", id, len, nc->name_len,
                   nc->name);

    return NGX_OK;
}


void
ngx_do_node_reply(ngx_do_node_reply_t *reply, ngx_uint_t status, u_char *buf,
    size_t len)
{
    ngx_do_node_conn_t  *nc;

    nc = reply->conn;

    if (nc) {
        ngx_queue_remove(&reply->queue);

        if (len > NGX_DO_NODE_MAX_FRAME) {
            ngx_free(buf);
            buf = NULL;
            len = 0;
            status = NGX_HTTP_BAD_GATEWAY;
        }

        if (ngx_do_node_queue(nc, NGX_DO_NODE_REPLY, 0, 0, status, reply->id,
                              buf, len)
            == NGX_OK)
        {
            buf = NULL;
        }
    }

    if (buf) {
        ngx_free(buf);
    }

    ngx_free(reply);
}


/* the handshake did not finish in time */
static void
ngx_do_node_timeout(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_do_node_conn_t  *nc;

    c = ev->data;
    nc = c->data;

    if (nc->incoming) {
        ngx_do_node_refuse(nc, "handshake timed out");
        return;
    }

    ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0, NGX_DO_LOG_NODE,
                         "do: handshake with node \"%*s\" at %*s timed out",
                         nc->name_len, nc->name, nc->addr_len, nc->addr);

    ngx_do_node_close(nc, 1);
}


/* a peer that failed the handshake or sent a bad frame: logged, closed */
void
ngx_do_node_refuse(ngx_do_node_conn_t *nc, const char *why)
{
    u_char  name[NGX_DO_LOG_ESCAPE_LEN];
    size_t  len;

    len = ngx_do_log_escape(name, sizeof(name), nc->name, nc->name_len);

    ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0, NGX_DO_LOG_NODE,
                         "do: node channel %s %*s (node \"%*s\") refused: "
                         "%s", nc->incoming ? "from" : "to",
                         nc->addr_len, nc->addr, len, name, why);

    ngx_do_node_close(nc, 1);
}


/*
 * Closes a connection.  With answer set, the requests it carried get
 * their handler with 502; at exit they are only freed.  Reply handles of
 * its requests stay with their holders, detached.
 */
void
ngx_do_node_close(ngx_do_node_conn_t *nc, ngx_uint_t answer)
{
    uint64_t              id;
    ngx_uint_t            n;
    ngx_pool_t           *pool;
    ngx_queue_t          *q, unsent;
    ngx_rbtree_node_t    *node;
    ngx_do_node_out_t    *out;
    ngx_do_node_call_t   *call;
    ngx_do_node_peer_t   *p;
    ngx_do_node_reply_t  *reply;

    if (nc->c == NULL) {
        return;
    }

    ngx_queue_remove(&nc->queue);

    if (!nc->incoming) {
        p = &ngx_do_node_peers[nc->peer];

        if (p->conn == nc) {
            p->conn = NULL;

            if (nc->state != NGX_DO_NODE_READY) {
                /* it never worked: not again at once */
                ngx_do_node_backoff(p);
            }
        }
    }

    nc->state = NGX_DO_NODE_CONNECTING;
    nc->keyed = 0;
    ngx_do_node_gauges(nc);

    ngx_queue_init(&unsent);

    while (!ngx_queue_empty(&nc->out)) {
        q = ngx_queue_head(&nc->out);
        ngx_queue_remove(q);
        out = ngx_queue_data(q, ngx_do_node_out_t, queue);

        if (answer && out->request && out->sent == 0) {
            /* nothing of it reached the peer: back to its caller, below */
            ngx_queue_insert_tail(&unsent, q);
            continue;
        }

        if (!out->raw) {
            ngx_free(out->buf);
        }

        ngx_free(out);
    }

    nc->queued = 0;

    while (!ngx_queue_empty(&nc->replies)) {
        q = ngx_queue_head(&nc->replies);
        ngx_queue_remove(q);
        reply = ngx_queue_data(q, ngx_do_node_reply_t, queue);
        reply->conn = NULL;
    }

    if (nc->post.posted) {
        ngx_delete_posted_event(&nc->post);
    }

    if (nc->timer.timer_set) {
        ngx_del_timer(&nc->timer);
    }

    pool = nc->c->pool;
    ngx_close_connection(nc->c);
    nc->c = NULL;

    if (pool) {
        ngx_destroy_pool(pool);
    }

    if (nc->frame) {
        ngx_free(nc->frame);
        nc->frame = NULL;
    }

    ngx_free(nc->rbuf);
    nc->rbuf = NULL;

    /*
     * The calls last: their handlers may send on a new connection.  First
     * those never written: they get their bytes back, to send them again.
     */
    while (!ngx_queue_empty(&unsent)) {
        q = ngx_queue_head(&unsent);
        ngx_queue_remove(q);
        out = ngx_queue_data(q, ngx_do_node_out_t, queue);

        call = ngx_do_node_call(nc, out->id);

        if (call) {
            call->handler(out->id, call->data, NGX_DO_NODE_UNSENT, out->buf,
                          out->len);
            ngx_free(call);

        } else {
            ngx_free(out->buf);
        }

        ngx_free(out);
    }

    n = 0;

    while (nc->calls.root != nc->calls.sentinel) {
        node = ngx_rbtree_min(nc->calls.root, nc->calls.sentinel);

        /* the id before the delete: ngx_rbtree_delete() zeroes the key */
        id = (uint64_t) node->key;
        ngx_rbtree_delete(&nc->calls, node);
        call = (ngx_do_node_call_t *) node;

        if (answer) {
            ngx_do_node_count(nc->peer, NGX_DO_NODE_FAILURES);
            call->handler(id, call->data, NGX_HTTP_BAD_GATEWAY, NULL, 0);
            n++;
        }

        ngx_free(call);
    }

    if (n) {
        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0, NGX_DO_LOG_NODE,
                             "do: connection to node \"%*s\" lost, %ui calls "
                             "answered 502", nc->name_len, nc->name, n);
    }

    ngx_free(nc);
}


/* the call of a request on the connection, taken out of its tree */
static ngx_do_node_call_t *
ngx_do_node_call(ngx_do_node_conn_t *nc, uint64_t id)
{
    ngx_rbtree_key_t    key;
    ngx_rbtree_node_t  *node;

    key = (ngx_rbtree_key_t) id;
    node = nc->calls.root;

    while (node != nc->calls.sentinel && node->key != key) {
        node = (key < node->key) ? node->left : node->right;
    }

    if (node == nc->calls.sentinel) {
        return NULL;
    }

    ngx_rbtree_delete(&nc->calls, node);

    return (ngx_do_node_call_t *) node;
}


/* a connection failed before it worked: the next try waits, longer */
static void
ngx_do_node_backoff(ngx_do_node_peer_t *p)
{
    p->backoff = ngx_min(ngx_max(p->backoff * 2, NGX_DO_NODE_BACKOFF_MIN),
                         NGX_DO_NODE_BACKOFF_MAX);
    p->retry_at = ngx_current_msec + p->backoff;
}
