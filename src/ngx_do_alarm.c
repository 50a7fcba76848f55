
/*
 * Alarms: scheduled turns.
 *
 * An object's alarms live in its own state, each under two reserved keys
 * (see "How an object stores its alarms" below); a turn that changes them
 * also puts the object's earliest time into its shard's alarm index, in
 * the same commit (both backends keep one index per shard, ordered by
 * time).  The worker that
 * owns a shard reads the due part of its index when the shard's next time
 * comes, so that a thousand or a million alarms cost one timer per worker,
 * and reads of the index only for shards with something due.  The times
 * it knows come from its own commits and from reading the index: at
 * start (which finds what came due while nginx was down) and every 30 s
 * (which finds what other workers wrote, during a reload).
 *
 * In cluster mode a worker scans only the shards it owns that this node
 * holds now (ngx_do_cluster_route() says HERE): it looks at the routes at
 * least every second, and a shard this node has just taken is scanned at
 * once, for its alarms were scheduled by the node that held it before.
 *
 * A due object gets a call like any other: it waits its turn.  The turn
 * removes the due alarms from the object and runs class->alarm for each;
 * its commit stores both, so an alarm is gone only once its handler's
 * work is stored (at least once).  A failed turn is retried after 2 s,
 * 4 s, ... 6 times, then its due alarms are dropped (logged).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do.h"
#include "ngx_do_cluster.h"


#define NGX_DO_ALARM_BATCH        256
#define NGX_DO_ALARM_RESCAN       30000
#define NGX_DO_ALARM_RETRY        2000
#define NGX_DO_ALARM_ROUTES       1000        /* cluster: routes looked at */
#define NGX_DO_ALARM_TRIES        6
#define NGX_DO_ALARM_NONE         ((uint64_t) -1)

/*
 * How an object stores its alarms: two reserved keys each,
 *
 *   "\0n" name                       its time (8 bytes, big-endian)
 *   "\0t" time (8 bytes, big-endian) name      an empty value
 *
 * the first to look an alarm up by name, the second to keep the alarms in
 * time order: storage orders an object's keys by their bytes (so does the
 * cache of an asynchronous backend, for reserved keys), so the first
 * "\0t" key is the next alarm.  Both cost O(log n) in the object's keys,
 * however many alarms it has.
 */
#define NGX_DO_ALARM_NAME         'n'
#define NGX_DO_ALARM_TIME         't'
#define NGX_DO_ALARM_TIME_LEN     10          /* "\0t" and the time */
#define NGX_DO_ALARM_FIRE_MAX     128         /* alarms run by one turn */


/* an alarm call in flight or waiting to be retried, by object ID */
typedef struct {
    ngx_do_id_node_t           node;
    ngx_do_namespace_t        *ns;
    ngx_uint_t                 tries;         /* handler failures */
    ngx_uint_t                 outages;       /* storage failures */
    ngx_event_t                retry;
    unsigned                   giveup:1;
} ngx_do_alarm_call_t;



static void ngx_do_alarm_timer_handler(ngx_event_t *ev);
static void ngx_do_alarm_arm(void);
static ngx_uint_t ngx_do_alarm_held(ngx_uint_t shard);
static void ngx_do_alarm_scan(ngx_uint_t shard, uint64_t now);
static void ngx_do_alarm_scanned(ngx_do_storage_req_t *req);
static void ngx_do_alarm_found(ngx_uint_t shard, ngx_do_storage_req_t *req);
static void ngx_do_alarm_retry_handler(ngx_event_t *ev);
static void ngx_do_alarm_free(ngx_do_alarm_call_t *ac);
static ngx_int_t ngx_do_alarm_lookup(ngx_do_turn_t *t, ngx_str_t *name,
    uint64_t *when);
static ngx_int_t ngx_do_alarm_store(ngx_do_turn_t *t, ngx_str_t *name,
    uint64_t when);
static ngx_int_t ngx_do_alarm_remove(ngx_do_turn_t *t, ngx_str_t *time_key);
static ngx_int_t ngx_do_alarm_key(ngx_do_turn_t *t, u_char kind,
    ngx_str_t *name, uint64_t when, ngx_str_t *key);
static ngx_int_t ngx_do_alarm_migrate(ngx_do_turn_t *t);
static void ngx_do_alarm_put64(u_char *p, uint64_t n);
static uint64_t ngx_do_alarm_get64(u_char *p);


