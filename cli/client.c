/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "exit-codes.h"
#include "handshake.h"
#include "output.h"
#include "protocol.h"
#include "util.h"

/* We ping after this much silence on our side (well inside the relay's
 * default idle-timeout of 300 s), and give up on a relay that has said
 * nothing for this long plus the timeout. */
#define PING_INTERVAL_USEC (30 * USEC_PER_SEC)

/* Ping often enough that the relay's idle-timeout (welcome.limits) never
 * closes a quiet session: a third of it, at most every 30 s. */
static uint64_t ping_interval(const Client *c) {
        uint64_t idle = c->limits.idle_timeout * USEC_PER_SEC;

        if (idle == 0)
                return PING_INTERVAL_USEC;
        return MAX(MIN(idle / 3, (uint64_t) PING_INTERVAL_USEC), (uint64_t) USEC_PER_SEC / 4);
}
/* What may wait for the socket: a relay that stops reading while it makes
 * us answer (pings) must not make us grow without end. */
#define OUT_MAX(c) (MAX(4 * (size_t) (c)->limits.max_frame, (size_t) 1024 * 1024))
/* How long client_bye() waits for the relay to close. */
#define BYE_WAIT_USEC (1 * USEC_PER_SEC)
/* The transport's descriptor is one of wait_fds()'s. */
#define EXTRA_FDS_MAX (WAIT_FDS_MAX - 1)

static unsigned seconds(uint64_t usec) {
        return (unsigned) ((usec + USEC_PER_SEC - 1) / USEC_PER_SEC);
}

int relay_error_status(const char *code) {
        static const struct {
                const char *code;
                int status;
        } table[] = {
                { ERR_AUTH_FAILED, EXIT_AUTH },
                { ERR_KEY_MISMATCH, EXIT_AUTH },
                { ERR_REGISTRATION_CLOSED, EXIT_AUTH },
                { ERR_CODE_REQUIRED, EXIT_AUTH },
                { ERR_TIMEOUT, EXIT_TIMEOUT },
                { ERR_BAD_FRAME, EXIT_CONNECT },
                { ERR_REPLACED, EXIT_CONNECT },
                { ERR_KICKED, EXIT_CONNECT },
                { ERR_SHUTDOWN, EXIT_CONNECT },
                { ERR_INTERNAL, EXIT_CONNECT },
                { ERR_RATE_LIMITED, EXIT_RATE_LIMITED },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(code, table[i].code))
                        return table[i].status;
        /* no_such_user, too_large, queue_full, storage_full, server_busy,
         * unavailable, bad_username, bad_request, and codes newer than us. */
        return EXIT_REFUSED;
}

bool relay_error_later(const char *code) {
        return streq(code, ERR_SERVER_BUSY) || streq(code, ERR_UNAVAILABLE);
}

