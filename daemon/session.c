/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "codec.h"
#include "log.h"
#include "macro.h"
#include "session.h"
#include "util.h"

/* Reads per wakeup before other sessions get their turn. A 16 KiB read
 * can hold some twenty envelopes, each committed with an fsync before its
 * "accepted": two reads keep one flooding sender's turn to a few dozen
 * commits, so everyone else still gets served between them. */
#define SESSION_READS_PER_WAKEUP 2
/* Rounds of pushing the backlog (up to SESSION_PUMP_WATER each) and
 * writing it per wakeup, for the same reason. */
#define SESSION_PUMPS_PER_WAKEUP 4

static void session_update_io(Session *s);
static void session_disconnect(Session *s);

size_t session_output_pending(const Session *s) {
        return stream_pending(s->stream);
}

size_t session_memory(const Session *s) {
        return (s->stream ? stream_allocated(s->stream) : 0) + s->in.cap + s->aside_len +
                (s->decoder.payload ? s->decoder.payload_len + 1 : 0);
}

/* Tell the owner, who keeps the total, after this session's buffers
 * changed. Returns true while the total is over max-memory. */
static bool session_account(Session *s) {
        size_t old = s->memory;

        s->memory = session_memory(s);
        return s->callbacks->on_memory(s, old, s->memory, s->userdata);
}

/* Everything waiting for the peer is dropped (it does not read it). */
static void session_drop_output(Session *s) {
        stream_output_clear(stream_output(s->stream));
        (void) session_account(s);
}

bool session_is_active(const Session *s) {
        return s->state == SESSION_ACTIVE;
}

bool session_is_dead(const Session *s) {
        return s->state == SESSION_DEAD;
}

uint64_t session_now(const Session *s) {
        uint64_t now = 0;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        return now;
}

static bool session_may_read_later(const Session *s) {
        return s->state == SESSION_AUTH || s->state == SESSION_ACTIVE;
}

static bool session_may_read(const Session *s) {
        return session_may_read_later(s) && !s->throttled && !s->waiting &&
               session_output_pending(s) < SESSION_READ_PAUSE;
}

void session_touch(Session *s) {
        if (s->state != SESSION_ACTIVE)
                return;
        s->last_activity_usec = session_now(s);
        stream_set_deadline(s->stream, s->limits.idle_timeout_usec);
}

static void fields_of(const Session *s, LogFields *f) {
        *f = (LogFields) {
                .user = s->user[0] ? s->user : NULL,
                .peer = s->peer,
                .session = s->id,
        };
}

/* Whatever the state, stop talking to the peer and let the owner free
 * the session after this loop iteration. */
static void session_disconnect(Session *s) {
        if (s->state == SESSION_DEAD)
                return;
        s->state = SESSION_DEAD;
        stream_abort(s->stream);
        (void) sd_event_source_set_enabled(s->throttle, SD_EVENT_OFF);
        s->callbacks->on_dead(s, s->userdata);
}

void session_close(Session *s, const char *code, const char *message, const char *reason) {
        session_close_request(s, NULL, code, message, reason);
}

void session_close_request(Session *s, const uint64_t *id, const char *code, const char *message,
                           const char *reason) {
        session_close_with(s, code ? frame_new_error(id, code, message) : NULL, reason);
}

void session_close_with(Session *s, json_object *error, const char *reason) {
        bool was_active = s->state == SESSION_ACTIVE;
        LogFields f;

        if (s->state == SESSION_CLOSING || s->state == SESSION_DEAD) {
                json_object_put(error);
                return;
        }

        /* The error frame goes out even over the output limit: it is the
         * last one. Before TLS finished nothing can be sent at all. */
        if (error && s->state != SESSION_TLS) {
                _cleanup_(freep) uint8_t *wire = NULL;
                size_t len;

                if (frame_to_wire(error, s->limits.max_frame, &wire, &len) >= 0)
                        (void) stream_append(s->stream, wire, len);
                (void) session_account(s);
        }
        json_object_put(error);

        fields_of(s, &f);
        f.reason = reason;
        if (was_active) {
                f.has_duration = true;
                f.duration_usec = session_now(s) - s->connected_monotonic_usec;
                log_event(EVENT_SESSION_END, &f, "Session of %s from %s ended: %s", s->user,
                          s->peer, reason);
        } else
                log_event(EVENT_HANDSHAKE_FAILED, &f, "Handshake with %s failed: %s", s->peer,
                          reason);

        s->state = SESSION_CLOSING;
        s->callbacks->on_closing(s, was_active, s->userdata);
        /* What is left goes out, then the stream ends the connection
         * gently and tells session_on_stream_dead(). */
        stream_close(s->stream, SESSION_LINGER_USEC);
}

