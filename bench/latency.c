
/*
 * latency: two HTTP/1.1 load modes for bench/limits.sh, on 127.0.0.1.
 *
 * "-n N" measures the added cost of a call forwarded to another worker.
 * It opens keep-alive connections to URI (a location that adds X-Owner:
 * $do_owner and X-Worker: $do_worker) until it holds one accepted by the
 * object's owner worker and one accepted by another worker (a connection
 * stays with the worker that accepted it), then sends N requests on each,
 * one at a time and interleaved (owner, other, other, owner, ...), after
 * N / 10 of warm-up.  It prints p50 and p99 of each kind and their
 * difference: what forwarding the call to the owner adds.  Blocking
 * sockets; every response must be a 200 from the same owner.  With
 * "-P PORT2" (cluster mode: PORT2 is another node) the second kind is a
 * connection to that node instead, which forwards the call to the owner
 * node: the difference is what a call forwarded between nodes adds.
 *
 * "-k KEYS" sends URI followed by 0, 1, 2, ... (so every key is new) over
 * C keep-alive connections, one request in flight on each, until KEYS
 * requests were answered or SECONDS passed; one thread, epoll.  It prints
 * the requests answered, their statuses (2xx, 429/503, other), the
 * connection errors, the seconds from the first request to the last
 * response, requests per second and latency p50/p99.
 *
 *   latency -p PORT [-P PORT2] -u URI -n N
 *   latency -p PORT -u URI -k KEYS [-c CONNS] [-d SECONDS]
 *
 * The result is one line of key=value pairs on stdout; failures go to
 * stderr with exit status 1.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


#define BUF_SIZE    16384
#define MAX_TRIES   400


typedef struct {
    int        fd;
    int        busy;            /* a request in flight */
    uint64_t   sent_at;         /* ns */
    size_t     out_off;
    size_t     out_len;
    size_t     in_len;
    char       out[512];
    char       in[BUF_SIZE];
} conn_t;


static int          port;
static int          port2;              /* -P: another node */
static const char  *uri = "/";


static uint64_t
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static void
die(const char *what)
{
    fprintf(stderr, "latency: %s: %s\n", what, errno ? strerror(errno) : "");
    exit(1);
}


static int
open_conn_to(int to, int nonblocking)
{
    int                 fd, one;
    struct sockaddr_in  sin;

    fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd == -1) {
        die("socket");
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(to);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) == -1
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    return fd;
}


static int
open_conn(int nonblocking)
{
    return open_conn_to(port, nonblocking);
}


/* the value of header "name" in a response head, copied into out */
static int
header(const char *head, size_t len, const char *name, char *out, size_t n)
{
    size_t       nl, i;
    const char  *p, *end, *eol;

    nl = strlen(name);
    end = head + len;

    for (p = head; p < end; p = eol + 2) {
        eol = memmem(p, end - p, "\r\n", 2);
        if (eol == NULL) {
            break;
        }

        if ((size_t) (eol - p) > nl && strncasecmp(p, name, nl) == 0
            && p[nl] == ':')
        {
            for (p += nl + 1; p < eol && *p == ' '; p++) { /* void */ }

            for (i = 0; p < eol && i + 1 < n; i++) {
                out[i] = *p++;
            }
            out[i] = '\0';
            return 0;
        }
    }

    return -1;
}


/*
 * Whether buf holds a whole response (head and Content-Length body): its
 * status and length in bytes; 0 when more is needed, -1 when unreadable.
 */
static int
response(const char *buf, size_t len, int *status, size_t *total)
{
    char         cl[32];
    const char  *eoh;

    eoh = memmem(buf, len, "\r\n\r\n", 4);
    if (eoh == NULL) {
        return len >= BUF_SIZE ? -1 : 0;
    }

    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) {
        return -1;
    }

    *status = atoi(buf + 9);
    *total = eoh + 4 - buf;

    if (header(buf, eoh + 2 - buf, "Content-Length", cl, sizeof(cl)) == 0) {
        *total += strtoul(cl, NULL, 10);

    } else if (header(buf, eoh + 2 - buf, "Transfer-Encoding", cl,
                      sizeof(cl)) == 0)
    {
        return -1;
    }

    return len >= *total;
}


/* one request on a blocking connection: its response head in buf */
static int
exchange(int fd, char *buf, size_t *head_len, int *status)
{
    char     req[512];
    size_t   len, total;
    ssize_t  n;
    int      rc;

    len = snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", uri);
    if (write(fd, req, len) != (ssize_t) len) {
        return -1;
    }

    len = 0;
    for ( ;; ) {
        n = read(fd, buf + len, BUF_SIZE - len);
        if (n <= 0) {
            return -1;
        }
        len += n;
        rc = response(buf, len, status, &total);
        if (rc == 1) {
            *head_len = total;
            return len == total ? 0 : -1;
        }
        if (rc == -1) {
            return -1;
        }
    }
}


static int
cmp_u64(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return x < y ? -1 : x > y;
}


/* p-th percentile (0..100) of n sorted samples, in us */
static double
pct(uint64_t *v, size_t n, int p)
{
    size_t  i;

    i = n * p / 100;
    if (i >= n) {
        i = n - 1;
    }
    return v[i] / 1000.0;
}


