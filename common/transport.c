/* SPDX-License-Identifier: MIT */
/*
 * The byte transport of a chat connection: GnuTLS (TLS 1.3 only) or plain
 * TCP on a non-blocking socket.
 *
 * The client does not verify the server's certificate, on purpose: what a
 * client trusts is the relay's identity key, pinned on first use, and the
 * handshake transcript signed with that key includes the RFC 9266
 * tls-exporter value of this very TLS session. A man in the middle holding
 * another certificate therefore produces a different binding, and the
 * server's signature over the transcript does not verify. The certificate
 * only has to exist so that TLS can run.
 *
 * SIGPIPE: every send goes out with MSG_NOSIGNAL (GNUTLS_NO_SIGNAL makes
 * GnuTLS do the same), so a peer that vanishes yields -EPIPE, never a
 * signal.
 *
 * On failure, transport_new_*() leave the fd with the caller.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/x509.h>

#include "macro.h"
#include "fileio.h"
#include "transport.h"
#include "util.h"

/* TLS 1.3 and nothing else; NORMAL supplies the usual ciphers and groups. */
#define TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3"

#define CERT_VALIDITY ((time_t) 3650 * 24 * 3600)      /* ten years */
#define CERT_SERIAL_LEN 16

/* One recv() takes up to this much: a TLS 1.3 record of the largest size
 * (5 bytes of header, 2^14 of plain text, at most 256 of expansion), or
 * the several small ones a client sends at once. */
#define TRANSPORT_READ_MAX (5 + 16384 + 256)

/* Records one read may pass over (warning alerts, post-handshake messages)
 * before it calls the peer a flood: OpenSSL sends two session tickets. */
#define TRANSPORT_SKIP_MAX 16

struct Transport {
        int fd;
        /* Bytes a recv() returned beyond what GnuTLS asked for, in[in_head]
         * to in[in_len], served to it before the socket is read again (see
         * transport_pull()). in is NULL whenever none are left, so that an
         * idle session holds nothing; the sizes are 16 bits so that they
         * fit beside fd and the struct stays in the malloc size class it
         * had without them (thousands of idle sessions). */
        uint16_t in_head, in_len;
        uint8_t *in;
        gnutls_session_t session;                   /* NULL: plain TCP */
        gnutls_certificate_credentials_t own_creds; /* client side only */
        bool handshake_done;
        bool wants_write;
        bool pull_enomem;       /* the last pull failed for want of memory */
        bool recv_short;        /* this read's recv() took less than it could */
};

_Static_assert(TRANSPORT_READ_MAX <= UINT16_MAX, "Transport.in_len is 16 bits");

DEFINE_TRIVIAL_CLEANUP_FUNC(gnutls_x509_crt_t, gnutls_x509_crt_deinit);
DEFINE_TRIVIAL_CLEANUP_FUNC(gnutls_x509_privkey_t, gnutls_x509_privkey_deinit);
DEFINE_TRIVIAL_CLEANUP_FUNC(gnutls_certificate_credentials_t, gnutls_certificate_free_credentials);

Transport *transport_free(Transport *t) {
        if (!t)
                return NULL;

        if (t->session) {
                /* One non-blocking attempt at close_notify, so that the peer
                 * sees an orderly EOF rather than a truncation; whatever it
                 * returns, we are closing. */
                if (t->handshake_done)
                        (void) gnutls_bye(t->session, GNUTLS_SHUT_WR);
                gnutls_deinit(t->session);
        }
        free(t->in);
        if (t->own_creds)
                gnutls_certificate_free_credentials(t->own_creds);
        safe_close(t->fd);
        free(t);
        return NULL;
}

static int transport_alloc(int fd, Transport **ret) {
        Transport *t;

        if (fd < 0)
                return -EBADF;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->fd = fd;
        *ret = t;
        return 0;
}

static size_t transport_buffered(const Transport *t) {
        return (size_t) t->in_len - t->in_head;
}

