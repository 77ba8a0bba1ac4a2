/*
 * The token store: one shared-memory zone for all keys and all workers.
 * It holds each key's token and expiry, the fingerprint of the key that
 * obtained it, the single-flight claim on the exchange and the counters.
 * Everything else reaches the zone through this interface only.
 */

#ifndef _NGX_HTTP_IMBURSE_STORE_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_STORE_H_INCLUDED_


#include "ngx_http_imburse_auth.h"


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
    ngx_uint_t   claim;           /* with EXCHANGE and USE_REFRESH */
    ngx_msec_t   wait;            /* WAIT: claim deadline, BACKOFF: delay */
    ngx_pid_t    taken_from;      /* the claim's owner timed out */
    ngx_uint_t   version;         /* ngx_http_imburse_store_version() */
    unsigned     stale:1;         /* the last refresh failed */
} ngx_http_imburse_lookup_t;


typedef struct {
    ngx_uint_t   exchanges;
    ngx_uint_t   failures;
    ngx_uint_t   consecutive_failures;
    ngx_uint_t   revocations;
    int64_t      expires_ms;
    int64_t      last_exchange_ms;
    u_char       last_error[32];
    u_char       token_fp[IMBURSE_FP_HEX_LEN];
    unsigned     valid:1;
    unsigned     in_flight:1;
} ngx_http_imburse_key_stats_t;


ngx_int_t ngx_http_imburse_store_add_zone(ngx_conf_t *cf,
    ngx_http_imburse_main_conf_t *imcf);

ngx_int_t ngx_http_imburse_store_get(ngx_http_imburse_key_t *key,
    ngx_pool_t *pool, size_t prefix, int64_t now_ms,
    ngx_http_imburse_lookup_t *lk);

ngx_int_t ngx_http_imburse_store_put(ngx_http_imburse_key_t *key,
    ngx_uint_t claim, ngx_str_t *token, int64_t expires_ms, int64_t now_ms,
    ngx_log_t *log);

void ngx_http_imburse_store_fail(ngx_http_imburse_key_t *key,
    ngx_uint_t claim, int64_t now_ms, const char *cause);

void ngx_http_imburse_store_release(ngx_http_imburse_key_t *key,
    ngx_uint_t claim);

/* ends the token if it still is this one: NGX_OK when it was */
ngx_int_t ngx_http_imburse_store_revoke(ngx_http_imburse_key_t *key,
    ngx_str_t *token);

/* changes whenever a token is stored or a claim ends: read without lock */
ngx_uint_t ngx_http_imburse_store_version(ngx_http_imburse_key_t *key);
ngx_msec_t ngx_http_imburse_store_claim_deadline(ngx_http_imburse_key_t *key);

void ngx_http_imburse_store_zone_usage(ngx_http_imburse_main_conf_t *imcf,
    size_t *size, size_t *free);

void ngx_http_imburse_store_stats(ngx_http_imburse_key_t *key,
    int64_t now_ms, ngx_http_imburse_key_stats_t *st);


#endif /* _NGX_HTTP_IMBURSE_STORE_H_INCLUDED_ */
