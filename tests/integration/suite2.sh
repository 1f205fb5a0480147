#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Suite 2 through the real programs: prekeys published at login, alice to
# bob offline and online in a ratchet, both ways; forward secrecy shown
# with an attacker (sc-s2open) who gets bob's identity key and state
# directory after bob received and rotated, and opens none of the recorded
# envelopes, while the same attacker with the directory as it was before
# opens them all; two senders of one user at once; one-time prekeys used
# up (the SPK alone); an SPK rotated while messages sealed to it wait at
# the relay; suite-1 messages queued before the recipient
# published; a relay that strips prekeys, warned about and, with
# require-suite2=, refused.

SC_SCRIPT=suite2
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99
SC_S2OPEN=$SC_BUILDDIR/tests/integration/sc-s2open

# At most 3 OPKs per user, so that using them up takes few lookups.
check "relay starts (max-prekeys=3, tls=$SC_TLS)" relay_start -o max-prekeys=3 || done_testing
for u in alice bob carol erin; do
	ok "$u registers" sc_init "$u"
done

# The relay's stored envelopes to USER, one JSON per line (relay stopped).
queued_for() { # USER
	db "SELECT envelope FROM ${SC_TBL}queue WHERE recipient = '$1' ORDER BY seq"
}

# scctl prekeys --json as USER [with more options]; the FIELD of its line.
prekeys_field() { # USER FIELD [ARGS...]
	local user=$1 field=$2
	shift 2
	sc "$user" --json prekeys "$@" 2>"$T/prekeys.err" | "$SC_JSON" -n 1 prekeys "$field"
}

is "bob's first login publishes an SPK and as many OPKs as the relay keeps" 3 \
	"$(prekeys_field bob opks_at_relay)"
is "...and keeps their private halves" 3 "$(prekeys_field bob opk_private_keys)"

# ---- offline, then forward secrecy -------------------------------------------------

# Send TEXT from USER to PEER; print "STATUS OUTPUT".
send() { # USER PEER TEXT [SCCTL-OPTIONS...]
	local user=$1 peer=$2 text=$3 out
	shift 3
	out=$(sc "$user" "$@" send "$peer" "$text" 2>>"$T/send.err")
	echo "$? $out"
}

for i in 1 2 3; do
	printf '%s offline message %s' "$(marker off$i)" $i >"$T/m$i"
	is "alice -> bob offline: message $i queued" "0 queued" "$(send alice bob "$(cat "$T/m$i")")"
done
relay_stop
queued_for bob >"$T/recorded"
is "the relay holds 3 suite-2 envelopes for bob" 3 \
	"$(grep -c '"suite":"x25519-ratchet+des-ede3-cbc+hmac-sha256"' "$T/recorded")"
check "relay restarts" relay_start -o max-prekeys=3 || done_testing
cp -a "$T/home-bob" "$T/bob-before"

sc bob --json inbox >"$T/inbox1.json" 2>"$T/inbox1.err"
is "bob's inbox exits 0" 0 $?
for i in 1 2 3; do
	json_text "$T/inbox1.json" $i "$T/got$i"
	ok "...message $i arrived, exactly" cmp -s "$T/m$i" "$T/got$i"
done
is "...and nothing was refused" 0 "$("$SC_JSON" -c rejected <"$T/inbox1.json")"

printf 'prekey-retention=0\n' >"$T/bob.conf"
is "bob rotates his SPK with prekey-retention=0" 0 \
	"$(sc bob --config "$T/bob.conf" prekeys rotate >/dev/null 2>"$T/rotate.err"; echo $?)"
is "...and keeps no replaced SPK" 0 "$(prekeys_field bob retired_spks_kept --config "$T/bob.conf")"

