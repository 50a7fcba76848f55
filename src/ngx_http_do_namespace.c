
/*
 * Classes and namespaces, at configuration.  The classes: the built-in
 * ones and those other modules register.  do_namespace: a namespace's
 * name, its class, its limits (max_key=, max_value=, max_message=), its
 * quotas (max_bytes=, max_objects=, checked against the storage's size
 * once do_storage is known) and its class's parameters.  And the lookups
 * with which do_pass and the gates resolve their namespaces, with the
 * parameters the gates share (key=, status=).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_do.h"
#include "ngx_http_do_module.h"


static ngx_do_class_t *ngx_http_do_namespace_find_class(
    ngx_http_do_main_conf_t *dmcf, ngx_str_t *name);
static ngx_int_t ngx_http_do_namespace_name(ngx_conf_t *cf, ngx_str_t *name);
static ngx_int_t ngx_http_do_namespace_param(ngx_conf_t *cf,
    ngx_do_namespace_t *ns, ngx_str_t *param);
static ngx_int_t ngx_http_do_namespace_quota(ngx_conf_t *cf,
    ngx_do_namespace_t *ns, ngx_str_t *param);


ngx_int_t
ngx_do_register_class(ngx_conf_t *cf, ngx_do_class_t *class)
{
    ngx_do_class_t          **c;
    ngx_http_do_main_conf_t  *dmcf;

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_do_module);

    if (ngx_http_do_namespace_find_class(dmcf, &class->name)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "do class \"%V\" is registered twice",
                           &class->name);
        return NGX_ERROR;
    }

    c = ngx_array_push(&dmcf->classes);
    if (c == NULL) {
        return NGX_ERROR;
    }

    *c = class;

    return NGX_OK;
}


static ngx_do_class_t *
ngx_http_do_namespace_find_class(ngx_http_do_main_conf_t *dmcf,
    ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_do_class_t  **c;

    c = dmcf->classes.elts;

    for (i = 0; i < dmcf->classes.nelts; i++) {
        if (c[i]->name.len == name->len
            && ngx_strncmp(c[i]->name.data, name->data, name->len) == 0)
        {
            return c[i];
        }
    }

    return NULL;
}


/*
 * do_namespace NAME CLASS [max_key=SIZE] [max_value=SIZE] [max_bytes=SIZE]
 *              [max_objects=N] [class params]
 */
char *
ngx_http_do_namespace(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_main_conf_t  *dmcf = conf;

    char                *rv;
    ngx_str_t           *value;
    ngx_uint_t           i;
    ngx_do_class_t      *class;
    ngx_do_namespace_t  *ns, **slot;

    value = cf->args->elts;

    if (ngx_http_do_namespace_name(cf, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    class = ngx_http_do_namespace_find_class(dmcf, &value[2]);

    if (class == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown do class \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    ns = ngx_pcalloc(cf->pool, sizeof(ngx_do_namespace_t));
    if (ns == NULL) {
        return NGX_CONF_ERROR;
    }

    ns->name = value[1];
    ns->index = dmcf->namespaces.nelts;
    ns->class = class;
    ns->max_key = 2048;
    ns->max_value = 128 * 1024;
    ns->max_message = 64 * 1024;
    ns->file = cf->conf_file->file.name.data;
    ns->line = cf->conf_file->line;

    if (class->create_conf) {
        ns->conf = class->create_conf(cf);
        if (ns->conf == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 3; i < cf->args->nelts; i++) {
        if (ngx_http_do_namespace_param(cf, ns, &value[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (class->init_conf) {
        rv = class->init_conf(cf, ns->conf);

        if (rv == NGX_CONF_ERROR) {
            return rv;
        }

        if (rv != NGX_CONF_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in do_namespace \"%V\"", rv, &ns->name);
            return NGX_CONF_ERROR;
        }
    }

    slot = ngx_array_push(&dmcf->namespaces);
    if (slot == NULL) {
        return NGX_CONF_ERROR;
    }

    *slot = ns;

    return NGX_CONF_OK;
}


/* a namespace name: [A-Za-z0-9_-], not yet taken */
static ngx_int_t
ngx_http_do_namespace_name(ngx_conf_t *cf, ngx_str_t *name)
{
    u_char      c;
    ngx_uint_t  i;

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid do namespace name \"%V\"", name);
            return NGX_ERROR;
        }
    }

    if (ngx_http_do_find_namespace(cf, name)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate do namespace \"%V\"", name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * max_key=, max_value=, max_message= (one WebSocket message), the quotas,
 * or a parameter of the namespace's class
 */
static ngx_int_t
ngx_http_do_namespace_param(ngx_conf_t *cf, ngx_do_namespace_t *ns,
    ngx_str_t *param)
{
    char       *rv;
    ssize_t     size;
    ngx_str_t   s;

    if (ngx_strncmp(param->data, "max_key=", 8) == 0
        || ngx_strncmp(param->data, "max_value=", 10) == 0
        || ngx_strncmp(param->data, "max_message=", 12) == 0)
    {
        s.data = (u_char *) ngx_strchr(param->data, '=') + 1;
        s.len = param->data + param->len - s.data;

        size = ngx_parse_size(&s);

        /* a value must fit in one channel message with its headers */
        if (size <= 0 || size > 32 * 1024 * 1024) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid size in \"%V\"", param);
            return NGX_ERROR;
        }

        if (param->data[4] == 'k') {
            ns->max_key = size;

        } else if (param->data[4] == 'v') {
            ns->max_value = size;

        } else {
            ns->max_message = size;
        }

        return NGX_OK;
    }

    if (ngx_strncmp(param->data, "max_bytes=", 10) == 0
        || ngx_strncmp(param->data, "max_objects=", 12) == 0)
    {
        return ngx_http_do_namespace_quota(cf, ns, param);
    }

    if (ns->class->parse_param == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" for do class \"%V\"",
                           param, &ns->class->name);
        return NGX_ERROR;
    }

    rv = ns->class->parse_param(cf, ns->conf, param);

    if (rv == NGX_CONF_ERROR) {
        return NGX_ERROR;
    }

    if (rv != NGX_CONF_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s \"%V\"", rv, param);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * max_bytes=SIZE, max_objects=N.  A deferred class releases its replies
 * before its writes are stored, so nothing could refuse them: no quota.
 */
static ngx_int_t
ngx_http_do_namespace_quota(ngx_conf_t *cf, ngx_do_namespace_t *ns,
    ngx_str_t *param)
{
    off_t      size;
    ngx_int_t  n;
    ngx_str_t  s;

    if (ns->class->deferred) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs a class whose writes are stored "
                           "before its replies, \"%V\" defers them",
                           param, &ns->class->name);
        return NGX_ERROR;
    }

    s.data = (u_char *) ngx_strchr(param->data, '=') + 1;
    s.len = param->data + param->len - s.data;

    if (param->data[4] == 'b') {
        size = ngx_parse_offset(&s);

        if (size <= 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid size in \"%V\"", param);
            return NGX_ERROR;
        }

        ns->max_bytes = size;
        return NGX_OK;
    }

    n = ngx_atoi(s.data, s.len);

    if (n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number in \"%V\"", param);
        return NGX_ERROR;
    }

    ns->max_objects = n;

    return NGX_OK;
}


