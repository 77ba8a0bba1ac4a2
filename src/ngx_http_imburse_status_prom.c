/*
 * The status page as Prometheus text (format 0.0.4): each metric's HELP and
 * TYPE, then one sample a key; metrics of the fleet tier only for keys
 * with fleet=, as the JSON has "fleet": null for the others.  And when a
 * client wants it.
 */

#include "ngx_http_imburse_status.h"


typedef struct {
    const char  *name;
    const char  *type;
    const char  *help;
    unsigned     fleet:1;
} ngx_http_imburse_metric_t;


static int64_t ngx_http_imburse_metric_value(ngx_uint_t m,
    ngx_http_imburse_key_stats_t *st);
static ngx_uint_t ngx_http_imburse_accept_q(ngx_str_t *accept,
    const char *type);


static ngx_http_imburse_metric_t  ngx_http_imburse_metrics[] = {
    { "imburse_token_valid", "gauge",
      "1 if the key has a valid token", 0 },
    { "imburse_token_expires_in_seconds", "gauge",
      "seconds until the key's token expires", 0 },
    { "imburse_exchange_in_flight", "gauge",
      "1 while an exchange of the key is in flight", 0 },
    { "imburse_exchange_queued", "gauge",
      "1 while the key waits for one of the exchanges in flight to end", 0 },
    { "imburse_exchanges_total", "counter",
      "token exchanges of the key, failed ones included", 0 },
    { "imburse_exchange_failures_total", "counter",
      "failed token exchanges of the key", 0 },
    { "imburse_exchange_consecutive_failures", "gauge",
      "failed exchanges of the key since its last success", 0 },
    { "imburse_token_revocations_total", "counter",
      "tokens of the key ended by an upstream 401", 0 },
    { "imburse_last_exchange_timestamp_seconds", "gauge",
      "when the key's last exchange ended, in Unix seconds", 0 },
    { "imburse_unrevoked_401_total", "counter",
      "upstream 401s that did not revoke the key's token (younger than "
      "retry=)", 0 },
    { "imburse_clock_offset_seconds", "gauge",
      "the key's identity service clock minus ours, as applied", 0 },
    { "imburse_next_attempt_in_seconds", "gauge",
      "seconds until an exchange of the key may run again (back-off, "
      "Retry-After)", 0 },
    { "imburse_fleet_hits_total", "counter",
      "tokens of the key taken from the fleet's copy in Redis", 1 },
    { "imburse_fleet_locks_taken_total", "counter",
      "fleet locks the instance took to exchange for the fleet", 1 },
    { "imburse_fleet_locks_lost_total", "counter",
      "fleet locks held by another instance when asked for", 1 },
    { "imburse_fleet_redis_errors_total", "counter",
      "failed Redis operations of the key's fleet tier", 1 },
    { "imburse_fleet_redis_down", "gauge",
      "1 while the key's fleet Redis is taken for down (exchanging without "
      "the fleet)", 1 }
};

#define NGX_HTTP_IMBURSE_METRICS                                             \
    (sizeof(ngx_http_imburse_metrics) / sizeof(ngx_http_imburse_metric_t))


u_char *
ngx_http_imburse_prometheus_text(ngx_http_imburse_status_ctx_t *ctx,
    u_char *p)
{
    ngx_http_imburse_metric_t      *m;
    ngx_http_imburse_zone_stats_t   zs;

    /* the next metric of the keys, their samples after it */

    while (ctx->part < NGX_HTTP_IMBURSE_METRICS) {
        m = &ngx_http_imburse_metrics[ctx->part];
        ctx->metric = ctx->part++;

        if (m->fleet && ctx->fleets == 0) {
            continue;
        }

        ctx->stage = NGX_HTTP_IMBURSE_STATUS_KEYS;

        return ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n", m->name,
                           m->help, m->name, m->type);
    }

    ngx_http_imburse_zone_stats(ctx->imcf, &zs);

    ctx->done = 1;

    return ngx_sprintf(p,
        "# HELP imburse_zone_size_bytes size of the imburse shared zone\n"
        "# TYPE imburse_zone_size_bytes gauge\n"
        "imburse_zone_size_bytes %uz\n"
        "# HELP imburse_zone_free_bytes free pages of the imburse shared "
        "zone, in bytes\n"
        "# TYPE imburse_zone_free_bytes gauge\n"
        "imburse_zone_free_bytes %uz\n"
        "# HELP imburse_zone_entries keys in the imburse shared zone, of "
        "this configuration and of older ones not yet reclaimed\n"
        "# TYPE imburse_zone_entries gauge\n"
        "imburse_zone_entries %ui\n"
        "# HELP imburse_exchanges_in_flight exchanges in flight in the "
        "instance, all keys\n"
        "# TYPE imburse_exchanges_in_flight gauge\n"
        "imburse_exchanges_in_flight %ui\n"
        "# HELP imburse_exchanges_queued keys waiting for one of the "
        "exchanges in flight to end\n"
        "# TYPE imburse_exchanges_queued gauge\n"
        "imburse_exchanges_queued %ui\n"
        "# HELP imburse_exchange_concurrency exchanges the instance runs "
        "at most at once (imburse_exchange_concurrency)\n"
        "# TYPE imburse_exchange_concurrency gauge\n"
        "imburse_exchange_concurrency %ui\n",
        zs.size, zs.free, zs.entries, zs.in_flight, zs.queued,
        zs.concurrency);
}


