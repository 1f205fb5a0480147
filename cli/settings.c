/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exit-codes.h"
#include "output.h"
#include "protocol.h"
#include "settings.h"
#include "util.h"

void settings_done(Settings *s) {
        free(s->arg_server);
        free(s->arg_user);
        free(s->arg_home);
        free(s->arg_config);
        free(s->server_fingerprint);
        free(s->arg_control);
        free(s->arg_code);
        free(s->host);
        free(s->address);
        free(s->user);
        free(s->home);
        *s = (Settings) SETTINGS_INIT;
}

static int parse_port(const char *s, uint16_t *ret) {
        unsigned long v;
        char *end;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end || v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

/* Host names and address literals only: nothing that could escape a file
 * name (the host names a directory under peers/) or confuse a log line. A
 * host with a colon must be an IPv6 address (with an optional %zone). */
static bool host_valid(const char *h, size_t len) {
        char addr[INET6_ADDRSTRLEN];
        const char *zone;
        struct in6_addr a;
        size_t n;

        if (len == 0 || len > 253 || h[0] == '.' || h[0] == '-')
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) h[i]) && !strchr(".-_:%", h[i]))
                        return false;
        if (!memchr(h, ':', len))
                return !memchr(h, '%', len);
        zone = memchr(h, '%', len);
        n = zone ? (size_t) (zone - h) : len;
        if (n >= sizeof(addr) || (zone && n + 1 == len))
                return false;           /* too long, or an empty zone */
        memcpy(addr, h, n);
        addr[n] = '\0';
        return inet_pton(AF_INET6, addr, &a) == 1;
}

int server_parse(const char *s, char **ret_host, uint16_t *ret_port) {
        const char *host, *port = NULL;
        size_t host_len;
        uint16_t p = DEFAULT_PORT;
        char *h;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');

                if (!close)
                        return -EINVAL;
                host = s + 1;
                host_len = (size_t) (close - host);
                if (!memchr(host, ':', host_len))
                        return -EINVAL;
                if (close[1] == ':')
                        port = close + 2;
                else if (close[1])
                        return -EINVAL;
        } else {
                const char *colon = strchr(s, ':');

                host = s;
                if (colon && !strchr(colon + 1, ':')) {
                        host_len = (size_t) (colon - s);
                        port = colon + 1;
                } else
                        host_len = strlen(s);   /* a name, or a bare IPv6 address */
        }

        if (!host_valid(host, host_len))
                return -EINVAL;
        if (port && parse_port(port, &p) < 0)
                return -EINVAL;

        h = strndup(host, host_len);
        if (!h)
                return -ENOMEM;
        for (char *c = h; *c; c++)
                *c = (char) tolower((unsigned char) *c);
        *ret_host = h;
        *ret_port = p;
        return 0;
}

int server_address(const char *host, uint16_t port, char **ret) {
        char *a;

        if (asprintf(&a, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned) port) < 0)
                return -ENOMEM;
        *ret = a;
        return 0;
}

static const char *home_directory(void) {
        const char *h = getenv("HOME");
        struct passwd *pw;

        if (h && h[0] == '/')
                return h;
        pw = getpwuid(getuid());
        return pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
}

/* $VAR/securechat/suffix if $VAR is absolute (the XDG rule), else
 * ~/fallback/securechat/suffix. */
