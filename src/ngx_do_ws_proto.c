
/*
 * RFC 6455, the pure part: handshake verdicts, Sec-WebSocket-Accept, the
 * incremental frame parser, UTF-8 validation and the server's frame
 * builders.  See ngx_do_ws_proto.h for the contracts.
 *
 * The parser is a state machine fed whatever the socket gave: one byte or
 * many frames.  Each call returns at most one event and advances *pos past
 * what it used; the caller loops until NGX_DO_WS_AGAIN.  Every rule that
 * can be decided from a frame's first two bytes (RSV bits, opcodes,
 * fragmentation, control frame sizes, masking) is decided there, and the
 * message size limit is checked from the announced length before a byte
 * of payload is read, so a hostile peer costs no more than its header.
 * Payload is unmasked in place in the caller's buffer and handed out as
 * DATA events; control frame payloads (at most 125 bytes) are gathered in
 * the parser so PING, PONG and CLOSE come whole.
 */


#include <string.h>

#include <openssl/sha.h>

#include "ngx_do_ws_proto.h"


#define NGX_DO_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* parser states */
#define NGX_DO_WS_ST_OPCODE     0
#define NGX_DO_WS_ST_LENGTH     1
#define NGX_DO_WS_ST_EXTLEN     2
#define NGX_DO_WS_ST_MASK       3
#define NGX_DO_WS_ST_PAYLOAD    4
#define NGX_DO_WS_ST_CONTROL    5
#define NGX_DO_WS_ST_CLOSED     6


static int ngx_do_ws_list_find(const ngx_do_ws_str_t *list,
    const u_char *token, size_t len, int icase);
static int ngx_do_ws_caseeq(const u_char *a, const u_char *b, size_t n);
static int ngx_do_ws_base64_value(u_char c);
static size_t ngx_do_ws_base64_encode(u_char *dst, const u_char *src,
    size_t len);
static unsigned ngx_do_ws_parse_opcode(ngx_do_ws_parser_t *p, u_char ch);
static unsigned ngx_do_ws_parse_length(ngx_do_ws_parser_t *p, u_char ch);
static unsigned ngx_do_ws_frame_length(ngx_do_ws_parser_t *p);
static int ngx_do_ws_parse_header(ngx_do_ws_parser_t *p, u_char ch,
    ngx_do_ws_event_t *ev, unsigned *code);
static int ngx_do_ws_parse_payload(ngx_do_ws_parser_t *p, u_char **pos,
    u_char *last, ngx_do_ws_event_t *ev, unsigned *code);
static int ngx_do_ws_parse_control(ngx_do_ws_parser_t *p, u_char **pos,
    u_char *last, ngx_do_ws_event_t *ev, unsigned *code);
static size_t ngx_do_ws_frame_part(ngx_do_ws_parser_t *p, u_char *b,
    u_char *last);
static int ngx_do_ws_frame_begin(ngx_do_ws_parser_t *p,
    ngx_do_ws_event_t *ev);
static int ngx_do_ws_control_done(ngx_do_ws_parser_t *p,
    ngx_do_ws_event_t *ev);
static void ngx_do_ws_unmask(ngx_do_ws_parser_t *p, u_char *dst,
    const u_char *src, size_t n);


static const u_char  ngx_do_ws_base64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


/*
 * Whether a comma- or space-separated header value (Upgrade, Connection)
 * holds the token, compared without regard to case.
 */
int
ngx_do_ws_token_list_has(const ngx_do_ws_str_t *list, const char *token)
{
    return ngx_do_ws_list_find(list, (const u_char *) token, strlen(token),
                               1);
}


