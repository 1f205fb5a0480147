/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for codec.c: every frame type built, put on the wire, decoded
 * and parsed back field by field; then a long list of hostile payloads, each
 * its own test case.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "codec.h"
#include "frame.h"
#include "json-util.h"
#include "macro.h"
#include "protocol.h"
#include "rsa.h"
#include "suite2.h"
#include "test-main.h"
#include "util.h"

/* Made once in main(), before check forks the test cases. */
static RsaKey *key;
static KeyPackage *pkg_alice, *pkg_bob;
static Envelope *envelope;
static json_object *envelope_json;
static uint8_t nonce[NONCE_LEN];
static uint8_t *sig;
static size_t sig_len;
static char msg_id[32];

#define SESSION "s3ss10n-Id_42"
#define TS 1700000000u

/* Outside a test case check's assertions do not apply: fail loudly. */
#define SETUP(expr)                                                             \
        do {                                                                    \
                if ((expr) < 0) {                                               \
                        fprintf(stderr, "setup failed: %s\n", #expr);           \
                        exit(EXIT_FAILURE);                                     \
                }                                                               \
        } while (0)

static void fixtures_setup(void) {
        _cleanup_(freep) char *s = NULL;

        SETUP(rsa_key_generate(2048, &key));
        SETUP(random_bytes(nonce, sizeof(nonce)));
        SETUP(rsa_pss_sign(key, "transcript", 10, &sig, &sig_len));
        SETUP(key_package_sign(key, "alice", key->spki, key->spki_len, TS, &pkg_alice));
        SETUP(key_package_sign(key, "bob", key->spki, key->spki_len, TS + 1, &pkg_bob));
        SETUP(envelope_seal("alice", key, "bob", key, TS, "hello bob", 9, &envelope));
        SETUP(envelope_to_json(envelope, &envelope_json));
        SETUP(b64_encode(envelope->id, MSG_ID_LEN, &s));
        SETUP(strlen(s) == 24 ? 0 : -1);
        strcpy(msg_id, s);
}

/* Put o on the wire, take it off again with the frame decoder, parse it. */
static int wire_parse(json_object *o, Frame **ret, const char **reason) {
        _cleanup_(freep) uint8_t *wire = NULL, *payload = NULL;
        size_t wire_len, consumed, len;
        FrameDecoder d;
        int r;

        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(frame_to_wire(o, DEFAULT_MAX_FRAME, &wire, &wire_len), 0);

        frame_decoder_init(&d, DEFAULT_MAX_FRAME);
        r = frame_decoder_feed(&d, wire, wire_len, &consumed, &payload, &len);
        ck_assert_int_eq(r, 1);
        ck_assert_uint_eq(consumed, wire_len);
        ck_assert_uint_eq(len, wire_len - 4);
        frame_decoder_done(&d);

        return frame_parse(payload, len, ret, reason);
}

static Frame *roundtrip(json_object *o, FrameType expected) {
        const char *reason = NULL;
        Frame *f = NULL;
        int r;

        r = wire_parse(o, &f, &reason);
        if (r < 0)
                ck_abort_msg("parse failed: %d (%s)", r, reason ? reason : "?");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(f->type, expected);
        return f;
}

static void assert_package_eq(const KeyPackage *a, const KeyPackage *b) {
        ck_assert_ptr_nonnull(a);
        ck_assert_str_eq(a->user, b->user);
        ck_assert_uint_eq(a->key_len, b->key_len);
        ck_assert_mem_eq(a->key, b->key, b->key_len);
        ck_assert_uint_eq(a->registered, b->registered);
        ck_assert_uint_eq(a->sig_len, b->sig_len);
        ck_assert_mem_eq(a->sig, b->sig, b->sig_len);
        /* Still verifies after the trip. */
        ck_assert_int_eq(key_package_verify(a, key), 0);
}

static void assert_envelope_eq(const Envelope *a, const Envelope *b) {
        ck_assert_ptr_nonnull(a);
        ck_assert_int_eq(a->v, b->v);
        ck_assert_str_eq(a->suite, b->suite);
        ck_assert_mem_eq(a->id, b->id, MSG_ID_LEN);
        ck_assert_str_eq(a->from, b->from);
        ck_assert_str_eq(a->to, b->to);
        ck_assert_uint_eq(a->ts, b->ts);
        ck_assert_uint_eq(a->ek_len, b->ek_len);
        ck_assert_mem_eq(a->ek, b->ek, b->ek_len);
        ck_assert_mem_eq(a->iv, b->iv, ENVELOPE_IV_LEN);
        ck_assert_uint_eq(a->ct_len, b->ct_len);
        ck_assert_mem_eq(a->ct, b->ct, b->ct_len);
        ck_assert_mem_eq(a->mac, b->mac, ENVELOPE_MAC_LEN);
        ck_assert_uint_eq(a->sig_len, b->sig_len);
        ck_assert_mem_eq(a->sig, b->sig, b->sig_len);
}

/* ---- round trips ---- */

START_TEST(test_type_names) {
        for (FrameType t = 0; t < _FRAME_TYPE_MAX; t++) {
                const char *s = frame_type_to_string(t);

                ck_assert_ptr_nonnull(s);
                ck_assert_int_eq(frame_type_from_string(s), t);
        }
        ck_assert_str_eq(frame_type_to_string(FRAME_RECEIPT), "receipt");
        ck_assert_int_eq(frame_type_from_string("Ping"), _FRAME_TYPE_INVALID);
        ck_assert_int_eq(frame_type_from_string(""), _FRAME_TYPE_INVALID);
        ck_assert_ptr_null(frame_type_to_string(_FRAME_TYPE_MAX));
        ck_assert_ptr_null(frame_type_to_string(_FRAME_TYPE_INVALID));
}
END_TEST

START_TEST(test_hello) {
        _cleanup_(json_object_unrefp) json_object *o =
                frame_new_hello(key->spki, key->spki_len, nonce);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_HELLO);

        ck_assert_uint_eq(f->hello.proto, PROTOCOL_VERSION);
        ck_assert_uint_eq(f->hello.server_key_len, key->spki_len);
        ck_assert_mem_eq(f->hello.server_key, key->spki, key->spki_len);
        ck_assert_mem_eq(f->hello.nonce, nonce, NONCE_LEN);
        ck_assert_uint_eq(f->hello.n_suites, 1);
        ck_assert_str_eq(f->hello.suites[0], PROTOCOL_SUITE);
        ck_assert_uint_eq(f->hello.proto_max, PROTOCOL_VERSION_MAX);
}
END_TEST

START_TEST(test_auth) {
        /* _i: receive false / true */
        _cleanup_(json_object_unrefp) json_object *o =
                frame_new_auth("alice.b-c_9", key->spki, key->spki_len, nonce, _i, sig, sig_len);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_AUTH);

        ck_assert_str_eq(f->auth.user, "alice.b-c_9");
        ck_assert_uint_eq(f->auth.key_len, key->spki_len);
        ck_assert_mem_eq(f->auth.key, key->spki, key->spki_len);
        ck_assert_mem_eq(f->auth.nonce, nonce, NONCE_LEN);
        ck_assert(f->auth.receive == (bool) _i);
        ck_assert_uint_eq(f->auth.sig_len, sig_len);
        ck_assert_mem_eq(f->auth.sig, sig, sig_len);
}
END_TEST

START_TEST(test_welcome) {
        const FrameLimits limits = { .max_frame = 65536, .max_text = 16384, .queue_ttl = 604800 };
        _cleanup_(json_object_unrefp) json_object *o =
                frame_new_welcome(sig, sig_len, pkg_alice, SESSION, &limits);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_WELCOME);

        ck_assert_uint_eq(f->welcome.sig_len, sig_len);
        ck_assert_mem_eq(f->welcome.sig, sig, sig_len);
        assert_package_eq(f->welcome.self, pkg_alice);
        ck_assert_str_eq(f->welcome.session, SESSION);
        ck_assert_uint_eq(f->welcome.limits.max_frame, 65536);
        ck_assert_uint_eq(f->welcome.limits.max_text, 16384);
        ck_assert_uint_eq(f->welcome.limits.queue_ttl, 604800);
        /* a welcome of versions 1 and 2 */
        ck_assert_ptr_null(f->welcome.welcome_key);
}
END_TEST

/* Version 3: the Ed25519 signature and the statement on its key. */
static const WelcomeKey fixed_welcome_key = {
        .key = { 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44,
                 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x45 },
        .not_after = 1700604800,
        .sig = (uint8_t *) "a statement's signature", .sig_len = 23,
};

static json_object *welcome3(void) {
        const FrameLimits limits = { .max_frame = 65536, .max_text = 16384, .queue_ttl = 604800 };
        static const uint8_t ed_sig[ED25519_SIG_LEN] = { 1, 2, 3, [63] = 0x7f };
        json_object *o = frame_new_welcome(ed_sig, sizeof(ed_sig), pkg_alice, SESSION, &limits);

        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(frame_welcome_add_welcome_key(o, &fixed_welcome_key), 0);
        return o;
}

START_TEST(test_welcome3) {
        _cleanup_(json_object_unrefp) json_object *o = welcome3();
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_WELCOME);
        const WelcomeKey *wk = f->welcome.welcome_key;

        ck_assert_uint_eq(f->welcome.sig_len, ED25519_SIG_LEN);
        ck_assert_uint_eq(f->welcome.sig[63], 0x7f);
        assert_package_eq(f->welcome.self, pkg_alice);
        ck_assert_ptr_nonnull(wk);
        ck_assert_mem_eq(wk->key, fixed_welcome_key.key, ED25519_KEY_LEN);
        ck_assert_uint_eq(wk->not_after, fixed_welcome_key.not_after);
        ck_assert_uint_eq(wk->sig_len, fixed_welcome_key.sig_len);
        ck_assert_mem_eq(wk->sig, fixed_welcome_key.sig, wk->sig_len);
}
END_TEST

