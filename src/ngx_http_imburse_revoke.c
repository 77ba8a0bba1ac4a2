/*
 * An upstream 401 to a request that carried our token (the request as it
 * was built for the upstream says so) ends that token, if
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
static ngx_int_t ngx_http_imburse_token_sent(ngx_http_request_t *r,
    ngx_str_t *token, ngx_uint_t *other);
static u_char *ngx_http_imburse_find(u_char *p, u_char *last, u_char *s,
    size_t len, ngx_uint_t caseless);
static void ngx_http_imburse_unsent_401(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_uint_t other);


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
    ngx_uint_t                  i, first, other;
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

    if (ngx_http_imburse_token_sent(r, &ctx->token, &other) == NGX_DECLINED) {
        ngx_http_imburse_unsent_401(r, ctx, other);
        return;
    }

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


/*
 * A 401 for a request that did not carry the token says nothing about the
 * token: the location's configuration kept it from the upstream.  Logged
 * once per location (and worker), naming the likely cause.
 */

static void
ngx_http_imburse_unsent_401(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_uint_t other)
{
    if (ctx->ilcf == NULL || ctx->ilcf->warned_unsent) {
        return;
    }

    ctx->ilcf->warned_unsent = 1;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "imburse key \"%V\": upstream answered 401 to a request "
                  "that did not carry the token, not revoked: %s in the "
                  "location (imburse_auth at %V:%ui)", &ctx->key->name,
                  other ? "\"proxy_set_header Authorization\" replaces it"
                        : "\"proxy_pass_request_headers off\" (or "
                          "\"proxy_set_header Authorization \"\"\") drops it",
                  &ctx->ilcf->conf_file, ctx->ilcf->conf_line);
}


/*
 * Whether the request as built for the upstream carried the token: NGX_OK,
 * or NGX_DECLINED (*other: it carried another Authorization).  Only a
 * request written in plain text can be judged (proxy_pass: an HTTP/1.x
 * request; fastcgi, scgi, uwsgi: their REQUEST_METHOD parameter); others
 * (grpc_pass, HPACK-encoded) count as having carried it.  Only on the 401
 * path: a few kilobytes of headers to look through.
 */

static ngx_int_t
ngx_http_imburse_token_sent(ngx_http_request_t *r, ngx_str_t *token,
    ngx_uint_t *other)
{
    u_char       *p, *last;
    ngx_buf_t    *b;
    ngx_uint_t    plain;
    ngx_chain_t  *cl;

    static u_char  auth[] = "authorization";

    *other = 0;

    if (r->upstream == NULL) {
        return NGX_OK;
    }

    plain = 0;

    for (cl = r->upstream->request_bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_in_memory(b) || b->last == NULL) {
            continue;
        }

        /* what was sent moved b->pos: the request starts at b->start */

        p = (b->start && b->start <= b->pos) ? b->start : b->pos;
        last = ngx_min(b->last, p + 65536);

        if (ngx_http_imburse_find(p, last, token->data, token->len, 0)) {
            return NGX_OK;
        }

        plain |= (ngx_http_imburse_find(p, last, (u_char *) " HTTP/1.", 8, 0)
                  || ngx_http_imburse_find(p, last,
                                           (u_char *) "REQUEST_METHOD", 14,
                                           0))
                 ? 1 : 0;

        if (ngx_http_imburse_find(p, last, auth, sizeof(auth) - 1, 1)) {
            *other = 1;
        }
    }

    return plain ? NGX_DECLINED : NGX_OK;
}


static u_char *
ngx_http_imburse_find(u_char *p, u_char *last, u_char *s, size_t len,
    ngx_uint_t caseless)
{
    if (len == 0 || (size_t) (last - p) < len) {
        return NULL;
    }

    for (last -= len; p <= last; p++) {
        if (caseless ? ngx_strncasecmp(p, s, len) == 0
                     : ngx_memcmp(p, s, len) == 0)
        {
            return p;
        }
    }

    return NULL;
}
