/* SPDX-License-Identifier: MIT */
/*
 * The state directory: identity.key (the server's identity, generated on
 * first start unless it comes from identity-key= or a systemd credential,
 * so that several relays can share it), tls.key and tls.crt (an Ed25519
 * key for TLS only and a self-signed certificate for it),
 * securechatd.db (registry and queue) and a lock file that keeps a second
 * daemon away from the same files. The directory is made 0700; files are
 * 0600 (the daemon runs with umask 077).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "conf.h"
#include "rsa.h"

#define STATE_IDENTITY_FILE "identity.key"
#define STATE_CERTIFICATE_FILE "tls.crt"
#define STATE_TLS_KEY_FILE "tls.key"
#define STATE_DATABASE_FILE "securechatd.db"
#define STATE_LOCK_FILE "lock"
/* Space set aside so that the database can always delete (see
 * manager_store_full()); released when a delete fails for want of it. */
#define STATE_RESERVE_FILE "reserve"
#define STATE_RESERVE_SIZE (UINT64_C(4) * 1024 * 1024)

/* Create dir (and missing parents) with mode 0700. Sets *ret_lax when the
 * directory exists and group or others may enter it. */
int state_directory_prepare(const char *dir, bool *ret_lax);

/* Take an exclusive lock on dir/lock; -EBUSY when another process holds
 * it. The fd holds the lock until closed. */
int state_lock(const char *dir, int *ret_fd);

/* The systemd credential that holds the identity key (LoadCredential=). */
#define STATE_IDENTITY_CREDENTIAL_NAME "identity-key"

typedef enum StateIdentitySource {
        STATE_IDENTITY_CONFIGURED,      /* identity-key= */
        STATE_IDENTITY_CREDENTIAL,      /* $CREDENTIALS_DIRECTORY/identity-key */
        STATE_IDENTITY_STATE,           /* the state directory's identity.key */
} StateIdentitySource;

/* $CREDENTIALS_DIRECTORY/name, allocated, when systemd passed a
 * credential of that name (or one that cannot be looked at: the reader
 * reports why); -ENOENT when there is none. */
int state_credential_path(const char *name, char **ret);

#define STATE_DATABASE_PASSWORD_CREDENTIAL_NAME "database-password"
#define STATE_DATABASE_PASSWORD_MAX 1024

/* The database password: the first line of database-password-file, else of
 * the credential "database-password" when systemd passes one. *ret is NULL
 * when there is none. The caller wipes and frees it; it is never logged.
 * -EPERM when group or others may read or write the file (chmod 600),
 * -EFBIG beyond STATE_DATABASE_PASSWORD_MAX. */
int state_database_password(const Config *c, char **ret);

/* Where the identity key comes from: identity-key= when set, else the
 * credential "identity-key" when systemd passes one, else
 * dir/identity.key. Looks at no key; *ret_path is allocated. */
int state_identity_locate(const Config *c, StateIdentitySource *ret_source, char **ret_path);

/* Load the identity key at path. Only the state directory's is generated
 * (bits) and saved (0600) when missing, and *ret_created says so: a key
 * that identity-key= or a credential names is the one every relay sharing
 * it must present, so a missing one is an error (-ENOENT), never a new
 * key. -EPERM when group or others may read or write the file. */
int state_identity_load(const char *path, StateIdentitySource source, unsigned bits,
                        RsaKey **ret, bool *ret_created);

/* Whether the state directory holds an identity.key other than key (one
 * a relay made before its key came from identity-key= or a credential):
 * 1 with its fingerprint in ret_fingerprint, 0 when it holds none or the
 * same, -errno when it cannot be read. */
int state_identity_superseded(const char *dir, const RsaKey *key,
                              char ret_fingerprint[RSA_FINGERPRINT_MAX]);

typedef enum StateTlsChange {
        STATE_TLS_KEPT,         /* configured, or tls.key and tls.crt as they were */
        STATE_TLS_CREATED,      /* first start: new tls.key and tls.crt */
        STATE_TLS_UPGRADED,     /* tls.crt (for the identity key) replaced by a
                                 * new tls.key and a certificate for it */
        STATE_TLS_REMADE,       /* tls.crt missing or not for tls.key: remade */
} StateTlsChange;

/* TLS credentials: tls-certificate/tls-key when configured, else
 * dir/tls.key (Ed25519, generated when missing) and dir/tls.crt, made when
 * missing or not matching the key. The identity key has no part in TLS: a
 * handshake costs one Ed25519 signature, not an RSA one. -EPERM when
 * tls.key is open to group or others. */
int state_tls_credentials(const Config *c, const char *dir,
                          gnutls_certificate_credentials_t *ret, StateTlsChange *ret_change);

/* Bytes the daemon may still use on the file system of dir. */
int state_free_bytes(const char *dir, uint64_t *ret);

/* Make dir/reserve STATE_RESERVE_SIZE bytes long, with its blocks
 * allocated (a sparse file would set nothing aside). -ENOSPC when there
 * is no room; nothing is left behind then. */
int state_reserve_create(const char *dir);

/* Delete dir/reserve: 1 if it was there, 0 if not. */
int state_reserve_release(const char *dir);

/* dir/name, allocated. */
char *state_path(const char *dir, const char *name);
