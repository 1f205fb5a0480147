/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conf.h"
#include "macro.h"
#include "stream.h"

/* A closing stream reads and drops what the peer still sends: a peer that
 * wrote more than we read (a frame over max-frame) would otherwise get a
 * RST at close(), and a RST makes its kernel discard our error frame
 * unread. A well-behaved peer closes at once when it sees our EOF; one
 * that keeps sending is not waited for longer than this, nor read from
 * beyond this much, so that closing costs a bounded time and work. */
#define STREAM_DRAIN_USEC (2 * USEC_PER_SEC)
#define STREAM_DRAIN_MAX (256u * 1024)

typedef enum StreamState {
        STREAM_OPEN,
        STREAM_FLUSHING,        /* closing: writing what waits */
        STREAM_SHUTTING,        /* closing: close_notify, shutdown(SHUT_WR) */
        STREAM_DRAINING,        /* closing: reading and dropping until EOF */
        STREAM_DEAD,
} StreamState;

struct Stream {
        StreamState state;
        Transport *transport;
        bool established;       /* the TLS handshake finished (or plain) */
        bool reading;
        bool wants_write;
        bool corked;
        bool blocked;           /* the last write stopped at EAGAIN */
        bool read_all;          /* the socket was empty at the last read */
        bool peer_shut;         /* epoll said EPOLLRDHUP (or worse) */
        bool flusher_held;
        size_t drained;
        uint32_t io_events;     /* as last given to epoll */
        Stream *flush_next, **flush_prev;       /* queued for the end of the turn */

        StreamOutput out;
        sd_event_source *io, *timer, *resume;

        const StreamCallbacks *callbacks;
        void *userdata;
};


/* ---- writing at the end of the turn ------------------------------------------ */

/* Output is written when its owner flushes (the relay does at the end of
 * every turn) or, for what nobody flushed, after the other ready sources
 * had their turn. That used to be EPOLLOUT, asked for when output was
 * queued and dropped when it was written: two epoll_ctl() per frame, most
 * of them for output the owner wrote itself a moment later. Now a stream
 * asks epoll only when a write stopped at EAGAIN; otherwise it joins its
 * loop's list of streams to flush, which an always-due timer (noticed at
 * the next epoll round, as EPOLLOUT was) walks, calling the owner as a
 * writable socket would have. A stream leaves the list when its output is
 * written, so the usual turn costs no system call at all.
 *
 * One list per event loop: the relay has one; tests may run several. */
typedef struct Flusher Flusher;
struct Flusher {
        sd_event *event;
        sd_event_source *timer;
        Stream *queued;
        size_t n_streams;
        Flusher *next;
};

static Flusher *flushers;

static Flusher *flusher_find(sd_event *e) {
        for (Flusher *f = flushers; f; f = f->next)
                if (f->event == e)
                        return f;
        return NULL;
}

static Flusher *stream_flusher(const Stream *s) {
        return flusher_find(sd_event_source_get_event(s->io));
}

static void flush_unqueue(Stream *s) {
        Flusher *f;

        if (!s->flush_prev)
                return;
        *s->flush_prev = s->flush_next;
        if (s->flush_next)
                s->flush_next->flush_prev = s->flush_prev;
        s->flush_next = NULL;
        s->flush_prev = NULL;
        /* Nobody left to write for: no wake-up for nothing. */
        f = stream_flusher(s);
        if (f && !f->queued)
                (void) sd_event_source_set_enabled(f->timer, SD_EVENT_OFF);
}

static void flush_queue(Stream *s) {
        Flusher *f;

        if (s->flush_prev)
                return;
        f = stream_flusher(s);
        s->flush_next = f->queued;
        if (s->flush_next)
                s->flush_next->flush_prev = &s->flush_next;
        s->flush_prev = &f->queued;
        f->queued = s;
        (void) sd_event_source_set_enabled(f->timer, SD_EVENT_ONESHOT);
}

