/*
 * The location a URI finds at configuration time (from postconfiguration
 * on, once nginx has built its location trees).
 */

#ifndef _NGX_HTTP_IMBURSE_LOCATION_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_LOCATION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * The first internal location the URI finds, in the order of the servers;
 * else the first location it finds (not internal); NULL if none.
 */
ngx_http_core_loc_conf_t *ngx_http_imburse_find_location(ngx_conf_t *cf,
    ngx_str_t *uri, ngx_http_core_srv_conf_t **server);


/* the location the URI finds in this server; NULL if none */
ngx_http_core_loc_conf_t *ngx_http_imburse_server_location(
    ngx_http_core_srv_conf_t *cscf, ngx_str_t *uri);


#endif /* _NGX_HTTP_IMBURSE_LOCATION_H_INCLUDED_ */
