/*
 * imburse_status: every key's token state and counters as JSON, or as
 * Prometheus text with ?format=prometheus.  Never a token or a secret:
 * tokens appear as their fingerprint only.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_store.h"


/* the longest line a key adds, key name aside, with room to spare */
#define NGX_HTTP_IMBURSE_STATUS_KEY_LEN  2048
#define NGX_HTTP_IMBURSE_STATUS_HEAD_LEN 8192

/* the Prometheus metrics from this index on exist only for keys with fleet= */
#define NGX_HTTP_IMBURSE_FIRST_FLEET_METRIC  11


static ngx_int_t ngx_http_imburse_status_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_imburse_status_prometheus_wanted(
    ngx_http_request_t *r);
static ngx_uint_t ngx_http_imburse_accept_q(ngx_str_t *accept,
    const char *type);
static int64_t ngx_http_imburse_status_seconds(int64_t ms);
static u_char *ngx_http_imburse_status_json(u_char *p,
    ngx_http_imburse_main_conf_t *imcf, int64_t now_ms);
static u_char *ngx_http_imburse_status_prometheus(ngx_http_request_t *r,
    u_char *p, ngx_http_imburse_main_conf_t *imcf, int64_t now_ms);


/*
 * The status page must answer while the identity service is down: it
 * never inherits imburse_auth (a server-level one would make every poll
 * wait for, or start, an exchange).
 */

