
/*
 * Bucket tables across nodes (cluster mode).  A key's bucket is decided
 * by the one node that holds the shard of the key's ID (idFromName), in
 * its table, as on a single node; the other nodes ask it over the node
 * channel.  So a limit is exact across nodes the way it is across the
 * workers of one node: one read-modify-write under one lock.
 *
 * A take that finds its key's shard held by another node (or by nobody
 * yet) is cold for ngx_do_buckets_take(), and ngx_do_buckets_load() sends
 * it here: a TAKE request (namespace, burst, delay, the key) to the
 * holder, which decides it (loading a cold key from Redis first) and
 * answers the verdict.  While a shard has no holder (it moves, or its
 * holder died and its lease has not run out), the take asks the route
 * again every NGX_DO_BUCKETS_RETRY ms, up to do_call_timeout.  A node
 * that receives a take for a shard it does not hold forwards it once
 * more (the sender's table was a tick late) or waits the same way.  A
 * refund is a one-way REFUND message to the holder.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do.h"
#include "ngx_do_cluster.h"
#include "ngx_do_node.h"
#include "ngx_do_rate_limiter.h"
#include "ngx_do_buckets.h"


#define NGX_DO_BUCKETS_RETRY      20


typedef struct {
    uint32_t                       ns;
    uint32_t                       inspect;
    int64_t                        burst;
    int64_t                        delay;
    uint32_t                       key_len;
    uint32_t                       reserved;
} ngx_do_buckets_ask_t;               /* then the key */


typedef struct {
    int64_t                        rc;
    int64_t                        tat;
    ngx_do_rate_limiter_verdict_t  v;
} ngx_do_buckets_told_t;


/*
 * A take decided by another node for a waiter of this worker (waiters
 * not empty), or by this node for another (reply set).
 */
typedef struct {
    ngx_event_t                    timer;
    ngx_msec_t                     deadline;
    ngx_do_namespace_t            *ns;
    ngx_str_t                      key;
    ngx_uint_t                     shard;
    ngx_uint_t                     hops;
    int64_t                        burst;
    int64_t                        delay;
    ngx_queue_t                    waiters;   /* ngx_do_buckets_wait_t */
    ngx_do_node_reply_t           *reply;
    ngx_do_buckets_wait_t          local;     /* a cold key here */
    unsigned                       inspect:1;
} ngx_do_buckets_remote_t;


static ngx_do_buckets_remote_t *ngx_do_buckets_remote_new(
    ngx_do_namespace_t *ns, ngx_str_t *key, ngx_uint_t shard);
static void ngx_do_buckets_remote_go(ngx_do_buckets_remote_t *rt);
static void ngx_do_buckets_remote_retry(ngx_event_t *ev);
static void ngx_do_buckets_remote_here(ngx_do_buckets_remote_t *rt);
static void ngx_do_buckets_remote_loaded(ngx_do_buckets_wait_t *w);
static ngx_int_t ngx_do_buckets_remote_ask(ngx_do_buckets_remote_t *rt,
    ngx_uint_t peer);
static void ngx_do_buckets_remote_answered(uint64_t id, void *data,
    ngx_uint_t status, u_char *buf, size_t len);
static void ngx_do_buckets_remote_done(ngx_do_buckets_remote_t *rt,
    ngx_int_t rc, int64_t tat, ngx_do_rate_limiter_verdict_t *v);
static void ngx_do_buckets_remote_free(ngx_do_buckets_remote_t *rt);
static void ngx_do_buckets_remote_take(ngx_do_node_reply_t *reply,
    ngx_uint_t peer, ngx_uint_t hops, u_char *buf, size_t len);
static void ngx_do_buckets_remote_refunded(ngx_do_node_reply_t *reply,
    ngx_uint_t peer, ngx_uint_t hops, u_char *buf, size_t len);
static ngx_do_namespace_t *ngx_do_buckets_remote_ns(u_char *buf, size_t len,
    ngx_do_buckets_ask_t **ask, ngx_str_t *key);


static uint32_t                ngx_do_buckets_remote_ids;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_buckets_remote_dumb;


