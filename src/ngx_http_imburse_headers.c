/*
 * Request and response headers the module sets.
 */

#include "ngx_http_imburse_auth.h"


static ngx_str_t  ngx_http_imburse_authorization =
    ngx_string("authorization");


/*
 * Replaces the client's Authorization with ours.  The proxy module
 * forwards every list entry, so any other Authorization entry gets our
 * value too: removing it would move entries that r->headers_in points to.
 * (nginx rejects a second Authorization from a client; another module may
 * still add one.)
 */

ngx_int_t
ngx_http_imburse_set_authorization(ngx_http_request_t *r, ngx_str_t *token)
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
            if (h[i].key.len == ngx_http_imburse_authorization.len
                && ngx_strncasecmp(h[i].key.data,
                                   ngx_http_imburse_authorization.data,
                                   ngx_http_imburse_authorization.len)
                   == 0)
            {
                h[i].value = value;

                if (found == NULL) {
                    found = &h[i];
                }
            }
        }
    }

    if (found == NULL) {
        found = ngx_list_push(&r->headers_in.headers);
        if (found == NULL) {
            return NGX_ERROR;
        }

        ngx_str_set(&found->key, "Authorization");
        found->lowcase_key = ngx_http_imburse_authorization.data;
        found->hash = ngx_hash_key(ngx_http_imburse_authorization.data,
                                   ngx_http_imburse_authorization.len);
        found->value = value;
    }

#if defined(nginx_version) && nginx_version >= 1023000
    found->next = NULL;
#endif

    r->headers_in.authorization = found;

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
