/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for transport.c: both ends of a non-blocking socketpair driven
 * with poll() from one thread, TLS 1.3 with a certificate made by
 * tls_make_self_signed() (for an RSA key, and for an Ed25519 key from
 * tls_key_generate(), the relay's default), and plain mode.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/x509.h>

#include "macro.h"
#include "rsa.h"
#include "test-main.h"
#include "transport.h"
#include "util.h"

#define POLL_TIMEOUT_MS 10000
#define BIG (200 * 1024)        /* several TLS records each way */

static RsaKey *key;             /* made once in main(), before check forks */

static char tmpdir[] = "/tmp/test-transport-XXXXXX";
static char cert_path[sizeof(tmpdir) + 16], key_path[sizeof(tmpdir) + 16];
static gnutls_certificate_credentials_t creds;

static void tls_setup(void) {
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
        snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
        ck_assert_int_eq(rsa_key_save_private(key, key_path), 0);
        ck_assert_int_eq(tls_make_self_signed(key_path, "relay.example", cert_path), 0);
        ck_assert_int_eq(tls_credentials_load(cert_path, key_path, &creds), 0);
}

static void tls_teardown(void) {
        if (creds)
                gnutls_certificate_free_credentials(creds);
        creds = NULL;
        (void) unlink(cert_path);
        (void) unlink(key_path);
        (void) rmdir(tmpdir);
        strcpy(tmpdir, "/tmp/test-transport-XXXXXX");
}

static void make_pair(int fds[2]) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
}

static short events_for(Transport *t) {
        return transport_wants_write(t) ? POLLOUT : POLLIN;
}

static void wait_for(Transport *a, Transport *b) {
        struct pollfd p[2];
        nfds_t n = 0;

        if (a)
                p[n++] = (struct pollfd) { .fd = transport_fd(a), .events = events_for(a) };
        if (b)
                p[n++] = (struct pollfd) { .fd = transport_fd(b), .events = events_for(b) };
        ck_assert_int_gt(poll(p, n, POLL_TIMEOUT_MS), 0);
}

/* Run both handshakes to completion; either failing fails the test. */
static void handshake_both(Transport *s, Transport *c) {
        bool s_done = false, c_done = false;

        while (!s_done || !c_done) {
                const char *err = NULL;
                int r;

                if (!s_done) {
                        r = transport_handshake(s, &err);
                        if (r < 0 && r != -EAGAIN)
                                ck_abort_msg("server handshake: %d %s", r, err ? err : "");
                        s_done = r == 0;
                }
                if (!c_done) {
                        r = transport_handshake(c, &err);
                        if (r < 0 && r != -EAGAIN)
                                ck_abort_msg("client handshake: %d %s", r, err ? err : "");
                        c_done = r == 0;
                }
                if (!s_done || !c_done)
                        wait_for(s_done ? NULL : s, c_done ? NULL : c);
        }
}

/* One direction of a bulk transfer. */
typedef struct Flow {
        Transport *t;
        const uint8_t *out;
        size_t out_len, out_done, chunk;
        uint8_t *in;
        size_t in_len, in_have;
} Flow;

/* Returns whether anything moved. */
static bool flow_step(Flow *f) {
        bool progress = false;
        ssize_t n;

        while (f->out_done < f->out_len) {
                /* Same pointer and length after -EAGAIN, as GnuTLS wants. */
                n = transport_write(f->t, f->out + f->out_done, MIN(f->chunk, f->out_len - f->out_done));
                if (n == -EAGAIN)
                        break;
                ck_assert_int_gt(n, 0);
                f->out_done += (size_t) n;
                progress = true;
        }
        while (f->in_have < f->in_len) {
                n = transport_read(f->t, f->in + f->in_have, f->in_len - f->in_have);
                if (n == -EAGAIN)
                        break;
                ck_assert_int_gt(n, 0);
                f->in_have += (size_t) n;
                progress = true;
        }
        return progress;
}

static void exchange(Transport *s, Transport *c) {
        _cleanup_(freep) uint8_t *to_c = malloc(BIG), *to_s = malloc(BIG + 1);
        _cleanup_(freep) uint8_t *got_c = malloc(BIG), *got_s = malloc(BIG + 1);
        Flow fs, fc;

        ck_assert_ptr_nonnull(to_c);
        ck_assert_ptr_nonnull(to_s);
        ck_assert_ptr_nonnull(got_c);
        ck_assert_ptr_nonnull(got_s);
        ck_assert_int_eq(random_bytes(to_c, BIG), 0);
        ck_assert_int_eq(random_bytes(to_s, BIG + 1), 0);

        fs = (Flow) { .t = s, .out = to_c, .out_len = BIG, .chunk = 40000, .in = got_s, .in_len = BIG + 1 };
        fc = (Flow) { .t = c, .out = to_s, .out_len = BIG + 1, .chunk = 7777, .in = got_c, .in_len = BIG };

        while (fs.in_have < fs.in_len || fc.in_have < fc.in_len ||
               fs.out_done < fs.out_len || fc.out_done < fc.out_len) {
                bool a = flow_step(&fs), b = flow_step(&fc);

                if (!a && !b) {
                        struct pollfd p[2] = {
                                { .fd = transport_fd(s),
                                  .events = POLLIN | (fs.out_done < fs.out_len ? POLLOUT : 0) },
                                { .fd = transport_fd(c),
                                  .events = POLLIN | (fc.out_done < fc.out_len ? POLLOUT : 0) },
                        };
                        ck_assert_int_gt(poll(p, 2, POLL_TIMEOUT_MS), 0);
                }
        }

        ck_assert_mem_eq(got_s, to_s, BIG + 1);
        ck_assert_mem_eq(got_c, to_c, BIG);
}

