/*
 * The fleet tier: instances of a fleet share one token per key through
 * Redis, so that the fleet makes one exchange where each instance would
 * make its own.
 *
 *   GET     a copy valid beyond the refresh window is used as it is;
 *   LOCK    otherwise SET NX PX takes the fleet's lock (owner: a nonce);
 *   IDENTITY the lock's holder exchanges (ngx_http_imburse_exchange.c),
 *   PUT     shares the new token, sealed, with a TTL matching its expiry,
 *           and releases the lock if it still owns it.
 *
 * An instance that finds the lock taken keeps its valid token and looks
 * again later, or, with none, reads the fleet's copy until it appears and
 * exchanges itself if the lock's holder seems gone.  Redis down, slow,
 * refusing or talking nonsense: the instance exchanges on its own and
 * leaves Redis alone for "retry".
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_store.h"
#include "ngx_imburse_fleet_crypto.h"
#include "ngx_imburse_token.h"


static ngx_http_imburse_step_e ngx_http_imburse_fleet_got(
    ngx_http_imburse_exchange_t *x);
static ngx_http_imburse_step_e ngx_http_imburse_fleet_locked(
    ngx_http_imburse_exchange_t *x);
static ngx_http_imburse_step_e ngx_http_imburse_fleet_failed(
    ngx_http_imburse_exchange_t *x, const char *cause);
static void ngx_http_imburse_fleet_up(ngx_http_imburse_exchange_t *x);
static ngx_http_imburse_step_e ngx_http_imburse_fleet_unusable(
    ngx_http_imburse_exchange_t *x);


ngx_http_imburse_step_e
ngx_http_imburse_fleet_first(ngx_http_imburse_exchange_t *x)
{
    if (x->key->fleet.len && ngx_http_imburse_store_fleet_usable(x->key)) {
        /* the fleet lock lives "timeout": a holder gone by then is dead */
        x->give_up = ngx_current_msec + x->key->timeout
                     + 2 * NGX_HTTP_IMBURSE_FLEET_POLL;
        return NGX_HTTP_IMBURSE_STEP_GET;
    }

    return NGX_HTTP_IMBURSE_STEP_IDENTITY;
}


ngx_int_t
ngx_http_imburse_fleet_prepare(ngx_http_imburse_exchange_t *x)
{
    size_t                        len;
    ngx_http_imburse_key_t       *key;
    ngx_http_imburse_redis_op_t  *op;

    key = x->key;
    op = &x->op;

    ngx_memzero(op, sizeof(ngx_http_imburse_redis_op_t));

    op->token_key = key->fleet_token_key;
    op->lock_key = key->fleet_lock_key;
    op->owner.data = x->owner;
    op->owner.len = IMBURSE_NONCE_LEN;
    op->ttl = key->timeout;

    switch (x->step) {

    case NGX_HTTP_IMBURSE_STEP_GET:
        op->type = NGX_HTTP_IMBURSE_REDIS_GET;
        break;

    case NGX_HTTP_IMBURSE_STEP_LOCK:
        op->type = NGX_HTTP_IMBURSE_REDIS_LOCK;

        if (imburse_nonce((char *) x->owner) != 0) {
            return NGX_ERROR;
        }

        break;

    case NGX_HTTP_IMBURSE_STEP_PUT:
        op->type = NGX_HTTP_IMBURSE_REDIS_PUT;

        len = IMBURSE_FLEET_OVERHEAD + x->token.len;

        op->value.data = ngx_pnalloc(x->request->pool, len);
        if (op->value.data == NULL) {
            return NGX_ERROR;
        }

        op->value.len = imburse_fleet_seal(op->value.data,
                                           key->fleet_seal_key,
                                           key->fleet_token_key.data,
                                           key->fleet_token_key.len,
                                           x->token.data, x->token.len,
                                           x->expires_ms, x->obtained_ms);
        if (op->value.len == 0) {
            return NGX_ERROR;
        }

        /* the copy lives as long as the token */
        op->ttl = (ngx_msec_t) ngx_max(x->expires_ms
                                       - ngx_http_imburse_key_now_ms(key),
                                       1);
        break;

    default: /* NGX_HTTP_IMBURSE_STEP_UNLOCK */
        op->type = NGX_HTTP_IMBURSE_REDIS_UNLOCK;
        break;
    }

    return NGX_OK;
}


