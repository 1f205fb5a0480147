/* SPDX-License-Identifier: MIT */
/*
 * Suite 2 of securechat-protocol(7), "SUITE 2 (FORWARD SECRECY)" (exact):
 * X25519 prekeys signed by the RSA identity key, an X3DH-style session
 * start whose root key also depends on a secret RSA-OAEP-encrypted to the
 * recipient, and Signal's double ratchet with DES-EDE3-CBC + HMAC-SHA256
 * (encrypt-then-MAC, as suite 1) under every message key. Each message is
 * still signed by the sender's RSA-PSS identity key.
 *
 * Pure: no files, no clock, no global state. Everything random comes from
 * a Suite2Random (NULL: getrandom), so tests can replay fixed vectors; RSA
 * OAEP and PSS keep their own randomness (rsa.h), which no vector covers.
 * Every secret is wiped when freed or consumed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "protocol.h"
#include "rsa.h"
#include "util.h"

#define X25519_KEY_LEN 32
#define SUITE2_KEY_LEN 32                  /* root, chain and message keys */
#define SUITE2_SECRET_LEN 32               /* the OAEP-transported secret */
#define SUITE2_RSA_MIN 256                 /* an RSA block: 2048..4096 bits */
#define SUITE2_RSA_MAX 512
#define SUITE2_MAC_LEN 32

#define SUITE2_NAME "x25519-ratchet+des-ede3-cbc+hmac-sha256"

/* Bounds a peer cannot push us past (section "Bounds" of the page). */
#define SUITE2_MAX_SKIP 1000               /* keys skipped by one message */
#define SUITE2_MAX_SKIPPED 1000            /* skipped keys kept per session */
#define SUITE2_SKIPPED_MAX_AGE (30 * 86400ULL) /* seconds a skipped key is kept */
#define SUITE2_PREV_CHAINS 16              /* old receiving ratchet keys remembered */

/* Context strings: every one is part of the format, bump on change. */
#define CTX_S2_SPK "securechat/2 signed-prekey"
#define CTX_S2_SESSION_KEY "securechat/2 session-key"     /* OAEP label */
#define CTX_S2_ROOT "securechat/2 root-key"
#define CTX_S2_RATCHET "securechat/2 ratchet"
#define CTX_S2_MESSAGE_KEYS "securechat/2 message-keys"
#define CTX_S2_MESSAGE "securechat/2 message"
#define CTX_S2_STATE "securechat/2 ratchet-state"

typedef int (*suite2_random_fn)(void *userdata, void *buf, size_t len);
typedef struct Suite2Random {
        suite2_random_fn fn;
        void *userdata;
} Suite2Random;

/* ---- X25519 (RFC 7748) ---- */

/* A fresh key pair; the private key is stored clamped. 0 or -errno. */
int x25519_keypair(const Suite2Random *rnd, uint8_t ret_priv[X25519_KEY_LEN],
                   uint8_t ret_pub[X25519_KEY_LEN]);
void x25519_public(const uint8_t priv[X25519_KEY_LEN], uint8_t ret_pub[X25519_KEY_LEN]);
/* A public key on the wire must be canonical: u < 2^255 - 19. */
bool x25519_public_valid(const uint8_t pub[X25519_KEY_LEN]);
/* -EBADMSG for a non-canonical public key or an all-zero result (a
 * low-order point: the peer would know the secret). */
int x25519_shared(const uint8_t priv[X25519_KEY_LEN], const uint8_t pub[X25519_KEY_LEN],
                  uint8_t ret[X25519_KEY_LEN]);

/* ---- Prekeys ---- */

typedef struct SignedPrekey {
        uint32_t id;
        uint8_t pub[X25519_KEY_LEN];
        uint64_t created;                  /* unix seconds */
        uint8_t sig[SUITE2_RSA_MAX];       /* PSS by the identity key */
        size_t sig_len;
} SignedPrekey;

typedef struct OneTimePrekey {
        uint32_t id;
        uint8_t pub[X25519_KEY_LEN];
} OneTimePrekey;

/* What `lookup` hands out besides the key package: the SPK and at most one
 * OPK. */
typedef struct PrekeyBundle {
        SignedPrekey spk;
        bool has_opk;
        OneTimePrekey opk;
} PrekeyBundle;

/* The bytes the SPK signature covers, allocated. */
int signed_prekey_transcript(const char *user, const SignedPrekey *spk, uint8_t **ret,
                             size_t *ret_len);
