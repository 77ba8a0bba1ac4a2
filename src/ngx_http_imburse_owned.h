/*
 * A request of the module's own, for work that no client may end: a
 * connection without a socket (nothing a client does reaches it) and a
 * request with its own pool, configured as a server of the
 * configuration.  Subrequests run from it as from any request; nginx's
 * phase engine, upstreams and filters never finalize it: only
 * ngx_http_imburse_owned_close() does.
 */

#ifndef _NGX_HTTP_IMBURSE_OWNED_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_OWNED_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * srv_ctx: the server whose locations the request's subrequests find;
 * what and name: what its log lines say it is for (', what "name"').
 * NULL on failure.
 */
ngx_http_request_t *ngx_http_imburse_owned_create(ngx_http_conf_ctx_t *srv_ctx,
    const char *what, ngx_str_t *name, ngx_log_t *log);

/* runs the subrequests posted on the request (after ngx_http_subrequest) */
void ngx_http_imburse_owned_run(ngx_http_request_t *r);

/* no subrequest of it is alive: it may be closed */
ngx_uint_t ngx_http_imburse_owned_idle(ngx_http_request_t *r);

/* ends what its subrequests run upstream (or resolve), and nothing else */
void ngx_http_imburse_owned_abort(ngx_http_request_t *r);

/* frees the request, its pool and its connection, aborting what runs */
void ngx_http_imburse_owned_close(ngx_http_request_t *r);


#endif /* _NGX_HTTP_IMBURSE_OWNED_H_INCLUDED_ */
