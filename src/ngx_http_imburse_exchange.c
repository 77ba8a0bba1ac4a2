/*
 * The token exchange: a chain of background subrequests, one step at a
 * time, each started when the previous one ended, from a request of the
 * module's own (ngx_http_imburse_owned.c) that no client can end.  The
 * steps of the fleet tier are in ngx_http_imburse_fleet.c; the identity
 * step is here.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_owned.h"
#include "ngx_http_imburse_store.h"
#include "ngx_imburse_errbody.h"
#include "ngx_imburse_token.h"


/* what the error line shows of an identity error body, at most */
#define NGX_HTTP_IMBURSE_BODY_LOG  160
/* a token response is a few kilobytes; the largest token is 16k */
#define NGX_HTTP_IMBURSE_BODY_MAX  32768
#define NGX_HTTP_IMBURSE_LIFETIME_MAX  (24 * 60 * 60 * 1000LL)
/* a 401 with the identity's clock this far from the one signed with */
#define NGX_HTTP_IMBURSE_RESIGN  60000


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;

/* the exchanges this worker runs, for its exit */
static ngx_queue_t  ngx_http_imburse_exchanges;


static ngx_int_t ngx_http_imburse_exchange_run(ngx_http_imburse_exchange_t *x);
static ngx_int_t ngx_http_imburse_exchange_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_imburse_exchange_event(ngx_http_imburse_exchange_t *x,
    ngx_event_t *ev, ngx_event_handler_pt handler);
static void ngx_http_imburse_exchange_bound(ngx_http_imburse_exchange_t *x,
    ngx_msec_t timeout);
static void ngx_http_imburse_exchange_next(ngx_event_t *ev);
static ngx_http_imburse_step_e ngx_http_imburse_identity_done(
    ngx_http_imburse_exchange_t *x, ngx_http_request_t *sr, ngx_int_t rc);
static const char *ngx_http_imburse_identity_result(
    ngx_http_imburse_exchange_t *x, ngx_http_request_t *sr, ngx_int_t rc,
    ngx_uint_t *status, ngx_str_t *detail);
static void ngx_http_imburse_error_detail(ngx_http_request_t *sr,
    ngx_str_t *body, ngx_str_t *detail);
static ngx_int_t ngx_http_imburse_exchange_body(ngx_http_request_t *sr,
    ngx_str_t *body);
static void ngx_http_imburse_exchange_timer(ngx_event_t *ev);
static void ngx_http_imburse_exchange_timeout(ngx_event_t *ev);
static void ngx_http_imburse_exchange_close(ngx_http_imburse_exchange_t *x);


/* a result that is no longer this exchange's to store */
static const char  ngx_http_imburse_superseded[] = "superseded";


ngx_int_t
ngx_http_imburse_exchange_start(ngx_http_imburse_key_t *key, ngx_uint_t claim,
    ngx_uint_t refresh, ngx_log_t *log)
{
    ngx_http_request_t           *r;
    ngx_http_imburse_ctx_t       *ctx;
    ngx_http_imburse_exchange_t  *x;

    r = ngx_http_imburse_owned_create(key->srv_ctx, "imburse exchange of key",
                                      &key->name, log);
    if (r == NULL) {
        return NGX_ERROR;
    }

    x = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_exchange_t));
    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_ctx_t));

    if (x == NULL || ctx == NULL) {
        ngx_http_imburse_owned_close(r);
        return NGX_ERROR;
    }

    x->request = r;
    x->key = key;
    x->claim = claim;
    x->refresh = refresh;

    ngx_http_imburse_exchange_event(x, &x->next,
                                    ngx_http_imburse_exchange_next);
    ngx_http_imburse_exchange_event(x, &x->timer,
                                    ngx_http_imburse_exchange_timer);
    ngx_http_imburse_exchange_event(x, &x->deadline,
                                    ngx_http_imburse_exchange_timeout);

    ctx->key = key;
    ctx->x = x;
    ngx_http_set_ctx(r, ctx, ngx_http_imburse_auth_module);

    if (ngx_http_imburse_exchanges.next == NULL) {
        ngx_queue_init(&ngx_http_imburse_exchanges);
    }

    ngx_queue_insert_tail(&ngx_http_imburse_exchanges, &x->queue);

    x->step = ngx_http_imburse_fleet_first(x);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "imburse key \"%V\": exchange started%s",
                   &key->name, refresh ? " ahead of expiry" : "");

    if (x->step == NGX_HTTP_IMBURSE_STEP_GET) {
        /* the fleet's steps give way to an exchange of our own then */
        ngx_http_imburse_exchange_bound(x, x->give_up - ngx_current_msec);
    }

    /* the first step starts outside the handler of whoever started it */

    ngx_post_event(&x->next, &ngx_posted_events);

    return NGX_OK;
}


