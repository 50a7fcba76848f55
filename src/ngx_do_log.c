
/*
 * What the module writes to the error log, when it may repeat or carries
 * bytes that are not its own.
 *
 * An error that every request can hit while storage is down or full, or a
 * channel is jammed, would otherwise fill the log at the request rate:
 * ngx_do_log_throttled() logs at most one line a second of each kind for
 * the whole nginx, and the next line of that kind says how many were
 * suppressed in between.  Each kind has a slot (the second of its last
 * line and the count since) in the status zone, shared by all workers;
 * until a worker has the zone (at configuration) the slots are this
 * process's own.
 *
 * Bytes from clients and from storage (IDs, names, keys, Redis replies)
 * reach a log line only through ngx_do_log_escape(): bounded, and with
 * every byte that could move a terminal's cursor or start a new line
 * escaped.  Storage URLs reach it through ngx_do_log_url(), which hides
 * credentials.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"


static ngx_uint_t ngx_do_log_pass(ngx_uint_t kind,
    ngx_atomic_uint_t *suppressed);


static ngx_do_log_slot_t   ngx_do_log_local[NGX_DO_LOG_KINDS];
static ngx_do_log_slot_t  *ngx_do_log_slots = ngx_do_log_local;


/* in a worker: the slots of all workers (NGX_DO_LOG_KINDS of them) */
void
ngx_do_log_share(ngx_do_log_slot_t *slots)
{
    ngx_do_log_slots = slots ? slots : ngx_do_log_local;
}


void
ngx_do_log_throttled(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    ngx_uint_t kind, const char *fmt, ...)
{
    u_char             *p, *last;
    va_list             args;
    ngx_atomic_uint_t   suppressed;
    u_char              msg[NGX_MAX_ERROR_STR];

    if (log->log_level < level || kind >= NGX_DO_LOG_KINDS) {
        return;
    }

    if (!ngx_do_log_pass(kind, &suppressed)) {
        return;
    }

    /* room for the count at the end */
    last = msg + sizeof(msg) - 64;

    va_start(args, fmt);
    p = ngx_vslprintf(msg, last, fmt, args);
    va_end(args);

    if (err) {
        p = ngx_log_errno(p, last, err);
    }

    if (suppressed) {
        p = ngx_slprintf(p, msg + sizeof(msg),
                         " (%uA similar errors suppressed)", suppressed);
    }

    ngx_log_error(level, log, 0, "%*s", (size_t) (p - msg), msg);
}


/*
 * 1: the kind's line of this second, with *suppressed the lines skipped
 * since the last one.  The second only moves forward: a worker whose
 * cached time lags behind another's cannot log a second line for a
 * second already logged.
 */
static ngx_uint_t
ngx_do_log_pass(ngx_uint_t kind, ngx_atomic_uint_t *suppressed)
{
    ngx_atomic_uint_t   now, last, n;
    ngx_do_log_slot_t  *slot;

    slot = &ngx_do_log_slots[kind];

    now = (ngx_atomic_uint_t) ngx_time();
    last = slot->second;

    if (now <= last || !ngx_atomic_cmp_set(&slot->second, last, now)) {
        (void) ngx_atomic_fetch_add(&slot->suppressed, 1);
        return 0;
    }

    do {
        n = slot->suppressed;
    } while (!ngx_atomic_cmp_set(&slot->suppressed, n, 0));

    *suppressed = n;

    return 1;
}


/*
 * Up to (size - 3) / 4 bytes of data into buf, "..." after a longer one;
 * control bytes, bytes over 0x7e and the backslash (so that an escape
 * cannot be forged) as \xNN.  The length.
 */
size_t
ngx_do_log_escape(u_char *buf, size_t size, u_char *data, size_t len)
{
    u_char         *p, c;
    size_t          i, n;
    static u_char   hex[] = "0123456789abcdef";

    p = buf;
    n = ngx_min(len, (size - 3) / 4);

    for (i = 0; i < n; i++) {
        c = data[i];

        if (c < 0x20 || c > 0x7e || c == '\\' || c == '"') {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
            continue;
        }

        *p++ = c;
    }

    if (len > n) {
        p = ngx_cpymem(p, "...", 3);
    }

    return p - buf;
}


/*
 * A URL for a log line: what stands between "://" and the last "@" (a
 * user and password) as "***".  Into buf up to last; the end.
 */
u_char *
ngx_do_log_url(u_char *buf, u_char *last, ngx_str_t *url)
{
    u_char  *p, *end, *at, *q;

    end = url->data + url->len;
    p = ngx_strnstr(url->data, "://", url->len);

    if (p == NULL) {
        return ngx_slprintf(buf, last, "%V", url);
    }

    p += 3;
    at = NULL;

    for (q = p; q < end; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    if (at == NULL) {
        return ngx_slprintf(buf, last, "%V", url);
    }

    return ngx_slprintf(buf, last, "%*s***%*s", (size_t) (p - url->data),
                        url->data, (size_t) (end - at), at);
}
