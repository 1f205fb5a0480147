/* SPDX-License-Identifier: MIT */
/* The session index (by user, its counts, walks that close sessions on
 * the way) and the relay's paths after the handshake that need no peer:
 * receipts, the online list, ping, the queue's counts and limits, the
 * prekeys of suite 2. Sessions
 * are real ones over socketpairs; what they would send stays in their
 * output buffers, where the tests read it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "anvil.h"
#include "codec.h"
#include "conf.h"
#include "envelope.h"
#include "frame.h"
#include "handshake.h"
#include "json-util.h"
#include "macro.h"
#include "manager.h"
#include "relay.h"
#include "session-index.h"
#include "session.h"
#include "store.h"
#include "suite2.h"
#include "test-main.h"
#include "sqlite-vfs.h"

static sd_event *event;
static Anvil *anvil;
static SessionIndex sessions;
static Config *config;
static Store *store;
static Relay relay;
static char tmpdir[256];
static int peers[16];           /* the other ends of the socketpairs */
static Session *peer_sessions[16];      /* ...and whose end each is */
static size_t n_peers;
static unsigned limit_hits[_LIMIT_MAX];
static int disk_answer;         /* what the disk_check hook says */
static unsigned store_full_calls;
static bool reserve;            /* the store_full hook has a reserve to release */

static void on_ready(Session *s, void *userdata) {
        relay_session_ready(userdata, s);
}

static bool on_frame(Session *s, const uint8_t *payload, size_t len, void *userdata) {
        return relay_frame(userdata, s, payload, len);
}

static void on_pump(Session *s, void *userdata) {
        relay_pump(userdata, s);
}

static bool has_more(const Session *s, void *userdata) {
        return relay_has_more(s);
}

static void on_closing(Session *s, bool was_active, void *userdata) {
        session_index_deactivate(&sessions, s);
        relay_session_closing(userdata, s, was_active);
}

static void on_dead(Session *s, void *userdata) {
        session_index_bury(&sessions, s);
}

static bool on_memory(Session *s, size_t old, size_t new, void *userdata) {
        session_index_memory(&sessions, old, new);
        return false;
}

static void on_limit(Session *s, Limit limit, const LogFields *f, const char *message, void *userdata) {
        limit_hits[limit]++;
}

static const SessionCallbacks callbacks = {
        .on_ready = on_ready,
        .on_frame = on_frame,
        .on_pump = on_pump,
        .has_more = has_more,
        .on_closing = on_closing,
        .on_dead = on_dead,
        .on_memory = on_memory,
        .on_limit = on_limit,
};

static void hook_limit_hit(void *userdata, Limit limit, AnvilEntry *throttle, const LogFields *f,
                           const char *message) {
        limit_hits[limit]++;
}

static int hook_disk_check(void *userdata, uint64_t size) {
        return disk_answer;
}

/* The manager released its reserve, which ends the test VFS's full disk. */
static int hook_store_full(void *userdata) {
        store_full_calls++;
        if (!reserve)
                return 0;
        reserve = false;
        full_writes = 0;
        return 1;
}

static const RelayHooks hooks = {
        .limit_hit = hook_limit_hit,
        .disk_check = hook_disk_check,
        .store_full = hook_store_full,
};

static void setup(void) {
        char path[300];

        ck_assert_int_ge(sd_event_new(&event), 0);
        ck_assert_int_eq(anvil_new(&anvil), 0);
        ck_assert_int_eq(session_index_init(&sessions), 0);
        ck_assert_int_eq(config_new(&config), 0);
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-relay-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        snprintf(path, sizeof(path), "%s/securechatd.db", tmpdir);
        sync_count_register();
        ck_assert_int_eq(store_open(path, &store), 0);
        relay = (Relay) {
                .event = event,
                .config = config,
                .store = store,
                .sessions = &sessions,
                .hooks = &hooks,
        };
        relay.userdata = &relay;
        ck_assert_int_eq(relay_queue_recount(&relay), 0);
        memset(limit_hits, 0, sizeof(limit_hits));
        disk_answer = 0;
        store_full_calls = 0;
        reserve = true;
        full_writes = 0;
        n_peers = 0;
}

static void teardown(void) {
        char cmd[300];

        session_index_done(&sessions);
        for (size_t i = 0; i < n_peers; i++)
                safe_close(peers[i]);
        store_free(store);
        config_free(config);
        anvil_free(anvil);
        sd_event_unref(event);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        ck_assert_int_eq(system(cmd), 0);
}

static KeyPackage *package(const char *user) {
        KeyPackage *kp = calloc(1, sizeof(*kp));

        ck_assert_ptr_nonnull(kp);
        snprintf(kp->user, sizeof(kp->user), "%s", user);
        kp->key_len = kp->sig_len = 32;
        kp->key = calloc(1, kp->key_len);
        kp->sig = calloc(1, kp->sig_len);
        ck_assert_ptr_nonnull(kp->key);
        ck_assert_ptr_nonnull(kp->sig);
        return kp;
}

/* A connected session, in the index, not logged in. */
static Session *connect_session(void) {
        SessionSetup setup = {
                .event = event,
                .anvil = anvil,
                .limits = manager_session_limits(config),
                .callbacks = &callbacks,
                .userdata = &relay,
        };
        Session *s;
        int fds[2];

        ck_assert_uint_lt(n_peers, ELEMENTSOF(peers));
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
        peers[n_peers] = fds[1];
        ck_assert_int_eq(session_new(&setup, fds[0], NULL, &s), 0);
        peer_sessions[n_peers++] = s;
        session_index_add(&sessions, s);
        return s;
}

/* A session logged in as user with protocol version proto, as
 * handle_auth() leaves it, without the handshake's cryptography
 * (test-handshake.c covers that). */
static Session *login_proto(const char *user, bool receive, unsigned proto) {
        Session *s = connect_session();

        snprintf(s->user, sizeof(s->user), "%s", user);
        s->package = package(user);
        s->receive = receive;
        s->proto = proto;
        rsa_fingerprint_spki(s->package->key, s->package->key_len, s->fingerprint);
        ck_assert_int_eq(session_index_activate(&sessions, s), 0);
        s->state = SESSION_ACTIVE;
        s->caught_up = true;
        return s;
}

static Session *login(const char *user, bool receive) {
        return login_proto(user, receive, 1);
}

/* Append the frames in data to *all, one JSON text per line. */
static void decode_frames(FrameDecoder *d, const uint8_t *data, size_t n, char **all) {
        size_t pos = 0;

        while (pos < n) {
                uint8_t *frame = NULL;
                size_t consumed = 0, len = 0;
                char *joined;
                int r;

                r = frame_decoder_feed(d, data + pos, n - pos, &consumed, &frame, &len);
                ck_assert_int_ge(r, 0);
                pos += consumed;
                if (r == 0)
                        continue;
                ck_assert_int_ge(asprintf(&joined, "%s%.*s\n", *all, (int) len, (const char *) frame), 0);
                free(*all);
                free(frame);
                *all = joined;
        }
}

/* The frames waiting in s's output, as one JSON text per frame joined by
 * newlines (""), and the output emptied. */
static char *take_output(Session *s) {
        StreamOutput *out = stream_output(s->stream);
        FrameDecoder d;
        char *all = strdup("");

        ck_assert_ptr_nonnull(all);
        frame_decoder_init(&d, s->limits.max_frame);
        decode_frames(&d, stream_output_head(out), stream_output_pending(out), &all);
        frame_decoder_done(&d);
        stream_output_clear(out);
        return all;
}

/* A closing session says goodbye and waits for its peer's end of the
 * connection (stream.c): hang up that end and run the loop until the
 * session is dead. */
static void hang_up(Session *s) {
        for (size_t i = 0; i < n_peers; i++)
                if (peer_sessions[i] == s)
                        peers[i] = safe_close(peers[i]);
        for (unsigned i = 0; i < 100 && !session_is_dead(s); i++)
                ck_assert_int_ge(sd_event_run(event, 100 * 1000), 0);
        ck_assert(session_is_dead(s));
}

static void feed(Session *s, const char *json) {
        relay_frame(&relay, s, (const uint8_t *) json, strlen(json));
}

static uint64_t queue(const char *from, const char *to, const char *msg_id, const char *envelope) {
        StoreMessage m = { .envelope = (char *) envelope, .size = strlen(envelope), .expires = UINT64_MAX / 2 };

        snprintf(m.sender, sizeof(m.sender), "%s", from);
        snprintf(m.recipient, sizeof(m.recipient), "%s", to);
        snprintf(m.msg_id, sizeof(m.msg_id), "%s", msg_id);
        ck_assert_int_eq(store_queue_add(store, &m), 0);
        return m.seq;
}

