/*
 * The token exchange: a chain of background subrequests run for one key
 * from a request of the module's own, started by the request or the timer
 * that claimed the key's exchange.  Without a fleet it is one subrequest to the
 * key's exchange location; with a fleet it first looks for the fleet's copy
 * of the token in Redis, takes the fleet's lock, exchanges, and shares the
 * new token.  Requests that need the token meanwhile wait (see
 * ngx_http_imburse_wait.c).
 */

#ifndef _NGX_HTTP_IMBURSE_EXCHANGE_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_EXCHANGE_H_INCLUDED_


#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_redis.h"


/* how often an instance without a token reads the fleet's copy */
#define NGX_HTTP_IMBURSE_FLEET_POLL  50


typedef enum {
    NGX_HTTP_IMBURSE_STEP_IDENTITY = 0,   /* exchange with the identity API */
    NGX_HTTP_IMBURSE_STEP_GET,            /* read the fleet's copy */
    NGX_HTTP_IMBURSE_STEP_LOCK,           /* take the fleet's lock */
    NGX_HTTP_IMBURSE_STEP_PUT,            /* share the token, unlock */
    NGX_HTTP_IMBURSE_STEP_UNLOCK,         /* unlock after a failure */
    NGX_HTTP_IMBURSE_STEP_WAIT,           /* another instance exchanges */
    NGX_HTTP_IMBURSE_STEP_END
} ngx_http_imburse_step_e;


struct ngx_http_imburse_exchange_s {
    ngx_http_request_t           *request;    /* the module's own */
    ngx_http_imburse_key_t       *key;
    ngx_uint_t                    claim;      /* in the local store */
    ngx_http_imburse_step_e       step;
    ngx_http_request_t           *sr;         /* the step's subrequest */
    ngx_event_t                   next;       /* posted: the next step */
    ngx_event_t                   deadline;   /* the exchange's bound */
    ngx_queue_t                   queue;      /* the worker's exchanges */

    /* the fleet tier */
    ngx_http_imburse_redis_op_t   op;
    ngx_event_t                   timer;      /* STEP_WAIT */
    ngx_msec_t                    give_up;    /* waiting for the fleet */
    u_char                        owner[IMBURSE_NONCE_LEN];
    ngx_str_t                     token;      /* what IDENTITY obtained */
    int64_t                       expires_ms;
    int64_t                       obtained_ms;

    /* the identity step: when it was asked, with which clock offset */
    int64_t                       sent_ms;
    int64_t                       signed_offset_ms;

    unsigned                      refresh:1;  /* a valid token exists */
    unsigned                      locked:1;   /* we hold the fleet lock */
    unsigned                      signed_:1;  /* $imburse_hmac evaluated */
    unsigned                      resigned:1; /* signed again, clock fixed */
};


ngx_int_t ngx_http_imburse_exchange_init(ngx_conf_t *cf);

/* the claim is the exchange's from now on, whatever the result */
ngx_int_t ngx_http_imburse_exchange_start(ngx_http_imburse_key_t *key,
    ngx_uint_t claim, ngx_uint_t refresh, ngx_log_t *log);

/* the worker exits: the exchanges still running end with it */
void ngx_http_imburse_exchange_exit(void);

/* a slot is free: start the exchanges of queued keys */
void ngx_http_imburse_exchange_dequeue(void);

/* ngx_http_imburse_fleet.c */
ngx_http_imburse_step_e ngx_http_imburse_fleet_first(
    ngx_http_imburse_exchange_t *x);
ngx_int_t ngx_http_imburse_fleet_prepare(ngx_http_imburse_exchange_t *x);
ngx_http_imburse_step_e ngx_http_imburse_fleet_done(
    ngx_http_imburse_exchange_t *x, ngx_int_t rc);
ngx_http_imburse_step_e ngx_http_imburse_fleet_after_identity(
    ngx_http_imburse_exchange_t *x, ngx_uint_t ok);

/* ngx_http_imburse_wait.c */
ngx_http_imburse_waiter_t *ngx_http_imburse_waiter(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx);
/* remote: the exchange waited for is not this worker's */
ngx_int_t ngx_http_imburse_wait(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_msec_t deadline, ngx_uint_t version,
    ngx_uint_t remote);
void ngx_http_imburse_wake(ngx_http_imburse_key_t *key);
void ngx_http_imburse_wake_all(ngx_http_imburse_key_t *key);
void ngx_http_imburse_release(ngx_http_imburse_key_t *key, ngx_uint_t claim);
void ngx_http_imburse_wake_if_changed(ngx_http_imburse_key_t *key,
    char *by);
void ngx_http_imburse_key_init_waiters(ngx_http_imburse_key_t *key,
    ngx_log_t *log);
void ngx_http_imburse_wait_cleanup(ngx_http_imburse_ctx_t *ctx);

/* ngx_http_imburse_refresh.c */
void ngx_http_imburse_refresh_init(ngx_http_imburse_key_t *key,
    ngx_log_t *log);
/* the key served a request; its refresh is due in due_ms */
void ngx_http_imburse_refresh_watch(ngx_http_imburse_key_t *key,
    int64_t due_ms);

/* ngx_http_imburse_notify.c */
ngx_int_t ngx_http_imburse_notify_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_http_imburse_notify_init_process(ngx_cycle_t *cycle);
void ngx_http_imburse_notify_exit_process(ngx_cycle_t *cycle);
void ngx_http_imburse_notify_workers(void);
ngx_uint_t ngx_http_imburse_notify_active(void);


#endif /* _NGX_HTTP_IMBURSE_EXCHANGE_H_INCLUDED_ */