/* GnuTLS's pull function. Its default reads a record in two recv() calls,
 * the 5-byte header and then the body, and needs a third to learn that
 * nothing is left: most of a relay's system calls. Here one recv() takes
 * what is waiting, up to TRANSPORT_READ_MAX, into a scratch buffer shared
 * by every transport of the thread; GnuTLS gets what it asked for and only
 * the rest is kept, in memory of its size, until GnuTLS has taken it.
 *
 * The kept bytes are invisible to poll and epoll, like the records GnuTLS
 * decrypted but not yet returned: transport_pending() counts them, and a
 * pull returns EAGAIN only with none kept, so a reader that stops at
 * -EAGAIN (edge-triggered or not) leaves nothing behind.
 *
 * Until the handshake is done, a pull reads exactly what GnuTLS asks for,
 * as the default does: whatever the peer sends after its last handshake
 * message then stays in the kernel, where the poll or epoll_ctl() of the
 * caller that turns from the handshake to reading finds it. */
static ssize_t transport_pull(gnutls_transport_ptr_t ptr, void *data, size_t len) {
        static _Thread_local uint8_t scratch[TRANSPORT_READ_MAX];
        Transport *t = ptr;
        size_t take;
        ssize_t n;

        t->pull_enomem = false;

        if (transport_buffered(t) > 0) {
                take = MIN(len, transport_buffered(t));
                memcpy(data, t->in + t->in_head, take);
                t->in_head += (uint16_t) take;
                if (t->in_head == t->in_len) {
                        free(t->in);
                        t->in = NULL;
                        t->in_head = t->in_len = 0;
                }
                return (ssize_t) take;
        }

        if (!t->handshake_done) {
                n = recv(t->fd, data, len, 0);
                if (n < 0)
                        gnutls_transport_set_errno(t->session, errno);
                return n;
        }

        n = recv(t->fd, scratch, sizeof(scratch), 0);
        t->recv_short = n > 0 && (size_t) n < sizeof(scratch);
        if (n <= 0) {
                /* EAGAIN, EINTR and the rest go to GnuTLS as they came, as
                 * its default pull leaves them; 0 is EOF. */
                if (n < 0)
                        gnutls_transport_set_errno(t->session, errno);
                return n;
        }

        take = MIN(len, (size_t) n);
        memcpy(data, scratch, take);
        if (take < (size_t) n) {
                t->in = malloc((size_t) n - take);
                if (!t->in) {
                        /* The bytes are gone from the kernel: the
                         * connection cannot go on. */
                        t->pull_enomem = true;
                        gnutls_transport_set_errno(t->session, ENOMEM);
                        return -1;
                }
                memcpy(t->in, scratch + take, (size_t) n - take);
                t->in_head = 0;
                t->in_len = (uint16_t) (n - (ssize_t) take);
        }
        return (ssize_t) take;
}

/* Required with a custom pull function (GnuTLS calls it only for blocking
 * sessions or with timeouts set, neither of which happens here): ready at
 * once with bytes kept, otherwise the socket decides. */
static int transport_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms) {
        Transport *t = ptr;
        struct pollfd p = { .fd = t->fd, .events = POLLIN };
        int r;

        if (transport_buffered(t) > 0)
                return 1;
        r = poll(&p, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int) MIN(ms, (unsigned) INT_MAX));
        if (r < 0)
                gnutls_transport_set_errno(t->session, errno);
        return r;
}

static int session_setup(Transport *t, unsigned flags, gnutls_certificate_credentials_t creds) {
        int r;

        /* No session tickets: nothing here resumes sessions. */
        r = gnutls_init(&t->session,
                        flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS);
        if (r < 0) {
                t->session = NULL;
                return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EPROTO;
        }

        r = gnutls_priority_set_direct(t->session, TLS_PRIORITY, NULL);
        if (r < 0)
                return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EPROTO;
        r = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, creds);
        if (r < 0)
                return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EPROTO;

        /* GnuTLS's own push functions write to the fd, which they take as
         * the pointer gnutls_transport_set_int() would make of it; reads
         * go through transport_pull(). */
        gnutls_transport_set_ptr2(t->session, t, (gnutls_transport_ptr_t) (intptr_t) t->fd);
        gnutls_transport_set_pull_function(t->session, transport_pull);
        gnutls_transport_set_pull_timeout_function(t->session, transport_pull_timeout);
        return 0;
}

/* A host name that may go into SNI: not an address literal, and made of
 * DNS characters (RFC 6066 forbids literal addresses in server_name). */
