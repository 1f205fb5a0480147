/* SPDX-License-Identifier: MIT */
/* The output interface and its human back end (see output.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "exit-codes.h"
#include "output.h"
#include "util.h"

const Output *output = &output_human;

static bool use_color;
static bool stdout_broken;
static void (*hook_before)(void);
static void (*hook_after)(void);

void output_setup(bool json) {
        const char *no_color = getenv("NO_COLOR");

        output = json ? &output_json : &output_human;
        use_color = !json && isatty(STDOUT_FILENO) && !(no_color && no_color[0]);
}

bool output_color(void) {
        return use_color;
}

void output_set_hooks(void (*before)(void), void (*after)(void)) {
        hook_before = before;
        hook_after = after;
}

void output_begin(void) {
        if (hook_before)
                hook_before();
}

bool output_broken(void) {
        return stdout_broken;
}

void output_end(void) {
        if (fflush(stdout) != 0 || ferror(stdout))
                stdout_broken = true;
        fflush(stderr);
        if (hook_after)
                hook_after();
}

static void log_va(int err, const char *fmt, va_list ap) _printf_(2, 0);

static void log_va(int err, const char *fmt, va_list ap) {
        output_begin();
        fputs("scctl: ", stderr);
        errno = err < 0 ? -err : err;
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        output_end();
}

int log_fail(int status, int err, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_va(err, fmt, ap);
        va_end(ap);
        return exit_status_to_errno(status);
}

void output_log(int priority, const char *fmt, ...) {
        const char *e = getenv("SECURECHAT_DEBUG");
        va_list ap;

        if (priority >= LOG_DEBUG && (!e || !*e))
                return;
        va_start(ap, fmt);
        log_va(0, fmt, ap);
        va_end(ap);
}

#define ANSI_BOLD "\033[1m"
#define ANSI_RED "\033[1;31m"
#define ANSI_GREEN "\033[32m"
#define ANSI_YELLOW "\033[33m"
#define ANSI_RESET "\033[0m"

static const char *color(const char *code) {
        return use_color ? code : "";
}

void output_safe_text(FILE *f, const char *s, size_t len, unsigned indent) {
        const char *end = s + len;

        while (s < end) {
                uint32_t c;
                size_t n = utf8_char(s, (size_t) (end - s), &c);

                if (n == 0) {
                        /* Not UTF-8, or NUL: shown as bytes. */
                        fprintf(f, "\\x%02x", (unsigned char) *s);
                        s++;
                        continue;
                }
                if (c == '\n')
                        fprintf(f, "\n%*s", (int) indent, "");
                else if (c == '\t')
                        fputc('\t', f);
                else if (!unichar_unsafe(c))
                        fwrite(s, 1, n, f);
                else if (c < 0x80)
                        fprintf(f, "\\x%02x", (unsigned) c);
                else
                        fprintf(f, "\\u%04x", (unsigned) c);
                s += n;
        }
}

/* "HH:MM:SS" for today, "YYYY-MM-DD HH:MM:SS" for other days (messages that
 * waited in the relay's queue). */
static void format_time(uint64_t ts, char *buf, size_t size) {
        time_t t = (time_t) ts, now = time(NULL);
        struct tm tm, tm_now;

        if (!localtime_r(&t, &tm) || !localtime_r(&now, &tm_now)) {
                snprintf(buf, size, "%" PRIu64, ts);
                return;
        }
        if (tm.tm_year == tm_now.tm_year && tm.tm_yday == tm_now.tm_yday)
                strftime(buf, size, "%H:%M:%S", &tm);
        else
                strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}

static void human_message(const OutputMessage *m) {
        char when[32];
        int n;

        format_time(m->ts, when, sizeof(when));
        output_begin();
        n = printf("[%s] ", when);
        printf("%s%s%s: ", color(ANSI_BOLD), m->from, color(ANSI_RESET));
        output_safe_text(stdout, m->text, m->len, (unsigned) MAX(n, 0) + (unsigned) strlen(m->from) + 2);
        putchar('\n');
        output_end();
}

static void human_rejected(const char *from, const char *id, const char *reason) {
        char when[32];

        format_time((uint64_t) time(NULL), when, sizeof(when));
        output_begin();
        printf("[%s] %srefused%s message from %s (id %s): %s\n",
               when, color(ANSI_RED), color(ANSI_RESET), from, id, reason);
        if (streq(reason, "key_changed"))
                printf("[%s] %s's key is not the one pinned: compare fingerprints, then run 'scctl trust %s'\n",
                       when, from, from);
        output_end();
}

