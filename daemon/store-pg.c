/* SPDX-License-Identifier: MIT */
/*
 * The store on PostgreSQL (libpq): one database that several relays may
 * share. store.h says what each operation means; this file says how it is
 * done when other relays write to the same tables and the server may go
 * away.
 *
 * Every round trip is bounded: the query is sent without blocking and the
 * answer waited for on the socket until the store's timeout. A timeout or
 * a lost connection drops the connection, and from then on every call
 * says -ENOTCONN at once, until a reconnection, run on the event loop with
 * a backoff, succeeds. The relay's loop is never held longer than one
 * timeout by the database.
 *
 * PostgreSQL aborts a whole transaction at the first failed statement,
 * where SQLite fails the statement only. The relay's group commit puts
 * many writes in one transaction, so what is expected (the same message
 * again, a name registered already) never raises an error here: the
 * statements say ON CONFLICT DO NOTHING and look at what they changed. A
 * statement that does fail leaves the transaction failed: every later
 * call in it says the same error, and so does the commit, which ends it.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "rotation.h"
#include "rsa.h"
#include "store-backend.h"
#include "suite2.h"
#include "util.h"

/* Keys of pg_advisory_xact_lock(). "SC" and a number: other users of the
 * database are unlikely to pick them. */
#define LOCK_SCHEMA "1396899841"        /* 0x53430001: creating or migrating the tables */
#define LOCK_QUEUE "1396899842"         /* 0x53430002: giving queued messages their seq */

#define PG_SCHEMA_VERSION 1
#define RECONNECT_MIN_USEC (500 * 1000)
#define RECONNECT_MAX_USEC (10 * 1000 * 1000)
#define TIMEOUT_DEFAULT_USEC (5 * 1000 * 1000)

/* Version 1 of the tables: the SQLite store's data, and the cluster's
 * (sc_nodes, sc_presence), which daemon/cluster.c reads and writes. */
static const char schema_v1[] =
        "CREATE TABLE sc_users ("
        "  name text PRIMARY KEY,"
        "  key bytea NOT NULL,"                 /* SPKI DER */
        "  fingerprint text NOT NULL,"          /* SHA256:... of key */
        "  registered bigint NOT NULL,"         /* unix seconds */
        "  signature bytea NOT NULL"            /* server's key package signature */
        ");"
        "CREATE TABLE sc_rotations ("
        "  seq bigserial PRIMARY KEY,"
        "  name text NOT NULL REFERENCES sc_users (name) ON DELETE CASCADE,"
        "  statement text NOT NULL"             /* the rotation's JSON */
        ");"
        "CREATE INDEX sc_rotations_by_name ON sc_rotations (name, seq);"
        "CREATE TABLE sc_resets ("
        "  name text PRIMARY KEY,"
        "  code_hash bytea NOT NULL,"
        "  expires bigint NOT NULL"
        ");"
        "CREATE TABLE sc_signed_prekeys ("
        "  name text PRIMARY KEY REFERENCES sc_users (name) ON DELETE CASCADE,"
        "  spk bytea NOT NULL"
        ");"
        "CREATE TABLE sc_one_time_prekeys ("
        "  seq bigserial PRIMARY KEY,"          /* the order they were published in */
        "  name text NOT NULL REFERENCES sc_users (name) ON DELETE CASCADE,"
        "  id bigint NOT NULL,"                 /* the owner's, unique per user */
        "  pub bytea NOT NULL,"
        "  UNIQUE (name, id)"
        ");"
        "CREATE INDEX sc_one_time_prekeys_by_name ON sc_one_time_prekeys (name, seq);"
        "CREATE TABLE sc_queue ("
        "  seq bigserial PRIMARY KEY,"
        "  recipient text NOT NULL,"
        "  sender text NOT NULL,"
        "  msg_id text NOT NULL,"
        "  envelope text NOT NULL,"             /* envelope JSON */
        "  size bigint NOT NULL,"
        "  received bigint NOT NULL,"
        "  expires bigint NOT NULL,"
        "  UNIQUE (sender, msg_id)"
        ");"
        "CREATE INDEX sc_queue_by_recipient ON sc_queue (recipient, seq);"
        /* The counts every send is checked against, with several relays
         * writing: counted over this index, not kept in memory. */
        "CREATE INDEX sc_queue_by_recipient_sender ON sc_queue (recipient, sender);"
        "CREATE INDEX sc_queue_by_expiry ON sc_queue (expires);"
        "CREATE TABLE sc_nodes ("
        "  name text PRIMARY KEY,"
        "  started timestamptz NOT NULL,"
        "  heartbeat timestamptz NOT NULL,"
        "  status jsonb NOT NULL DEFAULT '{}'"
        ");"
        "CREATE TABLE sc_presence ("
        "  username text PRIMARY KEY,"
        "  node text NOT NULL,"
        "  fingerprint text NOT NULL,"
        "  since timestamptz NOT NULL DEFAULT now()"
        ");"
        "INSERT INTO sc_meta (key, value) VALUES ('schema_version', '1');";

typedef enum StatementId {
        STMT_USER_GET,
        STMT_USER_ADD,
        STMT_USER_DELETE,
        STMT_USER_COUNT,
        STMT_USER_ALL,
        STMT_USER_LOCK,
        STMT_USER_ROTATE,
        STMT_ROTATION_ADD,
        STMT_ROTATION_PRUNE,
        STMT_ROTATION_LIST,
        STMT_RESET_SET,
        STMT_RESET_GET,
        STMT_RESET_DELETE,
        STMT_QUEUE_ADD,
        STMT_QUEUE_ADD_CHECKED,
        STMT_QUEUE_FIND,
        STMT_QUEUE_COUNTS,
        STMT_QUEUE_TOTALS,
        STMT_QUEUE_MAX_SIZE,
        STMT_QUEUE_LAST,
        STMT_QUEUE_LIST,
        STMT_QUEUE_TAKE,
        STMT_QUEUE_DROP,
        STMT_QUEUE_EXPIRE,
        STMT_SPK_SET,
        STMT_SPK_GET,
        STMT_OPK_ADD,
        STMT_OPK_COUNT,
        STMT_OPK_TAKE,
        STMT_PREKEYS_DROP_SPK,
        STMT_PREKEYS_DROP_OPKS,
        STMT_BEGIN,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_NOSYNC,
        _STMT_MAX,
} StatementId;

#define QUEUE_COLUMNS "seq, recipient, sender, msg_id, size, received, expires"

