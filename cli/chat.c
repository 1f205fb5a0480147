/* SPDX-License-Identifier: MIT */
/* The chat verbs but connect: init, send, listen, inbox, users,
 * fingerprint, trust. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "exit-codes.h"
#include "json-util.h"
#include "output.h"
#include "protocol.h"
#include "session.h"
#include "suite2-io.h"
#include "verbs.h"

#define DEFAULT_WAIT_SEC 30
#define BACKOFF_MIN_SEC 1
#define BACKOFF_MAX_SEC 30
/* Text read from stdin before the relay tells us its max_text; anything
 * larger cannot fit in any frame anyway. */
#define STDIN_TEXT_MAX MAX_FRAME_LIMIT
/* Between two attempts to reach the relay again while sending: doubling
 * from the first to the last. */
#define SEND_RETRY_USEC (500 * 1000)
#define SEND_RETRY_MAX_USEC (8 * 1000 * 1000)

enum {
        ARG_BITS = _ARG_GLOBAL_MAX,
        ARG_WAIT,
        ARG_YES,
        ARG_IDEMPOTENCY_KEY,
        ARG_CODE,
};

/* Read the message from stdin: at most max bytes; one final newline is
 * dropped (echo adds one). */
static int read_text_stdin(char **ret, size_t *ret_len) {
        _cleanup_(freep) char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                ssize_t n;

                if (len == cap) {
                        char *b;

                        if (cap > STDIN_TEXT_MAX)
                                return log_fail(EXIT_REFUSED, 0,
                                                "The message on standard input is larger than any relay takes.");
                        cap = cap ? cap * 2 : 4096;
                        b = realloc(buf, cap + 1);
                        if (!b)
                                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
                        buf = b;
                }
                n = read(STDIN_FILENO, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_fail(EXIT_FAIL, -errno, "Cannot read the message from standard input: %m");
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (len > 0 && buf[len - 1] == '\n')
                len--;
        if (!buf)
                buf = calloc(1, 1);
        if (!buf)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static int join_words(char **words, int n, char **ret, size_t *ret_len) {
        size_t len = 0;
        char *s;

        for (int i = 0; i < n; i++)
                len += strlen(words[i]) + 1;
        s = malloc(len + 1);
        if (!s)
                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
        len = 0;
        for (int i = 0; i < n; i++) {
                size_t l = strlen(words[i]);

                if (i > 0)
                        s[len++] = ' ';
                memcpy(s + len, words[i], l);
                len += l;
        }
        s[len] = '\0';
        *ret = s;
        *ret_len = len;
        return 0;
}

static int timed_out(const ChatSession *s) {
        return log_fail(EXIT_TIMEOUT, 0, "The relay at %s did not answer within %u s.",
                        s->ctx->settings->address,
                        (unsigned) (s->ctx->settings->timeout_usec / USEC_PER_SEC));
}

/* A send-only session on a fresh connection to the relay, as send, users
 * and key lookups use. Both are the caller's on success. */
static int open_send_session(Context *ctx, Client **ret_client, ChatSession **ret_session) {
        _cleanup_(chat_session_freep) ChatSession *s = NULL;
        _cleanup_(client_freep) Client *c = NULL;
        int r;

        r = context_connect(ctx, false, -1, &c);
        if (r < 0)
                return r;
        r = chat_session_new(ctx, false, &s);
        if (r < 0)
                return r;
        r = chat_session_attach(s, c);
        if (r < 0)
                return r;
        *ret_client = TAKE_PTR(c);
        *ret_session = TAKE_PTR(s);
        return 0;
}

static void send_prepare(void *userdata, bool suite2) {
        chat_session_prepare(userdata, suite2);
}

int verb_init(int argc, char *argv[]) {
        static const struct option options[] = {
                { "bits", required_argument, NULL, ARG_BITS },
                { "code", required_argument, NULL, ARG_CODE },
                GLOBAL_OPTIONS,
                {}
        };
        _cleanup_(client_freep) Client *c = NULL;
        unsigned bits = DEFAULT_KEY_BITS;
        bool bits_given = false;
        Context ctx = {};
        int opt, r;

        while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) >= 0)
                switch (opt) {
                case ARG_BITS:
                        r = verb_parse_key_bits(argv[0], optarg, &bits);
                        if (r < 0)
                                return r;
                        bits_given = true;
                        break;
                case ARG_CODE: {
                        size_t n = strlen(optarg);
                        bool printable = n > 0 && n <= RESET_CODE_MAX;

                        for (size_t i = 0; i < n; i++)
                                printable = printable && optarg[i] > 0x20 && optarg[i] < 0x7f;
                        if (!printable)
                                return verb_usage_error(argv[0], "--code takes the code reset-key printed");
                        free(arg_settings.arg_code);
                        arg_settings.arg_code = strdup(optarg);
                        if (!arg_settings.arg_code)
                                return log_fail(EXIT_FAIL, -ENOMEM, "%m");
                        break;
                }
                default:
                        r = verb_option(argv[0], opt, argv);
                        if (r <= 0)
                                return r;
                }
        if (optind < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind]);

        r = context_open(&ctx, &arg_settings, true, bits);
        if (r < 0)
                goto finish;
        if (!ctx.identity_created && bits_given && rsa_key_bits(ctx.identity) != bits)
                log_notice("%s already has a %u-bit key; --bits applies only when creating one.",
                           arg_settings.user, rsa_key_bits(ctx.identity));

        /* The handshake registers a user the relay does not know yet. */
        r = context_connect(&ctx, false, -1, &c);
        if (r < 0)
                goto finish;
        output->registered(arg_settings.user, arg_settings.address, ctx.identity->fingerprint,
                           ctx.identity_created);
        client_bye(c);
        r = 0;
