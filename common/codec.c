/* SPDX-License-Identifier: MIT */
/*
 * The JSON frame codec. Everything that comes off the wire goes through
 * frame_parse() before any other code looks at it, so this file is where
 * hostile input is turned into typed, bounded, validated values: after it,
 * nobody needs to check a JSON type, a base64 string or a size again.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "codec.h"
#include "frame.h"
#include "json-util.h"
#include "macro.h"
#include "protocol.h"
#include "util.h"

#define MESSAGE_MAX 1024        /* error.message, bytes */
#define SUITE_NAME_MAX 63
#define SUITES_MAX 16
#define SESSION_MAX 64

/* The binary encodings of suite 2 (suite2.h): SPK = u32 id, 32-byte key,
 * u64 created, lp(sig); OPK = u32 id, 32-byte key; BUNDLE = SPK, a flag
 * and perhaps an OPK. */
#define OPK_ENCODED_LEN (4 + X25519_KEY_LEN)
#define SPK_ENCODED_MAX (4 + X25519_KEY_LEN + 8 + 4 + SUITE2_RSA_MAX)
#define BUNDLE_ENCODED_MAX (SPK_ENCODED_MAX + 1 + OPK_ENCODED_LEN)

/* base64 of MSG_ID_LEN bytes, as used by accepted.msg and receipt.msg */
#define MSG_ID_B64_LEN (4 * ((MSG_ID_LEN + 2) / 3))

static const char *const frame_type_table[_FRAME_TYPE_MAX] = {
        [FRAME_HELLO] = "hello",
        [FRAME_AUTH] = "auth",
        [FRAME_WELCOME] = "welcome",
        [FRAME_ERROR] = "error",
        [FRAME_PRESENCE] = "presence",
        [FRAME_LOOKUP] = "lookup",
        [FRAME_KEY] = "key",
        [FRAME_SEND] = "send",
        [FRAME_ACCEPTED] = "accepted",
        [FRAME_DELIVER] = "deliver",
        [FRAME_ACK] = "ack",
        [FRAME_SYNCED] = "synced",
        [FRAME_RECEIPT] = "receipt",
        [FRAME_PING] = "ping",
        [FRAME_PONG] = "pong",
        [FRAME_BYE] = "bye",
        [FRAME_PUBLISH] = "publish",
        [FRAME_PUBLISHED] = "published",
        [FRAME_ROTATE] = "rotate",
        [FRAME_ROTATED] = "rotated",
        [FRAME_WATCH] = "watch",
        [FRAME_UNWATCH] = "unwatch",
        [FRAME_WHO] = "who",
        [FRAME_ONLINE] = "online",
};

const char *frame_type_to_string(FrameType t) {
        if (t < 0 || t >= _FRAME_TYPE_MAX)
                return NULL;
        return frame_type_table[t];
}

FrameType frame_type_from_string(const char *s) {
        if (!s)
                return _FRAME_TYPE_INVALID;
        for (FrameType t = 0; t < _FRAME_TYPE_MAX; t++)
                if (strcmp(frame_type_table[t], s) == 0)
                        return t;
        return _FRAME_TYPE_INVALID;
}

Frame *frame_free(Frame *f) {
        if (!f)
                return NULL;

        switch (f->type) {
        case FRAME_HELLO:
                free(f->hello.server_key);
                for (size_t i = 0; i < f->hello.n_suites; i++)
                        free(f->hello.suites[i]);
                free(f->hello.suites);
                break;
        case FRAME_AUTH:
                free(f->auth.key);
                free(f->auth.sig);
                break;
        case FRAME_WELCOME:
                free(f->welcome.sig);
                key_package_free(f->welcome.self);
                welcome_key_free(f->welcome.welcome_key);
                break;
        case FRAME_ERROR:
                free(f->error.message);
                break;
        case FRAME_PRESENCE:
                for (size_t i = 0; i < f->presence.n_users; i++)
                        key_package_free(f->presence.users[i]);
                free(f->presence.users);
                key_package_free(f->presence.package);
                break;
        case FRAME_KEY:
                key_package_free(f->key.package);
                break;
        case FRAME_ROTATE:
                rotation_free(f->rotate.rotation);
                break;
        case FRAME_ROTATED:
                key_package_free(f->rotated.package);
                break;
        case FRAME_WATCH:
        case FRAME_UNWATCH:
                free(f->watch.users);
                break;
        case FRAME_ONLINE:
                free(f->online.users);
                break;
        case FRAME_SEND:
                envelope_free(f->send.envelope);
                if (f->send.raw)
                        json_object_put(f->send.raw);
                break;
        case FRAME_DELIVER:
                envelope_free(f->deliver.envelope);
                if (f->deliver.raw)
                        json_object_put(f->deliver.raw);
                break;
        case FRAME_PUBLISH:
                free(f->publish.opks);
                break;
        default:
                break;
        }

        free(f);
        return NULL;
}

/*
 * Parsing. Every frame type is a dispatch table: its members in the order
 * they are checked, with the static reason the peer is told when one is
 * missing or bad (it names the member and never quotes input). Unknown
 * members are ignored (forward compatibility); envelopes are strict on
 * their own. The callbacks below are the value checks the protocol has
 * beyond json.c's standard ones.
 */

