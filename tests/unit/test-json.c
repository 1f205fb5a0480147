/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for json.c: the strict parser against texts json-c alone
 * would take, a member's text as received against json-c's own, the
 * builders, and json_dispatch() with every standard
 * callback, both unknown-member policies, mandatory and nullable members,
 * type mismatches, integers at and beyond their bounds, hostile strings.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "test-main.h"
#include "util.h"

static json_object *parse(const char *s) {
        json_object *o = NULL;
        const char *reason = NULL;

        ck_assert_int_eq(json_parse_strict(s, strlen(s), 16, &o, &reason), 0);
        return o;
}

/* ---- the parser ------------------------------------------------------------ */

static const struct {
        const char *text;
        size_t len;             /* 0: strlen */
        const char *reason;
} bad_texts[] = {
        { "", 0, "invalid JSON" },
        { "{\"a\":1,\"a\":1}", 0, "duplicate member" },
        { "{\"a\":{\"b\":1,\"b\":2}}", 0, "duplicate member" },
        { "{\"a\":[{\"b\":1,\"b\":2}]}", 0, "duplicate member" },
        { "{'a':1}", 0, "invalid JSON" },
        { "{\"a\":NaN}", 0, "invalid JSON" },
        { "{\"a\":Infinity}", 0, "invalid JSON" },
        { "{\"a\":\"x\ty\"}", 0, "invalid JSON" },
        { "{\"a\":\"\\u0000\"}", 0, "invalid JSON" },
        { "{\"a\\u0000b\":1}", 0, "invalid JSON" },
        { "{\"a\":1}x", 0, "invalid JSON" },
        { "{\"a\":1} {}", 0, "invalid JSON" },
        { "{\"a\":1}\0", 8, "invalid UTF-8" },
        { "[1,2]", 0, "not a JSON object" },
        { "\"s\"", 0, "not a JSON object" },
        { "{\"a\":\"\xc3\x28\"}", 0, "invalid UTF-8" },
        { "{\"a\":\"\xed\xa0\x80\"}", 0, "invalid UTF-8" },
        { "{\"a\":1", 0, "invalid JSON" },
        { "{\"a\":\"1}", 0, "invalid JSON" },
        { "/*c*/{}", 0, "invalid JSON" },
        /* Bad UTF-8 is named as such wherever it is, even after a fault of
         * another kind: the first one found is not the reason given. */
        { "{'a':\"\xc3\x28\"}", 0, "invalid UTF-8" },
        { "{\"a\":\"x\ty\",\"b\":\"\xff\"}", 0, "invalid UTF-8" },
        { "{\"a\":\xc3\xa9}", 0, "invalid JSON" },
        { "{\"a\":\xc3}", 0, "invalid UTF-8" },
        { "{\"a\":\"\xc3\xa9", 0, "invalid JSON" },
};

START_TEST(test_parse_bad) {
        const char *text = bad_texts[_i].text, *reason = NULL;
        size_t len = bad_texts[_i].len ?: strlen(text);
        json_object *o = NULL;

        ck_assert_int_eq(json_parse_strict(text, len, 16, &o, &reason), -EBADMSG);
        ck_assert_ptr_null(o);
        ck_assert_str_eq(reason, bad_texts[_i].reason);
        /* A NULL reason pointer is allowed. */
        ck_assert_int_eq(json_parse_strict(text, len, 16, &o, NULL), -EBADMSG);
}
END_TEST

START_TEST(test_parse_good) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        json_object *v;

        o = parse(" {\"a\":\"\\u00e9\\n\",\"b\":[1,-2.5e3,true,false,null],\"c\":{\"a\":1}}\r\n\t");
        ck_assert(json_object_object_get_ex(o, "a", &v));
        ck_assert_str_eq(json_object_get_string(v), "\xc3\xa9\n");
        /* The same name in two objects is no duplicate. */
        ck_assert(json_object_object_get_ex(o, "c", &v));
        ck_assert(json_object_object_get_ex(v, "a", NULL));
}
END_TEST

/* One tokener serves every parse: a text it refused half-way, or a parse
 * of another depth, leaves nothing behind for the next one. */