/*
 * A namespace's max_bytes= must fit in storage of a known size; quotas
 * that together exceed it leave the namespaces without one (locks,
 * limiters) no room they can count on: a warning.
 */
ngx_int_t
ngx_http_do_namespace_check_quotas(ngx_conf_t *cf,
    ngx_http_do_main_conf_t *dmcf)
{
    off_t                 sum;
    size_t                capacity;
    ngx_uint_t            i;
    ngx_do_namespace_t  **ns;

    if (dmcf->backend->capacity == NULL) {
        return NGX_OK;
    }

    capacity = dmcf->backend->capacity(dmcf->backend_conf);

    if (capacity == 0) {
        return NGX_OK;
    }

    sum = 0;
    ns = dmcf->namespaces.elts;

    for (i = 0; i < dmcf->namespaces.nelts; i++) {
        if (ns[i]->max_bytes > (off_t) capacity) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "max_bytes=%O of do namespace \"%V\" exceeds "
                          "the storage size %uz in %s:%ui",
                          ns[i]->max_bytes, &ns[i]->name, capacity,
                          ns[i]->file, ns[i]->line);
            return NGX_ERROR;
        }

        sum += ns[i]->max_bytes;
    }

    if (sum > (off_t) capacity) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "do: the namespaces' max_bytes= add up to %O, more "
                      "than the storage size %uz: a namespace may find "
                      "storage full before its quota", sum, capacity);
    }

    return NGX_OK;
}


ngx_do_namespace_t *
ngx_http_do_find_namespace(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_uint_t                 i;
    ngx_do_namespace_t       **ns;
    ngx_http_do_main_conf_t   *dmcf;

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_do_module);

    ns = dmcf->namespaces.elts;

    for (i = 0; i < dmcf->namespaces.nelts; i++) {
        if (ns[i]->name.len == name->len
            && ngx_strncmp(ns[i]->name.data, name->data, name->len) == 0)
        {
            return ns[i];
        }
    }

    return NULL;
}


/* do_pass may name a namespace declared later in the file: resolve here */
ngx_do_namespace_t *
ngx_http_do_gate_namespace(ngx_conf_t *cf, ngx_str_t *name,
    ngx_do_class_t *class, const char *directive, u_char *file,
    ngx_uint_t line)
{
    ngx_do_namespace_t  *ns;

    ns = ngx_http_do_find_namespace(cf, name);

    if (ns == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "unknown do namespace \"%V\" in %s:%ui",
                      name, file, line);
        return NULL;
    }

    if (ns->class != class) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "do namespace \"%V\" is of class \"%V\", %s needs "
                      "a %V in %s:%ui", name, &ns->class->name, directive,
                      &class->name, file, line);
        return NULL;
    }

    return ns;
}


ngx_int_t
ngx_http_do_gate_param(ngx_conf_t *cf, ngx_str_t *param,
    ngx_http_complex_value_t *key, ngx_uint_t *status)
{
    ngx_int_t                          n;
    ngx_str_t                          expr;
    ngx_http_compile_complex_value_t   ccv;

    if (ngx_strncmp(param->data, "key=", 4) == 0) {
        expr.data = param->data + 4;
        expr.len = param->len - 4;

        if (expr.len == 0) {
            return NGX_OK;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &expr;
        ccv.complex_value = key;

        return ngx_http_compile_complex_value(&ccv);
    }

    if (ngx_strncmp(param->data, "status=", 7) == 0) {
        n = ngx_atoi(param->data + 7, param->len - 7);

        if (n < 400 || n > 599) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid status \"%V\", expected 400..599",
                               param);
            return NGX_ERROR;
        }

        *status = n;
        return NGX_OK;
    }

    return NGX_DECLINED;
}
