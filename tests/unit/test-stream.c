/* SPDX-License-Identifier: MIT */
/* The connection engine: its output buffer (bounds, consuming from the
 * head, compacting only for room, giving memory back after a burst,
 * truncating) and the graceful close on a socketpair with a plain
 * transport (the last bytes arrive, then EOF, and the stream waits for
 * the peer's EOF, or for its deadline, before it is dead), and a TLS
 * stream's one recv() per EPOLLIN. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "stream.h"
#include "test-main.h"

static void fill(uint8_t *p, size_t n, uint8_t first) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (first + i);
}

START_TEST(test_output_bounds) {
        StreamOutput o;
        uint8_t data[300];

        fill(data, sizeof(data), 0);
        stream_output_init(&o, 100, 64);
        ck_assert_int_eq(stream_output_append(&o, data, 101), -ENOBUFS);
        ck_assert_uint_eq(stream_output_pending(&o), 0);
        ck_assert_int_eq(stream_output_append(&o, data, 60), 0);
        ck_assert_int_eq(stream_output_append(&o, data, 40), 0);
        ck_assert_uint_eq(stream_output_pending(&o), 100);
        /* Full: nothing more, and a refused append adds nothing. */
        ck_assert_int_eq(stream_output_append(&o, data, 1), -ENOBUFS);
        ck_assert_uint_eq(stream_output_pending(&o), 100);
        /* What was written makes room again. */
        stream_output_consume(&o, 30);
        ck_assert_int_eq(stream_output_append(&o, data, 30), 0);
        ck_assert_int_eq(stream_output_append(&o, data, 1), -ENOBUFS);
        ck_assert_uint_eq(stream_output_pending(&o), 100);
        /* A length that would overflow is refused, not wrapped. */
        ck_assert_int_eq(stream_output_append(&o, data, SIZE_MAX), -ENOBUFS);
        stream_output_done(&o);
}
END_TEST

START_TEST(test_output_consume_compact) {
        StreamOutput o;
        uint8_t data[256], expect[256];
        size_t cap;

        fill(data, sizeof(data), 0);
        stream_output_init(&o, 4096, 4096);
        ck_assert_int_eq(stream_output_append(&o, data, 200), 0);
        cap = o.cap;
        ck_assert_uint_ge(cap, 200);

        /* Consuming moves the head only: no copy per write. */
        stream_output_consume(&o, 150);
        ck_assert_uint_eq(o.head, 150);
        ck_assert_uint_eq(stream_output_pending(&o), 50);
        ck_assert(memcmp(stream_output_head(&o), data + 150, 50) == 0);

        /* Room at the tail: appended there, the head stays. */
        ck_assert_int_eq(stream_output_append(&o, data, cap - 200), 0);
        ck_assert_uint_eq(o.head, 150);
        ck_assert_uint_eq(o.cap, cap);

        /* No room at the tail, but room once the head is reclaimed: the
         * buffer compacts instead of growing, and keeps the order. */
        ck_assert_int_eq(stream_output_append(&o, data, 100), 0);
        ck_assert_uint_eq(o.cap, cap);
        ck_assert_uint_eq(o.head, 0);
        ck_assert_uint_eq(stream_output_pending(&o), 50 + (cap - 200) + 100);
        memcpy(expect, data + 150, 50);
        ck_assert(memcmp(stream_output_head(&o), expect, 50) == 0);
        ck_assert(memcmp(stream_output_head(&o) + 50 + (cap - 200), data, 100) == 0);

        /* Everything written: empty, and within keep, still allocated. */
        stream_output_consume(&o, stream_output_pending(&o));
        ck_assert_uint_eq(stream_output_pending(&o), 0);
        ck_assert_uint_eq(o.head, 0);
        ck_assert_uint_eq(o.cap, cap);
        stream_output_done(&o);
}
END_TEST

START_TEST(test_output_shrink) {
        static uint8_t big[64 * 1024];
        StreamOutput o;

        stream_output_init(&o, 1024 * 1024, 4096);
        for (int i = 0; i < 4; i++)
                ck_assert_int_eq(stream_output_append(&o, big, sizeof(big)), 0);
        ck_assert_uint_ge(o.cap, 4 * sizeof(big));
        /* Drained in pieces: the memory stays until it is all written... */
        stream_output_consume(&o, 3 * sizeof(big));
        ck_assert_uint_ge(o.cap, 4 * sizeof(big));
        /* ...then a burst's buffer is given back. */
        stream_output_consume(&o, sizeof(big));
        ck_assert_uint_eq(o.cap, 0);
        ck_assert_ptr_null(o.data);
        /* And it grows again as needed. */
        ck_assert_int_eq(stream_output_append(&o, big, 10), 0);
        ck_assert_uint_eq(stream_output_pending(&o), 10);
        stream_output_done(&o);
}
END_TEST

