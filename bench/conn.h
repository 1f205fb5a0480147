/* SPDX-License-Identifier: MIT */
/*
 * A load generator's client connection: TCP (and TLS 1.3 through the
 * common transport) to the relay, a frame decoder, an output buffer, and
 * the blocking steps a benchmark needs before it starts the clock (connect,
 * log in). During a timed run the caller drives many connections from one
 * poll loop with conn_flush() and conn_read_frame() in non-blocking mode.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "buf.h"
#include "frame.h"
#include "rsa.h"
#include "transport.h"

typedef struct Conn {
        Transport *t;
        FrameDecoder decoder;
        uint8_t in[16384];
        size_t in_pos, in_len;
        Buf out;                        /* frames not yet written ... */
        size_t out_off;                 /* ... from here */
} Conn;

/* TCP to 127.0.0.1:port with TCP_NODELAY (as scctl), then the TLS
 * handshake when tls; waits at most timeout_ms. */
int conn_open(int port, bool tls, int timeout_ms, Conn **ret);
Conn *conn_free(Conn *c);
static inline void conn_freep(Conn **c) { conn_free(*c); }

int conn_fd(const Conn *c);

/* Read hello, send a signed auth for user with key (receive: whether the
 * session receives), read up to welcome. Frames before welcome other than
 * hello are skipped. -EACCES when the relay answers with an error (its
 * code in *ret_error, may be NULL). The welcome signature is not checked:
 * a benchmark measures the relay, not the client's crypto. */
int conn_login(Conn *c, const char *user, const RsaKey *key, bool receive, int timeout_ms,
               const char **ret_error);
/* The same with protocol version proto at most (conn_login(): the highest
 * both speak). */
int conn_login_proto(Conn *c, const char *user, const RsaKey *key, bool receive, unsigned proto,
                     int timeout_ms, const char **ret_error);

/* The wire bytes of a frame built with the codec's frame_new_*() (o is
 * consumed; NULL is -ENOMEM, for frame_new_*()'s failure). */
int conn_wire(json_object *o, uint8_t **ret, size_t *ret_len);
/* Queue a frame (wire bytes) for writing. */
int conn_queue(Conn *c, const void *wire, size_t len);
/* Queue a frame built with the codec's frame_new_*() (o is consumed; NULL
 * is -ENOMEM, for frame_new_*()'s failure). */
int conn_queue_json(Conn *c, json_object *o);
/* Write what is queued: 0 when all went out, -EAGAIN when the socket is
 * full (poll for conn_wants_write()), or -errno. */
int conn_flush(Conn *c);
/* The same, waiting until deadline (now_monotonic_usec()'s clock). */
int conn_flush_wait(Conn *c, uint64_t deadline);
/* Poll c's socket in the direction its transport waits for, until
 * deadline: 0 when ready (or interrupted), -ETIMEDOUT. */
int conn_wait(Conn *c, uint64_t deadline);
bool conn_has_output(const Conn *c);
bool conn_wants_write(const Conn *c);

/* The next frame: 1 (payload allocated), 0 at EOF, -EAGAIN when none is
 * complete yet (timeout_ms == 0) or -ETIMEDOUT after timeout_ms. */
int conn_read_frame(Conn *c, int timeout_ms, uint8_t **ret, size_t *ret_len);
