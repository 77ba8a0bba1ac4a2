/*
 * The token store in shared memory.
 *
 * Critical sections are a few loads and stores and, on a hit, one copy of
 * the token: no I/O and no logging happens under the zone's mutex.
 */

#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_store.h"


/* bump when the layout of the structures below changes */
#define NGX_HTTP_IMBURSE_LAYOUT      4
#define NGX_HTTP_IMBURSE_BACKOFF_MAX 60000

/*
 * A claim outlives its exchange's own bound by this much: the owner ends
 * an exchange that runs late itself, and only a dead or stuck owner's
 * claim is taken over.
 */
#define NGX_HTTP_IMBURSE_CLAIM_GRACE 1000


typedef struct {
    ngx_uint_t                 layout;
    ngx_queue_t                entries;
} ngx_http_imburse_shctx_t;


struct ngx_http_imburse_entry_s {
    ngx_queue_t                queue;
    ngx_str_t                  name;

    /* the key that obtained the token: a changed key never reuses it */
    u_char                     key_fp[IMBURSE_SHA256_LEN];
    u_char                    *token;
    size_t                     token_len;
    size_t                     token_size;
    int64_t                    expires_ms;
    int64_t                    refresh_ms;
    int64_t                    obtained_ms;     /* issued */
    int64_t                    stored_ms;       /* put here */
    u_char                     token_fp[IMBURSE_FP_HEX_LEN];

    ngx_atomic_t               version;

    /* single flight: a dead owner's claim ends at its deadline */
    ngx_pid_t                  owner;
    ngx_msec_t                 deadline;
    ngx_uint_t                 claim;

    ngx_msec_t                 retry_at;
    ngx_msec_t                 backoff;

    /* the identity service's clock minus ours, where applied */
    int64_t                    clock_offset_ms;

    ngx_uint_t                 exchanges;
    ngx_uint_t                 failures;
    ngx_uint_t                 consecutive_failures;
    ngx_uint_t                 revocations;
    ngx_uint_t                 unrevoked_401;
    u_char                     revoked[IMBURSE_SHA256_LEN];
    u_char                     config_fp[IMBURSE_SHA256_LEN];
    int64_t                    last_exchange_ms;
    u_char                     last_error[NGX_HTTP_IMBURSE_ERROR_LEN];

    ngx_uint_t                 fleet_hits;
    ngx_uint_t                 fleet_locks_taken;
    ngx_uint_t                 fleet_locks_lost;
    ngx_uint_t                 fleet_errors;
    ngx_msec_t                 fleet_skip_until;
    unsigned                   fleet_down:1;
    unsigned                   warned_401:1;    /* for this token */
    unsigned                   from_fleet:1;    /* the token's origin */
};


static ngx_int_t ngx_http_imburse_store_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_imburse_entry_t *ngx_http_imburse_store_entry(
    ngx_slab_pool_t *shpool, ngx_http_imburse_shctx_t *sh, ngx_str_t *name);
static void ngx_http_imburse_store_claim(ngx_http_imburse_entry_t *e,
    ngx_http_imburse_key_t *key, ngx_http_imburse_lookup_t *lk);
static void ngx_http_imburse_store_unclaim(ngx_http_imburse_entry_t *e,
    ngx_uint_t claim);
static void ngx_http_imburse_store_cache(ngx_http_imburse_key_t *key,
    ngx_http_imburse_lookup_t *lk);


static ngx_str_t  ngx_http_imburse_zone_name = ngx_string("imburse_auth");


