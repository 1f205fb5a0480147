/* SPDX-License-Identifier: MIT */
/*
 * sc-raw: a scriptable raw-protocol client for integration tests. It speaks
 * the chat protocol frame by frame, so a test can do what a well-behaved
 * client never would: garbage, zero-length and oversized frames, frames out
 * of order, wrong keys, slow reading.
 *
 *   sc-raw [--tls] [--timeout SEC] HOST PORT < script
 *   sc-raw HOST PORT -e 'connect' -e 'key /tmp/alice.key' ...
 *
 * Every frame received is printed as "< JSON", every frame sent as
 * "> JSON", notes as "# ...". The first failed command prints
 * "sc-raw: line N: ..." on stderr and exits 1. Commands, one per line:
 *
 *   connect                 TCP (and TLS with --tls) to HOST PORT
 *   rcvbuf BYTES            SO_RCVBUF for the next connect (a slow reader)
 *   key FILE [BITS]         load a private key, or generate and save one
 *   auth USER [send]        read hello, send a signed auth (receive:true
 *                           unless "send"); check welcome's signature
 *                           when it comes
 *   expect TYPE [CODE]      the next frame is TYPE (an error: with CODE)
 *   wait TYPE [CODE]        read frames until TYPE (with CODE) arrives
 *   eof                     read frames until the server closes
 *   silence MS              no frame arrives within MS milliseconds
 *   lookup USER             send lookup (the answer teaches USER's key)
 *   send USER TEXT...       seal TEXT to USER (key from lookup/presence)
 *   ack SEQ | ping | bye    send those frames
 *   autoack on|off          open every deliver (printing "# text from
 *                           USER: TEXT") and ack it
 *   frame JSON...           send the JSON text as one frame, unchecked
 *   raw HEX                 send bytes as they are
 *   len N                   send only a length header of N
 *   repeat N COMMAND...     run COMMAND N times
 *   crowd N PREFIX read|idle [LOOKUPS]
 *                           N receiving sessions as PREFIX0..PREFIX<N-1>
 *                           (the key loaded: users may share one), one
 *                           after the other (until one is refused),
 *                           then held until killed.
 *                           read: whatever comes is read and dropped;
 *                           idle: nothing is read after welcome, but
 *                           each sends up to LOOKUPS lookups of PREFIX0
 *                           first, as many as the socket takes (the
 *                           answers wait at the relay)
 *   sleep MS | timeout SEC | close
 *
 * Lines that are empty or start with '#' are ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "codec.h"
#include "envelope.h"
#include "frame.h"
#include "handshake.h"
#include "macro.h"
#include "protocol.h"
#include "rsa.h"
#include "transport.h"
#include "util.h"

#define MAX_KNOWN 64

typedef struct Raw {
        const char *host, *port;
        bool tls;
        int timeout_ms;
        unsigned line;

        Transport *t;
        FrameDecoder decoder;
        uint8_t rbuf[16384];
        size_t rpos, rlen;

        RsaKey *key;
        char user[USERNAME_MAX + 1];
        RsaKey *server_key;
        uint8_t server_nonce[NONCE_LEN], client_nonce[NONCE_LEN];
        bool auth_sent;
        KeyPackage *known[MAX_KNOWN];
        size_t n_known;
        bool autoack;
        uint64_t next_id;
        int rcvbuf;
} Raw;

static Raw raw = { .timeout_ms = 10000, .next_id = 1 };

static int fail(const char *fmt, ...) _printf_(1, 2);
static int fail(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "sc-raw: line %u: ", raw.line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

static uint64_t now_ms(void) {
        return now_monotonic_usec() / 1000;
}

/* Wait until the fd is ready in the direction the transport needs, or the
 * deadline passes (-ETIMEDOUT). */
static int wait_ready(uint64_t deadline, bool for_write) {
        struct pollfd p = { .fd = transport_fd(raw.t), .events = for_write ? POLLOUT : POLLIN };
        uint64_t now = now_ms();
        int n;

        if (now >= deadline)
                return -ETIMEDOUT;
        n = poll(&p, 1, (int) (deadline - now));
        if (n < 0)
                return -errno;
        return n == 0 ? -ETIMEDOUT : 0;
}