START_TEST(test_error) {
        const uint64_t id = 9007199254740991u;   /* 2^53 - 1, the largest allowed */
        _cleanup_(json_object_unrefp) json_object *o =
                frame_new_error(&id, ERR_NO_SUCH_USER, "no such user: \"bob\" / ünïcode");
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_ERROR);

        ck_assert(f->error.has_id);
        ck_assert_uint_eq(f->error.id, id);
        ck_assert_str_eq(f->error.code, "no_such_user");
        ck_assert_str_eq(f->error.message, "no such user: \"bob\" / ünïcode");
}
END_TEST

START_TEST(test_error_minimal) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_error(NULL, ERR_BAD_FRAME, NULL);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_ERROR);

        ck_assert(!f->error.has_id);
        ck_assert_str_eq(f->error.code, "bad_frame");
        ck_assert_ptr_null(f->error.message);
}
END_TEST

START_TEST(test_error_rate_limited) {
        const uint64_t id = 7;
        _cleanup_(json_object_unrefp) json_object *o = frame_new_rate_limited(&id, "too many messages", 3);
        _cleanup_(json_object_unrefp) json_object *z = frame_new_rate_limited(NULL, NULL, 0);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_ERROR);
        _cleanup_(frame_freep) Frame *g = roundtrip(z, FRAME_ERROR);
        _cleanup_(frame_freep) Frame *h = NULL;
        static const char bad[] = "{\"type\":\"error\",\"code\":\"rate_limited\",\"retry_after\":\"3\"}";
        const char *reason = NULL;

        ck_assert(f->error.has_id);
        ck_assert_uint_eq(f->error.id, 7);
        ck_assert_str_eq(f->error.code, "rate_limited");
        ck_assert_uint_eq(f->error.retry_after, 3);
        /* Never "now": at least a second. */
        ck_assert(!g->error.has_id);
        ck_assert_uint_eq(g->error.retry_after, 1);
        ck_assert_int_eq(frame_parse(bad, strlen(bad), &h, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "bad retry_after");
}
END_TEST

START_TEST(test_presence_list) {
        /* _i users: 0, 1, 2 */
        KeyPackage *users[2] = { pkg_alice, pkg_bob };
        _cleanup_(json_object_unrefp) json_object *o =
                frame_new_presence_list(users, (size_t) _i, _i % 2 == 1);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_PRESENCE);

        ck_assert_int_eq(f->presence.kind, PRESENCE_LIST);
        ck_assert_uint_eq(f->presence.n_users, (size_t) _i);
        ck_assert(f->presence.more == (_i % 2 == 1));
        for (int i = 0; i < _i; i++)
                assert_package_eq(f->presence.users[i], users[i]);
}
END_TEST

START_TEST(test_presence_online) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_presence_online(pkg_bob);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_PRESENCE);

        ck_assert_int_eq(f->presence.kind, PRESENCE_ONLINE);
        assert_package_eq(f->presence.package, pkg_bob);
}
END_TEST

START_TEST(test_presence_user) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_presence_user("bob", key->fingerprint);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_PRESENCE);
        static const char *const bad[] = {
                "{\"type\":\"presence\",\"event\":\"online\",\"user\":\"bob\"}",
                "{\"type\":\"presence\",\"event\":\"online\",\"user\":\"bob\",\"fingerprint\":\"SHA256:x\"}",
                "{\"type\":\"presence\",\"event\":\"online\",\"user\":\"bob\",\"fingerprint\":"
                "\"MD5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
                "{\"type\":\"presence\",\"event\":\"online\",\"user\":\"bob\",\"fingerprint\":"
                "\"SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\"}",
        };

        ck_assert_int_eq(f->presence.kind, PRESENCE_ONLINE);
        ck_assert_ptr_null(f->presence.package);
        ck_assert_str_eq(f->presence.user, "bob");
        ck_assert_str_eq(f->presence.fingerprint, key->fingerprint);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Frame *g = NULL;

                ck_assert_int_eq(frame_parse(bad[i], strlen(bad[i]), &g, NULL), -EBADMSG);
        }
}
END_TEST

START_TEST(test_watch) {
        /* _i: watch, unwatch */
        static const char *const users[] = { "alice", "bob" };
        FrameType t = _i ? FRAME_UNWATCH : FRAME_WATCH;
        _cleanup_(json_object_unrefp) json_object *o = frame_new_watch(t, 9, users, 2);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, t);
        static const char *const bad[] = {
                "{\"type\":\"watch\",\"id\":1,\"users\":[]}",
                "{\"type\":\"watch\",\"id\":1,\"users\":[1]}",
                "{\"type\":\"watch\",\"id\":1,\"users\":\"bob\"}",
                "{\"type\":\"watch\",\"users\":[\"bob\"]}",
        };
        /* Names that break the rule, of any length: bad_username. */
        static const char *const invalid[] = {
                "{\"type\":\"watch\",\"id\":4,\"users\":[\"bob\",\"Bob\"]}",
                "{\"type\":\"watch\",\"id\":4,\"users\":[\"bob\",\"\"]}",
                "{\"type\":\"watch\",\"id\":4,\"users\":[\"abcdefghijklmnopqrstuvwxyz0123456\"]}",
                "{\"type\":\"unwatch\",\"id\":4,\"users\":[\"\"]}",
                "{\"type\":\"unwatch\",\"id\":4,\"users\":[\"bob\",\"abcdefghijklmnopqrstuvwxyz0123456\"]}",
        };
        uint64_t id = 0;
        bool has_id = false;
        const char *reason = NULL;
        Frame *g = NULL;

        ck_assert_uint_eq(f->watch.id, 9);
        ck_assert_uint_eq(f->watch.n_users, 2);
        ck_assert_str_eq(f->watch.users[0], "alice");
        ck_assert_str_eq(f->watch.users[1], "bob");
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_int_eq(frame_parse(bad[i], strlen(bad[i]), &g, NULL), -EBADMSG);
        /* An invalid name is bad_username, answering the request. */
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
                has_id = false;
                id = 0;
                ck_assert_int_eq(frame_parse_request(invalid[i], strlen(invalid[i]), &g, &reason, &has_id,
                                                     &id), -EINVAL);
                ck_assert_str_eq(reason, "bad username");
                ck_assert(has_id);
                ck_assert_uint_eq(id, 4);
        }
}
END_TEST

START_TEST(test_who_and_online) {
        _cleanup_(json_object_unrefp) json_object *w = frame_new_who(3, 17, 50);
        _cleanup_(frame_freep) Frame *f = roundtrip(w, FRAME_WHO);
        _cleanup_(json_object_unrefp) json_object *o = frame_new_online(3, 42);
        _cleanup_(frame_freep) Frame *g = NULL;
        _cleanup_(json_object_unrefp) json_object *w0 = frame_new_who(4, 0, 0);
        _cleanup_(frame_freep) Frame *f0 = roundtrip(w0, FRAME_WHO);

        ck_assert_uint_eq(f->who.id, 3);
        ck_assert_uint_eq(f->who.after, 17);
        ck_assert_uint_eq(f->who.limit, 50);
        ck_assert_uint_eq(f0->who.after, 0);
        ck_assert_uint_eq(f0->who.limit, 0);

        ck_assert_int_eq(frame_online_add(o, "alice", key->fingerprint), 0);
        ck_assert_int_eq(frame_online_add(o, "bob", key->fingerprint), 0);
        g = roundtrip(o, FRAME_ONLINE);
        ck_assert_uint_eq(g->online.id, 3);
        ck_assert_uint_eq(g->online.next, 42);
        ck_assert_uint_eq(g->online.n_users, 2);
        ck_assert_str_eq(g->online.users[1].user, "bob");
        ck_assert_str_eq(g->online.users[1].fingerprint, key->fingerprint);
}
END_TEST

START_TEST(test_presence_offline) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_presence_offline("bob");
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_PRESENCE);

        ck_assert_int_eq(f->presence.kind, PRESENCE_OFFLINE);
        ck_assert_str_eq(f->presence.user, "bob");
}
END_TEST

START_TEST(test_lookup) {
        _cleanup_(json_object_unrefp) json_object *o =
                frame_new_lookup(7, "0123456789abcdef0123456789abcdef");
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_LOOKUP);

        ck_assert_uint_eq(f->lookup.id, 7);
        ck_assert_str_eq(f->lookup.user, "0123456789abcdef0123456789abcdef");
}
END_TEST

START_TEST(test_key) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_key(0, pkg_bob);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_KEY);

        ck_assert_uint_eq(f->key.id, 0);
        assert_package_eq(f->key.package, pkg_bob);
}
END_TEST

START_TEST(test_send) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_send(42, envelope_json);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_SEND);

        ck_assert_uint_eq(f->send.id, 42);
        assert_envelope_eq(f->send.envelope, envelope);
        /* The raw object is kept, equal to what was sent. */
        ck_assert_ptr_nonnull(f->send.raw);
        ck_assert(json_object_equal(f->send.raw, envelope_json));
}
END_TEST

