/* SPDX-License-Identifier: MIT */
/* scctl's suite-2 store (cli/ratchet-store.c): sessions, prekeys, pending
 * texts, erasure that leaves no copy in the files, two processes at once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "macro.h"
#include "prekeys.h"
#include "ratchet-store.h"
#include "seen.h"
#include "suite2-io.h"
#include "state.h"
#include "test-main.h"

static char tmpdir[256];

static void setup(void) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-ratchetstore-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        ck_assert_int_eq(system(cmd), 0);
}

static RatchetStore *open_store(ClientState **ret_state) {
        RatchetStore *st = NULL;

        ck_assert_int_eq(client_state_open(tmpdir, ret_state), 0);
        ck_assert_int_eq(ratchet_store_open(*ret_state, "bob", &st), 0);
        return st;
}

/* Whether needle occurs in HOME/ratchet/bob.db or its -wal and -journal. */
static bool files_contain(const uint8_t *needle, size_t len) {
        static const char *const suffixes[] = { "", "-wal", "-journal" };

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                char path[400];
                FILE *f;
                uint8_t *data;
                size_t n;

                snprintf(path, sizeof(path), "%s/ratchet/bob.db%s", tmpdir, suffixes[i]);
                f = fopen(path, "re");
                if (!f)
                        continue;
                data = malloc(1 << 22);
                ck_assert_ptr_nonnull(data);
                n = fread(data, 1, 1 << 22, f);
                fclose(f);
                for (size_t k = 0; k + len <= n; k++)
                        if (memcmp(data + k, needle, len) == 0) {
                                free(data);
                                return true;
                        }
                free(data);
        }
        return false;
}

static void fill(uint8_t *p, size_t len, uint8_t seed) {
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t) (seed + i * 7);
}

START_TEST(test_mode_and_reopen) {
        ClientState *s = NULL;
        RatchetStore *st = open_store(&s);
        char path[400];
        struct stat sb;

        snprintf(path, sizeof(path), "%s/ratchet/bob.db", tmpdir);
        ck_assert_int_eq(stat(path, &sb), 0);
        ck_assert_int_eq(sb.st_mode & 0777, 0600);
        ratchet_store_free(st);
        /* The -wal stays from one open to the next (making it again cost
         * every one-shot send), emptied, and as private as the store. */
        snprintf(path, sizeof(path), "%s/ratchet/bob.db-wal", tmpdir);
        ck_assert_int_eq(stat(path, &sb), 0);
        ck_assert_int_eq(sb.st_size, 0);
        ck_assert_int_eq(sb.st_mode & 0777, 0600);
        /* The schema is created once; a second open finds it. */
        ck_assert_int_eq(ratchet_store_open(s, "bob", &st), 0);
        ck_assert_int_eq(ratchet_store_open(s, "../x", &(RatchetStore *){ NULL }), -EINVAL);
        ratchet_store_free(st);
        client_state_free(s);
}
END_TEST

static int user_version_cb(void *userdata, int n, char **values, char **names) {
        (void) names;
        if (n == 1 && values[0])
                *(int *) userdata = atoi(values[0]);
        return 0;
}

static int user_version(const char *path) {
        sqlite3 *db = NULL;
        int v = -1;

        ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version", user_version_cb, &v, NULL), SQLITE_OK);
        sqlite3_close(db);
        return v;
}

/* A store made before its schema had a version (user_version 0), here
 * missing a table too: the next open makes what is missing, keeps the
 * rest and records the version, which later opens trust. */
START_TEST(test_schema_version) {
        static const uint8_t id[MSG_ID_LEN] = "0123456789abcde", digest[ENVELOPE_DIGEST_LEN] = { 1 };
        ClientState *s = NULL;
        RatchetStore *st = open_store(&s);
        char path[400], *text = NULL;
        size_t len;
        sqlite3 *db = NULL;

        snprintf(path, sizeof(path), "%s/ratchet/bob.db", tmpdir);
        ck_assert_int_eq(user_version(path), 1);
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_pending_put(st, "alice", id, digest, "hi", 2), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        ratchet_store_free(st);

        ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version = 0; DROP TABLE opk;", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        ck_assert_int_eq(ratchet_store_open(s, "bob", &st), 0);
        ck_assert_int_eq(user_version(path), 1);
        ck_assert_int_eq(ratchet_store_opk_count(st), 0);
        ck_assert_int_eq(ratchet_store_pending_get(st, "alice", id, digest, &text, &len), 0);
        ck_assert_str_eq(text, "hi");
        secure_free(text, len + 1);
        ratchet_store_free(st);
        client_state_free(s);
}
END_TEST