ngx_uint_t
ngx_do_buckets_remote_init(void)
{
    if (ngx_do_cluster == NULL) {
        return 0;
    }

    ngx_do_buckets_remote_dumb.fd = (ngx_socket_t) -1;

    ngx_do_node_handle(NGX_DO_NODE_TAKE, ngx_do_buckets_remote_take);
    ngx_do_node_handle(NGX_DO_NODE_REFUND, ngx_do_buckets_remote_refunded);

    return 1;
}


/* the shard of a key's ID: where its bucket is decided */
ngx_uint_t
ngx_do_buckets_shard(ngx_do_namespace_t *ns, ngx_str_t *key)
{
    u_char  id[NGX_DO_ID_LEN];

    ngx_do_id_from_name(ns, key, id);

    return ngx_do_id_shard(id);
}


/* this node decides the key: not in cluster mode, or it holds the shard */
ngx_uint_t
ngx_do_buckets_here(ngx_do_namespace_t *ns, ngx_str_t *key)
{
    ngx_uint_t  peer;

    return ngx_do_cluster == NULL
           || ngx_do_cluster_route(ngx_do_buckets_shard(ns, key), &peer)
              == NGX_DO_CLUSTER_HERE;
}


/*
 * ngx_do_buckets_load() for a key that another node decides: NGX_OK, w
 * waits; NGX_DECLINED, this node decides it after all; NGX_ERROR.
 */
ngx_int_t
ngx_do_buckets_remote(ngx_do_namespace_t *ns, ngx_str_t *key,
    ngx_do_buckets_wait_t *w)
{
    ngx_uint_t                shard, peer;
    ngx_do_buckets_remote_t  *rt;

    shard = ngx_do_buckets_shard(ns, key);

    if (ngx_do_cluster_route(shard, &peer) == NGX_DO_CLUSTER_HERE) {
        return NGX_DECLINED;
    }

    rt = ngx_do_buckets_remote_new(ns, key, shard);
    if (rt == NULL) {
        return NGX_ERROR;
    }

    rt->burst = w->burst;
    rt->delay = w->delay;
    rt->inspect = w->inspect;

    w->start = ngx_do_status_usec();
    w->load = rt;
    ngx_queue_insert_tail(&rt->waiters, &w->queue);

    ngx_do_buckets_remote_go(rt);

    return NGX_OK;
}


/* a refund for a key that another node decides; NGX_DECLINED: here */
ngx_int_t
ngx_do_buckets_remote_refund(ngx_do_namespace_t *ns, ngx_str_t *key)
{
    u_char                 *buf;
    size_t                  len;
    ngx_uint_t              peer;
    ngx_int_t               route;
    ngx_do_buckets_ask_t   *ask;

    route = ngx_do_cluster_route(ngx_do_buckets_shard(ns, key), &peer);

    if (route == NGX_DO_CLUSTER_HERE) {
        return NGX_DECLINED;
    }

    if (route != NGX_DO_CLUSTER_PEER) {
        /* nobody holds it now: the token stays taken, as limit_req's */
        return NGX_OK;
    }

    len = sizeof(ngx_do_buckets_ask_t) + key->len;

    buf = ngx_alloc(len, ngx_cycle->log);
    if (buf == NULL) {
        return NGX_OK;
    }

    ask = (ngx_do_buckets_ask_t *) buf;
    ngx_memzero(ask, sizeof(ngx_do_buckets_ask_t));
    ask->ns = (uint32_t) ns->index;
    ask->key_len = (uint32_t) key->len;
    ngx_memcpy(buf + sizeof(ngx_do_buckets_ask_t), key->data, key->len);

    if (ngx_do_node_message(peer, NGX_DO_NODE_REFUND, 0, buf, len)
        != NGX_OK)
    {
        ngx_free(buf);
    }

    return NGX_OK;
}


