/*
 * Unit tests of Imburse's HMAC signing and the base64 helpers, against the
 * vectors in t/data/hmac-vectors.json (checked against two independent
 * implementations).
 */

#include <stdlib.h>

#include <cjson/cJSON.h>

#include "ngx_imburse_hmac.h"
#include "tap.h"


static char *
slurp(const char *path)
{
    FILE  *f;
    long   n;
    char  *buf;

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    buf = malloc((size_t) n + 1);
    if (buf && fread(buf, 1, (size_t) n, f) != (size_t) n) {
        free(buf);
        buf = NULL;
    }

    if (buf) {
        buf[n] = '\0';
    }

    fclose(f);
    return buf;
}


static void
test_vector(const cJSON *v)
{
    const char     *pk, *b64, *nonce, *body, *want;
    unsigned char   key[256];
    char            out[512];
    long            klen;
    size_t          len;
    int64_t         ts;

    pk = cJSON_GetObjectItem(v, "public_key")->valuestring;
    b64 = cJSON_GetObjectItem(v, "private_key_base64")->valuestring;
    nonce = cJSON_GetObjectItem(v, "nonce")->valuestring;
    body = cJSON_GetObjectItem(v, "body_utf8")->valuestring;
    want = cJSON_GetObjectItem(v, "authorization")->valuestring;
    ts = (int64_t) cJSON_GetObjectItem(v, "timestamp")->valuedouble;

    klen = imburse_base64_decode_key(key, (const unsigned char *) b64,
                                     strlen(b64));
    ok(klen > 0, "vector %s: private key decodes", pk);

    ok(imburse_hmac_authorization_len(strlen(pk), strlen(nonce)) <= sizeof(out),
       "vector %s: output fits", pk);

    len = imburse_hmac_authorization(out, pk, strlen(pk), key, (size_t) klen,
                                     nonce, strlen(nonce), ts,
                                     (const unsigned char *) body,
                                     strlen(body));

    is_str(out, len, want, "vector %s: Authorization header", pk);
    ok(len <= imburse_hmac_authorization_len(strlen(pk), strlen(nonce)),
       "vector %s: length within the announced bound", pk);
}


static void
test_base64(void)
{
    unsigned char  out[64];
    long           n;

    n = imburse_base64_decode_key(out, (const unsigned char *) " QUJD\n", 6);
    is_str(out, n > 0 ? (size_t) n : 0, "ABC", "decode trims white space");

    n = imburse_base64_decode_key(out, (const unsigned char *) "QUI=", 4);
    is_str(out, n > 0 ? (size_t) n : 0, "AB", "decode one pad");

    n = imburse_base64_decode_key(out, (const unsigned char *) "QQ==", 4);
    is_str(out, n > 0 ? (size_t) n : 0, "A", "decode two pads");

    is_int(imburse_base64_decode_key(out, (const unsigned char *) "QUJ", 3),
           -1, "missing padding is rejected");
    is_int(imburse_base64_decode_key(out, (const unsigned char *) "QU=D", 4),
           -1, "padding in the middle is rejected");
    is_int(imburse_base64_decode_key(out, (const unsigned char *) "QU JD", 5),
           -1, "inner space is rejected");
    is_int(imburse_base64_decode_key(out, (const unsigned char *) "QR==", 4),
           -1, "non-zero trailing bits are rejected");
    is_int(imburse_base64_decode_key(out, (const unsigned char *) "QUJD!", 5),
           -1, "trailing garbage is rejected");
    is_int(imburse_base64_decode_key(out, (const unsigned char *) "  \n", 3),
           -1, "an empty key is rejected");
    is_int(imburse_base64_decode_key(out, (const unsigned char *) "Q-_D", 4),
           -1, "base64url characters are not standard base64");

    n = imburse_base64url_decode(out, (const unsigned char *) "eyJhIjoxfQ", 10);
    is_str(out, n > 0 ? (size_t) n : 0, "{\"a\":1}", "base64url without pad");
    is_int(imburse_base64url_decode(out, (const unsigned char *) "e+J", 3), -1,
           "base64url rejects '+'");
}


