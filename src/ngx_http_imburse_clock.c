/*
 * The identity service's clock and limits.  Imburse rejects a signature
 * whose timestamp is more than five minutes from its own clock, and a
 * token's "expires" is a time on that clock: a gateway whose clock is off
 * signs with, and judges expiry by, the identity service's time, measured
 * as the AWS SDKs measure it for SigV4, from the server's Date header.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_clock.h"
#include "ngx_http_imburse_store.h"


/* Date has a resolution of a second: an offset below 2 s is noise */
#define NGX_HTTP_IMBURSE_OFFSET_MIN   2000
#define NGX_HTTP_IMBURSE_OFFSET_MAX   (24 * 60 * 60 * 1000LL)
#define NGX_HTTP_IMBURSE_RETRY_AFTER_MAX  3600


static ngx_uint_t ngx_http_imburse_all_digits(ngx_str_t *s);
static ngx_table_elt_t *ngx_http_imburse_header(ngx_http_upstream_t *u,
    const char *name, size_t len);
static int64_t ngx_http_imburse_abs(int64_t v);


int64_t
ngx_http_imburse_key_now_ms(ngx_http_imburse_key_t *key)
{
    return ngx_http_imburse_now_ms() + ngx_http_imburse_store_clock(key);
}


int64_t
ngx_http_imburse_clock_measure(ngx_http_imburse_key_t *key,
    ngx_http_request_t *sr, int64_t sent_ms, int64_t answered_ms)
{
    time_t                date;
    int64_t               offset, applied, old, secs;
    ngx_log_t            *log;
    ngx_table_elt_t      *h;
    ngx_http_upstream_t  *u;

    u = sr->upstream;
    log = sr->connection->log;

    /* a cached answer's Date is the cache's, not the clock's */

    if (u == NULL || u->headers_in.date == NULL
        || ngx_http_imburse_header(u, "Age", 3))
    {
        return NGX_HTTP_IMBURSE_NO_OFFSET;
    }

    h = u->headers_in.date;
    date = ngx_parse_http_time(h->value.data, h->value.len);

    if (date == NGX_ERROR) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "imburse key \"%V\": the identity service's Date "
                      "\"%V\" is not an HTTP date, its clock offset is not "
                      "measured", &key->name, &h->value);
        return NGX_HTTP_IMBURSE_NO_OFFSET;
    }

    /* the server's time is in [Date, Date + 1 s): the middle of it */

    offset = (int64_t) date * 1000 + 500 - (sent_ms + answered_ms) / 2;
    secs = (ngx_http_imburse_abs(offset) + 500) / 1000;

    if (ngx_http_imburse_abs(offset) > NGX_HTTP_IMBURSE_OFFSET_MAX) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "imburse key \"%V\": identity clock is %L s %s ours, "
                      "more than a day: not applied, check both clocks",
                      &key->name, secs, offset > 0 ? "ahead of" : "behind");
        return offset;
    }

    applied = (ngx_http_imburse_abs(offset) < NGX_HTTP_IMBURSE_OFFSET_MIN)
              ? 0 : offset;
    old = ngx_http_imburse_store_clock(key);

    if (ngx_http_imburse_abs(applied - old) < NGX_HTTP_IMBURSE_OFFSET_MIN) {
        return offset;
    }

    ngx_http_imburse_store_set_clock(key, applied);

    if (applied == 0) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "imburse key \"%V\": identity clock is within 2 s of "
                      "ours again; no offset applied", &key->name);

    } else {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "imburse key \"%V\": identity clock is %L s %s ours; "
                      "signing and expiry follow it", &key->name, secs,
                      offset > 0 ? "ahead of" : "behind");
    }

    return offset;
}


/*
 * "Retry-After: 120" or "Retry-After: <HTTP-date>", the date on the
 * identity service's clock (its Date, if it sent one); at most an hour.
 */

ngx_msec_t
ngx_http_imburse_retry_after(ngx_http_imburse_key_t *key,
    ngx_http_request_t *sr, ngx_uint_t status)
{
    time_t                t, base;
    ngx_int_t             n;
    ngx_table_elt_t      *h;
    ngx_http_upstream_t  *u;

    u = sr->upstream;

    if ((status != NGX_HTTP_TOO_MANY_REQUESTS
         && status != NGX_HTTP_SERVICE_UNAVAILABLE)
        || u == NULL)
    {
        return 0;
    }

    h = ngx_http_imburse_header(u, "Retry-After", 11);
    if (h == NULL || h->value.len == 0) {
        return 0;
    }

    n = ngx_atoi(h->value.data, h->value.len);

    if (n == NGX_ERROR && ngx_http_imburse_all_digits(&h->value)) {
        /* too many seconds for an integer: more than the cap */
        n = NGX_HTTP_IMBURSE_RETRY_AFTER_MAX;

    } else if (n == NGX_ERROR) {
        t = ngx_parse_http_time(h->value.data, h->value.len);

        if (t == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                          "imburse key \"%V\": Retry-After \"%V\" of the "
                          "identity service is neither seconds nor a date",
                          &key->name, &h->value);
            return 0;
        }

        base = (u->headers_in.date)
               ? ngx_parse_http_time(u->headers_in.date->value.data,
                                     u->headers_in.date->value.len)
               : NGX_ERROR;

        if (base == NGX_ERROR) {
            base = (time_t) (ngx_http_imburse_key_now_ms(key) / 1000);
        }

        n = (t > base) ? (ngx_int_t) (t - base) : 0;
    }

    n = ngx_min(n, NGX_HTTP_IMBURSE_RETRY_AFTER_MAX);

    return (ngx_msec_t) n * 1000;
}


static ngx_uint_t
ngx_http_imburse_all_digits(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9') {
            return 0;
        }
    }

    return s->len > 0;
}


static ngx_table_elt_t *
ngx_http_imburse_header(ngx_http_upstream_t *u, const char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &u->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == len
                && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
            {
                return &h[i];
            }
        }
    }

    return NULL;
}


static int64_t
ngx_http_imburse_abs(int64_t v)
{
    return v < 0 ? -v : v;
}
