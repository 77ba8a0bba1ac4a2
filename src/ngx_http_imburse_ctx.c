/*
 * A request's context of the module, and finding it again: an internal
 * redirect (error_page, try_files) clears r->ctx, and what the request did
 * before it (the token it sent, the client's own Authorization) is kept
 * through the context's pool cleanup.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_exchange.h"


ngx_http_imburse_ctx_t *
ngx_http_imburse_create_ctx(ngx_http_request_t *r, ngx_http_imburse_key_t *key)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_imburse_ctx_cleanup;
    cln->data = ctx;

    ctx->request = r;
    ctx->key = key;

    ngx_http_set_ctx(r, ctx, ngx_http_imburse_auth_module);

    return ctx;
}


void
ngx_http_imburse_ctx_cleanup(void *data)
{
    ngx_http_imburse_ctx_t  *ctx = data;

    ngx_http_imburse_wait_cleanup(ctx);
}


/* the variables still report what happened before an internal redirect */

ngx_http_imburse_ctx_t *
ngx_http_imburse_get_ctx(ngx_http_request_t *r)
{
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_auth_module);

    if (ctx == NULL && r->internal) {
        ctx = ngx_http_imburse_find_ctx(r);
    }

    return ctx;
}


/* the context of a request before its last internal redirect */

ngx_http_imburse_ctx_t *
ngx_http_imburse_find_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_imburse_ctx_t  *ctx;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_imburse_ctx_cleanup) {
            ctx = cln->data;

            if (ctx->request == r) {
                return ctx;
            }
        }
    }

    return NULL;
}
