/*
 * libFuzzer target: the private key file's strict base64,
 * imburse_base64_decode_key().
 *
 * The input is the key file's content.  The output buffer is malloc()ed at
 * exactly the documented len * 3 / 4 bytes.  Whatever decodes must be
 * canonical: encoding it again gives back the input minus the white space
 * around it (so no two key files decode to the same secret unnoticed), and
 * what is refused is no canonical encoding (checked against OpenSSL), and
 * gets a message from imburse_base64_key_problem() that fits its buffer.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ngx_imburse_hmac.h"


static int
is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long            n;
    size_t          cap, b, e;
    unsigned char  *src, *dst, *enc;

    src = malloc(size ? size : 1);
    cap = size * 3 / 4;
    dst = malloc(cap ? cap : 1);
    if (src == NULL || dst == NULL) {
        abort();
    }
    memcpy(src, data, size);

    n = imburse_base64_decode_key(dst, src, size);

    if (n < -1 || (n >= 0 && (size_t) n > cap)) {
        abort();
    }

    b = 0;
    e = size;
    while (b < e && is_space(src[b])) {
        b++;
    }
    while (e > b && is_space(src[e - 1])) {
        e--;
    }

    if (n >= 0) {
        /* canonical: re-encoding is the trimmed input */
        enc = malloc((size_t) n / 3 * 4 + 5);
        if (enc == NULL) {
            abort();
        }
        if (imburse_base64_encode(enc, dst, (size_t) n) != e - b
            || memcmp(enc, src + b, e - b) != 0)
        {
            abort();
        }
        free(enc);

    } else if (e > b && (e - b) % 4 == 0) {
        /*
         * Refused: then it must not be the canonical encoding of anything.
         * OpenSSL decodes it (leniently) and encodes again; an exact match
         * means a valid key file was refused.
         */
        size_t          pad = 0;
        int             k;
        unsigned char  *raw, *re;

        while (pad < 3 && pad < e - b && src[e - 1 - pad] == '=') {
            pad++;
        }

        raw = malloc((e - b) / 4 * 3 + 1);
        re = malloc(e - b + 1);
        if (raw == NULL || re == NULL) {
            abort();
        }

        k = EVP_DecodeBlock(raw, src + b, (int) (e - b));

        if (k >= 0 && pad <= 2 && (size_t) k >= pad
            && (size_t) EVP_EncodeBlock(re, raw, k - (int) pad) == e - b
            && memcmp(re, src + b, e - b) == 0)
        {
            abort();
        }

        free(re);
        free(raw);
    }

    if (n < 0) {
        /* every refusal gets a message that says what to change */
        char         msg[128];
        const char  *why;

        memset(msg, 0x55, sizeof(msg));
        why = imburse_base64_key_problem(src, size, msg, sizeof(msg));

        if (why == NULL || why[0] == '\0'
            || (why == msg && memchr(msg, '\0', sizeof(msg)) == NULL))
        {
            abort();
        }
    }

    free(dst);
    free(src);

    return 0;
}
