/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "crypto.h"
#include "fileio.h"
#include "manager.h"
#include "relay.h"
#include "session-index.h"
#include "session.h"
#include "sockets.h"
#include "state.h"
#include "util.h"

/* Connections still in their handshake may exceed max-sessions by this
 * much, so that the ones over the limit hear "server_busy". */
#define HANDSHAKE_SLACK 64
/* Queue entries expired per database transaction. */
#define EXPIRE_BATCH 256
/* How long a measurement of the state directory's free space answers yes
 * (manager_disk_check()). */
#define DISK_ROOM_USEC (10 * 1000)
/* Longer is no password anyone types or generates. */

static const int handled_signals[] = { SIGTERM, SIGINT, SIGHUP };

static void manager_on_event(void *userdata, EventKind kind, const LogFields *fields,
                             const char *message) {
        Manager *m = userdata;

        if (m->event_hook)
                m->event_hook(m->control, kind, fields, message);
}

static bool manager_event_wanted(void *userdata, EventKind kind) {
        Manager *m = userdata;

        return m->event_wanted && m->event_wanted(m->control, kind);
}

void manager_set_event_hook(Manager *m, ManagerEventHook hook, ManagerEventWanted wanted, Control *c) {
        m->event_hook = hook;
        m->event_wanted = wanted;
        m->control = c;
}

static void on_relay_limit_hit(void *userdata, Limit limit, AnvilEntry *throttle, const LogFields *fields,
                               const char *message) {
        manager_limit_hit_throttled(userdata, limit, throttle, fields, "%s", message);
}

static int manager_disk_check(Manager *m, uint64_t size);

/* SQLite writes to the state directory's file system, whose room the
 * manager watches (min-free-disk, the reserve); PostgreSQL does not. */
static bool store_on_state_disk(Manager *m) {
        return strcmp(store_backend(m->store), "sqlite") == 0;
}
static int manager_store_full(Manager *m);

static int on_relay_disk_check(void *userdata, uint64_t size) {
        return manager_disk_check(userdata, size);
}

static int on_relay_store_full(void *userdata) {
        return manager_store_full(userdata);
}

static const RelayHooks relay_hooks = {
        .limit_hit = on_relay_limit_hit,
        .disk_check = on_relay_disk_check,
        .store_full = on_relay_store_full,
};

/* ---- the other nodes: what the cluster reports ------------------------- */

static void on_cluster_online(void *userdata, const ClusterUser *u) {
        Manager *m = userdata;

        relay_cluster_online(&m->relay, u);
}

static void on_cluster_offline(void *userdata, const ClusterUser *u) {
        Manager *m = userdata;

        relay_cluster_offline(&m->relay, u);
}

static void on_cluster_lost(void *userdata, const char *user) {
        Manager *m = userdata;

        relay_cluster_lost(&m->relay, user);
}

static void on_cluster_replace(void *userdata, const char *user) {
        Manager *m = userdata;

        relay_cluster_replace(&m->relay, user);
}

static void on_cluster_deliver(void *userdata, const char *user) {
        Manager *m = userdata;

        relay_cluster_deliver(&m->relay, user);
}

static void on_cluster_queued(void *userdata, const char *user, uint64_t last_seq) {
        Manager *m = userdata;

        relay_cluster_queued(&m->relay, user, last_seq);
}

static int close_user_sessions(Manager *m, const char *user, const char *message, const char *reason);

static void on_cluster_kick(void *userdata, const char *user) {
        Manager *m = userdata;
        int n;

        n = close_user_sessions(m, user, "kicked by an administrator", "kicked on another node");
        log_event(EVENT_USER_KICKED, &(LogFields) { .user = user, .reason = "kicked on another node" },
                  "User %s kicked by an administrator on another node (%d sessions closed here)", user, n);
}

