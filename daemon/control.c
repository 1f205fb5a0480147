/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "events.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "protocol.h"
#include "sockets.h"
#include "util.h"
#include "varlink.h"

#define CONTROL_ACCEPTS_PER_WAKEUP 16
#define CONTROL_READS_PER_WAKEUP 4
/* Out of file descriptors: how long accepting pauses. */
#define CONTROL_ACCEPT_RETRY_USEC USEC_PER_SEC
/* How long a refused caller has to make the call that hears "no". */
#define CONTROL_DENIED_TIMEOUT_USEC (5 * USEC_PER_SEC)
/* How long a connection may take to read its last reply (an error)
 * before it is closed anyway. */
#define CONTROL_LINGER_USEC (5 * USEC_PER_SEC)
/* While this much output waits, a caller's next call is not read. */
#define CONTROL_OUTPUT_PAUSE (64u * 1024)
/* Larger output buffers are given back once they drain. */
#define CONTROL_OUTPUT_KEEP (64u * 1024)

typedef struct Control Control;
typedef struct Connection Connection;

struct Connection {
        Control *control;
        Connection *next, *prev;

        int fd;
        sd_event_source *io, *timer;
        struct ucred cred;
        char label[48];                 /* "uid=N,pid=N", for the log */
        bool admin;                     /* may call methods */

        VarlinkReader in;
        Buf out;
        size_t out_head;                /* bytes of out already written */

        bool oneway;                    /* the call being handled wants no reply */
        bool monitor;                   /* a Monitor call streams events here */
        bool eof;                       /* the caller will send nothing more */
        bool closing;                   /* close once the output is written */
        bool dead;                      /* closed; freed after this loop iteration */
};

struct Control {
        Manager *manager;
        int fd;
        sd_event_source *listen, *accept_retry, *gc;

        char *bound_path;               /* bound by us (not systemd): unlinked at exit */
        dev_t bound_dev;
        ino_t bound_ino;

        bool have_admin_gid;
        gid_t admin_gid;

        Connection *connections;
        unsigned n_admin, n_denied, n_monitors;
};

/* What GetInterfaceDescription returns, in the Varlink interface
 * definition language. Keep it in step with the method table below and
 * with securechat-protocol(7). */
const char control_interface_description[] =
        "# Administration of the SecureChat relay, securechatd(8).\n"
        "# See securechat-protocol(7), section CONTROL SOCKET.\n"
        "interface io.securechat.Control\n"
        "\n"
        "type Session (\n"
        "  id: string,\n"
        "  user: string,\n"
        "  peer: string,\n"
        "  fingerprint: string,\n"
        "  receive: bool,\n"
        "  tls: bool,\n"
        "  since: int,\n"
        "  idle_sec: int\n"
        ")\n"
        "\n"
        "type User (\n"
        "  user: string,\n"
        "  fingerprint: string,\n"
        "  registered: int,\n"
        "  online: bool,\n"
        "  sessions: int,\n"
        "  queued: int\n"
        ")\n"
        "\n"
        "# One audit event; time is in microseconds since the epoch, fields holds\n"
        "# the event's SC_* fields by their lower-case names.\n"
        "type Event (\n"
        "  name: string,\n"
        "  message_id: string,\n"
        "  priority: int,\n"
        "  time: int,\n"
        "  message: string,\n"
        "  fields: object\n"
        ")\n"
        "\n"
        "# A limit: its name (as in a limit-hit event's SC_REASON), its value as\n"
        "# securechatd.conf spells it (absent when it has no key) and how often it\n"
        "# refused something since the relay started.\n"
        "type Limit (\n"
        "  name: string,\n"
        "  value: ?string,\n"
        "  hits: int\n"
        ")\n"
        "\n"
        "# The relay's state. users_online counts users with a receiving session.\n"
        "method Status() -> (\n"
        "  version: string,\n"
        "  protocol: int,\n"
        "  uptime_sec: int,\n"
        "  connections: int,\n"
        "  sessions: int,\n"
        "  receiving_sessions: int,\n"
        "  users_online: int,\n"
        "  users_registered: int,\n"
        "  queued_messages: int,\n"
        "  monitors: int,\n"
        "  server_fingerprint: string,\n"
        "  listen: []string,\n"
        "  tls: bool,\n"
        "  limits: []Limit\n"
        ")\n"
        "\n"
        "# Authenticated sessions.\n"
        "method ListSessions() -> (sessions: []Session)\n"
        "\n"
        "# Registered users.\n"
        "method ListUsers() -> (users: []User)\n"
        "\n"
        "# Every audit event from now on, one reply each; needs \"more\".\n"
        "method Monitor() -> (event: Event)\n"
        "\n"
        "# Close every session of a registered user.\n"
        "method Kick(user: string) -> (sessions_closed: int)\n"
        "\n"
        "# Forget a user's key, close their sessions and drop the messages\n"
        "# queued for them (sealed to that key). The name registers again\n"
        "# only with code, a one-time code valid for 7 days (auth \"code\").\n"
        "method ResetKey(user: string) -> (code: string, messages_dropped: int)\n"
        "\n"
        "# Re-read the configuration; on error the old one stays.\n"
        "method Reload() -> ()\n"
        "\n"
        "# The caller is not root, not the relay's user and not in admin-group.\n"
        "error PermissionDenied ()\n"
        "error NoSuchUser (user: string)\n"
        "error ReloadFailed (reason: string)\n"
        "# A Monitor caller did not read its events fast enough.\n"
        "error BacklogExceeded (limit: int)\n"
        "# Something went wrong inside the relay (a database error).\n"
        "error Failed (reason: string)\n";

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