ngx_int_t
ngx_http_imburse_store_add_zone(ngx_conf_t *cf,
    ngx_http_imburse_main_conf_t *imcf)
{
    ngx_shm_zone_t  *shm_zone;

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_imburse_zone_name,
                                     imcf->zone_size,
                                     &ngx_http_imburse_auth_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_imburse_store_init_zone;
    shm_zone->data = imcf;
    shm_zone->noreuse = 0;

    imcf->shm_zone = shm_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_imburse_main_conf_t  *imcf = shm_zone->data;

    size_t                     len;
    ngx_uint_t                 i;
    ngx_slab_pool_t           *shpool;
    ngx_http_imburse_key_t    *key;
    ngx_http_imburse_shctx_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    sh = NULL;

    if (data || shm_zone->shm.exists) {
        sh = shpool->data;

        if (sh->layout != NGX_HTTP_IMBURSE_LAYOUT) {
            ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                          "imburse zone layout changed, tokens dropped");
            sh = NULL;
        }
    }

    ngx_shmtx_lock(&shpool->mutex);

    if (sh == NULL) {
        sh = ngx_slab_alloc_locked(shpool, sizeof(ngx_http_imburse_shctx_t));
        if (sh == NULL) {
            goto nomem;
        }

        sh->layout = NGX_HTTP_IMBURSE_LAYOUT;
        ngx_queue_init(&sh->entries);
        shpool->data = sh;

        len = sizeof(" in imburse zone \"\"") + shm_zone->shm.name.len;

        shpool->log_ctx = ngx_slab_alloc_locked(shpool, len);
        if (shpool->log_ctx == NULL) {
            goto nomem;
        }

        ngx_sprintf(shpool->log_ctx, " in imburse zone \"%V\"%Z",
                    &shm_zone->shm.name);

        shpool->log_nomem = 0;
    }

    key = imcf->keys.elts;

    for (i = 0; i < imcf->keys.nelts; i++) {
        key[i].shpool = shpool;
        key[i].entry = ngx_http_imburse_store_entry(shpool, sh, &key[i].name);

        if (key[i].entry == NULL) {
            goto nomem;
        }

        /* a corrected key must not wait out the old key's back-off */

        if (ngx_memcmp(key[i].entry->config_fp, key[i].fingerprint,
                       IMBURSE_SHA256_LEN)
            != 0)
        {
            ngx_memcpy(key[i].entry->config_fp, key[i].fingerprint,
                       IMBURSE_SHA256_LEN);
            key[i].entry->backoff = 0;
            key[i].entry->retry_at = ngx_current_msec;
            key[i].entry->consecutive_failures = 0;
            key[i].entry->fleet_down = 0;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;

nomem:

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "imburse zone \"%V\" is too small for %ui keys",
                  &shm_zone->shm.name, imcf->keys.nelts);

    return NGX_ERROR;
}


/*
 * Entries are found by name, so a reload keeps tokens.  Entries of keys
 * that left the configuration stay: workers of the old cycle may still be
 * using them.
 */

static ngx_http_imburse_entry_t *
ngx_http_imburse_store_entry(ngx_slab_pool_t *shpool,
    ngx_http_imburse_shctx_t *sh, ngx_str_t *name)
{
    ngx_queue_t               *q;
    ngx_http_imburse_entry_t  *e;

    for (q = ngx_queue_head(&sh->entries);
         q != ngx_queue_sentinel(&sh->entries);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_imburse_entry_t, queue);

        if (e->name.len == name->len
            && ngx_strncmp(e->name.data, name->data, name->len) == 0)
        {
            return e;
        }
    }

    e = ngx_slab_calloc_locked(shpool,
                               sizeof(ngx_http_imburse_entry_t) + name->len);
    if (e == NULL) {
        return NULL;
    }

    e->name.data = (u_char *) e + sizeof(ngx_http_imburse_entry_t);
    e->name.len = name->len;
    ngx_memcpy(e->name.data, name->data, name->len);

    ngx_queue_insert_tail(&sh->entries, &e->queue);

    return e;
}


