
/*
 * hiredis on nginx's event loop, and the worker's Redis connections.
 *
 * The adapter wraps the hiredis socket in an ngx_connection_t and maps
 * hiredis's add/del read/write hooks onto nginx events.  hiredis reads at
 * most 16 KiB per call and an edge-triggered event does not fire again for
 * data already in the socket, so the read handler keeps reading while the
 * socket has bytes (FIONREAD).
 *
 * Each worker opens pool= connections after fork and never shares them,
 * to the addresses the host had at configuration (a worker never waits
 * for DNS; after a failure a connection tries the next address).  A
 * connection is CONNECTING (the TCP connect, then AUTH and SELECT), READY
 * (both have succeeded), or DOWN (waiting to reconnect, with a backoff from
 * 100 ms to 5 s).  A command goes to a READY connection, the hinted one
 * first; when none is, a CONNECTING one holds it, formatted, in its own
 * queue and sends it only once its setup has succeeded, so that nothing
 * runs unauthenticated or on the wrong db.  A failed AUTH or SELECT takes
 * the connection DOWN and fails what it held; commands to DOWN connections
 * fail at once, so callers answer 503 fast.  A connection whose oldest
 * command (held or sent) goes unanswered for timeout= is dropped, which
 * answers every command on it with an error.  Errors are logged at most
 * once a second (ngx_do_log_throttled()), except a failed AUTH or SELECT.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <poll.h>
#include <sys/ioctl.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include <openssl/evp.h>

#include "ngx_do.h"
#include "ngx_do_redis.h"


#define NGX_DO_REDIS_DOWN         0
#define NGX_DO_REDIS_CONNECTING   1
#define NGX_DO_REDIS_READY        2

#define NGX_DO_REDIS_BACKOFF_MIN  100
#define NGX_DO_REDIS_BACKOFF_MAX  5000


/*
 * pending counts the commands held and sent that await an answer; setup
 * the AUTH and SELECT not yet answered; held is empty unless CONNECTING.
 */
typedef struct {
    redisAsyncContext         *ac;
    ngx_connection_t          *c;
    ngx_uint_t                 state;
    ngx_uint_t                 pending;
    ngx_uint_t                 setup;
    ngx_uint_t                 addr;          /* in conf->addrs */
    ngx_queue_t                held;          /* ngx_do_redis_cmd_t */
    ngx_msec_t                 backoff;
    ngx_event_t                timeout;
    ngx_event_t                reconnect;
} ngx_do_redis_conn_t;


static void ngx_do_redis_connect(ngx_do_redis_conn_t *conn);
static void ngx_do_redis_connected(const redisAsyncContext *ac, int status);
static void ngx_do_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_do_redis_down(ngx_do_redis_conn_t *conn);
static void ngx_do_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_do_redis_timeout_handler(ngx_event_t *ev);
static ngx_int_t ngx_do_redis_setup(redisAsyncContext *ac,
    const char *name, int argc, const char **argv, const size_t *argvlen);
static void ngx_do_redis_setup_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_do_redis_set_ready(ngx_do_redis_conn_t *conn);
static void ngx_do_redis_fail_held(ngx_do_redis_conn_t *conn);
static void ngx_do_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);

static void ngx_do_redis_noscript(ngx_do_redis_conn_t *conn,
    redisReply *reply);
static ngx_int_t ngx_do_redis_attach(ngx_do_redis_conn_t *conn);
static void ngx_do_redis_add_read(void *data);
static void ngx_do_redis_del_read(void *data);
static void ngx_do_redis_add_write(void *data);
static void ngx_do_redis_del_write(void *data);
static void ngx_do_redis_cleanup(void *data);
static void ngx_do_redis_read_handler(ngx_event_t *rev);
static void ngx_do_redis_write_handler(ngx_event_t *wev);


/*
 * A command in flight: the caller's callback, and its connection.  While a
 * connection in setup holds it, it is in the connection's held queue and
 * buf is the formatted command (hiredis memory); otherwise buf is NULL.
 */
typedef struct {
    ngx_do_redis_conn_t       *conn;
    ngx_do_redis_reply_pt      handler;
    void                      *data;
    ngx_queue_t                queue;
    char                      *buf;
    size_t                     len;
} ngx_do_redis_cmd_t;


/* a script and the SHA-1 that EVALSHA names it by, in hex */
typedef struct {
    const char                *text;
    size_t                     len;
    char                       sha[40];
} ngx_do_redis_script_t;


