/* SPDX-License-Identifier: MIT */
/*
 * Handshake transcripts (protocol.md section 4) and key packages (section
 * 5). The expected bytes are written out here from the specification, the
 * length prefixes spelt as bytes, and openssl checks a signature on its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nettle/eddsa.h>

#include "handshake.h"
#include "macro.h"
#include "protocol.h"
#include "rsa.h"
#include "util.h"

#include "test-main.h"

/* Generated once in the parent process and shared by every forked test. */
enum { ALICE, SERVER, OTHER, _KEY_MAX };
static RsaKey *keys[_KEY_MAX];

static void keys_setup(void) {
        for (size_t i = 0; i < _KEY_MAX; i++)
                if (!keys[i])
                        ck_assert_int_eq(rsa_key_generate(2048, &keys[i]), 0);
}

/* ---- Transcript bytes for fixed inputs ---- */

#define RUN8(x) x x x x x x x x
#define RUN32(x) RUN8(x) RUN8(x) RUN8(x) RUN8(x)

/* The fixed inputs are the same string literals the expected bytes use. */
static const uint8_t *const fixed_server_nonce = (const uint8_t *) RUN32("\x11");
static const uint8_t *const fixed_client_nonce = (const uint8_t *) RUN32("\x22");
static const uint8_t fixed_client_key[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
static const uint8_t fixed_server_key[] = { 0x30, 0x03, 0x02, 0x01, 0x02 };
static const uint8_t *const fixed_binding = (const uint8_t *) RUN32("\x33");

/* lp(x) = 4-byte big-endian length || x; here every length is spelt out. */
#define T_TAIL(binding)                                                 \
        "\x00\x00\x00\x20" RUN32("\x11")        /* lp(server_nonce) */  \
        "\x00\x00\x00\x20" RUN32("\x22")        /* lp(client_nonce) */  \
        "\x00\x00\x00\x05" "alice"              /* lp(user) */          \
        "\x00\x00\x00\x05" "\x30\x03\x02\x01\x01" /* lp(client_key) */  \
        "\x00\x00\x00\x05" "\x30\x03\x02\x01\x02" /* lp(server_key) */  \
        binding                                 /* lp(channel_binding) */

#define WITH_BINDING "\x00\x00\x00\x20" RUN32("\x33")
#define NO_BINDING "\x00\x00\x00\x00"

static const struct {
        HandshakeRole role;
        bool binding;
        const char *expect;
        size_t len;
} transcripts[] = {
        { HANDSHAKE_CLIENT, true,
          "\x00\x00\x00\x18" "securechat/1 client-auth" T_TAIL(WITH_BINDING), 28 + 36 + 36 + 9 + 9 + 9 + 36 },
        { HANDSHAKE_SERVER, true,
          "\x00\x00\x00\x18" "securechat/1 server-auth" T_TAIL(WITH_BINDING), 28 + 36 + 36 + 9 + 9 + 9 + 36 },
        { HANDSHAKE_CLIENT, false,
          "\x00\x00\x00\x18" "securechat/1 client-auth" T_TAIL(NO_BINDING), 28 + 36 + 36 + 9 + 9 + 9 + 4 },
        { HANDSHAKE_SERVER, false,
          "\x00\x00\x00\x18" "securechat/1 server-auth" T_TAIL(NO_BINDING), 28 + 36 + 36 + 9 + 9 + 9 + 4 },
        /* Version 3: the same T under its own context. */
        { HANDSHAKE_SERVER3, true,
          "\x00\x00\x00\x18" "securechat/3 server-auth" T_TAIL(WITH_BINDING), 28 + 36 + 36 + 9 + 9 + 9 + 36 },
        { HANDSHAKE_SERVER3, false,
          "\x00\x00\x00\x18" "securechat/3 server-auth" T_TAIL(NO_BINDING), 28 + 36 + 36 + 9 + 9 + 9 + 4 },
};

static HandshakeParams fixed_params(bool binding) {
        return (HandshakeParams) {
                .server_nonce = fixed_server_nonce, .server_nonce_len = 32,
                .client_nonce = fixed_client_nonce, .client_nonce_len = 32,
                .user = "alice",
                .client_key = fixed_client_key, .client_key_len = sizeof(fixed_client_key),
                .server_key = fixed_server_key, .server_key_len = sizeof(fixed_server_key),
                .binding = binding ? fixed_binding : NULL, .binding_len = binding ? 32 : 0,
        };
}

START_TEST(test_transcript_bytes) {
        HandshakeParams p = fixed_params(transcripts[_i].binding);
        _cleanup_(freep) uint8_t *t = NULL;
        size_t len;

        /* the literal is as long as the sum of its parts */
        ck_assert_uint_eq(transcripts[_i].len, sizeof(T_TAIL(NO_BINDING)) - 1 + 28 +
                          (transcripts[_i].binding ? 32 : 0));

        ck_assert_int_eq(handshake_transcript(transcripts[_i].role, &p, &t, &len), 0);
        ck_assert_uint_eq(len, transcripts[_i].len);
        ck_assert_mem_eq(t, transcripts[_i].expect, len);
}
END_TEST

/* lp() keeps fields apart: moving a byte from one field to the next
 * changes the transcript. */
START_TEST(test_transcript_unambiguous) {
        HandshakeParams a = fixed_params(false), b = fixed_params(false);
        _cleanup_(freep) uint8_t *ta = NULL, *tb = NULL;
        static const uint8_t key_b[] = { 'e', 0x30, 0x03, 0x02, 0x01, 0x01 };
        size_t la, lb;

        b.user = "alic";
        b.client_key = key_b;
        b.client_key_len = sizeof(key_b);
        ck_assert_int_eq(handshake_transcript(HANDSHAKE_CLIENT, &a, &ta, &la), 0);
        ck_assert_int_eq(handshake_transcript(HANDSHAKE_CLIENT, &b, &tb, &lb), 0);
        ck_assert_uint_eq(la, lb);
        ck_assert(memcmp(ta, tb, la) != 0);
}
END_TEST

START_TEST(test_transcript_invalid) {
        HandshakeParams p = fixed_params(true);
        uint8_t *t = NULL;
        size_t len;

        ck_assert_int_eq(handshake_transcript((HandshakeRole) (HANDSHAKE_SERVER3 + 1), &p, &t, &len), -EINVAL);
        ck_assert_int_eq(handshake_transcript(HANDSHAKE_CLIENT, NULL, &t, &len), -EINVAL);
        p.user = NULL;
        ck_assert_int_eq(handshake_transcript(HANDSHAKE_CLIENT, &p, &t, &len), -EINVAL);
        p = fixed_params(true);
        p.binding = NULL;       /* but binding_len 32 */
        ck_assert_int_eq(handshake_transcript(HANDSHAKE_CLIENT, &p, &t, &len), -EINVAL);
        ck_assert_ptr_null(t);
}
END_TEST

/* ---- Signatures over real inputs ---- */

typedef struct Inputs {
        uint8_t server_nonce[NONCE_LEN];
        uint8_t client_nonce[NONCE_LEN];
        uint8_t binding[32];
} Inputs;

static HandshakeParams real_params(const Inputs *in) {
        return (HandshakeParams) {
                .server_nonce = in->server_nonce, .server_nonce_len = NONCE_LEN,
                .client_nonce = in->client_nonce, .client_nonce_len = NONCE_LEN,
                .user = "alice",
                .client_key = keys[ALICE]->spki, .client_key_len = keys[ALICE]->spki_len,
                .server_key = keys[SERVER]->spki, .server_key_len = keys[SERVER]->spki_len,
                .binding = in->binding, .binding_len = sizeof(in->binding),
        };
}

static void inputs_random(Inputs *in) {
        ck_assert_int_eq(random_bytes(in, sizeof(*in)), 0);
}

/* Who signs what: the user T_client, the server T_server. */
static int signer(HandshakeRole role) {
        return role == HANDSHAKE_CLIENT ? ALICE : SERVER;
}

START_TEST(test_sign_verify) {
        HandshakeRole role = (HandshakeRole) _i;
        _cleanup_(freep) uint8_t *sig = NULL;
        HandshakeParams p;
        size_t sig_len;
        Inputs in;

        inputs_random(&in);
        p = real_params(&in);
        ck_assert_int_eq(handshake_sign(role, &p, keys[signer(role)], &sig, &sig_len), 0);
        ck_assert_uint_eq(sig_len, rsa_key_size(keys[signer(role)]));
        ck_assert_int_eq(handshake_verify(role, &p, keys[signer(role)], sig, sig_len), 0);

        /* Without binding (tls = no) it works the same way. */
        p.binding = NULL;
        p.binding_len = 0;
        ck_assert_int_eq(handshake_verify(role, &p, keys[signer(role)], sig, sig_len), -EBADMSG);
        free(sig);
        sig = NULL;
        ck_assert_int_eq(handshake_sign(role, &p, keys[signer(role)], &sig, &sig_len), 0);
        ck_assert_int_eq(handshake_verify(role, &p, keys[signer(role)], sig, sig_len), 0);
}
END_TEST

/* A client's signature is no server signature, even under the same key,
 * and the other way round. */
START_TEST(test_role_confusion) {
        _cleanup_(freep) uint8_t *sig = NULL;
        HandshakeParams p;
        size_t sig_len;
        Inputs in;

        inputs_random(&in);
        p = real_params(&in);

        ck_assert_int_eq(handshake_sign(HANDSHAKE_CLIENT, &p, keys[ALICE], &sig, &sig_len), 0);
        ck_assert_int_eq(handshake_verify(HANDSHAKE_CLIENT, &p, keys[ALICE], sig, sig_len), 0);
        ck_assert_int_eq(handshake_verify(HANDSHAKE_SERVER, &p, keys[ALICE], sig, sig_len), -EBADMSG);
        ck_assert_int_eq(handshake_verify(HANDSHAKE_SERVER, &p, keys[SERVER], sig, sig_len), -EBADMSG);
        free(sig);
        sig = NULL;

        ck_assert_int_eq(handshake_sign(HANDSHAKE_SERVER, &p, keys[SERVER], &sig, &sig_len), 0);
        ck_assert_int_eq(handshake_verify(HANDSHAKE_SERVER, &p, keys[SERVER], sig, sig_len), 0);
        ck_assert_int_eq(handshake_verify(HANDSHAKE_CLIENT, &p, keys[SERVER], sig, sig_len), -EBADMSG);
        ck_assert_int_eq(handshake_verify(HANDSHAKE_CLIENT, &p, keys[ALICE], sig, sig_len), -EBADMSG);
}
END_TEST

START_TEST(test_wrong_key) {
        HandshakeRole role = (HandshakeRole) _i;
        _cleanup_(freep) uint8_t *sig = NULL;
        HandshakeParams p;
        size_t sig_len;
        Inputs in;

        inputs_random(&in);
        p = real_params(&in);
        ck_assert_int_eq(handshake_sign(role, &p, keys[signer(role)], &sig, &sig_len), 0);
        ck_assert_int_eq(handshake_verify(role, &p, keys[OTHER], sig, sig_len), -EBADMSG);
        /* a damaged or truncated signature */
        ck_assert_int_eq(handshake_verify(role, &p, keys[signer(role)], sig, sig_len - 1), -EBADMSG);
        ck_assert_int_eq(handshake_verify(role, &p, keys[signer(role)], sig, 0), -EBADMSG);
        sig[sig_len / 2] ^= 0x01;
        ck_assert_int_eq(handshake_verify(role, &p, keys[signer(role)], sig, sig_len), -EBADMSG);
}
END_TEST

/* Every input changed, one at a time, for both roles (loop index: change
 * * 2 + role). */
enum {
        CHANGE_SERVER_NONCE,
        CHANGE_CLIENT_NONCE,
        CHANGE_USER,
        CHANGE_CLIENT_KEY,
        CHANGE_SERVER_KEY,
        CHANGE_BINDING,
        CHANGE_BINDING_EMPTY,
        CHANGE_BINDING_SHORT,
        _CHANGE_MAX,
};

START_TEST(test_changed_input) {
        HandshakeRole role = (HandshakeRole) (_i % 2);
        int change = _i / 2;
        _cleanup_(freep) uint8_t *sig = NULL;
        HandshakeParams p;
        size_t sig_len;
        Inputs in, in2;

        inputs_random(&in);
        p = real_params(&in);
        ck_assert_int_eq(handshake_sign(role, &p, keys[signer(role)], &sig, &sig_len), 0);
        ck_assert_int_eq(handshake_verify(role, &p, keys[signer(role)], sig, sig_len), 0);

        in2 = in;
        p = real_params(&in2);
        switch (change) {
        case CHANGE_SERVER_NONCE:
                in2.server_nonce[31] ^= 0x80;
                break;
        case CHANGE_CLIENT_NONCE:
                in2.client_nonce[0] ^= 0x01;
                break;
        case CHANGE_USER:
                p.user = "alicf";
                break;
        case CHANGE_CLIENT_KEY:
                p.client_key = keys[OTHER]->spki;
                p.client_key_len = keys[OTHER]->spki_len;
                break;
        case CHANGE_SERVER_KEY:
                p.server_key = keys[OTHER]->spki;
                p.server_key_len = keys[OTHER]->spki_len;
                break;
        case CHANGE_BINDING:
                in2.binding[7] ^= 0x04;
                break;
        case CHANGE_BINDING_EMPTY:
                p.binding = NULL;
                p.binding_len = 0;
                break;
        case CHANGE_BINDING_SHORT:
                p.binding_len = 31;
                break;
        default:
                ck_abort();
        }
        ck_assert_int_eq(handshake_verify(role, &p, keys[signer(role)], sig, sig_len), -EBADMSG);
}
END_TEST

START_TEST(test_sign_needs_private) {
        _cleanup_(rsa_key_freep) RsaKey *pub = NULL;
        HandshakeParams p = fixed_params(true);
        uint8_t *sig = NULL;
        size_t sig_len;

        ck_assert_int_eq(rsa_key_from_spki(keys[ALICE]->spki, keys[ALICE]->spki_len, &pub), 0);
        ck_assert_int_eq(handshake_sign(HANDSHAKE_CLIENT, &p, pub, &sig, &sig_len), -EINVAL);
        ck_assert_ptr_null(sig);
}
END_TEST

/* A scratch directory for openssl's files. */
static void scratch_dir(char dir[static 256]) {
        const char *tmp = getenv("TMPDIR");

        snprintf(dir, 256, "%s/test-handshake.XXXXXX", tmp ? tmp : "/tmp");
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void write_bytes(const char *dir, const char *name, const void *p, size_t len) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        ck_assert_ptr_nonnull(f = fopen(path, "we"));
        ck_assert_uint_eq(fwrite(p, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
}

/* Run the openssl command line args in dir (which is removed after);
 * it must succeed. */
static void openssl_in(const char *dir, const char *args) {
        char cmd[1024];
        int status;

        snprintf(cmd, sizeof(cmd), "cd '%s' && openssl %s >log 2>&1", dir, args);
        status = system(cmd);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "openssl refused the signature");
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
}

/* openssl verifies the user's signature over T_client as written here. */
START_TEST(test_openssl_verifies) {
        static const char expect[] = "\x00\x00\x00\x18" "securechat/1 client-auth" T_TAIL(NO_BINDING);
        HandshakeParams p = fixed_params(false);
        _cleanup_(freep) uint8_t *sig = NULL;
        char dir[256], path[512];
        size_t sig_len;

        scratch_dir(dir);
        ck_assert_int_eq(handshake_sign(HANDSHAKE_CLIENT, &p, keys[ALICE], &sig, &sig_len), 0);
        snprintf(path, sizeof(path), "%s/alice.pub", dir);
        ck_assert_int_eq(rsa_key_save_public(keys[ALICE], path), 0);
        write_bytes(dir, "t.bin", expect, sizeof(expect) - 1);
        write_bytes(dir, "sig.bin", sig, sig_len);
        openssl_in(dir, "dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 "
                   "-sigopt rsa_mgf1_md:sha256 -verify alice.pub -signature sig.bin t.bin");
}
END_TEST

/* openssl verifies the welcome key's Ed25519 signature over T_server3 as
 * written here (RFC 8032's Ed25519, no prehash). */
START_TEST(test_openssl_verifies_ed25519) {
        static const char expect[] = "\x00\x00\x00\x18" "securechat/3 server-auth" T_TAIL(WITH_BINDING);
        /* SubjectPublicKeyInfo of an Ed25519 key (RFC 8410), before the key */
        static const uint8_t spki_head[] = { 0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00 };
        _cleanup_(ed25519_key_freep) Ed25519Key *k = NULL;
        HandshakeParams p = fixed_params(true);
        uint8_t sig[ED25519_SIG_LEN], spki[sizeof(spki_head) + ED25519_KEY_LEN];
        char dir[256];

        scratch_dir(dir);
        ck_assert_int_eq(ed25519_key_generate(&k), 0);
        ck_assert_int_eq(handshake_sign_ed25519(HANDSHAKE_SERVER3, &p, k, sig), 0);
        memcpy(spki, spki_head, sizeof(spki_head));
        memcpy(spki + sizeof(spki_head), k->pub, ED25519_KEY_LEN);
        write_bytes(dir, "wk.der", spki, sizeof(spki));
        write_bytes(dir, "t3.bin", expect, sizeof(expect) - 1);
        write_bytes(dir, "sig.bin", sig, sizeof(sig));
        openssl_in(dir, "pkeyutl -verify -pubin -keyform DER -inkey wk.der -rawin -in t3.bin -sigfile sig.bin");
}
END_TEST

/* ---- Version 3: the welcome key ---- */

START_TEST(test_welcome_key_input_bytes) {
        static const char expect[] =
                "\x00\x00\x00\x18" "securechat/3 welcome-key"
                "\x00\x00\x00\x20" RUN32("\x44")
                "\x01\x02\x03\x04\x05\x06\x07\x08";
        static const uint8_t *const key = (const uint8_t *) RUN32("\x44");
        _cleanup_(freep) uint8_t *input = NULL;
        size_t len;

        ck_assert_int_eq(welcome_key_input(key, UINT64_C(0x0102030405060708), &input, &len), 0);
        ck_assert_uint_eq(len, sizeof(expect) - 1);
        ck_assert_uint_eq(len, 28 + 36 + 8);
        ck_assert_mem_eq(input, expect, len);
}
END_TEST

/* RFC 8032 section 7.1, TEST 2: our use of Nettle is Ed25519's. */
START_TEST(test_ed25519_rfc8032) {
        static const uint8_t seed[32] = {
                0x4c, 0xcd, 0x08, 0x9b, 0x28, 0xff, 0x96, 0xda, 0x9d, 0xb6, 0xc3, 0x46, 0xec, 0x11, 0x4e, 0x0f,
                0x5b, 0x8a, 0x31, 0x9f, 0x35, 0xab, 0xa6, 0x24, 0xda, 0x8c, 0xf6, 0xed, 0x4f, 0xb8, 0xa6, 0xfb,
        };
        static const uint8_t pub[32] = {
                0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0x89, 0x5a, 0x92, 0xb7, 0x0a, 0xa7, 0x4d, 0x1b, 0x7e, 0xbc,
                0x9c, 0x98, 0x2c, 0xcf, 0x2e, 0xc4, 0x96, 0x8c, 0xc0, 0xcd, 0x55, 0xf1, 0x2a, 0xf4, 0x66, 0x0c,
        };
        static const uint8_t expect_sig[64] = {
                0x92, 0xa0, 0x09, 0xa9, 0xf0, 0xd4, 0xca, 0xb8, 0x72, 0x0e, 0x82, 0x0b, 0x5f, 0x64, 0x25, 0x40,
                0xa2, 0xb2, 0x7b, 0x54, 0x16, 0x50, 0x3f, 0x8f, 0xb3, 0x76, 0x22, 0x23, 0xeb, 0xdb, 0x69, 0xda,
                0x08, 0x5a, 0xc1, 0xe4, 0x3e, 0x15, 0x99, 0x6e, 0x45, 0x8f, 0x36, 0x13, 0xd0, 0xf1, 0x1d, 0x8c,
                0x38, 0x7b, 0x2e, 0xae, 0xb4, 0x30, 0x2a, 0xee, 0xb0, 0x0d, 0x29, 0x16, 0x12, 0xbb, 0x0c, 0x00,
        };
        uint8_t got[32], sig[64], msg = 0x72;

        ed25519_sha512_public_key(got, seed);
        ck_assert_mem_eq(got, pub, 32);
        ed25519_sha512_sign(pub, seed, 1, &msg, sig);
        ck_assert_mem_eq(sig, expect_sig, sizeof(expect_sig));
        ck_assert_int_eq(ed25519_sha512_verify(pub, 1, &msg, sig), 1);
}
END_TEST

START_TEST(test_ed25519_sign_verify) {
        _cleanup_(ed25519_key_freep) Ed25519Key *k = NULL, *other = NULL;
        uint8_t sig[ED25519_SIG_LEN], pub[ED25519_KEY_LEN];
        HandshakeParams p;
        Inputs in;

        ck_assert_int_eq(ed25519_key_generate(&k), 0);
        ck_assert_int_eq(ed25519_key_generate(&other), 0);
        ck_assert(memcmp(k->seed, other->seed, ED25519_KEY_LEN) != 0);
        ed25519_sha512_public_key(pub, k->seed);
        ck_assert_mem_eq(pub, k->pub, ED25519_KEY_LEN);

        inputs_random(&in);
        p = real_params(&in);
        ck_assert_int_eq(handshake_sign_ed25519(HANDSHAKE_SERVER3, &p, k, sig), 0);
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER3, &p, k->pub, sig, sizeof(sig)), 0);
        /* another key, a truncated or a longer signature, a changed T */
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER3, &p, other->pub, sig, sizeof(sig)),
                         -EBADMSG);
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER3, &p, k->pub, sig, sizeof(sig) - 1),
                         -EBADMSG);
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER3, &p, k->pub, NULL, 0), -EBADMSG);
        p.user = "mallory";
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER3, &p, k->pub, sig, sizeof(sig)), -EBADMSG);
        p = real_params(&in);
        sig[10] ^= 1;
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER3, &p, k->pub, sig, sizeof(sig)), -EBADMSG);
}
END_TEST

