/* SPDX-License-Identifier: MIT */
/*
 * "securechatd --reload": ask the running relay, over its control socket,
 * to re-read its configuration, and wait for the answer. This is the
 * unit's ExecReload=, so that "systemctl reload" fails when the new
 * configuration is bad (SIGHUP cannot say so) without needing scctl,
 * which is in another package, or /bin/kill.
 */
#pragma once

#include <stdint.h>

/* 0: reloaded. -EBADE: the relay refused the configuration and kept the
 * old one; *ret_reason (if not NULL) says why. Else -errno of connecting
 * (-ENOENT, -ECONNREFUSED: not running; -EACCES), -ETIMEDOUT, -EPROTO. */
int reload_request(const char *control_path, uint64_t timeout_usec, char **ret_reason);
