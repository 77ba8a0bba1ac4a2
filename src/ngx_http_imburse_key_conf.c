/*
 * The imburse_api_key directive: one tenant API key.
 *
 *     imburse_api_key NAME public_key=STR private_key_file=PATH exchange=URI
 *                     [refresh=TIME] [retry=TIME] [timeout=TIME] [fleet=URI];
 */

#include "ngx_http_imburse_auth.h"
#include "ngx_imburse_fleet_crypto.h"

#include <openssl/crypto.h>


/* a 64-byte HMAC key is 88 base64 characters: anything far bigger is wrong */
#define NGX_HTTP_IMBURSE_KEY_FILE_MAX  4096


static char *ngx_http_imburse_read_key_file(ngx_conf_t *cf,
    ngx_http_imburse_key_t *key, ngx_str_t *path);
static char *ngx_http_imburse_check_key(ngx_conf_t *cf,
    ngx_http_imburse_key_t *key);
static char *ngx_http_imburse_fleet_keys(ngx_conf_t *cf,
    ngx_http_imburse_key_t *key);
static ngx_int_t ngx_http_imburse_key_file_mode(ngx_conf_t *cf,
    ngx_http_imburse_key_t *key, ngx_str_t *path, ngx_file_info_t *fi);
static u_char *ngx_http_imburse_secret(ngx_pool_t *pool, size_t len);
static void ngx_http_imburse_secret_cleanup(void *data);
static ngx_int_t ngx_http_imburse_param(ngx_str_t *arg, const char *name,
    ngx_str_t *value);
static ngx_int_t ngx_http_imburse_param_time(ngx_conf_t *cf, ngx_str_t *arg,
    const char *name, ngx_msec_t *msec);


char *
ngx_http_imburse_api_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_imburse_main_conf_t  *imcf = conf;

    char                    *rv;
    u_char                   c;
    ngx_int_t                rc;
    ngx_str_t               *value, v, key_file;
    ngx_uint_t               i;
    ngx_http_imburse_key_t  *key;

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        c = value[1].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid imburse_api_key name \"%V\", use "
                               "letters, digits, \"_\", \"-\" and \".\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"off\" cannot name an imburse_api_key");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_imburse_keys_add(cf, imcf, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    key = ngx_array_push(&imcf->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_http_imburse_key_t));

    key->name = value[1];
    key->refresh = 60000;
    key->retry = 5000;
    key->timeout = 10000;

    ngx_str_null(&key_file);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_imburse_param(&value[i], "public_key=", &v) == NGX_OK) {
            key->public_key = v;
            continue;
        }

        if (ngx_http_imburse_param(&value[i], "private_key_file=", &v)
            == NGX_OK)
        {
            key_file = v;
            continue;
        }

        if (ngx_http_imburse_param(&value[i], "exchange=", &v) == NGX_OK) {
            key->exchange = v;
            continue;
        }

        if (ngx_http_imburse_param(&value[i], "fleet=", &v) == NGX_OK) {
            key->fleet = v;
            continue;
        }

        rc = ngx_http_imburse_param_time(cf, &value[i], "refresh",
                                         &key->refresh);

        if (rc == NGX_DECLINED) {
            rc = ngx_http_imburse_param_time(cf, &value[i], "retry",
                                             &key->retry);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_imburse_param_time(cf, &value[i], "timeout",
                                             &key->timeout);
        }

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in imburse_api_key \"%V\"",
                           &value[i], &key->name);
        return NGX_CONF_ERROR;
    }

    if (key->public_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "missing \"public_key=\" in imburse_api_key \"%V\"",
                           &key->name);
        return NGX_CONF_ERROR;
    }

    if (key_file.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "missing \"private_key_file=\" in "
                           "imburse_api_key \"%V\"", &key->name);
        return NGX_CONF_ERROR;
    }

    if (key->exchange.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "missing \"exchange=\" in imburse_api_key \"%V\"",
                           &key->name);
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_imburse_check_key(cf, key);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ngx_http_imburse_read_key_file(cf, key, &key_file);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_http_imburse_fleet_keys(cf, key);
}


/*
 * The fleet's Redis keys are named after the public key, and tokens there
 * are sealed with a key only holders of the private key can derive.
 */

