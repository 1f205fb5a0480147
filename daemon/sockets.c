/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"
#include "sockets.h"

static int parse_port(const char *s, uint16_t *ret) {
        char *end;
        unsigned long p;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        p = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || p > 65535)
                return -EINVAL;
        *ret = (uint16_t) p;
        return 0;
}

int socket_address_parse(const char *s, SocketAddress *ret) {
        SocketAddress a = {};
        char host[INET6_ADDRSTRLEN + 1];
        const char *colon, *port;
        uint16_t p;
        size_t n;

        if (!s || !*s)
                return -EINVAL;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                n = (size_t) (close - s - 1);
                if (n == 0 || n >= sizeof(host))
                        return -EINVAL;
                memcpy(host, s + 1, n);
                host[n] = '\0';
                if (parse_port(close + 2, &p) < 0)
                        return -EINVAL;
                a.in6.sin6_family = AF_INET6;
                a.in6.sin6_port = htons(p);
                if (inet_pton(AF_INET6, host, &a.in6.sin6_addr) != 1)
                        return -EINVAL;
                a.len = sizeof(a.in6);
                *ret = a;
                return 0;
        }

        colon = strrchr(s, ':');
        if (!colon || (colon - s == 1 && s[0] == '*')) {
                /* A port alone: every address, like ListenStream=5000. */
                port = colon ? colon + 1 : s;
                if (parse_port(port, &p) < 0)
                        return -EINVAL;
                a.in6.sin6_family = AF_INET6;
                a.in6.sin6_port = htons(p);
                a.in6.sin6_addr = in6addr_any;
                a.len = sizeof(a.in6);
                a.any = true;
                *ret = a;
                return 0;
        }

        n = (size_t) (colon - s);
        if (n == 0 || n >= sizeof(host))
                return -EINVAL;
        memcpy(host, s, n);
        host[n] = '\0';
        if (parse_port(colon + 1, &p) < 0)
                return -EINVAL;
        a.in.sin_family = AF_INET;
        a.in.sin_port = htons(p);
        if (inet_pton(AF_INET, host, &a.in.sin_addr) != 1)
                return -EINVAL;   /* IPv6 needs brackets */
        a.len = sizeof(a.in);
        *ret = a;
        return 0;
}

const char *socket_address_format(const struct sockaddr *sa, socklen_t len,
                                  char buf[static SOCKET_ADDRESS_MAX]) {
        char host[INET6_ADDRSTRLEN];

        if (sa->sa_family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in)) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(buf, SOCKET_ADDRESS_MAX, "%s:%u", host, ntohs(in->sin_port));
        } else if (sa->sa_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        /* A v4 client on a dual-stack socket: print it as v4. */
                        inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof(host));
                        snprintf(buf, SOCKET_ADDRESS_MAX, "%s:%u", host, ntohs(in6->sin6_port));
                } else {
                        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                        snprintf(buf, SOCKET_ADDRESS_MAX, "[%s]:%u", host, ntohs(in6->sin6_port));
                }
        } else
                snprintf(buf, SOCKET_ADDRESS_MAX, "unknown");
        return buf;
}

static int listen_one(int family, const struct sockaddr *sa, socklen_t len, bool dual,
                      int backlog, int *ret_fd) {
        _cleanup_(closep) int fd = -EBADF;
        int one = 1, zero = 0;

        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0)
                return -errno;
        /* Restarting must not wait for TIME_WAIT connections to drain. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return -errno;
        if (family == AF_INET6 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one, sizeof(int)) < 0)
                return -errno;
        if (bind(fd, sa, len) < 0)
                return -errno;
        if (listen(fd, backlog) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int socket_listen_tcp(const SocketAddress *a, int backlog, int *ret_fd) {
        int r;

        r = listen_one(a->sa.sa_family, &a->sa, a->len, a->any, backlog, ret_fd);
        if (r == -EAFNOSUPPORT && a->any) {
                /* No IPv6 on this host: every IPv4 address will do. */
                struct sockaddr_in in = {
                        .sin_family = AF_INET,
                        .sin_port = a->in6.sin6_port,
                        .sin_addr.s_addr = htonl(INADDR_ANY),
                };
                r = listen_one(AF_INET, (const struct sockaddr *) &in, sizeof(in), false,
                               backlog, ret_fd);
        }
        return r;
}

const char *socket_local_address(int fd, char buf[static SOCKET_ADDRESS_MAX]) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0) {
                snprintf(buf, SOCKET_ADDRESS_MAX, "unknown");
                return buf;
        }
        return socket_address_format((const struct sockaddr *) &ss, len, buf);
}

