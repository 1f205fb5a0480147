/* SPDX-License-Identifier: MIT */
/*
 * The envelope of protocol.md section 7.
 *
 * Besides round trips, every field is altered one at a time and must be
 * refused with its own error. To show that each later check of opening
 * works on its own (and not only because the signature already failed), the
 * tests re-sign altered envelopes with the sender's key, and build envelopes
 * from the specification with their own sealer (craft_envelope()) so they
 * can put bad padding or bad UTF-8 under a valid MAC and signature. Finally
 * the openssl command line opens one of our envelopes and builds one that
 * we open: an independent implementation agrees with this one byte for byte.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "b64.h"
#include "crypto.h"
#include "envelope.h"
#include "macro.h"
#include "protocol.h"
#include "rsa.h"
#include "util.h"

#include "test-main.h"

#define NOW UINT64_C(1700000000)
#define WINDOW ((uint64_t) DEFAULT_QUEUE_TTL)

/* Keys are generated once, in the parent process (an unchecked fixture), so
 * that every forked test reuses them: 4096-bit generation takes seconds. */
enum {
        ALICE,          /* 2048 */
        BOB,            /* 2048 */
        CAROL,          /* 2048 */
        ALICE_3072,
        BOB_3072,
        ALICE_4096,
        BOB_4096,
        _KEY_MAX,
};
static const unsigned key_bits[_KEY_MAX] = {
        [ALICE] = 2048, [BOB] = 2048, [CAROL] = 2048,
        [ALICE_3072] = 3072, [BOB_3072] = 3072,
        [ALICE_4096] = 4096, [BOB_4096] = 4096,
};
static RsaKey *keys[_KEY_MAX];

static void keys_setup(void) {
        for (size_t i = 0; i < _KEY_MAX; i++)
                if (!keys[i])
                        ck_assert_int_eq(rsa_key_generate(key_bits[i], &keys[i]), 0);
}

/* ---- Small helpers that know nothing about envelope.c ---- */

/* A byte string built by hand, independently of common/buf.c. */
typedef struct Bytes {
        uint8_t *data;
        size_t len;
} Bytes;

static void bytes_add(Bytes *b, const void *p, size_t n) {
        b->data = realloc(b->data, b->len + n + 1);
        ck_assert_ptr_nonnull(b->data);
        if (n > 0)
                memcpy(b->data + b->len, p, n);
        b->len += n;
}

static void bytes_add_be(Bytes *b, uint64_t v, unsigned n) {
        uint8_t p[8];

        for (unsigned i = 0; i < n; i++)
                p[i] = (uint8_t) (v >> (8 * (n - 1 - i)));
        bytes_add(b, p, n);
}

static void bytes_add_lp(Bytes *b, const void *p, size_t n) {
        bytes_add_be(b, n, 4);
        bytes_add(b, p, n);
}

static void bytes_add_lp_str(Bytes *b, const char *s) {
        bytes_add_lp(b, s, strlen(s));
}

static void bytes_done(Bytes *b) {
        free(b->data);
        b->data = NULL;
        b->len = 0;
}

/* H of step 5, written out from the specification. */
static Bytes spec_h(const char *suite, const uint8_t *id, const char *from, const char *to,
                    uint64_t ts, const uint8_t *ek, size_t ek_len, const uint8_t *iv,
                    const uint8_t *ct, size_t ct_len) {
        Bytes h = {};

        bytes_add_lp_str(&h, "securechat/1 envelope");
        bytes_add_lp_str(&h, suite);
        bytes_add_lp(&h, id, 16);
        bytes_add_lp_str(&h, from);
        bytes_add_lp_str(&h, to);
        bytes_add_be(&h, ts, 8);
        bytes_add_lp(&h, ek, ek_len);
        bytes_add_lp(&h, iv, 8);
        bytes_add_lp(&h, ct, ct_len);
        return h;
}

static Bytes spec_h_of(const Envelope *e) {
        return spec_h(e->suite, e->id, e->from, e->to, e->ts, e->ek, e->ek_len, e->iv,
                      e->ct, e->ct_len);
}

/* H || lp(mac), what the sender signs. */
static Bytes spec_signed(const Bytes *h, const uint8_t mac[32]) {
        Bytes s = {};

        bytes_add(&s, h->data, h->len);
        bytes_add_lp(&s, mac, 32);
        return s;
}

static void spec_derive(const uint8_t id[16], const uint8_t *secret, size_t secret_len,
                        uint8_t okm[56]) {
        static const char info[] = "securechat/1 rsa-oaep-sha256+des-ede3-cbc+hmac-sha256";

        ck_assert_int_eq(hkdf_sha256(id, 16, secret, secret_len, info, strlen(info), okm, 56), 0);
}

/* v NULL sets JSON null. */
static void json_set(json_object *o, const char *key, json_object *v) {
        ck_assert_int_eq(json_object_object_add(o, key, v), 0);
}

static void json_set_b64(json_object *o, const char *key, const void *data, size_t len) {
        _cleanup_(freep) char *s = NULL;

        ck_assert_int_eq(b64_encode(data, len, &s), 0);
        json_set(o, key, json_object_new_string(s));
}

static void json_get_b64(json_object *o, const char *key, uint8_t **ret, size_t *ret_len) {
        json_object *v;

        ck_assert(json_object_object_get_ex(o, key, &v));
        ck_assert_int_eq(b64_decode(json_object_get_string(v),
                                    (size_t) json_object_get_string_len(v), ret, ret_len), 0);
}

static json_object *json_parse(const char *s) {
        enum json_tokener_error error = json_tokener_success;
        json_object *o = json_tokener_parse_verbose(s, &error);

        ck_assert_msg(error == json_tokener_success, "test bug: cannot parse %s", s);
        return o;    /* NULL for "null" */
}

/* ---- Sealing and opening through the API ---- */

static json_object *seal_json(const char *from, int sender, const char *to, int recipient,
                              uint64_t ts, const void *text, size_t len) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        json_object *o = NULL;

        ck_assert_int_eq(envelope_seal(from, keys[sender], to, keys[recipient], ts, text, len, &e), 0);
        ck_assert_int_eq(envelope_to_json(e, &o), 0);
        return o;
}

static EnvelopeOpenParams params_for(const char *me, int my_key, int sender) {
        return (EnvelopeOpenParams) {
                .me = me,
                .my_key = keys[my_key],
                .sender_key = sender >= 0 ? keys[sender] : NULL,
                .now = NOW,
                .window = WINDOW,
                .max_text = DEFAULT_MAX_TEXT,
        };
}

/* Parse and open; returns ENVELOPE_OK or the refusal, whichever step
 * refused. System errors fail the test. */
static EnvelopeError open_json(json_object *o, const EnvelopeOpenParams *p,
                               char **ret_text, size_t *ret_len) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        _cleanup_(freep) char *text = NULL;
        EnvelopeError error = _ENVELOPE_ERROR_MAX;
        size_t len = SIZE_MAX;
        int r;

        r = envelope_from_json(o, &e, &error);
        if (r < 0) {
                ck_assert_int_eq(r, -EBADMSG);
                ck_assert_int_ne(error, ENVELOPE_OK);
                ck_assert_int_lt(error, _ENVELOPE_ERROR_MAX);
                ck_assert_ptr_null(e);
                return error;
        }
        ck_assert_int_eq(error, ENVELOPE_OK);

        error = _ENVELOPE_ERROR_MAX;
        r = envelope_open(e, p, &text, &len, &error);
        if (r < 0) {
                ck_assert_int_eq(r, -EBADMSG);
                ck_assert_int_ne(error, ENVELOPE_OK);
                ck_assert_int_lt(error, _ENVELOPE_ERROR_MAX);
                ck_assert_ptr_null(text);
                return error;
        }
        ck_assert_int_eq(r, 0);
        ck_assert_ptr_nonnull(text);
        ck_assert_int_eq(text[len], '\0');
        if (ret_text)
                *ret_text = TAKE_PTR(text);
        if (ret_len)
                *ret_len = len;
        return ENVELOPE_OK;
}

#define ck_assert_envelope_error(got, want)                                     \
        do {                                                                    \
                EnvelopeError _g = (got), _w = (want);                          \
                ck_assert_msg(_g == _w, "expected %s, got %s",                  \
                              envelope_error_to_string(_w),                     \
                              _g < _ENVELOPE_ERROR_MAX ? envelope_error_to_string(_g) : "?"); \
        } while (0)

