
/*
 * Commits: how a turn's writes reach storage before its reply leaves.
 *
 * On a synchronous backend, or for a deferred object, a turn commits on
 * its own (ngx_do_commit_turn()); on an asynchronous backend the
 * calls waiting in the mailbox run as a group and commit as one batch
 * (ngx_do_commit_group()).  Every commit but a deferred flush carries the
 * version its turns saw: NGX_BUSY means another writer won, and the turns
 * run again on fresh state; nothing was released, so this is safe.  The
 * storage requests of objects (load, commit, flush) are made here.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do_object.h"


static ngx_int_t ngx_do_commit_end(ngx_do_object_t *obj, ngx_do_turn_t *t,
    ngx_int_t rc, uint64_t version);
static void ngx_do_commit_handler(ngx_do_storage_req_t *req);
static void ngx_do_commit_group_run(ngx_do_object_t *obj);
static ngx_int_t ngx_do_commit_group_batch(ngx_do_object_t *obj,
    ngx_pool_t *pool, ngx_do_batch_t *batch);
static void ngx_do_commit_group_done(ngx_do_storage_req_t *req);
static void ngx_do_commit_group_end(ngx_do_object_t *obj, ngx_int_t rc,
    uint64_t version, ngx_do_storage_req_t *fresh);
static ngx_uint_t ngx_do_commit_status(ngx_do_object_t *obj, ngx_int_t rc,
    const char **msg);


/*
 * The second half of a turn on its own (not in a group): its writes go to
 * the dirty list (deferred), nowhere (none), or to storage, and its reply
 * follows in ngx_do_commit_end().  Returns as ngx_do_turn_one().
 */
ngx_int_t
ngx_do_commit_turn(ngx_do_object_t *obj, ngx_do_turn_t *t)
{
    ngx_int_t              rc;
    ngx_do_mail_t         *mail;
    ngx_do_storage_req_t   sreq, *req;

    mail = t->mail;

    if (obj->deferred && !t->batch.clear) {
        if (ngx_do_defer_writes(obj, &t->batch) != NGX_OK) {
            ngx_do_turn_free(t);
            goto failed;
        }

        return ngx_do_commit_end(obj, t, NGX_OK, obj->version);
    }

    if (t->batch.writes.nelts == 0 && !t->batch.clear
        && !t->batch.alarm_set)
    {
        return ngx_do_commit_end(obj, t, NGX_OK, obj->version);
    }

    if (obj->deferred) {
        /* a clear replaces whatever was waiting to be stored */
        ngx_do_defer_free(obj);
        obj->version = NGX_DO_VERSION_ANY;
    }

    if (t->batch.expire == 0) {
        t->batch.expire = obj->expire;
    }

    t->batch.epoch = obj->epoch;

    if (!ngx_do_object_backend->async) {
        rc = ngx_do_object_backend->commit(obj->ns, obj->id, obj->version,
                                           &t->batch, &sreq);

        return ngx_do_commit_end(obj, t, rc, sreq.version);
    }

    req = ngx_do_commit_req_create(obj, ngx_do_commit_handler);
    if (req == NULL) {
        ngx_do_turn_free(t);
        goto failed;
    }

    rc = ngx_do_object_backend->commit(obj->ns, obj->id, obj->version,
                                       &t->batch, req);

    if (rc == NGX_AGAIN) {
        obj->req = req;
        obj->turn = t;
        return NGX_AGAIN;
    }

    ngx_do_commit_req_free(req);

    return ngx_do_commit_end(obj, t, rc, 0);

failed:

    return ngx_do_turn_fail(obj, mail);
}


/*
 * Group commit, for asynchronous backends: the calls waiting in the
 * mailbox run one after the other, each seeing the writes of those before
 * it (applied to the cache at once), and all their writes go to storage as
 * one commit.  Their replies, which may rest on those writes, are held
 * until it is stored (the output gate), then released in order.  A hot
 * object thus pays one round trip per batch of calls, not per call.  A
 * lost race puts the calls back and runs them again on fresh state.  A
 * group of reads only makes the same round trip with an empty commit,
 * which checks the version: a read never returns a value older than a
 * write that was acknowledged before it arrived.
 */