const char *socket_peer_address(int fd, char buf[static SOCKET_ADDRESS_MAX]) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        if (getpeername(fd, (struct sockaddr *) &ss, &len) < 0) {
                snprintf(buf, SOCKET_ADDRESS_MAX, "unknown");
                return buf;
        }
        return socket_address_format((const struct sockaddr *) &ss, len, buf);
}

static int fd_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0)
                return -errno;
        if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

int listen_fds_collect(ListenFds *ret) {
        ListenFds l = { .n_chat = 0, .control = -EBADF };
        char **names = NULL;
        int n, usable = 0;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return n;

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "unknown";
                const char *why = NULL;
                int r;

                if (strcmp(name, "chat") == 0) {
                        if (sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0)
                                why = "not a listening TCP socket";
                        else if (l.n_chat >= ELEMENTSOF(l.chat))
                                why = "too many chat sockets";
                } else if (strcmp(name, "control") == 0) {
                        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0)
                                why = "not a listening Unix stream socket";
                        else if (l.control >= 0)
                                why = "a second control socket";
                } else
                        why = "unknown name (expected \"chat\" or \"control\")";

                if (!why) {
                        r = fd_nonblock(fd);
                        if (r < 0)
                                why = "cannot make it non-blocking";
                }
                if (why) {
                        log_warning("Closing unexpected socket-activated fd %d named \"%s\": %s",
                                    fd, name, why);
                        safe_close(fd);
                        continue;
                }
                if (strcmp(name, "chat") == 0)
                        l.chat[l.n_chat++] = fd;
                else
                        l.control = fd;
                usable++;
        }

        if (names)
                for (int i = 0; i < n; i++)
                        free(names[i]);
        free(names);
        *ret = l;
        return usable;
}

/* ---- networks ------------------------------------------------------------ */

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static void cidr_mask(uint8_t addr[static 16], unsigned prefix) {
        for (unsigned i = 0; i < 16; i++) {
                unsigned bits = prefix > 8 * i ? MIN(prefix - 8 * i, 8u) : 0;
                addr[i] &= (uint8_t) (0xff00u >> bits);
        }
}

int socket_cidr_parse(const char *s, SocketCidr *ret) {
        SocketCidr c = {};
        char host[INET6_ADDRSTRLEN + 1];
        const char *slash;
        struct in_addr a4;
        unsigned max, prefix;
        size_t n;

        if (!s || !*s)
                return -EINVAL;
        slash = strchr(s, '/');
        n = slash ? (size_t) (slash - s) : strlen(s);
        if (n == 0 || n >= sizeof(host))
                return -EINVAL;
        memcpy(host, s, n);
        host[n] = '\0';

        if (inet_pton(AF_INET, host, &a4) == 1) {
                memcpy(c.addr, v4mapped_prefix, sizeof(v4mapped_prefix));
                memcpy(c.addr + 12, &a4, 4);
                max = 32;
        } else if (inet_pton(AF_INET6, host, c.addr) == 1)
                max = 128;
        else
                return -EINVAL;

        prefix = max;
        if (slash) {
                char *end;
                unsigned long p;

                if (slash[1] < '0' || slash[1] > '9')
                        return -EINVAL;
                errno = 0;
                p = strtoul(slash + 1, &end, 10);
                if (errno != 0 || *end != '\0' || p > max)
                        return -EINVAL;
                prefix = (unsigned) p;
        }
        c.prefix = prefix + (max == 32 ? 96 : 0);
        cidr_mask(c.addr, c.prefix);
        *ret = c;
        return 0;
}

bool socket_cidr_match(const SocketCidr *c, const struct sockaddr *sa) {
        uint8_t addr[16];

        if (sa->sa_family == AF_INET) {
                memcpy(addr, v4mapped_prefix, sizeof(v4mapped_prefix));
                memcpy(addr + 12, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        } else if (sa->sa_family == AF_INET6)
                memcpy(addr, ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr, 16);
        else
                return false;
        cidr_mask(addr, c->prefix);
        return memcmp(addr, c->addr, 16) == 0;
}

const char *socket_cidr_format(const SocketCidr *c, char buf[static SOCKET_ADDRESS_MAX]) {
        char host[INET6_ADDRSTRLEN];

        if (c->prefix >= 96 && memcmp(c->addr, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
                inet_ntop(AF_INET, c->addr + 12, host, sizeof(host));
                snprintf(buf, SOCKET_ADDRESS_MAX, "%s/%u", host, c->prefix - 96);
        } else {
                inet_ntop(AF_INET6, c->addr, host, sizeof(host));
                snprintf(buf, SOCKET_ADDRESS_MAX, "%s/%u", host, c->prefix);
        }
        return buf;
}