START_TEST(test_output_truncate) {
        StreamOutput o;

        stream_output_init(&o, 1024, 1024);
        ck_assert_int_eq(stream_output_append(&o, "one\0two\0three", 14), 0);
        stream_output_consume(&o, 1);
        /* Keep the message being written, drop the rest. */
        stream_output_truncate(&o, 3);
        ck_assert_uint_eq(stream_output_pending(&o), 3);
        ck_assert(memcmp(stream_output_head(&o), "ne\0", 3) == 0);
        ck_assert_int_eq(stream_output_append(&o, "X", 1), 0);
        ck_assert(memcmp(stream_output_head(&o), "ne\0X", 4) == 0);
        stream_output_truncate(&o, 0);
        ck_assert_uint_eq(stream_output_pending(&o), 0);
        stream_output_clear(&o);
        ck_assert_ptr_null(o.data);
}
END_TEST

typedef struct Peer {
        unsigned dead;
        unsigned io;
} Peer;

static void on_io(Stream *s, uint32_t revents, void *userdata) {
        ((Peer *) userdata)->io++;
}

static void on_dead(Stream *s, void *userdata) {
        ((Peer *) userdata)->dead++;
}

static const StreamCallbacks callbacks = {
        .io = on_io,
        .dead = on_dead,
};

/* A stream on one end of a socketpair, the other end returned. */
static Stream *stream_on_pair(sd_event *e, Peer *peer, int *ret_other) {
        Transport *t = NULL;
        Stream *s = NULL;
        int fds[2];

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
        ck_assert_int_eq(transport_new_server(fds[0], NULL, &t), 0);
        ck_assert_int_eq(stream_new(e, t, 1024 * 1024, 4096, &callbacks, peer, &s), 0);
        *ret_other = fds[1];
        return s;
}

/* Run the loop until the stream is dead or max_usec passed. */
static void run_until_dead(sd_event *e, Peer *peer, uint64_t max_usec) {
        uint64_t start, now;

        ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &start), 0);
        do {
                ck_assert_int_ge(sd_event_run(e, 100000), 0);
                ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &now), 0);
        } while (peer->dead == 0 && now - start < max_usec);
}

/* Read from fd until EOF; returns how much arrived. */
static size_t read_to_eof(int fd, char *buf, size_t size) {
        size_t got = 0;

        for (int i = 0; i < 1000; i++) {
                ssize_t n = read(fd, buf + got, size - got);

                if (n == 0)
                        return got;
                if (n < 0) {
                        ck_assert_int_eq(errno, EAGAIN);
                        usleep(1000);
                        continue;
                }
                got += (size_t) n;
        }
        ck_abort_msg("no EOF");
        return got;
}

START_TEST(test_close_graceful) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        char junk[8192] = { 0 }, buf[256];
        Peer peer = {};
        Stream *s;
        int other;

        ck_assert_int_eq(sd_event_new(&e), 0);
        s = stream_on_pair(e, &peer, &other);

        /* The peer sent what we will never read (a frame too large). */
        ck_assert_int_eq(write(other, junk, sizeof(junk)), (ssize_t) sizeof(junk));
        ck_assert_int_eq(stream_append(s, "error", 5), 0);
        stream_close(s, 1000000);
        ck_assert(!stream_is_open(s));
        ck_assert_int_eq(stream_append(s, "more", 4), -ESHUTDOWN);

        /* The last word arrives, then our EOF, while the stream still
         * waits for the peer's. */
        ck_assert_uint_eq(read_to_eof(other, buf, sizeof(buf)), 5);
        ck_assert(memcmp(buf, "error", 5) == 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_ge(sd_event_run(e, 0), 0);
        ck_assert(!stream_is_dead(s));
        ck_assert_uint_eq(peer.dead, 0);

        /* The peer hangs up: the stream is dead, once. */
        close(other);
        run_until_dead(e, &peer, 2000000);
        ck_assert_uint_eq(peer.dead, 1);
        ck_assert(stream_is_dead(s));
        ck_assert_uint_eq(peer.io, 0);
        stream_free(s);
}
END_TEST

START_TEST(test_close_drain_deadline) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        char buf[64];
        Peer peer = {};
        uint64_t start, end;
        Stream *s;
        int other;

        ck_assert_int_eq(sd_event_new(&e), 0);
        s = stream_on_pair(e, &peer, &other);
        stream_close(s, 1000000);
        ck_assert_uint_eq(read_to_eof(other, buf, sizeof(buf)), 0);

        /* A peer that neither sends nor hangs up is not waited for long. */
        ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &start), 0);
        run_until_dead(e, &peer, 3500000);
        ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &end), 0);
        ck_assert_uint_eq(peer.dead, 1);
        ck_assert_uint_ge(end - start, 1000000);
        stream_free(s);
        close(other);
}
END_TEST

