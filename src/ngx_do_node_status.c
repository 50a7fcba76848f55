
/*
 * The channel's counters, per peer, in a small shared zone of their own
 * (do_node), so that do_status shows the whole node whatever worker
 * answers: the totals by atomic adds from every worker; "up" and the
 * bytes queued per worker slot, each written by its worker only.  The
 * counters go on over reloads (the zone is kept); a peer is shown by its
 * index in the registry, under the name the registry gives it now.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do_node_conn.h"


#define NGX_DO_NODE_SLOTS         64          /* worker slots */
#define NGX_DO_NODE_BUCKETS       16


/*
 * A peer's counters.  bucket[i] counts the requests answered within
 * ngx_do_node_le[i] but not the bound before (the last: slower than all).
 */
typedef struct {
    ngx_atomic_t               forwards;
    ngx_atomic_t               messages;
    ngx_atomic_t               failures;
    ngx_atomic_t               received;
    ngx_atomic_t               replies;
    ngx_atomic_t               usec;
    ngx_atomic_t               bucket[NGX_DO_NODE_BUCKETS + 1];
    ngx_atomic_t               up[NGX_DO_NODE_SLOTS];
    ngx_atomic_t               queued[NGX_DO_NODE_SLOTS];
} ngx_do_node_stats_t;


typedef struct {
    ngx_do_node_stats_t        peer[NGX_DO_CLUSTER_PEERS];
} ngx_do_node_sh_t;


static ngx_int_t ngx_do_node_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static u_char *ngx_do_node_quantile(u_char *p, u_char *last,
    ngx_do_node_stats_t *s, uint64_t count, ngx_uint_t percent);
static size_t ngx_do_node_name(u_char *buf, ngx_str_t *s);


static ngx_do_node_sh_t       *ngx_do_node_sh;
/* the zone's tag */
static ngx_uint_t              ngx_do_node_tag;



/* the buckets' upper bounds, in microseconds and as Prometheus writes them */
static uint64_t  ngx_do_node_le[NGX_DO_NODE_BUCKETS] = {
    50, 100, 150, 200, 300, 500, 1000, 2500, 5000, 10000, 25000, 50000,
    100000, 250000, 1000000, 5000000
};

static char  *ngx_do_node_le_text[NGX_DO_NODE_BUCKETS + 1] = {
    "0.00005", "0.0001", "0.00015", "0.0002", "0.0003", "0.0005", "0.001",
    "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "1", "5",
    "+Inf"
};


/* do_cluster listen=: the zone, by ngx_do_node_listen() */
ngx_int_t
ngx_do_node_status_zone(ngx_conf_t *cf)
{
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    ngx_str_set(&name, "do_node");

    zone = ngx_shared_memory_add(cf, &name,
                                 ngx_align(sizeof(ngx_do_node_sh_t),
                                           ngx_pagesize)
                                 + 8 * ngx_pagesize,
                                 &ngx_do_node_tag);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_do_node_init_zone;

    return NGX_OK;
}


