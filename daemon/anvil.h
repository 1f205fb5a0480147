/* SPDX-License-Identifier: MIT */
/*
 * What the relay remembers about each source address and each user for its
 * rate and concurrency limits, in the spirit of Postfix's anvil(8): a hash
 * table of small entries keyed by address (IPv4 address, IPv6 /64) or user
 * name, each with a count of the connections (or sessions) holding it and
 * the state of its token buckets.
 *
 * Token buckets are kept as GCRA ("virtual scheduling"): one theoretical
 * arrival time per bucket, so an entry whose times have passed holds no
 * information and may be forgotten. Entries nobody holds wait on an idle
 * list, oldest first; they are freed once their buckets are full again, or,
 * when more than ANVIL_IDLE_MAX wait, the oldest is forgotten early (its
 * rate history starts again from a full bucket). Entries that are held are
 * bounded by the connections themselves, so the table's memory is bounded
 * by (connections + sessions + ANVIL_IDLE_MAX) entries of some 150 bytes.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util.h"

/* Idle entries kept at most (see above): some 2.5 MiB. */
#define ANVIL_IDLE_MAX 16384u
/* Refusals of one entry are logged at most once per this interval; the
 * next message says how many were not logged. */
#define ANVIL_LOG_INTERVAL_USEC (10 * UINT64_C(1000000))

typedef enum AnvilKind {
        ANVIL_ADDRESS,
        ANVIL_USER,
} AnvilKind;

typedef enum AnvilBucket {
        ANVIL_BUCKET_CONNECT = 0,       /* ANVIL_ADDRESS: new connections */
        ANVIL_BUCKET_REGISTER = 1,      /* ANVIL_ADDRESS: registrations */
        ANVIL_BUCKET_MESSAGE = 0,       /* ANVIL_USER: sends */
        _ANVIL_BUCKET_MAX = 2,
} AnvilBucket;

#define ANVIL_KEY_MAX (1 + USERNAME_MAX)

typedef struct AnvilEntry AnvilEntry;
struct AnvilEntry {
        AnvilEntry *hash_next;
        AnvilEntry *idle_prev, *idle_next;      /* on the idle list while refs == 0 */
        uint8_t key[ANVIL_KEY_MAX];
        uint8_t key_len;
        unsigned refs;                          /* connections (address), sessions (user) */
        unsigned preauth;                       /* of those, not authenticated yet */
        uint64_t tat[_ANVIL_BUCKET_MAX];        /* GCRA theoretical arrival times */
        uint64_t log_usec;                      /* last refusal logged */
        uint64_t suppressed;                    /* refusals not logged since */
};

typedef struct Anvil Anvil;

int anvil_new(Anvil **ret);
Anvil *anvil_free(Anvil *a);
static inline void anvil_freep(Anvil **a) { anvil_free(*a); }

/* The entry of an address (sa: AF_INET or AF_INET6; IPv4-mapped IPv6 counts
 * as IPv4, IPv6 is cut to its /64) or of a user, created unheld when new.
 * It stays valid until the next anvil_get() or anvil_sweep() unless it is
 * held (anvil_ref()). NULL only when out of memory or for an unknown
 * address family. */
AnvilEntry *anvil_get_address(Anvil *a, const struct sockaddr *sa, uint64_t now);
AnvilEntry *anvil_get_user(Anvil *a, const char *user, uint64_t now);

void anvil_ref(Anvil *a, AnvilEntry *e);
void anvil_unref(Anvil *a, AnvilEntry *e, uint64_t now);

/* Free idle entries whose buckets are full again. */
void anvil_sweep(Anvil *a, uint64_t now);

size_t anvil_size(const Anvil *a);

/* Take one token of a bucket with a token every interval_usec and room for
 * burst (interval 0: no limit). Returns 0 when taken, else how long until
 * one would be there (>= 1 usec); a refusal takes nothing. */
uint64_t anvil_take(AnvilEntry *e, AnvilBucket b, uint64_t interval_usec, uint64_t burst, uint64_t now);

/* Whether to log a refusal of this entry now; when true, *ret_suppressed
 * holds how many refusals since the last logged one were not. */
bool anvil_log_allowed(AnvilEntry *e, uint64_t now, uint64_t *ret_suppressed);

/* Whole seconds to announce as retry_after for a wait (at least 1). */
uint64_t anvil_retry_after_sec(uint64_t wait_usec);
