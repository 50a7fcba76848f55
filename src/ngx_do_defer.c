
/*
 * Deferred durability, for classes that trade a short window of loss for
 * speed (the rate limiter): a turn's writes go into the object's dirty
 * list and its cache, its reply leaves at once, and a flush within
 * do_flush_interval stores the list unconditionally (last writer wins).
 * Only the worker that holds the object's shard defers (see
 * ngx_do_handover.c).  A flush that fails keeps the writes for another
 * try, and an object closes only once they are stored.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do_object.h"


static ngx_int_t ngx_do_defer_flush_done(ngx_do_object_t *obj,
    ngx_int_t rc);
static void ngx_do_defer_flushed(ngx_do_storage_req_t *req);


/*
 * Deferred durability: the turn's writes go into the object's dirty list
 * (the last write of a key wins) and into its cache; the reply is released
 * at once, and a flush within do_flush_interval stores them.
 */
ngx_int_t
ngx_do_defer_writes(ngx_do_object_t *obj, ngx_do_batch_t *batch)
{
    u_char          *p;
    ngx_uint_t       i;
    ngx_do_dirty_t  *d, *old, **dp;
    ngx_do_write_t  *w;

    w = batch->writes.elts;

    for (i = 0; i < batch->writes.nelts; i++) {

        for (dp = &obj->dirty, old = obj->dirty; old; old = old->next) {
            if (old->key.len == w[i].key.len
                && ngx_memcmp(old->key.data, w[i].key.data, w[i].key.len)
                   == 0)
            {
                break;
            }

            dp = &old->next;
        }

        if (old && old->value.len == w[i].value.len) {
            (void) ngx_do_cpymem(old->value.data, w[i].value.data,
                                 w[i].value.len);
            old->delete = w[i].delete;
            goto cache;
        }

        /* the new entry first: out of memory leaves the old one intact */
        d = ngx_alloc(sizeof(ngx_do_dirty_t) + w[i].key.len + w[i].value.len,
                      ngx_cycle->log);
        if (d == NULL) {
            return NGX_ERROR;
        }

        if (old) {
            *dp = old->next;
            ngx_free(old);
        }

        p = (u_char *) (d + 1);
        d->key.data = p;
        d->key.len = w[i].key.len;
        p = ngx_cpymem(p, w[i].key.data, w[i].key.len);
        d->value.data = p;
        d->value.len = w[i].value.len;
        (void) ngx_do_cpymem(p, w[i].value.data, w[i].value.len);
        d->delete = w[i].delete;

        d->next = obj->dirty;
        obj->dirty = d;

    cache:

        ngx_do_cache_set(obj, &w[i].key, w[i].delete ? NULL : &w[i].value,
                         0, 1);
    }

    if (obj->dirty && !obj->flush.timer_set) {
        ngx_add_timer(&obj->flush, ngx_do_runtime.flush_interval);
    }

    return NGX_OK;
}


/*
 * Stores the dirty list unconditionally (deferred state is last-writer-
 * wins).  The list moves to flushing while storage works, so that turns go
 * on writing to a fresh one.  NGX_OK, NGX_AGAIN (in flight) or NGX_ERROR
 * (the writes stay for another try).
 */
ngx_int_t
ngx_do_defer_flush(ngx_do_object_t *obj)
{
    ngx_int_t              rc;
    ngx_pool_t            *pool;
    ngx_do_batch_t         batch;
    ngx_do_dirty_t        *d;
    ngx_do_write_t        *w;
    ngx_do_storage_req_t   sreq, *req;

    if (obj->flushing) {
        return NGX_AGAIN;
    }

    if (obj->dirty == NULL) {
        return NGX_OK;
    }

    pool = ngx_do_object_pool_get();
    if (pool == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&batch, sizeof(ngx_do_batch_t));
    batch.expire = obj->expire;
    batch.epoch = obj->epoch;

    if (ngx_array_init(&batch.writes, pool, 4, sizeof(ngx_do_write_t))
        != NGX_OK)
    {
        ngx_do_object_pool_put(pool);
        return NGX_ERROR;
    }

    for (d = obj->dirty; d; d = d->next) {
        w = ngx_array_push(&batch.writes);
        if (w == NULL) {
            ngx_do_object_pool_put(pool);
            return NGX_ERROR;
        }

        w->key = d->key;
        w->value = d->value;
        w->delete = d->delete;
    }

    obj->flushing = obj->dirty;
    obj->dirty = NULL;

    if (!ngx_do_object_backend->async) {
        rc = ngx_do_object_backend->commit(obj->ns, obj->id, NGX_DO_VERSION_ANY,
                                           &batch, &sreq);
        ngx_do_object_pool_put(pool);

        if (rc == NGX_OK) {
            obj->version = sreq.version;
        }

        return ngx_do_defer_flush_done(obj, rc);
    }

    req = ngx_do_commit_req_create(obj, ngx_do_defer_flushed);

    rc = (req == NULL) ? NGX_ERROR
                       : ngx_do_object_backend->commit(obj->ns, obj->id,
                                                       NGX_DO_VERSION_ANY,
                                                       &batch, req);
    ngx_do_object_pool_put(pool);

    if (rc == NGX_AGAIN) {
        obj->flush_req = req;
        return NGX_AGAIN;
    }

    if (req) {
        ngx_do_commit_req_free(req);
    }

    return ngx_do_defer_flush_done(obj, rc);
}


