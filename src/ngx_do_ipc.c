
/*
 * Inter-worker channels.  The master creates one AF_UNIX datagram
 * socketpair per worker slot before it forks: worker i reads end 0 of pair
 * i, every other worker writes to end 1 of pair i.  A datagram is atomic,
 * so many writers can share one write end; a message larger than a chunk
 * travels as consecutive chunks that the reader reassembles per source
 * worker.  Writes never block: what the socket does not take waits in a
 * per-peer queue, flushed on the write event, and a queue over its limit
 * fails the send (the caller answers 503).
 *
 * Every chunk carries the configuration generation: a reload creates new
 * channels, and anything of another generation is dropped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do.h"


#define NGX_DO_IPC_MAGIC          0x6e67646fu
#define NGX_DO_IPC_CHUNK          (32 * 1024)
#define NGX_DO_IPC_MAX_MESSAGE    (64 * 1024 * 1024)
#define NGX_DO_IPC_MAX_QUEUE      (64 * 1024 * 1024)
#define NGX_DO_IPC_SNDBUF         (4 * 1024 * 1024)
#define NGX_DO_IPC_RETRY          50
#define NGX_DO_IPC_IOVS           64
#define NGX_DO_IPC_HEARTBEAT      250
#define NGX_DO_IPC_LINGER         500


typedef struct {
    uint32_t                   magic;
    uint32_t                   generation;
    uint16_t                   type;
    uint16_t                   src;
    uint32_t                   len;
    uint32_t                   offset;
    uint32_t                   size;          /* of this chunk */
    uint64_t                   call_id;
} ngx_do_ipc_hdr_t;


typedef struct {
    ngx_socket_t               fd[2];
} ngx_do_ipc_chan_t;


/* the channels of one configuration cycle, freed with its pool */
typedef struct {
    ngx_uint_t                 n;
    ngx_do_ipc_chan_t          chan[1];
} ngx_do_ipc_chans_t;


typedef struct {
    ngx_queue_t                queue;
    ngx_do_ipc_hdr_t           hdr;
    u_char                    *buf;
    size_t                     sent;
} ngx_do_ipc_out_t;


typedef struct {
    ngx_connection_t          *c;
    ngx_queue_t                out;
    size_t                     queued;
    ngx_event_t                retry;
    ngx_event_t                post;          /* flush at the loop's end */
} ngx_do_ipc_peer_t;


/* a message being reassembled, one per source worker */
typedef struct {
    uint64_t                   call_id;
    ngx_uint_t                 type;
    u_char                    *buf;
    size_t                     len;
    size_t                     got;
} ngx_do_ipc_in_t;


static void ngx_do_ipc_cleanup(void *data);
static void ngx_do_ipc_read_handler(ngx_event_t *rev);
static void ngx_do_ipc_receive(ngx_do_ipc_hdr_t *hdr, u_char *data,
    size_t size);
static void ngx_do_ipc_write_handler(ngx_event_t *wev);
static void ngx_do_ipc_empty_handler(ngx_event_t *ev);
static void ngx_do_ipc_kick(ngx_event_t *ev);
static void ngx_do_ipc_linger_handler(ngx_event_t *ev);
static ngx_int_t ngx_do_ipc_flush(ngx_do_ipc_peer_t *peer);
static void ngx_do_ipc_peer_close(ngx_do_ipc_peer_t *peer,
    ngx_uint_t bounce);


static ngx_do_ipc_chans_t     *ngx_do_ipc_set;
static ngx_do_ipc_chan_t      *ngx_do_ipc_chans;
static ngx_uint_t              ngx_do_ipc_nchans;

static ngx_connection_t       *ngx_do_ipc_conn;
static ngx_do_ipc_peer_t      *ngx_do_ipc_peers;
static ngx_do_ipc_in_t        *ngx_do_ipc_in;
static ngx_do_ipc_handler_pt   ngx_do_ipc_handler;
static ngx_do_ipc_handler_pt   ngx_do_ipc_bouncer;
static ngx_event_t             ngx_do_ipc_linger;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_ipc_dumb;


