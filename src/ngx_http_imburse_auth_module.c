/*
 * Copyright (C) nginx-imburse-auth contributors
 *
 * Injects an Imburse management bearer token into proxied requests.  The
 * token is obtained through an HMAC-signed subrequest and shared by all
 * workers through a shared-memory zone.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_exchange.h"
#include "ngx_http_imburse_location.h"
#include "ngx_http_imburse_store.h"


static ngx_int_t ngx_http_imburse_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_imburse_exchange_subrequest(ngx_http_request_t *r);
static ngx_int_t ngx_http_imburse_resolve(ngx_http_request_t *r,
    ngx_http_imburse_loc_conf_t *ilcf, ngx_http_imburse_key_t **key);
static ngx_int_t ngx_http_imburse_lookup(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx);

static ngx_int_t ngx_http_imburse_exchange_location(ngx_conf_t *cf,
    ngx_http_imburse_key_t *key);
static ngx_int_t ngx_http_imburse_internal_location(ngx_conf_t *cf,
    ngx_http_imburse_key_t *key, const char *param, ngx_str_t *uri,
    ngx_http_core_loc_conf_t *clcf);

static ngx_int_t ngx_http_imburse_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_imburse_init_process(ngx_cycle_t *cycle);
static void ngx_http_imburse_exit_process(ngx_cycle_t *cycle);

static ngx_int_t ngx_http_imburse_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_imburse_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_imburse_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_imburse_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_imburse_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_imburse_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

static char *ngx_http_imburse_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_imburse_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_imburse_concurrency(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_imburse_commands[] = {

    { ngx_string("imburse_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_imburse_api_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("imburse_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_imburse_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("imburse_exchange_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_imburse_concurrency,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_imburse_main_conf_t, concurrency),
      NULL },

    { ngx_string("imburse_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_imburse_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("imburse_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_imburse_auth,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_imburse_auth_module_ctx = {
    ngx_http_imburse_preconfiguration,     /* preconfiguration */
    ngx_http_imburse_postconfiguration,    /* postconfiguration */

    ngx_http_imburse_create_main_conf,     /* create main configuration */
    ngx_http_imburse_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_imburse_create_loc_conf,      /* create location configuration */
    ngx_http_imburse_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_imburse_auth_module = {
    NGX_MODULE_V1,
    &ngx_http_imburse_auth_module_ctx,     /* module context */
    ngx_http_imburse_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_imburse_init_module,          /* init module */
    ngx_http_imburse_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_imburse_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_imburse_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_imburse_key_t       *key;
    ngx_http_imburse_ctx_t       *ctx, *prev, *above;
    ngx_http_imburse_loc_conf_t  *ilcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_auth_module);

    if (ctx) {
        if (ctx->waiter && ctx->waiter->waiting) {
            /* woken by something else than the end of the wait */
            return NGX_AGAIN;
        }

        /* our own exchange subrequests carry no token */
        return ctx->request ? ngx_http_imburse_lookup(r, ctx) : NGX_DECLINED;
    }

    if (ngx_http_imburse_exchange_subrequest(r)) {
        return NGX_DECLINED;
    }

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_imburse_auth_module);

    /* after an internal redirect: what the request did before it */

    prev = r->internal ? ngx_http_imburse_find_ctx(r) : NULL;

    if (prev) {
        ngx_http_imburse_revoke_check(r, prev);
    }

    /* a subrequest shares the header list of the request it came from */

    above = (r != r->main && prev == NULL)
            ? ngx_http_imburse_injected_above(r) : NULL;

    if (!ilcf->enable) {
        if (prev) {
            ngx_http_imburse_restore_authorization(r, prev);

        } else if (above
                   && ngx_http_imburse_client_headers(r, &above->client_auth)
                      != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    rc = ngx_http_imburse_resolve(r, ilcf, &key);

    if (rc != NGX_OK) {
        return rc;
    }

    if (r != r->main && ngx_http_imburse_private_headers(r) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx = ngx_http_imburse_create_ctx(r, key);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    /* the client's own Authorization, wherever a token replaced it */

    if (prev && prev->auth_saved && !prev->restored) {
        ctx->client_auth = prev->client_auth;
        ctx->auth_saved = 1;

    } else if (above) {
        ctx->client_auth = above->client_auth;
        ctx->auth_saved = 1;
    }

    return ngx_http_imburse_lookup(r, ctx);
}

/* a step of an exchange: its context may be gone after an error_page */

static ngx_uint_t
ngx_http_imburse_exchange_subrequest(ngx_http_request_t *r)
{
    ngx_http_imburse_ctx_t  *pctx;

    if (r == r->main) {
        return 0;
    }

    pctx = ngx_http_get_module_ctx(r->parent, ngx_http_imburse_auth_module);

    return pctx && pctx->x && pctx->x->sr == r;
}


static ngx_int_t
ngx_http_imburse_resolve(ngx_http_request_t *r,
    ngx_http_imburse_loc_conf_t *ilcf, ngx_http_imburse_key_t **key)
{
    ngx_str_t                      name;
    ngx_http_imburse_main_conf_t  *imcf;

    if (ilcf->key_name == NULL) {
        *key = ilcf->key;
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, ilcf->key_name, &name) != NGX_OK) {
        return NGX_ERROR;
    }

    imcf = ngx_http_get_module_main_conf(r, ngx_http_imburse_auth_module);

    *key = ngx_http_imburse_find_key(imcf, &name);

    if (*key == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "imburse_auth: unknown imburse key \"%V\"", &name);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_lookup(ngx_http_request_t *r, ngx_http_imburse_ctx_t *ctx)
{
    int64_t                     now_ms;
    ngx_int_t                   action;
    ngx_http_imburse_key_t     *key;
    ngx_http_imburse_waiter_t  *w;
    ngx_http_imburse_lookup_t   lk;

    key = ctx->key;
    now_ms = ngx_http_imburse_key_now_ms(key);

    action = ngx_http_imburse_store_get(key, r->pool,
                                        NGX_HTTP_IMBURSE_BEARER_LEN,
                                        now_ms, &lk);

    if (lk.taken_from) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "imburse key \"%V\": exchange of worker %P did not end "
                      "in time, taking it over", &key->name, lk.taken_from);
    }

    switch (action) {

    case NGX_HTTP_IMBURSE_USE_REFRESH:

        /* the exchange is the module's: this request goes on at once */

        if (ngx_http_imburse_exchange_start(key, lk.claim, 1,
                                            r->connection->log)
            != NGX_OK)
        {
            ngx_http_imburse_release(key, lk.claim);
        }

        ctx->status = NGX_HTTP_IMBURSE_REFRESH;

        /* fall through */

    case NGX_HTTP_IMBURSE_USE:

        if (ctx->status == NGX_HTTP_IMBURSE_NONE) {
            ctx->status = lk.stale ? NGX_HTTP_IMBURSE_STALE
                                   : NGX_HTTP_IMBURSE_HIT;

        } else if (ctx->status == NGX_HTTP_IMBURSE_MISS && lk.from_fleet) {
            /* it waited, and the token came from the fleet's copy */
            ctx->status = NGX_HTTP_IMBURSE_FLEET;
        }

        ngx_http_imburse_refresh_watch(key, lk.refresh_ms - now_ms);

        ctx->token = lk.token;
        ctx->expires_ms = lk.expires_ms;
        ctx->states = r->upstream_states ? r->upstream_states->nelts : 0;
        ctx->ilcf = ngx_http_get_module_loc_conf(r,
                                                 ngx_http_imburse_auth_module);

        if (ngx_http_imburse_set_authorization(r, ctx, &lk.token) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_DECLINED;

    case NGX_HTTP_IMBURSE_EXCHANGE:

        if (ngx_http_imburse_exchange_start(key, lk.claim, 0,
                                            r->connection->log)
            != NGX_OK)
        {
            ngx_http_imburse_release(key, lk.claim);

            ctx->status = NGX_HTTP_IMBURSE_ERROR;
            return ngx_http_imburse_unavailable(r, key->retry);
        }

        /* the request that started the exchange waits like any other */

        lk.wait = ngx_current_msec + key->timeout;

        /* fall through */

    case NGX_HTTP_IMBURSE_WAIT:

        ctx->status = NGX_HTTP_IMBURSE_MISS;

        w = ngx_http_imburse_waiter(r, ctx);
        if (w == NULL) {
            return NGX_ERROR;
        }

        if (w->give_up == 0) {
            /*
             * Long enough to see one owner time out and another finish;
             * in a fleet, to wait for the fleet lock's holder first.
             */
            w->give_up = ngx_current_msec
                         + (key->fleet.len ? 3 : 2) * key->timeout;
        }

        if ((ngx_msec_int_t) (ngx_current_msec - w->give_up) >= 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "imburse key \"%V\": timed out waiting for a token",
                          &key->name);

            ctx->status = NGX_HTTP_IMBURSE_ERROR;
            return ngx_http_imburse_unavailable(r, key->retry);
        }

        if ((ngx_msec_int_t) (lk.wait - w->give_up) > 0) {
            lk.wait = w->give_up;
        }

        return ngx_http_imburse_wait(r, ctx, lk.wait, lk.version,
                                     lk.queued
                                     || (lk.owner && lk.owner != ngx_pid));

    default: /* NGX_HTTP_IMBURSE_BACKOFF */

        ctx->status = NGX_HTTP_IMBURSE_ERROR;
        return ngx_http_imburse_unavailable(r, lk.wait);
    }
}


