/*
 * The token exchange: the chain of background subrequests that the request
 * holding a key's claim runs, one step at a time, each step started when
 * the previous one ended.  The steps of the fleet tier are in
 * ngx_http_imburse_fleet.c; the identity step is here.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"
#include "ngx_imburse_token.h"


/* an identity error body is logged at info level, this much of it */
#define NGX_HTTP_IMBURSE_BODY_LOG  256
/* a token response is a few kilobytes; the largest token is 16k */
#define NGX_HTTP_IMBURSE_BODY_MAX  32768
#define NGX_HTTP_IMBURSE_LIFETIME_MAX  (24 * 60 * 60 * 1000LL)
/* a run of token characters this long in an error body is masked */
#define NGX_HTTP_IMBURSE_MASK_RUN  20


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


static ngx_int_t ngx_http_imburse_exchange_run(ngx_http_imburse_exchange_t *x);
static ngx_int_t ngx_http_imburse_exchange_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static ngx_http_imburse_step_e ngx_http_imburse_identity_done(
    ngx_http_imburse_exchange_t *x, ngx_http_request_t *sr, ngx_int_t rc,
    ngx_uint_t abandoned);
static const char *ngx_http_imburse_identity_result(
    ngx_http_imburse_exchange_t *x, ngx_http_request_t *sr, ngx_int_t rc,
    ngx_uint_t *status);
static void ngx_http_imburse_log_body(ngx_http_request_t *sr,
    ngx_http_imburse_key_t *key, ngx_str_t *body);
static void ngx_http_imburse_mask_tokens(u_char *text, size_t len);
static ngx_int_t ngx_http_imburse_exchange_body(ngx_http_request_t *sr,
    ngx_str_t *body);
static void ngx_http_imburse_exchange_end(ngx_http_imburse_exchange_t *x);
static void ngx_http_imburse_exchange_timer(ngx_event_t *ev);


ngx_int_t
ngx_http_imburse_exchange_start(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_uint_t claim, ngx_uint_t refresh)
{
    ngx_http_imburse_exchange_t  *x;

    x = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_exchange_t));
    if (x == NULL) {
        return NGX_ERROR;
    }

    x->request = r;
    x->key = ctx->key;
    x->claim = claim;
    x->refresh = refresh;

    x->timer.handler = ngx_http_imburse_exchange_timer;
    x->timer.data = x;
    x->timer.log = r->connection->log;

    x->step = ngx_http_imburse_fleet_first(x);

    ctx->x = x;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "imburse key \"%V\": exchange started%s",
                   &x->key->name, refresh ? " ahead of expiry" : "");

    if (ngx_http_imburse_exchange_run(x) != NGX_OK) {
        x->ended = 1;
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Steps run as background subrequests: the request that started the chain
 * goes on (refresh-ahead) or waits for the token like any other request.
 */

static ngx_int_t
ngx_http_imburse_exchange_run(ngx_http_imburse_exchange_t *x)
{
    ngx_str_t                   *uri;
    ngx_http_request_t          *sr;
    ngx_http_imburse_ctx_t      *sctx;
    ngx_http_post_subrequest_t  *ps;

    if (x->step == NGX_HTTP_IMBURSE_STEP_END) {
        ngx_http_imburse_exchange_end(x);
        return NGX_OK;
    }

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

    } else {
        if (ngx_http_imburse_fleet_prepare(x) != NGX_OK) {
            return NGX_ERROR;
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
    }

    ngx_http_set_ctx(sr, sctx, ngx_http_imburse_auth_module);

    x->sr = sr;

    /* each step keeps the claim: only a stuck chain loses it */
    ngx_http_imburse_store_extend(x->key, x->claim);

    return NGX_OK;
}


/*
 * Runs when a step's subrequest is finalized, possibly more than once:
 * the first call counts.  Errors of a step are the key's, not the
 * client's: they never terminate the client's request.
 */

static ngx_int_t
ngx_http_imburse_exchange_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_imburse_exchange_t  *x = data;

    ngx_uint_t  abandoned;

    if (rc == NGX_AGAIN || x->ended || x->sr != sr) {
        goto done;
    }

    x->sr = NULL;

    /*
     * The client went away: the chain stops here, keeping what it got;
     * a failure then is the client's, not the identity service's.
     */

    abandoned = (rc == NGX_HTTP_CLIENT_CLOSED_REQUEST || sr->connection->error);

    if (x->step == NGX_HTTP_IMBURSE_STEP_IDENTITY) {
        x->step = ngx_http_imburse_identity_done(x, sr, rc, abandoned);

    } else if (!abandoned) {
        x->step = ngx_http_imburse_fleet_done(x, rc);
    }

    if (abandoned) {
        ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                      "imburse key \"%V\": exchange abandoned, the client "
                      "closed the connection", &x->key->name);

        ngx_http_imburse_exchange_cleanup(x);
        goto done;
    }

    if (ngx_http_imburse_exchange_run(x) != NGX_OK) {
        ngx_http_imburse_exchange_cleanup(x);
    }

