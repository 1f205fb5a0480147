#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What peers can make the relay hold in memory (issue 8, cases 4 to 6):
# a backlog of maximum-size messages reaches a normal login in pieces; an
# online list larger than a session's memory budget is streamed to a new
# receiving login; peers that never read are cut at max-session-memory
# and the relay's peak RSS stays within the bound securechatd(8) states.
# Case 7 too: a reload that would strand the big messages is refused.

SC_SCRIPT=memory
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

# Hundreds of clients from one address, and messages as fast as they go:
# the per-address and per-user rates are limits.sh's subject, not this one's.
NO_RATES="-o trusted-networks=127.0.0.0/8 -o message-rate=0"

# AddressSanitizer's shadow memory and quarantine make RSS figures
# meaningless: those checks are skipped in such a build.
SC_ASAN=
if grep -qa __asan_init "$SECURECHATD"; then
	SC_ASAN=yes
fi

# GROWTH (KiB) is at most BOUND (KiB).
rss_within() { # DESCRIPTION GROWTH BOUND
	if [ -n "$SC_ASAN" ]; then
		tap_n=$((tap_n + 1))
		echo "ok $tap_n - $1 # SKIP RSS under AddressSanitizer"
		return 0
	fi
	ok "$1" [ "$2" -le "$3" ]
}

# The relay's resident memory, in KiB (VmRSS, or VmHWM for the peak).
relay_rss() { # [FIELD]
	sed -n "s/^${1:-VmRSS}:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$SC_RELAY_PID/status"
}

# Start sc-raw's "crowd N PREFIX MODE [LOOKUPS]" (all with one key; idle
# ones with a small receive buffer) writing to OUT, and wait until it has
# logged in what it could. Pid in SC_BG.
crowd_start() { # OUT CROWD-ARGUMENTS...
	local out=$1
	shift
	bg_start "$out" "$out.err" "$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" 127.0.0.1 "$SC_PORT" \
		-e "key $T/crowd.key 2048" -e 'rcvbuf 4096' -e "crowd $*"
	wait_until -t 120 grep -q "crowd of" "$out" || diag "$(tail -n 3 "$out.err")"
}

# ---- case 5: twelve and more messages of max-frame for one login -----------------

printf '[server]\nmax-frame = 1M\nmax-text = 256K\n' >"$T/big.conf"
check "relay starts with max-frame=1M, max-text=256K (the example of securechatd.conf(5))" \
	relay_start -c "$T/big.conf" $NO_RATES || done_testing
ok "alice registers" sc_init alice
ok "bob registers" sc_init bob

N_BIG=14
queued=0
for i in $(seq 1 $N_BIG); do
	text_of_size big$i 262144 "$T/big$i"
	out=$(sc alice send bob - <"$T/big$i" 2>"$T/big.err") && [ "$out" = queued ] && queued=$((queued + 1))
done
is "$N_BIG messages of max-text (256K) are queued for bob" $N_BIG $queued

# ---- case 7: a reload must not strand them -----------------------------------------

export SECURECHAT_CONTROL=$T/control
printf '[server]\nmax-frame = 64K\nmax-text = 16K\n' >"$T/big.conf"
out=$("$SCCTL" --timeout "$SC_WAIT" reload 2>&1)
is "a reload to max-frame=64K while they wait is refused: status $EXIT_REFUSED" "$EXIT_REFUSED" $?
like "...saying why" "max-frame = 64K may be too small for a queued message.*keep max-frame at 1M" "$out"
ok "...logged as reload-failed" relay_logged "event=reload-failed"
printf '[server]\nmax-frame = 1M\nmax-text = 16K\n' >"$T/big.conf"
out=$("$SCCTL" --timeout "$SC_WAIT" reload 2>&1)
is "so is one to max-text=16K" "$EXIT_REFUSED" $?
like "...saying why" "max-text = 16K may be too small for a queued message.*keep max-text at 256K" "$out"
printf '[server]\nmax-frame = 1M\nmax-text = 256K\nidle-timeout = 10m\n' >"$T/big.conf"
is "a reload that keeps them is accepted" "The relay reloaded its configuration." \
	"$("$SCCTL" --timeout "$SC_WAIT" reload 2>&1)"

