/* SPDX-License-Identifier: MIT */
/*
 * Every session of the relay, the active ones indexed by user, and the
 * counters that follow from them. The hot paths ask by user (the receiving
 * session of the recipient, how many sessions a user has, the sessions a
 * receipt goes to) and get an answer in the time of that user's sessions,
 * not of everyone's. The manager owns the one index; every count of
 * sessions changes here and nowhere else.
 *
 * A session enters with session_index_add() when it connects, becomes
 * findable by user with session_index_activate() when it authenticates,
 * leaves the user index with session_index_deactivate() when it starts to
 * close, and is counted dead with session_index_bury(): it stays in the
 * list until session_index_free_dead() after the loop iteration, so that
 * code walking a list never loses its place.
 *
 * A session that leaves the user index or the receivers keeps its next
 * pointer (user_next, receiver_next): a walk that closes sessions along
 * the way (a send over a session's memory limit closes it) goes on past
 * them. Such walks skip the sessions that are no longer indexed.
 *
 * Watches (protocol version 2): a session follows the presence of the
 * users it watches, and a user's watchers are found through the user, so
 * that a login costs the relay the user's watchers, not everyone online.
 * A session's watches leave the watchers' lists when it is deactivated, the
 * same way (their user_next kept), and are freed with the session.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"

/* One session watching one user. */
struct Watch {
        Session *session;
        struct Watchers *target;        /* NULL once unlinked */
        Watch *session_next, *session_prev;     /* session->watches */
        Watch *user_next, *user_prev;           /* the watchers of one user */
};

typedef struct SessionIndex {
        /* Read-only outside session-index.c. */
        Session *all;                   /* every session, newest first */
        Session *receivers;             /* active receiving sessions, in order of activation */
        Session *receivers_tail;
        struct lh_table *by_user;       /* user name -> UserSessions */
        size_t by_user_size;            /* as last set here (json-c may have grown it) */
        size_t by_user_deleted;         /* deletions since then */
        struct lh_table *watched;       /* user name -> Watchers */
        size_t watched_size, watched_deleted;
        size_t n_sessions;              /* live connections in any state */
        size_t n_dead;                  /* closed, waiting to be freed */
        size_t n_active;                /* authenticated */
        size_t n_receiving;             /* active receiving sessions = users online */
        size_t n_receiving_v1;          /* of those, of protocol version 1 */
        uint64_t memory;                /* session_memory() of every session */
        uint64_t activations;           /* sessions that became active, ever */
} SessionIndex;

int session_index_init(SessionIndex *x);
/* Frees every session, whatever its state (at shutdown). */
void session_index_clear(SessionIndex *x);
/* Clears it, and frees the index itself. */
void session_index_done(SessionIndex *x);

void session_index_add(SessionIndex *x, Session *s);
/* s authenticated as s->user (receiving or not): it gets the next
 * activation number and is found by user from now on. -ENOMEM leaves it
 * as it was. */
int session_index_activate(SessionIndex *x, Session *s);
/* s stops being found by user (it is closing). No-op if it was not active. */
void session_index_deactivate(SessionIndex *x, Session *s);
/* s is dead: freed by the next session_index_free_dead(). */
void session_index_bury(SessionIndex *x, Session *s);
void session_index_free_dead(SessionIndex *x);
/* One session's buffers went from old to new bytes. */
void session_index_memory(SessionIndex *x, size_t old, size_t new);

/* The first active session of user (the others follow in s->user_next),
 * or NULL. */
Session *session_index_first(SessionIndex *x, const char *user);
/* The user's active receiving session, or NULL (there is at most one). */
Session *session_index_find_receiver(SessionIndex *x, const char *user);
/* How many active sessions user has. */
unsigned session_index_count(SessionIndex *x, const char *user);

/* The active session s watches user: 1, or 0 if it did already (or is
 * no longer active); -ENOMEM. */
int session_index_watch(SessionIndex *x, Session *s, const char *user);
/* s stops watching user (no-op if it did not). */
void session_index_unwatch(SessionIndex *x, Session *s, const char *user);
/* The first session watching user (the others follow in user_next), or
 * NULL. A walk skips those whose session is no longer indexed. */
Watch *session_index_watchers(SessionIndex *x, const char *user);
