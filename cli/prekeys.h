/* SPDX-License-Identifier: MIT */
/*
 * When a user's prekeys (securechat-protocol(7), "SUITE 2") are made,
 * replaced and erased: the policy over the store of ratchet-store.h. The
 * relay only ever holds public halves; what to publish is handed back to
 * the caller, which sends it on its connection.
 *
 * The signed prekey is replaced after a week. A replaced one keeps its
 * private half for the retention time (scctl.conf prekey-retention=),
 * since messages sealed to it may still wait in the relay's queue, and is
 * then erased. One-time prekeys are topped up to PREKEYS_OPK_TARGET when
 * the relay reports fewer than PREKEYS_OPK_LOW left.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet-store.h"
#include "rsa.h"
#include "suite2.h"

#define PREKEYS_SPK_MAX_AGE (7u * 24 * 3600)
#define PREKEYS_OPK_LOW 20u
#define PREKEYS_OPK_TARGET 100u

/* What a maintenance pass made and the relay must be told. */
typedef struct PrekeysUpdate {
        bool has_spk;
        SignedPrekey spk;
        OneTimePrekey *opks;
        size_t n_opks;
} PrekeysUpdate;

void prekeys_update_done(PrekeysUpdate *u);

/* In one transaction of st: erase the retired SPKs older than retention;
 * make a new SPK when there is none, when the current one is a week old or
 * when rotate is set, or when identity did not sign it (a rotated key); make OPKs up to PREKEYS_OPK_TARGET, or the relay's
 * opk_max when lower (0: not said), when the relay reported opks_left below
 * PREKEYS_OPK_LOW or that target (opks_left < 0: unknown, make none). The new private halves are committed before this returns, so a
 * key the relay learns about is always one we can open. */
int prekeys_maintain(RatchetStore *st, const char *user, const RsaKey *identity, uint64_t now,
                     uint64_t retention, bool rotate, int opks_left, uint64_t opk_max,
                     const Suite2Random *rnd,
                     PrekeysUpdate *ret);
