/* SPDX-License-Identifier: MIT */
/*
 * Suite 2 (common/suite2.c) against the vectors of tests/vectors/suite2-*.json,
 * which tests/vectors/gen-suite2.py computes with python3-cryptography from
 * the page alone: the KDF chains, the root key of a session start and a whole
 * conversation (headers, ciphertexts, MACs, transcripts) must agree byte for
 * byte. Then the behaviour the page promises: out-of-order, lost, duplicate
 * and replayed messages, the skipped-key bounds, refusals of forged or
 * altered messages with their own names, and strict parsers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "crypto.h"
#include "macro.h"
#include "rsa.h"
#include "suite2.h"
#include "util.h"

#include "test-main.h"

#define NOW UINT64_C(1700000000)

enum { ALICE, BOB, MALLORY, _KEY_MAX };
static RsaKey *keys[_KEY_MAX];

static void keys_setup(void) {
        for (size_t i = 0; i < _KEY_MAX; i++)
                if (!keys[i])
                        ck_assert_int_eq(rsa_key_generate(2048, &keys[i]), 0);
}

/* ---- Vector helpers ---- */

static json_object *load(const char *name) {
        json_object *o = json_object_from_file(vector_path(name));

        ck_assert_msg(o, "cannot load %s", vector_path(name));
        return o;
}

static json_object *get(json_object *o, const char *key) {
        json_object *v;

        ck_assert_msg(json_object_object_get_ex(o, key, &v), "no member %s", key);
        return v;
}

/* Hex member of the expected length (SIZE_MAX: any); caller frees. */
static uint8_t *hex(json_object *o, const char *key, size_t want, size_t *ret_len) {
        uint8_t *b;
        size_t len;

        ck_assert_int_eq(hex_decode(json_object_get_string(get(o, key)), &b, &len), 0);
        if (want != SIZE_MAX)
                ck_assert_uint_eq(len, want);
        if (ret_len)
                *ret_len = len;
        return b;
}

static void hex_into(json_object *o, const char *key, uint8_t *out, size_t len) {
        _cleanup_(freep) uint8_t *b = hex(o, key, len, NULL);

        memcpy(out, b, len);
}

static void assert_hex(json_object *o, const char *key, const uint8_t *data, size_t len) {
        size_t want_len;
        _cleanup_(freep) uint8_t *want = hex(o, key, SIZE_MAX, &want_len);

        ck_assert_uint_eq(len, want_len);
        ck_assert_msg(memcmp(data, want, len) == 0, "%s differs from the vector", key);
}

/* Randomness from a list of 32-byte values, as the vectors draw it. */
typedef struct Draws {
        uint8_t keys[8][32];
        size_t n, next;
} Draws;

static int draw(void *userdata, void *buf, size_t len) {
        Draws *d = userdata;

        if (len != 32 || d->next >= d->n)
                return -ENODATA;
        memcpy(buf, d->keys[d->next++], 32);
        return 0;
}

static void draws_load(Draws *d, json_object *arr) {
        d->n = json_object_array_length(arr);
        d->next = 0;
        ck_assert_uint_le(d->n, ELEMENTSOF(d->keys));
        for (size_t i = 0; i < d->n; i++) {
                _cleanup_(freep) uint8_t *b = NULL;
                size_t len;

                ck_assert_int_eq(hex_decode(json_object_get_string(
                                         json_object_array_get_idx(arr, i)), &b, &len), 0);
                ck_assert_uint_eq(len, 32);
                memcpy(d->keys[i], b, 32);
        }
}

/* ---- Vectors ---- */

START_TEST(test_kdf_ck_vectors) {
        json_object *v = load("suite2-kdf.json"), *ck = get(v, "kdf_ck");
        json_object *steps = get(ck, "steps");
        uint8_t c[32], mk[32], enc[24], mac[32], iv[8];

        hex_into(ck, "ck0", c, 32);
        ck_assert_uint_eq(json_object_array_length(steps), 5);
        for (size_t i = 0; i < json_object_array_length(steps); i++) {
                json_object *s = json_object_array_get_idx(steps, i);

                suite2_kdf_ck(c, c, mk);
                assert_hex(s, "ck", c, 32);
                assert_hex(s, "mk", mk, 32);
                suite2_message_keys(mk, enc, mac, iv);
                assert_hex(s, "k_enc", enc, 24);
                assert_hex(s, "k_mac", mac, 32);
                assert_hex(s, "iv", iv, 8);
        }
        json_object_put(v);
}
END_TEST

START_TEST(test_kdf_rk_vectors) {
        json_object *v = load("suite2-kdf.json"), *steps = get(v, "kdf_rk");
        uint8_t rk[32], priv[32], peer[32], dh[32], rk2[32], ck2[32];

        ck_assert_uint_eq(json_object_array_length(steps), 3);
        for (size_t i = 0; i < json_object_array_length(steps); i++) {
                json_object *s = json_object_array_get_idx(steps, i);

                hex_into(s, "rk", rk, 32);
                hex_into(s, "priv", priv, 32);
                hex_into(s, "peer_pub", peer, 32);
                ck_assert_int_eq(x25519_shared(priv, peer, dh), 0);
                assert_hex(s, "dh", dh, 32);
                suite2_kdf_rk(rk, dh, rk2, ck2);
                assert_hex(s, "rk_out", rk2, 32);
                assert_hex(s, "ck_out", ck2, 32);
        }
        json_object_put(v);
}
END_TEST

