/* SPDX-License-Identifier: MIT */
/* securechatd's configuration: syntaxes, every key and its range, files,
 * drop-ins, overrides and the errors that name where a mistake is. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "conf.h"
#include "macro.h"
#include "state.h"
#include "test-main.h"

#define SEC 1000000ull

static char tmpdir[256];

static void setup(void) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-config-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        ck_assert_int_eq(system(cmd), 0);
}

/* Write text to tmpdir/name; returns the path (static buffer, per slot). */
static const char *write_file(const char *name, const char *text) {
        static char paths[16][512];
        static unsigned slot;
        char *path = paths[slot++ % 16];
        FILE *f;

        snprintf(path, 512, "%s/%s", tmpdir, name);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
        return path;
}

static void make_dir(const char *name) {
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        ck_assert_int_eq(mkdir(path, 0700), 0);
}

/* ---- value syntaxes ------------------------------------------------------ */

START_TEST(test_durations) {
        static const struct {
                const char *s;
                uint64_t usec;
        } good[] = {
                { "30", 30 * SEC }, { "30s", 30 * SEC }, { "5m", 300 * SEC },
                { "5min", 300 * SEC }, { "2h", 7200 * SEC }, { "7d", 7 * 86400 * SEC },
                { "1w", 7 * 86400 * SEC }, { "1h30m", 5400 * SEC }, { "1h 30m", 5400 * SEC },
                { "500ms", 500000 }, { "0", 0 }, { "1d2h3m4s", (86400 + 7200 + 180 + 4) * SEC },
        };
        static const char *const bad[] = {
                "", " ", "s", "abc", "5x", "1m30", "-1", "1.5h", "30 s", "99999999999999999999",
                "18446744073709551615d", "5mm",
        };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 1;
                ck_assert_msg(config_parse_duration(good[i].s, &v) == 0, "%s", good[i].s);
                ck_assert_msg(v == good[i].usec, "%s -> %llu", good[i].s, (unsigned long long) v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(config_parse_duration(bad[i], &v) < 0, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(test_durations_format) {
        static const uint64_t values[] = { 30 * SEC, 300 * SEC, 5400 * SEC, 7 * 86400 * SEC,
                                           1500000, 1, 86400 * SEC + 1 };
        char buf[64];

        ck_assert_str_eq(config_format_duration(5400 * SEC, buf, sizeof(buf)), "1h30m");
        ck_assert_str_eq(config_format_duration(7 * 86400 * SEC, buf, sizeof(buf)), "7d");
        /* Whatever is printed parses back to the same value. */
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                uint64_t v = 0;
                config_format_duration(values[i], buf, sizeof(buf));
                ck_assert_int_eq(config_parse_duration(buf, &v), 0);
                ck_assert_msg(v == values[i], "%s", buf);
        }
}
END_TEST

START_TEST(test_sizes) {
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "65536", 65536 }, { "64K", 65536 }, { "64k", 65536 }, { "1M", 1048576 },
                { "16M", 16777216 }, { "1G", 1073741824 }, { "100B", 100 }, { "0", 0 },
        };
        static const char *const bad[] = { "", "K", "1T", "64KB", "1.5M", "-1", "1 K", "x",
                                           "99999999999999999999G" };
        char buf[32];
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                ck_assert_msg(config_parse_size(good[i].s, &v) == 0, "%s", good[i].s);
                ck_assert_msg(v == good[i].v, "%s", good[i].s);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(config_parse_size(bad[i], &v) < 0, "accepted '%s'", bad[i]);
        ck_assert_str_eq(config_format_size(65536, buf, sizeof(buf)), "64K");
        ck_assert_str_eq(config_format_size(16777216, buf, sizeof(buf)), "16M");
        ck_assert_str_eq(config_format_size(1000, buf, sizeof(buf)), "1000");
}
END_TEST

START_TEST(test_bools) {
        bool b;

        ck_assert_int_eq(config_parse_bool("yes", &b), 0);
        ck_assert(b);
        ck_assert_int_eq(config_parse_bool("off", &b), 0);
        ck_assert(!b);
        ck_assert_int_eq(config_parse_bool("TRUE", &b), 0);
        ck_assert(b);
        ck_assert_int_lt(config_parse_bool("maybe", &b), 0);
        ck_assert_int_lt(config_parse_bool("", &b), 0);
}
END_TEST

/* ---- keys ---------------------------------------------------------------- */

START_TEST(test_defaults) {
        _cleanup_(config_freep) Config *c = NULL;

        unsetenv("STATE_DIRECTORY");
        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_str_eq(c->listen, "127.0.0.1:5000");
        ck_assert_int_eq(c->listen_address.sa.sa_family, AF_INET);
        ck_assert_int_eq(ntohs(c->listen_address.in.sin_port), 5000);
        ck_assert_str_eq(c->control, "/run/securechat/control");
        ck_assert_str_eq(c->state_directory, "/var/lib/securechat");
        ck_assert(c->tls);
        ck_assert_ptr_null(c->tls_certificate);
        ck_assert_ptr_null(c->tls_key);
        ck_assert_ptr_null(c->identity_key);
        ck_assert_uint_eq(c->key_bits, 3072);
        ck_assert(c->registration_open);
        ck_assert_uint_eq(c->handshake_timeout_usec, 30 * SEC);
        ck_assert_uint_eq(c->idle_timeout_usec, 300 * SEC);
        ck_assert_uint_eq(c->max_sessions, 1024);
        ck_assert_uint_eq(c->max_sessions_per_user, 8);
        ck_assert_uint_eq(c->max_connections_per_address, 64);
        ck_assert_uint_eq(c->max_preauth_per_address, 16);
        ck_assert_uint_eq(config_rate_interval(&c->connection_rate), SEC / 10);
        ck_assert_uint_eq(c->connection_burst, 30);
        ck_assert_uint_eq(config_rate_interval(&c->registration_rate), 6 * SEC);
        ck_assert_uint_eq(c->registration_burst, 10);
        ck_assert_uint_eq(config_rate_interval(&c->message_rate), SEC / 10);
        ck_assert_uint_eq(c->message_burst, 50);
        ck_assert_uint_eq(config_queue_limit_per_sender(c), 250);
        ck_assert_uint_eq(c->trusted_networks.n, 0);
        ck_assert_uint_eq(c->max_frame, 65536);
        ck_assert_uint_eq(c->max_text, 16384);
        ck_assert_uint_eq(c->queue_ttl_usec, 7 * 86400 * SEC);
        ck_assert_uint_eq(c->queue_limit, 1000);
        ck_assert_str_eq(c->admin_group, "securechat");
        ck_assert_int_eq(c->log_level, LOG_INFO);
        ck_assert_int_eq(config_verify(c, NULL), 0);
}
END_TEST