/* [a-z_]{1,max} into char[max + 1] (error codes, receipt status). */
static int dispatch_token(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        char *p = JSON_DISPATCH_FIELD(d, userdata);
        int r;

        r = json_dispatch_string_copy(v, d, userdata, reason);
        if (r < 0)
                return r;
        for (; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
                        return -EBADMSG;
        return 0;
}

/* Printable ASCII without space, 1..max bytes, into char[max + 1]
 * (session ids, one-time codes). */
static bool printable(const char *s) {
        for (; *s; s++)
                if (*s < 0x21 || *s > 0x7e)
                        return false;
        return true;
}

static int dispatch_printable(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        int r;

        r = json_dispatch_string_copy(v, d, userdata, reason);
        if (r < 0)
                return r;
        return printable(JSON_DISPATCH_FIELD(d, userdata)) ? 0 : -EBADMSG;
}

/* A message id: base64 of MSG_ID_LEN bytes, kept in its text form in
 * char[32]. */
static int dispatch_msg_id(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        uint8_t id[MSG_ID_LEN];
        const char *s;
        size_t len, id_len;
        int r;

        (void) reason;
        r = json_string_get(v, 1, MSG_ID_B64_LEN, &s, &len);
        if (r < 0)
                return r;
        r = b64_decode_to(s, len, id, sizeof(id), &id_len);
        if (r < 0 || id_len != MSG_ID_LEN)
                return -EBADMSG;
        memcpy(JSON_DISPATCH_FIELD(d, userdata), s, len + 1);
        return 0;
}

/* KeyPackage *, newly allocated. */
static int dispatch_package(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        KeyPackage **p = JSON_DISPATCH_FIELD(d, userdata);

        (void) reason;
        return key_package_from_json(v, p);
}

/* Rotation *, newly allocated. */
static int dispatch_rotation(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        Rotation **p = JSON_DISPATCH_FIELD(d, userdata);

        (void) reason;
        return rotation_from_json(v, p);
}

/* "SHA256:" and the unpadded base64 of 32 bytes, into char[RSA_FINGERPRINT_MAX]. */
static int dispatch_fingerprint(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        const char *p = JSON_DISPATCH_FIELD(d, userdata);
        int r;

        r = json_dispatch_string_copy(v, d, userdata, reason);
        if (r < 0)
                return r;
        if (strlen(p) != RSA_FINGERPRINT_MAX - 1 || strncmp(p, "SHA256:", 7) != 0)
                return -EBADMSG;
        for (p += 7; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                      *p == '+' || *p == '/'))
                        return -EBADMSG;
        return 0;
}

/* The sender and id of a delivered envelope that failed the shape checks,
 * each where it is valid, for the client's report. */
static const JsonDispatch refused_from_table[] = {
        { "from", json_type_string, json_dispatch_user, offsetof(Frame, deliver.from), 0 },
        {}
};

static const JsonDispatch refused_id_table[] = {
        { "id", json_type_string, dispatch_msg_id, offsetof(Frame, deliver.msg), 0 },
        {}
};

/* The envelope of send and deliver: parsed, and the object itself kept
 * (.raw) so that a relay can store it unchanged. */
static int dispatch_envelope(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        Frame *f = userdata;
        Envelope **p = JSON_DISPATCH_FIELD(d, userdata);
        json_object **raw = f->type == FRAME_SEND ? &f->send.raw : &f->deliver.raw;
        EnvelopeError error = ENVELOPE_MALFORMED;
        int r;

        (void) reason;
        r = envelope_from_json(v, p, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                /* In a send the relay refuses it. In a deliver it is
                 * step 1 of opening failing, which the client reports and
                 * acknowledges like any other step: failing the frame
                 * would end the session without the ack, and the message,
                 * still queued, would end every later one too. */
                if (f->type != FRAME_DELIVER)
                        return -EBADMSG;
                f->deliver.error = error;
                (void) json_dispatch(v, refused_from_table, 0, f, NULL);
                (void) json_dispatch(v, refused_id_table, 0, f, NULL);
        }
        *raw = json_object_get(v);
        return 0;
}

/* Strict base64 of at most max bytes (the binary encodings of suite 2). */
static int b64_member(json_object *v, size_t max, uint8_t **ret, size_t *ret_len) {
        const char *s;
        size_t len;
        int r;

        r = json_string_get(v, 1, 4 * ((max + 2) / 3), &s, &len);
        if (r < 0)
                return r;
        r = b64_decode(s, len, ret, ret_len);
        return r == -ENOMEM ? r : r < 0 ? -EBADMSG : 0;
}

/* Each parser of suite2.h turns one binary member into its struct. */
typedef int (*binary_parse_fn)(const uint8_t *data, size_t len, void *ret);

static int parse_binary(json_object *v, size_t max, binary_parse_fn parse, void *ret) {
        _cleanup_(freep) uint8_t *data = NULL;
        size_t len;
        int r;

        r = b64_member(v, max, &data, &len);
        if (r < 0)
                return r;
        return parse(data, len, ret) < 0 ? -EBADMSG : 0;
}

static int parse_spk(const uint8_t *data, size_t len, void *ret) {
        return signed_prekey_parse(data, len, ret);
}

static int parse_opk(const uint8_t *data, size_t len, void *ret) {
        return one_time_prekey_parse(data, len, ret);
}

static int parse_bundle(const uint8_t *data, size_t len, void *ret) {
        return prekey_bundle_parse(data, len, ret);
}

/* publish.spk: one SPK, signature not checked (the relay does that with the
 * user's key). */
static int dispatch_spk(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        (void) reason;
        return parse_binary(v, SPK_ENCODED_MAX, parse_spk, JSON_DISPATCH_FIELD(d, userdata));
}

/* publish.opks: 0..PREKEYS_PUBLISH_MAX OPKs. */
static int dispatch_opks(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        Frame *f = userdata;
        size_t n = json_object_array_length(v);
        int r;

        (void) d, (void) reason;
        if (n > PREKEYS_PUBLISH_MAX)
                return -EBADMSG;
        if (n == 0)
                return 0;
        f->publish.opks = calloc(n, sizeof(OneTimePrekey));
        if (!f->publish.opks)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = parse_binary(json_object_array_get_idx(v, i), OPK_ENCODED_LEN, parse_opk,
                                 &f->publish.opks[i]);
                if (r < 0)
                        return r;
                f->publish.n_opks++;
        }
        return 0;
}

/* key.bundle: optional; its SPK is verified by the client under the
 * user's pinned key. */
static int dispatch_bundle(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        Frame *f = userdata;
        int r;

        (void) reason;
        r = parse_binary(v, BUNDLE_ENCODED_MAX, parse_bundle, JSON_DISPATCH_FIELD(d, userdata));
        if (r < 0)
                return r;
        f->key.has_bundle = true;
        return 0;
}