/* Re-sign H || lp(mac) of o with the sender's key, after an alteration,
 * so that the signature holds again and a later check has to catch it. */
static void resign(json_object *o, int sender) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        _cleanup_(freep) uint8_t *sig = NULL;
        Bytes h, s;
        size_t sig_len;

        ck_assert_int_eq(envelope_from_json(o, &e, NULL), 0);
        h = spec_h_of(e);
        s = spec_signed(&h, e->mac);
        ck_assert_int_eq(rsa_pss_sign(keys[sender], s.data, s.len, &sig, &sig_len), 0);
        json_set_b64(o, "sig", sig, sig_len);
        bytes_done(&h);
        bytes_done(&s);
}

/* ---- A sealer written from the specification, for crafted envelopes ---- */

typedef struct Craft {
        const char *from, *to;
        int sender, recipient;
        uint64_t ts;
        const uint8_t *id;          /* NULL: random */
        const char *label;          /* OAEP label */
        size_t secret_len;
        const void *blocks;         /* plaintext, already padded */
        size_t blocks_len;
} Craft;

static Craft craft_default(const void *blocks, size_t blocks_len) {
        return (Craft) {
                .from = "alice", .to = "bob", .sender = ALICE, .recipient = BOB,
                .ts = NOW, .label = "securechat/1 envelope-key", .secret_len = 32,
                .blocks = blocks, .blocks_len = blocks_len,
        };
}

static json_object *craft_envelope(const Craft *c) {
        _cleanup_(freep) uint8_t *ek = NULL, *ct = NULL, *sig = NULL;
        uint8_t secret[64], id[16], iv[8], okm[56], mac[32];
        size_t ek_len, sig_len;
        json_object *o;
        Bytes h, s;

        ck_assert_uint_le(c->secret_len, sizeof(secret));
        ck_assert_uint_eq(c->blocks_len % 8, 0);
        ck_assert_int_eq(random_bytes(secret, sizeof(secret)), 0);
        ck_assert_int_eq(random_bytes(iv, sizeof(iv)), 0);
        if (c->id)
                memcpy(id, c->id, sizeof(id));
        else
                ck_assert_int_eq(random_bytes(id, sizeof(id)), 0);

        ck_assert_int_eq(rsa_oaep_encrypt(keys[c->recipient], c->label, strlen(c->label),
                                          secret, c->secret_len, &ek, &ek_len), 0);
        spec_derive(id, secret, c->secret_len, okm);
        ct = malloc(c->blocks_len + 1);
        ck_assert_ptr_nonnull(ct);
        ck_assert_int_eq(tdes_cbc_encrypt_raw(okm, iv, c->blocks, c->blocks_len, ct), 0);

        h = spec_h(PROTOCOL_SUITE, id, c->from, c->to, c->ts, ek, ek_len, iv, ct, c->blocks_len);
        hmac_sha256(okm + 24, 32, h.data, h.len, mac);
        s = spec_signed(&h, mac);
        ck_assert_int_eq(rsa_pss_sign(keys[c->sender], s.data, s.len, &sig, &sig_len), 0);

        o = json_object_new_object();
        ck_assert_ptr_nonnull(o);
        json_set(o, "v", json_object_new_int(1));
        json_set(o, "suite", json_object_new_string(PROTOCOL_SUITE));
        json_set_b64(o, "id", id, sizeof(id));
        json_set(o, "from", json_object_new_string(c->from));
        json_set(o, "to", json_object_new_string(c->to));
        json_set(o, "ts", json_object_new_int64((int64_t) c->ts));
        json_set_b64(o, "ek", ek, ek_len);
        json_set_b64(o, "iv", iv, sizeof(iv));
        json_set_b64(o, "ct", ct, c->blocks_len);
        json_set_b64(o, "mac", mac, sizeof(mac));
        json_set_b64(o, "sig", sig, sig_len);

        bytes_done(&h);
        bytes_done(&s);
        return o;
}

/* PKCS#7 by hand: 1..8 bytes of value n. */
static size_t pkcs7(const char *text, uint8_t *out, size_t out_size) {
        size_t len = strlen(text), n = 8 - len % 8;

        ck_assert_uint_le(len + n, out_size);
        memcpy(out, text, len);
        memset(out + len, (int) n, n);
        return len + n;
}

/* ---- Round trips ---- */

static const struct {
        int sender, recipient;
} pairs[] = {
        { ALICE, BOB },
        { ALICE_3072, BOB_3072 },
        { ALICE_4096, BOB_4096 },
        { ALICE, BOB_4096 },
        { ALICE_4096, BOB },
        { ALICE_3072, BOB_4096 },
};

#define TEXT(s) { s, sizeof(s) - 1 }
static const struct {
        const char *text;
        size_t len;
} texts[] = {
        TEXT(""),
        TEXT("hi"),
        TEXT("exactly8"),
        TEXT("h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"),
};

START_TEST(test_round_trip) {
        int sender = pairs[_i].sender, recipient = pairs[_i].recipient;
        EnvelopeOpenParams p = params_for("bob", recipient, sender);

        for (size_t t = 0; t < ELEMENTSOF(texts); t++) {
                _cleanup_(freep) char *text = NULL;
                json_object *o;
                size_t len;

                o = seal_json("alice", sender, "bob", recipient, NOW, texts[t].text, texts[t].len);
                ck_assert_envelope_error(open_json(o, &p, &text, &len), ENVELOPE_OK);
                ck_assert_uint_eq(len, texts[t].len);
                ck_assert_mem_eq(text, texts[t].text, len);
                json_object_put(o);
        }
}
END_TEST

/* The largest text, with the largest keys, still fits a default frame. */
START_TEST(test_max_size) {
        EnvelopeOpenParams p = params_for("bob", BOB_4096, ALICE_4096);
        _cleanup_(freep) char *big = NULL, *text = NULL;
        const char *s;
        json_object *o;
        size_t len;

        big = malloc(DEFAULT_MAX_TEXT);
        ck_assert_ptr_nonnull(big);
        for (size_t i = 0; i < DEFAULT_MAX_TEXT; i++)
                big[i] = (char) ('a' + i % 26);

        o = seal_json("alice", ALICE_4096, "bob", BOB_4096, NOW, big, DEFAULT_MAX_TEXT);
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_uint_lt(strlen(s) + 64, DEFAULT_MAX_FRAME);

        ck_assert_envelope_error(open_json(o, &p, &text, &len), ENVELOPE_OK);
        ck_assert_uint_eq(len, DEFAULT_MAX_TEXT);
        ck_assert_mem_eq(text, big, len);

        p.max_text = DEFAULT_MAX_TEXT - 1;
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_TOO_LARGE);
        p.max_text = 0;         /* no limit */
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_OK);
        json_object_put(o);
}
END_TEST

START_TEST(test_json_shape) {
        static const char *const order[] = {
                "v", "suite", "id", "from", "to", "ts", "ek", "iv", "ct", "mac", "sig",
        };
        _cleanup_(envelope_freep) Envelope *e = NULL, *e2 = NULL;
        json_object *o, *o2, *v;
        char *copy;
        size_t i = 0;

        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "x", 1, &e), 0);
        ck_assert_int_eq(envelope_to_json(e, &o), 0);

        json_object_object_foreach(o, key, val) {
                (void) val;
                ck_assert_uint_lt(i, ELEMENTSOF(order));
                ck_assert_str_eq(key, order[i]);
                i++;
        }
        ck_assert_uint_eq(i, ELEMENTSOF(order));

        ck_assert(json_object_object_get_ex(o, "v", &v));
        ck_assert(json_object_is_type(v, json_type_int));
        ck_assert_int_eq(json_object_get_int(v), 1);
        ck_assert(json_object_object_get_ex(o, "ts", &v));
        ck_assert(json_object_is_type(v, json_type_int));
        ck_assert_int_eq(json_object_get_int64(v), (int64_t) NOW);
        ck_assert(json_object_object_get_ex(o, "suite", &v));
        ck_assert_str_eq(json_object_get_string(v), "rsa-oaep-sha256+des-ede3-cbc+hmac-sha256");

        /* Text -> object -> Envelope -> object gives the same text. */
        copy = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        ck_assert_ptr_nonnull(copy);
        ck_assert(strncmp(copy, "{\"v\":1,\"suite\":\"rsa-oaep-sha256+des-ede3-cbc+hmac-sha256\",\"id\":\"", 64) == 0);
        v = json_parse(copy);
        ck_assert_int_eq(envelope_from_json(v, &e2, NULL), 0);
        json_object_put(v);
        ck_assert_int_eq(envelope_to_json(e2, &o2), 0);
        ck_assert_str_eq(json_object_to_json_string_ext(o2, JSON_C_TO_STRING_PLAIN), copy);
        ck_assert_mem_eq(e2->id, e->id, 16);
        ck_assert_mem_eq(e2->mac, e->mac, 32);
        ck_assert_uint_eq(e2->ct_len, e->ct_len);
        ck_assert_mem_eq(e2->ct, e->ct, e->ct_len);

        free(copy);
        json_object_put(o);
        json_object_put(o2);
}
END_TEST

