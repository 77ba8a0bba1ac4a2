/*
 * The token store: one shared-memory zone for all keys and all workers.
 * It holds each key's token and expiry, the fingerprint of the key that
 * obtained it, the single-flight claim on the exchange and the counters.
 * Everything else reaches the zone through this interface only.
 */

#ifndef _NGX_HTTP_IMBURSE_STORE_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_STORE_H_INCLUDED_


#include "ngx_http_imburse_auth.h"


/* the cause of a key's last failure, as the status shows it */
#define NGX_HTTP_IMBURSE_ERROR_LEN  96


typedef enum {
    NGX_HTTP_IMBURSE_USE = 0,     /* a valid token */
    NGX_HTTP_IMBURSE_USE_REFRESH, /* a valid token; caller refreshes it */
    NGX_HTTP_IMBURSE_EXCHANGE,    /* no valid token; caller exchanges */
    NGX_HTTP_IMBURSE_WAIT,        /* no valid token; an exchange is on */
    NGX_HTTP_IMBURSE_BACKOFF      /* no valid token; exchanges failing */
} ngx_http_imburse_action_e;


typedef struct {
    ngx_str_t    token;           /* copied into the request pool, after
                                     "prefix" bytes left for the caller */
    int64_t      expires_ms;
    int64_t      refresh_ms;      /* with USE: when the refresh is due */
    ngx_uint_t   claim;           /* with EXCHANGE and USE_REFRESH */
    ngx_msec_t   wait;            /* WAIT: claim deadline, BACKOFF: delay */
    ngx_pid_t    taken_from;      /* the claim's owner timed out */
    ngx_uint_t   version;         /* ngx_http_imburse_store_version() */
    ngx_pid_t    owner;           /* WAIT: the exchange's worker */
    unsigned     stale:1;         /* the last refresh failed */
    unsigned     from_fleet:1;    /* the token came from the fleet's copy */
    unsigned     queued:1;        /* WAIT: behind the exchanges in flight */
} ngx_http_imburse_lookup_t;


typedef struct {
    ngx_uint_t   exchanges;
    ngx_uint_t   failures;
    ngx_uint_t   consecutive_failures;
    ngx_uint_t   revocations;
    ngx_uint_t   unrevoked_401;
    int64_t      clock_offset_ms;
    ngx_msec_t   next_attempt_ms;  /* until an exchange may run again */
    ngx_uint_t   fleet_hits;
    ngx_uint_t   fleet_locks_taken;
    ngx_uint_t   fleet_locks_lost;
    ngx_uint_t   fleet_errors;
    int64_t      expires_ms;
    int64_t      expires_in;       /* seconds, 0 without a valid token */
    int64_t      last_exchange_ms;
    u_char       last_error[NGX_HTTP_IMBURSE_ERROR_LEN];
    u_char       token_fp[IMBURSE_FP_HEX_LEN];
    unsigned     valid:1;
    unsigned     in_flight:1;
    unsigned     queued:1;
    unsigned     fleet_down:1;
} ngx_http_imburse_key_stats_t;


typedef struct {
    size_t       size;
    size_t       free;
    ngx_uint_t   entries;
    ngx_uint_t   in_flight;       /* exchanges, the whole instance */
    ngx_uint_t   queued;          /* keys waiting for one */
    ngx_uint_t   concurrency;
} ngx_http_imburse_zone_stats_t;


/* ngx_http_imburse_zone.c: the zone's life */
size_t ngx_http_imburse_zone_needed(ngx_http_imburse_main_conf_t *imcf);
ngx_int_t ngx_http_imburse_zone_add(ngx_conf_t *cf,
    ngx_http_imburse_main_conf_t *imcf);
/* in the master, once the configuration's cycle stands: it takes over */
void ngx_http_imburse_zone_commit(ngx_cycle_t *cycle);
void ngx_http_imburse_zone_init_process(ngx_http_imburse_main_conf_t *imcf);
void ngx_http_imburse_zone_stats(ngx_http_imburse_main_conf_t *imcf,
    ngx_http_imburse_zone_stats_t *zs);

/* ngx_http_imburse_store.c: the keys' */

ngx_int_t ngx_http_imburse_store_get(ngx_http_imburse_key_t *key,
    ngx_pool_t *pool, size_t prefix, int64_t now_ms,
    ngx_http_imburse_lookup_t *lk);

/*
 * obtained_ms: when the token was issued; from_fleet: not our exchange.
 * NGX_DECLINED: the token does not fit in the zone (logged); NGX_ABORT:
 * the claim is no longer the current one (the exchange was taken over),
 * nothing stored.
 */
ngx_int_t ngx_http_imburse_store_put(ngx_http_imburse_key_t *key,
    ngx_uint_t claim, ngx_str_t *token, int64_t expires_ms,
    int64_t obtained_ms, ngx_uint_t from_fleet, ngx_log_t *log);

