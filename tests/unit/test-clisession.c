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

/* The next frame the client sent to peer_fd (read a byte at a time, so
 * that nothing of the next one is taken). */
static Frame *next_sent(int peer_fd, FrameDecoder *d) {
        for (;;) {
                uint8_t b, *payload = NULL;
                size_t consumed = 0, len = 0;
                Frame *f = NULL;
                int r;

                ck_assert_int_eq(read(peer_fd, &b, 1), 1);
                r = frame_decoder_feed(d, &b, 1, &consumed, &payload, &len);
                ck_assert_int_ge(r, 0);
                if (r == 0)
                        continue;
                ck_assert_int_eq(frame_parse(payload, len, &f, NULL), 0);
                free(payload);
                return f;
        }
}

static Frame *online_frame(uint64_t id, const char *user, uint64_t next) {
        Frame *f = calloc(1, sizeof(*f));

        ck_assert_ptr_nonnull(f);
        f->type = FRAME_ONLINE;
        f->online.id = id;
        f->online.next = next;
        f->online.users = calloc(1, sizeof(OnlineUser));
        ck_assert_ptr_nonnull(f->online.users);
        f->online.n_users = 1;
        strcpy(f->online.users[0].user, user);
        strcpy(f->online.users[0].fingerprint, "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        return f;
}

/* Protocol version 2: watches go out in frames of WATCH_USERS_MAX names,
 * their answers and refusals are taken, and users pages through who. */
/* A receiving session of bob's on a fake client (protocol proto), whose
 * frames the test reads from peer_fd with d. */
static void bob_session(Settings *settings, Context *ctx, unsigned proto, ChatSession **ret_s, Client **ret_c,
                        int *ret_peer_fd, FrameDecoder *d) {
        settings->user = strdup("bob");
        ck_assert_ptr_nonnull(settings->user);
        *ret_c = fake_client(ret_peer_fd);
        (*ret_c)->proto = proto;
        frame_decoder_init(d, MAX_FRAME_LIMIT);
        ck_assert_int_eq(chat_session_new(ctx, true, ret_s), 0);
        (*ret_s)->client = *ret_c;
}

static void bob_session_done(Settings *settings, ChatSession *s, Client *c, int peer_fd, FrameDecoder *d) {
        frame_decoder_done(d);
        s->client = NULL;
        chat_session_free(s);
        client_free(c);
        close(peer_fd);
        free(settings->user);
}

START_TEST(test_watch_and_who) {
        Settings settings = SETTINGS_INIT;
        Context ctx = { .settings = &settings };
        ChatSession *s = NULL;
        const char *names[40];
        char buf[40][8];
        uint64_t first, second;
        FrameDecoder d;
        Frame *f;
        Client *c;
        int peer_fd;

        bob_session(&settings, &ctx, 2, &s, &c, &peer_fd, &d);

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(buf[i], sizeof(buf[i]), "u%zu", i);
                names[i] = buf[i];
        }
        names[3] = "bob";       /* ourselves: not watched */
        ck_assert_int_eq(chat_session_watch(s, names, ELEMENTSOF(names), false), 0);
        ck_assert_uint_eq(s->n_watch_pending, 2);
        f = next_sent(peer_fd, &d);
        ck_assert_int_eq(f->type, FRAME_WATCH);
        ck_assert_uint_eq(f->watch.n_users, WATCH_USERS_MAX);
        first = f->watch.id;
        frame_free(f);
        f = next_sent(peer_fd, &d);
        ck_assert_uint_eq(f->watch.n_users, ELEMENTSOF(names) - 1 - WATCH_USERS_MAX);
        second = f->watch.id;
        frame_free(f);
        /* Watched already: nothing more goes out. */
        ck_assert_int_eq(chat_session_watch(s, names, 1, false), 0);
        ck_assert_uint_eq(s->n_watch_pending, 2);

        f = online_frame(first, "u1", 0);
        ck_assert_int_eq(chat_session_handle(s, f), 1);
        frame_free(f);
        ck_assert(chat_session_peer(s, "u1")->online);
        f = calloc(1, sizeof(*f));
        ck_assert_ptr_nonnull(f);
        f->type = FRAME_ERROR;
        f->error.has_id = true;
        f->error.id = second;
        strcpy(f->error.code, "too_large");
        ck_assert_int_eq(chat_session_handle(s, f), 1);
        frame_free(f);
        ck_assert_uint_eq(s->n_watch_pending, 0);

        /* An answer nobody asked for is not ours. */
        f = online_frame(second + 100, "u9", 0);
        ck_assert_int_eq(chat_session_handle(s, f), 0);
        frame_free(f);

        ck_assert_int_eq(chat_session_list_online(s, false), 0);
        f = next_sent(peer_fd, &d);
        ck_assert_int_eq(f->type, FRAME_WHO);
        ck_assert_uint_eq(f->who.after, 0);
        first = f->who.id;
        frame_free(f);
        f = online_frame(first, "zed", 42);
        ck_assert_int_eq(chat_session_handle(s, f), 1);
        frame_free(f);
        ck_assert(!s->presence_listed);
        f = next_sent(peer_fd, &d);
        ck_assert_int_eq(f->type, FRAME_WHO);
        ck_assert_uint_eq(f->who.after, 42);
        second = f->who.id;
        frame_free(f);
        f = online_frame(second, "amy", 0);
        ck_assert_int_eq(chat_session_handle(s, f), 1);
        frame_free(f);
        ck_assert(s->presence_listed);
        ck_assert(chat_session_peer(s, "zed")->online);
        ck_assert(chat_session_peer(s, "amy")->online);
        /* u1 is watched: the list asked for does not put it offline. */
        ck_assert(chat_session_peer(s, "u1")->online);

        bob_session_done(&settings, s, c, peer_fd, &d);
}
END_TEST

/* A delivery whose envelope fails the shape checks (here a version from
 * the future) is refused and acknowledged at once, like any envelope that
 * does not open: left unacknowledged, it would stay queued for good. */
START_TEST(test_deliver_refused_acked) {
        static const char deliver[] =
                "{\"type\":\"deliver\",\"seq\":7,\"envelope\":{\"v\":2,\"suite\":\"x\","
                "\"from\":\"alice\",\"to\":\"bob\",\"id\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}}";
        Settings settings = SETTINGS_INIT;
        Context ctx = { .settings = &settings };
        ChatSession *s = NULL;
        FrameDecoder d;
        Frame *f = NULL;
        Client *c;
        int peer_fd;

        bob_session(&settings, &ctx, 0, &s, &c, &peer_fd, &d);

        ck_assert_int_eq(frame_parse(deliver, strlen(deliver), &f, NULL), 0);
        ck_assert_int_eq(chat_session_handle(s, f), 1);
        frame_free(f);
        ck_assert_uint_eq(s->n_deliveries, 0);
        f = next_sent(peer_fd, &d);
        ck_assert_int_eq(f->type, FRAME_ACK);
        ck_assert_uint_eq(f->ack.seq, 7);
        frame_free(f);

        bob_session_done(&settings, s, c, peer_fd, &d);
}
END_TEST

static Suite *clisession_suite(void) {
        Suite *s = suite_create("clisession");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_deliveries_bounded_by_size);
        tcase_add_test(tc, test_watch_and_who);
        tcase_add_test(tc, test_deliver_refused_acked);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        output_setup(true);
        return run_suite(clisession_suite());
}
