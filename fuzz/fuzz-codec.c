/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for frame_parse(), the first code to see every frame a
 * peer sends. Input: one frame payload (JSON text, no length prefix).
 *
 * Besides the sanitizers: a refusal must come with a reason and only with
 * the documented errors; whatever is accepted must hold the invariants the
 * rest of the code relies on, and must survive being rebuilt with the
 * builders and parsed again. Of any text the strict parser takes, a member
 * json_member_plain() takes as written must be json-c's serialization of
 * what was parsed: the relay stores a send's envelope that way.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "json-util.h"
#include "macro.h"
#include "protocol.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rotation(const Rotation *r) {
        if (!r || !username_valid(r->user) || !r->old_key || r->old_key_len == 0 ||
            !r->new_key || r->new_key_len == 0 || !r->old_sig || r->old_sig_len == 0 ||
            !r->new_sig || r->new_sig_len == 0)
                abort();
}

static void check_package(const KeyPackage *kp) {
        if (!kp || !username_valid(kp->user) || !kp->key || kp->key_len == 0 ||
            !kp->sig || kp->sig_len == 0 || kp->n_rotations > ROTATION_CHAIN_MAX ||
            (kp->n_rotations > 0) != !!kp->rotations)
                abort();
        for (size_t i = 0; i < kp->n_rotations; i++)
                check_rotation(kp->rotations[i]);
}

static bool bytes_eq(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len) {
        return a_len == b_len && memcmp(a, b, a_len) == 0;
}

static bool rotation_eq(const Rotation *a, const Rotation *b) {
        return strcmp(a->user, b->user) == 0 && a->time == b->time &&
               bytes_eq(a->old_key, a->old_key_len, b->old_key, b->old_key_len) &&
               bytes_eq(a->new_key, a->new_key_len, b->new_key, b->new_key_len) &&
               bytes_eq(a->old_sig, a->old_sig_len, b->old_sig, b->old_sig_len) &&
               bytes_eq(a->new_sig, a->new_sig_len, b->new_sig, b->new_sig_len);
}

static bool package_eq(const KeyPackage *a, const KeyPackage *b) {
        if (!(strcmp(a->user, b->user) == 0 && a->registered == b->registered &&
              a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0 &&
              a->sig_len == b->sig_len && memcmp(a->sig, b->sig, a->sig_len) == 0 &&
              a->n_rotations == b->n_rotations))
                return false;
        for (size_t i = 0; i < a->n_rotations; i++)
                if (!rotation_eq(a->rotations[i], b->rotations[i]))
                        return false;
        return true;
}

