#!/bin/bash
# SPDX-License-Identifier: MIT
#
# scctl rotate-key: bob replaces his key with one his old key vouches for;
# alice, who pinned the old one, moves her pin without a "key changed"
# refusal; the old key no longer logs in, also after a restart of the
# relay; a rerun finishes a rotation that was stopped half way; and a
# rotation the pinned key did not sign is refused like any key change.

SC_SCRIPT=rotate
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

check "relay starts" relay_start || done_testing
ok "alice registers" sc_init alice
ok "bob registers" sc_init bob
BOB_FP0=$(sc bob fingerprint)

out=$(sc alice send bob "$(marker first) to the first key" 2>/dev/null)
is "alice sends to bob (pinning his key)" "0 queued" "$? $out"
is "alice pinned bob's first key" "$BOB_FP0" "$(sc alice fingerprint bob 2>/dev/null | sed -n 1p)"
sc bob --json inbox >"$T/inbox0.json" 2>/dev/null
is "bob reads it" "$(marker first) to the first key" "$("$SC_JSON" message text <"$T/inbox0.json")"

# ---- a rotation ------------------------------------------------------------------

# bob is online (listen) while he rotates, and alice watches him from a
# session of version 2: the online event the rotation sends, and a who
# after it, carry the new key's fingerprint.
check "bob listens" listen_start bob "$T/bob-listen.json"
BOB_LISTEN=$SC_BG
printf '%s\n' connect "key $T/home-alice/identity/alice.key" "proto 2" "auth alice send" "expect welcome" \
	'frame {"type":"watch","id":1,"users":["bob"]}' "wait online" "wait presence" \
	'frame {"type":"who","id":2}' "wait online" bye >"$T/watch.script"
SC_BG_IN=$T/watch.script bg_start "$T/watch.out" "$T/watch.err" "$SC_RAW" $SC_RAW_TLS \
	--timeout $((SC_WAIT * 2)) 127.0.0.1 "$SC_PORT"
WATCH_PID=$SC_BG
wait_until grep -q '^< {"type":"online"' "$T/watch.out"
contains "alice watches bob, online with his first key" "\"user\":\"bob\",\"fingerprint\":\"$BOB_FP0\"" \
	"$(grep '^< {"type":"online"' "$T/watch.out")"

cp -a "$T/home-bob" "$T/home-bob-old"
BOB_FP1=$(sc bob rotate-key 2>"$T/rotate1.err")
is "bob's rotate-key exits 0" 0 $?
ok "...printing a new fingerprint" test -n "$BOB_FP1" -a "$BOB_FP1" != "$BOB_FP0"
is "...which is now bob's key" "$BOB_FP1" "$(sc bob fingerprint 2>/dev/null)"
ok "...leaving no next key behind" test ! -e "$T/home-bob/identity/bob.key.next"
contains "the relay logged the key-rotated event, with the new key" "fingerprint=$BOB_FP1" \
	"$(grep "event=key-rotated user=bob " "$SC_RELAY_LOG")"
bg_wait "$WATCH_PID"
is "alice's watching session got the event and the who answer" 0 $? || diag "$(cat "$T/watch.err")"
is "...the online event with bob's new fingerprint" \
	"< {\"type\":\"presence\",\"event\":\"online\",\"user\":\"bob\",\"fingerprint\":\"$BOB_FP1\"}" \
	"$(grep '^< {"type":"presence"' "$T/watch.out")"
contains "...and so has who" "\"user\":\"bob\",\"fingerprint\":\"$BOB_FP1\"" \
	"$(grep '^< {"type":"online","id":2' "$T/watch.out")"
unlike "...nothing of the old one after the rotation" "$BOB_FP0" "$(sed -n '/"type":"presence"/,$p' "$T/watch.out")"
bg_stop "$BOB_LISTEN"

out=$(sc alice send bob "$(marker second) to the rotated key" 2>"$T/send1.err")
is "alice sends to bob's new key without a key-changed refusal" "0 queued" "$? $out"
like "...saying that the old key vouched for it" "bob rotated their key; the old key vouched for it" \
	"$(cat "$T/send1.err")"
is "alice's pin moved to bob's new key" "$BOB_FP1" "$(sc alice fingerprint bob 2>/dev/null | sed -n 1p)"
sc bob --json inbox >"$T/inbox1.json" 2>/dev/null
is "bob reads it with the new key" "$(marker second) to the rotated key" \
	"$("$SC_JSON" message text <"$T/inbox1.json")"
out=$(sc bob send alice "$(marker fromnew) signed by the new key" 2>/dev/null)
is "bob sends to alice" "0 queued" "$? $out"
sc alice --json inbox >"$T/alice1.json" 2>/dev/null
is "alice reads it" "$(marker fromnew) signed by the new key" "$("$SC_JSON" message text <"$T/alice1.json")"

sc_at "$T/home-bob-old" bob --json inbox >/dev/null 2>"$T/old.err"
is "a login with bob's old key: EXIT_AUTH" $EXIT_AUTH $?
like "...as a different key (key_mismatch)" "key_mismatch" "$(cat "$T/old.err")"
sc_at "$T/home-bob-old" bob rotate-key >/dev/null 2>"$T/old-rotate.err"
is "rotate-key from the old key: EXIT_AUTH" $EXIT_AUTH $?
like "...the relay has another key" "has another key" "$(cat "$T/old-rotate.err")"

