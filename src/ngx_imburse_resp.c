/*
 * A parser of Redis replies (RESP2) for the fleet tier.
 */

#include <string.h>

#include "ngx_imburse_resp.h"


/* a status, error or integer line longer than this is not Redis talking */
#define IMBURSE_RESP_LINE_MAX  1024


static long imburse_resp_line(const unsigned char *buf, size_t len);
static int imburse_resp_int(const unsigned char *p, size_t len, int64_t *v);


long
imburse_resp_parse(const unsigned char *buf, size_t len,
    imburse_resp_t *reply)
{
    long     eol;
    int64_t  n;

    if (len == 0) {
        return 0;
    }

    eol = imburse_resp_line(buf, len);

    if (eol <= 0) {
        return eol;
    }

    /* buf[1 .. eol - 2) is the line without its type byte and CRLF */

    reply->data = buf + 1;
    reply->len = (size_t) eol - 3;
    reply->integer = 0;

    switch (buf[0]) {

    case '+':
        reply->type = IMBURSE_RESP_STATUS;
        return eol;

    case '-':
        reply->type = IMBURSE_RESP_ERROR;
        return eol;

    case ':':
        reply->type = IMBURSE_RESP_INTEGER;
        return imburse_resp_int(buf + 1, (size_t) eol - 3, &reply->integer)
               ? eol : -1;

    case '*':
        if (!imburse_resp_int(buf + 1, (size_t) eol - 3, &n) || n != -1) {
            return -1;
        }

        reply->type = IMBURSE_RESP_NIL;
        reply->len = 0;
        return eol;

    case '$':
        if (!imburse_resp_int(buf + 1, (size_t) eol - 3, &n) || n < -1) {
            return -1;
        }

        if (n > IMBURSE_RESP_BULK_MAX) {
            return IMBURSE_RESP_TOO_BIG;
        }

        if (n == -1) {
            reply->type = IMBURSE_RESP_NIL;
            reply->len = 0;
            return eol;
        }

        if (len - (size_t) eol < (size_t) n + 2) {
            return 0;
        }

        if (buf[eol + n] != '\r' || buf[eol + n + 1] != '\n') {
            return -1;
        }

        reply->type = IMBURSE_RESP_BULK;
        reply->data = buf + eol;
        reply->len = (size_t) n;
        return eol + (long) n + 2;
    }

    return -1;
}


/* the length of the first line with its CRLF, 0 if incomplete, -1 if bad */

static long
imburse_resp_line(const unsigned char *buf, size_t len)
{
    const unsigned char  *lf;
    size_t                max;

    max = len < IMBURSE_RESP_LINE_MAX ? len : IMBURSE_RESP_LINE_MAX;

    lf = memchr(buf, '\n', max);

    if (lf == NULL) {
        return len < IMBURSE_RESP_LINE_MAX ? 0 : -1;
    }

    if (lf - buf < 2 || lf[-1] != '\r') {
        return -1;
    }

    return (long) (lf - buf) + 1;
}


static int
imburse_resp_int(const unsigned char *p, size_t len, int64_t *v)
{
    size_t   i;
    int      neg;
    int64_t  n;

    neg = (len > 0 && p[0] == '-');
    i = neg ? 1 : 0;

    if (i == len || len - i > 18) {
        return 0;
    }

    n = 0;

    for ( /* void */ ; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }

        n = n * 10 + (p[i] - '0');
    }

    *v = neg ? -n : n;

    return 1;
}
