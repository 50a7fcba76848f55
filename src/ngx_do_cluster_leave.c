
/*
 * Cluster mode: a node that stops leaves the cluster at once.
 *
 * When nginx stops (not on a reload, nor when a new binary takes over),
 * the master, after the last of its workers exited (each stored its
 * deferred state on the way out, fenced by the epochs it held), releases
 * every lease still under this node's name and takes the name out of the
 * registry.  The other nodes then take those shards at their next tick
 * (lease/4) instead of waiting for the leases to run out (lease and a
 * tick), and nothing the workers stored can be lost to a new holder:
 * they are all gone.
 *
 * The master has no Redis connection of its own, so this is one blocking
 * connection, bounded by do_storage's timeout=; when it fails, the leases
 * run out as they would after a crash, and a line says so.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>

#include "ngx_do.h"
#include "ngx_do_redis.h"
#include "ngx_do_cluster.h"


/*
 * ARGV: prefix, name, shards.  Deletes the leases held under the name,
 * and the name in the registry; answers how many leases it released.
 */
static const char  ngx_do_cluster_leave_script[] =
    "local p, me, n = ARGV[1], ARGV[2], 0 "
    "for s = 0, tonumber(ARGV[3]) - 1 do "
    "  local k = p .. 'cluster:lease:' .. s "
    "  local v = redis.call('GET', k) "
    "  if v and string.sub(v, (string.find(v, ' ', 1, true) or #v) + 1) "
    "           == me then "
    "    redis.call('DEL', k) n = n + 1 "
    "  end "
    "end "
    "redis.call('ZREM', p .. 'cluster:nodes', me) "
    "redis.call('HDEL', p .. 'cluster:addrs', me) "
    "return n";


static redisContext *ngx_do_cluster_leave_connect(ngx_do_redis_conf_t *rc,
    ngx_log_t *log);


void
ngx_do_cluster_exit_master(ngx_cycle_t *cycle, ngx_do_cluster_conf_t *conf)
{
    u_char               shards[NGX_INT_T_LEN];
    size_t               argvlen[6];
    const char          *argv[6];
    redisReply          *reply;
    redisContext        *ctx;
    ngx_do_redis_conf_t *rc;

    if (conf == NULL || ngx_new_binary) {
        /* a new binary's workers go on as this node */
        return;
    }

    rc = conf->redis;

    ctx = ngx_do_cluster_leave_connect(rc, cycle->log);
    if (ctx == NULL) {
        return;
    }

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_do_cluster_leave_script;
    argvlen[1] = sizeof(ngx_do_cluster_leave_script) - 1;
    argv[2] = "0";
    argvlen[2] = 1;
    argv[3] = (const char *) rc->prefix.data;
    argvlen[3] = rc->prefix.len;
    argv[4] = (const char *) conf->name.data;
    argvlen[4] = conf->name.len;
    argv[5] = (const char *) shards;
    argvlen[5] = ngx_sprintf(shards, "%d", NGX_DO_SHARDS) - shards;

    reply = redisCommandArgv(ctx, 6, argv, argvlen);

    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "do: cluster: node \"%V\" left the cluster: %L "
                      "leases released, the other nodes take its shards",
                      &conf->name, (int64_t) reply->integer);

    } else {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "do: cluster: node \"%V\" could not release its "
                      "leases in Redis %V (%s): its shards wait for them "
                      "to run out",
                      &conf->name, &rc->url,
                      reply && reply->type == REDIS_REPLY_ERROR
                      ? reply->str : ctx->errstr);
    }

    if (reply) {
        freeReplyObject(reply);
    }

    redisFree(ctx);
}


/* a blocking connection, AUTH and SELECT done; NULL (logged) on failure */
static redisContext *
ngx_do_cluster_leave_connect(ngx_do_redis_conf_t *rc, ngx_log_t *log)
{
    u_char           db[NGX_INT_T_LEN];
    size_t           argvlen[3];
    ngx_uint_t       i, n;
    const char      *argv[3];
    redisReply      *reply;
    redisContext    *ctx;
    struct timeval   tv;

    tv.tv_sec = rc->timeout / 1000;
    tv.tv_usec = (rc->timeout % 1000) * 1000;

    ctx = NULL;

    for (i = 0; ; i++) {
        if (rc->unix_path.len) {
            ctx = redisConnectUnixWithTimeout((const char *) rc->unix_path.data,
                                              tv);
        } else {
            ctx = redisConnectWithTimeout((const char *) rc->addrs[i].data,
                                          (int) rc->port, tv);
        }

        if (ctx && ctx->err == 0) {
            break;
        }

        if (rc->unix_path.len || i + 1 >= rc->naddrs) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "do: cluster: cannot reach Redis %V to release "
                          "this node's leases (%s): its shards wait for "
                          "them to run out",
                          &rc->url, ctx ? ctx->errstr : "out of memory");

            if (ctx) {
                redisFree(ctx);
            }

            return NULL;
        }

        redisFree(ctx);
    }

    if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        redisFree(ctx);
        return NULL;
    }

    for (i = 0; i < 2; i++) {
        n = 0;

        if (i == 0 && rc->password.len) {
            argv[n] = "AUTH";
            argvlen[n++] = 4;

            if (rc->user.len) {
                argv[n] = (const char *) rc->user.data;
                argvlen[n++] = rc->user.len;
            }

            argv[n] = (const char *) rc->password.data;
            argvlen[n++] = rc->password.len;

        } else if (i == 1 && rc->db) {
            argv[n] = "SELECT";
            argvlen[n++] = 6;
            argv[n] = (const char *) db;
            argvlen[n++] = ngx_sprintf(db, "%ui", rc->db) - db;
        }

        if (n == 0) {
            continue;
        }

        reply = redisCommandArgv(ctx, (int) n, argv, argvlen);

        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "do: cluster: %s refused by Redis %V (%s): this "
                          "node's leases run out instead of being released",
                          argv[0], &rc->url,
                          reply ? reply->str : ctx->errstr);

            if (reply) {
                freeReplyObject(reply);
            }

            redisFree(ctx);
            return NULL;
        }

        freeReplyObject(reply);
    }

    return ctx;
}

