
/*
 * The "room" class: members joined over WebSockets, messages ordered by a
 * sequence number, the last history= of them stored.  Its calls and
 * events are in ngx_do_room.h.
 *
 * Storage of a room: "seq" (the last message's number), "h:<seq as 16 hex
 * digits>" (a message envelope, kept while within the history) and
 * "m:<connection as 16 hex digits>" (a member's name, for presence).  The
 * runtime fans a message out after it is stored, so whatever a member
 * receives survives a restart; and since presence lives in storage too, a
 * room evicted while its members stay connected comes back whole at the
 * next event.  Members left behind by a worker that died (kill -9) are
 * dropped when the room loads and when it is full.
 *
 * It uses nothing but the public class API (ngx_http_do.h).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_do.h"
#include "ngx_do_room.h"


#define NGX_DO_ROOM_MAX_HISTORY   10000
#define NGX_DO_ROOM_MAX_NAME      64
#define NGX_DO_ROOM_MAX_LIST      1000000
#define NGX_DO_ROOM_WELCOME_NAMES 100
#define NGX_DO_ROOM_KEY_LEN       (2 + 16)


typedef struct {
    ngx_uint_t                 history;
    ngx_uint_t                 max_members;
    ngx_flag_t                 presence;
} ngx_do_room_conf_t;


/* the object's memory: read again by init whenever storage moved */
typedef struct {
    uint64_t                   seq;
    ngx_uint_t                 members;
} ngx_do_room_t;


static void *ngx_do_room_create_conf(ngx_conf_t *cf);
static char *ngx_do_room_parse_param(ngx_conf_t *cf, void *conf,
    ngx_str_t *param);
static char *ngx_do_room_init_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_do_room_init(ngx_do_turn_t *t);
static ngx_int_t ngx_do_room_fetch(ngx_do_turn_t *t);
static ngx_int_t ngx_do_room_open(ngx_do_turn_t *t);
static ngx_int_t ngx_do_room_message(ngx_do_turn_t *t);
static ngx_int_t ngx_do_room_close(ngx_do_turn_t *t);
static size_t ngx_do_room_max_body(ngx_do_namespace_t *ns,
    ngx_http_request_t *r, const char **msg);
static ngx_int_t ngx_do_room_info(ngx_do_turn_t *t);
static ngx_int_t ngx_do_room_since(ngx_do_turn_t *t, uint64_t since);
static ngx_int_t ngx_do_room_publish(ngx_do_turn_t *t, ngx_str_t *from,
    ngx_str_t *data, uint64_t *seq);
static ngx_int_t ngx_do_room_members(ngx_do_turn_t *t, json_t *names,
    ngx_uint_t purge, ngx_uint_t *count);
static ngx_int_t ngx_do_room_replay(ngx_do_turn_t *t, uint64_t from,
    json_t *out);
static ngx_int_t ngx_do_room_presence(ngx_do_turn_t *t, const char *type,
    ngx_str_t *member);
static ngx_int_t ngx_do_room_send(ngx_do_turn_t *t, json_t *ev,
    uint64_t seq, ngx_uint_t broadcast);
static ngx_int_t ngx_do_room_text(ngx_do_turn_t *t, json_t *ev,
    ngx_str_t *text);
static uint64_t ngx_do_room_first(ngx_do_turn_t *t);
static ngx_int_t ngx_do_room_key(ngx_do_turn_t *t, char kind, uint64_t n,
    ngx_str_t *key);
static ngx_int_t ngx_do_room_arg_seq(ngx_do_turn_t *t, uint64_t *seq);
static ngx_int_t ngx_do_room_name_valid(ngx_str_t *name);


ngx_do_class_t  ngx_do_room_class = {
    ngx_string("room"),
    sizeof(ngx_do_room_t),                 /* object_size */
    0,                                     /* deferred */
    ngx_do_room_create_conf,               /* create_conf */
    ngx_do_room_parse_param,               /* parse_param */
    ngx_do_room_init_conf,                 /* init_conf */
    ngx_do_room_init,                      /* init */
    ngx_do_room_fetch,                     /* fetch */
    NULL,                                  /* evict */
    NULL,                                  /* alarm */
    NULL,                                  /* wake */
    ngx_do_room_open,                      /* ws_open */
    ngx_do_room_message,                   /* ws_message */
    ngx_do_room_close,                     /* ws_close */
    ngx_do_room_max_body,                  /* max_body */
    NULL,                                  /* init_namespace */
    NULL,                                  /* pass */
    NULL,                                  /* usage */
    NULL,                                  /* init_worker */
    NULL                                   /* exit_worker */
};


