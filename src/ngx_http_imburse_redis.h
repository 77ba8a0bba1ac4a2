/*
 * One operation of the fleet tier on Redis, carried out by a subrequest to
 * the location with imburse_redis_pass: the auth module puts the operation
 * into the subrequest's context, the Redis module puts the reply there.
 */

#ifndef _NGX_HTTP_IMBURSE_REDIS_H_INCLUDED_
#define _NGX_HTTP_IMBURSE_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef enum {
    NGX_HTTP_IMBURSE_REDIS_GET = 0,   /* GET token */
    NGX_HTTP_IMBURSE_REDIS_LOCK,      /* SET lock owner NX PX ttl */
    NGX_HTTP_IMBURSE_REDIS_PUT,       /* SET token value PX ttl + UNLOCK */
    NGX_HTTP_IMBURSE_REDIS_UNLOCK     /* delete lock if owner still holds it */
} ngx_http_imburse_redis_op_e;


typedef struct {
    ngx_http_imburse_redis_op_e   type;
    ngx_str_t                     token_key;
    ngx_str_t                     lock_key;
    ngx_str_t                     owner;
    ngx_str_t                     value;
    ngx_msec_t                    ttl;

    /* the reply: done once Redis answered every command */
    ngx_str_t                     reply;      /* GET: the value */
    const char                   *error;      /* Redis said no, or garbage */
    unsigned                      done:1;
    unsigned                      partial:1;  /* part of a reply came */
    unsigned                      nil:1;      /* GET: none; LOCK: not ours */
} ngx_http_imburse_redis_op_t;


extern ngx_module_t  ngx_http_imburse_redis_module;


#endif /* _NGX_HTTP_IMBURSE_REDIS_H_INCLUDED_ */
