/*
 * ws-load: a WebSocket chat-room load generator for bench/ws.sh.
 *
 * One thread, one epoll set, non-blocking sockets to 127.0.0.1.  It opens
 * N member connections to one room (at most a few handshakes in flight at
 * a time), waits until the room is quiet (a server that announces joins
 * to everyone is done announcing), optionally measures the server's
 * memory (PSS of a process and its children), then lets S of the members
 * send closed-loop: a sender has at most `window` messages in flight and
 * sends the next one when one of its own comes back to it.  A message of
 * its own that does not come back (lost) does not stop it: a later one
 * coming back settles the earlier ones, and it gives up waiting after
 * four times the mean echo time (at least a second); "gave_up" counts
 * those messages.
 *
 * A message is the text "s<sender> <counter> <send time in ns> " padded
 * with 'x'.  Every member keeps a bitmap per sender of the counters it
 * got, so at the end each delivery is accounted for: lost = messages sent
 * x members - distinct deliveries (a member closed by the server counts
 * every message it did not get), dups = deliveries - distinct ones.  The
 * latency of a delivery is its arrival time minus the send time in it
 * (one process, one monotonic clock).  Deliveries/s and latency count the
 * deliveries that arrive in the measured window (after the warm-up).
 *
 * Framing: "-m raw" takes a text frame as the message (nchan, a plain
 * relay); "-m json" takes the "data" string of a JSON envelope and counts
 * other envelopes (welcome, join, leave) as events.  Frames from the
 * server may be fragmented; pings are answered.  The handshake's accept
 * key is not checked (only the 101), so no crypto library is needed.
 *
 *   ws-load -p PORT -u URI -n MEMBERS [-s SENDERS] [-d SECONDS]
 *           [-w WARMUP] [-W WINDOW] [-b BYTES] [-m raw|json] [-P PID]
 *           [-c HANDSHAKES] [-t CONNECT_TIMEOUT]
 *
 * The URI gets "member=m<i>" appended.  The result is one line of
 * key=value pairs on stdout; progress goes to stderr.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


#define WS_IDLE        0
#define WS_CONNECTING  1
#define WS_HANDSHAKE   2
#define WS_OPEN        3
#define WS_CLOSED      4

#define HIST_SIZE      2560
#define SCRATCH_SIZE   (256 * 1024)
#define MAX_SENDERS    64


/* a bitmap of the counters one member got from one sender */
typedef struct {
    uint8_t   *bits;
    size_t     cap;
} seen_t;


/*
 * One member connection.  "in" holds an incomplete frame (or response
 * head) between reads, "msg" a fragmented message being put together,
 * "out" what the socket did not take yet.
 */
typedef struct {
    int        fd;
    int        state;
    int        sender;          /* its index among the senders, or -1 */
    char      *in;
    size_t     in_len;
    size_t     in_cap;
    char      *msg;
    size_t     msg_len;
    size_t     msg_cap;
    int        msg_op;
    char      *out;
    size_t     out_len;
    size_t     out_cap;
    seen_t     seen[MAX_SENDERS];
} conn_t;


typedef struct {
    int        conn;
    uint32_t   next;            /* counter of its next message */
    uint32_t   settled;         /* counters below it came back or are lost */
    uint64_t   progress;        /* when it last sent or got its own back */
} sender_t;


static const char  *uri = "/";
static int          port;
static int          members = 100;
static int          nsenders = 10;
static int          window = 1;
static int          payload_size = 64;
static int          json_mode;
static int          pending_max = 64;
static double       seconds = 10, warmup = 1, connect_timeout = 600;
static pid_t        mem_pid;

static int          ep;
static conn_t      *conns;
static sender_t     senders[MAX_SENDERS];
static char         scratch[SCRATCH_SIZE];

static uint64_t     now_ns;
static uint64_t     win_start, win_end;     /* the measured window */
static int          sending;

static uint64_t     hist[HIST_SIZE];
static uint64_t     win_deliveries;
static uint64_t     deliveries, distinct, dups, events, junk;
static uint64_t     last_rx;
static uint64_t     gave_up;
static double       echo_ns = 1e6;          /* mean echo time (EWMA) */
static int          opened, closed_by_peer, failed;


