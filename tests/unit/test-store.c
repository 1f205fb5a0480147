/* SPDX-License-Identifier: MIT */
/* The relay's store: registry, queue, expiry, durability across close and
 * reopen, schema versioning. Every case that is not about SQLite's file
 * runs on SQLite and, when SC_TEST_DATABASE holds a postgresql:// URI, on
 * that database too (emptied before each case: it is the test's own). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include "macro.h"
#include "rsa.h"
#include "store.h"
#include "util.h"
#include "sqlite-vfs.h"
#include "test-main.h"

static char tmpdir[256];
static char dbpath[300];
static const char *pg_uri;      /* SC_TEST_DATABASE */
static sd_event *event;

/* The backends a generic case runs on, its loop index _i. */
enum { BACKEND_SQLITE, BACKEND_PG };
#define N_BACKENDS (pg_uri ? 2 : 1)

/* SQL on the test's own connection to the PostgreSQL database. */
static void pg_exec(const char *sql) {
        PGconn *c = PQconnectdb(pg_uri);
        PGresult *res;

        ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
        res = PQexec(c, sql);
        ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK,
                      "%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(c);
}

static void setup(void) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-store-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        snprintf(dbpath, sizeof(dbpath), "%s/securechatd.db", tmpdir);
        ck_assert_int_ge(sd_event_new(&event), 0);
        if (pg_uri)
                pg_exec("SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public");
}

static void teardown(void) {
        char cmd[300];

        event = sd_event_unref(event);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        ck_assert_int_eq(system(cmd), 0);
}

static int open_pg(uint64_t timeout_usec, const char *name, Store **ret) {
        StoreOptions o = { .timeout_usec = timeout_usec, .event = event, .application_name = name };

        return store_open_postgresql(pg_uri, &o, ret);
}

static int open_backend(int backend, Store **ret) {
        if (backend == BACKEND_PG)
                return open_pg(5 * 1000 * 1000, "test-store", ret);
        return store_open(dbpath, ret);
}

/* The first column of the first row of sql, a number, as the database
 * itself says (not the store). */
static uint64_t query_u64(int backend, const char *sql) {
        uint64_t v;

        if (backend == BACKEND_PG) {
                PGconn *c = PQconnectdb(pg_uri);
                PGresult *res;

                ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
                res = PQexec(c, sql);
                ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
                              PQresultErrorMessage(res));
                v = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
                PQclear(res);
                PQfinish(c);
        } else {
                sqlite3 *db = NULL;
                sqlite3_stmt *st = NULL;

                ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
                ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
                ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
                v = (uint64_t) sqlite3_column_int64(st, 0);
                sqlite3_finalize(st);
                sqlite3_close(db);
        }
        return v;
}

/* The queue's table in each backend. */
static const char *queue_table(int backend) {
        return backend == BACKEND_PG ? "sc_queue" : "queue";
}

/* A key package with recognisable bytes; the store does not care whether
 * they are a real key. */
static KeyPackage *package(const char *user, uint8_t fill, uint64_t registered) {
        KeyPackage *kp = calloc(1, sizeof(*kp));

        ck_assert_ptr_nonnull(kp);
        snprintf(kp->user, sizeof(kp->user), "%s", user);
        kp->key_len = 294;
        kp->key = malloc(kp->key_len);
        kp->sig_len = 384;
        kp->sig = malloc(kp->sig_len);
        ck_assert_ptr_nonnull(kp->key);
        ck_assert_ptr_nonnull(kp->sig);
        memset(kp->key, fill, kp->key_len);
        memset(kp->sig, fill ^ 0xff, kp->sig_len);
        kp->registered = registered;
        return kp;
}

static void assert_same_package(const KeyPackage *a, const KeyPackage *b) {
        ck_assert_str_eq(a->user, b->user);
        ck_assert_uint_eq(a->key_len, b->key_len);
        ck_assert_mem_eq(a->key, b->key, a->key_len);
        ck_assert_uint_eq(a->sig_len, b->sig_len);
        ck_assert_mem_eq(a->sig, b->sig, a->sig_len);
        ck_assert_uint_eq(a->registered, b->registered);
}

static StoreMessage message(const char *from, const char *to, const char *id, const char *envelope,
                            uint64_t received, uint64_t expires) {
        StoreMessage m = {
                .envelope = (char *) envelope,
                .size = strlen(envelope),
                .received = received,
                .expires = expires,
        };

        snprintf(m.sender, sizeof(m.sender), "%s", from);
        snprintf(m.recipient, sizeof(m.recipient), "%s", to);
        snprintf(m.msg_id, sizeof(m.msg_id), "%s", id);
        return m;
}

typedef struct Seen {
        unsigned n;
        char users[8][USERNAME_MAX + 1];
        char fingerprints[8][RSA_FINGERPRINT_MAX];
} Seen;

static int collect_user(void *userdata, const KeyPackage *kp, const char *fingerprint) {
        Seen *seen = userdata;

        ck_assert_uint_lt(seen->n, 8);
        snprintf(seen->users[seen->n], sizeof(seen->users[0]), "%s", kp->user);
        snprintf(seen->fingerprints[seen->n], sizeof(seen->fingerprints[0]), "%s", fingerprint);
        seen->n++;
        return 0;
}

