#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Two relays sharing one PostgreSQL database act as one for presence
# (securechatd(8), "SEVERAL RELAYS"): alice, on node n1, watches bob, whose
# receiving session is on node n2, and sees him come and go; a newer
# receiving session of bob on n1 replaces the one on n2; scctl kick on n1
# closes bob's session on n2; scctl status on n1 lists both nodes; a
# message for bob accepted on n1 makes n2 pump bob's queue; kill -9 of n2
# makes bob offline for alice within node-timeout.
#
# The test runs on a private PostgreSQL (tests/pg.sh, through lib.sh's
# SC_DATABASE=pg), on an empty database whose tables the first relay makes.
# Each node keeps its own state directory (both nodes have the one identity
# key, as a cluster's nodes must). Skipped when initdb is not installed.

SC_SCRIPT=cluster-presence
SC_TLS=no
SC_DATABASE=pg
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

TIMEOUT=3       # node-timeout, seconds

# ---- PostgreSQL -----------------------------------------------------------------

# A private server (tests/pg.sh, started through lib.sh) and an empty
# database, whose tables the first relay makes.
check "PostgreSQL starts" relay_database || done_testing
DATABASE=$(pg_uri "$SC_PG_DB")
sql() { # SQL
	db "$1"
}

# ---- the nodes ----------------------------------------------------------------

declare -A NODE_PID NODE_PORT NODE_LOG
node_listening() { # LOG PID
	grep -q "Listening on" "$1" || sc_exited "$2"
}

