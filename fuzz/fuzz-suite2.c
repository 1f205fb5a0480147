/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the binary parsers of suite 2 that read bytes from
 * peers: the ratchet header of every message, the prekey bundle `lookup`
 * hands out and a signed prekey as published, plus the serialized ratchet
 * state the client reads back from its store. The first input byte picks
 * the parser. Every encoding has exactly one form, so whatever is accepted
 * must encode back to the very same bytes.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "suite2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const uint8_t *a, size_t a_len, uint8_t *b, size_t b_len) {
        if (a_len != b_len || memcmp(a, b, a_len) != 0)
                abort();
        free(b);
}

static void check(int r) {
        /* A parser says yes, no, or out of memory; nothing else. */
        if (r < 0 && r != -EBADMSG && r != -ENOMEM)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t *out;
        size_t out_len;
        int r;

        if (size < 1 || size > 65536)
                return 0;

        switch (data[0] % 4) {
        case 0: {
                RatchetHeader h;

                r = ratchet_header_parse(data + 1, size - 1, &h);
                check(r);
                if (r == 0) {
                        if (ratchet_header_encode(&h, &out, &out_len) < 0)
                                abort();
                        same(data + 1, size - 1, out, out_len);
                }
                break;
        }
        case 1: {
                PrekeyBundle b;

                r = prekey_bundle_parse(data + 1, size - 1, &b);
                check(r);
                if (r == 0) {
                        if (prekey_bundle_encode(&b, &out, &out_len) < 0)
                                abort();
                        same(data + 1, size - 1, out, out_len);
                }
                break;
        }
        case 2: {
                SignedPrekey spk;

                r = signed_prekey_parse(data + 1, size - 1, &spk);
                check(r);
                if (r == 0) {
                        if (signed_prekey_encode(&spk, &out, &out_len) < 0)
                                abort();
                        same(data + 1, size - 1, out, out_len);
                }
                break;
        }
        case 3: {
                _cleanup_(ratchet_freep) Ratchet *s = NULL;

                r = ratchet_deserialize(data + 1, size - 1, &s);
                check(r);
                if (r == 0) {
                        if (ratchet_serialize(s, &out, &out_len) < 0)
                                abort();
                        same(data + 1, size - 1, out, out_len);
                }
                break;
        }
        }
        return 0;
}
