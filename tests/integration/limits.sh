#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The abuse limits of issue 8 through the real relay, with small limits so
# that the abuse is quick: clients on 127.0.0.2, .3 and .4 play attackers
# (sc-raw --source), scctl on 127.0.0.1 the legitimate users, who must go
# on working meanwhile.
#
# - idle connections from one address (max-preauth-per-address) and
#   logged-in ones (max-connections-per-address) are refused at accept;
# - mass registration from one address hears rate_limited with retry_after
#   (registration-rate) while another address still registers;
# - a burst of bare handshakes from one address is cut at connection-burst:
#   the relay starts no TLS handshake for the rest (connection-rate);
# - one sender fills its share of a recipient's queue, another still gets
#   through (queue-limit-per-sender);
# - a user over message-rate hears rate_limited with retry_after and the
#   request's id, the session stays; scctl send and connect wait and retry,
#   or give up with EXIT_RATE_LIMITED when --timeout is shorter;
# - a login refused with rate_limited (registration) is retried the same way;
# - trusted-networks are exempt;
# - refusals are counted one by one in status, but not logged one by one;
# - with no rate at all, clients that always have more to send do not keep
#   the relay from everyone else's sockets.

SC_SCRIPT=limits
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

export SECURECHAT_CONTROL=$T/control

# Refusals of limit NAME so far, from "scctl status --json".
hits() { # NAME
	"$SCCTL" --timeout "$SC_WAIT" status --json | "$SC_JSON" status limits |
		sed -n "s/.*{\"name\":\"$1\",\"hits\":\([0-9]*\).*/\1/p"
}

hits_at_least() { # NAME N
	[ "$(hits "$1")" -ge "$2" ]
}

# Lines the relay logged for limit NAME.
limit_lines() { # NAME
	relay_count "event=limit-hit .*reason=$1"
}

raw() { # SOURCE ARGS...
	local src=$1
	shift
	# In a subshell (bg_start's, or $(...)), become sc-raw: bg_stop's
	# signal must reach it, not a shell that would leave it running.
	[ "$BASHPID" = "$$" ] || exec "$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" --source "$src" 127.0.0.1 "$SC_PORT" "$@"
	"$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" --source "$src" 127.0.0.1 "$SC_PORT" "$@"
}

send_text() { # USER TO TEXT...: scctl send's exit status and stdout
	local user=$1 to=$2 out
	shift 2
	out=$(sc "$user" send "$to" "$*" 2>>"$T/send.err")
	echo "$? $out"
}

# ---- idle connections from one address (case 1) ------------------------------

check "relay starts with max-preauth-per-address=4" relay_start -o max-preauth-per-address=4 \
	-o connection-burst=1000 -o handshake-timeout=120s
check "alice registers" sc_init alice
check "bob registers" sc_init bob
before=$(hits max-preauth-per-address)
bg_start "$T/hold.out" "$T/hold.err" raw 127.0.0.2 -e "hold 200" -e "sleep 120000"
HOLD=$SC_BG
ok "200 idle connections from 127.0.0.2: all but 4 refused at accept" \
	wait_until hits_at_least max-preauth-per-address $((before + 196))
is "alice, on 127.0.0.1, still sends" "0 queued" "$(send_text alice bob "$(marker idle1) while .2 holds")"
is "...and again" "0 queued" "$(send_text alice bob "$(marker idle2) while .2 holds")"
n=$(limit_lines max-preauth-per-address)
ok "the 196 refusals are not logged one by one ($n lines)" test "$n" -ge 1 -a "$n" -le 3
ok "...the line names the address and the limit" \
	relay_logged "Refusing connection from 127\.0\.0\.2:.*reason=max-preauth-per-address"
bg_stop "$HOLD"

# trusted-networks: the same from a trusted address is not limited.
relay_stop
check "relay restarts with max-preauth-per-address=4, trusted-networks=127.0.0.2/32" \
	relay_start -o max-preauth-per-address=4 -o connection-burst=1 -o trusted-networks=127.0.0.2/32
