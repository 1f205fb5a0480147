/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "json-util.h"
#include "listener.h"
#include "log.h"
#include "macro.h"
#include "stream.h"
#include "varlink-server.h"
#include "varlink.h"

#define VARLINK_SERVER_READS_PER_WAKEUP 4
#define VARLINK_SERVER_INTERFACES_MAX 4
/* How long a connection may take to read its last reply (an error)
 * before it is closed anyway. */
#define VARLINK_SERVER_LINGER_USEC (5 * 1000000ull)
/* While this much output waits, a caller's next call is not read. */
#define VARLINK_SERVER_OUTPUT_PAUSE (64u * 1024)
/* Larger output buffers are given back once they drain. */
#define VARLINK_SERVER_OUTPUT_KEEP (64u * 1024)

typedef struct VarlinkInterface {
        const char *name;
        const char *description;
        const VarlinkMethod *methods;
        size_t n_methods;
} VarlinkInterface;

struct VarlinkConnection {
        VarlinkServer *server;
        VarlinkConnection *next, *prev;

        Stream *stream;
        struct ucred cred;
        char label[48];                 /* "uid=N,pid=N", for the log */
        const char *deny_error;         /* every call hears this */
        bool connected;                 /* the connect hook took it: disconnect is owed */

        VarlinkReader in;
        bool oneway;                    /* the call being handled wants no reply */
        bool replied;                   /* ...and was answered */
        bool subscribed;                /* varlink_server_notify() replies here */
        bool eof;                       /* the caller will send nothing more */
        bool dead;                      /* closed; freed after this loop iteration */
};

struct VarlinkServer {
        sd_event *event;
        VarlinkServerLimits limits;
        const VarlinkServerHooks *hooks;
        void *userdata;

        Listener *listener;
        sd_event_source *gc;
        char *bound_path;               /* bound by us (not systemd): unlinked at exit */
        dev_t bound_dev;
        ino_t bound_ino;

        VarlinkInterface interfaces[VARLINK_SERVER_INTERFACES_MAX];
        size_t n_interfaces;

        VarlinkConnection *connections;
        unsigned n_subscribers;
};

/* ---- connections -------------------------------------------------------------- */

const struct ucred *varlink_connection_credentials(const VarlinkConnection *c) {
        return &c->cred;
}

const char *varlink_connection_label(const VarlinkConnection *c) {
        return c->label;
}

int varlink_connection_fd(const VarlinkConnection *c) {
        return transport_fd(stream_transport(c->stream));
}

bool varlink_connection_denied(const VarlinkConnection *c) {
        return c->deny_error != NULL;
}

unsigned varlink_server_n_subscribers(const VarlinkServer *s) {
        return s->n_subscribers;
}

unsigned varlink_server_connections_of_uid(const VarlinkServer *s, uid_t uid) {
        unsigned n = 0;

        for (VarlinkConnection *c = s->connections; c; c = c->next)
                if (!c->dead && c->cred.uid == uid)
                        n++;
        return n;
}

const char *varlink_server_path(const VarlinkServer *s) {
        return s->bound_path;
}

static void connection_unsubscribe(VarlinkConnection *c) {
        if (c->subscribed)
                c->server->n_subscribers--;
        c->subscribed = false;
}

/* Stop talking to the caller now. The object stays (marked dead) until
 * the end of this loop iteration, so that code walking the list or
 * holding the connection never loses it. */
static void connection_close(VarlinkConnection *c) {
        VarlinkServer *s = c->server;

        if (c->dead)
                return;
        c->dead = true;
        stream_abort(c->stream);
        varlink_reader_done(&c->in);
        connection_unsubscribe(c);
        if (c->connected && s->hooks->disconnect)
                s->hooks->disconnect(s, c, s->userdata);
        c->connected = false;
        log_debug("%s connection %s closed", s->limits.name, c->label);
        (void) sd_event_source_set_enabled(s->gc, SD_EVENT_ONESHOT);
}