/* Version 3's context keeps a signature over T_server3 from passing for
 * one over T_server and the other way round, whatever the key type. */
START_TEST(test_v3_context) {
        _cleanup_(ed25519_key_freep) Ed25519Key *k = NULL;
        _cleanup_(freep) uint8_t *rsa_sig = NULL;
        uint8_t sig[ED25519_SIG_LEN];
        HandshakeParams p;
        size_t rsa_sig_len;
        Inputs in;

        inputs_random(&in);
        p = real_params(&in);
        ck_assert_int_eq(ed25519_key_generate(&k), 0);

        ck_assert_int_eq(handshake_sign_ed25519(HANDSHAKE_SERVER, &p, k, sig), 0);
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER, &p, k->pub, sig, sizeof(sig)), 0);
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER3, &p, k->pub, sig, sizeof(sig)), -EBADMSG);
        ck_assert_int_eq(handshake_sign_ed25519(HANDSHAKE_SERVER3, &p, k, sig), 0);
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_SERVER, &p, k->pub, sig, sizeof(sig)), -EBADMSG);
        ck_assert_int_eq(handshake_verify_ed25519(HANDSHAKE_CLIENT, &p, k->pub, sig, sizeof(sig)), -EBADMSG);

        ck_assert_int_eq(handshake_sign(HANDSHAKE_SERVER3, &p, keys[SERVER], &rsa_sig, &rsa_sig_len), 0);
        ck_assert_int_eq(handshake_verify(HANDSHAKE_SERVER3, &p, keys[SERVER], rsa_sig, rsa_sig_len), 0);
        ck_assert_int_eq(handshake_verify(HANDSHAKE_SERVER, &p, keys[SERVER], rsa_sig, rsa_sig_len), -EBADMSG);
}
END_TEST