START_TEST(test_state_directory_env) {
        _cleanup_(config_freep) Config *c = NULL;

        setenv("STATE_DIRECTORY", "/var/lib/private/securechat:/var/lib/other", 1);
        ck_assert_int_eq(config_new(&c), 0);
        unsetenv("STATE_DIRECTORY");
        ck_assert_str_eq(c->state_directory, "/var/lib/private/securechat");
        /* A file still overrides it, and an empty value brings it back. */
        ck_assert_int_eq(config_set(c, "server", "state-directory", "/srv/sc", "t", 1, NULL), 0);
        ck_assert_str_eq(c->state_directory, "/srv/sc");
        ck_assert_int_eq(config_set(c, "server", "state-directory", "", "t", 1, NULL), 0);
        ck_assert_str_eq(c->state_directory, "/var/lib/securechat");
}
END_TEST

/* Every key: values that must be accepted (checked through --check-config
 * style output) and values that must be refused. */
static const struct {
        const char *key;
        const char *good[4];
        const char *shown[4];   /* how config_dump prints each good value */
        const char *bad[6];
} key_cases[] = {
        { "listen", { "127.0.0.1:0", "[::1]:5000", "5000", "0.0.0.0:6000" },
          { "127.0.0.1:0", "[::1]:5000", "5000", "0.0.0.0:6000" },
          { "localhost:5000", "1.2.3.4", "1.2.3.4:70000", "[::1]5000", "::1:5000", "1.2.3.4:-1" } },
        { "control", { "/run/sc/control", "/tmp/x" }, { "/run/sc/control", "/tmp/x" }, {} },
        { "state-directory", { "/var/lib/x", "/tmp/h5state" }, { "/var/lib/x", "/tmp/h5state" }, {} },
        { "tls", { "yes", "no", "false", "on" }, { "yes", "no", "no", "yes" }, { "maybe", "2" } },
        { "tls-certificate", { "/etc/sc/cert.pem" }, { "/etc/sc/cert.pem" }, {} },
        { "tls-key", { "/etc/sc/key.pem" }, { "/etc/sc/key.pem" }, {} },
        { "identity-key", { "/etc/securechat/identity.key", "/run/credentials/x/identity-key", "" },
          { "/etc/securechat/identity.key", "/run/credentials/x/identity-key", "" }, {} },
        { "key-bits", { "2048", "3072", "4096" }, { "2048", "3072", "4096" },
          { "1024", "8192", "3000", "abc", "0" } },
        { "registration", { "open", "closed" }, { "open", "closed" }, { "yes", "Open", "close" } },
        { "handshake-timeout", { "30", "1s", "1h", "2m30s" }, { "30s", "1s", "1h", "2m30s" },
          { "0", "500ms", "2h", "abc", "-5" } },
        { "idle-timeout", { "300s", "5m", "7d", "1" }, { "5m", "5m", "7d", "1s" },
          { "0", "8d", "x" } },
        { "max-sessions", { "1", "1024", "1000000" }, { "1", "1024", "1000000" },
          { "0", "1000001", "-1", "1K", "many" } },
        { "max-sessions-per-user", { "1", "8", "1024" }, { "1", "8", "1024" },
          { "0", "1025", "x" } },
        { "max-watches", { "0", "1000", "100000" }, { "0", "1000", "100000" }, { "100001", "-1", "x" } },
        { "max-connections-per-address", { "1", "64", "1000000" }, { "1", "64", "1000000" },
          { "0", "1000001", "x" } },
        { "max-preauth-per-address", { "1", "16" }, { "1", "16" }, { "0", "-1" } },
        { "connection-rate", { "10/s", "5", "30/min", "0" }, { "10/s", "5/s", "30/min", "0" },
          { "x", "10/", "10/0s", "10/2d", "1000001", "/s" } },
        { "connection-burst", { "1", "30" }, { "1", "30" }, { "0", "1000001" } },
        { "registration-rate", { "10/min", "100/h", "3/30s", "1/1h30m" },
          { "10/min", "100/h", "3/30s", "1/1h30m" }, { "10/x", "ten", "1/500us" } },
        { "registration-burst", { "10" }, { "10" }, { "0" } },
        { "message-rate", { "10/s", "1/2s", "50/500ms" }, { "10/s", "1/2s", "50/500ms" }, { "-1/s" } },
        { "message-burst", { "50" }, { "50" }, { "0", "y" } },
        { "queue-limit-per-sender", { "25%", "100%", "1", "10000000" }, { "25%", "100%", "1", "10000000" },
          { "0%", "101%", "0", "10000001", "25%%", "x" } },
        { "trusted-networks", { "", "10.0.0.0/8 ::1", "192.0.2.7,2001:db8::/32", "10.1.2.3/8" },
          { "", "10.0.0.0/8 ::1/128", "192.0.2.7/32 2001:db8::/32", "10.0.0.0/8" },
          { "10.0.0.0/33", "example.org", "::/129", "1.2.3.4/x" } },
        { "max-frame", { "4096", "64K", "1M", "16M" }, { "4K", "64K", "1M", "16M" },
          { "4095", "17M", "0", "1G", "big" } },
        { "max-text", { "1", "1000", "16K" }, { "1", "1000", "16K" }, { "0", "17M", "x" } },
        { "queue-ttl", { "7d", "1s", "1h30m", "366d" }, { "7d", "1s", "1h30m", "366d" },
          { "0", "367d", "forever" } },
        { "queue-limit", { "1", "1000", "10000000" }, { "1", "1000", "10000000" },
          { "0", "10000001", "x" } },
        { "admin-group", { "securechat", "wheel", "sc-admins" }, { "securechat", "wheel", "sc-admins" },
          { "-bad", "a b", "grüppe", "abcdefghijabcdefghijabcdefghijabc" } },
        { "log-level", { "err", "warning", "debug", "info" }, { "err", "warning", "debug", "info" },
          { "loud", "7", "verbose" } },
};