/* A peer that makes the relay hold more than its budget for it does not
 * read what it is sent: cut it. While all sessions together hold more
 * than max-memory, so is one whose output is over the water mark (a
 * reader keeps it below). Returns 0, or -ENOBUFS when it was cut. */
static int session_check_memory(Session *s, bool over_total) {
        char message[256];
        Limit limit;
        LogFields f;

        if (s->memory > s->limits.memory_max)
                limit = LIMIT_MAX_SESSION_MEMORY;
        else if (over_total && session_output_pending(s) > SESSION_PUMP_WATER)
                limit = LIMIT_MAX_MEMORY;
        else
                return 0;

        fields_of(s, &f);
        f.has_size = true;
        f.size = s->memory;
        snprintf(message, sizeof(message), "Disconnecting %s: client does not read, %zu bytes held for it (%s)",
                 s->peer, s->memory, limit_name(limit));
        s->callbacks->on_limit(s, limit, &f, message, s->userdata);
        /* Part of a frame may be out already: no error frame can follow. */
        session_drop_output(s);
        session_close(s, NULL, NULL,
                      limit == LIMIT_MAX_SESSION_MEMORY
                              ? "max-session-memory exceeded (client not reading)"
                              : "max-memory exceeded (client not reading)");
        return -ENOBUFS;
}

int session_send(Session *s, json_object *o) {
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t len;
        int r;

        if (!o)
                return -ENOMEM;
        if (s->state != SESSION_AUTH && s->state != SESSION_ACTIVE) {
                json_object_put(o);
                return 0;
        }
        r = frame_to_wire(o, s->limits.max_frame, &wire, &len);
        json_object_put(o);
        if (r < 0)
                return r;
        return session_send_wire(s, wire, len);
}

int session_send_wire(Session *s, const uint8_t *wire, size_t len) {
        int r;

        if (s->state != SESSION_AUTH && s->state != SESSION_ACTIVE)
                return 0;
        r = stream_append(s->stream, wire, len);
        if (r < 0) {
                session_drop_output(s);
                session_close(s, NULL, NULL, r == -ENOBUFS ? "output over its limit" : "out of memory");
                return r;
        }
        r = session_check_memory(s, session_account(s));
        if (r < 0)
                return r;
        session_update_io(s);
        return 0;
}

/* Reading pauses while output piles up (the stream writes regardless). */
static void session_update_io(Session *s) {
        if (s->state != SESSION_DEAD)
                stream_set_reading(s->stream, s->state == SESSION_TLS || session_may_read(s));
}

void session_flush(Session *s) {
        bool was_paused;
        int r;

        if (s->state == SESSION_TLS || s->state == SESSION_DEAD)
                return;
        was_paused = !session_may_read(s);

        r = stream_flush(s->stream);
        if (s->state == SESSION_DEAD)
                return;                 /* the close finished */
        (void) session_account(s);
        if (r < 0) {
                char reason[128];

                snprintf(reason, sizeof(reason), "write failed: %s", strerror(-r));
                session_close(s, NULL, NULL, reason);
                session_disconnect(s);
                return;
        }

        /* Reading was paused for output that has now gone: GnuTLS may hold
         * decrypted records that epoll knows nothing about. */
        if (was_paused && session_may_read(s))
                stream_resume_later(s->stream);
        session_update_io(s);
}