static VarlinkConnection *connection_free(VarlinkConnection *c) {
        if (!c)
                return NULL;
        connection_close(c);
        stream_free(c->stream);
        free(c);
        return NULL;
}

/* Say it, then hang up. */
static void connection_finish(VarlinkConnection *c) {
        stream_close(c->stream, VARLINK_SERVER_LINGER_USEC);
}

static bool connection_may_read(const VarlinkConnection *c) {
        /* A subscriber reads only to see the caller hang up. */
        return stream_is_open(c->stream) && !c->eof &&
                (c->subscribed || stream_pending(c->stream) < VARLINK_SERVER_OUTPUT_PAUSE);
}

static void connection_update_io(VarlinkConnection *c) {
        if (!c->dead)
                stream_set_reading(c->stream, connection_may_read(c));
}

/* Queue one message (taken), unless the call was oneway. */
static void connection_send(VarlinkConnection *c, json_object *o) {
        const char *text;
        size_t len;
        int r = -ENOMEM;

        c->replied = true;
        /* Once closing, the last word was said. */
        if (c->dead || c->oneway || !stream_is_open(c->stream)) {
                json_object_put(o);
                return;
        }
        /* json-c writes a NUL inside a string as \u0000, so the only NUL
         * on the wire is the terminator, which goes out with the text. */
        text = o ? json_plain_text(o, &len) : NULL;
        if (text)
                r = stream_append(c->stream, text, len + 1);
        json_object_put(o);
        if (r < 0) {
                log_warning_errno(r, "%s connection %s: cannot queue a reply: %m", c->server->limits.name,
                                  c->label);
                connection_close(c);
        }
}

void varlink_reply(VarlinkConnection *c, json_object *parameters) {
        connection_send(c, varlink_new_reply(parameters, false));
}

void varlink_error(VarlinkConnection *c, const char *error, json_object *parameters) {
        connection_send(c, varlink_new_error(error, parameters));
}

void varlink_error_str(VarlinkConnection *c, const char *error, const char *key, const char *value) {
        varlink_error(c, error, json_new_object_with_string(key, value));
}

void varlink_error_invalid_parameter(VarlinkConnection *c, const char *name) {
        varlink_error_str(c, VARLINK_ERROR_INVALID_PARAMETER, "parameter", name);
}

int varlink_dispatch(VarlinkConnection *c, json_object *parameters, const JsonDispatch table[], void *userdata) {
        _cleanup_(json_object_unrefp) json_object *none = NULL;
        const char *reason = NULL;
        int r;

        if (!parameters) {
                parameters = none = json_object_new_object();
                if (!none)
                        return -ENOMEM;
        }
        r = json_dispatch(parameters, table, 0, userdata, &reason);
        if (r < 0 && r != -ENOMEM)
                varlink_error_invalid_parameter(c, reason ?: "parameters");
        return r;
}

void varlink_subscribe(VarlinkConnection *c, VarlinkMethodFlags flags) {
        if (!(flags & VARLINK_METHOD_MORE) || (flags & VARLINK_METHOD_ONEWAY)) {
                varlink_error(c, VARLINK_ERROR_EXPECTED_MORE, NULL);
                return;
        }
        if (!c->subscribed)
                c->server->n_subscribers++;
        c->subscribed = true;
}

void varlink_connection_deny(VarlinkConnection *c, const char *error, uint64_t timeout_usec) {
        c->deny_error = error;
        stream_set_deadline(c->stream, timeout_usec);
}

/* ---- org.varlink.service -------------------------------------------------------- */

static const char service_interface_description[] =
        "# The Varlink service interface.\n"
        "interface org.varlink.service\n"
        "\n"
        "method GetInfo() -> (\n"
        "  vendor: string,\n"
        "  product: string,\n"
        "  version: string,\n"
        "  url: string,\n"
        "  interfaces: []string\n"
        ")\n"
        "\n"
        "method GetInterfaceDescription(interface: string) -> (description: string)\n"
        "\n"
        "error InterfaceNotFound (interface: string)\n"
        "error MethodNotFound (method: string)\n"
        "error MethodNotImplemented (method: string)\n"
        "error InvalidParameter (parameter: string)\n"
        "error PermissionDenied ()\n"
        "error ExpectedMore ()\n";