ngx_int_t
ngx_do_commit_group(ngx_do_object_t *obj)
{
    ngx_int_t              rc;
    ngx_pool_t            *pool;
    ngx_do_batch_t         batch;
    ngx_do_storage_req_t  *req;

    ngx_do_commit_group_run(obj);

    if (obj->ngroup == 0) {
        return NGX_OK;
    }

    pool = ngx_do_object_pool_get();
    if (pool == NULL) {
        ngx_do_commit_group_end(obj, NGX_ERROR, 0, NULL);
        return NGX_OK;
    }

    if (ngx_do_commit_group_batch(obj, pool, &batch) != NGX_OK) {
        ngx_do_object_pool_put(pool);
        ngx_do_commit_group_end(obj, NGX_ERROR, 0, NULL);
        return NGX_OK;
    }

    /*
     * A group of reads only stores nothing, but still goes to storage: the
     * empty commit checks the version, so that another worker's or node's
     * acknowledged write is never hidden by this object's cache.
     */

    req = ngx_do_commit_req_create(obj, ngx_do_commit_group_done);

    rc = (req == NULL)
         ? NGX_ERROR
         : ngx_do_object_backend->commit(obj->ns, obj->id, obj->version, &batch,
                                         req);

    ngx_do_object_pool_put(pool);

    if (rc == NGX_AGAIN) {
        obj->req = req;
        return NGX_AGAIN;
    }

    if (req) {
        ngx_do_commit_req_free(req);
    }

    ngx_do_commit_group_end(obj, rc, 0, NULL);

    return NGX_OK;
}


/*
 * Runs the calls of the mailbox into the group, until it is full, the
 * mailbox empty, or a call parks; their writes go to the cache at once.
 */
static void
ngx_do_commit_group_run(ngx_do_object_t *obj)
{
    ngx_int_t        rc;
    ngx_uint_t       i;
    ngx_queue_t     *q;
    ngx_do_turn_t   *t;
    ngx_do_mail_t   *mail;
    ngx_do_write_t  *w;

    while (!ngx_queue_empty(&obj->mailbox)
           && obj->ngroup < (obj->solo ? 1 : NGX_DO_GROUP_MAX)
           && obj->loaded)
    {
        q = ngx_queue_head(&obj->mailbox);
        mail = ngx_queue_data(q, ngx_do_mail_t, queue);
        ngx_queue_remove(q);

        rc = ngx_do_turn_run(obj, mail, obj->ns->class->fetch, &t);

        if (rc != NGX_OK) {
            /* answered already */
            ngx_do_turn_mail_free(mail);
            continue;
        }

        /* the next calls see these writes */
        if (t->batch.clear) {
            ngx_do_cache_drop(obj);
            obj->loaded = 1;
        }

        w = t->batch.writes.elts;

        for (i = 0; i < t->batch.writes.nelts; i++) {
            ngx_do_cache_set(obj, &w[i].key, w[i].delete ? NULL : &w[i].value,
                             0, 1);
        }

        obj->group[obj->ngroup++] = t;

        if (t->park) {
            /*
             * its call joins the parked queue only with the commit: the
             * calls after it must see it there
             */
            break;
        }
    }
}


