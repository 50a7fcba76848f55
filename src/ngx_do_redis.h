
/*
 * The redis storage backend's own declarations: its configuration
 * (ngx_do_storage_redis_conf.c) and the worker's Redis connections
 * (ngx_do_redis.c).
 */


#ifndef _NGX_DO_REDIS_H_INCLUDED_
#define _NGX_DO_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>

#include "ngx_do.h"


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

/*
 * The backend's parts shared by ngx_do_storage_redis.c and
 * ngx_do_storage_redis_cells.c: the configuration, an object's key
 * (prefix, "{namespace:hex ID}", suffix), the connection an object's
 * commands go over, and the fence of cluster mode (fence: a fenced
 * script's last key and argument, written at p; refused: the script
 * answered [-4, the lease]; fenced: its log line).
 */

/* prefix and namespace name together; checked, and bounded in the config */
#define NGX_DO_REDIS_MAX_NAMES    512
#define NGX_DO_REDIS_KEY_LEN      (NGX_DO_ID_HEX_LEN + 16                     \
                                   + NGX_DO_REDIS_MAX_NAMES)

/* a fenced script's lease key and epoch, written one after the other */
#define NGX_DO_REDIS_FENCE_LEN    (NGX_DO_REDIS_MAX_NAMES + 64 + NGX_INT64_LEN)

/*
 * The fence, before the body of a fenced script: the last key is the
 * shard's lease, the last argument the epoch; both leave KEYS and ARGV,
 * so that the body sees what it sees unfenced
 */
#define NGX_DO_STORAGE_REDIS_FENCE                                           \
    "local l = redis.call('GET', table.remove(KEYS)) "                       \
    "local e = table.remove(ARGV) "                                          \
    "if not l or string.sub(l, 1, #e + 1) ~= e .. ' ' then "                 \
    "  return {-4, l or ''} "                                                \
    "end "


extern ngx_do_redis_conf_t  *ngx_do_storage_redis_conf;

u_char *ngx_do_storage_redis_key(u_char *p, ngx_do_namespace_t *ns,
    u_char *id, const char *suffix);
ngx_uint_t ngx_do_storage_redis_hint(u_char *id);
void ngx_do_storage_redis_fence(u_char *p, ngx_uint_t shard, uint64_t epoch,
    const char **key, size_t *key_len, const char **arg, size_t *arg_len);
ngx_uint_t ngx_do_storage_redis_refused(redisReply *reply);
void ngx_do_storage_redis_fenced(const char *what, ngx_uint_t shard,
    uint64_t epoch, redisReply *reply);

ngx_int_t ngx_do_storage_redis_cells_init(void);
ngx_int_t ngx_do_storage_redis_cell_get(ngx_do_namespace_t *ns, u_char *id,
    ngx_do_cell_pt handler, void *data);
ngx_int_t ngx_do_storage_redis_cell_put(ngx_do_namespace_t *ns,
    ngx_do_cell_t *cells, ngx_uint_t n, uint64_t epoch,
    ngx_do_cell_pt handler, void *data);


#endif /* _NGX_DO_REDIS_H_INCLUDED_ */