START_TEST(test_spk_rotation) {
        ClientState *s = NULL;
        RatchetStore *st = open_store(&s);
        SignedPrekey a = { .created = 1000, .sig_len = SUITE2_RSA_MIN }, b = a, got;
        uint8_t pa[X25519_KEY_LEN], pb[X25519_KEY_LEN], k[X25519_KEY_LEN];
        uint32_t id;

        ck_assert_int_eq(ratchet_store_spk_current(st, &got), -ENOENT);
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_begin(st), -EBUSY);
        ck_assert_int_eq(ratchet_store_next_spk_id(st, &a.id), 0);
        ck_assert_int_eq(ratchet_store_next_spk_id(st, &b.id), 0);
        ck_assert_uint_eq(a.id, 1);
        ck_assert_uint_eq(b.id, 2);
        fill(pa, sizeof(pa), 1);
        fill(pb, sizeof(pb), 2);
        x25519_public(pa, a.pub);
        x25519_public(pb, b.pub);
        b.created = 2000;
        ck_assert_int_eq(ratchet_store_spk_add(st, &a, pa, 1000), 0);
        ck_assert_int_eq(ratchet_store_spk_add(st, &b, pb, 2000), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);

        ck_assert_int_eq(ratchet_store_spk_current(st, &got), 0);
        ck_assert_uint_eq(got.id, b.id);
        ck_assert_mem_eq(got.pub, b.pub, X25519_KEY_LEN);
        ck_assert_uint_eq(got.created, 2000);
        ck_assert_int_eq(ratchet_store_spk_retired_count(st), 1);
        /* The retired one still opens messages sealed to it... */
        ck_assert_int_eq(ratchet_store_spk_private(st, a.id, k), 0);
        ck_assert_mem_eq(k, pa, X25519_KEY_LEN);
        ck_assert(files_contain(pa, sizeof(pa)));

        /* ... until keep seconds after its retirement (at 2000). */
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_spk_expire(st, 2999, 1000), 0);
        ck_assert_int_eq(ratchet_store_spk_expire(st, 3000, 1000), 1);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        ck_assert_int_eq(ratchet_store_spk_private(st, a.id, k), -ENOENT);
        ck_assert_int_eq(ratchet_store_spk_private(st, b.id, k), 0);
        ck_assert_int_eq(ratchet_store_spk_retired_count(st), 0);
        /* Erased: in neither the database nor its log. */
        ck_assert(!files_contain(pa, sizeof(pa)));
        ck_assert(files_contain(pb, sizeof(pb)));

        /* Ids are never reused, even after an erasure. */
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_next_spk_id(st, &id), 0);
        ck_assert_uint_eq(id, 3);
        ratchet_store_rollback(st);
        ratchet_store_rollback(st);     /* harmless outside a transaction */
        ck_assert_int_eq(ratchet_store_commit(st), -EINVAL);
        ratchet_store_free(st);
        client_state_free(s);
}
END_TEST

START_TEST(test_opk) {
        ClientState *s = NULL;
        RatchetStore *st = open_store(&s);
        uint8_t priv[3][X25519_KEY_LEN], k[X25519_KEY_LEN];
        OneTimePrekey o;

        ck_assert_int_eq(ratchet_store_begin(st), 0);
        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(ratchet_store_next_opk_id(st, &o.id), 0);
                ck_assert_uint_eq(o.id, (unsigned) i + 1);
                fill(priv[i], X25519_KEY_LEN, (uint8_t) (10 + i));
                x25519_public(priv[i], o.pub);
                ck_assert_int_eq(ratchet_store_opk_add(st, &o, priv[i]), 0);
        }
        ck_assert_int_eq(ratchet_store_opk_add(st, &o, priv[2]), -EEXIST);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        ck_assert_int_eq(ratchet_store_opk_count(st), 3);

        /* A rolled-back erasure leaves the key. */
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_opk_erase(st, 2), 0);
        ratchet_store_rollback(st);
        ck_assert_int_eq(ratchet_store_opk_private(st, 2, k), 0);
        ck_assert_mem_eq(k, priv[1], X25519_KEY_LEN);

        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_opk_erase(st, 2), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        ck_assert_int_eq(ratchet_store_opk_private(st, 2, k), -ENOENT);
        ck_assert_int_eq(ratchet_store_opk_private(st, 9, k), -ENOENT);
        ck_assert_int_eq(ratchet_store_opk_count(st), 2);
        ck_assert(!files_contain(priv[1], X25519_KEY_LEN));
        ck_assert(files_contain(priv[0], X25519_KEY_LEN));
        ratchet_store_free(st);
        client_state_free(s);
}
END_TEST

