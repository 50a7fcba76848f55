
/*
 * Cluster mode: which node holds each shard.
 *
 * One agent per node, in worker 0, ticks every lease/4 with two scripts
 * on Redis.  The heartbeat puts this node in the registry (a sorted set
 * of names scored by Redis's clock, and their addresses), drops the names
 * not heard of for a lease, and answers the live ones.  Placement is
 * rendezvous hashing over them: shard s belongs to the live node with the
 * highest hash of (s, name), so every node computes the same table and
 * only 1/N of the shards move when a node comes or goes.  The lease
 * script then, for every shard, takes the lease of a shard this node wins
 * when nobody holds it (a new epoch: INCR of the shard's counter), renews
 * the leases it holds, releases those it gave up, and answers every
 * shard's holder: "<epoch> <name>".
 *
 * The answers go to a shared zone that every worker of the node reads
 * (ngx_do_cluster_route()): per shard a word with the holder's index and
 * the epoch, and the time until which this node's lease is valid by its
 * own clock (the time the renewal was sent, plus the lease, less an
 * eighth).  So a node that was paused past its lease stops deciding the
 * moment it wakes, before its agent has run; and storage refuses a
 * commit whose epoch is not the lease's (the fence), for what runs in
 * between.
 *
 * A planned move (a node joined, or this one sees that it no longer wins
 * a shard) is a handover: the shard is "leaving" for one tick, during
 * which calls for it wait on this node and deferred state is stored (the
 * leave handlers), then its lease is released and the winner takes it at
 * its next tick, with a higher epoch.  A node that died simply lets its
 * leases run out.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/hiredis.h>

#include "ngx_do.h"
#include "ngx_do_redis.h"
#include "ngx_do_cluster.h"
#include "ngx_do_node.h"


#define NGX_DO_CLUSTER_NOBODY     0xff
#define NGX_DO_CLUSTER_LEAVING    ((uint64_t) 1 << 55)
#define NGX_DO_CLUSTER_EPOCH      (NGX_DO_CLUSTER_LEAVING - 1)
#define NGX_DO_CLUSTER_HOLDER(w)  ((ngx_uint_t) ((w) >> 56))
#define NGX_DO_CLUSTER_LEAVES     8
#define NGX_DO_CLUSTER_FORGET     600000      /* ms: a slot's name expires */
#define NGX_DO_CLUSTER_LATE       2           /* ms after an expiry to tick */
#define NGX_DO_CLUSTER_SOONEST    5           /* ms: the shortest tick */


typedef struct {
    u_char                     name[NGX_DO_CLUSTER_NAME_LEN + 1];
    u_char                     addr[NGX_DO_CLUSTER_ADDR_LEN + 1];
    ngx_atomic_t               live;
    ngx_atomic_t               seen;          /* ngx_current_msec */
} ngx_do_cluster_peer_t;


/* word: holder (8 bits), leaving (1), epoch (55); until: msec */
typedef struct {
    ngx_atomic_t               word;
    ngx_atomic_t               until;
} ngx_do_cluster_shard_t;


typedef struct {
    ngx_atomic_t               lock;
    ngx_atomic_t               self;
    ngx_atomic_t               ticks;
    ngx_atomic_t               lost;
    ngx_atomic_t               fresh;         /* no lease taken since start */
    ngx_do_cluster_peer_t      peers[NGX_DO_CLUSTER_PEERS];
    ngx_do_cluster_shard_t     shards[NGX_DO_SHARDS];
} ngx_do_cluster_sh_t;


static ngx_int_t ngx_do_cluster_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static uint32_t ngx_do_cluster_namespaces(void);
static ngx_uint_t ngx_do_cluster_index(ngx_str_t *name, ngx_uint_t add);
static ngx_uint_t ngx_do_cluster_alike(ngx_str_t *name, u_char *value,
    size_t len, size_t *addr_len);
static void ngx_do_cluster_args(ngx_int_t script, const char **argv,
    size_t *argvlen);
static void ngx_do_cluster_tick(ngx_event_t *ev);
static void ngx_do_cluster_heard(void *data, void *r);
static void ngx_do_cluster_place(ngx_uint_t *live, ngx_uint_t nlive,
    u_char *want);
static void ngx_do_cluster_leased(void *data, void *r);
static ngx_msec_t ngx_do_cluster_delay(long long soon);
static void ngx_do_cluster_next(ngx_msec_t delay);


ngx_do_cluster_conf_t         *ngx_do_cluster;

static ngx_do_cluster_sh_t    *ngx_do_cluster_sh;
static ngx_do_redis_conf_t    *ngx_do_cluster_redis;
static ngx_int_t               ngx_do_cluster_sha_beat = NGX_ERROR;
static ngx_int_t               ngx_do_cluster_sha_lease = NGX_ERROR;
static ngx_event_t             ngx_do_cluster_event;
static ngx_msec_t              ngx_do_cluster_sent;
/* when the first other node's registry entry expires, 0: none */
static ngx_msec_t              ngx_do_cluster_due;
static ngx_uint_t              ngx_do_cluster_busy;
static ngx_uint_t              ngx_do_cluster_stopped;
static uint32_t                ngx_do_cluster_digest;
static ngx_do_cluster_leave_pt ngx_do_cluster_leaves[NGX_DO_CLUSTER_LEAVES];
static ngx_uint_t              ngx_do_cluster_nleaves;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_cluster_dumb;