static int on_cluster_foreach_receiver(void *userdata, ClusterReceiverFn fn, void *ctx) {
        Manager *m = userdata;

        for (Session *s = m->sessions.receivers; s; s = s->receiver_next) {
                int r;

                if (!s->indexed)
                        continue;
                r = fn(ctx, s->user, s->fingerprint);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void on_cluster_status(void *userdata, ClusterStatus *ret) {
        Manager *m = userdata;

        *ret = (ClusterStatus) {
                .sessions = m->sessions.n_active,
                .receiving = m->sessions.n_receiving,
                .queued = m->relay.n_queued,
        };
}

static const ClusterCallbacks cluster_callbacks = {
        .online = on_cluster_online,
        .offline = on_cluster_offline,
        .lost = on_cluster_lost,
        .replace = on_cluster_replace,
        .deliver = on_cluster_deliver,
        .kick = on_cluster_kick,
        .queued = on_cluster_queued,
        .foreach_receiver = on_cluster_foreach_receiver,
        .status = on_cluster_status,
};

int manager_new(const ConfigSources *sources, Config *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m) {
                config_free(config);
                return -ENOMEM;
        }
        m->config = config;
        m->sources = sources;
        m->control_fd = -EBADF;
        m->lock_fd = -EBADF;
        for (size_t i = 0; i < MANAGER_MAX_LISTENERS; i++)
                m->listen_fds[i] = -EBADF;

        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        r = anvil_new(&m->anvil);
        if (r < 0)
                return r;
        r = session_index_init(&m->sessions);
        if (r < 0)
                return r;
        m->relay = (Relay) {
                .event = m->event,
                .config = m->config,
                .sessions = &m->sessions,
                .hooks = &relay_hooks,
                .userdata = m,
        };
        log_set_event_hook(manager_on_event, manager_event_wanted, m);

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Sessions first: they hold event sources and transports. */
        session_index_done(&m->sessions);
        /* After the sessions, which hold its entries. */
        m->anvil = anvil_free(m->anvil);
        for (size_t i = 0; i < m->n_listen; i++)
                listener_free(m->listeners[i]);         /* and its socket */
        for (size_t i = 0; i < ELEMENTSOF(m->signal_sources); i++)
                sd_event_source_disable_unref(m->signal_sources[i]);
        sd_event_source_disable_unref(m->expire_timer);
        sd_event_source_disable_unref(m->post);
        safe_close(m->control_fd);

        cluster_free(m->cluster);
        store_free(m->store);
        if (m->tls_credentials)
                gnutls_certificate_free_credentials(m->tls_credentials);
        relay_welcome_key_free(&m->relay);
        rsa_key_free(m->server_key);
        safe_close(m->lock_fd);
        sd_event_unref(m->event);
        config_free(m->config);
        free(m->status);
        log_set_event_hook(NULL, NULL, NULL);
        free(m);
        return NULL;
}

/* ---- sessions: what they report ----------------------------------------- */

static void on_session_ready(Session *s, void *userdata) {
        Manager *m = userdata;

        relay_session_ready(&m->relay, s);
}

static bool on_session_frame(Session *s, const uint8_t *payload, size_t len, void *userdata) {
        Manager *m = userdata;

        return relay_frame(&m->relay, s, payload, len);
}

static void on_session_pump(Session *s, void *userdata) {
        Manager *m = userdata;

        relay_pump(&m->relay, s);
}

static bool on_session_has_more(const Session *s, void *userdata) {
        return relay_has_more(s);
}

static void on_session_closing(Session *s, bool was_active, void *userdata) {
        Manager *m = userdata;

        /* Out of the index first: the presence update goes to the others. */
        session_index_deactivate(&m->sessions, s);
        relay_session_closing(&m->relay, s, was_active);
}

static void on_session_dead(Session *s, void *userdata) {
        Manager *m = userdata;

        session_index_bury(&m->sessions, s);
}

static bool on_session_memory(Session *s, size_t old, size_t new, void *userdata) {
        Manager *m = userdata;

        session_index_memory(&m->sessions, old, new);
        return m->sessions.memory > m->config->max_memory;
}

static void on_session_limit(Session *s, Limit limit, const LogFields *fields, const char *message,
                             void *userdata) {
        manager_limit_hit(userdata, limit, fields, "%s", message);
}

static const SessionCallbacks session_callbacks = {
        .on_ready = on_session_ready,
        .on_frame = on_session_frame,
        .on_pump = on_session_pump,
        .has_more = on_session_has_more,
        .on_closing = on_session_closing,
        .on_dead = on_session_dead,
        .on_memory = on_session_memory,
        .on_limit = on_session_limit,
};

SessionLimits manager_session_limits(const Config *c) {
        return (SessionLimits) {
                .max_frame = c->max_frame,
                .max_text = c->max_text,
                .queue_ttl_usec = c->queue_ttl_usec,
                .queue_limit = c->queue_limit,
                .queue_limit_per_sender = config_queue_limit_per_sender(c),
                .max_prekeys = c->max_prekeys,
                .max_watches = c->max_watches,
                .handshake_timeout_usec = c->handshake_timeout_usec,
                .idle_timeout_usec = c->idle_timeout_usec,
                .memory_max = MAX(c->max_session_memory, SESSION_MEMORY_MIN(c->max_frame)),
        };
}

static int manager_add_session(Manager *m, int fd, AnvilEntry *address) {
        SessionSetup setup = {
                .event = m->event,
                .anvil = m->anvil,
                .tls = m->tls_credentials,
                .limits = manager_session_limits(m->config),
                .callbacks = &session_callbacks,
                .userdata = m,
        };
        Session *s;
        int r;

        r = session_new(&setup, fd, address, &s);
        if (r < 0)
                return r;
        session_index_add(&m->sessions, s);
        session_start(s);
        return 0;
}

/* ---- accepting ------------------------------------------------------------ */

uint64_t manager_now(Manager *m) {
        uint64_t now = 0;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        return now;
}

/* The per-address limits of a new connection, decided before anything is
 * spent on it: no TLS handshake (an RSA private operation) and no session.
 * Returns the address's entry for the session to hold, NULL for a trusted
 * address, or -EBUSY (counted and logged) when the connection is to be
 * closed unheard: before TLS there is no way to tell the peer why. */
static int admit_address(Manager *m, const struct sockaddr *sa, const char *peer, AnvilEntry **ret) {
        const Config *c = m->config;
        uint64_t now = manager_now(m), wait;
        LogFields f = { .peer = peer };
        AnvilEntry *e;

        *ret = NULL;
        if (config_address_trusted(c, sa))
                return 0;
        e = anvil_get_address(m->anvil, sa, now);
        if (!e) {
                /* Out of memory, or a socket family we never listen on. */
                log_warning("Refusing connection from %s: cannot track its address", peer);
                return -EBUSY;
        }
        if (e->refs >= c->max_connections_per_address) {
                manager_limit_hit_throttled(m, LIMIT_MAX_CONNECTIONS_PER_ADDRESS, e, &f,
                                            "Refusing connection from %s: %u connections from this address",
                                            peer, e->refs);
                return -EBUSY;
        }
        if (e->preauth >= c->max_preauth_per_address) {
                manager_limit_hit_throttled(m, LIMIT_MAX_PREAUTH_PER_ADDRESS, e, &f,
                                            "Refusing connection from %s: %u connections from this address "
                                            "not logged in yet", peer, e->preauth);
                return -EBUSY;
        }
        wait = anvil_take(e, ANVIL_BUCKET_CONNECT, config_rate_interval(&c->connection_rate),
                          c->connection_burst, now);
        if (wait > 0) {
                manager_limit_hit_throttled(m, LIMIT_CONNECTION_RATE, e, &f,
                                            "Refusing connection from %s: new connections from this "
                                            "address over connection-rate", peer);
                return -EBUSY;
        }
        *ret = e;
        return 0;
}

/* The listener's accounting hook: the address's limits, then
 * max-sessions. The token is the address's entry for the session. */
static int on_admit(Listener *l, int fd, const struct sockaddr *sa, socklen_t salen, void *userdata,
                    void **ret_token) {
        Manager *m = userdata;
        char peer[SOCKET_ADDRESS_MAX];
        AnvilEntry *entry = NULL;

        socket_address_format(sa, salen, peer);
        if (admit_address(m, sa, peer, &entry) < 0)
                return -EBUSY;
        if (m->sessions.n_sessions >= m->config->max_sessions + HANDSHAKE_SLACK) {
                /* From many addresses, each within its limits: the
                 * log is throttled for all of them together. */
                manager_limit_hit_throttled(m, LIMIT_MAX_SESSIONS, &m->busy_log,
                                            &(LogFields) { .peer = peer },
                                            "Refusing connection from %s: too many connections", peer);
                return -EBUSY;
        }
        *ret_token = entry;
        return 0;
}

static void on_accept(Listener *l, int fd, void *token, void *userdata) {
        int r;

        r = manager_add_session(userdata, fd, token);
        if (r < 0)
                log_warning_errno(r, "Failed to set up a session: %m");
}

static void on_accept_paused(Listener *l, int error, void *userdata) {
        errno = error;
        manager_limit_hit(userdata, LIMIT_FILE_DESCRIPTORS, NULL,
                          "Cannot accept connections: %m; pausing for a second");
}

static const ListenerCallbacks chat_listener_callbacks = {
        .admit = on_admit,
        .accept = on_accept,
        .paused = on_accept_paused,
};

static int manager_add_listener(Manager *m, int fd) {
        int r;

        if (m->n_listen >= MANAGER_MAX_LISTENERS) {
                safe_close(fd);
                return -E2BIG;
        }
        r = listener_new(m->event, fd, &chat_listener_callbacks, m, &m->listeners[m->n_listen]);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        m->listen_fds[m->n_listen++] = fd;
        return 0;
}

static int manager_listen(Manager *m) {
        char address[SOCKET_ADDRESS_MAX];
        ListenFds lf;
        int fd, r;

        r = listen_fds_collect(&lf);
        if (r < 0)
                return log_error_errno(r, "Failed to read the sockets passed by systemd: %m");
        m->control_fd = lf.control;
        for (size_t i = 0; i < lf.n_chat; i++) {
                r = manager_add_listener(m, lf.chat[i]);
                if (r < 0)
                        return log_error_errno(r, "Failed to watch a socket-activated socket: %m");
                m->socket_activated = true;
        }

        if (!m->socket_activated) {
                r = socket_listen_tcp(&m->config->listen_address, SOMAXCONN, &fd);
                if (r == -EADDRINUSE)
                        return log_error_errno(r, "Failed to listen on %s: %m. Another program (another "
                                               "securechatd?) has that port: pick another with --listen "
                                               "ADDRESS:PORT (for example --listen 127.0.0.1:5001).",
                                               m->config->listen);
                if (r == -EACCES)
                        return log_error_errno(r, "Failed to listen on %s: %m. Ports below 1024 need root: "
                                               "pick another with --listen ADDRESS:PORT (for example "
                                               "--listen 127.0.0.1:5000).", m->config->listen);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s: %m", m->config->listen);
                r = manager_add_listener(m, fd);
                if (r < 0)
                        return log_error_errno(r, "Failed to watch the listening socket: %m");
        }

        for (size_t i = 0; i < m->n_listen; i++) {
                socket_local_address(m->listen_fds[i], address);
                log_event(EVENT_LISTENING, &(LogFields) { .address = address },
                          "Listening on %s%s", address, m->socket_activated ? " (socket-activated)" : "");
        }
        return 0;
}

/* ---- status, expiry, signals ---------------------------------------------- */

static void manager_update_status(Manager *m) {
        char status[160];

        snprintf(status, sizeof(status), "Serving %zu sessions (%zu users online), %" PRIu64 " queued messages",
                 m->sessions.n_active, m->sessions.n_receiving, m->relay.n_queued);
        if (m->status && strcmp(m->status, status) == 0)
                return;
        free(m->status);
        m->status = strdup(status);
        (void) sd_notifyf(false, "STATUS=%s", status);
}

/* After the sessions ready in this turn of the loop had their turn:
 * commit and answer their sends in one transaction, free what was closed,
 * refresh STATUS=. */
static int on_post(sd_event_source *es, void *userdata) {
        Manager *m = userdata;

        relay_commit(&m->relay);
        /* The answers of a batch in flight (PostgreSQL) come later: they
         * must not reach a session freed now. */
        if (m->sessions.n_dead > 0)
                for (Session *s = m->sessions.all; s; s = s->next)
                        if (session_is_dead(s))
                                relay_session_free(&m->relay, s);
        session_index_free_dead(&m->sessions);
        manager_update_status(m);
        return 0;
}

static uint64_t expire_interval(const Manager *m) {
        /* Often enough that a message outlives its ttl by at most a
         * minute (or half a short ttl). */
        uint64_t i = m->config->queue_ttl_usec / 2;
        return MIN(MAX(i, (uint64_t) 1000000), (uint64_t) 60 * 1000000);
}

static void on_expired(void *userdata, const StoreMessage *msg) {
        Manager *m = userdata;
        LogFields f = {
                .user = msg->sender,
                .recipient = msg->recipient,
                .msg_id = msg->msg_id,
                .has_size = true, .size = msg->size,
                .has_seq = true, .seq = msg->seq,
        };

        relay_queue_expired(&m->relay, msg->size);
        log_event(EVENT_MESSAGE_EXPIRED, &f, "Message %s from %s to %s expired undelivered", msg->msg_id,
                  msg->sender, msg->recipient);
}

/* Set aside STATE_RESERVE_FILE again once there is room for it above
 * min-free-disk. Until then the store counts as full for new messages:
 * the room it has is for deleting. */
static void manager_restore_reserve(Manager *m) {
        const char *dir = m->config->state_directory;
        uint64_t avail = 0;
        int r;

        if (m->reserve || !store_on_state_disk(m))
                return;
        if (state_free_bytes(dir, &avail) < 0 || avail < m->config->min_free_disk + STATE_RESERVE_SIZE)
                return;
        r = state_reserve_create(dir);
        if (r < 0) {
                log_debug_errno(r, "Cannot set aside %s/%s yet: %m", dir, STATE_RESERVE_FILE);
                return;
        }
        m->reserve = true;
        log_notice("The file system of %s has room again: reserve set aside, new messages accepted", dir);
}

static int manager_store_full(Manager *m) {
        const char *dir = m->config->state_directory;
        int r;

        if (!m->reserve)
                return 0;
        m->reserve = false;
        r = state_reserve_release(dir);
        if (r < 0) {
                log_error_errno(r, "Failed to release %s/%s: %m", dir, STATE_RESERVE_FILE);
                return 0;
        }
        log_warning("The file system of %s is full: released the reserve so that the queue can "
                    "delete; new messages are refused until there is room again", dir);
        return r > 0;
}

static int manager_disk_check(Manager *m, uint64_t size) {
        uint64_t avail = 0, turn = 0;

        /* PostgreSQL's disk is the server's, which says when it is full. */
        if (!store_on_state_disk(m))
                return 0;
        manager_restore_reserve(m);
        if (!m->reserve)
                return -ENOSPC;
        /* One statvfs() per DISK_ROOM_USEC, not one per send (under load
         * every turn holds sends, and statvfs() was a tenth of the
         * system calls per routed message): the room last measured, less
         * what the relay let in since, is enough to say yes. Another
         * writer on the file system can take room meanwhile, which
         * min-free-disk and the reserve are there for. A no is always
         * measured afresh (after a checkpoint or an expiry gave room back,
         * say). */
        if (sd_event_now(m->event, CLOCK_MONOTONIC, &turn) < 0)
                turn = 0;
        if (turn != 0 && m->disk_room_turn != 0 && turn - m->disk_room_turn < DISK_ROOM_USEC &&
            m->disk_room >= m->config->min_free_disk + size) {
                m->disk_room -= size;
                return 0;
        }
        m->disk_room_turn = 0;
        if (state_free_bytes(m->config->state_directory, &avail) < 0 || avail < m->config->min_free_disk + size)
                return -ENOSPC;
        m->disk_room = avail - size;
        m->disk_room_turn = turn;
        return 0;
}

static int on_expire_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        uint64_t next = usec + expire_interval(m);
        int r;

        /* Its own transaction: the relay's batch goes first. */
        relay_commit(&m->relay);
        r = store_queue_expire(m->store, now_unix(), EXPIRE_BATCH, on_expired, m);
        if (r == -ENOSPC && manager_store_full(m) > 0)
                r = store_queue_expire(m->store, now_unix(), EXPIRE_BATCH, on_expired, m);
        /* The database away was said once, by the store. */
        if (r < 0 && r != -ENOTCONN)
                log_error_errno(r, "Failed to expire queued messages: %s", store_error(m->store));
        else if (r == EXPIRE_BATCH)
                next = usec;   /* more are waiting: again right away */
        manager_restore_reserve(m);
        (void) sd_event_source_set_time(es, next);
        (void) sd_event_source_set_enabled(es, SD_EVENT_ON);
        return 0;
}

