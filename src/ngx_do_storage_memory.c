
/*
 * The memory storage backend: objects' keys and values in an nginx shared
 * memory zone, so that they survive a reload and the death of any worker,
 * but not a full stop.  All access holds the slab pool's mutex; nginx
 * releases it for a worker that died holding it.
 *
 * Layout: one red-black tree of objects keyed by a hash of the object ID,
 * and in every object one tree of keys ordered by their bytes (the order of
 * list()).  Values are separate slab allocations.  Here are the zone, its
 * objects, commits, the alarm index and expiry; an object's keys, their
 * list and a batch's writes into them are in ngx_do_storage_memory_keys.c.
 *
 * The zone, "do_storage", is added by init_conf with do_storage's size=;
 * without do_secret the key of IDs is the random one kept in it.
 *
 * Quotas: each namespace's count lives in the zone (ngx_do_quota.c); a
 * commit checks and moves it under the mutex, with the writes.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/rand.h>

#include "ngx_do.h"


#define NGX_DO_MEMORY_ZONE_NAME   "do_storage"
#define NGX_DO_MEMORY_DEFAULT_SIZE  (64 * 1024 * 1024)
/* pages a zone has besides the alarm index and the zone's own header */
#define NGX_DO_MEMORY_MIN_PAGES   8

/* the writes of a batch whose commit needs no allocation of its own */
#define NGX_DO_MEMORY_SMALL_BATCH  8


/* do_storage memory [size=64m] */
typedef struct {
    size_t                     size;
    ngx_shm_zone_t            *zone;
} ngx_do_memory_conf_t;


typedef struct {
    ngx_rbtree_t               objects;
    ngx_rbtree_node_t          sentinel;
    uint64_t                   commits;
    ngx_rbtree_key_t           sweep;         /* where the last sweep ended */
    u_char                     secret[32];
    struct ngx_do_memory_alarms_s  *alarms;   /* NULL: no alarm yet */
    ngx_do_quota_t            *quotas;
} ngx_do_memory_sh_t;


/* what a batch changes in its namespace's count */
typedef struct {
    ngx_do_quota_t            *quota;
    off_t                      bytes;
    ngx_int_t                  objects;
} ngx_do_memory_delta_t;


/*
 * The alarm index: one tree per shard (64 KiB), allocated with the zone:
 * do_storage refuses a size that cannot hold it
 */
typedef struct ngx_do_memory_alarms_s {
    ngx_rbtree_t               trees[NGX_DO_SHARDS];
    ngx_rbtree_node_t          sentinels[NGX_DO_SHARDS];
} ngx_do_memory_alarms_t;


static void *ngx_do_memory_create_conf(ngx_conf_t *cf, ngx_str_t *arg);
static ngx_int_t ngx_do_memory_parse_param(ngx_conf_t *cf, void *conf,
    ngx_str_t *param);
static size_t ngx_do_memory_min_size(void);
static ngx_int_t ngx_do_memory_init_conf(ngx_conf_t *cf, void *conf,
    void *tag);
static ngx_int_t ngx_do_memory_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_do_memory_init_worker(ngx_cycle_t *cycle, void *conf);
static ngx_int_t ngx_do_memory_secret(u_char *secret);
static void ngx_do_memory_usage(ngx_do_storage_usage_t *usage);
static size_t ngx_do_memory_capacity(void *conf);

static ngx_int_t ngx_do_memory_version(u_char *id, uint64_t *version,
    uint64_t *alarm);
static ngx_int_t ngx_do_memory_get(u_char *id, ngx_str_t *key,
    ngx_str_t *value, uint64_t *version);
static ngx_int_t ngx_do_memory_list(u_char *id, ngx_do_list_opts_t *opts,
    ngx_pool_t *pool, ngx_array_t *out);
static ngx_int_t ngx_do_memory_commit(ngx_do_namespace_t *ns, u_char *id,
    uint64_t expected, ngx_do_batch_t *batch, ngx_do_storage_req_t *req);

static ngx_int_t ngx_do_memory_alarms_index(void);
static ngx_int_t ngx_do_memory_quota_check(ngx_do_namespace_t *ns,
    ngx_do_memory_object_t *obj, ngx_do_batch_t *batch,
    ngx_do_memory_delta_t *delta);
static ngx_do_memory_object_t *ngx_do_memory_object_create(
    ngx_do_namespace_t *ns, u_char *id);
static uint64_t ngx_do_memory_apply(ngx_do_memory_object_t *obj,
    ngx_do_batch_t *batch, u_char **values, ngx_do_memory_kv_t **nodes);

