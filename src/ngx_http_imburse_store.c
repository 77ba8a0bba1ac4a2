/*
 * The token store's per-key operations (the zone's life is in
 * ngx_http_imburse_zone.c).
 *
 * Critical sections are a few loads and stores and, on a hit, one copy of
 * the token: no I/O and no logging happens under the zone's mutex.
 */

#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_zone.h"


#define NGX_HTTP_IMBURSE_BACKOFF_MAX 60000

/* the claim of a dequeued key lasts this long until its exchange starts */
#define NGX_HTTP_IMBURSE_QUEUED_START 10000


static ngx_int_t ngx_http_imburse_store_claim(ngx_http_imburse_shctx_t *sh,
    ngx_http_imburse_entry_t *e, ngx_http_imburse_key_t *key,
    ngx_http_imburse_lookup_t *lk, ngx_uint_t warm);
static void ngx_http_imburse_store_lapse(ngx_http_imburse_shctx_t *sh);
static ngx_uint_t ngx_http_imburse_store_full(ngx_http_imburse_shctx_t *sh);
static void ngx_http_imburse_store_unclaim(ngx_http_imburse_shctx_t *sh,
    ngx_http_imburse_entry_t *e, ngx_uint_t claim);
static void ngx_http_imburse_store_cache(ngx_http_imburse_key_t *key,
    ngx_http_imburse_lookup_t *lk);
static void ngx_http_imburse_store_key_stats(ngx_http_imburse_key_t *key,
    int64_t now_ms, ngx_http_imburse_key_stats_t *st);