/* The line config_dump prints for key. */
static char *dump_line(const Config *c, const char *key) {
        static char line[512];
        char *buf = NULL, *p;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        ck_assert_ptr_nonnull(f);
        config_dump(c, f);
        ck_assert_int_eq(fclose(f), 0);
        line[0] = '\0';
        for (p = strtok(buf, "\n"); p; p = strtok(NULL, "\n"))
                if (strncmp(p, key, strlen(key)) == 0 && strncmp(p + strlen(key), " = ", 3) == 0)
                        snprintf(line, sizeof(line), "%s", p + strlen(key) + 3);
        free(buf);
        return line;
}

START_TEST(test_every_key) {
        for (size_t k = 0; k < ELEMENTSOF(key_cases); k++) {
                const char *key = key_cases[k].key;

                for (size_t i = 0; i < ELEMENTSOF(key_cases[k].good) && key_cases[k].good[i]; i++) {
                        _cleanup_(config_freep) Config *c = NULL;
                        _cleanup_(freep) char *error = NULL;

                        ck_assert_int_eq(config_new(&c), 0);
                        ck_assert_msg(config_set(c, "server", key, key_cases[k].good[i], "t", 1, &error) == 0,
                                      "%s = %s refused: %s", key, key_cases[k].good[i], error);
                        ck_assert_msg(strcmp(dump_line(c, key), key_cases[k].shown[i]) == 0,
                                      "%s = %s shown as '%s'", key, key_cases[k].good[i], dump_line(c, key));
                }
                for (size_t i = 0; i < ELEMENTSOF(key_cases[k].bad) && key_cases[k].bad[i]; i++) {
                        _cleanup_(config_freep) Config *c = NULL;
                        _cleanup_(freep) char *error = NULL;
                        char before[512];

                        ck_assert_int_eq(config_new(&c), 0);
                        snprintf(before, sizeof(before), "%s", dump_line(c, key));
                        ck_assert_msg(config_set(c, "server", key, key_cases[k].bad[i], "f.conf", 7, &error) < 0,
                                      "%s = %s accepted", key, key_cases[k].bad[i]);
                        ck_assert_ptr_nonnull(error);
                        /* Names the place, the key and the value. */
                        ck_assert_msg(strncmp(error, "f.conf:7: ", 10) == 0, "%s", error);
                        ck_assert_msg(strstr(error, key) != NULL, "%s", error);
                        ck_assert_msg(strstr(error, key_cases[k].bad[i]) != NULL, "%s", error);
                        /* A refused value changes nothing. */
                        ck_assert_str_eq(dump_line(c, key), before);
                }
        }
}
END_TEST

START_TEST(test_listen_forms) {
        _cleanup_(config_freep) Config *c = NULL;

        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(config_set(c, "server", "listen", "[::1]:5001", "t", 1, NULL), 0);
        ck_assert_int_eq(c->listen_address.sa.sa_family, AF_INET6);
        ck_assert_int_eq(ntohs(c->listen_address.in6.sin6_port), 5001);
        ck_assert(IN6_IS_ADDR_LOOPBACK(&c->listen_address.in6.sin6_addr));
        ck_assert(!c->listen_address.any);
        ck_assert_int_eq(config_set(c, "server", "listen", "*:5002", "t", 1, NULL), 0);
        ck_assert(c->listen_address.any);
        ck_assert_int_eq(ntohs(c->listen_address.in6.sin6_port), 5002);
        ck_assert_int_eq(config_set(c, "server", "listen", "10.1.2.3:0", "t", 1, NULL), 0);
        ck_assert_int_eq(c->listen_address.sa.sa_family, AF_INET);
        ck_assert_uint_eq(ntohl(c->listen_address.in.sin_addr.s_addr), 0x0a010203);
}
END_TEST

START_TEST(test_unknown_key_and_section) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *e1 = NULL, *e2 = NULL, *e3 = NULL;

        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(config_set(c, "server", "max-frames", "1M", "a.conf", 3, &e1), -EINVAL);
        ck_assert_str_eq(e1, "a.conf:3: Unknown key 'max-frames' in section [server]");
        ck_assert_int_eq(config_set(c, "client", "listen", "5000", "a.conf", 4, &e2), -EINVAL);
        ck_assert_str_eq(e2, "a.conf:4: Unknown section [client]");
        ck_assert_int_eq(config_set(c, "", "listen", "5000", "a.conf", 1, &e3), -EINVAL);
        ck_assert_ptr_nonnull(strstr(e3, "outside of a section"));
}
END_TEST

