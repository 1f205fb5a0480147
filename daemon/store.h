/* SPDX-License-Identifier: MIT */
/*
 * The relay's durable state: the registry of users (their key,
 * fingerprint, registration time and the server's signature of the key
 * package), the prekeys of suite 2 the users published, and the queue of
 * envelopes not yet acknowledged by their recipient.
 *
 * Two backends (store.c dispatches): SQLite, one file in the state
 * directory (store-sqlite.c), and PostgreSQL, one database that several
 * relays may share (store-pg.c). Either way, when a write returns it
 * survives a crash or power loss, which is what `accepted` promises to
 * the sender, and queue sequence numbers only ever grow in the order
 * messages are committed for their recipient, so "everything after seq N"
 * is a sound cursor.
 *
 * Errors are negative errno; store_error() has the database's description
 * of the last one, for the log. PostgreSQL only: -ENOTCONN while the
 * database is away (every call says it at once until the store has
 * reconnected on its own), -ETIMEDOUT for the call during which it went
 * away by not answering within the timeout. A transaction is then rolled
 * back; a write outside one, or a commit, may have been done or not, as
 * with any answer lost: what the relay writes is found again if it is
 * written twice (store_queue_add()'s -EEXIST).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "handshake.h"
#include "suite2.h"
#include "util.h"

#define STORE_SCHEMA_VERSION 2
#define STORE_CODE_HASH_LEN 32
#define STORE_MSG_ID_MAX 32     /* base64 of 16 bytes is 24 characters */

typedef struct Store Store;

typedef struct StoreMessage {
        uint64_t seq;
        char recipient[USERNAME_MAX + 1];
        char sender[USERNAME_MAX + 1];
        char msg_id[STORE_MSG_ID_MAX + 1];
        char *envelope;         /* the envelope's JSON text (NULL in metadata-only results) */
        uint64_t size;          /* bytes of envelope JSON */
        uint64_t received;      /* unix seconds */
        uint64_t expires;       /* unix seconds */
} StoreMessage;

void store_message_done(StoreMessage *m);
void store_messages_free(StoreMessage *m, size_t n);

/* Open or create the SQLite database at path, set it up (WAL,
 * synchronous=FULL) and bring the schema to STORE_SCHEMA_VERSION.
 * -EPROTONOSUPPORT for a database written by a newer version. */
int store_open(const char *path, Store **ret);

/* For PostgreSQL. */
typedef struct StoreOptions {
        const char *password;           /* NULL: none (or what libpq finds itself) */
        const char *application_name;   /* pg_stat_activity's */
        uint64_t timeout_usec;          /* the longest wait for one answer; 0: 5 s */
        sd_event *event;                /* where the store reconnects; NULL: it never does */
        /* Called (on event) when the database is back after it was away:
         * what was refused meanwhile can be done again. May be NULL. */
        void (*on_back)(void *userdata);
        void *userdata;
} StoreOptions;

/* Open the PostgreSQL database that the postgresql:// URI names: connect
 * (waiting at most timeout_usec), create or migrate the tables under an
 * advisory lock, so that relays starting at once on an empty database
 * all come up. A connection lost later is made again on o->event, with
 * a backoff, while every call says -ENOTCONN. */
int store_open_postgresql(const char *uri, const StoreOptions *o, Store **ret);

/* Is where a PostgreSQL URI (postgresql:// or postgres://)? */
bool store_is_postgresql(const char *where);

Store *store_free(Store *s);
static inline void store_freep(Store **s) { store_free(*s); }
const char *store_error(Store *s);
/* "sqlite" or "postgresql". */
const char *store_backend(Store *s);

/* A transaction for many writes at once (the relay's group commit): one
 * sync for all of them at store_commit(). Writes and reads in between see
 * each other's changes; nothing of them is on disk before the commit.
 * A commit that failed may have ended the transaction (a full disk, an
 * I/O error) or not (store_in_transaction() says): the caller may try
 * again, or store_rollback(), after which nothing of it is. */
int store_begin(Store *s);
/* The same, for a transaction that may be lost in a crash after its
 * commit returned, but never half of it and never before what was
 * committed ahead of it: its commit does not wait for the disk (the
 * relay's deletes for acks, which a crash only delivers again). SQLite
 * sets synchronous=NORMAL before BEGIN and FULL again when the
 * transaction ends, whichever way; PostgreSQL, synchronous_commit=off
 * for the transaction. */
int store_begin_nosync(Store *s);
int store_commit(Store *s);
void store_rollback(Store *s);
bool store_in_transaction(Store *s);
/* Copy the WAL into the database and truncate it: the WAL keeps the size
 * of its largest stretch between checkpoints (megabytes), room a full
 * file system may need back. Not inside a transaction. SQLite only: 0
 * and nothing done on PostgreSQL, whose server keeps its own WAL. */
