/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for crypto.c: SHA-256, HMAC-SHA256 and HKDF-SHA256 against the
 * Wycheproof vectors, DES-EDE3-CBC against NIST CAVP TCBCMMT3, and PKCS#7.
 *
 * The vector files are parsed once, before the suite runs; each vector is
 * then one iteration of a loop test, so check's TAP output counts (and names
 * the failure of) every single vector. A separate test checks that the
 * number parsed is the number the file says it holds, so a parser that
 * silently skips vectors fails.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "macro.h"
#include "test-main.h"
#include "util.h"

static uint8_t *unhex(const char *hex, size_t *ret_len) {
        uint8_t *p = NULL;
        size_t n = 0;

        ck_assert_msg(hex_decode(hex, &p, &n) == 0, "bad hex in vector: %s", hex);
        *ret_len = n;
        return p;
}

/* ---- Wycheproof ---- */

typedef struct MacVector {
        int tc_id;
        const char *key, *msg, *tag;
        size_t key_bits, tag_bits;
        bool valid;
} MacVector;

typedef struct HkdfVector {
        int tc_id;
        const char *ikm, *salt, *info, *okm;
        size_t size;
        bool valid;
} HkdfVector;

/* The parsed trees stay alive for the whole run: vectors point into them. */
static json_object *hmac_json, *hkdf_json;
static MacVector *hmac_vectors;
static HkdfVector *hkdf_vectors;
static int hmac_count, hmac_expected = -1, hkdf_count, hkdf_expected = -1;