static const char *const statement_sql[_STMT_MAX] = {
        [STMT_USER_GET] = "SELECT key, registered, signature FROM sc_users WHERE name = $1",
        [STMT_USER_ADD] = "INSERT INTO sc_users (name, key, fingerprint, registered, signature) "
                          "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        [STMT_USER_DELETE] = "DELETE FROM sc_users WHERE name = $1",
        [STMT_USER_COUNT] = "SELECT count(*) FROM sc_users",
        [STMT_USER_ALL] = "SELECT name, key, registered, signature, fingerprint FROM sc_users ORDER BY name",
        /* Publications of one user one after the other, whichever relay
         * they come to: the count checked is the count added to. */
        [STMT_USER_LOCK] = "SELECT 1 FROM sc_users WHERE name = $1 FOR UPDATE",
        /* Only while the old key is registered. */
        [STMT_USER_ROTATE] = "UPDATE sc_users SET key = $2, fingerprint = $3, registered = $4, signature = $5 "
                             "WHERE name = $1 AND key = $6",
        [STMT_ROTATION_ADD] = "INSERT INTO sc_rotations (name, statement) VALUES ($1, $2)",
        [STMT_ROTATION_PRUNE] = "DELETE FROM sc_rotations WHERE name = $1 AND seq NOT IN "
                                "(SELECT seq FROM sc_rotations WHERE name = $1 ORDER BY seq DESC LIMIT $2)",
        [STMT_ROTATION_LIST] = "SELECT statement FROM sc_rotations WHERE name = $1 ORDER BY seq DESC LIMIT $2",
        [STMT_RESET_SET] = "INSERT INTO sc_resets (name, code_hash, expires) VALUES ($1, $2, $3) "
                           "ON CONFLICT (name) DO UPDATE SET code_hash = excluded.code_hash, "
                           "expires = excluded.expires",
        [STMT_RESET_GET] = "SELECT code_hash, expires FROM sc_resets WHERE name = $1",
        [STMT_RESET_DELETE] = "DELETE FROM sc_resets WHERE name = $1",
        /* A bigserial is taken when a row is inserted, not when it is
         * committed: without the lock, relay A could take seq 10, relay B
         * seq 11 and commit first, and a reader that saw 11 would move its
         * cursor past 10 before 10 is there. Every transaction that adds
         * to the queue holds the lock from its first message to its end,
         * so a seq taken is larger than every seq committed before it, and
         * "after the cursor" holds what will come. The relay's group
         * commit makes that one lock per batch, not per message. The same
         * message again is no error (it would abort the batch): no row is
         * returned, and store_queue_add() looks at what is queued. */
        [STMT_QUEUE_ADD] = "INSERT INTO sc_queue (recipient, sender, msg_id, envelope, size, received, expires) "
                           "SELECT $1::text, $2::text, $3::text, $4::text, $5::bigint, $6::bigint, $7::bigint "
                           "FROM (SELECT pg_advisory_xact_lock(" LOCK_QUEUE ")) AS queue_lock "
                           "ON CONFLICT (sender, msg_id) DO NOTHING RETURNING seq",
        /* A send of the relay's pipelined batch, with the checks it had
         * made one round trip each (store.h, StoreWrite): is the recipient
         * registered, what is queued for it and from the sender, is the
         * message queued already; inserted only when they allow it. One
         * row answers. The counts see the batch's own earlier rows (each
         * statement reads what its transaction wrote). */
        [STMT_QUEUE_ADD_CHECKED] =
                "WITH queue_lock AS (SELECT pg_advisory_xact_lock(" LOCK_QUEUE ")), "
                "c AS (SELECT EXISTS (SELECT 1 FROM sc_users WHERE name = $1::text) AS known, "
                "(SELECT count(*) FROM sc_queue WHERE recipient = $1::text) AS n_all, "
                "(SELECT count(*) FROM sc_queue WHERE recipient = $1::text AND sender = $2::text) AS n_from, "
                "(SELECT seq FROM sc_queue WHERE sender = $2::text AND msg_id = $3::text "
                "AND envelope = $4::text) AS queued, "
                "EXISTS (SELECT 1 FROM sc_queue WHERE sender = $2::text AND msg_id = $3::text) AS taken "
                "FROM queue_lock), "
                "ins AS (INSERT INTO sc_queue (recipient, sender, msg_id, envelope, size, received, expires) "
                "SELECT $1::text, $2::text, $3::text, $4::text, $5::bigint, $6::bigint, $7::bigint FROM c "
                "WHERE c.known AND NOT c.taken AND c.n_from < $8::bigint AND c.n_all < $9::bigint "
                "ON CONFLICT (sender, msg_id) DO NOTHING RETURNING seq) "
                "SELECT (SELECT seq FROM ins), c.known, c.n_all, c.n_from, c.queued FROM c",
        [STMT_QUEUE_FIND] = "SELECT seq FROM sc_queue WHERE sender = $1 AND msg_id = $2 AND envelope = $3",
        [STMT_QUEUE_COUNTS] = "SELECT count(*), count(*) FILTER (WHERE sender = $2) FROM sc_queue "
                              "WHERE recipient = $1",
        [STMT_QUEUE_TOTALS] = "SELECT count(*), coalesce(sum(size), 0) FROM sc_queue",
        [STMT_QUEUE_MAX_SIZE] = "SELECT coalesce(max(size), 0) FROM sc_queue",
        [STMT_QUEUE_LAST] = "SELECT coalesce(max(seq), 0) FROM sc_queue WHERE recipient = $1",
        [STMT_QUEUE_LIST] = "SELECT " QUEUE_COLUMNS ", envelope FROM sc_queue "
                            "WHERE recipient = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        [STMT_QUEUE_TAKE] = "DELETE FROM sc_queue WHERE seq = $1 AND recipient = $2 RETURNING " QUEUE_COLUMNS,
        [STMT_QUEUE_DROP] = "DELETE FROM sc_queue WHERE recipient = $1",
        /* Relays expiring at once each take rows the others have not
         * locked: no waiting, nothing deleted twice. */
        [STMT_QUEUE_EXPIRE] = "DELETE FROM sc_queue WHERE seq IN (SELECT seq FROM sc_queue WHERE expires <= $1 "
                              "ORDER BY expires, seq LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING " QUEUE_COLUMNS,
        [STMT_SPK_SET] = "INSERT INTO sc_signed_prekeys (name, spk) VALUES ($1, $2) "
                         "ON CONFLICT (name) DO UPDATE SET spk = excluded.spk",
        [STMT_SPK_GET] = "SELECT spk FROM sc_signed_prekeys WHERE name = $1",
        /* All of a publication's OPKs in one statement, in their order;
         * an id held already, or given twice, is a row not inserted. */
        [STMT_OPK_ADD] = "INSERT INTO sc_one_time_prekeys (name, id, pub) "
                         "SELECT $1::text, t.id, decode(t.pub, 'hex') "
                         "FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS t(id, pub, n) ORDER BY t.n "
                         "ON CONFLICT (name, id) DO NOTHING",
        [STMT_OPK_COUNT] = "SELECT count(*) FROM sc_one_time_prekeys WHERE name = $1",
        /* The oldest, deleted as it is read: two lookups, on any relays,
         * never get the same one. */
        [STMT_OPK_TAKE] = "DELETE FROM sc_one_time_prekeys WHERE seq = (SELECT seq FROM sc_one_time_prekeys "
                          "WHERE name = $1 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, pub",
        [STMT_PREKEYS_DROP_SPK] = "DELETE FROM sc_signed_prekeys WHERE name = $1",
        [STMT_PREKEYS_DROP_OPKS] = "DELETE FROM sc_one_time_prekeys WHERE name = $1",
        [STMT_BEGIN] = "BEGIN",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        /* SET LOCAL, as a statement that can be prepared. */
        [STMT_NOSYNC] = "SELECT set_config('synchronous_commit', 'off', true)",
};

/* What each result of a pipelined batch answers, in the order sent. */
typedef enum PipeStepKind {
        STEP_PREPARE,                   /* of statement arg */
        STEP_PLAIN,                     /* BEGIN, ROLLBACK */
        STEP_WRITE,                     /* of writes[arg] */
        STEP_LIST,                      /* the page of the queue read */
        STEP_COMMIT,
        STEP_SYNC,
} PipeStepKind;

typedef struct PipeStep {
        PipeStepKind kind;
        unsigned arg;
} PipeStep;

/* A page of the queue to read without waiting (store_queue_list_async()). */
typedef struct PgList {
        struct PgList *next;
        StoreListRequest q;
} PgList;

/* The request in flight: the relay's batch (store_batch_send()) or a page
 * of the queue (list). One at a time; the others wait in PgStore. */
typedef struct PgBatch {
        bool active;                    /* sent, done() not called yet */
        bool finished;                  /* answered or failed: done() is due (defer) */
        PgList *list;                   /* a page, or NULL: the writes */
        StoreWrite *const *writes;
        size_t n;
        store_batch_fn done;
        void *userdata;
        int error;                      /* the first failure */
        PipeStep *steps;
        size_t n_steps, n_steps_allocated, next;
        sd_event_source *timer;         /* the answer's deadline */
        sd_event_source *defer;         /* calls done() from the loop */
} PgBatch;

typedef struct PgStore {
        Store store;
        char *uri;
        char *password;
        char *application_name;
        uint64_t timeout_usec;
        sd_event *event;
        void (*on_back)(void *userdata);
        void *userdata;

        PGconn *conn;                   /* NULL while the database is away */
        bool prepared[_STMT_MAX];       /* on this connection */
        sd_event_source *conn_io;       /* its socket between queries: notices the server leaving */

        PGconn *connecting;             /* a reconnection under way */
        sd_event_source *connect_io;
        sd_event_source *timer;         /* the next attempt, or the current one's deadline */
        uint64_t backoff_usec;

        PgBatch batch;
        /* Waiting for the one in flight: the next batch, then pages. */
        struct {
                StoreWrite *const *writes;
                size_t n;
                store_batch_fn done;
                void *userdata;
        } next_batch;
        PgList *lists, **lists_tail;
        bool last_was_batch;            /* the last request sent was the batch */

        bool in_tx;                     /* between store_begin() and its end */
        int tx_error;                   /* a statement failed in it: PostgreSQL ended it */
        char error[256];
} PgStore;

static PgStore *pg_store(Store *s) {
        return container_of(s, PgStore, store);
}

static void pq_clearp(PGresult **r) {
        PQclear(*r);
}

/* libpq's messages end in a newline; the log adds its own. */
static void set_error(PgStore *s, const char *message) {
        size_t n;

        snprintf(s->error, sizeof(s->error), "%s", message && *message ? message : "unknown error");
        n = strlen(s->error);
        while (n > 0 && (s->error[n - 1] == '\n' || s->error[n - 1] == ' '))
                s->error[--n] = 0;
        /* Some are several lines, indented: one line in the log. */
        for (char *p = s->error; *p; p++)
                if ((unsigned char) *p < ' ')
                        *p = ' ';
}

/* SQLSTATE to errno: what the API promises callers (store.h), and the
 * classes the relay tells apart (a full disk, the database away). */
static int errno_from_sqlstate(const char *state) {
        if (!state || strlen(state) != 5)
                return -EIO;
        if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
            strcmp(state, "57P03") == 0)
                return -ENOTCONN;       /* connection exception, the server shutting down */
        if (strcmp(state, "57014") == 0 || strcmp(state, "55P03") == 0)
                return -ETIMEDOUT;      /* statement_timeout, lock_timeout */
        if (strncmp(state, "53", 2) == 0)
                return -ENOSPC;         /* disk_full, out of memory or connections */
        if (strcmp(state, "23505") == 0)
                return -EEXIST;         /* unique_violation; the expected ones never raise */
        if (strncmp(state, "40", 2) == 0)
                return -EBUSY;          /* serialization failure, deadlock */
        if (strcmp(state, "42501") == 0 || strncmp(state, "28", 2) == 0)
                return -EACCES;
        if (strncmp(state, "22", 2) == 0)
                return -EINVAL;
        return -EIO;
}

/* ---- connecting ----------------------------------------------------------- */

/* A connection started with the URI as it is (expand_dbname), the
 * password given apart, so that it is in no string that may be logged. */
static PGconn *connect_start(PgStore *s) {
        const char *keys[6], *values[6];
        size_t n = 0;

        /* Before the URI: an application_name in it wins. */
        keys[n] = "application_name", values[n++] = s->application_name;
        keys[n] = "dbname", values[n++] = s->uri;
        keys[n] = "client_encoding", values[n++] = "UTF8";
        if (s->password)
                keys[n] = "password", values[n++] = s->password;
        keys[n] = NULL, values[n] = NULL;
        return PQconnectStartParams(keys, values, 1);
}

/* One step of PQconnectPoll(): 1 when connected, 0 with the events to wait
 * for, -ECONNREFUSED when it failed (s->error says why). */
static int connect_step(PgStore *s, PGconn *c, short *ret_events) {
        switch (PQconnectPoll(c)) {
        case PGRES_POLLING_OK:
                return 1;
        case PGRES_POLLING_READING:
                *ret_events = POLLIN;
                return 0;
        case PGRES_POLLING_WRITING:
                *ret_events = POLLOUT;
                return 0;
        default:
                set_error(s, PQerrorMessage(c));
                return -ECONNREFUSED;
        }
}