ngx_int_t
ngx_http_imburse_store_get(ngx_http_imburse_key_t *key, ngx_pool_t *pool,
    size_t prefix, int64_t now_ms, ngx_http_imburse_lookup_t *lk)
{
    u_char                    *p;
    size_t                     size;
    ngx_int_t                  action;
    ngx_http_imburse_entry_t  *e;

    e = key->entry;

    ngx_memzero(lk, sizeof(ngx_http_imburse_lookup_t));

    /*
     * The hot path: this worker's copy, while nothing changed in the zone
     * (every change of the key bumps its version) and no refresh is due.
     * No lock, no shared memory but one word.
     */

    if (key->cache_len
        && key->cache_version == ngx_http_imburse_store_version(key)
        && now_ms < key->cache_refresh_ms
        && now_ms < key->cache_expires_ms)
    {
        p = ngx_pnalloc(pool, prefix + key->cache_len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        lk->token.data = p + prefix;
        lk->token.len = key->cache_len;
        ngx_memcpy(lk->token.data, key->cache, key->cache_len);
        lk->expires_ms = key->cache_expires_ms;
        lk->refresh_ms = key->cache_refresh_ms;
        lk->from_fleet = key->cache_from_fleet;
        lk->version = key->cache_version;

        return NGX_HTTP_IMBURSE_USE;
    }

    /* allocated before the lock: its size is the cached token's, usually */

    size = prefix + ngx_max(key->token_hint, 2048);

    p = ngx_pnalloc(pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&key->shpool->mutex);

    lk->version = e->version;

    if (e->token_len
        && now_ms < e->expires_ms
        && ngx_memcmp(e->key_fp, key->fingerprint, IMBURSE_SHA256_LEN) == 0)
    {
        if (prefix + e->token_len > size) {
            /* a token bigger than we guessed: look again with its size */
            key->token_hint = e->token_len;
            ngx_shmtx_unlock(&key->shpool->mutex);

            return ngx_http_imburse_store_get(key, pool, prefix, now_ms, lk);
        }

        lk->token.data = p + prefix;
        lk->token.len = e->token_len;
        ngx_memcpy(lk->token.data, e->token, e->token_len);
        lk->expires_ms = e->expires_ms;
        lk->refresh_ms = e->refresh_ms;
        lk->from_fleet = e->from_fleet;

        action = NGX_HTTP_IMBURSE_USE;

        if (now_ms >= e->refresh_ms) {
            lk->stale = (e->consecutive_failures > 0);

            if ((e->owner == 0
                 || (ngx_msec_int_t) (ngx_current_msec - e->deadline) >= 0)
                && (ngx_msec_int_t) (ngx_current_msec - e->retry_at) >= 0)
            {
                ngx_http_imburse_store_claim(e, key, lk);
                action = NGX_HTTP_IMBURSE_USE_REFRESH;
            }
        }

    } else if (e->owner
               && (ngx_msec_int_t) (ngx_current_msec - e->deadline) < 0)
    {
        lk->wait = e->deadline;
        action = NGX_HTTP_IMBURSE_WAIT;

    } else if ((ngx_msec_int_t) (e->retry_at - ngx_current_msec) > 0) {
        lk->wait = e->retry_at - ngx_current_msec;
        action = NGX_HTTP_IMBURSE_BACKOFF;

    } else {
        ngx_http_imburse_store_claim(e, key, lk);
        action = NGX_HTTP_IMBURSE_EXCHANGE;
    }

    ngx_shmtx_unlock(&key->shpool->mutex);

    if (action == NGX_HTTP_IMBURSE_USE) {
        ngx_http_imburse_store_cache(key, lk);
    }

    return action;
}


static void
ngx_http_imburse_store_cache(ngx_http_imburse_key_t *key,
    ngx_http_imburse_lookup_t *lk)
{
    if (lk->token.len > key->cache_size) {

        /*
         * The worker's cycle pool goes with the worker; a token grows
         * rarely, so an outgrown buffer may stay there until then.
         */

        key->cache = ngx_pnalloc(ngx_cycle->pool, lk->token.len);
        key->cache_size = key->cache ? lk->token.len : 0;
        key->cache_len = 0;

        if (key->cache == NULL) {
            return;
        }
    }

    ngx_memcpy(key->cache, lk->token.data, lk->token.len);
    key->cache_len = lk->token.len;
    key->cache_version = lk->version;
    key->cache_expires_ms = lk->expires_ms;
    key->cache_refresh_ms = lk->refresh_ms;
    key->cache_from_fleet = lk->from_fleet;
}


static void
ngx_http_imburse_store_claim(ngx_http_imburse_entry_t *e,
    ngx_http_imburse_key_t *key, ngx_http_imburse_lookup_t *lk)
{
    if (e->owner) {
        lk->taken_from = e->owner;
    }

    e->owner = ngx_pid;
    e->deadline = ngx_current_msec + key->timeout
                  + NGX_HTTP_IMBURSE_CLAIM_GRACE;
    lk->claim = ++e->claim;
}


static void
ngx_http_imburse_store_unclaim(ngx_http_imburse_entry_t *e, ngx_uint_t claim)
{
    if (e->claim == claim) {
        e->owner = 0;
    }

    e->version++;
}


int64_t
ngx_http_imburse_store_refresh_at(ngx_http_imburse_key_t *key,
    int64_t expires_ms, int64_t obtained_ms, ngx_uint_t jitter)
{
    int64_t  window;

    /*
     * Refresh ahead by "refresh", at most half the lifetime, less up to a
     * twentieth at random so that a fleet does not refresh in step.
     */

    window = ngx_min((int64_t) key->refresh,
                     ngx_max(expires_ms - obtained_ms, 0) / 2);
    if (jitter) {
        window -= (int64_t) (ngx_random() % (window / 20 + 1));
    }

    return expires_ms - window;
}


ngx_int_t
ngx_http_imburse_store_put(ngx_http_imburse_key_t *key, ngx_uint_t claim,
    ngx_str_t *token, int64_t expires_ms, int64_t obtained_ms,
    ngx_uint_t from_fleet, ngx_log_t *log)
{
    u_char                    *p;
    int64_t                    refresh_ms;
    ngx_slab_pool_t           *shpool;
    ngx_http_imburse_entry_t  *e;

    e = key->entry;
    shpool = key->shpool;

    refresh_ms = ngx_http_imburse_store_refresh_at(key, expires_ms,
                                                   obtained_ms, 1);

    ngx_shmtx_lock(&shpool->mutex);

    /* taken over meanwhile: the newer exchange's token is the one */

    if (e->claim != claim) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_ABORT;
    }

    if (token->len > e->token_size) {
        p = ngx_slab_alloc_locked(shpool, token->len);

        if (p == NULL) {
            ngx_shmtx_unlock(&shpool->mutex);

            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "imburse key \"%V\": token of %uz bytes does not "
                          "fit in the imburse zone, increase imburse_zone",
                          &key->name, token->len);

            /* the caller fails the exchange: the claim is still its own */
            return NGX_DECLINED;
        }

        if (e->token) {
            ngx_slab_free_locked(shpool, e->token);
        }

        e->token = p;
        e->token_size = token->len;
    }

    ngx_memcpy(e->token, token->data, token->len);
    e->token_len = token->len;
    e->expires_ms = expires_ms;
    e->refresh_ms = refresh_ms;
    e->obtained_ms = obtained_ms;
    e->stored_ms = ngx_http_imburse_now_ms();
    e->warned_401 = 0;
    e->from_fleet = from_fleet ? 1 : 0;
    ngx_memcpy(e->key_fp, key->fingerprint, IMBURSE_SHA256_LEN);
    imburse_fingerprint((char *) e->token_fp, token->data, token->len);

    if (from_fleet) {
        e->fleet_hits++;

    } else {
        e->exchanges++;
        e->last_exchange_ms = obtained_ms;
    }

    e->consecutive_failures = 0;
    e->backoff = 0;
    e->retry_at = ngx_current_msec;
    e->last_error[0] = '\0';

    ngx_http_imburse_store_unclaim(e, claim);

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