START_TEST(test_seal_refuses) {
        _cleanup_(rsa_key_freep) RsaKey *pub = NULL;
        Envelope *e = NULL;

        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "\xff", 1, &e), -EINVAL);
        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "\xc0\xaf", 2, &e), -EINVAL);
        /* user text never holds NUL (util.h's UTF-8 rule) */
        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "a\0b", 3, &e), -EINVAL);
        ck_assert_int_eq(envelope_seal("Alice", keys[ALICE], "bob", keys[BOB], NOW, "x", 1, &e), -EINVAL);
        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "", keys[BOB], NOW, "x", 1, &e), -EINVAL);
        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], UINT64_MAX, "x", 1, &e), -EINVAL);
        ck_assert_int_eq(rsa_key_from_spki(keys[ALICE]->spki, keys[ALICE]->spki_len, &pub), 0);
        ck_assert_int_eq(envelope_seal("alice", pub, "bob", keys[BOB], NOW, "x", 1, &e), -EINVAL);
        ck_assert_ptr_null(e);
}
END_TEST

/* Two seals of the same text share nothing random. */
START_TEST(test_fresh_per_message) {
        _cleanup_(envelope_freep) Envelope *a = NULL, *b = NULL;

        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "same", 4, &a), 0);
        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "same", 4, &b), 0);
        ck_assert(memcmp(a->id, b->id, 16) != 0);
        ck_assert(memcmp(a->iv, b->iv, 8) != 0);
        ck_assert(memcmp(a->ek, b->ek, a->ek_len) != 0);
        ck_assert(memcmp(a->ct, b->ct, a->ct_len) != 0);
        ck_assert(memcmp(a->mac, b->mac, 32) != 0);
}
END_TEST

/* ---- Every field altered, one at a time ---- */

typedef enum AlterHow {
        ALTER_FLIP,     /* flip one bit of the decoded bytes */
        ALTER_SET,      /* replace the value (JSON text) */
        ALTER_TS_PLUS,  /* ts + 1 */
} AlterHow;

/* What each alteration must produce. Without re-signing, the signature
 * covers every field, so any change is bad_signature except those caught
 * earlier (v, suite, to). Re-signed, the next check in line must catch it:
 * id (the HKDF salt and part of H), from, ts, iv, ct and mac all break the
 * MAC; ek breaks OAEP decryption. */
static const struct {
        const char *member;
        AlterHow how;
        const char *value;
        bool resign;
        EnvelopeError expect;
} alterations[] = {
        { "v",     ALTER_SET,     "2",               false, ENVELOPE_BAD_VERSION },
        { "v",     ALTER_SET,     "0",               false, ENVELOPE_BAD_VERSION },
        { "suite", ALTER_SET,     "\"rsa-oaep-sha256+aes-128-gcm\"", false, ENVELOPE_BAD_SUITE },
        { "suite", ALTER_SET,     "\"RSA-OAEP-SHA256+DES-EDE3-CBC+HMAC-SHA256\"", false, ENVELOPE_BAD_SUITE },
        { "id",    ALTER_FLIP,    NULL,              false, ENVELOPE_BAD_SIGNATURE },
        { "id",    ALTER_FLIP,    NULL,              true,  ENVELOPE_BAD_MAC },
        { "from",  ALTER_SET,     "\"carol\"",       false, ENVELOPE_BAD_SIGNATURE },
        { "from",  ALTER_SET,     "\"carol\"",       true,  ENVELOPE_BAD_MAC },
        { "to",    ALTER_SET,     "\"carol\"",       false, ENVELOPE_WRONG_RECIPIENT },
        { "to",    ALTER_SET,     "\"carol\"",       true,  ENVELOPE_WRONG_RECIPIENT },
        { "ts",    ALTER_TS_PLUS, NULL,              false, ENVELOPE_BAD_SIGNATURE },
        { "ts",    ALTER_TS_PLUS, NULL,              true,  ENVELOPE_BAD_MAC },
        { "ek",    ALTER_FLIP,    NULL,              false, ENVELOPE_BAD_SIGNATURE },
        { "ek",    ALTER_FLIP,    NULL,              true,  ENVELOPE_BAD_KEY },
        { "iv",    ALTER_FLIP,    NULL,              false, ENVELOPE_BAD_SIGNATURE },
        { "iv",    ALTER_FLIP,    NULL,              true,  ENVELOPE_BAD_MAC },
        { "ct",    ALTER_FLIP,    NULL,              false, ENVELOPE_BAD_SIGNATURE },
        { "ct",    ALTER_FLIP,    NULL,              true,  ENVELOPE_BAD_MAC },
        { "mac",   ALTER_FLIP,    NULL,              false, ENVELOPE_BAD_SIGNATURE },
        { "mac",   ALTER_FLIP,    NULL,              true,  ENVELOPE_BAD_MAC },
        { "sig",   ALTER_FLIP,    NULL,              false, ENVELOPE_BAD_SIGNATURE },
};

START_TEST(test_alteration) {
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        json_object *o, *v;

        o = seal_json("alice", ALICE, "bob", BOB, NOW, "attack at dawn", 14);
        /* Unaltered, it opens: the refusal below is caused by the change. */
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_OK);

        switch (alterations[_i].how) {
        case ALTER_FLIP: {
                _cleanup_(freep) uint8_t *data = NULL;
                size_t len;

                json_get_b64(o, alterations[_i].member, &data, &len);
                data[len / 2] ^= 0x10;
                json_set_b64(o, alterations[_i].member, data, len);
                break;
        }
        case ALTER_SET:
                json_set(o, alterations[_i].member, json_parse(alterations[_i].value));
                break;
        case ALTER_TS_PLUS:
                ck_assert(json_object_object_get_ex(o, "ts", &v));
                json_set(o, "ts", json_object_new_int64(json_object_get_int64(v) + 1));
                break;
        }
        if (alterations[_i].resign)
                resign(o, ALICE);

        /* A fresh params: no replay store, so a replay cannot mask anything. */
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), alterations[_i].expect);
        json_object_put(o);
}
END_TEST

/* ---- Who may open what ---- */

START_TEST(test_wrong_recipient) {
        EnvelopeOpenParams p = params_for("carol", CAROL, ALICE);
        json_object *o = seal_json("alice", ALICE, "bob", BOB, NOW, "hi", 2);

        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_WRONG_RECIPIENT);
        /* Checked before the sender's key is even needed. */
        p.sender_key = NULL;
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_WRONG_RECIPIENT);
        json_object_put(o);
}
END_TEST

START_TEST(test_unknown_sender) {
        EnvelopeOpenParams p = params_for("bob", BOB, -1);
        json_object *o = seal_json("alice", ALICE, "bob", BOB, NOW, "hi", 2);

        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_UNKNOWN_SENDER);
        json_object_put(o);
}
END_TEST

/* Opened with another key than the one that signed. */
START_TEST(test_other_sender_key) {
        EnvelopeOpenParams p = params_for("bob", BOB, CAROL);
        json_object *o = seal_json("alice", ALICE, "bob", BOB, NOW, "hi", 2);

        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_BAD_SIGNATURE);
        p.sender_key = keys[BOB_3072];
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_BAD_SIGNATURE);
        json_object_put(o);
}
END_TEST

/* Signed by alice, addressed to bob, but encrypted to carol's key (or
 * opened with a key bob does not have): the signature holds, OAEP fails. */
