
/*
 * The memory backend's keys: in every object of the zone, one red-black
 * tree of its keys ordered by their bytes, a prefix first (the order of
 * list()); each value is a slab allocation of its own.  Here are the walk
 * of a list within its bounds (prefix, start, end, reverse) and its byte
 * budget; a batch's writes, in two steps so that a full zone refuses a
 * batch whole (all it needs is reserved, then applied, which cannot
 * fail); and the tree's order and lookups.  Everything here runs under
 * the zone's mutex, which ngx_do_storage_memory.c holds.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"


static ngx_rbtree_node_t *ngx_do_memory_keys_first(
    ngx_do_memory_object_t *obj, ngx_do_list_opts_t *opts);
static ngx_int_t ngx_do_memory_keys_last(ngx_do_memory_object_t *obj,
    ngx_do_list_opts_t *opts, ngx_pool_t *pool, ngx_rbtree_node_t **node);
static ngx_uint_t ngx_do_memory_keys_in_range(ngx_do_memory_kv_t *kv,
    ngx_do_list_opts_t *opts);
static ngx_int_t ngx_do_memory_keys_cmp(u_char *k1, size_t l1, u_char *k2,
    size_t l2);
static ngx_rbtree_node_t *ngx_do_memory_keys_lower_bound(
    ngx_do_memory_object_t *obj, ngx_str_t *key);
static ngx_rbtree_node_t *ngx_do_memory_keys_prev(ngx_rbtree_t *tree,
    ngx_rbtree_node_t *node);


/*
 * Up to opts->limit of the object's keys and values, in list() order and
 * within its bounds, copied into pool; opts->truncated when the byte
 * budget ended the list first
 */
ngx_int_t
ngx_do_memory_keys_list(ngx_do_memory_object_t *obj, ngx_do_list_opts_t *opts,
    ngx_pool_t *pool, ngx_array_t *out)
{
    size_t               bytes;
    ngx_int_t            rc;
    ngx_do_kv_t         *item;
    ngx_rbtree_node_t   *node;
    ngx_do_memory_kv_t  *kv;

    if (opts->reverse) {
        rc = ngx_do_memory_keys_last(obj, opts, pool, &node);
        if (rc != NGX_OK) {
            return rc;
        }

    } else {
        node = ngx_do_memory_keys_first(obj, opts);
    }

    bytes = 0;

    while (node && out->nelts < opts->limit) {
        kv = (ngx_do_memory_kv_t *) node;

        /* a list never holds the zone for more than so many bytes */
        bytes += kv->key_len + kv->value_len;

        if (opts->max_bytes && bytes > opts->max_bytes && out->nelts) {
            opts->truncated = 1;
            break;
        }

        if (!ngx_do_memory_keys_in_range(kv, opts)) {
            break;
        }

        item = ngx_array_push(out);
        if (item == NULL) {
            return NGX_ERROR;
        }

        item->key.data = ngx_pnalloc(pool, kv->key_len + kv->value_len + 1);
        if (item->key.data == NULL) {
            return NGX_ERROR;
        }

        item->key.len = kv->key_len;
        ngx_memcpy(item->key.data, kv->key, kv->key_len);
        item->value.data = item->key.data + kv->key_len;
        item->value.len = kv->value_len;
        (void) ngx_do_cpymem(item->value.data, kv->value, kv->value_len);
        item->version = kv->version;

        node = opts->reverse ? ngx_do_memory_keys_prev(&obj->keys, node)
                             : ngx_rbtree_next(&obj->keys, node);
    }

    return NGX_OK;
}


/* where a list in key order starts: the first key from start and prefix */
static ngx_rbtree_node_t *
ngx_do_memory_keys_first(ngx_do_memory_object_t *obj,
    ngx_do_list_opts_t *opts)
{
    ngx_str_t  *from;

    from = &opts->start;

    if (opts->prefix.len
        && ngx_do_memory_keys_cmp(opts->prefix.data, opts->prefix.len,
                                  from->data, from->len) > 0)
    {
        from = &opts->prefix;
    }

    return ngx_do_memory_keys_lower_bound(obj, from);
}


/*
 * Where a reverse list starts: the last key below both end and everything
 * the prefix starts (*node NULL: none).  NGX_ERROR: no memory.
 */
