
/*
 * do_pass: the content handler that turns a request into a call for one
 * object.  It finds the object's ID (name=, id= or unique), reads the
 * body, hands the call to the router (src/ngx_do_router.c), which brings
 * it to the owner worker and the reply back, and writes the reply as the
 * response, or a JSON error.  A body longer than the request could store
 * (the class's max_body, else max_value) is refused here with 413: from
 * its Content-Length before it is read, or by a request body filter as
 * it grows.  For a class that takes WebSockets, it checks an upgrade
 * request's handshake and offers it to the object, under the location's
 * do_ws_* settings (their directives are here too).  Also the variables
 * of a do_pass request: $do_object_id, $do_owner, and $do_worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_do.h"
#include "ngx_http_do_module.h"


#define NGX_HTTP_DO_UPGRADE_REQUIRED  426


static ngx_int_t ngx_http_do_ws_list(ngx_conf_t *cf, ngx_array_t *in,
    ngx_array_t **out);
static ngx_int_t ngx_http_do_pass_handshake(ngx_http_request_t *r,
    ngx_do_ws_conf_t *conf, ngx_str_t *protocol, ngx_str_t *key);
static ngx_int_t ngx_http_do_pass_header(ngx_http_request_t *r,
    const char *name, ngx_do_ws_str_t *value);
static ngx_int_t ngx_http_do_pass_direct(ngx_http_request_t *r,
    ngx_do_namespace_t *ns, ngx_str_t *name);
static ngx_int_t ngx_http_do_pass_upgrade(ngx_http_request_t *r,
    ngx_http_do_loc_conf_t *dlcf, ngx_http_do_ctx_t *ctx);
static void ngx_http_do_pass_opened(ngx_http_request_t *r, void *data,
    ngx_http_do_reply_t *reply);
static size_t ngx_http_do_pass_max_body(ngx_http_request_t *r,
    ngx_do_namespace_t *ns, const char **msg);
static ngx_int_t ngx_http_do_pass_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_do_pass_body(ngx_http_request_t *r);
static void ngx_http_do_pass_reply(ngx_http_request_t *r, void *data,
    ngx_http_do_reply_t *reply);
static ngx_int_t ngx_http_do_pass_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_do_pass_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *msg);
static u_char *ngx_http_do_pass_hex(u_char *dst, u_char *src, size_t len);
static u_char *ngx_http_do_pass_decimal(u_char *p, uint64_t n);

static ngx_int_t ngx_http_do_pass_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_do_pass_variable_worker(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_do_pass_vars[] = {

    { ngx_string("do_object_id"), NULL, ngx_http_do_pass_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("do_owner"), NULL, ngx_http_do_pass_variable, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("do_worker"), NULL, ngx_http_do_pass_variable_worker, 0,
      0, 0 },

      ngx_http_null_variable
};


static ngx_http_request_body_filter_pt   ngx_http_do_pass_next_body_filter;


/* the content handler: the object's ID, then the body, then the call */
ngx_int_t
ngx_http_do_pass_handler(ngx_http_request_t *r)
{
    size_t                       n;
    ngx_int_t                    rc;
    ngx_str_t                    value;
    const char                  *msg;
    ngx_http_do_ctx_t           *ctx;
    ngx_http_do_loc_conf_t      *dlcf;
    ngx_http_variable_value_t   *vv;
    u_char                       esc[NGX_DO_LOG_ESCAPE_LEN];

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_do_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_do_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_do_module);

    switch (dlcf->strategy) {

    case NGX_HTTP_DO_UNIQUE:
        if (ngx_do_id_unique(dlcf->ns, ctx->id) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    default:
        if (dlcf->var) {
            /* as the script engine reads it, but without a copy */
            vv = ngx_http_get_flushed_variable(r, dlcf->var - 1);

            value.data = vv ? vv->data : NULL;
            value.len = (vv && !vv->not_found) ? vv->len : 0;

        } else if (ngx_http_complex_value(r, dlcf->expr, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (dlcf->strategy == NGX_HTTP_DO_NAME) {
            if (value.len == 0 || value.len > NGX_HTTP_DO_MAX_NAME) {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "do: object name of %uz bytes rejected",
                              value.len);
                return ngx_http_do_pass_error(r, NGX_HTTP_BAD_REQUEST,
                                              "invalid object name");
            }

            ngx_do_id_from_name(dlcf->ns, &value, ctx->id);
            break;
        }

        if (ngx_do_id_from_string(dlcf->ns, &value, ctx->id) != NGX_OK) {
            n = ngx_do_log_escape(esc, sizeof(esc), value.data, value.len);
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "do: invalid object id \"%*s\" for namespace "
                          "\"%V\"", n, esc, &dlcf->ns->name);
            return ngx_http_do_pass_error(r, NGX_HTTP_BAD_REQUEST,
                                          "invalid object id");
        }
    }

    ctx->has_id = 1;
    ctx->owner = ngx_do_id_owner(ctx->id);

    if (dlcf->ns->class->ws_open) {
        rc = ngx_http_do_pass_upgrade(r, dlcf, ctx);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    /* a body longer than the call could store is not read */
    ctx->max_body = ngx_http_do_pass_max_body(r, dlcf->ns, &msg);

    if (r->headers_in.content_length_n > (off_t) ctx->max_body) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "do: a body of %O bytes is over the %uz bytes a "
                      "request to namespace \"%V\" may bring",
                      r->headers_in.content_length_n, ctx->max_body,
                      &dlcf->ns->name);

        /* as nginx refuses a body over client_max_body_size */
        r->expect_tested = 1;
        r->keepalive = 0;

        return ngx_http_do_pass_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      msg);
    }

    if (dlcf->ns->class->pass) {
        rc = ngx_http_do_pass_direct(r, dlcf->ns,
                                     (dlcf->strategy == NGX_HTTP_DO_NAME)
                                     ? &value : NULL);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_do_pass_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * A class that answers some requests without an object (class->pass: a
 * rate limiter's bucket on memory storage): its answer, sent at once;
 * NGX_DECLINED, the object answers
 */
static ngx_int_t
ngx_http_do_pass_direct(ngx_http_request_t *r, ngx_do_namespace_t *ns,
    ngx_str_t *name)
{
    ngx_int_t            rc;
    ngx_http_do_reply_t  reply;

    ngx_memzero(&reply, sizeof(ngx_http_do_reply_t));

    rc = ns->class->pass(r, ns, name, &reply);

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    if (rc == NGX_AGAIN) {
        /* ngx_http_do_pass_answer() finalizes it */
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        r->main->count++;

        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "do pass answered by class \"%V\": %ui",
                   &ns->class->name, reply.status);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    return ngx_http_do_send(r, reply.status, &reply.content_type,
                            &reply.body, 0, 0);
}


void
ngx_http_do_pass_answer(ngx_http_request_t *r, ngx_http_do_reply_t *reply)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "do pass answered later by its class: %ui",
                   reply->status);

    ngx_http_finalize_request(r, ngx_http_do_send(r, reply->status,
                                                  &reply->content_type,
                                                  &reply->body, 0, 0));
    ngx_http_run_posted_requests(c);
}


