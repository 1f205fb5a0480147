/* SPDX-License-Identifier: MIT */
/*
 * Framing (protocol.md section 2, exact): u32be(N) || N bytes, with
 * 1 <= N <= max_frame. The decoder accepts any split of the byte stream and
 * never holds more than max_frame bytes of payload; it allocates the payload
 * buffer only once the header announced a valid length.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct FrameDecoder {
        size_t max_frame;
        uint8_t header[4];
        size_t header_len;
        uint8_t *payload;      /* allocated to the announced length */
        size_t payload_len;    /* announced length */
        size_t payload_have;
        int error;             /* sticky: once failed, always failed */
} FrameDecoder;

void frame_decoder_init(FrameDecoder *d, size_t max_frame);
void frame_decoder_done(FrameDecoder *d);

/* Feed bytes. Consumes at most up to the end of one frame and reports how
 * many bytes it took in *ret_consumed (always set). Returns:
 *   1  a frame is complete: *ret_frame (caller frees, NUL-terminated for
 *      convenience, the NUL not counted) and *ret_len are set;
 *   0  everything given was consumed and more is needed;
 *   -EMSGSIZE  announced length > max_frame;
 *   -EBADMSG   announced length 0;
 *   -ENOMEM.
 * Errors are sticky. Call again with the rest of the input after a frame. */
int frame_decoder_feed(FrameDecoder *d, const uint8_t *data, size_t len,
                       size_t *ret_consumed, uint8_t **ret_frame, size_t *ret_len);

/* True when a frame has been started but not finished (for "truncated"
 * reports at EOF). */
int frame_decoder_pending(const FrameDecoder *d);

/* u32be(len) || payload, allocated. -EMSGSIZE if len is 0 or > max_frame. */
int frame_encode(const void *payload, size_t len, size_t max_frame,
                 uint8_t **ret, size_t *ret_len);
/* The same for a payload given in n pieces, copied once: a frame built
 * around bytes it takes as they are (frame_deliver_to_wire()). */
int frame_encode_iov(const struct iovec *iov, size_t n, size_t max_frame,
                     uint8_t **ret, size_t *ret_len);