static int flusher_on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Flusher *f = userdata;
        Stream *run = f->queued, *s;

        /* Those queued now: a callback may queue streams again (they wait
         * for the next turn) or free some of these (they leave this list). */
        f->queued = NULL;
        if (run)
                run->flush_prev = &run;
        while ((s = run)) {
                flush_unqueue(s);
                if (s->state == STREAM_OPEN)
                        s->callbacks->io(s, EPOLLOUT, s->userdata);
        }
        return 0;
}

static int flusher_ref(sd_event *e) {
        Flusher *f = flusher_find(e);
        int r;

        if (f) {
                f->n_streams++;
                return 0;
        }
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        r = sd_event_add_time(e, &f->timer, CLOCK_MONOTONIC, 0, 1, flusher_on_timer, f);
        if (r < 0) {
                free(f);
                return r;
        }
        (void) sd_event_source_set_enabled(f->timer, SD_EVENT_OFF);
        f->event = e;
        f->n_streams = 1;
        f->next = flushers;
        flushers = f;
        return 0;
}

static void flusher_unref(sd_event *e) {
        Flusher **p;

        for (p = &flushers; *p && (*p)->event != e; p = &(*p)->next)
                ;
        if (!*p || --(*p)->n_streams > 0)
                return;
        Flusher *f = *p;

        *p = f->next;
        /* The timer's reference to the loop goes with the last stream. */
        sd_event_source_disable_unref(f->timer);
        free(f);
}

/* ---- the connection --------------------------------------------------------- */

Transport *stream_transport(const Stream *s) {
        return s->transport;
}

bool stream_is_open(const Stream *s) {
        return s->state == STREAM_OPEN;
}

bool stream_is_dead(const Stream *s) {
        return s->state == STREAM_DEAD;
}

bool stream_wants_write(const Stream *s) {
        return s->wants_write;
}

StreamOutput *stream_output(Stream *s) {
        return &s->out;
}

size_t stream_pending(const Stream *s) {
        return stream_output_pending(&s->out);
}

size_t stream_allocated(const Stream *s) {
        return s->out.cap;
}

static void stream_update_io(Stream *s) {
        uint32_t events = 0;

        if (s->state != STREAM_OPEN || stream_pending(s) == 0 || s->corked || s->blocked)
                flush_unqueue(s);

        switch (s->state) {
        case STREAM_OPEN:
                if (s->reading)
                        events |= s->wants_write ? EPOLLOUT : EPOLLIN;
                if (stream_pending(s) > 0 && !s->corked) {
                        if (s->blocked)
                                events |= EPOLLOUT;
                        else
                                flush_queue(s);
                }
                break;
        case STREAM_FLUSHING:
                events = EPOLLOUT;
                break;
        case STREAM_SHUTTING:
        case STREAM_DRAINING:
                events = s->wants_write ? EPOLLOUT : EPOLLIN;
                break;
        case STREAM_DEAD:
                return;
        }
        /* Edge-triggered. sd-event polls epoll once per dispatched source
         * (sd_event_prepare() waits with timeout 0 while any is pending),
         * so level-triggered sockets that stay readable until their turn
         * came back in every one of those polls: O(ready sockets) kernel
         * work per dispatch, quadratic in a busy turn. Every path that
         * stops reading before EAGAIN comes back through the resume
         * timer: bytes GnuTLS or the transport read ahead are in no
         * socket that epoll_ctl() could poll again. Output needs EPOLLOUT
         * only once a write stopped at EAGAIN (the flusher above). */
        if (events != 0)
                events |= EPOLLET;
        if (events & EPOLLIN)
                events |= EPOLLRDHUP;   /* see stream_read() */
        if (events == s->io_events)
                return;
        if (sd_event_source_set_io_events(s->io, events) >= 0)
                s->io_events = events;
}

void stream_set_reading(Stream *s, bool reading) {
        s->reading = reading;
        stream_update_io(s);
}

int stream_handshake(Stream *s, const char **ret_error) {
        int r = transport_handshake(s->transport, ret_error);

        s->wants_write = r == -EAGAIN && transport_wants_write(s->transport);
        if (r == 0)
                s->established = true;
        stream_update_io(s);
        return r;
}

