#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A hostile relay (sc-raw playing the relay, with keys of its own and of
# "bob", whose messages it can seal): what scctl must hold against it. The
# replay window is scctl's own, never the relay's unsigned queue_ttl; a
# message shown once is never shown again; a redelivery of it is
# acknowledged without a word, another envelope under its id is refused;
# scctl's own name stands for its own key only; and the list of seen
# messages neither grows without bound nor stops scctl at any size.

SC_SCRIPT=hostile
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

DAY=86400
FAKE_N=0

# Start the fake relay with the script in FILE, on PORT (default: any); its
# port in FAKE_PORT, its output in $T/fake.N.out, its pid in FAKE_PID.
fake_start() { # FILE [PORT]
	FAKE_N=$((FAKE_N + 1))
	FAKE_OUT=$T/fake.$FAKE_N.out
	SC_BG_IN=$1 bg_start "$FAKE_OUT" "$FAKE_OUT.err" "$SC_RAW" $SC_RAW_TLS \
		--timeout "${FAKE_TIMEOUT:-$SC_WAIT}" 127.0.0.1 "${2:-0}"
	FAKE_PID=$SC_BG
	if ! wait_until grep -q '^# port ' "$FAKE_OUT"; then
		diag "the fake relay did not listen:" "$(cat "$FAKE_OUT.err")"
		return 1
	fi
	FAKE_PORT=$(sed -n 's/^# port //p' "$FAKE_OUT")
}

# scctl as alice against the fake relay.
alice() { # ARGS...
	"$SCCTL" --server "127.0.0.1:$FAKE_PORT" --user alice --home "$T/home-alice" $SC_NOTLS \
		--timeout "$SC_WAIT" "$@"
}

acks() { grep -c '^# ack ' "$FAKE_OUT"; }

mkdir -p "$T/home-alice/identity" && chmod 700 "$T/home-alice" "$T/home-alice/identity"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/home-alice/identity/alice.key" 2>/dev/null
chmod 600 "$T/home-alice/identity/alice.key"
ALICE_FP=$("$SCCTL" --user alice --home "$T/home-alice" fingerprint)
like "alice has a key" '^SHA256:' "$ALICE_FP"

# ---- the replay window is scctl's, not the relay's ------------------------------

# Four sessions with one relay. The first announces 30 days and delivers a
# genuine message of bob's two days old; the second announces a queue_ttl
# of 1 s (which used to shrink the window, and with it the list of seen
# ids, to a day); the third announces 30 days again and delivers the old
# message once more, the second one again, another envelope under the
# second one's id, and a message ten days old.
cat >"$T/replay.script" <<EOF
serverkey $T/fake.key
listen
persona bob $T/bob.key
accept $((30 * DAY))
deliver bob $((2 * DAY)) $(marker old) two days old
synced
wait ack
eof
accept 1
deliver bob 0 $(marker new) just now
synced
wait ack
eof
accept $((30 * DAY))
redeliver 1
redeliver 2
reuse bob 2 $(marker other) under an id already used
deliver bob $((10 * DAY)) $(marker tendays) ten days old
synced
wait ack
wait ack
wait ack
wait ack
eof
accept $((30 * DAY))
deliver bob $((2 * DAY)) $(marker twodays) two days old
deliver bob 3600 $(marker hour) an hour old
synced
wait ack
wait ack
eof
EOF
check "the fake relay listens" fake_start "$T/replay.script" || done_testing

alice --json inbox >"$T/inbox1.json" 2>"$T/inbox1.err"
is "session 1 (queue_ttl 30 days): inbox exits 0" 0 $?
is "...showing the two-day-old message" "$(marker old) two days old" "$("$SC_JSON" -n 1 message text <"$T/inbox1.json")"

alice --json inbox >"$T/inbox2.json" 2>"$T/inbox2.err"
is "session 2 (queue_ttl 1 s): inbox exits 0" 0 $?
is "...showing the new message" "$(marker new) just now" "$("$SC_JSON" -n 1 message text <"$T/inbox2.json")"

SECURECHAT_DEBUG=1 alice --json inbox >"$T/inbox3.json" 2>"$T/inbox3.err"
is "session 3 (queue_ttl 30 days again): inbox exits 0" 0 $?
is "...showing no message again, nor any other" 0 "$(json_count "$T/inbox3.json" message)"
is "...refusing two" 2 "$(json_count "$T/inbox3.json" rejected)"
is "...the envelope under a used id as replay" 1 "$(json_count "$T/inbox3.json" -m reason=replay rejected)"
is "...the ten-day-old message as expired (past the default window of 7 days)" 1 \
	"$(json_count "$T/inbox3.json" -m reason=expired rejected)"