/* CPU time (user + system) this process used, in ns */
static uint64_t
cpu_ns(void)
{
    struct rusage  ru;

    getrusage(RUSAGE_SELF, &ru);

    return (uint64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000
           + (uint64_t) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}


static uint64_t
clock_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static void
die(const char *what)
{
    perror(what);
    exit(2);
}


static void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL) {
        die("realloc");
    }

    return p;
}


/* log-linear buckets of about 1.5% from 128 us up, exact below */
static int
hist_index(uint64_t us)
{
    int  msb, shift;

    if (us < 128) {
        return (int) us;
    }

    msb = 63 - __builtin_clzll(us);
    shift = msb - 6;

    if (128 + (shift - 1) * 64 + 63 >= HIST_SIZE) {
        return HIST_SIZE - 1;
    }

    return 128 + (shift - 1) * 64 + (int) ((us >> shift) - 64);
}


static double
hist_value(int i)
{
    int  shift;

    if (i < 128) {
        return i + 0.5;
    }

    shift = (i - 128) / 64 + 1;

    return (double) ((uint64_t) ((i - 128) % 64 + 64) << shift)
           + (double) (1ULL << shift) / 2;
}


/* the q-quantile of the window's latencies, in microseconds */
static double
hist_quantile(double q)
{
    int       i;
    uint64_t  want, sum;

    if (win_deliveries == 0) {
        return 0;
    }

    want = (uint64_t) (q * win_deliveries);
    if (want >= win_deliveries) {
        want = win_deliveries - 1;
    }

    sum = 0;
    for (i = 0; i < HIST_SIZE; i++) {
        sum += hist[i];
        if (sum > want) {
            return hist_value(i);
        }
    }

    return hist_value(HIST_SIZE - 1);
}


static void
conn_events(conn_t *c, uint32_t events_mask)
{
    struct epoll_event  ev;

    ev.events = events_mask;
    ev.data.u32 = (uint32_t) (c - conns);

    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == -1) {
        die("epoll_ctl");
    }
}


static void
conn_close(conn_t *c, int by_peer)
{
    struct linger  l;

    if (c->state == WS_CLOSED) {
        return;
    }

    if (c->state == WS_OPEN) {
        opened--;
        if (by_peer) {
            closed_by_peer++;
        }

    } else {
        failed++;
    }

    /* a reset: no TIME_WAIT left behind for the next run's ports */
    l.l_onoff = 1;
    l.l_linger = 0;
    (void) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(c->fd);

    c->fd = -1;
    c->state = WS_CLOSED;
    c->in_len = 0;
    c->out_len = 0;
}


/* queues what the socket does not take at once */
static void
conn_send(conn_t *c, const char *data, size_t len)
{
    ssize_t  n;

    if (c->state == WS_CLOSED) {
        return;
    }

    if (c->out_len == 0) {
        n = write(c->fd, data, len);

        if (n == (ssize_t) len) {
            return;
        }

        if (n == -1) {
            if (errno != EAGAIN) {
                conn_close(c, 1);
                return;
            }
            n = 0;
        }

        data += n;
        len -= n;
        conn_events(c, EPOLLIN | EPOLLOUT);
    }

    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = xrealloc(c->out, c->out_cap);
    }

    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}


static void
conn_flush(conn_t *c)
{
    ssize_t  n;

    n = write(c->fd, c->out, c->out_len);

    if (n == -1) {
        if (errno != EAGAIN) {
            conn_close(c, 1);
        }
        return;
    }

    memmove(c->out, c->out + n, c->out_len - n);
    c->out_len -= n;

    if (c->out_len == 0) {
        conn_events(c, EPOLLIN);
    }
}


/* a masked client frame */
static void
ws_send_frame(conn_t *c, int op, const char *data, size_t len)
{
    char      frame[14 + 65536];
    size_t    h, i;
    uint32_t  mask;

    if (len > 65535) {
        return;
    }

    frame[0] = (char) (0x80 | op);
    h = 2;

    if (len < 126) {
        frame[1] = (char) (0x80 | len);

    } else {
        frame[1] = (char) (0x80 | 126);
        frame[2] = (char) (len >> 8);
        frame[3] = (char) len;
        h = 4;
    }

    mask = (uint32_t) random();
    memcpy(frame + h, &mask, 4);
    h += 4;

    for (i = 0; i < len; i++) {
        frame[h + i] = data[i] ^ frame[h - 4 + (i & 3)];
    }

    conn_send(c, frame, h + len);
}


