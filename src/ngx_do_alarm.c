
/*
 * Alarms: scheduled turns.
 *
 * An object's alarms live in its own state, under a reserved key, as a
 * list of (time, name); a turn that changes them also puts the object's
 * earliest time into its shard's alarm index, in the same commit (both
 * backends keep one index per shard, ordered by time).  The worker that
 * owns a shard reads the due part of its index when the shard's next time
 * comes, so that a thousand or a million alarms cost one timer per worker,
 * and reads of the index only for shards with something due.  The times
 * it knows come from its own commits and from reading the index: at
 * start (which finds what came due while nginx was down) and every 30 s
 * (which finds what other workers wrote, during a reload).
 *
 * A due object gets a call like any other: it waits its turn.  The turn
 * removes the due alarms from the list and runs class->alarm for each;
 * its commit stores both, so an alarm is gone only once its handler's
 * work is stored (at least once).  A failed turn is retried after 2 s,
 * 4 s, ... 6 times, then its due alarms are dropped (logged).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do.h"


#define NGX_DO_ALARM_BATCH        256
#define NGX_DO_ALARM_RESCAN       30000
#define NGX_DO_ALARM_RETRY        2000
#define NGX_DO_ALARM_TRIES        6
#define NGX_DO_ALARM_NONE         ((uint64_t) -1)


/* an alarm call in flight or waiting to be retried, by object ID */
typedef struct {
    ngx_do_id_node_t           node;
    ngx_do_namespace_t        *ns;
    ngx_uint_t                 tries;         /* handler failures */
    ngx_uint_t                 outages;       /* storage failures */
    ngx_event_t                retry;
    unsigned                   giveup:1;
} ngx_do_alarm_call_t;


/* one alarm of the list an object stores */
typedef struct {
    ngx_str_t                  name;
    uint64_t                   when;
} ngx_do_alarm_t;


static void ngx_do_alarm_timer_handler(ngx_event_t *ev);
static void ngx_do_alarm_arm(void);
static void ngx_do_alarm_scan(ngx_uint_t shard, uint64_t now);
static void ngx_do_alarm_scanned(ngx_do_storage_req_t *req);
static void ngx_do_alarm_found(ngx_uint_t shard, ngx_do_storage_req_t *req);
static void ngx_do_alarm_retry_handler(ngx_event_t *ev);
static void ngx_do_alarm_free(ngx_do_alarm_call_t *ac);
static ngx_int_t ngx_do_alarm_read(ngx_do_turn_t *t, ngx_array_t **list);
static ngx_int_t ngx_do_alarm_write(ngx_do_turn_t *t, ngx_array_t *list);
static ngx_do_alarm_t *ngx_do_alarm_find(ngx_array_t *list,
    ngx_str_t *name);


static ngx_do_backend_t       *ngx_do_alarm_backend;
static uint64_t                ngx_do_alarm_due[NGX_DO_SHARDS];
static uint64_t                ngx_do_alarm_soon[NGX_DO_SHARDS];
static u_char                  ngx_do_alarm_scanning[NGX_DO_SHARDS];
static ngx_uint_t              ngx_do_alarm_mine[NGX_DO_SHARDS];
static ngx_uint_t              ngx_do_alarm_nmine;
static ngx_event_t             ngx_do_alarm_timer;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_alarm_dumb;
static uint64_t                ngx_do_alarm_armed;
static ngx_rbtree_t            ngx_do_alarm_calls;
static ngx_rbtree_node_t       ngx_do_alarm_sentinel;
static ngx_do_alarm_call_t    *ngx_do_alarm_current;
static ngx_uint_t              ngx_do_alarm_enabled;