START_TEST(test_other_recipient_key) {
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        json_object *o = seal_json("alice", ALICE, "bob", CAROL, NOW, "hi", 2);

        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_BAD_KEY);
        json_object_put(o);

        o = seal_json("alice", ALICE, "bob", BOB, NOW, "hi", 2);
        p.my_key = keys[CAROL];
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_BAD_KEY);
        json_object_put(o);
}
END_TEST

/* An Envelope built in memory gets the checks of step 1 too. */
enum {
        STRUCT_VERSION,
        STRUCT_SUITE,
        STRUCT_FROM,
        STRUCT_TO,
        STRUCT_EK_LEN,
        STRUCT_SIG_LEN,
        STRUCT_CT_EMPTY,
        STRUCT_CT_PARTIAL,
        STRUCT_TS,
        _STRUCT_MAX,
};

START_TEST(test_open_checks_struct) {
        static const EnvelopeError expect[_STRUCT_MAX] = {
                [STRUCT_VERSION] = ENVELOPE_BAD_VERSION,
                [STRUCT_SUITE] = ENVELOPE_BAD_SUITE,
                [STRUCT_FROM] = ENVELOPE_MALFORMED,
                [STRUCT_TO] = ENVELOPE_MALFORMED,
                [STRUCT_EK_LEN] = ENVELOPE_MALFORMED,
                [STRUCT_SIG_LEN] = ENVELOPE_MALFORMED,
                [STRUCT_CT_EMPTY] = ENVELOPE_MALFORMED,
                [STRUCT_CT_PARTIAL] = ENVELOPE_MALFORMED,
                [STRUCT_TS] = ENVELOPE_MALFORMED,
        };
        _cleanup_(envelope_freep) Envelope *e = NULL;
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        EnvelopeError error = ENVELOPE_OK;
        json_object *o = NULL;
        char *text = NULL;
        size_t len;

        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "0123456789", 10, &e), 0);
        switch (_i) {
        case STRUCT_VERSION:
                e->v = 2;
                break;
        case STRUCT_SUITE:
                strcpy(e->suite, "rsa-oaep-sha256+des-ede3-cbc+hmac-sha1");
                break;
        case STRUCT_FROM:
                strcpy(e->from, "Alice");
                break;
        case STRUCT_TO:
                e->to[0] = '\0';
                break;
        case STRUCT_EK_LEN:
                e->ek_len = 128;
                break;
        case STRUCT_SIG_LEN:
                e->sig_len = 0;
                break;
        case STRUCT_CT_EMPTY:
                e->ct_len = 0;
                break;
        case STRUCT_CT_PARTIAL:
                e->ct_len = 12;
                break;
        case STRUCT_TS:
                e->ts = UINT64_MAX;
                break;
        default:
                ck_abort();
        }
        ck_assert_int_eq(envelope_open(e, &p, &text, &len, &error), -EBADMSG);
        ck_assert_envelope_error(error, expect[_i]);
        ck_assert_ptr_null(text);
        /* nor is it written out as JSON */
        ck_assert_int_eq(envelope_to_json(e, &o), -EINVAL);
        ck_assert_ptr_null(o);
}
END_TEST

/* ---- Time and replay ---- */

static const struct {
        int64_t delta;
        EnvelopeError expect;
} times[] = {
        { 0, ENVELOPE_OK },
        { 300, ENVELOPE_OK },
        { 301, ENVELOPE_FROM_FUTURE },
        { 100000, ENVELOPE_FROM_FUTURE },
        { -(int64_t) WINDOW, ENVELOPE_OK },
        { -(int64_t) WINDOW - 1, ENVELOPE_EXPIRED },
        { -(int64_t) NOW, ENVELOPE_EXPIRED },
};

START_TEST(test_time) {
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        json_object *o;

        o = seal_json("alice", ALICE, "bob", BOB, (uint64_t) ((int64_t) NOW + times[_i].delta), "hi", 2);
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), times[_i].expect);
        json_object_put(o);
}
END_TEST

/* The client's replay store, in miniature: (from, id) pairs with the
 * content's digest. */
typedef struct Seen {
        struct {
                char from[USERNAME_MAX + 1];
                uint8_t id[MSG_ID_LEN];
                uint8_t digest[ENVELOPE_DIGEST_LEN];
        } entries[16];
        size_t n;
        unsigned calls;
        int fail;
} Seen;

static int seen_cb(void *userdata, const char *from, const uint8_t id[MSG_ID_LEN], uint64_t ts,
                   const uint8_t digest[ENVELOPE_DIGEST_LEN]) {
        Seen *s = userdata;

        s->calls++;
        if (s->fail < 0)
                return s->fail;
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->entries[i].from, from) == 0 && memcmp(s->entries[i].id, id, MSG_ID_LEN) == 0)
                        return memcmp(s->entries[i].digest, digest, ENVELOPE_DIGEST_LEN) == 0 ?
                               ENVELOPE_SEEN_SAME : ENVELOPE_SEEN_OTHER;
        ck_assert_uint_lt(s->n, ELEMENTSOF(s->entries));
        strcpy(s->entries[s->n].from, from);
        memcpy(s->entries[s->n].id, id, MSG_ID_LEN);
        memcpy(s->entries[s->n].digest, digest, ENVELOPE_DIGEST_LEN);
        s->n++;
        return 0;
}

START_TEST(test_replay) {
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        _cleanup_(freep) uint8_t *id = NULL;
        Seen seen = {};
        json_object *o, *o2, *o3;
        size_t id_len;
        uint8_t blocks[16];
        Craft c;

        p.seen = seen_cb;
        p.userdata = &seen;

        /* The same envelope again is a duplicate (a redelivery), not an
         * attack. */
        o = seal_json("alice", ALICE, "bob", BOB, NOW, "once", 4);
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_OK);
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_DUPLICATE);
        ck_assert_uint_eq(seen.calls, 2);

        /* A new message is not a replay. */
        o2 = seal_json("alice", ALICE, "bob", BOB, NOW, "once", 4);
        ck_assert_envelope_error(open_json(o2, &p, NULL, NULL), ENVELOPE_OK);

        /* The same id from another sender is that sender's business. */
        json_get_b64(o, "id", &id, &id_len);
        c = craft_default(blocks, pkcs7("from carol", blocks, sizeof(blocks)));
        c.from = "carol";
        c.sender = CAROL;
        c.id = id;
        o3 = craft_envelope(&c);
        p.sender_key = keys[CAROL];
        ck_assert_envelope_error(open_json(o3, &p, NULL, NULL), ENVELOPE_OK);
        ck_assert_envelope_error(open_json(o3, &p, NULL, NULL), ENVELOPE_DUPLICATE);

        /* Another envelope under an id already used is a replay. */
        {
                json_object *o4;

                c = craft_default(blocks, pkcs7("other text", blocks, sizeof(blocks)));
                c.id = id;
                o4 = craft_envelope(&c);
                p.sender_key = keys[ALICE];
                ck_assert_envelope_error(open_json(o4, &p, NULL, NULL), ENVELOPE_REPLAY);
                json_object_put(o4);
        }

        /* The store is consulted only once the signature verified: a forger
         * cannot fill it, nor learn from it. */
        seen.calls = 0;
        p.sender_key = keys[BOB];
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_BAD_SIGNATURE);
        ck_assert_uint_eq(seen.calls, 0);

        json_object_put(o);
        json_object_put(o2);
        json_object_put(o3);
}
END_TEST

START_TEST(test_replay_store_error) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        EnvelopeError error = ENVELOPE_OK;
        Seen seen = { .fail = -EIO };
        char *text = NULL;
        size_t len = 0;

        p.seen = seen_cb;
        p.userdata = &seen;
        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "x", 1, &e), 0);
        ck_assert_int_eq(envelope_open(e, &p, &text, &len, &error), -EIO);
        ck_assert_ptr_null(text);
}
END_TEST

/* The signature is checked before time: an expired forgery is a forgery. */
START_TEST(test_order_signature_before_time) {
        EnvelopeOpenParams p = params_for("bob", BOB, CAROL);
        json_object *o = seal_json("alice", ALICE, "bob", BOB, NOW - WINDOW - 10, "x", 1);

        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_BAD_SIGNATURE);
        p.sender_key = keys[ALICE];
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_EXPIRED);
        json_object_put(o);
}
END_TEST

/* ---- The checks after the signature, each reached on its own ---- */