START_TEST(test_registry) {
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(key_package_freep) KeyPackage *alice = package("alice", 0x11, 1700000000);
        _cleanup_(key_package_freep) KeyPackage *bob = package("bob", 0x22, 1700000100);
        _cleanup_(key_package_freep) KeyPackage *alice2 = package("alice", 0x33, 1700000200);
        _cleanup_(key_package_freep) KeyPackage *got = NULL;
        char fp[RSA_FINGERPRINT_MAX];
        Seen seen = {};
        uint64_t n = 99;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_int_eq(store_user_count(s, &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(store_user_get(s, "alice", &got), -ENOENT);
        ck_assert_int_eq(store_user_exists(s, "alice"), 0);

        ck_assert_int_eq(store_user_add(s, alice), 0);
        ck_assert_int_eq(store_user_add(s, bob), 0);
        /* A name is registered once: a second key is refused. */
        ck_assert_int_eq(store_user_add(s, alice2), -EEXIST);

        ck_assert_int_eq(store_user_get(s, "alice", &got), 0);
        assert_same_package(got, alice);
        ck_assert_int_eq(store_user_exists(s, "bob"), 1);
        ck_assert_int_eq(store_user_exists(s, "carol"), 0);
        ck_assert_int_eq(store_user_count(s, &n), 0);
        ck_assert_uint_eq(n, 2);

        ck_assert_int_eq(store_user_foreach(s, collect_user, &seen), 0);
        ck_assert_uint_eq(seen.n, 2);
        ck_assert_str_eq(seen.users[0], "alice");
        ck_assert_str_eq(seen.users[1], "bob");
        rsa_fingerprint_spki(bob->key, bob->key_len, fp);
        ck_assert_str_eq(seen.fingerprints[1], fp);
        ck_assert_int_eq(strncmp(fp, "SHA256:", 7), 0);

        ck_assert_int_eq(store_user_delete(s, "alice"), 0);
        ck_assert_int_eq(store_user_delete(s, "alice"), -ENOENT);
        ck_assert_int_eq(store_user_exists(s, "alice"), 0);
        /* After a reset the name can be registered with a new key. */
        ck_assert_int_eq(store_user_add(s, alice2), 0);
        key_package_free(got);
        got = NULL;
        ck_assert_int_eq(store_user_get(s, "alice", &got), 0);
        assert_same_package(got, alice2);
}
END_TEST

/* The count of one sender's messages to one recipient runs at every send:
 * it must be an index lookup, also in a database made by an older version
 * (the index is created at open, not with a schema version). */
/* A rotation statement with recognisable bytes: the store keeps it and
 * does not check its signatures (the relay did). */
static Rotation *rotation(const char *user, uint8_t from, uint8_t to) {
        Rotation *r = calloc(1, sizeof(*r));

        ck_assert_ptr_nonnull(r);
        snprintf(r->user, sizeof(r->user), "%s", user);
        r->old_key_len = r->new_key_len = 294;
        r->old_sig_len = r->new_sig_len = 256;
        r->old_key = malloc(294);
        r->new_key = malloc(294);
        r->old_sig = malloc(256);
        r->new_sig = malloc(256);
        ck_assert(r->old_key && r->new_key && r->old_sig && r->new_sig);
        memset(r->old_key, from, 294);
        memset(r->new_key, to, 294);
        memset(r->old_sig, 0x01, 256);
        memset(r->new_sig, 0x02, 256);
        r->time = 1700000000 + to;
        return r;
}

/* A rotation replaces the key only while the old one is registered, keeps
 * the last ROTATION_CHAIN_MAX statements oldest first, survives a reopen
 * and goes with the user. */
START_TEST(test_rotate) {
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(key_package_freep) KeyPackage *bob = package("bob", 0x20, 1700000000), *got = NULL;
        uint8_t key = 0x20;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_int_eq(store_user_add(s, bob), 0);
        ck_assert_int_eq(store_user_get(s, "bob", &got), 0);
        ck_assert_uint_eq(got->n_rotations, 0);
        ck_assert_ptr_null(got->rotations);

        for (unsigned i = 1; i <= ROTATION_CHAIN_MAX + 2; i++, key++) {
                _cleanup_(key_package_freep) KeyPackage *next = package("bob", key + 1, 1700000000 + i);
                _cleanup_(rotation_freep) Rotation *r = rotation("bob", key, key + 1);

                ck_assert_int_eq(store_user_rotate(s, next, r), 0);
                /* The same statement again: its old key is gone. */
                ck_assert_int_eq(store_user_rotate(s, next, r), -ESTALE);
                got = key_package_free(got);
                ck_assert_int_eq(store_user_get(s, "bob", &got), 0);
                assert_same_package(got, next);
                ck_assert_uint_eq(got->n_rotations, MIN(i, (unsigned) ROTATION_CHAIN_MAX));
                ck_assert_uint_eq(got->rotations[got->n_rotations - 1]->new_key[0], key + 1);
        }

        store_free(s);
        s = NULL;
        ck_assert_int_eq(open_backend(_i, &s), 0);
        got = key_package_free(got);
        ck_assert_int_eq(store_user_get(s, "bob", &got), 0);
        ck_assert_uint_eq(got->n_rotations, ROTATION_CHAIN_MAX);
        /* Oldest first, each step from the previous one's key. */
        ck_assert_uint_eq(got->rotations[0]->old_key[0], key - ROTATION_CHAIN_MAX);
        for (size_t i = 1; i < got->n_rotations; i++)
                ck_assert_mem_eq(got->rotations[i]->old_key, got->rotations[i - 1]->new_key, 294);
        ck_assert_uint_eq(got->rotations[ROTATION_CHAIN_MAX - 1]->new_key[0], key);

        /* A reset forgets them with the key. */
        ck_assert_int_eq(store_user_delete(s, "bob"), 0);
        ck_assert_int_eq(store_user_add(s, bob), 0);
        got = key_package_free(got);
        ck_assert_int_eq(store_user_get(s, "bob", &got), 0);
        ck_assert_uint_eq(got->n_rotations, 0);

        /* An unknown user has no key to rotate. */
        {
                _cleanup_(key_package_freep) KeyPackage *carol = package("carol", 0x70, 1);
                _cleanup_(rotation_freep) Rotation *r = rotation("carol", 0x6f, 0x70);

                ck_assert_int_eq(store_user_rotate(s, carol, r), -ESTALE);
        }
}
END_TEST

/* The per-sender count is kept in memory: the index that counted it once
 * would only slow every insert and delete, and goes at open. */
START_TEST(test_queue_sender_index_dropped) {
        _cleanup_(store_freep) Store *s = NULL;
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        s = store_free(s);
        ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db, "CREATE INDEX queue_by_recipient_sender ON queue (recipient, sender)",
                                      NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                            "name = 'queue_by_recipient_sender'", -1, &st, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        ck_assert_int_eq(sqlite3_column_int(st, 0), 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
}
END_TEST

/* The counts every send reads are kept in memory: after any mix of adds,
 * takes, expiry, drops and a rolled-back transaction they equal a count
 * over the queue itself. */
static void assert_counts_exact(Store *s, int backend) {
        static const char *const users[] = { "alice", "bob", "carol", "dave" };
        const char *q = queue_table(backend);
        uint64_t total, bytes;
        char sql[160];

        for (const char *const *to = users; to < users + ELEMENTSOF(users); to++) {
                uint64_t count, expected;

                snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE recipient = '%s'", q, *to);
                expected = query_u64(backend, sql);
                ck_assert_int_eq(store_queue_count(s, *to, &count), 0);
                ck_assert_uint_eq(count, expected);

                for (const char *const *from = users; from < users + ELEMENTSOF(users); from++) {
                        uint64_t all, n_from;

                        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE recipient = '%s' "
                                 "AND sender = '%s'", q, *to, *from);
                        expected = query_u64(backend, sql);
                        ck_assert_int_eq(store_queue_counts(s, *to, *from, &all, &n_from), 0);
                        ck_assert_uint_eq(all, count);
                        ck_assert_uint_eq(n_from, expected);
                }
        }
        ck_assert_int_eq(store_queue_totals(s, &total, NULL), 0);
        ck_assert_int_eq(store_queue_totals(s, NULL, &bytes), 0);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", q);
        ck_assert_uint_eq(total, query_u64(backend, sql));
        snprintf(sql, sizeof(sql), "SELECT coalesce(sum(size), 0) FROM %s", q);
        ck_assert_uint_eq(bytes, query_u64(backend, sql));
}

START_TEST(test_queue_counts) {
        static const char *const users[] = { "alice", "bob", "carol", "dave" };
        _cleanup_(store_freep) Store *s = NULL;
        uint64_t seqs[400];
        size_t n_seqs = 0;
        unsigned state = 12345;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        for (unsigned round = 0; round < 600; round++) {
                unsigned x;

                state = state * 1103515245u + 12345u;
                x = (state >> 8) % 100;
                if (x < 60 && n_seqs < ELEMENTSOF(seqs)) {
                        char id[32], text[64];
                        StoreMessage m;

                        snprintf(id, sizeof(id), "id%u", round);
                        snprintf(text, sizeof(text), "{\"n\":%u%*s}", round, (int) (round % 17), "");
                        m = message(users[(state >> 12) % 4], users[(state >> 16) % 4], id, text,
                                    100, 100 + (state >> 20) % 50);
                        ck_assert_int_eq(store_queue_add(s, &m), 0);
                        seqs[n_seqs++] = m.seq;
                } else if (x < 85 && n_seqs > 0) {
                        size_t i = (state >> 12) % n_seqs;
                        StoreMessage m;
                        int r;

                        /* Not knowing the recipient, try each: one takes it. */
                        r = -ENOENT;
                        for (const char *const *u = users; u < users + ELEMENTSOF(users); u++)
                                if (r == -ENOENT)
                                        r = store_queue_take(s, *u, seqs[i], &m);
                        ck_assert(r == 0 || r == -ENOENT);      /* expired or dropped meanwhile */
                        seqs[i] = seqs[--n_seqs];
                } else if (x < 92)
                        ck_assert_int_ge(store_queue_expire(s, 100 + round % 50, 5, NULL, NULL), 0);
                else if (x < 96) {
                        uint64_t dropped;

                        ck_assert_int_eq(store_queue_drop(s, users[(state >> 12) % 4], &dropped), 0);
                } else {
                        /* A batch that is rolled back leaves no trace:
                         * neither its add nor its take (of a message
                         * that stays queued). */
                        StoreMessage m = message("alice", "bob", "rolled-back", "{}", 100, 200);
                        uint64_t total;

                        ck_assert_int_eq(store_begin(s), 0);
                        ck_assert_int_eq(store_queue_add(s, &m), 0);
                        ck_assert_int_eq(store_queue_take(s, "bob", m.seq, NULL), 0);
                        ck_assert_int_eq(store_queue_add(s, &m), 0);
                        if (n_seqs > 0)
                                for (const char *const *u = users; u < users + ELEMENTSOF(users); u++)
                                        (void) store_queue_take(s, *u, seqs[0], NULL);
                        ck_assert_int_eq(store_queue_totals(s, &total, NULL), 0);
                        store_rollback(s);
                        ck_assert(!store_in_transaction(s));
                }
                if (round % 50 == 0)
                        assert_counts_exact(s, _i);
        }
        assert_counts_exact(s, _i);

        /* Counted from the queue at open: rows changed while the relay was
         * down (by hand, or by an older relay, whose count tables and
         * triggers go at open) are counted as they are. On PostgreSQL,
         * where other relays change the queue, counted at each use. */
        if (_i == BACKEND_PG) {
                pg_exec("DELETE FROM sc_queue WHERE seq % 3 = 0");
                assert_counts_exact(s, _i);
                return;
        }
        s = store_free(s);
        {
                sqlite3 *db = NULL;
                sqlite3_stmt *st = NULL;

                ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
                ck_assert_int_eq(sqlite3_exec(db, "DELETE FROM queue WHERE seq % 3 = 0;"
                                              "CREATE TABLE queue_senders (n INTEGER);"
                                              "CREATE TRIGGER queue_counts_insert AFTER INSERT ON queue "
                                              "BEGIN INSERT INTO queue_senders VALUES (1); END;",
                                              NULL, NULL, NULL), SQLITE_OK);
                sqlite3_close(db);

                ck_assert_int_eq(store_open(dbpath, &s), 0);
                assert_counts_exact(s, _i);
                ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
                ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                                    "('queue_senders', 'queue_counts_insert')",
                                                    -1, &st, NULL), SQLITE_OK);
                ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
                ck_assert_int_eq(sqlite3_column_int(st, 0), 0);
                sqlite3_finalize(st);
                sqlite3_close(db);
        }
}
END_TEST

/* Every statement a send runs is a lookup by key, never a scan. */
START_TEST(test_send_statements_indexed) {
        static const char *const sql[] = {
                "SELECT key, registered, signature FROM users WHERE name = 'bob'",
                "SELECT seq FROM queue WHERE sender = 'alice' AND msg_id = 'x' AND envelope = '{}'",
                "SELECT coalesce(max(seq), 0) FROM queue WHERE recipient = 'bob'",
                "DELETE FROM queue WHERE seq = 1",
                "DELETE FROM queue WHERE seq = 1 AND recipient = 'bob' RETURNING sender, size",
        };
        _cleanup_(store_freep) Store *s = NULL;
        sqlite3 *db = NULL;

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
        for (const char *const *q = sql; q < sql + ELEMENTSOF(sql); q++) {
                sqlite3_stmt *st = NULL;
                char explain[512];

                snprintf(explain, sizeof(explain), "EXPLAIN QUERY PLAN %s", *q);
                ck_assert_int_eq(sqlite3_prepare_v2(db, explain, -1, &st, NULL), SQLITE_OK);
                while (sqlite3_step(st) == SQLITE_ROW) {
                        const char *detail = (const char *) sqlite3_column_text(st, 3);

                        /* "SCAN CONSTANT ROW" is the SELECT without FROM. */
                        ck_assert_msg(!detail || strncmp(detail, "SCAN", 4) != 0 ||
                                      strcmp(detail, "SCAN CONSTANT ROW") == 0, "%s: %s", *q, detail);
                }
                sqlite3_finalize(st);
        }
        sqlite3_close(db);
}
END_TEST

