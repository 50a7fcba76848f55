
/*
 * The redis storage backend's configuration: do_storage's URL and its
 * parameters.  A redis:// URL's host is resolved here, as nginx resolves
 * upstream servers, so that a worker connects to addresses and never
 * waits for DNS; a redis+unix:// URL names a socket.  The password comes
 * from the URL or from password_file=, read here; no line shows it: a URL
 * in a message has its credentials hidden (ngx_do_log_url()).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"
#include "ngx_do_redis.h"


static void ngx_do_storage_redis_conf_invalid(ngx_conf_t *cf, ngx_str_t *url,
    char *reason);
static ngx_int_t ngx_do_storage_redis_conf_url_unix(ngx_conf_t *cf,
    ngx_do_redis_conf_t *rc, ngx_str_t *url);
static ngx_int_t ngx_do_storage_redis_conf_url_tcp(ngx_conf_t *cf,
    ngx_do_redis_conf_t *rc, ngx_str_t *url);
static ngx_int_t ngx_do_storage_redis_conf_addrs(ngx_conf_t *cf,
    ngx_do_redis_conf_t *rc, ngx_url_t *u);
static ngx_int_t ngx_do_storage_redis_conf_password_file(ngx_conf_t *cf,
    ngx_do_redis_conf_t *rc, ngx_str_t *name);


/*
 * do_storage redis://[user:password@]host[:port][/db] [timeout=] [pool=]
 *            [prefix=] [password_file=]
 * do_storage redis+unix:///path[?db=N] [...]
 *
 * The parts of the URL; the password is kept out of log lines.
 */
void *
ngx_do_storage_redis_conf_create(ngx_conf_t *cf, ngx_str_t *url)
{
    ngx_int_t             rv;
    ngx_do_redis_conf_t  *rc;

    rc = ngx_pcalloc(cf->pool, sizeof(ngx_do_redis_conf_t));
    if (rc == NULL) {
        return NULL;
    }

    rc->timeout = 2000;
    rc->pool = 1;
    ngx_str_set(&rc->prefix, "do:");

    if (url->data[5] == '+') {
        rv = ngx_do_storage_redis_conf_url_unix(cf, rc, url);

    } else {
        rv = ngx_do_storage_redis_conf_url_tcp(cf, rc, url);
    }

    if (rv == NGX_DECLINED) {
        ngx_do_storage_redis_conf_invalid(cf, url, NULL);
        return NULL;
    }

    return (rv == NGX_OK) ? rc : NULL;
}


/* "invalid redis URL", or the reason, with the URL's credentials hidden */
static void
ngx_do_storage_redis_conf_invalid(ngx_conf_t *cf, ngx_str_t *url, char *reason)
{
    u_char  *p, buf[NGX_MAX_CONF_ERRSTR];

    p = ngx_do_log_url(buf, buf + sizeof(buf), url);

    if (reason == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid redis URL \"%*s\"",
                           (size_t) (p - buf), buf);
        return;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in redis URL \"%*s\"",
                       reason, (size_t) (p - buf), buf);
}