static ngx_do_redis_script_t   ngx_do_redis_scripts[NGX_DO_REDIS_SCRIPTS];
static ngx_uint_t              ngx_do_redis_nscripts;
static ngx_do_redis_conf_t    *ngx_do_redis_conf;
static ngx_do_redis_conn_t    *ngx_do_redis_conns;
static ngx_log_t              *ngx_do_redis_log;


/* throttled: one line a second for all workers together */
static void
ngx_do_redis_error(const char *what, const char *detail)
{
    ngx_do_log_throttled(NGX_LOG_ERR, ngx_do_redis_log, 0,
                         NGX_DO_LOG_UNAVAILABLE, "do: redis %V: %s%s%s",
                         &ngx_do_redis_conf->url, what, detail ? ": " : "",
                         detail ? detail : "");
}


ngx_int_t
ngx_do_redis_init(ngx_cycle_t *cycle, ngx_do_redis_conf_t *conf)
{
    ngx_uint_t            i;
    ngx_do_redis_conn_t  *conn;

    ngx_do_redis_conf = conf;
    ngx_do_redis_log = cycle->log;

    ngx_do_redis_conns = ngx_pcalloc(cycle->pool,
                                     conf->pool * sizeof(ngx_do_redis_conn_t));
    if (ngx_do_redis_conns == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < conf->pool; i++) {
        conn = &ngx_do_redis_conns[i];
        conn->backoff = NGX_DO_REDIS_BACKOFF_MIN;
        ngx_queue_init(&conn->held);

        /*
         * Not cancelable: a worker that is shutting down waits for the
         * answers to its commands (at most timeout=) before it exits.
         */
        conn->timeout.handler = ngx_do_redis_timeout_handler;
        conn->timeout.data = conn;
        conn->timeout.log = cycle->log;

        conn->reconnect.handler = ngx_do_redis_reconnect_handler;
        conn->reconnect.data = conn;
        conn->reconnect.log = cycle->log;
        conn->reconnect.cancelable = 1;

        ngx_do_redis_connect(conn);
    }

    return NGX_OK;
}


/*
 * At exit: the last flushes were only queued in hiredis.  Write them and
 * wait for their answers, for at most timeout=, before the worker goes.
 */
static void
ngx_do_redis_drain(void)
{
    int                   n;
    ngx_uint_t            i, busy;
    ngx_msec_t            deadline;
    struct pollfd         pfd;
    ngx_do_redis_conn_t  *conn;

    deadline = ngx_current_msec + ngx_do_redis_conf->timeout;

    for ( ;; ) {
        busy = 0;

        for (i = 0; i < ngx_do_redis_conf->pool; i++) {
            conn = &ngx_do_redis_conns[i];

            if (conn->ac == NULL || conn->pending == 0) {
                continue;
            }

            busy = 1;

            redisAsyncHandleWrite(conn->ac);

            if (conn->ac == NULL) {
                continue;
            }

            pfd.fd = conn->ac->c.fd;
            pfd.events = POLLIN;
            pfd.revents = 0;

            n = poll(&pfd, 1, 10);

            if (n > 0 && conn->ac) {
                redisAsyncHandleRead(conn->ac);
            }
        }

        ngx_time_update();

        if (!busy || (ngx_msec_int_t) (ngx_current_msec - deadline) >= 0) {
            return;
        }
    }
}


void
ngx_do_redis_exit(void)
{
    ngx_uint_t            i;
    ngx_do_redis_conn_t  *conn;

    if (ngx_do_redis_conns == NULL) {
        return;
    }

    ngx_do_redis_drain();

    for (i = 0; i < ngx_do_redis_conf->pool; i++) {
        conn = &ngx_do_redis_conns[i];

        if (conn->timeout.timer_set) {
            ngx_del_timer(&conn->timeout);
        }

        if (conn->reconnect.timer_set) {
            ngx_del_timer(&conn->reconnect);
        }

        if (conn->ac) {
            /* answers what is in flight with errors, then closes */
            conn->ac->onDisconnect = NULL;
            redisAsyncFree(conn->ac);
            conn->ac = NULL;
        }

        conn->state = NGX_DO_REDIS_DOWN;
        ngx_do_redis_fail_held(conn);
    }

    ngx_do_redis_conns = NULL;
}


ngx_uint_t
ngx_do_redis_ready(void)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; ngx_do_redis_conns && i < ngx_do_redis_conf->pool; i++) {
        n += (ngx_do_redis_conns[i].state == NGX_DO_REDIS_READY);
    }

    return n;
}


