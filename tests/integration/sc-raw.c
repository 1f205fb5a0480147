/* SPDX-License-Identifier: MIT */
/*
 * sc-raw: a scriptable raw-protocol client for integration tests. It speaks
 * the chat protocol frame by frame, so a test can do what a well-behaved
 * client never would: garbage, zero-length and oversized frames, frames out
 * of order, wrong keys, slow reading.
 *
 *   sc-raw [--tls] [--timeout SEC] [--source ADDRESS] HOST PORT < script
 *   sc-raw HOST PORT -e 'connect' -e 'key /tmp/alice.key' ...
 *
 * --source binds every connection to a local address (127.0.0.2: another
 * client machine, as far as the relay's per-address limits go).
 *
 * Every frame received is printed as "< JSON", every frame sent as
 * "> JSON", notes as "# ...". The first failed command prints
 * "sc-raw: line N: ..." on stderr and exits 1. Commands, one per line:
 *
 *   connect                 TCP (and TLS with --tls) to HOST PORT
 *   rcvbuf BYTES            SO_RCVBUF for the next connect (a slow reader)
 *   hold N                  open N more TCP connections and keep them idle
 *   handshakes N            N connections in turn, each up to the relay's
 *                           hello (TLS with --tls), then closed; prints
 *                           "# handshakes: OK of N"
 *   key FILE [BITS]         load a private key, or generate and save one
 *   proto N                 the protocol version the next auth asks for
 *                           ("proto" in auth, sent as it is; 1, the
 *                           default, sends none)
 *   auth USER [send]        read hello, send a signed auth (receive:true
 *                           unless "send"); check welcome's signature
 *                           when it comes: the RSA one, or in a session
 *                           of version 3 the welcome key's statement and
 *                           its Ed25519 signature ("# welcome signature
 *                           verified (...)")
 *   expect TYPE [CODE]      the next frame is TYPE (an error: with CODE)
 *   wait TYPE [CODE]        read frames until TYPE (with CODE) arrives
 *   eof                     read frames until the server closes
 *   silence MS              no frame arrives within MS milliseconds
 *   lookup USER             send lookup (the answer teaches USER's key)
 *   bundle USER             send lookup with "prekeys":true; a bundle in
 *                           the answer is checked (its SPK's signature
 *                           under USER's key) and printed as "# bundle of
 *                           USER: spk ID opk ID|none"
 *   publish SPK FIRST N [forged]
 *                           publish an SPK of id SPK signed with the key
 *                           loaded (forged: with a fresh key instead) and
 *                           N OPKs of ids FIRST...
 *   send USER TEXT...       seal TEXT to USER (key from lookup/presence)
 *   flood USER POOL SEC     send to USER as fast as the socket takes it for
 *                           SEC seconds (POOL messages sealed first, then
 *                           sent round and round), reading every answer;
 *                           prints "# flood: ... sent, ... accepted, ..."
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
 * It can also play the relay, to test what a client does when the relay is
 * hostile (HOST PORT is then the address to listen on, port 0 for any):
 *
 *   serverkey FILE          load or generate (and save) the relay's key
 *   listen                  listen, printing "# port N"
 *   persona USER FILE [BITS] a user whose private key (loaded or made) we
 *                           hold: we seal as USER and vouch for the key
 *                           as USER's (also for the client's own name)
 *   accept TTL              take the next connection, send hello, check
 *                           its auth and answer welcome with queue_ttl TTL
 *   refuse CODE             the same, but answer the auth with error CODE
 *                           (no id: the login refused)
 *   offer N                 hello's proto_max in the next accepts (a relay
 *                           of version N)
 *   welcome MODE            how accept signs a welcome of version 3 (when
 *                           the client asks 3): good (the default), or a
 *                           bad one: uncertified (welcome_key names the
 *                           Ed25519 key that signed, but the statement is
 *                           on another), other-key (a good statement, the
 *                           signature by another key), expired (a good
 *                           statement past its not_after), v1-context
 *                           (the Ed25519 signature over T_server of
 *                           version 1), no-key (the RSA welcome of version
 *                           2, no welcome_key)
 *   deliver FROM AGE TEXT...  seal TEXT as persona FROM to the client,
 *                           dated AGE seconds ago, and deliver it
 *   redeliver N             deliver the N-th envelope (from 1) again, unchanged
 *   reuse FROM N TEXT...    seal TEXT under the N-th envelope's id
 *   synced                  send synced
 *   mute on|off             leave sends unanswered (as if the connection
 *                           broke before "accepted" went out)
 *
 * While playing the relay, lookups are answered from the personas (else
 * no_such_user), pings with pong, and a send with accepted, after trying
 * to open it with the recipient persona's key ("# opened send to USER:
 * TEXT" or "# cannot open send to USER: REASON"); acks print "# ack SEQ".
 *
 * Lines that are empty or start with '#' are ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "b64.h"
#include "buf.h"
#include "codec.h"
#include "envelope.h"
#include "frame.h"
#include "handshake.h"
#include "macro.h"
#include "protocol.h"
#include "rsa.h"
#include "suite2.h"
#include "transport.h"
#include "util.h"

#define MAX_KNOWN 64
#define MAX_PERSONAS 8

typedef struct Persona {
        char user[USERNAME_MAX + 1];
        RsaKey *key;
} Persona;

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
        unsigned proto;                 /* what auth asks for ("proto") */
        unsigned session_proto;         /* the version of the session: the lower */
        KeyPackage *known[MAX_KNOWN];
        size_t n_known;
        bool autoack;
        uint64_t next_id;
        int rcvbuf;
        const char *source;             /* --source: local address to bind */
        int *held;                      /* "hold" connections */
        size_t n_held;

        /* Playing the relay. */
        bool serving;
        bool mute;
        int listen_fd;
        gnutls_certificate_credentials_t creds;
        Persona personas[MAX_PERSONAS];
        size_t n_personas;
        RsaKey *peer_key;               /* the client's, from its auth */
        uint64_t next_seq;
        json_object *delivered[MAX_KNOWN];     /* what deliver sealed, in order */
        uint8_t delivered_id[MAX_KNOWN][MSG_ID_LEN];
        size_t n_delivered;
        unsigned welcome_mode;          /* WelcomeMode */
        unsigned offer;                 /* hello's proto_max; 0: PROTOCOL_VERSION_MAX */
} Raw;

