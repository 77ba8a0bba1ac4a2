/*
 * What an identity service's error body says, for the one error line of a
 * failed exchange: Imburse's errorCode(s), or else a short printable
 * excerpt with the token-shaped parts masked.  Pure C (cJSON), no nginx
 * types, so that it is unit-tested and fuzzed directly.
 */

#ifndef _NGX_IMBURSE_ERRBODY_H_INCLUDED_
#define _NGX_IMBURSE_ERRBODY_H_INCLUDED_


#include <stddef.h>


/* at most this many codes, each cut to this many characters */
#define IMBURSE_ERRBODY_CODES      4
#define IMBURSE_ERRBODY_CODE_MAX   64

/* a run of token characters this long is masked */
#define IMBURSE_ERRBODY_MASK_RUN   20


/*
 * Imburse's error body, {"errors":[{"errorCode":"...","message":"..."}]}
 * (or a top-level "errorCode"): writes "CODE1, CODE2" (characters other
 * than letters, digits, "_", "-" and "." dropped) into out, NUL-terminated;
 * returns its length, 0 when the body names no code.
 */
size_t imburse_error_codes(const char *body, size_t len, char *out,
    size_t size);

/*
 * At most size - 1 bytes of the body, NUL-terminated: bytes outside
 * printable ASCII as ".", runs of IMBURSE_ERRBODY_MASK_RUN or more token
 * characters (RFC 6750 b64token, JSON's escaped "\/" counting as one) as
 * "*"; "..." ends an excerpt of a longer body.  Returns its length.
 */
size_t imburse_error_excerpt(const char *body, size_t len, char *out,
    size_t size);


#endif /* _NGX_IMBURSE_ERRBODY_H_INCLUDED_ */
