/*
 * libFuzzer target: the lenient base64url decoder of JWT segments,
 * imburse_base64url_decode().
 *
 * The output buffer is malloc()ed at exactly len * 3 / 4 bytes.  Whatever
 * decodes re-encodes (unpadded) to a string of the same length that decodes
 * to the same bytes.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_imburse_hmac.h"


static const char  alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long            n, m;
    size_t          cap, i, k, stripped;
    uint32_t        acc;
    int             bits;
    unsigned char  *src, *dst, *enc, *again;

    src = malloc(size ? size : 1);
    cap = size * 3 / 4;
    dst = malloc(cap ? cap : 1);
    if (src == NULL || dst == NULL) {
        abort();
    }
    memcpy(src, data, size);

    n = imburse_base64url_decode(dst, src, size);

    if (n < -1 || (n >= 0 && (size_t) n > cap)) {
        abort();
    }

    if (n >= 0) {
        stripped = size;
        while (stripped && src[stripped - 1] == '=') {
            stripped--;
        }

        enc = malloc((size_t) n * 4 / 3 + 4);
        again = malloc((size_t) n + 1);
        if (enc == NULL || again == NULL) {
            abort();
        }

        k = 0;
        acc = 0;
        bits = 0;
        for (i = 0; i < (size_t) n; i++) {
            acc = acc << 8 | dst[i];
            bits += 8;
            while (bits >= 6) {
                bits -= 6;
                enc[k++] = (unsigned char) alphabet[(acc >> bits) & 63];
            }
        }
        if (bits) {
            enc[k++] = (unsigned char) alphabet[(acc << (6 - bits)) & 63];
        }

        if (k != stripped) {
            abort();
        }

        m = imburse_base64url_decode(again, enc, k);
        if (m != n || memcmp(again, dst, (size_t) n) != 0) {
            abort();
        }

        free(again);
        free(enc);
    }

    free(dst);
    free(src);

    return 0;
}