/* redis+unix:///path[?db=N]; NGX_DECLINED: invalid */
static ngx_int_t
ngx_do_storage_redis_conf_url_unix(ngx_conf_t *cf, ngx_do_redis_conf_t *rc,
    ngx_str_t *url)
{
    u_char     *p, *last, *q;
    ngx_int_t   n;

    last = url->data + url->len;
    p = url->data + sizeof("redis+unix://") - 1;
    q = ngx_strlchr(p, last, '?');

    if (q) {
        if (last - q < 5 || ngx_strncmp(q, "?db=", 4) != 0) {
            return NGX_DECLINED;
        }

        n = ngx_atoi(q + 4, last - q - 4);
        if (n == NGX_ERROR) {
            return NGX_DECLINED;
        }

        rc->db = n;
        last = q;
    }

    if (p == last || *p != '/') {
        return NGX_DECLINED;
    }

    rc->unix_path.len = last - p;
    rc->unix_path.data = ngx_pnalloc(cf->pool, rc->unix_path.len + 1);
    if (rc->unix_path.data == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(rc->unix_path.data, p, rc->unix_path.len + 1);

    rc->url.len = sizeof("redis+unix://") - 1 + rc->unix_path.len;
    rc->url.data = ngx_pnalloc(cf->pool, rc->url.len);
    if (rc->url.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(rc->url.data, "redis+unix://%V", &rc->unix_path);

    return NGX_OK;
}


/*
 * redis://[user:password@]host[:port][/db]; NGX_DECLINED: invalid.  The
 * host is resolved here, as nginx resolves upstream servers, so that a
 * worker connects to addresses and never waits for DNS; the name stays in
 * the URL of log lines.  In "x@host", x is the password (requirepass);
 * rc->user.data is set only when the URL has "user:password@".
 */
static ngx_int_t
ngx_do_storage_redis_conf_url_tcp(ngx_conf_t *cf, ngx_do_redis_conf_t *rc,
    ngx_str_t *url)
{
    u_char     *p, *last, *at, *colon, *slash, *q;
    ngx_int_t   n;
    ngx_url_t   u;

    last = url->data + url->len;
    p = url->data + sizeof("redis://") - 1;

    at = NULL;

    for (q = p; q < last; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    if (at) {
        colon = ngx_strlchr(p, at, ':');

        if (colon == NULL) {
            /* redis://password@host */
            rc->password.data = p;
            rc->password.len = at - p;

        } else {
            rc->user.data = p;
            rc->user.len = colon - p;
            rc->password.data = colon + 1;
            rc->password.len = at - colon - 1;
        }

        p = at + 1;
    }

    slash = ngx_strlchr(p, last, '/');

    if (slash) {
        n = ngx_atoi(slash + 1, last - slash - 1);
        if (n == NGX_ERROR) {
            return NGX_DECLINED;
        }

        rc->db = n;
        last = slash;
    }

    if (last - p >= 5 && ngx_strncasecmp(p, (u_char *) "unix:", 5) == 0) {
        return NGX_DECLINED;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = p;
    u.url.len = last - p;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err == NULL) {
            return NGX_ERROR;
        }

        ngx_do_storage_redis_conf_invalid(cf, url, u.err);
        return NGX_ERROR;
    }

    rc->port = u.no_port ? u.default_port : u.port;

    if (ngx_do_storage_redis_conf_addrs(cf, rc, &u) != NGX_OK) {
        return NGX_ERROR;
    }

    rc->url.data = ngx_pnalloc(cf->pool, u.host.len + 64);
    if (rc->url.data == NULL) {
        return NGX_ERROR;
    }

    rc->url.len = ngx_sprintf(rc->url.data, "redis://%V:%d/%ui", &u.host,
                              (int) rc->port, rc->db)
                  - rc->url.data;

    return NGX_OK;
}


/* the resolved addresses as hiredis takes them: numeric, NUL-terminated */
static ngx_int_t
ngx_do_storage_redis_conf_addrs(ngx_conf_t *cf, ngx_do_redis_conf_t *rc,
    ngx_url_t *u)
{
    size_t      len;
    ngx_uint_t  i;

    rc->addrs = ngx_pcalloc(cf->pool, u->naddrs * sizeof(ngx_str_t));
    if (rc->addrs == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < u->naddrs; i++) {
        rc->addrs[i].data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
        if (rc->addrs[i].data == NULL) {
            return NGX_ERROR;
        }

        len = ngx_sock_ntop(u->addrs[i].sockaddr, u->addrs[i].socklen,
                            rc->addrs[i].data, NGX_SOCKADDR_STRLEN, 0);
        rc->addrs[i].data[len] = '\0';
        rc->addrs[i].len = len;
    }

    rc->naddrs = u->naddrs;

    return NGX_OK;
}


/* timeout=, pool=, prefix=, password_file= */
ngx_int_t
ngx_do_storage_redis_conf_param(ngx_conf_t *cf, void *conf, ngx_str_t *param)
{
    ngx_do_redis_conf_t  *rc = conf;

    ngx_int_t  n;
    ngx_str_t  s;

    if (ngx_strncmp(param->data, "timeout=", 8) == 0) {
        s.data = param->data + 8;
        s.len = param->len - 8;

        rc->timeout = ngx_parse_time(&s, 0);

        if (rc->timeout == (ngx_msec_t) NGX_ERROR || rc->timeout == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid timeout \"%V\"", param);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_strncmp(param->data, "pool=", 5) == 0) {
        n = ngx_atoi(param->data + 5, param->len - 5);

        if (n < 1 || n > 64) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid pool \"%V\", expected 1..64", param);
            return NGX_ERROR;
        }

        rc->pool = n;
        return NGX_OK;
    }

    if (ngx_strncmp(param->data, "prefix=", 7) == 0) {
        rc->prefix.data = param->data + 7;
        rc->prefix.len = param->len - 7;

        if (rc->prefix.len > 128
            || ngx_strlchr(rc->prefix.data, rc->prefix.data + rc->prefix.len,
                           '{'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid prefix \"%V\": at most 128 bytes, "
                               "no \"{\"", param);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_strncmp(param->data, "password_file=", 14) == 0) {
        s.data = param->data + 14;
        s.len = param->len - 14;

        return ngx_do_storage_redis_conf_password_file(cf, rc, &s);
    }

    if (ngx_strncmp(param->data, "password=", 9) == 0) {
        /* not echoed as an invalid parameter: it may be a password */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "do_storage has no password= parameter, use "
                           "password_file= or the URL");
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * password_file=PATH: the password, read now: at most 512 bytes, a final
 * newline stripped.  The URL may name an ACL user ("user@" or "user:@")
 * but not hold a password too.  No line ever shows the content.
 */
static ngx_int_t
ngx_do_storage_redis_conf_password_file(ngx_conf_t *cf, ngx_do_redis_conf_t *rc,
    ngx_str_t *name)
{
    ssize_t     n;
    ngx_str_t   file;
    u_char      buf[NGX_DO_REDIS_PASSWORD_MAX + 3];

    if (rc->password_file) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate redis password_file=");
        return NGX_ERROR;
    }

    if (rc->password.len) {
        if (rc->user.data) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the redis URL holds a password already, "
                               "password_file= would be a second one");
            return NGX_ERROR;
        }

        /* "user@host": with password_file=, that is the ACL user */
        rc->user = rc->password;
        ngx_str_null(&rc->password);
    }

    file = *name;

    if (file.len == 0 || ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis password_file= \"%V\"", name);
        return NGX_ERROR;
    }

    rc->password_file = 1;

    n = ngx_do_id_read_secret(cf, &file, buf, sizeof(buf));
    if (n == -1) {
        return NGX_ERROR;
    }

    if (n && buf[n - 1] == '\n') {
        n--;

        if (n && buf[n - 1] == '\r') {
            n--;
        }
    }

    if (n == 0 || n > NGX_DO_REDIS_PASSWORD_MAX) {
        ngx_explicit_memzero(buf, sizeof(buf));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "redis password file \"%V\" is %s", &file,
                           n ? "over " ngx_value(NGX_DO_REDIS_PASSWORD_MAX)
                               " bytes"
                             : "empty");
        return NGX_ERROR;
    }

    rc->password.len = n;
    rc->password.data = ngx_pnalloc(cf->pool, n);
    if (rc->password.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(rc->password.data, buf, n);
    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_OK;
}
