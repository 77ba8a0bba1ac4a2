/*
 * Unit tests of the token-response parser: the shapes the identity service
 * sends, the JWT "exp" fallback and everything that must be refused.
 */

#include <stdlib.h>

#include "ngx_imburse_token.h"
#include "tap.h"


#define NOW_MS  1700000000000LL     /* 2023-11-14T22:13:20Z */


static char             buf[64];
static imburse_token_t  tok;


static imburse_token_rc_t
parse(const char *body)
{
    memset(&tok, 0, sizeof(tok));
    return imburse_token_parse(body, strlen(body), NOW_MS, buf, sizeof(buf),
                               &tok);
}


static void
test_accepted(void)
{
    is_int(parse("{\"accessToken\":\"abc.DEF-_~+/==\","
                 "\"expires\":\"1700000060000\"}"), IMBURSE_TOKEN_OK,
           "string expires");
    is_str(tok.token, tok.token_len, "abc.DEF-_~+/==", "token copied");
    is_int(tok.expires_ms, 1700000060000LL, "expires in ms");

    is_int(parse("{\"expires\":1700000060000,\"accessToken\":\"t\"}"),
           IMBURSE_TOKEN_OK, "numeric expires, any key order");
    is_int(tok.expires_ms, 1700000060000LL, "numeric expires in ms");

    /* {"alg":"none"}.{"exp":1700000100}.sig */
    is_int(parse("{\"accessToken\":\"eyJhbGciOiJub25lIn0."
                 "eyJleHAiOjE3MDAwMDAxMDB9.c2ln\"}"),
           IMBURSE_TOKEN_OK, "JWT exp fallback when expires is missing");
    is_int(tok.expires_ms, 1700000100000LL, "JWT exp is seconds, kept in ms");

    is_int(parse("{\"accessToken\":\"eyJhbGciOiJub25lIn0."
                 "eyJleHAiOjE3MDAwMDAxMDB9.c2ln\",\"expires\":\"soon\"}"),
           IMBURSE_TOKEN_OK, "JWT exp fallback when expires is unparsable");

    /* the body is not NUL-terminated: only len bytes count */
    memset(&tok, 0, sizeof(tok));
    is_int(imburse_token_parse("{\"accessToken\":\"t\",\"expires\":"
                               "\"1700000060000\"}GARBAGE", 46, NOW_MS, buf,
                               sizeof(buf), &tok),
           IMBURSE_TOKEN_OK, "parses exactly len bytes");
}


