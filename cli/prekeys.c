/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "prekeys.h"

void prekeys_update_done(PrekeysUpdate *u) {
        free(u->opks);
        *u = (PrekeysUpdate) {};
}

static int spk_make(RatchetStore *st, const char *user, const RsaKey *identity, uint64_t now,
                    const Suite2Random *rnd, SignedPrekey *ret) {
        uint8_t priv[X25519_KEY_LEN];
        uint32_t id;
        int r;

        r = ratchet_store_next_spk_id(st, &id);
        if (r < 0)
                return r;
        r = signed_prekey_make(user, identity, id, now, rnd, priv, ret);
        if (r >= 0)
                r = ratchet_store_spk_add(st, ret, priv, now);
        secure_wipe(priv, sizeof(priv));
        return r;
}

static int opks_make(RatchetStore *st, size_t n, const Suite2Random *rnd, OneTimePrekey **ret) {
        _cleanup_(freep) OneTimePrekey *opks = NULL;
        uint8_t priv[X25519_KEY_LEN];
        int r = 0;

        opks = calloc(n, sizeof(*opks));
        if (!opks)
                return -ENOMEM;
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = ratchet_store_next_opk_id(st, &opks[i].id);
                if (r >= 0)
                        r = one_time_prekey_make(opks[i].id, rnd, priv, &opks[i]);
                if (r >= 0)
                        r = ratchet_store_opk_add(st, &opks[i], priv);
        }
        secure_wipe(priv, sizeof(priv));
        if (r < 0)
                return r;
        *ret = TAKE_PTR(opks);
        return 0;
}

int prekeys_maintain(RatchetStore *st, const char *user, const RsaKey *identity, uint64_t now,
                     uint64_t retention, bool rotate, int opks_left, uint64_t opk_max,
                     const Suite2Random *rnd, PrekeysUpdate *ret) {
        /* More than the relay keeps would be refused as a whole. */
        unsigned target = opk_max > 0 ? (unsigned) MIN(opk_max, (uint64_t) PREKEYS_OPK_TARGET) :
                          PREKEYS_OPK_TARGET;
        PrekeysUpdate u = {};
        SignedPrekey current;
        int r;

        r = ratchet_store_begin(st);
        if (r < 0)
                return r;
        r = ratchet_store_spk_current(st, &current);
        if (r == -ENOENT || (r >= 0 && (rotate || now < current.created ||
                                        now - current.created >= PREKEYS_SPK_MAX_AGE ||
                                        signed_prekey_verify(user, identity, &current) < 0))) {
                /* A clock that went backwards past the SPK's birth counts
                 * as "too old" too: better a new key than one of unknown
                 * age. One our identity key did not sign (it was rotated
                 * since, scctl rotate-key) would be refused by every peer,
                 * and the relay dropped it with the old key. */
                r = spk_make(st, user, identity, now, rnd, &u.spk);
                u.has_spk = r >= 0;
        }
        /* Expire after a rotation, so that retention 0 erases the key just
         * replaced. */
        if (r >= 0)
                r = ratchet_store_spk_expire(st, now, retention);
        if (r >= 0 && opks_left >= 0 && (unsigned) opks_left < MIN(PREKEYS_OPK_LOW, target)) {
                u.n_opks = target - (unsigned) opks_left;
                r = opks_make(st, u.n_opks, rnd, &u.opks);
        }
        if (r >= 0)
                r = ratchet_store_commit(st);
        if (r < 0) {
                ratchet_store_rollback(st);
                prekeys_update_done(&u);
                return r;
        }
        *ret = u;
        return 0;
}