static ngx_int_t
ngx_http_imburse_init_module(ngx_cycle_t *cycle)
{
    ngx_http_imburse_zone_commit(cycle);

    return ngx_http_imburse_notify_init_module(cycle);
}


static ngx_int_t
ngx_http_imburse_init_process(ngx_cycle_t *cycle)
{
    ngx_http_imburse_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_imburse_auth_module);

    if (imcf && (ngx_process == NGX_PROCESS_WORKER
                 || ngx_process == NGX_PROCESS_SINGLE))
    {
        ngx_http_imburse_zone_init_process(imcf);
    }

    return ngx_http_imburse_notify_init_process(cycle);
}


static void
ngx_http_imburse_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_imburse_exchange_exit();
    ngx_http_imburse_notify_exit_process(cycle);
}


static ngx_int_t
ngx_http_imburse_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_imburse_add_variables(cf);
}


static ngx_int_t
ngx_http_imburse_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                     i;
    ngx_http_handler_pt           *h;
    ngx_http_imburse_key_t        *key;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_imburse_main_conf_t  *imcf;

    imcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_imburse_auth_module);

    /*
     * The handler runs even without keys: "imburse_auth $var" must then
     * fail each request, not pass the client's credentials on.
     *
     * The keys array no longer moves: its elements may point to themselves.
     */

    key = imcf->keys.elts;

    /*
     * cf->cycle->log is still the previous cycle's here: its memory goes
     * with that cycle, so the cycle's own log it is
     */

    for (i = 0; i < imcf->keys.nelts; i++) {
        if (ngx_http_imburse_exchange_location(cf, &key[i]) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_http_imburse_key_init_waiters(&key[i], &cf->cycle->new_log);
        ngx_http_imburse_refresh_init(&key[i], &cf->cycle->new_log);
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_imburse_handler;

    if (ngx_http_imburse_exchange_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_imburse_revoke_init(cf);
}


/*
 * The key's exchanges run in the server of its exchange location, which
 * must be internal: otherwise any client could make the gateway sign a
 * request to the identity service.  The fleet location is looked for in
 * the same server.
 */

static ngx_int_t
ngx_http_imburse_exchange_location(ngx_conf_t *cf,
    ngx_http_imburse_key_t *key)
{
    ngx_http_core_srv_conf_t  *cscf;
    ngx_http_core_loc_conf_t  *clcf;

    cscf = NULL;
    clcf = ngx_http_imburse_find_location(cf, &key->exchange, &cscf);

    if (ngx_http_imburse_internal_location(cf, key, "exchange", &key->exchange,
                                           clcf)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    key->srv_ctx = cscf->ctx;

    if (key->fleet.len == 0) {
        return NGX_OK;
    }

    clcf = ngx_http_imburse_server_location(cscf, &key->fleet);

    return ngx_http_imburse_internal_location(cf, key, "fleet", &key->fleet,
                                              clcf);
}


static ngx_int_t
ngx_http_imburse_internal_location(ngx_conf_t *cf,
    ngx_http_imburse_key_t *key, const char *param, ngx_str_t *uri,
    ngx_http_core_loc_conf_t *clcf)
{
    if (clcf == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%s=%V\" of imburse_api_key \"%V\" matches no "
                      "location%s, add \"location = %V { internal; ... }\"",
                      param, uri, &key->name,
                      param[0] == 'f' ? " in the server of its exchange" : "",
                      uri);
        return NGX_ERROR;
    }

    if (!clcf->internal) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%s=%V\" of imburse_api_key \"%V\" matches "
                      "location \"%V\", which is not internal: add "
                      "\"internal;\" to it, or any client can use it",
                      param, uri, &key->name, &clcf->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void *
ngx_http_imburse_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_imburse_main_conf_t  *imcf;

    imcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_imburse_main_conf_t));
    if (imcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&imcf->keys, cf->pool, 4,
                       sizeof(ngx_http_imburse_key_t))
        != NGX_OK)
    {
        return NULL;
    }

    ngx_queue_init(&imcf->waiting);

    imcf->zone_size = NGX_CONF_UNSET_SIZE;
    imcf->concurrency = NGX_CONF_UNSET_UINT;

    return imcf;
}


