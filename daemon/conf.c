/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <libpq-fe.h>

#include "conf.h"
#include "log.h"
#include "macro.h"
#include "protocol.h"
#include "util.h"

/* One key: how to parse and print it, its range and default, the way
 * systemd-timesyncd's gperf table does it. An empty value ("key =") resets
 * the key to its default, so a drop-in can undo the main file. */
typedef struct ConfigItem ConfigItem;
typedef int (*ConfigParseFn)(const ConfigItem *it, const char *value, Config *c, void *data,
                             char *err, size_t errlen);
typedef void (*ConfigFormatFn)(const void *data, char *buf, size_t size);

struct ConfigItem {
        const char *section;
        const char *key;
        ConfigParseFn parse;
        ConfigFormatFn format;
        size_t offset;
        uint64_t min, max;
        const char *default_value;   /* NULL: unset (optional keys) */
};

/* ---- value syntaxes ---------------------------------------------------- */

static int parse_u64(const char **p, uint64_t *ret) {
        uint64_t v = 0;
        const char *s = *p;

        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        for (; isdigit((unsigned char) *s); s++) {
                unsigned d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *p = s;
        *ret = v;
        return 0;
}

int config_parse_duration(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                /* Longest first, so "ms" is not read as "m" + "s". */
                { "min", 60 * USEC_PER_SEC },
                { "ms", 1000 },
                { "us", 1 },
                { "s", USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC },
                { "d", 86400 * USEC_PER_SEC },
                { "w", 7 * 86400 * USEC_PER_SEC },
        };
        uint64_t total = 0;
        bool any = false;

        if (!s)
                return -EINVAL;
        for (;;) {
                uint64_t v, mult = 0;
                size_t n = 0;
                int r;

                while (*s == ' ')
                        s++;
                if (*s == '\0')
                        break;
                r = parse_u64(&s, &v);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                        n = strlen(units[i].suffix);
                        if (strncmp(s, units[i].suffix, n) == 0 && !isalpha((unsigned char) s[n])) {
                                mult = units[i].usec;
                                break;
                        }
                }
                if (mult == 0) {
                        /* A bare number is seconds, but only on its own. */
                        if (any || (*s != '\0' && *s != ' '))
                                return -EINVAL;
                        mult = USEC_PER_SEC;
                        n = 0;
                }
                s += n;
                if (v > UINT64_MAX / mult || total > UINT64_MAX - v * mult)
                        return -ERANGE;
                total += v * mult;
                any = true;
                if (n == 0)
                        break;
        }
        while (*s == ' ')
                s++;
        if (!any || *s != '\0')
                return -EINVAL;
        *ret_usec = total;
        return 0;
}

int config_parse_size(const char *s, uint64_t *ret) {
        uint64_t v, mult = 1;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_u64(&s, &v);
        if (r < 0)
                return r;
        switch (*s) {
        case 'K': case 'k': mult = UINT64_C(1) << 10; s++; break;
        case 'M': case 'm': mult = UINT64_C(1) << 20; s++; break;
        case 'G': case 'g': mult = UINT64_C(1) << 30; s++; break;
        default: break;
        }
        if (*s == 'B' && mult == 1)
                s++;
        if (*s != '\0')
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

int config_parse_bool(const char *s, bool *ret) {
        int r = parse_boolean(s);

        if (r < 0)
                return r;
        *ret = r;
        return 0;
}

char *config_format_duration(uint64_t usec, char *buf, size_t size) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "d", 86400 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },
                { "s", USEC_PER_SEC },
                { "ms", 1000 },
                { "us", 1 },
        };
        size_t len = 0;

        if (usec == 0) {
                snprintf(buf, size, "0");
                return buf;
        }
        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(units) && usec > 0; i++) {
                uint64_t n = usec / units[i].usec;
                if (n == 0)
                        continue;
                usec -= n * units[i].usec;
                if (len < size)
                        len += (size_t) snprintf(buf + len, size - len, "%" PRIu64 "%s", n,
                                                 units[i].suffix);
        }
        return buf;
}

char *config_format_size(uint64_t bytes, char *buf, size_t size) {
        if (bytes >= (UINT64_C(1) << 20) && bytes % (UINT64_C(1) << 20) == 0)
                snprintf(buf, size, "%" PRIu64 "M", bytes >> 20);
        else if (bytes >= 1024 && bytes % 1024 == 0)
                snprintf(buf, size, "%" PRIu64 "K", bytes >> 10);
        else
                snprintf(buf, size, "%" PRIu64, bytes);
        return buf;
}

uint64_t config_max_envelope_frame(uint64_t max_text) {
        uint64_t ct = config_max_ciphertext(max_text);
        /* The base64 of the ciphertext, plus everything else of the
         * largest send/deliver frame: ek and sig of a 4096-bit key (684
         * base64 characters each), id, iv and mac, two 32-byte user names,
         * the suite, numbers, member names and punctuation (under 2 KiB). */
        return (ct + 2) / 3 * 4 + 2048;
}

/* ---- parsers and printers ---------------------------------------------- */