int store_checkpoint(Store *s);

/* The event loop of the store's callbacks (SQLite: once, before the
 * first batch; PostgreSQL takes it at the open: 0, nothing done). With
 * it, SQLite runs the relay's batches and the pump's pages on a writer
 * thread of its own, off the loop; without it, everything is done in the
 * call, and store_batch_async() is false. */
int store_set_event(Store *s, sd_event *event);

/* The relay's group commit without waiting (with an event loop;
 * store_batch_async() says whether the store has it). PostgreSQL sends
 * the writes at once, pipelined in one transaction; SQLite runs them in
 * one on its writer thread. done() is called on the event loop, never
 * from inside store_batch_send() or another store call, once the
 * transaction committed (r = 0: every write's .result says what it did)
 * or failed (r < 0: nothing of it is, or, for an answer lost on the way
 * to PostgreSQL, may be; -ENOTCONN and -ETIMEDOUT as for any call; a
 * full disk is -ENOSPC, with nothing of it stored). A batch of takes
 * alone commits without waiting for the disk, as store_begin_nosync().
 * One batch at a time: -EBUSY while one is in flight, or while a
 * transaction of store_begin() is open. The writes (and the texts they
 * point to) must stay until done() is called; another store call
 * meanwhile waits for the batch first (bounded by the timeout on
 * PostgreSQL, by the batch itself on SQLite), and done() still comes
 * later, from the loop. */
typedef enum StoreWriteType {
        STORE_WRITE_ADD,        /* queue msg: store_queue_add() with the send's checks */
        STORE_WRITE_TAKE,       /* delete msg.seq of msg.recipient: store_queue_take() */
} StoreWriteType;

typedef struct StoreWrite {
        StoreWriteType type;
        StoreMessage msg;       /* in: as for add or take; out: seq (add), metadata (take) */
        uint64_t limit;         /* add: refused when the recipient has this many queued */
        uint64_t limit_from;    /* add: ... or this many of them from the sender */
        /* add: 0 (msg.seq set), -ENOENT (no such recipient), -EDQUOT (the
         * sender's share is full), -EXFULL (the queue is full), with the
         * count that refused it in .count; -EEXIST (queued already with
         * this envelope: msg.seq set), -ENOTUNIQ (with another). take: 0,
         * -ENOENT. */
        int result;
        uint64_t count;
} StoreWrite;

typedef void (*store_batch_fn)(void *userdata, int r);
bool store_batch_async(Store *s);
int store_batch_send(Store *s, StoreWrite *const *writes, size_t n, store_batch_fn done, void *userdata);
bool store_batch_busy(Store *s);
/* The next batch, queued behind the one in flight, for a store that can
 * start it as soon as that one committed, without a turn of the loop in
 * between (SQLite's writer thread; -EOPNOTSUPP elsewhere: send it once
 * the first is done). As store_batch_send(), with one batch in flight
 * allowed (-EBUSY with one queued already); its done() comes after that
 * one's. The writes are read when it starts: until then the caller may
 * take it back with store_batch_unqueue(), and may change it only after.
 * It does not start after a batch that failed: that one's done() may
 * take it back, and send it again after what the failure needs. */
int store_batch_queue(Store *s, StoreWrite *const *writes, size_t n, store_batch_fn done, void *userdata);
/* Take back the batch queued: 0 (its done() will not be called), -EBUSY
 * when it started (done() will come), -ENOENT when none is queued. */
int store_batch_unqueue(Store *s);
/* Wait (bounded) for the batch in flight and call its done() now (and,
 * on SQLite, those of the pages read before it): at shutdown. */
void store_batch_wait(Store *s);
/* store_queue_list() without waiting, where store_batch_async() says so:
 * done() is called on the event loop with what store_queue_list() would
 * have returned, the messages its own to free (NULL on error). Read after
 * the batch in flight, if any, committed. -EOPNOTSUPP elsewhere; <0 when
 * done() will not be called. */
typedef void (*store_list_fn)(void *userdata, int r, StoreMessage *messages, size_t n);
int store_queue_list_async(Store *s, const char *recipient, uint64_t after, size_t max, store_list_fn done,
                           void *userdata);

/* Registry. */
/* The package comes with the user's last rotations (ROTATION_CHAIN_MAX). */
int store_user_get(Store *s, const char *user, KeyPackage **ret);      /* -ENOENT */
int store_user_exists(Store *s, const char *user);                     /* 1, 0 */
int store_user_add(Store *s, const KeyPackage *kp);                    /* -EEXIST */
int store_user_delete(Store *s, const char *user);                     /* -ENOENT */
/* Replace kp->user's key by kp (the new, signed package) if rot->old_key
 * is still the registered one, and keep rot; one transaction, which keeps
 * the last ROTATION_CHAIN_MAX statements. -ESTALE when the registered key
 * is not rot->old_key (any more). */