alice_pkg=$(echo "$T"/home-bob/peers/*/alice)
attack() { # HOME
	"$SC_S2OPEN" "$1" bob "$alice_pkg" <"$T/recorded" 2>>"$T/attack.err" | tail -n 1
}
is "control: with bob's directory as it was before, the attacker opens all 3" "opened 3 of 3" \
	"$(attack "$T/bob-before")"
is "with bob's identity key and directory now, the attacker opens none" "opened 0 of 3" \
	"$(attack "$T/home-bob")"
[ -s "$T/attack.err" ] && diag "the attacker's complaints:" "$(head -n 20 "$T/attack.err")"

# ---- online, both ways ---------------------------------------------------------------

listen_start bob "$T/listen.json" || done_testing
bob_listen=$SC_BG
printf '%s online' "$(marker online)" >"$T/on"
is "alice -> bob online: delivered" "0 delivered" "$(send alice bob "$(cat "$T/on")")"
wait_json "$T/listen.json" 1 message
json_text "$T/listen.json" 1 "$T/goton"
ok "...bob's listen shows it" cmp -s "$T/on" "$T/goton"

# Two senders of one user at once: both advance alice's one ratchet.
sc alice send bob "parallel one" >/dev/null 2>"$T/p1.err" &
p1=$!
sc alice send bob "parallel two" >/dev/null 2>"$T/p2.err" &
p2=$!
wait $p1
r1=$?
wait $p2
is "two scctl send of alice at once both succeed" "0 0" "$r1 $?"
wait_json "$T/listen.json" 3 message
is "...bob got both" 2 "$(grep -c 'parallel' "$T/listen.json")"
is "...and refused nothing" 0 "$("$SC_JSON" -c rejected <"$T/listen.json")"

is "bob -> alice in the same session" "0 queued" "$(send bob alice "back to you")"
sc alice --json inbox >"$T/alice.json" 2>"$T/alice.err"
is "...alice opens it" "back to you" "$("$SC_JSON" -n 1 message text <"$T/alice.json")"

ok "alice's users --json: bob gets suite 2" grep -q '"user":"bob","fingerprint":"[^"]*","suite":2' \
	<(sc alice --json users 2>/dev/null)
ok "...carol's, who never wrote to bob: suite 1 as far as she knows" \
	grep -q '"user":"bob","fingerprint":"[^"]*","suite":1' <(sc carol --json users 2>/dev/null)
BOB_FP=$(sc bob fingerprint 2>/dev/null)
is "alice's users in words: bob in suite 2" "bob  $BOB_FP  suite 2 (forward secrecy)" \
	"$(sc alice users 2>/dev/null | grep '^bob ')"
is "alice's fingerprint bob: his key, then suite 2" "$BOB_FP suite 2 (forward secrecy)" \
	"$(sc alice fingerprint bob 2>/dev/null | xargs)"
is "...and in --json" 2 "$(sc alice --json fingerprint bob 2>/dev/null | "$SC_JSON" -n 1 fingerprint suite)"
is "carol's fingerprint bob, who never looked his prekeys up: suite 1 so far" \
	"suite 1 (no forward secrecy: no prekeys of bob's seen yet)" \
	"$(sc carol fingerprint bob 2>/dev/null | sed -n 2p)"
is "bob's own fingerprint is one line, without a suite" "$BOB_FP" "$(sc bob fingerprint bob 2>/dev/null)"

# ---- kill -9 between opening and acknowledging ----------------------------------

# bob's listen writes into a FIFO nobody reads: once its buffer is full,
# listen blocks showing a message whose new state and text are committed
# (the store's pending row) but which is not acknowledged. Killed there,
# the next receiver must show that message, once, and every message must
# show exactly once overall.
bg_stop "$bob_listen"
mkfifo "$T/fifo"
exec 7<>"$T/fifo"
before=$(receiving_logins bob)
sc_argv bob
"${SC_ARGV[@]}" --json listen >"$T/fifo" 2>"$T/crash.err" &
crash_pid=$!
wait_until count_above "$before" receiving_logins bob
for i in 1 2 3 4 5 6 7 8; do
	text_of_size "crash$i" 12000 "$T/c$i"
	send alice bob "$(cat "$T/c$i")" >/dev/null
done
pending() { [ "$(sqlite3 "$T/home-bob/ratchet/bob.db" "SELECT count(*) FROM pending")" = 1 ]; }
ok "listen blocks on a full pipe with one message opened and kept" wait_until pending
kill -9 "$crash_pid"
wait "$crash_pid" 2>/dev/null
timeout 2 cat <&7 >"$T/shown"
exec 7>&-
sc bob --json inbox >"$T/after.json" 2>"$T/after.err"
is "the inbox after the crash exits 0" 0 $?
once=0
for i in 1 2 3 4 5 6 7 8; do
	n=$(( $(grep -c "$(marker crash$i)" "$T/shown") + $(grep -c "$(marker crash$i)" "$T/after.json") ))
	[ "$n" = 1 ] && once=$((once + 1))
done
is "every one of the 8 messages was shown exactly once, across the crash" 8 "$once"
is "...none refused" 0 "$("$SC_JSON" -c rejected <"$T/after.json")"
ok "...and no opened text is left in the store" \
	test "$(sqlite3 "$T/home-bob/ratchet/bob.db" "SELECT count(*) FROM pending")" = 0
listen_start bob "$T/listen.json" || done_testing
bob_listen=$SC_BG

# ---- a burst, sealed and opened in batches --------------------------------------

# While bob is away, alice's connect queues 100 messages; bob's next listen
# gets them in a burst at login and opens the deliveries of each read as
# one batch (one transaction of his ratchet store). Each is shown once, in
# order. No message rate meanwhile: a rate_limited answer is retried, which
# may reorder.
bg_stop "$bob_listen"
relay_stop
check "relay restarts without a message rate" relay_start -o max-prekeys=3 -o message-rate=0 ||
	done_testing
burst_lines() { # NAME N: N lines "bob:MARKER" of NAME1..NAMEN
	local i
	for ((i = 1; i <= $2; i++)); do
		printf 'bob:%s\n' "$(marker "$1$i")"
	done
}
burst_lines burst 100 >"$T/burst.in"
is "alice's connect queues 100 messages for bob" 0 \
	"$(SECURECHAT_DEBUG=1 sc alice connect <"$T/burst.in" >/dev/null 2>"$T/burst.err"; echo $?)"
# Read at once, they are sealed in batches: one transaction of her ratchet
# store each, committed before any of them leaves.
ok "...sealing several as one batch" grep -q 'Sealed [0-9]* messages as one batch' "$T/burst.err"
# With 64 in flight, a slot freed by an answer waits until a batch fits,
# rather than sealing the rest one by one (which gave 64 of 100).
ok "...nearly all of them in batches" \
	test "$(grep -o 'Sealed [0-9]* messages' "$T/burst.err" | awk '{ n += $2 } END { print n + 0 }')" -ge 90
SECURECHAT_DEBUG=1 listen_start bob "$T/burst.json" || done_testing
ok "bob's listen shows 100 messages" wait_json "$T/burst.json" 100 message
bg_stop "$SC_BG"
is "...each once, in order" "$(sed 's/^bob://' "$T/burst.in")" \
	"$("$SC_JSON" message text <"$T/burst.json")"
is "...none refused" 0 "$("$SC_JSON" -c rejected <"$T/burst.json")"
ok "...several opened as one batch" grep -q 'Opened [0-9]* deliveries as one batch' "$T/burst.json.err"

# kill -9 in the middle of a burst: bob's listen writes into a FIFO nobody
# reads, and blocks once it is full, showing a message of a batch whose
# texts are all kept (100 texts of 2000 bytes do not fit). Across that run
# and the next every message is shown exactly once, in order.
for ((i = 1; i <= 100; i++)); do
	text_of_size "kill$i" 2000 "$T/k"
	printf 'bob:%s\n' "$(cat "$T/k")"
done >"$T/kill.in"
is "alice's connect queues 100 longer messages for bob" 0 \
	"$(sc alice connect <"$T/kill.in" >/dev/null 2>"$T/kill.err"; echo $?)"
mkfifo "$T/fifo2"
exec 8<>"$T/fifo2"
sc_argv bob
"${SC_ARGV[@]}" --json listen >"$T/fifo2" 2>"$T/kill-listen.err" &
kill_pid=$!
# Blocked writing (where the kernel says so), with texts kept.
blocked() {
	local wchan
	wchan=$(cat "/proc/$kill_pid/wchan" 2>/dev/null)
	case $wchan in
	*pipe_write*) ;;
	"") ;;          # not told: the texts kept will do
	*) return 1 ;;  # "0" is running: maybe between a line and its seen record
	esac
	[ "$(sqlite3 "$T/home-bob/ratchet/bob.db" "SELECT count(*) FROM pending")" -gt 0 ]
}
ok "listen blocks on a full pipe in the middle of the burst, texts kept" wait_until blocked
kill -9 "$kill_pid"
wait "$kill_pid" 2>/dev/null
timeout 2 cat <&8 >"$T/kill1"
exec 8>&-
# Whole lines only: the kill cut the one being written.
head -n "$(wc -l <"$T/kill1")" "$T/kill1" >"$T/kill1.json"
ok "...after some messages were shown" test "$("$SC_JSON" -c message <"$T/kill1.json")" -gt 0
sc bob --json inbox >"$T/kill2.json" 2>"$T/kill2.err"
is "the inbox after the crash exits 0" 0 $?
burst_markers() { # FILE...: the markers of the messages shown, in order
	local f
	for f; do
		"$SC_JSON" message text <"$f" | cut -d ' ' -f 1
	done
}
is "every message of the burst was shown exactly once, in order, across the crash" \
	"$(for ((i = 1; i <= 100; i++)); do marker "kill$i"; echo; done)" \
	"$(burst_markers "$T/kill1.json" "$T/kill2.json")"
is "...none refused" 0 "$("$SC_JSON" -c rejected <"$T/kill2.json")" ||
	diag "$(grep rejected "$T/kill2.json" | head -n 5)"
ok "...and no opened text is left in the store" \
	test "$(sqlite3 "$T/home-bob/ratchet/bob.db" "SELECT count(*) FROM pending")" = 0
relay_stop
check "relay restarts (max-prekeys=3)" relay_start -o max-prekeys=3 || done_testing
listen_start bob "$T/listen.json" || done_testing
bob_listen=$SC_BG

# ---- one-time prekeys used up ------------------------------------------------------

# bob's logins topped his OPKs up to the relay's 3. Each sender without a
# session uses one; with none left the next one gets the SPK alone.
bg_stop "$bob_listen"
is "carol -> bob" "0 queued" "$(send carol bob "from carol")"
is "erin -> bob" "0 queued" "$(send erin bob "from erin")"
for i in 1 2; do
	sqlite3 "$T/home-carol/ratchet/carol.db" "DELETE FROM session"
	is "carol again, her session lost ($i)" "0 queued" "$(send carol bob "carol again $i")"
done
relay_stop
is "the relay has no OPK of bob's left: the last message started on the SPK alone" 0 \
	"$(db "SELECT count(*) FROM ${SC_TBL}one_time_prekeys WHERE name = 'bob'")"
check "relay restarts" relay_start -o max-prekeys=3 || done_testing
sc bob --json inbox >"$T/inbox2.json" 2>"$T/inbox2.err"
is "bob reads all four" 4 "$("$SC_JSON" -c message <"$T/inbox2.json")"
is "...refusing none" 0 "$("$SC_JSON" -c rejected <"$T/inbox2.json")"

# ---- SPK rotation while messages are queued --------------------------------------

# alice loses her session with bob, so that her next messages start a new
# one on bob's current SPK; while they wait at the relay bob replaces that
# SPK with the default prekey-retention=, which keeps its private half.
# bob must still open every one of them, once.
spk_before=$(prekeys_field bob spk_id)
sqlite3 "$T/home-alice/ratchet/alice.db" "DELETE FROM session"
for i in 1 2 3 4; do
	printf '%s queued across a rotation %s' "$(marker rot$i)" $i >"$T/r$i"
	is "alice -> bob offline, a new session: message $i queued" "0 queued" \
		"$(send alice bob "$(cat "$T/r$i")")"
done
is "bob rotates his SPK with the default retention" 0 \
	"$(sc bob prekeys rotate >/dev/null 2>"$T/rotate2.err"; echo $?)"
ok "...accepted by the relay as a whole, with no warning (the login's top-up counted)" \
	test ! -s "$T/rotate2.err"
ok "...to a new SPK" test "$(prekeys_field bob spk_id)" != "$spk_before"
ok "...keeping the replaced one" test "$(prekeys_field bob retired_spks_kept)" -ge 1
sc bob --json inbox >"$T/inbox3.json" 2>"$T/inbox3.err"
is "bob's inbox after the rotation exits 0" 0 $?
for i in 1 2 3 4; do
	json_text "$T/inbox3.json" $i "$T/gotr$i"
	ok "...message $i sealed to the old SPK arrived, exactly" cmp -s "$T/r$i" "$T/gotr$i"
done
is "...4 messages, none refused" "4 0" \
	"$("$SC_JSON" -c message <"$T/inbox3.json") $("$SC_JSON" -c rejected <"$T/inbox3.json")"
is "...and none comes again" "0 0" \
	"$(sc bob --json inbox 2>/dev/null | "$SC_JSON" -c message) $?"

# ---- suite 1 before prekeys; a relay that strips them ----------------------------

ok "dave registers" sc_init dave
is "alice -> dave, who never published: queued" "0 queued" "$(send alice dave "suite one")"
relay_stop
is "...in suite 1" 1 "$(queued_for dave | grep -c '"suite":"rsa-oaep')"
check "relay restarts" relay_start -o max-prekeys=3 || done_testing
is "alice's fingerprint dave says suite 1, dave having published no prekeys" \
	"suite 1 (no forward secrecy: no prekeys of dave's seen yet)" "$(sc alice fingerprint dave 2>/dev/null | sed -n 2p)"
is "...and --json says suite 1" 1 "$(sc alice --json fingerprint dave 2>/dev/null | "$SC_JSON" -n 1 fingerprint suite)"
sc dave --json inbox >"$T/dave.json" 2>"$T/dave.err"
is "dave opens the suite-1 message after upgrading" "suite one" "$("$SC_JSON" -n 1 message text <"$T/dave.json")"

printf 'require-suite2=yes\n' >"$T/strict.conf"
sqlite3 "$T/home-erin/ratchet/erin.db" "DELETE FROM session"
relay_stop
db "DELETE FROM ${SC_TBL}signed_prekeys WHERE name = 'bob'; DELETE FROM ${SC_TBL}one_time_prekeys WHERE name = 'bob'"
check "relay restarts" relay_start -o max-prekeys=3 || done_testing
# The relay would have bob publish again at his next login: strip before
# any, and send from erin, who had a bundle for bob before.
out=$(sc erin --config "$T/strict.conf" send bob "must not go in suite 1" 2>&1)
is "require-suite2=yes: refused with exit status 6" 6 $?
contains "...saying why" "no prekeys for bob" "$out"
out=$(sc erin send bob "goes in suite 1" 2>&1)
is "without it: sent" 0 $?
contains "...with a warning that bob had prekeys before" "although it did before" "$out"

printf 'prekey-retention=forever\n' >"$T/bad.conf"
out=$(sc erin --config "$T/bad.conf" prekeys 2>&1)
is "a bad prekey-retention= is a usage error" 2 $?
contains "...naming the key" "prekey-retention=" "$out"

relay_stop
done_testing
