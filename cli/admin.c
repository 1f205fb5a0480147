/* SPDX-License-Identifier: MIT */
/*
 * The administration verbs: status, sessions, users --registered,
 * monitor, kick, reset-key, reload. Each is one Varlink call on the
 * relay's control socket, answered at once (within --timeout), except
 * monitor, which prints events until it is interrupted.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "cli.h"
#include "exit-codes.h"
#include "output.h"
#include "util.h"
#include "varlink.h"
#include "verbs.h"
#include "wait.h"

/* A reply listing many users or sessions may be large; an event is small. */
#define CONTROL_REPLY_MAX (16u * 1024 * 1024)

enum {
        ARG_REGISTERED = _ARG_GLOBAL_MAX,
};

typedef struct ControlLink {
        int fd;
        const char *path;
        VarlinkReader in;
} ControlLink;

static void control_link_done(ControlLink *l) {
        l->fd = safe_close(l->fd);
        varlink_reader_done(&l->in);
}

/* ---- options ----------------------------------------------------------------- */

/* The admin verbs' options; --registered only where registered is not
 * NULL. > 0 to go on, 0 after --help, else -errno (exit-codes.h). */
static int parse_admin_options(int argc, char *argv[], bool *registered) {
        static const struct option options[] = {
                GLOBAL_OPTIONS,
                { "registered", no_argument, NULL, ARG_REGISTERED },
                {}
        };
        int c, r;

        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                if (c == ARG_REGISTERED && registered) {
                        *registered = true;
                        continue;
                }
                r = verb_option(argv[0], c, argv);
                if (r <= 0)
                        return r;
        }
        return 1;
}

/* For verbs without arguments. > 0 to go on. */
static int parse_no_arguments(int argc, char *argv[]) {
        int r = parse_admin_options(argc, argv, NULL);

        if (r <= 0)
                return r;
        if (optind < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind]);
        return 1;
}

/* For kick and reset-key: one user name. > 0 to go on. */
static int parse_user_argument(int argc, char *argv[], const char **ret_user) {
        int r = parse_admin_options(argc, argv, NULL);

        if (r <= 0)
                return r;
        if (optind >= argc)
                return verb_usage_error(argv[0], "which user?");
        if (optind + 1 < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind + 1]);
        if (!username_valid(argv[optind]))
                return verb_bad_user_name(argv[0], argv[optind]);
        *ret_user = argv[optind];
        return 1;
}

static const char *control_path(void) {
        const char *e = getenv("SECURECHAT_CONTROL");

        if (!strempty(arg_settings.arg_control))
                return arg_settings.arg_control;
        return !strempty(e) ? e : DEFAULT_CONTROL_SOCKET;
}

/* ---- the connection ---------------------------------------------------------- */

static int permission_denied(const char *path) {
        char name[64] = "securechat";
        struct group grp, *result = NULL;
        char buf[1024];
        struct stat st;

        /* The socket's group is the admin group (securechatd-control.socket
         * and the relay itself set it); name it when we can. */
        if (stat(path, &st) == 0 && st.st_gid != 0 &&
            getgrgid_r(st.st_gid, &grp, buf, sizeof(buf), &result) == 0 && result)
                snprintf(name, sizeof(name), "%s", result->gr_name);
        return log_fail(EXIT_PERMISSION, 0, "permission denied: the control socket %s needs root or membership "
                        "in group %s.", path, name);
}

