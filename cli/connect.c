/* SPDX-License-Identifier: MIT */
/*
 * scctl connect: the interactive session of the original client.
 * "recipient:message" lines send, "quit" leaves, "/users" and "/help" help;
 * incoming messages and presence changes show as they happen.
 *
 * On a terminal the line is edited with libedit's readline interface in
 * callback mode (loaded only then: line-edit.h), and every print first
 * clears the line being typed and draws it again afterwards
 * (output_set_hooks), so nothing gets garbled.
 * With stdin from a pipe, lines are read as they come and sent in order,
 * up to CONNECT_WINDOW messages ahead of the relay's answers, so that the
 * next one is sealed while the relay handles the ones before; results come
 * out in input order. At the end of input scctl waits for the relay's
 * answers, says bye and exits with the status of the first message that
 * was not accepted.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "exit-codes.h"
#include "line-edit.h"
#include "output.h"
#include "protocol.h"
#include "session.h"
#include "verbs.h"

/* The longest line we take: a user name, a colon and max_text bytes fit
 * with room to spare for the default limits. */
#define LINE_MAX_LEN (64 * 1024)
/* Input read ahead of the line being sent (pipe mode). */
#define PENDING_MAX (LINE_MAX_LEN + 4096)
/* Pipe mode: messages queued at most, sealed and in flight or waiting for
 * their turn. One at a time, a sender's throughput is one round trip plus
 * the relay's work plus a signature per message; with enough in flight it
 * is the signature alone. Each holds its text and envelope: with lines of
 * LINE_MAX_LEN that stays within about 10 MiB. */
#define CONNECT_WINDOW 64

typedef struct Interactive {
        ChatSession *session;
        bool tty;
        bool eof;                       /* end of input, or quit */
        char prompt[USERNAME_MAX + 4];
        char *pending;                  /* pipe mode: input not handled yet */
        size_t n_pending;
        char *scratch;                  /* pipe mode: a line parsed ahead of its turn */
        bool input_closed;              /* pipe mode: read() said end of file */
        bool discarding;                /* the rest of a line that was too long */
} Interactive;

/* libedit's callbacks carry no userdata. */
static Interactive *current;

static const char help_text[] =
        "RECIPIENT:MESSAGE   send MESSAGE to RECIPIENT\n"
        "/users              who is online, with key fingerprints\n"
        "/help               this text\n"
        "quit                leave (so does Ctrl-D)\n";

static int line_error(Interactive *in, const char *fmt, ...) _printf_(2, 3);

