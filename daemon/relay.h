/* SPDX-License-Identifier: MIT */
/*
 * The chat protocol on the server side (protocol.md sections 4 to 6): the
 * handshake as a per-session state machine, the registry, presence,
 * lookup, send/accepted, deliver/ack/receipt with flow control, ping and
 * bye. The manager hands it what happens on a session (it is the
 * session's owner); the relay finds other users' sessions in the session
 * index, and asks its owner through RelayHooks for what only the owner
 * knows: the limit log and the state directory's room.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "cluster.h"
#include "conf.h"
#include "forward.h"
#include "handshake.h"
#include "limit.h"
#include "log.h"
#include "rsa.h"
#include "session-index.h"
#include "store.h"

typedef struct RelayHooks {
        /* A limit refused something: count it, and log message unless
         * throttle (the address or user refused; NULL: none) was logged
         * within ANVIL_LOG_INTERVAL_USEC. */
        void (*limit_hit)(void *userdata, Limit limit, AnvilEntry *throttle, const LogFields *fields,
                          const char *message);
        /* May size more bytes be written to the state directory? 0 or
         * -ENOSPC (under min-free-disk, or the reserve is released). */
        int (*disk_check)(void *userdata, uint64_t size);
        /* A delete failed with -ENOSPC: 1 when room was made (retry
         * once), 0 when there is none to make. */
        int (*store_full)(void *userdata);
} RelayHooks;

typedef struct RelayPending RelayPending;

/* Requests (sends and acks) answered per commit at most: a bound on the
 * memory and the wait of one batch when many sessions have much to say
 * while one commits. */
#define RELAY_BATCH_MAX 1024

/* One group commit's requests. Owned by relay.c. */
typedef struct RelayBatch {
        RelayPending *pending;
        size_t n_pending, n_pending_allocated;
        size_t n_takes;                 /* synchronous: acks in pending not deleted yet (batch_open()) */
        /* Sessions that wrote to the batch: their output is held (corked)
         * until it is committed, so that no later answer overtakes it. */
        Session **held;
        size_t n_held, n_held_allocated;
        StoreWrite **writes;            /* asynchronous: what store_batch_send() is given */
        size_t n_writes, n_writes_allocated;
        /* ... made of pending[0..n_scanned) while pending was there
         * (batch_writes() adds only what came since). */
        const RelayPending *scanned;
        size_t n_scanned;
        bool resent;                    /* ... and given again after a full disk */
        uint64_t number;                /* taken for its commit as the relay's n-th (Session.held_by) */
} RelayBatch;

/* The owner fills this in and keeps it up to date (config on reload). */
struct Relay {
        sd_event *event;
        const Config *config;           /* in force */
        Store *store;
        Cluster *cluster;               /* NULL: one relay alone (database = sqlite) */
        const RsaKey *server_key;
        /* Version 3: the Ed25519 key that signs the welcome and the server
         * key's statement on it, made by relay_welcome_key_renew(); in
         * memory only. */
        Ed25519Key *welcome_secret;
        WelcomeKey *welcome_key;
        SessionIndex *sessions;
        bool stopping;                  /* shutting down: no presence updates */
        const RelayHooks *hooks;
        void *userdata;

        /* The queue, as counted here (relay_queue_recount() reads it from
         * the store; every change after that goes through relay.c). */
        uint64_t n_queued;
        uint64_t queue_bytes;

        /* The group commit (relay_commit()): the sends (and, with an
         * asynchronous store, the acks) of this loop iteration, waiting
         * for their commit before they are answered; with an asynchronous
         * store, also the batch sent and not answered yet, while the next
         * one fills, and (SQLite) the one the writer took after it. */
        RelayBatch batch;
        RelayBatch flight;
        RelayBatch next;                /* number 0: none started behind flight */
        uint64_t n_batches;             /* batches taken for their commit: batch is the next one */
        bool flying;                    /* flight was sent (store_batch_send()) */
        bool queued;                    /* batch was queued behind flight (store_batch_queue()) */
        /* Since the start: batches committed, and the sends and acks they
         * held (the control socket's Status, the benchmark's notes). */
        uint64_t n_commits;
        uint64_t n_committed;
};

/* Commit what sends and acks wrote since the last commit, in one
 * transaction, then answer them: accepted and the forward to an online
 * recipient, or for every send the error it would have had alone when
 * the commit failed. The owner calls it once per loop iteration, after
 * every session had its turn, and before anything else writes to the
 * store or frees sessions. Sessions that had frames go out now, each in
 * one write. */
void relay_commit(Relay *r);
/* Make a new welcome key and have server_key certify it for
 * WELCOME_KEY_LIFETIME, if there is none or less than half of its validity
 * is left at now (unix seconds); the old one is wiped. The owner calls it
 * at start, so that a relay that cannot do it does not start; logins call
 * it too. 0 or -errno. */
int relay_welcome_key_renew(Relay *r, uint64_t now);
/* Wipe and free the welcome key. */
void relay_welcome_key_free(Relay *r);

/* At shutdown: commit, and free what the batch holds. */
void relay_done(Relay *r);
/* s is about to be freed: the answers of a batch in flight forget it. */
void relay_session_free(Relay *r, Session *s);

/* The transport is ready (TLS done, or at once for plain TCP): send hello. */
void relay_session_ready(Relay *r, Session *s);

/* One complete frame's payload arrived. False: not now (s waits for the
 * answers it is owed first; SessionCallbacks.on_frame). */
bool relay_frame(Relay *r, Session *s, const uint8_t *payload, size_t len);

/* s started closing; was_active: it had authenticated. */
void relay_session_closing(Relay *r, Session *s, bool was_active);

/* What the other nodes of the cluster say (cluster.h): a user of theirs
 * came online or went offline (local watchers hear of it), this node's
 * presence row of user was deleted (said again if user still receives
 * here), a newer receiving session elsewhere replaces ours, a message for
 * a user receiving here was queued there, or, at a heartbeat, the last seq
 * queued for a user receiving here (pumped if past its cursor). */
void relay_cluster_online(Relay *r, const ClusterUser *u);
void relay_cluster_offline(Relay *r, const ClusterUser *u);
void relay_cluster_lost(Relay *r, const char *user);
void relay_cluster_replace(Relay *r, const char *user);
void relay_cluster_deliver(Relay *r, const char *user);
void relay_cluster_queued(Relay *r, const char *user, uint64_t last_seq);

/* Push the rest of the online list, then (to a receiving session) queued
 * envelopes, while less than SESSION_PUMP_WATER waits in its output;
 * sends "synced" once the backlog of its login went out. */
void relay_pump(Relay *r, Session *s);
/* Is there more to push to s (presence list, queued envelopes) as soon
 * as its output drains below SESSION_PUMP_WATER? */
bool relay_has_more(const Session *s);

/* A deliver frame is at most this much larger than its envelope's JSON:
 * {"type":"deliver","seq":N,"envelope":...}. */
#define RELAY_DELIVER_OVERHEAD 64

/* Read the queue's count and bytes from the store (at start, and after
 * the store changed behind the relay's back: a key reset). */
int relay_queue_recount(Relay *r);
/* A message of size bytes left the queue undelivered (it expired). */
void relay_queue_expired(Relay *r, uint64_t size);
/* May a new envelope of size bytes be queued? 0 if so; else -ENOSPC, with
 * the limit that refuses it (queue-max-bytes, min-free-disk) in
 * *ret_limit. */
int relay_queue_check(Relay *r, uint64_t size, Limit *ret_limit);
