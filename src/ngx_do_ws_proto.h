
/*
 * RFC 6455 without a connection: the handshake checks and the frame parser
 * as pure functions.  Nothing here touches the event loop, allocates memory
 * or includes an nginx header: the caller passes header values and buffers,
 * and gets back verdicts and events.  That is what lets the unit tests
 * (t/c/ws_proto_test.c) and the fuzzers (fuzz/) drive exactly the code that
 * runs in nginx.  The only outside dependency is OpenSSL's SHA1().
 */


#ifndef _NGX_DO_WS_PROTO_H_INCLUDED_
#define _NGX_DO_WS_PROTO_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#define NGX_DO_WS_OP_CONT              0x0
#define NGX_DO_WS_OP_TEXT              0x1
#define NGX_DO_WS_OP_BINARY            0x2
#define NGX_DO_WS_OP_CLOSE             0x8
#define NGX_DO_WS_OP_PING              0x9
#define NGX_DO_WS_OP_PONG              0xa

/* close codes (RFC 6455 7.4.1) this module sends or reports */
#define NGX_DO_WS_CLOSE_NORMAL         1000
#define NGX_DO_WS_CLOSE_GOING_AWAY     1001
#define NGX_DO_WS_CLOSE_PROTOCOL       1002
#define NGX_DO_WS_CLOSE_UNSUPPORTED    1003
#define NGX_DO_WS_CLOSE_NO_STATUS      1005
#define NGX_DO_WS_CLOSE_INVALID_DATA   1007
#define NGX_DO_WS_CLOSE_POLICY         1008
#define NGX_DO_WS_CLOSE_TOO_BIG        1009
#define NGX_DO_WS_CLOSE_INTERNAL       1011
#define NGX_DO_WS_CLOSE_RESTART        1012
#define NGX_DO_WS_CLOSE_TRY_AGAIN      1013

#define NGX_DO_WS_MAX_CONTROL          125
#define NGX_DO_WS_MAX_HEADER           10     /* server frames: no mask */
#define NGX_DO_WS_MAX_CLOSE_FRAME      (2 + NGX_DO_WS_MAX_CONTROL)
#define NGX_DO_WS_ACCEPT_LEN           28     /* base64 of a SHA-1 */
#define NGX_DO_WS_KEY_LEN              24     /* base64 of 16 bytes */


/* A header value as nginx holds it; data NULL means "header absent". */
typedef struct {
    size_t                     len;
    const u_char              *data;
} ngx_do_ws_str_t;


/*
 * The client's handshake, already split by the caller, which has checked
 * the method (GET) and the HTTP version (1.1 or later) itself.  A header
 * sent on several lines is passed joined with ", " (RFC 9110 5.3).
 */
typedef struct {
    ngx_do_ws_str_t            upgrade;
    ngx_do_ws_str_t            connection;
    ngx_do_ws_str_t            version;       /* Sec-WebSocket-Version */
    ngx_do_ws_str_t            key;           /* Sec-WebSocket-Key */
    ngx_do_ws_str_t            origin;
    ngx_do_ws_str_t            protocol;      /* Sec-WebSocket-Protocol */
} ngx_do_ws_handshake_t;


/*
 * What a location allows.  origins: the allow-list, each entry a
 * serialized origin "scheme://host[:port]" compared whole and without
 * regard to case; no entries means any origin, and a request without an
 * Origin header (not a browser) is never refused by it.  protocols: the
 * subprotocols the server speaks, in its order of preference; the first of
 * them the client offers is chosen, whatever the client's order, and none
 * is chosen (no Sec-WebSocket-Protocol in the answer) when nothing matches.
 */
typedef struct {
    const ngx_do_ws_str_t     *origins;
    size_t                     norigins;
    const ngx_do_ws_str_t     *protocols;
    size_t                     nprotocols;
} ngx_do_ws_policy_t;


