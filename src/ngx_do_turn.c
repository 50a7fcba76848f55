
/*
 * The mailbox and its turns.
 *
 * Every call for an object goes into the object's mailbox; the object
 * runs one call at a time (a turn), so no two turns of one object overlap
 * in this worker.  A turn reads through the object's cache, buffers its
 * writes, and at its end the writes are committed as one batch
 * (ngx_do_commit.c); the reply is released only after the commit
 * succeeded (the output gate).  A failed commit discards the reply and
 * drops the cache, so the next turn reads storage again.
 *
 * Each turn first checks that the object's version in storage is the one
 * its cache was filled at, and each commit is conditional on that
 * version: when two workers act for one object (old and new workers
 * overlap during a reload), the loser's turn is run again on fresh state,
 * so no acknowledged write is ever lost.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do_object.h"
#include "ngx_do_cluster.h"


static void ngx_do_turn_broadcast(ngx_do_object_t *obj, ngx_do_turn_t *t);
static ngx_int_t ngx_do_turn_ready(ngx_do_object_t *obj);
static ngx_do_turn_handler_pt ngx_do_turn_handler(ngx_do_object_t *obj,
    ngx_do_mail_t *mail);
static ngx_int_t ngx_do_turn_alarm_index(ngx_do_turn_t *t);


/*
 * Runs the mailbox until it is empty.  Activation (an asynchronous
 * backend's load, then the class's init) runs first and alone, like
 * blockConcurrencyWhile: calls that arrive meanwhile wait in the mailbox.
 * Whenever storage must answer first, this returns with the object busy,
 * and the storage handler continues here.
 */
void
ngx_do_turn_mailbox(ngx_do_object_t *obj)
{
    if (obj->busy) {
        return;
    }

    obj->busy = 1;
    obj->closing = 0;

    ngx_do_turn_continue(obj);
}


void
ngx_do_turn_continue(ngx_do_object_t *obj)
{
    ngx_int_t       rc;
    ngx_queue_t    *q;
    ngx_do_mail_t  *mail;

    for ( ;; ) {

        rc = ngx_do_turn_ready(obj);

        if (rc == NGX_AGAIN) {
            return;
        }

        if (rc == NGX_DECLINED) {
            continue;
        }

        if (ngx_queue_empty(&obj->mailbox)) {
            if (obj->wake_pending && !ngx_queue_empty(&obj->parked)) {
                obj->wake_pending = 0;

                if (ngx_do_park_wake_enqueue(obj) == NGX_OK) {
                    continue;
                }
            }

            break;
        }

        if (ngx_do_object_backend->async && !obj->deferred) {
            if (ngx_do_commit_group(obj) == NGX_AGAIN) {
                return;
            }

            continue;
        }

        q = ngx_queue_head(&obj->mailbox);
        mail = ngx_queue_data(q, ngx_do_mail_t, queue);

        rc = ngx_do_turn_one(obj, mail, obj->ns->class->fetch);

        if (rc == NGX_AGAIN) {
            return;
        }

        if (rc == NGX_BUSY) {
            if (++obj->tries < NGX_DO_TURN_TRIES) {
                continue;
            }

            ngx_do_status_count(obj->ns, NGX_DO_STAT_COMMIT_FAILURES);
            ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0,
                                 NGX_DO_LOG_BUSY,
                                 "do: a turn of namespace \"%V\" lost %ui "
                                 "commit races", &obj->ns->name, obj->tries);
            ngx_do_wire_error(mail->src, mail->call_id,
                              NGX_HTTP_SERVICE_UNAVAILABLE,
                              "object is busy, try again");
        }

        obj->tries = 0;
        ngx_queue_remove(q);
        ngx_do_turn_mail_free(mail);
    }

    obj->busy = 0;

    if ((obj->transient || ngx_exiting
         || (obj->ns->class->deferred && ngx_do_handover_old()))
        && ngx_queue_empty(&obj->parked))
    {
        ngx_do_object_close(obj);
        return;
    }

    ngx_add_timer(&obj->idle, ngx_do_object_idle_time(obj));
}


/*
 * Makes the object ready for its next call: placed, back to deferred
 * durability once the older workers are gone, loaded, initialized.
 * NGX_OK: ready; NGX_DECLINED: init lost a commit race, ask again;
 * NGX_AGAIN: stop here (storage or the shard's hold answers later, or the
 * waiting calls were failed).
 */
