/* SPDX-License-Identifier: MIT */
/*
 * One client connection: its stream (stream.h: transport, bounded output
 * buffer, timers, graceful close), frame decoder, and the protocol state
 * the relay keeps for it. This module moves frames; relay.c decides what
 * they mean.
 *
 * A session calls nothing above it: what happens to it is reported to its
 * owner through the SessionCallbacks the owner gave session_new().
 *
 * A session is never freed while a callback may still hold it: it is
 * marked dead when its stream finished closing (or had to stop), and the
 * owner frees dead sessions after the loop iteration.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "anvil.h"
#include "buf.h"
#include "forward.h"
#include "frame.h"
#include "handshake.h"
#include "limit.h"
#include "log.h"
#include "protocol.h"
#include "rsa.h"
#include "sockets.h"
#include "stream.h"
#include "transport.h"

typedef enum SessionState {
        SESSION_TLS,            /* TLS handshake running */
        SESSION_AUTH,           /* hello sent, waiting for auth */
        SESSION_ACTIVE,         /* authenticated */
        SESSION_CLOSING,        /* flushing the last frames (an error) */
        SESSION_DEAD,           /* disconnected, waiting to be freed */
} SessionState;

/* Limits fixed when the session starts (a reload changes new sessions). */
typedef struct SessionLimits {
        uint64_t max_frame;
        uint64_t max_text;
        uint64_t queue_ttl_usec;
        uint64_t queue_limit;
        uint64_t queue_limit_per_sender;
        uint64_t max_prekeys;           /* one-time prekeys kept per user */
        uint64_t max_watches;
        uint64_t handshake_timeout_usec;
        uint64_t idle_timeout_usec;
        uint64_t memory_max;            /* session_memory() over this: disconnect */
} SessionLimits;

/* While this much output waits, the session processes no requests (what
 * was read waits in Session.in)... */
#define SESSION_READ_PAUSE (64u * 1024)
/* ...and queued envelopes and presence lists are pushed only while less
 * than this waits: the rest follows as the output drains. */
#define SESSION_PUMP_WATER (64u * 1024)
/* What the output buffer keeps allocated once it is empty again: a few
 * frames' worth, what a busy session reuses turn after turn. More is
 * given back, since the output is written at the end of every turn and
 * thousands of idle sessions would each keep their largest burst (a
 * protocol 1 receiver, every login's key package: 21 KiB of its 46). */
#define SESSION_OUTPUT_KEEP (4u * 1024)
/* The least memory budget a session that reads gets, whatever
 * max-session-memory says: one incoming frame (max_frame), the output
 * while it is over one of the marks above by one frame of max_frame,
 * allocated in powers of two (twice that), and room for presence
 * updates and receipts that come meanwhile. */
#define SESSION_MEMORY_MIN(max_frame) (3 * (uint64_t) (max_frame) + 256u * 1024)
/* How long a closing session may take to flush its last frames (the
 * stream then drains the peer's, STREAM_DRAIN_*). */
#define SESSION_LINGER_USEC (2 * 1000000ull)

/* How a session reports to its owner; every member is set. userdata is
 * the owner's, given to session_new(). */
struct SessionCallbacks {
        /* The transport is ready (TLS done, or at once for plain TCP). */
        void (*on_ready)(Session *s, void *userdata);
        /* One complete frame's payload arrived. False: not now (the owner
         * made the session wait, session_wait()): the session keeps it
         * and gives it again, first, once it may read. */
        bool (*on_frame)(Session *s, const uint8_t *payload, size_t len, void *userdata);
        /* The output went below SESSION_PUMP_WATER: push more, if any... */
        void (*on_pump)(Session *s, void *userdata);
        /* ...and is there more to push as soon as it drains? */
        bool (*has_more)(const Session *s, void *userdata);
        /* s started closing; was_active: it had authenticated. */
        void (*on_closing)(Session *s, bool was_active, void *userdata);
        /* s is disconnected: free it after this loop iteration. */
        void (*on_dead)(Session *s, void *userdata);
        /* s's buffers went from old to new bytes (session_memory()).
         * Returns true while all sessions together hold more than the
         * relay's max-memory. */
        bool (*on_memory)(Session *s, size_t old, size_t new, void *userdata);
        /* A limit refused something of s: count and log message. */
        void (*on_limit)(Session *s, Limit limit, const LogFields *fields, const char *message,
                         void *userdata);
};