/*
 * Sends one command on the connection the hint picks (so that one
 * object's commands stay in order), or on the next ready one, or holds it
 * on a connection whose AUTH and SELECT have not answered yet.  NGX_OK:
 * the handler will run with the reply, or with NULL if the connection
 * fails first.  NGX_ERROR: no connection can take it now (the handler will
 * not run).
 */
ngx_int_t
ngx_do_redis_command(ngx_uint_t hint, ngx_do_redis_reply_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen)
{
    int                   len;
    ngx_uint_t            i;
    ngx_do_redis_cmd_t   *cmd;
    ngx_do_redis_conn_t  *conn;

    if (ngx_do_redis_conns == NULL) {
        return NGX_ERROR;
    }

    cmd = ngx_calloc(sizeof(ngx_do_redis_cmd_t), ngx_do_redis_log);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->conn = NULL;
    cmd->handler = handler;
    cmd->data = data;
    ngx_queue_init(&cmd->queue);
    cmd->buf = NULL;
    cmd->len = 0;

    for (i = 0; i < ngx_do_redis_conf->pool; i++) {
        conn = &ngx_do_redis_conns[(hint + i) % ngx_do_redis_conf->pool];

        if (conn->ac == NULL || conn->state != NGX_DO_REDIS_READY) {
            continue;
        }

        cmd->conn = conn;

        if (redisAsyncCommandArgv(conn->ac, ngx_do_redis_reply, cmd, argc,
                                  argv, argvlen)
            == REDIS_OK)
        {
            goto sent;
        }

        /* a connection on its way down: try the next one */
        ngx_do_redis_error("command not sent", conn->ac->errstr);
    }

    for (i = 0; i < ngx_do_redis_conf->pool; i++) {
        conn = &ngx_do_redis_conns[(hint + i) % ngx_do_redis_conf->pool];

        if (conn->ac == NULL || conn->state != NGX_DO_REDIS_CONNECTING) {
            continue;
        }

        len = redisFormatCommandArgv(&cmd->buf, argc, argv, argvlen);
        if (len < 0) {
            break;
        }

        cmd->conn = conn;
        cmd->len = len;
        ngx_queue_insert_tail(&conn->held, &cmd->queue);

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_do_redis_log, 0,
                       "do: redis command held until setup, %uz bytes",
                       cmd->len);
        goto sent;
    }

    ngx_free(cmd);
    ngx_do_redis_error("is unavailable", NULL);

    return NGX_ERROR;

sent:

    conn = cmd->conn;

    if (conn->pending++ == 0) {
        ngx_add_timer(&conn->timeout, ngx_do_redis_conf->timeout);
    }

    return NGX_OK;
}


static void
ngx_do_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_do_redis_cmd_t   *cmd = privdata;
    ngx_do_redis_conn_t  *conn;

    conn = cmd->conn;

    if (conn->pending && --conn->pending == 0) {
        if (conn->timeout.timer_set) {
            ngx_del_timer(&conn->timeout);
        }

    } else if (r != NULL) {
        /* the next command has its own full timeout from here */
        ngx_add_timer(&conn->timeout, ngx_do_redis_conf->timeout);
    }

    if (r != NULL && conn->state == NGX_DO_REDIS_READY) {
        conn->backoff = NGX_DO_REDIS_BACKOFF_MIN;
        ngx_do_redis_noscript(conn, r);
    }

    cmd->handler(cmd->data, r);

    ngx_free(cmd);
}


ngx_int_t
ngx_do_redis_script(const char *text, size_t len)
{
    u_char                  *p;
    ngx_uint_t               i;
    unsigned int             n;
    ngx_do_redis_script_t   *s;
    u_char                   md[EVP_MAX_MD_SIZE];
    static u_char            hex[] = "0123456789abcdef";

    for (i = 0; i < ngx_do_redis_nscripts; i++) {
        if (ngx_do_redis_scripts[i].text == text) {
            return i;
        }
    }

    if (ngx_do_redis_nscripts == NGX_DO_REDIS_SCRIPTS
        || EVP_Digest(text, len, md, &n, EVP_sha1(), NULL) != 1
        || n != 20)
    {
        return NGX_ERROR;
    }

    s = &ngx_do_redis_scripts[ngx_do_redis_nscripts];
    s->text = text;
    s->len = len;

    for (p = (u_char *) s->sha, i = 0; i < 20; i++) {
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 0xf];
    }

    return ngx_do_redis_nscripts++;
}


