/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "crypto.h"
#include "envelope.h"
#include "json-util.h"
#include "macro.h"
#include "suite2.h"

/* Sizes a well-formed envelope may have. ek and sig are one RSA block of a
 * 2048..4096-bit key. */
#define RSA_BLOCK_MIN (RSA_MIN_BITS / 8)
#define RSA_BLOCK_MAX (RSA_MAX_BITS / 8)

/* ts travels as a JSON integer; keep it within what every JSON
 * implementation represents exactly (2^53 - 1). */
#define ENVELOPE_TS_MAX ((UINT64_C(1) << 53) - 1)

static const char *const envelope_error_table[_ENVELOPE_ERROR_MAX] = {
        [ENVELOPE_OK] = "ok",
        [ENVELOPE_MALFORMED] = "malformed",
        [ENVELOPE_BAD_VERSION] = "bad_version",
        [ENVELOPE_BAD_SUITE] = "bad_suite",
        [ENVELOPE_WRONG_RECIPIENT] = "wrong_recipient",
        [ENVELOPE_UNKNOWN_SENDER] = "unknown_sender",
        [ENVELOPE_BAD_SIGNATURE] = "bad_signature",
        [ENVELOPE_FROM_FUTURE] = "from_future",
        [ENVELOPE_EXPIRED] = "expired",
        [ENVELOPE_REPLAY] = "replay",
        [ENVELOPE_DUPLICATE] = "duplicate",
        [ENVELOPE_BAD_KEY] = "bad_key",
        [ENVELOPE_BAD_MAC] = "bad_mac",
        [ENVELOPE_BAD_PADDING] = "bad_padding",
        [ENVELOPE_BAD_UTF8] = "bad_utf8",
        [ENVELOPE_TOO_LARGE] = "too_large",
};

const char *envelope_error_to_string(EnvelopeError e) {
        if ((int) e < 0 || e >= _ENVELOPE_ERROR_MAX)
                return NULL;
        return envelope_error_table[e];
}

Envelope *envelope_free(Envelope *e) {
        if (!e)
                return NULL;
        free(e->ek);
        free(e->hdr);
        free(e->ct);
        free(e->sig);
        free(e);
        return NULL;
}

/* Everything of step 1 of opening except "to is me", on the decoded
 * structure: an Envelope built in memory gets the same checks as one
 * parsed from JSON. */
bool envelope_is_suite2(const Envelope *e) {
        return strcmp(e->suite, SUITE2_NAME) == 0;
}

static EnvelopeError envelope_check(const Envelope *e) {
        if (e->v != PROTOCOL_VERSION)
                return ENVELOPE_BAD_VERSION;
        if (strcmp(e->suite, PROTOCOL_SUITE) != 0 && !envelope_is_suite2(e))
                return ENVELOPE_BAD_SUITE;
        if (!username_valid(e->from) || !username_valid(e->to))
                return ENVELOPE_MALFORMED;
        if (e->ts > ENVELOPE_TS_MAX)
                return ENVELOPE_MALFORMED;
        if (envelope_is_suite2(e)
            ? !e->hdr || e->hdr_len < ENVELOPE2_HDR_MIN || e->hdr_len > ENVELOPE2_HDR_MAX
            : !e->ek || e->ek_len < RSA_BLOCK_MIN || e->ek_len > RSA_BLOCK_MAX)
                return ENVELOPE_MALFORMED;
        if (!e->sig || e->sig_len < RSA_BLOCK_MIN || e->sig_len > RSA_BLOCK_MAX)
                return ENVELOPE_MALFORMED;
        if (!e->ct || e->ct_len == 0 || e->ct_len % TDES_BLOCK_LEN != 0)
                return ENVELOPE_MALFORMED;
        return ENVELOPE_OK;
}

