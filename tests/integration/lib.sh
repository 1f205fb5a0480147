# SPDX-License-Identifier: MIT
#
# What every integration script shares: a private temporary directory, a
# real securechatd on a random loopback port, scctl as several users with
# separate homes, bounded waits, and the privacy check at the end.
#
# Scripts run side by side on busy machines: nothing here sleeps for a
# fixed time to let something happen. Every wait polls for its condition
# and gives up after an upper bound (SC_WAIT seconds).
#
# SC_TLS=no in the environment runs a script against a relay started with
# -o tls=no and clients with --no-tls (the *-notls.sh wrappers do that).
#
# SC_DATABASE=pg runs every relay the script starts on PostgreSQL (the
# *-pg.sh wrappers do that): on a private server (tests/pg.sh) that the
# first relay_start starts, all on the same database unless the script
# asks for a new one (relay_database_new). The default, SC_DATABASE=sqlite,
# is the state directory's file.

. "$SC_SRCDIR/tests/tap.sh"

SECURECHATD=$SC_BUILDDIR/securechatd
SCCTL=$SC_BUILDDIR/scctl
SC_RAW=$SC_BUILDDIR/tests/integration/sc-raw
SC_JSON=$SC_BUILDDIR/tests/integration/sc-json

# scctl's exit statuses, as documented in scctl(1) and cli/exit-codes.h
# (refusals.sh checks that they still agree with the header).
EXIT_OK=0
EXIT_FAIL=1
EXIT_USAGE=2
EXIT_CONNECT=3
EXIT_AUTH=4
EXIT_SERVER_KEY=5
EXIT_PEER_KEY=6
EXIT_REFUSED=7
EXIT_TIMEOUT=8
EXIT_PERMISSION=9
EXIT_RATE_LIMITED=10

# Upper bound of every wait, in seconds (ASan builds on a loaded machine
# are slow; a healthy run never gets close).
SC_WAIT=${SC_WAIT:-30}

SC_TLS=${SC_TLS:-yes}
if [ "$SC_TLS" = no ]; then
	SC_NOTLS=--no-tls
	SC_RAW_TLS=
else
	SC_NOTLS=
	SC_RAW_TLS=--tls
fi

SC_PORT=0
SC_RELAY_PID=
SC_RELAY_LOG=
SC_RELAY_N=0
SC_PIDS=

for p in "$SECURECHATD" "$SCCTL" "$SC_RAW" "$SC_JSON"; do
	[ -x "$p" ] || skip_all "$p is not built (make all && make check builds it)"
done

SC_DATABASE=${SC_DATABASE:-sqlite}
case $SC_DATABASE in
sqlite) ;;
pg)
	. "$SC_SRCDIR/tests/pg.sh"
	pg_available || skip_all "PostgreSQL is not installed (no initdb)"
	;;
*)
	echo "Bail out! SC_DATABASE=$SC_DATABASE: expected sqlite or pg"
	exit 99
	;;
esac

T=$(mktemp -d "${TMPDIR:-/tmp}/sc-integration.XXXXXX") || exit 99
SC_STATE=$T/state

# Stop a process we started: SIGTERM, then SIGKILL if it does not exit
# within the bound. Prints nothing; returns its exit status (or 137).
sc_kill() { # PID [SIGNAL]
	local pid=$1 sig=${2:-TERM}
	kill -"$sig" "$pid" 2>/dev/null
	if ! wait_exit "$pid"; then
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
}

sc_cleanup() {
	local pid
	kill -TERM "$SC_WATCHDOG" 2>/dev/null
	for pid in $SC_PIDS $SC_RELAY_PID; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in $SC_PIDS $SC_RELAY_PID; do
		wait_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "$tap_failed" -gt 0 ] && [ -f "$SC_RELAY_LOG" ]; then
		diag "the last lines of $SC_RELAY_LOG:" "$(tail -n 20 "$SC_RELAY_LOG")"
	fi
	if [ -n "${SC_PG_DIR:-}" ]; then
		# A backend a script froze (SC_PG_STOPPED) would outlive its
		# server, stopped for good, if the script ended before it
		# continued it.
		[ -z "${SC_PG_STOPPED:-}" ] || kill -CONT $SC_PG_STOPPED 2>/dev/null
		[ "$tap_failed" -eq 0 ] || diag "$(pg_log_tail)"
		pg_cleanup
	fi
	if [ -n "$SC_KEEP" ]; then
		diag "kept $T (SC_KEEP is set)"
	else
		rm -rf "$T"
	fi
}
trap sc_cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'diag "killed (watchdog or signal)"; exit 143' TERM