/*
 * A WebSocket handshake to a class that takes WebSockets: checked here,
 * then the object decides (its ws_open turn); NGX_DECLINED, not an
 * upgrade request
 */
static ngx_int_t
ngx_http_do_pass_upgrade(ngx_http_request_t *r, ngx_http_do_loc_conf_t *dlcf,
    ngx_http_do_ctx_t *ctx)
{
    uint64_t   conn;
    ngx_int_t  rc;
    ngx_str_t  protocol, member, key;

    rc = ngx_http_do_pass_handshake(r, &dlcf->ws, &protocol, &key);

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return ngx_http_do_pass_error(r, rc, "websocket handshake refused");
    }

    ngx_str_null(&member);

    if (dlcf->member
        && ngx_http_complex_value(r, dlcf->member, &member) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (member.len > NGX_HTTP_DO_MAX_NAME) {
        return ngx_http_do_pass_error(r, NGX_HTTP_BAD_REQUEST,
                                      "member name too long");
    }

    ctx->ws = ngx_do_ws_create(r, &dlcf->ws, &key, &protocol,
                               dlcf->ns->max_message);
    if (ctx->ws == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->member = ngx_do_fanout_member(ctx->ws, dlcf->ns, ctx->id, &member,
                                       &conn);
    if (ctx->member == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_do_router_ws_open(r, dlcf->ns, ctx->id, &member, conn,
                              ngx_http_do_pass_opened, ctx)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


/*
 * The object answered the handshake: the connection becomes a WebSocket,
 * or the refusal is the response (the request's end then frees the
 * WebSocket never started)
 */
static void
ngx_http_do_pass_opened(ngx_http_request_t *r, void *data,
    ngx_http_do_reply_t *reply)
{
    ngx_http_do_ctx_t  *ctx = data;

    ctx->owner = reply->owner;

    if (ngx_do_fanout_opened(ctx->member, reply) == NGX_OK) {
        ngx_do_ws_start(ctx->ws, r);
        return;
    }

    ngx_http_do_pass_reply(r, data, reply);
}


/*
 * The handshake of a request to a WebSocket location: NGX_DECLINED (not an
 * upgrade request), NGX_OK (valid: *protocol is the chosen subprotocol, len
 * 0 for none, *key the client's key), or the HTTP status to refuse it with
 * (the 426 answer's Sec-WebSocket-Version header is added here).  The
 * verdicts are the pure checks of ngx_do_ws_proto.c.
 */
static ngx_int_t
ngx_http_do_pass_handshake(ngx_http_request_t *r, ngx_do_ws_conf_t *conf,
    ngx_str_t *protocol, ngx_str_t *key)
{
    int                     verdict;
    ngx_uint_t              status;
    ngx_table_elt_t        *h;
    ngx_do_ws_policy_t      policy;
    const ngx_do_ws_str_t  *chosen;
    ngx_do_ws_handshake_t   hs;

    ngx_str_null(protocol);

    if (r->headers_in.upgrade == NULL) {
        return NGX_DECLINED;
    }

    if (r->method != NGX_HTTP_GET
        || r->http_version != NGX_HTTP_VERSION_11
        || r->headers_in.content_length_n > 0
        || r->headers_in.chunked)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "do: websocket handshake refused: not an HTTP/1.1 "
                      "GET without a body");
        return NGX_HTTP_BAD_REQUEST;
    }

    ngx_memzero(&hs, sizeof(ngx_do_ws_handshake_t));

    if (ngx_http_do_pass_header(r, "Upgrade", &hs.upgrade) != NGX_OK
        || ngx_http_do_pass_header(r, "Connection", &hs.connection) != NGX_OK
        || ngx_http_do_pass_header(r, "Sec-WebSocket-Version", &hs.version)
           != NGX_OK
        || ngx_http_do_pass_header(r, "Sec-WebSocket-Key", &hs.key) != NGX_OK
        || ngx_http_do_pass_header(r, "Origin", &hs.origin) != NGX_OK
        || ngx_http_do_pass_header(r, "Sec-WebSocket-Protocol", &hs.protocol)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&policy, sizeof(ngx_do_ws_policy_t));

    if (conf->origins) {
        policy.origins = conf->origins->elts;
        policy.norigins = conf->origins->nelts;
    }

    if (conf->protocols) {
        policy.protocols = conf->protocols->elts;
        policy.nprotocols = conf->protocols->nelts;
    }

    verdict = ngx_do_ws_handshake_check(&hs, &policy, &chosen);

    if (verdict != NGX_DO_WS_HS_OK) {
        status = ngx_do_ws_handshake_status(verdict);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "do: websocket handshake refused: %s",
                      ngx_do_ws_handshake_reason(verdict));

        if (status == NGX_HTTP_DO_UPGRADE_REQUIRED) {
            h = ngx_list_push(&r->headers_out.headers);
            if (h == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            h->hash = 1;
            ngx_str_set(&h->key, "Sec-WebSocket-Version");
            ngx_str_set(&h->value, "13");
        }

        return status;
    }

    if (chosen) {
        protocol->data = (u_char *) chosen->data;
        protocol->len = chosen->len;
    }

    key->data = (u_char *) hs.key.data;
    key->len = hs.key.len;

    return NGX_OK;
}


/* a request header by name, its lines joined with ", "; data NULL: absent */
static ngx_int_t
ngx_http_do_pass_header(ngx_http_request_t *r, const char *name,
    ngx_do_ws_str_t *value)
{
    u_char           *p;
    size_t            len, n;
    ngx_uint_t        i, count;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *first;

    len = ngx_strlen(name);
    first = NULL;
    count = 0;
    n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == len
                && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
            {
                first = first ? first : &h[i];
                n += h[i].value.len + (count ? 2 : 0);
                count++;
            }
        }
    }

    value->data = NULL;
    value->len = 0;

    if (first == NULL) {
        return NGX_OK;
    }

    if (count == 1) {
        value->data = first->value.data;
        value->len = first->value.len;
        return NGX_OK;
    }

    value->data = ngx_pnalloc(r->pool, n);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) value->data;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == len
                && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
            {
                if (p != value->data) {
                    *p++ = ','; *p++ = ' ';
                }

                p = ngx_cpymem(p, h[i].value.data, h[i].value.len);
            }
        }
    }

    value->len = n;

    return NGX_OK;
}


