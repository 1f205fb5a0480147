/* SPDX-License-Identifier: MIT */
/*
 * sc-varlink: a raw Varlink client for the control socket's tests.
 *
 *   sc-varlink [-n N] [-t SECONDS] [-c CONNECTIONS] [--junk BYTES] [--hold]
 *              SOCKET [MESSAGE...]
 *
 * Connects to the Unix socket SOCKET and sends each MESSAGE as given
 * (unchecked, so it may be anything) followed by a NUL byte; with --junk,
 * then BYTES bytes of "x" and no NUL. With --hold it then reads nothing
 * until a line arrives on standard input (a slow reader). Prints every
 * message received as one line of compact JSON until N messages came
 * (default: one per MESSAGE; 0: until the server hangs up), then exits.
 * "EOF" is printed when the server hangs up first.
 *
 * With -c it opens that many connections and sends the messages on each,
 * but reads only the first; the others stay open, unread, until it exits.
 *
 * With --serve it is the server instead, for a client's tests: it listens
 * on SOCKET, takes one connection, prints the first message that comes,
 * answers it with the MESSAGEs (a relay of another version, say) and
 * exits.
 *
 * Exit status: 0; 1 when connecting or writing fails or a message
 * received is not a JSON object; 2 on usage errors; 124 when SECONDS
 * (default 10) pass first.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "varlink.h"

#define REPLY_MAX (16u * 1024 * 1024)
#define CONNECTIONS_MAX 64

static long long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const void *data, size_t len) {
        const char *p = data;

        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static void usage(void) {
        fprintf(stderr, "Usage: sc-varlink [-n N] [-t SECONDS] [-c CONNECTIONS] [--junk BYTES] [--hold] "
                "SOCKET [MESSAGE...]\n"
                "       sc-varlink --serve [-t SECONDS] SOCKET [MESSAGE...]\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "junk", required_argument, NULL, 'j' },
                { "hold", no_argument, NULL, 'h' },
                { "serve", no_argument, NULL, 's' },
                {}
        };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        long want = -1, timeout = 10, junk = 0, got = 0, n_fds = 1;
        int fds[CONNECTIONS_MAX];
        bool hold = false, serve = false;
        long long deadline;
        VarlinkReader r;
        Buf messages = {};
        int c;

        while ((c = getopt_long(argc, argv, "n:t:c:", options, NULL)) >= 0)
                switch (c) {
                case 'n':
                        want = atol(optarg);
                        break;
                case 't':
                        timeout = atol(optarg);
                        break;
                case 'c':
                        n_fds = atol(optarg);
                        break;
                case 'j':
                        junk = atol(optarg);
                        break;
                case 'h':
                        hold = true;
                        break;
                case 's':
                        serve = true;
                        break;
                default:
                        usage();
                        return 2;
                }
        if (optind >= argc || strlen(argv[optind]) >= sizeof(sa.sun_path) || want < -1 || timeout <= 0 ||
            junk < 0 || n_fds < 1 || n_fds > CONNECTIONS_MAX) {
                usage();
                return 2;
        }
        if (want < 0)
                want = serve ? 1 : argc - optind - 1;
        memcpy(sa.sun_path, argv[optind], strlen(argv[optind]));
        for (int i = optind + 1; i < argc; i++)
                buf_put(&messages, argv[i], strlen(argv[i]) + 1);
        if (messages.error < 0) {
                fprintf(stderr, "sc-varlink: out of memory\n");
                return 1;
        }

        deadline = now_ms() + timeout * 1000;
        if (serve) {
                struct pollfd p;
                int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

                (void) unlink(sa.sun_path);
                if (l < 0 || bind(l, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(l, 1) < 0) {
                        fprintf(stderr, "sc-varlink: %s: %m\n", argv[optind]);
                        return 1;
                }
                p = (struct pollfd) { .fd = l, .events = POLLIN };
                if (poll(&p, 1, (int) timeout * 1000) <= 0)
                        return 124;
                fds[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                close(l);
                if (fds[0] < 0) {
                        fprintf(stderr, "sc-varlink: accept: %m\n");
                        return 1;
                }
        }
        for (long k = 0; !serve && k < n_fds; k++) {
                fds[k] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fds[k] < 0 || connect(fds[k], (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                        fprintf(stderr, "sc-varlink: %s: %m\n", argv[optind]);
                        return 1;
                }
                /* All messages in one write: the relay gets them in one read
                 * (as from a client that pipelines its calls). */
                if (write_all(fds[k], messages.data, messages.len) < 0) {
                        fprintf(stderr, "sc-varlink: write: %m\n");
                        return 1;
                }
                for (long i = 0; i < junk; i++)
                        if (write_all(fds[k], "x", 1) < 0)
                                break;  /* the server may hang up on us: that is what is tested */
        }

        if (hold) {
                char line[16];

                if (!fgets(line, sizeof(line), stdin))
                        return 1;
        }

        varlink_reader_init(&r, REPLY_MAX);
        while (want == 0 || got < want) {
                struct pollfd p = { .fd = fds[0], .events = POLLIN };
                json_object *o = NULL;
                size_t room;
                ssize_t n;
                void *buf;
                int k;

                k = varlink_reader_next(&r, &o);
                if (k < 0) {
                        printf("BAD\n");
                        return 1;
                }
                if (k > 0) {
                        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                              JSON_C_TO_STRING_NOSLASHESCAPE));
                        fflush(stdout);
                        json_object_put(o);
                        got++;
                        continue;
                }

                if (now_ms() >= deadline)
                        return 124;
                if (poll(&p, 1, (int) (deadline - now_ms())) <= 0)
                        continue;
                if (varlink_reader_space(&r, &buf, &room) < 0) {
                        printf("BAD\n");
                        return 1;
                }
                n = recv(fds[0], buf, room, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        printf("EOF\n");
                        break;
                }
                varlink_reader_commit(&r, (size_t) n);
        }
        if (serve && write_all(fds[0], messages.data, messages.len) < 0) {
                fprintf(stderr, "sc-varlink: write: %m\n");
                return 1;
        }
        varlink_reader_done(&r);
        buf_done(&messages);
        for (long k = 0; k < n_fds; k++)
                close(fds[k]);
        return 0;
}