START_TEST(test_index_by_user) {
        Session *a1 = login("alice", false), *a2 = login("alice", true), *b = login("bob", true);
        Session *pre = connect_session();

        ck_assert_uint_eq(sessions.n_sessions, 4);
        ck_assert_uint_eq(sessions.n_active, 3);
        ck_assert_uint_eq(sessions.n_receiving, 2);
        ck_assert_uint_eq(session_index_count(&sessions, "alice"), 2);
        ck_assert_uint_eq(session_index_count(&sessions, "bob"), 1);
        ck_assert_uint_eq(session_index_count(&sessions, "carol"), 0);
        ck_assert_ptr_eq(session_index_find_receiver(&sessions, "alice"), a2);
        ck_assert_ptr_eq(session_index_find_receiver(&sessions, "bob"), b);
        ck_assert_ptr_null(session_index_find_receiver(&sessions, "carol"));
        ck_assert_uint_lt(a1->activation, a2->activation);
        ck_assert_uint_lt(a2->activation, b->activation);

        /* Closing takes a session out of the index at once; it is freed
         * after the loop iteration. */
        session_close(a2, NULL, NULL, "test");
        ck_assert_uint_eq(sessions.n_active, 2);
        ck_assert_uint_eq(sessions.n_receiving, 1);
        ck_assert_uint_eq(session_index_count(&sessions, "alice"), 1);
        ck_assert_ptr_null(session_index_find_receiver(&sessions, "alice"));
        ck_assert_ptr_eq(session_index_first(&sessions, "alice"), a1);
        ck_assert_uint_eq(sessions.n_dead, 0);  /* closing, not yet dead */
        hang_up(a2);
        ck_assert_uint_eq(sessions.n_dead, 1);
        ck_assert_uint_eq(sessions.n_sessions, 3);
        session_index_free_dead(&sessions);
        ck_assert_uint_eq(sessions.n_dead, 0);
        ck_assert_ptr_eq(sessions.all, pre);

        /* The last of a user's sessions takes the user out. */
        session_close(a1, NULL, NULL, "test");
        ck_assert_ptr_null(session_index_first(&sessions, "alice"));
        session_close(pre, NULL, NULL, "test");
        ck_assert_uint_eq(sessions.n_active, 1);
        hang_up(a1);
        hang_up(pre);
        session_index_free_dead(&sessions);
        ck_assert_uint_eq(sessions.n_sessions, 1);
        ck_assert_ptr_eq(sessions.all, b);
        ck_assert_ptr_null(b->next);
}
END_TEST

START_TEST(test_index_walk_survives_closing) {
        Session *r[4];
        size_t seen = 0;

        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                r[i] = login(i % 2 ? "bob" : "alice", true);
        /* Each login of a user's second receiving session would replace the
         * first in the relay; the index itself keeps both. */
        ck_assert_uint_eq(sessions.n_receiving, 4);

        /* Close the session the walk is at, as a send over its memory
         * limit would, and the one after it: the walk still reaches the
         * rest. */
        for (Session *i = sessions.receivers; i; i = i->receiver_next) {
                if (!i->indexed)
                        continue;
                seen++;
                if (i == r[0]) {
                        session_close(r[0], NULL, NULL, "test");
                        session_close(r[1], NULL, NULL, "test");
                }
        }
        ck_assert_uint_eq(seen, 3);
        ck_assert_uint_eq(sessions.n_receiving, 2);
        ck_assert_ptr_eq(sessions.receivers, r[2]);
        ck_assert_ptr_eq(sessions.receivers->receiver_next, r[3]);
        ck_assert_ptr_eq(sessions.receivers_tail, r[3]);
}
END_TEST

START_TEST(test_index_user_churn) {
        Session *bob = login("bob", true);

        /* Many more users than the table has slots come and go: the table
         * is rebuilt on the way, and finds what it holds all along. */
        for (unsigned i = 0; i < 5000; i++) {
                Session *s = calloc(1, sizeof(*s));

                ck_assert_ptr_nonnull(s);
                snprintf(s->user, sizeof(s->user), "user%u", i);
                s->receive = i % 2;
                ck_assert_int_eq(session_index_activate(&sessions, s), 0);
                ck_assert_ptr_eq(session_index_first(&sessions, s->user), s);
                ck_assert_ptr_eq(session_index_find_receiver(&sessions, "bob"), bob);
                session_index_deactivate(&sessions, s);
                ck_assert_ptr_null(session_index_first(&sessions, s->user));
                free(s);
        }
        ck_assert_uint_lt(sessions.by_user_deleted, 5000 / 8);
        ck_assert_uint_eq(sessions.n_active, 1);
        ck_assert_uint_eq(sessions.n_receiving, 1);
        ck_assert_ptr_eq(sessions.receivers, bob);
        ck_assert_ptr_eq(sessions.receivers_tail, bob);
        ck_assert_uint_eq(session_index_count(&sessions, "bob"), 1);
}
END_TEST

START_TEST(test_receipt_to_every_session_of_the_sender) {
        Session *a1 = login("alice", false), *a2 = login("alice", true), *c = login("carol", true);
        Session *b = login("bob", true);
        char *out;
        char ack[64];
        uint64_t seq;

        seq = queue("alice", "bob", "bXNnMQ", "{\"x\":1}");
        ck_assert_int_eq(relay_queue_recount(&relay), 0);
        ck_assert_uint_eq(relay.n_queued, 1);
        ck_assert_uint_eq(relay.queue_bytes, strlen("{\"x\":1}"));

        /* Not delivered to this session yet: refused. */
        snprintf(ack, sizeof(ack), "{\"type\":\"ack\",\"seq\":%llu}", (unsigned long long) seq);
        feed(b, ack);
        out = take_output(b);
        ck_assert_ptr_nonnull(strstr(out, "\"bad_request\""));
        free(out);
        ck_assert_uint_eq(relay.n_queued, 1);

        b->cursor = seq;
        feed(b, ack);
        relay_commit(&relay);           /* the delete, answered with the turn's commit */
        ck_assert_uint_eq(relay.n_queued, 0);
        ck_assert_uint_eq(relay.queue_bytes, 0);
        for (Session *s = a1; s; s = s == a1 ? a2 : NULL) {
                out = take_output(s);
                ck_assert_ptr_nonnull(strstr(out, "\"receipt\""));
                ck_assert_ptr_nonnull(strstr(out, "bXNnMQ"));
                free(out);
        }
        out = take_output(c);
        ck_assert_str_eq(out, "");
        free(out);
}
END_TEST

START_TEST(test_presence_list_in_order_of_activation) {
        Session *s;
        char *out, *x, *y, *z;

        (void) login("zed", true);
        (void) login("amy", false);     /* sends only: not online */
        (void) login("kim", true);
        (void) login("bea", true);
        s = login("me", false);
        s->presence_pending = true;
        relay_pump(&relay, s);
        ck_assert(!s->presence_pending);
        ck_assert(!relay_has_more(s));
        out = take_output(s);
        ck_assert_ptr_nonnull(strstr(out, "\"users\""));
        ck_assert_ptr_null(strstr(out, "\"more\""));
        ck_assert_ptr_null(strstr(out, "\"amy\""));
        x = strstr(out, "\"zed\"");
        y = strstr(out, "\"kim\"");
        z = strstr(out, "\"bea\"");
        ck_assert(x && y && z && x < y && y < z);
        free(out);
}
END_TEST

START_TEST(test_ping) {
        Session *s = login("alice", false);
        char *out;

        feed(s, "{\"type\":\"ping\"}");
        out = take_output(s);
        ck_assert_str_eq(out, "{\"type\":\"pong\"}\n");
        free(out);
}
END_TEST

START_TEST(test_queue_limits) {
        Limit limit = _LIMIT_MAX;

        ck_assert_int_eq(relay_queue_check(&relay, 100, &limit), 0);
        relay.queue_bytes = config->queue_max_bytes - 10;
        ck_assert_int_eq(relay_queue_check(&relay, 10, &limit), 0);
        ck_assert_int_eq(relay_queue_check(&relay, 11, &limit), -ENOSPC);
        ck_assert_int_eq(limit, LIMIT_QUEUE_MAX_BYTES);
        relay.queue_bytes = 0;
        disk_answer = -ENOSPC;
        ck_assert_int_eq(relay_queue_check(&relay, 1, &limit), -ENOSPC);
        ck_assert_int_eq(limit, LIMIT_MIN_FREE_DISK);

        /* Expiry never takes the counts below zero. */
        relay.n_queued = 1;
        relay.queue_bytes = 5;
        relay_queue_expired(&relay, 7);
        relay_queue_expired(&relay, 7);
        ck_assert_uint_eq(relay.n_queued, 0);
        ck_assert_uint_eq(relay.queue_bytes, 0);
}
END_TEST

/* ---- prekeys ------------------------------------------------------------ */

/* Made once in main(), before check forks the test cases: RSA key
 * generation is slow. */
static RsaKey *alice_key, *mallory_key;

/* A session of a registered user with a real key, so that the relay can
 * check the signatures of its prekeys. */