/* the longest body a request may bring: what its class says it could store */
static size_t
ngx_http_do_pass_max_body(ngx_http_request_t *r, ngx_do_namespace_t *ns,
    const char **msg)
{
    size_t  max;

    *msg = "body too large";

    max = ns->class->max_body ? ns->class->max_body(ns, r, msg)
                              : ns->max_value;

    return ngx_min(max, NGX_DO_MAX_BODY);
}


/* do_pass's body filter joins nginx's chain, as modules' filters do */
void
ngx_http_do_pass_init_body_filter(void)
{
    ngx_http_do_pass_next_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_do_pass_body_filter;
}


/*
 * Counts a do_pass request's body as it is read: one that turns out longer
 * than its limit (chunked, or HTTP/2 without a length) ends the request
 * with 413 at once, as nginx does past client_max_body_size, and nothing
 * of it goes to the object
 */
static ngx_int_t
ngx_http_do_pass_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t              *cl;
    ngx_http_do_ctx_t        *ctx;
    ngx_http_do_loc_conf_t   *dlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_do_module);

    if (ctx == NULL || ctx->max_body == 0) {
        return ngx_http_do_pass_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        ctx->received += ngx_buf_size(cl->buf);
    }

    if (ctx->received > (off_t) ctx->max_body) {
        dlcf = ngx_http_get_module_loc_conf(r, ngx_http_do_module);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "do: a body over the %uz bytes a request to namespace "
                      "\"%V\" may bring was cut at %O bytes",
                      ctx->max_body, &dlcf->ns->name, ctx->received);

        r->lingering_close = 1;

        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    return ngx_http_do_pass_next_body_filter(r, in);
}


