/* SPDX-License-Identifier: MIT */
/*
 * The ids of the messages a user was shown, for the replay check of an
 * envelope: HOME/seen/USER.db, an SQLite table keyed by (sender, id) with
 * the envelope's time and a digest of its content.
 *
 * It is bounded by time and by size, and pruning never needs more than the
 * database itself: an entry whose envelope is older than the replay window
 * goes (such an envelope is refused as expired before it is looked up), and
 * when more than SEEN_MAX entries are left the oldest go too, raising a
 * floor under which every envelope counts as expired: a sender who floods
 * us can make us refuse old messages, never show one twice.
 *
 * Several scctl processes of one user may share it: SQLite serialises
 * them, and every change happens under the state directory's lock too.
 * A seen/USER file of earlier versions is imported once and removed.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "protocol.h"
#include "state.h"

/* At some 100 bytes an entry, about 25 MiB. */
#define SEEN_MAX 262144u

typedef struct SeenStore SeenStore;

/* Open (creating) the store and prune it for window (seconds) at now. */
int seen_open(ClientState *s, const char *user, uint64_t window, uint64_t now, SeenStore **ret);
/* The same with another size bound (tests). */
int seen_open_max(ClientState *s, const char *user, uint64_t window, uint64_t now, uint64_t max,
                  SeenStore **ret);
SeenStore *seen_free(SeenStore *st);
static inline void seen_freep(SeenStore **st) { seen_free(*st); }

/* An EnvelopeSeen (envelope.h) for (from, id) of an envelope dated ts with
 * content digest, or <0 on error. */
int seen_check(SeenStore *st, const char *from, const uint8_t id[MSG_ID_LEN], uint64_t ts,
               const uint8_t digest[ENVELOPE_DIGEST_LEN]);
/* Record (from, id) durably. */
int seen_add(SeenStore *st, const char *from, const uint8_t id[MSG_ID_LEN], uint64_t ts,
             const uint8_t digest[ENVELOPE_DIGEST_LEN]);
size_t seen_count(SeenStore *st);
