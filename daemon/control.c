/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "events.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "protocol.h"
#include "sockets.h"
#include "util.h"
#include "varlink-server.h"
#include "varlink.h"

/* How long a refused caller has to make the call that hears "no". */
#define CONTROL_DENIED_TIMEOUT_USEC (5 * USEC_PER_SEC)
/* What may wait for one caller: a ListUsers of a large relay fits. */
#define CONTROL_OUTPUT_MAX (64u * 1024 * 1024)

typedef struct Control {
        Manager *manager;
        VarlinkServer *server;

        bool have_admin_gid;
        gid_t admin_gid;

        unsigned n_admin, n_denied;
} Control;

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
        "# A relay sharing the database with this one (securechatd(8), SEVERAL\n"
        "# RELAYS), as of this node's last heartbeat: alive when its own\n"
        "# heartbeat is younger than node-timeout; the counts are its own.\n"
        "type Node (\n"
        "  name: string,\n"
        "  alive: bool,\n"
        "  heartbeat_age_sec: int,\n"
        "  started: int,\n"
        "  sessions: int,\n"
        "  receiving: int,\n"
        "  queued: int\n"
        ")\n"
        "\n"
        "# A user receiving on another node.\n"
        "type RemoteReceiver (\n"
        "  user: string,\n"
        "  node: string,\n"
        "  fingerprint: string\n"
        ")\n"
        "\n"
        "# One audit event; time is in microseconds since the epoch, fields holds\n"
        "# the event's SC_* fields by their lower-case names (node: SC_NODE).\n"
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
        "# commits: the transactions that stored sends and deleted acknowledged\n"
        "# messages since the start, and committed_requests the sends and acks\n"
        "# they held (several sessions' requests share one commit).\n"
        "# node, database_connected and nodes only on a node of several relays.\n"
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
        "  commits: int,\n"
        "  committed_requests: int,\n"
        "  monitors: int,\n"
        "  server_fingerprint: string,\n"
        "  listen: []string,\n"
        "  tls: bool,\n"
        "  limits: []Limit,\n"
        "  node: ?string,\n"
        "  database_connected: ?bool,\n"
        "  nodes: ?[]Node\n"
        ")\n"
        "\n"
        "# Authenticated sessions. On a node of several relays: node is this\n"
        "# one's name and remote the users receiving on the others.\n"
        "method ListSessions() -> (sessions: []Session, node: ?string, remote: ?[]RemoteReceiver)\n"
        "\n"
        "# Registered users.\n"
        "method ListUsers() -> (users: []User)\n"
        "\n"
        "# Every audit event from now on, one reply each; needs \"more\".\n"
        "method Monitor() -> (event: Event)\n"
        "\n"
        "# Close every session of a registered user (on every node).\n"
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

/* The parameters of Kick and ResetKey. */
typedef struct UserParameters {
        char user[USERNAME_MAX + 1];
} UserParameters;

/* json_dispatch_user(), failing with the parameter's name: that is what
 * Varlink's InvalidParameter names, whatever was wrong with it. */
static int dispatch_user_parameter(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        int r = json_dispatch_user(v, d, userdata, reason);

        if (r < 0)
                *reason = d->name;
        return r;
}

static const JsonDispatch no_parameters[] = { {} };
static const JsonDispatch user_parameters[] = {
        { "user", json_type_string, dispatch_user_parameter, offsetof(UserParameters, user), JSON_MANDATORY },
        {}
};

/* Every call of a method that changes the relay's state is audited
 * (control-command) before it runs. */
static void control_audit(VarlinkConnection *link, const char *method, json_object *parameters) {
        const struct ucred *cred = varlink_connection_credentials(link);
        const char *user = NULL;
        json_object *v;

        /* Only a well-formed name reaches the log. */
        if (parameters && json_object_object_get_ex(parameters, "user", &v) && v &&
            json_object_is_type(v, json_type_string) && username_valid(json_object_get_string(v)))
                user = json_object_get_string(v);
        log_event(EVENT_CONTROL_COMMAND,
                  &(LogFields) { .user = user, .peer = varlink_connection_label(link), .reason = method },
                  "Control command %s%s%s from uid %u (pid %d)", method, user ? " " : "", user ? user : "",
                  (unsigned) cred->uid, (int) cred->pid);
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

                if (json_array_add(a, o) < 0 ||
                    json_add_string(o, "name", limit_name(l)) < 0 ||
                    json_add_uint64(o, "hits", m->limit_hits[l]) < 0)
                        return NULL;
                if (key && config_format_key(m->config, key, value, sizeof(value)) >= 0 &&
                    json_add_string(o, "value", value) < 0)
                        return NULL;
        }
        return TAKE_PTR(a);
}

