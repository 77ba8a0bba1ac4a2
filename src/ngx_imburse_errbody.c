/*
 * What an identity service's error body says (see ngx_imburse_errbody.h).
 */

#include <string.h>

#include <cjson/cJSON.h>

#include "ngx_imburse_errbody.h"
#include "ngx_imburse_token.h"


static size_t imburse_error_add_code(const cJSON *item, char *out,
    size_t size, size_t n, int *count);
static size_t imburse_token_run(const char *s, size_t len);
static size_t imburse_escape_len(const char *s, size_t len);
static int imburse_is_hex(char c);


size_t
imburse_error_codes(const char *body, size_t len, char *out, size_t size)
{
    int           count;
    size_t        n;
    cJSON        *json;
    const cJSON  *errors, *e;

    if (size == 0) {
        return 0;
    }

    out[0] = '\0';

    if (body == NULL || len == 0) {
        return 0;
    }

    json = cJSON_ParseWithLength(body, len);
    if (json == NULL) {
        return 0;
    }

    n = 0;
    count = 0;

    if (cJSON_IsObject(json)) {
        n = imburse_error_add_code(cJSON_GetObjectItemCaseSensitive(json,
                                                                "errorCode"),
                                   out, size, n, &count);

        errors = cJSON_GetObjectItemCaseSensitive(json, "errors");

        if (cJSON_IsArray(errors)) {
            cJSON_ArrayForEach(e, errors) {
                if (count == IMBURSE_ERRBODY_CODES) {
                    break;
                }

                if (cJSON_IsObject(e)) {
                    n = imburse_error_add_code(
                            cJSON_GetObjectItemCaseSensitive(e, "errorCode"),
                            out, size, n, &count);
                }
            }
        }
    }

    cJSON_Delete(json);

    return n;
}


/* appends ", CODE" (or "CODE" first) when item is a string with a code */

static size_t
imburse_error_add_code(const cJSON *item, char *out, size_t size, size_t n,
    int *count)
{
    char        code[IMBURSE_ERRBODY_CODE_MAX + 1];
    int         lower;
    size_t      i, k, need;
    const char *s;

    if (!cJSON_IsString(item) || item->valuestring == NULL) {
        return n;
    }

    s = item->valuestring;
    k = 0;
    lower = 0;

    /* a code is shown as it is only if it looks like one */

    for (i = 0; s[i] != '\0' && k < IMBURSE_ERRBODY_CODE_MAX; i++) {
        if ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z')
            || (s[i] >= '0' && s[i] <= '9')
            || s[i] == '_' || s[i] == '-' || s[i] == '.')
        {
            lower |= (s[i] >= 'a' && s[i] <= 'z');
            code[k++] = s[i];
        }
    }

    if (k == 0) {
        return n;
    }

    /*
     * Imburse's codes are words in capitals (HMAC_SIGNATURE_INVALID); a
     * long one in mixed case is more likely a token echoed back than a
     * code, and is masked like one.
     */

    if (k >= IMBURSE_ERRBODY_MASK_RUN && lower) {
        memset(code, '*', k);
    }

    need = (n ? 2 : 0) + k;

    if (n + need + 1 > size) {
        return n;
    }

    if (n) {
        out[n++] = ',';
        out[n++] = ' ';
    }

    memcpy(out + n, code, k);
    n += k;
    out[n] = '\0';
    (*count)++;

    return n;
}


size_t
imburse_error_excerpt(const char *body, size_t len, char *out, size_t size)
{
    int     dots;
    size_t  i, k, n, run, room;

    if (size == 0) {
        return 0;
    }

    /* a body longer than the excerpt ends with "...", if there is room */

    dots = (len > size - 1 && size > 4);
    room = size - 1 - (dots ? 3 : 0);

    i = 0;
    n = 0;

    while (i < len && n < room) {
        run = imburse_token_run(body + i, len - i);
        k = (run < room - n) ? run : room - n;

        if (run >= IMBURSE_ERRBODY_MASK_RUN) {
            /* masked, and consumed whole even where the excerpt ends */
            memset(out + n, '*', k);
            n += k;
            i += run;
            continue;
        }

        if (run) {
            memcpy(out + n, body + i, k);
            n += k;
            i += k;
            continue;
        }

        out[n++] = ((unsigned char) body[i] >= 0x20
                    && (unsigned char) body[i] < 0x7f) ? body[i] : '.';
        i++;
    }

    if (dots) {
        memcpy(out + n, "...", 3);
        n += 3;
    }

    out[n] = '\0';

    return n;
}


/*
 * The length of the run of token characters at s.  An escaped character
 * counts as one of them, so that an escape does not split a token into
 * short runs left in the clear: JSON's "\/" and "\uXXXX" (serializers
 * write "+" and "/" so), and URL encoding's "%XX".
 */

static size_t
imburse_token_run(const char *s, size_t len)
{
    size_t  i, e;

    i = 0;

    while (i < len) {
        e = imburse_escape_len(s + i, len - i);

        if (e) {
            i += e;
            continue;
        }

        if (!imburse_token_is_b64token(s + i, 1)) {
            break;
        }

        i++;
    }

    return i;
}


static size_t
imburse_escape_len(const char *s, size_t len)
{
    if (len >= 2 && s[0] == '\\' && s[1] == '/') {
        return 2;
    }

    if (len >= 6 && s[0] == '\\' && s[1] == 'u'
        && imburse_is_hex(s[2]) && imburse_is_hex(s[3])
        && imburse_is_hex(s[4]) && imburse_is_hex(s[5]))
    {
        return 6;
    }

    if (len >= 3 && s[0] == '%' && imburse_is_hex(s[1])
        && imburse_is_hex(s[2]))
    {
        return 3;
    }

    return 0;
}


static int
imburse_is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
           || (c >= 'A' && c <= 'F');
}
