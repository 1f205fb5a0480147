/* SPDX-License-Identifier: MIT */
/* Unit tests for util.c, buf.c and b64.c. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "b64.h"
#include "buf.h"
#include "macro.h"
#include "protocol.h"
#include "test-main.h"
#include "util.h"

/* ---- util ---- */

START_TEST(test_random_bytes) {
        uint8_t a[32] = {}, b[32] = {}, zero[32] = {};
        _cleanup_(freep) uint8_t *big = NULL;

        ck_assert_int_eq(random_bytes(a, sizeof(a)), 0);
        ck_assert_int_eq(random_bytes(b, sizeof(b)), 0);
        /* 2^-256 chance of a false failure. */
        ck_assert_mem_ne(a, b, sizeof(a));
        ck_assert_mem_ne(a, zero, sizeof(a));
        ck_assert_int_eq(random_bytes(NULL, 0), 0);

        /* More than one getrandom() call may be needed for large requests. */
        big = calloc(1, 1 << 20);
        ck_assert_ptr_nonnull(big);
        ck_assert_int_eq(random_bytes(big, 1 << 20), 0);
        ck_assert_mem_ne(big + (1 << 20) - 32, zero, 32);
}
END_TEST

/* Ids in time order (the relay's index of queued ids grows at one end),
 * yet never the same: 6 bytes of milliseconds, big-endian, then random. */
START_TEST(test_message_id) {
        uint8_t ids[64][MSG_ID_LEN];
        struct timespec ts;
        uint64_t before, after, prev = 0;

        ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &ts), 0);
        before = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
        for (size_t i = 0; i < ELEMENTSOF(ids); i++)
                ck_assert_int_eq(message_id_new(ids[i]), 0);
        ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &ts), 0);
        after = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;

        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                uint64_t ms = 0;

                for (size_t k = 0; k < 6; k++)
                        ms = ms << 8 | ids[i][k];
                ck_assert_uint_ge(ms, before);
                ck_assert_uint_le(ms, after);
                ck_assert_uint_ge(ms, prev);
                prev = ms;
                /* 2^-80 chance of a false failure for each pair. */
                for (size_t j = 0; j < i; j++)
                        ck_assert_mem_ne(ids[i] + 6, ids[j] + 6, MSG_ID_LEN - 6);
        }
}
END_TEST

START_TEST(test_wipe) {
        uint8_t s[16], zero[16] = {};
        uint8_t *p;

        memset(s, 0xaa, sizeof(s));
        secure_wipe(s, sizeof(s));
        ck_assert_mem_eq(s, zero, sizeof(s));
        secure_wipe(NULL, 0);

        p = malloc(16);
        ck_assert_ptr_nonnull(p);
        memset(p, 0x55, 16);
        ck_assert_ptr_null(secure_free(p, 16));
        ck_assert_ptr_null(secure_free(NULL, 0));
}
END_TEST

START_TEST(test_memeq_ct) {
        uint8_t a[40], b[40];

        for (size_t i = 0; i < sizeof(a); i++)
                a[i] = b[i] = (uint8_t) i;
        ck_assert(memeq_ct(a, b, sizeof(a)));
        ck_assert(memeq_ct(a, b, 0));
        for (size_t i = 0; i < sizeof(a); i++) {
                b[i] ^= 0x01;
                ck_assert_msg(!memeq_ct(a, b, sizeof(a)), "difference at %zu missed", i);
                b[i] ^= 0x81;
                ck_assert_msg(!memeq_ct(a, b, sizeof(a)), "difference at %zu missed", i);
                b[i] ^= 0x80;
        }
        ck_assert(memeq_ct(a, b, sizeof(a)));
}
END_TEST