START_TEST(test_abort) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Peer peer = {};
        Stream *s;
        int other;

        ck_assert_int_eq(sd_event_new(&e), 0);
        s = stream_on_pair(e, &peer, &other);
        ck_assert_int_eq(stream_append(s, "lost", 4), 0);
        stream_abort(s);
        ck_assert(stream_is_dead(s));
        ck_assert_uint_eq(stream_pending(s), 0);
        ck_assert_int_eq(sd_event_run(e, 0), 0);
        /* Aborting is the owner's own doing: no callback. */
        ck_assert_uint_eq(peer.dead, 0);
        stream_free(s);
        close(other);
}
END_TEST

/* An owner that writes whenever the stream says it may. */
static void on_io_flush(Stream *s, uint32_t revents, void *userdata) {
        ((Peer *) userdata)->io++;
        if (revents & EPOLLOUT)
                ck_assert_int_eq(stream_flush(s), 0);
}

static const StreamCallbacks flushing_callbacks = {
        .io = on_io_flush,
        .dead = on_dead,
};

/* Read exactly n bytes from fd, running the loop while the peer writes. */
static void read_running(sd_event *e, int fd, uint8_t *buf, size_t n) {
        size_t got = 0;

        for (int i = 0; got < n && i < 100000; i++) {
                ssize_t k = read(fd, buf + got, n - got);

                if (k > 0)
                        got += (size_t) k;
                else
                        ck_assert(k < 0 && errno == EAGAIN);
                ck_assert_int_ge(sd_event_run(e, 1000), 0);
        }
        ck_assert_uint_eq(got, n);
}

/* Output the owner did not flush goes out at the next turn; output it
 * flushed leaves nothing to wake up for. */
START_TEST(test_flush_next_turn) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Transport *t = NULL;
        Peer peer = {};
        char buf[16] = {};
        Stream *s;
        int fds[2];

        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
        ck_assert_int_eq(transport_new_server(fds[0], NULL, &t), 0);
        ck_assert_int_eq(stream_new(e, t, 1024 * 1024, 4096, &flushing_callbacks, &peer, &s), 0);
        stream_set_reading(s, false);

        ck_assert_int_eq(stream_append(s, "hello", 5), 0);
        ck_assert_int_eq(read(fds[1], buf, sizeof(buf)), -1);
        ck_assert_int_eq(sd_event_run(e, 0), 1);
        ck_assert_uint_eq(peer.io, 1);
        ck_assert_uint_eq(stream_pending(s), 0);
        ck_assert_int_eq(read(fds[1], buf, sizeof(buf)), 5);
        ck_assert_str_eq(buf, "hello");

        ck_assert_int_eq(stream_append(s, "again", 5), 0);
        ck_assert_int_eq(stream_flush(s), 0);
        ck_assert_int_eq(sd_event_run(e, 0), 0);
        ck_assert_uint_eq(peer.io, 1);

        /* Corked output waits for the uncork, then goes out the same way. */
        stream_cork(s, true);
        ck_assert_int_eq(stream_append(s, "later", 5), 0);
        ck_assert_int_eq(sd_event_run(e, 0), 0);
        stream_cork(s, false);
        ck_assert_int_eq(sd_event_run(e, 0), 1);
        ck_assert_int_eq(read(fds[1], buf, sizeof(buf)), 10);
        ck_assert(memcmp(buf, "againlater", 10) == 0);

        stream_free(s);
        ck_assert_int_eq(sd_event_run(e, 0), 0);
        close(fds[1]);
}
END_TEST

/* More than the socket takes: the rest goes out as the peer reads. */
START_TEST(test_flush_blocked) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(freep) uint8_t *out = NULL, *in = NULL;
        const size_t n = 900 * 1024;
        Transport *t = NULL;
        Peer peer = {};
        Stream *s;
        int fds[2];

        out = malloc(n);
        in = malloc(n);
        ck_assert(out && in);
        fill(out, n, 7);
        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
        ck_assert_int_eq(transport_new_server(fds[0], NULL, &t), 0);
        ck_assert_int_eq(stream_new(e, t, 1024 * 1024, 4096, &flushing_callbacks, &peer, &s), 0);
        stream_set_reading(s, false);

        ck_assert_int_eq(stream_append(s, out, n), 0);
        ck_assert_int_eq(stream_flush(s), 0);
        ck_assert_uint_gt(stream_pending(s), 0);       /* the socket is full */
        read_running(e, fds[1], in, n);
        ck_assert(memcmp(in, out, n) == 0);
        ck_assert_uint_eq(stream_pending(s), 0);

        stream_free(s);
        close(fds[1]);
}
END_TEST

/* A TLS stream asks the kernel once per EPOLLIN: after a read that left
 * the socket empty (transport_read_all()), stream_read() says -EAGAIN
 * without a recv() until the loop reports more, edge-triggered, and then
 * reads what came; but not after the peer shut its side, whose EOF has no
 * edge of its own after the last bytes. */
