#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The control socket and scctl's administration commands against a real
# relay: status, sessions, users --registered, monitor, kick, reset-key,
# reload (good and bad configuration), raw Varlink calls (GetInfo, the
# interface description, the standard errors, pipelining), the bounds
# (message size, connections per uid, a monitor that does not read), a
# caller who is not allowed (as nobody, when run as root) and the audit
# records, and the socket's lifetime (mode, stale socket, removal).
#
# No root needed: the relay lets its own uid in (securechatd(8)).

SC_SCRIPT=admin
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

SC_VARLINK=$SC_BUILDDIR/tests/integration/sc-varlink
[ -x "$SC_VARLINK" ] || skip_all "$SC_VARLINK is not built (make check builds it)"

CONTROL=$T/control
CONF=$T/securechatd.conf
export SECURECHAT_CONTROL=$CONTROL

admin() { # ARGS...: scctl's admin verbs, on $CONTROL by way of the environment
	"$SCCTL" --timeout "$SC_WAIT" "$@"
}

vl() { # [OPTIONS] [MESSAGE...]: raw Varlink on $CONTROL (sc-varlink)
	"$SC_VARLINK" -t "$SC_WAIT" "$CONTROL" "$@"
}

field() { # TYPE FIELD < JSON-LINES
	"$SC_JSON" "$1" "$2"
}

status_field() { # FIELD
	admin status --json | field status "$1"
}

monitors_are() { # N
	[ "$(status_field monitors)" = "$1" ]
}

sessions_are() { # N
	[ "$(status_field sessions)" = "$1" ]
}

status_is() { # "FIELD..." "VALUE..."
	local out f got=
	out=$(admin status --json) || return 1
	for f in $1; do got="$got $(field status "$f" <<<"$out")"; done
	[ "${got# }" = "$2" ]
}


# ---- before the relay runs ----------------------------------------------------

fails_with "status without a relay exits $EXIT_CONNECT" $EXIT_CONNECT admin status
like "...and says the relay is not running, or how to point at it" \
	"No control socket at $CONTROL: the relay is not running, or .*-o control=PATH.*--control PATH" \
	"$(admin status 2>&1)"

printf '[server]\nidle-timeout = 10m\n' >"$CONF"
check "relay starts with -c $CONF and its control socket at \$T/control" \
	relay_start -c "$CONF" -o control="$CONTROL" || done_testing
ok "the control socket appears" wait_until test -S "$CONTROL"
is "it is mode 0660" 660 "$(stat -c %a "$CONTROL")"
like "the relay says where it listens for control connections" \
	"Accepting control connections on $CONTROL" "$(cat "$SC_RELAY_LOG")"

# ---- status, raw Varlink --------------------------------------------------------

out=$(admin status --json)
is "status --json exits 0" 0 $?
is "status --json: version" "$("$SECURECHATD" --version | sed 's/^securechatd \([^ ]*\) .*/\1/')" \
	"$(field status version <<<"$out")"
is "status --json: the listening address" "[\"127.0.0.1:$SC_PORT\"]" "$(field status listen <<<"$out")"
is "status --json: tls" "$([ "$SC_TLS" = yes ] && echo true || echo false)" "$(field status tls <<<"$out")"
is "status --json: the server key is the one the relay logged" \
	"$(sed -n 's/.*Server identity \(SHA256:[^ ]*\) .*/\1/p' "$SC_RELAY_LOG")" \
	"$(field status server_fingerprint <<<"$out")"
is "status --json: no sessions, no users yet" "0 0 0 0" \
	"$(for f in sessions receiving_sessions users_online users_registered; do field status $f <<<"$out"; done | xargs)"
like "status in words" "^securechatd .* up .*Sessions: +0 " "$(admin status | tr '\n' ' ')"
like "...no limit refused anything yet" "Limits hit: +none" "$(admin status)"
like "status --json: every limit with its value, none hit" \
	'\{"name":"max-frame","hits":0,"value":"[0-9]+[KM]?"\}' "$(field status limits <<<"$out")"
"$SC_RAW" $SC_RAW_TLS --timeout 15 127.0.0.1 "$SC_PORT" -e connect -e "expect hello" -e "len 0x7fffffff" \
	-e "expect error bad_frame" -e eof >/dev/null 2>&1