/* welcome.opks: optional, and present means a relay of suite 2. */
static int dispatch_welcome_opks(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        Frame *f = userdata;
        int r;

        r = json_dispatch_uint64(v, d, userdata, reason);
        if (r < 0)
                return r;
        f->welcome.has_opks = true;
        return 0;
}

static const JsonDispatch welcome_key_table[] = {
        { "key", json_type_string, json_dispatch_b64_fixed, offsetof(WelcomeKey, key), JSON_MANDATORY,
          .max = ED25519_KEY_LEN },
        { "not_after", json_type_int, json_dispatch_uint64, offsetof(WelcomeKey, not_after), JSON_MANDATORY },
        { "sig", json_type_string, json_dispatch_b64, offsetof(WelcomeKey, sig), JSON_MANDATORY,
          .min = 1, .max = SIG_MAX, .len_offset = offsetof(WelcomeKey, sig_len) },
        {}
};

/* welcome.welcome_key: strict (every member, nothing else: it is signed);
 * whatever is wrong inside, the reason is "bad welcome_key". */
static int dispatch_welcome_key(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        _cleanup_(welcome_key_freep) WelcomeKey *wk = NULL;
        WelcomeKey **ret = JSON_DISPATCH_FIELD(d, userdata);
        int r;

        (void) reason;
        wk = calloc(1, sizeof(*wk));
        if (!wk)
                return -ENOMEM;
        r = json_dispatch(v, welcome_key_table, JSON_REFUSE_UNKNOWN, wk, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;
        welcome_key_free(*ret);
        *ret = TAKE_PTR(wk);
        return 0;
}

/* hello.suites: 1..SUITES_MAX printable names. */
static int dispatch_suites(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        Frame *f = userdata;
        size_t n = json_object_array_length(v);

        (void) d, (void) reason;
        if (n < 1 || n > SUITES_MAX)
                return -EBADMSG;
        f->hello.suites = calloc(n, sizeof(char *));
        if (!f->hello.suites)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *s;

                if (json_string_get(json_object_array_get_idx(v, i), 1, SUITE_NAME_MAX, &s, NULL) < 0 ||
                    !printable(s))
                        return -EBADMSG;
                f->hello.suites[i] = strdup(s);
                if (!f->hello.suites[i])
                        return -ENOMEM;
                f->hello.n_suites++;
        }
        return 0;
}

static const JsonDispatch limits_table[] = {
        { "max_frame", json_type_int, json_dispatch_uint64, offsetof(FrameLimits, max_frame), JSON_MANDATORY },
        { "max_text", json_type_int, json_dispatch_uint64, offsetof(FrameLimits, max_text), JSON_MANDATORY },
        { "queue_ttl", json_type_int, json_dispatch_uint64, offsetof(FrameLimits, queue_ttl), JSON_MANDATORY },
        /* Optional, so that a client can keep a session alive. */
        { "idle_timeout", json_type_int, json_dispatch_uint64, offsetof(FrameLimits, idle_timeout), 0 },
        /* Optional: a relay of suite 2. */
        { "max_opks", json_type_int, json_dispatch_uint64, offsetof(FrameLimits, max_opks), 0 },
        {}
};

/* welcome.limits: whatever is wrong inside, the reason is "bad limits". */
static int dispatch_limits(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        int r;

        r = json_dispatch(v, limits_table, 0, JSON_DISPATCH_FIELD(d, userdata), NULL);
        return r == -ENOMEM ? r : r < 0 ? -EBADMSG : 0;
}

/* error.id is optional, and an error that has one answers a request. */
static int dispatch_error_id(json_object *v, const JsonDispatch *d, void *userdata, const char **reason) {
        Frame *f = userdata;
        int r;

        r = json_dispatch_uint64(v, d, userdata, reason);
        if (r < 0)
                return r;
        f->error.has_id = true;
        return 0;
}

#define F(member) offsetof(Frame, member)
#define M JSON_MANDATORY

static const JsonDispatch hello_table[] = {
        { "proto", json_type_int, json_dispatch_uint, F(hello.proto), M, .reason = "bad proto" },
        { "server_key", json_type_string, json_dispatch_b64, F(hello.server_key), M,
          .reason = "bad server_key", .min = 1, .max = KEY_DER_MAX, .len_offset = F(hello.server_key_len) },
        { "nonce", json_type_string, json_dispatch_b64_fixed, F(hello.nonce), M,
          .reason = "bad nonce", .max = NONCE_LEN },
        { "suites", json_type_array, dispatch_suites, 0, M, .reason = "bad suites" },
        { "proto_max", json_type_int, json_dispatch_uint, F(hello.proto_max), 0, .reason = "bad proto_max" },
        {}
};

static const JsonDispatch auth_table[] = {
        { "user", json_type_string, json_dispatch_user, F(auth.user), M, .reason = "bad user" },
        { "key", json_type_string, json_dispatch_b64, F(auth.key), M,
          .reason = "bad key", .min = 1, .max = KEY_DER_MAX, .len_offset = F(auth.key_len) },
        { "nonce", json_type_string, json_dispatch_b64_fixed, F(auth.nonce), M,
          .reason = "bad nonce", .max = NONCE_LEN },
        { "receive", json_type_boolean, json_dispatch_bool, F(auth.receive), M, .reason = "bad receive" },
        { "code", json_type_string, dispatch_printable, F(auth.code), 0,
          .reason = "bad code", .min = 1, .max = RESET_CODE_MAX },
        { "sig", json_type_string, json_dispatch_b64, F(auth.sig), M,
          .reason = "bad sig", .min = 1, .max = SIG_MAX, .len_offset = F(auth.sig_len) },
        { "proto", json_type_int, json_dispatch_uint, F(auth.proto), 0, .reason = "bad proto" },
        {}
};

static const JsonDispatch welcome_table[] = {
        { "sig", json_type_string, json_dispatch_b64, F(welcome.sig), M,
          .reason = "bad sig", .min = 1, .max = SIG_MAX, .len_offset = F(welcome.sig_len) },
        { "self", json_type_object, dispatch_package, F(welcome.self), M, .reason = "bad self" },
        { "session", json_type_string, dispatch_printable, F(welcome.session), M,
          .reason = "bad session", .min = 1, .max = SESSION_MAX },
        { "limits", json_type_object, dispatch_limits, F(welcome.limits), M, .reason = "bad limits" },
        { "opks", json_type_int, dispatch_welcome_opks, F(welcome.opks), 0, .reason = "bad opks" },
        { "welcome_key", json_type_object, dispatch_welcome_key, F(welcome.welcome_key), 0,
          .reason = "bad welcome_key" },
        {}
};