static ngx_int_t
ngx_do_turn_ready(ngx_do_object_t *obj)
{
    ngx_int_t  rc;

    if (!obj->placed && ngx_do_object_place(obj) == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (obj->held && !obj->deferred && obj->ngroup == 0
        && !ngx_do_handover_overlap() && !ngx_do_handover_old()
        && ngx_do_handover_deferred(obj->id) == NGX_OK)
    {
        /*
         * The older workers are gone: back to deferred durability,
         * which trusts memory from now on.  So memory is read again
         * first: an old worker may have committed since the last
         * strict turn here.
         */
        ngx_do_object_refresh(obj);
        obj->deferred = 1;
    }

    if (ngx_do_cluster && obj->ngroup == 0
        && ngx_do_object_epoch(obj) == NGX_AGAIN)
    {
        return NGX_AGAIN;
    }

    if (ngx_do_object_backend->async && !obj->loaded) {
        obj->req = ngx_do_commit_req_create(obj, ngx_do_object_loaded);

        rc = (obj->req == NULL)
             ? NGX_ERROR
             : ngx_do_object_backend->load(obj->ns, obj->id, obj->req);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (obj->req) {
            ngx_free(obj->req);
            obj->req = NULL;
        }

        ngx_do_object_fail_all(obj, "storage is unavailable");
        return NGX_AGAIN;
    }

    if (obj->active) {
        return NGX_OK;
    }

    if (obj->ns->class->init) {
        rc = ngx_do_turn_one(obj, NULL, obj->ns->class->init);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc == NGX_BUSY && ++obj->tries < NGX_DO_TURN_TRIES) {
            return NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                                 NGX_DO_LOG_HANDLER,
                                 "do: activation of an object of namespace "
                                 "\"%V\" failed", &obj->ns->name);
            ngx_do_object_fail_all(obj, "object activation failed");
            return NGX_AGAIN;
        }
    }

    obj->active = 1;
    obj->tries = 0;

    return NGX_OK;
}


/*
 * One turn: validate the cache against storage (synchronous backends),
 * run the handler, commit, release the reply.  NGX_OK or NGX_ERROR: done
 * (a reply went out); NGX_BUSY: the commit lost a race with another writer
 * and the turn must run again on fresh state (nothing was released, so
 * this is safe); NGX_AGAIN: the commit is in flight.
 */
ngx_int_t
ngx_do_turn_one(ngx_do_object_t *obj, ngx_do_mail_t *mail,
    ngx_int_t (*handler)(ngx_do_turn_t *t))
{
    ngx_int_t       rc;
    ngx_do_turn_t  *t;

    rc = ngx_do_turn_run(obj, mail, handler, &t);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_do_commit_turn(obj, t);
}


/* a turn that could not run: the cache may be stale, the caller hears 503 */
ngx_int_t
ngx_do_turn_fail(ngx_do_object_t *obj, ngx_do_mail_t *mail)
{
    ngx_do_cache_drop(obj);

    if (mail) {
        ngx_do_wire_error(mail->src, mail->call_id,
                          NGX_HTTP_SERVICE_UNAVAILABLE,
                          "object is busy, try again");
    }

    return NGX_ERROR;
}


char *
ngx_do_turn_kind_name(ngx_uint_t kind)
{
    static char  *names[] = { "http", "gate", "notice", "alarm", "wake",
                              "ws open", "ws message", "ws close" };

    return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}


/* what runs a call's turn, by the call's kind */
static ngx_do_turn_handler_pt
ngx_do_turn_handler(ngx_do_object_t *obj, ngx_do_mail_t *mail)
{
    switch (mail->req.kind) {

    case NGX_DO_TURN_ALARM:
        return ngx_do_alarm_fire;

    case NGX_DO_TURN_WAKE:
        return ngx_do_park_wake_turn;

    case NGX_DO_TURN_WS_OPEN:
        return obj->ns->class->ws_open;

    case NGX_DO_TURN_WS_MESSAGE:
        return obj->ns->class->ws_message;

    case NGX_DO_TURN_WS_CLOSE:
        return obj->ns->class->ws_close;

    default: /* NGX_DO_TURN_HTTP, NGX_DO_TURN_GATE, NGX_DO_TURN_NOTICE */
        return obj->ns->class->fetch;
    }
}


