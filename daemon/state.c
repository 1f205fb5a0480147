/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"
#include "state.h"
#include "transport.h"
#include "util.h"

char *state_path(const char *dir, const char *name) {
        char *p = NULL;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return NULL;
        return p;
}

int state_free_bytes(const char *dir, uint64_t *ret) {
        struct statvfs st;

        if (statvfs(dir, &st) < 0)
                return -errno;
        /* f_bavail: what an unprivileged writer gets; root's reserved
         * blocks are not ours to count on. */
        *ret = (uint64_t) st.f_bavail * st.f_frsize;
        return 0;
}

int state_reserve_create(const char *dir) {
        _cleanup_(freep) char *path = state_path(dir, STATE_RESERVE_FILE);
        _cleanup_(closep) int fd = -EBADF;
        int r;

        if (!path)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = posix_fallocate(fd, 0, (off_t) STATE_RESERVE_SIZE);
        if (r != 0) {
                (void) unlink(path);
                return -r;
        }
        return 0;
}

int state_reserve_release(const char *dir) {
        _cleanup_(freep) char *path = state_path(dir, STATE_RESERVE_FILE);

        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0)
                return errno == ENOENT ? 0 : -errno;
        return 1;
}

static int mkdir_parents(const char *path) {
        _cleanup_(freep) char *copy = strdup(path);

        if (!copy)
                return -ENOMEM;
        for (char *p = copy + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(copy, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

int state_directory_prepare(const char *dir, bool *ret_lax) {
        struct stat st;
        int r;

        if (mkdir(dir, 0700) < 0) {
                if (errno == ENOENT) {
                        r = mkdir_parents(dir);
                        if (r < 0)
                                return r;
                        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                                return -errno;
                } else if (errno != EEXIST)
                        return -errno;
        }
        if (stat(dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (ret_lax)
                *ret_lax = (st.st_mode & 0077) != 0;
        return 0;
}

int state_lock(const char *dir, int *ret_fd) {
        _cleanup_(freep) char *path = state_path(dir, STATE_LOCK_FILE);
        _cleanup_(closep) int fd = -EBADF;

        if (!path)
                return -ENOMEM;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int state_credential_path(const char *name, char **ret) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        _cleanup_(freep) char *path = NULL;
        struct stat st;

        if (!dir || !*dir)
                return -ENOENT;
        path = state_path(dir, name);
        if (!path)
                return -ENOMEM;
        if (lstat(path, &st) < 0 && errno == ENOENT)
                return -ENOENT;
        *ret = TAKE_PTR(path);
        return 0;
}

int state_database_password(const Config *c, char **ret) {
        _cleanup_(freep) char *credential = NULL;
        const char *path = c->database_password_file;
        char *buf = NULL, *copy;
        size_t len;
        int r;

        *ret = NULL;
        if (!path) {
                /* The credential is optional; a file named in the
                 * configuration is not. */
                r = state_credential_path(STATE_DATABASE_PASSWORD_CREDENTIAL_NAME, &credential);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return r;
                path = credential;
        }
        r = read_key_file(path, true, STATE_DATABASE_PASSWORD_MAX, &buf, &len);
        if (r < 0)
                return r;
        buf[strcspn(buf, "\r\n")] = '\0';
        copy = *buf ? strdup(buf) : NULL;
        r = *buf && !copy ? -ENOMEM : 0;
        secure_free(buf, STATE_DATABASE_PASSWORD_MAX + 1);
        *ret = copy;
        return r;
}

int state_identity_locate(const Config *c, StateIdentitySource *ret_source, char **ret_path) {
        char *path = NULL;
        int r;

        if (c->identity_key) {
                path = strdup(c->identity_key);
                if (!path)
                        return -ENOMEM;
                *ret_source = STATE_IDENTITY_CONFIGURED;
                *ret_path = path;
                return 0;
        }
        r = state_credential_path(STATE_IDENTITY_CREDENTIAL_NAME, &path);
        if (r >= 0) {
                *ret_source = STATE_IDENTITY_CREDENTIAL;
                *ret_path = path;
                return 0;
        }
        if (r != -ENOENT)
                return r;
        path = state_path(c->state_directory, STATE_IDENTITY_FILE);
        if (!path)
                return -ENOMEM;
        *ret_source = STATE_IDENTITY_STATE;
        *ret_path = path;
        return 0;
}

int state_identity_load(const char *path, StateIdentitySource source, unsigned bits,
                        RsaKey **ret, bool *ret_created) {
        _cleanup_(rsa_key_freep) RsaKey *k = NULL;
        int r;

        r = rsa_key_load_private(path, &k);
        if (r >= 0) {
                *ret = TAKE_PTR(k);
                if (ret_created)
                        *ret_created = false;
                return 0;
        }
        if (r != -ENOENT || source != STATE_IDENTITY_STATE)
                return r;

        r = rsa_key_generate(bits, &k);
        if (r < 0)
                return r;
        r = rsa_key_save_private(k, path);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(k);
        if (ret_created)
                *ret_created = true;
        return 0;
}

int state_identity_superseded(const char *dir, const RsaKey *key,
                              char ret_fingerprint[RSA_FINGERPRINT_MAX]) {
        _cleanup_(freep) char *path = state_path(dir, STATE_IDENTITY_FILE);
        _cleanup_(rsa_key_freep) RsaKey *old = NULL;
        int r;

        if (!path)
                return -ENOMEM;
        r = rsa_key_load_private(path, &old);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (strcmp(old->fingerprint, key->fingerprint) == 0)
                return 0;
        memcpy(ret_fingerprint, old->fingerprint, RSA_FINGERPRINT_MAX);
        return 1;
}

/* A certificate in dir made for the key in dir; remade whenever in doubt,
 * since nothing but TLS itself looks at it. */
static int make_certificate(const char *key, const char *cert) {
        int r;

        r = tls_make_self_signed(key, "securechatd", cert);
        if (r < 0)
                return r;
        /* Public, but everything in the state directory is the daemon's
         * alone. */
        return chmod(cert, 0600) < 0 ? -errno : 0;
}

int state_tls_credentials(const Config *c, const char *dir,
                          gnutls_certificate_credentials_t *ret, StateTlsChange *ret_change) {
        _cleanup_(freep) char *cert = NULL, *key = NULL;
        StateTlsChange change = STATE_TLS_KEPT;
        struct stat st;
        int r;

        if (c->tls_certificate) {
                r = tls_credentials_load(c->tls_certificate, c->tls_key, ret);
                if (r >= 0 && ret_change)
                        *ret_change = STATE_TLS_KEPT;
                return r;
        }

        cert = state_path(dir, STATE_CERTIFICATE_FILE);
        key = state_path(dir, STATE_TLS_KEY_FILE);
        if (!cert || !key)
                return -ENOMEM;

        if (lstat(key, &st) < 0) {
                if (errno != ENOENT)
                        return -errno;
                /* First start, or a state directory from before tls.key
                 * whose tls.crt is for the RSA identity key: a new key and
                 * a certificate for it, so every relay gets the cheap
                 * handshake. Clients pin the identity key, not this. */
                change = access(cert, F_OK) == 0 ? STATE_TLS_UPGRADED : STATE_TLS_CREATED;
                r = tls_key_generate(key);
                if (r < 0)
                        return r;
                r = make_certificate(key, cert);
                if (r < 0)
                        return r;
        } else if (!S_ISREG(st.st_mode))
                return -EINVAL;
        else if ((st.st_mode & 077) != 0)
                return -EPERM;
        else if (access(cert, F_OK) < 0) {
                if (errno != ENOENT)
                        return -errno;
                r = make_certificate(key, cert);
                if (r < 0)
                        return r;
                change = STATE_TLS_REMADE;
        }

        r = tls_credentials_load(cert, key, ret);
        if (r < 0 && change == STATE_TLS_KEPT) {
                /* Damaged, or not for this key: ours to remake. */
                r = make_certificate(key, cert);
                if (r < 0)
                        return r;
                change = STATE_TLS_REMADE;
                r = tls_credentials_load(cert, key, ret);
        }
        if (r < 0)
                return r;
        if (ret_change)
                *ret_change = change;
        return 0;
}
