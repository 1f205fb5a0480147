/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "cli.h"
#include "envelope.h"
#include "exit-codes.h"
#include "output.h"
#include "prekeys.h"
#include "protocol.h"
#include "session.h"
#include "suite2-io.h"

/* Deliveries held while the relay looks up a sender's key. Beyond this
 * number or size the relay is flooding us; further ones are refused (and
 * acked) at once. The size matters: a relay may announce a max_frame of
 * 16 MiB, and 1024 such envelopes would not fit in memory. */
#define DELIVERIES_MAX 1024
#define DELIVERIES_SIZE_MAX (64u * 1024 * 1024)
/* Deliveries opened, shown and acknowledged together at most
 * (process_deliveries()): enough for every frame of one read. */
#define DELIVERIES_BATCH 64
/* Users a session keeps track of (presence and lookups). The relay decides
 * how many it tells us about; this keeps a hostile one from growing us. */
#define PEERS_MAX 100000

struct Outgoing {
        char to[USERNAME_MAX + 1];
        char *text;
        size_t len;
        uint64_t send_id;               /* 0 until sent */
        uint64_t first_usec;            /* monotonic, when first sent */
        uint64_t not_before;            /* monotonic: rate limited, resend then */
        /* Sealed once: every retry sends this very envelope (same id, same
         * bytes), so that the relay and the recipient see one message. */
        json_object *envelope;
        /* Sealed in suite 1 to the pinned key before the relay was asked
         * (chat_session_prepare()); used only if that is the key and the
         * suite it gets. */
        Envelope *presealed;
        char presealed_key[RSA_FINGERPRINT_MAX];
        RsaKey *preseal_key;            /* the presealer's key (chat_session_preseal()) */
        char *outbox;                   /* saved there before it is sent */
        uint8_t outbox_digest[OUTBOX_DIGEST_LEN];
        /* The outcome, kept until the messages before it have theirs:
         * results are output in the order the messages were queued. */
        bool answered;
        bool refused;
        bool queued;                    /* accepted: the relay queued it */
        char msg[32];                   /* accepted: the envelope id */
        int status;                     /* refused: the EXIT_* it stands for */
        char reason[64];                /* refused: the code */
        char why[512];                  /* refused: the sentence */
        Outgoing *next;
};

struct Delivery {
        uint64_t seq;
        Envelope *envelope;
        /* What its batch made of it (process_deliveries()): refused, a
         * text to show, or neither (shown before: acknowledged silently). */
        const char *refused;
        char *text;                     /* wipe with secure_free(text, text_size) */
        size_t len, text_size;
        bool suite2;                    /* its text is kept in the store until shown */
        uint8_t digest[ENVELOPE_DIGEST_LEN];
        Delivery *next;
};

int context_open(Context *ctx, Settings *settings, bool identity, unsigned bits) {
        _cleanup_(freep) char *path = NULL;
        int r;

        *ctx = (Context) { .settings = settings };
        r = settings_resolve(settings);
        if (r < 0)
                return r;
        r = client_state_open(settings->home, &ctx->state);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot create the state directory %s: %m", settings->home);
        if (!identity)
                return 0;

        path = client_state_identity_path(ctx->state, settings->user);
        if (!path)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        r = client_state_identity_load(ctx->state, settings->user, true, bits, &ctx->identity, &ctx->identity_created);
        if (r == -EPERM)
                return log_fail(EXIT_FAIL, 0,
                                "The private key %s is readable or writable by other users; "
                                "refusing to use it. Fix its mode with: chmod 600 %s", path, path);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot load or create the private key %s: %m", path);
        if (ctx->identity_created)
                log_notice("Created a %u-bit identity key for %s in %s (fingerprint %s).",
                           rsa_key_bits(ctx->identity), settings->user, path, ctx->identity->fingerprint);
        return 0;
}

void context_done(Context *ctx) {
        rsa_key_free(ctx->identity);
        client_state_free(ctx->state);
        *ctx = (Context) {};
}

int context_connect(Context *ctx, bool receive, int abort_fd, Client **ret) {
        const Settings *st = ctx->settings;
        ClientParams p = {
                .host = st->host,
                .port = st->port,
                .address = st->address,
                .tls = st->tls,
                .user = st->user,
                .identity = ctx->identity,
                .receive = receive,
                .expected_fingerprint = st->server_fingerprint,
                .state = ctx->state,
                .timeout_usec = st->timeout_usec,
                .abort_fd = abort_fd,
                .code = st->arg_code,
                .quiet_key_mismatch = ctx->quiet_key_mismatch,
                .auth_sent = ctx->auth_sent,
                .userdata = ctx->userdata,
        };

        uint64_t start = now_monotonic_usec();

        for (;;) {
                uint64_t retry_after = 0, wait, now;
                int r;

                p.ret_retry_after = &retry_after;
                ctx->refused_later = false;
                p.ret_later = &ctx->refused_later;
                r = client_connect(&p, ret);
                if (r != -EBUSY)
                        return r;
                /* Too many logins or registrations from here: wait as the
                 * relay asks, within --timeout of the first attempt. */
                wait = retry_after * USEC_PER_SEC;
                now = now_monotonic_usec();
                if (now + wait > start + st->timeout_usec)
                        return log_fail(EXIT_RATE_LIMITED, 0,
                                        "Cannot log in: the relay at %s answered rate_limited and asks to "
                                        "wait %" PRIu64 " s, beyond --timeout; giving up.",
                                        st->address, retry_after);
                log_notice("rate limited by the relay; retrying in %" PRIu64 " s", retry_after);
                r = wait_fds(NULL, 0, abort_fd, deadline_in(wait));
                if (r < 0)
                        return r;       /* -ECANCELED: not reported, the caller ends quietly */
        }
}

int chat_session_new(Context *ctx, bool receiving, ChatSession **ret) {
        ChatSession *s = calloc(1, sizeof(*s));

        if (!s)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        s->ctx = ctx;
        s->receiving = receiving;
        *ret = s;
        return 0;
}

/* Forget what a batch made of d: it is opened again (from the text the
 * store kept, for suite 2) when its turn comes again. */
static void delivery_reset(Delivery *d) {
        if (d->text)
                secure_free(d->text, d->text_size);
        d->text = NULL;
        d->refused = NULL;
        d->suite2 = false;
}

static void delivery_pop(ChatSession *s) {
        Delivery *d = s->deliveries;

        s->deliveries = d->next;
        if (!s->deliveries)
                s->deliveries_last = NULL;
        s->n_deliveries--;
        s->deliveries_size -= d->envelope->ct_len;
        delivery_reset(d);
        envelope_free(d->envelope);
        free(d);
}

static void deliveries_clear(ChatSession *s) {
        while (s->deliveries)
                delivery_pop(s);
        s->deliveries_fresh = false;
}

static void outgoing_pop(ChatSession *s) {
        Outgoing *o = s->outgoing;

        if (!o)
                return;
        s->outgoing = o->next;
        if (!s->outgoing)
                s->outgoing_last = NULL;
        s->n_outgoing--;
        secure_free(o->text, o->len);
        json_object_put(o->envelope);
        envelope_free(o->presealed);
        rsa_key_free(o->preseal_key);
        free(o->outbox);
        free(o);
}

static void preseal_join(ChatSession *s);

ChatSession *chat_session_free(ChatSession *s) {
        if (!s)
                return NULL;
        preseal_join(s);
        deliveries_clear(s);
        while (s->outgoing)
                outgoing_pop(s);
        for (size_t i = 0; i < s->n_peers; i++) {
                key_package_free(s->peers[i].package);
                rsa_key_free(s->peers[i].key);
        }
        free(s->peers);
        seen_free(s->seen);
        ratchet_store_free(s->ratchets);
        free(s);
        return NULL;
}

static int process_outgoing(ChatSession *s);

int chat_session_attach(ChatSession *s, Client *c) {
        int r;

        s->client = c;
        s->presence_listed = false;
        s->synced = false;
        s->who_id = 0;
        s->n_watch_pending = 0;
        s->watch_first = s->watch_last = 0;
        s->roster_pending = false;
        /* The relay's watches end with the connection. */
        for (size_t i = 0; i < s->n_peers; i++)
                s->peers[i].watched = false;
        s->publish_id = 0;
        if (c->suite2) {
                r = chat_session_publish_prekeys(s, false);
                if (r < 0)
                        return r;
        }
        /* What was in flight on the old connection goes out again now. */
        r = process_outgoing(s);
        if (r < 0)
                return r;
        if (!s->receiving)
                return 0;
        /* The relay's queue_ttl is not signed: it only tells us that
         * messages older than our window may come, and be refused. */
        if (c->limits.queue_ttl > s->ctx->settings->replay_window && !s->warned_window) {
                log_notice("The relay keeps messages for up to %" PRIu64 " s, longer than the replay window "
                           "of %" PRIu64 " s: older ones will be refused as expired (see replay-window= "
                           "in scctl(1)).", c->limits.queue_ttl, s->ctx->settings->replay_window);
                s->warned_window = true;
        }
        if (!s->seen) {
                r = seen_open(s->ctx->state, s->ctx->settings->user, s->ctx->settings->replay_window,
                              now_unix(), &s->seen);
                if (r < 0)
                        return log_fail(EXIT_FAIL, r, "Cannot open the list of seen messages %s/seen/%s.db: %m",
                                        s->ctx->settings->home, s->ctx->settings->user);
        }
        return 0;
}