START_TEST(test_welcome_key_sign_verify) {
        _cleanup_(ed25519_key_freep) Ed25519Key *k = NULL;
        _cleanup_(welcome_key_freep) WelcomeKey *wk = NULL;
        _cleanup_(rsa_key_freep) RsaKey *pub = NULL;
        const uint64_t not_after = 1700000000 + WELCOME_KEY_LIFETIME;

        ck_assert_int_eq(ed25519_key_generate(&k), 0);
        ck_assert_int_eq(welcome_key_sign(keys[SERVER], k->pub, not_after, &wk), 0);
        ck_assert_mem_eq(wk->key, k->pub, ED25519_KEY_LEN);
        ck_assert_uint_eq(wk->not_after, not_after);
        ck_assert_uint_eq(wk->sig_len, rsa_key_size(keys[SERVER]));

        /* the public half is all a client needs */
        ck_assert_int_eq(rsa_key_from_spki(keys[SERVER]->spki, keys[SERVER]->spki_len, &pub), 0);
        ck_assert_int_eq(welcome_key_verify(wk, pub, 1700000000), 0);
        ck_assert_int_eq(welcome_key_verify(wk, pub, not_after), 0);
        ck_assert_int_eq(welcome_key_verify(wk, pub, not_after + 1), -EKEYEXPIRED);
        ck_assert_int_eq(welcome_key_verify(wk, keys[OTHER], 1700000000), -EBADMSG);

        /* a statement needs the private key */
        welcome_key_free(TAKE_PTR(wk));
        ck_assert_int_eq(welcome_key_sign(pub, k->pub, not_after, &wk), -EINVAL);
        ck_assert_ptr_null(wk);
}
END_TEST

