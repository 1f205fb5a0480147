#!/bin/bash
# SPDX-License-Identifier: MIT
#
# securechatd under a real systemd (an sdbox), installed with "make install":
# the units are clean for systemd-analyze verify and rated 1.0 or better by
# systemd-analyze security; socket activation by the first connection, with
# both named sockets passed; two users chat over the socket; the audit log
# in the journal with its fields and catalog; sd_notify (READY=1, STATUS=,
# WATCHDOG=1, RELOADING=1 then READY=1, STOPPING=1, as PID 1's debug log
# shows them); reload with a good and a bad configuration; a restart that
# keeps a queued message; and, without sockets from systemd, the daemon
# binding what its configuration says.

. "$SC_SRCDIR/tests/system/lib.sh"

ok_here "the box boots and securechatd installs into it" box_setup || done_testing

# ---- the units ---------------------------------------------------------------

U=$UNITDIR
ok "make install put the units, catalog, sysusers.d file and bash completion in place" \
	test -f "$T/stage$U/securechatd.service" -a -f "$T/stage$U/securechatd.socket" \
	-a -f "$T/stage$U/securechatd-control.socket" \
	-a -f "$T/stage/usr/lib/systemd/catalog/securechat.catalog" \
	-a -f "$T/stage/usr/lib/sysusers.d/securechat.conf" \
	-a -n "$(find "$T/stage" -path '*/bash-completion/completions/scctl' -type f)"

# The units as installed, before the test adds its drop-ins.
out=$(box systemd-analyze verify $U/securechatd.service $U/securechatd.socket $U/securechatd-control.socket 2>&1)
is "systemd-analyze verify: clean" "0 " "$? $out"

box systemd-analyze security --no-pager --offline=true $U/securechatd.service >"$T/security" 2>&1
score=$(sed -n 's/.*Overall exposure level for securechatd.service: \([0-9.]*\) .*/\1/p' "$T/security")
diag "systemd-analyze security: ${score:-?}" "$(grep '^✗' "$T/security")"
ok "systemd-analyze security rates it 1.0 or better (${score:-no score})" \
	awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 1.0) }'

# A watchdog interval short enough for its pings to be seen here, long
# enough for a busy machine.
ok "the test's drop-in for the service" service_dropin "WatchdogSec=8s"
# The message events checked below are debug.
ok "a configuration with log-level = debug" write_config "log-level = debug"
ok "the admin group exists after systemd-sysusers" box getent group securechat

# ---- socket activation ---------------------------------------------------------

ok_here "securechatd.socket (port moved by a drop-in) and securechatd-control.socket start" start_sockets ||
	done_testing
is "both sockets listen" "active active" \
	"$(box systemctl is-active securechatd.socket securechatd-control.socket | paste -sd' ')"
is "the service is not running before the first connection" inactive \
	"$(box systemctl is-active securechatd.service)"
is "the control socket: root:securechat, mode 0660" "root securechat 660" \
	"$(box stat -c '%U %G %a' /run/securechat/control)"

ok "alice registers over the socket: the first connection starts the daemon" \
	sc alice init --bits 2048
ok "securechatd.service is active" wait_until unit_is securechatd.service ActiveState active
PID=$(unit_prop securechatd.service MainPID)
ok "it runs as a dynamic user, without capabilities" \
	box sh -c "test \"\$(stat -c %u /proc/$PID)\" -ne 0 && grep -q '^CapEff:[[:space:]]*0*\$' /proc/$PID/status"
ok "it was passed the chat socket..." has_event listening SC_ADDRESS="127.0.0.1:$PORT"
like "...said so" "Listening on 127\\.0\\.0\\.1:$PORT \\(socket-activated\\)" \
	"$(journal_json | grep -F "$(message_id listening)")"
ok "...and holds the control socket systemd passed it (named, not guessed)" \
	box sh -c "ss -xlpn | grep -F /run/securechat/control | grep -q 'pid=$PID,'"
is "no socket was left unidentified" "" \
	"$(box journalctl --no-pager -q -o cat -u securechatd.service --grep 'unexpected socket-activated')"
ok "the state is in StateDirectory= (/var/lib/private/securechat for a DynamicUser=)" \
	box test -s /var/lib/private/securechat/securechatd.db

# ---- two users chat --------------------------------------------------------------

ok "bob registers" sc bob init --bits 2048
ALICE_FP=$(sc alice fingerprint)
sc_argv bob
bg_start "$T/bob.out" "$T/bob.err" "${SC_ARGV[@]}" listen
BOB=$SC_BG
ok "bob listens" wait_until has_event handshake-ok SC_USER=bob
MARK1="SCMARK_system_live_$$"
out=$(sc alice send bob "$MARK1 hello" 2>"$T/send.err")
is "alice sends bob a message: delivered" "0 delivered" "$? $out"
ok "bob received it" wait_until file_has "$T/bob.out" "$MARK1 hello"
ok "STATUS= shows the sessions" wait_until unit_is securechatd.service StatusText \
	"Serving 1 sessions (1 users online), 0 queued messages"
