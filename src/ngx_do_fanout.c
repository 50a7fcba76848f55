
/*
 * WebSocket members of objects, and the messages that reach them.
 *
 * Owner side: the WebSocket functions of the class API.  A turn's
 * ngx_do_ws_reply() frames go to its own connection with the turn's
 * reply; its ngx_do_ws_broadcast() frames are released after its commit
 * (ngx_do_turn.c) and fanned out: one channel message per worker, each
 * carrying the object's ID, the sequence number and the frame.  This is
 * the one place where a broadcast leaves its owner; in cluster mode it
 * also goes, once, to every other live node, whose receiving worker fans
 * it out to its node's workers the same way (ngx_do_fanout_node()).
 *
 * Worker side: each worker keeps a tree of the objects its connections
 * are members of, and the members of each.  A fan-out is written to each
 * member whose next number it is; a member for which a number was lost
 * (a full channel, an owner killed between its commit and its fan-out) is
 * closed with 1013 rather than skipped, and resumes from the object's
 * history.  Messages from a member are calls to its object (kind
 * NGX_DO_TURN_WS_MESSAGE), at most NGX_DO_FANOUT_INFLIGHT at a time: past
 * that the connection is not read, so a fast sender slows itself, not the
 * object.  When the connection goes, a NGX_DO_TURN_WS_CLOSE call tells the
 * object.
 *
 * A member lives as long as its connection or a call of it in flight,
 * whichever is longer: the connection's end and the calls' answers meet
 * on its reference count.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_do_object.h"
#include "ngx_do_ws.h"
#include "ngx_do_cluster.h"
#include "ngx_do_node.h"


#define NGX_DO_FANOUT_INFLIGHT    16


/* the head of a fan-out on a channel; the frame follows */
typedef struct {
    u_char                     id[NGX_DO_ID_LEN];
    uint64_t                   seq;
    uint32_t                   ns;
    uint32_t                   len;
} ngx_do_fanout_wire_t;


/* an object with members in this worker */
typedef struct {
    ngx_do_id_node_t           node;
    ngx_queue_t                members;
} ngx_do_fanout_obj_t;


typedef struct {
    ngx_queue_t                queue;         /* in its object's members */
    ngx_do_fanout_obj_t       *obj;           /* set while in the tree */
    ngx_do_ws_t               *ws;            /* NULL once it closed */
    ngx_do_namespace_t        *ns;
    u_char                     id[NGX_DO_ID_LEN];
    uint64_t                   conn;
    uint64_t                   seq;           /* the last one it got */
    ngx_str_t                  member;
    ngx_uint_t                 inflight;
    ngx_uint_t                 refs;
    unsigned                   opened:1;      /* its open was sent */
    unsigned                   joined:1;      /* the object accepted it */
    unsigned                   paused:1;
} ngx_do_fanout_member_t;


static void ngx_do_fanout_deliver(ngx_do_fanout_wire_t *w, u_char *frame);
static void ngx_do_fanout_workers(ngx_do_fanout_wire_t *hdr, u_char *frame);
static void ngx_do_fanout_nodes(u_char *buf, size_t len);
static void ngx_do_fanout_node(ngx_do_node_reply_t *reply, ngx_uint_t peer,
    ngx_uint_t hops, u_char *buf, size_t len);
static void ngx_do_fanout_message(ngx_do_ws_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len);
static void ngx_do_fanout_answered(void *data, ngx_http_do_reply_t *reply);
static void ngx_do_fanout_closed(ngx_do_ws_t *ws, ngx_uint_t code);
static void ngx_do_fanout_left(void *data, ngx_http_do_reply_t *reply);
static void ngx_do_fanout_release(ngx_do_fanout_member_t *m);
static ngx_int_t ngx_do_fanout_frame(ngx_pool_t *pool, ngx_str_t *text,
    ngx_str_t *frame);


static ngx_rbtree_t            ngx_do_fanout_tree;
static ngx_rbtree_node_t       ngx_do_fanout_sentinel;
static uint32_t                ngx_do_fanout_serial;
static ngx_uint_t              ngx_do_fanout_enabled;


ngx_int_t
ngx_do_fanout_init(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_do_fanout_tree, &ngx_do_fanout_sentinel,
                    ngx_do_id_rbtree_insert);

    ngx_do_fanout_enabled = 1;

    if (ngx_do_cluster) {
        ngx_do_node_handle(NGX_DO_NODE_FANOUT, ngx_do_fanout_node);
    }

    return NGX_OK;
}


void
ngx_do_fanout_exit(void)
{
    ngx_do_fanout_enabled = 0;
}


