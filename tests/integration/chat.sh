#!/bin/bash
# SPDX-License-Identifier: MIT
#
# alice and bob chat through a real relay: registration, presence, send ->
# listen with the exact text (ASCII, multi-byte UTF-8, text of exactly
# max-text bytes, text from stdin), max-text + 1 refused, a connect
# session driven through a pipe, receipts with send --wait.

SC_SCRIPT=chat
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

MAX_TEXT=2000

check "relay starts (max-text=$MAX_TEXT, tls=$SC_TLS)" relay_start -o max-text=$MAX_TEXT || done_testing
S=127.0.0.1:$SC_PORT

ok "alice registers" sc_init alice
like "init says where and with which key" "^alice is registered at $S with key SHA256:[A-Za-z0-9+/]{43}\$" \
	"$(grep -v '^scctl:' "$T/init-alice.out")"
ok "bob registers" sc_init bob
ALICE_FP=$(sc alice fingerprint)
BOB_FP=$(sc bob fingerprint)
like "fingerprint prints the own key's fingerprint" '^SHA256:[A-Za-z0-9+/]{43}$' "$BOB_FP"

# ---- presence ---------------------------------------------------------------

# listen follows the presence of the users whose keys are pinned (the
# roster model of protocol version 2): bob pins alice's, not carol's.
is "bob pins alice's key" "$ALICE_FP" "$(sc bob fingerprint alice 2>/dev/null | sed -n 1p)"
ok "carol registers" sc_init carol
check "bob listens" listen_start bob "$T/bob.json"
BOB=$SC_BG
is "users shows bob online, with his fingerprint and suite 1 (alice never looked his prekeys up)" \
	"bob  $BOB_FP  suite 1 (no forward secrecy)" "$(sc alice users 2>/dev/null)"

check "carol listens" listen_start carol "$T/carol.json"
CAROL=$SC_BG
check "alice listens too" listen_start alice "$T/alice.json"
ALICE=$SC_BG
ok "bob's listen --json shows alice coming online" \
	wait_json "$T/bob.json" 1 -m event=online -m user=alice presence
is "...with alice's fingerprint" "$ALICE_FP" \
	"$("$SC_JSON" -m event=online -m user=alice presence fingerprint <"$T/bob.json")"
bg_stop "$ALICE"
is "alice's listen exits 0 on SIGTERM" 0 $?
ok "bob's listen --json shows alice going offline" \
	wait_json "$T/bob.json" 1 -m event=offline -m user=alice presence
bg_stop "$CAROL"
is "...and nothing of carol, whom bob does not follow" 0 \
	"$(json_count "$T/bob.json" -m user=carol presence)"
is "users shows bob alone again" "bob  $BOB_FP  suite 1 (no forward secrecy)" "$(sc alice users 2>/dev/null)"

# ---- send -> listen, exact text -------------------------------------------------

n=0
# Send FILE's content as one argument and check that bob printed exactly
# that text as his next message.
send_and_compare() { # DESCRIPTION FILE
	local out rc
	out=$(sc alice send bob "$(cat "$2")" 2>"$T/send.err")
	rc=$?
	is "$1: send exits 0 and says delivered" "0 delivered" "$rc $out"
	n=$((n + 1))
	wait_json "$T/bob.json" $n message
	json_text "$T/bob.json" $n "$T/got.$n"
	ok "$1: bob received exactly the text" cmp "$2" "$T/got.$n"
}

