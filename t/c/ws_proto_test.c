
/*
 * Unit tests for src/ngx_do_ws_proto.c, printed as TAP (t/40-ws-proto.t
 * runs this program).  Frame cases are written as the bytes a client
 * sends and the transcript of events the parser must report.  Every frame
 * case is fed whole and then 1, 2, 3, 5, 7 and 13 bytes at a time, and
 * must give the same transcript each way; after an error the parser is
 * called again to check that the error is sticky and reads nothing.
 *
 * Transcript: "T{" or "B{" starts a text or binary message, its payload
 * follows, "}" ends it; <ping:..>, <pong:..>, <close:CODE:reason> and
 * <error:CODE> are the other events.  Bytes outside printable ASCII are
 * shown as \xHH.  On an error, the payload of the message that failed is
 * left out (a failed message is never delivered), so the transcript does
 * not depend on where the input was cut.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_do_ws_proto.h"


#define MAX_INPUT       (1 << 17)
#define MAX_TRANSCRIPT  (1 << 19)
#define DEFAULT_MAX     (1 << 20)

#define TEXT            0x81
#define BINARY          0x82
#define TEXT_MORE       0x01
#define BINARY_MORE     0x02
#define CONT_MORE       0x00
#define CONT_FIN        0x80
#define CLOSE           0x88
#define PING            0x89
#define PONG            0x8a

#define MASKED          1
#define UNMASKED        0

#define S(s)            (const u_char *) (s), sizeof(s) - 1


typedef struct {
    u_char          data[MAX_INPUT];
    size_t          len;
} input_t;


static int          tests_run;
static int          tests_failed;
static input_t      in;
static u_char       work[MAX_INPUT];
static char         got[MAX_TRANSCRIPT];
static char         expect[MAX_TRANSCRIPT];

static const u_char mask_key[4] = { 0x37, 0xfa, 0x21, 0x3d };


static void
ok(int cond, const char *fmt, ...)
{
    va_list  args;

    tests_run++;

    if (!cond) {
        tests_failed++;
    }

    printf("%sok %d - ", cond ? "" : "not ", tests_run);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
}


static void
reset(void)
{
    in.len = 0;
}


static void
put_raw(const void *p, size_t n)
{
    if (in.len + n > MAX_INPUT) {
        fprintf(stderr, "test input too large\n");
        exit(2);
    }

    memcpy(in.data + in.len, p, n);
    in.len += n;
}


static void
put_byte(u_char b)
{
    put_raw(&b, 1);
}


/*
 * A frame as a client would send it.  first: FIN, RSV and opcode as they
 * go on the wire; form: 0 for the minimal length encoding, 126 or 127 to
 * force the 16- or 64-bit form.
 */
static void
put_frame_form(int first_byte, int masked, const void *payload, size_t len,
    int form)
{
    int            i;
    size_t         j;
    u_char         m;
    const u_char  *pl;

    m = masked ? 0x80 : 0;
    put_byte((u_char) first_byte);

    if (form == 0) {
        form = len < 126 ? 0 : (len <= 0xffff ? 126 : 127);
    }

    if (form == 0) {
        put_byte((u_char) (m | len));

    } else if (form == 126) {
        put_byte(m | 126);
        put_byte((u_char) (len >> 8));
        put_byte((u_char) len);

    } else {
        put_byte(m | 127);

        for (i = 0; i < 8; i++) {
            put_byte((u_char) ((uint64_t) len >> (56 - 8 * i)));
        }
    }

    if (masked) {
        put_raw(mask_key, 4);
    }

    pl = payload;

    for (j = 0; j < len; j++) {
        put_byte(masked ? pl[j] ^ mask_key[j & 3] : pl[j]);
    }
}


static void
put_frame(int first_byte, const void *payload, size_t len)
{
    put_frame_form(first_byte, MASKED, payload, len, 0);
}


static void
put_str(int first_byte, const char *s)
{
    put_frame(first_byte, s, strlen(s));
}


/* a frame header alone, masked, announcing len bytes */
static void
put_header(int first_byte, uint64_t len)
{
    int  i;

    put_byte((u_char) first_byte);

    if (len < 126) {
        put_byte((u_char) (0x80 | len));

    } else if (len <= 0xffff) {
        put_byte(0x80 | 126);
        put_byte((u_char) (len >> 8));
        put_byte((u_char) len);

    } else {
        put_byte(0x80 | 127);

        for (i = 0; i < 8; i++) {
            put_byte((u_char) (len >> (56 - 8 * i)));
        }
    }

    put_raw(mask_key, 4);
}


static void
put_close(unsigned code, const char *reason)
{
    u_char  pl[NGX_DO_WS_MAX_CONTROL];
    size_t  n;

    pl[0] = (u_char) (code >> 8);
    pl[1] = (u_char) code;
    n = strlen(reason);
    memcpy(pl + 2, reason, n);

    put_frame(CLOSE, pl, 2 + n);
}


static char *
append(char *t, const char *end, const u_char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n && t + 5 < end; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\' && p[i] != '<'
            && p[i] != '{' && p[i] != '}')
        {
            *t++ = (char) p[i];

        } else {
            t += sprintf(t, "\\x%02x", p[i]);
        }
    }

    *t = '\0';

    return t;
}