/* one batch: the last write of a key wins; a clear drops what was before */
static ngx_int_t
ngx_do_commit_group_batch(ngx_do_object_t *obj, ngx_pool_t *pool,
    ngx_do_batch_t *batch)
{
    ngx_uint_t       i, j, n;
    ngx_do_turn_t   *t;
    ngx_do_write_t  *w, *m;

    ngx_memzero(batch, sizeof(ngx_do_batch_t));
    batch->expire = obj->expire;
    batch->epoch = obj->epoch;

    if (ngx_array_init(&batch->writes, pool, 8, sizeof(ngx_do_write_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (n = 0; n < obj->ngroup; n++) {
        t = obj->group[n];

        if (t->batch.clear) {
            batch->clear = 1;
            batch->writes.nelts = 0;
        }

        if (t->batch.alarm_set) {
            /* computed on the state the turns before it left: the last wins */
            batch->alarm_set = 1;
            batch->alarm = t->batch.alarm;
        }

        w = t->batch.writes.elts;

        for (i = 0; i < t->batch.writes.nelts; i++) {
            m = batch->writes.elts;

            for (j = 0; j < batch->writes.nelts; j++) {
                if (m[j].key.len == w[i].key.len
                    && ngx_memcmp(m[j].key.data, w[i].key.data,
                                  w[i].key.len) == 0)
                {
                    break;
                }
            }

            if (j == batch->writes.nelts) {
                m = ngx_array_push(&batch->writes);
                if (m == NULL) {
                    return NGX_ERROR;
                }

            } else {
                m = &m[j];
            }

            *m = w[i];
        }
    }

    return NGX_OK;
}


static void
ngx_do_commit_group_done(ngx_do_storage_req_t *req)
{
    ngx_do_object_t  *obj;

    obj = req->data;

    if (obj == NULL) {
        ngx_do_commit_req_free(req);
        return;
    }

    obj->req = NULL;

    ngx_do_commit_group_end(obj, req->rc, req->version, req);

    ngx_do_commit_req_free(req);

    /*
     * After a few lost races, wait a little before the next try: the
     * winner may hold the claim on the next commit for a while (a worker
     * that gave up or exited), and spinning would only burn the tries.
     */
    if (obj->tries > 4) {
        ngx_add_timer(&obj->retry, ngx_min(obj->tries, 20));
        return;
    }

    ngx_do_turn_continue(obj);
}


void
ngx_do_commit_retry_handler(ngx_event_t *ev)
{
    ngx_do_turn_continue(ev->data);
}


/* the group's commit is decided: release, retry or fail its calls */
static void
ngx_do_commit_group_end(ngx_do_object_t *obj, ngx_int_t rc, uint64_t version,
    ngx_do_storage_req_t *fresh)
{
    ngx_uint_t       i, n, status;
    const char      *msg;
    ngx_do_kv_t     *kv;
    ngx_do_turn_t   *t;
    ngx_do_mail_t   *mail;
    ngx_do_write_t  *w;

    n = obj->ngroup;
    obj->ngroup = 0;

    if (obj->solo) {
        obj->solo--;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do group commit: object %08xD, %ui calls, version %uL, "
                   "rc %i", ngx_do_id_prefix(obj->id), n, version, rc);

    if (rc == NGX_OK) {
        obj->version = version;

        for (i = 0; i < n; i++) {
            t = obj->group[i];

            /* the cache held these under no version: now they have one */
            for (w = t->batch.writes.elts;
                 w < (ngx_do_write_t *) t->batch.writes.elts
                     + t->batch.writes.nelts;
                 w++)
            {
                ngx_do_cache_version(obj, &w->key, version);
            }

            if (t->batch.alarm_set && t->batch.alarm) {
                ngx_do_alarm_scheduled(obj->id, t->batch.alarm);
            }
        }

        for (i = 0; i < n; i++) {
            t = obj->group[i];
            mail = t->mail;
            ngx_do_turn_release(obj, mail, t, version);
            ngx_do_turn_free(t);
            ngx_do_turn_mail_free(mail);
        }

        obj->tries = 0;
        return;
    }

    /* the optimistic cache is wrong now: load again */
    ngx_do_cache_drop(obj);

    if (rc == NGX_BUSY) {
        (void) ngx_do_object_stale(obj, NULL);
    }

    if (rc == NGX_DO_FENCED) {
        /* the shard went: nothing of this tenure is to be trusted */
        ngx_do_object_refresh(obj);
    }

    if (rc == NGX_BUSY && ++obj->tries < NGX_DO_TURN_TRIES) {
        ngx_do_stats->conflicts++;

        if (fresh && fresh->kvs) {
            /* the commit brought the state that won: no load needed */
            kv = fresh->kvs->elts;

            for (i = 0; i < fresh->kvs->nelts; i++) {
                ngx_do_cache_set(obj, &kv[i].key, &kv[i].value,
                                 kv[i].version, 1);
            }

            obj->version = fresh->version;
            obj->loaded = 1;
        }

        goto again;
    }

    if (ngx_do_quota_refused(rc) && n > 1) {
        /* whose writes were too many: each call commits alone, once */
        obj->solo = n;
        goto again;
    }

    if (rc == NGX_DECLINED) {
        ngx_do_stats->storage_full++;
    }

    status = ngx_do_commit_status(obj, rc, &msg);

    ngx_do_status_count(obj->ns, NGX_DO_STAT_COMMIT_FAILURES);

    /* a quota refusal and a fenced commit have their own lines */
    if (!ngx_do_quota_refused(rc) && rc != NGX_DO_FENCED) {
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             rc == NGX_BUSY ? NGX_DO_LOG_BUSY
                             : rc == NGX_DECLINED ? NGX_DO_LOG_FULL
                             : NGX_DO_LOG_UNAVAILABLE,
                             "do: a commit of %ui calls of namespace \"%V\" "
                             "failed%s", n, &obj->ns->name,
                             rc == NGX_BUSY ? " (lost every race)"
                             : rc == NGX_DECLINED ? " (storage is full)" : "");
    }

    for (i = 0; i < n; i++) {
        t = obj->group[i];
        mail = t->mail;
        ngx_do_wire_error(mail->src, mail->call_id, status, msg);
        ngx_do_turn_free(t);
        ngx_do_turn_mail_free(mail);
    }

    obj->tries = 0;

    return;

again:

    /* back to the front of the mailbox, in their order */
    for (i = n; i > 0; i--) {
        t = obj->group[i - 1];
        ngx_queue_insert_head(&obj->mailbox, &t->mail->queue);
        ngx_do_turn_free(t);
    }
}


/*
 * The status and message for the calls of a commit that failed with rc;
 * a quota refusal is counted and logged, once a second at most (a
 * tenant at its quota may well go on trying)
 */
static ngx_uint_t
ngx_do_commit_status(ngx_do_object_t *obj, ngx_int_t rc, const char **msg)
{
    switch (rc) {

    case NGX_DO_QUOTA_BYTES:
    case NGX_DO_QUOTA_OBJECTS:
        *msg = (rc == NGX_DO_QUOTA_BYTES)
               ? "namespace quota max_bytes exceeded"
               : "namespace quota max_objects exceeded";

        ngx_do_stats->quota_exceeded++;

        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0,
                             NGX_DO_LOG_QUOTA,
                             "do: namespace \"%V\": %s, a commit was "
                             "refused", &obj->ns->name,
                             *msg + sizeof("namespace ") - 1);

        return 507;

    case NGX_DECLINED:
        *msg = "storage is full";
        return 507;

    case NGX_DO_FENCED:
        *msg = NGX_DO_MOVED;
        return NGX_HTTP_SERVICE_UNAVAILABLE;

    default:
        *msg = "storage is unavailable";
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }
}


/* the end of a turn, once its writes are stored (or not) */
static ngx_int_t
ngx_do_commit_end(ngx_do_object_t *obj, ngx_do_turn_t *t, ngx_int_t rc,
    uint64_t version)
{
    ngx_uint_t       i, status;
    const char      *msg;
    ngx_do_mail_t   *mail;
    ngx_do_write_t  *w;

    mail = t->mail;

    ngx_log_debug5(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do commit: object %08xD, version %uL, %ui writes%s, "
                   "rc %i", ngx_do_id_prefix(obj->id), version,
                   t->batch.writes.nelts, obj->deferred ? " deferred" : "",
                   rc);

    if (rc == NGX_BUSY) {
        ngx_do_stats->conflicts++;
        ngx_do_cache_drop(obj);
        (void) ngx_do_object_stale(obj, NULL);
        ngx_do_turn_free(t);
        return NGX_BUSY;
    }

    if (rc != NGX_OK) {
        ngx_do_cache_drop(obj);
        ngx_do_turn_free(t);

        if (rc == NGX_DO_FENCED) {
            ngx_do_object_refresh(obj);
        }

        ngx_do_status_count(obj->ns, NGX_DO_STAT_COMMIT_FAILURES);

        if (rc == NGX_DECLINED) {
            ngx_do_stats->storage_full++;
            ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                                 NGX_DO_LOG_FULL,
                                 "do: storage is full, a turn of namespace "
                                 "\"%V\" was not committed", &obj->ns->name);
        }

        status = ngx_do_commit_status(obj, rc, &msg);

        if (mail) {
            ngx_do_wire_error(mail->src, mail->call_id, status, msg);
        }

        return NGX_ERROR;
    }

    if (t->batch.writes.nelts || t->batch.clear) {
        if (!obj->deferred || t->batch.clear) {
            if (t->batch.clear) {
                ngx_do_cache_drop(obj);
                obj->loaded = ngx_do_object_backend->async ? 1 : 0;
            }

            obj->version = version;
            w = t->batch.writes.elts;

            for (i = 0; i < t->batch.writes.nelts; i++) {
                ngx_do_cache_set(obj, &w[i].key,
                                 w[i].delete ? NULL : &w[i].value,
                                 version, 1);
            }
        }
    }

    if (t->batch.alarm_set && t->batch.alarm) {
        ngx_do_alarm_scheduled(obj->id, t->batch.alarm);
    }

    ngx_do_turn_release(obj, mail, t, version);

    ngx_do_turn_free(t);

    return NGX_OK;
}


