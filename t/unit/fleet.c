/*
 * Unit tests of the fleet tier's pure parts: the Redis reply parser and
 * the sealing of tokens at rest.
 */

#define _GNU_SOURCE
#include <stdlib.h>

#include "ngx_imburse_fleet_crypto.h"
#include "ngx_imburse_resp.h"
#include "tap.h"


static long
resp(const char *s, imburse_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    return imburse_resp_parse((const unsigned char *) s, strlen(s), r);
}


static void
test_resp(void)
{
    imburse_resp_t  r;

    is_int(resp("+OK\r\n", &r), 5, "status reply length");
    ok(r.type == IMBURSE_RESP_STATUS, "status reply type");
    is_str(r.data, r.len, "OK", "status text");

    is_int(resp("-WRONGPASS invalid\r\n", &r), 20, "error reply");
    ok(r.type == IMBURSE_RESP_ERROR, "error reply type");
    is_str(r.data, r.len, "WRONGPASS invalid", "error text");

    is_int(resp(":1\r\n", &r), 4, "integer reply");
    is_int(r.integer, 1, "integer value");
    is_int(resp(":-3\r\n", &r), 5, "negative integer");
    is_int(r.integer, -3, "negative integer value");

    is_int(resp("$3\r\nabc\r\n+OK\r\n", &r), 9, "bulk reply, next left");
    ok(r.type == IMBURSE_RESP_BULK, "bulk type");
    is_str(r.data, r.len, "abc", "bulk data");

    is_int(resp("$4\r\na\r\nb\r\n", &r), 10, "bulk with CRLF inside");
    is_str(r.data, r.len, "a\r\nb", "bulk is binary-safe");

    is_int(resp("$0\r\n\r\n", &r), 6, "empty bulk");
    is_int(resp("$-1\r\n", &r), 5, "nil bulk");
    ok(r.type == IMBURSE_RESP_NIL, "nil type");
    is_int(resp("*-1\r\n", &r), 5, "nil array");

    is_int(resp("", &r), 0, "nothing yet");
    is_int(resp("+O", &r), 0, "partial line");
    is_int(resp("$3\r\nab", &r), 0, "partial bulk");
    is_int(resp("$3\r\nabc\r", &r), 0, "bulk without its LF yet");

    is_int(resp("OK\r\n", &r), -1, "no type byte");
    is_int(resp("+OK\n", &r), -1, "LF without CR");
    is_int(resp("$3\r\nabcd\r\n", &r), -1, "bulk longer than announced");
    is_int(resp("$-2\r\n", &r), -1, "negative bulk length");
    is_int(resp("$99999999\r\n", &r), IMBURSE_RESP_TOO_BIG, "huge bulk length");
    is_int(resp("$x\r\n", &r), -1, "bulk length not a number");
    is_int(resp(":\r\n", &r), -1, "empty integer");
    is_int(resp(":12345678901234567890\r\n", &r), -1, "integer overflow");
    is_int(resp("*2\r\n$1\r\na\r\n$1\r\nb\r\n", &r), -1, "arrays are refused");
    is_int(resp("\r\n", &r), -1, "empty line");
}


static void
test_seal(void)
{
    unsigned char  k1[IMBURSE_FLEET_KEY_LEN], k2[IMBURSE_FLEET_KEY_LEN];
    unsigned char  blob[256], out[64];
    char           ns[IMBURSE_FLEET_NS_LEN];
    size_t         n;
    long           t;
    int64_t        exp, got;

    ok(imburse_fleet_derive_key(k1, (const unsigned char *) "secret", 6,
                                (const unsigned char *) "pk", 2) == 0,
       "derive a key");
    ok(imburse_fleet_derive_key(k2, (const unsigned char *) "secreT", 6,
                                (const unsigned char *) "pk", 2) == 0,
       "derive another");
    ok(memcmp(k1, k2, sizeof(k1)) != 0, "another secret, another key");

    imburse_fleet_namespace(ns, (const unsigned char *) "abc", 3);
    is_str(ns, sizeof(ns), "ba7816bf8f01cfea", "namespace: SHA-256 prefix");

    n = imburse_fleet_seal(blob, k1, (const unsigned char *) "ns:token", 8,
                           (const unsigned char *) "tok-123", 7,
                           1700000060000LL, 1700000000000LL);
    is_int(n, IMBURSE_FLEET_OVERHEAD + 7, "sealed length");
    ok(memmem(blob, n, "tok-123", 7) == NULL, "the token is not in clear");

    t = imburse_fleet_open(blob, n, k1, (const unsigned char *) "ns:token", 8,
                           out, sizeof(out), &exp, &got);
    is_str(out, t > 0 ? (size_t) t : 0, "tok-123", "opened");
    is_int(exp, 1700000060000LL, "expiry kept");
    is_int(got, 1700000000000LL, "obtained time kept");

    is_int(imburse_fleet_open(blob, n, k2, (const unsigned char *) "ns:token",
                              8, out, sizeof(out), &exp, &got),
           -1, "another key cannot open it");
    is_int(imburse_fleet_open(blob, n, k1, (const unsigned char *) "xx:token",
                              8, out, sizeof(out), &exp, &got),
           -1, "moved to another Redis key, it does not open");

    blob[n - 20] ^= 1;
    is_int(imburse_fleet_open(blob, n, k1, (const unsigned char *) "ns:token",
                              8, out, sizeof(out), &exp, &got),
           -1, "an altered blob does not open");
    blob[n - 20] ^= 1;

    is_int(imburse_fleet_open(blob, n, k1, (const unsigned char *) "ns:token",
                              8, out, 3, &exp, &got),
           -1, "a token bigger than the buffer is refused");
    is_int(imburse_fleet_open(blob, 10, k1, (const unsigned char *) "ns:token",
                              8, out, sizeof(out), &exp, &got),
           -1, "a short blob is refused");
    is_int(imburse_fleet_open((const unsigned char *) "plain-token-in-redis"
                              "-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                              62, k1, (const unsigned char *) "ns:token", 8,
                              out, sizeof(out), &exp, &got),
           -1, "a blob of another version is refused");
}


int
main(void)
{
    test_resp();
    test_seal();

    return done_testing();
}