static int ratchets_open(ChatSession *s) {
        int r;

        if (s->ratchets)
                return 0;
        r = ratchet_store_open(s->ctx->state, s->ctx->settings->user, &s->ratchets);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot open the suite-2 keys %s/ratchet/%s.db: %m",
                                s->ctx->settings->home, s->ctx->settings->user);
        return 0;
}

/* The most OPKs one publish frame carries within the relay's max-frame,
 * next to the largest SPK (a 4096-bit signature) and 1 KiB for the rest of
 * the frame: at the smallest max-frame (4096) that is 45, fewer than a full
 * batch. Only that many are made, so that none is kept here unpublished. */
static uint64_t publish_fit(uint64_t max_frame) {
        const uint64_t spk_b64 = (4 + X25519_KEY_LEN + 8 + 4 + SUITE2_RSA_MAX + 2) / 3 * 4;
        const uint64_t opk_b64 = (4 + X25519_KEY_LEN + 2) / 3 * 4 + 3;    /* "...", */
        uint64_t room = max_frame > 1024 + spk_b64 ? max_frame - 1024 - spk_b64 : 0;

        return MAX(room / opk_b64, (uint64_t) 1);
}

int chat_session_publish_prekeys(ChatSession *s, bool rotate) {
        _cleanup_(prekeys_update_done) PrekeysUpdate u = {};
        uint64_t opk_max = publish_fit(s->client->limits.max_frame);
        SignedPrekey current;
        int r;

        r = ratchets_open(s);
        if (r < 0)
                return r;
        if (s->client->limits.max_opks > 0)
                opk_max = MIN(opk_max, s->client->limits.max_opks);
        r = prekeys_maintain(s->ratchets, s->ctx->settings->user, s->ctx->identity, now_unix(),
                             s->ctx->settings->prekey_retention, rotate, s->client->opks_left,
                             opk_max, NULL, &u);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot make or store prekeys: %m");
        if (!u.has_spk && u.n_opks == 0 && !rotate)
                return 0;
        /* Every publish carries the SPK; new OPKs go with the current one. */
        if (u.has_spk)
                current = u.spk;
        else {
                r = ratchet_store_spk_current(s->ratchets, &current);
                if (r < 0)
                        return log_fail(EXIT_FAIL, r, "Cannot read the signed prekey: %m");
        }
        s->publish_id = client_next_id(s->client);
        s->published = false;
        r = client_send(s->client, frame_new_publish(s->publish_id, &current, u.opks,
                                                     MIN(u.n_opks, (size_t) PREKEYS_PUBLISH_MAX)));
        return r < 0 ? r : 1;
}

void chat_session_detach(ChatSession *s) {
        deliveries_clear(s);
        for (size_t i = 0; i < s->n_peers; i++) {
                s->peers[i].lookup_id = 0;
                s->peers[i].lookup_prekeys = false;
        }
        /* Messages in flight have an unknown fate; send the same envelopes
         * again, in order, on the next connection rather than lose them (a
         * relay that has one answers accepted again, and a recipient who
         * was shown it acknowledges it without a word). */
        for (Outgoing *o = s->outgoing; o; o = o->next)
                if (!o->answered)
                        o->send_id = 0;
        s->n_in_flight = 0;
        s->client = NULL;
}

static Peer *peer_find(ChatSession *s, const char *user) {
        for (size_t i = 0; i < s->n_peers; i++)
                if (streq(s->peers[i].user, user))
                        return &s->peers[i];
        return NULL;
}

Peer *chat_session_peer(ChatSession *s, const char *user) {
        Peer *p = peer_find(s, user);

        if (p)
                return p;
        if (!username_valid(user) || s->n_peers >= PEERS_MAX)
                return NULL;
        /* One entry per user the relay told us about or we asked about:
         * bounded by the presence list (one frame) and our own requests. */
        p = realloc(s->peers, (s->n_peers + 1) * sizeof(Peer));
        if (!p)
                return NULL;
        s->peers = p;
        p = &s->peers[s->n_peers++];
        *p = (Peer) {};
        snprintf(p->user, sizeof(p->user), "%s", user);
        return p;
}

/* Take the relay's package for a peer (from presence or key), after
 * checking the server's signature. A new package drops what we concluded
 * from the old one. */
static void peer_set_package(ChatSession *s, Peer *p, const KeyPackage *kp) {
        KeyPackage *copy = NULL;

        if (p->package && kp && p->package->key_len == kp->key_len &&
            memcmp(p->package->key, kp->key, kp->key_len) == 0 && !p->unverifiable) {
                p->answered = true;
                return;
        }
        p->key = rsa_key_free(p->key);
        p->pinned[0] = '\0';
        p->package = key_package_free(p->package);
        p->unverifiable = false;
        p->answered = true;
        if (!kp)
                return;
        if (!streq(kp->user, p->user) || key_package_verify(kp, s->client->server_key) < 0) {
                log_warning("The relay sent a key package for %s that is not signed by its key; "
                            "%s's key is not trusted.", p->user, p->user);
                p->unverifiable = true;
                return;
        }
        if (key_package_dup(kp, &copy) < 0) {
                p->answered = false;    /* out of memory: ask again later */
                return;
        }
        p->package = copy;
}

/* The pin's fingerprint when it is not the one the relay has for the
 * user, compared without changing anything (for presence lines). */
static const char *peer_pin_differs(ChatSession *s, Peer *p, const char *fingerprint) {
        _cleanup_(key_package_freep) KeyPackage *pinned = NULL;
        char pin[RSA_FINGERPRINT_MAX];

        if (client_state_peer_get(s->ctx->state, s->ctx->settings->address, p->user, &pinned) < 0)
                return NULL;
        rsa_fingerprint_spki(pinned->key, pinned->key_len, pin);
        if (streq(pin, fingerprint))
                return NULL;
        /* Rotated by the pinned key: the pin moves when it is next used. */
        if (p->package &&
            rotation_chain_vouches(p->package->rotations, p->package->n_rotations, p->user,
                                   pinned->key, pinned->key_len, p->package->key, p->package->key_len) >= 0)
                return NULL;
        memcpy(p->pinned, pin, sizeof(pin));
        return p->pinned;
}

static int send_lookup(ChatSession *s, Peer *p) {
        json_object *o;

        p->lookup_id = client_next_id(s->client);
        o = frame_new_lookup(p->lookup_id, p->user);
        p->lookup_prekeys = p->bundle_wanted && s->client->suite2;
        if (p->lookup_prekeys && frame_lookup_add_prekeys(o) < 0) {
                json_object_put(o);
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        }
        return client_send(s->client, o);
}