START_TEST(test_deliver) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_deliver(123456789, envelope_json);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_DELIVER);

        ck_assert_uint_eq(f->deliver.seq, 123456789);
        assert_envelope_eq(f->deliver.envelope, envelope);
        ck_assert_ptr_nonnull(f->deliver.raw);
        ck_assert(json_object_equal(f->deliver.raw, envelope_json));
}
END_TEST

START_TEST(test_raw_outlives_payload) {
        /* The raw envelope must not depend on the payload buffer. */
        _cleanup_(json_object_unrefp) json_object *o = frame_new_send(1, envelope_json), *raw = NULL;
        _cleanup_(freep) char *copy = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *s;

        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        copy = strdup(s);
        ck_assert_int_eq(frame_parse(copy, strlen(copy), &f, NULL), 0);
        memset(copy, 'x', strlen(copy));
        raw = json_object_get(f->send.raw);
        f = frame_free(f);
        ck_assert(json_object_equal(raw, envelope_json));
}
END_TEST

START_TEST(test_accepted) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_accepted(5, msg_id, _i);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_ACCEPTED);

        ck_assert_uint_eq(f->accepted.id, 5);
        ck_assert_str_eq(f->accepted.msg, msg_id);
        ck_assert(f->accepted.queued == (bool) _i);
}
END_TEST

/* The relay writes accepted straight into a buffer: the same bytes as the
 * frame built from an object, for ids from 0 to the largest, with '+', '/'
 * and '=' in msg. _i: queued. */
START_TEST(test_accepted_to_wire) {
        static const uint64_t ids[] = { 0, 7, 9007199254740991, UINT64_MAX };
        static const char *const msgs[] = { NULL, "ab+/cd+/ef+/gh+/ij+/kQ==" };

        for (size_t i = 0; i < ELEMENTSOF(ids); i++)
                for (size_t j = 0; j < ELEMENTSOF(msgs); j++) {
                        const char *msg = msgs[j] ?: msg_id;
                        _cleanup_(json_object_unrefp) json_object *o = frame_new_accepted(ids[i], msg, _i);
                        _cleanup_(freep) uint8_t *expected = NULL;
                        uint8_t wire[FRAME_ACCEPTED_WIRE_MAX];
                        size_t expected_len;
                        int len;

                        ck_assert_int_eq(frame_to_wire(o, DEFAULT_MAX_FRAME, &expected, &expected_len), 0);
                        len = frame_accepted_to_wire(ids[i], msg, _i, wire);
                        ck_assert_int_eq(len, (int) expected_len);
                        ck_assert_mem_eq(wire, expected, expected_len);
                }
}
END_TEST

/* What would need escaping, or is no message id, is refused. */
START_TEST(test_accepted_to_wire_refused) {
        static const char *const bad[] = {
                "", "AAAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAAAA===", "AAAAAAAAAAAAAAAAAAAAAA\"=",
                "AAAAAAAAAAAAAAAAAAAAAA\\=", "AAAAAAAAAAAAAAAAAAAAAA\n=", "AAAAAAAAAAAAAAAAAAAAAA\xc3\xa9",
        };
        uint8_t wire[FRAME_ACCEPTED_WIRE_MAX];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_int_eq(frame_accepted_to_wire(1, bad[i], true, wire), -EINVAL);
}
END_TEST

START_TEST(test_ack) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_ack(99);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_ACK);

        ck_assert_uint_eq(f->ack.seq, 99);
}
END_TEST

START_TEST(test_receipt) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_receipt(msg_id, "delivered");
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_RECEIPT);

        ck_assert_str_eq(f->receipt.msg, msg_id);
        ck_assert_str_eq(f->receipt.status, "delivered");
}
END_TEST

static const FrameType simple_types[] = { FRAME_SYNCED, FRAME_PING, FRAME_PONG, FRAME_BYE };

START_TEST(test_simple) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_simple(simple_types[_i]);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, simple_types[_i]);
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t len;
        char expected[64];

        ck_assert_int_eq(f->type, simple_types[_i]);
        /* The exact compact form. */
        ck_assert_int_eq(frame_to_wire(o, 64, &wire, &len), 0);
        snprintf(expected, sizeof(expected), "{\"type\":\"%s\"}",
                 frame_type_to_string(simple_types[_i]));
        ck_assert_uint_eq(len, 4 + strlen(expected));
        ck_assert_mem_eq(wire + 4, expected, strlen(expected));
}
END_TEST

START_TEST(test_synced_builder) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_synced();
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_SYNCED);

        ck_assert_int_eq(f->type, FRAME_SYNCED);
}
END_TEST

START_TEST(test_key_package_json) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;

        ck_assert_int_eq(key_package_to_json(pkg_alice, &o), 0);
        ck_assert_int_eq(key_package_from_json(o, &kp), 0);
        assert_package_eq(kp, pkg_alice);

        /* A bad user inside a package is a malformed package, not EINVAL. */
        json_object_object_add(o, "user", json_object_new_string("Alice"));
        ck_assert_int_eq(key_package_from_json(o, &kp), -EBADMSG);
        ck_assert_int_eq(key_package_from_json(NULL, &kp), -EBADMSG);
}
END_TEST

START_TEST(test_to_wire_limits) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_send(1, envelope_json);
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t len = 0;

        ck_assert_int_eq(frame_to_wire(o, 100, &wire, &len), -EMSGSIZE);
        ck_assert_ptr_null(wire);
        ck_assert_int_eq(frame_to_wire(o, DEFAULT_MAX_FRAME, &wire, &len), 0);
        /* Plain and without escaped slashes: base64 keeps its '/'. */
        ck_assert_ptr_null(memmem(wire, len, "\\/", 2));
        ck_assert_ptr_null(memmem(wire, len, "\n", 1));
        ck_assert_ptr_null(memmem(wire, len, ": ", 2));
}
END_TEST

static const char *const raw_good[] = {
        "{\"type\":\"ping\",\"future\":{\"a\":[1,2,3]}}",
        " \t\r\n{\"type\":\"pong\"} \t\r\n",
        "{\"extra\":null,\"type\":\"bye\"}",
        "{\"type\":\"ack\",\"seq\":9007199254740991}",
        "{\"type\":\"ack\",\"seq\":0}",
        "{\"type\":\"error\",\"code\":\"x\",\"message\":\"\"}",
        "{\"type\":\"ping\",\"x\":\"\\ud83d\\ude00 \\/ \\\" caf\xc3\xa9\"}",
        "{\"type\":\"ping\",\"x\":[true,false,null,-1.5e-3,{}]}",
        "{\"type\":\"ping\",\"x\":\"\\\\u0000\"}",       /* a backslash, then text */
        "{\"type\":\"ping\",\"x\":{\"a\":1},\"y\":{\"a\":1},\"z\":\"a:b\"}", /* same names, other objects */
};

START_TEST(test_raw_good) {
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *reason = NULL;
        int r;

        r = frame_parse(raw_good[_i], strlen(raw_good[_i]), &f, &reason);
        if (r < 0)
                ck_abort_msg("case %d refused: %s", _i, reason);
        ck_assert_ptr_nonnull(f);
}
END_TEST

/* ---- hostile payloads, as raw bytes ---- */

typedef struct RawCase {
        const char *json;
        size_t len;
} RawCase;

#define RAW(s) { s, sizeof(s) - 1 }

static const RawCase raw_bad[] = {
        RAW(""),
        RAW("{"),
        RAW("{\"type\":\"ping\""),
        RAW("{\"type\":\"ping\",}"),
        RAW("{\"type\" \"ping\"}"),
        RAW("{\"type\":\"ping\"} x"),                         /* trailing garbage */
        RAW("{\"type\":\"ping\"}{}"),
        RAW("{\"type\":\"ping\"}\n{\"type\":\"ping\"}"),
        RAW("{\"type\":\"ping\"}\f"),                         /* not JSON white space */
        RAW("[]"),                                            /* not objects */
        RAW("[{\"type\":\"ping\"}]"),
        RAW("\"ping\""),
        RAW("1"),
        RAW("null"),
        RAW("true"),
        RAW("{}"),                                            /* type */
        RAW("{\"Type\":\"ping\"}"),
        RAW("{\"type\":1}"),
        RAW("{\"type\":null}"),
        RAW("{\"type\":[\"ping\"]}"),
        RAW("{\"type\":\"nope\"}"),
        RAW("{\"type\":\"PING\"}"),
        RAW("{\"type\":\"\"}"),
        RAW("{\"type\":\"ping\\u0000\"}"),
        RAW("{\"type\":\"ping\",\"x\":\"\xff\"}"),            /* invalid UTF-8 */
        RAW("{\"type\":\"ping\",\"x\":\"\xc0\xaf\"}"),        /* overlong */
        RAW("{\"type\":\"ping\",\"x\":\"\xed\xa0\x80\"}"),    /* surrogate */
        RAW("{\"type\":\"ping\",\"x\":\"\xe2\x82\"}"),        /* truncated */
        RAW("{\"type\":\"ping\",\"x\":\"\xf4\x90\x80\x80\"}"), /* > U+10FFFF */
        RAW("{\"type\":\"ping\"}\0"),                        /* NUL byte */
        RAW("{\"type\":\"ping\",\"\0\":1}"),
        RAW("{\"type\\u0000x\":\"ping\"}"),                /* escaped NUL */
        RAW("{\"type\":\"ping\",\"x\":\"\\u0000\"}"),
        RAW("{'type':'ping'}"),                               /* json-c leniencies */
        RAW("{\"type\":\"ack\",\"seq\":NaN}"),
        RAW("{\"type\":\"ack\",\"seq\":Infinity}"),
        RAW("{\"type\":\"ping\",\"x\":-Infinity}"),
        RAW("{\"type\":\"ping\",\"x\":\"a\tb\"}"),            /* raw control character */
        RAW("{\"type\":\"ping\"/* c */}"),
        RAW("{\"type\":\"ping\",\"x\":01}"),
        RAW("{\"type\":\"ack\",\"seq\":9007199254740992}"),  /* huge numbers */
        RAW("{\"type\":\"ack\",\"seq\":18446744073709551615}"),
        RAW("{\"type\":\"ack\",\"seq\":99999999999999999999999999999}"),
        RAW("{\"type\":\"ack\",\"seq\":-9223372036854775809}"),
        RAW("{\"type\":\"ack\",\"seq\":1e3}"),
        RAW("{\"type\":\"ack\",\"seq\":1.0}"),
        RAW("{\"type\":\"ack\",\"seq\":1e999}"),
        RAW("{\"type\":\"ping\",\"type\":\"ping\"}"),           /* duplicate members */
        RAW("{\"type\":\"ack\",\"seq\":1,\"seq\":2}"),
        RAW("{\"type\":\"ping\",\"x\":{\"a\":1,\"a\":{\"b\":2}}}"),
        RAW("{\"type\":\"ping\",\"x\":[{},{\"a\":1,\"a\":1}]}"),
};

