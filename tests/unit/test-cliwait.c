/* SPDX-License-Identifier: MIT */
/*
 * scctl's wait primitive (cli/wait.c) on socketpairs: readiness, deadlines,
 * the abort descriptor, signals; and the errno <-> exit status table
 * (cli/exit-codes.c) that every verb's result goes through.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"
#include "exit-codes.h"
#include "macro.h"
#include "test-main.h"
#include "util.h"
#include "wait.h"

#define MSEC 1000ULL

static int pair[2] = { -EBADF, -EBADF }, abort_pair[2] = { -EBADF, -EBADF };

static void setup(void) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, abort_pair), 0);
}

static void teardown(void) {
        for (size_t i = 0; i < 2; i++) {
                pair[i] = safe_close(pair[i]);
                abort_pair[i] = safe_close(abort_pair[i]);
        }
}

START_TEST(test_wait_timeout) {
        uint64_t start = now_monotonic_usec();

        /* Nothing to read: the deadline passes, not earlier. */
        ck_assert_int_eq(wait_fd(pair[0], POLLIN, abort_pair[0], deadline_in(50 * MSEC)), 0);
        ck_assert_uint_ge(now_monotonic_usec() - start, 50 * MSEC);
        ck_assert_uint_lt(now_monotonic_usec() - start, 5000 * MSEC);
}
END_TEST

START_TEST(test_wait_past_deadline) {
        /* A deadline that passed is a timeout even when data waits. */
        ck_assert_int_eq(write(pair[1], "x", 1), 1);
        ck_assert_int_eq(wait_fd(pair[0], POLLIN, -EBADF, now_monotonic_usec() - 1), 0);
        ck_assert_int_eq(wait_fd(pair[0], POLLIN, -EBADF, now_monotonic_usec() + 1000 * MSEC), 1);
}
END_TEST

START_TEST(test_wait_readable) {
        struct pollfd p[2] = {
                { .fd = pair[0], .events = POLLIN },
                { .fd = -EBADF, .events = POLLIN },     /* ignored */
        };

        ck_assert_int_eq(write(pair[1], "x", 1), 1);
        p[0].revents = p[1].revents = 0x4242;   /* garbage in is not garbage out */
        ck_assert_int_eq(wait_fds(p, ELEMENTSOF(p), abort_pair[0], WAIT_FOREVER), 1);
        ck_assert(p[0].revents & POLLIN);
        ck_assert_int_eq(p[1].revents, 0);
}
END_TEST

START_TEST(test_wait_writable) {
        ck_assert_int_eq(wait_fd(pair[0], POLLOUT, -EBADF, deadline_in(1000 * MSEC)), 1);
}
END_TEST

START_TEST(test_wait_hangup) {
        struct pollfd p = { .fd = pair[0], .events = POLLIN };

        pair[1] = safe_close(pair[1]);
        ck_assert_int_eq(wait_fds(&p, 1, -EBADF, deadline_in(1000 * MSEC)), 1);
        ck_assert(p.revents & (POLLIN | POLLHUP));
}
END_TEST

START_TEST(test_wait_abort_first) {
        /* The user asked to stop: that wins over data that is there too. */
        ck_assert_int_eq(write(pair[1], "x", 1), 1);
        ck_assert_int_eq(write(abort_pair[1], "x", 1), 1);
        ck_assert_int_eq(wait_fd(pair[0], POLLIN, abort_pair[0], WAIT_FOREVER), -ECANCELED);
}
END_TEST

START_TEST(test_wait_sleep) {
        uint64_t start = now_monotonic_usec();

        /* No descriptors: a sleep, which the abort descriptor cuts short. */
        ck_assert_int_eq(wait_fds(NULL, 0, -EBADF, deadline_in(30 * MSEC)), 0);
        ck_assert_uint_ge(now_monotonic_usec() - start, 30 * MSEC);
        ck_assert_int_eq(write(abort_pair[1], "x", 1), 1);
        start = now_monotonic_usec();
        ck_assert_int_eq(wait_fds(NULL, 0, abort_pair[0], deadline_in(10000 * MSEC)), -ECANCELED);
        ck_assert_uint_lt(now_monotonic_usec() - start, 5000 * MSEC);
}
END_TEST