static ngx_do_memory_object_t *ngx_do_memory_object(u_char *id);
static void ngx_do_memory_object_free(ngx_do_memory_object_t *obj);
static void ngx_do_memory_sweep(void);
static ngx_int_t ngx_do_memory_alarms(ngx_uint_t shard, uint64_t now,
    ngx_uint_t limit, ngx_do_storage_req_t *req);
static void ngx_do_memory_alarm_set(ngx_do_memory_object_t *obj,
    uint64_t when);


static const char  *ngx_do_memory_forms[] = { "memory", NULL };


ngx_do_backend_t  ngx_do_memory_backend = {
    ngx_string("memory"),
    0,                                     /* async */
    1,                                     /* local */
    ngx_do_memory_forms,
    ngx_do_memory_create_conf,
    ngx_do_memory_parse_param,
    ngx_do_memory_init_conf,
    ngx_do_memory_init_worker,
    NULL,                                  /* exit_worker */
    ngx_do_memory_secret,
    ngx_do_memory_usage,
    ngx_do_memory_capacity,
    ngx_do_memory_version,
    ngx_do_memory_get,
    ngx_do_memory_list,
    NULL,                                  /* load */
    ngx_do_memory_commit,
    ngx_do_memory_sweep,
    ngx_do_memory_alarms,
    NULL,                                  /* cell_get: the node keeps */
    NULL                                   /* cell_put: nothing outside */
};


ngx_slab_pool_t            *ngx_do_memory_shpool;
static ngx_do_memory_sh_t  *ngx_do_memory_sh;


static void *
ngx_do_memory_create_conf(ngx_conf_t *cf, ngx_str_t *arg)
{
    ngx_do_memory_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_do_memory_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    mcf->size = NGX_DO_MEMORY_DEFAULT_SIZE;

    return mcf;
}


static ngx_int_t
ngx_do_memory_parse_param(ngx_conf_t *cf, void *conf, ngx_str_t *param)
{
    ngx_do_memory_conf_t  *mcf = conf;

    ssize_t    size;
    ngx_str_t  s;

    if (ngx_strncmp(param->data, "size=", 5) != 0) {
        return NGX_DECLINED;
    }

    s.data = param->data + 5;
    s.len = param->len - 5;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR || size < (ssize_t) ngx_do_memory_min_size()) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid do storage size \"%V\", "
                           "at least %uzk is needed (the alarm index takes "
                           "%uzk)", param,
                           (ngx_do_memory_min_size() + 1023) >> 10,
                           sizeof(ngx_do_memory_alarms_t) >> 10);
        return NGX_ERROR;
    }

    mcf->size = size;

    return NGX_OK;
}


/*
 * The least zone size: the alarm index, a page for the zone's own header
 * and NGX_DO_MEMORY_MIN_PAGES for objects, as the slab allocator counts
 * (ngx_slab_init(): a slot and statistics per size class, a descriptor per
 * page, and a first page aligned, which may cost one)
 */
static size_t
ngx_do_memory_min_size(void)
{
    size_t  head, pages;

    head = sizeof(ngx_slab_pool_t)
           + (ngx_pagesize_shift - 3)
             * (sizeof(ngx_slab_page_t) + sizeof(ngx_slab_stat_t));

    pages = (sizeof(ngx_do_memory_alarms_t) + ngx_pagesize - 1)
            / ngx_pagesize
            + 1 + NGX_DO_MEMORY_MIN_PAGES;

    return head + (pages + 1) * (ngx_pagesize + sizeof(ngx_slab_page_t));
}


