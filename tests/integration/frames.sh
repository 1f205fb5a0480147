#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A hostile client on the wire (tests/integration/sc-raw): frames that are
# too large, empty, not UTF-8, not JSON, not an object, of no known type,
# before and after authentication; garbage below TLS; silence during the
# handshake and after it. The relay answers bad_frame (or times out),
# closes that connection, and keeps serving everyone else.

SC_SCRIPT=frames
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

MAX_TEXT=2000
# This script opens connection after connection from one address, some
# left to time out: the per-address limits (connection rate, connections
# not logged in) are limits.sh's subject, not this one's.
check "relay starts (handshake-timeout=2s, idle-timeout=3s, max-text=$MAX_TEXT, tls=$SC_TLS)" \
	relay_start -o handshake-timeout=2s -o idle-timeout=3s -o max-text=$MAX_TEXT \
	-o trusted-networks=127.0.0.0/8 || done_testing
ok "alice registers" sc_init alice
ok "bob registers" sc_init bob

raw() { # COMMAND...: sc-raw with each argument a script line
	local a=()
	for c; do a+=(-e "$c"); done
	"$SC_RAW" $SC_RAW_TLS --timeout 15 127.0.0.1 "$SC_PORT" "${a[@]}"
}

n_sent=0
# A normal send still works (the relay is up and serving).
relay_serves() { # DESCRIPTION
	local out
	out=$(sc alice send bob "$(marker after$n_sent) after a bad client" 2>"$T/serves.err")
	is "$1" "0 queued" "$? $out"
	n_sent=$((n_sent + 1))
}

# DESCRIPTION COMMANDS...: after connecting and COMMANDS, the relay closes
# the connection (sc-raw fails if any COMMAND's expectation was not met).
raw_closes() {
	local desc=$1 out rc
	shift
	out=$(raw connect "$@" eof 2>&1)
	rc=$?
	is "$desc" 0 "$rc"
	[ "$rc" -eq 0 ] || diag "$out"
}

# Before authentication: the next frame is error bad_frame, then close.
bad_frame() { # DESCRIPTION COMMANDS...
	local desc=$1
	shift
	raw_closes "$desc: bad_frame, then the relay closes" "expect hello" "$@" "expect error bad_frame"
}

# After authentication (frames like presence may come first).
bad_frame_authenticated() { # DESCRIPTION COMMANDS...
	local desc=$1
	shift
	raw_closes "after auth, $desc: bad_frame, then the relay closes" "key $T/raw.key 2048" \
		"auth mallory send" "expect welcome" "$@" "wait error bad_frame"
}

# ---- before authentication -------------------------------------------------------

bad_frame "length header max-frame + 1 (65537)" "len 65537"
bad_frame "length header 2^31 - 1" "len 0x7fffffff"
bad_frame "zero-length frame" "len 0"
bad_frame "garbage (an HTTP request)" "raw 474554202f20485454502f312e310d0a0d0a"
bad_frame "a frame that is not UTF-8" "raw 0000000affffffffffffffffffff"
bad_frame "invalid JSON in a valid frame" 'frame {"type":"auth",'
bad_frame "JSON that is not an object" 'frame ["type","auth"]'
bad_frame "an object without type" 'frame {"user":"alice"}'
bad_frame "an unknown type" 'frame {"type":"gimme"}'
relay_serves "the relay still serves a normal send"
ok "each was audited (protocol-error, or limit-hit for max-frame)" \
	test "$(relay_count 'event=(protocol-error|limit-hit) ')" -eq 9

# ---- after authentication ------------------------------------------------------------

bad_frame_authenticated "invalid JSON" 'frame {"type":"send","id":1,'
bad_frame_authenticated "length header max-frame + 1" "len 65537"
bad_frame_authenticated "a zero-length frame" "len 0"
bad_frame_authenticated "an unknown type" 'frame {"type":"gimme","id":1}'
raw_closes "a user name that is not valid: bad_username, then the relay closes" \
	"key $T/raw.key" "auth Mallory send" "expect error bad_username"