START_TEST(test_root_key_vectors) {
        json_object *v = load("suite2-session.json"), *starts = get(v, "root_keys");

        ck_assert_uint_eq(json_object_array_length(starts), 2);
        for (size_t i = 0; i < 2; i++) {
                json_object *s = json_object_array_get_idx(starts, i);
                uint8_t ek[32], ek_pub[32], spk[32], spk_pub[32], opk[32], opk_pub[32];
                uint8_t secret[32], dh1[32], dh1b[32], dh2[32], sk[32];
                bool with_opk = !json_object_is_type(get(s, "opk_priv"), json_type_null);

                ck_assert(with_opk == (i == 0));
                hex_into(s, "ek_priv", ek, 32);
                hex_into(s, "spk_priv", spk, 32);
                hex_into(s, "secret", secret, 32);
                x25519_public(ek, ek_pub);
                x25519_public(spk, spk_pub);
                assert_hex(s, "ek_pub", ek_pub, 32);
                assert_hex(s, "spk_pub", spk_pub, 32);

                /* Both ends compute the same DH. */
                ck_assert_int_eq(x25519_shared(ek, spk_pub, dh1), 0);
                ck_assert_int_eq(x25519_shared(spk, ek_pub, dh1b), 0);
                ck_assert(memcmp(dh1, dh1b, 32) == 0);
                assert_hex(s, "dh1", dh1, 32);
                if (with_opk) {
                        hex_into(s, "opk_priv", opk, 32);
                        x25519_public(opk, opk_pub);
                        ck_assert_int_eq(x25519_shared(ek, opk_pub, dh2), 0);
                        assert_hex(s, "dh2", dh2, 32);
                }
                ck_assert_int_eq(suite2_root_key("alice", "bob", ek_pub, spk_pub,
                                                 with_opk ? opk_pub : NULL, dh1,
                                                 with_opk ? dh2 : NULL, secret, sk), 0);
                assert_hex(s, "root_key", sk, 32);
        }
        json_object_put(v);
}
END_TEST

START_TEST(test_encoding_vectors) {
        json_object *v = load("suite2-session.json"), *e = get(v, "encodings");
        _cleanup_(freep) uint8_t *t = NULL, *b1 = NULL, *b2 = NULL, *raw = NULL;
        PrekeyBundle b = {}, back;
        uint8_t spk_priv[32];
        size_t t_len, b1_len, b2_len, raw_len;

        hex_into(json_object_array_get_idx(get(v, "root_keys"), 0), "spk_priv", spk_priv, 32);
        b.spk.id = 7;
        x25519_public(spk_priv, b.spk.pub);
        b.spk.created = 1700000000;
        b.spk.sig_len = 256;
        hex_into(e, "spk_sig", b.spk.sig, 256);

        ck_assert_int_eq(signed_prekey_transcript("bob", &b.spk, &t, &t_len), 0);
        assert_hex(e, "spk_transcript", t, t_len);

        ck_assert_int_eq(prekey_bundle_encode(&b, &b1, &b1_len), 0);
        assert_hex(e, "bundle_without_opk", b1, b1_len);
        ck_assert_int_eq(prekey_bundle_parse(b1, b1_len, &back), 0);
        ck_assert(!back.has_opk);
        ck_assert(memcmp(&back.spk, &b.spk, sizeof(b.spk)) == 0);

        b.has_opk = true;
        b.opk.id = 4242;
        raw = hex(json_object_array_get_idx(get(v, "root_keys"), 0), "opk_pub", 32, &raw_len);
        memcpy(b.opk.pub, raw, 32);
        ck_assert_int_eq(prekey_bundle_encode(&b, &b2, &b2_len), 0);
        assert_hex(e, "bundle_with_opk", b2, b2_len);
        ck_assert_int_eq(prekey_bundle_parse(b2, b2_len, &back), 0);
        ck_assert(back.has_opk && back.opk.id == 4242);
        ck_assert(memcmp(back.opk.pub, b.opk.pub, 32) == 0);
        json_object_put(v);
}
END_TEST

/* The conversation of the vector, in its order of events. */
typedef struct Convo {
        json_object *v;
        Ratchet *alice, *bob;
        Draws alice_draws, bob_draws;
        Suite2Random alice_rnd, bob_rnd;
} Convo;

static void convo_setup(Convo *c) {
        json_object *start, *rk0;
        uint8_t sk[32], spk_priv[32], spk_pub[32];
        RatchetHeader h = { .has_start = true, .has_opk = true };

        c->v = load("suite2-session.json");
        start = get(c->v, "start");
        rk0 = json_object_array_get_idx(get(c->v, "root_keys"), 0);
        hex_into(rk0, "root_key", sk, 32);
        hex_into(rk0, "spk_priv", spk_priv, 32);
        x25519_public(spk_priv, spk_pub);
        hex_into(start, "ek_pub", h.ek, 32);
        h.spk_id = (uint32_t) json_object_get_int64(get(start, "spk_id"));
        h.opk_id = (uint32_t) json_object_get_int64(get(start, "opk_id"));
        h.oaep_len = 256;
        hex_into(start, "oaep", h.oaep, 256);

        draws_load(&c->alice_draws, get(c->v, "alice_ratchet_keys"));
        draws_load(&c->bob_draws, get(c->v, "bob_ratchet_keys"));
        c->alice_rnd = (Suite2Random) { draw, &c->alice_draws };
        c->bob_rnd = (Suite2Random) { draw, &c->bob_draws };
        ck_assert_int_eq(ratchet_init_sender("alice", "bob", sk, spk_pub, &h, &c->alice_rnd,
                                             &c->alice), 0);
        ck_assert_int_eq(ratchet_init_receiver("bob", "alice", sk, spk_priv, h.ek, &c->bob), 0);
}

static void convo_done(Convo *c) {
        ratchet_free(c->alice);
        ratchet_free(c->bob);
        json_object_put(c->v);
}

static json_object *vec_msg(Convo *c, size_t i) {
        return json_object_array_get_idx(get(c->v, "messages"), i);
}