/*
 * Feeds in.data to a fresh parser chunk bytes at a time (0: all at once)
 * and writes the transcript into out.  Checks the parser's contract on
 * the way: *pos stays within the input, DATA lies inside the chunk, a
 * message never passes max, and errors are sticky.
 */
static void
run(size_t chunk, uint64_t max, int require_mask, char *out)
{
    int                 rc;
    char               *t, *end, *msg_data;
    size_t              off, n;
    u_char             *pos, *last, *start;
    uint64_t            msg;
    ngx_do_ws_event_t   ev;
    ngx_do_ws_parser_t  p;

    memcpy(work, in.data, in.len);
    ngx_do_ws_parser_init(&p, max, require_mask);

    t = out;
    end = out + MAX_TRANSCRIPT;
    *t = '\0';
    msg_data = NULL;
    msg = 0;

    for (off = 0; off < in.len || (off == 0 && in.len == 0); off += n) {

        n = (chunk == 0 || in.len - off < chunk) ? in.len - off : chunk;
        start = work + off;
        pos = start;
        last = start + n;

        for ( ;; ) {
            rc = ngx_do_ws_parse(&p, &pos, last, &ev);

            if (pos < start || pos > last) {
                t += sprintf(t, "<pos out of range>");
                return;
            }

            if (rc == NGX_DO_WS_AGAIN) {
                if (pos != last) {
                    t += sprintf(t, "<again before the end>");
                }

                break;
            }

            switch (rc) {

            case NGX_DO_WS_MESSAGE_START:
                t += sprintf(t, "%s{",
                             ev.opcode == NGX_DO_WS_OP_TEXT ? "T" : "B");
                msg_data = t;
                msg = 0;
                break;

            case NGX_DO_WS_DATA:
                if (ev.data < start || ev.data + ev.len > pos
                    || ev.len == 0)
                {
                    t += sprintf(t, "<data out of range>");
                }

                msg += ev.len;

                if (max && msg > max) {
                    t += sprintf(t, "<message over max>");
                }

                t = append(t, end, ev.data, ev.len);
                break;

            case NGX_DO_WS_MESSAGE_END:
                t += sprintf(t, "}");
                msg_data = NULL;
                break;

            case NGX_DO_WS_PING:
            case NGX_DO_WS_PONG:
                t += sprintf(t, "<%s:", rc == NGX_DO_WS_PING ? "ping"
                                                             : "pong");
                t = append(t, end, ev.data, ev.len);
                t += sprintf(t, ">");

                if (msg_data) {
                    msg_data = t;
                }

                break;

            case NGX_DO_WS_CLOSE:
                t += sprintf(t, "<close:%u:", ev.code);
                t = append(t, end, ev.data, ev.len);
                t += sprintf(t, ">");
                break;

            case NGX_DO_WS_ERROR:
                if (msg_data) {
                    t = msg_data;
                }

                t += sprintf(t, "<error:%u>", ev.code);

                start = pos;
                rc = ngx_do_ws_parse(&p, &pos, last, &ev);

                if (rc != NGX_DO_WS_ERROR || pos != start
                    || ev.code != p.error)
                {
                    t += sprintf(t, "<error not sticky>");
                }

                return;

            default:
                t += sprintf(t, "<unknown %d>", rc);
                return;
            }
        }

        if (in.len == 0) {
            break;
        }
    }
}


/* The input must give the transcript whole and in every chunk size. */
static void
check_with(const char *name, uint64_t max, int require_mask,
    const char *want)
{
    int            good;
    size_t         i;
    static size_t  chunks[] = { 0, 1, 2, 3, 5, 7, 13 };

    good = 1;

    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        run(chunks[i], max, require_mask, got);

        if (strcmp(got, want) != 0) {
            if (good) {
                printf("# %s\n#   fed %zu bytes at a time\n"
                       "#   got:    %.300s\n#   wanted: %.300s\n",
                       name, chunks[i], got, want);
            }

            good = 0;
        }
    }

    ok(good, "%s", name);
    reset();
}


static void
check(const char *name, const char *want)
{
    check_with(name, DEFAULT_MAX, 1, want);
}


