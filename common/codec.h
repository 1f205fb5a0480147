/* SPDX-License-Identifier: MIT */
/*
 * The JSON frame codec (protocol.md sections 4 and 6): parse a frame's
 * payload into a typed Frame with every member validated (JSON types,
 * sizes, strict base64, user names, envelopes), and build each frame type.
 *
 * Parsing is strict: the payload must be valid UTF-8 holding exactly one
 * JSON object (no trailing data) with a known string "type"; required
 * members must be present with the right types; unknown members are
 * ignored (forward compatibility) except inside envelopes. Any failure is
 * -EBADMSG with a short reason for the peer's error message (never
 * containing input bytes), or -EINVAL for a bad user name (so the caller can
 * answer bad_username).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "envelope.h"
#include "handshake.h"
#include "suite2.h"
#include "rotation.h"

typedef enum FrameType {
        FRAME_HELLO,
        FRAME_AUTH,
        FRAME_WELCOME,
        FRAME_ERROR,
        FRAME_PRESENCE,
        FRAME_LOOKUP,
        FRAME_KEY,
        FRAME_SEND,
        FRAME_ACCEPTED,
        FRAME_DELIVER,
        FRAME_ACK,
        FRAME_SYNCED,
        FRAME_RECEIPT,
        FRAME_PING,
        FRAME_PONG,
        FRAME_BYE,
        FRAME_PUBLISH,
        FRAME_PUBLISHED,
        FRAME_ROTATE,
        FRAME_ROTATED,
        FRAME_WATCH,
        FRAME_UNWATCH,
        FRAME_WHO,
        FRAME_ONLINE,
        _FRAME_TYPE_MAX,
        _FRAME_TYPE_INVALID = -1,
} FrameType;

const char *frame_type_to_string(FrameType t);    /* "hello", ... */
FrameType frame_type_from_string(const char *s);  /* -1 if unknown */

typedef struct FrameLimits {
        uint64_t max_frame;
        uint64_t max_text;
        uint64_t queue_ttl;
        uint64_t idle_timeout;  /* seconds; optional on the wire, 0 if absent */
        uint64_t max_opks;      /* OPKs kept per user; optional, 0 if absent (no suite 2) */
} FrameLimits;

typedef enum PresenceKind {
        PRESENCE_LIST,      /* {"users":[KEYPACKAGE...]} */
        PRESENCE_ONLINE,    /* {"event":"online","package":KEYPACKAGE} (version 1), or
                             * {"event":"online","user":...,"fingerprint":...} (2) */
        PRESENCE_OFFLINE,   /* {"event":"offline","user":...} */
} PresenceKind;

/* A user online, as version 2 names it: no key package. */
typedef struct OnlineUser {
        char user[USERNAME_MAX + 1];
        char fingerprint[RSA_FINGERPRINT_MAX];
} OnlineUser;