/* in the master, for each configuration cycle */
ngx_int_t
ngx_do_ipc_init_master(ngx_cycle_t *cycle, ngx_uint_t n)
{
    int                  size;
    ngx_uint_t           i, j;
    ngx_pool_cleanup_t  *cln;
    ngx_do_ipc_chan_t   *chans;
    ngx_do_ipc_chans_t  *set;

    set = ngx_palloc(cycle->pool, sizeof(ngx_do_ipc_chans_t)
                                  + n * sizeof(ngx_do_ipc_chan_t));
    if (set == NULL) {
        return NGX_ERROR;
    }

    set->n = n;
    chans = set->chan;

    for (i = 0; i < n; i++) {
        chans[i].fd[0] = (ngx_socket_t) -1;
        chans[i].fd[1] = (ngx_socket_t) -1;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_do_ipc_cleanup;
    cln->data = set;

    ngx_do_ipc_set = set;
    ngx_do_ipc_chans = chans;
    ngx_do_ipc_nchans = n;

    for (i = 0; i < n; i++) {
        if (socketpair(AF_UNIX, SOCK_DGRAM, 0, chans[i].fd) == -1) {
            chans[i].fd[0] = (ngx_socket_t) -1;
            chans[i].fd[1] = (ngx_socket_t) -1;
            goto failed;
        }

        for (j = 0; j < 2; j++) {
            if (ngx_nonblocking(chans[i].fd[j]) == -1
                || fcntl(chans[i].fd[j], F_SETFD, FD_CLOEXEC) == -1)
            {
                goto failed;
            }
        }

        /* a large send buffer absorbs bursts of big request bodies */
        size = NGX_DO_IPC_SNDBUF;

#ifdef SO_SNDBUFFORCE
        if (setsockopt(chans[i].fd[1], SOL_SOCKET, SO_SNDBUFFORCE,
                       &size, sizeof(int)) == -1)
#endif
        {
            (void) setsockopt(chans[i].fd[1], SOL_SOCKET, SO_SNDBUF,
                              &size, sizeof(int));
        }
    }

    return NGX_OK;

failed:

    /*
     * Not fatal (a failed init_module would stop the master): without
     * channels every worker runs the calls it accepts, and conditional
     * commits keep that correct, if slower.
     */
    ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                  "do: worker channels could not be created, "
                  "every worker will run its own calls");

    ngx_do_ipc_cleanup(set);

    return NGX_OK;
}


/* closes the channels of one cycle; -1 marks those already closed */
static void
ngx_do_ipc_cleanup(void *data)
{
    ngx_do_ipc_chans_t  *set = data;

    ngx_uint_t  i, j;

    if (set == NULL) {
        return;
    }

    for (i = 0; i < set->n; i++) {
        for (j = 0; j < 2; j++) {
            if (set->chan[i].fd[j] != (ngx_socket_t) -1) {
                (void) close(set->chan[i].fd[j]);
                set->chan[i].fd[j] = (ngx_socket_t) -1;
            }
        }
    }

    if (set == ngx_do_ipc_set) {
        ngx_do_ipc_set = NULL;
        ngx_do_ipc_chans = NULL;
    }
}


/*
 * In a worker after fork: keep the own read end and the other workers'
 * write ends, close the rest.  A process that is not a worker passes a NULL
 * handler and keeps nothing.
 */
