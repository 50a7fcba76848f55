
/*
 * The channel between nginx nodes of a cluster (ngx_do_node.c).
 *
 * Every worker of a node accepts on the node's listen= address, and each
 * worker keeps one outgoing connection per peer, made on first use.  A
 * connection starts with a handshake in which both sides prove they know
 * do_secret (HMAC-SHA-256 over a fresh nonce of each side) and the
 * connecting node names itself; the accepting node refuses a name that
 * is not in the registry.  After it, every frame carries a sequence
 * number of its direction and two truncated HMACs keyed by a key of the
 * connection: a forged, replayed or reordered frame closes it.
 *
 * Three kinds of frames: a request (answered once by a reply frame of the
 * same id, on the same connection), its reply, and a one-way message.  A
 * request or a message has a type, which picks the receiving side's
 * handler (ngx_do_node_handle()).
 */


#ifndef _NGX_DO_NODE_H_INCLUDED_
#define _NGX_DO_NODE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"


/* the types of requests and messages */
#define NGX_DO_NODE_CALL          1           /* a call's wire form */
#define NGX_DO_NODE_TAKE          2           /* a bucket's take */
#define NGX_DO_NODE_REFUND        3           /* a bucket's refund */
#define NGX_DO_NODE_FANOUT        4           /* a room's broadcast */
#define NGX_DO_NODE_TYPES         8

/* the most hops a call makes between nodes (a forward, then one more) */
#define NGX_DO_NODE_MAX_HOPS      2


typedef struct ngx_do_node_reply_s  ngx_do_node_reply_t;

/*
 * The answer to a request, exactly once: status 0 and the reply's bytes
 * (buf is the handler's, to ngx_free()), or a failure status and no
 * bytes: 502 (the connection was lost after the request was written, so
 * the peer may have run it), 503 (the peer could not take it), or the
 * status the peer answered with ngx_do_node_reply().  NGX_DO_NODE_UNSENT:
 * the connection failed before any byte of the request was written, and
 * buf and len are the request's own bytes, back to the handler (to send
 * again, or to ngx_free()).
 */
#define NGX_DO_NODE_UNSENT        1

typedef void (*ngx_do_node_answer_pt)(uint64_t id, void *data,
    ngx_uint_t status, u_char *buf, size_t len);

/*
 * A request (reply set: answer it once with ngx_do_node_reply(), now or
 * later) or a message (reply NULL) arrived from the node peer, with the
 * hops it made so far.  buf is the handler's, to ngx_free().
 */
typedef void (*ngx_do_node_handler_pt)(ngx_do_node_reply_t *reply,
    ngx_uint_t peer, ngx_uint_t hops, u_char *buf, size_t len);


/* configuration: the listening socket of listen= and the status zone */
ngx_int_t ngx_do_node_listen(ngx_conf_t *cf, ngx_addr_t *addr);

/* in each worker, after ngx_do_cluster_init_worker(); and at its exit */
ngx_int_t ngx_do_node_init_worker(ngx_cycle_t *cycle);
void ngx_do_node_exit_worker(void);

/* the handler of a type of requests and messages */
void ngx_do_node_handle(ngx_uint_t type, ngx_do_node_handler_pt handler);

/*
 * Sends a request to a peer.  NGX_OK: buf is taken (freed once sent) and
 * handler runs exactly once, never before this returns.  Otherwise buf
 * stays the caller's and handler never runs: NGX_DECLINED, the peer is
 * not reachable (not in the registry, or its connection failed lately:
 * 502); NGX_BUSY, its queue is full (503); NGX_ERROR.  id must be unique
 * among this worker's requests in flight (a router call id).
 */
ngx_int_t ngx_do_node_request(ngx_uint_t peer, ngx_uint_t type, uint64_t id,
    ngx_uint_t hops, u_char *buf, size_t len, ngx_do_node_answer_pt handler,
    void *data);

/* a one-way message, with ngx_do_node_request()'s returns */
ngx_int_t ngx_do_node_message(ngx_uint_t peer, ngx_uint_t type,
    ngx_uint_t hops, u_char *buf, size_t len);

/*
 * Answers a request, once: status 0 and buf (taken, may be NULL when len
 * is 0), or a failure status without bytes.  When the connection it came
 * on is gone, this only frees.
 */
void ngx_do_node_reply(ngx_do_node_reply_t *reply, ngx_uint_t status,
    u_char *buf, size_t len);

/* do_status: a JSON array of peer objects, and Prometheus families */
size_t ngx_do_node_status_size(void);
u_char *ngx_do_node_status_json(u_char *p, u_char *last, ngx_uint_t peer);
u_char *ngx_do_node_status_prometheus(u_char *p, u_char *last);


#endif /* _NGX_DO_NODE_H_INCLUDED_ */
