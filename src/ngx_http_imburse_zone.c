/*
 * The life of the shared zone: its size, its creation, its reuse across
 * reloads (entries are found by name, in a tree), and its reclamation:
 * the entries of keys no longer configured are freed once no process of an
 * older configuration can use them, and tokens long expired give their
 * memory back.  The per-key operations are in ngx_http_imburse_store.c.
 */

#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_zone.h"


/* what a key takes in the zone, for the size: its entry and its token */
#define NGX_HTTP_IMBURSE_TOKEN_TYPICAL  1024
#define NGX_HTTP_IMBURSE_ZONE_MIN       (1024 * 1024)

/* a token this long expired gives its memory back */
#define NGX_HTTP_IMBURSE_TOKEN_STALE    (60 * 60 * 1000)

/* how often a worker looks whether the old processes are gone */
#define NGX_HTTP_IMBURSE_RECLAIM_EVERY  1000


/* the processes of older configurations, as the master recorded them */
typedef struct {
    ngx_pid_t   pids[NGX_HTTP_IMBURSE_OLD_PIDS];
    ngx_uint_t  n;
} ngx_http_imburse_old_t;


static ngx_int_t ngx_http_imburse_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_imburse_shctx_t *ngx_http_imburse_zone_create(
    ngx_shm_zone_t *shm_zone, ngx_slab_pool_t *shpool);
static void ngx_http_imburse_zone_take_over(ngx_http_imburse_shctx_t *sh,
    ngx_http_imburse_main_conf_t *imcf);
static ngx_http_imburse_entry_t *ngx_http_imburse_zone_entry(
    ngx_slab_pool_t *shpool, ngx_http_imburse_shctx_t *sh, ngx_str_t *name);
static ngx_uint_t ngx_http_imburse_zone_old_alive(
    ngx_http_imburse_old_t *old);
static ngx_uint_t ngx_http_imburse_zone_free_old(ngx_slab_pool_t *shpool,
    ngx_http_imburse_shctx_t *sh);
static void ngx_http_imburse_zone_reclaim_handler(ngx_event_t *ev);
static size_t ngx_http_imburse_zone_slot(size_t size);


static ngx_str_t    ngx_http_imburse_zone_name = ngx_string("imburse_auth");
static ngx_event_t  ngx_http_imburse_reclaim_timer;


/*
 * The size the keys need: each key's entry and a token of a typical size,
 * as the slab allocator rounds them, with an eighth for its bookkeeping.
 */

size_t
ngx_http_imburse_zone_needed(ngx_http_imburse_main_conf_t *imcf)
{
    size_t                   size;
    ngx_uint_t               i;
    ngx_http_imburse_key_t  *key;

    size = 0;
    key = imcf->keys.elts;

    for (i = 0; i < imcf->keys.nelts; i++) {
        size += ngx_http_imburse_zone_slot(sizeof(ngx_http_imburse_entry_t)
                                           + key[i].name.len)
                + NGX_HTTP_IMBURSE_TOKEN_TYPICAL;
    }

    return 16 * ngx_pagesize + size + size / 8;
}


static size_t
ngx_http_imburse_zone_slot(size_t size)
{
    size_t  slot;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (slot = 8; slot < size; slot <<= 1) { /* void */ }

    return slot;
}


ngx_int_t
ngx_http_imburse_zone_add(ngx_conf_t *cf, ngx_http_imburse_main_conf_t *imcf)
{
    size_t           needed, size;
    ngx_shm_zone_t  *shm_zone;

    needed = ngx_http_imburse_zone_needed(imcf);

    if (imcf->zone_size == NGX_CONF_UNSET_SIZE) {

        /*
         * By powers of two: a zone whose size changes is a new zone (its
         * tokens are dropped), and a reload that adds a few keys should
         * keep its zone.
         */

        for (size = NGX_HTTP_IMBURSE_ZONE_MIN; size < needed; size <<= 1) {
            /* void */
        }

        imcf->zone_size = size;

    } else if (imcf->zone_size < needed) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "imburse_zone %uzk is too small for %ui keys: "
                           "they need at least %uzk (an entry and a token "
                           "of about %d bytes each); raise imburse_zone, or "
                           "remove it to have the zone sized from the keys",
                           imcf->zone_size / 1024, imcf->keys.nelts,
                           (needed + 1023) / 1024,
                           NGX_HTTP_IMBURSE_TOKEN_TYPICAL);
        return NGX_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_imburse_zone_name,
                                     imcf->zone_size,
                                     &ngx_http_imburse_auth_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_imburse_zone_init;
    shm_zone->data = imcf;
    shm_zone->noreuse = 0;

    imcf->shm_zone = shm_zone;

    return NGX_OK;
}