static const struct {
        const char *name;
        const char *description;
} interfaces[] = {
        { VARLINK_SERVICE_INTERFACE, service_interface_description },
        { CONTROL_INTERFACE, control_interface_description },
};

static sd_event_source *source_disable_unref(sd_event_source *es) {
        if (es) {
                (void) sd_event_source_set_enabled(es, SD_EVENT_OFF);
                sd_event_source_unref(es);
        }
        return NULL;
}

/* ---- JSON building --------------------------------------------------------- */

/* Add v (taken) to o. -ENOMEM when v is NULL (an allocation failed). */
static int add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_str(json_object *o, const char *key, const char *value) {
        return add(o, key, json_object_new_string(value));
}

static int add_u64(json_object *o, const char *key, uint64_t value) {
        return add(o, key, json_object_new_uint64(value));
}

static int add_bool(json_object *o, const char *key, bool value) {
        return add(o, key, json_object_new_boolean(value));
}

static int array_add(json_object *a, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* {key: value}, or NULL. */
static json_object *object_with_str(const char *key, const char *value) {
        json_object *o = json_object_new_object();

        if (o && add_str(o, key, value) < 0)
                o = (json_object_put(o), NULL);
        return o;
}

/* ---- connections ------------------------------------------------------------- */

static size_t connection_pending(const Connection *c) {
        return c->out.len - c->out_head;
}

static void control_schedule_gc(Control *ctl) {
        if (ctl->gc)
                (void) sd_event_source_set_enabled(ctl->gc, SD_EVENT_ONESHOT);
}

/* Stop talking to the caller now. The object stays (marked dead) until
 * the end of this loop iteration, so that code walking the list or
 * holding the connection never loses it. */
static void connection_close(Connection *c) {
        Control *ctl = c->control;

        if (c->dead)
                return;
        c->dead = true;
        c->io = source_disable_unref(c->io);
        c->timer = source_disable_unref(c->timer);
        c->fd = safe_close(c->fd);
        varlink_reader_done(&c->in);
        buf_done(&c->out);
        c->out_head = 0;

        if (c->admin)
                ctl->n_admin--;
        else
                ctl->n_denied--;
        if (c->monitor)
                ctl->n_monitors--;
        c->monitor = false;
        log_debug("Control connection %s closed", c->label);
        control_schedule_gc(ctl);
}

static Connection *connection_free(Connection *c) {
        if (!c)
                return NULL;
        connection_close(c);
        free(c);
        return NULL;
}

static int on_connection_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Connection *c = userdata;

        log_debug("Control connection %s timed out", c->label);
        connection_close(c);
        return 0;
}

static void connection_set_timer(Connection *c, uint64_t usec_from_now) {
        uint64_t when = manager_now(c->control->manager) + usec_from_now;

        if (!c->timer) {
                /* Without its deadline a connection may not stay. */
                if (sd_event_add_time(c->control->manager->event, &c->timer, CLOCK_MONOTONIC, when, 0,
                                      on_connection_timer, c) < 0)
                        connection_close(c);
                return;
        }
        (void) sd_event_source_set_time(c->timer, when);
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

static bool connection_may_read(const Connection *c) {
        /* A monitor reads only to see the caller hang up. */
        return !c->closing && !c->eof && (c->monitor || connection_pending(c) < CONTROL_OUTPUT_PAUSE);
}

static void connection_update_io(Connection *c) {
        uint32_t events = 0;

        if (c->dead)
                return;
        if (connection_pending(c) > 0)
                events |= EPOLLOUT;
        if (connection_may_read(c))
                events |= EPOLLIN;
        (void) sd_event_source_set_io_events(c->io, events);
}

static void connection_process(Connection *c);

/* Write what we can without blocking. Calls already read wait in c->in
 * while the caller does not read its replies; no EPOLLIN comes for bytes
 * taken from the kernel, so they are answered here once there is room
 * (connection_process() stops again at the pause). */
static void connection_flush(Connection *c) {
        for (;;) {
                bool was_paused = connection_pending(c) >= CONTROL_OUTPUT_PAUSE;

                while (!c->dead && connection_pending(c) > 0) {
                        ssize_t n = send(c->fd, c->out.data + c->out_head, connection_pending(c),
                                         MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                                        log_debug("Control connection %s: write failed: %m", c->label);
                                        connection_close(c);
                                        return;
                                }
                                break;
                        }
                        c->out_head += (size_t) n;
                }
                if (c->dead)
                        return;

                if (connection_pending(c) == 0) {
                        if (c->out.cap > CONTROL_OUTPUT_KEEP)
                                buf_done(&c->out);
                        c->out.len = c->out_head = 0;
                        if (c->closing) {
                                connection_close(c);
                                return;
                        }
                } else if (c->out_head >= c->out.len / 2) {
                        /* Keep the unsent tail at the front; a monitor's buffer
                         * must not creep forward forever. */
                        memmove(c->out.data, c->out.data + c->out_head, connection_pending(c));
                        c->out.len -= c->out_head;
                        c->out_head = 0;
                }

                if (!was_paused || c->monitor || connection_pending(c) >= CONTROL_OUTPUT_PAUSE)
                        break;
                connection_process(c);
                if (c->dead)
                        return;
                if (connection_pending(c) < CONTROL_OUTPUT_PAUSE)
                        break;          /* no complete call left */
        }
        connection_update_io(c);
}

/* Queue one message (taken), unless the call was oneway. */
static void connection_send(Connection *c, json_object *o) {
        int r;

        if (c->dead || c->oneway) {
                json_object_put(o);
                return;
        }
        r = varlink_append(&c->out, o);
        json_object_put(o);
        if (r < 0) {
                log_warning_errno(r, "Control connection %s: cannot queue a reply: %m", c->label);
                connection_close(c);
        }
}

