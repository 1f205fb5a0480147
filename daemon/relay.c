/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "codec.h"
#include "crypto.h"
#include "handshake.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "protocol.h"
#include "relay.h"
#include "rotation.h"
#include "session-index.h"
#include "session.h"
#include "suite2.h"
#include "stream.h"
#include "util.h"

/* Envelopes read from the store per query while pumping. */
#define PUMP_BATCH 16

/* Key packages of users of other nodes read from the store per piece of
 * a version 1 online list, at most. */
#define PRESENCE_REMOTE_MAX 64

/* A send stored in the open transaction, answered after the commit; with
 * an asynchronous store, a send or an ack sent with the batch (w),
 * answered when the batch is. */
struct RelayPending {
        Session *session;       /* NULL: freed while its batch was in flight */
        uint64_t id;            /* the send's request id */
        StoreWrite w;           /* .msg as stored; .msg.envelope, the text (envelope_text()),
                                 * is the batch's: stored and forwarded from memory */
        bool retry;             /* of a message queued already: "accepted" only */
};

static void fields_of(const Session *s, LogFields *f) {
        *f = (LogFields) {
                .user = s->user[0] ? s->user : NULL,
                .peer = s->peer,
                .session = s->id,
        };
}

/* A non-fatal error answer to a request. */
static void reply_error(Session *s, const uint64_t *id, const char *code, const char *message) {
        (void) session_send(s, frame_new_error(id, code, message));
}

/* The database is away (PostgreSQL): nothing was done, and the store says
 * so at once until it is back; the client may try again later. */
static bool store_unavailable(int r) {
        return r == -ENOTCONN || r == -ETIMEDOUT;
}

/* The database away is logged once, by the store, not at every request
 * it refuses. */
#define log_store_error(r, ...)                                                 \
        do {                                                                    \
                if (store_unavailable(r))                                       \
                        log_debug_errno((r), __VA_ARGS__);                      \
                else                                                            \
                        log_error_errno((r), __VA_ARGS__);                      \
        } while (0)

static void reply_store_error(Session *s, const uint64_t *id, int r) {
        if (store_unavailable(r))
                reply_error(s, id, ERR_UNAVAILABLE, "the relay cannot reach its database");
        else
                reply_error(s, id, ERR_INTERNAL, "internal error");
}

/* A store step of a login failed. */
static void close_store_error(Session *s, int r) {
        if (store_unavailable(r))
                session_close(s, ERR_UNAVAILABLE, "the relay cannot reach its database",
                              "unavailable: database away");
        else
                session_close(s, ERR_INTERNAL, "internal error", "store error");
}

/* The peer broke the protocol: say so (answering the request id, when the
 * frame had one), log it, close. */
static void protocol_error_request(Session *s, const uint64_t *id, const char *code, const char *message) {
        char reason[160];
        LogFields f;

        snprintf(reason, sizeof(reason), "%s: %s", code, message);
        fields_of(s, &f);
        f.reason = reason;
        log_event(EVENT_PROTOCOL_ERROR, &f, "Protocol error from %s: %s", s->peer, reason);
        session_close_request(s, id, code, message, reason);
}

static void protocol_error(Session *s, const char *code, const char *message) {
        protocol_error_request(s, NULL, code, message);
}

/* Count a refusal and log it, unless throttle (the address or user
 * refused, NULL for none) was logged lately: see RelayHooks. */
static void relay_limit_hit(Relay *relay, Limit limit, AnvilEntry *throttle, const LogFields *f,
                            const char *format, ...) _printf_(5, 6);

static void relay_limit_hit(Relay *relay, Limit limit, AnvilEntry *throttle, const LogFields *f,
                            const char *format, ...) {
        char message[512];
        va_list ap;

        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);
        relay->hooks->limit_hit(relay->userdata, limit, throttle, f, message);
}

static void limit_hit(Relay *relay, Session *s, Limit limit, const char *detail) {
        LogFields f;

        fields_of(s, &f);
        relay_limit_hit(relay, limit, NULL, &f, "Limit %s reached for %s: %s", limit_name(limit),
                        s->user[0] ? s->user : s->peer, detail);
}

static uint64_t relay_now(Relay *relay) {
        uint64_t now = 0;

        (void) sd_event_now(relay->event, CLOCK_MONOTONIC, &now);
        return now;
}

void relay_session_ready(Relay *relay, Session *s) {
        json_object *hello;
        int r;

        s->binding_len = 0;
        if (transport_is_tls(s->transport)) {
                r = transport_channel_binding(s->transport, s->binding, &s->binding_len);
                if (r < 0) {
                        session_close(s, NULL, NULL, "no TLS channel binding");
                        return;
                }
        }
        r = random_bytes(s->nonce, sizeof(s->nonce));
        if (r < 0) {
                session_close(s, NULL, NULL, "no randomness for the nonce");
                return;
        }
        s->state = SESSION_AUTH;
        /* Suite 2 too: the relay keeps prekeys and routes its envelopes. */
        hello = frame_new_hello(relay->server_key->spki, relay->server_key->spki_len, s->nonce);
        if (frame_hello_add_suite(hello, SUITE2_NAME) < 0) {
                json_object_put(hello);
                session_close(s, NULL, NULL, "out of memory");
                return;
        }
        (void) session_send(s, hello);
}

/* ---- key packages --------------------------------------------------------- */

/* A package goes out whole in one frame, next to at most 1 KiB of other
 * members (welcome, key, rotated, presence: the presence list counts the
 * same way). Its rotations can make it larger than a small max-frame
 * allows: the oldest are dropped until it fits; a peer pinned to a key
 * that old compares fingerprints instead. */
static int package_fit(Relay *relay, KeyPackage *kp) {
        size_t budget = relay->config->max_frame - 1024;       /* max-frame >= 4096 */

        while (kp->n_rotations > 0) {
                _cleanup_(json_object_unrefp) json_object *o = NULL;
                size_t size = 0;
                int r;

                r = key_package_to_json(kp, &o);
                if (r < 0)
                        return r;
                if (!json_plain_text(o, &size))
                        return -ENOMEM;
                if (size <= budget)
                        break;
                rotation_free(kp->rotations[0]);
                memmove(kp->rotations, kp->rotations + 1, --kp->n_rotations * sizeof(Rotation *));
        }
        return 0;
}

/* The user's package as the store has it, fitted for a frame. */
static int package_get(Relay *relay, const char *user, KeyPackage **ret) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        int r;

        r = store_user_get(relay->store, user, &kp);
        if (r < 0)
                return r;
        r = package_fit(relay, kp);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(kp);
        return 0;
}

/* ---- presence ------------------------------------------------------------ */

/* Version 1: the next frame of the online list: the users whose receiving
 * session became active after the last one listed, in that order (the
 * index keeps its receivers so), then, on one of several relays, the
 * users of the other nodes in the order this relay heard of them (see
 * handle_who(); their packages come from the store), as many as fit in
 * max_frame. Every frame but the last carries "more": true (ignored by
 * clients that do not know it).
 * Users who come online meanwhile are listed too, so that none announced
 * by a presence frame is left out of the list; those who come online
 * after the last frame were announced. */
static int send_presence_piece(Relay *relay, Session *s) {
        size_t n_remote = relay->cluster ? cluster_n_remote(relay->cluster) : 0;
        const ClusterUser *u = relay->cluster ? cluster_first(relay->cluster) : NULL;
        size_t max = relay->sessions->n_receiving + n_remote, n = 0, n_fetched = 0, budget, used = 0;
        _cleanup_(freep) KeyPackage **list = NULL, **fetched = NULL;
        uint64_t cursor = s->presence_cursor;
        Session *i;
        int r = -ENOMEM;

        list = calloc(max + 1, sizeof(*list));
        fetched = calloc(MIN(n_remote, (size_t) PRESENCE_REMOTE_MAX) + 1, sizeof(*fetched));
        if (!list || !fetched)
                goto fail;
        for (i = relay->sessions->receivers; i && i->activation <= cursor; i = i->receiver_next)
                ;
        for (; u && u->position <= cursor; u = u->next)
                ;

        budget = s->limits.max_frame > 1024 ? s->limits.max_frame - 1024 : s->limits.max_frame;
        while ((i || u) && n < max) {
                KeyPackage *kp = NULL;
                json_object *o = NULL;
                size_t size = 0;

                if (i)
                        kp = i->package;
                else if (n_fetched == PRESENCE_REMOTE_MAX)
                        break;          /* the next piece goes on */
                else {
                        r = package_get(relay, u->user, &kp);
                        if (r == -ENOENT) {     /* not in this relay's store */
                                cursor = u->position;
                                u = u->next;
                                continue;
                        }
                        if (r < 0)
                                goto fail;
                        fetched[n_fetched++] = kp;
                }
                r = key_package_to_json(kp, &o);
                if (r < 0)
                        goto fail;
                if (!json_plain_text(o, &size))
                        size = s->limits.max_frame;
                size += 1;      /* the comma */
                json_object_put(o);
                if (n > 0 && used + size > budget)
                        break;
                used += size;
                list[n++] = kp;
                if (i) {
                        cursor = i->activation;
                        i = i->receiver_next;
                } else {
                        cursor = u->position;
                        u = u->next;
                }
        }
        s->presence_cursor = cursor;
        s->presence_pending = i || u;
        r = session_send(s, frame_new_presence_list(list, n, i || u));
        for (size_t k = 0; k < n_fetched; k++)
                key_package_free(fetched[k]);
        return r;

fail:
        for (size_t k = 0; fetched && k < n_fetched; k++)
                key_package_free(fetched[k]);
        session_close(s, ERR_INTERNAL, r == -ENOMEM ? "out of memory" : "internal error",
                      r == -ENOMEM ? "out of memory" : "store error");
        return r < 0 ? r : -EIO;
}

/* Send the online list in pieces while the output is below the water
 * mark; session.c calls again (relay_pump) as it drains. A list of
 * thousands of users is never held whole, for a reader or not. */
static void send_presence_list(Relay *relay, Session *s) {
        while (s->presence_pending && s->state == SESSION_ACTIVE &&
               session_output_pending(s) < SESSION_PUMP_WATER)
                if (send_presence_piece(relay, s) < 0)
                        return;
}

/* A user came online or went offline, here or on another node. Version 2
 * sessions hear it if they watch the user: the cost is the user's
 * watchers. Version 1 receiving sessions hear of everyone, with the key
 * package (package: NULL to read it from the store, for a user of another
 * node), as that version says; the walk of all receivers is skipped when
 * none of them is of version 1. A send may close the session it goes to,
 * or others: the walks go on past them (see session-index.h). skip is
 * the user's own session, told nothing. */
static void broadcast_presence_of(Relay *relay, const char *user, const char *fingerprint,
                                  const KeyPackage *package, const Session *skip, bool online) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;

        for (Watch *w = session_index_watchers(relay->sessions, user); w; w = w->user_next) {
                Session *i = w->session;

                if (i == skip || !i->indexed)
                        continue;
                (void) session_send(i, online ? frame_new_presence_user(user, fingerprint)
                                              : frame_new_presence_offline(user));
        }

        if (relay->sessions->n_receiving_v1 == 0)
                return;
        if (online && !package) {
                if (package_get(relay, user, &kp) < 0)
                        return;         /* not registered as far as this store knows */
                package = kp;
        }
        for (Session *i = relay->sessions->receivers; i; i = i->receiver_next) {
                if (i == skip || !i->indexed || i->proto >= 2)
                        continue;
                (void) session_send(i, online ? frame_new_presence_online(package)
                                              : frame_new_presence_offline(user));
        }
}

