/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "macro.h"
#include "util.h"
#include "xmpp.h"

Xmpp *xmpp_free(Xmpp *x) {
        if (!x)
                return NULL;
        conn_free(x->c);
        free(x);
        return NULL;
}

static int xmpp_write(Xmpp *x, const char *s, uint64_t deadline) {
        int r = conn_queue(x->c, s, strlen(s));

        return r < 0 ? r : conn_flush_wait(x->c, deadline);
}

/* Read once into the buffer: 0, -EAGAIN, -EPIPE at EOF or -errno. The
 * buffer keeps a NUL after what it holds, for strstr(). */
static int xmpp_fill(Xmpp *x) {
        ssize_t n;

        /* Full: what is there was never going to match; keep the end,
         * where an element may be cut. */
        if (x->len >= sizeof(x->in) - 1) {
                memmove(x->in, x->in + x->len - 64, 64);
                x->len = 64;
        }
        n = transport_read(x->c->t, x->in + x->len, sizeof(x->in) - 1 - x->len);
        if (n == 0)
                return -EPIPE;
        if (n < 0)
                return (int) n;
        x->len += (size_t) n;
        x->in[x->len] = '\0';
        return 0;
}

/* Until needle has come (or failure, which the server sends instead: -EACCES);
 * everything up to the end of needle is dropped. */
static int xmpp_wait_for(Xmpp *x, const char *needle, const char *failure, uint64_t deadline) {
        for (;;) {
                char *p = strstr(x->in, needle);
                int r;

                if (failure && strstr(x->in, failure))
                        return -EACCES;
                if (p) {
                        size_t end = (size_t) (p - x->in) + strlen(needle);

                        memmove(x->in, x->in + end, x->len - end + 1);
                        x->len -= end;
                        return 0;
                }
                r = xmpp_fill(x);
                if (r == -EAGAIN)
                        r = conn_wait(x->c, deadline);
                if (r < 0)
                        return r;
        }
}

static int xmpp_stream(Xmpp *x, const char *domain, uint64_t deadline) {
        _cleanup_(freep) char *open = NULL;
        int r;

        if (asprintf(&open, "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xml:lang='en' "
                     "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", domain) < 0)
                return -ENOMEM;
        r = xmpp_write(x, open, deadline);
        return r < 0 ? r : xmpp_wait_for(x, "</stream:features>", NULL, deadline);
}

int xmpp_open(int port, const char *domain, const char *user, const char *password, bool sender, int timeout_ms,
              Xmpp **ret) {
        _cleanup_(xmpp_freep) Xmpp *x = NULL;
        _cleanup_(freep) char *plain = NULL, *b64 = NULL, *auth = NULL;
        uint64_t deadline = now_monotonic_usec() + (uint64_t) timeout_ms * 1000;
        size_t ul = strlen(user), pl = strlen(password);
        int r;

        x = calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        r = conn_open(port, true, timeout_ms, &x->c);
        if (r < 0)
                return r;
        r = xmpp_stream(x, domain, deadline);
        if (r < 0)
                return r;
        /* SASL PLAIN (RFC 4616): authzid empty, authcid, password. */
        plain = malloc(ul + pl + 2);
        if (!plain)
                return -ENOMEM;
        plain[0] = '\0';
        memcpy(plain + 1, user, ul);
        plain[1 + ul] = '\0';
        memcpy(plain + 2 + ul, password, pl);
        r = b64_encode(plain, ul + pl + 2, &b64);
        if (r < 0)
                return r;
        if (asprintf(&auth, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>", b64) < 0)
                return -ENOMEM;
        r = xmpp_write(x, auth, deadline);
        if (r >= 0)
                r = xmpp_wait_for(x, "<success", "<failure", deadline);
        /* A new stream after SASL (RFC 6120 6.4.6), then the resource. */
        if (r >= 0)
                r = xmpp_stream(x, domain, deadline);
        if (r >= 0)
                r = xmpp_write(x, "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                               "<resource>bench</resource></bind></iq>", deadline);
        if (r >= 0)
                r = xmpp_wait_for(x, "</iq>", "type='error'", deadline);
        if (r >= 0 && sender) {
                r = xmpp_write(x, "<enable xmlns='urn:xmpp:sm:3'/>", deadline);
                if (r >= 0)
                        r = xmpp_wait_for(x, "<enabled", "<failed", deadline);
        }
        if (r >= 0 && !sender)
                r = xmpp_write(x, "<presence/>", deadline);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(x);
        return 0;
}

int xmpp_read_count(Xmpp *x, const char *needle, uint64_t *count) {
        size_t nl = strlen(needle);
        bool any = false;
        int r;

        /* GnuTLS may hold more records than one read returns. */
        do {
                const char *p = x->in;
                size_t keep;

                r = xmpp_fill(x);
                if (r == -EAGAIN)
                        break;
                if (r < 0)
                        return r;
                any = true;
                while ((p = strstr(p, needle))) {
                        (*count)++;
                        p += nl;
                }
                /* Keep what could be the start of a needle cut by the read. */
                keep = MIN(x->len, nl - 1);
                memmove(x->in, x->in + x->len - keep, keep + 1);
                x->len = keep;
        } while (transport_pending(x->c->t));
        return any ? 0 : -EAGAIN;
}