static void reply(Connection *c, json_object *parameters) {
        connection_send(c, varlink_new_reply(parameters, false));
}

static void reply_error(Connection *c, const char *error, json_object *parameters) {
        connection_send(c, varlink_new_error(error, parameters));
}

static void reply_error_str(Connection *c, const char *error, const char *key, const char *value) {
        reply_error(c, error, object_with_str(key, value));
}

/* Say it, then hang up. */
static void connection_finish(Connection *c) {
        c->closing = true;
        connection_set_timer(c, CONTROL_LINGER_USEC);
}

/* ---- authorization ----------------------------------------------------------- */

static void control_resolve_admin_group(Control *ctl) {
        const char *name = ctl->manager->config->admin_group;
        _cleanup_(freep) char *buf = NULL;
        struct group grp, *result = NULL;
        size_t size = 1024;
        int r;

        ctl->have_admin_gid = false;
        for (;;) {
                char *p = realloc(buf, size);

                if (!p) {
                        log_warning("Out of memory looking up group %s", name);
                        return;
                }
                buf = p;
                r = getgrnam_r(name, &grp, buf, size, &result);
                if (r != ERANGE || size >= 1024 * 1024)
                        break;
                size *= 2;
        }
        if (r != 0 && r != ENOENT && r != ESRCH) {
                errno = r;
                log_warning("Cannot look up group %s (admin-group): %m; only %s may use the control socket",
                            name, geteuid() == 0 ? "root" : "root and the relay's own user");
                return;
        }
        if (!result) {
                log_notice("Group %s (admin-group) does not exist; only %s may use the control socket",
                           name, geteuid() == 0 ? "root" : "root and the relay's own user");
                return;
        }
        ctl->have_admin_gid = true;
        ctl->admin_gid = grp.gr_gid;
}

/* Is the caller on fd (still) a member of gid? Its supplementary groups
 * as they were at connect(), from SO_PEERGROUPS. */
static int peer_in_group(int fd, gid_t gid) {
        _cleanup_(freep) gid_t *groups = NULL;
        socklen_t len = 64 * sizeof(gid_t);

        for (unsigned attempt = 0; attempt < 2; attempt++) {
                gid_t *p;

                /* The kernel says how much it needs when it is more. */
                if (len == 0 || len > NGROUPS_MAX * sizeof(gid_t))
                        return len == 0 ? 0 : -E2BIG;
                p = realloc(groups, len);
                if (!p)
                        return -ENOMEM;
                groups = p;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
                        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                                if (groups[i] == gid)
                                        return 1;
                        return 0;
                }
                if (errno != ERANGE)
                        return -errno;
        }
        return -ERANGE;
}

static bool control_authorize(Control *ctl, int fd, const struct ucred *cred) {
        int r;

        /* The relay's own uid: whoever runs the relay may manage it (tests
         * and hand-run relays; under systemd it is a DynamicUser= uid that
         * nothing else runs as). */
        if (cred->uid == 0 || cred->uid == geteuid())
                return true;
        if (!ctl->have_admin_gid)
                return false;
        if (cred->gid == ctl->admin_gid)
                return true;
        r = peer_in_group(fd, ctl->admin_gid);
        if (r < 0)
                log_warning_errno(r, "Cannot read the groups of control caller uid %u: %m", (unsigned) cred->uid);
        return r > 0;
}

/* ---- the methods ------------------------------------------------------------- */

typedef struct Method {
        const char *name;
        int (*run)(Connection *c, const VarlinkCall *call);
        /* The parameters it accepts; any other is InvalidParameter. */
        const char *const *parameters;
} Method;

static const char *const no_parameters[] = { NULL };
static const char *const user_parameter[] = { "user", NULL };
static const char *const interface_parameter[] = { "interface", NULL };

/* A user-name parameter: the name, or NULL after replying InvalidParameter. */
static const char *parameter_user(Connection *c, const VarlinkCall *call) {
        json_object *v = NULL;
        const char *user;

        if (call->parameters)
                (void) json_object_object_get_ex(call->parameters, "user", &v);
        user = v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
        if (!user || strlen(user) != (size_t) json_object_get_string_len(v) || !username_valid(user)) {
                reply_error_str(c, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "user");
                return NULL;
        }
        return user;
}

static int method_get_info(Connection *c, const VarlinkCall *call) {
        _cleanup_(json_object_unrefp) json_object *p = json_object_new_object();
        json_object *list = json_object_new_array();

        if (!p || add(p, "interfaces", list) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(interfaces); i++)
                if (array_add(list, json_object_new_string(interfaces[i].name)) < 0)
                        return -ENOMEM;
        if (add_str(p, "vendor", "SecureChat") < 0 ||
            add_str(p, "product", "securechatd") < 0 ||
            add_str(p, "version", PACKAGE_VERSION) < 0 ||
            add_str(p, "url", "man:securechat-protocol(7)") < 0)
                return -ENOMEM;
        reply(c, TAKE_PTR(p));
        return 0;
}