static void
ngx_http_imburse_exchange_event(ngx_http_imburse_exchange_t *x,
    ngx_event_t *ev, ngx_event_handler_pt handler)
{
    ev->handler = handler;
    ev->data = x;
    ev->log = x->request->connection->log;
}


/*
 * The exchange ends within this much from now, and its claim lasts as
 * long: the deadline is set when the identity service is asked, and for
 * a fleet's steps before it (until the instance would exchange alone) and
 * after it (sharing the token).
 */

static void
ngx_http_imburse_exchange_bound(ngx_http_imburse_exchange_t *x,
    ngx_msec_t timeout)
{
    ngx_add_timer(&x->deadline, timeout);
    ngx_http_imburse_store_extend(x->key, x->claim, timeout);
}


static void
ngx_http_imburse_exchange_next(ngx_event_t *ev)
{
    ngx_http_imburse_exchange_t  *x;

    x = ev->data;

    if (x->step == NGX_HTTP_IMBURSE_STEP_END) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "imburse key \"%V\": exchange ended", &x->key->name);
        ngx_http_imburse_exchange_close(x);
        return;
    }

    if (ngx_http_imburse_exchange_run(x) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "imburse key \"%V\": token exchange could not start "
                      "a subrequest to \"%V\"", &x->key->name,
                      x->step == NGX_HTTP_IMBURSE_STEP_IDENTITY
                      ? &x->key->exchange : &x->key->fleet);
        ngx_http_imburse_release(x->key, x->claim);
        ngx_http_imburse_exchange_close(x);
        return;
    }

    ngx_http_imburse_owned_run(x->request);
}