static ngx_do_buckets_remote_t *
ngx_do_buckets_remote_new(ngx_do_namespace_t *ns, ngx_str_t *key,
    ngx_uint_t shard)
{
    ngx_do_buckets_remote_t  *rt;

    rt = ngx_calloc(sizeof(ngx_do_buckets_remote_t) + key->len,
                    ngx_cycle->log);
    if (rt == NULL) {
        return NULL;
    }

    rt->ns = ns;
    rt->key.data = (u_char *) (rt + 1);
    rt->key.len = key->len;
    ngx_memcpy(rt->key.data, key->data, key->len);
    rt->shard = shard;
    rt->deadline = ngx_current_msec + ngx_do_runtime.call_timeout;
    ngx_queue_init(&rt->waiters);

    rt->timer.handler = ngx_do_buckets_remote_retry;
    rt->timer.data = rt;
    rt->timer.log = ngx_cycle->log;
    rt->timer.cancelable = 1;

    return rt;
}


/* where the take goes now: here, to the holder, or a little later */
static void
ngx_do_buckets_remote_go(ngx_do_buckets_remote_t *rt)
{
    ngx_int_t   route;
    ngx_uint_t  peer;

    peer = 0;

    if (rt->reply == NULL && ngx_queue_empty(&rt->waiters)) {
        /* every waiter went away */
        ngx_do_buckets_remote_free(rt);
        return;
    }

    route = ngx_do_cluster ? ngx_do_cluster_route(rt->shard, &peer)
                           : NGX_DO_CLUSTER_HERE;

    ngx_log_debug5(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do buckets \"%V\": take of shard %ui, route %i, "
                   "hops %ui, %M ms left", &rt->ns->name, rt->shard, route,
                   rt->hops, rt->deadline - ngx_current_msec);

    if (route == NGX_DO_CLUSTER_HERE) {
        ngx_do_buckets_remote_here(rt);
        return;
    }

    if (route == NGX_DO_CLUSTER_PEER) {
        if (rt->hops < NGX_DO_NODE_MAX_HOPS) {
            if (ngx_do_buckets_remote_ask(rt, peer) == NGX_OK) {
                return;
            }

            /*
             * the holder cannot be reached yet (a node that just joined
             * is refused until the others' registry has it): again, below
             */

        } else if (rt->reply) {
            /*
             * the last hop, and the tables of the nodes on the way do not
             * agree yet: the node that asked first asks again (503)
             */
            ngx_do_node_reply(rt->reply, NGX_HTTP_SERVICE_UNAVAILABLE,
                              NULL, 0);
            rt->reply = NULL;
            ngx_do_buckets_remote_free(rt);
            return;
        }
    }

    if ((ngx_msec_int_t) (rt->deadline - ngx_current_msec) <= 0) {
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             NGX_DO_LOG_TIMEOUT,
                             "do: rate limiter \"%V\": no node that holds "
                             "shard %ui answered within do_call_timeout",
                             &rt->ns->name, rt->shard);
        ngx_do_buckets_remote_done(rt, NGX_ERROR, 0, NULL);
        return;
    }

    ngx_add_timer(&rt->timer, NGX_DO_BUCKETS_RETRY);
}


static void
ngx_do_buckets_remote_retry(ngx_event_t *ev)
{
    ngx_do_buckets_remote_go(ev->data);
}


/* this node holds the shard: decided in its table, a cold key loaded */
static void
ngx_do_buckets_remote_here(ngx_do_buckets_remote_t *rt)
{
    int64_t                        tat;
    ngx_int_t                      rc;
    ngx_do_rate_limiter_verdict_t  v;

    tat = 0;
    ngx_memzero(&v, sizeof(ngx_do_rate_limiter_verdict_t));

    rc = rt->inspect ? ngx_do_buckets_tat(rt->ns, &rt->key, &tat)
                     : ngx_do_buckets_take(rt->ns, &rt->key, rt->burst,
                                           rt->delay, &v, ngx_cycle->log);

    if (rc != NGX_AGAIN) {
        ngx_do_buckets_remote_done(rt, rc, tat, &v);
        return;
    }

    rt->local.burst = rt->burst;
    rt->local.delay = rt->delay;
    rt->local.inspect = rt->inspect;
    rt->local.handler = ngx_do_buckets_remote_loaded;
    rt->local.data = rt;

    if (ngx_do_buckets_load(rt->ns, &rt->key, &rt->local) != NGX_OK) {
        ngx_do_buckets_remote_done(rt, NGX_ERROR, 0, NULL);
    }
}