/* Make a key pair and sign it with identity (private). */
int signed_prekey_make(const char *user, const RsaKey *identity, uint32_t id, uint64_t created,
                       const Suite2Random *rnd, uint8_t ret_priv[X25519_KEY_LEN],
                       SignedPrekey *ret);
/* 0, or -EBADMSG when the signature does not verify under identity. */
int signed_prekey_verify(const char *user, const RsaKey *identity, const SignedPrekey *spk);
int one_time_prekey_make(uint32_t id, const Suite2Random *rnd, uint8_t ret_priv[X25519_KEY_LEN],
                         OneTimePrekey *ret);

/* Exact binary encodings of the page. parse returns -EBADMSG for anything
 * but exactly one well-formed encoding (sizes, flags, canonical keys, no
 * trailing bytes). */
int signed_prekey_encode(const SignedPrekey *spk, uint8_t **ret, size_t *ret_len);
int signed_prekey_parse(const uint8_t *data, size_t len, SignedPrekey *ret);
int one_time_prekey_encode(const OneTimePrekey *opk, uint8_t **ret, size_t *ret_len);
int one_time_prekey_parse(const uint8_t *data, size_t len, OneTimePrekey *ret);
int prekey_bundle_encode(const PrekeyBundle *b, uint8_t **ret, size_t *ret_len);
int prekey_bundle_parse(const uint8_t *data, size_t len, PrekeyBundle *ret);

/* ---- Key derivation (exposed for the vectors) ---- */

/* Root key of a session start. opk_pub and dh2 are both NULL without an OPK. */
int suite2_root_key(const char *from, const char *to, const uint8_t ek_pub[X25519_KEY_LEN],
                    const uint8_t spk_pub[X25519_KEY_LEN], const uint8_t *opk_pub,
                    const uint8_t dh1[X25519_KEY_LEN], const uint8_t *dh2,
                    const uint8_t secret[SUITE2_SECRET_LEN], uint8_t ret[SUITE2_KEY_LEN]);
void suite2_kdf_rk(const uint8_t rk[SUITE2_KEY_LEN], const uint8_t dh[X25519_KEY_LEN],
                   uint8_t ret_rk[SUITE2_KEY_LEN], uint8_t ret_ck[SUITE2_KEY_LEN]);
void suite2_kdf_ck(const uint8_t ck[SUITE2_KEY_LEN], uint8_t ret_ck[SUITE2_KEY_LEN],
                   uint8_t ret_mk[SUITE2_KEY_LEN]);
void suite2_message_keys(const uint8_t mk[SUITE2_KEY_LEN], uint8_t ret_enc[TDES_KEY_LEN],
                         uint8_t ret_mac[SUITE2_MAC_LEN], uint8_t ret_iv[ENVELOPE_IV_LEN]);

/* ---- Header ---- */

typedef struct RatchetHeader {
        uint8_t dh[X25519_KEY_LEN];        /* sender's current ratchet key */
        uint32_t pn;                       /* length of its previous sending chain */
        uint32_t n;                        /* number in the current chain */
        bool has_start;                    /* session start follows */
        uint8_t ek[X25519_KEY_LEN];
        uint32_t spk_id;
        bool has_opk;
        uint32_t opk_id;                   /* 0 when !has_opk */
        uint8_t oaep[SUITE2_RSA_MAX];      /* secret, OAEP to the identity key */
        size_t oaep_len;
} RatchetHeader;

int ratchet_header_encode(const RatchetHeader *h, uint8_t **ret, size_t *ret_len);
int ratchet_header_parse(const uint8_t *data, size_t len, RatchetHeader *ret);

/* ---- Sessions ---- */

typedef struct Ratchet Ratchet;

Ratchet *ratchet_free(Ratchet *r);          /* wipes; NULL ok */
static inline void ratchet_freep(Ratchet **r) { ratchet_free(*r); }

/* Sender: verify the bundle's SPK under the peer's pinned identity key
 * (-EBADMSG), then start a session to it. Every message sealed until the
 * first one from the peer opens carries the session start. */
int ratchet_start(const char *me, const char *peer, const RsaKey *peer_identity,
                  const PrekeyBundle *bundle, const Suite2Random *rnd, Ratchet **ret);
