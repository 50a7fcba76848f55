
/*
 * The storage backends, and the choice of one by do_storage's first
 * argument.  A backend names the forms it accepts: its name alone
 * ("memory"), or URL schemes ("redis://", "redis+unix://") followed by the
 * rest of the URL.  The first backend of the table is the default, when
 * do_storage is absent.  The cells of the class API (state that a class
 * keeps outside objects and stores later) go to the worker's backend.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"


extern ngx_do_backend_t  ngx_do_memory_backend;
extern ngx_do_backend_t  ngx_do_storage_redis_backend;


ngx_do_backend_t  *ngx_do_backends[] = {
    &ngx_do_memory_backend,
    &ngx_do_storage_redis_backend,
    NULL
};


static ngx_uint_t ngx_do_storage_scheme(const char *form);


static ngx_do_backend_t  *ngx_do_storage_backend;


/* the backend one of whose forms arg matches, or NULL */
ngx_do_backend_t *
ngx_do_storage_find(ngx_str_t *arg)
{
    size_t              len;
    const char        **form;
    ngx_do_backend_t  **b;

    for (b = ngx_do_backends; *b; b++) {
        for (form = (*b)->forms; *form; form++) {
            len = ngx_strlen(*form);

            if ((ngx_do_storage_scheme(*form) ? arg->len >= len
                                               : arg->len == len)
                && ngx_strncmp(arg->data, *form, len) == 0)
            {
                return *b;
            }
        }
    }

    return NULL;
}


/* every accepted form, quoted: "memory", "redis://..." or "..." */
u_char *
ngx_do_storage_forms(u_char *p, u_char *last)
{
    ngx_uint_t          n, i;
    const char        **form;
    ngx_do_backend_t  **b;

    n = 0;

    for (b = ngx_do_backends; *b; b++) {
        for (form = (*b)->forms; *form; form++) {
            n++;
        }
    }

    i = 0;

    for (b = ngx_do_backends; *b; b++) {
        for (form = (*b)->forms; *form; form++) {
            p = ngx_slprintf(p, last, "%s\"%s%s\"",
                             i == 0 ? "" : (i == n - 1) ? " or " : ", ",
                             *form, ngx_do_storage_scheme(*form) ? "..." : "");
            i++;
        }
    }

    return p;
}


/* a form ending in "://" is a scheme: the rest of the URL follows it */
static ngx_uint_t
ngx_do_storage_scheme(const char *form)
{
    size_t  len;

    len = ngx_strlen(form);

    return len > 3 && ngx_strcmp(form + len - 3, "://") == 0;
}


void
ngx_do_storage_init_worker(ngx_do_backend_t *backend)
{
    ngx_do_storage_backend = backend;
}


ngx_int_t
ngx_do_cell_get(ngx_do_namespace_t *ns, u_char *id, ngx_do_cell_pt handler,
    void *data)
{
    if (ngx_do_storage_backend == NULL
        || ngx_do_storage_backend->cell_get == NULL)
    {
        return NGX_DECLINED;
    }

    return ngx_do_storage_backend->cell_get(ns, id, handler, data);
}


ngx_int_t
ngx_do_cell_put(ngx_do_namespace_t *ns, ngx_do_cell_t *cells, ngx_uint_t n,
    uint64_t epoch, ngx_do_cell_pt handler, void *data)
{
    if (ngx_do_storage_backend == NULL
        || ngx_do_storage_backend->cell_put == NULL)
    {
        return NGX_DECLINED;
    }

    return ngx_do_storage_backend->cell_put(ns, cells, n, epoch, handler,
                                            data);
}