static void
test_refused(void)
{
    memset(&tok, 0, sizeof(tok));
    is_int(imburse_token_parse(NULL, 0, NOW_MS, buf, sizeof(buf), &tok),
           IMBURSE_TOKEN_EMPTY_BODY, "no body");
    is_int(parse("<html>502</html>"), IMBURSE_TOKEN_NOT_JSON, "HTML");
    is_int(parse("{\"accessToken\":\"t\""), IMBURSE_TOKEN_NOT_JSON,
           "truncated JSON");
    is_int(parse("[\"t\"]"), IMBURSE_TOKEN_NOT_OBJECT, "an array");
    is_int(parse("{\"expires\":\"1700000060000\"}"), IMBURSE_TOKEN_NO_TOKEN,
           "no accessToken");
    is_int(parse("{\"accessToken\":42,\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_NO_TOKEN, "accessToken a number");
    is_int(parse("{\"accessToken\":\"\",\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_NO_TOKEN, "empty accessToken");
    is_int(parse("{\"accessToken\":\"a\\r\\nX-Evil: 1\","
                 "\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_BAD_TOKEN, "CR LF in the token");
    is_int(parse("{\"accessToken\":\"a b\",\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_BAD_TOKEN, "space in the token");
    is_int(parse("{\"accessToken\":\"a\\\"b\",\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_BAD_TOKEN, "quote in the token");
    is_int(parse("{\"accessToken\":\"a=b\",\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_BAD_TOKEN, "'=' only at the end");
    is_int(parse("{\"accessToken\":\"a\\u0000b\","
                 "\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_BAD_TOKEN, "NUL in the token");
    is_int(parse("{\"accessToken\":\"t\",\"note\":\"\\\\u0000\","
                 "\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_OK, "an escaped backslash before u0000 is no NUL");
    is_int(parse("{\"accessToken\":\"t\",\"note\":\"\\\\\\u0000\","
                 "\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_BAD_TOKEN, "an escaped backslash, then a NUL");
    is_int(parse("{\"accessToken\":\"\\u00e9\",\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_BAD_TOKEN, "non-ASCII in the token");
    is_int(parse("{\"accessToken\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 "aaaaaaaaaaaaaaaaaaaaaaaaa\",\"expires\":\"1700000060000\"}"),
           IMBURSE_TOKEN_TOO_LONG, "token longer than the buffer");
    is_int(parse("{\"accessToken\":\"t\"}"), IMBURSE_TOKEN_NO_EXPIRY,
           "no expires, no JWT");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":{}}"),
           IMBURSE_TOKEN_NO_EXPIRY, "expires an object");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":\"-5\"}"),
           IMBURSE_TOKEN_NO_EXPIRY, "negative expires string");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":-5}"),
           IMBURSE_TOKEN_NO_EXPIRY, "negative expires number");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":0}"),
           IMBURSE_TOKEN_NO_EXPIRY, "zero expires");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":1.5e300}"),
           IMBURSE_TOKEN_NO_EXPIRY, "overflowing expires");
    is_int(parse("{\"accessToken\":\"t\","
                 "\"expires\":\"99999999999999999999999\"}"),
           IMBURSE_TOKEN_NO_EXPIRY, "overflowing expires string");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":\"1700000060000 \"}"),
           IMBURSE_TOKEN_NO_EXPIRY, "expires with trailing space");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":\"1699999999999\"}"),
           IMBURSE_TOKEN_EXPIRED, "already expired");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":\"1700000000000\"}"),
           IMBURSE_TOKEN_EXPIRED, "expiring right now");
    is_int(parse("{\"accessToken\":\"t\",\"expires\":1560514835115}"),
           IMBURSE_TOKEN_EXPIRED, "seconds mistaken for ms are in the past");
    /* {"exp":"1700000100"}: exp must be a number */
    is_int(parse("{\"accessToken\":\"e30.eyJleHAiOiIxNzAwMDAwMTAwIn0.c\"}"),
           IMBURSE_TOKEN_NO_EXPIRY, "JWT exp as a string is refused");
    is_int(parse("{\"accessToken\":\"e30.a.c\"}"), IMBURSE_TOKEN_NO_EXPIRY,
           "JWT payload not base64url");
}


static void
test_clock_extremes(void)
{
    const char  *body = "{\"accessToken\":\"t\",\"expires\":\"1700000060000\"}";

    /* found by the token_parse fuzzer: now + 1 s overflowed */
    is_int(imburse_token_parse(body, strlen(body), INT64_MAX, buf,
                               sizeof(buf), &tok),
           IMBURSE_TOKEN_EXPIRED, "now = INT64_MAX: expired, no overflow");
    is_int(imburse_token_parse(body, strlen(body), INT64_MIN, buf,
                               sizeof(buf), &tok),
           IMBURSE_TOKEN_OK, "now = INT64_MIN: taken as 1970, no overflow");
}


static void
test_b64token(void)
{
    ok(imburse_token_is_b64token("aZ09-._~+/", 10), "b64token characters");
    ok(imburse_token_is_b64token("ab==", 4), "trailing '='");
    ok(!imburse_token_is_b64token("==", 2), "only '='");
    ok(!imburse_token_is_b64token("", 0), "empty");
    ok(!imburse_token_is_b64token("a,b", 3), "comma");
    ok(!imburse_token_is_b64token("a\x7f", 2), "DEL");
}


static void
test_strerror(void)
{
    int  rc;

    for (rc = IMBURSE_TOKEN_OK; rc <= IMBURSE_TOKEN_EXPIRED; rc++) {
        ok(strcmp(imburse_token_strerror(rc), "unknown") != 0,
           "rc %d has a message", rc);
    }
}


int
main(void)
{
    test_accepted();
    test_refused();
    test_clock_extremes();
    test_b64token();
    test_strerror();

    return done_testing();
}
