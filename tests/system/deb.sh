#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The Debian packages under a real systemd (an sdbox with SDBOX_PACKAGES=1:
# its unit directories start empty, so that what it runs is what the
# packages bring): "apt-get install ./securechat-*.deb" creates the admin
# group, enables and starts both sockets but not the service, installs the
# conffile and the catalog; two users chat through it with the packaged
# scctl; systemctl reload takes a good configuration and fails on a bad
# one; an upgrade in place to the rebuilt package (a higher version) stops
# the relay and starts its sockets again, and the next connection starts the
# new one, with the relay's key and its queue; remove stops everything and keeps the
# state, purge removes it.
#
# The packages come from $SC_DEBS_DIR (scripts/run-tests builds them
# twice, the second time with a bumped version): without it, or without
# two versions there, the test is skipped.

. "$SC_SRCDIR/tests/system/lib.sh"

[ -n "${SC_DEBS_DIR:-}" ] ||
	skip_all "SC_DEBS_DIR is not set (scripts/run-tests builds the packages and sets it)"
command -v dpkg-deb >/dev/null && command -v apt-get >/dev/null || skip_all "not a Debian system"

# The package versions in SC_DEBS_DIR, oldest first.
versions=$(for f in "$SC_DEBS_DIR"/securechat-server_*.deb; do
	[ -f "$f" ] && dpkg-deb -f "$f" Version
done | sort -uV)
V1=$(echo "$versions" | head -n 1)
V2=$(echo "$versions" | tail -n 1)
[ -n "$V1" ] && [ "$V1" != "$V2" ] ||
	skip_all "SC_DEBS_DIR=$SC_DEBS_DIR needs securechat-server and -client .debs of two versions"
deb() { # PACKAGE VERSION: the file's name
	local f
	for f in "$SC_DEBS_DIR/$1_$2"_*.deb; do
		echo "${f##*/}"
	done
}

export SDBOX_PACKAGES=1
MARK="SCMARK_deb_queued_$$"

# The packaged scctl, inside the box, as USER (home in the box's /tmp).
pc() { # USER ARGS...
	local user=$1
	shift
	box scctl --server "127.0.0.1:$PORT" --user "$user" --home "/tmp/home-$user" --timeout "$SC_WAIT" "$@"
}

apt_install() { # FILE...: in the box's /tmp/debs
	box sh -c 'cd /tmp/debs && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"' \
		_ "$@" >>"$T/apt.log" 2>&1 || {
		diag "apt-get install failed:" "$(tail -n 20 "$T/apt.log")"
		return 1
	}
}

apt_run() { # ARGS...
	box env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >>"$T/apt.log" 2>&1 || {
		diag "apt-get $* failed:" "$(tail -n 20 "$T/apt.log")"
		return 1
	}
}

# Before installing, as an administrator could: a drop-in moving the
# network socket to 127.0.0.1 and a free port (the box shares the host's
# network), and a configuration drop-in with a quick first key.
pick_port() {
	local attempt
	for attempt in 1 2 3 4 5 6 7 8; do
		PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break
	done
	printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "$PORT" >"$T/port.conf"
	"$SDBOX" cp "$T/port.conf" /etc/systemd/system/securechatd.socket.d
}

prepare() {
	box_start || return 1
	"$SDBOX" cp "$SC_DEBS_DIR/$(deb securechat-server "$V1")" "$SC_DEBS_DIR/$(deb securechat-client "$V1")" \
		"$SC_DEBS_DIR/$(deb securechat-server "$V2")" "$SC_DEBS_DIR/$(deb securechat-client "$V2")" /tmp/debs &&
		pick_port &&
		printf '[server]\nkey-bits = 2048\n' >"$T/test.conf" &&
		"$SDBOX" cp "$T/test.conf" /etc/securechat/securechatd.conf.d
}

# The sockets are started by the package; should the port have been taken
# meanwhile, move it and start them again.
sockets_up() {
	local attempt
	for attempt in 1 2 3 4 5; do
		[ "$(box systemctl is-active securechatd.socket)" = active ] && return 0
		diag "securechatd.socket did not start on port $PORT; trying another"
		pick_port
		box systemctl daemon-reload
		box systemctl reset-failed securechatd.socket
		box systemctl start securechatd.socket
	done
	return 1
}

ok_here "the box boots (SDBOX_PACKAGES=1) and has the packages $V1 and $V2" prepare || done_testing

# ---- install ----------------------------------------------------------------------------

ok "apt-get install ./$(deb securechat-server "$V1") ./$(deb securechat-client "$V1")" \
	apt_install "./$(deb securechat-server "$V1")" "./$(deb securechat-client "$V1")" || done_testing
is "both are installed, version $V1" "install ok installed $V1|install ok installed $V1" \
	"$(box dpkg-query -W -f '${Status} ${Version}\n' securechat-server securechat-client | paste -sd'|')"
ok "the postinst created the admin group (sysusers.d)" box getent group securechat
is "both sockets are enabled" "enabled enabled" \
	"$(box systemctl is-enabled securechatd.socket securechatd-control.socket | paste -sd' ')"
