/*
 * Tokens at rest in the fleet's Redis: AES-256-GCM, HKDF-SHA256 keys.
 *
 * blob = version (1) | nonce (12) | ciphertext | tag (16)
 * plaintext = expires_ms (8, big endian) | obtained_ms (8) | token
 */

#include <string.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_imburse_fleet_crypto.h"


#define IMBURSE_FLEET_VERSION    1
#define IMBURSE_FLEET_NONCE_LEN  12
#define IMBURSE_FLEET_TAG_LEN    16
#define IMBURSE_FLEET_TIMES_LEN  16
#define IMBURSE_FLEET_SALT       "nginx-imburse-auth fleet v1"


static void imburse_put64(unsigned char *p, int64_t v);
static int64_t imburse_get64(const unsigned char *p);


int
imburse_fleet_derive_key(unsigned char key[IMBURSE_FLEET_KEY_LEN],
    const unsigned char *secret, size_t secret_len,
    const unsigned char *public_key, size_t public_key_len)
{
    int            rc;
    size_t         len;
    EVP_PKEY_CTX  *pctx;

    pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    if (pctx == NULL) {
        return -1;
    }

    len = IMBURSE_FLEET_KEY_LEN;

    rc = (EVP_PKEY_derive_init(pctx) == 1
          && EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) == 1
          && EVP_PKEY_CTX_set1_hkdf_salt(pctx,
                 (const unsigned char *) IMBURSE_FLEET_SALT,
                 sizeof(IMBURSE_FLEET_SALT) - 1) == 1
          && EVP_PKEY_CTX_set1_hkdf_key(pctx, secret, (int) secret_len) == 1
          && EVP_PKEY_CTX_add1_hkdf_info(pctx, public_key,
                                         (int) public_key_len) == 1
          && EVP_PKEY_derive(pctx, key, &len) == 1
          && len == IMBURSE_FLEET_KEY_LEN) ? 0 : -1;

    EVP_PKEY_CTX_free(pctx);

    return rc;
}


void
imburse_fleet_namespace(char ns[IMBURSE_FLEET_NS_LEN],
    const unsigned char *public_key, size_t public_key_len)
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      md[SHA256_DIGEST_LENGTH];
    int                i;

    SHA256(public_key, public_key_len, md);

    for (i = 0; i < IMBURSE_FLEET_NS_LEN / 2; i++) {
        ns[2 * i] = hex[md[i] >> 4];
        ns[2 * i + 1] = hex[md[i] & 0x0f];
    }
}


size_t
imburse_fleet_seal(unsigned char *out,
    const unsigned char key[IMBURSE_FLEET_KEY_LEN],
    const unsigned char *aad, size_t aad_len,
    const unsigned char *token, size_t token_len,
    int64_t expires_ms, int64_t obtained_ms)
{
    int              n, ok;
    size_t           len;
    unsigned char   *nonce, *ct;
    unsigned char    times[IMBURSE_FLEET_TIMES_LEN];
    EVP_CIPHER_CTX  *c;

    out[0] = IMBURSE_FLEET_VERSION;
    nonce = out + 1;
    ct = nonce + IMBURSE_FLEET_NONCE_LEN;

    if (RAND_bytes(nonce, IMBURSE_FLEET_NONCE_LEN) != 1) {
        return 0;
    }

    imburse_put64(times, expires_ms);
    imburse_put64(times + 8, obtained_ms);

    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return 0;
    }

    len = 0;

    ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1
         && EVP_EncryptUpdate(c, NULL, &n, aad, (int) aad_len) == 1
         && EVP_EncryptUpdate(c, ct, &n, times, sizeof(times)) == 1
         && (len += (size_t) n, 1)
         && EVP_EncryptUpdate(c, ct + len, &n, token, (int) token_len) == 1
         && (len += (size_t) n, 1)
         && EVP_EncryptFinal_ex(c, ct + len, &n) == 1
         && (len += (size_t) n, 1)
         && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG,
                                IMBURSE_FLEET_TAG_LEN, ct + len) == 1;

    EVP_CIPHER_CTX_free(c);

    if (!ok) {
        return 0;
    }

    return 1 + IMBURSE_FLEET_NONCE_LEN + len + IMBURSE_FLEET_TAG_LEN;
}


long
imburse_fleet_open(const unsigned char *blob, size_t len,
    const unsigned char key[IMBURSE_FLEET_KEY_LEN],
    const unsigned char *aad, size_t aad_len,
    unsigned char *token, size_t token_max,
    int64_t *expires_ms, int64_t *obtained_ms)
{
    int                   n, ok;
    size_t                ct_len, token_len;
    unsigned char         times[IMBURSE_FLEET_TIMES_LEN];
    const unsigned char  *nonce, *ct, *tag;
    EVP_CIPHER_CTX       *c;

    if (len <= IMBURSE_FLEET_OVERHEAD || blob[0] != IMBURSE_FLEET_VERSION) {
        return -1;
    }

    nonce = blob + 1;
    ct = nonce + IMBURSE_FLEET_NONCE_LEN;
    ct_len = len - 1 - IMBURSE_FLEET_NONCE_LEN - IMBURSE_FLEET_TAG_LEN;
    tag = ct + ct_len;
    token_len = ct_len - IMBURSE_FLEET_TIMES_LEN;

    if (token_len > token_max) {
        return -1;
    }

    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return -1;
    }

    ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1
         && EVP_DecryptUpdate(c, NULL, &n, aad, (int) aad_len) == 1
         && EVP_DecryptUpdate(c, times, &n, ct, IMBURSE_FLEET_TIMES_LEN) == 1
         && EVP_DecryptUpdate(c, token, &n, ct + IMBURSE_FLEET_TIMES_LEN,
                              (int) token_len) == 1
         && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG,
                                IMBURSE_FLEET_TAG_LEN, (void *) tag) == 1
         && EVP_DecryptFinal_ex(c, token + token_len, &n) == 1;

    EVP_CIPHER_CTX_free(c);

    if (!ok) {
        /* nothing of an unauthenticated plaintext is left behind */
        OPENSSL_cleanse(token, token_len);
        return -1;
    }

    *expires_ms = imburse_get64(times);
    *obtained_ms = imburse_get64(times + 8);

    return (long) token_len;
}


static void
imburse_put64(unsigned char *p, int64_t v)
{
    int       i;
    uint64_t  u;

    u = (uint64_t) v;

    for (i = 7; i >= 0; i--) {
        p[i] = (unsigned char) (u & 0xff);
        u >>= 8;
    }
}


static int64_t
imburse_get64(const unsigned char *p)
{
    int       i;
    uint64_t  u;

    u = 0;

    for (i = 0; i < 8; i++) {
        u = (u << 8) | p[i];
    }

    return (int64_t) u;
}