int chat_session_lookup(ChatSession *s, const char *user, Peer **ret_peer) {
        Peer *p = chat_session_peer(s, user);
        int r;

        if (!p)
                return log_fail(EXIT_FAIL, -ENOMEM, "Cannot keep track of %s: %m", user);
        if (!p->answered) {
                if (p->lookup_id == 0) {
                        if (!s->client)
                                return 0;
                        r = send_lookup(s, p);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        *ret_peer = p;
        return 1;
}

typedef enum PeerKeyState {
        PEER_KEY_READY,
        PEER_KEY_WAIT,
        PEER_KEY_UNKNOWN,
        PEER_KEY_CHANGED,
        PEER_KEY_UNVERIFIABLE,
} PeerKeyState;

/* Our own name: we hold its key, so the relay has nothing to vouch for;
 * whatever it says, only our identity's public key is used (a relay that
 * could make us pin another one would read our notes to self and forge
 * them). */
static int own_key(ChatSession *s, Peer **ret_peer) {
        const RsaKey *me = s->ctx->identity;
        Peer *p = chat_session_peer(s, s->ctx->settings->user);

        if (!p)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        if (!p->key && rsa_key_from_spki(me->spki, me->spki_len, &p->key) < 0)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        *ret_peer = p;
        return PEER_KEY_READY;
}

/* The key to use for user: pinned, and what the relay has. Pins on first
 * use. Returns a PeerKeyState or -errno. */
static int peer_key(ChatSession *s, const char *user, Peer **ret_peer) {
        Peer *p = NULL;
        int r;

        if (streq(user, s->ctx->settings->user))
                return own_key(s, ret_peer);
        r = chat_session_lookup(s, user, &p);
        if (r <= 0)
                return r < 0 ? r : PEER_KEY_WAIT;
        *ret_peer = p;
        if (p->key)
                return PEER_KEY_READY;
        if (p->unverifiable)
                return PEER_KEY_UNVERIFIABLE;
        if (!p->package)
                return PEER_KEY_UNKNOWN;

        r = client_state_peer_pin(s->ctx->state, s->ctx->settings->address, p->package, p->pinned);
        if (r < 0) {
                _cleanup_(freep) char *path = client_state_peer_path(s->ctx->state, s->ctx->settings->address, user);

                return log_fail(EXIT_FAIL, r, "Cannot read or write the pinned key %s: %m", path ?: user);
        }
        if (r == PIN_MISMATCH)
                return PEER_KEY_CHANGED;
        if (r == PIN_ROTATED) {
                char fingerprint[RSA_FINGERPRINT_MAX];

                rsa_fingerprint_spki(p->package->key, p->package->key_len, fingerprint);
                log_notice("%s rotated their key; the old key vouched for it (pinned %s, now %s).",
                           user, p->pinned, fingerprint);
        }
        if (r == PIN_NEW) {
                char fingerprint[RSA_FINGERPRINT_MAX];

                rsa_fingerprint_spki(p->package->key, p->package->key_len, fingerprint);
                log_notice("Pinned %s's key %s (first use; compare it with %s to be sure).",
                           user, fingerprint, user);
        }
        p->pinned[0] = '\0';
        if (rsa_key_from_spki(p->package->key, p->package->key_len, &p->key) < 0) {
                p->unverifiable = true;
                return PEER_KEY_UNVERIFIABLE;
        }
        return PEER_KEY_READY;
}

static void remember_sent(ChatSession *s, const char *msg, const char *to) {
        unsigned i = s->recent_next++ % CHAT_SESSION_RECENT_MAX;

        snprintf(s->recent[i].msg, sizeof(s->recent[i].msg), "%s", msg);
        snprintf(s->recent[i].to, sizeof(s->recent[i].to), "%s", to);
}

static const char *recent_recipient(const ChatSession *s, const char *msg) {
        for (unsigned i = 0; i < CHAT_SESSION_RECENT_MAX; i++)
                if (s->recent[i].msg[0] && streq(s->recent[i].msg, msg))
                        return s->recent[i].to;
        return NULL;
}

/* The first message neither sent nor answered, in queue order. Those
 * before it are in flight or answered. */
static Outgoing *outgoing_next(const ChatSession *s) {
        for (Outgoing *o = s->outgoing; o; o = o->next)
                if (!o->answered && o->send_id == 0)
                        return o;
        return NULL;
}

/* The message in flight that the relay's answer id is for. */
static Outgoing *outgoing_by_send_id(const ChatSession *s, uint64_t id) {
        for (Outgoing *o = s->outgoing; o; o = o->next)
                if (!o->answered && o->send_id != 0 && o->send_id == id)
                        return o;
        return NULL;
}

static void outgoing_answered(ChatSession *s, Outgoing *o) {
        assert(!o->answered);
        if (o->send_id != 0) {
                assert(s->n_in_flight > 0);
                s->n_in_flight--;
        }
        o->answered = true;
}

static void outgoing_refuse(ChatSession *s, Outgoing *o, int status, const char *reason, const char *fmt, ...)
        _printf_(5, 6);

static void outgoing_refuse(ChatSession *s, Outgoing *o, int status, const char *reason, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(o->why, sizeof(o->why), fmt, ap);
        va_end(ap);
        snprintf(o->reason, sizeof(o->reason), "%s", reason);
        o->status = status;
        o->refused = true;
        outgoing_answered(s, o);
}

/* Output the results at the head of the queue that are in, in order, and
 * drop those messages. The first failure in queue order is the one
 * s->error keeps. */
static void outgoing_settle(ChatSession *s) {
        while (s->outgoing && s->outgoing->answered) {
                Outgoing *o = s->outgoing;

                if (o->refused) {
                        if (s->interactive)
                                output->refused(o->to, o->reason, o->why);
                        else
                                log_fail(o->status, 0, "Not sent to %s: %s", o->to, o->why);
                        if (s->error == 0)
                                s->error = exit_status_to_errno(o->status);
                        s->n_refused++;
                } else {
                        output->sent(o->to, o->msg, o->queued, s->interactive);
                        s->n_accepted++;
                }
                outgoing_pop(s);
        }
}

/* Send o's sealed envelope (again). 1 when it went out, or -errno. */
static int send_envelope(ChatSession *s, Outgoing *o) {
        json_object *id;
        int r;

        if (!json_object_object_get_ex(o->envelope, "id", &id))
                return log_fail(EXIT_FAIL, -EINVAL, "The message to %s has no id.", o->to);
        o->send_id = client_next_id(s->client);
        s->n_in_flight++;
        if (o->first_usec == 0)
                o->first_usec = now_monotonic_usec();
        remember_sent(s, json_object_get_string(id), o->to);
        r = client_send(s->client, frame_new_send(o->send_id, o->envelope));
        return r < 0 ? r : 1;
}

enum {
        SUITE_WAIT,             /* a lookup of prekeys is out */
        SUITE_1,
        SUITE_2,                /* a stored session, or the bundle the lookup gave */
        SUITE_REFUSED,          /* the message was refused */
};

/* Which suite o goes in: a SUITE_* or -errno. With suite 2 required, a
 * relay or lookup without prekeys refuses the message. */
static int choose_suite(ChatSession *s, Outgoing *o, Peer *p) {
        const Settings *set = s->ctx->settings;
        int r;

        /* Notes to self: one store cannot hold both ends of a ratchet. */
        if (streq(o->to, set->user))
                return SUITE_1;
        if (!s->client->suite2) {
                if (!set->require_suite2)
                        return SUITE_1;
                outgoing_refuse(s, o, EXIT_PEER_KEY, "no_suite2",
                                "the relay at %s does not carry suite 2, which require-suite2= asks for",
                                set->address);
                return SUITE_REFUSED;
        }
        r = ratchets_open(s);
        if (r < 0)
                return r;
        r = suite2_io_has_session(s->ratchets, o->to, p->key->fingerprint);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot read the suite-2 session with %s: %m", o->to);
        if (r > 0)
                return SUITE_2;
        if (!p->bundle_answered) {
                p->bundle_wanted = true;
                if (p->lookup_id == 0) {
                        r = send_lookup(s, p);
                        if (r < 0)
                                return r;
                }
                return SUITE_WAIT;
        }
        if (p->has_bundle) {
                /* OPKs are not signed: after the peer's key changed (its
                 * state lost, a reset), those the relay still hands out
                 * may be the old key's, whose private halves are gone.
                 * The SPK, signed by the new key, is the safe start. */
                r = ratchet_store_session_key_changed(s->ratchets, o->to, RATCHET_DEVICE_DEFAULT,
                                                      p->key->fingerprint);
                if (r < 0)
                        return log_fail(EXIT_FAIL, r, "Cannot read the suite-2 session with %s: %m",
                                        o->to);
                if (r > 0)
                        p->bundle.has_opk = false;
                return SUITE_2;
        }

        r = ratchet_store_peer_had_prekeys(s->ratchets, o->to);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot read the suite-2 keys: %m");
        if (set->require_suite2) {
                outgoing_refuse(s, o, EXIT_PEER_KEY, "no_prekeys",
                                "the relay gave no prekeys for %s%s, and require-suite2= is set", o->to,
                                r > 0 ? " although it did before" : "");
                return SUITE_REFUSED;
        }
        if (r > 0 && !p->warned_no_prekeys) {
                log_warning("The relay gave no prekeys for %s, although it did before: sending in suite 1, "
                            "without forward secrecy. A relay that strips prekeys forces this; "
                            "require-suite2= in scctl.conf refuses it.", o->to);
                p->warned_no_prekeys = true;
        }
        return SUITE_1;
}

/* Before the first lookup of a peer: will the message need the peer's
 * prekeys? It does when no session is kept under the pinned key (or none is
 * pinned yet), and then the lookup asks for them at once rather than in a
 * second round trip from choose_suite(). With a session kept the bundle is
 * not asked for: every lookup with prekeys uses up one of the peer's OPKs.
 * What arrives is checked as before: the package under the relay's key and
 * against the pin, the SPK under the pinned key when a session starts. */
static int peer_prefetch_bundle(ChatSession *s, const char *user) {
        _cleanup_(key_package_freep) KeyPackage *pinned = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX];
        Peer *p;
        int r;

        if (!s->client->suite2 || streq(user, s->ctx->settings->user))
                return 0;
        p = chat_session_peer(s, user);
        if (!p || p->answered || p->lookup_id != 0 || p->bundle_answered || p->bundle_wanted)
                return 0;       /* no memory is peer_key()'s to report */
        r = client_state_peer_get(s->ctx->state, s->ctx->settings->address, user, &pinned);
        if (r < 0 && r != -ENOENT)
                return 0;       /* a damaged pin: peer_key() reports it */
        if (r >= 0) {
                r = ratchets_open(s);
                if (r < 0)
                        return r;
                rsa_fingerprint_spki(pinned->key, pinned->key_len, fingerprint);
                r = suite2_io_has_session(s->ratchets, user, fingerprint);
                if (r < 0)
                        return log_fail(EXIT_FAIL, r, "Cannot read the suite-2 session with %s: %m", user);
                if (r > 0)
                        return 0;
        }
        p->bundle_wanted = true;
        return 0;
}

/* Seal o: 1 when it has its envelope or was refused, 0 while a lookup is
 * out, or -errno. In seal_ahead()'s transaction (s->sealing_batch) a
 * suite-2 seal joins it, and the envelope waits for its commit. */
static int seal_one(ChatSession *s, Outgoing *o) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        json_object *env = NULL;
        Peer *p = NULL;
        int r;

        r = peer_prefetch_bundle(s, o->to);
        if (r < 0)
                return r;
        r = peer_key(s, o->to, &p);
        if (r < 0)
                return r;
        switch (r) {
        case PEER_KEY_WAIT:
                return 0;
        case PEER_KEY_UNKNOWN: {
                const char *code = p->error[0] ? p->error : ERR_NO_SUCH_USER;

                if (streq(code, ERR_NO_SUCH_USER))
                        outgoing_refuse(s, o, EXIT_REFUSED, code, "no user %s at the relay (%s)", o->to,
                                        code);
                else
                        outgoing_refuse(s, o, relay_error_status(code), code,
                                        "the relay did not give %s's key (%s)", o->to, code);
                return 1;
        }
        case PEER_KEY_CHANGED: {
                char fingerprint[RSA_FINGERPRINT_MAX];

                rsa_fingerprint_spki(p->package->key, p->package->key_len, fingerprint);
                outgoing_refuse(s, o, EXIT_PEER_KEY, "key_changed",
                                "%s's key changed: pinned %s, the relay now has %s; compare fingerprints "
                                "with %s, then run 'scctl trust %s'",
                                o->to, p->pinned, fingerprint, o->to, o->to);
                return 1;
        }
        case PEER_KEY_UNVERIFIABLE:
                outgoing_refuse(s, o, EXIT_PEER_KEY, "unverifiable_key",
                                "the relay's key package for %s does not verify", o->to);
                return 1;
        default:
                break;
        }

        r = choose_suite(s, o, p);
        if (r < 0 || r == SUITE_WAIT)
                return r;
        if (r == SUITE_REFUSED)
                return 1;
        if (r == SUITE_2) {
                r = (s->sealing_batch ? suite2_io_seal_in : suite2_io_seal)(
                        s->ratchets, s->ctx->settings->user, s->ctx->identity, o->to, p->key,
                        p->has_bundle ? &p->bundle : NULL, now_unix(), o->text, o->len, &e);
                if (r == -EBADMSG) {
                        outgoing_refuse(s, o, EXIT_PEER_KEY, "bad_prekey",
                                        "%s's signed prekey from the relay does not verify under %s's "
                                        "pinned key", o->to, o->to);
                        return 1;
                }
        } else if (o->presealed && streq(o->presealed_key, p->key->fingerprint)) {
                e = TAKE_PTR(o->presealed);
                r = 0;
        } else
                r = envelope_seal(s->ctx->settings->user, s->ctx->identity, o->to, p->key, now_unix(),
                                  o->text, o->len, &e);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot seal the message to %s: %m", o->to);
        r = envelope_to_json(e, &env);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot encode the message to %s: %m", o->to);
        if (o->outbox) {
                r = client_state_outbox_save(s->ctx->state, o->outbox, o->to, o->outbox_digest, env);
                if (r < 0) {
                        json_object_put(env);
                        return log_fail(EXIT_FAIL, r, "Cannot save the message in %s: %m", o->outbox);
                }
        }
        o->envelope = env;
        return 1;
}

