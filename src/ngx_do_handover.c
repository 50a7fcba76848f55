
/*
 * Handover between generations of workers on one node (a reload), for
 * objects with deferred durability.
 *
 * A deferred object decides from memory and stores its writes later, so
 * two workers that both run it decide twice: a reload would hand out a
 * second rate-limiter bucket.  Conditional commits cannot catch that, since
 * the old worker's decisions are not in storage yet.  So a worker runs a
 * deferred object from memory only while it holds the object's shard:
 *
 *   - hold[shard] in a small shared zone is the PID of the one worker that
 *     may keep deferred state of that shard in memory (0: nobody), shifted
 *     left by one; the low bit is set once it does (it runs strictly while
 *     older workers live, and has nothing unstored then).  A
 *     worker takes it when it activates such an object and gives it back
 *     when the last of them is stored and dropped.  A worker that finds it
 *     taken by a live worker waits (its calls queue) until it is given
 *     back: the old generation stores its state first.  The hold of a dead
 *     worker is taken over at once; the wait ends after
 *     NGX_DO_HANDOVER_WAIT in any case, with a log line.
 *
 *   - A worker that sees a newer generation started ("old") takes no new
 *     hold: it stores and drops its held objects as soon as they are idle
 *     (a tick every NGX_DO_HANDOVER_TICK), and runs the deferred calls that
 *     still reach it as ordinary turns: the version is checked and the
 *     writes committed before the reply leaves.  So does a worker that
 *     runs an object once (its owner is out of reach).  Such strict turns
 *     wait while a live worker keeps deferred state of the shard (the low
 *     bit), for that state is not in storage yet.
 *
 *   - A worker that sees a worker of an older generation alive runs its
 *     deferred objects the same way ("strict") until the last of them is
 *     gone, so that both sides meet in storage.
 *
 * The registry of workers (PID and generation) lives in the same zone.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_do.h"


#define NGX_DO_HANDOVER_SLOTS     256
#define NGX_DO_HANDOVER_TICK      50

/* a registry slot being filled in: its fields are not to be read yet */
#define NGX_DO_HANDOVER_CLAIMING  ((ngx_atomic_uint_t) -1)


/*
 * A worker in the registry.  start: its start time (clock ticks after
 * boot, from /proc), so that a PID that a dead worker left and another
 * process got since does not pass for that worker.
 */
typedef struct {
    ngx_atomic_t               pid;
    ngx_atomic_t               generation;
    ngx_atomic_t               worker;        /* ngx_worker */
    ngx_atomic_t               start;
} ngx_do_handover_worker_t;


typedef struct {
    ngx_atomic_t               newest;        /* generation */
    ngx_do_handover_worker_t   workers[NGX_DO_HANDOVER_SLOTS];
    ngx_atomic_t               hold[NGX_DO_SHARDS];
    ngx_atomic_t               announced;     /* the master's newest */
} ngx_do_handover_sh_t;


static void ngx_do_handover_drop(ngx_uint_t shard);
static ngx_uint_t ngx_do_handover_alive(ngx_atomic_uint_t pid);
static ngx_uint_t ngx_do_handover_runs(ngx_do_handover_worker_t *w,
    ngx_atomic_uint_t pid);
static uint64_t ngx_do_handover_start(ngx_pid_t pid);
static ngx_uint_t ngx_do_handover_older(void);
static void ngx_do_handover_tick(ngx_event_t *ev);


static ngx_do_handover_sh_t   *ngx_do_handover_sh;
static ngx_do_handover_worker_t  *ngx_do_handover_me;
static ngx_uint_t              ngx_do_handover_overlap_flag;
static ngx_uint_t              ngx_do_handover_held[NGX_DO_SHARDS];
static ngx_uint_t              ngx_do_handover_nheld;
static ngx_event_t             ngx_do_handover_event;
/* the data of timers (nginx's debug lines read a timer's data as one) */
static ngx_connection_t        ngx_do_handover_dumb;
static void                  (*ngx_do_handover_release_all)(void);


size_t
ngx_do_handover_zone_size(void)
{
    return ngx_align(sizeof(ngx_do_handover_sh_t), ngx_pagesize)
           + 8 * ngx_pagesize;
}


