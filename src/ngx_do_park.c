
/*
 * Parked calls and wake turns.
 *
 * A turn may leave its call unanswered (a lock waiter): once the turn is
 * committed the call waits in the object's parked queue until a later
 * turn answers it (ngx_do_reply_parked(), released with that turn's
 * commit) or its timer answers it with the status the class chose.  While
 * calls are parked, a wake turn runs a few times a second on state read
 * again from storage, so that what another worker or node did (a lock
 * released there) reaches the calls parked here.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do_object.h"


/*
 * While an object has parked calls it runs a wake turn four times a second
 * (ten while its worker is being replaced), on state read again from
 * storage: another worker may act for the object meanwhile (the old and
 * the new owner during a reload, or another nginx node on the same Redis),
 * and what it does there (a lock released) must reach the calls parked
 * here.  On Redis this is one load per wake.
 */
void
ngx_do_park_wake_handler(ngx_event_t *ev)
{
    ngx_do_object_t  *obj;

    obj = ev->data;

    if (ngx_queue_empty(&obj->parked)) {
        return;
    }

    ngx_add_timer(ev, ngx_exiting ? 100 : 250);

    if (obj->busy || !ngx_queue_empty(&obj->mailbox)) {
        /* the end of the calls before it runs it (they may not re-read) */
        obj->wake_pending = 1;
        return;
    }

    if (ngx_do_park_wake_enqueue(obj) == NGX_OK) {
        ngx_do_turn_mailbox(obj);
    }
}


/* a wake call at the end of the mailbox, on state read again */
ngx_int_t
ngx_do_park_wake_enqueue(ngx_do_object_t *obj)
{
    ngx_do_mail_t  *mail;

    mail = ngx_do_object_mail_get();
    if (mail == NULL) {
        return NGX_ERROR;
    }

    mail->buf = ngx_alloc(1, ngx_cycle->log);
    if (mail->buf == NULL) {
        ngx_do_object_mail_put(mail);
        return NGX_ERROR;
    }

    mail->src = NGX_DO_WAKE_SRC;
    mail->req.kind = NGX_DO_TURN_WAKE;

    if (ngx_do_object_backend->async && !obj->deferred) {
        /* the loaded state is what this worker last saw: read it again */
        ngx_do_cache_drop(obj);
    }

    ngx_queue_insert_tail(&obj->mailbox, &mail->queue);

    return NGX_OK;
}