# alice's public key without her private key: no proof of possession.
spki=$(openssl pkey -in "$T/home-alice/identity/alice.key" -pubout -outform DER | base64 -w0)
nonce=$(head -c 32 /dev/urandom | base64 -w0)
sig=$(head -c 256 /dev/urandom | base64 -w0)
raw_closes "auth as alice with her public key and a made-up signature: auth_failed, then close" \
	"expect hello" \
	"frame {\"type\":\"auth\",\"user\":\"alice\",\"key\":\"$spki\",\"nonce\":\"$nonce\",\"receive\":true,\"sig\":\"$sig\"}" \
	"expect error auth_failed"
# A valid auth frame, recorded, and replayed on a new connection (the
# relay's nonce differs, so its signature no longer verifies).
recorded=$(raw connect "key $T/raw.key" "auth mallory send" "expect welcome" bye 2>/dev/null |
	sed -n 's/^> \({"type":"auth".*\)$/\1/p')
like "a recorded auth frame of mallory's" '^\{"type":"auth","user":"mallory"' "$recorded"
raw_closes "...replayed on a new connection: auth_failed, then close" \
	"expect hello" "frame $recorded" "expect error auth_failed"
ok "the relay logged the failed authentications" \
	test "$(relay_count 'event=handshake-failed .*auth_failed')" -eq 2
relay_serves "the relay still serves a normal send"

# max-text from a raw client. The relay sees only the ciphertext, padded
# to the next multiple of 8 bytes: it refuses what cannot be max-text bytes
# or less (2008 and more, for 2000), and the recipient's client holds the
# exact line (2001 bytes get through the relay, and bob rejects them).
raw_send() { # FILE EXPECTED-ANSWER
	raw connect "key $T/raw.key" "auth mallory send" "expect welcome" "send bob $(cat "$1")" \
		"wait $2" "ping" "wait pong" bye
}
text_of_size rawmax $MAX_TEXT "$T/max"
out=$(raw_send "$T/max" accepted 2>&1)
is "a raw client's envelope of max-text bytes: accepted" 0 $? || diag "$out"
text_of_size rawover $((MAX_TEXT + 1)) "$T/over"
out=$(raw_send "$T/over" accepted 2>&1)
is "...of max-text + 1 bytes: accepted by the relay (same ciphertext size)" 0 $? || diag "$out"
block=$((MAX_TEXT / 8 * 8 + 8))
text_of_size rawblock $block "$T/block"
out=$(raw_send "$T/block" "error too_large" 2>&1)
is "...of $block bytes (more ciphertext than max-text can make): too_large, the session goes on" 0 $? ||
	diag "$out"
sc bob --json inbox >"$T/inbox.json" 2>/dev/null
is "bob's inbox exits 0" 0 $?
is "...with the max-text message from mallory, exactly" "1 $(cat "$T/max")" \
	"$(json_count "$T/inbox.json" -m from=mallory message) $("$SC_JSON" -m from=mallory message text <"$T/inbox.json")"
is "...and the max-text + 1 one rejected as too_large" "too_large" \
	"$("$SC_JSON" -m from=mallory rejected reason <"$T/inbox.json")"
is "...and the $n_sent sends of alice" $n_sent "$(json_count "$T/inbox.json" -m from=alice message)"

# ---- every error that answers a request carries its id -----------------------------------

# A client waits for the answer to its request by id: an error without it
# would leave the request unanswered until the client's timeout.
answered() { # DESCRIPTION ID CODE COMMANDS...
	local desc=$1 id=$2 code=$3 out
	shift 3
	out=$(raw connect "$@" 2>&1)
	like "$desc" "^< \{\"type\":\"error\",\"id\":$id,\"code\":\"$code\"" "$out"
}
answered "lookup of an invalid name: bad_username with the lookup's id" 7 bad_username \
	"key $T/raw.key" "auth mallory send" "expect welcome" \
	'frame {"type":"lookup","id":7,"user":"Not Valid"}' "wait error bad_username" \
	ping "wait pong" bye
# Names of the wrong length too, in watch and unwatch (version 2); a name
# that is not a string is still bad_frame.
out=$(raw connect "key $T/raw.key" "proto 2" "auth mallory send" "expect welcome" \
	'frame {"type":"watch","id":23,"users":["bob",""]}' "wait error bad_username" \
	'frame {"type":"unwatch","id":24,"users":["abcdefghijklmnopqrstuvwxyz0123456"]}' \
	"wait error bad_username" ping "wait pong" bye 2>&1)