void
ngx_do_redis_evalsha(ngx_uint_t script, const char **argv, size_t *argvlen)
{
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = ngx_do_redis_scripts[script].sha;
    argvlen[1] = 40;
}


/*
 * NOSCRIPT: the scripts this connection loaded are gone (SCRIPT FLUSH, or
 * a Redis that lost them without dropping the connection).  The command
 * fails; after the replies still due the connection is made again, and
 * loads them again.
 */
static void
ngx_do_redis_noscript(ngx_do_redis_conn_t *conn, redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ERROR || reply->len < 8
        || ngx_strncmp(reply->str, "NOSCRIPT", 8) != 0
        || conn->ac == NULL)
    {
        return;
    }

    ngx_do_log_throttled(NGX_LOG_ERR, ngx_do_redis_log, 0,
                         NGX_DO_LOG_UNAVAILABLE,
                         "do: redis %V: the scripts were flushed, "
                         "connecting again to load them",
                         &ngx_do_redis_conf->url);

    conn->state = NGX_DO_REDIS_DOWN;
    redisAsyncDisconnect(conn->ac);
}


static void
ngx_do_redis_connect(ngx_do_redis_conn_t *conn)
{
    const char          *argv[3];
    size_t               argvlen[3];
    ngx_uint_t           i;
    redisAsyncContext   *ac;
    ngx_do_redis_conf_t *conf;
    u_char               db[NGX_INT_T_LEN];

    conf = ngx_do_redis_conf;

    if (conf->unix_path.len) {
        ac = redisAsyncConnectUnix((const char *) conf->unix_path.data);

    } else {
        /* a numeric address: hiredis resolves nothing */
        ac = redisAsyncConnect((const char *) conf->addrs[conn->addr].data,
                               (int) conf->port);
    }

    if (ac == NULL) {
        ngx_do_redis_error("cannot allocate a connection", NULL);
        ngx_do_redis_down(conn);
        return;
    }

    if (ac->err) {
        ngx_do_redis_error("connect failed", ac->errstr);
        redisAsyncFree(ac);
        ngx_do_redis_down(conn);
        return;
    }

    ac->data = conn;
    conn->ac = ac;
    conn->setup = 0;

    if (ngx_do_redis_attach(conn) != NGX_OK) {
        conn->ac = NULL;
        redisAsyncFree(ac);
        ngx_do_redis_down(conn);
        return;
    }

    redisAsyncSetConnectCallback(ac, ngx_do_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_do_redis_disconnected);

    conn->state = NGX_DO_REDIS_CONNECTING;

    /* AUTH and SELECT go first; hiredis keeps the order */
    if (conf->password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;

        if (conf->user.len) {
            argv[1] = (const char *) conf->user.data;
            argvlen[1] = conf->user.len;
            argv[2] = (const char *) conf->password.data;
            argvlen[2] = conf->password.len;

            if (ngx_do_redis_setup(ac, "AUTH", 3, argv, argvlen) != NGX_OK) {
                goto failed;
            }

        } else {
            argv[1] = (const char *) conf->password.data;
            argvlen[1] = conf->password.len;

            if (ngx_do_redis_setup(ac, "AUTH", 2, argv, argvlen) != NGX_OK) {
                goto failed;
            }
        }
    }

    if (conf->db) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%ui", conf->db) - db;

        if (ngx_do_redis_setup(ac, "SELECT", 2, argv, argvlen) != NGX_OK) {
            goto failed;
        }
    }

    /* the scripts, so that EVALSHA finds them on this connection */
    argv[0] = "SCRIPT";
    argvlen[0] = 6;
    argv[1] = "LOAD";
    argvlen[1] = 4;

    for (i = 0; i < ngx_do_redis_nscripts; i++) {
        argv[2] = ngx_do_redis_scripts[i].text;
        argvlen[2] = ngx_do_redis_scripts[i].len;

        if (ngx_do_redis_setup(ac, "SCRIPT LOAD", 3, argv, argvlen)
            != NGX_OK)
        {
            goto failed;
        }
    }

    return;

failed:

    /* not connected yet: hiredis calls no disconnect hook */
    ngx_do_redis_error("setup not sent", ac->errstr);
    conn->ac = NULL;
    redisAsyncFree(ac);
    ngx_do_redis_down(conn);
}