static const JsonDispatch error_table[] = {
        { "id", json_type_int, dispatch_error_id, F(error.id), 0, .reason = "bad id" },
        { "code", json_type_string, dispatch_token, F(error.code), M,
          .reason = "bad code", .min = 1, .max = sizeof(((Frame *) NULL)->error.code) - 1 },
        { "message", json_type_string, json_dispatch_strdup, F(error.message), 0,
          .reason = "bad message", .max = MESSAGE_MAX },
        /* rate_limited: when to try again. */
        { "retry_after", json_type_int, json_dispatch_uint64, F(error.retry_after), 0,
          .reason = "bad retry_after" },
        {}
};

/* Presence comes in three forms, told apart by "event". */
static const JsonDispatch presence_event_table[] = {
        { "event", json_type_string, json_dispatch_string, 0, 0, .reason = "bad event", .min = 1, .max = 16 },
        {}
};

static const JsonDispatch presence_online_table[] = {
        { "package", json_type_object, dispatch_package, F(presence.package), M, .reason = "bad package" },
        {}
};

static const JsonDispatch presence_user_table[] = {
        { "user", json_type_string, json_dispatch_user, F(presence.user), M, .reason = "bad user" },
        { "fingerprint", json_type_string, dispatch_fingerprint, F(presence.fingerprint), M,
          .reason = "bad fingerprint", .max = RSA_FINGERPRINT_MAX - 1 },
        {}
};

static const JsonDispatch presence_offline_table[] = {
        { "user", json_type_string, json_dispatch_user, F(presence.user), M, .reason = "bad user" },
        {}
};

/* The list's elements are read after "more", which is checked first. */
typedef struct PresenceList {
        json_object *users;
        bool more;
} PresenceList;

static const JsonDispatch presence_list_table[] = {
        { "users", json_type_array, json_dispatch_borrow, offsetof(PresenceList, users), M,
          .reason = "bad users" },
        { "more", json_type_boolean, json_dispatch_bool, offsetof(PresenceList, more), 0,
          .reason = "bad more" },
        {}
};

/* watch and unwatch; the names are read after the id. */
typedef struct WatchList {
        uint64_t id;
        json_object *users;
} WatchList;

static const JsonDispatch watch_table[] = {
        { "id", json_type_int, json_dispatch_uint64, offsetof(WatchList, id), M, .reason = "bad id" },
        { "users", json_type_array, json_dispatch_borrow, offsetof(WatchList, users), M,
          .reason = "bad users" },
        {}
};

static const JsonDispatch who_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(who.id), M, .reason = "bad id" },
        { "after", json_type_int, json_dispatch_uint64, F(who.after), 0, .reason = "bad after" },
        { "limit", json_type_int, json_dispatch_uint64, F(who.limit), 0, .reason = "bad limit" },
        {}
};

typedef struct OnlineList {
        uint64_t id;
        json_object *users;
        uint64_t next;
} OnlineList;

static const JsonDispatch online_table[] = {
        { "id", json_type_int, json_dispatch_uint64, offsetof(OnlineList, id), M, .reason = "bad id" },
        { "users", json_type_array, json_dispatch_borrow, offsetof(OnlineList, users), M,
          .reason = "bad users" },
        { "next", json_type_int, json_dispatch_uint64, offsetof(OnlineList, next), 0, .reason = "bad next" },
        {}
};

static const JsonDispatch online_user_table[] = {
        { "user", json_type_string, json_dispatch_user, offsetof(OnlineUser, user), M },
        { "fingerprint", json_type_string, dispatch_fingerprint, offsetof(OnlineUser, fingerprint), M,
          .max = RSA_FINGERPRINT_MAX - 1 },
        {}
};

static const JsonDispatch lookup_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(lookup.id), M, .reason = "bad id" },
        { "user", json_type_string, json_dispatch_user, F(lookup.user), M, .reason = "bad user" },
        { "prekeys", json_type_boolean, json_dispatch_bool, F(lookup.prekeys), 0, .reason = "bad prekeys" },
        {}
};

static const JsonDispatch key_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(key.id), M, .reason = "bad id" },
        { "package", json_type_object, dispatch_package, F(key.package), M, .reason = "bad package" },
        { "bundle", json_type_string, dispatch_bundle, F(key.bundle), 0, .reason = "bad bundle" },
        {}
};

static const JsonDispatch send_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(send.id), M, .reason = "bad id" },
        { "envelope", json_type_object, dispatch_envelope, F(send.envelope), M, .reason = "bad envelope" },
        {}
};

static const JsonDispatch accepted_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(accepted.id), M, .reason = "bad id" },
        { "msg", json_type_string, dispatch_msg_id, F(accepted.msg), M, .reason = "bad msg" },
        { "queued", json_type_boolean, json_dispatch_bool, F(accepted.queued), M, .reason = "bad queued" },
        {}
};

static const JsonDispatch deliver_table[] = {
        { "seq", json_type_int, json_dispatch_uint64, F(deliver.seq), M, .reason = "bad seq" },
        { "envelope", json_type_object, dispatch_envelope, F(deliver.envelope), M, .reason = "bad envelope" },
        {}
};

static const JsonDispatch ack_table[] = {
        { "seq", json_type_int, json_dispatch_uint64, F(ack.seq), M, .reason = "bad seq" },
        {}
};

static const JsonDispatch receipt_table[] = {
        { "msg", json_type_string, dispatch_msg_id, F(receipt.msg), M, .reason = "bad msg" },
        { "status", json_type_string, dispatch_token, F(receipt.status), M,
          .reason = "bad status", .min = 1, .max = sizeof(((Frame *) NULL)->receipt.status) - 1 },
        {}
};

