#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The relay as the attacker: envelopes changed in its queue, and the same
# envelope delivered twice (in one session and in a later one). The
# recipient must refuse them, say why, never show their text, and still
# ack them so that they leave the queue. The queue is edited with sqlite3
# (psql with SC_DATABASE=pg) while the relay is stopped.

SC_SCRIPT=tamper
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

db_available || skip_all "no $SC_DATABASE client (sqlite3, psql) is installed"

# SQL for a member of the envelopes in the queue, in the database's
# dialect: its value as text or as a number, and the assignment that sets
# it to the value of an SQL expression.
if [ "$SC_DATABASE" = pg ]; then
	env_text() { printf "(envelope::jsonb ->> '%s')" "$1"; }
	env_number() { printf "((envelope::jsonb ->> '%s')::bigint)" "$1"; }
	env_set() { printf "envelope = jsonb_set(envelope::jsonb, '{%s}', to_jsonb(%s))" "$1" "$2"; }
else
	[ "$(sqlite3 :memory: "SELECT json_extract('{\"a\":1}', '\$.a');" 2>/dev/null)" = 1 ] ||
		skip_all "sqlite3 has no JSON functions"
	env_text() { printf "json_extract(envelope, '\$.%s')" "$1"; }
	env_number() { env_text "$1"; }
	env_set() { printf "envelope = json_set(envelope, '\$.%s', %s)" "$1" "$2"; }
fi

check "relay starts" relay_start || done_testing
ok "alice registers" sc_init alice
ok "bob registers" sc_init bob

queued() {
	db "SELECT count(*) FROM ${SC_TBL}queue;"
}

# alice sends TEXT to bob, who is offline; the relay is stopped after.
send_queued_and_stop() { # DESCRIPTION TEXT
	local out
	out=$(sc alice send bob "$2" 2>/dev/null)
	is "$1: queued" "0 queued" "$? $out"
	relay_stop
}

# ---- an envelope changed in the queue ----------------------------------------------

send_queued_and_stop "a message for bob" "$(marker tampered) changed in the queue"
is "it is in the relay's queue" 1 "$(queued)"
# Flip the first character of the ciphertext (to another base64 letter).
ct=$(env_text ct)
db "UPDATE ${SC_TBL}queue SET $(env_set ct "(CASE substr($ct, 1, 1) WHEN 'A' THEN 'B' ELSE 'A' END) || substr($ct, 2)");"
is "its ciphertext was changed" 1 "$(db "SELECT count(*) FROM ${SC_TBL}queue WHERE $ct LIKE 'A%' OR $ct LIKE 'B%';")"
# At debug, for the message-delivered event below.
check "relay starts (log-level=debug)" relay_start -o log-level=debug
sc bob --json inbox >"$T/inbox1.json" 2>"$T/inbox1.err"
is "bob's inbox exits 0" 0 $?
is "...reporting the message as rejected: bad_signature" "alice bad_signature" \
	"$("$SC_JSON" rejected from <"$T/inbox1.json") $("$SC_JSON" rejected reason <"$T/inbox1.json")"
is "...showing no message" 0 "$(json_count "$T/inbox1.json" message)"
unlike "...and none of its text" "tampered" "$(cat "$T/inbox1.json" "$T/inbox1.err")"
ok "the relay logged that bob acked it" grep -q "event=message-delivered user=alice to=bob" "$SC_RELAY_LOG"
out=$(sc bob inbox 2>/dev/null)
is "it is not delivered again" "0 No queued messages." "$? $out"

# The human output says the same.
send_queued_and_stop "another message" "$(marker tampered2) changed in the queue"
db "UPDATE ${SC_TBL}queue SET $(env_set ts "$(env_number ts) - 1");"
check "relay starts" relay_start
out=$(sc bob inbox 2>/dev/null)
is "a changed timestamp: refused (human output)" 0 $?
like "...saying so" "^\[[0-9:]+\] refused message from alice \(id [A-Za-z0-9+/=]+\): bad_signature$" "$out"

# ---- the same envelope twice, in one session ---------------------------------------------

R="$(marker replay) delivered twice"
send_queued_and_stop "a message to replay" "$R"
# A copy under a new seq (the relay keeps (sender, msg_id) unique, so its
# msg_id column differs; the envelope is the same, byte for byte).
db "INSERT INTO ${SC_TBL}queue (recipient, sender, msg_id, envelope, size, received, expires)
	SELECT recipient, sender, msg_id || '-copy', envelope, size, received, expires FROM ${SC_TBL}queue;"
is "the queue holds the envelope twice" "2 1" \
	"$(queued) $(db "SELECT count(DISTINCT envelope) FROM ${SC_TBL}queue;")"
check "relay starts" relay_start
sc bob --json inbox >"$T/inbox2.json" 2>"$T/inbox2.err"
is "bob's inbox exits 0" 0 $?
is "...shows the first copy, exactly" "$R" "$("$SC_JSON" message text <"$T/inbox2.json")"
# The same envelope again is a redelivery, not an attack (hostile.sh has
# another envelope under a used id, which is refused as replay).
is "...and acknowledges the second without a word" "0 0" \
	"$(json_count "$T/inbox2.json" rejected) $(grep -c . "$T/inbox2.err")"
