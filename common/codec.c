/* SPDX-License-Identifier: MIT */
/*
 * The JSON frame codec. Everything that comes off the wire goes through
 * frame_parse() before any other code looks at it, so this file is where
 * hostile input is turned into typed, bounded, validated values: after it,
 * nobody needs to check a JSON type, a base64 string or a size again.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "codec.h"
#include "frame.h"
#include "macro.h"
#include "protocol.h"
#include "json.h"
#include "util.h"

/* No valid frame nests deeper than 3 (presence -> users -> package); the
 * bound only has to stop a peer from making json-c recurse. */
#define JSON_DEPTH_MAX 16

/* JSON integers that survive a trip through a double: 0..2^53-1. */
#define JSON_UINT_MAX ((UINT64_C(1) << 53) - 1)

/* Binary members: a 4096-bit RSA SubjectPublicKeyInfo is 550 bytes DER and
 * its signatures are 512 bytes; leave room but keep a bound. */
#define KEY_DER_MAX 1024
#define SIG_MAX 512

#define MESSAGE_MAX 1024        /* error.message, bytes */
#define SUITE_NAME_MAX 63
#define SUITES_MAX 16
#define SESSION_MAX 64

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
        default:
                break;
        }

        free(f);
        return NULL;
}

/*
 * Member readers. Each returns 0, -EBADMSG (with *reason set to the static
 * string the caller passed, which names the member and never quotes input),
 * -EINVAL for a bad user name, or -ENOMEM.
 */

static json_object *member(json_object *o, const char *key, json_type type) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !v || !json_object_is_type(v, type))
                return NULL;
        return v;
}

static int fail(const char **reason, const char *why) {
        *reason = why;
        return -EBADMSG;
}

static int read_uint(json_object *o, const char *key, const char *why, const char **reason,
                     uint64_t *ret) {
        json_object *v = member(o, key, json_type_int);
        int64_t i;

        if (!v)
                return fail(reason, why);
        /* json-c saturates what int64 cannot hold, so the range check also
         * catches huge numbers. */
        i = json_object_get_int64(v);
        if (i < 0 || (uint64_t) i > JSON_UINT_MAX)
                return fail(reason, why);
        *ret = (uint64_t) i;
        return 0;
}

static int read_bool(json_object *o, const char *key, const char *why, const char **reason,
                     bool *ret) {
        json_object *v = member(o, key, json_type_boolean);

        if (!v)
                return fail(reason, why);
        *ret = json_object_get_boolean(v);
        return 0;
}

/* A string of min..max bytes of valid UTF-8 without NUL (json-c lets
 * "\u0000" through, which would silently truncate the C string). */
static int read_string(json_object *o, const char *key, size_t min, size_t max,
                       const char *why, const char **reason, const char **ret, size_t *ret_len) {
        json_object *v = member(o, key, json_type_string);
        const char *s;
        size_t len;

        if (!v)
                return fail(reason, why);
        s = json_object_get_string(v);
        len = (size_t) json_object_get_string_len(v);
        if (len < min || len > max || strlen(s) != len || !utf8_valid(s, len))
                return fail(reason, why);
        *ret = s;
        if (ret_len)
                *ret_len = len;
        return 0;
}

/* [a-z_]{1,size-1}, copied into out (error codes, receipt status). */
static int read_token(json_object *o, const char *key, char *out, size_t size,
                      const char *why, const char **reason) {
        const char *s;
        size_t len;
        int r;

        r = read_string(o, key, 1, size - 1, why, reason, &s, &len);
        if (r < 0)
                return r;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
                        return fail(reason, why);
        memcpy(out, s, len + 1);
        return 0;
}

/* A missing or non-string user is a malformed frame; a string that is not
 * a valid name is -EINVAL, which the relay answers with bad_username. */
static int read_user(json_object *o, const char *key, char out[static USERNAME_MAX + 1],
                     const char **reason) {
        json_object *v = member(o, key, json_type_string);
        const char *s;
        size_t len;

        if (!v)
                return fail(reason, "bad user");
        s = json_object_get_string(v);
        len = (size_t) json_object_get_string_len(v);
        if (len > USERNAME_MAX || strlen(s) != len || !username_valid(s)) {
                *reason = "bad username";
                return -EINVAL;
        }
        memcpy(out, s, len + 1);
        return 0;
}

