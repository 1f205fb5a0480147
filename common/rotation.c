/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json-util.h"
#include "macro.h"
#include "protocol.h"
#include "rotation.h"

Rotation *rotation_free(Rotation *r) {
        if (!r)
                return NULL;
        free(r->old_key);
        free(r->new_key);
        free(r->old_sig);
        free(r->new_sig);
        free(r);
        return NULL;
}

static int copy_bytes(const uint8_t *p, size_t len, uint8_t **ret, size_t *ret_len) {
        uint8_t *q = malloc(len > 0 ? len : 1);

        if (!q)
                return -ENOMEM;
        if (len > 0)
                memcpy(q, p, len);
        *ret = q;
        *ret_len = len;
        return 0;
}

int rotation_dup(const Rotation *r, Rotation **ret) {
        _cleanup_(rotation_freep) Rotation *c = NULL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        memcpy(c->user, r->user, sizeof(c->user));
        c->time = r->time;
        if (copy_bytes(r->old_key, r->old_key_len, &c->old_key, &c->old_key_len) < 0 ||
            copy_bytes(r->new_key, r->new_key_len, &c->new_key, &c->new_key_len) < 0 ||
            copy_bytes(r->old_sig, r->old_sig_len, &c->old_sig, &c->old_sig_len) < 0 ||
            copy_bytes(r->new_sig, r->new_sig_len, &c->new_sig, &c->new_sig_len) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

int rotation_input(const char *user, const uint8_t *old_key, size_t old_key_len,
                   const uint8_t *new_key, size_t new_key_len, uint64_t time,
                   uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        if (!user || !username_valid(user) || !old_key || old_key_len == 0 ||
            !new_key || new_key_len == 0)
                return -EINVAL;

        buf_put_lp_str(&b, CTX_KEY_ROTATION);
        buf_put_lp_str(&b, user);
        buf_put_lp(&b, old_key, old_key_len);
        buf_put_lp(&b, new_key, new_key_len);
        buf_put_u64(&b, time);
        return buf_steal(&b, ret, ret_len);
}

int rotation_sign(const char *user, const RsaKey *old_key, const RsaKey *new_key, uint64_t time,
                  Rotation **ret) {
        _cleanup_(rotation_freep) Rotation *r = NULL;
        _cleanup_(freep) uint8_t *input = NULL;
        size_t input_len;
        int k;

        if (!old_key->has_private || !new_key->has_private)
                return -EINVAL;
        k = rotation_input(user, old_key->spki, old_key->spki_len, new_key->spki, new_key->spki_len,
                           time, &input, &input_len);
        if (k < 0)
                return k;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        strcpy(r->user, user);  /* length checked by username_valid() */
        r->time = time;
        k = copy_bytes(old_key->spki, old_key->spki_len, &r->old_key, &r->old_key_len);
        if (k >= 0)
                k = copy_bytes(new_key->spki, new_key->spki_len, &r->new_key, &r->new_key_len);
        if (k >= 0)
                k = rsa_pss_sign(old_key, input, input_len, &r->old_sig, &r->old_sig_len);
        if (k >= 0)
                k = rsa_pss_sign(new_key, input, input_len, &r->new_sig, &r->new_sig_len);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

/* sig by the key spki over input: 0, -EBADMSG (also for a key the protocol
 * does not allow), -ENOMEM. */
static int verify_one(const uint8_t *spki, size_t spki_len, const uint8_t *input, size_t input_len,
                      const uint8_t *sig, size_t sig_len) {
        _cleanup_(rsa_key_freep) RsaKey *key = NULL;
        int r;

        r = rsa_key_from_spki(spki, spki_len, &key);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;
        r = rsa_pss_verify(key, input, input_len, sig, sig_len);
        if (r == -ENOMEM)
                return r;
        return r < 0 ? -EBADMSG : 0;
}

int rotation_verify(const Rotation *rot) {
        _cleanup_(freep) uint8_t *input = NULL;
        size_t input_len;
        int r;

        if (!rot)
                return -EINVAL;
        /* A "rotation" to the same key would let a chain loop, and says
         * nothing. */
        if (rot->old_key_len == rot->new_key_len &&
            memcmp(rot->old_key, rot->new_key, rot->old_key_len) == 0)
                return -EBADMSG;
        r = rotation_input(rot->user, rot->old_key, rot->old_key_len, rot->new_key, rot->new_key_len,
                           rot->time, &input, &input_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;
        r = verify_one(rot->old_key, rot->old_key_len, input, input_len, rot->old_sig, rot->old_sig_len);
        if (r < 0)
                return r;
        return verify_one(rot->new_key, rot->new_key_len, input, input_len, rot->new_sig, rot->new_sig_len);
}

int rotation_to_json(const Rotation *rot, json_object **ret) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = json_add_string(o, "user", rot->user);
        if (r >= 0)
                r = json_add_b64(o, "old_key", rot->old_key, rot->old_key_len);
        if (r >= 0)
                r = json_add_b64(o, "new_key", rot->new_key, rot->new_key_len);
        if (r >= 0)
                r = json_add_uint64(o, "time", rot->time);
        if (r >= 0)
                r = json_add_b64(o, "old_sig", rot->old_sig, rot->old_sig_len);
        if (r >= 0)
                r = json_add_b64(o, "new_sig", rot->new_sig, rot->new_sig_len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

#define R(f) offsetof(Rotation, f)
static const JsonDispatch rotation_table[] = {
        { "user", json_type_string, json_dispatch_user, R(user), 0 },
        { "old_key", json_type_string, json_dispatch_b64, R(old_key), 0,
          .min = 1, .max = KEY_DER_MAX, .len_offset = R(old_key_len) },
        { "new_key", json_type_string, json_dispatch_b64, R(new_key), 0,
          .min = 1, .max = KEY_DER_MAX, .len_offset = R(new_key_len) },
        { "time", json_type_int, json_dispatch_uint64, R(time), 0 },
        { "old_sig", json_type_string, json_dispatch_b64, R(old_sig), 0,
          .min = 1, .max = SIG_MAX, .len_offset = R(old_sig_len) },
        { "new_sig", json_type_string, json_dispatch_b64, R(new_sig), 0,
          .min = 1, .max = SIG_MAX, .len_offset = R(new_sig_len) },
        {}
};
#undef R

int rotation_from_json(json_object *o, Rotation **ret) {
        _cleanup_(rotation_freep) Rotation *rot = NULL;
        int r;

        if (!o || !json_object_is_type(o, json_type_object))
                return -EBADMSG;
        rot = calloc(1, sizeof(*rot));
        if (!rot)
                return -ENOMEM;
        /* Like a key package's, the name is part of a signed statement: a
         * bad one makes it malformed, not bad_username. */
        r = json_dispatch(o, rotation_table, JSON_MANDATORY | JSON_REFUSE_UNKNOWN, rot, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;
        *ret = TAKE_PTR(rot);
        return 0;
}

void rotation_chain_free(Rotation **chain, size_t n) {
        if (!chain)
                return;
        for (size_t i = 0; i < n; i++)
                rotation_free(chain[i]);
        free(chain);
}

int rotation_chain_dup(Rotation *const *chain, size_t n, Rotation ***ret) {
        Rotation **c;
        int r;

        c = calloc(n > 0 ? n : 1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = rotation_dup(chain[i], &c[i]);
                if (r < 0) {
                        rotation_chain_free(c, i);
                        return r;
                }
        }
        *ret = c;
        return 0;
}

int rotation_chain_to_json(Rotation *const *chain, size_t n, json_object **ret) {
        _cleanup_(json_object_unrefp) json_object *a = NULL;
        int r;

        a = json_object_new_array();
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *v = NULL;

                r = rotation_to_json(chain[i], &v);
                if (r < 0)
                        return r;
                r = json_array_add(a, v);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(a);
        return 0;
}

int rotation_chain_from_json(json_object *a, Rotation ***ret, size_t *ret_n) {
        Rotation **c;
        size_t n;
        int r;

        if (!a || !json_object_is_type(a, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(a);
        if (n < 1 || n > ROTATION_CHAIN_MAX)
                return -EBADMSG;
        c = calloc(n, sizeof(*c));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = rotation_from_json(json_object_array_get_idx(a, i), &c[i]);
                if (r < 0) {
                        rotation_chain_free(c, i);
                        return r;
                }
        }
        *ret = c;
        *ret_n = n;
        return 0;
}

static bool same_bytes(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len) {
        return a_len == b_len && memcmp(a, b, a_len) == 0;
}

int rotation_chain_vouches(Rotation *const *chain, size_t n, const char *user,
                           const uint8_t *pinned, size_t pinned_len,
                           const uint8_t *key, size_t key_len) {
        size_t start;
        int r;

        /* The first statement made by the pinned key; the relay may keep
         * older ones (made before we pinned), which we do not need. */
        for (start = 0; start < n; start++)
                if (same_bytes(chain[start]->old_key, chain[start]->old_key_len, pinned, pinned_len))
                        break;
        if (start >= n)
                return -EBADMSG;

        for (size_t i = start; i < n; i++) {
                const Rotation *rot = chain[i];

                if (strcmp(rot->user, user) != 0)
                        return -EBADMSG;
                if (i > start && !same_bytes(rot->old_key, rot->old_key_len,
                                             chain[i - 1]->new_key, chain[i - 1]->new_key_len))
                        return -EBADMSG;
                r = rotation_verify(rot);
                if (r < 0)
                        return r;
        }
        return same_bytes(chain[n - 1]->new_key, chain[n - 1]->new_key_len, key, key_len) ? 0 : -EBADMSG;
}