static Session *login_with_key(const char *user, const RsaKey *k) {
        Session *s = login(user, false);

        key_package_free(s->package);
        ck_assert_int_eq(key_package_sign(k, user, k->spki, k->spki_len, 1, &s->package), 0);
        ck_assert_int_eq(store_user_add(store, s->package), 0);
        return s;
}

static void feed_json(Session *s, json_object *o) {
        ck_assert_ptr_nonnull(o);
        feed(s, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
}

/* s's one answer, parsed; NULL if it said nothing. */
static Frame *answer(Session *s) {
        _cleanup_(freep) char *out = take_output(s);
        Frame *f = NULL;
        size_t len = strlen(out);

        if (len == 0)
                return NULL;
        ck_assert_ptr_null(memchr(out, '\n', len - 1));
        ck_assert_int_eq(frame_parse(out, len - 1, &f, NULL), 0);
        return f;
}

static void assert_error(Session *s, uint64_t id, const char *code) {
        _cleanup_(frame_freep) Frame *f = answer(s);

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(f->type, FRAME_ERROR);
        ck_assert(f->error.has_id);
        ck_assert_uint_eq(f->error.id, id);
        ck_assert_str_eq(f->error.code, code);
}

/* Publish alice's SPK of id spk_id signed by k, and OPKs first..first+n-1. */
static void publish(Session *s, const RsaKey *k, uint32_t spk_id, uint32_t first, size_t n) {
        _cleanup_(freep) OneTimePrekey *opks = calloc(n + 1, sizeof(OneTimePrekey));
        uint8_t priv[X25519_KEY_LEN];
        SignedPrekey spk;

        ck_assert_ptr_nonnull(opks);
        ck_assert_int_eq(signed_prekey_make(s->user, k, spk_id, 1000, NULL, priv, &spk), 0);
        for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(one_time_prekey_make(first + (uint32_t) i, NULL, priv, &opks[i]), 0);
        feed_json(s, frame_new_publish(spk_id, &spk, opks, n));
}

static uint64_t published(Session *s) {
        _cleanup_(frame_freep) Frame *f = answer(s);

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(f->type, FRAME_PUBLISHED);
        return f->published.opks;
}

/* lookup of user with "prekeys": the bundle's OPK id, 0 for the SPK
 * alone, -1 for no bundle. */
static int64_t lookup_bundle(Session *s, const char *user, bool prekeys) {
        json_object *o = frame_new_lookup(42, user);
        _cleanup_(frame_freep) Frame *f = NULL;

        if (prekeys)
                ck_assert_int_eq(frame_lookup_add_prekeys(o), 0);
        feed_json(s, o);
        f = answer(s);
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(f->type, FRAME_KEY);
        ck_assert_uint_eq(f->key.id, 42);
        ck_assert_str_eq(f->key.package->user, user);
        if (!f->key.has_bundle)
                return -1;
        /* What the relay hands out, the owner signed. */
        ck_assert_int_eq(signed_prekey_verify(user, alice_key, &f->key.bundle.spk), 0);
        return f->key.bundle.has_opk ? f->key.bundle.opk.id : 0;
}

START_TEST(test_prekeys_handed_out_once) {
        Session *a = login_with_key("alice", alice_key), *b = login_with_key("bob", mallory_key);

        /* Never published: no bundle, a suite-1 peer. */
        ck_assert_int_eq(lookup_bundle(b, "alice", true), -1);

        publish(a, alice_key, 1, 10, 3);
        ck_assert_uint_eq(published(a), 3);
        /* A plain lookup, or one's own, uses up nothing. */
        ck_assert_int_eq(lookup_bundle(b, "alice", false), -1);
        ck_assert_int_eq(lookup_bundle(a, "alice", true), 0);
        for (int64_t id = 10; id < 13; id++)
                ck_assert_int_eq(lookup_bundle(b, "alice", true), id);
        ck_assert_int_eq(lookup_bundle(b, "alice", true), 0);
        ck_assert_int_eq(lookup_bundle(b, "alice", true), 0);

        /* Topped up: the count says so. */
        publish(a, alice_key, 2, 20, 2);
        ck_assert_uint_eq(published(a), 2);
        ck_assert_int_eq(lookup_bundle(b, "alice", true), 20);
        publish(a, alice_key, 2, 30, 0);
        ck_assert_uint_eq(published(a), 1);
}
END_TEST

/* A signature by another key, or over another name, is refused; so are
 * OPKs over max-prekeys and ids held already. Nothing is stored then. */
START_TEST(test_prekeys_refused) {
        Session *a, *m;
        uint64_t n = 0;

        config->max_prekeys = 4;
        a = login_with_key("alice", alice_key);
        m = login_with_key("mallory", mallory_key);

        publish(a, mallory_key, 1, 10, 1);
        assert_error(a, 1, ERR_BAD_REQUEST);
        publish(m, alice_key, 1, 10, 1);        /* alice's key, over mallory's name */
        assert_error(m, 1, ERR_BAD_REQUEST);
        ck_assert_int_eq(store_prekeys_count(store, "alice", &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(lookup_bundle(m, "alice", true), -1);

        publish(a, alice_key, 2, 10, 3);
        ck_assert_uint_eq(published(a), 3);
        publish(a, alice_key, 3, 20, 2);
        assert_error(a, 3, ERR_TOO_LARGE);
        ck_assert_uint_eq(limit_hits[LIMIT_MAX_PREKEYS], 1);
        publish(a, alice_key, 4, 12, 1);
        assert_error(a, 4, ERR_BAD_REQUEST);
        ck_assert_int_eq(store_prekeys_count(store, "alice", &n), 0);
        ck_assert_uint_eq(n, 3);
        /* The SPK of the refused publications did not replace the first. */
        ck_assert_int_eq(lookup_bundle(m, "alice", true), 10);

        /* A full disk refuses, counted under its name. */
        disk_answer = -ENOSPC;
        publish(a, alice_key, 5, 40, 1);
        assert_error(a, 5, ERR_STORAGE_FULL);
        ck_assert_uint_eq(limit_hits[LIMIT_MIN_FREE_DISK], 1);
}
END_TEST

/* ---- the group commit ---------------------------------------------------- */

/* A send frame from one user to another whose envelope id is n repeated:
 * of the right form; nothing checks its cryptography on the way. */
static char *send_text(Session *s, const char *to, uint64_t id, uint8_t n) {
        _cleanup_(json_object_unrefp) json_object *env = NULL, *frame = NULL;
        uint8_t ek[256], ct[16], sig[256];
        Envelope e = {
                .v = 1,
                .ts = 1,
                .ek = ek, .ek_len = sizeof(ek),
                .ct = ct, .ct_len = sizeof(ct),
                .sig = sig, .sig_len = sizeof(sig),
        };
        const char *text;

        memset(ek, n, sizeof(ek));
        memset(ct, n, sizeof(ct));
        memset(sig, n, sizeof(sig));
        memset(e.id, n, sizeof(e.id));
        snprintf(e.suite, sizeof(e.suite), "%s", PROTOCOL_SUITE);
        snprintf(e.from, sizeof(e.from), "%s", s->user);
        snprintf(e.to, sizeof(e.to), "%s", to);
        ck_assert_int_eq(envelope_to_json(&e, &env), 0);
        frame = frame_new_send(id, env);
        ck_assert_ptr_nonnull(frame);
        text = strdup(json_object_to_json_string_ext(frame, JSON_C_TO_STRING_PLAIN));
        ck_assert_ptr_nonnull(text);
        return (char *) text;
}

static void feed_send(Session *s, const char *to, uint64_t id, uint8_t n) {
        _cleanup_(freep) char *text = send_text(s, to, id, n);

        feed(s, text);
}

/* The other end of s's socketpair. */
static int peer_of(Session *s) {
        for (size_t i = 0; i < n_peers; i++)
                if (peer_sessions[i] == s)
                        return peers[i];
        ck_abort();
        return -1;
}

/* Nothing was written to s's peer (yet). */
static void assert_nothing_written(Session *s) {
        uint8_t byte;

        ck_assert_int_eq(read(peer_of(s), &byte, 1), -1);
        ck_assert_int_eq(errno, EAGAIN);
}

/* What s's peer received (written by the commit's flush) and what still
 * waits in s's output, one frame per line. */
static char *take_sent(Session *s) {
        _cleanup_(freep) char *waiting = take_output(s);
        FrameDecoder d;
        char *all = strdup("");
        uint8_t buf[65536];
        int fd = peer_of(s);
        ssize_t n;

        ck_assert_ptr_nonnull(all);
        frame_decoder_init(&d, s->limits.max_frame);
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                decode_frames(&d, buf, (size_t) n, &all);
        frame_decoder_done(&d);
        {
                char *joined;

                ck_assert_int_ge(asprintf(&joined, "%s%s", all, waiting), 0);
                free(all);
                all = joined;
        }
        return all;
}

static unsigned count_of(const char *haystack, const char *needle) {
        unsigned n = 0;

        for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* s was sent n frames (or members) that contain what; they are taken. */
static void assert_sent(Session *s, const char *what, unsigned n) {
        _cleanup_(freep) char *out = take_sent(s);

        ck_assert_uint_eq(count_of(out, what), n);
}

/* Rows of the queue as another process sees them: what is committed. */
static unsigned committed_rows(void) {
        char path[300];
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        unsigned n;

        snprintf(path, sizeof(path), "%s/securechatd.db", tmpdir);
        ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM queue", -1, &st, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        n = (unsigned) sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
}

static void register_users(void) {
        static const char *const users[] = { "alice", "bob", "carol" };

        for (size_t i = 0; i < ELEMENTSOF(users); i++) {
                _cleanup_(key_package_freep) KeyPackage *kp = package(users[i]);

                ck_assert_int_eq(store_user_add(store, kp), 0);
        }
}

static void feed_ack(Session *s, uint64_t seq) {
        char ack[64];

        snprintf(ack, sizeof(ack), "{\"type\":\"ack\",\"seq\":%llu}", (unsigned long long) seq);
        feed(s, ack);
}

/* Sends of one turn are stored in one transaction and answered only once
 * it is committed; the online recipient gets them from memory, in order,
 * at the commit; a retry in the same turn is the same message. */
START_TEST(test_group_commit) {
        Session *alice, *bob;
        char *out, *a, *b;

        register_users();
        alice = login("alice", false);
        bob = login("bob", true);

        for (uint8_t i = 1; i <= 5; i++)
                feed_send(alice, i % 2 ? "bob" : "carol", i, i);
        feed_send(alice, "bob", 6, 1);          /* the first again */
        ck_assert(store_in_transaction(store));
        ck_assert_uint_eq(relay.n_queued, 5);   /* counted at once, for the limits */
        ck_assert_uint_eq(committed_rows(), 0);
        session_flush(alice);
        assert_nothing_written(alice);          /* nothing accepted before the commit */
        out = take_sent(alice);
        ck_assert_ptr_null(strstr(out, "\"accepted\""));
        free(out);
        out = take_sent(bob);
        ck_assert_str_eq(out, "");
        free(out);

        relay_commit(&relay);
        ck_assert(!store_in_transaction(store));
        ck_assert_uint_eq(committed_rows(), 5);
        ck_assert_uint_eq(relay.n_queued, 5);

        out = take_sent(alice);
        ck_assert_uint_eq(count_of(out, "\"accepted\""), 6);
        /* bob is online, carol is not. */
        ck_assert_uint_eq(count_of(out, "\"queued\":false"), 4);
        ck_assert_uint_eq(count_of(out, "\"queued\":true"), 2);
        a = strstr(out, "\"id\":1,");
        b = strstr(out, "\"id\":6,");
        ck_assert(a && b && a < b);
        free(out);

        out = take_sent(bob);
        ck_assert_uint_eq(count_of(out, "\"deliver\""), 3);
        a = strstr(out, "\"seq\":1,");
        b = strstr(out, "\"seq\":5,");
        ck_assert(a && b && a < b);
        ck_assert_uint_eq(bob->cursor, 5);
        ck_assert(bob->caught_up);
        free(out);

        /* The acks of a turn: test_acks_alone_do_not_sync. */
        relay_done(&relay);
}
END_TEST

/* A login while sends wait for their commit: what the login reads from the
 * store was committed first, and nothing is delivered twice. */
START_TEST(test_group_commit_login_reads_committed) {
        Session *alice, *bob;

        register_users();
        alice = login("alice", false);
        feed_send(alice, "bob", 1, 1);
        feed_send(alice, "bob", 2, 2);
        bob = login("bob", true);
        bob->caught_up = false;                 /* as handle_auth() leaves it */
        relay_pump(&relay, bob);
        ck_assert(!store_in_transaction(store));
        ck_assert_uint_eq(committed_rows(), 2);
        relay_commit(&relay);
        assert_sent(bob, "\"deliver\"", 2);
        assert_sent(alice, "\"accepted\"", 2);
        relay_done(&relay);
}
END_TEST

/* A commit that fails answers every send of the batch with the error it
 * would have had alone, and leaves nothing of it: no accepted, no row, no
 * delivery, the counts as before. A deferred foreign key that the third
 * message breaks makes the COMMIT itself fail. */
START_TEST(test_group_commit_failure) {
        char path[300];
        sqlite3 *db = NULL;
        Session *alice, *bob;
        char *out;

        register_users();
        snprintf(path, sizeof(path), "%s/securechatd.db", tmpdir);
        ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db,
                                      "CREATE TABLE poison (name TEXT REFERENCES users (name) "
                                      "  DEFERRABLE INITIALLY DEFERRED);"
                                      "CREATE TRIGGER poison AFTER INSERT ON queue "
                                      "  WHEN new.msg_id = 'AwMDAwMDAwMDAwMDAwMDAw==' BEGIN "
                                      "  INSERT INTO poison VALUES ('nobody'); END;",
                                      NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        alice = login("alice", false);
        bob = login("bob", true);
        for (uint8_t i = 1; i <= 4; i++)
                feed_send(alice, "bob", i, i);
        ck_assert_uint_eq(relay.n_queued, 4);
        relay_commit(&relay);
        ck_assert(!store_in_transaction(store));
        ck_assert_uint_eq(committed_rows(), 0);
        ck_assert_uint_eq(relay.n_queued, 0);
        ck_assert_uint_eq(relay.queue_bytes, 0);

        out = take_sent(alice);
        ck_assert_ptr_null(strstr(out, "\"accepted\""));
        ck_assert_uint_eq(count_of(out, "\"internal\""), 4);
        free(out);
        out = take_sent(bob);
        ck_assert_str_eq(out, "");
        free(out);

        /* The next batch is on its own. */
        feed_send(alice, "bob", 5, 5);
        relay_commit(&relay);
        ck_assert_uint_eq(committed_rows(), 1);
        assert_sent(alice, "\"accepted\"", 1);
        relay_done(&relay);
}
END_TEST

/* bob receives three messages from alice, queued and sent to him. */
static Session *acks_setup(Session **alice, uint64_t seq[3]) {
        static const char *const ids[] = { "bXNnMQ", "bXNnMg", "bXNnMw" };
        Session *bob;

        register_users();
        *alice = login("alice", false);
        bob = login("bob", true);
        for (size_t i = 0; i < 3; i++)
                seq[i] = queue("alice", "bob", ids[i], "{}");
        ck_assert_int_eq(relay_queue_recount(&relay), 0);
        bob->cursor = seq[2];
        return bob;
}

/* relay_commit(), and the syncs it asked of the disk. */
static unsigned commit_syncs(void) {
        unsigned n = sync_count;

        relay_commit(&relay);
        ck_assert(!store_in_transaction(store));
        return sync_count - n;
}

/* A turn of acks alone: recorded, nothing deleted, until the commit,
 * which deletes them in a transaction that does not wait for the disk;
 * the receipts, the pong after them and the counts go with it. The next
 * send's commit waits for the disk again. */
START_TEST(test_acks_alone_do_not_sync) {
        Session *alice, *bob;
        uint64_t seq[3];

        bob = acks_setup(&alice, seq);
        for (size_t i = 0; i < 3; i++)
                feed_ack(bob, seq[i]);
        feed(bob, "{\"type\":\"ping\"}");
        ck_assert(!store_in_transaction(store));
        ck_assert_uint_eq(committed_rows(), 3);
        ck_assert_uint_eq(relay.n_queued, 3);
        session_flush(bob);
        assert_nothing_written(bob);            /* the pong waits for the acks */

        ck_assert_uint_eq(commit_syncs(), 0);
        ck_assert_uint_eq(committed_rows(), 0);
        ck_assert_uint_eq(relay.n_queued, 0);
        ck_assert_uint_eq(relay.queue_bytes, 0);
        assert_sent(bob, "\"pong\"", 1);
        assert_sent(alice, "\"receipt\"", 3);

        feed_send(alice, "bob", 1, 1);
        ck_assert_uint_gt(commit_syncs(), 0);
        assert_sent(alice, "\"accepted\"", 1);
        relay_done(&relay);
}
END_TEST

/* Acks before the turn's first send are deleted in its transaction, ahead
 * of its write, and those after it at once: one commit, which waits for
 * the disk, for all. */
START_TEST(test_acks_and_sends_one_transaction) {
        Session *alice, *bob;
        uint64_t seq[3], count = 0;
        char *out;

        bob = acks_setup(&alice, seq);
        feed_ack(bob, seq[0]);
        ck_assert(!store_in_transaction(store));
        feed_send(alice, "carol", 1, 1);
        ck_assert(store_in_transaction(store));
        ck_assert_int_eq(store_queue_totals(store, &count, NULL), 0);
        ck_assert_uint_eq(count, 3);            /* one deleted, one added */
        feed_ack(bob, seq[1]);
        ck_assert_int_eq(store_queue_totals(store, &count, NULL), 0);
        ck_assert_uint_eq(count, 2);
        ck_assert_uint_eq(committed_rows(), 3);

        ck_assert_uint_gt(commit_syncs(), 0);
        ck_assert_uint_eq(committed_rows(), 2);
        ck_assert_uint_eq(relay.n_queued, 2);
        out = take_sent(alice);
        ck_assert_uint_eq(count_of(out, "\"receipt\""), 2);
        ck_assert_uint_eq(count_of(out, "\"accepted\""), 1);
        free(out);
        relay_done(&relay);
}
END_TEST

/* An ack recorded for a message deleted before the commit (expired, or
 * acked twice) is what the client wanted: no error, no second receipt. */
START_TEST(test_ack_recorded_of_seq_gone_is_silent) {
        Session *alice, *bob;
        uint64_t seq[3];
        char *out;

        bob = acks_setup(&alice, seq);
        ck_assert_int_eq(store_queue_take(store, "bob", seq[0], NULL), 0);
        ck_assert_int_eq(relay_queue_recount(&relay), 0);
        feed_ack(bob, seq[0]);
        feed_ack(bob, seq[1]);
        feed_ack(bob, seq[1]);
        relay_commit(&relay);
        ck_assert_uint_eq(committed_rows(), 1);
        ck_assert_uint_eq(relay.n_queued, 1);
        out = take_sent(bob);
        ck_assert_str_eq(out, "");
        free(out);
        out = take_sent(alice);
        ck_assert_uint_eq(count_of(out, "\"receipt\""), 1);
        ck_assert_ptr_nonnull(strstr(out, "bXNnMg"));
        free(out);
        relay_done(&relay);
}
END_TEST

/* Another session of the same user that reads the queue from the start
 * (a login) is not handed what an ack recorded in the batch deletes. */
START_TEST(test_ack_recorded_not_read_again) {
        Session *alice, *bob, *bob2;
        uint64_t seq[3];
        char want[32], *out;

        bob = acks_setup(&alice, seq);
        feed_ack(bob, seq[0]);
        feed_ack(bob, seq[2]);
        bob2 = login("bob", true);
        bob2->caught_up = false;                /* as handle_auth() leaves it */
        relay_pump(&relay, bob2);
        snprintf(want, sizeof(want), "\"seq\":%llu,", (unsigned long long) seq[1]);
        out = take_sent(bob2);
        ck_assert_uint_eq(count_of(out, "\"deliver\""), 1);
        ck_assert_ptr_nonnull(strstr(out, want));
        free(out);
        ck_assert_uint_eq(committed_rows(), 1);
        relay_done(&relay);
}
END_TEST

/* A full disk when the acks commit. With no reserve left the acks are
 * not recorded, and not answered either (an error without an id would end
 * bob's session): the messages stay queued. With one, the manager is asked
 * to release it, and the deletes go through; the receipts with them. */
START_TEST(test_acks_disk_full) {
        Session *alice, *bob;
        uint64_t seq[3];
        char *out;

        bob = acks_setup(&alice, seq);
        for (unsigned turn = 0; turn < 2; turn++) {
                reserve = turn == 1;
                feed_ack(bob, seq[0]);
                feed_ack(bob, seq[1]);
                full_writes = 1000;             /* until the reserve is released */
                relay_commit(&relay);
                ck_assert_uint_eq(store_full_calls, turn + 1);
                ck_assert(!store_in_transaction(store));
                ck_assert_uint_eq(committed_rows(), turn == 0 ? 3 : 1);
                ck_assert_uint_eq(relay.n_queued, turn == 0 ? 3 : 1);
                out = take_sent(bob);
                ck_assert_str_eq(out, "");
                free(out);
                out = take_sent(alice);
                ck_assert_uint_eq(count_of(out, "\"receipt\""), turn == 0 ? 0 : 2);
                free(out);
        }
        relay_done(&relay);
}
END_TEST

/* ---- the group commit on SQLite's writer thread ------------------------- */

/* The store as the manager opens it: with the event loop, the batch runs
 * on the store's writer thread (store_batch_async()). */
static void use_writer(void) {
        ck_assert_int_eq(store_set_event(store, event), 0);
        ck_assert(store_batch_async(store));
}

/* Run the loop until no batch is in flight, at most 10 s. */
static void run_until_answered(void) {
        for (unsigned i = 0; i < 1000 && relay.flying; i++)
                ck_assert_int_ge(sd_event_run(event, 10 * 1000), 0);
        ck_assert(!relay.flying);
}

/* The writer commits (slowly: its sync of the WAL takes 200 ms) while the
 * loop goes on: nothing is accepted before the commit, a session not in
 * the batch is served meanwhile and fills the next one; then everything
 * is answered, in order, and delivered to the online recipient. */
START_TEST(test_writer_group_commit) {
        Session *alice, *bob, *carol;
        char *out, *a, *b;

        use_writer();
        register_users();
        alice = login("alice", false);
        bob = login("bob", true);
        carol = login("carol", false);

        for (uint8_t i = 1; i <= 5; i++)
                feed_send(alice, i % 2 ? "bob" : "carol", i, i);
        feed_send(alice, "bob", 6, 1);          /* the first again */
        /* Counted at once, the retry too: the store finds it queued, and
         * it is taken back with its answer. */
        ck_assert_uint_eq(relay.n_queued, 6);
        wal_sync_delay_usec = 200 * 1000;
        relay_commit(&relay);
        ck_assert(relay.flying);
        ck_assert(store_batch_busy(store));

        feed_send(carol, "bob", 1, 7);          /* the next batch */
        relay_commit(&relay);                   /* waits for the one in flight */
        ck_assert_uint_eq(committed_rows(), 0);
        out = take_sent(alice);
        ck_assert_ptr_null(strstr(out, "\"accepted\""));
        free(out);
        assert_sent(bob, "\"deliver\"", 0);

        run_until_answered();
        wal_sync_delay_usec = 0;
        ck_assert_uint_eq(committed_rows(), 6);
        ck_assert_uint_eq(relay.n_queued, 6);
        out = take_sent(alice);
        ck_assert_uint_eq(count_of(out, "\"accepted\""), 6);
        a = strstr(out, "\"id\":1,");
        b = strstr(out, "\"id\":6,");
        ck_assert(a && b && a < b);
        free(out);
        assert_sent(carol, "\"accepted\"", 1);
        out = take_sent(bob);
        ck_assert_uint_eq(count_of(out, "\"deliver\""), 4);
        free(out);
        relay_done(&relay);
}
END_TEST

/* What the store checks for a batch is answered as on the synchronous
 * path: no such user, the sender's share of the recipient's queue
 * (queue-limit-per-sender), then the whole queue (queue-limit), counted
 * with the batch's own sends. */
START_TEST(test_writer_refusals) {
        Session *alice, *carol, *dave;
        char *out;

        use_writer();
        register_users();
        config->queue_limit = 2;
        alice = login("alice", false);
        carol = login("carol", false);
        dave = login("dave", false);
        ck_assert_uint_eq(alice->limits.queue_limit_per_sender, 1);
        feed_send(alice, "nobody", 1, 1);
        feed_send(alice, "bob", 2, 2);
        feed_send(alice, "bob", 3, 3);          /* alice's share is full */
        feed_send(dave, "bob", 1, 4);
        feed_send(carol, "bob", 1, 5);          /* bob's queue is full */
        relay_commit(&relay);
        run_until_answered();
        out = take_sent(alice);
        ck_assert_uint_eq(count_of(out, "\"" ERR_NO_SUCH_USER "\""), 1);
        ck_assert_uint_eq(count_of(out, "\"accepted\""), 1);
        ck_assert_uint_eq(count_of(out, "\"" ERR_QUEUE_FULL "\""), 1);
        free(out);
        assert_sent(dave, "\"accepted\"", 1);
        assert_sent(carol, "\"" ERR_QUEUE_FULL "\"", 1);
        ck_assert_uint_eq(committed_rows(), 2);
        ck_assert_uint_eq(relay.n_queued, 2);
        ck_assert_uint_eq(limit_hits[LIMIT_QUEUE_LIMIT_PER_SENDER], 1);
        ck_assert_uint_eq(limit_hits[LIMIT_QUEUE_LIMIT], 1);
        relay_done(&relay);
}
END_TEST

/* A full disk at the writer's commit of acks and a send: nothing of it is
 * stored. Without a reserve it is answered so (storage_full for the send,
 * the acks not recorded); with one, the manager releases it and the same
 * batch goes again, once, before anything is answered. */
START_TEST(test_writer_disk_full) {
        Session *alice, *bob;
        uint64_t seq[3];
        char *out;

        use_writer();
        bob = acks_setup(&alice, seq);
        for (unsigned turn = 0; turn < 2; turn++) {
                reserve = turn == 1;
                feed_ack(bob, seq[0]);
                feed_ack(bob, seq[1]);
                feed_send(alice, "carol", 1, 1);
                full_writes = 1000;             /* until the reserve is released */
                relay_commit(&relay);
                run_until_answered();
                full_writes = 0;
                ck_assert_uint_eq(store_full_calls, turn + 1);
                ck_assert_uint_eq(committed_rows(), turn == 0 ? 3 : 2);
                ck_assert_uint_eq(relay.n_queued, turn == 0 ? 3 : 2);
                out = take_sent(bob);           /* no error, whose lack of an id would end it */
                ck_assert_ptr_null(strstr(out, "\"error\""));
                free(out);
                out = take_sent(alice);
                ck_assert_uint_eq(count_of(out, "\"receipt\""), turn == 0 ? 0 : 2);
                ck_assert_uint_eq(count_of(out, "\"accepted\""), turn == 0 ? 0 : 1);
                ck_assert_uint_eq(count_of(out, "\"" ERR_STORAGE_FULL "\""), turn == 0 ? 1 : 0);
                free(out);
        }
        relay_done(&relay);
}
END_TEST

/* A frame as the network brings it: written to s's peer, for the session
 * to read (session.c) when the loop runs. */
static void write_frame(Session *s, const char *json) {
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t len;

        ck_assert_int_eq(frame_encode(json, strlen(json), s->limits.max_frame, &wire, &len), 0);
        ck_assert_int_eq(write(peer_of(s), wire, len), (ssize_t) len);
}

/* The writer thread on, the users registered, and alice logged in and
 * reading her socket (login() skips the handshake, after which a session
 * reads: a wait and its end start that). */
static Session *writer_and_reading_alice(void) {
        Session *alice;

        use_writer();
        register_users();
        alice = login("alice", false);
        session_wait(alice, true);
        session_wait(alice, false);
        return alice;
}

/* writer_and_reading_alice(), whose first send commits, its sync of the
 * WAL slowed down to delay_ms. */
static Session *alice_committing(unsigned delay_ms) {
        Session *alice = writer_and_reading_alice();

        feed_send(alice, "bob", 1, 1);
        wal_sync_delay_usec = delay_ms * 1000;
        relay_commit(&relay);
        ck_assert(relay.flying);
        return alice;
}

/* A session whose batch commits goes on sending: its next send is read
 * and fills the next batch meanwhile, answered after the first; a ping
 * after it waits, set aside by the session, until both are answered, so
 * that its pong overtakes neither. */
START_TEST(test_writer_pipelined) {
        _cleanup_(freep) char *second = NULL, *out = NULL;
        const char *a1, *a2, *pong;
        Session *alice;

        alice = alice_committing(200);

        second = send_text(alice, "bob", 2, 2);
        write_frame(alice, second);
        write_frame(alice, "{\"type\":\"ping\"}");
        /* Read while the first commits: the second is in the next batch,
         * the ping set aside. */
        for (unsigned i = 0; i < 100 && relay.batch.n_pending == 0; i++)
                ck_assert_int_ge(sd_event_run(event, 1000), 0);
        ck_assert(relay.flying);
        ck_assert_uint_eq(relay.batch.n_pending, 1);
        ck_assert_ptr_nonnull(alice->aside);
        out = take_sent(alice);
        ck_assert_ptr_null(strstr(out, "\"pong\""));
        ck_assert_ptr_null(strstr(out, "\"accepted\""));
        free(out);
        out = NULL;

        for (unsigned i = 0; i < 1000 && (relay.flying || relay.batch.n_pending > 0 || alice->aside); i++)
                ck_assert_int_ge(sd_event_run(event, 10 * 1000), 0);
        wal_sync_delay_usec = 0;
        ck_assert_ptr_null(alice->aside);
        ck_assert_uint_eq(alice->n_requests, 0);
        ck_assert_uint_eq(committed_rows(), 2);
        out = take_sent(alice);
        a1 = strstr(out, "\"id\":1,");
        a2 = strstr(out, "\"id\":2,");
        pong = strstr(out, "\"pong\"");
        ck_assert(a1 && a2 && pong);
        ck_assert(a1 < a2 && a2 < pong);
        ck_assert_uint_eq(count_of(out, "\"accepted\""), 2);
        relay_done(&relay);
}
END_TEST

/* A batch with nothing to store (a retry, with the disk full, of a
 * message committed before) is answered as it takes off, which is while
 * the batch before it is answered: its answers still come after that
 * one's. */
START_TEST(test_writer_retry_answered_after) {
        _cleanup_(freep) char *again = NULL, *out = NULL;
        const char *a2, *a3;
        Session *alice;

        alice = writer_and_reading_alice();
        feed_send(alice, "bob", 1, 1);
        relay_commit(&relay);
        run_until_answered();
        free(take_sent(alice));

        feed_send(alice, "bob", 2, 2);
        wal_sync_delay_usec = 200 * 1000;
        relay_commit(&relay);
        ck_assert(relay.flying);
        /* The first message again, the disk full: found queued, a retry,
         * alone in the next batch. */
        disk_answer = -ENOSPC;
        again = send_text(alice, "bob", 3, 1);
        write_frame(alice, again);
        for (unsigned i = 0; i < 100 && relay.batch.n_pending == 0; i++)
                ck_assert_int_ge(sd_event_run(event, 1000), 0);
        ck_assert_uint_eq(relay.batch.n_pending, 1);

        for (unsigned i = 0; i < 1000 && (relay.flying || relay.batch.n_pending > 0); i++)
                ck_assert_int_ge(sd_event_run(event, 10 * 1000), 0);
        wal_sync_delay_usec = 0;
        disk_answer = 0;
        ck_assert_uint_eq(alice->n_requests, 0);
        ck_assert_uint_eq(committed_rows(), 2);
        /* The retry's batch stored nothing: not a commit in Status. */
        ck_assert_uint_eq(relay.n_commits, 2);
        ck_assert_uint_eq(relay.n_committed, 2);
        out = take_sent(alice);
        ck_assert_uint_eq(count_of(out, "\"accepted\""), 2);
        a2 = strstr(out, "\"id\":2,");
        a3 = strstr(out, "\"id\":3,");
        ck_assert(a2 && a3 && a2 < a3);
        relay_done(&relay);
}
END_TEST

/* s was sent accepted for the sends of ids 1 to n, in that order. */
static void assert_accepted_in_order(Session *s, unsigned n) {
        _cleanup_(freep) char *out = take_sent(s);
        const char *last = out;

        ck_assert_uint_eq(count_of(out, "\"accepted\""), n);
        for (unsigned id = 1; id <= n; id++) {
                char needle[32];
                const char *at;

                snprintf(needle, sizeof(needle), "\"id\":%u,", id);
                at = strstr(out, needle);
                ck_assert_ptr_nonnull(at);
                ck_assert(at >= last);
                last = at;
        }
}

/* Until the committed rows are n, without a turn of the loop, at most
 * 10 s. */
static void until_committed(unsigned n) {
        for (unsigned i = 0; i < 1000 && committed_rows() < n; i++)
                usleep(10 * 1000);
        ck_assert_uint_eq(committed_rows(), n);
}

/* The turn's end queues the batch that filled behind the one in flight,
 * a send after that takes it back to add to it, and the next turn's end
 * queues it again: the writer commits it after the first with no turn of
 * the loop in between. The answers still come in order. */
START_TEST(test_writer_queued) {
        char *out;
        Session *alice;

        alice = alice_committing(200);

        for (unsigned id = 2; id <= 3; id++) {
                _cleanup_(freep) char *text = send_text(alice, "bob", id, (uint8_t) id);

                write_frame(alice, text);
                for (unsigned i = 0; i < 100 && relay.batch.n_pending < id - 1; i++)
                        ck_assert_int_ge(sd_event_run(event, 1000), 0);
                ck_assert_uint_eq(relay.batch.n_pending, id - 1);
                /* Taken back to add the third (the first still commits). */
                ck_assert(!relay.queued);
                relay_commit(&relay);   /* the end of the turn */
                ck_assert(relay.queued);
        }
        ck_assert(relay.flying);
        until_committed(3);
        wal_sync_delay_usec = 0;
        out = take_sent(alice);
        ck_assert_ptr_null(strstr(out, "\"accepted\""));
        free(out);

        for (unsigned i = 0; i < 1000 && (relay.flying || relay.batch.n_pending > 0); i++)
                ck_assert_int_ge(sd_event_run(event, 10 * 1000), 0);
        ck_assert(!relay.queued && relay.next.number == 0);
        ck_assert_uint_eq(alice->n_requests, 0);
        /* Two commits held the three (Status' commits). */
        ck_assert_uint_eq(relay.n_commits, 2);
        ck_assert_uint_eq(relay.n_committed, 3);
        assert_accepted_in_order(alice, 3);
        relay_done(&relay);
}
END_TEST

/* A send read after the writer started the batch queued (the loop had
 * no turn meanwhile) fills a new one: the queued one flies after the
 * first, and the three are answered in order. */
START_TEST(test_writer_queued_started) {
        _cleanup_(freep) char *second = NULL, *third = NULL;
        Session *alice;

        alice = alice_committing(100);
        second = send_text(alice, "bob", 2, 2);
        write_frame(alice, second);
        for (unsigned i = 0; i < 100 && relay.batch.n_pending == 0; i++)
                ck_assert_int_ge(sd_event_run(event, 1000), 0);
        relay_commit(&relay);
        ck_assert(relay.queued);
        until_committed(2);
        wal_sync_delay_usec = 0;

        /* Whichever the loop sees first, the send or the first answer,
         * the second batch has started: it is not taken back. */
        third = send_text(alice, "bob", 3, 3);
        write_frame(alice, third);
        for (unsigned i = 0; i < 1000 && (relay.flying || relay.batch.n_pending > 0 || alice->n_requests > 0); i++) {
                ck_assert_int_ge(sd_event_run(event, 10 * 1000), 0);
                relay_commit(&relay);
        }
        ck_assert_uint_eq(committed_rows(), 3);
        assert_accepted_in_order(alice, 3);
        relay_done(&relay);
}
END_TEST

/* Acks, like sends, fill a batch to RELAY_BATCH_MAX at most while one
 * commits: past that the session reads no more until its answers are out
 * (a client repeating one ack cannot grow the relay's memory for as long
 * as a slow disk takes). Then every ack is read and answered. */
START_TEST(test_writer_acks_bounded) {
        _cleanup_(freep) uint8_t *all = NULL, *wire = NULL;
        size_t len, n = RELAY_BATCH_MAX + 100, written = 0;
        Session *alice, *bob;
        uint64_t seq[3];
        char ack[64];

        use_writer();
        bob = acks_setup(&alice, seq);
        session_wait(bob, true);
        session_wait(bob, false);
        feed_send(alice, "bob", 1, 1);
        wal_sync_delay_usec = 300 * 1000;
        relay_commit(&relay);
        ck_assert(relay.flying);

        /* The same ack n times, written as the socket takes it. */
        snprintf(ack, sizeof(ack), "{\"type\":\"ack\",\"seq\":%llu}", (unsigned long long) seq[0]);
        ck_assert_int_eq(frame_encode(ack, strlen(ack), bob->limits.max_frame, &wire, &len), 0);
        all = malloc(n * len);
        ck_assert_ptr_nonnull(all);
        for (size_t i = 0; i < n; i++)
                memcpy(all + i * len, wire, len);
        for (unsigned i = 0; i < 1000 && !bob->waiting; i++) {
                ssize_t r = send(peer_of(bob), all + written, n * len - written, MSG_DONTWAIT);

                if (r > 0)
                        written += (size_t) r;
                ck_assert_int_ge(sd_event_run(event, 1000), 0);
        }
        ck_assert(relay.flying);
        ck_assert(bob->waiting);
        ck_assert_uint_eq(relay.batch.n_pending, RELAY_BATCH_MAX);

        wal_sync_delay_usec = 0;
        for (unsigned i = 0; i < 2000 && (written < n * len || relay.flying || relay.batch.n_pending > 0 ||
                                          bob->n_requests > 0); i++) {
                ssize_t r = send(peer_of(bob), all + written, n * len - written, MSG_DONTWAIT);

                if (r > 0)
                        written += (size_t) r;
                ck_assert_int_ge(sd_event_run(event, 10 * 1000), 0);
                relay_commit(&relay);
        }
        ck_assert_uint_eq(written, n * len);
        ck_assert(!bob->waiting);
        ck_assert_uint_eq(bob->n_requests, 0);
        ck_assert_uint_eq(committed_rows(), 3);         /* seq[0] gone, alice's queued for bob */
        relay_done(&relay);
}
END_TEST

/* At shutdown the batch in flight is waited for and answered. */
START_TEST(test_writer_done_waits) {
        Session *alice;

        use_writer();
        register_users();
        alice = login("alice", false);
        feed_send(alice, "bob", 1, 1);
        relay_done(&relay);
        ck_assert(!relay.flying);
        ck_assert(!store_batch_busy(store));
        ck_assert_uint_eq(committed_rows(), 1);
        assert_sent(alice, "\"accepted\"", 1);
}
END_TEST

/* Is user named (as a JSON string) in text? */
static bool names(const char *text, const char *user) {
        char quoted[64];

        snprintf(quoted, sizeof(quoted), "\"%s\"", user);
        return strstr(text, quoted);
}

START_TEST(test_watchers_hear_presence_others_do_not) {
        Session *alice = login_proto("alice", true, 2);
        Session *bob = login_proto("bob", true, 2);
        Session *carol = login_proto("carol", true, 2);
        Session *old = login("dave", true);     /* version 1: hears everyone */
        char *out;

        /* The answer is the current state: alice online (with her
         * fingerprint), erin not; naming alice twice watches her once. */
        feed(bob, "{\"type\":\"watch\",\"id\":7,\"users\":[\"alice\",\"erin\",\"alice\"]}");
        out = take_output(bob);
        ck_assert_ptr_nonnull(strstr(out, "\"type\":\"online\",\"id\":7"));
        ck_assert(names(out, "alice"));
        ck_assert(names(out, alice->fingerprint));
        ck_assert(!names(out, "erin"));
        ck_assert_ptr_null(strstr(out, "\"next\""));
        free(out);
        ck_assert_uint_eq(bob->n_watches, 2);
        free(take_output(carol));
        free(take_output(old));

        session_close(alice, NULL, NULL, "test");
        out = take_output(bob);
        ck_assert_str_eq(out, "{\"type\":\"presence\",\"event\":\"offline\",\"user\":\"alice\"}\n");
        free(out);
        out = take_output(carol);
        ck_assert_str_eq(out, "");
        free(out);
        out = take_output(old);
        ck_assert(names(out, "alice"));
        free(out);

        /* Unwatched: nothing more, not even for a watcher that closed. */
        feed(bob, "{\"type\":\"unwatch\",\"id\":8,\"users\":[\"alice\",\"nobody\"]}");
        out = take_output(bob);
        ck_assert_str_eq(out, "{\"type\":\"online\",\"id\":8,\"users\":[]}\n");
        free(out);
        ck_assert_uint_eq(bob->n_watches, 1);
        ck_assert_ptr_null(session_index_watchers(&sessions, "alice"));
        ck_assert_ptr_eq(session_index_watchers(&sessions, "erin")->session, bob);

        /* A closing watcher leaves every list it was on. */
        session_close(bob, NULL, NULL, "test");
        ck_assert_ptr_null(session_index_watchers(&sessions, "erin"));
        hang_up(bob);
        session_index_free_dead(&sessions);
}
END_TEST

/* Telling alice's watchers she left cuts the first (over its memory),
 * whose own offline event cuts the second, the next on alice's list: the
 * walk goes on past both to the third. */
START_TEST(test_watch_walk_survives_closing) {
        Session *alice = login_proto("alice", true, 2);
        Session *w3 = login_proto("w3", true, 2);
        Session *w2 = login_proto("w2", true, 2);
        Session *w1 = login_proto("w1", true, 2);
        char *out;

        /* Prepended: the walk meets w1, w2, w3. */
        ck_assert_int_eq(session_index_watch(&sessions, w3, "alice"), 1);
        ck_assert_int_eq(session_index_watch(&sessions, w2, "alice"), 1);
        ck_assert_int_eq(session_index_watch(&sessions, w1, "alice"), 1);
        ck_assert_int_eq(session_index_watch(&sessions, w2, "w1"), 1);
        w1->limits.memory_max = w2->limits.memory_max = 0;

        session_close(alice, NULL, NULL, "test");
        ck_assert(!w1->indexed);
        ck_assert(!w2->indexed);
        out = take_output(w3);
        ck_assert_str_eq(out, "{\"type\":\"presence\",\"event\":\"offline\",\"user\":\"alice\"}\n");
        free(out);
        ck_assert_ptr_eq(session_index_watchers(&sessions, "alice")->session, w3);
        ck_assert_ptr_null(session_index_watchers(&sessions, "alice")->user_next);
        ck_assert_ptr_null(session_index_watchers(&sessions, "w1"));
}
END_TEST

START_TEST(test_watch_limits) {
        Session *v1, *s;
        char *out;

        config->max_watches = 3;
        s = login_proto("bob", false, 2);
        v1 = login("carol", false);

        feed(s, "{\"type\":\"watch\",\"id\":1,\"users\":[\"a\",\"b\"]}");
        free(take_output(s));
        /* Refused whole, counted, and the session goes on. */
        feed(s, "{\"type\":\"watch\",\"id\":2,\"users\":[\"c\",\"d\"]}");
        out = take_output(s);
        ck_assert_ptr_nonnull(strstr(out, "\"id\":2"));
        ck_assert_ptr_nonnull(strstr(out, "\"too_large\""));
        free(out);
        ck_assert_uint_eq(limit_hits[LIMIT_MAX_WATCHES], 1);
        ck_assert_uint_eq(s->n_watches, 2);
        ck_assert_ptr_null(session_index_watchers(&sessions, "c"));
        feed(s, "{\"type\":\"watch\",\"id\":3,\"users\":[\"c\"]}");
        out = take_output(s);
        ck_assert_ptr_null(strstr(out, "\"error\""));
        free(out);
        ck_assert_uint_eq(s->n_watches, 3);
        ck_assert(s->state == SESSION_ACTIVE);

        /* More names than one frame may carry. */
        config->max_watches = 1000;
        s = login_proto("dan", false, 2);
        feed(s, "{\"type\":\"watch\",\"id\":4,\"users\":[\"u0\",\"u1\",\"u2\",\"u3\",\"u4\",\"u5\","
                "\"u6\",\"u7\",\"u8\",\"u9\",\"u10\",\"u11\",\"u12\",\"u13\",\"u14\",\"u15\",\"u16\","
                "\"u17\",\"u18\",\"u19\",\"u20\",\"u21\",\"u22\",\"u23\",\"u24\",\"u25\",\"u26\",\"u27\","
                "\"u28\",\"u29\",\"u30\",\"u31\",\"u32\"]}");
        out = take_output(s);
        ck_assert_ptr_nonnull(strstr(out, "\"too_large\""));
        free(out);
        ck_assert_uint_eq(s->n_watches, 0);

        /* Version 1 sessions do not have these frames. */
        feed(v1, "{\"type\":\"watch\",\"id\":5,\"users\":[\"a\"]}");
        feed(v1, "{\"type\":\"who\",\"id\":6}");
        out = take_output(v1);
        ck_assert_ptr_nonnull(strstr(out, "{\"type\":\"error\",\"id\":5,\"code\":\"bad_request\""));
        ck_assert_ptr_nonnull(strstr(out, "{\"type\":\"error\",\"id\":6,\"code\":\"bad_request\""));
        free(out);
        ck_assert_uint_eq(v1->n_watches, 0);
}
END_TEST

START_TEST(test_who_pages_in_order_of_activation) {
        static const char *const online[] = { "zed", "kim", "bea", "ann", "joe" };
        uint64_t after = 0;
        size_t seen = 0, pages = 0;
        Session *s;

        for (size_t i = 0; i < ELEMENTSOF(online); i++) {
                (void) login_proto(online[i], true, 2);
                (void) login("amy", false);     /* sends only: not online */
        }
        s = login_proto("me", false, 2);

        /* Pages of 2 follow "next" to the end, every user once, in order. */
        for (;;) {
                _cleanup_(frame_freep) Frame *f = NULL;
                char req[128], *out;

                snprintf(req, sizeof(req), "{\"type\":\"who\",\"id\":%zu,\"after\":%llu,\"limit\":2}",
                         pages, (unsigned long long) after);
                feed(s, req);
                out = take_output(s);
                ck_assert_int_eq(frame_parse(out, strlen(out) - 1, &f, NULL), 0);
                free(out);
                ck_assert_int_eq(f->type, FRAME_ONLINE);
                ck_assert_uint_eq(f->online.id, pages);
                ck_assert_uint_le(f->online.n_users, 2);
                for (size_t i = 0; i < f->online.n_users; i++)
                        ck_assert_str_eq(f->online.users[i].user, online[seen++]);
                pages++;
                if (f->online.next == 0)
                        break;
                after = f->online.next;
        }
        ck_assert_uint_eq(seen, ELEMENTSOF(online));
        ck_assert_uint_eq(pages, 3);
}
END_TEST

/* The welcome key of version 3: made when there is none, kept while more
 * than half of its statement's time is left, replaced after. */
START_TEST(test_welcome_key_renewal) {
        _cleanup_(rsa_key_freep) RsaKey *server = NULL;
        const uint64_t t0 = 1700000000;
        uint8_t first[ED25519_KEY_LEN];

        ck_assert_int_eq(rsa_key_generate(2048, &server), 0);
        relay.server_key = server;
        ck_assert_ptr_null(relay.welcome_key);

        ck_assert_int_eq(relay_welcome_key_renew(&relay, t0), 0);
        ck_assert_ptr_nonnull(relay.welcome_secret);
        ck_assert_ptr_nonnull(relay.welcome_key);
        ck_assert_uint_eq(relay.welcome_key->not_after, t0 + WELCOME_KEY_LIFETIME);
        ck_assert_mem_eq(relay.welcome_key->key, relay.welcome_secret->pub, ED25519_KEY_LEN);
        ck_assert_int_eq(welcome_key_verify(relay.welcome_key, server, t0), 0);
        memcpy(first, relay.welcome_key->key, ED25519_KEY_LEN);

        /* exactly half left: kept */
        ck_assert_int_eq(relay_welcome_key_renew(&relay, t0 + WELCOME_KEY_LIFETIME / 2), 0);
        ck_assert_mem_eq(relay.welcome_key->key, first, ED25519_KEY_LEN);
        ck_assert_uint_eq(relay.welcome_key->not_after, t0 + WELCOME_KEY_LIFETIME);

        /* less than half: a new key, certified from now */
        ck_assert_int_eq(relay_welcome_key_renew(&relay, t0 + WELCOME_KEY_LIFETIME / 2 + 1), 0);
        ck_assert(memcmp(relay.welcome_key->key, first, ED25519_KEY_LEN) != 0);
        ck_assert_uint_eq(relay.welcome_key->not_after, t0 + WELCOME_KEY_LIFETIME / 2 + 1 + WELCOME_KEY_LIFETIME);
        ck_assert_int_eq(welcome_key_verify(relay.welcome_key, server, t0 + WELCOME_KEY_LIFETIME), 0);
        memcpy(first, relay.welcome_key->key, ED25519_KEY_LEN);

        /* a clock that jumped past the end: a new one too */
        ck_assert_int_eq(relay_welcome_key_renew(&relay, t0 + 10 * WELCOME_KEY_LIFETIME), 0);
        ck_assert(memcmp(relay.welcome_key->key, first, ED25519_KEY_LEN) != 0);

        relay_welcome_key_free(&relay);
        ck_assert_ptr_null(relay.welcome_key);
        ck_assert_ptr_null(relay.welcome_secret);
}
END_TEST

static Suite *relay_suite(void) {
        Suite *s = suite_create("relay");
        TCase *tc = tcase_create("relay");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_index_by_user);
        tcase_add_test(tc, test_index_walk_survives_closing);
        tcase_add_test(tc, test_index_user_churn);
        tcase_add_test(tc, test_receipt_to_every_session_of_the_sender);
        tcase_add_test(tc, test_presence_list_in_order_of_activation);
        tcase_add_test(tc, test_watchers_hear_presence_others_do_not);
        tcase_add_test(tc, test_watch_walk_survives_closing);
        tcase_add_test(tc, test_watch_limits);
        tcase_add_test(tc, test_who_pages_in_order_of_activation);
        tcase_add_test(tc, test_ping);
        tcase_add_test(tc, test_queue_limits);
        tcase_add_test(tc, test_prekeys_handed_out_once);
        tcase_add_test(tc, test_prekeys_refused);
        tcase_add_test(tc, test_group_commit);
        tcase_add_test(tc, test_group_commit_login_reads_committed);
        tcase_add_test(tc, test_group_commit_failure);
        tcase_add_test(tc, test_acks_alone_do_not_sync);
        tcase_add_test(tc, test_acks_and_sends_one_transaction);
        tcase_add_test(tc, test_ack_recorded_of_seq_gone_is_silent);
        tcase_add_test(tc, test_ack_recorded_not_read_again);
        tcase_add_test(tc, test_acks_disk_full);
        tcase_add_test(tc, test_writer_group_commit);
        tcase_add_test(tc, test_writer_refusals);
        tcase_add_test(tc, test_writer_disk_full);
        tcase_add_test(tc, test_writer_pipelined);
        tcase_add_test(tc, test_writer_retry_answered_after);
        tcase_add_test(tc, test_writer_queued);
        tcase_add_test(tc, test_writer_queued_started);
        tcase_add_test(tc, test_writer_acks_bounded);
        tcase_add_test(tc, test_writer_done_waits);
        tcase_add_test(tc, test_welcome_key_renewal);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        int r;

        if (rsa_key_generate(2048, &alice_key) < 0 || rsa_key_generate(2048, &mallory_key) < 0) {
                fprintf(stderr, "setup failed: no RSA keys\n");
                return EXIT_FAILURE;
        }
        r = run_suite(relay_suite());
        rsa_key_free(alice_key);
        rsa_key_free(mallory_key);
        return r;
}