static void
test_rfc_examples(void)
{
    static const u_char  hello_masked[] = {
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };
    static const u_char  pong_masked[] = {
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };
    size_t               i;

    put_raw("\x81\x05Hello", 7);
    check_with("RFC 5.7: a single-frame unmasked text message reads "
               "\"Hello\" where masks are not required", DEFAULT_MAX, 0,
               "T{Hello}");

    put_raw(hello_masked, sizeof(hello_masked));
    check("RFC 5.7: a single-frame masked text message reads \"Hello\"",
          "T{Hello}");

    put_raw("\x01\x03Hel\x80\x02lo", 9);
    check_with("RFC 5.7: a fragmented unmasked text message reads "
               "\"Hello\"", DEFAULT_MAX, 0, "T{Hello}");

    put_raw("\x89\x05Hello", 7);
    check_with("RFC 5.7: an unmasked ping carries \"Hello\"",
               DEFAULT_MAX, 0, "<ping:Hello>");

    put_raw(pong_masked, sizeof(pong_masked));
    check("RFC 5.7: a masked pong carries \"Hello\"", "<pong:Hello>");

    put_raw("\x82\x7e\x01\x00", 4);
    for (i = 0; i < 256; i++) {
        put_byte('a' + i % 26);
    }

    strcpy(expect, "B{");
    for (i = 0; i < 256; i++) {
        expect[2 + i] = (char) ('a' + i % 26);
    }
    strcpy(expect + 2 + 256, "}");

    check_with("RFC 5.7: 256 bytes of binary in one frame (16-bit length)",
               DEFAULT_MAX, 0, expect);

    put_raw("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    for (i = 0; i < 65536; i++) {
        put_byte('a' + i % 26);
    }

    strcpy(expect, "B{");
    for (i = 0; i < 65536; i++) {
        expect[2 + i] = (char) ('a' + i % 26);
    }
    strcpy(expect + 2 + 65536, "}");

    check_with("RFC 5.7: 64 KiB of binary in one frame (64-bit length)",
               DEFAULT_MAX, 0, expect);

    put_raw("\x81\x05Hello", 7);
    check("RFC 5.7's unmasked text from a client closes with 1002",
          "<error:1002>");
}


static void
test_framing(void)
{
    u_char  big[200];

    memset(big, 'x', sizeof(big));

    put_str(TEXT, "hi");
    check("masked text message is delivered", "T{hi}");

    put_str(BINARY, "\x01\x02");
    check("binary message is delivered as is", "B{\\x01\\x02}");

    put_str(TEXT, "");
    check("empty text message starts and ends", "T{}");

    put_str(TEXT, "a");
    put_str(BINARY, "b");
    put_str(PING, "");
    put_str(TEXT, "c");
    check("several frames in one read come out in order",
          "T{a}B{b}<ping:>T{c}");

    put_str(TEXT_MORE, "He");
    put_str(CONT_MORE, "");
    put_str(CONT_MORE, "l");
    put_str(CONT_FIN, "lo");
    check("fragments, empty ones included, make one message", "T{Hello}");

    put_str(TEXT_MORE, "Hel");
    put_str(PING, "p1");
    put_str(CONT_MORE, "l");
    put_str(PONG, "p2");
    put_str(CONT_FIN, "o");
    check("ping and pong between fragments are delivered and the message "
          "goes on", "T{Hel<ping:p1>l<pong:p2>o}");

    put_str(TEXT_MORE, "Hel");
    put_close(1000, "");
    put_str(CONT_FIN, "lo");
    check("close between fragments ends the connection",
          "T{Hel<close:1000:>");

    put_frame_form(TEXT, MASKED, "abcde", 5, 126);
    check("a 16-bit length for 5 bytes (not minimal) is accepted",
          "T{abcde}");

    put_frame_form(TEXT, MASKED, "abcde", 5, 127);
    check("a 64-bit length for 5 bytes (not minimal) is accepted",
          "T{abcde}");

    put_frame(PING, big, 125);
    strcpy(expect, "<ping:");
    memset(expect + 6, 'x', 125);
    strcpy(expect + 6 + 125, ">");
    check("a ping of 125 bytes is delivered whole", expect);

    put_raw("\x81\x05Hello", 7);
    check("unmasked client frame closes with 1002", "<error:1002>");

    put_raw("\x89\x00", 2);
    check("unmasked client ping closes with 1002", "<error:1002>");

    put_str(TEXT_MORE, "a");
    put_raw("\x80\x01" "b", 3);
    check("unmasked continuation closes with 1002", "T{<error:1002>");

    put_str(TEXT | 0x40, "a");
    check("RSV1 set closes with 1002 (no extension negotiated)",
          "<error:1002>");

    put_str(TEXT | 0x20, "a");
    check("RSV2 set closes with 1002", "<error:1002>");

    put_str(TEXT | 0x10, "a");
    check("RSV3 set closes with 1002", "<error:1002>");

    put_str(PING | 0x40, "a");
    check("RSV1 on a control frame closes with 1002", "<error:1002>");

    put_str(0x83, "a");
    check("unknown data opcode 0x3 closes with 1002", "<error:1002>");

    put_str(0x87, "a");
    check("unknown data opcode 0x7 closes with 1002", "<error:1002>");

    put_str(0x8b, "a");
    check("unknown control opcode 0xB closes with 1002", "<error:1002>");

    put_str(0x8f, "a");
    check("unknown control opcode 0xF closes with 1002", "<error:1002>");

    put_str(0x09, "a");
    check("fragmented ping (FIN clear) closes with 1002", "<error:1002>");

    put_str(0x08, "");
    check("fragmented close closes with 1002", "<error:1002>");

    put_str(TEXT_MORE, "a");
    put_str(0x0a, "");
    check("fragmented pong between fragments closes with 1002",
          "T{<error:1002>");

    put_frame(PING, big, 126);
    check("ping of 126 bytes closes with 1002", "<error:1002>");

    put_raw("\x89\xfe", 2);
    check("a control frame announcing a 16-bit length closes with 1002 "
          "after two bytes", "<error:1002>");

    put_frame(CLOSE, big, 200);
    check("close of 200 bytes closes with 1002", "<error:1002>");

    put_str(CONT_FIN, "a");
    check("continuation without a start closes with 1002", "<error:1002>");

    put_str(TEXT, "a");
    put_str(CONT_FIN, "b");
    check("continuation after a finished message closes with 1002",
          "T{a}<error:1002>");

    put_str(TEXT_MORE, "a");
    put_str(TEXT, "b");
    check("a new text frame inside a fragmented message closes with 1002",
          "T{<error:1002>");

    put_str(BINARY_MORE, "a");
    put_str(TEXT_MORE, "b");
    check("a text frame inside a fragmented binary message closes with "
          "1002", "B{<error:1002>");

    put_raw("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00", 10);
    check_with("a 64-bit length with the top bit set closes with 1002, "
               "even without a size limit", 0, 1, "<error:1002>");

    put_raw("\x82\xff\x40\x00\x00\x00\x00\x00\x00\x00", 10);
    check("a 2^62-byte frame closes with 1009 from its header alone",
          "<error:1009>");
}