/* Our own spec sealer produces what the opener accepts. */
START_TEST(test_crafted_valid) {
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        _cleanup_(freep) char *text = NULL;
        uint8_t blocks[32];
        json_object *o;
        Craft c;
        size_t len;

        c = craft_default(blocks, pkcs7("crafted by hand", blocks, sizeof(blocks)));
        o = craft_envelope(&c);
        ck_assert_envelope_error(open_json(o, &p, &text, &len), ENVELOPE_OK);
        ck_assert_str_eq(text, "crafted by hand");
        ck_assert_uint_eq(len, 15);
        json_object_put(o);
}
END_TEST

/* Valid MAC and signature over plaintexts that must still be refused. */
static const struct {
        const char *blocks;
        size_t len;
        size_t secret_len;
        const char *label;
        EnvelopeError expect;
} crafted[] = {
        /* padding byte 0, 9, inconsistent, a whole block of 0x09 */
        { "1234567\x00", 8, 32, NULL, ENVELOPE_BAD_PADDING },
        { "1234567\x09", 8, 32, NULL, ENVELOPE_BAD_PADDING },
        { "123456\x01\x02", 8, 32, NULL, ENVELOPE_BAD_PADDING },
        { "12345\x02\x03\x03", 8, 32, NULL, ENVELOPE_BAD_PADDING },
        { "\x09\x09\x09\x09\x09\x09\x09\x09", 8, 32, NULL, ENVELOPE_BAD_PADDING },
        /* valid padding around invalid UTF-8: stray byte, overlong,
         * surrogate, truncated sequence, above U+10FFFF */
        { "ab\xff\x05\x05\x05\x05\x05", 8, 32, NULL, ENVELOPE_BAD_UTF8 },
        { "\xc0\xaf\x06\x06\x06\x06\x06\x06", 8, 32, NULL, ENVELOPE_BAD_UTF8 },
        { "\xed\xa0\x80\x05\x05\x05\x05\x05", 8, 32, NULL, ENVELOPE_BAD_UTF8 },
        { "ok\xe2\x82\x04\x04\x04\x04", 8, 32, NULL, ENVELOPE_BAD_UTF8 },
        { "\xf4\x90\x80\x80\x04\x04\x04\x04", 8, 32, NULL, ENVELOPE_BAD_UTF8 },
        { "a\x00" "b\x05\x05\x05\x05\x05", 8, 32, NULL, ENVELOPE_BAD_UTF8 },
        /* OAEP decrypts, but to the wrong thing: a secret of 31 or 33
         * bytes, or another label */
        { "1234567\x01", 8, 31, NULL, ENVELOPE_BAD_KEY },
        { "1234567\x01", 8, 33, NULL, ENVELOPE_BAD_KEY },
        { "1234567\x01", 8, 32, "securechat/1 envelope-kez", ENVELOPE_BAD_KEY },
        { "1234567\x01", 8, 32, "", ENVELOPE_BAD_KEY },
        /* and the control: all right */
        { "1234567\x01", 8, 32, NULL, ENVELOPE_OK },
};

START_TEST(test_crafted) {
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        json_object *o;
        Craft c;

        c = craft_default(crafted[_i].blocks, crafted[_i].len);
        c.secret_len = crafted[_i].secret_len;
        if (crafted[_i].label)
                c.label = crafted[_i].label;
        o = craft_envelope(&c);
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), crafted[_i].expect);
        json_object_put(o);
}
END_TEST

START_TEST(test_too_large) {
        EnvelopeOpenParams p = params_for("bob", BOB, ALICE);
        json_object *o = seal_json("alice", ALICE, "bob", BOB, NOW, "seventeen bytes!!", 17);

        p.max_text = 16;
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_TOO_LARGE);
        p.max_text = 17;
        ck_assert_envelope_error(open_json(o, &p, NULL, NULL), ENVELOPE_OK);
        json_object_put(o);
}
END_TEST

/* ---- Shape ---- */

typedef enum ShapeHow {
        SHAPE_DELETE,   /* remove the member */
        SHAPE_JSON,     /* replace with this JSON text */
        SHAPE_BYTES,    /* replace with base64 of n zero bytes */
        SHAPE_ADD,      /* add member with this JSON text */
} ShapeHow;