/* Strict base64 of min..max bytes. The encoded length is checked before
 * decoding so that the decoder never works on more than it must. */
static int read_b64(json_object *o, const char *key, size_t min, size_t max,
                    const char *why, const char **reason, uint8_t **ret, size_t *ret_len) {
        _cleanup_(freep) uint8_t *data = NULL;
        const char *s;
        size_t slen, len;
        int r;

        r = read_string(o, key, 1, 4 * ((max + 2) / 3), why, reason, &s, &slen);
        if (r < 0)
                return r;
        r = b64_decode(s, slen, &data, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || len < min || len > max)
                return fail(reason, why);
        *ret = TAKE_PTR(data);
        *ret_len = len;
        return 0;
}

static int read_b64_fixed(json_object *o, const char *key, uint8_t *out, size_t n,
                          const char *why, const char **reason) {
        _cleanup_(freep) uint8_t *data = NULL;
        size_t len;
        int r;

        r = read_b64(o, key, n, n, why, reason, &data, &len);
        if (r < 0)
                return r;
        memcpy(out, data, n);
        return 0;
}

/* A message id: base64 of MSG_ID_LEN bytes, kept in its text form. */
static int read_msg_id(json_object *o, const char *key, char out[static 32],
                       const char **reason) {
        _cleanup_(freep) uint8_t *id = NULL;
        const char *s;
        size_t len, id_len;
        int r;

        r = read_string(o, key, 1, MSG_ID_B64_LEN, "bad msg", reason, &s, &len);
        if (r < 0)
                return r;
        r = b64_decode(s, len, &id, &id_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || id_len != MSG_ID_LEN)
                return fail(reason, "bad msg");
        memcpy(out, s, len + 1);
        return 0;
}

static int read_session(json_object *o, const char *key, char out[static SESSION_MAX + 1],
                        const char **reason) {
        const char *s;
        size_t len;
        int r;

        r = read_string(o, key, 1, SESSION_MAX, "bad session", reason, &s, &len);
        if (r < 0)
                return r;
        for (size_t i = 0; i < len; i++)
                if (s[i] < 0x21 || s[i] > 0x7e)
                        return fail(reason, "bad session");
        memcpy(out, s, len + 1);
        return 0;
}

int key_package_from_json(json_object *o, KeyPackage **ret) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        const char *reason = NULL;
        int r;

        if (!o || !json_object_is_type(o, json_type_object))
                return -EBADMSG;

        kp = calloc(1, sizeof(*kp));
        if (!kp)
                return -ENOMEM;

        /* A package's name is the server's word, not the peer's request:
         * a bad one makes the whole package malformed. */
        r = read_user(o, "user", kp->user, &reason);
        if (r == -EINVAL)
                return -EBADMSG;
        if (r < 0)
                return r;
        r = read_b64(o, "key", 1, KEY_DER_MAX, "bad key", &reason, &kp->key, &kp->key_len);
        if (r < 0)
                return r;
        r = read_uint(o, "registered", "bad registered", &reason, &kp->registered);
        if (r < 0)
                return r;
        r = read_b64(o, "sig", 1, SIG_MAX, "bad sig", &reason, &kp->sig, &kp->sig_len);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(kp);
        return 0;
}

static int read_package(json_object *o, const char *key, const char *why, const char **reason,
                        KeyPackage **ret) {
        int r;

        r = key_package_from_json(member(o, key, json_type_object), ret);
        if (r == -EBADMSG)
                return fail(reason, why);
        return r;
}

static int read_envelope(json_object *o, Envelope **ret_envelope, json_object **ret_raw,
                         const char **reason) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        json_object *v = member(o, "envelope", json_type_object);
        int r;

        if (!v)
                return fail(reason, "bad envelope");
        r = envelope_from_json(v, &e, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(reason, "bad envelope");

        *ret_envelope = TAKE_PTR(e);
        *ret_raw = json_object_get(v);
        return 0;
}