START_TEST(test_empty_value_resets) {
        _cleanup_(config_freep) Config *c = NULL;

        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(config_set(c, "server", "max-frame", "1M", "t", 1, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "tls-certificate", "/x.pem", "t", 1, NULL), 0);
        ck_assert_uint_eq(c->max_frame, 1048576);
        ck_assert_int_eq(config_set(c, "server", "max-frame", "", "t", 2, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "tls-certificate", "", "t", 2, NULL), 0);
        ck_assert_uint_eq(c->max_frame, 65536);
        ck_assert_ptr_null(c->tls_certificate);
}
END_TEST

/* ---- files ---------------------------------------------------------------- */

START_TEST(test_file) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *error = NULL;
        const char *path = write_file("a.conf",
                                      "# comment\n"
                                      "; another\n"
                                      "\n"
                                      "[server]\n"
                                      "listen = 127.0.0.1:6000\n"
                                      "  max-frame=1M\n"
                                      "registration = closed ; inline comment\n"
                                      "queue-ttl = 1h30m\n");

        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_msg(config_parse_file(c, path, &error) == 0, "%s", error);
        ck_assert_str_eq(c->listen, "127.0.0.1:6000");
        ck_assert_uint_eq(c->max_frame, 1048576);
        ck_assert(!c->registration_open);
        ck_assert_uint_eq(c->queue_ttl_usec, 5400 * SEC);
}
END_TEST

START_TEST(test_file_errors) {
        static const struct {
                const char *text;
                unsigned line;
                const char *what;
        } cases[] = {
                { "[server]\nlisten = 1.2.3.4:5\nmax-frame = huge\n", 3, "Invalid value 'huge' for max-frame" },
                { "[server]\n\n\nbogus = 1\n", 4, "Unknown key 'bogus'" },
                { "[server]\nlisten = 5000\n[other]\nx = 1\n", 3, "Unknown section [other]" },
                { "[other]\n", 1, "Unknown section [other]" },
                { "listen = 5000\n", 1, "outside of a section" },
                { "[server]\nthis is not an assignment\n", 2, "Syntax error" },
                { "[server]\ntls = no\nkey-bits = 1024\nidle-timeout = 0\n", 3, "key-bits" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(config_freep) Config *c = NULL;
                _cleanup_(freep) char *error = NULL;
                const char *path = write_file("bad.conf", cases[i].text);
                char prefix[600];

                ck_assert_int_eq(config_new(&c), 0);
                ck_assert_msg(config_parse_file(c, path, &error) == -EINVAL, "case %zu accepted", i);
                ck_assert_ptr_nonnull(error);
                snprintf(prefix, sizeof(prefix), "%s:%u: ", path, cases[i].line);
                ck_assert_msg(strncmp(error, prefix, strlen(prefix)) == 0, "case %zu: %s", i, error);
                ck_assert_msg(strstr(error, cases[i].what) != NULL, "case %zu: %s", i, error);
        }
}
END_TEST

START_TEST(test_long_line) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *error = NULL, *text = NULL;
        const char *path;

        /* A value longer than inih's line buffer is an error, not a cut. */
        ck_assert_int_ge(asprintf(&text, "[server]\ncontrol = /%0*d\n", 5000, 0), 0);
        path = write_file("long.conf", text);
        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(config_parse_file(c, path, &error), -EINVAL);
        ck_assert_msg(strstr(error, ":2: ") != NULL, "%s", error);
        ck_assert_str_eq(c->control, "/run/securechat/control");
}
END_TEST

START_TEST(test_missing_file) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *error = NULL, *path = NULL;
        ConfigSources src = {};

        ck_assert_int_ge(asprintf(&path, "%s/none.conf", tmpdir), 0);
        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(config_parse_file(c, path, NULL), -ENOENT);

        /* The default file may be missing; one named with -c may not. */
        src.path = path;
        ck_assert_int_eq(config_load(&src, &d, &error), 0);
        ck_assert_uint_eq(d->max_frame, 65536);
        src.path_required = true;
        config_free(d);
        d = NULL;
        ck_assert_int_eq(config_load(&src, &d, &error), -ENOENT);
        ck_assert_ptr_null(d);
        ck_assert_ptr_nonnull(strstr(error, "none.conf"));
}
END_TEST

START_TEST(test_dropins) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *error = NULL, *dir = NULL;
        ConfigSources src = {};
        const char *main_path = write_file("securechatd.conf",
                                           "[server]\nmax-frame = 1M\nqueue-limit = 10\nidle-timeout = 1m\n");

        make_dir("securechatd.conf.d");
        write_file("securechatd.conf.d/20-b.conf", "[server]\nqueue-limit = 30\n");
        write_file("securechatd.conf.d/10-a.conf", "[server]\nqueue-limit = 20\nmax-text = 2K\n");
        /* Not drop-ins: wrong suffix, hidden. */
        write_file("securechatd.conf.d/30-c.conf.disabled", "[server]\nqueue-limit = 99\n");
        write_file("securechatd.conf.d/.40-d.conf", "[server]\nqueue-limit = 98\n");

        dir = config_dropin_dir(main_path);
        ck_assert_ptr_nonnull(strstr(dir, "/securechatd.conf.d"));

        src.path = main_path;
        src.path_required = true;
        ck_assert_msg(config_load(&src, &c, &error) == 0, "%s", error);
        ck_assert_uint_eq(c->max_frame, 1048576);     /* main file */
        ck_assert_uint_eq(c->idle_timeout_usec, 60 * SEC);
        ck_assert_uint_eq(c->max_text, 2048);         /* 10-a */
        ck_assert_uint_eq(c->queue_limit, 30);        /* 20-b after 10-a */
}
END_TEST

START_TEST(test_dropin_error) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *error = NULL;
        ConfigSources src = {};
        const char *main_path = write_file("securechatd.conf", "[server]\n");

        make_dir("securechatd.conf.d");
        write_file("securechatd.conf.d/50-x.conf", "[server]\n\nqueue-limit = 0\n");
        src.path = main_path;
        ck_assert_int_eq(config_load(&src, &c, &error), -EINVAL);
        ck_assert_ptr_null(c);
        ck_assert_msg(strstr(error, "securechatd.conf.d/50-x.conf:3: ") != NULL, "%s", error);
}
END_TEST