typedef enum WelcomeMode {
        WELCOME_GOOD,
        WELCOME_UNCERTIFIED,
        WELCOME_OTHER_KEY,
        WELCOME_EXPIRED,
        WELCOME_V1_CONTEXT,
        WELCOME_NO_KEY,
        _WELCOME_MODE_MAX,
} WelcomeMode;

static const char *const welcome_modes[_WELCOME_MODE_MAX] = {
        [WELCOME_GOOD] = "good",
        [WELCOME_UNCERTIFIED] = "uncertified",
        [WELCOME_OTHER_KEY] = "other-key",
        [WELCOME_EXPIRED] = "expired",
        [WELCOME_V1_CONTEXT] = "v1-context",
        [WELCOME_NO_KEY] = "no-key",
};

static Raw raw = { .timeout_ms = 10000, .next_id = 1, .listen_fd = -EBADF, .next_seq = 1, .proto = 1 };

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
        const KeyPackage *kp = e ? known_package(e->from) : NULL;
        _cleanup_(rsa_key_freep) RsaKey *sender = NULL;
        _cleanup_(freep) char *text = NULL;
        EnvelopeError err = ENVELOPE_OK;
        size_t len;
        int r;

        if (!e)
                printf("# cannot open seq %" PRIu64 ": %s\n", f->deliver.seq,
                       envelope_error_to_string(f->deliver.error));
        else if (!kp || rsa_key_from_spki(kp->key, kp->key_len, &sender) < 0)
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

static const Persona *persona(const char *user) {
        for (size_t i = 0; i < raw.n_personas; i++)
                if (strcmp(raw.personas[i].user, user) == 0)
                        return &raw.personas[i];
        return NULL;
}

/* A send to the relay we play: try to read it as its recipient would
 * (with the key we vouched for), then accept it. */
static int serve_send(const Frame *f) {
        const Envelope *e = f->send.envelope;
        const Persona *to = persona(e->to);
        _cleanup_(freep) char *text = NULL, *msg = NULL;
        EnvelopeError err = ENVELOPE_OK;
        size_t len;
        int r;

        if (!to)
                printf("# cannot open send to %s: no persona\n", e->to);
        else {
                EnvelopeOpenParams p = {
                        .me = e->to, .my_key = to->key, .sender_key = raw.peer_key,
                        .now = now_unix(), .window = 400 * 86400,
                };
                r = envelope_open(e, &p, &text, &len, &err);
                if (r < 0)
                        printf("# cannot open send to %s: %s\n", e->to,
                               r == -EBADMSG ? envelope_error_to_string(err) : strerror(-r));
                else
                        printf("# opened send to %s: %s\n", e->to, text);
        }
        if (raw.mute)
                return 0;
        if (b64_encode(e->id, MSG_ID_LEN, &msg) < 0)
                return fail("out of memory");
        return send_json(frame_new_accepted(f->send.id, msg, false));
}

static int serve_request(const Frame *f) {
        if (!f)
                return 0;
        switch (f->type) {
        case FRAME_LOOKUP: {
                const KeyPackage *kp = known_package(f->lookup.user);

                if (kp)
                        return send_json(frame_new_key(f->lookup.id, kp));
                return send_json(frame_new_error(&f->lookup.id, ERR_NO_SUCH_USER, NULL));
        }
        case FRAME_PING:
                return send_json(frame_new_simple(FRAME_PONG));
        case FRAME_SEND:
                return serve_send(f);
        case FRAME_ACK:
                printf("# ack %" PRIu64 "\n", f->ack.seq);
                return 0;
        default:
                return 0;
        }
}

/* Print a received frame and learn from it. *ret gets the parsed frame
 * (NULL when it did not parse). */