/*
 * The heartbeat.  ARGV: prefix, name, address, the registry's expiry
 * (ms).  Answers the live nodes: name, address, name, address, ..., then
 * the ms until the first other node's entry expires (-1: none).
 */
static const char  ngx_do_cluster_beat_script[] =
    "local t = redis.call('TIME') "
    "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "local exp = tonumber(ARGV[4]) "
    "local z, h = ARGV[1] .. 'cluster:nodes', ARGV[1] .. 'cluster:addrs' "
    "redis.call('ZADD', z, now, ARGV[2]) "
    "redis.call('HSET', h, ARGV[2], ARGV[3]) "
    "for _, n in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now - exp)) "
    "do "
    "  redis.call('ZREM', z, n) redis.call('HDEL', h, n) "
    "end "
    "local out, soon = {}, -1 "
    "local all = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES') "
    "for i = 1, #all, 2 do "
    "  local n = all[i] "
    "  out[#out + 1] = n out[#out + 1] = redis.call('HGET', h, n) or '' "
    "  local left = tonumber(all[i + 1]) + exp - now "
    "  if n ~= ARGV[2] and (soon < 0 or left < soon) then soon = left end "
    "end "
    "out[#out + 1] = soon "
    "return out";

/*
 * The leases.  ARGV: prefix, name, lease (ms), and a character per shard:
 * '1' take it if nobody holds it, or renew it; '2' release it; '0' only
 * tell who holds it; then "1" when this node just started: a lease still
 * under its name is its previous life's, taken again with a new epoch.
 * Answers each shard's lease value, "" for none, then the ms until the
 * first lease of another node on a shard this node wins runs out (-1:
 * none), so that the agent takes it then rather than a tick later.
 */
static const char  ngx_do_cluster_lease_script[] =
    "local p, me, px, want = ARGV[1], ARGV[2], ARGV[3], ARGV[4] "
    "local fresh = ARGV[5] == '1' "
    "local out, soon = {}, -1 "
    "for s = 0, #want - 1 do "
    "  local k = p .. 'cluster:lease:' .. s "
    "  local v = redis.call('GET', k) "
    "  local c = string.byte(want, s + 1) "
    "  local mine = v and string.sub(v, (string.find(v, ' ', 1, true) "
    "                                    or #v) + 1) == me "
    "  if c == 49 then "
    "    if not v or (mine and fresh) then "
    "      v = redis.call('INCR', p .. 'cluster:epoch:' .. s) .. ' ' .. me "
    "      redis.call('SET', k, v, 'PX', px) "
    "    elseif mine then "
    "      redis.call('PEXPIRE', k, px) "
    "    else "
    "      local left = redis.call('PTTL', k) "
    "      if left >= 0 and (soon < 0 or left < soon) then soon = left end "
    "    end "
    "  elseif c == 50 and mine then "
    "    redis.call('DEL', k) v = false "
    "  end "
    "  out[s + 1] = v or '' "
    "end "
    "out[#want + 1] = soon "
    "return out";


/* do_cluster name= listen= [lease=] */
char *
ngx_do_cluster_parse(ngx_conf_t *cf, ngx_do_cluster_conf_t **conf)
{
    u_char                 *p;
    ngx_url_t               u;
    ngx_str_t              *value, s;
    ngx_uint_t              i;
    ngx_do_cluster_conf_t  *cc;

    if (*conf) {
        return "is duplicate";
    }

    cc = ngx_pcalloc(cf->pool, sizeof(ngx_do_cluster_conf_t));
    if (cc == NULL) {
        return NGX_CONF_ERROR;
    }

    cc->lease = 5000;
    cc->file = cf->conf_file->file.name.data;
    cc->line = cf->conf_file->line;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "name=", 5) == 0) {
            cc->name.data = value[i].data + 5;
            cc->name.len = value[i].len - 5;

            if (cc->name.len == sizeof("$hostname") - 1
                && ngx_strncmp(cc->name.data, "$hostname", cc->name.len) == 0)
            {
                cc->name = cf->cycle->hostname;
            }

            for (p = cc->name.data; p < cc->name.data + cc->name.len; p++) {
                if (!(isalnum(*p) || *p == '.' || *p == '-' || *p == '_')) {
                    break;
                }
            }

            if (cc->name.len == 0 || cc->name.len > NGX_DO_CLUSTER_NAME_LEN
                || p != cc->name.data + cc->name.len)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid node name \"%V\": 1 to %d "
                                   "letters, digits, \".\", \"-\" or \"_\"",
                                   &cc->name, NGX_DO_CLUSTER_NAME_LEN);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "listen=", 7) == 0) {
            ngx_memzero(&u, sizeof(ngx_url_t));
            u.url.data = value[i].data + 7;
            u.url.len = value[i].len - 7;
            u.listen = 1;

            if (ngx_parse_url(cf->pool, &u) != NGX_OK
                || u.naddrs == 0 || u.no_port || u.wildcard)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid listen= \"%V\": the address "
                                   "and port other nodes reach this one "
                                   "at, such as 10.0.0.5:7946%s%s",
                                   &u.url, u.err ? ", " : "",
                                   u.err ? u.err : "");
                return NGX_CONF_ERROR;
            }

            cc->listen = u.url;
            cc->addr = u.addrs[0];

            if (cc->addr.name.len > NGX_DO_CLUSTER_ADDR_LEN) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "listen= \"%V\" is too long", &u.url);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "lease=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            cc->lease = ngx_parse_time(&s, 0);

            if (cc->lease == (ngx_msec_t) NGX_ERROR || cc->lease < 400
                || cc->lease > 600000)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid lease= \"%V\": a time from "
                                   "400ms to 10m", &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (cc->name.len == 0 || cc->listen.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "do_cluster needs name= and listen=");
        return NGX_CONF_ERROR;
    }

    *conf = cc;

    return NGX_CONF_OK;
}