/* A read whose recv() came back short emptied the socket: until epoll
 * says more arrived (stream_on_io(), edge-triggered), asking the kernel
 * would only hear EAGAIN, one system call per record a session reads.
 * Not once the peer shut its side: a recv() stops short at the FIN too,
 * and the EOF after the last bytes is only seen by asking again, with no
 * edge to come. */
ssize_t stream_read(Stream *s, void *buf, size_t len) {
        ssize_t n;

        if (s->read_all) {
                s->wants_write = false;
                return -EAGAIN;
        }
        n = transport_read(s->transport, buf, len);
        s->wants_write = n == -EAGAIN && transport_wants_write(s->transport);
        s->read_all = n > 0 && !s->peer_shut && transport_read_all(s->transport);
        return n;
}

static void stream_kill(Stream *s) {
        if (s->state == STREAM_DEAD)
                return;
        s->state = STREAM_DEAD;
        flush_unqueue(s);
        (void) sd_event_source_set_enabled(s->io, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->resume, SD_EVENT_OFF);
        stream_output_clear(&s->out);
}

void stream_abort(Stream *s) {
        stream_kill(s);
}

static void stream_die(Stream *s) {
        if (s->state == STREAM_DEAD)
                return;
        stream_kill(s);
        if (s->callbacks->dead)
                s->callbacks->dead(s, s->userdata);
}

/* Write what waits: 0 (all of it, or the rest when the fd is ready), or
 * the -errno of a failed write, with the output dropped. */
static int stream_write(Stream *s) {
        s->blocked = false;
        while (stream_pending(s) > 0) {
                ssize_t n = transport_write(s->transport, stream_output_head(&s->out), stream_pending(s));

                if (n == -EAGAIN) {
                        s->blocked = true;
                        break;
                }
                if (n < 0) {
                        stream_output_clear(&s->out);
                        return (int) n;
                }
                stream_output_consume(&s->out, (size_t) n);
        }
        return 0;
}

/* Read and drop what the peer sends. Before the TLS handshake finished,
 * below TLS: there are no records to speak of yet. */
static bool stream_drain(Stream *s) {
        uint8_t buf[16384];

        while (s->drained < STREAM_DRAIN_MAX) {
                ssize_t n;

                if (s->established)
                        n = stream_read(s, buf, sizeof(buf));
                else {
                        n = read(transport_fd(s->transport), buf, sizeof(buf));
                        if (n < 0)
                                n = errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
                        s->wants_write = false;
                }
                if (n == -EAGAIN)
                        return true;
                if (n <= 0)
                        return false;   /* EOF, or the peer is gone */
                s->drained += (size_t) n;
        }
        return false;
}

/* Move the close along as far as it goes without blocking. */
static void stream_advance(Stream *s) {
        int r;

        if (s->state == STREAM_FLUSHING) {
                if (stream_write(s) < 0) {
                        stream_die(s);
                        return;
                }
                if (stream_pending(s) > 0) {
                        stream_update_io(s);
                        return;
                }
                s->state = STREAM_SHUTTING;
        }
        if (s->state == STREAM_SHUTTING) {
                r = transport_shutdown(s->transport);
                if (r == -EAGAIN) {
                        s->wants_write = transport_wants_write(s->transport);
                        stream_update_io(s);
                        return;
                }
                if (r < 0) {
                        stream_die(s);
                        return;
                }
                s->state = STREAM_DRAINING;
                s->wants_write = false;
                (void) sd_event_source_set_time_relative(s->timer, STREAM_DRAIN_USEC);
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        }
        if (s->state == STREAM_DRAINING) {
                if (!stream_drain(s)) {
                        stream_die(s);
                        return;
                }
                stream_update_io(s);
        }
}

int stream_append(Stream *s, const void *data, size_t len) {
        int r;

        if (s->state != STREAM_OPEN)
                return -ESHUTDOWN;
        r = stream_output_append(&s->out, data, len);
        if (r < 0)
                return r;
        stream_update_io(s);
        return 0;
}

