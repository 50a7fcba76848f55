
/*
 * WebSocket connections: after the handshake (checked by do_pass,
 * ngx_http_do_pass.c), the connection taken over from nginx's HTTP code,
 * frames read through the pure parser (ngx_do_ws_proto.c) and a send
 * queue written as the socket allows.
 *
 * A WebSocket is created when its object accepted the join (the 101 answer
 * is the first thing queued) and started in a posted event, where the
 * request is freed the way nginx frees a keep-alive request: what stays is
 * the connection, its small pool, and this structure in it.  Reads go
 * through one buffer per worker (payload is unmasked in place and copied
 * only into the message being assembled), so an idle connection holds no
 * buffer at all.
 *
 * Nothing here finalizes a connection from outside its own event handlers:
 * a send that fails, or a queue over send_queue, marks the connection and
 * posts its write event, so a caller walking a list of connections never
 * sees one freed under it.  The queue is capped: a member that does not
 * read is closed with 1013, and the queue it left is freed.  Graceful
 * shutdown (a reload, a stop) closes every WebSocket with 1012 when newer
 * workers run, 1001 otherwise, and waits at most NGX_DO_WS_CLOSE_WAIT for
 * the client's close frame.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_do.h"
#include "ngx_do_ws.h"


#define NGX_DO_WS_READ_BUF        16384
#define NGX_DO_WS_CLOSE_WAIT      2000
#define NGX_DO_WS_KEEP_MSG        4096


typedef struct ngx_do_ws_out_s  ngx_do_ws_out_t;

struct ngx_do_ws_out_s {
    ngx_do_ws_out_t           *next;
    u_char                    *pos;
    u_char                    *last;
    unsigned                   control:1;     /* not counted in the cap */
    /* the bytes follow */
};


/* the part of a connection that outlives its request */
typedef struct {
    ngx_do_ws_t                ws;
    ngx_http_request_t        *request;       /* until started */
    ngx_event_t                start;
    u_char                    *rest;          /* input read, not parsed */
    u_char                    *rest_pos;
    u_char                    *rest_last;
    ngx_msec_t                 send_timeout;
    unsigned                   dead:1;
} ngx_do_ws_conn_t;


static ngx_do_ws_out_t *ngx_do_ws_out_alloc(ngx_do_ws_t *ws, size_t len);
static void ngx_do_ws_queue(ngx_do_ws_t *ws, ngx_do_ws_out_t *out);
static void ngx_do_ws_flush(ngx_do_ws_t *ws);
static void ngx_do_ws_overflow(ngx_do_ws_t *ws);
static void ngx_do_ws_control(ngx_do_ws_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len);
static void ngx_do_ws_start_handler(ngx_event_t *ev);
static void ngx_do_ws_request_cleanup(void *data);
static void ngx_do_ws_read_handler(ngx_event_t *rev);
static void ngx_do_ws_write_handler(ngx_event_t *wev);
static void ngx_do_ws_ping_handler(ngx_event_t *ev);
static void ngx_do_ws_read(ngx_do_ws_conn_t *wc);
static void ngx_do_ws_consume(ngx_do_ws_conn_t *wc, u_char *p, u_char *last);
static ngx_int_t ngx_do_ws_event(ngx_do_ws_t *ws, ngx_int_t rc,
    ngx_do_ws_event_t *ev);
static ngx_uint_t ngx_do_ws_over_rate(ngx_do_ws_t *ws);
static ngx_int_t ngx_do_ws_append(ngx_do_ws_t *ws, u_char *data, size_t len);
static void ngx_do_ws_check(ngx_do_ws_conn_t *wc);
static void ngx_do_ws_finalize(ngx_do_ws_conn_t *wc);
static void ngx_do_ws_free_queue(ngx_do_ws_t *ws);


static u_char  ngx_do_ws_read_buf[NGX_DO_WS_READ_BUF];


