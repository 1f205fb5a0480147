/* SPDX-License-Identifier: MIT */
/*
 * Where scctl connects, as whom, and where its state lives: the command
 * line wins over the environment (SECURECHAT_SERVER, SECURECHAT_USER,
 * SECURECHAT_HOME), which wins over the config file (scctl.conf, INI:
 * server=, user=, tls=, replay-window=), which wins over the defaults.
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
} Settings;

#define SETTINGS_INIT { .arg_tls = -1 }
#define DEFAULT_SERVER "localhost"
#define DEFAULT_TIMEOUT_SEC 30
/* The replay window is ours, never the relay's (whose queue_ttl is not
 * signed): by default the relay's default queue lifetime. */
#define DEFAULT_REPLAY_WINDOW_SEC DEFAULT_QUEUE_TTL
#define REPLAY_WINDOW_MIN_SEC 60
#define REPLAY_WINDOW_MAX_SEC (366u * 24 * 3600)

/* "N" seconds, or N with s, m, h or d; within the bounds above. */
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
