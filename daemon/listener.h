/* SPDX-License-Identifier: MIT */
/*
 * One listening socket in the event loop: accepts a few connections per
 * wakeup, asks the owner whether each peer is admitted before anything is
 * spent on it (the chat socket's per-address limits, anvil.h), and pauses
 * accepting for a while when the process runs out of file descriptors or
 * memory, rather than spin on a backlog it cannot take from.
 */
#pragma once

#include <sys/socket.h>

#include <systemd/sd-event.h>

/* How long accepting pauses after EMFILE, ENFILE, ENOBUFS or ENOMEM. */
#define LISTENER_RETRY_USEC (1000000ull)

typedef struct Listener Listener;

typedef struct ListenerCallbacks {
        /* Optional: a peer connected (fd, its address sa). <0 refuses it
         * (the listener closes fd); otherwise *ret_token goes to accept. */
        int (*admit)(Listener *l, int fd, const struct sockaddr *sa, socklen_t salen, void *userdata,
                     void **ret_token);
        /* The connection is the owner's: takes fd. */
        void (*accept)(Listener *l, int fd, void *token, void *userdata);
        /* accept() failed with error (a positive errno): accepting pauses
         * for LISTENER_RETRY_USEC. For the owner's log. */
        void (*paused)(Listener *l, int error, void *userdata);
} ListenerCallbacks;

/* Takes fd (a non-blocking listening socket) on success. */
int listener_new(sd_event *e, int fd, const ListenerCallbacks *callbacks, void *userdata, Listener **ret);
/* Closes the socket. */
Listener *listener_free(Listener *l);
int listener_fd(const Listener *l);