ngx_int_t
ngx_http_imburse_store_get(ngx_http_imburse_key_t *key, ngx_pool_t *pool,
    size_t prefix, int64_t now_ms, ngx_http_imburse_lookup_t *lk)
{
    u_char                    *p;
    size_t                     size;
    ngx_int_t                  action;
    ngx_http_imburse_entry_t  *e;
    ngx_http_imburse_shctx_t  *sh;

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

    sh = key->shpool->data;

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
                && (ngx_msec_int_t) (ngx_current_msec - e->retry_at) >= 0
                && ngx_http_imburse_store_claim(sh, e, key, lk, 1) == NGX_OK)
            {
                action = NGX_HTTP_IMBURSE_USE_REFRESH;
            }
        }

    } else if (e->owner
               && (ngx_msec_int_t) (ngx_current_msec - e->deadline) < 0)
    {
        lk->wait = e->deadline;
        lk->owner = e->owner;
        action = NGX_HTTP_IMBURSE_WAIT;

    } else if ((ngx_msec_int_t) (e->retry_at - ngx_current_msec) > 0) {
        lk->wait = e->retry_at - ngx_current_msec;
        action = NGX_HTTP_IMBURSE_BACKOFF;

    } else if (ngx_http_imburse_store_claim(sh, e, key, lk, 0) == NGX_OK) {
        action = NGX_HTTP_IMBURSE_EXCHANGE;

    } else {
        /* queued behind the exchanges in flight: any worker may start it */
        lk->wait = ngx_current_msec + key->timeout;
        lk->queued = 1;
        action = NGX_HTTP_IMBURSE_WAIT;
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


/*
 * The key's exchange for this worker, if the instance runs fewer than
 * imburse_exchange_concurrency exchanges (a dead or stuck owner's exchange
 * taken over keeps its slot); otherwise the key queues, those without a
 * token ahead of the refreshes.  NGX_OK: claimed; NGX_BUSY: queued.
 */

static ngx_int_t
ngx_http_imburse_store_claim(ngx_http_imburse_shctx_t *sh,
    ngx_http_imburse_entry_t *e, ngx_http_imburse_key_t *key,
    ngx_http_imburse_lookup_t *lk, ngx_uint_t warm)
{
    if (!e->flying && ngx_http_imburse_store_full(sh)) {

        if (!e->queued) {
            ngx_queue_insert_tail(warm ? &sh->warm : &sh->cold, &e->qlink);
            e->queued = 1;
            sh->queued++;
        }

        return NGX_BUSY;
    }

    if (e->queued) {
        ngx_queue_remove(&e->qlink);
        e->queued = 0;
        sh->queued--;
    }

    if (!e->flying) {
        ngx_queue_insert_tail(&sh->flying, &e->flink);
        e->flying = 1;
        sh->in_flight++;
    }

    if (e->owner) {
        lk->taken_from = e->owner;
    }

    e->owner = ngx_pid;
    e->deadline = ngx_current_msec + key->timeout
                  + NGX_HTTP_IMBURSE_CLAIM_GRACE;
    lk->claim = ++e->claim;

    return NGX_OK;
}


/* the slots of exchanges whose owner died or is stuck past its claim */

/*
 * Whether every place under imburse_exchange_concurrency is taken, once
 * the places of exchanges past their deadline (a worker that died) are
 * given back.
 */

static ngx_uint_t
ngx_http_imburse_store_full(ngx_http_imburse_shctx_t *sh)
{
    if (sh->in_flight >= sh->concurrency) {
        ngx_http_imburse_store_lapse(sh);
    }

    return sh->in_flight >= sh->concurrency;
}


static void
ngx_http_imburse_store_lapse(ngx_http_imburse_shctx_t *sh)
{
    ngx_queue_t               *q, *next;
    ngx_http_imburse_entry_t  *e;

    for (q = ngx_queue_head(&sh->flying);
         q != ngx_queue_sentinel(&sh->flying);
         q = next)
    {
        next = ngx_queue_next(q);
        e = ngx_queue_data(q, ngx_http_imburse_entry_t, flink);

        if ((ngx_msec_int_t) (ngx_current_msec - e->deadline) >= 0) {
            ngx_queue_remove(&e->flink);
            e->flying = 0;
            sh->in_flight--;
        }
    }
}


static void
ngx_http_imburse_store_unclaim(ngx_http_imburse_shctx_t *sh,
    ngx_http_imburse_entry_t *e, ngx_uint_t claim)
{
    if (e->claim == claim) {
        e->owner = 0;

        if (e->flying) {
            ngx_queue_remove(&e->flink);
            e->flying = 0;
            sh->in_flight--;
        }
    }

    e->version++;
}


/*
 * The queues are shared by the workers of every configuration still
 * running: during a reload, a key queued by an older worker may be one
 * this worker does not have.  It stays queued for the workers that have
 * it (or until the zone frees the entries of keys no longer configured).
 */

ngx_http_imburse_key_t *
ngx_http_imburse_store_dequeue(ngx_http_imburse_main_conf_t *imcf,
    ngx_slab_pool_t *shpool, ngx_uint_t *claim, ngx_uint_t *warm)
{
    ngx_uint_t                 i;
    ngx_queue_t               *q, *queue[2];
    ngx_http_imburse_key_t    *key;
    ngx_http_imburse_entry_t  *e;
    ngx_http_imburse_shctx_t  *sh;

    sh = shpool->data;
    key = NULL;
    e = NULL;

    ngx_shmtx_lock(&shpool->mutex);

    if (!sh->queued || ngx_http_imburse_store_full(sh)) {
        goto done;
    }

    queue[0] = &sh->cold;
    queue[1] = &sh->warm;

    for (i = 0; i < 2 && key == NULL; i++) {
        for (q = ngx_queue_head(queue[i]);
             q != ngx_queue_sentinel(queue[i]);
             q = ngx_queue_next(q))
        {
            e = ngx_queue_data(q, ngx_http_imburse_entry_t, qlink);
            key = ngx_http_imburse_find_key(imcf, &e->sn.str);

            if (key && key->entry == e) {
                *warm = i;
                break;
            }

            key = NULL;
        }
    }

    if (key == NULL) {
        goto done;
    }

    ngx_queue_remove(&e->qlink);
    e->queued = 0;
    sh->queued--;

    ngx_queue_insert_tail(&sh->flying, &e->flink);
    e->flying = 1;
    sh->in_flight++;

    e->owner = ngx_pid;
    e->deadline = ngx_current_msec + NGX_HTTP_IMBURSE_QUEUED_START;
    *claim = ++e->claim;

done:

    ngx_shmtx_unlock(&shpool->mutex);

    return key;
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

        if (p == NULL
            && ngx_http_imburse_zone_sweep_tokens(shpool, shpool->data,
                                                  ngx_http_imburse_now_ms(),
                                                  1))
        {
            /* expired tokens gave their memory back: once more */
            p = ngx_slab_alloc_locked(shpool, token->len);
        }

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

    ngx_http_imburse_store_unclaim(key->shpool->data, e, claim);

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

    ngx_http_imburse_store_unclaim(key->shpool->data, e, claim);

    ngx_shmtx_unlock(&key->shpool->mutex);
}


ngx_int_t
ngx_http_imburse_store_refresh_due(ngx_http_imburse_key_t *key,
    int64_t now_ms, int64_t used_ms, ngx_uint_t *claim, ngx_msec_t *delay)
{
    ngx_int_t                  rc;
    ngx_msec_int_t             d;
    ngx_http_imburse_entry_t  *e;
    ngx_http_imburse_lookup_t  lk;

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

    if (e->queued) {
        /* whichever worker frees a slot starts it */
        rc = NGX_DECLINED;
        goto done;
    }

    ngx_memzero(&lk, sizeof(ngx_http_imburse_lookup_t));

    rc = ngx_http_imburse_store_claim(key->shpool->data, e, key, &lk, 1);
    *claim = lk.claim;

    if (rc == NGX_BUSY) {
        rc = NGX_DECLINED;
    }

done:

    ngx_shmtx_unlock(&key->shpool->mutex);

    return rc;
}


void
ngx_http_imburse_store_release(ngx_http_imburse_key_t *key, ngx_uint_t claim)
{
    ngx_shmtx_lock(&key->shpool->mutex);
    ngx_http_imburse_store_unclaim(key->shpool->data, key->entry, claim);
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

    ngx_http_imburse_store_unclaim(key->shpool->data, e, claim);

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


/* n keys' figures under one hold of the lock */

void
ngx_http_imburse_store_stats(ngx_http_imburse_key_t *keys, ngx_uint_t n,
    int64_t now_ms, ngx_http_imburse_key_stats_t *stats)
{
    ngx_uint_t  i;

    if (n == 0) {
        return;
    }

    ngx_shmtx_lock(&keys[0].shpool->mutex);

    for (i = 0; i < n; i++) {
        ngx_http_imburse_store_key_stats(&keys[i], now_ms, &stats[i]);
    }

    ngx_shmtx_unlock(&keys[0].shpool->mutex);
}


static void
ngx_http_imburse_store_key_stats(ngx_http_imburse_key_t *key, int64_t now_ms,
    ngx_http_imburse_key_stats_t *st)
{
    ngx_http_imburse_entry_t  *e;

    e = key->entry;

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
    st->queued = e->queued;
}
