/* SPDX-License-Identifier: MIT */
/* The per-address and per-user table: keys (IPv4, IPv6 /64, IPv4-mapped),
 * token buckets, holding and forgetting, its bound, log throttling. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "anvil.h"
#include "macro.h"
#include "test-main.h"

#define SEC 1000000ull

static struct sockaddr *v4(const char *s) {
        static struct sockaddr_in a;

        a = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons(1234) };
        ck_assert_int_eq(inet_pton(AF_INET, s, &a.sin_addr), 1);
        return (struct sockaddr *) &a;
}

static struct sockaddr *v6(const char *s) {
        static struct sockaddr_in6 a;

        a = (struct sockaddr_in6) { .sin6_family = AF_INET6, .sin6_port = htons(4321) };
        ck_assert_int_eq(inet_pton(AF_INET6, s, &a.sin6_addr), 1);
        return (struct sockaddr *) &a;
}

START_TEST(test_keys) {
        _cleanup_(anvil_freep) Anvil *a = NULL;
        AnvilEntry *e;

        ck_assert_int_eq(anvil_new(&a), 0);
        e = anvil_get_address(a, v4("192.0.2.1"), 1);
        ck_assert_ptr_nonnull(e);
        anvil_ref(a, e);
        /* The port does not matter; IPv4-mapped IPv6 is the same host. */
        ck_assert_ptr_eq(anvil_get_address(a, v4("192.0.2.1"), 1), e);
        ck_assert_ptr_eq(anvil_get_address(a, v6("::ffff:192.0.2.1"), 1), e);
        ck_assert_ptr_ne(anvil_get_address(a, v4("192.0.2.2"), 1), e);

        /* IPv6: one /64 is one host. */
        e = anvil_get_address(a, v6("2001:db8:1:2::1"), 1);
        anvil_ref(a, e);
        ck_assert_ptr_eq(anvil_get_address(a, v6("2001:db8:1:2:ffff:1:2:3"), 1), e);
        ck_assert_ptr_ne(anvil_get_address(a, v6("2001:db8:1:3::1"), 1), e);

        /* Users are apart from addresses. */
        e = anvil_get_user(a, "alice", 1);
        anvil_ref(a, e);
        ck_assert_ptr_eq(anvil_get_user(a, "alice", 1), e);
        ck_assert_ptr_ne(anvil_get_user(a, "alicf", 1), e);
}
END_TEST

START_TEST(test_bucket) {
        _cleanup_(anvil_freep) Anvil *a = NULL;
        AnvilEntry *e;
        uint64_t now = 1000 * SEC;

        ck_assert_int_eq(anvil_new(&a), 0);
        e = anvil_get_user(a, "alice", now);
        anvil_ref(a, e);
        /* 1 per second, burst 3: three at once, then one a second. */
        for (int i = 0; i < 3; i++)
                ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_MESSAGE, SEC, 3, now), 0);
        ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_MESSAGE, SEC, 3, now), SEC);
        /* A refusal takes nothing. */
        ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_MESSAGE, SEC, 3, now + SEC / 2), SEC / 2);
        ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_MESSAGE, SEC, 3, now + SEC), 0);
        ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_MESSAGE, SEC, 3, now + SEC), SEC);
        /* Full again after burst intervals of quiet. */
        now += 10 * SEC;
        for (int i = 0; i < 3; i++)
                ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_MESSAGE, SEC, 3, now), 0);
        ck_assert_uint_gt(anvil_take(e, ANVIL_BUCKET_MESSAGE, SEC, 3, now), 0);
        /* Interval 0: no limit. */
        ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_REGISTER, 0, 1, now), 0);

        ck_assert_uint_eq(anvil_retry_after_sec(1), 1);
        ck_assert_uint_eq(anvil_retry_after_sec(SEC), 1);
        ck_assert_uint_eq(anvil_retry_after_sec(SEC + 1), 2);
}
END_TEST

START_TEST(test_forget) {
        _cleanup_(anvil_freep) Anvil *a = NULL;
        AnvilEntry *e;
        uint64_t now = 1000 * SEC;

        ck_assert_int_eq(anvil_new(&a), 0);
        e = anvil_get_address(a, v4("198.51.100.7"), now);
        anvil_ref(a, e);
        ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_CONNECT, SEC, 1, now), 0);
        anvil_unref(a, e, now);
        /* Unheld but with state (an empty bucket): kept. */
        anvil_sweep(a, now + SEC / 2);
        ck_assert_uint_eq(anvil_size(a), 1);
        e = anvil_get_address(a, v4("198.51.100.7"), now + SEC / 2);
        ck_assert_uint_gt(anvil_take(e, ANVIL_BUCKET_CONNECT, SEC, 1, now + SEC / 2), 0);
        /* Once the bucket is full again it says nothing: forgotten. */
        anvil_sweep(a, now + 2 * SEC);
        ck_assert_uint_eq(anvil_size(a), 0);

        /* Held entries are never forgotten. */
        e = anvil_get_user(a, "bob", now);
        anvil_ref(a, e);
        anvil_sweep(a, now + 1000 * SEC);
        ck_assert_uint_eq(anvil_size(a), 1);
        anvil_unref(a, e, now + 1000 * SEC);
        ck_assert_uint_eq(anvil_size(a), 0);
}
END_TEST

START_TEST(test_bound) {
        _cleanup_(anvil_freep) Anvil *a = NULL;
        AnvilEntry *held;
        uint64_t now = 1000 * SEC;

        ck_assert_int_eq(anvil_new(&a), 0);
        held = anvil_get_user(a, "held", now);
        anvil_ref(a, held);
        /* Idle entries with state, far more than the bound: the oldest go. */
        for (unsigned i = 0; i < ANVIL_IDLE_MAX + 1000; i++) {
                char name[32];
                AnvilEntry *e;

                snprintf(name, sizeof(name), "u%u", i);
                e = anvil_get_user(a, name, now);
                ck_assert_ptr_nonnull(e);
                ck_assert_uint_eq(anvil_take(e, ANVIL_BUCKET_MESSAGE, 3600 * SEC, 1, now), 0);
        }
        ck_assert_uint_le(anvil_size(a), ANVIL_IDLE_MAX + 2);
        ck_assert_uint_ge(anvil_size(a), ANVIL_IDLE_MAX);
        /* ...but not a held one. */
        ck_assert_ptr_eq(anvil_get_user(a, "held", now), held);
}
END_TEST

START_TEST(test_log_throttle) {
        _cleanup_(anvil_freep) Anvil *a = NULL;
        AnvilEntry *e;
        uint64_t now = 1000 * SEC, n = 99;

        ck_assert_int_eq(anvil_new(&a), 0);
        e = anvil_get_address(a, v4("203.0.113.5"), now);
        ck_assert(anvil_log_allowed(e, now, &n));
        ck_assert_uint_eq(n, 0);
        for (int i = 0; i < 1000; i++)
                ck_assert(!anvil_log_allowed(e, now + 1, &n));
        ck_assert(anvil_log_allowed(e, now + ANVIL_LOG_INTERVAL_USEC, &n));
        ck_assert_uint_eq(n, 1000);
}
END_TEST

static Suite *anvil_suite(void) {
        Suite *s = suite_create("anvil");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_keys);
        tcase_add_test(tc, test_bucket);
        tcase_add_test(tc, test_forget);
        tcase_add_test(tc, test_bound);
        tcase_add_test(tc, test_log_throttle);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(anvil_suite());
}
