/* SPDX-License-Identifier: MIT */
/*
 * The store on SQLite: one file in the state directory, for one relay.
 * store.h says what each operation means; this file says how SQLite does
 * it (WAL, synchronous=FULL, checkpoints on a thread of their own in
 * wal-checkpointer.c, the relay's batches on a writer thread in
 * store-writer.c when given an event loop, the queue's counts kept in
 * memory).
 */
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "json-util.h"
#include "macro.h"
#include "rotation.h"
#include "rsa.h"
#include "sqlite-errno.h"
#include "store-backend.h"
#include "store-writer.h"
#include "suite2.h"
#include "util.h"
#include "wal-checkpointer.h"

/* Every statement the daemon runs, prepared once at open. */
typedef enum StatementId {
        STMT_USER_GET,
        STMT_USER_ADD,
        STMT_USER_DELETE,
        STMT_USER_COUNT,
        STMT_USER_ALL,
        STMT_QUEUE_ADD,
        STMT_QUEUE_FIND,
        STMT_QUEUE_COUNTS,
        STMT_QUEUE_MAX_SIZE,
        STMT_QUEUE_LAST,
        STMT_QUEUE_LIST,
        STMT_QUEUE_TAKE,
        STMT_QUEUE_DELETE,
        STMT_QUEUE_EXPIRED,
        STMT_RESET_SET,
        STMT_RESET_GET,
        STMT_RESET_DELETE,
        STMT_QUEUE_DROP,
        STMT_SPK_SET,
        STMT_SPK_GET,
        STMT_OPK_ADD,
        STMT_OPK_COUNT,
        STMT_OPK_FIRST,
        STMT_OPK_DELETE,
        STMT_PREKEYS_DROP_SPK,
        STMT_PREKEYS_DROP_OPKS,
        STMT_USER_ROTATE,
        STMT_ROTATION_ADD,
        STMT_ROTATION_PRUNE,
        STMT_ROTATION_LIST,
        STMT_BEGIN,
        STMT_COMMIT,
        STMT_ROLLBACK,
        _STMT_MAX,
} StatementId;

static const char *const statement_sql[_STMT_MAX] = {
        [STMT_USER_GET] = "SELECT key, registered, signature FROM users WHERE name = ?1",
        [STMT_USER_ADD] = "INSERT INTO users (name, key, fingerprint, registered, signature) "
                          "VALUES (?1, ?2, ?3, ?4, ?5)",
        [STMT_USER_DELETE] = "DELETE FROM users WHERE name = ?1",
        [STMT_USER_COUNT] = "SELECT count(*) FROM users",
        [STMT_USER_ALL] = "SELECT name, key, registered, signature, fingerprint FROM users "
                          "ORDER BY name",
        [STMT_QUEUE_ADD] = "INSERT INTO queue (recipient, sender, msg_id, envelope, size, "
                           "received, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_QUEUE_FIND] = "SELECT seq FROM queue WHERE sender = ?1 AND msg_id = ?2 AND envelope = ?3",
        /* Every count the store keeps in memory (QueueCount), at open
         * and after a transaction that changed them was rolled back. */
        [STMT_QUEUE_COUNTS] = "SELECT recipient, sender, count(*), sum(size) FROM queue "
                              "GROUP BY recipient, sender",
        [STMT_QUEUE_MAX_SIZE] = "SELECT coalesce(max(size), 0) FROM queue",
        [STMT_QUEUE_LAST] = "SELECT coalesce(max(seq), 0) FROM queue WHERE recipient = ?1",
        [STMT_QUEUE_LIST] = "SELECT seq, recipient, sender, msg_id, size, received, expires, envelope "
                            "FROM queue WHERE recipient = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        /* An ack: the row and what the log says of it, then
         * STMT_QUEUE_DELETE. Not DELETE ... RETURNING, which opens a
         * temporary b-tree (a pager of its own) at every step: a third of
         * an ack's time in the database. */
        [STMT_QUEUE_TAKE] = "SELECT seq, recipient, sender, msg_id, size, received, expires "
                            "FROM queue WHERE seq = ?1 AND recipient = ?2",
        [STMT_QUEUE_DELETE] = "DELETE FROM queue WHERE seq = ?1",
        [STMT_QUEUE_EXPIRED] = "SELECT seq, recipient, sender, msg_id, size, received, expires "
                               "FROM queue WHERE expires <= ?1 ORDER BY expires, seq LIMIT ?2",
        [STMT_RESET_SET] = "INSERT OR REPLACE INTO resets (name, code_hash, expires) VALUES (?1, ?2, ?3)",
        [STMT_RESET_GET] = "SELECT code_hash, expires FROM resets WHERE name = ?1",
        [STMT_RESET_DELETE] = "DELETE FROM resets WHERE name = ?1",
        [STMT_QUEUE_DROP] = "DELETE FROM queue WHERE recipient = ?1",
        [STMT_SPK_SET] = "INSERT OR REPLACE INTO signed_prekeys (name, spk) VALUES (?1, ?2)",
        [STMT_SPK_GET] = "SELECT spk FROM signed_prekeys WHERE name = ?1",
        [STMT_OPK_ADD] = "INSERT INTO one_time_prekeys (name, id, pub) VALUES (?1, ?2, ?3)",
        [STMT_OPK_COUNT] = "SELECT count(*) FROM one_time_prekeys WHERE name = ?1",
        /* The oldest first: the order they were published in. */
        [STMT_OPK_FIRST] = "SELECT rowid, id, pub FROM one_time_prekeys WHERE name = ?1 "
                           "ORDER BY rowid LIMIT 1",
        [STMT_OPK_DELETE] = "DELETE FROM one_time_prekeys WHERE rowid = ?1",
        [STMT_PREKEYS_DROP_SPK] = "DELETE FROM signed_prekeys WHERE name = ?1",
        [STMT_PREKEYS_DROP_OPKS] = "DELETE FROM one_time_prekeys WHERE name = ?1",
        /* Only while the old key is registered: a rotation never replaces
         * a key it was not made for. */
        [STMT_USER_ROTATE] = "UPDATE users SET key = ?2, fingerprint = ?3, registered = ?4, signature = ?5 "
                             "WHERE name = ?1 AND key = ?6",
        [STMT_ROTATION_ADD] = "INSERT INTO rotations (name, statement) VALUES (?1, ?2)",
        [STMT_ROTATION_PRUNE] = "DELETE FROM rotations WHERE name = ?1 AND seq NOT IN "
                                "(SELECT seq FROM rotations WHERE name = ?1 ORDER BY seq DESC LIMIT ?2)",
        [STMT_ROTATION_LIST] = "SELECT statement FROM rotations WHERE name = ?1 ORDER BY seq DESC LIMIT ?2",
        [STMT_BEGIN] = "BEGIN IMMEDIATE",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
};

/* Version 1. A later version adds "ALTER ..." steps to migrate(). */
static const char schema_v1[] =
        "CREATE TABLE users ("
        "  name TEXT PRIMARY KEY NOT NULL,"
        "  key BLOB NOT NULL,"                  /* SPKI DER */
        "  fingerprint TEXT NOT NULL,"          /* SHA256:... of key */
        "  registered INTEGER NOT NULL,"        /* unix seconds */
        "  signature BLOB NOT NULL"             /* server's key package signature */
        ");"
        "CREATE TABLE queue ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  recipient TEXT NOT NULL,"
        "  sender TEXT NOT NULL,"
        "  msg_id TEXT NOT NULL,"               /* envelope id, base64 */
        "  envelope TEXT NOT NULL,"             /* envelope JSON */
        "  size INTEGER NOT NULL,"
        "  received INTEGER NOT NULL,"
        "  expires INTEGER NOT NULL,"
        "  UNIQUE (sender, msg_id)"
        ");"
        "CREATE INDEX queue_by_recipient ON queue (recipient, seq);"
        "CREATE INDEX queue_by_expiry ON queue (expires);";

