/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "codec.h"
#include "conn.h"
#include "handshake.h"
#include "macro.h"
#include "protocol.h"
#include "util.h"

Conn *conn_free(Conn *c) {
        if (!c)
                return NULL;
        transport_free(c->t);
        frame_decoder_done(&c->decoder);
        buf_done(&c->out);
        free(c);
        return NULL;
}

int conn_fd(const Conn *c) {
        return transport_fd(c->t);
}

static uint64_t deadline_after(int timeout_ms) {
        return now_monotonic_usec() + (uint64_t) timeout_ms * 1000;
}

int conn_wait(Conn *c, uint64_t deadline) {
        struct pollfd p = { .fd = conn_fd(c), .events = transport_wants_write(c->t) ? POLLOUT : POLLIN };
        uint64_t now = now_monotonic_usec();
        int n;

        if (now >= deadline)
                return -ETIMEDOUT;
        n = poll(&p, 1, (int) ((deadline - now + 999) / 1000));
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        return n == 0 ? -ETIMEDOUT : 0;
}

int conn_open(int port, bool tls, int timeout_ms, Conn **ret) {
        _cleanup_(conn_freep) Conn *c = NULL;
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons((uint16_t) port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        uint64_t deadline = deadline_after(timeout_ms);
        int fd, r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        frame_decoder_init(&c->decoder, MAX_FRAME_LIMIT);

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* Chat is small frames; scctl does the same (cli/client.c). */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int) { 1 }, sizeof(int));
        /* Blocking connect: loopback answers at once, or refuses. */
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        r = transport_new_client(fd, tls, NULL, &c->t);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        while ((r = transport_handshake(c->t, NULL)) == -EAGAIN) {
                r = conn_wait(c, deadline);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

int conn_queue(Conn *c, const void *wire, size_t len) {
        buf_put(&c->out, wire, len);
        return c->out.error;
}

int conn_wire(json_object *o, uint8_t **ret, size_t *ret_len) {
        int r;

        if (!o)
                return -ENOMEM;
        r = frame_to_wire(o, MAX_FRAME_LIMIT, ret, ret_len);
        json_object_put(o);
        return r;
}

int conn_queue_json(Conn *c, json_object *o) {
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t len;
        int r;

        r = conn_wire(o, &wire, &len);
        if (r < 0)
                return r;
        return conn_queue(c, wire, len);
}

bool conn_has_output(const Conn *c) {
        return c->out_off < c->out.len;
}

bool conn_wants_write(const Conn *c) {
        return transport_wants_write(c->t);
}

int conn_flush(Conn *c) {
        while (c->out_off < c->out.len) {
                /* From the head of what is left, as GnuTLS wants after
                 * -EAGAIN (transport.h). */
                ssize_t n = transport_write(c->t, c->out.data + c->out_off, c->out.len - c->out_off);

                if (n < 0)
                        return (int) n;
                c->out_off += (size_t) n;
        }
        c->out.len = c->out_off = 0;
        return 0;
}

int conn_flush_wait(Conn *c, uint64_t deadline) {
        int r;

        while ((r = conn_flush(c)) == -EAGAIN) {
                r = conn_wait(c, deadline);
                if (r < 0)
                        return r;
        }
        return r;
}

int conn_read_frame(Conn *c, int timeout_ms, uint8_t **ret, size_t *ret_len) {
        uint64_t deadline = deadline_after(timeout_ms);

        for (;;) {
                while (c->in_pos < c->in_len) {
                        size_t consumed = 0;
                        int r = frame_decoder_feed(&c->decoder, c->in + c->in_pos, c->in_len - c->in_pos,
                                                   &consumed, ret, ret_len);

                        c->in_pos += consumed;
                        if (r != 0)
                                return r < 0 ? r : 1;
                }
                ssize_t n = transport_read(c->t, c->in, sizeof(c->in));
                if (n == -EAGAIN) {
                        int r;

                        if (timeout_ms == 0)
                                return -EAGAIN;
                        r = conn_wait(c, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n == 0 || n == -ECONNRESET)
                        return 0;
                if (n < 0)
                        return (int) n;
                c->in_pos = 0;
                c->in_len = (size_t) n;
        }
}

/* The next frame, parsed, within deadline. */
static int conn_read_parsed(Conn *c, uint64_t deadline, Frame **ret) {
        _cleanup_(freep) uint8_t *payload = NULL;
        uint64_t now = now_monotonic_usec();
        size_t len;
        int r;

        if (now >= deadline)
                return -ETIMEDOUT;
        r = conn_read_frame(c, (int) ((deadline - now + 999) / 1000), &payload, &len);
        if (r == 0)
                return -ECONNRESET;
        if (r < 0)
                return r;
        return frame_parse(payload, len, ret, NULL);
}

int conn_login(Conn *c, const char *user, const RsaKey *key, bool receive, int timeout_ms,
               const char **ret_error) {
        return conn_login_proto(c, user, key, receive, PROTOCOL_VERSION_MAX, timeout_ms, ret_error);
}

int conn_login_proto(Conn *c, const char *user, const RsaKey *key, bool receive, unsigned proto,
                     int timeout_ms, const char **ret_error) {
        _cleanup_(frame_freep) Frame *hello = NULL;
        json_object *auth;
        _cleanup_(rsa_key_freep) RsaKey *server = NULL;
        _cleanup_(freep) uint8_t *sig = NULL;
        uint8_t client_nonce[NONCE_LEN], binding[CHANNEL_BINDING_LEN];
        uint64_t deadline = deadline_after(timeout_ms);
        size_t sig_len, binding_len = 0;
        int r;

        r = conn_read_parsed(c, deadline, &hello);
        if (r < 0)
                return r;
        if (hello->type != FRAME_HELLO)
                return -EPROTO;
        r = rsa_key_from_spki(hello->hello.server_key, hello->hello.server_key_len, &server);
        if (r < 0)
                return r;
        r = random_bytes(client_nonce, sizeof(client_nonce));
        if (r < 0)
                return r;
        r = transport_channel_binding(c->t, binding, &binding_len);
        if (r < 0)
                return r;

        HandshakeParams p = {
                .server_nonce = hello->hello.nonce, .server_nonce_len = NONCE_LEN,
                .client_nonce = client_nonce, .client_nonce_len = NONCE_LEN,
                .user = user,
                .client_key = key->spki, .client_key_len = key->spki_len,
                .server_key = server->spki, .server_key_len = server->spki_len,
                .binding = binding, .binding_len = binding_len,
        };
        r = handshake_sign(HANDSHAKE_CLIENT, &p, key, &sig, &sig_len);
        if (r < 0)
                return r;
        auth = frame_new_auth(user, key->spki, key->spki_len, client_nonce, receive, sig, sig_len);
        proto = MIN(proto, MAX(hello->hello.proto_max, hello->hello.proto));
        if (auth && proto >= 2 && frame_auth_add_proto(auth, proto) < 0) {
                json_object_put(auth);
                auth = NULL;    /* conn_queue_json() says -ENOMEM */
        }
        r = conn_queue_json(c, auth);
        if (r < 0)
                return r;
        r = conn_flush_wait(c, deadline);
        if (r < 0)
                return r;

        for (;;) {
                _cleanup_(frame_freep) Frame *f = NULL;

                r = conn_read_parsed(c, deadline, &f);
                if (r < 0)
                        return r;
                if (f->type == FRAME_WELCOME)
                        return 0;
                if (f->type == FRAME_ERROR) {
                        static char code[64];

                        snprintf(code, sizeof(code), "%s", f->error.code);
                        if (ret_error)
                                *ret_error = code;
                        return -EACCES;
                }
        }
}