static int xdg_path(const char *var, const char *fallback, const char *suffix, char **ret) {
        const char *base = getenv(var), *home;
        char *p;
        int r;

        if (base && base[0] == '/')
                r = asprintf(&p, "%s/securechat%s", base, suffix);
        else {
                home = home_directory();
                if (!home)
                        return -ENOENT;
                r = asprintf(&p, "%s/%s/securechat%s", home, fallback, suffix);
        }
        if (r < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int default_home_dir(char **ret) {
        return xdg_path("XDG_DATA_HOME", ".local/share", "", ret);
}

int default_config_path(char **ret) {
        return xdg_path("XDG_CONFIG_HOME", ".config", "/scctl.conf", ret);
}

int parse_duration(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        static const struct { char unit; uint64_t sec; } units[] = {
                { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 },
        };
        unsigned long long v;
        uint64_t mult = 1;
        char *end;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0)
                return -EINVAL;
        if (*end) {
                size_t i;

                for (i = 0; i < ELEMENTSOF(units) && units[i].unit != *end; i++)
                        ;
                if (i == ELEMENTSOF(units) || end[1])
                        return -EINVAL;
                mult = units[i].sec;
        }
        if (v > max / mult || v * mult < min)
                return -EINVAL;
        *ret = v * mult;
        return 0;
}

int parse_replay_window(const char *s, uint64_t *ret) {
        return parse_duration(s, REPLAY_WINDOW_MIN_SEC, REPLAY_WINDOW_MAX_SEC, ret);
}

typedef struct ConfigFile {
        char *server;
        char *user;
        int tls;
        uint64_t replay_window;         /* 0: not set */
        uint64_t prekey_retention;      /* UINT64_MAX: not set */
        int require_suite2;             /* -1: not set */
        char error[160];        /* the first problem, for the message */
} ConfigFile;

static int config_handler(void *userdata, const char *section, const char *name, const char *value) {
        ConfigFile *c = userdata;
        char **field = NULL;

        if (!strempty(section)) {
                snprintf(c->error, sizeof(c->error), "unknown section [%s]", section);
                return 0;
        }
        if (streq(name, "server"))
                field = &c->server;
        else if (streq(name, "user"))
                field = &c->user;
        else if (streq(name, "tls")) {
                int b = parse_boolean(value);

                if (b < 0) {
                        snprintf(c->error, sizeof(c->error), "tls= takes yes or no, not \"%.40s\"", value);
                        return 0;
                }
                c->tls = b;
                return 1;
        } else if (streq(name, "require-suite2")) {
                int b = parse_boolean(value);

                if (b < 0) {
                        snprintf(c->error, sizeof(c->error),
                                 "require-suite2= takes yes or no, not \"%.40s\"", value);
                        return 0;
                }
                c->require_suite2 = b;
                return 1;
        } else if (streq(name, "prekey-retention")) {
                if (parse_duration(value, 0, PREKEY_RETENTION_MAX_SEC, &c->prekey_retention) < 0) {
                        snprintf(c->error, sizeof(c->error),
                                 "prekey-retention= takes a duration from 0 to 366d (like 8d), not \"%.40s\"",
                                 value);
                        return 0;
                }
                return 1;
        } else if (streq(name, "replay-window")) {
                if (parse_replay_window(value, &c->replay_window) < 0) {
                        snprintf(c->error, sizeof(c->error),
                                 "replay-window= takes a duration from 1m to 366d (like 7d), not \"%.40s\"",
                                 value);
                        return 0;
                }
                return 1;
        } else {
                snprintf(c->error, sizeof(c->error),
                         "unknown key \"%.40s\" (known: server, user, tls, replay-window, "
                         "prekey-retention, require-suite2)", name);
                return 0;
        }

        free(*field);
        *field = strdup(value);
        if (!*field) {
                snprintf(c->error, sizeof(c->error), "out of memory");
                return 0;
        }
        return 1;
}

static int config_file_load(const char *path, bool must_exist, ConfigFile *c) {
        int line;

        line = ini_parse(path, config_handler, c);
        if (line == -1) {
                if (!must_exist && access(path, F_OK) < 0 && errno == ENOENT)
                        return 0;
                return log_fail(EXIT_USAGE, errno, "Cannot read config file %s: %m", path);
        }
        if (line == -2)
                return log_fail(EXIT_FAIL, -ENOMEM, "Cannot read config file %s: %m", path);
        if (line != 0)
                return log_fail(EXIT_USAGE, 0, "%s:%d: %s; fix or remove that line.", path, line,
                                c->error[0] ? c->error : "syntax error");
        return 0;
}

static const char *env(const char *name) {
        const char *v = getenv(name);

        return strempty(v) ? NULL : v;
}

static int default_user(char **ret) {
        struct passwd *pw = getpwuid(getuid());

        if (!pw)
                return log_fail(EXIT_USAGE, 0, "Cannot find your login name; pass --user NAME.");
        if (!username_valid(pw->pw_name))
                return log_fail(EXIT_USAGE, 0,
                                "Your login name \"%s\" is not a valid SecureChat user name "
                                "(lower-case letters, digits, '.', '_', '-'; at most 32); pass --user NAME.",
                                pw->pw_name);
        *ret = strdup(pw->pw_name);
        return *ret ? 0 : log_fail(EXIT_FAIL, -ENOMEM, "%m");
}

int settings_resolve(Settings *s) {
        ConfigFile config = { .tls = -1, .prekey_retention = UINT64_MAX, .require_suite2 = -1 };
        _cleanup_(freep) char *config_path = NULL;
        const char *server, *user, *home, *source;
        int r;

        if (s->arg_config)
                r = config_file_load(s->arg_config, true, &config);
        else if (default_config_path(&config_path) >= 0)
                r = config_file_load(config_path, false, &config);
        else
                r = 0;
        if (r < 0)
                goto finish;

        /* Server. */
        if (s->arg_server) {
                server = s->arg_server;
                source = "--server";
        } else if ((server = env("SECURECHAT_SERVER")))
                source = "SECURECHAT_SERVER";
        else if ((server = config.server))
                source = "server= in the config file";
        else {
                server = DEFAULT_SERVER;
                source = "the default";
        }
        free(s->host);
        s->host = NULL;
        r = server_parse(server, &s->host, &s->port);
        if (r == -ENOMEM) {
                r = log_fail(EXIT_FAIL, r, "%m");
                goto finish;
        }
        if (r < 0) {
                r = log_fail(EXIT_USAGE, 0, "Invalid server \"%s\" (from %s); use HOST[:PORT] or [IPV6]:PORT.",
                             server, source);
                goto finish;
        }
        free(s->address);
        s->address = NULL;
        if (server_address(s->host, s->port, &s->address) < 0) {
                r = log_fail(EXIT_FAIL, -ENOMEM, "%m");
                goto finish;
        }

        /* User. */
        user = s->arg_user ?: env("SECURECHAT_USER") ?: config.user;
        free(s->user);
        s->user = NULL;
        if (user) {
                if (!username_valid(user)) {
                        r = log_fail(EXIT_USAGE, 0,
                                     "Invalid user name \"%s\": use lower-case letters, digits, '.', '_' "
                                     "and '-', starting with a letter or digit, at most 32 characters.",
                                     user);
                        goto finish;
                }
                s->user = strdup(user);
                if (!s->user) {
                        r = log_fail(EXIT_FAIL, -ENOMEM, "%m");
                        goto finish;
                }
        } else {
                r = default_user(&s->user);
                if (r < 0)
                        goto finish;
        }

        /* State directory. */
        free(s->home);
        s->home = NULL;
        home = s->arg_home ?: env("SECURECHAT_HOME");
        if (home) {
                /* Absolute, so that messages name the files unambiguously. */
                _cleanup_(freep) char *cwd = home[0] == '/' ? NULL : getcwd(NULL, 0);

                if (home[0] != '/' && !cwd) {
                        r = log_fail(EXIT_FAIL, -errno, "Cannot get the current directory: %m");
                        goto finish;
                }
                if (asprintf(&s->home, "%s%s%s", cwd ?: "", cwd ? "/" : "", home) < 0) {
                        s->home = NULL;
                        r = log_fail(EXIT_FAIL, -ENOMEM, "%m");
                        goto finish;
                }
        } else if (default_home_dir(&s->home) < 0) {
                r = log_fail(EXIT_USAGE, 0, "Cannot find your home directory; pass --home DIR.");
                goto finish;
        }

        /* TLS (no environment variable: the choice belongs to the server's
         * configuration, so it is in the config file or on the command line). */
        s->tls = s->arg_tls >= 0 ? s->arg_tls : config.tls >= 0 ? config.tls : true;

        s->replay_window = config.replay_window ?: DEFAULT_REPLAY_WINDOW_SEC;
        s->prekey_retention = config.prekey_retention != UINT64_MAX ? config.prekey_retention :
                              DEFAULT_PREKEY_RETENTION_SEC;
        s->require_suite2 = config.require_suite2 > 0;

        if (s->timeout_usec == 0)
                s->timeout_usec = DEFAULT_TIMEOUT_SEC * USEC_PER_SEC;
        r = 0;
finish:
        free(config.server);
        free(config.user);
        return r;
}