START_TEST(test_raw_bad) {
        const RawCase *c = &raw_bad[_i];
        size_t len = c->len;
        Frame *f = (Frame *) 0x1;
        const char *reason = NULL;

        ck_assert_int_eq(frame_parse(c->json, len, &f, &reason), -EBADMSG);
        ck_assert_ptr_eq(f, (Frame *) 0x1);
        ck_assert_ptr_nonnull(reason);
        ck_assert_uint_gt(strlen(reason), 0);
}
END_TEST

START_TEST(test_deep_nesting) {
        /* _i: depth of the nested value; all but the shallow ones exceed the
         * limit, none may crash. */
        static const size_t depths[] = { 10, 17, 100, 100000 };
        size_t depth = depths[_i], n = 0;
        _cleanup_(freep) char *s = malloc(2 * depth + 64);
        _cleanup_(frame_freep) Frame *f = NULL;
        int r;

        ck_assert_ptr_nonnull(s);
        n += (size_t) sprintf(s, "{\"type\":\"ping\",\"x\":");
        for (size_t i = 0; i < depth; i++)
                s[n++] = '[';
        for (size_t i = 0; i < depth; i++)
                s[n++] = ']';
        s[n++] = '}';
        s[n] = 0;

        r = frame_parse(s, n, &f, NULL);
        ck_assert_int_eq(r, depth == 10 ? 0 : -EBADMSG);
}
END_TEST

/* ---- member mutations of valid frames ---- */

static json_object *valid_frame(FrameType t) {
        const FrameLimits limits = { 65536, 16384, 604800 };
        const uint64_t id = 3;
        KeyPackage *users[1] = { pkg_bob };
        _cleanup_(json_object_unrefp) json_object *env = NULL;

        /* Mutations must not reach the shared envelope object. */
        ck_assert_int_eq(json_object_deep_copy(envelope_json, &env, NULL), 0);

        switch ((int) t) {
        case FRAME_HELLO:
                return frame_new_hello(key->spki, key->spki_len, nonce);
        case FRAME_AUTH:
                return frame_new_auth("alice", key->spki, key->spki_len, nonce, true, sig, sig_len);
        case FRAME_WELCOME:
                return frame_new_welcome(sig, sig_len, pkg_alice, SESSION, &limits);
        case FRAME_ERROR:
                return frame_new_error(&id, ERR_BAD_REQUEST, "message");
        case FRAME_PRESENCE:
                return frame_new_presence_list(users, 1, false);
        case FRAME_LOOKUP:
                return frame_new_lookup(1, "bob");
        case FRAME_KEY:
                return frame_new_key(1, pkg_bob);
        case FRAME_SEND:
                return frame_new_send(1, env);
        case FRAME_ACCEPTED:
                return frame_new_accepted(1, msg_id, true);
        case FRAME_DELIVER:
                return frame_new_deliver(1, env);
        case FRAME_ACK:
                return frame_new_ack(1);
        case FRAME_RECEIPT:
                return frame_new_receipt(msg_id, "delivered");
        /* Variants of presence, and welcome of version 3. */
        case 102:
                return welcome3();
        case 100:
                return frame_new_presence_online(pkg_bob);
        case 101:
                return frame_new_presence_offline("bob");
        default:
                return frame_new_simple(t);
        }
}

#define PRESENCE_ONLINE_FRAME 100
#define PRESENCE_OFFLINE_FRAME 101
#define WELCOME3_FRAME 102

#define A10 "AAAAAAAAAA"
#define A40 A10 A10 A10 A10
#define B64_31 "\"" A40 "AA==\""        /* 31 zero bytes */
#define B64_32 "\"" A40 "AAA=\""        /* 32 */
#define B64_33 "\"" A40 "AAAA\""        /* 33 */
#define B64_16 "\"AAAAAAAAAAAAAAAAAAAAAA==\""
#define Z26 "abcdefghijklmnopqrstuvwxyz"
#define S33 "\"abcdefghijklmnopqrstuvwxyz0123456\""

typedef struct Mutation {
        int frame;              /* FrameType or a presence variant */
        const char *path;       /* member, "a.b" for nested */
        const char *value;      /* JSON text; NULL: delete the member */
        int expected;
} Mutation;