enum { WK_KEY, WK_NOT_AFTER, WK_SIG, WK_NO_SIG, _WK_MAX };

/* Any change to a statement breaks it: a later not_after, another key. */
START_TEST(test_welcome_key_altered) {
        _cleanup_(ed25519_key_freep) Ed25519Key *k = NULL;
        _cleanup_(welcome_key_freep) WelcomeKey *wk = NULL;

        ck_assert_int_eq(ed25519_key_generate(&k), 0);
        ck_assert_int_eq(welcome_key_sign(keys[SERVER], k->pub, 2000000000, &wk), 0);
        ck_assert_int_eq(welcome_key_verify(wk, keys[SERVER], 1900000000), 0);
        switch (_i) {
        case WK_KEY:
                wk->key[31] ^= 0x01;
                break;
        case WK_NOT_AFTER:
                wk->not_after += 1;
                break;
        case WK_SIG:
                wk->sig[0] ^= 0x80;
                break;
        case WK_NO_SIG:
                free(wk->sig);
                wk->sig = NULL;
                wk->sig_len = 0;
                break;
        }
        ck_assert_int_eq(welcome_key_verify(wk, keys[SERVER], 1900000000), -EBADMSG);
        /* a bad statement is bad, not expired, at any time */
        ck_assert_int_eq(welcome_key_verify(wk, keys[SERVER], 2100000000), -EBADMSG);
}
END_TEST

