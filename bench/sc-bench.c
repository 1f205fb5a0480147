/* SPDX-License-Identifier: MIT */
/*
 * sc-bench: the relay against the limits of the machine it runs on
 * (issue 10). Every figure is measured through a real securechatd started
 * here, and compared with a limit measured in the same run on the same
 * machine: a bare loopback relay (an epoll loop in a child process that
 * forwards the same frames and does nothing else), SQLite commits on the
 * same file system, the RSA sign rate, a bare idle TLS session's memory.
 * It prints one table: figure, limit, ratio, target.
 *
 * Where the relay is far from its target, the table also says what bounds
 * it on this machine, measured in the same run: under each routing row the
 * floor of any durable TLS relay (the bare relay with TLS on every
 * connection, CPU per frame; SQLite inserting and deleting the load's batch
 * of queue rows, CPU per message and commits/s; the rate one core gets at
 * those costs), the same floor under the routing load's own window (the
 * bare TLS relay forwarding each receiver's ack back as the accepted its
 * sender waits for) with the relay's codec measured alone, the relay's own
 * CPU bound in the fill rows' notes, and the
 * RSA private operations a message costs both clients under the
 * end-to-end scctl row.
 *
 *   sc-bench [--builddir DIR] [--quick] [--json] [--pairs LIST] [--fill LIST]
 *            [--sessions N] [--window N] [--pg-uri URI | --no-pg] [-o KEY=VALUE]...
 *
 * --builddir  where securechatd and scctl are (default: .)
 * --quick     a smoke run with tiny counts (make check): checks that every
 *             row works; its figures mean nothing
 * --json      the rows as one JSON object instead of the table
 * --pairs     routing rows at these numbers of sender -> receiver pairs
 *             (default 1,10,100,1000; 10 is the headline row)
 * --fill      offline fill and queue drain sizes (default 10000,100000);
 *             with more than one, a row compares the fill rate of the
 *             largest with the smallest (flat in queue length: >= 0.8)
 * --sessions  idle sessions for the memory rows (default 1000)
 * --window    routing: sends a sender has in flight, waiting for accepted
 *             (default 1: every message a round trip, the hardest case;
 *             scctl connect keeps up to 64). The offline fill keeps 64 in
 *             flight.
 * --pg-uri    the PostgreSQL server for the rows of relays on PostgreSQL
 *             (10 pairs through one node, then through two: senders on
 *             one, receivers on the other), beside the same 10 pairs on
 *             one node on SQLite. By default sc-bench runs a server of its
 *             own (initdb in the working directory, a Unix socket only,
 *             fsync=on, synchronous_commit=on; as root, as nobody). Each
 *             run gets a new database (sc_bench_PID_N, dropped after), so
 *             the URI's role needs CREATEDB; a password comes from
 *             ~/.pgpass for sc-bench and -o database-password-file=FILE
 *             for the relays, never from the URI
 * --no-pg     skip those rows (they are also skipped, with the reason,
 *             when no initdb is installed)
 * -o          passed to every securechatd started
 *
 * Where Prosody (the XMPP server issue 10 compares the relay with) is
 * installed, two reference rows put it beside the relay in the same run:
 * the same 10 pairs routing ~1 KB chat messages over direct TLS, one in
 * flight per sender until Prosody's stream-management ack, and the memory
 * of its idle receiving sessions. Prosody runs from the working directory
 * (as nobody, as root), with its defaults but for s2s and offline storage.
 * Without it the rows are skipped, saying so.
 *
 * The load is what the relay's cost can be read from, not the clients':
 * envelopes are sealed before the clock starts, one per sender/recipient
 * pair, and copied with fresh ids for every message (the relay checks an
 * envelope's form, not its signature, so its work is the same as for
 * genuine ones); receivers ack without opening. All users share one RSA
 * key. The relay runs with its production defaults except what a load
 * generator on one address needs: trusted-networks=127.0.0.0/8 (no
 * per-address connection, login and registration limits), message-rate=0,
 * and room for the sessions and queue the rows make (max-sessions,
 * max-sessions-per-user, queue-limit, queue-limit-per-sender).
 *
 * Files (relay state, SQLite reference) go to $TMPDIR, default /var/tmp: a
 * disk, so that every commit costs its fsync as in production.
 *
 * SC_BENCH_KEEP=1 keeps the working directory (relay logs); SC_BENCH_DEBUG=1
 * prints the counts of every routing run.
 *
 * Exit status: 0 when every row was measured (below-target rows included:
 * the table says which), 2 when the benchmark itself failed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <grp.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libpq-fe.h>
#include <nettle/base64.h>
#include <sqlite3.h>
#if defined(__SANITIZE_ADDRESS__)
/* ASan's own (sanitizer/allocator_interface.h, which Debian's gcc does
 * not install). */
void __sanitizer_purge_allocator(void);
#  define HAVE_SANITIZER_PURGE 1
#else
#  define HAVE_SANITIZER_PURGE 0
#endif

#include "codec.h"
#include "conn.h"
#include "envelope.h"
#include "fileio.h"
#include "macro.h"
#include "protocol.h"
#include "rsa.h"
#include "transport.h"
#include "util.h"
#include "varlink.h"
#include "xmpp.h"

#define TIMEOUT_MS 60000        /* any one login, connect or wait */
#define FILL_WINDOW 64          /* sends in flight while filling a queue */
#define CLIENT_KEY_BITS 2048    /* scctl init's default */
#define TEXT_LEN 100            /* makes a send frame of ~1 KB */
#define MAX_ROWS 64
#define PG_PAIRS 10             /* the PostgreSQL rows' pairs */

/* A securechatd started here: its process, port, state directory, log. */
typedef struct Relay {
        pid_t pid;
        int port;
        char *state, *log, *control;
} Relay;

typedef struct Row {
        char figure[96];
        double value;
        const char *unit;
        double limit;
        char limit_what[96];
        bool at_least;          /* target: ratio >= target, else <= */
        double target;          /* 0: no target */
        char note[768];
        bool failed;
        bool skipped;           /* not measured, by choice or for want of a tool */
} Row;

static struct {
        const char *builddir;
        bool quick, json;
        size_t pairs[8], n_pairs;
        size_t fills[4], n_fills;
        size_t sessions;
        unsigned window;
        char **relay_opts;
        size_t n_relay_opts;
        bool no_pg;
        const char *pg_uri;             /* --pg-uri: a server to use instead of our own */
        double sqlite_pg_pairs_rate;    /* routing at PG_PAIRS through one node on SQLite */
        double sqlite_pg_pairs_cpu_us;  /* and the relay's CPU per message there */
        double relay_session_bytes;     /* an idle receiving session's, newest protocol */
        double tls_frame_us;            /* the bare TLS relay's CPU per frame, last routing row */

        char *tmp;
        RsaKey *key;                    /* every bench user's */
        unsigned relay_n;               /* relays started, for their files' names */
        Relay relay;                    /* the one most rows use */

        Row rows[MAX_ROWS];
        size_t n_rows;
} B = { .builddir = ".", .sessions = 1000, .window = 1 };