/* the worker PID a connection number names */
ngx_pid_t
ngx_do_fanout_conn_pid(uint64_t conn)
{
    return (ngx_pid_t) (conn >> 32);
}


/*
 * A WebSocket after its handshake, before its object accepted it: a member
 * of no object yet, whose messages and end are routed once it joined.
 */
void *
ngx_do_fanout_member(ngx_do_ws_t *ws, ngx_do_namespace_t *ns, u_char *id,
    ngx_str_t *member, uint64_t *conn)
{
    ngx_do_fanout_member_t  *m;

    m = ngx_calloc(sizeof(ngx_do_fanout_member_t) + member->len,
                   ws->connection->log);
    if (m == NULL) {
        return NULL;
    }

    m->ws = ws;
    m->ns = ns;
    ngx_memcpy(m->id, id, NGX_DO_ID_LEN);
    m->conn = ((uint64_t) ngx_pid << 32) | ++ngx_do_fanout_serial;
    m->member.data = (u_char *) (m + 1);
    m->member.len = member->len;
    (void) ngx_do_cpymem(m->member.data, member->data, member->len);
    m->refs = 1;                            /* the connection's */

    ws->data = m;
    ws->message = ngx_do_fanout_message;
    ws->closed = ngx_do_fanout_closed;

    m->opened = 1;
    *conn = m->conn;

    return m;
}


/*
 * The object answered the handshake: NGX_OK, the connection is accepted
 * (or closed with the object's code) and its frames are queued behind the
 * 101; NGX_DECLINED, the reply is an HTTP refusal for the request.
 */
ngx_int_t
ngx_do_fanout_opened(void *data, ngx_http_do_reply_t *reply)
{
    ngx_do_fanout_member_t  *m = data;

    ngx_do_ws_t          *ws;
    ngx_rbtree_node_t    *node;
    ngx_do_fanout_obj_t  *obj;

    ws = m->ws;

    if (reply->failed
        || (reply->status != NGX_HTTP_SWITCHING_PROTOCOLS
            && reply->status < 1000))
    {
        return NGX_DECLINED;
    }

    if (ngx_do_ws_send_frames(ws, reply->body.data, reply->body.len, 0)
        != NGX_OK)
    {
        return NGX_OK;
    }

    if (reply->status != NGX_HTTP_SWITCHING_PROTOCOLS) {
        /* refused with a close code: the object never counted it */
        ngx_do_ws_close(ws, reply->status, &reply->content_type);
        return NGX_OK;
    }

    m->seq = reply->etag;
    m->joined = 1;

    obj = (ngx_do_fanout_obj_t *) ngx_do_id_rbtree_lookup(&ngx_do_fanout_tree,
                                                           m->id);
    if (obj == NULL) {
        obj = ngx_calloc(sizeof(ngx_do_fanout_obj_t), ws->connection->log);
        if (obj == NULL) {
            ngx_do_ws_close(ws, NGX_DO_WS_CLOSE_INTERNAL, NULL);
            return NGX_OK;
        }

        ngx_memcpy(obj->node.id, m->id, NGX_DO_ID_LEN);
        node = &obj->node.node;
        node->key = ngx_do_id_hash(m->id);
        ngx_rbtree_insert(&ngx_do_fanout_tree, node);
        ngx_queue_init(&obj->members);
    }

    ngx_queue_insert_tail(&obj->members, &m->queue);
    m->obj = obj;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ws->connection->log, 0,
                   "do ws: member %016xL joined at seq %uL", m->conn, m->seq);

    return NGX_OK;
}


/* a whole message from the member: a call to its object */
static void
ngx_do_fanout_message(ngx_do_ws_t *ws, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    ngx_str_t                body;
    ngx_do_fanout_member_t  *m;

    m = ws->data;

    if (!m->joined) {
        return;
    }

    body.data = data;
    body.len = len;

    /* counted first: a local owner answers before the call returns */
    m->refs++;
    m->inflight++;

    if (ngx_do_router_ws(m->ns, m->id, NGX_DO_TURN_WS_MESSAGE,
                         opcode == NGX_DO_WS_OP_BINARY ? NGX_DO_WS_BINARY
                                                       : NGX_DO_WS_TEXT,
                         &m->member, m->conn, &body, ngx_cycle->log,
                         ngx_do_fanout_answered, m)
        != NGX_OK)
    {
        m->refs--;
        m->inflight--;
        ngx_do_ws_close(ws, NGX_DO_WS_CLOSE_INTERNAL, NULL);
        return;
    }

    if (m->ws && m->inflight >= NGX_DO_FANOUT_INFLIGHT && !m->paused) {
        m->paused = 1;
        ngx_do_ws_pause(ws);
    }
}


