/*
 * $imburse_hmac, $imburse_token, $imburse_token_status, $imburse_token_ttl,
 * $imburse_key, $imburse_token_fp.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"


static ngx_int_t ngx_http_imburse_hmac_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_imburse_token_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_imburse_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_imburse_ttl_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_imburse_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_imburse_fp_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_imburse_vars[] = {

    /* not cacheable: every evaluation signs with a new nonce */
    { ngx_string("imburse_hmac"), NULL, ngx_http_imburse_hmac_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("imburse_token"), NULL, ngx_http_imburse_token_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("imburse_token_status"), NULL,
      ngx_http_imburse_status_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("imburse_token_ttl"), NULL, ngx_http_imburse_ttl_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("imburse_key"), NULL, ngx_http_imburse_key_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("imburse_token_fp"), NULL, ngx_http_imburse_fp_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_imburse_status_names[] = {
    ngx_null_string,
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("REFRESH"),
    ngx_string("STALE"),
    ngx_string("ERROR"),
    ngx_string("FLEET")
};


ngx_int_t
ngx_http_imburse_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_imburse_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void
ngx_http_imburse_empty(ngx_http_variable_value_t *v)
{
    v->len = 0;
    v->data = (u_char *) "";
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
}


/*
 * The exchange subrequest's own context names its key; an error_page in
 * the exchange location resets that context, so fall back to the parent's
 * record of the exchange it started.
 */

static ngx_http_imburse_exchange_t *
ngx_http_imburse_exchange_of(ngx_http_request_t *r)
{
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_auth_module);

    if (ctx && ctx->exchange == r) {
        return ctx->x;
    }

    if (r->parent) {
        ctx = ngx_http_get_module_ctx(r->parent, ngx_http_imburse_auth_module);

        if (ctx && ctx->x && ctx->x->sr == r
            && ctx->x->step == NGX_HTTP_IMBURSE_STEP_IDENTITY)
        {
            return ctx->x;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_imburse_hmac_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    size_t                        len;
    char                          nonce[IMBURSE_NONCE_LEN];
    ngx_http_imburse_key_t       *key;
    ngx_http_imburse_exchange_t  *x;

    x = ngx_http_imburse_exchange_of(r);

    if (x == NULL) {
        ngx_http_imburse_empty(v);
        return NGX_OK;
    }

    key = x->key;

    if (imburse_nonce(nonce) != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "imburse key \"%V\": no random nonce from OpenSSL",
                      &key->name);
        return NGX_ERROR;
    }

    v->data = ngx_pnalloc(r->pool,
                          imburse_hmac_authorization_len(key->public_key.len,
                                                         IMBURSE_NONCE_LEN));
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    /* the exchange request has no body */
    len = imburse_hmac_authorization((char *) v->data,
                                     (char *) key->public_key.data,
                                     key->public_key.len,
                                     key->private_key.data,
                                     key->private_key.len,
                                     nonce, IMBURSE_NONCE_LEN,
                                     ngx_http_imburse_key_now_ms(key) / 1000,
                                     NULL, 0);
    if (len == 0) {
        return NGX_ERROR;
    }

    v->len = len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    x->signed_ = 1;
    x->signed_offset_ms = ngx_http_imburse_store_clock(key);

    return NGX_OK;
}


static ngx_http_imburse_ctx_t *
ngx_http_imburse_main_ctx(ngx_http_request_t *r)
{
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_imburse_get_ctx(r);

    if (ctx && ctx->request) {
        return ctx;
    }

    return ngx_http_imburse_get_ctx(r->main);
}


static ngx_int_t
ngx_http_imburse_token_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_imburse_main_ctx(r);

    if (ctx == NULL || ctx->token.len == 0) {
        ngx_http_imburse_empty(v);
        return NGX_OK;
    }

    v->data = ctx->token.data;
    v->len = ctx->token.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_imburse_main_ctx(r);

    if (ctx == NULL || ctx->status == NGX_HTTP_IMBURSE_NONE) {
        ngx_http_imburse_empty(v);
        return NGX_OK;
    }

    v->data = ngx_http_imburse_status_names[ctx->status].data;
    v->len = ngx_http_imburse_status_names[ctx->status].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_ttl_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    int64_t                  ttl;
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_imburse_main_ctx(r);

    if (ctx == NULL || ctx->token.len == 0) {
        ngx_http_imburse_empty(v);
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    ttl = (ctx->expires_ms - ngx_http_imburse_key_now_ms(ctx->key)) / 1000;

    v->len = ngx_sprintf(v->data, "%L", ttl > 0 ? ttl : 0) - v->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_imburse_main_ctx(r);

    if (ctx == NULL || ctx->key == NULL) {
        ngx_http_imburse_empty(v);
        return NGX_OK;
    }

    v->data = ctx->key->name.data;
    v->len = ctx->key->name.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* the injected token's fingerprint, as the logs and the status show it */

static ngx_int_t
ngx_http_imburse_fp_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_imburse_ctx_t  *ctx;

    ctx = ngx_http_imburse_main_ctx(r);

    if (ctx == NULL || ctx->token.len == 0) {
        ngx_http_imburse_empty(v);
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, IMBURSE_FP_HEX_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    imburse_fingerprint((char *) v->data, ctx->token.data, ctx->token.len);

    v->len = IMBURSE_FP_HEX_LEN;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