/* a connection of each kind: fds[0] on the owner, fds[1] on another */
static void
forward_conns(int fds[2], char owners[2][32], char workers[2][32])
{
    int     fd, status, side, tries;
    char    buf[BUF_SIZE], owner[32], worker[32];
    size_t  len;

    fds[0] = fds[1] = -1;

    for (tries = 0;
         tries < MAX_TRIES && (fds[0] == -1 || (!port2 && fds[1] == -1));
         tries++)
    {
        fd = open_conn(0);
        if (fd == -1) {
            die("connect");
        }

        if (exchange(fd, buf, &len, &status) != 0 || status != 200
            || header(buf, len, "X-Owner", owner, sizeof(owner)) != 0
            || header(buf, len, "X-Worker", worker, sizeof(worker)) != 0)
        {
            errno = 0;
            die("the first response has no 200 with X-Owner and X-Worker");
        }

        side = strcmp(owner, worker) != 0;

        if (port2 && side == 1) {
            /* on this node only the owner worker's connection is kept */
            close(fd);
            continue;
        }

        if (fds[side] == -1) {
            fds[side] = fd;
            strcpy(owners[side], owner);
            strcpy(workers[side], worker);
        } else {
            close(fd);
        }
    }

    if (port2 && fds[0] != -1) {
        fd = open_conn_to(port2, 0);
        if (fd == -1) {
            die("connect to the other node");
        }

        if (exchange(fd, buf, &len, &status) != 0 || status != 200) {
            errno = 0;
            die("the other node's first response is not a 200");
        }

        fds[1] = fd;
        strcpy(owners[1], owners[0]);
        strcpy(workers[1], "node");
    }

    if (fds[0] == -1 || fds[1] == -1) {
        errno = 0;
        die("no connection accepted by the owner and one by another worker "
            "in 400 tries");
    }
}


static int
forward_cost(size_t n)
{
    int        fds[2], side, status, k;
    char       buf[BUF_SIZE], owners[2][32], workers[2][32], owner[32];
    size_t     i, len, warm;
    uint64_t  *lat[2], t0;

    forward_conns(fds, owners, workers);

    lat[0] = malloc(n * sizeof(uint64_t));
    lat[1] = malloc(n * sizeof(uint64_t));
    if (lat[0] == NULL || lat[1] == NULL) {
        die("malloc");
    }

    warm = n / 10;

    for (i = 0; i < warm + n; i++) {
        for (k = 0; k < 2; k++) {
            side = (int) (i & 1) ^ k;

            t0 = now_ns();
            if (exchange(fds[side], buf, &len, &status) != 0) {
                die("a request failed");
            }
            if (status != 200
                || (!(port2 && side == 1)
                    && (header(buf, len, "X-Owner", owner, sizeof(owner)) != 0
                        || strcmp(owner, owners[side]) != 0)))
            {
                errno = 0;
                die("a response is not a 200 from the same owner");
            }

            if (i >= warm) {
                lat[side][i - warm] = now_ns() - t0;
            }
        }
    }

    qsort(lat[0], n, sizeof(uint64_t), cmp_u64);
    qsort(lat[1], n, sizeof(uint64_t), cmp_u64);

    printf("requests=%zu owner=%s other_worker=%s "
           "owner_p50_us=%.1f owner_p99_us=%.1f "
           "other_p50_us=%.1f other_p99_us=%.1f "
           "forward_p50_us=%.1f forward_p99_us=%.1f\n",
           n, owners[0], workers[1],
           pct(lat[0], n, 50), pct(lat[0], n, 99),
           pct(lat[1], n, 50), pct(lat[1], n, 99),
           pct(lat[1], n, 50) - pct(lat[0], n, 50),
           pct(lat[1], n, 99) - pct(lat[0], n, 99));

    return 0;
}


typedef struct {
    uint64_t   keys;
    uint64_t   next;            /* the next key to send */
    uint64_t   answered;
    uint64_t   ok;
    uint64_t   rejected;
    uint64_t   other;
    uint64_t   errors;
    uint64_t   deadline;
    uint64_t   first;
    uint64_t   last;
    uint64_t  *lat;
    size_t     lat_cap;
    int        ep;
} flood_t;


static int
flood_send(flood_t *f, conn_t *c)
{
    ssize_t             n;
    struct epoll_event  ev;

    if (!c->busy) {
        if (f->next >= f->keys || now_ns() >= f->deadline) {
            return 0;
        }
        c->out_len = snprintf(c->out, sizeof(c->out),
                              "GET %s%lu HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                              uri, (unsigned long) f->next++);
        c->out_off = 0;
        c->in_len = 0;
        c->busy = 1;
        c->sent_at = now_ns();
        if (f->first == 0) {
            f->first = c->sent_at;
        }
    }

    while (c->out_off < c->out_len) {
        n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n == -1) {
            if (errno == EAGAIN || errno == ENOTCONN) {
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.ptr = c;
                epoll_ctl(f->ep, EPOLL_CTL_MOD, c->fd, &ev);
                return 0;
            }
            return -1;
        }
        c->out_off += n;
    }

    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(f->ep, EPOLL_CTL_MOD, c->fd, &ev);

    return 0;
}