Suite2Message envelope_suite2_view(const Envelope *e) {
        Suite2Message m = {
                .ts = e->ts,
                .hdr = e->hdr, .hdr_len = e->hdr_len,
                .ct = e->ct, .ct_len = e->ct_len,
                .sig = e->sig, .sig_len = e->sig_len,
        };

        memcpy(m.id, e->id, sizeof(m.id));
        memcpy(m.from, e->from, sizeof(m.from));
        memcpy(m.to, e->to, sizeof(m.to));
        memcpy(m.mac, e->mac, sizeof(m.mac));
        return m;
}

/* Suite 2's H2 is suite2.c's to define. */
static int envelope2_mac_input(const Envelope *e, uint8_t **ret, size_t *ret_len) {
        Suite2Message m = envelope_suite2_view(e);

        return suite2_transcript(&m, ret, ret_len);
}

int envelope_mac_input(const Envelope *e, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        if (!e || !ret || !ret_len)
                return -EINVAL;
        if (envelope_is_suite2(e))
                return envelope2_mac_input(e, ret, ret_len);

        buf_put_lp_str(&b, CTX_ENVELOPE);
        buf_put_lp_str(&b, e->suite);
        buf_put_lp(&b, e->id, sizeof(e->id));
        buf_put_lp_str(&b, e->from);
        buf_put_lp_str(&b, e->to);
        buf_put_u64(&b, e->ts);
        buf_put_lp(&b, e->ek, e->ek_len);
        buf_put_lp(&b, e->iv, sizeof(e->iv));
        buf_put_lp(&b, e->ct, e->ct_len);
        return buf_steal(&b, ret, ret_len);
}

/* What the sender signs: H || lp(mac). */
static int envelope_signed_input(const uint8_t *h, size_t h_len, const uint8_t mac[ENVELOPE_MAC_LEN],
                                 uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        buf_put(&b, h, h_len);
        buf_put_lp(&b, mac, ENVELOPE_MAC_LEN);
        return buf_steal(&b, ret, ret_len);
}

/* okm = HKDF-SHA256(salt = id, IKM = secret, info = "securechat/1 " || suite). */
static int envelope_derive(const uint8_t id[MSG_ID_LEN], const uint8_t secret[ENVELOPE_SECRET_LEN],
                           uint8_t okm[ENVELOPE_OKM_LEN]) {
        static const char info[] = CTX_HKDF_INFO_PREFIX PROTOCOL_SUITE;

        return hkdf_sha256(id, MSG_ID_LEN, secret, ENVELOPE_SECRET_LEN,
                           info, sizeof(info) - 1, okm, ENVELOPE_OKM_LEN);
}

#define OKM_K_ENC(okm) (okm)
#define OKM_K_MAC(okm) ((okm) + TDES_KEY_LEN)
#define K_MAC_LEN (ENVELOPE_OKM_LEN - TDES_KEY_LEN)

int envelope_seal(const char *from, const RsaKey *sender, const char *to,
                  const RsaKey *recipient, uint64_t ts, const void *text, size_t len,
                  Envelope **ret) {
        return envelope_seal_id(from, sender, to, recipient, ts, NULL, text, len, ret);
}