static const JsonDispatch no_parameters[] = { {} };
static const JsonDispatch interface_parameter[] = {
        { "interface", json_type_string, json_dispatch_string, 0, JSON_MANDATORY },
        {}
};

static int method_get_info(VarlinkConnection *c, json_object *parameters, VarlinkMethodFlags flags,
                           void *userdata) {
        VarlinkServer *s = c->server;
        _cleanup_(json_object_unrefp) json_object *p = json_object_new_object();
        json_object *list = json_object_new_array();

        if (!p || json_add(p, "interfaces", list) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_interfaces; i++)
                if (json_array_add(list, json_object_new_string(s->interfaces[i].name)) < 0)
                        return -ENOMEM;
        if (json_add_string(p, "vendor", "SecureChat") < 0 ||
            json_add_string(p, "product", "securechatd") < 0 ||
            json_add_string(p, "version", PACKAGE_VERSION) < 0 ||
            json_add_string(p, "url", "man:securechat-protocol(7)") < 0)
                return -ENOMEM;
        varlink_reply(c, TAKE_PTR(p));
        return 0;
}

static int method_get_interface_description(VarlinkConnection *c, json_object *parameters,
                                            VarlinkMethodFlags flags, void *userdata) {
        VarlinkServer *s = c->server;
        const char *name = NULL;
        int r;

        r = varlink_dispatch(c, parameters, interface_parameter, &name);
        if (r < 0)
                return r;
        for (size_t i = 0; i < s->n_interfaces; i++)
                if (strcmp(name, s->interfaces[i].name) == 0) {
                        json_object *p = json_new_object_with_string("description",
                                                                     s->interfaces[i].description);

                        if (!p)
                                return -ENOMEM;
                        varlink_reply(c, p);
                        return 0;
                }
        varlink_error_str(c, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", name);
        return 0;
}


static const VarlinkMethod service_methods[] = {
        { VARLINK_SERVICE_INTERFACE ".GetInfo", method_get_info, no_parameters },
        { VARLINK_SERVICE_INTERFACE ".GetInterfaceDescription", method_get_interface_description,
          interface_parameter },
};

int varlink_server_add_interface(VarlinkServer *s, const char *name, const char *description,
                                 const VarlinkMethod *methods, size_t n_methods) {
        if (s->n_interfaces >= ELEMENTSOF(s->interfaces))
                return -E2BIG;
        s->interfaces[s->n_interfaces++] = (VarlinkInterface) {
                .name = name,
                .description = description,
                .methods = methods,
                .n_methods = n_methods,
        };
        return 0;
}

/* ---- calls -------------------------------------------------------------------------- */

static const VarlinkInterface *interface_find(const VarlinkServer *s, const char *name, size_t len) {
        for (size_t i = 0; i < s->n_interfaces; i++)
                if (strlen(s->interfaces[i].name) == len && strncmp(s->interfaces[i].name, name, len) == 0)
                        return &s->interfaces[i];
        return NULL;
}

static const VarlinkMethod *method_find(const VarlinkInterface *i, const char *name) {
        for (size_t j = 0; i && j < i->n_methods; j++)
                if (strcmp(i->methods[j].name, name) == 0)
                        return &i->methods[j];
        return NULL;
}

static void connection_dispatch(VarlinkConnection *c, json_object *msg) {
        VarlinkServer *s = c->server;
        const VarlinkInterface *interface;
        const VarlinkMethod *method;
        const char *unknown;
        VarlinkMethodFlags flags;
        VarlinkCall call;
        size_t interface_len;
        int r;

        r = varlink_call_parse(msg, &call);
        if (r < 0) {
                log_debug("%s connection %s sent something that is not a call; closing", s->limits.name,
                          c->label);
                connection_close(c);
                return;
        }
        c->oneway = call.oneway;

        if (c->deny_error) {
                /* One answer, whatever was asked, then the door closes. */
                c->oneway = false;
                varlink_error(c, c->deny_error, NULL);
                connection_finish(c);
                return;
        }

        (void) varlink_method_split(call.method, &interface_len);
        interface = interface_find(s, call.method, interface_len);
        method = method_find(interface, call.method);
        if (!method) {
                if (interface)
                        varlink_error_str(c, VARLINK_ERROR_METHOD_NOT_FOUND, "method", call.method);
                else {
                        char name[256];

                        snprintf(name, sizeof(name), "%.*s", (int) interface_len, call.method);
                        varlink_error_str(c, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", name);
                }
                return;
        }
        unknown = json_dispatch_find_unknown(call.parameters, method->parameters);
        if (unknown) {
                varlink_error_invalid_parameter(c, unknown);
                return;
        }

        flags = (call.oneway ? VARLINK_METHOD_ONEWAY : 0) | (call.more ? VARLINK_METHOD_MORE : 0);
        c->replied = false;
        r = method->handler(c, call.parameters, flags, s->userdata);
        if (r < 0 && !c->replied) {
                char reason[128];

                errno = -r;
                snprintf(reason, sizeof(reason), "%m");
                log_error_errno(r, "%s call %s from %s failed: %m", s->limits.name, call.method, c->label);
                varlink_error_str(c, s->limits.failure_error, "reason", reason);
        }
}

/* Handle the calls that arrived, as long as the caller reads its replies. */
static void connection_process(VarlinkConnection *c) {
        while (!c->dead && stream_is_open(c->stream) && !c->subscribed &&
               stream_pending(c->stream) < VARLINK_SERVER_OUTPUT_PAUSE) {
                _cleanup_(json_object_unrefp) json_object *msg = NULL;
                int r;

                r = varlink_reader_next(&c->in, &msg);
                if (r == 0) {
                        if (c->eof)
                                connection_finish(c);   /* answered everything */
                        break;
                }
                if (r < 0) {
                        log_debug("%s connection %s: %s; closing", c->server->limits.name, c->label,
                                  r == -EMSGSIZE ? "message too large" :
                                  r == -EBADMSG ? "malformed message" : "out of memory");
                        connection_close(c);
                        return;
                }
                connection_dispatch(c, msg);
        }
        /* A subscriber only listens: a caller that sends more is confused. */
        if (!c->dead && c->subscribed && varlink_reader_pending(&c->in) > 0) {
                log_debug("%s connection %s sent data after subscribing; closing", c->server->limits.name,
                          c->label);
                connection_close(c);
        }
}

/* Write what we can without blocking. Calls already read wait in c->in
 * while the caller does not read its replies; no EPOLLIN comes for bytes
 * taken from the kernel, so they are answered here once there is room
 * (connection_process() stops again at the pause). */
static void connection_flush(VarlinkConnection *c) {
        for (;;) {
                bool was_paused = stream_pending(c->stream) >= VARLINK_SERVER_OUTPUT_PAUSE;
                int r;

                r = stream_flush(c->stream);
                if (r < 0) {
                        log_debug("%s connection %s: write failed: %s", c->server->limits.name, c->label,
                                  strerror(-r));
                        connection_close(c);
                }
                if (c->dead || !stream_is_open(c->stream))
                        return;

                if (!was_paused || c->subscribed || stream_pending(c->stream) >= VARLINK_SERVER_OUTPUT_PAUSE)
                        break;
                connection_process(c);
                if (c->dead)
                        return;
                if (stream_pending(c->stream) < VARLINK_SERVER_OUTPUT_PAUSE)
                        break;          /* no complete call left */
        }
        connection_update_io(c);
}

static void connection_read(VarlinkConnection *c) {
        for (unsigned i = 0; !c->dead && connection_may_read(c); i++) {
                size_t size;
                ssize_t n;
                void *p;
                int r;

                if (i == VARLINK_SERVER_READS_PER_WAKEUP) {
                        /* The socket is edge-triggered and may hold more:
                         * come back after the others had their turn. */
                        stream_resume_later(c->stream);
                        return;
                }
                r = varlink_reader_space(&c->in, &p, &size);
                if (r < 0) {
                        log_debug("%s connection %s: %s; closing", c->server->limits.name, c->label,
                                  r == -EMSGSIZE ? "message too large" : "out of memory");
                        connection_close(c);
                        return;
                }
                n = stream_read(c->stream, p, size);
                if (n == -EAGAIN)
                        return;
                if (n < 0) {
                        log_debug("%s connection %s: read failed: %s", c->server->limits.name, c->label,
                                  strerror((int) -n));
                        connection_close(c);
                        return;
                }
                if (n == 0) {
                        if (c->subscribed) {
                                connection_close(c);    /* the usual way a subscriber ends */
                                return;
                        }
                        c->eof = true;
                } else
                        varlink_reader_commit(&c->in, (size_t) n);
                connection_process(c);
        }
}

static void connection_on_io(Stream *stream, uint32_t revents, void *userdata) {
        VarlinkConnection *c = userdata;

        if (revents & EPOLLOUT)
                connection_flush(c);
        if (!c->dead && (revents & EPOLLIN))
                connection_read(c);
        else if (!c->dead && (revents & (EPOLLHUP | EPOLLERR))) {
                /* Gone, and nothing left to read. */
                connection_close(c);
                return;
        }
        if (!c->dead)
                connection_flush(c);    /* the replies just made, at once */
}

static void connection_on_resume(Stream *stream, void *userdata) {
        VarlinkConnection *c = userdata;

        connection_read(c);
        if (!c->dead)
                connection_flush(c);
}

static void connection_on_timeout(Stream *stream, void *userdata) {
        VarlinkConnection *c = userdata;

        log_debug("%s connection %s timed out", c->server->limits.name, c->label);
        connection_close(c);
}

static void connection_on_stream_dead(Stream *stream, void *userdata) {
        connection_close(userdata);
}

static const StreamCallbacks connection_stream_callbacks = {
        .io = connection_on_io,
        .resume = connection_on_resume,
        .timeout = connection_on_timeout,
        .dead = connection_on_stream_dead,
};

static void connection_link(VarlinkConnection *c) {
        VarlinkServer *s = c->server;

        c->next = s->connections;
        if (s->connections)
                s->connections->prev = c;
        s->connections = c;
}

static void connection_unlink(VarlinkConnection *c) {
        VarlinkServer *s = c->server;

        if (c->prev)
                c->prev->next = c->next;
        else
                s->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
}

static int on_gc(sd_event_source *es, void *userdata) {
        VarlinkServer *s = userdata;

        for (VarlinkConnection *c = s->connections, *next; c; c = next) {
                next = c->next;
                if (!c->dead)
                        continue;
                connection_unlink(c);
                connection_free(c);
        }
        return 0;
}

/* ---- accepting ---------------------------------------------------------------------- */

static void on_accept(Listener *l, int fd, void *token, void *userdata) {
        VarlinkServer *s = userdata;
        _cleanup_(closep) int owned_fd = fd;
        _cleanup_(transport_freep) Transport *t = NULL;
        VarlinkConnection *c;
        socklen_t len = sizeof(struct ucred);
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                log_warning("Out of memory accepting a %s connection", s->limits.name);
                return;
        }
        c->server = s;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0 || len != sizeof(c->cred)) {
                log_warning("Cannot read the credentials of a %s caller: %m", s->limits.name);
                free(c);
                return;
        }
        snprintf(c->label, sizeof(c->label), "uid=%u,pid=%d", (unsigned) c->cred.uid, (int) c->cred.pid);
        varlink_reader_init(&c->in, s->limits.message_max);

        r = transport_new_server(fd, NULL, &t);
        if (r >= 0) {
                owned_fd = -EBADF;
                r = stream_new(s->event, t, s->limits.output_max, VARLINK_SERVER_OUTPUT_KEEP,
                               &connection_stream_callbacks, c, &c->stream);
        }
        if (r < 0) {
                log_warning_errno(r, "Failed to set up a %s connection: %m", s->limits.name);
                varlink_reader_done(&c->in);
                free(c);
                return;
        }
        t = NULL;               /* the stream's now */

        /* Asked before the connection is listed: it does not count
         * against its own uid. */
        if (s->hooks->connect) {
                r = s->hooks->connect(s, c, s->userdata);
                if (r < 0) {
                        stream_free(c->stream);
                        varlink_reader_done(&c->in);
                        free(c);
                        return;
                }
        }
        connection_link(c);
        c->connected = true;
        connection_update_io(c);
        log_debug("%s connection %s accepted%s", s->limits.name, c->label, c->deny_error ? " (denied)" : "");
}

