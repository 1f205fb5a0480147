/* SPDX-License-Identifier: MIT */
/*
 * scctl's exit statuses, documented in scctl(1) under EXIT STATUS. Scripts
 * depend on these numbers: never renumber, only add.
 *
 * The return contract inside scctl (as in systemd's tools):
 *
 * - A function that fails returns a negative errno and has already told
 *   the user why, on stderr, with log_fail(EXIT_x, ...): it returns the
 *   errno that stands for EXIT_x in the table below. Callers pass it up
 *   unchanged, or test for it (r == -ETIMEDOUT: the relay did not answer).
 * - -ECANCELED is the one failure nobody reports: the user pressed ^C (the
 *   abort descriptor became readable); the command ends quietly, status 0.
 * - Option parsers return > 0 to go on, 0 to exit successfully (--help),
 *   < 0 on error; verbs return 0 or a negative errno.
 * - main() turns what the verb returned into the status with
 *   exit_status_from_errno(): this table is the only place where an errno
 *   becomes an exit status. An errno that is not in it is EXIT_FAIL.
 * - The relay's error codes become statuses in relay_error_status()
 *   (client.c), the other table.
 */
#pragma once

#include <errno.h>

enum {
        EXIT_OK = 0,
        EXIT_FAIL = 1,          /* anything else: I/O, internal errors */
        EXIT_USAGE = 2,         /* bad command line or configuration */
        EXIT_CONNECT = 3,       /* cannot connect, TLS failure, connection lost */
        EXIT_AUTH = 4,          /* authentication failed, bad server signature */
        EXIT_SERVER_KEY = 5,    /* the server's key differs from the pinned one */
        EXIT_PEER_KEY = 6,      /* a peer's key changed or cannot be verified */
        EXIT_REFUSED = 7,       /* the relay refused the request */
        EXIT_TIMEOUT = 8,       /* no answer (or no receipt) in time */
        EXIT_PERMISSION = 9,    /* permission denied (control socket) */
        EXIT_RATE_LIMITED = 10, /* the relay kept saying rate_limited for longer than --timeout */
        _EXIT_MAX = EXIT_RATE_LIMITED,
};

/* The errno each status stands for inside scctl (one each, so that the
 * mapping goes both ways):
 *
 *   EXIT_FAIL          -EIO           EXIT_PEER_KEY      -ENOKEY
 *   EXIT_USAGE         -EINVAL        EXIT_REFUSED       -EREMOTEIO
 *   EXIT_CONNECT       -ENOTCONN      EXIT_TIMEOUT       -ETIMEDOUT
 *   EXIT_AUTH          -EKEYREJECTED  EXIT_PERMISSION    -EACCES
 *   EXIT_SERVER_KEY    -EBADE         EXIT_RATE_LIMITED  -EBUSY
 *
 * exit_status_to_errno(EXIT_OK) is 0; a status out of range is -EIO. */
int exit_status_to_errno(int status);
/* 0 (or anything >= 0) is EXIT_OK. */
int exit_status_from_errno(int r);
