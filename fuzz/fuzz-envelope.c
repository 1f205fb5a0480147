/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for envelope_from_json(), the parser a relay and every
 * client run on envelopes from the network. Input is JSON text, parsed the
 * way the frame codec does (json_parse_strict()). Whatever is accepted must
 * survive a round trip through envelope_to_json() unchanged.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "envelope.h"
#include "json-util.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const Envelope *e) {
        _cleanup_(envelope_freep) Envelope *e2 = NULL;
        _cleanup_(freep) uint8_t *h = NULL;
        json_object *o = NULL;
        size_t h_len;

        if (envelope_to_json(e, &o) < 0)
                abort();
        if (envelope_from_json(o, &e2, NULL) < 0)
                abort();
        json_object_put(o);

        if (e2->v != e->v || strcmp(e2->suite, e->suite) != 0 ||
            memcmp(e2->id, e->id, sizeof(e->id)) != 0 ||
            strcmp(e2->from, e->from) != 0 || strcmp(e2->to, e->to) != 0 ||
            e2->ts != e->ts ||
            e2->ek_len != e->ek_len || memcmp(e2->ek, e->ek, e->ek_len) != 0 ||
            memcmp(e2->iv, e->iv, sizeof(e->iv)) != 0 ||
            e2->ct_len != e->ct_len || memcmp(e2->ct, e->ct, e->ct_len) != 0 ||
            memcmp(e2->mac, e->mac, sizeof(e->mac)) != 0 ||
            e2->sig_len != e->sig_len || memcmp(e2->sig, e->sig, e->sig_len) != 0)
                abort();

        if (envelope_mac_input(e, &h, &h_len) < 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        EnvelopeError error = ENVELOPE_OK;
        int r;

        /* Frames are at most MAX_FRAME_LIMIT bytes; json-c takes an int. */
        if (size > MAX_FRAME_LIMIT || size > INT_MAX)
                return 0;

        if (json_parse_strict((const char *) data, size, JSON_DEPTH_DEFAULT, &o, NULL) < 0)
                return 0;

        r = envelope_from_json(o, &e, &error);
        if (r == 0) {
                if (error != ENVELOPE_OK)
                        abort();
                check_round_trip(e);
        } else if (r == -ENOMEM)
                ;       /* the fuzzer's memory limit, not a bug */
        else if (r != -EBADMSG || error == ENVELOPE_OK || !envelope_error_to_string(error))
                abort();
        return 0;
}