START_TEST(test_queue) {
        static const struct {
                const char *to, *from;
                uint64_t all, n_from;
        } counts[] = {
                { "bob", "alice", 3, 2 },
                { "bob", "carol", 3, 1 },
                { "dave", "carol", 1, 0 },
                { "nobody", "alice", 0, 0 },
        };
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage m[4], dup, taken = {};
        StoreMessage *list = NULL;
        size_t n = 0;
        uint64_t count = 0, from = 0, last = 0;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        m[0] = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":0}", 100, 1000);
        m[1] = message("carol", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{\"n\":1}", 101, 1001);
        m[2] = message("alice", "dave", "CCCCCCCCCCCCCCCCCCCCCC==", "{\"n\":2}", 102, 1002);
        m[3] = message("alice", "bob", "DDDDDDDDDDDDDDDDDDDDDD==", "{\"n\":3, \"s\":\"a/b\"}", 103, 1003);
        for (size_t i = 0; i < 4; i++) {
                ck_assert_int_eq(store_queue_add(s, &m[i]), 0);
                if (i > 0)
                        ck_assert_uint_gt(m[i].seq, m[i - 1].seq);
        }

        ck_assert_int_eq(store_queue_count(s, "bob", &count), 0);
        ck_assert_uint_eq(count, 3);
        ck_assert_int_eq(store_queue_count(s, "nobody", &count), 0);
        ck_assert_uint_eq(count, 0);
        /* One sender's part of a recipient's queue (queue-limit-per-sender),
         * with the whole (queue-limit). */
        for (size_t i = 0; i < ELEMENTSOF(counts); i++) {
                ck_assert_int_eq(store_queue_counts(s, counts[i].to, counts[i].from, &count, &from), 0);
                ck_assert_uint_eq(count, counts[i].all);
                ck_assert_uint_eq(from, counts[i].n_from);
        }
        ck_assert_int_eq(store_queue_totals(s, &count, NULL), 0);
        ck_assert_uint_eq(count, 4);
        ck_assert_int_eq(store_queue_last_seq(s, "bob", &last), 0);
        ck_assert_uint_eq(last, m[3].seq);
        ck_assert_int_eq(store_queue_last_seq(s, "nobody", &last), 0);
        ck_assert_uint_eq(last, 0);
        /* Sizes: the daemon's running sum starts from this, and reload
         * judges lower limits by the largest. */
        ck_assert_int_eq(store_queue_totals(s, NULL, &count), 0);
        ck_assert_uint_eq(count, 7 + 7 + 7 + 18);
        ck_assert_int_eq(store_queue_max_size(s, &count), 0);
        ck_assert_uint_eq(count, 18);

        /* The same (sender, id) again is not a second message. */
        dup = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":0}", 200, 2000);
        ck_assert_int_eq(store_queue_add(s, &dup), -EEXIST);
        ck_assert_uint_eq(dup.seq, m[0].seq);
        ck_assert_int_eq(store_queue_find(s, "alice", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":0}", &last), 0);
        ck_assert_uint_eq(last, m[0].seq);
        ck_assert_int_eq(store_queue_find(s, "carol", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":0}", NULL), -ENOENT);
        ck_assert_int_eq(store_queue_totals(s, &count, NULL), 0);
        ck_assert_uint_eq(count, 4);
        /* ... and another envelope under that id is not the same one. */
        dup = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":9}", 200, 2000);
        ck_assert_int_eq(store_queue_add(s, &dup), -ENOTUNIQ);
        ck_assert_int_eq(store_queue_totals(s, &count, NULL), 0);
        ck_assert_uint_eq(count, 4);

        /* In order, in pages, envelopes exactly as stored. */
        ck_assert_int_eq(store_queue_list(s, "bob", 0, 2, &list, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(list[0].seq, m[0].seq);
        ck_assert_uint_eq(list[1].seq, m[1].seq);
        ck_assert_str_eq(list[1].envelope, "{\"n\":1}");
        ck_assert_str_eq(list[1].sender, "carol");
        ck_assert_str_eq(list[1].recipient, "bob");
        ck_assert_str_eq(list[1].msg_id, "BBBBBBBBBBBBBBBBBBBBBB==");
        ck_assert_uint_eq(list[1].size, 7);
        ck_assert_uint_eq(list[1].received, 101);
        ck_assert_uint_eq(list[1].expires, 1001);
        store_messages_free(list, n);
        ck_assert_int_eq(store_queue_list(s, "bob", m[1].seq, 2, &list, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(list[0].seq, m[3].seq);
        ck_assert_str_eq(list[0].envelope, "{\"n\":3, \"s\":\"a/b\"}");
        store_messages_free(list, n);
        ck_assert_int_eq(store_queue_list(s, "bob", m[3].seq, 2, &list, &n), 0);
        ck_assert_uint_eq(n, 0);
        store_messages_free(list, n);

        /* Only the recipient's own messages can be taken. */
        ck_assert_int_eq(store_queue_take(s, "dave", m[0].seq, &taken), -ENOENT);
        ck_assert_int_eq(store_queue_take(s, "bob", m[0].seq, &taken), 0);
        ck_assert_uint_eq(taken.seq, m[0].seq);
        ck_assert_str_eq(taken.sender, "alice");
        ck_assert_str_eq(taken.msg_id, "AAAAAAAAAAAAAAAAAAAAAA==");
        ck_assert_ptr_null(taken.envelope);
        ck_assert_int_eq(store_queue_take(s, "bob", m[0].seq, NULL), -ENOENT);
        ck_assert_int_eq(store_queue_count(s, "bob", &count), 0);
        ck_assert_uint_eq(count, 2);
        ck_assert_int_eq(store_queue_totals(s, NULL, &count), 0);
        ck_assert_uint_eq(count, 7 + 7 + 18);
}
END_TEST

START_TEST(test_seq_never_reused) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 1, 2);
        StoreMessage b = message("alice", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", 1, 2);

        /* A session's delivery cursor relies on seqs only growing, even
         * after the newest message was deleted. */
        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_int_eq(store_queue_add(s, &a), 0);
        ck_assert_int_eq(store_queue_take(s, "bob", a.seq, NULL), 0);
        ck_assert_int_eq(store_queue_add(s, &b), 0);
        ck_assert_uint_gt(b.seq, a.seq);
}
END_TEST

/* A transaction begun by store_begin_nosync() commits what it wrote (as
 * another connection sees it), on SQLite without a sync; the next plain
 * transaction syncs again, whether that one committed or was rolled
 * back. */
START_TEST(test_begin_nosync) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 1, 2);
        StoreMessage b = message("alice", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", 1, 2);
        char sql[64];
        unsigned n;

        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", queue_table(_i));
        if (_i == BACKEND_SQLITE)
                sync_count_register();
        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_int_eq(store_queue_add(s, &a), 0);
        ck_assert_int_eq(store_queue_add(s, &b), 0);

        ck_assert_int_eq(store_begin_nosync(s), 0);
        ck_assert(store_in_transaction(s));
        ck_assert_int_eq(store_begin_nosync(s), -EBUSY);
        ck_assert(store_in_transaction(s));
        ck_assert_int_eq(store_queue_take(s, "bob", a.seq, NULL), 0);
        n = sync_count;
        ck_assert_int_eq(store_commit(s), 0);
        ck_assert(!store_in_transaction(s));
        ck_assert_uint_eq(query_u64(_i, sql), 1);
        if (_i != BACKEND_SQLITE)
                return;
        ck_assert_uint_eq(sync_count, n);

        /* FULL again: a commit waits for the WAL on disk. */
        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_queue_take(s, "bob", b.seq, NULL), 0);
        n = sync_count;
        ck_assert_int_eq(store_commit(s), 0);
        ck_assert_uint_gt(sync_count, n);

        /* ... and after a rollback. */
        ck_assert_int_eq(store_begin_nosync(s), 0);
        store_rollback(s);
        ck_assert_int_eq(store_queue_add(s, &a), 0);
        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_queue_take(s, "bob", a.seq, NULL), 0);
        n = sync_count;
        ck_assert_int_eq(store_commit(s), 0);
        ck_assert_uint_gt(sync_count, n);
        ck_assert_uint_eq(query_u64(_i, sql), 0);
}
END_TEST

typedef struct Expired {
        unsigned n;
        uint64_t seqs[8];
} Expired;

static void collect_expired(void *userdata, const StoreMessage *m) {
        Expired *e = userdata;

        ck_assert_uint_lt(e->n, 8);
        ck_assert_ptr_null(m->envelope);
        e->seqs[e->n++] = m->seq;
}

START_TEST(test_expiry) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage m[4];
        Expired e = {};
        uint64_t count = 0;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        m[0] = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 100, 500);
        m[1] = message("alice", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", 100, 2000);
        m[2] = message("alice", "carol", "CCCCCCCCCCCCCCCCCCCCCC==", "{}", 100, 400);
        m[3] = message("alice", "carol", "DDDDDDDDDDDDDDDDDDDDDD==", "{}", 100, 1000);
        for (size_t i = 0; i < 4; i++)
                ck_assert_int_eq(store_queue_add(s, &m[i]), 0);

        ck_assert_int_eq(store_queue_expire(s, 399, 10, collect_expired, &e), 0);
        ck_assert_uint_eq(e.n, 0);

        /* Oldest expiry first; at most max per call. */
        ck_assert_int_eq(store_queue_expire(s, 1000, 1, collect_expired, &e), 1);
        ck_assert_uint_eq(e.n, 1);
        ck_assert_uint_eq(e.seqs[0], m[2].seq);
        ck_assert_int_eq(store_queue_expire(s, 1000, 10, collect_expired, &e), 2);
        ck_assert_uint_eq(e.n, 3);
        ck_assert_uint_eq(e.seqs[1], m[0].seq);
        ck_assert_uint_eq(e.seqs[2], m[3].seq);

        ck_assert_int_eq(store_queue_totals(s, &count, NULL), 0);
        ck_assert_uint_eq(count, 1);
        ck_assert_int_eq(store_queue_take(s, "bob", m[1].seq, NULL), 0);
        ck_assert_int_eq(store_queue_expire(s, 5000, 10, NULL, NULL), 0);
}
END_TEST