finish:
        context_done(&ctx);
        return r;
}

/* Wait until the relay accepted or refused the message. A connection lost
 * meanwhile (before or after the relay stored it: we cannot know) is made
 * again until the deadline, and the session sends the same envelope again;
 * the relay answers accepted for an envelope it has. */
static int send_until_answered(Context *ctx, ChatSession *s, Client **c, uint64_t deadline) {
        uint64_t pause = SEND_RETRY_USEC;
        unsigned retries = s->n_retries;
        int r;

        while (s->n_accepted + s->n_refused == 0) {
                if (!*c) {
                        r = context_connect(ctx, false, -1, c);
                        if (r >= 0)
                                r = chat_session_attach(s, *c);
                        if (r < 0) {
                                uint64_t now = now_monotonic_usec();

                                if (r != -ENOTCONN || now >= deadline)
                                        return r;
                                (void) usleep((useconds_t) MIN(pause, deadline - now));
                                pause = MIN(pause * 2, (uint64_t) SEND_RETRY_MAX_USEC);
                                continue;
                        }
                }
                r = chat_session_wait(s, NULL, 0, deadline, "Cannot send");
                if (s->n_retries != retries) {
                        /* Sent again after rate_limited: the relay has
                         * the timeout to answer that. */
                        retries = s->n_retries;
                        deadline = deadline_in(arg_settings.timeout_usec);
                }
                if (r == CLIENT_TIMEOUT)
                        return timed_out(s);
                if (r == -ENOTCONN && now_monotonic_usec() < deadline) {
                        log_notice("Sending the message again (the relay answers the same envelope only once).");
                        chat_session_detach(s);
                        *c = client_free(*c);
                        continue;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

int verb_send(int argc, char *argv[]) {
        static const struct option options[] = {
                { "wait", optional_argument, NULL, ARG_WAIT },
                { "idempotency-key", required_argument, NULL, ARG_IDEMPOTENCY_KEY },
                GLOBAL_OPTIONS,
                {}
        };
        _cleanup_(chat_session_freep) ChatSession *s = NULL;
        _cleanup_(client_freep) Client *c = NULL;
        _cleanup_(freep) char *text = NULL, *outbox = NULL;
        _cleanup_(json_object_unrefp) json_object *saved = NULL;
        uint8_t digest[OUTBOX_DIGEST_LEN];
        const char *to, *key = NULL;
        unsigned wait = 0;
        size_t len = 0;
        uint64_t deadline;
        Context ctx = {};
        int opt, r;

        /* '+': the message's words are never taken for options. */
        while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) >= 0)
                switch (opt) {
                case ARG_WAIT:
                        wait = DEFAULT_WAIT_SEC;
                        if (optarg && parse_seconds(optarg, &wait) < 0)
                                return verb_usage_error(argv[0], "--wait takes a number of seconds, not \"%s\"",
                                                        optarg);
                        break;
                case ARG_IDEMPOTENCY_KEY:
                        if (!outbox_key_valid(optarg))
                                return verb_usage_error(argv[0], "--idempotency-key takes 1 to %d letters, digits, "
                                                        "'.', '_' or '-' (not starting with '.'), not \"%s\"",
                                                        OUTBOX_KEY_MAX, optarg);
                        key = optarg;
                        break;
                default:
                        r = verb_option(argv[0], opt, argv);
                        if (r <= 0)
                                return r;
                }
        if (optind >= argc)
                return verb_usage_error(argv[0], "name the recipient");
        to = argv[optind++];
        if (!username_valid(to))
                return verb_bad_user_name(argv[0], to);

        if (optind == argc && isatty(STDIN_FILENO))
                return verb_usage_error(argv[0], "give the message as arguments, or on standard input");
        if (optind == argc || (optind + 1 == argc && streq(argv[optind], "-")))
                r = read_text_stdin(&text, &len);
        else
                r = join_words(argv + optind, argc - optind, &text, &len);
        if (r < 0)
                return r;
        if (len == 0)
                return verb_usage_error(argv[0], "the message is empty");
        if (!utf8_valid(text, len))
                return verb_usage_error(argv[0], "the message is not valid UTF-8 text");

        r = context_open(&ctx, &arg_settings, true, DEFAULT_KEY_BITS);
        if (r < 0)
                goto finish;
        if (key) {
                /* A script's retry: the envelope saved by the first try goes
                 * out again, unchanged. */
                (void) client_state_outbox_prune(ctx.state, arg_settings.user, arg_settings.replay_window, now_unix());
                outbox = client_state_outbox_path(ctx.state, arg_settings.user, key);
                if (!outbox) {
                        r = log_fail(EXIT_FAIL, -ENOMEM, "%m");
                        goto finish;
                }
                outbox_digest(to, text, len, digest);
                r = client_state_outbox_load(ctx.state, outbox, digest, &saved);
                if (r == -EEXIST) {
                        r = log_fail(EXIT_USAGE, 0, "The idempotency key %s was used for another message (to "
                                     "another user or with another text); not sending.", key);
                        goto finish;
                }
                if (r < 0 && r != -ENOENT) {
                        r = log_fail(EXIT_FAIL, r, "Cannot read %s: %m", outbox);
                        goto finish;
                }
        }
        deadline = deadline_in(arg_settings.timeout_usec);
        /* Queued before connecting, so that it is sealed while we connect
         * and log in (chat_session_preseal()). */
        r = chat_session_new(&ctx, false, &s);
        if (r >= 0)
                r = chat_session_queue_outbox(s, to, text, len, outbox, digest, saved);
        secure_wipe(text, len);
        if (r < 0)
                goto finish;
        ctx.auth_sent = send_prepare;
        ctx.userdata = s;
        chat_session_preseal(s);
        r = context_connect(&ctx, false, -1, &c);
        ctx.auth_sent = NULL;
        if (r >= 0)
                r = chat_session_attach(s, c);
        if (r < 0)
                goto finish;

        r = send_until_answered(&ctx, s, &c, deadline);
        if (r < 0)
                goto finish;
        if (s->n_refused > 0) {
                client_bye(c);
                r = s->error;
                goto finish;
        }

        deadline = deadline_in((uint64_t) wait * USEC_PER_SEC);
        while (wait > 0 && s->n_receipts == 0) {
                r = chat_session_wait(s, NULL, 0, deadline, "Waiting for the receipt");
                if (r == CLIENT_TIMEOUT) {
                        /* The connection is fine: close it in order. */
                        client_bye(c);
                        r = log_fail(EXIT_TIMEOUT, 0,
                                     "No receipt from %s within %u s; the relay keeps the message until "
                                     "%s's client has it.", to, wait, to);
                }
                if (r < 0)
                        goto finish;
        }
        client_bye(c);
        r = 0;
finish:
        if (s)
                chat_session_detach(s);
        /* Before ctx goes: the presealer thread may still be reading it
         * (a connection that failed before the login). */
        s = chat_session_free(s);
        context_done(&ctx);
        return r;
}

/* Sleep for sec seconds unless a signal arrives first (true). */
static bool sleep_or_signal(int sigfd, unsigned sec) {
        return wait_fds(NULL, 0, sigfd, deadline_in((uint64_t) sec * USEC_PER_SEC)) == -ECANCELED;
}

static void drain_signal(int sigfd) {
        struct signalfd_siginfo si;

        while (read(sigfd, &si, sizeof(si)) == (ssize_t) sizeof(si))
                ;
}

/* A receiving session: listen (forever, reconnecting) or inbox (until
 * synced). */
static int receive(bool inbox) {
        _cleanup_(chat_session_freep) ChatSession *s = NULL;
        _cleanup_(closep) int sigfd = -EBADF;
        unsigned backoff = BACKOFF_MIN_SEC;
        Context ctx = {};
        int r;

        r = context_open(&ctx, &arg_settings, true, DEFAULT_KEY_BITS);
        if (r < 0)
                goto finish;
        sigfd = signal_fd_open();
        if (sigfd < 0) {
                r = sigfd;
                goto finish;
        }
        r = chat_session_new(&ctx, true, &s);
        if (r < 0)
                goto finish;
        s->show_presence = !inbox;

        for (;;) {
                _cleanup_(client_freep) Client *c = NULL;
                struct pollfd p = { .fd = sigfd, .events = POLLIN };
                uint64_t deadline;

                r = context_connect(&ctx, true, sigfd, &c);
                if (r == -ECANCELED) {
                        r = 0;
                        goto finish;
                }
                if (r == 0) {
                        backoff = BACKOFF_MIN_SEC;
                        r = chat_session_attach(s, c);
                        if (r < 0)
                                goto finish;
                        if (!inbox) {
                                output->connected(arg_settings.user, arg_settings.address, c->session);
                                /* Presence of our contacts, the roster model. */
                                r = chat_session_watch(s, NULL, 0, true);
                                if (r < 0)
                                        goto finish;
                        }
                        deadline = inbox ? deadline_in(arg_settings.timeout_usec) : UINT64_MAX;
                        for (;;) {
                                unsigned progress = s->n_progress;

                                if (inbox && s->synced && chat_session_idle(s)) {
                                        output->synced(s->n_messages);
                                        client_bye(c);
                                        r = 0;
                                        goto finish;
                                }
                                r = chat_session_wait(s, &p, 1, deadline, "The session ended");
                                if (r == CLIENT_READY) {
                                        drain_signal(sigfd);
                                        client_bye(c);
                                        r = 0;
                                        goto finish;
                                }
                                if (r == CLIENT_TIMEOUT)
                                        r = timed_out(s);
                                if (r < 0)
                                        break;
                                if (inbox && s->n_progress != progress)
                                        deadline = deadline_in(arg_settings.timeout_usec);
                        }
                        chat_session_detach(s);
                }

                /* Connection problems are worth retrying, and so is a
                 * relay that is busy or cannot reach its database, at the
                 * login or later; being refused, a changed key, or another
                 * session taking over are not. */
                if (inbox ||
                    (r != -ENOTCONN && r != -ETIMEDOUT && !ctx.refused_later && !relay_error_later(s->ended)) ||
                    streq(s->ended, ERR_REPLACED) || streq(s->ended, ERR_KICKED))
                        goto finish;
                s->ended[0] = '\0';
                log_notice("Reconnecting to %s in %u s.", arg_settings.address, backoff);
                if (sleep_or_signal(sigfd, backoff)) {
                        r = 0;
                        goto finish;
                }
                backoff = MIN(backoff * 2, BACKOFF_MAX_SEC);
        }
finish:
        chat_session_free(TAKE_PTR(s));
        context_done(&ctx);
        return r;
}

int verb_listen(int argc, char *argv[]) {
        int r = verb_parse_no_arguments(argc, argv);

        return r <= 0 ? r : receive(false);
}

int verb_inbox(int argc, char *argv[]) {
        int r = verb_parse_no_arguments(argc, argv);

        return r <= 0 ? r : receive(true);
}

int verb_users(int argc, char *argv[]) {
        _cleanup_(chat_session_freep) ChatSession *s = NULL;
        _cleanup_(client_freep) Client *c = NULL;
        uint64_t deadline;
        Context ctx = {};
        int r;

        r = verb_parse_no_arguments(argc, argv);
        if (r <= 0)
                return r;

        r = context_open(&ctx, &arg_settings, true, DEFAULT_KEY_BITS);
        if (r < 0)
                goto finish;
        r = open_send_session(&ctx, &c, &s);
        if (r >= 0)
                r = chat_session_list_online(s, false);
        if (r < 0)
                goto finish;

        deadline = deadline_in(arg_settings.timeout_usec);
        while (!s->presence_listed) {
                r = chat_session_wait(s, NULL, 0, deadline, "Cannot list users");
                if (r == CLIENT_TIMEOUT)
                        r = timed_out(s);
                if (r < 0)
                        goto finish;
        }

        r = chat_session_output_users(s);
        if (r < 0)
                goto finish;
        client_bye(c);
        r = 0;
finish:
        if (s)
                chat_session_detach(s);
        context_done(&ctx);
        return r;
}

/* Ask the relay for user's key package. 0 with *ret_peer (its package
 * verified under the server key), or -errno. */
static int lookup_user(ChatSession *s, const char *user, Peer **ret_peer) {
        uint64_t deadline = deadline_in(arg_settings.timeout_usec);
        Peer *p = NULL;
        int r;

        for (;;) {
                r = chat_session_lookup(s, user, &p);
                if (r < 0)
                        return r;
                if (r > 0)
                        break;
                r = chat_session_wait(s, NULL, 0, deadline, "Lookup failed");
                if (r == CLIENT_TIMEOUT)
                        return timed_out(s);
                if (r < 0)
                        return r;
        }
        if (p->unverifiable)
                return log_fail(EXIT_PEER_KEY, 0, "The relay's key package for %s is not signed by the relay's "
                                "key; not trusting it.", user);
        if (!p->package)
                return log_fail(relay_error_status(p->error[0] ? p->error : ERR_NO_SUCH_USER), 0,
                                "The relay at %s has no key for %s (%s).", s->ctx->settings->address, user,
                                p->error[0] ? p->error : ERR_NO_SUCH_USER);
        *ret_peer = p;
        return 0;
}

/* Connect and look user up; the connection is closed again. */
static int fetch_package(Context *ctx, const char *user, KeyPackage **ret) {
        _cleanup_(chat_session_freep) ChatSession *s = NULL;
        _cleanup_(client_freep) Client *c = NULL;
        Peer *p = NULL;
        int r;

        r = open_send_session(ctx, &c, &s);
        if (r >= 0)
                r = lookup_user(s, user, &p);
        if (r >= 0 && key_package_dup(p->package, ret) < 0)
                r = log_fail(EXIT_FAIL, -ENOMEM, "%m");
        if (r >= 0)
                client_bye(c);
        chat_session_detach(s);
        return r;
}

/* What a message to user, whose key has that fingerprint, goes in as far as
 * our suite-2 keys tell without a lookup (which could use up one of the
 * user's one-time prekeys): 1 or 2, or -errno after saying why. */
static int known_suite(Context *ctx, const char *user, const char *fingerprint) {
        _cleanup_(ratchet_store_freep) RatchetStore *st = NULL;
        int r;

        r = ratchet_store_open(ctx->state, arg_settings.user, &st);
        if (r >= 0)
                r = suite2_io_known_suite(st, user, fingerprint);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot read the suite-2 keys %s/ratchet/%s.db: %m",
                                arg_settings.home, arg_settings.user);
        return r;
}