/*
 * After the http block: cluster mode needs Redis and do_secret (the
 * callers' checks, reported here with the directive's place), and the
 * node's zone.
 */
ngx_int_t
ngx_do_cluster_init_conf(ngx_conf_t *cf, ngx_do_cluster_conf_t *conf,
    void *redis, ngx_uint_t secret, void *tag)
{
    ngx_str_t  name = ngx_string("do_cluster");

    if (redis == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "do_cluster needs do_storage redis://...: the nodes "
                      "share state and leases in Redis, in %s:%ui",
                      conf->file, conf->line);
        return NGX_ERROR;
    }

    if (!secret) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "do_cluster needs do_secret, the same file on every "
                      "node: it keys object IDs and authenticates the "
                      "nodes to each other, in %s:%ui",
                      conf->file, conf->line);
        return NGX_ERROR;
    }

    ngx_do_cluster_redis = redis;
    conf->redis = redis;

    conf->zone = ngx_shared_memory_add(cf, &name,
                                       ngx_align(sizeof(ngx_do_cluster_sh_t),
                                                 ngx_pagesize)
                                       + 8 * ngx_pagesize, tag);
    if (conf->zone == NULL) {
        return NGX_ERROR;
    }

    conf->zone->init = ngx_do_cluster_init_zone;
    conf->zone->data = conf;

    return NGX_OK;
}


