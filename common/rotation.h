/* SPDX-License-Identifier: MIT */
/*
 * Identity key rotation (securechat-protocol(7), "Key rotation (exact)"):
 * a statement that user's key old_key is replaced by new_key, signed by
 * both keys, so that whoever pinned the old key can move the pin to the
 * new one on the old key's word, without trusting the relay for it. The
 * new key's signature proves that its owner holds it.
 *
 * The relay keeps the last ROTATION_CHAIN_MAX statements of a user, oldest
 * first, and hands them out with the user's key package; a peer follows
 * the chain from the key it pinned to the key in the package.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "rsa.h"
#include "util.h"

#define CTX_KEY_ROTATION "securechat/1 key-rotation"
/* Statements kept per user and accepted in a package. */
#define ROTATION_CHAIN_MAX 4
/* How far a statement's time may be from the relay's clock when submitted. */
#define ROTATION_TIME_SKEW 300

typedef struct Rotation {
        char user[USERNAME_MAX + 1];
        uint8_t *old_key; size_t old_key_len;   /* SPKI DER */
        uint8_t *new_key; size_t new_key_len;   /* SPKI DER */
        uint64_t time;                          /* unix seconds */
        uint8_t *old_sig; size_t old_sig_len;   /* PSS by the old key */
        uint8_t *new_sig; size_t new_sig_len;   /* PSS by the new key */
} Rotation;

Rotation *rotation_free(Rotation *r);
static inline void rotation_freep(Rotation **r) { rotation_free(*r); }
int rotation_dup(const Rotation *r, Rotation **ret);

/* lp(CTX_KEY_ROTATION) || lp(user) || lp(old_key) || lp(new_key) || u64(time).
 * -EINVAL for a bad user name or an empty key. */
int rotation_input(const char *user, const uint8_t *old_key, size_t old_key_len,
                   const uint8_t *new_key, size_t new_key_len, uint64_t time,
                   uint8_t **ret, size_t *ret_len);

/* A statement signed by both keys (both must hold their private half). */
int rotation_sign(const char *user, const RsaKey *old_key, const RsaKey *new_key, uint64_t time,
                  Rotation **ret);

/* 0 when both keys are protocol RSA keys, they differ and both signatures
 * verify; -EBADMSG otherwise; -ENOMEM. */
int rotation_verify(const Rotation *r);

/* JSON, both ways. Parsing is strict (every member mandatory, unknown ones
 * refused: the object is signed): -EBADMSG, -ENOMEM. */
int rotation_to_json(const Rotation *r, json_object **ret);
int rotation_from_json(json_object *o, Rotation **ret);

/* A chain: an array of 1..ROTATION_CHAIN_MAX statements, oldest first. */
void rotation_chain_free(Rotation **chain, size_t n);
int rotation_chain_dup(Rotation *const *chain, size_t n, Rotation ***ret);
int rotation_chain_to_json(Rotation *const *chain, size_t n, json_object **ret);
int rotation_chain_from_json(json_object *a, Rotation ***ret, size_t *ret_n);

/* Whether chain leads, step by verified step, from the key pinned for user
 * to key: a statement of user whose old key is pinned starts it, each
 * next statement's old key is the previous one's new key, and the last
 * new key is key. 0 if so, -EBADMSG if not, -ENOMEM. */
int rotation_chain_vouches(Rotation *const *chain, size_t n, const char *user,
                           const uint8_t *pinned, size_t pinned_len,
                           const uint8_t *key, size_t key_len);
