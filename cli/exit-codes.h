/* SPDX-License-Identifier: MIT */
/*
 * scctl's exit statuses, documented in scctl(1) under EXIT STATUS. Scripts
 * depend on these numbers: never renumber, only add.
 *
 * Inside scctl, functions that fail have already told the user why (on
 * stderr) and return the negated status, e.g. -EXIT_CONNECT; a command
 * returns the status itself. Negative errno values from common/ never travel
 * past the function that received them.
 */
#pragma once

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