ngx_http_imburse_step_e
ngx_http_imburse_fleet_done(ngx_http_imburse_exchange_t *x, ngx_int_t rc)
{
    ngx_http_imburse_redis_op_t  *op;

    op = &x->op;

    if (!op->done || op->error || rc == NGX_ERROR) {
        return ngx_http_imburse_fleet_failed(x,
                   op->error ? op->error
                   : op->partial ? "reply cut short"
                   : rc == NGX_HTTP_GATEWAY_TIME_OUT ? "Redis timed out"
                   : "Redis unreachable");
    }

    switch (x->step) {

    case NGX_HTTP_IMBURSE_STEP_GET:
        return ngx_http_imburse_fleet_got(x);

    case NGX_HTTP_IMBURSE_STEP_LOCK:
        return ngx_http_imburse_fleet_locked(x);

    default: /* PUT, UNLOCK */
        ngx_http_imburse_fleet_up(x);
        return NGX_HTTP_IMBURSE_STEP_END;
    }
}


/* a whole fleet attempt went through: Redis works, whatever it did before */

static void
ngx_http_imburse_fleet_up(ngx_http_imburse_exchange_t *x)
{
    if (ngx_http_imburse_store_fleet(x->key, NGX_HTTP_IMBURSE_FLEET_OK)) {
        ngx_log_error(NGX_LOG_NOTICE, x->request->connection->log, 0,
                      "imburse key \"%V\": fleet Redis is back, sharing "
                      "tokens again", &x->key->name);
    }
}


static ngx_http_imburse_step_e
ngx_http_imburse_fleet_got(ngx_http_imburse_exchange_t *x)
{
    long                     n;
    int64_t                  now_ms, expires_ms, obtained_ms;
    ngx_str_t                token;
    ngx_http_imburse_key_t  *key;

    key = x->key;

    if (x->op.nil) {
        if (x->locked) {
            return NGX_HTTP_IMBURSE_STEP_IDENTITY;
        }

        return (ngx_current_msec < x->give_up) ? NGX_HTTP_IMBURSE_STEP_LOCK
                                               : NGX_HTTP_IMBURSE_STEP_IDENTITY;
    }

    token.data = ngx_pnalloc(x->request->pool, NGX_HTTP_IMBURSE_TOKEN_MAX);
    if (token.data == NULL) {
        return NGX_HTTP_IMBURSE_STEP_IDENTITY;
    }

    n = imburse_fleet_open(x->op.reply.data, x->op.reply.len,
                           key->fleet_seal_key, key->fleet_token_key.data,
                           key->fleet_token_key.len, token.data,
                           NGX_HTTP_IMBURSE_TOKEN_MAX, &expires_ms,
                           &obtained_ms);

    now_ms = ngx_http_imburse_key_now_ms(key);

    if (n <= 0 || !imburse_token_is_b64token((char *) token.data, n)) {

        /* another tenant key, or tampering: replace it with ours */

        if (!x->locked && ngx_http_imburse_store_fleet_usable(key)) {
            ngx_log_error(NGX_LOG_WARN, x->request->connection->log, 0,
                          "imburse key \"%V\": the fleet's copy does not "
                          "open with this key, exchanging", &key->name);
        }

        return ngx_http_imburse_fleet_unusable(x);
    }

    token.len = (size_t) n;

    /* an upstream 401 ended it here; the copy still says it is valid */

    if (ngx_http_imburse_store_revoked(key, &token)) {
        return ngx_http_imburse_fleet_unusable(x);
    }

    /*
     * A refresh wants a copy newer than ours, valid beyond the window; a
     * request with no token takes any valid copy.
     */

    if (expires_ms <= now_ms
        || (x->refresh
            && now_ms >= ngx_http_imburse_store_refresh_at(key, expires_ms,
                                                           obtained_ms, 0)))
    {
        return ngx_http_imburse_fleet_unusable(x);
    }

    if (ngx_http_imburse_store_put(key, x->claim, &token, expires_ms,
                                   obtained_ms, 1,
                                   x->request->connection->log)
        != NGX_OK)
    {
        ngx_http_imburse_store_fail(key, x->claim, ngx_http_imburse_now_ms(),
                                    "token does not fit in the imburse zone",
                                    0);
    }

    ngx_http_imburse_wake_all(key);

    /* the lock was ours, for nothing: another instance shared in time */

    if (x->locked) {
        x->locked = 0;
        return NGX_HTTP_IMBURSE_STEP_UNLOCK;
    }

    ngx_http_imburse_fleet_up(x);

    return NGX_HTTP_IMBURSE_STEP_END;
}


