/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "log.h"
#include "util.h"

static const EventInfo event_table[_EVENT_MAX] = {
#define EVENT_INFO(kind, name, id, prio, desc) [kind] = { name, id, prio, desc },
        EVENT_TABLE(EVENT_INFO)
#undef EVENT_INFO
};

const EventInfo *event_info(EventKind kind) {
        if (kind < 0 || kind >= _EVENT_MAX)
                return NULL;
        return &event_table[kind];
}

static int max_level = LOG_INFO;
static bool to_journal = false;
static LogEventHook event_hook = NULL;
static LogEventWanted event_wanted = NULL;
static void *event_hook_userdata = NULL;
static bool in_hook = false;
static char node_buf[33];
static const char *node_name = NULL;

/* systemd sets $JOURNAL_STREAM to "device:inode" of the stream it connected
 * to stdout/stderr; if stderr is still that stream, journald is listening
 * and structured messages can go to it directly. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int n = 0;

        if (!e)
                return false;
        if (sscanf(e, "%llu:%llu%n", &dev, &ino, &n) != 2 || e[n] != '\0')
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_open(void) {
        to_journal = stderr_is_journal();
}

void log_set_max_level(int level) {
        if (level >= LOG_EMERG && level <= LOG_DEBUG)
                max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_node(const char *name) {
        node_name = NULL;
        if (name) {
                snprintf(node_buf, sizeof(node_buf), "%s", name);
                node_name = node_buf;
        }
}

const char *log_get_node(void) {
        return node_name;
}

void log_set_event_hook(LogEventHook hook, LogEventWanted wanted, void *userdata) {
        event_hook = hook;
        event_wanted = wanted;
        event_hook_userdata = userdata;
}

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg",
        [LOG_ALERT] = "alert",
        [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",
        [LOG_WARNING] = "warning",
        [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",
        [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return (int) i;
        if (strcasecmp(s, "error") == 0)
                return LOG_ERR;
        if (strcasecmp(s, "warn") == 0)
                return LOG_WARNING;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || (size_t) level >= ELEMENTSOF(level_names))
                return NULL;
        return level_names[level];
}

/* A growing string for one stderr line; on ENOMEM the line is cut short,
 * which is better than losing it. */
typedef struct Line {
        char buf[2048];
        size_t len;
} Line;

static void line_add(Line *l, const char *s) {
        /* Keep one event on one line whatever ends up in it. */
        string_sanitize(s, l->buf + l->len, sizeof(l->buf) - 1 - l->len);
        l->len += strlen(l->buf + l->len);
}

static void line_add_field(Line *l, const char *key, const char *value) {
        bool quote = strpbrk(value, " \"") != NULL || *value == '\0';

        line_add(l, l->buf[l->len - 1] == '(' ? "" : " ");
        line_add(l, key);
        line_add(l, "=");
        if (!quote) {
                line_add(l, value);
                return;
        }
        line_add(l, "\"");
        for (const char *p = value; *p; p++) {
                char c[3] = { *p, 0, 0 };
                if (*p == '"' || *p == '\\') {
                        c[0] = '\\';
                        c[1] = *p;
                }
                line_add(l, c);
        }
        line_add(l, "\"");
}

/* The fields of an event as (journal name, stderr name, value) triples,
 * formatted once for both targets. */
typedef struct Field {
        const char *journal;
        const char *key;
        char value[128];
        const char *str;
} Field;

#define FIELDS_MAX 13

