/*
 * The status page's parts (ngx_http_imburse_status.c): the writer, which
 * streams the page a batch of keys at a time, and its two formats, JSON
 * (ngx_http_imburse_status_json.c) and Prometheus text
 * (ngx_http_imburse_status_prom.c).
 */

#ifndef _NGX_HTTP_IMBURSE_STATUS_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_STATUS_H_INCLUDED_


#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_store.h"


/* what a part of the page without keys takes at most */
#define NGX_HTTP_IMBURSE_STATUS_TEXT  2048


typedef enum {
    NGX_HTTP_IMBURSE_STATUS_PART = 0,     /* text between the keys' */
    NGX_HTTP_IMBURSE_STATUS_KEYS          /* a line or object a key */
} ngx_http_imburse_status_stage_e;


typedef struct {
    ngx_http_imburse_main_conf_t     *imcf;
    ngx_http_imburse_key_t           *keys;
    ngx_uint_t                        nkeys;
    ngx_uint_t                        next;       /* the next key */
    ngx_uint_t                        fleets;     /* keys with fleet= */

    ngx_http_imburse_status_stage_e   stage;
    ngx_uint_t                        part;       /* the format's own */
    ngx_uint_t                        metric;     /* Prometheus: of KEYS */

    ngx_chain_t                      *free;
    ngx_chain_t                      *busy;
    ngx_uint_t                        bufs;

    unsigned                          prometheus:1;
    unsigned                          done:1;
    unsigned                          last:1;     /* of the main request */
    unsigned                          comma:1;    /* JSON: a key before */
} ngx_http_imburse_status_ctx_t;


/* ngx_http_imburse_status_prom.c */
ngx_uint_t ngx_http_imburse_status_prometheus_wanted(ngx_http_request_t *r);
u_char *ngx_http_imburse_prometheus_text(ngx_http_imburse_status_ctx_t *ctx,
    u_char *p);
u_char *ngx_http_imburse_prometheus_key(ngx_http_imburse_status_ctx_t *ctx,
    ngx_http_imburse_key_t *key, ngx_http_imburse_key_stats_t *st,
    u_char *p);

/* ngx_http_imburse_status_json.c */
u_char *ngx_http_imburse_json_text(ngx_http_imburse_status_ctx_t *ctx,
    u_char *p);
u_char *ngx_http_imburse_json_key(ngx_http_imburse_status_ctx_t *ctx,
    ngx_http_imburse_key_t *key, ngx_http_imburse_key_stats_t *st,
    u_char *p);

/* ms to whole seconds, rounded, either sign */
int64_t ngx_http_imburse_status_seconds(int64_t ms);


#endif /* _NGX_HTTP_IMBURSE_STATUS_H_INCLUDED_ */