/* the counters go on over reloads: an old zone is kept as it is */
static ngx_int_t
ngx_do_node_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        shm_zone->data = data;

    } else {
        shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

        shm_zone->data = ngx_slab_calloc(shpool, sizeof(ngx_do_node_sh_t));
        if (shm_zone->data == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_do_node_sh = shm_zone->data;

    return NGX_OK;
}


/* a new worker in its slot: no connection up yet */
void
ngx_do_node_status_init_worker(void)
{
    ngx_uint_t  i;

    if (ngx_do_node_sh == NULL || ngx_worker >= NGX_DO_NODE_SLOTS) {
        return;
    }

    for (i = 0; i < NGX_DO_CLUSTER_PEERS; i++) {
        ngx_do_node_sh->peer[i].up[ngx_worker] = 0;
        ngx_do_node_sh->peer[i].queued[ngx_worker] = 0;
    }
}


/* NGX_DO_NODE_FORWARDS, ... of the peer */
void
ngx_do_node_count(ngx_uint_t peer, ngx_uint_t counter)
{
    ngx_do_node_stats_t  *s;

    if (ngx_do_node_sh == NULL || peer >= NGX_DO_CLUSTER_PEERS) {
        return;
    }

    s = &ngx_do_node_sh->peer[peer];

    switch (counter) {

    case NGX_DO_NODE_FORWARDS:
        (void) ngx_atomic_fetch_add(&s->forwards, 1);
        break;

    case NGX_DO_NODE_MESSAGES:
        (void) ngx_atomic_fetch_add(&s->messages, 1);
        break;

    case NGX_DO_NODE_FAILURES:
        (void) ngx_atomic_fetch_add(&s->failures, 1);
        break;

    default: /* NGX_DO_NODE_RECEIVED */
        (void) ngx_atomic_fetch_add(&s->received, 1);
    }
}


/* a request to the peer was answered usec after it was queued */
void
ngx_do_node_observe(ngx_uint_t peer, uint64_t usec)
{
    ngx_uint_t            i;
    ngx_do_node_stats_t  *s;

    if (ngx_do_node_sh == NULL || peer >= NGX_DO_CLUSTER_PEERS) {
        return;
    }

    s = &ngx_do_node_sh->peer[peer];

    for (i = 0; i < NGX_DO_NODE_BUCKETS; i++) {
        if (usec <= ngx_do_node_le[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&s->replies, 1);
    (void) ngx_atomic_fetch_add(&s->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&s->usec, (ngx_atomic_int_t) usec);
}


/* this worker's gauges of an outgoing connection: up, bytes queued */
void
ngx_do_node_gauges(ngx_do_node_conn_t *nc)
{
    ngx_do_node_stats_t  *s;

    if (nc->incoming || ngx_do_node_sh == NULL
        || nc->peer >= NGX_DO_CLUSTER_PEERS || ngx_worker >= NGX_DO_NODE_SLOTS)
    {
        return;
    }

    s = &ngx_do_node_sh->peer[nc->peer];

    s->up[ngx_worker] = (nc->state == NGX_DO_NODE_READY);
    s->queued[ngx_worker] = nc->queued;
}


size_t
ngx_do_node_status_size(void)
{
    /* a peer's lines with two names of 63 bytes: under 4096 bytes */
    return 1024 + NGX_DO_CLUSTER_PEERS * 4096;
}


/*
 * A peer's channel in its do_status object: ,"connected", "connections",
 * "queue_bytes", "forwards", "messages", "replies", "failures",
 * "received", "forward_duration_seconds": {"p50", "p99", "count", "sum",
 * "buckets"}
 */
u_char *
ngx_do_node_status_json(u_char *p, u_char *last, ngx_uint_t peer)
{
    uint64_t              count, queued;
    ngx_uint_t            w, up, b;
    ngx_do_node_stats_t  *s;

    if (ngx_do_node_sh == NULL || peer >= NGX_DO_CLUSTER_PEERS) {
        return p;
    }

    s = &ngx_do_node_sh->peer[peer];
    up = 0;
    queued = 0;

    for (w = 0; w < NGX_DO_NODE_SLOTS; w++) {
        up += s->up[w];
        queued += s->queued[w];
    }

    p = ngx_slprintf(p, last, ",\"connected\":%s,"
                     "\"connections\":%ui,\"queue_bytes\":%uL,"
                     "\"forwards\":%uA,\"messages\":%uA,\"replies\":%uA,"
                     "\"failures\":%uA,\"received\":%uA,",
                     up ? "true" : "false", up, queued,
                     s->forwards, s->messages, s->replies, s->failures,
                     s->received);

    count = 0;

    for (b = 0; b <= NGX_DO_NODE_BUCKETS; b++) {
        count += s->bucket[b];
    }

    p = ngx_slprintf(p, last, "\"forward_duration_seconds\":{\"p50\":");
    p = ngx_do_node_quantile(p, last, s, count, 50);
    p = ngx_slprintf(p, last, ",\"p99\":");
    p = ngx_do_node_quantile(p, last, s, count, 99);
    p = ngx_slprintf(p, last, ",\"count\":%uL,\"sum\":%uA.%06uA,"
                     "\"buckets\":{", count, s->usec / 1000000,
                     s->usec % 1000000);

    count = 0;

    for (b = 0; b <= NGX_DO_NODE_BUCKETS; b++) {
        count += s->bucket[b];
        p = ngx_slprintf(p, last, "%s\"%s\":%uL", b ? "," : "",
                         ngx_do_node_le_text[b], count);
    }

    return ngx_slprintf(p, last, "}}");
}


/* the upper bound of the bucket that holds the percentile, or null */
static u_char *
ngx_do_node_quantile(u_char *p, u_char *last, ngx_do_node_stats_t *s,
    uint64_t count, ngx_uint_t percent)
{
    uint64_t    rank, seen;
    ngx_uint_t  b;

    if (count == 0) {
        return ngx_slprintf(p, last, "null");
    }

    rank = (count * percent + 99) / 100;
    seen = 0;

    for (b = 0; b < NGX_DO_NODE_BUCKETS; b++) {
        seen += s->bucket[b];

        if (seen >= rank) {
            return ngx_slprintf(p, last, "%s", ngx_do_node_le_text[b]);
        }
    }

    /* slower than the last bound: no finite answer */
    return ngx_slprintf(p, last, "\"+Inf\"");
}


u_char *
ngx_do_node_status_prometheus(u_char *p, u_char *last)
{
    size_t                len;
    uint64_t              count;
    ngx_str_t             name, addr;
    ngx_uint_t            i, w, up, b, pass;
    ngx_do_node_stats_t  *s;
    u_char                esc[NGX_SOCKADDR_STRLEN];

    static const char  *family[] = {
        "# HELP ngx_do_cluster_forwards_total calls and requests this node "
        "sent to the peer\n# TYPE ngx_do_cluster_forwards_total counter\n",
        "# HELP ngx_do_cluster_forward_failures_total requests to the peer "
        "that got no answer from it (unreachable, queue full, connection "
        "lost)\n# TYPE ngx_do_cluster_forward_failures_total counter\n",
        "# HELP ngx_do_cluster_received_total requests and messages the peer "
        "sent to this node\n# TYPE ngx_do_cluster_received_total counter\n",
        "# HELP ngx_do_cluster_peer_up 1 while a worker of this node has an "
        "authenticated connection to the peer\n"
        "# TYPE ngx_do_cluster_peer_up gauge\n",
        "# HELP ngx_do_cluster_forward_duration_seconds time from a request's "
        "send to its answer from the peer\n"
        "# TYPE ngx_do_cluster_forward_duration_seconds histogram\n"
    };

    for (pass = 0; pass < 5 && ngx_do_node_sh; pass++) {
        p = ngx_slprintf(p, last, "%s", family[pass]);

        for (i = 0; i < NGX_DO_CLUSTER_PEERS; i++) {
            if (i == ngx_do_cluster_self()
                || ngx_do_cluster_peer(i, &name, &addr) != NGX_OK)
            {
                continue;
            }

            s = &ngx_do_node_sh->peer[i];
            len = ngx_do_node_name(esc, &name);

            switch (pass) {

            case 0:
                p = ngx_slprintf(p, last, "ngx_do_cluster_forwards_total"
                                 "{peer=\"%*s\"} %uA\n", len, esc,
                                 s->forwards + s->messages);
                break;

            case 1:
                p = ngx_slprintf(p, last,
                                 "ngx_do_cluster_forward_failures_total"
                                 "{peer=\"%*s\"} %uA\n", len, esc,
                                 s->failures);
                break;

            case 2:
                p = ngx_slprintf(p, last, "ngx_do_cluster_received_total"
                                 "{peer=\"%*s\"} %uA\n", len, esc,
                                 s->received);
                break;

            case 3:
                up = 0;

                for (w = 0; w < NGX_DO_NODE_SLOTS; w++) {
                    up += s->up[w];
                }

                p = ngx_slprintf(p, last, "ngx_do_cluster_peer_up"
                                 "{peer=\"%*s\"} %d\n", len, esc, up ? 1 : 0);
                break;

            default:
                count = 0;

                for (b = 0; b <= NGX_DO_NODE_BUCKETS; b++) {
                    count += s->bucket[b];
                    p = ngx_slprintf(p, last,
                                     "ngx_do_cluster_forward_duration_seconds"
                                     "_bucket{peer=\"%*s\",le=\"%s\"} %uL\n",
                                     len, esc, ngx_do_node_le_text[b], count);
                }

                p = ngx_slprintf(p, last,
                                 "ngx_do_cluster_forward_duration_seconds_sum"
                                 "{peer=\"%*s\"} %uA.%06uA\n"
                                 "ngx_do_cluster_forward_duration_seconds"
                                 "_count{peer=\"%*s\"} %uL\n",
                                 len, esc, s->usec / 1000000,
                                 s->usec % 1000000, len, esc, count);
            }
        }
    }

    return p;
}


/*
 * A name or an address from the registry as JSON and Prometheus take it:
 * at most 63 bytes, anything but printable ASCII, quotes and backslashes
 * shown as '?'
 */
static size_t
ngx_do_node_name(u_char *buf, ngx_str_t *s)
{
    size_t  i, len;

    len = ngx_min(s->len, NGX_DO_NODE_NAME);

    for (i = 0; i < len; i++) {
        buf[i] = (s->data[i] < 0x20 || s->data[i] > 0x7e
                  || s->data[i] == '"' || s->data[i] == '\\')
                 ? '?' : s->data[i];
    }

    return len;
}