int envelope_seal_id(const char *from, const RsaKey *sender, const char *to,
                     const RsaKey *recipient, uint64_t ts, const uint8_t id[MSG_ID_LEN],
                     const void *text, size_t len, Envelope **ret) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        _cleanup_(freep) uint8_t *h = NULL, *signed_input = NULL;
        uint8_t secret[ENVELOPE_SECRET_LEN], okm[ENVELOPE_OKM_LEN];
        size_t h_len, signed_len;
        int r;

        if (!from || !sender || !to || !recipient || !ret || (!text && len > 0))
                return -EINVAL;
        if (!sender->has_private)
                return -EINVAL;
        if (!username_valid(from) || !username_valid(to))
                return -EINVAL;
        if (ts > ENVELOPE_TS_MAX)
                return -EINVAL;
        if (!text)
                text = "";
        if (!utf8_valid(text, len))
                return -EINVAL;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->v = PROTOCOL_VERSION;
        strcpy(e->suite, PROTOCOL_SUITE);
        strcpy(e->from, from);
        strcpy(e->to, to);
        e->ts = ts;

        /* Step 1: fresh randomness for every message. */
        r = random_bytes(secret, sizeof(secret));
        if (r < 0)
                goto finish;
        if (id)
                memcpy(e->id, id, sizeof(e->id));
        else {
                r = message_id_new(e->id);
                if (r < 0)
                        goto finish;
        }
        r = random_bytes(e->iv, sizeof(e->iv));
        if (r < 0)
                goto finish;

        /* Step 2: the secret, to the recipient. */
        r = rsa_oaep_encrypt(recipient, CTX_ENVELOPE_KEY, strlen(CTX_ENVELOPE_KEY),
                             secret, sizeof(secret), &e->ek, &e->ek_len);
        if (r < 0)
                goto finish;

        /* Steps 3 and 4: derive, encrypt. */
        r = envelope_derive(e->id, secret, okm);
        if (r < 0)
                goto finish;
        r = tdes_cbc_encrypt(OKM_K_ENC(okm), e->iv, text, len, &e->ct, &e->ct_len);
        if (r < 0)
                goto finish;

        /* Steps 5 to 7: MAC the ciphertext and everything around it, then
         * sign the lot together with the MAC. */
        r = envelope_mac_input(e, &h, &h_len);
        if (r < 0)
                goto finish;
        hmac_sha256(OKM_K_MAC(okm), K_MAC_LEN, h, h_len, e->mac);

        r = envelope_signed_input(h, h_len, e->mac, &signed_input, &signed_len);
        if (r < 0)
                goto finish;
        r = rsa_pss_sign(sender, signed_input, signed_len, &e->sig, &e->sig_len);
        if (r < 0)
                goto finish;

        /* Refuse to emit what a receiver would call malformed (e.g. a key
         * outside 2048..4096 bits). */
        if (envelope_check(e) != ENVELOPE_OK) {
                r = -EINVAL;
                goto finish;
        }

        *ret = TAKE_PTR(e);
        r = 0;
finish:
        secure_wipe(secret, sizeof(secret));
        secure_wipe(okm, sizeof(okm));
        return r;
}

int envelope_to_json(const Envelope *e, json_object **ret) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        int r;

        if (!e || !ret)
                return -EINVAL;
        if (envelope_check(e) != ENVELOPE_OK)
                return -EINVAL;

        o = json_object_new_object();

        /* Member order as in protocol.md; json-c keeps insertion order. */
        r = json_add_int64(o, "v", e->v);
        if (r >= 0)
                r = json_add_string(o, "suite", e->suite);
        if (r >= 0)
                r = json_add_b64(o, "id", e->id, sizeof(e->id));
        if (r >= 0)
                r = json_add_string(o, "from", e->from);
        if (r >= 0)
                r = json_add_string(o, "to", e->to);
        if (r >= 0)
                r = json_add_int64(o, "ts", (int64_t) e->ts);
        if (r >= 0 && envelope_is_suite2(e))
                r = json_add_b64(o, "hdr", e->hdr, e->hdr_len);
        else if (r >= 0) {
                r = json_add_b64(o, "ek", e->ek, e->ek_len);
                if (r >= 0)
                        r = json_add_b64(o, "iv", e->iv, sizeof(e->iv));
        }
        if (r >= 0)
                r = json_add_b64(o, "ct", e->ct, e->ct_len);
        if (r >= 0)
                r = json_add_b64(o, "mac", e->mac, sizeof(e->mac));
        if (r >= 0)
                r = json_add_b64(o, "sig", e->sig, e->sig_len);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

/* Version and suite first, so that an envelope of a later protocol (which
 * may have other members, or none of ours) is reported as such: a bad
 * version wins over a missing or malformed suite. */
typedef struct EnvelopeHead {
        unsigned v;
        json_object *suite;
} EnvelopeHead;