ngx_do_ws_t *
ngx_do_ws_create(ngx_http_request_t *r, ngx_do_ws_conf_t *conf,
    ngx_str_t *key, ngx_str_t *protocol, size_t max_message)
{
    u_char                    *p;
    size_t                     len;
    ngx_do_ws_t               *ws;
    ngx_do_ws_str_t            wkey;
    ngx_connection_t          *c;
    ngx_do_ws_out_t           *out;
    ngx_do_ws_conn_t          *wc;
    ngx_pool_cleanup_t        *cln;
    ngx_http_core_loc_conf_t  *clcf;
    u_char                     accept[NGX_DO_WS_ACCEPT_LEN];

    c = r->connection;

    wkey.data = key->data;
    wkey.len = key->len;

    if (ngx_do_ws_accept_key(&wkey, accept) != 0) {
        return NULL;
    }

    wc = ngx_pcalloc(c->pool, sizeof(ngx_do_ws_conn_t));
    if (wc == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_do_ws_request_cleanup;
    cln->data = wc;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    wc->request = r;
    wc->send_timeout = clcf->send_timeout;

    ws = &wc->ws;
    ws->connection = c;
    ws->conf = conf;
    ws->max_message = max_message;
    ws->out_last = &ws->out;
    ws->code = 1006;

    ngx_do_ws_parser_init(&ws->parser, max_message, 1);

    ws->ping.handler = ngx_do_ws_ping_handler;
    ws->ping.data = wc;
    ws->ping.log = c->log;

    wc->start.handler = ngx_do_ws_start_handler;
    wc->start.data = wc;
    wc->start.log = c->log;

    len = sizeof("HTTP/1.1 101 Switching Protocols" CRLF
                 "Upgrade: websocket" CRLF "Connection: Upgrade" CRLF
                 "Sec-WebSocket-Accept: " CRLF CRLF) - 1
          + NGX_DO_WS_ACCEPT_LEN;

    if (protocol->len) {
        len += sizeof("Sec-WebSocket-Protocol: " CRLF) - 1 + protocol->len;
    }

    out = ngx_do_ws_out_alloc(ws, len);
    if (out == NULL) {
        return NULL;
    }

    p = ngx_cpymem(out->pos, "HTTP/1.1 101 Switching Protocols" CRLF
                   "Upgrade: websocket" CRLF "Connection: Upgrade" CRLF
                   "Sec-WebSocket-Accept: ",
                   sizeof("HTTP/1.1 101 Switching Protocols" CRLF
                          "Upgrade: websocket" CRLF "Connection: Upgrade"
                          CRLF "Sec-WebSocket-Accept: ") - 1);
    p = ngx_cpymem(p, accept, NGX_DO_WS_ACCEPT_LEN);
    *p++ = CR; *p++ = LF;

    if (protocol->len) {
        p = ngx_cpymem(p, "Sec-WebSocket-Protocol: ",
                       sizeof("Sec-WebSocket-Protocol: ") - 1);
        p = ngx_cpymem(p, protocol->data, protocol->len);
        *p++ = CR; *p++ = LF;
    }

    *p++ = CR; *p++ = LF;
    out->last = p;
    out->control = 1;

    ngx_do_ws_queue(ws, out);

    return ws;
}


void
ngx_do_ws_start(ngx_do_ws_t *ws, ngx_http_request_t *r)
{
    ngx_do_ws_conn_t  *wc;

    wc = (ngx_do_ws_conn_t *) ws;

    /*
     * The request stays alive, its reading blocked, until the posted event
     * frees it: the caller may still be inside the request's handlers.
     */
    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_request_empty_handler;
    r->main->count++;

    ngx_post_event(&wc->start, &ngx_posted_events);
}


static void
ngx_do_ws_start_handler(ngx_event_t *ev)
{
    size_t                     n;
    ngx_buf_t                 *b;
    ngx_chain_t               *cl, *ln;
    ngx_do_ws_t               *ws;
    ngx_connection_t          *c;
    ngx_do_ws_conn_t          *wc;
    ngx_http_request_t        *r;
    ngx_http_connection_t     *hc;
    ngx_http_core_loc_conf_t  *clcf;

    wc = ev->data;
    ws = &wc->ws;
    r = wc->request;
    c = r->connection;
    hc = r->http_connection;

    /* frames the client sent right behind its handshake */
    b = r->header_in;

    if (b->pos < b->last) {
        n = b->last - b->pos;

        wc->rest = ngx_alloc(n, c->log);
        if (wc->rest == NULL) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        ngx_memcpy(wc->rest, b->pos, n);
        wc->rest_pos = wc->rest;
        wc->rest_last = wc->rest + n;
    }

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->keepalive = 0;
    r->lingering_close = 0;

    /* small frames both ways: no Nagle delay (as for proxied upgrades) */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    wc->request = NULL;

    ngx_http_free_request(r, 0);

    c->data = wc;
    c->destroyed = 0;
    c->idle = 1;
    c->log->action = "in a WebSocket";

    /* the header buffers go, as for an idle keep-alive connection */

    b = c->buffer;

    if (b && ngx_pfree(c->pool, b->start) == NGX_OK) {
        c->buffer = NULL;
    }

    for (cl = hc->free; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    for (cl = hc->busy; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    hc->free = NULL;
    hc->busy = NULL;
    hc->nbusy = 0;

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        ngx_ssl_free_buffer(c);
    }
#endif

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = ngx_do_ws_read_handler;
    c->write->handler = ngx_do_ws_write_handler;

    ws->started = 1;
    ws->last_in = ngx_current_msec;
    ngx_do_stats->ws_connections++;

    if (!ws->close_sent && ws->conf->ping_interval) {
        ngx_add_timer(&ws->ping, ws->conf->ping_interval);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "do ws: started, %uz bytes queued", ws->queued);

    if (ngx_exiting || ngx_terminate) {
        /*
         * the join was answered after this worker closed its idle
         * connections: closed now like those (nginx does the same with
         * a request that ends in an exiting worker instead of keeping
         * its connection alive), or the worker would never exit
         */
        c->close = 1;
    }

    ngx_do_ws_flush(ws);
    ngx_do_ws_read_handler(c->read);
}


/* the request went away before the WebSocket started */
static void
ngx_do_ws_request_cleanup(void *data)
{
    ngx_do_ws_conn_t  *wc = data;

    if (wc->request == NULL) {
        return;                             /* started: freed on purpose */
    }

    if (wc->start.posted) {
        ngx_delete_posted_event(&wc->start);
    }

    wc->request = NULL;
    ngx_do_ws_abort(&wc->ws);
}


void
ngx_do_ws_abort(ngx_do_ws_t *ws)
{
    ngx_do_ws_conn_t  *wc;

    wc = (ngx_do_ws_conn_t *) ws;

    if (ws->finalized) {
        return;
    }

    ws->finalized = 1;

    if (wc->start.posted) {
        ngx_delete_posted_event(&wc->start);
    }

    ngx_do_ws_free_queue(ws);

    if (ws->closed) {
        ws->closed(ws, 1006);
    }
}


static ngx_do_ws_out_t *
ngx_do_ws_out_alloc(ngx_do_ws_t *ws, size_t len)
{
    ngx_do_ws_out_t  *out;

    out = ngx_alloc(sizeof(ngx_do_ws_out_t) + len, ws->connection->log);
    if (out == NULL) {
        return NULL;
    }

    out->next = NULL;
    out->pos = (u_char *) (out + 1);
    out->last = out->pos;
    out->control = 0;

    return out;
}


static void
ngx_do_ws_queue(ngx_do_ws_t *ws, ngx_do_ws_out_t *out)
{
    *ws->out_last = out;
    ws->out_last = &out->next;
    ws->queued += out->last - out->pos;
    ngx_do_stats->ws_queued_bytes += out->last - out->pos;

    if (out->control) {
        ws->exempt += out->last - out->pos;
    }
    ngx_do_stats->ws_frames_out++;
}


ngx_int_t
ngx_do_ws_send(ngx_do_ws_t *ws, ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_do_ws_out_t  *out;

    if (ws->finalized || ws->close_sent) {
        return NGX_DECLINED;
    }

    if (ws->queued - ws->exempt + len > ws->conf->send_queue) {
        ngx_do_ws_overflow(ws);
        return NGX_DECLINED;
    }

    out = ngx_do_ws_out_alloc(ws, NGX_DO_WS_MAX_HEADER + len);
    if (out == NULL) {
        ngx_do_ws_close(ws, NGX_DO_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    out->last += ngx_do_ws_frame_header(out->pos, (int) opcode, 1, len);
    out->last = ngx_do_cpymem(out->last, data, len);

    ngx_do_ws_queue(ws, out);

    if (ws->started) {
        ngx_do_ws_flush(ws);
    }

    return NGX_OK;
}


/*
 * Frames built by the caller; capped: held to send_queue (live messages),
 * or not (what a member is given when it joins)
 */
ngx_int_t
ngx_do_ws_send_frames(ngx_do_ws_t *ws, u_char *data, size_t len,
    ngx_uint_t capped)
{
    ngx_do_ws_out_t  *out;

    if (ws->finalized || ws->close_sent) {
        return NGX_DECLINED;
    }

    if (len == 0) {
        return NGX_OK;
    }

    if (capped && ws->queued - ws->exempt + len > ws->conf->send_queue) {
        ngx_do_ws_overflow(ws);
        return NGX_DECLINED;
    }

    out = ngx_do_ws_out_alloc(ws, len);
    if (out == NULL) {
        ngx_do_ws_close(ws, NGX_DO_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    out->last = ngx_cpymem(out->pos, data, len);
    out->control = !capped;

    ngx_do_ws_queue(ws, out);

    if (ws->started) {
        ngx_do_ws_flush(ws);
    }

    return NGX_OK;
}


/*
 * A member that does not read: what it has not started to receive is
 * dropped (a frame half written stays, or the stream would break), and it
 * is closed with 1013 so that it comes back and resumes.
 */
static void
ngx_do_ws_overflow(ngx_do_ws_t *ws)
{
    ngx_do_ws_out_t   *out, *next;
    ngx_str_t          reason;

    ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                  "do: websocket closed: %uz bytes queued, over "
                  "do_ws_send_queue", ws->queued);

    ngx_do_stats->ws_slow_closed++;
    ngx_do_stats->ws_queued_bytes -= ws->queued;

    out = ws->out;

    /* a frame half written stays, and so does a 101 not yet sent */
    if (out && (!ws->started || out->pos != (u_char *) (out + 1))) {
        ws->queued = out->last - out->pos;
        ws->exempt = out->control ? ws->queued : 0;
        ws->out_last = &out->next;
        out = out->next;
        *ws->out_last = NULL;

    } else {
        ws->out = NULL;
        ws->out_last = &ws->out;
        ws->queued = 0;
        ws->exempt = 0;
    }

    ngx_do_stats->ws_queued_bytes += ws->queued;

    while (out) {
        next = out->next;
        ngx_free(out);
        out = next;
    }

    ngx_str_set(&reason, "send queue full");
    ngx_do_ws_close(ws, NGX_DO_WS_CLOSE_TRY_AGAIN, &reason);
}


void
ngx_do_ws_close(ngx_do_ws_t *ws, ngx_uint_t code, ngx_str_t *reason)
{
    size_t             len;
    ngx_do_ws_out_t   *out;

    if (ws->finalized || ws->close_sent) {
        return;
    }

    len = reason ? ngx_min(reason->len, NGX_DO_WS_MAX_CONTROL - 2) : 0;

    out = ngx_do_ws_out_alloc(ws, NGX_DO_WS_MAX_CLOSE_FRAME);
    if (out == NULL) {
        ((ngx_do_ws_conn_t *) ws)->dead = 1;
        return;
    }

    out->last += ngx_do_ws_close_frame(out->pos, (unsigned) code,
                                       reason ? reason->data : NULL, len);
    out->control = 1;

    ngx_do_ws_queue(ws, out);

    ws->close_sent = 1;

    if (!ws->close_received) {
        ws->code = code;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ws->connection->log, 0,
                   "do ws: close %ui sent", code);

    if (ws->started) {
        /* no pings now; the wait for the client's close starts once ours
         * is written (the write itself is bounded by send_timeout) */
        if (ws->ping.timer_set) {
            ngx_del_timer(&ws->ping);
        }

        ngx_do_ws_flush(ws);

        if (!ws->handling) {
            ngx_post_event(ws->connection->write, &ngx_posted_events);
        }
    }
}


static void
ngx_do_ws_control(ngx_do_ws_t *ws, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    ngx_do_ws_out_t  *out;

    out = ngx_do_ws_out_alloc(ws, NGX_DO_WS_MAX_HEADER + len);
    if (out == NULL) {
        ((ngx_do_ws_conn_t *) ws)->dead = 1;
        return;
    }

    out->last += ngx_do_ws_frame_header(out->pos, (int) opcode, 1, len);
    out->last = ngx_do_cpymem(out->last, data, len);
    out->control = 1;

    ngx_do_ws_queue(ws, out);
    ngx_do_ws_flush(ws);
}


void
ngx_do_ws_pause(ngx_do_ws_t *ws)
{
    ws->paused++;
}


void
ngx_do_ws_resume(ngx_do_ws_t *ws)
{
    if (ws->paused == 0 || --ws->paused > 0 || ws->finalized) {
        return;
    }

    /* edge-triggered: what waits in the socket gives no new event */
    if (ws->started) {
        ngx_post_event(ws->connection->read, &ngx_posted_events);
    }
}


static void
ngx_do_ws_flush(ngx_do_ws_t *ws)
{
    ssize_t            n;
    ngx_connection_t  *c;
    ngx_do_ws_out_t   *out;
    ngx_do_ws_conn_t  *wc;

    c = ws->connection;
    wc = (ngx_do_ws_conn_t *) ws;

    if (wc->dead || c->error) {
        return;
    }

    while (ws->out) {
        out = ws->out;

        n = c->send(c, out->pos, out->last - out->pos);

        if (n == NGX_ERROR) {
            wc->dead = 1;
            c->error = 1;

            if (!ws->handling) {
                ngx_post_event(c->write, &ngx_posted_events);
            }

            return;
        }

        if (n == NGX_AGAIN) {
            break;
        }

        out->pos += n;
        ws->queued -= n;
        ngx_do_stats->ws_queued_bytes -= n;

        if (out->control) {
            ws->exempt -= n;
        }

        if (out->pos < out->last) {
            continue;
        }

        ws->out = out->next;
        ngx_free(out);
    }

    if (ws->out == NULL) {
        ws->out_last = &ws->out;

        if (c->write->timer_set) {
            ngx_del_timer(c->write);
        }

        if (ws->close_sent) {
            /* the client's close frame is awaited this long */
            if (!ws->ping.timer_set && ws->started) {
                ngx_add_timer(&ws->ping, NGX_DO_WS_CLOSE_WAIT);
            }

            if (!ws->handling) {
                ngx_post_event(c->write, &ngx_posted_events);
            }
        }

        return;
    }

    if (!c->write->timer_set) {
        ngx_add_timer(c->write, wc->send_timeout);
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        wc->dead = 1;
    }
}


static void
ngx_do_ws_read_handler(ngx_event_t *rev)
{
    ngx_do_ws_t       *ws;
    ngx_connection_t  *c;
    ngx_do_ws_conn_t  *wc;

    c = rev->data;
    wc = c->data;
    ws = &wc->ws;

    ws->handling = 1;

    if (c->close) {
        /* graceful shutdown: newer workers run, or nginx stops */
        c->close = 0;
        ngx_do_ws_close(ws, ngx_do_handover_replaced()
                            ? NGX_DO_WS_CLOSE_RESTART
                            : NGX_DO_WS_CLOSE_GOING_AWAY, NULL);
    }

    if (wc->rest_pos < wc->rest_last) {
        ngx_do_ws_consume(wc, wc->rest_pos, wc->rest_last);
    }

    if (wc->rest && wc->rest_pos == wc->rest_last) {
        ngx_free(wc->rest);
        wc->rest = NULL;
        wc->rest_pos = NULL;
        wc->rest_last = NULL;
    }

    if (wc->rest == NULL) {
        ngx_do_ws_read(wc);
    }

    ws->handling = 0;
    ngx_do_ws_check(wc);
}


static void
ngx_do_ws_read(ngx_do_ws_conn_t *wc)
{
    ssize_t            n;
    ngx_do_ws_t       *ws;
    ngx_connection_t  *c;

    ws = &wc->ws;
    c = ws->connection;

    while (!ws->paused && !wc->dead && !ws->close_received
           && !ws->parser.error)
    {
        n = c->recv(c, ngx_do_ws_read_buf, NGX_DO_WS_READ_BUF);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                wc->dead = 1;
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "do ws: the client went away");
            wc->dead = 1;
            return;
        }

        ws->last_in = ngx_current_msec;
        ws->ping_sent = 0;

        ngx_do_ws_consume(wc, ngx_do_ws_read_buf, ngx_do_ws_read_buf + n);

        if (wc->rest) {
            return;                         /* paused in the middle */
        }
    }
}


/*
 * Parses what was read; a pause in the middle keeps the rest (copied out
 * of the worker's read buffer) for ngx_do_ws_resume()
 */
static void
ngx_do_ws_consume(ngx_do_ws_conn_t *wc, u_char *p, u_char *last)
{
    size_t              n;
    ngx_int_t           rc;
    ngx_do_ws_t        *ws;
    ngx_do_ws_event_t   ev;

    ws = &wc->ws;

    for ( ;; ) {
        if (ws->paused && p < last) {
            if (wc->rest == NULL) {
                n = last - p;

                wc->rest = ngx_alloc(n, ws->connection->log);
                if (wc->rest == NULL) {
                    wc->dead = 1;
                    return;
                }

                ngx_memcpy(wc->rest, p, n);
                wc->rest_pos = wc->rest;
                wc->rest_last = wc->rest + n;

            } else {
                wc->rest_pos = p;
            }

            return;
        }

        rc = ngx_do_ws_parse(&ws->parser, &p, last, &ev);

        if (wc->rest) {
            wc->rest_pos = p;
        }

        if (rc == NGX_DO_WS_AGAIN) {
            return;
        }

        if (ngx_do_ws_event(ws, rc, &ev) != NGX_OK || wc->dead) {
            if (wc->rest) {
                wc->rest_pos = wc->rest_last;
            }

            return;
        }
    }
}


/* one parser event; NGX_DONE: stop reading */
static ngx_int_t
ngx_do_ws_event(ngx_do_ws_t *ws, ngx_int_t rc, ngx_do_ws_event_t *ev)
{
    ngx_str_t  reason;

    switch (rc) {

    case NGX_DO_WS_ERROR:
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "do: websocket closed with %ui: the client broke "
                      "the protocol", (ngx_uint_t) ev->code);

        /* RFC 6455 7.1.7: the connection fails, no answer is awaited */
        ws->failing = 1;
        ngx_do_ws_close(ws, ev->code, NULL);
        return NGX_DONE;

    case NGX_DO_WS_MESSAGE_START:
        ws->msg_opcode = ev->opcode;
        ws->msg_len = 0;
        return NGX_OK;

    case NGX_DO_WS_DATA:
        if (!ws->close_sent && ngx_do_ws_append(ws, ev->data, ev->len)
                               != NGX_OK)
        {
            ngx_do_ws_close(ws, NGX_DO_WS_CLOSE_INTERNAL, NULL);
            return NGX_DONE;
        }

        return NGX_OK;

    case NGX_DO_WS_MESSAGE_END:
        ngx_do_stats->ws_messages_in++;

        if (!ws->close_sent && ngx_do_ws_over_rate(ws)) {
            ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                          "do: websocket closed: over do_ws_message_rate");
            ngx_str_set(&reason, "message rate exceeded");
            ngx_do_ws_close(ws, NGX_DO_WS_CLOSE_POLICY, &reason);
            return NGX_DONE;
        }

        if (!ws->close_sent && ws->message) {
            ws->message(ws, ws->msg_opcode,
                        ws->msg ? ws->msg : (u_char *) "", ws->msg_len);
        }

        ws->msg_len = 0;

        if (ws->msg_size > NGX_DO_WS_KEEP_MSG) {
            ngx_free(ws->msg);
            ws->msg = NULL;
            ws->msg_size = 0;
        }

        return NGX_OK;

    case NGX_DO_WS_PING:
        if (!ws->close_sent) {
            ngx_do_ws_control(ws, NGX_DO_WS_OP_PONG, ev->data, ev->len);
        }

        return NGX_OK;

    case NGX_DO_WS_PONG:
        return NGX_OK;

    case NGX_DO_WS_CLOSE:
        ws->close_received = 1;
        ws->code = ev->code;

        /* the answer echoes the client's code (RFC 6455 5.5.1) */
        ngx_do_ws_close(ws, ev->code == NGX_DO_WS_CLOSE_NO_STATUS
                            ? NGX_DO_WS_CLOSE_NORMAL : ev->code, NULL);
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * do_ws_message_rate, as GCRA: a message is allowed while the time it
 * would be due at is no more than burst intervals ahead of now
 */
static ngx_uint_t
ngx_do_ws_over_rate(ngx_do_ws_t *ws)
{
    ngx_msec_t  now, interval;

    interval = ws->conf->message_interval;

    if (interval == 0) {
        return 0;
    }

    now = ngx_current_msec;

    if ((ngx_msec_int_t) (ws->tat - now) < 0) {
        ws->tat = now;
    }

    if (ws->tat - now > interval * ws->conf->message_burst) {
        return 1;
    }

    ws->tat += interval;

    return 0;
}


static ngx_int_t
ngx_do_ws_append(ngx_do_ws_t *ws, u_char *data, size_t len)
{
    u_char  *p;
    size_t   size;

    if (ws->msg_len + len > ws->msg_size) {
        size = ngx_max(ws->msg_size * 2, ws->msg_len + len);
        size = ngx_max(size, 256);

        if (ws->max_message && size > ws->max_message) {
            size = ngx_max(ws->max_message, ws->msg_len + len);
        }

        p = ngx_alloc(size, ws->connection->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ws->msg) {
            ngx_memcpy(p, ws->msg, ws->msg_len);
            ngx_free(ws->msg);
        }

        ws->msg = p;
        ws->msg_size = size;
    }

    ngx_memcpy(ws->msg + ws->msg_len, data, len);
    ws->msg_len += len;

    return NGX_OK;
}


static void
ngx_do_ws_write_handler(ngx_event_t *wev)
{
    ngx_do_ws_t       *ws;
    ngx_connection_t  *c;
    ngx_do_ws_conn_t  *wc;

    c = wev->data;
    wc = c->data;
    ws = &wc->ws;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "do: websocket client timed out");
        wev->timedout = 0;
        wc->dead = 1;

    } else {
        ws->handling = 1;
        ngx_do_ws_flush(ws);
        ws->handling = 0;
    }

    ngx_do_ws_check(wc);
}


/*
 * The keepalive: a ping after ping_interval without input, and the
 * connection closed when nothing came ping_timeout later.  Once a close
 * frame went out, the same timer bounds the wait for the client's.
 */
static void
ngx_do_ws_ping_handler(ngx_event_t *ev)
{
    ngx_msec_t         idle;
    ngx_do_ws_t       *ws;
    ngx_do_ws_conn_t  *wc;

    wc = ev->data;
    ws = &wc->ws;

    if (ws->close_sent) {
        wc->dead = 1;
        ngx_do_ws_check(wc);
        return;
    }

    idle = ngx_current_msec - ws->last_in;

    if (idle < ws->conf->ping_interval) {
        ngx_add_timer(&ws->ping, ws->conf->ping_interval - idle);
        return;
    }

    if (ws->ping_sent) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "do: websocket closed: no pong within %M ms",
                      ws->conf->ping_timeout);
        wc->dead = 1;
        ngx_do_ws_check(wc);
        return;
    }

    ws->handling = 1;
    ngx_do_ws_control(ws, NGX_DO_WS_OP_PING, NULL, 0);
    ws->handling = 0;

    ws->ping_sent = 1;
    ngx_add_timer(&ws->ping, ws->conf->ping_timeout);

    ngx_do_ws_check(wc);
}


