
/*
 * The bytes of a connection between nodes (ngx_do_node.c has the rest).
 *
 * A connection, either way, is a byte stream read into a buffer and a
 * queue of frames written with writev() from a posted event, so that what
 * one loop iteration queued leaves in one write, as the worker channels
 * do.  The handshake comes first:
 *
 *   connecting -> accepting  HELLO      magic, nonce_c, name_c
 *   accepting -> connecting  CHALLENGE  magic, nonce_s, name_s, proof_s
 *   connecting -> accepting  AUTH       magic, proof_c
 *
 * proof = HMAC-SHA-256(secret, label || nonce_c || nonce_s || name_c ||
 * name_s) with a label per role, and the key of each direction the same
 * with a label of its own.  The connecting side checks proof_s and the
 * name it expected before it says anything authenticated; the accepting
 * side acts on no frame before proof_c and name_c (in the registry) are
 * checked.  Then each frame is:
 *
 *   header (32)  kind, type, hops, 0, status, length, 0, id, sequence
 *   tag1 (16)    HMAC(key, header), truncated
 *   payload      length bytes, at most NGX_DO_NODE_MAX_FRAME
 *   tag2 (16)    HMAC(key, tag1 || payload), truncated
 *
 * The header is authenticated before its length is believed; a frame
 * whose sequence is not the next one of its direction closes the
 * connection, as does any tag that does not match.
 *
 * Requests go out on the worker's own connection to a peer and their
 * replies come back on it; requests from peers come in on connections
 * they made, and the replies go back there.  Counters live in a small
 * shared zone, per peer, so that do_status shows the whole node.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ngx_do_node_conn.h"


#define NGX_DO_NODE_MAGIC         "DOn1"
#define NGX_DO_NODE_PROOF         32
#define NGX_DO_NODE_HELLO         (4 + NGX_DO_NODE_NONCE + 1 + NGX_DO_NODE_NAME)
#define NGX_DO_NODE_CHALLENGE     (NGX_DO_NODE_HELLO + NGX_DO_NODE_PROOF)
#define NGX_DO_NODE_AUTH          (4 + NGX_DO_NODE_PROOF)
#define NGX_DO_NODE_IOVS          64


static ngx_int_t ngx_do_node_got_hello(ngx_do_node_conn_t *nc, u_char *p);
static ngx_int_t ngx_do_node_got_challenge(ngx_do_node_conn_t *nc,
    u_char *p);
static ngx_int_t ngx_do_node_got_auth(ngx_do_node_conn_t *nc, u_char *p);
static void ngx_do_node_proof(ngx_do_node_conn_t *nc, const char *label,
    u_char *out);
static void ngx_do_node_keys(ngx_do_node_conn_t *nc);
static ngx_int_t ngx_do_node_parse(ngx_do_node_conn_t *nc);
static ngx_int_t ngx_do_node_header(ngx_do_node_conn_t *nc, u_char *p);
static ngx_int_t ngx_do_node_frame(ngx_do_node_conn_t *nc);
static ngx_int_t ngx_do_node_queue_raw(ngx_do_node_conn_t *nc,
    u_char *msg, size_t len);
static void ngx_do_node_seal(ngx_do_node_conn_t *nc, ngx_do_node_out_t *out);
static void ngx_do_node_mac(ngx_do_node_key_t *k, u_char *a, size_t alen,
    u_char *b, size_t blen, u_char *out);
static void ngx_do_node_put32(u_char *p, uint32_t n);
static uint32_t ngx_do_node_get32(u_char *p);
static void ngx_do_node_put64(u_char *p, uint64_t n);
static uint64_t ngx_do_node_get64(u_char *p);


/* the connecting side's first words: who it is, and its nonce */
ngx_int_t
ngx_do_node_hello(ngx_do_node_conn_t *nc)
{
    u_char     msg[NGX_DO_NODE_HELLO], *p;
    ngx_str_t  self;

    ngx_memzero(msg, sizeof(msg));
    self = ngx_do_cluster->name;

    if (RAND_bytes(nc->nonce_c, NGX_DO_NODE_NONCE) != 1
        || self.len == 0 || self.len > NGX_DO_NODE_NAME)
    {
        return NGX_ERROR;
    }

    p = ngx_cpymem(msg, NGX_DO_NODE_MAGIC, 4);
    p = ngx_cpymem(p, nc->nonce_c, NGX_DO_NODE_NONCE);
    *p++ = (u_char) self.len;
    ngx_memcpy(p, self.data, self.len);

    nc->state = NGX_DO_NODE_WAIT_CHALL;

    return ngx_do_node_queue_raw(nc, msg, sizeof(msg));
}