char *
ngx_http_imburse_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_imburse_loc_conf_t  *ilcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_imburse_status_handler;

    ilcf->status_page = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_imburse_status_handler(ngx_http_request_t *r)
{
    size_t                         size;
    int64_t                        now_ms;
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_uint_t                     i, prometheus;
    ngx_chain_t                    out;
    ngx_http_imburse_key_t        *key;
    ngx_http_imburse_main_conf_t  *imcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    prometheus = ngx_http_imburse_status_prometheus_wanted(r);

    imcf = ngx_http_get_module_main_conf(r, ngx_http_imburse_auth_module);

    size = NGX_HTTP_IMBURSE_STATUS_HEAD_LEN;
    key = imcf->keys.elts;

    for (i = 0; i < imcf->keys.nelts; i++) {
        size += NGX_HTTP_IMBURSE_STATUS_KEY_LEN + 16 * key[i].name.len;
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    now_ms = ngx_http_imburse_now_ms();

    b->last = prometheus ? ngx_http_imburse_status_prometheus(r, b->last, imcf,
                                                              now_ms)
                         : ngx_http_imburse_status_json(b->last, imcf, now_ms);
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    if (prometheus) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");
    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * ?format=prometheus or ?format=json decides; else the Accept header: a
 * scraper that prefers text/plain or OpenMetrics to JSON gets the text
 * format (0.0.4, which Prometheus takes for either); JSON otherwise.
 */

static ngx_uint_t
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

    ngx_str_null(&accept);

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == 6
                && ngx_strncasecmp(h[i].key.data, (u_char *) "accept", 6)
                   == 0)
            {
                accept = h[i].value;
            }
        }
    }

    if (accept.len == 0) {
        return 0;
    }

    text = ngx_max(ngx_http_imburse_accept_q(&accept, "text/plain"),
                   ngx_http_imburse_accept_q(&accept,
                                             "application/openmetrics-text"));
    json = ngx_http_imburse_accept_q(&accept, "application/json");

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
        while (p < end && (*p == ' ' || *p == ',')) {
            p++;
        }

        if ((size_t) (end - p) >= len
            && ngx_strncasecmp(p, (u_char *) type, len) == 0
            && (p + len == end || p[len] == ';' || p[len] == ','
                || p[len] == ' '))
        {
            v = 1000;
            p += len;

            /* parameters up to the next range: only q matters */

            while (p < end && *p != ',') {
                if (*p == 'q' && p + 1 < end && p[1] == '='
                    && (p[-1] == ';' || p[-1] == ' '))
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


static u_char *
ngx_http_imburse_status_json(u_char *p, ngx_http_imburse_main_conf_t *imcf,
    int64_t now_ms)
{
    size_t                         zone_size, zone_free;
    int64_t                        expires_in;
    ngx_uint_t                     i;
    ngx_http_imburse_key_t        *key;
    ngx_http_imburse_key_stats_t   st;

    /* key names are [A-Za-z0-9_.-], error classes are our own: no escaping */

    p = ngx_sprintf(p, "{\"keys\":{");

    key = imcf->keys.elts;

    for (i = 0; i < imcf->keys.nelts; i++) {
        ngx_http_imburse_store_stats(&key[i], now_ms, &st);

        expires_in = st.expires_in;

        p = ngx_sprintf(p, "%s\"%V\":{\"valid\":%s,\"expires_in\":%L,"
                        "\"exchange_in_flight\":%s,"
                        "\"exchanges\":%ui,\"failures\":%ui,"
                        "\"consecutive_failures\":%ui,\"revocations\":%ui,"
                        "\"unrevoked_401\":%ui,\"clock_offset\":%L,"
                        "\"next_attempt_in\":%M,\"last_error\":",
                        i ? "," : "", &key[i].name,
                        st.valid ? "true" : "false", expires_in,
                        st.in_flight ? "true" : "false",
                        st.exchanges, st.failures, st.consecutive_failures,
                        st.revocations, st.unrevoked_401,
                        ngx_http_imburse_status_seconds(st.clock_offset_ms),
                        (st.next_attempt_ms + 999) / 1000);

        p = st.last_error[0] ? ngx_sprintf(p, "\"%s\"", st.last_error)
                             : ngx_sprintf(p, "null");

        p = ngx_sprintf(p, ",\"last_exchange_at\":");

        p = st.last_exchange_ms ? ngx_sprintf(p, "%L",
                                              st.last_exchange_ms / 1000)
                                : ngx_sprintf(p, "null");

        p = ngx_sprintf(p, ",\"token_fingerprint\":");

        p = st.valid ? ngx_sprintf(p, "\"%*s\"", (size_t) IMBURSE_FP_HEX_LEN,
                                   st.token_fp)
                     : ngx_sprintf(p, "null");

        p = ngx_sprintf(p, ",\"fleet\":");

        p = key[i].fleet.len
            ? ngx_sprintf(p, "{\"hits\":%ui,\"locks_taken\":%ui,"
                          "\"locks_lost\":%ui,\"redis_errors\":%ui,"
                          "\"redis_down\":%s}",
                          st.fleet_hits, st.fleet_locks_taken,
                          st.fleet_locks_lost, st.fleet_errors,
                          st.fleet_down ? "true" : "false")
            : ngx_sprintf(p, "null");

        *p++ = '}';
    }

    ngx_http_imburse_store_zone_usage(imcf, &zone_size, &zone_free);

    return ngx_sprintf(p, "},\"zone\":{\"size\":%uz,\"free\":%uz}}\n",
                       zone_size, zone_free);
}


static u_char *
ngx_http_imburse_status_prometheus(ngx_http_request_t *r, u_char *p,
    ngx_http_imburse_main_conf_t *imcf, int64_t now_ms)
{
    size_t                         zone_size, zone_free;
    ngx_uint_t                     i, m, fleets;
    ngx_http_imburse_key_t        *key;
    ngx_http_imburse_key_stats_t  *st;

    static const char  *metrics[][3] = {
        { "imburse_token_valid", "gauge",
          "1 if the key has a valid token" },
        { "imburse_token_expires_in_seconds", "gauge",
          "seconds until the key's token expires" },
        { "imburse_exchange_in_flight", "gauge",
          "1 while an exchange of the key is in flight" },
        { "imburse_exchanges_total", "counter",
          "token exchanges of the key, failed ones included" },
        { "imburse_exchange_failures_total", "counter",
          "failed token exchanges of the key" },
        { "imburse_exchange_consecutive_failures", "gauge",
          "failed exchanges of the key since its last success" },
        { "imburse_token_revocations_total", "counter",
          "tokens of the key ended by an upstream 401" },
        { "imburse_last_exchange_timestamp_seconds", "gauge",
          "when the key's last exchange ended, in Unix seconds" },
        { "imburse_unrevoked_401_total", "counter",
          "upstream 401s that did not revoke the key's token (younger "
          "than retry=)" },
        { "imburse_clock_offset_seconds", "gauge",
          "the key's identity service clock minus ours, as applied" },
        { "imburse_next_attempt_in_seconds", "gauge",
          "seconds until an exchange of the key may run again (back-off, "
          "Retry-After)" },
        { "imburse_fleet_hits_total", "counter",
          "tokens of the key taken from the fleet's copy in Redis" },
        { "imburse_fleet_locks_taken_total", "counter",
          "fleet locks the instance took to exchange for the fleet" },
        { "imburse_fleet_locks_lost_total", "counter",
          "fleet locks held by another instance when asked for" },
        { "imburse_fleet_redis_errors_total", "counter",
          "failed Redis operations of the key's fleet tier" },
        { "imburse_fleet_redis_down", "gauge",
          "1 while the key's fleet Redis is taken for down (exchanging "
          "without the fleet)" }
    };

    key = imcf->keys.elts;

    st = ngx_palloc(r->pool, imcf->keys.nelts
                             * sizeof(ngx_http_imburse_key_stats_t) + 1);
    if (st == NULL) {
        return p;
    }

    for (i = 0; i < imcf->keys.nelts; i++) {
        ngx_http_imburse_store_stats(&key[i], now_ms, &st[i]);
    }

    for (i = 0, fleets = 0; i < imcf->keys.nelts; i++) {
        fleets += key[i].fleet.len ? 1 : 0;
    }

    for (m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {

        /* a key without fleet= has no fleet figures, as in the JSON (null) */

        if (m >= NGX_HTTP_IMBURSE_FIRST_FLEET_METRIC && fleets == 0) {
            break;
        }

        p = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n", metrics[m][0],
                        metrics[m][2], metrics[m][0], metrics[m][1]);

        for (i = 0; i < imcf->keys.nelts; i++) {
            if (m >= NGX_HTTP_IMBURSE_FIRST_FLEET_METRIC
                && key[i].fleet.len == 0)
            {
                continue;
            }

            p = ngx_sprintf(p, "%s{key=\"%V\"} ", metrics[m][0],
                            &key[i].name);

            switch (m) {
            case 0:
                p = ngx_sprintf(p, "%d\n", st[i].valid ? 1 : 0);
                break;
            case 1:
                p = ngx_sprintf(p, "%L\n", st[i].expires_in);
                break;
            case 2:
                p = ngx_sprintf(p, "%d\n", st[i].in_flight ? 1 : 0);
                break;
            case 3:
                p = ngx_sprintf(p, "%ui\n", st[i].exchanges);
                break;
            case 4:
                p = ngx_sprintf(p, "%ui\n", st[i].failures);
                break;
            case 5:
                p = ngx_sprintf(p, "%ui\n", st[i].consecutive_failures);
                break;
            case 6:
                p = ngx_sprintf(p, "%ui\n", st[i].revocations);
                break;
            case 7:
                p = ngx_sprintf(p, "%L\n", st[i].last_exchange_ms / 1000);
                break;
            case 8:
                p = ngx_sprintf(p, "%ui\n", st[i].unrevoked_401);
                break;
            case 9:
                p = ngx_sprintf(p, "%L\n", ngx_http_imburse_status_seconds(
                                               st[i].clock_offset_ms));
                break;
            case 10:
                p = ngx_sprintf(p, "%M\n", (st[i].next_attempt_ms + 999) / 1000);
                break;
            case 11:
                p = ngx_sprintf(p, "%ui\n", st[i].fleet_hits);
                break;
            case 12:
                p = ngx_sprintf(p, "%ui\n", st[i].fleet_locks_taken);
                break;
            case 13:
                p = ngx_sprintf(p, "%ui\n", st[i].fleet_locks_lost);
                break;
            case 14:
                p = ngx_sprintf(p, "%ui\n", st[i].fleet_errors);
                break;
            default:
                p = ngx_sprintf(p, "%d\n", st[i].fleet_down ? 1 : 0);
                break;
            }
        }
    }

    ngx_http_imburse_store_zone_usage(imcf, &zone_size, &zone_free);

    return ngx_sprintf(p, "# HELP imburse_zone_size_bytes size of the imburse "
                       "shared zone\n# TYPE imburse_zone_size_bytes gauge\n"
                       "imburse_zone_size_bytes %uz\n"
                       "# HELP imburse_zone_free_bytes free pages of the "
                       "imburse shared zone, in bytes\n"
                       "# TYPE imburse_zone_free_bytes gauge\n"
                       "imburse_zone_free_bytes %uz\n",
                       zone_size, zone_free);
}


/* ms to whole seconds, rounded, either sign */

static int64_t
ngx_http_imburse_status_seconds(int64_t ms)
{
    return (ms < 0) ? -((-ms + 500) / 1000) : (ms + 500) / 1000;
}
