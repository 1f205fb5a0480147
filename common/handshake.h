/* SPDX-License-Identifier: MIT */
/*
 * Handshake transcripts (protocol.md section 4) and server-signed key
 * packages (section 5), byte-exact.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"
#include "rotation.h"
#include "rsa.h"
#include "util.h"

typedef enum HandshakeRole {
        HANDSHAKE_CLIENT,   /* T_client, signed by the user's key */
        HANDSHAKE_SERVER,   /* T_server, signed by the server's key */
        HANDSHAKE_SERVER3,  /* T_server3 (version 3), signed by the welcome key */
} HandshakeRole;

typedef struct HandshakeParams {
        const uint8_t *server_nonce;  size_t server_nonce_len;
        const uint8_t *client_nonce;  size_t client_nonce_len;
        const char *user;
        const uint8_t *client_key;    size_t client_key_len;   /* SPKI DER */
        const uint8_t *server_key;    size_t server_key_len;   /* SPKI DER */
        const uint8_t *binding;       size_t binding_len;      /* tls-exporter or empty */
} HandshakeParams;

/* lp(ctx) || T, allocated. */
int handshake_transcript(HandshakeRole role, const HandshakeParams *p,
                         uint8_t **ret, size_t *ret_len);

/* PSS signature over the transcript with key (must hold the private key),
 * and its verification (0 or -EBADMSG). */
int handshake_sign(HandshakeRole role, const HandshakeParams *p, const RsaKey *key,
                   uint8_t **ret_sig, size_t *ret_sig_len);
int handshake_verify(HandshakeRole role, const HandshakeParams *p, const RsaKey *key,
                     const uint8_t *sig, size_t sig_len);

/* ---- Version 3: the welcome key ----
 *
 * An Ed25519 key pair the relay makes at start and keeps in memory only;
 * its identity key certifies the public half for WELCOME_KEY_LIFETIME
 * (WelcomeKey), and the key signs T_server3 of version-3 logins. */

#define ED25519_KEY_LEN 32
#define ED25519_SIG_LEN 64

typedef struct Ed25519Key {
        uint8_t seed[ED25519_KEY_LEN];  /* the private key (RFC 8032's seed) */
        uint8_t pub[ED25519_KEY_LEN];
} Ed25519Key;

/* A fresh key pair from random_bytes(). 0, -ENOMEM or getrandom's error. */
int ed25519_key_generate(Ed25519Key **ret);
/* Wipes the seed. */
Ed25519Key *ed25519_key_free(Ed25519Key *k);
static inline void ed25519_key_freep(Ed25519Key **k) { ed25519_key_free(*k); }

/* Ed25519 signature over lp(ctx) || T of role (any role: the context is
 * what keeps the roles apart), and its verification under a raw public
 * key (0, -EBADMSG, -ENOMEM). */
int handshake_sign_ed25519(HandshakeRole role, const HandshakeParams *p, const Ed25519Key *key,
                           uint8_t ret_sig[ED25519_SIG_LEN]);
int handshake_verify_ed25519(HandshakeRole role, const HandshakeParams *p,
                             const uint8_t key[ED25519_KEY_LEN], const uint8_t *sig, size_t sig_len);

/* The identity key's statement on a welcome key. */
typedef struct WelcomeKey {
        uint8_t key[ED25519_KEY_LEN];
        uint64_t not_after;             /* unix seconds */
        uint8_t *sig; size_t sig_len;   /* PSS by the server's identity key */
} WelcomeKey;

WelcomeKey *welcome_key_free(WelcomeKey *wk);
static inline void welcome_key_freep(WelcomeKey **wk) { welcome_key_free(*wk); }

/* W = lp("securechat/3 welcome-key") || lp(key, 32 bytes) || u64(not_after) */
int welcome_key_input(const uint8_t key[ED25519_KEY_LEN], uint64_t not_after, uint8_t **ret,
                      size_t *ret_len);
/* The statement on key until not_after, signed by server. */
int welcome_key_sign(const RsaKey *server, const uint8_t key[ED25519_KEY_LEN], uint64_t not_after,
                     WelcomeKey **ret);
/* 0 when wk->sig verifies under server and now is not past not_after;
 * -EBADMSG for a bad signature, -EKEYEXPIRED for a good one expired,
 * -ENOMEM. */
int welcome_key_verify(const WelcomeKey *wk, const RsaKey *server, uint64_t now);

typedef struct KeyPackage {
        char user[USERNAME_MAX + 1];
        uint8_t *key;           /* SPKI DER */
        size_t key_len;
        uint64_t registered;    /* unix seconds */
        uint8_t *sig;
        size_t sig_len;
        /* The user's last key rotations, oldest first, the last one to key
         * (rotation.h); none for a key never rotated. Not covered by sig:
         * each statement carries its own signatures. */
        Rotation **rotations;
        size_t n_rotations;
} KeyPackage;

KeyPackage *key_package_free(KeyPackage *kp);
static inline void key_package_freep(KeyPackage **kp) { key_package_free(*kp); }

/* lp("securechat/1 key-package") || lp(user) || lp(key_der) || u64(registered) */
int key_package_input(const char *user, const uint8_t *key, size_t key_len,
                      uint64_t registered, uint8_t **ret, size_t *ret_len);

/* Build and sign a package with the server key. */
int key_package_sign(const RsaKey *server, const char *user, const uint8_t *key,
                     size_t key_len, uint64_t registered, KeyPackage **ret);

/* 0 if kp->sig verifies under server, -EBADMSG otherwise. */
int key_package_verify(const KeyPackage *kp, const RsaKey *server);

/* Deep copy, rotations included. */
int key_package_dup(const KeyPackage *kp, KeyPackage **ret);