static int on_terminate(sd_event_source *es, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_info("Received %s, shutting down", strsignal((int) si->ssi_signo));
        (void) sd_event_exit(m->event, 0);
        return 0;
}

static int on_reload(sd_event_source *es, const struct signalfd_siginfo *si, void *userdata) {
        (void) manager_reload(userdata, NULL);
        return 0;
}

/* ---- start and run -------------------------------------------------------- */

/* state_database_password(), with the error in the log: the one reading
 * of it the store and the cluster share. */
static int database_password(const Config *c, char **ret) {
        const char *path = c->database_password_file ?: "$CREDENTIALS_DIRECTORY/database-password";
        int r;

        r = state_database_password(c, ret);
        if (r == -EPERM)
                return log_error_errno(r, "Refusing %s: readable or writable by group or others "
                                       "(chmod 600 it)", path);
        if (r < 0)
                return log_error_errno(r, "Failed to read the database password from %s: %m", path);
        return 0;
}

static void password_freep(char **p) {
        if (*p)
                secure_free(*p, strlen(*p) + 1);
}

/* PostgreSQL is back after it was away: the relay's count of the queue
 * may have missed what a failed commit took back, and receiving sessions
 * whose backlog could not be read are waiting for it. */
static void on_store_back(void *userdata) {
        Manager *m = userdata;

        if (relay_queue_recount(&m->relay) < 0)
                log_warning("Failed to count the queue: %s", store_error(m->store));
        /* relay_pump() may close a session: see session-index.h. */
        for (Session *s = m->sessions.receivers; s; s = s->receiver_next)
                if (s->indexed && !s->caught_up)
                        relay_pump(&m->relay, s);
}