/* one setup command; the connection is READY once all have succeeded */
static ngx_int_t
ngx_do_redis_setup(redisAsyncContext *ac, const char *name, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_do_redis_conn_t  *conn = ac->data;

    if (redisAsyncCommandArgv(ac, ngx_do_redis_setup_reply, (void *) name,
                              argc, argv, argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    conn->setup++;

    return NGX_OK;
}


static void
ngx_do_redis_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    size_t                n;
    redisReply           *reply = r;
    ngx_do_redis_conn_t  *conn;
    u_char                esc[NGX_DO_REDIS_ERROR_LEN];

    conn = ac->data;

    if (reply == NULL || conn->state != NGX_DO_REDIS_CONNECTING) {
        /* the connection is going down already (e.g. a failed AUTH) */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* a wrong password or db: nothing on this connection can work */
        n = ngx_do_log_escape(esc, sizeof(esc), (u_char *) reply->str,
                              reply->len);
        ngx_log_error(NGX_LOG_ERR, ngx_do_redis_log, 0,
                      "do: redis %V: %s failed: %*s",
                      &ngx_do_redis_conf->url, (char *) privdata, n, esc);

        conn->state = NGX_DO_REDIS_DOWN;
        ngx_do_redis_fail_held(conn);

        /* after the replies still due; the disconnect hook reconnects */
        redisAsyncDisconnect(ac);
        return;
    }

    if (--conn->setup == 0) {
        ngx_do_redis_set_ready(conn);
    }
}


static void
ngx_do_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_do_redis_conn_t  *conn = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        ngx_do_redis_error("connect failed", ac->errstr);
        conn->ac = NULL;
        ngx_do_redis_down(conn);
        return;
    }

    if (conn->setup == 0) {
        ngx_do_redis_set_ready(conn);
    }
}


/* AUTH and SELECT have succeeded: what waited for them goes out in order */
static void
ngx_do_redis_set_ready(ngx_do_redis_conn_t *conn)
{
    ngx_queue_t         *q;
    ngx_do_redis_cmd_t  *cmd;

    conn->state = NGX_DO_REDIS_READY;

    ngx_log_error(NGX_LOG_INFO, ngx_do_redis_log, 0,
                  "do: redis %V: connected", &ngx_do_redis_conf->url);

    while (!ngx_queue_empty(&conn->held)
           && conn->state == NGX_DO_REDIS_READY && conn->ac)
    {
        q = ngx_queue_head(&conn->held);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_do_redis_cmd_t, queue);

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_do_redis_log, 0,
                       "do: redis held command sent, %uz bytes", cmd->len);

        if (redisAsyncFormattedCommand(conn->ac, ngx_do_redis_reply, cmd,
                                       cmd->buf, cmd->len)
            == REDIS_OK)
        {
            redisFreeCommand(cmd->buf);
            cmd->buf = NULL;
            continue;
        }

        ngx_do_redis_error("command not sent", conn->ac->errstr);

        ngx_queue_insert_head(&conn->held, q);
        break;
    }

    ngx_do_redis_fail_held(conn);
}


/*
 * The setup failed or the connection is down: the commands it held are
 * answered with NULL now, so that their calls get 503 at once.
 */
static void
ngx_do_redis_fail_held(ngx_do_redis_conn_t *conn)
{
    ngx_queue_t         *q;
    ngx_do_redis_cmd_t  *cmd;

    while (!ngx_queue_empty(&conn->held)) {
        q = ngx_queue_head(&conn->held);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_do_redis_cmd_t, queue);

        redisFreeCommand(cmd->buf);
        cmd->buf = NULL;

        ngx_do_redis_reply(conn->ac, NULL, cmd);
    }
}


static void
ngx_do_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_do_redis_conn_t  *conn = ac->data;

    if (status != REDIS_OK) {
        ngx_do_redis_error("connection lost", ac->errstr);
    }

    conn->ac = NULL;
    ngx_do_redis_down(conn);
}


static void
ngx_do_redis_down(ngx_do_redis_conn_t *conn)
{
    conn->state = NGX_DO_REDIS_DOWN;
    ngx_do_redis_fail_held(conn);
    conn->pending = 0;

    /* the next try goes to the host's next address, if it has several */
    if (ngx_do_redis_conf->naddrs) {
        conn->addr = (conn->addr + 1) % ngx_do_redis_conf->naddrs;
    }

    if (conn->timeout.timer_set) {
        ngx_del_timer(&conn->timeout);
    }

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (!conn->reconnect.timer_set) {
        ngx_add_timer(&conn->reconnect, conn->backoff);
        conn->backoff = ngx_min(conn->backoff * 2, NGX_DO_REDIS_BACKOFF_MAX);
    }
}