static void note(const char *fmt, ...) _printf_(1, 2);
static void note(const char *fmt, ...) {
        va_list ap;

        if (B.json)
                return;
        va_start(ap, fmt);
        fputs("# ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

static double now_s(void) {
        return (double) now_monotonic_usec() / 1e6;
}

/* ---- the relay under test ------------------------------------------------ */

/* utime + stime of pid, in microseconds. */
static uint64_t proc_cpu_usec(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long long ut = 0, st = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        p = fgets(buf, sizeof(buf), f);
        fclose(f);
        if (!p || !(p = strrchr(buf, ')')))
                return 0;
        /* After "pid (comm)": state is field 3, utime 14, stime 15. */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return 0;
        return (ut + st) * 1000000ULL / (unsigned long long) sysconf(_SC_CLK_TCK);
}

/* Resident set size of pid, in bytes. */
static uint64_t proc_rss(pid_t pid) {
        char path[64], line[256];
        unsigned long long kb = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
                        break;
        fclose(f);
        return kb * 1024;
}

static int relay_kill(Relay *relay) {
        int status = 0;

        if (relay->pid <= 0)
                return 0;
        (void) kill(relay->pid, SIGTERM);
        for (int i = 0; i < 300; i++) {
                if (waitpid(relay->pid, &status, WNOHANG) == relay->pid) {
                        relay->pid = 0;
                        return 0;
                }
                usleep(100 * 1000);
        }
        (void) kill(relay->pid, SIGKILL);
        (void) waitpid(relay->pid, &status, 0);
        relay->pid = 0;
        return -ETIMEDOUT;
}

static int relay_stop(void) {
        return relay_kill(&B.relay);
}

/* The port from "Listening on 127.0.0.1:PORT" in the log, 0 if not yet. */
static int relay_log_port(const Relay *relay) {
        char line[512];
        int port = 0;
        FILE *f = fopen(relay->log, "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                const char *p = strstr(line, "Listening on 127.0.0.1:");

                if (p) {
                        port = atoi(p + strlen("Listening on 127.0.0.1:"));
                        break;
                }
        }
        fclose(f);
        return port;
}

#define KEY_FILE_MAX (64 * 1024)

static int copy_key_file(const char *from, const char *to) {
        char *pem = NULL;
        size_t len = 0;
        int r = read_key_file(from, true, KEY_FILE_MAX, &pem, &len);

        if (r < 0)
                return r;
        r = write_file_atomic(to, pem, len, 0600);
        secure_free(pem, KEY_FILE_MAX + 1);
        return r;
}

/* A fresh relay on a random port, with a fresh state directory but the
 * identity key of the first one (generating an RSA key each time would
 * dominate a quick run), started with extra -o options after the
 * benchmark's own. */
static int relay_spawn(Relay *relay, char *const *extra, size_t n_extra) {
        _cleanup_(freep) char *exe = NULL, *control = NULL, *key_from = NULL, *key_to = NULL;
        char *argv[64];
        size_t n = 0;
        int status;

        relay_kill(relay);
        B.relay_n++;
        free(relay->state);
        free(relay->log);
        free(relay->control);
        relay->state = relay->log = relay->control = NULL;
        relay->port = 0;
        if (asprintf(&relay->state, "%s/state.%u", B.tmp, B.relay_n) < 0 ||
            asprintf(&relay->log, "%s/relay.%u.log", B.tmp, B.relay_n) < 0 ||
            asprintf(&relay->control, "%s/control.%u", B.tmp, B.relay_n) < 0 ||
            asprintf(&control, "control=%s", relay->control) < 0 ||
            asprintf(&exe, "%s/securechatd", B.builddir) < 0 ||
            asprintf(&key_from, "%s/identity.key", B.tmp) < 0 ||
            asprintf(&key_to, "%s/identity.key", relay->state) < 0)
                return -ENOMEM;
        if (mkdir(relay->state, 0700) < 0)
                return -errno;
        if (access(key_from, F_OK) == 0) {
                int r = copy_key_file(key_from, key_to);

                if (r < 0)
                        return r;
        }

        argv[n++] = exe;
        argv[n++] = (char *) "--state-directory";
        argv[n++] = relay->state;
        argv[n++] = (char *) "--listen";
        argv[n++] = (char *) "127.0.0.1:0";
        argv[n++] = (char *) "-o";
        argv[n++] = control;
        static const char *const fixed[] = {
                "trusted-networks=127.0.0.0/8", "message-rate=0", "max-sessions=1000000",
                "max-sessions-per-user=1024", "queue-limit=10000000", "queue-limit-per-sender=100%",
        };
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++) {
                argv[n++] = (char *) "-o";
                argv[n++] = (char *) fixed[i];
        }
        if (B.quick) {
                /* Only to make the first start quicker. */
                argv[n++] = (char *) "-o";
                argv[n++] = (char *) "key-bits=2048";
        }
        for (size_t i = 0; i < n_extra && n < ELEMENTSOF(argv) - 3; i++) {
                argv[n++] = (char *) "-o";
                argv[n++] = extra[i];
        }
        for (size_t i = 0; i < B.n_relay_opts && n < ELEMENTSOF(argv) - 3; i++) {
                argv[n++] = (char *) "-o";
                argv[n++] = B.relay_opts[i];
        }
        argv[n] = NULL;

        relay->pid = fork();
        if (relay->pid < 0)
                return -errno;
        if (relay->pid == 0) {
                int fd = open(relay->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

                /* No relay outlives a benchmark that was interrupted. */
                if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0 ||
                    prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
                        _exit(127);
                execv(exe, argv);
                _exit(127);
        }

        for (int i = 0; i < TIMEOUT_MS / 50; i++) {
                relay->port = relay_log_port(relay);
                if (relay->port > 0)
                        break;
                if (waitpid(relay->pid, &status, WNOHANG) == relay->pid) {
                        relay->pid = 0;
                        fprintf(stderr, "sc-bench: securechatd exited; see %s\n", relay->log);
                        return -ECHILD;
                }
                usleep(50 * 1000);
        }
        if (relay->port <= 0) {
                fprintf(stderr, "sc-bench: securechatd did not start listening; see %s\n", relay->log);
                return -ETIMEDOUT;
        }
        if (access(key_from, F_OK) < 0)
                return copy_key_file(key_to, key_from);
        return 0;
}

static int relay_start(void) {
        return relay_spawn(&B.relay, NULL, 0);
}

static int status_u64(json_object *parameters, const char *key, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(parameters, key, &v) || !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        *ret = json_object_get_uint64(v);
        return 0;
}

/* The relay's commits so far and the sends and acks they held, from
 * Status on its control socket (securechat-protocol(7)), or -errno. */
static int relay_commits(const Relay *relay, uint64_t *ret_commits, uint64_t *ret_requests) {
        _cleanup_(varlink_reader_done) VarlinkReader rd = {};
        _cleanup_(json_object_unrefp) json_object *call = NULL, *msg = NULL;
        _cleanup_(closep) int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval timeout = { .tv_sec = TIMEOUT_MS / 1000 };
        VarlinkReply reply;
        const char *text;
        int r;

        varlink_reader_init(&rd, 1024 * 1024);
        if (!relay->control || strlen(relay->control) >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, relay->control, strlen(relay->control));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0 ||
            connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        call = varlink_new_call("io.securechat.Control.Status", NULL, false);
        text = call ? json_object_to_json_string_ext(call, JSON_C_TO_STRING_PLAIN) : NULL;
        if (!text)
                return -ENOMEM;
        r = write_all(fd, text, strlen(text) + 1);      /* and its NUL */
        while (r >= 0 && (r = varlink_reader_next(&rd, &msg)) == 0) {
                void *p;
                size_t n;
                ssize_t k;

                r = varlink_reader_space(&rd, &p, &n);
                if (r < 0)
                        break;
                k = read(fd, p, n);
                if (k <= 0)
                        return k < 0 ? -errno : -EPIPE;
                varlink_reader_commit(&rd, (size_t) k);
        }
        if (r < 0)
                return r;
        if (varlink_reply_parse(msg, &reply) < 0 || reply.error || !reply.parameters)
                return -EBADMSG;
        r = status_u64(reply.parameters, "commits", ret_commits);
        if (r >= 0)
                r = status_u64(reply.parameters, "committed_requests", ret_requests);
        return r;
}

/* Sends and acks per commit between two readings of relay_commits() (0:
 * none, or not read). */
typedef struct Commits {
        uint64_t commits, requests;
        bool read;
} Commits;

static Commits commits_read(const Relay *a, const Relay *b) {
        Commits c = {};
        uint64_t n, k;

        c.read = relay_commits(a, &c.commits, &c.requests) >= 0;
        if (c.read && b && b->pid != a->pid) {
                c.read = relay_commits(b, &n, &k) >= 0;
                c.commits += n;
                c.requests += k;
        }
        return c;
}

static double commits_per(Commits before, Commits after) {
        if (!before.read || !after.read || after.commits <= before.commits)
                return 0;
        return (double) (after.requests - before.requests) / (double) (after.commits - before.commits);
}

/* ---- rows ------------------------------------------------------------------ */

static Row *row_add(const char *figure, double value, const char *unit, double limit,
                    const char *limit_what, bool at_least, double target) {
        Row *r;

        if (B.n_rows >= MAX_ROWS)
                abort();
        r = &B.rows[B.n_rows++];
        *r = (Row) { .value = value, .unit = unit, .limit = limit, .at_least = at_least, .target = target };
        snprintf(r->figure, sizeof(r->figure), "%s", figure);
        snprintf(r->limit_what, sizeof(r->limit_what), "%s", limit_what);
        return r;
}

static Row *row_failed(const char *figure, const char *why) {
        Row *r = row_add(figure, 0, "", 0, "", true, 0);

        r->failed = true;
        snprintf(r->note, sizeof(r->note), "not measured: %s", why);
        return r;
}

static Row *row_skipped(const char *figure, const char *why) {
        Row *r = row_add(figure, 0, "", 0, "", true, 0);

        r->skipped = true;
        snprintf(r->note, sizeof(r->note), "skipped: %s", why);
        return r;
}

static double row_ratio(const Row *r) {
        return r->limit > 0 ? r->value / r->limit : 0;
}

/* ---- pre-sealed send frames --------------------------------------------- */

typedef struct Frames {
        uint8_t **wire;
        size_t *len;
        size_t n;
} Frames;

static void frames_done(Frames *f) {
        for (size_t i = 0; i < f->n; i++)
                free(f->wire[i]);
        free(f->wire);
        free(f->len);
        *f = (Frames) {};
}

/* n send frames from -> to: one envelope sealed now, copied with a fresh
 * id for each. */
static int frames_make(const char *from, const char *to, size_t n, Frames *ret) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        char text[TEXT_LEN + 1];
        Frames f = {};
        int r;

        memset(text, 'x', TEXT_LEN);
        text[TEXT_LEN] = '\0';
        r = envelope_seal(from, B.key, to, B.key, now_unix(), text, TEXT_LEN, &e);
        if (r < 0)
                return r;
        f.wire = calloc(n, sizeof(*f.wire));
        f.len = calloc(n, sizeof(*f.len));
        if (!f.wire || !f.len) {
                frames_done(&f);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *env = NULL, *o;

                r = message_id_new(e->id);
                if (r >= 0)
                        r = envelope_to_json(e, &env);
                if (r < 0)
                        break;
                o = frame_new_send(i + 1, env);
                json_object_put(env);
                r = conn_wire(o, &f.wire[i], &f.len[i]);
                if (r < 0)
                        break;
                f.n = i + 1;
        }
        if (r < 0) {
                frames_done(&f);
                return r;
        }
        *ret = f;
        return 0;
}

/* ---- the load loop ------------------------------------------------------- */

typedef struct Peer {
        Conn *c;
        const Frames *frames;   /* a sender's; NULL for a receiver */
        size_t next;
        unsigned inflight;
        uint64_t accepted, delivered, errors;
} Peer;

typedef struct Load {
        Peer *peers;
        size_t n;
        bool bare;              /* the bare relay: no accepted, no acks, and
                                 * the same frames sent round and round */
        bool echo;              /* with bare: each receiver acks what it gets,
                                 * which the bare relay hands its sender as
                                 * the accepted the window waits for */
        unsigned window;        /* sends in flight per sender */
        uint64_t want_accepted, want_delivered;
        double duration;        /* >0: stop after this many seconds */
        uint64_t accepted, delivered, errors;
        char first_error[128];
} Load;

static int peer_fill(Load *l, Peer *p) {
        while (p->frames && p->next < p->frames->n && ((l->bare && !l->echo) || p->inflight < l->window)) {
                int r;

                /* The bare relay is fed by what its receivers take: a few
                 * frames ahead of the socket at most. */
                if (l->bare && p->c->out.len - p->c->out_off > 64 * 1024)
                        break;
                r = conn_queue(p->c, p->frames->wire[p->next], p->frames->len[p->next]);
                if (r < 0)
                        return r;
                p->next++;
                p->inflight++;
                if (l->bare && p->next == p->frames->n)
                        p->next = 0;
        }
        return 0;
}

/* "seq": N in a deliver frame, without parsing the envelope (the client's
 * cost is not what is measured). */
static uint64_t deliver_seq(const uint8_t *payload, size_t len) {
        const char *p = memmem(payload, len, "\"seq\":", 6);

        return p ? strtoull(p + 6, NULL, 10) : 0;
}

/* A sender's send was answered: one more may go. */
static int peer_accepted(Load *l, Peer *p) {
        p->accepted++;
        l->accepted++;
        if (p->inflight > 0)
                p->inflight--;
        return peer_fill(l, p);
}

static void peer_delivered(Load *l, Peer *p) {
        p->delivered++;
        l->delivered++;
}

static int peer_frame(Load *l, Peer *p, const uint8_t *payload, size_t len) {
        if (l->echo) {
                /* A receiver's ack, come back, is its sender's accepted. */
                if (p->frames)
                        return peer_accepted(l, p);
                peer_delivered(l, p);
                return conn_queue_json(p->c, frame_new_ack(p->delivered));
        }
        if (l->bare) {
                peer_delivered(l, p);
                return 0;
        }
        if (memmem(payload, len, "\"type\":\"accepted\"", 17))
                return peer_accepted(l, p);
        if (memmem(payload, len, "\"type\":\"deliver\"", 16)) {
                peer_delivered(l, p);
                return conn_queue_json(p->c, frame_new_ack(deliver_seq(payload, len)));
        }
        if (memmem(payload, len, "\"type\":\"error\"", 14) ||
            memmem(payload, len, "\"type\":\"rate_limited\"", 21)) {
                p->errors++;
                if (l->errors++ == 0)
                        snprintf(l->first_error, sizeof(l->first_error), "%.*s",
                                 (int) MIN(len, (size_t) 120), (const char *) payload);
        }
        return 0;           /* presence, receipts: not this benchmark's business */
}

/* Read every complete frame there is and write what is queued. */
static int peer_service(Load *l, Peer *p) {
        int r;

        for (;;) {
                _cleanup_(freep) uint8_t *payload = NULL;
                size_t len;

                r = conn_read_frame(p->c, 0, &payload, &len);
                if (r == -EAGAIN)
                        break;
                if (r == 0)
                        return -ECONNRESET;
                if (r < 0)
                        return r;
                r = peer_frame(l, p, payload, len);
                if (r < 0)
                        return r;
        }
        r = conn_flush(p->c);
        if (r >= 0 && l->bare && p->frames)
                r = peer_fill(l, p);
        return r == -EAGAIN ? 0 : r;
}

static bool load_done(const Load *l) {
        return l->delivered >= l->want_delivered && l->accepted >= l->want_accepted;
}

/* Drive every peer until what was wanted arrived, or l->duration passed
 * (then 0), or timeout_s passed (-ETIMEDOUT). */
static int load_run(Load *l, double timeout_s) {
        _cleanup_(freep) struct pollfd *pfd = calloc(l->n, sizeof(*pfd));
        double start = now_s(), deadline = start + timeout_s;
        int r;

        if (!pfd)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++) {
                r = peer_fill(l, &l->peers[i]);
                if (r >= 0)
                        r = peer_service(l, &l->peers[i]);
                if (r < 0)
                        return r;
        }
        while (!load_done(l)) {
                if (l->duration > 0 && now_s() - start >= l->duration)
                        return 0;
                if (now_s() > deadline)
                        return -ETIMEDOUT;
                for (size_t i = 0; i < l->n; i++) {
                        Conn *c = l->peers[i].c;

                        pfd[i] = (struct pollfd) {
                                .fd = conn_fd(c),
                                .events = POLLIN | (conn_has_output(c) && conn_wants_write(c) ? POLLOUT : 0),
                        };
                }
                if (poll(pfd, l->n, 100) < 0 && errno != EINTR)
                        return -errno;
                for (size_t i = 0; i < l->n; i++) {
                        /* GnuTLS may hold a decrypted record poll cannot see;
                         * reading a quiet socket costs one EAGAIN. */
                        if (pfd[i].revents == 0 && !conn_has_output(l->peers[i].c))
                                continue;
                        r = peer_service(l, &l->peers[i]);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Read and drop whatever the relay sent to these (presence at login), so
 * that no output piles up in the relay while others log in. */
static void drain(Peer *peers, size_t n) {
        Load dummy = { .bare = true };

        for (size_t i = 0; i < n; i++)
                (void) peer_service(&dummy, &peers[i]);
}

static void peers_free(Peer *peers, size_t n) {
        for (size_t i = 0; peers && i < n; i++)
                conn_free(peers[i].c);
        free(peers);
}

/* n users logged in at port, named prefix0.., receiving or not. */
static int login_many(int port, const char *prefix, size_t n, bool receive, unsigned proto, Peer *peers) {
        for (size_t i = 0; i < n; i++) {
                const char *error = NULL;
                char user[32];
                int r;

                snprintf(user, sizeof(user), "%s%zu", prefix, i);
                r = conn_open(port, true, TIMEOUT_MS, &peers[i].c);
                if (r >= 0)
                        r = conn_login_proto(peers[i].c, user, B.key, receive, proto, TIMEOUT_MS, &error);
                if (r < 0) {
                        fprintf(stderr, "sc-bench: login of %s: %s%s%s\n", user, strerror(-r),
                                error ? ": " : "", error ?: "");
                        return r;
                }
                if (receive && i % 16 == 15)
                        drain(peers, i + 1);
        }
        if (receive)
                drain(peers, n);
        return 0;
}

/* ---- the bare relays ------------------------------------------------------ */

/* Run one end's handshake to completion (blocking on its own fd; the other
 * end is another process). */
static int handshake_alone(Transport *t) {
        int r;

        while ((r = transport_handshake(t, NULL)) == -EAGAIN) {
                struct pollfd p = { .fd = transport_fd(t), .events = transport_wants_write(t) ? POLLOUT : POLLIN };

                if (poll(&p, 1, TIMEOUT_MS) <= 0)
                        return -ETIMEDOUT;
        }
        return r;
}

/* Server credentials as the relay's: an Ed25519 key and a self-signed
 * certificate, made once per run in the working directory. */
static int bare_tls_credentials(gnutls_certificate_credentials_t *ret) {
        _cleanup_(freep) char *key = NULL, *cert = NULL;
        int r;

        if (asprintf(&key, "%s/bare-tls.key", B.tmp) < 0 || asprintf(&cert, "%s/bare-tls.crt", B.tmp) < 0)
                return -ENOMEM;
        if (access(cert, F_OK) < 0) {
                r = tls_key_generate(key);
                if (r >= 0)
                        r = tls_make_self_signed(key, "bench", cert);
                if (r < 0)
                        return r;
        }
        return tls_credentials_load(cert, key, ret);
}

/* Write all of len to t, waiting when its socket is full: the receiver's
 * pace is the sender's back-pressure, as a blocking write would be. After
 * -EAGAIN the same bytes are offered again (GnuTLS's rule). */
static int bare_write_all(Transport *t, const uint8_t *p, size_t len) {
        while (len > 0) {
                ssize_t n = transport_write(t, p, len);

                if (n == -EAGAIN) {
                        struct pollfd pfd = { .fd = transport_fd(t),
                                              .events = transport_wants_write(t) ? POLLOUT : POLLIN };

                        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                                return -errno;
                        continue;
                }
                if (n < 0)
                        return (int) n;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* The references: accept connections in pairs (receiver, then sender) and
 * forward every complete frame from a sender to its receiver, one write
 * (with TLS: one record) per frame. Nothing else: no parsing, no storage.
 * creds NULL is plain TCP; with creds every connection is a TLS 1.3 server
 * session, so each frame is decrypted and encrypted again. Runs until
 * killed. */
_Noreturn static void bare_relay(int listen_fd, gnutls_certificate_credentials_t creds);
_Noreturn static void bare_relay(int listen_fd, gnutls_certificate_credentials_t creds) {
        struct Side { Transport *t; size_t peer; uint8_t buf[65536]; size_t len; } *sides = NULL;
        size_t n_sides = 0;
        int ep = epoll_create1(EPOLL_CLOEXEC);

        if (ep < 0)
                _exit(1);
        (void) epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &(struct epoll_event) { .events = EPOLLIN, .data.u64 = UINT64_MAX });
        for (;;) {
                struct epoll_event ev[64];
                int n = epoll_wait(ep, ev, 64, -1);

                for (int i = 0; i < n; i++) {
                        if (ev[i].data.u64 == UINT64_MAX) {
                                /* Non-blocking for the handshake, which
                                 * the client runs at the same time. */
                                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                                Transport *t = NULL;
                                struct Side *s;

                                if (fd < 0)
                                        continue;
                                if (transport_new_server(fd, creds, &t) < 0 || handshake_alone(t) < 0)
                                        _exit(1);
                                s = realloc(sides, (n_sides + 1) * sizeof(*sides));
                                if (!s)
                                        _exit(1);
                                sides = s;
                                sides[n_sides] = (struct Side) { .t = t, .peer = SIZE_MAX };
                                /* Pairs, each side the other's peer: a
                                 * receiver's frames (acks, with echo) go
                                 * back to its sender. */
                                if (n_sides % 2 == 1) {
                                        sides[n_sides].peer = n_sides - 1;
                                        sides[n_sides - 1].peer = n_sides;
                                        (void) epoll_ctl(ep, EPOLL_CTL_ADD, transport_fd(sides[n_sides - 1].t),
                                                         &(struct epoll_event) { .events = EPOLLIN,
                                                                                 .data.u64 = n_sides - 1 });
                                        (void) epoll_ctl(ep, EPOLL_CTL_ADD, fd,
                                                         &(struct epoll_event) { .events = EPOLLIN, .data.u64 = n_sides });
                                }
                                n_sides++;
                                continue;
                        }
                        struct Side *s = &sides[ev[i].data.u64];

                        /* One read per wakeup (epoll is level-triggered),
                         * more only for records GnuTLS already holds,
                         * which epoll cannot see. */
                        do {
                                ssize_t k = transport_read(s->t, s->buf + s->len, sizeof(s->buf) - s->len);
                                size_t pos = 0;

                                if (k == -EAGAIN)
                                        break;
                                if (k <= 0) {
                                        (void) epoll_ctl(ep, EPOLL_CTL_DEL, transport_fd(s->t), NULL);
                                        break;
                                }
                                s->len += (size_t) k;
                                /* Whole frames only, one write each, as a relay would. */
                                while (s->len - pos >= 4) {
                                        uint32_t flen = (uint32_t) s->buf[pos] << 24 | (uint32_t) s->buf[pos + 1] << 16 |
                                                        (uint32_t) s->buf[pos + 2] << 8 | s->buf[pos + 3];

                                        if (flen + 4 > sizeof(s->buf))
                                                _exit(1);
                                        if (s->len - pos < flen + 4)
                                                break;
                                        if (bare_write_all(sides[s->peer].t, s->buf + pos, flen + 4) < 0)
                                                _exit(1);
                                        pos += flen + 4;
                                }
                                memmove(s->buf, s->buf + pos, s->len - pos);
                                s->len -= pos;
                        } while (transport_pending(s->t));
                }
        }
}

static int bare_start(bool tls, pid_t *ret_pid, int *ret_port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        _cleanup_(closep) int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pid_t pid;

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &sl) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                gnutls_certificate_credentials_t creds = NULL;

                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || (tls && bare_tls_credentials(&creds) < 0))
                        _exit(1);
                bare_relay(fd, creds);
        }
        *ret_pid = pid;
        *ret_port = ntohs(sa.sin_port);
        return 0;
}

/* ---- SQLite on the same file system -------------------------------------- */

typedef struct StoreRate {
        double rate;            /* messages (inserted rows) per second */
        double commits;         /* transactions per second */
        double cpu_us;          /* this process's CPU per message */
} StoreRate;

static double cpu_now_us(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0)
                return 0;
        return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

/* A message id as the load sends them (message_id_new()): the time in
 * milliseconds, then random bytes from a splitmix64 stream, not
 * getrandom(): the floor's CPU should be SQLite's. */
static void bench_msg_id(uint64_t *state, char out[BASE64_ENCODE_RAW_LENGTH(MSG_ID_LEN) + 1]) {
        uint8_t id[MSG_ID_LEN];

        (void) message_id_stamp(id);
        for (size_t i = 6; i < sizeof(id); i += sizeof(uint64_t)) {
                uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

                z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
                z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
                z ^= z >> 31;
                memcpy(id + i, &z, MIN(sizeof(z), sizeof(id) - i));
        }
        base64_encode_raw(out, sizeof(id), id);
        out[BASE64_ENCODE_RAW_LENGTH(MSG_ID_LEN)] = '\0';
}

/* A queue table like the relay's (WAL, synchronous=FULL), batch rows
 * inserted per transaction, for about seconds or until max_rows (0: no
 * bound). Each row carries an id like the load's (in time order, so that
 * a batch's inserts share a page or two of the (sender, msg_id) index, as
 * in the relay).
 * With acks, each transaction also deletes the rows the one before
 * inserted, as the relay's group commit carries the acks of earlier
 * messages with the new sends: a message costs an insert and a delete,
 * and the queue stays short. */
static int sqlite_rate(const char *path, size_t row_size, unsigned batch, bool acks, double seconds,
                       uint64_t max_rows, StoreRate *ret) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL, *del = NULL;
        _cleanup_(freep) char *blob = malloc(row_size + 1);
        uint64_t rows = 0, commits = 0, id_state;
        double t0, dt, cpu0;
        int rc;

        if (!blob)
                return -ENOMEM;
        if (random_bytes(&id_state, sizeof(id_state)) < 0)
                return -EIO;
        memset(blob, 'e', row_size);
        blob[row_size] = '\0';
        (void) unlink(path);
        rc = sqlite3_open(path, &db);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                                  "CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                                  " recipient TEXT NOT NULL, sender TEXT NOT NULL, msg_id TEXT NOT NULL,"
                                  " envelope TEXT NOT NULL, size INTEGER NOT NULL, received INTEGER NOT NULL,"
                                  " expires INTEGER NOT NULL, UNIQUE (sender, msg_id));"
                                  "CREATE INDEX queue_by_recipient ON queue (recipient, seq);"
                                  "CREATE INDEX queue_by_expiry ON queue (expires);", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(db, "INSERT INTO queue (recipient, sender, msg_id, envelope, size, "
                                        "received, expires) VALUES ('r0', 's0', ?, ?, ?, 0, 0)", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(db, "DELETE FROM queue WHERE seq = ?", -1, &del, NULL);
        t0 = now_s();
        cpu0 = cpu_now_us();
        while (rc == SQLITE_OK && ((dt = now_s() - t0) < seconds || rows == 0) &&
               (max_rows == 0 || rows < max_rows)) {
                rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
                for (unsigned i = 0; i < batch && rc == SQLITE_OK; i++) {
                        char id[BASE64_ENCODE_RAW_LENGTH(MSG_ID_LEN) + 1];

                        bench_msg_id(&id_state, id);
                        sqlite3_reset(st);
                        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
                        sqlite3_bind_text(st, 2, blob, (int) row_size, SQLITE_STATIC);
                        sqlite3_bind_int64(st, 3, (sqlite3_int64) row_size);
                        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
                }
                /* seq counts from 1: the previous batch is rows - batch + 1 .. rows. */
                for (unsigned i = 0; acks && rows > 0 && i < batch && rc == SQLITE_OK; i++) {
                        sqlite3_reset(del);
                        sqlite3_bind_int64(del, 1, (sqlite3_int64) (rows - batch + 1 + i));
                        rc = sqlite3_step(del) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
                }
                if (rc == SQLITE_OK)
                        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
                if (rc == SQLITE_OK) {
                        rows += batch;
                        commits++;
                }
        }
        dt = now_s() - t0;
        *ret = (StoreRate) {
                .rate = (double) rows / dt,
                .commits = (double) commits / dt,
                .cpu_us = (cpu_now_us() - cpu0) / (double) MAX(rows, (uint64_t) 1),
        };
        if (rc != SQLITE_OK)
                fprintf(stderr, "sc-bench: sqlite: %s\n", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        sqlite3_finalize(del);
        sqlite3_close(db);
        (void) unlink(path);
        return rc == SQLITE_OK ? 0 : -EIO;
}

/* ---- routing ------------------------------------------------------------- */

/* CPU per message of the relay's own codec on the frames it reads per
 * message: a send (its JSON, the envelope's fields checked and decoded),
 * and with_ack an ack. In this process: a part of the relay's cost
 * measured alone. */
static int parse_cost_us(const Frames *f, bool with_ack, double *ret) {
        _cleanup_(freep) uint8_t *ack = NULL;
        size_t ack_len, n = 0;
        double t0, dt;
        int r;

        r = conn_wire(frame_new_ack(1), &ack, &ack_len);
        if (r < 0)
                return r;
        t0 = cpu_now_us();
        do {
                for (size_t i = 0; i < MIN(f->n, (size_t) 1000); i++, n++) {
                        Frame *send = NULL, *a = NULL;

                        r = frame_parse(f->wire[i] + 4, f->len[i] - 4, &send, NULL);
                        if (r >= 0 && with_ack)
                                r = frame_parse(ack + 4, ack_len - 4, &a, NULL);
                        frame_free(send);
                        frame_free(a);
                        if (r < 0)
                                return r;
                }
                dt = cpu_now_us() - t0;
        } while (dt < (B.quick ? 1e4 : 3e5));
        *ret = dt / (double) n;
        return 0;
}

typedef struct Routing {
        double rate, cpu_us;            /* msg/s, relay CPU per message (all relays) */
        double per_commit;              /* sends and acks per commit (relays; 0: unknown) */
        double parse_us;                /* the relay's codec alone on a send and an ack */
        uint64_t delivered;
        size_t frame_size;
        char why[300];                  /* when it failed, what happened */
} Routing;

typedef enum Via {
        VIA_RELAY,              /* securechatd: TLS, durable */
        VIA_BARE,               /* bare_relay() over plain TCP */
        VIA_BARE_TLS,           /* bare_relay() with TLS on every connection */
        VIA_BARE_TLS_ECHO,      /* the same, and the load's window: each send
                                 * waits for its receiver's ack, forwarded */
} Via;

/* CPU time of one relay, or of two different ones together. */
static uint64_t relays_cpu_usec(const Relay *a, const Relay *b) {
        return proc_cpu_usec(a->pid) + (b->pid != a->pid ? proc_cpu_usec(b->pid) : 0);
}

/* pairs senders -> pairs receivers, per_pair messages each, through the
 * relay (TLS, durable: accepted after the commit, acked by the receiver)
 * or a bare relay. Through relays, senders log in to send_node and
 * receivers to receive_node: the same relay, or two sharing a database. */
static int routing_run(size_t pairs, size_t per_pair, Via via, const Relay *send_node,
                       const Relay *receive_node, Routing *ret) {
        Peer *peers = calloc(2 * pairs, sizeof(*peers));
        Frames *frames = calloc(pairs, sizeof(*frames));
        static const char *const via_name[] = { "", " (bare)", " (bare TLS)", " (bare TLS, echo)" };
        bool bare = via != VIA_RELAY;
        Load l = { .peers = peers, .n = 2 * pairs, .bare = bare, .echo = via == VIA_BARE_TLS_ECHO,
                   .window = B.window };
        pid_t pid = 0;
        int port = 0, r = 0;
        Commits commits0 = {};
        uint64_t cpu0;
        double t0;

        if (!peers || !frames) {
                r = -ENOMEM;
                goto finish;
        }
        for (size_t i = 0; i < pairs && r >= 0; i++) {
                char from[32], to[32];

                snprintf(from, sizeof(from), "s%zu", i);
                snprintf(to, sizeof(to), "r%zu", i);
                r = frames_make(from, to, per_pair, &frames[i]);
        }
        if (r < 0)
                goto finish;

        if (bare) {
                bool tls = via == VIA_BARE_TLS || via == VIA_BARE_TLS_ECHO;

                r = bare_start(tls, &pid, &port);
                if (r < 0)
                        goto finish;
                /* In pairs: receiver, then its sender (bare_relay()). */
                for (size_t i = 0; i < pairs && r >= 0; i++) {
                        r = conn_open(port, tls, TIMEOUT_MS, &peers[2 * i].c);
                        if (r >= 0)
                                r = conn_open(port, tls, TIMEOUT_MS, &peers[2 * i + 1].c);
                }
                /* Both ends of the last pair accepted before the clock. */
                usleep(100 * 1000);
        } else {
                Peer *tmp = calloc(pairs, sizeof(*tmp));

                if (!tmp) {
                        r = -ENOMEM;
                        goto finish;
                }
                r = login_many(receive_node->port, "r", pairs, true, PROTOCOL_VERSION_MAX, tmp);
                for (size_t i = 0; i < pairs; i++)
                        peers[2 * i].c = TAKE_PTR(tmp[i].c);
                free(tmp);
                if (r >= 0) {
                        tmp = calloc(pairs, sizeof(*tmp));
                        if (!tmp)
                                r = -ENOMEM;
                        else
                                r = login_many(send_node->port, "s", pairs, false, PROTOCOL_VERSION_MAX, tmp);
                        for (size_t i = 0; tmp && i < pairs; i++)
                                peers[2 * i + 1].c = TAKE_PTR(tmp[i].c);
                        free(tmp);
                }
                if (r >= 0)
                        drain(peers, 2 * pairs);
        }
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < pairs; i++)
                peers[2 * i + 1].frames = &frames[i];
        ret->frame_size = frames[0].len[0];
        if (via == VIA_RELAY) {
                r = parse_cost_us(&frames[0], true, &ret->parse_us);
                if (r < 0)
                        goto finish;
        }

        l.want_delivered = bare ? UINT64_MAX : pairs * per_pair;
        l.want_accepted = bare ? 0 : pairs * per_pair;
        l.duration = bare ? (B.quick ? 0.3 : 3) : (B.quick ? 1 : 10);
        if (!bare)
                commits0 = commits_read(send_node, receive_node);
        cpu0 = bare ? proc_cpu_usec(pid) : relays_cpu_usec(send_node, receive_node);
        t0 = now_s();
        r = load_run(&l, B.quick ? 60 : 300);
        if (!bare)
                ret->per_commit = commits_per(commits0, commits_read(send_node, receive_node));
        /* A relay that accepts but does not route (two nodes that do not
         * tell each other) ends the run at its duration with nothing
         * delivered. */
        if (r >= 0 && l.delivered == 0) {
                snprintf(ret->why, sizeof(ret->why), "no deliveries within %.0f s (%" PRIu64 " accepted, %" PRIu64
                         " errors)", now_s() - t0, l.accepted, l.errors);
                r = -ETIME;
        }
        if (r >= 0) {
                double dt = now_s() - t0;

                if (getenv("SC_BENCH_DEBUG"))
                        fprintf(stderr, "sc-bench: %zu pairs%s: %" PRIu64 " accepted, %" PRIu64 " delivered in %.1f s\n",
                                pairs, via_name[via], l.accepted, l.delivered, dt);
                ret->rate = (double) l.delivered / dt;
                ret->delivered = l.delivered;
                ret->cpu_us = (double) ((bare ? proc_cpu_usec(pid) : relays_cpu_usec(send_node, receive_node)) -
                                        cpu0) / (double) l.delivered;
        } else {
                if (!ret->why[0])
                        snprintf(ret->why, sizeof(ret->why), "%s after %" PRIu64 " delivered, %" PRIu64 " accepted",
                                 strerror(-r), l.delivered, l.accepted);
                fprintf(stderr, "sc-bench: routing (%zu pairs%s): %s\n", pairs, via_name[via], ret->why);
        }
        if (l.errors > 0) {
                fprintf(stderr, "sc-bench: %" PRIu64 " errors, the first: %s\n", l.errors, l.first_error);
                if (r >= 0)
                        r = -EPROTO;
                snprintf(ret->why, sizeof(ret->why), "%" PRIu64 " errors, the first: %.100s", l.errors,
                         l.first_error);
        }

finish:
        peers_free(peers, 2 * pairs);
        for (size_t i = 0; frames && i < pairs; i++)
                frames_done(&frames[i]);
        free(frames);
        if (pid > 0) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
        }
        return r;
}

