/* SPDX-License-Identifier: MIT */
/* rotate-key: replace the identity key with a new one that the old key
 * vouches for (securechat-protocol(7), "Key rotation").
 *
 * The steps, each safe to be killed after:
 *   1. the new key is saved as identity/USER.key.next (or, left there by
 *      an earlier run, taken again);
 *   2. logged in with the old key, the statement signed by both keys goes
 *      to the relay, which registers the new key (one transaction);
 *   3. USER.key.next is renamed over USER.key.
 * Killed before 2 took effect, the old key still logs in and a rerun goes
 * on from 2 with the same new key. Killed between 2 and 3, the relay
 * refuses the old key: a rerun finds that the next key logs in, and
 * finishes with 3. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exit-codes.h"
#include "output.h"
#include "protocol.h"
#include "rotation.h"
#include "session.h"
#include "verbs.h"

enum {
        ARG_BITS = _ARG_GLOBAL_MAX,
};

/* Send the statement and wait for the relay's word. 0 when it registered
 * next (its package verified), or -errno (reported). */
static int submit(Context *ctx, Client *c, const RsaKey *next) {
        _cleanup_(rotation_freep) Rotation *rot = NULL;
        uint64_t id, deadline;
        int r;

        r = rotation_sign(ctx->settings->user, ctx->identity, next, now_unix(), &rot);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot sign the key rotation: %m");
        id = client_next_id(c);
        r = client_send(c, frame_new_rotate(id, rot));
        if (r < 0)
                return r;

        deadline = deadline_in(ctx->settings->timeout_usec);
        for (;;) {
                _cleanup_(frame_freep) Frame *f = NULL;
                const KeyPackage *kp;

                r = client_wait(c, NULL, 0, deadline, &f);
                if (r < 0)
                        return r;
                if (r == CLIENT_TIMEOUT)
                        return log_fail(EXIT_TIMEOUT, 0, "The relay at %s did not answer the key rotation "
                                        "within %u s; run 'scctl rotate-key' again.",
                                        ctx->settings->address,
                                        (unsigned) (ctx->settings->timeout_usec / USEC_PER_SEC));
                if (f->type == FRAME_ERROR && (!f->error.has_id || f->error.id == id))
                        return log_relay_error(f, "Cannot rotate the key");
                if (f->type != FRAME_ROTATED || f->rotated.id != id)
                        continue;       /* presence and the like */

                /* Registered. The package must say so under the relay's key;
                 * otherwise we keep the old key until a rerun finds out. */
                kp = f->rotated.package;
                if (!streq(kp->user, ctx->settings->user) || kp->key_len != next->spki_len ||
                    memcmp(kp->key, next->spki, kp->key_len) != 0 ||
                    key_package_verify(kp, c->server_key) < 0)
                        return log_fail(EXIT_CONNECT, 0, "The relay at %s answered the key rotation with a "
                                        "key package that is not for the new key; run 'scctl rotate-key' "
                                        "again.", ctx->settings->address);
                return 0;
        }
}

int verb_rotate_key(int argc, char *argv[]) {
        static const struct option options[] = {
                { "bits", required_argument, NULL, ARG_BITS },
                GLOBAL_OPTIONS,
                {}
        };
        _cleanup_(rsa_key_freep) RsaKey *next = NULL;
        _cleanup_(client_freep) Client *c = NULL;
        _cleanup_(freep) char *path = NULL;
        char old_fingerprint[RSA_FINGERPRINT_MAX];
        unsigned bits = 0;
        bool created;
        Context ctx = {};
        int opt, r;

        while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) >= 0)
                switch (opt) {
                case ARG_BITS:
                        r = verb_parse_key_bits(argv[0], optarg, &bits);
                        if (r < 0)
                                return r;
                        break;
                default:
                        r = verb_option(argv[0], opt, argv);
                        if (r <= 0)
                                return r;
                }
        if (optind < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind]);

        /* The key to rotate must exist: making one here would be init. */
        r = context_open(&ctx, &arg_settings, false, 0);
        if (r < 0)
                goto finish;
        path = client_state_identity_path(ctx.state, arg_settings.user);
        if (!path) {
                r = log_fail(EXIT_FAIL, -ENOMEM, "%m");
                goto finish;
        }
        r = client_state_identity_load(ctx.state, arg_settings.user, false, 0, &ctx.identity, NULL);
        if (r == -ENOENT) {
                r = log_fail(EXIT_USAGE, 0, "%s has no identity key (%s) to rotate; run 'scctl init'.",
                             arg_settings.user, path);
                goto finish;
        }
        if (r < 0) {
                r = log_fail(EXIT_FAIL, r, "Cannot load the private key %s: %m", path);
                goto finish;
        }
        snprintf(old_fingerprint, sizeof(old_fingerprint), "%s", ctx.identity->fingerprint);

        r = client_state_identity_next(ctx.state, arg_settings.user, bits ?: rsa_key_bits(ctx.identity),
                                       &next, &created);
        if (r < 0) {
                _cleanup_(freep) char *next_path = client_state_identity_next_path(ctx.state, arg_settings.user);

                r = log_fail(EXIT_FAIL, r, "Cannot make or load the new key %s: %m", next_path ?: "");
                goto finish;
        }
        if (!created)
                log_notice("Going on with the rotation to %s that an earlier run began.", next->fingerprint);
        else if (bits && rsa_key_bits(next) != bits)
                log_notice("The new key has %u bits; --bits applies only when making it.", rsa_key_bits(next));

        ctx.quiet_key_mismatch = true;
        r = context_connect(&ctx, false, -1, &c);
        if (r == -EKEYREJECTED && created)
                /* The next key was made just now: the relay cannot have it. */
                r = log_fail(EXIT_AUTH, 0, "The relay at %s has another key than %s registered for %s; "
                             "there is nothing to rotate from here.", arg_settings.address,
                             old_fingerprint, arg_settings.user);
        else if (r == -EKEYREJECTED) {
                /* The relay has another key than ours: the next one, if an
                 * earlier run was stopped after the relay took it. Logging
                 * in with it proves that; anything else is reported as the
                 * refusal it is. */
                RsaKey *old = ctx.identity;

                ctx.quiet_key_mismatch = false;
                ctx.identity = next;
                r = context_connect(&ctx, false, -1, &c);
                ctx.identity = old;
                if (r >= 0)
                        log_notice("The relay registered %s already.", next->fingerprint);
        } else if (r >= 0)
                r = submit(&ctx, c, next);
        if (r < 0)
                goto finish;

        r = client_state_identity_commit_next(ctx.state, arg_settings.user);
        if (r < 0) {
                r = log_fail(EXIT_FAIL, r, "The relay registered the new key, but it cannot replace %s: %m; "
                             "run 'scctl rotate-key' again.", path);
                goto finish;
        }
        client_bye(c);
        log_notice("Rotated %s's key from %s to %s; peers who pinned the old key accept the new one.",
                   arg_settings.user, old_fingerprint, next->fingerprint);
        output->fingerprint(arg_settings.user, next->fingerprint, FINGERPRINT_OWN, 0);
        r = 0;
finish:
        context_done(&ctx);
        return r;
}