static const char *relay_error_hint(const char *code) {
        static const struct {
                const char *code;
                const char *hint;
        } table[] = {
                { ERR_AUTH_FAILED, "the relay did not accept our proof of identity" },
                { ERR_KEY_MISMATCH, "the relay has another key registered for this user; if the key "
                                    "was lost, an administrator can reset it (scctl reset-key USER)" },
                { ERR_REGISTRATION_CLOSED, "this user is not registered and the relay accepts no new "
                                           "users; ask its administrator" },
                { ERR_CODE_REQUIRED, "an administrator reset this user's key; register again with the "
                                     "one-time code they give you (scctl init --code CODE)" },
                { ERR_BAD_USERNAME, "the relay refused the user name" },
                { ERR_NO_SUCH_USER, "no such user at the relay" },
                { ERR_TOO_LARGE, "the message is larger than the relay accepts" },
                { ERR_QUEUE_FULL, "the recipient's queue at the relay is full; try again later" },
                { ERR_STORAGE_FULL, "the relay has no room for more messages; try again later" },
                { ERR_RATE_LIMITED, "the relay limits how often one user or address may do this; "
                                    "try again later (or with a longer --timeout)" },
                { ERR_SERVER_BUSY, "the relay is busy; try again later" },
                { ERR_UNAVAILABLE, "the relay cannot reach its database; try again later" },
                { ERR_REPLACED, "another receiving session of this user (listen, inbox or connect) "
                                "took over" },
                { ERR_KICKED, "an administrator ended this session" },
                { ERR_SHUTDOWN, "the relay is shutting down" },
                { ERR_TIMEOUT, "the relay gave up waiting for us" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(code, table[i].code))
                        return table[i].hint;
        return NULL;
}

int log_relay_error(const Frame *f, const char *what) {
        const char *hint = relay_error_hint(f->error.code);
        char code[64], message[200];

        /* The relay's words on our terminal. */
        string_sanitize(f->error.code, code, sizeof(code));
        string_sanitize(f->error.message, message, sizeof(message));
        return log_fail(relay_error_status(f->error.code), 0, "%s: the relay answered %s%s%s%s%s%s",
                        what, code,
                        message[0] ? " (\"" : "", message, message[0] ? "\")" : "",
                        hint ? ": " : "", hint ?: "");
}

Client *client_free(Client *c) {
        if (!c)
                return NULL;
        transport_free(c->transport);
        frame_decoder_done(&c->decoder);
        stream_output_done(&c->out);
        rsa_key_free(c->server_key);
        free(c->address);
        free(c);
        return NULL;
}

uint64_t client_next_id(Client *c) {
        return c->next_id++;
}

static int client_lost(Client *c, const char *why) {
        if (!c->closing)
                log_warning("Connection to %s lost: %s.", c->address, why);
        c->broken = true;
        return -ENOTCONN;
}

static int client_flush(Client *c) {
        while (stream_output_pending(&c->out) > 0 && !c->broken) {
                size_t len = c->out_retry ?: stream_output_pending(&c->out);
                ssize_t n = transport_write(c->transport, stream_output_head(&c->out), len);

                if (n == -EAGAIN) {
                        c->out_retry = len;
                        return 0;
                }
                if (n <= 0) {
                        c->broken = true;
                        c->broken_error = n < 0 ? (int) n : -EPIPE;
                        return c->broken_error;
                }
                c->out_retry = 0;
                stream_output_consume(&c->out, (size_t) n);
        }
        return 0;
}

int client_send(Client *c, json_object *o) {
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t len;
        int r;

        if (!o)
                return log_fail(EXIT_FAIL, -ENOMEM, "Cannot build a frame: %m");
        r = frame_to_wire(o, c->limits.max_frame, &wire, &len);
        json_object_put(o);
        if (r == -EMSGSIZE)
                return log_fail(EXIT_REFUSED, 0, "The frame is larger than the relay's limit of %" PRIu64 " bytes.",
                                c->limits.max_frame);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot build a frame: %m");

        /* The relay's max-frame is known from its hello on: the bound
         * follows it. */
        c->out.max = OUT_MAX(c);
        r = stream_output_append(&c->out, wire, len);
        if (r == -ENOBUFS) {
                c->broken = true;
                c->broken_error = -ENOBUFS;
                return log_fail(EXIT_CONNECT, 0, "The relay at %s does not read what we send; giving up.",
                                c->address);
        }
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "%m");
        /* What counts for keepalive is that something is on its way. */
        c->last_tx = now_monotonic_usec();
        (void) client_flush(c);   /* errors surface in client_wait() */
        return 0;
}

bool client_output_busy(const Client *c) {
        return stream_output_pending(&c->out) > OUT_MAX(c) / 2;
}

/* One frame from the bytes already read, if they complete one. */
static int client_decode(Client *c, Frame **ret) {
        while (c->in_start < c->in_end) {
                _cleanup_(freep) uint8_t *payload = NULL;
                const char *reason = NULL;
                size_t consumed, len;
                Frame *f;
                int r;

                r = frame_decoder_feed(&c->decoder, c->in + c->in_start, c->in_end - c->in_start,
                                       &consumed, &payload, &len);
                c->in_start += consumed;
                if (r == 0)
                        continue;
                if (r == -ENOMEM)
                        return log_fail(EXIT_FAIL, r, "%m");
                if (r < 0)
                        reason = r == -EMSGSIZE ? "frame too large" : "empty frame";
                else if (frame_parse(payload, len, &f, &reason) >= 0) {
                        c->more = f->type == FRAME_PRESENCE && f->presence.kind == PRESENCE_LIST &&
                                  f->presence.more;
                        *ret = f;
                        return 1;
                }
                /* Tell the relay, as protocol.md asks, then stop. */
                (void) client_send(c, frame_new_error(NULL, ERR_BAD_FRAME, reason ?: "malformed frame"));
                return client_lost(c, reason ? reason : "malformed frame");
        }
        return 0;
}