static void
sender_send(sender_t *s)
{
    int     k, n;
    char    text[65536];

    k = (int) (s - senders);
    n = snprintf(text, sizeof(text), "s%d %u %llu ", k, s->next,
                 (unsigned long long) clock_ns());

    if (n < payload_size) {
        memset(text + n, 'x', payload_size - n);
        n = payload_size;
    }

    ws_send_frame(&conns[s->conn], 1, text, n);

    s->next++;
    s->progress = now_ns;
}


static void
senders_run(void)
{
    int        k;
    sender_t  *s;

    for (k = 0; k < nsenders; k++) {
        s = &senders[k];

        if (conns[s->conn].state != WS_OPEN) {
            continue;
        }

        if (s->settled < s->next
            && now_ns - s->progress > (echo_ns * 4 > 1e9 ? echo_ns * 4 : 1e9))
        {
            gave_up += s->next - s->settled;
            s->settled = s->next;
        }

        while (s->next - s->settled < (uint32_t) window) {
            sender_send(s);
        }
    }
}


/* one chat message "s<k> <counter> <ns> ..." as received by member c */
static void
on_chat(conn_t *c, const char *p, size_t len)
{
    char          buf[64], *end;
    size_t        n;
    seen_t       *sn;
    uint64_t      ts, lat;
    unsigned long k, ctr;

    n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';

    if (buf[0] != 's') {
        junk++;
        return;
    }

    k = strtoul(buf + 1, &end, 10);
    if (*end != ' ' || k >= (unsigned long) nsenders) {
        junk++;
        return;
    }

    ctr = strtoul(end + 1, &end, 10);
    if (*end != ' ') {
        junk++;
        return;
    }

    ts = strtoull(end + 1, &end, 10);
    if (*end != ' ' && *end != '\0') {
        junk++;
        return;
    }

    deliveries++;

    sn = &c->seen[k];
    if (ctr / 8 >= sn->cap) {
        n = sn->cap ? sn->cap : 64;
        while (ctr / 8 >= n) {
            n *= 2;
        }
        sn->bits = xrealloc(sn->bits, n);
        memset(sn->bits + sn->cap, 0, n - sn->cap);
        sn->cap = n;
    }

    if (sn->bits[ctr / 8] & (1 << (ctr % 8))) {
        dups++;
        return;
    }

    sn->bits[ctr / 8] |= 1 << (ctr % 8);
    distinct++;

    if (c->sender == (int) k && ctr >= senders[k].settled) {
        senders[k].settled = ctr + 1;
        senders[k].progress = now_ns;
        echo_ns = echo_ns * 0.9 + (double) (now_ns - ts) * 0.1;
    }

    if (now_ns >= win_start && now_ns < win_end && sending) {
        lat = now_ns > ts ? (now_ns - ts) / 1000 : 0;
        hist[hist_index(lat)]++;
        win_deliveries++;
    }
}


/* a whole text message; in json mode the "data" of a "message" event */
static void
on_message(conn_t *c, const char *p, size_t len)
{
    const char  *d, *e;

    if (!json_mode) {
        on_chat(c, p, len);
        return;
    }

    d = memmem(p, len, "\"data\":\"", 8);

    if (d == NULL || memmem(p, len, "\"type\":\"message\"", 16) == NULL) {
        events++;
        return;
    }

    d += 8;
    e = memchr(d, '"', p + len - d);

    on_chat(c, d, e ? (size_t) (e - d) : (size_t) (p + len - d));
}