static int wait_fd(int fd, short events, uint64_t deadline, short *ret_revents) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                uint64_t now = now_monotonic_usec();
                int r;

                if (fd < 0)
                        return -ENOTCONN;
                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&p, 1, (int) MIN((deadline - now + 999) / 1000, (uint64_t) INT_MAX));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r > 0) {
                        if (ret_revents)
                                *ret_revents = p.revents;
                        return 0;
                }
        }
}

static void conn_close(PgStore *s) {
        s->conn_io = sd_event_source_disable_unref(s->conn_io);
        PQfinish(s->conn);
        s->conn = NULL;
        memset(s->prepared, 0, sizeof(s->prepared));
}

static int lost(PgStore *s, int r);
static void batch_fail(PgStore *s, int r);
static void pipe_read(PgStore *s);
static int pipe_flush(PgStore *s);

/* The connection's socket between queries: the server closing it (a
 * restart, pg_terminate_backend()) is seen now, not at the next send;
 * and while a batch is in flight, its answers as they come, and room to
 * write the rest of it. */
static int on_conn_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        PgStore *s = userdata;
        PGnotify *n;

        if ((revents & EPOLLOUT) && pipe_flush(s) < 0)
                return 0;
        if (!PQconsumeInput(s->conn) || PQstatus(s->conn) == CONNECTION_BAD) {
                set_error(s, PQerrorMessage(s->conn));
                (void) lost(s, -ENOTCONN);
                return 0;
        }
        while ((n = PQnotifies(s->conn)))
                PQfreemem(n);
        pipe_read(s);
        return 0;
}

/* The server's notices ("already exists, skipping", the FATAL of a
 * connection it ends) would go to stderr: the log has what matters. */
static void on_notice(void *userdata, const char *message) {
        log_debug("PostgreSQL: %.*s", (int) strcspn(message, "\n"), message);
}

/* A connection is made: set it up for bounded queries. */
static int conn_ready(PgStore *s, PGconn *c) {
        int r;

        (void) PQsetNoticeProcessor(c, on_notice, NULL);
        if (PQsetnonblocking(c, 1) < 0) {
                set_error(s, PQerrorMessage(c));
                PQfinish(c);
                return -EIO;
        }
        s->conn = c;
        memset(s->prepared, 0, sizeof(s->prepared));
        if (s->event) {
                r = sd_event_add_io(s->event, &s->conn_io, PQsocket(c), EPOLLIN, on_conn_io, s);
                if (r < 0) {
                        conn_close(s);
                        return r;
                }
        }
        return 0;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata);

static void schedule(PgStore *s, uint64_t delay) {
        uint64_t now;

        if (!s->event || sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        if (!s->timer) {
                if (sd_event_add_time(s->event, &s->timer, CLOCK_MONOTONIC, now + delay, 0, on_timer, s) < 0)
                        log_error("PostgreSQL: cannot schedule a reconnection: out of memory");
                return;
        }
        (void) sd_event_source_set_time(s->timer, now + delay);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

/* This attempt failed: the next one after the backoff, which doubles. */
static void attempt_failed(PgStore *s) {
        s->connect_io = sd_event_source_disable_unref(s->connect_io);
        PQfinish(s->connecting);
        s->connecting = NULL;
        log_debug("PostgreSQL: reconnection failed (%s), next in %" PRIu64 " ms", s->error,
                  s->backoff_usec / 1000);
        schedule(s, s->backoff_usec);
        s->backoff_usec = MIN(s->backoff_usec * 2, (uint64_t) RECONNECT_MAX_USEC);
}

static int on_connect_io(sd_event_source *source, int fd, uint32_t revents, void *userdata);

static int watch_connecting(PgStore *s, short events) {
        s->connect_io = sd_event_source_disable_unref(s->connect_io);
        return sd_event_add_io(s->event, &s->connect_io, PQsocket(s->connecting),
                               events == POLLIN ? EPOLLIN : EPOLLOUT, on_connect_io, s);
}

static int on_connect_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        PgStore *s = userdata;
        short events = 0;
        int r;

        r = connect_step(s, s->connecting, &events);
        if (r == 0) {
                /* libpq may have moved to another address (another socket). */
                if (watch_connecting(s, events) < 0)
                        attempt_failed(s);
                return 0;
        }
        if (r < 0) {
                attempt_failed(s);
                return 0;
        }
        s->connect_io = sd_event_source_disable_unref(s->connect_io);
        if (conn_ready(s, TAKE_PTR(s->connecting)) < 0) {
                schedule(s, s->backoff_usec);
                return 0;
        }
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        s->backoff_usec = RECONNECT_MIN_USEC;
        log_notice("PostgreSQL is back: connected to the database again");
        if (s->on_back)
                s->on_back(s->userdata);
        return 0;
}

/* Time for the next attempt, or the current one took too long. */
static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        PgStore *s = userdata;

        if (s->connecting) {
                set_error(s, "timed out connecting");
                attempt_failed(s);
                return 0;
        }
        s->connecting = connect_start(s);
        if (!s->connecting || PQstatus(s->connecting) == CONNECTION_BAD) {
                set_error(s, s->connecting ? PQerrorMessage(s->connecting) : "out of memory");
                attempt_failed(s);
                return 0;
        }
        /* libpq: start as if PQconnectPoll() had said "writing". */
        if (watch_connecting(s, POLLOUT) < 0) {
                attempt_failed(s);
                return 0;
        }
        schedule(s, s->timeout_usec);   /* this attempt's deadline */
        return 0;
}

/* The connection failed (r: why, s->error: what libpq said): drop it, say
 * so once, and start reconnecting. A transaction open on it is failed. */
static int lost(PgStore *s, int r) {
        conn_close(s);
        batch_fail(s, r);
        if (s->in_tx && !s->tx_error)
                s->tx_error = -ENOTCONN;
        log_warning("PostgreSQL is away (%s): refusing what needs the database until it is back",
                    r == -ETIMEDOUT ? "no answer within database-timeout" : s->error);
        if (r == -ETIMEDOUT)
                set_error(s, "the database did not answer in time");
        s->backoff_usec = RECONNECT_MIN_USEC;
        schedule(s, 0);
        return r;
}

/* The first connection, waited for (at most the timeout): the relay does
 * not start without its database. */
static int connect_blocking(PgStore *s) {
        uint64_t deadline = now_monotonic_usec() + s->timeout_usec;
        PGconn *c = connect_start(s);
        short events = POLLOUT;
        int r;

        if (!c)
                return -ENOMEM;
        if (PQstatus(c) == CONNECTION_BAD) {
                set_error(s, PQerrorMessage(c));
                PQfinish(c);
                return -ECONNREFUSED;
        }
        for (;;) {
                r = wait_fd(PQsocket(c), events, deadline, NULL);
                if (r == -ETIMEDOUT)
                        set_error(s, "timed out connecting");
                if (r >= 0)
                        r = connect_step(s, c, &events);
                if (r != 0)
                        break;
        }
        if (r < 0) {
                PQfinish(c);
                return r;
        }
        return conn_ready(s, c);
}

/* ---- round trips ------------------------------------------------------------ */

static bool result_failed(const PGresult *res) {
        ExecStatusType st = PQresultStatus(res);
        return st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK;
}

/* Wait for the answer to what was just sent, until deadline: its result
 * (the first that failed, or the last), or an error, the connection
 * dropped if it was the connection's. */
static int await_result(PgStore *s, uint64_t deadline, PGresult **ret) {
        _cleanup_(pq_clearp) PGresult *kept = NULL;
        PGresult *res;
        short revents = 0;
        int r;

        while ((r = PQflush(s->conn)) != 0) {
                if (r < 0)
                        goto broken;
                r = wait_fd(PQsocket(s->conn), POLLIN | POLLOUT, deadline, &revents);
                if (r < 0)
                        return lost(s, r);
                if ((revents & POLLIN) && !PQconsumeInput(s->conn))
                        goto broken;
        }
        for (;;) {
                while (PQisBusy(s->conn)) {
                        r = wait_fd(PQsocket(s->conn), POLLIN, deadline, NULL);
                        if (r < 0)
                                return lost(s, r);
                        if (!PQconsumeInput(s->conn))
                                goto broken;
                }
                res = PQgetResult(s->conn);
                if (!res)
                        break;
                if (kept && result_failed(kept))
                        PQclear(res);
                else {
                        PQclear(kept);
                        kept = res;
                }
        }
        if (PQstatus(s->conn) == CONNECTION_BAD || !kept)
                goto broken;
        *ret = TAKE_PTR(kept);
        return 0;

broken:
        set_error(s, PQerrorMessage(s->conn));
        return lost(s, -ENOTCONN);
}

/* A result that failed: its error, the transaction failed with it. */
static int result_error(PgStore *s, const PGresult *res) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        int r = errno_from_sqlstate(state);

        set_error(s, PQresultErrorMessage(res));
        if (r == -ENOTCONN)
                return lost(s, r);
        if (s->in_tx && !s->tx_error)
                s->tx_error = r;
        return r;
}

/* Before each round trip: the store away, or a transaction that failed,
 * says so at once. In a failed transaction PostgreSQL refuses every
 * statement ("current transaction is aborted"): -EIO, but for the errors
 * the relay answers in their own words (the database away or full). An
 * error that means something else for one statement (-EEXIST) must not
 * reach the next. */
static int usable(PgStore *s) {
        if (!s->conn) {
                if (!s->error[0])
                        set_error(s, "the database is away");
                return -ENOTCONN;
        }
        if (s->in_tx && s->tx_error)
                return s->tx_error == -ENOTCONN || s->tx_error == -ETIMEDOUT || s->tx_error == -ENOSPC
                               ? s->tx_error
                               : -EIO;
        return 0;
}

static int batch_drain(PgStore *s, uint64_t deadline);

static void statement_name(StatementId id, char name[static 16]) {
        snprintf(name, 16, "sc_%d", (int) id);
}