static int control_connect(ControlLink *l) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = control_path();

        *l = (ControlLink) { .fd = -EBADF, .path = path };
        varlink_reader_init(&l->in, CONTROL_REPLY_MAX);
        if (strlen(path) >= sizeof(sa.sun_path))
                return log_fail(EXIT_USAGE, 0, "The control socket path %s is too long.", path);
        memcpy(sa.sun_path, path, strlen(path));

        l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (l->fd < 0)
                return log_fail(EXIT_FAIL, -errno, "Cannot create a socket: %m");
        if (connect(l->fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                return 0;

        switch (errno) {
        case ENOENT:
        case ENOTDIR:
                /* A relay run by hand has its control socket where its
                 * -o control= says, or none (an ordinary user cannot
                 * create the default): say how to find it. */
                return log_fail(EXIT_CONNECT, 0, "No control socket at %s: the relay is not running, or its "
                                "control socket is elsewhere (a relay run by hand has one only with "
                                "-o control=PATH). Point scctl at it with --control PATH or "
                                "SECURECHAT_CONTROL=PATH.", path);
        case ECONNREFUSED:
                return log_fail(EXIT_CONNECT, 0, "relay not running (nothing listens on the control socket %s)",
                                path);
        case EACCES:
        case EPERM:
                return permission_denied(path);
        case EAGAIN:
                return log_fail(EXIT_CONNECT, 0, "The relay does not accept control connections on %s right "
                                "now (backlog full); try again.", path);
        default:
                return log_fail(EXIT_CONNECT, -errno, "Cannot connect to the control socket %s: %m", path);
        }
}

static uint64_t control_deadline(void) {
        uint64_t t = arg_settings.timeout_usec;

        return now_monotonic_usec() + (t > 0 ? t : DEFAULT_TIMEOUT_SEC * USEC_PER_SEC);
}

/* Wait for the socket (and sigfd) until deadline: 1 ready, 0 timeout,
 * -ECANCELED on a signal (not reported), else -errno. */
static int control_poll(ControlLink *l, short events, int sigfd, uint64_t deadline) {
        int r = wait_fd(l->fd, events, sigfd, deadline);

        if (r < 0 && r != -ECANCELED)
                return log_fail(EXIT_FAIL, r, "poll() failed: %m");
        return r;
}

static int timed_out(const ControlLink *l) {
        uint64_t t = arg_settings.timeout_usec > 0 ? arg_settings.timeout_usec : DEFAULT_TIMEOUT_SEC * USEC_PER_SEC;

        return log_fail(EXIT_TIMEOUT, 0, "The relay did not answer on %s within %u s.", l->path,
                        (unsigned) (t / USEC_PER_SEC));
}

static int control_send(ControlLink *l, const char *method, json_object *parameters, bool more,
                        uint64_t deadline) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;
        json_object *call = varlink_new_call(method, parameters, more);
        size_t done = 0;
        int r;

        r = varlink_append(&b, call);
        json_object_put(call);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "%m");

        while (done < b.len) {
                ssize_t n = send(l->fd, b.data + done, b.len - done, MSG_NOSIGNAL);

                if (n >= 0) {
                        done += (size_t) n;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                        return log_fail(EXIT_CONNECT, -errno, "Cannot write to the control socket %s: %m", l->path);
                r = control_poll(l, POLLOUT, -EBADF, deadline);
                if (r < 0)
                        return r;
                if (r == 0)
                        return timed_out(l);
        }
        return 0;
}

/* The next message: 0 and *ret. -ECANCELED when sigfd fired first. Else
 * -errno. */
static int control_receive(ControlLink *l, int sigfd, uint64_t deadline, json_object **ret) {
        for (;;) {
                size_t room;
                ssize_t n;
                void *p;
                int r;

                r = varlink_reader_next(&l->in, ret);
                if (r > 0)
                        return 0;
                if (r < 0)
                        return log_fail(EXIT_CONNECT, 0, "The relay sent a %s on the control socket.",
                                        r == -EMSGSIZE ? "reply larger than we accept" : "malformed reply");

                r = control_poll(l, POLLIN, sigfd, deadline);
                if (r < 0)
                        return r;
                if (r == 0)
                        return timed_out(l);

                r = varlink_reader_space(&l->in, &p, &room);
                if (r < 0)
                        return log_fail(EXIT_CONNECT, 0, "The relay sent a reply larger than we accept.");
                n = recv(l->fd, p, room, 0);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0 && errno != ECONNRESET)
                        return log_fail(EXIT_CONNECT, -errno, "Cannot read from the control socket %s: %m", l->path);
                if (n <= 0)
                        return log_fail(EXIT_CONNECT, 0, "The relay closed the control connection.");
                varlink_reader_commit(&l->in, (size_t) n);
        }
}

