/*
 * Copyright (C) nginx-imburse-auth contributors
 *
 * imburse_redis_pass: the fleet tier's Redis client.  A content handler on
 * nginx's upstream machinery, after the memcached module: connections,
 * keepalive, timeouts and server lists are nginx's.  It runs only the
 * operation the auth module attached to its subrequest, pipelined after an
 * AUTH when a password is configured, and answers nothing to anyone else.
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_http_imburse_redis.h"
#include "ngx_imburse_resp.h"


#define NGX_HTTP_IMBURSE_REDIS_PASSWORD_MAX  512


typedef struct {
    ngx_http_upstream_conf_t   upstream;
    ngx_str_t                  password;
    ngx_msec_t                 timeout;
} ngx_http_imburse_redis_loc_conf_t;


typedef struct {
    ngx_http_request_t            *request;
    ngx_http_imburse_redis_op_t   *op;
    ngx_uint_t                     replies;     /* still expected */
    ngx_uint_t                     auth;        /* an AUTH reply comes first */
    ngx_uint_t                     index;       /* of the next reply */
} ngx_http_imburse_redis_ctx_t;


static ngx_int_t ngx_http_imburse_redis_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_imburse_redis_create_request(ngx_http_request_t *r);
static u_char *ngx_http_imburse_redis_command(u_char *p, ngx_uint_t n, ...);
static size_t ngx_http_imburse_redis_command_len(ngx_uint_t n, ...);
static ngx_int_t ngx_http_imburse_redis_reinit_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_imburse_redis_process_header(ngx_http_request_t *r);
static void ngx_http_imburse_redis_reply(ngx_http_imburse_redis_ctx_t *ctx,
    imburse_resp_t *reply);
static void ngx_http_imburse_redis_log_error(
    ngx_http_imburse_redis_ctx_t *ctx, imburse_resp_t *reply);
static ngx_int_t ngx_http_imburse_redis_filter_init(void *data);
static ngx_int_t ngx_http_imburse_redis_filter(void *data, ssize_t bytes);
static void ngx_http_imburse_redis_abort_request(ngx_http_request_t *r);
static void ngx_http_imburse_redis_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc);

