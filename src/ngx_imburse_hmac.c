/*
 * Imburse's HMAC request signing and the small crypto helpers around it.
 */

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_imburse_hmac.h"


#define IMBURSE_HMAC_PREFIX      "Hmac "
#define IMBURSE_INT64_DIGITS     20


static int imburse_base64_value(unsigned char c, int url);
static size_t imburse_write_int64(char *dst, int64_t v);


size_t
imburse_base64_encode(unsigned char *dst, const unsigned char *src, size_t len)
{
    return (size_t) EVP_EncodeBlock(dst, src, (int) len);
}


static int
imburse_base64_value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == (url ? '-' : '+')) {
        return 62;
    }

    if (c == (url ? '_' : '/')) {
        return 63;
    }

    return -1;
}


static int
imburse_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}


long
imburse_base64_decode_key(unsigned char *dst, const unsigned char *src,
    size_t len)
{
    size_t  i, n, pad;
    int     v[4], k;

    while (len && imburse_is_space(src[0])) {
        src++;
        len--;
    }

    while (len && imburse_is_space(src[len - 1])) {
        len--;
    }

    if (len == 0 || len % 4 != 0) {
        return -1;
    }

    pad = 0;

    if (src[len - 1] == '=') {
        pad++;
        if (src[len - 2] == '=') {
            pad++;
        }
    }

    n = 0;

    for (i = 0; i < len; i += 4) {

        for (k = 0; k < 4; k++) {

            if (i + k >= len - pad) {
                v[k] = 0;
                continue;
            }

            v[k] = imburse_base64_value(src[i + k], 0);

            if (v[k] < 0) {
                return -1;
            }
        }

        dst[n++] = (unsigned char) (v[0] << 2 | v[1] >> 4);

        if (i + 4 < len || pad < 2) {
            dst[n++] = (unsigned char) (v[1] << 4 | v[2] >> 2);
        }

        if (i + 4 < len || pad < 1) {
            dst[n++] = (unsigned char) (v[2] << 6 | v[3]);
        }
    }

    /* bits after the last full byte must be zero in canonical base64 */
    if ((pad == 2 && (v[1] & 0x0f)) || (pad == 1 && (v[2] & 0x03))) {
        return -1;
    }

    return (long) n;
}


/*
 * Why a key file does not hold strict base64, in words that say what to
 * change.  Positions are 1-based byte offsets in the file.
 */

const char *
imburse_base64_key_problem(const unsigned char *src, size_t len, char *buf,
    size_t size)
{
    size_t  start, end, i, n;
    int     url, std;

    start = 0;
    end = len;

    while (start < end && imburse_is_space(src[start])) {
        start++;
    }

    while (end > start && imburse_is_space(src[end - 1])) {
        end--;
    }

    n = end - start;

    if (n == 0) {
        return "the file is empty";
    }

    if (n >= 2 && (src[start] == '"' || src[start] == '\'')
        && src[end - 1] == src[start])
    {
        return "the key is wrapped in quotes: write it without them";
    }

    url = 0;
    std = 0;

    for (i = start; i < end; i++) {
        url |= (src[i] == '-' || src[i] == '_');
        std |= (src[i] == '+' || src[i] == '/');
    }

    if (url && !std) {
        return "the key is in the URL-safe base64 alphabet (\"-\" and "
               "\"_\"): convert it to standard base64 with "
               "tr -- '-_' '+/', and pad it with \"=\" to a multiple of 4 "
               "characters";
    }

    for (i = start; i < end; i++) {

        if (imburse_is_space(src[i])) {
            snprintf(buf, size, "white space at byte %zu: the key must be "
                     "on one line", i + 1);
            return buf;
        }

        if (src[i] == '=') {
            if (i + 2 < end || (i + 2 == end && src[i + 1] != '=')) {
                snprintf(buf, size, "\"=\" at byte %zu is not at the end: "
                         "padding only ends the key", i + 1);
                return buf;
            }

            continue;
        }

        if (imburse_base64_value(src[i], 0) < 0) {
            if (src[i] >= 0x21 && src[i] < 0x7f) {
                snprintf(buf, size, "\"%c\" at byte %zu is not a base64 "
                         "character", src[i], i + 1);
            } else {
                snprintf(buf, size, "byte 0x%02x at byte %zu is not a base64 "
                         "character", src[i], i + 1);
            }

            return buf;
        }
    }

    if (n % 4) {
        snprintf(buf, size, "%zu characters: base64 comes in groups of 4, "
                 "the key is cut short or lacks its \"=\" padding", n);
        return buf;
    }

    return "the last character leaves non-zero bits after the last byte: "
           "the key was cut or edited";
}


