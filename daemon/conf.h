/* SPDX-License-Identifier: MIT */
/*
 * securechatd's configuration: defaults, then the main file, then the
 * drop-ins securechatd.conf.d/NAME.conf (lexical order) from the main
 * file's directory, then command-line overrides. Keys live in section [server]; the parsers
 * are table-driven (see conf.c). Every error names where it came from:
 * "FILE:LINE: ..." or "-o KEY=VALUE: ...".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "constants.h"
#include "sockets.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define CONFIG_FILE SYSCONFDIR "/securechat/securechatd.conf"
#define CONFIG_DROPIN_DIR_NAME "securechatd.conf.d"

#define DEFAULT_LISTEN "127.0.0.1:5000"
#define DEFAULT_STATE_DIRECTORY "/var/lib/securechat"
#define DEFAULT_ADMIN_GROUP "securechat"
#define CONFIG_NODE_NAME_MAX 32

/* A rate: count events per period ("10/s", "5/min"); count 0 is no limit. */
typedef struct ConfigRate {
        uint64_t count;
        uint64_t period_usec;
} ConfigRate;

/* The time between two tokens of a rate, 0 for no limit. */
static inline uint64_t config_rate_interval(const ConfigRate *r) {
        if (r->count == 0)
                return 0;
        return r->period_usec / r->count > 0 ? r->period_usec / r->count : 1;
}

/* A part of another limit: a number, or a percentage of it ("25%"). */
typedef struct ConfigShare {
        uint64_t value;
        bool percent;
} ConfigShare;

/* trusted-networks. */
typedef struct ConfigNetworks {
        SocketCidr *items;
        size_t n;
} ConfigNetworks;

typedef struct Config {
        char *listen;                   /* "ADDRESS:PORT", as given */
        SocketAddress listen_address;   /* ...parsed */
        char *control;                  /* control socket path */
        char *state_directory;
        bool tls;
        char *tls_certificate;          /* NULL: self-signed in the state directory */
        char *tls_key;
        char *identity_key;             /* NULL: the credential, else the state directory's */
        unsigned key_bits;
        bool registration_open;
        uint64_t handshake_timeout_usec;
        uint64_t idle_timeout_usec;
        uint64_t max_sessions;
        uint64_t max_sessions_per_user;
        uint64_t max_watches;           /* users one session may watch */
        /* Per source address (IPv4 address, IPv6 /64). */
        uint64_t max_connections_per_address;
        uint64_t max_preauth_per_address;
        ConfigRate connection_rate;
        uint64_t connection_burst;
        ConfigRate registration_rate;
        uint64_t registration_burst;
        /* Per user. */
        ConfigRate message_rate;
        uint64_t message_burst;
        ConfigShare queue_limit_per_sender;     /* see config_queue_limit_per_sender() */
        ConfigNetworks trusted_networks;        /* exempt from the per-address limits */
        uint64_t max_frame;             /* bytes */
        uint64_t max_text;              /* bytes */
        uint64_t queue_ttl_usec;
        uint64_t queue_limit;           /* messages per recipient */
        uint64_t max_prekeys;           /* one-time prekeys kept per user */
        uint64_t max_session_memory;    /* bytes a session may make the relay hold */
        uint64_t max_memory;            /* ...all sessions together */
        uint64_t queue_max_bytes;       /* envelope bytes in the whole queue */
        uint64_t min_free_disk;         /* bytes; below, sends are refused */
        char *admin_group;
        int log_level;                  /* LOG_ERR .. LOG_DEBUG */
        /* Storage: "sqlite" (in the state directory) or a postgresql:// URI;
         * the password, when the server wants one, from this file or the
         * credential "database-password". A node's name tells it apart from
         * the other relays sharing one database; one whose heartbeat is
         * older than node-timeout counts as dead. */
        char *database;
        char *database_password_file;
        uint64_t database_timeout_usec; /* one round trip, before the database counts as away */
        char *node_name;
        uint64_t node_timeout_usec;
} Config;

/* Where a configuration comes from; kept by the daemon so that a reload
 * reads the same places again. */