START_TEST(test_parse_after_failure) {
        static const char *const bad[] = { "{\"a\":[1,{\"b\":", "{\"a\":1,}", "{\"a\":{\"a\":{}}}" };
        const char *good = "{\"b\":2,\"c\":\"d\"}", *reason = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(json_object_unrefp) json_object *o = NULL;
                json_object *v;

                ck_assert_int_eq(json_parse_strict(bad[i], strlen(bad[i]), 2, &o, &reason), -EBADMSG);
                ck_assert_str_eq(reason, "invalid JSON");
                ck_assert_int_eq(json_parse_strict(good, strlen(good), i == 1 ? 2 : 16, &o, &reason), 0);
                ck_assert(json_object_object_get_ex(o, "c", &v));
                ck_assert_str_eq(json_object_get_string(v), "d");
                ck_assert_int_eq(json_object_object_length(o), 2);
        }
}
END_TEST

START_TEST(test_parse_depth) {
        json_object *o = NULL;
        const char *reason = NULL;
        const char *deep = "{\"a\":{\"a\":{\"a\":{}}}}";

        ck_assert_int_eq(json_parse_strict(deep, strlen(deep), 3, &o, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "invalid JSON");
        ck_assert_int_eq(json_parse_strict(deep, strlen(deep), 4, &o, &reason), 0);
        json_object_put(o);
}
END_TEST

/* ---- texts as received ----------------------------------------------------- */

/* Frames whose "envelope" member json_member_plain() takes as written:
 * its bytes there must be json_plain_text() of what json-c parsed, which
 * is what the relay stores either way. */
static const char *const plain_texts[] = {
        /* As clients write them: base64 with '/', '+' and '='. */
        "{\"type\":\"send\",\"id\":2,\"envelope\":{\"v\":1,\"suite\":\"rsa-oaep-sha256+des-ede3-cbc+hmac-sha256\","
        "\"id\":\"iBOPkLB0itLR5Nb6/ZMvaw==\",\"from\":\"alice\",\"to\":\"bob\",\"ts\":1700000000,"
        "\"ek\":\"sB8hLJ7czw+aRPE1/zwk==\",\"iv\":\"zUrcoHBu25o=\",\"ct\":\"8F4NU0jcIoo=\"}}",
        /* Members in other orders, in the frame and in the envelope. */
        "{\"envelope\":{\"to\":\"bob\",\"v\":1,\"from\":\"alice\"},\"type\":\"send\",\"id\":2}",
        "{\"id\":2,\"envelope\":{\"from\":\"alice\",\"to\":\"bob\",\"v\":1},\"type\":\"send\"}",
        /* White space and escapes outside the envelope are not its bytes. */
        " { \"type\" : \"send\" ,\n\t\"envelope\" : {\"v\":1,\"to\":\"bob\"} , \"id\" : 2 }\r\n",
        "{\"type\":\"se\\u006ed\",\"note\":\"a\\\"b\\\\\",\"envelope\":{\"v\":1},\"x\":\"\\/\"}",
        /* UTF-8 as it is, DEL and the quote's neighbours included. */
        "{\"envelope\":{\"from\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"x\":\"\x7f!#[]{}:,\",\"/\":\"/\"}}",
        /* Integers json-c writes with the same digits. */
        "{\"envelope\":{\"a\":0,\"b\":-1,\"c\":123456789012345678,\"d\":-123456789012345678,\"e\":[10,-20]}}",
        /* Nesting, empty containers, literals. */
        "{\"envelope\":{\"a\":{\"b\":[1,\"x\",{\"c\":null}],\"e\":[]},\"f\":{},\"t\":true,\"u\":false,\"n\":null}}",
        "{\"envelope\":[[],[{}],\"]\",\"}\"]}",
        "{\"envelope\":\"x\"}",
        "{\"envelope\":7}",
        "{\"envelope\":\"\"}",
        /* The name elsewhere: inside another member, in a string. */
        "{\"a\":{\"envelope\":{\"v\":2}},\"b\":\"\\\"envelope\\\":{}\",\"envelope\":{\"v\":1}}",
};

/* Frames it declines, for json-c's serialization to be stored instead. */
static const char *const unplain_texts[] = {
        /* Escapes: json-c writes some of them otherwise, and the text
         * decides none. */
        "{\"envelope\":{\"a\":\"x\\\"y\"}}",
        "{\"envelope\":{\"a\":\"x\\\\y\"}}",
        "{\"envelope\":{\"a\":\"x\\/y\"}}",
        "{\"envelope\":{\"a\":\"caf\\u00e9\"}}",
        "{\"envelope\":{\"a\":\"x\\ny\"}}",
        "{\"envelope\":{\"a\":\"\\t\"}}",
        "{\"envelope\":{\"\\u0061\":1}}",
        /* White space inside the value. */
        "{\"envelope\":{\"a\":1, \"b\":2}}",
        "{\"envelope\":{ \"a\":1}}",
        "{\"envelope\":{\"a\":1 }}",
        "{\"envelope\":{\"a\" :1}}",
        "{\"envelope\":{\"a\":\n1}}",
        "{\"envelope\":{\"a\":[1\t,2]}}",
        "{\"envelope\":[ ]}",
        /* Numbers json-c may write otherwise. */
        "{\"envelope\":{\"a\":-0}}",
        "{\"envelope\":{\"a\":1.5}}",
        "{\"envelope\":{\"a\":10.0}}",
        "{\"envelope\":{\"a\":1e3}}",
        "{\"envelope\":{\"a\":1E3}}",
        "{\"envelope\":{\"a\":-0.0}}",
        "{\"envelope\":{\"a\":1234567890123456789}}",
        "{\"envelope\":{\"a\":-1234567890123456789}}",
        "{\"envelope\":{\"a\":99999999999999999999}}",
        "{\"envelope\":-0}",
        /* No member named literally "envelope" at the top. */
        "{\"envel\\u006fpe\":{\"v\":1}}",
        "{\"type\":\"send\"}",
        "{}",
        "{\"a\":{\"envelope\":{\"v\":1}}}",
        "{\"a\":[\"envelope\",{\"v\":1}]}",
};

/* json_plain_text() of the top-level member "envelope" of the text,
 * which must parse. */
static const char *serialized(json_object *o, size_t *ret_len) {
        json_object *v;
        const char *text;

        ck_assert(json_object_object_get_ex(o, "envelope", &v));
        text = json_plain_text(v, ret_len);
        ck_assert_ptr_nonnull(text);
        ck_assert_uint_eq(strlen(text), *ret_len);
        return text;
}

START_TEST(test_member_plain) {
        const char *text = plain_texts[_i], *span = NULL, *expect;
        _cleanup_(json_object_unrefp) json_object *o = parse(text);
        size_t span_len = 0, expect_len;

        expect = serialized(o, &expect_len);
        ck_assert_msg(json_member_plain(text, strlen(text), "envelope", &span, &span_len), "declined: %s", text);
        ck_assert_ptr_nonnull(span);
        ck_assert(span >= text && span + span_len <= text + strlen(text));
        ck_assert_msg(span_len == expect_len && memcmp(span, expect, expect_len) == 0,
                      "span %.*s, json-c %s", (int) span_len, span, expect);
}
END_TEST

START_TEST(test_member_unplain) {
        const char *text = unplain_texts[_i], *span = NULL;
        _cleanup_(json_object_unrefp) json_object *o = parse(text);
        size_t span_len = 0;

        ck_assert_msg(!json_member_plain(text, strlen(text), "envelope", &span, &span_len), "taken: %s", text);
        ck_assert_ptr_null(span);
}
END_TEST

/* Cut anywhere, a text is read within its bytes, and what is taken from
 * it is whole: a prefix holds the member only when the member ended. */
START_TEST(test_member_plain_cut) {
        const char *text = plain_texts[0];
        const char *member = strstr(text, "\"envelope\":") + strlen("\"envelope\":");
        size_t len = strlen(text), end = len - 1;  /* the envelope closes before the frame does */

        for (size_t cut = 0; cut <= len; cut++) {
                _cleanup_(freep) char *copy = malloc(cut ?: 1);
                const char *span = NULL;
                size_t span_len = 0;
                bool taken;

                ck_assert_ptr_nonnull(copy);
                memcpy(copy, text, cut);
                taken = json_member_plain(copy, cut, "envelope", &span, &span_len);
                ck_assert_int_eq(taken, cut >= end);
                if (taken) {
                        ck_assert_ptr_eq(span, copy + (member - text));
                        ck_assert_uint_eq(span_len, end - (size_t) (member - text));
                }
        }
}
END_TEST

/* ---- builders -------------------------------------------------------------- */

START_TEST(test_builders) {
        _cleanup_(json_object_unrefp) json_object *o = json_object_new_object(), *a = json_object_new_array();
        const char *s;

        ck_assert_int_eq(json_add_string(o, "s", "x\"y"), 0);
        ck_assert_int_eq(json_add_uint64(o, "u", UINT64_C(1) << 60), 0);
        ck_assert_int_eq(json_add_int64(o, "i", -5), 0);
        ck_assert_int_eq(json_add_bool(o, "b", true), 0);
        ck_assert_int_eq(json_add_b64(o, "d", "\x00\xff", 2), 0);
        ck_assert_int_eq(json_array_add(a, json_object_new_int(1)), 0);
        ck_assert_int_eq(json_add(o, "a", json_object_get(a)), 0);
        ck_assert_int_eq(json_add(o, "o", json_new_object_with_string("k", "v")), 0);
        ck_assert_int_eq(json_add_string_or_null(o, "z", NULL), 0);
        ck_assert_int_eq(json_add_string_or_null(o, "y", "s"), 0);
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_str_eq(s, "{\"s\":\"x\\\"y\",\"u\":1152921504606846976,\"i\":-5,\"b\":true,"
                            "\"d\":\"AP8=\",\"a\":[1],\"o\":{\"k\":\"v\"},\"z\":null,\"y\":\"s\"}");

        /* Failures release what they were given (LeakSanitizer checks). */
        ck_assert_int_eq(json_add_string(o, "n", NULL), -EINVAL);
        ck_assert_int_eq(json_add(o, "n", NULL), -ENOMEM);
        ck_assert_int_eq(json_add_string(NULL, "n", "x"), -ENOMEM);
        ck_assert_int_eq(json_add_uint64(NULL, "n", 1), -ENOMEM);
        ck_assert_int_eq(json_add_string_or_null(NULL, "n", NULL), -ENOMEM);
        ck_assert_int_eq(json_add_string_or_null(NULL, "n", "x"), -ENOMEM);
        ck_assert_int_eq(json_array_add(NULL, json_object_new_int(1)), -ENOMEM);
        ck_assert_int_eq(json_array_add(a, NULL), -ENOMEM);
        ck_assert(!json_object_object_get_ex(o, "n", NULL));
}
END_TEST

/* ---- dispatch -------------------------------------------------------------- */

typedef struct Thing {
        const char *name;
        char *copy;
        char token[8];
        uint64_t id;
        unsigned small;
        int64_t delta;
        bool flag;
        json_object *list;
        json_object *sub;
        uint8_t *blob;
        size_t blob_len;
        uint8_t nonce[4];
        int seen;
} Thing;

static void thing_done(Thing *t) {
        free(t->copy);
        free(t->blob);
}

static int dispatch_seen(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        int *p = JSON_DISPATCH_FIELD(d, userdata);

        if (json_object_get_int(v) == 13) {
                *reason = "unlucky";
                return -EINVAL;
        }
        (*p)++;
        return 0;
}

static const JsonDispatch thing_table[] = {
        { "name", json_type_string, json_dispatch_string, offsetof(Thing, name), JSON_MANDATORY,
          .reason = "bad name", .min = 1, .max = 16 },
        { "copy", json_type_string, json_dispatch_strdup, offsetof(Thing, copy), 0 },
        { "token", json_type_string, json_dispatch_string_copy, offsetof(Thing, token), 0,
          .max = sizeof(((Thing *) NULL)->token) - 1 },
        { "id", json_type_int, json_dispatch_uint64, offsetof(Thing, id), JSON_MANDATORY,
          .reason = "bad id" },
        { "small", json_type_int, json_dispatch_uint, offsetof(Thing, small), 0, .min = 1, .max = 10 },
        { "delta", json_type_int, json_dispatch_int64, offsetof(Thing, delta), 0 },
        { "flag", json_type_boolean, json_dispatch_bool, offsetof(Thing, flag), JSON_NULLABLE },
        { "list", json_type_array, json_dispatch_borrow, offsetof(Thing, list), 0 },
        { "sub", json_type_object, json_dispatch_borrow, offsetof(Thing, sub), 0 },
        { "blob", json_type_string, json_dispatch_b64, offsetof(Thing, blob), 0,
          .min = 2, .max = 4, .len_offset = offsetof(Thing, blob_len) },
        { "nonce", json_type_string, json_dispatch_b64_fixed, offsetof(Thing, nonce), 0, .max = 4 },
        { "seen", json_type_null, dispatch_seen, offsetof(Thing, seen), 0 },
        { "ignored", json_type_string, NULL, 0, 0 },
        {}
};

START_TEST(test_dispatch_all) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        Thing t = {};
        const char *reason = NULL;

        o = parse("{\"name\":\"alice\",\"copy\":\"c\\u00e9\",\"token\":\"abcdefg\",\"id\":9007199254740991,"
                  "\"small\":10,\"delta\":-9223372036854775807,\"flag\":true,\"list\":[1],\"sub\":{},"
                  "\"blob\":\"AAEC\",\"nonce\":\"AQIDBA==\",\"seen\":\"any type\",\"ignored\":\"x\","
                  "\"unknown\":1}");
        ck_assert_int_eq(json_dispatch(o, thing_table, 0, &t, &reason), 0);
        ck_assert_str_eq(t.name, "alice");
        ck_assert_str_eq(t.copy, "c\xc3\xa9");
        ck_assert_str_eq(t.token, "abcdefg");
        ck_assert_uint_eq(t.id, JSON_UINT53_MAX);
        ck_assert_uint_eq(t.small, 10);
        ck_assert(t.delta == -INT64_MAX);
        ck_assert(t.flag);
        ck_assert_int_eq(json_object_array_length(t.list), 1);
        ck_assert(json_object_is_type(t.sub, json_type_object));
        ck_assert_uint_eq(t.blob_len, 3);
        ck_assert_mem_eq(t.blob, "\x00\x01\x02", 3);
        ck_assert_mem_eq(t.nonce, "\x01\x02\x03\x04", 4);
        ck_assert_int_eq(t.seen, 1);

        /* Dispatching again replaces allocated values without leaking. */
        ck_assert_int_eq(json_dispatch(o, thing_table, 0, &t, &reason), 0);
        ck_assert_int_eq(t.seen, 2);
        thing_done(&t);
}
END_TEST

