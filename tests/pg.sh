# SPDX-License-Identifier: MIT
#
# A private PostgreSQL server for one test, sourced by the tests that run
# the store or relays on PostgreSQL (tests/integration/lib.sh with
# SC_DATABASE=pg, tests/integration/cluster.sh, tests/unit/test-store-pg.sh):
#
#   pg_available              is initdb installed? (else the caller skips)
#   pg_start DIR              a server in DIR (made there the first time),
#                             listening on a Unix socket only; after
#                             pg_stop, the same server again
#   pg_stop [MODE]            pg_ctl stop -m MODE (default fast; immediate
#                             is a crash, which the next start recovers)
#   pg_createdb NAME          an empty database
#   pg_uri NAME               postgresql:///NAME?host=SOCKDIR, for database=
#   pg_sql NAME SQL           psql: rows unaligned, no headers, stop on error
#   pg_psql                   the path of psql (fails if there is none)
#   pg_cleanup                stop the server, remove what is outside DIR
#   pg_log_tail               the end of the server's log, for diagnostics
#
# Tests check durability (a crash must lose no accepted message), so fsync
# stays on; everything else is made small (memory, WAL segments) and quick
# (initdb without fsync: a crash of the machine during the test loses the
# test, not data that matters). Every wait is bounded by SC_WAIT seconds
# (pg_ctl -w -t). initdb refuses to run as root: as root the server runs
# as nobody (the caller's temporary directory is opened for it to enter),
# and its superuser is named after the caller, so that a connection
# without a user name gets in (trust).

SC_PG_DIR=
SC_PG_BIN=
SC_PG_SOCK=
SC_PG_SOCK_OWN=
SC_PG_AS=()

# Connection settings of the environment would change where libpq goes,
# in the relays and psql alike.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE \
	PGOPTIONS PGPASSWORD PGPASSFILE PGSSLMODE PGTARGETSESSIONATTRS PGAPPNAME

