/* SPDX-License-Identifier: MIT */
/*
 * RSA on Nettle/hogweed, key files through GnuTLS.
 *
 * Nettle has PSS but no OAEP, so OAEP (RFC 8017, 7.1) is built here from
 * Nettle's MGF1 and its blinded private operation. The decoding runs in
 * constant time: a padding oracle would let a peer decrypt envelope keys
 * (Manger's attack).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <nettle/base64.h>
#include <nettle/bignum.h>
#include <nettle/pss-mgf1.h>
#include <nettle/sha2.h>

#include "crypto.h"
#include "macro.h"
#include "fileio.h"
#include "rsa.h"
#include "util.h"

#define RSA_MAX_BYTES (RSA_MAX_BITS / 8)
#define RSA_PUBLIC_EXPONENT 65537
#define HLEN SHA256_DIGEST_SIZE
/* Key files and in-memory keys: a 4096-bit PKCS#8 PEM is about 3.3 KiB. */
#define KEY_DATA_MAX (64 * 1024)

/* ---- helpers ------------------------------------------------------------ */

/* Nettle's random callbacks cannot fail. A getrandom() failure is recorded
 * here and the caller throws away whatever was computed with the zeros. */
typedef struct RandomCtx {
        int error;
} RandomCtx;

static void random_func(void *userdata, size_t len, uint8_t *dst) {
        RandomCtx *rc = userdata;
        int r;

        r = random_bytes(dst, len);
        if (r < 0) {
                memset(dst, 0, len);
                if (rc->error == 0)
                        rc->error = r;
        }
}

static int gnutls_to_errno(int r) {
        return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL;
}

/* GMP does not wipe what it frees: overwrite the limbs first. */
static void mpz_wipe(mpz_t x) {
        size_t n = mpz_size(x);

        if (n > 0)
                secure_wipe(mpz_limbs_modify(x, (mp_size_t) n), n * sizeof(mp_limb_t));
        mpz_limbs_finish(x, 0);
}

static void gnutls_datum_wipe(gnutls_datum_t *d) {
        if (d->data) {
                secure_wipe(d->data, d->size);
                gnutls_free(d->data);
        }
        d->data = NULL;
        d->size = 0;
}

/* Unsigned big-endian bytes of x, in memory from malloc(). */
static int mpz_to_datum(const mpz_t x, gnutls_datum_t *ret) {
        size_t n = nettle_mpz_sizeinbase_256_u(x);
        uint8_t *p;

        if (n > UINT_MAX)
                return -EINVAL;
        p = malloc(n);
        if (!p)
                return -ENOMEM;
        nettle_mpz_get_str_256(n, p, x);
        *ret = (gnutls_datum_t) { .data = p, .size = (unsigned) n };
        return 0;
}

static void datum_freep(gnutls_datum_t *d) {
        secure_free(d->data, d->size);
}

static void gnutls_pubkey_deinitp(gnutls_pubkey_t *p) {
        if (*p)
                gnutls_pubkey_deinit(*p);
}

static void gnutls_x509_privkey_deinitp(gnutls_x509_privkey_t *p) {
        if (*p)
                gnutls_x509_privkey_deinit(*p);
}

/* ---- constant-time helpers (OAEP decoding) ------------------------------ */

/* Keep the compiler from turning mask arithmetic back into branches. */
static inline size_t ct_barrier(size_t x) {
        __asm__("" : "+r"(x));
        return x;
}

/* All ones if x == 0, else 0. */
static inline size_t ct_is_zero(size_t x) {
        return 0 - (ct_barrier(~x & (x - 1)) >> (sizeof(size_t) * 8 - 1));
}

static inline size_t ct_eq(size_t a, size_t b) {
        return ct_is_zero(a ^ b);
}

static inline size_t ct_select(size_t mask, size_t a, size_t b) {
        return (ct_barrier(mask) & a) | (~mask & b);
}

/* ---- keys ---------------------------------------------------------------- */