static void on_accept_paused(Listener *l, int error, void *userdata) {
        VarlinkServer *s = userdata;

        if (s->hooks->accept_paused)
                s->hooks->accept_paused(s, error, s->userdata);
}

static const ListenerCallbacks server_listener_callbacks = {
        .accept = on_accept,
        .paused = on_accept_paused,
};

/* ---- subscribers ---------------------------------------------------------------------- */

/* A subscriber that does not read is cut off with an error rather than
 * allowed to make us hold its notifications. */
static void subscriber_cut_off(VarlinkConnection *c) {
        VarlinkServer *s = c->server;
        StreamOutput *out = stream_output(c->stream);
        size_t pending = stream_output_pending(out);
        const uint8_t *nul = pending > 0 ? memchr(stream_output_head(out), 0, pending) : NULL;
        json_object *p = json_object_new_object();

        log_warning("%s connection %s does not read its %s events (%zu bytes waiting); disconnecting it",
                    s->limits.name, c->label, s->limits.subscription, pending);
        connection_unsubscribe(c);
        /* Drop the backlog but the message being written, so that the
         * error comes next and the memory goes now. */
        stream_output_truncate(out, nul ? (size_t) (nul - stream_output_head(out)) + 1 : 0);
        if (p && json_add_uint64(p, "limit", s->limits.backlog_max) < 0)
                p = (json_object_put(p), NULL);
        varlink_error(c, s->limits.backlog_error, p);
        connection_finish(c);
}

