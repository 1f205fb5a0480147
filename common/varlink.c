/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "util.h"
#include "varlink.h"

/* Deeper nesting than any call or reply of ours needs. */
#define VARLINK_DEPTH_MAX 16
/* The first allocation; the buffer doubles up to max as messages need. */
#define VARLINK_READER_INITIAL 4096
/* Interface names and method names together. */
#define VARLINK_NAME_MAX 255

void varlink_reader_init(VarlinkReader *r, size_t max) {
        *r = (VarlinkReader) { .max = MAX(max, (size_t) 2) };
}

void varlink_reader_done(VarlinkReader *r) {
        free(r->data);
        *r = (VarlinkReader) { .max = r->max };
}

size_t varlink_reader_pending(const VarlinkReader *r) {
        return r->end - r->start;
}

int varlink_reader_space(VarlinkReader *r, void **ret, size_t *ret_size) {
        if (r->start == r->end)
                r->start = r->end = r->scanned = 0;
        else if (r->end == r->size && r->start > 0) {
                /* Move the partial message to the front. */
                memmove(r->data, r->data + r->start, r->end - r->start);
                r->end -= r->start;
                r->scanned -= r->start;
                r->start = 0;
        }

        if (r->end == r->size) {
                size_t size;
                uint8_t *p;

                if (r->size >= r->max)
                        return -EMSGSIZE;
                size = r->size > 0 ? MIN(r->size * 2, r->max) : MIN((size_t) VARLINK_READER_INITIAL, r->max);
                p = realloc(r->data, size);
                if (!p)
                        return -ENOMEM;
                r->data = p;
                r->size = size;
        }

        *ret = r->data + r->end;
        *ret_size = r->size - r->end;
        return 0;
}

void varlink_reader_commit(VarlinkReader *r, size_t n) {
        r->end += MIN(n, r->size - r->end);
}

ssize_t varlink_reader_feed(VarlinkReader *r, const void *data, size_t len) {
        size_t taken = 0;

        while (taken < len) {
                size_t room;
                void *p;
                int k;

                k = varlink_reader_space(r, &p, &room);
                if (k == -EMSGSIZE && taken > 0)
                        break;  /* full: the caller takes messages out first */
                if (k < 0)
                        return k;
                room = MIN(room, len - taken);
                memcpy(p, (const uint8_t *) data + taken, room);
                varlink_reader_commit(r, room);
                taken += room;
                if (memchr(p, 0, room))
                        break;  /* a message is complete: let the caller see it */
        }
        return (ssize_t) taken;
}

int varlink_reader_next(VarlinkReader *r, json_object **ret) {
        const uint8_t *nul;
        size_t len;
        int k;

        nul = r->scanned < r->end ? memchr(r->data + r->scanned, 0, r->end - r->scanned) : NULL;
        if (!nul) {
                r->scanned = r->end;
                return r->end - r->start >= r->max ? -EMSGSIZE : 0;
        }

        len = (size_t) (nul - (r->data + r->start));
        if (len + 1 > r->max)
                return -EMSGSIZE;
        k = json_parse_strict((const char *) r->data + r->start, len, VARLINK_DEPTH_MAX, ret, NULL);
        r->start += len + 1;
        r->scanned = r->start;
        return k < 0 ? k : 1;
}

/* A reverse-domain interface name, a dot, and a method (or error) name
 * starting with a capital letter. */
bool varlink_method_split(const char *method, size_t *ret_interface_len) {
        const char *dot = strrchr(method, '.');
        size_t n = strlen(method), labels = 0;
        bool label_start = true;

        if (!dot || n > VARLINK_NAME_MAX || !(dot[1] >= 'A' && dot[1] <= 'Z'))
                return false;
        for (const char *p = dot + 1; *p; p++)
                if (!(*p >= 'A' && *p <= 'Z') && !(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9'))
                        return false;

        if (!(method[0] >= 'a' && method[0] <= 'z') && !(method[0] >= 'A' && method[0] <= 'Z'))
                return false;
        for (const char *p = method; p < dot; p++) {
                bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');

                if (*p == '.') {
                        if (label_start || p[-1] == '-')
                                return false;
                        label_start = true;
                        continue;
                }
                if (!alnum && (*p != '-' || label_start))
                        return false;
                if (label_start)
                        labels++;
                label_start = false;
        }
        if (label_start || dot[-1] == '-' || labels < 2)
                return false;

        if (ret_interface_len)
                *ret_interface_len = (size_t) (dot - method);
        return true;
}

/* Calls and replies, as the specification has them: a member of the wrong
 * type is an error, null is the same as absent, and members we do not know
 * are ignored. */
static const JsonDispatch call_table[] = {
        { "method", json_type_string, json_dispatch_string, offsetof(VarlinkCall, method), JSON_MANDATORY },
        { "parameters", json_type_object, json_dispatch_borrow, offsetof(VarlinkCall, parameters), 0 },
        { "more", json_type_boolean, json_dispatch_bool, offsetof(VarlinkCall, more), 0 },
        { "oneway", json_type_boolean, json_dispatch_bool, offsetof(VarlinkCall, oneway), 0 },
        {}
};

int varlink_call_parse(json_object *msg, VarlinkCall *ret) {
        VarlinkCall call = {};
        int r;

        r = json_dispatch(msg, call_table, JSON_NULLABLE, &call, NULL);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        if (!varlink_method_split(call.method, NULL))
                return -EBADMSG;

        *ret = call;
        return 0;
}

static const JsonDispatch reply_table[] = {
        { "error", json_type_string, json_dispatch_string, offsetof(VarlinkReply, error), 0 },
        { "parameters", json_type_object, json_dispatch_borrow, offsetof(VarlinkReply, parameters), 0 },
        { "continues", json_type_boolean, json_dispatch_bool, offsetof(VarlinkReply, continues), 0 },
        {}
};

int varlink_reply_parse(json_object *msg, VarlinkReply *ret) {
        VarlinkReply reply = {};
        int r;

        r = json_dispatch(msg, reply_table, JSON_NULLABLE, &reply, NULL);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;

        *ret = reply;
        return 0;
}

/* {key: value, "parameters": parameters or {}, flag: true}; key and flag
 * are optional. Takes parameters whatever happens. */
static json_object *new_message(const char *key, const char *value, json_object *parameters,
                                const char *flag) {
        _cleanup_(json_object_unrefp) json_object *p = parameters ?: json_object_new_object();
        _cleanup_(json_object_unrefp) json_object *o = json_object_new_object();

        if (!p ||
            (key && json_add_string(o, key, value) < 0) ||
            json_add(o, "parameters", TAKE_PTR(p)) < 0 ||
            (flag && json_add_bool(o, flag, true) < 0))
                return NULL;
        return TAKE_PTR(o);
}

json_object *varlink_new_call(const char *method, json_object *parameters, bool more) {
        return new_message("method", method, parameters, more ? "more" : NULL);
}

json_object *varlink_new_reply(json_object *parameters, bool continues) {
        return new_message(NULL, NULL, parameters, continues ? "continues" : NULL);
}

json_object *varlink_new_error(const char *error, json_object *parameters) {
        return new_message("error", error, parameters, NULL);
}

int varlink_append(Buf *b, json_object *o) {
        const char *s;
        size_t len;

        if (!o)
                return -ENOMEM;
        /* json-c writes a NUL inside a string as \u0000, so the only NUL
         * on the wire is the terminator. */
        s = json_plain_text(o, &len);
        if (!s)
                return -ENOMEM;
        buf_put(b, s, len);
        buf_put(b, "", 1);
        return b->error < 0 ? b->error : 0;
}