/* Seal message i of the vector and check every byte of it. */
static Suite2Message *convo_seal(Convo *c, size_t i) {
        json_object *vm = vec_msg(c, i);
        bool from_alice = strcmp(json_object_get_string(get(vm, "from")), "alice") == 0;
        const char *text = json_object_get_string(get(vm, "text"));
        _cleanup_(freep) uint8_t *t = NULL, *id = hex(vm, "id", 16, NULL), *signed_ = NULL;
        size_t t_len, s_len;
        Suite2Message *m;

        ck_assert_int_eq(suite2_seal(from_alice ? c->alice : c->bob, keys[from_alice ? ALICE : BOB],
                                     (uint64_t) json_object_get_int64(get(vm, "ts")), id, text,
                                     strlen(text), NULL, &m), 0);
        assert_hex(vm, "header", m->hdr, m->hdr_len);
        assert_hex(vm, "ct", m->ct, m->ct_len);
        assert_hex(vm, "mac", m->mac, 32);
        ck_assert_int_eq(suite2_transcript(m, &t, &t_len), 0);
        assert_hex(vm, "transcript", t, t_len);
        /* The signature covers transcript || lp(mac), exactly. */
        signed_ = hex(vm, "signed", SIZE_MAX, &s_len);
        ck_assert_int_eq(rsa_pss_verify(keys[from_alice ? ALICE : BOB], signed_, s_len, m->sig,
                                        m->sig_len), 0);
        return m;
}

static void convo_open(Convo *c, size_t i, const Suite2Message *m) {
        json_object *vm = vec_msg(c, i);
        bool to_bob = strcmp(json_object_get_string(get(vm, "to")), "bob") == 0;
        _cleanup_(freep) char *text = NULL;
        Suite2Error error = _SUITE2_ERROR_MAX;
        size_t len;

        ck_assert_int_eq(suite2_open(to_bob ? c->bob : c->alice, m, keys[to_bob ? ALICE : BOB],
                                     NOW, to_bob ? &c->bob_rnd : &c->alice_rnd, &text, &len,
                                     &error), 0);
        ck_assert_int_eq(error, SUITE2_OK);
        ck_assert_str_eq(text, json_object_get_string(get(vm, "text")));
        ck_assert_uint_eq(len, strlen(text));
}

START_TEST(test_conversation_vector) {
        _cleanup_(suite2_message_freep) Suite2Message *m0 = NULL, *m1 = NULL, *m2 = NULL,
                *m3 = NULL, *m4 = NULL;
        Convo c = {};

        convo_setup(&c);
        m0 = convo_seal(&c, 0);
        m1 = convo_seal(&c, 1);
        convo_open(&c, 0, m0);
        convo_open(&c, 1, m1);
        m2 = convo_seal(&c, 2);
        convo_open(&c, 2, m2);
        m3 = convo_seal(&c, 3);
        convo_open(&c, 3, m3);
        m4 = convo_seal(&c, 4);
        convo_open(&c, 4, m4);
        /* Every draw of the vector was used, and no other. */
        ck_assert_uint_eq(c.alice_draws.next, c.alice_draws.n);
        ck_assert_uint_eq(c.bob_draws.next, c.bob_draws.n);
        convo_done(&c);
}
END_TEST

/* A message sealed by hand from the vector's m0 message key, with any
 * plaintext bytes (unpadded, whole blocks) under a valid MAC and signature:
 * shows that padding and UTF-8 are checked on their own. */
static void crafted_m0(Convo *c, const void *data, size_t len, Suite2Message **ret) {
        json_object *vm = vec_msg(c, 0);
        _cleanup_(freep) uint8_t *t = NULL, *tbs = NULL;
        uint8_t mk[32], enc[24], mac_key[32], iv[8];
        Suite2Message *m = calloc(1, sizeof(*m));
        size_t t_len;

        ck_assert_ptr_nonnull(m);
        hex_into(vm, "mk", mk, 32);
        suite2_message_keys(mk, enc, mac_key, iv);
        hex_into(vm, "id", m->id, 16);
        strcpy(m->from, "alice");
        strcpy(m->to, "bob");
        m->ts = NOW;
        m->hdr = hex(vm, "header", SIZE_MAX, &m->hdr_len);
        m->ct = malloc(len);
        m->ct_len = len;
        ck_assert_int_eq(tdes_cbc_encrypt_raw(enc, iv, data, len, m->ct), 0);
        ck_assert_int_eq(suite2_transcript(m, &t, &t_len), 0);
        hmac_sha256(mac_key, 32, t, t_len, m->mac);
        tbs = malloc(t_len + 4 + 32);
        memcpy(tbs, t, t_len);
        memcpy(tbs + t_len, "\0\0\0\x20", 4);
        memcpy(tbs + t_len + 4, m->mac, 32);
        ck_assert_int_eq(rsa_pss_sign(keys[ALICE], tbs, t_len + 36, &m->sig, &m->sig_len), 0);
        *ret = m;
}

static const struct {
        const char *data;
        Suite2Error error;
} crafted[] = {
        { "hello!\0\x02", SUITE2_BAD_PADDING },           /* last byte 2, byte before 0 */
        { "hello!!\x09", SUITE2_BAD_PADDING },            /* over 8 */
        { "hello!!\0", SUITE2_BAD_PADDING },              /* zero */
        { "hell\xc3\x28\x02\x02", SUITE2_BAD_UTF8 },      /* invalid sequence */
        { "hello\0\x02\x02", SUITE2_BAD_UTF8 },           /* NUL */
        { "hello!\x02\x02", SUITE2_OK },                  /* the control */
};

START_TEST(test_crafted) {
        _cleanup_(suite2_message_freep) Suite2Message *m = NULL;
        _cleanup_(freep) char *text = NULL;
        Suite2Error error = _SUITE2_ERROR_MAX;
        size_t len;
        Convo c = {};
        int r;

        convo_setup(&c);
        crafted_m0(&c, crafted[_i].data, 8, &m);
        r = suite2_open(c.bob, m, keys[ALICE], NOW, &c.bob_rnd, &text, &len, &error);
        ck_assert_int_eq(r, crafted[_i].error == SUITE2_OK ? 0 : -EBADMSG);
        ck_assert_int_eq(error, crafted[_i].error);
        if (r == 0)
                ck_assert_str_eq(text, "hello!");
        convo_done(&c);
}
END_TEST