/* Recipient: the session a start header (already signature-checked with
 * suite2_verify) opens. The caller looks up the private halves of h->spk_id
 * and h->opk_id (opk_priv NULL if !h->has_opk, else -EINVAL). -EBADMSG when
 * the OAEP block does not decrypt to 32 bytes or a DH output is zero. The
 * caller erases the OPK once the first message opened. */
int ratchet_accept(const char *me, const RsaKey *my_identity, const char *peer,
                   const RatchetHeader *h, const uint8_t spk_priv[X25519_KEY_LEN],
                   const uint8_t *opk_priv, Ratchet **ret);

/* The deterministic halves of start and accept (vectors, tests): the root
 * key is given. start carries ek, ids and OAEP block to send. */
int ratchet_init_sender(const char *me, const char *peer, const uint8_t sk[SUITE2_KEY_LEN],
                        const uint8_t spk_pub[X25519_KEY_LEN], const RatchetHeader *start,
                        const Suite2Random *rnd, Ratchet **ret);
int ratchet_init_receiver(const char *me, const char *peer, const uint8_t sk[SUITE2_KEY_LEN],
                          const uint8_t spk_priv[X25519_KEY_LEN],
                          const uint8_t ek_pub[X25519_KEY_LEN], Ratchet **ret);

/* Which session start a session came from (its EK): a start header for
 * another EK is a new session, which the caller decides about. */
bool ratchet_is_session_of(const Ratchet *r, const RatchetHeader *h);
const char *ratchet_peer(const Ratchet *r);

/* Versioned binary state for the client's store. The serialization holds
 * secrets: it is wiped (secure_free) by whoever frees it. deserialize is
 * strict (-EBADMSG). */
int ratchet_serialize(const Ratchet *r, uint8_t **ret, size_t *ret_len);
int ratchet_deserialize(const uint8_t *data, size_t len, Ratchet **ret);

/* ---- Messages ---- */

typedef struct Suite2Message {
        uint8_t id[MSG_ID_LEN];
        char from[USERNAME_MAX + 1];
        char to[USERNAME_MAX + 1];
        uint64_t ts;
        uint8_t *hdr;
        size_t hdr_len;
        uint8_t *ct;
        size_t ct_len;
        uint8_t mac[SUITE2_MAC_LEN];
        uint8_t *sig;
        size_t sig_len;
} Suite2Message;

Suite2Message *suite2_message_free(Suite2Message *m);
static inline void suite2_message_freep(Suite2Message **m) { suite2_message_free(*m); }

typedef enum Suite2Error {
        SUITE2_OK = 0,
        SUITE2_MALFORMED,          /* header or sizes */
        SUITE2_WRONG_RECIPIENT,    /* from/to are not this session's peers */
        SUITE2_WRONG_SESSION,      /* a session start of another session */
        SUITE2_BAD_SIGNATURE,
        SUITE2_BAD_MAC,
        SUITE2_BAD_PADDING,
        SUITE2_BAD_UTF8,
        SUITE2_REPLAY,             /* its message key was used or dropped */
        SUITE2_TOO_MANY_SKIPPED,   /* would skip more than SUITE2_MAX_SKIP keys */
        _SUITE2_ERROR_MAX,
} Suite2Error;

const char *suite2_error_to_string(Suite2Error e);

/* H of the page: what the MAC covers (and, with lp(mac), the signature). */
int suite2_transcript(const Suite2Message *m, uint8_t **ret, size_t *ret_len);

/* Seal text (valid UTF-8, no NUL) in session r, signed by sender (private).
 * id NULL: random. Advances r. -EINVAL, -ENOMEM, -EOVERFLOW, -EPROTO (a
 * recipient session that has not received yet cannot send). */
int suite2_seal(Ratchet *r, const RsaKey *sender, uint64_t ts, const uint8_t *id,
                const void *text, size_t len, const Suite2Random *rnd, Suite2Message **ret);

/* The signature alone: 0 or -EBADMSG. */
int suite2_verify(const Suite2Message *m, const RsaKey *sender_key);

/* Open m in r: names, signature, header, ratchet, MAC, padding, UTF-8, in
 * that order. now (unix seconds) ages the skipped keys. r changes only on
 * success; on refusal returns -EBADMSG with *ret_error set. The timestamp
 * window and the (from, id) store of suite 1 are the caller's. */
int suite2_open(Ratchet *r, const Suite2Message *m, const RsaKey *sender_key, uint64_t now,
                const Suite2Random *rnd, char **ret_text, size_t *ret_len,
                Suite2Error *ret_error);
