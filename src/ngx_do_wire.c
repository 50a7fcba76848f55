
/*
 * The wire of calls and replies.
 *
 * One byte layout (ngx_do_call_wire_t and ngx_do_reply_wire_t in
 * ngx_do.h) serves a local call and an IPC message alike.  A call that
 * arrives is checked against its own lengths, becomes a mailbox entry and
 * goes to its object; a reply goes back to its caller, in this worker
 * (the router's deliver handler) or over the caller's channel.  Alarm and
 * wake calls have no caller: their answers end here.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do_object.h"


static u_char *ngx_do_wire_build(ngx_do_namespace_t *ns, u_char *id,
    ngx_uint_t kind, ngx_uint_t method, ngx_str_t **in, uint64_t conn,
    size_t *len);


/*
 * A call arrived for an object this worker runs (its own or, with
 * transient set, one it runs once while its workers are being replaced).
 * Takes ownership of buf.
 */
void
ngx_do_wire_receive(ngx_uint_t src, uint64_t call_id, u_char *buf,
    size_t len, ngx_uint_t transient)
{
    u_char               *p;
    size_t                need;
    uint32_t             *part_len;
    ngx_str_t            *part[5];
    ngx_uint_t            i;
    ngx_do_mail_t        *mail;
    ngx_do_object_t      *obj;
    ngx_do_namespace_t  **nss;
    ngx_do_call_wire_t   *w;

    w = (ngx_do_call_wire_t *) buf;

    if (len < sizeof(ngx_do_call_wire_t)) {
        goto invalid;
    }

    need = ngx_do_wire_call_len(w);

    if (need != len || w->ns >= ngx_do_runtime.namespaces->nelts) {
        goto invalid;
    }

    /* alarm and wake calls come from this worker, never over the wire */
    if (w->kind == NGX_DO_TURN_ALARM ? src != NGX_DO_ALARM_SRC
                                     : (w->kind == NGX_DO_TURN_WAKE
                                        || w->kind > NGX_DO_TURN_WS_CLOSE))
    {
        goto invalid;
    }

    mail = ngx_do_object_mail_get();
    if (mail == NULL) {
        ngx_free(buf);
        ngx_do_wire_error(src, call_id, NGX_HTTP_SERVICE_UNAVAILABLE,
                          "out of memory");
        return;
    }

    mail->src = src;
    mail->call_id = call_id;
    mail->buf = buf;
    mail->req.kind = w->kind;
    mail->req.method = w->method;

    /* the strings follow the header in the order of the lengths */
    part[0] = &mail->req.args;
    part[1] = &mail->req.if_match;
    part[2] = &mail->req.if_none_match;
    part[3] = &mail->req.body;
    part[4] = &mail->req.member;
    part_len = &w->args_len;

    p = buf + sizeof(ngx_do_call_wire_t);

    for (i = 0; i < 5; i++) {
        part[i]->data = p;
        part[i]->len = part_len[i];
        p += part_len[i];
    }

    mail->req.conn = w->conn;

    nss = ngx_do_runtime.namespaces->elts;

    ngx_log_debug5(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do call received: call %uL, %s, object %08xD of \"%V\", "
                   "from worker %i", call_id, ngx_do_turn_kind_name(w->kind),
                   ngx_do_id_prefix(w->id), &nss[w->ns]->name,
                   (ngx_int_t) src);

    obj = ngx_do_object_get(w->id, nss[w->ns], transient);
    if (obj == NULL) {
        ngx_free(buf);
        ngx_do_object_mail_put(mail);
        ngx_do_wire_error(src, call_id, NGX_HTTP_SERVICE_UNAVAILABLE,
                          "out of memory");
        return;
    }

    ngx_queue_insert_tail(&obj->mailbox, &mail->queue);

    ngx_do_turn_mailbox(obj);

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "do: malformed call of %uz bytes from worker %ui",
                  len, src);
    ngx_free(buf);
    ngx_do_wire_error(src, call_id, NGX_HTTP_INTERNAL_SERVER_ERROR,
                      "malformed call");
}


/*
 * The wire form of a call (ngx_do_wire_receive() reads it), in memory of
 * ngx_alloc(); NULL strings are empty.
 */
u_char *
ngx_do_wire_call(ngx_do_namespace_t *ns, u_char *id, ngx_uint_t kind,
    ngx_uint_t method, ngx_str_t *args, ngx_str_t *if_match,
    ngx_str_t *if_none_match, ngx_str_t *body, size_t *len)
{
    ngx_str_t  *part[5];

    part[0] = args;
    part[1] = if_match;
    part[2] = if_none_match;
    part[3] = body;
    part[4] = NULL;

    return ngx_do_wire_build(ns, id, kind, method, part, 0, len);
}