/* Rows per commit at most: the relay's BATCH_MAX (daemon/relay.c). */
#define STORE_BATCH_MAX 1024

/* More messages than a relay routes in a run's 10 seconds (so that the
 * clock, not the supply, ends it), ~1 KB each, made beforehand; the bare
 * relays send their frames round and round. */
static size_t routing_per_pair(size_t pairs) {
        size_t total = B.quick ? 20 * pairs : MAX((size_t) 30000, 20 * pairs);

        return MAX(total / pairs, (size_t) 5);
}

static void bench_routing(size_t pairs) {
        size_t per_pair = routing_per_pair(pairs);
        /* What the load offers the store per commit: every sender's window. */
        unsigned batch = (unsigned) MIN(pairs * B.window, (size_t) STORE_BATCH_MAX);
        _cleanup_(freep) char *db = NULL;
        Routing relay = {}, bare = {}, tls = {}, echo = {};
        StoreRate store = {};
        char figure[128], what[96];
        double cost, floor_rate, commit_ms, commit_bound, window_rate;
        Row *row;
        int r;

        snprintf(figure, sizeof(figure), "routing, %zu sender%s -> %zu receiver%s, TLS, durable", pairs,
                 pairs == 1 ? "" : "s", pairs, pairs == 1 ? "" : "s");
        note("%s: %zu messages", figure, pairs * per_pair);
        if (asprintf(&db, "%s/reference.db", B.tmp) < 0)
                return (void) row_failed(figure, "out of memory");
        r = relay_start();
        if (r >= 0)
                r = routing_run(pairs, per_pair, VIA_RELAY, &B.relay, &B.relay, &relay);
        relay_stop();
        if (r >= 0 && pairs == PG_PAIRS) {
                /* The PostgreSQL and Prosody rows' reference. */
                B.sqlite_pg_pairs_rate = relay.rate;
                B.sqlite_pg_pairs_cpu_us = relay.cpu_us;
        }
        if (r >= 0)
                r = routing_run(pairs, per_pair, VIA_BARE, NULL, NULL, &bare);
        if (r >= 0)
                r = routing_run(pairs, per_pair, VIA_BARE_TLS, NULL, NULL, &tls);
        if (r >= 0)
                r = routing_run(pairs, per_pair, VIA_BARE_TLS_ECHO, NULL, NULL, &echo);
        if (r >= 0)
                r = sqlite_rate(db, relay.frame_size, batch, true, B.quick ? 0.2 : 3, 0, &store);
        if (r < 0) {
                row_failed(figure, relay.why[0] ? relay.why : strerror(-r));
                return;
        }
        /* The floor: what one core routes if a message cost nothing but its
         * TLS records and its row. A forwarded frame is one record in and
         * one out, so a message's four records (send and ack in, accepted
         * and deliver out) cost two of the TLS relay's frames. */
        cost = 2 * tls.cpu_us + store.cpu_us;
        B.tls_frame_us = tls.cpu_us;
        floor_rate = cost > 0 ? 1e6 / cost : 0;

        snprintf(what, sizeof(what), "bare epoll relay, same frames and N");
        row = row_add(figure, relay.rate, "msg/s", bare.rate, what, true, 0.5);
        snprintf(row->note, sizeof(row->note), "relay CPU %.0f us/msg, bare %.1f us/frame; frames of %zu bytes; "
                 "%u send%s in flight per sender; %.1f sends and acks per commit, of %zu going round; no relay "
                 "with TLS and a durable queue gets above %.0f msg/s on one core here, %.3f of the bare relay "
                 "(the next three rows)",
                 relay.cpu_us, bare.cpu_us, relay.frame_size, B.window, B.window == 1 ? "" : "s", relay.per_commit,
                 2 * pairs * B.window, floor_rate, bare.rate > 0 ? floor_rate / bare.rate : 0);

        /* (a) The cost of TLS alone: the bare relay's design, each frame
         * decrypted from one record and encrypted into another. CPU of
         * its process, not wall time: the load generator shares the
         * cores. */
        snprintf(figure, sizeof(figure), "bare TLS relay, %zu pair%s, CPU per frame forwarded", pairs,
                 pairs == 1 ? "" : "s");
        row = row_add(figure, tls.cpu_us, "us/frame", bare.cpu_us, "the bare epoll relay without TLS", false, 0);
        snprintf(row->note, sizeof(row->note), "one TLS 1.3 record in and one out per %zu-byte frame (GnuTLS, "
                 "an Ed25519 certificate as the relay's); %.0f frames/s", tls.frame_size, tls.rate);

        /* (b) The cost of durability alone, at the batch the load offers. */
        snprintf(figure, sizeof(figure), "SQLite insert + delete per message, %u row%s per commit", batch,
                 batch == 1 ? "" : "s");
        row = row_add(figure, store.cpu_us, "us/msg", store.rate > 0 ? 1e6 / store.rate : 0,
                      "wall time per message, fsyncs included", false, 0);
        commit_ms = store.commits > 0 ? 1e3 / store.commits : 0;
        snprintf(row->note, sizeof(row->note), "a copy of the relay's queue table, WAL, synchronous=FULL, same file "
                 "system; each commit inserts %u row%s and deletes the %u before: %.0f commits/s (%.2f ms each), "
                 "%.0f msg/s", batch, batch == 1 ? "" : "s", batch, store.commits, commit_ms, store.rate);

        /* With a window of 1 a sender waits for its accepted, which waits
         * for the commit: at most every sender's window per commit. */
        commit_bound = commit_ms > 0 ? (double) batch / commit_ms * 1e3 : 0;
        snprintf(figure, sizeof(figure), "routing, %zu pair%s, against a TLS + durable floor", pairs,
                 pairs == 1 ? "" : "s");
        row = row_add(figure, relay.rate, "msg/s", floor_rate, "one core at 4 TLS records + 1 row per message",
                      true, 0.5);
        snprintf(row->note, sizeof(row->note),
                 "limit = 1e6 / (2 x %.1f us, the bare TLS relay's CPU per frame (1 record in, 1 out) at the send "
                 "frame's size, + %.1f us, SQLite's CPU per insert + delete at %u per commit); relay CPU "
                 "%.0f us/msg; commit latency bounds it at %u in flight (senders x window, at most %u) per "
                 "%.2f ms commit = %.0f msg/s (relay at %.2f of that)",
                 tls.cpu_us, store.cpu_us, batch, relay.cpu_us, batch, STORE_BATCH_MAX, commit_ms, commit_bound,
                 commit_bound > 0 ? relay.rate / commit_bound : 0);

        /* (c) The floor above streams frames: many records per system call
         * and wakeup. The load does not: a sender waits for its accepted,
         * so every message is a round trip with its own wakeups and system
         * calls at each end. The same bare TLS relay under the same load
         * (each send forwarded, the receiver's ack forwarded back as the
         * accepted, the same window) says what that costs any relay. */
        snprintf(figure, sizeof(figure), "bare TLS relay, %zu pair%s, CPU per message at %u send%s in flight per sender",
                 pairs, pairs == 1 ? "" : "s", B.window, B.window == 1 ? "" : "s");
        row = row_add(figure, echo.cpu_us, "us/msg", 2 * tls.cpu_us, "its 4 records streamed (2 frames forwarded)",
                      false, 0);
        snprintf(row->note, sizeof(row->note), "send in, forwarded out, the receiver's ack in, forwarded to the "
                 "sender as its accepted; no parsing, no storage; %.0f msg/s", echo.rate);

        window_rate = echo.cpu_us + store.cpu_us > 0 ? 1e6 / (echo.cpu_us + store.cpu_us) : 0;
        snprintf(figure, sizeof(figure), "routing, %zu pair%s, against a TLS + durable floor under the same load",
                 pairs, pairs == 1 ? "" : "s");
        row = row_add(figure, relay.rate, "msg/s", window_rate,
                      "one core at the bare TLS relay's round trips + 1 row per message", true, 0.5);
        snprintf(row->note, sizeof(row->note),
                 "limit = 1e6 / (%.1f us, the bare TLS relay's CPU per message at the load's window, + %.1f us, "
                 "SQLite's CPU per insert + delete at %u per commit); relay CPU %.0f us/msg, %.0f us more than "
                 "that floor: %.1f us of it parsing and checking the send and the ack (the relay's codec alone, "
                 "measured here), the rest the queue's other statements, the writer thread's hand-offs and "
                 "building the answers",
                 echo.cpu_us, store.cpu_us, batch, relay.cpu_us, relay.cpu_us - echo.cpu_us - store.cpu_us,
                 relay.parse_us);
}