static void
test_nonce(void)
{
    char  a[IMBURSE_NONCE_LEN], b[IMBURSE_NONCE_LEN];
    int   i, hex;

    ok(imburse_nonce(a) == 0 && imburse_nonce(b) == 0, "nonces generated");
    ok(memcmp(a, b, IMBURSE_NONCE_LEN) != 0, "two nonces differ");

    hex = 1;
    for (i = 0; i < IMBURSE_NONCE_LEN; i++) {
        if (!((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'))) {
            hex = 0;
        }
    }

    ok(hex, "nonce is %d lowercase hex characters", IMBURSE_NONCE_LEN);
}


static void
test_fingerprints(void)
{
    unsigned char  a[IMBURSE_SHA256_LEN], b[IMBURSE_SHA256_LEN];
    char           fp[IMBURSE_FP_HEX_LEN];

    imburse_key_fingerprint(a, (const unsigned char *) "pk", 2,
                            (const unsigned char *) "k1", 2);
    imburse_key_fingerprint(b, (const unsigned char *) "pk", 2,
                            (const unsigned char *) "k2", 2);
    ok(memcmp(a, b, sizeof(a)) != 0, "a changed private key changes the key "
       "fingerprint");

    imburse_key_fingerprint(b, (const unsigned char *) "pkk", 3,
                            (const unsigned char *) "1", 1);
    ok(memcmp(a, b, sizeof(a)) != 0, "the fingerprint separates public and "
       "private key");

    /* SHA-256("abc") = ba7816bf8f01... */
    imburse_fingerprint(fp, (const unsigned char *) "abc", 3);
    is_str(fp, sizeof(fp), "ba7816bf8f01", "token fingerprint is a SHA-256 "
           "prefix");
}


static void
test_key_problem(void)
{
    char         buf[128];
    const char  *m;

#define PROBLEM(s)                                                           \
    imburse_base64_key_problem((const unsigned char *) (s), strlen(s), buf,  \
                               sizeof(buf))

    m = PROBLEM("  \n");
    ok(strcmp(m, "the file is empty") == 0, "empty: %s", m);

    m = PROBLEM("\"c2VjcmV0\"\n");
    ok(strstr(m, "wrapped in quotes") != NULL, "quotes: %s", m);

    m = PROBLEM("'c2VjcmV0'");
    ok(strstr(m, "wrapped in quotes") != NULL, "single quotes: %s", m);

    m = PROBLEM("c2Vj-mV0_w\n");
    ok(strstr(m, "URL-safe") != NULL && strstr(m, "tr -- '-_' '+/'") != NULL,
       "URL-safe alphabet, with the conversion: %s", m);

    m = PROBLEM("c2Vj\ncmV0\n");
    ok(strcmp(m, "white space at byte 5: the key must be on one line") == 0,
       "a line break inside: %s", m);

    m = PROBLEM("  c2V*cmV0");
    ok(strcmp(m, "\"*\" at byte 6 is not a base64 character") == 0,
       "the first bad character, by byte in the file: %s", m);

    m = PROBLEM("c2Vj\xc3\xa9mV0");
    ok(strcmp(m, "byte 0xc3 at byte 5 is not a base64 character") == 0,
       "a non-ASCII byte: %s", m);

    m = PROBLEM("c2=jcmV0");
    ok(strstr(m, "\"=\" at byte 3 is not at the end") != NULL,
       "padding in the middle: %s", m);

    m = PROBLEM("c2VjcmV0c");
    ok(strstr(m, "9 characters") != NULL && strstr(m, "groups of 4") != NULL,
       "wrong length: %s", m);

    m = PROBLEM("c2VjcmV0cw");
    ok(strstr(m, "lacks its \"=\" padding") != NULL, "no padding: %s", m);

    m = PROBLEM("c2VjcmV0cx==");
    ok(strstr(m, "non-zero bits") != NULL, "non-canonical end: %s", m);

#undef PROBLEM
}


int
main(int argc, char **argv)
{
    char         *json;
    cJSON        *root, *v;

    json = slurp(argc > 1 ? argv[1] : "t/data/hmac-vectors.json");
    ok(json != NULL, "vectors file read");

    root = json ? cJSON_Parse(json) : NULL;
    ok(root != NULL, "vectors file parses");

    if (root) {
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(root, "vectors")) {
            test_vector(v);
        }

        ok(cJSON_GetArraySize(cJSON_GetObjectItem(root, "vectors")) == 4,
           "all four vectors were run");
    }

    test_base64();
    test_key_problem();
    test_nonce();
    test_fingerprints();

    cJSON_Delete(root);
    free(json);

    return done_testing();
}
