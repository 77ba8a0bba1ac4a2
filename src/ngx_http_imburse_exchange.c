/*
 * The token exchange and the requests waiting for it.
 *
 * One request claims the exchange in the shared store and runs it as an
 * in-memory subrequest.  Requests of the same worker that need the token
 * meanwhile are queued on the key and resumed the moment it ends; queued
 * requests of other workers see the end through one short poll of the
 * store's version per key and worker.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"
#include "ngx_imburse_token.h"


#define NGX_HTTP_IMBURSE_POLL      4
/* an identity error body is logged at info level, this much of it */
#define NGX_HTTP_IMBURSE_BODY_LOG  256
/* a token response is a few kilobytes; the largest token is 16k */
#define NGX_HTTP_IMBURSE_BODY_MAX  32768


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


static ngx_int_t ngx_http_imburse_exchange_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static const char *ngx_http_imburse_exchange_result(ngx_http_request_t *sr,
    ngx_http_imburse_ctx_t *ctx, ngx_int_t rc, ngx_uint_t *status);
static void ngx_http_imburse_log_body(ngx_http_request_t *sr,
    ngx_http_imburse_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_http_imburse_exchange_body(ngx_http_request_t *sr,
    ngx_str_t *body);
static void ngx_http_imburse_wake(ngx_http_imburse_key_t *key);
static void ngx_http_imburse_wait_handler(ngx_event_t *ev);
static void ngx_http_imburse_poll_handler(ngx_event_t *ev);


ngx_int_t
ngx_http_imburse_exchange_start(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_uint_t claim, ngx_uint_t background)
{
    ngx_uint_t                   flags;
    ngx_http_request_t          *sr;
    ngx_http_imburse_ctx_t      *sctx;
    ngx_http_post_subrequest_t  *ps;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_ctx_t));
    if (sctx == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_imburse_exchange_done;
    ps->data = ctx;

    flags = NGX_HTTP_SUBREQUEST_IN_MEMORY
            | (background ? NGX_HTTP_SUBREQUEST_BACKGROUND
                          : NGX_HTTP_SUBREQUEST_WAITED);

    if (ngx_http_subrequest(r, &ctx->key->exchange, NULL, &sr, ps, flags)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* $imburse_hmac signs for the key of the exchange it is evaluated in */
    sctx->key = ctx->key;
    sctx->exchange = sr;
    ngx_http_set_ctx(sr, sctx, ngx_http_imburse_auth_module);

    ctx->exchange = sr;
    ctx->claim = claim;
    ctx->exchanging = 1;
    ctx->exchange_done = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "imburse key \"%V\": exchange started%s",
                   &ctx->key->name, background ? " in background" : "");

    return NGX_AGAIN;
}


/*
 * Runs when the subrequest is finalized, possibly more than once: the
 * first call records the result.  Errors of the exchange are the key's,
 * not the client's: they never terminate the client's request.
 */

static ngx_int_t
ngx_http_imburse_exchange_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_imburse_ctx_t  *ctx = data;

    ngx_uint_t               status;
    const char              *cause;

    if (rc == NGX_AGAIN || ctx->exchange_done) {
        goto done;
    }

    ctx->exchange_done = 1;

    if (rc == NGX_HTTP_CLIENT_CLOSED_REQUEST || sr->connection->error) {

        /* the client went away, the identity service did not fail */

        ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                      "imburse key \"%V\": exchange abandoned, the client "
                      "closed the connection", &ctx->key->name);

        ngx_http_imburse_store_release(ctx->key, ctx->claim);
        ngx_http_imburse_wake(ctx->key);
        goto done;
    }

    cause = ngx_http_imburse_exchange_result(sr, ctx, rc, &status);

    if (cause) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "imburse key \"%V\": token exchange failed: %s "
                      "(status %ui) from \"%V\"",
                      &ctx->key->name, cause, status, &ctx->key->exchange);

        ngx_http_imburse_store_fail(ctx->key, ctx->claim,
                                    ngx_http_imburse_now_ms(), cause);
    }

    ngx_http_imburse_wake(ctx->key);

done:

    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return NGX_OK;
    }

    return rc;
}


