/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "stream-output.h"

/* The smallest allocation of an output buffer. */
#define STREAM_OUTPUT_MIN 256u

void stream_output_init(StreamOutput *o, size_t max, size_t keep) {
        *o = (StreamOutput) { .max = max, .keep = keep };
}

void stream_output_done(StreamOutput *o) {
        free(o->data);
        stream_output_init(o, o->max, o->keep);
}

size_t stream_output_pending(const StreamOutput *o) {
        return o->len - o->head;
}

const uint8_t *stream_output_head(const StreamOutput *o) {
        return o->data ? o->data + o->head : NULL;
}

int stream_output_append(StreamOutput *o, const void *data, size_t len) {
        size_t pending = stream_output_pending(o), need, cap;
        uint8_t *p;

        if (len > o->max || pending > o->max - len)
                return -ENOBUFS;
        if (len == 0)
                return 0;
        need = pending + len;

        if (need > o->cap) {
                cap = MAX(o->cap, (size_t) STREAM_OUTPUT_MIN);
                while (cap < need)
                        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
                p = realloc(o->data, cap);
                if (!p)
                        return -ENOMEM;
                o->data = p;
                o->cap = cap;
        }
        if (o->len + len > o->cap) {
                /* Only now is the written head worth reclaiming. */
                memmove(o->data, o->data + o->head, pending);
                o->len = pending;
                o->head = 0;
        }
        memcpy(o->data + o->len, data, len);
        o->len += len;
        return 0;
}

void stream_output_consume(StreamOutput *o, size_t n) {
        assert(n <= stream_output_pending(o));
        o->head += n;
        if (o->head < o->len)
                return;
        o->head = o->len = 0;
        /* After a burst (a backlog, a long list), give the memory back
         * rather than keep it for every idle connection. */
        if (o->cap > o->keep)
                stream_output_done(o);
}

void stream_output_truncate(StreamOutput *o, size_t n) {
        assert(n <= stream_output_pending(o));
        o->len = o->head + n;
        if (n == 0)
                stream_output_consume(o, 0);
}

void stream_output_clear(StreamOutput *o) {
        stream_output_done(o);
}