void
ngx_http_imburse_store_fail(ngx_http_imburse_key_t *key, ngx_uint_t claim,
    int64_t now_ms, const char *cause, ngx_msec_t at_least)
{
    ngx_msec_t                 delay;
    ngx_http_imburse_entry_t  *e;

    e = key->entry;

    ngx_shmtx_lock(&key->shpool->mutex);

    e->exchanges++;
    e->failures++;

    /*
     * A late result of a claim taken over by another request says nothing
     * about the key now: it may have a fresh token already.
     */

    if (e->claim == claim) {

        /* "retry" doubling up to a minute, plus up to a tenth at random */

        if (e->backoff == 0) {
            e->backoff = key->retry;

        } else if (e->backoff < NGX_HTTP_IMBURSE_BACKOFF_MAX) {
            e->backoff = ngx_min(e->backoff * 2,
                                 ngx_max(NGX_HTTP_IMBURSE_BACKOFF_MAX,
                                         key->retry));
        }

        delay = e->backoff + (ngx_msec_t) ngx_random() % (e->backoff / 10 + 1);

        /* the identity service's Retry-After, when later */
        delay = ngx_max(delay, at_least);

        e->retry_at = ngx_current_msec + delay;
        e->consecutive_failures++;
        e->last_exchange_ms = now_ms;
        ngx_cpystrn(e->last_error, (u_char *) cause, sizeof(e->last_error));
    }

    ngx_http_imburse_store_unclaim(e, claim);

    ngx_shmtx_unlock(&key->shpool->mutex);
}