ngx_int_t
ngx_do_handover_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    shm_zone->data = ngx_slab_calloc(shpool, sizeof(ngx_do_handover_sh_t));
    if (shm_zone->data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * In a worker: join the registry and say which generation is the newest.
 * release_all drops every held object that is idle (this worker is old).
 */
ngx_int_t
ngx_do_handover_init_worker(ngx_cycle_t *cycle, ngx_shm_zone_t *shm_zone,
    void (*release_all)(void))
{
    ngx_uint_t                 i;
    ngx_atomic_uint_t          pid, newest;
    ngx_do_handover_worker_t  *w;

    ngx_do_handover_sh = shm_zone->data;
    ngx_do_handover_release_all = release_all;

    for (i = 0; i < NGX_DO_HANDOVER_SLOTS; i++) {
        w = &ngx_do_handover_sh->workers[i];
        pid = w->pid;

        if (pid == NGX_DO_HANDOVER_CLAIMING
            || (pid != 0 && ngx_do_handover_runs(w, pid))
            || !ngx_atomic_cmp_set(&w->pid, pid, NGX_DO_HANDOVER_CLAIMING))
        {
            continue;
        }

        /* the fields first, then the PID that makes them valid */
        w->generation = ngx_do_runtime.generation;
        w->worker = ngx_worker;
        w->start = (ngx_atomic_uint_t) ngx_do_handover_start(ngx_pid);
        ngx_memory_barrier();
        w->pid = ngx_pid;
        ngx_do_handover_me = w;
        break;
    }

    if (ngx_do_handover_me == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "do: more than %d workers alive, this one runs "
                      "deferred objects strictly", NGX_DO_HANDOVER_SLOTS);
    }

    for ( ;; ) {
        newest = ngx_do_handover_sh->newest;

        if (newest >= ngx_do_runtime.generation
            || ngx_atomic_cmp_set(&ngx_do_handover_sh->newest, newest,
                                  ngx_do_runtime.generation))
        {
            break;
        }
    }

    ngx_do_handover_overlap_flag = ngx_do_handover_older();

    ngx_do_handover_event.handler = ngx_do_handover_tick;
    ngx_do_handover_event.data = &ngx_do_handover_dumb;
    ngx_do_handover_dumb.fd = (ngx_socket_t) -1;
    ngx_do_handover_event.log = cycle->log;
    ngx_do_handover_event.cancelable = 1;

    if (ngx_do_handover_overlap_flag) {
        ngx_add_timer(&ngx_do_handover_event, NGX_DO_HANDOVER_TICK);
    }

    return NGX_OK;
}


/* at exit, after the last flushes were stored or given up */
void
ngx_do_handover_exit_worker(void)
{
    ngx_uint_t  i;

    if (ngx_do_handover_sh == NULL) {
        return;
    }

    for (i = 0; i < NGX_DO_SHARDS; i++) {
        ngx_do_handover_drop(i);
    }

    if (ngx_do_handover_event.timer_set) {
        ngx_del_timer(&ngx_do_handover_event);
    }
}


/* the very last: after the final answers left, peers may see it gone */
void
ngx_do_handover_unregister(void)
{
    if (ngx_do_handover_me) {
        (void) ngx_atomic_cmp_set(&ngx_do_handover_me->pid, ngx_pid, 0);
        ngx_do_handover_me = NULL;
    }

    ngx_do_handover_sh = NULL;
}


/* a newer generation of workers started: this one is being replaced */
ngx_uint_t
ngx_do_handover_old(void)
{
    return ngx_exiting
           || ngx_do_handover_sh == NULL
           || ngx_do_handover_me == NULL
           || ngx_do_handover_sh->newest > ngx_do_runtime.generation;
}


/*
 * In the master, as a configuration is loaded: its generation, so that the
 * workers it replaces know it before they are told to stop
 */
void
ngx_do_handover_announce(ngx_shm_zone_t *shm_zone, ngx_uint_t generation)
{
    ngx_do_handover_sh_t  *sh;

    sh = shm_zone->data;

    if (sh && sh->announced < generation) {
        sh->announced = generation;
    }
}


/* this worker stops because newer workers replace it (a reload) */
ngx_uint_t
ngx_do_handover_replaced(void)
{
    return ngx_do_handover_sh
           && ngx_do_handover_sh->announced > ngx_do_runtime.generation;
}