/*
 * In the master (and in nginx -t), at each configuration.  The zone's lock
 * is taken for one key at a time: workers of the previous configuration
 * serve requests meanwhile.
 */

static ngx_int_t
ngx_http_imburse_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_imburse_main_conf_t  *imcf = shm_zone->data;

    ngx_uint_t                  i, generation;
    ngx_slab_pool_t            *shpool;
    ngx_http_imburse_key_t     *key;
    ngx_http_imburse_entry_t   *e;
    ngx_http_imburse_shctx_t   *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    sh = NULL;

    if (data || shm_zone->shm.exists) {
        sh = shpool->data;

        if (sh->layout != NGX_HTTP_IMBURSE_LAYOUT) {
            ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                          "imburse zone layout changed, tokens dropped");
            sh = NULL;
        }
    }

    if (sh == NULL) {
        sh = ngx_http_imburse_zone_create(shm_zone, shpool);
        if (sh == NULL) {
            goto nomem;
        }
    }

    ngx_shmtx_lock(&shpool->mutex);
    generation = ++sh->last_generation;
    ngx_shmtx_unlock(&shpool->mutex);

    imcf->generation = generation;

    key = imcf->keys.elts;

    for (i = 0; i < imcf->keys.nelts; i++) {
        key[i].shpool = shpool;

        ngx_shmtx_lock(&shpool->mutex);

        e = ngx_http_imburse_zone_entry(shpool, sh, &key[i].name);

        if (e == NULL) {
            ngx_shmtx_unlock(&shpool->mutex);
            goto nomem;
        }

        e->generation = generation;

        /* a corrected key must not wait out the old key's back-off */

        if (ngx_memcmp(e->config_fp, key[i].fingerprint, IMBURSE_SHA256_LEN)
            != 0)
        {
            ngx_memcpy(e->config_fp, key[i].fingerprint, IMBURSE_SHA256_LEN);
            e->backoff = 0;
            e->retry_at = ngx_current_msec;
            e->consecutive_failures = 0;
            e->fleet_down = 0;
        }

        key[i].entry = e;

        ngx_shmtx_unlock(&shpool->mutex);
    }

    ngx_shmtx_lock(&shpool->mutex);
    (void) ngx_http_imburse_zone_sweep_tokens(shpool, sh,
                                              ngx_http_imburse_now_ms(), 0);
    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;

nomem:

    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "imburse zone \"%V\" of %uzk has no room for %ui keys, "
                  "raise imburse_zone", &shm_zone->shm.name,
                  shm_zone->shm.size / 1024, imcf->keys.nelts);

    return NGX_ERROR;
}


static ngx_http_imburse_shctx_t *
ngx_http_imburse_zone_create(ngx_shm_zone_t *shm_zone,
    ngx_slab_pool_t *shpool)
{
    size_t                     len;
    ngx_http_imburse_shctx_t  *sh;

    ngx_shmtx_lock(&shpool->mutex);

    sh = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_imburse_shctx_t));
    if (sh == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NULL;
    }

    sh->layout = NGX_HTTP_IMBURSE_LAYOUT;
    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->flying);
    ngx_queue_init(&sh->cold);
    ngx_queue_init(&sh->warm);
    shpool->data = sh;

    len = sizeof(" in imburse zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc_locked(shpool, len);
    if (shpool->log_ctx != NULL) {
        ngx_sprintf(shpool->log_ctx, " in imburse zone \"%V\"%Z",
                    &shm_zone->shm.name);
    }

    /* a full zone is the module's to report, naming imburse_zone */
    shpool->log_nomem = 0;

    ngx_shmtx_unlock(&shpool->mutex);

    return sh;
}


/*
 * ngx_init_cycle() calls init_module after the shared zones and the
 * listening sockets, the last steps that can fail: from here on this
 * configuration is the one in use.  Before, a reload that failed (a port
 * in use, another zone too small) would have left the running workers a
 * generation that is not theirs, and its settings.
 */

void
ngx_http_imburse_zone_commit(ngx_cycle_t *cycle)
{
    ngx_slab_pool_t               *shpool;
    ngx_http_imburse_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_imburse_auth_module);

    if (imcf == NULL || imcf->shm_zone == NULL
        || ngx_process == NGX_PROCESS_SIGNALLER)
    {
        return;
    }

    shpool = (ngx_slab_pool_t *) imcf->shm_zone->shm.addr;

    ngx_shmtx_lock(&shpool->mutex);
    ngx_http_imburse_zone_take_over(shpool->data, imcf);
    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * A new configuration: every process running now is of an older one, and
 * entries not configured from now on may be freed once they are all gone.
 */

