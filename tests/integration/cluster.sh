#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Several relays on one PostgreSQL database (issue 11): nodes n1, n2, n3
# on their own ports and state directories, with the same identity key
# and node-timeout=3s. alice on n1 and bob on n2 chat, online and offline,
# and alice sees bob come and go; bob's node is killed (SIGKILL) while
# alice sends, carol on n1 sees him go within node-timeout, and bob, back
# on n3, gets every message that alice was told was accepted, exactly
# once; the database crashes and comes back while alice sends: the sends
# it cannot take are refused with "unavailable", none of those it took is
# lost, and the relays carry on without a restart; two nodes started at
# the same moment on an empty database both come up.

SC_SCRIPT=cluster
SC_DATABASE=pg
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

# Every client connects from 127.0.0.1, and alice sends as fast as she
# can: the rates are limits.sh's subject.
NO_RATES=(-o trusted-networks=127.0.0.0/8 -o message-rate=0)

# Node N's pid, port and log; its state directory is $T/states/nN (all of
# them under one directory, for check_privacy).
NODE_PID=()
NODE_PORT=()
NODE_LOG=()

# The options of node N, whose state directory gets n1's identity key
# (n1 makes it).
node_prepare() { # N
	SC_STATE=$T/states/n$1
	mkdir -p "$T/states" && mkdir -m 0700 "$SC_STATE"
	[ "$1" = 1 ] || cp -p "$T/states/n1/identity.key" "$SC_STATE/"
	SC_PORT=0
	NODE_OPTIONS=(-o "node-name=n$1" -o node-timeout=3s -o "control=$T/control-n$1" "${NO_RATES[@]}")
}

node_record() { # N
	NODE_PID[$1]=$SC_RELAY_PID
	NODE_PORT[$1]=$SC_PORT
	NODE_LOG[$1]=$SC_RELAY_LOG
	SC_PIDS="$SC_PIDS $SC_RELAY_PID"
	SC_RELAY_PID=
}

node_start() { # N [OPTION...]
	local n=$1
	shift
	node_prepare "$n"
	relay_start "${NODE_OPTIONS[@]}" "$@" || return 1
	node_record "$n"
}

# Make node N the one lib.sh's functions talk to: sc, sc_init and
# listen_start connect to its port and read its log.
on_node() { # N
	SC_PORT=${NODE_PORT[$1]}
	SC_RELAY_LOG=${NODE_LOG[$1]}
	SC_STATE=$T/states/n$1
}

node_alive() { # N
	! sc_exited "${NODE_PID[$1]}"
}

# Stop node N (SIGTERM, or SIGNAL) and wait for it; its exit status.
node_stop() { # N [SIGNAL]
	bg_stop "${NODE_PID[$1]}" "${2:-TERM}"
}

ctl() { # N ARGS...: scctl's administration commands on node N
	local n=$1
	shift
	SECURECHAT_CONTROL=$T/control-n$n "$SCCTL" --timeout "$SC_WAIT" "$@"
}

# How many presence events EVENT (online, offline) of bob the watcher's
# listen has shown: alice's, and carol's while alice sends through
# connect, which is her receiving session then.
WATCHER=alice
bob_events() { # EVENT
	json_count "$T/$WATCHER.json" -m "event=$1" -m user=bob presence
}

# Wait until there is one more than BEFORE.
wait_bob_event() { # EVENT BEFORE
	wait_until count_above "$2" bob_events "$1"
}

# Is USER online for someone on node N (scctl users as USER2)?
online_for() { # N USER2 USER
	on_node "$1"
	sc "$2" users 2>/dev/null | grep -q "^$3 "
}

offline_for() { # N USER2 USER
	! online_for "$@"
}

# The ids (one per line, sorted) of the messages the given listen outputs
# show, and of the sends a connect output says were accepted.
shown_ids() { # FILE...
	cat "$@" | "$SC_JSON" message id | sort
}

accepted_ids() { # FILE
	"$SC_JSON" sent id <"$1" | sort
}

# Does COMMAND print at least N lines?
lines_at_least() { # N COMMAND...
	local n=$1
	shift
	[ "$("$@" | wc -l)" -ge "$n" ]
}

# connect as alice on node N, reading lines from a FIFO open on fd 7 and
# writing JSON to OUT. Pid in ALICE_CONNECT. Processes that outlive a
# command and are started while it is open must not inherit fd 7 ("7>&-"),
# or connect would never see the end of its input.
alice_connect() { # N OUT
	rm -f "$T/connect.in"
	mkfifo "$T/connect.in"
	on_node "$1"
	sc_argv alice
	SC_BG_IN=$T/connect.in bg_start "$2" "$2.err" "${SC_ARGV[@]}" --json connect
	ALICE_CONNECT=$SC_BG
	exec 7>"$T/connect.in"
}

# Lines "bob:MARKER-NAME-i" for i in FIRST..LAST, to alice's connect.
send_lines() { # NAME FIRST LAST
	local i
	for ((i = $2; i <= $3; i++)); do
		printf 'bob:%s\n' "$(marker "$1-$i")" >&7
	done
}

