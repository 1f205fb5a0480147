/* SPDX-License-Identifier: MIT */
/* Unit tests for frame.c: the incremental decoder and the encoder. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "macro.h"
#include "test-main.h"

#define MAXF 1024

/* Streams of frames; each case is a list of payload sizes (0-terminated). */
static const size_t stream_sizes[][8] = {
        { 1, 0 },
        { MAXF, 0 },
        { 1, 2, 17, 300, MAXF - 1, MAXF, 0 },
        { MAXF, 1, MAXF, 1, 0 },
        { 3, 3, 3, 3, 3, 3, 3, 0 },
};

typedef struct Stream {
        uint8_t *bytes;
        size_t len;
        size_t n_frames;
        const size_t *sizes;
        size_t offsets[8];      /* where each payload starts in bytes */
} Stream;

static uint8_t pattern(size_t frame, size_t i) {
        return (uint8_t) (frame * 131 + i * 7 + (i >> 8));
}

static void stream_build(Stream *s, const size_t *sizes) {
        size_t n = 0;

        *s = (Stream) { .sizes = sizes };
        for (; sizes[n] > 0; n++)
                s->len += 4 + sizes[n];
        s->n_frames = n;
        s->bytes = malloc(s->len);
        ck_assert_ptr_nonnull(s->bytes);

        for (size_t f = 0, off = 0; f < n; f++) {
                _cleanup_(freep) uint8_t *payload = malloc(sizes[f]), *enc = NULL;
                size_t enc_len;

                ck_assert_ptr_nonnull(payload);
                for (size_t i = 0; i < sizes[f]; i++)
                        payload[i] = pattern(f, i);
                ck_assert_int_eq(frame_encode(payload, sizes[f], MAXF, &enc, &enc_len), 0);
                ck_assert_uint_eq(enc_len, 4 + sizes[f]);
                memcpy(s->bytes + off, enc, enc_len);
                s->offsets[f] = off + 4;
                off += enc_len;
        }
}

static void check_frame(const Stream *s, size_t f, const uint8_t *frame, size_t len) {
        ck_assert_uint_lt(f, s->n_frames);
        ck_assert_uint_eq(len, s->sizes[f]);
        ck_assert_uint_eq(frame[len], 0);
        /* One assertion per frame: check's per-assertion cost adds up over
         * thousands of split points. */
        ck_assert(memcmp(frame, s->bytes + s->offsets[f], len) == 0);
}

/* Feed one piece, collecting every frame it completes. */
static void feed_piece(FrameDecoder *d, const Stream *s, const uint8_t *p, size_t len,
                       size_t *n_seen) {
        while (len > 0) {
                uint8_t *frame = NULL;
                size_t consumed = SIZE_MAX, flen = 0;
                int r;

                r = frame_decoder_feed(d, p, len, &consumed, &frame, &flen);
                ck_assert_int_ge(r, 0);
                ck_assert_uint_le(consumed, len);
                if (r == 0) {
                        /* "everything given was consumed" */
                        ck_assert_uint_eq(consumed, len);
                        ck_assert_ptr_null(frame);
                } else {
                        ck_assert_uint_gt(consumed, 0);
                        check_frame(s, *n_seen, frame, flen);
                        (*n_seen)++;
                        free(frame);
                }
                p += consumed;
                len -= consumed;
        }
}

static void decode_in_pieces(const Stream *s, const size_t *cuts, size_t n_cuts) {
        FrameDecoder d;
        size_t n_seen = 0, prev = 0;

        frame_decoder_init(&d, MAXF);
        for (size_t i = 0; i <= n_cuts; i++) {
                size_t end = i < n_cuts ? cuts[i] : s->len;

                feed_piece(&d, s, s->bytes + prev, end - prev, &n_seen);
                prev = end;
        }
        ck_assert_uint_eq(n_seen, s->n_frames);
        ck_assert(!frame_decoder_pending(&d));
        ck_assert_ptr_null(d.payload);
        frame_decoder_done(&d);
}

START_TEST(test_every_split) {
        Stream s;

        stream_build(&s, stream_sizes[_i]);
        for (size_t cut = 0; cut <= s.len; cut++)
                decode_in_pieces(&s, &cut, 1);
        free(s.bytes);
}
END_TEST

START_TEST(test_byte_by_byte) {
        _cleanup_(freep) size_t *cuts = NULL;
        Stream s;

        stream_build(&s, stream_sizes[_i]);
        cuts = calloc(s.len, sizeof(size_t));
        ck_assert_ptr_nonnull(cuts);
        for (size_t i = 0; i < s.len; i++)
                cuts[i] = i + 1;
        decode_in_pieces(&s, cuts, s.len - 1);
        free(s.bytes);
}
END_TEST