/* Process frames from data while the session may read, and return how
 * many bytes were taken: once SESSION_READ_PAUSE bytes of answers wait,
 * the rest waits too, so that what one read can make the relay write is
 * bounded by that mark plus one answer. */
static size_t session_feed(Session *s, const uint8_t *data, size_t len) {
        size_t total = len;

        while (len > 0 && session_may_read(s)) {
                _cleanup_(freep) uint8_t *frame = NULL;
                size_t consumed = 0, flen = 0;
                int r;

                r = frame_decoder_feed(&s->decoder, data, len, &consumed, &frame, &flen);
                data += consumed;
                len -= consumed;
                (void) session_account(s);      /* a frame may have begun or ended */
                if (r == -EMSGSIZE) {
                        char message[160];
                        LogFields f;

                        fields_of(s, &f);
                        snprintf(message, sizeof(message), "Frame from %s announced more than max-frame (%llu bytes)",
                                 s->peer, (unsigned long long) s->limits.max_frame);
                        s->callbacks->on_limit(s, LIMIT_MAX_FRAME, &f, message, s->userdata);
                        session_close(s, ERR_BAD_FRAME, "frame larger than max_frame",
                                      "bad_frame: frame larger than max-frame");
                        break;
                }
                if (r == -EBADMSG) {
                        LogFields f;

                        fields_of(s, &f);
                        f.reason = "empty frame";
                        log_event(EVENT_PROTOCOL_ERROR, &f, "Empty frame from %s", s->peer);
                        session_close(s, ERR_BAD_FRAME, "empty frame", "bad_frame: empty frame");
                        break;
                }
                if (r < 0) {
                        session_close(s, ERR_INTERNAL, "out of memory", "out of memory");
                        break;
                }
                if (r == 0)
                        break;
                if (!s->callbacks->on_frame(s, frame, flen, s->userdata)) {
                        s->aside = TAKE_PTR(frame);
                        s->aside_len = flen;
                        break;
                }
        }
        return total - len;
}

/* Process what an earlier read left for later: the frame set aside
 * first, then the bytes. True when none is left. */
static bool session_feed_saved(Session *s) {
        if (s->aside) {
                if (!session_may_read(s) || !s->callbacks->on_frame(s, s->aside, s->aside_len, s->userdata))
                        return false;
                free(s->aside);
                s->aside = NULL;
                s->aside_len = 0;
        }
        if (s->in_head < s->in.len)
                s->in_head += session_feed(s, s->in.data + s->in_head, s->in.len - s->in_head);
        if (s->in_head < s->in.len || s->aside)
                return false;
        buf_done(&s->in);
        s->in_head = 0;
        (void) session_account(s);
        return true;
}

static void session_read(Session *s) {
        /* Bytes read here were already taken from the kernel: they are all
         * processed, whatever happens to the output meanwhile. */
        uint8_t buf[16384];

        for (unsigned i = 0; i < SESSION_READS_PER_WAKEUP; i++) {
                ssize_t n;
                size_t used;

                if (!session_may_read(s) || !session_feed_saved(s) || !session_may_read(s))
                        return;
                n = stream_read(s->stream, buf, sizeof(buf));
                if (n == -EAGAIN)
                        return;
                if (n == 0) {
                        session_close(s, NULL, NULL,
                                      frame_decoder_pending(&s->decoder)
                                              ? "connection closed in the middle of a frame"
                                              : "connection closed by peer");
                        return;
                }
                if (n < 0) {
                        char reason[128];

                        snprintf(reason, sizeof(reason), "read failed: %s", strerror((int) -n));
                        session_close(s, NULL, NULL, reason);
                        return;
                }
                used = session_feed(s, buf, (size_t) n);
                if (used < (size_t) n && session_may_read_later(s)) {
                        /* Paused: kept (at most one read) until the
                         * output drains. */
                        buf_put(&s->in, buf + used, (size_t) n - used);
                        if (s->in.error) {
                                session_close(s, ERR_INTERNAL, "out of memory", "out of memory");
                                return;
                        }
                        (void) session_account(s);
                        return;
                }
        }
        /* Give other sessions a turn, then come back for what is left. */
        stream_resume_later(s->stream);
}