static int parse_hello(Frame *f, json_object *o, const char **reason) {
        json_object *suites;
        uint64_t proto;
        size_t n;
        int r;

        r = read_uint(o, "proto", "bad proto", reason, &proto);
        if (r < 0)
                return r;
        if (proto > UINT_MAX)
                return fail(reason, "bad proto");
        f->hello.proto = (unsigned) proto;

        r = read_b64(o, "server_key", 1, KEY_DER_MAX, "bad server_key", reason,
                     &f->hello.server_key, &f->hello.server_key_len);
        if (r < 0)
                return r;
        r = read_b64_fixed(o, "nonce", f->hello.nonce, NONCE_LEN, "bad nonce", reason);
        if (r < 0)
                return r;

        suites = member(o, "suites", json_type_array);
        if (!suites)
                return fail(reason, "bad suites");
        n = json_object_array_length(suites);
        if (n < 1 || n > SUITES_MAX)
                return fail(reason, "bad suites");
        f->hello.suites = calloc(n, sizeof(char *));
        if (!f->hello.suites)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(suites, i);
                const char *s;
                size_t len;

                if (!v || !json_object_is_type(v, json_type_string))
                        return fail(reason, "bad suites");
                s = json_object_get_string(v);
                len = (size_t) json_object_get_string_len(v);
                if (len == 0 || len > SUITE_NAME_MAX || strlen(s) != len)
                        return fail(reason, "bad suites");
                for (size_t j = 0; j < len; j++)
                        if (s[j] < 0x21 || s[j] > 0x7e)
                                return fail(reason, "bad suites");
                f->hello.suites[i] = strdup(s);
                if (!f->hello.suites[i])
                        return -ENOMEM;
                f->hello.n_suites++;
        }
        return 0;
}

static int parse_auth(Frame *f, json_object *o, const char **reason) {
        int r;

        r = read_user(o, "user", f->auth.user, reason);
        if (r < 0)
                return r;
        r = read_b64(o, "key", 1, KEY_DER_MAX, "bad key", reason, &f->auth.key, &f->auth.key_len);
        if (r < 0)
                return r;
        r = read_b64_fixed(o, "nonce", f->auth.nonce, NONCE_LEN, "bad nonce", reason);
        if (r < 0)
                return r;
        r = read_bool(o, "receive", "bad receive", reason, &f->auth.receive);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(o, "code", NULL)) {
                const char *code;
                size_t len;

                r = read_string(o, "code", 1, RESET_CODE_MAX, "bad code", reason, &code, &len);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < len; i++)
                        if (code[i] < 0x21 || code[i] > 0x7e)
                                return fail(reason, "bad code");
                memcpy(f->auth.code, code, len + 1);
        }
        return read_b64(o, "sig", 1, SIG_MAX, "bad sig", reason, &f->auth.sig, &f->auth.sig_len);
}

static int parse_welcome(Frame *f, json_object *o, const char **reason) {
        json_object *limits;
        int r;

        r = read_b64(o, "sig", 1, SIG_MAX, "bad sig", reason, &f->welcome.sig, &f->welcome.sig_len);
        if (r < 0)
                return r;
        r = read_package(o, "self", "bad self", reason, &f->welcome.self);
        if (r < 0)
                return r;
        r = read_session(o, "session", f->welcome.session, reason);
        if (r < 0)
                return r;

        limits = member(o, "limits", json_type_object);
        if (!limits)
                return fail(reason, "bad limits");
        r = read_uint(limits, "max_frame", "bad limits", reason, &f->welcome.limits.max_frame);
        if (r < 0)
                return r;
        r = read_uint(limits, "max_text", "bad limits", reason, &f->welcome.limits.max_text);
        if (r < 0)
                return r;
        r = read_uint(limits, "queue_ttl", "bad limits", reason, &f->welcome.limits.queue_ttl);
        if (r < 0)
                return r;
        /* Optional, so that a client can keep a session alive. */
        if (json_object_object_get_ex(limits, "idle_timeout", NULL))
                return read_uint(limits, "idle_timeout", "bad limits", reason,
                                 &f->welcome.limits.idle_timeout);
        return 0;
}

static int parse_error(Frame *f, json_object *o, const char **reason) {
        int r;

        if (json_object_object_get_ex(o, "id", NULL)) {
                r = read_uint(o, "id", "bad id", reason, &f->error.id);
                if (r < 0)
                        return r;
                f->error.has_id = true;
        }

        r = read_token(o, "code", f->error.code, sizeof(f->error.code), "bad code", reason);
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "message", NULL)) {
                const char *s;
                size_t len;

                r = read_string(o, "message", 0, MESSAGE_MAX, "bad message", reason, &s, &len);
                if (r < 0)
                        return r;
                f->error.message = strndup(s, len);
                if (!f->error.message)
                        return -ENOMEM;
        }

        /* rate_limited: when to try again. */
        if (json_object_object_get_ex(o, "retry_after", NULL))
                return read_uint(o, "retry_after", "bad retry_after", reason, &f->error.retry_after);
        return 0;
}