static ngx_int_t
ngx_do_cluster_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_uint_t              s;
    ngx_slab_pool_t        *shpool;
    ngx_do_cluster_sh_t    *sh;

    if (data) {
        /* a reload: the leases this node holds stay held */
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    sh = ngx_slab_calloc(shpool, sizeof(ngx_do_cluster_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    for (s = 0; s < NGX_DO_SHARDS; s++) {
        sh->shards[s].word = (uint64_t) NGX_DO_CLUSTER_NOBODY << 56;
    }

    sh->self = NGX_DO_CLUSTER_NONE;
    sh->fresh = 1;
    shm_zone->data = sh;

    return NGX_OK;
}


/*
 * The digest of this node's do_namespace lines, in their order: calls name
 * a namespace by its index, so nodes whose lines differ must not share
 * shards.  The heartbeat publishes it beside the address.
 */
static uint32_t
ngx_do_cluster_namespaces(void)
{
    uint32_t              crc;
    ngx_uint_t            i;
    ngx_do_namespace_t  **nss;

    ngx_crc32_init(crc);

    nss = ngx_do_runtime.namespaces->elts;

    for (i = 0; i < ngx_do_runtime.namespaces->nelts; i++) {
        ngx_crc32_update(&crc, nss[i]->name.data, nss[i]->name.len);
        ngx_crc32_update(&crc, (u_char *) " ", 1);
        ngx_crc32_update(&crc, nss[i]->class->name.data,
                         nss[i]->class->name.len);
        ngx_crc32_update(&crc, (u_char *) "\n", 1);
    }

    ngx_crc32_final(crc);

    return crc;
}


/* scripts are registered before the Redis connections are made */
ngx_int_t
ngx_do_cluster_init_worker(ngx_cycle_t *cycle, ngx_do_cluster_conf_t *conf)
{
    ngx_do_cluster = conf;

    if (conf == NULL) {
        return NGX_OK;
    }

    ngx_do_cluster_sh = conf->zone->data;

    ngx_spinlock(&ngx_do_cluster_sh->lock, ngx_pid, 1024);
    ngx_do_cluster_sh->self = ngx_do_cluster_index(&conf->name, 1);
    ngx_unlock(&ngx_do_cluster_sh->lock);

    if (ngx_do_cluster_sh->self == NGX_DO_CLUSTER_NONE) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "do_cluster: no room for this node's name in the "
                      "table of %d nodes", NGX_DO_CLUSTER_PEERS);
        return NGX_ERROR;
    }

    if (ngx_worker != 0 || ngx_process != NGX_PROCESS_WORKER) {
        return NGX_OK;
    }

    ngx_do_cluster_digest = ngx_do_cluster_namespaces();

    ngx_do_cluster_sha_beat = ngx_do_redis_script(
                                  ngx_do_cluster_beat_script,
                                  sizeof(ngx_do_cluster_beat_script) - 1);
    ngx_do_cluster_sha_lease = ngx_do_redis_script(
                                  ngx_do_cluster_lease_script,
                                  sizeof(ngx_do_cluster_lease_script) - 1);

    if (ngx_do_cluster_sha_beat == NGX_ERROR
        || ngx_do_cluster_sha_lease == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    ngx_do_cluster_event.handler = ngx_do_cluster_tick;
    ngx_do_cluster_event.data = &ngx_do_cluster_dumb;
    ngx_do_cluster_event.log = cycle->log;
    ngx_do_cluster_event.cancelable = 1;
    ngx_do_cluster_dumb.fd = (ngx_socket_t) -1;

    /* the first tick once the Redis connections had a moment */
    ngx_add_timer(&ngx_do_cluster_event, 10);

    return NGX_OK;
}


void
ngx_do_cluster_exit_worker(void)
{
    /*
     * The agent stops; the table stays readable, so that what the worker
     * stores on its way out (deferred state) is fenced as ever
     */
    ngx_do_cluster_stopped = 1;

    if (ngx_do_cluster_event.timer_set) {
        ngx_del_timer(&ngx_do_cluster_event);
    }
}


void
ngx_do_cluster_on_leave(ngx_do_cluster_leave_pt handler)
{
    if (ngx_do_cluster_nleaves < NGX_DO_CLUSTER_LEAVES) {
        ngx_do_cluster_leaves[ngx_do_cluster_nleaves++] = handler;
    }
}


ngx_int_t
ngx_do_cluster_route(ngx_uint_t shard, ngx_uint_t *peer)
{
    uint64_t                 w;
    ngx_uint_t               holder;
    ngx_do_cluster_shard_t  *s;

    if (ngx_do_cluster == NULL) {
        return NGX_DO_CLUSTER_HERE;
    }

    s = &ngx_do_cluster_sh->shards[shard];
    w = s->word;
    holder = NGX_DO_CLUSTER_HOLDER(w);

    if (holder == NGX_DO_CLUSTER_NOBODY) {
        return NGX_DO_CLUSTER_WAIT;
    }

    if (holder == ngx_do_cluster_sh->self) {
        if ((w & NGX_DO_CLUSTER_LEAVING)
            || (ngx_msec_int_t) (s->until - ngx_current_msec) <= 0)
        {
            return NGX_DO_CLUSTER_WAIT;
        }

        return NGX_DO_CLUSTER_HERE;
    }

    if (!ngx_do_cluster_sh->peers[holder].live) {
        /* it died: its lease runs out, and a live node takes the shard */
        return NGX_DO_CLUSTER_WAIT;
    }

    *peer = holder;

    return NGX_DO_CLUSTER_PEER;
}


uint64_t
ngx_do_cluster_epoch(ngx_uint_t shard)
{
    uint64_t                 w;
    ngx_do_cluster_shard_t  *s;

    if (ngx_do_cluster == NULL) {
        return 0;
    }

    s = &ngx_do_cluster_sh->shards[shard];
    w = s->word;

    if (NGX_DO_CLUSTER_HOLDER(w) != ngx_do_cluster_sh->self
        || (ngx_msec_int_t) (s->until - ngx_current_msec) <= 0)
    {
        return 0;
    }

    return w & NGX_DO_CLUSTER_EPOCH;
}


u_char *
ngx_do_cluster_lease_key(u_char *p, ngx_uint_t shard)
{
    return ngx_sprintf(p, "%Vcluster:lease:%ui",
                       &ngx_do_cluster_redis->prefix, shard);
}


void
ngx_do_cluster_lost(ngx_uint_t shard, uint64_t epoch)
{
    uint64_t                 w;
    ngx_do_cluster_shard_t  *s;

    if (ngx_do_cluster == NULL) {
        return;
    }

    s = &ngx_do_cluster_sh->shards[shard];
    w = s->word;

    if (NGX_DO_CLUSTER_HOLDER(w) == ngx_do_cluster_sh->self
        && (w & NGX_DO_CLUSTER_EPOCH) == epoch
        && ngx_atomic_cmp_set(&s->word, w,
                              (uint64_t) NGX_DO_CLUSTER_NOBODY << 56))
    {
        s->until = 0;
        (void) ngx_atomic_fetch_add(&ngx_do_cluster_sh->lost, 1);

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "do: this node lost shard %ui (epoch %uL): another "
                      "node holds its lease now", shard, epoch);
    }
}


ngx_uint_t
ngx_do_cluster_self(void)
{
    return ngx_do_cluster ? ngx_do_cluster_sh->self : NGX_DO_CLUSTER_NONE;
}


ngx_int_t
ngx_do_cluster_peer(ngx_uint_t peer, ngx_str_t *name, ngx_str_t *addr)
{
    ngx_do_cluster_peer_t  *p;

    if (ngx_do_cluster == NULL || peer >= NGX_DO_CLUSTER_PEERS) {
        return NGX_DECLINED;
    }

    p = &ngx_do_cluster_sh->peers[peer];

    if (!p->live || p->name[0] == '\0') {
        return NGX_DECLINED;
    }

    /* a slot's strings change only when a long dead name gives it up */
    name->data = p->name;
    name->len = ngx_strlen(p->name);
    addr->data = p->addr;
    addr->len = ngx_strlen(p->addr);

    return NGX_OK;
}


