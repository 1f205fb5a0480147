/* SPDX-License-Identifier: MIT */
/*
 * The daemon's one logging call. Every line goes through log_emit(): with
 * stderr connected to the journal ($JOURNAL_STREAM names stderr's device and
 * inode) it is sent with sd_journal_sendv() as structured fields (MESSAGE,
 * PRIORITY, MESSAGE_ID and SC_* for audit events); otherwise it is one line
 * on stderr, "securechatd[pid]: message (event=... user=... peer=...)".
 *
 * Audit events (events.h) carry metadata only: user names, peer addresses,
 * session ids, fingerprints, message ids, sizes. Never message text,
 * envelope contents, private keys or other secrets: callers pass nothing
 * else, and nothing a peer sent is logged except validated user names.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "events.h"
#include "macro.h"

/* The SC_* fields of an audit event; NULL / has_* false = absent. */
typedef struct LogFields {
        const char *user;          /* SC_USER: the session's or message's sender */
        const char *recipient;     /* SC_RECIPIENT: a message's "to" */
        const char *peer;          /* SC_PEER: "address:port" */
        const char *session;       /* SC_SESSION: session id (hex) */
        const char *fingerprint;   /* SC_FINGERPRINT: "SHA256:..." */
        const char *reason;        /* SC_REASON: why (failures, session ends) */
        const char *msg_id;        /* SC_MSG_ID: envelope id, base64 */
        const char *address;       /* SC_ADDRESS: a listening address */
        bool has_size;
        uint64_t size;             /* SC_SIZE: bytes */
        bool has_seq;
        uint64_t seq;              /* SC_SEQ: queue sequence number */
        bool has_duration;
        uint64_t duration_usec;    /* SC_DURATION: session length, in seconds */
} LogFields;

/* Called for every audit event that log-level lets through, and for the
 * others that wanted() asks for, after it was logged, with the formatted
 * message. Used to feed the control socket's Monitor subscribers, who see
 * every event. The hook must not log audit events itself (such events are
 * not handed to it again). */
typedef void (*LogEventHook)(void *userdata, EventKind kind, const LogFields *fields,
                             const char *message);
/* Whether the hook wants an event below log-level. Asked before anything
 * is formatted, so that an event nobody gets costs a call and no more;
 * it must be cheap and must not log. NULL: every event. */
typedef bool (*LogEventWanted)(void *userdata, EventKind kind);

/* Decide once where lines go (journal or stderr). Safe to call again. */
void log_open(void);
void log_set_max_level(int level);       /* LOG_ERR ... LOG_DEBUG */
int log_get_max_level(void);
void log_set_event_hook(LogEventHook hook, LogEventWanted wanted, void *userdata);
/* Every audit event from now on carries SC_NODE=name (the relay is one node
 * of several sharing a database); NULL: none. The name is copied (at most
 * 32 characters, as node-name allows). */
void log_set_node(const char *name);
const char *log_get_node(void);         /* NULL when none was set */

/* "err", "warning", "notice", "info", "debug" (and the other syslog names,
 * "error" and "warn"): the level, or -EINVAL. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* The one call. priority < 0 takes the event's priority from events.h.
 * kind EVENT_NONE logs an ordinary message (fields may be NULL). %m in the
 * format prints strerror(errno) as usual. */
void log_emit(int priority, EventKind kind, const LogFields *fields, const char *format, ...)
        _printf_(4, 5);

#define log_event(kind, ...) log_emit(-1, (kind), __VA_ARGS__)
#define log_full(priority, ...) log_emit((priority), EVENT_NONE, NULL, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)

/* Log with errno set from r (so %m works) and return r, made negative:
 * return log_error_errno(r, "Failed to open %s: %m", path); */
#define log_full_errno(priority, r, ...)                                        \
        ({                                                                      \
                int _e_ = (r) < 0 ? -(r) : (r);                                 \
                errno = _e_;                                                    \
                log_full((priority), __VA_ARGS__);                              \
                -_e_;                                                           \
        })
#define log_error_errno(r, ...) log_full_errno(LOG_ERR, (r), __VA_ARGS__)
#define log_warning_errno(r, ...) log_full_errno(LOG_WARNING, (r), __VA_ARGS__)
#define log_debug_errno(r, ...) log_full_errno(LOG_DEBUG, (r), __VA_ARGS__)