static int parse_presence(Frame *f, json_object *o, const char **reason) {
        json_object *users;
        const char *event;
        size_t n;
        int r;

        if (json_object_object_get_ex(o, "event", NULL)) {
                r = read_string(o, "event", 1, 16, "bad event", reason, &event, NULL);
                if (r < 0)
                        return r;
                if (strcmp(event, "online") == 0) {
                        f->presence.kind = PRESENCE_ONLINE;
                        return read_package(o, "package", "bad package", reason,
                                            &f->presence.package);
                }
                if (strcmp(event, "offline") == 0) {
                        f->presence.kind = PRESENCE_OFFLINE;
                        return read_user(o, "user", f->presence.user, reason);
                }
                return fail(reason, "bad event");
        }

        f->presence.kind = PRESENCE_LIST;
        users = member(o, "users", json_type_array);
        if (!users)
                return fail(reason, "bad users");
        /* "more" is optional; when present it must be a boolean. */
        if (json_object_object_get_ex(o, "more", NULL) &&
            read_bool(o, "more", "bad more", reason, &f->presence.more) < 0)
                return -EBADMSG;
        n = json_object_array_length(users);
        if (n == 0)
                return 0;
        /* n is bounded by the frame size: every element takes bytes. */
        f->presence.users = calloc(n, sizeof(KeyPackage *));
        if (!f->presence.users)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = key_package_from_json(json_object_array_get_idx(users, i),
                                          &f->presence.users[i]);
                if (r == -EBADMSG)
                        return fail(reason, "bad users");
                if (r < 0)
                        return r;
                f->presence.n_users++;
        }
        return 0;
}

static int parse_payload(Frame *f, json_object *o, const char **reason) {
        int r;

        switch (f->type) {
        case FRAME_HELLO:
                return parse_hello(f, o, reason);
        case FRAME_AUTH:
                return parse_auth(f, o, reason);
        case FRAME_WELCOME:
                return parse_welcome(f, o, reason);
        case FRAME_ERROR:
                return parse_error(f, o, reason);
        case FRAME_PRESENCE:
                return parse_presence(f, o, reason);
        case FRAME_LOOKUP:
                r = read_uint(o, "id", "bad id", reason, &f->lookup.id);
                if (r < 0)
                        return r;
                return read_user(o, "user", f->lookup.user, reason);
        case FRAME_KEY:
                r = read_uint(o, "id", "bad id", reason, &f->key.id);
                if (r < 0)
                        return r;
                return read_package(o, "package", "bad package", reason, &f->key.package);
        case FRAME_SEND:
                r = read_uint(o, "id", "bad id", reason, &f->send.id);
                if (r < 0)
                        return r;
                return read_envelope(o, &f->send.envelope, &f->send.raw, reason);
        case FRAME_ACCEPTED:
                r = read_uint(o, "id", "bad id", reason, &f->accepted.id);
                if (r < 0)
                        return r;
                r = read_msg_id(o, "msg", f->accepted.msg, reason);
                if (r < 0)
                        return r;
                return read_bool(o, "queued", "bad queued", reason, &f->accepted.queued);
        case FRAME_DELIVER:
                r = read_uint(o, "seq", "bad seq", reason, &f->deliver.seq);
                if (r < 0)
                        return r;
                return read_envelope(o, &f->deliver.envelope, &f->deliver.raw, reason);
        case FRAME_ACK:
                return read_uint(o, "seq", "bad seq", reason, &f->ack.seq);
        case FRAME_RECEIPT:
                r = read_msg_id(o, "msg", f->receipt.msg, reason);
                if (r < 0)
                        return r;
                return read_token(o, "status", f->receipt.status, sizeof(f->receipt.status),
                                  "bad status", reason);
        case FRAME_SYNCED:
        case FRAME_PING:
        case FRAME_PONG:
        case FRAME_BYE:
                return 0;
        default:
                return fail(reason, "unknown type");
        }
}

