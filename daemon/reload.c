/* SPDX-License-Identifier: MIT */
/* One blocking Varlink call on the control socket: scctl's admin.c does
 * the same with a poll loop, signals and output formats, none of which a
 * one-shot ExecReload= needs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "constants.h"
#include "fileio.h"
#include "macro.h"
#include "reload.h"
#include "varlink.h"

#define RELOAD_METHOD CONTROL_INTERFACE ".Reload"
#define RELOAD_FAILED CONTROL_INTERFACE ".ReloadFailed"
/* The reply is "{}" or an error with a reason; anything near this is not it. */
#define RELOAD_REPLY_MAX (64u * 1024)

static int connect_control(const char *path, uint64_t timeout_usec, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = {
                .tv_sec = (time_t) (timeout_usec / 1000000),
                .tv_usec = (suseconds_t) (timeout_usec % 1000000),
        };
        _cleanup_(closep) int fd = -EBADF;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* Blocking, with a bound on each send and receive: a relay that
         * hangs must not hang "systemctl reload" beyond its own timeout. */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int receive_message(int fd, VarlinkReader *in, json_object **ret) {
        for (;;) {
                size_t room;
                ssize_t n;
                void *p;
                int r;

                r = varlink_reader_next(in, ret);
                if (r != 0)
                        return r < 0 ? -EPROTO : 0;
                r = varlink_reader_space(in, &p, &room);
                if (r < 0)
                        return -EPROTO;
                n = recv(fd, p, room, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
                if (n == 0)
                        return -ECONNRESET;
                varlink_reader_commit(in, (size_t) n);
        }
}

int reload_request(const char *control_path, uint64_t timeout_usec, char **ret_reason) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(buf_donep) Buf out = BUF_INIT;
        _cleanup_(json_object_unrefp) json_object *call = NULL, *msg = NULL;
        _cleanup_(varlink_reader_done) VarlinkReader in;
        json_object *reason = NULL;
        VarlinkReply reply;
        int r;

        varlink_reader_init(&in, RELOAD_REPLY_MAX);
        r = connect_control(control_path, timeout_usec, &fd);
        if (r < 0)
                return r;

        call = varlink_new_call(RELOAD_METHOD, NULL, false);
        if (!call)
                return -ENOMEM;
        r = varlink_append(&out, call);
        if (r < 0)
                return r;
        r = write_all(fd, out.data, out.len);
        if (r < 0)
                return r == -EAGAIN ? -ETIMEDOUT : r;

        r = receive_message(fd, &in, &msg);
        if (r < 0)
                return r;
        if (varlink_reply_parse(msg, &reply) < 0)
                return -EPROTO;
        if (!reply.error)
                return 0;
        if (strcmp(reply.error, RELOAD_FAILED) != 0)
                return -EPROTO;
        if (ret_reason && reply.parameters && json_object_object_get_ex(reply.parameters, "reason", &reason) &&
            json_object_is_type(reason, json_type_string)) {
                *ret_reason = strdup(json_object_get_string(reason));
                if (!*ret_reason)
                        return -ENOMEM;
        }
        return -EBADE;
}