ngx_uint_t
ngx_do_cluster_peer_find(ngx_str_t *name)
{
    ngx_uint_t  i;

    if (ngx_do_cluster == NULL) {
        return NGX_DO_CLUSTER_NONE;
    }

    ngx_spinlock(&ngx_do_cluster_sh->lock, ngx_pid, 1024);
    i = ngx_do_cluster_index(name, 0);
    ngx_unlock(&ngx_do_cluster_sh->lock);

    if (i == NGX_DO_CLUSTER_NONE || !ngx_do_cluster_sh->peers[i].live) {
        return NGX_DO_CLUSTER_NONE;
    }

    return i;
}


/*
 * A name's slot in the peer table, under the lock; add: a new name takes
 * a free slot, or the one of the name dead for longest.
 */
static ngx_uint_t
ngx_do_cluster_index(ngx_str_t *name, ngx_uint_t add)
{
    ngx_uint_t              i, free;
    ngx_do_cluster_peer_t  *p;

    free = NGX_DO_CLUSTER_NONE;

    for (i = 0; i < NGX_DO_CLUSTER_PEERS; i++) {
        p = &ngx_do_cluster_sh->peers[i];

        if (p->name[0] == '\0') {
            if (free == NGX_DO_CLUSTER_NONE) {
                free = i;
            }

            continue;
        }

        if (ngx_strlen(p->name) == name->len
            && ngx_strncmp(p->name, name->data, name->len) == 0)
        {
            return i;
        }

        /* a name not heard of for a while gives its slot up, oldest first */
        if (!p->live && i != ngx_do_cluster_sh->self
            && (ngx_msec_int_t) (ngx_current_msec - p->seen)
               > NGX_DO_CLUSTER_FORGET
            && (free == NGX_DO_CLUSTER_NONE
                || (ngx_do_cluster_sh->peers[free].name[0]
                    && p->seen < ngx_do_cluster_sh->peers[free].seen)))
        {
            free = i;
        }
    }

    if (!add || free == NGX_DO_CLUSTER_NONE
        || name->len > NGX_DO_CLUSTER_NAME_LEN)
    {
        return NGX_DO_CLUSTER_NONE;
    }

    p = &ngx_do_cluster_sh->peers[free];
    ngx_memzero(p->addr, sizeof(p->addr));
    ngx_memcpy(p->name, name->data, name->len);
    p->name[name->len] = '\0';
    p->live = 0;
    p->seen = ngx_current_msec;

    return free;
}


/* the agent's scripts begin alike: no keys, the prefix, this node's name */
static void
ngx_do_cluster_args(ngx_int_t script, const char **argv, size_t *argvlen)
{
    ngx_do_redis_evalsha(script, argv, argvlen);
    argv[2] = "0";
    argvlen[2] = 1;
    argv[3] = (const char *) ngx_do_cluster_redis->prefix.data;
    argvlen[3] = ngx_do_cluster_redis->prefix.len;
    argv[4] = (const char *) ngx_do_cluster->name.data;
    argvlen[4] = ngx_do_cluster->name.len;
}


/* a tick of the agent: the heartbeat, then (ngx_do_cluster_heard) leases */
static void
ngx_do_cluster_tick(ngx_event_t *ev)
{
    u_char       exp[NGX_INT_T_LEN], addr[NGX_DO_CLUSTER_ADDR_LEN + 10];
    size_t       argvlen[7];
    const char  *argv[7];

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (ngx_do_cluster_busy) {
        /* the last tick's scripts are still out: Redis is slow or gone */
        ngx_do_cluster_next(ngx_do_cluster->lease / 4);
        return;
    }

    ngx_do_cluster_args(ngx_do_cluster_sha_beat, argv, argvlen);
    argv[5] = (const char *) addr;
    argvlen[5] = ngx_sprintf(addr, "%V %08xD", &ngx_do_cluster->addr.name,
                             ngx_do_cluster_digest)
                 - addr;
    argv[6] = (const char *) exp;
    argvlen[6] = ngx_sprintf(exp, "%M", ngx_do_cluster->lease) - exp;

    ngx_do_cluster_sent = ngx_current_msec;

    if (ngx_do_redis_command(0, ngx_do_cluster_heard, NULL, 7, argv, argvlen)
        != NGX_OK)
    {
        ngx_do_cluster_next(ngx_do_cluster->lease / 8);
        return;
    }

    ngx_do_cluster_busy = 1;
}