/* A receiver's session: made without RSA from fixed keys. */
static Ratchet *make_session(uint8_t seed) {
        uint8_t sk[SUITE2_KEY_LEN], spk[X25519_KEY_LEN], ekp[X25519_KEY_LEN], ek[X25519_KEY_LEN];
        Ratchet *r = NULL;

        fill(sk, sizeof(sk), seed);
        fill(spk, sizeof(spk), (uint8_t) (seed + 1));
        fill(ekp, sizeof(ekp), (uint8_t) (seed + 2));
        x25519_public(ekp, ek);
        ck_assert_int_eq(ratchet_init_receiver("bob", "alice", sk, spk, ek, &r), 0);
        return r;
}

START_TEST(test_sessions) {
        ClientState *s = NULL;
        RatchetStore *st = open_store(&s);
        Ratchet *r1 = make_session(1), *r2 = make_session(50), *got = NULL;
        uint8_t *a = NULL, *b = NULL;
        size_t alen, blen;

        ck_assert_int_eq(ratchet_store_session_get(st, "alice", RATCHET_DEVICE_DEFAULT, "SHA256:a", &got),
                         -ENOENT);
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_session_put(st, "alice", RATCHET_DEVICE_DEFAULT, "SHA256:a", r1, 10), 0);
        /* Another device of the same user is another session. */
        ck_assert_int_eq(ratchet_store_session_put(st, "alice", 2, "SHA256:a", r2, 10), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);

        ck_assert_int_eq(ratchet_store_session_get(st, "alice", RATCHET_DEVICE_DEFAULT, "SHA256:a", &got), 0);
        ck_assert_int_eq(ratchet_serialize(r1, &a, &alen), 0);
        ck_assert_int_eq(ratchet_serialize(got, &b, &blen), 0);
        ck_assert_uint_eq(alen, blen);
        ck_assert_mem_eq(a, b, alen);
        free(b);
        ratchet_free(got);

        /* Replaced in place: the old state is gone from the files. */
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_session_put(st, "alice", RATCHET_DEVICE_DEFAULT, "SHA256:a", r2, 11), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        ck_assert(!files_contain(a, alen));
        ck_assert_int_eq(ratchet_store_session_get(st, "alice", RATCHET_DEVICE_DEFAULT, "SHA256:a", &got), 0);
        ck_assert_int_eq(ratchet_serialize(got, &b, &blen), 0);
        ck_assert(files_contain(b, blen));
        ratchet_free(got);

        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_session_erase(st, "alice", RATCHET_DEVICE_DEFAULT), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        ck_assert_int_eq(ratchet_store_session_get(st, "alice", RATCHET_DEVICE_DEFAULT, "SHA256:a", &got),
                         -ENOENT);
        ck_assert_int_eq(ratchet_store_session_get(st, "alice", 2, "SHA256:a", &got), 0);
        ratchet_free(got);
        /* alice with another key (trusted again after a reset): no session. */
        ck_assert_int_eq(ratchet_store_session_get(st, "alice", 2, "SHA256:b", &got), -ENOENT);
        ck_assert_int_eq(ratchet_store_session_key_changed(st, "alice", 2, "SHA256:b"), 1);
        ck_assert_int_eq(ratchet_store_session_key_changed(st, "alice", 2, "SHA256:a"), 0);
        ck_assert_int_eq(ratchet_store_session_key_changed(st, "carol", 2, "SHA256:a"), 0);

        secure_free(a, alen);
        secure_free(b, blen);
        ratchet_free(r1);
        ratchet_free(r2);
        ratchet_store_free(st);
        client_state_free(s);
}
END_TEST

START_TEST(test_pending_and_peers) {
        ClientState *s = NULL;
        RatchetStore *st = open_store(&s);
        uint8_t id[MSG_ID_LEN], digest[ENVELOPE_DIGEST_LEN], other[ENVELOPE_DIGEST_LEN];
        static const char text[] = "the secret text of a pending message";
        char *got = NULL;
        size_t len = 0;

        fill(id, sizeof(id), 3);
        fill(digest, sizeof(digest), 4);
        fill(other, sizeof(other), 5);
        ck_assert_int_eq(ratchet_store_pending_get(st, "alice", id, digest, &got, &len), -ENOENT);
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_pending_put(st, "alice", id, digest, text, strlen(text)), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        /* Same (from, id), other content: not this message. */
        ck_assert_int_eq(ratchet_store_pending_get(st, "alice", id, other, &got, &len), -EEXIST);
        ck_assert_int_eq(ratchet_store_pending_get(st, "alice", id, digest, &got, &len), 0);
        ck_assert_uint_eq(len, strlen(text));
        ck_assert_str_eq(got, text);
        secure_free(got, len + 1);
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_pending_erase(st, "alice", id), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        ck_assert_int_eq(ratchet_store_pending_get(st, "alice", id, digest, &got, &len), -ENOENT);
        ck_assert(!files_contain((const uint8_t *) text, strlen(text)));

        ck_assert_int_eq(ratchet_store_peer_had_prekeys(st, "alice"), 0);
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_peer_saw_prekeys(st, "alice", 100), 0);
        ck_assert_int_eq(ratchet_store_peer_saw_prekeys(st, "alice", 200), 0);
        ck_assert_int_eq(ratchet_store_commit(st), 0);
        ck_assert_int_eq(ratchet_store_peer_had_prekeys(st, "alice"), 1);
        ck_assert_int_eq(ratchet_store_peer_had_prekeys(st, "carol"), 0);
        ratchet_store_free(st);
        client_state_free(s);
}
END_TEST