/* a message posted over HTTP is bounded as one from a WebSocket */
static size_t
ngx_do_room_max_body(ngx_do_namespace_t *ns, ngx_http_request_t *r,
    const char **msg)
{
    *msg = "message too large";

    return ns->max_message;
}


static ngx_str_t  ngx_do_room_seq_key = ngx_string("seq");


static void *
ngx_do_room_create_conf(ngx_conf_t *cf)
{
    ngx_do_room_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_do_room_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->history = NGX_CONF_UNSET_UINT;
    conf->max_members = NGX_CONF_UNSET_UINT;
    conf->presence = NGX_CONF_UNSET;

    return conf;
}


/* history=100  max_members=10000  presence=on|off */
static char *
ngx_do_room_parse_param(ngx_conf_t *cf, void *data, ngx_str_t *param)
{
    ngx_do_room_conf_t  *conf = data;

    ngx_int_t    n;
    ngx_uint_t  *field;
    size_t       skip;

    if (param->len == 11 && ngx_strncmp(param->data, "presence=on", 11) == 0)
    {
        conf->presence = 1;
        return NGX_CONF_OK;
    }

    if (param->len == 12 && ngx_strncmp(param->data, "presence=off", 12) == 0)
    {
        conf->presence = 0;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(param->data, "history=", 8) == 0) {
        field = &conf->history;
        skip = 8;

    } else if (ngx_strncmp(param->data, "max_members=", 12) == 0) {
        field = &conf->max_members;
        skip = 12;

    } else {
        return "unknown room parameter";
    }

    n = ngx_atoi(param->data + skip, param->len - skip);

    if (n == NGX_ERROR
        || (field == &conf->history && n > NGX_DO_ROOM_MAX_HISTORY))
    {
        return "invalid number";
    }

    *field = (ngx_uint_t) n;

    return NGX_CONF_OK;
}


static char *
ngx_do_room_init_conf(ngx_conf_t *cf, void *data)
{
    ngx_do_room_conf_t  *conf = data;

    ngx_conf_init_uint_value(conf->history, 100);
    ngx_conf_init_uint_value(conf->max_members, 10000);
    ngx_conf_init_value(conf->presence, 1);

    return NGX_CONF_OK;
}


/* the room as storage has it; members of dead workers go */
static ngx_int_t
ngx_do_room_init(ngx_do_turn_t *t)
{
    uint64_t        version;
    ngx_int_t       rc;
    ngx_str_t       value;
    ngx_do_room_t  *room;

    room = ngx_do_turn_state(t);
    room->seq = 0;

    rc = ngx_do_get(t, &ngx_do_room_seq_key, &value, &version);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        room->seq = (uint64_t) ngx_atoof(value.data, value.len);
    }

    return ngx_do_room_members(t, NULL, 1, &room->members);
}


static ngx_int_t
ngx_do_room_fetch(ngx_do_turn_t *t)
{
    uint64_t           seq;
    ngx_int_t          rc;
    ngx_str_t          from, data;
    ngx_do_request_t  *req;
    json_t            *root;

    req = ngx_do_turn_request(t);

    switch (req->method) {

    case NGX_HTTP_GET:
    case NGX_HTTP_HEAD:
        rc = ngx_do_room_arg_seq(t, &seq);

        if (rc == NGX_ERROR) {
            return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                      "since must be a number");
        }

        return rc == NGX_OK ? ngx_do_room_since(t, seq)
                            : ngx_do_room_info(t);

    case NGX_HTTP_POST:
        if (ngx_do_arg(t, "from", &from) != NGX_OK) {
            ngx_str_set(&from, "server");
        }

        if (ngx_do_room_name_valid(&from) != NGX_OK) {
            return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                      "invalid from");
        }

        data = req->body;

        rc = ngx_do_room_publish(t, &from, &data, &seq);

        if (rc == NGX_DECLINED) {
            return ngx_do_reply_error(t, NGX_HTTP_BAD_REQUEST,
                                      "the message must be UTF-8 text");
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        root = json_pack("{s:I}", "seq", (json_int_t) seq);

        return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, root, 0);

    default:
        return ngx_do_reply_error(t, NGX_HTTP_NOT_ALLOWED,
                                  "rooms answer GET and POST");
    }
}


/*
 * A member joins: refused (1008) without a valid name or when the room is
 * full; otherwise welcomed, given what it missed, and announced.
 */
