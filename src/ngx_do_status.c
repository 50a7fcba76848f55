
/*
 * Runtime metrics in a small shared memory zone.  Per worker: one record
 * per worker slot, which only its worker writes (a single writer), read
 * by do_status without a lock.  Per namespace: one record per configured
 * namespace, which every worker updates with atomic adds (the gates count
 * in the worker that accepted the request, the router there too, the
 * objects in their owner).  All of it accumulates over reloads and
 * respawns, as Prometheus expects: a reload finds its namespaces' records
 * again by name.  The zone holds records for twice the namespaces, rounded
 * up to 16, so a reload that adds a few keeps the zone; one that outgrows
 * it gets a new zone, and every counter starts again from zero.  "objects"
 * is the number of objects the slot's current worker holds in memory.
 * The zone also holds the error log's throttle (ngx_do_log.c), so that
 * all workers together log one line a second of each kind.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"
#include "ngx_do_cluster.h"


#define NGX_DO_STATUS_SLOTS       256
#define NGX_DO_STATUS_NAME        64
#define NGX_DO_STATUS_BUCKETS     16


/*
 * A namespace's counters.  A record is found again by the length, the
 * CRC32 and the first NGX_DO_STATUS_NAME bytes of the namespace's name
 * (len 0: never used); round is the configuration that claimed it last.
 * bucket[i] counts the calls answered within ngx_do_status_le[i] but not
 * within the bound before (the last one: slower than 10 s); do_status
 * adds them up into Prometheus's cumulative buckets.
 */
typedef struct {
    ngx_atomic_t               counter[NGX_DO_STAT_N];
    ngx_atomic_t               bucket[NGX_DO_STATUS_BUCKETS + 1];
    ngx_atomic_t               usec;          /* the durations' sum */
    size_t                     len;
    uint32_t                   crc;
    ngx_uint_t                 round;
    u_char                     name[NGX_DO_STATUS_NAME];
} ngx_do_status_ns_t;


typedef struct {
    ngx_uint_t                 workers;
    ngx_uint_t                 round;
    ngx_uint_t                 nrecords;
    ngx_do_status_ns_t        *records;
    ngx_do_log_slot_t          log[NGX_DO_LOG_KINDS];
    ngx_do_stats_t             slot[NGX_DO_STATUS_SLOTS];
} ngx_do_status_sh_t;


/* a metric of the table below: its Prometheus name and its JSON key */
typedef struct {
    const char                *name;
    const char                *key;
    const char                *help;
} ngx_do_status_metric_t;


static ngx_uint_t ngx_do_status_records(ngx_uint_t namespaces);
static void ngx_do_status_claim(ngx_do_status_sh_t *sh,
    ngx_array_t *namespaces);
static ngx_do_status_ns_t *ngx_do_status_find(ngx_do_status_sh_t *sh,
    ngx_str_t *name, uint32_t crc, ngx_uint_t round);
static u_char *ngx_do_status_prometheus(u_char *p, u_char *last,
    ngx_uint_t n);
static u_char *ngx_do_status_prometheus_ns(u_char *p, u_char *last,
    ngx_array_t *namespaces);
static u_char *ngx_do_status_histogram(u_char *p, u_char *last,
    ngx_array_t *namespaces);
static u_char *ngx_do_status_prometheus_tables(u_char *p, u_char *last,
    ngx_array_t *namespaces);
static u_char *ngx_do_status_json(u_char *p, u_char *last, ngx_uint_t n);
static u_char *ngx_do_status_json_ns(u_char *p, u_char *last,
    ngx_array_t *namespaces);
static u_char *ngx_do_status_family(u_char *p, u_char *last,
    const char *name, const char *type, const char *help);
static u_char *ngx_do_status_escape(u_char *p, u_char *last, ngx_str_t *s);
static u_char *ngx_do_status_seconds(u_char *p, u_char *last,
    uint64_t usec);


static ngx_do_status_sh_t     *ngx_do_status_sh;
static ngx_do_stats_t          ngx_do_status_dummy;

ngx_do_stats_t                *ngx_do_stats = &ngx_do_status_dummy;


/* the buckets' upper bounds, in microseconds and as Prometheus writes them */
static uint64_t  ngx_do_status_le[NGX_DO_STATUS_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    500000, 1000000, 2500000, 5000000, 10000000
};

static char  *ngx_do_status_le_text[NGX_DO_STATUS_BUCKETS + 1] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
};