static int method_get_interface_description(Connection *c, const VarlinkCall *call) {
        json_object *v = NULL;
        const char *name;

        if (call->parameters)
                (void) json_object_object_get_ex(call->parameters, "interface", &v);
        if (!v || !json_object_is_type(v, json_type_string)) {
                reply_error_str(c, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "interface");
                return 0;
        }
        name = json_object_get_string(v);
        for (size_t i = 0; i < ELEMENTSOF(interfaces); i++)
                if (strcmp(name, interfaces[i].name) == 0) {
                        json_object *p = object_with_str("description", interfaces[i].description);

                        if (!p)
                                return -ENOMEM;
                        reply(c, p);
                        return 0;
                }
        reply_error_str(c, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", name);
        return 0;
}

/* Every limit with its value and count of refusals. */
static json_object *limits_to_json(Manager *m) {
        _cleanup_(json_object_unrefp) json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        for (Limit l = 0; l < _LIMIT_MAX; l++) {
                json_object *o = json_object_new_object();
                const char *key = limit_config_key(l);
                char value[64];

                if (array_add(a, o) < 0 ||
                    add_str(o, "name", limit_name(l)) < 0 ||
                    add_u64(o, "hits", m->limit_hits[l]) < 0)
                        return NULL;
                if (key && config_format_key(m->config, key, value, sizeof(value)) >= 0 &&
                    add_str(o, "value", value) < 0)
                        return NULL;
        }
        return TAKE_PTR(a);
}

static int method_status(Connection *c, const VarlinkCall *call) {
        Manager *m = c->control->manager;
        _cleanup_(json_object_unrefp) json_object *p = json_object_new_object();
        json_object *listen = json_object_new_array();
        ManagerStats st;
        int r;

        if (!listen)
                return -ENOMEM;
        r = manager_get_stats(m, &st);
        if (r < 0) {
                json_object_put(listen);
                return r;
        }
        for (size_t i = 0; i < m->n_listen; i++) {
                char address[SOCKET_ADDRESS_MAX];

                if (array_add(listen, json_object_new_string(socket_local_address(m->listen_fds[i], address))) < 0) {
                        json_object_put(listen);
                        return -ENOMEM;
                }
        }

        /* A new receiving session replaces a user's old one, so receiving
         * sessions and users online are the same number. */
        if (!p ||
            add_str(p, "version", PACKAGE_VERSION) < 0 ||
            add_u64(p, "protocol", PROTOCOL_VERSION) < 0 ||
            add_u64(p, "uptime_sec", st.uptime_usec / USEC_PER_SEC) < 0 ||
            add_u64(p, "connections", st.connections) < 0 ||
            add_u64(p, "sessions", st.sessions) < 0 ||
            add_u64(p, "receiving_sessions", st.receiving) < 0 ||
            add_u64(p, "users_online", st.receiving) < 0 ||
            add_u64(p, "users_registered", st.users_registered) < 0 ||
            add_u64(p, "queued_messages", st.queued) < 0 ||
            add_u64(p, "monitors", c->control->n_monitors) < 0 ||
            add_str(p, "server_fingerprint", m->server_key->fingerprint) < 0 ||
            add(p, "listen", TAKE_PTR(listen)) < 0 ||
            add_bool(p, "tls", m->config->tls) < 0 ||
            add(p, "limits", limits_to_json(m)) < 0) {
                json_object_put(listen);
                return -ENOMEM;
        }
        reply(c, TAKE_PTR(p));
        return 0;
}

typedef struct ListContext {
        Manager *manager;
        json_object *array;
        uint64_t now_realtime;
} ListContext;

static int list_session(void *userdata, const SessionInfo *i) {
        ListContext *l = userdata;
        json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        if (add_str(o, "id", i->id) < 0 ||
            add_str(o, "user", i->user) < 0 ||
            add_str(o, "peer", i->peer) < 0 ||
            add_str(o, "fingerprint", i->fingerprint) < 0 ||
            add_bool(o, "receive", i->receive) < 0 ||
            add_bool(o, "tls", i->tls) < 0 ||
            add_u64(o, "since", i->connected_realtime_usec / USEC_PER_SEC) < 0 ||
            add_u64(o, "idle_sec", i->idle_usec / USEC_PER_SEC) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return array_add(l->array, o);
}

static int method_list_sessions(Connection *c, const VarlinkCall *call) {
        _cleanup_(json_object_unrefp) json_object *p = json_object_new_object();
        ListContext l = { .manager = c->control->manager, .array = json_object_new_array() };
        int r;

        if (!p || add(p, "sessions", l.array) < 0)
                return -ENOMEM;
        r = manager_foreach_session(l.manager, list_session, &l);
        if (r < 0)
                return r;
        reply(c, TAKE_PTR(p));
        return 0;
}

static int list_user(void *userdata, const UserInfo *i) {
        ListContext *l = userdata;
        json_object *o;
        uint64_t queued = 0;
        int r;

        r = store_queue_count(l->manager->store, i->package->user, &queued);
        if (r < 0)
                return r;
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (add_str(o, "user", i->package->user) < 0 ||
            add_str(o, "fingerprint", i->fingerprint) < 0 ||
            add_u64(o, "registered", i->package->registered) < 0 ||
            add_bool(o, "online", i->online) < 0 ||
            add_u64(o, "sessions", i->n_sessions) < 0 ||
            add_u64(o, "queued", queued) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return array_add(l->array, o);
}

static int method_list_users(Connection *c, const VarlinkCall *call) {
        _cleanup_(json_object_unrefp) json_object *p = json_object_new_object();
        ListContext l = { .manager = c->control->manager, .array = json_object_new_array() };
        int r;

        if (!p || add(p, "users", l.array) < 0)
                return -ENOMEM;
        r = manager_foreach_user(l.manager, list_user, &l);
        if (r < 0)
                return r;
        reply(c, TAKE_PTR(p));
        return 0;
}

static int method_monitor(Connection *c, const VarlinkCall *call) {
        if (!call->more || call->oneway) {
                reply_error(c, VARLINK_ERROR_EXPECTED_MORE, NULL);
                return 0;
        }
        /* Replies follow as events happen (control_on_event()). */
        c->monitor = true;
        c->control->n_monitors++;
        return 0;
}

static int method_kick(Connection *c, const VarlinkCall *call) {
        Manager *m = c->control->manager;
        const char *user = parameter_user(c, call);
        json_object *p;
        char by[64];
        int r, n;

        if (!user)
                return 0;
        r = store_user_exists(m->store, user);
        if (r < 0)
                return r;
        if (r == 0) {
                reply_error_str(c, CONTROL_INTERFACE ".NoSuchUser", "user", user);
                return 0;
        }

        snprintf(by, sizeof(by), "uid %u", (unsigned) c->cred.uid);
        n = manager_kick_user(m, user, by);
        p = json_object_new_object();
        if (!p || add_u64(p, "sessions_closed", (uint64_t) MAX(n, 0)) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        reply(c, p);
        return 0;
}

static int method_reset_key(Connection *c, const VarlinkCall *call) {
        const char *user = parameter_user(c, call);
        char by[64], code[RESET_CODE_LEN];
        uint64_t dropped = 0;
        json_object *p;
        int r;

        if (!user)
                return 0;
        snprintf(by, sizeof(by), "uid %u", (unsigned) c->cred.uid);
        r = manager_reset_key(c->control->manager, user, by, code, &dropped);
        if (r == -ENOENT) {
                reply_error_str(c, CONTROL_INTERFACE ".NoSuchUser", "user", user);
                return 0;
        }
        if (r < 0)
                return r;
        p = json_object_new_object();
        r = p ? json_object_object_add(p, "code", json_object_new_string(code)) : -ENOMEM;
        secure_wipe(code, sizeof(code));
        if (r < 0 || add_u64(p, "messages_dropped", dropped) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        reply(c, p);
        return 0;
}

static int method_reload(Connection *c, const VarlinkCall *call) {
        _cleanup_(freep) char *error = NULL;
        int r;

        /* The admin group is looked up again when the reload event
         * arrives (control_on_event()), as after SIGHUP. */
        r = manager_reload(c->control->manager, &error);
        if (r < 0) {
                errno = -r;
                if (!error && asprintf(&error, "%m") < 0)
                        return -ENOMEM;
                reply_error_str(c, CONTROL_INTERFACE ".ReloadFailed", "reason", error);
                return 0;
        }
        reply(c, NULL);
        return 0;
}

/* Read-only: anyone authorized, no audit record. */
static const Method read_only_methods[] = {
        { VARLINK_SERVICE_INTERFACE ".GetInfo", method_get_info, no_parameters },
        { VARLINK_SERVICE_INTERFACE ".GetInterfaceDescription", method_get_interface_description,
          interface_parameter },
        { CONTROL_INTERFACE ".Status", method_status, no_parameters },
        { CONTROL_INTERFACE ".ListSessions", method_list_sessions, no_parameters },
        { CONTROL_INTERFACE ".ListUsers", method_list_users, no_parameters },
        { CONTROL_INTERFACE ".Monitor", method_monitor, no_parameters },
};

/* These change the relay's state: every call is audited (control-command)
 * before it runs. */
static const Method state_changing_methods[] = {
        { CONTROL_INTERFACE ".Kick", method_kick, user_parameter },
        { CONTROL_INTERFACE ".ResetKey", method_reset_key, user_parameter },
        { CONTROL_INTERFACE ".Reload", method_reload, no_parameters },
};

static const Method *method_find(const Method *table, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(table[i].name, name) == 0)
                        return &table[i];
        return NULL;
}

static bool interface_known(const char *name, size_t len) {
        for (size_t i = 0; i < ELEMENTSOF(interfaces); i++)
                if (strlen(interfaces[i].name) == len && strncmp(interfaces[i].name, name, len) == 0)
                        return true;
        return false;
}

/* The first parameter the method does not know, or NULL. */
static const char *parameter_unknown(const Method *method, json_object *parameters) {
        if (!parameters)
                return NULL;
        json_object_object_foreach(parameters, key, value) {
                bool known = false;

                (void) value;
                for (const char *const *p = method->parameters; *p; p++)
                        if (strcmp(*p, key) == 0)
                                known = true;
                if (!known)
                        return key;
        }
        return NULL;
}

static void control_audit(Connection *c, const Method *method, const VarlinkCall *call) {
        const char *short_name = strrchr(method->name, '.') + 1;
        const char *user = NULL;
        json_object *v;

        /* Only a well-formed name reaches the log. */
        if (call->parameters && json_object_object_get_ex(call->parameters, "user", &v) && v &&
            json_object_is_type(v, json_type_string) && username_valid(json_object_get_string(v)))
                user = json_object_get_string(v);
        log_event(EVENT_CONTROL_COMMAND, &(LogFields) { .user = user, .peer = c->label, .reason = short_name },
                  "Control command %s%s%s from uid %u (pid %d)", short_name, user ? " " : "", user ? user : "",
                  (unsigned) c->cred.uid, (int) c->cred.pid);
}

static void connection_dispatch(Connection *c, json_object *msg) {
        const Method *method;
        VarlinkCall call;
        const char *unknown;
        size_t interface_len;
        bool changes_state = false;
        int r;

        r = varlink_call_parse(msg, &call);
        if (r < 0) {
                log_debug("Control connection %s sent something that is not a call; closing", c->label);
                connection_close(c);
                return;
        }
        c->oneway = call.oneway;

        if (!c->admin) {
                /* One answer, whatever was asked, then the door closes. */
                c->oneway = false;
                reply_error(c, CONTROL_INTERFACE ".PermissionDenied", NULL);
                connection_finish(c);
                return;
        }

        method = method_find(read_only_methods, ELEMENTSOF(read_only_methods), call.method);
        if (!method) {
                method = method_find(state_changing_methods, ELEMENTSOF(state_changing_methods), call.method);
                changes_state = method != NULL;
        }
        if (!method) {
                (void) varlink_method_split(call.method, &interface_len);
                if (interface_known(call.method, interface_len))
                        reply_error_str(c, VARLINK_ERROR_METHOD_NOT_FOUND, "method", call.method);
                else {
                        char interface[256];

                        snprintf(interface, sizeof(interface), "%.*s", (int) interface_len, call.method);
                        reply_error_str(c, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", interface);
                }
                return;
        }
        unknown = parameter_unknown(method, call.parameters);
        if (unknown) {
                reply_error_str(c, VARLINK_ERROR_INVALID_PARAMETER, "parameter", unknown);
                return;
        }

        if (changes_state)
                control_audit(c, method, &call);
        r = method->run(c, &call);
        if (r < 0) {
                char reason[128];

                errno = -r;
                snprintf(reason, sizeof(reason), "%m");
                log_error_errno(r, "Control call %s from %s failed: %m", call.method, c->label);
                reply_error_str(c, CONTROL_INTERFACE ".Failed", "reason", reason);
        }
}

/* Handle the calls that arrived, as long as the caller reads its replies. */
static void connection_process(Connection *c) {
        while (!c->dead && !c->closing && !c->monitor && connection_pending(c) < CONTROL_OUTPUT_PAUSE) {
                _cleanup_(json_object_unrefp) json_object *msg = NULL;
                int r;

                r = varlink_reader_next(&c->in, &msg);
                if (r == 0) {
                        if (c->eof)
                                connection_finish(c);   /* answered everything */
                        break;
                }
                if (r < 0) {
                        log_debug("Control connection %s: %s; closing", c->label,
                                  r == -EMSGSIZE ? "message too large" :
                                  r == -EBADMSG ? "malformed message" : "out of memory");
                        connection_close(c);
                        return;
                }
                connection_dispatch(c, msg);
        }
        /* A monitor only streams: a caller that sends more is confused. */
        if (!c->dead && c->monitor && varlink_reader_pending(&c->in) > 0) {
                log_debug("Control connection %s sent data after Monitor; closing", c->label);
                connection_close(c);
        }
        if (!c->dead && c->closing && connection_pending(c) == 0)
                connection_close(c);
}

static void connection_read(Connection *c) {
        for (unsigned i = 0; i < CONTROL_READS_PER_WAKEUP && !c->dead && connection_may_read(c); i++) {
                size_t size;
                ssize_t n;
                void *p;
                int r;

                r = varlink_reader_space(&c->in, &p, &size);
                if (r < 0) {
                        log_debug("Control connection %s: %s; closing", c->label,
                                  r == -EMSGSIZE ? "message too large" : "out of memory");
                        connection_close(c);
                        return;
                }
                n = recv(c->fd, p, size, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK) {
                                log_debug("Control connection %s: read failed: %m", c->label);
                                connection_close(c);
                        }
                        return;
                }
                if (n == 0) {
                        if (c->monitor) {
                                connection_close(c);    /* the usual way a monitor ends */
                                return;
                        }
                        c->eof = true;
                } else
                        varlink_reader_commit(&c->in, (size_t) n);
                connection_process(c);
        }
}

static int on_connection_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Connection *c = userdata;

        if (revents & EPOLLOUT)
                connection_flush(c);
        if (!c->dead && (revents & EPOLLIN))
                connection_read(c);
        else if (!c->dead && (revents & (EPOLLHUP | EPOLLERR))) {
                /* Gone, and nothing left to read. */
                connection_close(c);
                return 0;
        }
        if (!c->dead)
                connection_flush(c);    /* the replies just made, at once */
        return 0;
}

static int connection_new(Control *ctl, int fd, const struct ucred *cred, bool admin) {
        Connection *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        *c = (Connection) {
                .control = ctl,
                .fd = fd,
                .cred = *cred,
                .admin = admin,
        };
        snprintf(c->label, sizeof(c->label), "uid=%u,pid=%d", (unsigned) cred->uid, (int) cred->pid);
        varlink_reader_init(&c->in, CONTROL_MESSAGE_MAX);
        if (admin)
                ctl->n_admin++;
        else
                ctl->n_denied++;

        c->next = ctl->connections;
        if (ctl->connections)
                ctl->connections->prev = c;
        ctl->connections = c;

        r = sd_event_add_io(ctl->manager->event, &c->io, fd, EPOLLIN, on_connection_io, c);
        if (r < 0) {
                connection_close(c);
                return r;
        }
        if (!admin)
                connection_set_timer(c, CONTROL_DENIED_TIMEOUT_USEC);
        log_debug("Control connection %s accepted%s", c->label, admin ? "" : " (not authorized)");
        return 0;
}

static int on_gc(sd_event_source *es, void *userdata) {
        Control *ctl = userdata;

        for (Connection *c = ctl->connections, *next; c; c = next) {
                next = c->next;
                if (!c->dead)
                        continue;
                if (c->prev)
                        c->prev->next = c->next;
                else
                        ctl->connections = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                connection_free(c);
        }
        return 0;
}

/* ---- accepting --------------------------------------------------------------- */

static unsigned connections_of_uid(Control *ctl, uid_t uid) {
        unsigned n = 0;

        for (Connection *c = ctl->connections; c; c = c->next)
                if (!c->dead && c->cred.uid == uid)
                        n++;
        return n;
}

static int on_accept_retry(sd_event_source *es, uint64_t usec, void *userdata) {
        Control *ctl = userdata;

        (void) sd_event_source_set_enabled(ctl->listen, SD_EVENT_ON);
        return 0;
}

/* Out of file descriptors: stop accepting for a while rather than spin on
 * a backlog we cannot take from. */
static void control_pause_accepting(Control *ctl, int error) {
        uint64_t when = manager_now(ctl->manager) + CONTROL_ACCEPT_RETRY_USEC;

        errno = error;
        manager_limit_hit(ctl->manager, LIMIT_FILE_DESCRIPTORS, NULL,
                          "Cannot accept control connections: %m; pausing for a second");
        (void) sd_event_source_set_enabled(ctl->listen, SD_EVENT_OFF);
        if (!ctl->accept_retry) {
                if (sd_event_add_time(ctl->manager->event, &ctl->accept_retry, CLOCK_MONOTONIC, when, 0,
                                      on_accept_retry, ctl) < 0)
                        (void) sd_event_source_set_enabled(ctl->listen, SD_EVENT_ON);
                return;
        }
        (void) sd_event_source_set_time(ctl->accept_retry, when);
        (void) sd_event_source_set_enabled(ctl->accept_retry, SD_EVENT_ONESHOT);
}

static void control_accept_one(Control *ctl, int fd) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        char label[48];
        bool admin;
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred)) {
                log_warning("Cannot read the credentials of a control caller: %m");
                safe_close(fd);
                return;
        }
        snprintf(label, sizeof(label), "uid=%u,pid=%d", (unsigned) cred.uid, (int) cred.pid);

        admin = control_authorize(ctl, fd, &cred);
        if (!admin)
                log_event(EVENT_CONTROL_DENIED, &(LogFields) { .peer = label },
                          "Control socket: uid %u (pid %d) is not root and not in group %s; refused",
                          (unsigned) cred.uid, (int) cred.pid, ctl->manager->config->admin_group);

        if (admin ? ctl->n_admin >= CONTROL_CONNECTIONS_MAX : ctl->n_denied >= CONTROL_DENIED_MAX) {
                manager_limit_hit(ctl->manager, LIMIT_CONTROL_CONNECTIONS, &(LogFields) { .peer = label },
                                  "Refusing control connection from uid %u: too many connections",
                                  (unsigned) cred.uid);
                safe_close(fd);
                return;
        }
        if (connections_of_uid(ctl, cred.uid) >= CONTROL_CONNECTIONS_PER_UID_MAX) {
                manager_limit_hit(ctl->manager, LIMIT_CONTROL_CONNECTIONS_PER_UID, &(LogFields) { .peer = label },
                                  "Refusing control connection from uid %u: too many connections from that uid",
                                  (unsigned) cred.uid);
                safe_close(fd);
                return;
        }

        r = connection_new(ctl, fd, &cred, admin);
        if (r < 0)
                log_warning_errno(r, "Failed to set up a control connection: %m");
}