/* Two processes taking ids at once: BEGIN IMMEDIATE serialises them, so
 * no id is handed out twice and none is lost. */
#define ROUNDS 40
START_TEST(test_two_processes) {
        ClientState *s = NULL;
        RatchetStore *st = open_store(&s);
        pid_t pids[2];
        uint32_t id;

        ratchet_store_free(st);
        for (int p = 0; p < 2; p++) {
                pids[p] = fork();
                ck_assert_int_ge(pids[p], 0);
                if (pids[p] == 0) {
                        RatchetStore *c = NULL;
                        int ok = ratchet_store_open(s, "bob", &c) == 0;

                        for (int i = 0; ok && i < ROUNDS; i++) {
                                OneTimePrekey o = { 0 };
                                uint8_t priv[X25519_KEY_LEN];

                                fill(priv, sizeof(priv), (uint8_t) i);
                                ok = ratchet_store_begin(c) == 0 &&
                                     ratchet_store_next_opk_id(c, &o.id) == 0 &&
                                     ratchet_store_opk_add(c, &o, priv) == 0 &&
                                     ratchet_store_commit(c) == 0;
                        }
                        ratchet_store_free(c);
                        _exit(ok ? 0 : 1);
                }
        }
        for (int p = 0; p < 2; p++) {
                int status;

                ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
                ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        ck_assert_int_eq(ratchet_store_open(s, "bob", &st), 0);
        ck_assert_int_eq(ratchet_store_opk_count(st), 2 * ROUNDS);
        ck_assert_int_eq(ratchet_store_begin(st), 0);
        ck_assert_int_eq(ratchet_store_next_opk_id(st, &id), 0);
        ck_assert_uint_eq(id, 2 * ROUNDS + 1);
        ratchet_store_rollback(st);
        ratchet_store_free(st);
        client_state_free(s);
}
END_TEST

START_TEST(test_prekeys_maintain) {
        ClientState *s = NULL;
        RatchetStore *st = open_store(&s);
        PrekeysUpdate u = {};
        SignedPrekey cur;
        uint8_t k[X25519_KEY_LEN], pub[X25519_KEY_LEN];
        RsaKey *id = NULL;
        uint32_t first;

        ck_assert_int_eq(rsa_key_generate(2048, &id), 0);
        /* First login: an SPK, signed by the identity; OPK count unknown. */
        ck_assert_int_eq(prekeys_maintain(st, "bob", id, 1000, 50, false, -1, 0, NULL, &u), 0);
        ck_assert(u.has_spk);
        ck_assert_uint_eq(u.n_opks, 0);
        ck_assert_int_eq(signed_prekey_verify("bob", id, &u.spk), 0);
        ck_assert_int_eq(ratchet_store_spk_private(st, u.spk.id, k), 0);
        x25519_public(k, pub);
        ck_assert_mem_eq(pub, u.spk.pub, X25519_KEY_LEN);
        first = u.spk.id;
        prekeys_update_done(&u);

        /* The relay says 5 left: top up to the target, nothing else. */
        ck_assert_int_eq(prekeys_maintain(st, "bob", id, 2000, 50, false, 5, 0, NULL, &u), 0);
        ck_assert(!u.has_spk);
        ck_assert_uint_eq(u.n_opks, PREKEYS_OPK_TARGET - 5);
        ck_assert_int_eq(ratchet_store_opk_private(st, u.opks[7].id, k), 0);
        x25519_public(k, pub);
        ck_assert_mem_eq(pub, u.opks[7].pub, X25519_KEY_LEN);
        ck_assert_int_eq(ratchet_store_opk_count(st), (int) (PREKEYS_OPK_TARGET - 5));
        prekeys_update_done(&u);
        ck_assert_int_eq(prekeys_maintain(st, "bob", id, 2000, 50, false, PREKEYS_OPK_LOW, 0, NULL,
                                          &u), 0);
        ck_assert(!u.has_spk && u.n_opks == 0);
        /* A relay that keeps at most 3: never more than that. */
        ck_assert_int_eq(prekeys_maintain(st, "bob", id, 2000, 50, false, 1, 3, NULL, &u), 0);
        ck_assert_uint_eq(u.n_opks, 2);
        prekeys_update_done(&u);
        ck_assert_int_eq(prekeys_maintain(st, "bob", id, 2000, 50, false, 3, 3, NULL, &u), 0);
        ck_assert_uint_eq(u.n_opks, 0);

        /* A week on: replaced; the old private half stays for 50 s. */
        ck_assert_int_eq(prekeys_maintain(st, "bob", id, 1000 + PREKEYS_SPK_MAX_AGE, 50, false, -1, 0,
                                          NULL, &u), 0);
        ck_assert(u.has_spk);
        ck_assert_uint_ne(u.spk.id, first);
        ck_assert_int_eq(ratchet_store_spk_current(st, &cur), 0);
        ck_assert_uint_eq(cur.id, u.spk.id);
        ck_assert_int_eq(ratchet_store_spk_private(st, first, k), 0);
        prekeys_update_done(&u);
        ck_assert_int_eq(prekeys_maintain(st, "bob", id, 1050 + PREKEYS_SPK_MAX_AGE, 50, false, -1, 0,
                                          NULL, &u), 0);
        ck_assert(!u.has_spk);
        ck_assert_int_eq(ratchet_store_spk_private(st, first, k), -ENOENT);

        /* rotate with retention 0: the replaced key goes at once. */
        ck_assert_int_eq(ratchet_store_spk_current(st, &cur), 0);
        ck_assert_int_eq(prekeys_maintain(st, "bob", id, 1060 + PREKEYS_SPK_MAX_AGE, 0, true, -1, 0,
                                          NULL, &u), 0);
        ck_assert(u.has_spk);
        ck_assert_int_eq(ratchet_store_spk_private(st, cur.id, k), -ENOENT);
        ck_assert_int_eq(ratchet_store_spk_private(st, u.spk.id, k), 0);
        ck_assert_int_eq(ratchet_store_spk_retired_count(st), 0);
        prekeys_update_done(&u);

        rsa_key_free(id);
        ratchet_store_free(st);
        client_state_free(s);
}
END_TEST

/* Two users, each with their own state directory, store and seen list. */
typedef struct Side {
        char home[400];
        ClientState *state;
        RatchetStore *st;
        SeenStore *seen;
        RsaKey *key;
} Side;

static RsaKey *alice_key, *bob_key;

static void side_open(Side *x, const char *user, RsaKey *key) {
        snprintf(x->home, sizeof(x->home), "%s/%s", tmpdir, user);
        ck_assert_int_eq(client_state_open(x->home, &x->state), 0);
        ck_assert_int_eq(ratchet_store_open(x->state, user, &x->st), 0);
        ck_assert_int_eq(seen_open(x->state, user, 86400, now_unix(), &x->seen), 0);
        x->key = key;
}

static void side_close(Side *x) {
        seen_free(x->seen);
        ratchet_store_free(x->st);
        client_state_free(x->state);
}

/* Alice and Bob with their keys and stores, Bob's prekeys made (u). */
static void alice_and_bob(Side *alice, Side *bob, PrekeysUpdate *u) {
        if (!alice_key)
                ck_assert_int_eq(rsa_key_generate(2048, &alice_key), 0);
        if (!bob_key)
                ck_assert_int_eq(rsa_key_generate(2048, &bob_key), 0);
        side_open(alice, "alice", alice_key);
        side_open(bob, "bob", bob_key);
        ck_assert_int_eq(prekeys_maintain(bob->st, "bob", bob_key, now_unix(), 3600, false, 0, 0, NULL, u), 0);
}

/* Bob's bundle as the relay would hand it out: his SPK and OPK number n of
 * the batch (none when n < 0). */
static void bob_bundle(Side *bob, const PrekeysUpdate *u, int n, PrekeyBundle *ret) {
        *ret = (PrekeyBundle) {};
        ck_assert_int_eq(ratchet_store_spk_current(bob->st, &ret->spk), 0);
        if (n >= 0) {
                ret->has_opk = true;
                ret->opk = u->opks[n];
        }
}

static Envelope *seal(Side *alice, const PrekeyBundle *b, const char *text) {
        Envelope *e = NULL;

        ck_assert_int_eq(suite2_io_seal(alice->st, "alice", alice->key, "bob", bob_key, b, now_unix(),
                                        text, strlen(text), &e), 0);
        ck_assert(envelope_is_suite2(e));
        return e;
}

/* Open as bob, taking texts of at most max_text bytes (0: any); NULL on
 * success with the text checked, else the reason. */
static const char *open_as_bob_max(Side *bob, const Envelope *e, size_t max_text, const char *want,
                                   bool *ret_pending) {
        const char *reason = NULL;
        Suite2Opened o = {};
        int r;

        r = suite2_io_open(bob->st, bob->seen, "bob", bob->key, alice_key, e, now_unix(), 86400, max_text,
                           &o, &reason);
        if (r == -EBADMSG)
                return reason;
        ck_assert_int_eq(r, 0);
        ck_assert_str_eq(o.text, want);
        if (ret_pending)
                *ret_pending = o.from_pending;
        secure_free(o.text, o.len + 1);
        return NULL;
}

static const char *open_as_bob(Side *bob, const Envelope *e, const char *want, bool *ret_pending) {
        return open_as_bob_max(bob, e, 0, want, ret_pending);
}

START_TEST(test_io_session) {
        Side alice = {}, bob = {};
        PrekeysUpdate u = {};
        PrekeyBundle b;
        Envelope *e[4];
        Envelope *back;
        bool pending = true;
        uint8_t k[X25519_KEY_LEN];

        alice_and_bob(&alice, &bob, &u);
        bob_bundle(&bob, &u, 3, &b);

        /* Without a session or a bundle there is nothing to seal with. */
        ck_assert_int_eq(suite2_io_seal(alice.st, "alice", alice_key, "bob", bob_key, NULL, now_unix(),
                                        "x", 1, &back), -ENOENT);
        /* A bundle whose SPK is not signed by bob's key is refused. */
        b.spk.pub[0] ^= 1;
        ck_assert_int_eq(suite2_io_seal(alice.st, "alice", alice_key, "bob", bob_key, &b, now_unix(),
                                        "x", 1, &back), -EBADMSG);
        b.spk.pub[0] ^= 1;
        ck_assert_int_eq(suite2_io_has_session(alice.st, "bob", bob_key->fingerprint), 0);

        e[0] = seal(&alice, &b, "one");
        ck_assert_int_eq(suite2_io_has_session(alice.st, "bob", bob_key->fingerprint), 1);
        /* Later messages come from the stored session: no bundle needed. */
        e[1] = seal(&alice, NULL, "two");
        e[2] = seal(&alice, NULL, "three");
        e[3] = seal(&alice, NULL, "four");

        /* Out of order: the third first, then the first (which uses the OPK),
         * then the second from a skipped key. */
        ck_assert_ptr_null(open_as_bob(&bob, e[2], "three", &pending));
        ck_assert(!pending);
        ck_assert_int_eq(suite2_io_shown(bob.st, bob.seen, e[2]), 0);
        ck_assert_int_eq(ratchet_store_opk_private(bob.st, u.opks[3].id, k), -ENOENT);
        ck_assert_ptr_null(open_as_bob(&bob, e[0], "one", NULL));
        ck_assert_int_eq(suite2_io_shown(bob.st, bob.seen, e[0]), 0);

        /* A crash after opening, before showing: the redelivery shows the
         * kept text (its key is gone), once. */
        ck_assert_ptr_null(open_as_bob(&bob, e[1], "two", &pending));
        ck_assert(!pending);
        ck_assert_ptr_null(open_as_bob(&bob, e[1], "two", &pending));
        ck_assert(pending);
        ck_assert_int_eq(suite2_io_shown(bob.st, bob.seen, e[1]), 0);
        ck_assert_str_eq(open_as_bob(&bob, e[1], NULL, NULL), "duplicate");

        /* Shown ones are duplicates; the same id with other content is a
         * replay (refused before the signature would even matter). */
        ck_assert_str_eq(open_as_bob(&bob, e[0], NULL, NULL), "duplicate");
        e[3]->ct[0] ^= 1;
        ck_assert_str_eq(open_as_bob(&bob, e[3], NULL, NULL), "bad_signature");
        e[3]->ct[0] ^= 1;
        ck_assert_ptr_null(open_as_bob(&bob, e[3], "four", NULL));
        ck_assert_int_eq(suite2_io_shown(bob.st, bob.seen, e[3]), 0);

        /* A replayed envelope whose seen entry is gone (another device's
         * store, say) still fails: its message key was used. */
        {
                Side bob2 = bob;

                ck_assert_int_eq(seen_open(bob.state, "bob-other", 86400, now_unix(), &bob2.seen), 0);
                ck_assert_str_eq(open_as_bob(&bob2, e[2], NULL, NULL), "replay");
                seen_free(bob2.seen);
        }

        /* Bob answers in the session alice started. */
        ck_assert_int_eq(suite2_io_seal(bob.st, "bob", bob_key, "alice", alice_key, NULL, now_unix(),
                                        "hi", 2, &back), 0);
        {
                const char *reason = NULL;
                Suite2Opened o = {};

                ck_assert_int_eq(suite2_io_open(alice.st, alice.seen, "alice", alice_key, bob_key, back,
                                                now_unix(), 86400, 0, &o, &reason), 0);
                ck_assert_str_eq(o.text, "hi");
                secure_free(o.text, o.len + 1);
        }

        for (size_t i = 0; i < ELEMENTSOF(e); i++)
                envelope_free(e[i]);
        envelope_free(back);
        prekeys_update_done(&u);
        side_close(&alice);
        side_close(&bob);
}
END_TEST

/* A burst sealed in one transaction (suite2_io_seal_in()): nothing of it
 * is written before the commit, so that after a rollback the session
 * starts again from the bundle; once committed, the messages open in
 * order, the first starting the session, and the next seal goes on from
 * the last of them. */
START_TEST(test_io_seal_batch) {
        static const char *const texts[] = { "one", "two", "three" };
        Side alice = {}, bob = {};
        PrekeysUpdate u = {};
        PrekeyBundle b;
        Envelope *e[ELEMENTSOF(texts)] = {}, *after;

        alice_and_bob(&alice, &bob, &u);
        bob_bundle(&bob, &u, 0, &b);

        ck_assert_int_eq(ratchet_store_begin(alice.st), 0);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                ck_assert_int_eq(suite2_io_seal_in(alice.st, "alice", alice_key, "bob", bob_key,
                                                   i == 0 ? &b : NULL, now_unix(), texts[i],
                                                   strlen(texts[i]), &e[i]), 0);
                envelope_free(e[i]);
        }
        ratchet_store_rollback(alice.st);
        ck_assert_int_eq(suite2_io_has_session(alice.st, "bob", bob_key->fingerprint), 0);

        ck_assert_int_eq(ratchet_store_begin(alice.st), 0);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                ck_assert_int_eq(suite2_io_seal_in(alice.st, "alice", alice_key, "bob", bob_key,
                                                   i == 0 ? &b : NULL, now_unix(), texts[i],
                                                   strlen(texts[i]), &e[i]), 0);
                /* Within the transaction the next seal sees this one's state. */
                ck_assert_int_eq(suite2_io_has_session(alice.st, "bob", bob_key->fingerprint), 1);
        }
        ck_assert_int_eq(ratchet_store_commit(alice.st), 0);
        after = seal(&alice, NULL, "four");

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                bool pending = true;

                ck_assert_ptr_null(open_as_bob(&bob, e[i], texts[i], &pending));
                ck_assert(!pending);
                envelope_free(e[i]);
        }
        ck_assert_ptr_null(open_as_bob(&bob, after, "four", NULL));
        envelope_free(after);
        prekeys_update_done(&u);
        side_close(&alice);
        side_close(&bob);
}
END_TEST