static void
test_max_message(void)
{
    u_char  big[300];

    memset(big, 'x', sizeof(big));

    put_header(TEXT, 101);
    check_with("message over max_message closes with 1009 before its "
               "payload arrives", 100, 1, "<error:1009>");

    put_frame(BINARY, big, 100);
    strcpy(expect, "B{");
    memset(expect + 2, 'x', 100);
    strcpy(expect + 102, "}");
    check_with("a message of exactly max_message is accepted", 100, 1,
               expect);

    put_frame(BINARY_MORE, big, 60);
    put_frame(CONT_FIN, big, 60);
    check_with("fragments that add up over max_message close with 1009",
               100, 1, "B{<error:1009>");

    put_frame(TEXT_MORE, big, 50);
    put_frame(PING, big, 100);
    put_frame(CONT_FIN, big, 50);
    strcpy(expect, "T{");
    memset(expect + 2, 'x', 50);
    strcpy(expect + 52, "<ping:");
    memset(expect + 58, 'x', 100);
    strcpy(expect + 158, ">");
    memset(expect + 159, 'x', 50);
    strcpy(expect + 209, "}");
    check_with("control frames do not count toward max_message", 100, 1,
               expect);

    put_frame(BINARY, big, 80);
    put_frame(BINARY, big, 80);
    strcpy(expect, "B{");
    memset(expect + 2, 'x', 80);
    strcpy(expect + 82, "}B{");
    memset(expect + 85, 'x', 80);
    strcpy(expect + 165, "}");
    check_with("max_message applies to each message, not the connection",
               100, 1, expect);

    put_frame(BINARY, big, 300);
    strcpy(expect, "B{");
    memset(expect + 2, 'x', 300);
    strcpy(expect + 302, "}");
    check_with("max_message 0 means no limit", 0, 1, expect);
}