static void broadcast_presence(Relay *relay, Session *about, bool online) {
        broadcast_presence_of(relay, about->user, about->fingerprint, about->package, about, online);
}

void relay_session_closing(Relay *relay, Session *s, bool was_active) {
        if (!was_active)
                return;
        if (s->receive && !s->replaced && !relay->stopping) {
                broadcast_presence(relay, s, false);
                if (relay->cluster)
                        cluster_offline(relay->cluster, s->user);
        }
}

/* ---- the other nodes ------------------------------------------------------ */

void relay_cluster_online(Relay *relay, const ClusterUser *u) {
        if (relay->stopping)
                return;
        /* Receiving here too: the other login came at the same instant,
         * or its "replace" is on its way. The database decides which
         * stays; watchers here hear of it when it is not this one. */
        if (session_index_find_receiver(relay->sessions, u->user)) {
                cluster_check_claim(relay->cluster, u->user);
                return;
        }
        broadcast_presence_of(relay, u->user, u->fingerprint, NULL, NULL, true);
}

void relay_cluster_offline(Relay *relay, const ClusterUser *u) {
        /* Logged in here since: still online. */
        if (relay->stopping || session_index_find_receiver(relay->sessions, u->user))
                return;
        broadcast_presence_of(relay, u->user, NULL, NULL, NULL, false);
}

void relay_cluster_lost(Relay *relay, const char *user) {
        Session *s = session_index_find_receiver(relay->sessions, user);

        if (s && relay->cluster && !relay->stopping)
                cluster_online(relay->cluster, s->user, s->fingerprint);
}

void relay_cluster_replace(Relay *relay, const char *user) {
        Session *s = session_index_find_receiver(relay->sessions, user);
        const ClusterUser *u;

        if (!s)
                return;
        /* As a replacement here: the user stays online, on the other node. */
        s->replaced = true;
        session_close(s, ERR_REPLACED, "another receiving session logged in",
                      "replaced by a newer receiving session on another node");
        /* Its online came first and was held back (relay_cluster_online()):
         * the watchers hear it now, with the key of the new session. */
        u = cluster_find(relay->cluster, user);
        if (u && !relay->stopping)
                broadcast_presence_of(relay, u->user, u->fingerprint, NULL, NULL, true);
}

/* Something new is in s's queue: read it. A page in flight (asynchronous)
 * may have been read before it came: another is read after it. */
static void pump_again(Relay *relay, Session *s) {
        s->caught_up = false;
        if (s->reading)
                s->read_again = true;
        relay_pump(relay, s);
}

/* The queue is shared: what the other node committed is there to read. */
static void repump(Relay *relay, Session *s) {
        if (s->state != SESSION_ACTIVE)
                return;
        pump_again(relay, s);
        if (s->state == SESSION_ACTIVE)
                session_flush(s);
}

void relay_cluster_deliver(Relay *relay, const char *user) {
        Session *s = session_index_find_receiver(relay->sessions, user);

        log_debug("Cluster: another node queued a message for %s%s", user,
                  s ? ": pumping its queue" : ", who no longer receives here");
        if (s)
                repump(relay, s);
}

void relay_cluster_queued(Relay *relay, const char *user, uint64_t last_seq) {
        Session *s = session_index_find_receiver(relay->sessions, user);

        if (!s || !s->caught_up || last_seq <= s->cursor)
                return;
        log_debug("Cluster: the queue of %s holds seq %" PRIu64 " past its cursor %" PRIu64
                  " (a deliver notification was lost): pumping", user, last_seq, s->cursor);
        repump(relay, s);
}

/* ---- handshake --------------------------------------------------------- */

/* An unregistered name whose key an administrator reset registers only
 * with the one-time code of that reset. 1 when the auth carries it, 0 when
 * the name was never reset, <0 when the session was closed. */
static int check_reset_code(Relay *relay, Session *s, const Frame *f) {
        uint8_t hash[STORE_CODE_HASH_LEN], given[STORE_CODE_HASH_LEN];
        uint64_t expires;
        int r;

        r = store_reset_get(relay->store, f->auth.user, hash, &expires);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                log_store_error(r, "Failed to look up the key reset of %s: %s", f->auth.user,
                                store_error(relay->store));
                close_store_error(s, r);
                return -EIO;
        }
        if (!f->auth.code[0]) {
                session_close(s, ERR_CODE_REQUIRED,
                              "this name's key was reset: registering it needs the administrator's one-time code",
                              "code_required: no code for a reset name");
                return -EPERM;
        }
        sha256(f->auth.code, strlen(f->auth.code), given);
        if (!memeq_ct(hash, given, sizeof(hash))) {
                session_close(s, ERR_CODE_REQUIRED, "wrong code", "code_required: wrong code");
                return -EPERM;
        }
        if (now_unix() > expires) {
                session_close(s, ERR_CODE_REQUIRED, "the code expired; ask the administrator for a new one",
                              "code_required: expired code");
                return -EPERM;
        }
        return 1;
}

/* Each registration is a signature, a synchronous write and a name taken
 * for good, each key rotation a signature and a synchronous write: a rate
 * per address for both. 0, or the usec until the next one is allowed. */
static uint64_t registration_wait(Relay *relay, Session *s) {
        if (!s->address_entry)
                return 0;
        return anvil_take(s->address_entry, ANVIL_BUCKET_REGISTER,
                          config_rate_interval(&relay->config->registration_rate),
                          relay->config->registration_burst, relay_now(relay));
}

int relay_welcome_key_renew(Relay *relay, uint64_t now) {
        _cleanup_(ed25519_key_freep) Ed25519Key *secret = NULL;
        _cleanup_(welcome_key_freep) WelcomeKey *wk = NULL;
        char when[FORMAT_UTC_MAX];
        int r;

        if (relay->welcome_key && relay->welcome_key->not_after >= now &&
            relay->welcome_key->not_after - now >= WELCOME_KEY_LIFETIME / 2)
                return 0;

        r = ed25519_key_generate(&secret);
        if (r < 0)
                return log_error_errno(r, "Failed to make a welcome key: %m");
        r = welcome_key_sign(relay->server_key, secret->pub, now + WELCOME_KEY_LIFETIME, &wk);
        if (r < 0)
                return log_error_errno(r, "Failed to sign the welcome key: %m");

        relay_welcome_key_free(relay);
        relay->welcome_secret = TAKE_PTR(secret);
        relay->welcome_key = TAKE_PTR(wk);
        log_info("Made a new welcome key for protocol version 3 logins, certified until %s",
                 format_utc(relay->welcome_key->not_after, when));
        return 0;
}

void relay_welcome_key_free(Relay *relay) {
        relay->welcome_secret = ed25519_key_free(relay->welcome_secret);
        relay->welcome_key = welcome_key_free(relay->welcome_key);
}

/* The welcome's signature over p: version 3 signs T_server3 with the
 * welcome key (no RSA operation, but for a renewal every 3.5 days),
 * versions 1 and 2 T_server with the identity key. */
static int sign_welcome(Relay *relay, unsigned proto, const HandshakeParams *p, uint8_t **ret_sig,
                        size_t *ret_sig_len) {
        _cleanup_(freep) uint8_t *sig = NULL;
        int r;

        if (proto < PROTOCOL_VERSION_WELCOME_KEY)
                return handshake_sign(HANDSHAKE_SERVER, p, relay->server_key, ret_sig, ret_sig_len);

        r = relay_welcome_key_renew(relay, now_unix());
        if (r < 0)
                return r;
        sig = malloc(ED25519_SIG_LEN);
        if (!sig)
                return -ENOMEM;
        r = handshake_sign_ed25519(HANDSHAKE_SERVER3, p, relay->welcome_secret, sig);
        if (r < 0)
                return r;
        *ret_sig = TAKE_PTR(sig);
        *ret_sig_len = ED25519_SIG_LEN;
        return 0;
}