static int write_all(const void *data, size_t len) {
        const uint8_t *p = data;
        uint64_t deadline = now_ms() + (uint64_t) raw.timeout_ms;

        if (!raw.t)
                return fail("not connected");
        while (len > 0) {
                ssize_t n = transport_write(raw.t, p, len);
                if (n == -EAGAIN) {
                        int r = wait_ready(deadline, transport_wants_write(raw.t));
                        if (r < 0)
                                return fail("write: %s", strerror(-r));
                        continue;
                }
                if (n < 0)
                        return fail("write: %s", strerror((int) -n));
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static int send_json(json_object *o) {
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t len;
        int r;

        if (!o)
                return fail("out of memory");
        r = frame_to_wire(o, MAX_FRAME_LIMIT, &wire, &len);
        if (r >= 0)
                printf("> %.*s\n", (int) (len - 4), (const char *) wire + 4);
        json_object_put(o);
        if (r < 0)
                return fail("cannot encode frame: %s", strerror(-r));
        return write_all(wire, len);
}

/* 1 and a frame, 0 at EOF, -ETIMEDOUT, or another error (reported). */
static int read_frame(int timeout_ms, uint8_t **ret, size_t *ret_len) {
        uint64_t deadline = now_ms() + (uint64_t) timeout_ms;

        if (!raw.t)
                return fail("not connected");
        for (;;) {
                while (raw.rpos < raw.rlen) {
                        size_t consumed = 0;
                        int r = frame_decoder_feed(&raw.decoder, raw.rbuf + raw.rpos, raw.rlen - raw.rpos,
                                                   &consumed, ret, ret_len);
                        raw.rpos += consumed;
                        if (r < 0)
                                return fail("bad framing from the server: %s", strerror(-r));
                        if (r > 0)
                                return 1;
                }
                ssize_t n = transport_read(raw.t, raw.rbuf, sizeof(raw.rbuf));
                if (n == -EAGAIN) {
                        int r = wait_ready(deadline, transport_wants_write(raw.t));
                        if (r == -ETIMEDOUT)
                                return r;
                        if (r < 0)
                                return fail("poll: %s", strerror(-r));
                        continue;
                }
                if (n == 0 || n == -ECONNRESET)
                        return 0;
                if (n < 0)
                        return fail("read: %s", strerror((int) -n));
                raw.rpos = 0;
                raw.rlen = (size_t) n;
        }
}

static const KeyPackage *known_package(const char *user) {
        for (size_t i = 0; i < raw.n_known; i++)
                if (strcmp(raw.known[i]->user, user) == 0)
                        return raw.known[i];
        return NULL;
}

static void learn_package(const KeyPackage *kp) {
        KeyPackage *copy = NULL;

        if (!kp)
                return;
        if (raw.server_key && key_package_verify(kp, raw.server_key) < 0) {
                printf("# key package of %s: bad server signature, ignored\n", kp->user);
                return;
        }
        for (size_t i = 0; i < raw.n_known; i++)
                if (strcmp(raw.known[i]->user, kp->user) == 0) {
                        key_package_free(raw.known[i]);
                        raw.known[i] = raw.known[--raw.n_known];
                        break;
                }
        if (raw.n_known < MAX_KNOWN && key_package_dup(kp, &copy) >= 0)
                raw.known[raw.n_known++] = copy;
}

static int handle_deliver(const Frame *f) {
        const Envelope *e = f->deliver.envelope;
        const KeyPackage *kp = known_package(e->from);
        _cleanup_(rsa_key_freep) RsaKey *sender = NULL;
        _cleanup_(freep) char *text = NULL;
        EnvelopeError err = ENVELOPE_OK;
        size_t len;
        int r;

        if (!kp || rsa_key_from_spki(kp->key, kp->key_len, &sender) < 0)
                printf("# cannot open seq %" PRIu64 ": key of %s unknown (lookup first)\n",
                       f->deliver.seq, e->from);
        else {
                EnvelopeOpenParams p = {
                        .me = raw.user, .my_key = raw.key, .sender_key = sender,
                        .now = now_unix(), .window = 400 * 86400,
                };
                r = envelope_open(e, &p, &text, &len, &err);
                if (r < 0)
                        printf("# cannot open seq %" PRIu64 ": %s\n", f->deliver.seq,
                               r == -EBADMSG ? envelope_error_to_string(err) : strerror(-r));
                else
                        printf("# text from %s: %s\n", e->from, text);
        }
        return send_json(frame_new_ack(f->deliver.seq));
}

/* Print a received frame and learn from it. *ret gets the parsed frame
 * (NULL when it did not parse). */
static int receive(int timeout_ms, Frame **ret) {
        _cleanup_(freep) uint8_t *payload = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *reason = NULL;
        size_t len;
        int r;

        r = read_frame(timeout_ms, &payload, &len);
        if (r <= 0)
                return r;
        printf("< %.*s\n", (int) len, (const char *) payload);
        r = frame_parse(payload, len, &f, &reason);
        if (r < 0) {
                printf("# unparsable frame: %s\n", reason ? reason : strerror(-r));
                *ret = NULL;
                return 1;
        }

        switch (f->type) {
        case FRAME_WELCOME:
                if (raw.auth_sent) {
                        HandshakeParams p = {
                                .server_nonce = raw.server_nonce, .server_nonce_len = NONCE_LEN,
                                .client_nonce = raw.client_nonce, .client_nonce_len = NONCE_LEN,
                                .user = raw.user,
                                .client_key = raw.key->spki, .client_key_len = raw.key->spki_len,
                                .server_key = raw.server_key->spki, .server_key_len = raw.server_key->spki_len,
                        };
                        uint8_t binding[CHANNEL_BINDING_LEN];
                        size_t blen = 0;

                        if (transport_channel_binding(raw.t, binding, &blen) < 0)
                                return fail("no channel binding");
                        p.binding = binding;
                        p.binding_len = blen;
                        if (handshake_verify(HANDSHAKE_SERVER, &p, raw.server_key, f->welcome.sig,
                                             f->welcome.sig_len) < 0)
                                return fail("welcome signature does not verify");
                        printf("# welcome signature verified\n");
                }
                learn_package(f->welcome.self);
                break;
        case FRAME_PRESENCE:
                for (size_t i = 0; i < f->presence.n_users; i++)
                        learn_package(f->presence.users[i]);
                learn_package(f->presence.package);
                break;
        case FRAME_KEY:
                learn_package(f->key.package);
                break;
        case FRAME_DELIVER:
                if (raw.autoack) {
                        r = handle_deliver(f);
                        if (r < 0)
                                return r;
                }
                break;
        default:
                break;
        }
        fflush(stdout);
        *ret = TAKE_PTR(f);
        return 1;
}

static bool frame_matches(const Frame *f, const char *type, const char *code) {
        if (!f || strcmp(frame_type_to_string(f->type), type) != 0)
                return false;
        return !code || (f->type == FRAME_ERROR && strcmp(f->error.code, code) == 0);
}

static int cmd_expect(const char *type, const char *code, bool skip) {
        for (;;) {
                _cleanup_(frame_freep) Frame *f = NULL;
                int r = receive(raw.timeout_ms, &f);

                if (r == -ETIMEDOUT)
                        return fail("timeout waiting for %s", type);
                if (r < 0)
                        return r;
                if (r == 0)
                        return fail("connection closed while waiting for %s", type);
                if (frame_matches(f, type, code))
                        return 0;
                if (!skip)
                        return fail("expected %s%s%s, got %s", type, code ? " " : "", code ? code : "",
                                    f ? frame_type_to_string(f->type) : "an unparsable frame");
        }
}

static int cmd_eof(void) {
        for (;;) {
                _cleanup_(frame_freep) Frame *f = NULL;
                int r = receive(raw.timeout_ms, &f);

                if (r == -ETIMEDOUT)
                        return fail("timeout waiting for the server to close");
                if (r <= 0)
                        return r;
        }
}

static int cmd_silence(int ms) {
        _cleanup_(frame_freep) Frame *f = NULL;
        int r = receive(ms, &f);

        if (r == -ETIMEDOUT)
                return 0;
        if (r < 0)
                return r;
        return fail(r == 0 ? "connection closed during silence" : "a frame arrived during silence");
}

static int cmd_connect(void) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        const char *error = NULL;
        uint64_t deadline;
        int fd, r;

        transport_free(raw.t);
        raw.t = NULL;
        frame_decoder_done(&raw.decoder);
        frame_decoder_init(&raw.decoder, MAX_FRAME_LIMIT);
        raw.rpos = raw.rlen = 0;
        raw.auth_sent = false;

        r = getaddrinfo(raw.host, raw.port, &hints, &ai);
        if (r != 0)
                return fail("%s:%s: %s", raw.host, raw.port, gai_strerror(r));
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && raw.rcvbuf > 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &raw.rcvbuf, sizeof(raw.rcvbuf));
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                r = -errno;
                freeaddrinfo(ai);
                safe_close(fd);
                return fail("connect: %s", strerror(-r));
        }
        freeaddrinfo(ai);
        /* The transport wants a non-blocking socket; timeouts are ours. */
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
                r = -errno;
                safe_close(fd);
                return fail("fcntl: %s", strerror(-r));
        }
        r = transport_new_client(fd, raw.tls, NULL, &raw.t);
        if (r < 0) {
                safe_close(fd);
                return fail("transport: %s", strerror(-r));
        }
        deadline = now_ms() + (uint64_t) raw.timeout_ms;
        while ((r = transport_handshake(raw.t, &error)) == -EAGAIN) {
                r = wait_ready(deadline, transport_wants_write(raw.t));
                if (r < 0)
                        return fail("TLS handshake: %s", strerror(-r));
        }
        if (r < 0)
                return fail("TLS handshake: %s", error ? error : strerror(-r));
        if (raw.tls)
                printf("# TLS handshake done\n");
        return 0;
}

