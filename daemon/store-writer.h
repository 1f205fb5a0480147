/* SPDX-License-Identifier: MIT */
/*
 * The SQLite store's writer thread: runs jobs (the relay's group commit,
 * the pump's pages of the queue) off the event loop, one after the other
 * in the order given, and calls each one's finish() back on the loop, so
 * that the loop reads and parses while a COMMIT writes and syncs the log.
 *
 * The loop and the thread never use the database connection at once:
 * the loop gives it to the thread with a job, and takes it back with
 * store_writer_wait() (every other store call begins with it), which
 * returns once no job is queued or running. The mutex that says so is
 * also what makes the thread's writes (the connection's, the store's
 * counts) visible to the loop after, and the loop's to the thread.
 *
 * The thread touches nothing of the loop's: sd-event is not thread-safe.
 * It says a job is over by writing to an eventfd, which an io source on
 * the loop reads; finish() runs there, never from inside a store call.
 * It logs nothing: a job keeps what failed for its finish().
 *
 * After a job failed (run() < 0), the thread starts no other until the
 * loop has called that one's finish(): a failure is answered before
 * anything queued behind it runs, and the loop may take that back
 * (store_writer_retract()) to run it after whatever the failure needs.
 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

typedef struct StoreWriter StoreWriter;

typedef struct StoreJob StoreJob;
struct StoreJob {
        StoreJob *next;                 /* the writer's */
        /* On the thread, with the connection: the job's result. */
        int (*run)(StoreJob *j);
        /* On the loop, once run() returned r; call false: the store is
         * closing, only free what the job holds. */
        void (*finish)(StoreJob *j, int r, bool call);
        int r;                          /* the writer's: what run() returned */
};

int store_writer_new(sd_event *event, StoreWriter **ret);
/* Wait for the jobs queued, join the thread, and finish the jobs not yet
 * finished with call = false. NULL is fine. */
StoreWriter *store_writer_free(StoreWriter *w);

/* Queue j: run() on the thread after the jobs queued before it. */
void store_writer_push(StoreWriter *w, StoreJob *j);
/* The same, but with no job queued or running, run() is called now, on
 * the caller's thread (the loop, which has the connection then): a read
 * that waits for nothing is not worth two thread switches. finish()
 * still comes from the loop, later, in order. */
void store_writer_push_or_run(StoreWriter *w, StoreJob *j);
/* Take back j, queued and not started: true when it was (neither its
 * run() nor its finish() is called), false when it has started. */
bool store_writer_retract(StoreWriter *w, StoreJob *j);
/* Until no job is queued or running (or those queued wait for a failed
 * one's finish()): the connection is the loop's. On
 * the writer's own thread (a job's run() that calls a store function),
 * nothing to wait for. The jobs' finish() still comes from the loop. */
void store_writer_wait(StoreWriter *w);
/* Is this the writer's thread (a job's run() calling store functions)? */
bool store_writer_on_thread(StoreWriter *w);
/* Is a job queued or running (as store_writer_wait() sees it)? Never
 * waits (for the lock only). */
bool store_writer_busy(StoreWriter *w);
/* store_writer_wait(), then finish() every job run, now: at shutdown,
 * when the loop runs no more. */
void store_writer_flush(StoreWriter *w);
