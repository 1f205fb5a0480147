/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "macro.h"
#include "ratchet-store.h"
#include "sqlite-errno.h"

/* How long a process waits for another one's transaction: a `listen`
 * opening a burst must not make a `send` fail. */
#define RATCHET_BUSY_TIMEOUT_MS 10000
/* PRAGMA user_version once ratchet_schema is made (a new store says 0).
 * Bump it when the schema changes; the schema stays IF NOT EXISTS. */
#define RATCHET_SCHEMA_VERSION 1

struct RatchetStore {
        sqlite3 *db;
        bool in_transaction;
};

static const char ratchet_schema[] =
        "CREATE TABLE IF NOT EXISTS session ("
        "  peer TEXT NOT NULL,"
        "  device INTEGER NOT NULL,"
        "  peer_key TEXT NOT NULL,"       /* fingerprint of the key it was made with */
        "  state BLOB NOT NULL,"          /* ratchet_serialize() */
        "  updated INTEGER NOT NULL,"
        "  PRIMARY KEY (peer, device)"
        ");"
        "CREATE TABLE IF NOT EXISTS spk ("
        "  id INTEGER PRIMARY KEY,"
        "  priv BLOB NOT NULL,"
        "  public BLOB NOT NULL,"         /* signed_prekey_encode() */
        "  created INTEGER NOT NULL,"
        "  retired INTEGER"               /* NULL: the current one */
        ");"
        "CREATE TABLE IF NOT EXISTS opk ("
        "  id INTEGER PRIMARY KEY,"
        "  priv BLOB NOT NULL,"
        "  public BLOB NOT NULL"
        ");"
        /* The last id handed out per kind: ids are never reused. */
        "CREATE TABLE IF NOT EXISTS counter ("
        "  kind TEXT PRIMARY KEY,"
        "  value INTEGER NOT NULL"
        ");"
        "CREATE TABLE IF NOT EXISTS peer ("
        "  peer TEXT PRIMARY KEY,"
        "  prekeys_seen INTEGER NOT NULL"
        ");"
        "CREATE TABLE IF NOT EXISTS pending ("
        "  sender TEXT NOT NULL,"
        "  id BLOB NOT NULL,"
        "  digest BLOB NOT NULL,"
        "  text BLOB NOT NULL,"
        "  PRIMARY KEY (sender, id)"
        ");";

static int exec(RatchetStore *st, const char *sql) {
        return errno_from_sqlite(sqlite3_exec(st->db, sql, NULL, NULL, NULL));
}

static int prepare(RatchetStore *st, const char *sql, sqlite3_stmt **ret) {
        return errno_from_sqlite(sqlite3_prepare_v2(st->db, sql, -1, ret, NULL));
}

/* Step a statement that returns no row, and finalize it. */
static int step_done(sqlite3_stmt *stmt) {
        int rc = sqlite3_step(stmt);

        sqlite3_finalize(stmt);
        return rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
}

/* A query whose one row has one integer: 1 with *ret, 0 when no row. */
static int query_int(RatchetStore *st, const char *sql, const char *text, int64_t arg,
                     int64_t *ret) {
        sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = prepare(st, sql, &stmt);
        if (r < 0)
                return r;
        /* A statement without ?1 ignores the binding (SQLITE_RANGE). */
        if (text)
                sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
        else
                sqlite3_bind_int64(stmt, 1, arg);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                *ret = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
}

/* Copy a key column of exactly X25519_KEY_LEN bytes: 0, -ENOENT (no row),
 * -EBADMSG (damaged). */
static int query_key(RatchetStore *st, const char *sql, uint32_t id, uint8_t ret[X25519_KEY_LEN]) {
        sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = prepare(st, sql, &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                if (sqlite3_column_bytes(stmt, 0) == X25519_KEY_LEN) {
                        memcpy(ret, sqlite3_column_blob(stmt, 0), X25519_KEY_LEN);
                        r = 0;
                } else
                        r = -EBADMSG;
        } else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        sqlite3_finalize(stmt);
        return r;
}