/* ---- Key packages ---- */

START_TEST(test_key_package_input_bytes) {
        static const char expect[] =
                "\x00\x00\x00\x18" "securechat/1 key-package"
                "\x00\x00\x00\x03" "bob"
                "\x00\x00\x00\x05" "\x30\x03\x02\x01\x01"
                "\x01\x02\x03\x04\x05\x06\x07\x08";
        _cleanup_(freep) uint8_t *input = NULL;
        size_t len;

        ck_assert_int_eq(key_package_input("bob", fixed_client_key, sizeof(fixed_client_key),
                                           UINT64_C(0x0102030405060708), &input, &len), 0);
        ck_assert_uint_eq(len, sizeof(expect) - 1);
        ck_assert_uint_eq(len, 28 + 7 + 9 + 8);
        ck_assert_mem_eq(input, expect, len);
}
END_TEST

START_TEST(test_key_package_input_invalid) {
        uint8_t *input = NULL;
        size_t len;

        ck_assert_int_eq(key_package_input("Bob", fixed_client_key, 5, 0, &input, &len), -EINVAL);
        ck_assert_int_eq(key_package_input("", fixed_client_key, 5, 0, &input, &len), -EINVAL);
        ck_assert_int_eq(key_package_input(NULL, fixed_client_key, 5, 0, &input, &len), -EINVAL);
        ck_assert_int_eq(key_package_input("bob", NULL, 0, 0, &input, &len), -EINVAL);
        ck_assert_ptr_null(input);
}
END_TEST

