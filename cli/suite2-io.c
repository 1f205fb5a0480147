/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "suite2-io.h"

int suite2_io_has_session(RatchetStore *st, const char *peer, const char *peer_key) {
        _cleanup_(ratchet_freep) Ratchet *r = NULL;
        int q;

        q = ratchet_store_session_get(st, peer, RATCHET_DEVICE_DEFAULT, peer_key, &r);
        if (q == -ENOENT)
                return 0;
        return q < 0 ? q : 1;
}

int suite2_io_known_suite(RatchetStore *st, const char *peer, const char *peer_key) {
        int r;

        r = suite2_io_has_session(st, peer, peer_key);
        if (r == 0)
                r = ratchet_store_peer_had_prekeys(st, peer);
        return r < 0 ? r : r > 0 ? 2 : 1;
}

static void *memdup(const void *p, size_t len) {
        void *c = malloc(len ?: 1);

        if (c && len > 0)
                memcpy(c, p, len);
        return c;
}

/* The envelope of a sealed message: the same fields under their JSON names. */
static int envelope_from_message(const Suite2Message *m, Envelope **ret) {
        _cleanup_(envelope_freep) Envelope *e = calloc(1, sizeof(Envelope));

        if (!e)
                return -ENOMEM;
        e->v = PROTOCOL_VERSION;
        snprintf(e->suite, sizeof(e->suite), "%s", SUITE2_NAME);
        memcpy(e->id, m->id, MSG_ID_LEN);
        memcpy(e->from, m->from, sizeof(e->from));
        memcpy(e->to, m->to, sizeof(e->to));
        e->ts = m->ts;
        e->hdr = memdup(m->hdr, m->hdr_len);
        e->hdr_len = m->hdr_len;
        e->ct = memdup(m->ct, m->ct_len);
        e->ct_len = m->ct_len;
        memcpy(e->mac, m->mac, ENVELOPE_MAC_LEN);
        e->sig = memdup(m->sig, m->sig_len);
        e->sig_len = m->sig_len;
        if (!e->hdr || !e->ct || !e->sig)
                return -ENOMEM;
        *ret = TAKE_PTR(e);
        return 0;
}

int suite2_io_seal_in(RatchetStore *st, const char *me, const RsaKey *identity, const char *peer,
                      const RsaKey *peer_key, const PrekeyBundle *bundle, uint64_t now,
                      const char *text, size_t len, Envelope **ret) {
        _cleanup_(suite2_message_freep) Suite2Message *m = NULL;
        _cleanup_(ratchet_freep) Ratchet *r = NULL;
        int q;

        q = ratchet_store_session_get(st, peer, RATCHET_DEVICE_DEFAULT, peer_key->fingerprint, &r);
        if (q == -ENOENT && bundle)
                q = ratchet_start(me, peer, peer_key, bundle, NULL, &r);
        if (q >= 0)
                q = suite2_seal(r, identity, now, NULL, text, len, NULL, &m);
        if (q >= 0)
                q = ratchet_store_session_put(st, peer, RATCHET_DEVICE_DEFAULT, peer_key->fingerprint, r,
                                              now);
        if (q < 0)
                return q;
        return envelope_from_message(m, ret);
}

int suite2_io_seal(RatchetStore *st, const char *me, const RsaKey *identity, const char *peer,
                   const RsaKey *peer_key, const PrekeyBundle *bundle, uint64_t now,
                   const char *text, size_t len, Envelope **ret) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        int q;

        q = ratchet_store_begin(st);
        if (q < 0)
                return q;
        q = suite2_io_seal_in(st, me, identity, peer, peer_key, bundle, now, text, len, &e);
        /* The advanced state is committed before the envelope exists for
         * anyone: a message key is never used twice, even by a crash. */
        if (q >= 0)
                q = ratchet_store_commit(st);
        if (q < 0) {
                ratchet_store_rollback(st);
                return q;
        }
        *ret = TAKE_PTR(e);
        return 0;
}

/* The private halves a session start names: -ENOENT when one is gone (an
 * SPK erased after its retention, an OPK used already). */