/* Seal o if it is not yet, and send it: 1 when it went out or was refused,
 * 0 while a lookup is out, or -errno. */
static int send_one(ChatSession *s, Outgoing *o) {
        int r = o->envelope ? 1 : seal_one(s, o);

        if (r <= 0 || o->answered)
                return r;
        return send_envelope(s, o);
}

/* The messages at the head of the queue that the window lets go now, when
 * there are several (connect reads lines faster than it seals them), are
 * sealed together in one transaction of the suite-2 store: one commit,
 * with its syncs and the checkpoint that erases the old chain keys, for
 * all of them rather than one each. None leaves before that commit: should
 * it fail, their envelopes go with the rollback. One to be saved in an
 * outbox is sealed alone, as seal_one() writes it there at once, and that
 * file must not keep an envelope whose state a rollback could undo. */
#define SEAL_BATCH_MAX 16

static bool seals_in_batches(const ChatSession *s) {
        return s->client && s->client->suite2 && s->ratchets;
}

/* 1 when the head of the queue moved on (sealed, or refused), 0 when
 * there was nothing to seal together or it waits, or -errno. */
static int seal_ahead(ChatSession *s) {
        Outgoing *batch[SEAL_BATCH_MAX];
        unsigned window = MAX(s->window, 1u), room;
        uint64_t now = now_monotonic_usec();
        size_t n = 0, done = 0;
        int r = 0;

        if (!seals_in_batches(s) || s->n_in_flight >= window)
                return 0;
        room = window - s->n_in_flight;
        for (Outgoing *o = s->outgoing; o && room > 0 && n < ELEMENTSOF(batch); o = o->next) {
                if (o->answered || o->send_id != 0)
                        continue;
                if (o->outbox || o->not_before > now || o->len > s->client->limits.max_text)
                        break;
                room--;
                if (!o->envelope)
                        batch[n++] = o;
        }
        /* One alone seals as it always did; a transaction already open
         * (a batch of deliveries) is not ours to commit. */
        if (n < 2 || ratchet_store_begin(s->ratchets) < 0)
                return 0;
        s->sealing_batch = true;
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = seal_one(s, batch[i]);
                if (r == 0)
                        break;          /* a lookup is out: it holds back those behind */
                done++;
        }
        s->sealing_batch = false;
        if (r < 0)
                ratchet_store_rollback(s->ratchets);    /* seal_one() said why */
        else {
                r = ratchet_store_commit(s->ratchets);  /* which rolls back when it fails */
                if (r < 0)
                        r = log_fail(EXIT_FAIL, r, "Cannot write the suite-2 sessions: %m");
        }
        if (r >= 0) {
                if (done > 1)
                        log_debug("Sealed %zu messages as one batch.", done);
                return done > 0;
        }
        for (size_t i = 0; i < n; i++) {
                json_object_put(batch[i]->envelope);
                batch[i]->envelope = NULL;
        }
        return r;
}

/* Seal and send messages in queue order while fewer than the window are
 * in flight. One that waits (for a lookup, or out rate_limited) holds back
 * those behind it, so that the relay gets them in order. */
static int send_more(ChatSession *s) {
        for (;;) {
                Outgoing *o = outgoing_next(s);
                int r;

                if (!s->client || !o || s->n_in_flight >= MAX(s->window, 1u))
                        return 0;
                /* A relay that does not read: wait for the answers to
                 * what is in flight rather than heap up envelopes in
                 * memory (client_send() would give up on the connection). */
                if (s->n_in_flight > 0 && client_output_busy(s->client))
                        return 0;
                if (o->not_before > now_monotonic_usec())
                        return 0;       /* chat_session_wait() comes back for it */

                if (o->len > s->client->limits.max_text) {
                        outgoing_refuse(s, o, EXIT_REFUSED, ERR_TOO_LARGE,
                                        "the message has %zu bytes; the relay takes at most %" PRIu64,
                                        o->len, s->client->limits.max_text);
                        continue;
                }
                if (!o->envelope) {
                        /* With plenty in flight, room for a whole batch is
                         * waited for: answers come one by one, and a slot
                         * filled as soon as it is free would make every
                         * batch a single message again. */
                        if (seals_in_batches(s) && s->n_in_flight >= SEAL_BATCH_MAX &&
                            MAX(s->window, 1u) - s->n_in_flight < SEAL_BATCH_MAX)
                                return 0;
                        r = seal_ahead(s);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                continue;       /* o may have been refused */
                }
                r = send_one(s, o);
                if (r <= 0)
                        return r;
        }
}

/* Send what can be sent, and output the results that are due. */
static int process_outgoing(ChatSession *s) {
        int r = send_more(s);

        outgoing_settle(s);
        return r;
}

/* The relay said rate_limited to a message in flight: send it again when
 * it says, unless that is beyond --timeout since the first attempt. Those
 * behind it that were not sent yet wait for it; those already in flight
 * may reach the recipient before it. */