/* The store database= names: the state directory's SQLite file, or a
 * PostgreSQL database. *ret_name: what the log calls it (never with a
 * password: the configuration refuses one in the URI). */
static int manager_open_store(Manager *m, char **ret_name) {
        const Config *c = m->config;
        _cleanup_(password_freep) char *password = NULL;
        _cleanup_(freep) char *name = NULL, *app = NULL;
        int r;

        if (!store_is_postgresql(c->database)) {
                name = state_path(c->state_directory, STATE_DATABASE_FILE);
                if (!name)
                        return log_error_errno(-ENOMEM, "Out of memory");
                r = store_open(name, &m->store);
                /* Commits off the loop, on the store's writer thread. */
                if (r >= 0)
                        r = store_set_event(m->store, m->event);
        } else {
                StoreOptions o = {
                        .timeout_usec = c->database_timeout_usec,
                        .event = m->event,
                        .on_back = on_store_back,
                        .userdata = m,
                };

                r = database_password(c, &password);
                if (r < 0)
                        return r;
                name = strdup(c->database);
                if (!name || asprintf(&app, "securechatd/%s", c->node_name ?: "") < 0)
                        return log_error_errno(-ENOMEM, "Out of memory");
                o.password = password;
                o.application_name = app;
                r = store_open_postgresql(name, &o, &m->store);
        }
        if (r == -EPROTONOSUPPORT)
                return log_error_errno(r, "Database %s was written by a newer securechatd", name);
        if (r < 0)
                return log_error_errno(r, "Failed to open database %s: %m", name);
        log_info("Database: %s %s%s", store_backend(m->store), name, password ? " (with a password)" : "");
        *ret_name = TAKE_PTR(name);
        return 0;
}