/* in the order of NGX_DO_STAT_*; the Prometheus names get "_total" */
static ngx_do_status_metric_t  ngx_do_status_ns_metrics[NGX_DO_STAT_N] = {
    { "calls", "calls",
      "calls sent to the namespace's objects by the worker that accepted "
      "them (requests, gates, lock releases, WebSocket messages)" },
    { "limit_passed", "limit_passed",
      "do_limit: requests the namespace's rate limiters let pass at once" },
    { "limit_delayed", "limit_delayed",
      "do_limit: requests the namespace's rate limiters delayed" },
    { "limit_rejected", "limit_rejected",
      "do_limit: requests the namespace's rate limiters rejected "
      "(in a dry run too)" },
    { "lock_grants", "lock_grants",
      "do_lock: requests that were granted the namespace's lock" },
    { "lock_timeouts", "lock_timeouts",
      "do_lock: requests refused because the lock stayed held for wait=" },
    { "namespace_activations", "activations",
      "objects of the namespace activated" },
    { "namespace_evictions", "evictions",
      "objects of the namespace evicted" },
    { "commit_failures", "commit_failures",
      "commits of the namespace's turns that storage refused or failed" }
};


size_t
ngx_do_status_zone_size(ngx_uint_t namespaces)
{
    /* not rounded to pages: another number of records, another size */
    return ngx_align(sizeof(ngx_do_status_sh_t), ngx_pagesize)
           + ngx_do_status_records(namespaces) * sizeof(ngx_do_status_ns_t)
           + 8 * ngx_pagesize;
}


/* twice the namespaces, rounded up to 16: room for reloads that add some */
static ngx_uint_t
ngx_do_status_records(ngx_uint_t namespaces)
{
    return ngx_align(2 * namespaces, 16);
}


/*
 * shm_zone->data is the configuration's namespaces (ngx_do_namespace_t *)
 * until this runs; then the zone's header.  Each namespace gets its record.
 */
