/* SPDX-License-Identifier: MIT */
/*
 * scctl's command line: global options and the verb table (as in
 * wireguard-tools' wg.c). A verb may be abbreviated to any unique prefix.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>

#include "admin.h"
#include "cli.h"
#include "exit-codes.h"
#include "macro.h"
#include "output.h"
#include "rsa.h"
#include "util.h"
#include "verbs.h"

Settings arg_settings = SETTINGS_INIT;

static int verb_help(int argc, char *argv[]);

static const Verb verbs[] = {
        { "init", verb_init, "[--bits N] [--code CODE]", "Create your identity key and register it" },
        { "connect", verb_connect, "", "Chat interactively: RECIPIENT:MESSAGE lines" },
        { "send", verb_send, "[--wait[=SECONDS]] [--idempotency-key KEY] USER [TEXT...|-]", "Send one message" },
        { "listen", verb_listen, "", "Print incoming messages as they arrive" },
        { "inbox", verb_inbox, "", "Print the messages queued for you, then exit" },
        { "users", verb_users_any, "[--registered]",
          "List who is online, with key fingerprints (--registered: every registered user; admin)" },
        { "fingerprint", verb_fingerprint, "[USER]", "Show your key's fingerprint, or USER's" },
        { "prekeys", verb_prekeys, "[rotate]", "Show your published prekeys, or replace them now" },
        { "trust", verb_trust, "[--yes] USER", "Accept USER's new key after comparing fingerprints" },
        { "rotate-key", verb_rotate_key, "[--bits N]", "Replace your key with a new one your old key vouches for" },
        { "status", verb_status, "", "Show the relay's state and counters (admin)" },
        { "sessions", verb_sessions, "", "List the relay's authenticated sessions (admin)" },
        { "monitor", verb_monitor, "", "Print the relay's audit events as they happen (admin)" },
        { "kick", verb_kick, "USER", "Close every session of USER (admin)" },
        { "reset-key", verb_reset_key, "USER", "Forget USER's key so that a new one can register (admin)" },
        { "reload", verb_reload, "", "Make the relay re-read its configuration (admin)" },
        { "help", verb_help, "[COMMAND]", "Show this help, or a command's" },
};

static void usage(FILE *f) {
        fputs("Usage: scctl [OPTIONS] COMMAND [ARGS...]\n"
              "\n"
              "Chat end to end encrypted through a SecureChat relay.\n"
              "\n"
              "Commands:\n", f);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                int width = 40 - (int) strlen(verbs[i].name) - 1;

                /* Printed whole, never cut: a synopsis wider than the
                 * column (send's) puts its help on a line of its own. */
                if ((int) strlen(verbs[i].args) > width)
                        fprintf(f, "  %s %s\n  %-40s %s\n", verbs[i].name, verbs[i].args, "", verbs[i].help);
                else
                        fprintf(f, "  %s %-*s %s\n", verbs[i].name, width, verbs[i].args, verbs[i].help);
        }
        fputs("\n"
              "Options (before or after the command):\n"
              "  --server HOST[:PORT]       relay to use (default localhost:5000; [::1]:5000 for IPv6)\n"
              "  --user NAME                your user name (default: your login name)\n"
              "  --home DIR                 state directory (default ~/.local/share/securechat)\n"
              "  --config FILE              config file (default ~/.config/securechat/scctl.conf)\n"
              "  --no-tls                   connect without TLS (relays run with tls=no)\n"
              "  --server-fingerprint FP    expect the relay's key to have this fingerprint\n"
              "  --timeout SECONDS          how long to wait for the relay (default 30)\n"
              "  --json                     print results as JSON, one object per line\n"
              "  -h --help                  show help (after a command: its own)\n"
              "  --version                  show the version (before a command only)\n"
              "\n"
              "Commands marked admin use the relay's control socket, not the network, and need root\n"
              "or the relay's admin group. Their option --control PATH names the socket (default\n"
              "$SECURECHAT_CONTROL, else " DEFAULT_CONTROL_SOCKET ").\n"
              "\n"
              "Exit statuses, files and the environment are described in scctl(1).\n", f);
}