long
imburse_base64url_decode(unsigned char *dst, const unsigned char *src,
    size_t len)
{
    size_t    i, n;
    uint32_t  acc;
    int       v, bits;

    while (len && src[len - 1] == '=') {
        len--;
    }

    if (len % 4 == 1) {
        return -1;
    }

    n = 0;
    acc = 0;
    bits = 0;

    for (i = 0; i < len; i++) {
        v = imburse_base64_value(src[i], 1);

        if (v < 0) {
            return -1;
        }

        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            dst[n++] = (unsigned char) (acc >> bits);
        }
    }

    return (long) n;
}


void
imburse_sha256(unsigned char out[IMBURSE_SHA256_LEN],
    const unsigned char *data, size_t len)
{
    SHA256(data, len, out);
}


void
imburse_fingerprint(char out[IMBURSE_FP_HEX_LEN], const unsigned char *data,
    size_t len)
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      md[IMBURSE_SHA256_LEN];
    int                i;

    SHA256(data, len, md);

    for (i = 0; i < IMBURSE_FP_HEX_LEN / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
}


void
imburse_key_fingerprint(unsigned char out[IMBURSE_SHA256_LEN],
    const unsigned char *public_key, size_t public_key_len,
    const unsigned char *private_key, size_t private_key_len)
{
    EVP_MD_CTX  *md;

    md = EVP_MD_CTX_new();

    if (md == NULL
        || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(md, public_key, public_key_len) != 1
        || EVP_DigestUpdate(md, "", 1) != 1
        || EVP_DigestUpdate(md, private_key, private_key_len) != 1
        || EVP_DigestFinal_ex(md, out, NULL) != 1)
    {
        /* out of memory: a fingerprint no key has, so no token is reused */
        memset(out, 0xff, IMBURSE_SHA256_LEN);
    }

    EVP_MD_CTX_free(md);
}


int
imburse_nonce(char out[IMBURSE_NONCE_LEN])
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      rnd[IMBURSE_NONCE_LEN / 2];
    int                i;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return -1;
    }

    for (i = 0; i < IMBURSE_NONCE_LEN / 2; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 0x0f];
    }

    return 0;
}


static size_t
imburse_write_int64(char *dst, int64_t v)
{
    char      tmp[IMBURSE_INT64_DIGITS];
    size_t    n, i;
    uint64_t  u;

    u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;
    n = 0;

    do {
        tmp[n++] = (char) ('0' + u % 10);
        u /= 10;
    } while (u);

    i = 0;

    if (v < 0) {
        dst[i++] = '-';
    }

    while (n) {
        dst[i++] = tmp[--n];
    }

    return i;
}


size_t
imburse_hmac_authorization_len(size_t public_key_len, size_t nonce_len)
{
    return sizeof(IMBURSE_HMAC_PREFIX) - 1 + public_key_len + 1 + nonce_len
           + 1 + IMBURSE_INT64_DIGITS + 1 + IMBURSE_SHA256_B64_LEN
           + 1 /* EVP_EncodeBlock() ends with a NUL */;
}


size_t
imburse_hmac_authorization(char *out, const char *public_key,
    size_t public_key_len, const unsigned char *key, size_t key_len,
    const char *nonce, size_t nonce_len, int64_t timestamp,
    const unsigned char *body, size_t body_len)
{
    char           *p, *sts;
    unsigned char   md[EVP_MAX_MD_SIZE];
    unsigned int    md_len;
    size_t          sts_len;

    /*
     * The string to sign is the Authorization value minus its prefix, with
     * the body hash where the signature goes: build it in place.
     */

    p = out;
    memcpy(p, IMBURSE_HMAC_PREFIX, sizeof(IMBURSE_HMAC_PREFIX) - 1);
    p += sizeof(IMBURSE_HMAC_PREFIX) - 1;

    sts = p;

    memcpy(p, public_key, public_key_len);
    p += public_key_len;
    *p++ = ':';
    memcpy(p, nonce, nonce_len);
    p += nonce_len;
    *p++ = ':';
    p += imburse_write_int64(p, timestamp);
    *p++ = ':';

    sts_len = (size_t) (p - sts);

    if (body != NULL && body_len > 0) {
        imburse_sha256(md, body, body_len);
        sts_len += imburse_base64_encode((unsigned char *) p, md,
                                         IMBURSE_SHA256_LEN);
    }

    if (HMAC(EVP_sha256(), key, (int) key_len, (unsigned char *) sts, sts_len,
             md, &md_len)
        == NULL)
    {
        return 0;
    }

    p += imburse_base64_encode((unsigned char *) p, md, md_len);

    return (size_t) (p - out);
}