static int
ngx_do_ws_list_find(const ngx_do_ws_str_t *list, const u_char *token,
    size_t len, int icase)
{
    const u_char  *p, *end, *start;

    if (list->data == NULL || len == 0) {
        return 0;
    }

    p = list->data;
    end = p + list->len;

    while (p < end) {

        while (p < end && (*p == ',' || *p == ' ' || *p == '\t')) {
            p++;
        }

        start = p;

        while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) != len) {
            continue;
        }

        if (icase ? ngx_do_ws_caseeq(start, token, len)
                  : memcmp(start, token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* ASCII-only case folding: header tokens, never the locale's idea of it */
static int
ngx_do_ws_caseeq(const u_char *a, const u_char *b, size_t n)
{
    u_char  ca, cb;

    while (n--) {
        ca = *a++;
        cb = *b++;

        if (ca >= 'A' && ca <= 'Z') {
            ca |= 0x20;
        }

        if (cb >= 'A' && cb <= 'Z') {
            cb |= 0x20;
        }

        if (ca != cb) {
            return 0;
        }
    }

    return 1;
}


/*
 * RFC 6455 4.2.1 in the order a client is best told what is wrong: not a
 * WebSocket request, wrong version (426 tells it which one to speak), bad
 * key, refused origin.  On NGX_DO_WS_HS_OK *protocol is the chosen entry
 * of policy->protocols, or NULL.
 */
int
ngx_do_ws_handshake_check(const ngx_do_ws_handshake_t *hs,
    const ngx_do_ws_policy_t *policy, const ngx_do_ws_str_t **protocol)
{
    size_t                  i;
    const ngx_do_ws_str_t  *o, *sp;

    if (protocol) {
        *protocol = NULL;
    }

    if (!ngx_do_ws_token_list_has(&hs->upgrade, "websocket")) {
        return NGX_DO_WS_HS_NO_UPGRADE;
    }

    if (!ngx_do_ws_token_list_has(&hs->connection, "upgrade")) {
        return NGX_DO_WS_HS_NO_CONNECTION;
    }

    if (hs->version.data == NULL || hs->version.len != 2
        || hs->version.data[0] != '1' || hs->version.data[1] != '3')
    {
        return NGX_DO_WS_HS_BAD_VERSION;
    }

    if (!ngx_do_ws_key_valid(&hs->key)) {
        return NGX_DO_WS_HS_BAD_KEY;
    }

    if (policy == NULL) {
        return NGX_DO_WS_HS_OK;
    }

    if (policy->norigins && hs->origin.data != NULL) {

        for (i = 0; i < policy->norigins; i++) {
            o = &policy->origins[i];

            if (o->len == hs->origin.len
                && ngx_do_ws_caseeq(o->data, hs->origin.data, o->len))
            {
                break;
            }
        }

        if (i == policy->norigins) {
            return NGX_DO_WS_HS_BAD_ORIGIN;
        }
    }

    if (protocol == NULL) {
        return NGX_DO_WS_HS_OK;
    }

    /* subprotocol names are case-sensitive (RFC 6455 11.3.4) */

    for (i = 0; i < policy->nprotocols; i++) {
        sp = &policy->protocols[i];

        if (ngx_do_ws_list_find(&hs->protocol, sp->data, sp->len, 0)) {
            *protocol = sp;
            break;
        }
    }

    return NGX_DO_WS_HS_OK;
}


/* the HTTP status that answers a verdict; 101 for NGX_DO_WS_HS_OK */
unsigned
ngx_do_ws_handshake_status(int verdict)
{
    switch (verdict) {

    case NGX_DO_WS_HS_OK:
        return 101;

    case NGX_DO_WS_HS_BAD_VERSION:
        return 426;

    case NGX_DO_WS_HS_BAD_ORIGIN:
        return 403;

    default:
        return 400;
    }
}


/* a short phrase for the log line that goes with a refusal */
const char *
ngx_do_ws_handshake_reason(int verdict)
{
    switch (verdict) {

    case NGX_DO_WS_HS_OK:
        return "accepted";

    case NGX_DO_WS_HS_NO_UPGRADE:
        return "no \"websocket\" in Upgrade";

    case NGX_DO_WS_HS_NO_CONNECTION:
        return "no \"upgrade\" in Connection";

    case NGX_DO_WS_HS_BAD_VERSION:
        return "Sec-WebSocket-Version is not 13";

    case NGX_DO_WS_HS_BAD_KEY:
        return "Sec-WebSocket-Key is not 16 bytes in base64";

    case NGX_DO_WS_HS_BAD_ORIGIN:
        return "Origin is not allowed";

    default:
        return "unknown verdict";
    }
}


/*
 * A key is 16 bytes in base64: 22 symbols and "==".  The last symbol's
 * two unused bits are not checked; the key is hashed as sent.
 */
int
ngx_do_ws_key_valid(const ngx_do_ws_str_t *key)
{
    size_t  i;

    if (key->data == NULL || key->len != NGX_DO_WS_KEY_LEN) {
        return 0;
    }

    for (i = 0; i < NGX_DO_WS_KEY_LEN - 2; i++) {
        if (ngx_do_ws_base64_value(key->data[i]) < 0) {
            return 0;
        }
    }

    return key->data[22] == '=' && key->data[23] == '=';
}


static int
ngx_do_ws_base64_value(u_char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '+') {
        return 62;
    }

    if (c == '/') {
        return 63;
    }

    return -1;
}


/*
 * Sec-WebSocket-Accept for a valid key: base64(SHA-1(key GUID)) into
 * accept, NGX_DO_WS_ACCEPT_LEN bytes, no terminating zero.  -1 if the key
 * does not have a valid key's length.
 */
int
ngx_do_ws_accept_key(const ngx_do_ws_str_t *key, u_char *accept)
{
    u_char  buf[NGX_DO_WS_KEY_LEN + sizeof(NGX_DO_WS_GUID) - 1];
    u_char  md[SHA_DIGEST_LENGTH];

    if (key->data == NULL || key->len != NGX_DO_WS_KEY_LEN) {
        return -1;
    }

    memcpy(buf, key->data, NGX_DO_WS_KEY_LEN);
    memcpy(buf + NGX_DO_WS_KEY_LEN, NGX_DO_WS_GUID,
           sizeof(NGX_DO_WS_GUID) - 1);

    SHA1(buf, sizeof(buf), md);

    (void) ngx_do_ws_base64_encode(accept, md, SHA_DIGEST_LENGTH);

    return 0;
}


static size_t
ngx_do_ws_base64_encode(u_char *dst, const u_char *src, size_t len)
{
    u_char  *d;

    d = dst;

    while (len >= 3) {
        *d++ = ngx_do_ws_base64[src[0] >> 2];
        *d++ = ngx_do_ws_base64[((src[0] & 0x03) << 4) | (src[1] >> 4)];
        *d++ = ngx_do_ws_base64[((src[1] & 0x0f) << 2) | (src[2] >> 6)];
        *d++ = ngx_do_ws_base64[src[2] & 0x3f];

        src += 3;
        len -= 3;
    }

    if (len) {
        *d++ = ngx_do_ws_base64[src[0] >> 2];

        if (len == 1) {
            *d++ = ngx_do_ws_base64[(src[0] & 0x03) << 4];
            *d++ = '=';

        } else {
            *d++ = ngx_do_ws_base64[((src[0] & 0x03) << 4) | (src[1] >> 4)];
            *d++ = ngx_do_ws_base64[(src[1] & 0x0f) << 2];
        }

        *d++ = '=';
    }

    return d - dst;
}


/*
 * Feeds bytes to a UTF-8 validator.  Code points are not decoded; each
 * lead byte narrows the range of the byte after it, which is what rules
 * out overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and
 * anything above U+10FFFF (F4 90..BF).  Once bad, it stays bad.
 */
void
ngx_do_ws_utf8_feed(ngx_do_ws_utf8_t *u, const u_char *p, size_t len)
{
    u_char         c;
    uint64_t       w;
    const u_char  *end;

    end = p + len;

    while (p < end && !u->bad) {

        if (u->need == 0 && end - p >= 8) {
            memcpy(&w, p, 8);

            if ((w & 0x8080808080808080ULL) == 0) {
                p += 8;
                continue;
            }
        }

        c = *p++;

        if (u->need) {
            if (c < u->lo || c > u->hi) {
                u->bad = 1;
                break;
            }

            u->lo = 0x80;
            u->hi = 0xbf;
            u->need--;
            continue;
        }

        if (c < 0x80) {
            continue;
        }

        u->lo = 0x80;
        u->hi = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            u->need = 1;

        } else if (c >= 0xe0 && c <= 0xef) {
            u->need = 2;

            if (c == 0xe0) {
                u->lo = 0xa0;

            } else if (c == 0xed) {
                u->hi = 0x9f;
            }

        } else if (c >= 0xf0 && c <= 0xf4) {
            u->need = 3;

            if (c == 0xf0) {
                u->lo = 0x90;

            } else if (c == 0xf4) {
                u->hi = 0x8f;
            }

        } else {
            u->bad = 1;
        }
    }
}