static char *
ngx_http_imburse_fleet_keys(ngx_conf_t *cf, ngx_http_imburse_key_t *key)
{
    u_char  *p;
    char     ns[IMBURSE_FLEET_NS_LEN];

    if (key->fleet.len == 0) {
        return NGX_CONF_OK;
    }

    if (key->fleet.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"fleet=%V\" in imburse_api_key \"%V\": "
                           "it must be a location URI starting with \"/\"",
                           &key->fleet, &key->name);
        return NGX_CONF_ERROR;
    }

    key->fleet_seal_key = ngx_http_imburse_secret(cf->pool, 32);
    if (key->fleet_seal_key == NULL) {
        return NGX_CONF_ERROR;
    }

    if (imburse_fleet_derive_key(key->fleet_seal_key, key->private_key.data,
                                 key->private_key.len, key->public_key.data,
                                 key->public_key.len)
        != 0)
    {
        return NGX_CONF_ERROR;
    }

    imburse_fleet_namespace(ns, key->public_key.data, key->public_key.len);

    p = ngx_pnalloc(cf->pool, 2 * (sizeof("imburse::token") - 1
                                   + IMBURSE_FLEET_NS_LEN));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    key->fleet_token_key.data = p;
    p = ngx_sprintf(p, "imburse:%*s:token", (size_t) IMBURSE_FLEET_NS_LEN, ns);
    key->fleet_token_key.len = p - key->fleet_token_key.data;

    key->fleet_lock_key.data = p;
    p = ngx_sprintf(p, "imburse:%*s:lock", (size_t) IMBURSE_FLEET_NS_LEN, ns);
    key->fleet_lock_key.len = p - key->fleet_lock_key.data;

    return NGX_CONF_OK;
}


static char *
ngx_http_imburse_check_key(ngx_conf_t *cf, ngx_http_imburse_key_t *key)
{
    ngx_uint_t  i;
    u_char      c;

    /* the public key goes verbatim into a header, colon-separated */

    for (i = 0; i < key->public_key.len; i++) {
        c = key->public_key.data[i];

        if (c <= ' ' || c == 0x7f || c == ':') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"public_key=\" in imburse_api_key "
                               "\"%V\": no spaces, control characters or "
                               "\":\" allowed", &key->name);
            return NGX_CONF_ERROR;
        }
    }

    if (key->exchange.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"exchange=%V\" in imburse_api_key \"%V\": "
                           "it must be a location URI starting with \"/\"",
                           &key->exchange, &key->name);
        return NGX_CONF_ERROR;
    }

    if (key->retry == 0 || key->timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"retry=\" and \"timeout=\" in imburse_api_key "
                           "\"%V\" must be greater than zero", &key->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_imburse_read_key_file(ngx_conf_t *cf, ngx_http_imburse_key_t *key,
    ngx_str_t *path)
{
    u_char           *p;
    long              n;
    char             *rv;
    ssize_t           size;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;
    char              problem[128];
    u_char            buf[NGX_HTTP_IMBURSE_KEY_FILE_MAX + 1];

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open private_key_file \"%V\" of "
                           "imburse_api_key \"%V\"", path, &key->name);
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_ERROR;
    size = 0;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "private_key_file \"%V\" of imburse_api_key \"%V\" "
                           "is not a regular file", path, &key->name);
        goto done;
    }

    if (ngx_http_imburse_key_file_mode(cf, key, path, &fi) != NGX_OK) {
        goto done;
    }

    size = ngx_read_fd(fd, buf, sizeof(buf));

    if (size == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read private_key_file \"%V\" of "
                           "imburse_api_key \"%V\"", path, &key->name);
        size = 0;
        goto done;
    }

    if (size > NGX_HTTP_IMBURSE_KEY_FILE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "private_key_file \"%V\" of imburse_api_key \"%V\" "
                           "is larger than %d bytes", path, &key->name,
                           NGX_HTTP_IMBURSE_KEY_FILE_MAX);
        goto done;
    }

    p = ngx_http_imburse_secret(cf->pool, (size_t) size * 3 / 4 + 3);
    if (p == NULL) {
        goto done;
    }

    n = imburse_base64_decode_key(p, buf, (size_t) size);

    if (n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid base64 in private_key_file \"%V\" of "
                           "imburse_api_key \"%V\": %s", path, &key->name,
                           imburse_base64_key_problem(buf, (size_t) size,
                                                      problem,
                                                      sizeof(problem)));
        goto done;
    }

    key->private_key.data = p;
    key->private_key.len = (size_t) n;

    imburse_key_fingerprint(key->fingerprint, key->public_key.data,
                            key->public_key.len, p, (size_t) n);

    rv = NGX_CONF_OK;