sc bob --json inbox >"$T/inbox.json" 2>"$T/inbox.err"
is "bob's inbox exits 0 (the relay does not cut the login)" 0 $? || diag "$(cat "$T/inbox.err")"
is "...with all $N_BIG messages" $N_BIG "$(json_count "$T/inbox.json" message)"
same=0
for i in $(seq 1 $N_BIG); do
	json_text "$T/inbox.json" $i "$T/got" && cmp -s "$T/big$i" "$T/got" && same=$((same + 1))
done
is "...each exactly as sent, in order" $N_BIG $same
is "...then synced, counting $N_BIG" $N_BIG "$("$SC_JSON" -n 1 synced messages <"$T/inbox.json")"
out=$(sc bob inbox 2>&1)
is "they were acked: a second inbox finds none" "No queued messages." "$out"
printf '[server]\nmax-frame = 64K\nmax-text = 16K\n' >"$T/big.conf"
is "with the queue empty, the lower limits reload" "The relay reloaded its configuration." \
	"$("$SCCTL" --timeout "$SC_WAIT" reload 2>&1)"
printf '[server]\nmax-frame = 1M\nmax-text = 256K\n' >"$T/big.conf"
is "...and the higher ones again" "The relay reloaded its configuration." \
	"$("$SCCTL" --timeout "$SC_WAIT" reload 2>&1)"

# The same through listen: a receiving session that stays.
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13; do
	sc alice send bob - <"$T/big$i" >/dev/null 2>>"$T/big.err"
done
check "bob listens" listen_start bob "$T/listen.json"
ok "listen prints the 13 messages queued meanwhile" wait_json "$T/listen.json" 13 message
bg_stop "$SC_BG"
unlike "no session was cut for its memory" "max-session-memory|max-memory" "$(cat "$SC_RELAY_LOG")"
check "the relay exits 0 on SIGTERM" relay_stop

# ---- case 6: an online list larger than the memory budget -------------------------

# With max-frame=4K, max-text=1K and the least max-session-memory, a
# session's budget is its floor, 3 x 4K + 256K = 268K; 400 users online
# make a list of some 360K (each key package is about 900 bytes). The
# same mechanism as ~1,700 users of 4096-bit keys with the defaults: the
# list is larger than what one session may hold.
check "relay starts with max-frame=4K, max-text=1K, max-session-memory=64K" \
	relay_start -o max-frame=4K -o max-text=1K -o max-session-memory=64K $NO_RATES || done_testing
rss0=$(relay_rss)
crowd_start "$T/crowd.out" 400 u read
crowd=$SC_BG
ok "400 receiving users come online (a raw client that reads)" grep -q "crowd of 400 up" "$T/crowd.out"
diag "relay RSS: ${rss0} KiB before, $(relay_rss) KiB with 400 sessions that read (peak $(relay_rss VmHWM) KiB)"
# A client of protocol version 1 (sc-raw) is sent the whole list at login,
# before synced; scctl (version 2) asks for it page by page (35 users fit
# in 4K).
"$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" 127.0.0.1 "$SC_PORT" -e "key $T/crowd.key" -e connect \
	-e 'auth v1user' -e 'wait synced' -e bye >"$T/v1list.out" 2>"$T/v1list.err"
is "a version 1 login is listed all 400 online with their key packages" 400 \
	"$(grep '^< {"type":"presence","users"' "$T/v1list.out" | grep -o '"user":"u[0-9]*","key"' | sort -u | wc -l)"
ok "...in pieces" grep -q '"more":true' "$T/v1list.out"
is "scctl users lists all 400, page by page" 400 "$(sc alice users 2>/dev/null | grep -c '^u[0-9]')"
check "bob logs in to listen" listen_start bob "$T/listen6.json"
is "bob's listen (version 2) is sent no one's presence: none are his contacts" 0 \
	"$(json_count "$T/listen6.json" presence)"
ok "...and is still running" eval '! sc_exited $SC_BG'
unlike "no session was cut for its memory" "max-session-memory|max-memory" "$(cat "$SC_RELAY_LOG")"
is "alice can still send to bob" "delivered" "$(sc alice send bob "$(marker hello6)" 2>&1)"
ok "...and bob gets it" wait_json "$T/listen6.json" 1 message
bg_stop "$SC_BG"
bg_stop "$crowd"
check "the relay exits 0 on SIGTERM" relay_stop

# ---- case 4: peers that never read ---------------------------------------------------