/* The identity key clients pin: identity-key=, the credential, or the state
 * directory's (made on the first start). Several relays sharing a database
 * must present the same one, so the log says where it came from. */
static int manager_load_identity(Manager *m) {
        static const char *const source_names[] = {
                [STATE_IDENTITY_CONFIGURED] = "identity-key=",
                [STATE_IDENTITY_CREDENTIAL] = "credential " STATE_IDENTITY_CREDENTIAL_NAME,
                [STATE_IDENTITY_STATE] = "state directory",
        };
        const Config *c = m->config;
        _cleanup_(freep) char *path = NULL;
        char old_fingerprint[RSA_FINGERPRINT_MAX];
        StateIdentitySource source;
        bool created = false;
        int r;

        r = state_identity_locate(c, &source, &path);
        if (r < 0)
                return log_error_errno(r, "Failed to look for the identity key: %m");
        r = state_identity_load(path, source, c->key_bits, &m->server_key, &created);
        if (r == -EPERM)
                return log_error_errno(r, "Refusing identity key %s: readable or writable by group or others. "
                                       "Fix its mode with: chmod 600 %s", path, path);
        if (r == -ENOENT && source != STATE_IDENTITY_STATE)
                return log_error_errno(r, "Identity key %s (%s) does not exist: copy the key every relay "
                                       "shares there; it is never generated", path, source_names[source]);
        if (r < 0)
                return log_error_errno(r, "Failed to %s identity key %s (%s): %m",
                                       source == STATE_IDENTITY_STATE ? "load or create the" : "load the",
                                       path, source_names[source]);
        if (created)
                log_notice("Generated a new %u-bit identity key %s", rsa_key_bits(m->server_key),
                           m->server_key->fingerprint);
        log_info("Server identity %s (%u bits) from %s (%s)", m->server_key->fingerprint,
                 rsa_key_bits(m->server_key), path, source_names[source]);
        if (source != STATE_IDENTITY_STATE &&
            state_identity_superseded(c->state_directory, m->server_key, old_fingerprint) > 0)
                /* Clients that met this relay before pinned that one. */
                log_warning("%s/%s holds another identity key, %s, no longer used: clients that pinned it "
                            "refuse this relay", c->state_directory, STATE_IDENTITY_FILE, old_fingerprint);
        return 0;
}