/* A bundle's SPK must verify under its user's key, as a client checks it. */
static int print_bundle(const Frame *f) {
        _cleanup_(rsa_key_freep) RsaKey *k = NULL;
        const PrekeyBundle *b = &f->key.bundle;

        if (!f->key.has_bundle)
                return 0;
        if (rsa_key_from_spki(f->key.package->key, f->key.package->key_len, &k) < 0 ||
            signed_prekey_verify(f->key.package->user, k, &b->spk) < 0)
                return fail("the bundle of %s does not verify", f->key.package->user);
        if (b->has_opk)
                printf("# bundle of %s: spk %" PRIu32 " opk %" PRIu32 "\n", f->key.package->user,
                       b->spk.id, b->opk.id);
        else
                printf("# bundle of %s: spk %" PRIu32 " opk none\n", f->key.package->user, b->spk.id);
        return 0;
}

/* welcome's signature, as scctl checks it: in a session of version 3 the
 * server key's statement on the welcome key (and its time), then the
 * Ed25519 signature over T_server3; before, the RSA one over T_server. */
static int verify_welcome(const Frame *f) {
        const WelcomeKey *wk = f->welcome.welcome_key;
        uint8_t binding[CHANNEL_BINDING_LEN];
        size_t blen = 0;
        int r;

        if (transport_channel_binding(raw.t, binding, &blen) < 0)
                return fail("no channel binding");
        HandshakeParams p = {
                .server_nonce = raw.server_nonce, .server_nonce_len = NONCE_LEN,
                .client_nonce = raw.client_nonce, .client_nonce_len = NONCE_LEN,
                .user = raw.user,
                .client_key = raw.key->spki, .client_key_len = raw.key->spki_len,
                .server_key = raw.server_key->spki, .server_key_len = raw.server_key->spki_len,
                .binding = binding, .binding_len = blen,
        };

        if (raw.session_proto < PROTOCOL_VERSION_WELCOME_KEY) {
                if (handshake_verify(HANDSHAKE_SERVER, &p, raw.server_key, f->welcome.sig,
                                     f->welcome.sig_len) < 0)
                        return fail("welcome signature does not verify");
                printf("# welcome signature verified (RSA, protocol %u)\n", raw.session_proto);
                return 0;
        }
        if (!wk)
                return fail("a welcome of protocol %u without welcome_key", raw.session_proto);
        r = welcome_key_verify(wk, raw.server_key, now_unix());
        if (r < 0)
                return fail("the welcome key's statement: %s", strerror(-r));
        if (handshake_verify_ed25519(HANDSHAKE_SERVER3, &p, wk->key, f->welcome.sig, f->welcome.sig_len) < 0)
                return fail("welcome signature does not verify under the welcome key");
        printf("# welcome signature verified (Ed25519 welcome key until %" PRIu64 ", protocol %u)\n",
               wk->not_after, raw.session_proto);
        return 0;
}

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
                        r = verify_welcome(f);
                        if (r < 0)
                                return r;
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
                r = print_bundle(f);
                if (r < 0)
                        return r;
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
        if (raw.serving) {
                r = serve_request(f);
                if (r < 0)
                        return r;
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

/* A connected TCP socket to HOST PORT, from --source if given, in blocking
 * mode. -errno with *ret_what naming the step that failed. */
static int tcp_connect(int *ret_fd, const char **ret_what) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        int fd, r;

        *ret_what = "getaddrinfo";
        r = getaddrinfo(raw.host, raw.port, &hints, &ai);
        if (r != 0)
                return -EINVAL;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        /* As scctl does (cli/client.c): without it the client's TLS
         * Finished, written right after its ChangeCipherSpec, waits 40 ms
         * for the relay's delayed ACK once the relay's handshake is fast,
         * and "handshakes" would measure that timer. */
        if (fd >= 0)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int) { 1 }, sizeof(int));
        if (fd >= 0 && raw.rcvbuf > 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &raw.rcvbuf, sizeof(raw.rcvbuf));
        if (fd >= 0 && raw.source) {
                /* Several clients from one machine: 127.0.0.2, 127.0.0.3... */
                struct addrinfo *src = NULL;

                *ret_what = "bind";
                r = getaddrinfo(raw.source, NULL, &hints, &src);
                if (r != 0 || bind(fd, src->ai_addr, src->ai_addrlen) < 0) {
                        r = r != 0 ? -EINVAL : -errno;
                        if (src)
                                freeaddrinfo(src);
                        freeaddrinfo(ai);
                        safe_close(fd);
                        return r;
                }
                freeaddrinfo(src);
        }
        *ret_what = "connect";
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                r = -errno;
                freeaddrinfo(ai);
                safe_close(fd);
                return r;
        }
        freeaddrinfo(ai);
        *ret_fd = fd;
        return 0;
}

/* The transport over fd (taken even on failure), either side, and the TLS
 * handshake when there is TLS. -errno with *ret_what naming the step. */