/* Integer ids and seqs are JSON integers in 0..2^53-1. */
typedef struct Frame {
        FrameType type;
        union {
                struct {
                        unsigned proto;
                        uint8_t *server_key; size_t server_key_len;
                        uint8_t nonce[NONCE_LEN];
                        char **suites; size_t n_suites;
                        unsigned proto_max;     /* optional; proto if absent */
                } hello;
                struct {
                        char user[USERNAME_MAX + 1];
                        uint8_t *key; size_t key_len;
                        uint8_t nonce[NONCE_LEN];
                        bool receive;
                        uint8_t *sig; size_t sig_len;
                        char code[RESET_CODE_MAX + 1];  /* optional; "" if absent */
                        unsigned proto;         /* optional; 1 if absent */
                } auth;
                struct {
                        uint8_t *sig; size_t sig_len;
                        KeyPackage *self;
                        char session[65];
                        FrameLimits limits;
                        bool has_opks; uint64_t opks;   /* OPKs the relay holds (suite 2) */
                        WelcomeKey *welcome_key;        /* optional (version 3); not verified */
                } welcome;
                struct {
                        bool has_id; uint64_t id;
                        char code[64];
                        char *message;          /* may be NULL */
                        uint64_t retry_after;   /* seconds; 0 if absent */
                } error;
                struct {
                        PresenceKind kind;
                        KeyPackage **users; size_t n_users;   /* LIST */
                        bool more;             /* LIST: another list frame follows */
                        KeyPackage *package;                   /* ONLINE, version 1 */
                        char user[USERNAME_MAX + 1];           /* OFFLINE; ONLINE, 2 */
                        char fingerprint[RSA_FINGERPRINT_MAX]; /* ONLINE, 2 */
                } presence;
                /* watch and unwatch */
                struct { uint64_t id; char (*users)[USERNAME_MAX + 1]; size_t n_users; } watch;
                struct { uint64_t id; uint64_t after; uint64_t limit; } who;
                struct {
                        uint64_t id;
                        OnlineUser *users; size_t n_users;
                        uint64_t next;          /* 0: the list ends here */
                } online;
                struct { uint64_t id; char user[USERNAME_MAX + 1]; bool prekeys; } lookup;
                struct {
                        uint64_t id;
                        KeyPackage *package;
                        bool has_bundle; PrekeyBundle bundle;   /* parsed, SPK not verified */
                } key;
                struct { uint64_t id; Envelope *envelope; json_object *raw; } send;
                struct { uint64_t id; char msg[32]; bool queued; } accepted;
                /* An envelope that fails envelope_from_json() does not fail
                 * the frame: envelope is NULL, error says why (malformed,
                 * bad_version, bad_suite), and from and msg hold its from
                 * and id where those are valid (else ""), so that the
                 * client reports it and acknowledges it. */
                struct {
                        uint64_t seq; Envelope *envelope; json_object *raw;
                        EnvelopeError error;
                        char from[USERNAME_MAX + 1]; char msg[32];
                } deliver;
                struct { uint64_t seq; } ack;
                struct { char msg[32]; char status[32]; } receipt;
                struct {
                        uint64_t id;
                        SignedPrekey spk;                       /* parsed, not verified */
                        OneTimePrekey *opks; size_t n_opks;     /* <= PREKEYS_PUBLISH_MAX */
                } publish;
                struct { uint64_t id; uint64_t opks; } published;
                struct { uint64_t id; Rotation *rotation; } rotate;
                struct { uint64_t id; KeyPackage *package; } rotated;
        };
} Frame;

/* "msg" ids in accepted/receipt are the envelope id in base64 (24 chars). */

Frame *frame_free(Frame *f);
static inline void frame_freep(Frame **f) { frame_free(*f); }

/* Parse a payload (without the length prefix). On -EBADMSG/-EINVAL,
 * *ret_reason (if not NULL) points to a static string. For send/deliver the
 * envelope is parsed with envelope_from_json() and the original JSON object
 * is kept in .raw (a reference the Frame owns) so a relay can store it
 * unchanged. A send whose envelope fails that is -EBADMSG; a deliver is
 * not (see Frame.deliver). */
int frame_parse(const void *payload, size_t len, Frame **ret, const char **ret_reason);
/* The same, and when parsing fails on a request that carries an id (lookup,
 * send, publish, rotate, watch, unwatch, who) whose "id" is valid, that id (so that the error answers it);
 * *ret_has_id false otherwise. */
int frame_parse_request(const void *payload, size_t len, Frame **ret, const char **ret_reason,
                        bool *ret_has_id, uint64_t *ret_id);

/* Key packages as JSON objects, both ways (also used for local storage). */
int key_package_to_json(const KeyPackage *kp, json_object **ret);
int key_package_from_json(json_object *o, KeyPackage **ret);

/* Builders. Each returns a new json_object (refcount 1) or NULL on ENOMEM.
 * Binary arguments are base64-encoded by the builder. */
json_object *frame_new_hello(const uint8_t *server_key, size_t server_key_len,
                             const uint8_t nonce[NONCE_LEN]);
/* Another suite after suite 1 (a relay of suite 2 adds SUITE2_NAME).
 * 0, or -ENOMEM. */
int frame_hello_add_suite(json_object *hello, const char *suite);
json_object *frame_new_auth(const char *user, const uint8_t *key, size_t key_len,
                            const uint8_t nonce[NONCE_LEN], bool receive,
                            const uint8_t *sig, size_t sig_len);
/* The optional "code" of auth: the one-time code that lets a name whose key
 * was reset register again. 0 or -ENOMEM. */
int frame_auth_add_code(json_object *auth, const char *code);
/* limits->max_opks is sent when not 0. */
/* The optional "proto" of auth: the version the client speaks, when the
 * relay's hello offered it (proto_max). 0 or -ENOMEM. */
int frame_auth_add_proto(json_object *auth, unsigned proto);
json_object *frame_new_welcome(const uint8_t *sig, size_t sig_len, const KeyPackage *self,
                               const char *session, const FrameLimits *limits);
/* welcome's "opks" (a relay of suite 2). 0 or -ENOMEM. */
int frame_welcome_add_opks(json_object *welcome, uint64_t opks);
/* welcome's "welcome_key" (version 3): the statement that certifies the
 * Ed25519 key whose signature is welcome's "sig". 0 or -ENOMEM. */