static void
test_utf8(void)
{
    put_str(TEXT, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e");
    check("valid 2-, 3- and 4-byte UTF-8 text is accepted",
          "T{caf\\xc3\\xa9 \\xe2\\x82\\xac \\xf0\\x9d\\x84\\x9e}");

    put_str(TEXT, "\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf");
    check("U+D7FF, U+E000, U+FFFF and U+10FFFF are accepted",
          "T{\\xed\\x9f\\xbf\\xee\\x80\\x80\\xef\\xbf\\xbf"
          "\\xf4\\x8f\\xbf\\xbf}");

    put_str(TEXT, "a\xc0\x80");
    check("overlong 2-byte form (C0 80) closes with 1007", "T{<error:1007>");

    put_str(TEXT, "\xc1\xbf");
    check("overlong 2-byte form (C1 BF) closes with 1007", "T{<error:1007>");

    put_str(TEXT, "\xe0\x80\x80");
    check("overlong 3-byte form (E0 80 80) closes with 1007",
          "T{<error:1007>");

    put_str(TEXT, "\xe0\x9f\xbf");
    check("overlong 3-byte form (E0 9F BF) closes with 1007",
          "T{<error:1007>");

    put_str(TEXT, "\xf0\x8f\xbf\xbf");
    check("overlong 4-byte form (F0 8F BF BF) closes with 1007",
          "T{<error:1007>");

    put_str(TEXT, "\xed\xa0\x80");
    check("UTF-16 surrogate U+D800 (ED A0 80) closes with 1007",
          "T{<error:1007>");

    put_str(TEXT, "\xed\xbf\xbf");
    check("UTF-16 surrogate U+DFFF (ED BF BF) closes with 1007",
          "T{<error:1007>");

    put_str(TEXT, "\xf4\x90\x80\x80");
    check("code point above U+10FFFF (F4 90 80 80) closes with 1007",
          "T{<error:1007>");

    put_str(TEXT, "\xf5\x80\x80\x80");
    check("lead byte F5 closes with 1007", "T{<error:1007>");

    put_str(TEXT, "\xff");
    check("byte FF closes with 1007", "T{<error:1007>");

    put_str(TEXT, "ab\x80");
    check("a stray continuation byte closes with 1007", "T{<error:1007>");

    put_str(TEXT, "\xc3" "a");
    check("a lead byte followed by ASCII closes with 1007",
          "T{<error:1007>");

    put_str(TEXT, "abc\xe2\x82");
    check("a character cut at the end of a message closes with 1007",
          "T{<error:1007>");

    put_str(TEXT_MORE, "caf\xc3");
    put_str(CONT_FIN, "\xa9");
    check("a character split across fragments is accepted",
          "T{caf\\xc3\\xa9}");

    put_str(TEXT_MORE, "\xf0");
    put_str(CONT_MORE, "\x9d\x84");
    put_str(PING, "");
    put_str(CONT_FIN, "\x9e");
    check("a 4-byte character split over three fragments and a ping is "
          "accepted", "T{\\xf0\\x9d\\x84<ping:>\\x9e}");

    put_str(TEXT_MORE, "ok\xed");
    put_str(CONT_FIN, "\xa0\x80");
    check("a surrogate split across fragments closes with 1007",
          "T{<error:1007>");

    put_str(TEXT_MORE, "ok");
    put_str(CONT_FIN, "\xc0\xaf");
    check("invalid UTF-8 in a later fragment closes with 1007",
          "T{<error:1007>");

    put_str(TEXT_MORE, "ok\xe2\x82");
    put_str(CONT_FIN, "");
    check("a character cut by the final (empty) fragment closes with 1007",
          "T{<error:1007>");

    put_str(BINARY, "\xff\xc0\x80\xed\xa0\x80");
    check("binary messages are not checked for UTF-8",
          "B{\\xff\\xc0\\x80\\xed\\xa0\\x80}");
}


static void
test_close(void)
{
    size_t          i;
    char            name[128], want[64];
    static unsigned good[] = {
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
        1014, 3000, 3999, 4000, 4999
    };
    static unsigned bad[] = {
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
        65535
    };

    put_frame(CLOSE, "", 0);
    check("a close without payload reports 1005 and no reason",
          "<close:1005:>");

    put_close(1000, "bye");
    check("a close with 1000 and a reason reports both", "<close:1000:bye>");

    put_close(1001, "caf\xc3\xa9");
    check("a close reason in UTF-8 is accepted",
          "<close:1001:caf\\xc3\\xa9>");

    put_frame(CLOSE, "\x03", 1);
    check("a 1-byte close payload closes with 1002", "<error:1002>");

    put_close(1000, "\xc0\x80");
    check("a close reason that is not UTF-8 closes with 1007",
          "<error:1007>");

    put_close(1000, "ab\xe2\x82");
    check("a close reason cut inside a character closes with 1007",
          "<error:1007>");

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        put_close(good[i], "");
        snprintf(name, sizeof(name), "close code %u is accepted", good[i]);
        snprintf(want, sizeof(want), "<close:%u:>", good[i]);
        check(name, want);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_close(bad[i], "");
        snprintf(name, sizeof(name), "close code %u closes with 1002",
                 bad[i]);
        check(name, "<error:1002>");
    }

    put_close(1000, "");
    put_str(TEXT, "late");
    put_raw("\xff\xff\xff", 3);
    check("bytes after a close frame are ignored", "<close:1000:>");
}


static void
test_byte_at_a_time(void)
{
    int                 rc, events;
    u_char             *pos;
    size_t              i;
    ngx_do_ws_event_t   ev;
    ngx_do_ws_parser_t  p;

    /* the same as check() does for every case, spelled out once */

    put_str(TEXT_MORE, "h\xc3");
    put_str(PING, "p");
    put_str(CONT_FIN, "\xa9");
    memcpy(work, in.data, in.len);

    ngx_do_ws_parser_init(&p, 100, 1);
    events = 0;
    rc = NGX_DO_WS_AGAIN;

    for (i = 0; i < in.len; i++) {
        pos = work + i;

        do {
            rc = ngx_do_ws_parse(&p, &pos, work + i + 1, &ev);
            if (rc != NGX_DO_WS_AGAIN) {
                events++;
            }
        } while (rc != NGX_DO_WS_AGAIN && rc != NGX_DO_WS_ERROR);
    }

    /* START, DATA h, DATA c3, PING, DATA a9, END */
    ok(events == 6 && rc == NGX_DO_WS_AGAIN,
       "byte at a time: fragmented text with a ping gives its six events");
    reset();

    put_str(TEXT, "ok");
    put_raw("\x81\x05", 2);
    memcpy(work, in.data, in.len);

    ngx_do_ws_parser_init(&p, 100, 1);
    rc = NGX_DO_WS_AGAIN;

    for (i = 0; i < in.len && rc != NGX_DO_WS_ERROR; i++) {
        pos = work + i;

        do {
            rc = ngx_do_ws_parse(&p, &pos, work + i + 1, &ev);
        } while (rc != NGX_DO_WS_AGAIN && rc != NGX_DO_WS_ERROR);
    }

    ok(rc == NGX_DO_WS_ERROR && ev.code == 1002 && i == in.len,
       "byte at a time: an unmasked frame fails on its second byte");
    reset();
}