/* parses the frames in p; returns the bytes used */
static size_t
ws_frames(conn_t *c, char *p, size_t len)
{
    int       fin, op;
    size_t    used, h, plen, i;
    uint8_t  *u;

    used = 0;

    while (c->state == WS_OPEN) {
        u = (uint8_t *) p + used;

        if (len - used < 2) {
            break;
        }

        fin = u[0] & 0x80;
        op = u[0] & 0x0f;
        plen = u[1] & 0x7f;
        h = 2;

        if (plen == 126) {
            if (len - used < 4) {
                break;
            }
            plen = ((size_t) u[2] << 8) | u[3];
            h = 4;

        } else if (plen == 127) {
            if (len - used < 10) {
                break;
            }
            plen = 0;
            for (i = 0; i < 8; i++) {
                plen = (plen << 8) | u[2 + i];
            }
            h = 10;
        }

        if (u[1] & 0x80) {
            h += 4;
        }

        if (len - used < h + plen) {
            break;
        }

        if (u[1] & 0x80) {
            for (i = 0; i < plen; i++) {
                u[h + i] ^= u[h - 4 + (i & 3)];
            }
        }

        used += h + plen;

        switch (op) {

        case 0x8:
            ws_send_frame(c, 0x8, (char *) u + h, plen < 2 ? plen : 2);
            conn_close(c, 1);
            break;

        case 0x9:
            ws_send_frame(c, 0xa, (char *) u + h, plen);
            break;

        case 0xa:
            break;

        default:
            if (op != 0) {
                c->msg_op = op;
                c->msg_len = 0;
            }

            if (fin && op != 0) {
                on_message(c, (char *) u + h, plen);
                break;
            }

            if (c->msg_len + plen > c->msg_cap) {
                c->msg_cap = (c->msg_len + plen) * 2;
                c->msg = xrealloc(c->msg, c->msg_cap);
            }

            memcpy(c->msg + c->msg_len, u + h, plen);
            c->msg_len += plen;

            if (fin) {
                on_message(c, c->msg, c->msg_len);
                c->msg_len = 0;
            }
        }
    }

    return used;
}


/* the response head, then frames; returns the bytes used */
static size_t
conn_input(conn_t *c, char *p, size_t len)
{
    char    *e;
    size_t   used;

    used = 0;

    if (c->state == WS_HANDSHAKE) {
        e = memmem(p, len, "\r\n\r\n", 4);
        if (e == NULL) {
            if (len > 16384) {
                conn_close(c, 1);
            }
            return 0;
        }

        if (len < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "ws-load: handshake refused: %.*s\n",
                    (int) (memchr(p, '\r', len) ? (char *) memchr(p, '\r', len)
                                                  - p : 0), p);
            conn_close(c, 1);
            return len;
        }

        c->state = WS_OPEN;
        opened++;
        used = e + 4 - p;
    }

    return used + ws_frames(c, p + used, len - used);
}


static void
conn_read(conn_t *c)
{
    char     *p;
    size_t    len, used;
    ssize_t   n;

    n = read(c->fd, scratch, sizeof(scratch));

    if (n <= 0) {
        if (n == -1 && errno == EAGAIN) {
            return;
        }
        conn_close(c, 1);
        return;
    }

    last_rx = now_ns;

    if (c->in_len) {
        if (c->in_len + n > c->in_cap) {
            c->in_cap = (c->in_len + n) * 2;
            c->in = xrealloc(c->in, c->in_cap);
        }
        memcpy(c->in + c->in_len, scratch, n);
        c->in_len += n;
        p = c->in;
        len = c->in_len;

    } else {
        p = scratch;
        len = n;
    }

    used = conn_input(c, p, len);

    if (c->state == WS_CLOSED) {
        return;
    }

    len -= used;

    if (len && p == scratch) {
        if (len > c->in_cap) {
            c->in_cap = len * 2;
            c->in = xrealloc(c->in, c->in_cap);
        }
        memcpy(c->in, scratch + used, len);

    } else if (len) {
        memmove(c->in, c->in + used, len);
    }

    c->in_len = len;
}


static void
conn_start(conn_t *c)
{
    int                 fd, one;
    struct sockaddr_in  sa;
    struct epoll_event  ev;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        die("socket");
    }

    one = 1;
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == -1
        && errno != EINPROGRESS)
    {
        die("connect");
    }

    c->fd = fd;
    c->state = WS_CONNECTING;

    ev.events = EPOLLOUT;
    ev.data.u32 = (uint32_t) (c - conns);

    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
        die("epoll_ctl");
    }
}


static void
conn_connected(conn_t *c)
{
    int        err, i;
    char       req[2048], key[25];
    socklen_t  len;

    static const char  b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789+/";

    err = 0;
    len = sizeof(err);
    (void) getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);

    if (err) {
        errno = err;
        perror("ws-load: connect");
        conn_close(c, 0);
        return;
    }

    /* 16 random bytes in base64: 21 characters, one of 4 more, "==" */
    for (i = 0; i < 21; i++) {
        key[i] = b64[random() % 64];
    }
    key[21] = b64[(random() % 4) * 16];
    key[22] = '=';
    key[23] = '=';
    key[24] = '\0';

    len = snprintf(req, sizeof(req),
                   "GET %s%cmember=m%d HTTP/1.1\r\n"
                   "Host: 127.0.0.1:%d\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   uri, strchr(uri, '?') ? '&' : '?', (int) (c - conns),
                   port, key);

    c->state = WS_HANDSHAKE;
    conn_events(c, EPOLLIN);
    conn_send(c, req, len);
}