ngx_int_t
ngx_do_ipc_init_worker(ngx_cycle_t *cycle, ngx_do_ipc_handler_pt handler,
    ngx_do_ipc_handler_pt bouncer)
{
    ngx_uint_t          i, n, self;
    ngx_connection_t   *c;
    ngx_do_ipc_peer_t  *peer;

    if (ngx_do_ipc_chans == NULL) {
        return NGX_OK;
    }

    n = ngx_do_ipc_nchans;
    self = ngx_worker;

    if (handler == NULL || self >= n) {
        ngx_do_ipc_cleanup(ngx_do_ipc_set);
        return NGX_OK;
    }

    ngx_do_ipc_handler = handler;
    ngx_do_ipc_bouncer = bouncer;

    /* not cancelable: see ngx_do_ipc_linger_handler() */
    ngx_do_ipc_linger.handler = ngx_do_ipc_linger_handler;
    ngx_do_ipc_linger.data = &ngx_do_ipc_dumb;
    ngx_do_ipc_dumb.fd = (ngx_socket_t) -1;
    ngx_do_ipc_linger.log = cycle->log;
    ngx_add_timer(&ngx_do_ipc_linger, NGX_DO_IPC_HEARTBEAT);

    ngx_do_ipc_peers = ngx_pcalloc(cycle->pool, n * sizeof(ngx_do_ipc_peer_t));
    ngx_do_ipc_in = ngx_pcalloc(cycle->pool, n * sizeof(ngx_do_ipc_in_t));

    if (ngx_do_ipc_peers == NULL || ngx_do_ipc_in == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        peer = &ngx_do_ipc_peers[i];
        ngx_queue_init(&peer->out);

        if (i == self) {
            (void) close(ngx_do_ipc_chans[i].fd[1]);
            ngx_do_ipc_chans[i].fd[1] = (ngx_socket_t) -1;

            c = ngx_get_connection(ngx_do_ipc_chans[i].fd[0], cycle->log);
            if (c == NULL) {
                return NGX_ERROR;
            }

            ngx_do_ipc_chans[i].fd[0] = (ngx_socket_t) -1;
            c->read->handler = ngx_do_ipc_read_handler;
            c->write->handler = ngx_do_ipc_empty_handler;
            c->read->log = cycle->log;
            c->write->log = cycle->log;
            c->read->channel = 1;
            c->write->channel = 1;
            ngx_do_ipc_conn = c;

            if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        (void) close(ngx_do_ipc_chans[i].fd[0]);
        ngx_do_ipc_chans[i].fd[0] = (ngx_socket_t) -1;

        c = ngx_get_connection(ngx_do_ipc_chans[i].fd[1], cycle->log);
        if (c == NULL) {
            return NGX_ERROR;
        }

        ngx_do_ipc_chans[i].fd[1] = (ngx_socket_t) -1;
        c->data = peer;
        c->write->handler = ngx_do_ipc_write_handler;
        c->read->handler = ngx_do_ipc_empty_handler;
        c->write->log = cycle->log;
        c->read->log = cycle->log;

        /* like nginx's channels: not closed by worker_shutdown_timeout */
        c->read->channel = 1;
        c->write->channel = 1;
        peer->c = c;

        peer->retry.handler = ngx_do_ipc_kick;
        peer->retry.data = peer;
        peer->retry.log = cycle->log;
        peer->retry.cancelable = 1;

        peer->post.handler = ngx_do_ipc_kick;
        peer->post.data = peer;
        peer->post.log = cycle->log;
    }

    return NGX_OK;
}


void
ngx_do_ipc_exit_worker(void)
{
    ngx_uint_t  i;

    if (ngx_do_ipc_peers) {
        for (i = 0; i < ngx_do_ipc_nchans; i++) {
            /* the last answers (calls dropped at exit) leave if they fit */
            if (ngx_do_ipc_peers[i].c
                && !ngx_queue_empty(&ngx_do_ipc_peers[i].out))
            {
                (void) ngx_do_ipc_flush(&ngx_do_ipc_peers[i]);
            }

            ngx_do_ipc_peer_close(&ngx_do_ipc_peers[i], 0);

            if (ngx_do_ipc_in[i].buf) {
                ngx_free(ngx_do_ipc_in[i].buf);
                ngx_do_ipc_in[i].buf = NULL;
            }
        }

        ngx_do_ipc_peers = NULL;
    }

    if (ngx_do_ipc_conn) {
        ngx_close_connection(ngx_do_ipc_conn);
        ngx_do_ipc_conn = NULL;
    }

    if (ngx_do_ipc_linger.timer_set) {
        ngx_del_timer(&ngx_do_ipc_linger);
    }

    ngx_do_ipc_cleanup(ngx_do_ipc_set);
}


/*
 * Drops the channel to a peer.  With bounce set (the peer is gone, not
 * this worker), queued messages that did not start to leave go to the
 * bouncer, so that their calls run here.
 */
static void
ngx_do_ipc_peer_close(ngx_do_ipc_peer_t *peer, ngx_uint_t bounce)
{
    ngx_queue_t       *q;
    ngx_do_ipc_out_t  *out;

    while (!ngx_queue_empty(&peer->out)) {
        q = ngx_queue_head(&peer->out);
        ngx_queue_remove(q);
        out = ngx_queue_data(q, ngx_do_ipc_out_t, queue);

        if (bounce && out->sent == 0 && ngx_do_ipc_bouncer) {
            ngx_do_ipc_bouncer(out->hdr.type, out->hdr.src, out->hdr.call_id,
                               out->buf, out->hdr.len);

        } else {
            ngx_free(out->buf);
        }

        ngx_free(out);
    }

    peer->queued = 0;

    if (peer->retry.timer_set) {
        ngx_del_timer(&peer->retry);
    }

    if (peer->post.posted) {
        ngx_delete_posted_event(&peer->post);
    }

    if (peer->c) {
        ngx_close_connection(peer->c);
        peer->c = NULL;
    }
}


/*
 * Sends a message.  On NGX_OK it takes ownership of buf (freed once sent);
 * on failure buf stays the caller's.  NGX_DECLINED: the peer is gone (its
 * channel is closed); NGX_BUSY: the peer's queue is full; NGX_ERROR: any
 * other failure.
 */
ngx_int_t
ngx_do_ipc_send(ngx_uint_t dst, ngx_uint_t type, uint64_t call_id,
    u_char *buf, size_t len)
{
    ngx_do_ipc_out_t   *out;
    ngx_do_ipc_peer_t  *peer;

    if (ngx_do_ipc_peers == NULL || dst >= ngx_do_ipc_nchans
        || ngx_do_ipc_peers[dst].c == NULL)
    {
        return NGX_DECLINED;
    }

    peer = &ngx_do_ipc_peers[dst];

    /*
     * A full queue refuses new calls and fan-outs; replies to calls it took
     * still go
     */
    if (len > NGX_DO_IPC_MAX_MESSAGE
        || (type != NGX_DO_IPC_REPLY
            && peer->queued + len > NGX_DO_IPC_MAX_QUEUE))
    {
        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0, NGX_DO_LOG_IPC,
                             "do: channel to worker %ui is full "
                             "(%uz bytes queued), message of %uz bytes "
                             "refused", dst, peer->queued, len);
        return NGX_BUSY;
    }

    out = ngx_calloc(sizeof(ngx_do_ipc_out_t), ngx_cycle->log);
    if (out == NULL) {
        return NGX_ERROR;
    }

    out->hdr.magic = NGX_DO_IPC_MAGIC;
    out->hdr.generation = (uint32_t) ngx_do_runtime.generation;
    out->hdr.type = (uint16_t) type;
    out->hdr.src = (uint16_t) ngx_worker;
    out->hdr.len = (uint32_t) len;
    out->hdr.offset = 0;
    out->hdr.size = 0;
    out->hdr.call_id = call_id;
    out->buf = buf;
    out->sent = 0;

    ngx_queue_insert_tail(&peer->out, &out->queue);
    peer->queued += len;

    if (!peer->post.posted) {
        ngx_post_event(&peer->post, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * Writes the queue as datagrams of up to NGX_DO_IPC_CHUNK payload bytes,
 * each holding the next chunk of as many messages as fit.  NGX_OK: queue
 * empty; NGX_AGAIN: socket full; NGX_DECLINED: peer gone.
 */
static ngx_int_t
ngx_do_ipc_flush(ngx_do_ipc_peer_t *peer)
{
    size_t             room, size;
    ssize_t            n;
    ngx_err_t          err;
    ngx_uint_t         i, k;
    ngx_queue_t       *q;
    struct iovec       iov[NGX_DO_IPC_IOVS];
    struct msghdr      msg;
    ngx_do_ipc_out_t  *out, *outs[NGX_DO_IPC_IOVS / 2];

    while (!ngx_queue_empty(&peer->out)) {

        room = NGX_DO_IPC_CHUNK;
        k = 0;

        for (q = ngx_queue_head(&peer->out);
             q != ngx_queue_sentinel(&peer->out) && k < NGX_DO_IPC_IOVS / 2;
             q = ngx_queue_next(q))
        {
            out = ngx_queue_data(q, ngx_do_ipc_out_t, queue);
            size = ngx_min(out->hdr.len - out->sent, room);

            if (size == 0 && out->hdr.len > out->sent) {
                break;
            }

            out->hdr.offset = (uint32_t) out->sent;
            out->hdr.size = (uint32_t) size;

            iov[2 * k].iov_base = &out->hdr;
            iov[2 * k].iov_len = sizeof(ngx_do_ipc_hdr_t);
            iov[2 * k + 1].iov_base = out->buf + out->sent;
            iov[2 * k + 1].iov_len = size;
            outs[k++] = out;

            room -= size;

            if (out->sent + size < out->hdr.len) {
                /* a big message fills the datagram */
                break;
            }
        }

        ngx_memzero(&msg, sizeof(struct msghdr));
        msg.msg_iov = iov;
        msg.msg_iovlen = 2 * k;

        n = sendmsg(peer->c->fd, &msg, 0);

        if (n == -1) {
            err = ngx_socket_errno;

            if (err == NGX_EAGAIN || err == NGX_EINTR) {
                if (ngx_handle_write_event(peer->c->write, 0) != NGX_OK) {
                    return NGX_ERROR;
                }

                if (!peer->retry.timer_set) {
                    ngx_add_timer(&peer->retry, NGX_DO_IPC_RETRY);
                }

                return NGX_AGAIN;
            }

            if (err == NGX_ECONNREFUSED || err == NGX_EPIPE
                || err == NGX_ENOTCONN)
            {
                ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, err,
                                     NGX_DO_LOG_IPC,
                                     "do: worker channel closed");
                return NGX_DECLINED;
            }

            /* anything else (ENOBUFS, ...) may pass: retry later */
            ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, err,
                                 NGX_DO_LOG_IPC,
                                 "do: sendmsg() to a worker channel failed");

            if (!peer->retry.timer_set) {
                ngx_add_timer(&peer->retry, NGX_DO_IPC_RETRY);
            }

            return NGX_AGAIN;
        }

        for (i = 0; i < k; i++) {
            out = outs[i];
            out->sent += out->hdr.size;

            if (out->sent < out->hdr.len) {
                continue;
            }

            ngx_queue_remove(&out->queue);
            peer->queued -= out->hdr.len;
            ngx_free(out->buf);
            ngx_free(out);
        }
    }

    if (peer->retry.timer_set) {
        ngx_del_timer(&peer->retry);
    }

    return NGX_OK;
}


static void
ngx_do_ipc_write_handler(ngx_event_t *wev)
{
    ngx_connection_t   *c;
    ngx_do_ipc_peer_t  *peer;

    c = wev->data;
    peer = c->data;

    switch (ngx_do_ipc_flush(peer)) {

    case NGX_DECLINED:
    case NGX_ERROR:
        ngx_do_ipc_peer_close(peer, 1);
        break;

    default:
        break;
    }
}


static void
ngx_do_ipc_empty_handler(ngx_event_t *ev)
{
}


/*
 * When the workers of a generation are told to quit, one of them may have
 * sent a call to another just before it learned so.  A timer that is not
 * cancelable keeps a worker from exiting while it is pending: it beats
 * while the worker runs, and once the worker is exiting it holds it
 * NGX_DO_IPC_LINGER more, reading its channel, then lets it go.
 */
static void
ngx_do_ipc_linger_handler(ngx_event_t *ev)
{
    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, NGX_DO_IPC_HEARTBEAT);
        return;
    }

    if (ev->data == NULL) {
        ev->data = ev;
        ngx_add_timer(ev, NGX_DO_IPC_LINGER);
    }
}