# N receiving sessions read nothing after their welcome: each first sends
# as many lookups as its socket takes (the relay answers only until
# SESSION_READ_PAUSE bytes wait, then keeps the rest of one read), then
# hears every login and logout of a user who comes and goes CHURN times.
# Once the kernel's socket buffers are full, what they are sent stays in
# the relay: each is cut when it holds its budget, here the floor of
# max-frame=4K, 3 x 4K + 256K = 268K. The relay's peak RSS grows by at
# most N x (budget + the per-session constant of securechatd(8)).
N_IDLE=${SC_N_IDLE:-60}
CHURN=${SC_CHURN:-1500}
BUDGET_K=268
CONST_K=160
check "relay starts with max-frame=4K, max-text=1K, max-session-memory=64K" \
	relay_start -o max-frame=4K -o max-text=1K -o max-session-memory=64K $NO_RATES || done_testing
check "bob listens" listen_start bob "$T/listen4.json"
rss0=$(relay_rss)
crowd_start "$T/idle.out" "$N_IDLE" i idle 5000
idle=$SC_BG
ok "$N_IDLE receiving sessions that never read come online" grep -q "crowd of $N_IDLE up" "$T/idle.out"
{
	echo "key $T/churn.key 2048"
	for i in $(seq 1 "$CHURN"); do
		printf 'connect\nauth churn\nwait welcome\nclose\n'
	done
} >"$T/churn.script"
"$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" 127.0.0.1 "$SC_PORT" <"$T/churn.script" >/dev/null 2>"$T/churn.err"
is "a user logs in and out $CHURN times meanwhile" 0 $? || diag "$(cat "$T/churn.err")"
cut=$(relay_count "max-session-memory exceeded")
ok "the sessions that do not read were cut at max-session-memory ($cut of $N_IDLE)" \
	[ "$cut" -ge "$N_IDLE" ]
ok "...counted as limit-hit max-session-memory" \
	relay_logged "event=limit-hit .*reason=max-session-memory"
hwm=$(relay_rss VmHWM)
bound=$((N_IDLE * (BUDGET_K + CONST_K)))
diag "relay RSS: ${rss0} KiB before, peak ${hwm} KiB, $(relay_rss) KiB now; growth $((hwm - rss0)) KiB for $N_IDLE peers, bound $bound KiB"
rss_within "the relay's peak RSS grew by at most $N_IDLE x (${BUDGET_K}K + ${CONST_K}K)" \
	$((hwm - rss0)) "$bound"
is "alice can still send to bob" "delivered" "$(sc alice send bob "$(marker hello4)" 2>&1)"
ok "...and bob's listen, which reads, gets it" wait_json "$T/listen4.json" 1 message
ok "...and was not cut" eval '! sc_exited $SC_BG'
bg_stop "$idle"
bg_stop "$SC_BG"
check "the relay exits 0 on SIGTERM" relay_stop

# ---- max-memory: all sessions together -------------------------------------------------

# Up to 40 sessions that do not read, each made to hold some 270K, with
# max-memory=1M: once the sessions together hold more, a login is refused
# (server_busy) or a session that does not read is cut when it is sent
# something (max-memory), whichever comes first; either way the relay's
# peak stays within max-memory plus one session's budget and the
# constant per session.
check "relay starts with max-frame=4K, max-text=1K, max-memory=1M" \
	relay_start -o max-frame=4K -o max-text=1K -o max-memory=1M $NO_RATES || done_testing
rss0=$(relay_rss)
crowd_start "$T/mem.out" 40 m idle 5000
idle=$SC_BG
ok "40 sessions that never read try to come online: the relay refuses a login or cuts them at max-memory" \
	relay_logged "event=limit-hit .*reason=max-memory"
diag "$(grep -c "ended: max-memory exceeded" "$SC_RELAY_LOG") cut, $(grep "crowd" "$T/mem.out" | tr '\n' ' ')"
hwm=$(relay_rss VmHWM)
bound=$((1024 + 268 + 40 * CONST_K))
diag "relay RSS: ${rss0} KiB before, peak ${hwm} KiB; growth $((hwm - rss0)) KiB, bound $bound KiB"
rss_within "the relay's peak RSS grew by at most max-memory + one budget + 40 x ${CONST_K}K" \
	$((hwm - rss0)) "$bound"
bg_stop "$idle"
ok "once they are gone, alice logs in" wait_until eval 'sc alice inbox >/dev/null 2>&1'
check_privacy "$T/listen4.json" "$T/listen6.json" "$T/inbox.json"
check "the relay exits 0 on SIGTERM" relay_stop
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"
done_testing