static int outgoing_rate_limited(ChatSession *s, Outgoing *o, uint64_t retry_after) {
        uint64_t wait, now = now_monotonic_usec();

        retry_after = MAX(retry_after, (uint64_t) 1);
        wait = retry_after * USEC_PER_SEC;
        if (now + wait > o->first_usec + s->ctx->settings->timeout_usec) {
                outgoing_refuse(s, o, EXIT_RATE_LIMITED, ERR_RATE_LIMITED,
                                "rate limited by the relay, which asks to wait %" PRIu64 " s, beyond "
                                "--timeout; giving up", retry_after);
                return process_outgoing(s);
        }
        log_notice("rate limited by the relay; retrying in %" PRIu64 " s", retry_after);
        o->send_id = 0;
        assert(s->n_in_flight > 0);
        s->n_in_flight--;
        o->not_before = now + wait;
        return 0;
}

int chat_session_queue_message(ChatSession *s, const char *to, const char *text, size_t len) {
        return chat_session_queue_outbox(s, to, text, len, NULL, NULL, NULL);
}

int chat_session_queue_outbox(ChatSession *s, const char *to, const char *text, size_t len, const char *outbox,
                         const uint8_t digest[OUTBOX_DIGEST_LEN], json_object *envelope) {
        Outgoing *o = calloc(1, sizeof(*o));

        if (!o)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        if (outbox) {
                o->outbox = strdup(outbox);
                if (!o->outbox) {
                        free(o);
                        return log_fail(EXIT_FAIL, -ENOMEM, "%m");
                }
                memcpy(o->outbox_digest, digest, OUTBOX_DIGEST_LEN);
        }
        o->envelope = envelope ? json_object_get(envelope) : NULL;
        snprintf(o->to, sizeof(o->to), "%s", to);
        o->text = malloc(len + 1);
        if (!o->text) {
                free(o);
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        }
        memcpy(o->text, text, len);
        o->text[len] = '\0';
        o->len = len;
        if (s->outgoing_last)
                s->outgoing_last->next = o;
        else
                s->outgoing = o;
        s->outgoing_last = o;
        s->n_outgoing++;
        return s->holding ? 0 : process_outgoing(s);
}

int chat_session_hold(ChatSession *s, bool hold) {
        s->holding = hold;
        return hold ? 0 : process_outgoing(s);
}

/* The key a message to o->to would be sealed to in suite 1, as far as the
 * local state tells: our own for a note to ourselves, else the pinned one
 * (none yet: the relay's is the one to check). */
static bool suite1_key(ChatSession *s, const Outgoing *o, RsaKey **ret_key) {
        _cleanup_(key_package_freep) KeyPackage *pinned = NULL;
        const Settings *set = s->ctx->settings;

        if (streq(o->to, set->user))
                return rsa_key_from_spki(s->ctx->identity->spki, s->ctx->identity->spki_len, ret_key) >= 0;
        if (set->require_suite2)
                return false;
        if (client_state_peer_get(s->ctx->state, set->address, o->to, &pinned) < 0)
                return false;
        return rsa_key_from_spki(pinned->key, pinned->key_len, ret_key) >= 0;
}

/* And whether it goes in suite 1 with that key: a note to ourselves does,
 * and so does a message through a relay without suite 2, or to a peer the
 * suite-2 store knows to speak suite 1 only. Touches nothing but the
 * store, so that the presealer may ask. */
static bool suite1_known(ChatSession *s, const Outgoing *o, bool suite2, const RsaKey *key) {
        if (streq(o->to, s->ctx->settings->user) || !suite2)
                return true;
        return s->ratchets && suite2_io_known_suite(s->ratchets, o->to, key->fingerprint) == 1;
}

static void ratchets_open_quietly(ChatSession *s) {
        /* Silently: ratchets_open() says why when it is needed. */
        if (!s->ratchets && ratchet_store_open(s->ctx->state, s->ctx->settings->user, &s->ratchets) < 0)
                s->ratchets = NULL;
}

static void preseal(ChatSession *s, Outgoing *o, const RsaKey *key) {
        if (envelope_seal(s->ctx->settings->user, s->ctx->identity, o->to, key, now_unix(), o->text, o->len,
                          &o->presealed) >= 0)
                memcpy(o->presealed_key, key->fingerprint, sizeof(o->presealed_key));
}

/* The presealer thread. It touches the suite-2 store (opened in the
 * thread, handed over at the join) and each outgoing message's presealed
 * envelope, and reads the rest; the main thread leaves them alone until
 * preseal_join(). ClientState's lock nests by a counter, which is not for
 * two threads: suite1_key() was asked before the thread started. It
 * presumes a relay with suite 2, the usual one; chat_session_prepare()
 * seals what that presumption left out should the relay have none. */
static void *presealer(void *userdata) {
        ChatSession *s = userdata;

        ratchets_open_quietly(s);
        for (Outgoing *o = s->outgoing; o; o = o->next)
                if (o->preseal_key && suite1_known(s, o, true, o->preseal_key))
                        preseal(s, o, o->preseal_key);
        return NULL;
}

void chat_session_preseal(ChatSession *s) {
        bool any = false;

        assert(!s->client && !s->presealing);
        for (Outgoing *o = s->outgoing; o; o = o->next)
                if (!o->envelope && !o->presealed && !o->preseal_key && suite1_key(s, o, &o->preseal_key))
                        any = true;
        /* Should no thread start, chat_session_prepare() does it all. */
        if (any && pthread_create(&s->presealer_thread, NULL, presealer, s) == 0)
                s->presealing = true;
}

static void preseal_join(ChatSession *s) {
        if (s->presealing) {
                (void) pthread_join(s->presealer_thread, NULL);
                s->presealing = false;
        }
        for (Outgoing *o = s->outgoing; o; o = o->next)
                o->preseal_key = rsa_key_free(o->preseal_key);
}

void chat_session_prepare(ChatSession *s, bool suite2) {
        assert(!s->client);

        preseal_join(s);
        if (suite2)
                ratchets_open_quietly(s);
        for (Outgoing *o = s->outgoing; o; o = o->next) {
                _cleanup_(rsa_key_freep) RsaKey *key = NULL;

                if (o->envelope || o->presealed || !suite1_key(s, o, &key) || !suite1_known(s, o, suite2, key))
                        continue;
                preseal(s, o, key);
        }
}

bool chat_session_idle(const ChatSession *s) {
        return !s->outgoing && !s->deliveries;
}

/* Envelope ids for output. */
static void id_string(const uint8_t id[MSG_ID_LEN], char out[32]) {
        _cleanup_(freep) char *b = NULL;

        snprintf(out, 32, "%s", b64_encode(id, MSG_ID_LEN, &b) >= 0 ? b : "?");
}

/* The replay check of a batch: the store, and before it the messages of
 * the batch opened already, which are recorded only once shown. Without
 * them a second copy of a message in one burst would be shown twice (a
 * suite-2 one from the text its first copy left in the store). */
static int batch_seen(void *userdata, const char *from, const uint8_t id[MSG_ID_LEN], uint64_t ts,
                      const uint8_t digest[ENVELOPE_DIGEST_LEN]) {
        ChatSession *s = userdata;

        for (const Delivery *d = s->deliveries; d; d = d->next)
                if (d->text && streq(d->envelope->from, from) &&
                    memcmp(d->envelope->id, id, MSG_ID_LEN) == 0)
                        return memcmp(d->digest, digest, ENVELOPE_DIGEST_LEN) == 0 ?
                               ENVELOPE_SEEN_SAME : ENVELOPE_SEEN_OTHER;
        return seen_check(s->seen, from, id, ts, digest);
}

static void show_message(ChatSession *s, const Envelope *e, const char *id, const char *text,
                         size_t len) {
        output->message(&(OutputMessage) {
                .from = e->from,
                .to = e->to,
                .id = id,
                .ts = e->ts,
                .text = text,
                .len = len,
        });
}

/* Open d for its batch (see process_deliveries()). A suite-2 message is
 * opened in the batch's transaction of the ratchet store, begun here for
 * the first one (*in_transaction). 0 when done, 1 when the sender's key is
 * being looked up, -errno when our own state failed (then nothing of the
 * batch is acknowledged: the relay keeps the messages). */
