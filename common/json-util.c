/* SPDX-License-Identifier: MIT */
/*
 * The one JSON layer: the strict parser, the builders and the field
 * dispatcher (see json-util.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "json-util.h"
#include "macro.h"
#include "util.h"

static int refuse(const char **ret_reason, const char *why) {
        if (ret_reason)
                *ret_reason = why;
        return -EBADMSG;
}

/* The bytes allowed outside strings: JSON's structural characters, white
 * space, and those of numbers, true, false and null. */
static const bool json_bare[256] = {
        ['{'] = true, ['}'] = true, ['['] = true, [']'] = true, [','] = true, [':'] = true,
        [' '] = true, ['\t'] = true, ['\r'] = true, ['\n'] = true,
        ['0'] = true, ['1'] = true, ['2'] = true, ['3'] = true, ['4'] = true,
        ['5'] = true, ['6'] = true, ['7'] = true, ['8'] = true, ['9'] = true,
        ['+'] = true, ['-'] = true, ['.'] = true, ['e'] = true, ['E'] = true,
        ['t'] = true, ['r'] = true, ['u'] = true, ['f'] = true, ['a'] = true,
        ['l'] = true, ['s'] = true, ['n'] = true,
};

/* The bytes of a string that need no second look: ASCII from space on,
 * but the quote (0x22) and the backslash (0x5c). */
static const bool json_plain[256] = {
        [0x20 ... 0x21] = true, [0x23 ... 0x5b] = true, [0x5d ... 0x7f] = true,
};

/* The lexical pass, UTF-8 included, in one walk over the text: a frame
 * is read once before json-c reads it. Counts the members of all objects
 * (a ':' outside strings starts the value of one), so that duplicates can
 * be found by comparing with what the parser kept. Invalid UTF-8 anywhere
 * is reported as such, before any other fault, wherever the two are. */
static int json_lexically_strict(const char *s, size_t len, size_t *ret_members,
                                 const char **ret_reason) {
        bool in_string = false, escaped = false;
        size_t members = 0, i = 0;

        while (i < len) {
                unsigned char c;

                /* Most of a frame is the inside of strings (base64): their
                 * plain bytes are passed over in a loop of their own. */
                if (in_string && !escaped)
                        while (i < len && json_plain[(unsigned char) s[i]])
                                i++;
                if (i == len)
                        break;
                c = (unsigned char) s[i];
                if (c >= 0x80) {
                        uint32_t u;
                        size_t n = utf8_char(s + i, len - i, &u);

                        if (n == 0)
                                return refuse(ret_reason, "invalid UTF-8");
                        if (!in_string)
                                goto invalid;
                        escaped = false;
                        i += n;
                        continue;
                }
                if (in_string) {
                        if (c < 0x20)
                                goto invalid;   /* NUL among them: see below */
                        if (escaped) {
                                escaped = false;
                                if (c == 'u' && len - i > 4 && memcmp(s + i + 1, "0000", 4) == 0)
                                        goto invalid;
                        } else if (c == '\\')
                                escaped = true;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if (c == ':')
                        members++;
                else if (!json_bare[c])
                        goto invalid;
                i++;
        }
        if (in_string)
                return refuse(ret_reason, "invalid JSON");
        *ret_members = members;
        return 0;

invalid:
        /* The bytes before i are valid UTF-8 and i starts a character: the
         * rest decides whether the text was bad UTF-8 (a NUL included). */
        return refuse(ret_reason, utf8_valid(s + i, len - i) ? "invalid JSON" : "invalid UTF-8");
}

/* One tokener for every parse: making one allocates its stack and string
 * buffer, which took a pair of mallocs and frees per frame. The daemon and
 * scctl each parse on one thread only. After a text longer than this the
 * tokener is freed, so that its string buffer, which grows to the longest
 * string seen, keeps no more than that. */
#define JSON_TOKENER_KEEP_MAX (64 * 1024)

static json_tokener *kept_tokener;
static int kept_depth;

static json_tokener *tokener_get(int depth) {
        if (kept_tokener && kept_depth == depth)
                return kept_tokener;
        if (kept_tokener)
                json_tokener_free(kept_tokener);
        kept_tokener = json_tokener_new_ex(depth);
        if (!kept_tokener)
                return NULL;
        kept_depth = depth;
        json_tokener_set_flags(kept_tokener, JSON_TOKENER_STRICT);
        return kept_tokener;
}

/* After a parse, failed ones too: what json-c built of a text it refused
 * is released now, not at the next parse. */
static void tokener_put(size_t len) {
        json_tokener_reset(kept_tokener);
        if (len > JSON_TOKENER_KEEP_MAX) {
                json_tokener_free(kept_tokener);
                kept_tokener = NULL;
        }
}

/* Members of every object in the tree. json-c replaces a member that
 * comes again, so a text with a duplicate has more ':' than this. */
static size_t json_count_members(json_object *o) {
        size_t n = 0;

        switch (json_object_get_type(o)) {
        case json_type_object: {
                json_object_object_foreach(o, key, value) {
                        (void) key;
                        n += 1 + json_count_members(value);
                }
                break;
        }
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        n += json_count_members(json_object_array_get_idx(o, i));
                break;
        default:
                break;
        }
        return n;
}

int json_parse_strict(const char *s, size_t len, int depth, json_object **ret,
                      const char **ret_reason) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        json_tokener *tok;
        size_t end, members;
        int r;

        if (len == 0 || len > INT32_MAX)
                return refuse(ret_reason, "invalid JSON");
        r = json_lexically_strict(s, len, &members, ret_reason);
        if (r < 0)
                return r;

        tok = tokener_get(depth);
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, s, (int) len);
        end = json_tokener_get_parse_end(tok);
        tokener_put(len);

        if (!o)
                return refuse(ret_reason, "invalid JSON");
        if (end > len)
                return refuse(ret_reason, "trailing data");
        for (; end < len; end++)
                if (!strchr(" \t\r\n", s[end]))
                        return refuse(ret_reason, "trailing data");
        if (!json_object_is_type(o, json_type_object))
                return refuse(ret_reason, "not a JSON object");
        if (json_count_members(o) != members)
                return refuse(ret_reason, "duplicate member");

        *ret = TAKE_PTR(o);
        return 0;
}

