/*
 * libFuzzer target: what an identity error body says,
 * imburse_error_codes() (JSON -> "CODE1, CODE2") and
 * imburse_error_excerpt() (masked, printable excerpt), with a varying
 * output buffer size.
 *
 * Input: 1 byte choosing the output buffer size, then the body.  The body
 * and the output buffer are malloc()ed at their exact sizes, so any read
 * or write past either is an ASan report.  The output must be
 * NUL-terminated, of the length returned, and printable.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_imburse_errbody.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char    *body, *out;
    size_t   out_size, len, n, i;

    if (size < 1) {
        return 0;
    }

    out_size = data[0];
    len = size - 1;

    body = malloc(len ? len : 1);
    out = malloc(out_size ? out_size : 1);
    if (body == NULL || out == NULL) {
        abort();
    }

    memcpy(body, data + 1, len);

    n = imburse_error_codes(body, len, out, out_size);
    if (out_size && (n >= out_size || strlen(out) != n)) {
        abort();
    }

    n = imburse_error_excerpt(body, len, out, out_size);
    if (out_size && (n >= out_size || strlen(out) != n)) {
        abort();
    }

    for (i = 0; out_size && i < n; i++) {
        if ((unsigned char) out[i] < 0x20 || (unsigned char) out[i] >= 0x7f) {
            abort();
        }
    }

    free(body);
    free(out);

    return 0;
}