/* ---- A real session, random keys ---- */

typedef struct Pair {
        Ratchet *alice, *bob;
        uint8_t spk_priv[32], opk_priv[32];
        PrekeyBundle bundle;
} Pair;

static void pair_done(Pair *p) {
        ratchet_free(p->alice);
        ratchet_free(p->bob);
}

static Suite2Message *seal(Ratchet *r, const char *text) {
        Suite2Message *m;

        ck_assert_int_eq(suite2_seal(r, keys[strcmp(ratchet_peer(r), "bob") == 0 ? ALICE : BOB],
                                     NOW, NULL, text, strlen(text), NULL, &m), 0);
        return m;
}

/* Bob receives m: starts his session from it when he has none. */
static int open_at(Pair *p, Ratchet **r, const Suite2Message *m, uint64_t now, char **ret,
                   Suite2Error *error) {
        bool to_bob = strcmp(m->to, "bob") == 0;
        size_t len;

        if (!*r) {
                RatchetHeader h;

                ck_assert_int_eq(ratchet_header_parse(m->hdr, m->hdr_len, &h), 0);
                ck_assert(h.has_start);
                ck_assert_int_eq(suite2_verify(m, keys[ALICE]), 0);
                ck_assert_uint_eq(h.spk_id, p->bundle.spk.id);
                ck_assert(h.has_opk == p->bundle.has_opk);
                ck_assert_int_eq(ratchet_accept("bob", keys[BOB], "alice", &h, p->spk_priv,
                                                h.has_opk ? p->opk_priv : NULL, r), 0);
        }
        return suite2_open(*r, m, keys[to_bob ? ALICE : BOB], now, NULL, ret, &len, error);
}

static void expect_open(Pair *p, const Suite2Message *m, const char *text) {
        Ratchet **r = strcmp(m->to, "bob") == 0 ? &p->bob : &p->alice;
        _cleanup_(freep) char *got = NULL;
        Suite2Error error = _SUITE2_ERROR_MAX;

        ck_assert_int_eq(open_at(p, r, m, NOW, &got, &error), 0);
        ck_assert_str_eq(got, text);
        ck_assert_int_eq(error, SUITE2_OK);
}

static void expect_refused(Pair *p, const Suite2Message *m, uint64_t now, Suite2Error want) {
        Ratchet **r = strcmp(m->to, "bob") == 0 ? &p->bob : &p->alice;
        _cleanup_(freep) uint8_t *before = NULL, *after = NULL;
        size_t before_len, after_len;
        char *got = NULL;
        Suite2Error error = _SUITE2_ERROR_MAX;

        ck_assert_ptr_nonnull(*r);
        ck_assert_int_eq(ratchet_serialize(*r, &before, &before_len), 0);
        ck_assert_int_eq(open_at(p, r, m, now, &got, &error), -EBADMSG);
        ck_assert_ptr_null(got);
        ck_assert_msg(error == want, "refused as %s, not %s", suite2_error_to_string(error),
                      suite2_error_to_string(want));
        /* A refusal changes nothing. */
        ck_assert_int_eq(ratchet_serialize(*r, &after, &after_len), 0);
        ck_assert_uint_eq(before_len, after_len);
        ck_assert(memcmp(before, after, after_len) == 0);
}

static void pair_start(Pair *p, bool with_opk) {
        *p = (Pair) {};
        ck_assert_int_eq(signed_prekey_make("bob", keys[BOB], 3, NOW, NULL, p->spk_priv,
                                            &p->bundle.spk), 0);
        if (with_opk) {
                ck_assert_int_eq(one_time_prekey_make(99, NULL, p->opk_priv, &p->bundle.opk), 0);
                p->bundle.has_opk = true;
        }
        ck_assert_int_eq(ratchet_start("alice", "bob", keys[BOB], &p->bundle, NULL, &p->alice),
                         0);
}

START_TEST(test_round_trip) {
        _cleanup_(suite2_message_freep) Suite2Message *m = NULL;
        Pair p;
        char text[64];

        pair_start(&p, _i == 0);
        /* Bob cannot speak before he has heard from alice. */
        for (int turn = 0; turn < 6; turn++) {
                for (int k = 0; k < 3; k++) {
                        Ratchet *from = turn % 2 == 0 ? p.alice : p.bob;

                        snprintf(text, sizeof(text), "turn %d message %d", turn, k);
                        m = suite2_message_free(m);
                        m = seal(from, text);
                        expect_open(&p, m, text);
                }
        }
        pair_done(&p);
}
END_TEST

START_TEST(test_out_of_order_and_lost_start) {
        Suite2Message *m[5];
        static const int order[] = { 3, 1, 4, 0, 2 };
        Pair p;
        char text[16];

        pair_start(&p, true);
        for (int i = 0; i < 5; i++) {
                snprintf(text, sizeof(text), "m%d", i);
                m[i] = seal(p.alice, text);
        }
        /* The first to arrive is m3: the session start rides on every
         * message until alice hears back. */
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                snprintf(text, sizeof(text), "m%d", order[i]);
                expect_open(&p, m[order[i]], text);
        }
        for (int i = 0; i < 5; i++)
                suite2_message_free(m[i]);
        pair_done(&p);
}
END_TEST

