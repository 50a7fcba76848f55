
/*
 * The redis storage backend's own declarations: its configuration
 * (ngx_do_storage_redis_conf.c) and the worker's Redis connections
 * (ngx_do_redis.c).
 */


#ifndef _NGX_DO_REDIS_H_INCLUDED_
#define _NGX_DO_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* a Redis error reply in a log line: its first 256 bytes, escaped */
#define NGX_DO_REDIS_ERROR_LEN    (4 * 256 + 3)


/* the longest password that password_file= takes */
#define NGX_DO_REDIS_PASSWORD_MAX 512


/*
 * addrs are the host's addresses, resolved at configuration (numeric,
 * NUL-terminated): a connection tries the next one after a failure.
 */
typedef struct {
    ngx_str_t                  url;           /* for log lines, no password */
    ngx_str_t                 *addrs;
    ngx_uint_t                 naddrs;
    in_port_t                  port;
    ngx_str_t                  unix_path;     /* NUL-terminated */
    ngx_str_t                  user;
    ngx_str_t                  password;
    ngx_uint_t                 db;
    ngx_msec_t                 timeout;
    ngx_uint_t                 pool;
    ngx_str_t                  prefix;
    unsigned                   password_file:1;
} ngx_do_redis_conf_t;


/* ngx_do_storage_redis_conf.c: do_storage's redis URL, then each parameter */
void *ngx_do_storage_redis_conf_create(ngx_conf_t *cf, ngx_str_t *url);
ngx_int_t ngx_do_storage_redis_conf_param(ngx_conf_t *cf, void *conf,
    ngx_str_t *param);


/* the reply (a redisReply *), or NULL when the connection failed first */
typedef void (*ngx_do_redis_reply_pt)(void *data, void *reply);


/*
 * Scripts: registered before ngx_do_redis_init() (the index is returned),
 * loaded on every connection with its setup (SCRIPT LOAD after AUTH and
 * SELECT), then sent as EVALSHA: ngx_do_redis_evalsha() fills argv[0]
 * and argv[1].  A NOSCRIPT answer (someone ran SCRIPT FLUSH) fails that
 * command, and the connection is made again, which loads them again.
 */
#define NGX_DO_REDIS_SCRIPTS      16

ngx_int_t ngx_do_redis_script(const char *text, size_t len);
void ngx_do_redis_evalsha(ngx_uint_t script, const char **argv,
    size_t *argvlen);

ngx_int_t ngx_do_redis_init(ngx_cycle_t *cycle, ngx_do_redis_conf_t *conf);
void ngx_do_redis_exit(void);
ngx_uint_t ngx_do_redis_ready(void);
ngx_int_t ngx_do_redis_command(ngx_uint_t hint,
    ngx_do_redis_reply_pt handler, void *data, int argc, const char **argv,
    const size_t *argvlen);


#endif /* _NGX_DO_REDIS_H_INCLUDED_ */