static ngx_int_t
ngx_do_room_open(ngx_do_turn_t *t)
{
    uint64_t             since, first;
    ngx_int_t            rc;
    ngx_str_t            key;
    json_t              *names, *ev;
    ngx_do_room_t       *room;
    ngx_do_request_t    *req;
    ngx_do_room_conf_t  *conf;

    req = ngx_do_turn_request(t);
    room = ngx_do_turn_state(t);
    conf = ngx_do_turn_namespace(t)->conf;

    if (ngx_do_room_name_valid(&req->member) != NGX_OK) {
        return ngx_do_ws_reply_close(t, 1008, "a member name is required "
                                     "(letters, digits, ._-, 1-64)");
    }

    since = 0;
    rc = ngx_do_room_arg_seq(t, &since);

    if (rc == NGX_ERROR) {
        return ngx_do_ws_reply_close(t, 1008, "since must be a number");
    }

    if (conf->max_members && room->members >= conf->max_members) {
        if (ngx_do_room_members(t, NULL, 1, &room->members) != NGX_OK) {
            return NGX_ERROR;
        }

        if (room->members >= conf->max_members) {
            return ngx_do_ws_reply_close(t, 1008, "the room is full");
        }
    }

    /* the first names only: a big room's welcome stays small */
    names = json_array();
    if (names == NULL
        || (conf->presence
            && ngx_do_room_members(t, names, 0, NULL) != NGX_OK)
        || json_array_append_new(names,
               json_stringn((char *) req->member.data, req->member.len))
           != 0)
    {
        json_decref(names);
        return NGX_ERROR;
    }

    if (ngx_do_room_key(t, 'm', req->conn, &key) != NGX_OK
        || ngx_do_put(t, &key, &req->member) != NGX_OK)
    {
        json_decref(names);
        return NGX_ERROR;
    }

    room->members++;

    first = ngx_do_room_first(t);

    ev = json_pack("{s:s, s:s%, s:I, s:I, s:I, s:o}", "type", "welcome",
                   "member", (char *) req->member.data, req->member.len,
                   "seq", (json_int_t) room->seq,
                   "first", (json_int_t) first,
                   "count", (json_int_t) room->members,
                   "members", names);

    if (ngx_do_room_send(t, ev, 0, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    /* what the member missed is gone, or its numbers are not the room's */
    if (rc == NGX_OK && (since + 1 < first || since > room->seq)) {
        ev = json_pack("{s:s, s:I, s:I, s:I}", "type", "reset",
                       "since", (json_int_t) since,
                       "first", (json_int_t) first,
                       "seq", (json_int_t) room->seq);

        if (ngx_do_room_send(t, ev, 0, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (rc != NGX_OK || since < first || since > room->seq) {
        since = first - 1;
    }

    if (since < room->seq
        && ngx_do_room_replay(t, since + 1, NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_do_ws_accept(t, room->seq) != NGX_OK) {
        return NGX_ERROR;
    }

    return conf->presence ? ngx_do_room_presence(t, "join", &req->member)
                          : NGX_OK;
}


static ngx_int_t
ngx_do_room_message(ngx_do_turn_t *t)
{
    uint64_t           seq;
    ngx_int_t          rc;
    ngx_do_request_t  *req;

    req = ngx_do_turn_request(t);

    if (req->method != NGX_DO_WS_TEXT) {
        return ngx_do_ws_reply_close(t, 1003,
                                     "binary messages are not supported");
    }

    rc = ngx_do_room_publish(t, &req->member, &req->body, &seq);

    return rc == NGX_DECLINED ? NGX_ERROR : rc;
}


static ngx_int_t
ngx_do_room_close(ngx_do_turn_t *t)
{
    ngx_int_t            rc;
    ngx_str_t            key;
    ngx_do_room_t       *room;
    ngx_do_request_t    *req;
    ngx_do_room_conf_t  *conf;

    req = ngx_do_turn_request(t);
    room = ngx_do_turn_state(t);

    if (ngx_do_room_key(t, 'm', req->conn, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_do_delete(t, &key);

    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    if (room->members) {
        room->members--;
    }

    conf = ngx_do_turn_namespace(t)->conf;

    return conf->presence ? ngx_do_room_presence(t, "leave", &req->member)
                          : NGX_OK;
}


static ngx_int_t
ngx_do_room_info(ngx_do_turn_t *t)
{
    json_t              *names, *root;
    ngx_do_room_t       *room;
    ngx_do_room_conf_t  *conf;

    room = ngx_do_turn_state(t);
    conf = ngx_do_turn_namespace(t)->conf;

    names = json_array();
    if (names == NULL
        || ngx_do_room_members(t, names, 1, &room->members) != NGX_OK)
    {
        json_decref(names);
        return NGX_ERROR;
    }

    root = json_pack("{s:I, s:o, s:I, s:I, s:I}",
                     "count", (json_int_t) room->members,
                     "members", names,
                     "seq", (json_int_t) room->seq,
                     "first", (json_int_t) ngx_do_room_first(t),
                     "history", (json_int_t) conf->history);

    return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, root, 0);
}


static ngx_int_t
ngx_do_room_since(ngx_do_turn_t *t, uint64_t since)
{
    uint64_t        first;
    json_t         *messages, *root;
    ngx_uint_t      reset;
    ngx_do_room_t  *room;

    room = ngx_do_turn_state(t);
    first = ngx_do_room_first(t);
    reset = (since + 1 < first || since > room->seq);

    messages = json_array();
    if (messages == NULL) {
        return NGX_ERROR;
    }

    if (since < first || since > room->seq) {
        since = first - 1;
    }

    if (since < room->seq
        && ngx_do_room_replay(t, since + 1, messages) != NGX_OK)
    {
        json_decref(messages);
        return NGX_ERROR;
    }

    root = json_pack("{s:o, s:I, s:I, s:b}", "messages", messages,
                     "seq", (json_int_t) room->seq,
                     "first", (json_int_t) first,
                     "reset", (int) reset);

    return ngx_do_reply_json(t, NULL, NGX_HTTP_OK, root, 0);
}


/*
 * A message gets the next number, is stored (the oldest beyond the
 * history goes) and is sent to every member after the commit.
 * NGX_DECLINED: data is not UTF-8.
 */
static ngx_int_t
ngx_do_room_publish(ngx_do_turn_t *t, ngx_str_t *from, ngx_str_t *data,
    uint64_t *seq)
{
    json_t              *ev;
    ngx_str_t            key, value;
    ngx_do_room_t       *room;
    ngx_do_room_conf_t  *conf;

    room = ngx_do_turn_state(t);
    conf = ngx_do_turn_namespace(t)->conf;

    ev = json_pack("{s:s, s:I, s:s%, s:s%, s:I}", "type", "message",
                   "seq", (json_int_t) (room->seq + 1),
                   "from", (char *) from->data, from->len,
                   "data", data->data ? (char *) data->data : "", data->len,
                   "time", (json_int_t) ngx_do_now());
    if (ev == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_do_room_text(t, ev, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    *seq = ++room->seq;

    if (ngx_do_room_key(t, 'h', *seq, &key) != NGX_OK
        || (conf->history && ngx_do_put(t, &key, &value) != NGX_OK)
        || ngx_do_ws_broadcast(t, &value, *seq) != NGX_OK)
    {
        return NGX_ERROR;
    }

    value.data = ngx_pnalloc(ngx_do_turn_pool(t), NGX_INT64_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%uL", *seq) - value.data;

    if (ngx_do_put(t, &ngx_do_room_seq_key, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (conf->history && *seq > conf->history) {
        if (ngx_do_room_key(t, 'h', *seq - conf->history, &key) != NGX_OK
            || ngx_do_delete(t, &key) == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Counts the stored members, their names into names if set; purge:
 * members whose connection went with its worker are deleted.  count NULL:
 * only the first NGX_DO_ROOM_WELCOME_NAMES names.  Storage lists what is
 * committed: a member the turn added is not in it.
 */
static ngx_int_t
ngx_do_room_members(ngx_do_turn_t *t, json_t *names, ngx_uint_t purge,
    ngx_uint_t *count)
{
    uint64_t             conn;
    ngx_uint_t           i, n;
    ngx_do_kv_t         *kv;
    ngx_array_t         *items;
    ngx_do_list_opts_t   opts;

    ngx_memzero(&opts, sizeof(ngx_do_list_opts_t));
    ngx_str_set(&opts.prefix, "m:");
    opts.limit = count ? NGX_DO_ROOM_MAX_LIST : NGX_DO_ROOM_WELCOME_NAMES;

    if (ngx_do_list(t, &opts, &items) != NGX_OK) {
        return NGX_ERROR;
    }

    kv = items->elts;
    n = 0;

    for (i = 0; i < items->nelts; i++) {
        conn = 0;

        if (kv[i].key.len == NGX_DO_ROOM_KEY_LEN) {
            conn = (uint64_t) ngx_hextoi(kv[i].key.data + 2, 16);
        }

        if (purge && !ngx_do_ws_alive(t, conn)) {
            if (ngx_do_delete(t, &kv[i].key) == NGX_ERROR) {
                return NGX_ERROR;
            }

            continue;
        }

        n++;

        if (names
            && json_array_append_new(names,
                   json_stringn((char *) kv[i].value.data, kv[i].value.len))
               != 0)
        {
            return NGX_ERROR;
        }
    }

    if (count) {
        *count = n;
    }

    return NGX_OK;
}


/* the stored messages from seq from on: to the member, or into out */
static ngx_int_t
ngx_do_room_replay(ngx_do_turn_t *t, uint64_t from, json_t *out)
{
    ngx_uint_t           i;
    ngx_do_kv_t         *kv;
    ngx_array_t         *items;
    ngx_do_list_opts_t   opts;

    ngx_memzero(&opts, sizeof(ngx_do_list_opts_t));
    ngx_str_set(&opts.prefix, "h:");
    opts.limit = NGX_DO_ROOM_MAX_HISTORY;
    if (ngx_do_room_key(t, 'h', from, &opts.start) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_do_list(t, &opts, &items) != NGX_OK) {
        return NGX_ERROR;
    }

    kv = items->elts;

    for (i = 0; i < items->nelts; i++) {

        if (out == NULL) {
            if (ngx_do_ws_reply(t, &kv[i].value) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (json_array_append_new(out,
                json_loadb((char *) kv[i].value.data, kv[i].value.len, 0,
                           NULL))
            != 0)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_do_room_presence(ngx_do_turn_t *t, const char *type, ngx_str_t *member)
{
    json_t         *ev;
    ngx_do_room_t  *room;

    room = ngx_do_turn_state(t);

    ev = json_pack("{s:s, s:s%, s:I, s:I}", "type", type,
                   "member", (char *) member->data, member->len,
                   "count", (json_int_t) room->members,
                   "time", (json_int_t) ngx_do_now());

    return ngx_do_room_send(t, ev, 0, 1);
}


/* an event to the turn's member, or to every member; takes ev */
static ngx_int_t
ngx_do_room_send(ngx_do_turn_t *t, json_t *ev, uint64_t seq,
    ngx_uint_t broadcast)
{
    ngx_str_t  text;

    if (ngx_do_room_text(t, ev, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    return broadcast ? ngx_do_ws_broadcast(t, &text, seq)
                     : ngx_do_ws_reply(t, &text);
}


/*
 * ev as compact JSON in the turn's pool (what is put must stay until the
 * commit); takes ev
 */
static ngx_int_t
ngx_do_room_text(ngx_do_turn_t *t, json_t *ev, ngx_str_t *text)
{
    char  *s;

    if (ev == NULL) {
        return NGX_ERROR;
    }

    s = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);

    if (s == NULL) {
        return NGX_ERROR;
    }

    text->len = ngx_strlen(s);
    text->data = ngx_pnalloc(ngx_do_turn_pool(t), text->len);

    if (text->data == NULL) {
        free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(text->data, s, text->len);
    free(s);

    return NGX_OK;
}


/* the oldest message in the history (seq + 1 when there is none) */
static uint64_t
ngx_do_room_first(ngx_do_turn_t *t)
{
    ngx_do_room_t       *room;
    ngx_do_room_conf_t  *conf;

    room = ngx_do_turn_state(t);
    conf = ngx_do_turn_namespace(t)->conf;

    if (room->seq < conf->history) {
        return 1;
    }

    return room->seq - conf->history + 1;
}


/* a key in the turn's pool: writes keep their keys until the commit */
static ngx_int_t
ngx_do_room_key(ngx_do_turn_t *t, char kind, uint64_t n, ngx_str_t *key)
{
    key->data = ngx_pnalloc(ngx_do_turn_pool(t), NGX_DO_ROOM_KEY_LEN);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    key->data[0] = (u_char) kind;
    key->data[1] = ':';
    (void) ngx_sprintf(key->data + 2, "%016xL", n);
    key->len = NGX_DO_ROOM_KEY_LEN;

    return NGX_OK;
}


/* NGX_OK with since=, NGX_DECLINED without, NGX_ERROR: not a number */
static ngx_int_t
ngx_do_room_arg_seq(ngx_do_turn_t *t, uint64_t *seq)
{
    off_t      n;
    ngx_str_t  v;

    if (ngx_do_arg(t, "since", &v) != NGX_OK) {
        return NGX_DECLINED;
    }

    n = ngx_atoof(v.data, v.len);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    *seq = (uint64_t) n;

    return NGX_OK;
}


static ngx_int_t
ngx_do_room_name_valid(ngx_str_t *name)
{
    u_char      c;
    ngx_uint_t  i;

    if (name->len == 0 || name->len > NGX_DO_ROOM_MAX_NAME) {
        return NGX_DECLINED;
    }

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}