START_TEST(test_duplicate_and_replay) {
        Suite2Message *a0, *a1, *b0, *a2, *a3;
        Pair p;

        pair_start(&p, true);
        a0 = seal(p.alice, "a0");
        a1 = seal(p.alice, "a1");
        expect_open(&p, a0, "a0");
        expect_refused(&p, a0, NOW, SUITE2_REPLAY);      /* same chain, consumed */
        expect_open(&p, a1, "a1");
        expect_refused(&p, a1, NOW, SUITE2_REPLAY);

        b0 = seal(p.bob, "b0");
        expect_open(&p, b0, "b0");
        expect_refused(&p, b0, NOW, SUITE2_REPLAY);
        a2 = seal(p.alice, "a2");
        a3 = seal(p.alice, "a3");
        expect_open(&p, a3, "a3");
        /* a chain bob moved on from: still a replay, not a new ratchet */
        expect_refused(&p, a0, NOW, SUITE2_REPLAY);
        expect_open(&p, a2, "a2");
        expect_refused(&p, a2, NOW, SUITE2_REPLAY);
        expect_refused(&p, a3, NOW, SUITE2_REPLAY);

        suite2_message_free(a0);
        suite2_message_free(a1);
        suite2_message_free(b0);
        suite2_message_free(a2);
        suite2_message_free(a3);
        pair_done(&p);
}
END_TEST

START_TEST(test_dropped_then_late) {
        Suite2Message *m[4], *b0, *a4;
        Pair p;

        pair_start(&p, false);
        for (int i = 0; i < 4; i++)
                m[i] = seal(p.alice, i == 1 ? "late" : "x");
        expect_open(&p, m[3], "x");                     /* 0..2 skipped */
        b0 = seal(p.bob, "b0");
        expect_open(&p, b0, "b0");
        a4 = seal(p.alice, "a4");                        /* a new chain */
        expect_open(&p, a4, "a4");
        expect_open(&p, m[1], "late");                   /* from the skipped keys */
        expect_refused(&p, m[1], NOW, SUITE2_REPLAY);    /* and only once */
        /* m0 and m2 are never delivered: their keys wait until they age out */
        expect_refused(&p, m[2], NOW + SUITE2_SKIPPED_MAX_AGE, SUITE2_REPLAY);
        for (int i = 0; i < 4; i++)
                suite2_message_free(m[i]);
        suite2_message_free(b0);
        suite2_message_free(a4);
        pair_done(&p);
}
END_TEST

START_TEST(test_skip_bound) {
        Suite2Message *first, *last = NULL, *over;
        Pair p;

        pair_start(&p, true);
        first = seal(p.alice, "first");
        expect_open(&p, first, "first");                 /* bob now at n = 1 */
        /* Bob can skip SUITE2_MAX_SKIP keys in one step, not one more. */
        for (unsigned i = 1; i <= SUITE2_MAX_SKIP + 1; i++) {
                Suite2Message *m = seal(p.alice, "m");

                if (i == SUITE2_MAX_SKIP + 1)
                        last = m;
                else
                        suite2_message_free(m);
        }
        over = seal(p.alice, "over");
        expect_refused(&p, over, NOW, SUITE2_TOO_MANY_SKIPPED);
        expect_open(&p, last, "m");
        expect_open(&p, over, "over");
        suite2_message_free(first);
        suite2_message_free(last);
        suite2_message_free(over);
        pair_done(&p);
}
END_TEST

START_TEST(test_skipped_store_bound) {
        _cleanup_(freep) uint8_t *state = NULL;
        Suite2Message *m0 = NULL, *m1 = NULL, *far = NULL, *b0, *a0, *a1;
        size_t state_len;
        Pair p;

        pair_start(&p, true);
        for (unsigned i = 0; i <= SUITE2_MAX_SKIP; i++) {
                Suite2Message *m = seal(p.alice, "m");

                if (i == 0)
                        m0 = m;
                else if (i == 1)
                        m1 = m;
                else if (i == SUITE2_MAX_SKIP)
                        far = m;
                else
                        suite2_message_free(m);
        }
        expect_open(&p, far, "m");                       /* the store is now full */
        b0 = seal(p.bob, "b0");
        expect_open(&p, b0, "b0");
        a0 = seal(p.alice, "a0");
        a1 = seal(p.alice, "a1");
        expect_open(&p, a1, "a1");                       /* one more: m0's key goes */
        expect_refused(&p, m0, NOW, SUITE2_REPLAY);
        expect_open(&p, m1, "m");
        expect_open(&p, a0, "a0");

        /* A full store survives serialization. */
        ck_assert_int_eq(ratchet_serialize(p.bob, &state, &state_len), 0);
        ratchet_free(p.bob);
        ck_assert_int_eq(ratchet_deserialize(state, state_len, &p.bob), 0);
        expect_refused(&p, m1, NOW, SUITE2_REPLAY);

        suite2_message_free(m0);
        suite2_message_free(m1);
        suite2_message_free(far);
        suite2_message_free(b0);
        suite2_message_free(a0);
        suite2_message_free(a1);
        pair_done(&p);
}
END_TEST

/* Alter one thing and re-sign with the sender's key (or not). */
enum { ALT_SIG, ALT_MALLORY, ALT_CT, ALT_MAC, ALT_HDR_N, ALT_TS, ALT_ID, ALT_TO, ALT_HDR_JUNK,
       ALT_CT_LEN, _ALT_MAX };

