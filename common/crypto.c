/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <nettle/cbc.h>
#include <nettle/des.h>
#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/nettle-meta.h>
#include <nettle/sha2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "util.h"

/* Nettle wants a non-NULL pointer even for zero lengths. */
static const uint8_t empty[1];
#define NONNULL(p) ((p) ? (const uint8_t *) (p) : empty)

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]) {
        struct sha256_ctx ctx;

        sha256_init(&ctx);
        sha256_update(&ctx, len, NONNULL(data));
        sha256_digest(&ctx, SHA256_LEN, out);
        secure_wipe(&ctx, sizeof(ctx));
}

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                 uint8_t out[SHA256_LEN]) {
        struct hmac_sha256_ctx ctx;

        hmac_sha256_set_key(&ctx, key_len, NONNULL(key));
        hmac_sha256_update(&ctx, len, NONNULL(data));
        hmac_sha256_digest(&ctx, SHA256_LEN, out);
        secure_wipe(&ctx, sizeof(ctx));
}

int hkdf_sha256(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
                const void *info, size_t info_len, uint8_t *out, size_t out_len) {
        struct hmac_sha256_ctx ctx;
        uint8_t prk[SHA256_LEN];

        /* RFC 5869 section 2.3: the block counter is one octet. */
        if (out_len > 255 * SHA256_LEN)
                return -EINVAL;

        /* An absent salt is HashLen zero bytes (RFC 5869 section 2.2), which
         * HMAC treats exactly like an empty key. */
        hmac_sha256_set_key(&ctx, salt_len, NONNULL(salt));
        hkdf_extract(&ctx, nettle_hmac_sha256.update, nettle_hmac_sha256.digest,
                     SHA256_LEN, ikm_len, NONNULL(ikm), prk);

        hmac_sha256_set_key(&ctx, sizeof(prk), prk);
        hkdf_expand(&ctx, nettle_hmac_sha256.update, nettle_hmac_sha256.digest,
                    SHA256_LEN, info_len, NONNULL(info), out_len, out);

        secure_wipe(prk, sizeof(prk));
        secure_wipe(&ctx, sizeof(ctx));
        return 0;
}

/* Nettle's cipher callbacks take a void context; these wrappers avoid
 * casting function pointers. */
static void des3_encrypt_cb(const void *ctx, size_t len, uint8_t *dst, const uint8_t *src) {
        des3_encrypt(ctx, len, dst, src);
}

static void des3_decrypt_cb(const void *ctx, size_t len, uint8_t *dst, const uint8_t *src) {
        des3_decrypt(ctx, len, dst, src);
}

static int tdes_cbc_raw(bool encrypt, const uint8_t key[TDES_KEY_LEN],
                        const uint8_t iv[TDES_BLOCK_LEN], const uint8_t *in, size_t len,
                        uint8_t *out) {
        struct des3_ctx ctx;
        uint8_t chain[TDES_BLOCK_LEN];

        if (len % TDES_BLOCK_LEN != 0)
                return -EINVAL;
        if (len == 0)
                return 0;

        /* Returns 0 for weak keys or bad parity, but the key schedule is
         * set all the same; parity is ignored by design (crypto.h). */
        (void) des3_set_key(&ctx, key);
        memcpy(chain, iv, sizeof(chain));        /* Nettle updates the IV in place */
        if (encrypt)
                cbc_encrypt(&ctx, des3_encrypt_cb, TDES_BLOCK_LEN, chain, len, out, in);
        else
                cbc_decrypt(&ctx, des3_decrypt_cb, TDES_BLOCK_LEN, chain, len, out, in);

        secure_wipe(&ctx, sizeof(ctx));
        secure_wipe(chain, sizeof(chain));
        return 0;
}

int tdes_cbc_encrypt_raw(const uint8_t key[TDES_KEY_LEN], const uint8_t iv[TDES_BLOCK_LEN],
                         const uint8_t *in, size_t len, uint8_t *out) {
        return tdes_cbc_raw(true, key, iv, in, len, out);
}

int tdes_cbc_decrypt_raw(const uint8_t key[TDES_KEY_LEN], const uint8_t iv[TDES_BLOCK_LEN],
                         const uint8_t *in, size_t len, uint8_t *out) {
        return tdes_cbc_raw(false, key, iv, in, len, out);
}

int tdes_cbc_encrypt(const uint8_t key[TDES_KEY_LEN], const uint8_t iv[TDES_BLOCK_LEN],
                     const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len) {
        size_t pad = TDES_BLOCK_LEN - len % TDES_BLOCK_LEN, n;
        uint8_t *out;
        int r;

        if (len > SIZE_MAX - TDES_BLOCK_LEN)
                return -ENOMEM;
        n = len + pad;
        out = malloc(n);
        if (!out)
                return -ENOMEM;
        if (len > 0)
                memcpy(out, in, len);
        memset(out + len, (int) pad, pad);

        r = tdes_cbc_encrypt_raw(key, iv, out, n, out);
        if (r < 0) {
                secure_free(out, n);
                return r;
        }

        *ret = out;
        *ret_len = n;
        return 0;
}

/* 1 if x == 0, else 0, without a branch. */
static uint32_t ct_is_zero(uint32_t x) {
        return 1 ^ ((x | (0u - x)) >> 31);
}

/* 1 if a < b, else 0, for a, b < 2^31. */
static uint32_t ct_lt(uint32_t a, uint32_t b) {
        return (a - b) >> 31;
}

int tdes_cbc_decrypt(const uint8_t key[TDES_KEY_LEN], const uint8_t iv[TDES_BLOCK_LEN],
                     const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len) {
        uint32_t pad, bad;
        uint8_t *out;
        int r;

        if (len == 0 || len % TDES_BLOCK_LEN != 0)
                return -EBADMSG;
        out = malloc(len);
        if (!out)
                return -ENOMEM;

        r = tdes_cbc_decrypt_raw(key, iv, in, len, out);
        if (r < 0) {
                secure_free(out, len);
                return r;
        }

        /* Look at all eight last bytes whatever the padding length claims,
         * and fold every check into one flag, so that timing does not tell
         * which check failed or where. */
        pad = out[len - 1];
        bad = ct_is_zero(pad) | ct_lt(TDES_BLOCK_LEN, pad);
        for (uint32_t i = 0; i < TDES_BLOCK_LEN; i++)
                bad |= ct_lt(i, pad) & (1 ^ ct_is_zero(out[len - 1 - i] ^ pad));

        if (bad) {
                secure_free(out, len);
                return -EBADMSG;
        }

        *ret = out;
        *ret_len = len - pad;
        return 0;
}