START_TEST(test_random_pieces) {
        size_t cuts[64];
        Stream s;

        stream_build(&s, stream_sizes[_i]);
        srand(4242 + _i);
        for (unsigned round = 0; round < 200; round++) {
                size_t n = (size_t) rand() % ELEMENTSOF(cuts), pos = 0;

                for (size_t i = 0; i < n; i++) {
                        pos += (size_t) rand() % (s.len / (n + 1) + 2);
                        cuts[i] = MIN(pos, s.len);
                }
                decode_in_pieces(&s, cuts, n);
        }
        free(s.bytes);
}
END_TEST

static const uint32_t oversize[] = { MAXF + 1, MAXF + 2, 0x10000, 0x7fffffff, 0xffffffff };

START_TEST(test_oversize) {
        uint8_t bytes[12] = {
                (uint8_t) (oversize[_i] >> 24), (uint8_t) (oversize[_i] >> 16),
                (uint8_t) (oversize[_i] >> 8), (uint8_t) oversize[_i],
                'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x',
        };
        uint8_t *frame = NULL;
        size_t consumed, len = 0;
        FrameDecoder d;

        /* All at once, with trailing bytes: reported at the header. */
        frame_decoder_init(&d, MAXF);
        ck_assert_int_eq(frame_decoder_feed(&d, bytes, sizeof(bytes), &consumed, &frame, &len),
                         -EMSGSIZE);
        ck_assert_uint_eq(consumed, 4);
        ck_assert_ptr_null(frame);
        ck_assert_ptr_null(d.payload);
        frame_decoder_done(&d);

        /* Header in two pieces: the error comes with the fourth byte. */
        frame_decoder_init(&d, MAXF);
        ck_assert_int_eq(frame_decoder_feed(&d, bytes, 3, &consumed, &frame, &len), 0);
        ck_assert_uint_eq(consumed, 3);
        ck_assert_ptr_null(d.payload);
        ck_assert_int_eq(frame_decoder_feed(&d, bytes + 3, 1, &consumed, &frame, &len), -EMSGSIZE);
        ck_assert_uint_eq(consumed, 1);
        ck_assert_ptr_null(d.payload);
        ck_assert_ptr_null(frame);
        frame_decoder_done(&d);
}
END_TEST

START_TEST(test_max_frame_boundary) {
        /* The same header is fine for a decoder whose limit allows it. */
        static const uint8_t hdr[4] = { 0, 0, MAXF >> 8, MAXF & 0xff };
        uint8_t *frame = NULL;
        size_t consumed, len;
        FrameDecoder d;

        frame_decoder_init(&d, MAXF);
        ck_assert_int_eq(frame_decoder_feed(&d, hdr, 4, &consumed, &frame, &len), 0);
        ck_assert_ptr_nonnull(d.payload);
        frame_decoder_done(&d);

        frame_decoder_init(&d, MAXF - 1);
        ck_assert_int_eq(frame_decoder_feed(&d, hdr, 4, &consumed, &frame, &len), -EMSGSIZE);
        ck_assert_ptr_null(d.payload);
        frame_decoder_done(&d);
}
END_TEST

START_TEST(test_zero_length) {
        static const uint8_t bytes[] = { 0, 0, 0, 0, 0, 0, 0, 1, 'a' };
        uint8_t *frame = NULL;
        size_t consumed, len;
        FrameDecoder d;

        frame_decoder_init(&d, MAXF);
        ck_assert_int_eq(frame_decoder_feed(&d, bytes, sizeof(bytes), &consumed, &frame, &len),
                         -EBADMSG);
        ck_assert_uint_eq(consumed, 4);
        ck_assert_ptr_null(frame);
        ck_assert_ptr_null(d.payload);
        frame_decoder_done(&d);
}
END_TEST

START_TEST(test_truncated) {
        static const uint8_t bytes[] = { 0, 0, 0, 3, 'a', 'b', 'c' };
        uint8_t *frame = NULL;
        size_t consumed, len;
        FrameDecoder d;

        frame_decoder_init(&d, MAXF);
        ck_assert(!frame_decoder_pending(&d));

        /* Nothing at all is not pending. */
        ck_assert_int_eq(frame_decoder_feed(&d, bytes, 0, &consumed, &frame, &len), 0);
        ck_assert_uint_eq(consumed, 0);
        ck_assert(!frame_decoder_pending(&d));

        /* Every strict prefix leaves the decoder pending. */
        for (size_t cut = 1; cut < sizeof(bytes); cut++) {
                frame_decoder_done(&d);
                frame_decoder_init(&d, MAXF);
                ck_assert_int_eq(frame_decoder_feed(&d, bytes, cut, &consumed, &frame, &len), 0);
                ck_assert_uint_eq(consumed, cut);
                ck_assert(frame_decoder_pending(&d));
                ck_assert_ptr_null(frame);
        }

        /* The rest completes it, and then nothing is pending. */
        ck_assert_int_eq(frame_decoder_feed(&d, bytes + 6, 1, &consumed, &frame, &len), 1);
        ck_assert_uint_eq(len, 3);
        ck_assert_str_eq((char *) frame, "abc");
        ck_assert(!frame_decoder_pending(&d));
        free(frame);
        frame_decoder_done(&d);
}
END_TEST