/* Text without parameters, possibly several statements (the schema). */
static int exec_sql(PgStore *s, const char *sql, PGresult **ret) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        int r;

        r = batch_drain(s, now_monotonic_usec() + s->timeout_usec);
        if (r >= 0)
                r = usable(s);
        if (r < 0)
                return r;
        if (!PQsendQuery(s->conn, sql)) {
                set_error(s, PQerrorMessage(s->conn));
                return lost(s, -ENOTCONN);
        }
        r = await_result(s, now_monotonic_usec() + s->timeout_usec, &res);
        if (r < 0)
                return r;
        if (result_failed(res))
                return result_error(s, res);
        if (ret)
                *ret = TAKE_PTR(res);
        return 0;
}

/* A statement's parameters: text, decimal numbers or binary bytea. */
#define PARAMS_MAX 9
typedef struct Params {
        int n;
        int r;                          /* a value that cannot be given */
        const char *values[PARAMS_MAX];
        int lengths[PARAMS_MAX];
        int formats[PARAMS_MAX];
        char numbers[PARAMS_MAX][24];
} Params;

/* Room for the next parameter; a statement with more is a bug, refused. */
static bool param_room(Params *p) {
        if (p->n < PARAMS_MAX)
                return true;
        p->r = -E2BIG;
        return false;
}

static void param_text(Params *p, const char *v) {
        if (!param_room(p))
                return;
        p->values[p->n] = v;
        p->lengths[p->n] = 0;
        p->formats[p->n++] = 0;
}

static void param_u64(Params *p, uint64_t v) {
        if (!param_room(p))
                return;
        if (v > INT64_MAX)
                p->r = -ERANGE;
        snprintf(p->numbers[p->n], sizeof(p->numbers[0]), "%" PRIu64, v);
        param_text(p, p->numbers[p->n]);
}

static void param_blob(Params *p, const void *v, size_t len) {
        if (!param_room(p))
                return;
        if (len > INT_MAX)
                p->r = -E2BIG;
        p->values[p->n] = v;
        p->lengths[p->n] = (int) len;
        p->formats[p->n++] = 1;
}

/* Run statement id (prepared on this connection at its first use) with p;
 * its result in *ret (may be NULL). Bounded by the timeout, both round
 * trips together. */
static int run(PgStore *s, StatementId id, const Params *p, PGresult **ret) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        uint64_t deadline = now_monotonic_usec() + s->timeout_usec;
        char name[16];
        int r;

        if (p && p->r < 0)
                return p->r;
        r = batch_drain(s, deadline);
        if (r >= 0)
                r = usable(s);
        if (r < 0)
                return r;
        statement_name(id, name);
        if (!s->prepared[id]) {
                if (!PQsendPrepare(s->conn, name, statement_sql[id], 0, NULL))
                        goto broken;
                r = await_result(s, deadline, &res);
                if (r < 0)
                        return r;
                if (result_failed(res))
                        return result_error(s, res);
                s->prepared[id] = true;
                res = (PQclear(res), NULL);
        }
        if (!PQsendQueryPrepared(s->conn, name, p ? p->n : 0, p ? p->values : NULL, p ? p->lengths : NULL,
                                 p ? p->formats : NULL, 0))
                goto broken;
        r = await_result(s, deadline, &res);
        if (r < 0)
                return r;
        if (result_failed(res))
                return result_error(s, res);
        if (ret)
                *ret = TAKE_PTR(res);
        return 0;

broken:
        set_error(s, PQerrorMessage(s->conn));
        return lost(s, -ENOTCONN);
}

/* Rows a statement changed. */
static uint64_t changed(const PGresult *res) {
        return strtoull(PQcmdTuples((PGresult *) res), NULL, 10);
}

static int get_u64(const PGresult *res, int row, int col, uint64_t *ret) {
        const char *v = PQgetvalue(res, row, col);
        char *end;
        unsigned long long n;

        if (PQgetisnull(res, row, col) || !v || *v < '0' || *v > '9')
                return -EBADMSG;
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno != 0 || *end)
                return -EBADMSG;
        *ret = n;
        return 0;
}

/* A statement answering one row of one number. */
static int run_u64(PgStore *s, StatementId id, const Params *p, uint64_t *ret) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        int r;

        r = run(s, id, p, &res);
        if (r < 0)
                return r;
        return PQntuples(res) == 1 ? get_u64(res, 0, 0, ret) : -EBADMSG;
}

/* A bytea column, in memory of its own (free()). */
static int get_bytea(const PGresult *res, int row, int col, uint8_t **ret, size_t *ret_len) {
        unsigned char *raw;
        uint8_t *copy;
        size_t n;

        if (PQgetisnull(res, row, col))
                return -EBADMSG;
        raw = PQunescapeBytea((const unsigned char *) PQgetvalue(res, row, col), &n);
        if (!raw)
                return -ENOMEM;
        copy = n > 0 ? malloc(n) : NULL;
        if (copy)
                memcpy(copy, raw, n);
        PQfreemem(raw);
        if (!copy)
                return n > 0 ? -ENOMEM : -EBADMSG;
        *ret = copy;
        *ret_len = n;
        return 0;
}

static void get_name(const PGresult *res, int row, int col, char out[static USERNAME_MAX + 1]) {
        snprintf(out, USERNAME_MAX + 1, "%s", PQgetvalue(res, row, col));
}

/* ---- transactions ------------------------------------------------------------ */

static int pg_begin(Store *store) {
        PgStore *s = pg_store(store);
        int r;

        /* PostgreSQL only warns of a BEGIN inside a transaction, and the
         * inner COMMIT would commit the outer one: refused, as SQLite does. */
        if (s->in_tx)
                return -EBUSY;
        r = run(s, STMT_BEGIN, NULL, NULL);
        if (r < 0)
                return r;
        s->in_tx = true;
        s->tx_error = 0;
        return 0;
}

static void pg_rollback(Store *store);

/* The commit does not wait for the server's WAL to reach its disk: a
 * crash of the server may lose the transaction, never a part of it, and
 * nothing committed before it. */
static int pg_begin_nosync(Store *store) {
        int r = pg_begin(store);

        if (r < 0)
                return r;
        r = run(pg_store(store), STMT_NOSYNC, NULL, NULL);
        if (r < 0)
                pg_rollback(store);
        return r;
}

static void pg_rollback(Store *store) {
        PgStore *s = pg_store(store);

        if (!s->in_tx)
                return;
        /* On a connection gone there is nothing to roll back: the server
         * did it when the connection ended. */
        s->tx_error = 0;
        if (s->conn)
                (void) run(s, STMT_ROLLBACK, NULL, NULL);
        s->in_tx = false;
}

/* Ends the transaction whatever happens: a commit that fails in
 * PostgreSQL leaves none open. One lost on the way may have committed
 * or not; what it sent is sent again and found (store_queue_add()'s
 * -EEXIST). */
static int pg_commit(Store *store) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        PgStore *s = pg_store(store);
        int r;

        if (!s->in_tx)
                return 0;
        if (s->tx_error) {
                r = s->tx_error;
                pg_rollback(store);
                return r;
        }
        r = run(s, STMT_COMMIT, NULL, &res);
        if (r >= 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
                set_error(s, "the transaction was rolled back");
                r = -EIO;
        }
        s->in_tx = false;
        s->tx_error = 0;
        return r;
}

static bool pg_in_transaction(Store *store) {
        return pg_store(store)->in_tx;
}

/* Commit when r >= 0, else roll back; r or the commit's error. */
static int end(PgStore *s, int r) {
        if (r >= 0)
                return pg_commit(&s->store);
        pg_rollback(&s->store);
        return r;
}

static int pg_checkpoint(Store *store) {
        return 0;       /* the server's WAL is the server's */
}

/* ---- registry ------------------------------------------------------------ */

/* A key package from row 0: key, registered, sig in columns k, k+1, k+2. */
static int row_to_package(const PGresult *res, int row, const char *user, int k, KeyPackage **ret) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        int r;

        kp = calloc(1, sizeof(*kp));
        if (!kp)
                return -ENOMEM;
        snprintf(kp->user, sizeof(kp->user), "%s", user);
        if ((r = get_bytea(res, row, k, &kp->key, &kp->key_len)) < 0 ||
            (r = get_u64(res, row, k + 1, &kp->registered)) < 0 ||
            (r = get_bytea(res, row, k + 2, &kp->sig, &kp->sig_len)) < 0)
                return r;
        *ret = TAKE_PTR(kp);
        return 0;
}

static int rotations_get(PgStore *s, KeyPackage *kp) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        const char *texts[ROTATION_CHAIN_MAX];
        size_t lens[ROTATION_CHAIN_MAX], n;
        Params p = {};
        int r;

        param_text(&p, kp->user);
        param_u64(&p, ROTATION_CHAIN_MAX);
        r = run(s, STMT_ROTATION_LIST, &p, &res);
        if (r < 0)
                return r;
        n = MIN((size_t) PQntuples(res), (size_t) ROTATION_CHAIN_MAX);
        for (size_t i = 0; i < n; i++) {
                texts[i] = PQgetvalue(res, (int) i, 0);
                lens[i] = (size_t) PQgetlength(res, (int) i, 0);
        }
        return store_package_set_rotations(kp, texts, lens, n);
}

static int pg_user_get(Store *store, const char *user, KeyPackage **ret) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        _cleanup_(pq_clearp) PGresult *res = NULL;
        PgStore *s = pg_store(store);
        Params p = {};
        int r;

        param_text(&p, user);
        r = run(s, STMT_USER_GET, &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        r = row_to_package(res, 0, user, 0, &kp);
        if (r < 0)
                return r;
        r = rotations_get(s, kp);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(kp);
        return 0;
}

static int pg_user_exists(Store *store, const char *user) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        Params p = {};
        int r;

        param_text(&p, user);
        r = run(pg_store(store), STMT_USER_GET, &p, &res);
        if (r < 0)
                return r;
        return PQntuples(res) > 0;
}

static int pg_user_add(Store *store, const KeyPackage *kp) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX];
        Params p = {};
        int r;

        rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);
        param_text(&p, kp->user);
        param_blob(&p, kp->key, kp->key_len);
        param_text(&p, fingerprint);
        param_u64(&p, kp->registered);
        param_blob(&p, kp->sig, kp->sig_len);
        r = run(pg_store(store), STMT_USER_ADD, &p, &res);
        if (r < 0)
                return r;
        return changed(res) == 1 ? 0 : -EEXIST;
}