RsaKey *rsa_key_free(RsaKey *k) {
        if (!k)
                return NULL;

        rsa_public_key_clear(&k->pub);
        if (k->has_private) {
                mpz_wipe(k->priv.d);
                mpz_wipe(k->priv.p);
                mpz_wipe(k->priv.q);
                mpz_wipe(k->priv.a);
                mpz_wipe(k->priv.b);
                mpz_wipe(k->priv.c);
                rsa_private_key_clear(&k->priv);
        }
        free(k->spki);
        free(k);
        return NULL;
}

static RsaKey *rsa_key_new(bool with_private) {
        RsaKey *k;

        k = calloc(1, sizeof(*k));
        if (!k)
                return NULL;
        rsa_public_key_init(&k->pub);
        if (with_private) {
                rsa_private_key_init(&k->priv);
                k->has_private = true;
        }
        return k;
}

unsigned rsa_key_bits(const RsaKey *k) {
        return (unsigned) mpz_sizeinbase(k->pub.n, 2);
}

size_t rsa_key_size(const RsaKey *k) {
        return k->pub.size;
}

void rsa_fingerprint_spki(const uint8_t *der, size_t len, char out[RSA_FINGERPRINT_MAX]) {
        uint8_t digest[SHA256_LEN];
        char b64[BASE64_ENCODE_RAW_LENGTH(SHA256_LEN)];

        /* Nettle's encoder directly rather than b64_encode_unpadded(): this
         * function cannot fail, so it must not allocate. 32 bytes are 43
         * characters plus one '=' of padding, which OpenSSH's form drops. */
        sha256(der, len, digest);
        base64_encode_raw(b64, sizeof(digest), digest);
        memcpy(out, "SHA256:", 7);
        memcpy(out + 7, b64, 43);
        out[50] = '\0';
}

static int check_public(const struct rsa_public_key *pub) {
        size_t bits;

        if (mpz_sgn(pub->n) <= 0 || !mpz_odd_p(pub->n))
                return -EINVAL;
        bits = mpz_sizeinbase(pub->n, 2);
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
                return -EINVAL;
        if (!mpz_odd_p(pub->e) || mpz_cmp_ui(pub->e, 3) < 0 || mpz_cmp(pub->e, pub->n) >= 0)
                return -EINVAL;
        return 0;
}

/* DER SPKI of (n, e), as GnuTLS writes it (the bytes `openssl pkey -pubout
 * -outform DER` prints too). */
static int spki_from_public(const struct rsa_public_key *pub, uint8_t **ret, size_t *ret_len) {
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t gpk = NULL;
        _cleanup_(datum_freep) gnutls_datum_t n = {}, e = {};
        gnutls_datum_t der = {};
        uint8_t *p;
        int r;

        r = mpz_to_datum(pub->n, &n);
        if (r < 0)
                return r;
        r = mpz_to_datum(pub->e, &e);
        if (r < 0)
                return r;

        r = gnutls_pubkey_init(&gpk);
        if (r < 0)
                return gnutls_to_errno(r);
        r = gnutls_pubkey_import_rsa_raw(gpk, &n, &e);
        if (r < 0)
                return gnutls_to_errno(r);
        r = gnutls_pubkey_export2(gpk, GNUTLS_X509_FMT_DER, &der);
        if (r < 0)
                return gnutls_to_errno(r);

        p = malloc(der.size);
        if (!p) {
                gnutls_free(der.data);
                return -ENOMEM;
        }
        memcpy(p, der.data, der.size);
        *ret = p;
        *ret_len = der.size;
        gnutls_free(der.data);
        return 0;
}

/* Checks the public half, prepares it and fills in spki and fingerprint. */
static int rsa_key_finish_public(RsaKey *k) {
        int r;

        r = check_public(&k->pub);
        if (r < 0)
                return r;
        if (!rsa_public_key_prepare(&k->pub))
                return -EINVAL;

        r = spki_from_public(&k->pub, &k->spki, &k->spki_len);
        if (r < 0)
                return r;
        rsa_fingerprint_spki(k->spki, k->spki_len, k->fingerprint);
        return 0;
}

