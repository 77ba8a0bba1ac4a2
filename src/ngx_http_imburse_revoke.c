/*
 * An upstream 401 to a request that carried our token ends that token, if
 * it still is the current one: a burst of 401s for one token ends it once,
 * and so causes one exchange.  A token younger than "retry" is not ended:
 * an API that answers 401 for reasons of its own (a resource the key has
 * no role for) would otherwise cost an exchange a request.
 *
 * A 401 is attributed by the upstream states the request collected after
 * the token was injected: a later 401 page of nginx's own, or the 401 of a
 * redirected request's new upstream, is not the token's.  It is looked for
 * by a header filter, and by the handler when a request whose 401 was
 * intercepted (error_page 401) comes back: the context of the request
 * before an internal redirect survives only through its pool cleanup.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


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

    if (r->upstream_states) {
        ctx = ngx_http_imburse_get_ctx(r);

        if (ctx) {
            ngx_http_imburse_revoke_check(r, ctx);
        }
    }

    return ngx_http_next_header_filter(r);
}


void
ngx_http_imburse_revoke_check(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_uint_t                  i, first;
    ngx_http_upstream_state_t  *state;
    u_char                      fp[IMBURSE_FP_HEX_LEN];

    if (ctx->revoke_checked || ctx->token.len == 0
        || r->upstream_states == NULL)
    {
        return;
    }

    state = r->upstream_states->elts;

    for (i = ctx->states; i < r->upstream_states->nelts; i++) {
        if (state[i].status == NGX_HTTP_UNAUTHORIZED) {
            break;
        }
    }

    if (i == r->upstream_states->nelts) {
        return;
    }

    ctx->revoke_checked = 1;

    rc = ngx_http_imburse_store_revoke(ctx->key, &ctx->token,
                                       ngx_http_imburse_now_ms(), &first);

    if (rc == NGX_DECLINED || (rc == NGX_BUSY && !first)) {
        return;
    }

    imburse_fingerprint((char *) fp, ctx->token.data, ctx->token.len);

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "imburse key \"%V\": upstream answered 401 to token "
                      "%*s, which is younger than retry=%M: not revoked, "
                      "the 401 is likely about the request (path, role), "
                      "not the token (counted as unrevoked_401)",
                      &ctx->key->name, (size_t) IMBURSE_FP_HEX_LEN, fp,
                      ctx->key->retry);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "imburse key \"%V\": upstream answered 401, token %*s "
                  "revoked", &ctx->key->name, (size_t) IMBURSE_FP_HEX_LEN, fp);
}
