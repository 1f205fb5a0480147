# SPDX-License-Identifier: MIT
#
# What the system tests share: a throw-away systemd (tests/system/sdbox)
# with securechatd installed into it by "make install", its sockets on a
# free loopback port, and bounded waits.
#
# The box shares nothing with the host but the network (SDBOX_SHARE is
# empty): what the tests need inside is copied in with "sdbox cp". scctl
# runs on the host for chatting (over TCP, as any client would) and inside
# the box for administration (the control socket is in the box's /run).
#
# Skipped (TAP skip_all) unless run as root on a machine with systemd
# installed; also skipped with SC_SKIP_SYSTEM_TESTS=1 and in the build tree
# of "make distcheck" (builddir DISTDIR/_build/sub, srcdir DISTDIR), which
# would otherwise boot the same systems a second time.

. "$SC_SRCDIR/tests/system/gate.sh" || exit 99
[ "$(id -u)" = 0 ] || skip_all "system tests boot systemd in an sdbox and need root"
[ -x /lib/systemd/systemd ] || skip_all "systemd is not installed"
[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] || [ -d /sys/fs/cgroup/unified ] ||
	skip_all "sdbox needs a cgroup2 hierarchy"
for tool in unshare nsenter flock setpriv journalctl systemd-analyze; do
	command -v "$tool" >/dev/null 2>&1 || skip_all "$tool is not installed"
done
[ -x "$SC_BUILDDIR/securechatd" ] && [ -x "$SC_BUILDDIR/scctl" ] ||
	skip_all "securechatd and scctl are not built (make all)"

SDBOX=$SC_SRCDIR/tests/system/sdbox
SCCTL=$SC_BUILDDIR/scctl

exec 5>&1
# A chroot, or a container without the rights to make namespaces, cannot
# boot a box at all: skip, saying why (sdbox check tries what it needs).
if ! why=$("$SDBOX" check 2>&1); then
	diag "$why"
	skip_all "$(printf '%s\n' "$why" | tail -n 1)"
fi

# Upper bound of every wait, in seconds; a healthy run never gets close.
SC_WAIT=${SC_WAIT:-30}

# scctl's exit statuses, from cli/exit-codes.h.
exit_code() { # NAME
	sed -n "s/^[[:space:]]*$1 = \([0-9]*\),.*/\1/p" "$SC_SRCDIR/cli/exit-codes.h"
}
EXIT_AUTH=$(exit_code EXIT_AUTH)
EXIT_REFUSED=$(exit_code EXIT_REFUSED)
EXIT_PERMISSION=$(exit_code EXIT_PERMISSION)

# MESSAGE_IDs, from the table the daemon uses.
message_id() { # EVENT-NAME
	sed -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}' "$SC_SRCDIR/daemon/events.h" |
		sed -n "s/.*X(EVENT_[A-Z_]*, *\"$1\", *\"\\([0-9a-f]*\\)\".*/\\1/p"
}

T=$(mktemp -d "${TMPDIR:-/tmp}/sc-system.XXXXXX") || exit 99
export SDBOX_DIR=$T/box SDBOX_SHARE= SDBOX_DBUS=0
SC_PIDS=

sc_cleanup() {
	local pid
	for pid in $SC_PIDS; do
		kill -TERM "$pid" 2>/dev/null
	done
	"$SDBOX" stop >/dev/null 2>&1
	wait 2>/dev/null
	rm -rf "$T"
}
trap sc_cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

box() { "$SDBOX" run "$@"; }

# Like ok, but runs COMMAND in this shell (not in a $(...) subshell), so
# that the variables it sets stay; its output goes to the log.
ok_here() { # DESCRIPTION COMMAND...
	local desc=$1 rc
	shift
	"$@" >&2
	rc=$?
	tap_result "$rc" "$desc"
	return "$rc"
}

# A property of a unit in the box ("systemctl show -P").
unit_prop() { # UNIT PROPERTY
	box systemctl show -P "$2" "$1" 2>/dev/null
}

unit_is() { # UNIT PROPERTY VALUE
	[ "$(unit_prop "$1" "$2")" = "$3" ]
}

# The journal of securechatd.service, as JSON lines; more journalctl
# arguments (field matches) may follow.
journal_json() {
	box journalctl --no-pager -q -o json -u securechatd.service "$@"
}

# Entries of EVENT in the service's journal (matches may follow).
journal_count() { # EVENT [FIELD=VALUE...]
	local id
	id=$(message_id "$1")
	shift
	box journalctl --no-pager -q -o cat -u securechatd.service "MESSAGE_ID=$id" "$@" | wc -l
}

has_event() { # EVENT [FIELD=VALUE...]
	[ "$(journal_count "$@")" -gt 0 ]
}

# What securechatd told systemd with sd_notify(), one message a line
# ("READY=1", "RELOADING=1, MONOTONIC_USEC=..., STATUS=..."), from the
# debug log of the box's PID 1 (box_setup turns it on).
notify_log() {
	box journalctl --no-pager -q -o cat _PID=1 UNIT=securechatd.service \
		--grep '^securechatd.service: Got notification message from PID' |
		sed 's/^[^(]*(//; s/)$//'
}

notify_count() { # REGEX
	notify_log | grep -cE -- "$1"
}