ngx_int_t
ngx_do_park_wake_turn(ngx_do_turn_t *t)
{
    if (t->obj->ns->class->wake(t) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_do_reply(t, NGX_HTTP_OK, "text/plain", NULL, 0);
}


void
ngx_do_park_timeout(ngx_event_t *ev)
{
    ngx_uint_t        busy;
    ngx_do_park_t    *park;
    ngx_do_mail_t    *mail;
    ngx_do_object_t  *obj;

    park = ev->data;
    obj = park->obj;
    mail = park->mail;

    if (park->reply) {
        /* answered by a turn whose commit is in flight */
        ngx_add_timer(ev, 100);
        return;
    }

    ngx_queue_remove(&park->queue);
    ngx_do_stats->park_timeouts++;

    /*
     * A local caller's handler runs within the reply and may call this
     * object again: such a call waits in the mailbox, and the object
     * cannot go away under us meanwhile.
     */
    busy = obj->busy;
    obj->busy = 1;

    ngx_do_wire_error(mail->src, mail->call_id, park->status, park->msg);
    mail->park = NULL;
    ngx_do_turn_mail_free(mail);
    ngx_free(park);

    obj->busy = busy;

    if (busy) {
        /* the turn in progress finishes the job */
        return;
    }

    if (!ngx_queue_empty(&obj->mailbox)) {
        ngx_do_turn_mailbox(obj);
        return;
    }

    if ((obj->transient || ngx_exiting) && ngx_queue_empty(&obj->parked)) {
        ngx_do_object_close(obj);
    }
}


/*
 * The object goes: its parked calls hear so, or, with follow, are sent
 * where its shard is now (cluster mode), to be run there again
 */
void
ngx_do_park_free_all(ngx_do_object_t *obj, const char *msg,
    ngx_uint_t follow)
{
    ngx_queue_t    *q;
    ngx_do_park_t  *park;

    while (!ngx_queue_empty(&obj->parked)) {
        q = ngx_queue_head(&obj->parked);
        ngx_queue_remove(q);
        park = ngx_queue_data(q, ngx_do_park_t, queue);

        if (park->timer.timer_set) {
            ngx_del_timer(&park->timer);
        }

        if (park->reply) {
            ngx_free(park->reply);
        }

        if (!follow || !ngx_do_object_resend_mail(park->mail)) {
            ngx_do_wire_error(park->mail->src, park->mail->call_id,
                              NGX_HTTP_SERVICE_UNAVAILABLE, msg);
        }

        park->mail->park = NULL;
        ngx_do_turn_mail_free(park->mail);
        ngx_free(park);
    }
}


ngx_int_t
ngx_do_park(ngx_do_turn_t *t, ngx_msec_t timeout, ngx_uint_t status,
    const char *msg)
{
    if (t->mail == NULL
        || (t->mail->req.kind != NGX_DO_TURN_HTTP
            && t->mail->req.kind != NGX_DO_TURN_GATE)
        || t->mail->call_id == 0)
    {
        /* nobody waits for this call's answer */
        return NGX_DECLINED;
    }

    t->park = 1;
    t->park_timeout = timeout ? timeout : 1;
    t->park_status = status;
    t->park_msg = msg;

    return NGX_OK;
}


ngx_do_request_t *
ngx_do_parked_next(ngx_do_turn_t *t, ngx_do_request_t *prev)
{
    ngx_queue_t    *q;
    ngx_do_mail_t  *mail;
    ngx_do_park_t  *park;

    if (prev == NULL) {
        q = ngx_queue_head(&t->obj->parked);

    } else {
        mail = (ngx_do_mail_t *) ((u_char *) prev
                                  - offsetof(ngx_do_mail_t, req));
        q = ngx_queue_next(&mail->park->queue);
    }

    for ( /* void */ ; q != ngx_queue_sentinel(&t->obj->parked);
         q = ngx_queue_next(q))
    {
        park = ngx_queue_data(q, ngx_do_park_t, queue);

        if (park->reply == NULL) {
            return &park->mail->req;
        }
    }

    return NULL;
}


ngx_uint_t
ngx_do_parked_count(ngx_do_turn_t *t)
{
    ngx_uint_t         n;
    ngx_do_request_t  *req;

    n = 0;

    for (req = ngx_do_parked_next(t, NULL); req;
         req = ngx_do_parked_next(t, req))
    {
        n++;
    }

    return n;
}


ngx_int_t
ngx_do_reply_parked(ngx_do_turn_t *t, ngx_do_request_t *req,
    ngx_uint_t status, const char *content_type, ngx_str_t *body)
{
    ngx_str_t        ct, empty;
    ngx_do_mail_t   *mail;
    ngx_do_park_t   *park, **pp;

    mail = (ngx_do_mail_t *) ((u_char *) req - offsetof(ngx_do_mail_t, req));
    park = mail->park;

    if (park == NULL || park->reply) {
        return NGX_DECLINED;
    }

    if (t->answers == NULL) {
        t->answers = ngx_array_create(t->pool, 2, sizeof(ngx_do_park_t *));
        if (t->answers == NULL) {
            t->failed = 1;
            return NGX_ERROR;
        }
    }

    pp = ngx_array_push(t->answers);
    if (pp == NULL) {
        t->failed = 1;
        return NGX_ERROR;
    }

    ngx_str_null(&empty);
    ct.data = (u_char *) content_type;
    ct.len = ngx_strlen(content_type);

    park->reply = ngx_do_wire_reply(t->obj, status, &ct,
                                    body ? body : &empty, 0,
                                    &park->reply_len);
    if (park->reply == NULL) {
        t->answers->nelts--;
        t->failed = 1;
        return NGX_ERROR;
    }

    *pp = park;

    return NGX_OK;
}