static int accept_start(RatchetStore *st, const char *me, const RsaKey *identity, const char *peer,
                        const RatchetHeader *h, Ratchet **ret) {
        uint8_t spk[X25519_KEY_LEN], opk[X25519_KEY_LEN];
        int r;

        r = ratchet_store_spk_private(st, h->spk_id, spk);
        if (r >= 0 && h->has_opk)
                r = ratchet_store_opk_private(st, h->opk_id, opk);
        if (r >= 0)
                r = ratchet_accept(me, identity, peer, h, spk, h->has_opk ? opk : NULL, ret);
        secure_wipe(spk, sizeof(spk));
        secure_wipe(opk, sizeof(opk));
        return r;
}

/* The ratchet steps, inside the store's transaction. */
static int open_in_store(RatchetStore *st, const char *me, const RsaKey *identity,
                         const RsaKey *sender_key, const Envelope *e, const RatchetHeader *h,
                         const Suite2Message *m, const uint8_t digest[ENVELOPE_DIGEST_LEN],
                         uint64_t now, size_t max_text, Suite2Opened *ret, const char **ret_error) {
        _cleanup_(ratchet_freep) Ratchet *cur = NULL, *fresh = NULL;
        Suite2Error error = SUITE2_OK;
        Ratchet *use;
        int r;

        r = ratchet_store_session_get(st, e->from, RATCHET_DEVICE_DEFAULT, sender_key->fingerprint, &cur);
        if (r < 0 && r != -ENOENT)
                return r;
        if (cur && (!h->has_start || ratchet_is_session_of(cur, h)))
                use = cur;
        else if (h->has_start) {
                /* A new session from the peer (a first message, or the peer
                 * lost its state and started again): it replaces ours only
                 * once a message of it opened. */
                r = accept_start(st, me, identity, e->from, h, &fresh);
                if (r == -ENOENT || r == -EBADMSG) {
                        /* A prekey we do not hold (or no longer: an OPK
                         * used, an SPK erased) is bad_key like a secret
                         * that does not decrypt. */
                        *ret_error = envelope_error_to_string(ENVELOPE_BAD_KEY);
                        return -EBADMSG;
                }
                if (r < 0)
                        return r;
                use = fresh;
        } else {
                *ret_error = suite2_error_to_string(SUITE2_WRONG_SESSION);
                return -EBADMSG;
        }

        r = suite2_open(use, m, sender_key, now, NULL, &ret->text, &ret->len, &error);
        if (r == -EBADMSG) {
                *ret_error = suite2_error_to_string(error);
                return r;
        }
        if (r < 0)
                return r;
        /* Step 4's last check. Only use changed: nothing is stored, the
         * session stays as it was and the OPK is not used up. */
        if (max_text > 0 && ret->len > max_text) {
                *ret_error = envelope_error_to_string(ENVELOPE_TOO_LARGE);
                return -EBADMSG;
        }
        ret->used_opk = fresh && h->has_opk;
        r = ratchet_store_session_put(st, e->from, RATCHET_DEVICE_DEFAULT, sender_key->fingerprint, use,
                                      now);
        if (r >= 0 && ret->used_opk)
                r = ratchet_store_opk_erase(st, h->opk_id);
        if (r >= 0)
                r = ratchet_store_pending_put(st, e->from, e->id, digest, ret->text, ret->len);
        return r;
}

static int seen_store_check(void *userdata, const char *from, const uint8_t id[MSG_ID_LEN], uint64_t ts,
                            const uint8_t digest[ENVELOPE_DIGEST_LEN]) {
        return seen_check(userdata, from, id, ts, digest);
}