static const struct {
        const char *s;
        size_t len;
        const char *what;
} utf8_good[] = {
        { "", 0, "empty" },
        { "hello, world", 12, "ASCII" },
        { "\x01\x7f", 2, "ASCII controls other than NUL" },
        { "\xc2\x80", 2, "U+0080, smallest 2-byte" },
        { "caf\xc3\xa9", 5, "U+00E9" },
        { "\xdf\xbf", 2, "U+07FF, largest 2-byte" },
        { "\xe0\xa0\x80", 3, "U+0800, smallest 3-byte" },
        { "\xe2\x82\xac", 3, "U+20AC" },
        { "\xed\x9f\xbf", 3, "U+D7FF, below the surrogates" },
        { "\xee\x80\x80", 3, "U+E000, above the surrogates" },
        { "\xef\xbf\xbf", 3, "U+FFFF" },
        { "\xf0\x90\x80\x80", 4, "U+10000, smallest 4-byte" },
        { "\xf0\x9f\x98\x80", 4, "U+1F600" },
        { "\xf4\x8f\xbf\xbf", 4, "U+10FFFF, largest scalar" },
        { "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", 11, "mixed" },
};

static const struct {
        const char *s;
        size_t len;
        const char *what;
} utf8_bad[] = {
        { "\0", 1, "NUL alone" },
        { "ab\0cd", 5, "embedded NUL" },
        { "\xc0\x80", 2, "overlong NUL" },
        { "\xc0\xaf", 2, "overlong '/' (C0)" },
        { "\xc1\xbf", 2, "overlong U+007F (C1)" },
        { "\xe0\x80\x80", 3, "overlong 3-byte NUL" },
        { "\xe0\x9f\xbf", 3, "overlong U+07FF in 3 bytes" },
        { "\xf0\x80\x80\x80", 4, "overlong 4-byte NUL" },
        { "\xf0\x8f\xbf\xbf", 4, "overlong U+FFFF in 4 bytes" },
        { "\xed\xa0\x80", 3, "U+D800, first high surrogate" },
        { "\xed\xaf\xbf", 3, "U+DBFF" },
        { "\xed\xb0\x80", 3, "U+DC00, first low surrogate" },
        { "\xed\xbf\xbf", 3, "U+DFFF, last surrogate" },
        { "\xed\xa0\xbd\xed\xb8\x80", 6, "CESU-8 surrogate pair" },
        { "\xf4\x90\x80\x80", 4, "U+110000" },
        { "\xf5\x80\x80\x80", 4, "F5 lead byte" },
        { "\xf7\xbf\xbf\xbf", 4, "U+1FFFFF" },
        { "\xf8\x88\x80\x80\x80", 5, "5-byte form" },
        { "\xfc\x84\x80\x80\x80\x80", 6, "6-byte form" },
        { "\xfe", 1, "FE" },
        { "\xff", 1, "FF" },
        { "\x80", 1, "lone continuation 80" },
        { "\xbf", 1, "lone continuation BF" },
        { "a\x80" "b", 3, "continuation after ASCII" },
        { "\xc3", 1, "truncated 2-byte" },
        { "\xe2\x82", 2, "truncated 3-byte" },
        { "\xe2", 1, "truncated 3-byte after lead" },
        { "\xf0\x9f\x98", 3, "truncated 4-byte" },
        { "abc\xf0\x9f", 5, "truncated 4-byte at end" },
        /* The length ends the input, not the NUL: what follows must not be
         * read even when it would complete the sequence. */
        { "\xc3\xa9", 1, "2-byte cut by len" },
        { "\xe2\x82\xac", 2, "3-byte cut by len" },
        { "\xf0\x9f\x98\x80", 3, "4-byte cut by len" },
        { "\xc3\x28", 2, "bad continuation in 2-byte" },
        { "\xe2\x28\xa1", 3, "bad second byte in 3-byte" },
        { "\xe2\x82\x28", 3, "bad third byte in 3-byte" },
        { "\xf0\x9f\x98\x28", 4, "bad fourth byte in 4-byte" },
        { "\xc3\xc3\xa9", 3, "lead byte where continuation expected" },
};

/* The bytes are copied to a heap buffer that ends where they end (no NUL
 * after them), so that ASan catches any read beyond what utf8_valid may
 * look at. */
static bool utf8_valid_heap(const char *s, size_t len) {
        size_t size = MAX(len, strlen(s));
        _cleanup_(freep) char *p = malloc(MAX(size, 1u));

        ck_assert_ptr_nonnull(p);
        memcpy(p, s, size);
        return utf8_valid(p, len);
}