START_TEST(test_reopen) {
        _cleanup_(key_package_freep) KeyPackage *alice = package("alice", 0x44, 1700000000);
        _cleanup_(key_package_freep) KeyPackage *got = NULL;
        StoreMessage m = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"v\":1}", 10, 20);
        StoreMessage *list = NULL;
        Store *s = NULL;
        size_t n = 0;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_int_eq(store_user_add(s, alice), 0);
        ck_assert_int_eq(store_queue_add(s, &m), 0);
        store_free(s);

        /* What was written before close is there after reopening. */
        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_int_eq(store_user_get(s, "alice", &got), 0);
        assert_same_package(got, alice);
        ck_assert_int_eq(store_queue_list(s, "bob", 0, 10, &list, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(list[0].seq, m.seq);
        ck_assert_str_eq(list[0].envelope, "{\"v\":1}");
        store_messages_free(list, n);
        store_free(s);
}
END_TEST

static void query_text(const char *sql, char *out, size_t size) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;

        ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        snprintf(out, size, "%s", (const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
}

START_TEST(test_database_setup) {
        Store *s = NULL;
        char value[64];
        struct stat st;
        mode_t old = umask(0077);

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        store_free(s);
        umask(old);

        query_text("PRAGMA journal_mode", value, sizeof(value));
        ck_assert_str_eq(value, "wal");
        query_text("PRAGMA user_version", value, sizeof(value));
        ck_assert_str_eq(value, "2");
        ck_assert_int_eq(stat(dbpath, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0600);
}
END_TEST

START_TEST(test_newer_schema_refused) {
        Store *s = NULL;
        sqlite3 *db = NULL;

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        store_free(s);
        ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version = 3", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        s = NULL;
        ck_assert_int_eq(store_open(dbpath, &s), -EPROTONOSUPPORT);
        ck_assert_ptr_null(s);
}
END_TEST

/* A version 1 database gets the resets table; codes are kept hashed, with
 * their expiry, until deleted; dropping a queue says how much went. */
START_TEST(test_resets) {
        const uint8_t h1[STORE_CODE_HASH_LEN] = { 1 }, h2[STORE_CODE_HASH_LEN] = { 2 };
        uint8_t h[STORE_CODE_HASH_LEN];
        StoreMessage m1, m2;
        uint64_t expires, n;
        Store *s = NULL;
        sqlite3 *db = NULL;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        store_free(s);
        if (_i == BACKEND_SQLITE) {
                ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
                ck_assert_int_eq(sqlite3_exec(db, "DROP TABLE resets; PRAGMA user_version = 1", NULL, NULL, NULL),
                                 SQLITE_OK);
                sqlite3_close(db);
        }

        s = NULL;
        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_int_eq(store_reset_get(s, "bob", h, &expires), -ENOENT);
        ck_assert_int_eq(store_reset_set(s, "bob", h1, 1000), 0);
        ck_assert_int_eq(store_reset_set(s, "bob", h2, 2000), 0);
        ck_assert_int_eq(store_reset_get(s, "bob", h, &expires), 0);
        ck_assert_mem_eq(h, h2, sizeof(h));
        ck_assert_uint_eq(expires, 2000);
        ck_assert_int_eq(store_reset_delete(s, "bob"), 0);
        ck_assert_int_eq(store_reset_get(s, "bob", h, &expires), -ENOENT);

        m1 = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":0}", 100, 1000);
        m2 = message("alice", "carol", "BBBBBBBBBBBBBBBBBBBBBB==", "{\"n\":1}", 100, 1000);
        ck_assert_int_eq(store_queue_add(s, &m1), 0);
        ck_assert_int_eq(store_queue_add(s, &m2), 0);
        ck_assert_int_eq(store_queue_drop(s, "bob", &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(store_queue_totals(s, &n, NULL), 0);
        ck_assert_uint_eq(n, 1);
        store_free(s);
}
END_TEST

START_TEST(test_not_a_database) {
        Store *s = NULL;
        FILE *f = fopen(dbpath, "we");

        ck_assert_ptr_nonnull(f);
        fputs("this is not an SQLite database, just some text that is long enough\n", f);
        fclose(f);
        ck_assert_int_lt(store_open(dbpath, &s), 0);
        ck_assert_ptr_null(s);
}
END_TEST

/* Prekeys: the store does not check signatures (the relay does), so any
 * canonical key bytes do. */
static SignedPrekey spk_of(uint32_t id) {
        SignedPrekey spk = { .id = id, .created = 1000 + id, .sig_len = 256 };

        memset(spk.pub, (int) id, sizeof(spk.pub));
        spk.pub[X25519_KEY_LEN - 1] = 0x11;     /* top bit clear: canonical */
        memset(spk.sig, 0xa5, spk.sig_len);
        return spk;
}

static OneTimePrekey opk_of(uint32_t id) {
        OneTimePrekey opk = { .id = id };

        memset(opk.pub, (int) (id * 7), sizeof(opk.pub));
        opk.pub[X25519_KEY_LEN - 1] = 0x22;
        return opk;
}

static void add_user(Store *s, const char *user) {
        _cleanup_(key_package_freep) KeyPackage *kp = package(user, 1, 100);

        ck_assert_int_eq(store_user_add(s, kp), 0);
}

static uint64_t opk_count(Store *s, const char *user) {
        uint64_t n = UINT64_MAX;

        ck_assert_int_eq(store_prekeys_count(s, user, &n), 0);
        return n;
}

/* Each OPK is handed out once, oldest first, then the SPK alone; a
 * publication over the cap or with a known id stores nothing. */
START_TEST(test_prekeys) {
        const OneTimePrekey opks[] = { opk_of(1), opk_of(2), opk_of(3) };
        const OneTimePrekey more[] = { opk_of(4), opk_of(2) };
        SignedPrekey spk = spk_of(9), spk2 = spk_of(10);
        PrekeyBundle b;
        uint64_t n = 0;
        Store *s = NULL;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        add_user(s, "alice");
        ck_assert_uint_eq(opk_count(s, "alice"), 0);
        ck_assert_int_eq(store_prekeys_take(s, "alice", true, &b), -ENOENT);

        ck_assert_int_eq(store_prekeys_publish(s, "alice", &spk, opks, 3, 4, &n), 0);
        ck_assert_uint_eq(n, 3);
        /* Over the cap (3 + 2 > 4), and a held id (2): nothing changes,
         * not even the SPK. */
        ck_assert_int_eq(store_prekeys_publish(s, "alice", &spk2, more, 2, 4, &n), -E2BIG);
        ck_assert_int_eq(store_prekeys_publish(s, "alice", &spk2, more, 2, 10, &n), -ENOTUNIQ);
        ck_assert_uint_eq(opk_count(s, "alice"), 3);

        /* Without take_opk: the SPK, nothing used up. */
        ck_assert_int_eq(store_prekeys_take(s, "alice", false, &b), 0);
        ck_assert(!b.has_opk);
        ck_assert_uint_eq(b.spk.id, 9);
        ck_assert_mem_eq(b.spk.pub, spk.pub, X25519_KEY_LEN);
        ck_assert_uint_eq(b.spk.created, spk.created);
        ck_assert_uint_eq(b.spk.sig_len, 256);
        ck_assert_uint_eq(opk_count(s, "alice"), 3);

        for (uint32_t i = 1; i <= 3; i++) {
                ck_assert_int_eq(store_prekeys_take(s, "alice", true, &b), 0);
                ck_assert(b.has_opk);
                ck_assert_uint_eq(b.opk.id, i);
                ck_assert_mem_eq(b.opk.pub, opks[i - 1].pub, X25519_KEY_LEN);
                ck_assert_uint_eq(opk_count(s, "alice"), 3 - i);
        }
        ck_assert_int_eq(store_prekeys_take(s, "alice", true, &b), 0);
        ck_assert(!b.has_opk);
        ck_assert_uint_eq(b.spk.id, 9);

        /* A handed-out id is the owner's to avoid; the relay forgot it. A
         * new SPK replaces the old. */
        ck_assert_int_eq(store_prekeys_publish(s, "alice", &spk2, more, 2, 4, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_int_eq(store_prekeys_take(s, "alice", false, &b), 0);
        ck_assert_uint_eq(b.spk.id, 10);

        /* Only registered users have prekeys. */
        ck_assert_int_lt(store_prekeys_publish(s, "nobody", &spk, opks, 1, 4, &n), 0);
        ck_assert_int_eq(store_prekeys_drop(s, "alice"), 0);
        ck_assert_uint_eq(opk_count(s, "alice"), 0);
        ck_assert_int_eq(store_prekeys_take(s, "alice", true, &b), -ENOENT);
        store_free(s);
}
END_TEST

/* Prekeys survive a restart, go with the user (a key reset deletes the
 * user), and a database of before them (version 2 without the tables)
 * gets the tables and keeps its queue. */
START_TEST(test_prekeys_durable) {
        const OneTimePrekey opks[] = { opk_of(1), opk_of(2) };
        SignedPrekey spk = spk_of(1);
        StoreMessage m = message("bob", "alice", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":0}", 100, 1000);
        PrekeyBundle b;
        uint64_t n;
        Store *s = NULL;
        sqlite3 *db = NULL;

        ck_assert_int_eq(open_backend(_i, &s), 0);
        add_user(s, "alice");
        add_user(s, "bob");
        ck_assert_int_eq(store_queue_add(s, &m), 0);
        store_free(s);
        if (_i == BACKEND_SQLITE) {
                ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
                ck_assert_int_eq(sqlite3_exec(db, "DROP TABLE one_time_prekeys; DROP TABLE signed_prekeys",
                                              NULL, NULL, NULL), SQLITE_OK);
                sqlite3_close(db);
        }

        s = NULL;
        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_int_eq(store_queue_totals(s, &n, NULL), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(store_prekeys_publish(s, "alice", &spk, opks, 2, 200, NULL), 0);
        ck_assert_int_eq(store_prekeys_publish(s, "bob", &spk, opks, 2, 200, NULL), 0);
        store_free(s);

        s = NULL;
        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_uint_eq(opk_count(s, "alice"), 2);
        ck_assert_int_eq(store_prekeys_take(s, "alice", true, &b), 0);
        ck_assert_uint_eq(b.opk.id, 1);
        store_free(s);

        s = NULL;
        ck_assert_int_eq(open_backend(_i, &s), 0);
        ck_assert_uint_eq(opk_count(s, "alice"), 1);
        ck_assert_int_eq(store_user_delete(s, "alice"), 0);
        ck_assert_uint_eq(opk_count(s, "alice"), 0);
        ck_assert_int_eq(store_prekeys_take(s, "alice", false, &b), -ENOENT);
        ck_assert_uint_eq(opk_count(s, "bob"), 2);
        store_free(s);
}
END_TEST

/* ---- SQLite's checkpoints, on the store's thread ------------------------- */

/* SQLite's default page size, which the store keeps, and a WAL frame's
 * header: the pages SQLite wrote to the WAL since it last started it from
 * its beginning (sqlite-vfs.h; not the file's size, which the store makes
 * the most the log grows to at open). */
#define PAGE_SIZE 4096
#define WAL_HEADER 32
#define WAL_FRAME_HEADER 24

static uint64_t wal_pages(void) {
        sqlite3_int64 end = wal_written;

        if (end < WAL_HEADER)
                return 0;
        return ((uint64_t) end - WAL_HEADER) / (PAGE_SIZE + WAL_FRAME_HEADER);
}

/* One message of about 3 KB (a page of the WAL each), its id from n. */
static void add_big(Store *s, unsigned n) {
        static char envelope[3000];
        char id[STORE_MSG_ID_MAX + 1];
        StoreMessage m;

        if (!envelope[0])
                memset(envelope, 'e', sizeof(envelope) - 1);
        snprintf(id, sizeof(id), "%022u==", n);
        m = message("alice", "bob", id, envelope, 1, 2);
        ck_assert_int_eq(store_queue_add(s, &m), 0);
}

/* Commit messages, 50 a transaction, until the WAL holds at least the 1000
 * pages after which the thread is asked to checkpoint it, and no more: the
 * commit that asked is the last, so that the checkpoint copies all of it. */
static unsigned fill_wal(Store *s, unsigned n) {
        while (wal_pages() < 1000) {
                ck_assert_int_eq(store_begin(s), 0);
                for (unsigned i = 0; i < 50; i++)
                        add_big(s, n++);
                ck_assert_int_eq(store_commit(s), 0);
        }
        return n;
}

/* Wait, at most 10 s, for flag. */
static bool wait_for(atomic_bool *flag) {
        for (unsigned i = 0; i < 1000 && !*flag; i++)
                (void) usleep(10 * 1000);
        return *flag;
}

/* The store writes the WAL out at open to the 4000 pages it grows to
 * (wal-checkpointer.c): a commit then syncs no new file size. */
START_TEST(test_wal_written_ahead) {
        _cleanup_(store_freep) Store *s = NULL;
        char path[320];
        struct stat st;

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        snprintf(path, sizeof(path), "%s-wal", dbpath);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_size, WAL_HEADER + 4000 * (PAGE_SIZE + WAL_FRAME_HEADER));
        add_big(s, 1);
        add_big(s, 2);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_size, WAL_HEADER + 4000 * (PAGE_SIZE + WAL_FRAME_HEADER));
}
END_TEST

/* Not while another connection (the sqlite3 tool) holds the write lock:
 * frames it appended meanwhile would be overwritten. */
START_TEST(test_wal_not_written_ahead_under_lock) {
        _cleanup_(store_freep) Store *s = NULL;
        sqlite3 *other = NULL;
        char path[320];
        struct stat st;

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        s = store_free(s);              /* the database exists; its WAL is gone */
        ck_assert_int_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        snprintf(path, sizeof(path), "%s-wal", dbpath);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_lt(st.st_size, WAL_HEADER + 4000 * (PAGE_SIZE + WAL_FRAME_HEADER));

        ck_assert_int_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(other);
}
END_TEST

/* The loop's commits sync the WAL, never the database file: the thread
 * copies the WAL into it and syncs it, and the next transaction after
 * that starts the WAL again from its beginning. */
START_TEST(test_checkpoint_thread) {
        _cleanup_(store_freep) Store *s = NULL;
        unsigned n, starts;

        sync_count_register();
        ck_assert_int_eq(store_open(dbpath, &s), 0);
        db_syncs_here = db_syncs_other = db_syncs_committer = 0;
        starts = wal_starts;
        n = fill_wal(s, 0);

        /* Small commits meanwhile, as the relay's: the first that begins
         * after the checkpoint restarts the WAL. */
        for (unsigned i = 0; i < 1000 && wal_starts == starts; i++) {
                (void) usleep(10 * 1000);
                add_big(s, n++);
        }
        ck_assert_uint_gt(wal_starts, starts);
        ck_assert_uint_gt(db_syncs_other, 0);
        ck_assert_uint_eq(db_syncs_here, 0);
        ck_assert_uint_eq(db_syncs_committer, 0);
}
END_TEST

/* store_checkpoint() while the thread is checkpointing (in its slow sync
 * of the database file) waits for it, instead of failing as busy, and
 * truncates the WAL. */
START_TEST(test_checkpoint_while_thread_busy) {
        _cleanup_(store_freep) Store *s = NULL;
        char path[320];
        struct stat st;

        sync_count_register();
        ck_assert_int_eq(store_open(dbpath, &s), 0);
        db_sync_delay_usec = 300 * 1000;
        (void) fill_wal(s, 0);
        ck_assert(wait_for(&db_sync_sleeping));
        ck_assert_int_eq(store_checkpoint(s), 0);
        ck_assert(!db_sync_sleeping);
        snprintf(path, sizeof(path), "%s-wal", dbpath);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_size, 0);
}
END_TEST

/* Closing the store while the thread is checkpointing joins it; the last
 * connection's checkpoint at close then copies what is left and removes
 * the WAL, and everything committed is there at the next open. */
START_TEST(test_free_while_thread_busy) {
        Store *s = NULL;
        char path[320];
        uint64_t count;
        unsigned n;

        sync_count_register();
        ck_assert_int_eq(store_open(dbpath, &s), 0);
        db_sync_delay_usec = 300 * 1000;
        n = fill_wal(s, 0);
        ck_assert(wait_for(&db_sync_sleeping));
        store_free(s);
        ck_assert(!db_sync_sleeping);
        snprintf(path, sizeof(path), "%s-wal", dbpath);
        ck_assert_int_eq(access(path, F_OK), -1);

        s = NULL;
        ck_assert_int_eq(store_open(dbpath, &s), 0);
        ck_assert_int_eq(store_queue_totals(s, &count, NULL), 0);
        ck_assert_uint_eq(count, n);
        store_free(s);
}
END_TEST

/* ---- asynchronous batches (store_batch_send()) ---------------------------- */

/* The backend as the relay opens it: with the event loop, which gives
 * SQLite its writer thread and PostgreSQL its pipelined batches. */
static int open_async(int backend, Store **ret) {
        int r = open_backend(backend, ret);

        if (r >= 0)
                r = store_set_event(*ret, event);
        return r;
}

typedef struct Answer {
        unsigned called;        /* at the nth answer of the test (1, 2...) */
        int r;
        StoreMessage *messages;
        size_t n;
} Answer;

static unsigned answers;        /* answers so far, in order */

static void batch_done(void *userdata, int r) {
        Answer *a = userdata;

        ck_assert_uint_eq(a->called, 0);
        a->called = ++answers;
        a->r = r;
}

static void list_done(void *userdata, int r, StoreMessage *messages, size_t n) {
        Answer *a = userdata;

        ck_assert_uint_eq(a->called, 0);
        a->called = ++answers;
        a->r = r;
        a->messages = messages;
        a->n = n;
}

/* Run the loop until a is answered, at most 10 s. */
static void run_until(const Answer *a) {
        for (unsigned i = 0; i < 1000 && !a->called; i++)
                ck_assert_int_ge(sd_event_run(event, 10 * 1000), 0);
        ck_assert_uint_gt(a->called, 0);
}

static StoreWrite write_add(const StoreMessage *m, uint64_t limit, uint64_t limit_from) {
        return (StoreWrite) { .type = STORE_WRITE_ADD, .msg = *m, .limit = limit, .limit_from = limit_from };
}

static StoreWrite write_take(const char *recipient, uint64_t seq) {
        StoreWrite w = { .type = STORE_WRITE_TAKE, .msg.seq = seq };

        snprintf(w.msg.recipient, sizeof(w.msg.recipient), "%s", recipient);
        return w;
}

/* Send the n writes and wait for their answer; done() never comes from
 * inside the call, and a second batch meanwhile is refused. */
static int batch_run(Store *s, StoreWrite *w, size_t n) {
        StoreWrite *writes[64];
        Answer a = {};

        ck_assert_uint_le(n, ELEMENTSOF(writes));
        for (size_t i = 0; i < n; i++)
                writes[i] = &w[i];
        ck_assert_int_eq(store_batch_send(s, writes, n, batch_done, &a), 0);
        ck_assert_uint_eq(a.called, 0);
        ck_assert(store_batch_busy(s));
        ck_assert_int_eq(store_batch_send(s, writes, n, batch_done, &a), -EBUSY);
        run_until(&a);
        ck_assert(!store_batch_busy(s));
        return a.r;
}

static void add_users(Store *s) {
        static const char *const users[] = { "bob", "carol" };

        for (size_t i = 0; i < ELEMENTSOF(users); i++) {
                _cleanup_(key_package_freep) KeyPackage *kp = package(users[i], (uint8_t) i, 1);

                ck_assert_int_eq(store_user_add(s, kp), 0);
        }
}

/* Without an event loop, the SQLite store does everything in the call. */
START_TEST(test_batch_needs_event) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage m = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 1, 2);
        StoreWrite w = write_add(&m, 10, 10), *writes[] = { &w };
        Answer a = {};

        ck_assert_int_eq(store_open(dbpath, &s), 0);
        ck_assert(!store_batch_async(s));
        ck_assert_int_eq(store_batch_send(s, writes, 1, batch_done, &a), -EOPNOTSUPP);
        ck_assert_int_eq(store_queue_list_async(s, "bob", 0, 16, list_done, &a), -EOPNOTSUPP);
        ck_assert_uint_eq(a.called, 0);
}
END_TEST

/* Every result a write of a batch has (store.h, StoreWrite), in one
 * transaction that sees its own earlier writes, committed when done()
 * comes (another connection sees it). */
START_TEST(test_batch_results) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage queued = message("alice", "bob", "XXXXXXXXXXXXXXXXXXXXXX==", "{\"x\":1}", 1, 2);
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"a\":1}", 1, 2);
        StoreMessage b = message("alice", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{\"b\":1}", 1, 2);
        StoreMessage c = message("dave", "bob", "CCCCCCCCCCCCCCCCCCCCCC==", "{\"c\":1}", 1, 2);
        StoreMessage d = message("alice", "nobody", "DDDDDDDDDDDDDDDDDDDDDD==", "{\"d\":1}", 1, 2);
        StoreMessage other = message("alice", "bob", "XXXXXXXXXXXXXXXXXXXXXX==", "{\"y\":1}", 1, 2);
        StoreWrite w[8];
        uint64_t all, from;
        char sql[64];

        ck_assert_int_eq(open_async(_i, &s), 0);
        ck_assert(store_batch_async(s));
        add_users(s);
        ck_assert_int_eq(store_queue_add(s, &queued), 0);

        w[0] = write_add(&a, 10, 10);           /* queued */
        w[1] = write_add(&d, 10, 10);           /* no such recipient */
        w[2] = write_add(&b, 10, 2);            /* alice's share: queued and a */
        w[3] = write_add(&c, 2, 10);            /* bob's queue: the same two */
        w[4] = write_add(&queued, 10, 10);      /* the same envelope again */
        w[5] = write_add(&other, 10, 10);       /* another under its id */
        w[6] = write_take("bob", queued.seq);
        w[7] = write_take("bob", queued.seq + 1000);
        ck_assert_int_eq(batch_run(s, w, 8), 0);

        ck_assert_int_eq(w[0].result, 0);
        ck_assert_uint_gt(w[0].msg.seq, queued.seq);
        ck_assert_int_eq(w[1].result, -ENOENT);
        ck_assert_int_eq(w[2].result, -EDQUOT);
        ck_assert_uint_eq(w[2].count, 2);
        ck_assert_int_eq(w[3].result, -EXFULL);
        ck_assert_uint_eq(w[3].count, 2);
        ck_assert_int_eq(w[4].result, -EEXIST);
        ck_assert_uint_eq(w[4].msg.seq, queued.seq);
        ck_assert_int_eq(w[5].result, -ENOTUNIQ);
        ck_assert_int_eq(w[6].result, 0);
        ck_assert_str_eq(w[6].msg.sender, "alice");
        ck_assert_str_eq(w[6].msg.msg_id, queued.msg_id);
        ck_assert_uint_eq(w[6].msg.size, queued.size);
        ck_assert_int_eq(w[7].result, -ENOENT);

        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", queue_table(_i));
        ck_assert_uint_eq(query_u64(_i, sql), 1);
        ck_assert_int_eq(store_queue_counts(s, "bob", "alice", &all, &from), 0);
        ck_assert_uint_eq(all, 1);
        ck_assert_uint_eq(from, 1);
        ck_assert_int_eq(store_queue_totals(s, &all, NULL), 0);
        ck_assert_uint_eq(all, 1);
}
END_TEST

/* A batch of takes alone commits without a sync (a crash only delivers
 * them again); one with a send waits for the disk. */
START_TEST(test_batch_takes_only_nosync) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 1, 2);
        StoreMessage b = message("alice", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", 1, 2);
        StoreWrite w[2];
        unsigned n;

        sync_count_register();
        ck_assert_int_eq(open_async(BACKEND_SQLITE, &s), 0);
        add_users(s);
        ck_assert_int_eq(store_queue_add(s, &a), 0);

        w[0] = write_take("bob", a.seq);
        n = sync_count;
        ck_assert_int_eq(batch_run(s, w, 1), 0);
        ck_assert_int_eq(w[0].result, 0);
        ck_assert_uint_eq(sync_count, n);
        ck_assert_uint_eq(query_u64(BACKEND_SQLITE, "SELECT count(*) FROM queue"), 0);

        w[0] = write_add(&b, 10, 10);
        ck_assert_int_eq(batch_run(s, w, 1), 0);
        ck_assert_int_eq(w[0].result, 0);
        ck_assert_uint_gt(sync_count, n);
}
END_TEST

