/*
 * Parsing and validating the identity service's token response.
 */

#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ngx_imburse_hmac.h"
#include "ngx_imburse_token.h"


/* a JWT payload worth decoding is small; a bigger one is not ours */
#define IMBURSE_JWT_PAYLOAD_MAX  4096


static int imburse_token_has_nul_escape(const char *body, size_t len);
static int64_t imburse_token_expires_ms(const cJSON *v);
static int64_t imburse_token_number_ms(double d, double scale);


imburse_token_rc_t
imburse_token_parse(const char *body, size_t len, int64_t now_ms, char *buf,
    size_t buf_size, imburse_token_t *out)
{
    cJSON               *root, *tok, *exp;
    size_t               tlen;
    int64_t              expires;
    imburse_token_rc_t   rc;

    if (body == NULL || len == 0) {
        return IMBURSE_TOKEN_EMPTY_BODY;
    }

    root = cJSON_ParseWithLength(body, len);
    if (root == NULL) {
        return IMBURSE_TOKEN_NOT_JSON;
    }

    if (!cJSON_IsObject(root)) {
        rc = IMBURSE_TOKEN_NOT_OBJECT;
        goto done;
    }

    tok = cJSON_GetObjectItemCaseSensitive(root, "accessToken");

    if (!cJSON_IsString(tok) || tok->valuestring == NULL
        || tok->valuestring[0] == '\0')
    {
        rc = IMBURSE_TOKEN_NO_TOKEN;
        goto done;
    }

    tlen = strlen(tok->valuestring);

    if (tlen > buf_size) {
        rc = IMBURSE_TOKEN_TOO_LONG;
        goto done;
    }

    /* cJSON decodes \u0000 into a NUL that would cut the token short */

    if (!imburse_token_is_b64token(tok->valuestring, tlen)
        || imburse_token_has_nul_escape(body, len))
    {
        rc = IMBURSE_TOKEN_BAD_TOKEN;
        goto done;
    }

    exp = cJSON_GetObjectItemCaseSensitive(root, "expires");
    expires = imburse_token_expires_ms(exp);

    if (expires < 0) {
        expires = imburse_token_jwt_exp_ms(tok->valuestring, tlen);
    }

    if (expires < 0) {
        rc = IMBURSE_TOKEN_NO_EXPIRY;
        goto done;
    }

    /* now_ms is the caller's: no arithmetic on it that could overflow */

    if (now_ms < 0) {
        now_ms = 0;
    }

    if (expires <= now_ms || expires - now_ms <= IMBURSE_TOKEN_MIN_LIFE_MS) {
        rc = IMBURSE_TOKEN_EXPIRED;
        goto done;
    }

    memcpy(buf, tok->valuestring, tlen);

    out->token = buf;
    out->token_len = tlen;
    out->expires_ms = expires;

    rc = IMBURSE_TOKEN_OK;

done:

    cJSON_Delete(root);

    return rc;
}


static int
imburse_token_has_nul_escape(const char *body, size_t len)
{
    const char  *p, *end;

    end = body + len;

    p = body;

    while (end - p >= 6) {
        p = memchr(p, '\\', (size_t) (end - p));

        if (p == NULL || end - p < 6) {
            return 0;
        }

        if ((p[1] == 'u' || p[1] == 'U')
            && p[2] == '0' && p[3] == '0' && p[4] == '0' && p[5] == '0')
        {
            return 1;
        }

        /* the backslash and the character it escapes: "\\u0000" is no NUL */
        p += 2;
    }

    return 0;
}


static int64_t
imburse_token_expires_ms(const cJSON *v)
{
    const char  *p;
    int64_t      ms;

    if (cJSON_IsNumber(v)) {
        return imburse_token_number_ms(v->valuedouble, 1.0);
    }

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        return -1;
    }

    p = v->valuestring;

    if (*p == '\0') {
        return -1;
    }

    ms = 0;

    for ( /* void */ ; *p; p++) {

        if (*p < '0' || *p > '9') {
            return -1;
        }

        ms = ms * 10 + (*p - '0');

        if (ms > IMBURSE_EXPIRES_MAX_MS) {
            return -1;
        }
    }

    return ms > 0 ? ms : -1;
}


static int64_t
imburse_token_number_ms(double d, double scale)
{
    if (!isfinite(d) || d <= 0 || d != floor(d)) {
        return -1;
    }

    d *= scale;

    if (d > (double) IMBURSE_EXPIRES_MAX_MS) {
        return -1;
    }

    return (int64_t) d;
}


int
imburse_token_is_b64token(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~' || c == '+' || c == '/')
        {
            continue;
        }

        break;
    }

    if (i == 0) {
        return 0;
    }

    while (i < len && s[i] == '=') {
        i++;
    }

    return i == len;
}


int64_t
imburse_token_jwt_exp_ms(const char *s, size_t len)
{
    const char     *p, *dot1, *dot2;
    unsigned char   payload[IMBURSE_JWT_PAYLOAD_MAX];
    cJSON          *root, *exp;
    long            n;
    int64_t         ms;

    dot1 = memchr(s, '.', len);
    if (dot1 == NULL) {
        return -1;
    }

    p = dot1 + 1;
    dot2 = memchr(p, '.', len - (size_t) (p - s));

    if (dot2 == NULL || dot2 == p
        || (size_t) (dot2 - p) > IMBURSE_JWT_PAYLOAD_MAX * 4 / 3)
    {
        return -1;
    }

    n = imburse_base64url_decode(payload, (const unsigned char *) p,
                                 (size_t) (dot2 - p));
    if (n <= 0) {
        return -1;
    }

    root = cJSON_ParseWithLength((const char *) payload, (size_t) n);
    if (root == NULL) {
        return -1;
    }

    exp = cJSON_GetObjectItemCaseSensitive(root, "exp");

    ms = cJSON_IsNumber(exp) ? imburse_token_number_ms(exp->valuedouble, 1000.0)
                             : -1;

    cJSON_Delete(root);

    return ms;
}


const char *
imburse_token_strerror(imburse_token_rc_t rc)
{
    switch (rc) {
    case IMBURSE_TOKEN_OK:
        return "ok";
    case IMBURSE_TOKEN_EMPTY_BODY:
        return "empty body";
    case IMBURSE_TOKEN_NOT_JSON:
        return "invalid JSON";
    case IMBURSE_TOKEN_NOT_OBJECT:
        return "JSON is not an object";
    case IMBURSE_TOKEN_NO_TOKEN:
        return "no accessToken string";
    case IMBURSE_TOKEN_BAD_TOKEN:
        return "accessToken has characters outside b64token";
    case IMBURSE_TOKEN_TOO_LONG:
        return "accessToken too long";
    case IMBURSE_TOKEN_NO_EXPIRY:
        return "no usable expires and no JWT exp";
    case IMBURSE_TOKEN_EXPIRED:
        return "token expired or expiring within a second";
    }

    return "unknown";
}