static const Mutation mutations[] = {
        /* sanity: an unchanged member must still parse */
        { FRAME_HELLO, "nonce", B64_32, 0 },
        { FRAME_HELLO, "proto", "1", 0 },

        { FRAME_HELLO, "proto", NULL, -EBADMSG },
        { FRAME_HELLO, "proto", "\"1\"", -EBADMSG },
        { FRAME_HELLO, "proto", "-1", -EBADMSG },
        { FRAME_HELLO, "proto", "1.5", -EBADMSG },
        { FRAME_HELLO, "proto", "true", -EBADMSG },
        { FRAME_HELLO, "proto", "4294967296", -EBADMSG },
        { FRAME_HELLO, "server_key", NULL, -EBADMSG },
        { FRAME_HELLO, "server_key", "\"\"", -EBADMSG },
        { FRAME_HELLO, "server_key", "5", -EBADMSG },
        { FRAME_HELLO, "server_key", "\"AAAA AAAA\"", -EBADMSG },      /* whitespace */
        { FRAME_HELLO, "server_key", "\"AAAA\\nAAAA\"", -EBADMSG },
        { FRAME_HELLO, "server_key", "\" AAAAAAAA\"", -EBADMSG },
        { FRAME_HELLO, "server_key", "\"AAA\"", -EBADMSG },            /* padding */
        { FRAME_HELLO, "server_key", "\"AA=A\"", -EBADMSG },
        { FRAME_HELLO, "server_key", "\"AA\"", -EBADMSG },
        { FRAME_HELLO, "server_key", "\"AAAA====\"", -EBADMSG },
        { FRAME_HELLO, "server_key", "\"AA*A\"", -EBADMSG },           /* alphabet */
        { FRAME_HELLO, "server_key", "\"AA-_\"", -EBADMSG },
        { FRAME_HELLO, "server_key", "\"AB==\"", -EBADMSG },           /* non-canonical */
        { FRAME_HELLO, "nonce", NULL, -EBADMSG },
        { FRAME_HELLO, "nonce", B64_31, -EBADMSG },
        { FRAME_HELLO, "nonce", B64_33, -EBADMSG },
        { FRAME_HELLO, "nonce", B64_16, -EBADMSG },
        { FRAME_HELLO, "suites", NULL, -EBADMSG },
        { FRAME_HELLO, "suites", "[]", -EBADMSG },
        { FRAME_HELLO, "suites", "\"x\"", -EBADMSG },
        { FRAME_HELLO, "suites", "[1]", -EBADMSG },
        { FRAME_HELLO, "suites", "[\"\"]", -EBADMSG },
        { FRAME_HELLO, "suites", "[\"a b\"]", -EBADMSG },
        { FRAME_HELLO, "suites", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\","
                                 "\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]", -EBADMSG },

        { FRAME_AUTH, "user", NULL, -EBADMSG },
        { FRAME_AUTH, "user", "5", -EBADMSG },                         /* int for string */
        { FRAME_AUTH, "user", "\"Alice\"", -EINVAL },
        { FRAME_AUTH, "user", "\"\"", -EINVAL },
        { FRAME_AUTH, "user", "\"-alice\"", -EINVAL },
        { FRAME_AUTH, "user", "\".alice\"", -EINVAL },
        { FRAME_AUTH, "user", "\"al ice\"", -EINVAL },
        { FRAME_AUTH, "user", "\"al/ice\"", -EINVAL },
        { FRAME_AUTH, "user", "\"alicé\"", -EINVAL },
        { FRAME_AUTH, "user", "\"alice\\u0000x\"", -EBADMSG },      /* NUL: never */
        { FRAME_AUTH, "user", S33, -EINVAL },
        { FRAME_AUTH, "key", "\"AAAA\"", 0 },                         /* size only */
        { FRAME_AUTH, "nonce", B64_33, -EBADMSG },
        { FRAME_AUTH, "receive", NULL, -EBADMSG },
        { FRAME_AUTH, "receive", "\"true\"", -EBADMSG },               /* bool as string */
        { FRAME_AUTH, "receive", "1", -EBADMSG },
        { FRAME_AUTH, "receive", "null", -EBADMSG },
        { FRAME_AUTH, "sig", NULL, -EBADMSG },
        { FRAME_AUTH, "sig", "\"\"", -EBADMSG },
        { FRAME_AUTH, "sig", "[\"AAAA\"]", -EBADMSG },

        { FRAME_WELCOME, "sig", NULL, -EBADMSG },
        { FRAME_WELCOME, "self", NULL, -EBADMSG },
        { FRAME_WELCOME, "self", "{}", -EBADMSG },
        { FRAME_WELCOME, "self", "\"alice\"", -EBADMSG },
        { FRAME_WELCOME, "self.user", "\"Alice\"", -EBADMSG },
        { FRAME_WELCOME, "self.key", NULL, -EBADMSG },
        { FRAME_WELCOME, "self.registered", "\"1\"", -EBADMSG },
        { FRAME_WELCOME, "self.registered", "-5", -EBADMSG },
        { FRAME_WELCOME, "self.sig", "\"AA=A\"", -EBADMSG },
        { FRAME_WELCOME, "session", NULL, -EBADMSG },
        { FRAME_WELCOME, "session", "\"\"", -EBADMSG },
        { FRAME_WELCOME, "session", "\"a b\"", -EBADMSG },
        { FRAME_WELCOME, "session", "\"sé\"", -EBADMSG },
        { FRAME_WELCOME, "session", "\"" A40 A10 A10 "ABCDE\"", -EBADMSG },   /* 65 */
        { FRAME_WELCOME, "session", "\"" A40 A10 A10 "ABCD\"", 0 },     /* 64 */
        { FRAME_WELCOME, "session", "7", -EBADMSG },
        { FRAME_WELCOME, "limits", NULL, -EBADMSG },
        { FRAME_WELCOME, "limits.idle_timeout", "300", 0 },
        { FRAME_WELCOME, "limits.idle_timeout", "\"300\"", -EBADMSG },
        { FRAME_WELCOME, "limits.idle_timeout", "-1", -EBADMSG },
        { FRAME_WELCOME, "limits", "{}", -EBADMSG },
        { FRAME_WELCOME, "limits", "[65536,16384,604800]", -EBADMSG },
        { FRAME_WELCOME, "limits.max_frame", "\"65536\"", -EBADMSG },
        { FRAME_WELCOME, "limits.max_text", "16384.0", -EBADMSG },
        { FRAME_WELCOME, "limits.queue_ttl", NULL, -EBADMSG },

        { WELCOME3_FRAME, "welcome_key.key", B64_32, 0 },
        { WELCOME3_FRAME, "welcome_key.key", B64_31, -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.key", B64_33, -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.key", NULL, -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.key", "\"\"", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.key", "[" B64_32 "]", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.not_after", NULL, -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.not_after", "\"1700604800\"", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.not_after", "-1", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.not_after", "1.5", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.not_after", "null", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.not_after", "0", 0 },
        { WELCOME3_FRAME, "welcome_key.sig", NULL, -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.sig", "\"\"", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.sig", "\"AA=A\"", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.sig", "5", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key.extra", "1", -EBADMSG },        /* it is signed */
        { WELCOME3_FRAME, "welcome_key", "{}", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key", "[]", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key", B64_32, -EBADMSG },
        { WELCOME3_FRAME, "welcome_key", "null", -EBADMSG },
        { WELCOME3_FRAME, "welcome_key", NULL, 0 },     /* the client requires it in version 3 */
        { WELCOME3_FRAME, "sig", NULL, -EBADMSG },
        { FRAME_AUTH, "proto", "3", 0 },
        { FRAME_AUTH, "proto", "4", 0 },               /* the relay takes the lower */

        { FRAME_ERROR, "code", NULL, -EBADMSG },
        { FRAME_ERROR, "code", "\"\"", -EBADMSG },
        { FRAME_ERROR, "code", "\"Bad\"", -EBADMSG },
        { FRAME_ERROR, "code", "\"bad-frame\"", -EBADMSG },
        { FRAME_ERROR, "code", "\"bad frame\"", -EBADMSG },
        { FRAME_ERROR, "code", "\"" Z26 Z26 "abcdefghijkl\"", -EBADMSG },          /* 64 */
        { FRAME_ERROR, "code", "\"" Z26 Z26 "abcdefghijk\"", 0 },                  /* 63 */
        { FRAME_ERROR, "code", "5", -EBADMSG },
        { FRAME_ERROR, "id", NULL, 0 },
        { FRAME_ERROR, "id", "null", -EBADMSG },
        { FRAME_ERROR, "id", "-1", -EBADMSG },
        { FRAME_ERROR, "id", "\"1\"", -EBADMSG },
        { FRAME_ERROR, "id", "2.5", -EBADMSG },
        { FRAME_ERROR, "message", NULL, 0 },
        { FRAME_ERROR, "message", "5", -EBADMSG },
        { FRAME_ERROR, "message", "\"a\\u0000b\"", -EBADMSG },

        { FRAME_PRESENCE, "users", NULL, -EBADMSG },
        { FRAME_PRESENCE, "users", "{}", -EBADMSG },
        { FRAME_PRESENCE, "users", "[1]", -EBADMSG },
        { FRAME_PRESENCE, "users", "[{}]", -EBADMSG },
        { FRAME_PRESENCE, "users", "[null]", -EBADMSG },
        { FRAME_PRESENCE, "event", "\"online\"", -EBADMSG },           /* no package */
        { FRAME_PRESENCE, "event", "\"away\"", -EBADMSG },
        { FRAME_PRESENCE, "event", "5", -EBADMSG },
        { FRAME_PRESENCE, "more", "true", 0 },
        { FRAME_PRESENCE, "more", "\"yes\"", -EBADMSG },
        { FRAME_PRESENCE, "more", "1", -EBADMSG },
        { PRESENCE_ONLINE_FRAME, "package", NULL, -EBADMSG },
        { PRESENCE_ONLINE_FRAME, "package.sig", "\"\"", -EBADMSG },
        { PRESENCE_ONLINE_FRAME, "event", "\"offline\"", -EBADMSG },   /* no user */
        { PRESENCE_OFFLINE_FRAME, "user", "\"B\"", -EINVAL },
        { PRESENCE_OFFLINE_FRAME, "user", NULL, -EBADMSG },
        { PRESENCE_OFFLINE_FRAME, "event", "\"Offline\"", -EBADMSG },

        { FRAME_LOOKUP, "id", NULL, -EBADMSG },
        { FRAME_LOOKUP, "id", "\"1\"", -EBADMSG },                     /* string for int */
        { FRAME_LOOKUP, "id", "1.5", -EBADMSG },                       /* float id */
        { FRAME_LOOKUP, "id", "-1", -EBADMSG },                        /* negative id */
        { FRAME_LOOKUP, "id", "true", -EBADMSG },
        { FRAME_LOOKUP, "id", "9007199254740992", -EBADMSG },
        { FRAME_LOOKUP, "id", "9007199254740991", 0 },
        { FRAME_LOOKUP, "user", "\"BOB\"", -EINVAL },
        { FRAME_LOOKUP, "user", S33, -EINVAL },
        { FRAME_LOOKUP, "user", "[\"bob\"]", -EBADMSG },

        { FRAME_KEY, "package", NULL, -EBADMSG },
        { FRAME_KEY, "package", "[]", -EBADMSG },
        { FRAME_KEY, "package.user", NULL, -EBADMSG },
        { FRAME_KEY, "package.key", "\"AA=A\"", -EBADMSG },
        { FRAME_KEY, "package.registered", "1.5", -EBADMSG },
        { FRAME_KEY, "package.extra", "1", 0 },                        /* forward compatible */

        { FRAME_SEND, "id", "\"1\"", -EBADMSG },
        { FRAME_SEND, "envelope", NULL, -EBADMSG },
        { FRAME_SEND, "envelope", "\"x\"", -EBADMSG },
        { FRAME_SEND, "envelope", "{}", -EBADMSG },
        { FRAME_SEND, "envelope.v", "2", -EBADMSG },
        { FRAME_SEND, "envelope.extra", "1", -EBADMSG },               /* strict inside */
        { FRAME_SEND, "envelope.from", "\"Alice\"", -EBADMSG },
        { FRAME_SEND, "envelope.iv", "\"AAAA\"", -EBADMSG },
        { FRAME_SEND, "envelope.mac", NULL, -EBADMSG },

        { FRAME_ACCEPTED, "msg", NULL, -EBADMSG },
        { FRAME_ACCEPTED, "msg", "\"abc\"", -EBADMSG },
        { FRAME_ACCEPTED, "msg", "\"AAAAAAAAAAAAAAAAAAAAAAAA\"", -EBADMSG },   /* 18 bytes */
        { FRAME_ACCEPTED, "msg", "\"AAAAAAAAAAAAAAAAAAAAAA=A\"", -EBADMSG },
        { FRAME_ACCEPTED, "msg", B64_16, 0 },
        { FRAME_ACCEPTED, "queued", "\"true\"", -EBADMSG },
        { FRAME_ACCEPTED, "queued", "0", -EBADMSG },
        { FRAME_ACCEPTED, "queued", NULL, -EBADMSG },

        { FRAME_DELIVER, "seq", "-1", -EBADMSG },
        { FRAME_DELIVER, "seq", NULL, -EBADMSG },
        { FRAME_DELIVER, "envelope", NULL, -EBADMSG },
        { FRAME_DELIVER, "envelope", "\"x\"", -EBADMSG },
        { FRAME_DELIVER, "envelope.ct", "\"AAAA\"", 0 },             /* test_deliver_refused */

        { FRAME_ACK, "seq", "\"1\"", -EBADMSG },
        { FRAME_ACK, "seq", "false", -EBADMSG },
        { FRAME_ACK, "seq", "[1]", -EBADMSG },

        { FRAME_RECEIPT, "msg", "\"\"", -EBADMSG },
        { FRAME_RECEIPT, "status", NULL, -EBADMSG },
        { FRAME_RECEIPT, "status", "\"Delivered\"", -EBADMSG },
        { FRAME_RECEIPT, "status", "\"\"", -EBADMSG },
        { FRAME_RECEIPT, "status", "\"abcdefghijklmnopqrstuvwxyzabcdef\"", -EBADMSG },   /* 32 */
        { FRAME_RECEIPT, "status", "\"read\"", 0 },
        { FRAME_RECEIPT, "status", "\"abcdefghijklmnopqrstuvwxyz_abcd\"", 0 },       /* 31 */
};