static int cmd_key(const char *path, const char *bits) {
        int r;

        rsa_key_free(raw.key);
        raw.key = NULL;
        r = rsa_key_load_private(path, &raw.key);
        if (r == -ENOENT) {
                r = rsa_key_generate(bits ? (unsigned) atoi(bits) : 2048, &raw.key);
                if (r >= 0)
                        r = rsa_key_save_private(raw.key, path);
        }
        if (r < 0)
                return fail("key %s: %s", path, strerror(-r));
        printf("# key %s\n", raw.key->fingerprint);
        return 0;
}

static int cmd_auth(const char *user, bool receive_flag) {
        _cleanup_(frame_freep) Frame *f = NULL;
        _cleanup_(freep) uint8_t *sig = NULL;
        uint8_t binding[CHANNEL_BINDING_LEN];
        size_t sig_len, blen = 0;
        int r;

        if (!raw.key)
                return fail("auth needs a key first");
        r = receive(raw.timeout_ms, &f);
        if (r <= 0 || !f || f->type != FRAME_HELLO)
                return fail("expected hello");
        rsa_key_free(raw.server_key);
        raw.server_key = NULL;
        if (rsa_key_from_spki(f->hello.server_key, f->hello.server_key_len, &raw.server_key) < 0)
                return fail("unusable server key");
        printf("# server key %s\n", raw.server_key->fingerprint);
        memcpy(raw.server_nonce, f->hello.nonce, NONCE_LEN);
        if (random_bytes(raw.client_nonce, NONCE_LEN) < 0)
                return fail("no randomness");
        if (transport_channel_binding(raw.t, binding, &blen) < 0)
                return fail("no channel binding");
        snprintf(raw.user, sizeof(raw.user), "%s", user);

        HandshakeParams p = {
                .server_nonce = raw.server_nonce, .server_nonce_len = NONCE_LEN,
                .client_nonce = raw.client_nonce, .client_nonce_len = NONCE_LEN,
                .user = user,
                .client_key = raw.key->spki, .client_key_len = raw.key->spki_len,
                .server_key = raw.server_key->spki, .server_key_len = raw.server_key->spki_len,
                .binding = binding, .binding_len = blen,
        };
        r = handshake_sign(HANDSHAKE_CLIENT, &p, raw.key, &sig, &sig_len);
        if (r < 0)
                return fail("signing: %s", strerror(-r));
        raw.auth_sent = true;
        return send_json(frame_new_auth(user, raw.key->spki, raw.key->spki_len, raw.client_nonce,
                                        receive_flag, sig, sig_len));
}