static void handle_auth(Relay *relay, Session *s, const Frame *f) {
        const char *user = f->auth.user;
        _cleanup_(rsa_key_freep) RsaKey *key = NULL;
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        _cleanup_(freep) uint8_t *sig = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX];
        Session *old = NULL;
        json_object *welcome;
        size_t sig_len;
        uint64_t opks;
        LogFields lf;
        bool registered = false, reset = false, announce;
        /* The lower of the two versions; absent is 1. */
        unsigned proto = MIN(MAX(f->auth.proto, 1u), (unsigned) PROTOCOL_VERSION_MAX);
        int r;

        HandshakeParams p = {
                .server_nonce = s->nonce, .server_nonce_len = sizeof(s->nonce),
                .client_nonce = f->auth.nonce, .client_nonce_len = sizeof(f->auth.nonce),
                .user = user,
                .client_key = f->auth.key, .client_key_len = f->auth.key_len,
                .server_key = relay->server_key->spki, .server_key_len = relay->server_key->spki_len,
                .binding = s->binding, .binding_len = s->binding_len,
        };

        /* From here on the name is a valid user name (the codec checked). */
        snprintf(s->user, sizeof(s->user), "%s", user);
        rsa_fingerprint_spki(f->auth.key, f->auth.key_len, fingerprint);
        fields_of(s, &lf);
        lf.fingerprint = fingerprint;

        r = rsa_key_from_spki(f->auth.key, f->auth.key_len, &key);
        if (r == -EKEYREJECTED) {
                session_close(s, ERR_AUTH_FAILED, "RSA keys must have 2048, 3072 or 4096 bits",
                              "auth_failed: key size not 2048, 3072 or 4096 bits");
                return;
        }
        if (r < 0) {
                session_close(s, ERR_AUTH_FAILED, "unusable public key",
                              "auth_failed: unusable public key");
                return;
        }
        r = handshake_verify(HANDSHAKE_CLIENT, &p, key, f->auth.sig, f->auth.sig_len);
        if (r < 0) {
                session_close(s, ERR_AUTH_FAILED, "signature does not verify",
                              "auth_failed: signature does not verify");
                return;
        }

        r = package_get(relay, user, &kp);
        if (r >= 0) {
                if (kp->key_len != f->auth.key_len || memcmp(kp->key, f->auth.key, kp->key_len) != 0) {
                        char registered_fp[RSA_FINGERPRINT_MAX], reason[160];

                        rsa_fingerprint_spki(kp->key, kp->key_len, registered_fp);
                        snprintf(reason, sizeof(reason), "key_mismatch: registered key is %s",
                                 registered_fp);
                        lf.reason = reason;
                        log_event(EVENT_KEY_MISMATCH, &lf,
                                  "Possible impersonation: %s from %s presented key %s, registered is %s",
                                  user, s->peer, fingerprint, registered_fp);
                        session_close(s, ERR_KEY_MISMATCH,
                                      "this user is registered with another key", reason);
                        return;
                }
                registered = true;
        } else if (r == -ENOENT) {
                r = check_reset_code(relay, s, f);
                if (r < 0)
                        return;
                reset = r > 0;
                if (!reset && !relay->config->registration_open) {
                        session_close(s, ERR_REGISTRATION_CLOSED, "registration is closed",
                                      "registration_closed: unknown user");
                        return;
                }
        } else {
                log_store_error(r, "Failed to look up user %s: %s", user, store_error(relay->store));
                close_store_error(s, r);
                return;
        }

        /* Limits, before anything is registered. A receiving login that
         * replaces the user's old receiving session does not add one. */
        if (f->auth.receive)
                old = session_index_find_receiver(relay->sessions, user);
        if (relay->sessions->n_active - (old ? 1 : 0) >= relay->config->max_sessions) {
                limit_hit(relay, s, LIMIT_MAX_SESSIONS, "too many sessions");
                session_close(s, ERR_SERVER_BUSY, "too many sessions", "server_busy: max-sessions");
                return;
        }
        if (relay->sessions->memory > relay->config->max_memory) {
                limit_hit(relay, s, LIMIT_MAX_MEMORY, "the relay holds max-memory for its sessions");
                session_close(s, ERR_SERVER_BUSY, "server is out of memory for sessions",
                              "server_busy: max-memory");
                return;
        }
        if (session_index_count(relay->sessions, user) - (old ? 1 : 0) >=
            relay->config->max_sessions_per_user) {
                limit_hit(relay, s, LIMIT_MAX_SESSIONS_PER_USER, "too many sessions of this user");
                session_close(s, ERR_SERVER_BUSY, "too many sessions for this user",
                              "server_busy: max-sessions-per-user");
                return;
        }

        if (!registered) {
                uint64_t wait = registration_wait(relay, s);

                if (wait > 0) {
                        uint64_t retry = anvil_retry_after_sec(wait);

                        relay_limit_hit(relay, LIMIT_REGISTRATION_RATE, s->address_entry, &lf,
                                        "Not registering %s from %s: registrations from "
                                        "this address over registration-rate", user, s->peer);
                        session_close_with(s, frame_new_rate_limited(NULL, "too many registrations from "
                                                                     "this address", retry),
                                           "rate_limited: registration-rate");
                        return;
                }
        }

        if (!registered) {
                /* A full disk is for deleting; the users registered
                 * already can still log in. */
                r = relay->hooks->disk_check(relay->userdata, f->auth.key_len + 4096);
                if (r >= 0)
                        r = key_package_sign(relay->server_key, user, f->auth.key, f->auth.key_len,
                                             now_unix(), &kp);
                /* A registration is on disk before its welcome, like a
                 * message before its accepted: the batch goes first. */
                if (r >= 0)
                        relay_commit(relay);
                if (r >= 0)
                        r = store_user_add(relay->store, kp);
                if (r == -ENOSPC) {
                        limit_hit(relay, s, LIMIT_MIN_FREE_DISK, "no room to register a user");
                        session_close(s, ERR_STORAGE_FULL, "the relay is out of disk space",
                                      "storage_full: min-free-disk");
                        return;
                }
                if (r < 0) {
                        log_store_error(r, "Failed to register user %s: %s", user,
                                        r == -ENOMEM ? "out of memory" : store_error(relay->store));
                        if (store_unavailable(r))
                                close_store_error(s, r);
                        else
                                session_close(s, ERR_INTERNAL, "internal error", "registration failed");
                        return;
                }
                log_event(EVENT_USER_REGISTERED, &lf, "Registered new user %s with key %s%s", user,
                          fingerprint, reset ? " (with the one-time code of a key reset)" : "");
                /* The code is spent. Should this fail, the name stays
                 * registered and the code can do nothing more. */
                if (reset && store_reset_delete(relay->store, user) < 0)
                        log_error("Failed to delete the spent reset code of %s: %s", user,
                                  store_error(relay->store));
        }

        /* So that the client knows at once whether to top up. */
        r = store_prekeys_count(relay->store, user, &opks);
        if (r < 0) {
                log_store_error(r, "Failed to count the prekeys of %s: %s", user, store_error(relay->store));
                close_store_error(s, r);
                return;
        }

        r = sign_welcome(relay, proto, &p, &sig, &sig_len);
        if (r < 0) {
                log_error_errno(r, "Failed to sign the handshake: %m");
                session_close(s, ERR_INTERNAL, "internal error", "signing failed");
                return;
        }

        if (old) {
                /* The newer receiving session wins; the user stays online. */
                old->replaced = true;
                session_close(old, ERR_REPLACED, "another receiving session logged in",
                              "replaced by a newer receiving session");
        }

        FrameLimits limits = {
                .max_frame = s->limits.max_frame,
                .max_text = s->limits.max_text,
                .queue_ttl = s->limits.queue_ttl_usec / 1000000,
                .idle_timeout = MAX(s->limits.idle_timeout_usec / 1000000, (uint64_t) 1),
                .max_opks = s->limits.max_prekeys,
        };
        welcome = frame_new_welcome(sig, sig_len, kp, s->id, &limits);
        if (frame_welcome_add_opks(welcome, opks) < 0 ||
            (proto >= PROTOCOL_VERSION_WELCOME_KEY &&
             frame_welcome_add_welcome_key(welcome, relay->welcome_key) < 0)) {
                json_object_put(welcome);
                welcome = NULL;
        }
        if (session_send(s, welcome) < 0)
                return;

        s->package = TAKE_PTR(kp);
        s->receive = f->auth.receive;
        s->proto = proto;
        memcpy(s->fingerprint, fingerprint, sizeof(s->fingerprint));
        r = session_index_activate(relay->sessions, s);
        if (r < 0) {
                session_close(s, ERR_INTERNAL, "out of memory", "out of memory");
                return;
        }
        s->state = SESSION_ACTIVE;
        /* Version 2 asks for what it wants to know (watch, who). */
        s->presence_pending = s->proto < 2;
        s->presence_cursor = 0;
        session_authenticated(s);
        session_touch(s);
        log_event(EVENT_HANDSHAKE_OK, &lf, "User %s logged in from %s (%s session %s, protocol %u)", user,
                  s->peer, s->receive ? "receiving" : "sending", s->id, s->proto);

        send_presence_list(relay, s);
        if (!s->receive || s->state != SESSION_ACTIVE)
                return;
        announce = !old;
        if (relay->cluster) {
                const ClusterUser *u = cluster_find(relay->cluster, user);

                /* Online on another node with this key: for the watchers
                 * here, nothing changed (as a replacement on one node). */
                if (u && strcmp(u->fingerprint, s->fingerprint) == 0)
                        announce = false;
                cluster_online(relay->cluster, user, s->fingerprint);
        }
        if (announce)
                broadcast_presence(relay, s, true);

        r = store_queue_last_seq(relay->store, user, &s->sync_target);
        if (r < 0) {
                log_store_error(r, "Failed to read the queue of %s: %s", user, store_error(relay->store));
                close_store_error(s, r);
                return;
        }
        s->cursor = 0;
        s->caught_up = false;
        relay_pump(relay, s);
}

/* ---- delivery ------------------------------------------------------------ */

static void message_fields(const StoreMessage *msg, LogFields *f) {
        *f = (LogFields) {
                .user = msg->sender,
                .recipient = msg->recipient,
                .msg_id = msg->msg_id,
                .has_size = true, .size = msg->size,
                .has_seq = true, .seq = msg->seq,
        };
}

static void maybe_synced(Session *s) {
        if (s->synced || !(s->caught_up || s->cursor >= s->sync_target))
                return;
        s->synced = true;
        (void) session_send(s, frame_new_synced());
}

/* Send s one queued message, m->envelope's text of len bytes as the relay
 * stored it; its cursor moves past it whatever happens. 0, or <0 when s
 * can take nothing more. */
static int deliver(Relay *relay, Session *s, const StoreMessage *m, size_t len) {
        _cleanup_(freep) uint8_t *wire = NULL;
        size_t wire_len;
        LogFields f;
        int r;

        message_fields(m, &f);
        f.session = s->id;
        s->cursor = m->seq;
        /* Spliced, not parsed and serialized again: the text is what
         * handle_send() stored, json-c's serialization of an envelope that
         * envelope_from_json() accepted (envelope_text()). A queue edited
         * by hand goes out as it is: recipients check every frame and
         * envelope they are sent, as from any relay. */
        r = frame_deliver_to_wire(m->seq, m->envelope, len, s->limits.max_frame, &wire, &wire_len);
        if (r >= 0)
                r = session_send_wire(s, wire, wire_len);
        if (r == -EMSGSIZE) {
                /* Stored under a larger max-frame than this session's; it
                 * stays until it expires. */
                relay_limit_hit(relay, LIMIT_MAX_FRAME, NULL, &f,
                                "Message %s to %s does not fit this session's max-frame", m->msg_id, s->user);
                return 0;
        }
        if (r < 0)
                return r;
        log_event(EVENT_MESSAGE_FORWARDED, &f, "Message %s from %s sent to %s (seq %" PRIu64 ")",
                  m->msg_id, m->sender, s->user, m->seq);
        return 0;
}

bool relay_has_more(const Session *s) {
        /* A page in flight: its answer pumps on, not the output draining. */
        return s->state == SESSION_ACTIVE &&
               (s->presence_pending || (s->receive && !s->caught_up && !s->reading));
}

/* A page of the queue read for a session without waiting (asynchronous
 * store). */
typedef struct RelayRead {
        Relay *relay;
        Session *session;       /* NULL: freed meanwhile */
} RelayRead;

/* Deliver what a page brought, as far as s takes it; true when the page
 * was the last (s is caught up). */
static bool deliver_page(Relay *relay, Session *s, StoreMessage *page, size_t n) {
        size_t i;

        /* One envelope at a time while below the water mark: a backlog
         * of envelopes of max-frame each goes out as the client reads
         * it, never all at once. */
        for (i = 0; i < n && s->state == SESSION_ACTIVE && session_output_pending(s) < SESSION_PUMP_WATER; i++)
                if (deliver(relay, s, &page[i], strlen(page[i].envelope)) < 0)
                        break;
        return i == n && n < PUMP_BATCH;
}

static void pump_failed(Relay *relay, Session *s, int r) {
        if (store_unavailable(r))
                return;         /* not caught up: pumped again when the database is back */
        log_error_errno(r, "Failed to read the queue of %s: %s", s->user, store_error(relay->store));
        close_store_error(s, r);
}

static void pump_read(Relay *relay, Session *s);

static void pump_answered(void *userdata, int r, StoreMessage *page, size_t n) {
        RelayRead *rd = userdata;
        Relay *relay = rd->relay;
        Session *s = rd->session;
        bool last;

        free(rd);
        if (!s) {
                store_messages_free(page, n);
                return;
        }
        s->reading = NULL;
        if (r < 0) {
                pump_failed(relay, s, r);
                return;
        }
        last = deliver_page(relay, s, page, n);
        store_messages_free(page, n);
        /* A message committed while the page was read may not be in it. */
        if (last && !s->read_again)
                s->caught_up = true;
        s->read_again = false;
        if (s->state != SESSION_ACTIVE)
                return;
        pump_read(relay, s);
        if (s->state == SESSION_ACTIVE)
                session_flush(s);
}

/* relay_pump()'s reads with an asynchronous store: one page at a time,
 * the session pumped on from its answer; other sessions are served
 * meanwhile. */
static void pump_read(Relay *relay, Session *s) {
        RelayRead *rd;
        int r;

        /* The answer pumps on. Only something new in the store asks for
         * another read (pump_again()): a pump asked for as the output
         * drains must not, or a session would read forever. */
        if (s->reading)
                return;
        /* Shutting down: a page sent now would be answered after the
         * sessions are gone. */
        if (relay->stopping)
                return;
        if (!s->caught_up && session_output_pending(s) < SESSION_PUMP_WATER) {
                rd = malloc(sizeof(*rd));
                if (!rd) {
                        session_close(s, ERR_INTERNAL, "out of memory", "out of memory");
                        return;
                }
                *rd = (RelayRead) { .relay = relay, .session = s };
                r = store_queue_list_async(relay->store, s->user, s->cursor, PUMP_BATCH, pump_answered, rd);
                if (r < 0) {
                        free(rd);
                        pump_failed(relay, s, r);
                        return;
                }
                s->reading = rd;
                s->read_again = false;
                return;
        }
        maybe_synced(s);
}