/* The private half must match the public one and be internally consistent;
 * a corrupted file must not turn into wrong signatures or decryptions. */
static int check_private(const RsaKey *k) {
        const struct rsa_private_key *priv = &k->priv;
        mpz_t t, pm1, qm1;
        int r = -EINVAL;

        if (mpz_cmp_ui(priv->p, 2) <= 0 || mpz_cmp_ui(priv->q, 2) <= 0 ||
            mpz_sgn(priv->d) <= 0 || mpz_sgn(priv->a) <= 0 || mpz_sgn(priv->b) <= 0 ||
            mpz_sgn(priv->c) <= 0)
                return -EINVAL;

        mpz_inits(t, pm1, qm1, NULL);
        mpz_sub_ui(pm1, priv->p, 1);
        mpz_sub_ui(qm1, priv->q, 1);

        /* n = p * q */
        mpz_mul(t, priv->p, priv->q);
        if (mpz_cmp(t, k->pub.n) != 0)
                goto finish;
        /* a = d mod (p-1), b = d mod (q-1) */
        mpz_mod(t, priv->d, pm1);
        if (mpz_cmp(t, priv->a) != 0)
                goto finish;
        mpz_mod(t, priv->d, qm1);
        if (mpz_cmp(t, priv->b) != 0)
                goto finish;
        /* c = q^-1 mod p */
        mpz_mul(t, priv->c, priv->q);
        mpz_mod(t, t, priv->p);
        if (mpz_cmp_ui(t, 1) != 0)
                goto finish;
        /* e * d = 1 modulo p-1 and q-1, so decryption inverts encryption */
        mpz_mul(t, k->pub.e, priv->a);
        mpz_mod(t, t, pm1);
        if (mpz_cmp_ui(t, 1) != 0)
                goto finish;
        mpz_mul(t, k->pub.e, priv->b);
        mpz_mod(t, t, qm1);
        if (mpz_cmp_ui(t, 1) != 0)
                goto finish;

        r = 0;
finish:
        mpz_wipe(t);
        mpz_wipe(pm1);
        mpz_wipe(qm1);
        mpz_clears(t, pm1, qm1, NULL);
        return r;
}

int rsa_key_generate(unsigned bits, RsaKey **ret) {
        _cleanup_(rsa_key_freep) RsaKey *k = NULL;
        RandomCtx rc = {};
        int r;

        if (!ret)
                return -EINVAL;
        if (!rsa_bits_valid(bits))
                return -EINVAL;

        k = rsa_key_new(true);
        if (!k)
                return -ENOMEM;

        mpz_set_ui(k->pub.e, RSA_PUBLIC_EXPONENT);
        if (!rsa_generate_keypair(&k->pub, &k->priv, &rc, random_func, NULL, NULL, bits, 0))
                return rc.error < 0 ? rc.error : -EIO;
        if (rc.error < 0)
                return rc.error;

        r = rsa_key_finish_public(k);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(k);
        return 0;
}

static int rsa_key_from_gnutls_pubkey(gnutls_pubkey_t gpk, RsaKey **ret) {
        _cleanup_(rsa_key_freep) RsaKey *k = NULL;
        gnutls_datum_t m = {}, e = {};
        int r;

        if (gnutls_pubkey_get_pk_algorithm(gpk, NULL) != GNUTLS_PK_RSA)
                return -EINVAL;

        r = gnutls_pubkey_export_rsa_raw2(gpk, &m, &e, 0);
        if (r < 0)
                return gnutls_to_errno(r);

        k = rsa_key_new(false);
        if (!k) {
                r = -ENOMEM;
                goto finish;
        }
        nettle_mpz_set_str_256_u(k->pub.n, m.size, m.data);
        nettle_mpz_set_str_256_u(k->pub.e, e.size, e.data);

        r = rsa_key_finish_public(k);
        if (r < 0)
                goto finish;

        *ret = TAKE_PTR(k);
        r = 0;
finish:
        gnutls_free(m.data);
        gnutls_free(e.data);
        return r;
}

