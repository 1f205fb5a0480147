#!/bin/bash
# SPDX-License-Identifier: MIT
#
# test-store's cases on PostgreSQL as well as SQLite: a private server
# (tests/pg.sh), an empty database, and test-store with SC_TEST_DATABASE
# naming it. Its TAP lines are passed on without their plan, followed by a
# check that the cases did write to that database (a test-store that
# ignored the variable would otherwise pass here untested).

. "${SC_SRCDIR:?run this from make check}/tests/tap.sh"
. "$SC_SRCDIR/tests/pg.sh"

TEST_STORE=$SC_BUILDDIR/tests/unit/test-store
[ -x "$TEST_STORE" ] || skip_all "$TEST_STORE is not built (make check builds it)"
pg_available || skip_all "PostgreSQL is not installed (no initdb)"

T=$(mktemp -d "${TMPDIR:-/tmp}/sc-store-pg.XXXXXX") || exit 99
cleanup() {
	[ "$tap_failed" -eq 0 ] || diag "$(pg_log_tail)"
	pg_cleanup
	rm -rf "$T"
}
trap cleanup EXIT

if ! pg_start "$T/pg" 2>"$T/start.err" || ! pg_createdb store 2>>"$T/start.err"; then
	echo "Bail out! PostgreSQL did not start: $(tr '\n' ' ' <"$T/start.err")"
	exit 99
fi
# Rows inserted in the database so far, as the server counts them (a
# backend reports its counts when it exits: wait for them).
inserted() {
	pg_sql store "SELECT tup_inserted FROM pg_stat_database WHERE datname = 'store'"
}
inserted_above() { # N
	[ "$(inserted)" -gt "$1" ]
}
before=$(inserted)

CK_TAP_LOG_FILE_NAME=- CK_VERBOSITY=silent SC_TEST_DATABASE=$(pg_uri store) \
	timeout 600 "$TEST_STORE" >"$T/tap" 2>"$T/stderr"
rc=$?
grep -v '^1\.\.[0-9]*$' "$T/tap"
# tap.sh's counts go on from test-store's.
# shellcheck disable=SC2034
tap_n=$(grep -cE '^(not )?ok ' "$T/tap")
tap_failed=$(grep -c '^not ok ' "$T/tap")
[ ! -s "$T/stderr" ] || diag "test-store's stderr:" "$(cat "$T/stderr")"

ok "test-store exits 0" test "$rc" -eq 0
ok "its cases wrote to the PostgreSQL database" wait_until -t 10 inserted_above "$before"
done_testing