before=$(hits max-preauth-per-address)
bg_start "$T/hold3.out" "$T/hold3.err" raw 127.0.0.2 -e "hold 50" -e "sleep 120000"
HOLD=$SC_BG
ok "50 idle connections from the trusted 127.0.0.2 are all accepted" \
	wait_until eval '[ "$(relay_count "Connection from 127\.0\.0\.2:")" -ge 50 ]'
is "...none refused" "$before 0" "$(hits max-preauth-per-address) $(hits connection-rate)"
bg_stop "$HOLD"

# The global bound at accept (max-sessions + 64) is still there for many
# addresses each within its own limits: counted one by one, logged once.
relay_stop
check "relay restarts with max-sessions=1 and per-address limits out of the way" \
	relay_start -o max-sessions=1 -o max-preauth-per-address=1000 -o max-connections-per-address=1000 \
	-o connection-burst=1000 -o handshake-timeout=120s
bg_start "$T/hold2.out" "$T/hold2.err" raw 127.0.0.2 -e "hold 100" -e "sleep 120000"
HOLD=$SC_BG
ok "100 idle connections: those over max-sessions + 64 refused at accept" \
	wait_until hits_at_least max-sessions 35
n=$(limit_lines max-sessions)
ok "...and logged in at most 2 lines ($n)" test "$n" -ge 1 -a "$n" -le 2
bg_stop "$HOLD"

# ---- mass registration, and logged-in connections, from one address (case 1) -----

relay_stop
check "relay restarts with registration-burst=3, registration-rate=1/h, max-connections-per-address=3" \
	relay_start -o registration-burst=3 -o registration-rate=1/h -o max-connections-per-address=3
script=(-e "key $T/mass.key")
for i in 1 2 3; do
	script+=(-e connect -e "auth mass$i send" -e "expect welcome" -e bye -e eof)
done
script+=(-e connect -e "auth mass4 send" -e "expect error rate_limited" -e eof)
raw 127.0.0.3 "${script[@]}" >"$T/mass.out" 2>&1
is "from 127.0.0.3: three registrations, the fourth refused with rate_limited" 0 $?
like "...carrying retry_after" '"code":"rate_limited".*"retry_after":[1-9][0-9]*|"retry_after":[1-9][0-9]*.*"code":"rate_limited"' \
	"$(grep '^< .*rate_limited' "$T/mass.out")"
ok "...counted under registration-rate" hits_at_least registration-rate 1
ok "...mass4 is not registered" test "$(relay_count 'Registered new user mass4')" -eq 0
check "carol, from 127.0.0.1, still registers" sc_init carol

# Three sessions from 127.0.0.3 (registered already: no registration
# needed), then a fourth connection.
for i in 1 2 3; do
	bg_start "$T/held$i.out" "$T/held$i.err" raw 127.0.0.3 -e "key $T/mass.key" -e connect \
		-e "auth mass$i send" -e "expect welcome" -e "sleep 120000"
	eval "HELD$i=\$SC_BG"
	wait_until grep -q '^< {"type":"welcome"' "$T/held$i.out"
done
ok "three logged-in sessions from 127.0.0.3" grep -q welcome "$T/held3.out"
before=$(hits max-connections-per-address)
raw 127.0.0.3 -e "key $T/mass.key" -e connect -e "auth mass1 send" >"$T/fourth.out" 2>&1
rc=$?
ok "a fourth connection from 127.0.0.3 is closed unheard" test "$rc" -ne 0 -a "$(grep -c '^<' "$T/fourth.out")" -eq 0
ok "...counted under max-connections-per-address" hits_at_least max-connections-per-address $((before + 1))
is "alice still sends meanwhile" "0 queued" "$(send_text alice bob "$(marker held) while .3 is at its limit")"
bg_stop "$HELD1"
bg_stop "$HELD2"
bg_stop "$HELD3"

