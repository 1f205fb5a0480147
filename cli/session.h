/* SPDX-License-Identifier: MIT */
/*
 * A chat session on top of a Client: what listen, inbox, connect, send,
 * users, fingerprint and trust share.
 *
 * - Peer keys: the relay's key packages (from presence and lookup) are
 *   verified under the pinned server key, then compared with the local pin
 *   (pinned on first use). A user whose key differs from the pin is refused
 *   both ways until `scctl trust`. Our own name is our identity key,
 *   never the relay's word.
 * - Receiving: each deliver is opened with the sender's pinned key, the
 *   replay window and the seen-id store; a deliver whose sender's key is not
 *   known yet waits (in order) for the relay's answer to a lookup. Every
 *   deliver is acked, whatever the outcome.
 * - Sending: messages are sealed and sent in order, up to window of them
 *   in flight (one unless the owner sets more); their results are output
 *   in that order whatever order the answers come in. A message is sealed
 *   once: after a reconnection the same envelopes go out again, in order.
 *   Several queued at once are sealed in one transaction of the suite-2
 *   store, committed before any of them goes out.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "ratchet-store.h"
#include "seen.h"
#include "settings.h"
#include "state.h"

/* Size of an identity key made on first use (init --bits chooses). */
#define DEFAULT_KEY_BITS 3072

/* What every chat verb starts with: settings, the state directory, the
 * identity. */
typedef struct Context {
        Settings *settings;
        ClientState *state;
        RsaKey *identity;
        bool identity_created;
        bool quiet_key_mismatch;        /* ClientParams.quiet_key_mismatch */
        void (*auth_sent)(void *userdata, bool suite2);  /* ClientParams.auth_sent */
        void *userdata;
        bool refused_later;             /* the last login was refused for now only */
} Context;

/* Open the state directory; with identity, load the user's key, creating it
 * (bits) when missing. */
int context_open(Context *ctx, Settings *settings, bool identity, unsigned bits);
void context_done(Context *ctx);
int context_connect(Context *ctx, bool receive, int abort_fd, Client **ret);

typedef struct Peer {
        char user[USERNAME_MAX + 1];
        KeyPackage *package;            /* the relay's, verified; NULL if it has none */
        bool answered;                  /* package (or its absence) is the relay's answer */
        bool unverifiable;              /* the relay's package did not verify */
        char error[64];                 /* the relay's error code for our lookup */
        uint64_t lookup_id;             /* outstanding lookup, 0 if none */
        bool online;
        bool listed;                    /* in the presence list being received */
        bool watched;                   /* we asked for its presence (version 2) */
        char fingerprint[RSA_FINGERPRINT_MAX]; /* the relay's word in presence (version 2) */
        RsaKey *key;                    /* the pinned key, once checked against package */
        char pinned[RSA_FINGERPRINT_MAX]; /* the pin, when it differs from package */
        /* Suite 2: a lookup with "prekeys" is sent only to start a session
         * (each one uses up one of the peer's OPKs). */
        bool bundle_wanted;             /* ask for prekeys in the next lookup */
        bool lookup_prekeys;            /* the outstanding lookup asked for them */
        bool bundle_answered;
        bool has_bundle;
        PrekeyBundle bundle;
        bool warned_no_prekeys;
} Peer;

typedef struct Outgoing Outgoing;
typedef struct Delivery Delivery;

#define CHAT_SESSION_RECENT_MAX 64

typedef struct ChatSession {
        Client *client;                 /* not owned; NULL between connections */
        Context *ctx;
        bool receiving;                 /* deliveries are opened and acked */
        bool show_presence;             /* presence changes are output */
        bool interactive;               /* refusals are output lines, not errors */

        Peer *peers;
        size_t n_peers;
        bool presence_listed;           /* the relay sent its list of online users */
        uint64_t who_id;                /* version 2: the page of the list asked for */
        unsigned n_watch_pending;       /* version 2: watches not answered yet */
        uint64_t watch_first, watch_last;       /* their request ids (0: none) */
        bool roster_pending;            /* the watch of our contacts is not all answered */
        bool output_listed;             /* output the list when it has come */

        SeenStore *seen;
        RatchetStore *ratchets;         /* suite 2; open once the relay carries it */
        bool sealing_batch;             /* seals join seal_ahead()'s transaction of ratchets */
        bool holding;                   /* chat_session_hold(): queued messages wait */
        /* chat_session_preseal()'s thread, running until preseal_join(). */
        pthread_t presealer_thread;
        bool presealing;
        uint64_t publish_id;            /* outstanding publish, 0 if none */
        bool published;                 /* the relay answered it */
        uint64_t relay_opks;            /* the OPKs the relay holds, from published */
        bool warned_window;             /* said that queue_ttl exceeds the window */
        Delivery *deliveries, *deliveries_last;
        size_t n_deliveries;
        size_t deliveries_size;         /* ciphertext bytes held in deliveries */
        bool deliveries_fresh;          /* came in, not opened yet: a batch is forming */
        unsigned n_messages;            /* messages shown */
        bool synced;

        Outgoing *outgoing, *outgoing_last;
        size_t n_outgoing;
        unsigned window;                /* messages in flight at most (0: 1) */
        unsigned n_in_flight;           /* sent, not answered */
        unsigned n_accepted, n_refused, n_receipts;
        /* Frames that moved the session on (a delivery, synced, an answer
         * to a request of ours), not those a relay can send at will
         * (presence, receipts, stray errors): inbox's --timeout restarts
         * with these only. */
        unsigned n_progress;
        unsigned n_retries;             /* messages sent again after rate_limited */
        int error;                      /* first failure of a message we sent, -errno */
        char ended[64];                 /* the relay's error code that ended the session */
        struct {
                char msg[32];
                char to[USERNAME_MAX + 1];
        } recent[CHAT_SESSION_RECENT_MAX];   /* our messages, for receipts */
        unsigned recent_next;
} ChatSession;

