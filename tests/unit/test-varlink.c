/* SPDX-License-Identifier: MIT */
/* The Varlink wire format of the control socket: NUL-terminated messages
 * reassembled from any split of the stream, the bound on one message,
 * refusal of malformed JSON, and the call/reply parsers and builders. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "macro.h"
#include "test-main.h"
#include "varlink.h"

/* Feed all of data, taking complete messages out as they appear; returns
 * the number of messages, their compact JSON texts in out[] (caller
 * frees), or a negative errno from the reader. */
static int feed_and_collect(VarlinkReader *r, const char *data, size_t len, size_t chunk, char **out,
                            size_t max_out, size_t *n_out) {
        size_t off = 0;

        while (off < len) {
                size_t piece = MIN(chunk, len - off);
                ssize_t taken = varlink_reader_feed(r, data + off, piece);

                if (taken < 0)
                        return (int) taken;
                off += (size_t) taken;
                for (;;) {
                        json_object *o = NULL;
                        int k = varlink_reader_next(r, &o);

                        if (k < 0)
                                return k;
                        if (k == 0)
                                break;
                        ck_assert_uint_lt(*n_out, max_out);
                        out[(*n_out)++] = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
                        json_object_put(o);
                }
        }
        return 0;
}

static const char stream[] =
        "{\"method\":\"io.securechat.Control.Status\"}\0"
        "{\"parameters\":{\"user\":\"bob\"},\"more\":true}\0"
        " { \"a\" : [1, 2, {\"b\": \"\\u00e9t\\u00e9\"}] } \n\0"
        "{}\0";
static const char *const expected[] = {
        "{\"method\":\"io.securechat.Control.Status\"}",
        "{\"parameters\":{\"user\":\"bob\"},\"more\":true}",
        "{\"a\":[1,2,{\"b\":\"\xc3\xa9t\xc3\xa9\"}]}",
        "{}",
};

/* Every way of cutting the stream in two, and in three. */
START_TEST(test_reassembly_any_split) {
        size_t len = sizeof(stream) - 1;

        for (size_t i = 0; i <= len; i++)
                for (size_t j = i; j <= len; j++) {
                        VarlinkReader r;
                        char *out[8] = {};
                        size_t n = 0;

                        varlink_reader_init(&r, 256);
                        ck_assert_int_eq(feed_and_collect(&r, stream, i, SIZE_MAX, out, 8, &n), 0);
                        ck_assert_int_eq(feed_and_collect(&r, stream + i, j - i, SIZE_MAX, out, 8, &n), 0);
                        ck_assert_int_eq(feed_and_collect(&r, stream + j, len - j, SIZE_MAX, out, 8, &n), 0);
                        ck_assert_uint_eq(n, ELEMENTSOF(expected));
                        for (size_t k = 0; k < n; k++) {
                                ck_assert_str_eq(out[k], expected[k]);
                                free(out[k]);
                        }
                        ck_assert_uint_eq(varlink_reader_pending(&r), 0);
                        varlink_reader_done(&r);
                }
}
END_TEST

START_TEST(test_reassembly_chunks) {
        /* One byte at a time up to bigger pieces than the whole stream. */
        static const size_t chunks[] = { 1, 2, 3, 7, 16, 41, 1000 };
        size_t len = sizeof(stream) - 1;

        for (size_t c = 0; c < ELEMENTSOF(chunks); c++) {
                VarlinkReader r;
                char *out[8] = {};
                size_t n = 0;

                varlink_reader_init(&r, 64);
                ck_assert_int_eq(feed_and_collect(&r, stream, len, chunks[c], out, 8, &n), 0);
                ck_assert_uint_eq(n, ELEMENTSOF(expected));
                for (size_t k = 0; k < n; k++) {
                        ck_assert_str_eq(out[k], expected[k]);
                        free(out[k]);
                }
                varlink_reader_done(&r);
        }
}
END_TEST

/* Many messages through a small buffer, in pieces of changing size, read
 * straight from the reader's space as a socket would: the buffer must
 * move partial messages to its front and never exceed its bound. */