int stream_flush(Stream *s) {
        int r;

        switch (s->state) {
        case STREAM_OPEN:
                r = s->corked ? 0 : stream_write(s);
                stream_update_io(s);
                return r;
        case STREAM_DEAD:
                return 0;
        default:
                stream_advance(s);
                return 0;
        }
}

void stream_cork(Stream *s, bool corked) {
        s->corked = corked;
        stream_update_io(s);
}

bool stream_is_corked(const Stream *s) {
        return s->corked;
}

void stream_close(Stream *s, uint64_t linger_usec) {
        if (s->state != STREAM_OPEN)
                return;
        s->state = STREAM_FLUSHING;
        (void) sd_event_source_set_enabled(s->resume, SD_EVENT_OFF);
        (void) sd_event_source_set_time_relative(s->timer, linger_usec);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        stream_advance(s);
}

void stream_set_deadline(Stream *s, uint64_t usec_from_now) {
        if (s->state != STREAM_OPEN)
                return;
        (void) sd_event_source_set_time_relative(s->timer, usec_from_now);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

int stream_get_deadline(const Stream *s, uint64_t *ret_usec) {
        return sd_event_source_get_time(s->timer, ret_usec);
}

void stream_resume_later(Stream *s) {
        if (s->state == STREAM_OPEN)
                (void) sd_event_source_set_enabled(s->resume, SD_EVENT_ONESHOT);
}

static int stream_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Stream *s = userdata;

        /* Whatever epoll says, a read asks the kernel again. */
        s->read_all = false;
        if (revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                s->peer_shut = true;
        if (s->state == STREAM_OPEN)
                s->callbacks->io(s, revents, s->userdata);
        else
                stream_advance(s);
        return 0;
}

static int stream_on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Stream *s = userdata;

        if (s->state == STREAM_OPEN) {
                if (s->callbacks->timeout)
                        s->callbacks->timeout(s, s->userdata);
        } else
                stream_die(s);          /* closing took too long */
        return 0;
}

static int stream_on_resume(sd_event_source *es, uint64_t usec, void *userdata) {
        Stream *s = userdata;

        if (s->state == STREAM_OPEN && s->callbacks->resume)
                s->callbacks->resume(s, s->userdata);
        return 0;
}

int stream_new(sd_event *e, Transport *t, size_t output_max, size_t output_keep,
               const StreamCallbacks *callbacks, void *userdata, Stream **ret) {
        Stream *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->callbacks = callbacks;
        s->userdata = userdata;
        s->established = !transport_is_tls(t);
        stream_output_init(&s->out, output_max, output_keep);

        r = sd_event_add_io(e, &s->io, transport_fd(t), 0, stream_on_io, s);
        if (r < 0)
                goto fail;
        r = flusher_ref(e);
        if (r < 0)
                goto fail;
        s->flusher_held = true;
        r = sd_event_add_time_relative(e, &s->timer, CLOCK_MONOTONIC, 0, 0,
                                       stream_on_timer, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        /* "Come back after the others": a timer that is always due, not a
         * defer source. While any source is pending, sd-event dispatches
         * without polling epoll again, so a connection that re-armed a
         * defer source at every turn (a peer that always has more to
         * read) would keep every other socket from ever being seen ready;
         * a due timer is only noticed by the next epoll round, together
         * with everyone else's sockets. */
        r = sd_event_add_time(e, &s->resume, CLOCK_MONOTONIC, 0, 1, stream_on_resume, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->resume, SD_EVENT_OFF);

        s->transport = t;
        *ret = s;
        return 0;

fail:
        stream_free(s);
        return r;
}

Stream *stream_free(Stream *s) {
        if (!s)
                return NULL;
        flush_unqueue(s);
        if (s->flusher_held)
                flusher_unref(sd_event_source_get_event(s->io));
        sd_event_source_disable_unref(s->io);
        sd_event_source_disable_unref(s->timer);
        sd_event_source_disable_unref(s->resume);
        transport_free(s->transport);
        stream_output_done(&s->out);
        free(s);
        return NULL;
}