START_TEST(test_overrides) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *error = NULL;
        /* ConfigSources holds writable strings (the daemon's own copies). */
#define W(s) ((char[]) { s })
        char *overrides[] = { W("queue-limit=5"), W("listen=127.0.0.1:0"), W(" max-frame = 128K "),
                              W("tls=no") };
        char *origins[] = { W("-o queue-limit=5"), W("--listen"), W("-o"), W("-o tls=no") };
        char *bad[] = { W("max-frame=3") };
        char *bad_origin[] = { W("-o max-frame=3") };
        char *unknown[] = { W("colour=blue") };
        char *noeq[] = { W("tls") };
#undef W
        ConfigSources src = { .overrides = overrides, .origins = origins, .n_overrides = 4 };
        const char *main_path = write_file("securechatd.conf", "[server]\nqueue-limit = 10\ntls = yes\n");

        make_dir("securechatd.conf.d");
        write_file("securechatd.conf.d/a.conf", "[server]\nqueue-limit = 20\n");
        src.path = main_path;
        ck_assert_msg(config_load(&src, &c, &error) == 0, "%s", error);
        ck_assert_uint_eq(c->queue_limit, 5);         /* over file and drop-in */
        ck_assert_str_eq(c->listen, "127.0.0.1:0");
        ck_assert_uint_eq(c->max_frame, 131072);
        ck_assert(!c->tls);

        src.overrides = bad;
        src.origins = bad_origin;
        src.n_overrides = 1;
        ck_assert_int_lt(config_load(&src, &d, &error), 0);
        ck_assert_msg(strncmp(error, "-o max-frame=3: ", 16) == 0, "%s", error);
        free(error);
        error = NULL;

        src.overrides = unknown;
        src.origins = NULL;
        ck_assert_int_eq(config_load(&src, &d, &error), -EINVAL);
        ck_assert_msg(strstr(error, "Unknown key 'colour'") != NULL, "%s", error);
        free(error);
        error = NULL;

        src.overrides = noeq;
        ck_assert_int_eq(config_load(&src, &d, &error), -EINVAL);
        ck_assert_msg(strstr(error, "KEY=VALUE") != NULL, "%s", error);
        ck_assert_ptr_null(d);
}
END_TEST

START_TEST(test_verify) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *e1 = NULL, *e2 = NULL;

        ck_assert_int_eq(config_new(&c), 0);
        /* Default text fits default frames; a text as large as the frame
         * cannot (base64 and the envelope around it). */
        ck_assert_uint_le(config_max_envelope_frame(16384), 65536);
        ck_assert_int_eq(config_set(c, "server", "max-text", "64K", "t", 1, NULL), 0);
        ck_assert_int_eq(config_verify(c, &e1), -EINVAL);
        ck_assert_ptr_nonnull(strstr(e1, "max-text"));
        ck_assert_int_eq(config_set(c, "server", "max-frame", "128K", "t", 1, NULL), 0);
        ck_assert_int_eq(config_verify(c, NULL), 0);

        ck_assert_int_eq(config_set(c, "server", "tls-certificate", "/c.pem", "t", 1, NULL), 0);
        ck_assert_int_eq(config_verify(c, &e2), -EINVAL);
        ck_assert_ptr_nonnull(strstr(e2, "tls-key"));
        ck_assert_int_eq(config_set(c, "server", "tls-key", "/k.pem", "t", 1, NULL), 0);
        ck_assert_int_eq(config_verify(c, NULL), 0);
}
END_TEST

START_TEST(test_max_ciphertext) {
        /* PKCS#7 pads 1..8 bytes: 16384 bytes of text make 16392. */
        ck_assert_uint_eq(config_max_ciphertext(16384), 16392);
        ck_assert_uint_eq(config_max_ciphertext(16383), 16384);
        ck_assert_uint_eq(config_max_ciphertext(1), 8);
        ck_assert_uint_eq(config_max_ciphertext(0), 8);
}
END_TEST

START_TEST(test_limits_derived) {
        _cleanup_(config_freep) Config *c = NULL;
        struct sockaddr_in in = { .sin_family = AF_INET };
        struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };

        ck_assert_int_eq(config_new(&c), 0);
        /* A share is a part of queue-limit, never more, never none. */
        ck_assert_int_eq(config_set(c, "server", "queue-limit", "3", "t", 1, NULL), 0);
        ck_assert_uint_eq(config_queue_limit_per_sender(c), 1);
        ck_assert_int_eq(config_set(c, "server", "queue-limit-per-sender", "50", "t", 1, NULL), 0);
        ck_assert_uint_eq(config_queue_limit_per_sender(c), 3);
        ck_assert_int_eq(config_set(c, "server", "queue-limit", "10000000", "t", 1, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "queue-limit-per-sender", "33%", "t", 1, NULL), 0);
        ck_assert_uint_eq(config_queue_limit_per_sender(c), 3300000);

        /* A rate of 0 is no limit; a rate faster than a microsecond is one. */
        ck_assert_int_eq(config_set(c, "server", "message-rate", "0", "t", 1, NULL), 0);
        ck_assert_uint_eq(config_rate_interval(&c->message_rate), 0);
        ck_assert_int_eq(config_set(c, "server", "message-rate", "1000000/1ms", "t", 1, NULL), 0);
        ck_assert_uint_eq(config_rate_interval(&c->message_rate), 1);

        /* No address is trusted by default, loopback included; IPv4 matches
         * on an IPv6 socket as ::ffff:a.b.c.d. */
        inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
        ck_assert(!config_address_trusted(c, (struct sockaddr *) &in));
        ck_assert_int_eq(config_set(c, "server", "trusted-networks", "127.0.0.0/8 2001:db8:1::/48",
                                    "t", 1, NULL), 0);
        ck_assert(config_address_trusted(c, (struct sockaddr *) &in));
        inet_pton(AF_INET6, "::ffff:127.9.9.9", &in6.sin6_addr);
        ck_assert(config_address_trusted(c, (struct sockaddr *) &in6));
        inet_pton(AF_INET6, "2001:db8:1:ffff::1", &in6.sin6_addr);
        ck_assert(config_address_trusted(c, (struct sockaddr *) &in6));
        inet_pton(AF_INET6, "2001:db8:2::1", &in6.sin6_addr);
        ck_assert(!config_address_trusted(c, (struct sockaddr *) &in6));
        inet_pton(AF_INET, "128.0.0.1", &in.sin_addr);
        ck_assert(!config_address_trusted(c, (struct sockaddr *) &in));
}
END_TEST