int rsa_key_from_spki(const uint8_t *der, size_t len, RsaKey **ret) {
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t gpk = NULL;
        _cleanup_(rsa_key_freep) RsaKey *k = NULL;
        gnutls_datum_t d;
        int r;

        if (!der || !ret)
                return -EINVAL;
        if (len == 0 || len > KEY_DATA_MAX)
                return -EINVAL;

        r = gnutls_pubkey_init(&gpk);
        if (r < 0)
                return gnutls_to_errno(r);
        d = (gnutls_datum_t) { .data = (unsigned char *) der, .size = (unsigned) len };
        r = gnutls_pubkey_import(gpk, &d, GNUTLS_X509_FMT_DER);
        if (r < 0)
                return gnutls_to_errno(r);

        r = rsa_key_from_gnutls_pubkey(gpk, &k);
        if (r < 0)
                return r;

        /* One key, one encoding: refuse anything that does not re-encode to
         * the same bytes (trailing data, non-minimal encodings, odd
         * parameters), so that the fingerprint of what a peer sent is always
         * the fingerprint of the key we use. */
        if (k->spki_len != len || memcmp(k->spki, der, len) != 0)
                return -EINVAL;
        /* Only the protocol's sizes travel; a local file may hold any size
         * in range (so that tests can present a 2056-bit key). */
        if (!rsa_bits_valid(rsa_key_bits(k)))
                return -EKEYREJECTED;

        *ret = TAKE_PTR(k);
        return 0;
}

static int rsa_key_from_gnutls_privkey(gnutls_x509_privkey_t gk, RsaKey **ret) {
        _cleanup_(rsa_key_freep) RsaKey *k = NULL;
        gnutls_datum_t m = {}, e = {}, d = {}, p = {}, q = {}, u = {}, e1 = {}, e2 = {};
        int r;

        /* rsaEncryption only: an RSA-PSS-restricted key is not ours to use for OAEP. */
        if (gnutls_x509_privkey_get_pk_algorithm2(gk, NULL) != GNUTLS_PK_RSA)
                return -EINVAL;

        r = gnutls_x509_privkey_export_rsa_raw2(gk, &m, &e, &d, &p, &q, &u, &e1, &e2);
        if (r < 0)
                return gnutls_to_errno(r);

        k = rsa_key_new(true);
        if (!k) {
                r = -ENOMEM;
                goto finish;
        }
        nettle_mpz_set_str_256_u(k->pub.n, m.size, m.data);
        nettle_mpz_set_str_256_u(k->pub.e, e.size, e.data);
        nettle_mpz_set_str_256_u(k->priv.d, d.size, d.data);
        nettle_mpz_set_str_256_u(k->priv.p, p.size, p.data);
        nettle_mpz_set_str_256_u(k->priv.q, q.size, q.data);
        /* GnuTLS's coefficient u is PKCS#1's q^-1 mod p, which is Nettle's c. */
        nettle_mpz_set_str_256_u(k->priv.c, u.size, u.data);
        nettle_mpz_set_str_256_u(k->priv.a, e1.size, e1.data);
        nettle_mpz_set_str_256_u(k->priv.b, e2.size, e2.data);

        r = check_public(&k->pub);
        if (r < 0)
                goto finish;
        r = check_private(k);
        if (r < 0)
                goto finish;
        if (!rsa_private_key_prepare(&k->priv)) {
                r = -EINVAL;
                goto finish;
        }
        r = rsa_key_finish_public(k);
        if (r < 0)
                goto finish;

        *ret = TAKE_PTR(k);
        r = 0;
finish:
        gnutls_free(m.data);
        gnutls_free(e.data);
        gnutls_datum_wipe(&d);
        gnutls_datum_wipe(&p);
        gnutls_datum_wipe(&q);
        gnutls_datum_wipe(&u);
        gnutls_datum_wipe(&e1);
        gnutls_datum_wipe(&e2);
        return r;
}