static ngx_do_backend_t       *ngx_do_alarm_backend;
static uint64_t                ngx_do_alarm_due[NGX_DO_SHARDS];
static uint64_t                ngx_do_alarm_soon[NGX_DO_SHARDS];
static u_char                  ngx_do_alarm_scanning[NGX_DO_SHARDS];
static ngx_uint_t              ngx_do_alarm_mine[NGX_DO_SHARDS];
/* cluster mode: the route of the shard was HERE when last looked at */
static u_char                  ngx_do_alarm_here[NGX_DO_SHARDS];
static ngx_uint_t              ngx_do_alarm_nmine;
static ngx_event_t             ngx_do_alarm_timer;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_alarm_dumb;
static uint64_t                ngx_do_alarm_armed;
static ngx_rbtree_t            ngx_do_alarm_calls;
static ngx_rbtree_node_t       ngx_do_alarm_sentinel;
static ngx_do_alarm_call_t    *ngx_do_alarm_current;
static ngx_uint_t              ngx_do_alarm_enabled;

static ngx_str_t               ngx_do_alarm_times = { 2, (u_char *) "\0t" };
/* where earlier versions kept an object's alarms, see migrate */
static ngx_str_t               ngx_do_alarm_list =
    { sizeof("\0alarms") - 1, (u_char *) "\0alarms" };


uint64_t
ngx_do_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


ngx_int_t
ngx_do_alarms_init(ngx_cycle_t *cycle, ngx_do_backend_t *backend)
{
    ngx_uint_t  i;

    ngx_do_alarm_backend = backend;

    ngx_rbtree_init(&ngx_do_alarm_calls, &ngx_do_alarm_sentinel,
                    ngx_do_id_rbtree_insert);

    /* the index is read at once for this worker's shards */
    ngx_do_alarm_nmine = 0;

    for (i = 0; i < NGX_DO_SHARDS; i++) {
        if (ngx_do_shard_owner(i) == (ngx_uint_t) ngx_worker) {
            ngx_do_alarm_mine[ngx_do_alarm_nmine++] = i;
            ngx_do_alarm_due[i] = 0;

        } else {
            ngx_do_alarm_due[i] = NGX_DO_ALARM_NONE;
        }

        ngx_do_alarm_soon[i] = NGX_DO_ALARM_NONE;
        ngx_do_alarm_scanning[i] = 0;
        ngx_do_alarm_here[i] = 1;
    }

    ngx_do_alarm_timer.handler = ngx_do_alarm_timer_handler;
    ngx_do_alarm_timer.data = &ngx_do_alarm_dumb;
    ngx_do_alarm_dumb.fd = (ngx_socket_t) -1;
    ngx_do_alarm_timer.log = cycle->log;
    ngx_do_alarm_timer.cancelable = 1;
    ngx_do_alarm_armed = NGX_DO_ALARM_NONE;
    ngx_do_alarm_enabled = 1;

    /* a moment later: an asynchronous backend connects first */
    ngx_add_timer(&ngx_do_alarm_timer, 100);
    ngx_do_alarm_armed = ngx_do_now() + 100;

    return NGX_OK;
}


void
ngx_do_alarms_exit(void)
{
    ngx_rbtree_node_t  *node;

    if (!ngx_do_alarm_enabled) {
        return;
    }

    ngx_do_alarm_enabled = 0;

    if (ngx_do_alarm_timer.timer_set) {
        ngx_del_timer(&ngx_do_alarm_timer);
    }

    while (ngx_do_alarm_calls.root != ngx_do_alarm_calls.sentinel) {
        node = ngx_rbtree_min(ngx_do_alarm_calls.root,
                              ngx_do_alarm_calls.sentinel);
        ngx_do_alarm_free((ngx_do_alarm_call_t *) node);
    }
}


/* a commit of this worker put an object's next alarm into the index */
void
ngx_do_alarm_scheduled(u_char *id, uint64_t when)
{
    ngx_uint_t  shard;

    if (!ngx_do_alarm_enabled) {
        return;
    }

    shard = ngx_do_id_shard(id);

    if (ngx_do_shard_owner(shard) != (ngx_uint_t) ngx_worker
        || !ngx_do_alarm_here[shard])
    {
        /* another worker's (a reload) or node's shard: its scans find it */
        return;
    }

    if (ngx_do_alarm_scanning[shard]) {
        /* the read in flight may not see it: kept for its end */
        ngx_do_alarm_soon[shard] = ngx_min(ngx_do_alarm_soon[shard], when);
        return;
    }

    if (when >= ngx_do_alarm_due[shard]) {
        return;
    }

    ngx_do_alarm_due[shard] = when;

    if (ngx_do_alarm_timer.timer_set && ngx_do_alarm_armed <= when) {
        /* the timer comes first anyway: no need to look at every shard */
        return;
    }

    ngx_do_alarm_arm();
}