int store_user_rotate(Store *s, const KeyPackage *kp, const Rotation *rot);
int store_user_count(Store *s, uint64_t *ret);

/* Key resets: the name, the SHA-256 of its one-time code and when the code
 * expires. A name with a reset registers only with that code; the entry
 * stays (expired or not) until then. get: -ENOENT when there is none. */
int store_reset_set(Store *s, const char *user, const uint8_t hash[STORE_CODE_HASH_LEN], uint64_t expires);
int store_reset_get(Store *s, const char *user, uint8_t ret_hash[STORE_CODE_HASH_LEN], uint64_t *ret_expires);
int store_reset_delete(Store *s, const char *user);
/* fn returns <0 to stop (that value is returned). */
typedef int (*store_user_fn)(void *userdata, const KeyPackage *kp, const char *fingerprint);
int store_user_foreach(Store *s, store_user_fn fn, void *userdata);

/* Queue. add stores m (recipient, sender, msg_id, envelope, size,
 * received, expires) and sets m->seq. The same envelope again (same
 * sender, msg_id and text) is not stored again: -EEXIST with m->seq set to
 * the first one's; another envelope under a queued (sender, msg_id) is
 * -ENOTUNIQ. */
int store_queue_add(Store *s, StoreMessage *m);
/* The seq of the message (sender, msg_id) queued with this very envelope
 * text, -ENOENT if none is. */
int store_queue_find(Store *s, const char *sender, const char *msg_id, const char *envelope,
                     uint64_t *ret_seq);
/* SQLite keeps the counts below in memory as rows change (counted from
 * the queue at open and after a rollback): a lookup, not a count over the
 * queue. PostgreSQL counts in the database, over an index, since other
 * relays change the queue too. */
int store_queue_count(Store *s, const char *recipient, uint64_t *ret);
/* Messages queued for recipient, and those of them from sender (without
 * ret_from, sender may be NULL): what a send is checked against. */
int store_queue_counts(Store *s, const char *recipient, const char *sender, uint64_t *ret_all,
                       uint64_t *ret_from);
/* Delete every message queued for recipient; how many in *ret_n. */
int store_queue_drop(Store *s, const char *recipient, uint64_t *ret_n);
/* Messages in the whole queue, and their bytes of envelope JSON (either
 * may be NULL). A scan on PostgreSQL: for the open and the recounts. */
int store_queue_totals(Store *s, uint64_t *ret_n, uint64_t *ret_bytes);
/* The largest envelope queued, in bytes (0 if none; a scan too). */
int store_queue_max_size(Store *s, uint64_t *ret);
/* Highest seq queued for recipient, 0 if none. */
int store_queue_last_seq(Store *s, const char *recipient, uint64_t *ret);
/* Up to max messages for recipient with seq > after, in order, with their
 * envelopes. *ret is an array (store_messages_free). */
int store_queue_list(Store *s, const char *recipient, uint64_t after, size_t max,
                     StoreMessage **ret, size_t *ret_n);
/* Delete the message seq if it is addressed to recipient, returning its
 * metadata (no envelope). -ENOENT if there is no such message. */
int store_queue_take(Store *s, const char *recipient, uint64_t seq, StoreMessage *ret);
/* Delete up to max messages whose expiry is <= now, in one transaction,
 * then call fn (may be NULL) with each one's metadata. Returns the number
 * deleted. Relays sharing a PostgreSQL database each delete different
 * ones (rows another is deleting are skipped). */
typedef void (*store_message_fn)(void *userdata, const StoreMessage *m);
int store_queue_expire(Store *s, uint64_t now, size_t max, store_message_fn fn, void *userdata);

/* Prekeys of suite 2. publish replaces user's SPK and adds n OPKs, all in
 * one transaction: -E2BIG when the user would hold more than max OPKs,
 * -ENOTUNIQ when an OPK's id is held already or given twice; nothing is
 * stored then. *ret_count (may be NULL): the OPKs held after. The user
 * must be registered. */
int store_prekeys_publish(Store *s, const char *user, const SignedPrekey *spk,
                          const OneTimePrekey *opks, size_t n, uint64_t max, uint64_t *ret_count);
int store_prekeys_count(Store *s, const char *user, uint64_t *ret);
/* The user's bundle: the SPK and, with take_opk, the oldest OPK, deleted
 * in the same transaction (has_opk false when none is left). -ENOENT when
 * the user has no SPK. */
int store_prekeys_take(Store *s, const char *user, bool take_opk, PrekeyBundle *ret);
/* Forget the user's prekeys (a key reset does it with the user's row). */
int store_prekeys_drop(Store *s, const char *user);
