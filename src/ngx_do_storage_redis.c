
/*
 * The redis storage backend: objects' state in Redis, so that it survives
 * a full stop of nginx and can be shared by several nginx nodes.  Its
 * do_storage URL and parameters are parsed in ngx_do_storage_redis_conf.c;
 * it opens and closes the worker's connections (src/ngx_do_redis.c).
 *
 * Layout, with the default prefix "do:" (one hash tag per object, so that
 * both keys of an object land on one Redis Cluster slot):
 *
 *   do:{<namespace>:<64 hex ID>}:kv   hash: key -> "<version>:<value>"
 *   do:{<namespace>:<64 hex ID>}:v    string: the object's version
 *   do:{<namespace>:<64 hex ID>}:b    string: the bytes the object counts
 *                                     for its namespace (absent: none)
 *   do:{<namespace>:<64 hex ID>}:tat  string: a cell (ngx_do_cell_put()),
 *                                     the TAT of a rate limiter's key
 *   do:alarms:<shard>                 sorted set: "<namespace>:<64 hex ID>"
 *                                     scored by its next alarm (ms)
 *   do:quota:<namespace>              hash: bytes, objects (the quotas)
 *
 * An object is loaded whole when it activates (one script: the version and
 * HGETALL); from then on its reads never leave the worker.  A turn's batch
 * is one script that checks the version the turn saw, applies every write
 * and bumps the version, atomically like MULTI/EXEC but with the
 * precondition inside the same round trip; a version of "-1" skips the
 * check (deferred state).  A commit that finds another version answers
 * with the object's current state, so that the turns can run again at once
 * without another round trip to load it.  The loser also claims the next
 * commit (a short-lived :c key): the others are refused until it is in,
 * so that a writer that keeps winning cannot starve another (an old and a
 * new owner during a reload).  The version key stays when the
 * hash empties, so that versions (and ETags) never repeat; state with an
 * expiry (ngx_do_set_expire) gets PEXPIRE on both keys, so that nothing of
 * a forgotten rate limiter stays in Redis.  A commit that changes an
 * object's alarms updates its shard's alarm index in the same script (so
 * on Redis Cluster the index and the object must share a node: see the
 * README).  The same script keeps the namespace's count for its quotas
 * and refuses a batch that would take it over one, before it writes
 * anything; an object without :b (written before counts existed, or
 * with an expiry until now) is counted whole when it is next written.
 *
 * Cells, state that a class keeps outside objects, are plain strings
 * (ngx_do_storage_redis_cells.c).
 *
 * Fencing, in cluster mode: each script that writes (the commit, the
 * check, the cells) runs in a fenced form, which gets the shard's lease
 * key as its last key and the epoch the writes were made under as its
 * last argument, and writes nothing (it answers -4 and the lease's value,
 * "<epoch> <node>") unless the lease is at that epoch: a node paused or
 * cut off past its lease cannot store anything once another holds the
 * shard.  Loads need no fence: a stale holder finds out at its commit.
 * Outside cluster mode the scripts are as they were.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>

#include "ngx_do.h"
#include "ngx_do_redis.h"
#include "ngx_do_cluster.h"


static ngx_int_t ngx_do_storage_redis_init_worker(ngx_cycle_t *cycle,
    void *conf);
static void ngx_do_storage_redis_usage(ngx_do_storage_usage_t *usage);

static ngx_int_t ngx_do_storage_redis_load(ngx_do_namespace_t *ns,
    u_char *id, ngx_do_storage_req_t *req);
static void ngx_do_storage_redis_loaded(void *data, void *reply);
static ngx_int_t ngx_do_storage_redis_state(ngx_do_storage_req_t *req,
    redisReply *version, redisReply *fields);
static ngx_int_t ngx_do_storage_redis_commit(ngx_do_namespace_t *ns,
    u_char *id, uint64_t expected, ngx_do_batch_t *batch,
    ngx_do_storage_req_t *req);
static ngx_uint_t ngx_do_storage_redis_commit_args(ngx_do_namespace_t *ns,
    ngx_do_batch_t *batch, uint64_t expected, u_char *kv, const char **argv,
    size_t *argvlen, u_char *e);
static void ngx_do_storage_redis_committed(void *data, void *reply);
static ngx_int_t ngx_do_storage_redis_alarms(ngx_uint_t shard,
    uint64_t now, ngx_uint_t limit, ngx_do_storage_req_t *req);
static void ngx_do_storage_redis_alarms_read(void *data, void *reply);
static ngx_int_t ngx_do_storage_redis_unhex(u_char *hex, u_char *id);


static const char  *ngx_do_storage_redis_forms[] = {
    "redis://", "redis+unix://", NULL
};


ngx_do_backend_t  ngx_do_storage_redis_backend = {
    ngx_string("redis"),
    1,                                     /* async */
    0,                                     /* local */
    ngx_do_storage_redis_forms,
    ngx_do_storage_redis_conf_create,
    ngx_do_storage_redis_conf_param,
    NULL,                                  /* init_conf: no zone */
    ngx_do_storage_redis_init_worker,
    ngx_do_redis_exit,
    NULL,                                  /* secret: do_secret is needed */
    ngx_do_storage_redis_usage,
    NULL,                                  /* capacity: unknown */
    NULL,                                  /* version */
    NULL,                                  /* get */
    NULL,                                  /* list */
    ngx_do_storage_redis_load,
    ngx_do_storage_redis_commit,
    NULL,                                  /* sweep: Redis expires keys */
    ngx_do_storage_redis_alarms,
    ngx_do_storage_redis_cell_get,
    ngx_do_storage_redis_cell_put
};