/* ---- relays on PostgreSQL -------------------------------------------------- */

/* A PostgreSQL server for the relays: our own (initdb in the working
 * directory, a Unix socket only, fsync and synchronous_commit on: the
 * relay's promise that "accepted" is on disk is what is measured), or the
 * one --pg-uri names. Every run gets a database of its own, made here, so
 * that nothing of a server named by --pg-uri is touched. */
typedef struct PgServer {
        pid_t pid;              /* our own server's postmaster, 0 with --pg-uri */
        char *dir;              /* its data directory's parent and socket directory */
        char *uri;              /* where to connect, without a database of ours */
        char version[32];
        unsigned n_databases;
} PgServer;

#define PG_START_S 120          /* initdb, or the server until it answers */

/* The first directory in PATH that holds every one of names (a NULL-ended
 * list) as an executable, or NULL. */
static char *path_dir_with(const char *const *names) {
        const char *path = getenv("PATH");
        _cleanup_(freep) char *copy = strdup(path && *path ? path : "/usr/bin:/bin");
        char *state = NULL;

        if (!copy)
                return NULL;
        for (char *d = strtok_r(copy, ":", &state); d; d = strtok_r(NULL, ":", &state)) {
                bool all = true;

                for (size_t i = 0; all && names[i]; i++) {
                        _cleanup_(freep) char *exe = NULL;

                        if (asprintf(&exe, "%s/%s", d, names[i]) < 0)
                                return NULL;
                        all = access(exe, X_OK) == 0;
                }
                if (all)
                        return strdup(d);
        }
        return NULL;
}

/* The directory holding initdb and postgres: from PATH, else Debian's
 * /usr/lib/postgresql/VERSION/bin (the newest). NULL when there is none. */
static char *pg_find_bindir(void) {
        char *found = path_dir_with((const char *const[]) { "initdb", "postgres", NULL });
        glob_t g = {};

        if (found)
                return found;
        if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
                found = strdup(g.gl_pathv[g.gl_pathc - 1]);
                if (found)
                        *strrchr(found, '/') = '\0';
        }
        globfree(&g);
        return found;
}

/* The reference servers (PostgreSQL's programs refuse to run as root,
 * Prosody warns): as root, they run as nobody. */
static int server_user(uid_t *ret_uid, gid_t *ret_gid) {
        const struct passwd *pw;

        if (geteuid() != 0) {
                *ret_uid = geteuid();
                *ret_gid = getegid();
                return 0;
        }
        pw = getpwnam("nobody");
        if (!pw)
                return -ESRCH;
        *ret_uid = pw->pw_uid;
        *ret_gid = pw->pw_gid;
        return 0;
}

/* Run argv with its output in log, as the server's user (above); it gets
 * SIGINT if we die (PostgreSQL's fast shutdown, Prosody's shutdown). */
static int server_spawn(const char *log, char *const argv[], pid_t *ret) {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        int r;

        r = server_user(&uid, &gid);
        if (r < 0)
                return r;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                if (fd < 0 || fchown(fd, uid, gid) < 0 || dup2(fd, STDOUT_FILENO) < 0 ||
                    dup2(fd, STDERR_FILENO) < 0)
                        _exit(127);
                /* Groups first, while still allowed; PDEATHSIG after, as
                 * changing credentials clears it. */
                if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
                        _exit(127);
                if (prctl(PR_SET_PDEATHSIG, SIGINT) < 0)
                        _exit(127);
                execv(argv[0], argv);
                _exit(127);
        }
        *ret = pid;
        return 0;
}

/* Wait for pid to exit, at most seconds: its status, or -ETIMEDOUT. */
static int wait_exit(pid_t pid, double seconds) {
        double deadline = now_s() + seconds;
        int status;

        while (now_s() < deadline) {
                pid_t p = waitpid(pid, &status, WNOHANG);

                if (p == pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                if (p < 0)
                        return -errno;
                usleep(50 * 1000);
        }
        return -ETIMEDOUT;
}

/* A connection to uri with dbname replaced by db when not NULL; bounded:
 * connecting, and every statement. NULL (reported) when it fails. */
static PGconn *pg_connect(const char *uri, const char *db) {
        const char *keys[5], *values[5];
        size_t n = 0;
        PGconn *c;

        /* A later dbname overrides the one in the URI (libpq's rule for
         * expand_dbname). */
        keys[n] = "dbname", values[n++] = uri;
        if (db)
                keys[n] = "dbname", values[n++] = db;
        keys[n] = "connect_timeout", values[n++] = "10";
        keys[n] = "options", values[n++] = "-c statement_timeout=60s";
        keys[n] = values[n] = NULL;
        c = PQconnectdbParams(keys, values, 1);
        if (!c || PQstatus(c) != CONNECTION_OK) {
                fprintf(stderr, "sc-bench: PostgreSQL: %s", c ? PQerrorMessage(c) : "out of memory\n");
                PQfinish(c);
                return NULL;
        }
        return c;
}

/* One statement without parameters; 0, or -EIO (reported). */
static int pg_exec(PGconn *c, const char *sql) {
        PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);
        int r = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -EIO;

        if (r < 0)
                fprintf(stderr, "sc-bench: PostgreSQL: %s: %s", sql, PQerrorMessage(c));
        PQclear(res);
        return r;
}

static void pg_server_stop(PgServer *pg) {
        if (pg->pid > 0) {
                (void) kill(pg->pid, SIGINT);           /* fast shutdown */
                if (wait_exit(pg->pid, 60) == -ETIMEDOUT) {
                        (void) kill(pg->pid, SIGQUIT);  /* immediate */
                        if (wait_exit(pg->pid, 10) == -ETIMEDOUT) {
                                (void) kill(pg->pid, SIGKILL);
                                (void) waitpid(pg->pid, NULL, 0);
                        }
                }
                pg->pid = 0;
        }
        free(pg->dir);
        free(pg->uri);
        *pg = (PgServer) {};
}

/* Our own server: initdb, then postgres on a Unix socket in dir. */
static int pg_server_own(PgServer *pg, const char *bindir, char *why, size_t whylen) {
        _cleanup_(freep) char *initdb = NULL, *postgres = NULL, *data = NULL, *log = NULL, *socket = NULL;
        uid_t uid;
        gid_t gid;
        pid_t pid;
        int r;

        if (asprintf(&pg->dir, "%s/pg", B.tmp) < 0 || asprintf(&data, "%s/data", pg->dir) < 0 ||
            asprintf(&log, "%s/postgresql.log", B.tmp) < 0 || asprintf(&initdb, "%s/initdb", bindir) < 0 ||
            asprintf(&postgres, "%s/postgres", bindir) < 0 ||
            asprintf(&pg->uri, "postgresql:///postgres?host=%s&user=postgres", pg->dir) < 0 ||
            asprintf(&socket, "%s/.s.PGSQL.5432", pg->dir) < 0)
                return -ENOMEM;
        r = server_user(&uid, &gid);
        if (r < 0) {
                snprintf(why, whylen, "no user nobody to run PostgreSQL as");
                return r;
        }
        /* As root, the server runs as nobody: it must reach its directory
         * (the working directory is 0700, its files stay so). */
        if (mkdir(pg->dir, 0700) < 0 || chown(pg->dir, uid, gid) < 0 ||
            (geteuid() == 0 && chmod(B.tmp, 0711) < 0))
                return -errno;
        if (strlen(socket) >= sizeof(((struct sockaddr_un *) NULL)->sun_path)) {
                snprintf(why, whylen, "the socket path %s is too long; set TMPDIR", socket);
                return -ENAMETOOLONG;
        }

        note("PostgreSQL: initdb in %s", data);
        r = server_spawn(log, (char *[]) { initdb, (char *) "-D", data, (char *) "-A", (char *) "trust",
                                       (char *) "-U", (char *) "postgres", (char *) "-E", (char *) "UTF8",
                                       (char *) "--locale=C", (char *) "--no-sync", NULL }, &pid);
        if (r >= 0) {
                r = wait_exit(pid, PG_START_S);
                if (r == -ETIMEDOUT) {
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                }
        }
        if (r != 0) {
                snprintf(why, whylen, "initdb failed (%s); see %s", r < 0 ? strerror(-r) : "exit status", log);
                return r < 0 ? r : -EIO;
        }

        /* --no-sync spares initdb's own fsyncs only; the server syncs every
         * commit (fsync, synchronous_commit), as a production one must. */
        r = server_spawn(log, (char *[]) { postgres, (char *) "-D", data, (char *) "-k", pg->dir,
                                       (char *) "-c", (char *) "listen_addresses=",
                                       (char *) "-c", (char *) "fsync=on",
                                       (char *) "-c", (char *) "synchronous_commit=on",
                                       (char *) "-c", (char *) "max_connections=50", NULL }, &pg->pid);
        if (r < 0)
                return r;
        for (double deadline = now_s() + PG_START_S; now_s() < deadline; usleep(100 * 1000)) {
                _cleanup_(freep) char *conninfo = NULL;

                if (waitpid(pg->pid, NULL, WNOHANG) == pg->pid) {
                        pg->pid = 0;
                        snprintf(why, whylen, "postgres exited at start; see %s", log);
                        return -ECHILD;
                }
                if (access(socket, F_OK) < 0)
                        continue;
                if (asprintf(&conninfo, "host=%s user=postgres dbname=postgres connect_timeout=5", pg->dir) < 0)
                        return -ENOMEM;
                if (PQping(conninfo) == PQPING_OK)
                        return 0;
        }
        snprintf(why, whylen, "postgres did not answer within %d s; see %s", PG_START_S, log);
        return -ETIMEDOUT;
}

static int pg_server_start(PgServer *pg, char *why, size_t whylen) {
        _cleanup_(freep) char *bindir = NULL;
        PGconn *c;
        int r;

        if (B.pg_uri) {
                pg->uri = strdup(B.pg_uri);
                if (!pg->uri)
                        return -ENOMEM;
        } else {
                bindir = pg_find_bindir();
                if (!bindir)
                        return -ENOENT;
                r = pg_server_own(pg, bindir, why, whylen);
                if (r < 0)
                        return r;
        }
        c = pg_connect(pg->uri, NULL);
        if (!c) {
                snprintf(why, whylen, "cannot connect to PostgreSQL");
                return -ECONNREFUSED;
        }
        snprintf(pg->version, sizeof(pg->version), "%s", PQparameterStatus(c, "server_version") ?: "?");
        PQfinish(c);
        return 0;
}

/* A new, empty database on the server: its name in name. */
static int pg_database_new(PgServer *pg, char *name, size_t size) {
        _cleanup_(freep) char *sql = NULL;
        PGconn *c = pg_connect(pg->uri, NULL);
        int r;

        if (!c)
                return -ECONNREFUSED;
        snprintf(name, size, "sc_bench_%d_%u", (int) getpid(), ++pg->n_databases);
        r = asprintf(&sql, "CREATE DATABASE %s", name) < 0 ? -ENOMEM : pg_exec(c, sql);
        PQfinish(c);
        return r;
}

static void pg_database_drop(PgServer *pg, const char *name) {
        _cleanup_(freep) char *sql = NULL;
        PGconn *c = pg_connect(pg->uri, NULL);

        if (c && asprintf(&sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name) >= 0)
                (void) pg_exec(c, sql);
        PQfinish(c);
}

/* CPU time of our own server: the postmaster and its processes (the
 * relays' backends among them, alive while the relays are connected). 0
 * for a server of --pg-uri, which may be on another machine. */
static uint64_t pg_server_cpu_usec(const PgServer *pg) {
        uint64_t sum;
        DIR *d;

        if (pg->pid <= 0)
                return 0;
        sum = proc_cpu_usec(pg->pid);
        d = opendir("/proc");
        if (!d)
                return sum;
        for (struct dirent *e; (e = readdir(d)); ) {
                char path[64], buf[512], *p;
                int pid = atoi(e->d_name), ppid = 0;
                FILE *f;

                if (pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/stat", pid);
                f = fopen(path, "re");
                if (!f)
                        continue;
                p = fgets(buf, sizeof(buf), f);
                fclose(f);
                /* After "pid (comm)": state, then ppid. */
                if (p && (p = strrchr(buf, ')')) && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == pg->pid)
                        sum += proc_cpu_usec(pid);
        }
        closedir(d);
        return sum;
}

/* Whether the relays kept their tables (sc_...) in database name: a relay
 * that ignores database= would route through SQLite, and this row would
 * say nothing of PostgreSQL. */
static bool pg_database_used(PgServer *pg, const char *name) {
        PGconn *c = pg_connect(pg->uri, name);
        PGresult *res;
        bool used;

        if (!c)
                return false;
        res = PQexec(c, "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename LIKE 'sc\\_%'");
        used = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) > 0;
        PQclear(res);
        PQfinish(c);
        return used;
}