/* 1 if everything fed so far is valid and ends on a character boundary */
int
ngx_do_ws_utf8_done(const ngx_do_ws_utf8_t *u)
{
    return !u->bad && u->need == 0;
}


/*
 * The codes a close frame may carry (RFC 6455 7.4): the defined ones that
 * may be sent, the IANA-registered 1012-1014 (service restart, try again
 * later, bad gateway: this module sends the first two), and the ranges for
 * libraries and applications.  1004, 1005, 1006, 1015 and the rest of
 * 0-2999 are never valid on the wire.
 */
int
ngx_do_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}


/*
 * require_mask: the peer is a client, whose frames must all be masked
 * (RFC 6455 5.1); a parser without it accepts masked and unmasked frames.
 */
void
ngx_do_ws_parser_init(ngx_do_ws_parser_t *p, uint64_t max_message,
    int require_mask)
{
    memset(p, 0, sizeof(ngx_do_ws_parser_t));

    p->max_message = max_message;
    p->require_mask = require_mask ? 1 : 0;
    p->state = NGX_DO_WS_ST_OPCODE;
}


/*
 * Reads from *pos up to last and returns the next event, advancing *pos
 * past the bytes used.  The bytes of DATA events are unmasked in place:
 * the input must be writable, and ev->data points into it.  PING, PONG
 * and CLOSE payloads point into the parser and stay valid until the next
 * call.  A CLOSE event carries the code (1005 for an empty payload) and
 * the reason; the input after it is ignored.  NGX_DO_WS_ERROR carries the
 * close code to answer with, and comes back on every later call.
 */