void relay_pump(Relay *relay, Session *s) {
        if (s->state != SESSION_ACTIVE)
                return;
        /* The online list first: deliveries come from users it names. */
        send_presence_list(relay, s);
        if (s->presence_pending || !s->receive)
                return;
        /* What the store hands out must be on disk: what the open batch
         * wrote is not, yet. Nor may it hand out again what an ack the
         * batch holds deletes (another session of the user, logging in,
         * reads from the start); and the output of the session that
         * acked waits for that commit: made first (without a sync), the
         * page read now goes out at once, not at the end of the turn. */
        if (!s->caught_up && (store_in_transaction(relay->store) || relay->batch.n_takes > 0))
                relay_commit(relay);
        if (store_batch_async(relay->store)) {
                pump_read(relay, s);
                return;
        }

        while (!s->caught_up && session_output_pending(s) < SESSION_PUMP_WATER &&
               s->state == SESSION_ACTIVE) {
                StoreMessage *batch = NULL;
                size_t n = 0;
                int r;

                r = store_queue_list(relay->store, s->user, s->cursor, PUMP_BATCH, &batch, &n);
                if (r < 0) {
                        pump_failed(relay, s, r);
                        return;
                }
                if (deliver_page(relay, s, batch, n))
                        s->caught_up = true;
                store_messages_free(batch, n);
        }
        if (s->state == SESSION_ACTIVE)
                maybe_synced(s);
}

/* A message for s's user was committed: straight from memory when s
 * has nothing older to receive first and room for it; else the backlog
 * goes first, from the store, in order. */
static void forward(Relay *relay, Session *s, const StoreMessage *m) {
        if (s->state != SESSION_ACTIVE || m->seq <= s->cursor)
                return;         /* gone, or a pump already read it from the store */
        if (s->caught_up && !s->presence_pending && session_output_pending(s) < SESSION_PUMP_WATER) {
                (void) deliver(relay, s, m, m->size);
                return;
        }
        pump_again(relay, s);
}

/* ---- the queue's counts ------------------------------------------------ */

static void queue_added(Relay *relay, uint64_t size) {
        relay->n_queued++;
        relay->queue_bytes += size;
}

static void queue_removed(Relay *relay, uint64_t size) {
        relay->n_queued -= MIN(relay->n_queued, (uint64_t) 1);
        relay->queue_bytes -= MIN(relay->queue_bytes, size);
}

int relay_queue_recount(Relay *relay) {
        /* Written only on success: a failure keeps the counts there were. */
        return store_queue_totals(relay->store, &relay->n_queued, &relay->queue_bytes);
}

void relay_queue_expired(Relay *relay, uint64_t size) {
        queue_removed(relay, size);
}

int relay_queue_check(Relay *relay, uint64_t size, Limit *ret_limit) {
        if (relay->queue_bytes + size > relay->config->queue_max_bytes) {
                *ret_limit = LIMIT_QUEUE_MAX_BYTES;
                return -ENOSPC;
        }
        if (relay->hooks->disk_check(relay->userdata, size) < 0) {
                /* The WAL may hold megabytes that the deletes since its
                 * last checkpoint no longer need: give them back (after
                 * the batch: a checkpoint waits for no transaction) and
                 * look again. */
                relay_commit(relay);
                if (store_checkpoint(relay->store) < 0 ||
                    relay->hooks->disk_check(relay->userdata, size) < 0) {
                        *ret_limit = LIMIT_MIN_FREE_DISK;
                        return -ENOSPC;
                }
        }
        return 0;
}

/* ---- requests ------------------------------------------------------------ */

/* A token of the user's message rate, for a request that makes the relay
 * store or give away something (send, publish, a lookup that hands out an
 * OPK). First, before any database work: a flood is refused for the price
 * of a token bucket. When none is left the request (what, for the log) is
 * answered rate_limited with when to try again, the session stays, and
 * false is returned. */
static bool rate_take(Relay *relay, Session *s, const uint64_t *id, const char *what,
                      const char *message) {
        uint64_t wait, retry;
        LogFields lf;

        if (!s->user_entry)
                return true;
        wait = anvil_take(s->user_entry, ANVIL_BUCKET_MESSAGE, config_rate_interval(&relay->config->message_rate),
                          relay->config->message_burst, relay_now(relay));
        if (wait == 0)
                return true;

        retry = anvil_retry_after_sec(wait);
        fields_of(s, &lf);
        relay_limit_hit(relay, LIMIT_MESSAGE_RATE, s->user_entry, &lf,
                        "%s from %s refused: over message-rate, retry after %" PRIu64 " s", what, s->user,
                        retry);
        (void) session_send(s, frame_new_rate_limited(id, message, retry));
        /* Until the next token, more requests would only be refused: do
         * not even read them. */
        session_throttle(s, wait);
        return false;
}

static void handle_lookup(Relay *relay, Session *s, const Frame *f) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        const char *user = f->lookup.user;
        /* One's own OPKs are for others: a user looking at its own bundle
         * gets the SPK alone. */
        bool take_opk = f->lookup.prekeys && strcmp(user, s->user) != 0;
        PrekeyBundle bundle;
        int r;

        if (take_opk && !rate_take(relay, s, &f->lookup.id, "Prekey lookup", "too many prekey lookups"))
                return;

        r = package_get(relay, user, &kp);
        if (r == -ENOENT) {
                reply_error(s, &f->lookup.id, ERR_NO_SUCH_USER, "no such user");
                return;
        }
        if (r < 0)
                goto internal;
        o = frame_new_key(f->lookup.id, kp);
        if (f->lookup.prekeys) {
                /* Deleted before the answer is out: should it never reach
                 * the peer, an OPK is lost, never given twice. In a
                 * transaction of its own: the batch of sends goes first. */
                relay_commit(relay);
                r = store_prekeys_take(relay->store, user, take_opk, &bundle);
                if (r >= 0) {
                        if (bundle.has_opk)
                                log_debug("Session %s: handed out one-time prekey %" PRIu32 " of %s",
                                          s->id, bundle.opk.id, user);
                        r = frame_key_add_bundle(o, &bundle);
                } else if (r == -ENOENT)
                        r = 0;          /* never published: suite 1 */
                if (r < 0)
                        goto internal;
        }
        (void) session_send(s, TAKE_PTR(o));
        return;

internal:
        log_store_error(r, "Failed to look up user %s: %s", user, store_error(relay->store));
        reply_store_error(s, &f->lookup.id, r);
}

/* Bytes a publication may take in the database, at most: the SPK and the
 * OPKs with their rows' overhead. */
static uint64_t publish_size(const Frame *f) {
        return SUITE2_RSA_MAX + 256 + f->publish.n_opks * (X25519_KEY_LEN + 64);
}

static void handle_publish(Relay *relay, Session *s, const Frame *f) {
        _cleanup_(rsa_key_freep) RsaKey *key = NULL;
        const uint64_t *id = &f->publish.id;
        uint64_t count = 0;
        LogFields lf;
        int r;

        if (!rate_take(relay, s, id, "Prekey publication", "too many prekey publications"))
                return;

        /* The relay hands out only SPKs their owner signed: a client
         * refuses any other, and so does the relay, before storing. */
        r = rsa_key_from_spki(s->package->key, s->package->key_len, &key);
        if (r < 0)
                goto internal;
        if (signed_prekey_verify(s->user, key, &f->publish.spk) < 0) {
                reply_error(s, id, ERR_BAD_REQUEST, "the signed prekey does not verify under your key");
                return;
        }

        r = relay->hooks->disk_check(relay->userdata, publish_size(f));
        if (r >= 0)
                relay_commit(relay);    /* its own transaction, after the batch */
        if (r >= 0)
                r = store_prekeys_publish(relay->store, s->user, &f->publish.spk, f->publish.opks,
                                          f->publish.n_opks, s->limits.max_prekeys, &count);
        if (r == -E2BIG) {
                fields_of(s, &lf);
                relay_limit_hit(relay, LIMIT_MAX_PREKEYS, s->user_entry, &lf,
                                "Prekeys of %s refused: %zu more one-time prekeys would be over "
                                "max-prekeys (%" PRIu64 ")", s->user, f->publish.n_opks,
                                s->limits.max_prekeys);
                reply_error(s, id, ERR_TOO_LARGE, "more one-time prekeys than the relay keeps (max_opks)");
                return;
        }
        if (r == -ENOTUNIQ) {
                reply_error(s, id, ERR_BAD_REQUEST, "a one-time prekey id is given twice or held already");
                return;
        }
        if (r == -ENOSPC) {
                fields_of(s, &lf);
                relay_limit_hit(relay, LIMIT_MIN_FREE_DISK, NULL, &lf,
                                "Prekeys of %s refused: the state directory's file system is under "
                                "min-free-disk", s->user);
                reply_error(s, id, ERR_STORAGE_FULL, "the relay is out of disk space");
                return;
        }
        if (r < 0)
                goto internal;

        log_debug("Session %s: %s published a signed prekey and %zu one-time prekeys, holds %" PRIu64,
                  s->id, s->user, f->publish.n_opks, count);
        (void) session_send(s, frame_new_published(*id, count));
        return;

internal:
        log_store_error(r, "Failed to store the prekeys of %s: %s", s->user, store_error(relay->store));
        reply_store_error(s, id, r);
}

static void storage_full(Relay *relay, Session *s, const uint64_t *id, Limit limit, LogFields *lf,
                         const char *msg_id) {
        relay_limit_hit(relay, limit, NULL, lf, "Message %s from %s refused: %s", msg_id, s->user,
                        limit == LIMIT_QUEUE_MAX_BYTES
                                ? "the queue holds queue-max-bytes"
                                : "the state directory's file system is under min-free-disk");
        reply_error(s, id, ERR_STORAGE_FULL,
                    limit == LIMIT_QUEUE_MAX_BYTES ? "the relay's queue is full"
                                                   : "the relay is out of disk space");
}

/* An envelope as stored: json-c's serialization of what the client sent
 * (json_plain_text(): the same members, the same values), which is the
 * bytes it sent as they are when it wrote them that way, as clients do;
 * serializing cost more than anything else the relay does with a send.
 * The text must not depend on which way it was found: the store tells a
 * retry from another envelope under the same id by comparing texts. A
 * copy of its own (NUL-terminated, for the store), since the frame's
 * buffer and object are freed before the batch stores and forwards it;
 * NULL on ENOMEM. */
static char *envelope_text(const Frame *f, const uint8_t *payload, size_t len, size_t *ret_len) {
        const char *text;
        char *copy;

        if (!json_member_plain((const char *) payload, len, "envelope", &text, ret_len)) {
                text = json_plain_text(f->send.raw, ret_len);
                if (!text)
                        return NULL;
        }
        copy = malloc(*ret_len + 1);
        if (!copy)
                return NULL;
        memcpy(copy, text, *ret_len);
        copy[*ret_len] = 0;
        return copy;
}

/* What a send whose write failed with r is told, also when the write was
 * its batch's commit. */