/*
 * The first half of a turn: the handler, with its reply held.  NGX_OK
 * with *tp (writes in (*tp)->batch), NGX_DECLINED (an evict that keeps
 * the object), or NGX_ERROR (the call got its error reply).
 */
ngx_int_t
ngx_do_turn_run(ngx_do_object_t *obj, ngx_do_mail_t *mail,
    ngx_int_t (*handler)(ngx_do_turn_t *t), ngx_do_turn_t **tp)
{
    uint64_t               version, alarm;
    ngx_int_t              rc;
    ngx_pool_t            *pool;
    ngx_do_turn_t         *t;

    ngx_do_stats->turns++;

    obj->no_alarms = 0;

    /*
     * A deferred-durability object trusts its memory: its writes reach
     * storage later, so storage cannot tell it anything newer.  An
     * asynchronous backend's objects trust their loaded state and find out
     * at commit time.
     */
    if (!obj->deferred && !ngx_do_object_backend->async) {
        if (ngx_do_object_backend->version(obj->id, &version, &alarm)
            != NGX_OK)
        {
            goto failed;
        }

        obj->no_alarms = (alarm == 0);

        if (version != obj->version) {
            ngx_do_cache_drop(obj);
            obj->version = version;

            if (ngx_do_object_stale(obj, handler)) {
                return NGX_BUSY;
            }
        }
    }

    pool = ngx_do_object_pool_get();
    if (pool == NULL) {
        goto failed;
    }

    t = ngx_pcalloc(pool, sizeof(ngx_do_turn_t));
    if (t == NULL
        || ngx_array_init(&t->batch.writes, pool, 4, sizeof(ngx_do_write_t))
           != NGX_OK)
    {
        ngx_do_object_pool_put(pool);
        goto failed;
    }

    t->pool = pool;
    t->obj = obj;
    t->mail = mail;

    if (mail) {
        handler = ngx_do_turn_handler(obj, mail);

        /* a WebSocket message or close needs no reply of the class */
        if (mail->req.kind == NGX_DO_TURN_WS_MESSAGE
            || mail->req.kind == NGX_DO_TURN_WS_CLOSE)
        {
            t->status = NGX_HTTP_OK;
            t->replied = 1;
        }
    }

    t->handler = handler;

    if (handler == NULL) {
        ngx_do_turn_free(t);
        goto failed;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do turn start: object %08xD of \"%V\", %s, call %uL",
                   ngx_do_id_prefix(obj->id), &obj->ns->name,
                   mail ? ngx_do_turn_kind_name(mail->req.kind)
                        : (handler == obj->ns->class->init ? "init"
                                                           : "evict"),
                   mail ? mail->call_id : 0);

    rc = handler(t);

    ngx_log_debug5(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do turn end: object %08xD, rc %i, status %ui, "
                   "%ui writes%s", ngx_do_id_prefix(obj->id), rc, t->status,
                   t->batch.writes.nelts, t->park ? ", parked" : "");

    if (rc == NGX_OK && t->alarms && !t->failed) {
        rc = ngx_do_turn_alarm_index(t);
    }

    if (rc == NGX_DECLINED && mail == NULL) {
        ngx_do_turn_free(t);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK || t->failed || (mail && !t->replied && !t->park)) {
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             NGX_DO_LOG_HANDLER,
                             "do: a handler of namespace \"%V\" failed",
                             &obj->ns->name);
        ngx_do_cache_drop(obj);
        ngx_do_turn_free(t);

        if (mail) {
            ngx_do_wire_error(mail->src, mail->call_id,
                              NGX_HTTP_INTERNAL_SERVER_ERROR,
                              "object handler failed");
        }

        return NGX_ERROR;
    }

    *tp = t;

    return NGX_OK;

failed:

    return ngx_do_turn_fail(obj, mail);
}


/* a call that its object drops unrun: another worker's caller hears 503 */
void
ngx_do_turn_mail_abandon(ngx_do_mail_t *mail)
{
    if (mail->src < ngx_do_runtime.workers && mail->src != ngx_worker) {
        ngx_do_wire_error(mail->src, mail->call_id,
                          NGX_HTTP_SERVICE_UNAVAILABLE,
                          "owner worker is exiting");
    }

    ngx_do_turn_mail_free(mail);
}


