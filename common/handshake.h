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
