#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Messages for a recipient who is offline: queued at the relay, fetched
# with inbox in order, kept across a relay restart; text of the default
# max-text (16384 bytes); one receiving session per user; listen
# reconnecting after a relay restart.

SC_SCRIPT=offline
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

check "relay starts (default limits, tls=$SC_TLS)" relay_start || done_testing
ok "alice registers" sc_init alice
ok "bob registers" sc_init bob

# Send FILE as alice to bob (as an argument); print "STATUS OUTPUT".
send_file() { # FILE [SEND-OPTIONS]
	local out
	out=$(sc alice send bob "$(cat "$1")" 2>>"$T/send.err")
	echo "$? $out"
}

# bob's inbox as JSON into FILE; its exit status.
inbox() { # FILE
	sc bob --json inbox >"$1" 2>"$1.err"
}

# The texts of the messages in JSON FILE match the files given, in order.
texts_are() { # JSON FILE...
	local json=$1 i=0 f
	shift
	[ "$(json_count "$json" message)" -eq $# ] || return 1
	for f; do
		i=$((i + 1))
		json_text "$json" $i "$T/got" && cmp -s "$f" "$T/got" || return 1
	done
}

# ---- inbox after being offline ---------------------------------------------------

for i in 1 2 3; do
	printf '%s message number %s while bob is away' "$(marker queued$i)" $i >"$T/q$i"
	is "bob offline: message $i is queued" "0 queued" "$(send_file "$T/q$i")"
done
inbox "$T/inbox1.json"
is "inbox exits 0 at synced" 0 $?
ok "inbox printed the 3 messages, in order, each exactly" texts_are "$T/inbox1.json" "$T/q1" "$T/q2" "$T/q3"
is "...then synced, counting 3" 3 "$("$SC_JSON" -n 1 synced messages <"$T/inbox1.json")"
is "...and nothing after synced" synced "$(tail -n 1 "$T/inbox1.json" | "$SC_JSON" -n 1 synced type)"
out=$(sc bob inbox 2>"$T/inbox2.err")
is "a second inbox prints only 'No queued messages.' and exits 0" "0 No queued messages." "$? $out"
inbox "$T/inbox3.json"
is "...the same in JSON: synced with 0 messages, nothing else" '{"type":"synced","messages":0}' \
	"$(cat "$T/inbox3.json")"

# ---- delivery across a relay restart ---------------------------------------------

for i in 4 5 6; do
	printf '%s message %s, before the restart' "$(marker restart$i)" $i >"$T/q$i"
	is "message $i queued before the restart" "0 queued" "$(send_file "$T/q$i")"
done
port=$SC_PORT
relay_stop
is "relay exits 0 on SIGTERM" 0 $?
ok "it logged that it stopped" grep -q "event=stop" "$T/relay.1.log"
check "relay starts again on the same state directory" relay_start
is "...on the same port" "$port" "$SC_PORT"
ok "...and counts 3 queued messages" grep -q "started (3 queued messages)" "$SC_RELAY_LOG"
inbox "$T/inbox4.json"
is "inbox after the restart exits 0" 0 $?
ok "...with the 3 messages, in order, exactly" texts_are "$T/inbox4.json" "$T/q4" "$T/q5" "$T/q6"

# ---- the write-ahead log, written ahead, and a crash ---------------------------

if [ "$SC_DATABASE" = sqlite ]; then
	# 4000 frames (a page of 4096 bytes, SQLite's default, which the store
	# keeps, and its 24-byte header) after the 32-byte header: what the
	# log grows to under writes that never pause.
	bound=$((32 + 4000 * (4096 + 24)))
	size=$(stat -c %s "$SC_DB-wal")
	is "the relay gave its write-ahead log its full size at start" "$bound" "$size"
	for i in 7 8; do
		printf '%s message %s, before the crash' "$(marker crash$i)" $i >"$T/q$i"
		is "message $i queued before the crash" "0 queued" "$(send_file "$T/q$i")"
	done
	sc_kill "$SC_RELAY_PID" KILL
	SC_RELAY_PID=
	ok "after SIGKILL, the accepted messages are in the log alone" test -s "$SC_DB-wal"
	check "relay starts again after the crash" relay_start
	ok "...and counts the 2 messages" grep -q "started (2 queued messages)" "$SC_RELAY_LOG"
	inbox "$T/inbox5.json"
	ok "...which inbox delivers, in order, exactly" texts_are "$T/inbox5.json" "$T/q7" "$T/q8"
	is "...in a log of the same size" "$bound" "$(stat -c %s "$SC_DB-wal")"
else
	skip "the write-ahead log written ahead, and a crash" "the database is PostgreSQL"
fi

# ---- the default max-text ------------------------------------------------------

text_of_size max16k 16384 "$T/max"
is "test text is 16384 bytes" 16384 "$(wc -c <"$T/max" | tr -d ' ')"
out=$(sc alice send bob <"$T/max" 2>>"$T/send.err")
is "16384 bytes (the default max-text) from stdin without '-': queued" "0 queued" "$? $out"
text_of_size over16k 16385 "$T/over"
sc alice send bob <"$T/over" >"$T/over.out" 2>"$T/over.err"
is "16385 bytes: refused with EXIT_REFUSED" $EXIT_REFUSED $?
like "...saying why" "16385 bytes; the relay takes at most 16384" "$(cat "$T/over.err")"
inbox "$T/inbox5.json"
ok "bob's inbox has the 16384-byte text exactly, and nothing of the refused one" \
	texts_are "$T/inbox5.json" "$T/max"

# ---- many messages in one connect session, read in one inbox ----------------------

# 40 messages of about 2 KB (more than the relay pushes to a session
# before waiting for it to read), sent through connect's pipe mode.
: >"$T/many.in"
for i in $(seq 1 40); do
	text_of_size "many$i" 2000 "$T/many$i"
	printf 'bob:%s\n' "$(cat "$T/many$i")" >>"$T/many.in"
done
printf 'quit\n' >>"$T/many.in"
sc alice connect <"$T/many.in" >"$T/many.out" 2>"$T/many.err"
is "connect with 40 lines from a pipe exits 0" 0 $?
is "...each queued, in order" 40 "$(grep -cx -- '-> bob: queued' "$T/many.out")"
inbox "$T/inbox-many.json"
is "bob's inbox exits 0" 0 $?
ok "...with the 40 messages, in order, each exactly" texts_are "$T/inbox-many.json" $(for i in $(seq 1 40); do echo "$T/many$i"; done)

# ---- what a terminal shows --------------------------------------------------------

# Control characters and bidirectional overrides in a message are shown
# escaped by the human output, so that a sender cannot rewrite the
# recipient's screen; JSON carries the exact text.
printf '%s esc:\033[2J bidi:\342\200\256 del:\177 tab:\t end\nsecond line' "$(marker escapes)" >"$T/escapes"
is "a message with control characters is queued" "0 queued" "$(send_file "$T/escapes")"
out=$(sc bob inbox 2>/dev/null)
is "bob's human inbox exits 0" 0 $?
is "...showing them escaped, and the second line indented under the text" \
	"$(marker escapes) esc:\x1b[2J bidi:\u202e del:\x7f tab:$(printf '\t') end
                  second line" \
	"$(sed 's/^\[[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\] alice: //' <<<"$out")"

# ---- one receiving session per user --------------------------------------------

check "bob listens" listen_start bob "$T/listen1.json"
FIRST=$SC_BG
check "bob listens a second time" listen_start bob "$T/listen2.json"
SECOND=$SC_BG
bg_wait "$FIRST"
is "the first listen is replaced: it exits with EXIT_CONNECT" $EXIT_CONNECT $?
like "...naming the relay's error code 'replaced'" "replaced" "$(cat "$T/listen1.json.err")"
ok "the relay logged it" grep -Eq 'event=session-end user=bob .*reason="?replaced' "$SC_RELAY_LOG"

printf '%s to the second listen' "$(marker second)" >"$T/second"
is "a message to bob now" "0 delivered" "$(send_file "$T/second")"
ok "...arrives at the second listen" wait_json "$T/listen2.json" 1 message
ok "...exactly" texts_are "$T/listen2.json" "$T/second"

# ---- listen reconnects after a restart ---------------------------------------------

relay_stop
is "relay stops with bob listening" 0 $?
check "relay starts again" relay_start
ok "bob's listen logs in again by itself" wait_until count_above 0 receiving_logins bob
like "...after saying it reconnects" "Reconnecting" "$(cat "$T/listen2.json.err")"
printf '%s after the reconnection' "$(marker reconnected)" >"$T/reconnected"
is "a message to bob after the restart" "0 delivered" "$(send_file "$T/reconnected")"
ok "...arrives at the reconnected listen, exactly" wait_until texts_are "$T/listen2.json" "$T/second" "$T/reconnected"
bg_stop "$SECOND"
is "listen exits 0 on SIGTERM" 0 $?

# ---- queue-limit and queue-ttl ---------------------------------------------------

relay_stop
# queue-limit itself: one sender may fill it (limits.sh tests the share).
check "relay restarts with queue-limit=2" relay_start -o queue-limit=2 -o queue-limit-per-sender=100%
for i in 1 2; do
	printf '%s limited %s' "$(marker limit$i)" $i >"$T/l$i"
	is "message $i of 2 queued" "0 queued" "$(send_file "$T/l$i")"
done
sc alice send bob "$(marker limit3) one too many" >"$T/full.out" 2>"$T/full.err"
is "the third: EXIT_REFUSED" $EXIT_REFUSED $?
like "...naming queue_full" "queue_full" "$(cat "$T/full.err")"
ok "the relay logged the limit" grep -q "event=limit-hit" "$SC_RELAY_LOG"
inbox "$T/inbox6.json"
ok "bob's inbox has the two, exactly, and not the third" texts_are "$T/inbox6.json" "$T/l1" "$T/l2"
printf '%s after the queue emptied' "$(marker limit4)" >"$T/l4"
is "with the queue read, alice can send again" "0 queued" "$(send_file "$T/l4")"
inbox "$T/inbox7.json"
ok "...and bob gets it" texts_are "$T/inbox7.json" "$T/l4"

relay_stop
check "relay restarts with queue-ttl=2s" relay_start -o queue-ttl=2s
printf '%s expires' "$(marker expires)" >"$T/expires"
is "a message for bob is queued" "0 queued" "$(send_file "$T/expires")"
ok "the relay expires it (message-expired event within $SC_WAIT s)" \
	wait_until grep -q "event=message-expired user=alice to=bob" "$SC_RELAY_LOG"
out=$(sc bob inbox 2>/dev/null)
is "bob's inbox has nothing" "0 No queued messages." "$? $out"

# ---- a replacing login at max-sessions ---------------------------------------------

relay_stop
check "relay restarts with max-sessions=1" relay_start -o max-sessions=1
check "bob listens, the only session" listen_start bob "$T/listen3.json"
THIRD=$SC_BG
check "bob's second listen replaces it although the relay is full" listen_start bob "$T/listen4.json"
FOURTH=$SC_BG
bg_wait "$THIRD"
is "...the first exits with EXIT_CONNECT (replaced)" $EXIT_CONNECT $?
fails_with "a third party is refused at max-sessions (server_busy)" $EXIT_REFUSED sc alice users
bg_stop "$FOURTH"

check_privacy "$T"/inbox*.json "$T/listen2.json"
relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