static int delivery_open(ChatSession *s, Delivery *d, bool *in_transaction) {
        const char *me = s->ctx->settings->user;
        const Envelope *e = d->envelope;
        EnvelopeError error = ENVELOPE_OK;
        char id[32];
        Peer *p = NULL;
        int r;

        if (!streq(e->to, me)) {
                d->refused = envelope_error_to_string(ENVELOPE_WRONG_RECIPIENT);
                return 0;
        }
        r = peer_key(s, e->from, &p);
        if (r < 0)
                return r;
        if (r == PEER_KEY_WAIT)
                return 1;
        if (r != PEER_KEY_READY) {
                d->refused = r == PEER_KEY_UNKNOWN ? envelope_error_to_string(ENVELOPE_UNKNOWN_SENDER) :
                             r == PEER_KEY_CHANGED ? "key_changed" : "unverifiable_key";
                return 0;
        }

        id_string(e->id, id);
        if (envelope_is_suite2(e)) {
                Suite2Opened o = {};

                if (!s->ratchets) {
                        d->refused = envelope_error_to_string(ENVELOPE_BAD_SUITE);
                        return 0;
                }
                if (!*in_transaction) {
                        r = ratchet_store_begin(s->ratchets);
                        if (r < 0)
                                return log_fail(EXIT_FAIL, r, "Cannot open the message %s from %s: %m", id,
                                                e->from);
                        *in_transaction = true;
                }
                r = suite2_io_open_in(s->ratchets, batch_seen, s, me, s->ctx->identity, p->key, e,
                                      now_unix(), s->ctx->settings->replay_window,
                                      (size_t) s->client->limits.max_text, &o, &d->refused);
                if (r >= 0) {
                        d->text = o.text;
                        d->len = o.len;
                        d->text_size = o.len + 1;
                        d->suite2 = true;
                }
        } else {
                EnvelopeOpenParams params = {
                        .me = me,
                        .my_key = s->ctx->identity,
                        .sender_key = p->key,
                        .now = now_unix(),
                        .window = s->ctx->settings->replay_window,
                        .max_text = (size_t) s->client->limits.max_text,
                        .seen = batch_seen,
                        .userdata = s,
                };

                r = envelope_open(e, &params, &d->text, &d->len, &error);
                if (r >= 0)
                        d->text_size = d->len;
                else if (r == -EBADMSG)
                        d->refused = envelope_error_to_string(error);
        }
        if (r == -EBADMSG && d->refused) {
                if (streq(d->refused, envelope_error_to_string(ENVELOPE_DUPLICATE))) {
                        /* Shown already and not acked in time (a relay
                         * restart, a lost ack): nothing to say. */
                        log_debug("Message %s from %s was shown already; acknowledging it again.", id,
                                  e->from);
                        d->refused = NULL;
                }
                return 0;
        }
        if (r >= 0)
                r = envelope_digest(e, d->digest);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot open the message %s from %s: %m", id, e->from);
        return 0;
}

/* Open the first deliveries, up to the first whose sender's key is being
 * looked up: all of them in one transaction of the ratchet store. */
static int batch_open(ChatSession *s, size_t *ret_n) {
        bool in_transaction = false;
        size_t n = 0;
        int r = 0;

        for (Delivery *d = s->deliveries; d && n < DELIVERIES_BATCH; d = d->next) {
                r = delivery_open(s, d, &in_transaction);
                if (r != 0)
                        break;
                n++;
        }
        if (r >= 0 && in_transaction) {
                r = ratchet_store_commit(s->ratchets);
                if (r < 0)
                        r = log_fail(EXIT_FAIL, r, "Cannot save the ratchet store: %m");
        }
        if (r < 0) {
                ratchet_store_rollback(s->ratchets);
                return r;
        }
        if (n > 1)
                log_debug("Opened %zu deliveries as one batch.", n);
        *ret_n = n;
        return 0;
}

/* Show the first n deliveries (opened by batch_open()), record each as
 * seen before the next is shown, erase their kept texts, acknowledge. */
static int batch_show(ChatSession *s, size_t n) {
        const Envelope *forget[DELIVERIES_BATCH];
        size_t n_forget = 0, done = 0;
        Delivery *d = s->deliveries;
        int r = 0, q;

        for (; done < n; d = d->next, done++) {
                const Envelope *e = d->envelope;
                char id[32];

                id_string(e->id, id);
                if (d->refused) {
                        output->rejected(e->from, id, d->refused);
                        continue;
                }
                if (!d->text)
                        continue;
                show_message(s, e, id, d->text, d->len);
                secure_free(d->text, d->text_size);
                d->text = NULL;
                if (output_broken()) {
                        r = log_fail(EXIT_FAIL, 0, "Cannot write message %s from %s to standard output; "
                                     "leaving it with the relay.", id, e->from);
                        break;
                }
                s->n_messages++;
                q = seen_add(s->seen, e->from, e->id, e->ts, d->digest);
                if (q < 0)
                        log_warning("Cannot record message %s as seen: %s; a replay of it would be shown "
                                    "again.", id, strerror(-q));
                if (d->suite2)
                        forget[n_forget++] = e;
        }

        q = n_forget > 0 ? suite2_io_forget(s->ratchets, forget, n_forget) : 0;
        if (q < 0)
                log_warning("Cannot erase the text of %zu shown messages from the ratchet store: %s; "
                            "it stays there until they are delivered again.", n_forget, strerror(-q));
        for (size_t i = 0; i < done; i++) {
                q = s->client ? client_send(s->client, frame_new_ack(s->deliveries->seq)) : -ENOTCONN;
                if (q < 0 && r >= 0)
                        r = q;
                delivery_pop(s);
        }
        return r;
}

/* Deliveries are opened, shown and acknowledged in batches: all that came
 * in one read (chat_session_wait()), so that a burst costs one commit of
 * the ratchet store, and one checkpoint of its log, to open it and one to
 * erase its texts, instead of two of each per message. Per message the
 * order is still the one that makes a crash harmless:
 *
 *   1. its new ratchet state and its text are committed, in the batch's
 *      transaction: its key is gone, its text kept in the store;
 *   2. it is shown;
 *   3. it is recorded as seen, before the next one is shown;
 *   4. its text is erased from the store, in one transaction per batch;
 *   5. it is acknowledged, and the relay forgets it.
 *
 * Killed before 1, we keep the old state and the relay delivers the message
 * again. Between 1 and 2 it is delivered again and shown from the kept
 * text. Between 2 and 3 it is shown again: that one message, as before
 * batching, since seen is written per message. One write for the batch
 * would widen that: before showing, a crash would lose the batch (it
 * would count as shown), after, show it all again; at one fdatasync per
 * message that is not worth it. Between 3 and 5 it is a duplicate when
 * delivered again, acknowledged silently, and its kept text erased then.
 *
 * What reaches the disk: the batch's intermediate ratchet states never
 * do (only the state after its last message is committed), and the
 * checkpoint after each commit empties the log, so that old chain keys
 * stay in it at most until the end of the batch's commit; the texts stay
 * in the store until the whole batch is shown, instead of one message. */
static int process_deliveries(ChatSession *s) {
        while (s->client && s->deliveries) {
                size_t n = 0;
                int r;

                r = batch_open(s, &n);
                if (r >= 0 && n > 0)
                        r = batch_show(s, n);
                if (r < 0) {
                        for (Delivery *d = s->deliveries; d; d = d->next)
                                delivery_reset(d);
                        return r;
                }
                if (n == 0)
                        return 0;       /* the first waits for its sender's key */
        }
        return 0;
}

static int progress(ChatSession *s) {
        int r;

        r = process_deliveries(s);
        if (r < 0)
                return r;
        return process_outgoing(s);
}

/* The fingerprint of the user's key as the relay has it: from its key
 * package, or from presence (version 2); NULL when neither said. */
static const char *peer_fingerprint(const Peer *p, char buf[static RSA_FINGERPRINT_MAX]) {
        if (p->package) {
                rsa_fingerprint_spki(p->package->key, p->package->key_len, buf);
                return buf;
        }
        return p->fingerprint[0] ? p->fingerprint : NULL;
}

static void show_online(ChatSession *s, Peer *p) {
        char buf[RSA_FINGERPRINT_MAX];
        const char *fingerprint = peer_fingerprint(p, buf);

        if (!s->show_presence || streq(p->user, s->ctx->settings->user) || !fingerprint)
                return;
        output->presence("online", p->user, fingerprint, peer_pin_differs(s, p, fingerprint));
}

static void show_offline(ChatSession *s, Peer *p) {
        p->online = false;
        if (s->show_presence && !streq(p->user, s->ctx->settings->user))
                output->presence("offline", p->user, NULL, NULL);
}

/* Version 2: the relay says user is online with the key of fingerprint
 * (an answer to watch, or an event). The key package is asked for only
 * when a message needs it (chat_session_lookup()). */
static void peer_online(ChatSession *s, const char *user, const char *fingerprint, bool show) {
        Peer *p = chat_session_peer(s, user);
        char buf[RSA_FINGERPRINT_MAX];
        const char *known;
        bool was_online;

        if (!p)
                return;         /* out of memory or over PEERS_MAX: not shown */
        was_online = p->online;
        known = peer_fingerprint(p, buf);
        if (known && !streq(known, fingerprint)) {
                /* Another key than the one we knew: ask for its package
                 * when a message needs it, and say so. */
                if (p->package && !p->lookup_id) {
                        peer_set_package(s, p, NULL);
                        p->answered = false;
                }
                was_online = false;
        }
        snprintf(p->fingerprint, sizeof(p->fingerprint), "%s", fingerprint);
        p->online = p->listed = true;
        if (show && !was_online)
                show_online(s, p);
}

static int send_watch(ChatSession *s, const char *const *users, size_t n) {
        int r;

        s->watch_last = client_next_id(s->client);
        if (s->watch_first == 0)
                s->watch_first = s->watch_last;
        r = client_send(s->client, frame_new_watch(FRAME_WATCH, s->watch_last, users, n));
        if (r >= 0)
                s->n_watch_pending++;
        return r;
}