/* The recipient's SPK erased after rotation: a session start sealed to it
 * no longer opens; with the OPK used up, another start naming it fails. */
START_TEST(test_io_erased_prekeys) {
        Side alice = {}, carol = {}, bob = {};
        PrekeysUpdate u = {};
        PrekeyBundle b;
        Envelope *e1, *e2;

        if (!alice_key)
                ck_assert_int_eq(rsa_key_generate(2048, &alice_key), 0);
        if (!bob_key)
                ck_assert_int_eq(rsa_key_generate(2048, &bob_key), 0);
        side_open(&alice, "alice", alice_key);
        side_open(&carol, "carol", alice_key);  /* a second sender store, same key */
        side_open(&bob, "bob", bob_key);
        ck_assert_int_eq(prekeys_maintain(bob.st, "bob", bob_key, now_unix(), 3600, false, 0, 0, NULL, &u),
                         0);
        bob_bundle(&bob, &u, 0, &b);
        e1 = seal(&alice, &b, "first");
        /* The same OPK handed out twice (a cheating relay): the second
         * start cannot open once the first used it. */
        e2 = seal(&carol, &b, "second");
        ck_assert_ptr_null(open_as_bob(&bob, e1, "first", NULL));
        ck_assert_int_eq(suite2_io_shown(bob.st, bob.seen, e1), 0);
        ck_assert_str_eq(open_as_bob(&bob, e2, NULL, NULL), "bad_key");
        envelope_free(e2);

        /* Without an OPK: the SPK alone, until it is rotated and erased. */
        bob_bundle(&bob, &u, -1, &b);
        ck_assert_int_eq(ratchet_store_session_erase(carol.st, "bob", RATCHET_DEVICE_DEFAULT), 0);
        e2 = seal(&carol, &b, "spk only");
        prekeys_update_done(&u);
        ck_assert_int_eq(prekeys_maintain(bob.st, "bob", bob_key, now_unix(), 0, true, -1, 0, NULL, &u), 0);
        ck_assert_int_eq(ratchet_store_session_erase(bob.st, "alice", RATCHET_DEVICE_DEFAULT), 0);
        ck_assert_str_eq(open_as_bob(&bob, e2, NULL, NULL), "bad_key");

        envelope_free(e1);
        envelope_free(e2);
        prekeys_update_done(&u);
        side_close(&alice);
        side_close(&carol);
        side_close(&bob);
}
END_TEST