static void session_tls_step(Session *s) {
        const char *error = NULL;
        int r;

        r = stream_handshake(s->stream, &error);
        if (r == -EAGAIN)
                return;
        if (r < 0) {
                char reason[256];

                snprintf(reason, sizeof(reason), "TLS handshake failed: %s",
                         error ? error : strerror(-r));
                session_close(s, NULL, NULL, reason);
                return;
        }
        s->callbacks->on_ready(s, s->userdata);
}

/* A pause in reading ended: what was read before it is processed now. */
static void session_resume(Session *s) {
        if (!session_may_read_later(s))
                return;
        /* GnuTLS may hold records that epoll will not report again. */
        stream_resume_later(s->stream);
        session_update_io(s);
}

static int session_on_throttle(sd_event_source *es, uint64_t usec, void *userdata) {
        Session *s = userdata;

        s->throttled = false;
        session_resume(s);
        return 0;
}

void session_wait(Session *s, bool waiting) {
        if (s->waiting == waiting)
                return;
        s->waiting = waiting;
        if (waiting)
                session_update_io(s);
        else
                session_resume(s);
}

void session_throttle(Session *s, uint64_t usec) {
        int r;

        if (!session_may_read_later(s))
                return;
        if (!s->throttle) {
                r = sd_event_add_time_relative(s->event, &s->throttle, CLOCK_MONOTONIC, usec, 0,
                                               session_on_throttle, s);
                if (r < 0)
                        return;         /* not throttled: the limit still refuses */
        } else
                (void) sd_event_source_set_time_relative(s->throttle, usec);
        (void) sd_event_source_set_enabled(s->throttle, SD_EVENT_ONESHOT);
        s->throttled = true;
        session_update_io(s);
}

/* After reading and pumping, write what is waiting. */
static void session_after_input(Session *s) {
        for (unsigned i = 0; i < SESSION_PUMPS_PER_WAKEUP; i++) {
                if (s->state == SESSION_ACTIVE)
                        s->callbacks->on_pump(s, s->userdata);
                session_flush(s);
                /* The write may have made room for more of the backlog or
                 * the online list. */
                if (s->state != SESSION_ACTIVE || session_output_pending(s) >= SESSION_PUMP_WATER ||
                    !s->callbacks->has_more(s, s->userdata))
                        return;
        }
        /* All of it was written at once, and more waits: no EPOLLOUT will
         * come for an empty buffer, so come back after the others. */
        stream_resume_later(s->stream);
}

static void session_on_io(Stream *stream, uint32_t revents, void *userdata) {
        Session *s = userdata;

        if (s->state == SESSION_TLS) {
                session_tls_step(s);
                if (s->state == SESSION_CLOSING || s->state == SESSION_DEAD)
                        return;
        } else if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) ||
                   (stream_wants_write(stream) && (revents & EPOLLOUT)))
                session_read(s);

        if (s->state != SESSION_TLS)
                session_after_input(s);
}

static void session_on_resume(Stream *stream, void *userdata) {
        Session *s = userdata;

        if (s->state != SESSION_AUTH && s->state != SESSION_ACTIVE)
                return;
        session_read(s);
        session_after_input(s);
}

static void session_on_stream_dead(Stream *stream, void *userdata) {
        session_disconnect(userdata);
}

static void session_on_timeout(Stream *stream, void *userdata) {
        Session *s = userdata;

        switch (s->state) {
        case SESSION_TLS:
        case SESSION_AUTH:
                session_close(s, ERR_TIMEOUT, "handshake timeout", "timeout: handshake not finished in time");
                break;
        case SESSION_ACTIVE:
                session_close(s, ERR_TIMEOUT, "idle timeout", "timeout: idle");
                break;
        case SESSION_CLOSING:
        case SESSION_DEAD:
                return;         /* the stream's own deadline ends those */
        }
        session_flush(s);
}