static ngx_int_t
ngx_do_memory_init_conf(ngx_conf_t *cf, void *conf, void *tag)
{
    ngx_do_memory_conf_t  *mcf = conf;

    ngx_str_t  name = ngx_string(NGX_DO_MEMORY_ZONE_NAME);

    if (mcf->zone) {
        return NGX_OK;
    }

    mcf->zone = ngx_shared_memory_add(cf, &name, mcf->size, tag);
    if (mcf->zone == NULL) {
        return NGX_ERROR;
    }

    mcf->zone->init = ngx_do_memory_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_do_memory_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t     *shpool;
    ngx_do_memory_sh_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data) {
        /* a reload: keep what the previous cycle stored */
        shm_zone->data = data;
        ngx_do_memory_shpool = shpool;
        ngx_do_memory_sh = data;
        return NGX_OK;
    }

    sh = ngx_slab_alloc(shpool, sizeof(ngx_do_memory_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&sh->objects, &sh->sentinel,
                    ngx_do_id_rbtree_insert);
    sh->commits = 0;
    sh->alarms = NULL;
    sh->quotas = NULL;

    if (RAND_bytes(sh->secret, sizeof(sh->secret)) != 1) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    shpool->log_nomem = 0;

    shm_zone->data = sh;
    ngx_do_memory_shpool = shpool;
    ngx_do_memory_sh = sh;

    /* now, so that no alarm finds the zone too full for it */
    if (ngx_do_memory_alarms_index() != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "do: the storage zone is too small for the alarm "
                      "index");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * In a worker: the zone of the worker's own cycle.  init_zone() may have
 * run for a configuration that was then not applied, so its pointers are
 * not trusted after fork.
 */
static ngx_int_t
ngx_do_memory_init_worker(ngx_cycle_t *cycle, void *conf)
{
    ngx_do_memory_conf_t  *mcf = conf;

    ngx_do_memory_shpool = (ngx_slab_pool_t *) mcf->zone->shm.addr;
    ngx_do_memory_sh = mcf->zone->data;

    return NGX_OK;
}


/* the random secret the zone was created with, for when do_secret is unset */
static ngx_int_t
ngx_do_memory_secret(u_char *secret)
{
    if (ngx_do_memory_sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(secret, ngx_do_memory_sh->secret, 32);

    return NGX_OK;
}


static void
ngx_do_memory_usage(ngx_do_storage_usage_t *usage)
{
    if (ngx_do_memory_shpool == NULL) {
        return;
    }

    usage->size = ngx_do_memory_shpool->end - (u_char *) ngx_do_memory_shpool;
    usage->free = ngx_do_memory_shpool->pfree * ngx_pagesize;
}


static size_t
ngx_do_memory_capacity(void *conf)
{
    ngx_do_memory_conf_t  *mcf = conf;

    return mcf->size;
}


static ngx_int_t
ngx_do_memory_version(u_char *id, uint64_t *version, uint64_t *alarm)
{
    ngx_do_memory_object_t  *obj;

    ngx_shmtx_lock(&ngx_do_memory_shpool->mutex);

    obj = ngx_do_memory_object(id);
    *version = obj ? obj->version : 0;
    *alarm = obj ? (uint64_t) obj->alarm.key : 0;

    ngx_shmtx_unlock(&ngx_do_memory_shpool->mutex);

    return NGX_OK;
}


/* the value is copied into a buffer from ngx_alloc() that the caller owns */
static ngx_int_t
ngx_do_memory_get(u_char *id, ngx_str_t *key, ngx_str_t *value,
    uint64_t *version)
{
    u_char                  *p;
    ngx_int_t                rc;
    ngx_do_memory_kv_t      *kv;
    ngx_do_memory_object_t  *obj;

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ngx_do_memory_shpool->mutex);

    obj = ngx_do_memory_object(id);
    kv = obj ? ngx_do_memory_keys_find(obj, key) : NULL;

    if (kv) {
        p = ngx_alloc(kv->value_len + 1, ngx_cycle->log);

        if (p == NULL) {
            rc = NGX_ERROR;

        } else {
            (void) ngx_do_cpymem(p, kv->value, kv->value_len);
            value->data = p;
            value->len = kv->value_len;
            *version = kv->version;
            rc = NGX_OK;
        }
    }

    ngx_shmtx_unlock(&ngx_do_memory_shpool->mutex);

    return rc;
}


/* an object's keys in list() order: ngx_do_storage_memory_keys.c */
static ngx_int_t
ngx_do_memory_list(u_char *id, ngx_do_list_opts_t *opts, ngx_pool_t *pool,
    ngx_array_t *out)
{
    ngx_int_t                rc;
    ngx_do_memory_object_t  *obj;

    ngx_shmtx_lock(&ngx_do_memory_shpool->mutex);

    obj = ngx_do_memory_object(id);
    rc = obj ? ngx_do_memory_keys_list(obj, opts, pool, out) : NGX_OK;

    ngx_shmtx_unlock(&ngx_do_memory_shpool->mutex);

    return rc;
}


/*
 * Applies a batch atomically: everything the batch needs is allocated
 * first, so a full zone fails the whole batch (NGX_DECLINED) and changes
 * nothing; NGX_BUSY when the object's version is not the expected one.
 */
static ngx_int_t
ngx_do_memory_commit(ngx_do_namespace_t *ns, u_char *id, uint64_t expected,
    ngx_do_batch_t *batch, ngx_do_storage_req_t *req)
{
    u_char                  **values;
    ngx_int_t                 rc;
    ngx_uint_t                i, n, created;
    ngx_do_memory_kv_t      **nodes;
    ngx_do_memory_delta_t     delta;
    ngx_do_memory_object_t   *obj;
    void                     *small[2 * (NGX_DO_MEMORY_SMALL_BATCH + 1)];

    n = batch->writes.nelts;

    /*
     * per write: its new value and its new key node, where it needs them
     * (on the stack for a small batch, as most are)
     */
    if (n <= NGX_DO_MEMORY_SMALL_BATCH) {
        values = (u_char **) small;

    } else {
        values = ngx_alloc(2 * (n + 1) * sizeof(void *), ngx_cycle->log);
        if (values == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_memzero(values, 2 * (n + 1) * sizeof(void *));
    nodes = (ngx_do_memory_kv_t **) (values + n + 1);

    created = 0;
    rc = NGX_OK;

    ngx_shmtx_lock(&ngx_do_memory_shpool->mutex);

    obj = ngx_do_memory_object(id);

    if (expected != NGX_DO_VERSION_ANY
        && (obj ? obj->version : 0) != expected)
    {
        rc = NGX_BUSY;
        goto done;
    }

    if (batch->alarm && ngx_do_memory_alarms_index() != NGX_OK) {
        rc = NGX_DECLINED;
        goto done;
    }

    rc = ngx_do_memory_quota_check(ns, obj, batch, &delta);
    if (rc != NGX_OK) {
        goto done;
    }

    if (obj == NULL) {
        obj = ngx_do_memory_object_create(ns, id);
        if (obj == NULL) {
            rc = NGX_DECLINED;
            goto done;
        }

        created = 1;
    }

    if (ngx_do_memory_keys_reserve(obj, batch, values, nodes) != NGX_OK) {
        rc = NGX_DECLINED;
        goto done;
    }

    req->version = ngx_do_memory_apply(obj, batch, values, nodes);
    created = 0;

    ngx_do_quota_add(delta.quota, delta.bytes, delta.objects);

done:

    for (i = 0; i < n; i++) {
        if (values[i]) {
            ngx_slab_free_locked(ngx_do_memory_shpool, values[i]);
        }

        if (nodes[i]) {
            ngx_slab_free_locked(ngx_do_memory_shpool, nodes[i]);
        }
    }

    if (created) {
        ngx_rbtree_delete(&ngx_do_memory_sh->objects, &obj->node.node);
        ngx_slab_free_locked(ngx_do_memory_shpool, obj);
    }

    ngx_shmtx_unlock(&ngx_do_memory_shpool->mutex);

    if (values != (u_char **) small) {
        ngx_free(values);
    }

    return rc;
}


/*
 * The alarm index: allocated with the zone (or by the first alarm, in a
 * zone that an earlier version made without it); under the mutex, or
 * before the workers start
 */
static ngx_int_t
ngx_do_memory_alarms_index(void)
{
    ngx_uint_t               i;
    ngx_do_memory_alarms_t  *alarms;

    if (ngx_do_memory_sh->alarms) {
        return NGX_OK;
    }

    alarms = ngx_slab_alloc_locked(ngx_do_memory_shpool,
                                   sizeof(ngx_do_memory_alarms_t));
    if (alarms == NULL) {
        return NGX_DECLINED;
    }

    for (i = 0; i < NGX_DO_SHARDS; i++) {
        ngx_rbtree_init(&alarms->trees[i], &alarms->sentinels[i],
                        ngx_rbtree_insert_value);
    }

    ngx_do_memory_sh->alarms = alarms;

    return NGX_OK;
}


/*
 * What the batch makes of the object's count in its namespace (an object
 * counts while it has keys and no expiry), and whether the quotas allow
 * it: NGX_OK with delta, NGX_DO_QUOTA_BYTES, NGX_DO_QUOTA_OBJECTS, or
 * NGX_DECLINED (no room for the record).  Under the mutex.
 */
static ngx_int_t
ngx_do_memory_quota_check(ngx_do_namespace_t *ns,
    ngx_do_memory_object_t *obj, ngx_do_batch_t *batch,
    ngx_do_memory_delta_t *delta)
{
    off_t                bytes;
    ngx_int_t            nkeys, before;
    ngx_uint_t           i;
    ngx_do_write_t      *w;
    ngx_do_memory_kv_t  *kv;

    delta->quota = ngx_do_quota_find(ngx_do_memory_shpool,
                                     &ngx_do_memory_sh->quotas, ns);
    if (delta->quota == NULL) {
        return NGX_DECLINED;
    }

    if (obj && !batch->clear) {
        bytes = obj->bytes;
        nkeys = obj->nkeys;

    } else {
        bytes = 0;
        nkeys = 0;
    }

    w = batch->writes.elts;

    for (i = 0; i < batch->writes.nelts; i++) {
        kv = (obj && !batch->clear) ? ngx_do_memory_keys_find(obj, &w[i].key)
                                    : NULL;
        if (kv) {
            bytes -= kv->key_len + kv->value_len;
            nkeys--;
        }

        if (!w[i].delete) {
            bytes += w[i].key.len + w[i].value.len;
            nkeys++;
        }
    }

    if (nkeys == 0 || batch->expire) {
        bytes = 0;
    }

    before = (obj && obj->nkeys && obj->expires == 0);

    delta->bytes = bytes - (before ? obj->bytes : 0);
    delta->objects = (bytes > 0) - before;

    return ngx_do_quota_allow(ns, delta->quota, delta->bytes,
                              delta->objects);
}


/* a new, empty object in the tree; under the mutex */
static ngx_do_memory_object_t *
ngx_do_memory_object_create(ngx_do_namespace_t *ns, u_char *id)
{
    ngx_do_memory_object_t  *obj;

    obj = ngx_slab_alloc_locked(ngx_do_memory_shpool,
                                offsetof(ngx_do_memory_object_t, ns)
                                + ns->name.len);
    if (obj == NULL) {
        return NULL;
    }

    obj->alarm.key = 0;
    obj->ns_len = ns->name.len;
    ngx_memcpy(obj->ns, ns->name.data, ns->name.len);
    ngx_memcpy(obj->node.id, id, NGX_DO_ID_LEN);
    obj->node.node.key = ngx_do_id_hash(id);
    obj->version = 0;
    obj->expires = 0;
    obj->nkeys = 0;
    obj->bytes = 0;
    ngx_rbtree_init(&obj->keys, &obj->sentinel, ngx_do_memory_keys_insert);
    ngx_rbtree_insert(&ngx_do_memory_sh->objects, &obj->node.node);

    return obj;
}


/*
 * Applies a batch whose memory ngx_do_memory_keys_reserve() took: nothing
 * here can fail.  The object's new version, 0 when it emptied and was
 * removed.
 */
static uint64_t
ngx_do_memory_apply(ngx_do_memory_object_t *obj, ngx_do_batch_t *batch,
    u_char **values, ngx_do_memory_kv_t **nodes)
{
    uint64_t  next;

    next = ++ngx_do_memory_sh->commits;

    ngx_do_memory_keys_apply(obj, batch, values, nodes, next);

    if (batch->alarm_set) {
        ngx_do_memory_alarm_set(obj, batch->alarm);
    }

    if (obj->nkeys == 0) {
        ngx_do_memory_alarm_set(obj, 0);
        ngx_rbtree_delete(&ngx_do_memory_sh->objects, &obj->node.node);
        ngx_slab_free_locked(ngx_do_memory_shpool, obj);
        return 0;
    }

    obj->version = next;
    obj->expires = batch->expire ? ngx_do_now() + batch->expire : 0;

    return next;
}


/* an object, unless its state expired: then it is dropped here */
static ngx_do_memory_object_t *
ngx_do_memory_object(u_char *id)
{
    ngx_do_memory_object_t  *obj;

    obj = (ngx_do_memory_object_t *)
              ngx_do_id_rbtree_lookup(&ngx_do_memory_sh->objects, id);

    if (obj && obj->expires && obj->expires <= ngx_do_now()) {
        ngx_do_memory_object_free(obj);
        return NULL;
    }

    return obj;
}


static void
ngx_do_memory_object_free(ngx_do_memory_object_t *obj)
{
    ngx_rbtree_node_t  *node;

    while (obj->keys.root != obj->keys.sentinel) {
        node = ngx_rbtree_min(obj->keys.root, obj->keys.sentinel);
        ngx_do_memory_keys_free(obj, (ngx_do_memory_kv_t *) node);
    }

    ngx_do_memory_alarm_set(obj, 0);
    ngx_rbtree_delete(&ngx_do_memory_sh->objects, &obj->node.node);
    ngx_slab_free_locked(ngx_do_memory_shpool, obj);
}


/* moves the object in its shard's alarm index (0: out of it); locked */
static void
ngx_do_memory_alarm_set(ngx_do_memory_object_t *obj, uint64_t when)
{
    ngx_rbtree_t  *index;

    if (obj->alarm.key == (ngx_rbtree_key_t) when) {
        return;
    }

    if (ngx_do_memory_sh->alarms == NULL) {
        /* when is 0: nothing was ever in the index */
        return;
    }

    index = &ngx_do_memory_sh->alarms->trees[ngx_do_id_shard(obj->node.id)];

    if (obj->alarm.key) {
        ngx_rbtree_delete(index, &obj->alarm);
    }

    obj->alarm.key = (ngx_rbtree_key_t) when;

    if (when) {
        ngx_rbtree_insert(index, &obj->alarm);
    }
}


/* the due start of a shard's alarm index, in time order */
static ngx_int_t
ngx_do_memory_alarms(ngx_uint_t shard, uint64_t now, ngx_uint_t limit,
    ngx_do_storage_req_t *req)
{
    u_char                  *p;
    ngx_int_t                rc;
    ngx_do_kv_t             *kv;
    ngx_rbtree_t            *index;
    ngx_rbtree_node_t       *node;
    ngx_do_memory_object_t  *obj;

    req->version = 0;

    req->pool = ngx_create_pool(4096, ngx_cycle->log);
    if (req->pool == NULL) {
        return NGX_ERROR;
    }

    req->kvs = ngx_array_create(req->pool, 8, sizeof(ngx_do_kv_t));
    if (req->kvs == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_OK;

    ngx_shmtx_lock(&ngx_do_memory_shpool->mutex);

    if (ngx_do_memory_sh->alarms == NULL) {
        ngx_shmtx_unlock(&ngx_do_memory_shpool->mutex);
        return NGX_OK;
    }

    index = &ngx_do_memory_sh->alarms->trees[shard];

    node = (index->root == index->sentinel)
           ? NULL : ngx_rbtree_min(index->root, index->sentinel);

    for ( /* void */ ; node; node = ngx_rbtree_next(index, node)) {

        if ((uint64_t) node->key > now) {
            req->version = node->key;
            break;
        }

        if (req->kvs->nelts == limit) {
            break;
        }

        obj = (ngx_do_memory_object_t *)
                  ((u_char *) node - offsetof(ngx_do_memory_object_t, alarm));

        kv = ngx_array_push(req->kvs);
        p = ngx_pnalloc(req->pool, obj->ns_len + NGX_DO_ID_LEN);

        if (kv == NULL || p == NULL) {
            rc = NGX_ERROR;
            break;
        }

        kv->key.data = p;
        kv->key.len = obj->ns_len;
        kv->value.data = ngx_cpymem(p, obj->ns, obj->ns_len);
        kv->value.len = NGX_DO_ID_LEN;
        ngx_memcpy(kv->value.data, obj->node.id, NGX_DO_ID_LEN);
        kv->version = node->key;
    }

    ngx_shmtx_unlock(&ngx_do_memory_shpool->mutex);

    return rc;
}


/*
 * Drops expired objects that nobody asks for any more: up to 256 objects
 * a call, resuming where the last call ended (a worker calls it every
 * second), so the zone's lock is held briefly.
 */
static void
ngx_do_memory_sweep(void)
{
    uint64_t                 now;
    ngx_uint_t               n;
    ngx_rbtree_node_t       *node, *next, *root, *sentinel;
    ngx_do_memory_object_t  *obj;

    now = ngx_do_now();

    ngx_shmtx_lock(&ngx_do_memory_shpool->mutex);

    root = ngx_do_memory_sh->objects.root;
    sentinel = ngx_do_memory_sh->objects.sentinel;

    /* the first object at or after the cursor */
    next = NULL;

    for (node = root; node != sentinel; ) {
        if (node->key >= ngx_do_memory_sh->sweep) {
            next = node;
            node = node->left;

        } else {
            node = node->right;
        }
    }

    for (n = 0; next && n < 256; n++) {
        node = next;
        next = ngx_rbtree_next(&ngx_do_memory_sh->objects, node);
        obj = (ngx_do_memory_object_t *) node;

        if (obj->expires && obj->expires <= now) {
            ngx_do_memory_object_free(obj);
        }
    }

    ngx_do_memory_sh->sweep = next ? next->key : 0;

    ngx_shmtx_unlock(&ngx_do_memory_shpool->mutex);
}

