#!/bin/bash
# SPDX-License-Identifier: MIT
#
# scctl connect with standard input from a pipe keeps several messages in
# flight: 200 lines reach bob's listen all, once and in order, and connect
# prints their 200 results in input order; a line in the middle naming an
# unknown user, or a malformed one, is reported in its place while the
# others still go, and the exit status is that of the first failure. A
# raw client's sends and a ping after them are answered in that order.

SC_SCRIPT=pipeline
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

N=200

# No message rate: a rate_limited answer is retried, which may reorder.
check "relay starts (message-rate=0, tls=$SC_TLS)" relay_start -o message-rate=0 || done_testing

ok "alice registers" sc_init alice
ok "bob registers" sc_init bob
check "bob listens" listen_start bob "$T/bob.json"
BOB=$SC_BG

# Lines "bob:MARKER-i" for i in FIRST..LAST.
lines() { # FIRST LAST
	local i
	for ((i = $1; i <= $2; i++)); do
		printf 'bob:%s\n' "$(marker "$i")"
	done
}

# The texts bob was shown from message number FROM on, one per line.
texts_from() { # FROM
	"$SC_JSON" message text <"$T/bob.json" | tail -n "+$1"
}

# ---- 200 messages, all accepted ----------------------------------------------

lines 1 "$N" >"$T/in1"
sc alice --json connect <"$T/in1" >"$T/c1.json" 2>"$T/c1.err"
is "connect of $N piped lines exits 0" 0 $?
is "...and prints $N results" "$N" "$(json_count "$T/c1.json" sent)"
is "...and no refusal" 0 "$(json_count "$T/c1.json" refused)"
ok "bob's listen shows $N messages" wait_json "$T/bob.json" "$N" message
is "...the texts of the input, in order, each once" "$(sed 's/^bob://' "$T/in1")" "$(texts_from 1)"
# Results in input order: the ids connect printed are those bob was
# shown, in the same order.
is "connect's results are in input order (their ids are bob's, in order)" \
	"$("$SC_JSON" message id <"$T/bob.json")" "$("$SC_JSON" sent id <"$T/c1.json")"

# ---- an unknown user, then a malformed line, in the middle ---------------------

{
	lines 1001 1099
	printf 'nobody:%s\n' "$(marker 1100)"
	lines 1101 1149
	printf 'no colon on this line\n'
	lines 1151 1200
} >"$T/in2"
sc alice connect <"$T/in2" >"$T/c2.out" 2>"$T/c2.err"
is "a refused message in the middle: connect exits with its status ($EXIT_REFUSED)" "$EXIT_REFUSED" $?
# Result lines, not receipts ("-> bob: received") that come in between.
grep -E '^-> [^:]*: (delivered|queued|refused)' "$T/c2.out" >"$T/c2.results"
is "...prints a result for each of the 199 messages" 199 "$(wc -l <"$T/c2.results")"
like "...the 100th says that nobody's message was refused" '^-> nobody: .*refused.*no_such_user' \
	"$(sed -n 100p "$T/c2.results")"
is "...and all the others went to bob" 198 "$(grep -c '^-> bob: \(delivered\|queued\)$' "$T/c2.results")"
like "...the malformed line is reported" "Expected RECIPIENT:MESSAGE" "$(cat "$T/c2.err")"
ok "bob's listen shows the 198 messages" wait_json "$T/bob.json" $((N + 198)) message
is "...in order, each once" "$(grep '^bob:' "$T/in2" | sed 's/^bob://')" "$(texts_from $((N + 1)))"

# The malformed line first: its status (usage, 2) is the exit status.
{
	lines 2001 2049
	printf 'bob:\n'
	lines 2051 2099
	printf 'nobody:%s\n' "$(marker 2100)"
	lines 2101 2120
} >"$T/in3"
sc alice connect <"$T/in3" >"$T/c3.out" 2>"$T/c3.err"
is "a malformed line before a refused message: connect exits $EXIT_USAGE" "$EXIT_USAGE" $?
like "...the empty message is reported" "The message to bob is empty" "$(cat "$T/c3.err")"
is "...and the other 118 messages went to bob" 118 "$(grep -c '^-> bob: \(delivered\|queued\)$' "$T/c3.out")"
ok "bob's listen shows them" wait_json "$T/bob.json" $((N + 198 + 118)) message

# ---- a raw client's answers keep its order --------------------------------------

# 30 sends written one after the other, then a ping, to carol (offline: no
# receipt comes in between), in a session of version 3 (no presence
# either). While the first sends commit (on SQLite's writer thread, or
# pipelined to PostgreSQL) the relay reads the next ones into the next
# transaction, and keeps the ping until every accepted has gone out.
ok "carol registers" sc_init carol
"$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" 127.0.0.1 "$SC_PORT" -e "key $T/order.key 2048" -e "proto 3" \
	-e connect -e "auth order send" -e "expect welcome" -e "repeat 30 send carol $(marker order)" -e ping \
	-e "repeat 30 expect accepted" -e "expect pong" -e bye >"$T/order.out" 2>"$T/order.err"
is "30 sends, then a ping: 30 accepted, then the pong" 0 $? || diag "$(cat "$T/order.err")"

# What the relay's Status counts of its commits: every send accepted above
# (and bob's acks) was in one, and pipelined requests share them.
status_u64() { # KEY
	SECURECHAT_CONTROL=$T/control "$SCCTL" --timeout "$SC_WAIT" status --json | "$SC_JSON" status "$1"
}
commits=$(status_u64 commits)
requests=$(status_u64 committed_requests)
ok "Status: the commits held every send accepted ($requests requests)" [ "${requests:-0}" -ge $((N + 198 + 118 + 30)) ]
ok "...in fewer commits than requests ($commits)" [ "${commits:-0}" -ge 1 -a "${commits:-0}" -lt "${requests:-0}" ]
SECURECHAT_CONTROL=$T/control "$SCCTL" --timeout "$SC_WAIT" status >"$T/status.txt"
ok "...and scctl status says so" grep -q "^Commits: *$commits ([0-9.]* sends and acks each)$" "$T/status.txt"

bg_stop "$BOB"
is "bob's listen exits 0 on SIGTERM" 0 $?
check_privacy "$T/bob.json"
done_testing
