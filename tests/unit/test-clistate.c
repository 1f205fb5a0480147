/* SPDX-License-Identifier: MIT */
/* scctl's state directory (cli/state.c), settings (cli/settings.c) and the
 * terminal-safe text output (cli/output.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "b64.h"
#include "exit-codes.h"
#include "handshake.h"
#include "output.h"
#include "protocol.h"
#include "settings.h"
#include "seen.h"
#include "state.h"
#include "test-main.h"

static char tmpdir[256];

static void make_tmpdir(void) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-clistate-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        ck_assert_int_eq(system(cmd), 0);
}

static char *path_in(const char *rel) {
        char *p;

        ck_assert_int_ge(asprintf(&p, "%s/%s", tmpdir, rel), 0);
        return p;
}

static char *slurp(const char *path) {
        char *data = NULL;

        ck_assert_int_eq(read_file(path, 1 << 20, &data, NULL), 0);
        return data;
}

/* Keys are slow to make: two for the whole suite. */
static RsaKey *key_a, *key_b;

static void keys_setup(void) {
        if (!key_a)
                ck_assert_int_eq(rsa_key_generate(2048, &key_a), 0);
        if (!key_b)
                ck_assert_int_eq(rsa_key_generate(2048, &key_b), 0);
}

START_TEST(test_server_parse) {
        static const struct {
                const char *in, *host, *address;
                unsigned port;
        } good[] = {
                { "localhost", "localhost", "localhost:5000", 5000 },
                { "Chat.Example.ORG:443", "chat.example.org", "chat.example.org:443", 443 },
                { "127.0.0.1:1", "127.0.0.1", "127.0.0.1:1", 1 },
                { "[::1]:5000", "::1", "[::1]:5000", 5000 },
                { "[fe80::1%eth0]:65535", "fe80::1%eth0", "[fe80::1%eth0]:65535", 65535 },
                { "[::1]", "::1", "[::1]:5000", 5000 },
                { "::1", "::1", "[::1]:5000", 5000 },
        };
        static const char *const bad[] = {
                "", ":5000", "host:", "host:0", "host:65536", "host:12ab", "host:+5", "host: 5",
                "[::1", "[::1]x", "[::1]:", "[127.0.0.1]:5", "a/b", "a b", "-host", ".host",
                "host:5000:", "[fe80::1%]:5", "[::g]:5", "[a:b]:5", "host%x",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                char *host = NULL, *address = NULL;
                uint16_t port = 0;

                ck_assert_msg(server_parse(good[i].in, &host, &port) == 0, "%s", good[i].in);
                ck_assert_str_eq(host, good[i].host);
                ck_assert_uint_eq(port, good[i].port);
                ck_assert_int_eq(server_address(host, port, &address), 0);
                ck_assert_str_eq(address, good[i].address);
                free(host);
                free(address);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *host = NULL;
                uint16_t port = 0;

                ck_assert_msg(server_parse(bad[i], &host, &port) == -EINVAL, "accepted \"%s\"", bad[i]);
                ck_assert_ptr_null(host);
        }
}
END_TEST

static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "w");

        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
}

static void env_clear(void) {
        unsetenv("SECURECHAT_SERVER");
        unsetenv("SECURECHAT_USER");
        unsetenv("SECURECHAT_HOME");
}

