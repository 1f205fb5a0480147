/* SPDX-License-Identifier: MIT */
/*
 * The store's checkpointer thread: wal-checkpointer.h says what and why.
 *
 * The committer (the thread that commits on the store's connection: the
 * event loop, or the store's writer thread while it runs the relay's
 * batch, store-writer.h) and this thread share only the state under
 * `lock`: the committer asks for a checkpoint (asked) and may wait for
 * one to be over (done); the thread holds the lock only to read and write
 * those flags, never while it checkpoints, so the committer never waits
 * for the lock longer than that. It waits for the thread's checkpoint in
 * two places only: store_checkpoint() (the loop; rare: the disk is nearly
 * full, and after the writer's batch), and when the log has grown to
 * WAIT_PAGES (below), once each time: with a writer thread that is the
 * writer's wait, not the loop's.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fileio.h"
#include "log.h"
#include "macro.h"
#include "sqlite-errno.h"
#include "store-backend.h"
#include "wal-checkpointer.h"

/* A checkpoint for every this many pages committed: SQLite's default
 * wal_autocheckpoint, which the store used until the thread did it. */
#define CHECKPOINT_PAGES 1000

/* The writer restarts the log only at a transaction that begins after a
 * checkpoint copied all of it. Under writes that never pause, one commits
 * while each checkpoint runs, so none ever copies all: the log would grow
 * by every page written, without end. When it has this many pages the committer
 * waits, once, for a checkpoint that begins after its commit: the pages
 * since the last one and a sync of the database file, and then the next
 * transaction restarts the log. 16 MiB with 4 KiB pages; a log of that
 * size is megabytes the disk-full checkpoint (store_checkpoint()) gives
 * back. */
#define WAIT_PAGES (4 * CHECKPOINT_PAGES)

/* The log's file: a 32-byte header, then frames of a page and a 24-byte
 * header each (SQLite's file format). */
#define LOG_HEADER_BYTES 32
#define FRAME_HEADER_BYTES 24
#define PREWRITE_CHUNK (1024 * 1024)

/* For the thread's first read, which another process holding the
 * database (the sqlite3 tool) may hold up; checkpoints never wait. */
#define BUSY_TIMEOUT_MS 1000

struct WalCheckpointer {
        sqlite3 *loop_db;               /* the event loop's connection, whose commits are hooked */
        sqlite3 *db;                    /* the thread's */
        pthread_t thread;
        bool started;                   /* the thread runs, and the lock and conditions exist */

        /* The hook's alone. It runs on whichever thread commits on the
         * store's connection: the loop, or the store's writer thread
         * (store-writer.h) while it has a job. Never both at once: the
         * connection changes hands only under the writer's lock, which
         * also makes these fields' last values visible to the next
         * thread to commit. */
        int last_pages;                 /* in the log after the last commit */
        int ask_at, wait_at;            /* ask for a checkpoint / wait for one at this many */

        pthread_mutex_t lock;
        pthread_cond_t wake;            /* the thread's: asked, resumed or stop */
        pthread_cond_t done;            /* the loop's: a checkpoint is over */
        /* Under lock. */
        bool asked, running, paused, stop;
        uint64_t begun, finished;       /* checkpoints begun, and finished, since the start */
};

/* One checkpoint of what the log holds now. Failures are logged once
 * until one succeeds again (a full disk fails every one). */
static void checkpoint(WalCheckpointer *c, bool *failing) {
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);

        /* SQLITE_BUSY: another connection (another process, the sqlite3
         * tool) is checkpointing; that is as good. SQLITE_INTERRUPT: the
         * store is closing, and its connection checkpoints the rest. */
        if (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_INTERRUPT) {
                *failing = false;
                return;
        }
        if (!*failing)
                log_warning("SQLite: cannot checkpoint the write-ahead log (%s); the next commits try again",
                            sqlite3_errmsg(c->db));
        *failing = true;
}