START_TEST(test_key_package_sign_verify) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        _cleanup_(freep) uint8_t *input = NULL;
        size_t len;

        ck_assert_int_eq(key_package_sign(keys[SERVER], "alice", keys[ALICE]->spki,
                                          keys[ALICE]->spki_len, 1700000000, &kp), 0);
        ck_assert_str_eq(kp->user, "alice");
        ck_assert_uint_eq(kp->key_len, keys[ALICE]->spki_len);
        ck_assert_mem_eq(kp->key, keys[ALICE]->spki, kp->key_len);
        ck_assert(kp->key != keys[ALICE]->spki);
        ck_assert_uint_eq(kp->registered, 1700000000);
        ck_assert_uint_eq(kp->sig_len, rsa_key_size(keys[SERVER]));
        ck_assert_int_eq(key_package_verify(kp, keys[SERVER]), 0);

        /* The signature is PSS over exactly the documented input. */
        ck_assert_int_eq(key_package_input("alice", keys[ALICE]->spki, keys[ALICE]->spki_len,
                                           1700000000, &input, &len), 0);
        ck_assert_int_eq(rsa_pss_verify(keys[SERVER], input, len, kp->sig, kp->sig_len), 0);

        /* Under any other key, refused. */
        ck_assert_int_eq(key_package_verify(kp, keys[OTHER]), -EBADMSG);
        ck_assert_int_eq(key_package_verify(kp, keys[ALICE]), -EBADMSG);
}
END_TEST

