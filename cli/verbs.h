/* SPDX-License-Identifier: MIT */
/*
 * The verb table's entries and what they share: global options, which are
 * accepted before the verb and among each verb's own options.
 *
 * A verb is `int verb_x(int argc, char *argv[])` with argv[0] the verb's
 * name; it returns 0 or -errno, which scctl_main() maps to the exit status
 * (exit-codes.h). Adding a family of verbs (admin.c) means adding its
 * functions here and rows to the table in verbs.c.
 */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "settings.h"

typedef struct Verb {
        const char *name;
        int (*run)(int argc, char *argv[]);
        const char *args;               /* synopsis of the arguments, for --help */
        const char *help;               /* one line */
} Verb;

/* Global options, filled while parsing; verbs resolve them with
 * context_open() (settings_resolve()). */
extern Settings arg_settings;

enum {
        ARG_SERVER = 0x100,
        ARG_USER,
        ARG_HOME,
        ARG_CONFIG,
        ARG_NO_TLS,
        ARG_JSON,
        ARG_SERVER_FINGERPRINT,
        ARG_TIMEOUT,
        ARG_CONTROL,
        ARG_VERSION,
        _ARG_GLOBAL_MAX,                /* verbs number their own options from here */
};

#define GLOBAL_OPTIONS                                                                  \
        { "server", required_argument, NULL, ARG_SERVER },                              \
        { "user", required_argument, NULL, ARG_USER },                                  \
        { "home", required_argument, NULL, ARG_HOME },                                  \
        { "config", required_argument, NULL, ARG_CONFIG },                              \
        { "no-tls", no_argument, NULL, ARG_NO_TLS },                                    \
        { "json", no_argument, NULL, ARG_JSON },                                        \
        { "server-fingerprint", required_argument, NULL, ARG_SERVER_FINGERPRINT },      \
        { "timeout", required_argument, NULL, ARG_TIMEOUT },                            \
        { "control", required_argument, NULL, ARG_CONTROL },                            \
        { "help", no_argument, NULL, 'h' }

/* Handle what getopt_long() returned inside a verb that is not the verb's
 * own option: a global option, -h (prints the verb's usage) or an unknown
 * option. As every option parser in scctl (systemd's parse_argv()
 * contract): > 0 when parsing goes on, 0 to exit successfully (after
 * --help), < 0 a -errno error, reported (-EINVAL: a usage error). */
int verb_option(const char *verb, int c, char *argv[]);

/* For verbs that take only the global options, with the same contract.
 * The _no_arguments variant also refuses operands. */
int verb_parse_options(int argc, char *argv[]);
int verb_parse_no_arguments(int argc, char *argv[]);

/* Print "scctl: VERB: message; see 'scctl VERB --help'." and return
 * -EINVAL (EXIT_USAGE). */
int verb_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* --bits of init and rotate-key: 2048, 3072 or 4096 into *ret; 0, or the
 * usage error reported. */
int verb_parse_key_bits(const char *verb, const char *s, unsigned *ret);

/* Why NAME is not a user name, with what one is (and, when NAME in lower
 * case would do, that one) and where scctl(1) defines it: the help of a
 * verb does not say. verb_bad_user_name() prints it after "scctl: VERB: "
 * and returns -EINVAL. */
void user_name_explain(const char *name, char *buf, size_t size);
int verb_bad_user_name(const char *verb, const char *name);

/* Parse a number of seconds (1..86400*365). */
int parse_seconds(const char *s, unsigned *ret);

/* SIGINT and SIGTERM as a descriptor (blocked first), for sessions that end
 * cleanly on them. */
int signal_fd_open(void);

/* scctl's whole command line: global options, the verb, the verb's run.
 * Returns the exit status (exit-codes.h). */
int scctl_main(int argc, char *argv[]);

/* Chat verbs (chat.c, connect.c). */
int verb_init(int argc, char *argv[]);
int verb_send(int argc, char *argv[]);
int verb_listen(int argc, char *argv[]);
int verb_inbox(int argc, char *argv[]);
int verb_users(int argc, char *argv[]);
int verb_fingerprint(int argc, char *argv[]);
int verb_trust(int argc, char *argv[]);
int verb_connect(int argc, char *argv[]);
int verb_prekeys(int argc, char *argv[]);
/* rotate.c */
int verb_rotate_key(int argc, char *argv[]);
