
/*
 * The redis storage backend's cells (ngx_do_cell_get(), ngx_do_cell_put()):
 * state that a class keeps outside objects, such as the TAT of a rate
 * limiter's key, as plain strings beside the object's keys
 * (do:{<namespace>:<64 hex ID>}:tat).  A GET reads one; one script writes
 * many at once (SET with PX, or DEL), in cluster mode in its fenced form,
 * which stores nothing unless the shard's lease is at the epoch the cells
 * were decided under.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>

#include "ngx_do.h"
#include "ngx_do_redis.h"
#include "ngx_do_cluster.h"


/* a cell command's caller, until Redis answers */
typedef struct {
    ngx_do_cell_pt             handler;
    void                      *data;
    ngx_uint_t                 shard;         /* cluster mode: a write's */
    uint64_t                   epoch;
} ngx_do_storage_redis_cell_t;


static void ngx_do_storage_redis_cell_read(void *data, void *reply);
static void ngx_do_storage_redis_cell_written(void *data, void *reply);


/* the scripts' indexes for ngx_do_redis_evalsha() */
static ngx_int_t             ngx_do_storage_redis_sha_cells;
static ngx_int_t             ngx_do_storage_redis_sha_cells_fenced;


/* cells: KEYS, and for each a value and a PX ("0": none; "": DEL) */
#define NGX_DO_STORAGE_REDIS_CELLS                                           \
    "for i = 1, #KEYS do "                                                   \
    "  local v, px = ARGV[2 * i - 1], ARGV[2 * i] "                          \
    "  if px == '' then redis.call('DEL', KEYS[i]) "                         \
    "  elseif px == '0' then redis.call('SET', KEYS[i], v) "                 \
    "  else redis.call('SET', KEYS[i], v, 'PX', px) end "                    \
    "end "                                                                   \
    "return #KEYS"

static const char  ngx_do_storage_redis_cells_script[] =
    NGX_DO_STORAGE_REDIS_CELLS;
static const char  ngx_do_storage_redis_cells_fenced_script[] =
    NGX_DO_STORAGE_REDIS_FENCE NGX_DO_STORAGE_REDIS_CELLS;