int frame_welcome_add_welcome_key(json_object *welcome, const WelcomeKey *wk);
json_object *frame_new_error(const uint64_t *id, const char *code, const char *message);
/* rate_limited, with the seconds to wait before trying again (>= 1). */
json_object *frame_new_rate_limited(const uint64_t *id, const char *message, uint64_t retry_after);
/* A long list is split over several frames; all but the last have more. */
json_object *frame_new_presence_list(KeyPackage *const *users, size_t n, bool more);
json_object *frame_new_presence_online(const KeyPackage *kp);
json_object *frame_new_presence_offline(const char *user);
/* Version 2: the user and the fingerprint of its key, no package. */
json_object *frame_new_presence_user(const char *user, const char *fingerprint);
/* watch or unwatch (t) of n users. */
json_object *frame_new_watch(FrameType t, uint64_t id, const char *const *users, size_t n);
/* after 0: from the start; limit 0: the relay's page size. */
json_object *frame_new_who(uint64_t id, uint64_t after, uint64_t limit);
/* An answer to watch, unwatch or who, filled with frame_online_add(); next
 * is the cursor of the following page (who), 0 for none. */
json_object *frame_new_online(uint64_t id, uint64_t next);
int frame_online_add(json_object *online, const char *user, const char *fingerprint);
json_object *frame_new_lookup(uint64_t id, const char *user);
/* lookup's "prekeys":true: ask for a bundle (uses up one of the user's
 * OPKs). 0 or -ENOMEM. */
int frame_lookup_add_prekeys(json_object *lookup);
json_object *frame_new_key(uint64_t id, const KeyPackage *kp);
/* key's "bundle". 0, -ENOMEM, or -EINVAL for a bundle that cannot be
 * encoded. */
int frame_key_add_bundle(json_object *key, const PrekeyBundle *bundle);
/* n OPKs (at most PREKEYS_PUBLISH_MAX; 0 is fine) with the SPK. */
json_object *frame_new_publish(uint64_t id, const SignedPrekey *spk, const OneTimePrekey *opks,
                               size_t n);
json_object *frame_new_published(uint64_t id, uint64_t opks);
/* envelope_json is taken by reference (json_object_get), not copied. */
json_object *frame_new_send(uint64_t id, json_object *envelope_json);
json_object *frame_new_accepted(uint64_t id, const char *msg, bool queued);
json_object *frame_new_deliver(uint64_t seq, json_object *envelope_json);
json_object *frame_new_ack(uint64_t seq);
json_object *frame_new_synced(void);
json_object *frame_new_receipt(const char *msg, const char *status);
/* Key rotation: the statement (rotation.h), and the relay's answer with
 * the user's new key package. */
json_object *frame_new_rotate(uint64_t id, const Rotation *rot);
json_object *frame_new_rotated(uint64_t id, const KeyPackage *kp);
json_object *frame_new_simple(FrameType t);     /* ping, pong, bye, synced */

/* Serialize compactly and frame it: u32be(N) || JSON. -EMSGSIZE if over
 * max_frame. */
int frame_to_wire(json_object *o, size_t max_frame, uint8_t **ret, size_t *ret_len);
/* A deliver frame on the wire around an envelope's JSON text, spliced as
 * it is: the bytes frame_to_wire(frame_new_deliver(seq, o)) makes when
 * envelope is o's compact serialization, without building or parsing an
 * object (a relay forwards and drains what it stored this way). The text
 * is not checked: only an envelope that passed envelope_from_json() and
 * was serialized by json-c may be given. -EMSGSIZE if over max_frame. */
int frame_deliver_to_wire(uint64_t seq, const char *envelope, size_t envelope_len, size_t max_frame,
                          uint8_t **ret, size_t *ret_len);
/* Room for an accepted frame on the wire: the header, and the JSON around
 * an id of up to 20 digits and a msg of MSG_ID_B64_LEN characters (96
 * bytes at most), and snprintf()'s NUL. */
#define FRAME_ACCEPTED_WIRE_MAX 128
/* An accepted frame on the wire, written into buf: the bytes
 * frame_to_wire(frame_new_accepted(id, msg, queued)) makes, without
 * building an object or allocating (the relay answers every message with
 * one). msg must be a message id, base64 of MSG_ID_LEN bytes, in which
 * JSON escapes nothing: anything else is -EINVAL. Returns the length,
 * which is under any max_frame the relay allows (4096 or more). */
int frame_accepted_to_wire(uint64_t id, const char *msg, bool queued,
                           uint8_t buf[static FRAME_ACCEPTED_WIRE_MAX]);