static void
test_utf8_validator(void)
{
    size_t            i;
    ngx_do_ws_utf8_t  u;
    const char       *s = "h\xc3\xa9llo \xf0\x9f\x98\x80";

    memset(&u, 0, sizeof(u));
    for (i = 0; i < strlen(s); i++) {
        ngx_do_ws_utf8_feed(&u, (const u_char *) s + i, 1);
    }

    ok(ngx_do_ws_utf8_done(&u), "utf8: valid text fed a byte at a time is "
       "valid");

    memset(&u, 0, sizeof(u));
    ngx_do_ws_utf8_feed(&u, S("0123456789abcdef0123456789\xe2"));
    ok(!ngx_do_ws_utf8_done(&u) && !u.bad,
       "utf8: a long ASCII run then a lead byte is incomplete, not bad");

    ngx_do_ws_utf8_feed(&u, S("\x82\xac"));
    ok(ngx_do_ws_utf8_done(&u), "utf8: ... and complete once the rest "
       "arrives");

    memset(&u, 0, sizeof(u));
    ngx_do_ws_utf8_feed(&u, S("01234567\x80" "abcdefgh"));
    ok(u.bad, "utf8: a bad byte after an ASCII run is found, and stays "
       "bad");
}


static void
hs_default(ngx_do_ws_handshake_t *hs)
{
    memset(hs, 0, sizeof(ngx_do_ws_handshake_t));

    hs->upgrade.data = (const u_char *) "websocket";
    hs->upgrade.len = 9;
    hs->connection.data = (const u_char *) "Upgrade";
    hs->connection.len = 7;
    hs->version.data = (const u_char *) "13";
    hs->version.len = 2;
    hs->key.data = (const u_char *) "dGhlIHNhbXBsZSBub25jZQ==";
    hs->key.len = 24;
}


static void
set(ngx_do_ws_str_t *s, const char *v)
{
    s->data = (const u_char *) v;
    s->len = v ? strlen(v) : 0;
}


static int
verdict(ngx_do_ws_handshake_t *hs, const ngx_do_ws_policy_t *policy)
{
    const ngx_do_ws_str_t  *proto;

    return ngx_do_ws_handshake_check(hs, policy, &proto);
}