/* PG_PAIRS pairs through nodes relays (1 or 2) sharing a new database:
 * senders on the first, receivers on the last. Every relay has the same
 * identity key (identity-key=), as a deployment's nodes must. */
static int pg_routing(PgServer *pg, unsigned nodes, Routing *ret, double *ret_server_cpu_us) {
        _cleanup_(freep) char *database = NULL, *key = NULL;
        Relay relays[2] = {};
        uint64_t server_cpu0;
        char name[64];
        int r;

        r = pg_database_new(pg, name, sizeof(name));
        if (r < 0) {
                snprintf(ret->why, sizeof(ret->why), "cannot create a database");
                return r;
        }
        if (asprintf(&database, "database=%s%sdbname=%s", pg->uri, strchr(pg->uri, '?') ? "&" : "?", name) < 0 ||
            asprintf(&key, "identity-key=%s/identity.key", B.tmp) < 0) {
                r = -ENOMEM;
                goto finish;
        }
        for (unsigned k = 0; k < nodes && r >= 0; k++) {
                char node[32];

                snprintf(node, sizeof(node), "node-name=n%u", k + 1);
                r = relay_spawn(&relays[k], (char *[]) { database, node, key }, 3);
                if (r < 0)
                        snprintf(ret->why, sizeof(ret->why), "relay n%u did not start; see %s", k + 1,
                                 relays[k].log ?: B.tmp);
        }
        server_cpu0 = pg_server_cpu_usec(pg);
        if (r >= 0)
                r = routing_run(PG_PAIRS, routing_per_pair(PG_PAIRS), VIA_RELAY, &relays[0], &relays[nodes - 1],
                                ret);
        /* Before the relays go: their backends' CPU goes with them. */
        if (r >= 0 && ret->delivered > 0)
                *ret_server_cpu_us = (double) (pg_server_cpu_usec(pg) - server_cpu0) / (double) ret->delivered;
        for (unsigned k = 0; k < nodes; k++)
                relay_kill(&relays[k]);
        if (!pg_database_used(pg, name)) {
                size_t len = strlen(ret->why);

                snprintf(ret->why + len, sizeof(ret->why) - len, "%sthe relays made no tables in PostgreSQL "
                         "(a securechatd without the PostgreSQL store?)", len > 0 ? "; " : "");
                if (r >= 0)
                        r = -EPROTO;
        }
finish:
        for (unsigned k = 0; k < nodes; k++) {
                free(relays[k].state);
                free(relays[k].log);
                free(relays[k].control);
        }
        pg_database_drop(pg, name);
        return r;
}

/* The reference of the PostgreSQL and Prosody rows: PG_PAIRS pairs through
 * one relay on SQLite in this run, from the routing rows or measured now. */
static int sqlite_pairs_reference(char *why, size_t whylen) {
        Routing sqlite = {};
        int r;

        if (B.sqlite_pg_pairs_rate > 0)
                return 0;
        r = relay_start();
        if (r >= 0)
                r = routing_run(PG_PAIRS, routing_per_pair(PG_PAIRS), VIA_RELAY, &B.relay, &B.relay, &sqlite);
        relay_stop();
        if (r < 0) {
                snprintf(why, whylen, "the SQLite reference: %s", sqlite.why[0] ? sqlite.why : strerror(-r));
                return r;
        }
        B.sqlite_pg_pairs_rate = sqlite.rate;
        B.sqlite_pg_pairs_cpu_us = sqlite.cpu_us;
        return 0;
}

static void bench_pg(void) {
        static const char *const figures[] = {
                "routing, 10 pairs, 1 node on PostgreSQL",
                "routing, 10 pairs, 2 nodes on PostgreSQL (senders on node 1, receivers on node 2)",
        };
        char why[400] = "", what[96];
        PgServer pg = {};
        int r;

        if (B.no_pg) {
                for (size_t i = 0; i < ELEMENTSOF(figures); i++)
                        row_skipped(figures[i], "--no-pg");
                return;
        }
        note("%s; %s", figures[0], figures[1]);
        r = sqlite_pairs_reference(why, sizeof(why));
        if (r < 0) {
                for (size_t i = 0; i < ELEMENTSOF(figures); i++)
                        row_failed(figures[i], why);
                return;
        }

        r = pg_server_start(&pg, why, sizeof(why));
        if (r == -ENOENT) {
                for (size_t i = 0; i < ELEMENTSOF(figures); i++)
                        row_skipped(figures[i], "no PostgreSQL server installed (no initdb in PATH or "
                                    "/usr/lib/postgresql/*/bin); --pg-uri URI names one");
                pg_server_stop(&pg);
                return;
        }
        if (r < 0) {
                for (size_t i = 0; i < ELEMENTSOF(figures); i++)
                        row_failed(figures[i], why[0] ? why : strerror(-r));
                pg_server_stop(&pg);
                return;
        }
        snprintf(what, sizeof(what), "1 node on SQLite, the same %d pairs, this run", PG_PAIRS);
        for (unsigned nodes = 1; nodes <= 2; nodes++) {
                Routing run = {};
                double server_cpu_us = 0;
                char server[64] = "";
                Row *row;

                r = pg_routing(&pg, nodes, &run, &server_cpu_us);
                if (r < 0) {
                        row_failed(figures[nodes - 1], run.why[0] ? run.why : strerror(-r));
                        continue;
                }
                row = row_add(figures[nodes - 1], run.rate, "msg/s", B.sqlite_pg_pairs_rate, what, true, 0);
                if (server_cpu_us > 0)
                        snprintf(server, sizeof(server), ", the database server's %.0f us/msg", server_cpu_us);
                snprintf(row->note, sizeof(row->note), "PostgreSQL %s (%s); relay CPU %.0f us/msg%s%s; one "
                         "identity key on every node", pg.version,
                         B.pg_uri ? "the server of --pg-uri" : "its own server in the working directory, over a "
                         "Unix socket, fsync=on, synchronous_commit=on", run.cpu_us,
                         nodes > 1 ? " (both relays)" : "", server);
        }
        pg_server_stop(&pg);
}

/* ---- Prosody, the XMPP server an administrator would pick instead ------- */

/* Issue 10 asks for the relay beside Prosody where it is installed: the
 * same pairs, 1 KB messages, TLS 1.3, one message in flight per sender.
 * Prosody stores nothing for a recipient who is online and answers a
 * sender's stream-management request once it has routed what came before
 * (the nearest thing XMPP has to accepted); the relay commits every
 * message and its ack to disk. A reference, so no target. */

#define PROSODY_DOMAIN "localhost"
#define PROSODY_PASSWORD "bench"
#define PROSODY_START_S 30

typedef struct Prosody {
        pid_t pid;
        int port;
        char *exe, *cfg, *log;
        char version[32];
} Prosody;

/* A loopback port free now, for a server that takes its port from a file. */
static int free_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        _cleanup_(closep) int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &sl) < 0)
                return -errno;
        return ntohs(sa.sin_port);
}

/* Write text to path, owned by uid:gid (the server reads it as them). */
static int write_owned(const char *path, const char *text, uid_t uid, gid_t gid) {
        int r = write_file_atomic(path, text, strlen(text), 0600);

        if (r >= 0 && chown(path, uid, gid) < 0)
                r = -errno;
        return r;
}

/* Our own Prosody in the working directory, ready to run: its TLS key and
 * certificate (Ed25519, as the relay's), one account per user (plain-text
 * passwords in its internal store: SASL PLAIN over TLS, the cheapest
 * login), direct TLS on a loopback port only, no server-to-server.
 * -ENOENT when Prosody is not installed. */
/* The load's users: receivers r0.., senders s0.., idle sessions i0.. */
static void prosody_user(char out[static 32], char kind, size_t i) {
        snprintf(out, 32, "%c%zu", kind, i);
}

static int prosody_prepare(Prosody *p, size_t pairs, size_t idle, char *why, size_t whylen) {
        _cleanup_(freep) char *bindir = NULL, *dir = NULL, *key = NULL, *cert = NULL, *accounts = NULL,
                             *config = NULL, *data = NULL, *host = NULL;
        static const char account[] = "return {\n\t[\"password\"] = \"" PROSODY_PASSWORD "\";\n};\n";
        uid_t uid;
        gid_t gid;
        int r;

        bindir = path_dir_with((const char *const[]) { "prosody", NULL });
        if (!bindir)
                return -ENOENT;
        if (asprintf(&p->exe, "%s/prosody", bindir) < 0) {
                p->exe = NULL;
                return -ENOMEM;
        }
        r = server_user(&uid, &gid);
        if (r < 0) {
                snprintf(why, whylen, "no user nobody to run Prosody as");
                return r;
        }
        p->port = free_port();
        if (p->port < 0)
                return p->port;
        if (asprintf(&dir, "%s/prosody", B.tmp) < 0 || asprintf(&data, "%s/data", dir) < 0 ||
            asprintf(&host, "%s/" PROSODY_DOMAIN, data) < 0 || asprintf(&accounts, "%s/accounts", host) < 0 ||
            asprintf(&p->cfg, "%s/prosody.cfg.lua", dir) < 0 || asprintf(&key, "%s/tls.key", dir) < 0 ||
            asprintf(&cert, "%s/tls.crt", dir) < 0 || asprintf(&p->log, "%s/prosody.log", B.tmp) < 0)
                return -ENOMEM;
        /* Its directories its own; as root, the working directory (0700)
         * passable, as for PostgreSQL. */
        const char *const dirs[] = { dir, data, host, accounts };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                if (mkdir(dirs[i], 0700) < 0 || chown(dirs[i], uid, gid) < 0)
                        return -errno;
        if (geteuid() == 0 && chmod(B.tmp, 0711) < 0)
                return -errno;
        r = tls_key_generate(key);
        if (r >= 0)
                r = tls_make_self_signed(key, PROSODY_DOMAIN, cert);
        if (r < 0 || chown(key, uid, gid) < 0 || chown(cert, uid, gid) < 0) {
                snprintf(why, whylen, "cannot make Prosody's TLS certificate");
                return r < 0 ? r : -errno;
        }
        if (asprintf(&config,
                     "pidfile = \"%1$s/prosody.pid\"\n"
                     "data_path = \"%1$s/data\"\n"
                     "daemonize = false\n"
                     "log = { error = \"*stderr\" }\n"
                     "modules_enabled = { \"saslauth\", \"tls\", \"smacks\" }\n"
                     "modules_disabled = { \"s2s\", \"offline\" }\n"
                     "interfaces = { \"127.0.0.1\" }\n"
                     "c2s_ports = { }\n"
                     "c2s_direct_tls_ports = { %2$d }\n"
                     "s2s_ports = { }\n"
                     "authentication = \"internal_plain\"\n"
                     "storage = \"internal\"\n"
                     "c2s_require_encryption = true\n"
                     "ssl = { certificate = \"%3$s\", key = \"%4$s\" }\n"
                     "VirtualHost \"" PROSODY_DOMAIN "\"\n", dir, p->port, cert, key) < 0)
                return -ENOMEM;
        r = write_owned(p->cfg, config, uid, gid);
        for (const char *kind = "rsi"; r >= 0 && *kind; kind++)
                for (size_t i = 0; r >= 0 && i < (*kind == 'i' ? idle : pairs); i++) {
                        _cleanup_(freep) char *path = NULL;
                        char user[32];

                        prosody_user(user, *kind, i);
                        if (asprintf(&path, "%s/%s.dat", accounts, user) < 0)
                                return -ENOMEM;
                        r = write_owned(path, account, uid, gid);
                }
        return r;
}

/* Start the Prosody prosody_prepare() made, until it listens. */
static int prosody_run(Prosody *p, char *why, size_t whylen) {
        FILE *version;
        int r;

        r = server_spawn(p->log, (char *[]) { p->exe, (char *) "--config", p->cfg, NULL }, &p->pid);
        if (r < 0)
                return r;
        for (double deadline = now_s() + PROSODY_START_S; now_s() < deadline; usleep(100 * 1000)) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) p->port),
                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                _cleanup_(closep) int fd = -EBADF;

                if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
                        p->pid = 0;
                        snprintf(why, whylen, "prosody exited at start; see %s", p->log);
                        return -ECHILD;
                }
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
                if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0) {
                        /* Debian's package says which version it is. */
                        version = fopen("/usr/lib/prosody/prosody.version", "re");
                        if (!version || !fgets(p->version, sizeof(p->version), version))
                                snprintf(p->version, sizeof(p->version), "?");
                        p->version[strcspn(p->version, "\n")] = '\0';
                        if (version)
                                fclose(version);
                        return 0;
                }
        }
        snprintf(why, whylen, "prosody did not listen within %d s; see %s", PROSODY_START_S, p->log);
        return -ETIMEDOUT;
}

/* Stop it; it may run again. */
static void prosody_stop(Prosody *p) {
        if (p->pid > 0) {
                (void) kill(p->pid, SIGTERM);
                if (wait_exit(p->pid, 10) == -ETIMEDOUT) {
                        (void) kill(p->pid, SIGKILL);
                        (void) waitpid(p->pid, NULL, 0);
                }
        }
        p->pid = 0;
}

static void prosody_done(Prosody *p) {
        prosody_stop(p);
        free(p->exe);
        free(p->cfg);
        free(p->log);
        *p = (Prosody) {};
}

/* pairs senders -> pairs receivers through Prosody, for the routing
 * rows' duration: every sender keeps B.window messages in flight, each a
 * chat message of size bytes to its receiver's full JID and a request
 * for an ack (XEP-0198), in flight until the ack comes. The rate is what
 * the receivers got, the CPU Prosody's. */