printf '%s hello bob, plain ASCII: !"#$%%&'\''()*+,-./:;<=>?@[\\]^_`{|}~' "$(marker ascii)" >"$T/ascii"
send_and_compare "ASCII" "$T/ascii"

printf '%s Grüße, 日本語, Ελληνικά, emoji 🎉🔐👍🏽 and ✓' "$(marker unicode)" >"$T/unicode"
send_and_compare "unicode (2-, 3- and 4-byte UTF-8)" "$T/unicode"
is "the message names its sender and recipient" "alice bob" \
	"$("$SC_JSON" -n $n message from <"$T/bob.json") $("$SC_JSON" -n $n message to <"$T/bob.json")"

text_of_size max $MAX_TEXT "$T/max"
is "test text is $MAX_TEXT bytes" $MAX_TEXT "$(wc -c <"$T/max" | tr -d ' ')"
send_and_compare "exactly max-text ($MAX_TEXT) bytes" "$T/max"

text_of_size over $((MAX_TEXT + 1)) "$T/over"
sc alice send bob "$(cat "$T/over")" >"$T/over.out" 2>"$T/over.err"
is "max-text + 1 bytes: refused with EXIT_REFUSED" $EXIT_REFUSED $?
like "...saying why" "$((MAX_TEXT + 1)) bytes; the relay takes at most $MAX_TEXT" "$(cat "$T/over.err")"
is "...and printing no result" "" "$(cat "$T/over.out")"

# Text from standard input, several lines, a tab, a trailing newline that
# is dropped (as echo adds one).
{
	printf '%s first line\n' "$(marker stdin)"
	printf '\tsecond line, indented with a tab\n\nfourth line after an empty one\n'
} >"$T/stdin.in"
head -c -1 "$T/stdin.in" >"$T/stdin.expected"
out=$(sc alice send bob - <"$T/stdin.in" 2>"$T/send.err")
is "text from stdin (send bob -): delivered" "0 delivered" "$? $out"
n=$((n + 1))
wait_json "$T/bob.json" $n message
json_text "$T/bob.json" $n "$T/got.$n"
ok "...bob received exactly the lines, final newline dropped" cmp "$T/stdin.expected" "$T/got.$n"

# Nothing of the refused max-text + 1 message arrived: the next message
# bob gets is the one sent after it.
printf '%s' "$(marker sentinel)" >"$T/sentinel"
send_and_compare "a message after the refused one" "$T/sentinel"
is "bob received exactly the $n messages accepted, nothing else" $n "$(json_count "$T/bob.json" message)"
is "bob rejected nothing" 0 "$(json_count "$T/bob.json" rejected)"

sc alice send nosuch "$(marker nosuch) to nobody" >"$T/nosuch.out" 2>"$T/nosuch.err"
is "a message to a user the relay does not know: EXIT_REFUSED" $EXIT_REFUSED $?
like "...naming no_such_user" "no_such_user" "$(cat "$T/nosuch.err")"
sc alice send 'Bob!' "$(marker badname) to a bad name" >"$T/badname.out" 2>"$T/badname.err"
is "a message to an invalid user name: EXIT_USAGE" $EXIT_USAGE $?
like "...saying what a user name is, and where scctl(1) defines it" \
	"\"Bob!\" is not a valid user name: a user name has 1 to 32 lower-case letters, digits, '\\.', '_' and '-', and starts with a letter or digit; see USER NAMES in scctl\\(1\\)" \
	"$(cat "$T/badname.err")"
sc alice send Bob "$(marker badname) to Bob" >"$T/badname.out" 2>"$T/badname.err"
like "send Bob: ...and which name was probably meant" '"Bob" is not a valid user name \(did you mean "bob"\?\)' \
	"$(cat "$T/badname.err")"

# ---- connect, driven through a pipe ------------------------------------------

mkfifo "$T/connect.in"
sc_argv alice
SC_BG_IN=$T/connect.in bg_start "$T/connect.out" "$T/connect.err" "${SC_ARGV[@]}" connect
CONNECT=$SC_BG
exec 7>"$T/connect.in"
C1="$(marker connect1) from the connect session"
C2="$(marker connect2)   with: a colon and  spaces"
printf 'bob:%s\n' "$C1" >&7
printf ' bob : %s\n' "$C2" >&7
printf '/users\n' >&7
ok "connect: bob receives both lines" wait_json "$T/bob.json" $((n + 2)) message
is "...first text exact" "$C1" "$("$SC_JSON" -n $((n + 1)) message text <"$T/bob.json")"
is "...second text exact (blanks after the colon dropped, inner ones kept)" "$C2" \
	"$("$SC_JSON" -n $((n + 2)) message text <"$T/bob.json")"
n=$((n + 2))

R1="$(marker reply1) reply from bob"
R2="$(marker reply2) ünïcödé reply 🎉"
out=$(sc bob send alice "$R1" 2>/dev/null)
is "bob's reply to alice (in connect) is delivered" "0 delivered" "$? $out"
out=$(sc bob send alice "$R2" 2>/dev/null)
is "bob's second reply is delivered" "0 delivered" "$? $out"
replies_shown() {
	grep -qxF "$R1" <(sed -n 's/^\[[0-9:]*\] bob: //p' "$T/connect.out") &&
		grep -qxF "$R2" <(sed -n 's/^\[[0-9:]*\] bob: //p' "$T/connect.out")
}
ok "connect shows bob's replies as [HH:MM:SS] bob: TEXT" wait_until replies_shown
printf 'quit\n' >&7
exec 7>&-
bg_wait "$CONNECT"
is "connect exits 0 after quit" 0 $?
is "connect printed one line per message sent, in order" "-> bob: delivered
-> bob: delivered" "$(grep '^-> bob: \(delivered\|queued\|refused\)' "$T/connect.out")"
ok "/users listed bob with his fingerprint, in suite 2 since alice wrote to him" \
	grep -qx "bob  *$BOB_FP  suite 2 (forward secrecy)" "$T/connect.out"
# Without the fingerprints: base64 spells "rror" now and then.
unlike "connect reported no error" "refused|rror" \
	"$(sed 's|SHA256:[A-Za-z0-9+/]*|SHA256:-|g' "$T/connect.out" "$T/connect.err")"

# ---- connect on a terminal -----------------------------------------------------

# script(1) gives connect a terminal, where lines are edited with libedit:
# scctl loads it only then (cli/line-edit.h), and reads lines as typed
# when it cannot.
tty_connect() { # OUT TEXT [VAR=VALUE...]: alice types TEXT to bob, then quit
	local out=$1 text=$2 pid rc
	shift 2
	rm -f "$T/tty.in"
	mkfifo "$T/tty.in"
	sc_argv alice
	SC_BG_IN=$T/tty.in bg_start "$out" "$out.err" \
		env "$@" script -qec "$(printf '%q ' "${SC_ARGV[@]}")connect" /dev/null
	pid=$SC_BG
	exec 8>"$T/tty.in"
	printf 'bob:%s\n' "$text" >&8
	wait_json "$T/bob.json" $((n + 1)) message
	rc=$?
	printf 'quit\n' >&8
	exec 8>&-
	bg_wait "$pid" || return
	return "$rc"
}
if ! script -qec true /dev/null </dev/null >/dev/null 2>&1; then
	skip "connect on a terminal" "script(1) cannot make a terminal here"
else
	TT="$(marker tty) typed on a terminal"
	ok "connect on a terminal: bob gets the typed line, and quit exits 0" tty_connect "$T/tty.out" "$TT"
	n=$((n + 1))
	is "...exactly that text" "$TT" "$("$SC_JSON" -n $n message text <"$T/bob.json")"
	like "...the line was edited with libedit (its prompt)" "alice> " "$(cat "$T/tty.out")"
	contains "...and the message is reported" "-> bob: delivered" "$(cat "$T/tty.out")"

	mkdir -p "$T/noedit"
	: >"$T/noedit/libedit.so.2"
	TN="$(marker notty) typed without libedit"
	ok "connect on a terminal without libedit: the line still goes" \
		tty_connect "$T/noedit.out" "$TN" LD_LIBRARY_PATH="$T/noedit"
	n=$((n + 1))
	is "...exactly that text" "$TN" "$("$SC_JSON" -n $n message text <"$T/bob.json")"
	like "...saying that line editing is off, and why" \
		"Line editing is off \(.*libedit\.so\.2.*\); lines are read as typed" "$(cat "$T/noedit.out")"
	contains "...and the message is reported" "-> bob: delivered" "$(cat "$T/noedit.out")"
fi

# ---- receipts ------------------------------------------------------------------

out=$(sc alice send --wait bob "$(marker receipt) with a receipt" 2>"$T/wait.err")
is "send --wait: exits 0 once bob acked (delivered, then received)" "0 delivered
received" "$? $out"
n=$((n + 1))
ok "...bob did get it" wait_json "$T/bob.json" $n message

bg_stop "$BOB"
is "bob's listen exits 0 on SIGTERM" 0 $?
is "users no longer shows bob" "No one is online." "$(sc alice users 2>/dev/null)"

W="$(marker waiting) sent while bob is away"
byes=$(relay_count 'event=session-end user=alice .*reason="?bye')
out=$(sc alice send --wait=2 bob "$W" 2>"$T/wait.err")
is "send --wait=2 with bob offline: queued, then EXIT_TIMEOUT" "$EXIT_TIMEOUT queued" "$? $out"
like "...saying that no receipt came within 2 s" "bob.* 2 s" "$(cat "$T/wait.err")"
ok "...and closing its session in order (bye)" \
	wait_until count_above "$byes" relay_count 'event=session-end user=alice .*reason="?bye'
sc bob --json inbox >"$T/inbox.json" 2>"$T/inbox.err"
is "bob's inbox gets the queued message and exits 0" 0 $?
is "...exactly that text" "$W" "$("$SC_JSON" -n 1 message text <"$T/inbox.json")"

check_privacy "$T/bob.json" "$T/connect.out" "$T/inbox.json"
relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