static void
poll_once(int timeout_ms)
{
    int                 i, n;
    conn_t             *c;
    struct epoll_event  evs[512];

    n = epoll_wait(ep, evs, 512, timeout_ms);

    if (n == -1) {
        if (errno == EINTR) {
            return;
        }
        die("epoll_wait");
    }

    now_ns = clock_ns();

    for (i = 0; i < n; i++) {
        c = &conns[evs[i].data.u32];

        if (c->state == WS_CLOSED) {
            continue;
        }

        if (c->state == WS_CONNECTING) {
            conn_connected(c);
            continue;
        }

        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            conn_read(c);
        }

        if (c->state != WS_CLOSED && (evs[i].events & EPOLLOUT)
            && c->out_len)
        {
            conn_flush(c);
        }
    }
}


/* kB of "field" (Pss:, Rss:) of pid and its children */
static long
mem_kb(pid_t pid, const char *field)
{
    long            kb, v;
    char            path[300], line[256], stat[512], *p;
    FILE           *f;
    DIR            *d;
    pid_t           ppid;
    struct dirent  *de;

    kb = 0;
    d = opendir("/proc");
    if (d == NULL) {
        return -1;
    }

    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char) de->d_name[0])) {
            continue;
        }

        if (atoi(de->d_name) != pid) {
            snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
            f = fopen(path, "r");
            if (f == NULL) {
                continue;
            }
            p = fgets(stat, sizeof(stat), f);
            fclose(f);

            /* "pid (comm) state ppid ...": comm may hold spaces */
            p = p ? strrchr(stat, ')') : NULL;
            if (p == NULL || sscanf(p + 2, "%*c %d", &ppid) != 1
                || ppid != pid)
            {
                continue;
            }
        }

        snprintf(path, sizeof(path), "/proc/%s/smaps_rollup", de->d_name);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }

        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, field, strlen(field)) == 0
                && sscanf(line + strlen(field), "%ld", &v) == 1)
            {
                kb += v;
            }
        }

        fclose(f);
    }

    closedir(d);
    return kb;
}


static void
usage(void)
{
    fprintf(stderr, "usage: ws-load -p PORT -u URI -n MEMBERS [-s SENDERS]"
            " [-d SECONDS] [-w WARMUP] [-W WINDOW] [-b BYTES]"
            " [-m raw|json] [-P PID] [-c HANDSHAKES] [-t TIMEOUT]\n");
    exit(2);
}