static int prosody_routing(const Prosody *p, size_t pairs, size_t size, Routing *ret) {
        _cleanup_(freep) struct pollfd *pfd = calloc(2 * pairs, sizeof(*pfd));
        _cleanup_(freep) Xmpp **x = calloc(2 * pairs, sizeof(*x));
        _cleanup_(freep) uint64_t *in_flight = calloc(pairs, sizeof(*in_flight));
        _cleanup_(freep) char **stanza = calloc(pairs, sizeof(*stanza));
        _cleanup_(freep) char *body = malloc(size + 1);
        double duration = B.quick ? 1 : 10, t0 = 0, t1;
        uint64_t delivered = 0, cpu0 = 0;
        int r = 0;

        if (!pfd || !x || !in_flight || !stanza || !body)
                return -ENOMEM;
        /* Text a chat client would send: printable, nothing to escape. */
        for (size_t i = 0; i < size; i++)
                body[i] = (char) ('a' + i % 26);
        body[size] = '\0';
        for (size_t i = 0; i < 2 * pairs && r >= 0; i++) {
                char user[32];

                prosody_user(user, i < pairs ? 'r' : 's', i % pairs);
                r = xmpp_open(p->port, PROSODY_DOMAIN, user, PROSODY_PASSWORD, i >= pairs, TIMEOUT_MS, &x[i]);
                if (r >= 0)
                        pfd[i] = (struct pollfd) { .fd = conn_fd(x[i]->c), .events = POLLIN };
                if (r >= 0 && i < pairs &&
                    asprintf(&stanza[i], "<message to='r%zu@" PROSODY_DOMAIN "/bench' type='chat'><body>%s</body>"
                             "</message><r xmlns='urn:xmpp:sm:3'/>", i, body) < 0) {
                        stanza[i] = NULL;
                        r = -ENOMEM;
                }
        }
        if (r < 0) {
                snprintf(ret->why, sizeof(ret->why), "XMPP login: %s", strerror(-r));
                goto finish;
        }
        ret->frame_size = strlen(stanza[0]);

        cpu0 = proc_cpu_usec(p->pid);
        t0 = now_s();
        while (r >= 0 && (t1 = now_s()) < t0 + duration) {
                for (size_t i = 0; i < pairs && r >= 0; i++) {
                        Xmpp *s = x[pairs + i];

                        for (; r >= 0 && in_flight[i] < B.window; in_flight[i]++)
                                r = conn_queue(s->c, stanza[i], strlen(stanza[i]));
                        if (r >= 0 && conn_has_output(s->c)) {
                                r = conn_flush(s->c);
                                if (r == -EAGAIN)
                                        r = 0;
                        }
                        pfd[pairs + i].events = conn_has_output(s->c) && conn_wants_write(s->c) ? POLLOUT : POLLIN;
                }
                if (r < 0)
                        break;
                if (poll(pfd, 2 * pairs, 100) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                for (size_t i = 0; i < 2 * pairs && r >= 0; i++) {
                        uint64_t acks = 0;

                        if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        if (i < pairs)
                                r = xmpp_read_count(x[i], "<message ", &delivered);
                        else {
                                r = xmpp_read_count(x[i], "<a ", &acks);
                                in_flight[i - pairs] -= MIN(acks, in_flight[i - pairs]);
                        }
                        if (r == -EAGAIN)
                                r = 0;
                }
        }
        if (r < 0) {
                snprintf(ret->why, sizeof(ret->why), "%s after %" PRIu64 " delivered", strerror(-r), delivered);
                goto finish;
        }
        if (delivered == 0) {
                snprintf(ret->why, sizeof(ret->why), "no deliveries within %.0f s", duration);
                r = -ETIME;
                goto finish;
        }
        ret->rate = (double) delivered / (t1 - t0);
        ret->delivered = delivered;
        ret->cpu_us = (double) (proc_cpu_usec(p->pid) - cpu0) / (double) delivered;

finish:
        for (size_t i = 0; i < 2 * pairs; i++)
                xmpp_free(x[i]);
        for (size_t i = 0; i < pairs; i++)
                free(stanza[i]);
        return r;
}

/* sessions idle receiving sessions (initial presence sent) on Prosody:
 * its RSS delta per session, in bytes, after one login to warm it up. */
static int prosody_memory(const Prosody *p, size_t sessions, double *ret) {
        _cleanup_(freep) Xmpp **x = calloc(sessions + 1, sizeof(*x));
        uint64_t rss0 = 0, rss1;
        int r = 0;

        if (!x)
                return -ENOMEM;
        for (size_t i = 0; i <= sessions && r >= 0; i++) {
                char user[32];

                prosody_user(user, 'i', i);
                r = xmpp_open(p->port, PROSODY_DOMAIN, user, PROSODY_PASSWORD, false, TIMEOUT_MS, &x[i]);
                if (r >= 0 && i == 0) {
                        usleep(200 * 1000);
                        rss0 = proc_rss(p->pid);
                }
        }
        usleep(500 * 1000);
        rss1 = proc_rss(p->pid);
        for (size_t i = 0; i <= sessions; i++)
                xmpp_free(x[i]);
        if (r < 0)
                return r;
        *ret = ((double) rss1 - (double) rss0) / (double) sessions;
        return 0;
}

/* Each measure on a Prosody of its own: routing after a thousand logins
 * and logouts ran at half its rate, the heap of a routing load has room
 * that a thousand sessions would not move. */
static void bench_prosody(void) {
        char routing[96], memory[128];
        Prosody p = {};
        Routing run = {};
        char why[400] = "", what[96];
        double bytes;
        Row *row;
        int r;

        snprintf(routing, sizeof(routing), "routing, %d pairs, Prosody (XMPP, reference)", PG_PAIRS);
        snprintf(memory, sizeof(memory), "%zu idle receiving sessions, Prosody's memory per session (XMPP, "
                 "reference)", B.sessions);
        note("%s; %s", routing, memory);
        /* The idle sessions and the one that warms Prosody up. */
        r = prosody_prepare(&p, PG_PAIRS, B.sessions + 1, why, sizeof(why));
        if (r == -ENOENT) {
                row_skipped(routing, "Prosody is not installed (no prosody in PATH)");
                row_skipped(memory, "Prosody is not installed (no prosody in PATH)");
                goto finish;
        }
        if (r < 0) {
                row_failed(routing, why[0] ? why : strerror(-r));
                row_failed(memory, why[0] ? why : strerror(-r));
                goto finish;
        }

        r = prosody_run(&p, why, sizeof(why));
        if (r >= 0)
                r = prosody_routing(&p, PG_PAIRS, 1000, &run);
        if (r < 0)
                row_failed(routing, run.why[0] ? run.why : why[0] ? why : strerror(-r));
        else if (sqlite_pairs_reference(why, sizeof(why)) < 0)
                row_failed(routing, why);
        else {
                snprintf(what, sizeof(what), "the relay (SQLite), the same %d pairs, this run", PG_PAIRS);
                row = row_add(routing, run.rate, "msg/s", B.sqlite_pg_pairs_rate, what, true, 0);
                snprintf(row->note, sizeof(row->note),
                         "Prosody %s, its defaults but for its own directory, direct TLS on loopback, "
                         "plain-text passwords; stanzas of %zu bytes to the receiver's full JID, %u "
                         "in flight per sender until the server's stream-management ack; "
                         "Prosody's CPU %.0f us/msg against the relay's %.0f; nothing stored, nothing "
                         "synced", p.version, run.frame_size, B.window, run.cpu_us,
                         B.sqlite_pg_pairs_cpu_us);
        }
        prosody_stop(&p);

        why[0] = '\0';
        r = prosody_run(&p, why, sizeof(why));
        if (r >= 0)
                r = prosody_memory(&p, B.sessions, &bytes);
        if (r < 0)
                row_failed(memory, why[0] ? why : strerror(-r));
        else if (B.relay_session_bytes <= 0)
                row_failed(memory, "the relay's receiving sessions were not measured in this run");
        else {
                row = row_add(memory, bytes / 1024, "KiB", B.relay_session_bytes / 1024,
                              "the relay's receiving session, this run", false, 0);
                snprintf(row->note, sizeof(row->note), "Prosody %s: RSS delta over %zu logins, each "
                         "available (initial presence), no roster", p.version, B.sessions);
        }

finish:
        prosody_done(&p);
}

/* ---- offline fill and drain ---------------------------------------------- */

/* Fill a queue with n messages, then drain it on login: two rows. Returns
 * the fill rate (0 if not measured). The limit is SQLite filling a copy
 * of the queue table with as many rows (for at most 3 s), with ids like
 * the load's (message_id_new(): in time order; random ones cost SQLite
 * about half its rate at 100k rows, each landing on its own page of an
 * index that grows). */
static double bench_fill(size_t n, double *ret_sqlite_rate) {
        _cleanup_(freep) char *db = NULL;
        Peer sender = {}, receiver = {};
        Frames frames = {};
        Load fill = { .peers = &sender, .n = 1, .window = FILL_WINDOW }, drain_load = { .peers = &receiver, .n = 1 };
        StoreRate one = {}, batched = {}, made = {};
        double t0, fill_rate = 0, drain_rate = 0;
        char figure[96], dfigure[96], limit_what[128];
        uint64_t cpu0;
        double fill_cpu = 0, fill_per_commit = 0, parse_us = 0;
        Commits commits0 = {};
        const char *error = NULL;
        size_t env_size = 0;
        Row *row;
        int r;

        snprintf(figure, sizeof(figure), "offline fill, %zu messages to one recipient", n);
        snprintf(dfigure, sizeof(dfigure), "queue drain on login, %zu messages", n);
        note("%s, then %s", figure, dfigure);
        if (asprintf(&db, "%s/reference.db", B.tmp) < 0)
                return row_failed(figure, "out of memory"), 0;
        r = frames_make("s0", "r0", n, &frames);
        if (r < 0)
                goto fail;
        env_size = frames.len[0];
        r = parse_cost_us(&frames, false, &parse_us);
        if (r >= 0)
                r = sqlite_rate(db, env_size, 1, false, B.quick ? 0.2 : 3, n, &one);
        if (r >= 0)
                r = sqlite_rate(db, env_size, FILL_WINDOW, false, B.quick ? 0.2 : 3, n, &batched);
        if (r < 0)
                goto fail;

        r = relay_start();
        if (r < 0)
                goto fail;
        /* r0 registered, then gone: everything for it is queued. */
        r = conn_open(B.relay.port, true, TIMEOUT_MS, &receiver.c);
        if (r >= 0)
                r = conn_login(receiver.c, "r0", B.key, true, TIMEOUT_MS, &error);
        receiver.c = conn_free(receiver.c);
        if (r >= 0)
                r = conn_open(B.relay.port, true, TIMEOUT_MS, &sender.c);
        if (r >= 0)
                r = conn_login(sender.c, "s0", B.key, false, TIMEOUT_MS, &error);
        if (r < 0)
                goto fail;
        sender.frames = &frames;
        fill.want_accepted = n;
        commits0 = commits_read(&B.relay, NULL);
        cpu0 = proc_cpu_usec(B.relay.pid);
        t0 = now_s();
        r = load_run(&fill, B.quick ? 60 : 600);
        if (r >= 0 && fill.errors > 0) {
                fprintf(stderr, "sc-bench: fill: %" PRIu64 " errors, the first: %s\n", fill.errors,
                        fill.first_error);
                r = -EPROTO;
        }
        if (r < 0)
                goto fail;
        fill_rate = (double) n / (now_s() - t0);
        fill_cpu = (double) (proc_cpu_usec(B.relay.pid) - cpu0) / (double) n;
        fill_per_commit = commits_per(commits0, commits_read(&B.relay, NULL));
        sender.c = conn_free(sender.c);

        /* The clock runs from the connect: login and all. */
        drain_load.want_delivered = n;
        t0 = now_s();
        r = conn_open(B.relay.port, true, TIMEOUT_MS, &receiver.c);
        if (r >= 0)
                r = conn_login(receiver.c, "r0", B.key, true, TIMEOUT_MS, &error);
        if (r >= 0)
                r = load_run(&drain_load, B.quick ? 60 : 600);
        if (r >= 0)
                drain_rate = (double) n / (now_s() - t0);

fail:
        relay_stop();
        conn_free(sender.c);
        conn_free(receiver.c);
        frames_done(&frames);
        if (fill_rate <= 0) {
                row_failed(figure, error ?: strerror(-r));
                row_failed(dfigure, "no fill");
                return 0;
        }
        /* The batches the load made: the window splits in two halves that
         * commit in turn (one collects while the other syncs), so SQLite
         * at that size is what the relay's commits alone allow. */
        if (fill_per_commit >= 1 && lround(fill_per_commit) < FILL_WINDOW &&
            sqlite_rate(db, env_size, (unsigned) lround(fill_per_commit), false, B.quick ? 0.2 : 3, n, &made) < 0)
                made.rate = 0;
        snprintf(limit_what, sizeof(limit_what), "SQLite committing %zu rows like these, 64 per commit, same file system", n);
        *ret_sqlite_rate = batched.rate;
        row = row_add(figure, fill_rate, "msg/s", batched.rate, limit_what, true, 0.8);
        /* What the relay spends per message, all its threads together
         * (the event loop parses while the writer commits): the rate it
         * would reach if one core did it all. */
        snprintf(row->note, sizeof(row->note),
                 "relay CPU %.0f us/msg (its threads together: %.0f msg/s on one core; %.1f us of it parsing and "
                 "checking the send, the relay's codec alone), against SQLite's %.0f msg/s (%.1f us CPU/msg); "
                 "SQLite 1-row commits %.0f/s (ratio %.2f); %u in flight, %.1f per commit",
                 fill_cpu, fill_cpu > 0 ? 1e6 / fill_cpu : 0, parse_us, batched.rate, batched.cpu_us, one.rate,
                 fill_rate / one.rate, FILL_WINDOW, fill_per_commit);
        if (made.rate > 0) {
                size_t len = strlen(row->note);

                snprintf(row->note + len, sizeof(row->note) - len,
                         "; SQLite at %ld per commit: %.0f msg/s, the relay %.2f of that", lround(fill_per_commit),
                         made.rate, fill_rate / made.rate);
        }
        /* The limit leaves out TLS, which no relay here may: a send in
         * and its accepted out are one forwarded frame of the bare TLS
         * relay (routing rows), on the thread that also waits for the
         * commits. A relay doing nothing else stops at: */
        if (B.tls_frame_us > 0 && batched.rate > 0) {
                double floor_rate = 1e6 / (1e6 / batched.rate + B.tls_frame_us);
                size_t len = strlen(row->note);

                snprintf(row->note + len, sizeof(row->note) - len,
                         "; SQLite's time per message plus TLS (%.1f us per send in + accepted out, bare TLS "
                         "relay) allow %.0f msg/s, %.2f of the limit", B.tls_frame_us, floor_rate,
                         floor_rate / batched.rate);
        }
        if (drain_rate <= 0) {
                row_failed(dfigure, error ?: strerror(-r));
                return fill_rate;
        }
        row = row_add(dfigure, drain_rate, "msg/s", batched.rate, limit_what, true, 0);
        snprintf(row->note, sizeof(row->note), "login included; every ack is a delete");
        return fill_rate;
}

/* The fill rate at the largest queue against the smallest: the cost of a
 * message must not grow with the queue it joins. */
static void bench_fills(void) {
        double first = 0, last = 0, sqlite_first = 0, sqlite_last = 0;
        char figure[96];
        Row *row;

        for (size_t i = 0; i < B.n_fills; i++) {
                double sqlite_rate = 0, rate = bench_fill(B.fills[i], &sqlite_rate);

                if (i == 0) {
                        first = rate;
                        sqlite_first = sqlite_rate;
                }
                last = rate;
                sqlite_last = sqlite_rate;
        }
        if (B.n_fills < 2)
                return;
        snprintf(figure, sizeof(figure), "offline fill rate, %zu queued against %zu", B.fills[B.n_fills - 1],
                 B.fills[0]);
        if (first <= 0 || last <= 0) {
                row_failed(figure, "a fill was not measured");
                return;
        }
        row = row_add(figure, last, "msg/s", first, "the same relay filling the smallest queue", true, 0.8);
        /* SQLite's own rate beside it: what a longer table costs the
         * store itself. */
        snprintf(row->note, sizeof(row->note), "flat in queue length: %zu vs %zu messages; SQLite alone, the same "
                 "rows 64 per commit: %.0f vs %.0f msg/s (ratio %.2f), the relay's ratio %.2f of that",
                 B.fills[B.n_fills - 1], B.fills[0], sqlite_last, sqlite_first,
                 sqlite_first > 0 ? sqlite_last / sqlite_first : 0,
                 sqlite_first > 0 && sqlite_last > 0 ? (last / first) / (sqlite_last / sqlite_first) : 0);
}


/* ---- memory ---------------------------------------------------------------- */

/* Bytes per idle TLS 1.3 session, server side (GnuTLS, an Ed25519
 * certificate as the relay's), after the handshake: RSS before and after
 * n of them in a child process, whose client ends live in a grandchild so
 * that nothing of theirs is counted. */
static int bare_tls_session_bytes(size_t n, double *ret) {
        int pfd[2];
        pid_t pid;
        double v = 0;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                gnutls_certificate_credentials_t creds = NULL;
                Transport **s = calloc(n, sizeof(*s));
                int (*fds)[2] = calloc(n, sizeof(*fds));
                uint64_t rss0;
                double per;
                pid_t client;

                if (!s || !fds || bare_tls_credentials(&creds) < 0)
                        _exit(1);
                for (size_t i = 0; i < n; i++)
                        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds[i]) < 0)
                                _exit(1);
                client = fork();
                if (client < 0)
                        _exit(1);
                if (client == 0) {
                        /* The clients, in the same order; kept until killed. */
                        for (size_t i = 0; i < n; i++) {
                                Transport *c = NULL;

                                close(fds[i][0]);
                                if (transport_new_client(fds[i][1], true, NULL, &c) < 0 || handshake_alone(c) < 0)
                                        _exit(1);
                        }
                        pause();
                        _exit(0);
                }
                for (size_t i = 0; i < n; i++)
                        close(fds[i][1]);
                /* Memory the parent freed goes back to the system first, or
                 * the allocator may give it back during the handshakes and
                 * the delta shrink (ASan's quarantine: hundreds of MB after
                 * the PostgreSQL rows). */
                malloc_trim(0);
