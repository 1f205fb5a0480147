/* SPDX-License-Identifier: MIT */
/*
 * The SQLite store's checkpoints, off the event loop. SQLite's automatic
 * checkpoint runs inside the commit that takes the write-ahead log past
 * 1000 pages: it copies the log into the database file and fsyncs that,
 * while the relay's event loop waits. Here a thread with a connection of
 * its own to the same file does it instead (a PASSIVE checkpoint, which
 * never blocks the writer nor waits for it), asked after every 1000 pages
 * the store's connection commits (on the loop, or on the store's writer
 * thread, store-writer.h: the hook runs on the thread that commits).
 * SQLite's writer starts the log again from its beginning by itself, at
 * its next transaction after a checkpoint that copied all of it.
 *
 * The thread only checkpoints: its connection takes part in no
 * transaction and keeps no read open, and it touches nothing of the
 * store's but what this module owns. Durability does not change: commits
 * still sync the log, and a checkpoint only moves committed pages into the
 * database, syncing the log first and the database after.
 */
#pragma once

#include <sqlite3.h>

typedef struct WalCheckpointer WalCheckpointer;

/* Take over the checkpoints of db, the event loop's connection to the
 * database at path (in WAL mode): write the log's file out to the size it
 * grows to (in zeros, past its end, where the file system has room for
 * twice that; best effort), open the thread's connection, start the
 * thread and hook db's commits (sqlite3_wal_hook(), which replaces
 * SQLite's automatic checkpoint). Nothing else may use db meanwhile. */
int wal_checkpointer_new(sqlite3 *db, const char *path, WalCheckpointer **ret);

/* Stop the thread (a checkpoint under way ends early), join it, close its
 * connection and unhook db. Before db closes: closing it last checkpoints
 * what is left of the log, as without this module. NULL is fine. */
WalCheckpointer *wal_checkpointer_free(WalCheckpointer *c);

/* Around a checkpoint on the loop's own connection (store_checkpoint()):
 * wait for the thread's checkpoint if one is under way, which would make
 * the loop's fail with SQLITE_BUSY, and start none until resumed. */
void wal_checkpointer_pause(WalCheckpointer *c);
void wal_checkpointer_resume(WalCheckpointer *c);