enum {
        KP_USER,
        KP_USER_INVALID,
        KP_KEY_BYTE,
        KP_KEY_SHORT,
        KP_KEY_OTHER,
        KP_REGISTERED,
        KP_SIG_BYTE,
        KP_SIG_SHORT,
        KP_SIG_NONE,
        _KP_MAX,
};

START_TEST(test_key_package_altered) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;

        ck_assert_int_eq(key_package_sign(keys[SERVER], "bob", keys[OTHER]->spki,
                                          keys[OTHER]->spki_len, 1700000000, &kp), 0);
        ck_assert_int_eq(key_package_verify(kp, keys[SERVER]), 0);

        switch (_i) {
        case KP_USER:
                strcpy(kp->user, "bob2");
                break;
        case KP_USER_INVALID:
                strcpy(kp->user, "Bob");
                break;
        case KP_KEY_BYTE:
                kp->key[kp->key_len - 1] ^= 0x01;
                break;
        case KP_KEY_SHORT:
                kp->key_len--;
                break;
        case KP_KEY_OTHER:
                /* alice's key under bob's name and bob's signature */
                free(kp->key);
                kp->key = malloc(keys[ALICE]->spki_len);
                ck_assert_ptr_nonnull(kp->key);
                memcpy(kp->key, keys[ALICE]->spki, keys[ALICE]->spki_len);
                kp->key_len = keys[ALICE]->spki_len;
                break;
        case KP_REGISTERED:
                kp->registered++;
                break;
        case KP_SIG_BYTE:
                kp->sig[0] ^= 0x40;
                break;
        case KP_SIG_SHORT:
                kp->sig_len--;
                break;
        case KP_SIG_NONE:
                free(kp->sig);
                kp->sig = NULL;
                kp->sig_len = 0;
                break;
        default:
                ck_abort();
        }
        ck_assert_int_eq(key_package_verify(kp, keys[SERVER]), -EBADMSG);
}
END_TEST