int
ngx_do_ws_parse(ngx_do_ws_parser_t *p, u_char **pos, u_char *last,
    ngx_do_ws_event_t *ev)
{
    int        rc;
    u_char    *b;
    unsigned   code;

    ev->opcode = 0;
    ev->code = 0;
    ev->data = NULL;
    ev->len = 0;

    if (p->error) {
        ev->code = p->error;
        return NGX_DO_WS_ERROR;
    }

    b = *pos;
    code = 0;

    for ( ;; ) {

        switch (p->state) {

        case NGX_DO_WS_ST_PAYLOAD:
            rc = ngx_do_ws_parse_payload(p, &b, last, ev, &code);
            break;

        case NGX_DO_WS_ST_CONTROL:
            rc = ngx_do_ws_parse_control(p, &b, last, ev, &code);
            break;

        case NGX_DO_WS_ST_CLOSED:
            b = last;
            rc = NGX_DO_WS_AGAIN;
            break;

        default: /* the header: opcode, length, extended length, mask */
            if (b == last) {
                rc = NGX_DO_WS_AGAIN;
                break;
            }

            rc = ngx_do_ws_parse_header(p, *b++, ev, &code);

            if (rc == NGX_DO_WS_AGAIN && !code) {
                continue;
            }
        }

        if (code) {
            p->error = code;
            ev->code = code;
            *pos = b;
            return NGX_DO_WS_ERROR;
        }

        /*
         * a frame that ended with the input (or a fragment before the next
         * frame's header, which the loop reads on)
         */
        if (rc == NGX_DO_WS_AGAIN && b < last
            && p->state == NGX_DO_WS_ST_OPCODE)
        {
            continue;
        }

        *pos = b;
        return rc;
    }
}


/*
 * One byte of a frame header.  NGX_DO_WS_AGAIN: the header goes on, or
 * the payload starts (the state says which); an event from
 * ngx_do_ws_frame_begin(); or *code, the frame breaks the protocol.
 */
static int
ngx_do_ws_parse_header(ngx_do_ws_parser_t *p, u_char ch,
    ngx_do_ws_event_t *ev, unsigned *code)
{
    switch (p->state) {

    case NGX_DO_WS_ST_OPCODE:
        *code = ngx_do_ws_parse_opcode(p, ch);

        if (*code == 0) {
            p->state = NGX_DO_WS_ST_LENGTH;
        }

        return NGX_DO_WS_AGAIN;

    case NGX_DO_WS_ST_LENGTH:
        *code = ngx_do_ws_parse_length(p, ch);

        if (*code || p->state != NGX_DO_WS_ST_LENGTH) {
            return NGX_DO_WS_AGAIN;
        }

        /* a 7-bit length: the header ends here or after the mask */
        break;

    case NGX_DO_WS_ST_EXTLEN:
        p->hdr[p->hdr_len++] = ch;

        if (p->hdr_len < p->hdr_need) {
            return NGX_DO_WS_AGAIN;
        }

        break;

    default: /* NGX_DO_WS_ST_MASK */
        p->mask[p->hdr_len++] = ch;

        if (p->hdr_len < 4) {
            return NGX_DO_WS_AGAIN;
        }

        return ngx_do_ws_frame_begin(p, ev);
    }

    *code = ngx_do_ws_frame_length(p);

    if (*code || p->state == NGX_DO_WS_ST_MASK) {
        return NGX_DO_WS_AGAIN;
    }

    return ngx_do_ws_frame_begin(p, ev);
}


