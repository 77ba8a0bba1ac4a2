/*
 * imburse_status: every key's token state and counters as JSON, or as
 * Prometheus text; ?key=NAME for one key.  Never a token or a secret:
 * tokens appear as their fingerprint only.
 *
 * The page is written a batch of keys at a time (their figures taken under
 * one hold of the zone's lock) into at most two buffers, reused as the
 * client reads them: its memory does not grow with the number of keys.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_status.h"
#include "ngx_http_imburse_store.h"


#define NGX_HTTP_IMBURSE_STATUS_BATCH    32
#define NGX_HTTP_IMBURSE_STATUS_BUFS     2
#define NGX_HTTP_IMBURSE_STATUS_BUF      65536

/* what one key takes at most, its name aside (twice: JSON escapes none) */
#define NGX_HTTP_IMBURSE_STATUS_KEY_LEN  1024


static ngx_int_t ngx_http_imburse_status_handler(ngx_http_request_t *r);
static void ngx_http_imburse_status_send(ngx_http_request_t *r);
static ngx_chain_t *ngx_http_imburse_status_buf(ngx_http_request_t *r,
    ngx_http_imburse_status_ctx_t *ctx);
static void ngx_http_imburse_status_fill(ngx_http_imburse_status_ctx_t *ctx,
    ngx_buf_t *b);
static ngx_uint_t ngx_http_imburse_status_keys(
    ngx_http_imburse_status_ctx_t *ctx, ngx_buf_t *b);


/*
 * The status page must answer while the identity service is down: it
 * never inherits imburse_auth (a server-level one would make every poll
 * wait for, or start, an exchange).
 */

char *
ngx_http_imburse_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_imburse_loc_conf_t  *ilcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_imburse_status_handler;

    ilcf->status_page = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_imburse_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       name;
    ngx_uint_t                      i;
    ngx_http_imburse_ctx_t         *mctx;
    ngx_http_imburse_status_ctx_t  *ctx;
    ngx_http_imburse_main_conf_t   *imcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    imcf = ngx_http_get_module_main_conf(r, ngx_http_imburse_auth_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_status_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->imcf = imcf;
    ctx->keys = imcf->keys.elts;
    ctx->nkeys = imcf->keys.nelts;
    ctx->prometheus = ngx_http_imburse_status_prometheus_wanted(r);
    ctx->last = (r == r->main);

    if (ngx_http_arg(r, (u_char *) "key", 3, &name) == NGX_OK) {
        ctx->keys = ngx_http_imburse_find_key(imcf, &name);

        if (ctx->keys == NULL) {
            return NGX_HTTP_NOT_FOUND;
        }

        ctx->nkeys = 1;
    }

    for (i = 0; i < ctx->nkeys; i++) {
        ctx->fleets += ctx->keys[i].fleet.len ? 1 : 0;
    }

    /* the module's context, as the variables and filters expect it */

    mctx = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_ctx_t));
    if (mctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mctx->page = ctx;
    ngx_http_set_ctx(r, mctx, ngx_http_imburse_auth_module);

    if (ctx->prometheus) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");
    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    r->main->count++;

    ngx_http_imburse_status_send(r);

    return NGX_DONE;
}


/* also the write event handler, while the client reads slower */