/* the body is complete: the call goes to the object's owner */
static void
ngx_http_do_pass_body(ngx_http_request_t *r)
{
    ngx_str_t                 body, im, inm;
    ngx_http_do_ctx_t        *ctx;
    ngx_http_do_loc_conf_t   *dlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_do_module);
    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_do_module);

    if (ngx_http_do_pass_read_body(r, &body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_str_null(&im);
    ngx_str_null(&inm);

    if (r->headers_in.if_match) {
        im = r->headers_in.if_match->value;
    }

    if (r->headers_in.if_none_match) {
        inm = r->headers_in.if_none_match->value;
    }

    if (ngx_do_router_dispatch(r, dlcf->ns, ctx->id, r->method, &r->args, &im,
                               &inm, &body, 0, ngx_http_do_pass_reply, ctx)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
}


/* the reply of a do_pass call becomes the response */
static void
ngx_http_do_pass_reply(ngx_http_request_t *r, void *data,
    ngx_http_do_reply_t *reply)
{
    ngx_int_t           rc;
    ngx_http_do_ctx_t  *ctx = data;

    ctx->owner = reply->owner;

    if (reply->failed) {
        rc = ngx_http_do_pass_error(r, reply->status,
                                    reply->status == NGX_HTTP_GATEWAY_TIME_OUT
                                    ? "owner did not answer in time"
                                    : reply->status == NGX_HTTP_BAD_GATEWAY
                                    ? "owner worker exited before it "
                                      "answered"
                                    : "owner worker is overloaded");

    } else {
        rc = ngx_http_do_send(r, reply->status, &reply->content_type,
                              &reply->body, reply->etag, reply->activation);
    }

    ngx_http_finalize_request(r, rc);
}


/* the request body in one piece: in memory, or read back from its file */
static ngx_int_t
ngx_http_do_pass_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            return NGX_ERROR;
        }

        p += n;
    }

    body->len = p - body->data;

    return NGX_OK;
}