/* the object's answer to a message: frames for the sender, or its close */
static void
ngx_do_fanout_answered(void *data, ngx_http_do_reply_t *reply)
{
    ngx_do_fanout_member_t  *m = data;

    ngx_str_t     reason;
    ngx_do_ws_t  *ws;

    m->inflight--;
    ws = m->ws;

    if (ws) {
        if (reply->failed) {
            ngx_str_set(&reason, "the object did not answer, reconnect");
            ngx_do_ws_close(ws, reply->status == NGX_HTTP_SERVICE_UNAVAILABLE
                                ? NGX_DO_WS_CLOSE_TRY_AGAIN
                                : NGX_DO_WS_CLOSE_INTERNAL, &reason);

        } else if (reply->status >= 1000) {
            (void) ngx_do_ws_send_frames(ws, reply->body.data,
                                         reply->body.len, 0);
            ngx_do_ws_close(ws, reply->status, &reply->content_type);

        } else if (reply->status >= NGX_HTTP_SPECIAL_RESPONSE) {
            ngx_do_ws_close(ws, NGX_DO_WS_CLOSE_INTERNAL, NULL);

        } else {
            (void) ngx_do_ws_send_frames(ws, reply->body.data,
                                         reply->body.len, 1);
        }

        if (m->paused && m->inflight < NGX_DO_FANOUT_INFLIGHT / 2) {
            m->paused = 0;
            ngx_do_ws_resume(ws);
        }
    }

    ngx_do_fanout_release(m);
}


/* the connection is gone: out of the tree, and the object hears of it */
static void
ngx_do_fanout_closed(ngx_do_ws_t *ws, ngx_uint_t code)
{
    ngx_do_fanout_member_t  *m;

    m = ws->data;
    m->ws = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "do ws: member %016xL left with %ui", m->conn, code);

    if (m->obj) {
        ngx_queue_remove(&m->queue);

        if (ngx_queue_empty(&m->obj->members)) {
            ngx_rbtree_delete(&ngx_do_fanout_tree, &m->obj->node.node);
            ngx_free(m->obj);
        }

        m->obj = NULL;
    }

    /* also after a refusal, or before the answer: the object forgets it */
    if (m->opened && ngx_do_fanout_enabled) {
        m->refs++;

        if (ngx_do_router_ws(m->ns, m->id, NGX_DO_TURN_WS_CLOSE, 0,
                             &m->member, m->conn, NULL, ngx_cycle->log,
                             ngx_do_fanout_left, m)
            != NGX_OK)
        {
            m->refs--;
        }
    }

    ngx_do_fanout_release(m);
}


static void
ngx_do_fanout_left(void *data, ngx_http_do_reply_t *reply)
{
    ngx_do_fanout_release(data);
}


static void
ngx_do_fanout_release(ngx_do_fanout_member_t *m)
{
    if (--m->refs == 0) {
        ngx_free(m);
    }
}


/*
 * After a commit, on the owner: a frame to every worker's members of the
 * object.  A worker whose channel refuses it misses that number, and its
 * members find out at the next one.
 */
ngx_int_t
ngx_do_fanout_send(ngx_do_namespace_t *ns, u_char *id, uint64_t seq,
    ngx_str_t *frame)
{
    u_char                *buf;
    size_t                 len;
    ngx_do_fanout_wire_t   hdr;

    ngx_memcpy(hdr.id, id, NGX_DO_ID_LEN);
    hdr.seq = seq;
    hdr.ns = (uint32_t) ns->index;
    hdr.len = (uint32_t) frame->len;

    ngx_do_fanout_workers(&hdr, frame->data);

    if (ngx_do_cluster == NULL) {
        return NGX_OK;
    }

    len = sizeof(ngx_do_fanout_wire_t) + frame->len;

    buf = ngx_alloc(len, ngx_cycle->log);
    if (buf == NULL) {
        return NGX_OK;
    }

    ngx_memcpy(buf, &hdr, sizeof(ngx_do_fanout_wire_t));
    ngx_memcpy(buf + sizeof(ngx_do_fanout_wire_t), frame->data, frame->len);

    ngx_do_fanout_nodes(buf, len);
    ngx_free(buf);

    return NGX_OK;
}