# How many results (accepted or refused) connect's OUT holds.
results() { # OUT
	echo $(($(json_count "$1" sent) + $(json_count "$1" refused)))
}

wait_results() { # OUT N
	wait_until count_above "$(($2 - 1))" results "$1"
}

# ---- three nodes ---------------------------------------------------------------------

check "node n1 starts" node_start 1 || done_testing
ok "alice registers on n1" sc_init alice
ok "bob registers on n1" sc_init bob
check "node n2 starts with n1's identity key" node_start 2 || done_testing
check "node n3 starts with n1's identity key" node_start 3 || done_testing
is "the three nodes present the same identity" 1 \
	"$(sed -n 's/.*Server identity \(SHA256:[^ ]*\).*/\1/p' "${NODE_LOG[@]}" | sort -u | wc -l)"
on_node 1
ok "alice pins bob's key" sc alice fingerprint bob
on_node 2
ok "bob pins alice's key, on n2 (his registration on n1 is known there)" sc bob fingerprint alice
# What scctl pins is per relay address: carol watches from n1 below.
on_node 1
ok "carol registers" sc_init carol
ok "...and pins bob's key" sc carol fingerprint bob
# The nodes' rows in scctl status (NODE ALIVE ...), as n1 shows them.
status_lists() { # NODE...
	local out n
	out=$(ctl 1 status 2>&1) || return 1
	for n; do
		grep -Eq "^$n +yes " <<<"$out" || return 1
	done
}
ok "scctl status on n1 lists nodes n1, n2 and n3 alive" wait_until status_lists n1 n2 n3 ||
	diag "$(ctl 1 status 2>&1)"

# ---- presence and chat across nodes ----------------------------------------------------

on_node 1
check "alice listens on n1" listen_start alice "$T/alice.json"
ALICE=$SC_BG
on_node 2
check "bob listens on n2" listen_start bob "$T/bob2.json"
BOB=$SC_BG
ok "alice's listen on n1 shows bob coming online on n2" wait_bob_event online 0
ok "scctl users on n1 lists bob" wait_until online_for 1 alice bob

on_node 1
A1="$(marker online) from n1 to n2"
out=$(sc alice send bob "$A1" 2>&1)
is "alice sends bob a message on n1" 0 $? || diag "$out"
ok "bob's listen on n2 shows it" wait_json "$T/bob2.json" 1 message
is "...exactly" "$A1" "$("$SC_JSON" -n 1 message text <"$T/bob2.json")"

before=$(bob_events offline)
bg_stop "$BOB"
is "bob's listen on n2 exits 0 on SIGTERM" 0 $?
ok "alice's listen on n1 shows bob going offline" wait_bob_event offline "$before"
ok "scctl users on n1 no longer lists bob" wait_until offline_for 1 alice bob

on_node 1
A2="$(marker offline) from n1, read on n2"
out=$(sc alice send bob "$A2" 2>&1)
is "alice sends bob, who is offline, a message on n1: queued" "0 queued" "$? $out"
on_node 2
sc bob --json inbox >"$T/inbox2.json" 2>"$T/inbox2.err"
is "bob's inbox on n2 exits 0" 0 $? || diag "$(cat "$T/inbox2.err")"
is "...with that message, exactly" "$A2" "$("$SC_JSON" message text <"$T/inbox2.json")"

# ---- bob's node is killed while alice sends ----------------------------------------------

bg_stop "$ALICE"
is "alice's listen exits 0 on SIGTERM" 0 $?
on_node 1
check "carol listens on n1" listen_start carol "$T/carol.json"
CAROL=$SC_BG
WATCHER=carol
on_node 2
check "bob listens on n2 again" listen_start bob "$T/bob2k.json"
BOB=$SC_BG
ok "carol's listen on n1 shows bob online" wait_bob_event online 0
alice_connect 1 "$T/kill.json"
send_lines kill 1 20
ok "alice's first 20 sends on n1 are answered" wait_results "$T/kill.json" 20
ok "...and bob's listen on n2 shows some of them" wait_json "$T/bob2k.json" 5 message
before=$(bob_events offline)
node_stop 2 KILL 2>/dev/null # (bash would say "Killed")
is "n2 is killed (SIGKILL)" 137 $?
t0=$(now_ms)
send_lines kill 21 40
ok "alice's next 20 sends on n1 are answered" wait_results "$T/kill.json" 40
ok "carol's listen on n1 shows bob offline once n2's heartbeat is older than node-timeout" \
	wait_bob_event offline "$before"