static void
ngx_do_alarm_timer_handler(ngx_event_t *ev)
{
    uint64_t    now;
    ngx_uint_t  i, k;

    ngx_do_alarm_armed = NGX_DO_ALARM_NONE;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        /* the new workers read the index themselves */
        return;
    }

    now = ngx_do_now();

    for (k = 0; k < ngx_do_alarm_nmine; k++) {
        i = ngx_do_alarm_mine[k];

        if (!ngx_do_alarm_held(i)) {
            continue;
        }

        if (!ngx_do_alarm_scanning[i] && ngx_do_alarm_due[i] <= now) {
            ngx_do_alarm_scan(i, now);
        }
    }

    ngx_do_alarm_arm();
}


/*
 * Cluster mode: whether this node holds the shard now; one it has just
 * taken is due at once.  Outside cluster mode: always.
 */
static ngx_uint_t
ngx_do_alarm_held(ngx_uint_t shard)
{
    ngx_uint_t  peer;

    if (ngx_do_cluster == NULL) {
        return 1;
    }

    if (ngx_do_cluster_route(shard, &peer) != NGX_DO_CLUSTER_HERE) {
        ngx_do_alarm_here[shard] = 0;
        return 0;
    }

    if (!ngx_do_alarm_here[shard]) {
        ngx_do_alarm_here[shard] = 1;
        ngx_do_alarm_due[shard] = 0;
    }

    return 1;
}


/* the one timer: at the earliest time any shard of this worker needs */
static void
ngx_do_alarm_arm(void)
{
    uint64_t    now, next;
    ngx_uint_t  i, k;

    if (ngx_exiting) {
        return;
    }

    next = NGX_DO_ALARM_NONE;

    for (k = 0; k < ngx_do_alarm_nmine; k++) {
        i = ngx_do_alarm_mine[k];

        if (ngx_do_alarm_here[i] && !ngx_do_alarm_scanning[i]
            && ngx_do_alarm_due[i] < next)
        {
            next = ngx_do_alarm_due[i];
        }
    }

    now = ngx_do_now();

    if (ngx_do_cluster) {
        /* shards come and go with the routes: a look every second */
        next = ngx_min(next, now + NGX_DO_ALARM_ROUTES);
    }

    if (next == NGX_DO_ALARM_NONE) {
        return;
    }

    if (ngx_do_alarm_timer.timer_set && ngx_do_alarm_armed <= next) {
        return;
    }

    ngx_add_timer(&ngx_do_alarm_timer,
                  (ngx_msec_t) (next > now ? ngx_min(next - now,
                                                     NGX_DO_ALARM_RESCAN)
                                           : 1));
    ngx_do_alarm_armed = next;
}


static void
ngx_do_alarm_scan(ngx_uint_t shard, uint64_t now)
{
    ngx_int_t              rc;
    ngx_do_storage_req_t  *req;

    req = ngx_calloc(sizeof(ngx_do_storage_req_t), ngx_cycle->log);
    if (req == NULL) {
        ngx_do_alarm_due[shard] = now + 1000;
        return;
    }

    req->handler = ngx_do_alarm_scanned;
    req->data = &ngx_do_alarm_due[shard];

    rc = ngx_do_alarm_backend->alarms(shard, now, NGX_DO_ALARM_BATCH, req);

    if (rc == NGX_AGAIN) {
        ngx_do_alarm_scanning[shard] = 1;
        return;
    }

    req->rc = rc;
    ngx_do_alarm_found(shard, req);
}


static void
ngx_do_alarm_scanned(ngx_do_storage_req_t *req)
{
    ngx_uint_t  shard;

    if (!ngx_do_alarm_enabled) {
        if (req->pool) {
            ngx_destroy_pool(req->pool);
        }

        ngx_free(req);
        return;
    }

    shard = (uint64_t *) req->data - ngx_do_alarm_due;
    ngx_do_alarm_scanning[shard] = 0;

    ngx_do_alarm_found(shard, req);
    ngx_do_alarm_arm();
}