static void send_failed(Relay *relay, Session *s, uint64_t id, const StoreMessage *msg, int r) {
        LogFields lf = {
                .user = msg->sender, .recipient = msg->recipient, .peer = s->peer, .session = s->id,
                .msg_id = msg->msg_id,
        };

        if (r == -ENOSPC)
                /* The file system filled up under min-free-disk (something
                 * else wrote to it); the reserve is for deleting. */
                storage_full(relay, s, &id, LIMIT_MIN_FREE_DISK, &lf, msg->msg_id);
        else if (store_unavailable(r))
                reply_error(s, &id, ERR_UNAVAILABLE, "the relay cannot reach its database");
        else
                reply_error(s, &id, ERR_INTERNAL, "could not store the message");
}

/* ---- the group commit ---------------------------------------------------- */

/* Sends and acks of one loop iteration write in one transaction, opened
 * by the first send and committed by relay_commit() once every session
 * had its turn: one sync for all, where each had its own. Nothing is
 * answered "accepted" before its commit returned; receipts need not wait
 * (a lost delete only delivers a message again, which clients drop).
 * Reads that hand out queued messages commit first (relay_pump()).
 *
 * So a turn of acks alone need not wait for the disk either, which stalls
 * every session: an ack before the turn's first send is only recorded in
 * the batch (as with an asynchronous store). A send then deletes them in its
 * transaction before its own write (batch_open()); with none,
 * relay_commit() deletes them in one that commits without a sync
 * (store_begin_nosync(): SQLite must be told before BEGIN). In WAL mode
 * that commit is appended to the WAL, made durable by the next commit's
 * sync (of the whole WAL) or the next checkpoint: a crash before that
 * may forget the deletes, which delivers the messages again, never a
 * message accepted, and no later commit survives without them.
 *
 * With an asynchronous store (store_batch_async(): PostgreSQL, and SQLite
 * given the event loop) nothing of this waits on the loop: the batch is
 * collected in memory and relay_commit() sends it whole, in one
 * transaction (store_batch_send(): pipelined to PostgreSQL, run on
 * SQLite's writer thread), with the checks a send made one by one (is
 * the recipient registered, is its queue full) decided by the store as
 * it inserts. The answers come on the event loop (batch_answered()),
 * after the commit is durable. Meanwhile the next batch fills, from the
 * sessions of the batch in flight too: their sends and acks go in it,
 * answered after the first. Any other frame of a session owed answers
 * waits, set aside, until they are all out (relay_frame()), so that its
 * answers go out in the order it asked.
 *
 * SQLite's writer can start that next batch the moment the one in
 * flight committed, instead of idling until the loop has its turn to
 * send it: after each turn the batch filling is queued behind the flight
 * (store_batch_queue()), and taken back before anything is added to it
 * (batch_reopen()). Taken back late, it has started: it flies next, and
 * a new one fills. */

static bool batch_async(Relay *relay) {
        return store_batch_async(relay->store);
}

/* Delete the acks recorded in the batch (synchronous store) in the
 * transaction just begun: none of them was deleted before, as none is
 * while one is open. Each one's result is answered with the commit, as
 * with an asynchronous store. */
static int batch_takes(Relay *relay) {
        RelayBatch *b = &relay->batch;

        for (size_t i = 0; i < b->n_pending; i++) {
                StoreWrite *w = &b->pending[i].w;
                int r;

                if (w->type != STORE_WRITE_TAKE)
                        continue;
                r = store_queue_take(relay->store, w->msg.recipient, w->msg.seq, &w->msg);
                if (r < 0 && r != -ENOENT)
                        return r;
                w->result = r;
        }
        return 0;
}

/* Begin the batch's transaction, which deletes first what acks the batch
 * recorded; on failure, none of them is. */
static int batch_open(Relay *relay, bool nosync) {
        int r = nosync ? store_begin_nosync(relay->store) : store_begin(relay->store);

        if (r >= 0 && relay->batch.n_takes > 0)
                r = batch_takes(relay);
        if (r < 0) {
                store_rollback(relay->store);
                return r;
        }
        relay->batch.n_takes = 0;
        return 0;
}

/* A full disk while the acks recorded are deleted: deleting may make
 * room, so the manager releases its reserve and all is tried again, once
 * (nothing else was written). */
static int batch_begin(Relay *relay) {
        int r;

        if (store_in_transaction(relay->store))
                return 0;
        r = batch_open(relay, false);
        if (r == -ENOSPC && relay->hooks->store_full(relay->userdata) > 0)
                r = batch_open(relay, false);
        return r;
}

static void batch_finish(Relay *relay, int r);

/* The number of relay->batch, which Session.held_by names. */
static uint64_t batch_number(const Relay *relay) {
        return relay->n_batches + 1;
}

/* relay->batch, now b, goes to its commit (its number is never 0); the
 * next one fills. */
static void batch_taken(Relay *relay, RelayBatch *b) {
        b->number = batch_number(relay);
        relay->n_batches++;
}

/* s wrote to the batch: what it is sent from now on waits for the commit
 * (its accepted, and the pong of a ping after an ack, in order). A
 * session whose batch is in flight (asynchronous) may be held by the next
 * one too. */
static void batch_hold(Relay *relay, Session *s) {
        RelayBatch *b = &relay->batch;

        if (s->held_by == batch_number(relay))
                return;         /* held by this batch already */
        if (b->n_held == b->n_held_allocated) {
                size_t n = MAX(b->n_held_allocated * 2, (size_t) 64);
                Session **h = reallocarray(b->held, n, sizeof(*h));

                if (!h) {
                        session_close(s, ERR_INTERNAL, "out of memory", "out of memory");
                        return;
                }
                b->held = h;
                b->n_held_allocated = n;
        }
        stream_cork(s->stream, true);
        s->held_by = batch_number(relay);
        b->held[b->n_held++] = s;
}

/* A write of the batch failed with r. If SQLite ended the transaction for
 * it (a full disk, an I/O error), what the batch wrote before is gone too:
 * answered now, with the same error. */
static void batch_failed(Relay *relay, int r) {
        if (!store_in_transaction(relay->store))
                batch_finish(relay, r);
}

/* relay->batch was queued behind the flight: take it back to change it.
 * Started meanwhile, it is relay->next, and a new batch fills. */
static void batch_reopen(Relay *relay) {
        if (!relay->queued)
                return;
        relay->queued = false;
        if (store_batch_unqueue(relay->store) != -EBUSY)
                return;
        relay->next = relay->batch;
        relay->batch = (RelayBatch) {};
        batch_taken(relay, &relay->next);
}

/* Room for one more request of s in the batch, NULL (s closed) when
 * there is none. */
static RelayPending *batch_push(Relay *relay, Session *s) {
        RelayBatch *b = &relay->batch;

        batch_reopen(relay);

        if (b->n_pending == b->n_pending_allocated) {
                size_t n = MAX(b->n_pending_allocated * 2, (size_t) 64);
                RelayPending *p = reallocarray(b->pending, n, sizeof(*p));

                if (!p) {
                        session_close(s, ERR_INTERNAL, "out of memory", "out of memory");
                        return NULL;
                }
                b->pending = p;
                b->n_pending_allocated = n;
        }
        b->pending[b->n_pending] = (RelayPending) { .session = s };
        s->n_requests++;
        return &b->pending[b->n_pending++];
}

/* s put a request in the batch, which holds RELAY_BATCH_MAX at most:
 * full, it commits now (synchronous store), or, with one in flight, what
 * s says next waits for its answers. */
static void batch_bound(Relay *relay, Session *s) {
        if (relay->batch.n_pending < RELAY_BATCH_MAX)
                return;
        if (!batch_async(relay))
                relay_commit(relay);
        else if (relay->flying)
                session_wait(s, true);
}

/* Answer the send id of s after the commit. A message the batch cannot
 * hold is still stored: without its accepted, the client sends it again
 * and hears "accepted" for the copy queued. The batch takes *text, the
 * envelope's text (envelope_text()) that msg->envelope points to: NULL
 * after. With an asynchronous store the message is stored with the batch
 * (unless retry: it is queued already), and counted from now on. */
static void batch_add(Relay *relay, Session *s, uint64_t id, const StoreMessage *msg, char **text, bool retry) {
        RelayPending *p = batch_push(relay, s);

        if (!p)
                return;
        p->id = id;
        p->w = (StoreWrite) {
                .type = STORE_WRITE_ADD,
                .msg = *msg,
                .limit = s->limits.queue_limit,
                .limit_from = s->limits.queue_limit_per_sender,
        };
        p->w.msg.envelope = TAKE_PTR(*text);
        p->retry = retry;
        batch_hold(relay, s);
        batch_bound(relay, s);
}

/* Is p's envelope queued (after a rollback: by an earlier commit)? */
static bool is_queued(Relay *relay, const RelayPending *p) {
        return store_queue_find(relay->store, p->w.msg.sender, p->w.msg.msg_id, p->w.msg.envelope, NULL) >= 0;
}

/* p's message is queued: answered accepted (to its sender, unless it is
 * gone), and forwarded to its recipient. */
static void send_committed(Relay *relay, const RelayPending *p) {
        const StoreMessage *m = &p->w.msg;
        Session *recipient = session_index_find_receiver(relay->sessions, m->recipient);
        Session *s = p->session;
        uint8_t wire[FRAME_ACCEPTED_WIRE_MAX];
        bool online = recipient;
        int wire_len;

        /* Receiving on another node: that node delivers it, told after
         * the commit (the queue is shared). */
        if (!recipient && relay->cluster && !p->retry)
                online = cluster_deliver(relay->cluster, m->recipient) > 0;

        if (!p->retry) {
                LogFields lf = {
                        .user = m->sender, .recipient = m->recipient, .peer = s ? s->peer : NULL,
                        .session = s ? s->id : NULL, .msg_id = m->msg_id,
                        .has_size = true, .size = m->size, .has_seq = true, .seq = m->seq,
                };

                if (online)
                        log_event(EVENT_MESSAGE_ACCEPTED, &lf,
                                  "Message %s from %s to %s accepted (%" PRIu64 " bytes)",
                                  m->msg_id, m->sender, m->recipient, m->size);
                else
                        log_event(EVENT_MESSAGE_QUEUED, &lf,
                                  "Message %s from %s to %s queued, recipient offline (%" PRIu64 " bytes)",
                                  m->msg_id, m->sender, m->recipient, m->size);
        }
        /* One per message: written as it goes on the wire, no object. */
        if (s) {
                wire_len = frame_accepted_to_wire(p->id, m->msg_id, !online, wire);
                if (wire_len >= 0)
                        (void) session_send_wire(s, wire, (size_t) wire_len);
                else
                        log_error_errno(wire_len, "Failed to answer message %s: bad message id", m->msg_id);
        }
        if (recipient && !p->retry)
                forward(relay, recipient, m);
}

static void refuse_queue_full(Relay *relay, Session *s, const uint64_t *id, LogFields *lf, uint64_t count,
                              bool per_sender);
static void acked(Relay *relay, Session *s, const StoreMessage *msg);