ok "a frame over max-frame is counted under its limit" \
	wait_until eval '[[ $(admin status --json | field status limits) =~ \{\"name\":\"max-frame\",\"hits\":1, ]]'
like "...and status in words names it" "Limits hit: +max-frame \([0-9]+[KM]?\) 1x" "$(admin status)"

# A relay from before the commit counts (d9de75d) has no commits in its
# Status: scctl prints no Commits line for it rather than "0".
like "status in words counts the commits" "Commits: +[0-9]+" "$(admin status)"
old_status=$(vl '{"method":"io.securechat.Control.Status"}' |
	sed -E 's/"commits":[0-9]+,//; s/"committed_requests":[0-9]+,//')
bg_start "$T/old.out" "$T/old.err" "$SC_VARLINK" --serve -t "$SC_WAIT" "$T/old-control" "$old_status"
OLD=$SC_BG
wait_until test -S "$T/old-control"
out=$(SECURECHAT_CONTROL=$T/old-control admin status)
is "status of a relay without commit counts exits 0" 0 $?
like "...says the rest" "Queued messages: +[0-9]+" "$out"
unlike "...but no Commits line" "Commits:" "$out"
bg_wait "$OLD"
like "...having asked for Status" '"method":"io.securechat.Control.Status"' "$(cat "$T/old.out")"

like "GetInfo: both interfaces, vendor, product, version" \
	'^\{"parameters":\{"interfaces":\["org.varlink.service","io.securechat.Control"\],"vendor":"SecureChat","product":"securechatd","version":"[^"]+","url":' \
	"$(vl '{"method":"org.varlink.service.GetInfo"}')"
like "GetInterfaceDescription describes io.securechat.Control" \
	'interface io.securechat.Control\\n.*method Kick\(user: string\) -> \(sessions_closed: int\)' \
	"$(vl '{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.securechat.Control"}}')"
is "an unknown method: MethodNotFound" \
	'{"error":"org.varlink.service.MethodNotFound","parameters":{"method":"io.securechat.Control.Shutdown"}}' \
	"$(vl '{"method":"io.securechat.Control.Shutdown"}')"
is "an unknown interface: InterfaceNotFound" \
	'{"error":"org.varlink.service.InterfaceNotFound","parameters":{"interface":"org.example.Other"}}' \
	"$(vl '{"method":"org.example.Other.Call"}')"
is "an unknown parameter: InvalidParameter" \
	'{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"verbose"}}' \
	"$(vl '{"method":"io.securechat.Control.Status","parameters":{"verbose":true}}')"
is "a bad user name: InvalidParameter" \
	'{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"user"}}' \
	"$(vl '{"method":"io.securechat.Control.Kick","parameters":{"user":"../etc"}}')"
is "Monitor without more: ExpectedMore" '{"error":"org.varlink.service.ExpectedMore","parameters":{}}' \
	"$(vl '{"method":"io.securechat.Control.Monitor"}')"
# (A relay of several on PostgreSQL says more after its sessions: the other
# nodes' receivers, its node name.)
is "two calls in one write: two replies, in order" \
	"$(printf '%s\n' '{"parameters":{"users":[]}}' '{"parameters":{"sessions":[]')" \
	"$(vl '{"method":"io.securechat.Control.ListUsers"}' '{"method":"io.securechat.Control.ListSessions"}' |
		sed '2s/^\({"parameters":{"sessions":\[\]\).*/\1/')"
is "a oneway call gets no reply (the next call's reply comes first)" '{"parameters":{"users":[]}}' \
	"$(vl -n 1 '{"method":"io.securechat.Control.ListSessions","oneway":true}' \
		'{"method":"io.securechat.Control.ListUsers"}')"
is "a message over 64 KiB: the relay hangs up" EOF "$(vl -n 0 --junk 70000)"
is "malformed JSON: the relay hangs up" EOF "$(vl -n 0 '{"method":')"
is "JSON that is not a call: the relay hangs up" EOF "$(vl -n 0 '["method"]')"
# json-c keeps the last of two members with the same name, and C compares
# a string only up to a NUL: neither may make a call read two ways.
is "a duplicate member: the relay hangs up" EOF \
	"$(vl -n 0 '{"method":"io.securechat.Control.ListUsers","method":"io.securechat.Control.ListUsers"}')"
