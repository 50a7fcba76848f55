
/*
 * libFuzzer target for the frame parser of src/ngx_do_ws_proto.c.
 *
 * Input: a configuration byte (bit 0: masks required; bits 1-3: which
 * max_message), a count of split points (low 4 bits), that many chunk
 * sizes, then the bytes of the stream.  The stream is fed in chunks of
 * those sizes, in turn, each chunk in a heap buffer of its exact size so
 * that AddressSanitizer sees any read or write past it.
 *
 * Checked on every event: *pos stays in the chunk; DATA lies in what was
 * read; events come in a legal order (no DATA or END outside a message,
 * nothing after CLOSE); a message never exceeds max_message; a finished
 * text message is valid UTF-8 by an independent decoder; control payloads
 * fit 125 bytes; a close code is one a peer may send; errors carry 1002,
 * 1007 or 1009 (1009 only with a limit) and come back unchanged, reading
 * nothing, on every later call.  The close frame builder is checked too:
 * its frame parses back to the code, or to 1007 when the reason is not
 * UTF-8.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_do_ws_proto.h"


#define MAX_TEXT  (1 << 16)


static const uint64_t  maxes[8] = {
    0, 1, 125, 126, 1000, 4096, 65535, 65536
};

static u_char          text[MAX_TEXT];


/* A plain decoder, written apart from the validator it checks. */
static int
utf8_valid(const u_char *s, size_t n)
{
    size_t    i, k, len;
    uint32_t  cp, min;

    for (i = 0; i < n; i += len) {

        if (s[i] < 0x80) {
            len = 1;
            continue;
        }

        if ((s[i] & 0xe0) == 0xc0) {
            len = 2;
            cp = s[i] & 0x1f;
            min = 0x80;

        } else if ((s[i] & 0xf0) == 0xe0) {
            len = 3;
            cp = s[i] & 0x0f;
            min = 0x800;

        } else if ((s[i] & 0xf8) == 0xf0) {
            len = 4;
            cp = s[i] & 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (i + len > n) {
            return 0;
        }

        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (s[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


static void
check_close_builder(const uint8_t *data, size_t size)
{
    int                 rc;
    size_t              n, len;
    u_char              frame[NGX_DO_WS_MAX_CLOSE_FRAME];
    u_char             *pos;
    unsigned            code;
    ngx_do_ws_event_t   ev;
    ngx_do_ws_parser_t  p;

    if (size < 2) {
        return;
    }

    code = (data[0] << 8) | data[1];
    len = size - 2;

    n = ngx_do_ws_close_frame(frame, code, data + 2, len);

    if (n == 0) {
        if (code == 0 || ngx_do_ws_close_code_valid(code)) {
            abort();
        }

        return;
    }

    if (n > sizeof(frame)) {
        abort();
    }

    ngx_do_ws_parser_init(&p, 0, 0);
    pos = frame;
    rc = ngx_do_ws_parse(&p, &pos, frame + n, &ev);

    if (code == 0) {
        if (rc != NGX_DO_WS_CLOSE || ev.code != NGX_DO_WS_CLOSE_NO_STATUS) {
            abort();
        }

        return;
    }

    /* the reason is cut at a character boundary, so valid stays valid */

    if (rc == NGX_DO_WS_CLOSE) {
        if (ev.code != code || ev.len != n - 4 || ev.len > len
            || memcmp(ev.data, data + 2, ev.len) != 0)
        {
            abort();
        }

    } else if (rc != NGX_DO_WS_ERROR
               || ev.code != NGX_DO_WS_CLOSE_INVALID_DATA
               || utf8_valid(data + 2, len)
               || utf8_valid(frame + 4, n - 4))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc, in_msg, closed, msg_text;
    size_t              i, nsplits, split, off, n, text_len;
    u_char             *chunk, *pos, *last, *before;
    uint8_t             conf;
    uint64_t            max, msg;
    unsigned            error;
    const uint8_t      *splits;
    ngx_do_ws_event_t   ev;
    ngx_do_ws_parser_t  p;

    if (size < 2) {
        return 0;
    }

    conf = data[0];
    nsplits = data[1] & 0x0f;

    if (size < 2 + nsplits) {
        return 0;
    }

    splits = data + 2;
    data += 2 + nsplits;
    size -= 2 + nsplits;

    check_close_builder(data, size < 200 ? size : 200);

    max = maxes[(conf >> 1) & 7];
    ngx_do_ws_parser_init(&p, max, conf & 1);

    in_msg = 0;
    closed = 0;
    msg_text = 0;
    msg = 0;
    text_len = 0;
    error = 0;
    split = 0;

    for (off = 0; off < size; off += n) {

        n = size - off;

        if (nsplits && splits[split % nsplits] && splits[split % nsplits] < n)
        {
            n = splits[split % nsplits];
        }

        split++;

        chunk = malloc(n);
        if (chunk == NULL) {
            return 0;
        }

        memcpy(chunk, data + off, n);
        pos = chunk;
        last = chunk + n;

        for ( ;; ) {
            before = pos;
            rc = ngx_do_ws_parse(&p, &pos, last, &ev);

            if (pos < before || pos > last) {
                abort();
            }

            if (error) {
                if (rc != NGX_DO_WS_ERROR || ev.code != error
                    || pos != before)
                {
                    abort();
                }

                break;
            }

            if (rc == NGX_DO_WS_AGAIN) {
                if (pos != last) {
                    abort();
                }

                break;
            }

            if (closed) {
                abort();
            }

            switch (rc) {

            case NGX_DO_WS_MESSAGE_START:
                if (in_msg || (ev.opcode != NGX_DO_WS_OP_TEXT
                               && ev.opcode != NGX_DO_WS_OP_BINARY))
                {
                    abort();
                }

                in_msg = 1;
                msg_text = (ev.opcode == NGX_DO_WS_OP_TEXT);
                msg = 0;
                text_len = 0;
                break;

            case NGX_DO_WS_DATA:
                if (!in_msg || ev.len == 0 || ev.data < before
                    || ev.data + ev.len > pos)
                {
                    abort();
                }

                msg += ev.len;

                if (max && msg > max) {
                    abort();
                }

                if (msg_text && text_len + ev.len <= MAX_TEXT) {
                    memcpy(text + text_len, ev.data, ev.len);
                }

                text_len += ev.len;
                break;

            case NGX_DO_WS_MESSAGE_END:
                if (!in_msg) {
                    abort();
                }

                if (msg_text && text_len <= MAX_TEXT
                    && !utf8_valid(text, text_len))
                {
                    abort();
                }

                in_msg = 0;
                break;

            case NGX_DO_WS_PING:
            case NGX_DO_WS_PONG:
                if (ev.len > NGX_DO_WS_MAX_CONTROL) {
                    abort();
                }

                break;

            case NGX_DO_WS_CLOSE:
                if (ev.code == NGX_DO_WS_CLOSE_NO_STATUS) {
                    if (ev.len != 0) {
                        abort();
                    }

                } else if (!ngx_do_ws_close_code_valid(ev.code)
                           || ev.len > NGX_DO_WS_MAX_CONTROL - 2
                           || !utf8_valid(ev.data, ev.len))
                {
                    abort();
                }

                closed = 1;
                break;

            case NGX_DO_WS_ERROR:
                if (ev.code != NGX_DO_WS_CLOSE_PROTOCOL
                    && ev.code != NGX_DO_WS_CLOSE_INVALID_DATA
                    && !(ev.code == NGX_DO_WS_CLOSE_TOO_BIG && max))
                {
                    abort();
                }

                error = ev.code;
                break;

            default:
                abort();
            }
        }

        free(chunk);
    }

    for (i = 0; error && i < 2; i++) {
        pos = NULL;
        rc = ngx_do_ws_parse(&p, &pos, NULL, &ev);

        if (rc != NGX_DO_WS_ERROR || ev.code != error || pos != NULL) {
            abort();
        }
    }

    return 0;
}
