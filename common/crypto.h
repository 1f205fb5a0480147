/* SPDX-License-Identifier: MIT */
/* Symmetric primitives, all from Nettle: SHA-256, HMAC, HKDF, DES-EDE3-CBC. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define TDES_KEY_LEN 24
#define TDES_BLOCK_LEN 8

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                 uint8_t out[SHA256_LEN]);

/* RFC 5869 HKDF-SHA256 (extract then expand). out_len <= 255*32, else
 * -EINVAL. Returns 0. */
int hkdf_sha256(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
                const void *info, size_t info_len, uint8_t *out, size_t out_len);

/* DES-EDE3-CBC, key = K1||K2||K3 (three independent keys). Parity bits are
 * ignored, as Nettle does.
 *
 * The _raw variants work on whole blocks without padding (len % 8 == 0, else
 * -EINVAL); out may equal in. Used by the CAVP tests. */
int tdes_cbc_encrypt_raw(const uint8_t key[TDES_KEY_LEN], const uint8_t iv[TDES_BLOCK_LEN],
                         const uint8_t *in, size_t len, uint8_t *out);
int tdes_cbc_decrypt_raw(const uint8_t key[TDES_KEY_LEN], const uint8_t iv[TDES_BLOCK_LEN],
                         const uint8_t *in, size_t len, uint8_t *out);

/* With PKCS#7 padding (always 1..8 bytes added). The output is allocated.
 * decrypt returns -EBADMSG for a length that is not a positive multiple of 8
 * or for bad padding (checked in constant time), -ENOMEM. */
int tdes_cbc_encrypt(const uint8_t key[TDES_KEY_LEN], const uint8_t iv[TDES_BLOCK_LEN],
                     const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len);
int tdes_cbc_decrypt(const uint8_t key[TDES_KEY_LEN], const uint8_t iv[TDES_BLOCK_LEN],
                     const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len);