static void check_invariants(const Frame *f) {
        switch (f->type) {
        case FRAME_HELLO:
                if (!f->hello.server_key || f->hello.n_suites == 0)
                        abort();
                for (size_t i = 0; i < f->hello.n_suites; i++)
                        if (!f->hello.suites[i] || !*f->hello.suites[i])
                                abort();
                break;
        case FRAME_AUTH:
                if (!username_valid(f->auth.user) || !f->auth.key || !f->auth.sig)
                        abort();
                break;
        case FRAME_WELCOME:
                check_package(f->welcome.self);
                if (!f->welcome.sig || !*f->welcome.session)
                        abort();
                break;
        case FRAME_ERROR:
                if (!*f->error.code || strspn(f->error.code, "abcdefghijklmnopqrstuvwxyz_") !=
                                       strlen(f->error.code))
                        abort();
                if (f->error.message && !utf8_valid(f->error.message, strlen(f->error.message)))
                        abort();
                break;
        case FRAME_PRESENCE:
                if (f->presence.kind == PRESENCE_LIST) {
                        for (size_t i = 0; i < f->presence.n_users; i++)
                                check_package(f->presence.users[i]);
                } else if (f->presence.kind == PRESENCE_ONLINE) {
                        /* Version 1 carries the package, version 2 the name
                         * and fingerprint. */
                        if (f->presence.package)
                                check_package(f->presence.package);
                        else if (!username_valid(f->presence.user) ||
                                 strncmp(f->presence.fingerprint, "SHA256:", 7) != 0)
                                abort();
                } else if (f->presence.kind != PRESENCE_OFFLINE || !username_valid(f->presence.user))
                        abort();
                break;
        case FRAME_LOOKUP:
                if (!username_valid(f->lookup.user))
                        abort();
                break;
        case FRAME_KEY:
                check_package(f->key.package);
                break;
        case FRAME_SEND:
                if (!f->send.envelope || !f->send.raw)
                        abort();
                break;
        case FRAME_DELIVER:
                /* An envelope, or the reason there is none. */
                if (!f->deliver.raw || (f->deliver.envelope != NULL) != (f->deliver.error == ENVELOPE_OK))
                        abort();
                break;
        case FRAME_ACCEPTED:
                if (strlen(f->accepted.msg) != 24)
                        abort();
                break;
        case FRAME_RECEIPT:
                if (strlen(f->receipt.msg) != 24 || !*f->receipt.status)
                        abort();
                break;
        case FRAME_PUBLISH:
                if (f->publish.n_opks > PREKEYS_PUBLISH_MAX || (f->publish.n_opks > 0 && !f->publish.opks))
                        abort();
                break;
        case FRAME_WATCH:
        case FRAME_UNWATCH:
                /* Any number the frame holds: the relay answers more than
                 * WATCH_USERS_MAX with too_large (relay.c), not the parser. */
                if (f->watch.n_users == 0 || !f->watch.users)
                        abort();
                for (size_t i = 0; i < f->watch.n_users; i++)
                        if (!username_valid(f->watch.users[i]))
                                abort();
                break;
        case FRAME_ONLINE:
                for (size_t i = 0; i < f->online.n_users; i++)
                        if (!username_valid(f->online.users[i].user))
                                abort();
                break;
        case FRAME_ROTATE:
                check_rotation(f->rotate.rotation);
                break;
        case FRAME_ROTATED:
                check_package(f->rotated.package);
                break;
        case FRAME_PUBLISHED:
        case FRAME_WHO:
        case FRAME_ACK:
        case FRAME_SYNCED:
        case FRAME_PING:
        case FRAME_PONG:
        case FRAME_BYE:
                break;
        default:
                abort();
        }
}

static json_object *rebuild(const Frame *f) {
        switch (f->type) {
        case FRAME_HELLO:
                return frame_new_hello(f->hello.server_key, f->hello.server_key_len, f->hello.nonce);
        case FRAME_AUTH: {
                json_object *o = frame_new_auth(f->auth.user, f->auth.key, f->auth.key_len, f->auth.nonce,
                                                f->auth.receive, f->auth.sig, f->auth.sig_len);

                if (o && f->auth.code[0] && frame_auth_add_code(o, f->auth.code) < 0) {
                        json_object_put(o);
                        return NULL;
                }
                return o;
        }
        case FRAME_WELCOME:
                return frame_new_welcome(f->welcome.sig, f->welcome.sig_len, f->welcome.self,
                                         f->welcome.session, &f->welcome.limits);
        case FRAME_ERROR:
                return frame_new_error(f->error.has_id ? &f->error.id : NULL, f->error.code,
                                       f->error.message);
        case FRAME_PRESENCE:
                if (f->presence.kind == PRESENCE_LIST)
                        return frame_new_presence_list(f->presence.users, f->presence.n_users, f->presence.more);
                if (f->presence.kind == PRESENCE_ONLINE)
                        return f->presence.package ? frame_new_presence_online(f->presence.package) :
                                frame_new_presence_user(f->presence.user, f->presence.fingerprint);
                return frame_new_presence_offline(f->presence.user);
        case FRAME_LOOKUP: {
                json_object *o = frame_new_lookup(f->lookup.id, f->lookup.user);

                if (o && f->lookup.prekeys && frame_lookup_add_prekeys(o) < 0) {
                        json_object_put(o);
                        return NULL;
                }
                return o;
        }
        case FRAME_KEY: {
                json_object *o = frame_new_key(f->key.id, f->key.package);

                if (o && f->key.has_bundle && frame_key_add_bundle(o, &f->key.bundle) < 0) {
                        json_object_put(o);
                        return NULL;
                }
                return o;
        }
        case FRAME_PUBLISH:
                return frame_new_publish(f->publish.id, &f->publish.spk, f->publish.opks, f->publish.n_opks);
        case FRAME_PUBLISHED:
                return frame_new_published(f->published.id, f->published.opks);
        case FRAME_SEND:
                return frame_new_send(f->send.id, f->send.raw);
        case FRAME_ACCEPTED:
                return frame_new_accepted(f->accepted.id, f->accepted.msg, f->accepted.queued);
        case FRAME_DELIVER:
                return frame_new_deliver(f->deliver.seq, f->deliver.raw);
        case FRAME_ACK:
                return frame_new_ack(f->ack.seq);
        case FRAME_RECEIPT:
                return frame_new_receipt(f->receipt.msg, f->receipt.status);
        case FRAME_WATCH:
        case FRAME_UNWATCH: {
                _cleanup_(freep) const char **users = calloc(f->watch.n_users, sizeof(*users));

                if (!users)
                        return NULL;
                for (size_t i = 0; i < f->watch.n_users; i++)
                        users[i] = f->watch.users[i];
                return frame_new_watch(f->type, f->watch.id, users, f->watch.n_users);
        }
        case FRAME_WHO:
                return frame_new_who(f->who.id, f->who.after, f->who.limit);
        case FRAME_ONLINE: {
                json_object *o = frame_new_online(f->online.id, f->online.next);

                for (size_t i = 0; o && i < f->online.n_users; i++)
                        if (frame_online_add(o, f->online.users[i].user, f->online.users[i].fingerprint) < 0) {
                                json_object_put(o);
                                return NULL;
                        }
                return o;
        }
        case FRAME_ROTATE:
                return frame_new_rotate(f->rotate.id, f->rotate.rotation);
        case FRAME_ROTATED:
                return frame_new_rotated(f->rotated.id, f->rotated.package);
        default:
                return frame_new_simple(f->type);
        }
}

