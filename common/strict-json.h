/* SPDX-License-Identifier: MIT */
/*
 * Strict JSON for everything a peer sends (chat frames with their
 * envelopes, Varlink messages). json-c, even with JSON_TOKENER_STRICT,
 * takes a few things that are not JSON and keeps the last of two members
 * with the same name without a word; a peer must not come to rely on
 * either, and two parsers must never read one text two ways.
 */
#pragma once

#include <stddef.h>

#include <json-c/json.h>

static inline void json_object_unrefp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

/* Parse s (len bytes, not NUL-terminated) as exactly one JSON object of at
 * most depth levels, with only white space after it. Refused (-EBADMSG,
 * *ret_reason, which may be NULL, set to a short static reason that never
 * quotes the input): invalid UTF-8 or a NUL byte; outside strings anything
 * but JSON's structural characters, white space, numbers, true, false and
 * null (so no single quotes, NaN or Infinity); raw control characters and
 * "\u0000" inside strings (json-c cuts names at a NUL, and C compares
 * strings up to it); an object with two members of the same name; trailing
 * data; a value that is not an object. -ENOMEM. */
int json_parse_strict(const char *s, size_t len, int depth, json_object **ret,
                      const char **ret_reason);