void varlink_server_notify(VarlinkServer *s, json_object *parameters) {
        _cleanup_(json_object_unrefp) json_object *msg = NULL;
        const char *text;
        size_t len;

        if (s->n_subscribers == 0) {
                json_object_put(parameters);
                return;
        }
        msg = varlink_new_reply(parameters, true);
        if (!msg)
                return;
        /* Formatted once, whatever the number of subscribers. */
        text = json_plain_text(msg, &len);
        if (!text)
                return;

        for (VarlinkConnection *c = s->connections; c; c = c->next) {
                int r;

                if (c->dead || !c->subscribed)
                        continue;
                if (stream_pending(c->stream) + len + 1 > s->limits.backlog_max) {
                        subscriber_cut_off(c);
                        continue;
                }
                r = stream_append(c->stream, text, len + 1);
                if (r < 0) {
                        log_warning_errno(r, "%s connection %s: cannot queue a notification: %m",
                                          s->limits.name, c->label);
                        connection_close(c);
                }
        }
}

/* ---- the listening socket --------------------------------------------------------------- */

/* Create the socket's directory (mode 0755; not its parents) if missing. */
static int make_parent_directory(const char *path) {
        _cleanup_(freep) char *dir = strdup(path);
        char *slash;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        if (mkdir(dir, 0755) < 0)
                return errno == EEXIST ? 0 : -errno;
        /* The daemon's umask is 077; others must reach the socket. */
        if (chmod(dir, 0755) < 0)
                return -errno;
        return 0;
}