is "watch of an empty name, unwatch of a 33-byte one: bad_username, the session goes on" 0 $? ||
	diag "$out"
like "...each answering its request" '"id":23,"code":"bad_username".*"id":24,"code":"bad_username"' \
	"$(echo "$out" | grep '^< {"type":"error"' | tr '\n' ' ')"
answered "watch of a name that is not a string: bad_frame with the watch's id" 25 bad_frame \
	"key $T/raw.key" "proto 2" "auth mallory send" "expect welcome" \
	'frame {"type":"watch","id":25,"users":[7]}' "wait error bad_frame" eof
# A client of protocol version 1 (sc-raw's auth has no "proto") keeps what
# version 1 had, and is refused version 2's frames, with their id; the
# session goes on.
out=$(raw connect "key $T/raw.key" "auth mallory" "expect welcome" "expect presence" \
	'frame {"type":"watch","id":21,"users":["bob"]}' "wait error bad_request" \
	'frame {"type":"who","id":22}' "wait error bad_request" ping "wait pong" bye 2>&1)
is "a version 1 session: the online list after welcome, watch and who refused" 0 $? || diag "$out"
like "...the list carries key packages" '^< \{"type":"presence","users":\[\{"user":"[a-z]+","key":' "$out"
like "...the refusals answer the requests" '"id":22,"code":"bad_request"' "$out"
answered "lookup whose user is not a string: bad_frame with the lookup's id" 8 bad_frame \
	"key $T/raw.key" "auth mallory send" "expect welcome" \
	'frame {"type":"lookup","id":8,"user":12}' "wait error bad_frame" eof
answered "send with a malformed envelope: bad_frame with the send's id" 9 bad_frame \
	"key $T/raw.key" "auth mallory send" "expect welcome" \
	'frame {"type":"send","id":9,"envelope":{"v":1}}' "wait error bad_frame" eof
answered "lookup before auth: bad_request with the lookup's id" 10 bad_request \
	"expect hello" 'frame {"type":"lookup","id":10,"user":"alice"}' "expect error bad_request" eof
relay_serves "the relay still serves a normal send"

# ---- acks -------------------------------------------------------------------------------

# An ack of a seq queued for someone else deletes nothing; an ack of one's
# own message that is already gone (acked twice, or expired between
# deliver and ack) is not an error: an error without id would end a
# well-behaved client's session.
out=$(sc alice send mallory "$(marker tomallory) for mallory" 2>/dev/null)
is "alice sends mallory a message" "0 queued" "$? $out"
out=$(sc alice send bob "$(marker notmallory) for bob" 2>/dev/null)
is "alice sends bob a message" "0 queued" "$? $out"
seq_m=$(db "SELECT max(seq) FROM ${SC_TBL}queue WHERE recipient = 'mallory'")
seq_b=$(db "SELECT max(seq) FROM ${SC_TBL}queue WHERE recipient = 'bob'")
out=$(raw connect "key $T/raw.key" "auth mallory" "expect welcome" "wait synced" "ack $seq_b" \
	"wait error bad_request" "ack $seq_m" "ack $seq_m" ping "expect pong" bye 2>&1)
is "mallory acks bob's seq (refused), then his own twice: the second is ignored" 0 $? || diag "$out"
is "...bob's message is still queued" 1 "$(db "SELECT count(*) FROM ${SC_TBL}queue WHERE seq = $seq_b")"
is "...mallory's is gone" 0 "$(db "SELECT count(*) FROM ${SC_TBL}queue WHERE seq = $seq_m")"

# ---- duplicate JSON members -------------------------------------------------------------

# json-c keeps the last of two members of the same name without a word; the
# page says strict JSON, so the relay refuses them, in envelopes too.
bad_frame_authenticated "a duplicate member" 'frame {"type":"ping","type":"ping"}'
recorded=$(raw connect "key $T/raw.key" "auth mallory send" "expect welcome" "send bob $(marker dup) x" \
	"wait accepted" bye 2>/dev/null | sed -n 's/^> \({"type":"send".*\)$/\1/p')
like "a recorded send frame of mallory's" '^\{"type":"send".*"envelope":\{"v":1,' "$recorded"
raw_closes "...sent again with the envelope's v twice: bad_frame, then close" \
	"key $T/raw.key" "auth mallory send" "expect welcome" \
	"frame ${recorded/\"v\":1,/\"v\":1,\"v\":1,}" "wait error bad_frame"