ngx_do_redis_conf_t         *ngx_do_storage_redis_conf;

/* the scripts' indexes for ngx_do_redis_evalsha() */
static ngx_int_t             ngx_do_storage_redis_sha_load;
static ngx_int_t             ngx_do_storage_redis_sha_check;
static ngx_int_t             ngx_do_storage_redis_sha_commit;
static ngx_int_t             ngx_do_storage_redis_sha_check_fenced;
static ngx_int_t             ngx_do_storage_redis_sha_commit_fenced;


static const char  ngx_do_storage_redis_load_script[] =
    "return {redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[1])}";

/* a commit with nothing to store: the version still matches, or the state */
#define NGX_DO_STORAGE_REDIS_CHECK                                           \
    "local v = tonumber(redis.call('GET', KEYS[2]) or '0') "                 \
    "if tonumber(ARGV[1]) == v then return v end "                           \
    "return {-1, redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[1])}"

static const char  ngx_do_storage_redis_check_script[] =
    NGX_DO_STORAGE_REDIS_CHECK;
static const char  ngx_do_storage_redis_check_fenced_script[] =
    NGX_DO_STORAGE_REDIS_FENCE NGX_DO_STORAGE_REDIS_CHECK;

/*
 * The commit.  ARGV: the expected version ("-1": any), clear, expiry,
 * claim token, alarm ("-": unchanged, "0": none), alarm member,
 * max_bytes and max_objects ("0": none), then the writes ("p" key value,
 * "d" key).  nb and nf: the object's bytes and fields after the batch,
 * counted only without an expiry; -2 and -3: a quota refused it.
 */