static void *checkpointer_thread(void *userdata) {
        WalCheckpointer *c = userdata;
        bool failing = false;

        pthread_mutex_lock(&c->lock);
        for (;;) {
                while (!c->stop && (!c->asked || c->paused))
                        pthread_cond_wait(&c->wake, &c->lock);
                if (c->stop)
                        break;
                c->asked = false;
                c->running = true;
                c->begun++;
                pthread_mutex_unlock(&c->lock);

                checkpoint(c, &failing);

                pthread_mutex_lock(&c->lock);
                c->running = false;
                c->finished = c->begun;
                pthread_cond_broadcast(&c->done);
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

/* Ask for a checkpoint (of what was committed until now), and with wait,
 * wait until one that began after this call is over. */
static void ask(WalCheckpointer *c, bool wait) {
        uint64_t target;

        pthread_mutex_lock(&c->lock);
        target = c->begun + 1;
        c->asked = true;
        pthread_cond_signal(&c->wake);
        while (wait && c->finished < target)
                pthread_cond_wait(&c->done, &c->lock);
        pthread_mutex_unlock(&c->lock);
}

/* After each commit of the store's connection that wrote pages (on the
 * committer's thread), with the
 * number in the log (SQLite's autocheckpoint hook is called the same way). */
static int wal_hook(void *userdata, sqlite3 *db, const char *name, int pages) {
        WalCheckpointer *c = userdata;

        /* Fewer than after the last commit: the writer restarted the log.
         * (A transaction larger than the whole log before is not seen so:
         * the next checkpoint then comes up to CHECKPOINT_PAGES late.) */
        if (pages < c->last_pages) {
                c->ask_at = CHECKPOINT_PAGES;
                c->wait_at = WAIT_PAGES;
        }
        c->last_pages = pages;

        if (pages >= c->wait_at) {
                ask(c, true);
                /* Not again at every commit should a reader (the sqlite3
                 * tool) keep the log from restarting. */
                c->wait_at = pages + WAIT_PAGES;
                c->ask_at = pages + CHECKPOINT_PAGES;
        } else if (pages >= c->ask_at) {
                ask(c, false);
                c->ask_at = pages + CHECKPOINT_PAGES;
        }
        return SQLITE_OK;
}

/* The thread's connection, which has read the database once: SQLite opens
 * the log at a connection's first read, and a checkpoint before that finds
 * none and does nothing. */
static int open_connection(const char *path, sqlite3 **ret) {
        sqlite3 *db = NULL;
        int rc;

        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
        /* FULL, as the store's own: a checkpoint syncs the log before it
         * copies it (what committed at synchronous=NORMAL is on disk from
         * then on) and the database file after. */
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA synchronous = FULL; SELECT count(*) FROM sqlite_schema",
                                  NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                sqlite3_close(db);
                return errno_from_sqlite(rc) ?: -EIO;
        }
        *ret = db;
        return 0;
}

/* The log's size at WAIT_PAGES frames: what it grows to under writes that
 * never pause (and one transaction more, the one that crosses it). */
static int log_bound(sqlite3 *db, off_t *ret) {
        sqlite3_stmt *st = NULL;
        sqlite3_int64 page = 0;

        if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                page = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (page <= 0)
                return -EIO;
        *ret = LOG_HEADER_BYTES + (off_t) WAIT_PAGES * (page + FRAME_HEADER_BYTES);
        return 0;
}

static int write_zeros(int fd, off_t from, off_t to) {
        _cleanup_(freep) void *zeros = calloc(1, PREWRITE_CHUNK);
        int r;

        if (!zeros)
                return -ENOMEM;
        if (lseek(fd, from, SEEK_SET) < 0)
                return -errno;
        for (; from < to; from += PREWRITE_CHUNK) {
                r = write_all(fd, zeros, (size_t) MIN((off_t) PREWRITE_CHUNK, to - from));
                if (r < 0)
                        return r;
        }
        return fdatasync(fd) < 0 ? -errno : 0;
}

/* Before the first commit, the log's file is given the size it grows to,
 * in zeros, written and synced. A commit that makes the file longer also
 * changes its size, which the commit's sync must then write too: on ext4,
 * a second write and wait for the disk in every commit, until the log
 * has grown to its full size, after every start (SQLite removes the log
 * when its last connection closes). Within the file's size a sync writes
 * the log's pages alone. Recovery reads frames until the first that is
 * not valid (each carries the header's salts and a running checksum), so
 * zeros end the log as the stale frames past its end do once it started
 * again.
 *
 * Best effort, and never where the log would take more than half of the
 * room left: slower commits are better than a fuller disk (which the
 * disk-full checkpoint, store_checkpoint(), truncates the log for). 1 when
 * written, 0 when it was that large already. */
static int log_extend(const char *wal, off_t want) {
        _cleanup_(closep) int fd = -EBADF;
        struct statvfs vfs;
        struct stat st;
        int r;

        /* SQLite made it at the store's first write, with the database's
         * owner and mode. */
        fd = open(wal, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || fstatvfs(fd, &vfs) < 0)
                return -errno;
        if (st.st_size >= want)
                return 0;
        if ((uint64_t) vfs.f_bavail * vfs.f_frsize < 2 * (uint64_t) (want - st.st_size))
                return -ENOSPC;
        r = write_zeros(fd, st.st_size, want);
        if (r < 0) {
                /* Nothing of SQLite's is past the size it had. */
                (void) ftruncate(fd, st.st_size);
                return r;
        }
        return 1;
}

static int log_prewrite(sqlite3 *db) {
        off_t want;
        int r;

        r = log_bound(db, &want);
        if (r < 0)
                return r;
        /* Under SQLite's write lock: another connection (the sqlite3 tool)
         * appending to the log meanwhile would have its frames overwritten
         * by the zeros. Held by such a connection, no waiting: the log
         * grows as it did. */
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
                return -EBUSY;
        r = log_extend(sqlite3_filename_wal(sqlite3_db_filename(db, "main")), want);
        (void) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

int wal_checkpointer_new(sqlite3 *db, const char *path, WalCheckpointer **ret) {
        WalCheckpointer *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->loop_db = db;
        c->ask_at = CHECKPOINT_PAGES;
        c->wait_at = WAIT_PAGES;

        r = log_prewrite(db);
        if (r < 0)
                log_debug_errno(r, "SQLite: the write-ahead log is not written ahead (%m); commits grow it");

        r = open_connection(path, &c->db);
        if (r < 0) {
                free(c);
                return r;
        }
        /* Their defaults, which cannot fail on Linux. */
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->wake, NULL);
        pthread_cond_init(&c->done, NULL);
        r = store_thread_create(&c->thread, checkpointer_thread, c);
        c->started = r >= 0;
        if (r < 0) {
                wal_checkpointer_free(c);
                return r;
        }
        (void) sqlite3_wal_hook(db, wal_hook, c);
        *ret = c;
        return 0;
}

WalCheckpointer *wal_checkpointer_free(WalCheckpointer *c) {
        if (!c)
                return NULL;
        if (c->started) {
                pthread_mutex_lock(&c->lock);
                c->stop = true;
                pthread_cond_signal(&c->wake);
                pthread_mutex_unlock(&c->lock);
                /* A checkpoint under way stops at its next page. */
                sqlite3_interrupt(c->db);
                (void) pthread_join(c->thread, NULL);
                (void) sqlite3_wal_hook(c->loop_db, NULL, NULL);
        }
        pthread_cond_destroy(&c->done);
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        sqlite3_close(c->db);
        free(c);
        return NULL;
}

void wal_checkpointer_pause(WalCheckpointer *c) {
        pthread_mutex_lock(&c->lock);
        c->paused = true;
        while (c->running)
                pthread_cond_wait(&c->done, &c->lock);
        pthread_mutex_unlock(&c->lock);
}

void wal_checkpointer_resume(WalCheckpointer *c) {
        pthread_mutex_lock(&c->lock);
        c->paused = false;
        if (c->asked)
                pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
}