/* the registry answered: the live nodes, then the placement and leases */
static void
ngx_do_cluster_heard(void *data, void *r)
{
    redisReply  *reply = r;

    u_char       want[NGX_DO_SHARDS], lease[NGX_INT_T_LEN], *v;
    size_t       argvlen[8], len;
    long long    soon;
    ngx_str_t    name;
    ngx_uint_t   i, j, live[NGX_DO_CLUSTER_PEERS], nlive;
    const char  *argv[8];
    ngx_do_cluster_peer_t  *p;

    ngx_do_cluster_busy = 0;

    if (ngx_do_cluster == NULL || ngx_do_cluster_stopped) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements % 2 == 0
        || reply->element[reply->elements - 1]->type != REDIS_REPLY_INTEGER)
    {
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             NGX_DO_LOG_REPLY,
                             "do: cluster: the heartbeat got no answer "
                             "from Redis; the leases of this node run out "
                             "if it lasts");
        ngx_do_cluster_next(ngx_do_cluster->lease / 8);
        return;
    }

    soon = reply->element[reply->elements - 1]->integer;
    ngx_do_cluster_due = (soon >= 0)
                         ? ngx_current_msec + (ngx_msec_t) soon
                           + NGX_DO_CLUSTER_LATE
                         : 0;

    nlive = 0;

    ngx_spinlock(&ngx_do_cluster_sh->lock, ngx_pid, 1024);

    /* the live flags change only once every name has its slot */
    for (i = 0; i + 2 < reply->elements; i += 2) {
        if (reply->element[i]->type != REDIS_REPLY_STRING
            || reply->element[i + 1]->type != REDIS_REPLY_STRING
            || nlive == NGX_DO_CLUSTER_PEERS)
        {
            continue;
        }

        name.data = (u_char *) reply->element[i]->str;
        name.len = reply->element[i]->len;

        v = (u_char *) reply->element[i + 1]->str;

        if (!ngx_do_cluster_alike(&name, v, reply->element[i + 1]->len, &len))
        {
            continue;
        }

        j = ngx_do_cluster_index(&name, 1);
        if (j == NGX_DO_CLUSTER_NONE) {
            continue;
        }

        p = &ngx_do_cluster_sh->peers[j];

        if (len <= NGX_DO_CLUSTER_ADDR_LEN
            && (ngx_strncmp(p->addr, v, len) != 0 || p->addr[len] != '\0'))
        {
            ngx_memzero(p->addr, sizeof(p->addr));
            ngx_memcpy(p->addr, v, len);
        }

        p->seen = ngx_current_msec;
        live[nlive++] = j;
    }

    for (i = 0; i < NGX_DO_CLUSTER_PEERS; i++) {
        for (j = 0; j < nlive && live[j] != i; j++) { /* void */ }

        ngx_do_cluster_sh->peers[i].live = (j < nlive);
    }

    ngx_unlock(&ngx_do_cluster_sh->lock);

    ngx_do_cluster_place(live, nlive, want);

    ngx_do_cluster_args(ngx_do_cluster_sha_lease, argv, argvlen);
    argv[5] = (const char *) lease;
    argvlen[5] = ngx_sprintf(lease, "%M", ngx_do_cluster->lease) - lease;
    argv[6] = (const char *) want;
    argvlen[6] = NGX_DO_SHARDS;
    argv[7] = ngx_do_cluster_sh->fresh ? "1" : "0";
    argvlen[7] = 1;

    ngx_do_cluster_sent = ngx_current_msec;

    if (ngx_do_redis_command(0, ngx_do_cluster_leased, NULL, 8, argv,
                             argvlen)
        != NGX_OK)
    {
        ngx_do_cluster_next(ngx_do_cluster->lease / 8);
        return;
    }

    ngx_do_cluster_busy = 1;
}


/*
 * A registry entry, "<address> <digest>": the address's length, and 1 when
 * the node has this node's do_namespace lines (a node that does not takes
 * no part in this node's placement, loudly)
 */
static ngx_uint_t
ngx_do_cluster_alike(ngx_str_t *name, u_char *value, size_t len,
    size_t *addr_len)
{
    u_char  *sp;

    sp = ngx_strlchr(value, value + len, ' ');

    if (sp == NULL || value + len - (sp + 1) != 8) {
        *addr_len = len;
        return 1;
    }

    *addr_len = sp - value;

    if (ngx_hextoi(sp + 1, 8) == (ngx_int_t) ngx_do_cluster_digest) {
        return 1;
    }

    ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0, NGX_DO_LOG_NODE,
                         "do: cluster: node \"%V\" has other do_namespace "
                         "lines than this node (digest %*s, here %08xD): "
                         "every node needs the same ones in the same order; "
                         "it is left out of this node's placement",
                         name, (size_t) 8, sp + 1, ngx_do_cluster_digest);

    return 0;
}


/* a shard's rendezvous hash for a node: FNV-1a of the name, then mixed */
static uint64_t
ngx_do_cluster_weight(ngx_uint_t shard, u_char *name)
{
    uint64_t  h;

    h = 14695981039346656037ULL;

    while (*name) {
        h = (h ^ *name++) * 1099511628211ULL;
    }

    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= (uint64_t) (shard + 1) * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;

    return h;
}


/*
 * What this node asks of each shard's lease: the ones it wins, '1'; the
 * ones it holds and no longer wins, a handover: "leaving" for a tick
 * (calls wait, the leave handlers store deferred state) and '1', then '2'.
 */
