
/*
 * WebSocket connections on nginx's event loop: what the rest of the
 * runtime sees of src/ngx_do_ws.c.  The pure protocol (handshake verdicts,
 * the frame parser, frame builders) is src/ngx_do_ws_proto.h.
 */


#ifndef _NGX_DO_WS_H_INCLUDED_
#define _NGX_DO_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_do_ws_proto.h"


/* a location's WebSocket settings (do_ws_* directives) */
typedef struct {
    size_t                     send_queue;    /* bytes a member may lag */
    ngx_msec_t                 ping_interval;
    ngx_msec_t                 ping_timeout;
    ngx_msec_t                 message_interval; /* 0: no message rate */
    ngx_uint_t                 message_burst;
    ngx_array_t               *origins;       /* ngx_do_ws_str_t */
    ngx_array_t               *protocols;     /* ngx_do_ws_str_t */
} ngx_do_ws_conf_t;


typedef struct ngx_do_ws_s  ngx_do_ws_t;

/*
 * A whole message from the client (text: valid UTF-8); data lives only
 * during the call.  The handler may send and close.
 */
typedef void (*ngx_do_ws_message_pt)(ngx_do_ws_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len);

/*
 * The connection is gone (code: the close code sent or received, 1006 when
 * none was); runs exactly once, after which ws is freed.
 */
typedef void (*ngx_do_ws_closed_pt)(ngx_do_ws_t *ws, ngx_uint_t code);


struct ngx_do_ws_s {
    ngx_connection_t          *connection;
    ngx_do_ws_conf_t          *conf;
    ngx_do_ws_message_pt       message;
    ngx_do_ws_closed_pt        closed;
    void                      *data;          /* the caller's */
    size_t                     max_message;

    ngx_do_ws_parser_t         parser;
    u_char                    *msg;           /* the message being read */
    size_t                     msg_len;
    size_t                     msg_size;
    ngx_uint_t                 msg_opcode;

    struct ngx_do_ws_out_s    *out;           /* the send queue */
    struct ngx_do_ws_out_s   **out_last;
    size_t                     queued;        /* bytes not yet written */
    size_t                     exempt;        /* of those, not capped */

    ngx_event_t                ping;
    ngx_msec_t                 last_in;
    ngx_msec_t                 tat;           /* the message rate's GCRA */
    ngx_uint_t                 code;          /* the close code */
    ngx_uint_t                 paused;

    unsigned                   started:1;     /* the connection is ours */
    unsigned                   close_sent:1;
    unsigned                   close_received:1;
    unsigned                   failing:1;     /* no close frame awaited */
    unsigned                   ping_sent:1;
    unsigned                   finalized:1;
    unsigned                   handling:1;    /* inside an event handler */
};


/*
 * A WebSocket for an accepted handshake (key: the client's
 * Sec-WebSocket-Key), its 101 answer queued first; it queues what is sent
 * to it until ngx_do_ws_start() takes the connection over.  Allocated in
 * the connection's pool: it outlives the request.
 */
ngx_do_ws_t *ngx_do_ws_create(ngx_http_request_t *r, ngx_do_ws_conf_t *conf,
    ngx_str_t *key, ngx_str_t *protocol, size_t max_message);

/*
 * Takes r's connection over: frees the request (logged with status 101)
 * and starts reading frames.  Not from inside a handler that touches the
 * request afterwards: post an event.
 */
void ngx_do_ws_start(ngx_do_ws_t *ws, ngx_http_request_t *r);

/*
 * Queues a message (one frame) or frames already built; NGX_DECLINED: the
 * queue is over send_queue, and the connection is being closed with 1013.
 */
ngx_int_t ngx_do_ws_send(ngx_do_ws_t *ws, ngx_uint_t opcode, u_char *data,
    size_t len);
ngx_int_t ngx_do_ws_send_frames(ngx_do_ws_t *ws, u_char *data, size_t len,
    ngx_uint_t capped);

/* starts the closing handshake (reason: at most 123 bytes of UTF-8) */
void ngx_do_ws_close(ngx_do_ws_t *ws, ngx_uint_t code, ngx_str_t *reason);

/* stops and resumes reading frames (how many callers hold it paused) */
void ngx_do_ws_pause(ngx_do_ws_t *ws);
void ngx_do_ws_resume(ngx_do_ws_t *ws);

/* for a WebSocket never started: the request failed, nothing is sent */
void ngx_do_ws_abort(ngx_do_ws_t *ws);



/*
 * ngx_do_fanout.c: a WebSocket made a member of an object (its messages
 * and its end become calls to it), and the object's answer to its join
 */
void *ngx_do_fanout_member(ngx_do_ws_t *ws, ngx_do_namespace_t *ns,
    u_char *id, ngx_str_t *member, uint64_t *conn);
ngx_int_t ngx_do_fanout_opened(void *member, ngx_http_do_reply_t *reply);


#endif /* _NGX_DO_WS_H_INCLUDED_ */