#define NGX_DO_STORAGE_REDIS_COMMIT                                          \
    "local v = tonumber(redis.call('GET', KEYS[2]) or '0') "                 \
    "local c = false "                                                       \
    "if ARGV[1] ~= '-1' then "                                               \
    "  c = redis.call('GET', KEYS[3]) "                                      \
    "  if tonumber(ARGV[1]) ~= v or (c and c ~= ARGV[4]) then "              \
    "    if not c then redis.call('SET', KEYS[3], ARGV[4], 'PX', 50) end "   \
    "    return {-1, redis.call('GET', KEYS[2]), "                           \
    "            redis.call('HGETALL', KEYS[1])} "                           \
    "  end "                                                                 \
    "end "                                                                   \
    "if c then redis.call('DEL', KEYS[3]) end "                              \
    "local cb = tonumber(redis.call('GET', KEYS[5]) or '-1') "               \
    "local nb, nf, i = 0, 0, 9 "                                             \
    "if ARGV[3] == '0' then "                                                \
    "  if ARGV[2] ~= '1' then "                                              \
    "    nf = redis.call('HLEN', KEYS[1]) "                                  \
    "    if cb >= 0 then nb = cb else "                                      \
    "      local a = redis.call('HGETALL', KEYS[1]) "                        \
    "      for j = 1, #a, 2 do "                                             \
    "        nb = nb + #a[j] + #a[j + 1] "                                   \
    "             - string.find(a[j + 1], ':', 1, true) "                    \
    "      end "                                                             \
    "    end "                                                               \
    "  end "                                                                 \
    "  while i <= #ARGV do "                                                 \
    "    local o = false "                                                   \
    "    if ARGV[2] ~= '1' then "                                            \
    "      o = redis.call('HGET', KEYS[1], ARGV[i + 1]) "                    \
    "    end "                                                               \
    "    if o then "                                                         \
    "      nb = nb - #ARGV[i + 1] - #o + string.find(o, ':', 1, true) "      \
    "      nf = nf - 1 "                                                     \
    "    end "                                                               \
    "    if ARGV[i] == 'p' then "                                            \
    "      nb = nb + #ARGV[i + 1] + #ARGV[i + 2]; nf = nf + 1; i = i + 3 "   \
    "    else i = i + 2 end "                                                \
    "  end "                                                                 \
    "end "                                                                   \
    "if nf == 0 then nb = 0 end "                                            \
    "local db, dn = nb, 0 "                                                  \
    "if nf > 0 then dn = 1 end "                                             \
    "if cb >= 0 then db = db - cb; dn = dn - 1 end "                         \
    "if db > 0 and ARGV[7] ~= '0' and tonumber(redis.call('HGET', KEYS[6], " \
    "    'bytes') or '0') + db > tonumber(ARGV[7]) then return -2 end "      \
    "if dn > 0 and ARGV[8] ~= '0' and tonumber(redis.call('HGET', KEYS[6], " \
    "    'objects') or '0') + dn > tonumber(ARGV[8]) then return -3 end "    \
    "local n = v + 1 "                                                       \
    "if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end "                 \
    "if ARGV[5] == '0' then "                                                \
    "  redis.call('ZREM', KEYS[4], ARGV[6]) "                                \
    "elseif ARGV[5] ~= '-' then "                                            \
    "  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6]) "                       \
    "end "                                                                   \
    "i = 9 "                                                                 \
    "while i <= #ARGV do "                                                   \
    "  if ARGV[i] == 'p' then "                                              \
    "    redis.call('HSET', KEYS[1], ARGV[i + 1], n .. ':' .. ARGV[i + 2]) " \
    "    i = i + 3 "                                                         \
    "  else "                                                                \
    "    redis.call('HDEL', KEYS[1], ARGV[i + 1]) "                          \
    "    i = i + 2 "                                                         \
    "  end "                                                                 \
    "end "                                                                   \
    "redis.call('SET', KEYS[2], n) "                                         \
    "if ARGV[3] ~= '0' then "                                                \
    "  redis.call('PEXPIRE', KEYS[1], ARGV[3]) "                             \
    "  redis.call('PEXPIRE', KEYS[2], ARGV[3]) "                             \
    "else "                                                                  \
    "  redis.call('PERSIST', KEYS[1]) "                                      \
    "end "                                                                   \
    "if db ~= 0 then redis.call('HINCRBY', KEYS[6], 'bytes', db) end "       \
    "if dn ~= 0 then redis.call('HINCRBY', KEYS[6], 'objects', dn) end "     \
    "if nf > 0 then redis.call('SET', KEYS[5], nb) "                         \
    "elseif cb >= 0 then redis.call('DEL', KEYS[5]) end "                    \
    "return n"

static const char  ngx_do_storage_redis_commit_script[] =
    NGX_DO_STORAGE_REDIS_COMMIT;
static const char  ngx_do_storage_redis_commit_fenced_script[] =
    NGX_DO_STORAGE_REDIS_FENCE NGX_DO_STORAGE_REDIS_COMMIT;