int verb_fingerprint(int argc, char *argv[]) {
        _cleanup_(key_package_freep) KeyPackage *kp = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX], pinned[RSA_FINGERPRINT_MAX];
        OutputFingerprintKind kind;
        const char *user = NULL;
        Context ctx = {};
        int r;

        r = verb_parse_options(argc, argv);
        if (r <= 0)
                return r;
        if (optind < argc)
                user = argv[optind++];
        if (optind < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind]);
        if (user && !username_valid(user))
                return verb_bad_user_name(argv[0], user);

        r = context_open(&ctx, &arg_settings, !user, DEFAULT_KEY_BITS);
        if (r < 0)
                goto finish;
        /* Our own name is our identity key, never what a relay vouches for. */
        if (user && streq(user, arg_settings.user)) {
                context_done(&ctx);
                user = NULL;
                r = context_open(&ctx, &arg_settings, true, DEFAULT_KEY_BITS);
                if (r < 0)
                        goto finish;
        }
        if (!user) {
                output->fingerprint(arg_settings.user, ctx.identity->fingerprint, FINGERPRINT_OWN, 0);
                goto finish;
        }

        r = client_state_peer_get(ctx.state, arg_settings.address, user, &kp);
        if (r >= 0) {
                rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);
                r = known_suite(&ctx, user, fingerprint);
                if (r < 0)
                        goto finish;
                output->fingerprint(user, fingerprint, FINGERPRINT_PINNED, r);
                r = 0;
                goto finish;
        }
        if (r != -ENOENT) {
                _cleanup_(freep) char *path = client_state_peer_path(ctx.state, arg_settings.address, user);

                r = log_fail(EXIT_FAIL, r, "Cannot read %s: %m", path ?: user);
                goto finish;
        }

        /* Not pinned yet: ask the relay, and pin what it vouches for. */
        context_done(&ctx);
        r = context_open(&ctx, &arg_settings, true, DEFAULT_KEY_BITS);
        if (r < 0)
                goto finish;
        r = fetch_package(&ctx, user, &kp);
        if (r < 0)
                goto finish;
        r = client_state_peer_pin(ctx.state, arg_settings.address, kp, pinned);
        if (r < 0) {
                r = log_fail(EXIT_FAIL, r, "Cannot pin %s's key: %m", user);
                goto finish;
        }
        rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);
        if (r == PIN_MISMATCH) {
                r = log_fail(EXIT_PEER_KEY, 0, "%s's key was pinned meanwhile as %s, but the relay has %s; "
                             "see 'scctl trust %s'.", user, pinned, fingerprint, user);
                goto finish;
        }
        if (r == PIN_ROTATED)
                log_notice("%s rotated their key; the old key %s vouched for it.", user, pinned);
        kind = r == PIN_NEW ? FINGERPRINT_NEW : FINGERPRINT_PINNED;
        r = known_suite(&ctx, user, fingerprint);
        if (r < 0)
                goto finish;
        output->fingerprint(user, fingerprint, kind, r);
        r = 0;