/*
 * The longest values of the object's headers, written once: the ID in hex,
 * the activation "pid.n" and the ETag "version"
 */
#define NGX_HTTP_DO_OBJECT_HEADERS                                           \
    (NGX_DO_ID_HEX_LEN + 2 * NGX_INT32_LEN + 1 + NGX_INT64_LEN + 2)


/* a response with the object's headers (DO-Object-Id, ETag, ...) */
ngx_int_t
ngx_http_do_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body, uint64_t etag,
    uint64_t activation)
{
    u_char             *p, *v;
    ngx_int_t           rc;
    ngx_buf_t          *b;
    ngx_chain_t         out;
    ngx_http_do_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_do_module);

    /* preconditions are the object's business, not the static-file kind */
    r->disable_not_modified = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;
    r->headers_out.content_type = *content_type;
    r->headers_out.content_type_len = content_type->len;

    if ((ctx && ctx->has_id) || activation || etag) {
        p = ngx_pnalloc(r->pool, NGX_HTTP_DO_OBJECT_HEADERS);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ctx && ctx->has_id) {
            v = p;
            p = ngx_http_do_pass_hex(p, ctx->id, NGX_DO_ID_LEN);

            if (ngx_http_do_add_header(r, "DO-Object-Id", v, p - v)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (activation) {
            v = p;
            p = ngx_http_do_pass_decimal(p, activation >> 32);
            *p++ = '.';
            p = ngx_http_do_pass_decimal(p, (uint32_t) activation);

            if (ngx_http_do_add_header(r, "DO-Activation", v, p - v)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (etag) {
            v = p;
            *p++ = '"';
            p = ngx_http_do_pass_decimal(p, etag);
            *p++ = '"';

            if (ngx_http_do_add_header(r, "ETag", v, p - v)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (body->len == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_do_pass_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *msg)
{
    ngx_str_t  ct, body;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    body.data = ngx_pnalloc(r->pool, ngx_strlen(msg) + 16);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.len = ngx_sprintf(body.data, "{\"error\":\"%s\"}\n", msg)
               - body.data;

    ngx_str_set(&ct, "application/json");

    return ngx_http_do_send(r, status, &ct, &body, 0, 0);
}


/* bytes in lowercase hex, as ngx_hex_dump() writes them, a pair at once */
static u_char *
ngx_http_do_pass_hex(u_char *dst, u_char *src, size_t len)
{
    static u_char  pairs[] =
    "000102030405060708090a0b0c0d0e0f"
    "101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f"
    "303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f"
    "505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f"
    "707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f"
    "909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
    "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
    "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeef"
    "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

    while (len--) {
        ngx_memcpy(dst, &pairs[*src++ * 2], 2);
        dst += 2;
    }

    return dst;
}


/* n in decimal; ngx_sprintf()'s "%uL" at a fraction of its cost */
static u_char *
ngx_http_do_pass_decimal(u_char *p, uint64_t n)
{
    u_char  *q, buf[NGX_INT64_LEN];

    q = buf + sizeof(buf);

    do {
        *--q = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    return ngx_cpymem(p, q, buf + sizeof(buf) - q);
}


ngx_int_t
ngx_http_do_add_header(ngx_http_request_t *r, const char *name, u_char *value,
    size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = value;
    h->value.len = len;

    return NGX_OK;
}


/* $do_object_id (data 0) and $do_owner (data 1) of a do_pass request */
static ngx_int_t
ngx_http_do_pass_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_do_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_do_module);

    if (ctx == NULL || !ctx->has_id) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, ngx_max(NGX_DO_ID_HEX_LEN, NGX_INT_T_LEN));
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    if (data == 0) {
        ngx_hex_dump(v->data, ctx->id, NGX_DO_ID_LEN);
        v->len = NGX_DO_ID_HEX_LEN;

    } else {
        v->len = ngx_sprintf(v->data, "%ui", ctx->owner) - v->data;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_do_pass_variable_worker(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    v->data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(v->data, "%ui", ngx_worker) - v->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_do_pass_add_variables(ngx_conf_t *cf)
{
    return ngx_http_do_add_variables(cf, ngx_http_do_pass_vars);
}


ngx_int_t
ngx_http_do_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* the WebSocket settings of a location, inherited from its parents */
char *
ngx_http_do_pass_merge_ws(ngx_conf_t *cf, ngx_http_do_loc_conf_t *prev,
    ngx_http_do_loc_conf_t *conf)
{
    ngx_conf_merge_size_value(conf->ws.send_queue, prev->ws.send_queue,
                              256 * 1024);
    ngx_conf_merge_msec_value(conf->ws.ping_interval, prev->ws.ping_interval,
                              30000);
    ngx_conf_merge_msec_value(conf->ws.ping_timeout, prev->ws.ping_timeout,
                              10000);
    ngx_conf_merge_msec_value(conf->ws.message_interval,
                              prev->ws.message_interval, 0);
    ngx_conf_merge_uint_value(conf->ws.message_burst,
                              prev->ws.message_burst, 0);
    ngx_conf_merge_ptr_value(conf->origins, prev->origins, NULL);
    ngx_conf_merge_ptr_value(conf->protocols, prev->protocols, NULL);

    if (ngx_http_do_ws_list(cf, conf->origins, &conf->ws.origins) != NGX_OK
        || ngx_http_do_ws_list(cf, conf->protocols, &conf->ws.protocols)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a list of do_ws_origins or do_ws_protocols, as the handshake reads it */
static ngx_int_t
ngx_http_do_ws_list(ngx_conf_t *cf, ngx_array_t *in, ngx_array_t **out)
{
    ngx_str_t        *s;
    ngx_uint_t        i;
    ngx_do_ws_str_t  *w;

    *out = NULL;

    if (in == NULL) {
        return NGX_OK;
    }

    *out = ngx_array_create(cf->pool, in->nelts, sizeof(ngx_do_ws_str_t));
    if (*out == NULL) {
        return NGX_ERROR;
    }

    s = in->elts;

    for (i = 0; i < in->nelts; i++) {
        w = ngx_array_push(*out);
        if (w == NULL) {
            return NGX_ERROR;
        }

        w->data = s[i].data;
        w->len = s[i].len;
    }

    return NGX_OK;
}


/* do_ws_message_rate RATE [burst=N]: RATE as 10r/s or 30r/m, 1000r/s at most */
char *
ngx_http_do_ws_message_rate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_loc_conf_t  *dlcf = conf;

    u_char     *p;
    ngx_int_t   n, per, burst;
    ngx_str_t  *value;

    if (dlcf->ws.message_interval != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;
    p = value[1].data + value[1].len - 3;

    if (value[1].len < 4 || ngx_strncmp(p, "r/", 2) != 0
        || (p[2] != 's' && p[2] != 'm'))
    {
        goto invalid;
    }

    per = (p[2] == 's') ? 1000 : 60000;
    n = ngx_atoi(value[1].data, value[1].len - 3);

    if (n <= 0 || per / n == 0) {
        goto invalid;
    }

    dlcf->ws.message_interval = per / n;
    burst = 0;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "burst=", 6) != 0) {
            goto invalid;
        }

        burst = ngx_atoi(value[2].data + 6, value[2].len - 6);

        if (burst == NGX_ERROR) {
            goto invalid;
        }
    }

    dlcf->ws.message_burst = burst;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid do_ws_message_rate \"%V\", expected a rate "
                       "such as 10r/s or 30r/m, then burst=number",
                       &value[1]);
    return NGX_CONF_ERROR;
}


/* do_ws_keepalive INTERVAL [TIMEOUT]: 0 turns the pings off */
char *
ngx_http_do_ws_keepalive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_loc_conf_t  *dlcf = conf;

    ngx_str_t  *value;

    if (dlcf->ws.ping_interval != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    dlcf->ws.ping_interval = ngx_parse_time(&value[1], 0);

    if (dlcf->ws.ping_interval == (ngx_msec_t) NGX_ERROR) {
        return "has an invalid interval";
    }

    if (cf->args->nelts == 3) {
        dlcf->ws.ping_timeout = ngx_parse_time(&value[2], 0);

        if (dlcf->ws.ping_timeout == (ngx_msec_t) NGX_ERROR
            || dlcf->ws.ping_timeout == 0)
        {
            return "has an invalid timeout";
        }
    }

    return NGX_CONF_OK;
}