START_TEST(test_settings_precedence) {
        _cleanup_(freep) char *conf_dir = NULL, *conf = NULL, *xdg_config = NULL, *xdg_data = NULL;
        _cleanup_(freep) char *data_home = NULL;
        char cmd[400];
        Settings s = SETTINGS_INIT;

        make_tmpdir();
        conf_dir = path_in("config/securechat");
        conf = path_in("config/securechat/scctl.conf");
        xdg_config = path_in("config");
        xdg_data = path_in("data");
        data_home = path_in("data/securechat");
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", conf_dir);
        ck_assert_int_eq(system(cmd), 0);
        write_text(conf, "# comment\nserver = conf.example:7000\nuser = carol\ntls = no\n");
        setenv("XDG_CONFIG_HOME", xdg_config, 1);
        setenv("XDG_DATA_HOME", xdg_data, 1);
        env_clear();

        /* Config file over defaults. */
        ck_assert_int_eq(settings_resolve(&s), 0);
        ck_assert_str_eq(s.address, "conf.example:7000");
        ck_assert_str_eq(s.user, "carol");
        ck_assert(!s.tls);
        ck_assert_str_eq(s.home, data_home);
        ck_assert_uint_eq(s.timeout_usec, DEFAULT_TIMEOUT_SEC * 1000000ULL);

        /* Environment over the config file. */
        setenv("SECURECHAT_SERVER", "[::1]:6000", 1);
        setenv("SECURECHAT_USER", "dave", 1);
        setenv("SECURECHAT_HOME", "/env/home", 1);
        ck_assert_int_eq(settings_resolve(&s), 0);
        ck_assert_str_eq(s.address, "[::1]:6000");
        ck_assert_str_eq(s.host, "::1");
        ck_assert_str_eq(s.user, "dave");
        ck_assert_str_eq(s.home, "/env/home");

        /* Command line over the environment. */
        s.arg_server = strdup("cmd.example");
        s.arg_user = strdup("erin");
        s.arg_home = strdup("/cmd/home");
        s.arg_tls = 1;
        ck_assert_int_eq(settings_resolve(&s), 0);
        ck_assert_str_eq(s.address, "cmd.example:5000");
        ck_assert_str_eq(s.user, "erin");
        ck_assert_str_eq(s.home, "/cmd/home");
        ck_assert(s.tls);

        /* Bad values are usage errors. */
        free(s.arg_user);
        s.arg_user = strdup("Not-Valid");
        ck_assert_int_eq(settings_resolve(&s), -EINVAL);
        free(s.arg_user);
        s.arg_user = NULL;
        free(s.arg_server);
        s.arg_server = strdup("host:99999");
        ck_assert_int_eq(settings_resolve(&s), -EINVAL);

        settings_done(&s);
        env_clear();
        remove_tmpdir();
}
END_TEST

START_TEST(test_settings_bad_config) {
        _cleanup_(freep) char *conf = NULL, *missing = NULL;
        Settings s = SETTINGS_INIT;

        make_tmpdir();
        conf = path_in("bad.conf");
        missing = path_in("missing.conf");
        env_clear();
        s.arg_user = strdup("frank");
        s.arg_home = strdup("/h");

        s.arg_config = strdup(conf);
        write_text(conf, "server = a\ncolour = yes\n");
        ck_assert_int_eq(settings_resolve(&s), -EINVAL);
        write_text(conf, "tls = perhaps\n");
        ck_assert_int_eq(settings_resolve(&s), -EINVAL);
        write_text(conf, "[section]\nserver = a\n");
        ck_assert_int_eq(settings_resolve(&s), -EINVAL);
        write_text(conf, "server = a/b\n");
        ck_assert_int_eq(settings_resolve(&s), -EINVAL);
        write_text(conf, "server = good.example\n");
        ck_assert_int_eq(settings_resolve(&s), 0);
        ck_assert_str_eq(s.address, "good.example:5000");

        /* A config file named on the command line must exist. */
        free(s.arg_config);
        s.arg_config = strdup(missing);
        ck_assert_int_eq(settings_resolve(&s), -EINVAL);

        settings_done(&s);
        remove_tmpdir();
}
END_TEST

START_TEST(test_write_atomic) {
        _cleanup_(freep) char *p = NULL, *data = NULL;
        struct stat st;
        size_t len = 0;

        make_tmpdir();
        p = path_in("file");
        ck_assert_int_eq(write_file_atomic(p, "one\n", 4, 0600), 0);
        ck_assert_int_eq(write_file_atomic(p, "two\n", 4, 0640), 0);
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0640);
        ck_assert_int_eq(read_file(p, 100, &data, &len), 0);
        ck_assert_uint_eq(len, 4);
        ck_assert_str_eq(data, "two\n");
        free(data);
        data = NULL;
        ck_assert_int_eq(read_file(p, 3, &data, &len), -EFBIG);
        ck_assert_int_eq(read_file("/nonexistent/x", 3, &data, &len), -ENOENT);
        remove_tmpdir();
}
END_TEST

START_TEST(test_state_open_mode) {
        _cleanup_(client_state_freep) ClientState *s = NULL;
        _cleanup_(freep) char *home = NULL;
        struct stat st;

        make_tmpdir();
        home = path_in("a/b/home");
        ck_assert_int_eq(client_state_open(home, &s), 0);
        ck_assert_int_eq(stat(home, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));
        ck_assert_uint_eq(st.st_mode & 07777, 0700);
        /* The lock nests. */
        ck_assert_int_eq(client_state_lock(s), 0);
        ck_assert_int_eq(client_state_lock(s), 0);
        client_state_unlock(s);
        ck_assert_uint_eq(s->lock_depth, 1);
        client_state_unlock(s);
        ck_assert_uint_eq(s->lock_depth, 0);
        remove_tmpdir();
}
END_TEST

