/* SPDX-License-Identifier: MIT */
/*
 * The client's session logic (cli/session.c) against a hostile relay,
 * without a network: frames are handed to chat_session_handle() directly, and
 * what the client sends goes into a socketpair nobody reads.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "codec.h"
#include "envelope.h"
#include "output.h"
#include "protocol.h"
#include "session.h"
#include "settings.h"
#include "test-main.h"

/* A client "connected" to one end of a socketpair, with the limits a
 * hostile relay may announce. */
static Client *fake_client(int *ret_peer_fd) {
        Client *c = calloc(1, sizeof(*c));
        int sv[2];

        ck_assert_ptr_nonnull(c);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(transport_new_client(sv[0], false, NULL, &c->transport), 0);
        c->address = strdup("relay.test:7000");
        ck_assert_ptr_nonnull(c->address);
        c->next_id = 1;
        c->limits = (FrameLimits) { MAX_FRAME_LIMIT, MAX_FRAME_LIMIT, DEFAULT_QUEUE_TTL };
        frame_decoder_init(&c->decoder, MAX_FRAME_LIMIT);
        *ret_peer_fd = sv[1];
        return c;
}

/* A deliver frame from alice to bob with ct_len bytes of ciphertext (it
 * need not open: it waits for alice's key before anything is checked). */
static Frame *big_deliver(uint64_t seq, size_t ct_len) {
        Frame *f = calloc(1, sizeof(*f));
        Envelope *e = calloc(1, sizeof(*e));

        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(e);
        e->v = 1;
        strcpy(e->suite, PROTOCOL_SUITE);
        memcpy(e->id, &seq, sizeof(seq));
        strcpy(e->from, "alice");
        strcpy(e->to, "bob");
        e->ts = 1;
        e->ek_len = e->sig_len = 256;
        e->ek = calloc(1, e->ek_len);
        e->sig = calloc(1, e->sig_len);
        e->ct_len = ct_len;
        e->ct = calloc(1, ct_len);
        ck_assert(e->ek && e->sig && e->ct);

        f->type = FRAME_DELIVER;
        f->deliver.seq = seq;
        f->deliver.envelope = e;
        ck_assert_int_eq(envelope_to_json(e, &f->deliver.raw), 0);
        return f;
}

/* A relay that holds back alice's key and sends 80 deliveries of 1 MiB
 * (possible with a max_frame of 16 MiB): the client holds at most 64 MiB
 * of them, and refuses (and acks) the rest. */
START_TEST(test_deliveries_bounded_by_size) {
        Settings settings = SETTINGS_INIT;
        Context ctx = { .settings = &settings };
        ChatSession *s = NULL;
        Client *c;
        int peer_fd;

        settings.user = strdup("bob");
        ck_assert_ptr_nonnull(settings.user);
        c = fake_client(&peer_fd);
        ck_assert_int_eq(chat_session_new(&ctx, true, &s), 0);
        s->client = c;

        for (uint64_t seq = 1; seq <= 80; seq++) {
                Frame *f = big_deliver(seq, 1024 * 1024);

                ck_assert_int_eq(chat_session_handle(s, f), 1);
                frame_free(f);
                ck_assert_uint_le(s->deliveries_size, 64u * 1024 * 1024);
        }
        ck_assert_uint_eq(s->n_deliveries, 64);
        ck_assert_uint_eq(s->deliveries_size, 64u * 1024 * 1024);

        s->client = NULL;
        chat_session_free(s);
        client_free(c);
        close(peer_fd);
        free(settings.user);
}
END_TEST

static Suite *clisession_suite(void) {
        Suite *s = suite_create("clisession");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_deliveries_bounded_by_size);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        output_setup(true);
        return run_suite(clisession_suite());
}