static int parse_json(const char *s, size_t len, json_object **ret, const char **reason) {
        return json_parse_strict(s, len, JSON_DEPTH_MAX, ret, reason);
}

int frame_parse_request(const void *payload, size_t len, Frame **ret, const char **ret_reason,
                        bool *ret_has_id, uint64_t *ret_id) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        _cleanup_(frame_freep) Frame *f = NULL;
        const char *reason = NULL;
        json_object *type;
        uint64_t id;
        FrameType t;
        int r;

        if (ret_has_id)
                *ret_has_id = false;
        r = parse_json(payload, len, &o, &reason);
        if (r < 0)
                goto finish;

        type = member(o, "type", json_type_string);
        if (!type) {
                r = fail(&reason, "missing type");
                goto finish;
        }
        t = frame_type_from_string(json_object_get_string(type));
        if (t < 0 || strlen(json_object_get_string(type)) !=
                     (size_t) json_object_get_string_len(type)) {
                r = fail(&reason, "unknown type");
                goto finish;
        }
        /* The id of a request, so that even the error refusing the rest
         * of it answers it. */
        if ((t == FRAME_LOOKUP || t == FRAME_SEND) && ret_has_id && ret_id &&
            read_uint(o, "id", NULL, &(const char *) { NULL }, &id) >= 0) {
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

/*
 * Builders. Member adders return 0 or -ENOMEM and always consume v: on
 * failure json-c leaves the value with the caller, so it is released here.
 */

static int put(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int put_string(json_object *o, const char *key, const char *s) {
        if (!s)
                return -EINVAL;
        return put(o, key, json_object_new_string(s));
}

static int put_uint(json_object *o, const char *key, uint64_t v) {
        return put(o, key, json_object_new_uint64(v));
}

static int put_bool(json_object *o, const char *key, bool b) {
        return put(o, key, json_object_new_boolean(b));
}

static int put_b64(json_object *o, const char *key, const void *data, size_t len) {
        _cleanup_(freep) char *s = NULL;
        int r;

        r = b64_encode(data, len, &s);
        if (r < 0)
                return r;
        return put_string(o, key, s);
}

static json_object *new_frame(FrameType t) {
        json_object *o = json_object_new_object();

        if (o && put_string(o, "type", frame_type_to_string(t)) < 0) {
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

        r = put_string(o, "user", kp->user);
        if (r >= 0)
                r = put_b64(o, "key", kp->key, kp->key_len);
        if (r >= 0)
                r = put_uint(o, "registered", kp->registered);
        if (r >= 0)
                r = put_b64(o, "sig", kp->sig, kp->sig_len);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int put_package(json_object *o, const char *key, const KeyPackage *kp) {
        json_object *v = NULL;
        int r;

        if (!kp)
                return -EINVAL;
        r = key_package_to_json(kp, &v);
        if (r < 0)
                return r;
        return put(o, key, v);
}

json_object *frame_new_hello(const uint8_t *server_key, size_t server_key_len,
                             const uint8_t nonce[NONCE_LEN]) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_HELLO);
        json_object *suites, *suite;

        if (!o ||
            put_uint(o, "proto", PROTOCOL_VERSION) < 0 ||
            put_b64(o, "server_key", server_key, server_key_len) < 0 ||
            put_b64(o, "nonce", nonce, NONCE_LEN) < 0)
                return NULL;

        suites = json_object_new_array();
        if (put(o, "suites", suites) < 0)
                return NULL;
        suite = json_object_new_string(PROTOCOL_SUITE);
        if (!suite)
                return NULL;
        if (json_object_array_add(suites, suite) < 0) {
                json_object_put(suite);
                return NULL;
        }
        return TAKE_PTR(o);
}

json_object *frame_new_auth(const char *user, const uint8_t *key, size_t key_len,
                            const uint8_t nonce[NONCE_LEN], bool receive,
                            const uint8_t *sig, size_t sig_len) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_AUTH);

        if (!o ||
            put_string(o, "user", user) < 0 ||
            put_b64(o, "key", key, key_len) < 0 ||
            put_b64(o, "nonce", nonce, NONCE_LEN) < 0 ||
            put_bool(o, "receive", receive) < 0 ||
            put_b64(o, "sig", sig, sig_len) < 0)
                return NULL;
        return TAKE_PTR(o);
}

