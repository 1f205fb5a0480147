/* SPDX-License-Identifier: MIT */
/*
 * Suite-2 envelopes in and out of the ratchet store: suite2.h does the
 * cryptography, ratchet-store.h keeps the state, this module runs the
 * steps of securechat-protocol(7) "SUITE 2" between them, so that a state
 * is committed before the envelope it made leaves or the text it opened is
 * shown. A receiver may open a burst of messages in one transaction
 * (suite2_io_open_in()), and a sender seal one (suite2_io_seal_in()): one
 * commit, and one checkpoint of the store's log, for all of them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "ratchet-store.h"
#include "rsa.h"
#include "seen.h"
#include "suite2.h"

/* Whether a session with peer, made with the key of that fingerprint, is
 * stored: 1 yes, 0 no, or -errno. */
int suite2_io_has_session(RatchetStore *st, const char *peer, const char *peer_key);

/* The suite a message to peer (whose key has the fingerprint peer_key)
 * goes in, as far as is known without looking peer up and so using up one
 * of their one-time prekeys: 2 with a session kept or when their lookup
 * gave prekeys before, else 1; or -errno. Whether the relay carries suite
 * 2 is the caller's to know. */
int suite2_io_known_suite(RatchetStore *st, const char *peer, const char *peer_key);

/* Seal text from me to peer in the stored session, or (when none is stored
 * and bundle is given) in a new one started from bundle, whose SPK is
 * verified under peer_key (-EBADMSG when it does not). -ENOENT when there
 * is neither. */
int suite2_io_seal(RatchetStore *st, const char *me, const RsaKey *identity, const char *peer,
                   const RsaKey *peer_key, const PrekeyBundle *bundle, uint64_t now,
                   const char *text, size_t len, Envelope **ret);
/* The same inside a transaction the caller began (ratchet_store_begin()),
 * so that a burst of messages costs one commit. The advanced state is only
 * written: no envelope sealed in the transaction may leave before the
 * caller committed it, or its message key could be used again after a
 * rollback or a crash. After an error the caller rolls back. */
int suite2_io_seal_in(RatchetStore *st, const char *me, const RsaKey *identity, const char *peer,
                      const RsaKey *peer_key, const PrekeyBundle *bundle, uint64_t now,
                      const char *text, size_t len, Envelope **ret);

typedef struct Suite2Opened {
        char *text;             /* NUL-terminated; wipe with secure_free(text, len + 1) */
        size_t len;
        bool used_opk;          /* the message started a session with one of our OPKs */
        bool from_pending;      /* opened before, never shown (a crash in between) */
} Suite2Opened;

/* Open e (suite 2, to me) from the sender whose pinned key is sender_key,
 * in the order of the page: signature, time (now, window), the (from, id)
 * store seen, header, then the ratchet (a session start without a
 * matching session is accepted with our prekeys), and a text of at most
 * max_text bytes (0: no limit). On success the new state and the text (in
 * the store's pending table, until suite2_io_forget()) are committed, and
 * 0 is returned. On refusal -EBADMSG with *ret_error; ENVELOPE_DUPLICATE
 * means shown already (and a text of it still kept, after a crash, is
 * erased). */
int suite2_io_open(RatchetStore *st, SeenStore *seen, const char *me, const RsaKey *identity,
                   const RsaKey *sender_key, const Envelope *e, uint64_t now, uint64_t window,
                   size_t max_text, Suite2Opened *ret, const char **ret_error);
/* The same inside a transaction the caller began (ratchet_store_begin())
 * and commits, so that a burst of messages costs one commit. seen answers
 * the (from, id) check, so that the caller can count the messages of its
 * burst that are not recorded yet. A refusal (-EBADMSG) wrote nothing but
 * that erasure: the caller may go on in the same transaction. After any
 * other error the caller rolls back. */
int suite2_io_open_in(RatchetStore *st, envelope_seen_fn seen, void *userdata, const char *me,
                      const RsaKey *identity, const RsaKey *sender_key, const Envelope *e, uint64_t now,
                      uint64_t window, size_t max_text, Suite2Opened *ret, const char **ret_error);
/* Once the texts of the n opened messages e were shown and recorded as
 * seen: erase them from the store, in one transaction. */
int suite2_io_forget(RatchetStore *st, const Envelope *const *e, size_t n);
/* After the text was shown: record e in seen, then forget its text. */
int suite2_io_shown(RatchetStore *st, SeenStore *seen, const Envelope *e);