START_TEST(test_known_servers) {
        _cleanup_(client_state_freep) ClientState *s = NULL;
        _cleanup_(freep) char *path = NULL, *content = NULL;
        char pinned[RSA_FINGERPRINT_MAX] = "";
        const char *fp1 = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        const char *fp2 = "SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

        make_tmpdir();
        ck_assert_int_eq(client_state_open(tmpdir, &s), 0);
        path = client_state_path(s, "known_servers");
        /* A hand-edited file: comments and a line without a newline. */
        write_text(path, "# pins\nother:1 SHA256:CCCC");

        ck_assert_int_eq(client_state_server_pin(s, "host:5000", fp1, false, pinned), PIN_NEW);
        content = slurp(path);
        ck_assert_str_eq(content, "# pins\nother:1 SHA256:CCCC");     /* pin=false leaves it */
        free(content);

        ck_assert_int_eq(client_state_server_pin(s, "host:5000", fp1, true, pinned), PIN_NEW);
        ck_assert_int_eq(client_state_server_pin(s, "host:5000", fp1, true, pinned), PIN_MATCH);
        ck_assert_int_eq(client_state_server_pin(s, "host:5000", fp2, true, pinned), PIN_MISMATCH);
        ck_assert_str_eq(pinned, fp1);
        /* A prefix of an address is another address. */
        ck_assert_int_eq(client_state_server_pin(s, "host:500", fp2, true, pinned), PIN_NEW);
        ck_assert_int_eq(client_state_server_pin(s, "[::1]:5000", fp2, true, pinned), PIN_NEW);
        ck_assert_int_eq(client_state_server_pin(s, "other:1", fp1, true, pinned), PIN_MISMATCH);
        ck_assert_str_eq(pinned, "SHA256:CCCC");

        content = slurp(path);
        ck_assert_str_eq(content,
                         "# pins\nother:1 SHA256:CCCC\n"
                         "host:5000 SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
                         "host:500 SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n"
                         "[::1]:5000 SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n");
        remove_tmpdir();
}
END_TEST

