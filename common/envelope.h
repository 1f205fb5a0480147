/* SPDX-License-Identifier: MIT */
/*
 * The end-to-end envelope of protocol.md section 7 (exact):
 * RSA-OAEP key transport, HKDF-SHA256, DES-EDE3-CBC, HMAC-SHA256
 * (encrypt-then-MAC) and an RSA-PSS signature by the sender.
 *
 * The JSON form and the digest also know ENVELOPE2 of suite 2 (suite2.h
 * seals and opens those): a relay routes both alike.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "protocol.h"
#include "rsa.h"
#include "suite2.h"
#include "util.h"

typedef struct Envelope {
        int v;                                   /* 1 */
        char suite[64];
        uint8_t id[MSG_ID_LEN];
        char from[USERNAME_MAX + 1];
        char to[USERNAME_MAX + 1];
        uint64_t ts;
        uint8_t *ek;                             /* suite 1 */
        size_t ek_len;
        uint8_t iv[ENVELOPE_IV_LEN];             /* suite 1 */
        uint8_t *hdr;                            /* suite 2: its HEADER */
        size_t hdr_len;
        uint8_t *ct;
        size_t ct_len;
        uint8_t mac[ENVELOPE_MAC_LEN];
        uint8_t *sig;
        size_t sig_len;
} Envelope;

/* Why an envelope was refused. Each is distinct and has a stable name
 * (envelope_error_to_string) that the client reports; none says anything
 * about the plaintext. */
typedef enum EnvelopeError {
        ENVELOPE_OK = 0,
        ENVELOPE_MALFORMED,        /* a field missing, of the wrong type or size */
        ENVELOPE_BAD_VERSION,      /* v != 1 */
        ENVELOPE_BAD_SUITE,        /* unknown suite */
        ENVELOPE_WRONG_RECIPIENT,  /* to is not me */
        ENVELOPE_UNKNOWN_SENDER,   /* no usable key for from (caller decides) */
        ENVELOPE_BAD_SIGNATURE,
        ENVELOPE_FROM_FUTURE,      /* ts more than 5 minutes ahead */
        ENVELOPE_EXPIRED,          /* ts older than the replay window */
        ENVELOPE_REPLAY,           /* id already seen from this sender, other content */
        ENVELOPE_DUPLICATE,        /* this very envelope was already shown */
        ENVELOPE_BAD_KEY,          /* OAEP decryption failed (any reason) */
        ENVELOPE_BAD_MAC,
        ENVELOPE_BAD_PADDING,      /* PKCS#7 padding after decryption */
        ENVELOPE_BAD_UTF8,
        ENVELOPE_TOO_LARGE,        /* plaintext over the caller's max_text */
        _ENVELOPE_ERROR_MAX,
} EnvelopeError;

const char *envelope_error_to_string(EnvelopeError e);  /* "bad_signature" ... */

Envelope *envelope_free(Envelope *e);
static inline void envelope_freep(Envelope **e) { envelope_free(*e); }

/* Seal text (UTF-8, len bytes) from `from` (signing with sender, which must
 * hold a private key) to `to` (encrypting to recipient). ts is the unix time
 * to stamp. Returns 0, -EINVAL (bad names, invalid UTF-8), -ENOMEM. */
int envelope_seal(const char *from, const RsaKey *sender, const char *to,
                  const RsaKey *recipient, uint64_t ts, const void *text, size_t len,
                  Envelope **ret);
/* The same with a given id (NULL: random). Only a test plays a sender that
 * reuses an id; a client never seals twice under one id. */
int envelope_seal_id(const char *from, const RsaKey *sender, const char *to,
                     const RsaKey *recipient, uint64_t ts, const uint8_t id[MSG_ID_LEN],
                     const void *text, size_t len, Envelope **ret);

/* The JSON object of section 7, and back. envelope_from_json checks shape
 * only (step 1 of opening except "to is me"): every member present with the
 * right JSON type, strict base64 of the right sizes (id 16, iv 8, mac 32,
 * ek and sig 256..512, ct a positive multiple of 8), valid user names, v and
 * suite known. Unknown members are refused. On failure returns -EBADMSG and
 * sets *ret_error (if not NULL). Suite 2's ENVELOPE2 is read and written
 * the same way (hdr of ENVELOPE2_HDR_MIN..MAX bytes instead of ek and iv;
 * its HEADER is not parsed here). */
#define ENVELOPE2_HDR_MIN 41
#define ENVELOPE2_HDR_MAX 598
bool envelope_is_suite2(const Envelope *e);
/* A suite-2 envelope as suite2.c's message: its pointers are e's,
 * borrowed, never freed through the view. */
Suite2Message envelope_suite2_view(const Envelope *e);
int envelope_to_json(const Envelope *e, json_object **ret);
int envelope_from_json(json_object *o, Envelope **ret, EnvelopeError *ret_error);

/* The byte string H of step 5 (what the MAC covers), allocated; for
 * suite 2, H2 (suite2_transcript()). */
int envelope_mac_input(const Envelope *e, uint8_t **ret, size_t *ret_len);

/* What identifies an envelope's content: SHA-256 of everything its
 * signature covers. A redelivery of the same envelope has the same digest;
 * another envelope under the same id has another. */
#define ENVELOPE_DIGEST_LEN 32
int envelope_digest(const Envelope *e, uint8_t ret[ENVELOPE_DIGEST_LEN]);

typedef enum EnvelopeSeen {
        ENVELOPE_SEEN_NO = 0,       /* new */
        ENVELOPE_SEEN_SAME,         /* shown already: this very envelope */
        ENVELOPE_SEEN_OTHER,        /* the id was used for another envelope */
        ENVELOPE_SEEN_FORGOTTEN,    /* too old for the store to tell */
} EnvelopeSeen;

/* Replay store: returns an EnvelopeSeen for (from, id), or <0 on error.
 * Called only after the signature verified, with the envelope's digest. */
typedef int (*envelope_seen_fn)(void *userdata, const char *from,
                                const uint8_t id[MSG_ID_LEN], uint64_t ts,
                                const uint8_t digest[ENVELOPE_DIGEST_LEN]);

typedef struct EnvelopeOpenParams {
        const char *me;               /* my user name */
        const RsaKey *my_key;         /* with private key */
        const RsaKey *sender_key;     /* pinned, server-signed; NULL -> UNKNOWN_SENDER */
        uint64_t now;                 /* unix seconds */
        uint64_t window;              /* replay window in seconds (the client's setting) */
        size_t max_text;              /* 0 = no limit */
        envelope_seen_fn seen;        /* may be NULL (no replay check) */
        void *userdata;
} EnvelopeOpenParams;

/* Opening suite 1, in the order of section 7 (suite 2: bad_suite). On success returns 0 and the
 * plaintext (NUL-terminated, length in *ret_len). On refusal returns
 * -EBADMSG with *ret_error set. Other negative errno on system errors. */
int envelope_open(const Envelope *e, const EnvelopeOpenParams *p,
                  char **ret_text, size_t *ret_len, EnvelopeError *ret_error);
