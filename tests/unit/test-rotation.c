/* SPDX-License-Identifier: MIT */
/*
 * Key rotation statements (securechat-protocol(7), "Key rotation"): the
 * signed bytes spelt out from the page, both signatures checked, every
 * field and signature changed in turn, hostile JSON, and chains that do
 * and do not lead from a pinned key to a package's key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "json-util.h"
#include "macro.h"
#include "rotation.h"

#include "test-main.h"

/* Generated once in the parent process and shared by every forked test. */
enum { KA, KB, KC, KD, _KEY_MAX };
static RsaKey *keys[_KEY_MAX];

static void keys_setup(void) {
        for (size_t i = 0; i < _KEY_MAX; i++)
                if (!keys[i])
                        ck_assert_int_eq(rsa_key_generate(2048, &keys[i]), 0);
}

static Rotation *sign(const char *user, int from, int to) {
        Rotation *r = NULL;

        ck_assert_int_eq(rotation_sign(user, keys[from], keys[to], 1700000000, &r), 0);
        return r;
}

START_TEST(test_input_bytes) {
        static const uint8_t old_key[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
        static const uint8_t new_key[] = { 0x30, 0x03, 0x02, 0x01, 0x02 };
        static const char expect[] =
                "\x00\x00\x00\x19" "securechat/1 key-rotation"
                "\x00\x00\x00\x03" "bob"
                "\x00\x00\x00\x05" "\x30\x03\x02\x01\x01"
                "\x00\x00\x00\x05" "\x30\x03\x02\x01\x02"
                "\x01\x02\x03\x04\x05\x06\x07\x08";
        _cleanup_(freep) uint8_t *in = NULL;
        size_t len;

        ck_assert_int_eq(rotation_input("bob", old_key, sizeof(old_key), new_key, sizeof(new_key),
                                        UINT64_C(0x0102030405060708), &in, &len), 0);
        ck_assert_uint_eq(len, sizeof(expect) - 1);
        ck_assert_mem_eq(in, expect, len);
}
END_TEST

START_TEST(test_input_invalid) {
        static const uint8_t key[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
        uint8_t *in = NULL;
        size_t len;

        ck_assert_int_eq(rotation_input("Bob", key, sizeof(key), key, sizeof(key), 0, &in, &len), -EINVAL);
        ck_assert_int_eq(rotation_input("", key, sizeof(key), key, sizeof(key), 0, &in, &len), -EINVAL);
        ck_assert_int_eq(rotation_input("bob", key, 0, key, sizeof(key), 0, &in, &len), -EINVAL);
        ck_assert_int_eq(rotation_input("bob", key, sizeof(key), NULL, 0, 0, &in, &len), -EINVAL);
        ck_assert_ptr_null(in);
}
END_TEST

START_TEST(test_sign_verify) {
        _cleanup_(rotation_freep) Rotation *r = sign("bob", KA, KB), *same = NULL;
        RsaKey *pub = NULL;

        ck_assert_int_eq(rotation_verify(r), 0);
        ck_assert_str_eq(r->user, "bob");
        ck_assert_uint_eq(r->time, 1700000000);
        ck_assert_mem_eq(r->old_key, keys[KA]->spki, keys[KA]->spki_len);
        ck_assert_mem_eq(r->new_key, keys[KB]->spki, keys[KB]->spki_len);

        /* A rotation to the same key says nothing and could loop a chain. */
        ck_assert_int_eq(rotation_sign("bob", keys[KA], keys[KA], 1, &same), 0);
        ck_assert_int_eq(rotation_verify(same), -EBADMSG);

        /* Both keys must sign: a public key alone cannot. */
        ck_assert_int_eq(rsa_key_from_spki(keys[KB]->spki, keys[KB]->spki_len, &pub), 0);
        ck_assert_int_eq(rotation_sign("bob", keys[KA], pub, 1, &same), -EINVAL);
        rsa_key_free(pub);
}
END_TEST

/* Each change made to a good statement must break it. */
enum {
        CHANGE_USER, CHANGE_OLD_KEY, CHANGE_NEW_KEY, CHANGE_TIME, CHANGE_OLD_SIG, CHANGE_NEW_SIG,
        CHANGE_SWAP_SIGS, CHANGE_SHORT_SIG, CHANGE_BAD_KEY, _CHANGE_MAX,
};

static void replace(uint8_t **p, size_t *len, const uint8_t *with, size_t with_len) {
        free(*p);
        *p = malloc(with_len);
        ck_assert_ptr_nonnull(*p);
        memcpy(*p, with, with_len);
        *len = with_len;
}

START_TEST(test_altered) {
        _cleanup_(rotation_freep) Rotation *r = sign("bob", KA, KB);
        uint8_t *tmp;
        size_t n;

        switch (_i) {
        case CHANGE_USER:
                strcpy(r->user, "bob2");
                break;
        case CHANGE_OLD_KEY:
                replace(&r->old_key, &r->old_key_len, keys[KC]->spki, keys[KC]->spki_len);
                break;
        case CHANGE_NEW_KEY:
                replace(&r->new_key, &r->new_key_len, keys[KC]->spki, keys[KC]->spki_len);
                break;
        case CHANGE_TIME:
                r->time++;
                break;
        case CHANGE_OLD_SIG:
                r->old_sig[r->old_sig_len / 2] ^= 0x01;
                break;
        case CHANGE_NEW_SIG:
                r->new_sig[r->new_sig_len - 1] ^= 0x80;
                break;
        case CHANGE_SWAP_SIGS:
                tmp = r->old_sig, r->old_sig = r->new_sig, r->new_sig = tmp;
                n = r->old_sig_len, r->old_sig_len = r->new_sig_len, r->new_sig_len = n;
                break;
        case CHANGE_SHORT_SIG:
                r->old_sig_len--;
                break;
        case CHANGE_BAD_KEY:
                r->new_key[0] ^= 0xff;  /* no longer DER */
                break;
        }
        ck_assert_int_eq(rotation_verify(r), -EBADMSG);
}
END_TEST

START_TEST(test_json_roundtrip) {
        _cleanup_(rotation_freep) Rotation *r = sign("bob", KA, KB), *back = NULL, *copy = NULL;
        _cleanup_(json_object_unrefp) json_object *o = NULL;

        ck_assert_int_eq(rotation_to_json(r, &o), 0);
        ck_assert_int_eq(rotation_from_json(o, &back), 0);
        ck_assert_int_eq(rotation_verify(back), 0);
        ck_assert_str_eq(back->user, r->user);
        ck_assert_uint_eq(back->time, r->time);
        ck_assert_uint_eq(back->old_sig_len, r->old_sig_len);
        ck_assert_mem_eq(back->old_sig, r->old_sig, r->old_sig_len);
        ck_assert_mem_eq(back->new_sig, r->new_sig, r->new_sig_len);
        ck_assert_int_eq(rotation_dup(back, &copy), 0);
        ck_assert_int_eq(rotation_verify(copy), 0);
}
END_TEST

/* Hostile statements: each is refused as malformed, never half taken. */
static const char *const hostile[] = {
        "{}",
        "{\"user\":\"bob\"}",
        /* a member too many: the object is signed, so it is strict */
        "{\"user\":\"bob\",\"old_key\":\"AA==\",\"new_key\":\"AA==\",\"time\":1,"
        "\"old_sig\":\"AA==\",\"new_sig\":\"AA==\",\"extra\":1}",
        /* a name that is not one */
        "{\"user\":\"Bob\",\"old_key\":\"AA==\",\"new_key\":\"AA==\",\"time\":1,"
        "\"old_sig\":\"AA==\",\"new_sig\":\"AA==\"}",
        /* base64 with bad padding */
        "{\"user\":\"bob\",\"old_key\":\"AA=\",\"new_key\":\"AA==\",\"time\":1,"
        "\"old_sig\":\"AA==\",\"new_sig\":\"AA==\"}",
        /* empty key */
        "{\"user\":\"bob\",\"old_key\":\"\",\"new_key\":\"AA==\",\"time\":1,"
        "\"old_sig\":\"AA==\",\"new_sig\":\"AA==\"}",
        /* negative, fractional and string times */
        "{\"user\":\"bob\",\"old_key\":\"AA==\",\"new_key\":\"AA==\",\"time\":-1,"
        "\"old_sig\":\"AA==\",\"new_sig\":\"AA==\"}",
        "{\"user\":\"bob\",\"old_key\":\"AA==\",\"new_key\":\"AA==\",\"time\":1.5,"
        "\"old_sig\":\"AA==\",\"new_sig\":\"AA==\"}",
        "{\"user\":\"bob\",\"old_key\":\"AA==\",\"new_key\":\"AA==\",\"time\":\"1\","
        "\"old_sig\":\"AA==\",\"new_sig\":\"AA==\"}",
        /* a signature given as a number */
        "{\"user\":\"bob\",\"old_key\":\"AA==\",\"new_key\":\"AA==\",\"time\":1,"
        "\"old_sig\":7,\"new_sig\":\"AA==\"}",
};

START_TEST(test_json_hostile) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        Rotation *r = NULL;

        ck_assert_int_eq(json_parse_strict(hostile[_i], strlen(hostile[_i]), JSON_DEPTH_DEFAULT, &o, NULL), 0);
        ck_assert_int_eq(rotation_from_json(o, &r), -EBADMSG);
        ck_assert_ptr_null(r);
}
END_TEST

START_TEST(test_json_oversized) {
        _cleanup_(rotation_freep) Rotation *r = sign("bob", KA, KB), *back = NULL;
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        uint8_t big[1025] = {};

        replace(&r->new_key, &r->new_key_len, big, sizeof(big));
        ck_assert_int_eq(rotation_to_json(r, &o), 0);
        ck_assert_int_eq(rotation_from_json(o, &back), -EBADMSG);
        ck_assert_int_eq(rotation_from_json(NULL, &back), -EBADMSG);
}
END_TEST

static json_object *chain_json(size_t n) {
        json_object *a = json_object_new_array();

        for (size_t i = 0; i < n; i++) {
                _cleanup_(rotation_freep) Rotation *r = sign("bob", i % 2 ? KB : KA, i % 2 ? KA : KB);
                json_object *v = NULL;

                ck_assert_int_eq(rotation_to_json(r, &v), 0);
                ck_assert_int_eq(json_array_add(a, v), 0);
        }
        return a;
}

START_TEST(test_chain_json_bounds) {
        _cleanup_(json_object_unrefp) json_object *empty = chain_json(0), *full = chain_json(ROTATION_CHAIN_MAX),
                                                  *over = chain_json(ROTATION_CHAIN_MAX + 1),
                                                  *obj = json_object_new_object();
        Rotation **c = NULL;
        size_t n = 0;

        ck_assert_int_eq(rotation_chain_from_json(empty, &c, &n), -EBADMSG);
        ck_assert_int_eq(rotation_chain_from_json(over, &c, &n), -EBADMSG);
        ck_assert_int_eq(rotation_chain_from_json(obj, &c, &n), -EBADMSG);
        ck_assert_ptr_null(c);
        ck_assert_int_eq(rotation_chain_from_json(full, &c, &n), 0);
        ck_assert_uint_eq(n, ROTATION_CHAIN_MAX);
        rotation_chain_free(c, n);
}
END_TEST

/* bob went A -> B -> C. */
START_TEST(test_chain_vouches) {
        Rotation *chain[2] = { sign("bob", KA, KB), sign("bob", KB, KC) };
        const RsaKey *a = keys[KA], *b = keys[KB], *c = keys[KC], *d = keys[KD];

        ck_assert_int_eq(rotation_chain_vouches(chain, 2, "bob", a->spki, a->spki_len, c->spki, c->spki_len), 0);
        /* pinned after the first rotation: the older statement is skipped */
        ck_assert_int_eq(rotation_chain_vouches(chain, 2, "bob", b->spki, b->spki_len, c->spki, c->spki_len), 0);
        /* the chain must end at the package's key */
        ck_assert_int_eq(rotation_chain_vouches(chain, 2, "bob", a->spki, a->spki_len, b->spki, b->spki_len),
                         -EBADMSG);
        /* ... and start at the pinned one */
        ck_assert_int_eq(rotation_chain_vouches(chain, 2, "bob", d->spki, d->spki_len, c->spki, c->spki_len),
                         -EBADMSG);
        ck_assert_int_eq(rotation_chain_vouches(chain, 2, "bob", c->spki, c->spki_len, c->spki, c->spki_len),
                         -EBADMSG);
        ck_assert_int_eq(rotation_chain_vouches(chain, 0, "bob", a->spki, a->spki_len, c->spki, c->spki_len),
                         -EBADMSG);
        /* another user's statements vouch for nothing of bob's */
        ck_assert_int_eq(rotation_chain_vouches(chain, 2, "carol", a->spki, a->spki_len, c->spki, c->spki_len),
                         -EBADMSG);

        /* A step whose signature broke breaks the chain. */
        chain[1]->old_sig[0] ^= 1;
        ck_assert_int_eq(rotation_chain_vouches(chain, 2, "bob", a->spki, a->spki_len, c->spki, c->spki_len),
                         -EBADMSG);
        rotation_free(chain[1]);

        /* Links must meet: A -> B, then D -> C, is no way from A to C. */
        chain[1] = sign("bob", KD, KC);
        ck_assert_int_eq(rotation_chain_vouches(chain, 2, "bob", a->spki, a->spki_len, c->spki, c->spki_len),
                         -EBADMSG);
        rotation_free(chain[0]);
        rotation_free(chain[1]);
}
END_TEST

/* A key package carries its chain through JSON and copies. */
START_TEST(test_key_package_chain) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL, *back = NULL, *copy = NULL;
        _cleanup_(json_object_unrefp) json_object *o = NULL, *plain = NULL;
        json_object *v;

        ck_assert_int_eq(key_package_sign(keys[KD], "bob", keys[KB]->spki, keys[KB]->spki_len, 5, &kp), 0);
        ck_assert_int_eq(key_package_to_json(kp, &plain), 0);
        ck_assert(!json_object_object_get_ex(plain, "rotations", NULL));

        kp->rotations = calloc(1, sizeof(Rotation *));
        ck_assert_ptr_nonnull(kp->rotations);
        kp->rotations[0] = sign("bob", KA, KB);
        kp->n_rotations = 1;
        ck_assert_int_eq(key_package_to_json(kp, &o), 0);
        ck_assert(json_object_object_get_ex(o, "rotations", &v));
        ck_assert_int_eq(key_package_from_json(o, &back), 0);
        ck_assert_int_eq(key_package_verify(back, keys[KD]), 0);
        ck_assert_uint_eq(back->n_rotations, 1);
        ck_assert_int_eq(key_package_dup(back, &copy), 0);
        ck_assert_uint_eq(copy->n_rotations, 1);
        ck_assert_int_eq(rotation_chain_vouches(copy->rotations, copy->n_rotations, "bob",
                                                keys[KA]->spki, keys[KA]->spki_len, copy->key, copy->key_len), 0);

        /* A damaged chain makes the whole package malformed. */
        json_object_object_add(o, "rotations", json_object_new_array());
        key_package_free(back);
        back = NULL;
        ck_assert_int_eq(key_package_from_json(o, &back), -EBADMSG);
}
END_TEST