# The directory of initdb and pg_ctl: SC_PG_BINDIR if set, else the newest
# of Debian's /usr/lib/postgresql/VERSION/bin (where pg_config --bindir,
# which comes with libpq-dev, may not have them), else pg_config's, else
# the PATH's.
pg_bindir() {
	local d
	for d in ${SC_PG_BINDIR:-} $(printf "%s\n" /usr/lib/postgresql/*/bin | sort -rV) \
		"$(pg_config --bindir 2>/dev/null)" "$(dirname "$(command -v initdb 2>/dev/null || echo .)")"; do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

pg_available() {
	pg_bindir >/dev/null
}

# Run a command as the server's owner, in DIR (the owner may not be able
# to enter the caller's working directory).
pg_as() { # COMMAND...
	(cd "$SC_PG_DIR" && "${SC_PG_AS[@]}" "$@")
}

pg_ctl_() { # ARGS...
	pg_as "$SC_PG_BIN/pg_ctl" -D "$SC_PG_DIR/data" -w -t "${SC_WAIT:-30}" "$@"
}

pg_start() { # DIR
	local dir=$1 bin user
	bin=$(pg_bindir) || { echo "pg_start: no initdb installed" >&2; return 1; }
	mkdir -p "$dir" || return 1
	SC_PG_DIR=$(cd "$dir" && pwd)
	SC_PG_BIN=$bin
	SC_PG_AS=()
	if [ "$(id -u)" -eq 0 ]; then
		id nobody >/dev/null 2>&1 || { echo "pg_start: no user nobody to run it as" >&2; return 1; }
		SC_PG_AS=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups --)
		# The test's own directory is private: let nobody pass through.
		chmod o+x "$(dirname "$SC_PG_DIR")" || return 1
		chown "$(id -u nobody):$(id -g nobody)" "$SC_PG_DIR" || return 1
	fi
	# The socket's path must fit in sockaddr_un (107 bytes, with
	# "/.s.PGSQL.5432.lock" after the directory): a long TMPDIR gets one
	# in /tmp.
	if [ -z "$SC_PG_SOCK" ]; then
		if [ "${#SC_PG_DIR}" -le 80 ]; then
			SC_PG_SOCK=$SC_PG_DIR/s
			pg_as mkdir -p "$SC_PG_SOCK" || return 1
		else
			SC_PG_SOCK=$(mktemp -d /tmp/sc-pg.XXXXXX) || return 1
			SC_PG_SOCK_OWN=$SC_PG_SOCK
			[ "${#SC_PG_AS[@]}" -eq 0 ] || chown "$(id -u nobody):$(id -g nobody)" "$SC_PG_SOCK" || return 1
		fi
	fi
	if [ ! -f "$SC_PG_DIR/data/PG_VERSION" ]; then
		user=$(id -un)
		if ! pg_as "$bin/initdb" -D "$SC_PG_DIR/data" -A trust -U "$user" -E UTF8 --no-locale \
			--no-sync --no-instructions --wal-segsize=1 >"$SC_PG_DIR/initdb.log" 2>&1; then
			echo "pg_start: initdb failed:" >&2
			cat "$SC_PG_DIR/initdb.log" >&2
			return 1
		fi
		# Memory in kB-sized amounts, and connections for three relays
		# of two each besides the tests' own.
		cat >>"$SC_PG_DIR/data/postgresql.conf" <<-EOF
			listen_addresses = ''
			unix_socket_directories = '$SC_PG_SOCK'
			unix_socket_permissions = 0777
			port = 5432
			fsync = on
			synchronous_commit = on
			full_page_writes = on
			max_connections = 30
			shared_buffers = 4MB
			wal_buffers = 256kB
			min_wal_size = 4MB
			max_wal_size = 32MB
			max_worker_processes = 2
			max_parallel_workers_per_gather = 0
			huge_pages = off
			jit = off
			log_line_prefix = '%m [%p] %d: '
			log_connections = off
		EOF
	fi
	# The server outlives us: it must not hold our standard input.
	if ! pg_ctl_ -s -l "$SC_PG_DIR/server.log" start </dev/null >"$SC_PG_DIR/pg_ctl.log" 2>&1; then
		echo "pg_start: the server did not start:" >&2
		cat "$SC_PG_DIR/pg_ctl.log" >&2
		pg_log_tail >&2
		return 1
	fi
}

# A stop that pg_ctl could not make within the bound ends with SIGKILL of
# the postmaster (its children exit when it is gone).
pg_stop() { # [MODE]
	local pid
	[ -n "$SC_PG_DIR" ] && [ -f "$SC_PG_DIR/data/postmaster.pid" ] || return 0
	pg_ctl_ -s -m "${1:-fast}" stop >>"$SC_PG_DIR/pg_ctl.log" 2>&1 && return 0
	pid=$(head -n 1 "$SC_PG_DIR/data/postmaster.pid" 2>/dev/null)
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	echo "pg_stop: pg_ctl stop failed:" >&2
	tail -n 5 "$SC_PG_DIR/pg_ctl.log" >&2
	return 1
}

pg_uri() { # NAME
	printf 'postgresql:///%s?host=%s\n' "$1" "$SC_PG_SOCK"
}

# psql: the server's own, else the PATH's (any version speaks to it).
pg_psql() {
	local bin=${SC_PG_BIN:-$(pg_bindir)}
	if [ -x "$bin/psql" ]; then echo "$bin/psql"; else command -v psql; fi
}

pg_sql() { # NAME SQL
	"$(pg_psql)" -X -q -A -t -v ON_ERROR_STOP=1 -d "$(pg_uri "$1")" -c "$2"
}

pg_createdb() { # NAME
	pg_sql postgres "CREATE DATABASE \"$1\""
}

pg_log_tail() {
	[ -f "$SC_PG_DIR/server.log" ] || return 0
	echo "the last lines of $SC_PG_DIR/server.log:"
	tail -n 20 "$SC_PG_DIR/server.log"
}

pg_cleanup() {
	pg_stop fast
	[ -z "$SC_PG_SOCK_OWN" ] || rm -rf "$SC_PG_SOCK_OWN"
	SC_PG_SOCK_OWN=
}