START_TEST(test_dispatch_optional) {
        _cleanup_(json_object_unrefp) json_object *o = parse("{\"id\":0,\"name\":\"n\",\"flag\":null}");
        Thing t = { .small = 7, .flag = true };

        ck_assert_int_eq(json_dispatch(o, thing_table, 0, &t, NULL), 0);
        ck_assert_uint_eq(t.id, 0);
        /* Absent and nullable-null members leave the field alone. */
        ck_assert_uint_eq(t.small, 7);
        ck_assert(t.flag);
        ck_assert_ptr_null(t.copy);
        ck_assert_int_eq(t.seen, 0);
}
END_TEST

START_TEST(test_dispatch_unknown) {
        _cleanup_(json_object_unrefp) json_object *o = parse("{\"id\":1,\"name\":\"n\",\"extra\":1}");
        Thing t = {};
        const char *reason = NULL;

        ck_assert_str_eq(json_dispatch_find_unknown(o, thing_table), "extra");
        ck_assert_int_eq(json_dispatch(o, thing_table, JSON_REFUSE_UNKNOWN, &t, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "unknown member");
        ck_assert_int_eq(json_dispatch(o, thing_table, 0, &t, &reason), 0);

        json_object_object_del(o, "extra");
        ck_assert_ptr_null(json_dispatch_find_unknown(o, thing_table));
        ck_assert_int_eq(json_dispatch(o, thing_table, JSON_REFUSE_UNKNOWN, &t, &reason), 0);
}
END_TEST

START_TEST(test_dispatch_mandatory_all) {
        static const JsonDispatch table[] = {
                { "a", json_type_int, NULL, 0, 0 },
                { "b", json_type_int, NULL, 0, 0 },
                {}
        };
        _cleanup_(json_object_unrefp) json_object *o = parse("{\"a\":1}");
        const char *reason = NULL;

        ck_assert_int_eq(json_dispatch(o, table, 0, NULL, &reason), 0);
        /* JSON_MANDATORY for the call applies to every field; with no
         * reason of its own the field's name is the reason. */
        ck_assert_int_eq(json_dispatch(o, table, JSON_MANDATORY, NULL, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "b");
}
END_TEST

START_TEST(test_dispatch_not_object) {
        _cleanup_(json_object_unrefp) json_object *a = json_object_new_array();
        Thing t = {};
        const char *reason = NULL;

        ck_assert_int_eq(json_dispatch(a, thing_table, 0, &t, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "not a JSON object");
        ck_assert_int_eq(json_dispatch(NULL, thing_table, 0, &t, &reason), -EBADMSG);
        ck_assert_ptr_null(json_dispatch_find_unknown(NULL, thing_table));
}
END_TEST

/* Each with "name" and "id" valid unless replaced: one bad member and the
 * reason and error it must give. */
static const struct {
        const char *members;
        int error;
        const char *reason;
} bad_members[] = {
        /* missing mandatory */
        { "\"id\":1", -EBADMSG, "bad name" },
        { "\"name\":\"n\"", -EBADMSG, "bad id" },
        /* type mismatches, null included */
        { "\"name\":1,\"id\":1", -EBADMSG, "bad name" },
        { "\"name\":null,\"id\":1", -EBADMSG, "bad name" },
        { "\"name\":\"n\",\"id\":\"1\"", -EBADMSG, "bad id" },
        { "\"name\":\"n\",\"id\":1.0", -EBADMSG, "bad id" },
        { "\"name\":\"n\",\"id\":true", -EBADMSG, "bad id" },
        { "\"name\":\"n\",\"id\":1,\"flag\":1", -EBADMSG, "flag" },
        { "\"name\":\"n\",\"id\":1,\"flag\":\"true\"", -EBADMSG, "flag" },
        { "\"name\":\"n\",\"id\":1,\"list\":{}", -EBADMSG, "list" },
        { "\"name\":\"n\",\"id\":1,\"sub\":[]", -EBADMSG, "sub" },
        { "\"name\":\"n\",\"id\":1,\"sub\":null", -EBADMSG, "sub" },
        { "\"name\":\"n\",\"id\":1,\"ignored\":2", -EBADMSG, "ignored" },
        /* out of range */
        { "\"name\":\"n\",\"id\":-1", -EBADMSG, "bad id" },
        { "\"name\":\"n\",\"id\":9007199254740992", -EBADMSG, "bad id" },
        { "\"name\":\"n\",\"id\":18446744073709551615", -EBADMSG, "bad id" },
        { "\"name\":\"n\",\"id\":18446744073709551616", -EBADMSG, "bad id" },
        { "\"name\":\"n\",\"id\":99999999999999999999999999", -EBADMSG, "bad id" },
        { "\"name\":\"n\",\"id\":1,\"small\":0", -EBADMSG, "small" },
        { "\"name\":\"n\",\"id\":1,\"small\":11", -EBADMSG, "small" },
        { "\"name\":\"n\",\"id\":1,\"small\":4294967297", -EBADMSG, "small" },
        { "\"name\":\"n\",\"id\":1,\"delta\":9223372036854775807", -EBADMSG, "delta" },
        { "\"name\":\"n\",\"id\":1,\"delta\":-9223372036854775808", -EBADMSG, "delta" },
        { "\"name\":\"n\",\"id\":1,\"delta\":-99999999999999999999", -EBADMSG, "delta" },
        { "\"name\":\"n\",\"id\":1,\"delta\":1e3", -EBADMSG, "delta" },
        /* hostile strings */
        { "\"name\":\"\",\"id\":1", -EBADMSG, "bad name" },
        { "\"name\":\"0123456789abcdefX\",\"id\":1", -EBADMSG, "bad name" },
        { "\"name\":\"n\",\"id\":1,\"token\":\"abcdefgh\"", -EBADMSG, "token" },
        { "\"name\":\"n\",\"id\":1,\"copy\":{}", -EBADMSG, "copy" },
        /* base64 */
        { "\"name\":\"n\",\"id\":1,\"blob\":\"AA==\"", -EBADMSG, "blob" },
        { "\"name\":\"n\",\"id\":1,\"blob\":\"AAECAwQ=\"", -EBADMSG, "blob" },
        { "\"name\":\"n\",\"id\":1,\"blob\":\"AAEC!\"", -EBADMSG, "blob" },
        { "\"name\":\"n\",\"id\":1,\"blob\":\"AAE\"", -EBADMSG, "blob" },
        { "\"name\":\"n\",\"id\":1,\"blob\":\"\"", -EBADMSG, "blob" },
        { "\"name\":\"n\",\"id\":1,\"nonce\":\"AQID\"", -EBADMSG, "nonce" },
        { "\"name\":\"n\",\"id\":1,\"nonce\":\"AQIDBAU=\"", -EBADMSG, "nonce" },
        /* a callback's own error and reason */
        { "\"name\":\"n\",\"id\":1,\"seen\":13", -EINVAL, "unlucky" },
};

START_TEST(test_dispatch_bad) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(freep) char *text = NULL;
        Thing t = {};
        const char *reason = NULL;

        ck_assert_int_ge(asprintf(&text, "{%s}", bad_members[_i].members), 0);
        o = parse(text);
        ck_assert_int_eq(json_dispatch(o, thing_table, 0, &t, &reason), bad_members[_i].error);
        ck_assert_str_eq(reason, bad_members[_i].reason);
        thing_done(&t);
}
END_TEST

/* Strings that the parser lets through but C must not misread, built
 * directly (as a caller dispatching its own objects might). */
START_TEST(test_dispatch_hostile_strings) {
        static const struct {
                const char *s;
                size_t len;
        } bad[] = {
                { "a\0b", 3 },                  /* embedded NUL */
                { "\xff\xfe", 2 },              /* not UTF-8 */
                { "\xc0\x80", 2 },              /* overlong NUL */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(json_object_unrefp) json_object *o = json_object_new_object();
                Thing t = {};
                const char *reason = NULL;

                ck_assert_int_eq(json_add(o, "name", json_object_new_string_len(bad[i].s, (int) bad[i].len)), 0);
                ck_assert_int_eq(json_add_uint64(o, "id", 1), 0);
                ck_assert_int_eq(json_dispatch(o, thing_table, 0, &t, &reason), -EBADMSG);
                ck_assert_str_eq(reason, "bad name");
        }
}
END_TEST

START_TEST(test_dispatch_user) {
        static const JsonDispatch table[] = {
                { "user", json_type_string, json_dispatch_user, 0, JSON_MANDATORY, .reason = "bad user" },
                {}
        };
        static const struct {
                const char *text;
                int error;
                const char *reason;
        } cases[] = {
                { "{\"user\":\"alice_1\"}", 0, NULL },
                { "{}", -EBADMSG, "bad user" },
                { "{\"user\":7}", -EBADMSG, "bad user" },
                { "{\"user\":\"\"}", -EINVAL, "bad username" },
                { "{\"user\":\"Al ice\"}", -EINVAL, "bad username" },
                { "{\"user\":\"a\u00e9\"}", -EINVAL, "bad username" },
                { "{\"user\":\"abcdefghijklmnopqrstuvwxyz0123456\"}", -EINVAL, "bad username" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(json_object_unrefp) json_object *o = parse(cases[i].text);
                char user[USERNAME_MAX + 1] = "";
                const char *reason = NULL;

                ck_assert_int_eq(json_dispatch(o, table, 0, user, &reason), cases[i].error);
                if (cases[i].error == 0)
                        ck_assert_str_eq(user, "alice_1");
                else
                        ck_assert_str_eq(reason, cases[i].reason);
        }
}
END_TEST

static Suite *json_suite(void) {
        Suite *s = suite_create("json");
        TCase *tc;

        tc = tcase_create("parse");
        tcase_add_loop_test(tc, test_parse_bad, 0, (int) ELEMENTSOF(bad_texts));
        tcase_add_test(tc, test_parse_good);
        tcase_add_test(tc, test_parse_after_failure);
        tcase_add_test(tc, test_parse_depth);
        suite_add_tcase(s, tc);

        tc = tcase_create("as received");
        tcase_add_loop_test(tc, test_member_plain, 0, (int) ELEMENTSOF(plain_texts));
        tcase_add_loop_test(tc, test_member_unplain, 0, (int) ELEMENTSOF(unplain_texts));
        tcase_add_test(tc, test_member_plain_cut);
        suite_add_tcase(s, tc);

        tc = tcase_create("build");
        tcase_add_test(tc, test_builders);
        suite_add_tcase(s, tc);

        tc = tcase_create("dispatch");
        tcase_add_test(tc, test_dispatch_all);
        tcase_add_test(tc, test_dispatch_optional);
        tcase_add_test(tc, test_dispatch_unknown);
        tcase_add_test(tc, test_dispatch_mandatory_all);
        tcase_add_test(tc, test_dispatch_not_object);
        tcase_add_loop_test(tc, test_dispatch_bad, 0, (int) ELEMENTSOF(bad_members));
        tcase_add_test(tc, test_dispatch_hostile_strings);
        tcase_add_test(tc, test_dispatch_user);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        return run_suite(json_suite());
}