START_TEST(test_alterations) {
        Suite2Message *m, *ok;
        _cleanup_(freep) uint8_t *t = NULL;
        RatchetHeader h;
        size_t t_len;
        Suite2Error want = SUITE2_BAD_MAC;
        bool resign = true;
        int signer = ALICE;
        Pair p;

        pair_start(&p, true);
        ok = seal(p.alice, "first");
        expect_open(&p, ok, "first");
        m = seal(p.alice, "second");

        switch (_i) {
        case ALT_SIG:
                m->sig[10] ^= 1;
                resign = false;
                want = SUITE2_BAD_SIGNATURE;
                break;
        case ALT_MALLORY:
                signer = MALLORY;
                want = SUITE2_BAD_SIGNATURE;
                break;
        case ALT_CT:
                m->ct[0] ^= 1;
                break;
        case ALT_MAC:
                m->mac[31] ^= 1;
                break;
        case ALT_HDR_N:
                /* n + 1: another message key, so the MAC fails */
                ck_assert_int_eq(ratchet_header_parse(m->hdr, m->hdr_len, &h), 0);
                m->hdr[40]++;
                break;
        case ALT_TS:
                m->ts++;
                break;
        case ALT_ID:
                m->id[0] ^= 1;
                break;
        case ALT_TO:
                strcpy(m->to, "carol");
                want = SUITE2_WRONG_RECIPIENT;
                break;
        case ALT_HDR_JUNK:
                m->hdr = realloc(m->hdr, m->hdr_len + 1);
                m->hdr[m->hdr_len++] = 0;
                want = SUITE2_MALFORMED;
                break;
        case ALT_CT_LEN:
                m->ct_len--;
                want = SUITE2_MALFORMED;
                break;
        }
        if (resign) {
                uint8_t *tbs;

                ck_assert_int_eq(suite2_transcript(m, &t, &t_len), 0);
                tbs = malloc(t_len + 36);
                memcpy(tbs, t, t_len);
                memcpy(tbs + t_len, "\0\0\0\x20", 4);
                memcpy(tbs + t_len + 4, m->mac, 32);
                free(m->sig);
                ck_assert_int_eq(rsa_pss_sign(keys[signer], tbs, t_len + 36, &m->sig, &m->sig_len),
                                 0);
                free(tbs);
        }
        expect_refused(&p, m, NOW, want);
        suite2_message_free(m);
        suite2_message_free(ok);

        /* and the session goes on */
        m = seal(p.alice, "third");
        expect_open(&p, m, "third");
        suite2_message_free(m);
        pair_done(&p);
}
END_TEST

START_TEST(test_wrong_session) {
        Suite2Message *m1, *m2;
        Ratchet *second = NULL;
        Pair p;

        pair_start(&p, false);
        m1 = seal(p.alice, "one");
        expect_open(&p, m1, "one");
        /* Alice starts over (a lost state, say): a start of another session. */
        ck_assert_int_eq(ratchet_start("alice", "bob", keys[BOB], &p.bundle, NULL, &second), 0);
        m2 = seal(second, "two");
        expect_refused(&p, m2, NOW, SUITE2_WRONG_SESSION);
        suite2_message_free(m1);
        suite2_message_free(m2);
        ratchet_free(second);
        pair_done(&p);
}
END_TEST

START_TEST(test_start_refusals) {
        _cleanup_(suite2_message_freep) Suite2Message *m = NULL;
        Ratchet *r = NULL;
        RatchetHeader h;
        PrekeyBundle b;
        Pair p;

        pair_start(&p, true);
        b = p.bundle;

        /* An SPK signed by another key, or for another user, or altered. */
        ck_assert_int_eq(ratchet_start("alice", "bob", keys[MALLORY], &b, NULL, &r), -EBADMSG);
        ck_assert_int_eq(ratchet_start("alice", "carol", keys[BOB], &b, NULL, &r), -EBADMSG);
        b.spk.created++;
        ck_assert_int_eq(ratchet_start("alice", "bob", keys[BOB], &b, NULL, &r), -EBADMSG);
        b = p.bundle;
        b.spk.pub[0] ^= 1;
        ck_assert_int_eq(ratchet_start("alice", "bob", keys[BOB], &b, NULL, &r), -EBADMSG);
        ck_assert_ptr_null(r);

        m = seal(p.alice, "hi");
        ck_assert_int_eq(ratchet_header_parse(m->hdr, m->hdr_len, &h), 0);
        ck_assert_int_eq(ratchet_accept("bob", keys[BOB], "alice", &h, p.spk_priv, NULL, &r),
                         -EINVAL);
        ck_assert_int_eq(ratchet_accept("bob", keys[MALLORY], "alice", &h, p.spk_priv,
                                        p.opk_priv, &r), -EBADMSG);
        ck_assert_int_eq(ratchet_accept("bob", keys[BOB], "alice", &h, p.spk_priv, p.opk_priv,
                                        &r), 0);
        /* Bob cannot send before he has opened a message. */
        {
                Suite2Message *b0 = NULL;

                ck_assert_int_eq(suite2_seal(r, keys[BOB], NOW, NULL, "x", 1, NULL, &b0), -EPROTO);
                ck_assert_ptr_null(b0);
        }
        ratchet_free(r);

        /* A wrong OPK private key gives another root key: bad_mac. */
        p.opk_priv[5] ^= 1;
        {
                char *text = NULL;
                Suite2Error error = SUITE2_OK;

                ck_assert_int_eq(open_at(&p, &p.bob, m, NOW, &text, &error), -EBADMSG);
                ck_assert_int_eq(error, SUITE2_BAD_MAC);
                ck_assert_ptr_null(text);
        }
        pair_done(&p);
}
END_TEST

START_TEST(test_x25519_refusals) {
        uint8_t priv[32], pub[32], out[32], bad[32] = {};

        ck_assert_int_eq(x25519_keypair(NULL, priv, pub), 0);
        ck_assert((priv[0] & 7) == 0 && (priv[31] & 0xc0) == 0x40);
        /* u = 0 and u = 1 are of low order: the result is zero. */
        ck_assert_int_eq(x25519_shared(priv, bad, out), -EBADMSG);
        bad[0] = 1;
        ck_assert_int_eq(x25519_shared(priv, bad, out), -EBADMSG);
        /* p = 2^255 - 19 and the top bit: not canonical. */
        memset(bad, 0xff, 32);
        bad[0] = 0xed;
        bad[31] = 0x7f;
        ck_assert(!x25519_public_valid(bad));
        ck_assert_int_eq(x25519_shared(priv, bad, out), -EBADMSG);
        bad[0] = 0xec;
        ck_assert(x25519_public_valid(bad));
        memcpy(bad, pub, 32);
        bad[31] |= 0x80;
        ck_assert(!x25519_public_valid(bad));
        ck_assert_int_eq(x25519_shared(priv, pub, out), 0);
}
END_TEST

