/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "util.h"

/* Make room for extra more bytes. A secret buffer is never realloc()ed:
 * realloc may leave the old copy behind in freed memory, so the contents
 * are copied to a new allocation and the old one is wiped. */
static int buf_reserve(Buf *b, size_t extra) {
        size_t need, cap;
        uint8_t *p;

        if (b->error < 0)
                return b->error;
        if (extra > SIZE_MAX - b->len)
                return (b->error = -ENOMEM);
        need = b->len + extra;
        if (need <= b->cap)
                return 0;

        cap = b->cap > 0 ? b->cap : 64;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;

        if (b->secret) {
                p = malloc(cap);
                if (!p)
                        return (b->error = -ENOMEM);
                if (b->len > 0)
                        memcpy(p, b->data, b->len);
                secure_free(b->data, b->cap);
        } else {
                p = realloc(b->data, cap);
                if (!p)
                        return (b->error = -ENOMEM);
        }
        b->data = p;
        b->cap = cap;
        return 0;
}

void buf_put(Buf *b, const void *data, size_t len) {
        if (buf_reserve(b, len) < 0)
                return;
        if (len > 0)
                memcpy(b->data + b->len, data, len);
        b->len += len;
}

void buf_put_u32(Buf *b, uint32_t v) {
        uint8_t p[4] = {
                (uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v,
        };

        buf_put(b, p, sizeof(p));
}

void buf_put_u64(Buf *b, uint64_t v) {
        buf_put_u32(b, (uint32_t) (v >> 32));
        buf_put_u32(b, (uint32_t) v);
}

void buf_put_lp(Buf *b, const void *data, size_t len) {
        /* lp(x) cannot describe more than 4 GiB; refuse rather than
         * truncate the length and desynchronise the encoding. */
        if (len > UINT32_MAX) {
                if (b->error == 0)
                        b->error = -EMSGSIZE;
                return;
        }
        buf_put_u32(b, (uint32_t) len);
        buf_put(b, data, len);
}

void buf_put_lp_str(Buf *b, const char *s) {
        buf_put_lp(b, s, strlen(s));
}

int buf_steal(Buf *b, uint8_t **ret, size_t *ret_len) {
        int r = b->error;

        /* An empty buffer still hands out a valid pointer. */
        if (r == 0 && !b->data)
                r = buf_reserve(b, 1);
        if (r < 0) {
                buf_done(b);
                return r;
        }

        *ret = b->data;
        *ret_len = b->len;
        b->data = NULL;
        b->len = b->cap = 0;
        return 0;
}

void buf_done(Buf *b) {
        if (b->secret)
                secure_free(b->data, b->cap);
        else
                free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
        b->error = 0;
}

void buf_donep(Buf *b) {
        buf_done(b);
}