/* a refresh point within the key's window, for a token of this lifetime;
 * without jitter, the earliest one */
int64_t ngx_http_imburse_store_refresh_at(ngx_http_imburse_key_t *key,
    int64_t expires_ms, int64_t obtained_ms, ngx_uint_t jitter);

/* the claim's owner is still at work: its deadline is timeout from now */
void ngx_http_imburse_store_extend(ngx_http_imburse_key_t *key,
    ngx_uint_t claim, ngx_msec_t timeout);

/*
 * A worker that used the key at used_ms asks whether the key's token is
 * due for a refresh without a request: NGX_OK, claimed (*claim); NGX_AGAIN,
 * ask again in *delay ms; NGX_DECLINED, no valid token, not used since the
 * token was stored, or queued behind the exchanges in flight.
 */
ngx_int_t ngx_http_imburse_store_refresh_due(ngx_http_imburse_key_t *key,
    int64_t now_ms, int64_t used_ms, ngx_uint_t *claim, ngx_msec_t *delay);

/* release the claim, with no new attempt before delay, and no failure */
void ngx_http_imburse_store_defer(ngx_http_imburse_key_t *key,
    ngx_uint_t claim, ngx_msec_t delay);

typedef enum {
    NGX_HTTP_IMBURSE_FLEET_HIT = 0,
    NGX_HTTP_IMBURSE_FLEET_LOCK_TAKEN,
    NGX_HTTP_IMBURSE_FLEET_LOCK_LOST,
    NGX_HTTP_IMBURSE_FLEET_ERROR,
    NGX_HTTP_IMBURSE_FLEET_OK
} ngx_http_imburse_fleet_event_e;

/*
 * Counts a fleet event.  After FLEET_ERROR the fleet is skipped for
 * "retry"; returns 1 when the event changes the fleet's state (up or
 * down), which is worth one log line.
 */
ngx_uint_t ngx_http_imburse_store_fleet(ngx_http_imburse_key_t *key,
    ngx_http_imburse_fleet_event_e event);
ngx_uint_t ngx_http_imburse_store_fleet_usable(ngx_http_imburse_key_t *key);

/* at_least: no new attempt before this (the identity's Retry-After) */
void ngx_http_imburse_store_fail(ngx_http_imburse_key_t *key,
    ngx_uint_t claim, int64_t now_ms, const char *cause,
    ngx_msec_t at_least);

void ngx_http_imburse_store_release(ngx_http_imburse_key_t *key,
    ngx_uint_t claim);

/*
 * An upstream 401 for the token: it ends the token if it still is the
 * current one (NGX_OK), once; a token stored less than "retry" ago is kept
 * and the 401 counted (NGX_BUSY, *first for the first such 401 of the
 * token); NGX_DECLINED: not the current token.
 */
ngx_int_t ngx_http_imburse_store_revoke(ngx_http_imburse_key_t *key,
    ngx_str_t *token, int64_t now_ms, ngx_uint_t *first);

/* the token was revoked by an upstream 401 (the last one revoked) */
ngx_uint_t ngx_http_imburse_store_revoked(ngx_http_imburse_key_t *key,
    ngx_str_t *token);

/*
 * The identity service's clock minus ours, in ms, as applied to signing and
 * to expiry decisions (0 until an offset of 2 s or more was seen); set
 * returns the previous one.
 */
int64_t ngx_http_imburse_store_clock(ngx_http_imburse_key_t *key);
int64_t ngx_http_imburse_store_set_clock(ngx_http_imburse_key_t *key,
    int64_t offset_ms);

/* changes whenever a token is stored or a claim ends: read without lock */
ngx_uint_t ngx_http_imburse_store_version(ngx_http_imburse_key_t *key);
ngx_msec_t ngx_http_imburse_store_claim_deadline(ngx_http_imburse_key_t *key);

/*
 * After an exchange ended: the next key queued behind the exchanges in
 * flight that this worker's configuration has, claimed for this worker
 * (*claim; *warm: it has a valid token).  NULL: none, or no slot free.
 */
ngx_http_imburse_key_t *ngx_http_imburse_store_dequeue(
    ngx_http_imburse_main_conf_t *imcf, ngx_slab_pool_t *shpool,
    ngx_uint_t *claim, ngx_uint_t *warm);

/* n consecutive keys' figures, one hold of the lock; now_ms on our clock */
void ngx_http_imburse_store_stats(ngx_http_imburse_key_t *keys,
    ngx_uint_t n, int64_t now_ms, ngx_http_imburse_key_stats_t *stats);


#endif /* _NGX_HTTP_IMBURSE_STORE_H_INCLUDED_ */