static int cmd_send(const char *to, const char *text) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        _cleanup_(rsa_key_freep) RsaKey *recipient = NULL;
        const KeyPackage *kp = known_package(to);
        json_object *env = NULL;
        int r;

        if (!kp) {
                /* Ask, and read until the answer (printing what comes). */
                r = send_json(frame_new_lookup(raw.next_id++, to));
                if (r < 0)
                        return r;
                while (!(kp = known_package(to))) {
                        _cleanup_(frame_freep) Frame *f = NULL;
                        r = receive(raw.timeout_ms, &f);
                        if (r <= 0)
                                return fail("no key for %s", to);
                        if (f && f->type == FRAME_ERROR)
                                return fail("lookup of %s failed: %s", to, f->error.code);
                }
        }
        if (rsa_key_from_spki(kp->key, kp->key_len, &recipient) < 0)
                return fail("unusable key for %s", to);
        r = envelope_seal(raw.user, raw.key, to, recipient, now_unix(), text, strlen(text), &e);
        if (r < 0)
                return fail("seal: %s", strerror(-r));
        r = envelope_to_json(e, &env);
        if (r < 0)
                return fail("envelope: %s", strerror(-r));
        r = send_json(frame_new_send(raw.next_id++, env));
        json_object_put(env);
        return r;
}

