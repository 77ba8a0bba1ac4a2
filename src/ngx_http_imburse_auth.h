/*
 * Types shared by the nginx glue of the Imburse auth module.
 */

#ifndef _NGX_HTTP_IMBURSE_AUTH_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_imburse_hmac.h"


#define NGX_HTTP_IMBURSE_TOKEN_MAX    16384
#define NGX_HTTP_IMBURSE_BEARER       "Bearer "
#define NGX_HTTP_IMBURSE_BEARER_LEN   (sizeof(NGX_HTTP_IMBURSE_BEARER) - 1)


typedef struct ngx_http_imburse_entry_s     ngx_http_imburse_entry_t;
typedef struct ngx_http_imburse_exchange_s  ngx_http_imburse_exchange_t;
typedef struct ngx_http_imburse_waiter_s    ngx_http_imburse_waiter_t;


typedef enum {
    NGX_HTTP_IMBURSE_NONE = 0,
    NGX_HTTP_IMBURSE_HIT,
    NGX_HTTP_IMBURSE_MISS,
    NGX_HTTP_IMBURSE_REFRESH,
    NGX_HTTP_IMBURSE_STALE,
    NGX_HTTP_IMBURSE_ERROR,
    NGX_HTTP_IMBURSE_FLEET
} ngx_http_imburse_status_e;


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  public_key;
    ngx_str_t                  private_key;     /* decoded bytes */
    ngx_str_t                  exchange;
    ngx_msec_t                 refresh;
    ngx_msec_t                 retry;
    ngx_msec_t                 timeout;
    u_char                     fingerprint[IMBURSE_SHA256_LEN];

    /* the fleet tier: its location, and the token's place in Redis */
    ngx_str_t                  fleet;
    ngx_str_t                  fleet_token_key;
    ngx_str_t                  fleet_lock_key;
    u_char                    *fleet_seal_key;  /* 32 bytes */

    ngx_slab_pool_t           *shpool;
    ngx_http_imburse_entry_t  *entry;           /* in the shared zone */

    /* the server whose location "exchange" is: exchanges run there */
    ngx_http_conf_ctx_t       *srv_ctx;

    /* per worker: requests of this worker waiting for a token */
    ngx_queue_t                waiters;
    ngx_event_t                poll;
    ngx_uint_t                 poll_version;
    ngx_queue_t                listed_link;     /* in imcf->waiting */
    unsigned                   listed:1;

    /*
     * per worker: when the key last served a request here, and the timer
     * that refreshes its token in the window even when no request comes
     */
    int64_t                    used_ms;
    ngx_event_t                refresh_timer;

    /*
     * per worker: the token last read from the zone, good while the zone's
     * version of the key is unchanged and before the refresh point
     */
    u_char                    *cache;
    size_t                     cache_len;
    size_t                     cache_size;
    ngx_uint_t                 cache_version;
    int64_t                    cache_expires_ms;
    int64_t                    cache_refresh_ms;
    unsigned                   cache_from_fleet:1;
    size_t                     token_hint;
} ngx_http_imburse_key_t;


