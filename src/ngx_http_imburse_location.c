/*
 * Which location a URI finds, at configuration time: the search of
 * ngx_http_core_find_location(), which needs a request, over the trees
 * nginx has built by postconfiguration.  The module runs its exchanges
 * from a request of its own, in the server that holds the exchange
 * location, and "nginx -t" names an exchange location that is missing or
 * not internal.
 */

#include "ngx_http_imburse_location.h"


static ngx_http_core_loc_conf_t *ngx_http_imburse_location_in(
    ngx_http_core_loc_conf_t *pclcf, ngx_str_t *uri, ngx_uint_t *final);
static ngx_http_core_loc_conf_t *ngx_http_imburse_static_location(
    ngx_http_location_tree_node_t *node, ngx_str_t *uri, ngx_uint_t *exact);


ngx_http_core_loc_conf_t *
ngx_http_imburse_find_location(ngx_conf_t *cf, ngx_str_t *uri,
    ngx_http_core_srv_conf_t **server)
{
    ngx_uint_t                  s, final;
    ngx_http_core_srv_conf_t  **cscfp;
    ngx_http_core_loc_conf_t   *clcf, *found, *first;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;
    first = NULL;

    for (s = 0; s < cmcf->servers.nelts; s++) {
        clcf = cscfp[s]->ctx->loc_conf[ngx_http_core_module.ctx_index];

        found = ngx_http_imburse_location_in(clcf, uri, &final);

        if (found == NULL) {
            continue;
        }

        /* another server's "location /" is no exchange location */

        if (found->internal) {
            *server = cscfp[s];
            return found;
        }

        if (first == NULL) {
            first = found;
            *server = cscfp[s];
        }
    }

    return first;
}


ngx_http_core_loc_conf_t *
ngx_http_imburse_server_location(ngx_http_core_srv_conf_t *cscf,
    ngx_str_t *uri)
{
    ngx_uint_t  final;

    return ngx_http_imburse_location_in(
               cscf->ctx->loc_conf[ngx_http_core_module.ctx_index], uri,
               &final);
}


/*
 * NULL when the URI finds no location below pclcf; *final: a regex or
 * exact match, which nothing else at an outer level overrides
 */

static ngx_http_core_loc_conf_t *
ngx_http_imburse_location_in(ngx_http_core_loc_conf_t *pclcf, ngx_str_t *uri,
    ngx_uint_t *final)
{
    ngx_uint_t                  noregex;
    ngx_http_core_loc_conf_t   *clcf, *best, *nested;
#if (NGX_PCRE)
    ngx_http_core_loc_conf_t  **clcfp;
#endif

    *final = 0;

    clcf = ngx_http_imburse_static_location(pclcf->static_locations, uri,
                                            final);
    if (*final) {
        return clcf;
    }

    best = clcf;
    noregex = 0;

    if (clcf) {
        noregex = clcf->noregex;

        nested = ngx_http_imburse_location_in(clcf, uri, final);

        if (nested) {
            if (*final) {
                return nested;
            }

            best = nested;
        }
    }

#if (NGX_PCRE)

    if (!noregex && pclcf->regex_locations) {

        for (clcfp = pclcf->regex_locations; *clcfp; clcfp++) {
            if (ngx_regex_exec((*clcfp)->regex->regex, uri, NULL, 0) >= 0) {
                nested = ngx_http_imburse_location_in(*clcfp, uri, final);
                *final = 1;
                return nested ? nested : *clcfp;
            }
        }
    }

#else
    (void) noregex;
#endif

    *final = 0;

    return best;
}


/* the longest prefix, or the exact location; a redirect is no match */

static ngx_http_core_loc_conf_t *
ngx_http_imburse_static_location(ngx_http_location_tree_node_t *node,
    ngx_str_t *uri, ngx_uint_t *exact)
{
    u_char                    *p;
    size_t                     len, n;
    ngx_int_t                  rc;
    ngx_http_core_loc_conf_t  *found;

    p = uri->data;
    len = uri->len;
    found = NULL;

    while (node) {
        n = ngx_min(len, (size_t) node->len);

        rc = ngx_filename_cmp(p, node->name, n);

        if (rc != 0) {
            node = (rc < 0) ? node->left : node->right;
            continue;
        }

        if (len > (size_t) node->len) {

            if (node->inclusive) {
                found = node->inclusive;
                node = node->tree;
                p += n;
                len -= n;
                continue;
            }

            node = node->right;
            continue;
        }

        if (len == (size_t) node->len) {

            if (node->exact) {
                *exact = 1;
                return node->exact;
            }

            return node->inclusive;
        }

        node = node->left;
    }

    return found;
}
