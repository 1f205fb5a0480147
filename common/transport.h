/* SPDX-License-Identifier: MIT */
/*
 * One chat connection's byte transport: TLS 1.3 through GnuTLS, or plain
 * TCP when TLS is off (debugging and tests). Works on non-blocking sockets:
 * every call may return -EAGAIN, after which the caller polls the fd for
 * transport_wants_write() ? POLLOUT : POLLIN. Blocking callers simply poll
 * and retry.
 *
 * The TLS certificate is not what a client trusts (trust is the pinned
 * identity key, bound to the channel by the tls-exporter value), so the
 * client does not verify it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <gnutls/gnutls.h>


#define CHANNEL_BINDING_LEN 32

typedef struct Transport Transport;

/* Take ownership of fd on success; on failure the fd stays the caller's to
 * close. creds NULL = plain TCP. The server side takes a
 * reference-less pointer to creds, which must outlive the transport. */
int transport_new_server(int fd, gnutls_certificate_credentials_t creds, Transport **ret);
int transport_new_client(int fd, bool tls, const char *server_name, Transport **ret);
Transport *transport_free(Transport *t);   /* closes fd; no blocking bye */
static inline void transport_freep(Transport **t) { transport_free(*t); }

int transport_fd(const Transport *t);
bool transport_is_tls(const Transport *t);

/* Drive the TLS handshake: 0 when done (at once for plain), -EAGAIN to be
 * called again when the fd is ready, -EPROTO (or another -errno) when it
 * failed; *ret_error (may be NULL) gets GnuTLS's description. Requires TLS
 * 1.3. */
int transport_handshake(Transport *t, const char **ret_error);

/* >0 bytes, 0 at orderly EOF, -EAGAIN, -ECONNRESET/-EPROTO/... */
ssize_t transport_read(Transport *t, void *buf, size_t len);
/* >0 bytes written (may be short), -EAGAIN, -EPIPE/... For TLS, after
 * -EAGAIN the same data must be offered again (GnuTLS rule); callers keep
 * an output buffer and retry from its head, which satisfies this. */
ssize_t transport_write(Transport *t, const void *buf, size_t len);
/* End our direction: TLS close_notify (after the handshake), then
 * shutdown(SHUT_WR). 0 when done, -EAGAIN to be called again when the fd
 * is ready (transport_wants_write()), or -errno. Reading still works. */
int transport_shutdown(Transport *t);
/* Data already taken from the socket, decrypted inside GnuTLS or read
 * ahead of it, that poll will not report. A read after true may still give
 * -EAGAIN (the bytes were part of a record), and then this is false. */
bool transport_pending(const Transport *t);
/* True after a read (TLS, handshake done) that made a recv() which returned
 * less than it asked for, with nothing pending: the socket was empty then,
 * so the next read would give -EAGAIN unless bytes arrived since, which an
 * edge-triggered epoll reports as a new EPOLLIN. A read served from what
 * an earlier one kept back leaves it false. */
bool transport_read_all(const Transport *t);
/* After -EAGAIN: does the transport wait for writability? */
bool transport_wants_write(const Transport *t);

/* The RFC 9266 tls-exporter value (32 bytes) after the handshake; for plain
 * TCP, *ret_len = 0. */
int transport_channel_binding(Transport *t, uint8_t out[CHANNEL_BINDING_LEN], size_t *ret_len);

/* Server credentials from PEM files. */
int tls_credentials_load(const char *cert_path, const char *key_path,
                         gnutls_certificate_credentials_t *ret);
/* Generate an Ed25519 key for TLS and write it to key_path (PKCS#8 PEM,
 * mode 0600, atomic: temp file + rename). */
int tls_key_generate(const char *key_path);
/* Write a self-signed X.509 certificate (PEM, CN=cn, 10 years) for the
 * private key in key_path (any algorithm GnuTLS reads: Ed25519 from
 * tls_key_generate(), an RSA identity key, ...). The key file must be
 * private (-EPERM otherwise). Atomic (temp file + rename), mode 0644. */
int tls_make_self_signed(const char *key_path, const char *cn, const char *cert_path);