finish:
        context_done(&ctx);
        return r;
}

static bool ask_yes_no(const char *question) {
        char answer[16];
        size_t n;

        output_begin();
        fprintf(stderr, "%s [y/N] ", question);
        output_end();
        if (!fgets(answer, sizeof(answer), stdin))
                return false;
        n = strcspn(answer, "\r\n");
        answer[n] = '\0';
        return strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0;
}

int verb_trust(int argc, char *argv[]) {
        static const struct option options[] = {
                { "yes", no_argument, NULL, ARG_YES },
                GLOBAL_OPTIONS,
                {}
        };
        _cleanup_(key_package_freep) KeyPackage *kp = NULL, *old = NULL;
        char fingerprint[RSA_FINGERPRINT_MAX], old_fingerprint[RSA_FINGERPRINT_MAX];
        _cleanup_(freep) char *path = NULL;
        const char *user;
        bool yes = false;
        Context ctx = {};
        int opt, r;

        while ((opt = getopt_long(argc, argv, "+:hy", options, NULL)) >= 0)
                switch (opt) {
                case 'y':
                case ARG_YES:
                        yes = true;
                        break;
                default:
                        r = verb_option(argv[0], opt, argv);
                        if (r <= 0)
                                return r;
                }
        if (optind >= argc)
                return verb_usage_error(argv[0], "name the user whose key to trust");
        user = argv[optind++];
        if (optind < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind]);
        if (!username_valid(user))
                return verb_bad_user_name(argv[0], user);

        r = context_open(&ctx, &arg_settings, true, DEFAULT_KEY_BITS);
        if (r < 0)
                goto finish;
        if (streq(user, arg_settings.user)) {
                r = log_fail(EXIT_USAGE, 0, "%s is you: your key is your identity key %s, not one "
                             "the relay vouches for; there is nothing to trust.", user,
                             ctx.identity->fingerprint);
                goto finish;
        }
        path = client_state_peer_path(ctx.state, arg_settings.address, user);
        if (!path) {
                r = log_fail(EXIT_FAIL, -ENOMEM, "%m");
                goto finish;
        }
        r = fetch_package(&ctx, user, &kp);
        if (r < 0)
                goto finish;
        rsa_fingerprint_spki(kp->key, kp->key_len, fingerprint);

        r = client_state_peer_get(ctx.state, arg_settings.address, user, &old);
        if (r == -ENOENT) {
                r = client_state_peer_set(ctx.state, arg_settings.address, kp);
                if (r < 0) {
                        r = log_fail(EXIT_FAIL, r, "Cannot write %s: %m", path);
                        goto finish;
                }
                output->trusted(user, NULL, fingerprint);
                r = 0;
                goto finish;
        }
        if (r < 0) {
                r = log_fail(EXIT_FAIL, r, "Cannot read %s: %m", path);
                goto finish;
        }
        rsa_fingerprint_spki(old->key, old->key_len, old_fingerprint);
        if (streq(old_fingerprint, fingerprint)) {
                log_notice("%s's key %s is already trusted; nothing changed.", user, fingerprint);
                output->trusted(user, old_fingerprint, fingerprint);
                r = 0;
                goto finish;
        }

        log_warning("The relay at %s has a new key for %s.", arg_settings.address, user);
        log_warning("    pinned: %s", old_fingerprint);
        log_warning("    new:    %s", fingerprint);
        log_warning("Compare the new fingerprint with %s (in person, by phone) before accepting it:", user);
        log_warning("%s runs 'scctl fingerprint' to see it.", user);
        if (!yes) {
                if (!isatty(STDIN_FILENO)) {
                        r = log_fail(EXIT_USAGE, 0, "Not changing the pin without confirmation: run this on a "
                                     "terminal, or pass --yes.");
                        goto finish;
                }
                if (!ask_yes_no("Trust the new key?")) {
                        r = log_fail(EXIT_PEER_KEY, 0, "Not changed: %s's new key stays refused.", user);
                        goto finish;
                }
        }
        r = client_state_peer_set(ctx.state, arg_settings.address, kp);
        if (r < 0) {
                r = log_fail(EXIT_FAIL, r, "Cannot write %s: %m", path);
                goto finish;
        }
        output->trusted(user, old_fingerprint, fingerprint);
        r = 0;