int
main(int argc, char **argv)
{
    int            opt, i, k, started, pending;
    long           pss0, pss1, rss0, rss1;
    double         elapsed;
    uint64_t       t0, quiet_since, expected, sent, cpu0, cpu1;
    struct rlimit  rl;

    while ((opt = getopt(argc, argv, "p:u:n:s:d:w:W:b:m:P:c:t:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'u': uri = optarg; break;
        case 'n': members = atoi(optarg); break;
        case 's': nsenders = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'W': window = atoi(optarg); break;
        case 'b': payload_size = atoi(optarg); break;
        case 'm': json_mode = strcmp(optarg, "json") == 0; break;
        case 'P': mem_pid = atoi(optarg); break;
        case 'c': pending_max = atoi(optarg); break;
        case 't': connect_timeout = atof(optarg); break;
        default: usage();
        }
    }

    if (port <= 0 || members <= 0 || nsenders <= 0 || nsenders > MAX_SENDERS
        || nsenders > members || window <= 0 || payload_size > 60000)
    {
        usage();
    }

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0
        && rl.rlim_cur < (rlim_t) members + 64)
    {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t) members + 64) {
            fprintf(stderr, "ws-load: %d members need more open files "
                    "(ulimit -n %lu)\n", members,
                    (unsigned long) rl.rlim_cur);
            return 2;
        }
    }

    srandom((unsigned) clock_ns());

    conns = calloc(members, sizeof(conn_t));
    ep = epoll_create1(0);
    if (conns == NULL || ep == -1) {
        die("setup");
    }

    for (i = 0; i < members; i++) {
        conns[i].fd = -1;
        conns[i].sender = -1;
    }

    /* the senders spread over the members (so over the accepting workers) */
    for (i = 0; i < nsenders; i++) {
        senders[i].conn = (int) ((long) i * members / nsenders);
        conns[senders[i].conn].sender = i;
    }

    pss0 = rss0 = pss1 = rss1 = -1;
    if (mem_pid) {
        pss0 = mem_kb(mem_pid, "Pss:");
        rss0 = mem_kb(mem_pid, "Rss:");
    }

    /* connect, a few handshakes at a time */
    now_ns = t0 = clock_ns();
    started = 0;

    for ( ;; ) {
        pending = started - opened - failed - closed_by_peer;

        while (started < members && pending < pending_max) {
            conn_start(&conns[started++]);
            pending++;
        }

        if (started == members && pending == 0) {
            break;
        }

        if (now_ns - t0 > connect_timeout * 1e9) {
            fprintf(stderr, "ws-load: connecting timed out\n");
            break;
        }

        poll_once(10);
    }

    fprintf(stderr, "ws-load: %d of %d members connected in %.1f s\n",
            opened, members, (now_ns - t0) / 1e9);

    /* the room is quiet once nothing arrives for a second */
    quiet_since = now_ns;
    while (now_ns - quiet_since < 1000000000ULL
           && now_ns - t0 < connect_timeout * 1e9)
    {
        poll_once(100);
        if (last_rx > quiet_since) {
            quiet_since = last_rx;
        }
    }

    if (mem_pid) {
        pss1 = mem_kb(mem_pid, "Pss:");
        rss1 = mem_kb(mem_pid, "Rss:");
    }

    fprintf(stderr, "ws-load: quiet after %.1f s, %llu events; sending\n",
            (now_ns - t0) / 1e9, (unsigned long long) events);

    i = opened;

    /* send closed-loop for warmup + seconds */
    sending = 1;
    win_start = now_ns + (uint64_t) (warmup * 1e9);
    win_end = win_start + (uint64_t) (seconds * 1e9);

    cpu0 = 0;
    while (now_ns < win_end) {
        senders_run();
        poll_once(1);
        if (cpu0 == 0 && now_ns >= win_start) {
            cpu0 = cpu_ns();
        }
    }

    cpu1 = cpu_ns();

    sending = 0;

    sent = 0;
    for (k = 0; k < nsenders; k++) {
        sent += senders[k].next;
    }

    expected = sent * (uint64_t) i;

    /* the last messages in flight: until all came or 2 s of silence */
    quiet_since = now_ns;
    t0 = now_ns;
    while (distinct < expected && now_ns - quiet_since < 2000000000ULL
           && now_ns - t0 < 30000000000ULL)
    {
        poll_once(10);
        if (last_rx > quiet_since) {
            quiet_since = last_rx;
        }
    }

    elapsed = seconds;

    printf("members=%d connected=%d senders=%d sent=%llu expected=%llu"
           " deliveries=%llu distinct=%llu rate=%.0f p50_ms=%.3f"
           " p99_ms=%.3f lost=%llu dups=%llu closed=%d events=%llu"
           " junk=%llu gave_up=%llu load_cpu=%.0f%% pss0_kb=%ld pss1_kb=%ld"
           " rss0_kb=%ld rss1_kb=%ld\n",
           members, i, nsenders, (unsigned long long) sent,
           (unsigned long long) expected, (unsigned long long) deliveries,
           (unsigned long long) distinct, win_deliveries / elapsed,
           hist_quantile(0.5) / 1000, hist_quantile(0.99) / 1000,
           (unsigned long long) (expected > distinct ? expected - distinct
                                                     : 0),
           (unsigned long long) dups, closed_by_peer,
           (unsigned long long) events, (unsigned long long) junk,
           (unsigned long long) gave_up,
           cpu0 ? (cpu1 - cpu0) / (seconds * 1e7) : 0.0,
           pss0, pss1, rss0, rss1);

    for (i = 0; i < members; i++) {
        conn_close(&conns[i], 0);
    }

    return 0;
}