unlike "...and said nothing about the two redeliveries but on the debug log" \
	"replay|refused" "$(grep -v -e 'shown already' -e 'longer than the replay window' "$T/inbox3.err")"
is "...where it names them" 2 "$(grep -c 'shown already' "$T/inbox3.err")"
unlike "...never showing a text twice" "$(marker old)|$(marker new)|$(marker other)|$(marker tendays)" \
	"$(cat "$T/inbox3.json" "$T/inbox3.err")"

# replay-window= in scctl.conf: one day.
printf 'replay-window = 1d\n' >"$T/scctl.conf"
alice --config "$T/scctl.conf" --json inbox >"$T/inbox4.json" 2>"$T/inbox4.err"
is "session 4 with replay-window = 1d: inbox exits 0" 0 $?
is "...showing the hour-old message" "$(marker hour) an hour old" \
	"$("$SC_JSON" -n 1 message text <"$T/inbox4.json")"
is "...refusing the two-day-old one as expired" 1 "$(json_count "$T/inbox4.json" -m reason=expired rejected)"
like "...and saying that the relay keeps messages longer than the window" "longer than the replay window" \
	"$(cat "$T/inbox4.err")"
printf 'replay-window = soon\n' >"$T/bad.conf"
alice --config "$T/bad.conf" inbox >"$T/bad.out" 2>"$T/bad.err"
is "replay-window = soon: EXIT_USAGE" "$EXIT_USAGE" $?
like "...naming the file, the line and the key" "bad.conf:1: replay-window=" "$(cat "$T/bad.err")"
is "every delivery was acknowledged" 8 "$(acks)"
bg_wait "$FAKE_PID"
is "the fake relay ran its whole script" 0 $?

# ---- alice's own name is alice's key ------------------------------------------------

# Another relay, which vouches for mallory's key as alice's: a "note to
# self" it seals with that key must be refused, and what alice sends
# herself must stay unreadable to it.
cat >"$T/self.script" <<EOF
serverkey $T/fake2.key
listen
persona alice $T/mallory.key
accept $((7 * DAY))
deliver alice 0 $(marker forged) a forged note to self
synced
wait ack
eof
accept $((7 * DAY))
wait send
wait bye
EOF
check "a second fake relay listens" fake_start "$T/self.script" || done_testing
alice --json inbox >"$T/self1.json" 2>"$T/self1.err"
is "inbox from the relay that vouches another key for alice: exits 0" 0 $?
is "...showing no message" 0 "$(json_count "$T/self1.json" message)"
is "...refusing the forged note to self as bad_signature" 1 \
	"$(json_count "$T/self1.json" -m reason=bad_signature rejected)"
ok "...pinning nothing for alice" test ! -e "$T/home-alice/peers/127.0.0.1_$FAKE_PORT/alice"
alice send alice "$(marker note) a note to self" >"$T/self2.out" 2>"$T/self2.err"
is "alice sends herself a note through it" 0 $?
bg_wait "$FAKE_PID"
ok "...which the relay cannot open with the key it vouched for" grep -q '^# cannot open send to alice' "$FAKE_OUT"
unlike "...nor read" "$(marker note)" "$(grep -v '^[<>]' "$FAKE_OUT")"
is "scctl fingerprint alice is alice's own key" "$ALICE_FP" "$(alice fingerprint alice)"
alice trust --yes alice >"$T/trust.out" 2>"$T/trust.err"
is "scctl trust alice (herself): EXIT_USAGE" "$EXIT_USAGE" $?

# ---- a lost "accepted": the same envelope again, never a second message ----------------

# The envelopes of the send frames the fake relay got, one per line.
sends() { sed -n 's/^< {"type":"send","id":[0-9]*,"envelope":\(.*\)}$/\1/p' "$FAKE_OUT"; }
cat >"$T/retry.script" <<EOF
serverkey $T/fake4.key
listen
persona bob $T/bob.key
accept $((7 * DAY))
mute on
wait send
close
mute off
accept $((7 * DAY))
wait send
wait bye
EOF
check "a fourth fake relay listens" fake_start "$T/retry.script" || done_testing
alice send bob "$(marker retried) sent once" >"$T/retry1.out" 2>"$T/retry1.err"
is "the connection breaks before accepted: send tries again within --timeout and exits 0" 0 $?
is "...sending two frames" 2 "$(sends | wc -l)"
is "...with the very same envelope" 1 "$(sends | sort -u | wc -l)"
bg_wait "$FAKE_PID"
is "the fake relay ran its whole script" 0 $?

