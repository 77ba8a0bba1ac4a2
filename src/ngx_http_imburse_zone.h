/*
 * The shared zone's layout, for the two files that touch it: the zone's
 * life (ngx_http_imburse_zone.c: creation, sizing, reuse across reloads,
 * reclamation) and the per-key operations (ngx_http_imburse_store.c:
 * lookup, claim, put, revoke).  Nothing else sees these structures.
 */

#ifndef _NGX_HTTP_IMBURSE_ZONE_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_ZONE_H_INCLUDED_


#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_store.h"


/* bump when the layout of the structures below changes */
#define NGX_HTTP_IMBURSE_LAYOUT       6

/*
 * A claim outlives its exchange's own bound by this much: the owner ends
 * an exchange that runs late itself, and only a dead or stuck owner's
 * claim is taken over.
 */
#define NGX_HTTP_IMBURSE_CLAIM_GRACE  1000

/* the workers of older configurations that may still use the zone */
#define NGX_HTTP_IMBURSE_OLD_PIDS     64


typedef struct {
    ngx_uint_t                 layout;

    /* entries by name; every entry is in the tree */
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_uint_t                 entries;

    /*
     * The configuration generation: each zone initialisation (start,
     * reload) takes the next number and stamps its keys' entries with it;
     * it becomes the zone's generation once its configuration is in use
     * (the master's init_module: a reload that fails after the zone's
     * initialisation leaves the running one in charge).  An entry stamped
     * before the current generation can be freed once the processes that
     * were running when it took over are gone.
     */
    ngx_uint_t                 generation;
    ngx_uint_t                 last_generation; /* the last number taken */
    ngx_uint_t                 reclaim;         /* entries to free */
    ngx_pid_t                  old_pids[NGX_HTTP_IMBURSE_OLD_PIDS];
    ngx_uint_t                 old_n;

    /* exchanges in flight in the instance, and the keys waiting for one */
    ngx_uint_t                 concurrency;
    ngx_uint_t                 in_flight;
    ngx_queue_t                flying;
    ngx_queue_t                cold;            /* keys with no token */
    ngx_queue_t                warm;            /* refreshes */
    ngx_uint_t                 queued;
} ngx_http_imburse_shctx_t;


struct ngx_http_imburse_entry_s {
    ngx_str_node_t             sn;              /* first: the tree's node */
    ngx_uint_t                 generation;      /* last configured in */

    /* the key that obtained the token: a changed key never reuses it */
    u_char                     key_fp[IMBURSE_SHA256_LEN];
    u_char                    *token;
    size_t                     token_len;
    size_t                     token_size;
    int64_t                    expires_ms;
    int64_t                    refresh_ms;
    int64_t                    obtained_ms;     /* issued */
    int64_t                    stored_ms;       /* put here, our clock */
    u_char                     token_fp[IMBURSE_FP_HEX_LEN];

    ngx_atomic_t               version;

    /* single flight: a dead owner's claim ends at its deadline */
    ngx_pid_t                  owner;
    ngx_msec_t                 deadline;
    ngx_uint_t                 claim;
    ngx_queue_t                flink;           /* in sh->flying */
    ngx_queue_t                qlink;           /* in sh->cold or warm */

    ngx_msec_t                 retry_at;
    ngx_msec_t                 backoff;

    /* the identity service's clock minus ours, where applied */
    int64_t                    clock_offset_ms;

    ngx_uint_t                 exchanges;
    ngx_uint_t                 failures;
    ngx_uint_t                 consecutive_failures;
    ngx_uint_t                 revocations;
    ngx_uint_t                 unrevoked_401;
    u_char                     revoked[IMBURSE_SHA256_LEN];
    u_char                     config_fp[IMBURSE_SHA256_LEN];
    int64_t                    last_exchange_ms;
    u_char                     last_error[NGX_HTTP_IMBURSE_ERROR_LEN];

    ngx_uint_t                 fleet_hits;
    ngx_uint_t                 fleet_locks_taken;
    ngx_uint_t                 fleet_locks_lost;
    ngx_uint_t                 fleet_errors;
    ngx_msec_t                 fleet_skip_until;
    unsigned                   fleet_down:1;
    unsigned                   warned_401:1;    /* for this token */
    unsigned                   from_fleet:1;    /* the token's origin */
    unsigned                   flying:1;
    unsigned                   queued:1;
};


/* with the zone locked: free the memory of tokens no longer valid */
size_t ngx_http_imburse_zone_sweep_tokens(ngx_slab_pool_t *shpool,
    ngx_http_imburse_shctx_t *sh, int64_t now_ms, ngx_uint_t all);


#endif /* _NGX_HTTP_IMBURSE_ZONE_H_INCLUDED_ */
