/* SPDX-License-Identifier: MIT */
/*
 * A Varlink server on a Unix stream socket: binding (or a socket systemd
 * passed), connections (daemon/stream.h) with their credentials, reading
 * calls (common/varlink.h), a method table, oneway and "more" calls, the
 * org.varlink.service interface, and the fan-out of "more" replies to
 * subscribers with a bound on what a slow one may hold.
 *
 * Shaped like sd-varlink (sd_varlink_server_bind_method_many(), a method
 * handler's (link, parameters, flags, userdata)), so that moving to it on
 * a newer systemd is mechanical. What is allowed, and to whom, is the
 * owner's: the connect hook sees every caller first.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "json-util.h"

typedef struct VarlinkServer VarlinkServer;
typedef struct VarlinkConnection VarlinkConnection;

typedef enum VarlinkMethodFlags {
        VARLINK_METHOD_ONEWAY = 1 << 0,         /* the caller wants no reply */
        VARLINK_METHOD_MORE = 1 << 1,           /* the caller takes several */
} VarlinkMethodFlags;

/* Reply with varlink_reply()/varlink_error() (or, after "more", later:
 * varlink_server_notify()). <0 answers with the server's failure error,
 * unless the handler already replied (varlink_dispatch()). */
typedef int (*VarlinkMethodHandler)(VarlinkConnection *link, json_object *parameters, VarlinkMethodFlags flags,
                                    void *userdata);

typedef struct VarlinkMethod {
        const char *name;                       /* "interface.Method" */
        VarlinkMethodHandler handler;
        /* The parameters it accepts (the handler dispatches them with
         * varlink_dispatch()); any other is InvalidParameter before the
         * handler runs. */
        const JsonDispatch *parameters;
} VarlinkMethod;

typedef struct VarlinkServerHooks {
        /* A caller connected: <0 refuses it (closed unheard); or
         * varlink_connection_deny() it. */
        int (*connect)(VarlinkServer *s, VarlinkConnection *link, void *userdata);
        /* The connection is going (after connect accepted it). */
        void (*disconnect)(VarlinkServer *s, VarlinkConnection *link, void *userdata);
        /* accept() failed with error (positive errno): accepting pauses. */
        void (*accept_paused)(VarlinkServer *s, int error, void *userdata);
} VarlinkServerHooks;

typedef struct VarlinkServerLimits {
        const char *name;               /* for the log: "control" */
        size_t message_max;             /* one call, its NUL included */
        size_t output_max;              /* replies waiting for one caller */
        size_t backlog_max;             /* notifications waiting for one subscriber */
        const char *backlog_error;      /* says so to a subscriber over it, with {limit} */
        const char *subscription;       /* what subscribers call, for the log: "Monitor" */
        const char *failure_error;      /* a handler failed, with {reason} */
} VarlinkServerLimits;

int varlink_server_new(sd_event *e, const VarlinkServerLimits *limits, const VarlinkServerHooks *hooks,
                       void *userdata, VarlinkServer **ret);
/* Closes every connection and the socket, unlinking what
 * varlink_server_listen_path() bound (if it is still ours). */
VarlinkServer *varlink_server_free(VarlinkServer *s);

/* Serve interface (for GetInfo and GetInterfaceDescription) with its
 * methods. Both stay the caller's and must outlive the server. */
int varlink_server_add_interface(VarlinkServer *s, const char *name, const char *description,
                                 const VarlinkMethod *methods, size_t n_methods);

/* A listening socket systemd passed (taken). */
int varlink_server_listen_fd(VarlinkServer *s, int fd);
/* Bind path (mode 0660, group gid unless (gid_t) -1; its directory is
 * created 0755), replacing a stale socket nobody listens on. -EADDRINUSE
 * when someone does. */
int varlink_server_listen_path(VarlinkServer *s, const char *path, gid_t gid);
const char *varlink_server_path(const VarlinkServer *s);     /* NULL: systemd's */

/* Send a "more" reply (parameters taken) to every subscriber
 * (varlink_subscribe()); formatted once. */
void varlink_server_notify(VarlinkServer *s, json_object *parameters);
unsigned varlink_server_n_subscribers(const VarlinkServer *s);
unsigned varlink_server_connections_of_uid(const VarlinkServer *s, uid_t uid);

const struct ucred *varlink_connection_credentials(const VarlinkConnection *link);
const char *varlink_connection_label(const VarlinkConnection *link);    /* "uid=N,pid=N" */
int varlink_connection_fd(const VarlinkConnection *link);
/* Every call on link is answered with error, then it closes; it closes
 * anyway after timeout_usec. For callers that may not call anything. */
void varlink_connection_deny(VarlinkConnection *link, const char *error, uint64_t timeout_usec);
bool varlink_connection_denied(const VarlinkConnection *link);

/* Answer the call being handled (parameters taken, NULL for none); a
 * oneway call gets nothing. */
void varlink_reply(VarlinkConnection *link, json_object *parameters);
void varlink_error(VarlinkConnection *link, const char *error, json_object *parameters);
/* error with the one parameter {key: value}. */
void varlink_error_str(VarlinkConnection *link, const char *error, const char *key, const char *value);
void varlink_error_invalid_parameter(VarlinkConnection *link, const char *name);
/* Dispatch parameters (NULL: none) through table into userdata, as
 * json_dispatch() does. 0, or <0 after replying InvalidParameter with
 * the failing field's reason, which is its name unless the table says
 * otherwise: return that from the handler. */
int varlink_dispatch(VarlinkConnection *link, json_object *parameters, const JsonDispatch table[],
                     void *userdata);
/* The call being handled stays open: varlink_server_notify() replies to
 * it from now on. Needs a "more" call (else ExpectedMore is sent). */
void varlink_subscribe(VarlinkConnection *link, VarlinkMethodFlags flags);