static void
ngx_do_commit_handler(ngx_do_storage_req_t *req)
{
    ngx_int_t         rc;
    ngx_queue_t      *q;
    ngx_do_mail_t    *mail;
    ngx_do_turn_t    *t;
    ngx_do_object_t  *obj;

    obj = req->data;

    if (obj == NULL) {
        ngx_do_commit_req_free(req);
        return;
    }

    t = obj->turn;
    obj->turn = NULL;
    obj->req = NULL;

    rc = ngx_do_commit_end(obj, t, req->rc, req->version);

    ngx_do_commit_req_free(req);

    if (obj->evicting) {
        obj->evicting = 0;
        obj->busy = 0;

        if (!ngx_queue_empty(&obj->mailbox)) {
            ngx_do_turn_mailbox(obj);

        } else if (rc == NGX_OK || !obj->active) {
            /* evicted, or its memory turned out stale: it goes */
            ngx_do_stats->evictions++;
            ngx_do_status_count(obj->ns, NGX_DO_STAT_EVICTIONS);
            ngx_do_object_close(obj);

        } else {
            ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
        }

        return;
    }

    if (rc == NGX_BUSY && ++obj->tries < NGX_DO_TURN_TRIES) {
        ngx_do_turn_continue(obj);
        return;
    }

    if (!obj->active) {
        if (rc != NGX_OK) {
            ngx_do_object_fail_all(obj, "object activation failed");
            return;
        }

        obj->active = 1;

    } else if (!ngx_queue_empty(&obj->mailbox)) {
        q = ngx_queue_head(&obj->mailbox);
        mail = ngx_queue_data(q, ngx_do_mail_t, queue);

        if (rc == NGX_BUSY) {
            ngx_do_status_count(obj->ns, NGX_DO_STAT_COMMIT_FAILURES);
            ngx_do_wire_error(mail->src, mail->call_id,
                              NGX_HTTP_SERVICE_UNAVAILABLE,
                              "object is busy, try again");
        }

        ngx_queue_remove(q);
        ngx_do_turn_mail_free(mail);
    }

    obj->tries = 0;

    ngx_do_turn_continue(obj);
}


void
ngx_do_commit_req_free(ngx_do_storage_req_t *req)
{
    if (req->pool) {
        ngx_destroy_pool(req->pool);
    }

    ngx_free(req);
}


ngx_do_storage_req_t *
ngx_do_commit_req_create(ngx_do_object_t *obj,
    ngx_do_storage_handler_pt handler)
{
    ngx_do_storage_req_t  *req;

    req = ngx_calloc(sizeof(ngx_do_storage_req_t), ngx_cycle->log);
    if (req == NULL) {
        return NULL;
    }

    req->handler = handler;
    req->data = obj;

    return req;
}
