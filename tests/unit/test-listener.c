/* SPDX-License-Identifier: MIT */
/* The accept loop: the admission hook sees each peer first (a refused one
 * is closed unheard, an admitted one reaches accept with its token), and
 * out of file descriptors the listener pauses, then accepts again. */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"
#include "macro.h"
#include "test-main.h"

typedef struct Seen {
        bool refuse;
        unsigned admitted, accepted, paused;
        int pause_error;
        void *token;
        uint64_t accepted_usec;
        sd_event *event;
} Seen;

static int token_value;

static int on_admit(Listener *l, int fd, const struct sockaddr *sa, socklen_t salen, void *userdata,
                    void **ret_token) {
        Seen *seen = userdata;

        ck_assert_int_eq(sa->sa_family, AF_INET);
        seen->admitted++;
        if (seen->refuse)
                return -EBUSY;
        *ret_token = &token_value;
        return 0;
}

static void on_accept(Listener *l, int fd, void *token, void *userdata) {
        Seen *seen = userdata;

        seen->accepted++;
        seen->token = token;
        (void) sd_event_now(seen->event, CLOCK_MONOTONIC, &seen->accepted_usec);
        close(fd);
}

static void on_paused(Listener *l, int error, void *userdata) {
        Seen *seen = userdata;

        seen->paused++;
        seen->pause_error = error;
}

static const ListenerCallbacks callbacks = {
        .admit = on_admit,
        .accept = on_accept,
        .paused = on_paused,
};

/* A listener on 127.0.0.1, port chosen by the kernel. */
static Listener *listener_on_loopback(sd_event *e, Seen *seen, struct sockaddr_in *ret_address) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        Listener *l = NULL;
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        ck_assert_int_eq(listen(fd, 16), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        ck_assert_int_eq(listener_new(e, fd, &callbacks, seen, &l), 0);
        ck_assert_int_eq(listener_fd(l), fd);
        *ret_address = a;
        return l;
}

static int connect_to(const struct sockaddr_in *a) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(connect(fd, (const struct sockaddr *) a, sizeof(*a)), 0);
        return fd;
}

static void run_for(sd_event *e, uint64_t usec, const unsigned *until_nonzero) {
        uint64_t start, now;

        ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &start), 0);
        do {
                ck_assert_int_ge(sd_event_run(e, 50000), 0);
                ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &now), 0);
        } while ((!until_nonzero || *until_nonzero == 0) && now - start < usec);
}

START_TEST(test_admit) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        struct sockaddr_in a;
        Seen seen = {};
        Listener *l;
        char c;
        int fd;

        ck_assert_int_eq(sd_event_new(&e), 0);
        seen.event = e;
        l = listener_on_loopback(e, &seen, &a);

        /* Refused: closed unheard, never handed over. */
        seen.refuse = true;
        fd = connect_to(&a);
        run_for(e, 2000000, &seen.admitted);
        ck_assert_uint_eq(seen.admitted, 1);
        ck_assert_uint_eq(seen.accepted, 0);
        ck_assert_int_eq(read(fd, &c, 1), 0);
        close(fd);

        /* Admitted: accepted with the hook's token. */
        seen.refuse = false;
        fd = connect_to(&a);
        run_for(e, 2000000, &seen.accepted);
        ck_assert_uint_eq(seen.admitted, 2);
        ck_assert_uint_eq(seen.accepted, 1);
        ck_assert_ptr_eq(seen.token, &token_value);
        ck_assert_uint_eq(seen.paused, 0);
        close(fd);
        listener_free(l);
}
END_TEST

START_TEST(test_pause_on_emfile) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        struct rlimit old, tight;
        struct sockaddr_in a;
        uint64_t paused_usec;
        Seen seen = {};
        Listener *l;
        int fd, next;

        ck_assert_int_eq(sd_event_new(&e), 0);
        seen.event = e;
        l = listener_on_loopback(e, &seen, &a);
        fd = connect_to(&a);

        /* No descriptor left for accept(). */
        next = dup(0);
        ck_assert_int_ge(next, 0);
        close(next);
        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
        tight = (struct rlimit) { .rlim_cur = (rlim_t) next, .rlim_max = old.rlim_max };
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);
        run_for(e, 2000000, &seen.paused);
        ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &paused_usec), 0);
        ck_assert_uint_eq(seen.paused, 1);
        ck_assert_int_eq(seen.pause_error, EMFILE);
        ck_assert_uint_eq(seen.accepted, 0);

        /* Descriptors again: the waiting peer is taken, after the pause. */
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
        run_for(e, 3 * LISTENER_RETRY_USEC, &seen.accepted);
        ck_assert_uint_eq(seen.accepted, 1);
        ck_assert_uint_eq(seen.paused, 1);
        ck_assert_uint_ge(seen.accepted_usec - paused_usec, LISTENER_RETRY_USEC / 2);
        close(fd);
        listener_free(l);
}
END_TEST

static Suite *listener_suite(void) {
        Suite *s = suite_create("listener");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_admit);
        tcase_add_test(tc, test_pause_on_emfile);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(listener_suite());
}