finish:
        context_done(&ctx);
        return r;
}

/* What `scctl prekeys` shows: ours as the store has them, and the count
 * of OPKs the relay holds (from published, else from welcome). */
static int output_prekeys(ChatSession *s, const Client *c) {
        _cleanup_(json_object_unrefp) json_object *o = json_object_new_object();
        SignedPrekey spk;
        uint64_t now = now_unix();
        int64_t relay_opks = s->published ? (int64_t) s->relay_opks : c->opks_left;
        int r, kept, retired;

        r = ratchet_store_spk_current(s->ratchets, &spk);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "Cannot read the signed prekey: %m");
        kept = ratchet_store_opk_count(s->ratchets);
        retired = ratchet_store_spk_retired_count(s->ratchets);
        if (kept < 0 || retired < 0)
                return log_fail(EXIT_FAIL, kept < 0 ? kept : retired, "Cannot read the prekeys: %m");

        r = json_add_string(o, "type", "prekeys");
        if (r >= 0)
                r = json_add_string(o, "user", s->ctx->settings->user);
        if (r >= 0)
                r = json_add_uint64(o, "spk_id", spk.id);
        if (r >= 0)
                r = json_add_uint64(o, "spk_created", spk.created);
        if (r >= 0)
                r = json_add_uint64(o, "spk_age", now > spk.created ? now - spk.created : 0);
        if (r >= 0)
                r = json_add_uint64(o, "retired_spks_kept", (uint64_t) retired);
        if (r >= 0 && relay_opks >= 0)
                r = json_add_uint64(o, "opks_at_relay", (uint64_t) relay_opks);
        if (r >= 0)
                r = json_add_uint64(o, "opk_private_keys", (uint64_t) kept);
        if (r < 0)
                return log_fail(EXIT_FAIL, r, "%m");
        output->object(o);
        return 0;
}

