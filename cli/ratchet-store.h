/* SPDX-License-Identifier: MIT */
/*
 * The secrets of suite 2 (securechat-protocol(7), "SUITE 2") that one user
 * keeps: HOME/ratchet/USER.db, one SQLite database holding
 *
 *   session   a ratchet per (peer user, device id): the serialized Ratchet
 *             of suite2.h, which carries its own skipped message keys, so
 *             that the state and its skipped keys change together
 *   spk       our signed prekeys: the current one, and retired ones whose
 *             private half is kept until no message sealed to them can
 *             still be queued
 *   opk       our one-time prekeys by id, erased once used
 *   peer      whether a peer's lookup ever gave a prekey bundle: a relay
 *             that stops handing them out is noticed
 *   pending   the text of a message opened (its ratchet state committed)
 *             but not yet shown: a crash between the two must not lose a
 *             message whose key is already gone
 *
 * Several scctl processes of one user share it (`listen` while `send`
 * runs): WAL, a busy timeout, and every read-modify-write of a ratchet
 * inside ratchet_store_begin() .. ratchet_store_commit(), which is BEGIN
 * IMMEDIATE, so two processes never advance the same state from the same
 * starting point.
 *
 * Erasing means it: secure_delete is on (SQLite zeroes freed content),
 * a secret is overwritten with zeroes before its row is deleted, and every
 * commit that wrote secrets checkpoints the WAL with TRUNCATE, so that old
 * page images (the previous chain keys, a used OPK) do not linger in the
 * write-ahead log either.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "protocol.h"
#include "state.h"
#include "suite2.h"

/* Sessions are keyed by device too; today every user has this one. */
#define RATCHET_DEVICE_DEFAULT 1u

typedef struct RatchetStore RatchetStore;

/* Open (creating) HOME/ratchet/USER.db, mode 0600. */
int ratchet_store_open(ClientState *s, const char *user, RatchetStore **ret);
RatchetStore *ratchet_store_free(RatchetStore *st);
static inline void ratchet_store_freep(RatchetStore **st) { ratchet_store_free(*st); }

/* One write transaction at a time per store (BEGIN IMMEDIATE: waits for
 * other processes' up to the busy timeout, then -EBUSY). rollback is a
 * no-op outside a transaction, so cleanup paths may always call it. */
int ratchet_store_begin(RatchetStore *st);
int ratchet_store_commit(RatchetStore *st);
void ratchet_store_rollback(RatchetStore *st);

/* Sessions, each bound to the peer's identity key (its fingerprint): a
 * session made with another key than the one now pinned (the peer got a
 * new key, and was trusted again) is as good as none. get: -ENOENT when
 * none, -EBADMSG when the stored state does not deserialize. */
int ratchet_store_session_get(RatchetStore *st, const char *peer, uint32_t device,
                              const char *peer_key, Ratchet **ret);
int ratchet_store_session_put(RatchetStore *st, const char *peer, uint32_t device,
                              const char *peer_key, const Ratchet *r, uint64_t now);
/* Whether the session kept with peer was made with another key than
 * peer_key: 1 yes, 0 no (or none kept), or -errno. */
int ratchet_store_session_key_changed(RatchetStore *st, const char *peer, uint32_t device,
                                      const char *peer_key);
int ratchet_store_session_erase(RatchetStore *st, const char *peer, uint32_t device);

/* Fresh prekey ids, never reused by this store (a sender may still hold a
 * bundle naming an old one). */
int ratchet_store_next_spk_id(RatchetStore *st, uint32_t *ret);
int ratchet_store_next_opk_id(RatchetStore *st, uint32_t *ret);

/* Signed prekeys. add makes spk the current one and retires the previous
 * current one at now. current: -ENOENT when none. private: the private half
 * of id, current or retired; -ENOENT when erased or never ours. */
int ratchet_store_spk_add(RatchetStore *st, const SignedPrekey *spk,
                          const uint8_t priv[X25519_KEY_LEN], uint64_t now);
int ratchet_store_spk_current(RatchetStore *st, SignedPrekey *ret);
int ratchet_store_spk_private(RatchetStore *st, uint32_t id, uint8_t ret[X25519_KEY_LEN]);
/* Erase the retired SPKs retired at least keep seconds before now.
 * Returns how many went. */
int ratchet_store_spk_expire(RatchetStore *st, uint64_t now, uint64_t keep);
/* Retired SPKs still kept. */
int ratchet_store_spk_retired_count(RatchetStore *st);

/* One-time prekeys. */
int ratchet_store_opk_add(RatchetStore *st, const OneTimePrekey *opk,
                          const uint8_t priv[X25519_KEY_LEN]);
int ratchet_store_opk_private(RatchetStore *st, uint32_t id, uint8_t ret[X25519_KEY_LEN]);
int ratchet_store_opk_erase(RatchetStore *st, uint32_t id);
/* How many private OPKs are kept (published or not). */
int ratchet_store_opk_count(RatchetStore *st);

/* Whether peer's lookup ever carried prekeys: 1 yes, 0 no. */
int ratchet_store_peer_had_prekeys(RatchetStore *st, const char *peer);
int ratchet_store_peer_saw_prekeys(RatchetStore *st, const char *peer, uint64_t now);

/* Opened, not yet shown. get: 0 and the text (NUL-terminated, wipe it
 * with secure_free(text, len + 1)), -ENOENT when none, -EEXIST when one
 * is kept for (from, id) with another digest (not this message). */
int ratchet_store_pending_put(RatchetStore *st, const char *from, const uint8_t id[MSG_ID_LEN],
                              const uint8_t digest[ENVELOPE_DIGEST_LEN], const char *text,
                              size_t len);
int ratchet_store_pending_get(RatchetStore *st, const char *from, const uint8_t id[MSG_ID_LEN],
                              const uint8_t digest[ENVELOPE_DIGEST_LEN], char **ret_text,
                              size_t *ret_len);
int ratchet_store_pending_erase(RatchetStore *st, const char *from, const uint8_t id[MSG_ID_LEN]);
