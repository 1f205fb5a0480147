/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

static int parse_object(const char *s, size_t len, json_object **ret) {
        return json_parse_strict(s, len, VARLINK_DEPTH_MAX, ret, NULL);
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
        k = parse_object((const char *) r->data + r->start, len, ret);
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

/* A member of the given type, NULL when absent, -EBADMSG (in *bad) when
 * present with another type. */
static json_object *member(json_object *o, const char *key, json_type type, bool *bad) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !v)
                return NULL;
        if (!json_object_is_type(v, type)) {
                *bad = true;
                return NULL;
        }
        return v;
}

int varlink_call_parse(json_object *msg, VarlinkCall *ret) {
        json_object *method, *more, *oneway, *parameters;
        bool bad = false;

        method = member(msg, "method", json_type_string, &bad);
        parameters = member(msg, "parameters", json_type_object, &bad);
        more = member(msg, "more", json_type_boolean, &bad);
        oneway = member(msg, "oneway", json_type_boolean, &bad);
        if (bad || !method)
                return -EBADMSG;
        /* A NUL inside the JSON string would cut the name short. */
        if (strlen(json_object_get_string(method)) != (size_t) json_object_get_string_len(method) ||
            !varlink_method_split(json_object_get_string(method), NULL))
                return -EBADMSG;

        *ret = (VarlinkCall) {
                .method = json_object_get_string(method),
                .parameters = parameters,
                .more = more && json_object_get_boolean(more),
                .oneway = oneway && json_object_get_boolean(oneway),
        };
        return 0;
}

int varlink_reply_parse(json_object *msg, VarlinkReply *ret) {
        json_object *error, *parameters, *continues;
        bool bad = false;

        error = member(msg, "error", json_type_string, &bad);
        parameters = member(msg, "parameters", json_type_object, &bad);
        continues = member(msg, "continues", json_type_boolean, &bad);
        if (bad)
                return -EBADMSG;
        if (error && strlen(json_object_get_string(error)) != (size_t) json_object_get_string_len(error))
                return -EBADMSG;

        *ret = (VarlinkReply) {
                .error = error ? json_object_get_string(error) : NULL,
                .parameters = parameters,
                .continues = continues && json_object_get_boolean(continues),
        };
        return 0;
}

static json_object *new_message(const char *key, const char *value, json_object *parameters) {
        json_object *o = json_object_new_object();

        if (!o) {
                json_object_put(parameters);
                return NULL;
        }
        if (key) {
                json_object *s = json_object_new_string(value);

                if (!s || json_object_object_add(o, key, s) < 0) {
                        json_object_put(s);
                        json_object_put(parameters);
                        json_object_put(o);
                        return NULL;
                }
        }
        if (!parameters)
                parameters = json_object_new_object();
        if (!parameters || json_object_object_add(o, "parameters", parameters) < 0) {
                json_object_put(parameters);
                json_object_put(o);
                return NULL;
        }
        return o;
}

static json_object *add_true(json_object *o, const char *key) {
        json_object *b;

        if (!o)
                return NULL;
        b = json_object_new_boolean(1);
        if (!b || json_object_object_add(o, key, b) < 0) {
                json_object_put(b);
                json_object_put(o);
                return NULL;
        }
        return o;
}

json_object *varlink_new_call(const char *method, json_object *parameters, bool more) {
        json_object *o = new_message("method", method, parameters);

        return more ? add_true(o, "more") : o;
}

json_object *varlink_new_reply(json_object *parameters, bool continues) {
        json_object *o = new_message(NULL, NULL, parameters);

        return continues ? add_true(o, "continues") : o;
}

json_object *varlink_new_error(const char *error, json_object *parameters) {
        return new_message("error", error, parameters);
}

int varlink_append(Buf *b, json_object *o) {
        const char *s;
        size_t len;

        if (!o)
                return -ENOMEM;
        /* json-c writes a NUL inside a string as \u0000, so the only NUL
         * on the wire is the terminator. */
        s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!s)
                return -ENOMEM;
        buf_put(b, s, len);
        buf_put(b, "", 1);
        return b->error < 0 ? b->error : 0;
}