static int start_transport(int fd, bool server, const char **ret_what) {
        uint64_t deadline = now_ms() + (uint64_t) raw.timeout_ms;
        const char *error = NULL;
        int r;

        *ret_what = "transport";
        r = server ? transport_new_server(fd, raw.tls ? raw.creds : NULL, &raw.t) :
                     transport_new_client(fd, raw.tls, NULL, &raw.t);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        *ret_what = "TLS handshake";
        while ((r = transport_handshake(raw.t, &error)) == -EAGAIN) {
                r = wait_ready(deadline, transport_wants_write(raw.t));
                if (r < 0)
                        return r;
        }
        if (r < 0 && error)
                *ret_what = error;
        return r;
}

/* TCP, then TLS with --tls, into raw.t. -errno with *ret_what. */
static int transport_connect(const char **ret_what) {
        int fd, r;

        transport_free(raw.t);
        raw.t = NULL;
        frame_decoder_done(&raw.decoder);
        frame_decoder_init(&raw.decoder, MAX_FRAME_LIMIT);
        raw.rpos = raw.rlen = 0;
        raw.auth_sent = false;

        r = tcp_connect(&fd, ret_what);
        if (r < 0)
                return r;
        /* The transport wants a non-blocking socket; timeouts are ours. */
        *ret_what = "fcntl";
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        return start_transport(fd, false, ret_what);
}

static int cmd_connect(void) {
        const char *what = NULL;
        int r = transport_connect(&what);

        if (r < 0)
                return fail("%s: %s", what, strerror(-r));
        if (raw.tls)
                printf("# TLS handshake done\n");
        return 0;
}

/* Open N more TCP connections and keep them, silent, until exit: idle
 * clients that take the relay's connection slots. */
static int cmd_hold(int n) {
        for (int i = 0; i < n; i++) {
                const char *what = NULL;
                int *h, fd, r;

                r = tcp_connect(&fd, &what);
                if (r < 0)
                        return fail("hold: %s: %s", what, strerror(-r));
                h = realloc(raw.held, (raw.n_held + 1) * sizeof(int));
                if (!h) {
                        safe_close(fd);
                        return fail("out of memory");
                }
                raw.held = h;
                raw.held[raw.n_held++] = fd;
        }
        printf("# holding %zu connections\n", raw.n_held);
        return 0;
}

/* N connections one after the other, each until the relay's hello (after
 * the TLS handshake with --tls), then closed: how many got that far. */