static int client_fill(Client *c) {
        ssize_t n;

        c->read_wants_write = false;
        n = transport_read(c->transport, c->in, sizeof(c->in));
        if (n == -EAGAIN) {
                c->read_wants_write = transport_wants_write(c->transport);
                return 0;
        }
        if (n == 0)
                return client_lost(c, frame_decoder_pending(&c->decoder) ?
                                   "the relay closed the connection in the middle of a frame" :
                                   "the relay closed the connection");
        if (n < 0) {
                errno = (int) -n;
                return client_lost(c, strerror(errno));
        }
        c->in_start = 0;
        c->in_end = (size_t) n;
        return 0;
}

int client_wait(Client *c, struct pollfd *extra, size_t n_extra, uint64_t deadline, Frame **ret_frame) {
        bool established = c->server_key != NULL, polled = false;

        if (n_extra > EXTRA_FDS_MAX)
                return log_fail(EXIT_FAIL, -EINVAL, "Too many descriptors to wait for.");

        for (;;) {
                struct pollfd p[1 + EXTRA_FDS_MAX];
                uint64_t now, wake = deadline;
                Frame *f = NULL;
                int r;

                if (c->broken) {
                        if (c->broken_error < 0) {
                                errno = -c->broken_error;
                                return client_lost(c, strerror(errno));
                        }
                        return -ENOTCONN;
                }

                r = client_decode(c, &f);
                if (r < 0)
                        return r;
                if (r > 0) {
                        c->last_rx = now_monotonic_usec();
                        if (f->type == FRAME_PING) {
                                frame_free(f);
                                r = client_send(c, frame_new_simple(FRAME_PONG));
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        if (f->type == FRAME_PONG) {
                                frame_free(f);
                                continue;
                        }
                        *ret_frame = f;
                        return CLIENT_FRAME;
                }

                /* Everything buffered is used up. GnuTLS may hold decrypted
                 * records that poll() knows nothing about. */
                if (transport_pending(c->transport)) {
                        r = client_fill(c);
                        if (r < 0)
                                return r;
                        continue;
                }

                now = now_monotonic_usec();
                if (established) {
                        uint64_t interval = ping_interval(c);

                        if (now >= c->last_rx + interval + c->timeout_usec)
                                return client_lost(c, "the relay stopped answering");
                        if (now >= c->last_tx + interval) {
                                r = client_send(c, frame_new_simple(FRAME_PING));
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        wake = MIN(wake, c->last_tx + interval);
                        wake = MIN(wake, c->last_rx + interval + c->timeout_usec);
                }
                if (deadline != UINT64_MAX && now >= deadline && (deadline != WAIT_NOW || polled))
                        return CLIENT_TIMEOUT;

                p[0] = (struct pollfd) {
                        .fd = transport_fd(c->transport),
                        .events = (c->read_wants_write ? POLLOUT : POLLIN) |
                                  (stream_output_pending(&c->out) > 0 ? POLLOUT : 0),
                };
                for (size_t i = 0; i < n_extra; i++)
                        p[1 + i] = extra[i];
                r = wait_fds(p, 1 + n_extra, -EBADF, wake);
                polled = true;
                if (r < 0)
                        return log_fail(EXIT_FAIL, r, "poll() failed: %m");
                if (r == 0)
                        continue;       /* a timer of ours, or the deadline: see above */

                if ((p[0].revents & POLLOUT) && stream_output_pending(&c->out) > 0)
                        (void) client_flush(c);
                if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) ||
                    (c->read_wants_write && (p[0].revents & POLLOUT))) {
                        r = client_fill(c);
                        if (r < 0)
                                return r;
                }

                bool ready = false;
                for (size_t i = 0; i < n_extra; i++) {
                        extra[i].revents = p[1 + i].revents;
                        ready = ready || extra[i].revents != 0;
                }
                if (ready)
                        return CLIENT_READY;
        }
}