static void
ngx_do_cluster_place(ngx_uint_t *live, ngx_uint_t nlive, u_char *want)
{
    uint64_t                 w, best, h;
    ngx_uint_t               s, i, winner, self, k;
    ngx_do_cluster_shard_t  *sh;

    self = ngx_do_cluster_sh->self;

    for (s = 0; s < NGX_DO_SHARDS; s++) {
        winner = self;
        best = 0;

        for (i = 0; i < nlive; i++) {
            h = ngx_do_cluster_weight(s,
                                      ngx_do_cluster_sh->peers[live[i]].name);

            if (i == 0 || h > best) {
                best = h;
                winner = live[i];
            }
        }

        sh = &ngx_do_cluster_sh->shards[s];
        w = sh->word;

        if (winner == self) {
            want[s] = '1';

            if (w & NGX_DO_CLUSTER_LEAVING) {
                sh->word = w & ~NGX_DO_CLUSTER_LEAVING;
            }

            continue;
        }

        if (NGX_DO_CLUSTER_HOLDER(w) != self) {
            want[s] = '0';
            continue;
        }

        if (w & NGX_DO_CLUSTER_LEAVING) {
            want[s] = '2';
            continue;
        }

        sh->word = w | NGX_DO_CLUSTER_LEAVING;
        want[s] = '1';

        for (k = 0; k < ngx_do_cluster_nleaves; k++) {
            ngx_do_cluster_leaves[k](s);
        }
    }
}


/* every shard's holder: the table the workers route by */
static void
ngx_do_cluster_leased(void *data, void *r)
{
    redisReply  *reply = r;

    u_char                  *v, *sp, *last;
    uint64_t                 w, epoch;
    ngx_str_t                name;
    ngx_uint_t               s, holder, self;
    ngx_msec_t               until;
    ngx_do_cluster_shard_t  *sh;

    ngx_do_cluster_busy = 0;

    if (ngx_do_cluster == NULL || ngx_do_cluster_stopped) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != NGX_DO_SHARDS + 1
        || reply->element[NGX_DO_SHARDS]->type != REDIS_REPLY_INTEGER)
    {
        ngx_do_log_throttled(NGX_LOG_ERR, ngx_cycle->log, 0,
                             NGX_DO_LOG_REPLY,
                             "do: cluster: the leases got no answer from "
                             "Redis; the leases of this node run out if "
                             "it lasts");
        ngx_do_cluster_next(ngx_do_cluster->lease / 8);
        return;
    }

    self = ngx_do_cluster_sh->self;
    until = ngx_do_cluster_sent + ngx_do_cluster->lease
            - ngx_do_cluster->lease / 8;

    for (s = 0; s < NGX_DO_SHARDS; s++) {
        sh = &ngx_do_cluster_sh->shards[s];
        w = sh->word;

        holder = NGX_DO_CLUSTER_NOBODY;
        epoch = 0;

        if (reply->element[s]->type == REDIS_REPLY_STRING
            && reply->element[s]->len)
        {
            v = (u_char *) reply->element[s]->str;
            last = v + reply->element[s]->len;
            sp = ngx_strlchr(v, last, ' ');

            if (sp && sp > v && sp + 1 < last) {
                epoch = (uint64_t) ngx_atoof(v, sp - v);
                name.data = sp + 1;
                name.len = last - sp - 1;

                ngx_spinlock(&ngx_do_cluster_sh->lock, ngx_pid, 1024);
                holder = ngx_do_cluster_index(&name, 1);
                ngx_unlock(&ngx_do_cluster_sh->lock);

                if (holder == NGX_DO_CLUSTER_NONE || epoch == (uint64_t) -1) {
                    holder = NGX_DO_CLUSTER_NOBODY;
                    epoch = 0;
                }
            }
        }

        /* a shard this node still holds stays "leaving" until released */
        w = (holder == self && NGX_DO_CLUSTER_HOLDER(w) == self)
            ? (w & NGX_DO_CLUSTER_LEAVING) : 0;

        if (holder == self) {
            sh->until = until;
        }

        sh->word = w | ((uint64_t) holder << 56)
                   | (epoch & NGX_DO_CLUSTER_EPOCH);
    }

    ngx_do_cluster_sh->fresh = 0;
    (void) ngx_atomic_fetch_add(&ngx_do_cluster_sh->ticks, 1);

    ngx_do_cluster_next(
                  ngx_do_cluster_delay(reply->element[NGX_DO_SHARDS]->integer));
}


/*
 * The next tick: in lease/4, or sooner just after another node's registry
 * entry or a lease of another node on a shard this node wins runs out
 * (soon, ms; -1: none).  So a dead node's shards are taken about a lease
 * after its last renewal, not up to a tick or two later.
 */
static ngx_msec_t
ngx_do_cluster_delay(long long soon)
{
    ngx_msec_t  d;

    d = ngx_do_cluster->lease / 4;

    if (ngx_do_cluster_due) {
        if ((ngx_msec_int_t) (ngx_do_cluster_due - ngx_current_msec) <= 0) {
            d = 0;

        } else if (ngx_do_cluster_due - ngx_current_msec < d) {
            d = ngx_do_cluster_due - ngx_current_msec;
        }
    }

    if (soon >= 0 && (ngx_msec_t) soon + NGX_DO_CLUSTER_LATE < d) {
        d = (ngx_msec_t) soon + NGX_DO_CLUSTER_LATE;
    }

    if (d < NGX_DO_CLUSTER_SOONEST) {
        d = NGX_DO_CLUSTER_SOONEST;
    }

    if (d < ngx_do_cluster->lease / 4) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                       "do: cluster: next tick in %M ms, as an entry or "
                       "a lease runs out", d);
    }

    return d;
}


