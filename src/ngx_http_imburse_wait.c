/*
 * Requests waiting for a token, without blocking their worker.
 *
 * Requests of the worker that runs the exchange are queued on the key and
 * resumed the moment the store changes; queued requests of other workers
 * see the change through one short poll of the store's version per key and
 * worker, whatever the number of waiting requests.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"


#define NGX_HTTP_IMBURSE_POLL  4


static void ngx_http_imburse_wait_handler(ngx_event_t *ev);
static void ngx_http_imburse_poll_handler(ngx_event_t *ev);


ngx_int_t
ngx_http_imburse_wait(ngx_http_request_t *r, ngx_http_imburse_ctx_t *ctx,
    ngx_msec_t deadline, ngx_uint_t version)
{
    ngx_msec_int_t           delay;
    ngx_http_imburse_key_t  *key;

    key = ctx->key;

    if (ctx->wait.handler == NULL) {
        ctx->wait.handler = ngx_http_imburse_wait_handler;
        ctx->wait.data = r;
        ctx->wait.log = r->connection->log;
    }

    delay = (ngx_msec_int_t) (deadline - ngx_current_msec);

    ngx_add_timer(&ctx->wait, delay > 0 ? (ngx_msec_t) delay : 1);

    ngx_queue_insert_tail(&key->waiters, &ctx->queue);
    ctx->waiting = 1;

    if (!key->poll.timer_set) {
        key->poll_version = version;
        ngx_add_timer(&key->poll, NGX_HTTP_IMBURSE_POLL);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "imburse key \"%V\": waiting up to %M ms",
                   &key->name, (ngx_msec_t) delay);

    return NGX_AGAIN;
}


void
ngx_http_imburse_wake(ngx_http_imburse_key_t *key)
{
    ngx_queue_t             *q;
    ngx_http_imburse_ctx_t  *ctx;

    while (!ngx_queue_empty(&key->waiters)) {
        q = ngx_queue_head(&key->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_imburse_ctx_t, queue);
        ctx->waiting = 0;

        /* a timer expiring in the same cycle would run the request twice */

        if (ctx->wait.timer_set) {
            ngx_del_timer(&ctx->wait);
        }

        ngx_post_event(&ctx->wait, &ngx_posted_events);
    }
}


static void
ngx_http_imburse_wait_handler(ngx_event_t *ev)
{
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_http_imburse_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;

    ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_auth_module);

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (ctx->waiting) {
        ngx_queue_remove(&ctx->queue);
        ctx->waiting = 0;
    }

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "imburse key \"%V\": wait ended", &ctx->key->name);

    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_imburse_poll_handler(ngx_event_t *ev)
{
    ngx_uint_t               version;
    ngx_http_imburse_key_t  *key;

    key = ev->data;

    if (ngx_queue_empty(&key->waiters)) {
        return;
    }

    version = ngx_http_imburse_store_version(key);

    if (version != key->poll_version) {
        key->poll_version = version;
        ngx_http_imburse_wake(key);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_IMBURSE_POLL);
}


void
ngx_http_imburse_key_init_waiters(ngx_http_imburse_key_t *key,
    ngx_log_t *log)
{
    ngx_queue_init(&key->waiters);

    ngx_memzero(&key->poll, sizeof(ngx_event_t));
    key->poll.handler = ngx_http_imburse_poll_handler;
    key->poll.data = key;
    key->poll.log = log;
    key->poll.cancelable = 1;
}


void
ngx_http_imburse_wait_cleanup(ngx_http_imburse_ctx_t *ctx)
{
    if (ctx->waiting) {
        ngx_queue_remove(&ctx->queue);
        ctx->waiting = 0;
    }

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    if (ctx->wait.posted) {
        ngx_delete_posted_event(&ctx->wait);
    }
}