static const struct {
        const char *member;
        ShapeHow how;
        const char *json;
        size_t n;
        EnvelopeError expect;
} shapes[] = {
        { "v", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "suite", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "from", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "to", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "ek", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "iv", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "ct", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "mac", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        { "sig", SHAPE_DELETE, NULL, 0, ENVELOPE_MALFORMED },
        /* extra members */
        { "x", SHAPE_ADD, "1", 0, ENVELOPE_MALFORMED },
        { "V", SHAPE_ADD, "1", 0, ENVELOPE_MALFORMED },
        { "", SHAPE_ADD, "null", 0, ENVELOPE_MALFORMED },
        /* wrong JSON types */
        { "v", SHAPE_JSON, "\"1\"", 0, ENVELOPE_MALFORMED },
        { "v", SHAPE_JSON, "1.0", 0, ENVELOPE_MALFORMED },
        { "v", SHAPE_JSON, "true", 0, ENVELOPE_MALFORMED },
        { "v", SHAPE_JSON, "null", 0, ENVELOPE_MALFORMED },
        { "v", SHAPE_JSON, "[1]", 0, ENVELOPE_MALFORMED },
        { "suite", SHAPE_JSON, "1", 0, ENVELOPE_MALFORMED },
        { "suite", SHAPE_JSON, "[\"rsa-oaep-sha256+des-ede3-cbc+hmac-sha256\"]", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "5", 0, ENVELOPE_MALFORMED },
        { "from", SHAPE_JSON, "5", 0, ENVELOPE_MALFORMED },
        { "from", SHAPE_JSON, "null", 0, ENVELOPE_MALFORMED },
        { "to", SHAPE_JSON, "[]", 0, ENVELOPE_MALFORMED },
        { "to", SHAPE_JSON, "{\"name\":\"bob\"}", 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_JSON, "\"1700000000\"", 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_JSON, "1700000000.5", 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_JSON, "1.7e9", 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_JSON, "-1", 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_JSON, "9007199254740992", 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_JSON, "18446744073709551615", 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_JSON, "99999999999999999999999", 0, ENVELOPE_MALFORMED },
        { "ts", SHAPE_JSON, "false", 0, ENVELOPE_MALFORMED },
        { "ek", SHAPE_JSON, "{}", 0, ENVELOPE_MALFORMED },
        { "iv", SHAPE_JSON, "1", 0, ENVELOPE_MALFORMED },
        { "ct", SHAPE_JSON, "true", 0, ENVELOPE_MALFORMED },
        { "mac", SHAPE_JSON, "null", 0, ENVELOPE_MALFORMED },
        { "sig", SHAPE_JSON, "[]", 0, ENVELOPE_MALFORMED },
        /* bad base64: 16 bytes are "AAAAAAAAAAAAAAAAAAAAAA==" */
        { "id", SHAPE_JSON, "\"AAAAAAAAAAAAAAAAAAAAAA\"", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "\"AAAAAAAAAAAAAAAAAAAAAA=\"", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "\"AAAAAAAAAAAAAAAAAAAAAA===\"", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "\"AAAAAAAAAAAAAAAAAAAAAB==\"", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "\"AAAAAAAAAAAA AAAAAAAAAA==\"", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "\"AAAAAAAAAAAAAAAAAAAAAA==\\n\"", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "\"AAAAAAAAAAAAAAAAAAAA-_==\"", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "\"AAAAAAAAAAAAAAAAAAAAAA==AAAA\"", 0, ENVELOPE_MALFORMED },
        { "id", SHAPE_JSON, "\"AAAAAAAAAA\\u0000AAAAAAAAAAA==\"", 0, ENVELOPE_MALFORMED },
        { "iv", SHAPE_JSON, "\"\"", 0, ENVELOPE_MALFORMED },
        { "mac", SHAPE_JSON, "\"====\"", 0, ENVELOPE_MALFORMED },
        /* wrong sizes */
        { "id", SHAPE_BYTES, NULL, 15, ENVELOPE_MALFORMED },
        { "id", SHAPE_BYTES, NULL, 17, ENVELOPE_MALFORMED },
        { "iv", SHAPE_BYTES, NULL, 7, ENVELOPE_MALFORMED },
        { "iv", SHAPE_BYTES, NULL, 9, ENVELOPE_MALFORMED },
        { "iv", SHAPE_BYTES, NULL, 16, ENVELOPE_MALFORMED },
        { "mac", SHAPE_BYTES, NULL, 31, ENVELOPE_MALFORMED },
        { "mac", SHAPE_BYTES, NULL, 33, ENVELOPE_MALFORMED },
        { "ek", SHAPE_BYTES, NULL, 0, ENVELOPE_MALFORMED },
        { "ek", SHAPE_BYTES, NULL, 255, ENVELOPE_MALFORMED },
        { "ek", SHAPE_BYTES, NULL, 513, ENVELOPE_MALFORMED },
        { "sig", SHAPE_BYTES, NULL, 128, ENVELOPE_MALFORMED },
        { "sig", SHAPE_BYTES, NULL, 255, ENVELOPE_MALFORMED },
        { "sig", SHAPE_BYTES, NULL, 513, ENVELOPE_MALFORMED },
        { "ct", SHAPE_BYTES, NULL, 0, ENVELOPE_MALFORMED },
        { "ct", SHAPE_BYTES, NULL, 7, ENVELOPE_MALFORMED },
        { "ct", SHAPE_BYTES, NULL, 9, ENVELOPE_MALFORMED },
        { "ct", SHAPE_BYTES, NULL, 20, ENVELOPE_MALFORMED },
        /* bad user names */
        { "from", SHAPE_JSON, "\"Alice\"", 0, ENVELOPE_MALFORMED },
        { "from", SHAPE_JSON, "\"\"", 0, ENVELOPE_MALFORMED },
        { "from", SHAPE_JSON, "\"-alice\"", 0, ENVELOPE_MALFORMED },
        { "from", SHAPE_JSON, "\"al ice\"", 0, ENVELOPE_MALFORMED },
        { "from", SHAPE_JSON, "\"a23456789012345678901234567890123\"", 0, ENVELOPE_MALFORMED },
        { "to", SHAPE_JSON, "\"bo\\u0000b\"", 0, ENVELOPE_MALFORMED },
        { "to", SHAPE_JSON, "\"bob\\u0000\"", 0, ENVELOPE_MALFORMED },
        { "to", SHAPE_JSON, "\"b\\u00f6b\"", 0, ENVELOPE_MALFORMED },
        /* the edges that are fine */
        { "from", SHAPE_JSON, "\"a2345678901234567890123456789012\"", 0, ENVELOPE_OK },
        { "ts", SHAPE_JSON, "0", 0, ENVELOPE_OK },
        { "ts", SHAPE_JSON, "9007199254740991", 0, ENVELOPE_OK },
        { "ek", SHAPE_BYTES, NULL, 256, ENVELOPE_OK },
        { "ek", SHAPE_BYTES, NULL, 512, ENVELOPE_OK },
        { "sig", SHAPE_BYTES, NULL, 512, ENVELOPE_OK },
        { "ct", SHAPE_BYTES, NULL, 8, ENVELOPE_OK },
        { "ct", SHAPE_BYTES, NULL, 4096, ENVELOPE_OK },
        /* version and suite come first, before the rest of the shape */
        { "v", SHAPE_JSON, "2", 0, ENVELOPE_BAD_VERSION },
        { "v", SHAPE_JSON, "-1", 0, ENVELOPE_MALFORMED },
        { "suite", SHAPE_JSON, "\"\"", 0, ENVELOPE_BAD_SUITE },
        { "suite", SHAPE_JSON, "\"rsa-oaep-sha256+des-ede3-cbc+hmac-sha256\\u0000\"", 0, ENVELOPE_BAD_SUITE },
        { "suite", SHAPE_JSON, "\"rsa-oaep-sha256+des-ede3-cbc+hmac-sha25\"", 0, ENVELOPE_BAD_SUITE },
};

START_TEST(test_shape) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        EnvelopeError error = _ENVELOPE_ERROR_MAX;
        json_object *o;
        int r;

        o = seal_json("alice", ALICE, "bob", BOB, NOW, "shape", 5);

        switch (shapes[_i].how) {
        case SHAPE_DELETE:
                ck_assert(json_object_object_get_ex(o, shapes[_i].member, NULL));
                json_object_object_del(o, shapes[_i].member);
                break;
        case SHAPE_JSON:
                ck_assert(json_object_object_get_ex(o, shapes[_i].member, NULL));
                json_set(o, shapes[_i].member, json_parse(shapes[_i].json));
                break;
        case SHAPE_ADD:
                ck_assert(!json_object_object_get_ex(o, shapes[_i].member, NULL));
                json_set(o, shapes[_i].member, json_parse(shapes[_i].json));
                break;
        case SHAPE_BYTES: {
                _cleanup_(freep) uint8_t *zero = calloc(1, shapes[_i].n + 1);

                ck_assert_ptr_nonnull(zero);
                json_set_b64(o, shapes[_i].member, zero, shapes[_i].n);
                break;
        }
        }

        r = envelope_from_json(o, &e, &error);
        ck_assert_envelope_error(error, shapes[_i].expect);
        if (shapes[_i].expect == ENVELOPE_OK) {
                ck_assert_int_eq(r, 0);
                ck_assert_ptr_nonnull(e);
        } else {
                ck_assert_int_eq(r, -EBADMSG);
                ck_assert_ptr_null(e);
        }
        json_object_put(o);
}
END_TEST

START_TEST(test_shape_not_object) {
        static const char *const texts_[] = { "[]", "\"envelope\"", "1", "null", "true" };
        Envelope *e = NULL;
        EnvelopeError error;

        for (size_t i = 0; i < ELEMENTSOF(texts_); i++) {
                json_object *o = json_tokener_parse(texts_[i]);

                error = ENVELOPE_OK;
                ck_assert_int_eq(envelope_from_json(o, &e, &error), -EBADMSG);
                ck_assert_envelope_error(error, ENVELOPE_MALFORMED);
                ck_assert_ptr_null(e);
                json_object_put(o);
        }
        /* ret_error is optional */
        ck_assert_int_eq(envelope_from_json(NULL, &e, NULL), -EBADMSG);
}
END_TEST

START_TEST(test_error_names) {
        static const char *const names[] = {
                "ok", "malformed", "bad_version", "bad_suite", "wrong_recipient",
                "unknown_sender", "bad_signature", "from_future", "expired", "replay", "duplicate",
                "bad_key", "bad_mac", "bad_padding", "bad_utf8", "too_large",
        };

        ck_assert_uint_eq(ELEMENTSOF(names), _ENVELOPE_ERROR_MAX);
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                ck_assert_str_eq(envelope_error_to_string((EnvelopeError) i), names[i]);
        ck_assert_ptr_null(envelope_error_to_string(_ENVELOPE_ERROR_MAX));
        ck_assert_ptr_null(envelope_error_to_string((EnvelopeError) -1));
}
END_TEST

/* ---- Byte-exactness against the specification ---- */

/* H built here from section 7 (not by envelope_mac_input) carries the MAC
 * and the signature of a sealed envelope. */