/* A statement of one text parameter; the rows it changed in *ret_n (may be
 * NULL). */
static int run_name(PgStore *s, StatementId id, const char *name, uint64_t *ret_n) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        Params p = {};
        int r;

        param_text(&p, name);
        r = run(s, id, &p, &res);
        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = changed(res);
        return 0;
}

static int pg_user_delete(Store *store, const char *user) {
        uint64_t n = 0;
        int r;

        r = run_name(pg_store(store), STMT_USER_DELETE, user, &n);
        if (r < 0)
                return r;
        return n > 0 ? 0 : -ENOENT;
}

static int prekeys_drop(PgStore *s, const char *user) {
        int r = run_name(s, STMT_PREKEYS_DROP_OPKS, user, NULL);

        return r < 0 ? r : run_name(s, STMT_PREKEYS_DROP_SPK, user, NULL);
}

static int user_rotate(PgStore *s, const KeyPackage *kp, const Rotation *rot, const char *text) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX];
        Params p = {}, q = {};
        int r;

        rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);
        param_text(&p, kp->user);
        param_blob(&p, kp->key, kp->key_len);
        param_text(&p, fingerprint);
        param_u64(&p, kp->registered);
        param_blob(&p, kp->sig, kp->sig_len);
        param_blob(&p, rot->old_key, rot->old_key_len);
        r = run(s, STMT_USER_ROTATE, &p, &res);
        if (r < 0)
                return r;
        if (changed(res) != 1)
                return -ESTALE;
        param_text(&q, kp->user);
        param_text(&q, text);
        r = run(s, STMT_ROTATION_ADD, &q, NULL);
        if (r < 0)
                return r;
        q = (Params) {};
        param_text(&q, kp->user);
        param_u64(&q, ROTATION_CHAIN_MAX);
        r = run(s, STMT_ROTATION_PRUNE, &q, NULL);
        if (r < 0)
                return r;
        /* The SPK was signed by the old key: the owner publishes anew. */
        return prekeys_drop(s, kp->user);
}

static int pg_user_rotate(Store *store, const KeyPackage *kp, const Rotation *rot) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        PgStore *s = pg_store(store);
        const char *text;
        int r;

        r = rotation_to_json(rot, &o);
        if (r < 0)
                return r;
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        r = pg_begin(store);
        if (r < 0)
                return r;
        return end(s, user_rotate(s, kp, rot, text));
}

static int pg_user_count(Store *store, uint64_t *ret) {
        return run_u64(pg_store(store), STMT_USER_COUNT, NULL, ret);
}

static int pg_user_foreach(Store *store, store_user_fn fn, void *userdata) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        int r;

        r = run(pg_store(store), STMT_USER_ALL, NULL, &res);
        if (r < 0)
                return r;
        for (int i = 0; i < PQntuples(res); i++) {
                _cleanup_(key_package_freep) KeyPackage *kp = NULL;
                char user[USERNAME_MAX + 1];

                get_name(res, i, 0, user);
                r = row_to_package(res, i, user, 1, &kp);
                if (r >= 0)
                        r = fn(userdata, kp, PQgetvalue(res, i, 4));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int pg_reset_set(Store *store, const char *user, const uint8_t hash[STORE_CODE_HASH_LEN],
                        uint64_t expires) {
        Params p = {};

        param_text(&p, user);
        param_blob(&p, hash, STORE_CODE_HASH_LEN);
        param_u64(&p, expires);
        return run(pg_store(store), STMT_RESET_SET, &p, NULL);
}

static int pg_reset_get(Store *store, const char *user, uint8_t ret_hash[STORE_CODE_HASH_LEN],
                        uint64_t *ret_expires) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        _cleanup_(freep) uint8_t *hash = NULL;
        Params p = {};
        size_t len;
        int r;

        param_text(&p, user);
        r = run(pg_store(store), STMT_RESET_GET, &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        r = get_bytea(res, 0, 0, &hash, &len);
        if (r >= 0 && len != STORE_CODE_HASH_LEN)
                r = -EBADMSG;
        if (r >= 0)
                r = get_u64(res, 0, 1, ret_expires);
        if (r < 0)
                return r;
        memcpy(ret_hash, hash, STORE_CODE_HASH_LEN);
        return 0;
}

static int pg_reset_delete(Store *store, const char *user) {
        return run_name(pg_store(store), STMT_RESET_DELETE, user, NULL);
}

/* ---- queue ------------------------------------------------------------ */

/* Columns QUEUE_COLUMNS of row i. */
static int row_to_message(const PGresult *res, int i, StoreMessage *m) {
        int r;

        *m = (StoreMessage) {};
        get_name(res, i, 1, m->recipient);
        get_name(res, i, 2, m->sender);
        snprintf(m->msg_id, sizeof(m->msg_id), "%s", PQgetvalue(res, i, 3));
        if ((r = get_u64(res, i, 0, &m->seq)) < 0 || (r = get_u64(res, i, 4, &m->size)) < 0 ||
            (r = get_u64(res, i, 5, &m->received)) < 0 || (r = get_u64(res, i, 6, &m->expires)) < 0)
                return r;
        return 0;
}

static int pg_queue_find(Store *store, const char *sender, const char *msg_id, const char *envelope,
                         uint64_t *ret_seq) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        uint64_t seq;
        Params p = {};
        int r;

        param_text(&p, sender);
        param_text(&p, msg_id);
        param_text(&p, envelope);
        r = run(pg_store(store), STMT_QUEUE_FIND, &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        r = get_u64(res, 0, 0, &seq);
        if (r < 0)
                return r;
        if (ret_seq)
                *ret_seq = seq;
        return 0;
}

static int pg_queue_add(Store *store, StoreMessage *m) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        Params p = {};
        int r;

        param_text(&p, m->recipient);
        param_text(&p, m->sender);
        param_text(&p, m->msg_id);
        param_text(&p, m->envelope);
        param_u64(&p, m->size);
        param_u64(&p, m->received);
        param_u64(&p, m->expires);
        r = run(pg_store(store), STMT_QUEUE_ADD, &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 1)
                return get_u64(res, 0, 0, &m->seq);
        /* (sender, msg_id) is queued: the same message again (a client
         * retrying after a lost "accepted"), or another envelope under
         * that id, which is not the same message. */
        r = pg_queue_find(store, m->sender, m->msg_id, m->envelope, &m->seq);
        if (r == -ENOENT)
                return -ENOTUNIQ;
        return r < 0 ? r : -EEXIST;
}

static int pg_queue_counts(Store *store, const char *recipient, const char *sender, uint64_t *ret_all,
                           uint64_t *ret_from) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        uint64_t all, from;
        Params p = {};
        int r;

        param_text(&p, recipient);
        param_text(&p, ret_from ? sender : NULL);
        r = run(pg_store(store), STMT_QUEUE_COUNTS, &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -EBADMSG;
        if ((r = get_u64(res, 0, 0, &all)) < 0 || (r = get_u64(res, 0, 1, &from)) < 0)
                return r;
        *ret_all = all;
        if (ret_from)
                *ret_from = from;
        return 0;
}

static int pg_queue_drop(Store *store, const char *recipient, uint64_t *ret_n) {
        return run_name(pg_store(store), STMT_QUEUE_DROP, recipient, ret_n);
}

static int pg_queue_totals(Store *store, uint64_t *ret_n, uint64_t *ret_bytes) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        uint64_t n, bytes;
        int r;

        r = run(pg_store(store), STMT_QUEUE_TOTALS, NULL, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -EBADMSG;
        if ((r = get_u64(res, 0, 0, &n)) < 0 || (r = get_u64(res, 0, 1, &bytes)) < 0)
                return r;
        if (ret_n)
                *ret_n = n;
        if (ret_bytes)
                *ret_bytes = bytes;
        return 0;
}

static int pg_queue_max_size(Store *store, uint64_t *ret) {
        return run_u64(pg_store(store), STMT_QUEUE_MAX_SIZE, NULL, ret);
}

static int pg_queue_last_seq(Store *store, const char *recipient, uint64_t *ret) {
        Params p = {};

        param_text(&p, recipient);
        return run_u64(pg_store(store), STMT_QUEUE_LAST, &p, ret);
}

/* Every row of res as messages (with the envelope of column 7 when
 * envelopes). */
static int rows_to_messages(const PGresult *res, bool envelopes, StoreMessage **ret, size_t *ret_n) {
        size_t n = (size_t) PQntuples(res);
        StoreMessage *list;
        int r = 0;

        list = calloc(MAX(n, (size_t) 1), sizeof(*list));
        if (!list)
                return -ENOMEM;
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = row_to_message(res, (int) i, &list[i]);
                if (r >= 0 && envelopes) {
                        list[i].envelope = strdup(PQgetvalue(res, (int) i, 7));
                        if (!list[i].envelope)
                                r = -ENOMEM;
                }
        }
        if (r < 0) {
                store_messages_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

static int pg_queue_list(Store *store, const char *recipient, uint64_t after, size_t max, StoreMessage **ret,
                         size_t *ret_n) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        Params p = {};
        int r;

        param_text(&p, recipient);
        param_u64(&p, after);
        param_u64(&p, max);
        r = run(pg_store(store), STMT_QUEUE_LIST, &p, &res);
        if (r < 0)
                return r;
        return rows_to_messages(res, true, ret, ret_n);
}

static int pg_queue_take(Store *store, const char *recipient, uint64_t seq, StoreMessage *ret) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        StoreMessage m;
        Params p = {};
        int r;

        param_u64(&p, seq);
        param_text(&p, recipient);
        r = run(pg_store(store), STMT_QUEUE_TAKE, &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        r = row_to_message(res, 0, &m);
        if (r < 0)
                return r;
        if (ret)
                *ret = m;
        return 0;
}

