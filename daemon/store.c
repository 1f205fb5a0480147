/* SPDX-License-Identifier: MIT */
/*
 * The store's one interface (store.h) over its backends: each call goes
 * to the table of the backend that opened the store. What is the same for
 * every backend (freeing messages, the count of one queue) is here.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "rotation.h"
#include "store-backend.h"

int store_open(const char *path, Store **ret) {
        return store_sqlite_open(path, ret);
}

int store_open_postgresql(const char *uri, const StoreOptions *o, Store **ret) {
        return store_pg_open(uri, o, ret);
}

bool store_is_postgresql(const char *where) {
        return where && (strncmp(where, "postgresql://", 13) == 0 || strncmp(where, "postgres://", 11) == 0);
}

Store *store_free(Store *s) {
        if (s)
                s->ops->free(s);
        return NULL;
}

const char *store_error(Store *s) {
        return s ? s->ops->error(s) : "out of memory";
}

const char *store_backend(Store *s) {
        return s->ops->name;
}

int store_package_set_rotations(KeyPackage *kp, const char *const *texts, const size_t *lens, size_t n) {
        Rotation *chain[ROTATION_CHAIN_MAX] = {};
        int r = 0;

        if (n > ROTATION_CHAIN_MAX)
                return -EINVAL;
        /* Oldest first in the package. */
        for (size_t i = 0; i < n && r >= 0; i++) {
                _cleanup_(json_object_unrefp) json_object *o = NULL;

                r = texts[i] ? json_parse_strict(texts[i], lens[i], JSON_DEPTH_DEFAULT, &o, NULL) : -EBADMSG;
                if (r >= 0)
                        r = rotation_from_json(o, &chain[n - 1 - i]);
        }
        if (r >= 0 && n > 0) {
                kp->rotations = calloc(n, sizeof(Rotation *));
                if (kp->rotations) {
                        memcpy(kp->rotations, chain, n * sizeof(Rotation *));
                        kp->n_rotations = n;
                        return 0;
                }
                r = -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                rotation_free(chain[i]);
        return r;
}

void store_message_done(StoreMessage *m) {
        if (!m)
                return;
        free(m->envelope);
        m->envelope = NULL;
}

void store_messages_free(StoreMessage *m, size_t n) {
        for (size_t i = 0; i < n; i++)
                store_message_done(&m[i]);
        free(m);
}

int store_begin(Store *s) {
        return s->ops->begin(s);
}

int store_begin_nosync(Store *s) {
        return s->ops->begin_nosync(s);
}

int store_commit(Store *s) {
        return s->ops->commit(s);
}

void store_rollback(Store *s) {
        s->ops->rollback(s);
}

bool store_in_transaction(Store *s) {
        return s->ops->in_transaction(s);
}

int store_checkpoint(Store *s) {
        return s->ops->checkpoint(s);
}

int store_thread_create(pthread_t *ret, void *(*fn)(void *), void *arg) {
        sigset_t all, saved;
        int r;

        sigfillset(&all);
        r = -pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r < 0)
                return r;
        r = -pthread_create(ret, NULL, fn, arg);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        return r;
}

void store_list_request_init(StoreListRequest *q, const char *recipient, uint64_t after, size_t max,
                             store_list_fn done, void *userdata) {
        *q = (StoreListRequest) { .after = after, .max = max, .done = done, .userdata = userdata };
        (void) string_copy(q->recipient, sizeof(q->recipient), recipient);
}

bool store_writes_takes_only(StoreWrite *const *writes, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (writes[i]->type != STORE_WRITE_TAKE)
                        return false;
        return true;
}

int store_set_event(Store *s, sd_event *event) {
        return s->ops->set_event ? s->ops->set_event(s, event) : 0;
}

bool store_batch_async(Store *s) {
        return s->ops->batch_async && s->ops->batch_async(s);
}

int store_batch_send(Store *s, StoreWrite *const *writes, size_t n, store_batch_fn done, void *userdata) {
        if (!s->ops->batch_send)
                return -EOPNOTSUPP;
        return s->ops->batch_send(s, writes, n, done, userdata);
}

bool store_batch_busy(Store *s) {
        return s->ops->batch_busy && s->ops->batch_busy(s);
}

int store_batch_queue(Store *s, StoreWrite *const *writes, size_t n, store_batch_fn done, void *userdata) {
        if (!s->ops->batch_queue)
                return -EOPNOTSUPP;
        return s->ops->batch_queue(s, writes, n, done, userdata);
}