static const JsonDispatch publish_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(publish.id), M, .reason = "bad id" },
        { "spk", json_type_string, dispatch_spk, F(publish.spk), M, .reason = "bad spk" },
        { "opks", json_type_array, dispatch_opks, 0, M, .reason = "bad opks" },
        {}
};

static const JsonDispatch published_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(published.id), M, .reason = "bad id" },
        { "opks", json_type_int, json_dispatch_uint64, F(published.opks), M, .reason = "bad opks" },
        {}
};

static const JsonDispatch rotate_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(rotate.id), M, .reason = "bad id" },
        { "rotation", json_type_object, dispatch_rotation, F(rotate.rotation), M, .reason = "bad rotation" },
        {}
};

static const JsonDispatch rotated_table[] = {
        { "id", json_type_int, json_dispatch_uint64, F(rotated.id), M, .reason = "bad id" },
        { "package", json_type_object, dispatch_package, F(rotated.package), M, .reason = "bad package" },
        {}
};

/* Frames without members. */
static const JsonDispatch empty_table[] = {
        {}
};

#undef M
#undef F

/* Presence, watch, unwatch and online are not read by a single table. */
static const JsonDispatch *const frame_tables[_FRAME_TYPE_MAX] = {
        [FRAME_HELLO] = hello_table,
        [FRAME_AUTH] = auth_table,
        [FRAME_WELCOME] = welcome_table,
        [FRAME_ERROR] = error_table,
        [FRAME_LOOKUP] = lookup_table,
        [FRAME_KEY] = key_table,
        [FRAME_SEND] = send_table,
        [FRAME_ACCEPTED] = accepted_table,
        [FRAME_DELIVER] = deliver_table,
        [FRAME_ACK] = ack_table,
        [FRAME_SYNCED] = empty_table,
        [FRAME_RECEIPT] = receipt_table,
        [FRAME_PING] = empty_table,
        [FRAME_PONG] = empty_table,
        [FRAME_BYE] = empty_table,
        [FRAME_PUBLISH] = publish_table,
        [FRAME_PUBLISHED] = published_table,
        [FRAME_ROTATE] = rotate_table,
        [FRAME_ROTATED] = rotated_table,
        [FRAME_WHO] = who_table,
};

static const JsonDispatch key_package_table[] = {
        { "user", json_type_string, json_dispatch_user, offsetof(KeyPackage, user), 0 },
        { "key", json_type_string, json_dispatch_b64, offsetof(KeyPackage, key), 0,
          .min = 1, .max = KEY_DER_MAX, .len_offset = offsetof(KeyPackage, key_len) },
        { "registered", json_type_int, json_dispatch_uint64, offsetof(KeyPackage, registered), 0 },
        { "sig", json_type_string, json_dispatch_b64, offsetof(KeyPackage, sig), 0,
          .min = 1, .max = SIG_MAX, .len_offset = offsetof(KeyPackage, sig_len) },
        {}
};

int key_package_from_json(json_object *o, KeyPackage **ret) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        json_object *v;
        int r;

        if (!o || !json_object_is_type(o, json_type_object))
                return -EBADMSG;

        kp = calloc(1, sizeof(*kp));
        if (!kp)
                return -ENOMEM;

        /* A package's name is the server's word, not the peer's request:
         * a bad one makes the whole package malformed, not bad_username. */
        r = json_dispatch(o, key_package_table, JSON_MANDATORY, kp, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;
        /* Optional: only a key that was rotated has them. */
        if (json_object_object_get_ex(o, "rotations", &v)) {
                r = rotation_chain_from_json(v, &kp->rotations, &kp->n_rotations);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(kp);
        return 0;
}

static int parse_presence(Frame *f, json_object *o, const char **reason) {
        PresenceList list = {};
        const char *event = NULL;
        size_t n;
        int r;

        r = json_dispatch(o, presence_event_table, 0, &event, reason);
        if (r < 0)
                return r;
        if (event) {
                if (strcmp(event, "online") == 0) {
                        f->presence.kind = PRESENCE_ONLINE;
                        /* Version 2 names the user; version 1 sends the package. */
                        if (json_object_object_get_ex(o, "package", NULL))
                                return json_dispatch(o, presence_online_table, 0, f, reason);
                        return json_dispatch(o, presence_user_table, 0, f, reason);
                }
                if (strcmp(event, "offline") == 0) {
                        f->presence.kind = PRESENCE_OFFLINE;
                        return json_dispatch(o, presence_offline_table, 0, f, reason);
                }
                *reason = "bad event";
                return -EBADMSG;
        }

        f->presence.kind = PRESENCE_LIST;
        r = json_dispatch(o, presence_list_table, 0, &list, reason);
        if (r < 0)
                return r;
        f->presence.more = list.more;
        n = json_object_array_length(list.users);
        if (n == 0)
                return 0;
        /* n is bounded by the frame size: every element takes bytes. */
        f->presence.users = calloc(n, sizeof(KeyPackage *));
        if (!f->presence.users)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = key_package_from_json(json_object_array_get_idx(list.users, i),
                                          &f->presence.users[i]);
                if (r == -EBADMSG)
                        *reason = "bad users";
                if (r < 0)
                        return r;
                f->presence.n_users++;
        }
        return 0;
}

/* watch, unwatch: 1 or more valid user names (bounded by the frame). */
static int parse_watch(Frame *f, json_object *o, const char **reason) {
        WatchList list = {};
        size_t n;
        int r;

        r = json_dispatch(o, watch_table, 0, &list, reason);
        if (r < 0)
                return r;
        f->watch.id = list.id;
        n = json_object_array_length(list.users);
        if (n == 0) {
                *reason = "bad users";
                return -EBADMSG;
        }
        f->watch.users = calloc(n, sizeof(*f->watch.users));
        if (!f->watch.users)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(list.users, i);
                const char *name;
                size_t len;

                if (!json_object_is_type(v, json_type_string)) {
                        *reason = "bad users";
                        return -EBADMSG;
                }
                /* Any string that is no valid name, also one of the
                 * wrong length, as json_dispatch_user() has it. */
                if (json_string_get(v, 1, USERNAME_MAX, &name, &len) < 0 || !username_valid(name)) {
                        *reason = "bad username";
                        return -EINVAL;         /* bad_username, as for lookup */
                }
                memcpy(f->watch.users[i], name, len + 1);
                f->watch.n_users++;
        }
        return 0;
}