START_TEST(test_string_copy) {
        char buf[6];

        ck_assert(string_copy(buf, sizeof(buf), "alice"));
        ck_assert_str_eq(buf, "alice");
        ck_assert(!string_copy(buf, sizeof(buf), "mallory"));
        ck_assert_str_eq(buf, "mallo");
        ck_assert(string_copy(buf, sizeof(buf), NULL));
        ck_assert_str_eq(buf, "");
        ck_assert(!string_copy(buf, 1, "x"));
        ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_utf8_good) {
        ck_assert_msg(utf8_valid_heap(utf8_good[_i].s, utf8_good[_i].len),
                      "valid UTF-8 refused: %s", utf8_good[_i].what);
}
END_TEST

START_TEST(test_utf8_bad) {
        ck_assert_msg(!utf8_valid_heap(utf8_bad[_i].s, utf8_bad[_i].len),
                      "invalid UTF-8 accepted: %s", utf8_bad[_i].what);
}
END_TEST

/* Length is what is validated, not the C string: a valid prefix is fine. */
START_TEST(test_utf8_len) {
        ck_assert(utf8_valid("\xc3\xa9\xc3", 2));
        ck_assert(!utf8_valid("\xc3\xa9\xc3", 3));
        ck_assert(utf8_valid(NULL, 0));
}
END_TEST

