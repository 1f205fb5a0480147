/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the frame decoder. Input: byte 0 seeds how the rest
 * is cut into pieces, byte 1 picks a small max_frame (1..256) so that the
 * size checks are reached often; bytes 2.. are the stream.
 *
 * Checks, besides the sanitizers: the decoder's contract (consumption,
 * bounds, NUL termination, sticky errors), and that cutting the stream into
 * pieces changes nothing: the frames and the final state must equal those
 * of decoding the whole stream in one call sequence.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Result {
        uint8_t *frames;        /* payloads, concatenated */
        size_t frames_len;
        size_t n_frames;
        int error;
        int pending;
} Result;

/* Feed one piece, appending complete frames to res. Returns the sticky
 * error or 0. */
static int feed(FrameDecoder *d, const uint8_t *p, size_t len, Result *res) {
        while (len > 0) {
                uint8_t *frame = NULL;
                size_t consumed = SIZE_MAX, flen = 0;
                int r;

                r = frame_decoder_feed(d, p, len, &consumed, &frame, &flen);
                if (consumed > len)
                        abort();
                if (r < 0) {
                        if (r != -EMSGSIZE && r != -EBADMSG && r != -ENOMEM)
                                abort();
                        if (frame || d->payload)
                                abort();
                        return r;
                }
                if (r == 0) {
                        if (consumed != len || frame)
                                abort();
                        return 0;
                }
                if (r != 1 || !frame || consumed == 0 ||
                    flen == 0 || flen > d->max_frame || frame[flen] != 0)
                        abort();
                memcpy(res->frames + res->frames_len, frame, flen);
                res->frames_len += flen;
                res->n_frames++;
                free(frame);
                p += consumed;
                len -= consumed;
        }
        return 0;
}

static void decode(const uint8_t *s, size_t len, size_t max_frame, uint32_t seed, Result *res) {
        FrameDecoder d;
        size_t off = 0;
        int r = 0;

        frame_decoder_init(&d, max_frame);
        while (off < len) {
                size_t piece = len - off;

                if (seed != 0) {
                        /* xorshift32: piece sizes 0..16, 0 included */
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        piece = seed % 17;
                        if (piece > len - off)
                                piece = len - off;
                }
                if (piece == 0) {
                        size_t consumed = SIZE_MAX;
                        uint8_t *frame = NULL;
                        size_t flen;

                        r = frame_decoder_feed(&d, s + off, 0, &consumed, &frame, &flen);
                        if (consumed != 0 || r > 0)
                                abort();
                        if (r < 0)
                                break;
                        continue;
                }
                r = feed(&d, s + off, piece, res);
                off += piece;
                if (r < 0)
                        break;
        }

        if (r < 0) {
                /* Sticky: the same error, nothing consumed. */
                size_t consumed = SIZE_MAX;
                uint8_t *frame = NULL;
                size_t flen;

                if (frame_decoder_feed(&d, (const uint8_t *) "\0\0\0\1x", 5, &consumed,
                                       &frame, &flen) != r || consumed != 0 || frame)
                        abort();
        }
        res->error = r;
        res->pending = frame_decoder_pending(&d);
        frame_decoder_done(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Result whole = {}, pieces = {};
        size_t max_frame;
        uint32_t seed;

        if (size < 2)
                return 0;
        seed = 0x9e3779b9u ^ data[0];
        max_frame = 1 + (size_t) data[1];
        data += 2;
        size -= 2;

        whole.frames = malloc(size + 1);
        pieces.frames = malloc(size + 1);
        if (!whole.frames || !pieces.frames)
                abort();

        decode(data, size, max_frame, 0, &whole);
        decode(data, size, max_frame, seed, &pieces);

        if (whole.error != pieces.error || whole.pending != pieces.pending ||
            whole.n_frames != pieces.n_frames || whole.frames_len != pieces.frames_len ||
            memcmp(whole.frames, pieces.frames, whole.frames_len) != 0)
                abort();

        free(whole.frames);
        free(pieces.frames);
        return 0;
}