static void
ngx_do_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_do_redis_conn_t  *conn = ev->data;

    if (conn->ac == NULL) {
        ngx_do_redis_connect(conn);
    }
}


/* the oldest command waited too long: drop the connection and its queue */
static void
ngx_do_redis_timeout_handler(ngx_event_t *ev)
{
    ngx_do_redis_conn_t  *conn = ev->data;
    redisAsyncContext    *ac;

    ngx_do_redis_error("did not answer in time, reconnecting", NULL);

    ac = conn->ac;

    if (ac == NULL) {
        return;
    }

    /* answers every command on it with NULL; may call the disconnect hook */
    conn->state = NGX_DO_REDIS_DOWN;
    redisAsyncFree(ac);

    if (conn->ac == ac) {
        /* it was still connecting: hiredis called no disconnect hook */
        conn->ac = NULL;
        ngx_do_redis_down(conn);
    }
}


/* the adapter */


static ngx_int_t
ngx_do_redis_attach(ngx_do_redis_conn_t *conn)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(conn->ac->c.fd, ngx_do_redis_log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = conn;
    c->read->handler = ngx_do_redis_read_handler;
    c->write->handler = ngx_do_redis_write_handler;
    c->read->log = ngx_do_redis_log;
    c->write->log = ngx_do_redis_log;

    conn->c = c;

    conn->ac->ev.data = conn;
    conn->ac->ev.addRead = ngx_do_redis_add_read;
    conn->ac->ev.delRead = ngx_do_redis_del_read;
    conn->ac->ev.addWrite = ngx_do_redis_add_write;
    conn->ac->ev.delWrite = ngx_do_redis_del_write;
    conn->ac->ev.cleanup = ngx_do_redis_cleanup;

    return NGX_OK;
}


static void
ngx_do_redis_add_read(void *data)
{
    ngx_do_redis_conn_t  *conn = data;

    if (conn->c && !conn->c->read->active) {
        (void) ngx_add_event(conn->c->read, NGX_READ_EVENT,
                             (ngx_event_flags & NGX_USE_CLEAR_EVENT)
                             ? NGX_CLEAR_EVENT : NGX_LEVEL_EVENT);
    }
}


static void
ngx_do_redis_del_read(void *data)
{
    ngx_do_redis_conn_t  *conn = data;

    if (conn->c && conn->c->read->active) {
        (void) ngx_del_event(conn->c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_do_redis_add_write(void *data)
{
    ngx_do_redis_conn_t  *conn = data;

    if (conn->c && !conn->c->write->active) {
        (void) ngx_add_event(conn->c->write, NGX_WRITE_EVENT,
                             (ngx_event_flags & NGX_USE_CLEAR_EVENT)
                             ? NGX_CLEAR_EVENT : NGX_LEVEL_EVENT);
    }
}


static void
ngx_do_redis_del_write(void *data)
{
    ngx_do_redis_conn_t  *conn = data;

    if (conn->c && conn->c->write->active) {
        (void) ngx_del_event(conn->c->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis is about to close its socket: forget the nginx connection */
static void
ngx_do_redis_cleanup(void *data)
{
    ngx_do_redis_conn_t  *conn = data;
    ngx_connection_t     *c;

    c = conn->c;

    if (c == NULL) {
        return;
    }

    conn->c = NULL;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* hiredis closes the socket itself */
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static void
ngx_do_redis_read_handler(ngx_event_t *rev)
{
    int                   n;
    ngx_socket_t          fd;
    ngx_connection_t     *c;
    ngx_do_redis_conn_t  *conn;

    c = rev->data;
    conn = c->data;
    fd = c->fd;

    for ( ;; ) {
        redisAsyncHandleRead(conn->ac);

        /* the connection may be gone after any callback */
        if (conn->ac == NULL || conn->c == NULL) {
            return;
        }

        if (ioctl(fd, FIONREAD, &n) == -1 || n <= 0) {
            return;
        }
    }
}


static void
ngx_do_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t     *c;
    ngx_do_redis_conn_t  *conn;

    c = wev->data;
    conn = c->data;

    if (conn->ac) {
        redisAsyncHandleWrite(conn->ac);
    }
}
