/* SPDX-License-Identifier: MIT */
/*
 * The client's state directory (HOME, by default ~/.local/share/securechat):
 *
 *   identity/USER.key     the user's private key (PKCS#8 PEM, mode 0600)
 *   known_servers         "host:port SHA256:..." lines: pinned server keys
 *   peers/HOST_PORT/USER  pinned peer keys: the server-signed key package
 *                         (JSON) that was trusted, per server address
 *   seen/USER.db          message ids USER was shown (seen.h)
 *   outbox/USER/KEY       a message sent with --idempotency-key KEY: the
 *                         sealed envelope, sent again as it is on a retry
 *   lock                  flock()ed around every read-modify-write
 *
 * Two scctl processes may run at once (a `listen` and a `send`, say): every
 * file is replaced with temp file + fsync + rename, and every change that
 * depends on what a file held happens under the lock, so neither can lose
 * the other's pin or see half a file.
 *
 * Functions return negative errno; the callers tell the user.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fileio.h"
#include "handshake.h"
#include "protocol.h"
#include "rsa.h"
#include "util.h"

#include <json-c/json.h>

typedef struct State {
        char *home;
        int lock_fd;
        unsigned lock_depth;
} State;

/* Create home (and missing parents) with mode 0700 if needed. */
int state_open(const char *home, State **ret);
State *state_free(State *s);
static inline void state_freep(State **s) { state_free(*s); }

/* The lock nests: only the outermost unlock releases it. */
int state_lock(State *s);
void state_unlock(State *s);

/* mkdir -p with mode for every directory it creates. */
int mkdir_parents(const char *path, mode_t mode);

/* HOME/rel, allocated. */
char *state_path(const State *s, const char *rel);

/* Read a whole file of at most max bytes (-EFBIG beyond), NUL-terminated. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* Identity: HOME/identity/USER.key. Loads it, or with create (bits: 2048,
 * 3072 or 4096) generates and saves it when missing, under the lock.
 * -ENOENT when missing and !create; -EPERM when the file is readable or
 * writable by others (from rsa_key_load_private). *ret_created may be NULL. */
char *state_identity_path(const State *s, const char *user);
int state_identity_load(State *s, const char *user, bool create, unsigned bits,
                        RsaKey **ret, bool *ret_created);

typedef enum PinResult {
        PIN_MATCH,      /* the key is the pinned one */
        PIN_NEW,        /* nothing was pinned; now it is */
        PIN_MISMATCH,   /* something else is pinned: *ret_pinned says what */
} PinResult;

/* Server keys by "host:port". Compares fingerprint with the pin; pins it
 * when none (and pin is true: with false, PIN_NEW means "not pinned, left
 * alone"). Returns a PinResult or negative errno. ret_pinned receives the
 * pinned fingerprint on PIN_MISMATCH (may be NULL). */
int state_server_pin(State *s, const char *address, const char *fingerprint, bool pin,
                     char ret_pinned[RSA_FINGERPRINT_MAX]);

/* Peer keys by server address and user. The package must already be
 * verified under the server's key. */
char *state_peer_path(const State *s, const char *address, const char *user);
int state_peer_get(State *s, const char *address, const char *user, KeyPackage **ret);
int state_peer_pin(State *s, const char *address, const KeyPackage *kp,
                   char ret_pinned[RSA_FINGERPRINT_MAX]);
int state_peer_set(State *s, const char *address, const KeyPackage *kp);

/* send --idempotency-key. KEY: 1 to 64 of A-Z a-z 0-9 . _ -, not starting
 * with '.'. The digest (OUTBOX_DIGEST_LEN) is SHA-256 of recipient, NUL,
 * text, kept in the file (base64): a retry must name the same message. */
#define OUTBOX_DIGEST_LEN 32
#define OUTBOX_KEY_MAX 64
bool outbox_key_valid(const char *key);
void outbox_digest(const char *to, const char *text, size_t len, uint8_t ret[OUTBOX_DIGEST_LEN]);
char *state_outbox_path(const State *s, const char *user, const char *key);
/* The envelope saved for path: 0 and *ret_envelope; -ENOENT when none;
 * -EEXIST when it was saved for another recipient or text; -EBADMSG when
 * the file is damaged. */
int state_outbox_load(State *s, const char *path, const uint8_t digest[OUTBOX_DIGEST_LEN],
                      json_object **ret_envelope);
int state_outbox_save(State *s, const char *path, const char *to, const uint8_t digest[OUTBOX_DIGEST_LEN],
                      json_object *envelope);
/* Remove USER's outbox files older than max_age seconds (a retry of them
 * would be refused as expired by the recipient anyway). */
int state_outbox_prune(State *s, const char *user, uint64_t max_age, uint64_t now);