static ngx_int_t
ngx_do_memory_keys_last(ngx_do_memory_object_t *obj, ngx_do_list_opts_t *opts,
    ngx_pool_t *pool, ngx_rbtree_node_t **node)
{
    ngx_str_t           hi, succ;
    ngx_rbtree_t       *tree;
    ngx_rbtree_node_t  *n;

    hi = opts->end;

    if (opts->prefix.len) {
        succ.data = ngx_pnalloc(pool, opts->prefix.len);
        if (succ.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(succ.data, opts->prefix.data, opts->prefix.len);
        succ.len = opts->prefix.len;

        while (succ.len && succ.data[succ.len - 1] == 0xff) {
            succ.len--;
        }

        if (succ.len) {
            succ.data[succ.len - 1]++;

            if (hi.len == 0
                || ngx_do_memory_keys_cmp(succ.data, succ.len, hi.data, hi.len)
                   < 0)
            {
                hi = succ;
            }
        }
    }

    tree = &obj->keys;
    n = hi.len ? ngx_do_memory_keys_lower_bound(obj, &hi) : NULL;

    if (n) {
        *node = ngx_do_memory_keys_prev(tree, n);
        return NGX_OK;
    }

    /* nothing at or above hi: the last key */
    n = tree->root;

    if (n == tree->sentinel) {
        *node = NULL;
        return NGX_OK;
    }

    while (n->right != tree->sentinel) {
        n = n->right;
    }

    *node = n;

    return NGX_OK;
}


/* whether a key the list reached is still within prefix, start and end */
static ngx_uint_t
ngx_do_memory_keys_in_range(ngx_do_memory_kv_t *kv, ngx_do_list_opts_t *opts)
{
    if (opts->prefix.len
        && (kv->key_len < opts->prefix.len
            || ngx_memcmp(kv->key, opts->prefix.data, opts->prefix.len) != 0))
    {
        return 0;
    }

    if (opts->reverse) {
        return opts->start.len == 0
               || ngx_do_memory_keys_cmp(kv->key, kv->key_len,
                                         opts->start.data, opts->start.len)
                  >= 0;
    }

    return opts->end.len == 0
           || ngx_do_memory_keys_cmp(kv->key, kv->key_len, opts->end.data,
                                     opts->end.len) < 0;
}


/*
 * Allocates all a batch needs before anything changes, so that a full zone
 * refuses the batch whole: values[i] for a value that cannot be written in
 * place, nodes[i] for a key that is new.  NGX_DECLINED: the zone is full
 * (the caller frees what was taken).
 */
ngx_int_t
ngx_do_memory_keys_reserve(ngx_do_memory_object_t *obj, ngx_do_batch_t *batch,
    u_char **values, ngx_do_memory_kv_t **nodes)
{
    ngx_uint_t           i;
    ngx_do_write_t      *w;
    ngx_do_memory_kv_t  *kv;

    w = batch->writes.elts;

    for (i = 0; i < batch->writes.nelts; i++) {
        if (w[i].delete) {
            continue;
        }

        kv = batch->clear ? NULL : ngx_do_memory_keys_find(obj, &w[i].key);

        if (kv && kv->value_len == w[i].value.len) {
            /* same size: overwritten in place, nothing to allocate */
            continue;
        }

        values[i] = ngx_slab_alloc_locked(ngx_do_memory_shpool,
                                          w[i].value.len + 1);
        if (values[i] == NULL) {
            return NGX_DECLINED;
        }

        if (kv) {
            continue;
        }

        nodes[i] = ngx_slab_alloc_locked(ngx_do_memory_shpool,
                                         offsetof(ngx_do_memory_kv_t, key)
                                         + w[i].key.len);
        if (nodes[i] == NULL) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * Writes a batch into the object's keys at version, with the memory
 * ngx_do_memory_keys_reserve() took: nothing here can fail.  What it uses
 * of values and nodes it sets to NULL.
 */
void
ngx_do_memory_keys_apply(ngx_do_memory_object_t *obj, ngx_do_batch_t *batch,
    u_char **values, ngx_do_memory_kv_t **nodes, uint64_t version)
{
    ngx_uint_t           i;
    ngx_do_write_t      *w;
    ngx_rbtree_node_t   *node;
    ngx_do_memory_kv_t  *kv;

    if (batch->clear) {
        while (obj->keys.root != obj->keys.sentinel) {
            node = ngx_rbtree_min(obj->keys.root, obj->keys.sentinel);
            ngx_do_memory_keys_free(obj, (ngx_do_memory_kv_t *) node);
        }
    }

    w = batch->writes.elts;

    for (i = 0; i < batch->writes.nelts; i++) {
        if (w[i].delete) {
            kv = ngx_do_memory_keys_find(obj, &w[i].key);
            if (kv) {
                ngx_do_memory_keys_free(obj, kv);
            }

            continue;
        }

        kv = nodes[i];

        if (kv == NULL) {
            kv = ngx_do_memory_keys_find(obj, &w[i].key);

            if (values[i] == NULL) {
                (void) ngx_do_cpymem(kv->value, w[i].value.data,
                                     w[i].value.len);
                kv->version = version;
                continue;
            }

            ngx_slab_free_locked(ngx_do_memory_shpool, kv->value);
            obj->bytes -= kv->value_len;

        } else {
            kv->key_len = w[i].key.len;
            ngx_memcpy(kv->key, w[i].key.data, w[i].key.len);
            kv->node.key = 0;
            ngx_rbtree_insert(&obj->keys, &kv->node);
            obj->nkeys++;
            obj->bytes += kv->key_len;
            nodes[i] = NULL;
        }

        (void) ngx_do_cpymem(values[i], w[i].value.data, w[i].value.len);
        kv->value = values[i];
        kv->value_len = w[i].value.len;
        kv->version = version;
        obj->bytes += kv->value_len;
        values[i] = NULL;
    }
}


void
ngx_do_memory_keys_free(ngx_do_memory_object_t *obj, ngx_do_memory_kv_t *kv)
{
    ngx_rbtree_delete(&obj->keys, &kv->node);
    obj->nkeys--;
    obj->bytes -= kv->key_len + kv->value_len;
    ngx_slab_free_locked(ngx_do_memory_shpool, kv->value);
    ngx_slab_free_locked(ngx_do_memory_shpool, kv);
}


/* byte order, a prefix sorting first: the order of list() */
static ngx_int_t
ngx_do_memory_keys_cmp(u_char *k1, size_t l1, u_char *k2, size_t l2)
{
    size_t     n;
    ngx_int_t  rc;

    n = ngx_min(l1, l2);
    rc = n ? ngx_memcmp(k1, k2, n) : 0;

    if (rc != 0) {
        return rc;
    }

    return (l1 < l2) ? -1 : (l1 > l2);
}


void
ngx_do_memory_keys_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t   **p;
    ngx_do_memory_kv_t   *n, *t;

    n = (ngx_do_memory_kv_t *) node;

    for ( ;; ) {
        t = (ngx_do_memory_kv_t *) temp;

        p = ngx_do_memory_keys_cmp(n->key, n->key_len, t->key, t->key_len) < 0
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


ngx_do_memory_kv_t *
ngx_do_memory_keys_find(ngx_do_memory_object_t *obj, ngx_str_t *key)
{
    ngx_int_t            rc;
    ngx_rbtree_node_t   *node;
    ngx_do_memory_kv_t  *kv;

    node = obj->keys.root;

    while (node != obj->keys.sentinel) {
        kv = (ngx_do_memory_kv_t *) node;

        rc = ngx_do_memory_keys_cmp(key->data, key->len, kv->key, kv->key_len);

        if (rc == 0) {
            return kv;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* the first key not below the given one, or NULL */
static ngx_rbtree_node_t *
ngx_do_memory_keys_lower_bound(ngx_do_memory_object_t *obj, ngx_str_t *key)
{
    ngx_rbtree_node_t   *node, *found;
    ngx_do_memory_kv_t  *kv;

    found = NULL;
    node = obj->keys.root;

    while (node != obj->keys.sentinel) {
        kv = (ngx_do_memory_kv_t *) node;

        if (ngx_do_memory_keys_cmp(kv->key, kv->key_len, key->data, key->len)
            >= 0)
        {
            found = node;
            node = node->left;

        } else {
            node = node->right;
        }
    }

    return found;
}


/* the mirror of ngx_rbtree_next() */
static ngx_rbtree_node_t *
ngx_do_memory_keys_prev(ngx_rbtree_t *tree, ngx_rbtree_node_t *node)
{
    ngx_rbtree_node_t  *root, *sentinel, *parent;

    sentinel = tree->sentinel;

    if (node->left != sentinel) {
        node = node->left;

        while (node->right != sentinel) {
            node = node->right;
        }

        return node;
    }

    root = tree->root;

    for ( ;; ) {
        parent = node->parent;

        if (node == root) {
            return NULL;
        }

        if (node == parent->right) {
            return parent;
        }

        node = parent;
    }
}