static int cmd_handshakes(int n) {
        unsigned ok = 0;

        for (int i = 0; i < n; i++) {
                _cleanup_(freep) uint8_t *payload = NULL;
                const char *what = NULL;
                size_t len;

                if (transport_connect(&what) >= 0 && read_frame(raw.timeout_ms, &payload, &len) > 0)
                        ok++;
                raw.t = transport_free(raw.t);
        }
        printf("# handshakes: %u of %d\n", ok, n);
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

static int cmd_bundle(const char *user) {
        json_object *o = frame_new_lookup(raw.next_id++, user);

        if (frame_lookup_add_prekeys(o) < 0) {
                json_object_put(o);
                return fail("out of memory");
        }
        return send_json(o);
}

static int cmd_publish(uint32_t spk_id, uint32_t first, size_t n, bool forged) {
        _cleanup_(rsa_key_freep) RsaKey *other = NULL;
        _cleanup_(freep) OneTimePrekey *opks = NULL;
        uint8_t priv[X25519_KEY_LEN];
        SignedPrekey spk;

        if (!raw.key || !raw.user[0])
                return fail("publish needs a key and auth first");
        if (forged && rsa_key_generate(2048, &other) < 0)
                return fail("no key");
        if (signed_prekey_make(raw.user, forged ? other : raw.key, spk_id, (uint64_t) time(NULL), NULL,
                               priv, &spk) < 0)
                return fail("cannot make a signed prekey");
        opks = calloc(n + 1, sizeof(OneTimePrekey));
        if (!opks)
                return fail("out of memory");
        for (size_t i = 0; i < n; i++)
                if (one_time_prekey_make(first + (uint32_t) i, NULL, priv, &opks[i]) < 0)
                        return fail("cannot make a one-time prekey");
        /* Private halves are of no use to a test: only the relay's side is. */
        explicit_bzero(priv, sizeof(priv));
        return send_json(frame_new_publish(raw.next_id++, &spk, opks, n));
}

static int cmd_auth(const char *user, bool receive_flag) {
        _cleanup_(frame_freep) Frame *f = NULL;
        _cleanup_(freep) uint8_t *sig = NULL;
        json_object *auth;
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
        raw.session_proto = MAX(MIN(raw.proto, MAX(f->hello.proto_max, f->hello.proto)), 1u);
        auth = frame_new_auth(user, raw.key->spki, raw.key->spki_len, raw.client_nonce, receive_flag, sig,
                              sig_len);
        if (auth && raw.proto > 1 && frame_auth_add_proto(auth, raw.proto) < 0)
                return fail("out of memory");
        raw.auth_sent = true;
        return send_json(auth);
}

/* USER's key, from presence or a lookup (printing what comes meanwhile). */
static int recipient_key(const char *to, RsaKey **ret) {
        const KeyPackage *kp = known_package(to);
        int r;

        if (!kp) {
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
        if (rsa_key_from_spki(kp->key, kp->key_len, ret) < 0)
                return fail("unusable key for %s", to);
        return 0;
}

/* A send frame with TEXT sealed to USER, on the wire. */
static int seal_send(const char *to, const RsaKey *recipient, const char *text, uint8_t **ret, size_t *ret_len) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        json_object *env = NULL, *o;
        int r;

        r = envelope_seal(raw.user, raw.key, to, recipient, now_unix(), text, strlen(text), &e);
        if (r < 0)
                return fail("seal: %s", strerror(-r));
        r = envelope_to_json(e, &env);
        if (r < 0)
                return fail("envelope: %s", strerror(-r));
        o = frame_new_send(raw.next_id++, env);
        json_object_put(env);
        if (!o)
                return fail("out of memory");
        r = frame_to_wire(o, MAX_FRAME_LIMIT, ret, ret_len);
        json_object_put(o);
        return r < 0 ? fail("cannot encode frame: %s", strerror(-r)) : 0;
}

static int cmd_send(const char *to, const char *text) {
        _cleanup_(rsa_key_freep) RsaKey *recipient = NULL;
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t len;
        int r;

        r = recipient_key(to, &recipient);
        if (r < 0)
                return r;
        r = seal_send(to, recipient, text, &wire, &len);
        if (r < 0)
                return r;
        printf("> %.*s\n", (int) (len - 4), (const char *) wire + 4);
        return write_all(wire, len);
}

/* A client that sends as fast as it can for SECONDS: POOL messages sealed
 * beforehand (so that our own signing does not slow us down; then sent
 * again and again), written whenever the socket takes them, with every
 * answer read (and counted, not printed) so that the relay never stops
 * reading us for output we leave waiting. Prints
 * "# flood: S sent, A accepted, L rate_limited, O other in T s". */
static int cmd_flood(const char *to, int pool_n, int seconds) {
        _cleanup_(rsa_key_freep) RsaKey *recipient = NULL;
        uint8_t **pool = NULL, buf[16384];
        size_t *pool_len = NULL, cur = 0, off = 0;
        uint64_t sent = 0, accepted = 0, limited = 0, other = 0, start, end;
        int r = 0;

        if (pool_n <= 0 || seconds <= 0)
                return fail("flood needs a pool and a number of seconds");
        r = recipient_key(to, &recipient);
        if (r < 0)
                return r;
        pool = calloc((size_t) pool_n, sizeof(*pool));
        pool_len = calloc((size_t) pool_n, sizeof(*pool_len));
        if (!pool || !pool_len) {
                r = fail("out of memory");
                goto finish;
        }
        for (int i = 0; i < pool_n && r >= 0; i++) {
                char text[64];

                snprintf(text, sizeof(text), "flood %d", i);
                r = seal_send(to, recipient, text, &pool[i], &pool_len[i]);
        }
        if (r < 0)
                goto finish;

        printf("# flooding %s for %d s\n", to, seconds);
        start = now_ms();
        end = start + (uint64_t) seconds * 1000;
        while (now_ms() < end) {
                struct pollfd p = { .fd = transport_fd(raw.t), .events = POLLIN | POLLOUT };
                ssize_t n;

                if (poll(&p, 1, 100) < 0 && errno != EINTR) {
                        r = fail("poll: %s", strerror(errno));
                        goto finish;
                }
                /* Read everything there is, TLS records GnuTLS holds too. */
                for (;;) {
                        n = transport_read(raw.t, buf, sizeof(buf));
                        if (n == -EAGAIN)
                                break;
                        if (n <= 0) {
                                r = fail("the relay closed the connection after %" PRIu64 " sends", sent);
                                goto finish;
                        }
                        for (size_t pos = 0; pos < (size_t) n;) {
                                _cleanup_(freep) uint8_t *payload = NULL;
                                size_t consumed = 0, len = 0;

                                r = frame_decoder_feed(&raw.decoder, buf + pos, (size_t) n - pos, &consumed,
                                                       &payload, &len);
                                pos += consumed;
                                if (r < 0) {
                                        r = fail("bad framing from the server");
                                        goto finish;
                                }
                                if (r == 0)
                                        continue;
                                if (memmem(payload, len, "\"rate_limited\"", 14))
                                        limited++;
                                else if (memmem(payload, len, "\"accepted\"", 10))
                                        accepted++;
                                else
                                        other++;
                        }
                }
                /* Write on; GnuTLS wants the same bytes again after EAGAIN. */
                for (unsigned k = 0; k < 64; k++) {
                        n = transport_write(raw.t, pool[cur] + off, pool_len[cur] - off);
                        if (n == -EAGAIN)
                                break;
                        if (n < 0) {
                                r = fail("write: %s", strerror((int) -n));
                                goto finish;
                        }
                        off += (size_t) n;
                        if (off == pool_len[cur]) {
                                off = 0;
                                cur = (cur + 1) % (size_t) pool_n;
                                sent++;
                        }
                }
        }
        printf("# flood: %" PRIu64 " sent, %" PRIu64 " accepted, %" PRIu64 " rate_limited, %" PRIu64
               " other in %d s\n", sent, accepted, limited, other, seconds);
        r = 0;

finish:
        for (int i = 0; pool && i < pool_n; i++)
                free(pool[i]);
        free(pool);
        free(pool_len);
        return r;
}

static int cmd_serverkey(const char *path) {
        _cleanup_(freep) char *cert = NULL;
        int r;

        rsa_key_free(raw.server_key);
        raw.server_key = NULL;
        r = rsa_key_load_private(path, &raw.server_key);
        if (r == -ENOENT) {
                r = rsa_key_generate(2048, &raw.server_key);
                if (r >= 0)
                        r = rsa_key_save_private(raw.server_key, path);
        }
        if (r < 0)
                return fail("server key %s: %s", path, strerror(-r));
        printf("# server key %s\n", raw.server_key->fingerprint);
        if (!raw.tls)
                return 0;
        if (asprintf(&cert, "%s.crt", path) < 0)
                return fail("out of memory");
        r = tls_make_self_signed(path, "sc-raw", cert);
        if (r >= 0)
                r = tls_credentials_load(cert, path, &raw.creds);
        if (r < 0)
                return fail("TLS credentials: %s", strerror(-r));
        return 0;
}

static int cmd_listen(void) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        struct addrinfo *ai = NULL;
        int r;

        r = getaddrinfo(raw.host, raw.port, &hints, &ai);
        if (r != 0)
                return fail("%s:%s: %s", raw.host, raw.port, gai_strerror(r));
        raw.listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (raw.listen_fd < 0 || bind(raw.listen_fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
            listen(raw.listen_fd, 4) < 0 || getsockname(raw.listen_fd, (struct sockaddr *) &sa, &salen) < 0) {
                r = -errno;
                freeaddrinfo(ai);
                return fail("listen: %s", strerror(-r));
        }
        freeaddrinfo(ai);
        raw.serving = true;
        printf("# port %u\n", ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &sa)->sin6_port :
                                                               ((struct sockaddr_in *) &sa)->sin_port));
        return 0;
}