/* A store call while a batch flies waits for its commit, and sees it;
 * the batch's done() still comes from the loop, after. The writer's
 * commit is slowed down (its sync of the WAL), so that a call that did
 * not wait would find it not committed. */
START_TEST(test_batch_call_waits) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 1, 2);
        StoreWrite w = write_add(&a, 10, 10), *writes[] = { &w };
        Answer answer = {};
        uint64_t count;

        if (_i == BACKEND_SQLITE)
                sync_count_register();
        ck_assert_int_eq(open_async(_i, &s), 0);
        add_users(s);
        wal_sync_delay_usec = 200 * 1000;
        ck_assert_int_eq(store_batch_send(s, writes, 1, batch_done, &answer), 0);
        ck_assert_int_eq(store_queue_count(s, "bob", &count), 0);
        ck_assert_uint_eq(count, 1);
        ck_assert_uint_eq(query_u64(_i, _i == BACKEND_PG ? "SELECT count(*) FROM sc_queue"
                                                          : "SELECT count(*) FROM queue"), 1);
        ck_assert_uint_eq(answer.called, 0);
        ck_assert(store_batch_busy(s));
        run_until(&answer);
        ck_assert_int_eq(answer.r, 0);
        ck_assert_int_eq(w.result, 0);
}
END_TEST