#define FIELD(c, type, it) ((type *) ((uint8_t *) (c) + (it)->offset))

static int set_string(char **field, const char *value) {
        char *s = NULL;

        if (value) {
                s = strdup(value);
                if (!s)
                        return -ENOMEM;
        }
        free(*field);
        *field = s;
        return 0;
}

static int conf_parse_path(const ConfigItem *it, const char *value, Config *c, void *data,
                           char *err, size_t errlen) {
        if (!value) {   /* optional key reset to unset */
                free(*(char **) data);
                *(char **) data = NULL;
                return 0;
        }
        /* config_dump() prints "KEY = VALUE" on one line, and the parser
         * reads lines of at most INI_MAX_LINE - 1 characters: a longer
         * path would make --check-config print a file it cannot read. */
        if (strlen(it->key) + strlen(" = ") + strlen(value) > INI_MAX_LINE - 1) {
                snprintf(err, errlen, "path too long (at most %zu characters for %s)",
                         INI_MAX_LINE - 1 - strlen(it->key) - strlen(" = "), it->key);
                return -EINVAL;
        }
        /* config_dump() must print a file that reads back the same: no
         * line breaks or other control characters, and no ';' that inih
         * would take for an inline comment in "KEY = VALUE" (one at the
         * start or after whitespace; "KEY=;x" would otherwise set ";x"). */
        for (const char *p = value; *p; p++) {
                if ((unsigned char) *p < 0x20 || *p == 0x7f) {
                        snprintf(err, errlen, "control character in path");
                        return -EINVAL;
                }
                if (*p == ';' && (p == value || isspace((unsigned char) p[-1]))) {
                        snprintf(err, errlen, "a ';' after a space or first reads as a comment");
                        return -EINVAL;
                }
        }
        return set_string(data, value);
}

static void conf_format_string(const void *data, char *buf, size_t size) {
        const char *s = *(char *const *) data;
        snprintf(buf, size, "%s", s ? s : "");
}

/* "sqlite" (the state directory's file) or a PostgreSQL URI as libpq reads
 * it. Parsed here, never connected to: --check-config must say what is
 * wrong with the string on a machine that cannot reach the server. A
 * password has no place in a file many may read (database-password-file). */
static int conf_parse_database(const ConfigItem *it, const char *value, Config *c, void *data,
                               char *err, size_t errlen) {
        PQconninfoOption *opts;
        char *libpq_error = NULL;
        bool password = false;

        if (strcmp(value, "sqlite") == 0)
                return set_string(data, value);
        if (strncmp(value, "postgresql://", 13) != 0 && strncmp(value, "postgres://", 11) != 0) {
                snprintf(err, errlen, "expected sqlite or a postgresql:// URI");
                return -EINVAL;
        }
        opts = PQconninfoParse(value, &libpq_error);
        if (!opts) {
                /* Its first line, without the URI libpq quotes after " in
                 * URI", which may hold a password. */
                if (libpq_error) {
                        libpq_error[strcspn(libpq_error, "\n")] = '\0';
                        if (strstr(libpq_error, " in URI"))
                                *strstr(libpq_error, " in URI") = '\0';
                }
                snprintf(err, errlen, "not a PostgreSQL URI: %s", libpq_error ?: "out of memory");
                PQfreemem(libpq_error);
                return -EINVAL;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++)
                if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
                        password = true;
        PQconninfoFree(opts);
        if (password) {
                snprintf(err, errlen, "the password belongs in database-password-file or the "
                         "credential database-password, not in the configuration");
                return -EINVAL;
        }
        /* Last, as it sets the value: one line, no comment. */
        return conf_parse_path(it, value, c, data, err, errlen);
}

/* A node's name goes into journal fields, notification channel names and
 * scctl status: lower-case letters, digits and '-', at most 32. */
static int conf_parse_node_name(const ConfigItem *it, const char *value, Config *c, void *data,
                                char *err, size_t errlen) {
        size_t n = strlen(value);

        if (n == 0 || n > CONFIG_NODE_NAME_MAX || value[0] == '-' ||
            strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789-") != n) {
                snprintf(err, errlen, "expected lower-case letters, digits and '-' (at most %d)",
                         CONFIG_NODE_NAME_MAX);
                return -EINVAL;
        }
        return set_string(data, value);
}

static int conf_parse_listen(const ConfigItem *it, const char *value, Config *c, void *data,
                             char *err, size_t errlen) {
        SocketAddress a;

        if (socket_address_parse(value, &a) < 0) {
                snprintf(err, errlen, "expected ADDRESS:PORT, [IPV6]:PORT or PORT (numeric)");
                return -EINVAL;
        }
        if (set_string(data, value) < 0)
                return -ENOMEM;
        c->listen_address = a;
        return 0;
}

static int conf_parse_bool(const ConfigItem *it, const char *value, Config *c, void *data,
                           char *err, size_t errlen) {
        if (config_parse_bool(value, data) < 0) {
                snprintf(err, errlen, "expected yes or no");
                return -EINVAL;
        }
        return 0;
}

