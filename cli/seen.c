/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "b64.h"
#include "macro.h"
#include "seen.h"
#include "sqlite-errno.h"

/* How long a process waits for another one's transaction. */
#define SEEN_BUSY_TIMEOUT_MS 10000
/* Adds between two checks of the size bound while running. */
#define SEEN_PRUNE_EVERY 1024

DEFINE_TRIVIAL_CLEANUP_FUNC(FILE *, fclose);

struct SeenStore {
        ClientState *state;
        sqlite3 *db;
        uint64_t window;
        uint64_t max;
        uint64_t adds;                  /* since open */
};

static const char seen_schema[] =
        "CREATE TABLE IF NOT EXISTS seen ("
        "  sender TEXT NOT NULL,"
        "  id BLOB NOT NULL,"
        "  ts INTEGER NOT NULL,"          /* the envelope's */
        "  digest BLOB NOT NULL,"         /* empty: imported, content unknown */
        "  PRIMARY KEY (sender, id)"
        ") WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS seen_by_ts ON seen (ts);"
        /* Envelopes at or before this time count as expired: their entries
         * were dropped to keep the size bound. */
        "CREATE TABLE IF NOT EXISTS floor (ts INTEGER NOT NULL);";

static int exec(SeenStore *st, const char *sql) {
        return errno_from_sqlite(sqlite3_exec(st->db, sql, NULL, NULL, NULL));
}

/* Prepare sql, bind the int64 arguments (?1, ?2, ...), step once. Returns
 * 1 with *ret_value (may be NULL) the first column when a row came, 0 when
 * none did, or negative errno. */
static int run(SeenStore *st, const char *sql, int64_t *ret_value, size_t n, ...) {
        sqlite3_stmt *stmt = NULL;
        va_list ap;
        int rc;

        rc = sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        va_start(ap, n);
        for (size_t i = 0; i < n; i++)
                sqlite3_bind_int64(stmt, (int) i + 1, va_arg(ap, int64_t));
        va_end(ap);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW && ret_value)
                *ret_value = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
}

static uint64_t clamp_ts(uint64_t ts) {
        return MIN(ts, (uint64_t) INT64_MAX);
}

static int floor_get(SeenStore *st, uint64_t *ret) {
        int64_t v = 0;
        int r;

        r = run(st, "SELECT coalesce(max(ts), 0) FROM floor", &v, 0);
        if (r < 0)
                return r;
        *ret = v > 0 ? (uint64_t) v : 0;
        return 0;
}

/* Drop what is older than the window, then the oldest entries over max,
 * raising the floor to the newest of those. Runs in one transaction. */
static int seen_prune(SeenStore *st, uint64_t now) {
        uint64_t oldest = now > st->window ? now - st->window : 0;
        int64_t count = 0, cut = 0;
        int r;

        r = run(st, "DELETE FROM seen WHERE ts < ?1", NULL, 1, (int64_t) clamp_ts(oldest));
        if (r < 0)
                return r;
        r = run(st, "SELECT count(*) FROM seen", &count, 0);
        if (r < 0)
                return r;
        if ((uint64_t) count <= st->max)
                return 0;
        r = run(st, "SELECT ts FROM seen ORDER BY ts LIMIT 1 OFFSET ?1", &cut, 1,
                (int64_t) ((uint64_t) count - st->max - 1));
        if (r < 0)
                return r;
        /* Everything up to and including cut goes (entries of the same
         * second cannot be told apart by the floor). */
        r = run(st, "DELETE FROM floor", NULL, 0);
        if (r >= 0)
                r = run(st, "INSERT INTO floor (ts) VALUES (?1)", NULL, 1, cut);
        if (r >= 0)
                r = run(st, "DELETE FROM seen WHERE ts <= ?1", NULL, 1, cut);
        return r;
}

/* seen/USER of earlier versions: "ts from id_b64" lines, without digests.
 * Read line by line (whatever its size), into the table, then removed. */
static int seen_import(SeenStore *st, const char *path) {
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        _cleanup_(freep) char *line = NULL;
        sqlite3_stmt *stmt = NULL;
        size_t cap = 0;
        int rc, r = 0;

        if (!f)
                return errno == ENOENT ? 0 : -errno;
        rc = sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO seen (sender, id, ts, digest) "
                                        "VALUES (?1, ?2, ?3, x'')", -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        while (getline(&line, &cap, f) > 0) {
                char from[USERNAME_MAX + 2], idb64[32];
                _cleanup_(freep) uint8_t *id = NULL;
                size_t id_len;
                uint64_t ts;

                if (sscanf(line, "%" SCNu64 " %33s %31s", &ts, from, idb64) != 3 ||
                    !username_valid(from) || b64_decode(idb64, strlen(idb64), &id, &id_len) < 0 ||
                    id_len != MSG_ID_LEN)
                        continue;       /* damaged: nothing to keep */
                sqlite3_bind_text(stmt, 1, from, -1, SQLITE_TRANSIENT);
                sqlite3_bind_blob(stmt, 2, id, MSG_ID_LEN, SQLITE_TRANSIENT);
                sqlite3_bind_int64(stmt, 3, (int64_t) clamp_ts(ts));
                rc = sqlite3_step(stmt);
                sqlite3_reset(stmt);
                if (rc != SQLITE_DONE) {
                        r = errno_from_sqlite(rc);
                        break;
                }
        }
        sqlite3_finalize(stmt);
        return r;
}