is "a duplicate member in the parameters: the relay hangs up" EOF \
	"$(vl -n 0 '{"method":"io.securechat.Control.Kick","parameters":{"user":"x","user":"y"}}')"
is "an interface name with \\u0000 inside: the relay hangs up" EOF \
	"$(vl -n 0 '{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.securechat.Control\u0000junk"}}')"
ok "...and still answers others" admin status

# ---- sessions and users ---------------------------------------------------------

ok "alice registers" sc_init alice
ok "bob registers" sc_init bob
BOB_FP=$(sc bob fingerprint)
BOB_FP_RE=$(sed 's/[+.]/\\&/g' <<<"$BOB_FP")    # base64 has "+"
check "bob listens" listen_start bob "$T/bob.json"
BOB=$SC_BG

out=$(admin sessions --json)
is "sessions --json: one session" 1 "$(grep -o '"id":' <<<"$out" | wc -l)"
like "...bob's receiving session, with his key" \
	"\"user\":\"bob\",\"peer\":\"127.0.0.1:[0-9]+\",\"fingerprint\":\"$BOB_FP_RE\",\"receive\":true" "$out"
like "sessions in words shows bob receiving" "^bob +receive +127\\.0\\.0\\.1:[0-9]+ " \
	"$(admin sessions | sed -n 2p)"