static int rsa_key_from_private(const uint8_t *data, size_t len, gnutls_x509_crt_fmt_t fmt,
                                RsaKey **ret) {
        _cleanup_(gnutls_x509_privkey_deinitp) gnutls_x509_privkey_t gk = NULL;
        gnutls_datum_t d;
        int r;

        if (!data || !ret)
                return -EINVAL;
        if (len == 0 || len > KEY_DATA_MAX)
                return -EINVAL;

        r = gnutls_x509_privkey_init(&gk);
        if (r < 0)
                return gnutls_to_errno(r);
        /* import2 detects PKCS#1 and (unencrypted) PKCS#8; no password. */
        d = (gnutls_datum_t) { .data = (unsigned char *) data, .size = (unsigned) len };
        r = gnutls_x509_privkey_import2(gk, &d, fmt, NULL, 0);
        if (r < 0)
                return gnutls_to_errno(r);

        return rsa_key_from_gnutls_privkey(gk, ret);
}

int rsa_key_from_private_pem(const uint8_t *data, size_t len, RsaKey **ret) {
        return rsa_key_from_private(data, len, GNUTLS_X509_FMT_PEM, ret);
}

int rsa_key_from_private_der(const uint8_t *data, size_t len, RsaKey **ret) {
        return rsa_key_from_private(data, len, GNUTLS_X509_FMT_DER, ret);
}

int rsa_key_export_private_pem(const RsaKey *k, char **ret, size_t *ret_len) {
        _cleanup_(gnutls_x509_privkey_deinitp) gnutls_x509_privkey_t gk = NULL;
        _cleanup_(datum_freep) gnutls_datum_t m = {}, e = {}, d = {}, p = {}, q = {}, u = {},
                                              e1 = {}, e2 = {};
        gnutls_datum_t pem = {};
        size_t len;
        char *s;
        int r;

        if (!k || !k->has_private || !ret || !ret_len)
                return -EINVAL;

        if ((r = mpz_to_datum(k->pub.n, &m)) < 0 ||
            (r = mpz_to_datum(k->pub.e, &e)) < 0 ||
            (r = mpz_to_datum(k->priv.d, &d)) < 0 ||
            (r = mpz_to_datum(k->priv.p, &p)) < 0 ||
            (r = mpz_to_datum(k->priv.q, &q)) < 0 ||
            (r = mpz_to_datum(k->priv.c, &u)) < 0 ||
            (r = mpz_to_datum(k->priv.a, &e1)) < 0 ||
            (r = mpz_to_datum(k->priv.b, &e2)) < 0)
                return r;

        r = gnutls_x509_privkey_init(&gk);
        if (r < 0)
                return gnutls_to_errno(r);
        r = gnutls_x509_privkey_import_rsa_raw2(gk, &m, &e, &d, &p, &q, &u, &e1, &e2);
        if (r < 0)
                return gnutls_to_errno(r);
        r = gnutls_x509_privkey_export2_pkcs8(gk, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &pem);
        if (r < 0)
                return gnutls_to_errno(r);

        len = strnlen((const char *) pem.data, pem.size);
        s = malloc(len + 1);
        if (!s) {
                gnutls_datum_wipe(&pem);
                return -ENOMEM;
        }
        memcpy(s, pem.data, len);
        s[len] = '\0';
        gnutls_datum_wipe(&pem);

        *ret = s;
        *ret_len = len;
        return 0;
}

