
/*
 * Namespace quotas (do_namespace max_bytes=, max_objects=): the count a
 * backend keeps per namespace in a shared memory zone, and the check of a
 * commit against it.  A namespace's record is found by its name, so it
 * outlives reloads that reorder the namespaces; it is created with the
 * namespace's first commit.  The memory backend counts under its zone's
 * mutex; the redis backend counts in its commit script by the same rules
 * (see ngx_do.h).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"


/* the namespace's record, found or created; NULL: the zone is full */
ngx_do_quota_t *
ngx_do_quota_find(ngx_slab_pool_t *shpool, ngx_do_quota_t **list,
    ngx_do_namespace_t *ns)
{
    ngx_do_quota_t  *q;

    for (q = *list; q; q = q->next) {
        if (q->name_len == ns->name.len
            && ngx_memcmp(q->name, ns->name.data, ns->name.len) == 0)
        {
            return q;
        }
    }

    q = ngx_slab_alloc_locked(shpool,
                              offsetof(ngx_do_quota_t, name) + ns->name.len);
    if (q == NULL) {
        return NULL;
    }

    q->bytes = 0;
    q->objects = 0;
    q->name_len = ns->name.len;
    ngx_memcpy(q->name, ns->name.data, ns->name.len);

    q->next = *list;
    *list = q;

    return q;
}


/*
 * Whether a commit may move the count by bytes and objects: NGX_OK,
 * NGX_DO_QUOTA_BYTES or NGX_DO_QUOTA_OBJECTS.  Only growth is checked, so
 * deletes pass even when a reload lowered a quota below the count.
 */
ngx_int_t
ngx_do_quota_allow(ngx_do_namespace_t *ns, ngx_do_quota_t *q, off_t bytes,
    ngx_int_t objects)
{
    if (bytes > 0 && ns->max_bytes && q->bytes + bytes > ns->max_bytes) {
        return NGX_DO_QUOTA_BYTES;
    }

    if (objects > 0 && ns->max_objects
        && (ngx_uint_t) (q->objects + objects) > ns->max_objects)
    {
        return NGX_DO_QUOTA_OBJECTS;
    }

    return NGX_OK;
}


/* the count after a commit that ngx_do_quota_allow() let through */
void
ngx_do_quota_add(ngx_do_quota_t *q, off_t bytes, ngx_int_t objects)
{
    q->bytes += bytes;
    q->objects += objects;
}