void client_bye(Client *c) {
        uint64_t deadline = deadline_in(BYE_WAIT_USEC);

        if (c->broken)
                return;
        if (client_send(c, frame_new_simple(FRAME_BYE)) < 0)
                return;
        c->closing = true;
        /* Wait for the relay to close: that also writes out what is queued. */
        for (;;) {
                Frame *f = NULL;
                int r = client_wait(c, NULL, 0, deadline, &f);

                if (r != CLIENT_FRAME)
                        break;
                frame_free(f);
        }
}

static int tcp_connect(const ClientParams *p, uint64_t deadline, int *ret_fd) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
        struct addrinfo *ai = NULL;
        char port[8];
        int r, last_error = -ECONNREFUSED;

        snprintf(port, sizeof(port), "%u", (unsigned) p->port);
        r = getaddrinfo(p->host, port, &hints, &ai);
        if (r != 0)
                return log_fail(EXIT_CONNECT, 0, "Cannot resolve %s: %s.", p->host,
                                r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));

        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                _cleanup_(closep) int fd = -EBADF;
                int error = 0, one = 1;
                socklen_t len = sizeof(error);

                fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
                if (fd < 0) {
                        last_error = -errno;
                        continue;
                }
                /* Chat is many small frames; do not hold them back. */
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
                        if (errno != EINPROGRESS) {
                                last_error = -errno;
                                continue;
                        }
                        r = wait_fd(fd, POLLOUT, p->abort_fd, deadline);
                        if (r == -ECANCELED) {
                                freeaddrinfo(ai);
                                return r;
                        }
                        if (r == 0) {
                                last_error = -ETIMEDOUT;
                                continue;
                        }
                        if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0) {
                                last_error = r < 0 ? r : -errno;
                                continue;
                        }
                        if (error != 0) {
                                last_error = -error;
                                continue;
                        }
                }
                freeaddrinfo(ai);
                *ret_fd = TAKE_FD(fd);
                return 0;
        }
        freeaddrinfo(ai);
        return log_fail(EXIT_CONNECT, last_error,
                        "Cannot connect to %s: %m. Is securechatd running there? (--server HOST:PORT)",
                        p->address);
}

static int tls_handshake(Client *c, const ClientParams *p, uint64_t deadline) {
        for (;;) {
                const char *error = NULL;
                int r = transport_handshake(c->transport, &error);

                if (r == 0)
                        return 0;
                if (r != -EAGAIN) {
                        char why[128];
                        size_t n;

                        /* GnuTLS's descriptions end with a period; ours follows. */
                        snprintf(why, sizeof(why), "%s", error ?: strerror(-r));
                        n = strlen(why);
                        if (n > 0 && why[n - 1] == '.')
                                why[n - 1] = '\0';
                        return log_fail(EXIT_CONNECT, r,
                                        "TLS handshake with %s failed: %s. If the relay runs without TLS, "
                                        "use --no-tls (or tls=no in scctl.conf).", c->address, why);
                }
                r = wait_fd(transport_fd(c->transport),
                            transport_wants_write(c->transport) ? POLLOUT : POLLIN, p->abort_fd, deadline);
                if (r == -ECANCELED)
                        return r;
                if (r == 0)
                        return log_fail(EXIT_TIMEOUT, 0, "TLS handshake with %s timed out after %u s.",
                                        c->address, seconds(p->timeout_usec));
                if (r < 0)
                        return log_fail(EXIT_CONNECT, r, "TLS handshake with %s failed: %m", c->address);
        }
}