static const Verb *verb_find(const char *name, bool quiet) {
        const Verb *found = NULL;
        size_t n = 0, len = strlen(name);

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return &verbs[i];
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (len > 0 && strncmp(verbs[i].name, name, len) == 0) {
                        found = &verbs[i];
                        n++;
                }
        if (n == 1)
                return found;
        if (quiet)
                return NULL;
        if (n == 0) {
                log_fail(EXIT_USAGE, 0, "Unknown command \"%s\"; see 'scctl --help'.", name);
                return NULL;
        }

        char list[256] = "";
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strncmp(verbs[i].name, name, len) == 0) {
                        if (list[0])
                                strncat(list, ", ", sizeof(list) - strlen(list) - 1);
                        strncat(list, verbs[i].name, sizeof(list) - strlen(list) - 1);
                }
        log_fail(EXIT_USAGE, 0, "Ambiguous command \"%s\": it could be %s.", name, list);
        return NULL;
}

static void verb_usage(const Verb *v) {
        printf("Usage: scctl [OPTIONS] %s %s\n\n%s.\n\nSee 'scctl --help' for the options every command takes, "
               "and scctl(1) for details.\n", v->name, v->args, v->help);
}

static int verb_help(int argc, char *argv[]) {
        const Verb *v;

        if (argc < 2) {
                usage(stdout);
                return 0;
        }
        v = verb_find(argv[1], false);
        if (!v)
                return -EINVAL;
        verb_usage(v);
        return 0;
}

int verb_usage_error(const char *verb, const char *fmt, ...) {
        char message[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        return log_fail(EXIT_USAGE, 0, "%s: %s; see 'scctl %s --help'.", verb, message, verb);
}

int verb_parse_key_bits(const char *verb, const char *s, unsigned *ret) {
        if (!streq(s, "2048") && !streq(s, "3072") && !streq(s, "4096"))
                return verb_usage_error(verb, "--bits takes 2048, 3072 or 4096");
        *ret = (unsigned) atoi(s);
        return 0;
}

void user_name_explain(const char *name, char *buf, size_t size) {
        char lower[USERNAME_MAX + 1] = "", also[USERNAME_MAX + 32] = "";
        size_t n = strlen(name);

        if (n < sizeof(lower)) {
                for (size_t i = 0; i <= n; i++)
                        lower[i] = (char) tolower((unsigned char) name[i]);
                if (username_valid(lower))
                        snprintf(also, sizeof(also), " (did you mean \"%s\"?)", lower);
        }
        snprintf(buf, size, "\"%.64s\" is not a valid user name%s: a user name has 1 to %d lower-case "
                 "letters, digits, '.', '_' and '-', and starts with a letter or digit; see USER NAMES "
                 "in scctl(1)", name, also, USERNAME_MAX);
}

int verb_bad_user_name(const char *verb, const char *name) {
        char why[512];

        user_name_explain(name, why, sizeof(why));
        return log_fail(EXIT_USAGE, 0, "%s: %s.", verb, why);
}

int parse_seconds(const char *s, unsigned *ret) {
        unsigned long v;
        char *end;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end || s[0] == '-' || v == 0 || v > 365UL * 24 * 3600)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* "SHA256:" and 43 characters of unpadded base64. */
static bool fingerprint_valid(const char *s) {
        if (strncmp(s, "SHA256:", 7) != 0 || strlen(s) != RSA_FINGERPRINT_MAX - 1)
                return false;
        for (const char *c = s + 7; *c; c++)
                if (!(*c >= 'A' && *c <= 'Z') && !(*c >= 'a' && *c <= 'z') && !(*c >= '0' && *c <= '9') &&
                    *c != '+' && *c != '/')
                        return false;
        return true;
}

static int set_string(char **field, const char *value) {
        char *copy = strdup(value);

        if (!copy)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        free(*field);
        *field = copy;
        return 1;
}

/* > 0 to go on, else -errno (reported). */
static int global_option(const char *verb, int c, char *argv[]) {
        unsigned sec;

        switch (c) {
        case ARG_SERVER:
                return set_string(&arg_settings.arg_server, optarg);
        case ARG_USER:
                return set_string(&arg_settings.arg_user, optarg);
        case ARG_HOME:
                return set_string(&arg_settings.arg_home, optarg);
        case ARG_CONFIG:
                return set_string(&arg_settings.arg_config, optarg);
        case ARG_NO_TLS:
                arg_settings.arg_tls = false;
                return 1;
        case ARG_JSON:
                arg_settings.json = true;
                output_setup(true);
                return 1;
        case ARG_SERVER_FINGERPRINT:
                if (!fingerprint_valid(optarg))
                        return log_fail(EXIT_USAGE, 0,
                                         "--server-fingerprint takes SHA256: and 43 base64 characters, "
                                         "as 'scctl fingerprint' and securechatd print them.");
                return set_string(&arg_settings.server_fingerprint, optarg);
        case ARG_CONTROL:
                return set_string(&arg_settings.arg_control, optarg);
        case ARG_TIMEOUT:
                if (parse_seconds(optarg, &sec) < 0)
                        return log_fail(EXIT_USAGE, 0, "--timeout takes a number of seconds, not \"%s\".", optarg);
                arg_settings.timeout_usec = (uint64_t) sec * USEC_PER_SEC;
                return 1;
        case ':':
                return log_fail(EXIT_USAGE, 0, "%s%s%s needs an argument.", verb ?: "", verb ? ": " : "",
                                 argv[optind - 1]);
        default:
                return log_fail(EXIT_USAGE, 0, "%s%sunknown option %s; see 'scctl %s%s--help'.",
                                 verb ?: "", verb ? ": " : "", argv[optind - 1], verb ?: "", verb ? " " : "");
        }
}

int verb_option(const char *verb, int c, char *argv[]) {
        if (c == 'h') {
                const Verb *v = verb_find(verb, true);

                if (v)
                        verb_usage(v);
                return 0;
        }
        return global_option(verb, c, argv);
}

int verb_parse_options(int argc, char *argv[]) {
        static const struct option options[] = { GLOBAL_OPTIONS, {} };
        int c, r;

        while ((c = getopt_long(argc, argv, "+:h", options, NULL)) >= 0) {
                r = verb_option(argv[0], c, argv);
                if (r <= 0)
                        return r;
        }
        return 1;
}

int verb_parse_no_arguments(int argc, char *argv[]) {
        int r = verb_parse_options(argc, argv);

        if (r <= 0)
                return r;
        if (optind < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind]);
        return 1;
}