static int send_raw(const void *data, size_t len) {
        printf("> raw %zu bytes\n", len);
        return write_all(data, len);
}

static int cmd_raw_hex(const char *hex) {
        _cleanup_(freep) uint8_t *data = NULL;
        size_t len;

        if (hex_decode(hex, &data, &len) < 0)
                return fail("bad hex");
        return send_raw(data, len);
}

static int cmd_frame(const char *json) {
        size_t len = strlen(json);
        _cleanup_(freep) uint8_t *buf = malloc(len + 4);

        if (!buf)
                return fail("out of memory");
        buf[0] = (uint8_t) (len >> 24);
        buf[1] = (uint8_t) (len >> 16);
        buf[2] = (uint8_t) (len >> 8);
        buf[3] = (uint8_t) len;
        memcpy(buf + 4, json, len);
        printf("> %s\n", json);
        return write_all(buf, len + 4);
}

/* Read and drop whatever t has for us now; false once it is closed. */
static bool drain(Transport *t) {
        uint8_t buf[16384];
        ssize_t n;

        while ((n = transport_read(t, buf, sizeof(buf))) > 0)
                ;
        return n == -EAGAIN;
}

/* Up to m lookups of user, as many as the socket takes without waiting
 * (the relay stops reading when its answers pile up). */
static int flood_lookups(int m, const char *user) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;
        size_t off = 0;

        for (int j = 0; j < m; j++) {
                _cleanup_(freep) uint8_t *wire = NULL;
                json_object *o = frame_new_lookup(raw.next_id++, user);
                size_t len;
                int r;

                r = o ? frame_to_wire(o, MAX_FRAME_LIMIT, &wire, &len) : -ENOMEM;
                json_object_put(o);
                if (r < 0)
                        return fail("lookup: %s", strerror(-r));
                buf_put(&b, wire, len);
        }
        if (b.error < 0)
                return fail("out of memory");
        while (off < b.len) {
                ssize_t n = transport_write(raw.t, b.data + off, b.len - off);

                /* Full, or closed by the relay (which may cut us for
                 * what we asked): never written to again, so a partial
                 * record is fine. */
                if (n < 0)
                        break;
                off += (size_t) n;
        }
        printf("# %zu bytes of lookups written\n", off);
        return 0;
}