/* a WebSocket turn's call: the member and the connection instead of ETags */
u_char *
ngx_do_wire_call_ws(ngx_do_namespace_t *ns, u_char *id, ngx_uint_t kind,
    ngx_uint_t method, ngx_str_t *args, ngx_str_t *member, uint64_t conn,
    ngx_str_t *body, size_t *len)
{
    ngx_str_t  *part[5];

    part[0] = args;
    part[1] = NULL;
    part[2] = NULL;
    part[3] = body;
    part[4] = member;

    return ngx_do_wire_build(ns, id, kind, method, part, conn, len);
}


static u_char *
ngx_do_wire_build(ngx_do_namespace_t *ns, u_char *id, ngx_uint_t kind,
    ngx_uint_t method, ngx_str_t **in, uint64_t conn, size_t *len)
{
    u_char              *buf, *p;
    ngx_str_t            empty, *part[5];
    ngx_uint_t           i;
    ngx_do_call_wire_t  *w;

    ngx_str_null(&empty);

    *len = sizeof(ngx_do_call_wire_t);

    for (i = 0; i < 5; i++) {
        part[i] = in[i] ? in[i] : &empty;
        *len += part[i]->len;
    }

    buf = ngx_alloc(*len, ngx_cycle->log);
    if (buf == NULL) {
        return NULL;
    }

    w = (ngx_do_call_wire_t *) buf;
    w->ns = (uint32_t) ns->index;
    w->kind = (uint32_t) kind;
    w->method = (uint32_t) method;
    w->args_len = (uint32_t) part[0]->len;
    w->if_match_len = (uint32_t) part[1]->len;
    w->if_none_match_len = (uint32_t) part[2]->len;
    w->body_len = (uint32_t) part[3]->len;
    w->member_len = (uint32_t) part[4]->len;
    w->conn = conn;
    ngx_memcpy(w->id, id, NGX_DO_ID_LEN);

    p = buf + sizeof(ngx_do_call_wire_t);

    for (i = 0; i < 5; i++) {
        p = ngx_do_cpymem(p, part[i]->data, part[i]->len);
    }

    return buf;
}


/* an alarm call into the object's mailbox; may finish before it returns */
void
ngx_do_wire_alarm(ngx_do_namespace_t *ns, u_char *id, void *data)
{
    u_char  *buf;
    size_t   len;

    buf = ngx_do_wire_call(ns, id, NGX_DO_TURN_ALARM, 0, NULL, NULL, NULL,
                           NULL, &len);
    if (buf == NULL) {
        ngx_do_alarm_done(data, NGX_HTTP_SERVICE_UNAVAILABLE);
        return;
    }

    ngx_do_wire_receive(NGX_DO_ALARM_SRC, (uintptr_t) data, buf, len, 0);
}


/* the length of a call's wire form, from its header */
size_t
ngx_do_wire_call_len(ngx_do_call_wire_t *w)
{
    return sizeof(ngx_do_call_wire_t) + (size_t) w->args_len
           + w->if_match_len + w->if_none_match_len + w->body_len
           + w->member_len;
}


u_char *
ngx_do_wire_reply(ngx_do_object_t *obj, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body, uint64_t etag, size_t *len)
{
    u_char  *buf;

    buf = ngx_do_wire_reply_alloc(obj, status, content_type, body->len, etag,
                                  len);
    if (buf == NULL) {
        return NULL;
    }

    (void) ngx_do_cpymem(buf + *len - body->len, body->data, body->len);

    return buf;
}


/*
 * A reply's wire form in memory of ngx_alloc(), all but its body, which is
 * the last body_len of the *len bytes
 */
u_char *
ngx_do_wire_reply_alloc(ngx_do_object_t *obj, ngx_uint_t status,
    ngx_str_t *content_type, size_t body_len, uint64_t etag, size_t *len)
{
    u_char               *buf;
    ngx_do_reply_wire_t  *w;

    *len = sizeof(ngx_do_reply_wire_t) + content_type->len + body_len;

    buf = ngx_alloc(*len, ngx_cycle->log);
    if (buf == NULL) {
        return NULL;
    }

    w = (ngx_do_reply_wire_t *) buf;
    w->status = (uint32_t) status;
    w->owner = (uint32_t) ngx_worker;
    w->activation = obj->activation;
    w->etag = etag;
    w->content_type_len = (uint32_t) content_type->len;
    w->body_len = (uint32_t) body_len;

    (void) ngx_do_cpymem(buf + sizeof(ngx_do_reply_wire_t),
                         content_type->data, content_type->len);

    return buf;
}