START_TEST(test_reassembly_many) {
        VarlinkReader r;
        char *data = NULL;
        size_t len = 0, off = 0, n = 0;
        uint32_t seed = 12345;
        FILE *f = open_memstream(&data, &len);

        ck_assert_ptr_nonnull(f);
        for (unsigned i = 0; i < 500; i++)
                fprintf(f, "{\"n\":%u,\"pad\":\"%.*s\"}%c", i, (int) (i % 23), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 0);
        ck_assert_int_eq(fclose(f), 0);

        varlink_reader_init(&r, 48);
        while (off < len) {
                size_t room, piece;
                void *p;

                ck_assert_int_eq(varlink_reader_space(&r, &p, &room), 0);
                ck_assert_uint_le(r.size, 48);
                seed = seed * 1103515245 + 12345;
                piece = MIN(MIN(room, len - off), (size_t) (seed >> 16) % 37 + 1);
                memcpy(p, data + off, piece);
                varlink_reader_commit(&r, piece);
                off += piece;
                for (;;) {
                        json_object *o = NULL, *v;
                        int k = varlink_reader_next(&r, &o);

                        ck_assert_int_ge(k, 0);
                        if (k == 0)
                                break;
                        ck_assert(json_object_object_get_ex(o, "n", &v));
                        ck_assert_int_eq(json_object_get_int(v), (int) n);
                        n++;
                        json_object_put(o);
                }
        }
        ck_assert_uint_eq(n, 500);
        varlink_reader_done(&r);
        free(data);
}
END_TEST

START_TEST(test_oversize) {
        VarlinkReader r;
        char msg[64];
        json_object *o = NULL;
        size_t room;
        void *p;

        /* Exactly the bound, NUL included: fine. */
        varlink_reader_init(&r, sizeof(msg));
        memset(msg, ' ', sizeof(msg));
        msg[0] = '{';
        msg[sizeof(msg) - 2] = '}';
        msg[sizeof(msg) - 1] = '\0';
        ck_assert_int_eq(varlink_reader_feed(&r, msg, sizeof(msg)), (ssize_t) sizeof(msg));
        ck_assert_int_eq(varlink_reader_next(&r, &o), 1);
        json_object_put(o);
        o = NULL;

        /* One byte more: refused as soon as the bound is reached, before
         * the rest (or its NUL) arrives. */
        memset(msg, ' ', sizeof(msg));
        msg[0] = '{';
        ck_assert_int_eq(varlink_reader_feed(&r, msg, sizeof(msg)), (ssize_t) sizeof(msg));
        ck_assert_int_eq(varlink_reader_next(&r, &o), -EMSGSIZE);
        ck_assert_ptr_null(o);
        ck_assert_int_eq(varlink_reader_space(&r, &p, &room), -EMSGSIZE);
        ck_assert_int_eq(varlink_reader_feed(&r, "}", 2), -EMSGSIZE);
        ck_assert_uint_le(r.size, sizeof(msg));
        varlink_reader_done(&r);

        /* The same with a complete message in front of the long one: the
         * long one still may not grow past the bound. */
        varlink_reader_init(&r, 32);
        ck_assert_int_eq(varlink_reader_feed(&r, "{}\0{\"x\":\"", 9), 9);
        ck_assert_int_eq(varlink_reader_next(&r, &o), 1);
        json_object_put(o);
        o = NULL;
        for (unsigned i = 0;; i++) {
                ssize_t k = varlink_reader_feed(&r, "y", 1);
                int n;

                ck_assert_int_eq(k, 1);
                n = varlink_reader_next(&r, &o);
                if (n == -EMSGSIZE) {
                        /* {"x":" is 6 bytes: 26 more make the bound. */
                        ck_assert_uint_eq(i + 1, 26);
                        break;
                }
                ck_assert_int_eq(n, 0);
                ck_assert_uint_lt(i, 26);
        }
        ck_assert_int_eq(varlink_reader_space(&r, &p, &room), -EMSGSIZE);
        varlink_reader_done(&r);
}
END_TEST

