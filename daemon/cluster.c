/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include <libpq-fe.h>

#include "cluster.h"
#include "constants.h"
#include "log.h"
#include "macro.h"
#include "state.h"

#define RETRY_MIN_USEC (USEC_PER_SEC / 2)
#define RETRY_MAX_USEC (10 * USEC_PER_SEC)
#define CHANNEL "securechat"
#define NODE_CHANNEL_PREFIX "securechat_node_"
/* Nodes dead for this long leave sc_nodes (and scctl status). */
#define NODE_FORGET "1 day"
#define PARAMS_MAX 4
/* Statements waiting at most: a database that answers, but slower than
 * the node speaks, is treated as gone (the reconnect says everything
 * again) rather than let the queue grow without bound. */
#define QUEUE_MAX 4096
/* A failing statement (a missing table) is logged at most this often. */
#define ERROR_LOG_INTERVAL_USEC (60 * USEC_PER_SEC)

typedef struct Command Command;
/* Called with the statement's result; not when the connection went away
 * before it (the reconnect says again what matters). */
typedef void (*CommandDone)(Cluster *c, const PGresult *res, void *userdata);

struct Command {
        Command *next;
        const char *sql;
        char *sql_owned;                /* when sql was built (LISTEN) */
        char *params[PARAMS_MAX];
        int n_params;
        CommandDone done;
        char user[USERNAME_MAX + 1];    /* for done: the user it is about */
};

typedef enum ClusterState {
        CLUSTER_DOWN,                   /* waiting to retry */
        CLUSTER_CONNECTING,
        CLUSTER_UP,
} ClusterState;

struct Cluster {
        sd_event *event;
        const ClusterCallbacks *callbacks;
        void *userdata;

        /* Copied from the configuration at start. */
        char *database;
        char *password_file;            /* NULL: the credential, if any */
        char node[CLUSTER_NODE_MAX];
        uint64_t node_timeout_usec, database_timeout_usec;
        uint64_t started_realtime_usec;

        PGconn *conn;
        ClusterState state;
        int backend_pid;
        int fd;                         /* PQsocket() the io source watches */
        sd_event_source *io, *deadline, *retry, *heartbeat;
        uint64_t retry_usec;
        bool warned;                    /* the current outage was logged */
        bool announce;                  /* announce every local user at the next heartbeat */

        Command *queue, *queue_tail;    /* queue is the one in flight when busy */
        size_t n_queued;
        bool busy;
        bool beating;                   /* a heartbeat's statements wait */
        uint64_t error_logged_usec;

        void *remote;                   /* of ClusterUser, by name, tsearch(3) */
        ClusterUser *first, *last;
        size_t n_remote;
        uint64_t next_position;

        ClusterNode *nodes;
        size_t n_nodes;
        uint64_t nodes_usec;            /* CLOCK_MONOTONIC when fetched */
};

static void cluster_drop(Cluster *c, const char *why);
static void cluster_kick_off(Cluster *c);
static void cluster_heartbeat_now(Cluster *c);

static uint64_t now_usec(Cluster *c) {
        uint64_t now = 0;

        (void) sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        return now;
}

/* ---- the remote users -------------------------------------------------------- */

/* A balanced tree by name: O(log n) whatever names come and go (a hash
 * table of json-c keeps a mark for every deletion). A ClusterUser starts
 * with its name, so that a name is its own key. */
static int remote_compare(const void *a, const void *b) {
        return strcmp(a, b);
}

static void remote_unlink(Cluster *c, ClusterUser *u) {
        if (u->prev)
                u->prev->next = u->next;
        else
                c->first = u->next;
        if (u->next)
                u->next->prev = u->prev;
        else
                c->last = u->prev;
        u->next = u->prev = NULL;
}

static void remote_append(Cluster *c, ClusterUser *u) {
        u->position = CLUSTER_POSITION_BASE + ++c->next_position;
        u->prev = c->last;
        u->next = NULL;
        if (c->last)
                c->last->next = u;
        else
                c->first = u;
        c->last = u;
}

/* user is online on node with fingerprint: keep it, and tell the relay
 * when that is news. */
static void remote_set(Cluster *c, const char *node, const char *user, const char *fingerprint) {
        ClusterUser *u = (ClusterUser *) cluster_find(c, user);

        if (strcmp(node, c->node) == 0)
                return;
        if (u) {
                u->stale = false;
                if (strcmp(u->node, node) == 0 && strcmp(u->fingerprint, fingerprint) == 0)
                        return;
                /* Another login: a new place in the order, as on one node. */
                remote_unlink(c, u);
        } else {
                u = calloc(1, sizeof(*u));
                if (!u)
                        return;         /* not listed here; heard of again at the next reload */
                snprintf(u->user, sizeof(u->user), "%s", user);
                if (!tsearch(u, &c->remote, remote_compare)) {
                        free(u);
                        return;
                }
                c->n_remote++;
        }
        snprintf(u->node, sizeof(u->node), "%s", node);
        snprintf(u->fingerprint, sizeof(u->fingerprint), "%s", fingerprint);
        u->deliver_queued = false;
        remote_append(c, u);
        c->callbacks->online(c->userdata, u);
}