static int on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Control *ctl = userdata;

        for (unsigned i = 0; i < CONTROL_ACCEPTS_PER_WAKEUP; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                                control_pause_accepting(ctl, errno);
                        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                                 errno != ECONNABORTED && errno != EPROTO)
                                log_warning("accept() on the control socket failed: %m");
                        return 0;
                }
                control_accept_one(ctl, cfd);
        }
        return 0;
}

/* ---- monitor ----------------------------------------------------------------- */

static json_object *event_to_json(EventKind kind, const LogFields *f, const char *message) {
        const EventInfo *info = event_info(kind);
        _cleanup_(json_object_unrefp) json_object *e = json_object_new_object();
        json_object *fields = json_object_new_object();
        struct timespec ts = {};

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        if (!info || !e || !fields ||
            add_str(e, "name", info->name) < 0 ||
            add_str(e, "message_id", info->message_id) < 0 ||
            add_u64(e, "priority", (uint64_t) info->priority) < 0 ||
            add_u64(e, "time", (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000) < 0 ||
            add_str(e, "message", message) < 0 ||
            add(e, "fields", json_object_get(fields)) < 0) {
                json_object_put(fields);
                return NULL;
        }
        json_object_put(fields);        /* e holds it */
        if (!f)
                return TAKE_PTR(e);

#define FIELD_STR(name, v)                                                      \
        do {                                                                    \
                if ((v) && add_str(fields, name, v) < 0)                        \
                        return NULL;                                            \
        } while (0)
#define FIELD_U64(name, cond, v)                                                \
        do {                                                                    \
                if ((cond) && add_u64(fields, name, v) < 0)                     \
                        return NULL;                                            \
        } while (0)
        FIELD_STR("user", f->user);
        FIELD_STR("recipient", f->recipient);
        FIELD_STR("peer", f->peer);
        FIELD_STR("session", f->session);
        FIELD_STR("fingerprint", f->fingerprint);
        FIELD_STR("msg_id", f->msg_id);
        FIELD_U64("seq", f->has_seq, f->seq);
        FIELD_U64("size", f->has_size, f->size);
        FIELD_U64("duration", f->has_duration, (f->duration_usec + USEC_PER_SEC / 2) / USEC_PER_SEC);
        FIELD_STR("address", f->address);
        FIELD_STR("reason", f->reason);
#undef FIELD_STR
#undef FIELD_U64
        return TAKE_PTR(e);
}

/* A subscriber that does not read is cut off with an error rather than
 * allowed to make us hold its events. */
static void monitor_cut_off(Connection *c) {
        json_object *p = json_object_new_object();
        uint8_t *nul = NULL;

        if (connection_pending(c) > 0)
                nul = memchr(c->out.data + c->out_head, 0, connection_pending(c));
        log_warning("Control connection %s does not read its Monitor events (%zu bytes waiting); "
                    "disconnecting it", c->label, connection_pending(c));
        c->monitor = false;
        c->control->n_monitors--;
        /* Drop the backlog but the event being written, so that the error
         * comes next and the memory goes now. */
        if (nul)
                c->out.len = (size_t) (nul - c->out.data) + 1;
        if (p && add_u64(p, "limit", CONTROL_MONITOR_BACKLOG_MAX) < 0)
                p = (json_object_put(p), NULL);
        reply_error(c, CONTROL_INTERFACE ".BacklogExceeded", p);
        connection_finish(c);
        connection_update_io(c);
}

static void control_on_event(Control *ctl, EventKind kind, const LogFields *fields, const char *message) {
        _cleanup_(json_object_unrefp) json_object *msg = NULL;
        json_object *p, *event;
        const char *s;
        size_t len;

        if (kind == EVENT_RELOAD)
                control_resolve_admin_group(ctl);
        if (ctl->n_monitors == 0)
                return;

        event = event_to_json(kind, fields, message);
        p = json_object_new_object();
        if (!event || !p) {
                json_object_put(event);
                json_object_put(p);
                return;
        }
        if (add(p, "event", event) < 0) {       /* add() dropped event */
                json_object_put(p);
                return;
        }
        msg = varlink_new_reply(p, true);
        if (!msg)
                return;
        /* Formatted once, whatever the number of subscribers. */
        s = json_object_to_json_string_length(msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!s)
                return;

        for (Connection *c = ctl->connections; c; c = c->next) {
                if (c->dead || !c->monitor)
                        continue;
                if (connection_pending(c) + len + 1 > CONTROL_MONITOR_BACKLOG_MAX) {
                        monitor_cut_off(c);
                        continue;
                }
                buf_put(&c->out, s, len);
                buf_put(&c->out, "", 1);
                if (c->out.error < 0) {
                        connection_close(c);
                        continue;
                }
                connection_update_io(c);
        }
}

/* ---- the listening socket ---------------------------------------------------- */

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

static int control_bind(Control *ctl, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -EBADF;
        size_t n = strlen(path);
        socklen_t len;
        struct stat st;
        int r;

        if (n == 0 || n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, n);
        len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);

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
                log_info("Removing stale control socket %s", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
                if (bind(fd, (struct sockaddr *) &sa, len) < 0)
                        return -errno;
        }

        /* Bound 0700 under our umask: open it up to the admin group, as
         * the socket unit does (SocketMode=0660). */
        if (ctl->have_admin_gid && chown(path, (uid_t) -1, ctl->admin_gid) < 0)
                log_debug("Cannot give %s to group %s: %m", path, ctl->manager->config->admin_group);
        if (chmod(path, 0660) < 0 || listen(fd, SOMAXCONN) < 0 || lstat(path, &st) < 0) {
                r = -errno;
                (void) unlink(path);
                return r;
        }

        ctl->bound_path = strdup(path);
        if (!ctl->bound_path) {
                (void) unlink(path);
                return -ENOMEM;
        }
        ctl->bound_dev = st.st_dev;
        ctl->bound_ino = st.st_ino;
        ctl->fd = TAKE_FD(fd);
        return 0;
}