static void on_alarm(int sig) {
        (void) sig;
}

START_TEST(test_wait_eintr) {
        struct sigaction sa = { .sa_handler = on_alarm }, old;      /* no SA_RESTART */
        struct itimerval it = { .it_value = { .tv_usec = 20 * 1000 } };
        uint64_t start = now_monotonic_usec();

        /* A signal in the middle neither ends the wait nor fails it. */
        ck_assert_int_eq(sigaction(SIGALRM, &sa, &old), 0);
        ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
        ck_assert_int_eq(wait_fd(pair[0], POLLIN, abort_pair[0], deadline_in(150 * MSEC)), 0);
        ck_assert_uint_ge(now_monotonic_usec() - start, 150 * MSEC);
        ck_assert_int_eq(sigaction(SIGALRM, &old, NULL), 0);
}
END_TEST

START_TEST(test_wait_too_many) {
        struct pollfd p[WAIT_FDS_MAX + 1];

        for (size_t i = 0; i < ELEMENTSOF(p); i++)
                p[i] = (struct pollfd) { .fd = pair[0], .events = POLLOUT };
        ck_assert_int_eq(wait_fds(p, ELEMENTSOF(p), -EBADF, WAIT_FOREVER), -EINVAL);
        ck_assert_int_eq(wait_fds(p, WAIT_FDS_MAX, -EBADF, WAIT_FOREVER), 1);
}
END_TEST

START_TEST(test_deadline_in) {
        uint64_t now = now_monotonic_usec();

        ck_assert_uint_ge(deadline_in(USEC_PER_SEC), now + USEC_PER_SEC);
        /* No overflow into the past. */
        ck_assert_uint_eq(deadline_in(WAIT_FOREVER), WAIT_FOREVER);
        ck_assert_uint_eq(deadline_in(WAIT_FOREVER - 1), WAIT_FOREVER);
}
END_TEST

START_TEST(test_exit_status_mapping) {
        /* Both ways, for every status: a function that fails with
         * log_fail(EXIT_x) makes scctl exit with x. */
        for (int status = EXIT_OK; status <= _EXIT_MAX; status++) {
                int r = exit_status_to_errno(status);

                ck_assert_int_eq(exit_status_from_errno(r), status);
                ck_assert(status == EXIT_OK ? r == 0 : r < 0);
        }
        ck_assert_int_eq(exit_status_to_errno(EXIT_USAGE), -EINVAL);
        ck_assert_int_eq(exit_status_to_errno(EXIT_TIMEOUT), -ETIMEDOUT);
        /* Anything else fails plainly; ^C is not an error to report but
         * is no success either if it ever got this far. */
        ck_assert_int_eq(exit_status_from_errno(-ENOMEM), EXIT_FAIL);
        ck_assert_int_eq(exit_status_from_errno(-ECANCELED), EXIT_FAIL);
        ck_assert_int_eq(exit_status_from_errno(1), EXIT_OK);
        ck_assert_int_eq(exit_status_to_errno(_EXIT_MAX + 1), -EIO);
        ck_assert_int_eq(exit_status_to_errno(-1), -EIO);
}
END_TEST

static Suite *wait_suite(void) {
        Suite *s = suite_create("cli-wait");
        TCase *tc = tcase_create("wait");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_wait_timeout);
        tcase_add_test(tc, test_wait_past_deadline);
        tcase_add_test(tc, test_wait_readable);
        tcase_add_test(tc, test_wait_writable);
        tcase_add_test(tc, test_wait_hangup);
        tcase_add_test(tc, test_wait_abort_first);
        tcase_add_test(tc, test_wait_sleep);
        tcase_add_test(tc, test_wait_eintr);
        tcase_add_test(tc, test_wait_too_many);
        tcase_add_test(tc, test_deadline_in);
        suite_add_tcase(s, tc);

        tc = tcase_create("exit-codes");
        tcase_add_test(tc, test_exit_status_mapping);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(wait_suite());
}
