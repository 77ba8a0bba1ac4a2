/*
 * An upstream 401 to a request that carried our token ends that token, if
 * it still is the current one: a burst of 401s for one token ends it once,
 * and so causes one exchange.
 *
 * The 401 is seen by a header filter, or, when the location intercepts it
 * (proxy_intercept_errors with error_page 401), by the handler when the
 * redirected request comes back: its context then survives only through
 * its pool cleanup.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static void ngx_http_imburse_revoke(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx);
static ngx_int_t ngx_http_imburse_revoke_header_filter(
    ngx_http_request_t *r);


ngx_int_t
ngx_http_imburse_revoke_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_imburse_revoke_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_revoke_header_filter(ngx_http_request_t *r)
{
    ngx_http_imburse_ctx_t  *ctx;

    if (r == r->main
        && r->upstream
        && r->headers_out.status == NGX_HTTP_UNAUTHORIZED)
    {
        ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_auth_module);

        if (ctx && ctx->token.len) {
            ngx_http_imburse_revoke(r, ctx);
        }
    }

    return ngx_http_next_header_filter(r);
}


/* the context of a request before its last internal redirect */

ngx_http_imburse_ctx_t *
ngx_http_imburse_find_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_imburse_ctx_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


void
ngx_http_imburse_revoke_redirected(ngx_http_request_t *r)
{
    ngx_uint_t                  n;
    ngx_http_imburse_ctx_t     *ctx;
    ngx_http_upstream_state_t  *state;

    ctx = ngx_http_imburse_find_ctx(r);

    if (ctx == NULL || ctx->token.len == 0 || r->upstream_states == NULL) {
        return;
    }

    n = r->upstream_states->nelts;
    state = r->upstream_states->elts;

    if (n && state[n - 1].status == NGX_HTTP_UNAUTHORIZED) {
        ngx_http_imburse_revoke(r, ctx);
    }
}


static void
ngx_http_imburse_revoke(ngx_http_request_t *r, ngx_http_imburse_ctx_t *ctx)
{
    u_char  fp[IMBURSE_FP_HEX_LEN];

    if (ctx->revoke_checked) {
        return;
    }

    ctx->revoke_checked = 1;

    if (ngx_http_imburse_store_revoke(ctx->key, &ctx->token) != NGX_OK) {
        return;
    }

    imburse_fingerprint((char *) fp, ctx->token.data, ctx->token.len);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "imburse key \"%V\": upstream answered 401, token %*s "
                  "revoked", &ctx->key->name, (size_t) IMBURSE_FP_HEX_LEN, fp);
}