static int export_public_pem(const RsaKey *k, char **ret, size_t *ret_len) {
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t gpk = NULL;
        gnutls_datum_t d, pem = {};
        size_t len;
        char *s;
        int r;

        r = gnutls_pubkey_init(&gpk);
        if (r < 0)
                return gnutls_to_errno(r);
        d = (gnutls_datum_t) { .data = k->spki, .size = (unsigned) k->spki_len };
        r = gnutls_pubkey_import(gpk, &d, GNUTLS_X509_FMT_DER);
        if (r < 0)
                return gnutls_to_errno(r);
        r = gnutls_pubkey_export2(gpk, GNUTLS_X509_FMT_PEM, &pem);
        if (r < 0)
                return gnutls_to_errno(r);

        len = strnlen((const char *) pem.data, pem.size);
        s = malloc(len + 1);
        if (!s) {
                gnutls_free(pem.data);
                return -ENOMEM;
        }
        memcpy(s, pem.data, len);
        s[len] = '\0';
        gnutls_free(pem.data);

        *ret = s;
        *ret_len = len;
        return 0;
}

/* ---- files --------------------------------------------------------------- */

int rsa_key_save_private(const RsaKey *k, const char *path) {
        char *pem = NULL;
        size_t len = 0;
        int r;

        if (!k || !k->has_private || !path)
                return -EINVAL;

        r = rsa_key_export_private_pem(k, &pem, &len);
        if (r < 0)
                return r;
        r = write_file_atomic(path, pem, len, 0600);
        secure_free(pem, len);
        return r;
}

int rsa_key_load_private(const char *path, RsaKey **ret) {
        char *buf = NULL;
        size_t len = 0;
        int r;

        if (!path || !ret)
                return -EINVAL;

        r = read_key_file(path, true, KEY_DATA_MAX, &buf, &len);
        if (r < 0)
                return r;
        r = rsa_key_from_private_pem((const uint8_t *) buf, len, ret);
        secure_free(buf, KEY_DATA_MAX + 1);
        return r;
}

int rsa_key_save_public(const RsaKey *k, const char *path) {
        _cleanup_(freep) char *pem = NULL;
        size_t len = 0;
        int r;

        if (!k || !path)
                return -EINVAL;

        r = export_public_pem(k, &pem, &len);
        if (r < 0)
                return r;
        return write_file_atomic(path, pem, len, 0644);
}

int rsa_key_load_public(const char *path, RsaKey **ret) {
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t gpk = NULL;
        char *buf = NULL;
        size_t len = 0;
        gnutls_datum_t d;
        int r;

        if (!path || !ret)
                return -EINVAL;

        r = read_key_file(path, false, KEY_DATA_MAX, &buf, &len);
        if (r < 0)
                return r;

        r = gnutls_pubkey_init(&gpk);
        if (r < 0) {
                r = gnutls_to_errno(r);
                goto finish;
        }
        d = (gnutls_datum_t) { .data = (unsigned char *) buf, .size = (unsigned) len };
        r = gnutls_pubkey_import(gpk, &d, GNUTLS_X509_FMT_PEM);
        if (r < 0) {
                r = gnutls_to_errno(r);
                goto finish;
        }
        r = rsa_key_from_gnutls_pubkey(gpk, ret);
finish:
        free(buf);
        return r;
}

/* ---- RSAES-OAEP-SHA256 ---------------------------------------------------- */

/* buf ^= MGF1-SHA256(seed, len) */
static void mgf1_xor(uint8_t *buf, size_t len, const uint8_t *seed, size_t seed_len) {
        struct sha256_ctx ctx;
        uint8_t mask[RSA_MAX_BYTES];

        sha256_init(&ctx);
        sha256_update(&ctx, seed_len, seed);
        pss_mgf1(&ctx, &nettle_sha256, len, mask);
        for (size_t i = 0; i < len; i++)
                buf[i] ^= mask[i];
        secure_wipe(mask, len);
        secure_wipe(&ctx, sizeof(ctx));
}

