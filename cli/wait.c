/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>

#include "macro.h"
#include "util.h"
#include "wait.h"

uint64_t deadline_in(uint64_t usec) {
        uint64_t now = now_monotonic_usec();

        return usec >= WAIT_FOREVER - now ? WAIT_FOREVER : now + usec;
}

int wait_fds(struct pollfd *fds, size_t n, int abort_fd, uint64_t deadline) {
        struct pollfd p[WAIT_FDS_MAX + 1];
        bool with_abort = abort_fd >= 0, polled = false;

        if (n > WAIT_FDS_MAX)
                return -EINVAL;

        for (;;) {
                uint64_t now = now_monotonic_usec();
                int timeout = -1, r;

                if (deadline != WAIT_FOREVER) {
                        if (now >= deadline && (deadline != WAIT_NOW || polled))
                                return 0;
                        /* Rounded up: waking a little early would spin. */
                        timeout = now >= deadline ? 0 :
                                  (int) MIN((deadline - now + 999) / 1000, (uint64_t) INT_MAX);
                }
                for (size_t i = 0; i < n; i++)
                        p[i] = (struct pollfd) { .fd = fds[i].fd, .events = fds[i].events };
                if (with_abort)
                        p[n] = (struct pollfd) { .fd = abort_fd, .events = POLLIN };

                r = poll(p, n + with_abort, timeout);
                polled = true;
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (with_abort && p[n].revents)
                        return -ECANCELED;
                if (r == 0)
                        continue;       /* the deadline is checked above */
                for (size_t i = 0; i < n; i++)
                        fds[i].revents = p[i].revents;
                return 1;
        }
}

int wait_fd(int fd, short events, int abort_fd, uint64_t deadline) {
        struct pollfd p = { .fd = fd, .events = events };

        return wait_fds(&p, 1, abort_fd, deadline);
}