done:

    ngx_explicit_memzero(buf, (size_t) size);

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", path);
    }

    return rv;
}


/*
 * The key file is the tenant's secret: someone who can write it can make
 * the gateway sign with a key of theirs (or read it back), so it must be
 * written by nobody but its owner, the user who starts nginx (or root).
 * Reading it is for that user too: group or world read is a warning.
 */

static ngx_int_t
ngx_http_imburse_key_file_mode(ngx_conf_t *cf, ngx_http_imburse_key_t *key,
    ngx_str_t *path, ngx_file_info_t *fi)
{
    ngx_uint_t  mode;
    ngx_uid_t   uid;

    mode = ngx_file_access(fi);
    uid = geteuid();

    if (fi->st_uid != uid && fi->st_uid != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "private_key_file \"%V\" of imburse_api_key \"%V\" "
                           "is owned by uid %d: it must belong to the user "
                           "that starts nginx (uid %d) or to root",
                           path, &key->name, (int) fi->st_uid, (int) uid);
        return NGX_ERROR;
    }

    if (mode & 0022) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "private_key_file \"%V\" of imburse_api_key \"%V\" "
                           "is writable by %s (mode 0%ui%ui%ui): chmod 600 it",
                           path, &key->name,
                           (mode & 0002) ? "everyone" : "its group",
                           (mode >> 6) & 7, (mode >> 3) & 7, mode & 7);
        return NGX_ERROR;
    }

    if (mode & 0044) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "private_key_file \"%V\" of imburse_api_key \"%V\" "
                           "is readable by %s (mode 0%ui%ui%ui), restrict it "
                           "to the user that starts nginx: chmod 600 it",
                           path, &key->name,
                           (mode & 0004) ? "everyone" : "its group",
                           (mode >> 6) & 7, (mode >> 3) & 7, mode & 7);
    }

    return NGX_OK;
}


/*
 * Memory for a secret (the private key's bytes, the fleet's sealing key):
 * wiped when the pool of the configuration that holds it is destroyed.
 */

typedef struct {
    u_char  *data;
    size_t   len;
} ngx_http_imburse_secret_t;


static u_char *
ngx_http_imburse_secret(ngx_pool_t *pool, size_t len)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_imburse_secret_t  *sec;

    cln = ngx_pool_cleanup_add(pool, sizeof(ngx_http_imburse_secret_t));
    if (cln == NULL) {
        return NULL;
    }

    sec = cln->data;

    sec->data = ngx_pnalloc(pool, len);
    if (sec->data == NULL) {
        return NULL;
    }

    sec->len = len;
    cln->handler = ngx_http_imburse_secret_cleanup;

    return sec->data;
}


static void
ngx_http_imburse_secret_cleanup(void *data)
{
    ngx_http_imburse_secret_t  *sec = data;

    OPENSSL_cleanse(sec->data, sec->len);
}


static ngx_int_t
ngx_http_imburse_param(ngx_str_t *arg, const char *name, ngx_str_t *value)
{
    size_t  len;

    len = ngx_strlen(name);

    if (arg->len < len || ngx_strncmp(arg->data, name, len) != 0) {
        return NGX_DECLINED;
    }

    value->data = arg->data + len;
    value->len = arg->len - len;

    return NGX_OK;
}


/* NGX_DECLINED when arg is not "name=..." */

static ngx_int_t
ngx_http_imburse_param_time(ngx_conf_t *cf, ngx_str_t *arg, const char *name,
    ngx_msec_t *msec)
{
    size_t     len;
    ngx_int_t  t;
    ngx_str_t  v;

    len = ngx_strlen(name);

    if (arg->len <= len || ngx_strncmp(arg->data, name, len) != 0
        || arg->data[len] != '=')
    {
        return NGX_DECLINED;
    }

    v.data = arg->data + len + 1;
    v.len = arg->len - len - 1;

    t = ngx_parse_time(&v, 0);

    if (t == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid %s value \"%V\"",
                           name, &v);
        return NGX_ERROR;
    }

    *msec = (ngx_msec_t) t;

    return NGX_OK;
}