static void
ngx_http_imburse_zone_take_over(ngx_http_imburse_shctx_t *sh,
    ngx_http_imburse_main_conf_t *imcf)
{
    ngx_int_t  i;

    sh->generation = imcf->generation;
    sh->concurrency = imcf->concurrency;
    sh->old_n = 0;

    if (ngx_process != NGX_PROCESS_MASTER) {
        /* nginx -t, or no master: no process of an older configuration */
        sh->reclaim = !ngx_test_config;
        return;
    }

    for (i = 0; i < ngx_last_process; i++) {
        if (ngx_processes[i].pid == -1) {
            continue;
        }

        if (sh->old_n == NGX_HTTP_IMBURSE_OLD_PIDS) {
            /* too many to follow: the next reload reclaims */
            sh->reclaim = 0;
            return;
        }

        sh->old_pids[sh->old_n++] = ngx_processes[i].pid;
    }

    sh->reclaim = 1;
}


static ngx_http_imburse_entry_t *
ngx_http_imburse_zone_entry(ngx_slab_pool_t *shpool,
    ngx_http_imburse_shctx_t *sh, ngx_str_t *name)
{
    uint32_t                   hash;
    ngx_http_imburse_entry_t  *e;

    hash = ngx_crc32_short(name->data, name->len);

    e = (ngx_http_imburse_entry_t *) ngx_str_rbtree_lookup(&sh->rbtree, name,
                                                           hash);
    if (e) {
        return e;
    }

    e = ngx_slab_calloc_locked(shpool,
                               sizeof(ngx_http_imburse_entry_t) + name->len);
    if (e == NULL) {
        return NULL;
    }

    e->sn.str.data = (u_char *) e + sizeof(ngx_http_imburse_entry_t);
    e->sn.str.len = name->len;
    ngx_memcpy(e->sn.str.data, name->data, name->len);
    e->sn.node.key = hash;

    ngx_rbtree_insert(&sh->rbtree, &e->sn.node);
    sh->entries++;

    return e;
}


/*
 * Tokens that expired (long ago, or at all when memory is short) give
 * their memory back; the entry stays, for its counters and its next token.
 */

size_t
ngx_http_imburse_zone_sweep_tokens(ngx_slab_pool_t *shpool,
    ngx_http_imburse_shctx_t *sh, int64_t now_ms, ngx_uint_t all)
{
    size_t                     freed;
    int64_t                    stale;
    ngx_rbtree_node_t         *node, *root, *sentinel;
    ngx_http_imburse_entry_t  *e;

    freed = 0;
    root = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    if (root == sentinel) {
        return 0;
    }

    stale = all ? 0 : NGX_HTTP_IMBURSE_TOKEN_STALE;

    for (node = ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&sh->rbtree, node))
    {
        e = (ngx_http_imburse_entry_t *) node;

        if (e->token && !e->flying
            && now_ms + e->clock_offset_ms - e->expires_ms > stale)
        {
            ngx_slab_free_locked(shpool, e->token);
            freed += e->token_size;
            e->token = NULL;
            e->token_size = 0;
            e->token_len = 0;
            e->version++;
        }
    }

    return freed;
}


/* in each worker: the reclamation, once the old processes are gone */

void
ngx_http_imburse_zone_init_process(ngx_http_imburse_main_conf_t *imcf)
{
    ngx_http_imburse_shctx_t  *sh;

    if (imcf->shm_zone == NULL) {
        return;
    }

    sh = ((ngx_slab_pool_t *) imcf->shm_zone->shm.addr)->data;

    if (!sh->reclaim) {
        return;
    }

    ngx_memzero(&ngx_http_imburse_reclaim_timer, sizeof(ngx_event_t));
    ngx_http_imburse_reclaim_timer.handler =
                                         ngx_http_imburse_zone_reclaim_handler;
    ngx_http_imburse_reclaim_timer.data = imcf;
    ngx_http_imburse_reclaim_timer.log = ngx_cycle->log;
    ngx_http_imburse_reclaim_timer.cancelable = 1;

    ngx_add_timer(&ngx_http_imburse_reclaim_timer,
                  NGX_HTTP_IMBURSE_RECLAIM_EVERY);
}


