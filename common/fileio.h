/* SPDX-License-Identifier: MIT */
/* Small file helpers that every module writing state shares. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* write(2) until done, retrying on EINTR. Returns 0 or -errno. */
int write_all(int fd, const void *data, size_t len);

/* fsync the directory that holds path, so that a rename in it survives a
 * crash. */
int fsync_parent_dir(const char *path);

/* Replace path atomically: a fresh temporary file next to it (O_EXCL, so
 * never a planted symlink or an existing file), data, fsync, rename over
 * the target, fsync of the directory. mode is set explicitly so that the
 * umask cannot change it. On failure the target is unchanged and the
 * temporary file removed. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Read a whole key file of at most max bytes, NUL-terminated, into a buffer
 * of max + 1 bytes (free it with secure_free(buf, max + 1)). private: no
 * symlinks, and -EPERM when group or others may read or write it, checked
 * before any byte is read. -EFBIG when longer than max. */
int read_key_file(const char *path, bool private, size_t max, char **ret, size_t *ret_len);