static int line_error(Interactive *in, const char *fmt, ...) {
        char message[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        log_fail(EXIT_USAGE, 0, "%s", message);
        if (in->session->error == 0)
                in->session->error = -EINVAL;
        return 0;
}

static char *strip(char *s) {
        size_t n;

        s += strspn(s, " \t");
        n = strlen(s);
        while (n > 0 && strchr(" \t\r", s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* Is the line, blanks aside, exactly word? */
static bool line_is(const char *line, const char *word) {
        size_t n = strlen(word);

        line += strspn(line, " \t");
        return strncmp(line, word, n) == 0 && line[n + strspn(line + n, " \t")] == '\0';
}

/* A RECIPIENT:MESSAGE line: to and text point into line (which is
 * changed), or why says what is wrong with it. 0 or -EINVAL. */
static int parse_message(char *line, char **ret_to, char **ret_text, char *why, size_t size) {
        char *colon = strchr(line, ':'), *to, *text;

        if (!colon) {
                snprintf(why, size, "Expected RECIPIENT:MESSAGE (or quit, /users, /help).");
                return -EINVAL;
        }
        *colon = '\0';
        to = strip(line);
        text = colon + 1;
        text += strspn(text, " \t");
        if (!username_valid(to)) {
                char reason[512];

                user_name_explain(to, reason, sizeof(reason));
                snprintf(why, size, "%s.", reason);
                return -EINVAL;
        }
        if (!text[0]) {
                snprintf(why, size, "The message to %s is empty.", to);
                return -EINVAL;
        }
        if (!utf8_valid(text, strlen(text))) {
                snprintf(why, size, "The message to %s is not valid UTF-8 text.", to);
                return -EINVAL;
        }
        *ret_to = to;
        *ret_text = text;
        return 0;
}

static int queue_message(Interactive *in, const char *to, const char *text) {
        int r;

        /* Whoever we write to, we want to see come and go. */
        r = chat_session_watch(in->session, (const char *const[]) { to }, 1, false);
        if (r < 0)
                return r;
        return chat_session_queue_message(in->session, to, text, strlen(text));
}

static void chomp_cr(char *line, size_t n) {
        if (n > 0 && line[n - 1] == '\r')
                line[n - 1] = '\0';
}

/* One line of input. Returns -errno only for failures that end the
 * session; a bad line is reported and counted. */
static int handle_line(Interactive *in, char *line) {
        char *to, *text, why[600];
        int r;

        chomp_cr(line, strlen(line));
        if (line[strspn(line, " \t")] == '\0')
                return 0;
        if (line_is(line, "quit") || line_is(line, "/quit")) {
                in->eof = true;
                return 0;
        }
        if (line_is(line, "/users"))
                return chat_session_list_online(in->session, true);
        if (line_is(line, "/help")) {
                output->text(help_text);
                return 0;
        }

        r = parse_message(line, &to, &text, why, sizeof(why));
        if (r < 0)
                return line_error(in, "%s", why);
        return queue_message(in, to, text);
}

/* Pipe mode: take a line (len bytes, NUL-terminated) if its turn has come:
 * a well-formed message while fewer than CONNECT_WINDOW are queued; a
 * command or a bad line only once every message before it has its result,
 * so that results, commands' output and errors keep the order of the
 * input. 1 when taken, 0 to come back when the relay has answered, or
 * -errno. */
static int take_line(Interactive *in, char *line, size_t len) {
        char *to, *text, why[600];
        int r;

        if (in->session->outgoing) {
                if (in->session->n_outgoing >= CONNECT_WINDOW)
                        return 0;
                /* Parsed on a copy: a line that has to wait stays as it is. */
                memcpy(in->scratch, line, len + 1);
                chomp_cr(in->scratch, len);
                if (parse_message(in->scratch, &to, &text, why, sizeof(why)) < 0)
                        return 0;
                r = queue_message(in, to, text);
        } else
                r = handle_line(in, line);
        return r < 0 ? r : 1;
}

/* Pipe mode: handle the next lines of input, in order (take_line()). */
static int take_lines(Interactive *in) {
        while (!in->eof) {
                char *nl = memchr(in->pending, '\n', in->n_pending);
                size_t len, used;
                int r;

                if (nl)
                        used = (len = (size_t) (nl - in->pending)) + 1;
                else if (in->input_closed && in->n_pending > 0)
                        used = len = in->n_pending;     /* a last line without newline */
                else if (in->input_closed) {
                        in->eof = true;
                        break;
                } else if (in->n_pending >= LINE_MAX_LEN) {
                        if (in->session->outgoing && !in->discarding)
                                break;  /* said in its turn, like a bad line */
                        if (!in->discarding)
                                line_error(in, "A line is longer than %d bytes; skipped it.", LINE_MAX_LEN);
                        in->discarding = true;
                        in->n_pending = 0;
                        break;
                } else
                        break;

                if (in->discarding)
                        in->discarding = false;
                else {
                        in->pending[len] = '\0';
                        r = take_line(in, in->pending, len);
                        if (r < 0)
                                return r;
                        if (r == 0) {
                                if (nl)
                                        *nl = '\n';    /* the line stays for later */
                                break;
                        }
                }
                memmove(in->pending, in->pending + used, in->n_pending - used);
                in->n_pending -= used;
        }
        return 0;
}

/* The messages of the lines read so far are all queued before any is
 * sealed: the session seals a burst in one transaction of the suite-2
 * store, where line by line each would be a commit of its own. */
static int process_pending(Interactive *in) {
        int r, q;

        (void) chat_session_hold(in->session, true);
        r = take_lines(in);
        q = chat_session_hold(in->session, false);
        return r < 0 ? r : q;
}

static int read_input(Interactive *in) {
        ssize_t n;

        n = read(STDIN_FILENO, in->pending + in->n_pending, PENDING_MAX - in->n_pending);
        if (n < 0) {
                if (errno == EINTR || errno == EAGAIN)
                        return 0;
                return log_fail(EXIT_FAIL, -errno, "Cannot read standard input: %m");
        }
        if (n == 0)
                in->input_closed = true;
        in->n_pending += (size_t) n;
        return 0;
}

/* Terminal mode. */
static int tty_result;
/* Inside the line callback the cursor is on a fresh line and libedit
 * still shows the accepted one: prints need no clearing and no redraw. */
static bool tty_in_callback;

static void tty_line(char *line) {
        Interactive *in = current;

        if (!line) {
                in->eof = true;
                sym_rl_callback_handler_remove();
                fputc('\n', stdout);
                return;
        }
        if (line[0])
                sym_add_history(line);
        tty_in_callback = true;
        if (tty_result >= 0)
                tty_result = handle_line(in, line);
        tty_in_callback = false;
        free(line);
        /* libedit keeps the accepted line on display until the next key;
         * installing the handler again starts a fresh, empty prompt. */
        if (!in->eof) {
                sym_rl_callback_handler_remove();
                sym_rl_callback_handler_install(in->prompt, tty_line);
        } else
                sym_rl_callback_handler_remove();
}

static void tty_before(void) {
        if (current && current->tty && !current->eof && !tty_in_callback) {
                fputs("\r\033[K", stdout);
                fflush(stdout);
        }
}

static void tty_after(void) {
        if (current && current->tty && !current->eof && !tty_in_callback)
                sym_rl_forced_update_display();
}

int verb_connect(int argc, char *argv[]) {
        _cleanup_(chat_session_freep) ChatSession *s = NULL;
        _cleanup_(client_freep) Client *c = NULL;
        _cleanup_(closep) int sigfd = -EBADF;
        _cleanup_(freep) char *buf = NULL, *scratch = NULL;
        Interactive in = {};
        uint64_t deadline = UINT64_MAX;
        Context ctx = {};
        int r;

        r = verb_parse_no_arguments(argc, argv);
        if (r <= 0)
                return r;

        r = context_open(&ctx, &arg_settings, true, DEFAULT_KEY_BITS);
        if (r < 0)
                goto finish;
        sigfd = signal_fd_open();
        if (sigfd < 0) {
                r = sigfd;
                goto finish;
        }
        r = context_connect(&ctx, true, sigfd, &c);
        if (r == -ECANCELED) {
                r = 0;
                goto finish;
        }
        if (r < 0)
                goto finish;
        r = chat_session_new(&ctx, true, &s);
        if (r < 0)
                goto finish;
        s->show_presence = true;
        s->interactive = true;
        s->window = CONNECT_WINDOW;
        r = chat_session_attach(s, c);
        if (r >= 0)
                r = chat_session_watch(s, NULL, 0, true);      /* our contacts' presence */
        if (r < 0)
                goto finish;

        in.session = s;
        in.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) && !arg_settings.json;
        if (in.tty) {
                const char *why;

                /* Without libedit, lines are read as from a pipe: editing
                 * and history are lost, nothing else. */
                if (line_edit_load(&why) < 0) {
                        log_warning("Line editing is off (%s); lines are read as typed.", why);
                        in.tty = false;
                }
        }
        snprintf(in.prompt, sizeof(in.prompt), "%s> ", arg_settings.user);
        current = &in;
        output->connected(arg_settings.user, arg_settings.address, c->session);
        if (in.tty) {
                *sym_rl_catch_signals = 0;   /* SIGINT and SIGTERM come through the signalfd */
                output_set_hooks(tty_before, tty_after);
                log_notice("Type RECIPIENT:MESSAGE, /help, or quit.");
                sym_rl_callback_handler_install(in.prompt, tty_line);
        } else {
                buf = malloc(PENDING_MAX + 1);
                scratch = malloc(PENDING_MAX + 1);
                if (!buf || !scratch) {
                        r = log_fail(EXIT_FAIL, -ENOMEM, "%m");
                        goto finish;
                }
                in.pending = buf;
                in.scratch = scratch;
        }

        for (;;) {
                struct pollfd p[2] = {
                        { .fd = sigfd, .events = POLLIN },
                        { .fd = STDIN_FILENO, .events = POLLIN },
                };
                bool want_input;

                if (!in.tty) {
                        r = process_pending(&in);
                        if (r < 0)
                                goto finish;
                }
                if (in.eof && chat_session_idle(s))
                        break;
                /* While we wait for the relay (a message in flight, or
                 * deliveries held at the end), it has the timeout to answer. */
                if (!s->outgoing && !(in.eof && !chat_session_idle(s)))
                        deadline = UINT64_MAX;
                else if (deadline == UINT64_MAX)
                        deadline = deadline_in(arg_settings.timeout_usec);
                want_input = in.tty ? !in.eof : !in.input_closed && in.n_pending < PENDING_MAX;

                r = chat_session_wait(s, p, want_input ? 2 : 1, deadline, "The session ended");
                if (r == CLIENT_TIMEOUT) {
                        r = log_fail(EXIT_TIMEOUT, 0, "The relay at %s did not answer within %u s.",
                                     arg_settings.address, (unsigned) (arg_settings.timeout_usec / USEC_PER_SEC));
                        goto finish;
                }
                if (r < 0)
                        goto finish;
                if (r != CLIENT_READY) {
                        deadline = UINT64_MAX;  /* the relay answered: start again */
                        continue;
                }
                if (p[0].revents) {
                        struct signalfd_siginfo si;

                        while (read(sigfd, &si, sizeof(si)) == (ssize_t) sizeof(si))
                                ;
                        break;
                }
                if (want_input && p[1].revents) {
                        if (in.tty) {
                                tty_result = 0;
                                sym_rl_callback_read_char();
                                r = tty_result;
                        } else
                                r = read_input(&in);
                        if (r < 0)
                                goto finish;
                }
        }

        client_bye(c);
        r = s->error;
finish:
        if (in.tty && !in.eof)
                sym_rl_callback_handler_remove();
        output_set_hooks(NULL, NULL);
        current = NULL;
        if (s)
                chat_session_detach(s);
        context_done(&ctx);
        return r;
}
