/* SPDX-License-Identifier: MIT */
/*
 * The SQLite store's writer thread: store-writer.h says what and why.
 *
 * Under `lock`: the jobs to run (queue), those run whose finish() is due
 * (done), whether the thread runs one (running), whether it waits for a
 * failed job's finish() (paused) and stop. The thread
 * holds the lock only to take a job and to give it back, never while a
 * job runs; the loop waits on `idle` only in store_writer_wait().
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "store-backend.h"
#include "store-writer.h"

struct StoreWriter {
        sd_event_source *io;            /* the eventfd, on the loop */
        int efd;
        pthread_t thread;
        bool started;                   /* the thread runs, and the lock and conditions exist */

        pthread_mutex_t lock;
        pthread_cond_t wake;            /* the thread's: a job queued, or stop */
        pthread_cond_t idle;            /* the loop's: nothing queued or running */
        /* Under lock. */
        StoreJob *queue, **queue_tail;
        StoreJob *done, **done_tail;
        bool running, paused, stop;
};

/* Under lock: what the loop waits for in store_writer_wait(). */
static bool busy(StoreWriter *w) {
        return w->running || (w->queue && !w->paused);
}

/* Under lock: j ran and returned r; its finish() is due, on the loop. */
static void ran(StoreWriter *w, StoreJob *j, int r) {
        const uint64_t one = 1;

        j->r = r;
        j->next = NULL;
        if (r < 0)
                w->paused = true;
        *w->done_tail = j;
        w->done_tail = &j->next;
        /* Cannot fail but at a count of 2^64 - 1 (the loop reads it back
         * to 0 at each wakeup); the thread blocks every signal. */
        (void) write(w->efd, &one, sizeof(one));
}

static void *writer_thread(void *userdata) {
        StoreWriter *w = userdata;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                StoreJob *j;
                int r;

                while (!w->stop && (!w->queue || w->paused))
                        pthread_cond_wait(&w->wake, &w->lock);
                /* Stopping runs what is queued first: the store waits
                 * for it before it closes, as every call does. */
                if (!w->queue)
                        break;
                j = w->queue;
                w->queue = j->next;
                if (!w->queue)
                        w->queue_tail = &w->queue;
                w->running = true;
                pthread_mutex_unlock(&w->lock);

                r = j->run(j);

                pthread_mutex_lock(&w->lock);
                ran(w, j, r);
                w->running = false;
                if (!busy(w))
                        pthread_cond_broadcast(&w->idle);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* The jobs run until now, taken from the writer: their finish() is due. */
static StoreJob *take_done(StoreWriter *w) {
        StoreJob *list;

        pthread_mutex_lock(&w->lock);
        list = w->done;
        w->done = NULL;
        w->done_tail = &w->done;
        pthread_mutex_unlock(&w->lock);
        return list;
}

/* In the order they ran. finish() may free its job, and queue more. A
 * failed one is the last (the thread paused after it): once it is
 * finished, the thread may go on with what is queued. */
static void finish_all(StoreWriter *w, StoreJob *list, bool call) {
        while (list) {
                StoreJob *j = list;
                bool failed = j->r < 0;

                list = j->next;
                j->finish(j, j->r, call);
                if (failed) {
                        pthread_mutex_lock(&w->lock);
                        w->paused = false;
                        pthread_cond_signal(&w->wake);
                        pthread_mutex_unlock(&w->lock);
                }
        }
}

static int on_writer_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        StoreWriter *w = userdata;
        uint64_t n;

        /* Nonblocking: EAGAIN when a flush took them all already. */
        (void) read(fd, &n, sizeof(n));
        finish_all(w, take_done(w), true);
        return 0;
}

int store_writer_new(sd_event *event, StoreWriter **ret) {
        StoreWriter *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->queue_tail = &w->queue;
        w->done_tail = &w->done;
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0) {
                r = -errno;
                free(w);
                return r;
        }
        r = sd_event_add_io(event, &w->io, w->efd, EPOLLIN, on_writer_io, w);
        if (r < 0) {
                store_writer_free(w);
                return r;
        }
        /* Their defaults, which cannot fail on Linux. */
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        pthread_cond_init(&w->idle, NULL);
        r = store_thread_create(&w->thread, writer_thread, w);
        w->started = r >= 0;
        if (r < 0) {
                store_writer_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

StoreWriter *store_writer_free(StoreWriter *w) {
        if (!w)
                return NULL;
        if (w->started) {
                pthread_mutex_lock(&w->lock);
                w->stop = true;
                pthread_cond_signal(&w->wake);
                pthread_mutex_unlock(&w->lock);
                (void) pthread_join(w->thread, NULL);
                finish_all(w, take_done(w), false);
                pthread_cond_destroy(&w->idle);
                pthread_cond_destroy(&w->wake);
                pthread_mutex_destroy(&w->lock);
        }
        sd_event_source_disable_unref(w->io);
        if (w->efd >= 0)
                close(w->efd);
        free(w);
        return NULL;
}

void store_writer_push(StoreWriter *w, StoreJob *j) {
        j->next = NULL;
        pthread_mutex_lock(&w->lock);
        *w->queue_tail = j;
        w->queue_tail = &j->next;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
}

bool store_writer_retract(StoreWriter *w, StoreJob *j) {
        bool found = false;

        pthread_mutex_lock(&w->lock);
        for (StoreJob **p = &w->queue; *p; p = &(*p)->next)
                if (*p == j) {
                        *p = j->next;
                        if (!*p)
                                w->queue_tail = p;
                        found = true;
                        break;
                }
        pthread_mutex_unlock(&w->lock);
        return found;
}

bool store_writer_on_thread(StoreWriter *w) {
        return w && pthread_equal(pthread_self(), w->thread);
}

void store_writer_push_or_run(StoreWriter *w, StoreJob *j) {
        bool idle;
        int r;

        pthread_mutex_lock(&w->lock);
        idle = !w->queue && !w->running;
        pthread_mutex_unlock(&w->lock);
        if (!idle) {
                store_writer_push(w, j);
                return;
        }
        /* Only the loop queues jobs: the writer stays idle meanwhile. */
        r = j->run(j);
        pthread_mutex_lock(&w->lock);
        ran(w, j, r);
        pthread_mutex_unlock(&w->lock);
}

void store_writer_wait(StoreWriter *w) {
        if (!w || store_writer_on_thread(w))
                return;
        pthread_mutex_lock(&w->lock);
        while (busy(w))
                pthread_cond_wait(&w->idle, &w->lock);
        pthread_mutex_unlock(&w->lock);
}

bool store_writer_busy(StoreWriter *w) {
        bool b;

        if (!w)
                return false;
        pthread_mutex_lock(&w->lock);
        b = busy(w);
        pthread_mutex_unlock(&w->lock);
        return b;
}

void store_writer_flush(StoreWriter *w) {
        if (!w)
                return;
        store_writer_wait(w);
        finish_all(w, take_done(w), true);
}
