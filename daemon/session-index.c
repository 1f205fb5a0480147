/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/linkhash.h>

#include "macro.h"
#include "session-index.h"
#include "session.h"

/* The lists are doubly linked through their own pair of fields of
 * Session. Removing leaves item's next pointer as it was: see the header. */
#define LIST_PREPEND(head, item, next, prev)            \
        do {                                            \
                (item)->prev = NULL;                    \
                (item)->next = (head);                  \
                if (head)                               \
                        (head)->prev = (item);          \
                (head) = (item);                        \
        } while (0)

#define LIST_APPEND(head, tail, item, next, prev)       \
        do {                                            \
                (item)->next = NULL;                    \
                (item)->prev = (tail);                  \
                if (tail)                               \
                        (tail)->next = (item);          \
                else                                    \
                        (head) = (item);                \
                (tail) = (item);                        \
        } while (0)

#define LIST_REMOVE(head, item, next, prev)             \
        do {                                            \
                if ((item)->prev)                       \
                        (item)->prev->next = (item)->next; \
                else                                    \
                        (head) = (item)->next;          \
                if ((item)->next)                       \
                        (item)->next->prev = (item)->prev; \
                (item)->prev = NULL;                    \
        } while (0)

/* The value of a user in by_user; it owns its key. */
typedef struct UserSessions {
        Session *head;
        unsigned n;
        char user[];
} UserSessions;

/* The value of a user in watched: its watchers; it owns its key. */
typedef struct Watchers {
        Watch *head;
        char user[];
} Watchers;

static void user_sessions_free(struct lh_entry *e) {
        free(lh_entry_v(e));
}

static void watches_free(Session *s) {
        while (s->watches) {
                Watch *w = s->watches;

                s->watches = w->session_next;
                free(w);
        }
        s->n_watches = 0;
}

#define BY_USER_MIN_SIZE 64

int session_index_init(SessionIndex *x) {
        *x = (SessionIndex) { .by_user_size = BY_USER_MIN_SIZE, .watched_size = BY_USER_MIN_SIZE };
        x->by_user = lh_kchar_table_new(BY_USER_MIN_SIZE, user_sessions_free);
        x->watched = lh_kchar_table_new(BY_USER_MIN_SIZE, user_sessions_free);
        return x->by_user && x->watched ? 0 : -ENOMEM;
}

void session_index_clear(SessionIndex *x) {
        while (x->all) {
                Session *s = x->all;

                x->all = s->next;
                session_index_deactivate(x, s);
                x->memory -= MIN(x->memory, s->memory);
                watches_free(s);
                session_free(s);
        }
        x->n_sessions = x->n_dead = 0;
}

void session_index_done(SessionIndex *x) {
        session_index_clear(x);
        if (x->by_user)
                lh_table_free(x->by_user);
        if (x->watched)
                lh_table_free(x->watched);
        *x = (SessionIndex) {};
}

void session_index_add(SessionIndex *x, Session *s) {
        LIST_PREPEND(x->all, s, next, prev);
        x->n_sessions++;
}

/* json-c marks a deleted slot instead of emptying it, and looking up a name
 * that is not there (every login, every message to someone offline) probes
 * on up to an empty slot: after weeks of users coming and going none would
 * be left, and every miss would scan the whole table. Rebuilt, which drops
 * the marks, after size/8 deletions (json-c grows it, and drops them too,
 * once it is 2/3 full), a fifth of it at least stays empty, for a cost
 * spread over those deletions. */
static void table_deleted(struct lh_table *t, size_t *table_size, size_t *deleted) {
        int size = MAX(4 * lh_table_length(t), BY_USER_MIN_SIZE);

        if (++*deleted < *table_size / 8)
                return;
        if (lh_table_resize(t, size) < 0)
                return;         /* out of memory: the next deletion tries again */
        *table_size = (size_t) size;
        *deleted = 0;
}

static void user_deleted(SessionIndex *x) {
        table_deleted(x->by_user, &x->by_user_size, &x->by_user_deleted);
}

static UserSessions *user_lookup(SessionIndex *x, const char *user) {
        void *v = NULL;

        return lh_table_lookup_ex(x->by_user, user, &v) ? v : NULL;
}

int session_index_activate(SessionIndex *x, Session *s) {
        UserSessions *u = user_lookup(x, s->user);

        if (s->indexed)
                return 0;
        if (!u) {
                size_t len = strlen(s->user);

                u = calloc(1, sizeof(*u) + len + 1);
                if (!u)
                        return -ENOMEM;
                memcpy(u->user, s->user, len + 1);
                if (lh_table_insert(x->by_user, u->user, u) < 0) {
                        free(u);
                        return -ENOMEM;
                }
        }
        LIST_PREPEND(u->head, s, user_next, user_prev);
        u->n++;

        /* Appended: the list stays in order of activation, which is the
         * order the presence list is sent in. */
        if (s->receive) {
                LIST_APPEND(x->receivers, x->receivers_tail, s, receiver_next, receiver_prev);
                x->n_receiving++;
                x->n_receiving_v1 += s->proto < 2;
        }
        s->indexed = true;
        s->activation = ++x->activations;
        x->n_active++;
        return 0;
}

