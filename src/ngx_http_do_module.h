
/*
 * The shell's own declarations: what ngx_http_do_module.c (directives,
 * configuration, process hooks), src/ngx_http_do_namespace.c (classes and
 * do_namespace), src/ngx_http_do_pass.c (do_pass and its variables) and
 * src/ngx_http_do_status.c (do_status) share.
 */


#ifndef _NGX_HTTP_DO_MODULE_H_INCLUDED_
#define _NGX_HTTP_DO_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_do.h"
#include "ngx_do_ws.h"
#include "ngx_do_cluster.h"


#define NGX_HTTP_DO_NAME          1
#define NGX_HTTP_DO_ID            2
#define NGX_HTTP_DO_UNIQUE        3

#define NGX_HTTP_DO_MAX_NAME      1024


typedef struct {
    ngx_array_t                namespaces;    /* ngx_do_namespace_t * */
    ngx_array_t                classes;       /* ngx_do_class_t * */
    ngx_array_t                passes;        /* ngx_http_do_loc_conf_t * */
    ngx_shm_zone_t            *status_zone;
    ngx_shm_zone_t            *handover_zone;
    ngx_do_backend_t          *backend;
    void                      *backend_conf;
    u_char                    *storage_file;
    ngx_uint_t                 storage_line;
    ngx_msec_t                 idle_timeout;
    ngx_msec_t                 call_timeout;
    ngx_msec_t                 flush_interval;
    ngx_int_t                  max_objects;   /* do_max_objects */
    u_char                     secret[32];
    ngx_flag_t                 secret_set;
    ngx_do_cluster_conf_t     *cluster;       /* do_cluster, or NULL */
} ngx_http_do_main_conf_t;


typedef struct {
    ngx_str_t                  ns_name;
    ngx_do_namespace_t        *ns;
    ngx_uint_t                 strategy;
    ngx_http_complex_value_t  *expr;
    ngx_uint_t                 var;           /* expr is $var: its index+1 */
    ngx_http_complex_value_t  *member;        /* WebSockets: member= */
    u_char                    *file;
    ngx_uint_t                 line;
    ngx_do_ws_conf_t           ws;            /* do_ws_* */
    ngx_array_t               *origins;       /* ngx_str_t */
    ngx_array_t               *protocols;     /* ngx_str_t */
} ngx_http_do_loc_conf_t;


/*
 * a do_pass request's object, for the response and the variables; and its
 * body's limit (0 until it is read) and the bytes of it read so far
 */
typedef struct {
    ngx_uint_t                 owner;
    size_t                     max_body;
    off_t                      received;
    u_char                     id[NGX_DO_ID_LEN];
    ngx_do_ws_t               *ws;            /* an upgrade, until 101 */
    void                      *member;
    unsigned                   has_id:1;
} ngx_http_do_ctx_t;


extern ngx_module_t  ngx_http_do_module;


/* src/classes/ngx_do_classes.c */
extern ngx_do_class_t  *ngx_do_builtin_classes[];


/* src/ngx_http_do_namespace.c */
char *ngx_http_do_namespace(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_do_namespace_check_quotas(ngx_conf_t *cf,
    ngx_http_do_main_conf_t *dmcf);


/* src/ngx_http_do_pass.c */
ngx_int_t ngx_http_do_pass_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_do_pass_add_variables(ngx_conf_t *cf);
void ngx_http_do_pass_init_body_filter(void);
ngx_int_t ngx_http_do_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body, uint64_t etag,
    uint64_t activation);


/* src/ngx_http_do_pass.c: the do_ws_* directives */
char *ngx_http_do_pass_merge_ws(ngx_conf_t *cf, ngx_http_do_loc_conf_t *prev,
    ngx_http_do_loc_conf_t *conf);
char *ngx_http_do_ws_keepalive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_do_ws_message_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


/* src/ngx_http_do_status.c */
ngx_int_t ngx_http_do_status_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_DO_MODULE_H_INCLUDED_ */
