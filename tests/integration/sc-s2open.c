/* SPDX-License-Identifier: MIT */
/*
 * The attacker of the forward-secrecy test: with a user's identity key and
 * state directory, try to open recorded suite-2 envelopes with every secret
 * that directory still holds: each stored ratchet session, and a fresh
 * session start from each signed and one-time prekey private half.
 *
 *   sc-s2open HOME USER SENDER_PACKAGE < ENVELOPES
 *
 * HOME/identity/USER.key and HOME/ratchet/USER.db are the victim's;
 * SENDER_PACKAGE is the sender's key package (JSON, public: a signature
 * must verify before anything opens). ENVELOPES has one envelope JSON per
 * line, as the relay's queue keeps them. Prints "opened N of M" and exits
 * 0; 2 on a usage or read error. The state is only read: every session is
 * copied into memory first.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "codec.h"
#include "envelope.h"
#include "json-util.h"
#include "rsa.h"
#include "suite2.h"

typedef struct Blob {
        uint8_t *data;
        size_t len;
} Blob;

typedef struct Secrets {
        Blob *sessions;
        size_t n_sessions;
        uint8_t (*prekeys)[X25519_KEY_LEN];     /* SPKs and OPKs alike */
        uint32_t *prekey_ids;
        bool *prekey_is_opk;
        size_t n_prekeys;
} Secrets;

static void secrets_done(Secrets *s) {
        for (size_t i = 0; i < s->n_sessions; i++)
                free(s->sessions[i].data);
        free(s->sessions);
        free(s->prekeys);
        free(s->prekey_ids);
        free(s->prekey_is_opk);
}

static int fail(const char *what) {
        fprintf(stderr, "sc-s2open: %s\n", what);
        return 2;
}

static int load_secrets(const char *path, Secrets *s) {
        static const char *const queries[] = {
                "SELECT state FROM session",
                "SELECT id, priv, 0 FROM spk UNION ALL SELECT id, priv, 1 FROM opk",
        };
        sqlite3 *db = NULL;

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
                return -EIO;
        for (size_t q = 0; q < 2; q++) {
                sqlite3_stmt *stmt = NULL;

                if (sqlite3_prepare_v2(db, queries[q], -1, &stmt, NULL) != SQLITE_OK) {
                        sqlite3_close(db);
                        return -EIO;
                }
                while (sqlite3_step(stmt) == SQLITE_ROW) {
                        if (q == 0) {
                                Blob *b;
                                size_t n = (size_t) sqlite3_column_bytes(stmt, 0);

                                s->sessions = realloc(s->sessions, (s->n_sessions + 1) * sizeof(Blob));
                                b = &s->sessions[s->n_sessions++];
                                b->data = malloc(n ?: 1);
                                memcpy(b->data, sqlite3_column_blob(stmt, 0), n);
                                b->len = n;
                        } else {
                                size_t i = s->n_prekeys++;

                                if (sqlite3_column_bytes(stmt, 1) != X25519_KEY_LEN) {
                                        s->n_prekeys--;
                                        continue;
                                }
                                s->prekeys = realloc(s->prekeys, s->n_prekeys * X25519_KEY_LEN);
                                s->prekey_ids = realloc(s->prekey_ids, s->n_prekeys * sizeof(uint32_t));
                                s->prekey_is_opk = realloc(s->prekey_is_opk, s->n_prekeys * sizeof(bool));
                                s->prekey_ids[i] = (uint32_t) sqlite3_column_int64(stmt, 0);
                                memcpy(s->prekeys[i], sqlite3_column_blob(stmt, 1), X25519_KEY_LEN);
                                s->prekey_is_opk[i] = sqlite3_column_int(stmt, 2);
                        }
                }
                sqlite3_finalize(stmt);
        }
        sqlite3_close(db);
        return 0;
}

static bool try_open(Ratchet *r, const Suite2Message *m, const RsaKey *sender) {
        Suite2Error error;
        char *text = NULL;
        size_t len = 0;

        if (suite2_open(r, m, sender, now_unix(), NULL, &text, &len, &error) < 0)
                return false;
        printf("opened: %.*s\n", (int) len, text);
        secure_free(text, len);
        return true;
}