/* a worker of an older generation still runs */
ngx_uint_t
ngx_do_handover_overlap(void)
{
    return ngx_do_handover_overlap_flag;
}


/*
 * Takes the shard of id for this worker: NGX_OK, or NGX_BUSY while a live
 * worker holds it; force: take it anyway.  NGX_DECLINED: this worker takes
 * no holds (it is old, or the object runs here once), and its strict turns
 * may start unless a live worker keeps deferred state of the shard
 * (NGX_BUSY too).
 */
ngx_int_t
ngx_do_handover_hold(u_char *id, ngx_uint_t transient, ngx_uint_t force)
{
    ngx_uint_t          shard;
    ngx_atomic_uint_t   word, pid, mine;

    if (ngx_do_handover_sh == NULL) {
        return NGX_DECLINED;
    }

    shard = ngx_do_id_shard(id);
    word = ngx_do_handover_sh->hold[shard];
    pid = word >> 1;

    if (transient || ngx_do_handover_old()) {
        if ((word & 1) && pid != (ngx_atomic_uint_t) ngx_pid && !force
            && ngx_do_handover_alive(pid))
        {
            return NGX_BUSY;
        }

        return NGX_DECLINED;
    }

    if (ngx_do_handover_held[shard]) {
        ngx_do_handover_held[shard]++;
        return NGX_OK;
    }

    mine = ((ngx_atomic_uint_t) ngx_pid << 1)
           | (ngx_do_handover_overlap_flag ? 0 : 1);

    for ( ;; ) {
        word = ngx_do_handover_sh->hold[shard];
        pid = word >> 1;

        if (pid != 0 && pid != (ngx_atomic_uint_t) ngx_pid && !force
            && ngx_do_handover_alive(pid))
        {
            return NGX_BUSY;
        }

        if (ngx_atomic_cmp_set(&ngx_do_handover_sh->hold[shard], word, mine))
        {
            break;
        }
    }

    if (pid != 0 && pid != (ngx_atomic_uint_t) ngx_pid) {
        if (force) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "do: shard %ui taken over from worker %P, which "
                          "did not give it back in %d ms: its deferred "
                          "writes may be overwritten", shard,
                          (ngx_pid_t) pid, NGX_DO_HANDOVER_WAIT);

        } else {
            ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                          "do: shard %ui taken over from worker %P, which "
                          "is gone", shard, (ngx_pid_t) pid);
        }
    }

    ngx_do_handover_held[shard] = 1;
    ngx_do_handover_nheld++;

    if (!ngx_do_handover_event.timer_set) {
        ngx_add_timer(&ngx_do_handover_event, NGX_DO_HANDOVER_TICK);
    }

    return NGX_OK;
}


/*
 * A held object leaves strict turns: its shard now has deferred state.
 * NGX_DECLINED: the hold is not this worker's any more (taken by force).
 */