int manager_start(Manager *m) {
        const Config *c = m->config;
        _cleanup_(freep) char *db = NULL;
        bool lax = false;
        uint64_t now, largest = 0;
        int r;

        /* From the first event on, the journal says which node said it. */
        if (config_database_is_postgresql(c))
                log_set_node(c->node_name);

        r = state_directory_prepare(c->state_directory, &lax);
        if (r == -EACCES || r == -EPERM || r == -EROFS)
                /* The default is the service's; someone trying the relay
                 * by hand wants one of their own. */
                return log_error_errno(r, "Failed to create state directory %s: %m. Run as root, or pick a "
                                       "directory you may write with --state-directory DIR (for example "
                                       "--state-directory ./state).", c->state_directory);
        if (r < 0)
                return log_error_errno(r, "Failed to create state directory %s: %m", c->state_directory);
        if (lax)
                log_warning("State directory %s is accessible by group or others; it should be 0700 "
                            "(chmod 700 %s)", c->state_directory, c->state_directory);
        r = state_lock(c->state_directory, &m->lock_fd);
        if (r == -EBUSY)
                return log_error_errno(r, "Another securechatd is using %s", c->state_directory);
        if (r < 0)
                return log_error_errno(r, "Failed to lock %s: %m", c->state_directory);

        r = manager_load_identity(m);
        if (r < 0)
                return r;

        if (c->tls) {
                StateTlsChange change;

                r = state_tls_credentials(c, c->state_directory, &m->tls_credentials, &change);
                if (r == -EPERM)
                        return log_error_errno(r, "Refusing %s/%s: readable or writable by group or others",
                                               c->state_directory, STATE_TLS_KEY_FILE);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up TLS (%s): %m",
                                               c->tls_certificate ?: "self-signed certificate");
                if (change == STATE_TLS_CREATED || change == STATE_TLS_UPGRADED)
                        log_notice("Created a self-signed Ed25519 TLS certificate %s/%s%s", c->state_directory,
                                   STATE_CERTIFICATE_FILE,
                                   change == STATE_TLS_UPGRADED ? " (replacing the one for the identity key)" : "");
                else if (change == STATE_TLS_REMADE)
                        log_notice("Remade the self-signed TLS certificate %s/%s", c->state_directory,
                                   STATE_CERTIFICATE_FILE);
        } else
                log_warning("TLS is off (tls = no): traffic, including user names, is not encrypted "
                            "in transit. Use this for debugging only.");

        r = manager_open_store(m, &db);
        if (r < 0)
                return r;
        m->relay.store = m->store;
        m->relay.server_key = m->server_key;
        r = relay_welcome_key_renew(&m->relay, now_unix());
        if (r < 0)
                return r;       /* logged */
        r = relay_queue_recount(&m->relay);
        if (r < 0)
                return log_error_errno(r, "Failed to read database %s: %s", db, store_error(m->store));
        r = store_queue_max_size(m->store, &largest);
        if (r >= 0 && largest + RELAY_DELIVER_OVERHEAD > c->max_frame)
                log_warning("The queue holds a message of %" PRIu64 " bytes, larger than max-frame "
                            "allows: it cannot be delivered until max-frame is raised again, and "
                            "expires after queue-ttl", largest);
        if (store_on_state_disk(m)) {
                r = state_reserve_create(c->state_directory);
                if (r < 0)
                        log_warning_errno(r, "Failed to set aside %s/%s (new messages are refused until "
                                          "there is room): %m", c->state_directory, STATE_RESERVE_FILE);
                m->reserve = r >= 0;
        }

        if (config_database_is_postgresql(c)) {
                /* It connects in the background: the relay serves its own
                 * users meanwhile, and announces them once connected. */
                r = cluster_new(m->event, c, &cluster_callbacks, m, &m->cluster);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the cluster: %m");
                m->relay.cluster = m->cluster;
                log_info("Node %s: sharing presence with the other relays of the database", c->node_name);
        }

        for (size_t i = 0; i < ELEMENTSOF(handled_signals); i++) {
                r = sd_event_add_signal(m->event, &m->signal_sources[i], handled_signals[i],
                                        handled_signals[i] == SIGHUP ? on_reload : on_terminate, m);
                if (r < 0)
                        return log_error_errno(r, "Failed to watch signals: %m");
        }

        now = manager_now(m);
        r = sd_event_add_time(m->event, &m->expire_timer, CLOCK_MONOTONIC, now, 0, on_expire_timer, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the expiry timer: %m");
        (void) sd_event_source_set_enabled(m->expire_timer, SD_EVENT_ON);
        /* At the sessions' priority, not below: while any source is
         * pending sd-event polls epoll again without waiting, so senders
         * that always have more to read would keep a lower-priority commit
         * from ever running, and nobody would hear accepted. At the same
         * priority the oldest pending source goes first, so the commit
         * comes once per round of the sessions that were ready. */
        r = sd_event_add_post(m->event, &m->post, on_post, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the event loop: %m");
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_warning_errno(r, "Failed to enable the watchdog: %m");

        return manager_listen(m);
}

static void manager_shutdown(Manager *m) {
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down");
        m->relay.stopping = true;
        /* What was stored is answered before the goodbye. */
        relay_done(&m->relay);

        /* Each session hears why, with one last non-blocking attempt to
         * say it; nobody is waited for. */
        for (Session *s = m->sessions.all; s; s = s->next) {
                session_close(s, ERR_SHUTDOWN, "server is shutting down", "shutdown");
                session_flush(s);
        }
        session_index_clear(&m->sessions);
}

int manager_run(Manager *m) {
        int r;

        (void) sd_event_now(m->event, CLOCK_REALTIME, &m->start_realtime_usec);
        manager_update_status(m);
        (void) sd_notify(false, "READY=1");
        log_event(EVENT_START, NULL, "securechatd %s started (%" PRIu64 " queued messages)",
                  PACKAGE_VERSION, m->relay.n_queued);

        r = sd_event_loop(m->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");

        manager_shutdown(m);
        /* The others hear at once that this node's users left. */
        cluster_stop(m->cluster);
        m->relay.cluster = m->cluster = cluster_free(m->cluster);
        m->store = m->relay.store = store_free(m->store);
        log_event(EVENT_STOP, NULL, "securechatd stopped");
        return r < 0 ? r : 0;
}

/* ---- reload ---------------------------------------------------------------- */

static bool streq_ptr(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* A key that only a restart can change: keep the value in force. */
static void keep_string(char **new, char **old, const char *key) {
        if (streq_ptr(*new, *old))
                return;
        log_warning("Changing %s takes effect only after a restart; keeping %s", key,
                    *old ? *old : "(unset)");
        free(*new);
        *new = *old;
        *old = NULL;
}

/* Queued envelopes were accepted under the limits in force, and clients
 * refuse a frame over the max_frame and a text over the max_text their
 * welcome announced. A reload that lowers either below what a queued
 * envelope may need would strand it until it expires: refuse it. The
 * largest envelope decides: its deliver frame must fit max-frame, and its
 * ciphertext, which takes at least 3/4 of its size in base64, could hold
 * a text over max-text (the relay cannot tell more precisely). */
static int reload_check_queue(Manager *m, const Config *c, char **ret_error) {
        const Config *old = m->config;
        uint64_t largest = 0, value, keep;
        const char *key;
        char a[32], b[32];
        int r;

        if (c->max_frame >= old->max_frame && c->max_text >= old->max_text)
                return 0;
        r = store_queue_max_size(m->store, &largest);
        if (r < 0) {
                if (asprintf(ret_error, "cannot read the queue: %s", store_error(m->store)) < 0)
                        *ret_error = NULL;
                return r;
        }
        if (largest > 0 && c->max_frame < old->max_frame &&
            largest + RELAY_DELIVER_OVERHEAD > c->max_frame)
                key = "max-frame", value = c->max_frame, keep = old->max_frame;
        else if (largest > 0 && c->max_text < old->max_text && largest / 4 * 3 > c->max_text)
                key = "max-text", value = c->max_text, keep = old->max_text;
        else
                return 0;
        if (asprintf(ret_error, "%s = %s may be too small for a queued message (of %" PRIu64
                     " bytes); keep %s at %s or more until it is delivered or expires (queue-ttl)",
                     key, config_format_size(value, a, sizeof(a)), largest, key,
                     config_format_size(keep, b, sizeof(b))) < 0)
                *ret_error = NULL;
        return -EBUSY;
}

int manager_reload(Manager *m, char **ret_error) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *error = NULL;
        Config *old = m->config;
        uint64_t now = 0, next = 0;
        int r;

        now = manager_now(m);
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=Reloading configuration", now);

        r = config_load(m->sources, &c, &error);
        if (r >= 0)
                r = reload_check_queue(m, c, &error);
        if (r < 0) {
                log_event(EVENT_RELOAD_FAILED, &(LogFields) { .reason = error ?: "out of memory" },
                          "Reloading the configuration failed, keeping the old one: %s",
                          error ?: "out of memory");
                (void) sd_notify(false, "READY=1");
                free(m->status);
                m->status = NULL;   /* STATUS= again after the reload message */
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return r;
        }

        keep_string(&c->listen, &old->listen, "listen");
        c->listen_address = old->listen_address;
        keep_string(&c->control, &old->control, "control");
        keep_string(&c->state_directory, &old->state_directory, "state-directory");
        keep_string(&c->node_name, &old->node_name, "node-name");
        keep_string(&c->tls_certificate, &old->tls_certificate, "tls-certificate");
        keep_string(&c->tls_key, &old->tls_key, "tls-key");
        /* The store was opened with them. */
        keep_string(&c->database, &old->database, "database");
        keep_string(&c->database_password_file, &old->database_password_file, "database-password-file");
        if (c->database_timeout_usec != old->database_timeout_usec) {
                log_warning("Changing database-timeout takes effect only after a restart");
                c->database_timeout_usec = old->database_timeout_usec;
        }
        keep_string(&c->identity_key, &old->identity_key, "identity-key");
        if (c->tls != old->tls) {
                log_warning("Changing tls takes effect only after a restart");
                c->tls = old->tls;
        }
        /* The cluster copied it when it started and is never told again. */
        if (c->node_timeout_usec != old->node_timeout_usec) {
                log_warning("Changing node-timeout takes effect only after a restart");
                c->node_timeout_usec = old->node_timeout_usec;
        }
        /* Only used when generating the first key, at start. */
        if (c->key_bits != old->key_bits) {
                log_warning("Changing key-bits takes effect only after a restart, for a new identity key");
                c->key_bits = old->key_bits;
        }

        m->config = TAKE_PTR(c);
        m->relay.config = m->config;
        config_free(old);
        log_set_max_level(m->config->log_level);
        /* A shorter queue-ttl expires more often from now on, not after
         * the interval of the old one. */
        if (sd_event_source_get_time(m->expire_timer, &next) >= 0 && next > now + expire_interval(m))
                (void) sd_event_source_set_time(m->expire_timer, now + expire_interval(m));
        log_event(EVENT_RELOAD, NULL, "Configuration reloaded");
        (void) sd_notify(false, "READY=1");
        free(m->status);
        m->status = NULL;
        return 0;
}

/* ---- for the control socket ------------------------------------------------ */

int manager_get_stats(Manager *m, ManagerStats *ret) {
        ManagerStats st = {
                .connections = m->sessions.n_sessions,
                .sessions = m->sessions.n_active,
                .receiving = m->sessions.n_receiving,
                .queued = m->relay.n_queued,
                .commits = m->relay.n_commits,
                .committed = m->relay.n_committed,
        };
        uint64_t now = 0;
        int r;

        r = store_user_count(m->store, &st.users_registered);
        if (r < 0)
                return r;
        (void) sd_event_now(m->event, CLOCK_REALTIME, &now);
        st.uptime_usec = now > m->start_realtime_usec ? now - m->start_realtime_usec : 0;
        *ret = st;
        return 0;
}

int manager_foreach_session(Manager *m, int (*fn)(void *userdata, const SessionInfo *i),
                            void *userdata) {
        uint64_t now = manager_now(m);

        for (Session *s = m->sessions.all; s; s = s->next) {
                char fp[RSA_FINGERPRINT_MAX];
                SessionInfo i;
                int r;

                if (!session_is_active(s))
                        continue;
                i = (SessionInfo) {
                        .id = s->id,
                        .user = s->user,
                        .peer = s->peer,
                        .receive = s->receive,
                        .tls = transport_is_tls(s->transport),
                        .connected_realtime_usec = s->connected_realtime_usec,
                        .fingerprint = fp,
                        .idle_usec = now > s->last_activity_usec ? now - s->last_activity_usec : 0,
                };
                rsa_fingerprint_spki(s->package->key, s->package->key_len, fp);
                r = fn(userdata, &i);
                if (r < 0)
                        return r;
        }
        return 0;
}

typedef struct UserIter {
        Manager *manager;
        int (*fn)(void *userdata, const UserInfo *i);
        void *userdata;
} UserIter;

static int user_iter(void *userdata, const KeyPackage *kp, const char *fingerprint) {
        UserIter *it = userdata;
        UserInfo i = {
                .package = kp,
                .fingerprint = fingerprint,
                .online = session_index_find_receiver(&it->manager->sessions, kp->user) ||
                          (it->manager->cluster && cluster_find(it->manager->cluster, kp->user)),
                .n_sessions = session_index_count(&it->manager->sessions, kp->user),
        };

        return it->fn(it->userdata, &i);
}

int manager_foreach_user(Manager *m, int (*fn)(void *userdata, const UserInfo *i),
                         void *userdata) {
        UserIter it = { m, fn, userdata };
        return store_user_foreach(m->store, user_iter, &it);
}

static int close_user_sessions(Manager *m, const char *user, const char *message, const char *reason) {
        Session *s;
        int n = 0;

        /* Closing takes a session out of the user's index. */
        while ((s = session_index_first(&m->sessions, user))) {
                session_close(s, ERR_KICKED, message, reason);
                n++;
        }
        return n;
}

int manager_kick_user(Manager *m, const char *user, const char *by) {
        char reason[128];
        int n;

        snprintf(reason, sizeof(reason), "kicked by %s", by ? by : "an administrator");
        n = close_user_sessions(m, user, "kicked by an administrator", reason);
        /* The user's sessions on the other nodes too. */
        if (m->cluster && cluster_kick(m->cluster, user) < 0)
                log_warning("Cannot tell the other nodes to kick %s: no database connection", user);
        log_event(EVENT_USER_KICKED, &(LogFields) { .user = user, .reason = reason },
                  "User %s kicked by %s (%d sessions closed)", user, by ? by : "an administrator", n);
        return n;
}

/* 96 random bits as "xxxx-xxxx-xxxx-xxxx-xxxx-xxxx": easy to read out. */
static int reset_code_new(char code[RESET_CODE_LEN]) {
        uint8_t b[12];
        size_t k = 0;
        int r;

        r = random_bytes(b, sizeof(b));
        if (r < 0)
                return r;
        for (size_t i = 0; i < sizeof(b); i++) {
                if (i > 0 && i % 2 == 0)
                        code[k++] = '-';
                k += (size_t) snprintf(code + k, RESET_CODE_LEN - k, "%02x", b[i]);
        }
        secure_wipe(b, sizeof(b));
        return 0;
}

int manager_reset_key(Manager *m, const char *user, const char *by, char ret_code[RESET_CODE_LEN],
                      uint64_t *ret_dropped) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX], reason[128], code[RESET_CODE_LEN];
        uint8_t hash[STORE_CODE_HASH_LEN];
        uint64_t dropped = 0;
        int r, n;

        r = store_user_get(m->store, user, &kp);
        if (r < 0)
                return r;
        rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);
        r = reset_code_new(code);
        if (r < 0)
                return r;
        /* The code first: a name without its registration but with no
         * code would be anyone's. */
        sha256(code, strlen(code), hash);
        relay_commit(&m->relay);        /* not to be committed with the relay's batch */
        r = store_reset_set(m->store, user, hash, now_unix() + RESET_CODE_TTL);
        if (r >= 0)
                r = store_user_delete(m->store, user);
        if (r >= 0)
                r = store_queue_drop(m->store, user, &dropped);
        if (r < 0) {
                secure_wipe(code, sizeof(code));
                return r;
        }
        if (dropped > 0 && relay_queue_recount(&m->relay) < 0)
                log_warning("Failed to count the queue after a key reset: %s", store_error(m->store));

        snprintf(reason, sizeof(reason), "key reset by %s", by ? by : "an administrator");
        n = close_user_sessions(m, user, "key reset by an administrator", reason);
        if (m->cluster && cluster_kick(m->cluster, user) < 0)
                log_warning("Cannot tell the other nodes to close the sessions of %s: no database "
                            "connection", user);
        log_event(EVENT_KEY_RESET, &(LogFields) { .user = user, .fingerprint = fingerprint, .reason = reason },
                  "Key %s of user %s removed by %s (%d sessions closed); the name registers again "
                  "only with the one-time code", fingerprint, user, by ? by : "an administrator", n);
        if (dropped > 0)
                log_event(EVENT_MESSAGES_DROPPED,
                          &(LogFields) { .user = user, .fingerprint = fingerprint, .reason = "key reset" },
                          "Dropped %" PRIu64 " message%s queued for %s, sealed to the removed key %s",
                          dropped, dropped == 1 ? "" : "s", user, fingerprint);
        memcpy(ret_code, code, sizeof(code));
        secure_wipe(code, sizeof(code));
        *ret_dropped = dropped;
        return 0;
}

