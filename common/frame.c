/* SPDX-License-Identifier: MIT */
/*
 * Framing: u32be(N) || N bytes. The decoder is a small state machine over
 * (header, payload) so that it works on whatever pieces the socket hands
 * out, and so that a peer can make it allocate at most max_frame + 1 bytes,
 * and only after announcing a length that is acceptable.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "macro.h"

#define FRAME_HEADER_LEN 4

void frame_decoder_init(FrameDecoder *d, size_t max_frame) {
        *d = (FrameDecoder) {
                .max_frame = max_frame,
        };
}

void frame_decoder_done(FrameDecoder *d) {
        free(d->payload);
        d->payload = NULL;
        d->header_len = 0;
        d->payload_len = 0;
        d->payload_have = 0;
}

static int decoder_fail(FrameDecoder *d, int error) {
        /* Drop whatever was half-received: nothing more will be read into
         * it, and a failed decoder should hold no memory. */
        free(d->payload);
        d->payload = NULL;
        d->error = error;
        return error;
}

int frame_decoder_feed(FrameDecoder *d, const uint8_t *data, size_t len,
                       size_t *ret_consumed, uint8_t **ret_frame, size_t *ret_len) {
        size_t used = 0, n;

        *ret_consumed = 0;

        if (d->error < 0)
                return d->error;

        if (d->header_len < FRAME_HEADER_LEN) {
                uint32_t announced;

                n = MIN(FRAME_HEADER_LEN - d->header_len, len);
                if (n > 0)
                        memcpy(d->header + d->header_len, data, n);
                d->header_len += n;
                used += n;
                *ret_consumed = used;

                if (d->header_len < FRAME_HEADER_LEN)
                        return 0;

                announced = (uint32_t) d->header[0] << 24 | (uint32_t) d->header[1] << 16 |
                            (uint32_t) d->header[2] << 8 | (uint32_t) d->header[3];

                /* Judge the length before allocating anything. */
                if (announced == 0)
                        return decoder_fail(d, -EBADMSG);
                if (announced > d->max_frame)
                        return decoder_fail(d, -EMSGSIZE);

                /* +1 for the convenience NUL. */
                d->payload = malloc((size_t) announced + 1);
                if (!d->payload)
                        return decoder_fail(d, -ENOMEM);
                d->payload_len = announced;
                d->payload_have = 0;
        }

        n = MIN(d->payload_len - d->payload_have, len - used);
        if (n > 0)
                memcpy(d->payload + d->payload_have, data + used, n);
        d->payload_have += n;
        used += n;
        *ret_consumed = used;

        if (d->payload_have < d->payload_len)
                return 0;

        d->payload[d->payload_len] = 0;
        *ret_len = d->payload_len;
        *ret_frame = TAKE_PTR(d->payload);

        d->header_len = 0;
        d->payload_len = 0;
        d->payload_have = 0;
        return 1;
}

int frame_decoder_pending(const FrameDecoder *d) {
        return d->error == 0 && d->header_len > 0;
}

int frame_encode(const void *payload, size_t len, size_t max_frame,
                 uint8_t **ret, size_t *ret_len) {
        const struct iovec iov = { .iov_base = (void *) payload, .iov_len = len };

        return frame_encode_iov(&iov, 1, max_frame, ret, ret_len);
}

int frame_encode_iov(const struct iovec *iov, size_t n, size_t max_frame,
                     uint8_t **ret, size_t *ret_len) {
        size_t len = 0;
        uint8_t *p, *q;

        for (size_t i = 0; i < n; i++) {
                if (iov[i].iov_len > SIZE_MAX - FRAME_HEADER_LEN - len)
                        return -EMSGSIZE;
                len += iov[i].iov_len;
        }
        if (len == 0 || len > max_frame || len > UINT32_MAX)
                return -EMSGSIZE;

        p = malloc(FRAME_HEADER_LEN + len);
        if (!p)
                return -ENOMEM;

        p[0] = (uint8_t) (len >> 24);
        p[1] = (uint8_t) (len >> 16);
        p[2] = (uint8_t) (len >> 8);
        p[3] = (uint8_t) len;
        q = p + FRAME_HEADER_LEN;
        for (size_t i = 0; i < n; i++)
                if (iov[i].iov_len > 0) {
                        memcpy(q, iov[i].iov_base, iov[i].iov_len);
                        q += iov[i].iov_len;
                }

        *ret = p;
        *ret_len = FRAME_HEADER_LEN + len;
        return 0;
}
