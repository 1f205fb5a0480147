/* SPDX-License-Identifier: MIT */
/*
 * The administration verbs (admin.c): they talk Varlink to the relay's
 * control socket (securechat-protocol(7), CONTROL SOCKET), not the chat
 * protocol to its port, and need root or the relay's admin group.
 */
#pragma once

/* DEFAULT_CONTROL_SOCKET, the relay's default, is the control socket when
 * neither --control nor $SECURECHAT_CONTROL names another. */
#include "constants.h"

int verb_status(int argc, char *argv[]);
int verb_sessions(int argc, char *argv[]);
int verb_monitor(int argc, char *argv[]);
int verb_kick(int argc, char *argv[]);
int verb_reset_key(int argc, char *argv[]);
int verb_reload(int argc, char *argv[]);

/* "users": with --registered the relay's registry over the control
 * socket, otherwise who is online, over the chat protocol (verb_users()
 * in chat.c). */
int verb_users_any(int argc, char *argv[]);