/* Version 2: names whose key an administrator reset, with the SHA-256 of
 * the one-time code that registers them again. */
static const char schema_v2[] =
        "CREATE TABLE resets ("
        "  name TEXT PRIMARY KEY NOT NULL,"
        "  code_hash BLOB NOT NULL,"
        "  expires INTEGER NOT NULL"            /* unix seconds */
        ");";

/* The prekeys of suite 2: each user's SPK as published (its binary
 * encoding) and its OPKs. They go with the user's key: deleting the user
 * (a key reset) deletes them. Made at every open when missing, like the
 * indexes below, and without a schema version: nothing of versions 1 and 2
 * changes, and a relay that predates them works on a database that has
 * them (a version bump would make it refuse the database). */
static const char schema_prekeys[] =
        "CREATE TABLE IF NOT EXISTS signed_prekeys ("
        "  name TEXT PRIMARY KEY NOT NULL REFERENCES users (name) ON DELETE CASCADE,"
        "  spk BLOB NOT NULL"
        ");"
        "CREATE TABLE IF NOT EXISTS one_time_prekeys ("
        "  name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,"
        "  id INTEGER NOT NULL,"                /* the owner's, unique per user */
        "  pub BLOB NOT NULL,"                  /* X25519 public key */
        "  UNIQUE (name, id)"
        ");";

/* Made at every open when missing: indexes need no schema version, and
 * one dropped by hand comes back. */
static const char schema_indexes[] =
        /* Counted queue-limit-per-sender once; the store's counts
         * (QueueCount) do now, and the index only cost every insert and
         * delete. An older relay that makes it again is none the worse. */
        "DROP INDEX IF EXISTS queue_by_recipient_sender;"
        /* The counts were once tables kept by triggers, two b-tree writes
         * more for every insert and delete; they are kept in memory now.
         * An older relay makes them again, from the queue, at its open. */
        "DROP TRIGGER IF EXISTS queue_counts_insert;"
        "DROP TRIGGER IF EXISTS queue_counts_delete;"
        "DROP TABLE IF EXISTS queue_recipients;"
        "DROP TABLE IF EXISTS queue_senders;"
        /* The last key rotations of each user (the statements' JSON),
         * handed out with the key package; a key reset deletes them with
         * the user. A table that only adds to the schema needs no version
         * either: a relay that does not know it leaves it alone. */
        "CREATE TABLE IF NOT EXISTS rotations ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,"
        "  statement TEXT NOT NULL"
        ");"
        "CREATE INDEX IF NOT EXISTS rotations_by_name ON rotations (name, seq);";

/* The queue's counts, which every send checks against queue-limit and
 * queue-limit-per-sender (counted at each send they made filling a queue
 * quadratic): one entry per recipient (all = true) and one per
 * recipient and sender, in a hash table. They are derived from the queue
 * table (one GROUP BY at open), so a crash cannot leave them wrong, and
 * changed in step with the rows: after each insert or delete that
 * succeeded. A transaction that changed them and was then rolled back,
 * by us or by SQLite (a full disk, an I/O error), makes them stale, and
 * the next use counts the queue again. Entries exist only for what is
 * queued: their number is bounded by the queue's. They are kept in a
 * balanced tree (tsearch(3)): O(log n) whatever names peers choose. */
typedef struct QueueCount {
        uint64_t n, bytes;
        bool all;
        char recipient[USERNAME_MAX + 1];
        char sender[USERNAME_MAX + 1];
} QueueCount;

typedef struct SqliteStore SqliteStore;

/* A job for the writer thread, and what failed in it, copied on the
 * thread (store_error() on the loop cannot ask the connection then). */
typedef struct SqliteJob {
        StoreJob job;
        SqliteStore *store;
        char error[256];
} SqliteJob;

/* The relay's group commit (store_batch_send()): one at a time, and the
 * next one queued behind it (store_batch_queue()). */
typedef struct SqliteBatch {
        SqliteJob job;
        StoreWrite *const *writes;
        size_t n;
        store_batch_fn done;
        void *userdata;
        bool active;                    /* sent, done() not called yet */
} SqliteBatch;

/* A page of the queue for the pump (store_queue_list_async()). */
typedef struct SqliteList {
        SqliteJob job;
        StoreListRequest q;
} SqliteList;

struct SqliteStore {
        Store store;
        sqlite3 *db;
        sqlite3_stmt *stmt[_STMT_MAX];
        WalCheckpointer *checkpointer;  /* the thread that checkpoints db's write-ahead log */

        void *counts;                   /* of QueueCount, tsearch(3) */
        uint64_t total, total_bytes;
        bool counts_stale;              /* count the queue again before the next use */
        bool tx_counted;                /* the open transaction changed the counts */
        bool nosync;                    /* synchronous=NORMAL, for sqlite_begin_nosync() */

        /* With an event loop (store_set_event()): the relay's batches and
         * the pump's pages run on a thread of their own. */
        StoreWriter *writer;
        SqliteBatch batches[2];
        SqliteBatch *queued;            /* queued behind the other, maybe started */
        char job_error[256];            /* the loop's copy of a finished job's failure */
        bool job_error_shown;           /* ... which store_error() says meanwhile */
};

static SqliteStore *sqlite_store(Store *s) {
        return container_of(s, SqliteStore, store);
}

static bool in_transaction(SqliteStore *s) {
        return sqlite3_get_autocommit(s->db) == 0;
}

/* The connection for a store call: the loop takes it back from the
 * writer thread first (store-writer.h), which waits for the jobs queued;
 * their finish() still comes later, from the loop. A job's run() calling
 * a store function is on the thread already: nothing to wait for, and
 * nothing of the loop's to touch. */
static SqliteStore *loop_store(Store *store) {
        SqliteStore *s = sqlite_store(store);

        if (s->writer && !store_writer_on_thread(s->writer)) {
                store_writer_wait(s->writer);
                s->job_error_shown = false;
        }
        return s;
}

static int counts_load(SqliteStore *s);

static void counts_clear(SqliteStore *s) {
        tdestroy(s->counts, free);
        s->counts = NULL;
        s->total = s->total_bytes = 0;
}

/* During a job's finish(), what failed in it: the connection's own
 * message may be a later job's by then. */
static const char *sqlite_error(Store *store) {
        SqliteStore *s = sqlite_store(store);

        if (s->job_error_shown)
                return s->job_error;
        store_writer_wait(s->writer);
        return s->db ? sqlite3_errmsg(s->db) : "out of memory";
}