/* The frames: rotate carries the statement, rotated the new package. */
START_TEST(test_frames) {
        _cleanup_(rotation_freep) Rotation *r = sign("bob", KA, KB);
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        _cleanup_(json_object_unrefp) json_object *o1 = NULL, *o2 = NULL;
        _cleanup_(frame_freep) Frame *f1 = NULL, *f2 = NULL;
        const char *s;

        o1 = frame_new_rotate(7, r);
        ck_assert_ptr_nonnull(o1);
        s = json_object_to_json_string(o1);
        ck_assert_int_eq(frame_parse(s, strlen(s), &f1, NULL), 0);
        ck_assert_int_eq(f1->type, FRAME_ROTATE);
        ck_assert_uint_eq(f1->rotate.id, 7);
        ck_assert_int_eq(rotation_verify(f1->rotate.rotation), 0);

        ck_assert_int_eq(key_package_sign(keys[KD], "bob", keys[KB]->spki, keys[KB]->spki_len, 5, &kp), 0);
        o2 = frame_new_rotated(8, kp);
        ck_assert_ptr_nonnull(o2);
        s = json_object_to_json_string(o2);
        ck_assert_int_eq(frame_parse(s, strlen(s), &f2, NULL), 0);
        ck_assert_int_eq(f2->type, FRAME_ROTATED);
        ck_assert_uint_eq(f2->rotated.id, 8);
        ck_assert_int_eq(key_package_verify(f2->rotated.package, keys[KD]), 0);
}
END_TEST