# A last resort against a hang that no bounded wait covers: the script is
# ended after SC_SCRIPT_TIMEOUT seconds. Its output goes nowhere, so that
# it cannot keep the TAP driver's pipe open.
(
	trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
	sleep "${SC_SCRIPT_TIMEOUT:-600}" &
	sleeper=$!
	wait "$sleeper" && kill -TERM $$
) </dev/null >/dev/null 2>&1 &
SC_WATCHDOG=$!

# Like ok, but runs COMMAND in this shell rather than in a command
# substitution, so that it may start background processes and set
# variables (relay_start, listen_start). Its output is shown on failure.
check() { # DESCRIPTION COMMAND...
	local desc=$1 rc
	shift
	"$@" >"$T/check.out" 2>&1
	rc=$?
	tap_result "$rc" "$desc"
	[ "$rc" -eq 0 ] || diag "command: $*" "exit status: $rc" "$(cat "$T/check.out")"
	return "$rc"
}

# A test that cannot run here, counted as skipped.
skip() { # DESCRIPTION REASON
	tap_result 0 "$1 # SKIP $2"
}

# Like "like", for a fixed string (fingerprints hold regex characters).
contains() { # DESCRIPTION STRING TEXT
	printf '%s' "$3" | grep -qF -- "$2"
	local rc=$?
	tap_result "$rc" "$1"
	[ "$rc" -eq 0 ] || diag "expected to contain: $2" "got: $3"
	return "$rc"
}