START_TEST(test_h_by_hand) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        _cleanup_(freep) uint8_t *secret = NULL, *h2 = NULL;
        uint8_t okm[56], mac[32];
        size_t secret_len, h2_len;
        Bytes h = {}, s;

        ck_assert_int_eq(envelope_seal("alice", keys[ALICE], "bob", keys[BOB], NOW, "by hand", 7, &e), 0);

        /* Written out field by field, lengths spelt as bytes. */
        bytes_add(&h, "\x00\x00\x00\x15" "securechat/1 envelope", 4 + 21);
        bytes_add(&h, "\x00\x00\x00\x28" "rsa-oaep-sha256+des-ede3-cbc+hmac-sha256", 4 + 40);
        bytes_add(&h, "\x00\x00\x00\x10", 4);
        bytes_add(&h, e->id, 16);
        bytes_add(&h, "\x00\x00\x00\x05" "alice", 4 + 5);
        bytes_add(&h, "\x00\x00\x00\x03" "bob", 4 + 3);
        bytes_add(&h, "\x00\x00\x00\x00\x65\x53\xf1\x00", 8);     /* 1700000000 */
        bytes_add(&h, "\x00\x00\x01\x00", 4);                     /* 256 */
        bytes_add(&h, e->ek, 256);
        bytes_add(&h, "\x00\x00\x00\x08", 4);
        bytes_add(&h, e->iv, 8);
        bytes_add(&h, "\x00\x00\x00\x08", 4);                     /* "by hand" + 1 pad */
        ck_assert_uint_eq(e->ct_len, 8);
        bytes_add(&h, e->ct, 8);
        ck_assert_uint_eq(h.len, 25 + 44 + 20 + 9 + 7 + 8 + 260 + 12 + 12);

        /* The generic builder agrees, and so does the library's. */
        s = spec_h_of(e);
        ck_assert_uint_eq(s.len, h.len);
        ck_assert_mem_eq(s.data, h.data, h.len);
        bytes_done(&s);
        ck_assert_int_eq(envelope_mac_input(e, &h2, &h2_len), 0);
        ck_assert_uint_eq(h2_len, h.len);
        ck_assert_mem_eq(h2, h.data, h.len);

        /* mac = HMAC-SHA256(okm[24..56), H) */
        ck_assert_int_eq(rsa_oaep_decrypt(keys[BOB], "securechat/1 envelope-key", 25,
                                          e->ek, e->ek_len, &secret, &secret_len), 0);
        ck_assert_uint_eq(secret_len, 32);
        spec_derive(e->id, secret, secret_len, okm);
        hmac_sha256(okm + 24, 32, h.data, h.len, mac);
        ck_assert_mem_eq(mac, e->mac, 32);

        /* sig = PSS_alice(H || lp(mac)) */
        bytes_add(&h, "\x00\x00\x00\x20", 4);
        bytes_add(&h, e->mac, 32);
        ck_assert_int_eq(rsa_pss_verify(keys[ALICE], h.data, h.len, e->sig, e->sig_len), 0);
        /* ... and not over H alone */
        ck_assert_int_eq(rsa_pss_verify(keys[ALICE], h.data, h.len - 36, e->sig, e->sig_len), -EBADMSG);

        /* ct = DES-EDE3-CBC(okm[0..24), iv, "by hand" || 0x01) */
        {
                uint8_t pt[8];

                ck_assert_int_eq(tdes_cbc_decrypt_raw(okm, e->iv, e->ct, 8, pt), 0);
                ck_assert_mem_eq(pt, "by hand\x01", 8);
        }
        bytes_done(&h);
}
END_TEST

/* ---- openssl, as the independent implementation ---- */

typedef struct TmpDir {
        char path[256];
} TmpDir;

static void tmpdir_make(TmpDir *d) {
        const char *tmp = getenv("TMPDIR");
        int n;

        n = snprintf(d->path, sizeof(d->path), "%s/test-envelope.XXXXXX", tmp ? tmp : "/tmp");
        ck_assert(n > 0 && (size_t) n < sizeof(d->path));
        ck_assert_ptr_nonnull(mkdtemp(d->path));
}

static void tmpdir_remove(TmpDir *d) {
        char cmd[512];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
        ck_assert_int_eq(system(cmd), 0);
}

static const char *tmp_file(const TmpDir *d, const char *name) {
        static char paths[4][512];
        static unsigned next;
        char *p = paths[next++ % ELEMENTSOF(paths)];

        snprintf(p, sizeof(paths[0]), "%s/%s", d->path, name);
        return p;
}

static void write_file(const TmpDir *d, const char *name, const void *data, size_t len) {
        FILE *f = fopen(tmp_file(d, name), "we");

        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
}

static void read_file(const TmpDir *d, const char *name, uint8_t **ret, size_t *ret_len) {
        FILE *f = fopen(tmp_file(d, name), "re");
        uint8_t *data = malloc(65536);
        size_t n;

        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(data);
        n = fread(data, 1, 65536, f);
        ck_assert(!ferror(f));
        fclose(f);
        *ret = data;
        *ret_len = n;
}

static char *hex(const void *data, size_t len) {
        static const char digits[] = "0123456789abcdef";
        const uint8_t *p = data;
        char *s = malloc(2 * len + 1);

        ck_assert_ptr_nonnull(s);
        for (size_t i = 0; i < len; i++) {
                s[2 * i] = digits[p[i] >> 4];
                s[2 * i + 1] = digits[p[i] & 15];
        }
        s[2 * len] = '\0';
        return s;
}

/* Run an openssl command in dir d; returns its exit status. Output goes to
 * d/log, which is shown when a command that had to succeed failed. */