static void conf_format_bool(const void *data, char *buf, size_t size) {
        snprintf(buf, size, "%s", *(const bool *) data ? "yes" : "no");
}

static int conf_parse_key_bits(const ConfigItem *it, const char *value, Config *c, void *data,
                               char *err, size_t errlen) {
        if (strcmp(value, "2048") == 0)
                *(unsigned *) data = 2048;
        else if (strcmp(value, "3072") == 0)
                *(unsigned *) data = 3072;
        else if (strcmp(value, "4096") == 0)
                *(unsigned *) data = 4096;
        else {
                snprintf(err, errlen, "expected 2048, 3072 or 4096");
                return -EINVAL;
        }
        return 0;
}

static void conf_format_unsigned(const void *data, char *buf, size_t size) {
        snprintf(buf, size, "%u", *(const unsigned *) data);
}

static int conf_parse_registration(const ConfigItem *it, const char *value, Config *c,
                                   void *data, char *err, size_t errlen) {
        if (strcmp(value, "open") == 0)
                *(bool *) data = true;
        else if (strcmp(value, "closed") == 0)
                *(bool *) data = false;
        else {
                snprintf(err, errlen, "expected open or closed");
                return -EINVAL;
        }
        return 0;
}

static void conf_format_registration(const void *data, char *buf, size_t size) {
        snprintf(buf, size, "%s", *(const bool *) data ? "open" : "closed");
}

static int conf_parse_duration(const ConfigItem *it, const char *value, Config *c, void *data,
                               char *err, size_t errlen) {
        char lo[32], hi[32];
        uint64_t v;

        if (config_parse_duration(value, &v) < 0 || v < it->min || v > it->max) {
                snprintf(err, errlen, "expected a duration (like 30s, 5m, 2h, 7d, 1h30m) from %s to %s",
                         config_format_duration(it->min, lo, sizeof(lo)),
                         config_format_duration(it->max, hi, sizeof(hi)));
                return -ERANGE;
        }
        *(uint64_t *) data = v;
        return 0;
}

static void conf_format_duration(const void *data, char *buf, size_t size) {
        config_format_duration(*(const uint64_t *) data, buf, size);
}

static int conf_parse_number(const ConfigItem *it, const char *value, Config *c, void *data,
                             char *err, size_t errlen) {
        const char *p = value;
        uint64_t v;

        if (parse_u64(&p, &v) < 0 || *p != '\0' || v < it->min || v > it->max) {
                snprintf(err, errlen, "expected a number from %" PRIu64 " to %" PRIu64,
                         it->min, it->max);
                return -ERANGE;
        }
        *(uint64_t *) data = v;
        return 0;
}

static void conf_format_number(const void *data, char *buf, size_t size) {
        snprintf(buf, size, "%" PRIu64, *(const uint64_t *) data);
}

static int conf_parse_size(const ConfigItem *it, const char *value, Config *c, void *data,
                           char *err, size_t errlen) {
        char lo[32], hi[32];
        uint64_t v;

        if (config_parse_size(value, &v) < 0 || v < it->min || v > it->max) {
                snprintf(err, errlen, "expected a size in bytes (like 65536, 64K, 1M) from %s to %s",
                         config_format_size(it->min, lo, sizeof(lo)),
                         config_format_size(it->max, hi, sizeof(hi)));
                return -ERANGE;
        }
        *(uint64_t *) data = v;
        return 0;
}

static void conf_format_size(const void *data, char *buf, size_t size) {
        config_format_size(*(const uint64_t *) data, buf, size);
}

static int conf_parse_group(const ConfigItem *it, const char *value, Config *c, void *data,
                            char *err, size_t errlen) {
        /* The portable user/group name set (what useradd accepts). */
        size_t n = strlen(value);

        if (n == 0 || n > 32 || value[0] == '-' ||
            strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n) {
                snprintf(err, errlen, "expected a group name");
                return -EINVAL;
        }
        return set_string(data, value);
}

static int conf_parse_log_level(const ConfigItem *it, const char *value, Config *c, void *data,
                                char *err, size_t errlen) {
        int l = log_level_from_string(value);

        if (l < 0) {
                snprintf(err, errlen, "expected err, warning, notice, info or debug");
                return -EINVAL;
        }
        *(int *) data = l;
        return 0;
}

static void conf_format_log_level(const void *data, char *buf, size_t size) {
        snprintf(buf, size, "%s", log_level_to_string(*(const int *) data));
}

/* "10/s", "10/min", "5/h", "3/30s" or a bare number (per second); 0: no
 * limit. */
