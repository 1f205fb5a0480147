/* SPDX-License-Identifier: MIT */
/*
 * What a storage backend gives store.c, the dispatcher: one const table of
 * operations, with the meaning store.h documents for each. Private to
 * daemon/store*.c and the SQLite store's threads (wal-checkpointer.c);
 * the rest of the daemon sees store.h only.
 *
 * A backend's handle starts with a Store (the table), so that store.c
 * finds the table and the backend finds its own struct with
 * container_of().
 */
#pragma once

#include <pthread.h>
#include <stddef.h>

#include "store.h"

#define container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))

typedef struct StoreOps {
        const char *name;                       /* "sqlite", "postgresql" */

        void (*free)(Store *s);
        const char *(*error)(Store *s);

        int (*begin)(Store *s);
        int (*begin_nosync)(Store *s);
        int (*commit)(Store *s);
        void (*rollback)(Store *s);
        bool (*in_transaction)(Store *s);
        int (*checkpoint)(Store *s);
        /* NULL: nothing to do with an event loop given after the open. */
        int (*set_event)(Store *s, sd_event *event);
        /* NULL: no asynchronous batches (store.h). */
        bool (*batch_async)(Store *s);
        int (*batch_send)(Store *s, StoreWrite *const *writes, size_t n, store_batch_fn done, void *userdata);
        bool (*batch_busy)(Store *s);
        /* NULL: batches are not queued (store_batch_queue()). */
        int (*batch_queue)(Store *s, StoreWrite *const *writes, size_t n, store_batch_fn done, void *userdata);
        int (*batch_unqueue)(Store *s);
        void (*batch_wait)(Store *s);
        int (*queue_list_async)(Store *s, const char *recipient, uint64_t after, size_t max, store_list_fn done,
                                void *userdata);

        int (*user_get)(Store *s, const char *user, KeyPackage **ret);
        int (*user_exists)(Store *s, const char *user);
        int (*user_add)(Store *s, const KeyPackage *kp);
        int (*user_delete)(Store *s, const char *user);
        int (*user_rotate)(Store *s, const KeyPackage *kp, const Rotation *rot);
        int (*user_count)(Store *s, uint64_t *ret);
        int (*user_foreach)(Store *s, store_user_fn fn, void *userdata);

        int (*reset_set)(Store *s, const char *user, const uint8_t hash[STORE_CODE_HASH_LEN], uint64_t expires);
        int (*reset_get)(Store *s, const char *user, uint8_t ret_hash[STORE_CODE_HASH_LEN], uint64_t *ret_expires);
        int (*reset_delete)(Store *s, const char *user);

        int (*queue_add)(Store *s, StoreMessage *m);
        int (*queue_find)(Store *s, const char *sender, const char *msg_id, const char *envelope,
                          uint64_t *ret_seq);
        int (*queue_counts)(Store *s, const char *recipient, const char *sender, uint64_t *ret_all,
                            uint64_t *ret_from);
        int (*queue_drop)(Store *s, const char *recipient, uint64_t *ret_n);
        int (*queue_totals)(Store *s, uint64_t *ret_n, uint64_t *ret_bytes);
        int (*queue_max_size)(Store *s, uint64_t *ret);
        int (*queue_last_seq)(Store *s, const char *recipient, uint64_t *ret);
        int (*queue_list)(Store *s, const char *recipient, uint64_t after, size_t max, StoreMessage **ret,
                          size_t *ret_n);
        int (*queue_take)(Store *s, const char *recipient, uint64_t seq, StoreMessage *ret);
        int (*queue_expire)(Store *s, uint64_t now, size_t max, store_message_fn fn, void *userdata);

        int (*prekeys_publish)(Store *s, const char *user, const SignedPrekey *spk, const OneTimePrekey *opks,
                               size_t n, uint64_t max, uint64_t *ret_count);
        int (*prekeys_count)(Store *s, const char *user, uint64_t *ret);
        int (*prekeys_take)(Store *s, const char *user, bool take_opk, PrekeyBundle *ret);
        int (*prekeys_drop)(Store *s, const char *user);
} StoreOps;

struct Store {
        const StoreOps *ops;
};

/* A thread of the store's (the SQLite checkpointer, the writer), which
 * takes no signal: the daemon's are for its event loop. */
int store_thread_create(pthread_t *ret, void *(*fn)(void *), void *arg);

/* A page of the queue asked for without waiting
 * (store_queue_list_async()): the question, then the answer. */
typedef struct StoreListRequest {
        char recipient[USERNAME_MAX + 1];
        uint64_t after;
        size_t max;
        store_list_fn done;
        void *userdata;
        StoreMessage *messages;
        size_t n_messages;
} StoreListRequest;

void store_list_request_init(StoreListRequest *q, const char *recipient, uint64_t after, size_t max,
                             store_list_fn done, void *userdata);

/* Are the n writes of a batch all takes (deletes that need no sync)? */
bool store_writes_takes_only(StoreWrite *const *writes, size_t n);

int store_sqlite_open(const char *path, Store **ret);
int store_pg_open(const char *uri, const StoreOptions *o, Store **ret);

/* kp's rotations from the n (at most ROTATION_CHAIN_MAX) statements' JSON
 * texts of lens[i] bytes, newest first as the backends read them. A
 * statement that no longer parses is a damaged database: -EBADMSG. */
int store_package_set_rotations(KeyPackage *kp, const char *const *texts, const size_t *lens, size_t n);
