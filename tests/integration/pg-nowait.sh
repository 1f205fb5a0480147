#!/bin/bash
# SPDX-License-Identifier: MIT
#
# On PostgreSQL the relay's event loop does not wait for the database while
# a send is in flight. The backend of the relay's store connection (found
# in pg_stat_activity by its application_name, securechatd/NODE) is frozen
# with SIGSTOP, on the server this script started: alice's send then stays
# unanswered, while carol, on the same relay, still has her ping answered
# and hears at once that bob went offline. Once the backend goes on, the
# send is accepted. Likewise while dave's queue is read for a message a
# second relay on the database queued for him. Frozen past database-timeout, a send is answered
# "unavailable", alice's session stays, and once the database is back a
# send is accepted again.

SC_SCRIPT=pg-nowait
SC_DATABASE=pg
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

# Long enough for the checks made while the backend is frozen, short
# enough to wait for once.
TIMEOUT=6
# A relay that waited for the frozen backend would answer after it is
# continued, TIMEOUT seconds or more later: 2 s tells the two apart.
PROMPT_MS=2000

check "relay starts (database-timeout=${TIMEOUT}s, node-name=nowait)" \
	relay_start -o node-name=nowait -o "database-timeout=${TIMEOUT}s" -o message-rate=0 || done_testing
ok "bob registers" sc_init bob
check "bob listens" listen_start bob "$T/bob.json"
BOB=$SC_BG

# A session of sc-raw that takes its script line by line from a FIFO:
# raw_open NAME starts it, raw NAME LINE... writes to it, its output
# goes to $T/NAME.out. sc-raw reads frames only for a command that waits
# for one. A session that ended (a wait that timed out) fails the checks
# after, not the script.
trap '' PIPE
declare -A RAW_FD
raw_open() { # NAME
	local fd
	mkfifo "$T/$1.in" || return 1
	"$SC_RAW" $SC_RAW_TLS --timeout 20 127.0.0.1 "$SC_PORT" <"$T/$1.in" >"$T/$1.out" 2>"$T/$1.err" &
	SC_PIDS="$SC_PIDS $!"
	exec {fd}>"$T/$1.in"
	RAW_FD[$1]=$fd
}

raw() { # NAME LINE...
	local name=$1 line
	shift
	for line; do
		printf '%s\n' "$line" >&"${RAW_FD[$name]}"
	done
}

# Frames of type TYPE (with more text TEXT) that NAME received so far.
raw_count() { # NAME TYPE [TEXT]
	grep -c "^< {\"type\":\"$2\".*${3:-}" "$T/$1.out"
}

# Wait until NAME has more than N frames of TYPE (with TEXT).
raw_wait() { # NAME N TYPE [TEXT]
	local name=$1 n=$2
	shift 2
	wait_until count_above "$n" raw_count "$name" "$@"
}

count_above() { # N COMMAND...
	local n=$1
	shift
	[ "$("$@")" -gt "$n" ]
}

raw_open alice
raw alice connect "key $T/alice.key 2048" "auth alice send" "expect welcome" "lookup bob" "wait key"
ok "alice logs in (sc-raw) and looks bob up" raw_wait alice 0 key
raw_open carol
raw carol connect "key $T/carol.key 2048" "auth carol" "expect welcome" "wait presence"
ok "carol logs in (sc-raw), receiving" raw_wait carol 0 welcome
ok "...and is told bob is online" raw_wait carol 0 presence '"bob"'

# The backend of the relay's store connection: the cluster's connection
# is named securechatd only.
backend() {
	pg_sql postgres "SELECT pid FROM pg_stat_activity WHERE application_name = 'securechatd/nowait'"
}
PID=$(backend)
like "the relay's store connection is in pg_stat_activity" '^[0-9]+$' "$PID"
[[ $PID =~ ^[0-9]+$ ]] || done_testing

# carol pings: her pong must come within PROMPT_MS.
carol_pings_promptly() { # WHILE
	local before start elapsed
	before=$(raw_count carol pong)
	start=$(now_ms)
	raw carol ping "wait pong"
	raw_wait carol "$before" pong
	elapsed=$(($(now_ms) - start))
	ok "$1, carol's ping is answered within $PROMPT_MS ms (${elapsed} ms)" [ "$elapsed" -lt "$PROMPT_MS" ]
}

# ---- a send in flight does not hold the other sessions ----------------------------

kill -STOP "$PID"
SC_PG_STOPPED=$PID
raw alice "send bob $(marker frozen) in flight"
sleep 0.5
carol_pings_promptly "with the store's backend frozen"