#if HAVE_SANITIZER_PURGE
                __sanitizer_purge_allocator();
#endif
                rss0 = proc_rss(getpid());
                for (size_t i = 0; i < n; i++)
                        if (transport_new_server(fds[i][0], creds, &s[i]) < 0 || handshake_alone(s[i]) < 0)
                                _exit(1);
                per = ((double) proc_rss(getpid()) - (double) rss0) / (double) n;
                (void) kill(client, SIGKILL);
                (void) write_all(pfd[1], &per, sizeof(per));
                _exit(0);
        }
        close(pfd[1]);
        if (read(pfd[0], &v, sizeof(v)) != sizeof(v))
                v = -1;
        close(pfd[0]);
        (void) waitpid(pid, NULL, 0);
        if (v <= 0)
                return -EIO;
        *ret = v;
        return 0;
}

/* Contacts each session of the memory rows watches (version 2): the
 * users logged in after it, a roster of the size people keep. */
#define MEMORY_CONTACTS 10

static int watch_contacts(Peer *peers, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char names[MEMORY_CONTACTS][32];
                const char *users[MEMORY_CONTACTS];
                size_t k = MIN((size_t) MEMORY_CONTACTS, n - 1);
                int r;

                for (size_t j = 0; j < k; j++) {
                        snprintf(names[j], sizeof(names[j]), "r%zu", (i + 1 + j) % n);
                        users[j] = names[j];
                }
                r = conn_queue_json(peers[i].c, frame_new_watch(FRAME_WATCH, 1, users, k));
                if (r >= 0)
                        r = conn_flush(peers[i].c);
                if (r < 0)
                        return r;
                if (i % 16 == 15)
                        drain(peers, i + 1);
        }
        drain(peers, n);
        return 0;
}

/* Version 1 clients get every login and the whole online list; version 2
 * clients (receiving) watch MEMORY_CONTACTS others. */
static void bench_memory(bool receive, unsigned proto, double bare) {
        char figure[128];
        Peer *peers = calloc(B.sessions, sizeof(*peers));
        uint64_t rss0, rss1;
        Peer warm = {};
        Row *row;
        int r;

        snprintf(figure, sizeof(figure), "%zu idle %s sessions, relay memory per session%s", B.sessions,
                 receive ? "receiving" : "sending", proto < 2 ? " (protocol 1 clients)" : "");
        note("%s", figure);
        if (!peers)
                return (void) row_failed(figure, "out of memory");
        r = relay_start();
        /* One login first, so that what every relay allocates once (TLS,
         * SQLite caches) is in the baseline. */
        if (r >= 0)
                r = conn_open(B.relay.port, true, TIMEOUT_MS, &warm.c);
        if (r >= 0)
                r = conn_login_proto(warm.c, "warm", B.key, receive, proto, TIMEOUT_MS, NULL);
        warm.c = conn_free(warm.c);
        usleep(200 * 1000);
        rss0 = proc_rss(B.relay.pid);
        if (r >= 0)
                r = login_many(B.relay.port, receive ? "r" : "s", B.sessions, receive, proto, peers);
        if (r >= 0 && receive && proto >= 2)
                r = watch_contacts(peers, B.sessions);
        usleep(500 * 1000);
        drain(peers, B.sessions);
        rss1 = proc_rss(B.relay.pid);
        peers_free(peers, B.sessions);
        relay_stop();
        if (r < 0)
                return (void) row_failed(figure, strerror(-r));
        if (receive && proto == PROTOCOL_VERSION_MAX)
                B.relay_session_bytes = ((double) rss1 - (double) rss0) / (double) B.sessions;
        row = row_add(figure, ((double) rss1 - (double) rss0) / (double) B.sessions / 1024, "KiB", bare / 1024,
                      "a bare idle TLS 1.3 session (GnuTLS, server side)", false, 2.5);
        snprintf(row->note, sizeof(row->note), "relay RSS delta over %zu logins%s", B.sessions,
                 receive && proto >= 2 ? ", each watching 10 others" : "");
}

/* ---- handshakes and scctl --------------------------------------------------- */

/* Private operations per second with key, for about seconds: RSA-PSS
 * signatures, or with decrypt RSA-OAEP decryptions (a message's key, as
 * suite 1 wraps it). */
/* CPU time of this process (the bench is one thread while it times). */
static double process_cpu_s(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0)
                return 0;
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* RSA private operations per second of key, for about seconds; with
 * ret_cpu, also per CPU-second of this process, which other jobs on a
 * shared machine do not inflate. */
static int private_op_rate(const RsaKey *key, bool decrypt, double seconds, double *ret, double *ret_cpu) {
        _cleanup_(freep) uint8_t *ct = NULL;
        uint8_t msg[64] = {};
        size_t ct_len = 0;
        unsigned n = 0;
        double t0, c0;
        int r;

        if (decrypt) {
                r = rsa_oaep_encrypt(key, NULL, 0, msg, 32, &ct, &ct_len);
                if (r < 0)
                        return r;
        }
        t0 = now_s();
        c0 = process_cpu_s();
        while (now_s() - t0 < seconds || n == 0) {
                _cleanup_(freep) uint8_t *out = NULL;
                size_t len;

                r = decrypt ? rsa_oaep_decrypt(key, NULL, 0, ct, ct_len, &out, &len) :
                              rsa_pss_sign(key, msg, sizeof(msg), &out, &len);
                if (r < 0)
                        return r;
                n++;
        }
        *ret = n / (now_s() - t0);
        if (ret_cpu)
                *ret_cpu = n / MAX(process_cpu_s() - c0, 1e-6);
        return 0;
}

/* Logins of clients of version proto: 3 is signed by the welcome key (no
 * RSA operation on the relay), 2 by the identity key. The limit is the
 * same for both, issue 10's: one RSA private operation per login. */
static void bench_handshakes(unsigned proto) {
        unsigned clients = B.quick ? 4 : 16;
        double seconds = B.quick ? 1 : 5, signs = 0, signs_cpu = 0, t0, dt, relay_cpu_s;
        uint64_t cpu0;
        _cleanup_(rsa_key_freep) RsaKey *identity = NULL;
        _cleanup_(freep) char *path = NULL;
        pid_t pids[16];
        int pfd[2];
        uint64_t total = 0;
        char figure[96], what[128];
        Row *row;
        int r;

        snprintf(figure, sizeof(figure), "logins/s (TLS + auth + welcome), %u clients%s", clients,
                 proto < PROTOCOL_VERSION_WELCOME_KEY ? " (protocol 2 clients)" : "");
        note("%s", figure);
        r = relay_start();
        if (r < 0)
                return (void) row_failed(figure, strerror(-r));
        if (asprintf(&path, "%s/identity.key", B.relay.state) < 0 || rsa_key_load_private(path, &identity) < 0 ||
            private_op_rate(identity, false, B.quick ? 0.2 : 2, &signs, &signs_cpu) < 0) {
                relay_stop();
                return (void) row_failed(figure, "cannot measure the RSA sign rate");
        }
        if (pipe2(pfd, O_CLOEXEC) < 0) {
                relay_stop();
                return (void) row_failed(figure, strerror(errno));
        }
        t0 = now_s();
        cpu0 = proc_cpu_usec(B.relay.pid);
        for (unsigned i = 0; i < clients; i++) {
                pids[i] = fork();
                if (pids[i] == 0) {
                        char user[32];
                        uint64_t n = 0;

                        snprintf(user, sizeof(user), "h%u", i);
                        while (now_s() - t0 < seconds) {
                                _cleanup_(conn_freep) Conn *c = NULL;

                                if (conn_open(B.relay.port, true, TIMEOUT_MS, &c) < 0 ||
                                    conn_login_proto(c, user, B.key, false, proto, TIMEOUT_MS, NULL) < 0)
                                        _exit(1);
                                n++;
                        }
                        (void) write_all(pfd[1], &n, sizeof(n));
                        _exit(0);
                }
        }
        close(pfd[1]);
        for (unsigned i = 0; i < clients; i++) {
                uint64_t n = 0;

                if (read(pfd[0], &n, sizeof(n)) == sizeof(n))
                        total += n;
        }
        dt = now_s() - t0;
        relay_cpu_s = (double) (proc_cpu_usec(B.relay.pid) - cpu0) / 1e6;
        close(pfd[0]);
        for (unsigned i = 0; i < clients; i++)
                if (pids[i] > 0)
                        (void) waitpid(pids[i], NULL, 0);
        relay_stop();
        if (total == 0)
                return (void) row_failed(figure, "no login completed");
        if (relay_cpu_s <= 0)
                return (void) row_failed(figure, "no relay CPU time measured");
        /* Per CPU-second on both sides: the clients and other jobs share
         * the cores, and a wall-clock rate beside a sign rate measured at
         * another moment compares two loads, not two costs. */
        snprintf(what, sizeof(what), "RSA-%u signs/CPU-s / 1 private op per login",
                 rsa_key_bits(identity));
        row = row_add(figure, (double) total / relay_cpu_s, "logins/CPU-s", signs_cpu, what, true, 0.8);
        snprintf(row->note, sizeof(row->note),
                 "%.0f logins/s by the clock (%" PRIu64 " in %.1f s) against %.0f signs/s by the clock; "
                 "relay CPU %.2f ms per login; clients (each an RSA-%d sign per login) share the cores",
                 (double) total / dt, total, dt, signs, relay_cpu_s * 1000 / (double) total, CLIENT_KEY_BITS);
}

/* Start scctl with args for user in home, its standard input from in_fd
 * (-1: /dev/null) and output to out_fd (-1: scctl.log, which always gets
 * its standard error). */
/* exe with argv, its standard input, output and error on in, out, err.
 * vfork(): a fork() of this process, which holds every frame of the load
 * (a hundred MB), cost ~10 ms of page tables before scctl even started,
 * and the one-shot row times scctl from its spawn. The child only moves
 * descriptors and executes. */
static pid_t spawn(const char *exe, char *const *argv, int in, int out, int err) {
        pid_t pid = vfork();

        if (pid == 0) {
                if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0 ||
                    prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
                        _exit(127);
                execv(exe, argv);
                _exit(127);
        }
        return pid;
}