static void sqlite_free(Store *store) {
        SqliteStore *s = sqlite_store(store);

        /* First: its jobs use the connection. */
        store_writer_free(s->writer);
        /* Before db closes, which checkpoints what is left, as the last
         * connection to the database. */
        wal_checkpointer_free(s->checkpointer);
        for (size_t i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(s->stmt[i]);
        sqlite3_close(s->db);
        counts_clear(s);
        free(s);
}

static int exec(SqliteStore *s, const char *sql) {
        return errno_from_sqlite(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

static int pragma_int(SqliteStore *s, const char *sql, int64_t *ret) {
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        if (ret)
                                *ret = sqlite3_column_int64(st, 0);
                        rc = SQLITE_OK;
                }
        }
        sqlite3_finalize(st);
        return errno_from_sqlite(rc);
}

static int migrate(SqliteStore *s) {
        int64_t version = 0;
        int r;

        r = pragma_int(s, "PRAGMA user_version", &version);
        if (r < 0)
                return r;
        if (version == STORE_SCHEMA_VERSION) {
                r = exec(s, schema_prekeys);
                if (r >= 0)
                        r = exec(s, schema_indexes);
                return r;
        }
        if (version > STORE_SCHEMA_VERSION)
                return -EPROTONOSUPPORT;

        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        if (version < 1)
                r = exec(s, schema_v1);
        if (r >= 0 && version < 2)
                r = exec(s, schema_v2);
        if (r >= 0)
                r = exec(s, "PRAGMA user_version = 2");
        if (r >= 0)
                r = exec(s, schema_prekeys);
        if (r >= 0)
                r = exec(s, schema_indexes);
        if (r >= 0)
                r = exec(s, "COMMIT");
        if (r < 0)
                (void) exec(s, "ROLLBACK");
        return r;
}

static const StoreOps sqlite_ops;

int store_sqlite_open(const char *path, Store **ret) {
        _cleanup_(store_freep) Store *store = NULL;
        SqliteStore *s;
        sqlite3_stmt *st = NULL;
        const char *mode;
        int rc, r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->store.ops = &sqlite_ops;
        store = &s->store;

        /* No mutex of SQLite's own on the connection: the event loop and
         * the writer thread take turns (store-writer.h), never using it at
         * once, and the checkpointer has a connection of its own. The locks
         * were a few per cent of the relay's time per message. */
        rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_extended_result_codes(s->db, 1);

        /* WAL: readers never block the writer; synchronous=FULL: a commit is
         * on disk when it returns, WAL or not. */
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                mode = (const char *) sqlite3_column_text(st, 0);
                rc = mode && strcmp(mode, "wal") == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK)
                return rc == SQLITE_CANTOPEN ? -EIO : errno_from_sqlite(rc);

        r = exec(s, "PRAGMA synchronous = FULL");
        if (r >= 0)
                r = exec(s, "PRAGMA foreign_keys = ON");
        if (r < 0)
                return r;
        r = migrate(s);
        if (r < 0)
                return r;
        /* Prekeys whose user was deleted behind our back (by hand, with
         * the sqlite3 tool, where foreign keys are off): a new user of that
         * name must not be sealed to them. Best effort: on a full disk the
         * next open tries again. */
        (void) exec(s, "DELETE FROM signed_prekeys WHERE name NOT IN (SELECT name FROM users);"
                       "DELETE FROM one_time_prekeys WHERE name NOT IN (SELECT name FROM users);"
                       "DELETE FROM rotations WHERE name NOT IN (SELECT name FROM users)");

        for (size_t i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                        &s->stmt[i], NULL);
                if (rc != SQLITE_OK)
                        return errno_from_sqlite(rc);
        }
        r = counts_load(s);
        if (r < 0)
                return r;
        r = wal_checkpointer_new(s->db, path, &s->checkpointer);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(store);
        return 0;
}

/* A prepared statement, reset and with its bindings cleared, ready to bind. */
static sqlite3_stmt *stmt(SqliteStore *s, StatementId id) {
        sqlite3_stmt *st = s->stmt[id];

        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
}

/* Step a statement that returns nothing, and reset it. */
static int step_done(sqlite3_stmt *st) {
        int rc = sqlite3_step(st);

        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc) ?: -EIO;
}

/* Transactions. The counts' bookkeeping (counts_changed()) learns here
 * whether what it counted was committed. */

/* A transaction that changed the counts and is over, though not by our
 * commit: rolled back, by us or by SQLite. */
static void counts_check_tx(SqliteStore *s) {
        if (s->tx_counted && sqlite3_get_autocommit(s->db) != 0) {
                s->counts_stale = true;
                s->tx_counted = false;
        }
}

static int begin_tx(SqliteStore *s) {
        counts_check_tx(s);
        return step_done(stmt(s, STMT_BEGIN));
}

/* synchronous=FULL again once the transaction sqlite_begin_nosync() began
 * is over, whichever way it ended (SQLite ends one itself for a full disk
 * or an I/O error). SQLite refuses the change inside a transaction. A
 * failure keeps nosync: begin() tries again, and begins nothing at
 * NORMAL. */
static int sync_restore(SqliteStore *s) {
        int r;

        if (!s->nosync || in_transaction(s))
                return 0;
        r = exec(s, "PRAGMA synchronous = FULL");
        if (r >= 0)
                s->nosync = false;
        return r;
}

static int begin(SqliteStore *s) {
        int r = sync_restore(s);

        return r < 0 ? r : begin_tx(s);
}

static int commit(SqliteStore *s) {
        int r = step_done(stmt(s, STMT_COMMIT));

        if (r >= 0)
                s->tx_counted = false;
        return r;
}

static void rollback(SqliteStore *s) {
        (void) step_done(stmt(s, STMT_ROLLBACK));
        counts_check_tx(s);
}

/* Commit when r >= 0, else roll back; returns r or the commit's error. */
static int end(SqliteStore *s, int r) {
        if (r >= 0)
                r = commit(s);
        if (r < 0)
                rollback(s);
        return r;
}

/* Step a statement that returns one integer. */
static int step_u64(sqlite3_stmt *st, uint64_t *ret) {
        int rc = sqlite3_step(st);

        if (rc == SQLITE_ROW)
                *ret = (uint64_t) sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return rc == SQLITE_ROW ? 0 : errno_from_sqlite(rc) ?: -ENOENT;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s) {
        return errno_from_sqlite(sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC));
}

static int bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n) {
        return errno_from_sqlite(sqlite3_bind_blob64(st, i, p, n, SQLITE_STATIC));
}

static int bind_u64(sqlite3_stmt *st, int i, uint64_t v) {
        if (v > INT64_MAX)
                return -ERANGE;
        return errno_from_sqlite(sqlite3_bind_int64(st, i, (sqlite3_int64) v));
}

static int column_blob(sqlite3_stmt *st, int i, uint8_t **ret, size_t *ret_len) {
        const void *p = sqlite3_column_blob(st, i);
        int n = sqlite3_column_bytes(st, i);
        uint8_t *copy;

        if (!p || n <= 0)
                return -EBADMSG;
        copy = malloc((size_t) n);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, p, (size_t) n);
        *ret = copy;
        *ret_len = (size_t) n;
        return 0;
}

static void column_name(sqlite3_stmt *st, int i, char out[static USERNAME_MAX + 1]) {
        const char *t = (const char *) sqlite3_column_text(st, i);
        (void) string_copy(out, USERNAME_MAX + 1, t);
}

/* A key package from the current row: name (given), key, registered, sig
 * in columns k, k+1, k+2. */
static int row_to_package(sqlite3_stmt *st, const char *user, int k, KeyPackage **ret) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        int r;

        kp = calloc(1, sizeof(*kp));
        if (!kp)
                return -ENOMEM;
        snprintf(kp->user, sizeof(kp->user), "%s", user);
        r = column_blob(st, k, &kp->key, &kp->key_len);
        if (r < 0)
                return r;
        kp->registered = (uint64_t) sqlite3_column_int64(st, k + 1);
        r = column_blob(st, k + 2, &kp->sig, &kp->sig_len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(kp);
        return 0;
}