static void
ngx_http_imburse_zone_reclaim_handler(ngx_event_t *ev)
{
    ngx_http_imburse_main_conf_t *imcf = ev->data;

    size_t                     size;
    ngx_uint_t                 n;
    ngx_slab_pool_t           *shpool;
    ngx_http_imburse_shctx_t  *sh;
    ngx_http_imburse_old_t     old;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    shpool = (ngx_slab_pool_t *) imcf->shm_zone->shm.addr;
    sh = shpool->data;

    /*
     * Only a worker of the current generation reclaims: a worker of an
     * older one may still use the entries it would free.  A configuration
     * being initialised meanwhile is safe: it finds and stamps each entry
     * under the lock, and what it stamped is not older than the current
     * generation.  The generation is checked again when freeing: a newer
     * one may take over while the pids are tested without the lock.
     */

    ngx_shmtx_lock(&shpool->mutex);

    if (sh->generation != imcf->generation || !sh->reclaim) {
        ngx_shmtx_unlock(&shpool->mutex);
        return;
    }

    old.n = sh->old_n;
    ngx_memcpy(old.pids, sh->old_pids, sizeof(old.pids));

    ngx_shmtx_unlock(&shpool->mutex);

    if (ngx_http_imburse_zone_old_alive(&old)) {
        ngx_add_timer(ev, NGX_HTTP_IMBURSE_RECLAIM_EVERY);
        return;
    }

    ngx_shmtx_lock(&shpool->mutex);

    n = 0;

    if (sh->generation == imcf->generation && sh->reclaim) {
        n = ngx_http_imburse_zone_free_old(shpool, sh);
        sh->reclaim = 0;
    }

    size = ngx_http_imburse_zone_sweep_tokens(shpool, sh,
                                              ngx_http_imburse_now_ms(), 0);

    ngx_shmtx_unlock(&shpool->mutex);

    if (n || size) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "imburse zone: the entries of %ui keys no longer "
                      "configured freed, and %uz bytes of expired tokens",
                      n, size);
    }
}


static ngx_uint_t
ngx_http_imburse_zone_old_alive(ngx_http_imburse_old_t *old)
{
    ngx_uint_t  i;

    for (i = 0; i < old->n; i++) {
        /*
         * EPERM counts as alive: the old workers may run as another user
         * than this one (a reload that changed "user"); a pid taken by
         * another user's process only delays the reclamation.
         */
        if (old->pids[i] != ngx_pid
            && (kill(old->pids[i], 0) == 0 || ngx_errno == NGX_EPERM))
        {
            return 1;
        }
    }

    return 0;
}


/* with the zone locked: no process can still use an older entry */

static ngx_uint_t
ngx_http_imburse_zone_free_old(ngx_slab_pool_t *shpool,
    ngx_http_imburse_shctx_t *sh)
{
    ngx_uint_t                 n;
    ngx_rbtree_node_t         *node, *next, *sentinel;
    ngx_http_imburse_entry_t  *e;

    n = 0;
    sentinel = sh->rbtree.sentinel;

    if (sh->rbtree.root == sentinel) {
        return 0;
    }

    for (node = ngx_rbtree_min(sh->rbtree.root, sentinel); node; node = next) {
        next = ngx_rbtree_next(&sh->rbtree, node);
        e = (ngx_http_imburse_entry_t *) node;

        if (e->generation >= sh->generation) {
            continue;
        }

        if (e->flying) {
            ngx_queue_remove(&e->flink);
            sh->in_flight--;
        }

        if (e->queued) {
            ngx_queue_remove(&e->qlink);
            sh->queued--;
        }

        if (e->token) {
            ngx_slab_free_locked(shpool, e->token);
        }

        ngx_rbtree_delete(&sh->rbtree, node);
        ngx_slab_free_locked(shpool, e);
        sh->entries--;
        n++;
    }

    return n;
}


void
ngx_http_imburse_zone_stats(ngx_http_imburse_main_conf_t *imcf,
    ngx_http_imburse_zone_stats_t *zs)
{
    ngx_slab_pool_t           *shpool;
    ngx_http_imburse_shctx_t  *sh;

    ngx_memzero(zs, sizeof(ngx_http_imburse_zone_stats_t));

    if (imcf->shm_zone == NULL) {
        return;
    }

    shpool = (ngx_slab_pool_t *) imcf->shm_zone->shm.addr;
    sh = shpool->data;

    ngx_shmtx_lock(&shpool->mutex);

    zs->size = imcf->shm_zone->shm.size;
    zs->free = shpool->pfree * ngx_pagesize;
    zs->entries = sh->entries;
    zs->in_flight = sh->in_flight;
    zs->queued = sh->queued;
    zs->concurrency = sh->concurrency;

    ngx_shmtx_unlock(&shpool->mutex);
}