/* A message without a session start, for a session the recipient does not
 * have (lost its state, say): wrong_session, the page's name. */
START_TEST(test_io_wrong_session) {
        Side alice = {}, bob = {};
        PrekeysUpdate u = {};
        PrekeyBundle b;
        Envelope *e, *back;
        const char *reason = NULL;
        Suite2Opened o = {};

        alice_and_bob(&alice, &bob, &u);
        bob_bundle(&bob, &u, 0, &b);
        e = seal(&alice, &b, "one");
        ck_assert_ptr_null(open_as_bob(&bob, e, "one", NULL));
        ck_assert_int_eq(suite2_io_shown(bob.st, bob.seen, e), 0);
        /* Bob's answer carries no start: the session is alice's. */
        ck_assert_int_eq(suite2_io_seal(bob.st, "bob", bob_key, "alice", alice_key, NULL, now_unix(),
                                        "hi", 2, &back), 0);
        ck_assert_int_eq(ratchet_store_session_erase(alice.st, "bob", RATCHET_DEVICE_DEFAULT), 0);
        ck_assert_int_eq(suite2_io_open(alice.st, alice.seen, "alice", alice_key, bob_key, back, now_unix(),
                                        86400, 0, &o, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "wrong_session");

        envelope_free(e);
        envelope_free(back);
        prekeys_update_done(&u);
        side_close(&alice);
        side_close(&bob);
}
END_TEST

/* A text over max_text is too_large (step 4), and refusing it changes
 * nothing: the session start opens afterwards, with its OPK. */
START_TEST(test_io_too_large) {
        Side alice = {}, bob = {};
        PrekeysUpdate u = {};
        PrekeyBundle b;
        Envelope *e;
        uint8_t k[X25519_KEY_LEN];
        bool pending = true;

        alice_and_bob(&alice, &bob, &u);
        bob_bundle(&bob, &u, 0, &b);
        e = seal(&alice, &b, "twelve bytes");
        ck_assert_str_eq(open_as_bob_max(&bob, e, 11, NULL, NULL), "too_large");
        ck_assert_int_eq(suite2_io_has_session(bob.st, "alice", alice_key->fingerprint), 0);
        ck_assert_int_eq(ratchet_store_opk_private(bob.st, u.opks[0].id, k), 0);
        ck_assert_ptr_null(open_as_bob_max(&bob, e, 12, "twelve bytes", &pending));
        ck_assert(!pending);
        ck_assert_int_eq(ratchet_store_opk_private(bob.st, u.opks[0].id, k), -ENOENT);

        envelope_free(e);
        prekeys_update_done(&u);
        side_close(&alice);
        side_close(&bob);
}
END_TEST

/* The signature is checked before anything looks at the header it covers:
 * a header that does not parse, in an envelope whose signature does not
 * verify (it covers the header), is bad_signature. */
START_TEST(test_io_signature_first) {
        Side alice = {}, bob = {};
        PrekeysUpdate u = {};
        PrekeyBundle b;
        Envelope *e;

        alice_and_bob(&alice, &bob, &u);
        bob_bundle(&bob, &u, 0, &b);
        e = seal(&alice, &b, "one");
        e->hdr[0] = 2;          /* the start flag: 0 or 1 */
        ck_assert_str_eq(open_as_bob(&bob, e, NULL, NULL), "bad_signature");
        e->hdr[0] = 1;
        ck_assert_ptr_null(open_as_bob(&bob, e, "one", NULL));

        envelope_free(e);
        prekeys_update_done(&u);
        side_close(&alice);
        side_close(&bob);
}
END_TEST

static Suite *ratchetstore_suite(void) {
        Suite *s = suite_create("ratchetstore");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_mode_and_reopen);
        tcase_add_test(tc, test_schema_version);
        tcase_add_test(tc, test_spk_rotation);
        tcase_add_test(tc, test_opk);
        tcase_add_test(tc, test_sessions);
        tcase_add_test(tc, test_pending_and_peers);
        tcase_add_test(tc, test_two_processes);
        tcase_add_test(tc, test_prekeys_maintain);
        tcase_add_test(tc, test_io_session);
        tcase_add_test(tc, test_io_seal_batch);
        tcase_add_test(tc, test_io_erased_prekeys);
        tcase_add_test(tc, test_io_wrong_session);
        tcase_add_test(tc, test_io_too_large);
        tcase_add_test(tc, test_io_signature_first);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(ratchetstore_suite());
}
