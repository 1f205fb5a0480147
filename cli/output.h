/* SPDX-License-Identifier: MIT */
/*
 * What scctl tells the user, behind one interface with two back ends, as in
 * bgpctl's output.c/output_json.c: the human one (output.c) and the JSON one
 * (output-json.c, one object per line, every object with a "type" member).
 * Commands call the output_*() wrappers and never printf() results
 * themselves, so that --json covers every verb.
 *
 * Results go to stdout and are flushed at once (a script reading a pipe sees
 * each event as it happens). Diagnostics go to stderr as text, prefixed
 * "scctl: ", whatever the back end.
 *
 * New verbs (the admin verbs in admin.c) add members here and in both back
 * ends, or pass a JSON object they already have through output_object().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <syslog.h>

#include <json-c/json.h>

#include "macro.h"

typedef struct OutputMessage {
        const char *from;
        const char *to;
        const char *id;                 /* message id, base64 */
        uint64_t ts;                    /* the sender's timestamp */
        const char *text;               /* UTF-8, len bytes, NUL-terminated */
        size_t len;
} OutputMessage;

typedef struct OutputUser {
        const char *user;
        const char *fingerprint;
        unsigned suite;                 /* 1 or 2: what a message to the user goes in */
} OutputUser;

typedef enum OutputFingerprintKind {
        FINGERPRINT_OWN,                /* our identity */
        FINGERPRINT_PINNED,             /* a peer's key, pinned before */
        FINGERPRINT_NEW,                /* a peer's key, pinned just now */
} OutputFingerprintKind;

typedef struct Output {
        /* Receiving sessions (listen, inbox, connect). */
        void (*message)(const OutputMessage *m);
        void (*rejected)(const char *from, const char *id, const char *reason);
        /* event is "online" or "offline"; pinned is the locally pinned
         * fingerprint when it differs from fingerprint, else NULL. */
        void (*presence)(const char *event, const char *user, const char *fingerprint,
                         const char *pinned);
        void (*synced)(unsigned n_messages);
        /* A receiving session is up (listen, connect; again after each
         * reconnect): from now on messages arrive. */
        void (*connected)(const char *user, const char *server, const char *session);

        /* Sending. session: inside connect, where lines name the recipient. */
        void (*sent)(const char *to, const char *id, bool queued, bool session);
        void (*refused)(const char *to, const char *reason, const char *message);
        void (*receipt)(const char *to, const char *id, const char *status, bool session);

        /* One-shot results. */
        void (*users)(const OutputUser *users, size_t n);
        /* suite: for a peer, what a message to them goes in as far as is
         * known (OutputUser.suite); 0 for our own key. */
        void (*fingerprint)(const char *user, const char *fingerprint, OutputFingerprintKind kind,
                            unsigned suite);
        void (*registered)(const char *user, const char *server, const char *fingerprint,
                           bool created);
        void (*trusted)(const char *user, const char *old_fingerprint,
                        const char *new_fingerprint);

        /* Free-form text for humans (connect's /help); JSON ignores it. */
        void (*text)(const char *s);
        /* A ready JSON object (e.g. a control-socket reply): JSON prints it
         * as one line, the human back end as "key: value" lines. */
        void (*object)(json_object *o);
} Output;

extern const Output output_human;
extern const Output output_json;

/* The back end in use; output_setup() picks it. */
extern const Output *output;

/* Pick the back end. Colour is used only by the human one, only when
 * stdout is a terminal and NO_COLOR is unset or empty. */
void output_setup(bool json);
bool output_color(void);

/* Whether writing to stdout failed (a closed pipe, a full disk): then a
 * message was not shown and must not be acknowledged. */
bool output_broken(void);

/* An interactive session keeps an input line on the terminal: these hooks
 * run around every write to stdout or stderr so it can clear the line and
 * draw it again afterwards. NULL removes them. */
void output_set_hooks(void (*before)(void), void (*after)(void));
void output_begin(void);
void output_end(void);

/* Diagnostics on stderr, prefixed "scctl: ". %m is strerror(-err).
 * log_fail() returns the errno that stands for status (exit-codes.h), for
 * `return log_fail(EXIT_CONNECT, r, ...)`. */
int log_fail(int status, int err, const char *fmt, ...) _printf_(3, 4);

/* The other levels are macros over one function, as in the daemon's log.h,
 * so that a log_warning() reads the same in both programs and neither
 * name can be taken for a function the other defines. Warnings and
 * notices are always shown ("notice" says that nothing went wrong); debug
 * output only when $SECURECHAT_DEBUG is set and not empty. */
void output_log(int priority, const char *fmt, ...) _printf_(2, 3);
#define log_warning(...) output_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) output_log(LOG_NOTICE, __VA_ARGS__)
#define log_debug(...) output_log(LOG_DEBUG, __VA_ARGS__)

/* Text from the network made safe for a terminal: control characters (C0
 * except tab and newline, DEL, C1) are shown as \xNN or \uNNNN escapes.
 * Newlines are followed by indent spaces. Writes to f. */
void output_safe_text(FILE *f, const char *s, size_t len, unsigned indent);
