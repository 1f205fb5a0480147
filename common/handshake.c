/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <nettle/eddsa.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "handshake.h"
#include "macro.h"

/* A (pointer, length) pair is usable if it points somewhere or is empty. */
static bool bytes_ok(const uint8_t *p, size_t len) {
        return p || len == 0;
}

/* rsa_pss_verify() where every failure but memory is a bad signature. */
static int pss_verify(const RsaKey *key, const uint8_t *input, size_t input_len, const uint8_t *sig,
                      size_t sig_len) {
        int r;

        r = rsa_pss_verify(key, input, input_len, sig, sig_len);
        if (r == -ENOMEM)
                return r;
        return r < 0 ? -EBADMSG : 0;
}

int handshake_transcript(HandshakeRole role, const HandshakeParams *p,
                         uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;
        const char *ctx;

        if (!p || !p->user || !ret || !ret_len)
                return -EINVAL;
        if (!bytes_ok(p->server_nonce, p->server_nonce_len) ||
            !bytes_ok(p->client_nonce, p->client_nonce_len) ||
            !bytes_ok(p->client_key, p->client_key_len) ||
            !bytes_ok(p->server_key, p->server_key_len) ||
            !bytes_ok(p->binding, p->binding_len))
                return -EINVAL;

        switch (role) {
        case HANDSHAKE_CLIENT:
                ctx = CTX_CLIENT_AUTH;
                break;
        case HANDSHAKE_SERVER:
                ctx = CTX_SERVER_AUTH;
                break;
        case HANDSHAKE_SERVER3:
                ctx = CTX_SERVER_AUTH3;
                break;
        default:
                return -EINVAL;
        }

        /* lp(ctx) || T, T as in protocol.md section 4. Both roles sign the
         * same T under a different context, so neither signature can be
         * replayed as the other; T_server3 has its own, so that neither
         * the RSA nor the Ed25519 server signature passes for the other. */
        buf_put_lp_str(&b, ctx);
        buf_put_lp(&b, p->server_nonce, p->server_nonce_len);
        buf_put_lp(&b, p->client_nonce, p->client_nonce_len);
        buf_put_lp_str(&b, p->user);
        buf_put_lp(&b, p->client_key, p->client_key_len);
        buf_put_lp(&b, p->server_key, p->server_key_len);
        buf_put_lp(&b, p->binding, p->binding_len);
        return buf_steal(&b, ret, ret_len);
}

int handshake_sign(HandshakeRole role, const HandshakeParams *p, const RsaKey *key,
                   uint8_t **ret_sig, size_t *ret_sig_len) {
        _cleanup_(freep) uint8_t *t = NULL;
        size_t t_len;
        int r;

        if (!key || !key->has_private || !ret_sig || !ret_sig_len)
                return -EINVAL;

        r = handshake_transcript(role, p, &t, &t_len);
        if (r < 0)
                return r;
        return rsa_pss_sign(key, t, t_len, ret_sig, ret_sig_len);
}

int handshake_verify(HandshakeRole role, const HandshakeParams *p, const RsaKey *key,
                     const uint8_t *sig, size_t sig_len) {
        _cleanup_(freep) uint8_t *t = NULL;
        size_t t_len;
        int r;

        if (!key || !bytes_ok(sig, sig_len))
                return -EINVAL;

        r = handshake_transcript(role, p, &t, &t_len);
        if (r < 0)
                return r;
        return pss_verify(key, t, t_len, sig, sig_len);
}

int ed25519_key_generate(Ed25519Key **ret) {
        _cleanup_(ed25519_key_freep) Ed25519Key *k = NULL;
        int r;

        if (!ret)
                return -EINVAL;
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        r = random_bytes(k->seed, sizeof(k->seed));
        if (r < 0)
                return r;
        ed25519_sha512_public_key(k->pub, k->seed);
        *ret = TAKE_PTR(k);
        return 0;
}

Ed25519Key *ed25519_key_free(Ed25519Key *k) {
        return secure_free(k, sizeof(*k));
}

int handshake_sign_ed25519(HandshakeRole role, const HandshakeParams *p, const Ed25519Key *key,
                           uint8_t ret_sig[ED25519_SIG_LEN]) {
        _cleanup_(freep) uint8_t *t = NULL;
        size_t t_len;
        int r;

        if (!key || !ret_sig)
                return -EINVAL;
        r = handshake_transcript(role, p, &t, &t_len);
        if (r < 0)
                return r;
        ed25519_sha512_sign(key->pub, key->seed, t_len, t, ret_sig);
        return 0;
}

int handshake_verify_ed25519(HandshakeRole role, const HandshakeParams *p,
                             const uint8_t key[ED25519_KEY_LEN], const uint8_t *sig, size_t sig_len) {
        _cleanup_(freep) uint8_t *t = NULL;
        size_t t_len;
        int r;

        if (!key || !bytes_ok(sig, sig_len))
                return -EINVAL;
        if (sig_len != ED25519_SIG_LEN)
                return -EBADMSG;
        r = handshake_transcript(role, p, &t, &t_len);
        if (r < 0)
                return r;
        /* Nettle refuses a key that is not a point and a non-canonical S. */
        return ed25519_sha512_verify(key, t_len, t, sig) ? 0 : -EBADMSG;
}

WelcomeKey *welcome_key_free(WelcomeKey *wk) {
        if (!wk)
                return NULL;
        free(wk->sig);
        free(wk);
        return NULL;
}