int chat_session_new(Context *ctx, bool receiving, ChatSession **ret);
ChatSession *chat_session_free(ChatSession *s);
static inline void chat_session_freep(ChatSession **s) { chat_session_free(*s); }

/* Start using a (new) connection, and stop: what was pending on the old
 * one (held deliveries, lookups) is dropped: the relay sends unacked
 * deliveries again. */
int chat_session_attach(ChatSession *s, Client *c);
void chat_session_detach(ChatSession *s);

/* Process a frame. Returns 1 if the session consumed it, 0 if it is the
 * caller's (errors without an id, frames we do not expect), or -errno. */
int chat_session_handle(ChatSession *s, const Frame *f);

/* Wait for the next frame and let the session handle it. Errors without an
 * id end the session (reported with what; the code is kept in s->ended);
 * frames nobody expects are skipped. Returns CLIENT_FRAME, CLIENT_TIMEOUT,
 * CLIENT_READY (one of extra is ready) or -errno. */
int chat_session_wait(ChatSession *s, struct pollfd *extra, size_t n_extra, uint64_t deadline, const char *what);

/* Queue one message; it goes out when its turn comes. */
int chat_session_queue_message(ChatSession *s, const char *to, const char *text, size_t len);
/* While held, messages queued wait: a burst queued at once is then sealed
 * together (one transaction of the suite-2 store) when it is released,
 * which sends what may go. */
int chat_session_hold(ChatSession *s, bool hold);
/* The same for send --idempotency-key: with envelope (from the outbox file)
 * that envelope goes out as it is; without, the message is sealed and
 * saved in the file outbox (with the digest of recipient and text) before
 * it goes out. */
int chat_session_queue_outbox(ChatSession *s, const char *to, const char *text, size_t len, const char *outbox,
                         const uint8_t digest[OUTBOX_DIGEST_LEN], json_object *envelope);
bool chat_session_idle(const ChatSession *s);     /* nothing outgoing or held */

/* Before the session has a connection (a ClientParams.auth_sent hook, while
 * the relay checks the login): what the queued messages need that nothing
 * from the relay can change, done ahead. The suite-2 store is opened, and a
 * message that goes in suite 1 as far as the local state tells (a note to
 * self, a relay without suite 2, a pinned peer with no session and no
 * prekeys seen) is sealed to the pinned key. That envelope is sent only if
 * the relay's key for the peer turns out to be the pinned one and the
 * message to go in suite 1 after all; otherwise it is dropped unsent.
 * Best effort: what fails here is done, and reported, later. */
void chat_session_prepare(ChatSession *s, bool suite2);

/* Before connecting: start what chat_session_prepare() does on a thread of
 * its own, presuming a relay with suite 2, so that sealing (an RSA
 * signature per message) runs beside the TLS handshake and the login
 * rather than after it: with protocol 3 the relay answers a login at
 * once, and the seal would be the longest wait of a one-shot send.
 * chat_session_prepare() (or freeing the session) waits for the thread
 * and does what it left. Nothing else may touch the session meanwhile,
 * and its Context must outlive the thread: free the session before
 * context_done(). */
void chat_session_preseal(ChatSession *s);

/* Make what prekeys are due (all new with rotate) and publish them on the
 * session's connection; the answer comes as s->published. 1 when a publish
 * went out, 0 when nothing was due, -errno (reported). Wait for the answer
 * to one publish before the next: the second would count the OPKs the
 * relay held before the first. */
int chat_session_publish_prekeys(ChatSession *s, bool rotate);

/* Find (and with lookup, ask the relay for) a user's key package, verified
 * and compared with the pin, without pinning. Returns 1 when the answer is
 * there (*ret_peer; package NULL if none), 0 while waiting, or -errno. */
int chat_session_lookup(ChatSession *s, const char *user, Peer **ret_peer);
Peer *chat_session_peer(ChatSession *s, const char *user);

/* Output the users the relay says are online, sorted by name. */
int chat_session_output_users(ChatSession *s);

/* Version 2 (a no-op with a relay of version 1, which sends presence
 * without being asked): follow the presence of users, in frames of
 * WATCH_USERS_MAX; with pinned, of every user pinned for this relay too.
 * The answers show who of them is online. 0 or -errno. */
int chat_session_watch(ChatSession *s, const char *const *users, size_t n, bool pinned);
/* Ask for the list of users online: presence_listed becomes true when it
 * has all come (with version 1 it comes unasked, at login). With then_output,
 * output it then (chat_session_output_users()); with version 1 at once,
 * from what the relay said so far. */
int chat_session_list_online(ChatSession *s, bool then_output);

