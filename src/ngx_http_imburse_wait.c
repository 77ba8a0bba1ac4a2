/*
 * Requests waiting for a token, without blocking their worker.
 *
 * Requests are queued on the key in their worker.  The worker that ends an
 * exchange resumes its own at once and wakes the other workers through
 * their pipes (ngx_http_imburse_notify.c), which resume theirs when they
 * see the key's version in the zone has changed.  A timer per key and
 * worker, whatever the number of waiting requests, is the safety net.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"


/*
 * How often a worker with waiting requests looks at the zone itself: a
 * safety net with the wake-up pipes; without them (one worker, or no pipe)
 * the longest a request waits after the token arrived.
 */
#define NGX_HTTP_IMBURSE_POLL_NET   100
#define NGX_HTTP_IMBURSE_POLL       1


static ngx_msec_t ngx_http_imburse_poll_interval(void);
static void ngx_http_imburse_wait_handler(ngx_event_t *ev);
static void ngx_http_imburse_poll_handler(ngx_event_t *ev);


ngx_http_imburse_waiter_t *
ngx_http_imburse_waiter(ngx_http_request_t *r, ngx_http_imburse_ctx_t *ctx)
{
    ngx_http_imburse_waiter_t  *w;

    if (ctx->waiter) {
        return ctx->waiter;
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_waiter_t));
    if (w == NULL) {
        return NULL;
    }

    w->event.handler = ngx_http_imburse_wait_handler;
    w->event.data = w;
    w->event.log = r->connection->log;
    w->request = r;
    w->key = ctx->key;

    ctx->waiter = w;

    return w;
}


ngx_int_t
ngx_http_imburse_wait(ngx_http_request_t *r, ngx_http_imburse_ctx_t *ctx,
    ngx_msec_t deadline, ngx_uint_t version, ngx_uint_t remote)
{
    ngx_msec_int_t                 delay;
    ngx_http_imburse_key_t        *key;
    ngx_http_imburse_waiter_t     *w;
    ngx_http_imburse_main_conf_t  *imcf;

    key = ctx->key;
    w = ctx->waiter;

    /* the client left before the wait began: its event has come and gone */

    if (r->connection->read->pending_eof || r->connection->error) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "client prematurely closed connection while waiting "
                      "for a token");
        return NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    delay = (ngx_msec_int_t) (deadline - ngx_current_msec);
    delay = ngx_max(delay, 1);

    ngx_add_timer(&w->event, (ngx_msec_t) delay);

    if (!key->listed) {
        /* the keys another worker's wake-up looks at */
        imcf = ngx_http_get_module_main_conf(r, ngx_http_imburse_auth_module);
        ngx_queue_insert_tail(&imcf->waiting, &key->listed_link);
        key->listed = 1;
    }

    ngx_queue_insert_tail(&key->waiters, &w->queue);
    w->waiting = 1;

    /*
     * As limit_req does with a delayed request: a client that leaves
     * (hang-up, HTTP/2 stream reset) ends the request now, and it never
     * goes upstream later.
     */

    w->read_handler = r->read_event_handler;
    r->read_event_handler = ngx_http_test_reading;

    /*
     * An exchange of this worker wakes its requests itself; one of another
     * worker (or one to come, for a queued key) is watched by the timer.
     */

    if (remote && !key->poll.timer_set) {
        key->poll_version = version;
        ngx_add_timer(&key->poll, ngx_http_imburse_poll_interval());
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "imburse key \"%V\": waiting up to %M ms",
                   &key->name, (ngx_msec_t) delay);

    return NGX_AGAIN;
}


void
ngx_http_imburse_wake_all(ngx_http_imburse_key_t *key)
{
    ngx_http_imburse_wake(key);
    ngx_http_imburse_notify_workers();
}


/* a claim given back: the waiting requests, in every worker, may take it */

void
ngx_http_imburse_release(ngx_http_imburse_key_t *key, ngx_uint_t claim)
{
    ngx_http_imburse_store_release(key, claim);
    ngx_http_imburse_wake_all(key);
    ngx_http_imburse_exchange_dequeue();
}


void
ngx_http_imburse_wake_if_changed(ngx_http_imburse_key_t *key, char *by)
{
    ngx_uint_t  version;

    if (ngx_queue_empty(&key->waiters)) {
        return;
    }

    version = ngx_http_imburse_store_version(key);

    if (version == key->poll_version) {
        return;
    }

    key->poll_version = version;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, key->poll.log, 0,
                   "imburse key \"%V\": waiting requests woken by %s",
                   &key->name, by);

    ngx_http_imburse_wake(key);
}


void
ngx_http_imburse_wake(ngx_http_imburse_key_t *key)
{
    ngx_queue_t                *q;
    ngx_http_imburse_waiter_t  *w;

    while (!ngx_queue_empty(&key->waiters)) {
        q = ngx_queue_head(&key->waiters);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_http_imburse_waiter_t, queue);
        w->waiting = 0;

        /* a timer expiring in the same cycle would run the request twice */

        if (w->event.timer_set) {
            ngx_del_timer(&w->event);
        }

        ngx_post_event(&w->event, &ngx_posted_events);
    }
}


static void
ngx_http_imburse_wait_handler(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_imburse_waiter_t  *w;

    w = ev->data;
    r = w->request;
    c = r->connection;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (w->waiting) {
        ngx_queue_remove(&w->queue);
        w->waiting = 0;
    }

    r->read_event_handler = w->read_handler;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "imburse key \"%V\": wait ended", &w->key->name);

    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_imburse_poll_handler(ngx_event_t *ev)
{
    ngx_http_imburse_key_t  *key;

    key = ev->data;

    ngx_http_imburse_wake_if_changed(key, "the zone timer");

    if (!ngx_queue_empty(&key->waiters)) {
        ngx_add_timer(ev, ngx_http_imburse_poll_interval());
    }
}


static ngx_msec_t
ngx_http_imburse_poll_interval(void)
{
    return ngx_http_imburse_notify_active() ? NGX_HTTP_IMBURSE_POLL_NET
                                            : NGX_HTTP_IMBURSE_POLL;
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
    ngx_http_imburse_waiter_t  *w;

    w = ctx->waiter;

    if (w == NULL) {
        return;
    }

    if (w->waiting) {
        ngx_queue_remove(&w->queue);
        w->waiting = 0;
    }

    if (w->event.timer_set) {
        ngx_del_timer(&w->event);
    }

    if (w->event.posted) {
        ngx_delete_posted_event(&w->event);
    }
}