static ngx_int_t
ngx_do_storage_redis_init_worker(ngx_cycle_t *cycle, void *conf)
{
    ngx_do_storage_redis_conf = conf;

    ngx_do_storage_redis_sha_load = ngx_do_redis_script(
                                   ngx_do_storage_redis_load_script,
                                   sizeof(ngx_do_storage_redis_load_script)
                                   - 1);
    ngx_do_storage_redis_sha_check = ngx_do_redis_script(
                                   ngx_do_storage_redis_check_script,
                                   sizeof(ngx_do_storage_redis_check_script)
                                   - 1);
    ngx_do_storage_redis_sha_commit = ngx_do_redis_script(
                                   ngx_do_storage_redis_commit_script,
                                   sizeof(ngx_do_storage_redis_commit_script)
                                   - 1);

    if (ngx_do_storage_redis_sha_load == NGX_ERROR
        || ngx_do_storage_redis_sha_check == NGX_ERROR
        || ngx_do_storage_redis_sha_commit == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    /* loaded with the others: a few hundred bytes once per connection */
    ngx_do_storage_redis_sha_check_fenced = ngx_do_redis_script(
                            ngx_do_storage_redis_check_fenced_script,
                            sizeof(ngx_do_storage_redis_check_fenced_script)
                            - 1);
    ngx_do_storage_redis_sha_commit_fenced = ngx_do_redis_script(
                            ngx_do_storage_redis_commit_fenced_script,
                            sizeof(ngx_do_storage_redis_commit_fenced_script)
                            - 1);

    if (ngx_do_storage_redis_cells_init() != NGX_OK
        || ngx_do_storage_redis_sha_check_fenced == NGX_ERROR
        || ngx_do_storage_redis_sha_commit_fenced == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return ngx_do_redis_init(cycle, conf);
}


static void
ngx_do_storage_redis_usage(ngx_do_storage_usage_t *usage)
{
    usage->connected = ngx_do_redis_ready();
}


/* one object's commands go over one connection, in order */
ngx_uint_t
ngx_do_storage_redis_hint(u_char *id)
{
    return ((ngx_uint_t) id[4] << 8) | id[5];
}


u_char *
ngx_do_storage_redis_key(u_char *p, ngx_do_namespace_t *ns, u_char *id,
    const char *suffix)
{
    p = ngx_cpymem(p, ngx_do_storage_redis_conf->prefix.data,
                   ngx_do_storage_redis_conf->prefix.len);
    *p++ = '{';
    p = ngx_cpymem(p, ns->name.data, ns->name.len);
    *p++ = ':';
    p = ngx_hex_dump(p, id, NGX_DO_ID_LEN);
    *p++ = '}';

    return ngx_cpymem(p, suffix, ngx_strlen(suffix));
}


static ngx_int_t
ngx_do_storage_redis_load(ngx_do_namespace_t *ns, u_char *id,
    ngx_do_storage_req_t *req)
{
    u_char      *kv, *v;
    size_t       argvlen[5];
    const char  *argv[5];
    u_char       buf[2 * NGX_DO_REDIS_KEY_LEN];

    if (ngx_do_storage_redis_conf->prefix.len + ns->name.len
        > NGX_DO_REDIS_MAX_NAMES)
    {
        return NGX_ERROR;
    }

    kv = buf;
    v = ngx_do_storage_redis_key(kv, ns, id, ":kv");

    ngx_do_redis_evalsha(ngx_do_storage_redis_sha_load, argv, argvlen);
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) kv;
    argvlen[3] = v - kv;
    argv[4] = (const char *) v;
    argvlen[4] = ngx_do_storage_redis_key(v, ns, id, ":v") - v;

    if (ngx_do_redis_command(ngx_do_storage_redis_hint(id),
                             ngx_do_storage_redis_loaded, req, 5, argv,
                             argvlen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/* [version or nil, [key, "<version>:<value>", ...]] */
static void
ngx_do_storage_redis_loaded(void *data, void *r)
{
    ngx_do_storage_req_t  *req = data;
    redisReply            *reply = r;

    size_t  n;
    u_char  esc[NGX_DO_REDIS_ERROR_LEN];

    req->rc = NGX_ERROR;
    req->version = 0;

    if (reply == NULL) {
        goto done;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[1]->type != REDIS_REPLY_ARRAY
        || reply->element[1]->elements % 2)
    {
        n = (reply->type == REDIS_REPLY_ERROR)
            ? ngx_do_log_escape(esc, sizeof(esc), (u_char *) reply->str,
                                reply->len)
            : 0;

        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             NGX_DO_LOG_REPLY,
                             "do: redis: unexpected reply to a load "
                             "(type %d%s%*s)", reply->type, n ? ": " : "",
                             n, esc);
        goto done;
    }

    req->rc = ngx_do_storage_redis_state(req, reply->element[0],
                                         reply->element[1]);

done:

    req->handler(req);
}


/* an object's state from its version and HGETALL replies, into req */
static ngx_int_t
ngx_do_storage_redis_state(ngx_do_storage_req_t *req, redisReply *version,
    redisReply *fields)
{
    u_char       *p, *last;
    size_t        i;
    ngx_int_t     n;
    redisReply   *f, *val;
    ngx_do_kv_t  *kv;

    if (fields->type != REDIS_REPLY_ARRAY || fields->elements % 2) {
        return NGX_ERROR;
    }

    if (version->type == REDIS_REPLY_STRING) {
        n = ngx_atoi((u_char *) version->str, version->len);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        req->version = (uint64_t) n;
    }

    req->pool = ngx_create_pool(4096, ngx_cycle->log);
    if (req->pool == NULL) {
        return NGX_ERROR;
    }

    req->kvs = ngx_array_create(req->pool, fields->elements / 2 + 1,
                                sizeof(ngx_do_kv_t));
    if (req->kvs == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < fields->elements; i += 2) {
        f = fields->element[i];
        val = fields->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING) {
            return NGX_ERROR;
        }

        p = (u_char *) val->str;
        last = p + val->len;

        while (p < last && *p != ':') {
            p++;
        }

        if (p == last) {
            return NGX_ERROR;
        }

        kv = ngx_array_push(req->kvs);
        if (kv == NULL) {
            return NGX_ERROR;
        }

        n = ngx_atoi((u_char *) val->str, p - (u_char *) val->str);
        kv->version = (n == NGX_ERROR) ? 0 : (uint64_t) n;

        kv->key.len = f->len;
        kv->key.data = ngx_pnalloc(req->pool, f->len + (last - p));
        if (kv->key.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(kv->key.data, f->str, f->len);
        kv->value.data = kv->key.data + f->len;
        kv->value.len = last - p - 1;
        (void) ngx_do_cpymem(kv->value.data, p + 1, kv->value.len);
    }

    return NGX_OK;
}


/*
 * The commit script, or the check script for a batch with nothing to
 * store; in cluster mode their fenced forms, with the shard's lease key
 * last among the keys and batch->epoch last among the arguments
 */
static ngx_int_t
ngx_do_storage_redis_commit(ngx_do_namespace_t *ns, u_char *id,
    uint64_t expected, ngx_do_batch_t *batch, ngx_do_storage_req_t *req)
{
    u_char       *kv, *v, *c, *b, *a, *q, *e;
    size_t       *argvlen;
    ngx_int_t     rc;
    ngx_uint_t    argc, fenced, shard;
    const char  **argv;
    u_char        buf[6 * NGX_DO_REDIS_KEY_LEN + 6 * NGX_INT64_LEN];
    u_char        fence[NGX_DO_REDIS_FENCE_LEN];

    if (ngx_do_storage_redis_conf->prefix.len + ns->name.len
        > NGX_DO_REDIS_MAX_NAMES)
    {
        return NGX_ERROR;
    }

    fenced = (ngx_do_cluster != NULL);
    shard = ngx_do_id_shard(id);

    if (fenced && batch->epoch == 0) {
        ngx_do_storage_redis_fenced("commit", shard, 0, NULL);
        return NGX_DO_FENCED;
    }

    req->shard = shard;
    req->epoch = batch->epoch;

    argc = 19 + 3 * batch->writes.nelts;

    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t)), ngx_cycle->log);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + argc);

    kv = buf;
    v = ngx_do_storage_redis_key(kv, ns, id, ":kv");
    c = ngx_do_storage_redis_key(v, ns, id, ":v");
    b = ngx_do_storage_redis_key(c, ns, id, ":c");
    a = ngx_do_storage_redis_key(b, ns, id, ":b");
    q = ngx_sprintf(a, "%Valarms:%ui", &ngx_do_storage_redis_conf->prefix,
                    shard);
    e = ngx_sprintf(q, "%Vquota:%V", &ngx_do_storage_redis_conf->prefix,
                    &ns->name);

    if (batch->writes.nelts == 0 && !batch->clear && !batch->alarm_set
        && expected != NGX_DO_VERSION_ANY)
    {
        ngx_do_redis_evalsha(fenced ? ngx_do_storage_redis_sha_check_fenced
                                    : ngx_do_storage_redis_sha_check,
                             argv, argvlen);
        argv[2] = fenced ? "3" : "2";
        argvlen[2] = 1;
        argv[3] = (const char *) kv;
        argvlen[3] = v - kv;
        argv[4] = (const char *) v;
        argvlen[4] = c - v;
        argv[5 + fenced] = (const char *) e;
        argvlen[5 + fenced] = ngx_sprintf(e, "%uL", expected) - e;

        if (fenced) {
            ngx_do_storage_redis_fence(fence, shard, batch->epoch, &argv[5],
                                       &argvlen[5], &argv[7], &argvlen[7]);
        }

        argc = 6 + 2 * fenced;

        goto send;
    }

    ngx_do_redis_evalsha(fenced ? ngx_do_storage_redis_sha_commit_fenced
                                : ngx_do_storage_redis_sha_commit,
                         argv, argvlen);
    argv[2] = fenced ? "7" : "6";
    argvlen[2] = 1;
    argv[3] = (const char *) kv;
    argvlen[3] = v - kv;
    argv[4] = (const char *) v;
    argvlen[4] = c - v;
    argv[5] = (const char *) c;
    argvlen[5] = b - c;
    argv[6] = (const char *) a;
    argvlen[6] = q - a;
    argv[7] = (const char *) b;
    argvlen[7] = a - b;
    argv[8] = (const char *) q;
    argvlen[8] = e - q;

    argc = 9 + fenced;
    argc += ngx_do_storage_redis_commit_args(ns, batch, expected, kv,
                                             argv + argc, argvlen + argc, e);

    if (fenced) {
        /* the lease key after the other keys, the epoch after all */
        ngx_do_storage_redis_fence(fence, shard, batch->epoch, &argv[9],
                                   &argvlen[9], &argv[argc], &argvlen[argc]);
        argc++;
    }