static ngx_int_t
ngx_http_imburse_exchange_run(ngx_http_imburse_exchange_t *x)
{
    ngx_str_t                   *uri;
    ngx_http_request_t          *sr;
    ngx_http_imburse_ctx_t      *sctx;
    ngx_http_post_subrequest_t  *ps;

    if (x->step == NGX_HTTP_IMBURSE_STEP_WAIT) {
        ngx_add_timer(&x->timer, NGX_HTTP_IMBURSE_FLEET_POLL);
        return NGX_OK;
    }

    ps = ngx_palloc(x->request->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    sctx = ngx_pcalloc(x->request->pool, sizeof(ngx_http_imburse_ctx_t));
    if (sctx == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_imburse_exchange_done;
    ps->data = x;

    if (x->step == NGX_HTTP_IMBURSE_STEP_IDENTITY) {
        uri = &x->key->exchange;
        ngx_http_imburse_exchange_bound(x, x->key->timeout);

    } else {
        if (ngx_http_imburse_fleet_prepare(x) != NGX_OK) {
            return NGX_ERROR;
        }

        if (x->step == NGX_HTTP_IMBURSE_STEP_PUT
            || x->step == NGX_HTTP_IMBURSE_STEP_UNLOCK)
        {
            ngx_http_imburse_exchange_bound(x, x->key->timeout);
        }

        uri = &x->key->fleet;
        sctx->redis_op = &x->op;
    }

    if (ngx_http_subrequest(x->request, uri, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_IN_MEMORY
                            |NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* $imburse_hmac signs for the key of the exchange it is evaluated in */

    sctx->key = x->key;
    sctx->x = x;

    if (x->step == NGX_HTTP_IMBURSE_STEP_IDENTITY) {
        sctx->exchange = sr;
        x->signed_ = 0;
        x->sent_ms = ngx_http_imburse_now_ms();
    }

    ngx_http_set_ctx(sr, sctx, ngx_http_imburse_auth_module);

    x->sr = sr;

    return NGX_OK;
}


/*
 * Runs when a step's subrequest is finalized, possibly more than once:
 * the first call counts.  The next step starts from a posted event, once
 * nginx is done with this subrequest.  What it returns must never end
 * the module's own request (ngx_http_imburse_owned.c).
 */

static ngx_int_t
ngx_http_imburse_exchange_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_imburse_exchange_t  *x = data;

    /*
     * A body filter's NGX_ERROR (nginx's "too big subrequest response"
     * after an X-Accel-Redirect, for one) marks the connection, and nginx
     * would then terminate the module's own request and free it under the
     * exchange.  The connection has no socket that could have failed: the
     * error is this step's, and is judged as one below.
     */

    sr->connection->error = 0;

    if (rc != NGX_AGAIN && x->sr == sr) {
        x->sr = NULL;

        x->step = (x->step == NGX_HTTP_IMBURSE_STEP_IDENTITY)
                  ? ngx_http_imburse_identity_done(x, sr, rc)
                  : ngx_http_imburse_fleet_done(x, rc);

        ngx_post_event(&x->next, &ngx_posted_events);
    }

    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return NGX_OK;
    }

    return rc;
}


static ngx_http_imburse_step_e
ngx_http_imburse_identity_done(ngx_http_imburse_exchange_t *x,
    ngx_http_request_t *sr, ngx_int_t rc)
{
    int64_t      moved;
    ngx_str_t    detail;
    ngx_uint_t   status;
    const char  *cause;

    ngx_str_null(&detail);

    /* every answer tells the identity service's time, errors included */

    (void) ngx_http_imburse_clock_measure(x->key, sr, x->sent_ms,
                                          ngx_http_imburse_now_ms());
    moved = ngx_http_imburse_store_clock(x->key) - x->signed_offset_ms;

    cause = ngx_http_imburse_identity_result(x, sr, rc, &status, &detail);

    if (cause == ngx_http_imburse_superseded) {
        ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                      "imburse key \"%V\": exchange answered after another "
                      "took it over, its token is not used", &x->key->name);
        return ngx_http_imburse_fleet_after_identity(x, 0);
    }

    if (cause && status == NGX_HTTP_UNAUTHORIZED && !x->resigned
        && (moved > NGX_HTTP_IMBURSE_RESIGN
            || -moved > NGX_HTTP_IMBURSE_RESIGN))
    {
        /* signed with a clock the identity service rejects: once again */

        ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                      "imburse key \"%V\": the identity service refused a "
                      "signature made %L s off its clock, signing again "
                      "with its time", &x->key->name, moved / 1000);

        x->resigned = 1;

        return NGX_HTTP_IMBURSE_STEP_IDENTITY;
    }

    if (cause) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "imburse key \"%V\": token exchange failed: %s "
                      "(status %ui%s%V) from \"%V\"",
                      &x->key->name, cause, status, detail.len ? ", " : "",
                      &detail, &x->key->exchange);

        ngx_http_imburse_store_fail(x->key, x->claim,
                                    ngx_http_imburse_now_ms(), cause,
                                    ngx_http_imburse_retry_after(x->key, sr,
                                                                 status));
    }

    /* the waiting requests go on now, whatever the fleet steps left */

    ngx_http_imburse_wake_all(x->key);

    return ngx_http_imburse_fleet_after_identity(x, x->token.len != 0);
}