static ngx_str_t               ngx_do_alarm_key =
    { sizeof(NGX_DO_ALARM_KEY) - 1, (u_char *) NGX_DO_ALARM_KEY };


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

    if (ngx_do_shard_owner(shard) != (ngx_uint_t) ngx_worker) {
        /* another worker's shard (a reload): its rescan finds it */
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

        if (!ngx_do_alarm_scanning[i] && ngx_do_alarm_due[i] <= now) {
            ngx_do_alarm_scan(i, now);
        }
    }

    ngx_do_alarm_arm();
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

        if (!ngx_do_alarm_scanning[i] && ngx_do_alarm_due[i] < next) {
            next = ngx_do_alarm_due[i];
        }
    }

    if (next == NGX_DO_ALARM_NONE) {
        return;
    }

    if (ngx_do_alarm_timer.timer_set && ngx_do_alarm_armed <= next) {
        return;
    }

    now = ngx_do_now();

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
        ac->node.node.key = ngx_crc32_short(ac->node.id, NGX_DO_ID_LEN);
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
 * The handler of an alarm call's turn: takes the due alarms off the list
 * and runs the class for each, all in this one turn.
 */
ngx_int_t
ngx_do_alarm_fire(ngx_do_turn_t *t)
{
    size_t                n;
    uint64_t              now;
    ngx_int_t             rc;
    ngx_uint_t            i;
    ngx_array_t          *list, due;
    ngx_do_alarm_t       *a, *d;
    ngx_do_class_t       *class;
    ngx_do_alarm_call_t  *ac;
    u_char                esc[NGX_DO_LOG_ESCAPE_LEN];

    ac = ngx_do_turn_alarm_data(t);
    class = ngx_do_turn_namespace(t)->class;

    if (ngx_do_alarm_read(t, &list) != NGX_OK
        || ngx_array_init(&due, ngx_do_turn_pool(t), 4,
                          sizeof(ngx_do_alarm_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    now = ngx_do_now();
    a = list->elts;

    for (i = 0; i < list->nelts; /* void */) {
        if (a[i].when > now) {
            i++;
            continue;
        }

        d = ngx_array_push(&due);
        if (d == NULL) {
            return NGX_ERROR;
        }

        *d = a[i];
        a[i] = a[--list->nelts];
    }

    /* also when nothing was due: the index learns the true next time */
    if (ngx_do_alarm_write(t, list) != NGX_OK) {
        return NGX_ERROR;
    }

    d = due.elts;

    for (i = 0; i < due.nelts; i++) {

        if (ac->giveup) {
            n = ngx_do_log_escape(esc, sizeof(esc), d[i].name.data,
                                  d[i].name.len);
            ngx_log_error(NGX_LOG_ERR, ngx_do_turn_log(t), 0,
                          "do: alarm \"%*s\" of namespace \"%V\" dropped "
                          "after %d retries", n, esc,
                          &ngx_do_turn_namespace(t)->name,
                          NGX_DO_ALARM_TRIES);
            continue;
        }

        if (class->alarm == NULL) {
            continue;
        }

        ngx_do_alarm_current = ac;
        rc = class->alarm(t, &d[i].name);
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
    ngx_uint_t       i;
    ngx_array_t     *list;
    ngx_do_alarm_t  *a;

    if (ngx_do_alarm_read(t, &list) != NGX_OK) {
        return NGX_ERROR;
    }

    *when = 0;
    a = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (*when == 0 || a[i].when < *when) {
            *when = a[i].when;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_do_set_alarm(ngx_do_turn_t *t, ngx_str_t *name, uint64_t when)
{
    ngx_array_t     *list;
    ngx_do_alarm_t  *a;

    if (ngx_do_turn_namespace(t)->class->deferred) {
        return NGX_ERROR;
    }

    if (name->len > NGX_DO_ALARM_MAX_NAME) {
        return NGX_DECLINED;
    }

    if (ngx_do_alarm_read(t, &list) != NGX_OK) {
        return NGX_ERROR;
    }

    a = ngx_do_alarm_find(list, name);

    if (a == NULL) {
        a = ngx_array_push(list);
        if (a == NULL) {
            return NGX_ERROR;
        }

        a->name = *name;
    }

    /* 0 means "none" in the index: the past is the past */
    a->when = when ? when : 1;

    return ngx_do_alarm_write(t, list);
}


ngx_int_t
ngx_do_get_alarm(ngx_do_turn_t *t, ngx_str_t *name, uint64_t *when)
{
    ngx_array_t     *list;
    ngx_do_alarm_t  *a;

    if (ngx_do_alarm_read(t, &list) != NGX_OK) {
        return NGX_ERROR;
    }

    a = ngx_do_alarm_find(list, name);

    if (a == NULL) {
        return NGX_DECLINED;
    }

    *when = a->when;

    return NGX_OK;
}


ngx_int_t
ngx_do_delete_alarm(ngx_do_turn_t *t, ngx_str_t *name)
{
    ngx_array_t     *list;
    ngx_do_alarm_t  *a, *last;

    if (ngx_do_alarm_read(t, &list) != NGX_OK) {
        return NGX_ERROR;
    }

    a = ngx_do_alarm_find(list, name);

    if (a == NULL) {
        return NGX_DECLINED;
    }

    last = (ngx_do_alarm_t *) list->elts + list->nelts - 1;
    *a = *last;
    list->nelts--;

    if (ngx_do_alarm_write(t, list) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_do_alarm_t *
ngx_do_alarm_find(ngx_array_t *list, ngx_str_t *name)
{
    ngx_uint_t       i;
    ngx_do_alarm_t  *a;

    a = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (a[i].name.len == name->len
            && ngx_memcmp(a[i].name.data, name->data, name->len) == 0)
        {
            return &a[i];
        }
    }

    return NULL;
}


/*
 * The stored list: for each alarm 8 bytes of time and 2 of name length
 * (little-endian), then the name.  Names point into the turn's copy.
 */
static ngx_int_t
ngx_do_alarm_read(ngx_do_turn_t *t, ngx_array_t **list)
{
    u_char          *p, *last;
    uint64_t         version, when;
    ngx_int_t        rc;
    ngx_str_t        value;
    ngx_uint_t       i, len;
    ngx_do_alarm_t  *a;

    *list = ngx_array_create(ngx_do_turn_pool(t), 4, sizeof(ngx_do_alarm_t));
    if (*list == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_do_get(t, &ngx_do_alarm_key, &value, &version);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    p = value.data;
    last = p + value.len;

    while (last - p >= 10) {
        when = 0;

        for (i = 0; i < 8; i++) {
            when |= (uint64_t) p[i] << (8 * i);
        }

        len = p[8] | (p[9] << 8);
        p += 10;

        if ((size_t) (last - p) < len) {
            break;
        }

        a = ngx_array_push(*list);
        if (a == NULL) {
            return NGX_ERROR;
        }

        a->when = when;
        a->name.data = p;
        a->name.len = len;
        p += len;
    }

    if (p != last) {
        ngx_log_error(NGX_LOG_ERR, ngx_do_turn_log(t), 0,
                      "do: the stored alarms of an object of namespace "
                      "\"%V\" are damaged, %uz bytes ignored",
                      &ngx_do_turn_namespace(t)->name, (size_t) (last - p));
    }

    return NGX_OK;
}


static ngx_int_t
ngx_do_alarm_write(ngx_do_turn_t *t, ngx_array_t *list)
{
    u_char          *p;
    size_t           len;
    ngx_int_t        rc;
    ngx_str_t        value;
    ngx_uint_t       i, j;
    ngx_do_alarm_t  *a;

    ngx_do_turn_alarms_changed(t);

    a = list->elts;

    if (list->nelts == 0) {
        rc = ngx_do_delete_reserved(t, &ngx_do_alarm_key);
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    len = 0;

    for (i = 0; i < list->nelts; i++) {
        len += 10 + a[i].name.len;
    }

    p = ngx_pnalloc(ngx_do_turn_pool(t), len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = len;

    for (i = 0; i < list->nelts; i++) {
        for (j = 0; j < 8; j++) {
            *p++ = (u_char) (a[i].when >> (8 * j));
        }

        *p++ = (u_char) (a[i].name.len & 0xff);
        *p++ = (u_char) (a[i].name.len >> 8);
        p = ngx_cpymem(p, a[i].name.data, a[i].name.len);
    }

    /* NGX_DECLINED: more alarms than the namespace's max_value holds */
    return ngx_do_put_reserved(t, &ngx_do_alarm_key, &value);
}
