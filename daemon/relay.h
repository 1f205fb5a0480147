/* SPDX-License-Identifier: MIT */
/*
 * The chat protocol on the server side (protocol.md sections 4 to 6): the
 * handshake as a per-session state machine, the registry, presence,
 * lookup, send/accepted, deliver/ack/receipt with flow control, ping and
 * bye. session.c calls in here when something happened on a connection.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"

/* The transport is ready (TLS done, or at once for plain TCP): send hello. */
void relay_transport_ready(Session *s);

/* One complete frame's payload arrived. */
void relay_frame(Session *s, const uint8_t *payload, size_t len);

/* s was closed; was_active: it had authenticated. */
void relay_session_closed(Session *s, bool was_active);

/* Push the rest of the online list, then (to a receiving session) queued
 * envelopes, while less than SESSION_PUMP_WATER waits in its output;
 * sends "synced" once the backlog of its login went out. */
void relay_pump(Session *s);
/* Is there more to push to s (presence list, queued envelopes) as soon
 * as its output drains below SESSION_PUMP_WATER? */
bool relay_has_more(const Session *s);

/* A deliver frame is at most this much larger than its envelope's JSON:
 * {"type":"deliver","seq":N,"envelope":...}. */
#define RELAY_DELIVER_OVERHEAD 64

/* A new envelope was queued for s's user. */
void relay_message_queued(Session *s);
