
/*
 * The object cache: what this owner read or wrote, by key, valid at the
 * object's version (a NULL value: known absent).  On a synchronous
 * backend it keeps what turns read, without values over 64 KiB and
 * dropped whole past 1 MiB; on an asynchronous backend it is the object's
 * complete state, loaded at activation, and listings read it.  A failed
 * or lost commit drops it all.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do_object.h"


#define NGX_DO_CACHE_MAX_VALUE    (64 * 1024)
#define NGX_DO_CACHE_MAX_SIZE     (1024 * 1024)


static int ngx_libc_cdecl ngx_do_cache_kv_cmp(const void *one, const void *two);
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


ngx_do_cache_t *
ngx_do_cache_find(ngx_do_object_t *obj, ngx_str_t *key, uint32_t hash)
{
    return (ngx_do_cache_t *) ngx_str_rbtree_lookup(&obj->cache, key, hash);
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
    uint32_t         hash;
    ngx_do_cache_t  *e;

    hash = ngx_crc32_short(key->data, key->len);

    e = ngx_do_cache_find(obj, key, hash);

    if (e && copy && value && e->value.data && e->value.len == value->len) {
        /* the common case of a counter or a timestamp: no allocation */
        ngx_memcpy(e->value.data, value->data, value->len);
        e->version = version;
        return;
    }

    if (e) {
        ngx_do_cache_remove(obj, e);
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

    e->node.node.key = hash;
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

    e = ngx_do_cache_find(obj, key, ngx_crc32_short(key->data, key->len));

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