START_TEST(test_dump_round_trip) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *error = NULL, *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        char path[512];
        FILE *f;

        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(config_set(c, "server", "idle-timeout", "1h30m", "t", 1, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "tls-certificate", "/c.pem", "t", 1, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "tls-key", "/k.pem", "t", 1, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "registration", "closed", "t", 1, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "log-level", "debug", "t", 1, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "trusted-networks", "10.0.0.0/8, fd00::/8", "t", 1, NULL), 0);
        ck_assert_int_eq(config_set(c, "server", "registration-rate", "7/90s", "t", 1, NULL), 0);
        snprintf(path, sizeof(path), "%s/dump.conf", tmpdir);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        config_dump(c, f);
        ck_assert_int_eq(fclose(f), 0);

        /* What --check-config prints is a valid file meaning the same. */
        ck_assert_int_eq(config_new(&d), 0);
        ck_assert_msg(config_parse_file(d, path, &error) == 0, "%s", error);
        f = open_memstream(&a, &alen);
        config_dump(c, f);
        fclose(f);
        f = open_memstream(&b, &blen);
        config_dump(d, f);
        fclose(f);
        ck_assert_str_eq(a, b);
        ck_assert_ptr_nonnull(strstr(a, "idle-timeout = 1h30m\n"));
        ck_assert_ptr_nonnull(strstr(a, "registration = closed\n"));
        ck_assert_ptr_nonnull(strstr(a, "log-level = debug\n"));
        ck_assert_ptr_nonnull(strstr(a, "trusted-networks = 10.0.0.0/8 fd00::/8\n"));
        ck_assert_ptr_nonnull(strstr(a, "registration-rate = 7/1m30s\n"));
}
END_TEST

START_TEST(test_parse_string) {
        /* Not NUL-terminated: the parser must stop at len. */
        static const char text[] = "[server]\nmax-frame = 1M\nlisten = 1.2.3.4:5garbage";
        static const char nul[] = "[server]\nlisten = 1.2.3.4:5\0garbage\n";
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *error = NULL, *e2 = NULL;
        const char *path;

        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_msg(config_parse_string(c, "mem", text, strlen(text) - strlen("garbage"),
                                          &error) == 0, "%s", error);
        ck_assert_uint_eq(c->max_frame, 1048576);
        ck_assert_str_eq(c->listen, "1.2.3.4:5");

        /* Errors name the buffer and the line, as for files. */
        ck_assert_int_eq(config_parse_string(c, "mem", text, strlen(text), &error), -EINVAL);
        ck_assert_msg(strncmp(error, "mem:3: ", 7) == 0, "%s", error);
        ck_assert_str_eq(c->listen, "1.2.3.4:5");
        free(error);
        error = NULL;

        /* A NUL byte is refused, in a buffer and in a file alike, rather
         * than cutting the line there (or calling it too long). */
        ck_assert_int_eq(config_parse_string(c, "mem", nul, sizeof(nul) - 1, &error), -EINVAL);
        ck_assert_msg(strcmp(error, "mem:2: NUL byte") == 0, "%s", error);
        path = write_file("nul.conf", "");
        {
                FILE *f = fopen(path, "we");
                ck_assert_ptr_nonnull(f);
                ck_assert_uint_eq(fwrite(nul, 1, sizeof(nul) - 1, f), sizeof(nul) - 1);
                ck_assert_int_eq(fclose(f), 0);
        }
        ck_assert_int_eq(config_parse_file(c, path, &e2), -EINVAL);
        ck_assert_msg(strstr(e2, "nul.conf:2: NUL byte") != NULL, "%s", e2);

        /* Empty input is an empty file. */
        ck_assert_int_eq(config_parse_string(c, "mem", "", 0, NULL), 0);
}
END_TEST

START_TEST(test_path_dump_safe) {
        /* Found by fuzz/fuzz-config: "control=;K" set the path ";K", which
         * config_dump() printed as "control = ;K", which reads back as an
         * empty value (inih: a comment) and so as the default. */
        static const char *const bad_files[] = {
                "[server]\ncontrol=;K\n",
                "[server]\ntls-key=;\n",
        };
        static const char *const bad_overrides[] = {
                "control=a ;b", "state-directory=;x", "control=/a\nb", "tls-key=/a\tb",
                "tls-certificate=/a\x7f", "identity-key=;x",
        };
        _cleanup_(config_freep) Config *c = NULL;

        ck_assert_int_eq(config_new(&c), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad_files); i++) {
                _cleanup_(freep) char *error = NULL;

                ck_assert_int_eq(config_parse_string(c, "mem", bad_files[i], strlen(bad_files[i]),
                                                     &error), -EINVAL);
                ck_assert_msg(strstr(error, "mem:2: Invalid value") != NULL, "%s", error);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_overrides); i++) {
                _cleanup_(freep) char *error = NULL;

                ck_assert_msg(config_parse_override(c, bad_overrides[i], "-o", &error) == -EINVAL,
                              "accepted '%s'", bad_overrides[i]);
        }
        ck_assert_str_eq(c->control, "/run/securechat/control");
        ck_assert_ptr_null(c->tls_key);
        ck_assert_ptr_null(c->identity_key);

        /* A ';' inside a word is no comment and stays allowed. */
        ck_assert_int_eq(config_parse_override(c, "control=/run/a;b", "-o", NULL), 0);
        ck_assert_str_eq(c->control, "/run/a;b");
}
END_TEST