/*
 * A data frame's payload: DATA (unmasked in place), MESSAGE_END, or
 * NGX_DO_WS_AGAIN when the input ended or a fragment did (the state is
 * then NGX_DO_WS_ST_OPCODE); *code on invalid UTF-8
 */
static int
ngx_do_ws_parse_payload(ngx_do_ws_parser_t *p, u_char **pos, u_char *last,
    ngx_do_ws_event_t *ev, unsigned *code)
{
    size_t   n;
    u_char  *b;

    b = *pos;

    if (p->frame_done == p->frame_len) {
        p->state = NGX_DO_WS_ST_OPCODE;

        if (!p->fin) {
            return NGX_DO_WS_AGAIN;
        }

        if (p->msg_opcode == NGX_DO_WS_OP_TEXT
            && !ngx_do_ws_utf8_done(&p->utf8))
        {
            *code = NGX_DO_WS_CLOSE_INVALID_DATA;
            return NGX_DO_WS_ERROR;
        }

        ev->opcode = p->msg_opcode;
        p->msg_opcode = 0;

        return NGX_DO_WS_MESSAGE_END;
    }

    if (b == last) {
        return NGX_DO_WS_AGAIN;
    }

    n = ngx_do_ws_frame_part(p, b, last);

    if (p->masked) {
        ngx_do_ws_unmask(p, b, b, n);
    }

    p->frame_done += n;

    if (p->msg_opcode == NGX_DO_WS_OP_TEXT) {
        ngx_do_ws_utf8_feed(&p->utf8, b, n);

        if (p->utf8.bad) {
            *pos = b + n;
            *code = NGX_DO_WS_CLOSE_INVALID_DATA;
            return NGX_DO_WS_ERROR;
        }
    }

    ev->opcode = p->msg_opcode;
    ev->data = b;
    ev->len = n;

    *pos = b + n;

    return NGX_DO_WS_DATA;
}


/* how much of the frame's payload the input holds */
static size_t
ngx_do_ws_frame_part(ngx_do_ws_parser_t *p, u_char *b, u_char *last)
{
    uint64_t  left;

    left = p->frame_len - p->frame_done;

    return ((uint64_t) (last - b) > left) ? (size_t) left : (size_t) (last - b);
}


/*
 * A control frame's payload, gathered in the parser: its event once
 * whole, NGX_DO_WS_AGAIN when the input ended first; *code when invalid
 */
static int
ngx_do_ws_parse_control(ngx_do_ws_parser_t *p, u_char **pos, u_char *last,
    ngx_do_ws_event_t *ev, unsigned *code)
{
    int      rc;
    size_t   n;
    u_char  *b;

    b = *pos;

    if (p->frame_done < p->frame_len) {
        if (b == last) {
            return NGX_DO_WS_AGAIN;
        }

        n = ngx_do_ws_frame_part(p, b, last);

        if (p->masked) {
            ngx_do_ws_unmask(p, p->ctl + p->ctl_len, b, n);

        } else {
            memcpy(p->ctl + p->ctl_len, b, n);
        }

        p->ctl_len += n;
        p->frame_done += n;
        *pos = b + n;

        if (p->frame_done < p->frame_len) {
            return NGX_DO_WS_AGAIN;
        }
    }

    rc = ngx_do_ws_control_done(p, ev);

    if (rc == NGX_DO_WS_ERROR) {
        *code = ev->code;
    }

    return rc;
}


/*
 * The first byte: FIN, RSV1-3 and the opcode.  No extension is ever
 * negotiated, so any RSV bit is an error; so are the reserved opcodes, a
 * fragmented control frame, a continuation with no message to continue
 * and a new message before the last one's final frame (RFC 6455 5.4).
 */