START_TEST(test_read_once_per_edge) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(transport_freep) Transport *c = NULL;
        gnutls_certificate_credentials_t creds = NULL;
        char dir[] = "/tmp/test-stream-XXXXXX", key[64], cert[64], buf[64];
        bool s_done = false, c_done = false;
        Transport *t = NULL;
        Peer peer = {};
        Stream *s = NULL;
        int fds[2], queued = 0;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(key, sizeof(key), "%s/key.pem", dir);
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        ck_assert_int_eq(tls_key_generate(key), 0);
        ck_assert_int_eq(tls_make_self_signed(key, "relay.example", cert), 0);
        ck_assert_int_eq(tls_credentials_load(cert, key, &creds), 0);

        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
        ck_assert_int_eq(transport_new_server(fds[0], creds, &t), 0);
        ck_assert_int_eq(transport_new_client(fds[1], true, "relay.example", &c), 0);
        ck_assert_int_eq(stream_new(e, t, 1024 * 1024, 4096, &callbacks, &peer, &s), 0);
        for (int i = 0; i < 1000 && !(s_done && c_done); i++) {
                int r;

                if (!s_done) {
                        r = stream_handshake(s, NULL);
                        ck_assert(r == 0 || r == -EAGAIN);
                        s_done = r == 0;
                }
                if (!c_done) {
                        r = transport_handshake(c, NULL);
                        ck_assert(r == 0 || r == -EAGAIN);
                        c_done = r == 0;
                }
                usleep(100);
        }
        ck_assert(s_done && c_done);
        stream_set_reading(s, true);

        ck_assert_int_eq(transport_write(c, "one", 3), 3);
        for (int i = 0; i < 100 && peer.io == 0; i++)
                ck_assert_int_ge(sd_event_run(e, 100000), 0);
        ck_assert_uint_eq(peer.io, 1);
        ck_assert_int_eq(stream_read(s, buf, sizeof(buf)), 3);
        ck_assert(memcmp(buf, "one", 3) == 0);

        /* In the kernel, but no recv() is made for it before epoll said. */
        ck_assert_int_eq(transport_write(c, "two", 3), 3);
        ck_assert_int_eq(ioctl(fds[0], FIONREAD, &queued), 0);
        ck_assert_int_gt(queued, 0);
        ck_assert_int_eq(stream_read(s, buf, sizeof(buf)), -EAGAIN);

        for (int i = 0; i < 100 && peer.io == 1; i++)
                ck_assert_int_ge(sd_event_run(e, 100000), 0);
        ck_assert_uint_eq(peer.io, 2);
        ck_assert_int_eq(stream_read(s, buf, sizeof(buf)), 3);
        ck_assert(memcmp(buf, "two", 3) == 0);
        ck_assert_int_eq(stream_read(s, buf, sizeof(buf)), -EAGAIN);

        /* The last bytes and the FIN (no close_notify) in one wakeup: the
         * short read stops at the FIN, and no edge comes after it. The
         * EOF is still read. */
        ck_assert_int_eq(transport_write(c, "end", 3), 3);
        ck_assert_int_eq(shutdown(fds[1], SHUT_WR), 0);
        for (int i = 0; i < 100 && peer.io == 2; i++)
                ck_assert_int_ge(sd_event_run(e, 100000), 0);
        ck_assert_uint_eq(peer.io, 3);
        ck_assert_int_eq(stream_read(s, buf, sizeof(buf)), 3);
        ck_assert_int_eq(stream_read(s, buf, sizeof(buf)), -ECONNRESET);

        stream_free(s);
        gnutls_certificate_free_credentials(creds);
        (void) unlink(key);
        (void) unlink(cert);
        (void) rmdir(dir);
}
END_TEST

static Suite *stream_suite(void) {
        Suite *s = suite_create("stream");
        TCase *tc = tcase_create("output");
        TCase *tc_close = tcase_create("close");

        tcase_add_test(tc, test_output_bounds);
        tcase_add_test(tc, test_output_consume_compact);
        tcase_add_test(tc, test_output_shrink);
        tcase_add_test(tc, test_output_truncate);
        suite_add_tcase(s, tc);
        tcase_set_timeout(tc_close, 10);
        tcase_add_test(tc_close, test_close_graceful);
        tcase_add_test(tc_close, test_close_drain_deadline);
        tcase_add_test(tc_close, test_abort);
        tcase_add_test(tc_close, test_flush_next_turn);
        tcase_add_test(tc_close, test_flush_blocked);
        tcase_add_test(tc_close, test_read_once_per_edge);
        suite_add_tcase(s, tc_close);
        return s;
}

int main(void) {
        return run_suite(stream_suite());
}