int store_batch_unqueue(Store *s) {
        return s->ops->batch_unqueue ? s->ops->batch_unqueue(s) : -ENOENT;
}

void store_batch_wait(Store *s) {
        if (s->ops->batch_wait)
                s->ops->batch_wait(s);
}

int store_queue_list_async(Store *s, const char *recipient, uint64_t after, size_t max, store_list_fn done,
                           void *userdata) {
        if (!s->ops->queue_list_async)
                return -EOPNOTSUPP;
        return s->ops->queue_list_async(s, recipient, after, max, done, userdata);
}

int store_user_get(Store *s, const char *user, KeyPackage **ret) {
        return s->ops->user_get(s, user, ret);
}

int store_user_exists(Store *s, const char *user) {
        return s->ops->user_exists(s, user);
}

int store_user_add(Store *s, const KeyPackage *kp) {
        return s->ops->user_add(s, kp);
}

int store_user_delete(Store *s, const char *user) {
        return s->ops->user_delete(s, user);
}

int store_user_rotate(Store *s, const KeyPackage *kp, const Rotation *rot) {
        return s->ops->user_rotate(s, kp, rot);
}

int store_user_count(Store *s, uint64_t *ret) {
        return s->ops->user_count(s, ret);
}

int store_user_foreach(Store *s, store_user_fn fn, void *userdata) {
        return s->ops->user_foreach(s, fn, userdata);
}

int store_reset_set(Store *s, const char *user, const uint8_t hash[STORE_CODE_HASH_LEN], uint64_t expires) {
        return s->ops->reset_set(s, user, hash, expires);
}

int store_reset_get(Store *s, const char *user, uint8_t ret_hash[STORE_CODE_HASH_LEN], uint64_t *ret_expires) {
        return s->ops->reset_get(s, user, ret_hash, ret_expires);
}

int store_reset_delete(Store *s, const char *user) {
        return s->ops->reset_delete(s, user);
}

int store_queue_add(Store *s, StoreMessage *m) {
        return s->ops->queue_add(s, m);
}

int store_queue_find(Store *s, const char *sender, const char *msg_id, const char *envelope,
                     uint64_t *ret_seq) {
        return s->ops->queue_find(s, sender, msg_id, envelope, ret_seq);
}

int store_queue_count(Store *s, const char *recipient, uint64_t *ret) {
        return s->ops->queue_counts(s, recipient, NULL, ret, NULL);
}

int store_queue_counts(Store *s, const char *recipient, const char *sender, uint64_t *ret_all,
                       uint64_t *ret_from) {
        return s->ops->queue_counts(s, recipient, sender, ret_all, ret_from);
}

int store_queue_drop(Store *s, const char *recipient, uint64_t *ret_n) {
        return s->ops->queue_drop(s, recipient, ret_n);
}

int store_queue_totals(Store *s, uint64_t *ret_n, uint64_t *ret_bytes) {
        return s->ops->queue_totals(s, ret_n, ret_bytes);
}

int store_queue_max_size(Store *s, uint64_t *ret) {
        return s->ops->queue_max_size(s, ret);
}

int store_queue_last_seq(Store *s, const char *recipient, uint64_t *ret) {
        return s->ops->queue_last_seq(s, recipient, ret);
}

int store_queue_list(Store *s, const char *recipient, uint64_t after, size_t max,
                     StoreMessage **ret, size_t *ret_n) {
        return s->ops->queue_list(s, recipient, after, max, ret, ret_n);
}

int store_queue_take(Store *s, const char *recipient, uint64_t seq, StoreMessage *ret) {
        return s->ops->queue_take(s, recipient, seq, ret);
}

int store_queue_expire(Store *s, uint64_t now, size_t max, store_message_fn fn, void *userdata) {
        return s->ops->queue_expire(s, now, max, fn, userdata);
}

int store_prekeys_publish(Store *s, const char *user, const SignedPrekey *spk,
                          const OneTimePrekey *opks, size_t n, uint64_t max, uint64_t *ret_count) {
        return s->ops->prekeys_publish(s, user, spk, opks, n, max, ret_count);
}

int store_prekeys_count(Store *s, const char *user, uint64_t *ret) {
        return s->ops->prekeys_count(s, user, ret);
}

int store_prekeys_take(Store *s, const char *user, bool take_opk, PrekeyBundle *ret) {
        return s->ops->prekeys_take(s, user, take_opk, ret);
}

int store_prekeys_drop(Store *s, const char *user) {
        return s->ops->prekeys_drop(s, user);
}
