/* SPDX-License-Identifier: MIT */
/* Listening addresses: parsing, printing, binding, and the sockets systemd
 * passes in (socket activation). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct SocketAddress {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
                struct sockaddr_storage storage;
        };
        socklen_t len;
        bool any;       /* "PORT" alone: every address, IPv4 and IPv6 */
} SocketAddress;

/* "127.0.0.1:5000", "[::1]:5000", "[::]:5000", "0.0.0.0:5000", or a port
 * alone ("5000", "*:5000") for every address. Numeric only (no DNS, which
 * could block). Port 0 lets the kernel choose. -EINVAL when malformed. */
int socket_address_parse(const char *s, SocketAddress *ret);

/* "1.2.3.4:5000" / "[::1]:5000" into buf (INET6_ADDRSTRLEN + 8 is enough). */
#define SOCKET_ADDRESS_MAX 64
const char *socket_address_format(const struct sockaddr *sa, socklen_t len,
                                  char buf[static SOCKET_ADDRESS_MAX]);

/* Bind and listen, non-blocking and close-on-exec, with SO_REUSEADDR. The
 * any-address form binds [::] with IPV6_V6ONLY off, or 0.0.0.0 where IPv6
 * is unavailable. */
int socket_listen_tcp(const SocketAddress *a, int backlog, int *ret_fd);

/* The local address of a socket, formatted (to log the real port). */
const char *socket_local_address(int fd, char buf[static SOCKET_ADDRESS_MAX]);
const char *socket_peer_address(int fd, char buf[static SOCKET_ADDRESS_MAX]);

/* A network, "10.0.0.0/8" or "2001:db8::/32" (a bare address is one host),
 * kept as an IPv6 prefix with IPv4 as IPv4-mapped (::ffff:0:0/96), so that
 * an IPv4 client on a dual-stack socket matches an IPv4 network. */
typedef struct SocketCidr {
        uint8_t addr[16];       /* host bits cleared */
        unsigned prefix;        /* 0..128, over the IPv6 form */
} SocketCidr;

int socket_cidr_parse(const char *s, SocketCidr *ret);
bool socket_cidr_match(const SocketCidr *c, const struct sockaddr *sa);
const char *socket_cidr_format(const SocketCidr *c, char buf[static SOCKET_ADDRESS_MAX]);

/* Sockets passed by systemd, sorted by their FileDescriptorName=. */
typedef struct ListenFds {
        int chat[8];            /* TCP listeners named "chat" */
        size_t n_chat;
        int control;            /* Unix stream listener named "control", or -EBADF */
} ListenFds;

/* Walk sd_listen_fds_with_names(), check each fd's type with
 * sd_is_socket_inet()/sd_is_socket_unix(), make the usable ones
 * non-blocking and close the rest with a warning. Returns the number of usable fds (0
 * outside socket activation) or -errno. */
int listen_fds_collect(ListenFds *ret);