/* 1 when path is a socket nobody listens on, 0 when someone does. */
static int socket_is_stale(const struct sockaddr_un *sa, socklen_t len) {
        _cleanup_(closep) int fd = -EBADF;
        struct stat st;

        if (lstat(sa->sun_path, &st) < 0)
                return errno == ENOENT ? 1 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;         /* never remove anything but a socket */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) sa, len) == 0)
                return 0;
        if (errno == ECONNREFUSED)
                return 1;
        if (errno == EAGAIN || errno == EINPROGRESS)
                return 0;               /* a full backlog: someone is there */
        return -errno;
}

int varlink_server_listen_fd(VarlinkServer *s, int fd) {
        if (s->listener)
                return -EBUSY;
        return listener_new(s->event, fd, &server_listener_callbacks, s, &s->listener);
}

int varlink_server_listen_path(VarlinkServer *s, const char *path, gid_t gid) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(freep) char *copy = NULL;
        size_t n = strlen(path);
        socklen_t len;
        struct stat st;
        int r;

        if (s->listener)
                return -EBUSY;
        if (n == 0 || n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, n);
        len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
        copy = strdup(path);
        if (!copy)
                return -ENOMEM;

        r = make_parent_directory(path);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, len) < 0) {
                if (errno != EADDRINUSE)
                        return -errno;
                /* Left behind by a relay that did not exit cleanly? */
                r = socket_is_stale(&sa, len);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -EADDRINUSE;
                log_info("Removing stale %s socket %s", s->limits.name, path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
                if (bind(fd, (struct sockaddr *) &sa, len) < 0)
                        return -errno;
        }

        /* Bound 0700 under our umask: open it up to the group, as the
         * socket unit does (SocketMode=0660). */
        if (gid != (gid_t) -1 && chown(path, (uid_t) -1, gid) < 0)
                log_debug("Cannot give %s to gid %u: %m", path, (unsigned) gid);
        if (chmod(path, 0660) < 0 || listen(fd, SOMAXCONN) < 0 || lstat(path, &st) < 0) {
                r = -errno;
                (void) unlink(path);
                return r;
        }
        r = varlink_server_listen_fd(s, fd);
        if (r < 0) {
                (void) unlink(path);
                return r;
        }
        fd = -EBADF;            /* the listener's now */
        s->bound_path = TAKE_PTR(copy);
        s->bound_dev = st.st_dev;
        s->bound_ino = st.st_ino;
        return 0;
}