static bool spk_eq(const SignedPrekey *a, const SignedPrekey *b) {
        return a->id == b->id && memcmp(a->pub, b->pub, X25519_KEY_LEN) == 0 &&
               a->created == b->created && a->sig_len == b->sig_len &&
               memcmp(a->sig, b->sig, a->sig_len) == 0;
}

static bool opk_eq(const OneTimePrekey *a, const OneTimePrekey *b) {
        return a->id == b->id && memcmp(a->pub, b->pub, X25519_KEY_LEN) == 0;
}

static bool opks_eq(const OneTimePrekey *a, const OneTimePrekey *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!opk_eq(&a[i], &b[i]))
                        return false;
        return true;
}

static bool same(const Frame *a, const Frame *b) {
        if (a->type != b->type)
                return false;

        switch (a->type) {
        case FRAME_HELLO:
                return a->hello.server_key_len == b->hello.server_key_len &&
                       memcmp(a->hello.server_key, b->hello.server_key, a->hello.server_key_len) == 0 &&
                       memcmp(a->hello.nonce, b->hello.nonce, NONCE_LEN) == 0;
        case FRAME_AUTH:
                return strcmp(a->auth.user, b->auth.user) == 0 && a->auth.receive == b->auth.receive &&
                       a->auth.key_len == b->auth.key_len &&
                       memcmp(a->auth.key, b->auth.key, a->auth.key_len) == 0 &&
                       memcmp(a->auth.nonce, b->auth.nonce, NONCE_LEN) == 0 &&
                       a->auth.sig_len == b->auth.sig_len &&
                       memcmp(a->auth.sig, b->auth.sig, a->auth.sig_len) == 0;
        case FRAME_WELCOME:
                return package_eq(a->welcome.self, b->welcome.self) &&
                       strcmp(a->welcome.session, b->welcome.session) == 0 &&
                       memcmp(&a->welcome.limits, &b->welcome.limits, sizeof(FrameLimits)) == 0 &&
                       a->welcome.sig_len == b->welcome.sig_len &&
                       memcmp(a->welcome.sig, b->welcome.sig, a->welcome.sig_len) == 0;
        case FRAME_ERROR:
                return a->error.has_id == b->error.has_id && a->error.id == b->error.id &&
                       strcmp(a->error.code, b->error.code) == 0 &&
                       !a->error.message == !b->error.message &&
                       (!a->error.message || strcmp(a->error.message, b->error.message) == 0);
        case FRAME_PRESENCE:
                if (a->presence.kind != b->presence.kind)
                        return false;
                if (a->presence.kind == PRESENCE_OFFLINE)
                        return strcmp(a->presence.user, b->presence.user) == 0;
                if (a->presence.kind == PRESENCE_ONLINE) {
                        if (!a->presence.package || !b->presence.package)
                                return !a->presence.package && !b->presence.package &&
                                       strcmp(a->presence.user, b->presence.user) == 0 &&
                                       strcmp(a->presence.fingerprint, b->presence.fingerprint) == 0;
                        return package_eq(a->presence.package, b->presence.package);
                }
                if (a->presence.n_users != b->presence.n_users)
                        return false;
                for (size_t i = 0; i < a->presence.n_users; i++)
                        if (!package_eq(a->presence.users[i], b->presence.users[i]))
                                return false;
                return true;
        case FRAME_LOOKUP:
                return a->lookup.id == b->lookup.id && strcmp(a->lookup.user, b->lookup.user) == 0 &&
                       a->lookup.prekeys == b->lookup.prekeys;
        case FRAME_KEY:
                return a->key.id == b->key.id && package_eq(a->key.package, b->key.package) &&
                       a->key.has_bundle == b->key.has_bundle &&
                       (!a->key.has_bundle ||
                        (spk_eq(&a->key.bundle.spk, &b->key.bundle.spk) &&
                         a->key.bundle.has_opk == b->key.bundle.has_opk &&
                         (!a->key.bundle.has_opk || opk_eq(&a->key.bundle.opk, &b->key.bundle.opk))));
        case FRAME_PUBLISH:
                return a->publish.id == b->publish.id &&
                       spk_eq(&a->publish.spk, &b->publish.spk) &&
                       a->publish.n_opks == b->publish.n_opks &&
                       opks_eq(a->publish.opks, b->publish.opks, a->publish.n_opks);
        case FRAME_PUBLISHED:
                return a->published.id == b->published.id && a->published.opks == b->published.opks;
        case FRAME_SEND:
                return a->send.id == b->send.id && json_object_equal(a->send.raw, b->send.raw);
        case FRAME_DELIVER:
                return a->deliver.seq == b->deliver.seq &&
                       json_object_equal(a->deliver.raw, b->deliver.raw);
        case FRAME_ACCEPTED:
                return a->accepted.id == b->accepted.id && a->accepted.queued == b->accepted.queued &&
                       strcmp(a->accepted.msg, b->accepted.msg) == 0;
        case FRAME_ACK:
                return a->ack.seq == b->ack.seq;
        case FRAME_RECEIPT:
                return strcmp(a->receipt.msg, b->receipt.msg) == 0 &&
                       strcmp(a->receipt.status, b->receipt.status) == 0;
        case FRAME_WATCH:
        case FRAME_UNWATCH:
                if (a->watch.id != b->watch.id || a->watch.n_users != b->watch.n_users)
                        return false;
                for (size_t i = 0; i < a->watch.n_users; i++)
                        if (strcmp(a->watch.users[i], b->watch.users[i]) != 0)
                                return false;
                return true;
        case FRAME_WHO:
                return a->who.id == b->who.id && a->who.after == b->who.after && a->who.limit == b->who.limit;
        case FRAME_ONLINE:
                if (a->online.id != b->online.id || a->online.next != b->online.next ||
                    a->online.n_users != b->online.n_users)
                        return false;
                for (size_t i = 0; i < a->online.n_users; i++)
                        if (strcmp(a->online.users[i].user, b->online.users[i].user) != 0 ||
                            strcmp(a->online.users[i].fingerprint, b->online.users[i].fingerprint) != 0)
                                return false;
                return true;
        case FRAME_ROTATE:
                return a->rotate.id == b->rotate.id && rotation_eq(a->rotate.rotation, b->rotate.rotation);
        case FRAME_ROTATED:
                return a->rotated.id == b->rotated.id && package_eq(a->rotated.package, b->rotated.package);
        default:
                return true;
        }
}

