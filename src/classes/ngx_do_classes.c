
/*
 * The built-in classes, registered by the shell at preconfiguration from
 * this one table, like a class of one's own with ngx_do_register_class().
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_do.h"
#include "ngx_do_store.h"
#include "ngx_do_rate_limiter.h"
#include "ngx_do_lock.h"
#include "ngx_do_room.h"


ngx_do_class_t  *ngx_do_builtin_classes[] = {
    &ngx_do_store_class,
    &ngx_do_rate_limiter_class,
    &ngx_do_lock_class,
    &ngx_do_room_class,
    NULL
};