/*
 * What a committed turn lets out: its call's reply (or the call goes to
 * the parked queue), and the answers it gave parked calls.
 */
void
ngx_do_turn_release(ngx_do_object_t *obj, ngx_do_mail_t *mail,
    ngx_do_turn_t *t, uint64_t version)
{
    ngx_uint_t      i;
    ngx_do_park_t  *park, **pp;

    if (t->answers) {
        pp = t->answers->elts;

        for (i = 0; i < t->answers->nelts; i++) {
            park = pp[i];
            ngx_queue_remove(&park->queue);

            if (park->timer.timer_set) {
                ngx_del_timer(&park->timer);
            }

            ngx_do_wire_deliver(park->mail->src, park->mail->call_id,
                                park->reply, park->reply_len);
            park->mail->park = NULL;
            ngx_do_turn_mail_free(park->mail);
            ngx_free(park);
        }

        t->answers->nelts = 0;
    }

    if (mail == NULL) {
        ngx_do_turn_broadcast(obj, t);
        return;
    }

    switch (mail->req.kind) {

    case NGX_DO_TURN_ALARM:
        ngx_do_turn_broadcast(obj, t);
        ngx_do_alarm_done((void *) (uintptr_t) mail->call_id, t->status);
        return;

    case NGX_DO_TURN_WAKE:
        ngx_do_turn_broadcast(obj, t);
        return;

    default:
        break;
    }

    if (!t->park) {
        ngx_do_wire_send(obj, mail, t, version);
        ngx_do_turn_broadcast(obj, t);
        return;
    }

    ngx_do_turn_broadcast(obj, t);

    park = ngx_calloc(sizeof(ngx_do_park_t), ngx_cycle->log);
    if (park == NULL) {
        ngx_do_wire_error(mail->src, mail->call_id,
                          NGX_HTTP_SERVICE_UNAVAILABLE, "out of memory");
        return;
    }

    park->mail = mail;
    park->obj = obj;
    park->status = t->park_status;
    park->msg = t->park_msg;
    park->timer.handler = ngx_do_park_timeout;
    park->timer.data = park;
    park->timer.log = ngx_cycle->log;

    /* not cancelable: a worker being replaced stays until it answered */

    mail->park = park;
    ngx_queue_insert_tail(&obj->parked, &park->queue);
    ngx_do_stats->parked++;
    ngx_add_timer(&park->timer, t->park_timeout);

    if (!obj->wake.timer_set && obj->ns->class->wake) {
        ngx_add_timer(&obj->wake, ngx_exiting ? 100 : 250);
    }
}


/* after the turn's reply: its messages to the object's WebSockets */
static void
ngx_do_turn_broadcast(ngx_do_object_t *obj, ngx_do_turn_t *t)
{
    ngx_uint_t            i;
    ngx_do_turn_cast_t   *cast;

    if (t->casts == NULL) {
        return;
    }

    cast = t->casts->elts;

    for (i = 0; i < t->casts->nelts; i++) {
        (void) ngx_do_fanout_send(obj->ns, obj->id, cast[i].seq,
                                  &cast[i].frame);
    }

    t->casts->nelts = 0;
}


/*
 * a turn that ends: answers it gave to parked calls but never sent are
 * void, and so is a reply built in place that was not sent
 */
void
ngx_do_turn_free(ngx_do_turn_t *t)
{
    ngx_uint_t      i;
    ngx_do_park_t  **pp;

    if (t->answers) {
        pp = t->answers->elts;

        for (i = 0; i < t->answers->nelts; i++) {
            ngx_free(pp[i]->reply);
            pp[i]->reply = NULL;
        }
    }

    if (t->wire) {
        ngx_free(t->wire);
    }

    ngx_do_object_pool_put(t->pool);
}


void
ngx_do_turn_mail_free(ngx_do_mail_t *mail)
{
    if (mail->park) {
        return;
    }

    ngx_free(mail->buf);
    ngx_do_object_mail_put(mail);
}


/* the turn changed alarms: its commit puts the next one in the index */
static ngx_int_t
ngx_do_turn_alarm_index(ngx_do_turn_t *t)
{
    uint64_t  when;

    if (ngx_do_alarm_next(t, &when) != NGX_OK) {
        return NGX_ERROR;
    }

    t->batch.alarm = when;
    t->batch.alarm_set = 1;

    return NGX_OK;
}