ngx_int_t
ngx_do_handover_deferred(u_char *id)
{
    ngx_uint_t          shard;
    ngx_atomic_uint_t   mine;

    shard = ngx_do_id_shard(id);
    mine = (ngx_atomic_uint_t) ngx_pid << 1;

    if (ngx_do_handover_sh->hold[shard] == (mine | 1)
        || ngx_atomic_cmp_set(&ngx_do_handover_sh->hold[shard], mine,
                              mine | 1))
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* one object of the shard of id is stored and gone */
void
ngx_do_handover_release(u_char *id)
{
    ngx_uint_t  shard;

    shard = ngx_do_id_shard(id);

    if (ngx_do_handover_held[shard] == 0
        || --ngx_do_handover_held[shard] != 0)
    {
        return;
    }

    ngx_do_handover_nheld--;

    if (ngx_do_handover_sh) {
        ngx_do_handover_drop(shard);
    }
}


static void
ngx_do_handover_drop(ngx_uint_t shard)
{
    ngx_atomic_uint_t  word;

    word = ngx_do_handover_sh->hold[shard];

    if ((word >> 1) == (ngx_atomic_uint_t) ngx_pid) {
        (void) ngx_atomic_cmp_set(&ngx_do_handover_sh->hold[shard], word, 0);
    }
}


/*
 * The PID of the live worker numbered worker in this generation, or 0: a
 * worker killed and not yet replaced has none, its replacement another.
 * With exact, a PID is also checked against the worker's start time (a
 * /proc read: a PID reused since is not taken for the worker); without,
 * only that a process of that PID exists (one system call, for the hot
 * path).
 */
ngx_pid_t
ngx_do_handover_peer(ngx_uint_t worker, ngx_uint_t exact)
{
    ngx_uint_t                 i;
    ngx_atomic_uint_t          pid;
    ngx_do_handover_worker_t  *w;

    if (ngx_do_handover_sh == NULL) {
        return 0;
    }

    for (i = 0; i < NGX_DO_HANDOVER_SLOTS; i++) {
        w = &ngx_do_handover_sh->workers[i];
        pid = w->pid;

        if (pid != 0 && pid != NGX_DO_HANDOVER_CLAIMING
            && w->generation == ngx_do_runtime.generation
            && w->worker == worker
            && (exact ? ngx_do_handover_runs(w, pid)
                      : ngx_do_handover_alive(pid)))
        {
            return (ngx_pid_t) pid;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_do_handover_alive(ngx_atomic_uint_t pid)
{
    return kill((ngx_pid_t) pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}


/* the registry's worker w (whose PID was read as pid) still runs */
static ngx_uint_t
ngx_do_handover_runs(ngx_do_handover_worker_t *w, ngx_atomic_uint_t pid)
{
    uint64_t  start;

    if (!ngx_do_handover_alive(pid)) {
        return 0;
    }

    start = ngx_do_handover_start((ngx_pid_t) pid);

    /* without /proc there is nothing to compare: the PID must do */
    return start == 0 || w->start == 0
           || start == (uint64_t) w->start;
}


/* field 22 of /proc/<pid>/stat: the start time, or 0 */
static uint64_t
ngx_do_handover_start(ngx_pid_t pid)
{
    u_char      *p, *last;
    ssize_t      n;
    uint64_t     start;
    ngx_fd_t     fd;
    ngx_uint_t   field;
    u_char       path[64], buf[1024];

    (void) ngx_sprintf(path, "/proc/%P/stat%Z", pid);

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return 0;
    }

    n = read(fd, buf, sizeof(buf));
    (void) ngx_close_file(fd);

    if (n <= 0) {
        return 0;
    }

    last = buf + n;

    /* the command name may hold spaces: count fields after its ')' */
    for (p = last - 1; p > buf && *p != ')'; p--) { /* void */ }

    if (p == buf) {
        return 0;
    }

    for (field = 2; p < last && field < 22; p++) {
        if (*p == ' ') {
            field++;
        }
    }

    for (start = 0; p < last && *p >= '0' && *p <= '9'; p++) {
        start = start * 10 + (*p - '0');
    }

    return start;
}


static ngx_uint_t
ngx_do_handover_older(void)
{
    ngx_uint_t                 i;
    ngx_atomic_uint_t          pid;
    ngx_do_handover_worker_t  *w;

    for (i = 0; i < NGX_DO_HANDOVER_SLOTS; i++) {
        w = &ngx_do_handover_sh->workers[i];
        pid = w->pid;

        if (pid != 0 && pid != NGX_DO_HANDOVER_CLAIMING
            && pid != (ngx_atomic_uint_t) ngx_pid
            && w->generation < ngx_do_runtime.generation
            && ngx_do_handover_runs(w, pid))
        {
            return 1;
        }
    }

    return 0;
}


/*
 * While older workers run, look again whether they are gone; while this
 * worker holds shards, whether it is old, and then drop its held objects
 * as they become idle.
 */
static void
ngx_do_handover_tick(ngx_event_t *ev)
{
    if (ngx_do_handover_sh == NULL) {
        return;
    }

    if (ngx_do_handover_overlap_flag) {
        ngx_do_handover_overlap_flag = ngx_do_handover_older();
    }

    if (ngx_do_handover_nheld && ngx_do_handover_old()) {
        ngx_do_handover_release_all();
    }

    if (ngx_do_handover_overlap_flag || ngx_do_handover_nheld) {
        ngx_add_timer(ev, NGX_DO_HANDOVER_TICK);
    }
}
