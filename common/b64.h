/* SPDX-License-Identifier: MIT */
/* Base64, RFC 4648 standard alphabet: encoded by Nettle, decoded strictly
 * here. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Padded base64 of data as a NUL-terminated string (caller frees).
 * Returns 0 or -ENOMEM. */
int b64_encode(const void *data, size_t len, char **ret);

/* Unpadded variant (fingerprints, OpenSSH style). */
int b64_encode_unpadded(const void *data, size_t len, char **ret);

/* Strict decode of a padded base64 string of exactly slen characters: no
 * whitespace, correct padding, no trailing garbage, canonical (unused bits
 * zero). Returns 0, -EINVAL for malformed input, -ENOMEM. */
int b64_decode(const char *s, size_t slen, uint8_t **ret, size_t *ret_len);

/* The same into out, which has room for size bytes: -EMSGSIZE when the
 * decoded bytes would not fit, found before decoding. What out holds after
 * a failure is unspecified. For fixed-size values, with no allocation. */
int b64_decode_to(const char *s, size_t slen, uint8_t *out, size_t size, size_t *ret_len);