ngx_int_t
ngx_http_imburse_store_refresh_due(ngx_http_imburse_key_t *key,
    int64_t now_ms, int64_t used_ms, ngx_uint_t *claim, ngx_msec_t *delay)
{
    ngx_int_t                  rc;
    ngx_msec_int_t             d;
    ngx_http_imburse_entry_t  *e;

    e = key->entry;
    *claim = 0;
    *delay = 0;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&key->shpool->mutex);

    if (e->token_len == 0 || now_ms >= e->expires_ms
        || used_ms < e->stored_ms
        || ngx_memcmp(e->key_fp, key->fingerprint, IMBURSE_SHA256_LEN) != 0)
    {
        goto done;
    }

    rc = NGX_AGAIN;

    if (now_ms < e->refresh_ms) {
        *delay = (ngx_msec_t) (e->refresh_ms - now_ms);
        goto done;
    }

    if (e->owner && (d = e->deadline - ngx_current_msec) > 0) {
        *delay = (ngx_msec_t) d;
        goto done;
    }

    if ((d = e->retry_at - ngx_current_msec) > 0) {
        *delay = (ngx_msec_t) d;
        goto done;
    }

    e->owner = ngx_pid;
    e->deadline = ngx_current_msec + key->timeout
                  + NGX_HTTP_IMBURSE_CLAIM_GRACE;
    *claim = ++e->claim;
    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&key->shpool->mutex);

    return rc;
}


void
ngx_http_imburse_store_release(ngx_http_imburse_key_t *key, ngx_uint_t claim)
{
    ngx_shmtx_lock(&key->shpool->mutex);
    ngx_http_imburse_store_unclaim(key->entry, claim);
    ngx_shmtx_unlock(&key->shpool->mutex);
}


void
ngx_http_imburse_store_extend(ngx_http_imburse_key_t *key, ngx_uint_t claim,
    ngx_msec_t timeout)
{
    ngx_http_imburse_entry_t  *e;

    e = key->entry;

    ngx_shmtx_lock(&key->shpool->mutex);

    if (e->owner == ngx_pid && e->claim == claim) {
        e->deadline = ngx_current_msec + timeout
                      + NGX_HTTP_IMBURSE_CLAIM_GRACE;
    }

    ngx_shmtx_unlock(&key->shpool->mutex);
}