# A script's retry: the first run gives up (the relay is gone), the second,
# with the same key and text, sends what the first one sealed.
printf '%s\n' "serverkey $T/fake4.key" listen "persona bob $T/bob.key" "accept $((7 * DAY))" "mute on" \
	"wait send" close >"$T/retry2.script"
printf '%s\n' "serverkey $T/fake4.key" listen "persona bob $T/bob.key" "accept $((7 * DAY))" \
	"wait send" "wait bye" >"$T/retry3.script"
check "the fourth fake relay again, to break the connection" fake_start "$T/retry2.script" "$FAKE_PORT" ||
	done_testing
"$SCCTL" --server "127.0.0.1:$FAKE_PORT" --user alice --home "$T/home-alice" $SC_NOTLS --timeout 2 \
	send --idempotency-key job-42 bob "$(marker scripted) sent by a script" >"$T/retry2.out" 2>"$T/retry2.err"
ok "a send with --idempotency-key that gets no answer fails" test $? -ne 0
ok "...leaving its envelope in the outbox" test -s "$T/home-alice/outbox/alice/job-42"
bg_wait "$FAKE_PID"
FIRST=$(sends)
check "the fourth fake relay again, to answer" fake_start "$T/retry3.script" "$FAKE_PORT" || done_testing
alice send --idempotency-key job-42 bob "$(marker scripted) sent by a script" >"$T/retry3.out" 2>"$T/retry3.err"
is "the script's retry with the same key exits 0" 0 $?
is "...having sent the first try's envelope again, byte for byte" "$FIRST" "$(sends)"
ok "...(which the first try did send)" test -n "$FIRST"
alice send --idempotency-key job-42 bob "another text" >"$T/retry4.out" 2>"$T/retry4.err"
is "the same key for another text: EXIT_USAGE" "$EXIT_USAGE" $?
like "...saying why" "idempotency key job-42 was used for another message" "$(cat "$T/retry4.err")"
bg_wait "$FAKE_PID"
is "the fake relay ran its whole script" 0 $?

# ---- envelopes that fail the shape checks: refused, acknowledged ----------------------

# A version or suite from the future, and a member missing: each is
# reported as the page names it and acknowledged, so that it leaves the
# queue; the session goes on to the message after them, and the next
# login finds nothing left over.
cat >"$T/shape.script" <<EOF
serverkey $T/fake5.key
listen
persona bob $T/bob.key
accept $((7 * DAY))
frame {"type":"deliver","seq":101,"envelope":{"v":2,"suite":"x","from":"bob","to":"alice","id":"AAAAAAAAAAAAAAAAAAAAAA=="}}
frame {"type":"deliver","seq":102,"envelope":{"v":1,"suite":"rot13","from":"bob","to":"alice","id":"AAAAAAAAAAAAAAAAAAAAAQ=="}}
frame {"type":"deliver","seq":103,"envelope":{"v":1,"suite":"rsa-oaep-sha256+des-ede3-cbc+hmac-sha256","from":"bob","to":"alice"}}
deliver bob 0 $(marker aftershape) after three bad envelopes
synced
wait ack
wait ack
wait ack
wait ack
eof
accept $((7 * DAY))
synced
eof
EOF
check "a fifth fake relay listens" fake_start "$T/shape.script" || done_testing
alice --json inbox >"$T/shape1.json" 2>"$T/shape1.err"
is "inbox with three envelopes that fail the shape checks exits 0" 0 $? || diag "$(cat "$T/shape1.err")"
is "...refusing the one of version 2 as bad_version, naming its sender and id" \
	"bob AAAAAAAAAAAAAAAAAAAAAA==" \
	"$("$SC_JSON" -m reason=bad_version rejected from <"$T/shape1.json") $("$SC_JSON" -m reason=bad_version rejected id <"$T/shape1.json")"
is "...the one of an unknown suite as bad_suite" 1 "$(json_count "$T/shape1.json" -m reason=bad_suite rejected)"
is "...the one without most members as malformed" 1 "$(json_count "$T/shape1.json" -m reason=malformed rejected)"
is "...showing the message after them" "$(marker aftershape) after three bad envelopes" \
	"$("$SC_JSON" -n 1 message text <"$T/shape1.json")"