static int scctl_spawn(const char *home, const char *user, const char *const *args, int in_fd, int out_fd,
                       pid_t *ret) {
        _cleanup_(freep) char *exe = NULL, *server = NULL, *log = NULL;
        char *argv[16];
        size_t n = 0;
        _cleanup_(closep) int null = -EBADF, err = -EBADF;
        int in, out;
        pid_t pid;

        if (asprintf(&exe, "%s/scctl", B.builddir) < 0 || asprintf(&server, "127.0.0.1:%d", B.relay.port) < 0 ||
            asprintf(&log, "%s/scctl.log", B.tmp) < 0)
                return -ENOMEM;
        argv[n++] = exe;
        argv[n++] = (char *) "--server";
        argv[n++] = server;
        argv[n++] = (char *) "--user";
        argv[n++] = (char *) user;
        argv[n++] = (char *) "--home";
        argv[n++] = (char *) home;
        for (size_t i = 0; args[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = (char *) args[i];
        argv[n] = NULL;
        null = in_fd >= 0 ? -EBADF : open("/dev/null", O_RDONLY | O_CLOEXEC);
        err = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if ((in_fd < 0 && null < 0) || err < 0)
                return -errno;
        in = in_fd >= 0 ? in_fd : null;
        out = out_fd >= 0 ? out_fd : err;
        pid = spawn(exe, argv, in, out, err);
        if (pid < 0)
                return -errno;
        *ret = pid;
        return 0;
}

/* 0 when pid exited with status 0. */
static int wait_success(pid_t pid) {
        int status;

        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPROTO;
}

/* Run scctl with args for user in home; its wall time in seconds, or <0. */
static double scctl_run(const char *home, const char *user, const char *const *args) {
        double t0 = now_s();
        pid_t pid;

        if (scctl_spawn(home, user, args, -1, -1, &pid) < 0 || wait_success(pid) < 0)
                return -1;
        return now_s() - t0;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

static void bench_scctl(void) {
        static const char *const init[] = { "init", "--bits", "2048", NULL };
        static const char *const send[] = { "send", "b", "hello", NULL };
        static const char *const version[] = { "--version", NULL };
        _cleanup_(freep) char *home_a = NULL, *home_b = NULL;
        const char *figure = "one-shot scctl send (identity exists, peer pinned)";
        unsigned runs = B.quick ? 2 : 15;
        double times[15], ops[15], starts[15];
        Row *row;
        int r;

        note("%s", figure);
        r = relay_start();
        if (r < 0)
                return (void) row_failed(figure, strerror(-r));
        if (asprintf(&home_a, "%s/home-a", B.tmp) < 0 || asprintf(&home_b, "%s/home-b", B.tmp) < 0 ||
            scctl_run(home_a, "a", init) < 0 || scctl_run(home_b, "b", init) < 0 ||
            scctl_run(home_a, "a", send) < 0) {         /* pins b */
                relay_stop();
                return (void) row_failed(figure, "scctl init or send failed");
        }
        /* Each run beside a timing of its two private operations, so that
         * both medians come from the same moments of a shared machine. */
        for (unsigned i = 0; i < runs; i++) {
                double t0 = now_s();

                /* Ours twice (auth, envelope). The relay's welcome (protocol
                 * 3) is an Ed25519 signature, tens of microseconds. */
                for (unsigned k = 0; k < 2; k++) {
                        _cleanup_(freep) uint8_t *sig = NULL;
                        uint8_t msg[64] = {};
                        size_t len;

                        if (rsa_pss_sign(B.key, msg, sizeof(msg), &sig, &len) < 0) {
                                relay_stop();
                                return (void) row_failed(figure, "cannot time the RSA signs");
                        }
                }
                ops[i] = now_s() - t0;
                /* What starting scctl costs before it does anything: the
                 * loader, GnuTLS's and the other libraries' set-up. */
                starts[i] = scctl_run(home_a, "a", version);
                times[i] = scctl_run(home_a, "a", send);
                if (times[i] < 0 || starts[i] < 0) {
                        relay_stop();
                        return (void) row_failed(figure, "scctl send failed");
                }
        }
        relay_stop();
        qsort(times, runs, sizeof(times[0]), cmp_double);
        qsort(ops, runs, sizeof(ops[0]), cmp_double);
        qsort(starts, runs, sizeof(starts[0]), cmp_double);
        row = row_add(figure, times[runs / 2] * 1000, "ms", ops[runs / 2] * 1000,
                      "its own 2 RSA-2048 private ops (auth, envelope)", false, 2.5);
        /* Starting the process is a floor no send goes below, whatever it
         * does itself; the relay's welcome no longer is (protocol 3). */
        snprintf(row->note, sizeof(row->note),
                 "medians of %u runs, each beside a timing of the signs; process start to exit; "
                 "the relay signs its welcome with its Ed25519 welcome key (protocol 3), no RSA; "
                 "the 2 private ops with starting the process (scctl --version, %.2f ms) are "
                 "%.2fx the limit, before any network round trip or disk write",
                 runs, starts[runs / 2] * 1000, (ops[runs / 2] + starts[runs / 2]) / ops[runs / 2]);
}

/* Lines of a child's output, read as they come. */
typedef struct Lines {
        int fd;
        char buf[16384];
        size_t len;
} Lines;

/* Read lines until count of them contained needle (what follows stays
 * for the next call): 0, -ETIMEDOUT at deadline, -EPIPE at EOF. When
 * *other is a child, its failure ends the wait at once (-ECHILD): nothing
 * more would come; its success reaps it (*other = 0). */
static int lines_wait(Lines *l, const char *needle, size_t count, double deadline, pid_t *other) {
        size_t seen = 0;

        for (;;) {
                char *nl;

                while (seen < count && (nl = memchr(l->buf, '\n', l->len))) {
                        size_t n = (size_t) (nl - l->buf) + 1;

                        if (memmem(l->buf, n, needle, strlen(needle)))
                                seen++;
                        memmove(l->buf, l->buf + n, l->len - n);
                        l->len -= n;
                }
                if (seen == count)
                        return 0;
                /* A line longer than anything scctl prints here: not one
                 * to count. */
                if (l->len == sizeof(l->buf))
                        l->len = 0;

                struct pollfd p = { .fd = l->fd, .events = POLLIN };
                double left = deadline - now_s();
                int n, status;
                ssize_t k;

                if (left <= 0)
                        return -ETIMEDOUT;
                if (other && *other > 0 && waitpid(*other, &status, WNOHANG) == *other) {
                        *other = 0;
                        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                                return -ECHILD;
                }
                /* A tenth of a second at most while a child is watched. */
                n = poll(&p, 1, other && *other > 0 ? MIN((int) (left * 1000) + 1, 100) : (int) (left * 1000) + 1);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n <= 0)
                        continue;
                k = read(l->fd, l->buf + l->len, sizeof(l->buf) - l->len);
                if (k == 0)
                        return -EPIPE;
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (k > 0)
                        l->len += (size_t) k;
        }
}

/* n lines "recipient: message" from scctl connect, until scctl listen
 * printed them all; the time from connect's start, or -errno. */
static int e2e_run(const char *home_s, const char *home_r, size_t n, double *ret) {
        static const char *const listen_args[] = { "--json", "listen", NULL };
        static const char *const connect_args[] = { "connect", NULL };
        double deadline = now_s() + (B.quick ? 60 : 300), t0, dt = 0;
        int out[2] = { -EBADF, -EBADF }, in[2] = { -EBADF, -EBADF };
        pid_t listener = 0, sender = 0;
        _cleanup_(freep) Lines *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(in, O_CLOEXEC) < 0) {
                r = -errno;
                goto finish;
        }
        r = scctl_spawn(home_r, "recipient", listen_args, -1, out[1], &listener);
        out[1] = safe_close(out[1]);
        l->fd = out[0];
        /* Messages sent before it is logged in would be queued, not routed. */
        if (r >= 0)
                r = lines_wait(l, "\"type\":\"connected\"", 1, deadline, NULL);
        if (r < 0)
                goto finish;

        t0 = now_s();
        r = scctl_spawn(home_s, "sender", connect_args, in[0], -1, &sender);
        in[0] = safe_close(in[0]);
        /* All at once: connect reads them in its own time, and how many it
         * has in flight is its business (it may send one after the other or
         * pipeline them). */
        for (size_t i = 0; i < n && r >= 0; i++) {
                char line[64];
                int len = snprintf(line, sizeof(line), "recipient: message %zu\n", i);

                r = write_all(in[1], line, (size_t) len);
        }
        in[1] = safe_close(in[1]);
        if (r >= 0)
                r = lines_wait(l, "\"type\":\"message\"", n, deadline, &sender);
        dt = now_s() - t0;
        /* Connect ends after the relay answered every message. */
        if (r >= 0 && sender > 0) {
                r = wait_success(sender);
                sender = 0;
        }

finish:
        if (sender > 0) {
                (void) kill(sender, SIGTERM);
                (void) waitpid(sender, NULL, 0);
        }
        if (listener > 0) {
                (void) kill(listener, SIGTERM);
                (void) waitpid(listener, NULL, 0);
        }
        safe_close(out[0]);
        safe_close(out[1]);
        safe_close(in[0]);
        safe_close(in[1]);
        if (r < 0)
                return r;
        *ret = dt;
        return 0;
}

/* Two people chatting through scctl: what the relay, both clients and
 * their cryptography make of a stream of messages. */
static void bench_e2e(void) {
        static const char *const init[] = { "init", "--bits", "2048", NULL };
        static const char *const send[] = { "send", "recipient", "hello", NULL };
        static const char *const inbox[] = { "inbox", NULL };
        _cleanup_(freep) char *home_s = NULL, *home_r = NULL;
        const char *figure = "end-to-end scctl connect -> scctl listen, 2048-bit";
        size_t n = B.quick ? 20 : 500;
        double dt = 0, signs = 0, decrypts = 0, per_msg;
        char what[96];
        Row *row;
        int r;

        note("%s: %zu messages", figure, n);
        r = relay_start();
        if (r < 0)
                return (void) row_failed(figure, strerror(-r));
        /* Registered, and pinned to each other: the sender pins the
         * recipient's key when it sends, the recipient the sender's when it
         * reads that message. */
        if (asprintf(&home_s, "%s/home-e2e-sender", B.tmp) < 0 ||
            asprintf(&home_r, "%s/home-e2e-recipient", B.tmp) < 0 ||
            scctl_run(home_s, "sender", init) < 0 || scctl_run(home_r, "recipient", init) < 0 ||
            scctl_run(home_s, "sender", send) < 0 || scctl_run(home_r, "recipient", inbox) < 0) {
                relay_stop();
                return (void) row_failed(figure, "scctl init, send or inbox failed");
        }
        r = e2e_run(home_s, home_r, n, &dt);
        relay_stop();
        if (r == -ECHILD)
                return (void) row_failed(figure, "scctl connect failed (see scctl.log)");
        if (r < 0)
                return (void) row_failed(figure, strerror(-r));

        /* Each message costs the sender a signature and the recipient an
         * OAEP decryption of its key, both private RSA operations; on one
         * core they take this long together. */
        if (private_op_rate(B.key, false, B.quick ? 0.2 : 2, &signs, NULL) < 0 ||
            private_op_rate(B.key, true, B.quick ? 0.2 : 2, &decrypts, NULL) < 0)
                return (void) row_failed(figure, "cannot time the RSA private operations");
        per_msg = 1 / signs + 1 / decrypts;
        snprintf(what, sizeof(what), "sender+receiver crypto per core (RSA-%u sign + OAEP decrypt)",
                 rsa_key_bits(B.key));
        row = row_add(figure, (double) n / dt, "msg/s", 1 / per_msg, what, true, 0.8);
        snprintf(row->note, sizeof(row->note), "%zu messages from connect's start until listen printed the last; "
                 "limit = 1 / (%.2f ms PSS sign + %.2f ms OAEP decrypt), libcommon's rsa_pss_sign() and "
                 "rsa_oaep_decrypt()", n, 1e3 / signs, 1e3 / decrypts);
}

/* ---- output ----------------------------------------------------------------- */

static void machine(unsigned *ret_cpus, char *model, size_t size) {
        char line[512];
        FILE *f = fopen("/proc/cpuinfo", "re");

        snprintf(model, size, "unknown");
        *ret_cpus = (unsigned) sysconf(_SC_NPROCESSORS_ONLN);
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                char *p = strstr(line, "model name");

                if (p && (p = strchr(p, ':'))) {
                        p += strspn(p + 1, " \t") + 1;
                        p[strcspn(p, "\n")] = '\0';
                        snprintf(model, size, "%s", p);
                        break;
                }
        }
        fclose(f);
}

static const char *row_status(const Row *r) {
        if (r->failed)
                return "not measured";
        if (r->skipped)
                return "skipped";
        if (r->target <= 0)
                return "";
        if (r->at_least ? row_ratio(r) >= r->target : row_ratio(r) <= r->target)
                return "meets";
        return "BELOW TARGET";
}

static void print_table(void) {
        char model[256], target[32];
        unsigned cpus;

        machine(&cpus, model, sizeof(model));
        printf("machine: %u CPUs, %s%s\n\n", cpus, model, B.quick ? " (--quick: figures mean nothing)" : "");
        printf("| figure | value | limit | ratio | target | |\n|---|---|---|---|---|---|\n");
        for (size_t i = 0; i < B.n_rows; i++) {
                const Row *r = &B.rows[i];

                if (r->failed || r->skipped) {
                        printf("| %s | - | - | - | - | %s |\n", r->figure, r->note);
                        continue;
                }
                if (r->target > 0)
                        snprintf(target, sizeof(target), "%s %.2g%s", r->at_least ? ">=" : "<=", r->target,
                                 r->at_least ? "" : "x");
                else
                        snprintf(target, sizeof(target), "-");
                printf("| %s | %.4g %s | %.4g %s: %s | %.3g%s | %s | %s |\n", r->figure, r->value, r->unit,
                       r->limit, r->unit, r->limit_what, row_ratio(r), r->at_least ? "" : "x", target,
                       row_status(r));
        }
        printf("\n");
        for (size_t i = 0; i < B.n_rows; i++)
                if (!B.rows[i].failed && !B.rows[i].skipped && B.rows[i].note[0])
                        printf("%s: %s\n", B.rows[i].figure, B.rows[i].note);
}

static void print_json(void) {
        json_object *o = json_object_new_object(), *rows = json_object_new_array();
        char model[256];
        unsigned cpus;

        machine(&cpus, model, sizeof(model));
        json_object_object_add(o, "cpus", json_object_new_int((int) cpus));
        json_object_object_add(o, "cpu_model", json_object_new_string(model));
        json_object_object_add(o, "quick", json_object_new_boolean(B.quick));
        for (size_t i = 0; i < B.n_rows; i++) {
                const Row *r = &B.rows[i];
                json_object *j = json_object_new_object();

                json_object_object_add(j, "figure", json_object_new_string(r->figure));
                json_object_object_add(j, "measured", json_object_new_boolean(!r->failed && !r->skipped));
                if (r->skipped)
                        json_object_object_add(j, "skipped", json_object_new_boolean(true));
                if (!r->failed && !r->skipped) {
                        json_object_object_add(j, "value", json_object_new_double(r->value));
                        json_object_object_add(j, "unit", json_object_new_string(r->unit));
                        json_object_object_add(j, "limit", json_object_new_double(r->limit));
                        json_object_object_add(j, "limit_what", json_object_new_string(r->limit_what));
                        json_object_object_add(j, "ratio", json_object_new_double(row_ratio(r)));
                        if (r->target > 0) {
                                json_object_object_add(j, "target", json_object_new_double(r->target));
                                json_object_object_add(j, "target_is_minimum", json_object_new_boolean(r->at_least));
                                json_object_object_add(j, "meets_target", json_object_new_boolean(
                                        strcmp(row_status(r), "meets") == 0));
                        }
                }
                json_object_object_add(j, "note", json_object_new_string(r->note));
                json_object_array_add(rows, j);
        }
        json_object_object_add(o, "rows", rows);
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
}

/* ---- main --------------------------------------------------------------------- */

/* A comma-separated list of up to max numbers in 1..limit. */
static int parse_list(const char *s, size_t *list, size_t max, size_t *ret_n, unsigned long limit) {
        size_t n = 0;

        while (*s && n < max) {
                char *end;
                unsigned long v = strtoul(s, &end, 10);

                if (end == s || v == 0 || v > limit)
                        return -EINVAL;
                list[n++] = v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',')
                        return -EINVAL;
        }
        if (n == 0)
                return -EINVAL;
        *ret_n = n;
        return 0;
}

static int parse_pairs(const char *s) {
        return parse_list(s, B.pairs, ELEMENTSOF(B.pairs), &B.n_pairs, 10000);
}

static int parse_fills(const char *s) {
        return parse_list(s, B.fills, ELEMENTSOF(B.fills), &B.n_fills, 10000000);
}

static int parse_argv(int argc, char **argv) {
        static const struct option options[] = {
                { "builddir", required_argument, NULL, 'b' },
                { "quick",    no_argument,       NULL, 'q' },
                { "json",     no_argument,       NULL, 'j' },
                { "pairs",    required_argument, NULL, 'p' },
                { "fill",     required_argument, NULL, 'f' },
                { "sessions", required_argument, NULL, 's' },
                { "window",   required_argument, NULL, 'w' },
                { "pg-uri",   required_argument, NULL, 'P' },
                { "no-pg",    no_argument,       NULL, 'N' },
                { "help",     no_argument,       NULL, 'h' },
                {}
        };
        bool pairs_set = false, fill_set = false, sessions_set = false;
        int c;

        while ((c = getopt_long(argc, argv, "o:", options, NULL)) >= 0)
                switch (c) {
                case 'b':
                        B.builddir = optarg;
                        break;
                case 'q':
                        B.quick = true;
                        break;
                case 'j':
                        B.json = true;
                        break;
                case 'p':
                        if (parse_pairs(optarg) < 0) {
                                fprintf(stderr, "sc-bench: bad --pairs: %s\n", optarg);
                                return -EINVAL;
                        }
                        pairs_set = true;
                        break;
                case 'f':
                        if (parse_fills(optarg) < 0) {
                                fprintf(stderr, "sc-bench: bad --fill: %s\n", optarg);
                                return -EINVAL;
                        }
                        fill_set = true;
                        break;
                case 's':
                        B.sessions = strtoul(optarg, NULL, 10);
                        sessions_set = B.sessions > 0;
                        break;
                case 'w':
                        B.window = (unsigned) strtoul(optarg, NULL, 10);
                        if (B.window == 0 || B.window > 1024) {
                                fprintf(stderr, "sc-bench: bad --window: %s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case 'P':
                        if (strncmp(optarg, "postgresql://", 13) != 0 && strncmp(optarg, "postgres://", 11) != 0) {
                                fprintf(stderr, "sc-bench: --pg-uri wants a postgresql:// URI: %s\n", optarg);
                                return -EINVAL;
                        }
                        B.pg_uri = optarg;
                        break;
                case 'N':
                        B.no_pg = true;
                        break;
                case 'o': {
                        char **o = realloc(B.relay_opts, (B.n_relay_opts + 1) * sizeof(*o));

                        if (!o)
                                return -ENOMEM;
                        B.relay_opts = o;
                        B.relay_opts[B.n_relay_opts++] = optarg;
                        break;
                }
                case 'h':
                        printf("sc-bench [--builddir DIR] [--quick] [--json] [--pairs LIST] [--fill LIST] "
                               "[--sessions N] [--window N] [--pg-uri URI | --no-pg] [-o KEY=VALUE]...\n");
                        return 0;
                default:
                        return -EINVAL;
                }
        if (!pairs_set)
                (void) parse_pairs(B.quick ? "1,2" : "1,10,100,1000");
        if (!fill_set)
                (void) parse_fills(B.quick ? "50,100" : "10000,100000");
        if (!sessions_set && B.quick)
                B.sessions = 10;
        if (!sessions_set && B.sessions == 0)
                B.sessions = 1000;
        return 1;
}

int main(int argc, char **argv) {
        const char *tmpdir = getenv("TMPDIR");
        double bare_tls = 0;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        /* A dying relay or client must not kill us through a write. */
        signal(SIGPIPE, SIG_IGN);

        if (asprintf(&B.tmp, "%s/sc-bench.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/var/tmp") < 0 ||
            !mkdtemp(B.tmp)) {
                fprintf(stderr, "sc-bench: no temporary directory: %m\n");
                return 2;
        }
        note("working in %s", B.tmp);
        r = rsa_key_generate(CLIENT_KEY_BITS, &B.key);
        if (r < 0) {
                fprintf(stderr, "sc-bench: rsa_key_generate: %s\n", strerror(-r));
                return 2;
        }

        for (size_t i = 0; i < B.n_pairs; i++)
                bench_routing(B.pairs[i]);
        bench_pg();
        bench_fills();
        /* At least 100: the RSS grows by pages, and over the few sessions
         * of --quick it may not grow at all (an allocator with pages of
         * its own at hand: ASan's), which measures nothing. */
        r = bare_tls_session_bytes(MAX(B.sessions, (size_t) 100), &bare_tls);
        if (r < 0) {
                row_failed("idle receiving sessions", "bare TLS session memory not measured");
                row_failed("idle sending sessions", "bare TLS session memory not measured");
        } else {
                bench_memory(true, PROTOCOL_VERSION_MAX, bare_tls);
                bench_memory(true, 1, bare_tls);
                bench_memory(false, PROTOCOL_VERSION_MAX, bare_tls);
        }
        bench_prosody();
        bench_handshakes(PROTOCOL_VERSION_MAX);
        bench_handshakes(2);
        bench_scctl();
        bench_e2e();
        relay_stop();

        if (B.json)
                print_json();
        else
                print_table();

        r = 0;
        for (size_t i = 0; i < B.n_rows; i++)
                if (B.rows[i].failed)
                        r = 2;
        if (r == 0 && !getenv("SC_BENCH_KEEP")) {
                _cleanup_(freep) char *cmd = NULL;

                /* Only our own mkdtemp() directory. */
                if (asprintf(&cmd, "rm -rf -- '%s'", B.tmp) >= 0 && system(cmd) != 0)
                        note("could not remove %s", B.tmp);
        } else
                note("kept %s", B.tmp);
        rsa_key_free(B.key);
        return r;
}