/* The user's rotation statements, oldest first, into kp. A statement
 * that no longer parses is a damaged database: -EBADMSG. */
static int rotations_get(SqliteStore *s, KeyPackage *kp) {
        sqlite3_stmt *st = stmt(s, STMT_ROTATION_LIST);
        char *texts[ROTATION_CHAIN_MAX] = {};
        size_t lens[ROTATION_CHAIN_MAX], n = 0;
        int rc = SQLITE_DONE, r;

        if ((r = bind_text(st, 1, kp->user)) < 0 || (r = bind_u64(st, 2, ROTATION_CHAIN_MAX)) < 0)
                return r;
        /* Copied: a column's text lasts until the next step. */
        while (n < ROTATION_CHAIN_MAX && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *text = (const char *) sqlite3_column_text(st, 0);

                lens[n] = (size_t) sqlite3_column_bytes(st, 0);
                if (text) {
                        texts[n] = malloc(lens[n] + 1);
                        if (!texts[n]) {
                                r = -ENOMEM;
                                break;
                        }
                        memcpy(texts[n], text, lens[n] + 1);
                }
                n++;
        }
        if (r >= 0 && n < ROTATION_CHAIN_MAX && rc != SQLITE_DONE)
                r = errno_from_sqlite(rc) ?: -EIO;
        sqlite3_reset(st);
        if (r >= 0)
                r = store_package_set_rotations(kp, (const char *const *) texts, lens, n);
        for (size_t i = 0; i < n; i++)
                free(texts[i]);
        return r;
}

static int sqlite_user_get(Store *store, const char *user, KeyPackage **ret) {
        SqliteStore *s = loop_store(store);

        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        sqlite3_stmt *st = stmt(s, STMT_USER_GET);
        int rc, r;

        r = bind_text(st, 1, user);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = row_to_package(st, user, 0, &kp);
        else
                r = errno_from_sqlite(rc) ?: -ENOENT;
        sqlite3_reset(st);
        if (r < 0)
                return r;
        r = rotations_get(s, kp);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(kp);
        return 0;
}

static int sqlite_user_exists(Store *store, const char *user) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_USER_GET);
        int rc, r;

        r = bind_text(st, 1, user);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
                return 1;
        return errno_from_sqlite(rc);
}

static int sqlite_user_add(Store *store, const KeyPackage *kp) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_USER_ADD);
        char fingerprint[RSA_FINGERPRINT_MAX];
        int r;

        rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);
        if ((r = bind_text(st, 1, kp->user)) < 0 ||
            (r = bind_blob(st, 2, kp->key, kp->key_len)) < 0 ||
            (r = bind_text(st, 3, fingerprint)) < 0 ||
            (r = bind_u64(st, 4, kp->registered)) < 0 ||
            (r = bind_blob(st, 5, kp->sig, kp->sig_len)) < 0)
                return r;
        return step_done(st);
}

/* A user's prekeys, inside the caller's transaction. */
static int prekeys_drop(SqliteStore *s, const char *user) {
        static const StatementId drops[] = { STMT_PREKEYS_DROP_OPKS, STMT_PREKEYS_DROP_SPK };
        int r = 0;

        for (size_t i = 0; i < ELEMENTSOF(drops) && r >= 0; i++) {
                sqlite3_stmt *st = stmt(s, drops[i]);

                r = bind_text(st, 1, user);
                if (r >= 0)
                        r = step_done(st);
        }
        return r;
}

static int sqlite_user_rotate(Store *store, const KeyPackage *kp, const Rotation *rot) {
        SqliteStore *s = loop_store(store);

        _cleanup_(json_object_unrefp) json_object *o = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX];
        sqlite3_stmt *st;
        const char *text;
        int r;

        r = rotation_to_json(rot, &o);
        if (r < 0)
                return r;
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);

        /* The new key and the statement for it, or neither. */
        r = begin(s);
        if (r < 0)
                return r;
        st = stmt(s, STMT_USER_ROTATE);
        if ((r = bind_text(st, 1, kp->user)) >= 0 &&
            (r = bind_blob(st, 2, kp->key, kp->key_len)) >= 0 &&
            (r = bind_text(st, 3, fingerprint)) >= 0 &&
            (r = bind_u64(st, 4, kp->registered)) >= 0 &&
            (r = bind_blob(st, 5, kp->sig, kp->sig_len)) >= 0 &&
            (r = bind_blob(st, 6, rot->old_key, rot->old_key_len)) >= 0 &&
            (r = step_done(st)) >= 0 && sqlite3_changes(s->db) != 1)
                r = -ESTALE;
        if (r >= 0) {
                st = stmt(s, STMT_ROTATION_ADD);
                if ((r = bind_text(st, 1, kp->user)) >= 0 && (r = bind_text(st, 2, text)) >= 0)
                        r = step_done(st);
        }
        if (r >= 0) {
                st = stmt(s, STMT_ROTATION_PRUNE);
                if ((r = bind_text(st, 1, kp->user)) >= 0 && (r = bind_u64(st, 2, ROTATION_CHAIN_MAX)) >= 0)
                        r = step_done(st);
        }
        /* The SPK was signed by the old key, which peers no longer pin,
         * and the OPKs went with it: the owner publishes anew. */
        if (r >= 0)
                r = prekeys_drop(s, kp->user);
        return end(s, r);
}

static int sqlite_user_delete(Store *store, const char *user) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_USER_DELETE);
        int r;

        r = bind_text(st, 1, user);
        if (r < 0)
                return r;
        r = step_done(st);
        if (r < 0)
                return r;
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

static int sqlite_reset_set(Store *store, const char *user, const uint8_t hash[STORE_CODE_HASH_LEN], uint64_t expires) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_RESET_SET);
        int r;

        if ((r = bind_text(st, 1, user)) < 0 ||
            (r = bind_blob(st, 2, hash, STORE_CODE_HASH_LEN)) < 0 ||
            (r = bind_u64(st, 3, expires)) < 0)
                return r;
        return step_done(st);
}

static int sqlite_reset_get(Store *store, const char *user, uint8_t ret_hash[STORE_CODE_HASH_LEN], uint64_t *ret_expires) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_RESET_GET);
        int rc, r;

        r = bind_text(st, 1, user);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == STORE_CODE_HASH_LEN) {
                memcpy(ret_hash, sqlite3_column_blob(st, 0), STORE_CODE_HASH_LEN);
                *ret_expires = (uint64_t) sqlite3_column_int64(st, 1);
                r = 0;
        } else
                r = rc == SQLITE_ROW ? -EBADMSG : errno_from_sqlite(rc) ?: -ENOENT;
        sqlite3_reset(st);
        return r;
}

static int sqlite_reset_delete(Store *store, const char *user) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_RESET_DELETE);
        int r = bind_text(st, 1, user);

        return r < 0 ? r : step_done(st);
}

static int sqlite_user_count(Store *store, uint64_t *ret) {
        SqliteStore *s = loop_store(store);

        return step_u64(stmt(s, STMT_USER_COUNT), ret);
}

static int sqlite_user_foreach(Store *store, store_user_fn fn, void *userdata) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_USER_ALL);
        int rc, r = 0;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                _cleanup_(key_package_freep) KeyPackage *kp = NULL;
                char user[USERNAME_MAX + 1];
                const char *fp;

                column_name(st, 0, user);
                r = row_to_package(st, user, 1, &kp);
                if (r < 0)
                        break;
                fp = (const char *) sqlite3_column_text(st, 4);
                r = fn(userdata, kp, fp ? fp : "");
                if (r < 0)
                        break;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = errno_from_sqlite(rc) ?: -EIO;
        sqlite3_reset(st);
        return r < 0 ? r : 0;
}