static void
ngx_do_buckets_remote_loaded(ngx_do_buckets_wait_t *w)
{
    ngx_do_buckets_remote_t  *rt = w->data;

    ngx_do_buckets_remote_done(rt, w->rc, w->tat, &w->v);
}


static ngx_int_t
ngx_do_buckets_remote_ask(ngx_do_buckets_remote_t *rt, ngx_uint_t peer)
{
    u_char                *buf;
    size_t                 len;
    uint64_t               id;
    ngx_int_t              rc;
    ngx_do_buckets_ask_t  *ask;

    len = sizeof(ngx_do_buckets_ask_t) + rt->key.len;

    buf = ngx_alloc(len, ngx_cycle->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ask = (ngx_do_buckets_ask_t *) buf;
    ngx_memzero(ask, sizeof(ngx_do_buckets_ask_t));
    ask->ns = (uint32_t) rt->ns->index;
    ask->inspect = rt->inspect;
    ask->burst = rt->burst;
    ask->delay = rt->delay;
    ask->key_len = (uint32_t) rt->key.len;
    ngx_memcpy(buf + sizeof(ngx_do_buckets_ask_t), rt->key.data,
               rt->key.len);

    /* apart from the router's call ids, whose top bit is never set */
    id = ((uint64_t) 1 << 63) | ++ngx_do_buckets_remote_ids;

    rc = ngx_do_node_request(peer, NGX_DO_NODE_TAKE, id, rt->hops + 1, buf,
                             len, ngx_do_buckets_remote_answered, rt);
    if (rc != NGX_OK) {
        ngx_free(buf);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_do_buckets_remote_answered(uint64_t id, void *data, ngx_uint_t status,
    u_char *buf, size_t len)
{
    ngx_do_buckets_remote_t  *rt = data;

    ngx_do_buckets_told_t  told;

    if ((status == NGX_HTTP_BAD_GATEWAY
         || status == NGX_HTTP_SERVICE_UNAVAILABLE
         || status == NGX_DO_NODE_UNSENT)
        && (ngx_msec_int_t) (rt->deadline - ngx_current_msec) > 0)
    {
        /* the connection was lost, or the holder was busy: again */
        ngx_free(buf);
        ngx_add_timer(&rt->timer, NGX_DO_BUCKETS_RETRY);
        return;
    }

    if (status != 0 || len != sizeof(ngx_do_buckets_told_t)) {
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             NGX_DO_LOG_IPC,
                             "do: rate limiter \"%V\": the node that holds "
                             "shard %ui did not answer a take (%ui)",
                             &rt->ns->name, rt->shard, status);
        ngx_free(buf);
        ngx_do_buckets_remote_done(rt, NGX_ERROR, 0, NULL);
        return;
    }

    ngx_memcpy(&told, buf, sizeof(ngx_do_buckets_told_t));
    ngx_free(buf);

    ngx_do_buckets_remote_done(rt, (ngx_int_t) told.rc, told.tat, &told.v);
}


/* the take is decided: its waiters here, or the node that asked */
static void
ngx_do_buckets_remote_done(ngx_do_buckets_remote_t *rt, ngx_int_t rc,
    int64_t tat, ngx_do_rate_limiter_verdict_t *v)
{
    uint64_t                now;
    ngx_queue_t            *q;
    ngx_do_buckets_told_t  *told;
    ngx_do_buckets_wait_t  *w;

    if (rt->reply) {
        told = ngx_calloc(sizeof(ngx_do_buckets_told_t), ngx_cycle->log);

        if (told == NULL) {
            ngx_do_node_reply(rt->reply, NGX_HTTP_INTERNAL_SERVER_ERROR,
                              NULL, 0);

        } else {
            told->rc = rc;
            told->tat = tat;

            if (v) {
                told->v = *v;
            }

            ngx_do_node_reply(rt->reply, 0, (u_char *) told,
                              sizeof(ngx_do_buckets_told_t));
        }

        rt->reply = NULL;
        ngx_do_buckets_remote_free(rt);
        return;
    }

    now = ngx_do_status_usec();

    while (!ngx_queue_empty(&rt->waiters)) {
        q = ngx_queue_head(&rt->waiters);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_do_buckets_wait_t, queue);
        w->load = NULL;
        w->rc = rc;
        w->tat = tat;

        if (v) {
            w->v = *v;

        } else {
            ngx_memzero(&w->v, sizeof(ngx_do_rate_limiter_verdict_t));
        }

        ngx_do_status_observe(rt->ns, now - w->start);

        w->handler(w);
    }

    ngx_do_buckets_remote_free(rt);
}


static void
ngx_do_buckets_remote_free(ngx_do_buckets_remote_t *rt)
{
    if (rt->timer.timer_set) {
        ngx_del_timer(&rt->timer);
    }

    if (rt->local.load) {
        ngx_do_buckets_cancel(&rt->local);
    }

    ngx_free(rt);
}


/* another node asks for a take of a key whose shard it thinks we hold */
static void
ngx_do_buckets_remote_take(ngx_do_node_reply_t *reply, ngx_uint_t peer,
    ngx_uint_t hops, u_char *buf, size_t len)
{
    ngx_str_t                 key;
    ngx_do_namespace_t       *ns;
    ngx_do_buckets_ask_t     *ask;
    ngx_do_buckets_remote_t  *rt;

    ns = ngx_do_buckets_remote_ns(buf, len, &ask, &key);

    if (ns == NULL) {
        ngx_free(buf);
        ngx_do_node_reply(reply, NGX_HTTP_BAD_REQUEST, NULL, 0);
        return;
    }

    rt = ngx_do_buckets_remote_new(ns, &key, ngx_do_buckets_shard(ns, &key));

    if (rt == NULL) {
        ngx_free(buf);
        ngx_do_node_reply(reply, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
        return;
    }

    rt->burst = ask->burst;
    rt->delay = ask->delay;
    rt->inspect = ask->inspect ? 1 : 0;
    rt->hops = hops;
    rt->reply = reply;

    ngx_free(buf);

    ngx_do_buckets_remote_go(rt);
}


static void
ngx_do_buckets_remote_refunded(ngx_do_node_reply_t *reply, ngx_uint_t peer,
    ngx_uint_t hops, u_char *buf, size_t len)
{
    ngx_str_t              key;
    ngx_do_namespace_t    *ns;
    ngx_do_buckets_ask_t  *ask;

    ns = ngx_do_buckets_remote_ns(buf, len, &ask, &key);

    if (ns && ngx_do_buckets_here(ns, &key)) {
        ngx_do_buckets_refund(ns, &key);
    }

    ngx_free(buf);

    if (reply) {
        ngx_do_node_reply(reply, 0, NULL, 0);
    }
}


/* a take's or refund's namespace (a rate limiter's) and key, or NULL */
static ngx_do_namespace_t *
ngx_do_buckets_remote_ns(u_char *buf, size_t len, ngx_do_buckets_ask_t **ask,
    ngx_str_t *key)
{
    ngx_do_namespace_t    **nss, *ns;
    ngx_do_buckets_ask_t   *a;

    if (len < sizeof(ngx_do_buckets_ask_t)) {
        return NULL;
    }

    a = (ngx_do_buckets_ask_t *) buf;
    nss = ngx_do_runtime.namespaces->elts;

    if (a->ns >= ngx_do_runtime.namespaces->nelts
        || len != sizeof(ngx_do_buckets_ask_t) + (size_t) a->key_len
        || a->key_len > NGX_DO_BUCKETS_MAX_KEY)
    {
        return NULL;
    }

    ns = nss[a->ns];

    if (ns->class != &ngx_do_rate_limiter_class) {
        return NULL;
    }

    *ask = a;
    key->data = buf + sizeof(ngx_do_buckets_ask_t);
    key->len = a->key_len;

    return ns;
}