static bool sni_name_ok(const char *name) {
        struct in6_addr a6;
        struct in_addr a4;
        size_t len;

        if (!name)
                return false;
        len = strlen(name);
        if (len == 0 || len > 253)
                return false;
        if (inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1)
                return false;
        return strspn(name, "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "0123456789.-") == len;
}

int transport_new_server(int fd, gnutls_certificate_credentials_t creds, Transport **ret) {
        Transport *t;
        int r;

        r = transport_alloc(fd, &t);
        if (r < 0)
                return r;

        if (creds) {
                r = session_setup(t, GNUTLS_SERVER, creds);
                if (r < 0) {
                        t->fd = -EBADF;
                        transport_free(t);
                        return r;
                }
        }

        *ret = t;
        return 0;
}

int transport_new_client(int fd, bool tls, const char *server_name, Transport **ret) {
        Transport *t;
        int r;

        r = transport_alloc(fd, &t);
        if (r < 0)
                return r;

        if (tls) {
                /* Empty credentials: we present no certificate and verify
                 * none (see the top of this file). */
                r = gnutls_certificate_allocate_credentials(&t->own_creds);
                if (r < 0) {
                        t->own_creds = NULL;
                        r = -ENOMEM;
                        goto fail;
                }
                r = session_setup(t, GNUTLS_CLIENT, t->own_creds);
                if (r < 0)
                        goto fail;
                if (sni_name_ok(server_name)) {
                        r = gnutls_server_name_set(t->session, GNUTLS_NAME_DNS,
                                                   server_name, strlen(server_name));
                        if (r < 0) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
        }

        *ret = t;
        return 0;

fail:
        t->fd = -EBADF;
        transport_free(t);
        return r;
}

int transport_fd(const Transport *t) {
        return t->fd;
}

bool transport_is_tls(const Transport *t) {
        return t->session != NULL;
}

static bool gnutls_again(int r) {
        return r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED;
}

int transport_handshake(Transport *t, const char **ret_error) {
        int r;

        if (!t->session || t->handshake_done)
                return 0;

        for (;;) {
                r = gnutls_handshake(t->session);
                if (r >= 0)
                        break;
                if (gnutls_again(r)) {
                        t->wants_write = gnutls_record_get_direction(t->session) == 1;
                        return -EAGAIN;
                }
                /* Warning alerts and the like: keep going. */
                if (!gnutls_error_is_fatal(r))
                        continue;

                if (ret_error)
                        *ret_error = gnutls_strerror(r);
                if (r == GNUTLS_E_PREMATURE_TERMINATION)
                        return -ECONNRESET;
                if (r == GNUTLS_E_MEMORY_ERROR)
                        return -ENOMEM;
                return -EPROTO;
        }

        /* The priority string allows nothing else, but the binding's
         * meaning depends on it, so check rather than assume. */
        if (gnutls_protocol_get_version(t->session) != GNUTLS_TLS1_3) {
                if (ret_error)
                        *ret_error = "TLS 1.3 not negotiated";
                return -EPROTO;
        }

        t->handshake_done = true;
        t->wants_write = false;
        return 0;
}

static ssize_t map_gnutls_io_error(Transport *t, ssize_t r) {
        if (gnutls_again((int) r)) {
                t->wants_write = gnutls_record_get_direction(t->session) == 1;
                return -EAGAIN;
        }
        switch (r) {
        case GNUTLS_E_PREMATURE_TERMINATION:
                return -ECONNRESET;
        case GNUTLS_E_PUSH_ERROR:
                return -EPIPE;
        case GNUTLS_E_PULL_ERROR:
                return t->pull_enomem ? -ENOMEM : -ECONNRESET;
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        default:
                return -EPROTO;
        }
}

ssize_t transport_read(Transport *t, void *buf, size_t len) {
        ssize_t n;

        if (!t->session) {
                n = read(t->fd, buf, len);
                if (n >= 0)
                        return n;
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                        t->wants_write = false;
                        return -EAGAIN;
                }
                return -errno;
        }

        /* Only a recv() of this read tells that the socket is empty: one of
         * an earlier read says nothing of bytes that came since, and the
         * EPOLLIN they raised may have been dispatched already, before
         * this read took a record that recv() had kept. */
        t->recv_short = false;
        for (unsigned skipped = 0;; skipped++) {
                n = gnutls_record_recv(t->session, buf, len);
                if (n >= 0)
                        return n;
                /* Non-fatal conditions (a warning alert) consumed a record:
                 * try the next one. So did "again" after a post-handshake
                 * message (a session ticket, a KeyUpdate: other stacks send
                 * them) when the next record is read ahead already, which
                 * no poll would report. A peer sends a few of those; one
                 * that sends nothing else would keep the reader here for
                 * as long as it likes, so a flood is an error. */
                if (gnutls_again((int) n) ? transport_pending(t) : !gnutls_error_is_fatal((int) n)) {
                        if (skipped < TRANSPORT_SKIP_MAX)
                                continue;
                        return -EPROTO;
                }
                return map_gnutls_io_error(t, n);
        }
}

ssize_t transport_write(Transport *t, const void *buf, size_t len) {
        ssize_t n;

        if (!t->session) {
                n = send(t->fd, buf, len, MSG_NOSIGNAL);
                if (n >= 0)
                        return n;
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                        t->wants_write = true;
                        return -EAGAIN;
                }
                return -errno;
        }

        n = gnutls_record_send(t->session, buf, len);
        if (n >= 0)
                return n;
        return map_gnutls_io_error(t, n);
}