int rsa_oaep_encrypt(const RsaKey *k, const void *label, size_t label_len,
                     const void *msg, size_t msg_len, uint8_t **ret, size_t *ret_len) {
        uint8_t em[RSA_MAX_BYTES] = {};
        uint8_t *seed, *db, *out;
        size_t ksz, db_len;
        mpz_t m, c;
        int r;

        if (!k || (!label && label_len > 0) || (!msg && msg_len > 0) || !ret || !ret_len)
                return -EINVAL;
        ksz = k->pub.size;
        if (ksz > RSA_MAX_BYTES || ksz < 2 * HLEN + 2)
                return -EINVAL;
        if (msg_len > ksz - 2 * HLEN - 2)
                return -EINVAL;

        /* EM = 0x00 || maskedSeed || maskedDB, DB = lHash || PS || 0x01 || M */
        seed = em + 1;
        db = em + 1 + HLEN;
        db_len = ksz - HLEN - 1;
        sha256(label, label_len, db);
        db[db_len - msg_len - 1] = 0x01;
        if (msg_len > 0)
                memcpy(db + db_len - msg_len, msg, msg_len);

        r = random_bytes(seed, HLEN);
        if (r < 0) {
                secure_wipe(em, sizeof(em));
                return r;
        }
        mgf1_xor(db, db_len, seed, HLEN);
        mgf1_xor(seed, HLEN, db, db_len);

        out = malloc(ksz);
        if (!out) {
                secure_wipe(em, sizeof(em));
                return -ENOMEM;
        }

        /* A public operation: no secret exponent, plain mpz_powm is fine. EM
         * starts with 0x00, so it is below n. */
        mpz_inits(m, c, NULL);
        nettle_mpz_set_str_256_u(m, ksz, em);
        mpz_powm(c, m, k->pub.e, k->pub.n);
        nettle_mpz_get_str_256(ksz, out, c);
        mpz_wipe(m);
        mpz_clears(m, c, NULL);
        secure_wipe(em, sizeof(em));

        *ret = out;
        *ret_len = ksz;
        return 0;
}

int rsa_oaep_decrypt(const RsaKey *k, const void *label, size_t label_len,
                     const uint8_t *ct, size_t ct_len, uint8_t **ret, size_t *ret_len) {
        uint8_t em[RSA_MAX_BYTES], lhash[HLEN];
        uint8_t *seed, *db, *msg;
        size_t ksz, db_len, max_len, good, diff, found, bad, sep, off, msg_len;
        RandomCtx rc = {};
        mpz_t c, m;
        int ok;

        if (!k || !k->has_private || (!label && label_len > 0) || !ret || !ret_len)
                return -EINVAL;
        ksz = k->pub.size;
        if (ksz > RSA_MAX_BYTES || ksz < 2 * HLEN + 2)
                return -EINVAL;

        /* Public facts about the ciphertext, not about the plaintext. */
        if (!ct || ct_len != ksz)
                return -EBADMSG;

        mpz_inits(c, m, NULL);
        nettle_mpz_set_str_256_u(c, ct_len, ct);
        if (mpz_cmp(c, k->pub.n) >= 0) {
                mpz_clears(c, m, NULL);
                return -EBADMSG;
        }
        ok = rsa_compute_root_tr(&k->pub, &k->priv, &rc, random_func, m, c);
        nettle_mpz_get_str_256(ksz, em, m);
        mpz_wipe(m);
        mpz_clears(c, m, NULL);
        if (rc.error < 0) {
                secure_wipe(em, sizeof(em));
                return rc.error;
        }
        if (!ok) {
                /* Nettle's check of the CRT result failed (a fault). */
                secure_wipe(em, sizeof(em));
                return -EBADMSG;
        }

        /* From here on, nothing branches on em until the single decision at
         * the end: "good" collects every check as an all-ones/all-zeros mask. */
        seed = em + 1;
        db = em + 1 + HLEN;
        db_len = ksz - HLEN - 1;

        good = ct_is_zero(em[0]);
        mgf1_xor(seed, HLEN, db, db_len);
        mgf1_xor(db, db_len, seed, HLEN);

        sha256(label, label_len, lhash);
        diff = 0;
        for (size_t i = 0; i < HLEN; i++)
                diff |= (size_t) (db[i] ^ lhash[i]);
        good &= ct_is_zero(diff);

        /* The first 0x01 after lHash; only zeros may come before it. */
        found = 0;
        bad = 0;
        sep = HLEN;
        for (size_t i = HLEN; i < db_len; i++) {
                size_t is_zero = ct_is_zero(db[i]), is_one = ct_eq(db[i], 1);

                sep = ct_select(~found & is_one, i, sep);
                bad |= ~found & ~is_zero & ~is_one;
                found |= is_one;
        }
        good &= found & ~bad;

        /* Move M to the front of the area after the earliest possible
         * separator position, shifting by each bit of its offset in turn, so
         * that the memory access pattern does not depend on where M starts. */
        msg = db + HLEN + 1;
        max_len = db_len - HLEN - 1;
        off = sep - HLEN;
        msg_len = max_len - off;
        for (size_t s = 1; s <= max_len; s <<= 1) {
                size_t mask = ~ct_is_zero(off & s);

                for (size_t j = 0; j < max_len; j++) {
                        size_t src = j + s < max_len ? msg[j + s] : 0;

                        msg[j] = (uint8_t) ct_select(mask, src, msg[j]);
                }
        }

        if (!ct_barrier(good)) {
                secure_wipe(em, sizeof(em));
                return -EBADMSG;
        }

        *ret = malloc(msg_len > 0 ? msg_len : 1);
        if (!*ret) {
                secure_wipe(em, sizeof(em));
                return -ENOMEM;
        }
        memcpy(*ret, msg, msg_len);
        *ret_len = msg_len;
        secure_wipe(em, sizeof(em));
        return 0;
}