START_TEST(test_parse_boolean) {
        static const char *const yes[] = { "yes", "y", "true", "on", "1", "YES", "True", "ON", "Y" };
        static const char *const no[] = { "no", "n", "false", "off", "0", "NO", "False", "Off", "N" };
        static const char *const bad[] = { "", "maybe", "2", "yes ", " no", "tru", "yess", "-1", "enable" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                ck_assert_msg(parse_boolean(yes[i]) == 1, "%s", yes[i]);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                ck_assert_msg(parse_boolean(no[i]) == 0, "%s", no[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(parse_boolean(bad[i]) == -EINVAL, "%s", bad[i]);
        ck_assert_int_eq(parse_boolean(NULL), -EINVAL);
}
END_TEST

START_TEST(test_utf8_char) {
        uint32_t c = 0;

        ck_assert_uint_eq(utf8_char("a", 1, &c), 1);
        ck_assert_uint_eq(c, 'a');
        ck_assert_uint_eq(utf8_char("\xc3\xa9", 2, &c), 2);
        ck_assert_uint_eq(c, 0xE9);
        ck_assert_uint_eq(utf8_char("\xe2\x80\xae", 3, &c), 3);
        ck_assert_uint_eq(c, 0x202E);
        ck_assert_uint_eq(utf8_char("\xf0\x9f\x98\x80", 4, &c), 4);
        ck_assert_uint_eq(c, 0x1F600);
        /* Malformed, truncated, overlong, NUL, nothing. */
        ck_assert_uint_eq(utf8_char("\xff", 1, &c), 0);
        ck_assert_uint_eq(utf8_char("\xe2\x80", 2, &c), 0);
        ck_assert_uint_eq(utf8_char("\xc0\xaf", 2, &c), 0);
        ck_assert_uint_eq(utf8_char("", 1, &c), 0);
        ck_assert_uint_eq(utf8_char("a", 0, &c), 0);
}
END_TEST

static const struct {
        const char *in, *out;
} sanitize_cases[] = {
        { "plain text", "plain text" },
        { "", "" },
        { "tab\tnl\ncr\resc\033[2J", "tab?nl?cr?esc?[2J" },
        { "del\x7f", "del?" },
        { "caf\xc3\xa9", "caf\xc3\xa9" },                         /* UTF-8 stays */
        { "c1\xc2\x9b" "31m", "c1?31m" },                           /* CSI as C1 */
        { "bidi\xe2\x80\xae" "cba", "bidi?cba" },                 /* one '?' per character */
        { "isolate\xe2\x81\xa6x", "isolate?x" },
        { "ls\xe2\x80\xa8x", "ls?x" },
        { "bad\xff\xfe", "bad??" },                                 /* one '?' per stray byte */
        { "cut\xe2\x80", "cut??" },
        { "overlong\xc0\xaf", "overlong??" },
};

START_TEST(test_string_sanitize) {
        char buf[64];

        ck_assert_str_eq(string_sanitize(sanitize_cases[_i].in, buf, sizeof(buf)), sanitize_cases[_i].out);
}
END_TEST

START_TEST(test_string_sanitize_bounds) {
        char buf[8], big[4096];

        memset(buf, 'X', sizeof(buf));
        ck_assert_str_eq(string_sanitize(NULL, buf, sizeof(buf)), "");
        ck_assert_str_eq(string_sanitize("0123456789", buf, sizeof(buf)), "0123456");
        /* Never half a character: "\xc3\xa9" does not fit after 6 bytes. */
        ck_assert_str_eq(string_sanitize("abcdef\xc3\xa9", buf, sizeof(buf)), "abcdef");
        ck_assert_str_eq(string_sanitize("abcde\xc3\xa9", buf, sizeof(buf)), "abcde\xc3\xa9");
        ck_assert_str_eq(string_sanitize("abc", buf, 1), "");
        buf[0] = 'Z';
        ck_assert_ptr_eq(string_sanitize("abc", buf, 0), buf);
        ck_assert_int_eq(buf[0], 'Z');        /* no room, not even for the NUL */

        /* Whatever goes in, what comes out is valid UTF-8 without an unsafe
         * character. */
        for (size_t i = 0; i < 256; i++) {
                char in[4] = { (char) i, (char) (0x80 | (i & 0x3f)), (char) (0x80 | (i >> 2)), 0 };
                const char *p;
                uint32_t c;

                if (i == 0)
                        continue;
                string_sanitize(in, big, sizeof(big));
                ck_assert(utf8_valid(big, strlen(big)));
                for (p = big; *p; p += utf8_char(p, strlen(p), &c)) {
                        ck_assert_uint_ne(utf8_char(p, strlen(p), &c), 0);
                        ck_assert(!unichar_unsafe(c));
                }
        }
}
END_TEST

START_TEST(test_username_good) {
        char name[USERNAME_MAX + 1];

        ck_assert(username_valid("a"));
        ck_assert(username_valid("0"));
        ck_assert(username_valid("alice"));
        ck_assert(username_valid("bob.smith_2-x"));
        ck_assert(username_valid("9-._"));

        memset(name, 'z', USERNAME_MAX);
        name[USERNAME_MAX] = '\0';
        ck_assert(username_valid(name));
}
END_TEST

START_TEST(test_username_bad) {
        char name[USERNAME_MAX + 2];

        ck_assert(!username_valid(NULL));
        ck_assert(!username_valid(""));
        ck_assert(!username_valid(".alice"));
        ck_assert(!username_valid("-alice"));
        ck_assert(!username_valid("_alice"));
        ck_assert(!username_valid("Alice"));
        ck_assert(!username_valid("al ice"));
        ck_assert(!username_valid("alice\n"));
        ck_assert(!username_valid("caf\xc3\xa9"));
        ck_assert(!username_valid("a/b"));
        ck_assert(!username_valid(".."));

        memset(name, 'z', USERNAME_MAX + 1);
        name[USERNAME_MAX + 1] = '\0';
        ck_assert(!username_valid(name));
}
END_TEST

/* Every byte value, first and later position: only [a-z0-9] may start a
 * name, only [a-z0-9._-] may follow. */
START_TEST(test_username_bytes) {
        char c = (char) _i;
        char first[3] = { c, 'a', '\0' }, later[3] = { 'a', c, '\0' };
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        bool punct = c == '.' || c == '_' || c == '-';

        ck_assert_msg(username_valid(first) == alnum, "byte 0x%02x first", (unsigned) _i);
        ck_assert_msg(username_valid(later) == (alnum || punct), "byte 0x%02x later", (unsigned) _i);
}
END_TEST

START_TEST(test_clocks) {
        uint64_t a, b;

        /* 2023-01-01, and some time before 2200. */
        ck_assert_uint_gt(now_unix(), 1672531200u);
        ck_assert_uint_lt(now_unix(), 7258118400u);
        a = now_monotonic_usec();
        b = now_monotonic_usec();
        ck_assert_uint_gt(a, 0);
        ck_assert_uint_ge(b, a);
}
END_TEST

START_TEST(test_hex_decode) {
        static const uint8_t want[] = { 0x00, 0xff, 0x7f, 0xa5 };
        uint8_t *p = NULL, *sentinel = (uint8_t *) "x";
        size_t n = 99;

        ck_assert_int_eq(hex_decode("00ff7FA5", &p, &n), 0);
        ck_assert_uint_eq(n, sizeof(want));
        ck_assert_mem_eq(p, want, sizeof(want));
        free(p);

        ck_assert_int_eq(hex_decode("", &p, &n), 0);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq(n, 0);
        free(p);

        p = sentinel;
        n = 99;
        ck_assert_int_eq(hex_decode("0", &p, &n), -EINVAL);
        ck_assert_int_eq(hex_decode("abc", &p, &n), -EINVAL);
        ck_assert_int_eq(hex_decode("0g", &p, &n), -EINVAL);
        ck_assert_int_eq(hex_decode("g0", &p, &n), -EINVAL);
        ck_assert_int_eq(hex_decode(" 00", &p, &n), -EINVAL);
        ck_assert_int_eq(hex_decode("0x00", &p, &n), -EINVAL);
        ck_assert_ptr_eq(p, sentinel);
        ck_assert_uint_eq(n, 99);
}
END_TEST

/* ---- buf ---- */

static void check_steal(Buf *b, const void *want, size_t want_len) {
        _cleanup_(freep) uint8_t *p = NULL;
        size_t n;

        ck_assert_int_eq(buf_steal(b, &p, &n), 0);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq(n, want_len);
        ck_assert_mem_eq(p, want, want_len);
        ck_assert_ptr_null(b->data);
        ck_assert_uint_eq(b->len, 0);
}

START_TEST(test_buf_encodings) {
        Buf b = BUF_INIT;

        buf_put_u32(&b, 0x01020304u);
        check_steal(&b, "\x01\x02\x03\x04", 4);

        buf_put_u32(&b, 0xfffffffeu);
        buf_put_u32(&b, 0);
        check_steal(&b, "\xff\xff\xff\xfe\0\0\0\0", 8);

        buf_put_u64(&b, UINT64_C(0x0102030405060708));
        check_steal(&b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);

        buf_put_u64(&b, UINT64_C(0xfedcba9876543210));
        check_steal(&b, "\xfe\xdc\xba\x98\x76\x54\x32\x10", 8);

        buf_put_lp(&b, "abc", 3);
        check_steal(&b, "\0\0\0\x03" "abc", 7);

        buf_put_lp_str(&b, "");
        buf_put_lp_str(&b, "securechat/1 envelope");
        buf_put_lp(&b, NULL, 0);
        check_steal(&b, "\0\0\0\0" "\0\0\0\x15" "securechat/1 envelope" "\0\0\0\0", 33);

        buf_put(&b, "xy", 2);
        buf_put(&b, NULL, 0);
        buf_put(&b, "z", 1);
        check_steal(&b, "xyz", 3);
}
END_TEST

START_TEST(test_buf_empty) {
        Buf b = BUF_INIT;

        check_steal(&b, "", 0);
        buf_done(&b);
        buf_done(&b);
}
END_TEST

/* Growth from empty through many reallocations keeps every byte, for plain
 * and secret buffers (which move by copy-and-wipe). */
START_TEST(test_buf_growth) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;
        _cleanup_(freep) uint8_t *p = NULL;
        size_t n;

        b.secret = _i;
        for (uint32_t i = 0; i < 5000; i++)
                buf_put_u32(&b, i);
        buf_put_lp_str(&b, "end");
        ck_assert_int_eq(b.error, 0);
        ck_assert_int_eq(buf_steal(&b, &p, &n), 0);
        ck_assert_uint_eq(n, 5000 * 4 + 7);
        for (uint32_t i = 0; i < 5000; i++) {
                uint32_t v = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 |
                             (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
                ck_assert_uint_eq(v, i);
        }
        ck_assert_mem_eq(p + 20000, "\0\0\0\x03" "end", 7);
}
END_TEST

START_TEST(test_buf_sticky_error) {
        Buf b = BUF_INIT;
        uint8_t *p = (uint8_t *) "sentinel";
        size_t n = 99;
        char c = 'x';

        buf_put(&b, "abc", 3);
        /* lp() has a 32-bit length: a larger one must poison the buffer.
         * The length is checked before any byte is read. */
        if (SIZE_MAX > UINT32_MAX) {
                buf_put_lp(&b, &c, (size_t) UINT32_MAX + 1);
                ck_assert_int_eq(b.error, -EMSGSIZE);
        } else
                b.error = -EMSGSIZE;

        buf_put(&b, "def", 3);
        buf_put_u32(&b, 1);
        ck_assert_uint_eq(b.len, 3);

        ck_assert_int_eq(buf_steal(&b, &p, &n), -EMSGSIZE);
        ck_assert_str_eq((char *) p, "sentinel");
        ck_assert_uint_eq(n, 99);
        ck_assert_ptr_null(b.data);

        /* Reset by buf_steal: usable again. */
        ck_assert_int_eq(b.error, 0);
        buf_put(&b, "ok", 2);
        check_steal(&b, "ok", 2);
}
END_TEST

START_TEST(test_buf_done_secret) {
        Buf b = BUF_INIT;

        b.secret = 1;
        buf_put(&b, "key material", 12);
        buf_done(&b);
        ck_assert_ptr_null(b.data);
        ck_assert_uint_eq(b.len, 0);
        ck_assert_uint_eq(b.cap, 0);
}
END_TEST

/* ---- b64 ---- */

static const struct {
        const char *raw, *padded, *unpadded;
} rfc4648[] = {
        { "", "", "" },
        { "f", "Zg==", "Zg" },
        { "fo", "Zm8=", "Zm8" },
        { "foo", "Zm9v", "Zm9v" },
        { "foob", "Zm9vYg==", "Zm9vYg" },
        { "fooba", "Zm9vYmE=", "Zm9vYmE" },
        { "foobar", "Zm9vYmFy", "Zm9vYmFy" },
};

START_TEST(test_b64_rfc4648) {
        _cleanup_(freep) char *enc = NULL, *unp = NULL;
        _cleanup_(freep) uint8_t *dec = NULL;
        const char *raw = rfc4648[_i].raw;
        size_t n;

        ck_assert_int_eq(b64_encode(raw, strlen(raw), &enc), 0);
        ck_assert_str_eq(enc, rfc4648[_i].padded);
        ck_assert_int_eq(b64_encode_unpadded(raw, strlen(raw), &unp), 0);
        ck_assert_str_eq(unp, rfc4648[_i].unpadded);
        ck_assert_int_eq(b64_decode(enc, strlen(enc), &dec, &n), 0);
        ck_assert_ptr_nonnull(dec);
        ck_assert_uint_eq(n, strlen(raw));
        ck_assert_mem_eq(dec, raw, n);
}
END_TEST

START_TEST(test_b64_roundtrip) {
        _cleanup_(freep) char *enc = NULL, *unp = NULL;
        _cleanup_(freep) uint8_t *dec = NULL;
        uint8_t data[64];
        size_t len = (size_t) _i, n;

        ck_assert_int_eq(random_bytes(data, sizeof(data)), 0);
        ck_assert_int_eq(b64_encode(data, len, &enc), 0);
        ck_assert_uint_eq(strlen(enc), (len + 2) / 3 * 4);
        ck_assert_int_eq(b64_decode(enc, strlen(enc), &dec, &n), 0);
        ck_assert_uint_eq(n, len);
        ck_assert_mem_eq(dec, data, len);

        ck_assert_int_eq(b64_encode_unpadded(data, len, &unp), 0);
        ck_assert_uint_eq(strlen(unp), (len * 8 + 5) / 6);
        ck_assert_ptr_null(strchr(unp, '='));
        ck_assert_int_eq(strncmp(unp, enc, strlen(unp)), 0);
}
END_TEST

static const struct {
        const char *s;
        size_t len;
        const char *what;
} b64_bad[] = {
        { "Zg", 2, "missing padding" },
        { "Zm8", 3, "missing padding" },
        { "Zm9vY", 5, "length not a multiple of 4" },
        { "Zg=", 3, "one '=' short" },
        { "Zg===", 5, "one '=' too many" },
        { "Zm9v=", 5, "padding after a full quantum" },
        { "Zm9v====", 8, "a quantum of padding" },
        { "====", 4, "only padding" },
        { "Z===", 4, "three '='" },
        { "=Zm9", 4, "leading '='" },
        { "Zm=v", 4, "'=' inside a quantum" },
        { "Zg=a", 4, "data after '='" },
        { "Zg==Zm9v", 8, "data after padding" },
        { "Zm8=Zm8=", 8, "padding twice" },
        { "Zh==", 4, "non-canonical: unused bits set (1 byte)" },
        { "Zm9=", 4, "non-canonical: unused bits set (2 bytes)" },
        { "Zm9vYh==", 8, "non-canonical after a full quantum" },
        { " Zm9v", 5, "leading space" },
        { "Zm9v ", 5, "trailing space" },
        { "Zm9v\n", 5, "trailing newline" },
        { "Zm 9v", 5, "inner space" },
        { "Zm9v\nZm9v", 9, "line break" },
        { "Zm\t9v", 5, "tab" },
        { "Zm9v\r\n", 6, "CRLF" },
        { "Zm9v    ", 8, "spaces filling a quantum" },
        { "Zm\0v", 4, "NUL inside" },
        { "Zm9v\0\0\0\0", 8, "NULs after the data" },
        { "Zg=\0", 4, "NUL as padding" },
        { "Zm-v", 4, "URL-safe '-'" },
        { "Zm_v", 4, "URL-safe '_'" },
        { "Zm9.", 4, "'.'" },
        { "Zm9*", 4, "'*'" },
        { "Zm9\xc3\xa9", 5, "non-ASCII" },
        { "Zm9\x80", 4, "high byte" },
        { "Zm9\xff", 4, "0xFF" },
};

START_TEST(test_b64_bad) {
        uint8_t *p = (uint8_t *) "sentinel";
        size_t n = 99;

        ck_assert_msg(b64_decode(b64_bad[_i].s, b64_bad[_i].len, &p, &n) == -EINVAL,
                      "accepted malformed base64: %s", b64_bad[_i].what);
        ck_assert_str_eq((char *) p, "sentinel");
        ck_assert_uint_eq(n, 99);

        /* Into a buffer, the same refusal, whatever room it has. */
        uint8_t out[8];
        ck_assert_int_eq(b64_decode_to(b64_bad[_i].s, b64_bad[_i].len, out, sizeof(out), &n), -EINVAL);
        ck_assert_uint_eq(n, 99);
}
END_TEST

/* Into a buffer: the exact number of bytes, known before decoding, must
 * fit; nothing is written past it. */
START_TEST(test_b64_decode_to) {
        uint8_t out[8];
        size_t n = 99;

        memset(out, 0xaa, sizeof(out));
        ck_assert_int_eq(b64_decode_to("Zm9vYg==", 8, out, 4, &n), 0);
        ck_assert_uint_eq(n, 4);
        ck_assert_mem_eq(out, "foob\xaa", 5);

        ck_assert_int_eq(b64_decode_to("Zm9vYmE=", 8, out, 4, &n), -EMSGSIZE);
        ck_assert_int_eq(b64_decode_to("Zm9vYmFy", 8, out, 5, &n), -EMSGSIZE);
        ck_assert_int_eq(b64_decode_to("Zm9vYmFy", 8, out, 6, &n), 0);
        ck_assert_uint_eq(n, 6);
        ck_assert_mem_eq(out, "foobar\xaa", 7);

        ck_assert_int_eq(b64_decode_to("", 0, out, 0, &n), 0);
        ck_assert_uint_eq(n, 0);
}
END_TEST

/* Exactly slen characters are decoded, whatever follows them. */
START_TEST(test_b64_slen) {
        _cleanup_(freep) uint8_t *p = NULL;
        size_t n;

        ck_assert_int_eq(b64_decode("Zm9vYmFy", 4, &p, &n), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_mem_eq(p, "foo", 3);
        free(TAKE_PTR(p));

        ck_assert_int_eq(b64_decode("Zm9vYmFy", 0, &p, &n), 0);
        ck_assert_uint_eq(n, 0);
        free(TAKE_PTR(p));

        ck_assert_int_eq(b64_decode("Zm9vYmFy", 6, &p, &n), -EINVAL);
        ck_assert_ptr_null(p);
}
END_TEST

/* Every (alphabet) character in the last position of a padded quantum:
 * only those whose unused bits are zero are canonical. */
START_TEST(test_b64_canonical) {
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char one[5] = "QA==", two[5] = "QUA=";
        int ok1 = 0, ok2 = 0;

        for (int v = 0; v < 64; v++) {
                _cleanup_(freep) uint8_t *p = NULL, *q = NULL;
                size_t n;
                int r;

                one[1] = alphabet[v];
                r = b64_decode(one, 4, &p, &n);
                ck_assert_int_eq(r, (v & 0x0f) == 0 ? 0 : -EINVAL);
                ok1 += r == 0;

                two[2] = alphabet[v];
                r = b64_decode(two, 4, &q, &n);
                ck_assert_int_eq(r, (v & 0x03) == 0 ? 0 : -EINVAL);
                ok2 += r == 0;
        }
        ck_assert_int_eq(ok1, 4);
        ck_assert_int_eq(ok2, 16);
}
END_TEST

static Suite *util_suite(void) {
        Suite *s = suite_create("util");
        TCase *tc;

        tc = tcase_create("util");
        tcase_add_test(tc, test_random_bytes);
        tcase_add_test(tc, test_message_id);
        tcase_add_test(tc, test_wipe);
        tcase_add_test(tc, test_memeq_ct);
        tcase_add_test(tc, test_string_copy);
        tcase_add_test(tc, test_clocks);
        tcase_add_test(tc, test_hex_decode);
        suite_add_tcase(s, tc);

        tc = tcase_create("utf8");
        tcase_add_loop_test(tc, test_utf8_good, 0, (int) ELEMENTSOF(utf8_good));
        tcase_add_loop_test(tc, test_utf8_bad, 0, (int) ELEMENTSOF(utf8_bad));
        tcase_add_test(tc, test_utf8_len);
        suite_add_tcase(s, tc);

        tc = tcase_create("username");
        tcase_add_test(tc, test_parse_boolean);
        tcase_add_test(tc, test_utf8_char);
        tcase_add_loop_test(tc, test_string_sanitize, 0, (int) ELEMENTSOF(sanitize_cases));
        tcase_add_test(tc, test_string_sanitize_bounds);
        tcase_add_test(tc, test_username_good);
        tcase_add_test(tc, test_username_bad);
        tcase_add_loop_test(tc, test_username_bytes, 1, 256);
        suite_add_tcase(s, tc);

        tc = tcase_create("buf");
        tcase_add_test(tc, test_buf_encodings);
        tcase_add_test(tc, test_buf_empty);
        tcase_add_loop_test(tc, test_buf_growth, 0, 2);
        tcase_add_test(tc, test_buf_sticky_error);
        tcase_add_test(tc, test_buf_done_secret);
        suite_add_tcase(s, tc);

        tc = tcase_create("b64");
        tcase_add_loop_test(tc, test_b64_rfc4648, 0, (int) ELEMENTSOF(rfc4648));
        tcase_add_loop_test(tc, test_b64_roundtrip, 0, 65);
        tcase_add_loop_test(tc, test_b64_bad, 0, (int) ELEMENTSOF(b64_bad));
        tcase_add_test(tc, test_b64_decode_to);
        tcase_add_test(tc, test_b64_slen);
        tcase_add_test(tc, test_b64_canonical);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        return run_suite(util_suite());
}