/* The next frame during the handshake: expected type, else an error. */
static int expect_frame(Client *c, const ClientParams *p, FrameType type, uint64_t deadline,
                        Frame **ret) {
        struct pollfd abort_poll = { .fd = p->abort_fd, .events = POLLIN };
        Frame *f = NULL;
        int r;

        r = client_wait(c, &abort_poll, p->abort_fd >= 0 ? 1 : 0, deadline, &f);
        if (r == CLIENT_READY)
                return -ECANCELED;
        if (r == CLIENT_TIMEOUT)
                return log_fail(EXIT_TIMEOUT, 0,
                                "The relay at %s did not answer within %u s%s.", c->address,
                                seconds(p->timeout_usec),
                                !p->tls && type == FRAME_HELLO ?
                                " (if it uses TLS, connect without --no-tls)" : "");
        if (r < 0)
                return r;
        if (f->type == FRAME_ERROR) {
                if (p->ret_retry_after && streq(f->error.code, ERR_RATE_LIMITED)) {
                        /* The caller decides whether to wait and retry. */
                        *p->ret_retry_after = MAX(f->error.retry_after, (uint64_t) 1);
                        frame_free(f);
                        return -EBUSY;
                }
                if (p->quiet_key_mismatch && streq(f->error.code, ERR_KEY_MISMATCH)) {
                        frame_free(f);
                        return -EKEYREJECTED;
                }
                if (p->ret_later)
                        *p->ret_later = relay_error_later(f->error.code);
                r = log_relay_error(f, "Cannot log in");
                frame_free(f);
                return r;
        }
        if (f->type != type) {
                r = log_fail(EXIT_CONNECT, 0, "The relay at %s sent \"%s\" where \"%s\" was due; giving up.",
                             c->address, frame_type_to_string(f->type), frame_type_to_string(type));
                frame_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

static void log_server_key_changed(const ClientParams *p, const char *pinned, const char *received) {
        _cleanup_(freep) char *file = client_state_path(p->state, "known_servers");

        log_warning("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@");
        log_warning("@   WARNING: THE RELAY'S IDENTITY KEY HAS CHANGED!        @");
        log_warning("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@");
        log_warning("The relay at %s presented the key", p->address);
        log_warning("    %s", received);
        log_warning("but the key pinned for it is");
        log_warning("    %s", pinned);
        log_warning("Someone may be impersonating the relay, or its key was replaced.");
        log_warning("Not connecting. If the administrator confirms the new key, delete the line");
        log_warning("for %s from %s and connect again.", p->address, file ?: "known_servers");
}

/* The server's key against the pin (section 4, client side). */
static int check_server_key(const ClientParams *p, const RsaKey *key) {
        char pinned[RSA_FINGERPRINT_MAX];
        int r;

        if (p->expected_fingerprint && !streq(p->expected_fingerprint, key->fingerprint))
                return log_fail(EXIT_SERVER_KEY, 0,
                                "The relay at %s presented the key %s, not the expected %s "
                                "(--server-fingerprint). Not connecting.",
                                p->address, key->fingerprint, p->expected_fingerprint);

        r = client_state_server_pin(p->state, p->address, key->fingerprint, true, pinned);
        if (r < 0) {
                _cleanup_(freep) char *file = client_state_path(p->state, "known_servers");

                return log_fail(EXIT_FAIL, r, "Cannot read or update %s: %m", file ?: "known_servers");
        }
        if (r == PIN_MISMATCH) {
                log_server_key_changed(p, pinned, key->fingerprint);
                return -EBADE;
        }
        if (r == PIN_NEW)
                log_notice("Pinned the key of the relay at %s: %s (first connection; compare it with "
                           "the one the administrator publishes).", p->address, key->fingerprint);
        return 0;
}

static bool hello_has_suite(const Frame *f, const char *suite) {
        for (size_t i = 0; i < f->hello.n_suites; i++)
                if (streq(f->hello.suites[i], suite))
                        return true;
        return false;
}

/* How long a plain connection may be silent before we ask whether the
 * relay speaks TLS. A plain relay sends hello as soon as it accepts. */
#define TLS_PROBE_AFTER_USEC (1 * USEC_PER_SEC)

/* A TLS record begins with its content type: 0x16 handshake (a
 * ServerHello), 0x15 alert, and, once GnuTLS has taken the ServerHello
 * off the socket itself, 0x14 change_cipher_spec or 0x17 for the
 * encrypted rest of a TLS 1.3 handshake. A plain relay's first byte is the
 * top of a frame length, 0 (frames are far below 16 MiB). */
static bool tls_record_type(uint8_t b) {
        return b >= 0x14 && b <= 0x17;
}

/* The first byte waiting on fd (not taken), or -1: none, or the relay hung
 * up without a word. */
static int peek_byte(int fd) {
        uint8_t b;

        return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1 ? b : -1;
}

/* With --no-tls, a TLS relay says nothing: it waits for a ClientHello that
 * never comes, and we would wait out the whole timeout. If the relay is
 * silent for a moment (or hangs up without a word), send a ClientHello on
 * a second connection to the same address and look at the first byte of
 * the answer; the first byte on our own connection counts too (a TLS
 * relay sends an alert when its handshake-timeout passes). 1: the relay
 * speaks TLS. 0: it does not (its hello came), or we cannot tell (the
 * deadline passed, the probe failed): go on as before. */
static int probe_tls(Client *c, const ClientParams *p, uint64_t deadline) {
        _cleanup_(transport_freep) Transport *t = NULL;
        _cleanup_(closep) int fd = -EBADF;
        struct sockaddr_storage sa;
        socklen_t sa_len = sizeof(sa);
        int main_fd = transport_fd(c->transport), error = 0, first, r;
        socklen_t len = sizeof(error);
        uint8_t b;

        r = wait_fd(main_fd, POLLIN, p->abort_fd, MIN(deadline, deadline_in(TLS_PROBE_AFTER_USEC)));
        if (r < 0)
                return 0;
        first = r == 1 ? peek_byte(main_fd) : -1;
        if (first >= 0)
                return tls_record_type((uint8_t) first);
        if (getpeername(main_fd, (struct sockaddr *) &sa, &sa_len) < 0)
                return 0;
        fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 0;
        if (connect(fd, (struct sockaddr *) &sa, sa_len) < 0) {
                if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, p->abort_fd, deadline) != 1 ||
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0 || error != 0)
                        return 0;
        }
        if (transport_new_client(fd, true, NULL, &t) < 0)
                return 0;
        fd = -EBADF;    /* the transport owns it */
        /* Sends the ClientHello; the answer is not for GnuTLS to read, but a
         * relay that answers at once may have had its whole handshake read
         * already: finished, it speaks TLS for sure. */
        r = transport_handshake(t, NULL);
        if (r == 0)
                return 1;
        if (r != -EAGAIN)
                return 0;

        for (;;) {
                struct pollfd pf[2] = {
                        { .fd = transport_fd(t), .events = POLLIN },
                        { .fd = main_fd, .events = POLLIN },
                };
                ssize_t n;

                r = wait_fds(pf, ELEMENTSOF(pf), p->abort_fd, deadline);
                if (r <= 0)
                        return 0;
                if (pf[1].revents) {
                        first = peek_byte(main_fd);
                        if (first >= 0)
                                return tls_record_type((uint8_t) first);
                        main_fd = -1;   /* hung up: poll ignores it from now on */
                }
                if (!pf[0].revents)
                        continue;
                n = recv(transport_fd(t), &b, 1, MSG_PEEK);
                return n == 1 && tls_record_type(b);
        }
}

