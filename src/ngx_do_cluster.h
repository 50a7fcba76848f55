
/*
 * Cluster mode (do_cluster): several nginx nodes on one Redis, each shard
 * held by one node through a lease with a fencing epoch.
 *
 * ngx_do_cluster.c keeps the node registry, the placement and the leases
 * (one agent per node, in worker 0, talking to Redis) and publishes them
 * to the node's workers in a shared zone: for each shard, the node that
 * holds it and the epoch of its lease.  ngx_do_node.c is the channel
 * between nodes: persistent TCP connections, each frame authenticated
 * with an HMAC keyed by do_secret.
 */


#ifndef _NGX_DO_CLUSTER_H_INCLUDED_
#define _NGX_DO_CLUSTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_do.h"


#define NGX_DO_CLUSTER_PEERS      32          /* nodes at most */
#define NGX_DO_CLUSTER_NAME_LEN   63
#define NGX_DO_CLUSTER_ADDR_LEN   63          /* "host:port", numeric */
#define NGX_DO_CLUSTER_NONE       ((ngx_uint_t) -1)

/* where a shard's calls go now: ngx_do_cluster_route() */
#define NGX_DO_CLUSTER_HERE       0           /* this node holds the lease */
#define NGX_DO_CLUSTER_PEER       1           /* the peer *peer holds it */
#define NGX_DO_CLUSTER_WAIT       2           /* nobody yet: ask again */


typedef struct {
    ngx_str_t                  name;          /* name= */
    ngx_str_t                  listen;        /* listen=, as written */
    ngx_addr_t                 addr;          /* listen=, resolved */
    ngx_msec_t                 lease;         /* lease= */
    ngx_shm_zone_t            *zone;
    void                      *redis;         /* ngx_do_redis_conf_t */
    u_char                    *file;          /* of the directive */
    ngx_uint_t                 line;
} ngx_do_cluster_conf_t;


/* the configuration of cluster mode in a worker, NULL: not in it */
extern ngx_do_cluster_conf_t  *ngx_do_cluster;


/* configuration: do_cluster's arguments, then the checks and the zone */
char *ngx_do_cluster_parse(ngx_conf_t *cf, ngx_do_cluster_conf_t **conf);
ngx_int_t ngx_do_cluster_init_conf(ngx_conf_t *cf,
    ngx_do_cluster_conf_t *conf, void *redis, ngx_uint_t secret, void *tag);

/* in each worker (and exit); the agent runs in worker 0 */
ngx_int_t ngx_do_cluster_init_worker(ngx_cycle_t *cycle,
    ngx_do_cluster_conf_t *conf);
void ngx_do_cluster_exit_worker(void);

/* in the master when nginx stops: the leases released (ngx_do_cluster_leave.c) */
void ngx_do_cluster_exit_master(ngx_cycle_t *cycle,
    ngx_do_cluster_conf_t *conf);

/*
 * Handlers that the agent calls when this node is about to give a shard
 * up (a planned handover), a tick before it releases the lease: deferred
 * state of the shard is to be stored now, with the epoch still held.
 */
typedef void (*ngx_do_cluster_leave_pt)(ngx_uint_t shard);

void ngx_do_cluster_on_leave(ngx_do_cluster_leave_pt handler);

/*
 * Where calls for the shard go: HERE (this node holds its lease, and the
 * lease has not run out by this node's clock), PEER (*peer is the index
 * of the node that holds it), WAIT (nobody holds it yet, or it moves: a
 * caller asks again a little later, up to its timeout).  Outside cluster
 * mode: always HERE.
 */
ngx_int_t ngx_do_cluster_route(ngx_uint_t shard, ngx_uint_t *peer);

/*
 * The epoch of the lease this node holds on the shard (0: none); a
 * commit or a flush carries it, and storage refuses one whose epoch is
 * not the lease's current one.
 */
uint64_t ngx_do_cluster_epoch(ngx_uint_t shard);

/* the lease key of a shard in Redis, "do:lease:<shard>" after the prefix */
u_char *ngx_do_cluster_lease_key(u_char *p, ngx_uint_t shard);

/*
 * Storage refused a commit of the shard by its epoch: this node lost the
 * lease (it was paused or cut off past it).  It stops holding the shard
 * at once and the agent learns who holds it now.
 */
void ngx_do_cluster_lost(ngx_uint_t shard, uint64_t epoch);

/*
 * Peers, by index (0 .. NGX_DO_CLUSTER_PEERS - 1): NGX_OK with the
 * node's name and address while it is in the registry, NGX_DECLINED
 * otherwise.  ngx_do_cluster_peer_find(): the index of a live node by
 * name, NGX_DO_CLUSTER_NONE when it is not in the registry.  self: this
 * node's index.
 */
ngx_int_t ngx_do_cluster_peer(ngx_uint_t peer, ngx_str_t *name,
    ngx_str_t *addr);
ngx_uint_t ngx_do_cluster_peer_find(ngx_str_t *name);
ngx_uint_t ngx_do_cluster_self(void);

/* do_status: the node, its shards and epochs, the peers */
size_t ngx_do_cluster_status_size(void);
u_char *ngx_do_cluster_status_json(u_char *p, u_char *last);
u_char *ngx_do_cluster_status_prometheus(u_char *p, u_char *last);


#endif /* _NGX_DO_CLUSTER_H_INCLUDED_ */