/* A malformed rotate is answered with its id. */
START_TEST(test_frame_bad_rotation_keeps_id) {
        static const char bad[] = "{\"type\":\"rotate\",\"id\":9,\"rotation\":{\"user\":\"bob\"}}";
        Frame *f = NULL;
        const char *reason = NULL;
        uint64_t id = 0;
        bool has_id = false;

        ck_assert_int_eq(frame_parse_request(bad, strlen(bad), &f, &reason, &has_id, &id), -EBADMSG);
        ck_assert_ptr_null(f);
        ck_assert(has_id);
        ck_assert_uint_eq(id, 9);
        ck_assert_str_eq(reason, "bad rotation");
}
END_TEST

static TCase *tcase_new(const char *name) {
        TCase *tc = tcase_create(name);

        tcase_add_unchecked_fixture(tc, keys_setup, NULL);
        tcase_set_timeout(tc, 60);
        return tc;
}

static Suite *rotation_suite(void) {
        Suite *s = suite_create("rotation");
        TCase *tc;

        tc = tcase_new("statement");
        tcase_add_test(tc, test_input_bytes);
        tcase_add_test(tc, test_input_invalid);
        tcase_add_test(tc, test_sign_verify);
        tcase_add_loop_test(tc, test_altered, 0, _CHANGE_MAX);
        suite_add_tcase(s, tc);

        tc = tcase_new("json");
        tcase_add_test(tc, test_json_roundtrip);
        tcase_add_loop_test(tc, test_json_hostile, 0, ELEMENTSOF(hostile));
        tcase_add_test(tc, test_json_oversized);
        tcase_add_test(tc, test_chain_json_bounds);
        tcase_add_test(tc, test_key_package_chain);
        tcase_add_test(tc, test_frames);
        tcase_add_test(tc, test_frame_bad_rotation_keeps_id);
        suite_add_tcase(s, tc);

        tc = tcase_new("chain");
        tcase_add_test(tc, test_chain_vouches);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        return run_suite(rotation_suite());
}
