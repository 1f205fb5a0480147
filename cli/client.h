/* SPDX-License-Identifier: MIT */
/*
 * One connection to the relay: TCP (+ TLS), the client side of the
 * handshake (protocol.md section 4) with the server key checked against
 * known_servers, and frame I/O on a non-blocking socket driven by poll(2).
 *
 * The interface is pull-style: client_wait() runs the poll loop until a
 * frame arrives, one of the caller's descriptors becomes readable, or the
 * deadline passes, so each command reads as a straight sequence of steps.
 * Keepalive (ping/pong) is handled inside.
 *
 * Like the rest of scctl, functions that fail have told the user why and
 * return -errno (exit-codes.h); the one exception is -ECANCELED, returned
 * unreported when the caller's abort descriptor (a signalfd) became
 * readable during connect.
 */
#pragma once

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "codec.h"
#include "frame.h"
#include "rsa.h"
#include "stream-output.h"
#include "state.h"
#include "transport.h"
#include "wait.h"

typedef struct ClientParams {
        const char *host;
        uint16_t port;
        const char *address;            /* "host:port", the known_servers key */
        bool tls;
        const char *user;
        const RsaKey *identity;
        bool receive;                   /* auth.receive */
        const char *expected_fingerprint; /* --server-fingerprint, or NULL */
        ClientState *state;                   /* for known_servers */
        uint64_t timeout_usec;          /* each step of connect and handshake */
        int abort_fd;                   /* -EBADF, or a descriptor that cancels when readable */
        const char *code;               /* auth "code" (init --code), or NULL */
        /* When set, a login refused with rate_limited is not reported:
         * client_connect() returns -EBUSY (EXIT_RATE_LIMITED) with the seconds the
         * relay asks to wait here, for the caller to retry. */
        uint64_t *ret_retry_after;
        /* When set, whether a login the relay refused was refused for now
         * only (relay_error_later()), for listen to try again. */
        bool *ret_later;
        /* When set, a login refused with key_mismatch is not reported:
         * -EKEYREJECTED (rotate-key then tries its next key). */
        bool quiet_key_mismatch;
        /* Called once the auth frame is out, before waiting for the
         * welcome, with whether the relay's hello offers suite 2: the
         * relay now checks our signature and signs its answer, which is
         * time for local work that needs nothing from it. */
        void (*auth_sent)(void *userdata, bool suite2);
        void *userdata;
} ClientParams;

typedef struct Client {
        char *address;
        uint64_t timeout_usec;
        Transport *transport;
        FrameDecoder decoder;
        bool closing;                   /* after bye: an EOF is expected */
        bool broken;                    /* a write failed; reported by client_wait() */
        int broken_error;

        uint8_t in[16384];
        size_t in_start, in_end;
        StreamOutput out;               /* bytes waiting for the socket */
        size_t out_retry;               /* length offered when the transport said EAGAIN */
        bool read_wants_write;

        bool more;                      /* the last frame returned had "more": true */

        uint64_t next_id;
        uint64_t last_rx, last_tx;      /* monotonic usec */

        /* From the handshake. */
        RsaKey *server_key;
        FrameLimits limits;
        char session[65];
        bool suite2;                    /* hello listed suite 2: prekeys and its envelopes */
        int opks_left;                  /* the relay's count of our OPKs (welcome, then
                                         * each published); -1 unknown */
        unsigned proto;                 /* 1, or 2 or 3 when the relay offered it */
} Client;

/* Connect, run TLS and the handshake. -ECANCELED when p->abort_fd became
 * readable first (not reported: the user asked for it). */
int client_connect(const ClientParams *p, Client **ret);
Client *client_free(Client *c);
static inline void client_freep(Client **c) { client_free(*c); }

/* A fresh id for lookup and send. */
uint64_t client_next_id(Client *c);

/* Queue a frame (takes the reference to o) and write what the socket takes
 * now. -EREMOTEIO (EXIT_REFUSED) if it is over the relay's max_frame. Write errors show
 * up in the next client_wait(). */
int client_send(Client *c, json_object *o);
/* More than half of the output bound waits for the socket: a sender that
 * pipelines stops adding frames until the relay reads them. */
bool client_output_busy(const Client *c);

enum {
        CLIENT_TIMEOUT = 0,     /* the deadline passed */
        CLIENT_FRAME = 1,       /* *ret_frame is set */
        CLIENT_READY = 2,       /* one of the extra descriptors has revents */
};

/* Wait until deadline (monotonic usec; UINT64_MAX for none; WAIT_NOW:
 * a frame already received, or the socket read once if it has bytes, but
 * no waiting). extra may be NULL; its revents are set on CLIENT_READY. A frame that does not parse
 * ends the connection (reported). -ENOTCONN when the connection is
 * lost (reported: "connection to ... lost"). */
int client_wait(Client *c, struct pollfd *extra, size_t n_extra, uint64_t deadline, Frame **ret_frame);

/* Send bye, write out what is queued, and give the relay a moment to close
 * its side (so that it reads our bye rather than a reset). */
void client_bye(Client *c);

/* The exit status for an error code from the relay: with exit-codes.h's
 * table, the only mapping to exit statuses. log_relay_error() reports the
 * error and returns the errno that stands for that status. */
int relay_error_status(const char *code);
/* Whether the relay refused for now only: it is busy (server_busy) or
 * cannot reach its database (unavailable), and asks to try again later. */
bool relay_error_later(const char *code);
int log_relay_error(const Frame *f, const char *what);