static int cmd_persona(const char *user, const char *path, const char *bits) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        Persona *p;
        int r;

        if (!raw.server_key || raw.n_personas >= MAX_PERSONAS || !username_valid(user))
                return fail("persona needs a server key, a free slot and a valid name");
        p = &raw.personas[raw.n_personas];
        r = rsa_key_load_private(path, &p->key);
        if (r == -ENOENT) {
                r = rsa_key_generate(bits ? (unsigned) atoi(bits) : 2048, &p->key);
                if (r >= 0)
                        r = rsa_key_save_private(p->key, path);
        }
        if (r < 0)
                return fail("key %s: %s", path, strerror(-r));
        snprintf(p->user, sizeof(p->user), "%s", user);
        raw.n_personas++;
        r = key_package_sign(raw.server_key, user, p->key->spki, p->key->spki_len, now_unix(), &kp);
        if (r < 0)
                return fail("key package: %s", strerror(-r));
        learn_package(kp);
        printf("# persona %s %s\n", user, p->key->fingerprint);
        return 0;
}

/* The welcome's signature of the session's version proto (and the
 * statement, in version 3), as raw.welcome_mode says. */
static int welcome_sign(const HandshakeParams *p, unsigned proto, uint8_t **ret_sig, size_t *ret_sig_len,
                        WelcomeKey **ret_wk) {
        _cleanup_(ed25519_key_freep) Ed25519Key *signer = NULL, *other = NULL;
        _cleanup_(welcome_key_freep) WelcomeKey *wk = NULL;
        _cleanup_(freep) uint8_t *sig = NULL;
        WelcomeMode mode = raw.welcome_mode;
        uint64_t not_after = now_unix() + WELCOME_KEY_LIFETIME;
        int r;

        if (proto < PROTOCOL_VERSION_WELCOME_KEY || mode == WELCOME_NO_KEY)
                return handshake_sign(HANDSHAKE_SERVER, p, raw.server_key, ret_sig, ret_sig_len);

        if (mode == WELCOME_EXPIRED)
                not_after = now_unix() - 60;
        r = ed25519_key_generate(&signer);
        if (r >= 0)
                r = ed25519_key_generate(&other);
        if (r < 0)
                return r;
        /* The statement is on the key that signs, but for these two. */
        r = welcome_key_sign(raw.server_key,
                             mode == WELCOME_UNCERTIFIED || mode == WELCOME_OTHER_KEY ? other->pub : signer->pub,
                             not_after, &wk);
        if (r < 0)
                return r;
        if (mode == WELCOME_UNCERTIFIED)
                memcpy(wk->key, signer->pub, ED25519_KEY_LEN);
        sig = malloc(ED25519_SIG_LEN);
        if (!sig)
                return -ENOMEM;
        r = handshake_sign_ed25519(mode == WELCOME_V1_CONTEXT ? HANDSHAKE_SERVER : HANDSHAKE_SERVER3, p, signer,
                                   sig);
        if (r < 0)
                return r;
        *ret_sig = TAKE_PTR(sig);
        *ret_sig_len = ED25519_SIG_LEN;
        *ret_wk = TAKE_PTR(wk);
        return 0;
}

