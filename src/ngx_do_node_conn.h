
/*
 * The channel between nodes: its connections and their bytes, private to
 * ngx_do_node.c (peers, connections, requests and replies),
 * ngx_do_node_stream.c (the handshake, frames sealed and checked, reads
 * and writes) and ngx_do_node_status.c (counters for do_status).  The
 * protocol is described at the top of ngx_do_node_stream.c.
 */


#ifndef _NGX_DO_NODE_CONN_H_INCLUDED_
#define _NGX_DO_NODE_CONN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/sha.h>

#include "ngx_do.h"
#include "ngx_do_cluster.h"
#include "ngx_do_node.h"


#define NGX_DO_NODE_REQUEST       1           /* frame kinds */
#define NGX_DO_NODE_REPLY         2
#define NGX_DO_NODE_MESSAGE       3
#define NGX_DO_NODE_GOAWAY        4           /* no more requests here */

#define NGX_DO_NODE_NONCE         32
#define NGX_DO_NODE_NAME          NGX_DO_CLUSTER_NAME_LEN

#define NGX_DO_NODE_HDR           32
#define NGX_DO_NODE_TAG           16
#define NGX_DO_NODE_HEAD          (NGX_DO_NODE_HDR + NGX_DO_NODE_TAG)
#define NGX_DO_NODE_MAX_FRAME     (64 * 1024 * 1024 + 4096)
#define NGX_DO_NODE_MAX_QUEUE     (64 * 1024 * 1024)
#define NGX_DO_NODE_BUF           (64 * 1024)  /* a connection's reads */

/* connection states */
#define NGX_DO_NODE_CONNECTING    0
#define NGX_DO_NODE_WAIT_HELLO    1           /* accepting side */
#define NGX_DO_NODE_WAIT_AUTH     2
#define NGX_DO_NODE_WAIT_CHALL    3           /* connecting side */
#define NGX_DO_NODE_READY         4

/* counters of a peer (ngx_do_node_count()) */
#define NGX_DO_NODE_FORWARDS      0
#define NGX_DO_NODE_MESSAGES      1
#define NGX_DO_NODE_FAILURES      2
#define NGX_DO_NODE_RECEIVED      3


/* HMAC-SHA-256 with the key's blocks absorbed once (as in ngx_do_id.c) */
typedef struct {
    SHA256_CTX                 inner;
    SHA256_CTX                 outer;
} ngx_do_node_key_t;


/* a frame (or a handshake message: raw) waiting to be written */
typedef struct {
    ngx_queue_t                queue;
    u_char                     head[NGX_DO_NODE_HEAD];
    u_char                     tail[NGX_DO_NODE_TAG];
    u_char                    *buf;
    size_t                     len;
    size_t                     sent;          /* of the whole frame */
    uint64_t                   id;            /* a request's */
    unsigned                   raw:1;         /* buf alone, no head/tail */
    unsigned                   sealed:1;
    unsigned                   request:1;
} ngx_do_node_out_t;


/* a request sent on a connection, waiting for its reply */
typedef struct {
    ngx_rbtree_node_t          node;          /* key: the frame id */
    ngx_do_node_answer_pt      handler;
    void                      *data;
    uint64_t                   start;         /* usec */
} ngx_do_node_call_t;


/*
 * A connection, either way.  incoming: a peer made it (its requests come
 * in, replies go out); otherwise this worker made it to peer (requests
 * out, in calls until answered).  name is the other node's: from the
 * registry for an outgoing one, from HELLO for an incoming one (peer is
 * then NGX_DO_CLUSTER_NONE until the handshake ends).  Nothing is sealed
 * before keyed, and nothing but the handshake is read before READY.
 */
typedef struct {
    ngx_queue_t                queue;         /* all of the worker's */
    ngx_connection_t          *c;
    ngx_uint_t                 peer;
    ngx_uint_t                 state;
    unsigned                   incoming:1;
    unsigned                   keyed:1;
    unsigned                   goaway:1;      /* sent, or heard */

    u_char                     nonce_c[NGX_DO_NODE_NONCE];
    u_char                     nonce_s[NGX_DO_NODE_NONCE];
    u_char                     name[NGX_DO_NODE_NAME + 1];
    size_t                     name_len;
    u_char                     addr[NGX_SOCKADDR_STRLEN];
    size_t                     addr_len;

    ngx_do_node_key_t          send_key;
    ngx_do_node_key_t          recv_key;
    uint64_t                   send_seq;
    uint64_t                   recv_seq;

    u_char                    *rbuf;
    size_t                     rpos;
    size_t                     rlast;
    u_char                     head[NGX_DO_NODE_HEAD];  /* frame in reading */
    u_char                    *frame;         /* its payload and tag2 */
    size_t                     need;
    size_t                     got;

    ngx_queue_t                out;
    size_t                     queued;        /* frames' payload bytes */
    ngx_event_t                post;          /* flush at the loop's end */
    ngx_event_t                timer;         /* the handshake's limit */

    ngx_rbtree_t               calls;         /* outgoing: requests */
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                replies;       /* incoming: reply handles */
} ngx_do_node_conn_t;


/* ngx_do_node.c */
extern ngx_do_node_key_t       ngx_do_node_secret;

void ngx_do_node_ready(ngx_do_node_conn_t *nc);
void ngx_do_node_dispatch(ngx_do_node_conn_t *nc, ngx_uint_t kind,
    ngx_uint_t type, ngx_uint_t hops, ngx_uint_t status, uint64_t id,
    u_char *buf, size_t len);
void ngx_do_node_refuse(ngx_do_node_conn_t *nc, const char *why);
ngx_int_t ngx_do_node_shutdown(ngx_do_node_conn_t *nc);
void ngx_do_node_close(ngx_do_node_conn_t *nc, ngx_uint_t answer);

/*
 * ngx_do_node_stream.c: the handshake's steps and the frames; a function
 * that returns NGX_ERROR has closed the connection
 */
ngx_int_t ngx_do_node_hello(ngx_do_node_conn_t *nc);
void ngx_do_node_read(ngx_event_t *rev);
void ngx_do_node_write(ngx_event_t *wev);
void ngx_do_node_kick(ngx_event_t *ev);
ngx_int_t ngx_do_node_flush(ngx_do_node_conn_t *nc);
ngx_int_t ngx_do_node_queue(ngx_do_node_conn_t *nc, ngx_uint_t kind,
    ngx_uint_t type, ngx_uint_t hops, ngx_uint_t status, uint64_t id,
    u_char *buf, size_t len);
void ngx_do_node_key(ngx_do_node_key_t *k, u_char *key, size_t len);

/* ngx_do_node_status.c */
ngx_int_t ngx_do_node_status_zone(ngx_conf_t *cf);
void ngx_do_node_status_init_worker(void);
void ngx_do_node_count(ngx_uint_t peer, ngx_uint_t counter);
void ngx_do_node_observe(ngx_uint_t peer, uint64_t usec);
void ngx_do_node_gauges(ngx_do_node_conn_t *nc);


#endif /* _NGX_DO_NODE_CONN_H_INCLUDED_ */
