/* SPDX-License-Identifier: MIT */
/*
 * RSA keys and the two schemes the protocol uses, on Nettle/hogweed:
 * RSAES-OAEP (SHA-256, MGF1-SHA-256, a label) for key transport and
 * RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) for signatures.
 *
 * Files are PEM through GnuTLS: private keys PKCS#8 (unencrypted, mode
 * 0600), public keys SubjectPublicKeyInfo, both readable by `openssl pkey`.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nettle/rsa.h>

#define RSA_FINGERPRINT_MAX 51  /* "SHA256:" + 43 base64 characters + NUL */
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 4096
#define PSS_SALT_LEN 32

typedef struct RsaKey {
        struct rsa_public_key pub;
        struct rsa_private_key priv;     /* initialised only if has_private */
        bool has_private;
        uint8_t *spki;                   /* DER SubjectPublicKeyInfo */
        size_t spki_len;
        char fingerprint[RSA_FINGERPRINT_MAX];  /* "SHA256:..." of spki */
} RsaKey;

RsaKey *rsa_key_free(RsaKey *k);        /* wipes private parts; NULL ok */
static inline void rsa_key_freep(RsaKey **k) { rsa_key_free(*k); }

/* The protocol's key sizes: 2048, 3072 or 4096 bits, nothing between. */
static inline bool rsa_bits_valid(size_t bits) {
        return bits == 2048 || bits == 3072 || bits == 4096;
}

/* bits is 2048, 3072 or 4096 (else -EINVAL); e = 65537; randomness from
 * getrandom. */
int rsa_key_generate(unsigned bits, RsaKey **ret);

/* Public key from DER SPKI (rsaEncryption). Refuses keys under
 * RSA_MIN_BITS or over RSA_MAX_BITS, an even n, e that is even, < 3 or >= n,
 * and DER that does not re-encode to the same bytes, so that every key has
 * exactly one encoding and one fingerprint (-EINVAL); and a modulus of a
 * size the protocol does not allow, 2056 bits say (-EKEYREJECTED). */
int rsa_key_from_spki(const uint8_t *der, size_t len, RsaKey **ret);

/* A private key from PKCS#8 or PKCS#1 PEM/DER in memory (tests use the
 * Wycheproof PKCS#8 DER). */
int rsa_key_from_private_pem(const uint8_t *data, size_t len, RsaKey **ret);
int rsa_key_from_private_der(const uint8_t *data, size_t len, RsaKey **ret);

/* Files. save_private writes PKCS#8 PEM atomically (temp file + rename)
 * with mode 0600. load_private refuses a file readable or writable by group
 * or others with -EPERM, before reading it. Public keys: SPKI PEM. */
int rsa_key_save_private(const RsaKey *k, const char *path);
int rsa_key_load_private(const char *path, RsaKey **ret);
int rsa_key_save_public(const RsaKey *k, const char *path);
int rsa_key_load_public(const char *path, RsaKey **ret);

/* PKCS#8 PEM of the private key in memory (for the TLS certificate code). */
int rsa_key_export_private_pem(const RsaKey *k, char **ret, size_t *ret_len);

/* Modulus size in bits and bytes. */
unsigned rsa_key_bits(const RsaKey *k);
size_t rsa_key_size(const RsaKey *k);

/* "SHA256:" + unpadded base64 of SHA-256(der): the fingerprint of any SPKI. */
void rsa_fingerprint_spki(const uint8_t *der, size_t len, char out[RSA_FINGERPRINT_MAX]);

/* RSAES-OAEP-SHA256 with MGF1-SHA256. Output is rsa_key_size() bytes.
 * Returns -EINVAL if the message is too long for the key. */
int rsa_oaep_encrypt(const RsaKey *k, const void *label, size_t label_len,
                     const void *msg, size_t msg_len, uint8_t **ret, size_t *ret_len);

/* Decrypts with the blinded private operation (rsa_compute_root_tr) and
 * decodes in constant time. Every failure - wrong length, ciphertext >= n,
 * any padding or label error - is the one error -EBADMSG. */
int rsa_oaep_decrypt(const RsaKey *k, const void *label, size_t label_len,
                     const uint8_t *ct, size_t ct_len, uint8_t **ret, size_t *ret_len);

/* RSASSA-PSS over SHA-256(msg), MGF1-SHA256, salt 32 random bytes.
 * Signature is rsa_key_size() bytes. */
int rsa_pss_sign(const RsaKey *k, const void *msg, size_t msg_len,
                 uint8_t **ret, size_t *ret_len);

/* 0 if valid, -EBADMSG otherwise (any length, any value). */
int rsa_pss_verify(const RsaKey *k, const void *msg, size_t msg_len,
                   const uint8_t *sig, size_t sig_len);