/* Version 3: welcome's "sig" is the Ed25519 signature over T_server3 of the
 * key that welcome_key certifies; the certificate must be the pinned server
 * key's and current. Without welcome_key nothing is accepted instead: the
 * session is version 3, and a weaker welcome would be a downgrade. */
static int verify_welcome_key(const HandshakeParams *hp, const RsaKey *server_key, const Frame *welcome) {
        const WelcomeKey *wk = welcome->welcome.welcome_key;
        char when[FORMAT_UTC_MAX], now_s[FORMAT_UTC_MAX];
        uint64_t now = now_unix();
        int r;

        if (!wk)
                return log_fail(EXIT_AUTH, 0,
                                "The relay's welcome for protocol version 3 carries no welcome key: "
                                "someone may be in the middle. Not continuing.");
        r = welcome_key_verify(wk, server_key, now);
        if (r == -ENOMEM)
                return log_fail(EXIT_FAIL, r, "%m");
        if (r == -EKEYEXPIRED)
                return log_fail(EXIT_AUTH, 0,
                                "The relay's welcome key expired at %s (it is %s here): check the clock of "
                                "this machine and the relay's. Not continuing.",
                                format_utc(wk->not_after, when), format_utc(now, now_s));
        if (r < 0)
                return log_fail(EXIT_AUTH, 0,
                                "The relay's welcome key is not certified by its key %s: someone may be in "
                                "the middle. Not continuing.", server_key->fingerprint);
        r = handshake_verify_ed25519(HANDSHAKE_SERVER3, hp, wk->key, welcome->welcome.sig,
                                     welcome->welcome.sig_len);
        if (r == -ENOMEM)
                return log_fail(EXIT_FAIL, r, "%m");
        if (r < 0)
                return log_fail(EXIT_AUTH, 0,
                                "The relay's signature on the handshake does not verify under its welcome "
                                "key (certified by its key %s): someone may be in the middle. Not continuing.",
                                server_key->fingerprint);
        return 0;
}