/* Set (or delete) the member at a dotted path. */
static void mutate(json_object *o, const char *path, const char *value) {
        _cleanup_(freep) char *p = strdup(path);
        char *dot, *name;

        ck_assert_ptr_nonnull(p);
        name = p;
        while ((dot = strchr(name, '.'))) {
                json_object *child;

                *dot = 0;
                ck_assert(json_object_object_get_ex(o, name, &child));
                o = child;
                name = dot + 1;
        }

        if (!value) {
                ck_assert(json_object_object_get_ex(o, name, NULL));
                json_object_object_del(o, name);
        } else {
                json_object *v = json_tokener_parse(value);

                /* json-c has no JSON null object: "null" parses to NULL. */
                ck_assert(v || strcmp(value, "null") == 0);
                json_object_object_add(o, name, v);
        }
}

START_TEST(test_mutation) {
        const Mutation *m = &mutations[_i];
        _cleanup_(json_object_unrefp) json_object *o = valid_frame((FrameType) m->frame);
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *reason = NULL, *s;
        int r;

        ck_assert_ptr_nonnull(o);

        /* The unmutated frame parses, so the refusal below is the mutation's. */
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_int_eq(frame_parse(s, strlen(s), &f, NULL), 0);
        f = frame_free(f);

        mutate(o, m->path, m->value);
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        r = frame_parse(s, strlen(s), &f, &reason);
        if (r != m->expected)
                ck_abort_msg("%s: got %d (%s), expected %d", s, r, reason ? reason : "-",
                             m->expected);
        if (r < 0) {
                ck_assert_ptr_null(f);
                ck_assert_ptr_nonnull(reason);
        }
        if (r == -EINVAL)
                ck_assert_str_eq(reason, "bad username");
}
END_TEST

/* A deliver whose envelope fails the shape checks is still a frame: the
 * client reports the envelope (from and id where valid) and acks it. The
 * same envelope in a send is refused. _i: the case. */
static const struct {
        const char *path, *value;
        EnvelopeError error;
        bool from, msg;
} refused_envelopes[] = {
        { "v", "2", ENVELOPE_BAD_VERSION, true, true },
        { "v", NULL, ENVELOPE_MALFORMED, true, true },
        { "suite", "\"rot13\"", ENVELOPE_BAD_SUITE, true, true },
        { "mac", NULL, ENVELOPE_MALFORMED, true, true },
        { "ct", "\"AAAA\"", ENVELOPE_MALFORMED, true, true },
        { "extra", "1", ENVELOPE_MALFORMED, true, true },
        { "to", "\"Bob\"", ENVELOPE_MALFORMED, true, true },
        { "from", "\"Alice\"", ENVELOPE_MALFORMED, false, true },
        { "from", "5", ENVELOPE_MALFORMED, false, true },
        { "id", "\"AAAA\"", ENVELOPE_MALFORMED, true, false },
        { "id", NULL, ENVELOPE_MALFORMED, true, false },
};

START_TEST(test_deliver_refused) {
        _cleanup_(json_object_unrefp) json_object *o = valid_frame(FRAME_DELIVER), *send = NULL;
        _cleanup_(frame_freep) Frame *f = NULL, *g = NULL;
        const char *reason = NULL, *s;
        json_object *env = NULL;
        char path[32];

        ck_assert_ptr_nonnull(o);
        snprintf(path, sizeof(path), "envelope.%s", refused_envelopes[_i].path);
        mutate(o, path, refused_envelopes[_i].value);
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_int_eq(frame_parse(s, strlen(s), &f, &reason), 0);
        ck_assert_int_eq(f->type, FRAME_DELIVER);
        ck_assert_uint_eq(f->deliver.seq, 1);
        ck_assert_ptr_null(f->deliver.envelope);
        ck_assert_int_eq(f->deliver.error, refused_envelopes[_i].error);
        ck_assert(json_object_object_get_ex(o, "envelope", &env));
        ck_assert_ptr_nonnull(f->deliver.raw);
        ck_assert(json_object_equal(f->deliver.raw, env));
        ck_assert_str_eq(f->deliver.from, refused_envelopes[_i].from ? "alice" : "");
        ck_assert_str_eq(f->deliver.msg, refused_envelopes[_i].msg ? msg_id : "");

        /* A relay refuses it. */
        send = frame_new_send(1, env);
        s = json_object_to_json_string_ext(send, JSON_C_TO_STRING_PLAIN);
        ck_assert_int_eq(frame_parse(s, strlen(s), &g, &reason), -EBADMSG);
        ck_assert_ptr_null(g);
}
END_TEST

START_TEST(test_oversized_binary) {
        /* _i: 0 key over 1024 bytes, 1 signature over 512 bytes */
        static const char *const members[] = { "key", "sig" };
        static const size_t sizes[] = { 1025, 513 };
        _cleanup_(json_object_unrefp) json_object *o = valid_frame(FRAME_AUTH);
        _cleanup_(freep) uint8_t *zero = calloc(1, sizes[_i]);
        _cleanup_(freep) char *b = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *s;

        ck_assert_ptr_nonnull(zero);
        ck_assert_int_eq(b64_encode(zero, sizes[_i], &b), 0);
        json_object_object_add(o, members[_i], json_object_new_string(b));
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_int_eq(frame_parse(s, strlen(s), &f, NULL), -EBADMSG);

        /* One byte less is accepted. */
        free(TAKE_PTR(b));
        ck_assert_int_eq(b64_encode(zero, sizes[_i] - 1, &b), 0);
        json_object_object_add(o, members[_i], json_object_new_string(b));
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_int_eq(frame_parse(s, strlen(s), &f, NULL), 0);
}
END_TEST

START_TEST(test_long_message) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        char m[1026];
        const char *s;

        memset(m, 'm', sizeof(m) - 1);
        m[sizeof(m) - 1] = 0;
        o = frame_new_error(NULL, "x", m);
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_int_eq(frame_parse(s, strlen(s), &f, NULL), -EBADMSG);

        m[sizeof(m) - 2] = 0;      /* 1024 bytes */
        json_object_put(o);
        o = frame_new_error(NULL, "x", m);
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_int_eq(frame_parse(s, strlen(s), &f, NULL), 0);
        ck_assert_uint_eq(strlen(f->error.message), 1024);
}
END_TEST

/* ---- suite 2: prekeys and ENVELOPE2 ---------------------------------- */

static SignedPrekey make_spk(const char *user, uint32_t id) {
        uint8_t priv[X25519_KEY_LEN];
        SignedPrekey spk;

        ck_assert_int_eq(signed_prekey_make(user, key, id, TS, NULL, priv, &spk), 0);
        return spk;
}

static OneTimePrekey make_opk(uint32_t id) {
        uint8_t priv[X25519_KEY_LEN];
        OneTimePrekey opk;

        ck_assert_int_eq(one_time_prekey_make(id, NULL, priv, &opk), 0);
        return opk;
}

static void assert_spk_eq(const SignedPrekey *a, const SignedPrekey *b) {
        ck_assert_uint_eq(a->id, b->id);
        ck_assert_mem_eq(a->pub, b->pub, X25519_KEY_LEN);
        ck_assert_uint_eq(a->created, b->created);
        ck_assert_uint_eq(a->sig_len, b->sig_len);
        ck_assert_mem_eq(a->sig, b->sig, b->sig_len);
}

START_TEST(test_publish) {
        /* _i OPKs: none, one, the most a frame may carry. */
        const size_t n = _i == 0 ? 0 : _i == 1 ? 1 : PREKEYS_PUBLISH_MAX;
        _cleanup_(freep) OneTimePrekey *opks = calloc(PREKEYS_PUBLISH_MAX, sizeof(OneTimePrekey));
        SignedPrekey spk = make_spk("alice", 7);
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;

        ck_assert_ptr_nonnull(opks);
        for (size_t i = 0; i < n; i++)
                opks[i] = make_opk((uint32_t) (i + 100));
        o = frame_new_publish(3, &spk, opks, n);
        f = roundtrip(o, FRAME_PUBLISH);
        ck_assert_uint_eq(f->publish.id, 3);
        assert_spk_eq(&f->publish.spk, &spk);
        ck_assert_int_eq(signed_prekey_verify("alice", key, &f->publish.spk), 0);
        ck_assert_uint_eq(f->publish.n_opks, n);
        for (size_t i = 0; i < n; i++) {
                ck_assert_uint_eq(f->publish.opks[i].id, i + 100);
                ck_assert_mem_eq(f->publish.opks[i].pub, opks[i].pub, X25519_KEY_LEN);
        }
        /* One more than a frame may carry is not built. */
        ck_assert_ptr_null(frame_new_publish(3, &spk, opks, PREKEYS_PUBLISH_MAX + 1));
}
END_TEST