/* what the index had due in a shard: a call for each object; frees req */
static void
ngx_do_alarm_found(ngx_uint_t shard, ngx_do_storage_req_t *req)
{
    size_t                n;
    uint64_t              now, next;
    ngx_uint_t            i, j;
    ngx_do_kv_t          *kv;
    ngx_do_namespace_t  **nss, *ns;
    ngx_do_alarm_call_t  *ac;
    u_char                esc[NGX_DO_LOG_ESCAPE_LEN];

    now = ngx_do_now();

    if (req->rc != NGX_OK) {
        /* storage is down: look again in a second */
        ngx_do_alarm_due[shard] = ngx_min(now + 1000,
                                          ngx_do_alarm_soon[shard]);
        ngx_do_alarm_soon[shard] = NGX_DO_ALARM_NONE;
        goto done;
    }

    if (req->kvs && req->kvs->nelts == NGX_DO_ALARM_BATCH) {
        /* maybe more are due */
        next = now + 100;

    } else if (req->version) {
        next = ngx_min(req->version, now + NGX_DO_ALARM_RESCAN);

    } else {
        next = now + NGX_DO_ALARM_RESCAN;
    }

    /* the calls below may schedule earlier times in this shard */
    ngx_do_alarm_due[shard] = ngx_do_alarm_soon[shard];
    ngx_do_alarm_soon[shard] = NGX_DO_ALARM_NONE;

    nss = ngx_do_runtime.namespaces->elts;
    kv = req->kvs ? req->kvs->elts : NULL;

    for (i = 0; kv && i < req->kvs->nelts; i++) {

        ns = NULL;

        for (j = 0; j < ngx_do_runtime.namespaces->nelts; j++) {
            if (nss[j]->name.len == kv[i].key.len
                && ngx_strncmp(nss[j]->name.data, kv[i].key.data,
                               kv[i].key.len) == 0)
            {
                ns = nss[j];
                break;
            }
        }

        if (ns == NULL || kv[i].value.len != NGX_DO_ID_LEN
            || ns->class->deferred)
        {
            n = ngx_do_log_escape(esc, sizeof(esc), kv[i].key.data,
                                  kv[i].key.len);
            ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0,
                                 NGX_DO_LOG_ALARM,
                                 "do: alarm of unknown namespace \"%*s\" "
                                 "skipped", n, esc);

            continue;
        }

        if (ngx_do_id_rbtree_lookup(&ngx_do_alarm_calls, kv[i].value.data)) {
            /* running, or waiting for its retry */
            continue;
        }

        ac = ngx_calloc(sizeof(ngx_do_alarm_call_t), ngx_cycle->log);
        if (ac == NULL) {
            next = ngx_min(next, now + 1000);
            break;
        }

        ngx_memcpy(ac->node.id, kv[i].value.data, NGX_DO_ID_LEN);
        ac->node.node.key = ngx_do_id_hash(ac->node.id);
        ac->ns = ns;
        ac->retry.handler = ngx_do_alarm_retry_handler;
        ac->retry.data = ac;
        ac->retry.log = ngx_cycle->log;
        ac->retry.cancelable = 1;

        ngx_rbtree_insert(&ngx_do_alarm_calls, &ac->node.node);

        ngx_do_wire_alarm(ac->ns, ac->node.id, ac);
    }

    ngx_do_alarm_due[shard] = ngx_min(ngx_do_alarm_due[shard], next);

done:

    if (req->pool) {
        ngx_destroy_pool(req->pool);
    }

    ngx_free(req);
}


/*
 * An alarm turn ended: committed (status below 500), or failed and to be
 * retried.  Only failures of the handler itself (500) count towards giving
 * up: an alarm is not dropped because storage was down for a while.
 */