/* ---- RSASSA-PSS-SHA256 ----------------------------------------------------- */

int rsa_pss_sign(const RsaKey *k, const void *msg, size_t msg_len,
                 uint8_t **ret, size_t *ret_len) {
        uint8_t digest[SHA256_LEN], salt[PSS_SALT_LEN], *out;
        RandomCtx rc = {};
        size_t ksz;
        mpz_t s;
        int r;

        if (!k || !k->has_private || (!msg && msg_len > 0) || !ret || !ret_len)
                return -EINVAL;
        ksz = k->pub.size;

        sha256(msg, msg_len, digest);
        r = random_bytes(salt, sizeof(salt));
        if (r < 0)
                return r;

        out = malloc(ksz);
        if (!out)
                return -ENOMEM;

        mpz_init(s);
        if (!rsa_pss_sha256_sign_digest_tr(&k->pub, &k->priv, &rc, random_func,
                                           sizeof(salt), salt, digest, s))
                r = -EIO;       /* key too small for the salt, or a fault */
        else if (rc.error < 0)
                r = rc.error;
        else
                nettle_mpz_get_str_256(ksz, out, s);
        mpz_clear(s);
        if (r < 0) {
                free(out);
                return r;
        }

        *ret = out;
        *ret_len = ksz;
        return 0;
}

int rsa_pss_verify(const RsaKey *k, const void *msg, size_t msg_len,
                   const uint8_t *sig, size_t sig_len) {
        uint8_t digest[SHA256_LEN];
        mpz_t s;
        int ok;

        if (!k || (!msg && msg_len > 0))
                return -EINVAL;
        if (!sig || sig_len != k->pub.size)
                return -EBADMSG;

        sha256(msg, msg_len, digest);
        mpz_init(s);
        nettle_mpz_set_str_256_u(s, sig_len, sig);
        ok = mpz_cmp(s, k->pub.n) < 0 &&
             rsa_pss_sha256_verify_digest(&k->pub, PSS_SALT_LEN, digest, s);
        mpz_clear(s);

        return ok ? 0 : -EBADMSG;
}