ngx_int_t
ngx_do_status_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_array_t         *namespaces;
    ngx_slab_pool_t     *shpool;
    ngx_do_status_sh_t  *sh;

    namespaces = shm_zone->data;

    if (data) {
        sh = data;

    } else {
        shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

        sh = ngx_slab_calloc(shpool, sizeof(ngx_do_status_sh_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        sh->nrecords = ngx_do_status_records(namespaces->nelts);
        sh->records = ngx_slab_calloc(shpool, sh->nrecords
                                              * sizeof(ngx_do_status_ns_t));
        if (sh->records == NULL) {
            return NGX_ERROR;
        }
    }

    shm_zone->data = sh;
    ngx_do_status_sh = sh;

    ngx_do_status_claim(sh, namespaces);

    return NGX_OK;
}


/*
 * Gives each namespace of a configuration its record: the one of its name,
 * else one never used, else one that no namespace of this configuration
 * has (a namespace that a reload removed), counted from zero again.
 */
static void
ngx_do_status_claim(ngx_do_status_sh_t *sh, ngx_array_t *namespaces)
{
    uint32_t              crc;
    ngx_uint_t            i, round;
    ngx_do_namespace_t  **ns;
    ngx_do_status_ns_t   *rec;

    round = ++sh->round;
    ns = namespaces->elts;

    for (i = 0; i < namespaces->nelts; i++) {
        crc = ngx_crc32_short(ns[i]->name.data, ns[i]->name.len);
        ns[i]->stats = ngx_do_status_find(sh, &ns[i]->name, crc, round);

        if (ns[i]->stats) {
            rec = ns[i]->stats;
            rec->round = round;
        }
    }

    for (i = 0; i < namespaces->nelts; i++) {
        if (ns[i]->stats) {
            continue;
        }

        rec = ngx_do_status_find(sh, NULL, 0, round);

        if (rec == NULL) {
            /* not reached: the zone's size comes from the namespaces */
            continue;
        }

        ngx_memzero(rec, sizeof(ngx_do_status_ns_t));
        rec->len = ns[i]->name.len;
        rec->crc = ngx_crc32_short(ns[i]->name.data, ns[i]->name.len);
        rec->round = round;
        ngx_memcpy(rec->name, ns[i]->name.data,
                   ngx_min(rec->len, NGX_DO_STATUS_NAME));

        ns[i]->stats = rec;
    }
}


/* name: the record of that name; NULL: a free one, or one of no namespace */
static ngx_do_status_ns_t *
ngx_do_status_find(ngx_do_status_sh_t *sh, ngx_str_t *name, uint32_t crc,
    ngx_uint_t round)
{
    ngx_uint_t           i;
    ngx_do_status_ns_t  *rec, *stale;

    stale = NULL;

    for (i = 0; i < sh->nrecords; i++) {
        rec = &sh->records[i];

        if (name == NULL) {
            if (rec->len == 0) {
                return rec;
            }

            if (stale == NULL && rec->round != round) {
                stale = rec;
            }

            continue;
        }

        if (rec->len == name->len && rec->crc == crc
            && rec->round != round
            && ngx_memcmp(rec->name, name->data,
                          ngx_min(name->len, NGX_DO_STATUS_NAME))
               == 0)
        {
            return rec;
        }
    }

    return stale;
}


/* in a worker: point the counters at the worker's own record */
void
ngx_do_status_init_worker(ngx_shm_zone_t *shm_zone, ngx_uint_t workers)
{
    ngx_do_status_sh = shm_zone->data;

    ngx_do_log_share(ngx_do_status_sh ? ngx_do_status_sh->log : NULL);

    if (ngx_do_status_sh == NULL || ngx_worker >= NGX_DO_STATUS_SLOTS) {
        return;
    }

    ngx_do_status_sh->workers = workers;
    ngx_do_stats = &ngx_do_status_sh->slot[ngx_worker];
    ngx_do_stats->pid = ngx_pid;
    ngx_do_stats->objects = 0;
}


void
ngx_do_status_count(ngx_do_namespace_t *ns, ngx_uint_t counter)
{
    ngx_do_status_ns_t  *rec;

    if (ns == NULL || ns->stats == NULL || counter >= NGX_DO_STAT_N) {
        return;
    }

    rec = ns->stats;

    (void) ngx_atomic_fetch_add(&rec->counter[counter], 1);
}


/* a call of the namespace was answered usec after it was sent */
void
ngx_do_status_observe(ngx_do_namespace_t *ns, uint64_t usec)
{
    ngx_uint_t           i;
    ngx_do_status_ns_t  *rec;

    if (ns == NULL || ns->stats == NULL) {
        return;
    }

    rec = ns->stats;

    for (i = 0; i < NGX_DO_STATUS_BUCKETS; i++) {
        if (usec <= ngx_do_status_le[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&rec->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&rec->usec, (ngx_atomic_int_t) usec);
}


/* cluster mode: the sum of the workers' "fenced" counters */
ngx_uint_t
ngx_do_status_fenced(void)
{
    ngx_uint_t  i, n, sum;

    if (ngx_do_status_sh == NULL) {
        return 0;
    }

    n = ngx_min(ngx_do_status_sh->workers, NGX_DO_STATUS_SLOTS);
    sum = 0;

    for (i = 0; i < n; i++) {
        sum += ngx_do_status_sh->slot[i].fenced;
    }

    return sum;
}


/* a monotonic clock in microseconds, for durations */
uint64_t
ngx_do_status_usec(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return (uint64_t) ngx_current_msec * 1000;
    }

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/* the per-worker counters; a counter's Prometheus name gets "_total" */
#define ngx_do_status_fields(F)                                              \
    F(objects, "gauge", "objects held in memory")                             \
    F(activations, "counter", "object activations")                           \
    F(evictions, "counter", "idle objects evicted")                           \
    F(cap_evictions, "counter", "objects evicted for do_max_objects")         \
    F(turns, "counter", "turns run")                                          \
    F(forwarded, "counter", "calls forwarded to the owner worker")            \
    F(timeouts, "counter", "calls whose owner did not answer in time")        \
    F(conflicts, "counter", "commits retried after a version conflict")       \
    F(storage_full, "counter", "commits refused by full storage")         \
    F(quota_exceeded, "counter", "commits refused by a namespace quota")      \
    F(fenced, "counter", "commits refused by their shard's epoch (cluster)")  \
    F(alarms_fired, "counter", "alarm turns run to success")                  \
    F(alarms_failed, "counter", "alarm turns that failed (retried)")        \
    F(parked, "counter", "calls parked to be answered later (lock waiters)") \
    F(park_timeouts, "counter", "parked calls answered by their timeout")   \
    F(ws_connections, "gauge", "WebSocket connections open")                 \
    F(ws_queued_bytes, "gauge", "bytes waiting in WebSocket send queues")    \
    F(ws_messages_in, "counter", "WebSocket messages received")              \
    F(ws_frames_out, "counter", "WebSocket frames queued to members")        \
    F(ws_slow_closed, "counter", "WebSocket members closed for lagging (1013)")

#define ngx_do_status_total(type)                                            \
    (type[0] == 'c' ? "_total" : "")


/* the metrics as JSON or Prometheus text, in the given pool */
ngx_int_t
ngx_do_status_render(ngx_pool_t *pool, ngx_uint_t prometheus,
    const char *backend, ngx_uint_t connected, size_t storage_size,
    size_t storage_free, ngx_str_t *out)
{
    u_char               *p, *last;
    size_t                len;
    ngx_uint_t            i, n;
    ngx_array_t          *namespaces, none;
    ngx_do_namespace_t  **ns;

    n = ngx_do_status_sh ? ngx_min(ngx_do_status_sh->workers,
                                   NGX_DO_STATUS_SLOTS)
                         : 0;

    namespaces = ngx_do_runtime.namespaces;

    if (namespaces == NULL || ngx_do_status_sh == NULL) {
        ngx_memzero(&none, sizeof(ngx_array_t));
        namespaces = &none;
    }

    len = 8192 + n * 2048 + ngx_do_cluster_status_size();
    ns = namespaces->elts;

    for (i = 0; i < namespaces->nelts; i++) {
        len += 4096 + 64 * (ns[i]->name.len + ns[i]->class->name.len);
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    last = p + len;

    if (prometheus) {
        p = ngx_do_status_family(p, last, "ngx_do_build_info", "gauge",
                                 "the version of ngx_do");
        p = ngx_slprintf(p, last, "ngx_do_build_info{version=\""
                         NGX_DO_VERSION "\"} 1\n");

        p = ngx_do_status_prometheus(p, last, n);

        p = ngx_slprintf(p, last, "# HELP ngx_do_storage_bytes memory "
                         "storage zone size\n"
                         "# TYPE ngx_do_storage_bytes gauge\n"
                         "ngx_do_storage_bytes %uz\n"
                         "# HELP ngx_do_storage_free_bytes free pages in "
                         "the memory storage zone\n"
                         "# TYPE ngx_do_storage_free_bytes gauge\n"
                         "ngx_do_storage_free_bytes %uz\n"
                         "# HELP ngx_do_redis_connections redis "
                         "connections ready in the worker that answered\n"
                         "# TYPE ngx_do_redis_connections gauge\n"
                         "ngx_do_redis_connections %ui\n",
                         storage_size, storage_free, connected);

        p = ngx_do_status_prometheus_ns(p, last, namespaces);
        p = ngx_do_status_histogram(p, last, namespaces);
        p = ngx_do_status_prometheus_tables(p, last, namespaces);
        p = ngx_do_cluster_status_prometheus(p, last);

    } else {
        p = ngx_slprintf(p, last, "{\"version\":\"" NGX_DO_VERSION "\","
                         "\"storage\":{\"backend\":\"%s\","
                         "\"size\":%uz,\"free\":%uz,\"connected\":%ui},"
                         "\"workers\":[",
                         backend, storage_size, storage_free, connected);

        p = ngx_do_status_json(p, last, n);
        p = ngx_slprintf(p, last, "],\"namespaces\":{");
        p = ngx_do_status_json_ns(p, last, namespaces);
        p = ngx_slprintf(p, last, "}");
        p = ngx_do_cluster_status_json(p, last);
        p = ngx_slprintf(p, last, "}\n");
    }

    if (p == last) {
        /* not reached: the length is counted above; never a cut document */
        return NGX_ERROR;
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* the per-worker families, a sample per worker slot */
static u_char *
ngx_do_status_prometheus(u_char *p, u_char *last, ngx_uint_t n)
{
    ngx_uint_t       i;
    ngx_do_stats_t  *s;

#define F(name, type, help)                                                   \
    p = ngx_slprintf(p, last, "# HELP ngx_do_" #name "%s " help "\n"          \
                     "# TYPE ngx_do_" #name "%s " type "\n",                  \
                     ngx_do_status_total(type), ngx_do_status_total(type));   \
                                                                              \
    for (i = 0; i < n; i++) {                                                 \
        s = &ngx_do_status_sh->slot[i];                                       \
        p = ngx_slprintf(p, last, "ngx_do_" #name "%s{worker=\"%ui\"} %uA\n", \
                         ngx_do_status_total(type), i, s->name);              \
    }

    ngx_do_status_fields(F)
#undef F

    return p;
}


/* the per-namespace counters, one family each */
static u_char *
ngx_do_status_prometheus_ns(u_char *p, u_char *last, ngx_array_t *namespaces)
{
    u_char                  *end, name[64];
    ngx_uint_t               i, k;
    ngx_do_namespace_t     **ns;
    ngx_do_status_ns_t      *rec;
    ngx_do_status_metric_t  *m;

    ns = namespaces->elts;

    for (k = 0; k < NGX_DO_STAT_N; k++) {
        m = &ngx_do_status_ns_metrics[k];

        end = ngx_snprintf(name, sizeof(name) - 1, "ngx_do_%s_total",
                           m->name);
        *end = '\0';

        p = ngx_do_status_family(p, last, (char *) name, "counter", m->help);

        for (i = 0; i < namespaces->nelts; i++) {
            rec = ns[i]->stats;

            if (rec == NULL) {
                continue;
            }

            p = ngx_slprintf(p, last, "%s{namespace=\"", name);
            p = ngx_do_status_escape(p, last, &ns[i]->name);
            p = ngx_slprintf(p, last, "\"} %uA\n", rec->counter[k]);
        }
    }

    return p;
}


/*
 * the tables that classes keep outside objects (a rate limiter's buckets
 * on memory storage): entries, zone size, free bytes, per namespace
 */
static u_char *
ngx_do_status_prometheus_tables(u_char *p, u_char *last,
    ngx_array_t *namespaces)
{
    ngx_uint_t             i, k;
    ngx_do_namespace_t   **ns;
    ngx_do_table_usage_t   u;
    uint64_t               v[3];

    static const char  *names[3] = {
        "ngx_do_table_entries", "ngx_do_table_bytes",
        "ngx_do_table_free_bytes"
    };

    static const char  *help[3] = {
        "entries in the namespace's own table (rate_limiter on memory "
        "storage: buckets)",
        "size of the zone of the namespace's own table",
        "bytes not allocated in the zone of the namespace's own table"
    };

    ns = namespaces->elts;

    for (k = 0; k < 3; k++) {
        p = ngx_do_status_family(p, last, names[k], "gauge", help[k]);

        for (i = 0; i < namespaces->nelts; i++) {
            if (ns[i]->class->usage == NULL
                || ns[i]->class->usage(ns[i], &u) != NGX_OK)
            {
                continue;
            }

            v[0] = u.entries;
            v[1] = u.size;
            v[2] = u.free;

            p = ngx_slprintf(p, last, "%s{namespace=\"", names[k]);
            p = ngx_do_status_escape(p, last, &ns[i]->name);
            p = ngx_slprintf(p, last, "\"} %uL\n", v[k]);
        }
    }

    return p;
}


/* ngx_do_call_duration_seconds: a histogram per namespace */
static u_char *
ngx_do_status_histogram(u_char *p, u_char *last, ngx_array_t *namespaces)
{
    uint64_t              count;
    ngx_uint_t            i, b;
    ngx_do_namespace_t  **ns;
    ngx_do_status_ns_t   *rec;

    p = ngx_do_status_family(p, last, "ngx_do_call_duration_seconds",
                             "histogram", "time from a call's dispatch to "
                             "its reply, in the worker that accepted it");

    ns = namespaces->elts;

    for (i = 0; i < namespaces->nelts; i++) {
        rec = ns[i]->stats;

        if (rec == NULL) {
            continue;
        }

        count = 0;

        for (b = 0; b <= NGX_DO_STATUS_BUCKETS; b++) {
            /* read once: the +Inf bucket must equal _count below */
            count += rec->bucket[b];

            p = ngx_slprintf(p, last, "ngx_do_call_duration_seconds_bucket"
                             "{namespace=\"");
            p = ngx_do_status_escape(p, last, &ns[i]->name);
            p = ngx_slprintf(p, last, "\",le=\"%s\"} %uL\n",
                             ngx_do_status_le_text[b], count);
        }

        p = ngx_slprintf(p, last,
                         "ngx_do_call_duration_seconds_sum{namespace=\"");
        p = ngx_do_status_escape(p, last, &ns[i]->name);
        p = ngx_slprintf(p, last, "\"} ");
        p = ngx_do_status_seconds(p, last, rec->usec);

        p = ngx_slprintf(p, last,
                         "\nngx_do_call_duration_seconds_count{namespace=\"");
        p = ngx_do_status_escape(p, last, &ns[i]->name);
        p = ngx_slprintf(p, last, "\"} %uL\n", count);
    }

    return p;
}


static u_char *
ngx_do_status_json(u_char *p, u_char *last, ngx_uint_t n)
{
    ngx_uint_t       i;
    ngx_do_stats_t  *s;

    for (i = 0; i < n; i++) {
        s = &ngx_do_status_sh->slot[i];

        p = ngx_slprintf(p, last, "%s{\"worker\":%ui,\"pid\":%P",
                         i ? "," : "", i, (ngx_pid_t) s->pid);

#define F(name, type, help)                                                   \
        p = ngx_slprintf(p, last, ",\"" #name "\":%uA", s->name);

        ngx_do_status_fields(F)
#undef F

        p = ngx_slprintf(p, last, "}");
    }

    return p;
}


/*
 * "name": {"class", the counters, "call_duration_seconds": {"count",
 * "sum", "buckets": {"0.0001": calls within, ..., "+Inf": all}}}
 */
static u_char *
ngx_do_status_json_ns(u_char *p, u_char *last, ngx_array_t *namespaces)
{
    uint64_t               count;
    ngx_uint_t             i, k, b, first;
    ngx_do_namespace_t   **ns;
    ngx_do_status_ns_t    *rec;
    ngx_do_table_usage_t   u;

    ns = namespaces->elts;
    first = 1;

    for (i = 0; i < namespaces->nelts; i++) {
        rec = ns[i]->stats;

        if (rec == NULL) {
            continue;
        }

        p = ngx_slprintf(p, last, "%s\"", first ? "" : ",");
        p = ngx_do_status_escape(p, last, &ns[i]->name);
        first = 0;
        p = ngx_slprintf(p, last, "\":{\"class\":\"");
        p = ngx_do_status_escape(p, last, &ns[i]->class->name);
        p = ngx_slprintf(p, last, "\"");

        for (k = 0; k < NGX_DO_STAT_N; k++) {
            p = ngx_slprintf(p, last, ",\"%s\":%uA",
                             ngx_do_status_ns_metrics[k].key,
                             rec->counter[k]);
        }

        p = ngx_slprintf(p, last, ",\"call_duration_seconds\":{\"buckets\":{");

        count = 0;

        for (b = 0; b <= NGX_DO_STATUS_BUCKETS; b++) {
            count += rec->bucket[b];
            p = ngx_slprintf(p, last, "%s\"%s\":%uL", b ? "," : "",
                             ngx_do_status_le_text[b], count);
        }

        p = ngx_slprintf(p, last, "},\"count\":%uL,\"sum\":", count);
        p = ngx_do_status_seconds(p, last, rec->usec);
        p = ngx_slprintf(p, last, "}");

        if (ns[i]->class->usage && ns[i]->class->usage(ns[i], &u) == NGX_OK) {
            p = ngx_slprintf(p, last, ",\"table\":{\"entries\":%ui,"
                             "\"size\":%uz,\"free\":%uz}",
                             u.entries, u.size, u.free);
        }

        p = ngx_slprintf(p, last, "}");
    }

    return p;
}


static u_char *
ngx_do_status_family(u_char *p, u_char *last, const char *name,
    const char *type, const char *help)
{
    return ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s %s\n",
                        name, help, name, type);
}


/*
 * A label value or a JSON string's content: backslash, double quote and
 * newline escaped (the same in both); namespace names need none of it
 */
static u_char *
ngx_do_status_escape(u_char *p, u_char *last, ngx_str_t *s)
{
    u_char      c;
    ngx_uint_t  i;

    for (i = 0; i < s->len && p + 2 <= last; i++) {
        c = s->data[i];

        if (c == '\\' || c == '"') {
            *p++ = '\\';
            *p++ = c;

        } else if (c == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = c;
        }
    }

    return p;
}


static u_char *
ngx_do_status_seconds(u_char *p, u_char *last, uint64_t usec)
{
    return ngx_slprintf(p, last, "%uL.%06uL", usec / 1000000,
                        usec % 1000000);
}
