/* SPDX-License-Identifier: MIT */
/*
 * The one place scctl blocks: wait for descriptors, an abort descriptor
 * (the signalfd of SIGINT/SIGTERM) and a deadline, with poll(2).
 *
 * Why not sd-event, which the daemon uses: scctl is pull-style. Each
 * command is a straight sequence of steps (connect, send, wait for the
 * answer) that waits in one place at a time for one or two descriptors; an
 * event loop would turn those sequences into callbacks and state machines
 * for no gain. What the hand-written loops had to get right each time
 * (EINTR, rounding the timeout up, the abort descriptor first) lives here.
 */
#pragma once

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

/* No deadline. */
#define WAIT_FOREVER UINT64_MAX
/* No waiting: poll once for what is ready now. */
#define WAIT_NOW 0
/* The most descriptors wait_fds() takes, the abort descriptor not counted. */
#define WAIT_FDS_MAX 16

/* A monotonic deadline usec from now (now_monotonic_usec()). */
uint64_t deadline_in(uint64_t usec);

/* Wait until one of fds has revents, abort_fd (if >= 0) is readable, or
 * the monotonic deadline (usec; WAIT_FOREVER for none) passes. Entries
 * with a negative fd are ignored, as poll(2) does; n may be 0 (a sleep
 * that abort_fd cuts short). A signal that interrupts poll() does not end
 * the wait early.
 *
 * Returns 1 with the revents of fds set, 0 when the deadline passed
 * (without polling when it already had, except for WAIT_NOW), -ECANCELED when abort_fd is
 * readable (checked first: the user wants out even if data is there), or
 * -errno (-EINVAL: more than WAIT_FDS_MAX descriptors). */
int wait_fds(struct pollfd *fds, size_t n, int abort_fd, uint64_t deadline);

/* The same for one descriptor and events. */
int wait_fd(int fd, short events, int abort_fd, uint64_t deadline);