static int
flood_read(flood_t *f, conn_t *c)
{
    int       rc, status;
    size_t    total;
    ssize_t   n;
    uint64_t  t;

    for ( ;; ) {
        n = read(c->fd, c->in + c->in_len, BUF_SIZE - c->in_len);
        if (n == -1 && errno == EAGAIN) {
            return 0;
        }
        if (n <= 0 || !c->busy) {
            return -1;
        }
        c->in_len += n;

        rc = response(c->in, c->in_len, &status, &total);
        if (rc == -1 || (rc == 1 && total != c->in_len)) {
            return -1;
        }
        if (rc == 0) {
            continue;
        }

        t = now_ns();
        if (f->answered == f->lat_cap) {
            f->lat_cap = f->lat_cap ? f->lat_cap * 2 : 1 << 16;
            f->lat = realloc(f->lat, f->lat_cap * sizeof(uint64_t));
            if (f->lat == NULL) {
                die("realloc");
            }
        }
        f->lat[f->answered++] = t - c->sent_at;
        f->last = t;

        if (status / 100 == 2) {
            f->ok++;
        } else if (status == 429 || status == 503) {
            f->rejected++;
        } else {
            f->other++;
        }

        c->busy = 0;
        return flood_send(f, c);
    }
}


static void
flood_open(flood_t *f, conn_t *c)
{
    struct epoll_event  ev;

    c->fd = open_conn(1);
    if (c->fd == -1) {
        die("connect");
    }
    c->busy = 0;
    ev.events = EPOLLOUT;
    ev.data.ptr = c;
    if (epoll_ctl(f->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
        die("epoll_ctl");
    }
}


static int
flood(uint64_t keys, int nconns, double seconds)
{
    int                 i, n, active, reconnects;
    conn_t             *conns, *c;
    flood_t             f;
    uint64_t            grace;
    struct epoll_event  evs[256];

    memset(&f, 0, sizeof(flood_t));
    reconnects = 0;
    f.keys = keys;
    f.deadline = now_ns() + (uint64_t) (seconds * 1e9);
    grace = f.deadline + 30 * (uint64_t) 1000000000;

    f.ep = epoll_create1(0);
    conns = calloc(nconns, sizeof(conn_t));
    if (f.ep == -1 || conns == NULL) {
        die("setup");
    }

    for (i = 0; i < nconns; i++) {
        flood_open(&f, &conns[i]);
    }

    for ( ;; ) {
        active = 0;
        for (i = 0; i < nconns; i++) {
            active += conns[i].busy;
        }
        if (active == 0 && (f.next >= keys || now_ns() >= f.deadline)) {
            break;
        }
        if (now_ns() >= grace) {
            f.errors += active;
            break;
        }

        n = epoll_wait(f.ep, evs, 256, 100);
        if (n == -1 && errno != EINTR) {
            die("epoll_wait");
        }

        for (i = 0; i < n; i++) {
            c = evs[i].data.ptr;

            if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                 ? flood_read(&f, c) == 0
                 : flood_send(&f, c) == 0)
            {
                continue;
            }

            /* a connection error: the request in flight counts as one */
            f.errors += c->busy;
            close(c->fd);
            if (++reconnects > 1000) {
                errno = 0;
                die("more than 1000 connection errors");
            }
            flood_open(&f, c);
        }
    }

    qsort(f.lat, f.answered, sizeof(uint64_t), cmp_u64);

    printf("sent=%lu answered=%lu ok=%lu rejected=%lu other=%lu errors=%lu "
           "seconds=%.3f rps=%.0f p50_us=%.1f p99_us=%.1f\n",
           (unsigned long) f.next, (unsigned long) f.answered,
           (unsigned long) f.ok, (unsigned long) f.rejected,
           (unsigned long) f.other, (unsigned long) f.errors,
           (f.last - f.first) / 1e9,
           f.answered / ((f.last - f.first + 1) / 1e9),
           f.answered ? pct(f.lat, f.answered, 50) : 0,
           f.answered ? pct(f.lat, f.answered, 99) : 0);

    return 0;
}


int
main(int argc, char **argv)
{
    int       opt, conns;
    double    seconds;
    uint64_t  n, keys;

    n = keys = 0;
    conns = 64;
    seconds = 3600;

    while ((opt = getopt(argc, argv, "p:P:u:n:k:c:d:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'P': port2 = atoi(optarg); break;
        case 'u': uri = optarg; break;
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'k': keys = strtoull(optarg, NULL, 10); break;
        case 'c': conns = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        default: goto usage;
        }
    }

    if (port <= 0 || (n == 0) == (keys == 0) || conns <= 0) {
        goto usage;
    }

    return n ? forward_cost(n) : flood(keys, conns, seconds);

usage:

    fprintf(stderr, "usage: latency -p PORT [-P PORT2] -u URI -n N\n"
                    "       latency -p PORT -u URI -k KEYS [-c CONNS] "
                    "[-d SECONDS]\n");
    return 1;
}
