
/*
 * The object cache: what this owner read or wrote, by key, valid at the
 * object's version (a NULL value: known absent).  On a synchronous
 * backend it keeps what turns read, without values over 64 KiB and
 * dropped whole past 1 MiB; on an asynchronous backend it is the object's
 * complete state, loaded at activation, and listings read it (a key not
 * in it is absent: no NULL values there).  A failed or lost commit drops
 * it all.
 *
 * The tree is ordered by a hash of the key, then by the key's bytes.  The
 * runtime's reserved keys (a zero byte first) all hash to 0: they sit
 * together at the start of the tree in byte order, where
 * ngx_do_cache_range() finds the first of a prefix in O(log n) (the
 * alarms of an object by time, see ngx_do_alarm.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do_object.h"


#define NGX_DO_CACHE_MAX_VALUE    (64 * 1024)
#define NGX_DO_CACHE_MAX_SIZE     (1024 * 1024)


static int ngx_libc_cdecl ngx_do_cache_kv_cmp(const void *one, const void *two);
static uint32_t ngx_do_cache_hash(ngx_str_t *key);
static ngx_int_t ngx_do_cache_cmp(ngx_rbtree_node_t *node, uint32_t hash,
    ngx_str_t *key);
static void ngx_do_cache_remove(ngx_do_object_t *obj, ngx_do_cache_t *e);


/* list() over a complete cache: the same order and bounds as storage */
ngx_int_t
ngx_do_cache_list(ngx_do_turn_t *t, ngx_do_list_opts_t *opts,
    ngx_array_t *out)
{
    size_t              bytes;
    ngx_uint_t          i, n;
    ngx_array_t         all;
    ngx_do_kv_t        *kv, *item, *copy;
    ngx_do_cache_t     *e;
    ngx_rbtree_node_t  *node;
    ngx_do_object_t    *obj;

    obj = t->obj;

    if (ngx_array_init(&all, t->pool, 16, sizeof(ngx_do_kv_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    if (obj->cache.root != obj->cache.sentinel) {
        for (node = ngx_rbtree_min(obj->cache.root, obj->cache.sentinel);
             node;
             node = ngx_rbtree_next(&obj->cache, node))
        {
            e = (ngx_do_cache_t *) node;

            if (e->value.data == NULL
                || (opts->prefix.len
                    && (e->node.str.len < opts->prefix.len
                        || ngx_memcmp(e->node.str.data, opts->prefix.data,
                                      opts->prefix.len) != 0))
                || (opts->start.len
                    && ngx_memn2cmp(e->node.str.data, opts->start.data,
                                    e->node.str.len, opts->start.len) < 0)
                || (opts->end.len
                    && ngx_memn2cmp(e->node.str.data, opts->end.data,
                                    e->node.str.len, opts->end.len) >= 0))
            {
                continue;
            }

            kv = ngx_array_push(&all);
            if (kv == NULL) {
                return NGX_ERROR;
            }

            kv->key = e->node.str;
            kv->value = e->value;
            kv->version = e->version;
        }
    }

    ngx_qsort(all.elts, all.nelts, sizeof(ngx_do_kv_t), ngx_do_cache_kv_cmp);

    kv = all.elts;
    n = all.nelts;
    bytes = 0;

    for (i = 0; i < n && out->nelts < opts->limit; i++) {
        item = &kv[opts->reverse ? n - 1 - i : i];

        bytes += item->key.len + item->value.len;

        if (opts->max_bytes && bytes > opts->max_bytes && out->nelts) {
            opts->truncated = 1;
            break;
        }

        copy = ngx_array_push(out);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        /* copies: the cache may change before the turn ends */
        copy->key.data = ngx_pnalloc(t->pool,
                                     item->key.len + item->value.len + 1);
        if (copy->key.data == NULL) {
            return NGX_ERROR;
        }

        copy->key.len = item->key.len;
        ngx_memcpy(copy->key.data, item->key.data, item->key.len);
        copy->value.data = copy->key.data + item->key.len;
        copy->value.len = item->value.len;
        (void) ngx_do_cpymem(copy->value.data, item->value.data,
                             item->value.len);
        copy->version = item->version;
    }

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_do_cache_kv_cmp(const void *one, const void *two)
{
    const ngx_do_kv_t  *a = one, *b = two;

    return (int) ngx_memn2cmp(a->key.data, b->key.data, a->key.len,
                              b->key.len);
}


static uint32_t
ngx_do_cache_hash(ngx_str_t *key)
{
    if (key->len && key->data[0] == '\0') {
        return 0;
    }

    return ngx_crc32_short(key->data, key->len);
}


/* the order of the tree: where a key goes relative to a node */
static ngx_int_t
ngx_do_cache_cmp(ngx_rbtree_node_t *node, uint32_t hash, ngx_str_t *key)
{
    ngx_do_cache_t  *e;

    if ((ngx_rbtree_key_t) hash != node->key) {
        return ((ngx_rbtree_key_t) hash < node->key) ? -1 : 1;
    }

    e = (ngx_do_cache_t *) node;

    return ngx_memn2cmp(key->data, e->node.str.data, key->len,
                        e->node.str.len);
}


void
ngx_do_cache_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t  **p;
    ngx_do_cache_t      *n;

    n = (ngx_do_cache_t *) node;

    for ( ;; ) {
        p = (ngx_do_cache_cmp(temp, (uint32_t) node->key, &n->node.str) < 0)
            ? &temp->left : &temp->right;

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


ngx_do_cache_t *
ngx_do_cache_find(ngx_do_object_t *obj, ngx_str_t *key)
{
    uint32_t            hash;
    ngx_int_t           rc;
    ngx_rbtree_node_t  *node;

    hash = ngx_do_cache_hash(key);
    node = obj->cache.root;

    while (node != obj->cache.sentinel) {
        rc = ngx_do_cache_cmp(node, hash, key);

        if (rc == 0) {
            return (ngx_do_cache_t *) node;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Up to limit keys of a reserved prefix in byte order, copied into pool
 * (an asynchronous backend's cache: the complete state)
 */
ngx_int_t
ngx_do_cache_range(ngx_do_object_t *obj, ngx_str_t *prefix, ngx_uint_t limit,
    ngx_pool_t *pool, ngx_array_t *out)
{
    ngx_str_t          *k;
    ngx_do_cache_t     *e;
    ngx_rbtree_node_t  *node, *found;

    /* the first reserved key not below the prefix */
    found = NULL;
    node = obj->cache.root;

    while (node != obj->cache.sentinel) {
        if (ngx_do_cache_cmp(node, 0, prefix) <= 0) {
            found = node;
            node = node->left;

        } else {
            node = node->right;
        }
    }

    for (node = found;
         node && out->nelts < limit;
         node = ngx_rbtree_next(&obj->cache, node))
    {
        e = (ngx_do_cache_t *) node;

        if (node->key != 0 || e->node.str.len < prefix->len
            || ngx_memcmp(e->node.str.data, prefix->data, prefix->len) != 0)
        {
            break;
        }

        if (e->value.data == NULL) {
            continue;
        }

        k = ngx_array_push(out);
        if (k == NULL) {
            return NGX_ERROR;
        }

        k->len = e->node.str.len;
        k->data = ngx_pnalloc(pool, k->len);
        if (k->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(k->data, e->node.str.data, k->len);
    }

    return NGX_OK;
}


/*
 * Caches a value (NULL: known absent).  With copy unset the cache takes
 * the ngx_alloc()ed value->data or frees it.  Large values are not cached.
 */
void
ngx_do_cache_set(ngx_do_object_t *obj, ngx_str_t *key, ngx_str_t *value,
    uint64_t version, ngx_uint_t copy)
{
    u_char          *data;
    ngx_do_cache_t  *e;

    e = ngx_do_cache_find(obj, key);

    if (e && copy && value && e->value.data && e->value.len == value->len) {
        /* the common case of a counter or a timestamp: no allocation */
        ngx_memcpy(e->value.data, value->data, value->len);
        e->version = version;
        return;
    }

    if (e) {
        ngx_do_cache_remove(obj, e);
    }

    if (value == NULL && ngx_do_object_backend->async) {
        /* the complete state: absent is not in it */
        return;
    }

    data = NULL;

    if (value) {
        if (value->len > NGX_DO_CACHE_MAX_VALUE
            && !ngx_do_object_backend->async)
        {
            goto nocache;
        }

        if (copy) {
            data = ngx_alloc(value->len + 1, ngx_cycle->log);
            if (data == NULL) {
                return;
            }

            ngx_memcpy(data, value->data, value->len);

        } else {
            data = value->data;
        }
    }

    /* a complete cache (asynchronous backends) is never trimmed */
    if (obj->cache_size + key->len + (value ? value->len : 0)
        > NGX_DO_CACHE_MAX_SIZE
        && !ngx_do_object_backend->async)
    {
        ngx_do_cache_drop(obj);
    }

    e = ngx_alloc(sizeof(ngx_do_cache_t) + key->len, ngx_cycle->log);
    if (e == NULL) {
        if (data) {
            ngx_free(data);
        }

        return;
    }

    e->node.node.key = ngx_do_cache_hash(key);
    e->node.str.data = (u_char *) (e + 1);
    e->node.str.len = key->len;
    ngx_memcpy(e->node.str.data, key->data, key->len);
    e->value.data = data;
    e->value.len = value ? value->len : 0;
    e->version = version;

    ngx_rbtree_insert(&obj->cache, &e->node.node);
    obj->cache_size += key->len + e->value.len;

    return;

nocache:

    if (!copy) {
        ngx_free(value->data);
    }
}


void
ngx_do_cache_version(ngx_do_object_t *obj, ngx_str_t *key, uint64_t version)
{
    ngx_do_cache_t  *e;

    e = ngx_do_cache_find(obj, key);

    if (e) {
        e->version = version;
    }
}


static void
ngx_do_cache_remove(ngx_do_object_t *obj, ngx_do_cache_t *e)
{
    ngx_rbtree_delete(&obj->cache, &e->node.node);
    obj->cache_size -= e->node.str.len + e->value.len;

    if (e->value.data) {
        ngx_free(e->value.data);
    }

    ngx_free(e);
}


void
ngx_do_cache_drop(ngx_do_object_t *obj)
{
    ngx_rbtree_node_t  *node;

    while (obj->cache.root != obj->cache.sentinel) {
        node = ngx_rbtree_min(obj->cache.root, obj->cache.sentinel);
        ngx_do_cache_remove(obj, (ngx_do_cache_t *) node);
    }

    obj->cache_size = 0;
    obj->loaded = 0;
}