u_char *
ngx_http_imburse_prometheus_key(ngx_http_imburse_status_ctx_t *ctx,
    ngx_http_imburse_key_t *key, ngx_http_imburse_key_stats_t *st,
    u_char *p)
{
    ngx_http_imburse_metric_t  *m;

    m = &ngx_http_imburse_metrics[ctx->metric];

    if (m->fleet && key->fleet.len == 0) {
        return p;
    }

    return ngx_sprintf(p, "%s{key=\"%V\"} %L\n", m->name, &key->name,
                       ngx_http_imburse_metric_value(ctx->metric, st));
}


static int64_t
ngx_http_imburse_metric_value(ngx_uint_t m, ngx_http_imburse_key_stats_t *st)
{
    switch (m) {
    case 0:  return st->valid;
    case 1:  return st->expires_in;
    case 2:  return st->in_flight;
    case 3:  return st->queued;
    case 4:  return st->exchanges;
    case 5:  return st->failures;
    case 6:  return st->consecutive_failures;
    case 7:  return st->revocations;
    case 8:  return st->last_exchange_ms / 1000;
    case 9:  return st->unrevoked_401;
    case 10: return ngx_http_imburse_status_seconds(st->clock_offset_ms);
    case 11: return (st->next_attempt_ms + 999) / 1000;
    case 12: return st->fleet_hits;
    case 13: return st->fleet_locks_taken;
    case 14: return st->fleet_locks_lost;
    case 15: return st->fleet_errors;
    default: return st->fleet_down;
    }
}


/*
 * ?format=prometheus or ?format=json decides; else the Accept header: a
 * scraper that prefers text/plain or OpenMetrics to JSON gets the text
 * format (0.0.4, which Prometheus takes for either); JSON otherwise.
 */

ngx_uint_t
ngx_http_imburse_status_prometheus_wanted(ngx_http_request_t *r)
{
    ngx_str_t         format, accept;
    ngx_uint_t        i, text, json;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        return format.len == 10
               && ngx_strncmp(format.data, "prometheus", 10) == 0;
    }

    /* several Accept lines are one list (RFC 9110, 5.3) */

    text = 0;
    json = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len != 6
                || ngx_strncasecmp(h[i].key.data, (u_char *) "accept", 6)
                   != 0)
            {
                continue;
            }

            accept = h[i].value;

            text = ngx_max(text, ngx_http_imburse_accept_q(&accept,
                                                           "text/plain"));
            text = ngx_max(text, ngx_http_imburse_accept_q(&accept,
                                               "application/openmetrics-text"));
            json = ngx_max(json, ngx_http_imburse_accept_q(&accept,
                                                           "application/json"));
        }
    }

    return text > json;
}


/* the q of the type in an Accept value, in thousandths; 0 if absent */

static ngx_uint_t
ngx_http_imburse_accept_q(ngx_str_t *accept, const char *type)
{
    u_char      *p, *end, *q;
    size_t       len;
    ngx_uint_t   best, v, d;

    len = ngx_strlen(type);
    p = accept->data;
    end = p + accept->len;
    best = 0;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        if ((size_t) (end - p) >= len
            && ngx_strncasecmp(p, (u_char *) type, len) == 0
            && (p + len == end || p[len] == ';' || p[len] == ','
                || p[len] == ' ' || p[len] == '\t'))
        {
            v = 1000;
            p += len;

            /* parameters up to the next range: only q matters */

            while (p < end && *p != ',') {
                /* "q" is case-insensitive, like every parameter name */
                if ((*p == 'q' || *p == 'Q') && p + 1 < end && p[1] == '='
                    && (p[-1] == ';' || p[-1] == ' ' || p[-1] == '\t'))
                {
                    q = p + 2;
                    v = (q < end && *q == '1') ? 1000 : 0;

                    if (q + 1 < end && q[1] == '.') {
                        for (q += 2, d = 100; q < end && d && *q >= '0'
                             && *q <= '9'; q++, d /= 10)
                        {
                            v += (*q - '0') * d;
                        }
                    }

                    v = ngx_min(v, 1000);
                }

                p++;
            }

            best = ngx_max(best, v);
            continue;
        }

        while (p < end && *p != ',') {
            p++;
        }
    }

    return best;
}