/* A relay stores an accepted envelope as its serialization and splices
 * that text into deliver frames: the bytes must be those of the frame
 * built from the object. */
static void check_spliced(const Frame *f) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(freep) uint8_t *wire = NULL, *spliced = NULL;
        size_t wire_len = 0, spliced_len = 0, text_len;
        const char *text;
        int r, k;

        if (f->type != FRAME_SEND)
                return;
        text = json_plain_text(f->send.raw, &text_len);
        o = frame_new_deliver(f->send.id, f->send.raw);
        if (!text || !o)
                return;
        r = frame_to_wire(o, MAX_FRAME_LIMIT, &wire, &wire_len);
        k = frame_deliver_to_wire(f->send.id, text, text_len, MAX_FRAME_LIMIT, &spliced, &spliced_len);
        if (r == -ENOMEM || k == -ENOMEM)
                return;
        /* Over the limit both ways, or the same bytes. */
        if (r != k || (r >= 0 && (spliced_len != wire_len || memcmp(spliced, wire, wire_len) != 0)))
                abort();
}

/* The span json_member_plain() gives for a member is the text the relay
 * stores instead of its serialization: it must be that, byte for byte. */
static void check_span(const uint8_t *data, size_t size, const char *key, json_object *value) {
        const char *span, *text;
        size_t span_len, text_len;

        if (!json_member_plain((const char *) data, size, key, &span, &span_len))
                return;
        text = json_plain_text(value, &text_len);
        if (!text)
                return;         /* ENOMEM */
        if ((const uint8_t *) span < data || span_len > size - (size_t) ((const uint8_t *) span - data) ||
            span_len != text_len || memcmp(span, text, text_len) != 0)
                abort();
}