START_TEST(test_published) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_published(9, 123);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_PUBLISHED);

        ck_assert_uint_eq(f->published.id, 9);
        ck_assert_uint_eq(f->published.opks, 123);
}
END_TEST

START_TEST(test_lookup_prekeys) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_lookup(4, "bob");
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_LOOKUP), *g = NULL;

        ck_assert(!f->lookup.prekeys);
        ck_assert_int_eq(frame_lookup_add_prekeys(o), 0);
        g = roundtrip(o, FRAME_LOOKUP);
        ck_assert(g->lookup.prekeys);
        ck_assert_str_eq(g->lookup.user, "bob");
}
END_TEST

START_TEST(test_key_bundle) {
        PrekeyBundle b = { .spk = make_spk("bob", 1), .has_opk = _i == 1, .opk = make_opk(_i == 1 ? 5 : 0) };
        _cleanup_(json_object_unrefp) json_object *o = frame_new_key(2, pkg_bob);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_KEY), *g = NULL;

        if (!b.has_opk)
                memset(&b.opk, 0, sizeof(b.opk));
        ck_assert(!f->key.has_bundle);
        ck_assert_int_eq(frame_key_add_bundle(o, &b), 0);
        g = roundtrip(o, FRAME_KEY);
        ck_assert(g->key.has_bundle);
        assert_package_eq(g->key.package, pkg_bob);
        assert_spk_eq(&g->key.bundle.spk, &b.spk);
        ck_assert_int_eq(signed_prekey_verify("bob", key, &g->key.bundle.spk), 0);
        ck_assert(g->key.bundle.has_opk == b.has_opk);
        ck_assert_uint_eq(g->key.bundle.opk.id, b.opk.id);
        ck_assert_mem_eq(g->key.bundle.opk.pub, b.opk.pub, X25519_KEY_LEN);
}
END_TEST

/* What a relay of suite 2 says in hello and welcome; an older relay's
 * welcome (test_welcome) has neither. */
START_TEST(test_hello_welcome_suite2) {
        FrameLimits limits = { .max_frame = 65536, .max_text = 16384, .queue_ttl = 60, .max_opks = 200 };
        _cleanup_(json_object_unrefp) json_object *h = frame_new_hello(key->spki, key->spki_len, nonce);
        _cleanup_(json_object_unrefp) json_object *w = frame_new_welcome(sig, sig_len, pkg_alice, SESSION, &limits);
        _cleanup_(frame_freep) Frame *f = NULL, *g = NULL;

        ck_assert_int_eq(frame_hello_add_suite(h, SUITE2_NAME), 0);
        f = roundtrip(h, FRAME_HELLO);
        ck_assert_uint_eq(f->hello.n_suites, 2);
        ck_assert_str_eq(f->hello.suites[0], PROTOCOL_SUITE);
        ck_assert_str_eq(f->hello.suites[1], SUITE2_NAME);

        ck_assert_int_eq(frame_welcome_add_opks(w, 17), 0);
        g = roundtrip(w, FRAME_WELCOME);
        ck_assert(g->welcome.has_opks);
        ck_assert_uint_eq(g->welcome.opks, 17);
        ck_assert_uint_eq(g->welcome.limits.max_opks, 200);
}
END_TEST

/* Binary members of suite 2 as base64 of the given bytes, for hostile
 * frames. */
static char *b64_of(const uint8_t *data, size_t len) {
        char *s = NULL;

        ck_assert_int_eq(b64_encode(data, len, &s), 0);
        return s;
}

static int parse_text(const char *text, Frame **ret, const char **reason, bool *has_id) {
        uint64_t id;

        return frame_parse_request(text, strlen(text), ret, reason, has_id, &id);
}

/* Each a publish or key frame that must be refused as bad_frame, with the
 * request's id (publish) so that the error answers it. */
START_TEST(test_prekeys_hostile) {
        SignedPrekey spk = make_spk("alice", 1);
        OneTimePrekey opk = make_opk(2);
        _cleanup_(freep) uint8_t *spk_bin = NULL, *opk_bin = NULL;
        _cleanup_(freep) char *spk64 = NULL, *text = NULL, *bad = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        uint8_t buf[1024];
        size_t spk_len, opk_len;
        const char *reason = NULL;
        bool has_id = false;

        ck_assert_int_eq(signed_prekey_encode(&spk, &spk_bin, &spk_len), 0);
        ck_assert_int_eq(one_time_prekey_encode(&opk, &opk_bin, &opk_len), 0);
        ck_assert_uint_eq(opk_len, 36);
        spk64 = b64_of(spk_bin, spk_len);

        switch (_i) {
        case 0:         /* an OPK a byte short */
                bad = b64_of(opk_bin, opk_len - 1);
                break;
        case 1:         /* ...a byte long */
                memcpy(buf, opk_bin, opk_len);
                buf[opk_len] = 0;
                bad = b64_of(buf, opk_len + 1);
                break;
        case 2:         /* a non-canonical key: u >= 2^255 - 19 */
                memcpy(buf, opk_bin, opk_len);
                memset(buf + 4, 0xff, X25519_KEY_LEN);
                bad = b64_of(buf, opk_len);
                break;
        case 3:         /* an SPK with a byte left over */
                memcpy(buf, spk_bin, spk_len);
                buf[spk_len] = 0;
                free(spk64);
                spk64 = b64_of(buf, spk_len + 1);
                bad = b64_of(opk_bin, opk_len);
                break;
        case 4:         /* an SPK whose signature is too short */
                memcpy(buf, spk_bin, spk_len);
                buf[4 + 32 + 8 + 2] = 0;       /* lp(sig): 256 -> 0 */
                buf[4 + 32 + 8 + 3] = 255;
                free(spk64);
                spk64 = b64_of(buf, 4 + 32 + 8 + 4 + 255);
                bad = b64_of(opk_bin, opk_len);
                break;
        default: {      /* one OPK more than a frame may carry */
                _cleanup_(freep) char *one = b64_of(opk_bin, opk_len);
                size_t len = (strlen(one) + 3) * (PREKEYS_PUBLISH_MAX + 1);

                bad = calloc(1, len);
                ck_assert_ptr_nonnull(bad);
                for (size_t i = 0; i <= PREKEYS_PUBLISH_MAX; i++)
                        strcat(strcat(strcat(bad, i ? "\",\"" : ""), one), "");
                break;
        }
        }
        ck_assert_int_ge(asprintf(&text, "{\"type\":\"publish\",\"id\":5,\"spk\":\"%s\",\"opks\":[\"%s\"]}",
                                  spk64, bad), 0);
        ck_assert_int_eq(parse_text(text, &f, &reason, &has_id), -EBADMSG);
        ck_assert_ptr_null(f);
        ck_assert(has_id);
        ck_assert_str_eq(reason, _i >= 3 && _i <= 4 ? "bad spk" : "bad opks");
}
END_TEST