static unsigned
ngx_do_ws_parse_opcode(ngx_do_ws_parser_t *p, u_char ch)
{
    unsigned  opcode;

    if (ch & 0x70) {
        return NGX_DO_WS_CLOSE_PROTOCOL;
    }

    opcode = ch & 0x0f;

    p->fin = (ch & 0x80) ? 1 : 0;
    p->opcode = opcode;

    switch (opcode) {

    case NGX_DO_WS_OP_CONT:
        return p->msg_opcode ? 0 : NGX_DO_WS_CLOSE_PROTOCOL;

    case NGX_DO_WS_OP_TEXT:
    case NGX_DO_WS_OP_BINARY:
        if (p->msg_opcode) {
            return NGX_DO_WS_CLOSE_PROTOCOL;
        }

        p->msg_len = 0;
        return 0;

    case NGX_DO_WS_OP_CLOSE:
    case NGX_DO_WS_OP_PING:
    case NGX_DO_WS_OP_PONG:
        return p->fin ? 0 : NGX_DO_WS_CLOSE_PROTOCOL;

    default:
        return NGX_DO_WS_CLOSE_PROTOCOL;
    }
}


/* The second byte: MASK and the 7-bit length, or how many bytes follow. */
static unsigned
ngx_do_ws_parse_length(ngx_do_ws_parser_t *p, u_char ch)
{
    unsigned  len;

    p->masked = (ch & 0x80) ? 1 : 0;

    if (p->require_mask && !p->masked) {
        return NGX_DO_WS_CLOSE_PROTOCOL;
    }

    len = ch & 0x7f;

    if ((p->opcode & 0x08) && len > NGX_DO_WS_MAX_CONTROL) {
        return NGX_DO_WS_CLOSE_PROTOCOL;
    }

    p->hdr_len = 0;

    if (len == 126) {
        p->hdr_need = 2;
        p->state = NGX_DO_WS_ST_EXTLEN;
        return 0;
    }

    if (len == 127) {
        p->hdr_need = 8;
        p->state = NGX_DO_WS_ST_EXTLEN;
        return 0;
    }

    p->hdr_need = 0;
    p->frame_len = len;

    return 0;
}


/*
 * The frame's length is known: refuse a 64-bit length with the top bit
 * set, and a data frame that would take its message over max_message,
 * before any of its payload is read.  Lengths in a longer form than
 * needed are accepted (RFC 6455 5.2 asks only the sender for the minimal
 * form).  Moves on to the mask, if any.
 */
static unsigned
ngx_do_ws_frame_length(ngx_do_ws_parser_t *p)
{
    uint8_t   i;
    uint64_t  len;

    if (p->hdr_need) {
        len = 0;

        for (i = 0; i < p->hdr_need; i++) {
            len = (len << 8) | p->hdr[i];
        }

        if (len >> 63) {
            return NGX_DO_WS_CLOSE_PROTOCOL;
        }

        p->frame_len = len;
    }

    if (!(p->opcode & 0x08)) {

        if (p->max_message
            && p->frame_len > p->max_message - p->msg_len)
        {
            return NGX_DO_WS_CLOSE_TOO_BIG;
        }

        p->msg_len += p->frame_len;
    }

    p->hdr_len = 0;

    if (p->masked) {
        p->state = NGX_DO_WS_ST_MASK;
    }

    return 0;
}


/* The header is complete: MESSAGE_START for a message's first frame. */
static int
ngx_do_ws_frame_begin(ngx_do_ws_parser_t *p, ngx_do_ws_event_t *ev)
{
    p->frame_done = 0;

    if (p->opcode & 0x08) {
        p->ctl_len = 0;
        p->state = NGX_DO_WS_ST_CONTROL;
        return NGX_DO_WS_AGAIN;
    }

    p->state = NGX_DO_WS_ST_PAYLOAD;

    if (p->opcode == NGX_DO_WS_OP_CONT) {
        return NGX_DO_WS_AGAIN;
    }

    p->msg_opcode = p->opcode;
    memset(&p->utf8, 0, sizeof(ngx_do_ws_utf8_t));

    ev->opcode = p->opcode;

    return NGX_DO_WS_MESSAGE_START;
}


/*
 * A control frame's payload is whole.  A close payload is empty, or a
 * valid code and a UTF-8 reason (RFC 6455 5.5.1, 7.4).
 */