static int parse_online(Frame *f, json_object *o, const char **reason) {
        OnlineList list = {};
        size_t n;
        int r;

        r = json_dispatch(o, online_table, 0, &list, reason);
        if (r < 0)
                return r;
        f->online.id = list.id;
        f->online.next = list.next;
        n = json_object_array_length(list.users);
        if (n == 0)
                return 0;
        f->online.users = calloc(n, sizeof(OnlineUser));
        if (!f->online.users)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(list.users, i);

                r = json_object_is_type(v, json_type_object)
                        ? json_dispatch(v, online_user_table, JSON_MANDATORY, &f->online.users[i], NULL)
                        : -EBADMSG;
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        *reason = "bad users";
                        return -EBADMSG;
                }
                f->online.n_users++;
        }
        return 0;
}

static int parse_payload(Frame *f, json_object *o, const char **reason) {
        switch (f->type) {
        case FRAME_PRESENCE:
                return parse_presence(f, o, reason);
        case FRAME_WATCH:
        case FRAME_UNWATCH:
                return parse_watch(f, o, reason);
        case FRAME_ONLINE:
                return parse_online(f, o, reason);
        default:
                break;
        }
        return json_dispatch(o, frame_tables[f->type], 0, f, reason);
}

/* The id of a request, so that even the error refusing the rest of it
 * answers it. */
static const JsonDispatch request_id_table[] = {
        { "id", json_type_int, json_dispatch_uint64, 0, JSON_MANDATORY },
        {}
};

int frame_parse_request(const void *payload, size_t len, Frame **ret, const char **ret_reason,
                        bool *ret_has_id, uint64_t *ret_id) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *reason = NULL, *type;
        json_object *v;
        uint64_t id;
        FrameType t;
        int r;

        if (ret_has_id)
                *ret_has_id = false;
        /* No valid frame nests deeper than 5 (presence, users, package,
         * rotations, statement). */
        r = json_parse_strict(payload, len, JSON_DEPTH_DEFAULT, &o, &reason);
        if (r < 0)
                goto finish;

        if (!json_object_object_get_ex(o, "type", &v) || !v || !json_object_is_type(v, json_type_string)) {
                reason = "missing type";
                r = -EBADMSG;
                goto finish;
        }
        type = json_object_get_string(v);
        t = frame_type_from_string(type);
        if (t < 0 || strlen(type) != (size_t) json_object_get_string_len(v)) {
                reason = "unknown type";
                r = -EBADMSG;
                goto finish;
        }
        if ((t == FRAME_LOOKUP || t == FRAME_SEND || t == FRAME_PUBLISH || t == FRAME_ROTATE ||
             t == FRAME_WATCH || t == FRAME_UNWATCH || t == FRAME_WHO) && ret_has_id && ret_id &&
            json_dispatch(o, request_id_table, 0, &id, NULL) >= 0) {
                *ret_has_id = true;
                *ret_id = id;
        }

        f = calloc(1, sizeof(*f));
        if (!f) {
                r = -ENOMEM;
                goto finish;
        }
        f->type = t;

        r = parse_payload(f, o, &reason);
        if (r < 0)
                goto finish;

        *ret = TAKE_PTR(f);
        return 0;

finish:
        if (ret_reason)
                *ret_reason = r == -ENOMEM ? "out of memory" : reason;
        return r;
}

int frame_parse(const void *payload, size_t len, Frame **ret, const char **ret_reason) {
        return frame_parse_request(payload, len, ret, ret_reason, NULL, NULL);
}

/* Builders. The member adders of json-util.h consume their value whatever
 * happens, so a failed builder leaks nothing. */

static json_object *new_frame(FrameType t) {
        json_object *o = json_object_new_object();

        if (o && json_add_string(o, "type", frame_type_to_string(t)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

int key_package_to_json(const KeyPackage *kp, json_object **ret) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        r = json_add_string(o, "user", kp->user);
        if (r >= 0)
                r = json_add_b64(o, "key", kp->key, kp->key_len);
        if (r >= 0)
                r = json_add_uint64(o, "registered", kp->registered);
        if (r >= 0)
                r = json_add_b64(o, "sig", kp->sig, kp->sig_len);
        if (r >= 0 && kp->n_rotations > 0) {
                json_object *a = NULL;

                r = rotation_chain_to_json(kp->rotations, kp->n_rotations, &a);
                if (r >= 0)
                        r = json_add(o, "rotations", a);
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int add_package(json_object *o, const char *key, const KeyPackage *kp) {
        json_object *v = NULL;
        int r;

        if (!kp)
                return -EINVAL;
        r = key_package_to_json(kp, &v);
        if (r < 0)
                return r;
        return json_add(o, key, v);
}

json_object *frame_new_hello(const uint8_t *server_key, size_t server_key_len,
                             const uint8_t nonce[NONCE_LEN]) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_HELLO);
        json_object *suites;

        if (!o ||
            json_add_uint64(o, "proto", PROTOCOL_VERSION) < 0 ||
            json_add_b64(o, "server_key", server_key, server_key_len) < 0 ||
            json_add_b64(o, "nonce", nonce, NONCE_LEN) < 0)
                return NULL;

        suites = json_object_new_array();
        if (json_add(o, "suites", suites) < 0 ||
            json_array_add(suites, json_object_new_string(PROTOCOL_SUITE)) < 0 ||
            json_add_uint64(o, "proto_max", PROTOCOL_VERSION_MAX) < 0)
                return NULL;
        return TAKE_PTR(o);
}

int frame_hello_add_suite(json_object *hello, const char *suite) {
        json_object *suites;

        if (!json_object_object_get_ex(hello, "suites", &suites))
                return -EINVAL;
        return json_array_add(suites, json_object_new_string(suite));
}

json_object *frame_new_auth(const char *user, const uint8_t *key, size_t key_len,
                            const uint8_t nonce[NONCE_LEN], bool receive,
                            const uint8_t *sig, size_t sig_len) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_AUTH);

        if (!o ||
            json_add_string(o, "user", user) < 0 ||
            json_add_b64(o, "key", key, key_len) < 0 ||
            json_add_b64(o, "nonce", nonce, NONCE_LEN) < 0 ||
            json_add_bool(o, "receive", receive) < 0 ||
            json_add_b64(o, "sig", sig, sig_len) < 0)
                return NULL;
        return TAKE_PTR(o);
}