_printf_(2, 3)
static int openssl(const TmpDir *d, const char *fmt, ...) {
        char args[4096], cmd[8192];
        va_list ap;
        int n, status;

        va_start(ap, fmt);
        n = vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        ck_assert(n > 0 && (size_t) n < sizeof(args));
        n = snprintf(cmd, sizeof(cmd), "cd '%s' && openssl %s >log 2>&1", d->path, args);
        ck_assert(n > 0 && (size_t) n < sizeof(cmd));

        status = system(cmd);
        ck_assert_int_ne(status, -1);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* The log of the last command, for failure messages. */
static const char *openssl_log(const TmpDir *d) {
        static char text[2048];
        FILE *f = fopen(tmp_file(d, "log"), "re");
        size_t n = 0;

        if (f) {
                n = fread(text, 1, sizeof(text) - 1, f);
                fclose(f);
        }
        text[n] = '\0';
        return text;
}

#define ck_openssl(d, ...)                                                      \
        do {                                                                    \
                int _r = openssl(d, __VA_ARGS__);                               \
                ck_assert_msg(_r == 0, "openssl failed (%d): %s", _r, openssl_log(d)); \
        } while (0)

static const char oaep_opts[] =
        "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256";
static const char pss_opts[] =
        "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sigopt rsa_mgf1_md:sha256";

/* HKDF through `openssl kdf`, into okm.bin. */
static void openssl_hkdf(const TmpDir *d, const uint8_t *secret, size_t secret_len,
                         const uint8_t id[16], uint8_t okm[56]) {
        _cleanup_(freep) char *hsecret = hex(secret, secret_len), *hid = hex(id, 16), *hinfo = NULL;
        _cleanup_(freep) uint8_t *data = NULL;
        size_t len;

        hinfo = hex(CTX_HKDF_INFO_PREFIX PROTOCOL_SUITE, strlen(CTX_HKDF_INFO_PREFIX PROTOCOL_SUITE));
        ck_openssl(d, "kdf -keylen 56 -kdfopt digest:SHA256 -kdfopt hexkey:%s -kdfopt hexsalt:%s "
                   "-kdfopt hexinfo:%s -binary -out okm.bin HKDF", hsecret, hid, hinfo);
        read_file(d, "okm.bin", &data, &len);
        ck_assert_uint_eq(len, 56);
        memcpy(okm, data, 56);
}

/* openssl opens an envelope we sealed: OAEP with the label, HKDF, HMAC,
 * DES-EDE3-CBC with PKCS#7, and the PSS signature. */
START_TEST(test_openssl_opens_ours) {
        static const char text[] = "opened by openssl \xe2\x9c\x93";
        _cleanup_(envelope_freep) Envelope *e = NULL;
        _cleanup_(freep) uint8_t *secret = NULL, *mac = NULL, *pt = NULL;
        _cleanup_(freep) char *hlabel = NULL, *hkenc = NULL, *hkmac = NULL, *hiv = NULL;
        size_t secret_len, mac_len, pt_len;
        uint8_t okm[56];
        Bytes h, s;
        TmpDir d;

        tmpdir_make(&d);
        ck_assert_int_eq(envelope_seal("alice", keys[ALICE_3072], "bob", keys[BOB], NOW,
                                       text, strlen(text), &e), 0);
        ck_assert_int_eq(rsa_key_save_private(keys[BOB], tmp_file(&d, "bob.pem")), 0);
        ck_assert_int_eq(rsa_key_save_public(keys[ALICE_3072], tmp_file(&d, "alice.pub")), 0);

        /* 2. ek -> secret */
        write_file(&d, "ek.bin", e->ek, e->ek_len);
        hlabel = hex(CTX_ENVELOPE_KEY, strlen(CTX_ENVELOPE_KEY));
        ck_openssl(&d, "pkeyutl -decrypt -inkey bob.pem -in ek.bin -out secret.bin %s "
                   "-pkeyopt rsa_oaep_label:%s", oaep_opts, hlabel);
        read_file(&d, "secret.bin", &secret, &secret_len);
        ck_assert_uint_eq(secret_len, 32);

        /* 3. secret -> k_enc, k_mac */
        openssl_hkdf(&d, secret, secret_len, e->id, okm);
        hkenc = hex(okm, 24);
        hkmac = hex(okm + 24, 32);

        /* 5, 6. H (by hand) -> mac */
        h = spec_h_of(e);
        write_file(&d, "h.bin", h.data, h.len);
        ck_openssl(&d, "mac -digest SHA256 -macopt hexkey:%s -binary -in h.bin -out mac.bin HMAC", hkmac);
        read_file(&d, "mac.bin", &mac, &mac_len);
        ck_assert_uint_eq(mac_len, 32);
        ck_assert_mem_eq(mac, e->mac, 32);

        /* 7. sig over H || lp(mac) */
        s = spec_signed(&h, e->mac);
        write_file(&d, "signed.bin", s.data, s.len);
        write_file(&d, "sig.bin", e->sig, e->sig_len);
        ck_openssl(&d, "dgst -sha256 %s -verify alice.pub -signature sig.bin signed.bin", pss_opts);
        /* the same check must be able to fail */
        e->sig[10] ^= 1;
        write_file(&d, "badsig.bin", e->sig, e->sig_len);
        ck_assert_int_ne(openssl(&d, "dgst -sha256 %s -verify alice.pub -signature badsig.bin signed.bin",
                                 pss_opts), 0);

        /* 4. ct -> text */
        write_file(&d, "ct.bin", e->ct, e->ct_len);
        hiv = hex(e->iv, 8);
        ck_openssl(&d, "enc -d -des-ede3-cbc -K %s -iv %s -in ct.bin -out pt.bin", hkenc, hiv);
        read_file(&d, "pt.bin", &pt, &pt_len);
        ck_assert_uint_eq(pt_len, strlen(text));
        ck_assert_mem_eq(pt, text, pt_len);

        secure_wipe(okm, sizeof(okm));
        bytes_done(&h);
        bytes_done(&s);
        tmpdir_remove(&d);
}
END_TEST

/* openssl seals an envelope (every cryptographic step) and we open it. */
START_TEST(test_we_open_openssls) {
        static const char text[] = "sealed by openssl";
        _cleanup_(freep) uint8_t *ek = NULL, *ct = NULL, *mac = NULL, *sig = NULL;
        _cleanup_(freep) char *hlabel = NULL, *hkenc = NULL, *hkmac = NULL, *hiv = NULL, *out = NULL;
        EnvelopeOpenParams p = params_for("bob", BOB_3072, ALICE);
        uint8_t secret[32], id[16], iv[8], okm[56];
        size_t ek_len, ct_len, mac_len, sig_len, out_len;
        json_object *o;
        Bytes h, s;
        TmpDir d;

        tmpdir_make(&d);
        ck_assert_int_eq(rsa_key_save_private(keys[ALICE], tmp_file(&d, "alice.pem")), 0);
        ck_assert_int_eq(rsa_key_save_public(keys[BOB_3072], tmp_file(&d, "bob.pub")), 0);
        ck_assert_int_eq(random_bytes(secret, sizeof(secret)), 0);
        ck_assert_int_eq(random_bytes(id, sizeof(id)), 0);
        ck_assert_int_eq(random_bytes(iv, sizeof(iv)), 0);

        write_file(&d, "secret.bin", secret, sizeof(secret));
        hlabel = hex(CTX_ENVELOPE_KEY, strlen(CTX_ENVELOPE_KEY));
        ck_openssl(&d, "pkeyutl -encrypt -pubin -inkey bob.pub -in secret.bin -out ek.bin %s "
                   "-pkeyopt rsa_oaep_label:%s", oaep_opts, hlabel);
        read_file(&d, "ek.bin", &ek, &ek_len);
        ck_assert_uint_eq(ek_len, 384);

        openssl_hkdf(&d, secret, sizeof(secret), id, okm);
        hkenc = hex(okm, 24);
        hkmac = hex(okm + 24, 32);
        hiv = hex(iv, 8);
        write_file(&d, "pt.bin", text, strlen(text));
        ck_openssl(&d, "enc -e -des-ede3-cbc -K %s -iv %s -in pt.bin -out ct.bin", hkenc, hiv);
        read_file(&d, "ct.bin", &ct, &ct_len);
        ck_assert_uint_eq(ct_len, 24);

        h = spec_h("rsa-oaep-sha256+des-ede3-cbc+hmac-sha256", id, "alice", "bob", NOW,
                   ek, ek_len, iv, ct, ct_len);
        write_file(&d, "h.bin", h.data, h.len);
        ck_openssl(&d, "mac -digest SHA256 -macopt hexkey:%s -binary -in h.bin -out mac.bin HMAC", hkmac);
        read_file(&d, "mac.bin", &mac, &mac_len);
        ck_assert_uint_eq(mac_len, 32);

        s = spec_signed(&h, mac);
        write_file(&d, "signed.bin", s.data, s.len);
        ck_openssl(&d, "dgst -sha256 %s -sign alice.pem -out sig.bin signed.bin", pss_opts);
        read_file(&d, "sig.bin", &sig, &sig_len);
        ck_assert_uint_eq(sig_len, 256);

        o = json_object_new_object();
        ck_assert_ptr_nonnull(o);
        json_set(o, "v", json_object_new_int(1));
        json_set(o, "suite", json_object_new_string("rsa-oaep-sha256+des-ede3-cbc+hmac-sha256"));
        json_set_b64(o, "id", id, sizeof(id));
        json_set(o, "from", json_object_new_string("alice"));
        json_set(o, "to", json_object_new_string("bob"));
        json_set(o, "ts", json_object_new_int64((int64_t) NOW));
        json_set_b64(o, "ek", ek, ek_len);
        json_set_b64(o, "iv", iv, sizeof(iv));
        json_set_b64(o, "ct", ct, ct_len);
        json_set_b64(o, "mac", mac, mac_len);
        json_set_b64(o, "sig", sig, sig_len);

        ck_assert_envelope_error(open_json(o, &p, &out, &out_len), ENVELOPE_OK);
        ck_assert_uint_eq(out_len, strlen(text));
        ck_assert_str_eq(out, text);

        secure_wipe(secret, sizeof(secret));
        secure_wipe(okm, sizeof(okm));
        json_object_put(o);
        bytes_done(&h);
        bytes_done(&s);
        tmpdir_remove(&d);
}
END_TEST

static TCase *tcase_new(const char *name) {
        TCase *tc = tcase_create(name);

        tcase_add_unchecked_fixture(tc, keys_setup, NULL);
        tcase_set_timeout(tc, 120);
        return tc;
}

static Suite *envelope_suite(void) {
        Suite *s = suite_create("envelope");
        TCase *tc;

        tc = tcase_new("seal-open");
        tcase_add_loop_test(tc, test_round_trip, 0, ELEMENTSOF(pairs));
        tcase_add_test(tc, test_max_size);
        tcase_add_test(tc, test_json_shape);
        tcase_add_test(tc, test_seal_refuses);
        tcase_add_test(tc, test_fresh_per_message);
        suite_add_tcase(s, tc);

        tc = tcase_new("refusals");
        tcase_add_loop_test(tc, test_alteration, 0, ELEMENTSOF(alterations));
        tcase_add_test(tc, test_wrong_recipient);
        tcase_add_test(tc, test_unknown_sender);
        tcase_add_test(tc, test_other_sender_key);
        tcase_add_test(tc, test_other_recipient_key);
        tcase_add_loop_test(tc, test_open_checks_struct, 0, _STRUCT_MAX);
        tcase_add_loop_test(tc, test_time, 0, ELEMENTSOF(times));
        tcase_add_test(tc, test_replay);
        tcase_add_test(tc, test_replay_store_error);
        tcase_add_test(tc, test_order_signature_before_time);
        tcase_add_test(tc, test_crafted_valid);
        tcase_add_loop_test(tc, test_crafted, 0, ELEMENTSOF(crafted));
        tcase_add_test(tc, test_too_large);
        suite_add_tcase(s, tc);

        tc = tcase_new("shape");
        tcase_add_loop_test(tc, test_shape, 0, ELEMENTSOF(shapes));
        tcase_add_test(tc, test_shape_not_object);
        tcase_add_test(tc, test_error_names);
        suite_add_tcase(s, tc);

        tc = tcase_new("byte-exact");
        tcase_add_test(tc, test_h_by_hand);
        tcase_add_test(tc, test_openssl_opens_ours);
        tcase_add_test(tc, test_we_open_openssls);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        return run_suite(envelope_suite());
}