/* ---- identity-key: where the key comes from ------------------------------- */

/* Where state_identity_locate() looks, and which source it says. */
static void assert_located(const Config *c, StateIdentitySource source, const char *path) {
        _cleanup_(freep) char *p = NULL;
        StateIdentitySource s;

        ck_assert_int_eq(state_identity_locate(c, &s, &p), 0);
        ck_assert_int_eq(s, source);
        ck_assert_str_eq(p, path);
}

START_TEST(test_identity_key_source) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(rsa_key_freep) RsaKey *made = NULL, *shared = NULL, *k = NULL;
        char state[512], creds[512], own[512], cred_key[600], state_key[600];
        char fingerprint[RSA_FINGERPRINT_MAX];
        bool created = true;
        const char *bad;

        snprintf(state, sizeof(state), "%s/state", tmpdir);
        snprintf(creds, sizeof(creds), "%s/creds", tmpdir);
        snprintf(own, sizeof(own), "%s/own.key", tmpdir);
        snprintf(state_key, sizeof(state_key), "%s/identity.key", state);
        snprintf(cred_key, sizeof(cred_key), "%s/identity-key", creds);
        make_dir("state");
        make_dir("creds");
        unsetenv("CREDENTIALS_DIRECTORY");
        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(config_set(c, "server", "state-directory", state, "t", 1, NULL), 0);

        /* Nothing configured, no credential: the state directory's, made
         * at the first load and read at the second. */
        assert_located(c, STATE_IDENTITY_STATE, state_key);
        ck_assert_int_eq(state_identity_load(state_key, STATE_IDENTITY_STATE, 2048, &made, &created), 0);
        ck_assert(created);
        ck_assert_int_eq(state_identity_load(state_key, STATE_IDENTITY_STATE, 2048, &k, &created), 0);
        ck_assert(!created);
        ck_assert_str_eq(k->fingerprint, made->fingerprint);
        k = rsa_key_free(k);

        /* A credential directory without the credential changes nothing;
         * with it, the credential is the key. */
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        assert_located(c, STATE_IDENTITY_STATE, state_key);
        ck_assert_int_eq(rsa_key_generate(2048, &shared), 0);
        ck_assert_int_eq(rsa_key_save_private(shared, cred_key), 0);
        assert_located(c, STATE_IDENTITY_CREDENTIAL, cred_key);
        ck_assert_int_eq(state_identity_load(cred_key, STATE_IDENTITY_CREDENTIAL, 2048, &k, &created), 0);
        ck_assert(!created);
        ck_assert_str_eq(k->fingerprint, shared->fingerprint);
        k = rsa_key_free(k);
        /* The state directory's own key, now unused, is pointed out; the
         * same key, or none, is not. */
        ck_assert_int_eq(state_identity_superseded(state, shared, fingerprint), 1);
        ck_assert_str_eq(fingerprint, made->fingerprint);
        ck_assert_int_eq(state_identity_superseded(state, made, fingerprint), 0);
        ck_assert_int_eq(state_identity_superseded(creds, made, fingerprint), 0);

        /* identity-key= comes first, and a missing file is an error, never
         * a new key: relays sharing it must present the same one. */
        ck_assert_int_eq(config_set(c, "server", "identity-key", own, "t", 1, NULL), 0);
        assert_located(c, STATE_IDENTITY_CONFIGURED, own);
        ck_assert_int_eq(state_identity_load(own, STATE_IDENTITY_CONFIGURED, 2048, &k, &created), -ENOENT);
        ck_assert_ptr_null(k);
        ck_assert_int_eq(access(own, F_OK), -1);
        ck_assert_int_eq(state_identity_load(cred_key, STATE_IDENTITY_CONFIGURED, 2048, &k, NULL), 0);
        ck_assert_str_eq(k->fingerprint, shared->fingerprint);
        k = rsa_key_free(k);
        /* ...nor for a credential that went away. */
        ck_assert_int_eq(unlink(cred_key), 0);
        ck_assert_int_eq(state_identity_load(cred_key, STATE_IDENTITY_CREDENTIAL, 2048, &k, NULL), -ENOENT);
        ck_assert_int_eq(access(cred_key, F_OK), -1);

        /* A key others may read, and a file that holds no key. */
        ck_assert_int_eq(rsa_key_save_private(shared, own), 0);
        ck_assert_int_eq(chmod(own, 0644), 0);
        ck_assert_int_eq(state_identity_load(own, STATE_IDENTITY_CONFIGURED, 2048, &k, NULL), -EPERM);
        bad = write_file("not-a-key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        ck_assert_int_eq(chmod(bad, 0600), 0);
        ck_assert_int_lt(state_identity_load(bad, STATE_IDENTITY_CONFIGURED, 2048, &k, NULL), 0);
        ck_assert_ptr_null(k);

        /* Reset to unset: back to the state directory's key. */
        ck_assert_int_eq(config_set(c, "server", "identity-key", "", "t", 1, NULL), 0);
        assert_located(c, STATE_IDENTITY_STATE, state_key);
        unsetenv("CREDENTIALS_DIRECTORY");
}
END_TEST

/* database=: sqlite or a URI libpq parses; a password in it is refused
 * and never repeated in the error, which ends up in the journal. */