node_start() { # NAME
	local name=$1 log=$T/$1.log pid
	"$SECURECHATD" --state-directory "$T/$name" --listen 127.0.0.1:0 -o key-bits=2048 -o tls=no \
		-o control="$T/$name.control" -o database="$DATABASE" -o node-name="$name" \
		-o node-timeout="${TIMEOUT}s" -o log-level=debug >"$log" 2>&1 &
	pid=$!
	SC_PIDS="$SC_PIDS $pid"
	wait_until node_listening "$log" "$pid"
	grep -q "Listening on" "$log" || { diag "$(cat "$log")"; return 1; }
	NODE_PID[$name]=$pid
	NODE_LOG[$name]=$log
	NODE_PORT[$name]=$(sed -n 's/.*Listening on 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$log" | head -n 1)
}

connected() { # NAME
	grep -q "Cluster: node $1 connected to the database" "${NODE_LOG[$1]}"
}

on() { # NAME: scctl and the log helpers of lib.sh work on node NAME from now on
	SC_PORT=${NODE_PORT[$1]}
	SC_RELAY_LOG=${NODE_LOG[$1]}
}

admin() { # NAME ARGS...
	local name=$1
	shift
	"$SCCTL" --timeout "$SC_WAIT" --control "$T/$name.control" "$@"
}

check "node n1 starts" node_start n1 || done_testing
# One identity for the cluster: n2 gets n1's key.
mkdir -m 700 "$T/n2"
cp -p "$T/n1/identity.key" "$T/n2/identity.key"
check "node n2 starts with n1's identity key" node_start n2 || done_testing
ok "both nodes connect to the database" wait_until eval 'connected n1 && connected n2'

on n1
check "alice registers on n1" sc_init alice
check "bob registers on n1" sc_init bob
# alice knows bob (and so watches him) from a first message.
out=$(sc alice send bob "$(marker first) hello" 2>&1)
is "alice sends bob a message on n1" 0 $? || diag "$out"

check "alice listens on n1" listen_start alice "$T/alice.out"

# ---- online and offline across nodes -------------------------------------------

on n2
check "bob receives on n2" listen_start bob "$T/bob1.out"
BOB1=$SC_BG
ok "alice, on n1, hears that bob is online" wait_json "$T/alice.out" 1 -m user=bob -m event=online presence
is "...bob's presence row names n2" n2 "$(sql "SELECT node FROM sc_presence WHERE username = 'bob'")"
bg_stop "$BOB1"
ok "bob stops: alice hears he is offline" wait_json "$T/alice.out" 1 -m user=bob -m event=offline presence
is "...and his presence row is gone" 0 "$(sql "SELECT count(*) FROM sc_presence WHERE username = 'bob'")"

# ---- replacement across nodes ---------------------------------------------------

check "bob receives on n2 again" listen_start bob "$T/bob2.out"
BOB2=$SC_BG
ok "alice hears he is online again" wait_json "$T/alice.out" 2 -m user=bob -m event=online presence
on n1
check "bob's second receiving session, on n1" listen_start bob "$T/bob3.out"
BOB3=$SC_BG
bg_wait "$BOB2"
rc=$?
ok "...ends the one on n2" test "$rc" != 124
like "...which was told it was replaced" "replaced" "$(cat "$T/bob2.out" "$T/bob2.out.err")"
ok "n2 logged the replacement" grep -q "replaced by a newer receiving session on another node" "${NODE_LOG[n2]}"
is "...bob's presence row names n1" n1 "$(sql "SELECT node FROM sc_presence WHERE username = 'bob'")"
is "...and alice heard no offline in between" 1 "$(json_count "$T/alice.out" -m user=bob -m event=offline presence)"

# ---- who answers with the users of every node, and kick ---------------------------

on n2
check "bob receives on n2 once more (replacing n1's)" listen_start bob "$T/bob4.out"
BOB4=$SC_BG
bg_wait "$BOB3"
ok "...n1's session ends" test $? != 124
ok "n1 knows bob is on n2" wait_until eval \
	"grep -q 'bob' <(admin n1 sessions --json 2>/dev/null | grep '\"node\":\"n2\"')"

raw() { # COMMAND...: sc-raw on the current node, each argument a script line
	local a=()
	for c; do a+=(-e "$c"); done
	"$SC_RAW" --timeout 15 127.0.0.1 "$SC_PORT" "${a[@]}"
}
on n1
out=$(raw connect "key $T/carol.key 2048" "auth carol" "expect welcome" "expect presence" bye 2>&1)
like "a version 1 session on n1: its online list has bob, of n2, with his key package" \
	'^< \{"type":"presence","users":\[.*\{"user":"bob","key":' "$out"
out=$(sc alice users 2>&1)
like "scctl users (who) on n1 lists bob, of n2" "bob" "$out"

# The nodes as of n1's last heartbeat (every third of node-timeout).
node_shown() { # NAME ALIVE
	admin n1 status --json 2>/dev/null | grep -q "\"name\":\"$1\",\"alive\":$2"
}
ok "scctl status on n1 lists node n1, alive" wait_until node_shown n1 true
ok "...and node n2, alive" wait_until node_shown n2 true
out=$(admin n1 status 2>&1)
like "...in a table" "n2 +yes +[0-9]+s +[0-9]+ +[0-9]+" "$out"

like "scctl users --registered on n1: bob is online (on n2)" "bob +yes" "$(admin n1 users --registered 2>&1)"

out=$(admin n1 kick bob 2>&1)
is "scctl kick bob on n1" 0 $? || diag "$out"
bg_wait "$BOB4"
ok "...closes bob's session on n2" test $? != 124
like "...which was told it was kicked" "kicked" "$(cat "$T/bob4.out" "$T/bob4.out.err")"
ok "...n2 logged the kick with its node name" \
	grep -q "User bob kicked by an administrator on another node.*node=n2" "${NODE_LOG[n2]}"

# ---- deliver: a message accepted on n1 for bob on n2 --------------------------------

on n2
check "bob receives on n2" listen_start bob "$T/bob5.out"
BOB5=$SC_BG
ok "n1 knows" wait_until eval \
	"grep -q 'bob' <(admin n1 sessions --json 2>/dev/null | grep '\"node\":\"n2\"')"
on n1
out=$(sc alice send bob "$(marker second) again" 2>&1)
is "alice sends bob a message on n1" 0 $? || diag "$out"
ok "...n2 is told to deliver it to bob's session" \
	wait_until grep -q "another node queued a message for bob: pumping its queue" "${NODE_LOG[n2]}"

# ---- two claims at once ---------------------------------------------------------------

# Two receiving logins of bob on two nodes in the same instant: each node
# hears the other's online while it has bob, and the presence row, read
# once both claims are in, decides. Played here by a node n9 that exists
# only in the database.
NODE9="INSERT INTO sc_nodes (name, started, heartbeat) VALUES ('n9', now(), now() + interval '1 hour')"
check "a node n9 (a row alone)" sql "$NODE9"
fp=$(sql "SELECT fingerprint FROM sc_presence WHERE username = 'bob'")
sql "SELECT pg_notify('securechat', 'online n9 bob $fp')" >/dev/null
ok "n9 says it has bob while the row names n2: n2 reads the row" \
	wait_until grep -q "bob is claimed by another node too; the row names n2" "${NODE_LOG[n2]}"
ok "...and keeps bob's session" eval '! sc_exited "$BOB5"'
sql "UPDATE sc_presence SET node = 'n9' WHERE username = 'bob';
	SELECT pg_notify('securechat', 'online n9 bob $fp')" >/dev/null
bg_wait "$BOB5"
ok "n9 says it again, and the row names n9: n2 gives way" test $? != 124
like "...bob's session on n2 was told it was replaced" "replaced" "$(cat "$T/bob5.out" "$T/bob5.out.err")"
sql "DELETE FROM sc_presence WHERE node = 'n9'; DELETE FROM sc_nodes WHERE name = 'n9';
	SELECT pg_notify('securechat', 'offline n9 bob')" >/dev/null

# Whatever is said on the channels is checked as a peer's words are.
sql "SELECT pg_notify('securechat', 'online n9 Not/Valid SHA256:abc'),
	pg_notify('securechat', 'kick'), pg_notify('securechat_node_n1', 'deliver ' || repeat('x', 40))" >/dev/null
ok "malformed notifications: n1 ignores all three" wait_until eval \
	'[ "$(grep -c "ignoring a malformed notification" "${NODE_LOG[n1]}")" -ge 3 ]'

# ---- node death ---------------------------------------------------------------------

on n2
check "bob receives on n2" listen_start bob "$T/bob6.out"
ok "alice hears he is online" wait_until eval \
	'[ "$(json_count "$T/alice.out" -m user=bob -m event=online presence)" -gt \
	   "$(json_count "$T/alice.out" -m user=bob -m event=offline presence)" ]'

# A node whose rows are gone (taken for dead after a long stall) writes
# them again at its next heartbeat.
check "n2's rows deleted behind its back" \
	sql "DELETE FROM sc_presence WHERE node = 'n2'; DELETE FROM sc_nodes WHERE name = 'n2'"
ok "...n2 notices at its next heartbeat" wait_until grep -q "node n2 was taken for dead" "${NODE_LOG[n2]}"
ok "...and writes bob's presence row again" wait_until eval \
	'[ "$(sql "SELECT node FROM sc_presence WHERE username = '"'bob'"'")" = n2 ]'

# Connections lost (the server ended them): both nodes connect again and
# say everything again.
check "the database ends both nodes' connections" \
	sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'securechatd'"
reconnected() { # NAME
	[ "$(grep -c "Cluster: node $1 connected to the database" "${NODE_LOG[$1]}")" -ge 2 ]
}
ok "...they connect again" wait_until eval 'reconnected n1 && reconnected n2'
like "...the loss was logged once, as a warning" "node n1 has no database connection" \
	"$(grep "no database connection" "${NODE_LOG[n1]}")"
ok "...n1 still lists bob on n2" wait_until eval \
	"grep -q 'bob' <(admin n1 sessions --json 2>/dev/null | grep '\"node\":\"n2\"')"

# The safety net: a message past the cursor of bob's session, of which no
# deliver was heard (its node died between the commit and the
# notification), is found at n2's next heartbeat.
check "a message for bob in the shared queue, unannounced" \
	sql "INSERT INTO sc_queue (seq, recipient, sender, msg_id, envelope, size, received, expires)
		VALUES (1000000, 'bob', 'nobody', 'unannounced', '{}', 2, 0, 4102444800)"
ok "...n2 finds it at a heartbeat and pumps bob's queue" wait_until grep -q \
	"the queue of bob holds seq 1000000 past its cursor" "${NODE_LOG[n2]}"
sql "DELETE FROM sc_queue WHERE seq = 1000000"

offline_before=$(json_count "$T/alice.out" -m user=bob -m event=offline presence)
start=$(now_ms)
kill -KILL "${NODE_PID[n2]}"
ok "kill -9 of n2: alice hears bob is offline" \
	wait_json "$T/alice.out" $((offline_before + 1)) -m user=bob -m event=offline presence
elapsed=$(( $(now_ms) - start ))
# node-timeout, and the heartbeat of n1 that notices (every third of it),
# and slack for a loaded machine.
ok "...within node-timeout and a heartbeat ($elapsed ms)" test "$elapsed" -lt $(( (TIMEOUT * 2 + 5) * 1000 ))
is "...bob's presence row is gone" 0 "$(sql "SELECT count(*) FROM sc_presence WHERE username = 'bob'")"
ok "scctl status on n1 shows n2 dead" wait_until node_shown n2 false

# ---- a clean stop ---------------------------------------------------------------------

kill -TERM "${NODE_PID[n1]}"
wait_exit "${NODE_PID[n1]}"
is "n1 stops and deletes its rows" "0 0" \
	"$(sql "SELECT count(*) FROM sc_presence WHERE node = 'n1'") $(sql "SELECT count(*) FROM sc_nodes WHERE name = 'n1'")"
ok "...every event of n1 carried its node name" \
	test "$(grep -c 'event=' "${NODE_LOG[n1]}")" = "$(grep -c 'event=.*node=n1' "${NODE_LOG[n1]}")"

ok "the markers are found in what bob printed (on n1)" grep -qaF -- "$SC_MARK_PREFIX" "$T"/bob*.out
is "no message text in either node's state directory or log" "" \
	"$(grep -rlaF -- "$SC_MARK_PREFIX" "$T/n1" "$T/n2" "${NODE_LOG[n1]}" "${NODE_LOG[n2]}" 2>&1)"
done_testing