static void
test_handshake(void)
{
    int                     rc;
    u_char                  acc[NGX_DO_WS_ACCEPT_LEN + 1];
    ngx_do_ws_str_t         key;
    ngx_do_ws_policy_t      policy;
    ngx_do_ws_handshake_t   hs;
    const ngx_do_ws_str_t  *proto;
    static ngx_do_ws_str_t  origins[2], protocols[2];

    set(&key, "dGhlIHNhbXBsZSBub25jZQ==");
    memset(acc, 0, sizeof(acc));
    rc = ngx_do_ws_accept_key(&key, acc);
    ok(rc == 0 && strcmp((char *) acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0,
       "accept: the RFC's key gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    set(&key, "dGhlIHNhbXBsZSBub25jZQ=");
    ok(ngx_do_ws_accept_key(&key, acc) == -1,
       "accept: a key of the wrong length is refused");

    hs_default(&hs);
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_OK
       && ngx_do_ws_handshake_status(NGX_DO_WS_HS_OK) == 101,
       "handshake: a browser's request is accepted (101)");

    hs_default(&hs);
    set(&hs.upgrade, "WebSocket");
    set(&hs.connection, "keep-alive, Upgrade");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_OK,
       "handshake: Upgrade and Connection tokens ignore case; Connection "
       "is a list");

    hs_default(&hs);
    set(&hs.upgrade, "h2c,\twebsocket");
    set(&hs.connection, "Upgrade keep-alive");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_OK,
       "handshake: tokens separated by commas, tabs or spaces are found");

    hs_default(&hs);
    set(&hs.upgrade, NULL);
    rc = verdict(&hs, NULL);
    ok(rc == NGX_DO_WS_HS_NO_UPGRADE
       && ngx_do_ws_handshake_status(rc) == 400,
       "handshake: no Upgrade header gives 400");

    hs_default(&hs);
    set(&hs.upgrade, "websockets, h2c");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_NO_UPGRADE,
       "handshake: Upgrade without the exact token websocket gives 400");

    hs_default(&hs);
    set(&hs.connection, "keep-alive");
    rc = verdict(&hs, NULL);
    ok(rc == NGX_DO_WS_HS_NO_CONNECTION
       && ngx_do_ws_handshake_status(rc) == 400,
       "handshake: Connection without upgrade gives 400");

    hs_default(&hs);
    set(&hs.connection, "upgrade-insecure-requests");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_NO_CONNECTION,
       "handshake: a token that only starts with upgrade is not upgrade");

    hs_default(&hs);
    set(&hs.version, "8");
    rc = verdict(&hs, NULL);
    ok(rc == NGX_DO_WS_HS_BAD_VERSION
       && ngx_do_ws_handshake_status(rc) == 426,
       "handshake: version 8 gives 426");

    hs_default(&hs);
    set(&hs.version, NULL);
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_BAD_VERSION,
       "handshake: no version gives 426");

    hs_default(&hs);
    set(&hs.version, "13, 8");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_BAD_VERSION,
       "handshake: a version list gives 426 (exactly 13 only)");

    hs_default(&hs);
    set(&hs.version, "013");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_BAD_VERSION,
       "handshake: version 013 gives 426");

    hs_default(&hs);
    set(&hs.key, NULL);
    rc = verdict(&hs, NULL);
    ok(rc == NGX_DO_WS_HS_BAD_KEY && ngx_do_ws_handshake_status(rc) == 400,
       "handshake: no key gives 400");

    hs_default(&hs);
    set(&hs.key, "dGhlIHNhbXBsZSBub25jZQ");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_BAD_KEY,
       "handshake: a key without its padding gives 400");

    hs_default(&hs);
    set(&hs.key, "AAAAAAAAAAAAAAAAAAAAAAAA");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_BAD_KEY,
       "handshake: 24 symbols that decode to 18 bytes give 400");

    hs_default(&hs);
    set(&hs.key, "dGhlIHNhbXBsZSBub25jZ*==");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_BAD_KEY,
       "handshake: a key with a character outside base64 gives 400");

    hs_default(&hs);
    set(&hs.key, "dGhlIHNhbXBsZSBub25jZQ==A");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_BAD_KEY,
       "handshake: a key with trailing bytes gives 400");

    hs_default(&hs);
    set(&hs.key, "AAAAAAAAAAAAAAAAAAAAAA==");
    ok(verdict(&hs, NULL) == NGX_DO_WS_HS_OK,
       "handshake: any 16 bytes in base64 are a key");

    set(&origins[0], "https://chat.example.com");
    set(&origins[1], "http://localhost:8080");
    memset(&policy, 0, sizeof(policy));
    policy.origins = origins;
    policy.norigins = 2;

    hs_default(&hs);
    set(&hs.origin, "https://chat.example.com");
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_OK,
       "origin: an origin on the allow-list is accepted");

    hs_default(&hs);
    set(&hs.origin, "HTTPS://Chat.Example.COM");
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_OK,
       "origin: scheme and host are compared without regard to case");

    hs_default(&hs);
    set(&hs.origin, "http://localhost:8080");
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_OK,
       "origin: an origin with a port matches the same port");

    hs_default(&hs);
    set(&hs.origin, "http://localhost:8081");
    rc = verdict(&hs, &policy);
    ok(rc == NGX_DO_WS_HS_BAD_ORIGIN && ngx_do_ws_handshake_status(rc) == 403,
       "origin: another port gives 403");

    hs_default(&hs);
    set(&hs.origin, "http://chat.example.com");
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_BAD_ORIGIN,
       "origin: another scheme gives 403");

    hs_default(&hs);
    set(&hs.origin, "https://chat.example.com.evil.example");
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_BAD_ORIGIN,
       "origin: a host that only starts with an allowed one gives 403");

    hs_default(&hs);
    set(&hs.origin, "https://chat.example.com/");
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_BAD_ORIGIN,
       "origin: a trailing slash gives 403 (exact match)");

    hs_default(&hs);
    set(&hs.origin, "null");
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_BAD_ORIGIN,
       "origin: the opaque origin null gives 403");

    hs_default(&hs);
    set(&hs.origin, "");
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_BAD_ORIGIN,
       "origin: an empty Origin gives 403");

    hs_default(&hs);
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_OK,
       "origin: a request without Origin (not a browser) is accepted");

    hs_default(&hs);
    set(&hs.origin, "https://anything.example");
    policy.norigins = 0;
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_OK,
       "origin: without an allow-list any origin is accepted");

    hs_default(&hs);
    set(&hs.version, "7");
    set(&hs.origin, "https://evil.example");
    policy.norigins = 2;
    ok(verdict(&hs, &policy) == NGX_DO_WS_HS_BAD_VERSION,
       "handshake: a bad version is reported before a bad origin");

    set(&protocols[0], "chat.v2");
    set(&protocols[1], "chat.v1");
    memset(&policy, 0, sizeof(policy));
    policy.protocols = protocols;
    policy.nprotocols = 2;

    hs_default(&hs);
    set(&hs.protocol, "chat.v1, chat.v2");
    rc = ngx_do_ws_handshake_check(&hs, &policy, &proto);
    ok(rc == NGX_DO_WS_HS_OK && proto == &protocols[0],
       "subprotocol: the server's preferred one wins over the client's "
       "order");

    hs_default(&hs);
    set(&hs.protocol, "other,chat.v1");
    rc = ngx_do_ws_handshake_check(&hs, &policy, &proto);
    ok(rc == NGX_DO_WS_HS_OK && proto == &protocols[1],
       "subprotocol: the only common one is chosen");

    hs_default(&hs);
    set(&hs.protocol, "other, chat.v1x, Chat.V2");
    rc = ngx_do_ws_handshake_check(&hs, &policy, &proto);
    ok(rc == NGX_DO_WS_HS_OK && proto == NULL,
       "subprotocol: names match exactly and with case; none in common "
       "chooses none and still accepts");

    hs_default(&hs);
    rc = ngx_do_ws_handshake_check(&hs, &policy, &proto);
    ok(rc == NGX_DO_WS_HS_OK && proto == NULL,
       "subprotocol: a client that offers none gets none");

    hs_default(&hs);
    set(&hs.protocol, "chat.v1");
    policy.nprotocols = 0;
    rc = ngx_do_ws_handshake_check(&hs, &policy, &proto);
    ok(rc == NGX_DO_WS_HS_OK && proto == NULL,
       "subprotocol: a server with no list chooses none");

    ok(strlen(ngx_do_ws_handshake_reason(NGX_DO_WS_HS_BAD_KEY)) > 0
       && ngx_do_ws_handshake_status(NGX_DO_WS_HS_NO_CONNECTION) == 400,
       "handshake: every refusal has a status and a reason to log");
}