/* registered with the backend's other scripts, before the connections */
ngx_int_t
ngx_do_storage_redis_cells_init(void)
{
    ngx_do_storage_redis_sha_cells = ngx_do_redis_script(
                                   ngx_do_storage_redis_cells_script,
                                   sizeof(ngx_do_storage_redis_cells_script)
                                   - 1);
    ngx_do_storage_redis_sha_cells_fenced = ngx_do_redis_script(
                            ngx_do_storage_redis_cells_fenced_script,
                            sizeof(ngx_do_storage_redis_cells_fenced_script)
                            - 1);

    if (ngx_do_storage_redis_sha_cells == NGX_ERROR
        || ngx_do_storage_redis_sha_cells_fenced == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_do_storage_redis_cell_get(ngx_do_namespace_t *ns, u_char *id,
    ngx_do_cell_pt handler, void *data)
{
    size_t                        argvlen[2];
    const char                   *argv[2];
    ngx_do_storage_redis_cell_t  *cell;
    u_char                        key[NGX_DO_REDIS_KEY_LEN];

    if (ngx_do_storage_redis_conf->prefix.len + ns->name.len
        > NGX_DO_REDIS_MAX_NAMES)
    {
        return NGX_ERROR;
    }

    cell = ngx_alloc(sizeof(ngx_do_storage_redis_cell_t), ngx_cycle->log);
    if (cell == NULL) {
        return NGX_ERROR;
    }

    cell->handler = handler;
    cell->data = data;

    argv[0] = "GET";
    argvlen[0] = 3;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_do_storage_redis_key(key, ns, id, ":tat") - key;

    if (ngx_do_redis_command(ngx_do_storage_redis_hint(id),
                             ngx_do_storage_redis_cell_read, cell, 2, argv,
                             argvlen)
        != NGX_OK)
    {
        ngx_free(cell);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a string, nil (no value), or an error */
static void
ngx_do_storage_redis_cell_read(void *data, void *r)
{
    ngx_do_storage_redis_cell_t  *cell = data;
    redisReply                   *reply = r;

    ngx_str_t  value;

    ngx_str_null(&value);

    if (reply && reply->type == REDIS_REPLY_STRING) {
        value.data = (u_char *) reply->str;
        value.len = reply->len;
        cell->handler(cell->data, NGX_OK, &value);

    } else if (reply && reply->type == REDIS_REPLY_NIL) {
        cell->handler(cell->data, NGX_DECLINED, &value);

    } else {
        if (reply) {
            ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                                 NGX_DO_LOG_REPLY,
                                 "do: redis: unexpected reply type %d to "
                                 "a read", reply->type);
        }

        cell->handler(cell->data, NGX_ERROR, &value);
    }

    ngx_free(cell);
}


/*
 * One script: the keys, then a value and a PX for each; in cluster mode
 * its fenced form, with the lease key of the cells' shard and epoch
 */
ngx_int_t
ngx_do_storage_redis_cell_put(ngx_do_namespace_t *ns, ngx_do_cell_t *cells,
    ngx_uint_t n, uint64_t epoch, ngx_do_cell_pt handler, void *data)
{
    u_char                       *buf, *p;
    size_t                       *argvlen;
    ngx_int_t                     rc;
    ngx_uint_t                    i, argc, fenced, val;
    const char                  **argv;
    ngx_do_storage_redis_cell_t  *cell;
    u_char                        fence[NGX_DO_REDIS_FENCE_LEN];

    if (ngx_do_storage_redis_conf->prefix.len + ns->name.len
        > NGX_DO_REDIS_MAX_NAMES)
    {
        return NGX_ERROR;
    }

    fenced = (ngx_do_cluster != NULL);

    if (fenced && epoch == 0) {
        ngx_do_storage_redis_fenced("write of cells",
                                    ngx_do_id_shard(cells[0].id), 0, NULL);
        return NGX_DECLINED;
    }

    argc = 3 + 3 * n + 2 * fenced;

    /* the argument vectors, then the keys and the expiries */
    buf = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t))
                    + n * (NGX_DO_REDIS_KEY_LEN + NGX_INT64_LEN)
                    + NGX_INT_T_LEN, ngx_cycle->log);
    cell = ngx_alloc(sizeof(ngx_do_storage_redis_cell_t), ngx_cycle->log);

    if (buf == NULL || cell == NULL) {
        goto failed;
    }

    cell->handler = handler;
    cell->data = data;
    cell->shard = ngx_do_id_shard(cells[0].id);
    cell->epoch = epoch;

    argv = (const char **) buf;
    argvlen = (size_t *) (argv + argc);
    p = (u_char *) (argvlen + argc);

    ngx_do_redis_evalsha(fenced ? ngx_do_storage_redis_sha_cells_fenced
                                : ngx_do_storage_redis_sha_cells,
                         argv, argvlen);
    argv[2] = (const char *) p;
    argvlen[2] = ngx_sprintf(p, "%ui", n + fenced) - p;
    p += argvlen[2];

    /* the values after the keys (and the lease key, when fenced) */
    val = 3 + n + fenced;

    for (i = 0; i < n; i++) {
        argv[3 + i] = (const char *) p;
        p = ngx_do_storage_redis_key(p, ns, cells[i].id, ":tat");
        argvlen[3 + i] = p - (u_char *) argv[3 + i];

        argv[val + 2 * i] = cells[i].delete
                            ? "" : (const char *) cells[i].value.data;
        argvlen[val + 2 * i] = cells[i].delete ? 0 : cells[i].value.len;

        if (cells[i].delete) {
            argv[val + 2 * i + 1] = "";
            argvlen[val + 2 * i + 1] = 0;
            continue;
        }

        argv[val + 2 * i + 1] = (const char *) p;
        p = ngx_sprintf(p, "%M", cells[i].ttl);
        argvlen[val + 2 * i + 1] = p - (u_char *) argv[val + 2 * i + 1];
    }

    if (fenced) {
        ngx_do_storage_redis_fence(fence, cell->shard, epoch, &argv[3 + n],
                                   &argvlen[3 + n], &argv[argc - 1],
                                   &argvlen[argc - 1]);
    }

    /* hiredis copies the command: nothing here must outlive the call */
    rc = ngx_do_redis_command(ngx_do_storage_redis_hint(cells[0].id),
                              ngx_do_storage_redis_cell_written, cell,
                              (int) argc, argv, argvlen);
    ngx_free(buf);

    if (rc != NGX_OK) {
        ngx_free(cell);
        return NGX_ERROR;
    }

    return NGX_OK;

failed:

    if (buf) {
        ngx_free(buf);
    }

    if (cell) {
        ngx_free(cell);
    }

    return NGX_ERROR;
}


static void
ngx_do_storage_redis_cell_written(void *data, void *r)
{
    ngx_do_storage_redis_cell_t  *cell = data;
    redisReply                   *reply = r;

    size_t     n;
    ngx_int_t  rc;
    u_char     esc[NGX_DO_REDIS_ERROR_LEN];

    rc = (reply && reply->type == REDIS_REPLY_INTEGER) ? NGX_OK : NGX_ERROR;

    if (reply && ngx_do_storage_redis_refused(reply)) {
        ngx_do_storage_redis_fenced("write of cells", cell->shard,
                                    cell->epoch, reply);
        rc = NGX_DECLINED;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        n = ngx_do_log_escape(esc, sizeof(esc), (u_char *) reply->str,
                              reply->len);
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             NGX_DO_LOG_REPLY, "do: redis: a write of "
                             "cells failed: %*s", n, esc);
    }

    cell->handler(cell->data, rc, NULL);

    ngx_free(cell);
}