/* A page asked for after a batch reads what the batch committed, and is
 * answered from the loop, after the batch. */
START_TEST(test_list_async_after_batch) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"a\":1}", 1, 2);
        StoreWrite w = write_add(&a, 10, 10), *writes[] = { &w };
        Answer batch = {}, page = {};

        ck_assert_int_eq(open_async(_i, &s), 0);
        add_users(s);
        answers = 0;
        ck_assert_int_eq(store_batch_send(s, writes, 1, batch_done, &batch), 0);
        ck_assert_int_eq(store_queue_list_async(s, "bob", 0, 16, list_done, &page), 0);
        ck_assert_uint_eq(page.called, 0);
        run_until(&page);
        ck_assert_uint_eq(batch.called, 1);
        ck_assert_uint_eq(page.called, 2);
        ck_assert_int_eq(batch.r, 0);
        ck_assert_int_eq(page.r, 0);
        ck_assert_uint_eq(page.n, 1);
        ck_assert_uint_eq(page.messages[0].seq, w.msg.seq);
        ck_assert_str_eq(page.messages[0].envelope, "{\"a\":1}");
        store_messages_free(page.messages, page.n);
}
END_TEST

/* A full disk at the commit (the test VFS refuses the WAL's writes):
 * nothing of the batch is stored, -ENOSPC, and the counts are those of
 * what was queued before, on the store and in the database. */
START_TEST(test_batch_disk_full) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage queued = message("alice", "bob", "XXXXXXXXXXXXXXXXXXXXXX==", "{}", 1, 2);
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 1, 2);
        StoreMessage b = message("carol", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", 1, 2);
        StoreWrite w[3];
        uint64_t all, from;

        sync_count_register();
        ck_assert_int_eq(open_async(BACKEND_SQLITE, &s), 0);
        add_users(s);
        ck_assert_int_eq(store_queue_add(s, &queued), 0);

        w[0] = write_add(&a, 10, 10);
        w[1] = write_take("bob", queued.seq);
        w[2] = write_add(&b, 10, 10);
        full_writes = 1000;
        ck_assert_int_eq(batch_run(s, w, 3), -ENOSPC);
        full_writes = 0;
        ck_assert_uint_eq(query_u64(BACKEND_SQLITE, "SELECT count(*) FROM queue"), 1);
        ck_assert_int_eq(store_queue_counts(s, "bob", "alice", &all, &from), 0);
        ck_assert_uint_eq(all, 1);
        ck_assert_uint_eq(from, 1);
        ck_assert_int_eq(store_queue_counts(s, "bob", "carol", &all, &from), 0);
        ck_assert_uint_eq(from, 0);
        ck_assert_int_eq(store_queue_totals(s, &all, NULL), 0);
        ck_assert_uint_eq(all, 1);

        /* The same batch again, with room: all of it. */
        ck_assert_int_eq(batch_run(s, w, 3), 0);
        ck_assert_int_eq(w[0].result, 0);
        ck_assert_int_eq(w[1].result, 0);
        ck_assert_int_eq(w[2].result, 0);
        ck_assert_uint_eq(query_u64(BACKEND_SQLITE, "SELECT count(*) FROM queue"), 2);
        ck_assert_int_eq(store_queue_totals(s, &all, NULL), 0);
        ck_assert_uint_eq(all, 2);
}
END_TEST

/* Until the writer's sync of the WAL sleeps (wal_sync_delay_usec), at
 * most 10 s. */
static void until_syncing(void) {
        for (unsigned i = 0; i < 10000 && !wal_sync_sleeping; i++)
                usleep(1000);
        ck_assert(wal_sync_sleeping);
}

/* Two batches of one send each to bob, from alice and from carol, for
 * SQLite with its writer. */
typedef struct TwoBatches {
        StoreWrite wa, wb;
        StoreWrite *first[1], *second[1];
        Answer answer_a, answer_b;
} TwoBatches;

static Store *two_batches(TwoBatches *t) {
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 1, 2);
        StoreMessage b = message("carol", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", 1, 2);
        Store *s = NULL;

        *t = (TwoBatches) { .wa = write_add(&a, 10, 10), .wb = write_add(&b, 10, 10) };
        t->first[0] = &t->wa;
        t->second[0] = &t->wb;
        sync_count_register();
        ck_assert_int_eq(open_async(BACKEND_SQLITE, &s), 0);
        add_users(s);
        answers = 0;
        return s;
}

/* A batch queued behind the one in flight is the caller's to take back
 * until it starts; queued again, the writer starts it when the first
 * committed, with no turn of the loop in between, and the answers come
 * in order. */