/* ---- the server ------------------------------------------------------------------------- */

int varlink_server_new(sd_event *e, const VarlinkServerLimits *limits, const VarlinkServerHooks *hooks,
                       void *userdata, VarlinkServer **ret) {
        VarlinkServer *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->limits = *limits;
        s->hooks = hooks;
        s->userdata = userdata;
        r = varlink_server_add_interface(s, VARLINK_SERVICE_INTERFACE, service_interface_description,
                                         service_methods, ELEMENTSOF(service_methods));
        if (r >= 0)
                r = sd_event_add_defer(e, &s->gc, on_gc, s);
        if (r < 0) {
                varlink_server_free(s);
                return r;
        }
        (void) sd_event_source_set_enabled(s->gc, SD_EVENT_OFF);
        *ret = s;
        return 0;
}

VarlinkServer *varlink_server_free(VarlinkServer *s) {
        struct stat st;

        if (!s)
                return NULL;
        while (s->connections) {
                VarlinkConnection *c = s->connections;

                connection_unlink(c);
                connection_free(c);
        }
        listener_free(s->listener);
        sd_event_source_disable_unref(s->gc);
        /* Only our own socket: not one that replaced it meanwhile. */
        if (s->bound_path && lstat(s->bound_path, &st) == 0 && st.st_dev == s->bound_dev &&
            st.st_ino == s->bound_ino)
                (void) unlink(s->bound_path);
        free(s->bound_path);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}
