/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <nettle/sha2.h>

#include "b64.h"
#include "cli.h"
#include "codec.h"
#include "json-util.h"
#include "macro.h"
#include "state.h"

/* Bounds on what we read back from our own files, so that a damaged or
 * planted file cannot make us allocate without limit. */
#define KNOWN_SERVERS_MAX (1024 * 1024)
#define PEER_FILE_MAX (64 * 1024)
/* Our files nest no deeper than an outbox entry's envelope. */
#define STATE_JSON_DEPTH 4

int mkdir_parents(const char *path, mode_t mode) {
        _cleanup_(freep) char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *c = p + 1; ; c++) {
                if (*c != '/' && *c != '\0')
                        continue;
                char saved = *c;

                *c = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *c = saved;
                if (!saved)
                        break;
        }
        return 0;
}

int client_state_open(const char *home, ClientState **ret) {
        ClientState *s;
        int r;

        r = mkdir_parents(home, 0700);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->lock_fd = -EBADF;
        s->home = strdup(home);
        if (!s->home) {
                free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

ClientState *client_state_free(ClientState *s) {
        if (!s)
                return NULL;
        safe_close(s->lock_fd);
        free(s->home);
        free(s);
        return NULL;
}

char *client_state_path(const ClientState *s, const char *rel) {
        char *p;

        return asprintf(&p, "%s/%s", s->home, rel) < 0 ? NULL : p;
}

int client_state_lock(ClientState *s) {
        if (s->lock_depth > 0) {
                s->lock_depth++;
                return 0;
        }
        if (s->lock_fd < 0) {
                _cleanup_(freep) char *p = client_state_path(s, "lock");

                if (!p)
                        return -ENOMEM;
                s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (s->lock_fd < 0)
                        return -errno;
        }
        while (flock(s->lock_fd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return -errno;
        s->lock_depth = 1;
        return 0;
}

void client_state_unlock(ClientState *s) {
        if (s->lock_depth == 0)
                return;
        if (--s->lock_depth == 0)
                (void) flock(s->lock_fd, LOCK_UN);
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(freep) char *buf = NULL;
        size_t len = 0, cap = 4096;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n;

                if (len + 1 >= cap) {
                        char *b;

                        if (cap > max + 1)
                                return -EFBIG;
                        cap *= 2;
                        b = realloc(buf, cap);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                n = read(fd, buf + len, cap - 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > max)
                        return -EFBIG;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

char *client_state_identity_path(const ClientState *s, const char *user) {
        char *p;

        return asprintf(&p, "%s/identity/%s.key", s->home, user) < 0 ? NULL : p;
}

/* The private key at path; with create, one made (bits) and saved when
 * missing. Returns 1 when it was made. */
static int identity_load_at(ClientState *s, const char *path, bool create, unsigned bits, RsaKey **ret) {
        _cleanup_(freep) char *dir = NULL;
        _cleanup_(rsa_key_freep) RsaKey *k = NULL;
        int r;

        r = rsa_key_load_private(path, &k);
        if (r != -ENOENT || !create) {
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(k);
                return 0;
        }

        /* Under the lock, so that two first runs at once cannot each make
         * a key and register the one that is then overwritten. */
        r = client_state_lock(s);
        if (r < 0)
                return r;
        r = rsa_key_load_private(path, &k);
        if (r == -ENOENT) {
                dir = client_state_path(s, "identity");
                r = dir ? mkdir_parents(dir, 0700) : -ENOMEM;
                if (r >= 0)
                        r = rsa_key_generate(bits, &k);
                if (r >= 0)
                        r = rsa_key_save_private(k, path);
                if (r >= 0)
                        r = 1;
        }
        client_state_unlock(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(k);
        return r;
}

int client_state_identity_load(ClientState *s, const char *user, bool create, unsigned bits,
                        RsaKey **ret, bool *ret_created) {
        _cleanup_(freep) char *path = client_state_identity_path(s, user);
        int r;

        if (!path)
                return -ENOMEM;
        r = identity_load_at(s, path, create, bits, ret);
        if (r < 0)
                return r;
        if (ret_created)
                *ret_created = r > 0;
        return 0;
}

char *client_state_identity_next_path(const ClientState *s, const char *user) {
        char *p;

        return asprintf(&p, "%s/identity/%s.key.next", s->home, user) < 0 ? NULL : p;
}

int client_state_identity_next(ClientState *s, const char *user, unsigned bits, RsaKey **ret, bool *ret_created) {
        _cleanup_(freep) char *path = client_state_identity_next_path(s, user);
        int r;

        if (!path)
                return -ENOMEM;
        r = identity_load_at(s, path, true, bits, ret);
        if (r < 0)
                return r;
        *ret_created = r > 0;
        return 0;
}

int client_state_identity_commit_next(ClientState *s, const char *user) {
        _cleanup_(freep) char *next = client_state_identity_next_path(s, user),
                             *path = client_state_identity_path(s, user);

        if (!next || !path)
                return -ENOMEM;
        /* One rename: whoever loads the identity gets the old key or the
         * new one, never neither. */
        if (rename(next, path) < 0)
                return -errno;
        return fsync_parent_dir(path);
}

/* known_servers: one "host:port fingerprint" per line; '#' starts a
 * comment line. Lines we cannot parse are kept as they are. Looks up
 * address; copies the pinned value to out. Returns 1 if found. */
static int known_servers_find(const char *content, const char *address, char out[RSA_FINGERPRINT_MAX]) {
        size_t alen = strlen(address);

        for (const char *line = content; line && *line; ) {
                const char *end = strchrnul(line, '\n'), *p = line, *fp;
                size_t fplen;

                while (p < end && isblank((unsigned char) *p))
                        p++;
                if (*p != '#' && (size_t) (end - p) > alen && strncmp(p, address, alen) == 0 &&
                    isblank((unsigned char) p[alen])) {
                        fp = p + alen;
                        while (fp < end && isblank((unsigned char) *fp))
                                fp++;
                        fplen = strcspn(fp, " \t\r\n");
                        snprintf(out, RSA_FINGERPRINT_MAX, "%.*s",
                                 (int) MIN(fplen, (size_t) RSA_FINGERPRINT_MAX - 1), fp);
                        return 1;
                }
                line = *end ? end + 1 : NULL;
        }
        return 0;
}

int client_state_server_pin(ClientState *s, const char *address, const char *fingerprint, bool pin,
                     char ret_pinned[RSA_FINGERPRINT_MAX]) {
        _cleanup_(freep) char *path = client_state_path(s, "known_servers"), *content = NULL, *updated = NULL;
        char pinned[RSA_FINGERPRINT_MAX];
        size_t len = 0;
        int r, n;

        if (!path)
                return -ENOMEM;
        r = client_state_lock(s);
        if (r < 0)
                return r;
        r = read_file(path, KNOWN_SERVERS_MAX, &content, &len);
        if (r == -ENOENT)
                r = 0;
        if (r < 0)
                goto finish;

        if (content && known_servers_find(content, address, pinned)) {
                if (streq(pinned, fingerprint))
                        r = PIN_MATCH;
                else {
                        if (ret_pinned)
                                memcpy(ret_pinned, pinned, sizeof(pinned));
                        r = PIN_MISMATCH;
                }
                goto finish;
        }
        r = PIN_NEW;
        if (!pin)
                goto finish;

        n = asprintf(&updated, "%s%s%s %s\n", content ?: "",
                     len > 0 && content[len - 1] != '\n' ? "\n" : "", address, fingerprint);
        if (n < 0) {
                updated = NULL;
                r = -ENOMEM;
                goto finish;
        }
        r = write_file_atomic(path, updated, (size_t) n, 0600);
        if (r >= 0)
                r = PIN_NEW;
finish:
        client_state_unlock(s);
        return r;
}

/* peers/HOST_PORT: the address with the port's colon made a '_', so that
 * "[::1]:5000" gives "[::1]_5000". The address was validated by
 * server_parse(): no '/' can appear. */
static char *peer_dir(const ClientState *s, const char *address) {
        _cleanup_(freep) char *a = strdup(address);
        char *colon, *p;

        if (!a)
                return NULL;
        colon = strrchr(a, ':');
        if (colon)
                *colon = '_';
        return asprintf(&p, "%s/peers/%s", s->home, a) < 0 ? NULL : p;
}

char *client_state_peer_path(const ClientState *s, const char *address, const char *user) {
        _cleanup_(freep) char *dir = peer_dir(s, address);
        char *p;

        if (!dir || !username_valid(user))
                return NULL;
        return asprintf(&p, "%s/%s", dir, user) < 0 ? NULL : p;
}

int client_state_peer_get(ClientState *s, const char *address, const char *user, KeyPackage **ret) {
        _cleanup_(freep) char *path = client_state_peer_path(s, address, user), *content = NULL;
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        size_t len;
        int r;

        if (!path)
                return -ENOMEM;
        r = read_file(path, PEER_FILE_MAX, &content, &len);
        if (r < 0)
                return r;

        /* The same strict reading as for what a peer sends: a file that
         * json-c alone would take with a second "key" is damaged. */
        r = json_parse_strict(content, len, STATE_JSON_DEPTH, &o, NULL);
        if (r >= 0)
                r = key_package_from_json(o, &kp);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        if (!streq(kp->user, user))
                return -EBADMSG;
        *ret = TAKE_PTR(kp);
        return 0;
}

int client_state_peer_list(ClientState *s, const char *address, size_t max,
                           char (**ret)[USERNAME_MAX + 1], size_t *ret_n) {
        _cleanup_(freep) char *dir = peer_dir(s, address);
        _cleanup_(freep) char (*users)[USERNAME_MAX + 1] = NULL;
        size_t n = 0;
        DIR *d;

        if (!dir)
                return -ENOMEM;
        *ret = NULL;
        *ret_n = 0;
        d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        users = calloc(MAX(max, (size_t) 1), sizeof(*users));
        if (!users) {
                closedir(d);
                return -ENOMEM;
        }
        for (struct dirent *e; n < max && (e = readdir(d));)
                /* Other names are not pins. A pin being written
                 * (NAME.tmpXXXXXX) may pass for a name: watching it costs
                 * a watch, and nothing else. */
                if (username_valid(e->d_name))
                        memcpy(users[n++], e->d_name, strlen(e->d_name) + 1);
        closedir(d);
        *ret = TAKE_PTR(users);
        *ret_n = n;
        return 0;
}

int client_state_peer_set(ClientState *s, const char *address, const KeyPackage *kp) {
        _cleanup_(freep) char *dir = peer_dir(s, address), *path = client_state_peer_path(s, address, kp->user);
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX];
        const char *text;
        int r;

        if (!dir || !path)
                return -ENOMEM;
        r = key_package_to_json(kp, &o);
        if (r < 0)
                return r;
        /* For the human who reads the file; ignored when loading. */
        rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);
        r = json_add_string(o, "fingerprint", fingerprint);
        if (r < 0)
                return r;
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;

        r = client_state_lock(s);
        if (r >= 0) {
                r = mkdir_parents(dir, 0700);
                if (r >= 0) {
                        _cleanup_(freep) char *line = NULL;

                        if (asprintf(&line, "%s\n", text) < 0) {
                                line = NULL;
                                r = -ENOMEM;
                        } else
                                r = write_file_atomic(path, line, strlen(line), 0600);
                }
                client_state_unlock(s);
        }
        return r;
}

static bool same_key(const KeyPackage *a, const KeyPackage *b) {
        return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

int client_state_peer_pin(ClientState *s, const char *address, const KeyPackage *kp,
                   char ret_pinned[RSA_FINGERPRINT_MAX]) {
        _cleanup_(key_package_freep) KeyPackage *old = NULL;
        int r;

        r = client_state_lock(s);
        if (r < 0)
                return r;
        r = client_state_peer_get(s, address, kp->user, &old);
        if (r == -ENOENT) {
                r = client_state_peer_set(s, address, kp);
                if (r >= 0)
                        r = PIN_NEW;
        } else if (r >= 0) {
                if (same_key(old, kp))
                        r = PIN_MATCH;
                else if (rotation_chain_vouches(kp->rotations, kp->n_rotations, kp->user,
                                                old->key, old->key_len, kp->key, kp->key_len) >= 0) {
                        /* The pinned key signed the way to this one. */
                        if (ret_pinned)
                                rsa_fingerprint_spki(old->key, old->key_len, ret_pinned);
                        r = client_state_peer_set(s, address, kp);
                        if (r >= 0)
                                r = PIN_ROTATED;
                } else {
                        if (ret_pinned)
                                rsa_fingerprint_spki(old->key, old->key_len, ret_pinned);
                        r = PIN_MISMATCH;
                }
        }
        client_state_unlock(s);
        return r;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

bool outbox_key_valid(const char *key) {
        size_t n = strlen(key);

        return n > 0 && n <= OUTBOX_KEY_MAX && key[0] != '.' &&
               strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

void outbox_digest(const char *to, const char *text, size_t len, uint8_t ret[OUTBOX_DIGEST_LEN]) {
        struct sha256_ctx ctx;

        sha256_init(&ctx);
        sha256_update(&ctx, strlen(to) + 1, (const uint8_t *) to);
        sha256_update(&ctx, len, (const uint8_t *) text);
        sha256_digest(&ctx, OUTBOX_DIGEST_LEN, ret);
}

char *client_state_outbox_path(const ClientState *s, const char *user, const char *key) {
        char *p;

        if (!outbox_key_valid(key))
                return NULL;
        return asprintf(&p, "%s/outbox/%s/%s", s->home, user, key) < 0 ? NULL : p;
}

/* An outbox file; "to" is for the human who reads it. */
typedef struct OutboxEntry {
        const char *digest;
        json_object *envelope;
} OutboxEntry;

static const JsonDispatch outbox_table[] = {
        { "digest", json_type_string, json_dispatch_string, offsetof(OutboxEntry, digest), JSON_MANDATORY },
        { "envelope", json_type_object, json_dispatch_borrow, offsetof(OutboxEntry, envelope), JSON_MANDATORY },
        {}
};

int client_state_outbox_load(ClientState *s, const char *path, const uint8_t digest[OUTBOX_DIGEST_LEN],
                      json_object **ret_envelope) {
        _cleanup_(freep) char *content = NULL, *b64 = NULL;
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        OutboxEntry entry = {};
        size_t len;
        int r;

        r = read_file(path, PEER_FILE_MAX, &content, &len);
        if (r < 0)
                return r;
        r = json_parse_strict(content, len, STATE_JSON_DEPTH, &o, NULL);
        if (r >= 0)
                r = json_dispatch(o, outbox_table, 0, &entry, NULL);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        r = b64_encode(digest, OUTBOX_DIGEST_LEN, &b64);
        if (r < 0)
                return r;
        if (!streq(entry.digest, b64))
                return -EEXIST;
        *ret_envelope = json_object_get(entry.envelope);
        return 0;
}

int client_state_outbox_save(ClientState *s, const char *path, const char *to, const uint8_t digest[OUTBOX_DIGEST_LEN],
                      json_object *envelope) {
        _cleanup_(json_object_unrefp) json_object *o = json_object_new_object();
        _cleanup_(freep) char *b64 = NULL, *dir = strdup(path), *line = NULL;
        const char *text;
        int r;

        if (!o || !dir)
                return -ENOMEM;
        r = b64_encode(digest, OUTBOX_DIGEST_LEN, &b64);
        if (r < 0)
                return r;
        r = json_add_string(o, "to", to);
        if (r >= 0)
                r = json_add_string(o, "digest", b64);
        if (r >= 0)
                r = json_add(o, "envelope", json_object_get(envelope));
        if (r < 0)
                return r;
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text || asprintf(&line, "%s\n", text) < 0) {
                line = NULL;
                return -ENOMEM;
        }
        *strrchr(dir, '/') = '\0';
        r = client_state_lock(s);
        if (r < 0)
                return r;
        r = mkdir_parents(dir, 0700);
        if (r >= 0)
                r = write_file_atomic(path, line, strlen(line), 0600);
        client_state_unlock(s);
        return r;
}

int client_state_outbox_prune(ClientState *s, const char *user, uint64_t max_age, uint64_t now) {
        _cleanup_(freep) char *dir = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;

        if (asprintf(&dir, "%s/outbox/%s", s->home, user) < 0)
                return -ENOMEM;
        d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d))) {
                struct stat st;

                if (!outbox_key_valid(de->d_name) ||
                    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if ((uint64_t) st.st_mtime + max_age < now)
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        }
        return 0;
}
