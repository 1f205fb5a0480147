/* SPDX-License-Identifier: MIT */
/*
 * The JSON back end (see output.h): every result is one JSON object on one
 * line with a "type" member, so that a script can read a stream line by line
 * (jq, `while read`).
 */
#include <stdio.h>

#include "output.h"

/* Print o as one line and drop our reference. */
static void emit(json_object *o) {
        const char *s;

        if (!o) {
                log_warning("Out of memory while formatting output.");
                return;
        }
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        output_begin();
        if (s)
                puts(s);
        output_end();
        json_object_put(o);
}

/* Builders that tolerate NULL strings (as JSON null). */
static json_object *new_type(const char *type) {
        json_object *o = json_object_new_object();

        if (o)
                json_object_object_add(o, "type", json_object_new_string(type));
        return o;
}

static void add_string(json_object *o, const char *key, const char *value) {
        if (o)
                json_object_object_add(o, key, value ? json_object_new_string(value) : NULL);
}

static void add_bool(json_object *o, const char *key, bool value) {
        if (o)
                json_object_object_add(o, key, json_object_new_boolean(value));
}

static void add_uint(json_object *o, const char *key, uint64_t value) {
        if (o)
                json_object_object_add(o, key, json_object_new_uint64(value));
}

static void json_message(const OutputMessage *m) {
        json_object *o = new_type("message");

        add_string(o, "from", m->from);
        add_string(o, "to", m->to);
        add_string(o, "id", m->id);
        add_uint(o, "ts", m->ts);
        if (o)
                json_object_object_add(o, "text", json_object_new_string_len(m->text, (int) m->len));
        emit(o);
}

static void json_rejected(const char *from, const char *id, const char *reason) {
        json_object *o = new_type("rejected");

        add_string(o, "from", from);
        add_string(o, "id", id);
        add_string(o, "reason", reason);
        emit(o);
}

static void json_presence(const char *event, const char *user, const char *fingerprint,
                          const char *pinned) {
        json_object *o = new_type("presence");

        add_string(o, "event", event);
        add_string(o, "user", user);
        if (fingerprint) {
                add_string(o, "fingerprint", fingerprint);
                add_bool(o, "key_changed", pinned != NULL);
        }
        if (pinned)
                add_string(o, "pinned", pinned);
        emit(o);
}

static void json_synced(unsigned n_messages) {
        json_object *o = new_type("synced");

        add_uint(o, "messages", n_messages);
        emit(o);
}

static void json_connected(const char *user, const char *server, const char *session) {
        json_object *o = new_type("connected");

        add_string(o, "user", user);
        add_string(o, "server", server);
        add_string(o, "session", session);
        emit(o);
}

static void json_sent(const char *to, const char *id, bool queued, bool session) {
        json_object *o = new_type("sent");

        add_string(o, "to", to);
        add_string(o, "id", id);
        add_string(o, "status", queued ? "queued" : "delivered");
        add_bool(o, "queued", queued);
        emit(o);
}

static void json_refused(const char *to, const char *reason, const char *message) {
        json_object *o = new_type("refused");

        add_string(o, "to", to);
        add_string(o, "reason", reason);
        add_string(o, "message", message);
        emit(o);
}

static void json_receipt(const char *to, const char *id, const char *status, bool session) {
        json_object *o = new_type("receipt");

        add_string(o, "to", to);
        add_string(o, "id", id);
        add_string(o, "status", status);
        emit(o);
}

static void json_users(const OutputUser *users, size_t n) {
        json_object *o = new_type("users"), *a = json_object_new_array();

        for (size_t i = 0; a && i < n; i++) {
                json_object *u = json_object_new_object();

                add_string(u, "user", users[i].user);
                add_string(u, "fingerprint", users[i].fingerprint);
                json_object_array_add(a, u);
        }
        if (o)
                json_object_object_add(o, "users", a);
        else
                json_object_put(a);
        emit(o);
}

static void json_fingerprint(const char *user, const char *fingerprint, OutputFingerprintKind kind) {
        static const char *const kinds[] = {
                [FINGERPRINT_OWN] = "own",
                [FINGERPRINT_PINNED] = "pinned",
                [FINGERPRINT_NEW] = "new",
        };
        json_object *o = new_type("fingerprint");

        add_string(o, "user", user);
        add_string(o, "fingerprint", fingerprint);
        add_string(o, "status", kinds[kind]);
        emit(o);
}

static void json_registered(const char *user, const char *server, const char *fingerprint,
                            bool created) {
        json_object *o = new_type("registered");

        add_string(o, "user", user);
        add_string(o, "server", server);
        add_string(o, "fingerprint", fingerprint);
        add_bool(o, "created", created);
        emit(o);
}

static void json_trusted(const char *user, const char *old_fingerprint, const char *new_fingerprint) {
        json_object *o = new_type("trusted");

        add_string(o, "user", user);
        add_string(o, "fingerprint", new_fingerprint);
        add_string(o, "previous", old_fingerprint);
        emit(o);
}

static void json_text(const char *s) {
}

static void json_object_out(json_object *o) {
        emit(json_object_get(o));
}

const Output output_json = {
        .message = json_message,
        .rejected = json_rejected,
        .presence = json_presence,
        .synced = json_synced,
        .connected = json_connected,
        .sent = json_sent,
        .refused = json_refused,
        .receipt = json_receipt,
        .users = json_users,
        .fingerprint = json_fingerprint,
        .registered = json_registered,
        .trusted = json_trusted,
        .text = json_text,
        .object = json_object_out,
};