static int cmd_crowd(const char *count, const char *prefix, const char *mode, const char *lookups) {
        int n = atoi(count), m = lookups ? atoi(lookups) : 0, r;
        bool reading = strcmp(mode, "read") == 0;
        _cleanup_(freep) Transport **t = NULL;
        _cleanup_(freep) struct pollfd *p = NULL;
        char first[USERNAME_MAX + 1];

        if (n <= 0 || (!reading && strcmp(mode, "idle") != 0))
                return fail("crowd: expected a count and read or idle");
        t = calloc((size_t) n, sizeof(*t));
        p = calloc((size_t) n, sizeof(*p));
        if (!t || !p)
                return fail("out of memory");
        snprintf(first, sizeof(first), "%s0", prefix);
        for (int i = 0; i < n; i++) {
                char user[USERNAME_MAX + 1];

                snprintf(user, sizeof(user), "%s%d", prefix, i);
                if ((r = cmd_connect()) < 0 || (r = cmd_auth(user, true)) < 0)
                        return r;
                if (cmd_expect("welcome", NULL, true) < 0) {
                        /* Refused (server_busy): hold the ones we have. */
                        printf("# crowd: login of %s refused\n", user);
                        raw.t = transport_free(raw.t);
                        n = i;
                        break;
                }
                if (m > 0 && (r = flood_lookups(m, first)) < 0)
                        return r;
                t[i] = TAKE_PTR(raw.t);
                /* The others hear that this one came online. */
                for (int j = 0; reading && j < i; j++)
                        if (t[j] && !drain(t[j]))
                                t[j] = transport_free(t[j]);
        }
        printf("# crowd of %d up\n", n);
        fflush(stdout);
        for (;;) {
                if (!reading) {
                        pause();
                        continue;
                }
                for (int i = 0; i < n; i++)
                        p[i] = (struct pollfd) { .fd = t[i] ? transport_fd(t[i]) : -1, .events = POLLIN };
                if (poll(p, (nfds_t) n, -1) < 0 && errno != EINTR)
                        return fail("poll: %s", strerror(errno));
                for (int i = 0; i < n; i++)
                        if (t[i] && p[i].revents && !drain(t[i]))
                                t[i] = transport_free(t[i]);
        }
}

static int run_command(char *line);