raw_closes "...and with the send's id twice: bad_frame, then close" \
	"key $T/raw.key" "auth mallory send" "expect welcome" \
	"frame ${recorded/\"id\":/\"id\":5,\"id\":}" "wait error bad_frame"

# ---- the same message id again ----------------------------------------------------------

# A client that lost "accepted" sends the same envelope again: the relay
# answers accepted again and keeps one copy; another envelope under that
# id is refused, with the send's id.
msg=$(sed -n 's/.*"envelope":{[^}]*"id":"\([^"]*\)".*/\1/p' <<<"$recorded")
out=$(raw connect "key $T/raw.key" "auth mallory send" "expect welcome" "frame $recorded" "wait accepted" bye 2>&1)
is "the same send frame again: accepted again" 0 $? || diag "$out"
is "...and stored once" 1 "$(db "SELECT count(*) FROM ${SC_TBL}queue WHERE sender = 'mallory' AND msg_id = '$msg'")"
# The relay stores an envelope as the bytes received when they are json-c's
# own text of it, as from sc-raw, and serializes it otherwise: spelled with
# escapes and white space, the same envelope is the same text, a retry.
envelope=$(sed -n 's/.*"envelope":\({.*}\)}$/\1/p' <<<"$recorded")
is "...stored as the bytes sent" "$envelope" \
	"$(db "SELECT envelope FROM ${SC_TBL}queue WHERE sender = 'mallory' AND msg_id = '$msg'")"
