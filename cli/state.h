/* SPDX-License-Identifier: MIT */
/*
 * The client's state directory (HOME, by default ~/.local/share/securechat):
 *
 *   identity/USER.key     the user's private key (PKCS#8 PEM, mode 0600)
 *   identity/USER.key.next  the key a rotation is replacing it with, until
 *                         the relay registered that one
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

typedef struct ClientState {
        char *home;
        int lock_fd;
        unsigned lock_depth;
} ClientState;

/* Create home (and missing parents) with mode 0700 if needed. */
int client_state_open(const char *home, ClientState **ret);
ClientState *client_state_free(ClientState *s);
static inline void client_state_freep(ClientState **s) { client_state_free(*s); }

/* The lock nests: only the outermost unlock releases it. */
int client_state_lock(ClientState *s);
void client_state_unlock(ClientState *s);

/* mkdir -p with mode for every directory it creates. */
int mkdir_parents(const char *path, mode_t mode);

/* HOME/rel, allocated. */
char *client_state_path(const ClientState *s, const char *rel);

/* Read a whole file of at most max bytes (-EFBIG beyond), NUL-terminated. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* Identity: HOME/identity/USER.key. Loads it, or with create (bits: 2048,
 * 3072 or 4096) generates and saves it when missing, under the lock.
 * -ENOENT when missing and !create; -EPERM when the file is readable or
 * writable by others (from rsa_key_load_private). *ret_created may be NULL. */
char *client_state_identity_path(const ClientState *s, const char *user);
int client_state_identity_load(ClientState *s, const char *user, bool create, unsigned bits,
                        RsaKey **ret, bool *ret_created);

/* Key rotation (scctl rotate-key): the next key waits in
 * HOME/identity/USER.key.next, made (bits) or loaded by
 * client_state_identity_next(), until the relay registered it; then
 * client_state_identity_commit_next() renames it over the identity. */
char *client_state_identity_next_path(const ClientState *s, const char *user);
int client_state_identity_next(ClientState *s, const char *user, unsigned bits, RsaKey **ret,
                               bool *ret_created);
int client_state_identity_commit_next(ClientState *s, const char *user);

typedef enum PinResult {
        PIN_MATCH,      /* the key is the pinned one */
        PIN_NEW,        /* nothing was pinned; now it is */
        PIN_MISMATCH,   /* something else is pinned: *ret_pinned says what */
        PIN_ROTATED,    /* the package's rotations lead from the pinned key
                         * (*ret_pinned) to its key: now that one is pinned */
} PinResult;

/* Server keys by "host:port". Compares fingerprint with the pin; pins it
 * when none (and pin is true: with false, PIN_NEW means "not pinned, left
 * alone"). Returns a PinResult or negative errno. ret_pinned receives the
 * pinned fingerprint on PIN_MISMATCH (may be NULL). */
int client_state_server_pin(ClientState *s, const char *address, const char *fingerprint, bool pin,
                     char ret_pinned[RSA_FINGERPRINT_MAX]);

/* Peer keys by server address and user. The package must already be
 * verified under the server's key. */
char *client_state_peer_path(const ClientState *s, const char *address, const char *user);
int client_state_peer_get(ClientState *s, const char *address, const char *user, KeyPackage **ret);
int client_state_peer_pin(ClientState *s, const char *address, const KeyPackage *kp,
                   char ret_pinned[RSA_FINGERPRINT_MAX]);
int client_state_peer_set(ClientState *s, const char *address, const KeyPackage *kp);
/* The users with a key pinned for address (the contacts whose presence
 * listen and connect follow), at most max, in no order: an array of
 * *ret_n names of char[USERNAME_MAX + 1]. None pinned is 0 with *ret_n 0. */
int client_state_peer_list(ClientState *s, const char *address, size_t max,
                           char (**ret)[USERNAME_MAX + 1], size_t *ret_n);

/* send --idempotency-key. KEY: 1 to 64 of A-Z a-z 0-9 . _ -, not starting
 * with '.'. The digest (OUTBOX_DIGEST_LEN) is SHA-256 of recipient, NUL,
 * text, kept in the file (base64): a retry must name the same message. */
#define OUTBOX_DIGEST_LEN 32
#define OUTBOX_KEY_MAX 64
bool outbox_key_valid(const char *key);
void outbox_digest(const char *to, const char *text, size_t len, uint8_t ret[OUTBOX_DIGEST_LEN]);
char *client_state_outbox_path(const ClientState *s, const char *user, const char *key);
/* The envelope saved for path: 0 and *ret_envelope; -ENOENT when none;
 * -EEXIST when it was saved for another recipient or text; -EBADMSG when
 * the file is damaged. */
int client_state_outbox_load(ClientState *s, const char *path, const uint8_t digest[OUTBOX_DIGEST_LEN],
                      json_object **ret_envelope);
int client_state_outbox_save(ClientState *s, const char *path, const char *to, const uint8_t digest[OUTBOX_DIGEST_LEN],
                      json_object *envelope);
/* Remove USER's outbox files older than max_age seconds (a retry of them
 * would be refused as expired by the recipient anyway). */
int client_state_outbox_prune(ClientState *s, const char *user, uint64_t max_age, uint64_t now);
