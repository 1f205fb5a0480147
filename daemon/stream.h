/* SPDX-License-Identifier: MIT */
/*
 * One connection as the event loop sees it, for chat sessions and control
 * connections alike: a transport (TLS or a plain fd, transport.h), one
 * bounded output buffer, the io source, a deadline timer, a "come back
 * later" source, and an orderly close.
 *
 * The owner decides what to read and what the bytes mean; the stream
 * writes what was queued, keeps the io events in step with what the owner
 * wants, and closes gracefully: what is queued (the last error) is
 * written, then TLS close_notify and shutdown(SHUT_WR), then whatever the
 * peer still sends is read and dropped for a short while, so that close()
 * never finds unread bytes and answers them with a RST (which would make
 * the peer's kernel throw our error away before it is read).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "stream-output.h"
#include "transport.h"

typedef struct Stream Stream;

typedef struct StreamCallbacks {
        /* The fd is ready (EPOLL* bits), while the stream is open. */
        void (*io)(Stream *s, uint32_t revents, void *userdata);
        /* stream_set_deadline() passed, while the stream is open. */
        void (*timeout)(Stream *s, void *userdata);
        /* stream_resume_later() came due, while the stream is open. */
        void (*resume)(Stream *s, void *userdata);
        /* The stream closed by itself (the close finished, or the peer
         * went away while it ran): free it soon. Not called for
         * stream_abort(). */
        void (*dead)(Stream *s, void *userdata);
} StreamCallbacks;

/* Takes t on success. output_max bounds what may wait, output_keep is
 * what stays allocated once the output drained. Reading starts off. */
int stream_new(sd_event *e, Transport *t, size_t output_max, size_t output_keep,
               const StreamCallbacks *callbacks, void *userdata, Stream **ret);
Stream *stream_free(Stream *s);

Transport *stream_transport(const Stream *s);
bool stream_is_open(const Stream *s);
bool stream_is_dead(const Stream *s);

/* transport_handshake() and transport_read(), noting which way the
 * transport waits on -EAGAIN. */
int stream_handshake(Stream *s, const char **ret_error);
ssize_t stream_read(Stream *s, void *buf, size_t len);
/* The last -EAGAIN of a read or handshake waits for writability. */
bool stream_wants_write(const Stream *s);

/* Whether the owner wants to read (the io events follow). */
void stream_set_reading(Stream *s, bool reading);

/* Queue bytes: 0, -ENOBUFS over output_max, -ENOMEM, or -ESHUTDOWN once
 * closing. The io events follow. */
int stream_append(Stream *s, const void *data, size_t len);
StreamOutput *stream_output(Stream *s);
size_t stream_pending(const Stream *s);
size_t stream_allocated(const Stream *s);   /* what the output holds allocated */

/* Write what waits, without blocking. 0, or the -errno of a failed write
 * (the output is dropped then; the owner closes). While closing, moves
 * the close along instead. */
int stream_flush(Stream *s);

/* Hold the output back (corked) or let it go again. While corked,
 * stream_flush() writes nothing and no EPOLLOUT is asked for: what is
 * appended meanwhile goes out together, in as few TLS records and system
 * calls as fit, at the flush after uncorking. Closing writes regardless. */
void stream_cork(Stream *s, bool corked);
bool stream_is_corked(const Stream *s);

/* Call callbacks->timeout in usec (replacing an earlier deadline). */
void stream_set_deadline(Stream *s, uint64_t usec_from_now);
int stream_get_deadline(const Stream *s, uint64_t *ret_usec);

/* Call callbacks->resume after the other ready sources had their turn:
 * for a peer that still has input buffered where epoll cannot see it
 * (GnuTLS), or more to write than one turn allows. */
void stream_resume_later(Stream *s);

/* Close gracefully: write what waits within linger_usec, then end our
 * direction and drain the peer's (STREAM_DRAIN_*), then callbacks->dead.
 * Nothing more can be queued. Safe to call more than once. */
void stream_close(Stream *s, uint64_t linger_usec);
/* Stop at once: no more callbacks, nothing more written. */
void stream_abort(Stream *s);