# ---- rotations the relay refuses ---------------------------------------------------
#
# Hand-made rotate frames from dave's session: each is answered with an
# error carrying its id, the session goes on, and dave's key stays.

raw() { # COMMAND...: sc-raw with each argument a script line
	local a=()
	for c; do a+=(-e "$c"); done
	"$SC_RAW" $SC_RAW_TLS --timeout 15 127.0.0.1 "$SC_PORT" "${a[@]}"
}

if command -v openssl >/dev/null; then
	raw connect "key $T/dave.key 2048" "auth dave send" "expect welcome" bye >/dev/null 2>&1
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/eve.key" 2>/dev/null
	dave=$(openssl pkey -in "$T/dave.key" -pubout -outform DER | base64 -w0)
	eve=$(openssl pkey -in "$T/eve.key" -pubout -outform DER | base64 -w0)
	alice=$(openssl pkey -in "$T/home-alice/identity/alice.key" -pubout -outform DER | base64 -w0)
	sig=$(head -c 256 /dev/urandom | base64 -w0)
	statement() { # ID USER OLD NEW TIME
		printf 'frame {"type":"rotate","id":%s,"rotation":{"user":"%s","old_key":"%s","new_key":"%s","time":%s,"old_sig":"%s","new_sig":"%s"}}' \
			"$1" "$2" "$3" "$4" "$5" "$sig" "$sig"
	}
	now=$(date +%s)
	out=$(raw connect "key $T/dave.key" "auth dave send" "expect welcome" \
		"$(statement 1 carol "$dave" "$eve" "$now")" "wait error bad_request" \
		"$(statement 2 dave "$alice" "$eve" "$now")" "wait error key_mismatch" \
		"$(statement 3 dave "$dave" "$eve" 1)" "wait error bad_request" \
		"$(statement 4 dave "$dave" "$eve" "$now")" "wait error bad_request" \
		'frame {"type":"rotate","id":5,"rotation":{"user":"dave"}}' "wait error bad_frame" 2>&1)
	is "another user's, another key's, a stale and a forged statement are refused; a malformed one ends the session" \
		0 $?
	like "...each answering its request" '"id":1,.*"id":2,.*"id":3,.*"id":4,.*"id":5' "$(echo "$out" | grep '^< {"type":"error"' | tr '\n' ' ')"
	like "...the stale one for its time" '"id":3,"code":"bad_request","message":"[^"]*time' "$out"
	like "...the forged one for its signatures" '"id":4,"code":"bad_request","message":"[^"]*signatures' "$out"
	out=$(raw connect "key $T/dave.key" "auth dave send" "expect welcome" bye 2>&1)
	is "dave's key is still the registered one" 0 $?
	ok "no key-rotated event for dave" test "$(relay_count 'event=key-rotated user=dave ')" -eq 0
else
	skip "rotations the relay refuses" "no openssl"
fi

# ---- a rotation stopped half way -------------------------------------------------
#
# Before the relay took it: the next key is on disk, the relay still has
# the old one. carol's (unregistered) key stands in for the key an
# interrupted run made.

sc carol fingerprint >/dev/null 2>&1
CAROL_FP=$(sc carol fingerprint 2>/dev/null)
cp -a "$T/home-bob" "$T/home-bob-snap"
cp "$T/home-carol/identity/carol.key" "$T/home-bob/identity/bob.key.next"
out=$(sc bob rotate-key 2>"$T/rotate2.err")
is "rotate-key with a next key left behind exits 0" 0 $?
is "...rotating to that key" "$CAROL_FP" "$out"
like "...and says it goes on" "earlier run" "$(cat "$T/rotate2.err")"

# After the relay took it, before the identity file was replaced: the
# snapshot's old key is refused, its next key is the registered one.
cp "$T/home-bob/identity/bob.key" "$T/home-bob-snap/identity/bob.key.next"
out=$(sc_at "$T/home-bob-snap" bob rotate-key 2>"$T/rotate3.err")
is "rerunning a rotation the relay took already exits 0" "0 $CAROL_FP" "$? $out"
is "...and the identity is the new key" "$CAROL_FP" "$(sc_at "$T/home-bob-snap" bob fingerprint 2>/dev/null)"

out=$(sc alice send bob "$(marker third) after two rotations" 2>"$T/send2.err")
is "alice follows the second rotation too" "0 queued" "$? $out"
is "...pinning it" "$CAROL_FP" "$(sc alice fingerprint bob 2>/dev/null | sed -n 1p)"

# ---- a restart keeps the new key ---------------------------------------------------

relay_stop
check "relay restarts" relay_start
sc bob --json inbox >"$T/inbox2.json" 2>/dev/null
is "bob logs in with the new key after the restart" 0 $?
is "...and reads alice's message" "$(marker third) after two rotations" \
	"$("$SC_JSON" message text <"$T/inbox2.json")"