/* Every truncation and every extension of a good encoding is refused. */
static void assert_strict(const uint8_t *data, size_t len,
                          int (*parse)(const uint8_t *, size_t, void *)) {
        _cleanup_(freep) uint8_t *longer = malloc(len + 1);
        uint8_t scratch[4096];

        ck_assert_uint_le(sizeof(RatchetHeader), sizeof(scratch));
        ck_assert_uint_le(sizeof(PrekeyBundle), sizeof(scratch));
        ck_assert_int_eq(parse(data, len, scratch), 0);
        for (size_t n = 0; n < len; n++)
                ck_assert_int_eq(parse(data, n, scratch), -EBADMSG);
        memcpy(longer, data, len);
        longer[len] = 0;
        ck_assert_int_eq(parse(longer, len + 1, scratch), -EBADMSG);
}

static int parse_header(const uint8_t *d, size_t n, void *ret) {
        return ratchet_header_parse(d, n, ret);
}

static int parse_bundle(const uint8_t *d, size_t n, void *ret) {
        return prekey_bundle_parse(d, n, ret);
}

START_TEST(test_hostile_header) {
        json_object *v = load("suite2-session.json");
        size_t len, plain_len;
        _cleanup_(freep) uint8_t *h = hex(vec_msg(&(Convo) { .v = v }, 0), "header", SIZE_MAX,
                                          &len);
        _cleanup_(freep) uint8_t *plain = hex(vec_msg(&(Convo) { .v = v }, 2), "header", 41,
                                              &plain_len);
        RatchetHeader out;

        assert_strict(h, len, parse_header);
        assert_strict(plain, plain_len, parse_header);
        ck_assert_int_eq(ratchet_header_parse(h, len, &out), 0);
        ck_assert(out.has_start && out.has_opk && out.opk_id == 4242 && out.spk_id == 7);
        ck_assert_uint_eq(out.oaep_len, 256);

        plain[0] = 2;                                   /* flag not 0/1 */
        ck_assert_int_eq(ratchet_header_parse(plain, plain_len, &out), -EBADMSG);
        plain[0] = 0;
        plain[32] |= 0x80;                              /* non-canonical dh */
        ck_assert_int_eq(ratchet_header_parse(plain, plain_len, &out), -EBADMSG);

        h[1 + 32 + 8 + 32 + 4] = 0;                     /* no OPK but an OPK id */
        ck_assert_int_eq(ratchet_header_parse(h, len, &out), -EBADMSG);
        h[1 + 32 + 8 + 32 + 4] = 1;
        h[1 + 32 + 8 + 32 + 4 + 1 + 4 + 2] = 0xff;      /* OAEP length 0xff00: over */
        ck_assert_int_eq(ratchet_header_parse(h, len, &out), -EBADMSG);
        json_object_put(v);
}
END_TEST

START_TEST(test_hostile_bundle) {
        json_object *v = load("suite2-session.json"), *e = get(v, "encodings");
        size_t len, len2;
        _cleanup_(freep) uint8_t *b = hex(e, "bundle_with_opk", SIZE_MAX, &len);
        _cleanup_(freep) uint8_t *b2 = hex(e, "bundle_without_opk", SIZE_MAX, &len2);
        PrekeyBundle out;

        assert_strict(b, len, parse_bundle);
        assert_strict(b2, len2, parse_bundle);
        b2[len2 - 1] = 2;
        ck_assert_int_eq(prekey_bundle_parse(b2, len2, &out), -EBADMSG);
        b2[len2 - 1] = 1;                               /* claims an OPK, has none */
        ck_assert_int_eq(prekey_bundle_parse(b2, len2, &out), -EBADMSG);
        b[4 + 31] = 0xff;                               /* SPK public key not canonical */
        ck_assert_int_eq(prekey_bundle_parse(b, len, &out), -EBADMSG);
        b[4 + 31] = 0x10;
        b[4 + 32 + 8 + 2] = 0;                          /* signature length 255 */
        b[4 + 32 + 8 + 3] = 0xff;
        ck_assert_int_eq(prekey_bundle_parse(b, len, &out), -EBADMSG);
        json_object_put(v);
}
END_TEST

START_TEST(test_state_round_trip) {
        _cleanup_(freep) uint8_t *s1 = NULL, *s2 = NULL;
        Suite2Message *a0, *a1, *a2, *b0;
        Ratchet *copy;
        size_t l1 = 0, l2 = 0;
        Pair p;

        pair_start(&p, true);
        a0 = seal(p.alice, "a0");
        a1 = seal(p.alice, "a1");
        a2 = seal(p.alice, "a2");
        expect_open(&p, a2, "a2");                       /* bob holds two skipped keys */

        /* Alice still repeats the start: it is part of her state. */
        for (int who = 0; who < 2; who++) {
                Ratchet **r = who ? &p.bob : &p.alice;

                s1 = secure_free(s1, l1);
                s2 = secure_free(s2, l2);
                ck_assert_int_eq(ratchet_serialize(*r, &s1, &l1), 0);
                ck_assert_int_eq(ratchet_deserialize(s1, l1, &copy), 0);
                ck_assert_int_eq(ratchet_serialize(copy, &s2, &l2), 0);
                ck_assert_uint_eq(l1, l2);
                ck_assert(memcmp(s1, s2, l1) == 0);
                ratchet_free(*r);
                *r = copy;

                for (size_t n = 0; n < l1; n++)
                        ck_assert_int_eq(ratchet_deserialize(s1, n, &copy), -EBADMSG);
                s1[30] ^= 1;                             /* version */
                ck_assert_int_eq(ratchet_deserialize(s1, l1, &copy), -EBADMSG);
                s1[30] ^= 1;
                ck_assert_int_eq(ratchet_deserialize(s1, l1, &copy), 0);
                ratchet_free(copy);
                /* lp(me) follows: a NUL inside would read as a shorter name */
                ck_assert_uint_eq(s1[37], who ? 3 : 5);
                s1[39] = 0;
                ck_assert_int_eq(ratchet_deserialize(s1, l1, &copy), -EBADMSG);
        }
        expect_open(&p, a0, "a0");
        b0 = seal(p.bob, "b0");
        expect_open(&p, b0, "b0");
        expect_open(&p, a1, "a1");
        expect_refused(&p, a0, NOW, SUITE2_REPLAY);

        suite2_message_free(a0);
        suite2_message_free(a1);
        suite2_message_free(a2);
        suite2_message_free(b0);
        pair_done(&p);
}
END_TEST

