#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Administration over /run/securechat/control under a real systemd (an
# sdbox): the control socket alone activates the daemon; scctl status,
# sessions, users --registered, monitor (sees a login), kick (the user is
# gone), reset-key and reload (good and bad configuration) as root;
# per-message events not in the journal at the default log-level, beside a
# key-mismatch that is, and there after scctl reload to log-level=debug; a
# member of the securechat group may, nobody else may: first the socket's
# permissions refuse them, then, with the socket opened to everyone, the
# daemon itself (SO_PEERCRED, SO_PEERGROUPS; this is why the unit has no
# PrivateUsers=). Every change is in the journal.

. "$SC_SRCDIR/tests/system/lib.sh"

ok_here "the box boots and securechatd installs into it" box_setup || done_testing
ok "the test's drop-in for the service" service_dropin
SCCTL_BOX=${SECURECHATD%/sbin/securechatd}/bin/scctl
ok "scctl is installed in the box ($SCCTL_BOX)" box test -x "$SCCTL_BOX"
ok_here "the sockets start" start_sockets || done_testing

admin() { # ARGS...: scctl as root inside the box
	box "$SCCTL_BOX" --timeout "$SC_WAIT" "$@"
}

# Run scctl in the box as nobody (uid 65534), with GROUPS as supplementary
# groups (none if empty).
as_nobody() { # GROUPS ARGS...
	local groups=$1
	shift
	if [ -n "$groups" ]; then
		box setpriv --reuid=65534 --regid=65534 --groups="$groups" -- "$SCCTL_BOX" --timeout "$SC_WAIT" "$@"
	else
		box setpriv --reuid=65534 --regid=65534 --clear-groups -- "$SCCTL_BOX" --timeout "$SC_WAIT" "$@"
	fi
}

# ---- status activates ------------------------------------------------------------

is "the service is not running yet" inactive "$(box systemctl is-active securechatd.service)"
admin status >"$T/status0" 2>&1
is "scctl status as root: the control socket starts the daemon" 0 "$?"
like "...and it answers with its version and uptime" '^securechatd [0-9.]+ \(protocol [0-9]+\), up [0-9]+s' \
	"$(cat "$T/status0")"
like "...and the chat socket systemd passed it" "Listening: +127\\.0\\.0\\.1:$PORT \\(TLS\\)" "$(cat "$T/status0")"
is "securechatd.service is active" active "$(box systemctl is-active securechatd.service)"

# ---- users, sessions ---------------------------------------------------------------

ok "alice registers" sc alice init --bits 2048
ok "bob registers" sc bob init --bits 2048
BOB_FP=$(sc bob fingerprint)
sc_argv bob
bg_start "$T/bob.out" "$T/bob.err" "${SC_ARGV[@]}" listen
BOB=$SC_BG
ok "bob listens" wait_until has_event handshake-ok SC_USER=bob

admin status >"$T/status1" 2>&1
like "status counts the users" 'Users: +1 online, 2 registered' "$(cat "$T/status1")"
like "...and the sessions" 'Sessions: +1 \(1 receiving\)' "$(cat "$T/status1")"
admin sessions >"$T/sessions" 2>&1
like "scctl sessions: bob's receiving session, from 127.0.0.1, with TLS" \
	'^bob +receive +127\.0\.0\.1:[0-9]+ .* yes +[0-9a-f]{32}$' "$(cat "$T/sessions")"
admin users --registered >"$T/users" 2>&1
like "scctl users --registered: bob, online, with his fingerprint" \
	"^bob +yes +1 .* $(re_escape "$BOB_FP")\$" "$(cat "$T/users")"
like "...and alice, offline" '^alice +no +0 ' "$(cat "$T/users")"

# ---- monitor ------------------------------------------------------------------------

# In a transient unit of the box, so that it can be stopped from here.
box systemd-run -q --unit=sc-monitor -p StandardOutput=file:/run/monitor.out \
	-p StandardError=file:/run/monitor.err "$SCCTL_BOX" monitor
ok "scctl monitor connects (status counts it)" \
	wait_until sh -c '"$1" run "$2" status 2>/dev/null | grep -qE "^Monitors: +1$"' _ "$SDBOX" "$SCCTL_BOX"
ok "alice sends bob a message" sc alice send bob "hello from alice"
ok "scctl monitor sees alice's login" \
	wait_until box grep -qE ' handshake-ok: User alice logged in from 127\.0\.0\.1:' /run/monitor.out
# A debug event, below the relay's level (info), which Monitor sees all the same.
ok "...and her message" wait_until box grep -qE ' message-accepted: Message .* from alice to bob' /run/monitor.out
box systemctl stop sc-monitor.service

# ---- per-message events and log-level ----------------------------------------------

# At the default level a message leaves nothing in the journal, while a
# security event of the same run does. Entries of one process reach the
# journal in order: once the later key-mismatch is there, the message's
# entries would be too.
out=$(sc alice send bob "at log-level info" 2>&1)
is "alice sends bob a message at log-level info: delivered" "0 delivered" "$? $out"
"$SCCTL" --server "127.0.0.1:$PORT" --user alice --home "$T/home-impostor" --timeout "$SC_WAIT" \
	init --bits 2048 >/dev/null 2>&1
