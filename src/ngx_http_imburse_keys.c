/*
 * Keys by name.  A gateway of thousands of tenants finds the key of a
 * request ("imburse_auth $tenant") in constant time: an ngx_hash_t built
 * once the configuration's keys are all known.  While the configuration is
 * read, the names collect in ngx_hash_keys_arrays_t, which finds a
 * duplicate in constant time too.
 *
 * nginx's hash compares lowercased names; key names are matched exactly
 * (the hash finds the candidate), and two names that differ only in case
 * are refused as duplicates.
 */

#include "ngx_http_imburse_auth.h"


#define NGX_HTTP_IMBURSE_NAME_MAX  256


ngx_int_t
ngx_http_imburse_keys_add(ngx_conf_t *cf, ngx_http_imburse_main_conf_t *imcf,
    ngx_str_t *name)
{
    ngx_int_t   rc;
    ngx_str_t   lc;

    if (imcf->names == NULL) {
        imcf->names = ngx_pcalloc(cf->temp_pool,
                                  sizeof(ngx_hash_keys_arrays_t));
        if (imcf->names == NULL) {
            return NGX_ERROR;
        }

        imcf->names->pool = cf->pool;
        imcf->names->temp_pool = cf->temp_pool;

        if (ngx_hash_keys_array_init(imcf->names, NGX_HASH_LARGE) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (name->len > NGX_HTTP_IMBURSE_NAME_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "imburse_api_key name \"%V\" is longer than %d "
                           "characters", name, NGX_HTTP_IMBURSE_NAME_MAX);
        return NGX_ERROR;
    }

    /* ngx_hash_add_key() lowercases what it is given: a copy */

    lc.len = name->len;
    lc.data = ngx_pnalloc(cf->pool, name->len);
    if (lc.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(lc.data, name->data, name->len);

    rc = ngx_hash_add_key(imcf->names, &lc,
                          (void *) (uintptr_t) (imcf->keys.nelts + 1), 0);

    if (rc == NGX_BUSY) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate imburse_api_key \"%V\" (names that "
                           "differ only in case are one)", name);
        return NGX_ERROR;
    }

    return rc;
}


/* once every key is read: the keys array no longer moves */

ngx_int_t
ngx_http_imburse_keys_hash(ngx_conf_t *cf, ngx_http_imburse_main_conf_t *imcf)
{
    size_t            longest, elt;
    ngx_uint_t        i;
    ngx_hash_key_t   *names;
    ngx_hash_init_t   hinit;

    if (imcf->names == NULL) {
        return NGX_OK;
    }

    /*
     * There are no directives to size this hash: a bucket holds four
     * elements of the longest name (as NGX_HASH_ELT_SIZE counts them), so
     * that any name up to NGX_HTTP_IMBURSE_NAME_MAX fits and a size within
     * max_size is found for any number of keys, and few enough that a
     * lookup compares one or two names.
     */

    names = imcf->names->keys.elts;
    longest = 0;

    for (i = 0; i < imcf->names->keys.nelts; i++) {
        longest = ngx_max(longest, names[i].key.len);
    }

    elt = sizeof(void *) + ngx_align(longest + 2, sizeof(void *));

    hinit.hash = &imcf->keys_hash;
    hinit.key = ngx_hash_key_lc;
    hinit.max_size = ngx_max(1024, 2 * imcf->keys.nelts);
    hinit.bucket_size = ngx_align(ngx_max(128, 4 * elt + sizeof(void *)),
                                  ngx_cacheline_size);
    hinit.name = "imburse_keys_hash";
    hinit.pool = cf->pool;
    hinit.temp_pool = NULL;

    return ngx_hash_init(&hinit, imcf->names->keys.elts,
                         imcf->names->keys.nelts);
}


ngx_http_imburse_key_t *
ngx_http_imburse_find_key(ngx_http_imburse_main_conf_t *imcf,
    ngx_str_t *name)
{
    u_char                   lc[NGX_HTTP_IMBURSE_NAME_MAX];
    uintptr_t                n;
    ngx_uint_t               hash;
    ngx_http_imburse_key_t  *key;

    if (name->len == 0 || name->len > NGX_HTTP_IMBURSE_NAME_MAX
        || imcf->keys_hash.buckets == NULL)
    {
        return NULL;
    }

    hash = ngx_hash_strlow(lc, name->data, name->len);

    n = (uintptr_t) ngx_hash_find(&imcf->keys_hash, hash, lc, name->len);

    if (n == 0) {
        return NULL;
    }

    key = (ngx_http_imburse_key_t *) imcf->keys.elts + (n - 1);

    return ngx_strncmp(key->name.data, name->data, name->len) == 0
           ? key : NULL;
}
