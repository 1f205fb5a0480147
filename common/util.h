/* SPDX-License-Identifier: MIT */
/* Randomness, secret hygiene and input validation shared by every module. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fill buf with len bytes from getrandom(2), retrying on EINTR and short
 * reads. Returns 0 or -errno. Never falls back to a seeded PRNG. */
int random_bytes(void *buf, size_t len);

/* Overwrite memory that held a secret; not optimised away. NULL is fine. */
void secure_wipe(void *p, size_t len);

/* Wipe then free. Returns NULL. */
void *secure_free(void *p, size_t len);

/* Constant-time equality of two buffers of the same length (time depends only
 * on len). Returns true when equal. */
bool memeq_ct(const void *a, const void *b, size_t len);

/* Strict UTF-8 validation (no overlongs, no surrogates, max U+10FFFF); also
 * refuses NUL bytes, which user text never contains. */
bool utf8_valid(const void *s, size_t len);

/* ^[a-z0-9][a-z0-9._-]{0,31}$ */
bool username_valid(const char *s);
#define USERNAME_MAX 32

/* Wall clock in unix seconds; monotonic in microseconds. */
uint64_t now_unix(void);
uint64_t now_monotonic_usec(void);

/* Hex helpers (tests and vectors). hex_decode returns -EINVAL on bad input. */
int hex_decode(const char *hex, uint8_t **ret, size_t *ret_len);
