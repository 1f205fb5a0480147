/* SPDX-License-Identifier: MIT */
/*
 * SecureChat protocol version 1: every constant of the wire protocol in one
 * place (see man/securechat-protocol.7). Bump PROTOCOL_VERSION on any change
 * to the framing, the handshake transcripts, key packages or the envelope.
 */
#pragma once

#define PROTOCOL_VERSION 1                       /* bump on change */
/* Version 2 changes presence only (watch, unwatch, who, online; events
 * without key packages). Transcripts, key packages and the envelope stay
 * those of version 1, and hello keeps "proto":1, which clients of version 1
 * require: the relay offers 2 with hello's "proto_max", and a client takes
 * it with auth's "proto". */
/* Version 3 changes the welcome only: the relay signs T_server with an
 * Ed25519 key that its identity key certified (the welcome key), so that a
 * login costs it no RSA operation. Everything version 2 does, 3 does too. */
#define PROTOCOL_VERSION_MAX 3
#define PROTOCOL_VERSION_WELCOME_KEY 3           /* the first with the welcome key */
/* How long a welcome key's statement is valid (seconds); the relay makes a
 * new one when less than half of it is left. */
#define WELCOME_KEY_LIFETIME (7u * 24 * 3600)
#define WATCH_USERS_MAX 32                       /* names in one watch or unwatch */
#define WHO_PAGE_MAX 256                         /* users in one answer to who */
/* An "online" answer's bytes: its members, and each user's
 * {"user":...,"fingerprint":...}, (a 32-byte name, a 50-byte fingerprint):
 * WATCH_USERS_MAX of them fit in the smallest max-frame, 4096. */
#define ONLINE_FRAME_OVERHEAD 128
#define ONLINE_USER_MAX 112
#define PROTOCOL_SUITE "rsa-oaep-sha256+des-ede3-cbc+hmac-sha256"

#define DEFAULT_PORT 5000
#define DEFAULT_MAX_FRAME 65536u
#define DEFAULT_MAX_TEXT 16384u
#define DEFAULT_QUEUE_TTL (7u * 24 * 3600)      /* seconds */
#define MAX_FRAME_LIMIT (16u * 1024 * 1024)     /* hard ceiling for max-frame */

/* Binary members: a 4096-bit RSA SubjectPublicKeyInfo is 550 bytes DER and
 * its signatures are 512 bytes; leave room but keep a bound. */
#define KEY_DER_MAX 1024
#define SIG_MAX 512

#define NONCE_LEN 32
#define MSG_ID_LEN 16
#define ENVELOPE_SECRET_LEN 32
#define ENVELOPE_IV_LEN 8
#define ENVELOPE_MAC_LEN 32
#define ENVELOPE_OKM_LEN 56
#define ENVELOPE_FUTURE_SKEW 300                 /* seconds a ts may be ahead */

/* Prekeys of suite 2 (the frames publish, published, lookup and key; the
 * formats are in suite2.h). The version stays 1: these are members and
 * frame types an older peer never sees unless hello lists suite 2. */
#define PREKEYS_PUBLISH_MAX 100u                 /* OPKs in one publish frame */
#define DEFAULT_MAX_PREKEYS 200u                 /* OPKs the relay keeps per user */
#define PREKEYS_LOW 20u                          /* a client tops up below this */

/* Domain separation strings (exact). */
#define CTX_CLIENT_AUTH "securechat/1 client-auth"
#define CTX_SERVER_AUTH "securechat/1 server-auth"
#define CTX_SERVER_AUTH3 "securechat/3 server-auth"   /* Ed25519, version 3 */
#define CTX_WELCOME_KEY "securechat/3 welcome-key"
#define CTX_KEY_PACKAGE "securechat/1 key-package"
#define CTX_ENVELOPE "securechat/1 envelope"
#define CTX_ENVELOPE_KEY "securechat/1 envelope-key"   /* OAEP label */
#define CTX_HKDF_INFO_PREFIX "securechat/1 "           /* || suite */

/* Error codes carried in {"type":"error","code":...}. */
#define ERR_BAD_FRAME "bad_frame"
#define ERR_BAD_REQUEST "bad_request"
#define ERR_BAD_USERNAME "bad_username"
#define ERR_AUTH_FAILED "auth_failed"
#define ERR_KEY_MISMATCH "key_mismatch"
#define ERR_REGISTRATION_CLOSED "registration_closed"
#define ERR_REPLACED "replaced"
#define ERR_TIMEOUT "timeout"
#define ERR_NO_SUCH_USER "no_such_user"
#define ERR_TOO_LARGE "too_large"
#define ERR_QUEUE_FULL "queue_full"
#define ERR_STORAGE_FULL "storage_full"
#define ERR_RATE_LIMITED "rate_limited"
#define ERR_SERVER_BUSY "server_busy"
#define ERR_INTERNAL "internal"
#define ERR_UNAVAILABLE "unavailable"    /* the relay cannot reach its database */
#define ERR_KICKED "kicked"
#define ERR_SHUTDOWN "shutdown"
#define ERR_CODE_REQUIRED "code_required"

/* The one-time code of a key reset (auth "code"): printable ASCII. */
#define RESET_CODE_MAX 64