static const StreamCallbacks session_stream_callbacks = {
        .io = session_on_io,
        .timeout = session_on_timeout,
        .resume = session_on_resume,
        .dead = session_on_stream_dead,
};

static void hex(const uint8_t *p, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[p[i] >> 4];
                out[2 * i + 1] = digits[p[i] & 15];
        }
        out[2 * n] = '\0';
}

void session_authenticated(Session *s) {
        if (s->address_entry && s->preauth && s->address_entry->preauth > 0)
                s->address_entry->preauth--;
        s->preauth = false;
        if (!s->user_entry) {
                /* Out of memory: no message rate for this session. */
                s->user_entry = anvil_get_user(s->anvil, s->user, session_now(s));
                if (s->user_entry)
                        anvil_ref(s->anvil, s->user_entry);
        }
}

int session_new(const SessionSetup *setup, int fd, AnvilEntry *address, Session **ret) {
        _cleanup_(closep) int owned_fd = fd;
        _cleanup_(transport_freep) Transport *transport = NULL;
        size_t output_max;
        Session *s;
        uint8_t id[16];
        int one = 1, r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = setup->event;
        s->anvil = setup->anvil;
        s->callbacks = setup->callbacks;
        s->userdata = setup->userdata;
        s->state = setup->tls ? SESSION_TLS : SESSION_AUTH;
        if (address) {
                s->address_entry = address;
                anvil_ref(s->anvil, address);
                address->preauth++;
                s->preauth = true;
        }
        s->limits = setup->limits;
        frame_decoder_init(&s->decoder, s->limits.max_frame);
        (void) sd_event_now(s->event, CLOCK_REALTIME, &s->connected_realtime_usec);
        s->connected_monotonic_usec = s->last_activity_usec = session_now(s);
        socket_peer_address(fd, s->peer);
        /* Small interactive frames: no Nagle delay. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        r = random_bytes(id, sizeof(id));
        if (r < 0)
                goto fail;
        hex(id, sizeof(id), s->id);

        /* On failure the transport leaves the fd with us. */
        r = transport_new_server(owned_fd, setup->tls, &transport);
        if (r < 0)
                goto fail;
        owned_fd = -EBADF;
        /* Never reached while session_check_memory() holds: it cuts a
         * session holding more than memory_max, and one more frame (an
         * answer, the closing error) may come on top of that. */
        output_max = (size_t) s->limits.memory_max + 2 * (size_t) s->limits.max_frame;
        r = stream_new(s->event, transport, output_max, SESSION_OUTPUT_KEEP, &session_stream_callbacks, s,
                       &s->stream);
        if (r < 0)
                goto fail;
        s->transport = TAKE_PTR(transport);
        stream_set_deadline(s->stream, s->limits.handshake_timeout_usec);

        *ret = s;
        return 0;

fail:
        session_free(s);
        return r;
}

void session_start(Session *s) {
        log_event(EVENT_CONNECTION, &(LogFields) { .peer = s->peer, .session = s->id },
                  "Connection from %s", s->peer);
        session_update_io(s);

        /* Plain TCP has no handshake of its own: hello goes out now. */
        if (s->state == SESSION_AUTH)
                s->callbacks->on_ready(s, s->userdata);
        else
                session_tls_step(s);
}

Session *session_free(Session *s) {
        if (!s)
                return NULL;
        s->throttle = sd_event_source_disable_unref(s->throttle);
        s->stream = stream_free(s->stream);     /* and the transport */
        frame_decoder_done(&s->decoder);
        buf_done(&s->in);
        free(s->aside);
        key_package_free(s->package);
        if (s->address_entry) {
                if (s->preauth && s->address_entry->preauth > 0)
                        s->address_entry->preauth--;
                anvil_unref(s->anvil, s->address_entry, session_now(s));
        }
        if (s->user_entry)
                anvil_unref(s->anvil, s->user_entry, session_now(s));
        free(s);
        return NULL;
}
