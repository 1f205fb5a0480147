/* SPDX-License-Identifier: MIT */
/*
 * The control socket: local administration over Varlink (varlink.h), in
 * the manner of OpenSMTPD's control.c. The socket comes from systemd
 * (named "control") or is bound at config->control. Callers are checked
 * on accept with SO_PEERCRED and SO_PEERGROUPS: root, the daemon's own
 * uid and members of admin-group may call methods; anyone else hears
 * PermissionDenied once and is disconnected, and the attempt is audited.
 *
 * Read-only methods (GetInfo, GetInterfaceDescription, Status,
 * ListSessions, ListUsers, Monitor) are kept apart from the ones that
 * change state (Kick, ResetKey, Reload), which are audited
 * (control-command). Every resource a caller holds has a bound: message
 * size, connections per uid and in total, a monitor's backlog.
 */
#pragma once

#include <stddef.h>

#include "constants.h"
#include "forward.h"

#define CONTROL_MESSAGE_MAX (64u * 1024)                /* one call, its NUL included */
#define CONTROL_CONNECTIONS_MAX 64                      /* administrators' connections */
#define CONTROL_CONNECTIONS_PER_UID_MAX 16
#define CONTROL_DENIED_MAX 16                           /* refused callers waiting for their error */
#define CONTROL_MONITOR_BACKLOG_MAX (1024u * 1024)      /* unsent events per Monitor caller, bytes */

/* The interface description that GetInterfaceDescription returns. */
extern const char control_interface_description[];

/* Serve the control socket in m's event loop (registers control's event
 * hook with the manager). The control socket sits above the manager:
 * main.c starts it after manager_start() and stops it before
 * manager_free(). A socket that cannot be bound is logged and left out: the
 * relay serves chat without it. Returns <0 only when out of memory or
 * the event loop refuses a source. */
int control_start(Manager *m);

/* Close every control connection and the listening socket (unlinking
 * what control_start() bound). Safe to call when never started. */
void control_stop(Manager *m);