/* Forget u; tell the relay it went offline, unless it is online here now. */
static void remote_remove(Cluster *c, ClusterUser *u, bool offline) {
        remote_unlink(c, u);
        (void) tdelete(u, &c->remote, remote_compare);
        c->n_remote--;
        if (offline)
                c->callbacks->offline(c->userdata, u);
        free(u);
}

/* user went offline on node. An offline of a node the user left already
 * (a late one) changes nothing. */
static void remote_unset(Cluster *c, const char *node, const char *user) {
        ClusterUser *u = (ClusterUser *) cluster_find(c, user);

        if (strcmp(node, c->node) == 0) {
                c->callbacks->lost(c->userdata, user);
                return;
        }
        if (u && strcmp(u->node, node) == 0)
                remote_remove(c, u, true);
}

const ClusterUser *cluster_find(Cluster *c, const char *user) {
        ClusterUser **node = tfind(user, &c->remote, remote_compare);

        return node ? *node : NULL;
}

const ClusterUser *cluster_first(Cluster *c) {
        return c->first;
}

size_t cluster_n_remote(const Cluster *c) {
        return c->n_remote;
}

/* ---- the command queue -------------------------------------------------------- */

static Command *command_free(Command *cmd) {
        if (!cmd)
                return NULL;
        for (int i = 0; i < cmd->n_params; i++)
                free(cmd->params[i]);
        free(cmd->sql_owned);
        free(cmd);
        return NULL;
}

static void command_queue(Cluster *c, Command *cmd) {
        if (c->n_queued >= QUEUE_MAX) {
                command_free(cmd);
                cluster_drop(c, "the database does not keep up with this node");
                return;
        }
        c->n_queued++;
        if (c->queue_tail)
                c->queue_tail->next = cmd;
        else
                c->queue = cmd;
        c->queue_tail = cmd;
        cluster_kick_off(c);
}

/* Queue sql with n parameters (strings, copied). Nothing is queued while
 * the database is away: what the node must say again is said on
 * reconnect (its row, its users), and a deliver lost is what the safety
 * net covers. */
static Command *command_new(Cluster *c, const char *sql, CommandDone done, int n, const char *const *params) {
        Command *cmd;

        if (c->state != CLUSTER_UP || n > PARAMS_MAX)
                return NULL;
        cmd = calloc(1, sizeof(*cmd));
        if (!cmd)
                return NULL;
        cmd->sql = sql;
        cmd->done = done;
        for (int i = 0; i < n; i++) {
                cmd->params[i] = strdup(params[i]);
                if (!cmd->params[i]) {
                        cmd->n_params = i;
                        return command_free(cmd);
                }
        }
        cmd->n_params = n;
        command_queue(c, cmd);
        return c->state == CLUSTER_UP ? cmd : NULL;
}

#define command(c, sql, done, ...)                                                      \
        command_new((c), (sql), (done), ELEMENTSOF(((const char *[]) { __VA_ARGS__ })),    \
                    (const char *const[]) { __VA_ARGS__ })

static void queue_pop(Cluster *c) {
        Command *cmd = c->queue;

        c->queue = cmd->next;
        if (!c->queue)
                c->queue_tail = NULL;
        c->n_queued--;
        c->busy = false;
        command_free(cmd);
}

static int deadline_arm(Cluster *c) {
        return sd_event_source_set_time(c->deadline, now_usec(c) + c->database_timeout_usec) < 0 ||
               sd_event_source_set_enabled(c->deadline, SD_EVENT_ONESHOT) < 0 ? -EIO : 0;
}

static void io_watch(Cluster *c, uint32_t events) {
        if (c->io)
                (void) sd_event_source_set_io_events(c->io, events);
}