# ---- a burst of bare handshakes from one address (case 2) -------------------------

relay_stop
check "relay restarts with connection-rate=1/min, connection-burst=5" \
	relay_start -o connection-rate=1/min -o connection-burst=5
raw 127.0.0.4 -e "handshakes 40" >"$T/hs.out" 2>/dev/null
like "40 handshakes from 127.0.0.4: at most 5 get as far as the relay's hello" \
	'^# handshakes: [0-5] of 40$' "$(grep '^# handshakes' "$T/hs.out")"
ok "...the rest counted under connection-rate" hits_at_least connection-rate 35
n=$(relay_count 'Connection from 127\.0\.0\.4:')
ok "...the relay started a session (and a TLS handshake) for at most 5 ($n)" test "$n" -le 5
n=$(limit_lines connection-rate)
ok "...and logged the 35 refusals in at most 2 lines ($n)" test "$n" -ge 1 -a "$n" -le 2
is "alice, on 127.0.0.1, sends meanwhile" "0 queued" "$(send_text alice bob "$(marker hs) after the burst")"

# ---- one sender's share of a recipient's queue (case 8) ----------------------------

relay_stop
check "relay restarts with queue-limit=10, queue-limit-per-sender=3" \
	relay_start -o queue-limit=10 -o queue-limit-per-sender=3
# bob's queue has the messages of the parts above.
sc bob --json inbox >"$T/inbox0.json" 2>/dev/null
for i in 1 2 3; do
	is "alice's message $i of 3 to bob is queued" "0 queued" "$(send_text alice bob "$(marker share$i) share $i")"
done
sc alice send bob "$(marker share4) one over the share" >"$T/share4.out" 2>"$T/share4.err"
is "the fourth: EXIT_REFUSED" $EXIT_REFUSED $?
like "...queue_full, for alice's share" "queue_full.*share" "$(cat "$T/share4.err")"
ok "...counted under queue-limit-per-sender" hits_at_least queue-limit-per-sender 1
is "carol still gets a message into bob's queue" "0 queued" "$(send_text carol bob "$(marker carol) from carol")"
sc bob --json inbox >"$T/inbox1.json" 2>/dev/null
is "bob's inbox has alice's 3 and carol's 1" 4 "$(json_count "$T/inbox1.json" message)"

# ---- messages per user (rate_limited, retry_after) ----------------------------------

relay_stop
check "relay restarts with message-rate=1/2s, message-burst=2" \
	relay_start -o message-rate=1/2s -o message-burst=2
raw 127.0.0.1 -e "key $T/dave.key" -e connect -e "auth dave send" -e "expect welcome" \
	-e "send bob one" -e "expect accepted" -e "send bob two" -e "expect accepted" \
	-e "send bob three" -e "expect error rate_limited" -e ping -e "silence 1000" -e "wait pong" \
	-e bye -e eof >"$T/rate.out" 2>&1
is "dave's third message in a row hears rate_limited; the relay reads nothing more from him for a while (a ping unanswered for 1 s), then answers: the session stays" 0 $?
err=$(grep '^< .*rate_limited' "$T/rate.out")
like "...with retry_after" '"retry_after":[1-9]' "$err"
id=$(grep '^> .*"type":"send"' "$T/rate.out" | sed -n '3s/.*"id":\([0-9][0-9]*\).*/\1/p')
like "...and the send's id ($id)" "\"id\":$id[,}]" "$err"
ok "...counted under message-rate" hits_at_least message-rate 1

: >"$T/send.err"
is "alice's first message is accepted" "0 queued" "$(send_text alice bob "$(marker r1) one")"
is "...and her second" "0 queued" "$(send_text alice bob "$(marker r2) two")"
is "the third waits out rate_limited, then is accepted" "0 queued" "$(send_text alice bob "$(marker r3) three")"
like "...saying so on stderr" "rate limited by the relay; retrying in [0-9]+ s" "$(cat "$T/send.err")"