static int conf_parse_rate(const ConfigItem *it, const char *value, Config *c, void *data,
                           char *err, size_t errlen) {
        ConfigRate rate = { .period_usec = USEC_PER_SEC };
        const char *p = value;
        char period[32];

        if (parse_u64(&p, &rate.count) < 0 || rate.count > it->max)
                goto fail;
        if (*p == '/') {
                p++;
                if (*p == '\0')
                        goto fail;
                /* "/min" is "/1min". */
                snprintf(period, sizeof(period), "%s%s", isdigit((unsigned char) *p) ? "" : "1", p);
                if (config_parse_duration(period, &rate.period_usec) < 0 ||
                    rate.period_usec < 1000 || rate.period_usec > 86400 * USEC_PER_SEC)
                        goto fail;
        } else if (*p != '\0')
                goto fail;
        *(ConfigRate *) data = rate;
        return 0;
fail:
        snprintf(err, errlen, "expected a rate (like 10/s, 30/min, 100/h; 0 for no limit) of at most "
                 "%" PRIu64 " per period of 1ms to 1d", it->max);
        return -ERANGE;
}

static void conf_format_rate(const void *data, char *buf, size_t size) {
        const ConfigRate *r = data;
        char d[32];

        if (r->count == 0)
                snprintf(buf, size, "0");
        else if (r->period_usec == USEC_PER_SEC)
                snprintf(buf, size, "%" PRIu64 "/s", r->count);
        else if (r->period_usec == 60 * USEC_PER_SEC)
                snprintf(buf, size, "%" PRIu64 "/min", r->count);
        else if (r->period_usec == 3600 * USEC_PER_SEC)
                snprintf(buf, size, "%" PRIu64 "/h", r->count);
        else
                snprintf(buf, size, "%" PRIu64 "/%s", r->count,
                         config_format_duration(r->period_usec, d, sizeof(d)));
}

/* A number from min to max, or a percentage "1%".."100%". */
static int conf_parse_share(const ConfigItem *it, const char *value, Config *c, void *data,
                            char *err, size_t errlen) {
        ConfigShare share = {};
        const char *p = value;

        if (parse_u64(&p, &share.value) < 0)
                goto fail;
        if (*p == '%') {
                share.percent = true;
                p++;
                if (share.value < 1 || share.value > 100)
                        goto fail;
        } else if (share.value < it->min || share.value > it->max)
                goto fail;
        if (*p != '\0')
                goto fail;
        *(ConfigShare *) data = share;
        return 0;
fail:
        snprintf(err, errlen, "expected a number from %" PRIu64 " to %" PRIu64 " or a percentage "
                 "from 1%% to 100%%", it->min, it->max);
        return -ERANGE;
}

static void conf_format_share(const void *data, char *buf, size_t size) {
        const ConfigShare *s = data;
        snprintf(buf, size, "%" PRIu64 "%s", s->value, s->percent ? "%" : "");
}

/* Networks separated by spaces or commas; empty: none. */
static int conf_parse_networks(const ConfigItem *it, const char *value, Config *c, void *data,
                               char *err, size_t errlen) {
        ConfigNetworks *nets = data;
        _cleanup_(freep) char *copy = NULL;
        _cleanup_(freep) SocketCidr *list = NULL;
        size_t n = 0;
        char *state = NULL;

        copy = strdup(value ?: "");
        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, " \t,", &state); w; w = strtok_r(NULL, " \t,", &state)) {
                SocketCidr *l;

                if (n >= 64) {
                        snprintf(err, errlen, "more than 64 networks");
                        return -EINVAL;
                }
                l = reallocarray(list, n + 1, sizeof(*list));
                if (!l)
                        return -ENOMEM;
                list = l;
                if (socket_cidr_parse(w, &list[n]) < 0) {
                        snprintf(err, errlen, "expected networks like 192.0.2.0/24 or 2001:db8::/32, "
                                 "separated by spaces");
                        return -EINVAL;
                }
                n++;
        }
        free(nets->items);
        nets->items = TAKE_PTR(list);
        nets->n = n;
        return 0;
}

static void conf_format_networks(const void *data, char *buf, size_t size) {
        const ConfigNetworks *nets = data;
        size_t len = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < nets->n && len < size; i++) {
                char net[SOCKET_ADDRESS_MAX];

                len += (size_t) snprintf(buf + len, size - len, "%s%s", i > 0 ? " " : "",
                                         socket_cidr_format(&nets->items[i], net));
        }
}

bool config_address_trusted(const Config *c, const struct sockaddr *sa) {
        for (size_t i = 0; i < c->trusted_networks.n; i++)
                if (socket_cidr_match(&c->trusted_networks.items[i], sa))
                        return true;
        return false;
}

#define USEC(s) ((uint64_t) (s) * USEC_PER_SEC)