/* a fan-out to this worker's members, and to the other workers' */
static void
ngx_do_fanout_workers(ngx_do_fanout_wire_t *hdr, u_char *frame)
{
    u_char      *buf;
    size_t       len;
    ngx_uint_t   w;

    len = sizeof(ngx_do_fanout_wire_t) + hdr->len;

    for (w = 0; w < ngx_do_runtime.workers; w++) {

        if (w == ngx_worker) {
            ngx_do_fanout_deliver(hdr, frame);
            continue;
        }

        buf = ngx_alloc(len, ngx_cycle->log);
        if (buf == NULL) {
            continue;
        }

        ngx_memcpy(buf, hdr, sizeof(ngx_do_fanout_wire_t));
        ngx_memcpy(buf + sizeof(ngx_do_fanout_wire_t), frame, hdr->len);

        if (ngx_do_ipc_send(w, NGX_DO_IPC_FANOUT, 0, buf, len) != NGX_OK) {
            ngx_free(buf);
        }
    }
}


/*
 * Cluster mode: one copy of a fan-out to each other live node.  A node
 * whose channel refuses it misses that number, and its members find out
 * at the next one, as a worker's do.
 */
static void
ngx_do_fanout_nodes(u_char *buf, size_t len)
{
    u_char      *copy;
    ngx_str_t    name, addr;
    ngx_uint_t   peer;

    for (peer = 0; peer < NGX_DO_CLUSTER_PEERS; peer++) {

        if (peer == ngx_do_cluster_self()
            || ngx_do_cluster_peer(peer, &name, &addr) != NGX_OK)
        {
            continue;
        }

        copy = ngx_alloc(len, ngx_cycle->log);
        if (copy == NULL) {
            continue;
        }

        ngx_memcpy(copy, buf, len);

        if (ngx_do_node_message(peer, NGX_DO_NODE_FANOUT, 0, copy, len)
            != NGX_OK)
        {
            ngx_free(copy);
        }
    }
}


/* a fan-out from an owner on another node, for this node's workers */
static void
ngx_do_fanout_node(ngx_do_node_reply_t *reply, ngx_uint_t peer,
    ngx_uint_t hops, u_char *buf, size_t len)
{
    ngx_do_fanout_wire_t  *w;

    w = (ngx_do_fanout_wire_t *) buf;

    if (len < sizeof(ngx_do_fanout_wire_t)
        || len - sizeof(ngx_do_fanout_wire_t) != w->len)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "do: malformed fan-out of %uz bytes from node %ui",
                      len, peer);

    } else {
        ngx_do_fanout_workers(w, buf + sizeof(ngx_do_fanout_wire_t));
    }

    ngx_free(buf);

    if (reply) {
        ngx_do_node_reply(reply, NGX_HTTP_BAD_REQUEST, NULL, 0);
    }
}


/* a fan-out from an owner; takes buf */
void
ngx_do_fanout_receive(ngx_uint_t src, u_char *buf, size_t len)
{
    ngx_do_fanout_wire_t  *w;

    w = (ngx_do_fanout_wire_t *) buf;

    if (len < sizeof(ngx_do_fanout_wire_t)
        || len - sizeof(ngx_do_fanout_wire_t) != w->len)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "do: malformed fan-out of %uz bytes from worker %ui",
                      len, src);
        ngx_free(buf);
        return;
    }

    ngx_do_fanout_deliver(w, buf + sizeof(ngx_do_fanout_wire_t));
    ngx_free(buf);
}


/*
 * A frame to this worker's members of an object: each gets numbered
 * frames in order and once, or is closed (1013) when it missed one
 */
static void
ngx_do_fanout_deliver(ngx_do_fanout_wire_t *w, u_char *frame)
{
    ngx_str_t                reason;
    ngx_queue_t             *q;
    ngx_do_fanout_obj_t     *obj;
    ngx_do_fanout_member_t  *m;

    obj = (ngx_do_fanout_obj_t *) ngx_do_id_rbtree_lookup(&ngx_do_fanout_tree,
                                                           w->id);
    if (obj == NULL) {
        return;
    }

    for (q = ngx_queue_head(&obj->members);
         q != ngx_queue_sentinel(&obj->members);
         q = ngx_queue_next(q))
    {
        m = ngx_queue_data(q, ngx_do_fanout_member_t, queue);

        if (m->ws == NULL) {
            continue;
        }

        if (w->seq) {
            if (w->seq <= m->seq) {
                continue;                   /* it had it, from history */
            }

            if (w->seq != m->seq + 1) {
                ngx_log_error(NGX_LOG_INFO, m->ws->connection->log, 0,
                              "do: websocket member missed messages %uL-%uL, "
                              "closed to resume", m->seq + 1, w->seq - 1);
                ngx_str_set(&reason, "missed messages, resume with since");
                ngx_do_ws_close(m->ws, NGX_DO_WS_CLOSE_TRY_AGAIN, &reason);
                continue;
            }

            m->seq = w->seq;
        }

        (void) ngx_do_ws_send_frames(m->ws, frame, w->len, 1);
    }
}


