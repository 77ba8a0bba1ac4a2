/*
 * Imburse's HMAC request signing and the small crypto helpers around it.
 * Pure C over OpenSSL: no nginx types, so it is unit-tested directly.
 */

#ifndef _NGX_IMBURSE_HMAC_H_INCLUDED_
#define _NGX_IMBURSE_HMAC_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* 16 random bytes, hex encoded */
#define IMBURSE_NONCE_LEN        32
#define IMBURSE_SHA256_LEN       32
#define IMBURSE_SHA256_B64_LEN   44
/* short token hash shown in logs and the status page */
#define IMBURSE_FP_HEX_LEN       12


size_t imburse_base64_encode(unsigned char *dst, const unsigned char *src,
    size_t len);

/*
 * Strict standard base64 (RFC 4648 section 4), padding required, leading and
 * trailing white space ignored.  Returns the decoded length or -1; dst must
 * hold len * 3 / 4 bytes.
 */
long imburse_base64_decode_key(unsigned char *dst, const unsigned char *src,
    size_t len);

/*
 * For a key that imburse_base64_decode_key() refuses: what is wrong with
 * it, as a message naming what to change (in buf, or a constant string).
 */
const char *imburse_base64_key_problem(const unsigned char *src, size_t len,
    char *buf, size_t size);

/* Lenient base64url (JWT segments): no padding needed.  -1 on bad input. */
long imburse_base64url_decode(unsigned char *dst, const unsigned char *src,
    size_t len);

void imburse_sha256(unsigned char out[IMBURSE_SHA256_LEN],
    const unsigned char *data, size_t len);

/* lowercase hex of the first bytes of SHA-256(data): IMBURSE_FP_HEX_LEN chars */
void imburse_fingerprint(char out[IMBURSE_FP_HEX_LEN], const unsigned char *data,
    size_t len);

/* identifies a (public key, private key) pair: SHA-256(public \0 private) */
void imburse_key_fingerprint(unsigned char out[IMBURSE_SHA256_LEN],
    const unsigned char *public_key, size_t public_key_len,
    const unsigned char *private_key, size_t private_key_len);

/* CSPRNG nonce; 0 on success, -1 if OpenSSL has no entropy */
int imburse_nonce(char out[IMBURSE_NONCE_LEN]);

/* the buffer size imburse_hmac_authorization() needs (one byte more than
 * the value: the encoder ends it with a NUL) */
size_t imburse_hmac_authorization_len(size_t public_key_len, size_t nonce_len);

/*
 * Writes "Hmac {public_key}:{nonce}:{timestamp}:{signature}" into out and
 * returns its length, or 0 on an OpenSSL failure.  body may be NULL.
 */
size_t imburse_hmac_authorization(char *out, const char *public_key,
    size_t public_key_len, const unsigned char *key, size_t key_len,
    const char *nonce, size_t nonce_len, int64_t timestamp,
    const unsigned char *body, size_t body_len);


#endif /* _NGX_IMBURSE_HMAC_H_INCLUDED_ */