out=$(admin users --registered --json)
is "users --registered --json: type registry" registry "$(sed 's/.*"type":"\([^"]*\)".*/\1/' <<<"$out")"
like "...bob online, with his key and one session" \
	"\\{\"user\":\"bob\",\"fingerprint\":\"$BOB_FP_RE\",\"registered\":[0-9]+,\"online\":true,\"sessions\":1,\"queued\":0\\}" \
	"$out"
like "...alice offline" '\{"user":"alice","fingerprint":"SHA256:[^"]*","registered":[0-9]+,"online":false' "$out"
is "users --registered in words: a header and two users" "USER alice bob" \
	"$(admin users --registered | awk '{print $1}' | LC_ALL=C sort | xargs)"
is "users without --registered still asks the relay who is online" "bob  $BOB_FP  suite 1 (no forward secrecy)" \
	"$(sc alice users 2>/dev/null)"
ok "status: one session, one user online, two registered" \
	wait_until status_is "sessions users_online users_registered" "1 1 2"

# ---- monitor --------------------------------------------------------------------

bg_start "$T/mon.json" "$T/mon.err" "$SCCTL" --json monitor
MON=$SC_BG
ok "monitor subscribes (status counts it)" wait_until monitors_are 1
ok "alice connects" sc alice users
ok "monitor --json shows alice's login" \
	wait_until grep -q '"type":"event","name":"handshake-ok",.*"fields":{"user":"alice"' "$T/mon.json"
like "...with its MESSAGE_ID and priority" \
	'"name":"handshake-ok","message_id":"c53c9c831b9f401486999fd89c32ccc9","priority":6,"time":[0-9]{16},"message":"User alice logged in' \
	"$(grep -m1 '"name":"handshake-ok"' "$T/mon.json")"
ok "...and every line is one JSON object of type event" \
	test "$(json_count "$T/mon.json" event)" -eq "$(wc -l <"$T/mon.json")"

# ---- kick -----------------------------------------------------------------------

is "kick bob: one session closed" "Kicked bob: 1 session closed." "$(admin kick bob)"
bg_wait "$BOB"
is "bob's listen ends, as kicked ($EXIT_CONNECT)" $EXIT_CONNECT $?
like "...and says an administrator ended it" "administrator" "$(cat "$T/bob.json.err")"
ok "status: no sessions left" wait_until sessions_are 0
ok "monitor shows the command and the kick" \
	wait_until grep -q '"name":"user-kicked",.*"fields":{"user":"bob"' "$T/mon.json"
like "the relay audited the command with the caller's uid" \
	"Control command Kick bob from uid $(id -u) .*event=control-command user=bob peer=uid=$(id -u),pid=[0-9]+ reason=Kick" \
	"$(cat "$SC_RELAY_LOG")"
is "kick --json" '{"type":"kicked","sessions_closed":0,"user":"bob"}' "$(admin --json kick bob)"
fails_with "kick of an unknown user exits $EXIT_REFUSED" $EXIT_REFUSED admin kick carol
like "...and says so" "no user carol is registered" "$(admin kick carol 2>&1)"
fails_with "kick of a malformed name is a usage error" $EXIT_USAGE admin kick 'Not A Name'
fails_with "kick without a user is a usage error" $EXIT_USAGE admin kick

# ---- reset-key ------------------------------------------------------------------

# Whoever registered the name first after a reset used to get it, and with
# it the right to acknowledge (delete) the messages queued for it. Now the
# name needs the one-time code that reset-key prints, and the messages
# sealed to the old key are dropped (no new key could open them).
out=$(sc bob send alice "$(marker forold) sealed to alice's old key" 2>/dev/null)
is "bob queues a message for alice" "0 queued" "$? $out"
json=$(admin reset-key alice --json)
like "reset-key alice --json: a one-time code, and the message it dropped" \
	'^\{"type":"key-reset","code":"[0-9a-f]{4}(-[0-9a-f]{4}){5}","messages_dropped":1,"user":"alice"\}$' "$json"
code=$(sed -n 's/.*"code":"\([^"]*\)".*/\1/p' <<<"$json")
is "alice is no longer registered" "bob" "$(admin users --registered --json | grep -o '"user":"[a-z]*"' | cut -d'"' -f4 | xargs)"
like "the relay logged the key reset" "event=key-reset user=alice" "$(cat "$SC_RELAY_LOG")"
like "...and the dropped message (messages-dropped)" "Dropped 1 message .*event=messages-dropped user=alice " \
	"$(cat "$SC_RELAY_LOG")"
unlike "...but never the code" "${code:-nocode}" "$(cat "$SC_RELAY_LOG")"
sc_at "$T/home-mallory" alice init --bits 2048 >"$T/taken.out" 2>"$T/taken.err"
is "someone else registering alice without the code: EXIT_AUTH" "$EXIT_AUTH" $?
like "...naming code_required" "code_required" "$(cat "$T/taken.err")"
sc_at "$T/home-mallory" alice init --bits 2048 --code 0000-0000-0000-0000-0000-0000 >"$T/taken.out" 2>"$T/taken.err"
is "...or with a wrong code: EXIT_AUTH" "$EXIT_AUTH" $?
ok "alice registers again with the code" sc alice init --code "$code"
is "...so she is back in the registry" "alice bob" \
	"$(admin users --registered --json | grep -o '"user":"[a-z]*"' | cut -d'"' -f4 | xargs)"
sc alice --json inbox >"$T/reset-inbox.json" 2>/dev/null
is "...with nothing waiting (the old key's message was dropped)" 0 "$(json_count "$T/reset-inbox.json" message)"
sc_at "$T/home-mallory" alice init --bits 2048 --code "$code" >"$T/taken.out" 2>"$T/taken.err"
is "the code is spent: using it again is refused (key_mismatch)" "$EXIT_AUTH" $?
words=$(admin reset-key bob)
like "reset-key in words names the code" "scctl init --code [0-9a-f-]{29}" "$words"
ok "bob registers again with it" sc bob init --code "$(sed -n 's/.*--code \([0-9a-f-]*\).*/\1/p' <<<"$words")"
fails_with "reset-key of an unknown user exits $EXIT_REFUSED" $EXIT_REFUSED admin reset-key carol

# ---- reload ---------------------------------------------------------------------

is "reload with a good configuration" "The relay reloaded its configuration." "$(admin reload)"
like "...and the relay logged it" "Configuration reloaded" "$(cat "$SC_RELAY_LOG")"
printf '[server]\nidle-timeout = 10m\nno-such-key = 1\n' >"$CONF"
fails_with "reload with a bad configuration exits $EXIT_REFUSED" $EXIT_REFUSED admin reload
like "...and names the file and line" "the relay kept its old configuration: $CONF:3: .*no-such-key" \
	"$(admin reload 2>&1)"
ok "...and the relay goes on" admin status
printf '[server]\nidle-timeout = 10m\n' >"$CONF"
ok "reload works again once the file is fixed" admin reload

reloads_seen() {
	[ "$(grep -c '"name":"reload"' "$T/mon.json") $(grep -c '"name":"reload-failed"' "$T/mon.json")" = "2 2" ]
}
ok "the monitor saw both reloads and both failed ones" wait_until reloads_seen
bg_stop "$MON"
is "scctl monitor exits 0 on SIGTERM" 0 $?

# securechatd --reload, the unit's ExecReload=: the same call, and a
# refused configuration makes it (and so "systemctl reload") fail.
reload_daemon() { "$SECURECHATD" --reload -c "$CONF" -o control="$CONTROL"; }
out=$(reload_daemon 2>&1)
is "securechatd --reload with a good configuration" "0" "$?"
like "...says so" "The relay reloaded its configuration" "$out"
printf '[server]\nidle-timeout = 10m\nno-such-key = 1\n' >"$CONF"
out=$(reload_daemon 2>&1)
is "securechatd --reload with a bad configuration exits 1" 1 "$?"
like "...with the relay's reason" "kept its old configuration: $CONF:3: .*no-such-key" "$out"
printf '[server]\nidle-timeout = 10m\n' >"$CONF"
out=$("$SECURECHATD" --reload -o control="$T/no-such-socket" 2>&1)
is "securechatd --reload without a relay exits 1" 1 "$?"
like "...and says where it looked" "not running \\(no control socket at $T/no-such-socket; -o control=PATH" "$out"
ok "...and the relay forgets the subscriber" wait_until monitors_are 0

# ---- bounds ---------------------------------------------------------------------

# Sixteen connections of our uid, held open: the seventeenth is turned
# away. (The relay accepts in the order of connect(); the first one's
# reply means all sixteen are in.)
bg_start "$T/hold.out" "$T/hold.err" "$SC_VARLINK" -t 600 -n 0 -c 16 "$CONTROL" \
	'{"method":"io.securechat.Control.ListSessions"}'
HOLD=$SC_BG
ok "16 connections of one uid" wait_until grep -q '"sessions"' "$T/hold.out"
fails_with "a 17th from the same uid is closed at once ($EXIT_CONNECT)" $EXIT_CONNECT admin status
like "...with a limit-hit audit record" \
	"event=limit-hit peer=uid=$(id -u),pid=[0-9]+ reason=control-connections-per-uid" "$(cat "$SC_RELAY_LOG")"
bg_stop "$HOLD"
ok "once they close, calls work again" wait_until admin status

# A subscriber that does not read: cut off with an error once its backlog
# reaches the bound, never allowed to grow. Each Kick of an unknown user
# is one audited event.
mkfifo "$T/slow.in"
"$SC_VARLINK" -t 600 -n 0 --hold "$CONTROL" '{"method":"io.securechat.Control.Monitor","more":true}' \
	<"$T/slow.in" >"$T/slow.out" 2>&1 &
SLOW=$!
SC_PIDS="$SC_PIDS $SLOW"
exec 7>"$T/slow.in"
ok "a slow subscriber subscribes" wait_until monitors_are 1
kicks=()
for i in $(seq 1000); do kicks+=('{"method":"io.securechat.Control.Kick","parameters":{"user":"nosuch"}}'); done
for round in 1 2 3 4 5 6 7 8 9 10; do
	vl -n 1000 "${kicks[@]}" >/dev/null
	relay_logged "does not read its Monitor events" && break
done
ok "the relay cuts the slow subscriber off (after ${round}000 events)" relay_logged "does not read its Monitor events"
ok "...and forgets it at once" monitors_are 0
echo go >&7
exec 7>&-
bg_wait "$SLOW"
is "...which then reads the events the kernel held, the error, and the end" \
	"$(printf '%s\n' '{"error":"io.securechat.Control.BacklogExceeded","parameters":{"limit":1048576}}' EOF)" \
	"$(tail -n 2 "$T/slow.out")"
ok "the relay is alive" relay_alive

# Calls sent in one go by a caller who reads only afterwards: the first
# replies fill the output and the rest of the calls wait, already read, in
# the relay. No new byte will come to wake it for them: they are answered
# as the caller reads.
# 37 calls (4 KiB, one read) answered with 2 KiB each: the output pauses
# at 64 KiB, after 33 of them.
descs=()
for i in $(seq 37); do
	descs+=('{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.securechat.Control"}}')
done
n=$( (sleep 1; echo go) | "$SC_VARLINK" -t 10 --hold "$CONTROL" "${descs[@]}" | grep -c '"description"')
is "37 calls in one write, read only afterwards (some 74 KiB of answers): all answered" 37 "$n"

# ---- a caller who is not allowed ----------------------------------------------------

as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
}
if [ "$(id -u)" -ne 0 ]; then
	for t in "nobody cannot connect to the 0660 socket" "...told plainly" \
		"nobody is refused by the relay itself" "...told plainly" "the refusal is audited" \
		"nobody's raw call hears PermissionDenied, then the relay hangs up" "nobody's kick did not happen"; do
		skip "$t" "not root"
	done
elif ! as_nobody "$SCCTL" --version >/dev/null 2>&1; then
	for t in 1 2 3 4 5 6 7; do
		skip "refusals as nobody" "nobody cannot run $SCCTL (a build directory only root can read?)"
	done
else
	NOBODY=$(id -u nobody)
	# nobody must be able to reach the socket's directory.
	chmod 0711 "$T"
	fails_with "nobody cannot connect to the 0660 socket ($EXIT_PERMISSION)" $EXIT_PERMISSION as_nobody "$SCCTL" status
	like "...told plainly" \
		"^scctl: permission denied: the control socket $CONTROL needs root or membership in group [a-z_][a-z0-9_-]*\\.\$" \
		"$(as_nobody "$SCCTL" status 2>&1)"
	# Let anyone connect, so that the relay's own check decides.
	chmod 0666 "$CONTROL"
	fails_with "nobody is refused by the relay itself ($EXIT_PERMISSION)" $EXIT_PERMISSION as_nobody "$SCCTL" kick bob
	like "...told plainly" "permission denied: the control socket $CONTROL needs root" \
		"$(as_nobody "$SCCTL" monitor 2>&1)"
	like "the refusal is audited with uid and pid" \
		"uid $NOBODY \\(pid [0-9]+\\) is not root and not in group .* \\(event=control-denied peer=uid=$NOBODY,pid=[0-9]+( node=[a-z0-9-]+)?\\)" \
		"$(cat "$SC_RELAY_LOG")"
	is "nobody's raw call hears PermissionDenied, then the relay hangs up" \
		"$(printf '%s\n' '{"error":"io.securechat.Control.PermissionDenied","parameters":{}}' EOF)" \
		"$(as_nobody "$SC_VARLINK" -t "$SC_WAIT" -n 0 "$CONTROL" '{"method":"org.varlink.service.GetInfo"}')"
	unlike "nobody's kick did not happen" "User bob kicked by uid $NOBODY" "$(cat "$SC_RELAY_LOG")"
	chmod 0660 "$CONTROL"
	chmod 0700 "$T"
fi

# ---- the socket's lifetime ------------------------------------------------------

# A second relay (its own state directory and port) on the same control
# path: it serves chat without a control socket and leaves the first
# one's alone.
bg_start "$T/second.out" "$T/second.log" "$SECURECHATD" --state-directory "$T/state2" --listen 127.0.0.1:0 \
	-o key-bits=2048 -o tls=no -o control="$CONTROL"
SECOND=$SC_BG
ok "a second relay on the same control path runs without one" \
	wait_until grep -q "Another process listens on $CONTROL; running without a control socket" "$T/second.log"
bg_stop "$SECOND"
ok "...and leaves the first one's socket alone" admin status

bg_start "$T/mon2.json" "$T/mon2.err" "$SCCTL" --json monitor
MON=$SC_BG
ok "a new monitor subscribes" wait_until monitors_are 1
relay_stop
bg_wait "$MON"
is "scctl monitor ends when the relay stops ($EXIT_CONNECT)" $EXIT_CONNECT $?
ok "the relay removed its socket" test ! -e "$CONTROL"

check "relay starts again" relay_start -c "$CONF" -o control="$CONTROL"
ok "...with its socket" wait_until test -S "$CONTROL"
sc_kill "$SC_RELAY_PID" KILL
SC_RELAY_PID=
ok "a relay killed with SIGKILL leaves its socket behind" test -S "$CONTROL"
fails_with "...on which nobody listens ($EXIT_CONNECT)" $EXIT_CONNECT admin status
check "the next relay starts" relay_start -c "$CONF" -o control="$CONTROL"
ok "...removes the stale socket and serves" wait_until admin status
like "...saying so" "Removing stale control socket $CONTROL" "$(cat "$SC_RELAY_LOG")"

done_testing
