/* SPDX-License-Identifier: MIT */
/*
 * The JSON back end (see output.h): every result is one JSON object on one
 * line with a "type" member, so that a script can read a stream line by line
 * (jq, `while read`).
 */
#include <stdio.h>

#include "json-util.h"
#include "macro.h"
#include "output.h"

/* Print o as one line and drop our reference; ok is false when building
 * it failed (out of memory), and then nothing half-built is printed. */
static void emit(json_object *o, bool ok) {
        _cleanup_(json_object_unrefp) json_object *unref = o;
        const char *s = NULL;

        /* s lives in o's print buffer: o goes only after it is printed. */
        if (o && ok)
                s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s) {
                log_warning("Out of memory while formatting output.");
                return;
        }
        output_begin();
        puts(s);
        output_end();
}

static json_object *new_type(const char *type) {
        return json_new_object_with_string("type", type);
}

/* Strings may be NULL here: they become JSON null. */
static bool add_string(json_object *o, const char *key, const char *value) {
        return json_add_string_or_null(o, key, value) >= 0;
}

static bool add_bool(json_object *o, const char *key, bool value) {
        return json_add_bool(o, key, value) >= 0;
}

static bool add_uint(json_object *o, const char *key, uint64_t value) {
        return json_add_uint64(o, key, value) >= 0;
}

static void json_message(const OutputMessage *m) {
        json_object *o = new_type("message");

        emit(o, add_string(o, "from", m->from) &&
                add_string(o, "to", m->to) &&
                add_string(o, "id", m->id) &&
                add_uint(o, "ts", m->ts) &&
                json_add(o, "text", json_object_new_string_len(m->text, (int) m->len)) >= 0);
}

static void json_rejected(const char *from, const char *id, const char *reason) {
        json_object *o = new_type("rejected");

        emit(o, add_string(o, "from", from) &&
                add_string(o, "id", id) &&
                add_string(o, "reason", reason));
}

static void json_presence(const char *event, const char *user, const char *fingerprint,
                          const char *pinned) {
        json_object *o = new_type("presence");

        emit(o, add_string(o, "event", event) &&
                add_string(o, "user", user) &&
                (!fingerprint || (add_string(o, "fingerprint", fingerprint) &&
                                  add_bool(o, "key_changed", pinned != NULL))) &&
                (!pinned || add_string(o, "pinned", pinned)));
}

static void json_synced(unsigned n_messages) {
        json_object *o = new_type("synced");

        emit(o, add_uint(o, "messages", n_messages));
}

static void json_connected(const char *user, const char *server, const char *session) {
        json_object *o = new_type("connected");

        emit(o, add_string(o, "user", user) &&
                add_string(o, "server", server) &&
                add_string(o, "session", session));
}

static void json_sent(const char *to, const char *id, bool queued, bool session) {
        json_object *o = new_type("sent");

        emit(o, add_string(o, "to", to) &&
                add_string(o, "id", id) &&
                add_string(o, "status", queued ? "queued" : "delivered") &&
                add_bool(o, "queued", queued));
}

static void json_refused(const char *to, const char *reason, const char *message) {
        json_object *o = new_type("refused");

        emit(o, add_string(o, "to", to) &&
                add_string(o, "reason", reason) &&
                add_string(o, "message", message));
}

static void json_receipt(const char *to, const char *id, const char *status, bool session) {
        json_object *o = new_type("receipt");

        emit(o, add_string(o, "to", to) &&
                add_string(o, "id", id) &&
                add_string(o, "status", status));
}

static void json_users(const OutputUser *users, size_t n) {
        json_object *o = new_type("users"), *a = json_object_new_array();
        bool ok = json_add(o, "users", a) >= 0;

        for (size_t i = 0; ok && i < n; i++) {
                json_object *u = json_object_new_object();

                ok = add_string(u, "user", users[i].user) &&
                     add_string(u, "fingerprint", users[i].fingerprint) &&
                     add_uint(u, "suite", users[i].suite);
                ok = json_array_add(a, u) >= 0 && ok;
        }
        emit(o, ok);
}

static void json_fingerprint(const char *user, const char *fingerprint, OutputFingerprintKind kind,
                             unsigned suite) {
        static const char *const kinds[] = {
                [FINGERPRINT_OWN] = "own",
                [FINGERPRINT_PINNED] = "pinned",
                [FINGERPRINT_NEW] = "new",
        };
        json_object *o = new_type("fingerprint");

        emit(o, add_string(o, "user", user) &&
                add_string(o, "fingerprint", fingerprint) &&
                add_string(o, "status", kinds[kind]) &&
                (suite == 0 || add_uint(o, "suite", suite)));
}

static void json_registered(const char *user, const char *server, const char *fingerprint,
                            bool created) {
        json_object *o = new_type("registered");

        emit(o, add_string(o, "user", user) &&
                add_string(o, "server", server) &&
                add_string(o, "fingerprint", fingerprint) &&
                add_bool(o, "created", created));
}

static void json_trusted(const char *user, const char *old_fingerprint, const char *new_fingerprint) {
        json_object *o = new_type("trusted");

        emit(o, add_string(o, "user", user) &&
                add_string(o, "fingerprint", new_fingerprint) &&
                add_string(o, "previous", old_fingerprint));
}

static void json_text(const char *s) {
}

static void json_object_out(json_object *o) {
        emit(json_object_get(o), true);
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