START_TEST(test_batch_queued) {
        TwoBatches t;
        _cleanup_(store_freep) Store *s = two_batches(&t);
        uint64_t count;

        ck_assert_int_eq(store_batch_unqueue(s), -ENOENT);

        wal_sync_delay_usec = 200 * 1000;
        ck_assert_int_eq(store_batch_send(s, t.first, 1, batch_done, &t.answer_a), 0);
        until_syncing();
        ck_assert_int_eq(store_batch_queue(s, t.second, 1, batch_done, &t.answer_b), 0);
        ck_assert_int_eq(store_batch_queue(s, t.second, 1, batch_done, &t.answer_b), -EBUSY);
        ck_assert_int_eq(store_batch_send(s, t.second, 1, batch_done, &t.answer_b), -EBUSY);
        /* The first still syncs: the second has not started. */
        ck_assert_int_eq(store_batch_unqueue(s), 0);
        ck_assert_int_eq(store_batch_unqueue(s), -ENOENT);
        ck_assert(store_batch_busy(s));

        ck_assert_int_eq(store_batch_queue(s, t.second, 1, batch_done, &t.answer_b), 0);
        /* A call from the loop waits for both, which the loop never ran. */
        ck_assert_int_eq(store_queue_count(s, "bob", &count), 0);
        ck_assert_uint_eq(count, 2);
        ck_assert_uint_eq(query_u64(BACKEND_SQLITE, "SELECT count(*) FROM queue"), 2);
        ck_assert_uint_eq(t.answer_a.called, 0);
        ck_assert_uint_eq(t.answer_b.called, 0);
        ck_assert_int_eq(store_batch_unqueue(s), -EBUSY);
        wal_sync_delay_usec = 0;

        run_until(&t.answer_b);
        ck_assert_uint_eq(t.answer_a.called, 1);
        ck_assert_uint_eq(t.answer_b.called, 2);
        ck_assert_int_eq(t.answer_a.r, 0);
        ck_assert_int_eq(t.answer_b.r, 0);
        ck_assert_int_eq(t.wa.result, 0);
        ck_assert_int_eq(t.wb.result, 0);
        ck_assert(!store_batch_busy(s));
}
END_TEST

/* A batch queued behind one that fails does not start until that one's
 * done() is called: until then it can be taken back, unchanged, and a
 * call from the loop does not wait for it. After, it runs. */
START_TEST(test_batch_queued_after_failure) {
        TwoBatches t;
        _cleanup_(store_freep) Store *s = two_batches(&t);
        uint64_t count;

        full_writes = 1000;
        t.wb.result = 12345;
        ck_assert_int_eq(store_batch_send(s, t.first, 1, batch_done, &t.answer_a), 0);
        ck_assert_int_eq(store_batch_queue(s, t.second, 1, batch_done, &t.answer_b), 0);
        ck_assert_int_eq(store_queue_count(s, "bob", &count), 0);
        ck_assert_uint_eq(count, 0);
        full_writes = 0;
        /* Failed, the first waits for the loop; the t.second, behind it. */
        usleep(50 * 1000);
        ck_assert_int_eq(t.wb.result, 12345);
        ck_assert_int_eq(store_batch_unqueue(s), 0);
        ck_assert_int_eq(store_batch_queue(s, t.second, 1, batch_done, &t.answer_b), 0);

        run_until(&t.answer_b);
        ck_assert_uint_eq(t.answer_a.called, 1);
        ck_assert_int_eq(t.answer_a.r, -ENOSPC);
        ck_assert_uint_eq(t.answer_b.called, 2);
        ck_assert_int_eq(t.answer_b.r, 0);
        ck_assert_int_eq(t.wb.result, 0);
        ck_assert_uint_eq(query_u64(BACKEND_SQLITE, "SELECT count(*) FROM queue"), 1);
}
END_TEST

/* At shutdown (the loop runs no more), store_batch_wait() calls done()
 * itself, once the batch committed. */
START_TEST(test_batch_wait) {
        Store *s = NULL;
        StoreMessage a = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 1, 2);
        StoreWrite w = write_add(&a, 10, 10), *writes[] = { &w };
        Answer answer = {};
        char sql[64];

        ck_assert_int_eq(open_async(_i, &s), 0);
        add_users(s);
        ck_assert_int_eq(store_batch_send(s, writes, 1, batch_done, &answer), 0);
        store_batch_wait(s);
        ck_assert_uint_gt(answer.called, 0);
        ck_assert_int_eq(answer.r, 0);
        ck_assert(!store_batch_busy(s));
        store_free(s);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", queue_table(_i));
        ck_assert_uint_eq(query_u64(_i, sql), 1);
}
END_TEST

/* With the writer thread, the commits are its own, and they too sync the
 * WAL only, never the database file: the checkpointer does that, and the
 * WAL starts again from its beginning after. */
START_TEST(test_checkpoint_thread_writer) {
        _cleanup_(store_freep) Store *s = NULL;
        unsigned n = 0, starts;
        StoreMessage m[50];
        StoreWrite w[50];
        static char envelope[3000];
        char ids[50][STORE_MSG_ID_MAX + 1];

        memset(envelope, 'e', sizeof(envelope) - 1);
        sync_count_register();
        ck_assert_int_eq(open_async(BACKEND_SQLITE, &s), 0);
        add_users(s);
        db_syncs_here = db_syncs_other = db_syncs_committer = 0;
        starts = wal_starts;
        /* Batches of 50 messages of a page each until the thread is asked
         * to checkpoint, then batches of one until the WAL restarts. */
        for (unsigned k = 0; k < 2000 && wal_starts == starts; k++) {
                size_t size = wal_pages() < 1000 ? 50 : 1;

                if (size == 1)
                        (void) usleep(10 * 1000);
                for (size_t i = 0; i < size; i++) {
                        snprintf(ids[i], sizeof(ids[i]), "%022u==", n++);
                        m[i] = message("alice", "bob", ids[i], envelope, 1, 2);
                        w[i] = write_add(&m[i], UINT32_MAX, UINT32_MAX);
                }
                ck_assert_int_eq(batch_run(s, w, size), 0);
        }
        ck_assert_uint_gt(wal_starts, starts);
        ck_assert_uint_gt(db_syncs_other, 0);
        ck_assert_uint_eq(db_syncs_committer, 0);
        ck_assert_uint_eq(db_syncs_here, 0);
}
END_TEST

/* ---- PostgreSQL only ---------------------------------------------------- */

/* Relays starting together on an empty database all come up: one makes the
 * tables under the advisory lock, the others wait for it and find them. */
START_TEST(test_pg_open_together) {
        enum { N = 4 };
        pid_t pids[N];
        int barrier[2];

        ck_assert_int_eq(pipe(barrier), 0);
        for (int i = 0; i < N; i++) {
                pids[i] = fork();
                ck_assert_int_ge(pids[i], 0);
                if (pids[i] == 0) {
                        Store *s = NULL;
                        char c;
                        int r;

                        close(barrier[1]);
                        (void) read(barrier[0], &c, 1);         /* all at once, at EOF */
                        event = NULL;   /* the parent's */
                        r = open_pg(10 * 1000 * 1000, "test-store-together", &s);
                        store_free(s);
                        _exit(r == 0 ? 0 : 1);
                }
        }
        close(barrier[0]);
        close(barrier[1]);
        for (int i = 0; i < N; i++) {
                int status;

                ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "store %d failed to open", i);
        }
        ck_assert_uint_eq(query_u64(BACKEND_PG, "SELECT value::bigint FROM sc_meta WHERE key = 'schema_version'"), 1);
        /* The cluster's tables, for daemon/cluster.c. */
        ck_assert_uint_eq(query_u64(BACKEND_PG, "SELECT count(*) FROM information_schema.tables "
                                    "WHERE table_name IN ('sc_nodes', 'sc_presence')"), 2);
}
END_TEST

START_TEST(test_pg_newer_schema_refused) {
        Store *s = NULL;

        ck_assert_int_eq(open_backend(BACKEND_PG, &s), 0);
        store_free(s);
        pg_exec("UPDATE sc_meta SET value = '99' WHERE key = 'schema_version'");
        s = NULL;
        ck_assert_int_eq(open_backend(BACKEND_PG, &s), -EPROTONOSUPPORT);
        ck_assert_ptr_null(s);
}
END_TEST

/* PostgreSQL aborts a transaction at its first error; the relay's batch
 * puts many sends in one. What is expected (a retry, a name registered
 * already, an id reused) fails no transaction. */
START_TEST(test_pg_conflicts_keep_transaction) {
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(key_package_freep) KeyPackage *alice = package("alice", 0x11, 1700000000);
        StoreMessage m = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":0}", 100, 1000);
        StoreMessage again = m, other = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{\"n\":1}", 100, 1000);
        StoreMessage next = message("alice", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{\"n\":2}", 100, 1000);
        uint64_t n;

        ck_assert_int_eq(open_backend(BACKEND_PG, &s), 0);
        ck_assert_int_eq(store_user_add(s, alice), 0);
        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_begin(s), -EBUSY);       /* never nested */
        ck_assert_int_eq(store_queue_add(s, &m), 0);
        ck_assert_int_eq(store_queue_add(s, &again), -EEXIST);
        ck_assert_uint_eq(again.seq, m.seq);
        ck_assert_int_eq(store_queue_add(s, &other), -ENOTUNIQ);
        ck_assert_int_eq(store_user_add(s, alice), -EEXIST);
        ck_assert_int_eq(store_queue_add(s, &next), 0);
        ck_assert(store_in_transaction(s));
        ck_assert_int_eq(store_commit(s), 0);
        ck_assert(!store_in_transaction(s));
        ck_assert_int_eq(store_queue_count(s, "bob", &n), 0);
        ck_assert_uint_eq(n, 2);
}
END_TEST

/* An unexpected error fails the transaction, as PostgreSQL does: every
 * later call in it fails (never with an error that means something else,
 * such as -EEXIST), and so does the commit, which ends it; nothing of it
 * is stored. */