void
ngx_do_alarm_done(void *data, ngx_uint_t status)
{
    u_char                hex[NGX_DO_ID_HEX_LEN];
    ngx_msec_t            delay;
    ngx_do_alarm_call_t  *ac;

    ac = data;

    if (!ngx_do_alarm_enabled) {
        /* freed with the others at exit */
        return;
    }

    (void) ngx_hex_dump(hex, ac->node.id, NGX_DO_ID_LEN);

    if (status < 500) {
        ngx_do_stats->alarms_fired++;

        if (ac->tries && !ac->giveup) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "do: alarm of \"%V\" object %*s ran after %ui "
                          "retries", &ac->ns->name, (size_t) 16, hex,
                          ac->tries);
        }

        ngx_do_alarm_free(ac);
        return;
    }

    ngx_do_stats->alarms_failed++;

    if (ac->giveup) {
        /* even dropping it failed (storage): keep trying, slowly */
        delay = NGX_DO_ALARM_RETRY << NGX_DO_ALARM_TRIES;

    } else if (status != NGX_HTTP_INTERNAL_SERVER_ERROR) {
        /* storage, not the handler: retry, backing off, never give up */
        delay = NGX_DO_ALARM_RETRY << ngx_min(ac->outages,
                                              NGX_DO_ALARM_TRIES);
        ac->outages++;

        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0,
                             NGX_DO_LOG_ALARM,
                             "do: alarm of \"%V\" object %*s could not run "
                             "(%ui), retry in %M ms", &ac->ns->name,
                             (size_t) 16, hex, status, delay);

    } else if (ac->tries++ == NGX_DO_ALARM_TRIES) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "do: alarm of \"%V\" object %*s failed %ui times, "
                      "dropping it", &ac->ns->name, (size_t) 16, hex,
                      ac->tries);
        ac->giveup = 1;
        delay = 1;

    } else {
        delay = NGX_DO_ALARM_RETRY << (ac->tries - 1);

        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0,
                             NGX_DO_LOG_ALARM,
                             "do: alarm of \"%V\" object %*s failed, retry "
                             "%ui of %d in %M ms", &ac->ns->name, (size_t) 16,
                             hex, ac->tries, NGX_DO_ALARM_TRIES, delay);
    }

    ngx_add_timer(&ac->retry, delay);
}


static void
ngx_do_alarm_retry_handler(ngx_event_t *ev)
{
    ngx_do_alarm_call_t  *ac;

    ac = ev->data;

    ngx_do_wire_alarm(ac->ns, ac->node.id, ac);
}


static void
ngx_do_alarm_free(ngx_do_alarm_call_t *ac)
{
    if (ac->retry.timer_set) {
        ngx_del_timer(&ac->retry);
    }

    ngx_rbtree_delete(&ngx_do_alarm_calls, &ac->node.node);
    ngx_free(ac);
}


/*
 * The handler of an alarm call's turn: takes the due alarms out of the
 * object's index (the first NGX_DO_ALARM_FIRE_MAX; more make the object
 * due again at once) and runs the class for each, all in this one turn.
 */
