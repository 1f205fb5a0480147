/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "listener.h"
#include "log.h"
#include "macro.h"

/* A few per wakeup; the rest stay in the backlog for the next one, so
 * that a burst of connections does not hold up the established ones. */
#define LISTENER_ACCEPTS_PER_WAKEUP 16

struct Listener {
        int fd;
        sd_event_source *io, *retry;
        const ListenerCallbacks *callbacks;
        void *userdata;
};

int listener_fd(const Listener *l) {
        return l->fd;
}

static int listener_on_retry(sd_event_source *es, uint64_t usec, void *userdata) {
        Listener *l = userdata;

        (void) sd_event_source_set_enabled(l->io, SD_EVENT_ON);
        return 0;
}

static void listener_pause(Listener *l, int error) {
        if (l->callbacks->paused)
                l->callbacks->paused(l, error, l->userdata);
        (void) sd_event_source_set_time_relative(l->retry, LISTENER_RETRY_USEC);
        (void) sd_event_source_set_enabled(l->retry, SD_EVENT_ONESHOT);
        (void) sd_event_source_set_enabled(l->io, SD_EVENT_OFF);
}

static int listener_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Listener *l = userdata;

        for (unsigned i = 0; i < LISTENER_ACCEPTS_PER_WAKEUP; i++) {
                struct sockaddr_storage ss;
                socklen_t sslen = sizeof(ss);
                void *token = NULL;
                int cfd;

                cfd = accept4(fd, (struct sockaddr *) &ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                                listener_pause(l, errno);
                        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                                 errno != ECONNABORTED && errno != EPROTO)
                                log_warning("accept() failed: %m");
                        return 0;
                }
                if (l->callbacks->admit &&
                    l->callbacks->admit(l, cfd, (struct sockaddr *) &ss, sslen, l->userdata, &token) < 0) {
                        safe_close(cfd);
                        continue;
                }
                l->callbacks->accept(l, cfd, token, l->userdata);
        }
        return 0;
}

int listener_new(sd_event *e, int fd, const ListenerCallbacks *callbacks, void *userdata, Listener **ret) {
        Listener *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        *l = (Listener) {
                .fd = -EBADF,
                .callbacks = callbacks,
                .userdata = userdata,
        };
        r = sd_event_add_io(e, &l->io, fd, EPOLLIN, listener_on_io, l);
        /* Made now: when it is needed, there may be no descriptor left
         * for the timerfd behind it. */
        if (r >= 0)
                r = sd_event_add_time_relative(e, &l->retry, CLOCK_MONOTONIC, LISTENER_RETRY_USEC, 0,
                                               listener_on_retry, l);
        if (r < 0) {
                listener_free(l);
                return r;
        }
        (void) sd_event_source_set_enabled(l->retry, SD_EVENT_OFF);
        l->fd = fd;
        *ret = l;
        return 0;
}

Listener *listener_free(Listener *l) {
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->io);
        sd_event_source_disable_unref(l->retry);
        safe_close(l->fd);
        free(l);
        return NULL;
}