static int handshake(Client *c, const ClientParams *p) {
        _cleanup_(frame_freep) Frame *hello = NULL, *welcome = NULL;
        _cleanup_(rsa_key_freep) RsaKey *server_key = NULL;
        _cleanup_(freep) uint8_t *sig = NULL;
        uint8_t client_nonce[NONCE_LEN], binding[CHANNEL_BINDING_LEN];
        size_t binding_len = 0, sig_len = 0;
        HandshakeParams hp;
        const KeyPackage *self;
        uint64_t deadline = deadline_in(p->timeout_usec);
        json_object *auth;
        int r;

        if (!p->tls && probe_tls(c, p, deadline) > 0)
                return log_fail(EXIT_CONNECT, 0,
                                "The relay at %s speaks TLS (it answered a TLS ClientHello with a TLS record); "
                                "connect without --no-tls (and without tls=no in scctl.conf).", c->address);
        r = expect_frame(c, p, FRAME_HELLO, deadline, &hello);
        if (r < 0)
                return r;
        if (hello->hello.proto != PROTOCOL_VERSION || !hello_has_suite(hello, PROTOCOL_SUITE))
                return log_fail(EXIT_CONNECT, 0,
                                "The relay at %s speaks protocol %u without suite %s; this scctl speaks "
                                "protocol %d. Upgrade whichever is older.",
                                p->address, hello->hello.proto, PROTOCOL_SUITE, PROTOCOL_VERSION);
        r = rsa_key_from_spki(hello->hello.server_key, hello->hello.server_key_len, &server_key);
        if (r < 0)
                return log_fail(EXIT_AUTH, r, "The relay at %s sent an unusable identity key: %m", p->address);
        r = check_server_key(p, server_key);
        if (r < 0)
                return r;

        r = random_bytes(client_nonce, sizeof(client_nonce));
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot get random bytes: %m");
        r = transport_channel_binding(c->transport, binding, &binding_len);
        if (r < 0)
                return log_fail(EXIT_CONNECT, r, "Cannot get the TLS channel binding: %m");

        hp = (HandshakeParams) {
                .server_nonce = hello->hello.nonce, .server_nonce_len = NONCE_LEN,
                .client_nonce = client_nonce, .client_nonce_len = NONCE_LEN,
                .user = p->user,
                .client_key = p->identity->spki, .client_key_len = p->identity->spki_len,
                .server_key = server_key->spki, .server_key_len = server_key->spki_len,
                .binding = binding, .binding_len = binding_len,
        };
        r = handshake_sign(HANDSHAKE_CLIENT, &hp, p->identity, &sig, &sig_len);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot sign the handshake: %m");
        auth = frame_new_auth(p->user, p->identity->spki, p->identity->spki_len, client_nonce, p->receive,
                              sig, sig_len);
        /* Version 2 (presence by watch) or 3 (and the welcome key) when the
         * relay offers it. */
        c->proto = MIN(MAX(hello->hello.proto_max, hello->hello.proto), (unsigned) PROTOCOL_VERSION_MAX);
        if (auth && ((p->code && frame_auth_add_code(auth, p->code) < 0) ||
                     (c->proto >= 2 && frame_auth_add_proto(auth, c->proto) < 0))) {
                json_object_put(auth);
                auth = NULL;    /* client_send() reports it */
        }
        r = client_send(c, auth);
        if (r < 0)
                return r;
        if (p->auth_sent)
                p->auth_sent(p->userdata, hello_has_suite(hello, SUITE2_NAME));

        r = expect_frame(c, p, FRAME_WELCOME, deadline_in(p->timeout_usec), &welcome);
        if (r < 0)
                return r;
        if (c->proto >= PROTOCOL_VERSION_WELCOME_KEY) {
                r = verify_welcome_key(&hp, server_key, welcome);
                if (r < 0)
                        return r;
        } else if (handshake_verify(HANDSHAKE_SERVER, &hp, server_key, welcome->welcome.sig,
                                    welcome->welcome.sig_len) < 0)
                return log_fail(EXIT_AUTH, 0,
                                "The relay's signature on the handshake does not verify under its key %s: "
                                "someone may be in the middle. Not continuing.", server_key->fingerprint);
        self = welcome->welcome.self;
        if (!self || key_package_verify(self, server_key) < 0 || !streq(self->user, p->user) ||
            self->key_len != p->identity->spki_len ||
            memcmp(self->key, p->identity->spki, self->key_len) != 0)
                return log_fail(EXIT_AUTH, 0,
                                "The relay's key package for %s is not signed by it or does not hold our "
                                "key. Not continuing.", p->user);

        c->limits = welcome->welcome.limits;
        c->suite2 = hello_has_suite(hello, SUITE2_NAME);
        c->opks_left = c->suite2 && welcome->welcome.has_opks ?
                       (int) MIN(welcome->welcome.opks, (uint64_t) INT_MAX) : -1;
        if (c->limits.max_frame == 0 || c->limits.max_frame > MAX_FRAME_LIMIT)
                c->limits.max_frame = c->limits.max_frame ? MAX_FRAME_LIMIT : DEFAULT_MAX_FRAME;
        if (c->limits.max_text == 0)
                c->limits.max_text = DEFAULT_MAX_TEXT;
        /* Between frames: the decoder holds nothing. */
        c->decoder.max_frame = c->limits.max_frame;
        snprintf(c->session, sizeof(c->session), "%s", welcome->welcome.session);
        c->server_key = TAKE_PTR(server_key);
        c->last_rx = c->last_tx = now_monotonic_usec();
        return 0;
}

