/* SPDX-License-Identifier: MIT */
/*
 * scctl's command line (cli/verbs.c) without a relay: the parse_argv
 * contract of the option parsers (> 0 go on, 0 exit successfully, < 0
 * -errno) and the exit statuses of scctl(1) that come out of it. Every
 * test runs in its own process (check forks), so global option state does
 * not leak from one to the next.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exit-codes.h"
#include "macro.h"
#include "test-main.h"
#include "verbs.h"

/* What scctl prints is not what is tested here, and must not mix with the
 * TAP on stdout. */
static void quiet(void) {
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_ge(dup2(fd, STDOUT_FILENO), 0);
        ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
        close(fd);
}

/* getopt_long() wants char *argv[], string literals are const: copies in
 * static storage, nothing to free. */
static char **argv_make(const char *const *in, int *ret_argc) {
        static char pool[4096], *argv[32];
        size_t used = 0;
        int n;

        for (n = 0; in[n]; n++) {
                size_t len = strlen(in[n]) + 1;

                ck_assert_int_lt(n, (int) ELEMENTSOF(argv) - 1);
                ck_assert_uint_le(used + len, sizeof(pool));
                argv[n] = memcpy(pool + used, in[n], len);
                used += len;
        }
        argv[n] = NULL;
        *ret_argc = n;
        return argv;
}

/* Parse the arguments (the first is the verb) as the verb would. */
#define PARSE(parser, ...)                                                      \
        ({                                                                      \
                const char *const _in[] = { __VA_ARGS__, NULL };                \
                int _argc;                                                      \
                char **_argv = argv_make(_in, &_argc);                          \
                optind = 0;                                                     \
                parser(_argc, _argv);                                           \
        })

/* scctl with these arguments: the exit status. */
#define RUN(...)                                                                \
        ({                                                                      \
                const char *const _in[] = { "scctl", __VA_ARGS__, NULL };       \
                int _argc;                                                      \
                char **_argv = argv_make(_in, &_argc);                          \
                scctl_main(_argc, _argv);                                       \
        })

static void teardown(void) {
        settings_done(&arg_settings);
}

START_TEST(test_parse_go_on) {
        ck_assert_int_gt(PARSE(verb_parse_no_arguments, "status"), 0);
        ck_assert_int_gt(PARSE(verb_parse_no_arguments, "status", "--json", "--timeout", "7"), 0);
        ck_assert(arg_settings.json);
        ck_assert_uint_eq(arg_settings.timeout_usec, 7 * USEC_PER_SEC);
        ck_assert_int_gt(PARSE(verb_parse_options, "fingerprint", "--server", "relay.test:7000", "alice"), 0);
        ck_assert_str_eq(arg_settings.arg_server, "relay.test:7000");
        ck_assert_int_eq(optind, 3);    /* the operand is the verb's */
}
END_TEST

START_TEST(test_parse_help) {
        quiet();
        ck_assert_int_eq(PARSE(verb_parse_no_arguments, "status", "--help"), 0);
        ck_assert_int_eq(PARSE(verb_parse_options, "fingerprint", "-h", "--bogus"), 0);
}
END_TEST

START_TEST(test_parse_errors) {
        quiet();
        ck_assert_int_eq(PARSE(verb_parse_no_arguments, "status", "--bogus"), -EINVAL);
        ck_assert_int_eq(PARSE(verb_parse_no_arguments, "status", "extra"), -EINVAL);
        ck_assert_int_eq(PARSE(verb_parse_no_arguments, "status", "--timeout"), -EINVAL);
        ck_assert_int_eq(PARSE(verb_parse_no_arguments, "status", "--timeout", "0"), -EINVAL);
        ck_assert_int_eq(PARSE(verb_parse_no_arguments, "status", "--timeout", "-5"), -EINVAL);
        ck_assert_int_eq(PARSE(verb_parse_options, "fingerprint", "--server-fingerprint", "SHA256:x"), -EINVAL);
}
END_TEST

START_TEST(test_exit_success) {
        quiet();
        ck_assert_int_eq(RUN("--help"), EXIT_OK);
        ck_assert_int_eq(RUN("--version"), EXIT_OK);
        ck_assert_int_eq(RUN("help"), EXIT_OK);
        ck_assert_int_eq(RUN("help", "status"), EXIT_OK);
        ck_assert_int_eq(RUN("stat", "--help"), EXIT_OK);     /* a unique prefix */
}
END_TEST

START_TEST(test_exit_usage) {
        quiet();
        ck_assert_int_eq(RUN(NULL), EXIT_USAGE);               /* no verb */
        ck_assert_int_eq(RUN("--bogus"), EXIT_USAGE);
        ck_assert_int_eq(RUN("--timeout", "soon", "status"), EXIT_USAGE);
        ck_assert_int_eq(RUN("no-such-verb"), EXIT_USAGE);
        ck_assert_int_eq(RUN("s"), EXIT_USAGE);               /* send, sessions, status */
        ck_assert_int_eq(RUN("help", "no-such-verb"), EXIT_USAGE);
        ck_assert_int_eq(RUN("status", "extra"), EXIT_USAGE);
        ck_assert_int_eq(RUN("kick"), EXIT_USAGE);
        ck_assert_int_eq(RUN("kick", "Not A Name"), EXIT_USAGE);
        ck_assert_int_eq(RUN("send", "--wait=never", "bob", "hi"), EXIT_USAGE);
}
END_TEST

START_TEST(test_exit_connect) {
        /* From log_fail(EXIT_CONNECT) deep in admin.c through the table. */
        quiet();
        ck_assert_int_eq(RUN("status", "--control", "/nonexistent/securechat/control"), EXIT_CONNECT);
}
END_TEST

static Suite *verbs_suite(void) {
        Suite *s = suite_create("cli-verbs");
        TCase *tc = tcase_create("parse");

        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_add_test(tc, test_parse_go_on);
        tcase_add_test(tc, test_parse_help);
        tcase_add_test(tc, test_parse_errors);
        suite_add_tcase(s, tc);

        tc = tcase_create("exit-status");
        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_add_test(tc, test_exit_success);
        tcase_add_test(tc, test_exit_usage);
        tcase_add_test(tc, test_exit_connect);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(verbs_suite());
}
