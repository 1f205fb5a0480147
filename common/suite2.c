/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <nettle/curve25519.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "crypto.h"
#include "macro.h"
#include "suite2.h"

#define HEADER_FIXED_LEN (1 + X25519_KEY_LEN + 4 + 4)
#define START_FIXED_LEN (X25519_KEY_LEN + 4 + 1 + 4 + 4)
#define STATE_VERSION 1

typedef struct SkippedKey {
        uint8_t dh[X25519_KEY_LEN];
        uint32_t n;
        uint8_t mk[SUITE2_KEY_LEN];
        uint64_t stored;           /* recipient's clock when it was skipped */
} SkippedKey;

struct Ratchet {
        char me[USERNAME_MAX + 1];
        char peer[USERNAME_MAX + 1];
        uint8_t ek[X25519_KEY_LEN];        /* names the session: EK of its start */
        uint8_t dhs_priv[X25519_KEY_LEN];
        uint8_t dhs_pub[X25519_KEY_LEN];
        uint8_t dhr[X25519_KEY_LEN];
        uint8_t rk[SUITE2_KEY_LEN];
        uint8_t cks[SUITE2_KEY_LEN];
        uint8_t ckr[SUITE2_KEY_LEN];
        bool has_dhr, has_cks, has_ckr;
        uint32_t ns, nr, pn;
        /* The sender repeats the session start until the peer answers, so
         * that losing the first message does not lose the session. */
        bool has_start;
        RatchetHeader start;
        /* Receiving ratchet keys of finished chains, newest last: a message
         * of such a chain whose key is not among the skipped ones was
         * opened or dropped already, a replay. */
        uint8_t prev_dhr[SUITE2_PREV_CHAINS][X25519_KEY_LEN];
        size_t n_prev;
        SkippedKey *skipped;               /* oldest first */
        size_t n_skipped;
};

static const uint8_t zero_salt[SUITE2_KEY_LEN];

static int rnd_bytes(const Suite2Random *rnd, void *buf, size_t len) {
        if (rnd && rnd->fn)
                return rnd->fn(rnd->userdata, buf, len);
        return random_bytes(buf, len);
}

/* ---- Small readers for the strict binary parsers ---- */

typedef struct Reader {
        const uint8_t *p;
        size_t left;
        bool bad;
} Reader;

static const uint8_t *rd_take(Reader *r, size_t n) {
        const uint8_t *p;

        if (r->bad || r->left < n) {
                r->bad = true;
                return NULL;
        }
        p = r->p;
        r->p += n;
        r->left -= n;
        return p;
}

static void rd_bytes(Reader *r, void *out, size_t n) {
        const uint8_t *p = rd_take(r, n);

        if (p)
                memcpy(out, p, n);
}

static uint8_t rd_u8(Reader *r) {
        const uint8_t *p = rd_take(r, 1);

        return p ? p[0] : 0;
}