presences=$(raw_count carol presence)
start=$(now_ms)
bg_stop "$BOB"
raw carol "wait presence"
raw_wait carol "$presences" presence
elapsed=$(($(now_ms) - start))
ok "...and she hears that bob left within $PROMPT_MS ms (${elapsed} ms)" [ "$elapsed" -lt "$PROMPT_MS" ]
is "alice's send is still in flight: no answer yet" 0 "$(raw_count alice accepted)"

kill -CONT "$PID"
SC_PG_STOPPED=
raw alice "wait accepted"
ok "the backend continued: alice's send is accepted" raw_wait alice 0 accepted
is "...queued, bob being offline" 1 "$(raw_count alice accepted '"queued":true')"
is "...and the database was never counted as away" 0 "$(relay_count 'PostgreSQL is away')"
is "...the message is in the queue" 1 \
	"$(db "SELECT count(*) FROM sc_queue WHERE recipient = 'bob' AND sender = 'alice'")"

# ---- a pump in flight does not hold the other sessions ----------------------------

# A second relay on the same database queues a message for dave, who
# receives here: this relay's cluster connection (not the frozen one)
# hears of it and pumps dave's queue, a read that stays in flight while
# carol's ping is answered.
raw_open dave
raw dave connect "key $T/dave.key 2048" "auth dave" "expect welcome" "wait synced"
ok "dave logs in (sc-raw), receiving, and is synced" raw_wait dave 0 synced
RELAY1=("$SC_RELAY_PID" "$SC_RELAY_LOG" "$SC_PORT" "$SC_STATE")
SC_STATE=$T/state2
mkdir -m 0700 "$SC_STATE" && cp -p "$T/state/identity.key" "$SC_STATE/"
SC_PORT=0
check "a second relay starts on the same database (node-name=nowait2)" \
	relay_start -o node-name=nowait2 -o control="$T/control2" -o message-rate=0 || done_testing
SC_PIDS="$SC_PIDS $SC_RELAY_PID"
raw_open eve
SC_RELAY_PID=${RELAY1[0]} SC_RELAY_LOG=${RELAY1[1]} SC_PORT=${RELAY1[2]} SC_STATE=${RELAY1[3]}
raw eve connect "key $T/eve.key 2048" "auth eve send" "expect welcome" "lookup dave" "wait key"
ok "eve logs in on the second relay (sc-raw) and looks dave up" raw_wait eve 0 key

kill -STOP "$PID"
SC_PG_STOPPED=$PID
raw eve "send dave $(marker pumped) from the other relay" "wait accepted"
ok "eve's send is accepted by the second relay" raw_wait eve 0 accepted
sleep 0.5
carol_pings_promptly "with dave's queue being read from the frozen backend"
is "...and dave has not been delivered it yet: the read is in flight" 0 "$(raw_count dave deliver)"
kill -CONT "$PID"
SC_PG_STOPPED=
raw dave "wait deliver"
ok "the backend continued: dave is delivered eve's message" raw_wait dave 0 deliver
is "...and the database was never counted as away" 0 "$(relay_count 'PostgreSQL is away')"

# ---- frozen past database-timeout: unavailable, and back -------------------------

kill -STOP "$PID"
SC_PG_STOPPED=$PID
start=$(now_ms)
raw alice "send bob $(marker timeout) frozen too long" "wait error unavailable"
before=$(raw_count carol pong)
raw carol ping "wait pong"
ok "frozen again: carol's ping is answered meanwhile" raw_wait carol "$before" pong
ok "alice's send is answered unavailable" raw_wait alice 0 error '"unavailable"'
elapsed=$(($(now_ms) - start))
ok "...after database-timeout (${elapsed} ms)" [ "$elapsed" -ge $((TIMEOUT * 1000 - 500)) ]
ok "...the relay said the database is away" relay_logged 'PostgreSQL is away \(no answer within database-timeout\)'
kill -CONT "$PID"
SC_PG_STOPPED=
ok "the relay reconnects" wait_until relay_logged 'PostgreSQL is back'
raw alice "send bob $(marker back) after the database came back" "wait accepted"
ok "alice's session was kept: her next send is accepted" raw_wait alice 1 accepted
# The refused one may be there too: its whole batch, COMMIT included, was
# in the frozen backend's socket, which ran it when continued, after the
# relay had given up (securechatd(8): found as a duplicate if sent again).
n=$(db "SELECT count(*) FROM sc_queue WHERE recipient = 'bob' AND sender = 'alice'")
ok "the queue has the two accepted messages ($n)" [ "$n" -ge 2 ]

raw alice bye
raw carol bye
raw dave bye
raw eve bye
check "relay stops cleanly" relay_stop
unlike "the relay logged no internal error" "internal|assert" "$(cat "$SC_RELAY_LOG")"

done_testing
