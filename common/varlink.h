/* SPDX-License-Identifier: MIT */
/*
 * The Varlink wire format (https://varlink.org), as the control socket
 * speaks it: a stream of JSON objects, each terminated by a NUL byte.
 *
 *   call   {"method":"io.securechat.Control.Kick","parameters":{...},"more":false,"oneway":false}
 *   reply  {"parameters":{...},"continues":true}   ("continues" only while more replies follow)
 *   error  {"error":"io.securechat.Control.NoSuchUser","parameters":{...}}
 *
 * VarlinkReader reassembles messages from whatever pieces a stream socket
 * hands over and never holds more than its bound: a message that does not
 * end within max bytes is refused, not buffered. The rest are small
 * parsers and builders. Both the daemon (control.c) and scctl (admin.c)
 * use this file.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "buf.h"
#include "json-util.h"

#define VARLINK_SERVICE_INTERFACE "org.varlink.service"

/* The standard errors of org.varlink.service. */
#define VARLINK_ERROR_INTERFACE_NOT_FOUND VARLINK_SERVICE_INTERFACE ".InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_FOUND VARLINK_SERVICE_INTERFACE ".MethodNotFound"
#define VARLINK_ERROR_INVALID_PARAMETER VARLINK_SERVICE_INTERFACE ".InvalidParameter"
#define VARLINK_ERROR_EXPECTED_MORE VARLINK_SERVICE_INTERFACE ".ExpectedMore"

typedef struct VarlinkReader {
        uint8_t *data;
        size_t size;            /* allocated; grows up to max */
        size_t start, end;      /* the bytes not parsed yet: data[start, end) */
        size_t scanned;         /* data[start, scanned) holds no NUL */
        size_t max;             /* the largest message, its NUL included */
} VarlinkReader;

void varlink_reader_init(VarlinkReader *r, size_t max);
void varlink_reader_done(VarlinkReader *r);

/* Where the next bytes from the socket go: at least one byte of room.
 * Call varlink_reader_next() until it returns 0 first; then a full buffer
 * means the message being assembled is too long: -EMSGSIZE. */
int varlink_reader_space(VarlinkReader *r, void **ret, size_t *ret_size);
void varlink_reader_commit(VarlinkReader *r, size_t n);

/* Copy bytes in (for callers that already hold them): returns how many
 * were taken, fewer than len when the buffer is full (take messages out
 * with varlink_reader_next() and feed the rest), or -EMSGSIZE, -ENOMEM. */
ssize_t varlink_reader_feed(VarlinkReader *r, const void *data, size_t len);

/* The next complete message: 1 and *ret (an object), or 0 when it has
 * not arrived entirely. -EMSGSIZE: no NUL within max bytes. -EBADMSG: not
 * strict JSON, not UTF-8, trailing data, or not an object. After an error
 * the stream has lost its framing; the caller hangs up. */
int varlink_reader_next(VarlinkReader *r, json_object **ret);

/* Bytes received that are not a complete message yet. */
size_t varlink_reader_pending(const VarlinkReader *r);

/* One call, borrowed from the message it was parsed from. */
typedef struct VarlinkCall {
        const char *method;             /* "interface.Method" */
        json_object *parameters;        /* an object, or NULL for none */
        bool more;
        bool oneway;
} VarlinkCall;

/* -EBADMSG when msg is not a call: "method" missing or not a well-formed
 * interface.Method name, or "parameters", "more", "oneway" of the wrong
 * type. Unknown members are ignored, as the specification asks. */
int varlink_call_parse(json_object *msg, VarlinkCall *ret);

/* A reply or an error, borrowed from the message. */
typedef struct VarlinkReply {
        const char *error;              /* NULL for a reply */
        json_object *parameters;        /* an object, or NULL */
        bool continues;
} VarlinkReply;

int varlink_reply_parse(json_object *msg, VarlinkReply *ret);

/* "io.securechat.Control.Kick": true with the length of the interface
 * part ("io.securechat.Control") when the name is well-formed. */
bool varlink_method_split(const char *method, size_t *ret_interface_len);

/* Builders. Each takes the reference to parameters (NULL = none) and
 * returns a new object, or NULL on ENOMEM. */
json_object *varlink_new_call(const char *method, json_object *parameters, bool more);
json_object *varlink_new_reply(json_object *parameters, bool continues);
json_object *varlink_new_error(const char *error, json_object *parameters);

/* Serialize o and its terminating NUL onto b. 0 or -ENOMEM. */
int varlink_append(Buf *b, json_object *o);