static const char *json_str(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static int json_int(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return -1;
        return json_object_get_int(v);
}

/* "valid" -> 1, "invalid" -> 0; "acceptable" or anything else -> -1, which
 * leaves the vector uncounted (these files have none). */
static int json_result(json_object *t) {
        const char *r = json_str(t, "result");

        if (r && strcmp(r, "valid") == 0)
                return 1;
        if (r && strcmp(r, "invalid") == 0)
                return 0;
        return -1;
}

/* Open a Wycheproof file; return its test groups and total of tests. */
static json_object *wycheproof_load(const char *name, json_object **ret_groups, int *ret_total,
                                    int *ret_expected) {
        json_object *root, *groups;
        int total = 0;

        root = json_object_from_file(vector_path(name));
        if (!root || !json_object_object_get_ex(root, "testGroups", &groups) ||
            !json_object_is_type(groups, json_type_array)) {
                fprintf(stderr, "Failed to load %s\n", vector_path(name));
                json_object_put(root);
                return NULL;
        }
        for (size_t g = 0; g < json_object_array_length(groups); g++) {
                json_object *tests, *group = json_object_array_get_idx(groups, g);

                if (json_object_object_get_ex(group, "tests", &tests) &&
                    json_object_is_type(tests, json_type_array))
                        total += (int) json_object_array_length(tests);
        }
        *ret_groups = groups;
        *ret_total = total;
        *ret_expected = json_int(root, "numberOfTests");
        return root;
}

static void hmac_load(void) {
        json_object *groups;
        int total;

        hmac_json = wycheproof_load("wycheproof/hmac_sha256_test.json", &groups, &total,
                                    &hmac_expected);
        if (!hmac_json)
                return;
        hmac_vectors = calloc((size_t) total, sizeof(MacVector));
        if (!hmac_vectors)
                abort();

        for (size_t g = 0; g < json_object_array_length(groups); g++) {
                json_object *tests, *group = json_object_array_get_idx(groups, g);
                int key_bits = json_int(group, "keySize"), tag_bits = json_int(group, "tagSize");

                if (key_bits < 0 || tag_bits <= 0 || tag_bits % 8 != 0 ||
                    !json_object_object_get_ex(group, "tests", &tests))
                        continue;
                for (size_t i = 0; i < json_object_array_length(tests); i++) {
                        json_object *t = json_object_array_get_idx(tests, i);
                        MacVector v = {
                                .tc_id = json_int(t, "tcId"),
                                .key = json_str(t, "key"),
                                .msg = json_str(t, "msg"),
                                .tag = json_str(t, "tag"),
                                .key_bits = (size_t) key_bits,
                                .tag_bits = (size_t) tag_bits,
                                .valid = json_result(t) == 1,
                        };

                        if (v.tc_id < 0 || !v.key || !v.msg || !v.tag || json_result(t) < 0)
                                continue;
                        hmac_vectors[hmac_count++] = v;
                }
        }
}

static void hkdf_load(void) {
        json_object *groups;
        int total;

        hkdf_json = wycheproof_load("wycheproof/hkdf_sha256_test.json", &groups, &total,
                                    &hkdf_expected);
        if (!hkdf_json)
                return;
        hkdf_vectors = calloc((size_t) total, sizeof(HkdfVector));
        if (!hkdf_vectors)
                abort();

        for (size_t g = 0; g < json_object_array_length(groups); g++) {
                json_object *tests, *group = json_object_array_get_idx(groups, g);

                if (!json_object_object_get_ex(group, "tests", &tests))
                        continue;
                for (size_t i = 0; i < json_object_array_length(tests); i++) {
                        json_object *t = json_object_array_get_idx(tests, i);
                        HkdfVector v = {
                                .tc_id = json_int(t, "tcId"),
                                .ikm = json_str(t, "ikm"),
                                .salt = json_str(t, "salt"),
                                .info = json_str(t, "info"),
                                .okm = json_str(t, "okm"),
                                .size = (size_t) json_int(t, "size"),
                                .valid = json_result(t) == 1,
                        };

                        if (v.tc_id < 0 || !v.ikm || !v.salt || !v.info || !v.okm ||
                            json_int(t, "size") < 0 || json_result(t) < 0)
                                continue;
                        hkdf_vectors[hkdf_count++] = v;
                }
        }
}

START_TEST(test_hmac_count) {
        ck_assert_int_gt(hmac_expected, 0);
        ck_assert_int_eq(hmac_count, hmac_expected);
}
END_TEST

/* A "valid" tag must be reproduced; an "invalid" one (a modified tag) must
 * not match. Groups with tagSize 128 compare the truncated tag. */
START_TEST(test_hmac_wycheproof) {
        const MacVector *v = &hmac_vectors[_i];
        _cleanup_(freep) uint8_t *key = NULL, *msg = NULL, *tag = NULL;
        size_t key_len, msg_len, tag_len;
        uint8_t out[SHA256_LEN];
        bool match;

        key = unhex(v->key, &key_len);
        msg = unhex(v->msg, &msg_len);
        tag = unhex(v->tag, &tag_len);
        ck_assert_msg(key_len * 8 == v->key_bits, "tcId %d: key length", v->tc_id);
        ck_assert_msg(v->tag_bits <= SHA256_LEN * 8, "tcId %d: tag size", v->tc_id);

        hmac_sha256(key, key_len, msg, msg_len, out);
        match = tag_len == v->tag_bits / 8 && memeq_ct(out, tag, tag_len);
        ck_assert_msg(match == v->valid, "tcId %d: %s tag %s", v->tc_id,
                      v->valid ? "valid" : "invalid", match ? "matched" : "did not match");
}
END_TEST

START_TEST(test_hkdf_count) {
        ck_assert_int_gt(hkdf_expected, 0);
        ck_assert_int_eq(hkdf_count, hkdf_expected);
}
END_TEST

/* The file's "invalid" vectors (tcId 25, 48, 74) all ask for 8161 bytes, one
 * more than RFC 5869 allows (255 * 32): hkdf_sha256 must refuse them with
 * -EINVAL, not produce output. */
START_TEST(test_hkdf_wycheproof) {
        const HkdfVector *v = &hkdf_vectors[_i];
        _cleanup_(freep) uint8_t *ikm = NULL, *salt = NULL, *info = NULL, *okm = NULL, *out = NULL;
        size_t ikm_len, salt_len, info_len, okm_len;
        int r;

        ikm = unhex(v->ikm, &ikm_len);
        salt = unhex(v->salt, &salt_len);
        info = unhex(v->info, &info_len);
        okm = unhex(v->okm, &okm_len);
        out = malloc(v->size + 1);
        ck_assert_ptr_nonnull(out);

        r = hkdf_sha256(salt, salt_len, ikm, ikm_len, info, info_len, out, v->size);
        if (v->valid) {
                ck_assert_msg(r == 0, "tcId %d: refused (%d)", v->tc_id, r);
                ck_assert_msg(okm_len == v->size, "tcId %d: okm length", v->tc_id);
                ck_assert_msg(memcmp(out, okm, okm_len) == 0, "tcId %d: wrong okm", v->tc_id);
        } else
                ck_assert_msg(r == -EINVAL, "tcId %d: invalid vector not refused (%d)",
                              v->tc_id, r);
}
END_TEST

/* ---- NIST CAVP TCBCMMT3 ---- */

typedef struct TdesVector {
        bool encrypt;
        int count;
        uint8_t key[TDES_KEY_LEN], iv[TDES_BLOCK_LEN];
        uint8_t *pt, *ct;
        size_t len;
} TdesVector;

#define CAVP_MAX 64
static TdesVector tdes_vectors[CAVP_MAX];
static int tdes_count, tdes_encrypt_count, tdes_decrypt_count;

/* Decode hex of exactly len bytes into dst. */
static bool unhex_fixed(const char *hex, uint8_t *dst, size_t len) {
        _cleanup_(freep) uint8_t *p = NULL;
        size_t n;

        if (hex_decode(hex, &p, &n) < 0 || n != len)
                return false;
        memcpy(dst, p, len);
        return true;
}

/* Sections [ENCRYPT] and [DECRYPT] hold records of "NAME = value" lines
 * separated by blank lines; a record is complete when it has all six of
 * KEY1, KEY2, KEY3, IV, PLAINTEXT and CIPHERTEXT (in either order). */
static void tdes_load(void) {
        _cleanup_(freep) char *line = NULL;
        size_t line_size = 0, pt_len = 0, ct_len = 0;
        unsigned seen = 0;
        int section = -1;        /* 1 encrypt, 0 decrypt */
        TdesVector v = {};
        FILE *f;

        f = fopen(vector_path("nist-cavp/TCBCMMT3.rsp"), "re");
        if (!f) {
                fprintf(stderr, "Failed to open %s: %m\n", vector_path("nist-cavp/TCBCMMT3.rsp"));
                return;
        }

        while (getline(&line, &line_size, f) >= 0) {
                char name[32], value[1024];

                line[strcspn(line, "\r\n")] = '\0';
                if (strcmp(line, "[ENCRYPT]") == 0) {
                        section = 1;
                        continue;
                }
                if (strcmp(line, "[DECRYPT]") == 0) {
                        section = 0;
                        continue;
                }
                if (sscanf(line, "%31s = %1023s", name, value) != 2 || section < 0)
                        continue;

                if (strcmp(name, "COUNT") == 0) {
                        free(v.pt);
                        free(v.ct);
                        v = (TdesVector) { .encrypt = section == 1, .count = atoi(value) };
                        seen = 0;
                } else if (strcmp(name, "KEY1") == 0 && unhex_fixed(value, v.key, 8))
                        seen |= 1;
                else if (strcmp(name, "KEY2") == 0 && unhex_fixed(value, v.key + 8, 8))
                        seen |= 2;
                else if (strcmp(name, "KEY3") == 0 && unhex_fixed(value, v.key + 16, 8))
                        seen |= 4;
                else if (strcmp(name, "IV") == 0 && unhex_fixed(value, v.iv, 8))
                        seen |= 8;
                else if (strcmp(name, "PLAINTEXT") == 0 && !v.pt &&
                         hex_decode(value, &v.pt, &pt_len) == 0)
                        seen |= 16;
                else if (strcmp(name, "CIPHERTEXT") == 0 && !v.ct &&
                         hex_decode(value, &v.ct, &ct_len) == 0)
                        seen |= 32;

                if (seen == 63 && pt_len == ct_len && tdes_count < CAVP_MAX) {
                        v.len = pt_len;
                        tdes_vectors[tdes_count++] = v;
                        if (v.encrypt)
                                tdes_encrypt_count++;
                        else
                                tdes_decrypt_count++;
                        v = (TdesVector) {};
                        seen = 0;
                }
        }
        free(v.pt);
        free(v.ct);
        fclose(f);
}

START_TEST(test_tdes_cavp_count) {
        ck_assert_int_eq(tdes_encrypt_count, 10);
        ck_assert_int_eq(tdes_decrypt_count, 10);
        ck_assert_int_eq(tdes_count, 20);
}
END_TEST

/* Both directions for every vector, and once more in place. */
START_TEST(test_tdes_cavp) {
        const TdesVector *v = &tdes_vectors[_i];
        const char *what = v->encrypt ? "ENCRYPT" : "DECRYPT";
        _cleanup_(freep) uint8_t *out = NULL;

        out = malloc(v->len);
        ck_assert_ptr_nonnull(out);
        ck_assert_uint_gt(v->len, 0);

        ck_assert_int_eq(tdes_cbc_encrypt_raw(v->key, v->iv, v->pt, v->len, out), 0);
        ck_assert_msg(memcmp(out, v->ct, v->len) == 0, "%s COUNT %d: encryption", what, v->count);
        ck_assert_int_eq(tdes_cbc_decrypt_raw(v->key, v->iv, v->ct, v->len, out), 0);
        ck_assert_msg(memcmp(out, v->pt, v->len) == 0, "%s COUNT %d: decryption", what, v->count);

        memcpy(out, v->pt, v->len);
        ck_assert_int_eq(tdes_cbc_encrypt_raw(v->key, v->iv, out, v->len, out), 0);
        ck_assert_msg(memcmp(out, v->ct, v->len) == 0, "%s COUNT %d: in place", what, v->count);
        ck_assert_int_eq(tdes_cbc_decrypt_raw(v->key, v->iv, out, v->len, out), 0);
        ck_assert_msg(memcmp(out, v->pt, v->len) == 0, "%s COUNT %d: in place", what, v->count);
}
END_TEST

/* ---- TDES with PKCS#7 ---- */

static const uint8_t test_key[TDES_KEY_LEN] = {
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x23, 0x45, 0x67, 0x89,
        0xab, 0xcd, 0xef, 0x01, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23,
};
static const uint8_t test_iv[TDES_BLOCK_LEN] = { 0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87 };

START_TEST(test_tdes_raw_length) {
        uint8_t buf[16] = {};

        ck_assert_int_eq(tdes_cbc_encrypt_raw(test_key, test_iv, buf, 7, buf), -EINVAL);
        ck_assert_int_eq(tdes_cbc_encrypt_raw(test_key, test_iv, buf, 9, buf), -EINVAL);
        ck_assert_int_eq(tdes_cbc_decrypt_raw(test_key, test_iv, buf, 15, buf), -EINVAL);
        ck_assert_int_eq(tdes_cbc_decrypt_raw(test_key, test_iv, buf, 1, buf), -EINVAL);
        ck_assert_int_eq(tdes_cbc_encrypt_raw(test_key, test_iv, buf, 0, buf), 0);
}
END_TEST

START_TEST(test_tdes_roundtrip) {
        _cleanup_(freep) uint8_t *ct = NULL, *pt = NULL, *padded = NULL;
        size_t len = (size_t) _i, ct_len, pt_len, pad = 8 - len % 8;
        uint8_t data[40];

        ck_assert_int_eq(random_bytes(data, sizeof(data)), 0);
        ck_assert_int_eq(tdes_cbc_encrypt(test_key, test_iv, data, len, &ct, &ct_len), 0);
        ck_assert_uint_eq(ct_len, len + pad);

        /* The padding is PKCS#7: pad bytes of value pad. */
        padded = malloc(ct_len);
        ck_assert_ptr_nonnull(padded);
        ck_assert_int_eq(tdes_cbc_decrypt_raw(test_key, test_iv, ct, ct_len, padded), 0);
        ck_assert_mem_eq(padded, data, len);
        for (size_t i = len; i < ct_len; i++)
                ck_assert_uint_eq(padded[i], pad);

        ck_assert_int_eq(tdes_cbc_decrypt(test_key, test_iv, ct, ct_len, &pt, &pt_len), 0);
        ck_assert_ptr_nonnull(pt);
        ck_assert_uint_eq(pt_len, len);
        ck_assert_mem_eq(pt, data, len);
}
END_TEST

/* Encrypt a chosen final block without padding, then check what the padded
 * decryption makes of it. */
static int decrypt_last_block(const uint8_t last[TDES_BLOCK_LEN], size_t *ret_len) {
        uint8_t pt[2 * TDES_BLOCK_LEN], ct[2 * TDES_BLOCK_LEN];
        _cleanup_(freep) uint8_t *out = NULL;
        size_t n = 12345;
        int r;

        memset(pt, 'A', TDES_BLOCK_LEN);
        memcpy(pt + TDES_BLOCK_LEN, last, TDES_BLOCK_LEN);
        ck_assert_int_eq(tdes_cbc_encrypt_raw(test_key, test_iv, pt, sizeof(pt), ct), 0);
        r = tdes_cbc_decrypt(test_key, test_iv, ct, sizeof(ct), &out, &n);
        if (r < 0) {
                ck_assert_ptr_null(out);
                ck_assert_uint_eq(n, 12345);
        } else
                ck_assert_mem_eq(out, pt, n);
        *ret_len = n;
        return r;
}

/* Every correct padding 1..8 is accepted and stripped. */
START_TEST(test_tdes_good_padding) {
        uint8_t last[TDES_BLOCK_LEN];
        size_t n;

        for (unsigned pad = 1; pad <= 8; pad++) {
                memset(last, 'B', sizeof(last));
                memset(last + 8 - pad, (int) pad, pad);
                ck_assert_int_eq(decrypt_last_block(last, &n), 0);
                ck_assert_uint_eq(n, 16 - pad);
        }
}
END_TEST

/* Last byte 0 or above 8: refused, whatever precedes it. */
START_TEST(test_tdes_bad_pad_value) {
        uint8_t last[TDES_BLOCK_LEN];
        size_t n;

        memset(last, _i, sizeof(last));
        ck_assert_msg(decrypt_last_block(last, &n) == -EBADMSG, "pad byte %d accepted", _i);
}
END_TEST

/* A padding of value pad with one of its other pad - 1 bytes wrong. */
START_TEST(test_tdes_bad_pad_bytes) {
        uint8_t last[TDES_BLOCK_LEN];
        size_t n;

        for (unsigned pad = 2; pad <= 8; pad++)
                for (unsigned pos = 8 - pad; pos < 7; pos++) {
                        memset(last, 'B', sizeof(last));
                        memset(last + 8 - pad, (int) pad, pad);
                        last[pos] ^= (uint8_t) (1u << (_i % 8));
                        ck_assert_msg(decrypt_last_block(last, &n) == -EBADMSG,
                                      "pad %u with byte %u flipped accepted", pad, pos);
                }
}
END_TEST

START_TEST(test_tdes_bad_length) {
        static const size_t lens[] = { 0, 1, 7, 9, 15, 17, 23 };
        uint8_t buf[24] = {}, *out = NULL;
        size_t n = 12345;

        for (size_t i = 0; i < ELEMENTSOF(lens); i++) {
                ck_assert_int_eq(tdes_cbc_decrypt(test_key, test_iv, buf, lens[i], &out, &n),
                                 -EBADMSG);
                ck_assert_ptr_null(out);
                ck_assert_uint_eq(n, 12345);
        }
}
END_TEST

/* ---- SHA-256, HMAC, HKDF limits ---- */

static void check_hex(const uint8_t *got, size_t len, const char *want_hex) {
        _cleanup_(freep) uint8_t *want = NULL;
        size_t want_len;

        want = unhex(want_hex, &want_len);
        ck_assert_uint_eq(want_len, len);
        ck_assert_mem_eq(got, want, len);
}

/* FIPS 180-2 appendix B. */
START_TEST(test_sha256) {
        uint8_t out[SHA256_LEN];
        const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

        sha256("abc", 3, out);
        check_hex(out, sizeof(out),
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        sha256(two_blocks, strlen(two_blocks), out);
        check_hex(out, sizeof(out),
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        sha256(NULL, 0, out);
        check_hex(out, sizeof(out),
                  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

/* RFC 4231 test case 2: a key shorter than the hash. */
START_TEST(test_hmac_rfc4231) {
        uint8_t out[SHA256_LEN];

        hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out);
        check_hex(out, sizeof(out),
                  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
END_TEST

START_TEST(test_hkdf_limits) {
        static const uint8_t zeros[SHA256_LEN] = {};
        _cleanup_(freep) uint8_t *big = NULL;
        uint8_t a[56], b[56], c[56];

        big = malloc(255 * SHA256_LEN + 1);
        ck_assert_ptr_nonnull(big);

        ck_assert_int_eq(hkdf_sha256("s", 1, "k", 1, "i", 1, big, 255 * SHA256_LEN), 0);
        /* The longest output starts with the shorter ones. */
        ck_assert_int_eq(hkdf_sha256("s", 1, "k", 1, "i", 1, a, sizeof(a)), 0);
        ck_assert_mem_eq(a, big, sizeof(a));

        /* Refused beyond 255 blocks, without touching the output. */
        memset(big, 0x5a, 255 * SHA256_LEN + 1);
        ck_assert_int_eq(hkdf_sha256("s", 1, "k", 1, "i", 1, big, 255 * SHA256_LEN + 1),
                         -EINVAL);
        ck_assert_int_eq(hkdf_sha256("s", 1, "k", 1, "i", 1, big, SIZE_MAX), -EINVAL);
        for (size_t i = 0; i < 255 * SHA256_LEN + 1; i++)
                ck_assert_uint_eq(big[i], 0x5a);

        ck_assert_int_eq(hkdf_sha256("s", 1, "k", 1, "i", 1, a, 0), 0);

        /* RFC 5869 2.2: no salt means HashLen zero bytes. */
        ck_assert_int_eq(hkdf_sha256(NULL, 0, "k", 1, NULL, 0, a, sizeof(a)), 0);
        ck_assert_int_eq(hkdf_sha256(zeros, sizeof(zeros), "k", 1, "", 0, b, sizeof(b)), 0);
        ck_assert_mem_eq(a, b, sizeof(a));
        /* ... and the salt does matter. */
        ck_assert_int_eq(hkdf_sha256("x", 1, "k", 1, NULL, 0, c, sizeof(c)), 0);
        ck_assert_mem_ne(a, c, sizeof(a));
}
END_TEST

static Suite *crypto_suite(void) {
        Suite *s = suite_create("crypto");
        TCase *tc;

        hmac_load();
        hkdf_load();
        tdes_load();

        tc = tcase_create("sha256");
        tcase_add_test(tc, test_sha256);
        suite_add_tcase(s, tc);

        tc = tcase_create("hmac");
        tcase_add_test(tc, test_hmac_rfc4231);
        tcase_add_test(tc, test_hmac_count);
        tcase_add_loop_test(tc, test_hmac_wycheproof, 0, hmac_count);
        suite_add_tcase(s, tc);

        tc = tcase_create("hkdf");
        tcase_add_test(tc, test_hkdf_limits);
        tcase_add_test(tc, test_hkdf_count);
        tcase_add_loop_test(tc, test_hkdf_wycheproof, 0, hkdf_count);
        suite_add_tcase(s, tc);

        tc = tcase_create("tdes");
        tcase_add_test(tc, test_tdes_cavp_count);
        tcase_add_loop_test(tc, test_tdes_cavp, 0, tdes_count);
        tcase_add_test(tc, test_tdes_raw_length);
        tcase_add_loop_test(tc, test_tdes_roundtrip, 0, 41);
        tcase_add_test(tc, test_tdes_good_padding);
        tcase_add_loop_test(tc, test_tdes_bad_pad_value, 0, 1);
        tcase_add_loop_test(tc, test_tdes_bad_pad_value, 9, 256);
        tcase_add_loop_test(tc, test_tdes_bad_pad_bytes, 0, 8);
        tcase_add_test(tc, test_tdes_bad_length);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        int r = run_suite(crypto_suite());

        for (int i = 0; i < tdes_count; i++) {
                free(tdes_vectors[i].pt);
                free(tdes_vectors[i].ct);
        }
        free(hmac_vectors);
        free(hkdf_vectors);
        json_object_put(hmac_json);
        json_object_put(hkdf_json);
        return r;
}