static void *ngx_http_imburse_redis_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_imburse_redis_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_imburse_redis_pass(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_imburse_redis_password_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


/* deletes the lock only if the caller still owns it */
static ngx_str_t  ngx_http_imburse_redis_unlock = ngx_string(
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end");


static ngx_command_t  ngx_http_imburse_redis_commands[] = {

    { ngx_string("imburse_redis_pass"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_imburse_redis_pass,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("imburse_redis_password_file"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_imburse_redis_password_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("imburse_redis_timeout"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_imburse_redis_loc_conf_t, timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_imburse_redis_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_imburse_redis_create_loc_conf, /* create location configuration */
    ngx_http_imburse_redis_merge_loc_conf  /* merge location configuration */
};


ngx_module_t  ngx_http_imburse_redis_module = {
    NGX_MODULE_V1,
    &ngx_http_imburse_redis_module_ctx,    /* module context */
    ngx_http_imburse_redis_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_imburse_redis_handler(ngx_http_request_t *r)
{
    ngx_http_upstream_t                *u;
    ngx_http_imburse_ctx_t             *ictx;
    ngx_http_imburse_redis_ctx_t       *ctx;
    ngx_http_imburse_redis_loc_conf_t  *rlcf;

    ictx = ngx_http_get_module_ctx(r, ngx_http_imburse_auth_module);

    /* only the auth module's own subrequests have an operation */

    if (r == r->main || ictx == NULL || ictx->redis_op == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    if (ngx_http_upstream_create(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    u = r->upstream;

    ngx_str_set(&u->schema, "redis://");
    u->output.tag = (ngx_buf_tag_t) &ngx_http_imburse_redis_module;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_imburse_redis_module);

    u->conf = &rlcf->upstream;

    u->create_request = ngx_http_imburse_redis_create_request;
    u->reinit_request = ngx_http_imburse_redis_reinit_request;
    u->process_header = ngx_http_imburse_redis_process_header;
    u->abort_request = ngx_http_imburse_redis_abort_request;
    u->finalize_request = ngx_http_imburse_redis_finalize_request;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_imburse_redis_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->op = ictx->redis_op;

    ngx_http_set_ctx(r, ctx, ngx_http_imburse_redis_module);

    u->input_filter_init = ngx_http_imburse_redis_filter_init;
    u->input_filter = ngx_http_imburse_redis_filter;
    u->input_filter_ctx = ctx;

    r->main->count++;

    ngx_http_upstream_init(r);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_imburse_redis_create_request(ngx_http_request_t *r)
{
    u_char                             *p;
    size_t                              len;
    ngx_buf_t                          *b;
    ngx_str_t                           ttl, one, *pw;
    ngx_chain_t                        *cl;
    ngx_http_imburse_redis_op_t        *op;
    ngx_http_imburse_redis_ctx_t       *ctx;
    ngx_http_imburse_redis_loc_conf_t  *rlcf;

    static ngx_str_t  auth = ngx_string("AUTH");
    static ngx_str_t  get = ngx_string("GET");
    static ngx_str_t  set = ngx_string("SET");
    static ngx_str_t  nx = ngx_string("NX");
    static ngx_str_t  px = ngx_string("PX");
    static ngx_str_t  eval = ngx_string("EVAL");

    ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_redis_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_imburse_redis_module);
    op = ctx->op;
    pw = &rlcf->password;

    ttl.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (ttl.data == NULL) {
        return NGX_ERROR;
    }

    ttl.len = ngx_sprintf(ttl.data, "%M", ngx_max(op->ttl, 1)) - ttl.data;
    ngx_str_set(&one, "1");

    len = 0;

    if (pw->len) {
        len += ngx_http_imburse_redis_command_len(2, &auth, pw);
    }

    switch (op->type) {

    case NGX_HTTP_IMBURSE_REDIS_GET:
        len += ngx_http_imburse_redis_command_len(2, &get, &op->token_key);
        break;

    case NGX_HTTP_IMBURSE_REDIS_LOCK:
        len += ngx_http_imburse_redis_command_len(6, &set, &op->lock_key,
                                                  &op->owner, &nx, &px, &ttl);
        break;

    case NGX_HTTP_IMBURSE_REDIS_PUT:
        len += ngx_http_imburse_redis_command_len(5, &set, &op->token_key,
                                                  &op->value, &px, &ttl);
        /* fall through */

    default: /* NGX_HTTP_IMBURSE_REDIS_UNLOCK */
        len += ngx_http_imburse_redis_command_len(5, &eval,
                                                  &ngx_http_imburse_redis_unlock,
                                                  &one, &op->lock_key,
                                                  &op->owner);
        break;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = b->last;
    ctx->auth = (pw->len != 0);
    ctx->replies = ctx->auth + 1;

    if (pw->len) {
        p = ngx_http_imburse_redis_command(p, 2, &auth, pw);
    }

    switch (op->type) {

    case NGX_HTTP_IMBURSE_REDIS_GET:
        p = ngx_http_imburse_redis_command(p, 2, &get, &op->token_key);
        break;

    case NGX_HTTP_IMBURSE_REDIS_LOCK:
        p = ngx_http_imburse_redis_command(p, 6, &set, &op->lock_key,
                                           &op->owner, &nx, &px, &ttl);
        break;

    case NGX_HTTP_IMBURSE_REDIS_PUT:
        p = ngx_http_imburse_redis_command(p, 5, &set, &op->token_key,
                                           &op->value, &px, &ttl);
        ctx->replies++;
        /* fall through */

    default: /* NGX_HTTP_IMBURSE_REDIS_UNLOCK */
        p = ngx_http_imburse_redis_command(p, 5, &eval,
                                           &ngx_http_imburse_redis_unlock,
                                           &one, &op->lock_key, &op->owner);
        break;
    }

    b->last = p;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    r->upstream->request_bufs = cl;

    return NGX_OK;
}


/* a RESP array of bulk strings: *n, then $len and the bytes of each */

static size_t
ngx_http_imburse_redis_command_len(ngx_uint_t n, ...)
{
    size_t      len;
    va_list     args;
    ngx_uint_t  i;
    ngx_str_t  *s;

    len = sizeof("*\r\n") - 1 + NGX_INT_T_LEN;

    va_start(args, n);

    for (i = 0; i < n; i++) {
        s = va_arg(args, ngx_str_t *);
        len += sizeof("$\r\n\r\n") - 1 + NGX_SIZE_T_LEN + s->len;
    }

    va_end(args);

    return len;
}


static u_char *
ngx_http_imburse_redis_command(u_char *p, ngx_uint_t n, ...)
{
    va_list     args;
    ngx_uint_t  i;
    ngx_str_t  *s;

    p = ngx_sprintf(p, "*%ui\r\n", n);

    va_start(args, n);

    for (i = 0; i < n; i++) {
        s = va_arg(args, ngx_str_t *);
        p = ngx_sprintf(p, "$%uz\r\n", s->len);
        p = ngx_cpymem(p, s->data, s->len);
        *p++ = CR; *p++ = LF;
    }

    va_end(args);

    return p;
}


static ngx_int_t
ngx_http_imburse_redis_reinit_request(ngx_http_request_t *r)
{
    ngx_http_imburse_redis_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_redis_module);

    ctx->index = 0;
    ctx->replies = ctx->auth + (ctx->op->type == NGX_HTTP_IMBURSE_REDIS_PUT)
                   + 1;
    ctx->op->error = NULL;
    ctx->op->nil = 0;
    ctx->op->done = 0;
    ctx->op->partial = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_redis_process_header(ngx_http_request_t *r)
{
    long                           n;
    imburse_resp_t                 reply;
    ngx_http_upstream_t           *u;
    ngx_http_imburse_redis_ctx_t  *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_imburse_redis_module);

    while (ctx->replies) {
        n = imburse_resp_parse(u->buffer.pos, u->buffer.last - u->buffer.pos,
                               &reply);

        if (n == 0) {
            if (u->buffer.last == u->buffer.end) {
                ctx->op->error = "reply too big";
                return NGX_HTTP_UPSTREAM_INVALID_HEADER;
            }

            ctx->op->partial = (u->buffer.last != u->buffer.pos);

            return NGX_AGAIN;
        }

        if (n == IMBURSE_RESP_TOO_BIG) {
            ctx->op->error = "reply too big";
            return NGX_HTTP_UPSTREAM_INVALID_HEADER;
        }

        if (n < 0) {
            ctx->op->error = "not a Redis reply";
            return NGX_HTTP_UPSTREAM_INVALID_HEADER;
        }

        ngx_http_imburse_redis_reply(ctx, &reply);

        u->buffer.pos += n;
        ctx->replies--;
        ctx->index++;
    }

    ctx->op->done = 1;
    ctx->op->partial = 0;

    /* what Redis sent was exactly the replies: the connection can be kept */

    u->keepalive = (u->buffer.pos == u->buffer.last);
    u->headers_in.status_n = NGX_HTTP_OK;
    u->headers_in.content_length_n = 0;
    u->state->status = NGX_HTTP_OK;

    return NGX_OK;
}


static void
ngx_http_imburse_redis_reply(ngx_http_imburse_redis_ctx_t *ctx,
    imburse_resp_t *reply)
{
    ngx_http_imburse_redis_op_t  *op;

    op = ctx->op;

    if (op->error) {
        /* a failed AUTH: what follows is only its consequence */
        return;
    }

    if (reply->type == IMBURSE_RESP_ERROR) {
        op->error = (ctx->auth && ctx->index == 0)
                    ? "AUTH refused" : "command refused";
        ngx_http_imburse_redis_log_error(ctx, reply);
        return;
    }

    if (ctx->auth && ctx->index == 0) {
        return;
    }

    switch (op->type) {

    case NGX_HTTP_IMBURSE_REDIS_GET:
        if (reply->type == IMBURSE_RESP_NIL) {
            op->nil = 1;

        } else if (reply->type == IMBURSE_RESP_BULK) {
            op->reply.data = ngx_pnalloc(ctx->request->pool, reply->len + 1);
            if (op->reply.data == NULL) {
                op->error = "out of memory";
                return;
            }

            ngx_memcpy(op->reply.data, reply->data, reply->len);
            op->reply.len = reply->len;

        } else {
            op->error = "unexpected reply to GET";
        }

        return;

    case NGX_HTTP_IMBURSE_REDIS_LOCK:
        if (reply->type == IMBURSE_RESP_NIL) {
            op->nil = 1;

        } else if (reply->type != IMBURSE_RESP_STATUS) {
            op->error = "unexpected reply to SET NX";
        }

        return;

    default:
        if (reply->type != IMBURSE_RESP_STATUS
            && reply->type != IMBURSE_RESP_INTEGER)
        {
            op->error = "unexpected reply";
        }

        return;
    }
}


/* what Redis said, cut short and printable: it is Redis' text, not ours */

static void
ngx_http_imburse_redis_log_error(ngx_http_imburse_redis_ctx_t *ctx,
    imburse_resp_t *reply)
{
    size_t  i, len;
    u_char  text[128];

    len = ngx_min(reply->len, sizeof(text));

    for (i = 0; i < len; i++) {
        text[i] = (reply->data[i] >= 0x20 && reply->data[i] < 0x7f)
                  ? reply->data[i] : '.';
    }

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "imburse redis: %s: \"%*s\"", ctx->op->error, len, text);
}


static ngx_int_t
ngx_http_imburse_redis_filter_init(void *data)
{
    ngx_http_imburse_redis_ctx_t  *ctx = data;

    ctx->request->upstream->length = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_imburse_redis_filter(void *data, ssize_t bytes)
{
    ngx_http_imburse_redis_ctx_t  *ctx = data;

    /* nothing follows the replies: more is a protocol error */

    ctx->op->error = "unexpected data after the replies";
    ctx->request->upstream->keepalive = 0;

    return NGX_ERROR;
}


static void
ngx_http_imburse_redis_abort_request(ngx_http_request_t *r)
{
    return;
}


static void
ngx_http_imburse_redis_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    return;
}


static void *
ngx_http_imburse_redis_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_imburse_redis_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_imburse_redis_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->upstream.local = NGX_CONF_UNSET_PTR;
    conf->upstream.socket_keepalive = NGX_CONF_UNSET;
    conf->upstream.next_upstream_tries = NGX_CONF_UNSET_UINT;
    conf->upstream.next_upstream_timeout = NGX_CONF_UNSET_MSEC;
    conf->timeout = NGX_CONF_UNSET_MSEC;

    /* the hardcoded values */
    conf->upstream.buffering = 0;
    conf->upstream.ignore_client_abort = 1;
    conf->upstream.intercept_errors = 1;
    conf->upstream.pass_request_headers = 0;
    conf->upstream.pass_request_body = 0;

    return conf;
}


static char *
ngx_http_imburse_redis_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_imburse_redis_loc_conf_t *prev = parent;
    ngx_http_imburse_redis_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->upstream.local, prev->upstream.local, NULL);
    ngx_conf_merge_value(conf->upstream.socket_keepalive,
                         prev->upstream.socket_keepalive, 0);
    ngx_conf_merge_uint_value(conf->upstream.next_upstream_tries,
                              prev->upstream.next_upstream_tries, 0);
    ngx_conf_merge_msec_value(conf->upstream.next_upstream_timeout,
                              prev->upstream.next_upstream_timeout, 0);

    /* Redis answers in microseconds: a slow one is as good as a dead one */
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 1000);

    conf->upstream.connect_timeout = conf->timeout;
    conf->upstream.send_timeout = conf->timeout;
    conf->upstream.read_timeout = conf->timeout;

    /* a reply is at most one bulk value and a few status lines */
    conf->upstream.buffer_size = IMBURSE_RESP_BULK_MAX + 1024;

    conf->upstream.next_upstream = NGX_CONF_BITMASK_SET
                                   |NGX_HTTP_UPSTREAM_FT_ERROR
                                   |NGX_HTTP_UPSTREAM_FT_TIMEOUT;

    if (conf->upstream.upstream == NULL) {
        conf->upstream.upstream = prev->upstream.upstream;
    }

    if (conf->password.data == NULL) {
        conf->password = prev->password;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_imburse_redis_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_imburse_redis_loc_conf_t  *rlcf = conf;

    ngx_str_t                 *value;
    ngx_url_t                  u;
    ngx_http_core_loc_conf_t  *clcf;

    if (rlcf->upstream.upstream) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.no_resolve = 1;

    rlcf->upstream.upstream = ngx_http_upstream_add(cf, &u, 0);
    if (rlcf->upstream.upstream == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    clcf->handler = ngx_http_imburse_redis_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_imburse_redis_password_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_imburse_redis_loc_conf_t  *rlcf = conf;

    u_char     *p, *last;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_str_t  *value, path;
    u_char      buf[NGX_HTTP_IMBURSE_REDIS_PASSWORD_MAX + 1];

    if (rlcf->password.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open imburse_redis_password_file \"%V\"",
                           &path);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, buf, sizeof(buf));

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &path);
    }

    if (n < 0 || n > NGX_HTTP_IMBURSE_REDIS_PASSWORD_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, n < 0 ? ngx_errno : 0,
                           "cannot read imburse_redis_password_file \"%V\"%s",
                           &path, n < 0 ? "" : ": longer than 512 bytes");
        goto failed;
    }

    p = buf;
    last = buf + n;

    while (p < last && (*p == ' ' || *p == '\t' || *p == CR || *p == LF)) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t'
                        || last[-1] == CR || last[-1] == LF))
    {
        last--;
    }

    if (p == last) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "imburse_redis_password_file \"%V\" is empty",
                           &path);
        goto failed;
    }

    rlcf->password.len = last - p;
    rlcf->password.data = ngx_pnalloc(cf->pool, rlcf->password.len);
    if (rlcf->password.data == NULL) {
        goto failed;
    }

    ngx_memcpy(rlcf->password.data, p, rlcf->password.len);
    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_CONF_OK;

failed:

    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_CONF_ERROR;
}