is "...showing one message" "message synced" \
	"$("$SC_JSON" message type <"$T/inbox2.json") $(tail -n 1 "$T/inbox2.json" | "$SC_JSON" synced type)"

# ---- the same envelope again, in a later session ---------------------------------------

R2="$(marker replay2) delivered again later"
send_queued_and_stop "a message to replay later" "$R2"
# A copy of the queue: in a file of its own (SQLite), or in a table beside
# the relay's that it does not know of (PostgreSQL).
if [ "$SC_DATABASE" = pg ]; then
	SAVED=saved_q
	saved_db() { db "$1"; }
else
	SAVED=saved.q
	saved_db() { db "ATTACH '$T/saved.db' AS saved; $1"; }
fi
saved_db "CREATE TABLE $SAVED AS SELECT * FROM ${SC_TBL}queue;"
check "relay starts" relay_start
sc bob --json inbox >"$T/inbox3.json" 2>/dev/null
is "bob reads it once" "$R2" "$("$SC_JSON" message text <"$T/inbox3.json")"
relay_stop
is "the queue is empty after bob's acks" 0 "$(queued)"
saved_db "INSERT INTO ${SC_TBL}queue (recipient, sender, msg_id, envelope, size, received, expires)
	SELECT recipient, sender, msg_id || '-again', envelope, size, received, expires FROM $SAVED;
	DROP TABLE $SAVED;"
check "relay starts" relay_start
sc bob --json inbox >"$T/inbox4.json" 2>/dev/null
is "bob's next inbox acknowledges the old envelope without showing it or a refusal" "0 0" \
	"$(json_count "$T/inbox4.json" message) $(json_count "$T/inbox4.json" rejected)"
relay_stop
is "...so that the relay no longer holds it" 0 "$(queued)"
check "relay starts" relay_start

# ---- an envelope the relay swapped to another sender ------------------------------------

ok "carol registers" sc_init carol
send_queued_and_stop "a message to swap" "$(marker swapped) from alice"
db "UPDATE ${SC_TBL}queue SET sender = 'carol', $(env_set from "CAST('carol' AS TEXT)");"
check "relay starts" relay_start
sc bob --json inbox >"$T/inbox5.json" 2>/dev/null
is "an envelope whose sender was changed to carol: rejected as bad_signature" "carol bad_signature" \
	"$("$SC_JSON" rejected from <"$T/inbox5.json") $("$SC_JSON" rejected reason <"$T/inbox5.json")"
is "...showing no message" 0 "$(json_count "$T/inbox5.json" message)"

# ---- a client replaying or forging send frames ---------------------------------------

raw() { # COMMAND...: sc-raw with each argument a script line
	local a=()
	for c; do a+=(-e "$c"); done
	"$SC_RAW" $SC_RAW_TLS --timeout 15 127.0.0.1 "$SC_PORT" "${a[@]}"
}

send_queued_and_stop "a message to steal" "$(marker stolen) from alice"
stolen=$(db "SELECT envelope FROM ${SC_TBL}queue;")
check "relay starts" relay_start
out=$(raw connect "key $T/mallory.key 2048" "auth mallory send" "expect welcome" \
	"frame {\"type\":\"send\",\"id\":7,\"envelope\":$stolen}" "wait error bad_request" bye 2>&1)
is "mallory sending alice's envelope as his own: bad_request" 0 $? || diag "$out"

# One send frame of mallory's, recorded and written twice.
recorded=$(raw connect "key $T/mallory.key" "auth mallory send" "expect welcome" \
	"send bob $(marker twice) sent twice" "wait accepted" bye 2>/dev/null |
	sed -n 's/^> \({"type":"send".*\)$/\1/p')
like "a recorded send frame" '^\{"type":"send"' "$recorded"
out=$(raw connect "key $T/mallory.key" "auth mallory send" "expect welcome" "frame $recorded" "wait accepted" bye 2>&1)
is "...written again in a new session: the relay answers accepted (idempotent)" 0 $? || diag "$out"
relay_stop
is "...but queues it only once" 1 "$(db "SELECT count(*) FROM ${SC_TBL}queue WHERE sender = 'mallory';")"
check "relay starts" relay_start
sc bob --json inbox >"$T/inbox6.json" 2>/dev/null
is "bob's inbox: alice's message once, mallory's once, nothing rejected" \
	"$(marker stolen) from alice
$(marker twice) sent twice
0" "$("$SC_JSON" message text <"$T/inbox6.json")
$(json_count "$T/inbox6.json" rejected)"

relay_stop
is "every refused envelope was acked: the queue is empty" 0 "$(queued)"
check "relay starts" relay_start
check_privacy "$T/inbox2.json" "$T/inbox3.json" "$T/inbox6.json"
relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
