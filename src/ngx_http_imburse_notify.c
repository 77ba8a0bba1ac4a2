/*
 * Waking the requests that wait in other workers when a key's token
 * changes.
 *
 * The master makes one pipe per worker slot for each cycle; the workers
 * inherit all of them.  A worker watches the read end of its own slot in
 * its event loop, and the worker that ends an exchange writes a byte to
 * every other slot.  So a waiting request is resumed as soon as its worker
 * runs, with no polling interval: a timer per key remains only as a safety
 * net (workers of different cycles after a reload share the zone but not
 * the pipes; a worker whose pipe could not be watched).
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_exchange.h"


static void ngx_http_imburse_notify_cleanup(void *data);
static void ngx_http_imburse_notify_handler(ngx_event_t *ev);


ngx_int_t
ngx_http_imburse_notify_init_module(ngx_cycle_t *cycle)
{
    ngx_fd_t                      *fds;
    ngx_uint_t                     i, n;
    ngx_core_conf_t               *ccf;
    ngx_pool_cleanup_t            *cln;
    ngx_http_imburse_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_imburse_auth_module);

    if (imcf == NULL || imcf->keys.nelts == 0 || ngx_test_config
        || ngx_process == NGX_PROCESS_SIGNALLER)
    {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (!ccf->master || ccf->worker_processes < 2) {
        return NGX_OK;
    }

    /*
     * Every failure here leaves the waking to the safety-net timer: an
     * error from an init_module handler would end the master on reload.
     */

    n = ccf->worker_processes;

    fds = ngx_palloc(cycle->pool, 2 * n * sizeof(ngx_fd_t));
    cln = ngx_pool_cleanup_add(cycle->pool, 0);

    if (fds == NULL || cln == NULL) {
        return NGX_OK;
    }

    for (i = 0; i < 2 * n; i++) {
        fds[i] = -1;
    }

    imcf->notify_fds = fds;
    imcf->notify_n = n;

    cln->handler = ngx_http_imburse_notify_cleanup;
    cln->data = imcf;

    for (i = 0; i < n; i++) {

        /* nonblocking: a full pipe already holds a wake-up; close-on-exec:
         * a new binary (upgrade on the fly) does not inherit them */

        if (pipe(&fds[2 * i]) == -1
            || ngx_nonblocking(fds[2 * i]) == -1
            || ngx_nonblocking(fds[2 * i + 1]) == -1
            || fcntl(fds[2 * i], F_SETFD, FD_CLOEXEC) == -1
            || fcntl(fds[2 * i + 1], F_SETFD, FD_CLOEXEC) == -1)
        {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          "imburse: no wake-up pipes for the workers, "
                          "waiting requests are resumed by a 1ms timer");
            ngx_http_imburse_notify_cleanup(imcf);
            imcf->notify_fds = NULL;
            imcf->notify_n = 0;
            return NGX_OK;
        }
    }

    return NGX_OK;
}


static void
ngx_http_imburse_notify_cleanup(void *data)
{
    ngx_http_imburse_main_conf_t *imcf = data;

    ngx_uint_t  i;

    for (i = 0; i < 2 * imcf->notify_n; i++) {
        if (imcf->notify_fds[i] != -1) {
            (void) close(imcf->notify_fds[i]);
            imcf->notify_fds[i] = -1;
        }
    }
}


ngx_int_t
ngx_http_imburse_notify_init_process(ngx_cycle_t *cycle)
{
    ngx_connection_t              *c;
    ngx_http_imburse_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_imburse_auth_module);

    if (imcf == NULL || imcf->notify_fds == NULL
        || ngx_process != NGX_PROCESS_WORKER
        || ngx_worker >= imcf->notify_n)
    {
        return NGX_OK;
    }

    /* without the pipe the safety-net timer does the waking, just later */

    c = ngx_get_connection(imcf->notify_fds[2 * ngx_worker], cycle->log);
    if (c == NULL) {
        return NGX_OK;
    }

    c->data = imcf;
    c->read->handler = ngx_http_imburse_notify_handler;
    c->read->log = cycle->log;

    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        /* the fd stays ours (closed with the cycle), not the free slot's */
        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
        return NGX_OK;
    }

    imcf->notify_conn = c;

    return NGX_OK;
}


void
ngx_http_imburse_notify_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_imburse_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_imburse_auth_module);

    if (imcf == NULL || imcf->notify_conn == NULL) {
        return;
    }

    /* closed here, or nginx reports a socket left open at exit */

    ngx_close_connection(imcf->notify_conn);
    imcf->notify_conn = NULL;
    imcf->notify_fds[2 * ngx_worker] = -1;
}


void
ngx_http_imburse_notify_workers(void)
{
    ngx_uint_t                     i;
    ngx_http_imburse_main_conf_t  *imcf;

    /* at exit ngx_cycle is nginx's bare exit cycle, without configuration */

    if (ngx_process != NGX_PROCESS_WORKER || ngx_cycle->conf_ctx == NULL) {
        return;
    }

    imcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_imburse_auth_module);

    if (imcf == NULL || imcf->notify_fds == NULL) {
        return;
    }

    for (i = 0; i < imcf->notify_n; i++) {
        if (i != ngx_worker && imcf->notify_fds[2 * i + 1] != -1) {
            if (write(imcf->notify_fds[2 * i + 1], "!", 1) == -1) {
                /* EAGAIN: the pipe is full of wake-ups not yet read */
            }
        }
    }
}


ngx_uint_t
ngx_http_imburse_notify_active(void)
{
    ngx_http_imburse_main_conf_t  *imcf;

    if (ngx_cycle->conf_ctx == NULL) {
        return 0;
    }

    imcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_imburse_auth_module);

    return imcf != NULL && imcf->notify_conn != NULL;
}


static void
ngx_http_imburse_notify_handler(ngx_event_t *ev)
{
    u_char                         buf[64];
    ssize_t                        n;
    ngx_uint_t                     rounds;
    ngx_queue_t                   *q, *next;
    ngx_err_t                      err;
    ngx_connection_t              *c;
    ngx_http_imburse_key_t        *key;
    ngx_http_imburse_main_conf_t  *imcf;

    c = ev->data;
    imcf = c->data;

    /* worker_shutdown_timeout closes what is left at the end */

    if (c->close) {
        ngx_close_connection(c);
        imcf->notify_conn = NULL;
        imcf->notify_fds[2 * ngx_worker] = -1;
        return;
    }

    /* bounded: the writers are other workers, each byte is one wake-up */

    for (rounds = 0; rounds < 64; rounds++) {
        n = read(c->fd, buf, sizeof(buf));

        if (n > 0) {
            continue;
        }

        if (n == -1) {
            err = ngx_errno;

            if (err != NGX_EAGAIN && err != NGX_EINTR) {
                ngx_log_error(NGX_LOG_ALERT, ev->log, err,
                              "imburse: reading the wake-up pipe failed");
                ngx_close_connection(c);
                imcf->notify_conn = NULL;
                imcf->notify_fds[2 * ngx_worker] = -1;
                return;
            }
        }

        break;
    }

    /* only the keys with requests waiting: not all of thousands */

    for (q = ngx_queue_head(&imcf->waiting);
         q != ngx_queue_sentinel(&imcf->waiting);
         q = next)
    {
        next = ngx_queue_next(q);
        key = ngx_queue_data(q, ngx_http_imburse_key_t, listed_link);

        if (ngx_queue_empty(&key->waiters)) {
            ngx_queue_remove(q);
            key->listed = 0;
            continue;
        }

        ngx_http_imburse_wake_if_changed(key, "another worker");
    }
}