/* What the store said of p's send, other than queued (asynchronous). */
static void send_refused(Relay *relay, const RelayPending *p) {
        const StoreMessage *m = &p->w.msg;
        Session *s = p->session;
        LogFields lf = {
                .user = m->sender, .recipient = m->recipient, .peer = s->peer, .session = s->id,
                .msg_id = m->msg_id,
        };

        switch (p->w.result) {
        case -ENOENT:
                reply_error(s, &p->id, ERR_NO_SUCH_USER, "no such user");
                break;
        case -EDQUOT:
        case -EXFULL:
                refuse_queue_full(relay, s, &p->id, &lf, p->w.count, p->w.result == -EDQUOT);
                break;
        case -ENOTUNIQ:
                reply_error(s, &p->id, ERR_BAD_REQUEST, "this message id is queued with another envelope");
                break;
        default:
                send_failed(relay, s, p->id, m, p->w.result);
                break;
        }
}

/* The store's answer to an ack recorded in the batch: handle_ack()'s, had
 * it waited. A transaction that failed (r < 0, logged with the batch) did
 * not record it: not answered, as for the database away; the message
 * stays queued and is delivered again, which clients drop. An error here
 * has no id and would end a well-behaved client's session for what it
 * cannot change (a full disk whose reserve is spent). */
static void ack_answered(Relay *relay, const RelayPending *p, int r) {
        Session *s = p->session;

        if (r < 0) {
                log_debug_errno(r, "Ack of seq %" PRIu64 " by %s not recorded: %m", p->w.msg.seq,
                                p->w.msg.recipient);
                return;
        }
        r = p->w.result;
        if (r >= 0) {
                acked(relay, s, &p->w.msg);
                return;
        }
        if (r == -ENOENT || store_unavailable(r)) {
                log_debug("Ack of seq %" PRIu64 " by %s, which is %s", p->w.msg.seq, p->w.msg.recipient,
                          r == -ENOENT ? "no longer queued" : "not recorded: the database is away");
                return;
        }
        log_error_errno(r, "Failed to delete message %" PRIu64 ": %s", p->w.msg.seq, store_error(relay->store));
        if (s)
                reply_error(s, NULL, ERR_INTERNAL, "internal error");
}

/* Answer one request of a batch whose transaction committed (r = 0) or
 * is gone (r < 0). */
static void pending_answer(Relay *relay, RelayPending *p, int r) {
        if (p->session)
                p->session->n_requests--;
        if (p->w.type == STORE_WRITE_TAKE) {
                ack_answered(relay, p, r);
                return;
        }
        if (r >= 0 && p->w.result < 0 && !p->retry) {
                /* Counted when it was added (asynchronous): it was not. */
                queue_removed(relay, p->w.msg.size);
                if (p->w.result == -EEXIST)
                        p->retry = true;        /* a copy queued before: same answer */
                else {
                        if (p->session)
                                send_refused(relay, p);
                        return;
                }
        }
        /* A retry of a message committed before this batch was accepted
         * then, and is now. */
        if (r >= 0 || (p->retry && is_queued(relay, p)))
                send_committed(relay, p);
        else if (p->session)
                send_failed(relay, p->session, p->id, &p->w.msg, r);
}

static void batch_free(RelayBatch *b) {
        free(b->pending);
        free(b->held);
        free(b->writes);
        *b = (RelayBatch) {};
}

/* b is answered: its arrays serve the batch filling, unless the answers
 * began that one with arrays of its own. */
static void batch_recycle(Relay *relay, RelayBatch *b) {
        if (relay->batch.pending || relay->batch.held || relay->batch.writes) {
                batch_free(b);
                return;
        }
        relay->batch = (RelayBatch) {
                .pending = b->pending, .n_pending_allocated = b->n_pending_allocated,
                .held = b->held, .n_held_allocated = b->n_held_allocated,
                .writes = b->writes, .n_writes_allocated = b->n_writes_allocated,
        };
        *b = (RelayBatch) {};
}

/* A transaction committed n requests (Status' counts). A batch of retries
 * alone, found queued before, committed none. */
static void batch_counted(Relay *relay, size_t n) {
        relay->n_commits++;
        relay->n_committed += n;
}

/* Answer every request of b (taken off relay->batch), then write to each
 * session what it was given; b is empty after, its arrays recycled. */
static void batch_answer(Relay *relay, RelayBatch *b, int r) {
        if (r < 0) {
                /* The database away was logged once, by the store. */
                if (!store_unavailable(r))
                        log_error_errno(r, "Failed to commit %zu messages and the acks with them: %s",
                                        b->n_pending, store_error(relay->store));
                /* The counts of what the rollback left. */
                if (relay_queue_recount(relay) < 0 && !store_unavailable(r))
                        log_error("Failed to count the queue: %s", store_error(relay->store));
        }
        for (size_t i = 0; i < b->n_pending; i++)
                pending_answer(relay, &b->pending[i], r);
        /* Everything a session was given this turn, in one write (and
         * as few TLS records as fit). */
        for (size_t i = 0; i < b->n_held; i++) {
                Session *s = b->held[i];

                if (!s)
                        continue;       /* freed meanwhile */
                stream_cork(s->stream, false);
                session_wait(s, false);
                if (s->state == SESSION_ACTIVE)
                        session_flush(s);
                /* Held by a later batch too (it went on sending while
                 * this one committed): the rest waits for that one. */
                if (s->held_by > b->number)
                        stream_cork(s->stream, true);
        }
        for (size_t i = 0; i < b->n_pending; i++) {
                Session *recipient = session_index_find_receiver(relay->sessions, b->pending[i].w.msg.recipient);

                if (recipient && recipient->state == SESSION_ACTIVE)
                        session_flush(recipient);
                free(b->pending[i].w.msg.envelope);
        }
        batch_recycle(relay, b);
}

/* The batch's transaction committed (r = 0) or is gone (r < 0). The
 * batch is answered apart from relay->batch, which the answers may start
 * again (a forward that pumps); its arrays serve the next batch, unless
 * one began meanwhile. */
static void batch_finish(Relay *relay, int r) {
        RelayBatch done = relay->batch;

        relay->batch = (RelayBatch) {};
        batch_taken(relay, &done);
        batch_answer(relay, &done, r);
}

static bool batch_take_off(Relay *relay, int *ret);
static void batch_send(Relay *relay);

/* The batch in flight is answered (on the loop, from the store): answer
 * it, and send the next one if it has requests already. A full disk
 * stored nothing of it: as relay_commit() does on the synchronous path,
 * the manager releases its reserve (deleting, the acks, may need room)
 * and the same batch goes again, once, before anything is answered. */
static void batch_answered(void *userdata, int r) {
        Relay *relay = userdata;
        RelayBatch done;
        bool now = false;
        int next_r;

        /* The batch queued behind is taken back, unless the writer
         * started it after this one committed. After a failure it waits
         * (store_batch_queue()), and goes after what that needs. */
        batch_reopen(relay);
        if (r == -ENOSPC && !relay->flight.resent && relay->hooks->store_full(relay->userdata) > 0) {
                relay->flight.resent = true;
                /* Failing, the batch is answered with the full disk. */
                if (store_batch_send(relay->store, relay->flight.writes, relay->flight.n_writes, batch_answered,
                                     relay) >= 0)
                        return;
        }
        done = relay->flight;
        relay->flight = (RelayBatch) {};
        if (r >= 0 && done.n_writes > 0)
                batch_counted(relay, done.n_writes);
        relay->flying = relay->next.number > 0;
        if (relay->flying) {
                /* Started by the writer: the flight now, answered next. */
                relay->flight = relay->next;
                relay->next = (RelayBatch) {};
        } else if (r >= 0)
                /* Committed, the next batch goes first, so that its
                 * commit runs while this one is answered: the writer
                 * does not wait for the answers, nor they for it. Its
                 * answers come after these: later on the loop, or, for
                 * one with nothing the store could take, right after. */
                now = batch_take_off(relay, &next_r);
        /* Failed, this one is answered first: its answers read the store
         * again (relay_queue_recount(), is_queued()), which the next
         * batch would be writing. */
        batch_answer(relay, &done, r);
        if (r < 0)
                batch_send(relay);
        else if (now)
                batch_answered(relay, next_r);
}

/* The writes b gives the store, in b->writes: all but the retries found
 * queued before (relay_queue_check()). Made again at every turn's end
 * while a batch fills (batch_queue()), so only the requests added since
 * are looked at, unless pending moved. */
static int batch_writes(RelayBatch *b) {
        if (b->n_writes_allocated < b->n_pending) {
                StoreWrite **w = reallocarray(b->writes, b->n_pending, sizeof(*w));

                if (!w)
                        return -ENOMEM;
                b->writes = w;
                b->n_writes_allocated = b->n_pending;
        }
        if (b->scanned != b->pending || b->n_scanned > b->n_pending)
                b->n_scanned = b->n_writes = 0;
        for (size_t i = b->n_scanned; i < b->n_pending; i++)
                if (!b->pending[i].retry)
                        b->writes[b->n_writes++] = &b->pending[i].w;
        b->scanned = b->pending;
        b->n_scanned = b->n_pending;
        return 0;
}

/* The batch (asynchronous store) takes off, unless one is in flight: then
 * it goes when that one is answered. True when it is to be answered at
 * once, with *ret: it has nothing to store (retries alone), or the store
 * refused it. */
static bool batch_take_off(Relay *relay, int *ret) {
        RelayBatch *b = &relay->batch;
        int r;

        if (relay->flying || (b->n_pending == 0 && b->n_held == 0))
                return false;
        r = batch_writes(b);

        /* The batch flies; the next one fills in the arrays of the last
         * one answered (batch_recycle()). */
        relay->flight = *b;
        *b = (RelayBatch) {};
        batch_taken(relay, &relay->flight);
        relay->flying = true;
        /* Its sessions go on reading: their sends and acks fill the next
         * batch, answered after this one; anything else waits for every
         * answer they are owed (relay_frame()). */

        if (r >= 0 && relay->flight.n_writes > 0)
                r = store_batch_send(relay->store, relay->flight.writes, relay->flight.n_writes, batch_answered,
                                     relay);
        *ret = r;
        return r < 0 || relay->flight.n_writes == 0;
}

static void batch_send(Relay *relay) {
        int r;

        if (batch_take_off(relay, &r))
                batch_answered(relay, r);
}

/* With one in flight, and none started behind it, the batch is queued
 * for the writer to start when the flight committed (store_batch_queue();
 * not every store can). One of retries alone, or that the store refuses,
 * waits to take off after the flight. */
static void batch_queue(Relay *relay) {
        RelayBatch *b = &relay->batch;

        if (!relay->flying || relay->next.number > 0 || relay->queued || b->n_pending == 0)
                return;
        if (batch_writes(b) < 0 || b->n_writes == 0)
                return;
        relay->queued = store_batch_queue(relay->store, b->writes, b->n_writes, batch_answered, relay) >= 0;
}

static int takes_commit_once(Relay *relay) {
        size_t n = relay->batch.n_takes;
        int r = batch_open(relay, true);

        if (r >= 0)
                r = store_commit(relay->store);
        if (r < 0) {
                store_rollback(relay->store);
                relay->batch.n_takes = n;       /* none of them is deleted */
        }
        return r;
}

/* Acks alone (a send would have begun the transaction): deleted in one of
 * their own, which commits without a sync. It holds nothing but what the
 * batch recorded, so a full disk, which makes SQLite end it, is no loss:
 * the manager releases its reserve and it is done again, once. */
static int takes_commit(Relay *relay) {
        int r = takes_commit_once(relay);

        if (r == -ENOSPC && relay->hooks->store_full(relay->userdata) > 0)
                r = takes_commit_once(relay);
        return r;
}