/* After the peer went away: reads give 0 (orderly) once it is seen. */
static void expect_eof(Transport *t) {
        for (;;) {
                ssize_t n = transport_read(t, (uint8_t[16]) {}, 16);

                if (n == -EAGAIN) {
                        struct pollfd p = { .fd = transport_fd(t), .events = POLLIN };

                        ck_assert_int_gt(poll(&p, 1, POLL_TIMEOUT_MS), 0);
                        continue;
                }
                ck_assert_int_eq(n, 0);
                break;
        }
        /* And it stays at EOF. */
        ck_assert_int_eq(transport_read(t, (uint8_t[16]) {}, 16), 0);
}

START_TEST(test_tls_session) {
        _cleanup_(transport_freep) Transport *s = NULL, *c = NULL;
        uint8_t bs[CHANNEL_BINDING_LEN], bc[CHANNEL_BINDING_LEN], zero[CHANNEL_BINDING_LEN] = {};
        size_t ls = 0, lc = 0;
        int fds[2];

        make_pair(fds);
        ck_assert_int_eq(transport_new_server(fds[0], creds, &s), 0);
        ck_assert_int_eq(transport_new_client(fds[1], true, "relay.example", &c), 0);
        ck_assert(transport_is_tls(s));
        ck_assert(transport_is_tls(c));
        ck_assert_int_eq(transport_fd(s), fds[0]);

        /* No binding before the handshake. */
        ck_assert_int_lt(transport_channel_binding(c, bc, &lc), 0);

        handshake_both(s, c);

        ck_assert_int_eq(transport_channel_binding(s, bs, &ls), 0);
        ck_assert_int_eq(transport_channel_binding(c, bc, &lc), 0);
        ck_assert_uint_eq(ls, CHANNEL_BINDING_LEN);
        ck_assert_uint_eq(lc, CHANNEL_BINDING_LEN);
        ck_assert_mem_eq(bs, bc, CHANNEL_BINDING_LEN);
        ck_assert_mem_ne(bs, zero, CHANNEL_BINDING_LEN);
        /* Handshake again is a no-op. */
        ck_assert_int_eq(transport_handshake(s, NULL), 0);

        exchange(s, c);

        /* The client leaves (close_notify, then close): orderly EOF. */
        c = transport_free(c);
        expect_eof(s);
}
END_TEST

START_TEST(test_tls_bindings_differ) {
        uint8_t b[2][CHANNEL_BINDING_LEN];

        for (int i = 0; i < 2; i++) {
                _cleanup_(transport_freep) Transport *s = NULL, *c = NULL;
                uint8_t other[CHANNEL_BINDING_LEN];
                size_t len;
                int fds[2];

                make_pair(fds);
                ck_assert_int_eq(transport_new_server(fds[0], creds, &s), 0);
                ck_assert_int_eq(transport_new_client(fds[1], true, NULL, &c), 0);
                handshake_both(s, c);
                ck_assert_int_eq(transport_channel_binding(s, b[i], &len), 0);
                ck_assert_int_eq(transport_channel_binding(c, other, &len), 0);
                ck_assert_mem_eq(b[i], other, CHANNEL_BINDING_LEN);
        }
        /* Each session has its own binding. */
        ck_assert_mem_ne(b[0], b[1], CHANNEL_BINDING_LEN);
}
END_TEST

START_TEST(test_tls_peer_vanishes) {
        _cleanup_(transport_freep) Transport *s = NULL, *c = NULL;
        uint8_t buf[4096] = {};
        ssize_t n;
        int fds[2];

        make_pair(fds);
        ck_assert_int_eq(transport_new_server(fds[0], creds, &s), 0);
        ck_assert_int_eq(transport_new_client(fds[1], true, "127.0.0.1", &c), 0);
        handshake_both(s, c);

        /* Close the raw fd under the client: no close_notify. */
        ck_assert_int_eq(shutdown(transport_fd(c), SHUT_RDWR), 0);

        /* The server sees a truncation, not an orderly EOF... */
        for (;;) {
                n = transport_read(s, buf, sizeof(buf));
                if (n != -EAGAIN)
                        break;
                wait_for(s, NULL);
        }
        ck_assert_int_eq(n, -ECONNRESET);

        /* ...and writing fails with an error instead of killing us by
         * SIGPIPE (the default action is restored in main()). */
        do
                n = transport_write(s, buf, sizeof(buf));
        while (n > 0);
        ck_assert_int_lt(n, 0);
        ck_assert_int_ne(n, -EAGAIN);
}
END_TEST

