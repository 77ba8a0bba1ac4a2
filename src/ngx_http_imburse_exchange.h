/*
 * The token exchange: a subrequest to the key's exchange location, and the
 * requests that wait, without blocking their worker, for it to end.
 */

#ifndef _NGX_HTTP_IMBURSE_EXCHANGE_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_EXCHANGE_H_INCLUDED_


#include "ngx_http_imburse_auth.h"


ngx_int_t ngx_http_imburse_exchange_init(ngx_conf_t *cf);

ngx_int_t ngx_http_imburse_exchange_start(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_uint_t claim, ngx_uint_t background);

ngx_int_t ngx_http_imburse_wait(ngx_http_request_t *r,
    ngx_http_imburse_ctx_t *ctx, ngx_msec_t deadline, ngx_uint_t version);

void ngx_http_imburse_key_init_waiters(ngx_http_imburse_key_t *key,
    ngx_log_t *log);

void ngx_http_imburse_ctx_cleanup(void *data);


#endif /* _NGX_HTTP_IMBURSE_EXCHANGE_H_INCLUDED_ */