static const char *
ngx_http_imburse_exchange_result(ngx_http_request_t *sr,
    ngx_http_imburse_ctx_t *ctx, ngx_int_t rc, ngx_uint_t *status)
{
    int64_t              now_ms;
    ngx_str_t            body, token;
    imburse_token_t      tok;
    imburse_token_rc_t   trc;
    u_char               fp[IMBURSE_FP_HEX_LEN];

    *status = (rc >= NGX_HTTP_SPECIAL_RESPONSE) ? (ngx_uint_t) rc
                                                : sr->headers_out.status;

    if (rc == NGX_ERROR) {
        return "subrequest failed";
    }

    if (ngx_http_imburse_exchange_body(sr, &body) != NGX_OK) {
        return "response too big";
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE
        || *status < NGX_HTTP_OK || *status >= NGX_HTTP_SPECIAL_RESPONSE)
    {
        ngx_http_imburse_log_body(sr, ctx, &body);
        return "identity service error";
    }

    token.data = ngx_pnalloc(sr->pool, NGX_HTTP_IMBURSE_TOKEN_MAX);
    if (token.data == NULL) {
        return "out of memory";
    }

    now_ms = ngx_http_imburse_now_ms();

    trc = imburse_token_parse((char *) body.data, body.len,
                              now_ms, (char *) token.data,
                              NGX_HTTP_IMBURSE_TOKEN_MAX, &tok);

    if (trc != IMBURSE_TOKEN_OK) {
        return imburse_token_strerror(trc);
    }

    token.len = tok.token_len;

    if (ngx_http_imburse_store_put(ctx->key, ctx->claim, &token,
                                   tok.expires_ms, now_ms, sr->connection->log)
        != NGX_OK)
    {
        /* logged and recorded by the store */
        return NULL;
    }

    imburse_fingerprint((char *) fp, token.data, token.len);

    ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                  "imburse key \"%V\": new token %*s, expires in %L s",
                  &ctx->key->name, (size_t) IMBURSE_FP_HEX_LEN, fp,
                  (tok.expires_ms - now_ms) / 1000);

    return NULL;
}


/*
 * Only error bodies are logged, cut short and made printable: a 2xx body
 * holds a token, and a body may hold anything.
 */

static void
ngx_http_imburse_log_body(ngx_http_request_t *sr, ngx_http_imburse_ctx_t *ctx,
    ngx_str_t *body)
{
    size_t  len, i;
    u_char  text[NGX_HTTP_IMBURSE_BODY_LOG];

    if (sr->connection->log->log_level < NGX_LOG_INFO || body->len == 0) {
        return;
    }

    len = ngx_min(body->len, NGX_HTTP_IMBURSE_BODY_LOG);

    for (i = 0; i < len; i++) {
        text[i] = (body->data[i] >= 0x20 && body->data[i] < 0x7f)
                  ? body->data[i] : '.';
    }

    ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                  "imburse key \"%V\": identity error body%s: \"%*s\"",
                  &ctx->key->name, body->len > len ? " (truncated)" : "",
                  len, text);
}


/*
 * The exchange's response body is kept by our own body filter: nginx's
 * in-memory subrequests fail the client's connection when the body is
 * bigger than subrequest_output_buffer_size.  An error_page inside the
 * exchange location resets the subrequest's context, and its body then
 * takes nginx's own way into sr->out.
 */

static ngx_int_t
ngx_http_imburse_exchange_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                   n;
    ngx_buf_t               *b;
    ngx_chain_t             *cl;
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_auth_module);

    if (ctx == NULL || ctx->exchange != r) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_in_memory(b)) {

            /* a response written to a temporary file is too big anyway */

            if (ngx_buf_size(b) > 0) {
                ctx->body_too_big = 1;
                b->file_pos = b->file_last;
            }

            continue;
        }

        n = b->last - b->pos;

        if (n && !ctx->body_too_big) {

            if (ctx->body.data == NULL) {
                ctx->body.data = ngx_pnalloc(r->pool,
                                             NGX_HTTP_IMBURSE_BODY_MAX);
                if (ctx->body.data == NULL) {
                    return NGX_ERROR;
                }
            }

            if (n > NGX_HTTP_IMBURSE_BODY_MAX - ctx->body.len) {
                ctx->body_too_big = 1;

            } else {
                ngx_memcpy(ctx->body.data + ctx->body.len, b->pos, n);
                ctx->body.len += n;
            }
        }

        b->pos = b->last;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_exchange_body(ngx_http_request_t *sr, ngx_str_t *body)
{
    ngx_buf_t               *b;
    ngx_http_imburse_ctx_t  *sctx;

    sctx = ngx_http_get_module_ctx(sr, ngx_http_imburse_auth_module);

    if (sctx && sctx->exchange == sr) {
        *body = sctx->body;
        return sctx->body_too_big ? NGX_DECLINED : NGX_OK;
    }

    b = sr->out ? sr->out->buf : NULL;

    body->data = b ? b->pos : NULL;
    body->len = b ? (size_t) (b->last - b->pos) : 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_imburse_exchange_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_imburse_exchange_body_filter;

    return NGX_OK;
}


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


static void
ngx_http_imburse_wake(ngx_http_imburse_key_t *key)
{
    ngx_queue_t             *q;
    ngx_http_imburse_ctx_t  *ctx;

    while (!ngx_queue_empty(&key->waiters)) {
        q = ngx_queue_head(&key->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_imburse_ctx_t, queue);
        ctx->waiting = 0;

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
ngx_http_imburse_ctx_cleanup(void *data)
{
    ngx_http_imburse_ctx_t  *ctx = data;

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

    /* the client went away during its exchange: let another request run it */

    if (ctx->exchanging && !ctx->exchange_done) {
        ctx->exchange_done = 1;
        ngx_http_imburse_store_release(ctx->key, ctx->claim);
        ngx_http_imburse_wake(ctx->key);
    }
}