/* Status's members of a node of several relays: its name, whether its
 * connection to the database is up, and every node's row. */
static int cluster_to_json(Cluster *cluster, json_object *p) {
        json_object *a = json_object_new_array();
        const ClusterNode *nodes;
        uint64_t age;
        size_t n;

        if (json_add(p, "nodes", a) < 0 ||     /* a is p's from here on */
            json_add_string(p, "node", cluster_node_name(cluster)) < 0 ||
            json_add_bool(p, "database_connected", cluster_connected(cluster)) < 0)
                return -ENOMEM;
        nodes = cluster_nodes(cluster, &n, &age);
        for (size_t i = 0; i < n; i++) {
                json_object *o = json_object_new_object();

                if (json_array_add(a, o) < 0 ||
                    json_add_string(o, "name", nodes[i].name) < 0 ||
                    json_add_bool(o, "alive", nodes[i].alive) < 0 ||
                    json_add_uint64(o, "heartbeat_age_sec", (nodes[i].heartbeat_age_usec + age) / USEC_PER_SEC) < 0 ||
                    json_add_uint64(o, "started", nodes[i].started_realtime_usec / USEC_PER_SEC) < 0 ||
                    json_add_uint64(o, "sessions", nodes[i].sessions) < 0 ||
                    json_add_uint64(o, "receiving", nodes[i].receiving) < 0 ||
                    json_add_uint64(o, "queued", nodes[i].queued) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int method_status(VarlinkConnection *link, json_object *parameters, VarlinkMethodFlags flags,
                         void *userdata) {
        Control *ctl = userdata;
        Manager *m = ctl->manager;
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

                if (json_array_add(listen, json_object_new_string(socket_local_address(m->listen_fds[i], address))) < 0) {
                        json_object_put(listen);
                        return -ENOMEM;
                }
        }

        /* A new receiving session replaces a user's old one, so receiving
         * sessions and users online are the same number. */
        if (!p ||
            json_add_string(p, "version", PACKAGE_VERSION) < 0 ||
            json_add_uint64(p, "protocol", PROTOCOL_VERSION) < 0 ||
            json_add_uint64(p, "uptime_sec", st.uptime_usec / USEC_PER_SEC) < 0 ||
            json_add_uint64(p, "connections", st.connections) < 0 ||
            json_add_uint64(p, "sessions", st.sessions) < 0 ||
            json_add_uint64(p, "receiving_sessions", st.receiving) < 0 ||
            json_add_uint64(p, "users_online", st.receiving) < 0 ||
            json_add_uint64(p, "users_registered", st.users_registered) < 0 ||
            json_add_uint64(p, "queued_messages", st.queued) < 0 ||
            json_add_uint64(p, "commits", st.commits) < 0 ||
            json_add_uint64(p, "committed_requests", st.committed) < 0 ||
            json_add_uint64(p, "monitors", varlink_server_n_subscribers(ctl->server)) < 0 ||
            json_add_string(p, "server_fingerprint", m->server_key->fingerprint) < 0 ||
            json_add(p, "listen", TAKE_PTR(listen)) < 0 ||
            json_add_bool(p, "tls", m->config->tls) < 0 ||
            json_add(p, "limits", limits_to_json(m)) < 0 ||
            (m->cluster && cluster_to_json(m->cluster, p) < 0)) {
                json_object_put(listen);
                return -ENOMEM;
        }
        varlink_reply(link, TAKE_PTR(p));
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
        if (json_add_string(o, "id", i->id) < 0 ||
            json_add_string(o, "user", i->user) < 0 ||
            json_add_string(o, "peer", i->peer) < 0 ||
            json_add_string(o, "fingerprint", i->fingerprint) < 0 ||
            json_add_bool(o, "receive", i->receive) < 0 ||
            json_add_bool(o, "tls", i->tls) < 0 ||
            json_add_uint64(o, "since", i->connected_realtime_usec / USEC_PER_SEC) < 0 ||
            json_add_uint64(o, "idle_sec", i->idle_usec / USEC_PER_SEC) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return json_array_add(l->array, o);
}

static int method_list_sessions(VarlinkConnection *link, json_object *parameters, VarlinkMethodFlags flags,
                                void *userdata) {
        Control *ctl = userdata;
        _cleanup_(json_object_unrefp) json_object *p = json_object_new_object();
        ListContext l = { .manager = ctl->manager, .array = json_object_new_array() };
        int r;

        if (!p || json_add(p, "sessions", l.array) < 0)
                return -ENOMEM;
        r = manager_foreach_session(l.manager, list_session, &l);
        if (r < 0)
                return r;
        if (l.manager->cluster) {
                json_object *remote = json_object_new_array();

                if (json_add(p, "remote", remote) < 0 ||
                    json_add_string(p, "node", cluster_node_name(l.manager->cluster)) < 0)
                        return -ENOMEM;
                for (const ClusterUser *u = cluster_first(l.manager->cluster); u; u = u->next) {
                        json_object *o = json_object_new_object();

                        if (json_array_add(remote, o) < 0 ||
                            json_add_string(o, "user", u->user) < 0 ||
                            json_add_string(o, "node", u->node) < 0 ||
                            json_add_string(o, "fingerprint", u->fingerprint) < 0)
                                return -ENOMEM;
                }
        }
        varlink_reply(link, TAKE_PTR(p));
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
        if (json_add_string(o, "user", i->package->user) < 0 ||
            json_add_string(o, "fingerprint", i->fingerprint) < 0 ||
            json_add_uint64(o, "registered", i->package->registered) < 0 ||
            json_add_bool(o, "online", i->online) < 0 ||
            json_add_uint64(o, "sessions", i->n_sessions) < 0 ||
            json_add_uint64(o, "queued", queued) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return json_array_add(l->array, o);
}

static int method_list_users(VarlinkConnection *link, json_object *parameters, VarlinkMethodFlags flags,
                             void *userdata) {
        Control *ctl = userdata;
        _cleanup_(json_object_unrefp) json_object *p = json_object_new_object();
        ListContext l = { .manager = ctl->manager, .array = json_object_new_array() };
        int r;

        if (!p || json_add(p, "users", l.array) < 0)
                return -ENOMEM;
        r = manager_foreach_user(l.manager, list_user, &l);
        if (r < 0)
                return r;
        varlink_reply(link, TAKE_PTR(p));
        return 0;
}

static int method_monitor(VarlinkConnection *link, json_object *parameters, VarlinkMethodFlags flags,
                          void *userdata) {
        /* Replies follow as events happen (control_on_event()). */
        varlink_subscribe(link, flags);
        return 0;
}

static int method_kick(VarlinkConnection *link, json_object *parameters, VarlinkMethodFlags flags,
                       void *userdata) {
        Control *ctl = userdata;
        Manager *m = ctl->manager;
        UserParameters u = {};
        const char *user = u.user;
        json_object *p;
        char by[64];
        int r, n;

        control_audit(link, "Kick", parameters);
        r = varlink_dispatch(link, parameters, user_parameters, &u);
        if (r < 0)
                return r;
        r = store_user_exists(m->store, user);
        if (r < 0)
                return r;
        if (r == 0) {
                varlink_error_str(link, CONTROL_INTERFACE ".NoSuchUser", "user", user);
                return 0;
        }

        snprintf(by, sizeof(by), "uid %u", (unsigned) varlink_connection_credentials(link)->uid);
        n = manager_kick_user(m, user, by);
        p = json_object_new_object();
        if (!p || json_add_uint64(p, "sessions_closed", (uint64_t) MAX(n, 0)) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        varlink_reply(link, p);
        return 0;
}

static int method_reset_key(VarlinkConnection *link, json_object *parameters, VarlinkMethodFlags flags,
                            void *userdata) {
        Control *ctl = userdata;
        char by[64], code[RESET_CODE_LEN];
        uint64_t dropped = 0;
        UserParameters u = {};
        const char *user = u.user;
        json_object *p;
        int r;

        control_audit(link, "ResetKey", parameters);
        r = varlink_dispatch(link, parameters, user_parameters, &u);
        if (r < 0)
                return r;
        snprintf(by, sizeof(by), "uid %u", (unsigned) varlink_connection_credentials(link)->uid);
        r = manager_reset_key(ctl->manager, user, by, code, &dropped);
        if (r == -ENOENT) {
                varlink_error_str(link, CONTROL_INTERFACE ".NoSuchUser", "user", user);
                return 0;
        }
        if (r < 0)
                return r;
        p = json_object_new_object();
        r = p ? json_object_object_add(p, "code", json_object_new_string(code)) : -ENOMEM;
        secure_wipe(code, sizeof(code));
        if (r < 0 || json_add_uint64(p, "messages_dropped", dropped) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        varlink_reply(link, p);
        return 0;
}

static int method_reload(VarlinkConnection *link, json_object *parameters, VarlinkMethodFlags flags,
                         void *userdata) {
        Control *ctl = userdata;
        _cleanup_(freep) char *error = NULL;
        int r;

        control_audit(link, "Reload", parameters);
        /* The admin group is looked up again when the reload event
         * arrives (control_on_event()), as after SIGHUP. */
        r = manager_reload(ctl->manager, &error);
        if (r < 0) {
                errno = -r;
                if (!error && asprintf(&error, "%m") < 0)
                        return -ENOMEM;
                varlink_error_str(link, CONTROL_INTERFACE ".ReloadFailed", "reason", error);
                return 0;
        }
        varlink_reply(link, NULL);
        return 0;
}

/* Read-only: anyone authorized, no audit record. Then the ones that
 * change the relay's state, each audited before it runs. */
static const VarlinkMethod control_methods[] = {
        { CONTROL_INTERFACE ".Status", method_status, no_parameters },
        { CONTROL_INTERFACE ".ListSessions", method_list_sessions, no_parameters },
        { CONTROL_INTERFACE ".ListUsers", method_list_users, no_parameters },
        { CONTROL_INTERFACE ".Monitor", method_monitor, no_parameters },

        { CONTROL_INTERFACE ".Kick", method_kick, user_parameters },
        { CONTROL_INTERFACE ".ResetKey", method_reset_key, user_parameters },
        { CONTROL_INTERFACE ".Reload", method_reload, no_parameters },
};

/* ---- monitor ----------------------------------------------------------------- */

static json_object *event_to_json(EventKind kind, const LogFields *f, const char *message) {
        const EventInfo *info = event_info(kind);
        _cleanup_(json_object_unrefp) json_object *e = json_object_new_object();
        json_object *fields = json_object_new_object();
        struct timespec ts = {};

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        if (!info || !e || !fields ||
            json_add_string(e, "name", info->name) < 0 ||
            json_add_string(e, "message_id", info->message_id) < 0 ||
            json_add_uint64(e, "priority", (uint64_t) info->priority) < 0 ||
            json_add_uint64(e, "time", (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000) < 0 ||
            json_add_string(e, "message", message) < 0 ||
            json_add(e, "fields", json_object_get(fields)) < 0) {
                json_object_put(fields);
                return NULL;
        }
        json_object_put(fields);        /* e holds it */

#define FIELD_STR(name, v)                                                      \
        do {                                                                    \
                if ((v) && json_add_string(fields, name, v) < 0)                        \
                        return NULL;                                            \
        } while (0)
#define FIELD_U64(name, cond, v)                                                \
        do {                                                                    \
                if ((cond) && json_add_uint64(fields, name, v) < 0)                     \
                        return NULL;                                            \
        } while (0)
        if (f) {
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
        }
        /* As the journal's SC_NODE, last as there: which of several relays
         * said it. */
        FIELD_STR("node", log_get_node());
#undef FIELD_STR
#undef FIELD_U64
        return TAKE_PTR(e);
}

/* An event below log-level is formatted only if this says so: Monitor's
 * subscribers see every event, and a reload may have renamed the admin
 * group (control_on_event()). */
static bool control_wants_event(Control *ctl, EventKind kind) {
        /* The hook is set before the server exists (control_start()). */
        return kind == EVENT_RELOAD || (ctl->server && varlink_server_n_subscribers(ctl->server) > 0);
}

static void control_on_event(Control *ctl, EventKind kind, const LogFields *fields, const char *message) {
        json_object *p, *event;

        if (kind == EVENT_RELOAD)
                control_resolve_admin_group(ctl);
        if (!ctl->server || varlink_server_n_subscribers(ctl->server) == 0)
                return;

        event = event_to_json(kind, fields, message);
        p = json_object_new_object();
        if (!event || !p) {
                json_object_put(event);
                json_object_put(p);
                return;
        }
        if (json_add(p, "event", event) < 0) {        /* event was dropped */
                json_object_put(p);
                return;
        }
        varlink_server_notify(ctl->server, p);
}

/* ---- callers ------------------------------------------------------------------ */

static int control_on_connect(VarlinkServer *server, VarlinkConnection *link, void *userdata) {
        Control *ctl = userdata;
        const struct ucred *cred = varlink_connection_credentials(link);
        const char *label = varlink_connection_label(link);
        bool admin;

        admin = control_authorize(ctl, varlink_connection_fd(link), cred);
        if (!admin)
                log_event(EVENT_CONTROL_DENIED, &(LogFields) { .peer = label },
                          "Control socket: uid %u (pid %d) is not root and not in group %s; refused",
                          (unsigned) cred->uid, (int) cred->pid, ctl->manager->config->admin_group);

        if (admin ? ctl->n_admin >= CONTROL_CONNECTIONS_MAX : ctl->n_denied >= CONTROL_DENIED_MAX) {
                manager_limit_hit(ctl->manager, LIMIT_CONTROL_CONNECTIONS, &(LogFields) { .peer = label },
                                  "Refusing control connection from uid %u: too many connections",
                                  (unsigned) cred->uid);
                return -EBUSY;
        }
        if (varlink_server_connections_of_uid(server, cred->uid) >= CONTROL_CONNECTIONS_PER_UID_MAX) {
                manager_limit_hit(ctl->manager, LIMIT_CONTROL_CONNECTIONS_PER_UID, &(LogFields) { .peer = label },
                                  "Refusing control connection from uid %u: too many connections from that uid",
                                  (unsigned) cred->uid);
                return -EBUSY;
        }

        if (admin)
                ctl->n_admin++;
        else {
                /* Heard once, whatever it asks (PermissionDenied), then gone. */
                varlink_connection_deny(link, CONTROL_INTERFACE ".PermissionDenied", CONTROL_DENIED_TIMEOUT_USEC);
                ctl->n_denied++;
        }
        return 0;
}

static void control_on_disconnect(VarlinkServer *server, VarlinkConnection *link, void *userdata) {
        Control *ctl = userdata;

        if (varlink_connection_denied(link))
                ctl->n_denied--;
        else
                ctl->n_admin--;
}

/* Out of file descriptors: the server stops accepting for a while rather
 * than spin on a backlog it cannot take from. */
static void control_on_accept_paused(VarlinkServer *server, int error, void *userdata) {
        Control *ctl = userdata;

        errno = error;
        manager_limit_hit(ctl->manager, LIMIT_FILE_DESCRIPTORS, NULL,
                          "Cannot accept control connections: %m; pausing for a second");
}

static const VarlinkServerHooks control_hooks = {
        .connect = control_on_connect,
        .disconnect = control_on_disconnect,
        .accept_paused = control_on_accept_paused,
};

/* ---- start and stop ---------------------------------------------------------- */

static Control *control_free(Control *ctl) {
        if (!ctl)
                return NULL;
        varlink_server_free(ctl->server);
        free(ctl);
        return NULL;
}

int control_start(Manager *m) {
        static const VarlinkServerLimits limits = {
                .name = "control",
                .message_max = CONTROL_MESSAGE_MAX,
                .output_max = CONTROL_OUTPUT_MAX,
                .backlog_max = CONTROL_MONITOR_BACKLOG_MAX,
                .backlog_error = CONTROL_INTERFACE ".BacklogExceeded",
                .subscription = "Monitor",
                .failure_error = CONTROL_INTERFACE ".Failed",
        };
        const char *path = m->config->control;
        int fd = TAKE_FD(m->control_fd);
        Control *ctl;
        int r;

        ctl = calloc(1, sizeof(*ctl));
        if (!ctl) {
                safe_close(fd);
                return log_error_errno(-ENOMEM, "Out of memory");
        }
        ctl->manager = m;
        /* Also what control_stop() frees, should the rest fail; events
         * before the socket is up find no subscriber: harmless. */
        manager_set_event_hook(m, control_on_event, control_wants_event, ctl);

        control_resolve_admin_group(ctl);

        r = varlink_server_new(m->event, &limits, &control_hooks, ctl, &ctl->server);
        if (r >= 0)
                r = varlink_server_add_interface(ctl->server, CONTROL_INTERFACE, control_interface_description,
                                                 control_methods, ELEMENTSOF(control_methods));
        if (r < 0) {
                safe_close(fd);
                return log_error_errno(r, "Failed to set up the control socket: %m");
        }

        if (fd >= 0) {
                r = varlink_server_listen_fd(ctl->server, fd);
                if (r < 0) {
                        safe_close(fd);
                        return log_error_errno(r, "Failed to watch the control socket: %m");
                }
        } else {
                r = varlink_server_listen_path(ctl->server, path,
                                               ctl->have_admin_gid ? ctl->admin_gid : (gid_t) -1);
                if (r == -EADDRINUSE) {
                        log_warning("Another process listens on %s; running without a control socket", path);
                        return 0;
                }
                if (r < 0) {
                        log_warning_errno(r, "Cannot create the control socket %s, running without it: %m", path);
                        return 0;
                }
        }

        log_info("Accepting control connections on %s",
                 varlink_server_path(ctl->server) ?: "the socket systemd passed");
        return 0;
}

void control_stop(Manager *m) {
        Control *ctl = m->control;

        if (!ctl)
                return;
        manager_set_event_hook(m, NULL, NULL, NULL);
        control_free(ctl);
}