static const char *parameter_string(json_object *parameters, const char *key) {
        json_object *v = NULL;

        if (!parameters || !json_object_object_get_ex(parameters, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* Say what an error reply means; -errno (exit-codes.h). */
static int control_error(const ControlLink *l, const char *verb, const VarlinkReply *reply) {
        const char *e = reply->error;
        char a[256], b[256];

        if (streq(e, CONTROL_INTERFACE ".PermissionDenied"))
                return permission_denied(l->path);
        if (streq(e, CONTROL_INTERFACE ".NoSuchUser"))
                return log_fail(EXIT_REFUSED, 0, "%s: no user %s is registered at the relay.", verb,
                                string_sanitize(parameter_string(reply->parameters, "user"), a, sizeof(a)));
        if (streq(e, CONTROL_INTERFACE ".ReloadFailed"))
                return log_fail(EXIT_REFUSED, 0, "%s: the relay kept its old configuration: %s", verb,
                                string_sanitize(parameter_string(reply->parameters, "reason"), a, sizeof(a)));
        if (streq(e, CONTROL_INTERFACE ".BacklogExceeded"))
                return log_fail(EXIT_CONNECT, 0, "%s: the relay disconnected us: its events came faster than "
                                "we read them.", verb);
        if (streq(e, CONTROL_INTERFACE ".Failed"))
                return log_fail(EXIT_FAIL, 0, "%s: the relay failed: %s", verb,
                                string_sanitize(parameter_string(reply->parameters, "reason"), a, sizeof(a)));
        if (streq(e, VARLINK_ERROR_METHOD_NOT_FOUND) || streq(e, VARLINK_ERROR_INTERFACE_NOT_FOUND))
                return log_fail(EXIT_FAIL, 0, "%s: the relay does not know this command (is it older than "
                                "scctl?).", verb);
        return log_fail(EXIT_FAIL, 0, "%s: the relay answered %s%s%s", verb, string_sanitize(e, a, sizeof(a)),
                        reply->parameters ? " " : "",
                        reply->parameters ? string_sanitize(json_object_to_json_string_ext(reply->parameters,
                                                                                     JSON_C_TO_STRING_PLAIN),
                                                      b, sizeof(b)) : "");
}

/* One call, one reply: 0 and *ret (the reply's parameters, an object),
 * or -errno, told. Takes parameters. */
static int control_call(const char *verb, const char *method, json_object *parameters, json_object **ret) {
        _cleanup_(control_link_done) ControlLink l = { .fd = -EBADF };
        _cleanup_(json_object_unrefp) json_object *msg = NULL;
        uint64_t deadline = control_deadline();
        VarlinkReply reply;
        int r;

        r = control_connect(&l);
        if (r < 0) {
                json_object_put(parameters);
                return r;
        }
        r = control_send(&l, method, parameters, false, deadline);
        if (r < 0)
                return r;
        r = control_receive(&l, -EBADF, deadline, &msg);
        if (r < 0)
                return r;
        if (varlink_reply_parse(msg, &reply) < 0)
                return log_fail(EXIT_CONNECT, 0, "The relay sent a malformed reply on the control socket.");
        if (reply.error)
                return control_error(&l, verb, &reply);
        *ret = reply.parameters ? json_object_get(reply.parameters) : json_object_new_object();
        if (!*ret)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        return 0;
}

/* ---- output -------------------------------------------------------------------- */

static const char *get_str(json_object *o, const char *key) {
        const char *s = parameter_string(o, key);

        return s ? s : "?";
}

static uint64_t get_u64(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return 0;
        return json_object_get_uint64(v);
}

static bool get_bool(json_object *o, const char *key) {
        json_object *v = NULL;

        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
               json_object_get_boolean(v);
}

static json_object *get_array(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
                return NULL;
        return v;
}

static const char *format_time(uint64_t unix_sec, char buf[static 32]) {
        time_t t = (time_t) unix_sec;
        struct tm tm;

        if (!localtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, 32, "%" PRIu64, unix_sec);
        return buf;
}

static const char *format_duration(uint64_t sec, char buf[static 32]) {
        if (sec >= 86400)
                snprintf(buf, 32, "%" PRIu64 "d %" PRIu64 "h", sec / 86400, sec % 86400 / 3600);
        else if (sec >= 3600)
                snprintf(buf, 32, "%" PRIu64 "h %" PRIu64 "m", sec / 3600, sec % 3600 / 60);
        else if (sec >= 60)
                snprintf(buf, 32, "%" PRIu64 "m %" PRIu64 "s", sec / 60, sec % 60);
        else
                snprintf(buf, 32, "%" PRIu64 "s", sec);
        return buf;
}

/* The JSON back end gets {"type": type, ...members of o}; the human one
 * the text. */
static int emit(const char *type, json_object *o, const char *text) {
        _cleanup_(json_object_unrefp) json_object *j = NULL;

        if (output != &output_json) {
                output->text(text);
                return 0;
        }
        j = json_new_object_with_string("type", type);
        if (!j)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        if (o) {
                json_object_object_foreach(o, key, value)
                        if (json_add(j, key, json_object_get(value)) < 0)
                                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        }
        output->object(j);
        return 0;
}

/* Human text is written to a memory stream, then handed over whole. */
typedef struct Text {
        FILE *f;
        char *s;
        size_t len;
} Text;

static int text_open(Text *t) {
        *t = (Text) {};
        t->f = open_memstream(&t->s, &t->len);
        return t->f ? 0 : log_fail(EXIT_FAIL, -ENOMEM, "%m");
}

static int text_close(Text *t) {
        if (!t->f)
                return 0;
        if (fclose(t->f) != 0) {
                t->f = NULL;
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        }
        t->f = NULL;
        return 0;
}

static void text_done(Text *t) {
        if (t->f)
                fclose(t->f);
        free(t->s);
        *t = (Text) {};
}

/* A string from the relay, on a terminal. */
static void text_safe(Text *t, const char *s) {
        output_safe_text(t->f, s, strlen(s), 0);
}

/* "Limits hit:" and each limit that refused something, with its value and
 * count; "none" when nothing was refused. */
static void text_limits(Text *t, json_object *limits) {
        size_t n = 0;

        fprintf(t->f, "%-18s", "Limits hit:");
        for (size_t i = 0; limits && i < json_object_array_length(limits); i++) {
                json_object *l = json_object_array_get_idx(limits, i);
                uint64_t hits = get_u64(l, "hits");

                if (hits == 0)
                        continue;
                fputs(n++ > 0 ? ", " : "", t->f);
                text_safe(t, get_str(l, "name"));
                if (json_object_object_get_ex(l, "value", NULL)) {
                        fputs(" (", t->f);
                        text_safe(t, get_str(l, "value"));
                        fputs(")", t->f);
                }
                fprintf(t->f, " %" PRIu64 "x", hits);
        }
        fputs(n > 0 ? "\n" : "none\n", t->f);
}

/* A node of several relays: its name, and the table of every node. */
static void text_nodes(Text *t, json_object *p) {
        json_object *nodes = get_array(p, "nodes");

        if (!json_object_object_get_ex(p, "node", NULL))
                return;
        fprintf(t->f, "%-18s", "Node:");
        text_safe(t, get_str(p, "node"));
        fprintf(t->f, "%s\n", get_bool(p, "database_connected") ? "" : " (no database connection)");
        if (!nodes || json_object_array_length(nodes) == 0)
                return;
        fprintf(t->f, "\n%-32s %-5s %-9s %-8s %s\n", "NODE", "ALIVE", "HEARTBEAT", "SESSIONS", "RECEIVING");
        for (size_t i = 0; i < json_object_array_length(nodes); i++) {
                json_object *n = json_object_array_get_idx(nodes, i);
                char age[32];

                text_safe(t, get_str(n, "name"));
                fprintf(t->f, "%*s %-5s %-9s %-8" PRIu64 " %" PRIu64 "\n",
                        (int) (32 - MIN(strlen(get_str(n, "name")), (size_t) 32)), "",
                        get_bool(n, "alive") ? "yes" : "no", format_duration(get_u64(n, "heartbeat_age_sec"), age),
                        get_u64(n, "sessions"), get_u64(n, "receiving"));
        }
}

/* ---- the verbs --------------------------------------------------------------- */

int verb_status(int argc, char *argv[]) {
        _cleanup_(json_object_unrefp) json_object *p = NULL;
        _cleanup_(text_done) Text t = {};
        json_object *listen;
        uint64_t commits;
        char a[32];
        int r;

        r = parse_no_arguments(argc, argv);
        if (r <= 0)
                return r;
        r = control_call(argv[0], CONTROL_INTERFACE ".Status", NULL, &p);
        if (r < 0)
                return r;

        r = text_open(&t);
        if (r < 0)
                return r;
        fprintf(t.f, "securechatd %s (protocol %" PRIu64 "), up %s\n", get_str(p, "version"), get_u64(p, "protocol"),
                format_duration(get_u64(p, "uptime_sec"), a));
        fprintf(t.f, "%-18s", "Listening:");
        listen = get_array(p, "listen");
        for (size_t i = 0; listen && i < json_object_array_length(listen); i++) {
                json_object *v = json_object_array_get_idx(listen, i);

                if (i > 0)
                        fputs(", ", t.f);
                text_safe(&t, json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "?");
        }
        fprintf(t.f, "%s\n", get_bool(p, "tls") ? " (TLS)" : " (no TLS)");
        fprintf(t.f, "%-18s%s\n", "Server key:", get_str(p, "server_fingerprint"));
        fprintf(t.f, "%-18s%" PRIu64 " (%" PRIu64 " receiving); %" PRIu64 " connections\n", "Sessions:",
                get_u64(p, "sessions"), get_u64(p, "receiving_sessions"), get_u64(p, "connections"));
        fprintf(t.f, "%-18s%" PRIu64 " online, %" PRIu64 " registered\n", "Users:", get_u64(p, "users_online"),
                get_u64(p, "users_registered"));
        fprintf(t.f, "%-18s%" PRIu64 "\n", "Queued messages:", get_u64(p, "queued_messages"));
        /* A relay older than the counts says nothing of them. */
        if (json_object_object_get_ex(p, "commits", NULL)) {
                commits = get_u64(p, "commits");
                fprintf(t.f, "%-18s%" PRIu64, "Commits:", commits);
                if (commits > 0)
                        fprintf(t.f, " (%.1f sends and acks each)",
                                (double) get_u64(p, "committed_requests") / (double) commits);
                fputc('\n', t.f);
        }
        fprintf(t.f, "%-18s%" PRIu64 "\n", "Monitors:", get_u64(p, "monitors"));
        text_limits(&t, get_array(p, "limits"));
        text_nodes(&t, p);
        r = text_close(&t);
        if (r < 0)
                return r;
        return emit("status", p, t.s);
}

/* The users receiving on the other nodes of several relays. */
static void text_remote(Text *t, json_object *remote) {
        size_t n = remote ? json_object_array_length(remote) : 0;

        if (n == 0)
                return;
        fprintf(t->f, "\nReceiving on other nodes:\n%-16s %-32s %s\n", "USER", "NODE", "FINGERPRINT");
        for (size_t i = 0; i < n; i++) {
                json_object *u = json_object_array_get_idx(remote, i);

                fprintf(t->f, "%-16s %-32s %s\n", get_str(u, "user"), get_str(u, "node"),
                        get_str(u, "fingerprint"));
        }
}

int verb_sessions(int argc, char *argv[]) {
        _cleanup_(json_object_unrefp) json_object *p = NULL;
        _cleanup_(text_done) Text t = {};
        json_object *list;
        size_t n;
        int r;

        r = parse_no_arguments(argc, argv);
        if (r <= 0)
                return r;
        r = control_call(argv[0], CONTROL_INTERFACE ".ListSessions", NULL, &p);
        if (r < 0)
                return r;

        list = get_array(p, "sessions");
        n = list ? json_object_array_length(list) : 0;
        r = text_open(&t);
        if (r < 0)
                return r;
        if (n == 0)
                fputs("No sessions.\n", t.f);
        else
                fprintf(t.f, "%-16s %-8s %-22s %-20s %-7s %-4s %s\n", "USER", "MODE", "PEER", "CONNECTED", "IDLE",
                        "TLS", "SESSION");
        for (size_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(list, i);
                char since[32], idle[32];

                fprintf(t.f, "%-16s %-8s %-22s %-20s %-7s %-4s %s\n", get_str(s, "user"),
                        get_bool(s, "receive") ? "receive" : "send", get_str(s, "peer"),
                        format_time(get_u64(s, "since"), since), format_duration(get_u64(s, "idle_sec"), idle),
                        get_bool(s, "tls") ? "yes" : "no", get_str(s, "id"));
        }
        text_remote(&t, get_array(p, "remote"));
        r = text_close(&t);
        if (r < 0)
                return r;
        return emit("sessions", p, t.s);
}

static int list_registered(const char *verb) {
        _cleanup_(json_object_unrefp) json_object *p = NULL;
        _cleanup_(text_done) Text t = {};
        json_object *list;
        size_t n;
        int r;

        r = control_call(verb, CONTROL_INTERFACE ".ListUsers", NULL, &p);
        if (r < 0)
                return r;

        list = get_array(p, "users");
        n = list ? json_object_array_length(list) : 0;
        r = text_open(&t);
        if (r < 0)
                return r;
        if (n == 0)
                fputs("No registered users.\n", t.f);
        else
                fprintf(t.f, "%-16s %-6s %-8s %-6s %-19s %s\n", "USER", "ONLINE", "SESSIONS", "QUEUED", "REGISTERED",
                        "FINGERPRINT");
        for (size_t i = 0; i < n; i++) {
                json_object *u = json_object_array_get_idx(list, i);
                char registered[32];

                fprintf(t.f, "%-16s %-6s %-8" PRIu64 " %-6" PRIu64 " %-19s %s\n", get_str(u, "user"),
                        get_bool(u, "online") ? "yes" : "no", get_u64(u, "sessions"), get_u64(u, "queued"),
                        format_time(get_u64(u, "registered"), registered), get_str(u, "fingerprint"));
        }
        r = text_close(&t);
        if (r < 0)
                return r;
        return emit("registry", p, t.s);
}

/* "--registered" or an abbreviation getopt would take for it. */
static bool is_registered_option(const char *arg) {
        size_t n = strlen(arg);

        return n > 2 && strncmp(arg, "--registered", n) == 0;
}

int verb_users_any(int argc, char *argv[]) {
        bool registered = false;
        int r;

        /* Only a look: the chat verb parses its own options. */
        for (int i = 1; i < argc && !streq(argv[i], "--"); i++)
                if (is_registered_option(argv[i]))
                        registered = true;
        if (!registered)
                return verb_users(argc, argv);

        r = parse_admin_options(argc, argv, &registered);
        if (r <= 0)
                return r;
        if (optind < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind]);
        return list_registered(argv[0]);
}

int verb_kick(int argc, char *argv[]) {
        _cleanup_(json_object_unrefp) json_object *p = NULL, *q = NULL;
        _cleanup_(text_done) Text t = {};
        const char *user = NULL;
        uint64_t n;
        int r;

        r = parse_user_argument(argc, argv, &user);
        if (r <= 0)
                return r;
        q = json_new_object_with_string("user", user);
        if (!q)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        r = control_call(argv[0], CONTROL_INTERFACE ".Kick", TAKE_PTR(q), &p);
        if (r < 0)
                return r;

        n = get_u64(p, "sessions_closed");
        if (json_add_string(p, "user", user) < 0)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        r = text_open(&t);
        if (r < 0)
                return r;
        fprintf(t.f, "Kicked %s: %" PRIu64 " session%s closed.\n", user, n, n == 1 ? "" : "s");
        r = text_close(&t);
        if (r < 0)
                return r;
        return emit("kicked", p, t.s);
}

int verb_reset_key(int argc, char *argv[]) {
        _cleanup_(json_object_unrefp) json_object *p = NULL, *q = NULL;
        _cleanup_(text_done) Text t = {};
        const char *user = NULL;
        int r;

        r = parse_user_argument(argc, argv, &user);
        if (r <= 0)
                return r;
        q = json_new_object_with_string("user", user);
        if (!q)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        r = control_call(argv[0], CONTROL_INTERFACE ".ResetKey", TAKE_PTR(q), &p);
        if (r < 0)
                return r;

        if (json_add_string(p, "user", user) < 0)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        r = text_open(&t);
        if (r < 0)
                return r;
        /* The code is for the user alone: it goes to standard output,
         * never to a log. */
        fprintf(t.f, "Removed the registered key of %s and dropped the %" PRIu64 " message%s queued for it.\n"
                "%s registers again only with this one-time code (valid for 7 days):\n"
                "    scctl init --code %s\n", user, get_u64(p, "messages_dropped"),
                get_u64(p, "messages_dropped") == 1 ? "" : "s", user, get_str(p, "code"));
        r = text_close(&t);
        if (r < 0)
                return r;
        return emit("key-reset", p, t.s);
}

int verb_reload(int argc, char *argv[]) {
        _cleanup_(json_object_unrefp) json_object *p = NULL;
        int r;

        r = parse_no_arguments(argc, argv);
        if (r <= 0)
                return r;
        r = control_call(argv[0], CONTROL_INTERFACE ".Reload", NULL, &p);
        if (r < 0)
                return r;
        return emit("reloaded", p, "The relay reloaded its configuration.\n");
}

/* One event, one line: "2025-01-01 12:00:00.123 handshake-ok: User bob logged in ..." */
static int print_event(json_object *event) {
        _cleanup_(text_done) Text t = {};
        uint64_t time_usec = get_u64(event, "time"), priority = get_u64(event, "priority");
        const char *color = NULL;
        char when[32];
        int r;

        if (output == &output_json)
                return emit("event", event, NULL);

        if (output_color())
                color = priority <= LOG_ERR ? "\033[1;31m" : priority <= LOG_WARNING ? "\033[1;33m" : NULL;
        r = text_open(&t);
        if (r < 0)
                return r;
        fprintf(t.f, "%s%s.%03u ", color ? color : "", format_time(time_usec / USEC_PER_SEC, when),
                (unsigned) (time_usec % USEC_PER_SEC / 1000));
        text_safe(&t, get_str(event, "name"));
        fputs(": ", t.f);
        text_safe(&t, get_str(event, "message"));
        fprintf(t.f, "%s\n", color ? "\033[0m" : "");
        r = text_close(&t);
        if (r < 0)
                return r;
        output->text(t.s);
        return 0;
}

int verb_monitor(int argc, char *argv[]) {
        _cleanup_(control_link_done) ControlLink l = { .fd = -EBADF };
        _cleanup_(closep) int sigfd = -EBADF;
        int r;

        r = parse_no_arguments(argc, argv);
        if (r <= 0)
                return r;

        sigfd = signal_fd_open();
        if (sigfd < 0)
                return sigfd;
        r = control_connect(&l);
        if (r < 0)
                return r;
        r = control_send(&l, CONTROL_INTERFACE ".Monitor", NULL, true, control_deadline());
        if (r < 0)
                return r;

        for (;;) {
                _cleanup_(json_object_unrefp) json_object *msg = NULL;
                VarlinkReply reply;
                json_object *event = NULL;

                r = control_receive(&l, sigfd, WAIT_FOREVER, &msg);
                if (r == -ECANCELED)
                        return 0;         /* interrupted: the usual end */
                if (r < 0)
                        return r;
                if (varlink_reply_parse(msg, &reply) < 0)
                        return log_fail(EXIT_CONNECT, 0, "The relay sent a malformed reply on the control socket.");
                if (reply.error)
                        return control_error(&l, argv[0], &reply);
                if (reply.parameters && json_object_object_get_ex(reply.parameters, "event", &event) &&
                    json_object_is_type(event, json_type_object)) {
                        r = print_event(event);
                        if (r < 0)
                                return r;
                        if (output_broken())
                                return 0;         /* main() says it, and fails */
                }
                if (!reply.continues)
                        return 0;         /* the relay ended the stream */
        }
}