static const ConfigItem config_items[] = {
        { "server", "listen", conf_parse_listen, conf_format_string,
          offsetof(Config, listen), 0, 0, DEFAULT_LISTEN },
        { "server", "control", conf_parse_path, conf_format_string,
          offsetof(Config, control), 0, 0, DEFAULT_CONTROL_SOCKET },
        { "server", "state-directory", conf_parse_path, conf_format_string,
          offsetof(Config, state_directory), 0, 0, DEFAULT_STATE_DIRECTORY },
        { "server", "database", conf_parse_database, conf_format_string,
          offsetof(Config, database), 0, 0, "sqlite" },
        { "server", "database-password-file", conf_parse_path, conf_format_string,
          offsetof(Config, database_password_file), 0, 0, NULL },
        { "server", "database-timeout", conf_parse_duration, conf_format_duration,
          offsetof(Config, database_timeout_usec), USEC(1), USEC(300), "5s" },
        { "server", "node-name", conf_parse_node_name, conf_format_string,
          offsetof(Config, node_name), 0, 0, NULL },
        { "server", "node-timeout", conf_parse_duration, conf_format_duration,
          offsetof(Config, node_timeout_usec), USEC(3), USEC(3600), "15s" },
        { "server", "tls", conf_parse_bool, conf_format_bool,
          offsetof(Config, tls), 0, 0, "yes" },
        { "server", "tls-certificate", conf_parse_path, conf_format_string,
          offsetof(Config, tls_certificate), 0, 0, NULL },
        { "server", "tls-key", conf_parse_path, conf_format_string,
          offsetof(Config, tls_key), 0, 0, NULL },
        { "server", "identity-key", conf_parse_path, conf_format_string,
          offsetof(Config, identity_key), 0, 0, NULL },
        { "server", "key-bits", conf_parse_key_bits, conf_format_unsigned,
          offsetof(Config, key_bits), 0, 0, "3072" },
        { "server", "registration", conf_parse_registration, conf_format_registration,
          offsetof(Config, registration_open), 0, 0, "open" },
        { "server", "handshake-timeout", conf_parse_duration, conf_format_duration,
          offsetof(Config, handshake_timeout_usec), USEC(1), USEC(3600), "30s" },
        { "server", "idle-timeout", conf_parse_duration, conf_format_duration,
          offsetof(Config, idle_timeout_usec), USEC(1), USEC(7 * 86400), "300s" },
        { "server", "max-sessions", conf_parse_number, conf_format_number,
          offsetof(Config, max_sessions), 1, 1000000, "1024" },
        { "server", "max-sessions-per-user", conf_parse_number, conf_format_number,
          offsetof(Config, max_sessions_per_user), 1, 1024, "8" },
        { "server", "max-watches", conf_parse_number, conf_format_number,
          offsetof(Config, max_watches), 0, 100000, "1000" },
        { "server", "max-connections-per-address", conf_parse_number, conf_format_number,
          offsetof(Config, max_connections_per_address), 1, 1000000, "64" },
        { "server", "max-preauth-per-address", conf_parse_number, conf_format_number,
          offsetof(Config, max_preauth_per_address), 1, 1000000, "16" },
        { "server", "connection-rate", conf_parse_rate, conf_format_rate,
          offsetof(Config, connection_rate), 0, 1000000, "10/s" },
        { "server", "connection-burst", conf_parse_number, conf_format_number,
          offsetof(Config, connection_burst), 1, 1000000, "30" },
        { "server", "registration-rate", conf_parse_rate, conf_format_rate,
          offsetof(Config, registration_rate), 0, 1000000, "10/min" },
        { "server", "registration-burst", conf_parse_number, conf_format_number,
          offsetof(Config, registration_burst), 1, 1000000, "10" },
        { "server", "message-rate", conf_parse_rate, conf_format_rate,
          offsetof(Config, message_rate), 0, 1000000, "10/s" },
        { "server", "message-burst", conf_parse_number, conf_format_number,
          offsetof(Config, message_burst), 1, 1000000, "50" },
        { "server", "queue-limit-per-sender", conf_parse_share, conf_format_share,
          offsetof(Config, queue_limit_per_sender), 1, 10000000, "25%" },
        { "server", "trusted-networks", conf_parse_networks, conf_format_networks,
          offsetof(Config, trusted_networks), 0, 0, "" },
        { "server", "max-frame", conf_parse_size, conf_format_size,
          offsetof(Config, max_frame), 4096, MAX_FRAME_LIMIT, "65536" },
        { "server", "max-text", conf_parse_size, conf_format_size,
          offsetof(Config, max_text), 1, MAX_FRAME_LIMIT, "16384" },
        { "server", "queue-ttl", conf_parse_duration, conf_format_duration,
          offsetof(Config, queue_ttl_usec), USEC(1), USEC(366 * 86400), "7d" },
        { "server", "queue-limit", conf_parse_number, conf_format_number,
          offsetof(Config, queue_limit), 1, 10000000, "1000" },
        { "server", "max-prekeys", conf_parse_number, conf_format_number,
          offsetof(Config, max_prekeys), 1, 100000, "200" },
        { "server", "max-session-memory", conf_parse_size, conf_format_size,
          offsetof(Config, max_session_memory), 64 * 1024, UINT64_C(1) << 32, "1M" },
        { "server", "max-memory", conf_parse_size, conf_format_size,
          offsetof(Config, max_memory), 1024 * 1024, UINT64_C(1) << 40, "256M" },
        { "server", "queue-max-bytes", conf_parse_size, conf_format_size,
          offsetof(Config, queue_max_bytes), 64 * 1024, UINT64_C(1) << 50, "1024M" },
        { "server", "min-free-disk", conf_parse_size, conf_format_size,
          offsetof(Config, min_free_disk), 0, UINT64_C(1) << 50, "64M" },
        { "server", "admin-group", conf_parse_group, conf_format_string,
          offsetof(Config, admin_group), 0, 0, DEFAULT_ADMIN_GROUP },
        { "server", "log-level", conf_parse_log_level, conf_format_log_level,
          offsetof(Config, log_level), 0, 0, "info" },
};