is "a second alice with another key is refused (EXIT_AUTH)" "$EXIT_AUTH" "$?"
ok "...and key-mismatch is in the journal" wait_until has_event key-mismatch SC_USER=alice
is "...but none of the messages' events: accepted, queued, forwarded, delivered" "0 0 0 0" \
	"$(journal_count message-accepted) $(journal_count message-queued) $(journal_count message-forwarded) $(journal_count message-delivered)"

write_config "log-level = debug"
out=$(admin reload 2>&1)
is "scctl reload with log-level = debug" "0 The relay reloaded its configuration." "$? $out"
out=$(sc alice send bob "at log-level debug" 2>&1)
is "alice sends bob another message: delivered" "0 delivered" "$? $out"
ok "...and message-delivered is in the journal" wait_until has_event message-delivered SC_USER=alice SC_RECIPIENT=bob
is "...after message-accepted and message-forwarded, once each, at priority debug" "1 1 1" \
	"$(journal_count message-accepted PRIORITY=7) $(journal_count message-forwarded PRIORITY=7) $(journal_count message-delivered PRIORITY=7)"

# ---- kick, reset-key ------------------------------------------------------------------

n_kicked=$(journal_count user-kicked SC_USER=bob)
out=$(admin kick bob 2>&1)
is "scctl kick bob" "0 Kicked bob: 1 session closed." "$? $out"
ok "bob's listen ends" wait_until sc_exited "$BOB"
is "bob is gone from scctl sessions" "No sessions." "$(admin sessions 2>&1)"
is "the journal has user-kicked for bob" "$((n_kicked + 1))" "$(journal_count user-kicked SC_USER=bob)"
like "...and control-command: which command, about whom, by whom" '"SC_PEER":"uid=0,pid=[0-9]+"' \
	"$(journal_json "MESSAGE_ID=$(message_id control-command)" SC_REASON=Kick SC_USER=bob)"

out=$(admin reset-key bob 2>&1)
is "scctl reset-key bob" 0 "$?"
like "...says so" "Removed the registered key of bob" "$out"
unlike "bob is no longer registered" '^bob ' "$(admin users --registered 2>&1)"
ok "the journal has key-reset for bob, with the old fingerprint" \
	has_event key-reset SC_USER=bob "SC_FINGERPRINT=$BOB_FP"
out=$(admin reset-key nosuchuser 2>&1)
is "reset-key of an unknown user: refused (EXIT_REFUSED)" "$EXIT_REFUSED" "$?"

# ---- reload --------------------------------------------------------------------------

n_reload=$(journal_count reload)
write_config "max-text = 1000"
out=$(admin reload 2>&1)
is "scctl reload with a good configuration" "0 The relay reloaded its configuration." "$? $out"
is "...in the journal" "$((n_reload + 1))" "$(journal_count reload)"
n_failed=$(journal_count reload-failed)
write_config "max-text = 500" "queue-ttl = forever"
out=$(admin reload 2>&1)
is "scctl reload with a bad configuration: refused (EXIT_REFUSED)" "$EXIT_REFUSED" "$?"
like "...saying that the old configuration stays, and why" "kept its old configuration: .*queue-ttl" "$out"
is "...reload-failed in the journal" "$((n_failed + 1))" "$(journal_count reload-failed)"
write_config "log-level = info"

# ---- who may -----------------------------------------------------------------------------

as_nobody "" status >"$T/nobody" 2>&1
is "nobody (no admin group): denied (EXIT_PERMISSION)" "$EXIT_PERMISSION" "$?"
like "...by the socket's permissions, naming the group" "permission denied: .* group securechat" "$(cat "$T/nobody")"
as_nobody securechat status >"$T/member" 2>&1
is "nobody with the securechat group: allowed (SO_PEERGROUPS seen through)" 0 "$?"
as_nobody securechat kick alice >"$T/member-kick" 2>&1
is "...also for commands that change state" 0 "$?"

# Open the socket to everyone: now the daemon must refuse by itself.
box mkdir -p /run/systemd/system/securechatd-control.socket.d
printf '[Socket]\nSocketMode=0666\n' >"$T/mode.conf"
"$SDBOX" cp "$T/mode.conf" /run/systemd/system/securechatd-control.socket.d
box systemctl daemon-reload
ok "the control socket restarts with mode 0666" \
	box sh -c 'systemctl stop securechatd.service securechatd-control.socket &&
		systemctl start securechatd-control.socket'
is "...mode 0666" "666" "$(box stat -c %a /run/securechat/control)"
n_denied=$(journal_count control-denied)
as_nobody "" kick alice >"$T/nobody2" 2>&1
is "nobody is refused by the daemon (PermissionDenied, EXIT_PERMISSION)" "$EXIT_PERMISSION" "$?"
like "...saying so" "permission denied" "$(cat "$T/nobody2")"
ok "...and the journal has control-denied" \
	wait_until eval '[ "$(journal_count control-denied)" -gt "$n_denied" ]'
like "...naming the caller" '"SC_PEER":"uid=65534,pid=[0-9]+"' \
	"$(journal_json "MESSAGE_ID=$(message_id control-denied)" | tail -n 1)"
as_nobody securechat status >"$T/member2" 2>&1
is "the securechat group still may" 0 "$?"
is "root still may" 0 "$(admin status >/dev/null 2>&1; echo $?)"

done_testing
