/*
 * Request and response headers the module sets.
 */

#include "ngx_http_imburse_auth.h"


static ngx_str_t  ngx_http_imburse_authorization =
    ngx_string("authorization");
static ngx_str_t  ngx_http_imburse_removed =
    ngx_string("x-imburse-removed");
static ngx_uint_t  ngx_http_imburse_authorization_hash;


static ngx_uint_t
ngx_http_imburse_is_authorization(ngx_table_elt_t *h)
{
    return h->key.len == ngx_http_imburse_authorization.len
           && ngx_strncasecmp(h->key.data,
                              ngx_http_imburse_authorization.data,
                              ngx_http_imburse_authorization.len)
              == 0;
}


/*
 * Replaces the client's Authorization with ours.  The proxy module
 * forwards every list entry, so any other Authorization entry gets our
 * value too: removing it would move entries that r->headers_in points to.
 * (nginx rejects a second Authorization from a client; another module may
 * still add one.)  What the client sent is kept in the context, for a
 * location without imburse_auth that the request may be redirected to.
 */

ngx_int_t
ngx_http_imburse_set_authorization(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_str_t *token)
{
    ngx_str_t         value;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    value.data = token->data - NGX_HTTP_IMBURSE_BEARER_LEN;
    value.len = NGX_HTTP_IMBURSE_BEARER_LEN + token->len;
    ngx_memcpy(value.data, NGX_HTTP_IMBURSE_BEARER,
               NGX_HTTP_IMBURSE_BEARER_LEN);

    found = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (!ngx_http_imburse_is_authorization(&h[i])) {
                continue;
            }

            if (found == NULL) {
                found = &h[i];

                if (!ctx->auth_saved) {
                    ctx->client_auth = h[i].value;
                }
            }

            h[i].value = value;
        }
    }

    if (found == NULL) {
        found = ngx_list_push(&r->headers_in.headers);
        if (found == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_imburse_authorization_hash == 0) {
            ngx_http_imburse_authorization_hash =
                ngx_hash_key(ngx_http_imburse_authorization.data,
                             ngx_http_imburse_authorization.len);
        }

        ngx_str_set(&found->key, "Authorization");
        found->lowcase_key = ngx_http_imburse_authorization.data;
        found->hash = ngx_http_imburse_authorization_hash;
        found->value = value;
    }

#if defined(nginx_version) && nginx_version >= 1023000
    found->next = NULL;
#endif

    r->headers_in.authorization = found;

    ctx->auth_header = found;
    ctx->auth_saved = 1;

    return NGX_OK;
}


/*
 * The request was redirected to a location without imburse_auth (an
 * error_page, try_files, a named location): it gets back what the client
 * sent, and our token does not travel on to that location's upstream.
 */

void
ngx_http_imburse_restore_authorization(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (!ctx->auth_saved || ctx->restored) {
        return;
    }

    ctx->restored = 1;
    r->headers_in.authorization = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (!ngx_http_imburse_is_authorization(&h[i])) {
                continue;
            }

            if (&h[i] == ctx->auth_header && ctx->client_auth.data) {
                h[i].value = ctx->client_auth;
                r->headers_in.authorization = &h[i];
                continue;
            }

            /* ours: the last entry goes, others are renamed out of the way */

            if (part->next == NULL && i == part->nelts - 1) {
                part->nelts--;
                continue;
            }

            h[i].key = ngx_http_imburse_removed;
            h[i].lowcase_key = ngx_http_imburse_removed.data;
            h[i].hash = ngx_hash_key(ngx_http_imburse_removed.data,
                                     ngx_http_imburse_removed.len);
            ngx_str_null(&h[i].value);
        }
    }
}


/*
 * A list built in a local variable, moved into the request: a list whose
 * elements all fit in its first part has "last" pointing at that part,
 * inside the local; it must point at the request's copy, or the next
 * ngx_list_push() writes through a stack frame that is gone.
 */

static void
ngx_http_imburse_move_list(ngx_list_t *dst, ngx_list_t *src)
{
    *dst = *src;

    if (src->last == &src->part) {
        dst->last = &dst->part;
    }
}


/*
 * A subrequest shares its parent's header list: it gets a list of its own
 * before its Authorization is replaced.
 */

ngx_int_t
ngx_http_imburse_private_headers(ngx_http_request_t *r)
{
    ngx_uint_t        i, n;
    ngx_list_t        headers;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *copy;

    n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    if (ngx_list_init(&headers, r->pool, n + 1, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            copy = ngx_list_push(&headers);
            if (copy == NULL) {
                return NGX_ERROR;
            }

            *copy = h[i];

            if (r->headers_in.authorization == &h[i]) {
                r->headers_in.authorization = copy;
            }
        }
    }

    ngx_http_imburse_move_list(&r->headers_in.headers, &headers);

    return NGX_OK;
}


/*
 * The nearest request above this subrequest (which shares its header
 * list) that replaced the client's Authorization with a token; NULL when
 * none did.
 */

ngx_http_imburse_ctx_t *
ngx_http_imburse_injected_above(ngx_http_request_t *r)
{
    ngx_http_request_t      *p;
    ngx_http_imburse_ctx_t  *ctx;

    for (p = r->parent; p; p = p->parent) {
        ctx = ngx_http_imburse_get_ctx(p);

        if (ctx && ctx->request == p && ctx->auth_saved) {
            return ctx->restored ? NULL : ctx;
        }
    }

    return NULL;
}


/*
 * A subrequest into a location without imburse_auth (mirror, SSI,
 * addition, slice...) gets a header list of its own with the client's
 * Authorization (client_auth, or none when its data is NULL) in place of
 * the token.
 */

ngx_int_t
ngx_http_imburse_client_headers(ngx_http_request_t *r, ngx_str_t *client_auth)
{
    ngx_uint_t        i, n;
    ngx_list_t        headers;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *copy;

    n = 1;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    if (ngx_list_init(&headers, r->pool, n, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_in.authorization = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_imburse_is_authorization(&h[i])) {
                if (client_auth->data == NULL
                    || r->headers_in.authorization)
                {
                    continue;
                }

                copy = ngx_list_push(&headers);
                if (copy == NULL) {
                    return NGX_ERROR;
                }

                *copy = h[i];
                copy->value = *client_auth;
#if defined(nginx_version) && nginx_version >= 1023000
                copy->next = NULL;
#endif
                r->headers_in.authorization = copy;
                continue;
            }

            copy = ngx_list_push(&headers);
            if (copy == NULL) {
                return NGX_ERROR;
            }

            *copy = h[i];
        }
    }

    ngx_http_imburse_move_list(&r->headers_in.headers, &headers);

    return NGX_OK;
}


ngx_int_t
ngx_http_imburse_unavailable(ngx_http_request_t *r, ngx_msec_t retry_after)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (h->value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    h->value.len = ngx_sprintf(h->value.data, "%M",
                               ngx_max((retry_after + 999) / 1000, 1))
                   - h->value.data;

#if defined(nginx_version) && nginx_version >= 1023000
    h->next = NULL;
#endif

    return NGX_HTTP_SERVICE_UNAVAILABLE;
}
