/* SPDX-License-Identifier: MIT */
/*
 * The daemon's one object: the event loop, the configuration in force, the
 * listening sockets, the state (identity key, TLS credentials, store) and
 * every connection. Everything runs in one sd-event loop; nothing blocks on
 * a peer.
 *
 * The second half of this header is what the control socket (control.c)
 * builds on: counts, iteration over sessions and users, kick, reset-key,
 * reload, and a hook that receives every audit event.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <systemd/sd-event.h>

#include "anvil.h"
#include "conf.h"
#include "handshake.h"
#include "limit.h"
#include "listener.h"
#include "log.h"
#include "rsa.h"
#include "store.h"

#define MANAGER_MAX_LISTENERS 8

typedef struct Session Session;

typedef void (*ManagerEventHook)(void *userdata, EventKind kind, const LogFields *fields,
                                 const char *message);

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
        void *control;                  /* control.c's state */

        int lock_fd;
        Store *store;
        RsaKey *server_key;
        gnutls_certificate_credentials_t tls_credentials;   /* NULL with tls = no */

        /* Every connection, newest first. A closed session stays in the
         * list (state SESSION_DEAD) until the end of the loop iteration, so
         * that code walking the list never loses its place. */
        Session *sessions;
        size_t n_dead;                  /* sessions waiting to be freed */
        size_t n_sessions;              /* live connections in any state */
        bool stopping;                  /* shutting down: no presence updates */
        size_t n_active;                /* authenticated sessions */
        uint64_t n_queued;              /* messages in the queue */
        uint64_t queue_bytes;           /* ...their envelopes' bytes */
        bool reserve;                   /* STATE_RESERVE_FILE is in place */
        uint64_t memory;                /* session_memory() of every session */
        uint64_t activations;           /* sessions that became active, ever */
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

        ManagerEventHook event_hook;
        void *event_hook_userdata;
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
        bool online;                    /* has a receiving session */
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

/* Every audit event is handed to hook after it was logged, whatever
 * log-level says (NULL to remove). */
void manager_set_event_hook(Manager *m, ManagerEventHook hook, void *userdata);

/* ---- for session.c, relay.c and control.c --------------------------------- */

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

/* May a new envelope of size bytes be stored? 0 if so; else the limit
 * that refuses it (queue-max-bytes, or min-free-disk: also while the
 * reserve is released), with *ret_limit set. */
int manager_storage_check(Manager *m, uint64_t size, Limit *ret_limit);
/* The min-free-disk part of it alone (for registrations): 0 or -ENOSPC. */
int manager_disk_check(Manager *m, uint64_t size);

/* A delete failed with -ENOSPC: release the reserve so that the retry
 * has room. 1 when it was released (retry once), 0 when it was gone. */
int manager_store_full(Manager *m);

Session *manager_find_receiver(Manager *m, const char *user);
void manager_link_session(Manager *m, Session *s);
void manager_bury_session(Manager *m, Session *s);    /* s is dead: free it soon */