n_end=$(journal_count session-end SC_USER=bob)
bg_stop "$BOB"
ok "bob's listen ends, and with it his session" \
	wait_until eval '[ "$(journal_count session-end SC_USER=bob)" -gt "$n_end" ]'

# ---- the audit log in the journal ------------------------------------------------

journal_json >"$T/journal.json"
ev() { # EVENT: its entries as JSON lines
	grep -F "\"MESSAGE_ID\":\"$(message_id "$1")\"" "$T/journal.json"
}
like "handshake-ok: SC_EVENT, PRIORITY, SC_USER, SC_PEER, SC_SESSION, SC_FINGERPRINT" \
	'"SC_EVENT":"handshake-ok"' "$(ev handshake-ok | grep -F '"SC_USER":"alice"' |
		grep -F '"PRIORITY":"6"' | grep -E '"SC_PEER":"127\.0\.0\.1:[0-9]+"' |
		grep -E '"SC_SESSION":"[0-9a-f]{32}"' | grep -F "\"SC_FINGERPRINT\":\"$ALICE_FP\"")"
like "user-registered: SC_USER and SC_FINGERPRINT, PRIORITY 5" '"SC_EVENT":"user-registered"' \
	"$(ev user-registered | grep -F '"SC_USER":"alice"' | grep -F '"PRIORITY":"5"' |
		grep -F "\"SC_FINGERPRINT\":\"$ALICE_FP\"")"
like "message-accepted: SC_USER, SC_RECIPIENT, SC_MSG_ID, SC_SIZE" '"SC_EVENT":"message-accepted"' \
	"$(ev message-accepted | grep -F '"SC_USER":"alice"' | grep -F '"SC_RECIPIENT":"bob"' |
		grep -E '"SC_MSG_ID":"[A-Za-z0-9+/=_-]+"' | grep -E '"SC_SIZE":"[0-9]+"')"
like "message-delivered: the same message id" "\"SC_MSG_ID\":$(re_escape "$(ev message-accepted |
	grep -oE '"SC_MSG_ID":"[^"]*"' | tail -n 1 | cut -d: -f2)")" "$(ev message-delivered)"
like "session-end: SC_REASON and SC_DURATION" '"SC_EVENT":"session-end"' \
	"$(ev session-end | grep -F '"SC_USER":"bob"' | grep -E '"SC_REASON":"[^"]+"' |
		grep -E '"SC_DURATION":"[0-9]+"')"
like "connection: SC_PEER and SC_SESSION" '"SC_EVENT":"connection"' \
	"$(ev connection | grep -E '"SC_PEER":"127\.0\.0\.1:[0-9]+"' | grep -E '"SC_SESSION":"[0-9a-f]{32}"')"
is "journalctl MESSAGE_ID=<handshake-ok> SC_USER=bob: bob's two logins (init, listen), nothing else" "2 0" \
	"$(journal_count handshake-ok SC_USER=bob) $(box journalctl -q -o cat MESSAGE_ID="$(message_id handshake-ok)" SC_USER=bob |
		grep -vc 'User bob logged in')"
is "no message text in the journal" 0 "$(box journalctl -q -o export | grep -caF "$MARK1")"

ok "journalctl --update-catalog in the box" box journalctl --update-catalog
box journalctl --no-pager -x -u securechatd.service MESSAGE_ID="$(message_id handshake-ok)" SC_USER=alice \
	-n 1 >"$T/x" 2>&1
like "journalctl -x: the catalog's subject, with the user filled in" 'Subject: SecureChat user alice logged in' \
	"$(cat "$T/x")"
like "journalctl -x: the catalog's text, with the fingerprint filled in" \
	"proving possession of the key $(re_escape "$ALICE_FP")" "$(tr '\n' ' ' <"$T/x" | sed 's/░░//g' | tr -s ' ')"
like "journalctl -x: Defined-By and Documentation" 'Defined-By: SecureChat.*Documentation: man:securechatd\(8\)' \
	"$(tr -d '\n' <"$T/x")"

# ---- sd_notify -----------------------------------------------------------------------

ok "READY=1 once started" test "$(notify_count '^READY=1$')" -ge 1
like "STATUS= with the sessions and the queue" '^STATUS=Serving [0-9]+ sessions \([0-9]+ users online\), [0-9]+ queued messages$' \
	"$(notify_log)"
ok "WATCHDOG=1, again and again (WatchdogSec=8s)" wait_until -t 20 eval '[ "$(notify_count "^WATCHDOG=1$")" -ge 2 ]'

# ---- reload ---------------------------------------------------------------------------