START_TEST(test_key_bundle_hostile) {
        PrekeyBundle b = { .spk = make_spk("bob", 1) };
        _cleanup_(json_object_unrefp) json_object *o = frame_new_key(2, pkg_bob);
        _cleanup_(freep) uint8_t *bin = NULL;
        _cleanup_(freep) char *b64 = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *reason = NULL;
        size_t len;

        ck_assert_int_eq(prekey_bundle_encode(&b, &bin, &len), 0);
        bin[len - 1] = 2;       /* the OPK flag: 0 or 1 only */
        b64 = b64_of(bin, len);
        ck_assert_int_eq(json_add_string(o, "bundle", b64), 0);
        ck_assert_int_eq(wire_parse(o, &f, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "bad bundle");
}
END_TEST

/* An ENVELOPE2 with a header of hdr_len bytes, the rest of the right
 * sizes (the relay checks no more than shape). */
static json_object *envelope2_json(size_t hdr_len) {
        uint8_t hdr[ENVELOPE2_HDR_MAX + 1] = {}, ct[16] = { 1 }, mac[32] = { 2 }, s[256] = { 3 };
        json_object *o = NULL;

        o = json_object_new_object();
        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(json_add_uint64(o, "v", 1), 0);
        ck_assert_int_eq(json_add_string(o, "suite", SUITE2_NAME), 0);
        ck_assert_int_eq(json_add_b64(o, "id", envelope->id, MSG_ID_LEN), 0);
        ck_assert_int_eq(json_add_string(o, "from", "alice"), 0);
        ck_assert_int_eq(json_add_string(o, "to", "bob"), 0);
        ck_assert_int_eq(json_add_uint64(o, "ts", TS), 0);
        ck_assert_int_eq(json_add_b64(o, "hdr", hdr, hdr_len), 0);
        ck_assert_int_eq(json_add_b64(o, "ct", ct, sizeof(ct)), 0);
        ck_assert_int_eq(json_add_b64(o, "mac", mac, sizeof(mac)), 0);
        ck_assert_int_eq(json_add_b64(o, "sig", s, sizeof(s)), 0);
        return o;
}

/* The relay splices the text of an envelope it received into deliver
 * frames (frame_deliver_to_wire()): the same bytes as the frame built from
 * the object, which parse back to the same envelope. _i: suite 1 or 2,
 * and the seq, from 0 to the largest. */
START_TEST(test_deliver_spliced) {
        static const uint64_t seqs[] = { 0, 1, 123456789, 9007199254740991 };
        _cleanup_(json_object_unrefp) json_object *e = _i & 1 ? envelope2_json(ENVELOPE2_HDR_MAX)
                                                             : json_object_get(envelope_json);
        _cleanup_(json_object_unrefp) json_object *send = frame_new_send(1, e), *built = NULL;
        _cleanup_(frame_freep) Frame *f = roundtrip(send, FRAME_SEND), *g = NULL;
        _cleanup_(freep) uint8_t *wire = NULL, *expected = NULL;
        size_t len = 0, expected_len = 0, text_len = 0;
        uint64_t seq = seqs[_i / 2];
        const char *text;

        /* As the relay has it: the received object, serialized. */
        text = json_object_to_json_string_length(f->send.raw, JSON_C_TO_STRING_PLAIN |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE, &text_len);
        ck_assert_ptr_nonnull(text);
        built = frame_new_deliver(seq, f->send.raw);
        ck_assert_int_eq(frame_to_wire(built, DEFAULT_MAX_FRAME, &expected, &expected_len), 0);

        ck_assert_int_eq(frame_deliver_to_wire(seq, text, text_len, DEFAULT_MAX_FRAME, &wire, &len), 0);
        ck_assert_uint_eq(len, expected_len);
        ck_assert_mem_eq(wire, expected, len);

        ck_assert_int_eq(frame_parse(wire + 4, len - 4, &g, NULL), 0);
        ck_assert_int_eq(g->type, FRAME_DELIVER);
        ck_assert_uint_eq(g->deliver.seq, seq);
        ck_assert(json_object_equal(g->deliver.raw, e));

        /* max_frame holds for the payload, to the byte. */
        free(wire);
        wire = NULL;
        ck_assert_int_eq(frame_deliver_to_wire(seq, text, text_len, len - 4 - 1, &wire, &len), -EMSGSIZE);
        ck_assert_ptr_null(wire);
        ck_assert_int_eq(frame_deliver_to_wire(seq, text, text_len, expected_len - 4, &wire, &len), 0);
}
END_TEST

START_TEST(test_envelope2) {
        /* _i: the shortest and longest header. */
        size_t hdr_len = _i ? ENVELOPE2_HDR_MAX : ENVELOPE2_HDR_MIN;
        _cleanup_(json_object_unrefp) json_object *e = envelope2_json(hdr_len), *back = NULL;
        _cleanup_(json_object_unrefp) json_object *o = frame_new_send(8, e);
        _cleanup_(frame_freep) Frame *f = roundtrip(o, FRAME_SEND);
        _cleanup_(freep) char *text = NULL;
        EnvelopeOpenParams p = { .me = "bob", .my_key = key, .sender_key = key, .now = TS };
        EnvelopeError error = ENVELOPE_OK;
        uint8_t d1[ENVELOPE_DIGEST_LEN], d2[ENVELOPE_DIGEST_LEN];
        size_t len;

        ck_assert(envelope_is_suite2(f->send.envelope));
        ck_assert_str_eq(f->send.envelope->from, "alice");
        ck_assert_str_eq(f->send.envelope->to, "bob");
        ck_assert_uint_eq(f->send.envelope->hdr_len, hdr_len);
        ck_assert_uint_eq(f->send.envelope->ct_len, 16);
        ck_assert(json_object_equal(f->send.raw, e));
        /* Written back the same; suite 1's opening is not suite 2's. */
        ck_assert_int_eq(envelope_to_json(f->send.envelope, &back), 0);
        ck_assert(json_object_equal(back, e));
        ck_assert_int_eq(envelope_open(f->send.envelope, &p, &text, &len, &error), -EBADMSG);
        ck_assert_int_eq(error, ENVELOPE_BAD_SUITE);
        /* The digest covers the header: another header, another digest. */
        ck_assert_int_eq(envelope_digest(f->send.envelope, d1), 0);
        f->send.envelope->hdr[0] ^= 1;
        ck_assert_int_eq(envelope_digest(f->send.envelope, d2), 0);
        ck_assert(memcmp(d1, d2, sizeof(d1)) != 0);
}
END_TEST

/* ENVELOPE2 is exactly its ten members; suite 1 does not take hdr. */
START_TEST(test_envelope2_hostile) {
        _cleanup_(json_object_unrefp) json_object *e = NULL, *o = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        Envelope *env = NULL;
        EnvelopeError error = ENVELOPE_OK;
        const char *reason = NULL;

        switch (_i) {
        case 0:
                e = envelope2_json(ENVELOPE2_HDR_MIN - 1);
                break;
        case 1:
                e = envelope2_json(ENVELOPE2_HDR_MAX + 1);
                break;
        case 2:
                e = envelope2_json(ENVELOPE2_HDR_MIN);
                ck_assert_int_eq(json_add_b64(e, "iv", nonce, ENVELOPE_IV_LEN), 0);
                break;
        case 3:
                e = envelope2_json(ENVELOPE2_HDR_MIN);
                json_object_object_del(e, "hdr");
                break;
        default:
                ck_assert_int_eq(json_parse_strict(json_object_to_json_string(envelope_json),
                                                   strlen(json_object_to_json_string(envelope_json)),
                                                   JSON_DEPTH_DEFAULT, &e, NULL), 0);
                ck_assert_int_eq(json_add_b64(e, "hdr", nonce, ENVELOPE2_HDR_MIN), 0);
                break;
        }
        ck_assert_int_eq(envelope_from_json(e, &env, &error), -EBADMSG);
        ck_assert_ptr_null(env);
        ck_assert_int_eq(error, ENVELOPE_MALFORMED);
        o = frame_new_send(1, e);
        ck_assert_int_eq(wire_parse(o, &f, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "bad envelope");
}
END_TEST

static Suite *codec_suite(void) {
        Suite *s = suite_create("codec");
        TCase *tc;

        tc = tcase_create("roundtrip");
        tcase_add_test(tc, test_type_names);
        tcase_add_test(tc, test_hello);
        tcase_add_loop_test(tc, test_auth, 0, 2);
        tcase_add_test(tc, test_welcome);
        tcase_add_test(tc, test_welcome3);
        tcase_add_test(tc, test_error);
        tcase_add_test(tc, test_error_minimal);
        tcase_add_test(tc, test_error_rate_limited);
        tcase_add_loop_test(tc, test_presence_list, 0, 3);
        tcase_add_test(tc, test_presence_online);
        tcase_add_test(tc, test_presence_offline);
        tcase_add_test(tc, test_presence_user);
        tcase_add_loop_test(tc, test_watch, 0, 2);
        tcase_add_test(tc, test_who_and_online);
        tcase_add_test(tc, test_lookup);
        tcase_add_test(tc, test_key);
        tcase_add_test(tc, test_send);
        tcase_add_test(tc, test_deliver);
        tcase_add_loop_test(tc, test_deliver_refused, 0, (int) ELEMENTSOF(refused_envelopes));
        tcase_add_loop_test(tc, test_deliver_spliced, 0, 8);
        tcase_add_test(tc, test_raw_outlives_payload);
        tcase_add_loop_test(tc, test_accepted, 0, 2);
        tcase_add_loop_test(tc, test_accepted_to_wire, 0, 2);
        tcase_add_test(tc, test_accepted_to_wire_refused);
        tcase_add_test(tc, test_ack);
        tcase_add_test(tc, test_receipt);
        tcase_add_loop_test(tc, test_simple, 0, (int) ELEMENTSOF(simple_types));
        tcase_add_test(tc, test_synced_builder);
        tcase_add_test(tc, test_key_package_json);
        tcase_add_test(tc, test_to_wire_limits);
        tcase_add_loop_test(tc, test_raw_good, 0, (int) ELEMENTSOF(raw_good));
        suite_add_tcase(s, tc);

        tc = tcase_create("suite2");
        tcase_add_loop_test(tc, test_publish, 0, 3);
        tcase_add_test(tc, test_published);
        tcase_add_test(tc, test_lookup_prekeys);
        tcase_add_loop_test(tc, test_key_bundle, 0, 2);
        tcase_add_test(tc, test_hello_welcome_suite2);
        tcase_add_loop_test(tc, test_prekeys_hostile, 0, 6);
        tcase_add_test(tc, test_key_bundle_hostile);
        tcase_add_loop_test(tc, test_envelope2, 0, 2);
        tcase_add_loop_test(tc, test_envelope2_hostile, 0, 5);
        suite_add_tcase(s, tc);

        tc = tcase_create("hostile");
        tcase_add_loop_test(tc, test_raw_bad, 0, (int) ELEMENTSOF(raw_bad));
        tcase_add_loop_test(tc, test_deep_nesting, 0, 4);
        tcase_add_loop_test(tc, test_mutation, 0, (int) ELEMENTSOF(mutations));
        tcase_add_loop_test(tc, test_oversized_binary, 0, 2);
        tcase_add_test(tc, test_long_message);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        int r;

        /* RSA key generation is the slow part: once, shared by every case. */
        fixtures_setup();
        r = run_suite(codec_suite());

        json_object_put(envelope_json);
        envelope_free(envelope);
        key_package_free(pkg_alice);
        key_package_free(pkg_bob);
        free(sig);
        rsa_key_free(key);
        return r;
}