int chat_session_watch(ChatSession *s, const char *const *users, size_t n, bool pinned) {
        _cleanup_(freep) char (*contacts)[USERNAME_MAX + 1] = NULL;
        const char *batch[WATCH_USERS_MAX];
        size_t n_contacts = 0, k = 0;
        int r;

        if (!s->client || s->client->proto < 2)
                return 0;
        if (pinned) {
                r = client_state_peer_list(s->ctx->state, s->ctx->settings->address, PEERS_MAX, &contacts,
                                           &n_contacts);
                if (r < 0)
                        return log_fail(EXIT_FAIL, r, "Cannot list the pinned keys of %s: %m",
                                        s->ctx->settings->address);
                /* After a reconnection: whoever the answers do not list
                 * went offline meanwhile (watch_answered()). */
                for (size_t i = 0; i < s->n_peers; i++)
                        s->peers[i].listed = false;
                s->roster_pending = true;
        }
        for (size_t i = 0; i < n + n_contacts; i++) {
                /* Names that stay put: chat_session_peer() may move peers. */
                const char *user = i < n ? users[i] : contacts[i - n];
                Peer *p = chat_session_peer(s, user);

                if (!p || p->watched || streq(user, s->ctx->settings->user))
                        continue;
                p->watched = true;
                batch[k++] = user;
                if (k == ELEMENTSOF(batch)) {
                        r = send_watch(s, batch, k);
                        if (r < 0)
                                return r;
                        k = 0;
                }
        }
        return k > 0 ? send_watch(s, batch, k) : 0;
}

/* A watch was answered: when the last is, users who were online before a
 * reconnection and are not now went offline meanwhile. */
static void watch_answered(ChatSession *s) {
        if (s->n_watch_pending == 0 || --s->n_watch_pending > 0 || !s->roster_pending)
                return;
        s->roster_pending = false;
        for (size_t i = 0; i < s->n_peers; i++) {
                Peer *p = &s->peers[i];

                if (p->watched && p->online && !p->listed)
                        show_offline(s, p);
                p->listed = false;
        }
}

static int send_who(ChatSession *s, uint64_t after) {
        s->who_id = client_next_id(s->client);
        return client_send(s->client, frame_new_who(s->who_id, after, 0));
}

int chat_session_list_online(ChatSession *s, bool then_output) {
        if (!s->client || s->client->proto < 2)
                return then_output ? chat_session_output_users(s) : 0;
        /* Whom we do not watch may have gone meanwhile: the list says. */
        for (size_t i = 0; i < s->n_peers; i++)
                if (!s->peers[i].watched)
                        s->peers[i].online = false;
        s->output_listed = then_output;
        return send_who(s, 0);
}

/* An answer to who (a page of the list) or to watch/unwatch. */
static int handle_online(ChatSession *s, const Frame *f) {
        bool who = s->who_id != 0 && f->online.id == s->who_id;

        if (!who && (f->online.id < s->watch_first || f->online.id > s->watch_last))
                return 0;
        for (size_t i = 0; i < f->online.n_users; i++)
                peer_online(s, f->online.users[i].user, f->online.users[i].fingerprint, !who);
        if (!who) {
                watch_answered(s);
                return 1;
        }
        if (f->online.next > 0) {
                int r = send_who(s, f->online.next);

                return r < 0 ? r : 1;
        }
        s->who_id = 0;
        s->presence_listed = true;
        if (s->output_listed) {
                int r;

                s->output_listed = false;
                r = chat_session_output_users(s);
                return r < 0 ? r : 1;
        }
        return 1;
}

/* Version 2 sends events about the users a session watches. One about
 * anybody else is the relay's mistake or malice: it would cost a peer
 * entry (and a search of all of them for every event after) and a line
 * nobody asked for. */
static bool watching(ChatSession *s, const char *user) {
        Peer *p = peer_find(s, user);

        return p && p->watched;
}

static int handle_presence(ChatSession *s, const Frame *f) {
        const char *me = s->ctx->settings->user;

        switch (f->presence.kind) {
        case PRESENCE_LIST:
                /* Report the difference from what we knew: on the first
                 * connection everyone listed comes online; after a reconnect
                 * only the changes show. The list may come in several
                 * frames; the last one has no "more". */
                for (size_t i = 0; i < f->presence.n_users; i++) {
                        const KeyPackage *kp = f->presence.users[i];
                        Peer *p = chat_session_peer(s, kp->user);
                        bool was_online;

                        if (!p)
                                continue;       /* out of memory or over PEERS_MAX: not shown */
                        was_online = p->online;
                        peer_set_package(s, p, kp);
                        p->online = p->listed = true;
                        if (!was_online)
                                show_online(s, p);
                }
                if (s->client->more)
                        break;
                for (size_t i = 0; i < s->n_peers; i++) {
                        Peer *p = &s->peers[i];

                        if (p->online && !p->listed) {
                                p->online = false;
                                if (s->show_presence && !streq(p->user, me))
                                        output->presence("offline", p->user, NULL, NULL);
                        }
                        p->listed = false;
                }
                s->presence_listed = true;
                break;
        case PRESENCE_ONLINE: {
                Peer *p;

                if (!f->presence.package) {
                        /* Version 2: who and which key, no package. */
                        if (!watching(s, f->presence.user))
                                break;
                        peer_online(s, f->presence.user, f->presence.fingerprint, true);
                        break;
                }
                p = chat_session_peer(s, f->presence.package->user);
                if (!p)
                        break;
                peer_set_package(s, p, f->presence.package);
                p->online = true;
                show_online(s, p);
                break;
        }
        case PRESENCE_OFFLINE: {
                Peer *p;

                if (s->client && s->client->proto >= 2 && !watching(s, f->presence.user))
                        break;
                p = chat_session_peer(s, f->presence.user);
                if (p)
                        show_offline(s, p);
                break;
        }
        }
        return progress(s);
}

/* The answer to a lookup with "prekeys": the bundle (its SPK is verified
 * when a session starts from it), and whether the peer ever had one. */
static int take_bundle(ChatSession *s, Peer *p, const Frame *f) {
        int r;

        p->lookup_prekeys = false;
        p->bundle_answered = true;
        p->has_bundle = f && f->key.has_bundle;
        if (!p->has_bundle)
                return 0;
        p->bundle = f->key.bundle;
        r = ratchet_store_begin(s->ratchets);
        if (r >= 0)
                r = ratchet_store_peer_saw_prekeys(s->ratchets, p->user, now_unix());
        if (r >= 0)
                r = ratchet_store_commit(s->ratchets);
        if (r < 0) {
                ratchet_store_rollback(s->ratchets);
                return log_fail(EXIT_FAIL, r, "Cannot write the suite-2 keys: %m");
        }
        return 0;
}

static Peer *peer_by_lookup(ChatSession *s, uint64_t id) {
        for (size_t i = 0; i < s->n_peers; i++)
                if (s->peers[i].lookup_id == id)
                        return &s->peers[i];
        return NULL;
}