# Has PID exited (a child that exited but was not reaped yet counts)?
sc_exited() { # PID
	local state
	state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 0
	[ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}

wait_exit() { # PID [SECONDS]
	wait_until -t "${2:-$SC_WAIT}" sc_exited "$1"
}

# Start a background command with stdout and stderr in files and stdin
# from SC_BG_IN (default /dev/null; opened by the child, so a FIFO does not
# block us); its pid in SC_BG. Killed at exit unless stopped before.
bg_start() { # OUT ERR COMMAND...
	local out=$1 err=$2
	shift 2
	"$@" <"${SC_BG_IN:-/dev/null}" >"$out" 2>"$err" &
	SC_BG=$!
	SC_PIDS="$SC_PIDS $SC_BG"
}

# Stop a background command (SIGTERM, or SIGNAL) and return its exit status.
bg_stop() { # PID [SIGNAL]
	local rc
	sc_kill "$1" "${2:-TERM}"
	rc=$?
	SC_PIDS=$(echo "$SC_PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
	return "$rc"
}

# Wait for a background command to exit on its own; its status, or 124
# after the bound (then it is killed).
bg_wait() { # PID [SECONDS]
	local rc
	if wait_exit "$1" "${2:-$SC_WAIT}"; then
		wait "$1"
		rc=$?
	else
		kill -KILL "$1" 2>/dev/null
		wait "$1" 2>/dev/null
		rc=124
	fi
	SC_PIDS=$(echo "$SC_PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
	return "$rc"
}

# ---- the relay ------------------------------------------------------------

# The PostgreSQL database of the relays (SC_DATABASE=pg): its name, and
# those made so far on the script's server.
SC_PG_DB=securechat
SC_PG_MADE=

# Start the script's server the first time, and make SC_PG_DB if it is new.
relay_database() {
	if [ -z "$SC_PG_DIR" ]; then
		pg_start "$T/pg" || return 1
	fi
	case " $SC_PG_MADE " in
	*" $SC_PG_DB "*) ;;
	*) pg_createdb "$SC_PG_DB" && SC_PG_MADE="$SC_PG_MADE $SC_PG_DB" ;;
	esac
}

# The relays started from now on get an empty database, as a new state
# directory would give them with SQLite (where this does nothing).
relay_database_new() {
	[ "$SC_DATABASE" = pg ] || return 0
	SC_PG_DB=securechat$(($(echo "$SC_PG_MADE" | wc -w) + 1))
}

# The options that put a relay on the script's database.
relay_database_options() {
	SC_DB_OPTIONS=()
	if [ "$SC_DATABASE" = pg ]; then
		relay_database || return 1
		SC_DB_OPTIONS=(-o "database=$(pg_uri "$SC_PG_DB")")
	fi
}

# Start securechatd on 127.0.0.1 with the state directory SC_STATE and its
# control socket at $T/control (never the system's): on a port the kernel
# picks the first time, on the same port afterwards. Arguments are more
# options (-o KEY=VALUE), which may override those. Sets SC_RELAY_PID,
# SC_RELAY_LOG (this run's stderr) and SC_PORT.
relay_start() {
	local attempt
	relay_database_options || return 1
	for attempt in 1 2 3 4 5; do
		relay_spawn "$@"
		if relay_listens; then
			relay_on_database
			return
		fi
		# Someone else took the port between two runs of the relay on a
		# busy machine: try again, a few times.
		if [ "$SC_PORT" != 0 ] && grep -q "in use" "$SC_RELAY_LOG"; then
			wait "$SC_RELAY_PID" 2>/dev/null
			sleep 0.5
			continue
		fi
		break
	done
	diag "securechatd did not start listening:" "$(cat "$SC_RELAY_LOG")"
	sc_kill "$SC_RELAY_PID" KILL
	SC_RELAY_PID=
	return 1
}

# relay_start's first half, for a script that starts several relays at
# once (after relay_database_options): the relay in the background, its
# pid in SC_RELAY_PID and its log in SC_RELAY_LOG; no waiting.
relay_spawn() { # OPTION...
	SC_RELAY_N=$((SC_RELAY_N + 1))
	SC_RELAY_LOG=$T/relay.$SC_RELAY_N.log
	"$SECURECHATD" --state-directory "$SC_STATE" --listen "127.0.0.1:$SC_PORT" \
		-o key-bits=2048 -o tls="$SC_TLS" -o control="$T/control" "${SC_DB_OPTIONS[@]}" \
		"$@" >"$SC_RELAY_LOG" 2>&1 &
	SC_RELAY_PID=$!
}

# The second half: wait until the relay SC_RELAY_PID listens (its port in
# SC_PORT); fails if it exited first.
relay_listens() {
	wait_until relay_listening "$SC_RELAY_PID" "$SC_RELAY_LOG"
	grep -q "Listening on" "$SC_RELAY_LOG" || return 1
	SC_PORT=$(sed -n 's/.*Listening on 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$SC_RELAY_LOG" | head -n 1)
}

# A relay told to use PostgreSQL must not have made SQLite's file: the
# *-pg.sh scripts would pass without testing anything.
relay_on_database() {
	[ "$SC_DATABASE" = pg ] && [ -e "$SC_STATE/securechatd.db" ] || return 0
	diag "securechatd made $SC_STATE/securechatd.db: it is not on PostgreSQL"
	return 1
}

relay_listening() { # PID LOG
	grep -q "Listening on" "$2" || sc_exited "$1"
}

# SIGTERM the relay and wait for it; its exit status.
relay_stop() {
	local rc
	[ -n "$SC_RELAY_PID" ] || return 0
	sc_kill "$SC_RELAY_PID"
	rc=$?
	SC_RELAY_PID=
	return "$rc"
}

relay_alive() {
	[ -n "$SC_RELAY_PID" ] && ! sc_exited "$SC_RELAY_PID"
}

# Lines of the current relay log matching an extended regex.
relay_count() { # REGEX
	grep -Ec -- "$1" "$SC_RELAY_LOG"
}

relay_logged() { # REGEX
	grep -Eq -- "$1" "$SC_RELAY_LOG"
}

# The relay's database, for the tests that play the attacker with sqlite3
# or psql (changes only while the relay is stopped). The PostgreSQL tables
# have the names of SQLite's with the prefix SC_TBL, for SQL that both
# understand ("SELECT ... FROM ${SC_TBL}queue").
SC_DB=$SC_STATE/securechatd.db
if [ "$SC_DATABASE" = pg ]; then
	SC_TBL=sc_
	db() { # SQL
		pg_sql "$SC_PG_DB" "$1"
	}
	db_available() {
		pg_psql >/dev/null
	}
else
	SC_TBL=
	db() { # SQL
		sqlite3 -batch "$SC_DB" "$1"
	}
	db_available() {
		command -v sqlite3 >/dev/null
	}
fi

# ---- scctl ----------------------------------------------------------------

# The command line of scctl as USER with the home HOME (default
# $T/home-USER), in the array SC_ARGV.
sc_argv() { # USER [HOME]
	SC_ARGV=("$SCCTL" --server "127.0.0.1:$SC_PORT" --user "$1" --home "${2:-$T/home-$1}"
		$SC_NOTLS --timeout "$SC_WAIT")
}

sc() { # USER ARGS...
	sc_argv "$1"
	shift
	"${SC_ARGV[@]}" "$@"
}

sc_at() { # HOME USER ARGS...
	sc_argv "$2" "$1"
	shift 2
	"${SC_ARGV[@]}" "$@"
}

sc_init() { # USER
	sc "$1" init --bits 2048 >"$T/init-$1.out" 2>&1
}

# Number of receiving sessions USER has opened on the current relay run.
receiving_logins() { # USER
	relay_count "User $1 logged in from .* \\(receiving session "
}

# Start "scctl --json listen" (or another receiving verb) as USER in the
# background, writing to OUT (stderr to OUT.err), and wait until the relay
# has its receiving session. Pid in SC_BG.
listen_start() { # USER OUT [VERB]
	local user=$1 out=$2 verb=${3:-listen} before
	before=$(receiving_logins "$user")
	sc_argv "$user"
	bg_start "$out" "$out.err" "${SC_ARGV[@]}" --json "$verb"
	if ! wait_until count_above "$before" receiving_logins "$user"; then
		diag "$user's $verb did not log in:" "$(cat "$out.err")"
		return 1
	fi
}

count_above() { # N COMMAND...: COMMAND prints a number above N
	local n=$1
	shift
	[ "$("$@")" -gt "$n" ]
}

# How many JSON objects of TYPE (matching -m KEY=VALUE options) FILE holds.
json_count() { # FILE [-m KEY=VALUE]... TYPE
	local file=$1
	shift
	"$SC_JSON" "$@" -c <"$file"
}

# Wait until FILE holds at least N objects of TYPE.
wait_json() { # FILE N [-m KEY=VALUE]... TYPE
	local file=$1 n=$2
	shift 2
	wait_until count_above "$((n - 1))" json_count "$file" "$@"
}

# The N-th message's text in FILE, exactly, into OUT.
json_text() { # FILE N OUT
	"$SC_JSON" -n "$2" message text <"$1" >"$3"
}

# ---- content --------------------------------------------------------------

# A distinctive string for the text of a message. Every marker of a run
# starts with SC_MARK_PREFIX, which contains "_" (base64 never does): finding
# it anywhere the relay writes means that some plaintext got there.
SC_MARK_PREFIX="SCMARK_${SC_SCRIPT:-x}_$$_"
marker() { # NAME
	printf '%s%s' "$SC_MARK_PREFIX" "$1"
}

# Exactly N bytes of text starting with marker NAME (padded with a
# repeating pattern of ASCII and 2-, 3- and 4-byte UTF-8, cut so as not to
# split a character). Written to FILE.
text_of_size() { # NAME N FILE
	local m n=$2 file=$3
	m=$(marker "$1")
	{
		printf '%s ' "$m"
		while :; do printf 'abc é € 🎉 0123456789 '; done | head -c "$n"
	} | head -c "$n" >"$file.tmp"
	# The cut may have split a multi-byte character: replace the tail
	# bytes by ASCII until the length is exact and the text valid UTF-8.
	while ! iconv -f UTF-8 -t UTF-8 "$file.tmp" >/dev/null 2>&1; do
		head -c "$(( $(wc -c <"$file.tmp") - 1 ))" "$file.tmp" >"$file.tmp2"
		mv "$file.tmp2" "$file.tmp"
	done
	while [ "$(wc -c <"$file.tmp")" -lt "$n" ]; do printf 'z' >>"$file.tmp"; done
	mv "$file.tmp" "$file"
}

# The privacy check: no marker (message plaintext) anywhere in the relay's
# state directory (database, WAL, shared memory, keys) or in its logs. The
# same search must find the markers in what the recipients printed, so that
# a broken search cannot pass.
check_privacy() { # FILE-WHERE-MARKERS-SHOW...
	local leaks
	ok "the markers are found in what the recipients printed" grep -qaF -- "$SC_MARK_PREFIX" "$@"
	leaks=$(grep -rlaF -- "$SC_MARK_PREFIX" "$SC_STATE" "$T"/relay.*.log 2>&1)
	is "no message text in the relay's state directory ($(cd "$SC_STATE" && echo *)) or log" "" "$leaks"
	if [ -n "${SC_PG_DIR:-}" ]; then
		leaks=$(grep -rlaF -- "$SC_MARK_PREFIX" "$SC_PG_DIR" 2>&1)
		is "no message text in PostgreSQL's files (tables, WAL, log)" "" "$leaks"
	fi
}
