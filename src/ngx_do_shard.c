
/*
 * The shard map: the one function that says which worker owns a shard.
 * An object's shard comes from its ID (ngx_do_id_shard()); everything that
 * routes a call, scans an alarm index or asks "is this mine" goes through
 * ngx_do_shard_owner().  Today the rule is shard % worker_processes within
 * one node; cluster mode will change this function, and only it, to map a
 * shard to a node and a worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"


ngx_uint_t
ngx_do_shard_owner(ngx_uint_t shard)
{
    return shard % ngx_do_runtime.workers;
}


ngx_uint_t
ngx_do_shard_mine(ngx_uint_t shard)
{
    return ngx_do_shard_owner(shard) == ngx_worker;
}