static void
test_builders(void)
{
    u_char  buf[NGX_DO_WS_MAX_CLOSE_FRAME];
    u_char  reason[200];
    size_t  n, i;

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_TEXT, 1, 5);
    ok(n == 2 && buf[0] == 0x81 && buf[1] == 0x05,
       "builder: a 5-byte text frame has the 2-byte header 81 05");

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_BINARY, 1, 125);
    ok(n == 2 && buf[0] == 0x82 && buf[1] == 125,
       "builder: 125 bytes still fit the 7-bit length");

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_BINARY, 1, 256);
    ok(n == 4 && memcmp(buf, "\x82\x7e\x01\x00", 4) == 0,
       "builder: 256 bytes use the 16-bit length (RFC 5.7)");

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_BINARY, 1, 65535);
    ok(n == 4 && buf[2] == 0xff && buf[3] == 0xff,
       "builder: 65535 bytes still fit the 16-bit length");

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_BINARY, 1, 65536);
    ok(n == 10 && memcmp(buf, "\x82\x7f\0\0\0\0\0\x01\0\0", 10) == 0,
       "builder: 64 KiB uses the 64-bit length (RFC 5.7)");

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_TEXT, 0, 3);
    ok(n == 2 && buf[0] == 0x01,
       "builder: a first fragment has FIN clear");

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_PING, 1, 0);
    ok(n == 2 && buf[0] == 0x89 && buf[1] == 0,
       "builder: an empty ping is 89 00");

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_PONG, 1, 5);
    ok(n == 2 && buf[0] == 0x8a, "builder: a pong has opcode A");

    ok(ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_PING, 1, 126) == 0,
       "builder: a ping over 125 bytes is refused");

    ok(ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_CLOSE, 0, 2) == 0,
       "builder: a fragmented close is refused");

    ok(ngx_do_ws_frame_header(buf, 0x3, 1, 2) == 0,
       "builder: a reserved opcode is refused");

    ok(ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_BINARY, 1,
                              (uint64_t) 1 << 63) == 0,
       "builder: a length of 2^63 is refused");

    n = ngx_do_ws_close_frame(buf, 1000, (const u_char *) "bye", 3);
    ok(n == 7 && memcmp(buf, "\x88\x05\x03\xe8" "bye", 7) == 0,
       "builder: close 1000 \"bye\" is 88 05 03 e8 b y e");

    n = ngx_do_ws_close_frame(buf, 0, NULL, 0);
    ok(n == 2 && buf[0] == 0x88 && buf[1] == 0,
       "builder: a close without a code is 88 00");

    ok(ngx_do_ws_close_frame(buf, 1005, NULL, 0) == 0
       && ngx_do_ws_close_frame(buf, 1006, NULL, 0) == 0,
       "builder: codes 1005 and 1006 are never sent");

    n = ngx_do_ws_close_frame(buf, 1013, NULL, 0);
    ok(n == 4 && buf[2] == 0x03 && buf[3] == 0xf5,
       "builder: 1013 (try again later) can be sent");

    for (i = 0; i < sizeof(reason); i += 2) {
        reason[i] = 0xc3;
        reason[i + 1] = 0xa9;
    }

    n = ngx_do_ws_close_frame(buf, 1001, reason, sizeof(reason));
    ok(n == 2 + 2 + 122 && buf[1] == 124 && buf[n - 1] == 0xa9,
       "builder: a long reason is cut to fit 125 bytes at a character "
       "boundary");

    reset();
    put_raw(buf, n);
    strcpy(expect, "<close:1001:");
    for (i = 0; i < 61; i++) {
        strcat(expect, "\\xc3\\xa9");
    }
    strcat(expect, ">");
    check_with("builder: the cut close frame parses back as a valid close",
               DEFAULT_MAX, 0, expect);

    n = ngx_do_ws_frame_header(buf, NGX_DO_WS_OP_TEXT, 1, 300);
    put_raw(buf, n);
    for (i = 0; i < 300; i++) {
        put_byte('z');
    }
    strcpy(expect, "T{");
    memset(expect + 2, 'z', 300);
    strcpy(expect + 302, "}");
    check_with("builder: a server text frame parses back as its message",
               DEFAULT_MAX, 0, expect);
}


int
main(void)
{
    test_rfc_examples();
    test_framing();
    test_max_message();
    test_utf8();
    test_close();
    test_byte_at_a_time();
    test_utf8_validator();
    test_handshake();
    test_builders();

    printf("1..%d\n", tests_run);

    return tests_failed ? 1 : 0;
}