/* the end of every event handler: is the connection done? */
static void
ngx_do_ws_check(ngx_do_ws_conn_t *wc)
{
    ngx_do_ws_t  *ws;

    ws = &wc->ws;

    if (ws->finalized || !ws->started) {
        return;
    }

    if (wc->dead
        || (ws->close_sent && (ws->close_received || ws->failing)
            && ws->out == NULL))
    {
        ngx_do_ws_finalize(wc);
    }
}


static void
ngx_do_ws_finalize(ngx_do_ws_conn_t *wc)
{
    ngx_do_ws_t       *ws;
    ngx_connection_t  *c;

    ws = &wc->ws;
    c = ws->connection;

    ws->finalized = 1;
    ngx_do_stats->ws_connections--;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "do ws: finalize, code %ui", ws->code);

    if (ws->ping.timer_set) {
        ngx_del_timer(&ws->ping);
    }

    if (ws->ping.posted) {
        ngx_delete_posted_event(&ws->ping);
    }

    ngx_do_ws_free_queue(ws);

    if (ws->msg) {
        ngx_free(ws->msg);
        ws->msg = NULL;
    }

    if (wc->rest) {
        ngx_free(wc->rest);
        wc->rest = NULL;
    }

    if (ws->closed) {
        ws->closed(ws, ws->code);
    }

    ngx_http_close_connection(c);
}


static void
ngx_do_ws_free_queue(ngx_do_ws_t *ws)
{
    ngx_do_ws_out_t  *out, *next;

    ngx_do_stats->ws_queued_bytes -= ws->queued;

    for (out = ws->out; out; out = next) {
        next = out->next;
        ngx_free(out);
    }

    ws->out = NULL;
    ws->out_last = &ws->out;
    ws->queued = 0;
    ws->exempt = 0;
}