int seen_open_max(ClientState *s, const char *user, uint64_t window, uint64_t now, uint64_t max,
                  SeenStore **ret) {
        _cleanup_(seen_freep) SeenStore *st = NULL;
        _cleanup_(freep) char *dir = NULL, *path = NULL, *old = NULL;
        int r;

        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        st->state = s;
        st->window = window;
        st->max = max;
        dir = client_state_path(s, "seen");
        if (!dir || asprintf(&path, "%s/%s.db", dir, user) < 0 || asprintf(&old, "%s/%s", dir, user) < 0)
                return -ENOMEM;
        r = mkdir_parents(dir, 0700);
        if (r < 0)
                return r;

        r = client_state_lock(s);
        if (r < 0)
                return r;
        r = errno_from_sqlite(sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                            NULL));
        if (r >= 0)
                r = errno_from_sqlite(sqlite3_busy_timeout(st->db, SEEN_BUSY_TIMEOUT_MS));
        if (r >= 0)
                r = exec(st, "PRAGMA journal_mode = WAL");
        if (r >= 0)
                r = exec(st, "PRAGMA synchronous = FULL");
        if (r >= 0)
                r = exec(st, "BEGIN IMMEDIATE");
        if (r >= 0) {
                r = exec(st, seen_schema);
                if (r >= 0)
                        r = seen_import(st, old);
                if (r >= 0)
                        r = seen_prune(st, now);
                r = r >= 0 ? exec(st, "COMMIT") : (exec(st, "ROLLBACK"), r);
        }
        /* Imported and committed: the old file has done its work. */
        if (r >= 0 && unlink(old) < 0 && errno != ENOENT)
                r = -errno;
        client_state_unlock(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(st);
        return 0;
}

int seen_open(ClientState *s, const char *user, uint64_t window, uint64_t now, SeenStore **ret) {
        return seen_open_max(s, user, window, now, SEEN_MAX, ret);
}

SeenStore *seen_free(SeenStore *st) {
        if (!st)
                return NULL;
        sqlite3_close(st->db);
        free(st);
        return NULL;
}

size_t seen_count(SeenStore *st) {
        int64_t n = 0;

        return run(st, "SELECT count(*) FROM seen", &n, 0) > 0 ? (size_t) n : 0;
}

int seen_check(SeenStore *st, const char *from, const uint8_t id[MSG_ID_LEN], uint64_t ts,
               const uint8_t digest[ENVELOPE_DIGEST_LEN]) {
        sqlite3_stmt *stmt = NULL;
        uint64_t floor_ts;
        int rc, r;

        r = floor_get(st, &floor_ts);
        if (r < 0)
                return r;
        rc = sqlite3_prepare_v2(st->db, "SELECT digest FROM seen WHERE sender = ?1 AND id = ?2", -1,
                                &stmt, NULL);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_bind_text(stmt, 1, from, -1, SQLITE_STATIC);
        sqlite3_bind_blob(stmt, 2, id, MSG_ID_LEN, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                const void *d = sqlite3_column_blob(stmt, 0);
                int n = sqlite3_column_bytes(stmt, 0);

                /* An imported entry has no digest: the benign case is by
                 * far the likelier one. */
                r = n == 0 || (n == ENVELOPE_DIGEST_LEN && memcmp(d, digest, n) == 0) ?
                    ENVELOPE_SEEN_SAME : ENVELOPE_SEEN_OTHER;
        } else if (rc == SQLITE_DONE)
                r = ts <= floor_ts ? ENVELOPE_SEEN_FORGOTTEN : ENVELOPE_SEEN_NO;
        else
                r = errno_from_sqlite(rc);
        sqlite3_finalize(stmt);
        return r;
}

int seen_add(SeenStore *st, const char *from, const uint8_t id[MSG_ID_LEN], uint64_t ts,
             const uint8_t digest[ENVELOPE_DIGEST_LEN]) {
        sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = client_state_lock(st->state);
        if (r < 0)
                return r;
        rc = sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO seen (sender, id, ts, digest) "
                                        "VALUES (?1, ?2, ?3, ?4)", -1, &stmt, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(stmt, 1, from, -1, SQLITE_STATIC);
                sqlite3_bind_blob(stmt, 2, id, MSG_ID_LEN, SQLITE_STATIC);
                sqlite3_bind_int64(stmt, 3, (int64_t) clamp_ts(ts));
                sqlite3_bind_blob(stmt, 4, digest, ENVELOPE_DIGEST_LEN, SQLITE_STATIC);
                rc = sqlite3_step(stmt);
        }
        sqlite3_finalize(stmt);
        r = rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
        /* Keep the size bound while a flood goes on, not only at start;
         * counting is a scan, so not at every message. */
        if (r >= 0 && ++st->adds % SEEN_PRUNE_EVERY == 0 && seen_count(st) > st->max) {
                r = exec(st, "BEGIN IMMEDIATE");
                if (r >= 0) {
                        r = seen_prune(st, now_unix());
                        r = r >= 0 ? exec(st, "COMMIT") : (exec(st, "ROLLBACK"), r);
                }
        }
        client_state_unlock(st->state);
        return r;
}