static char *
ngx_http_imburse_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_imburse_main_conf_t  *imcf = conf;

    ngx_conf_init_uint_value(imcf->concurrency, 8);

    if (imcf->keys.nelts == 0) {
        return NGX_CONF_OK;
    }

    if (ngx_http_imburse_keys_hash(cf, imcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_imburse_zone_add(cf, imcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_imburse_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_imburse_loc_conf_t  *ilcf;

    ilcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_imburse_loc_conf_t));
    if (ilcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     ilcf->key = NULL;
     *     ilcf->key_name = NULL;
     *     ilcf->name = { 0, NULL };
     */

    ilcf->enable = NGX_CONF_UNSET;

    return ilcf;
}


static char *
ngx_http_imburse_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_imburse_loc_conf_t  *prev = parent;
    ngx_http_imburse_loc_conf_t  *conf = child;

    ngx_http_imburse_main_conf_t  *imcf;

    if (conf->status_page) {
        if (conf->enable == 1) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"imburse_auth\" in %V:%ui is in an "
                          "\"imburse_status\" location, which must answer "
                          "without a token: remove it", &conf->conf_file,
                          conf->conf_line);
            return NGX_CONF_ERROR;
        }

        conf->enable = 0;
        return NGX_CONF_OK;
    }

    if (conf->enable == NGX_CONF_UNSET) {
        conf->enable = (prev->enable == NGX_CONF_UNSET) ? 0 : prev->enable;
        conf->key = prev->key;
        conf->key_name = prev->key_name;
        conf->name = prev->name;
        conf->conf_file = prev->conf_file;
        conf->conf_line = prev->conf_line;
    }

    if (!conf->enable || conf->key || conf->key_name) {
        return NGX_CONF_OK;
    }

    /* keys may be declared after imburse_auth: resolve once all are known */

    imcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_imburse_auth_module);

    conf->key = ngx_http_imburse_find_key(imcf, &conf->name);

    if (conf->key == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "unknown imburse key \"%V\" in \"imburse_auth\" "
                      "in %V:%ui", &conf->name, &conf->conf_file,
                      conf->conf_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_imburse_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_imburse_main_conf_t  *imcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (imcf->zone_size != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || (size_t) size < 8 * ngx_pagesize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid imburse_zone size \"%V\", "
                           "it must be at least %uzk", &value[1],
                           8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    imcf->zone_size = (size_t) size;

    return NGX_CONF_OK;
}


static char *
ngx_http_imburse_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_imburse_loc_conf_t  *ilcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (ilcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ilcf->enable = 0;
        return NGX_CONF_OK;
    }

    ilcf->enable = 1;
    ilcf->conf_file = cf->conf_file->file.name;
    ilcf->conf_line = cf->conf_file->line;

    if (ngx_http_script_variables_count(&value[1]) == 0) {
        ilcf->name = value[1];
        return NGX_CONF_OK;
    }

    ilcf->key_name = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (ilcf->key_name == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = ilcf->key_name;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_imburse_concurrency(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                          *rv;
    ngx_http_imburse_main_conf_t  *imcf = conf;

    rv = ngx_conf_set_num_slot(cf, cmd, conf);

    if (rv == NGX_CONF_OK && (imcf->concurrency == 0
                              || imcf->concurrency > 10000))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid imburse_exchange_concurrency, it must be "
                           "between 1 and 10000");
        return NGX_CONF_ERROR;
    }

    return rv;
}