static int pg_queue_expire(Store *store, uint64_t now, size_t max, store_message_fn fn, void *userdata) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        StoreMessage *batch = NULL;
        Params p = {};
        size_t n = 0;
        int r;

        if (max == 0)
                return 0;
        param_u64(&p, now);
        param_u64(&p, max);
        /* One statement: its own transaction, unless the caller has one. */
        r = run(pg_store(store), STMT_QUEUE_EXPIRE, &p, &res);
        if (r >= 0)
                r = rows_to_messages(res, false, &batch, &n);
        if (r < 0)
                return r;
        if (fn)
                for (size_t i = 0; i < n; i++)
                        fn(userdata, &batch[i]);
        store_messages_free(batch, n);
        return (int) n;
}

/* ---- prekeys ------------------------------------------------------------ */

static int pg_prekeys_count(Store *store, const char *user, uint64_t *ret) {
        Params p = {};

        param_text(&p, user);
        return run_u64(pg_store(store), STMT_OPK_COUNT, &p, ret);
}

/* OPKs as the arrays of STMT_OPK_ADD: "{id,...}" and "{hex,...}". */
static int opk_arrays(const OneTimePrekey *opks, size_t n, char **ret_ids, char **ret_pubs) {
        _cleanup_(freep) char *ids = NULL, *pubs = NULL;
        size_t ids_len = 0, pubs_len = 0;

        ids = malloc(2 + n * 11);
        pubs = malloc(2 + n * (2 * X25519_KEY_LEN + 1));
        if (!ids || !pubs)
                return -ENOMEM;
        ids[ids_len++] = '{';
        pubs[pubs_len++] = '{';
        for (size_t i = 0; i < n; i++) {
                ids_len += (size_t) sprintf(ids + ids_len, "%s%" PRIu32, i > 0 ? "," : "", opks[i].id);
                if (i > 0)
                        pubs[pubs_len++] = ',';
                for (size_t j = 0; j < X25519_KEY_LEN; j++)
                        pubs_len += (size_t) sprintf(pubs + pubs_len, "%02x", opks[i].pub[j]);
        }
        strcpy(ids + ids_len, "}");
        strcpy(pubs + pubs_len, "}");
        *ret_ids = TAKE_PTR(ids);
        *ret_pubs = TAKE_PTR(pubs);
        return 0;
}

static int prekeys_publish(PgStore *s, const char *user, const SignedPrekey *spk, const OneTimePrekey *opks,
                           size_t n, uint64_t max, uint64_t *ret_count) {
        _cleanup_(freep) uint8_t *data = NULL;
        _cleanup_(freep) char *ids = NULL, *pubs = NULL;
        _cleanup_(pq_clearp) PGresult *res = NULL;
        uint64_t count;
        size_t len;
        Params p = {};
        int r;

        r = run_name(s, STMT_USER_LOCK, user, NULL);
        if (r >= 0)
                r = pg_prekeys_count(&s->store, user, &count);
        if (r < 0)
                return r;
        if (n > max || count > max - n)
                return -E2BIG;
        r = signed_prekey_encode(spk, &data, &len);
        if (r < 0)
                return r;
        param_text(&p, user);
        param_blob(&p, data, len);
        r = run(s, STMT_SPK_SET, &p, NULL);
        if (r < 0 || n == 0)
                goto done;
        r = opk_arrays(opks, n, &ids, &pubs);
        if (r < 0)
                return r;
        p = (Params) {};
        param_text(&p, user);
        param_text(&p, ids);
        param_text(&p, pubs);
        r = run(s, STMT_OPK_ADD, &p, &res);
        if (r >= 0 && changed(res) != n)
                r = -ENOTUNIQ;  /* an id held already or given twice */
done:
        if (r >= 0)
                *ret_count = count + n;
        return r;
}

static int pg_prekeys_publish(Store *store, const char *user, const SignedPrekey *spk,
                              const OneTimePrekey *opks, size_t n, uint64_t max, uint64_t *ret_count) {
        PgStore *s = pg_store(store);
        uint64_t count = 0;
        int r;

        r = pg_begin(store);
        if (r < 0)
                return r;
        r = end(s, prekeys_publish(s, user, spk, opks, n, max, &count));
        if (r < 0)
                return r;
        if (ret_count)
                *ret_count = count;
        return 0;
}

static int pg_prekeys_take(Store *store, const char *user, bool take_opk, PrekeyBundle *ret) {
        _cleanup_(pq_clearp) PGresult *res = NULL, *opk = NULL;
        _cleanup_(freep) uint8_t *data = NULL, *pub = NULL;
        PgStore *s = pg_store(store);
        PrekeyBundle b = {};
        uint64_t id;
        size_t len;
        Params p = {};
        int r;

        param_text(&p, user);
        r = run(s, STMT_SPK_GET, &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        r = get_bytea(res, 0, 0, &data, &len);
        if (r >= 0)
                r = signed_prekey_parse(data, len, &b.spk);
        if (r < 0)
                return r;
        if (take_opk) {
                /* Deleted as it is read, in one statement. */
                r = run(s, STMT_OPK_TAKE, &p, &opk);
                if (r < 0)
                        return r;
                if (PQntuples(opk) > 0) {
                        r = get_u64(opk, 0, 0, &id);
                        if (r >= 0)
                                r = get_bytea(opk, 0, 1, &pub, &len);
                        if (r >= 0 && (id > UINT32_MAX || len != X25519_KEY_LEN))
                                r = -EBADMSG;
                        if (r < 0)
                                return r;
                        b.opk.id = (uint32_t) id;
                        memcpy(b.opk.pub, pub, X25519_KEY_LEN);
                        b.has_opk = true;
                }
        }
        *ret = b;
        return 0;
}

static int pg_prekeys_drop(Store *store, const char *user) {
        PgStore *s = pg_store(store);
        int r;

        r = pg_begin(store);
        if (r < 0)
                return r;
        return end(s, prekeys_drop(s, user));
}

/* ---- the pipelined batch ------------------------------------------------------ */

/* The relay's group commit without a wait on the loop: BEGIN, the
 * writes, COMMIT and a sync are sent in one go (libpq's pipeline mode),
 * and the answers are read as they come, from on_conn_io(). A statement
 * that fails makes the server skip the rest up to the sync; the failed
 * transaction is then rolled back in a second pipeline. The pump's pages
 * of the queue (store_queue_list_async()) go the same way, one statement
 * each: one request is in flight at a time, the batch and the pages
 * waiting in turn, the pages in order. Another store call meanwhile first
 * reads the request in flight to its end (batch_drain()); done() is
 * always called from a defer source, so that no store call ever
 * re-enters the relay. */

static int pipe_push(PgStore *s, PipeStepKind kind, unsigned arg) {
        PgBatch *b = &s->batch;

        if (b->n_steps == b->n_steps_allocated) {
                size_t n = MAX(b->n_steps_allocated * 2, (size_t) 64);
                PipeStep *p = reallocarray(b->steps, n, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                b->steps = p;
                b->n_steps_allocated = n;
        }
        b->steps[b->n_steps++] = (PipeStep) { .kind = kind, .arg = arg };
        return 0;
}

/* Queue statement id with p in the pipeline (prepared first, in the same
 * pipeline, on its first use on this connection). */
static int pipe_send(PgStore *s, StatementId id, const Params *p, PipeStepKind kind, unsigned arg) {
        char name[16];
        int r;

        if (p && p->r < 0)
                return p->r;
        statement_name(id, name);
        if (!s->prepared[id]) {
                if (!PQsendPrepare(s->conn, name, statement_sql[id], 0, NULL))
                        return -ENOTCONN;
                /* Taken back if its answer says it failed. */
                s->prepared[id] = true;
                r = pipe_push(s, STEP_PREPARE, id);
                if (r < 0)
                        return r;
        }
        if (!PQsendQueryPrepared(s->conn, name, p ? p->n : 0, p ? p->values : NULL, p ? p->lengths : NULL,
                                 p ? p->formats : NULL, 0))
                return -ENOTCONN;
        return pipe_push(s, kind, arg);
}

/* Send the sync that ends what was queued. */
static int pipe_sync(PgStore *s) {
        if (!PQpipelineSync(s->conn))
                return -ENOTCONN;
        return pipe_push(s, STEP_SYNC, 0);
}

/* Write what libpq holds; watch for room while some is left. <0: the
 * connection was lost. */
static int pipe_flush(PgStore *s) {
        int r = PQflush(s->conn);

        if (r < 0) {
                set_error(s, PQerrorMessage(s->conn));
                return lost(s, -ENOTCONN);
        }
        if (s->conn_io)
                (void) sd_event_source_set_io_events(s->conn_io, r > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
        return 0;
}

/* The batch is answered or failed: done() on the next turn of the loop. */
static void batch_finished(PgStore *s) {
        PgBatch *b = &s->batch;

        b->finished = true;
        (void) sd_event_source_set_enabled(b->timer, SD_EVENT_OFF);
        if (s->conn && PQpipelineStatus(s->conn) != PQ_PIPELINE_OFF)
                (void) PQexitPipelineMode(s->conn);
        /* At exit the loop runs no more: relay_done() waits and answers
         * (pg_batch_wait()) instead. */
        if (sd_event_source_set_enabled(b->defer, SD_EVENT_ONESHOT) < 0 &&
            sd_event_get_state(s->event) != SD_EVENT_EXITING &&
            sd_event_get_state(s->event) != SD_EVENT_FINISHED)
                log_error("PostgreSQL: cannot schedule the batch's answers");
}

/* The connection is gone (lost()): the batch in flight failed with r. */
static void batch_fail(PgStore *s, int r) {
        PgBatch *b = &s->batch;

        if (s->next_batch.done || s->lists)
                (void) sd_event_source_set_enabled(b->defer, SD_EVENT_ONESHOT);
        if (!b->active || b->finished)
                return;
        /* What the connection's end says, not a statement's earlier
         * error: the relay answers "unavailable" for it. */
        b->error = r;
        batch_finished(s);
}

static void list_complete(PgList *l, int r) {
        if (r < 0) {
                store_messages_free(l->q.messages, l->q.n_messages);
                l->q.messages = NULL;
                l->q.n_messages = 0;
        }
        if (l->q.done)
                l->q.done(l->q.userdata, r, l->q.messages, l->q.n_messages);
        else
                store_messages_free(l->q.messages, l->q.n_messages);
        free(l);
}

/* Call the callback of the request that finished. */
static void batch_complete(PgStore *s) {
        PgBatch *b = &s->batch;
        store_batch_fn done = b->done;
        void *userdata = b->userdata;
        PgList *l = b->list;
        int r = b->error;

        b->active = b->finished = false;
        b->list = NULL;
        b->writes = NULL;
        b->n = 0;
        if (l)
                list_complete(l, r);
        else
                done(userdata, r);
}

static int batch_start(PgStore *s);

/* Send the next request waiting, if none is in flight. */
static void pipe_kick(PgStore *s) {
        if (s->batch.active || !s->conn || (!s->next_batch.done && !s->lists))
                return;
        /* Failing, it failed what waits: said from the loop. */
        (void) batch_start(s);
}

/* The request in flight finished: its callback; then the next one is
 * sent, or, with the connection gone, every one waiting fails. */
static int on_batch_defer(sd_event_source *source, void *userdata) {
        PgStore *s = userdata;

        if (s->batch.active && s->batch.finished)
                batch_complete(s);
        if (s->conn) {
                pipe_kick(s);
                return 0;
        }
        if (s->batch.active)
                return 0;
        if (s->next_batch.done) {
                store_batch_fn done = s->next_batch.done;

                s->next_batch.done = NULL;
                done(s->next_batch.userdata, -ENOTCONN);
        }
        while (s->lists && !s->conn) {
                PgList *l = s->lists;

                s->lists = l->next;
                if (!s->lists)
                        s->lists_tail = &s->lists;
                list_complete(l, -ENOTCONN);
        }
        return 0;
}

static int on_batch_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        (void) lost(userdata, -ETIMEDOUT);
        return 0;
}

/* An added message's answer (STMT_QUEUE_ADD_CHECKED's row). */
static int add_result(StoreWrite *w, const PGresult *res) {
        uint64_t all, from, seq;
        int r;

        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1))
                return -EBADMSG;
        if (PQgetvalue(res, 0, 1)[0] != 't') {
                w->result = -ENOENT;
                return 0;
        }
        if ((r = get_u64(res, 0, 2, &all)) < 0 || (r = get_u64(res, 0, 3, &from)) < 0)
                return r;
        /* In the order the relay checked them one by one. */
        if (from >= w->limit_from) {
                w->result = -EDQUOT;
                w->count = from;
        } else if (all >= w->limit) {
                w->result = -EXFULL;
                w->count = all;
        } else if (!PQgetisnull(res, 0, 0)) {
                r = get_u64(res, 0, 0, &seq);
                if (r < 0)
                        return r;
                w->msg.seq = seq;
                w->result = 0;
        } else if (!PQgetisnull(res, 0, 4)) {
                r = get_u64(res, 0, 4, &seq);
                if (r < 0)
                        return r;
                w->msg.seq = seq;
                w->result = -EEXIST;
        } else
                w->result = -ENOTUNIQ;
        return 0;
}