int transport_shutdown(Transport *t) {
        if (t->session && t->handshake_done) {
                int r = gnutls_bye(t->session, GNUTLS_SHUT_WR);

                if (r < 0)
                        return (int) map_gnutls_io_error(t, r);
        }
        if (shutdown(t->fd, SHUT_WR) < 0)
                return -errno;
        return 0;
}

bool transport_pending(const Transport *t) {
        return t->session && (gnutls_record_check_pending(t->session) > 0 || transport_buffered(t) > 0);
}

bool transport_read_all(const Transport *t) {
        /* Set by a pull after the handshake only. */
        return t->recv_short && !transport_pending(t);
}

bool transport_wants_write(const Transport *t) {
        return t->wants_write;
}

int transport_channel_binding(Transport *t, uint8_t out[CHANNEL_BINDING_LEN], size_t *ret_len) {
        gnutls_datum_t cb = { NULL, 0 };
        int r;

        if (!t->session) {
                *ret_len = 0;
                return 0;
        }
        if (!t->handshake_done)
                return -EBUSY;

        r = gnutls_session_channel_binding(t->session, GNUTLS_CB_TLS_EXPORTER, &cb);
        if (r < 0)
                return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EPROTO;
        if (cb.size != CHANNEL_BINDING_LEN) {
                gnutls_free(cb.data);
                return -EPROTO;
        }

        memcpy(out, cb.data, CHANNEL_BINDING_LEN);
        gnutls_free(cb.data);
        *ret_len = CHANNEL_BINDING_LEN;
        return 0;
}

int tls_credentials_load(const char *cert_path, const char *key_path,
                         gnutls_certificate_credentials_t *ret) {
        _cleanup_(gnutls_certificate_free_credentialsp)
                gnutls_certificate_credentials_t creds = NULL;
        int r;

        /* GnuTLS reports unreadable files only as GNUTLS_E_FILE_ERROR; ask
         * the kernel first so the caller can log a real reason. */
        if (access(cert_path, R_OK) < 0 || access(key_path, R_OK) < 0)
                return -errno;

        r = gnutls_certificate_allocate_credentials(&creds);
        if (r < 0) {
                creds = NULL;
                return -ENOMEM;
        }

        r = gnutls_certificate_set_x509_key_file(creds, cert_path, key_path, GNUTLS_X509_FMT_PEM);
        if (r < 0)
                return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL;

        *ret = TAKE_PTR(creds);
        return 0;
}

static int gnutls_to_errno(int r) {
        return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL;
}

/* Big enough for any private key PEM GnuTLS would sign with here (an
 * RSA-16384 PKCS#8 PEM is ~13 KB). */
#define TLS_KEY_FILE_MAX (64 * 1024)

int tls_key_generate(const char *key_path) {
        _cleanup_(gnutls_x509_privkey_deinitp) gnutls_x509_privkey_t pk = NULL;
        gnutls_datum_t pem = { NULL, 0 };
        int r;

        r = gnutls_x509_privkey_init(&pk);
        if (r < 0) {
                pk = NULL;
                return -ENOMEM;
        }
        /* Ed25519: the TLS CertificateVerify is signed at every handshake,
         * including the ones nobody authenticates after, and costs tens of
         * microseconds instead of milliseconds for RSA-3072. */
        r = gnutls_x509_privkey_generate2(pk, GNUTLS_PK_EDDSA_ED25519, 256, 0, NULL, 0);
        if (r < 0)
                return gnutls_to_errno(r);
        r = gnutls_x509_privkey_export2_pkcs8(pk, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &pem);
        if (r < 0)
                return gnutls_to_errno(r);

        r = write_file_atomic(key_path, pem.data, pem.size, 0600);
        secure_wipe(pem.data, pem.size);
        gnutls_free(pem.data);
        return r;
}

