/* SPDX-License-Identifier: MIT */
/* A growable byte buffer with the encodings of protocol.md section 1. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct Buf {
        uint8_t *data;
        size_t len;
        size_t cap;
        int error;        /* first -errno hit while appending; sticky */
        int secret;       /* wipe on growth and on free */
} Buf;

#define BUF_INIT { NULL, 0, 0, 0, 0 }

/* Appenders never fail loudly: on ENOMEM they set b->error and later appends
 * become no-ops, so a builder checks b->error once at the end. */
void buf_put(Buf *b, const void *data, size_t len);
void buf_put_u32(Buf *b, uint32_t v);               /* 4 bytes big-endian */
void buf_put_u64(Buf *b, uint64_t v);               /* u64(n) */
void buf_put_lp(Buf *b, const void *data, size_t len); /* lp(x) */
void buf_put_lp_str(Buf *b, const char *s);           /* lp(x) of strlen(s) bytes */

/* Hand over the contents (caller frees) and reset b. Returns b->error
 * (buffer freed) or 0. */
int buf_steal(Buf *b, uint8_t **ret, size_t *ret_len);
void buf_done(Buf *b);        /* free (wipe first if secret) */
void buf_donep(Buf *b);       /* for _cleanup_(buf_donep) */