int signal_fd_open(void) {
        sigset_t mask;
        int fd;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_fail(EXIT_FAIL, -errno, "Cannot block signals: %m");
        fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd < 0)
                return log_fail(EXIT_FAIL, -errno, "Cannot create a signalfd: %m");
        return fd;
}

/* The status for what a verb returned (0 or -errno); results that did not
 * reach stdout are a failure too. */
static int exit_status(int r) {
        if ((fflush(stdout) != 0 || ferror(stdout) || output_broken()) && r >= 0)
                r = log_fail(EXIT_FAIL, 0, "Cannot write to standard output.");
        return exit_status_from_errno(r);
}

/* The options before the verb, with the same contract as the verbs'. */
static int parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                GLOBAL_OPTIONS,
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        int c, r;

        opterr = 0;
        optind = 0;
        while ((c = getopt_long(argc, argv, "+:h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        usage(stdout);
                        return 0;
                case ARG_VERSION:
                        puts("scctl (" PACKAGE_NAME ") " PACKAGE_VERSION);
                        return 0;
                default:
                        r = global_option(NULL, c, argv);
                        if (r <= 0)
                                return r;
                }

        if (optind >= argc) {
                usage(stderr);
                return -EINVAL;
        }
        return 1;
}

int scctl_main(int argc, char *argv[]) {
        const Verb *v;
        int r;

        output_setup(false);
        r = parse_argv(argc, argv);
        if (r <= 0)
                return exit_status(r);
        v = verb_find(argv[optind], false);
        if (!v)
                return exit_status(-EINVAL);

        argc -= optind;
        argv += optind;
        argv[0] = (char *) v->name;     /* so that messages name the full verb */
        optind = 0;                     /* reset getopt for the verb */
        r = v->run(argc, argv);
        settings_done(&arg_settings);
        return exit_status(r);
}
