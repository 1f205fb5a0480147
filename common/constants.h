/* SPDX-License-Identifier: MIT */
/*
 * Values securechatd and scctl must agree on that are not part of the wire
 * protocol (those are in protocol.h): defined once here so that the two
 * programs cannot drift apart.
 */
#pragma once

#include <stdint.h>

#define USEC_PER_SEC UINT64_C(1000000)

/* The control socket's Varlink interface; its methods and errors are
 * CONTROL_INTERFACE ".Name" (securechatd(8), CONTROL SOCKET). */
#define CONTROL_INTERFACE "io.securechat.Control"

/* Where the relay's control socket is unless control= (securechatd.conf(5))
 * or, for scctl, --control and $SECURECHAT_CONTROL say otherwise. */
#define DEFAULT_CONTROL_SOCKET "/run/securechat/control"