done:

    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return NGX_OK;
    }

    return rc;
}


static ngx_http_imburse_step_e
ngx_http_imburse_identity_done(ngx_http_imburse_exchange_t *x,
    ngx_http_request_t *sr, ngx_int_t rc, ngx_uint_t abandoned)
{
    ngx_uint_t   status;
    const char  *cause;

    cause = ngx_http_imburse_identity_result(x, sr, rc, &status);

    if (cause && abandoned) {
        /* released by ngx_http_imburse_exchange_cleanup() */
        return NGX_HTTP_IMBURSE_STEP_END;
    }

    if (cause) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "imburse key \"%V\": token exchange failed: %s "
                      "(status %ui) from \"%V\"",
                      &x->key->name, cause, status, &x->key->exchange);

        ngx_http_imburse_store_fail(x->key, x->claim,
                                    ngx_http_imburse_now_ms(), cause);
    }

    /* the waiting requests go on now, whatever the fleet steps left */

    ngx_http_imburse_wake_all(x->key);

    return ngx_http_imburse_fleet_after_identity(x, x->token.len != 0);
}


static const char *
ngx_http_imburse_identity_result(ngx_http_imburse_exchange_t *x,
    ngx_http_request_t *sr, ngx_int_t rc, ngx_uint_t *status)
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

    if (sr->headers_out.content_length_n > 0
        && body.len < (size_t) sr->headers_out.content_length_n)
    {
        return "response cut short";
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE
        || *status < NGX_HTTP_OK || *status >= NGX_HTTP_SPECIAL_RESPONSE)
    {
        ngx_http_imburse_log_body(sr, x->key, &body);
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

    /*
     * A far-future expiry is taken for a day: a token is never kept
     * unrefreshed longer than that on the identity service's word.
     */

    if (tok.expires_ms - now_ms > NGX_HTTP_IMBURSE_LIFETIME_MAX) {
        tok.expires_ms = now_ms + NGX_HTTP_IMBURSE_LIFETIME_MAX;
    }

    if (ngx_http_imburse_store_put(x->key, x->claim, &token, tok.expires_ms,
                                   now_ms, 0, sr->connection->log)
        != NGX_OK)
    {
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
 * Only error bodies are logged, cut short and made printable: a 2xx body
 * holds a token, and a body may hold anything.
 */

static void
ngx_http_imburse_log_body(ngx_http_request_t *sr, ngx_http_imburse_key_t *key,
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

    ngx_http_imburse_mask_tokens(text, len);

    ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                  "imburse key \"%V\": identity error body%s: \"%*s\"",
                  &key->name, body->len > len ? " (truncated)" : "",
                  len, text);
}


/*
 * An error body may still carry a token: any run of token characters long
 * enough to be one is shown as '*'.
 */

static void
ngx_http_imburse_mask_tokens(u_char *text, size_t len)
{
    size_t  i, start;

    start = 0;

    for (i = 0; i <= len; i++) {

        if (i < len && imburse_token_is_b64token((char *) &text[i], 1)) {
            continue;
        }

        if (i - start >= NGX_HTTP_IMBURSE_MASK_RUN) {
            ngx_memset(&text[start], '*', i - start);
        }

        start = i + 1;
    }
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


static void
ngx_http_imburse_exchange_timer(ngx_event_t *ev)
{
    ngx_connection_t             *c;
    ngx_http_imburse_exchange_t  *x;

    x = ev->data;
    c = x->request->connection;

    ngx_http_set_log_request(c->log, x->request);

    x->step = NGX_HTTP_IMBURSE_STEP_GET;

    if (ngx_http_imburse_exchange_run(x) != NGX_OK) {
        ngx_http_imburse_exchange_cleanup(x);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_imburse_exchange_end(ngx_http_imburse_exchange_t *x)
{
    x->ended = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, x->request->connection->log, 0,
                   "imburse key \"%V\": exchange ended", &x->key->name);
}


/*
 * The chain stops before its end: its request went away, or a step could
 * not be started.  The claim goes back, so that another request runs a
 * new exchange; a fleet lock we hold expires in Redis by itself.
 */

void
ngx_http_imburse_exchange_cleanup(ngx_http_imburse_exchange_t *x)
{
    if (x->ended) {
        return;
    }

    x->ended = 1;

    if (x->timer.timer_set) {
        ngx_del_timer(&x->timer);
    }

    ngx_http_imburse_release(x->key, x->claim);
}


void
ngx_http_imburse_ctx_cleanup(void *data)
{
    ngx_http_imburse_ctx_t  *ctx = data;

    ngx_http_imburse_wait_cleanup(ctx);

    if (ctx->x) {
        ngx_http_imburse_exchange_cleanup(ctx->x);
    }
}