printf 'bob:%s\n' "$(marker c1) c1" "$(marker c2) c2" "$(marker c3) c3" "$(marker c4) c4" >"$T/connect.in"
printf 'quit\n' >>"$T/connect.in"
sc alice connect <"$T/connect.in" >"$T/connect.out" 2>"$T/connect.err"
is "connect with 4 lines at once exits 0" 0 $?
is "...each queued, in turn" 4 "$(grep -cx -- '-> bob: queued' "$T/connect.out")"
like "...after waiting out rate_limited" "rate limited by the relay; retrying in" "$(cat "$T/connect.err")"

relay_stop
check "relay restarts with message-rate=1/min, message-burst=1, registration-rate=1/10s, registration-burst=1" \
	relay_start -o message-rate=1/min -o message-burst=1 -o registration-rate=1/10s -o registration-burst=1
check "erin registers" sc_init erin
sc frank init --bits 2048 >"$T/frank.out" 2>"$T/frank.err"
is "frank, right after, waits out rate_limited and registers" 0 $?
like "...saying so on stderr" "rate limited by the relay; retrying in [0-9]+ s" "$(cat "$T/frank.err")"
sc_argv gina
"${SC_ARGV[@]}" --timeout 3 init --bits 2048 >"$T/gina.out" 2>"$T/gina.err"
is "gina, with --timeout 3 against a longer retry_after: EXIT_RATE_LIMITED" $EXIT_RATE_LIMITED $?
like "...saying why" "rate_limited.*--timeout" "$(cat "$T/gina.err")"
is "alice's message is accepted" "0 queued" "$(send_text alice bob "$(marker m1) one")"
sc_argv alice
"${SC_ARGV[@]}" --timeout 3 send bob "$(marker m2) two" >"$T/giveup.out" 2>"$T/giveup.err"
is "the next, with --timeout 3 against retry_after 60: EXIT_RATE_LIMITED" $EXIT_RATE_LIMITED $?
like "...saying why" "rate limited by the relay.*--timeout" "$(cat "$T/giveup.err")"

sc bob --json inbox >"$T/inbox2.json" 2>/dev/null
check_privacy "$T/inbox0.json" "$T/inbox1.json" "$T/inbox2.json"
relay_stop

# ---- fairness: the event loop itself, with no rate to help it -----------------------

# Eight clients write send frames as fast as their sockets take them. A
# session that always has more to read gives the others a turn after each
# of its own; the relay used to come back to it before polling the other
# sockets again, so that, with enough such sessions, nobody else was ever
# heard: a plain scctl send waited out its --timeout.
check "relay restarts with message-rate=0, trusted-networks=127.0.0.0/8" \
	relay_start -o message-rate=0 -o trusted-networks=127.0.0.0/8 -o queue-limit=100000 \
	-o queue-limit-per-sender=100%
FLOODERS=
for i in 1 2 3 4 5 6 7 8; do
	bg_start "$T/flood$i.out" "$T/flood$i.err" raw 127.0.0.1 -e "key $T/flood$i.key 2048" -e connect \
		-e "auth flooder$i send" -e "expect welcome" -e "flood carol 200 60"
	FLOODERS="$FLOODERS $SC_BG"
done
ok "eight clients flood carol with sends" \
	wait_until -t 60 eval '[ "$(cat "$T"/flood?.out | grep -c "^# flooding")" -eq 8 ]'
sc_argv alice
out=$("${SC_ARGV[@]}" --timeout 20 send bob "$(marker fair) meanwhile" 2>"$T/fair.err")
is "meanwhile, alice's send is answered within its --timeout" "0 queued" "$? $out"
for pid in $FLOODERS; do bg_stop "$pid"; done
relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
