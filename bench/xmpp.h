/* SPDX-License-Identifier: MIT */
/*
 * The client side of sc-bench's Prosody reference rows: XMPP over direct
 * TLS (XEP-0368) on a Conn, a login (SASL PLAIN, a bound resource, initial
 * presence, stream management when asked), then raw stanzas written and
 * counted from one poll loop. Enough for a load, not a parser: it waits
 * for and counts elements by their opening bytes, which a server of known
 * output (Prosody, with no roster and no other traffic) makes unambiguous.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

typedef struct Xmpp {
        Conn *c;
        char in[65536];
        size_t len;
} Xmpp;

/* Connect to 127.0.0.1:port, TLS, log in as user@domain with password
 * and bind resource "bench". A receiver then says it is available (initial
 * presence), as a chat client does. A sender enables stream management
 * (XEP-0198), so that its <r/> gets an <a/> once the server has handled
 * what came before, and stays unavailable: the server sends it nothing
 * else. -EACCES when the server refuses the login. */
int xmpp_open(int port, const char *domain, const char *user, const char *password, bool sender, int timeout_ms,
              Xmpp **ret);
Xmpp *xmpp_free(Xmpp *x);
static inline void xmpp_freep(Xmpp **x) { xmpp_free(*x); }

/* Read what the socket has (non-blocking) and add to *count the times
 * needle came: 0, -EAGAIN when nothing was there, -EPIPE at EOF, -errno. */
int xmpp_read_count(Xmpp *x, const char *needle, uint64_t *count);