static const JsonDispatch envelope_head_table[] = {
        { "v", json_type_int, json_dispatch_uint, offsetof(EnvelopeHead, v), JSON_MANDATORY,
          .max = INT32_MAX },
        { "suite", json_type_null, json_dispatch_borrow, offsetof(EnvelopeHead, suite), 0 },
        {}
};

/* Then all of it: every member required, anything else refused. ek and
 * sig are one RSA block; ct is a positive multiple of the block size,
 * checked after. */
static const JsonDispatch envelope_table[] = {
        { "v", json_type_int, NULL, 0, 0 },
        { "suite", json_type_string, NULL, 0, 0 },
        { "from", json_type_string, json_dispatch_user, offsetof(Envelope, from), 0 },
        { "to", json_type_string, json_dispatch_user, offsetof(Envelope, to), 0 },
        { "ts", json_type_int, json_dispatch_uint64, offsetof(Envelope, ts), 0, .max = ENVELOPE_TS_MAX },
        { "id", json_type_string, json_dispatch_b64_fixed, offsetof(Envelope, id), 0,
          .max = MSG_ID_LEN },
        { "ek", json_type_string, json_dispatch_b64, offsetof(Envelope, ek), 0,
          .min = RSA_BLOCK_MIN, .max = RSA_BLOCK_MAX, .len_offset = offsetof(Envelope, ek_len) },
        { "iv", json_type_string, json_dispatch_b64_fixed, offsetof(Envelope, iv), 0,
          .max = ENVELOPE_IV_LEN },
        { "ct", json_type_string, json_dispatch_b64, offsetof(Envelope, ct), 0,
          .min = TDES_BLOCK_LEN, .max = SIZE_MAX / 2, .len_offset = offsetof(Envelope, ct_len) },
        { "mac", json_type_string, json_dispatch_b64_fixed, offsetof(Envelope, mac), 0,
          .max = ENVELOPE_MAC_LEN },
        { "sig", json_type_string, json_dispatch_b64, offsetof(Envelope, sig), 0,
          .min = RSA_BLOCK_MIN, .max = RSA_BLOCK_MAX, .len_offset = offsetof(Envelope, sig_len) },
        {}
};

/* ENVELOPE2: hdr instead of ek and iv, the rest as in suite 1. */
static const JsonDispatch envelope2_table[] = {
        { "v", json_type_int, NULL, 0, 0 },
        { "suite", json_type_string, NULL, 0, 0 },
        { "from", json_type_string, json_dispatch_user, offsetof(Envelope, from), 0 },
        { "to", json_type_string, json_dispatch_user, offsetof(Envelope, to), 0 },
        { "ts", json_type_int, json_dispatch_uint64, offsetof(Envelope, ts), 0, .max = ENVELOPE_TS_MAX },
        { "id", json_type_string, json_dispatch_b64_fixed, offsetof(Envelope, id), 0,
          .max = MSG_ID_LEN },
        { "hdr", json_type_string, json_dispatch_b64, offsetof(Envelope, hdr), 0,
          .min = ENVELOPE2_HDR_MIN, .max = ENVELOPE2_HDR_MAX, .len_offset = offsetof(Envelope, hdr_len) },
        { "ct", json_type_string, json_dispatch_b64, offsetof(Envelope, ct), 0,
          .min = TDES_BLOCK_LEN, .max = SIZE_MAX / 2, .len_offset = offsetof(Envelope, ct_len) },
        { "mac", json_type_string, json_dispatch_b64_fixed, offsetof(Envelope, mac), 0,
          .max = ENVELOPE_MAC_LEN },
        { "sig", json_type_string, json_dispatch_b64, offsetof(Envelope, sig), 0,
          .min = RSA_BLOCK_MIN, .max = RSA_BLOCK_MAX, .len_offset = offsetof(Envelope, sig_len) },
        {}
};

/* The suite named by a JSON string, compared by length so that a name with
 * a NUL inside is no match; NULL if unknown. */
