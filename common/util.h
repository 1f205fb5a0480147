/* SPDX-License-Identifier: MIT */
/* Randomness, secret hygiene and input validation shared by every module. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fill buf with len bytes from getrandom(2), retrying on EINTR and short
 * reads. Returns 0 or -errno. Never falls back to a seeded PRNG. */
int random_bytes(void *buf, size_t len);

/* A fresh message id of MSG_ID_LEN (16) bytes: the time in milliseconds
 * since the epoch, 6 bytes big-endian, then 10 random bytes. Ids that grow
 * with time keep a store's index of queued ids (the relay's, by sender and
 * id) growing at one end: a batch of inserts writes a page or two of it,
 * not a page per id, however long the queue. 80 random bits keep two ids of
 * one millisecond apart. 0 or random_bytes()' error. */
int message_id_new(uint8_t *id);
/* Its first 6 bytes only, the time: for a caller with its own randomness
 * for the rest (sc-bench's floor, whose CPU should be SQLite's). */
int message_id_stamp(uint8_t *id);

/* A 64-bit hash of len bytes for an in-memory table whose keys peers
 * choose (addresses, user names): FNV-1a from a random, secret seed, then
 * MurmurHash3's finaliser so that every key bit reaches the low bits
 * used as a bucket index. Without the seed, a peer cannot aim its keys
 * at one bucket. */
uint64_t hash_seeded(uint64_t seed, const void *data, size_t len);

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

/* The UTF-8 character at s (len bytes available): its length in bytes,
 * with the code point in *ret; 0 when it is malformed (by utf8_valid()'s
 * rules) or len is 0. */
size_t utf8_char(const void *s, size_t len, uint32_t *ret);

/* Characters that must not reach a terminal or a log line as they are:
 * they move the cursor, rewrite the screen or reorder what is displayed
 * (C0 and C1 controls, DEL, bidirectional overrides and isolates, "Trojan
 * Source", line and paragraph separators). */
bool unichar_unsafe(uint32_t c);

/* Text from a peer made safe for a log line or a diagnostic on a terminal:
 * s (NULL is "") copied into buf, NUL-terminated, with every unsafe
 * character and every byte that is not valid UTF-8 replaced by '?'. Cut
 * short at a character boundary to fit size bytes. Returns buf, for use as
 * a printf argument. */
char *string_sanitize(const char *s, char *buf, size_t size);

/* src (NULL is "") copied into dst of size bytes (> 0), NUL-terminated and
 * cut short to fit; false when it was cut. snprintf(dst, size, "%s", src)
 * without the format parser, for hot paths (glibc 2.36 has no strlcpy). */
bool string_copy(char *dst, size_t size, const char *src);

/* "yes", "y", "true", "on", "1" (1) and "no", "n", "false", "off", "0"
 * (0), in any case; -EINVAL for anything else, NULL included. */
int parse_boolean(const char *s);

/* ^[a-z0-9][a-z0-9._-]{0,31}$ */
bool username_valid(const char *s);
#define USERNAME_MAX 32

/* Wall clock in unix seconds; monotonic in microseconds. */
uint64_t now_unix(void);
/* t (unix seconds) as "2026-12-13 16:40:00 UTC" for a message, or as the
 * number should the calendar not hold it. Returns buf. */
#define FORMAT_UTC_MAX 64
const char *format_utc(uint64_t t, char buf[static FORMAT_UTC_MAX]);
uint64_t now_monotonic_usec(void);

/* Hex helpers (tests and vectors). hex_decode returns -EINVAL on bad input. */
int hex_decode(const char *hex, uint8_t **ret, size_t *ret_len);