static Watchers *watchers_lookup(SessionIndex *x, const char *user) {
        void *v = NULL;

        return lh_table_lookup_ex(x->watched, user, &v) ? v : NULL;
}

/* Out of its user's list; w->user_next stays (see the header). */
static void watch_unlink(SessionIndex *x, Watch *w) {
        Watchers *t = w->target;

        if (!t)
                return;
        LIST_REMOVE(t->head, w, user_next, user_prev);
        w->target = NULL;
        if (!t->head && lh_table_delete(x->watched, t->user) >= 0)
                table_deleted(x->watched, &x->watched_size, &x->watched_deleted);
}

int session_index_watch(SessionIndex *x, Session *s, const char *user) {
        Watchers *t = watchers_lookup(x, user);
        Watch *w;

        /* A closing session's watches were unlinked once and for all. */
        if (!s->indexed)
                return 0;
        /* The user's watchers, not the session's watches: the first are
         * few for most users, the second up to max-watches. */
        for (w = t ? t->head : NULL; w; w = w->user_next)
                if (w->session == s)
                        return 0;
        if (!t) {
                size_t len = strlen(user);

                t = calloc(1, sizeof(*t) + len + 1);
                if (!t)
                        return -ENOMEM;
                memcpy(t->user, user, len + 1);
                if (lh_table_insert(x->watched, t->user, t) < 0) {
                        free(t);
                        return -ENOMEM;
                }
        }
        w = calloc(1, sizeof(*w));
        if (!w) {
                if (!t->head && lh_table_delete(x->watched, t->user) >= 0)
                        table_deleted(x->watched, &x->watched_size, &x->watched_deleted);
                return -ENOMEM;
        }
        w->session = s;
        w->target = t;
        LIST_PREPEND(t->head, w, user_next, user_prev);
        LIST_PREPEND(s->watches, w, session_next, session_prev);
        s->n_watches++;
        return 1;
}

void session_index_unwatch(SessionIndex *x, Session *s, const char *user) {
        Watchers *t = watchers_lookup(x, user);

        for (Watch *w = t ? t->head : NULL; w; w = w->user_next)
                if (w->session == s) {
                        watch_unlink(x, w);
                        LIST_REMOVE(s->watches, w, session_next, session_prev);
                        s->n_watches--;
                        free(w);
                        return;
                }
}

Watch *session_index_watchers(SessionIndex *x, const char *user) {
        Watchers *t = watchers_lookup(x, user);

        return t ? t->head : NULL;
}

void session_index_deactivate(SessionIndex *x, Session *s) {
        UserSessions *u;

        if (!s->indexed)
                return;
        /* Its watches stay allocated until it is freed: a walk of a
         * user's watchers may stand on one. */
        for (Watch *w = s->watches; w; w = w->session_next)
                watch_unlink(x, w);
        u = user_lookup(x, s->user);
        if (u) {
                LIST_REMOVE(u->head, s, user_next, user_prev);
                if (--u->n == 0 && lh_table_delete(x->by_user, s->user) >= 0)
                        user_deleted(x);
        }

        if (s->receive) {
                if (x->receivers_tail == s)
                        x->receivers_tail = s->receiver_prev;
                LIST_REMOVE(x->receivers, s, receiver_next, receiver_prev);
                x->n_receiving--;
                x->n_receiving_v1 -= s->proto < 2;
        }
        s->indexed = false;
        x->n_active--;
}

void session_index_bury(SessionIndex *x, Session *s) {
        session_index_deactivate(x, s);
        x->n_sessions--;
        x->n_dead++;
}

void session_index_free_dead(SessionIndex *x) {
        for (Session *s = x->all, *next; s && x->n_dead > 0; s = next) {
                next = s->next;
                if (!session_is_dead(s))
                        continue;
                LIST_REMOVE(x->all, s, next, prev);
                x->memory -= MIN(x->memory, s->memory);
                watches_free(s);
                session_free(s);
                x->n_dead--;
        }
}

void session_index_memory(SessionIndex *x, size_t old, size_t new) {
        x->memory = x->memory - old + new;
}

Session *session_index_first(SessionIndex *x, const char *user) {
        UserSessions *u = user_lookup(x, user);

        return u ? u->head : NULL;
}

Session *session_index_find_receiver(SessionIndex *x, const char *user) {
        for (Session *s = session_index_first(x, user); s; s = s->user_next)
                if (s->receive)
                        return s;
        return NULL;
}

unsigned session_index_count(SessionIndex *x, const char *user) {
        UserSessions *u = user_lookup(x, user);

        return u ? u->n : 0;
}