static int take_result(StoreWrite *w, const PGresult *res) {
        StoreMessage m;
        int r;

        if (PQntuples(res) == 0) {
                w->result = -ENOENT;
                return 0;
        }
        r = row_to_message(res, 0, &m);
        if (r < 0)
                return r;
        w->msg = m;
        w->result = 0;
        return 0;
}

/* The first failure of the batch is what it failed with. */
static void batch_error(PgStore *s, int r) {
        if (!s->batch.error)
                s->batch.error = r;
}

/* At the sync: a failed transaction is rolled back in a pipeline of its
 * own, whose sync ends the batch; else the batch is done. */
static void pipe_synced(PgStore *s) {
        PgBatch *b = &s->batch;
        int r;

        if (b->next < b->n_steps)
                return;
        if (b->error && PQtransactionStatus(s->conn) == PQTRANS_INERROR) {
                r = pipe_send(s, STMT_ROLLBACK, NULL, STEP_PLAIN, 0);
                if (r >= 0)
                        r = pipe_sync(s);
                if (r == -ENOTCONN) {
                        set_error(s, PQerrorMessage(s->conn));
                        (void) lost(s, r);
                } else if (r < 0)
                        batch_finished(s);
                else
                        (void) pipe_flush(s);
                return;
        }
        batch_finished(s);
}

/* One answer of the pipeline, to the step it answers. */
static void pipe_result(PgStore *s, const PGresult *res) {
        PgBatch *b = &s->batch;
        ExecStatusType st = PQresultStatus(res);
        const PipeStep *step;
        int r;

        if (b->next >= b->n_steps) {
                set_error(s, "an answer to nothing sent");
                (void) lost(s, -ENOTCONN);
                return;
        }
        step = &b->steps[b->next++];
        if (step->kind == STEP_SYNC) {
                if (st == PGRES_PIPELINE_SYNC)
                        pipe_synced(s);
                else {
                        set_error(s, "the pipeline's answers are out of step");
                        (void) lost(s, -ENOTCONN);
                }
                return;
        }
        if (st == PGRES_PIPELINE_ABORTED || result_failed(res)) {
                if (step->kind == STEP_PREPARE)
                        s->prepared[step->arg] = false;
                if (st == PGRES_PIPELINE_ABORTED)
                        return;         /* skipped after the failure */
                r = errno_from_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
                set_error(s, PQresultErrorMessage(res));
                if (r == -ENOTCONN)
                        (void) lost(s, r);
                else
                        batch_error(s, r);
                return;
        }
        switch (step->kind) {
        case STEP_WRITE: {
                StoreWrite *w = b->writes[step->arg];

                r = w->type == STORE_WRITE_ADD ? add_result(w, res) : take_result(w, res);
                if (r < 0) {
                        set_error(s, "an answer that does not parse");
                        batch_error(s, r);
                }
                break;
        }
        case STEP_LIST:
                r = rows_to_messages(res, true, &b->list->q.messages, &b->list->q.n_messages);
                if (r < 0) {
                        set_error(s, "an answer that does not parse");
                        batch_error(s, r);
                }
                break;
        case STEP_COMMIT:
                if (strcmp(PQcmdStatus((PGresult *) res), "COMMIT") != 0) {
                        set_error(s, "the transaction was rolled back");
                        batch_error(s, -EIO);
                }
                break;
        default:
                break;
        }
}

/* Take what answers of the batch libpq has read. */
static void pipe_read(PgStore *s) {
        unsigned ends = 0;

        while (s->batch.active && !s->batch.finished && s->conn && !PQisBusy(s->conn)) {
                _cleanup_(pq_clearp) PGresult *res = PQgetResult(s->conn);

                /* NULL ends each statement's answers; twice in a row:
                 * nothing more has come yet. */
                if (!res) {
                        if (++ends > 1)
                                break;
                        continue;
                }
                ends = 0;
                pipe_result(s, res);
        }
}

/* Before a call that waits: the batch in flight first, read to its end
 * (at most until deadline). */
static int batch_drain(PgStore *s, uint64_t deadline) {
        while (s->batch.active && !s->batch.finished) {
                short revents = 0;
                int r;

                r = PQflush(s->conn);
                if (r < 0) {
                        set_error(s, PQerrorMessage(s->conn));
                        return lost(s, -ENOTCONN);
                }
                r = wait_fd(PQsocket(s->conn), r > 0 ? POLLIN | POLLOUT : POLLIN, deadline, &revents);
                if (r < 0)
                        return lost(s, r);
                if (revents & (POLLIN | POLLHUP | POLLERR)) {
                        if (!PQconsumeInput(s->conn)) {
                                set_error(s, PQerrorMessage(s->conn));
                                return lost(s, -ENOTCONN);
                        }
                        pipe_read(s);
                }
        }
        return 0;
}

static bool pg_batch_async(Store *store) {
        return pg_store(store)->event;
}

static bool pg_batch_busy(Store *store) {
        PgStore *s = pg_store(store);

        return (s->batch.active && !s->batch.list) || s->next_batch.done;
}

static void write_params(const StoreWrite *w, Params *p) {
        if (w->type == STORE_WRITE_TAKE) {
                param_u64(p, w->msg.seq);
                param_text(p, w->msg.recipient);
                return;
        }
        param_text(p, w->msg.recipient);
        param_text(p, w->msg.sender);
        param_text(p, w->msg.msg_id);
        param_text(p, w->msg.envelope);
        param_u64(p, w->msg.size);
        param_u64(p, w->msg.received);
        param_u64(p, w->msg.expires);
        param_u64(p, w->limit_from);
        param_u64(p, w->limit);
}

/* The sources the requests in flight need, made at the first. */
static int pipe_sources(PgStore *s) {
        PgBatch *b = &s->batch;
        int r;

        if (!b->timer) {
                r = sd_event_add_time(s->event, &b->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_batch_timer, s);
                if (r < 0)
                        return r;
        }
        if (!b->defer) {
                r = sd_event_add_defer(s->event, &b->defer, on_batch_defer, s);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_enabled(b->defer, SD_EVENT_OFF);
        }
        return 0;
}

/* Send the next request waiting: the batch or a page. <0 when
 * nothing was sent and the connection is gone (it failed at once). */