/* ---- start and stop ---------------------------------------------------------- */

static Control *control_free(Control *ctl) {
        struct stat st;

        if (!ctl)
                return NULL;
        while (ctl->connections) {
                Connection *c = ctl->connections;

                ctl->connections = c->next;
                connection_free(c);
        }
        source_disable_unref(ctl->listen);
        source_disable_unref(ctl->accept_retry);
        source_disable_unref(ctl->gc);
        safe_close(ctl->fd);
        /* Only our own socket: not one that replaced it meanwhile. */
        if (ctl->bound_path && lstat(ctl->bound_path, &st) == 0 && st.st_dev == ctl->bound_dev &&
            st.st_ino == ctl->bound_ino)
                (void) unlink(ctl->bound_path);
        free(ctl->bound_path);
        free(ctl);
        return NULL;
}

int control_start(Manager *m) {
        Control *ctl;
        const char *path = m->config->control;
        int r;

        ctl = calloc(1, sizeof(*ctl));
        if (!ctl)
                return log_error_errno(-ENOMEM, "Out of memory");
        ctl->manager = m;
        ctl->fd = TAKE_FD(m->control_fd);
        /* Events before the socket is up find no connection: harmless. */
        manager_set_event_hook(m, control_on_event, ctl);

        control_resolve_admin_group(ctl);

        if (ctl->fd < 0) {
                r = control_bind(ctl, path);
                if (r == -EADDRINUSE) {
                        log_warning("Another process listens on %s; running without a control socket", path);
                        return 0;
                }
                if (r < 0) {
                        log_warning_errno(r, "Cannot create the control socket %s, running without it: %m", path);
                        return 0;
                }
        }

        r = sd_event_add_defer(m->event, &ctl->gc, on_gc, ctl);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the control socket: %m");
        (void) sd_event_source_set_enabled(ctl->gc, SD_EVENT_OFF);
        r = sd_event_add_io(m->event, &ctl->listen, ctl->fd, EPOLLIN, on_accept, ctl);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the control socket: %m");

        log_info("Accepting control connections on %s", ctl->bound_path ? ctl->bound_path : "the socket systemd passed");
        return 0;
}

void control_stop(Manager *m) {
        Control *ctl = m->control;

        if (!ctl)
                return;
        manager_set_event_hook(m, NULL, NULL);
        control_free(ctl);
}