/* ---- the queue's counts (QueueCount) ------------------------------------ */

/* Entries by recipient, then the recipient's total before its senders. */
static int count_compare(const void *a, const void *b) {
        const QueueCount *x = a, *y = b;
        int r = strcmp(x->recipient, y->recipient);

        if (r != 0)
                return r;
        if (x->all != y->all)
                return x->all ? -1 : 1;
        return x->all ? 0 : strcmp(x->sender, y->sender);
}

/* The entry, or NULL. */
static QueueCount *count_find(SqliteStore *s, const char *recipient, const char *sender, bool all) {
        QueueCount key = { .all = all };
        void *node;

        (void) string_copy(key.recipient, sizeof(key.recipient), recipient);
        if (!all)
                (void) string_copy(key.sender, sizeof(key.sender), sender);
        node = tfind(&key, &s->counts, count_compare);
        return node ? *(QueueCount **) node : NULL;
}

static const QueueCount *count_get(SqliteStore *s, const char *recipient, const char *sender, bool all) {
        return count_find(s, recipient, sender, all);
}

/* Add n messages of bytes to an entry, made if missing. */
static int count_add(SqliteStore *s, const char *recipient, const char *sender, bool all, uint64_t n,
                     uint64_t bytes) {
        QueueCount *c = count_find(s, recipient, sender, all);

        if (!c) {
                c = calloc(1, sizeof(*c));
                if (!c)
                        return -ENOMEM;
                c->all = all;
                (void) string_copy(c->recipient, sizeof(c->recipient), recipient);
                if (!all)
                        (void) string_copy(c->sender, sizeof(c->sender), sender);
                if (!tsearch(c, &s->counts, count_compare)) {
                        free(c);
                        return -ENOMEM;
                }
        }
        c->n += n;
        c->bytes += bytes;
        return 0;
}

/* Take one message of bytes from an entry; it goes at zero. */
static void count_remove(SqliteStore *s, const char *recipient, const char *sender, bool all, uint64_t bytes) {
        QueueCount *c = count_find(s, recipient, sender, all);

        if (!c)
                return;
        c->n -= MIN(c->n, (uint64_t) 1);
        c->bytes -= MIN(c->bytes, bytes);
        if (c->n == 0) {
                (void) tdelete(c, &s->counts, count_compare);
                free(c);
        }
}

/* A row was inserted (added) or deleted. Out of memory leaves the counts
 * to be made again from the queue at their next use. */
static void counts_changed(SqliteStore *s, const char *recipient, const char *sender, uint64_t size, bool added) {
        counts_check_tx(s);
        if (s->counts_stale)
                return;
        if (added) {
                if (count_add(s, recipient, NULL, true, 1, size) < 0 ||
                    count_add(s, recipient, sender, false, 1, size) < 0) {
                        s->counts_stale = true;
                        return;
                }
                s->total++;
                s->total_bytes += size;
        } else {
                count_remove(s, recipient, NULL, true, size);
                count_remove(s, recipient, sender, false, size);
                s->total -= MIN(s->total, (uint64_t) 1);
                s->total_bytes -= MIN(s->total_bytes, size);
        }
        if (in_transaction(s))
                s->tx_counted = true;
}

/* Count the queue (as this connection sees it, the open transaction's
 * changes included). */
static int counts_load(SqliteStore *s) {
        sqlite3_stmt *st = stmt(s, STMT_QUEUE_COUNTS);
        int rc, r = 0;

        counts_clear(s);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *recipient = (const char *) sqlite3_column_text(st, 0);
                const char *sender = (const char *) sqlite3_column_text(st, 1);
                uint64_t n = (uint64_t) sqlite3_column_int64(st, 2);
                uint64_t bytes = (uint64_t) sqlite3_column_int64(st, 3);

                if (!recipient || !sender) {
                        r = -EBADMSG;   /* NOT NULL columns */
                        break;
                }
                r = count_add(s, recipient, NULL, true, n, bytes);
                if (r >= 0)
                        r = count_add(s, recipient, sender, false, n, bytes);
                if (r < 0)
                        break;
                s->total += n;
                s->total_bytes += bytes;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = errno_from_sqlite(rc) ?: -EIO;
        sqlite3_reset(st);
        if (r < 0) {
                counts_clear(s);
                s->counts_stale = true;
                return r;
        }
        s->counts_stale = false;
        s->tx_counted = in_transaction(s);
        return 0;
}

/* The counts, made again first if a rollback or a failure left them stale. */
static int counts_sync(SqliteStore *s) {
        counts_check_tx(s);
        return s->counts_stale ? counts_load(s) : 0;
}

/* Every message queued for recipient was deleted: rare (an
 * administrator's key reset), so the counts are made again at their next
 * use rather than picked out of the tree. */
static void counts_dropped(SqliteStore *s) {
        s->counts_stale = true;
}

static int sqlite_queue_drop(Store *store, const char *recipient, uint64_t *ret_n) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_QUEUE_DROP);
        int r = bind_text(st, 1, recipient);

        if (r >= 0)
                r = step_done(st);
        if (r < 0)
                return r;
        *ret_n = (uint64_t) sqlite3_changes(s->db);
        if (*ret_n > 0)
                counts_dropped(s);
        return 0;
}

static int sqlite_queue_find(Store *store, const char *sender, const char *msg_id, const char *envelope,
                             uint64_t *ret_seq) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_QUEUE_FIND);
        uint64_t seq;
        int r;

        if ((r = bind_text(st, 1, sender)) < 0 || (r = bind_text(st, 2, msg_id)) < 0 ||
            (r = bind_text(st, 3, envelope)) < 0 || (r = step_u64(st, &seq)) < 0)
                return r;
        if (ret_seq)
                *ret_seq = seq;
        return 0;
}

static int sqlite_queue_add(Store *store, StoreMessage *m) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_QUEUE_ADD);
        int r;

        if ((r = bind_text(st, 1, m->recipient)) < 0 ||
            (r = bind_text(st, 2, m->sender)) < 0 ||
            (r = bind_text(st, 3, m->msg_id)) < 0 ||
            (r = bind_text(st, 4, m->envelope)) < 0 ||
            (r = bind_u64(st, 5, m->size)) < 0 ||
            (r = bind_u64(st, 6, m->received)) < 0 ||
            (r = bind_u64(st, 7, m->expires)) < 0)
                return r;
        r = step_done(st);
        if (r == -EEXIST) {
                /* The same message again (a client retrying after a lost
                 * "accepted"): report the one already queued. Another
                 * envelope under that id is not the same message. */
                r = sqlite_queue_find(&s->store, m->sender, m->msg_id, m->envelope, &m->seq);
                if (r == -ENOENT)
                        return -ENOTUNIQ;
                return r < 0 ? -EIO : -EEXIST;
        }
        if (r < 0)
                return r;
        m->seq = (uint64_t) sqlite3_last_insert_rowid(s->db);
        counts_changed(s, m->recipient, m->sender, m->size, true);
        return 0;
}

