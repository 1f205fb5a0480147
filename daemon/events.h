/* SPDX-License-Identifier: MIT */
/*
 * Every audit event securechatd emits, in one table. Each kind has a fixed
 * 128-bit MESSAGE_ID (journalctl MESSAGE_ID=..., and the journald catalog
 * is generated from this table), a default priority and a short
 * description. A MESSAGE_ID never changes once released: a new meaning gets
 * a new id (generate one with `systemd-id128 new`).
 *
 * Columns: kind, name (SC_EVENT=), MESSAGE_ID, priority, description.
 *
 * Routine per-message events are LOG_DEBUG, so that the default log-level
 * (info) leaves them out: three journal entries per message would also
 * count against journald's rate limit, which would then drop the security
 * events beside them under load. A message deleted undelivered
 * (message-expired) is something an operator wants to see: NOTICE.
 */
#pragma once

#include <syslog.h>

#define EVENT_TABLE(X)                                                          \
        X(EVENT_START, "start", "31358afcfee74cf8aa31d13ba980d01f", LOG_NOTICE, \
          "The server started and is serving")                                  \
        X(EVENT_STOP, "stop", "e0254d0a74fb46638c15e78d19960f11", LOG_NOTICE,   \
          "The server stopped")                                                  \
        X(EVENT_RELOAD, "reload", "44d8ce2d0ce1486a8c4384c6c7dc52b1", LOG_INFO, \
          "The configuration was reloaded")                                      \
        X(EVENT_RELOAD_FAILED, "reload-failed", "851e06782ec04fed9fac8d824da9dae4", \
          LOG_ERR, "Reloading the configuration failed; the old one stays")     \
        X(EVENT_LISTENING, "listening", "66682256aa094feabb62b50165e095cf", LOG_INFO, \
          "The server listens on an address")                                    \
        X(EVENT_CONNECTION, "connection", "8c4bc8ff668e4b1c9b5d5bb0e0cbb06c", LOG_INFO, \
          "A client connected")                                                  \
        X(EVENT_HANDSHAKE_OK, "handshake-ok", "c53c9c831b9f401486999fd89c32ccc9", \
          LOG_INFO, "A user authenticated and a session started")               \
        X(EVENT_HANDSHAKE_FAILED, "handshake-failed", "e600b6208d614c86a88480649483d762", \
          LOG_NOTICE, "A connection failed the TLS or SecureChat handshake")    \
        X(EVENT_USER_REGISTERED, "user-registered", "c2b48b8da4374f7ebcf66f2e9d823ae6", \
          LOG_NOTICE, "A new user was registered with their key")               \
        X(EVENT_KEY_MISMATCH, "key-mismatch", "5e02e8a65cb94beda5c76a33bc216569", \
          LOG_WARNING, "A login presented a key other than the registered one (impersonation attempt?)") \
        X(EVENT_SESSION_END, "session-end", "eb2ec37e7e0b4b87af6068a3ebfb6b8a", \
          LOG_INFO, "An authenticated session ended")                            \
        X(EVENT_MESSAGE_ACCEPTED, "message-accepted", "88debe8cca25469fb237d83968138d3e", \
          LOG_DEBUG, "A message was stored and is being forwarded to its online recipient") \
        X(EVENT_MESSAGE_QUEUED, "message-queued", "25b2843e22604809a9d9ef66b68d2222", \
          LOG_DEBUG, "A message was stored for a recipient who is offline")     \
        X(EVENT_MESSAGE_FORWARDED, "message-forwarded", "3a797ce9eddf41ca8ec75f7f2ac5833f", \
          LOG_DEBUG, "A stored message was sent to its recipient's session")    \
        X(EVENT_MESSAGE_DELIVERED, "message-delivered", "999d69d61d4f4066a03dbcf871ce4823", \
          LOG_DEBUG, "The recipient acknowledged a message; it was deleted")     \
        X(EVENT_MESSAGE_EXPIRED, "message-expired", "7d0b075d53b74965bc0f2b71377cc19e", \
          LOG_NOTICE, "A queued message reached queue-ttl and was deleted undelivered") \
        X(EVENT_LIMIT_HIT, "limit-hit", "7647402bd2244ff48934b41318d70685", LOG_WARNING, \
          "A configured limit refused a connection, session or message")        \
        X(EVENT_PROTOCOL_ERROR, "protocol-error", "4d98eeb5cf974f8da9088912d2b2e2d0", \
          LOG_NOTICE, "A client sent a malformed or unexpected frame")          \
        X(EVENT_USER_KICKED, "user-kicked", "13e1aacd85d74aeebf8ba116aab0794b", \
          LOG_NOTICE, "An administrator closed a user's sessions")              \
        X(EVENT_KEY_ROTATED, "key-rotated", "0401f8137d204d999cbc457c9fffd766", LOG_NOTICE, \
          "A user replaced their key with one the old key vouched for")        \
        X(EVENT_KEY_RESET, "key-reset", "f852de0b95274096ae6b2fcc292145fa", LOG_NOTICE, \
          "An administrator removed a user's registered key")                    \
        X(EVENT_MESSAGES_DROPPED, "messages-dropped", "a9befde3dfe847b9814f34a9d7f7c003", \
          LOG_NOTICE, "Messages queued for a user whose key was reset were dropped") \
        X(EVENT_CONTROL_DENIED, "control-denied", "b7dbb0e5586347879d11c25a33378b43", \
          LOG_WARNING, "A caller without permission used the control socket")   \
        X(EVENT_CONTROL_COMMAND, "control-command", "991016a9091d4942bf437df556bc5eae", \
          LOG_NOTICE, "An administrator ran a command that changes state")

typedef enum EventKind {
#define EVENT_ENUM(kind, name, id, prio, desc) kind,
        EVENT_TABLE(EVENT_ENUM)
#undef EVENT_ENUM
        _EVENT_MAX,
        EVENT_NONE = -1,        /* an ordinary log message, not an audit event */
} EventKind;

typedef struct EventInfo {
        const char *name;
        const char *message_id;   /* 32 lowercase hex digits */
        int priority;
        const char *description;
} EventInfo;

/* NULL for EVENT_NONE or out of range. */
const EventInfo *event_info(EventKind kind);
