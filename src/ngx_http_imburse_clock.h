/*
 * The module's clocks.  Ours: Unix time in milliseconds, the unit of the
 * token's "expires".  A key's: the identity service's, ours plus the
 * offset measured from the Date header of its exchange responses, which
 * signing and every expiry decision of the key follow.
 */

#ifndef _NGX_HTTP_IMBURSE_CLOCK_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_CLOCK_H_INCLUDED_


#include "ngx_http_imburse_auth.h"


/* what ngx_http_imburse_clock_measure() returns when it measured nothing */
#define NGX_HTTP_IMBURSE_NO_OFFSET  INT64_MIN


static ngx_inline int64_t
ngx_http_imburse_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + (int64_t) tp->msec;
}


/* the identity service's time, as the key's offset says */
int64_t ngx_http_imburse_key_now_ms(ngx_http_imburse_key_t *key);

/*
 * The offset of the identity service's clock, from the Date header of an
 * exchange's response (sent and answered on our clock); applied to the key
 * when it is 2 s or more, up to a day, and logged when it first applies or
 * changes.  Returns the offset measured, or NGX_HTTP_IMBURSE_NO_OFFSET.
 */
int64_t ngx_http_imburse_clock_measure(ngx_http_imburse_key_t *key,
    ngx_http_request_t *sr, int64_t sent_ms, int64_t answered_ms);

/* the Retry-After of a 429 or 503 answer, in ms from now; 0 if none */
ngx_msec_t ngx_http_imburse_retry_after(ngx_http_imburse_key_t *key,
    ngx_http_request_t *sr, ngx_uint_t status);


#endif /* _NGX_HTTP_IMBURSE_CLOCK_H_INCLUDED_ */