is "...acknowledging all four" "101 102 103 1" "$(sed -n 's/^# ack //p' "$FAKE_OUT" | tr '\n' ' ' | sed 's/ $//')"
alice --json inbox >"$T/shape2.json" 2>"$T/shape2.err"
is "the next inbox exits 0" 0 $?
bg_wait "$FAKE_PID"
is "the fake relay ran its whole script" 0 $?

# ---- an answer to a request scctl never made: ignored ----------------------------------

# Errors naming ids scctl never used refuse nothing of its, and only an
# error without an id ends a session: the inbox goes on to the message
# after them.
cat >"$T/stray.script" <<EOF
serverkey $T/fake6.key
listen
persona bob $T/bob.key
accept $((7 * DAY))
frame {"type":"error","id":77,"code":"queue_full","message":"not yours"}
frame {"type":"error","id":78,"code":"frobnicated"}
deliver bob 0 $(marker stray) after two stray errors
synced
wait ack
eof
EOF
check "a sixth fake relay listens" fake_start "$T/stray.script" || done_testing
alice --json inbox >"$T/stray.json" 2>"$T/stray.err"
is "inbox past two errors answering requests it never made exits 0" 0 $? || diag "$(cat "$T/stray.err")"
is "...showing the message after them" "$(marker stray) after two stray errors" \
	"$("$SC_JSON" -n 1 message text <"$T/stray.json")"
bg_wait "$FAKE_PID"
is "the sixth fake relay ran its whole script" 0 $?

# A well-formed fingerprint of nobody's key.
STRANGER_FP=SHA256:$(printf 'A%.0s' $(seq 43))

# ---- presence of users nobody watches: not shown --------------------------------------

# Version 2 sends a session events about the users it watches; scctl
# watches its pinned contacts only, and here it has none. Events about
# others are neither shown nor kept (each would be an entry more to search
# at every event after).
cat >"$T/presence.script" <<EOF
serverkey $T/fake7.key
listen
persona bob $T/bob.key
accept $((7 * DAY))
frame {"type":"presence","event":"online","user":"carol","fingerprint":"$STRANGER_FP"}
frame {"type":"presence","event":"online","user":"dave","fingerprint":"$STRANGER_FP"}
frame {"type":"presence","event":"offline","user":"carol"}
deliver bob 0 $(marker presence) after presence of strangers
wait ack
frame {"type":"error","code":"kicked"}
eof
EOF
check "a seventh fake relay listens" fake_start "$T/presence.script" || done_testing
alice --json listen >"$T/presence.json" 2>"$T/presence.err"
is "listen, kicked after presence events about users it does not watch, exits 3" 3 $? ||
	diag "$(cat "$T/presence.err")"
is "...showing none of them" 0 "$(json_count "$T/presence.json" presence)"
is "...and the message after them" "$(marker presence) after presence of strangers" \
	"$("$SC_JSON" -n 1 message text <"$T/presence.json")"
bg_wait "$FAKE_PID"
is "the seventh fake relay ran its whole script" 0 $?

# ---- refused for now: listen tries again ---------------------------------------------

# A relay that is busy (server_busy) or cannot reach its database
# (unavailable) asks to be tried again later, at the login or in a session
# already going: listen connects again, as after a lost connection.
cat >"$T/later.script" <<EOF
serverkey $T/fake8.key
listen
persona bob $T/bob.key
refuse server_busy
eof
accept $((7 * DAY))
frame {"type":"error","code":"unavailable"}
eof
accept $((7 * DAY))
deliver bob 0 $(marker later) after two refusals for now
wait ack
frame {"type":"error","code":"kicked"}
eof
EOF
check "an eighth fake relay listens" fake_start "$T/later.script" || done_testing
alice --json listen >"$T/later.json" 2>"$T/later.err"
is "listen, refused for now twice then kicked, exits 3" 3 $? || diag "$(cat "$T/later.err")"
is "...having connected again after each refusal" 2 "$(grep -c 'Reconnecting' "$T/later.err")"
is "...and shown the message of the third session" "$(marker later) after two refusals for now" \
	"$("$SC_JSON" -n 1 message text <"$T/later.json")"
bg_wait "$FAKE_PID"
is "the eighth fake relay ran its whole script" 0 $?

# ---- a relay that says nothing worth waiting for: inbox's --timeout holds ---------------