static void
ngx_do_cluster_next(ngx_msec_t delay)
{
    if (ngx_exiting || ngx_terminate || ngx_quit || ngx_do_cluster == NULL
        || ngx_do_cluster_stopped)
    {
        return;
    }

    ngx_add_timer(&ngx_do_cluster_event, delay ? delay : 1);
}


size_t
ngx_do_cluster_status_size(void)
{
    return 1024 + NGX_DO_SHARDS * 32
           + NGX_DO_CLUSTER_PEERS * (NGX_DO_CLUSTER_NAME_LEN
                                     + NGX_DO_CLUSTER_ADDR_LEN + 128)
           + ngx_do_node_status_size();
}


/*
 * "cluster":{"node","listen","lease_ms","shards","epochs":{"<s>":e},
 * "lost","peers":[{"name","addr","live","self","shards", and for the
 * other nodes their channel's: ngx_do_node_status_json()}]}
 */
u_char *
ngx_do_cluster_status_json(u_char *p, u_char *last)
{
    uint64_t                w;
    ngx_uint_t              s, n, self, i, first;
    ngx_do_cluster_peer_t  *peer;

    if (ngx_do_cluster == NULL) {
        return p;
    }

    self = ngx_do_cluster_sh->self;

    n = 0;

    for (s = 0; s < NGX_DO_SHARDS; s++) {
        if (ngx_do_cluster_epoch(s)) {
            n++;
        }
    }

    p = ngx_slprintf(p, last, ",\"cluster\":{\"node\":\"%V\","
                     "\"listen\":\"%V\",\"lease_ms\":%M,\"shards\":%ui,"
                     "\"fenced\":%ui,\"lost\":%uA,\"ticks\":%uA,"
                     "\"epochs\":{",
                     &ngx_do_cluster->name, &ngx_do_cluster->addr.name,
                     ngx_do_cluster->lease, n, ngx_do_status_fenced(),
                     ngx_do_cluster_sh->lost, ngx_do_cluster_sh->ticks);

    first = 1;

    for (s = 0; s < NGX_DO_SHARDS; s++) {
        if (ngx_do_cluster_epoch(s)) {
            w = ngx_do_cluster_sh->shards[s].word;
            p = ngx_slprintf(p, last, "%s\"%ui\":%uL", first ? "" : ",", s,
                             w & NGX_DO_CLUSTER_EPOCH);
            first = 0;
        }
    }

    p = ngx_slprintf(p, last, "},\"peers\":[");

    first = 1;

    for (i = 0; i < NGX_DO_CLUSTER_PEERS; i++) {
        peer = &ngx_do_cluster_sh->peers[i];

        if (peer->name[0] == '\0') {
            continue;
        }

        n = 0;

        for (s = 0; s < NGX_DO_SHARDS; s++) {
            if (NGX_DO_CLUSTER_HOLDER(ngx_do_cluster_sh->shards[s].word) == i)
            {
                n++;
            }
        }

        p = ngx_slprintf(p, last, "%s{\"name\":\"%s\",\"addr\":\"%s\","
                         "\"live\":%s,\"self\":%s,\"shards\":%ui",
                         first ? "" : ",", peer->name, peer->addr,
                         peer->live ? "true" : "false",
                         i == self ? "true" : "false", n);

        if (i != self) {
            p = ngx_do_node_status_json(p, last, i);
        }

        p = ngx_slprintf(p, last, "}");
        first = 0;
    }

    return ngx_slprintf(p, last, "]}");
}


u_char *
ngx_do_cluster_status_prometheus(u_char *p, u_char *last)
{
    ngx_uint_t              s, n, i;
    ngx_do_cluster_peer_t  *peer;

    if (ngx_do_cluster == NULL) {
        return p;
    }

    n = 0;

    for (s = 0; s < NGX_DO_SHARDS; s++) {
        if (ngx_do_cluster_epoch(s)) {
            n++;
        }
    }

    p = ngx_slprintf(p, last,
                     "# HELP ngx_do_cluster_shards shards this node holds\n"
                     "# TYPE ngx_do_cluster_shards gauge\n"
                     "ngx_do_cluster_shards{node=\"%V\"} %ui\n"
                     "# HELP ngx_do_cluster_fenced_total commits and "
                     "flushes refused by their shard's epoch\n"
                     "# TYPE ngx_do_cluster_fenced_total counter\n"
                     "ngx_do_cluster_fenced_total %ui\n"
                     "# HELP ngx_do_cluster_lost_total shards this node "
                     "learned it lost from a refused commit\n"
                     "# TYPE ngx_do_cluster_lost_total counter\n"
                     "ngx_do_cluster_lost_total %uA\n"
                     "# HELP ngx_do_cluster_peer_live nodes in the "
                     "registry\n"
                     "# TYPE ngx_do_cluster_peer_live gauge\n",
                     &ngx_do_cluster->name, n, ngx_do_status_fenced(),
                     ngx_do_cluster_sh->lost);

    for (i = 0; i < NGX_DO_CLUSTER_PEERS; i++) {
        peer = &ngx_do_cluster_sh->peers[i];

        if (peer->name[0]) {
            p = ngx_slprintf(p, last, "ngx_do_cluster_peer_live{peer=\"%s\"}"
                             " %d\n", peer->name, peer->live ? 1 : 0);
        }
    }

    return ngx_do_node_status_prometheus(p, last);
}
