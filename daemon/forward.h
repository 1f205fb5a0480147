/* SPDX-License-Identifier: MIT */
/*
 * The daemon's objects by name only, as systemd's forward.h does: a header
 * that merely points at an object includes this rather than the header that
 * defines it, so that headers compile alone and no include cycle forms
 * between modules that only pass each other's pointers around.
 */
#pragma once

typedef struct Anvil Anvil;
typedef struct AnvilEntry AnvilEntry;
typedef struct Control Control;
typedef struct Manager Manager;
typedef struct Relay Relay;
typedef struct Session Session;
typedef struct SessionCallbacks SessionCallbacks;
typedef struct Store Store;
typedef struct Watch Watch;