int frame_auth_add_code(json_object *auth, const char *code) {
        return json_add_string(auth, "code", code);
}

int frame_auth_add_proto(json_object *auth, unsigned proto) {
        return json_add_uint64(auth, "proto", proto);
}

json_object *frame_new_welcome(const uint8_t *sig, size_t sig_len, const KeyPackage *self,
                               const char *session, const FrameLimits *limits) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_WELCOME);
        json_object *l;

        if (!o ||
            json_add_b64(o, "sig", sig, sig_len) < 0 ||
            add_package(o, "self", self) < 0 ||
            json_add_string(o, "session", session) < 0)
                return NULL;

        l = json_object_new_object();
        if (json_add(o, "limits", l) < 0 ||
            json_add_uint64(l, "max_frame", limits->max_frame) < 0 ||
            json_add_uint64(l, "max_text", limits->max_text) < 0 ||
            json_add_uint64(l, "queue_ttl", limits->queue_ttl) < 0 ||
            (limits->idle_timeout > 0 && json_add_uint64(l, "idle_timeout", limits->idle_timeout) < 0) ||
            (limits->max_opks > 0 && json_add_uint64(l, "max_opks", limits->max_opks) < 0))
                return NULL;
        return TAKE_PTR(o);
}

int frame_welcome_add_opks(json_object *welcome, uint64_t opks) {
        return json_add_uint64(welcome, "opks", opks);
}

int frame_welcome_add_welcome_key(json_object *welcome, const WelcomeKey *wk) {
        json_object *o = json_object_new_object();

        if (json_add(welcome, "welcome_key", o) < 0 ||
            json_add_b64(o, "key", wk->key, ED25519_KEY_LEN) < 0 ||
            json_add_uint64(o, "not_after", wk->not_after) < 0 ||
            json_add_b64(o, "sig", wk->sig, wk->sig_len) < 0)
                return -ENOMEM;
        return 0;
}

json_object *frame_new_error(const uint64_t *id, const char *code, const char *message) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ERROR);

        if (!o ||
            (id && json_add_uint64(o, "id", *id) < 0) ||
            json_add_string(o, "code", code) < 0 ||
            (message && json_add_string(o, "message", message) < 0))
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_rate_limited(const uint64_t *id, const char *message, uint64_t retry_after) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_error(id, ERR_RATE_LIMITED, message);

        if (!o || json_add_uint64(o, "retry_after", retry_after < 1 ? 1 : retry_after) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_presence_list(KeyPackage *const *users, size_t n, bool more) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PRESENCE);
        json_object *a;

        if (!o)
                return NULL;
        a = json_object_new_array();
        if (json_add(o, "users", a) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                json_object *v = NULL;

                if (key_package_to_json(users[i], &v) < 0 || json_array_add(a, v) < 0)
                        return NULL;
        }
        if (more && json_add_bool(o, "more", true) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_presence_online(const KeyPackage *kp) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PRESENCE);

        if (!o ||
            json_add_string(o, "event", "online") < 0 ||
            add_package(o, "package", kp) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_presence_user(const char *user, const char *fingerprint) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PRESENCE);

        if (!o ||
            json_add_string(o, "event", "online") < 0 ||
            json_add_string(o, "user", user) < 0 ||
            json_add_string(o, "fingerprint", fingerprint) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_watch(FrameType t, uint64_t id, const char *const *users, size_t n) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(t);
        json_object *a;

        if (!o || json_add_uint64(o, "id", id) < 0)
                return NULL;
        a = json_object_new_array();
        if (json_add(o, "users", a) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (json_array_add(a, json_object_new_string(users[i])) < 0)
                        return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_who(uint64_t id, uint64_t after, uint64_t limit) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_WHO);

        if (!o ||
            json_add_uint64(o, "id", id) < 0 ||
            (after > 0 && json_add_uint64(o, "after", after) < 0) ||
            (limit > 0 && json_add_uint64(o, "limit", limit) < 0))
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_online(uint64_t id, uint64_t next) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ONLINE);

        if (!o ||
            json_add_uint64(o, "id", id) < 0 ||
            json_add(o, "users", json_object_new_array()) < 0 ||
            (next > 0 && json_add_uint64(o, "next", next) < 0))
                return NULL;
        return TAKE_PTR(o);
}

int frame_online_add(json_object *online, const char *user, const char *fingerprint) {
        json_object *a, *u;
        int r;

        if (!json_object_object_get_ex(online, "users", &a))
                return -EINVAL;
        u = json_object_new_object();
        r = json_add_string(u, "user", user);
        if (r >= 0)
                r = json_add_string(u, "fingerprint", fingerprint);
        if (r < 0) {
                json_object_put(u);
                return r;
        }
        return json_array_add(a, u);
}

json_object *frame_new_presence_offline(const char *user) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PRESENCE);

        if (!o ||
            json_add_string(o, "event", "offline") < 0 ||
            json_add_string(o, "user", user) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_lookup(uint64_t id, const char *user) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_LOOKUP);

        if (!o ||
            json_add_uint64(o, "id", id) < 0 ||
            json_add_string(o, "user", user) < 0)
                return NULL;
        return TAKE_PTR(o);
}

int frame_lookup_add_prekeys(json_object *lookup) {
        return json_add_bool(lookup, "prekeys", true);
}

/* A binary member of suite 2, in base64. */
static int add_binary(json_object *o, const char *key, int r, uint8_t *data, size_t len) {
        _cleanup_(freep) uint8_t *p = data;

        if (r < 0)
                return r;
        return json_add_b64(o, key, p, len);
}

