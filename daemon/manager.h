/* SPDX-License-Identifier: MIT */
/*
 * The daemon's one object: the event loop, the configuration in force, the
 * listening sockets, the state (identity key, TLS credentials, store) and
 * every connection. Everything runs in one sd-event loop; nothing blocks on
 * a peer.
 *
 * The manager owns the sessions (it accepts them and frees them), their
 * index by user and every counter; what a session reports goes to the
 * relay (relay.c) for the protocol and to the index for the counts. The
 * second half of this header is what the control socket (control.c),
 * which sits above the manager, builds on: counts, iteration over
 * sessions and users, kick, reset-key, reload, and the hook through which
 * it receives every audit event.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <systemd/sd-event.h>

#include "anvil.h"
#include "cluster.h"
#include "conf.h"
#include "forward.h"
#include "handshake.h"
#include "limit.h"
#include "listener.h"
#include "log.h"
#include "relay.h"
#include "rsa.h"
#include "session-index.h"
#include "session.h"
#include "store.h"

#define MANAGER_MAX_LISTENERS 8

typedef void (*ManagerEventHook)(Control *c, EventKind kind, const LogFields *fields,
                                 const char *message);
typedef bool (*ManagerEventWanted)(Control *c, EventKind kind);

typedef struct Manager {
        sd_event *event;

        Config *config;                 /* in force; limits of new sessions come from here */
        const ConfigSources *sources;   /* re-read on reload; owned by the caller */

        int listen_fds[MANAGER_MAX_LISTENERS];  /* the listeners' sockets */
        Listener *listeners[MANAGER_MAX_LISTENERS];
        size_t n_listen;
        bool socket_activated;          /* the chat sockets came from systemd */

        /* The control socket passed by systemd (named "control"), or
         * -EBADF. Kept for control.c; when it is -EBADF control.c binds
         * config->control itself. */
        int control_fd;
        Control *control;               /* set with the event hook, by control.c */
        ManagerEventHook event_hook;
        ManagerEventWanted event_wanted;

        int lock_fd;
        Store *store;
        Cluster *cluster;               /* database = postgresql://...: the other nodes; else NULL */
        RsaKey *server_key;
        gnutls_certificate_credentials_t tls_credentials;   /* NULL with tls = no */

        /* Every connection, and the active ones by user, with their
         * counts (session-index.h). */
        SessionIndex sessions;
        /* The protocol over them, with the queue's counts (relay.h). */
        Relay relay;
        bool reserve;                   /* STATE_RESERVE_FILE is in place */
        uint64_t disk_room;             /* free bytes less what was let in since (manager_disk_check()) */
        uint64_t disk_room_turn;        /* when it was measured (sd_event_now()), 0: never */
        uint64_t limit_hits[_LIMIT_MAX];  /* refusals per limit since start */
        Anvil *anvil;                   /* per address and per user rates and counts */
        AnvilEntry busy_log;            /* throttles the log of max-sessions refusals at accept */
        uint64_t limit_log_usec[_LIMIT_MAX];    /* when the current second of lines began */
        unsigned limit_logged[_LIMIT_MAX];      /* lines logged in it */
        uint64_t limit_unlogged[_LIMIT_MAX];    /* hits not logged since the last line */

        sd_event_source *signal_sources[3];
        sd_event_source *expire_timer;
        sd_event_source *post;          /* frees dead sessions, updates STATUS= */
        char *status;                   /* last STATUS= sent */
        uint64_t start_realtime_usec;
} Manager;

/* Takes ownership of config. sources must outlive the manager. */
int manager_new(const ConfigSources *sources, Config *config, Manager **ret);
Manager *manager_free(Manager *m);
static inline void manager_freep(Manager **m) { manager_free(*m); }

/* Everything before serving: state directory, lock, identity key, TLS,
 * database, listening sockets, signals, timers. Logs its own errors. */
int manager_start(Manager *m);

/* READY=1, the loop until SIGTERM/SIGINT, then every session is told
 * "shutdown" and closed. Returns 0 or a negative errno. */
