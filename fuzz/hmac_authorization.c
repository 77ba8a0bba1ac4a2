/*
 * libFuzzer target: the Authorization value, imburse_hmac_authorization(),
 * and the buffer size imburse_hmac_authorization_len() promises for it.
 *
 * Input: 1 byte public key length, 1 byte secret length, 8 bytes timestamp,
 * then public key, secret and body.  The output buffer is malloc()ed at
 * exactly imburse_hmac_authorization_len() bytes.  The value is parsed back
 * and its signature checked against OpenSSL's HMAC computed here, from the
 * scheme in the design (string_to_sign = pk:nonce:ts:base64(sha256(body))).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "ngx_imburse_hmac.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char   nonce[] = "0123456789abcdef0123456789abcdef";
    size_t              pk_len, key_len, body_len, cap, n, sts_len;
    int64_t             ts;
    uint64_t            u;
    char               *out, *pk, sts_tail[80], *sts;
    unsigned char      *key, *body, md[EVP_MAX_MD_SIZE], hash[32];
    unsigned char       b64[2][64];
    unsigned int        md_len;
    int                 k;

    if (size < 10) {
        return 0;
    }

    pk_len = data[0];
    key_len = data[1];
    memcpy(&u, data + 2, 8);
    ts = (int64_t) u;
    data += 10;
    size -= 10;

    if (pk_len + key_len > size) {
        return 0;
    }

    pk = malloc(pk_len ? pk_len : 1);
    key = malloc(key_len ? key_len : 1);
    body_len = size - pk_len - key_len;
    body = malloc(body_len ? body_len : 1);
    cap = imburse_hmac_authorization_len(pk_len, IMBURSE_NONCE_LEN);
    out = malloc(cap);
    if (pk == NULL || key == NULL || body == NULL || out == NULL) {
        abort();
    }

    memcpy(pk, data, pk_len);
    memcpy(key, data + pk_len, key_len);
    memcpy(body, data + pk_len + key_len, body_len);

    n = imburse_hmac_authorization(out, pk, pk_len, key, key_len, nonce,
                                   IMBURSE_NONCE_LEN, ts,
                                   body_len ? body : NULL, body_len);

    if (n == 0 || n > cap) {
        abort();
    }

    /* "Hmac " pk ":" nonce ":" ts ":" base64(signature) */
    k = snprintf(sts_tail, sizeof(sts_tail), ":%s:%lld:", nonce,
                 (long long) ts);
    if (k <= 0 || (size_t) k >= sizeof(sts_tail)) {
        abort();
    }

    sts = malloc(pk_len + (size_t) k + 45);
    if (sts == NULL) {
        abort();
    }
    memcpy(sts, pk, pk_len);
    memcpy(sts + pk_len, sts_tail, (size_t) k);
    sts_len = pk_len + (size_t) k;

    if (body_len) {
        SHA256(body, body_len, hash);
        sts_len += (size_t) EVP_EncodeBlock((unsigned char *) sts + sts_len,
                                            hash, 32);
    }

    if (n != 5 + pk_len + (size_t) k + 44
        || memcmp(out, "Hmac ", 5) != 0
        || memcmp(out + 5, sts, pk_len + (size_t) k) != 0)
    {
        abort();
    }

    if (HMAC(EVP_sha256(), key, (int) key_len, (unsigned char *) sts, sts_len,
             md, &md_len) == NULL)
    {
        abort();
    }

    EVP_EncodeBlock(b64[0], md, (int) md_len);
    memcpy(b64[1], out + n - 44, 44);

    if (memcmp(b64[0], b64[1], 44) != 0) {
        abort();
    }

    free(sts);
    free(out);
    free(body);
    free(key);
    free(pk);

    return 0;
}