/* systemd sets $STATE_DIRECTORY (colon-separated when several) from
 * StateDirectory=; it is the default, files and flags still override. */
static int default_state_directory(char **ret) {
        const char *e = getenv("STATE_DIRECTORY");
        size_t n;

        if (!e || !*e) {
                *ret = strdup(DEFAULT_STATE_DIRECTORY);
                return *ret ? 0 : -ENOMEM;
        }
        n = strcspn(e, ":");
        *ret = strndup(e, n);
        return *ret ? 0 : -ENOMEM;
}

/* The host's name up to its first dot, lower-cased, other characters as
 * '-': what node-name defaults to. */
static int default_node_name(char **ret) {
        char host[HOST_NAME_MAX + 1] = "";
        size_t n;

        if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
                strcpy(host, "localhost");
        n = strcspn(host, ".");
        if (n > CONFIG_NODE_NAME_MAX)
                n = CONFIG_NODE_NAME_MAX;
        host[n] = '\0';
        for (char *p = host; *p; p++) {
                *p = (char) tolower((unsigned char) *p);
                if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789", *p))
                        *p = '-';
        }
        if (host[0] == '-')
                host[0] = 'x';
        *ret = strdup(host);
        return *ret ? 0 : -ENOMEM;
}

static int item_set(const ConfigItem *it, Config *c, const char *value, char *err, size_t errlen) {
        _cleanup_(freep) char *def = NULL;

        if (*value == '\0') {
                /* Reset to the default. */
                if (it->offset == offsetof(Config, state_directory)) {
                        if (default_state_directory(&def) < 0)
                                return -ENOMEM;
                        value = def;
                } else if (it->offset == offsetof(Config, node_name)) {
                        if (default_node_name(&def) < 0)
                                return -ENOMEM;
                        value = def;
                } else
                        value = it->default_value;   /* NULL: unset */
        }
        return it->parse(it, value, c, FIELD(c, void, it), err, errlen);
}

int config_new(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        char err[256];

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                int r = item_set(&config_items[i], c, "", err, sizeof(err));
                if (r < 0)
                        return r;   /* only ENOMEM: the defaults are valid */
        }
        *ret = TAKE_PTR(c);
        return 0;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->listen);
        free(c->control);
        free(c->state_directory);
        free(c->tls_certificate);
        free(c->tls_key);
        free(c->identity_key);
        free(c->admin_group);
        free(c->database);
        free(c->database_password_file);
        free(c->node_name);
        free(c->trusted_networks.items);
        free(c);
        return NULL;
}

static int config_error(char **ret_error, const char *origin, unsigned line, const char *fmt, ...)
        _printf_(4, 5);

static int config_error(char **ret_error, const char *origin, unsigned line, const char *fmt, ...) {
        _cleanup_(freep) char *msg = NULL;
        va_list ap;
        int r;

        if (!ret_error)
                return 0;
        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (line > 0)
                r = asprintf(ret_error, "%s:%u: %s", origin, line, msg);
        else
                r = asprintf(ret_error, "%s: %s", origin, msg);
        return r < 0 ? -ENOMEM : 0;
}

int config_set(Config *c, const char *section, const char *key, const char *value,
               const char *origin, unsigned line, char **ret_error) {
        char err[256] = "";
        int r;

        if (!section || strcmp(section, "server") != 0) {
                if (!section || !*section)
                        config_error(ret_error, origin, line,
                                     "Key '%s' outside of a section (expected [server])", key);
                else
                        config_error(ret_error, origin, line, "Unknown section [%s]", section);
                return -EINVAL;
        }
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];

                if (strcmp(it->key, key) != 0)
                        continue;
                if (!value) {
                        config_error(ret_error, origin, line, "Key '%s' needs a value", key);
                        return -EINVAL;
                }
                r = item_set(it, c, value, err, sizeof(err));
                if (r == -ENOMEM)
                        return r;
                if (r < 0 && it->offset == offsetof(Config, database))
                        /* It may hold a password: never repeated into a log. */
                        config_error(ret_error, origin, line, "Invalid value for %s: %s", key, err);
                else if (r < 0)
                        config_error(ret_error, origin, line, "Invalid value '%s' for %s: %s",
                                     value, key, err);
                if (r < 0) {
                        return r;
                }
                return 0;
        }
        config_error(ret_error, origin, line, "Unknown key '%s' in section [server]", key);
        return -EINVAL;
}

typedef struct ParseContext {
        Config *config;
        const char *path;       /* names the source in errors */
        FILE *f;                /* reading a file... */
        const char *text;       /* ...or a buffer (f == NULL) */
        size_t text_left;
        unsigned line;
        char *error;
        unsigned error_line;
        int error_code;
} ParseContext;