/* Wait for the relay's answer to the outstanding publish, if any. */
static int wait_published(ChatSession *s, uint64_t deadline) {
        int r;

        while (s->publish_id != 0) {
                r = chat_session_wait(s, NULL, 0, deadline, "Cannot publish prekeys");
                if (r == CLIENT_TIMEOUT)
                        r = timed_out(s);
                if (r < 0)
                        return r;
        }
        return 0;
}

int verb_prekeys(int argc, char *argv[]) {
        _cleanup_(chat_session_freep) ChatSession *s = NULL;
        _cleanup_(client_freep) Client *c = NULL;
        uint64_t deadline;
        bool rotate = false;
        Context ctx = {};
        int r;

        r = verb_parse_options(argc, argv);
        if (r <= 0)
                return r;
        if (optind < argc && streq(argv[optind], "rotate")) {
                rotate = true;
                optind++;
        }
        if (optind < argc)
                return verb_usage_error(argv[0], "unexpected argument \"%s\"", argv[optind]);

        r = context_open(&ctx, &arg_settings, true, DEFAULT_KEY_BITS);
        if (r < 0)
                goto finish;
        /* Logging in publishes what is due already. */
        r = open_send_session(&ctx, &c, &s);
        if (r < 0)
                goto finish;
        if (!c->suite2) {
                r = log_fail(EXIT_REFUSED, 0, "The relay at %s does not carry suite 2: no prekeys are "
                             "published there.", arg_settings.address);
                goto finish;
        }
        deadline = deadline_in(arg_settings.timeout_usec);
        /* The login's publish first: rotating tops the OPKs up from the
         * count it leaves at the relay. */
        r = wait_published(s, deadline);
        if (r < 0)
                goto finish;
        if (rotate) {
                r = chat_session_publish_prekeys(s, true);
                if (r >= 0)
                        r = wait_published(s, deadline);
                if (r < 0)
                        goto finish;
        }
        if (rotate && !s->published) {
                r = log_fail(EXIT_REFUSED, 0, "The relay refused the new prekeys; the old ones stay "
                             "published.");
                goto finish;
        }
        r = output_prekeys(s, c);
        if (r < 0)
                goto finish;
        client_bye(c);
        r = 0;
finish:
        if (s)
                chat_session_detach(s);
        context_done(&ctx);
        return r;
}