int ratchet_store_open(ClientState *s, const char *user, RatchetStore **ret) {
        _cleanup_(ratchet_store_freep) RatchetStore *st = NULL;
        _cleanup_(freep) char *dir = NULL, *path = NULL;
        int64_t version = 0;
        int fd, r;

        if (!username_valid(user))
                return -EINVAL;
        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        dir = client_state_path(s, "ratchet");
        if (!dir || asprintf(&path, "%s/%s.db", dir, user) < 0)
                return -ENOMEM;
        r = mkdir_parents(dir, 0700);
        if (r < 0)
                return r;
        /* Create it 0600 ourselves: SQLite would follow the umask. */
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        close(fd);

        r = errno_from_sqlite(sqlite3_open_v2(path, &st->db,
                                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL));
        if (r >= 0)
                r = errno_from_sqlite(sqlite3_busy_timeout(st->db, RATCHET_BUSY_TIMEOUT_MS));
        /* secure_delete first: it must hold for every page freed later. */
        if (r >= 0)
                r = exec(st, "PRAGMA secure_delete = ON");
        /* The -wal and -shm files stay from one run to the next: making
         * them again at each open (and deleting them at each close) was
         * most of the time a one-shot send spent opening this store. The
         * WAL is emptied at every checkpoint, the one at the last close
         * included, so that no frame of a deleted key stays in it. */
        if (r >= 0)
                r = errno_from_sqlite(sqlite3_file_control(st->db, "main", SQLITE_FCNTL_PERSIST_WAL, &(int) { 1 }));
        if (r >= 0)
                r = exec(st, "PRAGMA journal_size_limit = 0");
        if (r >= 0)
                r = exec(st, "PRAGMA journal_mode = WAL");
        if (r >= 0)
                r = exec(st, "PRAGMA synchronous = FULL");
        /* A write transaction for the schema only when it is not there. */
        if (r >= 0)
                r = query_int(st, "PRAGMA user_version", NULL, 0, &version);
        if (r >= 0 && version < RATCHET_SCHEMA_VERSION) {
                r = ratchet_store_begin(st);
                if (r >= 0)
                        r = exec(st, ratchet_schema);
                if (r >= 0)
                        r = exec(st, "PRAGMA user_version = " STRINGIFY(RATCHET_SCHEMA_VERSION));
                if (r >= 0)
                        r = ratchet_store_commit(st);
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(st);
        return 0;
}

RatchetStore *ratchet_store_free(RatchetStore *st) {
        if (!st)
                return NULL;
        ratchet_store_rollback(st);
        sqlite3_close(st->db);
        free(st);
        return NULL;
}

int ratchet_store_begin(RatchetStore *st) {
        int r;

        if (st->in_transaction)
                return -EBUSY;
        r = exec(st, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        st->in_transaction = true;
        return 0;
}

int ratchet_store_commit(RatchetStore *st) {
        int r;

        if (!st->in_transaction)
                return -EINVAL;
        r = exec(st, "COMMIT");
        if (r < 0) {
                ratchet_store_rollback(st);
                return r;
        }
        st->in_transaction = false;
        /* Move every page into the database and empty the log, so that the
         * images of what this transaction overwrote (the previous chain
         * keys, an erased prekey) do not stay in it. Best effort: a reader
         * of another process may hold an old snapshot, and the next commit
         * tries again. */
        (void) sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        return 0;
}

void ratchet_store_rollback(RatchetStore *st) {
        if (!st->in_transaction)
                return;
        (void) exec(st, "ROLLBACK");
        st->in_transaction = false;
}

int ratchet_store_session_get(RatchetStore *st, const char *peer, uint32_t device,
                              const char *peer_key, Ratchet **ret) {
        sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = prepare(st, "SELECT state FROM session WHERE peer = ?1 AND device = ?2 AND peer_key = ?3",
                    &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, peer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, device);
        sqlite3_bind_text(stmt, 3, peer_key, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                r = ratchet_deserialize(sqlite3_column_blob(stmt, 0),
                                        (size_t) sqlite3_column_bytes(stmt, 0), ret);
        else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        /* SQLite's copy of the state goes with the statement; secure_delete
         * does not reach the heap, but the page cache is SQLite's own. */
        sqlite3_finalize(stmt);
        return r;
}

/* Overwrite the secret column of the matching rows with zeroes, then
 * delete them: what a deleted row leaves behind is zeroes even where
 * secure_delete does not reach (a page kept in the log). */
static int erase_rows(RatchetStore *st, const char *zero_sql, const char *delete_sql,
                      const char *text, const void *blob, size_t blob_len, int64_t arg) {
        const char *sqls[] = { zero_sql, delete_sql };

        for (size_t i = 0; i < ELEMENTSOF(sqls); i++) {
                sqlite3_stmt *stmt = NULL;
                int r;

                r = prepare(st, sqls[i], &stmt);
                if (r < 0)
                        return r;
                if (text) {
                        sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
                        if (blob)
                                sqlite3_bind_blob(stmt, 2, blob, (int) blob_len, SQLITE_STATIC);
                        else
                                sqlite3_bind_int64(stmt, 2, arg);
                } else
                        sqlite3_bind_int64(stmt, 1, arg);
                r = step_done(stmt);
                if (r < 0)
                        return r;
        }
        return 0;
}

int ratchet_store_session_put(RatchetStore *st, const char *peer, uint32_t device,
                              const char *peer_key, const Ratchet *r, uint64_t now) {
        sqlite3_stmt *stmt = NULL;
        uint8_t *state = NULL;
        size_t len;
        int q;

        q = ratchet_serialize(r, &state, &len);
        if (q < 0)
                return q;
        /* The old state is overwritten in place (an UPDATE, not a REPLACE
         * that would delete and reinsert): the old chain keys go at once. */
        q = prepare(st, "INSERT INTO session (peer, device, peer_key, state, updated) "
                        "VALUES (?1, ?2, ?5, ?3, ?4) ON CONFLICT (peer, device) "
                        "DO UPDATE SET peer_key = ?5, state = ?3, updated = ?4", &stmt);
        if (q >= 0) {
                sqlite3_bind_text(stmt, 1, peer, -1, SQLITE_STATIC);
                sqlite3_bind_int64(stmt, 2, device);
                sqlite3_bind_text(stmt, 5, peer_key, -1, SQLITE_STATIC);
                sqlite3_bind_blob(stmt, 3, state, (int) len, SQLITE_STATIC);
                sqlite3_bind_int64(stmt, 4, (int64_t) MIN(now, (uint64_t) INT64_MAX));
                q = step_done(stmt);
        }
        secure_free(state, len);
        return q;
}

int ratchet_store_session_key_changed(RatchetStore *st, const char *peer, uint32_t device,
                                      const char *peer_key) {
        sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = prepare(st, "SELECT peer_key <> ?3 FROM session WHERE peer = ?1 AND device = ?2", &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, peer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, device);
        sqlite3_bind_text(stmt, 3, peer_key, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        r = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) != 0 :
            rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
        sqlite3_finalize(stmt);
        return r;
}

int ratchet_store_session_erase(RatchetStore *st, const char *peer, uint32_t device) {
        return erase_rows(st,
                          "UPDATE session SET state = zeroblob(length(state)) "
                          "WHERE peer = ?1 AND device = ?2",
                          "DELETE FROM session WHERE peer = ?1 AND device = ?2",
                          peer, NULL, 0, device);
}

static int next_id(RatchetStore *st, const char *kind, uint32_t *ret) {
        sqlite3_stmt *stmt = NULL;
        int64_t v = 0;
        int r;

        r = prepare(st, "INSERT INTO counter (kind, value) VALUES (?1, 1) "
                        "ON CONFLICT (kind) DO UPDATE SET value = value + 1", &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, kind, -1, SQLITE_STATIC);
        r = step_done(stmt);
        if (r < 0)
                return r;
        r = query_int(st, "SELECT value FROM counter WHERE kind = ?1", kind, 0, &v);
        if (r < 0)
                return r;
        /* 2^32 ids: at 100 a day, more than a lifetime; refuse rather than
         * wrap into ids that senders may still hold. */
        if (r == 0 || v <= 0 || v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int ratchet_store_next_spk_id(RatchetStore *st, uint32_t *ret) {
        return next_id(st, "spk", ret);
}

int ratchet_store_next_opk_id(RatchetStore *st, uint32_t *ret) {
        return next_id(st, "opk", ret);
}

int ratchet_store_spk_add(RatchetStore *st, const SignedPrekey *spk,
                          const uint8_t priv[X25519_KEY_LEN], uint64_t now) {
        _cleanup_(freep) uint8_t *pub = NULL;
        sqlite3_stmt *stmt = NULL;
        size_t len;
        int r;

        r = signed_prekey_encode(spk, &pub, &len);
        if (r < 0)
                return r;
        r = prepare(st, "UPDATE spk SET retired = ?1 WHERE retired IS NULL", &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, (int64_t) MIN(now, (uint64_t) INT64_MAX));
        r = step_done(stmt);
        if (r < 0)
                return r;
        r = prepare(st, "INSERT INTO spk (id, priv, public, created, retired) "
                        "VALUES (?1, ?2, ?3, ?4, NULL)", &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, spk->id);
        sqlite3_bind_blob(stmt, 2, priv, X25519_KEY_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(stmt, 3, pub, (int) len, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 4, (int64_t) MIN(spk->created, (uint64_t) INT64_MAX));
        return step_done(stmt);
}

int ratchet_store_spk_current(RatchetStore *st, SignedPrekey *ret) {
        sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = prepare(st, "SELECT public FROM spk WHERE retired IS NULL", &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                r = signed_prekey_parse(sqlite3_column_blob(stmt, 0),
                                        (size_t) sqlite3_column_bytes(stmt, 0), ret);
        else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        sqlite3_finalize(stmt);
        return r;
}

int ratchet_store_spk_private(RatchetStore *st, uint32_t id, uint8_t ret[X25519_KEY_LEN]) {
        return query_key(st, "SELECT priv FROM spk WHERE id = ?1", id, ret);
}

int ratchet_store_spk_expire(RatchetStore *st, uint64_t now, uint64_t keep) {
        int64_t before = (int64_t) MIN(now > keep ? now - keep : 0, (uint64_t) INT64_MAX);
        int64_t n = 0;
        int r;

        r = query_int(st, "SELECT count(*) FROM spk WHERE retired IS NOT NULL AND retired <= ?1",
                      NULL, before, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return 0;
        r = erase_rows(st,
                       "UPDATE spk SET priv = zeroblob(length(priv)) "
                       "WHERE retired IS NOT NULL AND retired <= ?1",
                       "DELETE FROM spk WHERE retired IS NOT NULL AND retired <= ?1",
                       NULL, NULL, 0, before);
        return r < 0 ? r : (int) n;
}

int ratchet_store_spk_retired_count(RatchetStore *st) {
        int64_t n = 0;
        int r;

        r = query_int(st, "SELECT count(*) FROM spk WHERE retired IS NOT NULL", NULL, 0, &n);
        return r < 0 ? r : (int) n;
}

int ratchet_store_opk_add(RatchetStore *st, const OneTimePrekey *opk,
                          const uint8_t priv[X25519_KEY_LEN]) {
        sqlite3_stmt *stmt = NULL;
        int r;

        r = prepare(st, "INSERT INTO opk (id, priv, public) VALUES (?1, ?2, ?3)", &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, opk->id);
        sqlite3_bind_blob(stmt, 2, priv, X25519_KEY_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(stmt, 3, opk->pub, X25519_KEY_LEN, SQLITE_STATIC);
        return step_done(stmt);
}

int ratchet_store_opk_private(RatchetStore *st, uint32_t id, uint8_t ret[X25519_KEY_LEN]) {
        return query_key(st, "SELECT priv FROM opk WHERE id = ?1", id, ret);
}

int ratchet_store_opk_erase(RatchetStore *st, uint32_t id) {
        return erase_rows(st, "UPDATE opk SET priv = zeroblob(length(priv)) WHERE id = ?1",
                          "DELETE FROM opk WHERE id = ?1", NULL, NULL, 0, id);
}

int ratchet_store_opk_count(RatchetStore *st) {
        int64_t n = 0;
        int r;

        r = query_int(st, "SELECT count(*) FROM opk", NULL, 0, &n);
        return r < 0 ? r : (int) n;
}

int ratchet_store_peer_had_prekeys(RatchetStore *st, const char *peer) {
        int64_t v = 0;
        int r;

        r = query_int(st, "SELECT prekeys_seen FROM peer WHERE peer = ?1", peer, 0, &v);
        return r < 0 ? r : r > 0;
}

int ratchet_store_peer_saw_prekeys(RatchetStore *st, const char *peer, uint64_t now) {
        sqlite3_stmt *stmt = NULL;
        int r;

        r = prepare(st, "INSERT INTO peer (peer, prekeys_seen) VALUES (?1, ?2) "
                        "ON CONFLICT (peer) DO UPDATE SET prekeys_seen = ?2", &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, peer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, (int64_t) MIN(MAX(now, 1u), (uint64_t) INT64_MAX));
        return step_done(stmt);
}

int ratchet_store_pending_put(RatchetStore *st, const char *from, const uint8_t id[MSG_ID_LEN],
                              const uint8_t digest[ENVELOPE_DIGEST_LEN], const char *text,
                              size_t len) {
        sqlite3_stmt *stmt = NULL;
        int r;

        if (len > INT32_MAX)
                return -EFBIG;
        r = prepare(st, "INSERT INTO pending (sender, id, digest, text) VALUES (?1, ?2, ?3, ?4)",
                    &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, from, -1, SQLITE_STATIC);
        sqlite3_bind_blob(stmt, 2, id, MSG_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(stmt, 3, digest, ENVELOPE_DIGEST_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(stmt, 4, text, (int) len, SQLITE_STATIC);
        return step_done(stmt);
}

int ratchet_store_pending_get(RatchetStore *st, const char *from, const uint8_t id[MSG_ID_LEN],
                              const uint8_t digest[ENVELOPE_DIGEST_LEN], char **ret_text,
                              size_t *ret_len) {
        sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = prepare(st, "SELECT digest, text FROM pending WHERE sender = ?1 AND id = ?2", &stmt);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, from, -1, SQLITE_STATIC);
        sqlite3_bind_blob(stmt, 2, id, MSG_ID_LEN, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                size_t len = (size_t) sqlite3_column_bytes(stmt, 1);
                char *text;

                if (sqlite3_column_bytes(stmt, 0) != ENVELOPE_DIGEST_LEN ||
                    memcmp(sqlite3_column_blob(stmt, 0), digest, ENVELOPE_DIGEST_LEN) != 0)
                        r = -EEXIST;
                else if (!(text = malloc(len + 1)))
                        r = -ENOMEM;
                else {
                        if (len > 0)
                                memcpy(text, sqlite3_column_blob(stmt, 1), len);
                        text[len] = '\0';
                        *ret_text = text;
                        *ret_len = len;
                        r = 0;
                }
        } else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        sqlite3_finalize(stmt);
        return r;
}

int ratchet_store_pending_erase(RatchetStore *st, const char *from, const uint8_t id[MSG_ID_LEN]) {
        return erase_rows(st, "UPDATE pending SET text = zeroblob(length(text)) "
                              "WHERE sender = ?1 AND id = ?2",
                          "DELETE FROM pending WHERE sender = ?1 AND id = ?2",
                          from, id, MSG_ID_LEN, 0);
}