/* Send the next command when none is in flight. */
static void cluster_kick_off(Cluster *c) {
        Command *cmd = c->queue;
        int r;

        if (c->state != CLUSTER_UP || c->busy || !cmd)
                return;
        if (!PQsendQueryParams(c->conn, cmd->sql, cmd->n_params, NULL, (const char *const *) cmd->params,
                               NULL, NULL, 0)) {
                cluster_drop(c, PQerrorMessage(c->conn));
                return;
        }
        c->busy = true;
        (void) deadline_arm(c);
        r = PQflush(c->conn);
        if (r < 0)
                cluster_drop(c, PQerrorMessage(c->conn));
        else
                io_watch(c, r > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* The first line of a libpq message, for the log. */
static const char *first_line(const char *m, char *buf, size_t size) {
        snprintf(buf, size, "%s", m && *m ? m : "unknown error");
        buf[strcspn(buf, "\n")] = '\0';
        return buf;
}

static bool result_ok(const PGresult *res) {
        ExecStatusType st = PQresultStatus(res);
        return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/* A statement failed without losing the connection (a missing table):
 * a warning at most once per ERROR_LOG_INTERVAL_USEC, for a failure that
 * repeats at every heartbeat. */
static void log_result_error(Cluster *c, const PGresult *res, const char *what) {
        uint64_t now = now_usec(c);
        char buf[256];
        int level = LOG_DEBUG;

        if (c->error_logged_usec == 0 || now - c->error_logged_usec >= ERROR_LOG_INTERVAL_USEC) {
                level = LOG_WARNING;
                c->error_logged_usec = now;
        }
        log_full(level, "Cluster: %s failed: %s", what, first_line(PQresultErrorMessage(res), buf, sizeof(buf)));
}

/* ---- notifications ------------------------------------------------------------ */

/* What the database says is checked as what a peer says: names and
 * fingerprints go into frames, the log and scctl's output. */
static bool node_name_valid(const char *s) {
        size_t n = strlen(s);

        return n > 0 && n <= CONFIG_NODE_NAME_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static bool fingerprint_valid(const char *s) {
        size_t n = strlen(s);

        return n < RSA_FINGERPRINT_MAX && strncmp(s, "SHA256:", 7) == 0 && n > 7 &&
               strspn(s + 7, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") == n - 7;
}

static void on_notify(Cluster *c, const PGnotify *n) {
        char verb[16], a[64], b[64], fp[RSA_FINGERPRINT_MAX + 1];
        bool own = n->be_pid == c->backend_pid;
        int k;

        /* User names, node names and fingerprints hold no spaces. */
        k = sscanf(n->extra, "%15s %63s %63s %51s", verb, a, b, fp);
        if (strcmp(n->relname, CHANNEL) == 0) {
                if (own)
                        return;         /* said by this node, done here already */
                if (k == 4 && strcmp(verb, "online") == 0 && node_name_valid(a) && username_valid(b) &&
                    fingerprint_valid(fp))
                        remote_set(c, a, b, fp);
                else if (k == 3 && strcmp(verb, "offline") == 0 && node_name_valid(a) && username_valid(b))
                        remote_unset(c, a, b);
                else if (k == 2 && strcmp(verb, "kick") == 0 && username_valid(a))
                        c->callbacks->kick(c->userdata, a);
                else
                        goto bad;
                return;
        }
        if (k == 2 && strcmp(verb, "deliver") == 0 && username_valid(a))
                c->callbacks->deliver(c->userdata, a);
        else if (k == 2 && strcmp(verb, "replace") == 0 && username_valid(a))
                c->callbacks->replace(c->userdata, a);
        else
                goto bad;
        return;
bad:
        log_debug("Cluster: ignoring a malformed notification on %s from pid %d", n->relname, n->be_pid);
}

/* ---- reading ------------------------------------------------------------------- */

/* Results, then notifications, then the next command. */
static void cluster_process(Cluster *c) {
        PGnotify *n;

        while (c->state == CLUSTER_UP && c->busy && !PQisBusy(c->conn)) {
                PGresult *res, *last = NULL;
                Command *cmd = c->queue;

                while ((res = PQgetResult(c->conn))) {
                        PQclear(last);
                        last = res;
                }
                (void) sd_event_source_set_enabled(c->deadline, SD_EVENT_OFF);
                if (last && PQresultStatus(last) == PGRES_FATAL_ERROR && PQstatus(c->conn) == CONNECTION_BAD) {
                        PQclear(last);
                        cluster_drop(c, PQerrorMessage(c->conn));
                        return;
                }
                if (cmd->done && last)
                        cmd->done(c, last, cmd);
                PQclear(last);
                if (c->state != CLUSTER_UP)
                        return;
                queue_pop(c);
                cluster_kick_off(c);
        }
        while (c->state == CLUSTER_UP && (n = PQnotifies(c->conn))) {
                on_notify(c, n);
                PQfreemem(n);
        }
}

/* ---- connecting ---------------------------------------------------------------- */

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* Watch PQsocket(), which may change while connecting. */
static int io_follow(Cluster *c, uint32_t events) {
        int fd = PQsocket(c->conn);

        if (fd < 0)
                return -EBADF;
        if (c->io && fd == c->fd) {
                io_watch(c, events);
                return 0;
        }
        c->io = sd_event_source_disable_unref(c->io);
        c->fd = fd;
        return sd_event_add_io(c->event, &c->io, fd, events, on_io, c);
}

static void on_listened(Cluster *c, const PGresult *res, void *userdata) {
        if (!result_ok(res))
                log_result_error(c, res, "LISTEN");
}

static void on_loaded(Cluster *c, const PGresult *res, void *userdata) {
        ClusterUser *u, *next;

        if (!result_ok(res)) {
                log_result_error(c, res, "reading sc_presence");
                return;
        }
        /* Users gone while the connection was away go offline now. */
        for (u = c->first; u; u = u->next)
                u->stale = true;
        for (int i = 0; i < PQntuples(res); i++) {
                const char *user = PQgetvalue(res, i, 0), *node = PQgetvalue(res, i, 1),
                           *fp = PQgetvalue(res, i, 2);

                if (username_valid(user) && node_name_valid(node) && fingerprint_valid(fp))
                        remote_set(c, node, user, fp);
        }
        for (u = c->first; u; u = next) {
                next = u->next;
                if (u->stale)
                        remote_remove(c, u, true);
        }
}

static void cluster_connected_now(Cluster *c) {
        Command *cmd;

        c->state = CLUSTER_UP;
        c->backend_pid = PQbackendPID(c->conn);
        c->retry_usec = 0;
        if (PQsetnonblocking(c->conn, 1) < 0) {
                cluster_drop(c, PQerrorMessage(c->conn));
                return;
        }
        log_info("Cluster: node %s connected to the database", c->node);
        c->warned = false;

        /* Listen first: nothing said after the reload below is missed. The
         * node's name may hold '-': quoted. */
        (void) command_new(c, "LISTEN " CHANNEL, on_listened, 0, NULL);
        cmd = calloc(1, sizeof(*cmd));
        if (cmd && asprintf(&cmd->sql_owned, "LISTEN \"" NODE_CHANNEL_PREFIX "%s\"", c->node) >= 0) {
                cmd->sql = cmd->sql_owned;
                cmd->done = on_listened;
                command_queue(c, cmd);
        } else {
                free(cmd);
                cluster_drop(c, "out of memory");
                return;
        }
        c->announce = true;
        cluster_heartbeat_now(c);
        (void) command(c, "SELECT username, node, fingerprint FROM sc_presence WHERE node <> $1",
                       on_loaded, c->node);
}

/* Drive PQconnectPoll(). */
static void cluster_connect_step(Cluster *c) {
        switch (PQconnectPoll(c->conn)) {
        case PGRES_POLLING_READING:
                if (io_follow(c, EPOLLIN) < 0)
                        cluster_drop(c, "cannot watch the connection");
                return;
        case PGRES_POLLING_WRITING:
                if (io_follow(c, EPOLLOUT) < 0)
                        cluster_drop(c, "cannot watch the connection");
                return;
        case PGRES_POLLING_OK:
                (void) sd_event_source_set_enabled(c->deadline, SD_EVENT_OFF);
                if (io_follow(c, EPOLLIN) < 0) {
                        cluster_drop(c, "cannot watch the connection");
                        return;
                }
                cluster_connected_now(c);
                return;
        default:
                cluster_drop(c, PQerrorMessage(c->conn));
                return;
        }
}

/* libpq writes notices (and the server's goodbye) to stderr unless told
 * otherwise: into the log, one line, at debug (what matters is logged
 * when the connection is lost). */
static void on_notice(void *userdata, const char *message) {
        char buf[256];

        log_debug("Cluster: the database says: %s", first_line(message, buf, sizeof(buf)));
}

static void cluster_connect(Cluster *c) {
        const char *keywords[4] = { "dbname", "fallback_application_name", NULL, NULL };
        const char *values[4] = { c->database, "securechatd", NULL, NULL };
        Config conf = { .database_password_file = c->password_file };
        char *password = NULL;
        int r;

        r = state_database_password(&conf, &password);
        if (r < 0) {
                char why[PATH_MAX + 128];

                /* Read again at each attempt: the file may be fixed. */
                snprintf(why, sizeof(why), "cannot read the password from %s: %s",
                         c->password_file ?: "$CREDENTIALS_DIRECTORY/database-password", strerror(-r));
                cluster_drop(c, why);
                return;
        }
        if (password) {
                keywords[2] = "password";
                values[2] = password;
        }
        c->conn = PQconnectStartParams(keywords, values, 1);
        if (password) {
                secure_wipe(password, strlen(password));
                free(password);
        }
        if (!c->conn) {
                cluster_drop(c, "out of memory");
                return;
        }
        (void) PQsetNoticeProcessor(c->conn, on_notice, c);
        if (PQstatus(c->conn) == CONNECTION_BAD) {
                cluster_drop(c, PQerrorMessage(c->conn));
                return;
        }
        c->state = CLUSTER_CONNECTING;
        (void) deadline_arm(c);
        cluster_connect_step(c);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        cluster_connect(userdata);
        return 0;
}

/* The connection is gone (or never came): fail what waits, retry later. */
static void cluster_drop(Cluster *c, const char *why) {
        char buf[256];
        Command *cmd;

        if (why) {
                first_line(why, buf, sizeof(buf));
                if (!c->warned)
                        log_warning("Cluster: node %s has no database connection: %s; retrying in the "
                                    "background", c->node, buf);
                else
                        log_debug("Cluster: still no database: %s", buf);
                c->warned = true;
        }
        c->io = sd_event_source_disable_unref(c->io);
        c->fd = -EBADF;
        (void) sd_event_source_set_enabled(c->deadline, SD_EVENT_OFF);
        PQfinish(c->conn);
        c->conn = NULL;
        c->state = CLUSTER_DOWN;
        c->busy = false;
        while ((cmd = c->queue)) {
                c->queue = cmd->next;
                command_free(cmd);
        }
        c->queue_tail = NULL;
        c->n_queued = 0;
        c->beating = false;
        for (ClusterUser *u = c->first; u; u = u->next)
                u->deliver_queued = false;

        c->retry_usec = c->retry_usec ? MIN(c->retry_usec * 2, RETRY_MAX_USEC) : RETRY_MIN_USEC;
        (void) sd_event_source_set_time(c->retry, now_usec(c) + c->retry_usec);
        (void) sd_event_source_set_enabled(c->retry, SD_EVENT_ONESHOT);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Cluster *c = userdata;
        int r;

        if (c->state == CLUSTER_CONNECTING) {
                cluster_connect_step(c);
                return 0;
        }
        if (revents & EPOLLOUT) {
                r = PQflush(c->conn);
                if (r < 0) {
                        cluster_drop(c, PQerrorMessage(c->conn));
                        return 0;
                }
                io_watch(c, r > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (!PQconsumeInput(c->conn)) {
                        cluster_drop(c, PQerrorMessage(c->conn));
                        return 0;
                }
                cluster_process(c);
        }
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        cluster_drop(userdata, "no answer within database-timeout");
        return 0;
}

/* ---- presence ------------------------------------------------------------------- */

/* Claim the user: a node that had it hears "replace", everyone "online".
 * The statements of one WITH run once each, in one transaction: the
 * notifications go out at its commit, together with the row. */
static const char sql_online[] =
        "WITH old AS (SELECT node FROM sc_presence WHERE username = $1), "
        "up AS (INSERT INTO sc_presence (username, node, fingerprint, since) VALUES ($1, $2, $3, now()) "
        "      ON CONFLICT (username) DO UPDATE SET node = EXCLUDED.node, "
        "      fingerprint = EXCLUDED.fingerprint, since = now()) "
        "SELECT pg_notify('" NODE_CHANNEL_PREFIX "' || node, 'replace ' || $1) FROM old WHERE node <> $2 "
        "UNION ALL SELECT pg_notify('" CHANNEL "', 'online ' || $2 || ' ' || $1 || ' ' || $3)";

static void on_done(Cluster *c, const PGresult *res, void *userdata) {
        if (!result_ok(res))
                log_result_error(c, res, "a presence update");
}

void cluster_online(Cluster *c, const char *user, const char *fingerprint) {
        ClusterUser *u = (ClusterUser *) cluster_find(c, user);

        /* Here from now on; the node it leaves says nothing more of it. */
        if (u)
                remote_remove(c, u, false);
        (void) command(c, sql_online, on_done, user, c->node, fingerprint);
}

void cluster_offline(Cluster *c, const char *user) {
        (void) command(c,
                       "WITH gone AS (DELETE FROM sc_presence WHERE username = $1 AND node = $2 RETURNING username) "
                       "SELECT pg_notify('" CHANNEL "', 'offline ' || $2 || ' ' || username) FROM gone",
                       on_done, user, c->node);
}

static int announce_one(void *ctx, const char *user, const char *fingerprint) {
        cluster_online(ctx, user, fingerprint);
        return 0;
}

/* ---- routing and control ---------------------------------------------------------- */

static void on_delivered(Cluster *c, const PGresult *res, void *userdata) {
        const Command *cmd = userdata;
        ClusterUser *u = (ClusterUser *) cluster_find(c, cmd->user);

        if (u)
                u->deliver_queued = false;
        on_done(c, res, NULL);
}

int cluster_deliver(Cluster *c, const char *user) {
        ClusterUser *u = (ClusterUser *) cluster_find(c, user);
        Command *cmd;

        if (!u)
                return 0;
        /* One notification while the last is on its way says it all. */
        if (u->deliver_queued)
                return 1;
        cmd = command(c, "SELECT pg_notify('" NODE_CHANNEL_PREFIX "' || $1, 'deliver ' || $2)",
                      on_delivered, u->node, user);
        if (cmd) {
                snprintf(cmd->user, sizeof(cmd->user), "%s", user);
                u->deliver_queued = true;
        }
        return 1;
}

static void on_claim_checked(Cluster *c, const PGresult *res, void *userdata) {
        const Command *cmd = userdata;
        ClusterUser *u;

        if (!result_ok(res)) {
                log_result_error(c, res, "reading a presence row");
                return;
        }
        log_debug("Cluster: %s is claimed by another node too; the row names %s", cmd->user,
                  PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "nobody");
        if (PQntuples(res) == 0) {
                /* Gone meanwhile: ours, if we still have it. */
                c->callbacks->lost(c->userdata, cmd->user);
                return;
        }
        if (strcmp(PQgetvalue(res, 0, 0), c->node) != 0) {
                c->callbacks->replace(c->userdata, cmd->user);
                return;
        }
        /* Ours: the other node's claim came first, and it hears ours. */
        u = (ClusterUser *) cluster_find(c, cmd->user);
        if (u)
                remote_remove(c, u, false);
}

void cluster_check_claim(Cluster *c, const char *user) {
        Command *cmd = command(c, "SELECT node FROM sc_presence WHERE username = $1", on_claim_checked, user);

        if (cmd)
                snprintf(cmd->user, sizeof(cmd->user), "%s", user);
}

int cluster_kick(Cluster *c, const char *user) {
        return command(c, "SELECT pg_notify('" CHANNEL "', 'kick ' || $1)", on_done, user) ? 0 : -ENOTCONN;
}

/* ---- heartbeat ---------------------------------------------------------------------- */

static void on_beat(Cluster *c, const PGresult *res, void *userdata) {
        if (!result_ok(res)) {
                log_result_error(c, res, "the heartbeat");
                return;
        }
        /* Gone or stale: another node may have taken this one for dead
         * and deleted its users. Say them again. */
        if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0 && !c->announce)
                log_warning("Cluster: node %s was taken for dead (its heartbeat is older than "
                            "node-timeout); announcing its users again", c->node);
        if ((PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) || c->announce) {
                c->announce = false;
                (void) c->callbacks->foreach_receiver(c->userdata, announce_one, c);
        }
}

static void on_reaped(Cluster *c, const PGresult *res, void *userdata) {
        if (!result_ok(res)) {
                log_result_error(c, res, "the dead nodes' cleanup");
                return;
        }
        if (PQntuples(res) > 0)
                log_notice("Cluster: %d users of nodes silent for node-timeout are offline now",
                           PQntuples(res));
        /* This node's own notifications are not heard back: apply them. */
        for (int i = 0; i < PQntuples(res); i++) {
                const char *node = PQgetvalue(res, i, 0), *user = PQgetvalue(res, i, 1);

                if (node_name_valid(node) && username_valid(user))
                        remote_unset(c, node, user);
        }
}

static uint64_t value_u64(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) ? 0 : strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static void on_nodes(Cluster *c, const PGresult *res, void *userdata) {
        ClusterNode *nodes;
        int n;

        c->beating = false;     /* the last of the heartbeat's that is always sent */
        if (!result_ok(res)) {
                log_result_error(c, res, "reading sc_nodes");
                return;
        }
        n = PQntuples(res);
        nodes = calloc(MAX(n, 1), sizeof(*nodes));
        if (!nodes)
                return;
        for (int i = 0; i < n; i++) {
                snprintf(nodes[i].name, sizeof(nodes[i].name), "%s", PQgetvalue(res, i, 0));
                nodes[i].alive = strcmp(PQgetvalue(res, i, 1), "t") == 0;
                nodes[i].heartbeat_age_usec = value_u64(res, i, 2);
                nodes[i].started_realtime_usec = value_u64(res, i, 3);
                nodes[i].sessions = value_u64(res, i, 4);
                nodes[i].receiving = value_u64(res, i, 5);
                nodes[i].queued = value_u64(res, i, 6);
        }
        free(c->nodes);
        c->nodes = nodes;
        c->n_nodes = (size_t) n;
        c->nodes_usec = now_usec(c);
}

static void on_queued(Cluster *c, const PGresult *res, void *userdata) {
        if (!result_ok(res)) {
                log_result_error(c, res, "the delivery safety net (reading sc_queue)");
                return;
        }
        for (int i = 0; i < PQntuples(res); i++)
                c->callbacks->queued(c->userdata, PQgetvalue(res, i, 0), value_u64(res, i, 1));
}

typedef struct UserArray {
        char *text;
        size_t len, size;
} UserArray;

/* A text[] literal, {"a","b"}: every name quoted, so that a user called
 * "null" is not NULL. Names hold no quote or backslash. */
static int user_array_add(void *ctx, const char *user, const char *fingerprint) {
        UserArray *a = ctx;
        size_t need = a->len + strlen(user) + 5;        /* the comma, quotes, "}" and NUL */

        if (need > a->size) {
                size_t size = MAX(need * 2, (size_t) 256);
                char *p = realloc(a->text, size);

                if (!p)
                        return -ENOMEM;
                a->text = p;
                a->size = size;
        }
        a->len += (size_t) sprintf(a->text + a->len, "%c\"%s\"", a->len == 0 ? '{' : ',', user);
        strcpy(a->text + a->len, "}");
        return 0;
}

static void cluster_heartbeat_now(Cluster *c) {
        char status[160], started[32], timeout[32];
        ClusterStatus st = {};
        UserArray a = {};

        c->callbacks->status(c->userdata, &st);
        snprintf(status, sizeof(status), "{\"sessions\":%" PRIu64 ",\"receiving\":%" PRIu64 ",\"queued\":%" PRIu64 "}",
                 st.sessions, st.receiving, st.queued);
        snprintf(started, sizeof(started), "%" PRIu64, c->started_realtime_usec);
        snprintf(timeout, sizeof(timeout), "%" PRIu64, c->node_timeout_usec);

        /* "t" when the row was gone or stale: see on_beat(). */
        (void) command(c,
                       "WITH prev AS (SELECT heartbeat FROM sc_nodes WHERE name = $1) "
                       "INSERT INTO sc_nodes (name, started, heartbeat, status) "
                       "VALUES ($1, to_timestamp($2::bigint / 1e6), now(), $3::jsonb) "
                       "ON CONFLICT (name) DO UPDATE SET started = EXCLUDED.started, "
                       "heartbeat = EXCLUDED.heartbeat, status = EXCLUDED.status "
                       "RETURNING (SELECT count(*) = 0 OR bool_or(heartbeat < now() - $4::bigint * "
                       "interval '1 microsecond') FROM prev)",
                       on_beat, c->node, started, status, timeout);
        /* Whoever deletes a dead node's users says so, once. */
        (void) command(c,
                       "WITH forgotten AS (DELETE FROM sc_nodes WHERE heartbeat < now() - interval '" NODE_FORGET "'), "
                       "gone AS (DELETE FROM sc_presence p WHERE p.node <> $1 AND NOT EXISTS "
                       "  (SELECT 1 FROM sc_nodes n WHERE n.name = p.node AND "
                       "   n.heartbeat >= now() - $2::bigint * interval '1 microsecond') "
                       "  RETURNING p.node, p.username) "
                       "SELECT node, username, pg_notify('" CHANNEL "', 'offline ' || node || ' ' || username) FROM gone",
                       on_reaped, c->node, timeout);
        (void) command(c,
                       "SELECT name, heartbeat >= now() - $1::bigint * interval '1 microsecond', "
                       "(extract(epoch FROM greatest(now() - heartbeat, interval '0')) * 1e6)::bigint, "
                       "(extract(epoch FROM started) * 1e6)::bigint, "
                       "(status->>'sessions')::bigint, (status->>'receiving')::bigint, "
                       "(status->>'queued')::bigint FROM sc_nodes ORDER BY name",
                       on_nodes, timeout);
        c->beating = c->state == CLUSTER_UP;

        /* The safety net: local receivers with messages past their cursor
         * are pumped again (a deliver lost with a node killed between its
         * commit and its notification). One query for all of them. */
        if (c->callbacks->foreach_receiver(c->userdata, user_array_add, &a) >= 0 && a.len > 0)
                (void) command(c,
                               "SELECT recipient, max(seq) FROM sc_queue WHERE recipient = ANY($1::text[]) "
                               "GROUP BY recipient",
                               on_queued, a.text);
        free(a.text);
}

static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata) {
        Cluster *c = userdata;

        /* A database slower than the heartbeat gets no second one
         * before it answered the first. */
        if (c->state == CLUSTER_UP && !c->beating)
                cluster_heartbeat_now(c);
        (void) sd_event_source_set_time(s, usec + c->node_timeout_usec / 3);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

/* ---- life ------------------------------------------------------------------------------ */

int cluster_new(sd_event *event, const Config *config, const ClusterCallbacks *callbacks, void *userdata,
                Cluster **ret) {
        _cleanup_(cluster_freep) Cluster *c = NULL;
        struct timespec ts = {};
        uint64_t now = 0;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        c->callbacks = callbacks;
        c->userdata = userdata;
        c->fd = -EBADF;
        c->node_timeout_usec = config->node_timeout_usec;
        c->database_timeout_usec = config->database_timeout_usec;
        snprintf(c->node, sizeof(c->node), "%s", config->node_name);
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        c->started_realtime_usec = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        c->database = strdup(config->database);
        if (!c->database)
                return -ENOMEM;
        if (config->database_password_file) {
                c->password_file = strdup(config->database_password_file);
                if (!c->password_file)
                        return -ENOMEM;
        }

        (void) sd_event_now(event, CLOCK_MONOTONIC, &now);
        /* Armed when needed. */
        r = sd_event_add_time(event, &c->deadline, CLOCK_MONOTONIC, now, 0, on_deadline, c);
        if (r >= 0)
                r = sd_event_add_time(event, &c->retry, CLOCK_MONOTONIC, now, 0, on_retry, c);
        if (r >= 0)
                r = sd_event_add_time(event, &c->heartbeat, CLOCK_MONOTONIC, now + c->node_timeout_usec / 3, 0,
                                      on_heartbeat, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(c->deadline, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->retry, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->heartbeat, SD_EVENT_ON);

        cluster_connect(c);
        *ret = TAKE_PTR(c);
        return 0;
}

/* Wait at most database-timeout for the answer to what is in flight, off
 * the loop (at shutdown). */
static int wait_answer(Cluster *c) {
        uint64_t deadline = now_usec(c) + c->database_timeout_usec;
        struct timespec ts;

        while (c->busy && PQisBusy(c->conn)) {
                struct pollfd p = { .fd = PQsocket(c->conn), .events = POLLIN };
                uint64_t now;

                if (PQflush(c->conn) > 0)
                        p.events |= POLLOUT;
                (void) clock_gettime(CLOCK_MONOTONIC, &ts);
                now = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
                if (now >= deadline || poll(&p, 1, (int) ((deadline - now) / 1000) + 1) <= 0 ||
                    !PQconsumeInput(c->conn))
                        return -ETIMEDOUT;
        }
        return 0;
}

void cluster_stop(Cluster *c) {
        Command *cmd;

        if (!c || c->state != CLUSTER_UP)
                return;
        /* What waits is moot: the goodbye says it all. */
        while (c->queue && c->queue->next) {
                cmd = c->queue->next;
                c->queue->next = cmd->next;
                command_free(cmd);
        }
        c->queue_tail = c->queue;
        c->n_queued = c->queue ? 1 : 0;
        if (wait_answer(c) < 0)
                goto fail;
        cluster_process(c);
        if (c->state != CLUSTER_UP)
                return;
        (void) command(c,
                       "WITH gone AS (DELETE FROM sc_presence WHERE node = $1 RETURNING username), "
                       "me AS (DELETE FROM sc_nodes WHERE name = $1) "
                       "SELECT pg_notify('" CHANNEL "', 'offline ' || $1 || ' ' || username) FROM gone",
                       on_done, c->node);
        if (wait_answer(c) < 0)
                goto fail;
        cluster_process(c);
        return;
fail:
        log_warning("Cluster: node %s could not say goodbye within database-timeout; the others "
                    "take its users for offline after node-timeout", c->node);
}

Cluster *cluster_free(Cluster *c) {
        Command *cmd;

        if (!c)
                return NULL;
        c->io = sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->deadline);
        sd_event_source_disable_unref(c->retry);
        sd_event_source_disable_unref(c->heartbeat);
        PQfinish(c->conn);
        while ((cmd = c->queue)) {
                c->queue = cmd->next;
                command_free(cmd);
        }
        tdestroy(c->remote, free);
        free(c->nodes);
        free(c->database);
        free(c->password_file);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

const char *cluster_node_name(const Cluster *c) {
        return c->node;
}

bool cluster_connected(const Cluster *c) {
        return c->state == CLUSTER_UP;
}

const ClusterNode *cluster_nodes(Cluster *c, size_t *ret_n, uint64_t *ret_age_usec) {
        uint64_t now = now_usec(c);

        *ret_n = c->n_nodes;
        *ret_age_usec = c->n_nodes > 0 && now > c->nodes_usec ? now - c->nodes_usec : 0;
        return c->nodes;
}