/* the fleet's copy is of no use: exchange, under the lock once we hold it */

static ngx_http_imburse_step_e
ngx_http_imburse_fleet_unusable(ngx_http_imburse_exchange_t *x)
{
    return x->locked ? NGX_HTTP_IMBURSE_STEP_IDENTITY
                     : NGX_HTTP_IMBURSE_STEP_LOCK;
}


static ngx_http_imburse_step_e
ngx_http_imburse_fleet_locked(ngx_http_imburse_exchange_t *x)
{
    if (!x->op.nil) {
        /*
         * Read again under the lock: between our GET and our SET the
         * previous holder may have shared its token and let go.
         */
        x->locked = 1;
        ngx_http_imburse_store_fleet(x->key,
                                     NGX_HTTP_IMBURSE_FLEET_LOCK_TAKEN);
        return NGX_HTTP_IMBURSE_STEP_GET;
    }

    ngx_http_imburse_store_fleet(x->key, NGX_HTTP_IMBURSE_FLEET_LOCK_LOST);

    if (x->refresh) {
        /* another instance refreshes: keep our token, look again soon */
        ngx_http_imburse_store_defer(x->key, x->claim,
                                     NGX_HTTP_IMBURSE_FLEET_POLL * 10);
        ngx_http_imburse_wake_all(x->key);
        ngx_http_imburse_fleet_up(x);
        return NGX_HTTP_IMBURSE_STEP_END;
    }

    /* past give_up the lock's holder is taken for dead: exchange alone */

    return (ngx_current_msec < x->give_up) ? NGX_HTTP_IMBURSE_STEP_WAIT
                                           : NGX_HTTP_IMBURSE_STEP_IDENTITY;
}


ngx_http_imburse_step_e
ngx_http_imburse_fleet_after_identity(ngx_http_imburse_exchange_t *x,
    ngx_uint_t ok)
{
    if (!x->locked) {
        return NGX_HTTP_IMBURSE_STEP_END;
    }

    return ok ? NGX_HTTP_IMBURSE_STEP_PUT : NGX_HTTP_IMBURSE_STEP_UNLOCK;
}


static ngx_http_imburse_step_e
ngx_http_imburse_fleet_failed(ngx_http_imburse_exchange_t *x,
    const char *cause)
{
    if (ngx_http_imburse_store_fleet(x->key, NGX_HTTP_IMBURSE_FLEET_ERROR)) {
        ngx_log_error(NGX_LOG_ERR, x->request->connection->log, 0,
                      "imburse key \"%V\": fleet Redis failed: %s, "
                      "exchanging without the fleet", &x->key->name, cause);
    }

    switch (x->step) {

    case NGX_HTTP_IMBURSE_STEP_GET:
    case NGX_HTTP_IMBURSE_STEP_LOCK:
        return NGX_HTTP_IMBURSE_STEP_IDENTITY;

    default:
        /* the token is ours already; a lock left behind expires */
        return NGX_HTTP_IMBURSE_STEP_END;
    }
}