/* what a finished flush leaves: writes made meanwhile win over its own */
static ngx_int_t
ngx_do_defer_flush_done(ngx_do_object_t *obj, ngx_int_t rc)
{
    ngx_do_dirty_t  *d, *n, *newer;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do flush: object %08xD, rc %i",
                   ngx_do_id_prefix(obj->id), rc);

    if (rc == NGX_OK) {
        ngx_do_defer_list_free(obj->flushing);
        obj->flushing = NULL;
        return NGX_OK;
    }

    if (rc == NGX_DO_FENCED) {
        /*
         * the shard went (storage said so, and logged it): these writes
         * and those made since will never be stored, and the memory that
         * holds them is read again before the next call
         */
        ngx_do_defer_list_free(obj->flushing);
        obj->flushing = NULL;
        ngx_do_defer_free(obj);
        ngx_do_object_refresh(obj);
        return NGX_OK;
    }

    /* put back what no later write replaced */
    for (d = obj->flushing; d; d = n) {
        n = d->next;

        for (newer = obj->dirty; newer; newer = newer->next) {
            if (newer->key.len == d->key.len
                && ngx_memcmp(newer->key.data, d->key.data, d->key.len) == 0)
            {
                break;
            }
        }

        if (newer) {
            ngx_free(d);
            continue;
        }

        d->next = obj->dirty;
        obj->dirty = d;
    }

    obj->flushing = NULL;

    if (rc == NGX_DECLINED) {
        ngx_do_stats->storage_full++;
    }

    ngx_do_status_count(obj->ns, NGX_DO_STAT_COMMIT_FAILURES);

    ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                         rc == NGX_DECLINED ? NGX_DO_LOG_FULL
                                            : NGX_DO_LOG_UNAVAILABLE,
                         "do: deferred writes of namespace \"%V\" could not "
                         "be stored%s, will retry", &obj->ns->name,
                         rc == NGX_DECLINED ? " (storage is full)" : "");

    if (!obj->flush.timer_set) {
        ngx_add_timer(&obj->flush, ngx_do_runtime.flush_interval);
    }

    return NGX_ERROR;
}


static void
ngx_do_defer_flushed(ngx_do_storage_req_t *req)
{
    ngx_int_t         rc;
    ngx_do_object_t  *obj;

    obj = req->data;

    if (obj == NULL) {
        ngx_do_commit_req_free(req);
        return;
    }

    obj->flush_req = NULL;

    if (req->rc == NGX_OK) {
        obj->version = req->version;
    }

    rc = ngx_do_defer_flush_done(obj, req->rc);

    ngx_do_commit_req_free(req);

    if (obj->closing) {
        if (obj->busy || !ngx_queue_empty(&obj->mailbox)) {
            /* a call came meanwhile: stay */
            obj->closing = 0;
            return;
        }

        if (rc == NGX_OK && obj->dirty == NULL) {
            ngx_do_object_free(obj);
            return;
        }

        ngx_do_object_close(obj);
        return;
    }

    if (obj->dirty && !obj->flush.timer_set) {
        ngx_add_timer(&obj->flush, ngx_do_runtime.flush_interval);
    }
}


void
ngx_do_defer_flush_handler(ngx_event_t *ev)
{
    (void) ngx_do_defer_flush(ev->data);
}


void
ngx_do_defer_free(ngx_do_object_t *obj)
{
    ngx_do_defer_list_free(obj->dirty);
    obj->dirty = NULL;
}


ngx_do_dirty_t *
ngx_do_defer_find(ngx_do_dirty_t *d, ngx_str_t *key)
{
    for ( /* void */ ; d; d = d->next) {
        if (d->key.len == key->len
            && ngx_memcmp(d->key.data, key->data, key->len) == 0)
        {
            return d;
        }
    }

    return NULL;
}


void
ngx_do_defer_list_free(ngx_do_dirty_t *d)
{
    ngx_do_dirty_t  *n;

    for ( /* void */ ; d; d = n) {
        n = d->next;
        ngx_free(d);
    }
}
