/*
 * A request of the module's own (see ngx_http_imburse_owned.h).
 *
 * Its connection has no socket (fd -1), as lua-nginx-module's timers have:
 * no event ever fires on it, so no hang-up, reset, client timeout or
 * send_timeout reaches the request.  Unlike those, it runs subrequests.
 * What that needs of the connection:
 *   - the upstream module adds the client connection's events to the
 *     event loop (to notice a client leaving) and sets its TCP_NODELAY:
 *     the events are marked active and the option disabled, there being
 *     no socket;
 *   - nginx's log functions take c->log->data for an ngx_http_log_ctx_t;
 *   - variables of the exchange location such as $remote_addr read the
 *     connection's addresses: it is a "unix:" client;
 *   - nginx must never finalize the request itself: its subrequests are
 *     background ones, whose results the caller's post-subrequest handler
 *     takes and which must not return NGX_ERROR, 408 or 499 (those end
 *     the main request).
 */

#include "ngx_http_imburse_owned.h"

#include <sys/un.h>


typedef struct {
    ngx_http_log_ctx_t         log_ctx;     /* first: c->log->data */
    const char                *what;
    ngx_str_t                  name;
    struct sockaddr_un         sockaddr;
} ngx_http_imburse_owned_t;


static ngx_connection_t *ngx_http_imburse_owned_connection(ngx_pool_t *pool,
    ngx_log_t *log);
static void ngx_http_imburse_owned_free_connection(ngx_connection_t *c);
static void ngx_http_imburse_owned_event(ngx_event_t *ev);
static u_char *ngx_http_imburse_owned_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static u_char *ngx_http_imburse_owned_log_handler(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len);


