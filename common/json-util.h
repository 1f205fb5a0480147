/* SPDX-License-Identifier: MIT */
/*
 * The one JSON layer: everything that reads or writes JSON (frames,
 * envelopes, Varlink, the files scctl keeps) goes through here, so that
 * there is one idea of what a valid text is and one way to take an object
 * apart.
 *
 *   json_parse_strict()  text -> object, refusing what is not plain JSON
 *   json_dispatch()      object -> C struct, member by member from a table
 *   json_add_*()         C values -> object members, -ENOMEM checked once
 *
 * Reasons handed back (ret_reason) are static strings that never quote
 * input, so a caller may send them to the peer as they are.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/* The one cleanup helper for json-c references. */
static inline void json_object_unrefp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

/* A nesting bound for json_parse_strict() deeper than anything of ours
 * needs; it only has to stop a peer from making json-c recurse. */
#define JSON_DEPTH_DEFAULT 16

/* JSON integers that survive a trip through a double: 0..2^53-1. */
#define JSON_UINT53_MAX ((UINT64_C(1) << 53) - 1)

/* Parse s (len bytes, not NUL-terminated) as exactly one JSON object of at
 * most depth levels, with only white space after it. Refused (-EBADMSG,
 * *ret_reason, which may be NULL, set to a short static reason): invalid
 * UTF-8 or a NUL byte; outside strings anything but JSON's structural
 * characters, white space, numbers, true, false and null (so no single
 * quotes, NaN or Infinity); raw control characters and "\u0000" inside
 * strings (json-c cuts names at a NUL, and C compares strings up to it);
 * an object with two members of the same name; trailing data; a value
 * that is not an object. -ENOMEM. Uses one json-c tokener kept between
 * calls: not for several threads at once. */
int json_parse_strict(const char *s, size_t len, int depth, json_object **ret,
                      const char **ret_reason);

/* o as json-c writes it without white space and without escaping '/'
 * (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE): the form
 * the relay stores and forwards envelopes in. The text, *ret_len bytes
 * and a NUL, is o's until o is freed or changed; NULL on ENOMEM. */
const char *json_plain_text(json_object *o, size_t *ret_len);

/* The value of the member key of the object text s (len bytes), when its
 * bytes there are exactly json_plain_text() of the value json-c parsed from
 * them: true with *ret pointing into s and *ret_len set. The test is
 * conservative, for the caller to serialize instead (false): no member
 * whose name is written literally as key, or in its value white space,
 * a backslash, or a number other than an integer of at most 18 digits
 * without "-0" or leading zeros. key holds no '"' or '\\'. Meant for a
 * text that json_parse_strict() accepted (which let no object have a
 * member twice); any other is read within its len bytes and gives false,
 * or a span whose value json-c would not have parsed. A walk over the
 * members up to key and over its value, without recursion. */
bool json_member_plain(const char *s, size_t len, const char *key, const char **ret, size_t *ret_len);

/*
 * Builders. Each adds one member to o and returns 0 or -ENOMEM. Values
 * are taken: on failure they are released here, never leaked or left
 * half-owned. o may be NULL (a failed json_object_new_object()), which
 * is -ENOMEM too, so a builder can check allocation once at the end:
 *
 *     r = json_add_string(o, "type", "ping");
 *     if (r >= 0)
 *             r = json_add_uint64(o, "id", id);
 *     if (r < 0)
 *             return r;
 */
int json_add(json_object *o, const char *key, json_object *v);   /* v NULL: -ENOMEM */
int json_add_string(json_object *o, const char *key, const char *s);  /* s NULL: -EINVAL */
int json_add_string_or_null(json_object *o, const char *key, const char *s);  /* s NULL: null */
int json_add_uint64(json_object *o, const char *key, uint64_t u);
int json_add_int64(json_object *o, const char *key, int64_t i);
int json_add_bool(json_object *o, const char *key, bool b);
int json_add_b64(json_object *o, const char *key, const void *data, size_t len);
int json_array_add(json_object *a, json_object *v);                   /* v NULL: -ENOMEM */
/* A new object {key: s}, or NULL on ENOMEM. */
json_object *json_new_object_with_string(const char *key, const char *s);

/*
 * Field dispatch, in the manner of systemd's sd_json_dispatch(): a table
 * says which members an object may have, of which JSON type, and which
 * callback stores each one where (offset into userdata). The table is
 * walked in order, so the first failure reported is deterministic.
 */