static const char *
ngx_http_imburse_identity_result(ngx_http_imburse_exchange_t *x,
    ngx_http_request_t *sr, ngx_int_t rc, ngx_uint_t *status,
    ngx_str_t *detail)
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

    if (!x->signed_) {
        return "the exchange location does not send $imburse_hmac "
               "(proxy_set_header Authorization $imburse_hmac)";
    }

    if (ngx_http_imburse_exchange_body(sr, &body) != NGX_OK) {
        return "response too big";
    }

    if (sr->headers_out.content_length_n > 0
        && body.len < (size_t) sr->headers_out.content_length_n)
    {
        return "response cut short";
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE
        || *status < NGX_HTTP_OK || *status >= NGX_HTTP_SPECIAL_RESPONSE)
    {
        ngx_http_imburse_error_detail(sr, &body, detail);
        return "identity service error";
    }

    token.data = ngx_pnalloc(sr->pool, NGX_HTTP_IMBURSE_TOKEN_MAX);
    if (token.data == NULL) {
        return "out of memory";
    }

    /* "expires" is on the identity service's clock */

    now_ms = ngx_http_imburse_key_now_ms(x->key);

    trc = imburse_token_parse((char *) body.data, body.len,
                              now_ms, (char *) token.data,
                              NGX_HTTP_IMBURSE_TOKEN_MAX, &tok);

    if (trc != IMBURSE_TOKEN_OK) {
        return imburse_token_strerror(trc);
    }

    token.len = tok.token_len;

    /*
     * A far-future expiry is taken for a day: a token is never kept
     * unrefreshed longer than that on the identity service's word.
     */

    if (tok.expires_ms - now_ms > NGX_HTTP_IMBURSE_LIFETIME_MAX) {
        tok.expires_ms = now_ms + NGX_HTTP_IMBURSE_LIFETIME_MAX;
    }

    switch (ngx_http_imburse_store_put(x->key, x->claim, &token,
                                       tok.expires_ms, now_ms, 0,
                                       sr->connection->log))
    {
    case NGX_OK:
        break;

    case NGX_ABORT:
        return ngx_http_imburse_superseded;

    default:
        return "token does not fit in the imburse zone";
    }

    /* kept for the fleet's copy */
    x->token = token;
    x->expires_ms = tok.expires_ms;
    x->obtained_ms = now_ms;

    imburse_fingerprint((char *) fp, token.data, token.len);

    ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                  "imburse key \"%V\": new token %*s, expires in %L s",
                  &x->key->name, (size_t) IMBURSE_FP_HEX_LEN, fp,
                  (tok.expires_ms - now_ms) / 1000);

    return NULL;
}


/*
 * What an error body says, for the error line: Imburse's errorCode(s), or
 * else a short excerpt, printable, with token-shaped runs masked (a body
 * may echo a token or a signature).  A 2xx body, which holds the token, is
 * never shown.
 */

static void
ngx_http_imburse_error_detail(ngx_http_request_t *sr, ngx_str_t *body,
    ngx_str_t *detail)
{
    u_char      *p;
    size_t       n;
    const char  *what;
    char         text[NGX_HTTP_IMBURSE_BODY_LOG + 1];

    if (body->len == 0) {
        return;
    }

    what = "errorCode %s";
    n = imburse_error_codes((char *) body->data, body->len, text,
                            sizeof(text));

    if (n == 0) {
        what = "body \"%s\"";
        n = imburse_error_excerpt((char *) body->data, body->len, text,
                                  sizeof(text));
    }

    p = ngx_pnalloc(sr->pool, sizeof("errorCode body \"\"") + n);
    if (p == NULL) {
        return;
    }

    detail->data = p;
    detail->len = ngx_sprintf(p, what, text) - p;
}


/*
 * The exchange's response body is kept by our own body filter: nginx's
 * in-memory subrequests fail the client's connection when the body is
 * bigger than subrequest_output_buffer_size.  An internal redirect of the
 * exchange (an identity's X-Accel-Redirect, try_files) resets the
 * subrequest's context, and its body then takes nginx's own way into
 * sr->out, where a big one is an error (ngx_http_imburse_exchange_done).
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


/* STEP_WAIT: another instance exchanges; look at the fleet's copy again */

static void
ngx_http_imburse_exchange_timer(ngx_event_t *ev)
{
    ngx_http_imburse_exchange_t  *x;

    x = ev->data;
    x->step = NGX_HTTP_IMBURSE_STEP_GET;

    ngx_http_imburse_exchange_next(&x->next);
}


/*
 * The exchange did not end in time: whatever step runs is ended (its
 * upstream closed), and the exchange counts as failed.  The fleet's steps
 * before the exchange with the identity service only give way to it: the
 * instance exchanges without the fleet.
 */

