
/*
 * ngx_http_do_module: durable objects in nginx.
 *
 * This file is the nginx-facing shell: the module tables, directives,
 * configuration and process hooks.  Classes, do_namespace and the
 * namespace lookups of do_pass and the gates are in
 * src/ngx_http_do_namespace.c, the do_pass content handler and its
 * variables in src/ngx_http_do_pass.c, the do_status page in
 * src/ngx_http_do_status.c.  How objects run and store their state is the
 * runtime's business (src/); the storage backend is the one do_storage
 * names, reached only through its hooks.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>

#include "ngx_do.h"
#include "ngx_do_node.h"
#include "ngx_http_do_module.h"


/* the largest do_secret file read whole; a larger one is refused */
#define NGX_HTTP_DO_SECRET_MAX  4096


static ngx_int_t ngx_http_do_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_do_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_do_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_do_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_do_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_do_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_do_storage(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_do_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_do_pass(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_do_pass_var(ngx_conf_t *cf,
    ngx_http_do_loc_conf_t *dlcf, ngx_str_t *expr);
static char *ngx_http_do_cluster(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_do_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_do_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_do_init_process(ngx_cycle_t *cycle);
static void ngx_http_do_exit_process(ngx_cycle_t *cycle);
static void ngx_http_do_exit_master(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_do_commands[] = {

    { ngx_string("do_storage"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_do_storage,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_do_secret,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_do_cluster,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_namespace"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_do_namespace,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_do_main_conf_t, idle_timeout),
      NULL },

    { ngx_string("do_flush_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_do_main_conf_t, flush_interval),
      NULL },

    { ngx_string("do_call_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_do_main_conf_t, call_timeout),
      NULL },

    { ngx_string("do_max_objects"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_do_main_conf_t, max_objects),
      NULL },

    { ngx_string("do_pass"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_do_pass,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_ws_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_do_ws_keepalive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_ws_message_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_do_ws_message_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("do_ws_send_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_do_loc_conf_t, ws.send_queue),
      NULL },

    { ngx_string("do_ws_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_do_loc_conf_t, origins),
      NULL },

    { ngx_string("do_ws_protocols"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_do_loc_conf_t, protocols),
      NULL },

    { ngx_string("do_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_do_status,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_do_module_ctx = {
    ngx_http_do_preconfiguration,          /* preconfiguration */
    ngx_http_do_postconfiguration,         /* postconfiguration */

    ngx_http_do_create_main_conf,          /* create main configuration */
    ngx_http_do_init_main_conf,            /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_do_create_loc_conf,           /* create location configuration */
    ngx_http_do_merge_loc_conf             /* merge location configuration */
};


ngx_module_t  ngx_http_do_module = {
    NGX_MODULE_V1,
    &ngx_http_do_module_ctx,               /* module context */
    ngx_http_do_commands,                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_do_init_module,               /* init module */
    ngx_http_do_init_process,              /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_do_exit_process,              /* exit process */
    ngx_http_do_exit_master,               /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_do_runtime_t              ngx_do_runtime;

static ngx_uint_t             ngx_http_do_generation;
static ngx_uint_t             ngx_http_do_enabled;
static ngx_do_backend_t      *ngx_http_do_backend;


static ngx_int_t
ngx_http_do_preconfiguration(ngx_conf_t *cf)
{
    ngx_do_class_t  **class;

    if (ngx_http_do_pass_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    for (class = ngx_do_builtin_classes; *class; class++) {
        if (ngx_do_register_class(cf, *class) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_do_postconfiguration(ngx_conf_t *cf)
{
    size_t                     size;
    ngx_uint_t                 i;
    ngx_do_namespace_t       **ns;
    ngx_http_do_loc_conf_t   **p;
    ngx_http_do_main_conf_t   *dmcf;

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_do_module);

    if (dmcf->passes.nelts) {
        ngx_http_do_pass_init_body_filter();
    }

    p = dmcf->passes.elts;

    for (i = 0; i < dmcf->passes.nelts; i++) {
        p[i]->ns = ngx_http_do_find_namespace(cf, &p[i]->ns_name);

        if (p[i]->ns == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown do namespace \"%V\" in %s:%ui",
                          &p[i]->ns_name, p[i]->file, p[i]->line);
            return NGX_ERROR;
        }

        if (p[i]->member && p[i]->ns->class->ws_open == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "member= needs a class that takes WebSockets, "
                          "\"%V\" is of class \"%V\" in %s:%ui",
                          &p[i]->ns_name, &p[i]->ns->class->name,
                          p[i]->file, p[i]->line);
            return NGX_ERROR;
        }
    }

    if (dmcf->backend == NULL) {
        dmcf->backend = ngx_do_backends[0];

        dmcf->backend_conf = dmcf->backend->create_conf(cf, NULL);
        if (dmcf->backend_conf == NULL) {
            return NGX_ERROR;
        }
    }

    /*
     * A backend without a secret of its own keeps state beyond a full
     * restart and shares it between nodes: IDs need a key that stays.
     */
    if (dmcf->backend->secret == NULL && !dmcf->secret_set) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "do_storage %V needs do_secret: object IDs must "
                      "be the same after restarts and on every node, "
                      "set do_secret in %s:%ui", &dmcf->backend->name,
                      dmcf->storage_file, dmcf->storage_line);
        return NGX_ERROR;
    }

    if (dmcf->cluster
        && ngx_do_cluster_init_conf(cf, dmcf->cluster,
                                    ngx_strcmp(dmcf->backend->name.data,
                                               "redis") == 0
                                    ? dmcf->backend_conf : NULL,
                                    dmcf->secret_set, &ngx_http_do_module)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* listen=: the channel between nodes, accepted by every worker */
    if (dmcf->cluster
        && ngx_do_node_listen(cf, &dmcf->cluster->addr) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (dmcf->namespaces.nelts == 0) {
        return NGX_OK;
    }

    if (ngx_http_do_namespace_check_quotas(cf, dmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (dmcf->backend->init_conf
        && dmcf->backend->init_conf(cf, dmcf->backend_conf,
                                    &ngx_http_do_module)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ns = dmcf->namespaces.elts;

    for (i = 0; i < dmcf->namespaces.nelts; i++) {
        if (ns[i]->class->init_namespace
            && ns[i]->class->init_namespace(cf, ns[i], dmcf->backend->local)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (dmcf->status_zone == NULL) {
        ngx_str_t  name = ngx_string("do_status");

        size = ngx_do_status_zone_size(dmcf->namespaces.nelts);

        dmcf->status_zone = ngx_shared_memory_add(cf, &name, size,
                                                  &ngx_http_do_module);
        if (dmcf->status_zone == NULL) {
            return NGX_ERROR;
        }

        dmcf->status_zone->init = ngx_do_status_init_zone;
        dmcf->status_zone->data = &dmcf->namespaces;
    }

    if (dmcf->handover_zone == NULL) {
        ngx_str_t  name = ngx_string("do_handover");

        dmcf->handover_zone = ngx_shared_memory_add(cf, &name,
                                                ngx_do_handover_zone_size(),
                                                &ngx_http_do_module);
        if (dmcf->handover_zone == NULL) {
            return NGX_ERROR;
        }

        dmcf->handover_zone->init = ngx_do_handover_init_zone;
    }

    if (!dmcf->secret_set) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "do: no do_secret is set, object IDs from name= "
                      "and unique IDs change when the storage zone is "
                      "recreated (a full restart)");
    }

    return NGX_OK;
}


static void *
ngx_http_do_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_do_main_conf_t  *dmcf;

    dmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_do_main_conf_t));
    if (dmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&dmcf->namespaces, cf->pool, 4,
                       sizeof(ngx_do_namespace_t *))
        != NGX_OK
        || ngx_array_init(&dmcf->classes, cf->pool, 4,
                          sizeof(ngx_do_class_t *))
           != NGX_OK
        || ngx_array_init(&dmcf->passes, cf->pool, 4,
                          sizeof(ngx_http_do_loc_conf_t *))
           != NGX_OK)
    {
        return NULL;
    }

    dmcf->idle_timeout = NGX_CONF_UNSET_MSEC;
    dmcf->call_timeout = NGX_CONF_UNSET_MSEC;
    dmcf->flush_interval = NGX_CONF_UNSET_MSEC;
    dmcf->max_objects = NGX_CONF_UNSET;

    return dmcf;
}


static char *
ngx_http_do_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_do_main_conf_t  *dmcf = conf;

    ngx_conf_init_msec_value(dmcf->idle_timeout, 60000);
    ngx_conf_init_msec_value(dmcf->call_timeout, 10000);
    ngx_conf_init_msec_value(dmcf->flush_interval, 1000);
    ngx_conf_init_value(dmcf->max_objects, 100000);

    if (dmcf->flush_interval == 0) {
        dmcf->flush_interval = 1;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_do_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_do_loc_conf_t  *dlcf;

    dlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_do_loc_conf_t));
    if (dlcf == NULL) {
        return NULL;
    }

    dlcf->ws.send_queue = NGX_CONF_UNSET_SIZE;
    dlcf->ws.ping_interval = NGX_CONF_UNSET_MSEC;
    dlcf->ws.ping_timeout = NGX_CONF_UNSET_MSEC;
    dlcf->ws.message_interval = NGX_CONF_UNSET_MSEC;
    dlcf->ws.message_burst = NGX_CONF_UNSET_UINT;
    dlcf->origins = NGX_CONF_UNSET_PTR;
    dlcf->protocols = NGX_CONF_UNSET_PTR;

    return dlcf;
}


/* the WebSocket settings are inherited; do_pass itself is not */
static char *
ngx_http_do_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_do_loc_conf_t  *prev = parent;
    ngx_http_do_loc_conf_t  *conf = child;

    return ngx_http_do_pass_merge_ws(cf, prev, conf);
}


/* do_storage BACKEND [params]: the backend parses what it is given */
static char *
ngx_http_do_storage(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_main_conf_t  *dmcf = conf;

    u_char             buf[NGX_MAX_ERROR_STR], *p, *u;
    ngx_int_t          rc;
    ngx_str_t         *value;
    ngx_uint_t         i;
    ngx_do_backend_t  *backend;

    if (dmcf->backend) {
        return "is duplicate";
    }

    value = cf->args->elts;

    backend = ngx_do_storage_find(&value[1]);

    if (backend == NULL) {
        /* the URL's credentials hidden */
        u = ngx_do_log_url(buf, buf + sizeof(buf) / 2, &value[1]);
        p = ngx_do_storage_forms(u, buf + sizeof(buf));

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unsupported do storage \"%*s\", expected %*s",
                           (size_t) (u - buf), buf, (size_t) (p - u), u);
        return NGX_CONF_ERROR;
    }

    dmcf->backend = backend;
    dmcf->storage_file = cf->conf_file->file.name.data;
    dmcf->storage_line = cf->conf_file->line;

    dmcf->backend_conf = backend->create_conf(cf, &value[1]);
    if (dmcf->backend_conf == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        rc = backend->parse_param(cf, dmcf->backend_conf, &value[i]);

        if (rc == NGX_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rc != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * do_secret FILE: the key of object IDs is SHA-256 of the file's content,
 * which may be 4 KiB at most (a larger file is refused, not truncated)
 */
static char *
ngx_http_do_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_main_conf_t  *dmcf = conf;

    u_char           *p, *last, buf[NGX_HTTP_DO_SECRET_MAX + 1];
    ssize_t           n;
    ngx_str_t        *value, file;
    unsigned int      len;

    if (dmcf->secret_set) {
        return "is duplicate";
    }

    value = cf->args->elts;
    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    n = ngx_do_id_read_secret(cf, &file, buf, sizeof(buf));
    if (n == -1) {
        return NGX_CONF_ERROR;
    }

    if (n > NGX_HTTP_DO_SECRET_MAX) {
        ngx_explicit_memzero(buf, sizeof(buf));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "do secret file \"%V\" is larger than %d bytes",
                           &file, NGX_HTTP_DO_SECRET_MAX);
        return NGX_CONF_ERROR;
    }

    p = buf;
    last = buf + n;

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t'
                        || last[-1] == '\r' || last[-1] == '\n'))
    {
        last--;
    }

    if (last - p < 16) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "do secret file \"%V\" must hold at least "
                           "16 bytes", &file);
        return NGX_CONF_ERROR;
    }

    len = 0;

    if (EVP_Digest(p, last - p, dmcf->secret, &len, EVP_sha256(), NULL) != 1
        || len != sizeof(dmcf->secret))
    {
        return NGX_CONF_ERROR;
    }

    ngx_explicit_memzero(buf, sizeof(buf));
    dmcf->secret_set = 1;

    return NGX_CONF_OK;
}


/* do_pass NS name=EXPR | id=EXPR | unique [member=EXPR] */
static char *
ngx_http_do_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_loc_conf_t  *dlcf = conf;

    ngx_str_t                          *value, expr;
    ngx_http_do_loc_conf_t            **slot;
    ngx_http_core_loc_conf_t           *clcf;
    ngx_http_do_main_conf_t            *dmcf;
    ngx_http_compile_complex_value_t    ccv;

    if (dlcf->ns_name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts < 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "do_pass \"%V\" needs an ID strategy: "
                           "name=, id= or unique", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_strcmp(value[2].data, "unique") == 0) {
        dlcf->strategy = NGX_HTTP_DO_UNIQUE;

    } else if (ngx_strncmp(value[2].data, "name=", 5) == 0) {
        dlcf->strategy = NGX_HTTP_DO_NAME;

    } else if (ngx_strncmp(value[2].data, "id=", 3) == 0) {
        dlcf->strategy = NGX_HTTP_DO_ID;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid ID strategy \"%V\", "
                           "expected name=, id= or unique", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (dlcf->strategy != NGX_HTTP_DO_UNIQUE) {
        expr.data = (u_char *) ngx_strchr(value[2].data, '=') + 1;
        expr.len = value[2].data + value[2].len - expr.data;

        if (expr.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty expression in \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        dlcf->expr = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (dlcf->expr == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &expr;
        ccv.complex_value = dlcf->expr;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_do_pass_var(cf, dlcf, &expr) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (cf->args->nelts == 4) {
        if (ngx_strncmp(value[3].data, "member=", 7) != 0
            || value[3].len == 7)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected member=",
                               &value[3]);
            return NGX_CONF_ERROR;
        }

        dlcf->member = ngx_palloc(cf->pool,
                                  sizeof(ngx_http_complex_value_t));
        if (dlcf->member == NULL) {
            return NGX_CONF_ERROR;
        }

        expr.data = value[3].data + 7;
        expr.len = value[3].len - 7;

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &expr;
        ccv.complex_value = dlcf->member;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    dlcf->ns_name = value[1];
    dlcf->file = cf->conf_file->file.name.data;
    dlcf->line = cf->conf_file->line;

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_do_module);

    slot = ngx_array_push(&dmcf->passes);
    if (slot == NULL) {
        return NGX_CONF_ERROR;
    }

    *slot = dlcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_do_pass_handler;

    return NGX_CONF_OK;
}


/*
 * An expression that is one variable ("$o", as most are) is read without
 * the script engine and its copy: dlcf->var is its index + 1
 */
static ngx_int_t
ngx_http_do_pass_var(ngx_conf_t *cf, ngx_http_do_loc_conf_t *dlcf,
    ngx_str_t *expr)
{
    u_char      c;
    ngx_int_t   index;
    ngx_str_t   name;
    ngx_uint_t  i;

    if (expr->len < 2 || expr->data[0] != '$') {
        return NGX_OK;
    }

    for (i = 1; i < expr->len; i++) {
        c = expr->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_'))
        {
            return NGX_OK;
        }
    }

    name.data = expr->data + 1;
    name.len = expr->len - 1;

    index = ngx_http_get_variable_index(cf, &name);
    if (index == NGX_ERROR) {
        return NGX_ERROR;
    }

    dlcf->var = (ngx_uint_t) index + 1;

    return NGX_OK;
}


/* do_cluster name= listen= [lease=]: src/ngx_do_cluster.c */
static char *
ngx_http_do_cluster(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_do_main_conf_t  *dmcf = conf;

    return ngx_do_cluster_parse(cf, &dmcf->cluster);
}


static char *
ngx_http_do_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_do_status_handler;

    return NGX_CONF_OK;
}


/* in the master, at each configuration load: a new channel generation */
static ngx_int_t
ngx_http_do_init_module(ngx_cycle_t *cycle)
{
    ngx_core_conf_t          *ccf;
    ngx_http_do_main_conf_t  *dmcf;

    if (ngx_test_config) {
        return NGX_OK;
    }

    dmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_do_module);

    if (dmcf == NULL || dmcf->namespaces.nelts == 0) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    ngx_http_do_generation++;

    if (dmcf->handover_zone) {
        ngx_do_handover_announce(dmcf->handover_zone, ngx_http_do_generation);
    }

    /* one worker, or no master: every call is local, no channels */
    return ngx_do_ipc_init_master(cycle,
                                  (ccf->master && ccf->worker_processes > 1)
                                  ? ccf->worker_processes : 0);
}


static ngx_int_t
ngx_http_do_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                i;
    ngx_core_conf_t          *ccf;
    ngx_do_namespace_t      **nss;
    ngx_http_do_main_conf_t  *dmcf;

    dmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_do_module);

    if (dmcf == NULL || dmcf->namespaces.nelts == 0) {
        return NGX_OK;
    }

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        /* cache manager and loader: no part in objects */
        return ngx_do_ipc_init_worker(cycle, NULL, NULL);
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    ngx_do_runtime.namespaces = &dmcf->namespaces;
    ngx_do_runtime.workers = (ngx_process == NGX_PROCESS_WORKER)
                             ? ccf->worker_processes : 1;
    ngx_do_runtime.idle_timeout = dmcf->idle_timeout;
    ngx_do_runtime.flush_interval = dmcf->flush_interval;
    ngx_do_runtime.call_timeout = dmcf->call_timeout;
    ngx_do_runtime.max_objects = dmcf->max_objects;
    ngx_do_runtime.generation = ngx_http_do_generation;

    /* before the backend's connections: the agent's scripts load with them */
    if (ngx_do_cluster_init_worker(cycle, dmcf->cluster) != NGX_OK) {
        return NGX_ERROR;
    }

    if (dmcf->backend->init_worker(cycle, dmcf->backend_conf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_do_backend = dmcf->backend;
    ngx_do_storage_init_worker(dmcf->backend);

    if (dmcf->secret_set) {
        ngx_memcpy(ngx_do_runtime.secret, dmcf->secret, 32);

    } else if (dmcf->backend->secret(ngx_do_runtime.secret) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_do_id_init(ngx_do_runtime.secret);

    if (ngx_do_objects_init(cycle, dmcf->backend, ngx_do_router_deliver,
                            ngx_do_router_resend)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_do_status_init_worker(dmcf->status_zone, ngx_do_runtime.workers);

    if (ngx_do_handover_init_worker(cycle, dmcf->handover_zone,
                                    ngx_do_objects_hand_over)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_do_alarms_init(cycle, dmcf->backend) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_do_router_init(cycle) != NGX_OK
        || ngx_do_fanout_init(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_do_enabled = 1;

    nss = dmcf->namespaces.elts;

    for (i = 0; i < dmcf->namespaces.nelts; i++) {
        if (nss[i]->class->init_worker
            && nss[i]->class->init_worker(nss[i], cycle) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_do_node_init_worker(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_do_ipc_init_worker(cycle, ngx_do_router_ipc,
                                  ngx_do_router_bounce);
}


static void
ngx_http_do_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                i;
    ngx_do_namespace_t      **nss;
    ngx_http_do_main_conf_t  *dmcf;

    if (!ngx_http_do_enabled) {
        return;
    }

    ngx_do_cluster_exit_worker();
    ngx_do_fanout_exit();
    ngx_do_router_exit(cycle);
    ngx_do_alarms_exit();
    ngx_do_objects_exit();

    /* what classes keep outside objects, while storage still takes it */
    dmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_do_module);
    nss = dmcf->namespaces.elts;

    for (i = 0; i < dmcf->namespaces.nelts; i++) {
        if (nss[i]->class->exit_worker) {
            nss[i]->class->exit_worker(nss[i]);
        }
    }

    if (ngx_http_do_backend->exit_worker) {
        ngx_http_do_backend->exit_worker();
    }

    ngx_do_handover_exit_worker();
    ngx_do_node_exit_worker();
    ngx_do_ipc_exit_worker();
    ngx_do_handover_unregister();
}


/* nginx stops: every worker is gone, and this node leaves its cluster */
static void
ngx_http_do_exit_master(ngx_cycle_t *cycle)
{
    ngx_http_do_main_conf_t  *dmcf;

    dmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_do_module);

    if (dmcf && dmcf->cluster) {
        ngx_do_cluster_exit_master(cycle, dmcf->cluster);
    }
}