void relay_commit(Relay *relay) {
        int r = 0;

        if (batch_async(relay)) {
                batch_send(relay);
                batch_queue(relay);
                return;
        }
        if (relay->batch.n_takes > 0 && !store_in_transaction(relay->store))
                r = takes_commit(relay);
        else if (store_in_transaction(relay->store)) {
                r = store_commit(relay->store);
                /* A full disk: deleting (the acks) may make room, once. */
                if (r == -ENOSPC && store_in_transaction(relay->store) &&
                    relay->hooks->store_full(relay->userdata) > 0)
                        r = store_commit(relay->store);
                if (r < 0)
                        store_rollback(relay->store);
        } else {
                /* Nothing written: nothing to answer, or retries alone,
                 * found queued before, and no commit to count. */
                if (relay->batch.n_pending > 0 || relay->batch.n_held > 0)
                        batch_finish(relay, 0);
                return;
        }
        if (r >= 0)
                batch_counted(relay, relay->batch.n_pending);
        batch_finish(relay, r);
}

void relay_done(Relay *relay) {
        relay_commit(relay);
        /* At shutdown the answers are waited for: the batch in flight,
         * then the one that filled meanwhile, which its answer sent. */
        while (relay->flying) {
                store_batch_wait(relay->store);
                if (relay->flying)
                        batch_answered(relay, -ETIMEDOUT);
        }
        batch_free(&relay->batch);
        batch_free(&relay->flight);
        batch_free(&relay->next);
}

static void batch_forget(RelayBatch *b, Session *s) {
        for (size_t i = 0; i < b->n_pending; i++)
                if (b->pending[i].session == s)
                        b->pending[i].session = NULL;
        for (size_t i = 0; i < b->n_held; i++)
                if (b->held[i] == s)
                        b->held[i] = NULL;
}

void relay_session_free(Relay *relay, Session *s) {
        batch_forget(&relay->batch, s);
        batch_forget(&relay->flight, s);
        batch_forget(&relay->next, s);
        if (s->reading) {
                ((RelayRead *) s->reading)->session = NULL;
                s->reading = NULL;
        }
}

/* A send refused for the recipient's queue (per_sender: the sender's
 * share of it), which holds count messages. */
static void refuse_queue_full(Relay *relay, Session *s, const uint64_t *id, LogFields *lf, uint64_t count,
                              bool per_sender) {
        if (per_sender) {
                relay_limit_hit(relay, LIMIT_QUEUE_LIMIT_PER_SENDER, s->user_entry, lf,
                                "Message %s from %s refused: %" PRIu64 " of its messages "
                                "wait for %s already", lf->msg_id, lf->user, count, lf->recipient);
                reply_error(s, id, ERR_QUEUE_FULL, "your share of the recipient's queue is full");
                return;
        }
        relay_limit_hit(relay, LIMIT_QUEUE_LIMIT, NULL, lf,
                        "Message %s from %s refused: queue of %s is full (%" PRIu64 ")",
                        lf->msg_id, lf->user, lf->recipient, count);
        reply_error(s, id, ERR_QUEUE_FULL, "the recipient's queue is full");
}

/* f was parsed from payload (len bytes), which holds its envelope as the
 * client wrote it. */
static void handle_send(Relay *relay, Session *s, const Frame *f, const uint8_t *payload, size_t len) {
        const Envelope *e = f->send.envelope;
        const uint64_t *id = &f->send.id;
        _cleanup_(freep) char *msg_id = NULL, *text = NULL;
        StoreMessage msg = {};
        size_t text_len;
        uint64_t count, count_from, now;
        bool async = batch_async(relay);
        Limit limit;
        LogFields lf;
        char detail[128];
        int r = -ENOMEM;

        if (!rate_take(relay, s, id, "Message", "too many messages"))
                return;

        if (strcmp(e->from, s->user) != 0) {
                reply_error(s, id, ERR_BAD_REQUEST, "envelope.from is not the session's user");
                return;
        }
        /* A user with an active session is registered (a key reset closes
         * them): the store is asked only about users offline. An
         * asynchronous batch asks as it stores the message. */
        if (!async) {
                r = session_index_first(relay->sessions, e->to) ? 1 : store_user_exists(relay->store, e->to);
                if (r == 0) {
                        reply_error(s, id, ERR_NO_SUCH_USER, "no such user");
                        return;
                }
                if (r < 0)
                        goto internal;
        }
        if (b64_encode(e->id, sizeof(e->id), &msg_id) < 0)
                goto internal;

        lf = (LogFields) {
                .user = s->user, .recipient = e->to, .peer = s->peer, .session = s->id,
                .msg_id = msg_id,
        };
        if (e->ct_len > config_max_ciphertext(s->limits.max_text)) {
                snprintf(detail, sizeof(detail), "ciphertext of %zu bytes is over max-text", e->ct_len);
                lf.has_size = true;
                lf.size = e->ct_len;
                relay_limit_hit(relay, LIMIT_MAX_TEXT, NULL, &lf, "Message %s from %s refused: %s", msg_id,
                                s->user, detail);
                reply_error(s, id, ERR_TOO_LARGE, "message text over max_text");
                return;
        }
        if (!async) {
                r = store_queue_counts(relay->store, e->to, s->user, &count, &count_from);
                if (r < 0)
                        goto internal;
                /* One sender's share first, so that a sender who filled it
                 * cannot fill the rest of the recipient's queue. */
                if (count_from >= s->limits.queue_limit_per_sender) {
                        refuse_queue_full(relay, s, id, &lf, count_from, true);
                        return;
                }
                if (count >= s->limits.queue_limit) {
                        refuse_queue_full(relay, s, id, &lf, count, false);
                        return;
                }
        }

        text = envelope_text(f, payload, len, &text_len);
        if (!text)
                goto internal;
        now = now_unix();
        (void) string_copy(msg.recipient, sizeof(msg.recipient), e->to);
        (void) string_copy(msg.sender, sizeof(msg.sender), s->user);
        (void) string_copy(msg.msg_id, sizeof(msg.msg_id), msg_id);
        msg.envelope = text;
        msg.size = text_len;
        msg.received = now;
        msg.expires = now + s->limits.queue_ttl_usec / 1000000;

        if (relay_queue_check(relay, msg.size, &limit) < 0) {
                /* A retry of a message accepted before the store filled
                 * up gets the same answer as the first time. */
                if (store_queue_find(relay->store, s->user, msg_id, text, NULL) >= 0)
                        batch_add(relay, s, *id, &msg, &text, true);
                else
                        storage_full(relay, s, id, limit, &lf, msg_id);
                return;
        }
        if (async) {
                /* Stored with the batch, which checks the rest. */
                queue_added(relay, msg.size);
                batch_add(relay, s, *id, &msg, &text, false);
                return;
        }

        r = batch_begin(relay);
        if (r >= 0)
                r = store_queue_add(relay->store, &msg);
        if (r == -EEXIST) {
                /* A retry of a message already queued: same answer, no copy. */
                batch_add(relay, s, *id, &msg, &text, true);
                return;
        }
        if (r == -ENOTUNIQ) {
                reply_error(s, id, ERR_BAD_REQUEST, "this message id is queued with another envelope");
                return;
        }
        if (r < 0) {
                batch_failed(relay, r);
                if (r != -ENOSPC && !store_unavailable(r))
                        log_error_errno(r, "Failed to queue message %s: %s", msg_id, store_error(relay->store));
                send_failed(relay, s, *id, &msg, r);
                return;
        }
        queue_added(relay, msg.size);
        batch_add(relay, s, *id, &msg, &text, false);
        return;

internal:
        if (!store_unavailable(r))
                log_error("Failed to handle a message from %s: %s", s->user, store_error(relay->store));
        reply_store_error(s, id, r);
}

/* A key rotation (securechat-protocol(7), "Key rotation"): the session
 * proved the old key at login, the statement proves both keys; the relay
 * registers the new key in the same transaction as it keeps the
 * statement, and peers learn of it from the package's chain. Sessions
 * already logged in stay: the rotation says who the user is from now on,
 * not that the old key was stolen (that is an administrator's reset). */
static void handle_rotate(Relay *relay, Session *s, const Frame *f) {
        const Rotation *rot = f->rotate.rotation;
        const uint64_t *id = &f->rotate.id;
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        char old_fp[RSA_FINGERPRINT_MAX], new_fp[RSA_FINGERPRINT_MAX], reason[96];
        uint64_t now = now_unix(), wait;
        Session *receiver;
        LogFields lf;
        int r;

        if (strcmp(rot->user, s->user) != 0) {
                reply_error(s, id, ERR_BAD_REQUEST, "a rotation of another user's key");
                return;
        }
        if (rot->old_key_len != s->package->key_len ||
            memcmp(rot->old_key, s->package->key, rot->old_key_len) != 0) {
                reply_error(s, id, ERR_KEY_MISMATCH, "the rotation does not start at the registered key");
                return;
        }
        if (rot->time > now + ROTATION_TIME_SKEW || rot->time + ROTATION_TIME_SKEW < now) {
                reply_error(s, id, ERR_BAD_REQUEST, "the rotation's time is too far from the relay's clock");
                return;
        }
        r = rotation_verify(rot);
        if (r == -ENOMEM) {
                reply_error(s, id, ERR_INTERNAL, "out of memory");
                return;
        }
        if (r < 0) {
                reply_error(s, id, ERR_BAD_REQUEST, "the rotation's signatures do not verify");
                return;
        }

        fields_of(s, &lf);
        wait = registration_wait(relay, s);
        if (wait > 0) {
                relay_limit_hit(relay, LIMIT_REGISTRATION_RATE, s->address_entry, &lf,
                                "Not rotating the key of %s from %s: registrations and rotations from "
                                "this address over registration-rate", s->user, s->peer);
                (void) session_send(s, frame_new_rate_limited(id, "too many key changes from this address",
                                                              anvil_retry_after_sec(wait)));
                return;
        }

        r = relay->hooks->disk_check(relay->userdata, rot->new_key_len + 8192);
        if (r >= 0)
                r = key_package_sign(relay->server_key, s->user, rot->new_key, rot->new_key_len, now, &kp);
        if (r >= 0)
                relay_commit(relay);    /* its own transaction, after the batch */
        if (r >= 0)
                r = store_user_rotate(relay->store, kp, rot);
        if (r == -ESTALE) {
                /* Another session rotated first. */
                reply_error(s, id, ERR_KEY_MISMATCH, "the registered key changed meanwhile");
                return;
        }
        if (r == -ENOSPC) {
                limit_hit(relay, s, LIMIT_MIN_FREE_DISK, "no room to rotate a key");
                reply_error(s, id, ERR_STORAGE_FULL, "the relay is out of disk space");
                return;
        }
        kp = key_package_free(kp);
        if (r >= 0)
                r = package_get(relay, s->user, &kp);      /* with its chain */
        if (r < 0) {
                log_store_error(r, "Failed to rotate the key of %s: %s", s->user,
                                r == -ENOMEM ? "out of memory" : store_error(relay->store));
                reply_store_error(s, id, r);
                return;
        }

        rsa_fingerprint_spki(rot->old_key, rot->old_key_len, old_fp);
        rsa_fingerprint_spki(rot->new_key, rot->new_key_len, new_fp);
        snprintf(reason, sizeof(reason), "old key %s", old_fp);
        lf.fingerprint = new_fp;
        lf.reason = reason;
        log_event(EVENT_KEY_ROTATED, &lf, "User %s rotated their key from %s to %s", s->user, old_fp, new_fp);

        /* Every session of the user shows the new package from now on, and
         * the new key's fingerprint (presence, watch and who answers, the
         * other nodes). */
        for (Session *i = session_index_first(relay->sessions, s->user); i; i = i->user_next) {
                KeyPackage *copy = NULL;

                memcpy(i->fingerprint, new_fp, sizeof(i->fingerprint));
                if (key_package_dup(kp, &copy) < 0)
                        continue;       /* keeps the old one; lookups have the new */
                key_package_free(i->package);
                i->package = copy;
        }
        (void) session_send(s, frame_new_rotated(*id, kp));
        receiver = session_index_find_receiver(relay->sessions, s->user);
        if (receiver) {
                broadcast_presence(relay, receiver, true);
                if (relay->cluster)
                        cluster_online(relay->cluster, receiver->user, receiver->fingerprint);
        }
}