static void
ngx_http_imburse_exchange_timeout(ngx_event_t *ev)
{
    ngx_http_imburse_exchange_t  *x;

    x = ev->data;

    if (x->step == NGX_HTTP_IMBURSE_STEP_END) {
        /* it ended just now: its last step's result is in */
        ngx_http_imburse_exchange_close(x);
        return;
    }

    if (x->next.posted) {

        /* a step ended just now; those after the fleet's set their own */

        if (x->step == NGX_HTTP_IMBURSE_STEP_IDENTITY
            || x->step == NGX_HTTP_IMBURSE_STEP_PUT
            || x->step == NGX_HTTP_IMBURSE_STEP_UNLOCK)
        {
            return;
        }

        ngx_delete_posted_event(&x->next);
    }

    switch (x->step) {

    case NGX_HTTP_IMBURSE_STEP_GET:
    case NGX_HTTP_IMBURSE_STEP_LOCK:
    case NGX_HTTP_IMBURSE_STEP_WAIT:
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "imburse key \"%V\": the fleet's steps took longer "
                      "than timeout=%M, exchanging without the fleet",
                      &x->key->name, x->key->timeout);

        if (x->timer.timer_set) {
            ngx_del_timer(&x->timer);
        }

        x->sr = NULL;
        ngx_http_imburse_owned_abort(x->request);

        x->step = NGX_HTTP_IMBURSE_STEP_IDENTITY;
        ngx_http_imburse_exchange_next(&x->next);
        return;

    case NGX_HTTP_IMBURSE_STEP_IDENTITY:
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "imburse key \"%V\": token exchange failed: timed out "
                      "(timeout=%M) from \"%V\"", &x->key->name,
                      x->key->timeout, &x->key->exchange);

        ngx_http_imburse_store_fail(x->key, x->claim,
                                    ngx_http_imburse_now_ms(), "timed out",
                                    0);
        ngx_http_imburse_wake_all(x->key);
        break;

    default: /* PUT, UNLOCK: the token is ours already */
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "imburse key \"%V\": fleet Redis timed out sharing the "
                      "token", &x->key->name);
        break;
    }

    ngx_http_imburse_exchange_close(x);
}


/* the end of the exchange and of its request: x goes with the request */

static void
ngx_http_imburse_exchange_close(ngx_http_imburse_exchange_t *x)
{
    if (x->timer.timer_set) {
        ngx_del_timer(&x->timer);
    }

    if (x->deadline.timer_set) {
        ngx_del_timer(&x->deadline);
    }

    if (x->next.posted) {
        ngx_delete_posted_event(&x->next);
    }

    ngx_queue_remove(&x->queue);

    ngx_http_imburse_owned_close(x->request);

    ngx_http_imburse_exchange_dequeue();
}


/*
 * A slot of imburse_exchange_concurrency is free: the keys queued behind
 * the exchanges in flight start theirs, in order, from this worker.  A key
 * this worker's configuration does not have (a reload is under way) stays
 * queued for the workers that have it.
 */

void
ngx_http_imburse_exchange_dequeue(void)
{
    ngx_uint_t                     claim, warm, n;
    ngx_slab_pool_t               *shpool;
    ngx_http_imburse_key_t        *key;
    ngx_http_imburse_main_conf_t  *imcf;

    if (ngx_exiting || ngx_terminate || ngx_cycle->conf_ctx == NULL) {
        return;
    }

    imcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_imburse_auth_module);

    if (imcf == NULL || imcf->keys.nelts == 0) {
        return;
    }

    key = imcf->keys.elts;
    shpool = key[0].shpool;

    for (n = 0; n < imcf->keys.nelts; n++) {

        key = ngx_http_imburse_store_dequeue(imcf, shpool, &claim, &warm);

        if (key == NULL) {
            return;
        }

        if (ngx_http_imburse_exchange_start(key, claim, warm, ngx_cycle->log)
            != NGX_OK)
        {
            ngx_http_imburse_store_release(key, claim);
            ngx_http_imburse_wake_all(key);
        }
    }
}


/*
 * A worker that exits with exchanges running (nginx -s stop, the end of
 * worker_shutdown_timeout) ends them: their connections close, their
 * memory is freed, and their claims lapse in the zone by their deadline.
 */

void
ngx_http_imburse_exchange_exit(void)
{
    ngx_queue_t                  *q;
    ngx_http_imburse_exchange_t  *x;

    if (ngx_http_imburse_exchanges.next == NULL) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_imburse_exchanges)) {
        q = ngx_queue_head(&ngx_http_imburse_exchanges);
        x = ngx_queue_data(q, ngx_http_imburse_exchange_t, queue);

        ngx_http_imburse_exchange_close(x);
    }
}