/* What an attacker holds after the fact: bob's identity key, his SPK (not
 * rotated yet) and his current state, but not the OPK he erased. None of
 * the recorded messages opens. */
START_TEST(test_forward_secrecy) {
        _cleanup_(freep) uint8_t *state = NULL;
        Suite2Message *rec[4];
        uint8_t guess[32];
        size_t state_len;
        Pair p;

        pair_start(&p, true);
        rec[0] = seal(p.alice, "a0");
        rec[1] = seal(p.alice, "a1");
        expect_open(&p, rec[0], "a0");
        expect_open(&p, rec[1], "a1");
        rec[2] = seal(p.bob, "b0");
        expect_open(&p, rec[2], "b0");
        rec[3] = seal(p.alice, "a2");
        expect_open(&p, rec[3], "a2");
        secure_wipe(p.opk_priv, sizeof(p.opk_priv));       /* bob erases the OPK */
        ck_assert_int_eq(ratchet_serialize(p.bob, &state, &state_len), 0);

        for (size_t i = 0; i < ELEMENTSOF(rec); i++) {
                Ratchet *stolen = NULL, *fresh = NULL;
                RatchetHeader h;
                char *text = NULL;
                size_t len;
                Suite2Error error = SUITE2_OK;

                if (strcmp(rec[i]->to, "bob") != 0)
                        goto next;
                /* the state: every key of those messages is gone */
                ck_assert_int_eq(ratchet_deserialize(state, state_len, &stolen), 0);
                ck_assert_int_eq(suite2_open(stolen, rec[i], keys[ALICE], NOW, NULL, &text,
                                             &len, &error), -EBADMSG);
                ck_assert_int_eq(error, SUITE2_REPLAY);
                /* the session start again: without the OPK it cannot be
                 * redone, and any other OPK gives another root key */
                ck_assert_int_eq(ratchet_header_parse(rec[i]->hdr, rec[i]->hdr_len, &h), 0);
                /* alice stopped repeating the start once she heard from bob */
                ck_assert(h.has_start == (i < 2));
                if (!h.has_start) {
                        ratchet_free(stolen);
                        goto next;
                }
                ck_assert(h.has_opk);
                ck_assert_int_eq(x25519_keypair(NULL, guess, (uint8_t[32]) {}), 0);
                ck_assert_int_eq(ratchet_accept("bob", keys[BOB], "alice", &h, p.spk_priv, guess,
                                                &fresh), 0);
                ck_assert_int_eq(suite2_open(fresh, rec[i], keys[ALICE], NOW, NULL, &text, &len,
                                             &error), -EBADMSG);
                ck_assert_int_eq(error, SUITE2_BAD_MAC);
                ck_assert_ptr_null(text);
                ratchet_free(stolen);
                ratchet_free(fresh);
        next:
                suite2_message_free(rec[i]);
        }
        pair_done(&p);
}
END_TEST

START_TEST(test_error_names) {
        for (int e = 0; e < _SUITE2_ERROR_MAX; e++) {
                ck_assert_ptr_nonnull(suite2_error_to_string(e));
                for (int f = 0; f < e; f++)
                        ck_assert_str_ne(suite2_error_to_string(e), suite2_error_to_string(f));
        }
        ck_assert_ptr_null(suite2_error_to_string(_SUITE2_ERROR_MAX));
}
END_TEST

static Suite *suite2_suite(void) {
        Suite *s = suite_create("suite2");
        TCase *tc;

        tc = tcase_create("vectors");
        tcase_add_unchecked_fixture(tc, keys_setup, NULL);
        tcase_add_test(tc, test_kdf_ck_vectors);
        tcase_add_test(tc, test_kdf_rk_vectors);
        tcase_add_test(tc, test_root_key_vectors);
        tcase_add_test(tc, test_encoding_vectors);
        tcase_add_test(tc, test_conversation_vector);
        tcase_add_loop_test(tc, test_crafted, 0, ELEMENTSOF(crafted));
        suite_add_tcase(s, tc);

        tc = tcase_create("ratchet");
        tcase_add_unchecked_fixture(tc, keys_setup, NULL);
        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, test_round_trip, 0, 2);
        tcase_add_test(tc, test_out_of_order_and_lost_start);
        tcase_add_test(tc, test_duplicate_and_replay);
        tcase_add_test(tc, test_dropped_then_late);
        tcase_add_test(tc, test_skip_bound);
        tcase_add_test(tc, test_skipped_store_bound);
        tcase_add_loop_test(tc, test_alterations, 0, _ALT_MAX);
        tcase_add_test(tc, test_wrong_session);
        tcase_add_test(tc, test_start_refusals);
        tcase_add_test(tc, test_state_round_trip);
        tcase_add_test(tc, test_forward_secrecy);
        suite_add_tcase(s, tc);

        tc = tcase_create("parsers");
        tcase_add_test(tc, test_x25519_refusals);
        tcase_add_test(tc, test_hostile_header);
        tcase_add_test(tc, test_hostile_bundle);
        tcase_add_test(tc, test_error_names);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(suite2_suite());
}