static int sqlite_queue_counts(Store *store, const char *recipient, const char *sender, uint64_t *ret_all,
                               uint64_t *ret_from) {
        SqliteStore *s = loop_store(store);

        const QueueCount *c;
        int r;

        r = counts_sync(s);
        if (r < 0)
                return r;
        c = count_get(s, recipient, NULL, true);
        *ret_all = c ? c->n : 0;
        if (ret_from) {
                c = c ? count_get(s, recipient, sender, false) : NULL;
                *ret_from = c ? c->n : 0;
        }
        return 0;
}

static int sqlite_queue_totals(Store *store, uint64_t *ret_n, uint64_t *ret_bytes) {
        SqliteStore *s = loop_store(store);

        int r = counts_sync(s);

        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = s->total;
        if (ret_bytes)
                *ret_bytes = s->total_bytes;
        return 0;
}

static int sqlite_queue_max_size(Store *store, uint64_t *ret) {
        SqliteStore *s = loop_store(store);

        return step_u64(stmt(s, STMT_QUEUE_MAX_SIZE), ret);
}

static int sqlite_queue_last_seq(Store *store, const char *recipient, uint64_t *ret) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_QUEUE_LAST);
        int r = bind_text(st, 1, recipient);

        return r < 0 ? r : step_u64(st, ret);
}

/* Columns seq, recipient, sender, msg_id, size, received, expires. */
static void row_to_message(sqlite3_stmt *st, StoreMessage *m) {
        const char *id;

        *m = (StoreMessage) { .seq = (uint64_t) sqlite3_column_int64(st, 0) };
        column_name(st, 1, m->recipient);
        column_name(st, 2, m->sender);
        id = (const char *) sqlite3_column_text(st, 3);
        (void) string_copy(m->msg_id, sizeof(m->msg_id), id);
        m->size = (uint64_t) sqlite3_column_int64(st, 4);
        m->received = (uint64_t) sqlite3_column_int64(st, 5);
        m->expires = (uint64_t) sqlite3_column_int64(st, 6);
}

static int sqlite_queue_list(Store *store, const char *recipient, uint64_t after, size_t max,
                             StoreMessage **ret, size_t *ret_n) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_QUEUE_LIST);
        StoreMessage *list = NULL;
        size_t n = 0;
        int rc = SQLITE_DONE, r;

        if ((r = bind_text(st, 1, recipient)) < 0 || (r = bind_u64(st, 2, after)) < 0 ||
            (r = bind_u64(st, 3, max)) < 0)
                return r;
        if (max > 0) {
                list = calloc(max, sizeof(*list));
                if (!list)
                        return -ENOMEM;
        }
        while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *env = (const char *) sqlite3_column_text(st, 7);

                row_to_message(st, &list[n]);
                list[n].envelope = strdup(env ? env : "");
                if (!list[n].envelope) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        if (r >= 0 && n < max && rc != SQLITE_DONE)
                r = errno_from_sqlite(rc) ?: -EIO;
        sqlite3_reset(st);
        if (r < 0) {
                store_messages_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

static int sqlite_queue_take(Store *store, const char *recipient, uint64_t seq, StoreMessage *ret) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_QUEUE_TAKE);
        StoreMessage m;
        bool found = false;
        int rc, r;

        if ((r = bind_u64(st, 1, seq)) < 0 || (r = bind_text(st, 2, recipient)) < 0)
                return r;
        /* seq is the key: one row or none. */
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                row_to_message(st, &m);
                found = true;
                rc = sqlite3_step(st);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
                return errno_from_sqlite(rc) ?: -EIO;
        if (!found)
                return -ENOENT;
        st = stmt(s, STMT_QUEUE_DELETE);
        if ((r = bind_u64(st, 1, seq)) < 0 || (r = step_done(st)) < 0)
                return r;
        counts_changed(s, m.recipient, m.sender, m.size, false);
        if (ret)
                *ret = m;
        return 0;
}

static int sqlite_begin(Store *store) {
        SqliteStore *s = loop_store(store);

        return begin(s);
}

/* In WAL mode a commit at synchronous=NORMAL appends the transaction to
 * the WAL without an fsync: a crash may lose it, but only with everything
 * after it (the WAL is replayed in order, up to its first frame that does
 * not check out), and the next commit at FULL, whose fsync of the WAL
 * covers every frame before its own, or the next checkpoint makes it
 * durable. What committed at FULL before it stays durable. */
static int begin_nosync(SqliteStore *s) {
        int r;

        if (in_transaction(s))
                return -EBUSY;
        r = exec(s, "PRAGMA synchronous = NORMAL");
        if (r < 0)
                return r;
        s->nosync = true;
        r = begin_tx(s);
        if (r < 0)
                (void) sync_restore(s);
        return r;
}

static int sqlite_begin_nosync(Store *store) {
        SqliteStore *s = loop_store(store);

        return begin_nosync(s);
}

static int sqlite_commit(Store *store) {
        SqliteStore *s = loop_store(store);
        int r = commit(s);

        (void) sync_restore(s);         /* a commit that failed may leave it open */
        return r;
}

static void sqlite_rollback(Store *store) {
        SqliteStore *s = loop_store(store);

        if (in_transaction(s))
                rollback(s);
        counts_check_tx(s);
        (void) sync_restore(s);
}

/* On the loop's connection, as before the thread: the relay looks at the
 * disk again once it returns. A checkpoint of the thread's under way would
 * make it fail (SQLite runs one at a time, and the second does not wait
 * for the first): it waits for that one instead. */
static int sqlite_checkpoint(Store *store) {
        SqliteStore *s = loop_store(store);
        int rc;

        wal_checkpointer_pause(s->checkpointer);
        rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        wal_checkpointer_resume(s->checkpointer);
        return errno_from_sqlite(rc);
}

/* The loop's transaction: a job of the writer's never leaves one open,
 * and none is queued while the loop has one (sqlite_batch_send()). */
static bool sqlite_in_transaction(Store *store) {
        SqliteStore *s = sqlite_store(store);

        return !store_writer_busy(s->writer) && in_transaction(s);
}

static int sqlite_queue_expire(Store *store, uint64_t now, size_t max, store_message_fn fn, void *userdata) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st;
        StoreMessage *batch;
        size_t n = 0;
        int rc = SQLITE_DONE, r;

        if (max == 0)
                return 0;
        batch = calloc(max, sizeof(*batch));
        if (!batch)
                return -ENOMEM;

        st = stmt(s, STMT_QUEUE_EXPIRED);
        if ((r = bind_u64(st, 1, now)) < 0 || (r = bind_u64(st, 2, max)) < 0)
                goto finish;
        while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
                row_to_message(st, &batch[n++]);
        if (n < max && rc != SQLITE_DONE)
                r = errno_from_sqlite(rc) ?: -EIO;
        sqlite3_reset(st);
        if (r < 0 || n == 0)
                goto finish;

        /* One transaction, one sync, however many expired. */
        r = begin(s);
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < n; i++) {
                st = stmt(s, STMT_QUEUE_DELETE);
                if ((r = bind_u64(st, 1, batch[i].seq)) < 0 || (r = step_done(st)) < 0)
                        break;
                if (sqlite3_changes(s->db) > 0)
                        counts_changed(s, batch[i].recipient, batch[i].sender, batch[i].size, false);
        }
        r = end(s, r);
        if (r < 0)
                goto finish;
        if (fn)
                for (size_t i = 0; i < n; i++)
                        fn(userdata, &batch[i]);
        r = (int) n;

finish:
        free(batch);
        return r;
}

/* Prekeys. */