int chat_session_handle(ChatSession *s, const Frame *f) {
        int r;

        switch (f->type) {
        case FRAME_PRESENCE:
                r = handle_presence(s, f);
                return r < 0 ? r : 1;

        case FRAME_KEY: {
                Peer *p = peer_by_lookup(s, f->key.id);

                if (!p)
                        return 1;       /* an answer we no longer wait for */
                p->lookup_id = 0;
                if (p->lookup_prekeys) {
                        r = take_bundle(s, p, f);
                        if (r < 0)
                                return r;
                }
                if (!streq(f->key.package->user, p->user)) {
                        log_warning("The relay answered a lookup of %s with the key of %s.",
                                    p->user, f->key.package->user);
                        peer_set_package(s, p, NULL);
                        p->unverifiable = true;
                } else
                        peer_set_package(s, p, f->key.package);
                r = progress(s);
                return r < 0 ? r : 1;
        }

        case FRAME_DELIVER: {
                Delivery *d;

                if (!s->receiving)
                        return 0;
                if (!f->deliver.envelope) {
                        /* It failed step 1 of opening in the codec (the
                         * shape, version or suite): refused and
                         * acknowledged like any other, never left queued. */
                        output->rejected(f->deliver.from[0] ? f->deliver.from : "?",
                                         f->deliver.msg[0] ? f->deliver.msg : "?",
                                         envelope_error_to_string(f->deliver.error));
                        r = client_send(s->client, frame_new_ack(f->deliver.seq));
                        return r < 0 ? r : 1;
                }
                if (s->n_deliveries >= DELIVERIES_MAX ||
                    (s->n_deliveries > 0 &&
                     s->deliveries_size + f->deliver.envelope->ct_len > DELIVERIES_SIZE_MAX)) {
                        char id[32];

                        id_string(f->deliver.envelope->id, id);
                        output->rejected(f->deliver.envelope->from, id, "overload");
                        r = client_send(s->client, frame_new_ack(f->deliver.seq));
                        return r < 0 ? r : 1;
                }
                d = calloc(1, sizeof(*d));
                if (!d)
                        return log_fail(EXIT_FAIL, -ENOMEM, "%m");
                d->seq = f->deliver.seq;
                if (envelope_from_json(f->deliver.raw, &d->envelope, NULL) < 0) {
                        /* The codec parsed it once already; only memory can fail here. */
                        free(d);
                        return log_fail(EXIT_FAIL, -ENOMEM, "%m");
                }
                if (s->deliveries_last)
                        s->deliveries_last->next = d;
                else
                        s->deliveries = d;
                s->deliveries_last = d;
                s->n_deliveries++;
                s->deliveries_size += d->envelope->ct_len;
                /* The frames behind it in what we read come first, so
                 * that a burst is opened as one batch (chat_session_wait()). */
                if (s->n_deliveries < DELIVERIES_BATCH) {
                        s->deliveries_fresh = true;
                        return 1;
                }
                /* Full: open them now, and let the next wait poll
                 * everything again (standard input, signals). */
                s->deliveries_fresh = false;
                r = progress(s);
                return r < 0 ? r : 1;
        }

        case FRAME_ACCEPTED: {
                Outgoing *o = outgoing_by_send_id(s, f->accepted.id);
                json_object *id = NULL;

                if (!o)
                        return 0;
                /* The relay names the envelope it stored: ours, or it did
                 * not store ours, whatever it says. */
                if (!json_object_object_get_ex(o->envelope, "id", &id) ||
                    !streq(json_object_get_string(id), f->accepted.msg))
                        return log_fail(EXIT_CONNECT, 0,
                                        "The relay at %s answered our message to %s with the id of "
                                        "another (%s); giving up.",
                                        s->client->address, o->to, f->accepted.msg);
                snprintf(o->msg, sizeof(o->msg), "%s", f->accepted.msg);
                o->queued = f->accepted.queued;
                outgoing_answered(s, o);
                r = process_outgoing(s);
                return r < 0 ? r : 1;
        }

        case FRAME_RECEIPT: {
                const char *to = recent_recipient(s, f->receipt.msg);

                if (!to)
                        return 1;       /* for a message another session of ours sent */
                output->receipt(to, f->receipt.msg, f->receipt.status, s->interactive);
                s->n_receipts++;
                return 1;
        }

        case FRAME_ERROR: {
                Outgoing *o;
                Peer *p;

                if (!f->error.has_id)
                        return 0;
                if (s->publish_id != 0 && f->error.id == s->publish_id) {
                        char message[200];

                        string_sanitize(f->error.message, message, sizeof(message));
                        log_warning("The relay refused our prekeys: %s%s%s; others keep getting suite 1 "
                                    "until they are published.", f->error.code, message[0] ? ": " : "",
                                    message);
                        s->publish_id = 0;
                        return 1;
                }
                p = peer_by_lookup(s, f->error.id);
                if (p) {
                        p->lookup_id = 0;
                        if (p->lookup_prekeys)
                                (void) take_bundle(s, p, NULL);
                        peer_set_package(s, p, NULL);
                        snprintf(p->error, sizeof(p->error), "%s", f->error.code);
                        r = progress(s);
                return r < 0 ? r : 1;
                }
                o = outgoing_by_send_id(s, f->error.id);
                if (o && streq(f->error.code, ERR_RATE_LIMITED)) {
                        r = outgoing_rate_limited(s, o, f->error.retry_after);
                        return r < 0 ? r : 1;
                }
                if (o) {
                        char message[200];

                        string_sanitize(f->error.message, message, sizeof(message));
                        outgoing_refuse(s, o, relay_error_status(f->error.code), f->error.code,
                                        "the relay refused it: %s%s%s", f->error.code,
                                        message[0] ? ": " : "", message);
                        r = process_outgoing(s);
                return r < 0 ? r : 1;
                }
                /* Watch ids are the only others we use between the first
                 * and the last watch. */
                if (s->watch_first && f->error.id >= s->watch_first && f->error.id <= s->watch_last) {
                        log_warning("The relay refused to show the presence of some users (%s); "
                                    "they may be online without a word.", f->error.code);
                        watch_answered(s);
                        return 1;
                }
                /* A refused who is the caller's (scctl users). */
                if (s->who_id != 0 && f->error.id == s->who_id)
                        return 0;
                /* An id we never used, or one answered already: it refuses
                 * nothing of ours, and only an error without an id ends the
                 * session. Passed on, it would end it for a word that
                 * concerns nothing. */
                log_debug("The relay answered %s to request %" PRIu64 ", which waits for no answer; ignored.",
                          f->error.code, f->error.id);
                return 1;
        }

        case FRAME_SYNCED:
                s->synced = true;
                return 1;

        case FRAME_PUBLISHED:
                if (s->publish_id == 0 || f->published.id != s->publish_id)
                        return 0;
                s->publish_id = 0;
                s->published = true;
                s->relay_opks = f->published.opks;
                /* What the next publish on this connection tops up from. */
                s->client->opks_left = (int) MIN(f->published.opks, (uint64_t) INT_MAX);
                return 1;

        case FRAME_ONLINE:
                return handle_online(s, f);

        default:
                return 0;
        }
}

/* Wait for the next frame the session does not consume itself. Errors
 * without an id end the session; frames nobody expects are skipped.
 * Returns CLIENT_FRAME/CLIENT_TIMEOUT/CLIENT_READY or -errno. *ret_frame
 * is NULL unless there is one for the caller. */
int chat_session_wait(ChatSession *s, struct pollfd *extra, size_t n_extra, uint64_t deadline,
                        const char *what) {
        _cleanup_(frame_freep) Frame *f = NULL;
        uint64_t wake = deadline;
        Outgoing *o;
        int r;

        /* Deliveries came in: take the frames already received first,
         * without waiting, then open them as one batch. */
        if (s->deliveries_fresh) {
                r = client_wait(s->client, extra, n_extra, WAIT_NOW, &f);
                if (r == CLIENT_TIMEOUT) {
                        s->deliveries_fresh = false;
                        r = progress(s);
                        return r < 0 ? r : CLIENT_FRAME;
                }
        } else {
                /* A message waiting out rate_limited goes when its time comes. */
                o = outgoing_next(s);
                if (o && o->not_before > 0)
                        wake = MIN(wake, o->not_before);
                r = client_wait(s->client, extra, n_extra, wake, &f);
        }
        if (r == CLIENT_TIMEOUT && wake < deadline) {
                r = process_outgoing(s);
                if (r < 0)
                        return r;
                s->n_retries++;
                return CLIENT_FRAME;
        }
        if (r != CLIENT_FRAME)
                return r;
        switch (f->type) {
        case FRAME_DELIVER: case FRAME_SYNCED: case FRAME_KEY: case FRAME_ACCEPTED: case FRAME_PUBLISHED:
        case FRAME_ONLINE:
                s->n_progress++;
                break;
        default:
                break;
        }
        r = chat_session_handle(s, f);
        if (r != 0)
                return r < 0 ? r : CLIENT_FRAME;
        if (f->type == FRAME_ERROR) {
                snprintf(s->ended, sizeof(s->ended), "%s", f->error.code);
                return log_relay_error(f, what);
        }
        return CLIENT_FRAME;
}

/* The suite a message to user goes in, as far as is known without using
 * up one of the user's one-time prekeys: 2 with a session kept, or when
 * the user's lookup gave prekeys before, through a relay of suite 2. */
static unsigned peer_suite(ChatSession *s, const char *user, const char *fingerprint) {
        if (streq(user, s->ctx->settings->user) || !s->client || !s->client->suite2 || !s->ratchets)
                return 1;
        return suite2_io_known_suite(s->ratchets, user, fingerprint) == 2 ? 2 : 1;
}

static int compare_users(const void *a, const void *b) {
        return strcmp(((const OutputUser *) a)->user, ((const OutputUser *) b)->user);
}

int chat_session_output_users(ChatSession *s) {
        _cleanup_(freep) OutputUser *users = calloc(s->n_peers + 1, sizeof(OutputUser));
        _cleanup_(freep) char (*fingerprints)[RSA_FINGERPRINT_MAX] = calloc(s->n_peers + 1, sizeof(*fingerprints));
        size_t n = 0;

        if (!users || !fingerprints)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        for (size_t i = 0; i < s->n_peers; i++) {
                const Peer *p = &s->peers[i];
                const char *fingerprint;

                if (!p->online)
                        continue;
                fingerprint = peer_fingerprint(p, fingerprints[n]);
                if (!fingerprint)
                        continue;
                users[n] = (OutputUser) { p->user, fingerprint, peer_suite(s, p->user, fingerprint) };
                n++;
        }
        qsort(users, n, sizeof(OutputUser), compare_users);
        output->users(users, n);
        return 0;
}