typedef struct {
    ngx_array_t                keys;            /* ngx_http_imburse_key_t */
    ngx_hash_t                 keys_hash;       /* name -> index + 1 */
    ngx_hash_keys_arrays_t    *names;           /* while parsing */
    size_t                     zone_size;
    ngx_shm_zone_t            *shm_zone;
    ngx_uint_t                 generation;      /* the zone's, for this one */
    ngx_uint_t                 concurrency;     /* exchanges in flight */

    /* per worker: the keys that have (or had) requests waiting */
    ngx_queue_t                waiting;

    /* wake-up pipes, read and write end per worker slot; this worker's */
    ngx_fd_t                  *notify_fds;
    ngx_uint_t                 notify_n;
    ngx_connection_t          *notify_conn;
} ngx_http_imburse_main_conf_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_http_imburse_key_t    *key;
    ngx_str_t                  name;            /* resolved when merged */
    ngx_http_complex_value_t  *key_name;
    ngx_str_t                  conf_file;       /* where imburse_auth is */
    ngx_uint_t                 conf_line;

    /* an imburse_status location: it never inherits imburse_auth */
    unsigned                   status_page:1;

    /* per worker: a 401 of a request that did not send the token, logged */
    unsigned                   warned_unsent:1;
} ngx_http_imburse_loc_conf_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_http_imburse_key_t    *key;
    ngx_http_imburse_status_e  status;
    ngx_str_t                  token;
    int64_t                    expires_ms;

    /* the Authorization entry we set, and what the client had sent */
    ngx_table_elt_t           *auth_header;
    ngx_str_t                  client_auth;
    ngx_uint_t                 states;          /* upstream states before */
    ngx_http_imburse_loc_conf_t  *ilcf;         /* where it was injected */
    unsigned                   auth_saved:1;
    unsigned                   restored:1;
    unsigned                   revoke_checked:1;

    /* in the module's own request of an exchange, and its subrequests */
    ngx_http_imburse_exchange_t  *x;

    ngx_http_request_t        *exchange;        /* itself, for IDENTITY */
    void                      *redis_op;        /* for the fleet steps */
    ngx_str_t                  body;
    unsigned                   body_too_big:1;

    /* waiting for a token: allocated by the requests that do */
    ngx_http_imburse_waiter_t *waiter;

    /* an imburse_status request: the page being written */
    void                      *page;
} ngx_http_imburse_ctx_t;


struct ngx_http_imburse_waiter_s {
    ngx_event_t                event;
    ngx_queue_t                queue;
    ngx_http_request_t        *request;
    ngx_http_imburse_key_t    *key;
    ngx_msec_t                 give_up;
    ngx_http_event_handler_pt  read_handler;    /* the request's, restored */
    unsigned                   waiting:1;
};


extern ngx_module_t  ngx_http_imburse_auth_module;


/* ngx_http_imburse_keys.c */
ngx_int_t ngx_http_imburse_keys_add(ngx_conf_t *cf,
    ngx_http_imburse_main_conf_t *imcf, ngx_str_t *name);
ngx_int_t ngx_http_imburse_keys_hash(ngx_conf_t *cf,
    ngx_http_imburse_main_conf_t *imcf);
ngx_http_imburse_key_t *ngx_http_imburse_find_key(
    ngx_http_imburse_main_conf_t *imcf, ngx_str_t *name);

char *ngx_http_imburse_api_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_imburse_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_imburse_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_imburse_revoke_init(ngx_conf_t *cf);
void ngx_http_imburse_revoke_check(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx);

/* ngx_http_imburse_ctx.c */
ngx_http_imburse_ctx_t *ngx_http_imburse_create_ctx(ngx_http_request_t *r,
    ngx_http_imburse_key_t *key);
void ngx_http_imburse_ctx_cleanup(void *data);
ngx_http_imburse_ctx_t *ngx_http_imburse_find_ctx(ngx_http_request_t *r);
ngx_http_imburse_ctx_t *ngx_http_imburse_get_ctx(ngx_http_request_t *r);

/* token->data must have NGX_HTTP_IMBURSE_BEARER_LEN bytes before it */
ngx_int_t ngx_http_imburse_set_authorization(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_str_t *token);
void ngx_http_imburse_restore_authorization(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx);
ngx_int_t ngx_http_imburse_private_headers(ngx_http_request_t *r);
ngx_http_imburse_ctx_t *ngx_http_imburse_injected_above(
    ngx_http_request_t *r);
ngx_int_t ngx_http_imburse_client_headers(ngx_http_request_t *r,
    ngx_str_t *client_auth);
ngx_int_t ngx_http_imburse_unavailable(ngx_http_request_t *r,
    ngx_msec_t retry_after);


#endif /* _NGX_HTTP_IMBURSE_AUTH_H_INCLUDED_ */