# ---- the box ---------------------------------------------------------------

UNITDIR=/run/systemd/system
PORT=
CONFIG=

# Boot the box. If it cannot boot here after all (sdbox start exits 77),
# skip, with the console's last lines; any other failure is one.
box_start() {
	local rc
	"$SDBOX" start >"$T/box-start.log" 2>&1
	rc=$?
	[ "$rc" = 0 ] && return 0
	# To the TAP stream (fd 5), even from inside ok_here.
	diag "sdbox start failed ($rc):" "$(cat "$T/box-start.log")" \
		"the console's last lines:" "$(tail -n 20 "$SDBOX_DIR/console.log" 2>/dev/null)" >&5
	[ "$rc" = 77 ] && skip_all "$(tail -n 1 "$T/box-start.log")" >&5
	return 1
}

# Boot the box, "make install" into a staging directory and copy that in,
# create the admin group, write a configuration (2048-bit identity key, so
# that the first start is quick), and turn on PID 1's debug log (for
# notify_log). Sets SECURECHATD (the installed binary) and CONFIG (its
# configuration file), both paths inside the box.
box_setup() {
	box_start || return 1
	# Not the outer make's jobserver: this make runs on its own.
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$SC_BUILDDIR" install \
		DESTDIR="$T/stage" systemdsystemunitdir=$UNITDIR \
		catalogdir=/usr/lib/systemd/catalog sysusersdir=/usr/lib/sysusers.d \
		>"$T/install.log" 2>&1 || {
		diag "make install failed:" "$(tail -n 20 "$T/install.log")"
		return 1
	}
	"$SDBOX" cp "$T/stage"/* / || return 1

	SECURECHATD=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$T/stage$UNITDIR/securechatd.service")
	CONFIG=$(box "$SECURECHATD" --help | sed -n 's/.* instead of \(\/[^ ]*\)$/\1/p')
	[ -n "$SECURECHATD" ] && [ -n "$CONFIG" ] || {
		diag "cannot find securechatd or its configuration file"
		return 1
	}
	box systemd-sysusers >/dev/null || return 1
	box systemd-analyze log-level debug || return 1
	write_config "log-level = info"
	box systemctl daemon-reload
}

# The test's drop-in for securechatd.service: LeakSanitizer off for ASan
# builds (it needs ptrace(), which the unit's system call filter forbids),
# plus the given lines.
service_dropin() { # LINE...
	box mkdir -p $UNITDIR/securechatd.service.d || return 1
	printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' >"$T/test.conf"
	printf '%s\n' "$@" >>"$T/test.conf"
	"$SDBOX" cp "$T/test.conf" $UNITDIR/securechatd.service.d && box systemctl daemon-reload
}

# Replace the configuration: [server] with the given lines.
write_config() { # LINE...
	{
		echo "[server]"
		echo "key-bits = 2048"
		printf '%s\n' "$@"
	} >"$T/securechatd.conf"
	box mkdir -p "${CONFIG%/*}" && "$SDBOX" cp "$T/securechatd.conf" "${CONFIG%/*}"
}

# Move securechatd.socket to 127.0.0.1 and a port nobody listens on, and
# start both sockets. A port can be taken between the check and the bind on
# a busy machine: then try another.
start_sockets() {
	local attempt
	box mkdir -p $UNITDIR/securechatd.socket.d
	for attempt in 1 2 3 4 5 6 7 8; do
		PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && continue
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "$PORT" >"$T/port.conf"
		"$SDBOX" cp "$T/port.conf" $UNITDIR/securechatd.socket.d
		box systemctl daemon-reload
		if box systemctl start securechatd.socket securechatd-control.socket 2>"$T/start.err"; then
			return 0
		fi
		box systemctl reset-failed securechatd.socket 2>/dev/null
	done
	diag "cannot start the sockets:" "$(cat "$T/start.err")"
	return 1
}

# ---- scctl on the host -----------------------------------------------------

# The command line of scctl as USER (home $T/home-USER), in SC_ARGV.
sc_argv() { # USER
	SC_ARGV=("$SCCTL" --server "127.0.0.1:$PORT" --user "$1" --home "$T/home-$1" --timeout "$SC_WAIT")
}

sc() { # USER ARGS...
	sc_argv "$1"
	shift
	"${SC_ARGV[@]}" "$@"
}

# A background command with its output in files; pid in SC_BG. COMMAND
# must be a program, not a shell function, for bg_stop to reach it.
bg_start() { # OUT ERR COMMAND...
	local out=$1 err=$2
	shift 2
	"$@" </dev/null >"$out" 2>"$err" &
	SC_BG=$!
	SC_PIDS="$SC_PIDS $SC_BG"
}

sc_exited() { # PID
	! kill -0 "$1" 2>/dev/null ||
		[ "$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# Stop a background command (SIGTERM, SIGKILL after the bound) and return
# its exit status.
bg_stop() { # PID
	kill -TERM "$1" 2>/dev/null
	wait_until sc_exited "$1" || kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# STRING as an extended regular expression that matches just it.
re_escape() { # STRING
	printf '%s' "$1" | sed 's/[][\\.*^$+?(){}|]/\\&/g'
}

file_has() { # FILE FIXED-STRING
	grep -qF -- "$2" "$1" 2>/dev/null
}