int frame_auth_add_code(json_object *auth, const char *code) {
        return put_string(auth, "code", code);
}

json_object *frame_new_welcome(const uint8_t *sig, size_t sig_len, const KeyPackage *self,
                               const char *session, const FrameLimits *limits) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_WELCOME);
        json_object *l;

        if (!o ||
            put_b64(o, "sig", sig, sig_len) < 0 ||
            put_package(o, "self", self) < 0 ||
            put_string(o, "session", session) < 0)
                return NULL;

        l = json_object_new_object();
        if (put(o, "limits", l) < 0 ||
            put_uint(l, "max_frame", limits->max_frame) < 0 ||
            put_uint(l, "max_text", limits->max_text) < 0 ||
            put_uint(l, "queue_ttl", limits->queue_ttl) < 0 ||
            (limits->idle_timeout > 0 && put_uint(l, "idle_timeout", limits->idle_timeout) < 0))
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_error(const uint64_t *id, const char *code, const char *message) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ERROR);

        if (!o ||
            (id && put_uint(o, "id", *id) < 0) ||
            put_string(o, "code", code) < 0 ||
            (message && put_string(o, "message", message) < 0))
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_rate_limited(const uint64_t *id, const char *message, uint64_t retry_after) {
        _cleanup_(json_object_unrefp) json_object *o = frame_new_error(id, ERR_RATE_LIMITED, message);

        if (!o || put_uint(o, "retry_after", retry_after < 1 ? 1 : retry_after) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_presence_list(KeyPackage *const *users, size_t n, bool more) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PRESENCE);
        json_object *a;

        if (!o)
                return NULL;
        a = json_object_new_array();
        if (put(o, "users", a) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                json_object *v = NULL;

                if (key_package_to_json(users[i], &v) < 0)
                        return NULL;
                if (json_object_array_add(a, v) < 0) {
                        json_object_put(v);
                        return NULL;
                }
        }
        if (more && put(o, "more", json_object_new_boolean(1)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_presence_online(const KeyPackage *kp) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PRESENCE);

        if (!o ||
            put_string(o, "event", "online") < 0 ||
            put_package(o, "package", kp) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_presence_offline(const char *user) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_PRESENCE);

        if (!o ||
            put_string(o, "event", "offline") < 0 ||
            put_string(o, "user", user) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_lookup(uint64_t id, const char *user) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_LOOKUP);

        if (!o ||
            put_uint(o, "id", id) < 0 ||
            put_string(o, "user", user) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_key(uint64_t id, const KeyPackage *kp) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_KEY);

        if (!o ||
            put_uint(o, "id", id) < 0 ||
            put_package(o, "package", kp) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static json_object *new_envelope_frame(FrameType t, const char *key, uint64_t n,
                                       json_object *envelope_json) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(t);

        if (!o || !envelope_json ||
            put_uint(o, key, n) < 0 ||
            put(o, "envelope", json_object_get(envelope_json)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_send(uint64_t id, json_object *envelope_json) {
        return new_envelope_frame(FRAME_SEND, "id", id, envelope_json);
}

json_object *frame_new_accepted(uint64_t id, const char *msg, bool queued) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ACCEPTED);

        if (!o ||
            put_uint(o, "id", id) < 0 ||
            put_string(o, "msg", msg) < 0 ||
            put_bool(o, "queued", queued) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_deliver(uint64_t seq, json_object *envelope_json) {
        return new_envelope_frame(FRAME_DELIVER, "seq", seq, envelope_json);
}

json_object *frame_new_ack(uint64_t seq) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_ACK);

        if (!o || put_uint(o, "seq", seq) < 0)
                return NULL;
        return TAKE_PTR(o);
}

json_object *frame_new_synced(void) {
        return new_frame(FRAME_SYNCED);
}

json_object *frame_new_receipt(const char *msg, const char *status) {
        _cleanup_(json_object_unrefp) json_object *o = new_frame(FRAME_RECEIPT);

        if (!o ||
            put_string(o, "msg", msg) < 0 ||
            put_string(o, "status", status) < 0)
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

        s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!s)
                return -ENOMEM;
        return frame_encode(s, len, max_frame, ret, ret_len);
}