# Presence events (here about a user nobody watches), two a second, never
# synced: none of them moves the inbox on, so its --timeout of 2 s ends it
# long before the 12 s of events do.
{
	printf '%s\n' "serverkey $T/fake9.key" listen "persona bob $T/bob.key" "accept $((7 * DAY))"
	for i in $(seq 12); do
		printf '%s\n' "sleep 500" \
			"frame {\"type\":\"presence\",\"event\":\"online\",\"user\":\"carol\",\"fingerprint\":\"$STRANGER_FP\"}" \
			"sleep 500" "frame {\"type\":\"presence\",\"event\":\"offline\",\"user\":\"carol\"}"
	done
	echo eof
} >"$T/trickle.script"
check "a ninth fake relay listens" fake_start "$T/trickle.script" || done_testing
START=$(date +%s)
alice --json inbox --timeout 2 >"$T/trickle.json" 2>"$T/trickle.err"
is "inbox under a trickle of presence events and no synced exits 8" 8 $? || diag "$(cat "$T/trickle.err")"
ok "...before the events end" test $(($(date +%s) - START)) -lt 10
bg_stop "$FAKE_PID"

# ---- accepted, naming another envelope: not a success ---------------------------------

# The relay's accepted names the envelope it stored. One naming another
# than ours says ours was not stored, whatever else it says: send fails
# (status 3) instead of printing queued.
cat >"$T/otherid.script" <<EOF
serverkey $T/fake10.key
listen
persona bob $T/bob.key
accept $((7 * DAY))
mute on
wait send
frame {"type":"accepted","id":2,"msg":"AAAAAAAAAAAAAAAAAAAAAA==","queued":true}
eof
EOF
check "a tenth fake relay listens" fake_start "$T/otherid.script" || done_testing
alice send bob "$(marker otherid) answered with another id" >"$T/otherid.out" 2>"$T/otherid.err"
is "send answered accepted with another envelope's id exits 3" 3 $? || diag "$(cat "$T/otherid.err")"
ok "...saying so" grep -q "with the id of another" "$T/otherid.err"
ok "...printing no queued" test ! -s "$T/otherid.out"
bg_wait "$FAKE_PID"
is "the tenth fake relay ran its whole script" 0 $?

# ---- the seen list: bounded, and never too large to start ------------------------------

SEEN_DB=$T/home-alice/seen/alice.db
rm -f "$SEEN_DB"*
# A list written by an earlier version, too large for it to read back
# (64 MiB): it is imported and removed, not refused.
yes "$(date +%s) bob AQIDBAUGBwgJCgsMDQ4PEA==" | head -c $((65 * 1024 * 1024)) >"$T/home-alice/seen/alice"
cat >"$T/seen.script" <<EOF
serverkey $T/fake3.key
listen
persona bob $T/bob.key
accept $((7 * DAY))
deliver bob 0 $(marker afterbig) after a big list
synced
wait ack
eof
accept $((7 * DAY))
deliver bob 0 $(marker afterfull) after a full list
synced
wait ack
eof
EOF
# Importing 64 MiB takes a while under the sanitizers on a busy machine,
# and the fake relay waits for the ack meanwhile.
FAKE_TIMEOUT=$((SC_WAIT * 4)) check "a third fake relay listens" fake_start "$T/seen.script" || done_testing
alice --timeout $((SC_WAIT * 4)) --json inbox >"$T/seen1.json" 2>"$T/seen1.err"
is "with a 65 MiB list of an earlier version, inbox exits 0" 0 $?
is "...showing the message" "$(marker afterbig) after a big list" \
	"$("$SC_JSON" -n 1 message text <"$T/seen1.json")"
ok "...and the old list is gone" test ! -e "$T/home-alice/seen/alice"
if command -v sqlite3 >/dev/null; then
	# 300000 ids of the last hour, more than the bound of 262144.
	sqlite3 -batch "$SEEN_DB" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
		INSERT INTO seen (sender, id, ts, digest) SELECT 'carol', randomblob(16), $(date +%s) - 3600 + i % 3000, x'' FROM n"
	alice --timeout $((SC_WAIT * 4)) --json inbox >"$T/seen2.json" 2>"$T/seen2.err"
	is "with 300000 ids in the list, inbox exits 0" 0 $?
	is "...showing the message" "$(marker afterfull) after a full list" \
		"$("$SC_JSON" -n 1 message text <"$T/seen2.json")"
	n=$(sqlite3 -batch "$SEEN_DB" "SELECT count(*) FROM seen")
	ok "...and the list is back within its bound ($n entries)" test "$n" -le 262144 -a "$n" -gt 200000
else
	diag "sqlite3 is not installed: skipping the full list"
	alice inbox >/dev/null 2>&1
fi
bg_wait "$FAKE_PID"
is "the fake relay ran its whole script" 0 $?

done_testing