respelled=${recorded//\//\\/}
respelled=${respelled//\",\"/\", \"}
respelled=${respelled/\"from\":\"mallory\"/\"from\":\"\\u006dallory\"}
like "...respelled: escapes and spaces in the envelope" '"from":"\\u006dallory", "to"' "$respelled"
out=$(raw connect "key $T/raw.key" "auth mallory send" "expect welcome" "frame $respelled" "wait accepted" bye 2>&1)
is "...sent so: accepted again" 0 $? || diag "$out"
is "...still stored once, as it was" "1 $envelope" \
	"$(db "SELECT count(*), min(envelope) FROM ${SC_TBL}queue WHERE sender = 'mallory' AND msg_id = '$msg'" | tr '|' ' ')"
ts=$(sed -n 's/.*"ts":\([0-9]*\).*/\1/p' <<<"$recorded")
answered "another envelope under the same message id: bad_request with the send's id" \
	"$(sed -n 's/^{"type":"send","id":\([0-9]*\).*/\1/p' <<<"$recorded")" bad_request \
	"key $T/raw.key" "auth mallory send" "expect welcome" "frame ${recorded/\"ts\":$ts/\"ts\":$((ts - 1))}" \
	"wait error bad_request" ping "wait pong" bye
is "...which is not stored" 1 "$(db "SELECT count(*) FROM ${SC_TBL}queue WHERE sender = 'mallory' AND msg_id = '$msg'")"

# ---- below the protocol -----------------------------------------------------------------

# A client that expects the other transport fails to connect, at once: a
# TLS client cannot read the relay's plain hello; a --no-tls client, met
# with silence, asks on a second connection with a ClientHello and sees a
# TLS record come back.
if [ "$SC_TLS" = yes ]; then other="--no-tls"; else other=""; fi
t0=$(now_ms)
"$SCCTL" --server "127.0.0.1:$SC_PORT" --user alice --home "$T/home-alice" --timeout 20 \
	$other users >"$T/mismatch.out" 2>"$T/mismatch.err"
is "a client with${other:+out} TLS against this relay: EXIT_CONNECT" "$EXIT_CONNECT" $?
took=$(($(now_ms) - t0))
ok "...within 5 s, not the 20 s of --timeout (${took} ms)" test "$took" -lt 5000
if [ "$SC_TLS" = yes ]; then
	like "...saying that the relay speaks TLS and what to do" \
		"The relay at 127\\.0\\.0\\.1:$SC_PORT speaks TLS .*connect without --no-tls" "$(cat "$T/mismatch.err")"
else
	like "...saying what to do" "use --no-tls" "$(cat "$T/mismatch.err")"
fi

if [ "$SC_TLS" = no ]; then
	ok "the relay warns that TLS is off" grep -q "TLS is off" "$SC_RELAY_LOG"
	# The same, without sc-raw (which shares its frame code with the
	# relay): a length header of max-frame + 1 written with bash.
	if exec 8<>"/dev/tcp/127.0.0.1/$SC_PORT"; then
		printf '\000\001\000\001' >&8
		timeout 20 cat <&8 >"$T/devtcp.out"
		exec 8>&-
		ok "bytes from bash's /dev/tcp: hello, then error bad_frame, then close" \
			grep -aq '"type":"hello".*"type":"error","code":"bad_frame"' "$T/devtcp.out"
	else
		ok "connect with bash's /dev/tcp" false
	fi
else
	out=$("$SC_RAW" --timeout 15 127.0.0.1 "$SC_PORT" -e connect -e 'frame {"type":"auth"}' -e eof 2>&1)
	is "a plain-text frame to the TLS port: the relay closes without a frame" '0 > {"type":"auth"}' "$? $out"
	ok "...logging a failed TLS handshake" grep -q "event=handshake-failed" "$SC_RELAY_LOG"
	if command -v gnutls-cli >/dev/null; then
		timeout 20 gnutls-cli --insecure --port "$SC_PORT" 127.0.0.1 </dev/null >"$T/gnutls.out" 2>&1
		ok "gnutls-cli negotiates TLS 1.3 with the relay" grep -aq "Description: (TLS1\.3" "$T/gnutls.out"
	fi
fi
relay_serves "the relay still serves a normal send"

# ---- silence ----------------------------------------------------------------------------------

timeouts=$(relay_count 'event=handshake-failed .*timeout')
start=$(now_ms)
out=$(raw connect "expect hello" "expect error timeout" eof 2>&1)
rc=$?
elapsed=$(( $(now_ms) - start ))
is "silent after hello: error timeout, then closed" 0 $rc
ok "...after the handshake-timeout of 2 s, within 10 s ($elapsed ms)" \
	test "$elapsed" -ge 1500 -a "$elapsed" -lt 10000

if [ "$SC_TLS" = yes ]; then
	start=$(now_ms)
	out=$("$SC_RAW" --timeout 15 127.0.0.1 "$SC_PORT" -e connect -e eof 2>&1)
	rc=$?
	elapsed=$(( $(now_ms) - start ))
	is "silent from the first byte (no TLS ClientHello): closed" "0 " "$rc $out"
	ok "...after the handshake-timeout of 2 s, within 10 s ($elapsed ms)" \
		test "$elapsed" -ge 1500 -a "$elapsed" -lt 10000
fi

start=$(now_ms)
out=$(raw connect "key $T/raw.key" "auth mallory send" "expect welcome" "wait error timeout" eof 2>&1)
rc=$?
elapsed=$(( $(now_ms) - start ))
is "silent after welcome: error timeout, then closed" 0 $rc
ok "...after the idle-timeout of 3 s, within 10 s ($elapsed ms)" \
	test "$elapsed" -ge 2500 -a "$elapsed" -lt 10000
is "the relay logged the handshake timeouts" $((timeouts + $([ "$SC_TLS" = yes ] && echo 2 || echo 1))) \
	"$(relay_count 'event=handshake-failed .*timeout')"
ok "...and the idle one" grep -Eq 'event=session-end user=mallory .*reason="?timeout' "$SC_RELAY_LOG"

# welcome.limits announces idle-timeout, and scctl pings within a third of
# it: a quiet listen must outlive the 3 s timeout without reconnecting.
check "keeper registers" sc_init keeper
if listen_start keeper "$T/keeper.json"; then
	keeper=$SC_BG
	sleep 8         # the absence of a timeout over 8 s is what is tested
	is "a quiet listen outlives idle-timeout=3s: still one login" 1 "$(receiving_logins keeper)"
	is "...its session never timed out" 0 "$(relay_count 'event=session-end user=keeper .*reason="?timeout')"
	bg_stop "$keeper"
else
	tap_result 1 "keeper's listen logged in"
fi

relay_serves "after all that, the relay still serves a normal send"
ok "...and is still running" relay_alive

check_privacy "$T/inbox.json"
relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
