/*
 * Parsing and validating the identity service's token response.
 * Pure C over cJSON: no nginx types, so it is unit-tested (and fuzzed)
 * directly.
 */

#ifndef _NGX_IMBURSE_TOKEN_H_INCLUDED_
#define _NGX_IMBURSE_TOKEN_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* 9999-12-31T23:59:59.999Z: anything later is garbage, not a far expiry */
#define IMBURSE_EXPIRES_MAX_MS     253402300799999LL
/* a token that expires sooner is as good as expired: it would cost an
 * exchange per request */
#define IMBURSE_TOKEN_MIN_LIFE_MS  1000


typedef enum {
    IMBURSE_TOKEN_OK = 0,
    IMBURSE_TOKEN_EMPTY_BODY,
    IMBURSE_TOKEN_NOT_JSON,
    IMBURSE_TOKEN_NOT_OBJECT,
    IMBURSE_TOKEN_NO_TOKEN,
    IMBURSE_TOKEN_BAD_TOKEN,
    IMBURSE_TOKEN_TOO_LONG,
    IMBURSE_TOKEN_NO_EXPIRY,
    IMBURSE_TOKEN_EXPIRED
} imburse_token_rc_t;


typedef struct {
    /* points into the caller's buffer given to imburse_token_parse() */
    char     *token;
    size_t    token_len;
    int64_t   expires_ms;
} imburse_token_t;


/*
 * Parses {"accessToken": "...", "expires": "<epoch ms>"} from body (not NUL
 * terminated).  The token is copied into buf (buf_size bytes at most, a
 * longer token is IMBURSE_TOKEN_TOO_LONG).  A missing or bad "expires"
 * falls back to the token's JWT "exp" claim; a token already expired at
 * now_ms is an error.
 */
imburse_token_rc_t imburse_token_parse(const char *body, size_t len,
    int64_t now_ms, char *buf, size_t buf_size, imburse_token_t *out);

/* a short, log-safe name for rc, e.g. "invalid JSON" */
const char *imburse_token_strerror(imburse_token_rc_t rc);

/* RFC 6750 b64token: 1*(ALPHA / DIGIT / "-._~+/") *"=" */
int imburse_token_is_b64token(const char *s, size_t len);

/* the JWT "exp" claim in epoch ms, or -1 when s is no JWT or has none */
int64_t imburse_token_jwt_exp_ms(const char *s, size_t len);


#endif /* _NGX_IMBURSE_TOKEN_H_INCLUDED_ */