send:

    /* hiredis copies the command: nothing here must outlive the call */
    rc = ngx_do_redis_command(ngx_do_storage_redis_hint(id),
                              ngx_do_storage_redis_committed, req, (int) argc,
                              argv, argvlen);

    ngx_free(argv);

    return (rc == NGX_OK) ? NGX_AGAIN : NGX_ERROR;
}


/*
 * The commit script's ARGV, into argv from 0: expected version, clear,
 * expiry, this worker's claim token, the next alarm ("-": unchanged, "0":
 * none), the alarm index member, the namespace's max_bytes and
 * max_objects, then the writes ("p" key value, "d" key).  kv is the
 * object's :kv key; numbers are printed from e on.  The number of
 * arguments.
 */
static ngx_uint_t
ngx_do_storage_redis_commit_args(ngx_do_namespace_t *ns, ngx_do_batch_t *batch,
    uint64_t expected, u_char *kv, const char **argv, size_t *argvlen,
    u_char *e)
{
    ngx_uint_t       i, argc;
    ngx_do_write_t  *w;

    if (expected == NGX_DO_VERSION_ANY) {
        argv[0] = "-1";
        argvlen[0] = 2;

    } else {
        argv[0] = (const char *) e;
        argvlen[0] = ngx_sprintf(e, "%uL", expected) - e;
        e += argvlen[0];
    }

    argv[1] = batch->clear ? "1" : "0";
    argvlen[1] = 1;

    argv[2] = (const char *) e;
    argvlen[2] = ngx_sprintf(e, "%M", batch->expire) - e;
    e += argvlen[2];

    argv[3] = (const char *) e;
    argvlen[3] = ngx_sprintf(e, "%P", ngx_pid) - e;
    e += argvlen[3];

    if (batch->alarm_set) {
        argv[4] = (const char *) e;
        argvlen[4] = ngx_sprintf(e, "%uL", batch->alarm) - e;
        e += argvlen[4];

    } else {
        argv[4] = "-";
        argvlen[4] = 1;
    }

    /* the member: the object's hash tag (in its :kv key) without braces */
    argv[5] = (const char *) kv + ngx_do_storage_redis_conf->prefix.len + 1;
    argvlen[5] = ns->name.len + 1 + NGX_DO_ID_HEX_LEN;

    argv[6] = (const char *) e;
    argvlen[6] = ngx_sprintf(e, "%O", ns->max_bytes) - e;
    e += argvlen[6];

    argv[7] = (const char *) e;
    argvlen[7] = ngx_sprintf(e, "%ui", ns->max_objects) - e;

    argc = 8;
    w = batch->writes.elts;

    for (i = 0; i < batch->writes.nelts; i++) {
        argv[argc] = w[i].delete ? "d" : "p";
        argvlen[argc++] = 1;
        argv[argc] = (const char *) w[i].key.data;
        argvlen[argc++] = w[i].key.len;

        if (!w[i].delete) {
            argv[argc] = w[i].value.len ? (const char *) w[i].value.data : "";
            argvlen[argc++] = w[i].value.len;
        }
    }

    return argc;
}