static int batch_start(PgStore *s) {
        PgBatch *b = &s->batch;
        PgList *l = NULL;
        uint64_t now;
        int r;

        if (PQenterPipelineMode(s->conn) != 1) {
                set_error(s, PQerrorMessage(s->conn));
                return lost(s, -ENOTCONN);
        }
        /* The batch and the pages take turns: a relay that always has
         * a batch ready would hold every pump back. */
        if (s->lists && (!s->next_batch.done || s->last_was_batch)) {
                l = s->lists;
                s->lists = l->next;
                if (!s->lists)
                        s->lists_tail = &s->lists;
        }
        *b = (PgBatch) {
                .active = true,
                .list = l,
                .steps = b->steps, .n_steps_allocated = b->n_steps_allocated,
                .timer = b->timer, .defer = b->defer,
        };
        if (!l) {
                b->writes = s->next_batch.writes;
                b->n = s->next_batch.n;
                b->done = s->next_batch.done;
                b->userdata = s->next_batch.userdata;
                s->next_batch.done = NULL;
        }
        s->last_was_batch = !l;

        if (l) {
                /* One statement: its own transaction, ended at the sync. */
                Params p = {};

                param_text(&p, l->q.recipient);
                param_u64(&p, l->q.after);
                param_u64(&p, l->q.max);
                r = pipe_send(s, STMT_QUEUE_LIST, &p, STEP_LIST, 0);
        } else {
                r = pipe_send(s, STMT_BEGIN, NULL, STEP_PLAIN, 0);
                /* Deletes alone need not wait for the server's disk
                 * (pg_begin_nosync()): a crash forgets them, which only
                 * delivers the messages again. */
                if (r >= 0 && store_writes_takes_only(b->writes, b->n))
                        r = pipe_send(s, STMT_NOSYNC, NULL, STEP_PLAIN, 0);
                for (size_t i = 0; i < b->n && r >= 0; i++) {
                        Params p = {};

                        b->writes[i]->result = 0;
                        write_params(b->writes[i], &p);
                        r = pipe_send(s, b->writes[i]->type == STORE_WRITE_ADD ? STMT_QUEUE_ADD_CHECKED
                                                                                : STMT_QUEUE_TAKE,
                                      &p, STEP_WRITE, (unsigned) i);
                }
                if (r >= 0)
                        r = pipe_send(s, STMT_COMMIT, NULL, STEP_COMMIT, 0);
                else if (r != -ENOTCONN) {
                        /* A value that cannot be sent, or no memory for the
                         * steps: what was sent is taken back. */
                        batch_error(s, r);
                        r = pipe_send(s, STMT_ROLLBACK, NULL, STEP_PLAIN, 0);
                }
        }
        if (r >= 0 || (l && r != -ENOTCONN)) {
                if (r < 0)
                        batch_error(s, r);
                r = pipe_sync(s);
        }
        if (r < 0) {
                /* The callback says it, from the loop, as for any request
                 * sent. */
                if (r == -ENOTCONN)
                        set_error(s, PQerrorMessage(s->conn));
                (void) lost(s, -ENOTCONN);
                return 0;
        }
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) >= 0) {
                (void) sd_event_source_set_time(b->timer, now + s->timeout_usec);
                (void) sd_event_source_set_enabled(b->timer, SD_EVENT_ONESHOT);
        }
        (void) pipe_flush(s);
        return 0;
}

/* A request may be sent now: the connection up, the sources made. */
static int pipe_ready(PgStore *s) {
        int r;

        if (!s->event)
                return -EOPNOTSUPP;
        r = usable(s);
        if (r < 0)
                return r;
        return pipe_sources(s);
}

static int pg_batch_send(Store *store, StoreWrite *const *writes, size_t n, store_batch_fn done,
                         void *userdata) {
        PgStore *s = pg_store(store);
        int r;

        if ((s->batch.active && !s->batch.list) || s->next_batch.done || s->in_tx)
                return -EBUSY;
        r = pipe_ready(s);
        if (r < 0)
                return r;
        s->next_batch.writes = writes;
        s->next_batch.n = n;
        s->next_batch.done = done;
        s->next_batch.userdata = userdata;
        /* Failing, it failed the batch too: said from the loop. */
        if (!s->batch.active)
                (void) batch_start(s);
        return 0;
}

static int pg_queue_list_async(Store *store, const char *recipient, uint64_t after, size_t max,
                               store_list_fn done, void *userdata) {
        PgStore *s = pg_store(store);
        PgList *l;
        int r;

        r = pipe_ready(s);
        if (r < 0)
                return r;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        store_list_request_init(&l->q, recipient, after, max, done, userdata);
        *s->lists_tail = l;
        s->lists_tail = &l->next;
        /* Failing, it failed the page too: said from the loop. */
        if (!s->batch.active)
                (void) batch_start(s);
        return 0;
}

static void pg_batch_wait(Store *store) {
        PgStore *s = pg_store(store);

        /* The batch is sent after what is in flight: both are waited for. */
        while (s->batch.active || (s->next_batch.done && s->conn)) {
                if (!s->batch.active && batch_start(s) < 0)
                        break;
                (void) batch_drain(s, now_monotonic_usec() + s->timeout_usec);
                if (!s->batch.finished)
                        break;
                batch_complete(s);
        }
        if (s->next_batch.done) {
                store_batch_fn done = s->next_batch.done;

                s->next_batch.done = NULL;
                done(s->next_batch.userdata, -ENOTCONN);
        }
}

/* ---- open and close ---------------------------------------------------------- */

static const char *pg_error(Store *store) {
        PgStore *s = pg_store(store);

        return s->error[0] ? s->error : "no error";
}

static void pg_free(Store *store) {
        PgStore *s = pg_store(store);

        conn_close(s);
        s->batch.timer = sd_event_source_disable_unref(s->batch.timer);
        s->batch.defer = sd_event_source_disable_unref(s->batch.defer);
        free(s->batch.steps);
        if (s->batch.list)
                store_messages_free(s->batch.list->q.messages, s->batch.list->q.n_messages);
        free(s->batch.list);
        while (s->lists) {
                PgList *l = s->lists;

                s->lists = l->next;
                store_messages_free(l->q.messages, l->q.n_messages);
                free(l);
        }
        s->connect_io = sd_event_source_disable_unref(s->connect_io);
        PQfinish(s->connecting);
        s->timer = sd_event_source_disable_unref(s->timer);
        sd_event_unref(s->event);
        free(s->uri);
        if (s->password)
                explicit_bzero(s->password, strlen(s->password));
        free(s->password);
        free(s->application_name);
        free(s);
}

/* Create the tables or check their version: one transaction under an
 * advisory lock, so that of relays starting at once on an empty
 * database one creates them and the others find them. */
static int schema_setup(PgStore *s) {
        _cleanup_(pq_clearp) PGresult *res = NULL;
        uint64_t version = 0;
        int r;

        r = exec_sql(s,
                     "BEGIN;"
                     "SELECT pg_advisory_xact_lock(" LOCK_SCHEMA ");"
                     "CREATE TABLE IF NOT EXISTS sc_meta (key text PRIMARY KEY, value text NOT NULL);"
                     "SELECT value FROM sc_meta WHERE key = 'schema_version'",
                     &res);
        if (r < 0)
                return r;
        if (PQntuples(res) > 0 && get_u64(res, 0, 0, &version) < 0)
                r = -EBADMSG;
        else if (version > PG_SCHEMA_VERSION)
                r = -EPROTONOSUPPORT;
        else if (version == 0)
                r = exec_sql(s, schema_v1, NULL);
        /* A later version adds its steps here, from version up. */
        r = exec_sql(s, r >= 0 ? "COMMIT" : "ROLLBACK", NULL) ?: r;
        if (r == -EPROTONOSUPPORT)
                set_error(s, "the tables were made by a newer securechatd");
        return r;
}

static const StoreOps pg_ops;

int store_pg_open(const char *uri, const StoreOptions *o, Store **ret) {
        _cleanup_(store_freep) Store *store = NULL;
        PgStore *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->store.ops = &pg_ops;
        store = &s->store;
        s->uri = strdup(uri);
        s->application_name = strdup(o && o->application_name ? o->application_name : "securechatd");
        s->password = o && o->password ? strdup(o->password) : NULL;
        if (!s->uri || !s->application_name || (o && o->password && !s->password))
                return -ENOMEM;
        s->timeout_usec = o && o->timeout_usec > 0 ? o->timeout_usec : TIMEOUT_DEFAULT_USEC;
        s->event = o && o->event ? sd_event_ref(o->event) : NULL;
        s->on_back = o ? o->on_back : NULL;
        s->userdata = o ? o->userdata : NULL;
        s->backoff_usec = RECONNECT_MIN_USEC;
        s->lists_tail = &s->lists;

        r = connect_blocking(s);
        if (r >= 0)
                r = schema_setup(s);
        if (r < 0) {
                log_error("PostgreSQL: %s", s->error);
                return r;
        }
        *ret = TAKE_PTR(store);
        return 0;
}

static const StoreOps pg_ops = {
        .name = "postgresql",
        .free = pg_free,
        .error = pg_error,
        .begin = pg_begin,
        .begin_nosync = pg_begin_nosync,
        .commit = pg_commit,
        .rollback = pg_rollback,
        .in_transaction = pg_in_transaction,
        .checkpoint = pg_checkpoint,
        .batch_async = pg_batch_async,
        .batch_send = pg_batch_send,
        .batch_busy = pg_batch_busy,
        .batch_wait = pg_batch_wait,
        .queue_list_async = pg_queue_list_async,
        .user_get = pg_user_get,
        .user_exists = pg_user_exists,
        .user_add = pg_user_add,
        .user_delete = pg_user_delete,
        .user_rotate = pg_user_rotate,
        .user_count = pg_user_count,
        .user_foreach = pg_user_foreach,
        .reset_set = pg_reset_set,
        .reset_get = pg_reset_get,
        .reset_delete = pg_reset_delete,
        .queue_add = pg_queue_add,
        .queue_find = pg_queue_find,
        .queue_counts = pg_queue_counts,
        .queue_drop = pg_queue_drop,
        .queue_totals = pg_queue_totals,
        .queue_max_size = pg_queue_max_size,
        .queue_last_seq = pg_queue_last_seq,
        .queue_list = pg_queue_list,
        .queue_take = pg_queue_take,
        .queue_expire = pg_queue_expire,
        .prekeys_publish = pg_prekeys_publish,
        .prekeys_count = pg_prekeys_count,
        .prekeys_take = pg_prekeys_take,
        .prekeys_drop = pg_prekeys_drop,
};
