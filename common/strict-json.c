/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "macro.h"
#include "strict-json.h"
#include "util.h"

static int refuse(const char **ret_reason, const char *why) {
        if (ret_reason)
                *ret_reason = why;
        return -EBADMSG;
}

/* The lexical pass. Counts the members of all objects (a ':' outside
 * strings starts the value of one), so that duplicates can be found by
 * comparing with what the parser kept. */
static bool json_lexically_strict(const char *s, size_t len, size_t *ret_members) {
        bool in_string = false, escaped = false;
        size_t members = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) s[i];

                if (in_string) {
                        if (c < 0x20)
                                return false;
                        if (escaped) {
                                escaped = false;
                                if (c == 'u' && len - i > 4 && memcmp(s + i + 1, "0000", 4) == 0)
                                        return false;
                        } else if (c == '\\')
                                escaped = true;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if (c == ':')
                        members++;
                else if (c == 0 || !strchr("{}[], \t\r\n0123456789+-.eEtrufalsn", c))
                        return false;
        }
        *ret_members = members;
        return !in_string;
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

        if (len == 0 || len > INT32_MAX)
                return refuse(ret_reason, "invalid JSON");
        if (!utf8_valid(s, len))
                return refuse(ret_reason, "invalid UTF-8");
        if (!json_lexically_strict(s, len, &members))
                return refuse(ret_reason, "invalid JSON");

        tok = json_tokener_new_ex(depth);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, s, (int) len);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

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