sc_at "$T/home-bob-old" bob --json inbox >/dev/null 2>&1
is "the first key is still refused" $EXIT_AUTH $?
out=$(sc alice send bob "$(marker fourth) after the restart" 2>"$T/send3.err")
is "alice sends to bob after the restart" "0 queued" "$? $out"
unlike "...with no notice: nothing changed" "rotated" "$(cat "$T/send3.err")"

# Two statements of 2048-bit keys and the package are over 4 KiB: at the
# smallest max-frame the relay hands out what fits, the newest statements.
relay_stop
check "relay restarts with max-frame=4096, registration-burst=2" \
	relay_start -o max-frame=4096 -o max-text=1000 -o registration-burst=2 -o registration-rate=1/h
sc bob --json inbox >"$T/inbox3.json" 2>"$T/inbox3.err"
is "bob logs in (his package fits in a frame)" 0 $?
out=$(sc alice send bob "$(marker fifth) in small frames" 2>/dev/null)
is "alice sends to bob" "0 queued" "$? $out"
sc_init erin
out=$(sc erin send bob "$(marker sixth) from erin, who pins bob now" 2>/dev/null)
is "erin looks bob up and sends to him" "0 queued" "$? $out"

# erin's registration was one, this rotation is the second: the third
# change from this address waits.
BOB_FP3=$(sc bob rotate-key 2>/dev/null)
is "bob rotates once more" 0 $?
sc bob rotate-key >/dev/null 2>"$T/rotate4.err"
is "...and once too often: EXIT_RATE_LIMITED" $EXIT_RATE_LIMITED $?
like "...naming rate_limited" "rate_limited" "$(cat "$T/rotate4.err")"
is "...keeping the key the relay has" "$BOB_FP3" "$(sc bob fingerprint 2>/dev/null)"
sc bob --json inbox >/dev/null 2>&1
is "...which still logs in" 0 $?

# ---- rotations the pinned key did not sign -----------------------------------------
#
# The relay turns against alice: it forgets bob, and "bob" registers and
# rotates a key of his own. The chain it hands out does not start at the
# key alice pinned; then, edited to claim it does, the old signature is
# not the pinned key's.

if db_available; then
	relay_stop
	# As the relay's own deletes (scctl reset-key) do, with the foreign
	# keys on (always on in PostgreSQL): the rotations go with the user.
	if [ "$SC_DATABASE" = pg ]; then
		db "DELETE FROM sc_users WHERE name = 'bob';"
	else
		db "PRAGMA foreign_keys = ON; DELETE FROM users WHERE name = 'bob';"
	fi
	is "bob's registration and rotations removed" "0 0" \
		"$(db "SELECT count(*) FROM ${SC_TBL}users WHERE name = 'bob';") $(db "SELECT count(*) FROM ${SC_TBL}rotations WHERE name = 'bob';")"
	check "relay starts" relay_start
	sc_at "$T/home-mallory" bob init --bits 2048 >/dev/null 2>&1
	MALLORY_FP=$(sc_at "$T/home-mallory" bob rotate-key 2>/dev/null)
	is "another bob registers and rotates" 0 $?

	sc alice send bob "$(marker forged1) to the other bob" >"$T/forged1.out" 2>"$T/forged1.err"
	is "alice's send: EXIT_PEER_KEY (the chain does not start at her pin)" $EXIT_PEER_KEY $?
	like "...as a key change" "key changed" "$(cat "$T/forged1.err")"
	contains "...naming the new key" "$MALLORY_FP" "$(cat "$T/forged1.err")"
	is "alice's pin is unchanged" "$CAROL_FP" "$(sc alice fingerprint bob 2>/dev/null | sed -n 1p)"

	pinned=$(sed -n 's/.*"key":"\([^"]*\)".*/\1/p' "$T/home-alice/peers/"*/bob)
	relay_stop
	if [ "$SC_DATABASE" = pg ]; then
		# The text of the statement, changed in place: PostgreSQL's
		# JSON functions would write it in another form.
		db "UPDATE sc_rotations SET statement = regexp_replace(statement, '\"old_key\":\"[^\"]*\"', '\"old_key\":\"$pinned\"') WHERE name = 'bob';"
	else
		db "UPDATE rotations SET statement = json_set(statement, '\$.old_key', '$pinned') WHERE name = 'bob';"
	fi
	is "the statement now claims to start at alice's pin" 1 \
		"$(db "SELECT count(*) FROM ${SC_TBL}rotations WHERE name = 'bob' AND statement LIKE '%$pinned%';")"
	check "relay starts" relay_start
	sc alice send bob "$(marker forged2) to the forged chain" >"$T/forged2.out" 2>"$T/forged2.err"
	is "alice's send: EXIT_PEER_KEY (the pinned key did not sign it)" $EXIT_PEER_KEY $?
	like "...as a key change" "key changed" "$(cat "$T/forged2.err")"
	is "alice's pin is still unchanged" "$CAROL_FP" "$(sc alice fingerprint bob 2>/dev/null | sed -n 1p)"
else
	skip "forged rotations" "no $SC_DATABASE client (sqlite3, psql)"
fi

relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