void
ngx_http_imburse_store_defer(ngx_http_imburse_key_t *key, ngx_uint_t claim,
    ngx_msec_t delay)
{
    ngx_http_imburse_entry_t  *e;

    e = key->entry;

    ngx_shmtx_lock(&key->shpool->mutex);

    if (e->claim == claim) {
        e->retry_at = ngx_current_msec + delay;
    }

    ngx_http_imburse_store_unclaim(e, claim);

    ngx_shmtx_unlock(&key->shpool->mutex);
}


ngx_uint_t
ngx_http_imburse_store_fleet(ngx_http_imburse_key_t *key,
    ngx_http_imburse_fleet_event_e event)
{
    ngx_uint_t                 changed;
    ngx_http_imburse_entry_t  *e;

    e = key->entry;
    changed = 0;

    ngx_shmtx_lock(&key->shpool->mutex);

    switch (event) {

    case NGX_HTTP_IMBURSE_FLEET_HIT:
        /* counted by ngx_http_imburse_store_put() */
        break;

    case NGX_HTTP_IMBURSE_FLEET_LOCK_TAKEN:
        e->fleet_locks_taken++;
        break;

    case NGX_HTTP_IMBURSE_FLEET_LOCK_LOST:
        e->fleet_locks_lost++;
        break;

    case NGX_HTTP_IMBURSE_FLEET_ERROR:
        e->fleet_errors++;
        e->fleet_skip_until = ngx_current_msec + key->retry;
        changed = !e->fleet_down;
        e->fleet_down = 1;
        break;

    case NGX_HTTP_IMBURSE_FLEET_OK:
        changed = e->fleet_down;
        e->fleet_down = 0;
        break;
    }

    ngx_shmtx_unlock(&key->shpool->mutex);

    return changed;
}


ngx_uint_t
ngx_http_imburse_store_fleet_usable(ngx_http_imburse_key_t *key)
{
    ngx_http_imburse_entry_t  *e;

    e = key->entry;

    /* one word, read without the lock: a stale value costs one attempt */

    return !((volatile ngx_http_imburse_entry_t *) e)->fleet_down
           || (ngx_msec_int_t) (ngx_current_msec - e->fleet_skip_until) >= 0;
}


ngx_int_t
ngx_http_imburse_store_revoke(ngx_http_imburse_key_t *key, ngx_str_t *token,
    int64_t now_ms, ngx_uint_t *first)
{
    ngx_int_t                  rc;
    ngx_http_imburse_entry_t  *e;

    e = key->entry;
    rc = NGX_DECLINED;
    *first = 0;

    ngx_shmtx_lock(&key->shpool->mutex);

    if (e->token_len == token->len
        && e->expires_ms != 0
        && ngx_memcmp(e->token, token->data, token->len) == 0
        && ngx_memcmp(e->key_fp, key->fingerprint, IMBURSE_SHA256_LEN) == 0)
    {
        if (now_ms - e->stored_ms < (int64_t) key->retry) {
            /* a 401 for a token this young is not the token's doing */
            e->unrevoked_401++;
            *first = !e->warned_401;
            e->warned_401 = 1;
            rc = NGX_BUSY;

        } else {
            e->expires_ms = 0;
            e->revocations++;
            e->version++;
            imburse_sha256(e->revoked, token->data, token->len);
            rc = NGX_OK;
        }
    }

    ngx_shmtx_unlock(&key->shpool->mutex);

    return rc;
}


ngx_uint_t
ngx_http_imburse_store_revoked(ngx_http_imburse_key_t *key, ngx_str_t *token)
{
    ngx_uint_t  revoked;
    u_char      md[IMBURSE_SHA256_LEN];

    imburse_sha256(md, token->data, token->len);

    ngx_shmtx_lock(&key->shpool->mutex);
    revoked = (ngx_memcmp(key->entry->revoked, md, IMBURSE_SHA256_LEN) == 0);
    ngx_shmtx_unlock(&key->shpool->mutex);

    return revoked;
}


