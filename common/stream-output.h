/* SPDX-License-Identifier: MIT */
/*
 * What waits to be written to one connection: the relay's streams
 * (daemon/stream.c) and scctl's connection to the relay (cli/client.c)
 * both keep their output here.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The output buffer, like OpenSSH's sshbuf: bytes are appended at the
 * tail and consumed from the head; the written head is reclaimed only
 * when room is needed (no memmove per write), what may wait is bounded,
 * and a buffer grown by a burst is given back once it drains. */
typedef struct StreamOutput {
        uint8_t *data;
        size_t head;            /* bytes of data already written */
        size_t len;             /* bytes of data in use, written or not */
        size_t cap;             /* allocated, a power of two */
        size_t max;             /* most bytes that may wait */
        size_t keep;            /* what an empty buffer keeps allocated */
} StreamOutput;

void stream_output_init(StreamOutput *o, size_t max, size_t keep);
void stream_output_done(StreamOutput *o);
/* 0, -ENOBUFS when more than max bytes would wait (nothing is added), or
 * -ENOMEM. */
int stream_output_append(StreamOutput *o, const void *data, size_t len);
size_t stream_output_pending(const StreamOutput *o);
const uint8_t *stream_output_head(const StreamOutput *o);
/* n bytes from the head were written (n <= pending). */
void stream_output_consume(StreamOutput *o, size_t n);
/* Keep only the first n bytes of what waits (n <= pending). */
void stream_output_truncate(StreamOutput *o, size_t n);
/* Drop everything, and the memory. */
void stream_output_clear(StreamOutput *o);