static void context_fail(ParseContext *ctx, int r, const char *fmt, ...) _printf_(3, 4);

static void context_fail(ParseContext *ctx, int r, const char *fmt, ...) {
        _cleanup_(freep) char *msg = NULL;
        va_list ap;

        if (ctx->error_code != 0)
                return;          /* the first error is the one to report */
        ctx->error_code = r;
        ctx->error_line = ctx->line;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (msg && asprintf(&ctx->error, "%s:%u: %s", ctx->path, ctx->line, msg) < 0)
                ctx->error = NULL;
}

static int context_getc(ParseContext *ctx) {
        if (ctx->f)
                return getc(ctx->f);
        if (ctx->text_left == 0)
                return EOF;
        ctx->text_left--;
        return (unsigned char) *ctx->text++;
}

/* Feeds inih line by line so that the handler knows the line it is on, and
 * refuses what inih would silently cut or ignore. Reads byte by byte rather
 * than with fgets() so that a NUL byte is seen (fgets() would hide the
 * rest of the line behind it) and so that files and buffers share it. */
static char *context_read_line(char *str, int num, void *stream) {
        ParseContext *ctx = stream;
        const char *p;
        size_t n = 0;
        int ch = EOF;

        if (ctx->error_code != 0 || num < 2)
                return NULL;
        while (n < (size_t) num - 1) {
                ch = context_getc(ctx);
                if (ch == EOF || ch == '\0')
                        break;
                str[n++] = (char) ch;
                if (ch == '\n')
                        break;
        }
        if (n == 0 && ch == EOF)
                return NULL;
        str[n] = '\0';
        ctx->line++;
        if (ch == '\0') {
                context_fail(ctx, -EINVAL, "NUL byte");
                return NULL;
        }
        if (n == (size_t) num - 1 && ch != '\n') {
                /* The buffer is full: fine only if the line ends right here. */
                ch = context_getc(ctx);
                if (ch != '\n' && ch != EOF) {
                        context_fail(ctx, -EINVAL, "Line too long");
                        return NULL;
                }
        }
        /* Indentation means nothing here; to inih it would make the line
         * the continuation of the previous value. */
        n = strspn(str, " \t");
        if (n > 0)
                memmove(str, str + n, strlen(str + n) + 1);
        /* inih never reports a section with no keys: check headers here. */
        p = str;
        if (*p == '[') {
                n = strcspn(p + 1, "]");
                if (p[1 + n] == ']' && !(n == strlen("server") && strncmp(p + 1, "server", n) == 0))
                        context_fail(ctx, -EINVAL, "Unknown section [%.*s]", (int) n, p + 1);
        }
        return str;
}

static int context_handler(void *user, const char *section, const char *name, const char *value) {
        ParseContext *ctx = user;
        _cleanup_(freep) char *error = NULL;
        int r;

        if (ctx->error_code != 0)
                return 0;
        if (!name)         /* a section header, when inih reports those */
                return 1;
        r = config_set(ctx->config, section, name, value, ctx->path, ctx->line, &error);
        if (r < 0) {
                ctx->error_code = r;
                ctx->error_line = ctx->line;
                ctx->error = TAKE_PTR(error);
                return 0;
        }
        return 1;
}

/* What files and buffers share: run inih over ctx, pick the first error. */
static int context_parse(ParseContext *ctx, char **ret_error) {
        int r;

        r = ini_parse_stream(context_read_line, ctx, context_handler, ctx);
        if (ctx->f && ferror(ctx->f))
                context_fail(ctx, -EIO, "Read error");

        if (ctx->error_code == 0 && r > 0)
                context_fail(ctx, -EINVAL, "Syntax error (expected KEY = VALUE or [server])");
        else if (ctx->error_code == 0 && r < 0)
                ctx->error_code = -ENOMEM;
        else if (ctx->error_code != 0 && r > 0 && (unsigned) r < ctx->error_line) {
                /* A syntax error came before the first value error. */
                free(ctx->error);
                ctx->error = NULL;
                if (asprintf(&ctx->error, "%s:%d: Syntax error (expected KEY = VALUE or [server])",
                             ctx->path, r) < 0)
                        ctx->error = NULL;
        }

        if (ctx->error_code != 0) {
                if (ret_error && ctx->error)
                        *ret_error = TAKE_PTR(ctx->error);
                free(ctx->error);
                ctx->error = NULL;
                r = ctx->error_code;
                return r == -ENOMEM || r == -EIO ? r : -EINVAL;
        }
        return 0;
}

int config_parse_file(Config *c, const char *path, char **ret_error) {
        ParseContext ctx = { .config = c, .path = path };
        int r;

        ctx.f = fopen(path, "re");
        if (!ctx.f) {
                r = -errno;
                if (r != -ENOENT)
                        config_error(ret_error, path, 0, "%s", strerror(-r));
                return r;
        }
        r = context_parse(&ctx, ret_error);
        fclose(ctx.f);
        return r;
}

