/*
 * The module's clock: Unix time in milliseconds, the unit of the token's
 * "expires".
 */

#ifndef _NGX_HTTP_IMBURSE_CLOCK_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_CLOCK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


static ngx_inline int64_t
ngx_http_imburse_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + (int64_t) tp->msec;
}


#endif /* _NGX_HTTP_IMBURSE_CLOCK_H_INCLUDED_ */
