/* SPDX-License-Identifier: MIT */
/*
 * Every limit the relay enforces, in one table, so that each refusal is
 * counted under the same name that the journal (SC_REASON= of a limit-hit
 * event), `scctl status` and securechatd.conf(5) use. A limit with a
 * configuration key is named after it; the others are fixed by the relay
 * or the system (their value is not shown).
 *
 * Columns: kind, name, configuration key (NULL: not configurable).
 */
#pragma once

#define LIMIT_TABLE(X)                                                          \
        X(LIMIT_FILE_DESCRIPTORS, "file-descriptors", NULL)                    \
        X(LIMIT_MAX_SESSIONS, "max-sessions", "max-sessions")                  \
        X(LIMIT_MAX_SESSIONS_PER_USER, "max-sessions-per-user", "max-sessions-per-user") \
        X(LIMIT_MAX_WATCHES, "max-watches", "max-watches")                     \
        X(LIMIT_MAX_CONNECTIONS_PER_ADDRESS, "max-connections-per-address", "max-connections-per-address") \
        X(LIMIT_MAX_PREAUTH_PER_ADDRESS, "max-preauth-per-address", "max-preauth-per-address") \
        X(LIMIT_CONNECTION_RATE, "connection-rate", "connection-rate")         \
        X(LIMIT_REGISTRATION_RATE, "registration-rate", "registration-rate")   \
        X(LIMIT_MESSAGE_RATE, "message-rate", "message-rate")                  \
        X(LIMIT_QUEUE_LIMIT_PER_SENDER, "queue-limit-per-sender", "queue-limit-per-sender") \
        X(LIMIT_MAX_FRAME, "max-frame", "max-frame")                           \
        X(LIMIT_MAX_TEXT, "max-text", "max-text")                              \
        X(LIMIT_QUEUE_LIMIT, "queue-limit", "queue-limit")                     \
        X(LIMIT_MAX_PREKEYS, "max-prekeys", "max-prekeys")                     \
        X(LIMIT_MAX_SESSION_MEMORY, "max-session-memory", "max-session-memory") \
        X(LIMIT_MAX_MEMORY, "max-memory", "max-memory")                        \
        X(LIMIT_QUEUE_MAX_BYTES, "queue-max-bytes", "queue-max-bytes")         \
        X(LIMIT_MIN_FREE_DISK, "min-free-disk", "min-free-disk")               \
        X(LIMIT_CONTROL_CONNECTIONS, "control-connections", NULL)              \
        X(LIMIT_CONTROL_CONNECTIONS_PER_UID, "control-connections-per-uid", NULL)

typedef enum Limit {
#define LIMIT_ENUM(kind, name, key) kind,
        LIMIT_TABLE(LIMIT_ENUM)
#undef LIMIT_ENUM
        _LIMIT_MAX,
} Limit;

/* The limit's name (as in SC_REASON=), or NULL when out of range. */
const char *limit_name(Limit l);

/* Its securechatd.conf key, or NULL when it has none. */
const char *limit_config_key(Limit l);