ngx_http_request_t *
ngx_http_imburse_owned_create(ngx_http_conf_ctx_t *srv_ctx, const char *what,
    ngx_str_t *name, ngx_log_t *log)
{
    ngx_time_t                 *tp;
    ngx_pool_t                 *pool;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_connection_t      *hc;
    ngx_http_imburse_owned_t   *o;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_core_main_conf_t  *cmcf;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NULL;
    }

    o = ngx_pcalloc(pool, sizeof(ngx_http_imburse_owned_t) + name->len);
    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    hc = ngx_pcalloc(pool, sizeof(ngx_http_connection_t));

    if (o == NULL || r == NULL || hc == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    o->name.data = (u_char *) o + sizeof(ngx_http_imburse_owned_t);
    o->what = what;
    o->name.len = name->len;
    ngx_memcpy(o->name.data, name->data, name->len);

    c = ngx_http_imburse_owned_connection(pool, log);
    if (c == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    c->log->handler = ngx_http_imburse_owned_log_error;
    c->log->data = o;

    o->sockaddr.sun_family = AF_UNIX;
    c->sockaddr = (struct sockaddr *) &o->sockaddr;
    c->socklen = sizeof(struct sockaddr_un);
    c->local_sockaddr = c->sockaddr;
    c->local_socklen = c->socklen;
    ngx_str_set(&c->addr_text, "unix:");

    c->data = r;
    c->requests = 1;

    hc->conf_ctx = srv_ctx;

    r->signature = NGX_HTTP_MODULE;
    r->connection = c;
    r->http_connection = hc;
    r->pool = pool;
    r->main = r;
    r->count = 1;

    r->main_conf = srv_ctx->main_conf;
    r->srv_conf = srv_ctx->srv_conf;
    r->loc_conf = srv_ctx->loc_conf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    r->ctx = ngx_pcalloc(pool, sizeof(void *) * ngx_http_max_module);
    r->variables = ngx_pcalloc(pool, cmcf->variables.nelts
                                     * sizeof(ngx_http_variable_value_t));

    if (r->ctx == NULL || r->variables == NULL
        || ngx_list_init(&r->headers_in.headers, pool, 1,
                         sizeof(ngx_table_elt_t))
           != NGX_OK
        || ngx_list_init(&r->headers_out.headers, pool, 1,
                         sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        ngx_http_imburse_owned_free_connection(c);
        ngx_destroy_pool(pool);
        return NULL;
    }

    r->headers_in.content_length_n = -1;
    r->headers_in.keep_alive_n = -1;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;

    r->method = NGX_HTTP_GET;
    ngx_str_set(&r->method_name, "GET");
    r->http_version = NGX_HTTP_VERSION_11;
    ngx_str_set(&r->http_protocol, "HTTP/1.1");
    ngx_str_set(&r->schema, "http");

    r->uri_changes = NGX_HTTP_MAX_URI_CHANGES + 1;
    r->subrequests = NGX_HTTP_MAX_SUBREQUESTS + 1;
    r->http_state = NGX_HTTP_PROCESS_REQUEST_STATE;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_request_empty_handler;
    r->log_handler = ngx_http_imburse_owned_log_handler;

    /* no access log line: its subrequests have theirs (log_subrequest) */
    r->logged = 1;

    /*
     * limit_req and limit_conn judge a subrequest by its main request: as
     * if this one had passed them (their private *_PASSED value, 1).  An
     * exchange is the module's own traffic, capped by
     * imburse_exchange_concurrency; all exchanges share the "unix:"
     * address, and a limit_req inherited by the exchange location would
     * delay every one of them in one bucket.
     */
    r->limit_req_status = 1;
    r->limit_conn_status = 1;

    tp = ngx_timeofday();
    r->start_sec = tp->sec;
    r->start_msec = tp->msec;

    o->log_ctx.connection = c;
    o->log_ctx.request = r;
    o->log_ctx.current_request = r;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    ngx_set_connection_log(c, clcf->error_log);

    return r;
}


static ngx_connection_t *
ngx_http_imburse_owned_connection(ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_log_t         *clog;
    ngx_connection_t  *c, *saved;

    clog = ngx_palloc(pool, sizeof(ngx_log_t));
    if (clog == NULL) {
        return NULL;
    }

    /*
     * With poll or select, ngx_get_connection() checks the fd against
     * cycle->files and records the connection there: a valid one (0) is
     * lent for the call, and its slot put back.
     */

    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;

    c = ngx_get_connection(0, log);

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }

    if (c == NULL) {
        return NULL;
    }

    c->fd = (ngx_socket_t) -1;
    c->pool = pool;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->start_time = ngx_current_msec;

    *clog = *log;
    clog->connection = c->number;
    clog->action = NULL;
    c->log = clog;
    c->log_error = NGX_ERROR_INFO;
    pool->log = clog;

    /*
     * ngx_http_upstream_init() would add its events to the event loop,
     * and ngx_http_upstream_send_response() set socket options on it
     */
    c->read->active = 1;
    c->write->active = 1;

    /*
     * No client event ever arrives, but code that delays a request arms a
     * timer on its connection's events (auth_delay, a buffered
     * subrequest's write handler): it must find a handler there.
     */
    c->read->handler = ngx_http_imburse_owned_event;
    c->write->handler = ngx_http_imburse_owned_event;
    c->read->log = clog;
    c->write->log = clog;
    c->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    c->tcp_nopush = NGX_TCP_NOPUSH_DISABLED;

    return c;
}


/* as ngx_http_request_handler() does for a client's connection */

static void
ngx_http_imburse_owned_event(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    c = ev->data;
    r = c->data;

    ngx_http_set_log_request(c->log, r);

    if (ev->delayed && ev->timedout) {
        ev->delayed = 0;
        ev->timedout = 0;
    }

    if (ev->write) {
        r->write_event_handler(r);

    } else {
        r->read_event_handler(r);
    }

    ngx_http_run_posted_requests(c);
}


void
ngx_http_imburse_owned_run(ngx_http_request_t *r)
{
    ngx_http_run_posted_requests(r->connection);
}


ngx_uint_t
ngx_http_imburse_owned_idle(ngx_http_request_t *r)
{
    return r->count == 1 && r->posted_requests == NULL;
}


void
ngx_http_imburse_owned_abort(ngx_http_request_t *r)
{
    ngx_http_cleanup_t  *cln;

    /* as ngx_http_terminate_request() does, without ending the request */

    cln = r->cleanup;
    r->cleanup = NULL;

    while (cln) {
        if (cln->handler) {
            cln->handler(cln->data);
        }

        cln = cln->next;
    }
}


void
ngx_http_imburse_owned_close(ngx_http_request_t *r)
{
    ngx_pool_t        *pool;
    ngx_connection_t  *c;

    c = r->connection;
    pool = r->pool;

    ngx_http_imburse_owned_abort(r);

    ngx_http_imburse_owned_free_connection(c);

    ngx_destroy_pool(pool);
}


static void
ngx_http_imburse_owned_free_connection(ngx_connection_t *c)
{
    ngx_connection_t  *saved;

    c->destroyed = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* ngx_free_connection() looks the fd up in cycle->files too */

    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;

    c->fd = 0;
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }
}


/*
 * Its log lines say what the request is for, and, during a subrequest,
 * which one and its upstream: what nginx's own handler says of a client
 * request, from the parts an owned request has.
 */

static u_char *
ngx_http_imburse_owned_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                    *p;
    ngx_http_request_t        *r;
    ngx_http_imburse_owned_t  *o;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    o = log->data;

    p = ngx_snprintf(buf, len, ", %s \"%V\"", o->what, &o->name);
    len -= p - buf;

    r = o->log_ctx.request;

    return r->log_handler(r, o->log_ctx.current_request, p, len);
}


static u_char *
ngx_http_imburse_owned_log_handler(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len)
{
    u_char               *p;
    ngx_http_upstream_t  *u;

    if (sr == NULL || sr == r) {
        return buf;
    }

    p = ngx_snprintf(buf, len, ", subrequest: \"%V\"", &sr->uri);
    len -= p - buf;
    buf = p;

    u = sr->upstream;

    if (u && u->peer.name) {
        p = ngx_snprintf(buf, len, ", upstream: \"%V%V%V\"",
                         &u->schema, u->peer.name, &u->uri);
    }

    return p;
}
