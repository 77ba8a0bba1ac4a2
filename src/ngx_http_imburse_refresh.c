/*
 * Refresh without traffic.  A worker that served a request with a key's
 * token watches that token's refresh point with a timer: when it comes
 * and no request has started the refresh, the worker claims it through
 * the zone, as a request would, and runs the exchange itself.  So the
 * first request after a quiet period finds a fresh token.  The timer is
 * armed by use only: a key that served no request since its token was
 * stored is not refreshed, and idle keys cost no exchange.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"


static void ngx_http_imburse_refresh_handler(ngx_event_t *ev);


void
ngx_http_imburse_refresh_init(ngx_http_imburse_key_t *key, ngx_log_t *log)
{
    ngx_memzero(&key->refresh_timer, sizeof(ngx_event_t));

    key->refresh_timer.handler = ngx_http_imburse_refresh_handler;
    key->refresh_timer.data = key;
    key->refresh_timer.log = log;

    /* a worker shutting down does not wait for it */
    key->refresh_timer.cancelable = 1;
}


void
ngx_http_imburse_refresh_watch(ngx_http_imburse_key_t *key, int64_t due_ms)
{
    /* on our clock, as the zone's "stored" time is */
    key->used_ms = ngx_http_imburse_now_ms();

    if (!key->refresh_timer.timer_set) {
        ngx_add_timer(&key->refresh_timer, (ngx_msec_t) ngx_max(due_ms, 1));
    }
}


static void
ngx_http_imburse_refresh_handler(ngx_event_t *ev)
{
    ngx_int_t                rc;
    ngx_msec_t               delay;
    ngx_uint_t               claim;
    ngx_http_imburse_key_t  *key;

    key = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    rc = ngx_http_imburse_store_refresh_due(key,
                                            ngx_http_imburse_key_now_ms(key),
                                            key->used_ms, &claim, &delay);

    if (rc == NGX_AGAIN) {
        /* not yet, or another worker's exchange is on, or failures wait */
        ngx_add_timer(ev, ngx_max(delay, 1));
        return;
    }

    if (rc != NGX_OK) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "imburse key \"%V\": refreshing the token without a "
                  "request", &key->name);

    if (ngx_http_imburse_exchange_start(key, claim, 1, ev->log) != NGX_OK) {
        ngx_http_imburse_release(key, claim);
    }
}