START_TEST(test_database_key) {
        static const char *const good[] = {
                "sqlite", "postgresql:///securechat?host=/run/postgresql",
                "postgres://relay@db.example:5433/securechat?sslmode=require",
        };
        static const char *const bad[] = { "", "mysql://x", "sqlite3", "postgresql://[bad" };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_(config_freep) Config *c = NULL;

                ck_assert_int_eq(config_new(&c), 0);
                ck_assert_msg(config_set(c, "server", "database", good[i], "t", 1, NULL) == 0, "%s", good[i]);
                ck_assert_str_eq(c->database, good[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(config_freep) Config *c = NULL;
                _cleanup_(freep) char *error = NULL;

                ck_assert_int_eq(config_new(&c), 0);
                if (!*bad[i])
                        continue;       /* empty: the default, tested elsewhere */
                ck_assert_msg(config_set(c, "server", "database", bad[i], "t", 1, &error) < 0, "%s", bad[i]);
                ck_assert_str_eq(c->database, "sqlite");
        }
        for (size_t i = 0; i < 2; i++) {
                static const char *const secret[] = {
                        "postgresql://relay:hunter2secret@db/securechat",
                        "postgresql:///securechat?password=hunter2secret",
                };
                _cleanup_(config_freep) Config *c = NULL;
                _cleanup_(freep) char *error = NULL;

                ck_assert_int_eq(config_new(&c), 0);
                ck_assert_int_lt(config_set(c, "server", "database", secret[i], "f.conf", 3, &error), 0);
                ck_assert_ptr_nonnull(strstr(error, "database-password-file"));
                ck_assert_msg(!strstr(error, "hunter2secret"), "%s", error);
        }
}
END_TEST

START_TEST(test_node_name) {
        static const char *const good[] = { "n1", "relay-a", "abcdefghijklmnopqrstuvwxyz012345" };
        static const char *const bad[] = { "N1", "-a", "a_b", "a.b", "abcdefghijklmnopqrstuvwxyz0123456" };
        _cleanup_(config_freep) Config *c = NULL;

        ck_assert_int_eq(config_new(&c), 0);
        /* The default: the host name, made to fit the same rules. */
        ck_assert_ptr_nonnull(c->node_name);
        ck_assert_int_eq(config_set(c, "server", "node-name", c->node_name, "t", 1, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                ck_assert_int_eq(config_set(c, "server", "node-name", good[i], "t", 1, NULL), 0);
                ck_assert_str_eq(c->node_name, good[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(config_set(c, "server", "node-name", bad[i], "t", 1, NULL) < 0, "%s", bad[i]);
}
END_TEST

/* The database password: the file named, else the credential, first line
 * only, never a file others may read. */
START_TEST(test_database_password) {
        _cleanup_(config_freep) Config *c = NULL;
        char creds[512], cred[600];
        const char *file;
        char *pw = NULL;

        snprintf(creds, sizeof(creds), "%s/pwcreds", tmpdir);
        snprintf(cred, sizeof(cred), "%s/database-password", creds);
        make_dir("pwcreds");
        ck_assert_int_eq(config_new(&c), 0);

        unsetenv("CREDENTIALS_DIRECTORY");
        ck_assert_int_eq(state_database_password(c, &pw), 0);
        ck_assert_ptr_null(pw);
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        ck_assert_int_eq(state_database_password(c, &pw), 0);
        ck_assert_ptr_null(pw);         /* no such credential: none */

        file = write_file("pwcreds/database-password", "from-credential\nsecond line\n");
        ck_assert_int_eq(chmod(file, 0600), 0);
        ck_assert_int_eq(state_database_password(c, &pw), 0);
        ck_assert_str_eq(pw, "from-credential");
        free(pw);

        file = write_file("db-password", "from-file\r\n");
        ck_assert_int_eq(chmod(file, 0600), 0);
        ck_assert_int_eq(config_set(c, "server", "database-password-file", file, "t", 1, NULL), 0);
        ck_assert_int_eq(state_database_password(c, &pw), 0);
        ck_assert_str_eq(pw, "from-file");
        free(pw);

        ck_assert_int_eq(chmod(file, 0640), 0);
        ck_assert_int_eq(state_database_password(c, &pw), -EPERM);
        ck_assert_ptr_null(pw);
        ck_assert_int_eq(unlink(file), 0);
        ck_assert_int_eq(state_database_password(c, &pw), -ENOENT);   /* named: required */
        ck_assert_int_eq(unlink(cred), 0);
        unsetenv("CREDENTIALS_DIRECTORY");
}
END_TEST

static Suite *config_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("config");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_durations);
        tcase_add_test(tc, test_durations_format);
        tcase_add_test(tc, test_sizes);
        tcase_add_test(tc, test_bools);
        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_state_directory_env);
        tcase_add_test(tc, test_every_key);
        tcase_add_test(tc, test_listen_forms);
        tcase_add_test(tc, test_unknown_key_and_section);
        tcase_add_test(tc, test_empty_value_resets);
        tcase_add_test(tc, test_file);
        tcase_add_test(tc, test_file_errors);
        tcase_add_test(tc, test_long_line);
        tcase_add_test(tc, test_missing_file);
        tcase_add_test(tc, test_dropins);
        tcase_add_test(tc, test_dropin_error);
        tcase_add_test(tc, test_overrides);
        tcase_add_test(tc, test_verify);
        tcase_add_test(tc, test_max_ciphertext);
        tcase_add_test(tc, test_limits_derived);
        tcase_add_test(tc, test_dump_round_trip);
        tcase_add_test(tc, test_parse_string);
        tcase_add_test(tc, test_path_dump_safe);
        suite_add_tcase(s, tc);

        /* Generates two RSA keys: more than check's default 4 s on a busy
         * machine. */
        tc = tcase_create("identity-key");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_identity_key_source);
        tcase_add_test(tc, test_database_key);
        tcase_add_test(tc, test_node_name);
        tcase_add_test(tc, test_database_password);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(config_suite());
}
