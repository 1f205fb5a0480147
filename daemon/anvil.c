/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "anvil.h"
#include "macro.h"

#define ANVIL_BUCKETS_MIN 256u

struct Anvil {
        AnvilEntry **buckets;
        size_t n_buckets;               /* a power of two */
        size_t n_entries;
        AnvilEntry *idle_head, *idle_tail;
        size_t n_idle;
        uint64_t seed;                  /* keys the hash, against chosen collisions */
};

int anvil_new(Anvil **ret) {
        _cleanup_(anvil_freep) Anvil *a = NULL;
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->n_buckets = ANVIL_BUCKETS_MIN;
        a->buckets = calloc(a->n_buckets, sizeof(*a->buckets));
        if (!a->buckets)
                return -ENOMEM;
        r = random_bytes(&a->seed, sizeof(a->seed));
        if (r < 0)
                return r;
        *ret = TAKE_PTR(a);
        return 0;
}

Anvil *anvil_free(Anvil *a) {
        if (!a)
                return NULL;
        for (size_t i = 0; i < a->n_buckets; i++)
                while (a->buckets[i]) {
                        AnvilEntry *e = a->buckets[i];
                        a->buckets[i] = e->hash_next;
                        free(e);
                }
        free(a->buckets);
        free(a);
        return NULL;
}

size_t anvil_size(const Anvil *a) {
        return a->n_entries;
}

/* Keys are short (17 or 33 bytes) and the seed is secret: a peer choosing
 * addresses cannot aim at one bucket without seeing the table. */
static uint64_t hash_key(const Anvil *a, const uint8_t *key, size_t len) {
        return hash_seeded(a->seed, key, len);
}

static void idle_unlink(Anvil *a, AnvilEntry *e) {
        if (e->idle_prev)
                e->idle_prev->idle_next = e->idle_next;
        else
                a->idle_head = e->idle_next;
        if (e->idle_next)
                e->idle_next->idle_prev = e->idle_prev;
        else
                a->idle_tail = e->idle_prev;
        e->idle_prev = e->idle_next = NULL;
        a->n_idle--;
}

static void idle_append(Anvil *a, AnvilEntry *e) {
        e->idle_next = NULL;
        e->idle_prev = a->idle_tail;
        if (a->idle_tail)
                a->idle_tail->idle_next = e;
        else
                a->idle_head = e;
        a->idle_tail = e;
        a->n_idle++;
}

static void entry_remove(Anvil *a, AnvilEntry *e) {
        AnvilEntry **p = &a->buckets[hash_key(a, e->key, e->key_len) & (a->n_buckets - 1)];

        while (*p && *p != e)
                p = &(*p)->hash_next;
        if (*p)
                *p = e->hash_next;
        idle_unlink(a, e);
        a->n_entries--;
        free(e);
}

static bool entry_expired(const AnvilEntry *e, uint64_t now) {
        for (size_t i = 0; i < _ANVIL_BUCKET_MAX; i++)
                if (e->tat[i] > now)
                        return false;
        return true;
}

void anvil_sweep(Anvil *a, uint64_t now) {
        /* Oldest first: an entry's buckets refill within a fixed time of
         * its release, so the expired ones are at the head. One still full
         * of state stops the sweep; the next one goes on. */
        while (a->idle_head && entry_expired(a->idle_head, now))
                entry_remove(a, a->idle_head);
        while (a->n_idle > ANVIL_IDLE_MAX)
                entry_remove(a, a->idle_head);
}

/* Double the bucket array when entries outnumber buckets: chains stay
 * short, and the cost of moving every entry is paid once per doubling. */