int manager_run(Manager *m);

/* ---- for control.c ---------------------------------------------------- */

/* Re-read the configuration from the same sources. On failure the old one
 * stays, and *ret_error (if not NULL) says why. Keys that only a restart
 * can change (listen, control, state-directory, tls*, key-bits) keep their
 * old values with a warning. New limits apply to new sessions. */
int manager_reload(Manager *m, char **ret_error);

typedef struct ManagerStats {
        uint64_t connections;           /* every live connection, handshaking too */
        uint64_t sessions;              /* authenticated */
        uint64_t receiving;             /* receiving sessions = users online */
        uint64_t users_registered;
        uint64_t queued;
        uint64_t uptime_usec;
        uint64_t commits;               /* the relay's batches committed */
        uint64_t committed;             /* ... and the sends and acks in them */
} ManagerStats;
int manager_get_stats(Manager *m, ManagerStats *ret);

typedef struct SessionInfo {
        const char *id;                 /* 32 hex digits */
        const char *user;
        const char *peer;               /* "address:port" */
        const char *fingerprint;
        bool receive;
        bool tls;
        uint64_t connected_realtime_usec;
        uint64_t idle_usec;             /* since the last frame from the client */
} SessionInfo;
/* Authenticated sessions only. fn returns <0 to stop (returned). */
int manager_foreach_session(Manager *m, int (*fn)(void *userdata, const SessionInfo *i),
                            void *userdata);

typedef struct UserInfo {
        const KeyPackage *package;
        const char *fingerprint;
        bool online;                    /* has a receiving session (on any node) */
        unsigned n_sessions;
} UserInfo;
int manager_foreach_user(Manager *m, int (*fn)(void *userdata, const UserInfo *i),
                         void *userdata);

/* Close every session of user with error "kicked". by names who asked, for
 * the audit log. Returns the number of sessions closed. */
int manager_kick_user(Manager *m, const char *user, const char *by);

/* Unbind user's key: delete the registry entry, close the user's sessions,
 * which were authenticated with that key, and drop the messages queued for
 * the user (sealed to that key, no new key can open them). The name then
 * registers again only with the one-time code returned in ret_code (valid
 * for RESET_CODE_TTL; only its hash is kept). -ENOENT if user is not
 * registered. */
#define RESET_CODE_TTL (7u * 24 * 3600)
#define RESET_CODE_LEN 30       /* 6 groups of 4 hex digits, 5 dashes, NUL */
int manager_reset_key(Manager *m, const char *user, const char *by, char ret_code[RESET_CODE_LEN],
                      uint64_t *ret_dropped);

/* Every audit event that log-level lets through is handed to hook(c, ...)
 * after it was logged, and so is every other one for which wanted(c, kind)
 * says yes (NULL, NULL, NULL to remove). See LogEventWanted in log.h. */
void manager_set_event_hook(Manager *m, ManagerEventHook hook, ManagerEventWanted wanted, Control *c);

/* A limit refused something: count it and log a limit-hit audit event with
 * SC_REASON= the limit's name (fields may be NULL; its reason is
 * overwritten). At most MANAGER_LIMIT_LOG_BURST lines per limit and
 * second are logged; the next line says how many were not. */
#define MANAGER_LIMIT_LOG_BURST 10
void manager_limit_hit(Manager *m, Limit limit, const LogFields *fields, const char *format, ...)
        _printf_(4, 5);

/* The same for a refusal a peer can repeat at will (a flood): counted each
 * time, but logged at most once per ANVIL_LOG_INTERVAL_USEC for entry (the
 * address or user refused); that line says how many went unlogged. */
void manager_limit_hit_throttled(Manager *m, Limit limit, AnvilEntry *entry, const LogFields *fields,
                                 const char *format, ...) _printf_(5, 6);

/* CLOCK_MONOTONIC of this loop iteration. */
uint64_t manager_now(Manager *m);

/* What a new session keeps for its life from the configuration in force:
 * a reload changes new sessions only. */
SessionLimits manager_session_limits(const Config *c);