START_TEST(test_malformed) {
        static const struct {
                const char *data;
                size_t len;
        } bad[] = {
#define S(s) { s, sizeof(s) }
                S(""),                          /* an empty message */
                S("not json"),
                S("[1,2,3]"),                   /* JSON, but not an object */
                S("\"string\""),
                S("42"),
                S("{\"a\":1"),                  /* cut short */
                S("{\"a\":1}}"),                /* trailing data */
                S("{\"a\":1} {\"b\":2}"),       /* two objects in one message */
                S("{'a':1}"),                   /* not strict JSON */
                S("{\"a\":01}"),
                S("{\"a\":\"\xff\xfe\"}"),      /* not UTF-8 */
                S("{\"a\":\"\xc0\xaf\"}"),      /* overlong */
                S("{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"), /* too deep */
                S("{\"a\":1,\"a\":1}"),        /* a duplicate member */
                S("{\"method\":\"org.varlink.service.GetInfo\",\"method\":\"x.Y\"}"),
                S("{\"p\":{\"b\":1,\"b\":{}}}"),  /* ... inside */
                S("{\"p\":[{\"b\":1,\"b\":2}]}"),
                S("{\"method\":\"org.varlink.service\\u0000.GetInfo\"}"), /* NUL */
                S("{\"a\":\"x\ty\"}"),          /* a raw control character */
#undef S
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                VarlinkReader r;
                json_object *o = NULL;

                varlink_reader_init(&r, 1024);
                ck_assert_int_eq(varlink_reader_feed(&r, bad[i].data, bad[i].len), (ssize_t) bad[i].len);
                ck_assert_msg(varlink_reader_next(&r, &o) == -EBADMSG, "accepted bad message %zu", i);
                ck_assert_ptr_null(o);
                varlink_reader_done(&r);
        }
}
END_TEST

static int parse_call(const char *json, VarlinkCall *call, json_object **keep) {
        *keep = json_tokener_parse(json);
        ck_assert_ptr_nonnull(*keep);
        return varlink_call_parse(*keep, call);
}

START_TEST(test_call_parse) {
        static const char *const bad[] = {
                "{}",
                "{\"method\":42}",
                "{\"method\":\"Status\"}",
                "{\"method\":\"io.securechat.Control.status\"}",
                "{\"method\":\"io.securechat.Control.\"}",
                "{\"method\":\"Control.Status\"}",
                "{\"method\":\"io..Control.Status\"}",
                "{\"method\":\"io.-x.Status\"}",
                "{\"method\":\"io.x-.Status\"}",
                "{\"method\":\"io.x y.Status\"}",
                "{\"method\":\"io.x.Sta_tus\"}",
                "{\"method\":\"io.x.Status\",\"parameters\":[]}",
                "{\"method\":\"io.x.Status\",\"parameters\":\"user\"}",
                "{\"method\":\"io.x.Status\",\"more\":1}",
                "{\"method\":\"io.x.Status\",\"oneway\":\"yes\"}",
        };
        json_object *o;
        VarlinkCall call;

        ck_assert_int_eq(parse_call("{\"method\":\"io.securechat.Control.Kick\",\"parameters\":{\"user\":\"bob\"},"
                                    "\"more\":true,\"upgrade\":false,\"future\":{}}", &call, &o), 0);
        ck_assert_str_eq(call.method, "io.securechat.Control.Kick");
        ck_assert_ptr_nonnull(call.parameters);
        ck_assert(call.more);
        ck_assert(!call.oneway);
        json_object_put(o);

        ck_assert_int_eq(parse_call("{\"method\":\"org.varlink.service.GetInfo\",\"oneway\":true}", &call, &o), 0);
        ck_assert_ptr_null(call.parameters);
        ck_assert(!call.more);
        ck_assert(call.oneway);
        json_object_put(o);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ck_assert_msg(parse_call(bad[i], &call, &o) == -EBADMSG, "accepted %s", bad[i]);
                json_object_put(o);
        }
}
END_TEST

START_TEST(test_method_split) {
        size_t n = 0;

        ck_assert(varlink_method_split("org.varlink.service.GetInfo", &n));
        ck_assert_uint_eq(n, strlen("org.varlink.service"));
        ck_assert(varlink_method_split("io.securechat.Control.ResetKey", &n));
        ck_assert_uint_eq(n, strlen("io.securechat.Control"));
        ck_assert(varlink_method_split("a-b.c1.X", &n));
        ck_assert(!varlink_method_split("io.securechat.control", &n));
        ck_assert(!varlink_method_split("io.securechat", &n));
        ck_assert(!varlink_method_split("1o.x.Y", &n));
        ck_assert(!varlink_method_split(".x.Y", &n));
        ck_assert(!varlink_method_split("x.Y", &n));
}
END_TEST