static void human_presence(const char *event, const char *user, const char *fingerprint,
                           const char *pinned) {
        char when[32];
        bool online = streq(event, "online");

        format_time((uint64_t) time(NULL), when, sizeof(when));
        output_begin();
        printf("[%s] %s* %s is %s%s", when, color(online ? ANSI_GREEN : ANSI_YELLOW),
               user, event, color(ANSI_RESET));
        if (fingerprint)
                printf(" (%s)", fingerprint);
        putchar('\n');
        if (pinned)
                printf("[%s] %sWARNING%s: %s's key changed (pinned: %s); messages from and to %s are "
                       "refused until 'scctl trust %s'\n",
                       when, color(ANSI_RED), color(ANSI_RESET), user, pinned, user, user);
        output_end();
}

static void human_synced(unsigned n_messages) {
        if (n_messages > 0)
                return;
        output_begin();
        puts("No queued messages.");
        output_end();
}

static void human_connected(const char *user, const char *server, const char *session) {
        /* A notice, not a result: stdout stays the messages alone. */
        log_notice("Connected to %s as %s.", server, user);
}

static void human_sent(const char *to, const char *id, bool queued, bool session) {
        output_begin();
        if (session)
                printf("-> %s: %s\n", to, queued ? "queued" : "delivered");
        else
                puts(queued ? "queued" : "delivered");
        output_end();
}

static void human_refused(const char *to, const char *reason, const char *message) {
        output_begin();
        printf("-> %s: %srefused%s (%s%s%s)\n", to, color(ANSI_RED), color(ANSI_RESET),
               reason, message ? ": " : "", message ?: "");
        output_end();
}

static void human_receipt(const char *to, const char *id, const char *status, bool session) {
        output_begin();
        if (session)
                printf("-> %s: received\n", to);
        else
                puts("received");
        output_end();
}

static const char *suite_text(unsigned suite) {
        return suite == 2 ? "suite 2 (forward secrecy)" : "suite 1 (no forward secrecy)";
}

static void human_users(const OutputUser *users, size_t n) {
        size_t width = 0, fp_width = 0;

        output_begin();
        for (size_t i = 0; i < n; i++) {
                width = MAX(width, strlen(users[i].user));
                fp_width = MAX(fp_width, strlen(users[i].fingerprint));
        }
        for (size_t i = 0; i < n; i++)
                printf("%-*s  %-*s  %s\n", (int) width, users[i].user, (int) fp_width,
                       users[i].fingerprint, suite_text(users[i].suite));
        if (n == 0)
                puts("No one is online.");
        output_end();
}

static void human_fingerprint(const char *user, const char *fingerprint, OutputFingerprintKind kind,
                              unsigned suite) {
        output_begin();
        puts(fingerprint);
        if (suite == 2)
                printf("%s\n", suite_text(suite));
        else if (suite == 1)
                printf("suite 1 (no forward secrecy: no prekeys of %s's seen yet)\n", user);
        output_end();
}

static void human_registered(const char *user, const char *server, const char *fingerprint,
                             bool created) {
        output_begin();
        printf("%s is registered at %s with key %s\n", user, server, fingerprint);
        output_end();
}

static void human_trusted(const char *user, const char *old_fingerprint, const char *new_fingerprint) {
        output_begin();
        if (old_fingerprint)
                printf("%s is now trusted with key %s (was %s)\n", user, new_fingerprint, old_fingerprint);
        else
                printf("%s is now trusted with key %s\n", user, new_fingerprint);
        output_end();
}

static void human_text(const char *s) {
        output_begin();
        fputs(s, stdout);
        output_end();
}

static void human_object(json_object *o) {
        output_begin();
        json_object_object_foreach(o, key, value) {
                if (json_object_is_type(value, json_type_string))
                        printf("%s: %s\n", key, json_object_get_string(value));
                else
                        printf("%s: %s\n", key,
                               json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN));
        }
        output_end();
}

const Output output_human = {
        .message = human_message,
        .rejected = human_rejected,
        .presence = human_presence,
        .synced = human_synced,
        .connected = human_connected,
        .sent = human_sent,
        .refused = human_refused,
        .receipt = human_receipt,
        .users = human_users,
        .fingerprint = human_fingerprint,
        .registered = human_registered,
        .trusted = human_trusted,
        .text = human_text,
        .object = human_object,
};
