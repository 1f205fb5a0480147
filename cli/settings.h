/* SPDX-License-Identifier: MIT */
/*
 * Where scctl connects, as whom, and where its state lives: the command
 * line wins over the environment (SECURECHAT_SERVER, SECURECHAT_USER,
 * SECURECHAT_HOME), which wins over the config file (scctl.conf, INI:
 * server=, user=, tls=, replay-window=, prekey-retention=,
 * require-suite2=), which wins over the defaults.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "protocol.h"

typedef struct Settings {
        /* From the command line; NULL or -1 when not given. */
        char *arg_server;
        char *arg_user;
        char *arg_home;
        char *arg_config;
        int arg_tls;
        char *server_fingerprint;       /* --server-fingerprint */
        uint64_t timeout_usec;          /* --timeout */
        char *arg_control;              /* --control: the relay's control socket */
        bool json;
        char *arg_code;                 /* init --code: a key reset's one-time code */

        /* Filled by settings_resolve(). */
        char *host;                     /* without brackets, lower case */
        uint16_t port;
        char *address;                  /* "host:port" or "[v6]:port": the known_servers key */
        char *user;
        char *home;
        bool tls;
        uint64_t replay_window;         /* seconds: older envelopes are refused */
        uint64_t prekey_retention;      /* seconds a retired SPK's private half is kept */
        bool require_suite2;            /* never send suite 1 */
} Settings;

#define SETTINGS_INIT { .arg_tls = -1 }
#define DEFAULT_SERVER "localhost"
#define DEFAULT_TIMEOUT_SEC 30
/* The replay window is ours, never the relay's (whose queue_ttl is not
 * signed): by default the relay's default queue lifetime. */
#define DEFAULT_REPLAY_WINDOW_SEC DEFAULT_QUEUE_TTL
#define REPLAY_WINDOW_MIN_SEC 60
#define REPLAY_WINDOW_MAX_SEC (366u * 24 * 3600)

/* A retired signed prekey may still be named by messages queued at the
 * relay, for at most its queue lifetime (the relay's default; the page says
 * how to raise this for a relay that keeps them longer), sealed by a
 * sender whose clock or bundle may be a little behind: a day of margin. */
#define DEFAULT_PREKEY_RETENTION_SEC (DEFAULT_QUEUE_TTL + 24u * 3600)
#define PREKEY_RETENTION_MAX_SEC (366u * 24 * 3600)

/* "N" seconds, or N with s, m, h or d; within min..max seconds. */
int parse_duration(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
/* The same within the bounds of the replay window above. */
int parse_replay_window(const char *s, uint64_t *ret);

void settings_done(Settings *s);

/* Apply the environment, the config file and the defaults. Reports
 * problems on stderr and returns -EINVAL (bad values, bad config file)
 * or another -errno. */
int settings_resolve(Settings *s);

/* "HOST[:PORT]", "[V6ADDR]:PORT", "[V6ADDR]" or a bare IPv6 address. The
 * host is lowered; port defaults to DEFAULT_PORT. -EINVAL when malformed. */
int server_parse(const char *s, char **ret_host, uint16_t *ret_port);

/* The canonical "host:port" form ("[::1]:5000" for IPv6). */
int server_address(const char *host, uint16_t port, char **ret);

/* The default state directory: $XDG_DATA_HOME/securechat, or
 * ~/.local/share/securechat. And the default config file. */
int default_home_dir(char **ret);
int default_config_path(char **ret);