static void
ngx_http_imburse_status_send(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_chain_t                    *cl;
    ngx_event_t                    *wev;
    ngx_http_imburse_ctx_t         *mctx;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_imburse_status_ctx_t  *ctx;

    mctx = ngx_http_get_module_ctx(r, ngx_http_imburse_auth_module);
    ctx = mctx->page;
    wev = r->connection->write;

    if (wev->timedout) {
        r->connection->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    rc = NGX_OK;

    if (ctx->busy) {
        /* what the client did not take yet, first; nothing new to add */
        rc = ngx_http_output_filter(r, NULL);
        cl = NULL;
        ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &cl,
                                (ngx_buf_tag_t) &ngx_http_imburse_auth_module);
    }

    while (rc != NGX_ERROR && !ctx->done) {
        cl = ngx_http_imburse_status_buf(r, ctx);
        if (cl == NULL) {
            if (ctx->busy == NULL) {
                /* no memory, and no write event will come to try again */
                rc = NGX_ERROR;
            }

            break;
        }

        ngx_http_imburse_status_fill(ctx, cl->buf);

        rc = ngx_http_output_filter(r, cl);

        ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &cl,
                                (ngx_buf_tag_t) &ngx_http_imburse_auth_module);
    }

    if (rc == NGX_ERROR || ctx->done) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* both buffers are the client's still: on when it reads */

    r->write_event_handler = ngx_http_imburse_status_send;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (!wev->delayed) {
        ngx_add_timer(wev, clcf->send_timeout);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


static ngx_chain_t *
ngx_http_imburse_status_buf(ngx_http_request_t *r,
    ngx_http_imburse_status_ctx_t *ctx)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (ctx->free) {
        cl = ctx->free;
        ctx->free = cl->next;
        cl->next = NULL;

        b = cl->buf;
        b->pos = b->start;
        b->last = b->start;
        b->flush = 0;

        return cl;
    }

    if (ctx->bufs == NGX_HTTP_IMBURSE_STATUS_BUFS) {
        return NULL;
    }

    ctx->bufs++;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    b = ngx_create_temp_buf(r->pool, NGX_HTTP_IMBURSE_STATUS_BUF);
    if (b == NULL) {
        return NULL;
    }

    b->tag = (ngx_buf_tag_t) &ngx_http_imburse_auth_module;

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


/* as much of the page as fits in b, a batch of keys at a time */

static void
ngx_http_imburse_status_fill(ngx_http_imburse_status_ctx_t *ctx,
    ngx_buf_t *b)
{
    while (!ctx->done) {

        if (ctx->stage == NGX_HTTP_IMBURSE_STATUS_KEYS) {
            if (!ngx_http_imburse_status_keys(ctx, b)) {
                break;
            }

            continue;
        }

        if ((size_t) (b->end - b->last) < NGX_HTTP_IMBURSE_STATUS_TEXT) {
            break;
        }

        b->last = ctx->prometheus ? ngx_http_imburse_prometheus_text(ctx,
                                                                    b->last)
                                  : ngx_http_imburse_json_text(ctx, b->last);
    }

    b->flush = 1;

    if (ctx->done) {
        b->last_buf = ctx->last;
        b->last_in_chain = 1;
    }
}


/*
 * The next batch of keys, when it fits: 0 when b is full, or this part of
 * the page has no key left (the stage moved on).
 */

static ngx_uint_t
ngx_http_imburse_status_keys(ngx_http_imburse_status_ctx_t *ctx,
    ngx_buf_t *b)
{
    size_t                         room;
    ngx_uint_t                     i, n;
    ngx_http_imburse_key_t        *key;
    ngx_http_imburse_key_stats_t   st[NGX_HTTP_IMBURSE_STATUS_BATCH];

    if (ctx->next == ctx->nkeys) {
        ctx->stage = NGX_HTTP_IMBURSE_STATUS_PART;
        ctx->next = 0;
        return 1;
    }

    key = &ctx->keys[ctx->next];
    n = ngx_min(ctx->nkeys - ctx->next, NGX_HTTP_IMBURSE_STATUS_BATCH);

    for (i = 0, room = 0; i < n; i++) {
        room += NGX_HTTP_IMBURSE_STATUS_KEY_LEN + 2 * key[i].name.len;
    }

    if ((size_t) (b->end - b->last) < room) {
        return 0;
    }

    /* now, not when the page began: a slow client can take a while */
    ngx_http_imburse_store_stats(key, n, ngx_http_imburse_now_ms(), st);

    for (i = 0; i < n; i++) {
        b->last = ctx->prometheus
                  ? ngx_http_imburse_prometheus_key(ctx, &key[i], &st[i],
                                                    b->last)
                  : ngx_http_imburse_json_key(ctx, &key[i], &st[i], b->last);
    }

    ctx->next += n;

    return 1;
}


int64_t
ngx_http_imburse_status_seconds(int64_t ms)
{
    return (ms < 0) ? -((-ms + 500) / 1000) : (ms + 500) / 1000;
}