static int cmd_welcome(const char *mode) {
        for (unsigned i = 0; i < _WELCOME_MODE_MAX; i++)
                if (strcmp(mode, welcome_modes[i]) == 0) {
                        raw.welcome_mode = i;
                        return 0;
                }
        return fail("no welcome mode %s", mode);
}

static int cmd_accept(uint64_t ttl, const char *refuse) {
        _cleanup_(frame_freep) Frame *f = NULL;
        _cleanup_(key_package_freep) KeyPackage *self = NULL;
        _cleanup_(welcome_key_freep) WelcomeKey *wk = NULL;
        json_object *hello, *welcome;
        unsigned proto;
        _cleanup_(freep) uint8_t *sig = NULL;
        struct pollfd pfd = { .fd = raw.listen_fd, .events = POLLIN };
        const char *what = NULL;
        uint8_t binding[CHANNEL_BINDING_LEN];
        size_t sig_len, blen = 0;
        int fd, r;

        if (raw.listen_fd < 0 || !raw.server_key)
                return fail("accept needs serverkey and listen first");
        raw.t = transport_free(raw.t);
        raw.peer_key = rsa_key_free(raw.peer_key);
        frame_decoder_done(&raw.decoder);
        frame_decoder_init(&raw.decoder, MAX_FRAME_LIMIT);
        raw.rpos = raw.rlen = 0;

        r = poll(&pfd, 1, raw.timeout_ms);
        if (r <= 0)
                return fail("no connection to accept");
        fd = accept4(raw.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
                return fail("accept: %m");
        r = start_transport(fd, true, &what);
        if (r < 0)
                return fail("%s: %s", what, strerror(-r));
        if (transport_channel_binding(raw.t, binding, &blen) < 0 ||
            random_bytes(raw.server_nonce, NONCE_LEN) < 0)
                return fail("no channel binding or randomness");
        hello = frame_new_hello(raw.server_key->spki, raw.server_key->spki_len, raw.server_nonce);
        if (hello && raw.offer > 0)
                json_object_object_add(hello, "proto_max", json_object_new_int((int) raw.offer));
        r = send_json(hello);
        if (r < 0)
                return r;

        r = receive(raw.timeout_ms, &f);
        if (r <= 0 || !f || f->type != FRAME_AUTH)
                return fail("expected auth");
        if (rsa_key_from_spki(f->auth.key, f->auth.key_len, &raw.peer_key) < 0)
                return fail("unusable client key");
        snprintf(raw.user, sizeof(raw.user), "%s", f->auth.user);
        HandshakeParams p = {
                .server_nonce = raw.server_nonce, .server_nonce_len = NONCE_LEN,
                .client_nonce = f->auth.nonce, .client_nonce_len = NONCE_LEN,
                .user = raw.user,
                .client_key = f->auth.key, .client_key_len = f->auth.key_len,
                .server_key = raw.server_key->spki, .server_key_len = raw.server_key->spki_len,
                .binding = binding, .binding_len = blen,
        };
        if (handshake_verify(HANDSHAKE_CLIENT, &p, raw.peer_key, f->auth.sig, f->auth.sig_len) < 0)
                return fail("the client's auth does not verify");
        if (refuse)
                return send_json(frame_new_error(NULL, refuse, "refused by the script"));
        /* The lower of the two versions, as the relay takes it. */
        proto = MIN(MAX(f->auth.proto, 1u), (unsigned) PROTOCOL_VERSION_MAX);
        printf("# client speaks protocol %u\n", proto);
        r = welcome_sign(&p, proto, &sig, &sig_len, &wk);
        if (r >= 0)
                r = key_package_sign(raw.server_key, raw.user, f->auth.key, f->auth.key_len, now_unix(), &self);
        if (r < 0)
                return fail("signing: %s", strerror(-r));
        FrameLimits limits = {
                .max_frame = DEFAULT_MAX_FRAME, .max_text = DEFAULT_MAX_TEXT,
                .queue_ttl = ttl, .idle_timeout = 300,
        };
        welcome = frame_new_welcome(sig, sig_len, self, "0123456789abcdef", &limits);
        if (welcome && wk && frame_welcome_add_welcome_key(welcome, wk) < 0)
                return fail("out of memory");
        return send_json(welcome);
}

static int deliver_json(json_object *env) {
        return send_json(frame_new_deliver(raw.next_seq++, env));
}

static int cmd_deliver(const char *from, uint64_t age, const uint8_t *id, const char *text) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        const Persona *p = persona(from);
        json_object *env = NULL;
        int r;

        if (!p || !raw.peer_key)
                return fail("deliver needs persona %s and a client", from);
        r = envelope_seal_id(from, p->key, raw.user, raw.peer_key, now_unix() - age, id, text,
                             strlen(text), &e);
        if (r >= 0)
                r = envelope_to_json(e, &env);
        if (r < 0)
                return fail("seal: %s", strerror(-r));
        if (raw.n_delivered >= MAX_KNOWN) {
                json_object_put(env);
                return fail("too many envelopes");
        }
        raw.delivered[raw.n_delivered] = env;
        memcpy(raw.delivered_id[raw.n_delivered++], e->id, MSG_ID_LEN);
        return deliver_json(env);
}