static void maybe_grow(Anvil *a) {
        AnvilEntry **nb;
        size_t n;

        if (a->n_entries <= a->n_buckets || a->n_buckets > SIZE_MAX / 2 / sizeof(*nb))
                return;
        n = a->n_buckets * 2;
        nb = calloc(n, sizeof(*nb));
        if (!nb)
                return;         /* longer chains, still correct */
        for (size_t i = 0; i < a->n_buckets; i++)
                while (a->buckets[i]) {
                        AnvilEntry *e = a->buckets[i];
                        size_t j = hash_key(a, e->key, e->key_len) & (n - 1);

                        a->buckets[i] = e->hash_next;
                        e->hash_next = nb[j];
                        nb[j] = e;
                }
        free(a->buckets);
        a->buckets = nb;
        a->n_buckets = n;
}

static AnvilEntry *anvil_get(Anvil *a, const uint8_t *key, size_t len, uint64_t now) {
        AnvilEntry *e;
        size_t i;

        anvil_sweep(a, now);
        i = hash_key(a, key, len) & (a->n_buckets - 1);
        for (e = a->buckets[i]; e; e = e->hash_next)
                if (e->key_len == len && memcmp(e->key, key, len) == 0)
                        return e;

        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        memcpy(e->key, key, len);
        e->key_len = (uint8_t) len;
        e->hash_next = a->buckets[i];
        a->buckets[i] = e;
        a->n_entries++;
        idle_append(a, e);
        maybe_grow(a);
        return e;
}

AnvilEntry *anvil_get_address(Anvil *a, const struct sockaddr *sa, uint64_t now) {
        static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        uint8_t key[1 + 16] = { ANVIL_ADDRESS };

        if (sa->sa_family == AF_INET) {
                memcpy(key + 1, v4mapped, sizeof(v4mapped));
                memcpy(key + 1 + 12, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        } else if (sa->sa_family == AF_INET6) {
                const uint8_t *b = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;

                memcpy(key + 1, b, 16);
                /* One IPv6 host usually has a whole /64; an IPv4 host (also
                 * as ::ffff:a.b.c.d) one address. */
                if (memcmp(b, v4mapped, sizeof(v4mapped)) != 0)
                        memset(key + 1 + 8, 0, 8);
        } else
                return NULL;
        return anvil_get(a, key, sizeof(key), now);
}

AnvilEntry *anvil_get_user(Anvil *a, const char *user, uint64_t now) {
        uint8_t key[ANVIL_KEY_MAX] = { ANVIL_USER };
        size_t n = strnlen(user, USERNAME_MAX);

        memcpy(key + 1, user, n);
        return anvil_get(a, key, 1 + n, now);
}

void anvil_ref(Anvil *a, AnvilEntry *e) {
        if (e->refs++ == 0)
                idle_unlink(a, e);
}

void anvil_unref(Anvil *a, AnvilEntry *e, uint64_t now) {
        if (e->refs == 0 || --e->refs > 0)
                return;
        idle_append(a, e);
        anvil_sweep(a, now);
}

uint64_t anvil_take(AnvilEntry *e, AnvilBucket b, uint64_t interval_usec, uint64_t burst, uint64_t now) {
        uint64_t tat, next, tolerance;

        if (interval_usec == 0)
                return 0;
        /* A bucket of burst tokens is the same as allowing the theoretical
         * arrival time to run up to burst intervals ahead of now. */
        tolerance = burst > UINT64_MAX / interval_usec ? UINT64_MAX : burst * interval_usec;
        tat = MAX(e->tat[b], now);
        next = tat > UINT64_MAX - interval_usec ? UINT64_MAX : tat + interval_usec;
        if (next - now > tolerance)
                return MAX(next - now - tolerance, (uint64_t) 1);
        e->tat[b] = next;
        return 0;
}

bool anvil_log_allowed(AnvilEntry *e, uint64_t now, uint64_t *ret_suppressed) {
        if (e->log_usec != 0 && now < e->log_usec + ANVIL_LOG_INTERVAL_USEC) {
                e->suppressed++;
                return false;
        }
        *ret_suppressed = e->suppressed;
        e->suppressed = 0;
        e->log_usec = MAX(now, (uint64_t) 1);
        return true;
}

uint64_t anvil_retry_after_sec(uint64_t wait_usec) {
        return MAX((wait_usec + 999999) / 1000000, (uint64_t) 1);
}