static const char *suite_known(json_object *suite) {
        static const char *const suites[] = { PROTOCOL_SUITE, SUITE2_NAME };
        size_t len = (size_t) json_object_get_string_len(suite);

        for (size_t i = 0; i < ELEMENTSOF(suites); i++)
                if (len == strlen(suites[i]) && memcmp(json_object_get_string(suite), suites[i], len) == 0)
                        return suites[i];
        return NULL;
}

int envelope_from_json(json_object *o, Envelope **ret, EnvelopeError *ret_error) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        EnvelopeError error = ENVELOPE_MALFORMED;
        EnvelopeHead head = {};
        const char *suite;
        int r;

        if (!ret)
                return -EINVAL;

        if (json_dispatch(o, envelope_head_table, 0, &head, NULL) < 0)
                goto refuse;
        if (head.v != PROTOCOL_VERSION) {
                error = ENVELOPE_BAD_VERSION;
                goto refuse;
        }
        if (!head.suite || !json_object_is_type(head.suite, json_type_string))
                goto refuse;
        suite = suite_known(head.suite);
        if (!suite) {
                error = ENVELOPE_BAD_SUITE;
                goto refuse;
        }

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->v = (int) head.v;
        strcpy(e->suite, suite);

        r = json_dispatch(o, envelope_is_suite2(e) ? envelope2_table : envelope_table,
                          JSON_MANDATORY | JSON_REFUSE_UNKNOWN, e, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || e->ct_len % TDES_BLOCK_LEN != 0)
                goto refuse;

        *ret = TAKE_PTR(e);
        if (ret_error)
                *ret_error = ENVELOPE_OK;
        return 0;

refuse:
        if (ret_error)
                *ret_error = error;
        return -EBADMSG;
}

static int envelope_refuse(EnvelopeError error, EnvelopeError *ret_error) {
        if (ret_error)
                *ret_error = error;
        return -EBADMSG;
}

/* H, and what the signature covers: H || lp(mac). */
static int envelope_signed_bytes(const Envelope *e, uint8_t **ret_h, size_t *ret_h_len,
                                 uint8_t **ret_signed, size_t *ret_signed_len) {
        _cleanup_(freep) uint8_t *h = NULL;
        size_t h_len;
        int r;

        r = envelope_mac_input(e, &h, &h_len);
        if (r < 0)
                return r;
        r = envelope_signed_input(h, h_len, e->mac, ret_signed, ret_signed_len);
        if (r < 0)
                return r;
        *ret_h = TAKE_PTR(h);
        *ret_h_len = h_len;
        return 0;
}

int envelope_digest(const Envelope *e, uint8_t ret[ENVELOPE_DIGEST_LEN]) {
        _cleanup_(freep) uint8_t *h = NULL, *signed_input = NULL;
        size_t h_len, signed_len;
        int r;

        r = envelope_signed_bytes(e, &h, &h_len, &signed_input, &signed_len);
        if (r < 0)
                return r;
        sha256(signed_input, signed_len, ret);
        return 0;
}

