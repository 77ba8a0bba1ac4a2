/*
 * libFuzzer target: the identity service's token response,
 * imburse_token_parse() (JSON -> token, expiry, validation), with a varying
 * "now" and token buffer size.
 *
 * Input: 1 byte choosing the token buffer size, 1 byte choosing "now"
 * (8 more bytes when it is taken from the input), then the response body.
 * The body and the token buffer are malloc()ed at their exact sizes, so any
 * read or write past either is an ASan report.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_imburse_token.h"


/* 2019-06-14, the example in Imburse's documentation, in ms */
#define NOW_2019  1560511235115LL


static size_t
buf_size_of(uint8_t b)
{
    static const size_t  big[] = { 4096, 8192, 65536 };

    /* mostly small sizes, where the "too long" edge is easy to hit */
    return b < 253 ? (size_t) b : big[b - 253];
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t             now;
    size_t              buf_size;
    uint64_t            u;
    char               *body, *buf;
    const char         *msg;
    imburse_token_t     out;
    imburse_token_rc_t  rc;

    if (size < 2) {
        return 0;
    }

    buf_size = buf_size_of(data[0]);

    switch (data[1] & 7) {
    case 0:
        now = 0;
        break;
    case 1:
        now = -1;
        break;
    case 2:
        now = INT64_MAX;
        break;
    case 3:
        now = IMBURSE_EXPIRES_MAX_MS;
        break;
    case 4:
        if (size < 10) {
            return 0;
        }
        memcpy(&u, data + 2, 8);
        now = (int64_t) u;
        data += 8;
        size -= 8;
        break;
    default:
        now = NOW_2019;
        break;
    }

    data += 2;
    size -= 2;

    body = malloc(size ? size : 1);
    buf = malloc(buf_size ? buf_size : 1);
    if (body == NULL || buf == NULL) {
        abort();
    }

    memcpy(body, data, size);
    memset(&out, 0, sizeof(out));

    rc = imburse_token_parse(size ? body : NULL, size, now, buf, buf_size,
                             &out);

    msg = imburse_token_strerror(rc);
    if (msg == NULL || strcmp(msg, "unknown") == 0) {
        abort();
    }

    if (rc == IMBURSE_TOKEN_OK) {
        /* what the glue relies on: the header value is safe and bounded */
        if (out.token != buf || out.token_len == 0
            || out.token_len > buf_size
            || !imburse_token_is_b64token(out.token, out.token_len)
            || memchr(out.token, '\0', out.token_len) != NULL
            || out.expires_ms <= now
            || out.expires_ms <= 0
            || out.expires_ms > IMBURSE_EXPIRES_MAX_MS)
        {
            abort();
        }

#ifdef IMBURSE_TOKEN_MIN_LIFE_MS
        /* a token about to expire is refused, not handed out */
        if (out.expires_ms - IMBURSE_TOKEN_MIN_LIFE_MS <= now) {
            abort();
        }
#endif
    }

    free(buf);
    free(body);

    return 0;
}