int welcome_key_input(const uint8_t key[ED25519_KEY_LEN], uint64_t not_after, uint8_t **ret,
                      size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        if (!key || !ret || !ret_len)
                return -EINVAL;
        buf_put_lp_str(&b, CTX_WELCOME_KEY);
        buf_put_lp(&b, key, ED25519_KEY_LEN);
        buf_put_u64(&b, not_after);
        return buf_steal(&b, ret, ret_len);
}

int welcome_key_sign(const RsaKey *server, const uint8_t key[ED25519_KEY_LEN], uint64_t not_after,
                     WelcomeKey **ret) {
        _cleanup_(welcome_key_freep) WelcomeKey *wk = NULL;
        _cleanup_(freep) uint8_t *input = NULL;
        size_t input_len;
        int r;

        if (!server || !server->has_private || !ret)
                return -EINVAL;
        r = welcome_key_input(key, not_after, &input, &input_len);
        if (r < 0)
                return r;
        wk = calloc(1, sizeof(*wk));
        if (!wk)
                return -ENOMEM;
        memcpy(wk->key, key, ED25519_KEY_LEN);
        wk->not_after = not_after;
        r = rsa_pss_sign(server, input, input_len, &wk->sig, &wk->sig_len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(wk);
        return 0;
}

int welcome_key_verify(const WelcomeKey *wk, const RsaKey *server, uint64_t now) {
        _cleanup_(freep) uint8_t *input = NULL;
        size_t input_len;
        int r;

        if (!wk || !server)
                return -EINVAL;
        if (!wk->sig)
                return -EBADMSG;
        r = welcome_key_input(wk->key, wk->not_after, &input, &input_len);
        if (r < 0)
                return r;
        r = pss_verify(server, input, input_len, wk->sig, wk->sig_len);
        if (r < 0)
                return r;
        /* Only a statement that verifies can be called expired: a forged
         * not_after says nothing. */
        return now > wk->not_after ? -EKEYEXPIRED : 0;
}

KeyPackage *key_package_free(KeyPackage *kp) {
        if (!kp)
                return NULL;
        free(kp->key);
        free(kp->sig);
        rotation_chain_free(kp->rotations, kp->n_rotations);
        free(kp);
        return NULL;
}

int key_package_input(const char *user, const uint8_t *key, size_t key_len,
                      uint64_t registered, uint8_t **ret, size_t *ret_len) {
        _cleanup_(buf_donep) Buf b = BUF_INIT;

        if (!user || !username_valid(user) || !key || key_len == 0 || !ret || !ret_len)
                return -EINVAL;

        buf_put_lp_str(&b, CTX_KEY_PACKAGE);
        buf_put_lp_str(&b, user);
        buf_put_lp(&b, key, key_len);
        buf_put_u64(&b, registered);
        return buf_steal(&b, ret, ret_len);
}

static int memdup_to(const void *p, size_t len, uint8_t **ret) {
        uint8_t *q;

        /* At least one byte so that an empty copy is still a valid pointer. */
        q = malloc(len > 0 ? len : 1);
        if (!q)
                return -ENOMEM;
        if (len > 0)
                memcpy(q, p, len);
        *ret = q;
        return 0;
}

int key_package_sign(const RsaKey *server, const char *user, const uint8_t *key,
                     size_t key_len, uint64_t registered, KeyPackage **ret) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        _cleanup_(freep) uint8_t *input = NULL;
        size_t input_len;
        int r;

        if (!server || !server->has_private || !ret)
                return -EINVAL;

        r = key_package_input(user, key, key_len, registered, &input, &input_len);
        if (r < 0)
                return r;

        kp = calloc(1, sizeof(*kp));
        if (!kp)
                return -ENOMEM;
        strcpy(kp->user, user);   /* length checked by username_valid() */
        kp->registered = registered;
        r = memdup_to(key, key_len, &kp->key);
        if (r < 0)
                return r;
        kp->key_len = key_len;

        r = rsa_pss_sign(server, input, input_len, &kp->sig, &kp->sig_len);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(kp);
        return 0;
}

int key_package_verify(const KeyPackage *kp, const RsaKey *server) {
        _cleanup_(freep) uint8_t *input = NULL;
        size_t input_len;
        int r;

        if (!kp || !server)
                return -EINVAL;
        if (!kp->sig)
                return -EBADMSG;

        /* A package that cannot be encoded (bad user name, no key) cannot
         * carry a valid signature either. */
        r = key_package_input(kp->user, kp->key, kp->key_len, kp->registered,
                              &input, &input_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;

        return pss_verify(server, input, input_len, kp->sig, kp->sig_len);
}

int key_package_dup(const KeyPackage *kp, KeyPackage **ret) {
        _cleanup_(key_package_freep) KeyPackage *copy = NULL;
        int r;

        if (!kp || !ret)
                return -EINVAL;

        copy = calloc(1, sizeof(*copy));
        if (!copy)
                return -ENOMEM;
        memcpy(copy->user, kp->user, sizeof(copy->user));
        copy->registered = kp->registered;

        if (kp->key) {
                r = memdup_to(kp->key, kp->key_len, &copy->key);
                if (r < 0)
                        return r;
                copy->key_len = kp->key_len;
        }
        if (kp->sig) {
                r = memdup_to(kp->sig, kp->sig_len, &copy->sig);
                if (r < 0)
                        return r;
                copy->sig_len = kp->sig_len;
        }
        if (kp->n_rotations > 0) {
                r = rotation_chain_dup(kp->rotations, kp->n_rotations, &copy->rotations);
                if (r < 0)
                        return r;
                copy->n_rotations = kp->n_rotations;
        }

        *ret = TAKE_PTR(copy);
        return 0;
}