static uint32_t rd_u32(Reader *r) {
        const uint8_t *p = rd_take(r, 4);

        if (!p)
                return 0;
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static uint64_t rd_u64(Reader *r) {
        uint64_t hi = rd_u32(r);

        return hi << 32 | rd_u32(r);
}

/* lp(x) with lo <= |x| <= hi into out (hi bytes of room). */
static size_t rd_lp(Reader *r, void *out, size_t lo, size_t hi) {
        uint32_t n = rd_u32(r);

        if (n < lo || n > hi) {
                r->bad = true;
                return 0;
        }
        rd_bytes(r, out, n);
        return r->bad ? 0 : n;
}

/* A bool encoded as one byte 0 or 1; anything else is malformed. */
static bool rd_flag(Reader *r) {
        uint8_t v = rd_u8(r);

        if (v > 1)
                r->bad = true;
        return v == 1;
}

static void rd_x25519(Reader *r, uint8_t out[X25519_KEY_LEN]) {
        rd_bytes(r, out, X25519_KEY_LEN);
        if (!r->bad && !x25519_public_valid(out))
                r->bad = true;
}

static int rd_done(const Reader *r) {
        return r->bad || r->left != 0 ? -EBADMSG : 0;
}

static void put_u8(Buf *b, uint8_t v) {
        buf_put(b, &v, 1);
}

/* ---- X25519 ---- */

int x25519_keypair(const Suite2Random *rnd, uint8_t ret_priv[X25519_KEY_LEN],
                   uint8_t ret_pub[X25519_KEY_LEN]) {
        int r;

        r = rnd_bytes(rnd, ret_priv, X25519_KEY_LEN);
        if (r < 0)
                return r;
        /* RFC 7748 section 5. Nettle clamps too; storing the clamped form
         * makes the serialized state independent of that. */
        ret_priv[0] &= 248;
        ret_priv[31] &= 127;
        ret_priv[31] |= 64;
        x25519_public(ret_priv, ret_pub);
        return 0;
}

void x25519_public(const uint8_t priv[X25519_KEY_LEN], uint8_t ret_pub[X25519_KEY_LEN]) {
        curve25519_mul_g(ret_pub, priv);
}

bool x25519_public_valid(const uint8_t pub[X25519_KEY_LEN]) {
        /* Little endian: u >= 2^255 - 19 means the top bit is set, or
         * bytes 31..1 are 7f ff .. ff and byte 0 is at least 0xed. */
        if (pub[31] & 0x80)
                return false;
        if (pub[31] != 0x7f)
                return true;
        for (size_t i = 1; i < 31; i++)
                if (pub[i] != 0xff)
                        return true;
        return pub[0] < 0xed;
}

int x25519_shared(const uint8_t priv[X25519_KEY_LEN], const uint8_t pub[X25519_KEY_LEN],
                  uint8_t ret[X25519_KEY_LEN]) {
        static const uint8_t zero[X25519_KEY_LEN];

        if (!x25519_public_valid(pub))
                return -EBADMSG;
        curve25519_mul(ret, priv, pub);
        if (memeq_ct(ret, zero, X25519_KEY_LEN)) {
                secure_wipe(ret, X25519_KEY_LEN);
                return -EBADMSG;
        }
        return 0;
}

/* ---- Prekeys ---- */

int signed_prekey_transcript(const char *user, const SignedPrekey *spk, uint8_t **ret,
                             size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        if (!username_valid(user))
                return -EINVAL;
        buf_put_lp_str(&b, CTX_S2_SPK);
        buf_put_lp_str(&b, user);
        buf_put_u32(&b, spk->id);
        buf_put_lp(&b, spk->pub, X25519_KEY_LEN);
        buf_put_u64(&b, spk->created);
        return buf_steal(&b, ret, ret_len);
}

int signed_prekey_make(const char *user, const RsaKey *identity, uint32_t id, uint64_t created,
                       const Suite2Random *rnd, uint8_t ret_priv[X25519_KEY_LEN],
                       SignedPrekey *ret) {
        _cleanup_(freep) uint8_t *tbs = NULL, *sig = NULL;
        uint8_t priv[X25519_KEY_LEN];
        SignedPrekey spk = { .id = id, .created = created };
        size_t tbs_len, sig_len;
        int r;

        r = x25519_keypair(rnd, priv, spk.pub);
        if (r < 0)
                return r;
        r = signed_prekey_transcript(user, &spk, &tbs, &tbs_len);
        if (r >= 0)
                r = rsa_pss_sign(identity, tbs, tbs_len, &sig, &sig_len);
        if (r >= 0 && (sig_len < SUITE2_RSA_MIN || sig_len > SUITE2_RSA_MAX))
                r = -EINVAL;
        if (r < 0) {
                secure_wipe(priv, sizeof(priv));
                return r;
        }
        memcpy(spk.sig, sig, sig_len);
        spk.sig_len = sig_len;

        memcpy(ret_priv, priv, sizeof(priv));
        secure_wipe(priv, sizeof(priv));
        *ret = spk;
        return 0;
}

int signed_prekey_verify(const char *user, const RsaKey *identity, const SignedPrekey *spk) {
        _cleanup_(freep) uint8_t *tbs = NULL;
        size_t tbs_len;
        int r;

        if (!x25519_public_valid(spk->pub) || spk->sig_len > SUITE2_RSA_MAX)
                return -EBADMSG;
        r = signed_prekey_transcript(user, spk, &tbs, &tbs_len);
        if (r < 0)
                return r == -EINVAL ? -EBADMSG : r;
        return rsa_pss_verify(identity, tbs, tbs_len, spk->sig, spk->sig_len);
}

int one_time_prekey_make(uint32_t id, const Suite2Random *rnd, uint8_t ret_priv[X25519_KEY_LEN],
                         OneTimePrekey *ret) {
        ret->id = id;
        return x25519_keypair(rnd, ret_priv, ret->pub);
}

static void put_spk(Buf *b, const SignedPrekey *spk) {
        buf_put_u32(b, spk->id);
        buf_put(b, spk->pub, X25519_KEY_LEN);
        buf_put_u64(b, spk->created);
        buf_put_lp(b, spk->sig, spk->sig_len);
}

static void rd_spk(Reader *r, SignedPrekey *spk) {
        spk->id = rd_u32(r);
        rd_x25519(r, spk->pub);
        spk->created = rd_u64(r);
        spk->sig_len = rd_lp(r, spk->sig, SUITE2_RSA_MIN, SUITE2_RSA_MAX);
}

static bool spk_sane(const SignedPrekey *spk) {
        return x25519_public_valid(spk->pub) && spk->sig_len >= SUITE2_RSA_MIN &&
               spk->sig_len <= SUITE2_RSA_MAX;
}

int signed_prekey_encode(const SignedPrekey *spk, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        if (!spk_sane(spk))
                return -EINVAL;
        put_spk(&b, spk);
        return buf_steal(&b, ret, ret_len);
}

int signed_prekey_parse(const uint8_t *data, size_t len, SignedPrekey *ret) {
        Reader r = { data, len, false };
        SignedPrekey spk = {};

        rd_spk(&r, &spk);
        if (rd_done(&r) < 0)
                return -EBADMSG;
        *ret = spk;
        return 0;
}

static void put_opk(Buf *b, const OneTimePrekey *opk) {
        buf_put_u32(b, opk->id);
        buf_put(b, opk->pub, X25519_KEY_LEN);
}

static void rd_opk(Reader *r, OneTimePrekey *opk) {
        opk->id = rd_u32(r);
        rd_x25519(r, opk->pub);
}

int one_time_prekey_encode(const OneTimePrekey *opk, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        if (!x25519_public_valid(opk->pub))
                return -EINVAL;
        put_opk(&b, opk);
        return buf_steal(&b, ret, ret_len);
}

int one_time_prekey_parse(const uint8_t *data, size_t len, OneTimePrekey *ret) {
        Reader r = { data, len, false };
        OneTimePrekey opk = {};

        rd_opk(&r, &opk);
        if (rd_done(&r) < 0)
                return -EBADMSG;
        *ret = opk;
        return 0;
}

int prekey_bundle_encode(const PrekeyBundle *b, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf out = BUF_INIT;

        if (!spk_sane(&b->spk) || (b->has_opk && !x25519_public_valid(b->opk.pub)))
                return -EINVAL;
        put_spk(&out, &b->spk);
        put_u8(&out, b->has_opk);
        if (b->has_opk)
                put_opk(&out, &b->opk);
        return buf_steal(&out, ret, ret_len);
}

int prekey_bundle_parse(const uint8_t *data, size_t len, PrekeyBundle *ret) {
        Reader r = { data, len, false };
        PrekeyBundle b = {};

        rd_spk(&r, &b.spk);
        b.has_opk = rd_flag(&r);
        if (b.has_opk)
                rd_opk(&r, &b.opk);
        if (rd_done(&r) < 0)
                return -EBADMSG;
        *ret = b;
        return 0;
}

/* ---- Key derivation ---- */

int suite2_root_key(const char *from, const char *to, const uint8_t ek_pub[X25519_KEY_LEN],
                    const uint8_t spk_pub[X25519_KEY_LEN], const uint8_t *opk_pub,
                    const uint8_t dh1[X25519_KEY_LEN], const uint8_t *dh2,
                    const uint8_t secret[SUITE2_SECRET_LEN], uint8_t ret[SUITE2_KEY_LEN]) {
        _cleanup_(buf_donep) Buf ikm = { .secret = 1 };
        _cleanup_(buf_donep) Buf info = BUF_INIT;

        if (!username_valid(from) || !username_valid(to) || !opk_pub != !dh2)
                return -EINVAL;

        buf_put(&ikm, dh1, X25519_KEY_LEN);
        if (dh2)
                buf_put(&ikm, dh2, X25519_KEY_LEN);
        buf_put(&ikm, secret, SUITE2_SECRET_LEN);

        buf_put_lp_str(&info, CTX_S2_ROOT);
        buf_put_lp_str(&info, from);
        buf_put_lp_str(&info, to);
        buf_put_lp(&info, ek_pub, X25519_KEY_LEN);
        buf_put_lp(&info, spk_pub, X25519_KEY_LEN);
        buf_put_lp(&info, opk_pub, opk_pub ? X25519_KEY_LEN : 0);
        if (ikm.error < 0 || info.error < 0)
                return -ENOMEM;

        return hkdf_sha256(zero_salt, sizeof(zero_salt), ikm.data, ikm.len, info.data, info.len,
                           ret, SUITE2_KEY_LEN);
}

void suite2_kdf_rk(const uint8_t rk[SUITE2_KEY_LEN], const uint8_t dh[X25519_KEY_LEN],
                   uint8_t ret_rk[SUITE2_KEY_LEN], uint8_t ret_ck[SUITE2_KEY_LEN]) {
        uint8_t okm[2 * SUITE2_KEY_LEN];

        /* Cannot fail: the output is far below 255 blocks. */
        (void) hkdf_sha256(rk, SUITE2_KEY_LEN, dh, X25519_KEY_LEN, CTX_S2_RATCHET,
                           strlen(CTX_S2_RATCHET), okm, sizeof(okm));
        memcpy(ret_rk, okm, SUITE2_KEY_LEN);
        memcpy(ret_ck, okm + SUITE2_KEY_LEN, SUITE2_KEY_LEN);
        secure_wipe(okm, sizeof(okm));
}

void suite2_kdf_ck(const uint8_t ck[SUITE2_KEY_LEN], uint8_t ret_ck[SUITE2_KEY_LEN],
                   uint8_t ret_mk[SUITE2_KEY_LEN]) {
        static const uint8_t one = 0x01, two = 0x02;
        uint8_t mk[SUITE2_KEY_LEN], next[SUITE2_KEY_LEN];

        /* Both from the old key before either output is written: ret_ck may
         * be ck itself. */
        hmac_sha256(ck, SUITE2_KEY_LEN, &one, 1, mk);
        hmac_sha256(ck, SUITE2_KEY_LEN, &two, 1, next);
        memcpy(ret_mk, mk, SUITE2_KEY_LEN);
        memcpy(ret_ck, next, SUITE2_KEY_LEN);
        secure_wipe(mk, sizeof(mk));
        secure_wipe(next, sizeof(next));
}

void suite2_message_keys(const uint8_t mk[SUITE2_KEY_LEN], uint8_t ret_enc[TDES_KEY_LEN],
                         uint8_t ret_mac[SUITE2_MAC_LEN], uint8_t ret_iv[ENVELOPE_IV_LEN]) {
        uint8_t okm[TDES_KEY_LEN + SUITE2_MAC_LEN + ENVELOPE_IV_LEN];

        (void) hkdf_sha256(zero_salt, sizeof(zero_salt), mk, SUITE2_KEY_LEN, CTX_S2_MESSAGE_KEYS,
                           strlen(CTX_S2_MESSAGE_KEYS), okm, sizeof(okm));
        memcpy(ret_enc, okm, TDES_KEY_LEN);
        memcpy(ret_mac, okm + TDES_KEY_LEN, SUITE2_MAC_LEN);
        memcpy(ret_iv, okm + TDES_KEY_LEN + SUITE2_MAC_LEN, ENVELOPE_IV_LEN);
        secure_wipe(okm, sizeof(okm));
}

/* ---- Header ---- */

int ratchet_header_encode(const RatchetHeader *h, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        if (h->has_start &&
            (h->oaep_len < SUITE2_RSA_MIN || h->oaep_len > SUITE2_RSA_MAX ||
             (!h->has_opk && h->opk_id != 0)))
                return -EINVAL;

        put_u8(&b, h->has_start);
        buf_put(&b, h->dh, X25519_KEY_LEN);
        buf_put_u32(&b, h->pn);
        buf_put_u32(&b, h->n);
        if (h->has_start) {
                buf_put(&b, h->ek, X25519_KEY_LEN);
                buf_put_u32(&b, h->spk_id);
                put_u8(&b, h->has_opk);
                buf_put_u32(&b, h->opk_id);
                buf_put_lp(&b, h->oaep, h->oaep_len);
        }
        return buf_steal(&b, ret, ret_len);
}

int ratchet_header_parse(const uint8_t *data, size_t len, RatchetHeader *ret) {
        Reader r = { data, len, false };
        RatchetHeader h = {};

        h.has_start = rd_flag(&r);
        rd_x25519(&r, h.dh);
        h.pn = rd_u32(&r);
        h.n = rd_u32(&r);
        if (h.has_start) {
                rd_x25519(&r, h.ek);
                h.spk_id = rd_u32(&r);
                h.has_opk = rd_flag(&r);
                h.opk_id = rd_u32(&r);
                if (!h.has_opk && h.opk_id != 0)
                        r.bad = true;
                h.oaep_len = rd_lp(&r, h.oaep, SUITE2_RSA_MIN, SUITE2_RSA_MAX);
        }
        if (rd_done(&r) < 0)
                return -EBADMSG;
        *ret = h;
        return 0;
}

/* ---- Sessions ---- */

Ratchet *ratchet_free(Ratchet *r) {
        if (!r)
                return NULL;
        secure_free(r->skipped, SUITE2_MAX_SKIPPED * sizeof(SkippedKey));
        secure_free(r, sizeof(*r));
        return NULL;
}

static int ratchet_new(const char *me, const char *peer, Ratchet **ret) {
        Ratchet *r;

        if (!username_valid(me) || !username_valid(peer))
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        /* Allocated once at its bound so that it never moves: a realloc
         * would leave old copies of message keys in freed memory. */
        r->skipped = calloc(SUITE2_MAX_SKIPPED, sizeof(SkippedKey));
        if (!r->skipped) {
                free(r);
                return -ENOMEM;
        }
        strcpy(r->me, me);
        strcpy(r->peer, peer);
        *ret = r;
        return 0;
}

static int ratchet_dup(const Ratchet *r, Ratchet **ret) {
        Ratchet *c;
        SkippedKey *skipped;
        int k;

        k = ratchet_new(r->me, r->peer, &c);
        if (k < 0)
                return k;
        skipped = c->skipped;
        *c = *r;
        c->skipped = skipped;
        memcpy(c->skipped, r->skipped, r->n_skipped * sizeof(SkippedKey));
        *ret = c;
        return 0;
}

/* Replace *r's contents by c's and free the old ones. */
static void ratchet_commit(Ratchet *r, Ratchet *c) {
        Ratchet old = *r;

        *r = *c;
        *c = old;
        ratchet_free(c);
}

int ratchet_init_sender(const char *me, const char *peer, const uint8_t sk[SUITE2_KEY_LEN],
                        const uint8_t spk_pub[X25519_KEY_LEN], const RatchetHeader *start,
                        const Suite2Random *rnd, Ratchet **ret) {
        _cleanup_(ratchet_freep) Ratchet *r = NULL;
        uint8_t dh[X25519_KEY_LEN];
        int k;

        /* What every message will carry must encode, or no seal would. */
        if (!start->has_start || start->oaep_len < SUITE2_RSA_MIN ||
            start->oaep_len > SUITE2_RSA_MAX || (!start->has_opk && start->opk_id != 0) ||
            !x25519_public_valid(start->ek))
                return -EINVAL;
        k = ratchet_new(me, peer, &r);
        if (k < 0)
                return k;
        k = x25519_keypair(rnd, r->dhs_priv, r->dhs_pub);
        if (k < 0)
                return k;
        k = x25519_shared(r->dhs_priv, spk_pub, dh);
        if (k < 0)
                return k;
        suite2_kdf_rk(sk, dh, r->rk, r->cks);
        secure_wipe(dh, sizeof(dh));
        memcpy(r->dhr, spk_pub, X25519_KEY_LEN);
        r->has_dhr = r->has_cks = true;
        memcpy(r->ek, start->ek, X25519_KEY_LEN);
        r->start = *start;
        r->has_start = true;
        *ret = TAKE_PTR(r);
        return 0;
}

int ratchet_init_receiver(const char *me, const char *peer, const uint8_t sk[SUITE2_KEY_LEN],
                          const uint8_t spk_priv[X25519_KEY_LEN],
                          const uint8_t ek_pub[X25519_KEY_LEN], Ratchet **ret) {
        Ratchet *r;
        int k;

        if (!x25519_public_valid(ek_pub))
                return -EINVAL;
        k = ratchet_new(me, peer, &r);
        if (k < 0)
                return k;
        memcpy(r->dhs_priv, spk_priv, X25519_KEY_LEN);
        x25519_public(spk_priv, r->dhs_pub);
        memcpy(r->rk, sk, SUITE2_KEY_LEN);
        memcpy(r->ek, ek_pub, X25519_KEY_LEN);
        *ret = r;
        return 0;
}

int ratchet_start(const char *me, const char *peer, const RsaKey *peer_identity,
                  const PrekeyBundle *bundle, const Suite2Random *rnd, Ratchet **ret) {
        _cleanup_(freep) uint8_t *oaep = NULL;
        uint8_t ek_priv[X25519_KEY_LEN], secret[SUITE2_SECRET_LEN], sk[SUITE2_KEY_LEN];
        uint8_t dh1[X25519_KEY_LEN], dh2[X25519_KEY_LEN];
        RatchetHeader start = { .has_start = true };
        size_t oaep_len;
        int r;

        r = signed_prekey_verify(peer, peer_identity, &bundle->spk);
        if (r < 0)
                return r;
        if (bundle->has_opk && !x25519_public_valid(bundle->opk.pub))
                return -EBADMSG;

        r = x25519_keypair(rnd, ek_priv, start.ek);
        if (r >= 0)
                r = rnd_bytes(rnd, secret, sizeof(secret));
        if (r >= 0)
                r = x25519_shared(ek_priv, bundle->spk.pub, dh1);
        if (r >= 0 && bundle->has_opk)
                r = x25519_shared(ek_priv, bundle->opk.pub, dh2);
        if (r >= 0)
                r = suite2_root_key(me, peer, start.ek, bundle->spk.pub,
                                    bundle->has_opk ? bundle->opk.pub : NULL, dh1,
                                    bundle->has_opk ? dh2 : NULL, secret, sk);
        if (r >= 0)
                r = rsa_oaep_encrypt(peer_identity, CTX_S2_SESSION_KEY,
                                     strlen(CTX_S2_SESSION_KEY), secret, sizeof(secret), &oaep,
                                     &oaep_len);
        if (r >= 0 && (oaep_len < SUITE2_RSA_MIN || oaep_len > SUITE2_RSA_MAX))
                r = -EINVAL;
        if (r >= 0) {
                memcpy(start.oaep, oaep, oaep_len);
                start.oaep_len = oaep_len;
                start.spk_id = bundle->spk.id;
                start.has_opk = bundle->has_opk;
                start.opk_id = bundle->has_opk ? bundle->opk.id : 0;
                r = ratchet_init_sender(me, peer, sk, bundle->spk.pub, &start, rnd, ret);
        }

        /* The ephemeral key, the secret and what came of them are never
         * needed again: this is what makes the start forward secret. */
        secure_wipe(ek_priv, sizeof(ek_priv));
        secure_wipe(secret, sizeof(secret));
        secure_wipe(sk, sizeof(sk));
        secure_wipe(dh1, sizeof(dh1));
        secure_wipe(dh2, sizeof(dh2));
        return r;
}

int ratchet_accept(const char *me, const RsaKey *my_identity, const char *peer,
                   const RatchetHeader *h, const uint8_t spk_priv[X25519_KEY_LEN],
                   const uint8_t *opk_priv, Ratchet **ret) {
        uint8_t *secret = NULL;
        uint8_t spk_pub[X25519_KEY_LEN], opk_pub[X25519_KEY_LEN];
        uint8_t dh1[X25519_KEY_LEN], dh2[X25519_KEY_LEN], sk[SUITE2_KEY_LEN];
        size_t secret_len = 0;
        int r;

        if (!h->has_start || !h->has_opk != !opk_priv)
                return -EINVAL;

        r = rsa_oaep_decrypt(my_identity, CTX_S2_SESSION_KEY, strlen(CTX_S2_SESSION_KEY),
                             h->oaep, h->oaep_len, &secret, &secret_len);
        if (r < 0)
                return r;
        if (secret_len != SUITE2_SECRET_LEN) {
                secret = secure_free(secret, secret_len);
                return -EBADMSG;
        }

        x25519_public(spk_priv, spk_pub);
        if (opk_priv)
                x25519_public(opk_priv, opk_pub);
        r = x25519_shared(spk_priv, h->ek, dh1);
        if (r >= 0 && opk_priv)
                r = x25519_shared(opk_priv, h->ek, dh2);
        if (r >= 0)
                r = suite2_root_key(peer, me, h->ek, spk_pub, opk_priv ? opk_pub : NULL, dh1,
                                    opk_priv ? dh2 : NULL, secret, sk);
        if (r >= 0)
                r = ratchet_init_receiver(me, peer, sk, spk_priv, h->ek, ret);

        secret = secure_free(secret, secret_len);
        secure_wipe(sk, sizeof(sk));
        secure_wipe(dh1, sizeof(dh1));
        secure_wipe(dh2, sizeof(dh2));
        return r;
}

bool ratchet_is_session_of(const Ratchet *r, const RatchetHeader *h) {
        return h->has_start && memcmp(r->ek, h->ek, X25519_KEY_LEN) == 0;
}

const char *ratchet_peer(const Ratchet *r) {
        return r->peer;
}

/* ---- State serialization ---- */

int ratchet_serialize(const Ratchet *r, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = { .secret = 1 };
        uint8_t flags = (uint8_t) (r->has_dhr | r->has_cks << 1 | r->has_ckr << 2 |
                                   r->has_start << 3);

        buf_put_lp_str(&b, CTX_S2_STATE);
        buf_put_u32(&b, STATE_VERSION);
        buf_put_lp_str(&b, r->me);
        buf_put_lp_str(&b, r->peer);
        put_u8(&b, flags);
        buf_put(&b, r->ek, X25519_KEY_LEN);
        buf_put(&b, r->dhs_priv, X25519_KEY_LEN);
        buf_put(&b, r->dhr, X25519_KEY_LEN);
        buf_put(&b, r->rk, SUITE2_KEY_LEN);
        buf_put(&b, r->cks, SUITE2_KEY_LEN);
        buf_put(&b, r->ckr, SUITE2_KEY_LEN);
        buf_put_u32(&b, r->ns);
        buf_put_u32(&b, r->nr);
        buf_put_u32(&b, r->pn);
        if (r->has_start) {
                _cleanup_(freep) uint8_t *h = NULL;
                size_t h_len;
                int k = ratchet_header_encode(&r->start, &h, &h_len);

                if (k < 0)
                        return k;
                buf_put_lp(&b, h, h_len);
        }
        buf_put_u32(&b, (uint32_t) r->n_prev);
        for (size_t i = 0; i < r->n_prev; i++)
                buf_put(&b, r->prev_dhr[i], X25519_KEY_LEN);
        buf_put_u32(&b, (uint32_t) r->n_skipped);
        for (size_t i = 0; i < r->n_skipped; i++) {
                buf_put(&b, r->skipped[i].dh, X25519_KEY_LEN);
                buf_put_u32(&b, r->skipped[i].n);
                buf_put(&b, r->skipped[i].mk, SUITE2_KEY_LEN);
                buf_put_u64(&b, r->skipped[i].stored);
        }
        return buf_steal(&b, ret, ret_len);
}

static bool is_zero(const uint8_t *p, size_t n) {
        uint8_t acc = 0;

        for (size_t i = 0; i < n; i++)
                acc |= p[i];
        return acc == 0;
}

static void rd_name(Reader *r, char out[USERNAME_MAX + 1]) {
        size_t n = rd_lp(r, out, 1, USERNAME_MAX);

        out[n] = 0;
        /* A NUL inside would make another name of the same bytes. */
        if (!r->bad && (strlen(out) != n || !username_valid(out)))
                r->bad = true;
}

int ratchet_deserialize(const uint8_t *data, size_t len, Ratchet **ret) {
        _cleanup_(ratchet_freep) Ratchet *s = NULL;
        char ctx[sizeof(CTX_S2_STATE)], me[USERNAME_MAX + 1], peer[USERNAME_MAX + 1];
        Reader r = { data, len, false };
        uint8_t flags;
        size_t n;
        int k;

        n = rd_lp(&r, ctx, strlen(CTX_S2_STATE), strlen(CTX_S2_STATE));
        if (r.bad || memcmp(ctx, CTX_S2_STATE, n) != 0 || rd_u32(&r) != STATE_VERSION)
                return -EBADMSG;
        rd_name(&r, me);
        rd_name(&r, peer);
        if (r.bad)
                return -EBADMSG;
        k = ratchet_new(me, peer, &s);
        if (k < 0)
                return k;

        flags = rd_u8(&r);
        if (flags > 15)
                r.bad = true;
        s->has_dhr = flags & 1;
        s->has_cks = flags & 2;
        s->has_ckr = flags & 4;
        s->has_start = flags & 8;
        rd_bytes(&r, s->ek, X25519_KEY_LEN);
        rd_bytes(&r, s->dhs_priv, X25519_KEY_LEN);
        rd_bytes(&r, s->dhr, X25519_KEY_LEN);
        rd_bytes(&r, s->rk, SUITE2_KEY_LEN);
        rd_bytes(&r, s->cks, SUITE2_KEY_LEN);
        rd_bytes(&r, s->ckr, SUITE2_KEY_LEN);
        s->ns = rd_u32(&r);
        s->nr = rd_u32(&r);
        s->pn = rd_u32(&r);
        if (r.bad)
                return -EBADMSG;
        /* One encoding per state: what is absent is zero. */
        if ((!s->has_dhr && !is_zero(s->dhr, X25519_KEY_LEN)) ||
            (s->has_dhr && !x25519_public_valid(s->dhr)) ||
            (!s->has_cks && !is_zero(s->cks, SUITE2_KEY_LEN)) ||
            (!s->has_ckr && !is_zero(s->ckr, SUITE2_KEY_LEN)) ||
            !x25519_public_valid(s->ek))
                return -EBADMSG;
        x25519_public(s->dhs_priv, s->dhs_pub);

        if (s->has_start) {
                uint8_t h[HEADER_FIXED_LEN + START_FIXED_LEN + SUITE2_RSA_MAX];
                size_t h_len = rd_lp(&r, h, 1, sizeof(h));

                if (r.bad || ratchet_header_parse(h, h_len, &s->start) < 0 ||
                    !ratchet_is_session_of(s, &s->start))
                        return -EBADMSG;
        }
        s->n_prev = rd_u32(&r);
        if (s->n_prev > SUITE2_PREV_CHAINS)
                return -EBADMSG;
        for (size_t i = 0; i < s->n_prev; i++)
                rd_x25519(&r, s->prev_dhr[i]);
        n = rd_u32(&r);
        if (n > SUITE2_MAX_SKIPPED)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                rd_x25519(&r, s->skipped[i].dh);
                s->skipped[i].n = rd_u32(&r);
                rd_bytes(&r, s->skipped[i].mk, SUITE2_KEY_LEN);
                s->skipped[i].stored = rd_u64(&r);
        }
        s->n_skipped = n;
        if (rd_done(&r) < 0)
                return -EBADMSG;
        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- Messages ---- */

static const char *const suite2_error_names[_SUITE2_ERROR_MAX] = {
        [SUITE2_OK] = "ok",
        [SUITE2_MALFORMED] = "malformed",
        [SUITE2_WRONG_RECIPIENT] = "wrong_recipient",
        [SUITE2_WRONG_SESSION] = "wrong_session",
        [SUITE2_BAD_SIGNATURE] = "bad_signature",
        [SUITE2_BAD_MAC] = "bad_mac",
        [SUITE2_BAD_PADDING] = "bad_padding",
        [SUITE2_BAD_UTF8] = "bad_utf8",
        [SUITE2_REPLAY] = "replay",
        [SUITE2_TOO_MANY_SKIPPED] = "too_many_skipped",
};

const char *suite2_error_to_string(Suite2Error e) {
        if ((unsigned) e >= _SUITE2_ERROR_MAX)
                return NULL;
        return suite2_error_names[e];
}

Suite2Message *suite2_message_free(Suite2Message *m) {
        if (!m)
                return NULL;
        free(m->hdr);
        free(m->ct);
        free(m->sig);
        free(m);
        return NULL;
}

int suite2_transcript(const Suite2Message *m, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        buf_put_lp_str(&b, CTX_S2_MESSAGE);
        buf_put_lp_str(&b, SUITE2_NAME);
        buf_put_lp(&b, m->id, MSG_ID_LEN);
        buf_put_lp_str(&b, m->from);
        buf_put_lp_str(&b, m->to);
        buf_put_u64(&b, m->ts);
        buf_put_lp(&b, m->hdr, m->hdr_len);
        buf_put_lp(&b, m->ct, m->ct_len);
        return buf_steal(&b, ret, ret_len);
}

static int signed_input(const Suite2Message *m, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;
        _cleanup_(freep) uint8_t *h = NULL;
        size_t h_len;
        int r;

        r = suite2_transcript(m, &h, &h_len);
        if (r < 0)
                return r;
        buf_put(&b, h, h_len);
        buf_put_lp(&b, m->mac, SUITE2_MAC_LEN);
        return buf_steal(&b, ret, ret_len);
}

int suite2_seal(Ratchet *r, const RsaKey *sender, uint64_t ts, const uint8_t *id,
                const void *text, size_t len, const Suite2Random *rnd, Suite2Message **ret) {
        _cleanup_(suite2_message_freep) Suite2Message *m = NULL;
        _cleanup_(freep) uint8_t *h = NULL, *tbs = NULL;
        uint8_t mk[SUITE2_KEY_LEN], ck[SUITE2_KEY_LEN];
        uint8_t k_enc[TDES_KEY_LEN], k_mac[SUITE2_MAC_LEN], iv[ENVELOPE_IV_LEN];
        RatchetHeader hdr = {};
        size_t h_len, tbs_len;
        int k;

        if (!utf8_valid(text, len))
                return -EINVAL;
        if (!r->has_cks)
                return -EPROTO;
        if (r->ns == UINT32_MAX)
                return -EOVERFLOW;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        strcpy(m->from, r->me);
        strcpy(m->to, r->peer);
        m->ts = ts;
        /* A test's own randomness makes the whole id, so that its
         * envelopes come out the same at every run. */
        if (id)
                memcpy(m->id, id, MSG_ID_LEN);
        else {
                k = rnd && rnd->fn ? rnd_bytes(rnd, m->id, MSG_ID_LEN) : message_id_new(m->id);
                if (k < 0)
                        return k;
        }

        if (r->has_start)
                hdr = r->start;
        memcpy(hdr.dh, r->dhs_pub, X25519_KEY_LEN);
        hdr.pn = r->pn;
        hdr.n = r->ns;
        k = ratchet_header_encode(&hdr, &m->hdr, &m->hdr_len);
        if (k < 0)
                return k;

        suite2_kdf_ck(r->cks, ck, mk);
        suite2_message_keys(mk, k_enc, k_mac, iv);
        secure_wipe(mk, sizeof(mk));

        k = tdes_cbc_encrypt(k_enc, iv, text, len, &m->ct, &m->ct_len);
        if (k >= 0)
                k = suite2_transcript(m, &h, &h_len);
        if (k >= 0) {
                hmac_sha256(k_mac, sizeof(k_mac), h, h_len, m->mac);
                k = signed_input(m, &tbs, &tbs_len);
        }
        if (k >= 0)
                k = rsa_pss_sign(sender, tbs, tbs_len, &m->sig, &m->sig_len);
        secure_wipe(k_enc, sizeof(k_enc));
        secure_wipe(k_mac, sizeof(k_mac));
        secure_wipe(iv, sizeof(iv));
        if (k < 0) {
                secure_wipe(ck, sizeof(ck));
                return k;
        }

        /* Only now: a failed seal leaves the chain where it was. */
        memcpy(r->cks, ck, sizeof(ck));
        secure_wipe(ck, sizeof(ck));
        r->ns++;
        *ret = TAKE_PTR(m);
        return 0;
}

int suite2_verify(const Suite2Message *m, const RsaKey *sender_key) {
        _cleanup_(freep) uint8_t *tbs = NULL;
        size_t tbs_len;
        int r;

        r = signed_input(m, &tbs, &tbs_len);
        if (r < 0)
                return r;
        if (m->sig_len != rsa_key_size(sender_key))
                return -EBADMSG;
        return rsa_pss_verify(sender_key, tbs, tbs_len, m->sig, m->sig_len);
}

static bool dh_eq(const uint8_t a[X25519_KEY_LEN], const uint8_t b[X25519_KEY_LEN]) {
        return memcmp(a, b, X25519_KEY_LEN) == 0;
}

static void skipped_drop(Ratchet *s, size_t i) {
        secure_wipe(&s->skipped[i], sizeof(SkippedKey));
        memmove(&s->skipped[i], &s->skipped[i + 1], (s->n_skipped - i - 1) * sizeof(SkippedKey));
        s->n_skipped--;
        secure_wipe(&s->skipped[s->n_skipped], sizeof(SkippedKey));
}

static void skipped_expire(Ratchet *s, uint64_t now) {
        /* Oldest first: stop at the first young one. A clock that went
         * back only keeps some keys a little longer. */
        while (s->n_skipped > 0 && now >= s->skipped[0].stored &&
               now - s->skipped[0].stored >= SUITE2_SKIPPED_MAX_AGE)
                skipped_drop(s, 0);
}

/* Keep the keys of chain s->ckr up to (not including) `until`. */
static int skip_keys(Ratchet *s, uint32_t until, uint64_t now) {
        if (!s->has_ckr || until <= s->nr)
                return 0;
        if (until - s->nr > SUITE2_MAX_SKIP)
                return -E2BIG;
        while (s->nr < until) {
                SkippedKey *sk;

                /* Full: the oldest key goes, as if it had aged out. */
                if (s->n_skipped == SUITE2_MAX_SKIPPED)
                        skipped_drop(s, 0);
                sk = &s->skipped[s->n_skipped++];
                memcpy(sk->dh, s->dhr, X25519_KEY_LEN);
                sk->n = s->nr;
                sk->stored = now;
                suite2_kdf_ck(s->ckr, s->ckr, sk->mk);
                s->nr++;
        }
        return 0;
}

static int dh_ratchet(Ratchet *s, const RatchetHeader *h, const Suite2Random *rnd) {
        uint8_t dh[X25519_KEY_LEN];
        int r;

        if (s->has_dhr) {
                if (s->n_prev == SUITE2_PREV_CHAINS) {
                        memmove(s->prev_dhr[0], s->prev_dhr[1],
                                (SUITE2_PREV_CHAINS - 1) * X25519_KEY_LEN);
                        s->n_prev--;
                }
                memcpy(s->prev_dhr[s->n_prev++], s->dhr, X25519_KEY_LEN);
        }
        s->pn = s->ns;
        s->ns = s->nr = 0;
        memcpy(s->dhr, h->dh, X25519_KEY_LEN);
        s->has_dhr = true;

        r = x25519_shared(s->dhs_priv, s->dhr, dh);
        if (r < 0)
                return r;
        suite2_kdf_rk(s->rk, dh, s->rk, s->ckr);
        s->has_ckr = true;

        r = x25519_keypair(rnd, s->dhs_priv, s->dhs_pub);
        if (r >= 0)
                r = x25519_shared(s->dhs_priv, s->dhr, dh);
        if (r >= 0) {
                suite2_kdf_rk(s->rk, dh, s->rk, s->cks);
                s->has_cks = true;
        }
        secure_wipe(dh, sizeof(dh));
        return r;
}

/* The message key for h, advancing s (a scratch copy). */
static int ratchet_message_key(Ratchet *s, const RatchetHeader *h, uint64_t now,
                               const Suite2Random *rnd, uint8_t ret_mk[SUITE2_KEY_LEN],
                               Suite2Error *ret_error) {
        int r;

        skipped_expire(s, now);
        for (size_t i = 0; i < s->n_skipped; i++)
                if (s->skipped[i].n == h->n && dh_eq(s->skipped[i].dh, h->dh)) {
                        memcpy(ret_mk, s->skipped[i].mk, SUITE2_KEY_LEN);
                        skipped_drop(s, i);
                        return 0;
                }

        if (!s->has_dhr || !dh_eq(h->dh, s->dhr)) {
                for (size_t i = 0; i < s->n_prev; i++)
                        if (dh_eq(h->dh, s->prev_dhr[i])) {
                                *ret_error = SUITE2_REPLAY;
                                return -EBADMSG;
                        }
                r = skip_keys(s, h->pn, now);
                if (r >= 0)
                        r = dh_ratchet(s, h, rnd);
        } else if (h->n < s->nr) {
                *ret_error = SUITE2_REPLAY;
                return -EBADMSG;
        } else
                r = 0;

        if (r >= 0)
                r = skip_keys(s, h->n, now);
        if (r == -E2BIG) {
                *ret_error = SUITE2_TOO_MANY_SKIPPED;
                return -EBADMSG;
        }
        if (r == -EBADMSG) {
                *ret_error = SUITE2_MALFORMED;  /* a zero DH output */
                return -EBADMSG;
        }
        if (r < 0)
                return r;

        suite2_kdf_ck(s->ckr, s->ckr, ret_mk);
        s->nr++;
        return 0;
}

static int refuse(Suite2Error *ret_error, Suite2Error e) {
        if (ret_error)
                *ret_error = e;
        return -EBADMSG;
}

int suite2_open(Ratchet *r, const Suite2Message *m, const RsaKey *sender_key, uint64_t now,
                const Suite2Random *rnd, char **ret_text, size_t *ret_len,
                Suite2Error *ret_error) {
        _cleanup_(ratchet_freep) Ratchet *s = NULL;
        _cleanup_(freep) uint8_t *h = NULL;
        uint8_t *text = NULL;
        uint8_t mk[SUITE2_KEY_LEN], mac[SUITE2_MAC_LEN];
        uint8_t k_enc[TDES_KEY_LEN], k_mac[SUITE2_MAC_LEN], iv[ENVELOPE_IV_LEN];
        Suite2Error error = SUITE2_OK;
        RatchetHeader hdr;
        size_t h_len, text_len = 0;
        char *out;
        int k;

        if (strcmp(m->to, r->me) != 0 || strcmp(m->from, r->peer) != 0)
                return refuse(ret_error, SUITE2_WRONG_RECIPIENT);
        if (m->ct_len == 0 || m->ct_len % TDES_BLOCK_LEN != 0)
                return refuse(ret_error, SUITE2_MALFORMED);
        k = suite2_verify(m, sender_key);
        if (k == -EBADMSG)
                return refuse(ret_error, SUITE2_BAD_SIGNATURE);
        if (k < 0)
                return k;
        /* Nothing below looks at bytes the sender did not sign. */
        if (ratchet_header_parse(m->hdr, m->hdr_len, &hdr) < 0)
                return refuse(ret_error, SUITE2_MALFORMED);
        if (hdr.has_start && !ratchet_is_session_of(r, &hdr))
                return refuse(ret_error, SUITE2_WRONG_SESSION);

        k = ratchet_dup(r, &s);
        if (k < 0)
                return k;
        k = ratchet_message_key(s, &hdr, now, rnd, mk, &error);
        if (k == -EBADMSG)
                return refuse(ret_error, error);
        if (k < 0)
                return k;

        suite2_message_keys(mk, k_enc, k_mac, iv);
        secure_wipe(mk, sizeof(mk));
        k = suite2_transcript(m, &h, &h_len);
        if (k >= 0) {
                hmac_sha256(k_mac, sizeof(k_mac), h, h_len, mac);
                if (!memeq_ct(mac, m->mac, sizeof(mac)))
                        error = SUITE2_BAD_MAC;
                else {
                        k = tdes_cbc_decrypt(k_enc, iv, m->ct, m->ct_len, &text, &text_len);
                        if (k == -EBADMSG) {
                                error = SUITE2_BAD_PADDING;
                                k = 0;
                        } else if (k >= 0 && !utf8_valid(text, text_len))
                                error = SUITE2_BAD_UTF8;
                }
        }
        secure_wipe(k_enc, sizeof(k_enc));
        secure_wipe(k_mac, sizeof(k_mac));
        secure_wipe(iv, sizeof(iv));
        if (k < 0)
                return k;
        if (error != SUITE2_OK) {
                secure_free(text, text_len);
                return refuse(ret_error, error);
        }

        out = malloc(text_len + 1);
        if (!out) {
                secure_free(text, text_len);
                return -ENOMEM;
        }
        memcpy(out, text, text_len);
        out[text_len] = 0;
        secure_free(text, text_len);

        /* A message from the peer: it has our session, stop repeating the start. */
        s->has_start = false;
        memset(&s->start, 0, sizeof(s->start));
        ratchet_commit(r, TAKE_PTR(s));
        *ret_text = out;
        *ret_len = text_len;
        if (ret_error)
                *ret_error = SUITE2_OK;
        return 0;
}