static int delivered_index(const char *n, size_t *ret) {
        unsigned long i = strtoul(n, NULL, 10);

        if (i == 0 || i > raw.n_delivered)
                return fail("no envelope %s delivered", n);
        *ret = i - 1;
        return 0;
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
        if (strcmp(c, "hold") == 0 && n >= 2)
                return cmd_hold(atoi(w[1]));
        if (strcmp(c, "handshakes") == 0 && n >= 2)
                return cmd_handshakes(atoi(w[1]));
        if (strcmp(c, "rcvbuf") == 0 && n >= 2) {
                raw.rcvbuf = atoi(w[1]);
                return 0;
        }
        if (strcmp(c, "key") == 0 && n >= 2)
                return cmd_key(w[1], n >= 3 ? w[2] : NULL);
        if (strcmp(c, "proto") == 0 && n >= 2) {
                raw.proto = (unsigned) strtoul(w[1], NULL, 10);
                return 0;
        }
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
        if (strcmp(c, "bundle") == 0 && n >= 2)
                return cmd_bundle(w[1]);
        if (strcmp(c, "publish") == 0 && n >= 4)
                return cmd_publish((uint32_t) strtoul(w[1], NULL, 10), (uint32_t) strtoul(w[2], NULL, 10),
                                   strtoul(w[3], NULL, 10), n >= 5 && strcmp(w[4], "forged") == 0);
        if (strcmp(c, "send") == 0 && n >= 3)
                return cmd_send(w[1], rest_after[2]);
        if (strcmp(c, "flood") == 0 && n >= 4)
                return cmd_flood(w[1], atoi(w[2]), atoi(w[3]));
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
        if (strcmp(c, "serverkey") == 0 && n >= 2)
                return cmd_serverkey(w[1]);
        if (strcmp(c, "listen") == 0)
                return cmd_listen();
        if (strcmp(c, "persona") == 0 && n >= 3)
                return cmd_persona(w[1], w[2], n >= 4 ? w[3] : NULL);
        if (strcmp(c, "offer") == 0 && n >= 2) {
                raw.offer = (unsigned) strtoul(w[1], NULL, 10);
                return 0;
        }
        if (strcmp(c, "welcome") == 0 && n >= 2)
                return cmd_welcome(w[1]);
        if (strcmp(c, "accept") == 0 && n >= 2)
                return cmd_accept(strtoull(w[1], NULL, 10), NULL);
        if (strcmp(c, "refuse") == 0 && n >= 2)
                return cmd_accept(0, w[1]);
        if (strcmp(c, "deliver") == 0 && n >= 4)
                return cmd_deliver(w[1], strtoull(w[2], NULL, 10), NULL, rest_after[3]);
        if (strcmp(c, "redeliver") == 0 && n >= 2) {
                size_t i = 0;

                return delivered_index(w[1], &i) < 0 ? -EINVAL : deliver_json(raw.delivered[i]);
        }
        if (strcmp(c, "reuse") == 0 && n >= 4) {
                size_t i = 0;

                return delivered_index(w[2], &i) < 0 ? -EINVAL :
                       cmd_deliver(w[1], 0, raw.delivered_id[i], rest_after[3]);
        }
        if (strcmp(c, "mute") == 0 && n >= 2) {
                raw.mute = strcmp(w[1], "on") == 0;
                return 0;
        }
        if (strcmp(c, "synced") == 0)
                return send_json(frame_new_synced());
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
                { "source", required_argument, NULL, 'S' },
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
                case 'S':
                        raw.source = optarg;
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
                fprintf(stderr, "Usage: %s [--tls] [--timeout SEC] [--source ADDRESS] HOST PORT [-e COMMAND]... [< SCRIPT]\n",
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
        for (size_t i = 0; i < raw.n_held; i++)
                safe_close(raw.held[i]);
        free(raw.held);
        frame_decoder_done(&raw.decoder);
        rsa_key_free(raw.key);
        rsa_key_free(raw.server_key);
        rsa_key_free(raw.peer_key);
        for (size_t i = 0; i < raw.n_personas; i++)
                rsa_key_free(raw.personas[i].key);
        for (size_t i = 0; i < raw.n_delivered; i++)
                json_object_put(raw.delivered[i]);
        safe_close(raw.listen_fd);
        if (raw.creds)
                gnutls_certificate_free_credentials(raw.creds);
        for (size_t i = 0; i < raw.n_known; i++)
                key_package_free(raw.known[i]);
        return r < 0 ? 1 : 0;
}
