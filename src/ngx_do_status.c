
/*
 * Runtime metrics: one record per worker slot in a small shared memory
 * zone.  Each worker writes only its own record (a single writer), and
 * do_status reads all of them, so nothing here takes a lock.  Counters
 * accumulate over reloads and respawns, as Prometheus expects; "objects"
 * is the number of objects the slot's current worker holds in memory.
 * The zone also holds the second of the last outage error line, so that
 * all workers together log one such line a second.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"


#define NGX_DO_STATUS_SLOTS       256


typedef struct {
    ngx_uint_t                 workers;
    ngx_atomic_t               logged;
    ngx_do_stats_t             slot[NGX_DO_STATUS_SLOTS];
} ngx_do_status_sh_t;


static ngx_do_status_sh_t     *ngx_do_status_sh;
static ngx_do_stats_t          ngx_do_status_dummy;

ngx_do_stats_t                *ngx_do_stats = &ngx_do_status_dummy;


size_t
ngx_do_status_zone_size(void)
{
    return ngx_align(sizeof(ngx_do_status_sh_t), ngx_pagesize)
           + 8 * ngx_pagesize;
}


ngx_int_t
ngx_do_status_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        shm_zone->data = data;
        ngx_do_status_sh = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    ngx_do_status_sh = ngx_slab_calloc(shpool, sizeof(ngx_do_status_sh_t));
    if (ngx_do_status_sh == NULL) {
        return NGX_ERROR;
    }

    shm_zone->data = ngx_do_status_sh;

    return NGX_OK;
}


/* in a worker: point the counters at the worker's own record */
void
ngx_do_status_init_worker(ngx_shm_zone_t *shm_zone, ngx_uint_t workers)
{
    ngx_do_status_sh = shm_zone->data;

    if (ngx_do_status_sh == NULL || ngx_worker >= NGX_DO_STATUS_SLOTS) {
        return;
    }

    ngx_do_status_sh->workers = workers;
    ngx_do_stats = &ngx_do_status_sh->slot[ngx_worker];
    ngx_do_stats->pid = ngx_pid;
    ngx_do_stats->objects = 0;
}


/*
 * The second only moves forward: a worker whose cached time lags behind
 * another's cannot log a second line for a second already logged.
 */
ngx_uint_t
ngx_do_log_gate(void)
{
    ngx_atomic_uint_t        now, last;
    ngx_atomic_t            *logged;
    static ngx_atomic_t      local;

    logged = ngx_do_status_sh ? &ngx_do_status_sh->logged : &local;

    now = (ngx_atomic_uint_t) ngx_time();
    last = *logged;

    if (now <= last) {
        return 0;
    }

    return ngx_atomic_cmp_set(logged, last, now) ? 1 : 0;
}


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
    F(alarms_fired, "counter", "alarm turns run to success")                  \
    F(alarms_failed, "counter", "alarm turns that failed (retried)")        \
    F(parked, "counter", "calls parked to be answered later (lock waiters)") \
    F(park_timeouts, "counter", "parked calls answered by their timeout")   \
    F(ws_connections, "gauge", "WebSocket connections open")                 \
    F(ws_queued_bytes, "gauge", "bytes waiting in WebSocket send queues")    \
    F(ws_messages_in, "counter", "WebSocket messages received")              \
    F(ws_frames_out, "counter", "WebSocket frames queued to members")        \
    F(ws_slow_closed, "counter", "WebSocket members closed for lagging (1013)")


/* the metrics as JSON or Prometheus text, in the given pool */
ngx_int_t
ngx_do_status_render(ngx_pool_t *pool, ngx_uint_t prometheus,
    const char *backend, ngx_uint_t connected, size_t storage_size,
    size_t storage_free, ngx_str_t *out)
{
    u_char          *p;
    size_t           len;
    ngx_uint_t       i, n;
    ngx_do_stats_t  *s;

    n = ngx_do_status_sh ? ngx_min(ngx_do_status_sh->workers,
                                   NGX_DO_STATUS_SLOTS)
                         : 0;

    len = 4096 + n * 2048;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    if (prometheus) {

#define F(name, type, help)                                                   \
        p = ngx_sprintf(p, "# HELP ngx_do_" #name " " help "\n"               \
                        "# TYPE ngx_do_" #name " " type "\n");                 \
        for (i = 0; i < n; i++) {                                             \
            s = &ngx_do_status_sh->slot[i];                                   \
            p = ngx_sprintf(p, "ngx_do_" #name "{worker=\"%ui\"} %uA\n",      \
                            i, s->name);                                      \
        }

        ngx_do_status_fields(F)
#undef F

        p = ngx_sprintf(p, "# HELP ngx_do_storage_bytes memory storage zone "
                        "size\n# TYPE ngx_do_storage_bytes gauge\n"
                        "ngx_do_storage_bytes %uz\n"
                        "# HELP ngx_do_storage_free_bytes free pages in the "
                        "memory storage zone\n"
                        "# TYPE ngx_do_storage_free_bytes gauge\n"
                        "ngx_do_storage_free_bytes %uz\n"
                        "# HELP ngx_do_redis_connections redis connections "
                        "ready in the worker that answered\n"
                        "# TYPE ngx_do_redis_connections gauge\n"
                        "ngx_do_redis_connections %ui\n",
                        storage_size, storage_free, connected);

    } else {
        p = ngx_sprintf(p, "{\"storage\":{\"backend\":\"%s\","
                        "\"size\":%uz,\"free\":%uz,\"connected\":%ui},"
                        "\"workers\":[",
                        backend, storage_size, storage_free, connected);

        for (i = 0; i < n; i++) {
            s = &ngx_do_status_sh->slot[i];

            p = ngx_sprintf(p, "%s{\"worker\":%ui,\"pid\":%P", i ? "," : "",
                            i, (ngx_pid_t) s->pid);

#define F(name, type, help)                                                   \
            p = ngx_sprintf(p, ",\"" #name "\":%uA", s->name);

            ngx_do_status_fields(F)
#undef F

            *p++ = '}';
        }

        p = ngx_sprintf(p, "]}\n");
    }

    out->len = p - out->data;

    return NGX_OK;
}