/* ngx_do_ws_handshake_check() verdicts, in the order they are checked */
#define NGX_DO_WS_HS_OK                0
#define NGX_DO_WS_HS_NO_UPGRADE        1      /* 400 */
#define NGX_DO_WS_HS_NO_CONNECTION     2      /* 400 */
#define NGX_DO_WS_HS_BAD_VERSION       3      /* 426 + version 13 */
#define NGX_DO_WS_HS_BAD_KEY           4      /* 400 */
#define NGX_DO_WS_HS_BAD_ORIGIN        5      /* 403 */


/* Incremental UTF-8 validation: zero it, feed bytes, check at the end. */
typedef struct {
    uint8_t                    need;          /* continuation bytes due */
    uint8_t                    lo;            /* range of the next one */
    uint8_t                    hi;
    uint8_t                    bad;
} ngx_do_ws_utf8_t;


/* ngx_do_ws_parse() results */
#define NGX_DO_WS_ERROR                (-1)   /* ev->code: close with it */
#define NGX_DO_WS_AGAIN                0      /* input used up */
#define NGX_DO_WS_MESSAGE_START        1      /* ev->opcode: text, binary */
#define NGX_DO_WS_DATA                 2      /* ev->data, ev->len */
#define NGX_DO_WS_MESSAGE_END          3
#define NGX_DO_WS_PING                 4      /* ev->data, ev->len */
#define NGX_DO_WS_PONG                 5      /* ev->data, ev->len */
#define NGX_DO_WS_CLOSE                6      /* ev->code, reason in data */


typedef struct {
    int                        opcode;
    unsigned                   code;
    u_char                    *data;
    size_t                     len;
} ngx_do_ws_event_t;


/*
 * One connection's reading side.  Invariants: a message is in progress iff
 * msg_opcode is not 0, and then msg_len (the bytes of its frames announced
 * so far) never exceeds max_message; a control frame's payload is gathered
 * in ctl, so its event carries the whole payload; once error is set, every
 * call returns it again and reads nothing; after a close frame the rest of
 * the input is ignored.
 */
typedef struct {
    uint64_t                   max_message;   /* 0: no limit */
    unsigned                   require_mask:1;

    unsigned                   state:4;
    unsigned                   fin:1;
    unsigned                   masked:1;
    unsigned                   opcode:4;
    unsigned                   msg_opcode:4;

    uint8_t                    hdr[8];        /* extended length bytes */
    uint8_t                    hdr_len;
    uint8_t                    hdr_need;
    u_char                     mask[4];

    uint64_t                   frame_len;
    uint64_t                   frame_done;
    uint64_t                   msg_len;
    ngx_do_ws_utf8_t           utf8;

    size_t                     ctl_len;
    u_char                     ctl[NGX_DO_WS_MAX_CONTROL];

    unsigned                   error;
} ngx_do_ws_parser_t;


/* Handshake. */
int ngx_do_ws_token_list_has(const ngx_do_ws_str_t *list, const char *token);
int ngx_do_ws_handshake_check(const ngx_do_ws_handshake_t *hs,
    const ngx_do_ws_policy_t *policy, const ngx_do_ws_str_t **protocol);
unsigned ngx_do_ws_handshake_status(int verdict);
const char *ngx_do_ws_handshake_reason(int verdict);
int ngx_do_ws_key_valid(const ngx_do_ws_str_t *key);
int ngx_do_ws_accept_key(const ngx_do_ws_str_t *key,
    u_char *accept);

/* Text. */
void ngx_do_ws_utf8_feed(ngx_do_ws_utf8_t *u, const u_char *p, size_t len);
int ngx_do_ws_utf8_done(const ngx_do_ws_utf8_t *u);
int ngx_do_ws_close_code_valid(unsigned code);

/* Reading frames from a client. */
void ngx_do_ws_parser_init(ngx_do_ws_parser_t *p, uint64_t max_message,
    int require_mask);
int ngx_do_ws_parse(ngx_do_ws_parser_t *p, u_char **pos, u_char *last,
    ngx_do_ws_event_t *ev);

/* Writing frames to a client. */
size_t ngx_do_ws_frame_header(u_char *buf, int opcode, int fin,
    uint64_t len);
size_t ngx_do_ws_close_frame(u_char *buf, unsigned code,
    const u_char *reason, size_t len);


#endif /* _NGX_DO_WS_PROTO_H_INCLUDED_ */