typedef struct ConfigSources {
        const char *path;       /* main file; NULL = CONFIG_FILE */
        bool path_required;     /* -c given: a missing file is an error */
        char **overrides;       /* "KEY=VALUE" strings, applied in order */
        size_t n_overrides;
        char **origins;         /* per override, how to name it in errors ("-o", "--listen") */
} ConfigSources;

/* A new Config with every default. The default state directory is
 * $STATE_DIRECTORY (its first entry) when set. */
int config_new(Config **ret);
Config *config_free(Config *c);
static inline void config_freep(Config **c) { config_free(*c); }

/* Set one key of section [server]. origin/line name the source in errors
 * (line 0 = no line). On failure returns -EINVAL (unknown key), -ERANGE
 * or -EINVAL (bad value), -ENOMEM, with *ret_error a message for humans. */
int config_set(Config *c, const char *section, const char *key, const char *value,
               const char *origin, unsigned line, char **ret_error);

/* Parse one file. A missing file is -ENOENT (no message when missing_ok,
 * the caller decides). Syntax errors, unknown sections and keys, bad
 * values: -EINVAL with "FILE:LINE: ..." in *ret_error; a read error: -EIO. */
int config_parse_file(Config *c, const char *path, char **ret_error);

/* The same for len bytes of text (need not be NUL-terminated) named
 * name in errors. A NUL byte in the text is an error, as in a file. */
int config_parse_string(Config *c, const char *name, const char *text, size_t len,
                        char **ret_error);

/* Parse "KEY=VALUE" (a -o argument). */
int config_parse_override(Config *c, const char *assignment, const char *origin,
                          char **ret_error);

/* Checks across keys (max-text fits in max-frame, tls-certificate and
 * tls-key together). */
int config_verify(const Config *c, char **ret_error);

/* Everything: defaults, main file, drop-ins, overrides, verify. */
int config_load(const ConfigSources *src, Config **ret, char **ret_error);

/* The drop-in directory belonging to a main config file path (allocated). */
char *config_dropin_dir(const char *main_path);

/* The value of one key of section [server] as the configuration file
 * spells it; -ENOENT for an unknown key. */
int config_format_key(const Config *c, const char *key, char *buf, size_t size);

/* The effective configuration as a config file. */
void config_dump(const Config *c, FILE *f);

/* Value syntaxes, exported for tests and the control socket. */
int config_parse_duration(const char *s, uint64_t *ret_usec);   /* "30", "5m", "1h30m" */
int config_parse_size(const char *s, uint64_t *ret);            /* "65536", "64K", "1M" */
int config_parse_bool(const char *s, bool *ret);
char *config_format_duration(uint64_t usec, char *buf, size_t size);
char *config_format_size(uint64_t bytes, char *buf, size_t size);

/* The messages one sender may have queued for one recipient, from
 * queue-limit-per-sender: never more than queue-limit, at least one. */
static inline uint64_t config_queue_limit_per_sender(const Config *c) {
        uint64_t v = c->queue_limit_per_sender.percent
                ? c->queue_limit / 100 * c->queue_limit_per_sender.value +
                  c->queue_limit % 100 * c->queue_limit_per_sender.value / 100
                : c->queue_limit_per_sender.value;
        return v < 1 ? 1 : v > c->queue_limit ? c->queue_limit : v;
}

/* Is database= a PostgreSQL URI (not "sqlite")? */
static inline bool config_database_is_postgresql(const Config *c) {
        return c->database && strcmp(c->database, "sqlite") != 0;
}


/* Whether an address is in trusted-networks. */
bool config_address_trusted(const Config *c, const struct sockaddr *sa);

/* The largest ciphertext an envelope may carry for max_text bytes of text:
 * PKCS#7 always pads 1..8 bytes. */
static inline uint64_t config_max_ciphertext(uint64_t max_text) {
        return (max_text / 8 + 1) * 8;
}

/* An upper bound of the size of a send or deliver frame carrying an
 * envelope of max_text bytes of text (4096-bit keys, base64 and the JSON
 * around it). */
uint64_t config_max_envelope_frame(uint64_t max_text);