/* ---- texts as received ----------------------------------------------------- */

const char *json_plain_text(json_object *o, size_t *ret_len) {
        return json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                 ret_len);
}

static bool json_space(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t skip_space(const char *s, size_t len, size_t i) {
        while (i < len && json_space(s[i]))
                i++;
        return i;
}

static bool json_digit(char c) {
        return c >= '0' && c <= '9';
}

/* The index after the string that starts at s[i] (a quote), or 0 when it
 * does not end. *plain is cleared when it holds a backslash: json-c
 * writes the character escaped or not, as it sees fit, and the text
 * decides nothing. Most of an envelope is the inside of strings (base64):
 * memchr() finds their end, where a loop over the bytes cost more than
 * json-c's serialization it is there to save. */
static size_t string_end(const char *s, size_t len, size_t i, bool *plain) {
        for (i++; i < len;) {
                const char *quote = memchr(s + i, '"', len - i), *backslash;

                if (!quote)
                        return 0;
                backslash = memchr(s + i, '\\', (size_t) (quote - s) - i);
                if (!backslash)
                        return (size_t) (quote - s) + 1;
                /* Past the escaped character, which may be a quote. */
                *plain = false;
                i = (size_t) (backslash - s) + 2;
        }
        return 0;
}

/* The index after the number at s[i]. *plain is cleared unless it is an
 * integer json-c writes with the same digits: no "-0", no leading zero,
 * no fraction or exponent (json-c may write those otherwise), and at
 * most 18 digits, which any int64 holds, where json-c saturates. */
static size_t number_end(const char *s, size_t len, size_t i, bool *plain) {
        size_t start = i, digits;

        if (s[i] == '-')
                i++;
        digits = i;
        while (i < len && json_digit(s[i]))
                i++;
        digits = i - digits;
        if (digits == 0 || digits > 18 || (s[i - digits] == '0' && (digits > 1 || s[start] == '-')))
                *plain = false;
        while (i < len && (json_digit(s[i]) || s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == '+' ||
                           s[i] == '-')) {
                *plain = false;
                i++;
        }
        return i;
}

/* The index after true, false or null at s[i] (json-c writes them as
 * they are), or 0. */
static size_t literal_end(const char *s, size_t len, size_t i) {
        static const char *const words[] = { "true", "false", "null" };

        for (size_t k = 0; k < ELEMENTSOF(words); k++) {
                size_t n = strlen(words[k]);

                if (len - i >= n && memcmp(s + i, words[k], n) == 0)
                        return i + n;
        }
        return 0;
}

/* The index after the value that starts at s[i], or 0 when none does.
 * *plain is cleared when json-c would write it otherwise (see
 * json_plain_text()): white space, a backslash, a number as number_end()
 * says. Objects and arrays are followed to their end without recursion:
 * a text past json_parse_strict()'s depth bound is walked all the same. */
static size_t value_end(const char *s, size_t len, size_t i, bool *plain) {
        size_t depth = 0;

        do {
                if (i >= len)
                        return 0;
                switch (s[i]) {
                case '"':
                        i = string_end(s, len, i, plain);
                        if (i == 0)
                                return 0;
                        break;
                case '{':
                case '[':
                        depth++;
                        i++;
                        break;
                case '}':
                case ']':
                        if (depth == 0)
                                return 0;
                        depth--;
                        i++;
                        break;
                case ',':
                case ':':
                        if (depth == 0)
                                return 0;
                        i++;
                        break;
                case ' ':
                case '\t':
                case '\r':
                case '\n':
                        if (depth == 0)
                                return 0;
                        *plain = false;
                        i++;
                        break;
                case 't':
                case 'f':
                case 'n':
                        i = literal_end(s, len, i);
                        if (i == 0)
                                return 0;
                        break;
                default:
                        if (s[i] != '-' && !json_digit(s[i]))
                                return 0;
                        i = number_end(s, len, i, plain);
                        break;
                }
        } while (depth > 0);
        return i;
}

bool json_member_plain(const char *s, size_t len, const char *key, const char **ret, size_t *ret_len) {
        size_t key_len = strlen(key), i;

        i = skip_space(s, len, 0);
        if (i >= len || s[i] != '{')
                return false;
        for (i++;;) {
                size_t name, name_end, value;
                bool name_plain = true, plain = true;

                /* A name, ':', a value, then ',' or the end of the object. */
                name = skip_space(s, len, i);
                if (name >= len || s[name] != '"')
                        return false;
                name_end = string_end(s, len, name, &name_plain);
                if (name_end == 0)
                        return false;
                i = skip_space(s, len, name_end);
                if (i >= len || s[i] != ':')
                        return false;
                value = skip_space(s, len, i + 1);
                i = value_end(s, len, value, &plain);
                if (i == 0)
                        return false;
                /* The name as it is written: one with an escape is another
                 * spelling json-c reads as the same, and json_parse_strict()
                 * let no object have a member twice. */
                if (name_end - name - 2 == key_len && memcmp(s + name + 1, key, key_len) == 0) {
                        if (!plain)
                                return false;
                        *ret = s + value;
                        *ret_len = i - value;
                        return true;
                }
                i = skip_space(s, len, i);
                if (i >= len || s[i] != ',')
                        return false;
                i++;
        }
}

/* ---- builders -------------------------------------------------------------- */

int json_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        /* json-c leaves v with the caller when adding fails. */
        if (!o || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int json_add_string(json_object *o, const char *key, const char *s) {
        if (!s)
                return -EINVAL;
        return json_add(o, key, json_object_new_string(s));
}

int json_add_string_or_null(json_object *o, const char *key, const char *s) {
        if (s)
                return json_add_string(o, key, s);
        /* json-c's null is a NULL value. */
        if (!o || json_object_object_add(o, key, NULL) < 0)
                return -ENOMEM;
        return 0;
}

int json_add_uint64(json_object *o, const char *key, uint64_t u) {
        return json_add(o, key, json_object_new_uint64(u));
}

int json_add_int64(json_object *o, const char *key, int64_t i) {
        return json_add(o, key, json_object_new_int64(i));
}

int json_add_bool(json_object *o, const char *key, bool b) {
        return json_add(o, key, json_object_new_boolean(b));
}

int json_add_b64(json_object *o, const char *key, const void *data, size_t len) {
        _cleanup_(freep) char *s = NULL;
        int r;

        r = b64_encode(data, len, &s);
        if (r < 0)
                return r;
        return json_add_string(o, key, s);
}

int json_array_add(json_object *a, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (!a || json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

json_object *json_new_object_with_string(const char *key, const char *s) {
        _cleanup_(json_object_unrefp) json_object *o = json_object_new_object();

        if (json_add_string(o, key, s) < 0)
                return NULL;
        return TAKE_PTR(o);
}

/* ---- dispatch -------------------------------------------------------------- */

static const JsonDispatch *dispatch_find(const JsonDispatch table[], const char *name) {
        for (const JsonDispatch *d = table; d->name; d++)
                if (strcmp(d->name, name) == 0)
                        return d;
        return NULL;
}

const char *json_dispatch_find_unknown(json_object *o, const JsonDispatch table[]) {
        if (!o || !json_object_is_type(o, json_type_object))
                return NULL;
        json_object_object_foreach(o, key, value) {
                (void) value;
                if (!dispatch_find(table, key))
                        return key;
        }
        return NULL;
}

int json_dispatch(json_object *o, const JsonDispatch table[], unsigned flags, void *userdata,
                  const char **ret_reason) {
        const char *reason = NULL;
        int r = 0;

        if (!o || !json_object_is_type(o, json_type_object)) {
                reason = "not a JSON object";
                r = -EBADMSG;
                goto finish;
        }
        if ((flags & JSON_REFUSE_UNKNOWN) && json_dispatch_find_unknown(o, table)) {
                reason = "unknown member";
                r = -EBADMSG;
                goto finish;
        }

        for (const JsonDispatch *d = table; d->name; d++) {
                unsigned f = d->flags | (flags & (JSON_MANDATORY | JSON_NULLABLE));
                json_object *v = NULL;
                bool present;

                reason = d->reason ?: d->name;
                /* json-c keeps a null member as a NULL value. */
                present = json_object_object_get_ex(o, d->name, &v);
                if (present && !v && (f & JSON_NULLABLE))
                        present = false;
                if (!present) {
                        if (f & JSON_MANDATORY) {
                                r = -EBADMSG;
                                goto finish;
                        }
                        continue;
                }
                if (d->type != json_type_null && (!v || !json_object_is_type(v, d->type))) {
                        r = -EBADMSG;
                        goto finish;
                }
                if (d->callback) {
                        r = d->callback(v, d, userdata, &reason);
                        if (r < 0)
                                goto finish;
                }
        }
        return 0;

finish:
        if (ret_reason)
                *ret_reason = r == -ENOMEM ? "out of memory" : reason;
        return r;
}

int json_string_get(json_object *v, size_t min, size_t max, const char **ret, size_t *ret_len) {
        const char *s;
        size_t len;

        if (!v || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        s = json_object_get_string(v);
        len = (size_t) json_object_get_string_len(v);
        /* An embedded NUL would make C see a shorter string than JSON. */
        if (len < min || (max > 0 && len > max) || strlen(s) != len || !utf8_valid(s, len))
                return -EBADMSG;
        *ret = s;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int json_dispatch_string(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        (void) reason;
        return json_string_get(v, d->min, d->max, JSON_DISPATCH_FIELD(d, userdata), NULL);
}

int json_dispatch_strdup(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        char **p = JSON_DISPATCH_FIELD(d, userdata), *copy;
        const char *s;
        size_t len;
        int r;

        (void) reason;
        r = json_string_get(v, d->min, d->max, &s, &len);
        if (r < 0)
                return r;
        copy = strndup(s, len);
        if (!copy)
                return -ENOMEM;
        free(*p);
        *p = copy;
        return 0;
}

int json_dispatch_string_copy(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        const char *s;
        size_t len;
        int r;

        (void) reason;
        if (d->max == 0)
                return -EINVAL;
        r = json_string_get(v, d->min, d->max, &s, &len);
        if (r < 0)
                return r;
        memcpy(JSON_DISPATCH_FIELD(d, userdata), s, len + 1);
        return 0;
}

int json_dispatch_user(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        const char *s;
        size_t len;

        if (!v || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        if (json_string_get(v, 1, USERNAME_MAX, &s, &len) < 0 || !username_valid(s)) {
                *reason = "bad username";
                return -EINVAL;
        }
        memcpy(JSON_DISPATCH_FIELD(d, userdata), s, len + 1);
        return 0;
}

/* A JSON integer (not a double, not a string) as int64, with json-c's
 * saturated ends refused: they may stand for any larger number. */
static int integer_get(json_object *v, int64_t *ret) {
        int64_t i;

        if (!v || !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        i = json_object_get_int64(v);
        if (i == INT64_MIN)
                return -EBADMSG;
        *ret = i;
        return 0;
}

static int unsigned_get(json_object *v, uint64_t min, uint64_t max, uint64_t *ret) {
        int64_t i;
        uint64_t u;

        if (integer_get(v, &i) < 0 || i < 0)
                return -EBADMSG;
        /* Above INT64_MAX json-c keeps a uint64, saturating at UINT64_MAX. */
        u = i == INT64_MAX ? json_object_get_uint64(v) : (uint64_t) i;
        if (u < min || u > MIN(max, UINT64_MAX - 1))
                return -EBADMSG;
        *ret = u;
        return 0;
}

int json_dispatch_uint64(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        uint64_t *p = JSON_DISPATCH_FIELD(d, userdata);

        (void) reason;
        return unsigned_get(v, d->min, d->max ?: JSON_UINT53_MAX, p);
}

int json_dispatch_uint(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        unsigned *p = JSON_DISPATCH_FIELD(d, userdata);
        uint64_t u;
        int r;

        (void) reason;
        r = unsigned_get(v, d->min, MIN(d->max ?: UINT_MAX, UINT_MAX), &u);
        if (r < 0)
                return r;
        *p = (unsigned) u;
        return 0;
}

int json_dispatch_int64(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        int64_t *p = JSON_DISPATCH_FIELD(d, userdata), i;

        (void) reason;
        if (integer_get(v, &i) < 0 || i == INT64_MAX)
                return -EBADMSG;
        *p = i;
        return 0;
}

int json_dispatch_bool(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        bool *p = JSON_DISPATCH_FIELD(d, userdata);

        (void) reason;
        if (!v || !json_object_is_type(v, json_type_boolean))
                return -EBADMSG;
        *p = json_object_get_boolean(v);
        return 0;
}

int json_dispatch_borrow(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        json_object **p = JSON_DISPATCH_FIELD(d, userdata);

        (void) reason;
        *p = v;
        return 0;
}

/* A string member that should be base64 of at most max bytes. The
 * decoder refuses every byte outside the alphabet, NUL and non-ASCII
 * included, so json_string_get()'s walks for NUL and UTF-8 would only look
 * at the same characters once more. The encoded length is checked before
 * decoding, so the decoder never works on more than it must. */
static int b64_string_get(json_object *v, size_t max, const char **ret, size_t *ret_len) {
        size_t len;

        if (max == 0)
                return -EINVAL;
        if (!v || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        len = (size_t) json_object_get_string_len(v);
        if (len < 1 || len > 4 * ((max + 2) / 3))
                return -EBADMSG;
        *ret = json_object_get_string(v);
        *ret_len = len;
        return 0;
}

/* Strict base64 of min..max bytes into a new buffer. */
static int b64_get(json_object *v, size_t min, size_t max, uint8_t **ret, size_t *ret_len) {
        _cleanup_(freep) uint8_t *data = NULL;
        const char *s;
        size_t slen, len;
        int r;

        r = b64_string_get(v, max, &s, &slen);
        if (r < 0)
                return r;
        r = b64_decode(s, slen, &data, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || len < min || len > max)
                return -EBADMSG;
        *ret = TAKE_PTR(data);
        *ret_len = len;
        return 0;
}

int json_dispatch_b64(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        uint8_t **p = JSON_DISPATCH_FIELD(d, userdata);
        size_t *p_len = (size_t *) ((uint8_t *) userdata + d->len_offset);
        uint8_t *data;
        size_t len;
        int r;

        (void) reason;
        r = b64_get(v, d->min, d->max, &data, &len);
        if (r < 0)
                return r;
        free(*p);
        *p = data;
        *p_len = len;
        return 0;
}

/* Decoded in place: ids, IVs, MACs and nonces need no buffer of their own. */
int json_dispatch_b64_fixed(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        const char *s;
        size_t slen, len;
        int r;

        (void) reason;
        r = b64_string_get(v, d->max, &s, &slen);
        if (r < 0)
                return r;
        r = b64_decode_to(s, slen, JSON_DISPATCH_FIELD(d, userdata), d->max, &len);
        if (r < 0 || len != d->max)
                return -EBADMSG;
        return 0;
}