typedef struct Session {
        sd_event *event;
        Anvil *anvil;                   /* per address and per user entries */
        const SessionCallbacks *callbacks;
        void *userdata;

        /* The owner's session index (session-index.c) links these. */
        Session *next, *prev;           /* every session */
        Session *user_next, *user_prev;  /* the active sessions of user */
        Session *receiver_next, *receiver_prev;  /* active receiving sessions */
        bool indexed;                   /* in the by-user index */

        SessionState state;
        Stream *stream;                 /* the connection, its output and timers */
        Transport *transport;           /* the stream's (borrowed), for relay.c */
        sd_event_source *throttle;      /* ends a pause in reading (session_throttle()) */
        bool throttled;
        SessionLimits limits;
        FrameDecoder decoder;
        Buf in;                         /* read, not yet processed (paused) */
        uint8_t *aside;                 /* a frame on_frame() did not take yet */
        size_t aside_len;
        size_t in_head;                 /* bytes of in already processed */
        size_t memory;                  /* session_memory() as the manager counts it */

        char id[2 * 16 + 1];            /* session id, hex */
        char peer[SOCKET_ADDRESS_MAX];
        uint64_t connected_realtime_usec;
        uint64_t connected_monotonic_usec;
        uint64_t last_activity_usec;    /* CLOCK_MONOTONIC of the last frame from the peer */

        /* Handshake. */
        uint8_t nonce[NONCE_LEN];
        uint8_t binding[CHANNEL_BINDING_LEN];
        size_t binding_len;

        /* After auth. */
        char user[USERNAME_MAX + 1];
        KeyPackage *package;            /* the user's registered key package */
        bool receive;
        bool replaced;                  /* closed for a newer receiving session */
        uint64_t activation;            /* when it became active (SessionIndex.activations) */
        unsigned proto;                 /* the version auth asked for: 1, 2 or 3 */
        char fingerprint[RSA_FINGERPRINT_MAX];  /* of the user's key */

        /* Version 2: the users whose presence this session follows
         * (session_index_watch()), newest first. */
        Watch *watches;
        unsigned n_watches;

        /* Version 1: the presence list is sent in pieces as the output
         * drains: the active receiving sessions with activation >
         * presence_cursor, in order of activation, are still to be
         * listed. */
        bool presence_pending;
        uint64_t presence_cursor;

        /* Held for the per-address and per-user limits (NULL: a trusted
         * address; no user before auth). */
        AnvilEntry *address_entry;
        AnvilEntry *user_entry;
        bool preauth;                   /* counted in address_entry->preauth */

        /* Delivery, receiving sessions only: every queued envelope with
         * seq <= cursor was sent to this session. */
        uint64_t cursor;
        uint64_t sync_target;           /* last seq queued at login */
        bool caught_up;                 /* nothing after cursor, as far as we know */
        bool synced;                    /* "synced" was sent */
        /* PostgreSQL: a page of the queue is being read for this session
         * (relay.c's, NULL if none); again: read once more after it, for
         * a message committed meanwhile. */
        void *reading;
        bool read_again;

        /* The relay waits for the database's answer to a request of this
         * session (session_wait()): no frame is processed meanwhile. */
        bool waiting;
        /* relay.c's: requests of this session in a batch, not answered
         * yet; and the batch (relay.c's count of them) that holds its
         * output. */
        unsigned n_requests;
        uint64_t held_by;
} Session;

/* What a new session is made of. */
typedef struct SessionSetup {
        sd_event *event;
        Anvil *anvil;
        gnutls_certificate_credentials_t tls;   /* NULL: plain TCP */
        SessionLimits limits;
        const SessionCallbacks *callbacks;
        void *userdata;
} SessionSetup;

/* Takes fd, also on failure. address: the entry of the peer's address
 * (held by the session from now on), or NULL when it is exempt from the
 * per-address limits. No callback runs before session_start(), so that
 * the owner can index the session first. */
int session_new(const SessionSetup *setup, int fd, AnvilEntry *address, Session **ret);
/* Log the connection and start the handshake (hello at once without TLS). */
void session_start(Session *s);
Session *session_free(Session *s);

/* Queue a frame (takes the reference to o). Before the handshake finished
 * and after closing, frames are dropped, except the closing error. Returns
 * 0, or <0 when the frame could not be built or the session had to be
 * closed (output over its limit). */
int session_send(Session *s, json_object *o);
/* The same for a frame already on the wire (u32be length and payload,
 * frame_deliver_to_wire()), which is copied. */
int session_send_wire(Session *s, const uint8_t *wire, size_t len);

/* Send error {code, message} and close after flushing it. reason is
 * for the log. Safe to call from anywhere, any number of times. The
 * _request form puts the id of the request that caused it (may be NULL)
 * in the error, so that it answers that request. */
void session_close(Session *s, const char *code, const char *message, const char *reason);
void session_close_request(Session *s, const uint64_t *id, const char *code, const char *message,
                           const char *reason);

/* The same with an error frame of the caller's (taken; NULL for none). */
void session_close_with(Session *s, json_object *error, const char *reason);

/* The session logged in as s->user: it leaves its address's
 * pre-authentication count and holds the user's entry (message rate). */
void session_authenticated(Session *s);

/* Read nothing more from the peer for usec (the frames already read are
 * still handled): a client over its rate waits in its own socket buffers
 * rather than in the relay's event loop. */
void session_throttle(Session *s, uint64_t usec);
/* Stop (waiting) or go on processing s's frames: the relay waits for the
 * database on its behalf, and what s says next is answered after. What
 * arrives meanwhile stays in the socket, or in s->in. */
void session_wait(Session *s, bool waiting);

/* Restart the idle timer (after every frame received). */
void session_touch(Session *s);

size_t session_output_pending(const Session *s);
/* What this session makes the relay hold for it: its output and input
 * buffers and the frame being received, as allocated. */
size_t session_memory(const Session *s);
bool session_is_active(const Session *s);
bool session_is_dead(const Session *s);
/* CLOCK_MONOTONIC of this loop iteration. */
uint64_t session_now(const Session *s);

/* Try to write now (used at shutdown). */
void session_flush(Session *s);