/* Every member of every text the strict parser accepts, whatever the
 * codec makes of it, and the envelope of a send as the relay takes it. */
static void check_as_received(const uint8_t *data, size_t size, const Frame *f) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;

        if (f && f->type == FRAME_SEND)
                check_span(data, size, "envelope", f->send.raw);
        if (json_parse_strict((const char *) data, size, JSON_DEPTH_DEFAULT, &o, NULL) < 0)
                return;
        json_object_object_foreach(o, key, value)
                /* Names the function is not for: see json-util.h. */
                if (!strpbrk(key, "\"\\"))
                        check_span(data, size, key, value);
}

/* The relay writes accepted without an object: every msg the parser takes
 * is one it can write, to the same bytes. */
static void check_accepted(const Frame *f) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(freep) uint8_t *wire = NULL;
        uint8_t written[FRAME_ACCEPTED_WIRE_MAX];
        size_t wire_len = 0;
        int k;

        if (f->type != FRAME_ACCEPTED)
                return;
        o = frame_new_accepted(f->accepted.id, f->accepted.msg, f->accepted.queued);
        if (!o || frame_to_wire(o, MAX_FRAME_LIMIT, &wire, &wire_len) < 0)
                return;
        k = frame_accepted_to_wire(f->accepted.id, f->accepted.msg, f->accepted.queued, written);
        if (k < 0 || (size_t) k != wire_len || memcmp(written, wire, wire_len) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(frame_freep) Frame *f = NULL, *g = NULL;
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(freep) uint8_t *wire = NULL;
        const char *reason = NULL;
        size_t wire_len;
        int r;

        if (size > MAX_FRAME_LIMIT)
                return 0;

        r = frame_parse(data, size, &f, &reason);
        if (r == -ENOMEM)
                return 0;
        check_as_received(data, size, f);
        if (r < 0) {
                if ((r != -EBADMSG && r != -EINVAL) || !reason || f)
                        abort();
                return 0;
        }
        check_invariants(f);
        check_spliced(f);
        check_accepted(f);

        o = rebuild(f);
        if (!o)
                abort();
        r = frame_to_wire(o, MAX_FRAME_LIMIT, &wire, &wire_len);
        if (r < 0)
                abort();
        r = frame_parse(wire + 4, wire_len - 4, &g, &reason);
        if (r < 0 || !same(f, g))
                abort();
        return 0;
}