static void limit_hit_va(Manager *m, Limit limit, AnvilEntry *entry, const LogFields *fields,
                         const char *format, va_list ap) _printf_(5, 0);

/* The one place where refusals are counted. */
static void limit_hit_va(Manager *m, Limit limit, AnvilEntry *entry, const LogFields *fields,
                         const char *format, va_list ap) {
        LogFields f = fields ? *fields : (LogFields) {};
        char message[512];
        int saved_errno = errno;
        uint64_t now = manager_now(m), suppressed = 0;
        size_t n;

        if ((size_t) limit >= ELEMENTSOF(m->limit_hits))
                return;
        m->limit_hits[limit]++;
        /* One line per peer and interval: the others of that peer are
         * counted on its next line. */
        if (entry && !anvil_log_allowed(entry, now, &suppressed))
                return;

        /* A flood of refusals is counted in full, but leaves a bounded
         * trace in the journal: at most MANAGER_LIMIT_LOG_BURST lines per
         * limit and second, however many peers it comes from. */
        if (now - m->limit_log_usec[limit] >= USEC_PER_SEC) {
                m->limit_log_usec[limit] = now;
                m->limit_logged[limit] = 0;
        }
        m->limit_unlogged[limit] += suppressed;
        if (m->limit_logged[limit] >= MANAGER_LIMIT_LOG_BURST) {
                m->limit_unlogged[limit]++;
                return;
        }
        m->limit_logged[limit]++;

        vsnprintf(message, sizeof(message), format, ap);
        n = strlen(message);
        if (m->limit_unlogged[limit] > 0 && n < sizeof(message))
                snprintf(message + n, sizeof(message) - n, " (and %" PRIu64 " more not logged)",
                         m->limit_unlogged[limit]);
        m->limit_unlogged[limit] = 0;
        f.reason = limit_name(limit);
        errno = saved_errno;
        log_event(EVENT_LIMIT_HIT, &f, "%s", message);
}

void manager_limit_hit(Manager *m, Limit limit, const LogFields *fields, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        limit_hit_va(m, limit, NULL, fields, format, ap);
        va_end(ap);
}

void manager_limit_hit_throttled(Manager *m, Limit limit, AnvilEntry *entry, const LogFields *fields,
                                 const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        limit_hit_va(m, limit, entry, fields, format, ap);
        va_end(ap);
}