START_TEST(test_sticky_error) {
        static const uint8_t bad[] = { 0, 0, 0, 0 };
        static const uint8_t good[] = { 0, 0, 0, 1, 'a' };
        uint8_t *frame = NULL;
        size_t consumed, len;
        FrameDecoder d;

        frame_decoder_init(&d, MAXF);
        ck_assert_int_eq(frame_decoder_feed(&d, bad, sizeof(bad), &consumed, &frame, &len), -EBADMSG);
        for (int i = 0; i < 3; i++) {
                consumed = 99;
                ck_assert_int_eq(frame_decoder_feed(&d, good, sizeof(good), &consumed, &frame, &len),
                                 -EBADMSG);
                ck_assert_uint_eq(consumed, 0);
                ck_assert_ptr_null(frame);
        }
        frame_decoder_done(&d);

        /* Also for an error in the middle of a stream. */
        frame_decoder_init(&d, 2);
        ck_assert_int_eq(frame_decoder_feed(&d, good, sizeof(good), &consumed, &frame, &len), 1);
        free(frame);
        frame = NULL;
        ck_assert_int_eq(frame_decoder_feed(&d, (const uint8_t *) "\0\0\0\3abc", 7, &consumed,
                                            &frame, &len), -EMSGSIZE);
        ck_assert_int_eq(frame_decoder_feed(&d, good, sizeof(good), &consumed, &frame, &len),
                         -EMSGSIZE);
        ck_assert_ptr_null(frame);
        frame_decoder_done(&d);
}
END_TEST

START_TEST(test_done_frees_partial) {
        static const uint8_t bytes[] = { 0, 0, 1, 0, 'a', 'b' };
        uint8_t *frame = NULL;
        size_t consumed, len;
        FrameDecoder d;

        /* Under ASan, a leak here fails the test. */
        frame_decoder_init(&d, MAXF);
        ck_assert_int_eq(frame_decoder_feed(&d, bytes, sizeof(bytes), &consumed, &frame, &len), 0);
        ck_assert_ptr_nonnull(d.payload);
        frame_decoder_done(&d);
        ck_assert_ptr_null(d.payload);
        ck_assert(!frame_decoder_pending(&d));
}
END_TEST

START_TEST(test_encode) {
        static const uint8_t payload[MAXF + 1] = { 'h', 'i' };
        _cleanup_(freep) uint8_t *enc = NULL;
        uint8_t *p = (uint8_t *) 0x1;
        size_t len = 77;

        ck_assert_int_eq(frame_encode(payload, 2, MAXF, &enc, &len), 0);
        ck_assert_uint_eq(len, 6);
        ck_assert_mem_eq(enc, "\0\0\0\2hi", 6);
        free(TAKE_PTR(enc));

        ck_assert_int_eq(frame_encode(payload, MAXF, MAXF, &enc, &len), 0);
        ck_assert_uint_eq(len, MAXF + 4);
        ck_assert_mem_eq(enc, "\0\0\4\0hi", 6);

        /* Refusals leave the outputs alone. */
        len = 77;
        ck_assert_int_eq(frame_encode(payload, 0, MAXF, &p, &len), -EMSGSIZE);
        ck_assert_int_eq(frame_encode(payload, MAXF + 1, MAXF, &p, &len), -EMSGSIZE);
        ck_assert_int_eq(frame_encode(payload, 3, 2, &p, &len), -EMSGSIZE);
        ck_assert_ptr_eq(p, (uint8_t *) 0x1);
        ck_assert_uint_eq(len, 77);
}
END_TEST

static Suite *frame_suite(void) {
        Suite *s = suite_create("frame");
        TCase *tc;

        tc = tcase_create("decoder");
        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, test_every_split, 0, (int) ELEMENTSOF(stream_sizes));
        tcase_add_loop_test(tc, test_byte_by_byte, 0, (int) ELEMENTSOF(stream_sizes));
        tcase_add_loop_test(tc, test_random_pieces, 0, (int) ELEMENTSOF(stream_sizes));
        tcase_add_loop_test(tc, test_oversize, 0, (int) ELEMENTSOF(oversize));
        tcase_add_test(tc, test_max_frame_boundary);
        tcase_add_test(tc, test_zero_length);
        tcase_add_test(tc, test_truncated);
        tcase_add_test(tc, test_sticky_error);
        tcase_add_test(tc, test_done_frees_partial);
        suite_add_tcase(s, tc);

        tc = tcase_create("encoder");
        tcase_add_test(tc, test_encode);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        return run_suite(frame_suite());
}