int tls_make_self_signed(const char *key_path, const char *cn, const char *cert_path) {
        _cleanup_(gnutls_x509_privkey_deinitp) gnutls_x509_privkey_t pk = NULL;
        _cleanup_(gnutls_x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        uint8_t serial[CERT_SERIAL_LEN], key_id[64];
        size_t key_id_len = sizeof(key_id);
        gnutls_datum_t pem = { NULL, 0 }, key_datum;
        unsigned usage = GNUTLS_KEY_DIGITAL_SIGNATURE;
        char *key_pem = NULL;
        size_t key_pem_len = 0;
        time_t now = time(NULL);
        int r;

        if (!key_path || !cn || !*cn)
                return -EINVAL;

        r = gnutls_x509_privkey_init(&pk);
        if (r < 0) {
                pk = NULL;
                return -ENOMEM;
        }
        r = read_key_file(key_path, true, TLS_KEY_FILE_MAX, &key_pem, &key_pem_len);
        if (r < 0)
                return r;
        key_datum = (gnutls_datum_t) { (unsigned char *) key_pem, (unsigned) key_pem_len };
        r = gnutls_x509_privkey_import2(pk, &key_datum, GNUTLS_X509_FMT_PEM, NULL, 0);
        secure_free(key_pem, TLS_KEY_FILE_MAX + 1);
        if (r < 0)
                return gnutls_to_errno(r);
        /* Only an RSA key could ever encipher (TLS 1.2's RSA key exchange,
         * never offered here); say so only for RSA, as before. */
        if (gnutls_x509_privkey_get_pk_algorithm(pk) == GNUTLS_PK_RSA)
                usage |= GNUTLS_KEY_KEY_ENCIPHERMENT;

        r = gnutls_x509_crt_init(&crt);
        if (r < 0) {
                crt = NULL;
                return -ENOMEM;
        }

        /* A positive 16-byte serial with its top byte non-zero (RFC 5280:
         * at most 20 octets, positive). */
        r = random_bytes(serial, sizeof(serial));
        if (r < 0)
                return r;
        serial[0] = (serial[0] & 0x7f) | 0x40;

        if ((r = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
            (r = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
            /* an hour back: tolerate a peer whose clock is a little behind */
            (r = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0 ||
            (r = gnutls_x509_crt_set_expiration_time(crt, now + CERT_VALIDITY)) < 0 ||
            (r = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                               cn, (unsigned) strlen(cn))) < 0 ||
            (r = gnutls_x509_crt_set_key(crt, pk)) < 0 ||
            (r = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
            (r = gnutls_x509_crt_set_key_usage(crt, usage)) < 0 ||
            (r = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
            (r = gnutls_x509_crt_get_key_id(crt, 0, key_id, &key_id_len)) < 0 ||
            (r = gnutls_x509_crt_set_subject_key_id(crt, key_id, key_id_len)) < 0)
                return gnutls_to_errno(r);

        if (sni_name_ok(cn)) {
                r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, cn,
                                                         (unsigned) strlen(cn), GNUTLS_FSAN_SET);
                if (r < 0)
                        return gnutls_to_errno(r);
        }

        /* EdDSA hashes internally: GnuTLS wants no digest named for it. */
        r = gnutls_x509_crt_sign2(crt, crt, pk,
                                  gnutls_x509_privkey_get_pk_algorithm(pk) == GNUTLS_PK_EDDSA_ED25519 ?
                                  GNUTLS_DIG_UNKNOWN : GNUTLS_DIG_SHA256, 0);
        if (r < 0)
                return gnutls_to_errno(r);

        r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem);
        if (r < 0)
                return gnutls_to_errno(r);

        r = write_file_atomic(cert_path, pem.data, pem.size, 0644);
        gnutls_free(pem.data);
        return r;
}