static int run_words(char **w, size_t n, char *rest_after[]) {
        const char *c = w[0];

        if (strcmp(c, "connect") == 0)
                return cmd_connect();
        if (strcmp(c, "rcvbuf") == 0 && n >= 2) {
                raw.rcvbuf = atoi(w[1]);
                return 0;
        }
        if (strcmp(c, "key") == 0 && n >= 2)
                return cmd_key(w[1], n >= 3 ? w[2] : NULL);
        if (strcmp(c, "auth") == 0 && n >= 2)
                return cmd_auth(w[1], !(n >= 3 && strcmp(w[2], "send") == 0));
        if ((strcmp(c, "expect") == 0 || strcmp(c, "wait") == 0) && n >= 2)
                return cmd_expect(w[1], n >= 3 ? w[2] : NULL, c[0] == 'w');
        if (strcmp(c, "eof") == 0)
                return cmd_eof();
        if (strcmp(c, "silence") == 0 && n >= 2)
                return cmd_silence(atoi(w[1]));
        if (strcmp(c, "lookup") == 0 && n >= 2)
                return send_json(frame_new_lookup(raw.next_id++, w[1]));
        if (strcmp(c, "send") == 0 && n >= 3)
                return cmd_send(w[1], rest_after[2]);
        if (strcmp(c, "ack") == 0 && n >= 2)
                return send_json(frame_new_ack(strtoull(w[1], NULL, 10)));
        if (strcmp(c, "ping") == 0)
                return send_json(frame_new_simple(FRAME_PING));
        if (strcmp(c, "bye") == 0)
                return send_json(frame_new_simple(FRAME_BYE));
        if (strcmp(c, "autoack") == 0 && n >= 2) {
                raw.autoack = strcmp(w[1], "on") == 0;
                return 0;
        }
        if (strcmp(c, "frame") == 0 && n >= 2)
                return cmd_frame(rest_after[1]);
        if (strcmp(c, "raw") == 0 && n >= 2)
                return cmd_raw_hex(w[1]);
        if (strcmp(c, "len") == 0 && n >= 2) {
                uint32_t v = (uint32_t) strtoul(w[1], NULL, 0);
                uint8_t h[4] = { (uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v };
                return send_raw(h, sizeof(h));
        }
        if (strcmp(c, "repeat") == 0 && n >= 3) {
                int times = atoi(w[1]);
                for (int i = 0; i < times; i++) {
                        _cleanup_(freep) char *copy = strdup(rest_after[2]);
                        int r = copy ? run_command(copy) : -ENOMEM;
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        if (strcmp(c, "sleep") == 0 && n >= 2) {
                struct timespec ts = { .tv_sec = atoi(w[1]) / 1000, .tv_nsec = (atoi(w[1]) % 1000) * 1000000L };
                nanosleep(&ts, NULL);
                return 0;
        }
        if (strcmp(c, "timeout") == 0 && n >= 2) {
                raw.timeout_ms = atoi(w[1]) * 1000;
                return 0;
        }
        if (strcmp(c, "crowd") == 0 && n >= 4)
                return cmd_crowd(w[1], w[2], w[3], n >= 5 ? w[4] : NULL);
        if (strcmp(c, "close") == 0) {
                raw.t = transport_free(raw.t);
                return 0;
        }
        return fail("unknown command or missing arguments: %s", c);
}

/* Split into words, remembering where the rest of the line starts after
 * each word (for TEXT and JSON arguments). */
static int run_command(char *line) {
        const char *orig = line;
        char *words[16], *rest[16];
        _cleanup_(freep) char *copy = strdup(line);
        size_t n = 0;

        if (!copy)
                return -ENOMEM;
        line[strcspn(line, "\n")] = '\0';
        copy[strcspn(copy, "\n")] = '\0';
        for (char *p = line; *p && n < ELEMENTSOF(words);) {
                p += strspn(p, " \t");
                if (!*p)
                        break;
                rest[n] = copy + (p - orig);
                words[n++] = p;
                p += strcspn(p, " \t");
                if (*p)
                        *p++ = '\0';
        }
        if (n == 0 || words[0][0] == '#')
                return 0;
        return run_words(words, n, rest);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "tls", no_argument, NULL, 't' },
                { "timeout", required_argument, NULL, 'T' },
                {}
        };
        char **script = NULL;
        size_t n_script = 0;
        char *line = NULL;
        size_t cap = 0;
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "e:", options, NULL)) >= 0) {
                switch (c) {
                case 't':
                        raw.tls = true;
                        break;
                case 'T':
                        raw.timeout_ms = atoi(optarg) * 1000;
                        break;
                case 'e':
                        script = realloc(script, (n_script + 1) * sizeof(char *));
                        if (!script)
                                return 1;
                        script[n_script++] = optarg;
                        break;
                default:
                        return 2;
                }
        }
        if (argc - optind != 2) {
                fprintf(stderr, "Usage: %s [--tls] [--timeout SEC] HOST PORT [-e COMMAND]... [< SCRIPT]\n",
                        argv[0]);
                return 2;
        }
        raw.host = argv[optind];
        raw.port = argv[optind + 1];
        frame_decoder_init(&raw.decoder, MAX_FRAME_LIMIT);
        setvbuf(stdout, NULL, _IOLBF, 0);

        if (script)
                for (size_t i = 0; i < n_script && r >= 0; i++) {
                        _cleanup_(freep) char *copy = strdup(script[i]);
                        raw.line = (unsigned) i + 1;
                        r = copy ? run_command(copy) : -ENOMEM;
                }
        else
                while (r >= 0 && getline(&line, &cap, stdin) > 0) {
                        raw.line++;
                        r = run_command(line);
                }

        free(line);
        free(script);
        transport_free(raw.t);
        frame_decoder_done(&raw.decoder);
        rsa_key_free(raw.key);
        rsa_key_free(raw.server_key);
        for (size_t i = 0; i < raw.n_known; i++)
                key_package_free(raw.known[i]);
        return r < 0 ? 1 : 0;
}