/* a committed turn's reply: the one it built in place, or a copy of it */
void
ngx_do_wire_send(ngx_do_object_t *obj, ngx_do_mail_t *mail, ngx_do_turn_t *t,
    uint64_t version)
{
    u_char               *buf;
    size_t                len;
    uint64_t              etag;
    ngx_do_reply_wire_t  *w;

    etag = (t->etag == NGX_DO_ETAG_COMMIT) ? version : t->etag;

    if (t->wire) {
        buf = t->wire;
        len = t->wire_len;
        t->wire = NULL;

        w = (ngx_do_reply_wire_t *) buf;
        w->etag = etag;

    } else {
        buf = ngx_do_wire_reply(obj, t->status, &t->content_type, &t->body,
                                etag, &len);
        if (buf == NULL) {
            return;
        }
    }

    ngx_do_wire_deliver(mail->src, mail->call_id, buf, len);
}


/* a reply to its caller: this worker, or another over its channel */
void
ngx_do_wire_deliver(ngx_uint_t src, uint64_t call_id, u_char *buf,
    size_t len)
{
    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do reply sent: call %uL, %uz bytes, %s worker %ui",
                   call_id, len, src == ngx_worker ? "to this" : "over IPC to",
                   src);

    if (src == ngx_worker) {
        ngx_do_object_deliver(call_id, buf, len);
        return;
    }

    if (ngx_do_ipc_send(src, NGX_DO_IPC_REPLY, call_id, buf, len) != NGX_OK) {
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0, NGX_DO_LOG_IPC,
                             "do: reply of %uz bytes to worker %ui could not "
                             "be sent", len, src);
        ngx_free(buf);

        /* a short answer may still pass, and the client is not left hanging */
        ngx_do_wire_error(src, call_id, NGX_HTTP_INTERNAL_SERVER_ERROR,
                          "reply could not be sent");
    }
}


/* a runtime error reply, for calls that no class handler answered */
void
ngx_do_wire_error(ngx_uint_t src, uint64_t call_id, ngx_uint_t status,
    const char *msg)
{
    u_char               *buf, *p;
    size_t                len;
    ngx_do_reply_wire_t  *w;

    if (src == NGX_DO_ALARM_SRC) {
        ngx_do_alarm_done((void *) (uintptr_t) call_id, status);
        return;
    }

    if (src == NGX_DO_WAKE_SRC) {
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "do reply sent: call %uL, error %ui \"%s\"",
                   call_id, status, msg);

    len = sizeof(ngx_do_reply_wire_t) + sizeof("application/json") - 1
          + sizeof("{\"error\":\"\"}\n") - 1 + ngx_strlen(msg);

    buf = ngx_alloc(len, ngx_cycle->log);
    if (buf == NULL) {
        return;
    }

    w = (ngx_do_reply_wire_t *) buf;
    w->status = (uint32_t) status;
    w->owner = (uint32_t) ngx_worker;
    w->activation = 0;
    w->etag = 0;
    w->content_type_len = sizeof("application/json") - 1;
    w->body_len = (uint32_t) (len - sizeof(ngx_do_reply_wire_t)
                              - w->content_type_len);

    p = buf + sizeof(ngx_do_reply_wire_t);
    p = ngx_cpymem(p, "application/json", sizeof("application/json") - 1);
    (void) ngx_sprintf(p, "{\"error\":\"%s\"}\n", msg);

    if (src == ngx_worker) {
        ngx_do_object_deliver(call_id, buf, len);
        return;
    }

    if (ngx_do_ipc_send(src, NGX_DO_IPC_REPLY, call_id, buf, len) != NGX_OK) {
        ngx_free(buf);
    }
}


ngx_int_t
ngx_do_wire_parse(u_char *buf, size_t len, ngx_do_reply_wire_t **hdr,
    ngx_str_t *content_type, ngx_str_t *body)
{
    ngx_do_reply_wire_t  *w;

    if (len < sizeof(ngx_do_reply_wire_t)) {
        return NGX_ERROR;
    }

    w = (ngx_do_reply_wire_t *) buf;

    if (sizeof(ngx_do_reply_wire_t) + (size_t) w->content_type_len
        + w->body_len != len
        || w->status < 100 || (w->status > 599 && w->status < 1000)
        || w->status > 4999)
    {
        return NGX_ERROR;
    }

    *hdr = w;
    content_type->data = buf + sizeof(ngx_do_reply_wire_t);
    content_type->len = w->content_type_len;
    body->data = content_type->data + content_type->len;
    body->len = w->body_len;

    return NGX_OK;
}
