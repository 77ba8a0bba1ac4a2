/*
 * The status page as JSON: {"keys":{NAME:{...},...},"zone":{...},
 * "exchanges":{...}}.  Key names are [A-Za-z0-9_.-] and error causes are
 * the module's own: nothing to escape.
 */

#include "ngx_http_imburse_status.h"


u_char *
ngx_http_imburse_json_text(ngx_http_imburse_status_ctx_t *ctx, u_char *p)
{
    ngx_http_imburse_zone_stats_t  zs;

    if (ctx->part == 0) {
        ctx->part = 1;
        ctx->stage = NGX_HTTP_IMBURSE_STATUS_KEYS;
        return ngx_sprintf(p, "{\"keys\":{");
    }

    ngx_http_imburse_zone_stats(ctx->imcf, &zs);

    ctx->done = 1;

    return ngx_sprintf(p, "},\"zone\":{\"size\":%uz,\"free\":%uz,"
                       "\"entries\":%ui},\"exchanges\":{\"in_flight\":%ui,"
                       "\"queued\":%ui,\"concurrency\":%ui}}\n",
                       zs.size, zs.free, zs.entries, zs.in_flight,
                       zs.queued, zs.concurrency);
}


u_char *
ngx_http_imburse_json_key(ngx_http_imburse_status_ctx_t *ctx,
    ngx_http_imburse_key_t *key, ngx_http_imburse_key_stats_t *st,
    u_char *p)
{
    p = ngx_sprintf(p, "%s\"%V\":{\"valid\":%s,\"expires_in\":%L,"
                    "\"exchange_in_flight\":%s,\"exchange_queued\":%s,"
                    "\"exchanges\":%ui,\"failures\":%ui,"
                    "\"consecutive_failures\":%ui,\"revocations\":%ui,"
                    "\"unrevoked_401\":%ui,\"clock_offset\":%L,"
                    "\"next_attempt_in\":%M,\"last_error\":",
                    ctx->comma ? "," : "", &key->name,
                    st->valid ? "true" : "false", st->expires_in,
                    st->in_flight ? "true" : "false",
                    st->queued ? "true" : "false",
                    st->exchanges, st->failures, st->consecutive_failures,
                    st->revocations, st->unrevoked_401,
                    ngx_http_imburse_status_seconds(st->clock_offset_ms),
                    (st->next_attempt_ms + 999) / 1000);

    ctx->comma = 1;

    p = st->last_error[0] ? ngx_sprintf(p, "\"%s\"", st->last_error)
                          : ngx_sprintf(p, "null");

    p = ngx_sprintf(p, ",\"last_exchange_at\":");

    p = st->last_exchange_ms ? ngx_sprintf(p, "%L",
                                           st->last_exchange_ms / 1000)
                             : ngx_sprintf(p, "null");

    p = ngx_sprintf(p, ",\"token_fingerprint\":");

    p = st->valid ? ngx_sprintf(p, "\"%*s\"", (size_t) IMBURSE_FP_HEX_LEN,
                                st->token_fp)
                  : ngx_sprintf(p, "null");

    p = ngx_sprintf(p, ",\"fleet\":");

    p = key->fleet.len
        ? ngx_sprintf(p, "{\"hits\":%ui,\"locks_taken\":%ui,"
                      "\"locks_lost\":%ui,\"redis_errors\":%ui,"
                      "\"redis_down\":%s}",
                      st->fleet_hits, st->fleet_locks_taken,
                      st->fleet_locks_lost, st->fleet_errors,
                      st->fleet_down ? "true" : "false")
        : ngx_sprintf(p, "null");

    *p++ = '}';

    return p;
}