/* Delete a message in the batch's transaction. */
static int queue_take(Relay *relay, const char *user, uint64_t seq, StoreMessage *ret) {
        int r = batch_begin(relay);

        if (r >= 0)
                r = store_queue_take(relay->store, user, seq, ret);
        if (r < 0)
                batch_failed(relay, r);
        return r;
}

/* msg was deleted for the ack of s (NULL: freed since): tell its sender. */
static void acked(Relay *relay, Session *s, const StoreMessage *msg) {
        LogFields lf;

        queue_removed(relay, msg->size);
        message_fields(msg, &lf);
        lf.session = s ? s->id : NULL;
        lf.peer = s ? s->peer : NULL;
        log_event(EVENT_MESSAGE_DELIVERED, &lf, "Message %s from %s delivered to %s", msg->msg_id,
                  msg->sender, msg->recipient);

        /* A send may close the session it goes to: the walk goes on past
         * it (see session-index.h). */
        for (Session *i = session_index_first(relay->sessions, msg->sender); i; i = i->user_next)
                if (i->indexed)
                        (void) session_send(i, frame_new_receipt(msg->msg_id, "delivered"));
}

static void handle_ack(Relay *relay, Session *s, const Frame *f) {
        uint64_t seq = f->ack.seq;
        StoreMessage msg;
        int r;

        if (!s->receive || seq == 0 || seq > s->cursor) {
                reply_error(s, NULL, ERR_BAD_REQUEST, "seq was not delivered to this session");
                return;
        }
        if (batch_async(relay) || !store_in_transaction(relay->store)) {
                /* Deleted with the batch; the receipt goes with its
                 * answer. On SQLite: by the turn's first send, or at
                 * relay_commit() without a sync (see the group commit). */
                RelayPending *p = batch_push(relay, s);

                if (!p)
                        return;
                p->w = (StoreWrite) { .type = STORE_WRITE_TAKE, .msg.seq = seq };
                (void) string_copy(p->w.msg.recipient, sizeof(p->w.msg.recipient), s->user);
                batch_hold(relay, s);
                if (!batch_async(relay))
                        relay->batch.n_takes++;
                batch_bound(relay, s);
                return;
        }
        r = queue_take(relay, s->user, seq, &msg);
        if (r == -ENOSPC && relay->hooks->store_full(relay->userdata) > 0)
                r = queue_take(relay, s->user, seq, &msg);
        if (r == -ENOENT || store_unavailable(r)) {
                /* Expired between deliver and ack (or acked twice): the
                 * outcome the client wanted. An error here would have no
                 * id, which ends a well-behaved client's session; an ack
                 * the database was away for is not recorded, and the
                 * message is delivered again (clients drop repeats). */
                log_debug("Session %s: ack of seq %" PRIu64 ", which is %s", s->id, seq,
                          r == -ENOENT ? "no longer queued" : "not recorded: the database is away");
                return;
        }
        if (r < 0) {
                log_error_errno(r, "Failed to delete message %" PRIu64 ": %s", seq, store_error(relay->store));
                reply_error(s, NULL, ERR_INTERNAL, "internal error");
                return;
        }
        batch_hold(relay, s);
        acked(relay, s, &msg);
}

/* ---- watch, unwatch, who (version 2) ------------------------------------- */

static bool require_v2(Session *s, uint64_t id) {
        if (s->proto >= 2)
                return true;
        reply_error(s, &id, ERR_BAD_REQUEST, "this frame needs protocol version 2 (auth's proto)");
        return false;
}

static int online_add(json_object *o, Session *receiver) {
        return frame_online_add(o, receiver->user, receiver->fingerprint);
}

/* Watch the users named, and answer with those of them online: the state
 * that later presence events change. */
static void handle_watch(Relay *relay, Session *s, const Frame *f) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        uint64_t id = f->watch.id;
        int r = 0;

        if (!require_v2(s, id))
                return;
        if (f->watch.n_users > WATCH_USERS_MAX) {
                reply_error(s, &id, ERR_TOO_LARGE, "too many users in one watch");
                return;
        }
        /* Refused whole, before anything changes: names watched already
         * count, so that the answer never depends on the order. */
        if (s->n_watches + f->watch.n_users > s->limits.max_watches) {
                limit_hit(relay, s, LIMIT_MAX_WATCHES, "too many watched users");
                reply_error(s, &id, ERR_TOO_LARGE, "watching these users would exceed max-watches");
                return;
        }
        o = frame_new_online(id, 0);
        for (size_t i = 0; o && r >= 0 && i < f->watch.n_users; i++) {
                const char *user = f->watch.users[i];
                Session *receiver;

                r = session_index_watch(relay->sessions, s, user);
                if (r == 0)
                        continue;       /* named twice, or watched already: listed once */
                receiver = session_index_find_receiver(relay->sessions, user);
                if (r > 0 && receiver)
                        r = online_add(o, receiver);
                else if (r > 0 && relay->cluster) {
                        const ClusterUser *u = cluster_find(relay->cluster, user);

                        if (u)
                                r = frame_online_add(o, u->user, u->fingerprint);
                }
        }
        if (!o || r < 0) {
                reply_error(s, &id, ERR_INTERNAL, "out of memory");
                return;
        }
        (void) session_send(s, TAKE_PTR(o));
}

static void handle_unwatch(Relay *relay, Session *s, const Frame *f) {
        uint64_t id = f->watch.id;

        if (!require_v2(s, id))
                return;
        if (f->watch.n_users > WATCH_USERS_MAX) {
                reply_error(s, &id, ERR_TOO_LARGE, "too many users in one unwatch");
                return;
        }
        for (size_t i = 0; i < f->watch.n_users; i++)
                session_index_unwatch(relay->sessions, s, f->watch.users[i]);
        (void) session_send(s, frame_new_online(id, 0));
}

/* A page of the online list: the users receiving here in order of
 * activation, from the session index, then those of the other nodes in
 * the order this node heard of them (their positions start at
 * CLUSTER_POSITION_BASE, above every activation): the users after
 * "after". "next" is the position of the last one listed when more
 * follow. A user who logs in again between pages has a new number and is
 * listed again later; one who leaves is not listed. The walk to the page
 * is over pointers, copies nothing. */
static void handle_who(Relay *relay, Session *s, const Frame *f) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        uint64_t id = f->who.id, limit, n = 0, last = 0;
        const ClusterUser *u = relay->cluster ? cluster_first(relay->cluster) : NULL;
        Session *i;
        int r = 0;

        if (!require_v2(s, id))
                return;
        limit = (s->limits.max_frame - ONLINE_FRAME_OVERHEAD) / ONLINE_USER_MAX;
        limit = MIN(limit, (uint64_t) WHO_PAGE_MAX);
        if (f->who.limit > 0)
                limit = MIN(limit, f->who.limit);

        for (i = relay->sessions->receivers; i && i->activation <= f->who.after; i = i->receiver_next)
                ;
        for (; u && u->position <= f->who.after; u = u->next)
                ;
        o = frame_new_online(id, 0);
        for (; o && r >= 0 && i && n < limit; i = i->receiver_next, n++) {
                r = online_add(o, i);
                last = i->activation;
        }
        for (; o && r >= 0 && u && n < limit; u = u->next, n++) {
                r = frame_online_add(o, u->user, u->fingerprint);
                last = u->position;
        }
        if (o && r >= 0 && (i || u) && last > 0)
                r = json_add_uint64(o, "next", last);
        if (!o || r < 0) {
                reply_error(s, &id, ERR_INTERNAL, "out of memory");
                return;
        }
        (void) session_send(s, TAKE_PTR(o));
}

bool relay_frame(Relay *relay, Session *s, const uint8_t *payload, size_t len) {
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *reason = NULL;
        char what[96];
        uint64_t id;
        bool has_id;
        int r;

        r = frame_parse_request(payload, len, &f, &reason, &has_id, &id);
        if (r == -EINVAL) {
                if (s->state == SESSION_AUTH)
                        protocol_error(s, ERR_BAD_USERNAME, "invalid user name");
                else
                        reply_error(s, has_id ? &id : NULL, ERR_BAD_USERNAME, "invalid user name");
                return true;
        }
        if (r == -ENOMEM) {
                session_close_request(s, has_id ? &id : NULL, ERR_INTERNAL, "out of memory", "out of memory");
                return true;
        }
        if (r < 0) {
                protocol_error_request(s, has_id ? &id : NULL, ERR_BAD_FRAME, reason ? reason : "malformed frame");
                return true;
        }

        if (s->state == SESSION_AUTH) {
                if (f->type != FRAME_AUTH) {
                        snprintf(what, sizeof(what), "expected auth, got %s", frame_type_to_string(f->type));
                        /* The parser found the id of any request. */
                        protocol_error_request(s, has_id ? &id : NULL,
                                               ERR_BAD_REQUEST, what);
                        return true;
                }
                handle_auth(relay, s, f);
                return true;
        }

        /* A session goes on sending and acking while its batch commits
         * (asynchronous store): those fill the next batch, answered after
         * it. Anything else waits until every answer it is owed went out,
         * so that none is overtaken: the session keeps the frame and gives
         * it again once batch_answer() lets it read. */
        if (s->n_requests > 0 && f->type != FRAME_SEND && f->type != FRAME_ACK && batch_async(relay)) {
                session_wait(s, true);
                return false;
        }

        session_touch(s);
        switch (f->type) {
        case FRAME_LOOKUP:
                handle_lookup(relay, s, f);
                break;
        case FRAME_SEND:
                handle_send(relay, s, f, payload, len);
                break;
        case FRAME_PUBLISH:
                handle_publish(relay, s, f);
                break;
        case FRAME_ACK:
                handle_ack(relay, s, f);
                break;
        case FRAME_ROTATE:
                handle_rotate(relay, s, f);
                break;
        case FRAME_WATCH:
                handle_watch(relay, s, f);
                break;
        case FRAME_UNWATCH:
                handle_unwatch(relay, s, f);
                break;
        case FRAME_WHO:
                handle_who(relay, s, f);
                break;
        case FRAME_PING:
                (void) session_send(s, frame_new_simple(FRAME_PONG));
                break;
        case FRAME_PONG:
                break;
        case FRAME_BYE:
                session_close(s, NULL, NULL, "bye");
                break;
        case FRAME_ERROR:
                /* The client is about to hang up; its code is its business. */
                log_debug("Session %s: client reported an error (%s)", s->id, f->error.code);
                break;
        default:
                snprintf(what, sizeof(what), "%s is not allowed from a client",
                         frame_type_to_string(f->type));
                protocol_error(s, ERR_BAD_REQUEST, what);
                break;
        }
        return true;
}
