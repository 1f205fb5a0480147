/* SPDX-License-Identifier: MIT */
/* securechatd: the SecureChat relay. Everything but option parsing lives in
 * the modules; see manager.h for the big picture. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf.h"
#include "control.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "reload.h"

enum {
        EXIT_USAGE = 2,
};

typedef struct Args {
        ConfigSources sources;
        bool check_config;
        bool reload;
} Args;

static void args_done(Args *a) {
        for (size_t i = 0; i < a->sources.n_overrides; i++) {
                free(a->sources.overrides[i]);
                free(a->sources.origins[i]);
        }
        free(a->sources.overrides);
        free(a->sources.origins);
}

static int add_override(Args *a, const char *assignment, const char *origin) {
        size_t n = a->sources.n_overrides;
        char **o, **g;

        o = realloc(a->sources.overrides, (n + 1) * sizeof(char *));
        if (!o)
                return -ENOMEM;
        a->sources.overrides = o;
        g = realloc(a->sources.origins, (n + 1) * sizeof(char *));
        if (!g)
                return -ENOMEM;
        a->sources.origins = g;
        o[n] = strdup(assignment);
        g[n] = strdup(origin);
        if (!o[n] || !g[n]) {
                free(o[n]);
                free(g[n]);
                return -ENOMEM;
        }
        a->sources.n_overrides++;
        return 0;
}

static void help(void) {
        printf("Usage: %s [OPTIONS]\n\n"
               "The SecureChat relay: routes end-to-end encrypted messages it cannot read.\n\n"
               "  -c, --config=FILE           Read FILE instead of %s\n"
               "                              (and drop-ins from its directory's securechatd.conf.d/)\n"
               "      --listen=ADDRESS:PORT   Listen there (same as -o listen=...)\n"
               "      --state-directory=DIR   Keep keys and the database in DIR\n"
               "  -o KEY=VALUE                Set any configuration key (repeatable)\n"
               "      --check-config          Print the effective configuration and exit\n"
               "      --reload                Make the running relay re-read its configuration,\n"
               "                              and fail if it refuses it (systemctl reload runs this)\n"
               "  -h, --help                  Show this help\n"
               "      --version               Show the version\n\n"
               "See securechatd(8) and securechatd.conf(5).\n",
               program_invocation_short_name, CONFIG_FILE);
}

/* >0: done (exit 0), 0: run, <0: usage error (already reported). */
static int parse_argv(int argc, char *argv[], Args *a) {
        enum {
                ARG_LISTEN = 0x100,
                ARG_STATE_DIRECTORY,
                ARG_CHECK_CONFIG,
                ARG_RELOAD,
                ARG_VERSION,
        };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "state-directory", required_argument, NULL, ARG_STATE_DIRECTORY },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "reload", no_argument, NULL, ARG_RELOAD },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        _cleanup_(freep) char *buf = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "c:o:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        a->sources.path = optarg;
                        a->sources.path_required = true;
                        break;
                case 'o':
                        free(buf);
                        buf = NULL;
                        if (asprintf(&buf, "-o %s", optarg) < 0)
                                return -ENOMEM;
                        r = add_override(a, optarg, buf);
                        if (r < 0)
                                return r;
                        break;
                case ARG_LISTEN:
                case ARG_STATE_DIRECTORY:
                        free(buf);
                        buf = NULL;
                        if (asprintf(&buf, "%s=%s", c == ARG_LISTEN ? "listen" : "state-directory", optarg) < 0)
                                return -ENOMEM;
                        r = add_override(a, buf, c == ARG_LISTEN ? "--listen" : "--state-directory");
                        if (r < 0)
                                return r;
                        break;
                case ARG_CHECK_CONFIG:
                        a->check_config = true;
                        break;
                case ARG_RELOAD:
                        a->reload = true;
                        break;
                case 'h':
                        help();
                        return 1;
                case ARG_VERSION:
                        printf("securechatd %s (protocol %d)\n", PACKAGE_VERSION, PROTOCOL_VERSION);
                        return 1;
                default:
                        fprintf(stderr, "Try '%s --help'.\n", program_invocation_short_name);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument '%s'. Try '%s --help'.\n",
                        program_invocation_short_name, argv[optind], program_invocation_short_name);
                return -EINVAL;
        }
        return 0;
}

