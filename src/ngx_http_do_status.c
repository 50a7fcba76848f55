
/*
 * do_status: the runtime's counters (src/ngx_do_status.c) and the storage
 * backend's usage, as JSON (no format=, or format=json) or, with
 * ?format=prometheus, as Prometheus text; any other format is refused
 * with 400, so that a typo never scrapes the wrong form.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_do.h"
#include "ngx_http_do_module.h"


/* GET: JSON; ?format=prometheus: Prometheus text exposition */
ngx_int_t
ngx_http_do_status_handler(ngx_http_request_t *r)
{
    ngx_str_t                 out, ct, fmt;
    ngx_uint_t                prometheus;
    ngx_do_storage_usage_t    usage;
    ngx_http_do_main_conf_t  *dmcf;

    static ngx_str_t  unknown = ngx_string("{\"error\":\"unknown format, "
                                           "expected json or prometheus\"}"
                                           "\n");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&ct, "application/json");
    prometheus = 0;

    if (ngx_http_arg(r, (u_char *) "format", 6, &fmt) == NGX_OK) {

        if (fmt.len == 10 && ngx_strncmp(fmt.data, "prometheus", 10) == 0) {
            prometheus = 1;

        } else if (fmt.len != 4 || ngx_strncmp(fmt.data, "json", 4) != 0) {
            return ngx_http_do_send(r, NGX_HTTP_BAD_REQUEST, &ct, &unknown,
                                    0, 0);
        }
    }

    dmcf = ngx_http_get_module_main_conf(r, ngx_http_do_module);

    ngx_memzero(&usage, sizeof(ngx_do_storage_usage_t));

    if (dmcf->backend->usage) {
        dmcf->backend->usage(&usage);
    }

    if (ngx_do_status_render(r->pool, prometheus,
                             (const char *) dmcf->backend->name.data,
                             usage.connected, usage.size, usage.free, &out)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (prometheus) {
        ngx_str_set(&ct, "text/plain; version=0.0.4");
    }

    return ngx_http_do_send(r, NGX_HTTP_OK, &ct, &out, 0, 0);
}