diag "bob went offline $(($(now_ms) - t0)) ms after n2 was killed (node-timeout=3s)"
bg_stop "$BOB"
on_node 3
check "bob listens on n3" listen_start bob "$T/bob3.json" 7>&-
BOB=$SC_BG
send_lines kill 41 60
exec 7>&-
bg_wait "$ALICE_CONNECT"
is "alice's connect exits 0 (every send answered, none refused)" 0 $? || diag "$(cat "$T/kill.json.err")"
accepted=$(json_count "$T/kill.json" sent)
is "...all 60 accepted" 60 "$accepted"
ok "bob's listens on n2 and n3 show as many messages" \
	wait_until lines_at_least "$accepted" shown_ids "$T/bob2k.json" "$T/bob3.json"
is "...each exactly once (the ids alice was told are those bob was shown)" \
	"$(accepted_ids "$T/kill.json")" "$(shown_ids "$T/bob2k.json" "$T/bob3.json")"
is "...refusing none" 0 "$(($(json_count "$T/bob2k.json" rejected) + $(json_count "$T/bob3.json" rejected)))"

# ---- the database crashes while alice sends ------------------------------------------------

alice_connect 1 "$T/db.json"
send_lines db 1 10
ok "alice's first 10 sends on n1 are answered" wait_results "$T/db.json" 10
check "PostgreSQL crashes (pg_ctl stop -m immediate)" pg_stop immediate
send_lines down 1 5
ok "alice's 5 sends while it is down are answered" wait_results "$T/db.json" 15
is "...all refused with unavailable" 5 "$(json_count "$T/db.json" -m reason=unavailable refused)"
on_node 1
sc alice send bob "$(marker down-single)" >"$T/down.out" 2>"$T/down.err"
is "scctl send while it is down: EXIT_REFUSED" "$EXIT_REFUSED" $?
like "...saying unavailable" "unavailable" "$(cat "$T/down.err")"
check "PostgreSQL starts again" pg_start "$T/pg" 7>&-
# The relays reconnect in the background (0.5 s, doubling up to 10 s):
# one line at a time until one is accepted again.
probes=0
probe() {
	local before
	before=$(json_count "$T/db.json" sent)
	probes=$((probes + 1))
	printf 'bob:%s\n' "$(marker "probe-$probes")" >&7
	wait_results "$T/db.json" $((15 + probes)) || return 1
	[ "$(json_count "$T/db.json" sent)" -gt "$before" ] && return 0
	sleep 0.2 # the pace of the probes, not a wait for anything
	return 1
}
ok "n1 takes sends again, without a restart" wait_until probe
send_lines db 11 20
exec 7>&-
bg_wait "$ALICE_CONNECT"
is "alice's connect exits with the status of the first refusal ($EXIT_REFUSED)" "$EXIT_REFUSED" $?
accepted=$(json_count "$T/db.json" sent)
ok "at least 21 of its sends were accepted ($accepted)" [ "$accepted" -ge 21 ]
# What bob's listen on n3 showed besides the messages of the kill test.
db_shown_ids() {
	comm -23 <(shown_ids "$T/bob3.json") <(accepted_ids "$T/kill.json")
}
ok "bob's listen on n3 shows as many messages" wait_until lines_at_least "$accepted" db_shown_ids
is "...each exactly once, and none of the refused" "$(accepted_ids "$T/db.json")" "$(db_shown_ids)"
ok "n1, n3 and bob's listen on n3 are the same processes as before" \
	eval 'node_alive 1 && node_alive 3 && ! sc_exited "$BOB"'
on_node 3
out=$(sc alice send bob "$(marker after) through n3" 2>&1)
is "alice sends on n3 after the crash" 0 $? || diag "$out"

bg_stop "$BOB"
bg_stop "$CAROL"

# ---- two nodes start at the same moment on an empty database -----------------------------

relay_database_new
relay_database_options
node_prepare 4
relay_spawn "${NODE_OPTIONS[@]}"
node_record 4
node_prepare 5
relay_spawn "${NODE_OPTIONS[@]}"
node_record 5
for n in 4 5; do
	SC_RELAY_PID=${NODE_PID[$n]}
	SC_RELAY_LOG=${NODE_LOG[$n]}
	SC_STATE=$T/states/n$n
	check "node n$n, started with the other on an empty database, comes up" \
		eval 'relay_listens && relay_on_database'
	NODE_PORT[n]=$SC_PORT
done
SC_RELAY_PID=
on_node 4
ok "dave registers on n4" sc_init dave
on_node 5
ok "erin registers on n5" sc_init erin
on_node 4
out=$(sc dave send erin "$(marker together)" 2>/dev/null)
is "dave sends erin a message on n4: queued" "0 queued" "$? $out"
on_node 5
sc erin --json inbox >"$T/together.json" 2>&1
is "erin's inbox on n5 has it" "$(marker together)" "$("$SC_JSON" message text <"$T/together.json")"

# ---- the end ---------------------------------------------------------------------------------

SC_STATE=$T/states
check_privacy "$T/bob2.json" "$T/bob3.json" "$T/together.json"
for n in 1 3 4 5; do
	node_stop "$n"
	is "n$n exits 0 on SIGTERM" 0 $?
done
unlike "no relay logged a sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