static size_t collect_fields(const EventInfo *info, const LogFields *f, Field out[static FIELDS_MAX]) {
        size_t n = 0;

#define ADD_STR(j, k, v)                                                \
        do {                                                            \
                if (v) {                                                \
                        out[n] = (Field) { .journal = j, .key = k, .str = (v) }; \
                        n++;                                            \
                }                                                       \
        } while (0)
#define ADD_U64(j, k, cond, v)                                          \
        do {                                                            \
                if (cond) {                                             \
                        out[n] = (Field) { .journal = j, .key = k };    \
                        snprintf(out[n].value, sizeof(out[n].value), "%" PRIu64, (uint64_t) (v)); \
                        out[n].str = out[n].value;                      \
                        n++;                                            \
                }                                                       \
        } while (0)

        if (info)
                ADD_STR("SC_EVENT", "event", info->name);
        if (f) {
                ADD_STR("SC_USER", "user", f->user);
                ADD_STR("SC_RECIPIENT", "to", f->recipient);
                ADD_STR("SC_PEER", "peer", f->peer);
                ADD_STR("SC_SESSION", "session", f->session);
                ADD_STR("SC_FINGERPRINT", "fingerprint", f->fingerprint);
                ADD_STR("SC_MSG_ID", "msg", f->msg_id);
                ADD_U64("SC_SEQ", "seq", f->has_seq, f->seq);
                ADD_U64("SC_SIZE", "size", f->has_size, f->size);
                ADD_U64("SC_DURATION", "duration", f->has_duration,
                        (f->duration_usec + 500000) / 1000000);
                ADD_STR("SC_ADDRESS", "address", f->address);
                ADD_STR("SC_REASON", "reason", f->reason);
        }
        if (info)
                ADD_STR("SC_NODE", "node", node_name);
#undef ADD_STR
#undef ADD_U64
        return n;
}

static bool send_journal(int priority, const EventInfo *info, const Field *fields, size_t n,
                         const char *message) {
        char *strings[4 + FIELDS_MAX] = {};
        struct iovec iov[4 + FIELDS_MAX];
        size_t k = 0;
        int r = -ENOMEM;

        if (asprintf(&strings[k++], "MESSAGE=%s", message) < 0 ||
            asprintf(&strings[k++], "PRIORITY=%d", priority) < 0 ||
            asprintf(&strings[k++], "SYSLOG_IDENTIFIER=%s", program_invocation_short_name) < 0)
                goto finish;
        if (info && asprintf(&strings[k++], "MESSAGE_ID=%s", info->message_id) < 0)
                goto finish;
        for (size_t i = 0; i < n && k < ELEMENTSOF(strings); i++)
                if (asprintf(&strings[k++], "%s=%s", fields[i].journal, fields[i].str) < 0)
                        goto finish;

        for (size_t i = 0; i < k; i++)
                iov[i] = (struct iovec) { .iov_base = strings[i], .iov_len = strlen(strings[i]) };
        r = sd_journal_sendv(iov, (int) k);

finish:
        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                free(strings[i]);
        return r >= 0;
}

static void send_stderr(const Field *fields, size_t n, const char *message) {
        Line l = { .len = 0 };
        char prefix[64];

        snprintf(prefix, sizeof(prefix), "%s[%ld]: ", program_invocation_short_name, (long) getpid());
        line_add(&l, prefix);
        line_add(&l, message);
        if (n > 0) {
                line_add(&l, " (");
                for (size_t i = 0; i < n; i++)
                        line_add_field(&l, fields[i].key, fields[i].str);
                line_add(&l, ")");
        }
        l.buf[l.len++] = '\n';
        l.buf[l.len] = '\0';
        /* One write per line, so lines of concurrent writers do not mix. */
        (void) !write(STDERR_FILENO, l.buf, l.len);
}

void log_emit(int priority, EventKind kind, const LogFields *fields, const char *format, ...) {
        const EventInfo *info = event_info(kind);
        char message[1024];
        int saved_errno = errno;
        bool to_log, to_hook;
        va_list ap;

        if (priority < 0)
                priority = info ? info->priority : LOG_INFO;

        /* Audit events below the level still reach the hook when it wants
         * them (someone is watching Monitor). Otherwise nothing is
         * formatted: the routine per-message events are debug, and at the
         * default level they must cost the relay nothing. */
        to_log = priority <= max_level;
        to_hook = info && event_hook && !in_hook &&
                  (to_log || !event_wanted || event_wanted(event_hook_userdata, kind));
        if (!to_log && !to_hook)
                return;

        errno = saved_errno;    /* for %m, whatever wanted() did */
        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        if (to_log) {
                Field f[FIELDS_MAX];
                size_t n = collect_fields(info, fields, f);

                if (!to_journal || !send_journal(priority, info, f, n, message))
                        send_stderr(f, n, message);
        }

        if (to_hook) {
                in_hook = true;
                event_hook(event_hook_userdata, kind, fields, message);
                in_hook = false;
        }
        errno = saved_errno;
}