START_TEST(test_tls_garbage_client) {
        /* _i selects what the "client" sends instead of a ClientHello. */
        static const char *const garbage[] = {
                "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                "\x16\x03\x01\x00\x05hello",                      /* a record header, then junk */
                "\x16\x03\x01\xff\xff",                           /* an oversized record */
                "",                                               /* nothing, then close */
        };
        _cleanup_(transport_freep) Transport *s = NULL;
        _cleanup_(closep) int peer = -EBADF;
        const char *err = NULL;
        int fds[2], r;

        make_pair(fds);
        peer = fds[1];
        ck_assert_int_eq(transport_new_server(fds[0], creds, &s), 0);
        ck_assert_int_eq(send(peer, garbage[_i], strlen(garbage[_i]), MSG_NOSIGNAL),
                         (ssize_t) strlen(garbage[_i]));
        ck_assert_int_eq(shutdown(peer, SHUT_WR), 0);

        for (;;) {
                r = transport_handshake(s, &err);
                if (r != -EAGAIN)
                        break;
                wait_for(s, NULL);
        }
        ck_assert_int_lt(r, 0);
        ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(test_tls_client_vs_garbage_server) {
        _cleanup_(transport_freep) Transport *c = NULL;
        _cleanup_(closep) int peer = -EBADF;
        const char *err = NULL;
        char hello[512];
        int fds[2], r;

        make_pair(fds);
        peer = fds[0];
        ck_assert_int_eq(transport_new_client(fds[1], true, "relay.example", &c), 0);
        ck_assert_int_eq(transport_handshake(c, &err), -EAGAIN);
        ck_assert(!transport_wants_write(c));
        /* Swallow the ClientHello, answer with nonsense. */
        ck_assert_int_gt(recv(peer, hello, sizeof(hello), 0), 0);
        ck_assert_int_eq(send(peer, "SSH-2.0-OpenSSH_9.2\r\n", 21, MSG_NOSIGNAL), 21);

        for (;;) {
                r = transport_handshake(c, &err);
                if (r != -EAGAIN)
                        break;
                wait_for(c, NULL);
        }
        ck_assert_int_lt(r, 0);
        ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(test_plain) {
        _cleanup_(transport_freep) Transport *s = NULL, *c = NULL;
        uint8_t b[CHANNEL_BINDING_LEN];
        size_t len = 99;
        int fds[2];

        make_pair(fds);
        ck_assert_int_eq(transport_new_server(fds[0], NULL, &s), 0);
        ck_assert_int_eq(transport_new_client(fds[1], false, "relay.example", &c), 0);
        ck_assert(!transport_is_tls(s));
        ck_assert(!transport_is_tls(c));

        ck_assert_int_eq(transport_handshake(s, NULL), 0);
        ck_assert_int_eq(transport_handshake(c, NULL), 0);
        ck_assert_int_eq(transport_channel_binding(s, b, &len), 0);
        ck_assert_uint_eq(len, 0);
        len = 99;
        ck_assert_int_eq(transport_channel_binding(c, b, &len), 0);
        ck_assert_uint_eq(len, 0);
        ck_assert(!transport_pending(s));

        exchange(s, c);

        c = transport_free(c);
        expect_eof(s);
}
END_TEST

START_TEST(test_plain_epipe) {
        _cleanup_(transport_freep) Transport *s = NULL;
        int fds[2];

        make_pair(fds);
        ck_assert_int_eq(transport_new_server(fds[0], NULL, &s), 0);
        safe_close(fds[1]);
        /* SIGPIPE is at its default (fatal) action: surviving is the test. */
        ck_assert_int_eq(transport_write(s, "x", 1), -EPIPE);
}
END_TEST

START_TEST(test_bad_fd) {
        Transport *t = (Transport *) 0x1;

        ck_assert_int_eq(transport_new_server(-1, NULL, &t), -EBADF);
        ck_assert_int_eq(transport_new_client(-1, true, NULL, &t), -EBADF);
        ck_assert_ptr_eq(t, (Transport *) 0x1);
}
END_TEST

START_TEST(test_self_signed_cert) {
        _cleanup_(freep) char *pem = NULL;
        gnutls_x509_crt_t crt;
        gnutls_pubkey_t pub;
        gnutls_datum_t d = {}, der = {};
        char cn[256];
        size_t cn_len = sizeof(cn);
        unsigned verify = 0;
        struct stat st;
        time_t now = time(NULL);
        FILE *f;
        long len;

        ck_assert_int_eq(stat(cert_path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0644);

        f = fopen(cert_path, "re");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
        len = ftell(f);
        ck_assert_int_gt(len, 0);
        rewind(f);
        pem = malloc((size_t) len);
        ck_assert_ptr_nonnull(pem);
        ck_assert_uint_eq(fread(pem, 1, (size_t) len, f), (size_t) len);
        fclose(f);
        ck_assert_int_eq(strncmp(pem, "-----BEGIN CERTIFICATE-----", 27), 0);

        d = (gnutls_datum_t) { (unsigned char *) pem, (unsigned) len };
        ck_assert_int_eq(gnutls_x509_crt_init(&crt), 0);
        ck_assert_int_eq(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
        ck_assert_int_eq(gnutls_x509_crt_get_version(crt), 3);
        ck_assert_int_eq(gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0,
                                                       cn, &cn_len), 0);
        ck_assert_str_eq(cn, "relay.example");
        ck_assert_int_eq(gnutls_x509_crt_get_signature_algorithm(crt), GNUTLS_SIGN_RSA_SHA256);
        ck_assert_int_le(gnutls_x509_crt_get_activation_time(crt), now);
        /* Ten years, give or take leap days and the hour of slack. */
        ck_assert_int_gt(gnutls_x509_crt_get_expiration_time(crt), now + 3649L * 86400);
        ck_assert_int_lt(gnutls_x509_crt_get_expiration_time(crt), now + 3651L * 86400);

        /* Self-signed, and by the identity key. */
        ck_assert_int_eq(gnutls_x509_crt_verify(crt, &crt, 1, 0, &verify), 0);
        ck_assert_uint_eq(verify, 0);
        ck_assert_int_eq(gnutls_pubkey_init(&pub), 0);
        ck_assert_int_eq(gnutls_pubkey_import_x509(pub, crt, 0), 0);
        ck_assert_int_eq(gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der), 0);
        ck_assert_uint_eq(der.size, key->spki_len);
        ck_assert_mem_eq(der.data, key->spki, key->spki_len);

        gnutls_free(der.data);
        gnutls_pubkey_deinit(pub);
        gnutls_x509_crt_deinit(crt);
}
END_TEST

START_TEST(test_cert_refusals) {
        gnutls_certificate_credentials_t c = NULL;
        char path[sizeof(tmpdir) + 32];

        /* A certificate is no private key to sign with. */
        snprintf(path, sizeof(path), "%s/other.pem", tmpdir);
        ck_assert_int_eq(chmod(cert_path, 0600), 0);
        ck_assert_int_eq(tls_make_self_signed(cert_path, "x", path), -EINVAL);
        ck_assert_int_eq(access(path, F_OK), -1);
        /* Nor is a key that others may read, or no key at all. */
        ck_assert_int_eq(chmod(key_path, 0640), 0);
        ck_assert_int_eq(tls_make_self_signed(key_path, "x", path), -EPERM);
        ck_assert_int_eq(chmod(key_path, 0600), 0);
        ck_assert_int_eq(tls_make_self_signed(path, "x", cert_path), -ENOENT);

        /* Missing files and mismatched pairs. */
        ck_assert_int_eq(tls_credentials_load(path, key_path, &c), -ENOENT);
        ck_assert_int_eq(tls_credentials_load(cert_path, cert_path, &c), -EINVAL);
        ck_assert_ptr_null(c);

        /* Unwritable destination. */
        ck_assert_int_eq(tls_make_self_signed(key_path, "x", "/nonexistent-dir/cert.pem"), -ENOENT);
        ck_assert_int_eq(tls_key_generate("/nonexistent-dir/tls.key"), -ENOENT);
}
END_TEST

/* The relay's default: an Ed25519 key of its own, a certificate signed
 * with it, and a client (which verifies nothing, see transport.c) that
 * completes TLS 1.3 with it. */
START_TEST(test_ed25519_session) {
        _cleanup_(transport_freep) Transport *s = NULL, *c = NULL;
        gnutls_certificate_credentials_t ed_creds = NULL;
        gnutls_x509_crt_t crt;
        gnutls_datum_t d = {};
        unsigned verify = 0, bits = 0;
        char ed_key[sizeof(tmpdir) + 16], ed_cert[sizeof(tmpdir) + 16];
        struct stat st;
        int fds[2];

        snprintf(ed_key, sizeof(ed_key), "%s/ed.key", tmpdir);
        snprintf(ed_cert, sizeof(ed_cert), "%s/ed.crt", tmpdir);
        ck_assert_int_eq(tls_key_generate(ed_key), 0);
        ck_assert_int_eq(stat(ed_key, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        ck_assert_int_eq(tls_make_self_signed(ed_key, "securechatd", ed_cert), 0);

        ck_assert_int_eq(gnutls_load_file(ed_cert, &d), 0);
        ck_assert_int_eq(gnutls_x509_crt_init(&crt), 0);
        ck_assert_int_eq(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
        ck_assert_int_eq(gnutls_x509_crt_get_pk_algorithm(crt, &bits), GNUTLS_PK_EDDSA_ED25519);
        ck_assert_int_eq(gnutls_x509_crt_get_signature_algorithm(crt), GNUTLS_SIGN_EDDSA_ED25519);
        ck_assert_int_eq(gnutls_x509_crt_verify(crt, &crt, 1, 0, &verify), 0);
        ck_assert_uint_eq(verify, 0);
        gnutls_x509_crt_deinit(crt);
        gnutls_free(d.data);

        ck_assert_int_eq(tls_credentials_load(ed_cert, ed_key, &ed_creds), 0);
        make_pair(fds);
        ck_assert_int_eq(transport_new_server(fds[0], ed_creds, &s), 0);
        ck_assert_int_eq(transport_new_client(fds[1], true, "relay.example", &c), 0);
        handshake_both(s, c);
        exchange(s, c);
        s = transport_free(s);
        gnutls_certificate_free_credentials(ed_creds);
        (void) unlink(ed_key);
        (void) unlink(ed_cert);
}
END_TEST


/* ---- reading ahead: the test stands between the two ends ---------------- *
 *
 * The client's socket goes to the test (raw[0]), the server's comes from it
 * (raw[1]), so that the test decides how the client's records reach the
 * server: whole, several in one piece, split anywhere, a byte at a time. */

typedef struct Middle {
        Transport *s, *c;
        int raw[2];             /* the client's peer, the server's peer */
} Middle;

#define MIDDLE_NULL { .raw = { -EBADF, -EBADF } }

static void middle_done(Middle *m) {
        m->s = transport_free(m->s);
        m->c = transport_free(m->c);
        m->raw[0] = safe_close(m->raw[0]);
        m->raw[1] = safe_close(m->raw[1]);
}

/* All that is waiting on fd (up to its EOF), appended to buf (at most cap). */
static size_t take_all(int fd, uint8_t *buf, size_t cap) {
        size_t have = 0;

        for (;;) {
                ssize_t n = read(fd, buf + have, cap - have);

                if ((n < 0 && errno == EAGAIN) || n == 0)
                        return have;
                ck_assert_int_gt(n, 0);
                have += (size_t) n;
                ck_assert_uint_lt(have, cap);
        }
}

static void put_all(int fd, const uint8_t *p, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EAGAIN) {
                        struct pollfd pf = { .fd = fd, .events = POLLOUT };

                        ck_assert_int_gt(poll(&pf, 1, POLL_TIMEOUT_MS), 0);
                        continue;
                }
                ck_assert_int_gt(n, 0);
                p += n;
                len -= (size_t) n;
        }
}

/* Move what either end wrote to the other, in one piece. */
static void middle_shuttle(Middle *m) {
        static uint8_t buf[256 * 1024];
        size_t n;

        n = take_all(m->raw[0], buf, sizeof(buf));
        put_all(m->raw[1], buf, n);
        n = take_all(m->raw[1], buf, sizeof(buf));
        put_all(m->raw[0], buf, n);
}

/* Connect through the middle; once the client is done, it writes early
 * (may be NULL), which reaches the server together with the client's last
 * handshake message. */
static void middle_setup(Middle *m, const char *early) {
        bool s_done = false, c_done = false;
        int a[2], b[2];

        make_pair(a);
        make_pair(b);
        *m = (Middle) { .raw = { a[1], b[0] } };
        ck_assert_int_eq(transport_new_server(b[1], creds, &m->s), 0);
        ck_assert_int_eq(transport_new_client(a[0], true, "relay.example", &m->c), 0);

        while (!s_done || !c_done) {
                int r;

                if (!s_done) {
                        r = transport_handshake(m->s, NULL);
                        ck_assert(r == 0 || r == -EAGAIN);
                        s_done = r == 0;
                }
                if (!c_done) {
                        r = transport_handshake(m->c, NULL);
                        ck_assert(r == 0 || r == -EAGAIN);
                        c_done = r == 0;
                        if (c_done && early)
                                ck_assert_int_eq(transport_write(m->c, early, strlen(early)),
                                                 (ssize_t) strlen(early));
                }
                middle_shuttle(m);
        }
}

/* The records the client makes of each message, as bytes on the wire. */
static size_t middle_records(Middle *m, const char *const *msgs, size_t n_msgs,
                             uint8_t *wire, size_t cap) {
        for (size_t i = 0; i < n_msgs; i++)
                ck_assert_int_eq(transport_write(m->c, msgs[i], strlen(msgs[i])),
                                 (ssize_t) strlen(msgs[i]));
        return take_all(m->raw[0], wire, cap);
}

static int kernel_queued(Transport *t) {
        int n = -1;

        ck_assert_int_eq(ioctl(transport_fd(t), FIONREAD, &n), 0);
        return n;
}

/* One read by the server: the message expected, or -EAGAIN (msg NULL). */
static void expect_read(Transport *s, const char *msg) {
        char buf[64];
        ssize_t n = transport_read(s, buf, sizeof(buf));

        if (!msg) {
                ck_assert_int_eq(n, -EAGAIN);
                /* Nothing is left where epoll cannot see it. */
                ck_assert(!transport_pending(s));
                return;
        }
        ck_assert_int_eq(n, (ssize_t) strlen(msg));
        ck_assert_mem_eq(buf, msg, strlen(msg));
}

static const char *const three[] = { "send one", "ack", "send three, a little longer" };

#define WIRE_MAX 4096

/* Connected, and the client's records of three[] taken off the wire. */
static size_t middle_three(Middle *m, uint8_t wire[static WIRE_MAX]) {
        middle_setup(m, NULL);
        return middle_records(m, three, ELEMENTSOF(three), wire, WIRE_MAX);
}

START_TEST(test_read_ahead_several) {
        _cleanup_(middle_done) Middle m = MIDDLE_NULL;
        uint8_t wire[WIRE_MAX];
        size_t len = middle_three(&m, wire);

        put_all(m.raw[1], wire, len);

        /* The first read took all three records from the kernel; the other
         * two are pending, which poll would not say. */
        expect_read(m.s, three[0]);
        ck_assert_int_eq(kernel_queued(m.s), 0);
        ck_assert(transport_pending(m.s));
        expect_read(m.s, three[1]);
        ck_assert(transport_pending(m.s));
        expect_read(m.s, three[2]);
        ck_assert(!transport_pending(m.s));
        expect_read(m.s, NULL);
}
END_TEST

/* transport_read_all(): a read left the socket empty and nothing pending,
 * so that an edge-triggered reader (daemon/stream.c) may stop without the
 * recv() that would only say EAGAIN. A recv() that filled the read-ahead
 * buffer may have left more in the kernel: not then. */
START_TEST(test_read_all) {
        _cleanup_(middle_done) Middle m = MIDDLE_NULL;
        _cleanup_(freep) uint8_t *big = NULL, *bulk = malloc(64 * 1024);
        uint8_t wire[WIRE_MAX], buf[20000];
        size_t len = middle_three(&m, wire), n_bulk;

        ck_assert(!transport_read_all(m.s));
        put_all(m.raw[1], wire, len);
        expect_read(m.s, three[0]);
        ck_assert(!transport_read_all(m.s));    /* two records pending */
        expect_read(m.s, three[1]);
        ck_assert(!transport_read_all(m.s));
        /* Only a read's own recv() tells: records taken from what an
         * earlier recv() kept say nothing of bytes that came since, whose
         * EPOLLIN a reader may have been given before this read. */
        len = middle_records(&m, three, 1, wire, sizeof(wire));
        put_all(m.raw[1], wire, len);
        expect_read(m.s, three[2]);
        ck_assert(!transport_read_all(m.s));
        expect_read(m.s, three[0]);
        ck_assert(transport_read_all(m.s));

        /* It tells of the last read only: what came after is read when
         * asked, as before. */
        len = middle_records(&m, three, 1, wire, sizeof(wire));
        put_all(m.raw[1], wire, len);
        ck_assert(transport_read_all(m.s));
        expect_read(m.s, three[0]);
        ck_assert(transport_read_all(m.s));

        /* Records of 16 KiB: a recv() takes no more than one and a bit. */
        ck_assert_ptr_nonnull(bulk);
        big = calloc(1, 40000);
        ck_assert_ptr_nonnull(big);
        for (size_t sent = 0; sent < 40000;) {
                ssize_t n = transport_write(m.c, big + sent, 40000 - sent);

                ck_assert_int_gt(n, 0);
                sent += (size_t) n;
        }
        n_bulk = take_all(m.raw[0], bulk, 64 * 1024);
        put_all(m.raw[1], bulk, n_bulk);
        ck_assert_int_eq(transport_read(m.s, buf, sizeof(buf)), 16384);
        ck_assert(!transport_read_all(m.s));
        ck_assert_int_gt(kernel_queued(m.s), 0);
}
END_TEST

START_TEST(test_read_ahead_split) {
        _cleanup_(middle_done) Middle m = MIDDLE_NULL;
        uint8_t wire[WIRE_MAX];
        size_t len, first, cut;

        middle_setup(&m, NULL);
        first = middle_records(&m, three, 1, wire, sizeof(wire));
        len = first + middle_records(&m, three + 1, 2, wire + first, sizeof(wire) - first);

        /* Half of the first record: nothing to return yet, and nothing
         * kept back from GnuTLS. */
        put_all(m.raw[1], wire, first / 2);
        expect_read(m.s, NULL);
        /* Its rest and the next record's header but one byte. */
        cut = first + 4;
        put_all(m.raw[1], wire + first / 2, cut - first / 2);
        expect_read(m.s, three[0]);
        expect_read(m.s, NULL);
        /* The rest, cut inside the last record. */
        put_all(m.raw[1], wire + cut, len - cut - 3);
        expect_read(m.s, three[1]);
        expect_read(m.s, NULL);
        put_all(m.raw[1], wire + len - 3, 3);
        expect_read(m.s, three[2]);
        expect_read(m.s, NULL);
}
END_TEST

/* A peer that sends its records a byte at a time: each comes out with its
 * last byte, and nothing before. */
START_TEST(test_read_ahead_dribble) {
        _cleanup_(middle_done) Middle m = MIDDLE_NULL;
        uint8_t wire[WIRE_MAX];
        size_t first, len;

        middle_setup(&m, NULL);
        first = middle_records(&m, three, 1, wire, sizeof(wire));
        len = first + middle_records(&m, three + 1, 1, wire + first, sizeof(wire) - first);

        for (size_t i = 0; i < len; i++) {
                put_all(m.raw[1], wire + i, 1);
                if (i + 1 == first)
                        expect_read(m.s, three[0]);
                else if (i + 1 == len)
                        expect_read(m.s, three[1]);
                expect_read(m.s, NULL);
                ck_assert_int_eq(kernel_queued(m.s), 0);
        }
}
END_TEST

/* The peer's records, then (_i = 0) its close_notify and EOF or (_i = 1)
 * EOF alone, all in one piece: every record is read before the orderly
 * EOF or the truncation. */
START_TEST(test_read_ahead_eof) {
        _cleanup_(middle_done) Middle m = MIDDLE_NULL;
        uint8_t wire[WIRE_MAX];
        size_t len = middle_three(&m, wire);

        if (_i == 0) {
                ck_assert_int_eq(transport_shutdown(m.c), 0);
                len += take_all(m.raw[0], wire + len, sizeof(wire) - len);
        }
        put_all(m.raw[1], wire, len);
        ck_assert_int_eq(shutdown(m.raw[1], SHUT_WR), 0);

        for (size_t i = 0; i < ELEMENTSOF(three); i++)
                expect_read(m.s, three[i]);
        if (_i == 0)
                expect_eof(m.s);
        else
                ck_assert_int_eq(transport_read(m.s, wire, sizeof(wire)), -ECONNRESET);
}
END_TEST

/* What the client sends right after its handshake arrives with its last
 * handshake message; the server's handshake must leave it in the kernel,
 * where the poll or epoll_ctl() of whoever turns to reading next sees it
 * (the relay's sockets are edge-triggered). */
START_TEST(test_read_ahead_not_in_handshake) {
        _cleanup_(middle_done) Middle m = MIDDLE_NULL;
        struct pollfd p;

        middle_setup(&m, "auth");
        ck_assert(!transport_pending(m.s));
        ck_assert_int_gt(kernel_queued(m.s), 0);
        p = (struct pollfd) { .fd = transport_fd(m.s), .events = POLLIN };
        ck_assert_int_eq(poll(&p, 1, 0), 1);
        expect_read(m.s, "auth");
        expect_read(m.s, NULL);
}
END_TEST

/* Records larger than one read, both ways, and the client's side of the
 * read-ahead, through the middle. */
START_TEST(test_read_ahead_bulk) {
        _cleanup_(middle_done) Middle m = MIDDLE_NULL;
        _cleanup_(freep) uint8_t *out = malloc(BIG), *in = malloc(BIG);
        size_t sent = 0, got = 0;

        ck_assert_ptr_nonnull(out);
        ck_assert_ptr_nonnull(in);
        ck_assert_int_eq(random_bytes(out, BIG), 0);
        middle_setup(&m, NULL);

        while (got < BIG) {
                ssize_t n;

                if (sent < BIG) {
                        n = transport_write(m.s, out + sent, MIN((size_t) 50000, BIG - sent));
                        ck_assert(n > 0 || n == -EAGAIN);
                        if (n > 0)
                                sent += (size_t) n;
                }
                middle_shuttle(&m);
                do {
                        n = transport_read(m.c, in + got, BIG - got);
                        ck_assert(n > 0 || n == -EAGAIN);
                        if (n > 0)
                                got += (size_t) n;
                } while (n > 0 && got < BIG);
        }
        ck_assert_mem_eq(in, out, BIG);
        ck_assert(!transport_pending(m.c));
}
END_TEST

/* ---- post-handshake messages: a peer that is not this transport -------- *
 *
 * Other TLS stacks send handshake messages after the handshake: a TLS 1.3
 * server its session tickets (OpenSSL two, at once), either end a
 * KeyUpdate. GnuTLS handles one and says "again", though the record after
 * it may already be read ahead: a reader that polls then waits for bytes
 * that have come. The peer here is a bare GnuTLS session. */

/* A server with the test's credentials and session tickets, or a client
 * with empty credentials (*client_creds, the caller's to free): it checks
 * nothing, the transport's end is what is tested. */
static gnutls_session_t raw_session(int fd, unsigned flags, gnutls_datum_t *ticket_key,
                                    gnutls_certificate_credentials_t *client_creds) {
        gnutls_session_t g;

        ck_assert_int_eq(gnutls_init(&g, flags | GNUTLS_NONBLOCK), 0);
        ck_assert_int_eq(gnutls_priority_set_direct(g, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL), 0);
        if (flags & GNUTLS_SERVER) {
                ck_assert_int_eq(gnutls_credentials_set(g, GNUTLS_CRD_CERTIFICATE, creds), 0);
                ck_assert_int_eq(gnutls_session_ticket_enable_server(g, ticket_key), 0);
        } else {
                ck_assert_int_eq(gnutls_certificate_allocate_credentials(client_creds), 0);
                ck_assert_int_eq(gnutls_credentials_set(g, GNUTLS_CRD_CERTIFICATE, *client_creds), 0);
        }
        gnutls_transport_set_int(g, fd);
        return g;
}

/* Both handshakes, the transport's t and the bare g's. */
static void handshake_raw(Transport *t, gnutls_session_t g) {
        bool t_done = false, g_done = false;

        while (!t_done || !g_done) {
                /* Each waits for what the other writes. */
                struct pollfd p[2] = {
                        { .fd = transport_fd(t), .events = t_done ? 0 : POLLIN },
                        { .fd = gnutls_transport_get_int(g), .events = g_done ? 0 : POLLIN },
                };
                int r;

                if (!g_done) {
                        r = gnutls_handshake(g);
                        ck_assert_msg(r == 0 || r == GNUTLS_E_AGAIN, "bare handshake: %s", gnutls_strerror(r));
                        g_done = r == 0;
                }
                if (!t_done) {
                        r = transport_handshake(t, NULL);
                        ck_assert(r == 0 || r == -EAGAIN);
                        t_done = r == 0;
                }
                if (!t_done || !g_done)
                        ck_assert_int_gt(poll(p, 2, POLL_TIMEOUT_MS), 0);
        }
}

/* _i == 0: a bare server sends session tickets and then a frame, as the
 * relay's hello comes after them; _i == 1: a bare client sends a
 * KeyUpdate and then a frame. Both reach the transport in one piece: one
 * read returns the frame, not -EAGAIN. A flood instead ends the read in
 * an error (the relay closes such a session, scctl gives up) rather than
 * keeping the reader: _i == 2, a hundred KeyUpdates from a client (GnuTLS
 * refuses them itself), _i == 3, a hundred session tickets from a server
 * (the transport's own bound). */
START_TEST(test_post_handshake_message) {
        static const char msg[] = "hello after the handshake";
        gnutls_datum_t ticket_key = {};
        gnutls_certificate_credentials_t client_creds = NULL;
        gnutls_session_t g;
        Transport *t = NULL;
        char buf[64];
        int fds[2], queued = 0;
        int key_updates = _i == 1 ? 1 : _i == 2 ? 100 : 0, tickets = _i == 3 ? 100 : 0;

        make_pair(fds);
        ck_assert_int_eq(gnutls_session_ticket_key_generate(&ticket_key), 0);
        if (_i == 0 || _i == 3) {
                ck_assert_int_eq(transport_new_client(fds[0], true, "relay.example", &t), 0);
                g = raw_session(fds[1], GNUTLS_SERVER, &ticket_key, NULL);
        } else {
                ck_assert_int_eq(transport_new_server(fds[0], creds, &t), 0);
                g = raw_session(fds[1], GNUTLS_CLIENT, NULL, &client_creds);
        }
        handshake_raw(t, g);
        for (int k = 0; k < key_updates; k++)
                ck_assert_int_eq(gnutls_session_key_update(g, 0), 0);
        for (int k = 0; k < tickets; k++)
                ck_assert_int_eq(gnutls_session_ticket_send(g, 1, 0), 0);
        ck_assert_int_eq(gnutls_record_send(g, msg, strlen(msg)), (ssize_t) strlen(msg));
        /* All of it in the transport's socket before it reads. */
        ck_assert_int_eq(ioctl(fds[0], FIONREAD, &queued), 0);
        ck_assert_int_gt(queued, (int) strlen(msg) + 22);

        if (_i >= 2)
                ck_assert_int_eq(transport_read(t, buf, sizeof(buf)), -EPROTO);
        else {
                ck_assert_int_eq(transport_read(t, buf, sizeof(buf)), (ssize_t) strlen(msg));
                ck_assert_mem_eq(buf, msg, strlen(msg));
                ck_assert_int_eq(transport_read(t, buf, sizeof(buf)), -EAGAIN);
                ck_assert(!transport_pending(t));
        }

        gnutls_deinit(g);
        if (client_creds)
                gnutls_certificate_free_credentials(client_creds);
        transport_free(t);
        safe_close(fds[1]);
        gnutls_free(ticket_key.data);
}
END_TEST

static Suite *transport_suite(void) {
        Suite *s = suite_create("transport");
        TCase *tc;

        tc = tcase_create("tls");
        tcase_add_checked_fixture(tc, tls_setup, tls_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_self_signed_cert);
        tcase_add_test(tc, test_cert_refusals);
        tcase_add_test(tc, test_ed25519_session);
        tcase_add_test(tc, test_tls_session);
        tcase_add_test(tc, test_tls_bindings_differ);
        tcase_add_test(tc, test_tls_peer_vanishes);
        tcase_add_loop_test(tc, test_tls_garbage_client, 0, 4);
        tcase_add_test(tc, test_tls_client_vs_garbage_server);
        tcase_add_test(tc, test_read_ahead_several);
        tcase_add_test(tc, test_read_all);
        tcase_add_test(tc, test_read_ahead_split);
        tcase_add_test(tc, test_read_ahead_dribble);
        tcase_add_loop_test(tc, test_read_ahead_eof, 0, 2);
        tcase_add_test(tc, test_read_ahead_not_in_handshake);
        tcase_add_test(tc, test_read_ahead_bulk);
        tcase_add_loop_test(tc, test_post_handshake_message, 0, 4);
        suite_add_tcase(s, tc);

        tc = tcase_create("plain");
        tcase_add_test(tc, test_plain);
        tcase_add_test(tc, test_plain_epipe);
        tcase_add_test(tc, test_bad_fd);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        int r;

        /* The transport must not rely on SIGPIPE being ignored. */
        signal(SIGPIPE, SIG_DFL);

        if (rsa_key_generate(2048, &key) < 0) {
                fprintf(stderr, "rsa_key_generate failed\n");
                return EXIT_FAILURE;
        }
        r = run_suite(transport_suite());
        rsa_key_free(key);
        return r;
}