/* the class API's WebSocket functions, on the owner */

ngx_int_t
ngx_do_ws_accept(ngx_do_turn_t *t, uint64_t seq)
{
    if (t->mail == NULL || t->mail->req.kind != NGX_DO_TURN_WS_OPEN) {
        return NGX_ERROR;
    }

    t->status = NGX_HTTP_SWITCHING_PROTOCOLS;
    t->etag = seq;
    t->replied = 1;

    return NGX_OK;
}


ngx_int_t
ngx_do_ws_reply(ngx_do_turn_t *t, ngx_str_t *text)
{
    u_char     *p;
    size_t      need;
    ngx_str_t   frame;

    if (t->mail == NULL
        || (t->mail->req.kind != NGX_DO_TURN_WS_OPEN
            && t->mail->req.kind != NGX_DO_TURN_WS_MESSAGE))
    {
        return NGX_ERROR;
    }

    need = t->body.len + NGX_DO_WS_MAX_HEADER + text->len;

    if (need > t->body_size) {
        t->body_size = ngx_max(need, 2 * t->body_size);

        p = ngx_pnalloc(t->pool, t->body_size);
        if (p == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }

        (void) ngx_do_cpymem(p, t->body.data, t->body.len);
        t->body.data = p;
    }

    frame.data = t->body.data + t->body.len;
    frame.len = ngx_do_ws_frame_header(frame.data, NGX_DO_WS_OP_TEXT, 1,
                                       text->len);
    (void) ngx_do_cpymem(frame.data + frame.len, text->data, text->len);

    t->body.len += frame.len + text->len;

    return NGX_OK;
}


ngx_int_t
ngx_do_ws_reply_close(ngx_do_turn_t *t, ngx_uint_t code, const char *reason)
{
    size_t  len;

    if (t->mail == NULL
        || (t->mail->req.kind != NGX_DO_TURN_WS_OPEN
            && t->mail->req.kind != NGX_DO_TURN_WS_MESSAGE)
        || !ngx_do_ws_close_code_valid((unsigned) code))
    {
        return NGX_ERROR;
    }

    len = reason ? ngx_min(ngx_strlen(reason), NGX_DO_WS_MAX_CONTROL - 2) : 0;

    t->status = code;
    t->content_type.data = (u_char *) reason;
    t->content_type.len = len;
    t->replied = 1;

    return NGX_OK;
}


ngx_int_t
ngx_do_ws_broadcast(ngx_do_turn_t *t, ngx_str_t *text, uint64_t seq)
{
    ngx_do_turn_cast_t  *cast;

    if (t->casts == NULL) {
        t->casts = ngx_array_create(t->pool, 2, sizeof(ngx_do_turn_cast_t));
        if (t->casts == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }
    }

    cast = ngx_array_push(t->casts);
    if (cast == NULL || ngx_do_fanout_frame(t->pool, text, &cast->frame)
                        != NGX_OK)
    {
        t->failed = 1;
        return NGX_ERROR;
    }

    cast->seq = seq;

    return NGX_OK;
}


ngx_uint_t
ngx_do_ws_alive(ngx_do_turn_t *t, uint64_t conn)
{
    ngx_pid_t  pid;

    pid = ngx_do_fanout_conn_pid(conn);

    if (pid <= 0) {
        return 0;
    }

    if (ngx_do_cluster) {
        /*
         * the member may be on another node, where this PID means
         * nothing: its close call tells the object it left
         */
        return 1;
    }

    return kill(pid, 0) == 0 || ngx_errno == NGX_EPERM;
}


static ngx_int_t
ngx_do_fanout_frame(ngx_pool_t *pool, ngx_str_t *text, ngx_str_t *frame)
{
    size_t  n;

    frame->data = ngx_pnalloc(pool, NGX_DO_WS_MAX_HEADER + text->len);
    if (frame->data == NULL) {
        return NGX_ERROR;
    }

    n = ngx_do_ws_frame_header(frame->data, NGX_DO_WS_OP_TEXT, 1, text->len);
    (void) ngx_do_cpymem(frame->data + n, text->data, text->len);
    frame->len = n + text->len;

    return NGX_OK;
}