int client_connect(const ClientParams *p, Client **ret) {
        _cleanup_(client_freep) Client *c = NULL;
        _cleanup_(closep) int fd = -EBADF;
        struct in6_addr dummy;
        bool literal;
        uint64_t deadline = deadline_in(p->timeout_usec);
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        c->address = strdup(p->address);
        if (!c->address)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        c->timeout_usec = p->timeout_usec;
        c->next_id = 1;
        c->limits = (FrameLimits) { DEFAULT_MAX_FRAME, DEFAULT_MAX_TEXT, DEFAULT_QUEUE_TTL };
        frame_decoder_init(&c->decoder, DEFAULT_MAX_FRAME);
        /* Keeps what a few frames need between writes: a connect that
         * pipelines sends does not allocate per frame. */
        stream_output_init(&c->out, OUT_MAX(c), 64u * 1024);

        r = tcp_connect(p, deadline, &fd);
        if (r < 0)
                return r;

        /* SNI takes host names only, not address literals. */
        literal = inet_pton(AF_INET, p->host, &dummy) == 1 || inet_pton(AF_INET6, p->host, &dummy) == 1;
        r = transport_new_client(fd, p->tls, literal ? NULL : p->host, &c->transport);
        if (r < 0)
                return log_fail(p->tls ? EXIT_CONNECT : EXIT_FAIL, r, "Cannot set up the connection: %m");
        fd = -EBADF;    /* the transport owns it */
        if (p->tls) {
                r = tls_handshake(c, p, deadline);
                if (r < 0)
                        return r;
        }

        r = handshake(c, p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}