typedef enum JsonDispatchFlags {
        /* Per field (or for every field, when passed to json_dispatch()). */
        JSON_MANDATORY = 1u << 0,       /* absent is an error */
        JSON_NULLABLE = 1u << 1,        /* a null value counts as absent */
        /* Per call: a member the table does not name is an error; without
         * it, unknown members are ignored (forward compatibility). */
        JSON_REFUSE_UNKNOWN = 1u << 2,
} JsonDispatchFlags;

typedef struct JsonDispatch JsonDispatch;

/* Called for a member that is present (and, unless d->type is
 * json_type_null, of type d->type) with the userdata of json_dispatch();
 * the field is at JSON_DISPATCH_FIELD(d, userdata). Returns 0, -ENOMEM, or
 * another negative errno for a bad value: *reason is preset to the field's
 * reason and may be pointed at another static string. */
typedef int (*JsonDispatchCallback)(json_object *v, const JsonDispatch *d, void *userdata,
                                    const char **reason);

struct JsonDispatch {
        const char *name;
        json_type type;                 /* json_type_null: any type, the callback decides */
        JsonDispatchCallback callback;  /* NULL: the member is known, checked, ignored */
        size_t offset;
        unsigned flags;
        /* Optional, for the callbacks below and for errors: */
        const char *reason;             /* static; NULL: the member's name */
        uint64_t min, max;              /* ranges and lengths, see each callback */
        size_t len_offset;              /* json_dispatch_b64: where the length goes */
};

#define JSON_DISPATCH_FIELD(d, userdata) ((void *) ((uint8_t *) (userdata) + (d)->offset))

/* Dispatch the members of o (an object) through table (ended by an entry
 * whose name is NULL). 0, or the first failure: -EBADMSG with *ret_reason
 * (may be NULL) set to the field's reason for a missing mandatory member,
 * a wrong type or a bad value, "unknown member" for a refused unknown one,
 * "not a JSON object" when o is not an object; a callback's own error
 * (e.g. -EINVAL) with its reason; -ENOMEM. Fields dispatched before a
 * failure stay set: callers free what they own as usual. */
int json_dispatch(json_object *o, const JsonDispatch table[], unsigned flags, void *userdata,
                  const char **ret_reason);

/* The first member of o that table does not name, borrowed from o, or
 * NULL (Varlink's InvalidParameter names it). */
const char *json_dispatch_find_unknown(json_object *o, const JsonDispatch table[]);

/*
 * Standard callbacks. Strings are always refused when they hold a NUL or
 * invalid UTF-8; min/max bound their length in bytes (max 0: no bound).
 */
/* const char *, borrowed from the object. */
int json_dispatch_string(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* char *, a copy; the previous value is freed. */
int json_dispatch_strdup(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* char[max + 1], copied in; max must be set. */
int json_dispatch_string_copy(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* uint64_t in min..max, a JSON integer; max 0 means JSON_UINT53_MAX. json-c
 * saturates numbers it cannot hold, so max is capped below UINT64_MAX. */
int json_dispatch_uint64(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* unsigned in min..max (max 0: UINT_MAX). */
int json_dispatch_uint(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* int64_t, a JSON integer strictly inside the int64 range (the ends are
 * where json-c saturates). */
int json_dispatch_int64(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* bool. */
int json_dispatch_bool(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* json_object *, borrowed: for objects and arrays handled by the caller. */
int json_dispatch_borrow(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* Strict base64 of min..max bytes (max must be set) into a new buffer:
 * uint8_t * at offset, size_t at len_offset. */
int json_dispatch_b64(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);
/* Strict base64 of exactly max bytes into uint8_t[max], decoded in place:
 * after a failure the field holds unspecified bytes. */
int json_dispatch_b64_fixed(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);

/* char[USERNAME_MAX + 1]: a string that is not a valid user name is
 * -EINVAL with the reason "bad username" (the relay answers bad_username);
 * a member of another type is the field's -EBADMSG as usual. */
int json_dispatch_user(json_object *v, const JsonDispatch *d, void *userdata, const char **reason);

/* A string member's value with its length, for callbacks of their own:
 * 0, or -EBADMSG when v is not a string of min..max bytes (max 0: any)
 * of valid UTF-8 without NUL. */
int json_string_get(json_object *v, size_t min, size_t max, const char **ret, size_t *ret_len);