int envelope_open(const Envelope *e, const EnvelopeOpenParams *p,
                  char **ret_text, size_t *ret_len, EnvelopeError *ret_error) {
        _cleanup_(freep) uint8_t *h = NULL, *signed_input = NULL;
        uint8_t *secret = NULL, *pt = NULL;
        uint8_t okm[ENVELOPE_OKM_LEN], mac[ENVELOPE_MAC_LEN];
        size_t h_len, signed_len, secret_len = 0, pt_len = 0;
        EnvelopeError error;
        char *text;
        int r;

        if (!e || !p || !p->me || !p->my_key || !p->my_key->has_private || !ret_text || !ret_len)
                return -EINVAL;

        /* 1. Known version and suite, well formed, addressed to me. */
        error = envelope_check(e);
        if (error == ENVELOPE_OK && envelope_is_suite2(e))
                error = ENVELOPE_BAD_SUITE;     /* suite2_open()'s */
        if (error != ENVELOPE_OK)
                return envelope_refuse(error, ret_error);
        if (strcmp(e->to, p->me) != 0)
                return envelope_refuse(ENVELOPE_WRONG_RECIPIENT, ret_error);

        /* 2. The caller looked up from's key (server-signed, pinned). */
        if (!p->sender_key)
                return envelope_refuse(ENVELOPE_UNKNOWN_SENDER, ret_error);

        /* 3. The signature covers everything, the MAC included: nothing
         * below runs on bytes the sender did not sign. */
        r = envelope_signed_bytes(e, &h, &h_len, &signed_input, &signed_len);
        if (r < 0)
                return r;
        r = rsa_pss_verify(p->sender_key, signed_input, signed_len, e->sig, e->sig_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return envelope_refuse(ENVELOPE_BAD_SIGNATURE, ret_error);

        /* 4. Freshness, then replay. Written without now + skew or
         * now - window so that neither can wrap. */
        if (e->ts > p->now && e->ts - p->now > ENVELOPE_FUTURE_SKEW)
                return envelope_refuse(ENVELOPE_FROM_FUTURE, ret_error);
        if (e->ts < p->now && p->now - e->ts > p->window)
                return envelope_refuse(ENVELOPE_EXPIRED, ret_error);
        if (p->seen) {
                uint8_t digest[ENVELOPE_DIGEST_LEN];

                sha256(signed_input, signed_len, digest);
                r = p->seen(p->userdata, e->from, e->id, e->ts, digest);
                if (r < 0)
                        return r;
                if (r == ENVELOPE_SEEN_SAME)
                        return envelope_refuse(ENVELOPE_DUPLICATE, ret_error);
                if (r == ENVELOPE_SEEN_OTHER)
                        return envelope_refuse(ENVELOPE_REPLAY, ret_error);
                if (r == ENVELOPE_SEEN_FORGOTTEN)
                        return envelope_refuse(ENVELOPE_EXPIRED, ret_error);
        }

        /* 5. Recover the secret. Every decoding failure, a secret of the
         * wrong size included, is the one error bad_key. */
        r = rsa_oaep_decrypt(p->my_key, CTX_ENVELOPE_KEY, strlen(CTX_ENVELOPE_KEY),
                             e->ek, e->ek_len, &secret, &secret_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || secret_len != ENVELOPE_SECRET_LEN) {
                error = ENVELOPE_BAD_KEY;
                goto refuse;
        }

        r = envelope_derive(e->id, secret, okm);
        if (r < 0)
                goto finish;

        hmac_sha256(OKM_K_MAC(okm), K_MAC_LEN, h, h_len, mac);
        if (!memeq_ct(mac, e->mac, sizeof(mac))) {
                error = ENVELOPE_BAD_MAC;
                goto refuse;
        }

        r = tdes_cbc_decrypt(OKM_K_ENC(okm), e->iv, e->ct, e->ct_len, &pt, &pt_len);
        if (r == -EBADMSG) {
                error = ENVELOPE_BAD_PADDING;
                goto refuse;
        }
        if (r < 0)
                goto finish;

        if (!utf8_valid(pt, pt_len)) {
                error = ENVELOPE_BAD_UTF8;
                goto refuse;
        }
        if (p->max_text > 0 && pt_len > p->max_text) {
                error = ENVELOPE_TOO_LARGE;
                goto refuse;
        }

        /* NUL-terminated copy for the caller (utf8_valid() refused any NUL
         * inside). */
        text = malloc(pt_len + 1);
        if (!text) {
                r = -ENOMEM;
                goto finish;
        }
        if (pt_len > 0)
                memcpy(text, pt, pt_len);
        text[pt_len] = '\0';

        *ret_text = text;
        *ret_len = pt_len;
        if (ret_error)
                *ret_error = ENVELOPE_OK;
        r = 0;
        goto finish;

refuse:
        r = envelope_refuse(error, ret_error);
finish:
        secure_free(secret, secret_len);
        secure_free(pt, pt_len);
        secure_wipe(okm, sizeof(okm));
        secure_wipe(mac, sizeof(mac));
        return r;
}