/* --reload. The control socket's path comes from the configuration; if
 * the files do not load, from the options alone, so that the relay itself
 * gets to refuse them, with its reason and a reload-failed event. */
static int run_reload(const Args *a) {
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_(freep) char *error = NULL, *reason = NULL;
        const char *path = DEFAULT_CONTROL_SOCKET;
        int r;

        /* Lines on stderr, not sd_journal_sendv(): journald finds the unit
         * of a datagram by its sender's cgroup, after the fact, and this
         * process is gone by then; a stream is attributed when it opens
         * (mostly to the unit; on a loaded machine the process may not be
         * in its cgroup yet). The relay's own reload-failed entry always
         * carries the unit. */
        (void) unsetenv("JOURNAL_STREAM");
        log_open();

        r = config_load(&a->sources, &config, &error);
        if (r < 0) {
                r = config_new(&config);
                if (r < 0) {
                        log_error_errno(r, "Failed to set up: %m");
                        return EXIT_FAILURE;
                }
                /* Only control= matters here: the relay re-reads its own files
                 * and options, and reports what is wrong with them. */
                for (size_t i = 0; i < a->sources.n_overrides; i++) {
                        free(error);
                        error = NULL;
                        (void) config_parse_override(config, a->sources.overrides[i], a->sources.origins[i], &error);
                }
        }
        if (config->control)
                path = config->control;
        r = reload_request(path, 30 * USEC_PER_SEC, &reason);
        switch (r) {
        case 0:
                log_info("The relay reloaded its configuration.");
                return EXIT_SUCCESS;
        case -EBADE:
                log_error("The relay kept its old configuration: %s", reason ? reason : "no reason given");
                break;
        case -ENOENT:
        case -ECONNREFUSED:
                log_error("The relay is not running (no control socket at %s; -o control=PATH names another).",
                          path);
                break;
        case -EACCES:
        case -EPERM:
                log_error("Permission denied on the control socket %s: reloading needs root or the admin group.",
                          path);
                break;
        default:
                log_error_errno(r, "Cannot ask the relay to reload through %s: %m", path);
        }
        return EXIT_FAILURE;
}

int main(int argc, char *argv[]) {
        _cleanup_(args_done) Args args = {};
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(freep) char *error = NULL;
        Config *config = NULL;
        sigset_t mask;
        int r;

        /* Signals first: sd-event takes them through a signalfd, and none
         * may arrive the old way in between. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        /* A peer that hangs up must not kill us on the next write. */
        signal(SIGPIPE, SIG_IGN);
        umask(0077);
        log_open();

        r = parse_argv(argc, argv, &args);
        if (r < 0)
                return r == -ENOMEM ? EXIT_FAILURE : EXIT_USAGE;
        if (r > 0)
                return EXIT_SUCCESS;

        if (args.reload)
                return run_reload(&args);

        r = config_load(&args.sources, &config, &error);
        if (r < 0) {
                if (error)
                        log_error("Bad configuration: %s", error);
                else
                        log_error_errno(r, "Failed to load the configuration: %m");
                return EXIT_FAILURE;
        }
        if (args.check_config) {
                config_dump(config, stdout);
                config_free(config);
                return EXIT_SUCCESS;
        }
        log_set_max_level(config->log_level);

        r = manager_new(&args.sources, config, &m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                return EXIT_FAILURE;
        }
        r = manager_start(m);
        if (r >= 0)
                /* The control socket, on the one systemd passed or
                 * config->control. */
                r = control_start(m);
        if (r >= 0)
                r = manager_run(m);
        /* Before the manager goes: it uses it. */
        control_stop(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