ok_here "...and started" sockets_up
is "both sockets are active" "active active" \
	"$(box systemctl is-active securechatd.socket securechatd-control.socket | paste -sd' ')"
like "they listen: 127.0.0.1:$PORT" "127\\.0\\.0\\.1:$PORT\\b" "$(box ss -Hltn)"
like "...and /run/securechat/control" "/run/securechat/control " "$(box ss -Hlx)"
is "the service is not started" inactive "$(box systemctl is-active securechatd.service)"
isnt_enabled=$(box systemctl is-enabled securechatd.service)
ok "...nor enabled by itself ($isnt_enabled)" test "$isnt_enabled" != enabled
like "/etc/securechat/securechatd.conf is a conffile" "/etc/securechat/securechatd.conf [0-9a-f]{32}" \
	"$(box dpkg-query -W -f '${Conffiles}' securechat-server)"
like "...listing the keys commented out" '^#max-sessions = 1024$' "$(box cat /etc/securechat/securechatd.conf)"
ok "the catalog was taken in by systemd's trigger" \
	sh -c '"$1" run journalctl --list-catalog 2>/dev/null | grep -q "^$2 "' _ "$SDBOX" "$(message_id start)"
ok "securechatd(8) is installed" box test -f /usr/share/man/man8/securechatd.8.gz
ok "scctl's bash completion is installed" box test -f /usr/share/bash-completion/completions/scctl

# ---- chat --------------------------------------------------------------------------------

ok "alice registers with the packaged scctl: the first connection starts the relay" pc alice init --bits 2048
ok "securechatd.service is active" wait_until unit_is securechatd.service ActiveState active
ok "bob registers" pc bob init --bits 2048
out=$(pc alice send bob "hi bob" 2>"$T/send.err")
is "alice sends bob a message (he is offline: queued)" "0 queued" "$? $out"
like "bob reads it" "hi bob" "$(pc bob inbox 2>&1)"
like "scctl status as root, on the control socket" '^securechatd [0-9.]+ ' "$(box scctl status 2>&1)"

# ---- reload -------------------------------------------------------------------------------

ok "systemctl reload with a good configuration" box systemctl reload securechatd.service
printf '[server]\nlog-level = loud\n' >"$T/bad.conf"
"$SDBOX" cp "$T/bad.conf" /etc/securechat/securechatd.conf.d
box systemctl reload securechatd.service 2>/dev/null
rc=$?
ok "systemctl reload with a bad configuration fails" test "$rc" -ne 0
ok "...and the relay goes on" unit_is securechatd.service SubState running
box rm /etc/securechat/securechatd.conf.d/bad.conf
ok "reload works again once it is fixed" box systemctl reload securechatd.service

# ---- upgrade ------------------------------------------------------------------------------

out=$(pc alice send bob "$MARK" 2>"$T/send.err")
is "alice queues a message for bob before the upgrade" "0 queued" "$? $out"
PID=$(unit_prop securechatd.service MainPID)
ok "apt-get install ./$(deb securechat-server "$V2") ./$(deb securechat-client "$V2"): upgrade in place" \
	apt_install "./$(deb securechat-server "$V2")" "./$(deb securechat-client "$V2")"
is "both are at version $V2" "$V2 $V2" \
	"$(box dpkg-query -W -f '${Version}\n' securechat-server securechat-client | paste -sd' ')"
is "the old relay was stopped" "" "$(box sh -c "test -d /proc/$PID && echo $PID")"
is "both sockets are enabled and listening again" "enabled enabled active active" \
	"$(box systemctl is-enabled securechatd.socket securechatd-control.socket | paste -sd' ') $(
		box systemctl is-active securechatd.socket securechatd-control.socket | paste -sd' ')"
like "bob gets the queued message from the upgraded relay (same relay key: scctl pinned it)" "$MARK" \
	"$(pc bob inbox 2>&1)"
ok "...which is the new securechatd" box sh -c \
	'p=$(systemctl show -P MainPID securechatd.service); [ "$p" != 0 ] && [ /proc/$p/exe -ef /usr/sbin/securechatd ]'

# ---- remove, purge ------------------------------------------------------------------------

ok "apt-get remove" apt_run remove securechat-server securechat-client
is "sockets and service are stopped" "inactive inactive inactive" \
	"$(box systemctl is-active securechatd.socket securechatd-control.socket securechatd.service | paste -sd' ')"
unlike "nothing listens on 127.0.0.1:$PORT" "127\\.0\\.0\\.1:$PORT\\b" "$(box ss -Hltn)"
ok "the relay's state stays until purge" box test -d /var/lib/private/securechat
ok "...and the conffile" box test -f /etc/securechat/securechatd.conf
ok "apt-get purge" apt_run purge securechat-server securechat-client
is "both are gone" "" "$(box dpkg-query -W -f '${Status}\n' securechat-server securechat-client 2>/dev/null |
	grep -v not-installed)"
ok "the state is gone" box sh -c '! test -e /var/lib/private/securechat && ! test -e /var/lib/securechat'
ok "the conffile is gone" box sh -c '! test -e /etc/securechat/securechatd.conf'
ok "the sockets are no longer enabled" box sh -c '! test -e /etc/systemd/system/sockets.target.wants/securechatd.socket'

done_testing