/*
 * The end of a loop iteration (posted) and the safety net in case a write
 * event is missed on the shared socket (a timer): both flush the queue.
 */
static void
ngx_do_ipc_kick(ngx_event_t *ev)
{
    ngx_do_ipc_peer_t  *peer;

    peer = ev->data;

    if (peer->c) {
        ngx_do_ipc_write_handler(peer->c->write);
    }
}


static void
ngx_do_ipc_read_handler(ngx_event_t *rev)
{
    u_char            *p, *last;
    ssize_t            n;
    ngx_err_t          err;
    ngx_connection_t  *c;
    ngx_do_ipc_hdr_t   hdr;
    u_char             buf[NGX_DO_IPC_IOVS / 2 * sizeof(ngx_do_ipc_hdr_t)
                           + NGX_DO_IPC_CHUNK];

    c = rev->data;

    for ( ;; ) {
        n = recv(c->fd, buf, sizeof(buf), 0);

        if (n == -1) {
            err = ngx_socket_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            if (err != NGX_EAGAIN) {
                ngx_log_error(NGX_LOG_ERR, rev->log, err,
                              "do: recv() on the worker channel failed");
            }

            return;
        }

        /* chunks back to back; a header may be unaligned: copy it */
        p = buf;
        last = buf + n;

        while (last - p >= (ssize_t) sizeof(ngx_do_ipc_hdr_t)) {
            ngx_memcpy(&hdr, p, sizeof(ngx_do_ipc_hdr_t));
            p += sizeof(ngx_do_ipc_hdr_t);

            if (hdr.size > (size_t) (last - p)) {
                ngx_log_error(NGX_LOG_WARN, rev->log, 0,
                              "do: malformed datagram of %z bytes dropped", n);
                break;
            }

            ngx_do_ipc_receive(&hdr, p, hdr.size);
            p += hdr.size;

            if (ngx_do_ipc_conn == NULL) {
                /* the worker is exiting */
                return;
            }
        }
    }
}