/* Every way in: each session as stored, and each start the header names
 * with any private prekey of the right kind. */
static bool attack(const Secrets *s, const char *user, const RsaKey *identity, const Envelope *e,
                   const RsaKey *sender) {
        Suite2Message m = envelope_suite2_view(e);
        RatchetHeader h;

        for (size_t i = 0; i < s->n_sessions; i++) {
                Ratchet *r = NULL;
                bool ok;

                if (ratchet_deserialize(s->sessions[i].data, s->sessions[i].len, &r) < 0)
                        continue;
                ok = try_open(r, &m, sender);
                ratchet_free(r);
                if (ok)
                        return true;
        }
        if (ratchet_header_parse(e->hdr, e->hdr_len, &h) < 0 || !h.has_start)
                return false;
        for (size_t i = 0; i < s->n_prekeys; i++) {
                if (s->prekey_is_opk[i])
                        continue;
                for (size_t j = 0; j <= s->n_prekeys; j++) {
                        const uint8_t *opk = NULL;
                        Ratchet *r = NULL;
                        bool ok;

                        if (j < s->n_prekeys) {
                                if (!s->prekey_is_opk[j])
                                        continue;
                                opk = s->prekeys[j];
                        }
                        if ((opk != NULL) != h.has_opk)
                                continue;
                        if (ratchet_accept(user, identity, e->from, &h, s->prekeys[i], opk, &r) < 0)
                                continue;
                        ok = try_open(r, &m, sender);
                        ratchet_free(r);
                        if (ok)
                                return true;
                }
        }
        return false;
}

int main(int argc, char *argv[]) {
        json_object *o = NULL;
        KeyPackage *kp = NULL;
        RsaKey *identity = NULL, *sender = NULL;
        Secrets secrets = {};
        char path[4096], *line = NULL, *pkg = NULL;
        size_t cap = 0, total = 0, opened = 0, pkg_len;
        ssize_t n;
        FILE *f;

        if (argc != 4)
                return fail("usage: sc-s2open HOME USER SENDER_PACKAGE < ENVELOPES");
        snprintf(path, sizeof(path), "%s/identity/%s.key", argv[1], argv[2]);
        if (rsa_key_load_private(path, &identity) < 0)
                return fail("cannot load the identity key");
        snprintf(path, sizeof(path), "%s/ratchet/%s.db", argv[1], argv[2]);
        if (load_secrets(path, &secrets) < 0)
                return fail("cannot read the ratchet store");

        f = fopen(argv[3], "re");
        if (!f)
                return fail("cannot open the sender's package");
        pkg_len = 0;
        pkg = malloc(65536);
        pkg_len = fread(pkg, 1, 65535, f);
        fclose(f);
        if (json_parse_strict(pkg, pkg_len, 16, &o, NULL) < 0 || key_package_from_json(o, &kp) < 0 ||
            rsa_key_from_spki(kp->key, kp->key_len, &sender) < 0)
                return fail("cannot read the sender's package");
        json_object_put(o);

        while ((n = getline(&line, &cap, stdin)) > 0) {
                Envelope *e = NULL;

                if (line[n - 1] == '\n')
                        line[--n] = '\0';
                if (n == 0)
                        continue;
                if (json_parse_strict(line, (size_t) n, 16, &o, NULL) < 0 ||
                    envelope_from_json(o, &e, NULL) < 0)
                        return fail("cannot read an envelope");
                json_object_put(o);
                total++;
                if (envelope_is_suite2(e) && attack(&secrets, argv[2], identity, e, sender))
                        opened++;
                envelope_free(e);
        }
        /* Before anything else can end the process (LeakSanitizer's
         * report exits without flushing stdio). */
        printf("opened %zu of %zu\n", opened, total);
        fflush(stdout);
        secrets_done(&secrets);
        free(line);
        free(pkg);
        key_package_free(kp);
        rsa_key_free(identity);
        rsa_key_free(sender);
        return 0;
}
