/*
 * Tokens at rest in the fleet's Redis: sealed with AES-256-GCM under a key
 * derived (HKDF-SHA256) from the tenant's private key, so reading Redis
 * gives no usable token to anyone without the tenant key.  Pure C over
 * OpenSSL, unit-tested directly.
 */

#ifndef _NGX_IMBURSE_FLEET_CRYPTO_H_INCLUDED_
#define _NGX_IMBURSE_FLEET_CRYPTO_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define IMBURSE_FLEET_KEY_LEN    32
/* hex of the first bytes of SHA-256(public key): the Redis key namespace */
#define IMBURSE_FLEET_NS_LEN     16
/* version, nonce, expires and obtained times, tag */
#define IMBURSE_FLEET_OVERHEAD   (1 + 12 + 16 + 16)


int imburse_fleet_derive_key(unsigned char key[IMBURSE_FLEET_KEY_LEN],
    const unsigned char *secret, size_t secret_len,
    const unsigned char *public_key, size_t public_key_len);

void imburse_fleet_namespace(char ns[IMBURSE_FLEET_NS_LEN],
    const unsigned char *public_key, size_t public_key_len);

/*
 * Seals the token with its expiry and the time it was obtained (epoch ms)
 * into out, which holds IMBURSE_FLEET_OVERHEAD + token_len bytes; aad (the
 * Redis key) is authenticated too.  Returns the length, 0 on failure.
 */
size_t imburse_fleet_seal(unsigned char *out,
    const unsigned char key[IMBURSE_FLEET_KEY_LEN],
    const unsigned char *aad, size_t aad_len,
    const unsigned char *token, size_t token_len,
    int64_t expires_ms, int64_t obtained_ms);

/*
 * Opens a sealed blob; the token goes to token (token_max bytes at most).
 * Returns the token length, or -1 when the blob is not one of ours, was
 * sealed under another key or for another Redis key, or was altered.
 */
long imburse_fleet_open(const unsigned char *blob, size_t len,
    const unsigned char key[IMBURSE_FLEET_KEY_LEN],
    const unsigned char *aad, size_t aad_len,
    unsigned char *token, size_t token_max,
    int64_t *expires_ms, int64_t *obtained_ms);


#endif /* _NGX_IMBURSE_FLEET_CRYPTO_H_INCLUDED_ */