ngx_int_t
ngx_do_alarm_fire(ngx_do_turn_t *t)
{
    size_t                len;
    uint64_t              now;
    ngx_int_t             rc;
    ngx_str_t            *k, name;
    ngx_uint_t            i, n;
    ngx_array_t          *keys;
    ngx_do_class_t       *class;
    ngx_do_alarm_call_t  *ac;
    u_char                esc[NGX_DO_LOG_ESCAPE_LEN];

    ac = ngx_do_turn_alarm_data(t);
    class = ngx_do_turn_namespace(t)->class;

    if (ngx_do_alarm_migrate(t) != NGX_OK
        || ngx_do_list_reserved(t, &ngx_do_alarm_times, NGX_DO_ALARM_FIRE_MAX,
                                &keys)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    now = ngx_do_now();
    k = keys->elts;

    for (n = 0; n < keys->nelts; n++) {
        if (k[n].len >= NGX_DO_ALARM_TIME_LEN
            && ngx_do_alarm_get64(k[n].data + 2) > now)
        {
            break;
        }

        if (ngx_do_alarm_remove(t, &k[n]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* also when nothing was due: the index learns the true next time */
    ngx_do_turn_alarms_changed(t);

    for (i = 0; i < n; i++) {

        if (k[i].len < NGX_DO_ALARM_TIME_LEN) {
            /* damaged, and dropped */
            continue;
        }

        name.data = k[i].data + NGX_DO_ALARM_TIME_LEN;
        name.len = k[i].len - NGX_DO_ALARM_TIME_LEN;

        if (ac->giveup) {
            len = ngx_do_log_escape(esc, sizeof(esc), name.data, name.len);
            ngx_log_error(NGX_LOG_ERR, ngx_do_turn_log(t), 0,
                          "do: alarm \"%*s\" of namespace \"%V\" dropped "
                          "after %d retries", len, esc,
                          &ngx_do_turn_namespace(t)->name,
                          NGX_DO_ALARM_TRIES);
            continue;
        }

        if (class->alarm == NULL) {
            continue;
        }

        ngx_do_alarm_current = ac;
        rc = class->alarm(t, &name);
        ngx_do_alarm_current = NULL;

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_do_reply(t, NGX_HTTP_OK, "text/plain", NULL, 0);
}


ngx_uint_t
ngx_do_alarm_retries(ngx_do_turn_t *t)
{
    return ngx_do_alarm_current ? ngx_do_alarm_current->tries : 0;
}


/* the earliest alarm after the turn's writes, 0: none */
ngx_int_t
ngx_do_alarm_next(ngx_do_turn_t *t, uint64_t *when)
{
    ngx_str_t    *k;
    ngx_array_t  *keys;

    *when = 0;

    if (ngx_do_turn_namespace(t)->class->deferred) {
        return NGX_OK;
    }

    if (ngx_do_list_reserved(t, &ngx_do_alarm_times, 1, &keys) != NGX_OK) {
        return NGX_ERROR;
    }

    if (keys->nelts == 0) {
        return NGX_OK;
    }

    k = keys->elts;

    /* a damaged key: due at once, and its turn drops it */
    *when = (k->len >= NGX_DO_ALARM_TIME_LEN) ? ngx_do_alarm_get64(k->data + 2)
                                              : 1;

    return NGX_OK;
}


ngx_int_t
ngx_do_set_alarm(ngx_do_turn_t *t, ngx_str_t *name, uint64_t when)
{
    if (ngx_do_turn_namespace(t)->class->deferred) {
        return NGX_ERROR;
    }

    if (name->len > ngx_do_turn_namespace(t)->max_key + NGX_DO_ALARM_MAX_NAME)
    {
        return NGX_DECLINED;
    }

    /* 0 means "none" in the index: the past is the past */
    return ngx_do_alarm_store(t, name, when ? when : 1);
}


ngx_int_t
ngx_do_get_alarm(ngx_do_turn_t *t, ngx_str_t *name, uint64_t *when)
{
    return ngx_do_alarm_lookup(t, name, when);
}


ngx_int_t
ngx_do_delete_alarm(ngx_do_turn_t *t, ngx_str_t *name)
{
    return ngx_do_alarm_store(t, name, 0);
}


/* an alarm's time: NGX_OK, NGX_DECLINED (not set), NGX_ERROR */
static ngx_int_t
ngx_do_alarm_lookup(ngx_do_turn_t *t, ngx_str_t *name, uint64_t *when)
{
    uint64_t   version;
    ngx_int_t  rc;
    ngx_str_t  key, value;

    if (ngx_do_turn_alarm_free(t)) {
        return NGX_DECLINED;
    }

    if (ngx_do_alarm_migrate(t) != NGX_OK
        || ngx_do_alarm_key(t, NGX_DO_ALARM_NAME, name, 0, &key) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_do_get_reserved(t, &key, &value, &version);

    if (rc != NGX_OK) {
        return rc;
    }

    if (value.len != 8) {
        ngx_log_error(NGX_LOG_ERR, ngx_do_turn_log(t), 0,
                      "do: a stored alarm of an object of namespace \"%V\" "
                      "is damaged, ignored",
                      &ngx_do_turn_namespace(t)->name);
        return NGX_DECLINED;
    }

    *when = ngx_do_alarm_get64(value.data);

    return NGX_OK;
}


/*
 * Sets an alarm, or removes it (when 0): both of its keys.  NGX_OK,
 * NGX_DECLINED (a removed alarm was not set), NGX_ERROR.
 */
static ngx_int_t
ngx_do_alarm_store(ngx_do_turn_t *t, ngx_str_t *name, uint64_t when)
{
    uint64_t   old;
    ngx_int_t  rc;
    ngx_str_t  key, value;

    rc = ngx_do_alarm_lookup(t, name, &old);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK && old == when) {
        return NGX_OK;
    }

    if (rc == NGX_DECLINED && when == 0) {
        return NGX_DECLINED;
    }

    ngx_do_turn_alarms_changed(t);

    if (rc == NGX_OK
        && (ngx_do_alarm_key(t, NGX_DO_ALARM_TIME, name, old, &key) != NGX_OK
            || ngx_do_delete_reserved(t, &key) == NGX_ERROR))
    {
        return NGX_ERROR;
    }

    if (ngx_do_alarm_key(t, NGX_DO_ALARM_NAME, name, 0, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    if (when == 0) {
        return (ngx_do_delete_reserved(t, &key) == NGX_ERROR) ? NGX_ERROR
                                                               : NGX_OK;
    }

    value.data = ngx_pnalloc(ngx_do_turn_pool(t), 8);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_do_alarm_put64(value.data, when);
    value.len = 8;

    rc = ngx_do_put_reserved(t, &key, &value);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_do_alarm_key(t, NGX_DO_ALARM_TIME, name, when, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "");

    return ngx_do_put_reserved(t, &key, &value);
}


/* a due alarm, by its key in time order, leaves: both of its keys */
static ngx_int_t
ngx_do_alarm_remove(ngx_do_turn_t *t, ngx_str_t *time_key)
{
    ngx_str_t  name, key;

    if (ngx_do_delete_reserved(t, time_key) == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (time_key->len < NGX_DO_ALARM_TIME_LEN) {
        ngx_log_error(NGX_LOG_ERR, ngx_do_turn_log(t), 0,
                      "do: a stored alarm of an object of namespace \"%V\" "
                      "is damaged, dropped", &ngx_do_turn_namespace(t)->name);
        return NGX_OK;
    }

    name.data = time_key->data + NGX_DO_ALARM_TIME_LEN;
    name.len = time_key->len - NGX_DO_ALARM_TIME_LEN;

    if (ngx_do_alarm_key(t, NGX_DO_ALARM_NAME, &name, 0, &key) != NGX_OK
        || ngx_do_delete_reserved(t, &key) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* an alarm's key: by name ("\0n" name) or in time order ("\0t" time name) */
static ngx_int_t
ngx_do_alarm_key(ngx_do_turn_t *t, u_char kind, ngx_str_t *name,
    uint64_t when, ngx_str_t *key)
{
    u_char  *p;

    p = ngx_pnalloc(ngx_do_turn_pool(t), NGX_DO_ALARM_TIME_LEN + name->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    key->data = p;
    *p++ = '\0';
    *p++ = kind;

    if (kind == NGX_DO_ALARM_TIME) {
        ngx_do_alarm_put64(p, when);
        p += 8;
    }

    p = ngx_do_cpymem(p, name->data, name->len);
    key->len = p - key->data;

    return NGX_OK;
}


/*
 * Alarms stored by earlier versions: one list under "\0alarms", for each
 * alarm 8 bytes of time and 2 of name length (little-endian), then the
 * name.  The first turn that meets one moves its alarms to their own keys.
 */
static ngx_int_t
ngx_do_alarm_migrate(ngx_do_turn_t *t)
{
    u_char      *p, *last;
    uint64_t     version, when;
    ngx_int_t    rc;
    ngx_str_t    value, name;
    ngx_uint_t   i;

    rc = ngx_do_get_reserved(t, &ngx_do_alarm_list, &value, &version);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    /* first: the alarms below look for the list again */
    if (ngx_do_delete_reserved(t, &ngx_do_alarm_list) == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_do_turn_alarms_changed(t);

    p = value.data;
    last = p + value.len;

    while (last - p >= 10) {
        when = 0;

        for (i = 0; i < 8; i++) {
            when |= (uint64_t) p[i] << (8 * i);
        }

        name.len = p[8] | (p[9] << 8);
        p += 10;

        if ((size_t) (last - p) < name.len) {
            break;
        }

        name.data = p;
        p += name.len;

        if (ngx_do_alarm_store(t, &name, when ? when : 1) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (p != last) {
        ngx_log_error(NGX_LOG_ERR, ngx_do_turn_log(t), 0,
                      "do: the stored alarms of an object of namespace "
                      "\"%V\" are damaged, %uz bytes ignored",
                      &ngx_do_turn_namespace(t)->name, (size_t) (last - p));
    }

    return NGX_OK;
}


static void
ngx_do_alarm_put64(u_char *p, uint64_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < 8; i++) {
        p[i] = (u_char) (n >> (8 * (7 - i)));
    }
}


static uint64_t
ngx_do_alarm_get64(u_char *p)
{
    uint64_t    n;
    ngx_uint_t  i;

    n = 0;

    for (i = 0; i < 8; i++) {
        n = (n << 8) | p[i];
    }

    return n;
}