static void
ngx_do_ipc_receive(ngx_do_ipc_hdr_t *hdr, u_char *data, size_t size)
{
    u_char           *buf;
    ngx_do_ipc_in_t  *in;

    if (hdr->magic != NGX_DO_IPC_MAGIC
        || hdr->generation != (uint32_t) ngx_do_runtime.generation
        || hdr->src >= ngx_do_ipc_nchans
        || hdr->len > NGX_DO_IPC_MAX_MESSAGE
        || hdr->type < NGX_DO_IPC_CALL || hdr->type > NGX_DO_IPC_FANOUT)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "do: foreign or stale channel message dropped "
                      "(generation %uD, ours %ui)",
                      hdr->generation, ngx_do_runtime.generation);
        return;
    }

    in = &ngx_do_ipc_in[hdr->src];

    if (hdr->offset == 0) {
        if (in->buf) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "do: incomplete message from worker %uD dropped",
                          (uint32_t) hdr->src);
            ngx_free(in->buf);
        }

        in->buf = ngx_alloc(hdr->len ? hdr->len : 1, ngx_cycle->log);
        if (in->buf == NULL) {
            return;
        }

        in->call_id = hdr->call_id;
        in->type = hdr->type;
        in->len = hdr->len;
        in->got = 0;

    } else if (in->buf == NULL || in->call_id != hdr->call_id
               || in->got != hdr->offset)
    {
        /* the head of this message was lost with a dead worker */
        return;
    }

    if (size > in->len - in->got) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "do: oversized chunk from worker %uD dropped",
                      (uint32_t) hdr->src);
        ngx_free(in->buf);
        in->buf = NULL;
        return;
    }

    ngx_memcpy(in->buf + in->got, data, size);
    in->got += size;

    if (in->got < in->len) {
        return;
    }

    buf = in->buf;
    in->buf = NULL;

    ngx_do_ipc_handler(in->type, hdr->src, in->call_id, buf, in->len);
}