int64_t
ngx_http_imburse_store_clock(ngx_http_imburse_key_t *key)
{
    /* one aligned word, read without the lock */
    return ((volatile ngx_http_imburse_entry_t *) key->entry)->clock_offset_ms;
}


int64_t
ngx_http_imburse_store_set_clock(ngx_http_imburse_key_t *key,
    int64_t offset_ms)
{
    int64_t                    old;
    ngx_http_imburse_entry_t  *e;

    e = key->entry;

    ngx_shmtx_lock(&key->shpool->mutex);

    old = e->clock_offset_ms;
    e->clock_offset_ms = offset_ms;

    if (old != offset_ms) {
        /* expiry decisions change: the workers' copies are stale */
        e->version++;
    }

    ngx_shmtx_unlock(&key->shpool->mutex);

    return old;
}


ngx_uint_t
ngx_http_imburse_store_version(ngx_http_imburse_key_t *key)
{
    return (ngx_uint_t) ((volatile ngx_http_imburse_entry_t *) key->entry)
                        ->version;
}


ngx_msec_t
ngx_http_imburse_store_claim_deadline(ngx_http_imburse_key_t *key)
{
    return ((volatile ngx_http_imburse_entry_t *) key->entry)->deadline;
}


void
ngx_http_imburse_store_zone_usage(ngx_http_imburse_main_conf_t *imcf,
    size_t *size, size_t *free)
{
    ngx_slab_pool_t  *shpool;

    *size = 0;
    *free = 0;

    if (imcf->shm_zone == NULL) {
        return;
    }

    shpool = (ngx_slab_pool_t *) imcf->shm_zone->shm.addr;

    ngx_shmtx_lock(&shpool->mutex);
    *size = imcf->shm_zone->shm.size;
    *free = shpool->pfree * ngx_pagesize;
    ngx_shmtx_unlock(&shpool->mutex);
}


void
ngx_http_imburse_store_stats(ngx_http_imburse_key_t *key, int64_t now_ms,
    ngx_http_imburse_key_stats_t *st)
{
    ngx_http_imburse_entry_t  *e;

    e = key->entry;

    ngx_shmtx_lock(&key->shpool->mutex);

    /* on the identity service's clock, as "expires" is */
    now_ms += e->clock_offset_ms;

    st->exchanges = e->exchanges;
    st->failures = e->failures;
    st->consecutive_failures = e->consecutive_failures;
    st->revocations = e->revocations;
    st->unrevoked_401 = e->unrevoked_401;
    st->clock_offset_ms = e->clock_offset_ms;
    st->next_attempt_ms = ((ngx_msec_int_t) (e->retry_at - ngx_current_msec)
                           > 0) ? e->retry_at - ngx_current_msec : 0;
    st->fleet_hits = e->fleet_hits;
    st->fleet_locks_taken = e->fleet_locks_taken;
    st->fleet_locks_lost = e->fleet_locks_lost;
    st->fleet_errors = e->fleet_errors;
    st->fleet_down = e->fleet_down;
    st->expires_ms = e->expires_ms;
    st->last_exchange_ms = e->last_exchange_ms;
    ngx_memcpy(st->last_error, e->last_error, sizeof(st->last_error));
    ngx_memcpy(st->token_fp, e->token_fp, IMBURSE_FP_HEX_LEN);
    st->valid = (e->token_len && now_ms < e->expires_ms
                 && ngx_memcmp(e->key_fp, key->fingerprint,
                               IMBURSE_SHA256_LEN) == 0);
    st->expires_in = st->valid ? (e->expires_ms - now_ms) / 1000 : 0;
    st->in_flight = (e->owner
                     && (ngx_msec_int_t) (ngx_current_msec - e->deadline) < 0);

    ngx_shmtx_unlock(&key->shpool->mutex);
}