/* Processes pinning at the same time must not lose each other's pins. */
START_TEST(test_known_servers_concurrent) {
        enum { N = 12 };
        _cleanup_(freep) char *path = NULL, *content = NULL;
        pid_t pids[N];
        size_t lines = 0;

        make_tmpdir();
        for (int i = 0; i < N; i++) {
                pids[i] = fork();
                ck_assert_int_ge(pids[i], 0);
                if (pids[i] == 0) {
                        ClientState *s = NULL;
                        char address[32];
                        int r = 0;

                        if (client_state_open(tmpdir, &s) < 0)
                                _exit(1);
                        for (int j = 0; j < 5 && r >= 0; j++) {
                                snprintf(address, sizeof(address), "h%d-%d:5000", i, j);
                                r = client_state_server_pin(s, address,
                                                     "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", true, NULL);
                        }
                        client_state_free(s);
                        _exit(r == PIN_NEW ? 0 : 1);
                }
        }
        for (int i = 0; i < N; i++) {
                int status;

                ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
                ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        path = path_in("known_servers");
        content = slurp(path);
        for (const char *c = content; *c; c++)
                lines += *c == '\n';
        ck_assert_uint_eq(lines, N * 5);
        remove_tmpdir();
}
END_TEST

START_TEST(test_peers) {
        _cleanup_(client_state_freep) ClientState *s = NULL;
        _cleanup_(key_package_freep) KeyPackage *bob1 = NULL, *bob2 = NULL, *got = NULL;
        _cleanup_(freep) char *path = NULL;
        char pinned[RSA_FINGERPRINT_MAX] = "";
        struct stat st;

        keys_setup();
        make_tmpdir();
        ck_assert_int_eq(client_state_open(tmpdir, &s), 0);
        ck_assert_int_eq(key_package_sign(key_a, "bob", key_a->spki, key_a->spki_len, 1700000000, &bob1), 0);
        ck_assert_int_eq(key_package_sign(key_a, "bob", key_b->spki, key_b->spki_len, 1700000001, &bob2), 0);

        ck_assert_int_eq(client_state_peer_get(s, "[::1]:5000", "bob", &got), -ENOENT);
        ck_assert_int_eq(client_state_peer_pin(s, "[::1]:5000", bob1, pinned), PIN_NEW);
        ck_assert_int_eq(client_state_peer_pin(s, "[::1]:5000", bob1, pinned), PIN_MATCH);
        ck_assert_int_eq(client_state_peer_pin(s, "[::1]:5000", bob2, pinned), PIN_MISMATCH);
        ck_assert_str_eq(pinned, key_a->fingerprint);
        /* Pins belong to one server address. */
        ck_assert_int_eq(client_state_peer_pin(s, "[::1]:5001", bob2, pinned), PIN_NEW);

        path = path_in("peers/[::1]_5000/bob");
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        ck_assert_int_eq(client_state_peer_get(s, "[::1]:5000", "bob", &got), 0);
        ck_assert_str_eq(got->user, "bob");
        ck_assert_uint_eq(got->registered, 1700000000);
        ck_assert_int_eq(key_package_verify(got, key_a), 0);
        got = key_package_free(got);

        /* trust: replace the pin. */
        ck_assert_int_eq(client_state_peer_set(s, "[::1]:5000", bob2), 0);
        ck_assert_int_eq(client_state_peer_pin(s, "[::1]:5000", bob2, pinned), PIN_MATCH);

        /* Pins are read as strictly as what a peer sends: json-c alone
         * would keep the last of two "user" members and ignore what
         * follows the object. */
        {
                _cleanup_(freep) char *good = NULL, *bad = NULL;
                size_t len;

                ck_assert_int_eq(read_file(path, 65536, &good, &len), 0);
                ck_assert_int_ge(asprintf(&bad, "{\"user\":\"eve\",%s", good + 1), 0);
                write_text(path, bad);
                ck_assert_int_eq(client_state_peer_get(s, "[::1]:5000", "bob", &got), -EBADMSG);
                free(bad);
                bad = NULL;
                ck_assert_int_ge(asprintf(&bad, "%.*s{}", (int) len - 1, good), 0);
                write_text(path, bad);
                ck_assert_int_eq(client_state_peer_get(s, "[::1]:5000", "bob", &got), -EBADMSG);
                write_text(path, good);
                ck_assert_int_eq(client_state_peer_get(s, "[::1]:5000", "bob", &got), 0);
                got = key_package_free(got);
        }

        /* A file that names another user is not bob's pin. */
        write_text(path, "{\"user\":\"eve\",\"key\":\"AAAA\",\"registered\":1,\"sig\":\"AAAA\"}\n");
        ck_assert_int_lt(client_state_peer_get(s, "[::1]:5000", "bob", &got), 0);
        write_text(path, "not json");
        ck_assert_int_eq(client_state_peer_get(s, "[::1]:5000", "bob", &got), -EBADMSG);
        ck_assert_ptr_null(client_state_peer_path(s, "h:1", "../x"));
        remove_tmpdir();
}
END_TEST

/* The contacts listen watches: the users pinned for one address. */
START_TEST(test_peer_list) {
        _cleanup_(client_state_freep) ClientState *s = NULL;
        _cleanup_(key_package_freep) KeyPackage *bob = NULL, *carol = NULL;
        _cleanup_(freep) char (*users)[USERNAME_MAX + 1] = NULL;
        _cleanup_(freep) char *junk = NULL;
        char pinned[RSA_FINGERPRINT_MAX];
        size_t n = 99;
        bool seen_bob = false, seen_carol = false;

        keys_setup();
        make_tmpdir();
        ck_assert_int_eq(client_state_open(tmpdir, &s), 0);
        ck_assert_int_eq(client_state_peer_list(s, "[::1]:5000", 10, &users, &n), 0);
        ck_assert_uint_eq(n, 0);

        ck_assert_int_eq(key_package_sign(key_a, "bob", key_a->spki, key_a->spki_len, 1, &bob), 0);
        ck_assert_int_eq(key_package_sign(key_a, "carol", key_b->spki, key_b->spki_len, 1, &carol), 0);
        ck_assert_int_eq(client_state_peer_pin(s, "[::1]:5000", bob, pinned), PIN_NEW);
        ck_assert_int_eq(client_state_peer_pin(s, "[::1]:5000", carol, pinned), PIN_NEW);
        ck_assert_int_eq(client_state_peer_pin(s, "[::1]:5001", carol, pinned), PIN_NEW);
        junk = path_in("peers/[::1]_5000/Not-A-User");
        write_text(junk, "x");

        ck_assert_int_eq(client_state_peer_list(s, "[::1]:5000", 10, &users, &n), 0);
        ck_assert_uint_eq(n, 2);
        for (size_t i = 0; i < n; i++) {
                seen_bob |= strcmp(users[i], "bob") == 0;
                seen_carol |= strcmp(users[i], "carol") == 0;
        }
        ck_assert(seen_bob && seen_carol);
        free(users);
        users = NULL;
        ck_assert_int_eq(client_state_peer_list(s, "[::1]:5000", 1, &users, &n), 0);
        ck_assert_uint_eq(n, 1);
        remove_tmpdir();
}
END_TEST

START_TEST(test_identity) {
        _cleanup_(client_state_freep) ClientState *s = NULL;
        _cleanup_(rsa_key_freep) RsaKey *k1 = NULL, *k2 = NULL, *k3 = NULL;
        _cleanup_(freep) char *path = NULL;
        bool created = false;
        struct stat st;

        make_tmpdir();
        ck_assert_int_eq(client_state_open(tmpdir, &s), 0);
        ck_assert_int_eq(client_state_identity_load(s, "alice", false, 2048, &k1, NULL), -ENOENT);
        ck_assert_int_eq(client_state_identity_load(s, "alice", true, 2048, &k1, &created), 0);
        ck_assert(created);
        ck_assert_uint_eq(rsa_key_bits(k1), 2048);
        ck_assert_int_eq(client_state_identity_load(s, "alice", true, 2048, &k2, &created), 0);
        ck_assert(!created);
        ck_assert_str_eq(k1->fingerprint, k2->fingerprint);

        path = client_state_identity_path(s, "alice");
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        ck_assert_int_eq(chmod(path, 0644), 0);
        ck_assert_int_eq(client_state_identity_load(s, "alice", true, 2048, &k3, NULL), -EPERM);
        ck_assert_ptr_null(k3);
        remove_tmpdir();
}
END_TEST

static const uint8_t id1[MSG_ID_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static const uint8_t id2[MSG_ID_LEN] = { 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1 };

static const uint8_t d1[ENVELOPE_DIGEST_LEN] = { 1 }, d2[ENVELOPE_DIGEST_LEN] = { 2 };

START_TEST(test_seen) {
        _cleanup_(client_state_freep) ClientState *s = NULL;
        _cleanup_(seen_freep) SeenStore *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        _cleanup_(freep) char *path = NULL;
        const uint64_t now = 1700000000, window = 86400;

        make_tmpdir();
        ck_assert_int_eq(client_state_open(tmpdir, &s), 0);
        ck_assert_int_eq(seen_open(s, "bob", window, now, &a), 0);
        ck_assert_int_eq(seen_check(a, "alice", id1, now - 10, d1), ENVELOPE_SEEN_NO);
        ck_assert_int_eq(seen_add(a, "alice", id1, now - 10, d1), 0);
        /* The same envelope, and another one under the same id. */
        ck_assert_int_eq(seen_check(a, "alice", id1, now - 10, d1), ENVELOPE_SEEN_SAME);
        ck_assert_int_eq(seen_check(a, "alice", id1, now - 10, d2), ENVELOPE_SEEN_OTHER);
        /* The same id from someone else is another message. */
        ck_assert_int_eq(seen_check(a, "carol", id1, now, d1), ENVELOPE_SEEN_NO);
        ck_assert_int_eq(seen_check(a, "alice", id2, now, d1), ENVELOPE_SEEN_NO);

        /* Another process's additions are seen at once. */
        ck_assert_int_eq(seen_open(s, "bob", window, now, &b), 0);
        ck_assert_int_eq(seen_check(b, "alice", id1, now - 10, d1), ENVELOPE_SEEN_SAME);
        ck_assert_int_eq(seen_add(b, "carol", id2, now - 5, d2), 0);
        ck_assert_int_eq(seen_check(a, "carol", id2, now - 5, d2), ENVELOPE_SEEN_SAME);
        ck_assert_int_eq(seen_add(b, "erin", id1, now - window - 100, d1), 0);
        ck_assert_uint_eq(seen_count(a), 3);

        /* Opening again drops what is older than the window, and only
         * that (the window is the caller's, never the relay's). */
        ck_assert_int_eq(seen_open(s, "bob", window, now, &c), 0);
        ck_assert_uint_eq(seen_count(c), 2);
        ck_assert_int_eq(seen_check(c, "erin", id1, now - window - 100, d1), ENVELOPE_SEEN_NO);
        ck_assert_int_eq(seen_check(c, "alice", id1, now - 10, d1), ENVELOPE_SEEN_SAME);

        /* Over the size bound the oldest go, and what is not newer than
         * them counts as forgotten (refused as expired), never as new. */
        for (int i = 0; i < 20; i++) {
                uint8_t id[MSG_ID_LEN] = { (uint8_t) i, 0xAA };

                ck_assert_int_eq(seen_add(c, "dave", id, now - 1000 + (uint64_t) i, d1), 0);
        }
        ck_assert_int_eq(seen_open_max(s, "bob", window, now, 10, &d), 0);
        ck_assert_uint_eq(seen_count(d), 10);
        ck_assert_int_eq(seen_check(d, "dave", (const uint8_t[MSG_ID_LEN]) { 3, 0xAA }, now - 997, d1),
                         ENVELOPE_SEEN_FORGOTTEN);
        ck_assert_int_eq(seen_check(d, "dave", (const uint8_t[MSG_ID_LEN]) { 19, 0xAA }, now - 981, d1),
                         ENVELOPE_SEEN_SAME);
        ck_assert_int_eq(seen_check(d, "dave", id2, now - 500, d1), ENVELOPE_SEEN_NO);

        /* A flood keeps within the bound while running, too. */
        for (int i = 0; i < 1024; i++) {
                uint8_t id[MSG_ID_LEN] = { (uint8_t) i, (uint8_t) (i >> 8), 0xBB };

                ck_assert_int_eq(seen_add(d, "erin", id, now_unix() - 100, d1), 0);
        }
        ck_assert_uint_le(seen_count(d), 10);
        remove_tmpdir();
}
END_TEST

/* The text file of earlier versions is imported, whatever its size, and
 * removed. */
START_TEST(test_seen_import) {
        _cleanup_(client_state_freep) ClientState *s = NULL;
        _cleanup_(seen_freep) SeenStore *a = NULL;
        _cleanup_(freep) char *dir = NULL, *path = NULL;
        const uint64_t now = 1700000000, window = 86400;
        FILE *f;

        make_tmpdir();
        ck_assert_int_eq(client_state_open(tmpdir, &s), 0);
        dir = path_in("seen");
        ck_assert_int_eq(mkdir(dir, 0700), 0);
        path = path_in("seen/bob");
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "1699999990 alice AQIDBAUGBwgJCgsMDQ4PEA==\ngarbage line\n1600000000 erin AQIDBAUGBwgJCgsMDQ4PEA==\n");
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(seen_open(s, "bob", window, now, &a), 0);
        ck_assert_uint_eq(seen_count(a), 1);
        /* Without a digest, a redelivery is the likelier case. */
        ck_assert_int_eq(seen_check(a, "alice", id1, 1699999990, d2), ENVELOPE_SEEN_SAME);
        ck_assert_int_eq(access(path, F_OK), -1);
        remove_tmpdir();
}
END_TEST

static char *safe(const char *s, unsigned indent) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        ck_assert_ptr_nonnull(f);
        output_safe_text(f, s, strlen(s), indent);
        fclose(f);
        return buf;
}