static int sqlite_prekeys_count(Store *store, const char *user, uint64_t *ret) {
        SqliteStore *s = loop_store(store);

        sqlite3_stmt *st = stmt(s, STMT_OPK_COUNT);
        int r = bind_text(st, 1, user);

        return r < 0 ? r : step_u64(st, ret);
}

static int spk_set(SqliteStore *s, const char *user, const SignedPrekey *spk) {
        sqlite3_stmt *st = stmt(s, STMT_SPK_SET);
        _cleanup_(freep) uint8_t *data = NULL;
        size_t len;
        int r;

        r = signed_prekey_encode(spk, &data, &len);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, user)) < 0 || (r = bind_blob(st, 2, data, len)) < 0)
                return r;
        return step_done(st);
}

static int opk_add(SqliteStore *s, const char *user, const OneTimePrekey *opk) {
        sqlite3_stmt *st = stmt(s, STMT_OPK_ADD);
        int r;

        if ((r = bind_text(st, 1, user)) < 0 || (r = bind_u64(st, 2, opk->id)) < 0 ||
            (r = bind_blob(st, 3, opk->pub, X25519_KEY_LEN)) < 0)
                return r;
        r = step_done(st);
        if (r == -EEXIST && sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE)
                return -ENOTUNIQ;       /* (name, id) is held already */
        return r;
}

static int prekeys_publish(SqliteStore *s, const char *user, const SignedPrekey *spk,
                           const OneTimePrekey *opks, size_t n, uint64_t max, uint64_t *ret_count) {
        uint64_t count;
        int r;

        r = sqlite_prekeys_count(&s->store, user, &count);
        if (r < 0)
                return r;
        if (n > max || count > max - n)
                return -E2BIG;
        r = spk_set(s, user, spk);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = opk_add(s, user, &opks[i]);
        if (r < 0)
                return r;
        *ret_count = count + n;
        return 0;
}

static int sqlite_prekeys_publish(Store *store, const char *user, const SignedPrekey *spk,
                                  const OneTimePrekey *opks, size_t n, uint64_t max, uint64_t *ret_count) {
        SqliteStore *s = loop_store(store);

        uint64_t count = 0;
        int r;

        r = begin(s);
        if (r < 0)
                return r;
        r = end(s, prekeys_publish(s, user, spk, opks, n, max, &count));
        if (r < 0)
                return r;
        if (ret_count)
                *ret_count = count;
        return 0;
}

static int spk_get(SqliteStore *s, const char *user, SignedPrekey *ret) {
        sqlite3_stmt *st = stmt(s, STMT_SPK_GET);
        int rc, r;

        r = bind_text(st, 1, user);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = signed_prekey_parse(sqlite3_column_blob(st, 0), (size_t) sqlite3_column_bytes(st, 0), ret);
        else
                r = errno_from_sqlite(rc) ?: -ENOENT;
        sqlite3_reset(st);
        return r;
}

/* The oldest OPK, deleted; -ENOENT when none is left. */
static int opk_take(SqliteStore *s, const char *user, OneTimePrekey *ret) {
        sqlite3_stmt *st = stmt(s, STMT_OPK_FIRST);
        OneTimePrekey opk = {};
        int64_t rowid = 0;
        int rc, r;

        r = bind_text(st, 1, user);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(st, 1);

                rowid = sqlite3_column_int64(st, 0);
                if (id < 0 || id > UINT32_MAX || sqlite3_column_bytes(st, 2) != X25519_KEY_LEN)
                        r = -EBADMSG;
                else {
                        opk.id = (uint32_t) id;
                        memcpy(opk.pub, sqlite3_column_blob(st, 2), X25519_KEY_LEN);
                }
        } else
                r = errno_from_sqlite(rc) ?: -ENOENT;
        sqlite3_reset(st);
        if (r < 0)
                return r;

        st = stmt(s, STMT_OPK_DELETE);
        r = errno_from_sqlite(sqlite3_bind_int64(st, 1, rowid));
        if (r >= 0)
                r = step_done(st);
        if (r < 0)
                return r;
        *ret = opk;
        return 0;
}

static int prekeys_take(SqliteStore *s, const char *user, bool take_opk, PrekeyBundle *ret) {
        PrekeyBundle b = {};
        int r;

        r = spk_get(s, user, &b.spk);
        if (r < 0)
                return r;
        if (take_opk) {
                r = opk_take(s, user, &b.opk);
                if (r < 0 && r != -ENOENT)
                        return r;
                b.has_opk = r >= 0;
        }
        *ret = b;
        return 0;
}

static int sqlite_prekeys_take(Store *store, const char *user, bool take_opk, PrekeyBundle *ret) {
        SqliteStore *s = loop_store(store);

        PrekeyBundle b;
        int r;

        if (!take_opk)
                return prekeys_take(s, user, false, ret);
        /* The OPK read is the OPK deleted: one transaction, so that two
         * lookups never get the same one. */
        r = begin(s);
        if (r < 0)
                return r;
        r = end(s, prekeys_take(s, user, true, &b));
        if (r < 0)
                return r;
        *ret = b;
        return 0;
}

static int sqlite_prekeys_drop(Store *store, const char *user) {
        SqliteStore *s = loop_store(store);

        int r;

        r = begin(s);
        if (r < 0)
                return r;
        return end(s, prekeys_drop(s, user));
}

/* ---- the writer thread's jobs ------------------------------------------ */

/* The relay's group commit off the loop (store_batch_send()): the batch's
 * transaction runs on the writer thread, with the checks relay.c makes
 * one by one on the synchronous path, in its order, and done() comes
 * from the loop once the commit returned: synchronous=FULL as ever,
 * so nothing is answered before it is on disk. */

static void job_failed(SqliteJob *j) {
        (void) string_copy(j->error, sizeof(j->error), sqlite3_errmsg(j->store->db));
}

/* The loop's turn after a job: its failure is what store_error() says
 * during its callback (until the callback calls the store again). */
static void job_show_error(SqliteJob *j, int r) {
        SqliteStore *s = j->store;

        if (r < 0) {
                memcpy(s->job_error, j->error, sizeof(s->job_error));
                s->job_error_shown = true;
        }
}

/* A send, as handle_send() checks it on the synchronous path: the
 * recipient registered, the sender's share, the recipient's queue, then
 * the insert (a retry, or another envelope under the id). */
static int write_add(SqliteStore *s, StoreWrite *w) {
        uint64_t all, from;
        int r;

        r = sqlite_user_exists(&s->store, w->msg.recipient);
        if (r < 0)
                return r;
        if (r == 0) {
                w->result = -ENOENT;
                return 0;
        }
        r = sqlite_queue_counts(&s->store, w->msg.recipient, w->msg.sender, &all, &from);
        if (r < 0)
                return r;
        if (from >= w->limit_from) {
                w->result = -EDQUOT;
                w->count = from;
                return 0;
        }
        if (all >= w->limit) {
                w->result = -EXFULL;
                w->count = all;
                return 0;
        }
        r = sqlite_queue_add(&s->store, &w->msg);
        if (r < 0 && r != -EEXIST && r != -ENOTUNIQ)
                return r;
        w->result = r;
        return 0;
}

static int write_take(SqliteStore *s, StoreWrite *w) {
        int r = sqlite_queue_take(&s->store, w->msg.recipient, w->msg.seq, &w->msg);

        if (r < 0 && r != -ENOENT)
                return r;
        w->result = r;
        return 0;
}

/* On the thread. Deletes alone commit without a sync, as
 * store_begin_nosync() does. A failure rolls all of it back; the counts
 * that the rollback made stale are counted again here, off the loop. */