START_TEST(test_pg_failed_transaction) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage small = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 100, 1000);
        StoreMessage big = message("alice", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{\"n\":1}", 100, 1000);
        StoreMessage next = message("alice", "bob", "CCCCCCCCCCCCCCCCCCCCCC==", "{}", 100, 1000);
        uint64_t n;

        ck_assert_int_eq(open_backend(BACKEND_PG, &s), 0);
        pg_exec("ALTER TABLE sc_queue ADD CONSTRAINT test_small CHECK (size < 3) NOT VALID");
        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_queue_add(s, &small), 0);
        ck_assert_int_eq(store_queue_add(s, &big), -EIO);
        ck_assert_int_eq(store_queue_add(s, &small), -EIO);
        ck_assert_int_eq(store_queue_count(s, "bob", &n), -EIO);
        ck_assert(store_in_transaction(s));
        ck_assert_int_eq(store_commit(s), -EIO);
        ck_assert(!store_in_transaction(s));
        ck_assert_int_eq(store_queue_count(s, "bob", &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(store_queue_add(s, &next), 0);
}
END_TEST

/* Seqs grow in the order messages are committed, across relays: a relay
 * that adds while another's batch is open waits for it, so a reader never
 * sees a seq before a smaller one that is still to come (its cursor would
 * skip that one). */
START_TEST(test_pg_seq_in_commit_order) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage first = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 100, 1000);
        uint64_t second_seq = 0;
        int fds[2], status;
        pid_t pid;

        ck_assert_int_eq(open_backend(BACKEND_PG, &s), 0);
        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_queue_add(s, &first), 0);

        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                StoreMessage second = message("carol", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", 100, 1000);
                Store *other = NULL;
                int ok;

                event = NULL;   /* the parent's */
                ok = open_pg(10 * 1000 * 1000, "test-store-other", &other) == 0 &&
                     store_queue_add(other, &second) == 0;
                if (!ok || write(fds[1], &second.seq, sizeof(second.seq)) != sizeof(second.seq))
                        _exit(1);
                store_free(other);
                _exit(0);
        }
        close(fds[1]);
        /* The other relay's message waits for this batch. */
        usleep(500 * 1000);
        ck_assert_uint_eq(query_u64(BACKEND_PG, "SELECT count(*) FROM sc_queue"), 0);
        ck_assert_int_eq(store_commit(s), 0);
        ck_assert_int_eq(read(fds[0], &second_seq, sizeof(second_seq)), (ssize_t) sizeof(second_seq));
        close(fds[0]);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ck_assert_uint_gt(second_seq, first.seq);
}
END_TEST

static uint64_t kill_store_connection(const char *name) {
        char sql[200];

        snprintf(sql, sizeof(sql), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE application_name = '%s'", name);
        return query_u64(BACKEND_PG, sql);
}

/* Run the event loop until the store answers again (it reconnects there);
 * false if it did not within 10 s. */
static bool wait_reconnected(Store *s) {
        for (int i = 0; i < 200; i++) {
                uint64_t n;

                if (store_user_count(s, &n) == 0)
                        return true;
                ck_assert_int_ge(sd_event_run(event, 50 * 1000), 0);
        }
        return false;
}

static void count_back(void *userdata) {
        (*(unsigned *) userdata)++;
}

/* The server ends the connection: the store says -ENOTCONN at once to
 * every call, fails the transaction that was open, and is back by itself
 * through the event loop, data intact, and says so. */
START_TEST(test_pg_connection_killed) {
        _cleanup_(store_freep) Store *s = NULL;
        StoreMessage m = message("alice", "bob", "AAAAAAAAAAAAAAAAAAAAAA==", "{}", 100, 1000);
        StoreMessage lost = message("alice", "bob", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", 100, 1000);
        unsigned back = 0;
        StoreOptions o = {
                .event = event, .application_name = "test-store-killed", .on_back = count_back, .userdata = &back,
        };
        uint64_t n = 0;

        ck_assert_int_eq(store_open_postgresql(pg_uri, &o, &s), 0);
        ck_assert_int_eq(store_queue_add(s, &m), 0);

        /* Between calls. */
        ck_assert_uint_eq(kill_store_connection("test-store-killed"), 1);
        ck_assert_int_eq(store_queue_count(s, "bob", &n), -ENOTCONN);
        ck_assert_int_eq(store_queue_count(s, "bob", &n), -ENOTCONN);
        ck_assert_int_eq(store_begin(s), -ENOTCONN);
        ck_assert(!store_in_transaction(s));
        ck_assert_msg(wait_reconnected(s), "no reconnection: %s", store_error(s));
        ck_assert_uint_eq(back, 1);
        ck_assert_int_eq(store_queue_count(s, "bob", &n), 0);
        ck_assert_uint_eq(n, 1);

        /* Inside a transaction: what it wrote is gone, and the commit says
         * so; the rollback after it is harmless. */
        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_queue_add(s, &lost), 0);
        ck_assert_uint_eq(kill_store_connection("test-store-killed"), 1);
        ck_assert_int_eq(store_queue_take(s, "bob", m.seq, NULL), -ENOTCONN);
        ck_assert(store_in_transaction(s));
        ck_assert_int_eq(store_commit(s), -ENOTCONN);
        ck_assert(!store_in_transaction(s));
        store_rollback(s);
        ck_assert_msg(wait_reconnected(s), "no reconnection: %s", store_error(s));
        ck_assert_uint_eq(back, 2);
        ck_assert_int_eq(store_queue_find(s, "alice", "BBBBBBBBBBBBBBBBBBBBBB==", "{}", NULL), -ENOENT);
        ck_assert_int_eq(store_queue_count(s, "bob", &n), 0);
        ck_assert_uint_eq(n, 1);
}
END_TEST

/* A server that does not answer: the call returns -ETIMEDOUT after the
 * timeout, not later, and the store reconnects once it answers again. */
START_TEST(test_pg_timeout) {
        _cleanup_(store_freep) Store *s = NULL;
        PGconn *locker;
        PGresult *res;
        uint64_t n = 0, start;

        ck_assert_int_eq(open_pg(500 * 1000, "test-store-timeout", &s), 0);
        ck_assert_int_eq(store_queue_count(s, "bob", &n), 0);
        locker = PQconnectdb(pg_uri);
        ck_assert(PQstatus(locker) == CONNECTION_OK);
        res = PQexec(locker, "BEGIN; LOCK TABLE sc_queue IN ACCESS EXCLUSIVE MODE");
        ck_assert(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);

        start = now_monotonic_usec();
        ck_assert_int_eq(store_queue_count(s, "bob", &n), -ETIMEDOUT);
        ck_assert_uint_lt(now_monotonic_usec() - start, 2 * 1000 * 1000);
        ck_assert_int_eq(store_queue_count(s, "bob", &n), -ENOTCONN);

        res = PQexec(locker, "COMMIT");
        PQclear(res);
        PQfinish(locker);
        ck_assert_msg(wait_reconnected(s), "no reconnection: %s", store_error(s));
        ck_assert_int_eq(store_queue_count(s, "bob", &n), 0);
}
END_TEST

static Suite *store_suite(void) {
        Suite *s = suite_create("store");
        TCase *tc = tcase_create("store");

        tcase_add_checked_fixture(tc, setup, teardown);
        /* The checkpoint cases wait up to 10 s for the thread (a slow disk, ASan). */
        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, test_registry, 0, N_BACKENDS);
        tcase_add_loop_test(tc, test_rotate, 0, N_BACKENDS);
        tcase_add_loop_test(tc, test_queue, 0, N_BACKENDS);
        tcase_add_test(tc, test_queue_sender_index_dropped);
        tcase_add_loop_test(tc, test_queue_counts, 0, N_BACKENDS);
        tcase_add_test(tc, test_send_statements_indexed);
        tcase_add_loop_test(tc, test_seq_never_reused, 0, N_BACKENDS);
        tcase_add_loop_test(tc, test_begin_nosync, 0, N_BACKENDS);
        tcase_add_loop_test(tc, test_expiry, 0, N_BACKENDS);
        tcase_add_loop_test(tc, test_reopen, 0, N_BACKENDS);
        tcase_add_test(tc, test_database_setup);
        tcase_add_test(tc, test_newer_schema_refused);
        tcase_add_loop_test(tc, test_resets, 0, N_BACKENDS);
        tcase_add_test(tc, test_not_a_database);
        tcase_add_loop_test(tc, test_prekeys, 0, N_BACKENDS);
        tcase_add_loop_test(tc, test_prekeys_durable, 0, N_BACKENDS);
        tcase_add_test(tc, test_wal_written_ahead);
        tcase_add_test(tc, test_wal_not_written_ahead_under_lock);
        tcase_add_test(tc, test_checkpoint_thread);
        tcase_add_test(tc, test_checkpoint_while_thread_busy);
        tcase_add_test(tc, test_free_while_thread_busy);
        tcase_add_test(tc, test_batch_needs_event);
        tcase_add_loop_test(tc, test_batch_results, 0, N_BACKENDS);
        tcase_add_test(tc, test_batch_takes_only_nosync);
        tcase_add_loop_test(tc, test_batch_call_waits, 0, N_BACKENDS);
        tcase_add_loop_test(tc, test_list_async_after_batch, 0, N_BACKENDS);
        tcase_add_test(tc, test_batch_disk_full);
        tcase_add_test(tc, test_batch_queued);
        tcase_add_test(tc, test_batch_queued_after_failure);
        tcase_add_loop_test(tc, test_batch_wait, 0, N_BACKENDS);
        tcase_add_test(tc, test_checkpoint_thread_writer);
        if (pg_uri) {
                tcase_add_test(tc, test_pg_open_together);
                tcase_add_test(tc, test_pg_newer_schema_refused);
                tcase_add_test(tc, test_pg_conflicts_keep_transaction);
                tcase_add_test(tc, test_pg_failed_transaction);
                tcase_add_test(tc, test_pg_seq_in_commit_order);
                tcase_add_test(tc, test_pg_connection_killed);
                tcase_add_test(tc, test_pg_timeout);
        }
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        pg_uri = getenv("SC_TEST_DATABASE");
        if (pg_uri && !store_is_postgresql(pg_uri))
                pg_uri = NULL;
        return run_suite(store_suite());
}