START_TEST(test_safe_text) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "plain text", "plain text" },
                { "tab\there", "tab\there" },
                { "two\nlines", "two\n   lines" },
                { "\033[2Jclear", "\\x1b[2Jclear" },
                { "bell\a del\x7f", "bell\\x07 del\\x7f" },
                { "cr\roverwrite", "cr\\x0doverwrite" },
                { "caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac" },
                { "c1 \xc2\x9b" "31m", "c1 \\u009b31m" },
                { "rtl \xe2\x80\xae" "txt", "rtl \\u202etxt" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(freep) char *out = safe(cases[i].in, 3);

                ck_assert_str_eq(out, cases[i].out);
        }
}
END_TEST

static Suite *clistate_suite(void) {
        Suite *s = suite_create("clistate");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_server_parse);
        tcase_add_test(tc, test_settings_precedence);
        tcase_add_test(tc, test_settings_bad_config);
        tcase_add_test(tc, test_write_atomic);
        tcase_add_test(tc, test_state_open_mode);
        tcase_add_test(tc, test_known_servers);
        tcase_add_test(tc, test_known_servers_concurrent);
        tcase_add_test(tc, test_peers);
        tcase_add_test(tc, test_peer_list);
        tcase_add_test(tc, test_identity);
        tcase_add_test(tc, test_seen);
        tcase_add_test(tc, test_seen_import);
        tcase_add_test(tc, test_safe_text);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(clistate_suite());
}