int suite2_io_open_in(RatchetStore *st, envelope_seen_fn seen, void *userdata, const char *me,
                      const RsaKey *identity, const RsaKey *sender_key, const Envelope *e, uint64_t now,
                      uint64_t window, size_t max_text, Suite2Opened *ret, const char **ret_error) {
        uint8_t digest[ENVELOPE_DIGEST_LEN];
        Suite2Message m = envelope_suite2_view(e);
        Suite2Opened o = {};
        RatchetHeader h;
        int r;

        if (suite2_verify(&m, sender_key) < 0) {
                *ret_error = envelope_error_to_string(ENVELOPE_BAD_SIGNATURE);
                return -EBADMSG;
        }
        /* Suite 1's time and (from, id) checks, in its order, written so
         * that nothing can wrap. */
        if (e->ts > now && e->ts - now > ENVELOPE_FUTURE_SKEW) {
                *ret_error = envelope_error_to_string(ENVELOPE_FROM_FUTURE);
                return -EBADMSG;
        }
        if (e->ts < now && now - e->ts > window) {
                *ret_error = envelope_error_to_string(ENVELOPE_EXPIRED);
                return -EBADMSG;
        }
        r = envelope_digest(e, digest);
        if (r < 0)
                return r;
        r = seen(userdata, e->from, e->id, e->ts, digest);
        if (r < 0)
                return r;
        if (r == ENVELOPE_SEEN_SAME) {
                /* Shown and recorded, but the crash came before its text
                 * was erased (suite2_io_forget()): erase it now, or it
                 * would stay for good, as no delivery comes for it again
                 * once this one is acknowledged. */
                int q = ratchet_store_pending_erase(st, e->from, e->id);
                if (q < 0)
                        return q;
        }
        if (r != ENVELOPE_SEEN_NO) {
                *ret_error = envelope_error_to_string(
                        r == ENVELOPE_SEEN_SAME ? ENVELOPE_DUPLICATE :
                        r == ENVELOPE_SEEN_OTHER ? ENVELOPE_REPLAY : ENVELOPE_EXPIRED);
                return -EBADMSG;
        }
        /* Step 2: nothing looks at the header before the signature over
         * it verified. */
        if (ratchet_header_parse(e->hdr, e->hdr_len, &h) < 0) {
                *ret_error = envelope_error_to_string(ENVELOPE_MALFORMED);
                return -EBADMSG;
        }

        /* Opened before and never shown: its key is gone, its text kept. */
        r = ratchet_store_pending_get(st, e->from, e->id, digest, &o.text, &o.len);
        if (r >= 0) {
                o.from_pending = true;
                *ret = o;
                return 0;
        }
        if (r == -EEXIST) {
                *ret_error = envelope_error_to_string(ENVELOPE_REPLAY);
                return -EBADMSG;
        }
        if (r != -ENOENT)
                return r;

        r = open_in_store(st, me, identity, sender_key, e, &h, &m, digest, now, max_text, &o, ret_error);
        if (r < 0) {
                if (o.text)
                        secure_free(o.text, o.len + 1);
                return r;
        }
        *ret = o;
        return 0;
}

int suite2_io_open(RatchetStore *st, SeenStore *seen, const char *me, const RsaKey *identity,
                   const RsaKey *sender_key, const Envelope *e, uint64_t now, uint64_t window,
                   size_t max_text, Suite2Opened *ret, const char **ret_error) {
        int r, q;

        r = ratchet_store_begin(st);
        if (r < 0)
                return r;
        r = suite2_io_open_in(st, seen_store_check, seen, me, identity, sender_key, e, now, window, max_text,
                              ret, ret_error);
        /* A refusal wrote nothing but the erasure of a leftover text. */
        if (r >= 0 || r == -EBADMSG) {
                q = ratchet_store_commit(st);
                if (q < 0 && r >= 0) {
                        secure_free(ret->text, ret->len + 1);
                        *ret = (Suite2Opened) {};
                        return q;
                }
                return r;
        }
        ratchet_store_rollback(st);
        return r;
}

int suite2_io_forget(RatchetStore *st, const Envelope *const *e, size_t n) {
        int r;

        if (n == 0)
                return 0;
        r = ratchet_store_begin(st);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = ratchet_store_pending_erase(st, e[i]->from, e[i]->id);
        if (r >= 0)
                r = ratchet_store_commit(st);
        if (r < 0)
                ratchet_store_rollback(st);
        return r;
}

int suite2_io_shown(RatchetStore *st, SeenStore *seen, const Envelope *e) {
        uint8_t digest[ENVELOPE_DIGEST_LEN];
        int r;

        r = envelope_digest(e, digest);
        if (r >= 0)
                r = seen_add(seen, e->from, e->id, e->ts, digest);
        if (r < 0)
                return r;
        return suite2_io_forget(st, &e, 1);
}