/*
 * the new version, -1 (the version moved on), -2 or -3 (a quota refused
 * it), -4 (cluster mode: the epoch is not the lease's), or an error
 */
static void
ngx_do_storage_redis_committed(void *data, void *r)
{
    ngx_do_storage_req_t  *req = data;
    redisReply            *reply = r;

    size_t  n;
    u_char  esc[NGX_DO_REDIS_ERROR_LEN];

    req->rc = NGX_ERROR;

    if (reply == NULL) {
        goto done;
    }

    if (ngx_do_storage_redis_refused(reply)) {
        ngx_do_storage_redis_fenced("commit", req->shard, req->epoch, reply);
        req->rc = NGX_DO_FENCED;
        goto done;
    }

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && reply->element[0]->integer == -1)
    {
        /* lost the race: here is the state that won */
        if (ngx_do_storage_redis_state(req, reply->element[1],
                                       reply->element[2])
            != NGX_OK)
        {
            req->kvs = NULL;
        }

        req->rc = NGX_BUSY;
        goto done;
    }

    if (reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer == -1) {
            req->rc = NGX_BUSY;

        } else if (reply->integer == -2 || reply->integer == -3) {
            req->rc = (reply->integer == -2) ? NGX_DO_QUOTA_BYTES
                                             : NGX_DO_QUOTA_OBJECTS;

        } else if (reply->integer >= 0) {
            req->version = (uint64_t) reply->integer;
            req->rc = NGX_OK;
        }

        goto done;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (reply->len >= 3 && ngx_strncmp(reply->str, "OOM", 3) == 0) {
            req->rc = NGX_DECLINED;
        }

        n = ngx_do_log_escape(esc, sizeof(esc), (u_char *) reply->str,
                              reply->len);
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             req->rc == NGX_DECLINED ? NGX_DO_LOG_FULL
                                                     : NGX_DO_LOG_REPLY,
                             "do: redis: commit failed: %*s", n, esc);
        goto done;
    }

    ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0, NGX_DO_LOG_REPLY,
                         "do: redis: unexpected reply type %d to a commit",
                         reply->type);