static int
ngx_do_ws_control_done(ngx_do_ws_parser_t *p, ngx_do_ws_event_t *ev)
{
    ngx_do_ws_utf8_t  u;

    p->state = NGX_DO_WS_ST_OPCODE;

    ev->opcode = p->opcode;
    ev->data = p->ctl;
    ev->len = p->ctl_len;

    if (p->opcode == NGX_DO_WS_OP_PING) {
        return NGX_DO_WS_PING;
    }

    if (p->opcode == NGX_DO_WS_OP_PONG) {
        return NGX_DO_WS_PONG;
    }

    if (p->ctl_len == 0) {
        ev->code = NGX_DO_WS_CLOSE_NO_STATUS;
        p->state = NGX_DO_WS_ST_CLOSED;
        return NGX_DO_WS_CLOSE;
    }

    if (p->ctl_len == 1) {
        ev->code = NGX_DO_WS_CLOSE_PROTOCOL;
        return NGX_DO_WS_ERROR;
    }

    ev->code = (p->ctl[0] << 8) | p->ctl[1];

    if (!ngx_do_ws_close_code_valid(ev->code)) {
        ev->code = NGX_DO_WS_CLOSE_PROTOCOL;
        return NGX_DO_WS_ERROR;
    }

    memset(&u, 0, sizeof(ngx_do_ws_utf8_t));
    ngx_do_ws_utf8_feed(&u, p->ctl + 2, p->ctl_len - 2);

    if (!ngx_do_ws_utf8_done(&u)) {
        ev->code = NGX_DO_WS_CLOSE_INVALID_DATA;
        return NGX_DO_WS_ERROR;
    }

    ev->data = p->ctl + 2;
    ev->len = p->ctl_len - 2;
    p->state = NGX_DO_WS_ST_CLOSED;

    return NGX_DO_WS_CLOSE;
}


/* the mask key applies from the frame's first payload byte on */
static void
ngx_do_ws_unmask(ngx_do_ws_parser_t *p, u_char *dst, const u_char *src,
    size_t n)
{
    size_t    i;
    unsigned  k;

    k = (unsigned) (p->frame_done & 3);

    for (i = 0; i < n; i++) {
        dst[i] = src[i] ^ p->mask[(k + i) & 3];
    }
}


/*
 * Writes an unmasked frame header for a payload of len bytes into buf
 * (NGX_DO_WS_MAX_HEADER bytes) and returns its size, 2, 4 or 10; 0 for an
 * unknown opcode, a fragmented control frame, a control payload over 125
 * bytes or a length over 2^63 - 1.
 */
size_t
ngx_do_ws_frame_header(u_char *buf, int opcode, int fin, uint64_t len)
{
    int  i;

    switch (opcode) {

    case NGX_DO_WS_OP_CONT:
    case NGX_DO_WS_OP_TEXT:
    case NGX_DO_WS_OP_BINARY:
        break;

    case NGX_DO_WS_OP_CLOSE:
    case NGX_DO_WS_OP_PING:
    case NGX_DO_WS_OP_PONG:
        if (!fin || len > NGX_DO_WS_MAX_CONTROL) {
            return 0;
        }

        break;

    default:
        return 0;
    }

    buf[0] = (u_char) ((fin ? 0x80 : 0) | opcode);

    if (len < 126) {
        buf[1] = (u_char) len;
        return 2;
    }

    if (len <= 0xffff) {
        buf[1] = 126;
        buf[2] = (u_char) (len >> 8);
        buf[3] = (u_char) len;
        return 4;
    }

    if (len >> 63) {
        return 0;
    }

    buf[1] = 127;

    for (i = 0; i < 8; i++) {
        buf[2 + i] = (u_char) (len >> (56 - 8 * i));
    }

    return 10;
}


/*
 * Writes a whole close frame into buf (NGX_DO_WS_MAX_CLOSE_FRAME bytes)
 * and returns its size.  Code 0 sends no code and no reason; any other
 * code must be valid on the wire, else 0 is returned.  The reason, UTF-8,
 * is cut to the 123 bytes that fit, at a character boundary.
 */
size_t
ngx_do_ws_close_frame(u_char *buf, unsigned code, const u_char *reason,
    size_t len)
{
    size_t  hlen;

    if (code == 0) {
        return ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_CLOSE, 1, 0);
    }

    if (!ngx_do_ws_close_code_valid(code)) {
        return 0;
    }

    if (len > NGX_DO_WS_MAX_CONTROL - 2) {
        len = NGX_DO_WS_MAX_CONTROL - 2;

        while (len && (reason[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    hlen = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_CLOSE, 1, 2 + len);

    buf[hlen] = (u_char) (code >> 8);
    buf[hlen + 1] = (u_char) code;

    if (len) {
        memcpy(buf + hlen + 2, reason, len);
    }

    return hlen + 2 + len;
}