START_TEST(test_reply_parse) {
        json_object *o;
        VarlinkReply rep;

        o = json_tokener_parse("{\"parameters\":{\"n\":1},\"continues\":true}");
        ck_assert_int_eq(varlink_reply_parse(o, &rep), 0);
        ck_assert_ptr_null(rep.error);
        ck_assert(rep.continues);
        ck_assert_ptr_nonnull(rep.parameters);
        json_object_put(o);

        o = json_tokener_parse("{\"error\":\"io.securechat.Control.NoSuchUser\",\"parameters\":{\"user\":\"x\"}}");
        ck_assert_int_eq(varlink_reply_parse(o, &rep), 0);
        ck_assert_str_eq(rep.error, "io.securechat.Control.NoSuchUser");
        ck_assert(!rep.continues);
        json_object_put(o);

        o = json_tokener_parse("{\"error\":7}");
        ck_assert_int_eq(varlink_reply_parse(o, &rep), -EBADMSG);
        json_object_put(o);
        o = json_tokener_parse("{\"continues\":\"yes\"}");
        ck_assert_int_eq(varlink_reply_parse(o, &rep), -EBADMSG);
        json_object_put(o);
}
END_TEST

/* What the builders write: one object, one NUL, and the reader gives it
 * back. A NUL inside a string is escaped, never written raw, and refused
 * by the reader. */
START_TEST(test_builders_roundtrip) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;
        json_object *p = json_object_new_object(), *o = NULL;
        VarlinkReader r;
        VarlinkReply rep;

        json_object_object_add(p, "user", json_object_new_string_len("a\0b", 3));
        /* varlink_append() does not take the reference. */
        ck_assert_int_eq(varlink_append(&b, o = varlink_new_call("io.securechat.Control.Kick", p, false)), 0);
        json_object_put(o);
        ck_assert_int_eq(varlink_append(&b, o = varlink_new_reply(NULL, true)), 0);
        json_object_put(o);
        ck_assert_int_eq(varlink_append(&b, o = varlink_new_error("org.varlink.service.ExpectedMore", NULL)), 0);
        json_object_put(o);

        ck_assert_ptr_nonnull(memchr(b.data, 0, b.len));
        ck_assert_uint_eq(b.data[b.len - 1], 0);
        {
                size_t nuls = 0;
                for (size_t i = 0; i < b.len; i++)
                        nuls += b.data[i] == 0;
                ck_assert_uint_eq(nuls, 3);
        }

        varlink_reader_init(&r, 1024);
        ck_assert_int_eq(varlink_reader_feed(&r, b.data, b.len), (ssize_t) b.len);

        /* Written escaped, but a string holding NUL is refused when read:
         * C would compare it only up to the NUL. */
        o = NULL;
        ck_assert_int_eq(varlink_reader_next(&r, &o), -EBADMSG);
        ck_assert_ptr_null(o);

        ck_assert_int_eq(varlink_reader_next(&r, &o), 1);
        ck_assert_int_eq(varlink_reply_parse(o, &rep), 0);
        ck_assert_ptr_null(rep.error);
        ck_assert(rep.continues);
        ck_assert_ptr_nonnull(rep.parameters);
        ck_assert_int_eq(json_object_object_length(rep.parameters), 0);
        json_object_put(o);

        ck_assert_int_eq(varlink_reader_next(&r, &o), 1);
        ck_assert_int_eq(varlink_reply_parse(o, &rep), 0);
        ck_assert_str_eq(rep.error, "org.varlink.service.ExpectedMore");
        json_object_put(o);

        ck_assert_int_eq(varlink_reader_next(&r, &o), 0);
        varlink_reader_done(&r);
}
END_TEST

/* The interface description names every method and error the daemon
 * answers with. */
START_TEST(test_interface_description) {
        static const char *const names[] = {
                "interface io.securechat.Control\n",
                "method Status()", "method ListSessions()", "method ListUsers()", "method Monitor()",
                "method Kick(user: string)", "method ResetKey(user: string)", "method Reload()",
                "error PermissionDenied", "error NoSuchUser", "error ReloadFailed", "error BacklogExceeded",
                "error Failed",
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                ck_assert_msg(strstr(control_interface_description, names[i]), "missing %s", names[i]);
}
END_TEST

static Suite *varlink_suite(void) {
        Suite *s = suite_create("varlink");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_reassembly_any_split);
        tcase_add_test(tc, test_reassembly_chunks);
        tcase_add_test(tc, test_reassembly_many);
        tcase_add_test(tc, test_oversize);
        tcase_add_test(tc, test_malformed);
        tcase_add_test(tc, test_call_parse);
        tcase_add_test(tc, test_method_split);
        tcase_add_test(tc, test_reply_parse);
        tcase_add_test(tc, test_builders_roundtrip);
        tcase_add_test(tc, test_interface_description);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(varlink_suite());
}