json_object *frame_new_key(uint64_t id, const KeyPackage *kp) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_KEY);

        if (!o ||
            json_add_uint64(o, "id", id) < 0 ||
            add_package(o, "package", kp) < 0)
                return NULL;
        return TAKE_PTR(o);
}

int frame_key_add_bundle(json_object *key, const PrekeyBundle *bundle) {
        uint8_t *data = NULL;
        size_t len = 0;
        int r;

        r = prekey_bundle_encode(bundle, &data, &len);
        return add_binary(key, "bundle", r, data, len);
}

json_object *frame_new_publish(uint64_t id, const SignedPrekey *spk, const OneTimePrekey *opks,
                               size_t n) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PUBLISH);
        uint8_t *data = NULL;
        size_t len = 0;
        json_object *a;
        int r;

        if (!o || n > PREKEYS_PUBLISH_MAX || json_add_uint64(o, "id", id) < 0)
                return NULL;
        r = signed_prekey_encode(spk, &data, &len);
        if (add_binary(o, "spk", r, data, len) < 0)
                return NULL;
        a = json_object_new_array();
        if (json_add(o, "opks", a) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(freep) char *b64 = NULL;

                data = NULL;
                r = one_time_prekey_encode(&opks[i], &data, &len);
                if (r >= 0)
                        r = b64_encode(data, len, &b64);
                free(data);
                if (r < 0 || json_array_add(a, json_object_new_string(b64)) < 0)
                        return NULL;
        }
        return TAKE_PTR(o);
}

json_object *frame_new_published(uint64_t id, uint64_t opks) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PUBLISHED);

        if (!o ||
            json_add_uint64(o, "id", id) < 0 ||
            json_add_uint64(o, "opks", opks) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static json_object *new_envelope_frame(FrameType t, const char *key, uint64_t n,
                                       json_object *envelope_json) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(t);

        if (!o || !envelope_json ||
            json_add_uint64(o, key, n) < 0 ||
            json_add(o, "envelope", json_object_get(envelope_json)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_send(uint64_t id, json_object *envelope_json) {
        return new_envelope_frame(FRAME_SEND, "id", id, envelope_json);
}

json_object *frame_new_accepted(uint64_t id, const char *msg, bool queued) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ACCEPTED);

        if (!o ||
            json_add_uint64(o, "id", id) < 0 ||
            json_add_string(o, "msg", msg) < 0 ||
            json_add_bool(o, "queued", queued) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_deliver(uint64_t seq, json_object *envelope_json) {
        return new_envelope_frame(FRAME_DELIVER, "seq", seq, envelope_json);
}

json_object *frame_new_ack(uint64_t seq) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ACK);

        if (!o || json_add_uint64(o, "seq", seq) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_synced(void) {
        return new_frame(FRAME_SYNCED);
}

json_object *frame_new_receipt(const char *msg, const char *status) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_RECEIPT);

        if (!o ||
            json_add_string(o, "msg", msg) < 0 ||
            json_add_string(o, "status", status) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_rotate(uint64_t id, const Rotation *rot) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ROTATE);
        json_object *v = NULL;

        if (!o ||
            json_add_uint64(o, "id", id) < 0 ||
            rotation_to_json(rot, &v) < 0 ||
            json_add(o, "rotation", v) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_rotated(uint64_t id, const KeyPackage *kp) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ROTATED);

        if (!o ||
            json_add_uint64(o, "id", id) < 0 ||
            add_package(o, "package", kp) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_simple(FrameType t) {
        if (!frame_type_to_string(t))
                return NULL;
        return new_frame(t);
}

int frame_to_wire(json_object *o, size_t max_frame, uint8_t **ret, size_t *ret_len) {
        const char *s;
        size_t len;

        s = json_plain_text(o, &len);
        if (!s)
                return -ENOMEM;
        return frame_encode(s, len, max_frame, ret, ret_len);
}

int frame_deliver_to_wire(uint64_t seq, const char *envelope, size_t envelope_len, size_t max_frame,
                          uint8_t **ret, size_t *ret_len) {
        /* What json-c writes for frame_new_deliver() (members in the order
         * added, no spaces), so that both ways give the same bytes. The
         * envelope is not checked here: the caller vouches that it is an
         * envelope's JSON text (see codec.h). */
        char head[sizeof("{\"type\":\"deliver\",\"seq\":,\"envelope\":") + 20];
        int n;

        n = snprintf(head, sizeof(head), "{\"type\":\"deliver\",\"seq\":%" PRIu64 ",\"envelope\":", seq);
        if (n < 0 || (size_t) n >= sizeof(head))
                return -EINVAL;

        const struct iovec iov[] = {
                { .iov_base = head, .iov_len = (size_t) n },
                { .iov_base = (void *) envelope, .iov_len = envelope_len },
                { .iov_base = (void *) "}", .iov_len = 1 },
        };
        return frame_encode_iov(iov, ELEMENTSOF(iov), max_frame, ret, ret_len);
}

int frame_accepted_to_wire(uint64_t id, const char *msg, bool queued,
                           uint8_t buf[static FRAME_ACCEPTED_WIRE_MAX]) {
        char *payload = (char *) buf + 4;
        size_t n;
        int k;

        /* What json-c writes for frame_new_accepted() (members in the
         * order added, no spaces, '/' not escaped). Only base64 goes into
         * the string unescaped. */
        if (strlen(msg) != MSG_ID_B64_LEN || strspn(msg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                           "0123456789+/=") != MSG_ID_B64_LEN)
                return -EINVAL;
        k = snprintf(payload, FRAME_ACCEPTED_WIRE_MAX - 4,
                     "{\"type\":\"accepted\",\"id\":%" PRIu64 ",\"msg\":\"%s\",\"queued\":%s}", id, msg,
                     queued ? "true" : "false");
        if (k < 0 || (size_t) k >= FRAME_ACCEPTED_WIRE_MAX - 4)
                return -EINVAL;
        n = (size_t) k;
        buf[0] = 0;
        buf[1] = 0;
        buf[2] = (uint8_t) (n >> 8);
        buf[3] = (uint8_t) n;
        return (int) (4 + n);
}
