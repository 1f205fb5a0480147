/* SPDX-License-Identifier: MIT */
/*
 * A VFS for tests, made the default: the default one, but its files
 * count the syncs SQLite asks of them (sync_count: did a commit wait for
 * the disk?) and refuse the next full_writes writes as a full disk would,
 * without a hook in the store. Call sync_count_register() before the
 * store opens its database.
 *
 * For the store's checkpointer thread, it also tells the syncs of a main
 * database file (not its WAL) made on the thread that registered the VFS
 * (the store's event loop, in the tests) from those made on any other,
 * counts the WAL headers written (a WAL started, or started again from its
 * beginning) and keeps how far SQLite has written the WAL since (its file
 * is longer: the store writes it out at open), and makes the other
 * threads' syncs of a database file as slow as db_sync_delay_usec says,
 * with db_sync_sleeping set meanwhile.
 *
 * With the store's writer thread, the commits are not the registering
 * thread's: whichever thread commits (writes the WAL) is a committer from
 * then on, and its syncs of a database file count in db_syncs_committer
 * too, whichever thread it is. Those of a WAL by other threads than the
 * registering one (the writer's commits) are as slow as
 * wal_sync_delay_usec says, with wal_sync_sleeping set meanwhile.
 */
#pragma once

#include <check.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <unistd.h>

static _Atomic unsigned sync_count;
static unsigned full_writes;
static _Atomic unsigned db_syncs_here, db_syncs_other, wal_starts;
static _Atomic sqlite3_int64 wal_written;       /* the end of SQLite's last write to a WAL since it started */
static _Atomic unsigned db_sync_delay_usec;
static atomic_bool db_sync_sleeping;
static _Atomic unsigned db_syncs_committer, wal_sync_delay_usec;
static atomic_bool wal_sync_sleeping;
static _Thread_local bool sync_count_committer;       /* this thread wrote a WAL */
static pthread_t sync_count_thread;     /* the one that registered the VFS */
static sqlite3_vfs sync_count_vfs;
static sqlite3_vfs *sync_count_real;    /* the default VFS it wraps */
/* Each set of methods its files have (unix has one per kind of locking)
 * and the same but for xSync and xWrite. */
#define SYNC_COUNT_IO_MAX 8
static const sqlite3_io_methods *sync_count_real_io[SYNC_COUNT_IO_MAX];
static sqlite3_io_methods sync_count_io[SYNC_COUNT_IO_MAX];

/* The flags a file was opened with, after the real VFS's part of it. */
static size_t sync_count_tail;

static int *open_flags(sqlite3_file *f) {
        return (int *) ((char *) f + sync_count_tail);
}

static int sync_count_sync(sqlite3_file *f, int flags) {
        size_t i = (size_t) (f->pMethods - sync_count_io);
        int rc;

        sync_count++;
        if ((*open_flags(f) & SQLITE_OPEN_WAL) && !pthread_equal(pthread_self(), sync_count_thread)) {
                wal_sync_sleeping = true;
                (void) usleep(wal_sync_delay_usec);
                rc = sync_count_real_io[i]->xSync(f, flags);
                wal_sync_sleeping = false;
                return rc;
        }
        if (!(*open_flags(f) & SQLITE_OPEN_MAIN_DB))
                return sync_count_real_io[i]->xSync(f, flags);
        if (sync_count_committer)
                db_syncs_committer++;
        if (pthread_equal(pthread_self(), sync_count_thread)) {
                db_syncs_here++;
                return sync_count_real_io[i]->xSync(f, flags);
        }
        db_sync_sleeping = true;
        (void) usleep(db_sync_delay_usec);
        rc = sync_count_real_io[i]->xSync(f, flags);
        db_syncs_other++;
        db_sync_sleeping = false;
        return rc;
}

static int full_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 offset) {
        size_t i = (size_t) (f->pMethods - sync_count_io);

        if (full_writes > 0) {
                full_writes--;
                return SQLITE_FULL;
        }
        if ((*open_flags(f) & SQLITE_OPEN_WAL) && offset == 0) {
                wal_starts++;
                wal_written = 0;
        }
        if (*open_flags(f) & SQLITE_OPEN_WAL) {
                sync_count_committer = true;
                if (offset + n > wal_written)
                        wal_written = offset + n;
        }
        return sync_count_real_io[i]->xWrite(f, p, n, offset);
}

static int sync_count_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags) {
        int rc = sync_count_real->xOpen(sync_count_real, name, f, flags, out_flags);
        size_t i;

        if (rc != SQLITE_OK || !f->pMethods)
                return rc;
        *open_flags(f) = flags;
        for (i = 0; i < SYNC_COUNT_IO_MAX && sync_count_real_io[i] != f->pMethods; i++)
                if (!sync_count_real_io[i]) {
                        sync_count_real_io[i] = f->pMethods;
                        sync_count_io[i] = *f->pMethods;
                        sync_count_io[i].xSync = sync_count_sync;
                        sync_count_io[i].xWrite = full_write;
                        break;
                }
        ck_assert_uint_lt(i, SYNC_COUNT_IO_MAX);
        f->pMethods = &sync_count_io[i];
        return rc;
}

static inline void sync_count_register(void) {
        if (sync_count_real)
                return;
        sync_count_real = sqlite3_vfs_find(NULL);
        ck_assert_ptr_nonnull(sync_count_real);
        /* Its methods see the same pAppData as with the real one. */
        sync_count_vfs = *sync_count_real;
        sync_count_tail = ((size_t) sync_count_real->szOsFile + sizeof(int) - 1) / sizeof(int) * sizeof(int);
        sync_count_vfs.szOsFile = (int) (sync_count_tail + sizeof(int));
        sync_count_thread = pthread_self();
        sync_count_vfs.pNext = NULL;
        sync_count_vfs.zName = "sync-count";
        sync_count_vfs.xOpen = sync_count_open;
        ck_assert_int_eq(sqlite3_vfs_register(&sync_count_vfs, 1), SQLITE_OK);
}