static int batch_run(StoreJob *job) {
        SqliteBatch *b = container_of(job, SqliteBatch, job.job);
        SqliteStore *s = b->job.store;
        int r;

        r = store_writes_takes_only(b->writes, b->n) ? begin_nosync(s) : begin(s);
        for (size_t i = 0; r >= 0 && i < b->n; i++) {
                StoreWrite *w = b->writes[i];

                w->result = 0;
                w->count = 0;
                r = w->type == STORE_WRITE_ADD ? write_add(s, w) : write_take(s, w);
        }
        if (r >= 0)
                r = commit(s);
        if (r < 0) {
                job_failed(&b->job);    /* before ROLLBACK, which would say "not an error" */
                if (in_transaction(s))
                        rollback(s);
                (void) counts_sync(s);  /* what the rollback (or SQLite) undid */
        }
        (void) sync_restore(s);
        return r;
}

static void batch_finish(StoreJob *job, int r, bool call) {
        SqliteBatch *b = container_of(job, SqliteBatch, job.job);
        SqliteStore *s = b->job.store;

        b->active = false;
        if (s->queued == b)
                s->queued = NULL;
        if (!call)
                return;
        job_show_error(&b->job, r);
        b->done(b->userdata, r);        /* which may send the next batch in b */
        s->job_error_shown = false;
}

static bool sqlite_batch_async(Store *store) {
        return sqlite_store(store)->writer;
}

static bool sqlite_batch_busy(Store *store) {
        SqliteStore *s = sqlite_store(store);

        return s->batches[0].active || s->batches[1].active;
}

/* Jobs are queued only while the loop has no transaction open. */
static int batch_push(SqliteStore *s, StoreWrite *const *writes, size_t n, store_batch_fn done, void *userdata,
                      SqliteBatch **ret) {
        SqliteBatch *b = &s->batches[s->batches[0].active];

        if (!s->writer)
                return -EOPNOTSUPP;
        if (b->active || sqlite_in_transaction(&s->store))
                return -EBUSY;
        *b = (SqliteBatch) {
                .job = {
                        .job = { .run = batch_run, .finish = batch_finish },
                        .store = s,
                },
                .writes = writes,
                .n = n,
                .done = done,
                .userdata = userdata,
                .active = true,
        };
        store_writer_push(s->writer, &b->job.job);
        if (ret)
                *ret = b;
        return 0;
}

static int sqlite_batch_send(Store *store, StoreWrite *const *writes, size_t n, store_batch_fn done,
                             void *userdata) {
        if (sqlite_batch_busy(store))
                return -EBUSY;
        return batch_push(sqlite_store(store), writes, n, done, userdata, NULL);
}

/* The writer thread starts it when the one before committed. */
static int sqlite_batch_queue(Store *store, StoreWrite *const *writes, size_t n, store_batch_fn done,
                              void *userdata) {
        SqliteStore *s = sqlite_store(store);

        if (s->queued)
                return -EBUSY;
        return batch_push(s, writes, n, done, userdata, &s->queued);
}

static int sqlite_batch_unqueue(Store *store) {
        SqliteStore *s = sqlite_store(store);
        SqliteBatch *b = s->queued;

        if (!b)
                return -ENOENT;
        s->queued = NULL;
        if (!store_writer_retract(s->writer, &b->job.job))
                return -EBUSY;
        b->active = false;
        return 0;
}

/* Shutdown (relay_done()): the loop runs no more. */
static void sqlite_batch_wait(Store *store) {
        store_writer_flush(sqlite_store(store)->writer);
}

/* On the thread, after the jobs queued before it: what a batch queued
 * before committed is read. Or on the loop, with the writer idle. */
static int list_run(StoreJob *job) {
        SqliteList *l = container_of(job, SqliteList, job.job);
        int r;

        r = sqlite_queue_list(&l->job.store->store, l->q.recipient, l->q.after, l->q.max, &l->q.messages,
                              &l->q.n_messages);
        if (r < 0)
                job_failed(&l->job);
        return r;
}

static void list_finish(StoreJob *job, int r, bool call) {
        SqliteList *l = container_of(job, SqliteList, job.job);

        if (call) {
                job_show_error(&l->job, r);
                l->q.done(l->q.userdata, r, l->q.messages, l->q.n_messages);   /* its own to free */
                l->job.store->job_error_shown = false;
        } else
                store_messages_free(l->q.messages, l->q.n_messages);
        free(l);
}

static int sqlite_queue_list_async(Store *store, const char *recipient, uint64_t after, size_t max,
                                   store_list_fn done, void *userdata) {
        SqliteStore *s = sqlite_store(store);
        SqliteList *l;

        if (!s->writer)
                return -EOPNOTSUPP;
        if (sqlite_in_transaction(store))
                return -EBUSY;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->job = (SqliteJob) {
                .job = { .run = list_run, .finish = list_finish },
                .store = s,
        };
        store_list_request_init(&l->q, recipient, after, max, done, userdata);
        /* On the loop when the writer is idle: pages read one after the
         * other (a queue drained at login) each cost a thread switch
         * there and back otherwise. */
        store_writer_push_or_run(s->writer, &l->job.job);
        return 0;
}

/* The connection goes to the writer thread with each job: SQLite must
 * allow a connection to change threads (not built single-threaded). */
static int sqlite_set_event(Store *store, sd_event *event) {
        SqliteStore *s = loop_store(store);

        if (s->writer)
                return -EBUSY;
        if (!sqlite3_threadsafe())
                return -EOPNOTSUPP;
        return store_writer_new(event, &s->writer);
}

static const StoreOps sqlite_ops = {
        .name = "sqlite",
        .free = sqlite_free,
        .error = sqlite_error,
        .begin = sqlite_begin,
        .begin_nosync = sqlite_begin_nosync,
        .commit = sqlite_commit,
        .rollback = sqlite_rollback,
        .in_transaction = sqlite_in_transaction,
        .checkpoint = sqlite_checkpoint,
        .set_event = sqlite_set_event,
        .batch_async = sqlite_batch_async,
        .batch_send = sqlite_batch_send,
        .batch_busy = sqlite_batch_busy,
        .batch_queue = sqlite_batch_queue,
        .batch_unqueue = sqlite_batch_unqueue,
        .batch_wait = sqlite_batch_wait,
        .queue_list_async = sqlite_queue_list_async,
        .user_get = sqlite_user_get,
        .user_exists = sqlite_user_exists,
        .user_add = sqlite_user_add,
        .user_delete = sqlite_user_delete,
        .user_rotate = sqlite_user_rotate,
        .user_count = sqlite_user_count,
        .user_foreach = sqlite_user_foreach,
        .reset_set = sqlite_reset_set,
        .reset_get = sqlite_reset_get,
        .reset_delete = sqlite_reset_delete,
        .queue_add = sqlite_queue_add,
        .queue_find = sqlite_queue_find,
        .queue_counts = sqlite_queue_counts,
        .queue_drop = sqlite_queue_drop,
        .queue_totals = sqlite_queue_totals,
        .queue_max_size = sqlite_queue_max_size,
        .queue_last_seq = sqlite_queue_last_seq,
        .queue_list = sqlite_queue_list,
        .queue_take = sqlite_queue_take,
        .queue_expire = sqlite_queue_expire,
        .prekeys_publish = sqlite_prekeys_publish,
        .prekeys_count = sqlite_prekeys_count,
        .prekeys_take = sqlite_prekeys_take,
        .prekeys_drop = sqlite_prekeys_drop,
};