done:

    req->handler(req);
}


/* ZRANGEBYSCORE of the shard's index, the due part of it into req */
static ngx_int_t
ngx_do_storage_redis_alarms(ngx_uint_t shard, uint64_t now, ngx_uint_t limit,
    ngx_do_storage_req_t *req)
{
    u_char      *key, *max, *lim, *end;
    size_t       argvlen[8];
    const char  *argv[8];
    u_char       buf[NGX_DO_REDIS_KEY_LEN + 3 * NGX_INT64_LEN];

    key = buf;
    max = ngx_sprintf(key, "%Valarms:%ui", &ngx_do_storage_redis_conf->prefix,
                      shard);
    lim = ngx_sprintf(max, "%uL", now);
    end = ngx_sprintf(lim, "%ui", limit);

    argv[0] = "ZRANGEBYSCORE";
    argvlen[0] = sizeof("ZRANGEBYSCORE") - 1;
    argv[1] = (const char *) key;
    argvlen[1] = max - key;
    argv[2] = "-inf";
    argvlen[2] = 4;
    argv[3] = "+inf";
    argvlen[3] = 4;
    argv[4] = "WITHSCORES";
    argvlen[4] = sizeof("WITHSCORES") - 1;
    argv[5] = "LIMIT";
    argvlen[5] = 5;
    argv[6] = "0";
    argvlen[6] = 1;
    argv[7] = (const char *) lim;
    argvlen[7] = end - lim;

    /* the time to compare with travels in req->version */
    req->version = now;

    if (ngx_do_redis_command(shard, ngx_do_storage_redis_alarms_read, req, 8,
                             argv, argvlen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/* [member, score, ...]: those due, then the first time not due */
static void
ngx_do_storage_redis_alarms_read(void *data, void *r)
{
    ngx_do_storage_req_t  *req = data;
    redisReply            *reply = r;

    u_char       *p, *colon;
    size_t        i;
    uint64_t      now, when;
    ngx_int_t     n;
    redisReply   *m, *sc;
    ngx_do_kv_t  *kv;

    now = req->version;
    req->version = 0;
    req->rc = NGX_ERROR;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements % 2)
    {
        goto done;
    }

    req->pool = ngx_create_pool(4096, ngx_cycle->log);
    if (req->pool == NULL) {
        goto done;
    }

    req->kvs = ngx_array_create(req->pool, reply->elements / 2 + 1,
                                sizeof(ngx_do_kv_t));
    if (req->kvs == NULL) {
        goto done;
    }

    for (i = 0; i < reply->elements; i += 2) {
        m = reply->element[i];
        sc = reply->element[i + 1];

        if (m->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING) {
            goto done;
        }

        n = ngx_atoi((u_char *) sc->str, sc->len);
        if (n == NGX_ERROR) {
            continue;
        }

        when = (uint64_t) n;

        if (when > now) {
            req->version = when;
            break;
        }

        /* "<namespace>:<64 hex ID>" */
        if (m->len <= NGX_DO_ID_HEX_LEN + 1) {
            continue;
        }

        colon = (u_char *) m->str + m->len - NGX_DO_ID_HEX_LEN - 1;

        if (*colon != ':') {
            continue;
        }

        kv = ngx_array_push(req->kvs);
        p = ngx_pnalloc(req->pool, (colon - (u_char *) m->str)
                                   + NGX_DO_ID_LEN);
        if (kv == NULL || p == NULL) {
            goto done;
        }

        kv->key.data = p;
        kv->key.len = colon - (u_char *) m->str;
        kv->value.data = ngx_cpymem(p, m->str, kv->key.len);
        kv->value.len = NGX_DO_ID_LEN;
        kv->version = when;

        if (ngx_do_storage_redis_unhex(colon + 1, kv->value.data) != NGX_OK) {
            req->kvs->nelts--;
        }
    }

    req->rc = NGX_OK;

done:

    req->handler(req);
}


static ngx_int_t
ngx_do_storage_redis_unhex(u_char *hex, u_char *id)
{
    ngx_int_t   n;
    ngx_uint_t  i;

    for (i = 0; i < NGX_DO_ID_LEN; i++) {
        n = ngx_hextoi(hex + 2 * i, 2);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        id[i] = (u_char) n;
    }

    return NGX_OK;
}


/* a fenced script's last key and last argument, written at p */
void
ngx_do_storage_redis_fence(u_char *p, ngx_uint_t shard, uint64_t epoch,
    const char **key, size_t *key_len, const char **arg, size_t *arg_len)
{
    u_char  *e;

    e = ngx_do_cluster_lease_key(p, shard);

    *key = (const char *) p;
    *key_len = e - p;

    *arg = (const char *) e;
    *arg_len = ngx_sprintf(e, "%uL", epoch) - e;
}


/* a fenced script's refusal: [-4, the lease's value or ""] */
ngx_uint_t
ngx_do_storage_redis_refused(redisReply *reply)
{
    return reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
           && reply->element[0]->type == REDIS_REPLY_INTEGER
           && reply->element[0]->integer == -4
           && reply->element[1]->type == REDIS_REPLY_STRING;
}


/*
 * Cluster mode: a write of the shard refused by epoch, counted and logged
 * (a paused node may refuse many at once: throttled); reply NULL: this
 * node held no lease on the shard, nothing was sent.  Otherwise this node
 * lost the lease it believed it held, and the cluster core hears it.
 */
void
ngx_do_storage_redis_fenced(const char *what, ngx_uint_t shard,
    uint64_t epoch, redisReply *reply)
{
    size_t   n, len;
    u_char  *lease, *sp;
    u_char   esc[NGX_DO_LOG_ESCAPE_LEN];

    ngx_do_stats->fenced++;

    if (reply == NULL) {
        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0,
                             NGX_DO_LOG_FENCED,
                             "do: %s of shard %ui refused: this node holds "
                             "no lease on it", what, shard);
        return;
    }

    ngx_do_cluster_lost(shard, epoch);

    lease = (u_char *) reply->element[1]->str;
    len = reply->element[1]->len;

    if (len == 0) {
        ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0,
                             NGX_DO_LOG_FENCED,
                             "do: %s of shard %ui refused: epoch %uL is not "
                             "the lease's (no node holds it now)",
                             what, shard, epoch);
        return;
    }

    /* "<epoch> <node>" */
    sp = ngx_strlchr(lease, lease + len, ' ');
    n = ngx_do_log_escape(esc, sizeof(esc), sp ? sp + 1 : lease,
                          sp ? len - (sp + 1 - lease) : len);

    ngx_do_log_throttled(NGX_LOG_WARN, ngx_cycle->log, 0, NGX_DO_LOG_FENCED,
                         "do: %s of shard %ui refused: epoch %uL is not the "
                         "lease's (epoch %*s, held by \"%*s\" now)",
                         what, shard, epoch,
                         sp ? (size_t) (sp - lease) : (size_t) 0, lease,
                         n, esc);
}