text_of() { # N: N bytes of text
	head -c "$1" /dev/zero | tr '\0' x
}
out=$(sc alice send bob "$(text_of 1500)" 2>/dev/null)
is "before the reload 1500 bytes are fine (max-text 16K)" "0 queued" "$? $out"
# A reload to a lower max-text is refused while a longer text may wait
# (securechatd(8), SIGHUP): bob takes it first.
ok "bob fetches it" sc bob inbox
n_reload=$(journal_count reload)
write_config "max-text = 1000"
n_notify=$(notify_log | wc -l)
ok "systemctl reload with a good configuration" box systemctl reload securechatd.service
ok "the journal shows reload" wait_until eval '[ "$(journal_count reload)" -gt "$n_reload" ]'
ok "back to running" wait_until unit_is securechatd.service SubState running
notify_log | tail -n +$((n_notify + 1)) >"$T/notify-reload"
ok "RELOADING=1 (with MONOTONIC_USEC=), then READY=1" awk '/^RELOADING=1, MONOTONIC_USEC=[0-9]+/ { r = 1 }
	r && /^READY=1/ { ok = 1 } END { exit !ok }' "$T/notify-reload"
is "same process" "$PID" "$(unit_prop securechatd.service MainPID)"
sc alice send bob "$(text_of 1500)" >/dev/null 2>"$T/refused.err"
is "the new max-text applies: 1500 bytes refused" "$EXIT_REFUSED" "$?"

n_failed=$(journal_count reload-failed)
write_config "max-text = 500" "log-level = loud"
box systemctl reload securechatd.service 2>/dev/null
isnt_zero=$?
ok "systemctl reload with a bad configuration fails (ExecReload= waits for the answer)" test "$isnt_zero" -ne 0
# By its identifier: journald ties the stream of a process this short to
# the unit only if the process is in the unit's cgroup when it connects,
# which under load it may not be yet (the relay's own reload-failed entry
# below always is).
ok "...and the journal says why" wait_until sh -c '"$1" run journalctl --no-pager -q -o cat \
	-t securechatd --grep "kept its old configuration: .*log-level" | grep -q .' _ "$SDBOX"
ok "the journal shows reload-failed" wait_until eval '[ "$(journal_count reload-failed)" -gt "$n_failed" ]'
like "...with the reason in SC_REASON" '"SC_REASON":"[^"]*log-level' "$(journal_json | grep -F "$(message_id reload-failed)" | tail -n 1)"
ok "the service is still running" wait_until unit_is securechatd.service SubState running
out=$(sc alice send bob "$(text_of 800)" 2>/dev/null)
is "the old configuration stays: 800 bytes are fine (max-text 1000, not 500)" "0 queued" "$? $out"
write_config "log-level = info"
box systemctl reload securechatd.service

# ---- restart with a queued message --------------------------------------------------------

ok "bob fetches what was queued meanwhile" sc bob inbox

MARK2="SCMARK_system_queued_$$"
out=$(sc alice send bob "$MARK2" 2>/dev/null)
is "alice sends bob (offline) a message: queued" "0 queued" "$? $out"
ok "systemctl restart securechatd.service" box systemctl restart securechatd.service
ok "a new process serves" wait_until sh -c 'p=$("$1" run systemctl show -P MainPID securechatd.service); [ "$p" != 0 ] && [ "$p" != "$2" ]' \
	_ "$SDBOX" "$PID"
ok "the old process logged its stop event" has_event stop
ok "the new process counts the queued message" wait_until unit_is securechatd.service StatusText \
	"Serving 0 sessions (0 users online), 1 queued messages"
sc bob inbox >"$T/inbox" 2>"$T/inbox.err"
is "bob's inbox: the message survived the restart" 0 "$?"
ok "...with its text" file_has "$T/inbox" "$MARK2"

n_stopping=$(notify_count '^STOPPING=1')
ok "systemctl stop: the service stops cleanly" box systemctl stop securechatd.service
ok "...after STOPPING=1" test "$(notify_count '^STOPPING=1')" -gt "$n_stopping"
is "...and exit status 0" "inactive success" \
	"$(box systemctl is-active securechatd.service) $(unit_prop securechatd.service Result)"
is "the sockets stay, and activate it again" "active active" \
	"$(box systemctl is-active securechatd.socket securechatd-control.socket | paste -sd' ')"
ok "a connection starts it again" sc alice users
ok "...active" wait_until unit_is securechatd.service ActiveState active

# ---- no sockets from systemd ---------------------------------------------------------------

# The same binary in a transient service without sockets: it binds the
# listen address of its configuration (here a -o override) itself.
port2=$((PORT + 1))
box systemd-run -q --unit=sc-nosock -p Type=notify -p DynamicUser=yes -p StateDirectory=sc-nosock \
	-p RuntimeDirectory=sc-nosock -p Environment=ASAN_OPTIONS=detect_leaks=0 \
	"$SECURECHATD" -o listen=127.0.0.1:$port2 -o control=/run/sc-nosock/control >/dev/null 2>&1
ok "without socket activation securechatd starts" wait_until unit_is sc-nosock.service ActiveState active
like "...and binds the address its configuration names" "Listening on 127\\.0\\.0\\.1:$port2\$" \
	"$(box journalctl -q -o cat -u sc-nosock.service --grep 'Listening on')"
box systemctl stop sc-nosock.service

done_testing
