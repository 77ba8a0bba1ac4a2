/*
 * libFuzzer target: the JWT "exp" fallback, imburse_token_jwt_exp_ms().
 *
 * Input byte 0 even: the rest is the token as received.  Odd: the rest is a
 * JWT payload (JSON); it is base64url-encoded into "header.payload.sig", so
 * the fuzzer explores the payload's JSON instead of having to find valid
 * base64url first.  The token is malloc()ed at its exact size (no NUL).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_imburse_hmac.h"
#include "ngx_imburse_token.h"


static const char  b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


static size_t
encode_url(char *dst, const uint8_t *src, size_t len)
{
    size_t    i, n;
    uint32_t  v;

    n = 0;

    for (i = 0; i + 2 < len; i += 3) {
        v = (uint32_t) src[i] << 16 | (uint32_t) src[i + 1] << 8 | src[i + 2];
        dst[n++] = b64url[v >> 18];
        dst[n++] = b64url[(v >> 12) & 63];
        dst[n++] = b64url[(v >> 6) & 63];
        dst[n++] = b64url[v & 63];
    }

    if (len - i == 1) {
        v = (uint32_t) src[i] << 16;
        dst[n++] = b64url[v >> 18];
        dst[n++] = b64url[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = (uint32_t) src[i] << 16 | (uint32_t) src[i + 1] << 8;
        dst[n++] = b64url[v >> 18];
        dst[n++] = b64url[(v >> 12) & 63];
        dst[n++] = b64url[(v >> 6) & 63];
    }

    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char   hdr[] = "eyJhbGciOiJIUzI1NiJ9.";
    static const char   sig[] = ".c2ln";
    char               *tok;
    size_t              len;
    int64_t             ms;

    if (size < 1) {
        return 0;
    }

    if ((data[0] & 1) == 0) {
        len = size - 1;
        tok = malloc(len ? len : 1);
        if (tok == NULL) {
            abort();
        }
        memcpy(tok, data + 1, len);

    } else {
        tok = malloc(sizeof(hdr) - 1 + (size - 1 + 2) / 3 * 4 + sizeof(sig));
        if (tok == NULL) {
            abort();
        }
        len = 0;
        memcpy(tok, hdr, sizeof(hdr) - 1);
        len += sizeof(hdr) - 1;
        len += encode_url(tok + len, data + 1, size - 1);
        memcpy(tok + len, sig, sizeof(sig) - 1);
        len += sizeof(sig) - 1;
    }

    ms = imburse_token_jwt_exp_ms(tok, len);

    /* -1, or a positive, whole-second expiry no later than year 9999 */
    if (ms != -1
        && (ms <= 0 || ms > IMBURSE_EXPIRES_MAX_MS || ms % 1000 != 0))
    {
        abort();
    }

    free(tok);

    return 0;
}