/* accepting side: a HELLO; the answer is a CHALLENGE */
static ngx_int_t
ngx_do_node_got_hello(ngx_do_node_conn_t *nc, u_char *p)
{
    u_char     msg[NGX_DO_NODE_CHALLENGE], *m;
    ngx_str_t  self;

    if (ngx_memcmp(p, NGX_DO_NODE_MAGIC, 4) != 0) {
        ngx_do_node_refuse(nc, "not a node's handshake");
        return NGX_ERROR;
    }

    p += 4;
    ngx_memcpy(nc->nonce_c, p, NGX_DO_NODE_NONCE);
    p += NGX_DO_NODE_NONCE;

    nc->name_len = *p++;

    if (nc->name_len == 0 || nc->name_len > NGX_DO_NODE_NAME) {
        nc->name_len = 0;
        ngx_do_node_refuse(nc, "invalid node name");
        return NGX_ERROR;
    }

    ngx_memcpy(nc->name, p, nc->name_len);

    self = ngx_do_cluster->name;

    if (RAND_bytes(nc->nonce_s, NGX_DO_NODE_NONCE) != 1
        || self.len == 0 || self.len > NGX_DO_NODE_NAME)
    {
        ngx_do_node_close(nc, 1);
        return NGX_ERROR;
    }

    ngx_memzero(msg, sizeof(msg));
    m = ngx_cpymem(msg, NGX_DO_NODE_MAGIC, 4);
    m = ngx_cpymem(m, nc->nonce_s, NGX_DO_NODE_NONCE);
    *m++ = (u_char) self.len;
    ngx_memcpy(m, self.data, self.len);

    ngx_do_node_proof(nc, "DOns", msg + NGX_DO_NODE_HELLO);

    nc->state = NGX_DO_NODE_WAIT_AUTH;

    if (ngx_do_node_queue_raw(nc, msg, sizeof(msg)) != NGX_OK) {
        ngx_do_node_close(nc, 1);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Connecting side: the peer proved the secret and is the node expected;
 * this side proves it too, and frames may follow at once.
 */
static ngx_int_t
ngx_do_node_got_challenge(ngx_do_node_conn_t *nc, u_char *p)
{
    u_char      proof[SHA256_DIGEST_LENGTH], msg[NGX_DO_NODE_AUTH];
    ngx_uint_t  len;

    len = p[4 + NGX_DO_NODE_NONCE];

    if (ngx_memcmp(p, NGX_DO_NODE_MAGIC, 4) != 0
        || len != nc->name_len
        || ngx_memcmp(p + 4 + NGX_DO_NODE_NONCE + 1, nc->name, len) != 0)
    {
        ngx_do_node_refuse(nc, "not the node expected");
        return NGX_ERROR;
    }

    ngx_memcpy(nc->nonce_s, p + 4, NGX_DO_NODE_NONCE);

    ngx_do_node_proof(nc, "DOns", proof);

    if (CRYPTO_memcmp(proof, p + NGX_DO_NODE_HELLO, NGX_DO_NODE_PROOF) != 0) {
        ngx_do_node_refuse(nc, "bad proof of the secret");
        return NGX_ERROR;
    }

    ngx_memcpy(msg, NGX_DO_NODE_MAGIC, 4);
    ngx_do_node_proof(nc, "DOnc", msg + 4);

    if (ngx_do_node_queue_raw(nc, msg, sizeof(msg)) != NGX_OK) {
        ngx_do_node_close(nc, 1);
        return NGX_ERROR;
    }

    ngx_do_node_keys(nc);

    return NGX_OK;
}


/* accepting side: the proof, then the name must be in the registry */
static ngx_int_t
ngx_do_node_got_auth(ngx_do_node_conn_t *nc, u_char *p)
{
    u_char     proof[SHA256_DIGEST_LENGTH];
    ngx_str_t  name;

    ngx_do_node_proof(nc, "DOnc", proof);

    if (ngx_memcmp(p, NGX_DO_NODE_MAGIC, 4) != 0
        || CRYPTO_memcmp(proof, p + 4, NGX_DO_NODE_PROOF) != 0)
    {
        ngx_do_node_refuse(nc, "bad proof of the secret");
        return NGX_ERROR;
    }

    name.data = nc->name;
    name.len = nc->name_len;

    nc->peer = ngx_do_cluster_peer_find(&name);

    if (nc->peer == NGX_DO_CLUSTER_NONE) {
        ngx_do_node_refuse(nc, "node not in the registry");
        return NGX_ERROR;
    }

    ngx_do_node_keys(nc);

    return NGX_OK;
}


/* HMAC(secret, label || nonce_c || nonce_s || names), the whole digest */
static void
ngx_do_node_proof(ngx_do_node_conn_t *nc, const char *label, u_char *out)
{
    u_char     t[4 + 2 * NGX_DO_NODE_NONCE + 2 + 2 * NGX_DO_NODE_NAME], *p;
    ngx_str_t  self, client, server;

    self = ngx_do_cluster->name;

    if (nc->incoming) {
        client.data = nc->name;
        client.len = nc->name_len;
        server = self;

    } else {
        client = self;
        server.data = nc->name;
        server.len = nc->name_len;
    }

    client.len = ngx_min(client.len, NGX_DO_NODE_NAME);
    server.len = ngx_min(server.len, NGX_DO_NODE_NAME);

    p = ngx_cpymem(t, label, 4);
    p = ngx_cpymem(p, nc->nonce_c, NGX_DO_NODE_NONCE);
    p = ngx_cpymem(p, nc->nonce_s, NGX_DO_NODE_NONCE);
    *p++ = (u_char) client.len;
    p = ngx_do_cpymem(p, client.data, client.len);
    *p++ = (u_char) server.len;
    p = ngx_do_cpymem(p, server.data, server.len);

    ngx_do_node_mac(&ngx_do_node_secret, t, p - t, NULL, 0, out);
}


/* both proofs are in: the keys of the two directions, frames may flow */
static void
ngx_do_node_keys(ngx_do_node_conn_t *nc)
{
    u_char  c2s[SHA256_DIGEST_LENGTH], s2c[SHA256_DIGEST_LENGTH];

    ngx_do_node_proof(nc, "DOk1", c2s);
    ngx_do_node_proof(nc, "DOk2", s2c);

    ngx_do_node_key(&nc->send_key, nc->incoming ? s2c : c2s,
                    SHA256_DIGEST_LENGTH);
    ngx_do_node_key(&nc->recv_key, nc->incoming ? c2s : s2c,
                    SHA256_DIGEST_LENGTH);

    ngx_explicit_memzero(c2s, sizeof(c2s));
    ngx_explicit_memzero(s2c, sizeof(s2c));

    nc->keyed = 1;

    ngx_do_node_ready(nc);
}


void
ngx_do_node_read(ngx_event_t *rev)
{
    ssize_t              n;
    ngx_connection_t    *c;
    ngx_do_node_conn_t  *nc;

    c = rev->data;
    nc = c->data;

    if (c->close) {
        /* the worker is exiting (an incoming connection is "idle") */
        c->close = 0;

        if (ngx_do_node_shutdown(nc) != NGX_OK) {
            return;
        }
    }

    for ( ;; ) {

        if (nc->frame && nc->rpos == nc->rlast) {
            /* a large payload: straight into its buffer */
            n = c->recv(c, nc->frame + nc->got, nc->need - nc->got);

            if (n > 0) {
                nc->got += n;

                if (ngx_do_node_parse(nc) != NGX_OK) {
                    return;
                }

                continue;
            }

        } else {
            if (nc->rpos == nc->rlast) {
                nc->rpos = 0;
                nc->rlast = 0;

            } else if (nc->rpos > 0) {
                nc->rlast -= nc->rpos;
                ngx_memmove(nc->rbuf, nc->rbuf + nc->rpos, nc->rlast);
                nc->rpos = 0;
            }

            n = c->recv(c, nc->rbuf + nc->rlast, NGX_DO_NODE_BUF - nc->rlast);

            if (n > 0) {
                nc->rlast += n;

                if (ngx_do_node_parse(nc) != NGX_OK) {
                    return;
                }

                continue;
            }
        }

        if (n == NGX_AGAIN) {
            break;
        }

        /* closed by the peer, or an error */
        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, c->log, 0,
                       "do node: connection %s \"%*s\" closed",
                       nc->incoming ? "from" : "to", nc->name_len, nc->name);

        if (nc->state != NGX_DO_NODE_READY && nc->incoming) {
            ngx_do_node_refuse(nc, "closed during the handshake");
            return;
        }

        ngx_do_node_close(nc, 1);
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_do_node_close(nc, 1);
    }
}


/*
 * What the buffer holds: handshake messages, frames' heads and payloads.
 * NGX_ERROR: the connection was closed.
 */
static ngx_int_t
ngx_do_node_parse(ngx_do_node_conn_t *nc)
{
    size_t      size, avail;
    u_char     *p;
    ngx_int_t   rc;

    for ( ;; ) {
        avail = nc->rlast - nc->rpos;
        p = nc->rbuf + nc->rpos;

        if (nc->frame) {
            size = ngx_min(avail, nc->need - nc->got);
            ngx_memcpy(nc->frame + nc->got, p, size);
            nc->got += size;
            nc->rpos += size;

            if (nc->got < nc->need) {
                return NGX_OK;
            }

            if (ngx_do_node_frame(nc) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        switch (nc->state) {

        case NGX_DO_NODE_WAIT_HELLO:
            size = NGX_DO_NODE_HELLO;
            break;

        case NGX_DO_NODE_WAIT_CHALL:
            size = NGX_DO_NODE_CHALLENGE;
            break;

        case NGX_DO_NODE_WAIT_AUTH:
            size = NGX_DO_NODE_AUTH;
            break;

        case NGX_DO_NODE_READY:
            size = NGX_DO_NODE_HEAD;
            break;

        default:
            /* bytes before the connect completed: not a node */
            ngx_do_node_close(nc, 1);
            return NGX_ERROR;
        }

        if (avail < size) {
            return NGX_OK;
        }

        nc->rpos += size;

        switch (nc->state) {

        case NGX_DO_NODE_WAIT_HELLO:
            rc = ngx_do_node_got_hello(nc, p);
            break;

        case NGX_DO_NODE_WAIT_CHALL:
            rc = ngx_do_node_got_challenge(nc, p);
            break;

        case NGX_DO_NODE_WAIT_AUTH:
            rc = ngx_do_node_got_auth(nc, p);
            break;

        default: /* NGX_DO_NODE_READY */
            rc = ngx_do_node_header(nc, p);
        }

        if (rc != NGX_OK) {
            /* closed, nc is gone */
            return NGX_ERROR;
        }
    }
}


/* a frame's head: authenticated, then believed; its payload is awaited */
static ngx_int_t
ngx_do_node_header(ngx_do_node_conn_t *nc, u_char *p)
{
    u_char      tag[SHA256_DIGEST_LENGTH];
    size_t      len;
    ngx_uint_t  kind;

    ngx_do_node_mac(&nc->recv_key, p, NGX_DO_NODE_HDR, NULL, 0, tag);

    if (CRYPTO_memcmp(tag, p + NGX_DO_NODE_HDR, NGX_DO_NODE_TAG) != 0) {
        ngx_do_node_refuse(nc, "a frame failed its MAC");
        return NGX_ERROR;
    }

    if (ngx_do_node_get64(p + 24) != nc->recv_seq) {
        ngx_do_node_refuse(nc, "a frame out of sequence");
        return NGX_ERROR;
    }

    kind = p[0];
    len = ngx_do_node_get32(p + 8);

    if ((nc->incoming ? kind != NGX_DO_NODE_REQUEST
                        && kind != NGX_DO_NODE_MESSAGE
                      : kind != NGX_DO_NODE_REPLY)
        && !(kind == NGX_DO_NODE_GOAWAY && len == 0))
    {
        ngx_do_node_refuse(nc, "an invalid frame");
        return NGX_ERROR;
    }

    if (len > NGX_DO_NODE_MAX_FRAME)
    {
        ngx_do_node_refuse(nc, "an invalid frame");
        return NGX_ERROR;
    }

    nc->frame = ngx_alloc(len + NGX_DO_NODE_TAG, ngx_cycle->log);
    if (nc->frame == NULL) {
        ngx_do_node_close(nc, 1);
        return NGX_ERROR;
    }

    ngx_memcpy(nc->head, p, NGX_DO_NODE_HEAD);
    nc->need = len + NGX_DO_NODE_TAG;
    nc->got = 0;

    return NGX_OK;
}


/* a whole frame: its payload authenticated, then handed over */
static ngx_int_t
ngx_do_node_frame(ngx_do_node_conn_t *nc)
{
    u_char    *buf, *h, tag[SHA256_DIGEST_LENGTH];
    size_t     len;

    buf = nc->frame;
    len = nc->need - NGX_DO_NODE_TAG;
    h = nc->head;

    nc->frame = NULL;

    ngx_do_node_mac(&nc->recv_key, h + NGX_DO_NODE_HDR, NGX_DO_NODE_TAG,
                    buf, len, tag);

    if (CRYPTO_memcmp(tag, buf + len, NGX_DO_NODE_TAG) != 0) {
        ngx_free(buf);
        ngx_do_node_refuse(nc, "a frame failed its MAC");
        return NGX_ERROR;
    }

    nc->recv_seq++;

    /* handlers only queue frames: nc stays */
    ngx_do_node_dispatch(nc, h[0], h[1], h[2], ngx_do_node_get32(h + 4),
                         ngx_do_node_get64(h + 16), buf, len);

    return NGX_OK;
}


/* a frame into the connection's queue, sealed when it is written */
ngx_int_t
ngx_do_node_queue(ngx_do_node_conn_t *nc, ngx_uint_t kind, ngx_uint_t type,
    ngx_uint_t hops, ngx_uint_t status, uint64_t id, u_char *buf, size_t len)
{
    u_char             *h;
    ngx_do_node_out_t  *out;

    out = ngx_calloc(sizeof(ngx_do_node_out_t), ngx_cycle->log);
    if (out == NULL) {
        return NGX_ERROR;
    }

    h = out->head;
    h[0] = (u_char) kind;
    h[1] = (u_char) type;
    h[2] = (u_char) ngx_min(hops, 255);
    ngx_do_node_put32(h + 4, (uint32_t) status);
    ngx_do_node_put32(h + 8, (uint32_t) len);
    ngx_do_node_put64(h + 16, id);

    out->buf = buf;
    out->len = len;
    out->id = id;
    out->request = (kind == NGX_DO_NODE_REQUEST);

    ngx_queue_insert_tail(&nc->out, &out->queue);
    nc->queued += len;

    if (nc->keyed && !nc->post.posted) {
        ngx_post_event(&nc->post, &ngx_posted_events);
    }

    return NGX_OK;
}


/* a handshake message: before any frame, written as it is */
static ngx_int_t
ngx_do_node_queue_raw(ngx_do_node_conn_t *nc, u_char *msg, size_t len)
{
    ngx_do_node_out_t  *out;

    out = ngx_calloc(sizeof(ngx_do_node_out_t) + len, ngx_cycle->log);
    if (out == NULL) {
        return NGX_ERROR;
    }

    out->buf = (u_char *) (out + 1);
    out->len = len;
    out->raw = 1;
    out->sealed = 1;
    ngx_memcpy(out->buf, msg, len);

    /* before the frames queued while the handshake ran */
    ngx_queue_insert_head(&nc->out, &out->queue);

    if (!nc->post.posted) {
        ngx_post_event(&nc->post, &ngx_posted_events);
    }

    return NGX_OK;
}


/* the frame's sequence number and tags, in the order frames leave */
static void
ngx_do_node_seal(ngx_do_node_conn_t *nc, ngx_do_node_out_t *out)
{
    u_char  tag[SHA256_DIGEST_LENGTH];

    ngx_do_node_put64(out->head + 24, nc->send_seq++);

    ngx_do_node_mac(&nc->send_key, out->head, NGX_DO_NODE_HDR, NULL, 0, tag);
    ngx_memcpy(out->head + NGX_DO_NODE_HDR, tag, NGX_DO_NODE_TAG);

    ngx_do_node_mac(&nc->send_key, out->head + NGX_DO_NODE_HDR,
                    NGX_DO_NODE_TAG, out->buf, out->len, tag);
    ngx_memcpy(out->tail, tag, NGX_DO_NODE_TAG);

    out->sealed = 1;
}


void
ngx_do_node_kick(ngx_event_t *ev)
{
    ngx_do_node_conn_t  *nc;

    nc = ev->data;

    ngx_do_node_write(nc->c->write);
}


void
ngx_do_node_write(ngx_event_t *wev)
{
    ngx_connection_t    *c;
    ngx_do_node_conn_t  *nc;

    c = wev->data;
    nc = c->data;

    if (nc->state == NGX_DO_NODE_CONNECTING) {
        return;
    }

    if (ngx_do_node_flush(nc) == NGX_ERROR) {
        ngx_do_node_close(nc, 1);
        return;
    }

    ngx_do_node_gauges(nc);
}


/*
 * Writes what is queued, as many frames per writev() as fit; frames
 * queued before the keys wait.  NGX_OK or NGX_AGAIN (the socket is full,
 * the write event comes back), NGX_ERROR.
 */
ngx_int_t
ngx_do_node_flush(ngx_do_node_conn_t *nc)
{
    size_t              size, skip, part[3];
    ssize_t             n;
    u_char             *base[3];
    ngx_err_t           err;
    ngx_uint_t          i, k, j;
    ngx_queue_t        *q;
    struct iovec        iov[NGX_DO_NODE_IOVS];
    ngx_do_node_out_t  *out;

    while (!ngx_queue_empty(&nc->out)) {
        k = 0;

        for (q = ngx_queue_head(&nc->out);
             q != ngx_queue_sentinel(&nc->out) && k + 3 <= NGX_DO_NODE_IOVS;
             q = ngx_queue_next(q))
        {
            out = ngx_queue_data(q, ngx_do_node_out_t, queue);

            if (!out->sealed) {
                if (!nc->keyed) {
                    break;
                }

                ngx_do_node_seal(nc, out);
            }

            if (out->raw) {
                base[0] = out->buf;
                part[0] = out->len;
                part[1] = 0;
                part[2] = 0;

            } else {
                base[0] = out->head;
                part[0] = NGX_DO_NODE_HEAD;
                base[1] = out->buf;
                part[1] = out->len;
                base[2] = out->tail;
                part[2] = NGX_DO_NODE_TAG;
            }

            skip = out->sent;

            for (j = 0; j < 3; j++) {
                if (skip >= part[j]) {
                    skip -= part[j];
                    continue;
                }

                iov[k].iov_base = base[j] + skip;
                iov[k].iov_len = part[j] - skip;
                k++;
                skip = 0;
            }
        }

        if (k == 0) {
            return NGX_OK;
        }

        n = writev(nc->c->fd, iov, (int) k);

        if (n == -1) {
            err = ngx_socket_errno;

            if (err == NGX_EAGAIN || err == NGX_EINTR) {
                /* as ngx_writev(): else epoll is never asked for EPOLLOUT */
                nc->c->write->ready = 0;

                if (ngx_handle_write_event(nc->c->write, 0) != NGX_OK) {
                    return NGX_ERROR;
                }

                return NGX_AGAIN;
            }

            ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, err,
                           "do node: writev() to \"%*s\" failed",
                           nc->name_len, nc->name);
            return NGX_ERROR;
        }

        /* whole frames leave the queue; a partial one keeps its place */
        while (n > 0) {
            q = ngx_queue_head(&nc->out);
            out = ngx_queue_data(q, ngx_do_node_out_t, queue);

            size = out->raw ? out->len
                            : NGX_DO_NODE_HEAD + out->len + NGX_DO_NODE_TAG;
            i = ngx_min((size_t) n, size - out->sent);
            out->sent += i;
            n -= i;

            if (out->sent < size) {
                break;
            }

            ngx_queue_remove(q);
            nc->queued -= out->raw ? 0 : out->len;

            if (!out->raw) {
                ngx_free(out->buf);
            }

            ngx_free(out);
        }
    }

    return NGX_OK;
}


#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

void
ngx_do_node_key(ngx_do_node_key_t *k, u_char *key, size_t len)
{
    u_char      ipad[SHA256_CBLOCK], opad[SHA256_CBLOCK];
    ngx_uint_t  i;

    ngx_memzero(ipad, sizeof(ipad));
    ngx_memcpy(ipad, key, ngx_min(len, sizeof(ipad)));
    ngx_memcpy(opad, ipad, sizeof(ipad));

    for (i = 0; i < SHA256_CBLOCK; i++) {
        ipad[i] ^= 0x36;
        opad[i] ^= 0x5c;
    }

    SHA256_Init(&k->inner);
    SHA256_Update(&k->inner, ipad, sizeof(ipad));
    SHA256_Init(&k->outer);
    SHA256_Update(&k->outer, opad, sizeof(opad));

    ngx_explicit_memzero(ipad, sizeof(ipad));
    ngx_explicit_memzero(opad, sizeof(opad));
}


/* HMAC-SHA-256(key, a || b) into out (32 bytes) */
static void
ngx_do_node_mac(ngx_do_node_key_t *k, u_char *a, size_t alen, u_char *b,
    size_t blen, u_char *out)
{
    u_char      md[SHA256_DIGEST_LENGTH];
    SHA256_CTX  c;

    c = k->inner;
    SHA256_Update(&c, a, alen);

    if (blen) {
        SHA256_Update(&c, b, blen);
    }

    SHA256_Final(md, &c);

    c = k->outer;
    SHA256_Update(&c, md, sizeof(md));
    SHA256_Final(out, &c);
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif


static void
ngx_do_node_put32(u_char *p, uint32_t n)
{
    p[0] = (u_char) (n >> 24);
    p[1] = (u_char) (n >> 16);
    p[2] = (u_char) (n >> 8);
    p[3] = (u_char) n;
}


static uint32_t
ngx_do_node_get32(u_char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | (uint32_t) p[3];
}


static void
ngx_do_node_put64(u_char *p, uint64_t n)
{
    ngx_do_node_put32(p, (uint32_t) (n >> 32));
    ngx_do_node_put32(p + 4, (uint32_t) n);
}


static uint64_t
ngx_do_node_get64(u_char *p)
{
    return ((uint64_t) ngx_do_node_get32(p) << 32) | ngx_do_node_get32(p + 4);
}