int config_parse_string(Config *c, const char *name, const char *text, size_t len,
                        char **ret_error) {
        ParseContext ctx = { .config = c, .path = name, .text = text, .text_left = len };

        return context_parse(&ctx, ret_error);
}

int config_parse_override(Config *c, const char *assignment, const char *origin,
                          char **ret_error) {
        _cleanup_(freep) char *key = NULL, *value = NULL;
        const char *eq;
        size_t n;

        assignment += strspn(assignment, " \t");
        eq = strchr(assignment, '=');
        if (!eq || eq == assignment) {
                config_error(ret_error, origin, 0, "Expected KEY=VALUE");
                return -EINVAL;
        }
        /* Trim like the files do: "-o 'max-frame = 1M'" works too. */
        n = (size_t) (eq - assignment);
        while (n > 0 && isspace((unsigned char) assignment[n - 1]))
                n--;
        key = strndup(assignment, n);
        if (!key)
                return -ENOMEM;
        eq++;
        eq += strspn(eq, " \t");
        n = strlen(eq);
        while (n > 0 && isspace((unsigned char) eq[n - 1]))
                n--;
        value = strndup(eq, n);
        if (!value)
                return -ENOMEM;
        return config_set(c, "server", key, value, origin, 0, ret_error);
}

int config_verify(const Config *c, char **ret_error) {
        char a[32], b[32], n[32];

        if (config_max_envelope_frame(c->max_text) > c->max_frame) {
                config_error(ret_error, "configuration", 0,
                             "max-text = %s does not fit in max-frame = %s (a message of that "
                             "size needs frames of up to %s bytes)",
                             config_format_size(c->max_text, a, sizeof(a)),
                             config_format_size(c->max_frame, b, sizeof(b)),
                             config_format_size(config_max_envelope_frame(c->max_text), n, sizeof(n)));
                return -EINVAL;
        }
        if (!!c->tls_certificate != !!c->tls_key) {
                config_error(ret_error, "configuration", 0,
                             "tls-certificate and tls-key must be set together");
                return -EINVAL;
        }
        return 0;
}

char *config_dropin_dir(const char *main_path) {
        const char *slash = strrchr(main_path, '/');
        char *d = NULL;

        if (!slash)
                return strdup(CONFIG_DROPIN_DIR_NAME);
        if (asprintf(&d, "%.*s/%s", (int) (slash - main_path), main_path, CONFIG_DROPIN_DIR_NAME) < 0)
                return NULL;
        return d;
}

static int dropin_filter(const struct dirent *de) {
        size_t n = strlen(de->d_name);

        return de->d_name[0] != '.' && n > 5 && strcmp(de->d_name + n - 5, ".conf") == 0;
}

/* Lexical order by bytes, whatever the locale says. */
static int dropin_compare(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int config_parse_dropins(Config *c, const char *dir, char **ret_error) {
        struct dirent **list = NULL;
        int n, r = 0;

        n = scandir(dir, &list, dropin_filter, dropin_compare);
        if (n < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0;
                r = -errno;
                config_error(ret_error, dir, 0, "%s", strerror(-r));
                return r;
        }
        for (int i = 0; i < n; i++) {
                _cleanup_(freep) char *path = NULL;
                struct stat st;

                if (r >= 0 && asprintf(&path, "%s/%s", dir, list[i]->d_name) < 0)
                        r = -ENOMEM;
                /* Directories and the like ending in .conf are not drop-ins. */
                if (r >= 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
                        r = config_parse_file(c, path, ret_error);
                free(list[i]);
        }
        free(list);
        return r;
}

int config_load(const ConfigSources *src, Config **ret, char **ret_error) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *dropins = NULL;
        const char *path = src && src->path ? src->path : CONFIG_FILE;
        int r;

        r = config_new(&c);
        if (r < 0)
                return r;

        r = config_parse_file(c, path, ret_error);
        if (r == -ENOENT && src && src->path_required)
                config_error(ret_error, path, 0, "%s", strerror(ENOENT));
        if (r < 0 && (r != -ENOENT || (src && src->path_required)))
                return r;

        dropins = config_dropin_dir(path);
        if (!dropins)
                return -ENOMEM;
        r = config_parse_dropins(c, dropins, ret_error);
        if (r < 0)
                return r;

        for (size_t i = 0; src && i < src->n_overrides; i++) {
                r = config_parse_override(c, src->overrides[i],
                                          src->origins && src->origins[i] ? src->origins[i] : "-o",
                                          ret_error);
                if (r < 0)
                        return r;
        }

        r = config_verify(c, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

int config_format_key(const Config *c, const char *key, char *buf, size_t size) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];

                if (strcmp(it->key, key) == 0) {
                        it->format(FIELD(c, const void, it), buf, size);
                        return 0;
                }
        }
        return -ENOENT;
}

void config_dump(const Config *c, FILE *f) {
        fputs("[server]\n", f);
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                char buf[4200];

                it->format(FIELD(c, const void, it), buf, sizeof(buf));
                fprintf(f, "%s =%s%s\n", it->key, buf[0] ? " " : "", buf);
        }
}