START_TEST(test_key_package_dup) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL, *copy = NULL;

        ck_assert_int_eq(key_package_sign(keys[SERVER], "carol", keys[ALICE]->spki,
                                          keys[ALICE]->spki_len, 42, &kp), 0);
        ck_assert_int_eq(key_package_dup(kp, &copy), 0);
        ck_assert_str_eq(copy->user, kp->user);
        ck_assert_uint_eq(copy->registered, kp->registered);
        ck_assert_uint_eq(copy->key_len, kp->key_len);
        ck_assert_mem_eq(copy->key, kp->key, kp->key_len);
        ck_assert_uint_eq(copy->sig_len, kp->sig_len);
        ck_assert_mem_eq(copy->sig, kp->sig, kp->sig_len);
        ck_assert(copy->key != kp->key);
        ck_assert(copy->sig != kp->sig);
        ck_assert_int_eq(key_package_verify(copy, keys[SERVER]), 0);

        /* deep: damaging the copy leaves the original intact */
        copy->key[0] ^= 0xff;
        copy->sig[0] ^= 0xff;
        ck_assert_int_eq(key_package_verify(copy, keys[SERVER]), -EBADMSG);
        ck_assert_int_eq(key_package_verify(kp, keys[SERVER]), 0);

        ck_assert_ptr_null(key_package_free(NULL));
}
END_TEST

START_TEST(test_key_package_sign_invalid) {
        _cleanup_(rsa_key_freep) RsaKey *pub = NULL;
        KeyPackage *kp = NULL;

        ck_assert_int_eq(key_package_sign(keys[SERVER], "Alice", keys[ALICE]->spki,
                                          keys[ALICE]->spki_len, 1, &kp), -EINVAL);
        ck_assert_int_eq(key_package_sign(keys[SERVER], "a2345678901234567890123456789012x",
                                          keys[ALICE]->spki, keys[ALICE]->spki_len, 1, &kp), -EINVAL);
        ck_assert_int_eq(rsa_key_from_spki(keys[SERVER]->spki, keys[SERVER]->spki_len, &pub), 0);
        ck_assert_int_eq(key_package_sign(pub, "alice", keys[ALICE]->spki,
                                          keys[ALICE]->spki_len, 1, &kp), -EINVAL);
        ck_assert_ptr_null(kp);
}
END_TEST

static TCase *tcase_new(const char *name) {
        TCase *tc = tcase_create(name);

        tcase_add_unchecked_fixture(tc, keys_setup, NULL);
        tcase_set_timeout(tc, 60);
        return tc;
}

static Suite *handshake_suite(void) {
        Suite *s = suite_create("handshake");
        TCase *tc;

        tc = tcase_new("transcript");
        tcase_add_loop_test(tc, test_transcript_bytes, 0, ELEMENTSOF(transcripts));
        tcase_add_test(tc, test_transcript_unambiguous);
        tcase_add_test(tc, test_transcript_invalid);
        suite_add_tcase(s, tc);

        tc = tcase_new("signatures");
        tcase_add_loop_test(tc, test_sign_verify, HANDSHAKE_CLIENT, HANDSHAKE_SERVER + 1);
        tcase_add_test(tc, test_role_confusion);
        tcase_add_loop_test(tc, test_wrong_key, HANDSHAKE_CLIENT, HANDSHAKE_SERVER + 1);
        tcase_add_loop_test(tc, test_changed_input, 0, 2 * _CHANGE_MAX);
        tcase_add_test(tc, test_sign_needs_private);
        tcase_add_test(tc, test_openssl_verifies);
        tcase_add_test(tc, test_openssl_verifies_ed25519);
        suite_add_tcase(s, tc);

        tc = tcase_new("welcome-key");
        tcase_add_test(tc, test_welcome_key_input_bytes);
        tcase_add_test(tc, test_ed25519_rfc8032);
        tcase_add_test(tc, test_ed25519_sign_verify);
        tcase_add_test(tc, test_v3_context);
        tcase_add_test(tc, test_welcome_key_sign_verify);
        tcase_add_loop_test(tc, test_welcome_key_altered, 0, _WK_MAX);
        suite_add_tcase(s, tc);

        tc = tcase_new("key-package");
        tcase_add_test(tc, test_key_package_input_bytes);
        tcase_add_test(tc, test_key_package_input_invalid);
        tcase_add_test(tc, test_key_package_sign_verify);
        tcase_add_loop_test(tc, test_key_package_altered, 0, _KP_MAX);
        tcase_add_test(tc, test_key_package_dup);
        tcase_add_test(tc, test_key_package_sign_invalid);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        return run_suite(handshake_suite());
}
