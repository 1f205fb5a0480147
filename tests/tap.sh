# SPDX-License-Identifier: MIT
#
# TAP for shell tests, sourced by tests/integration/*.sh and
# tests/system/*.sh. Each check is one test case for automake's TAP driver:
#
#   ok "description" command args...      # passes when the command exits 0
#   is "description" EXPECTED ACTUAL        # string equality
#   like "description" REGEX TEXT           # grep -E match
#   skip_all "why"                          # exit 77-style skip of the file
#   done_testing                            # prints the plan, exits
#   wait_until [-t SECONDS] command...      # poll until it succeeds (bounded)
#
# Failed checks print the command's output as TAP diagnostics.

tap_n=0
tap_failed=0

tap_result() { # STATUS DESCRIPTION
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
}

diag() { printf '%s\n' "$@" | sed 's/^/# /'; }

ok() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	tap_result "$rc" "$desc"
	[ "$rc" -eq 0 ] || diag "command: $*" "exit status: $rc" "$out"
	return "$rc"
}

# Passes when the command fails with exactly the given exit status.
fails_with() { # DESCRIPTION STATUS COMMAND...
	local desc=$1 want=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	[ "$rc" -eq "$want" ]
	tap_result $? "$desc"
	[ "$rc" -eq "$want" ] || diag "command: $*" "exit status: $rc, expected $want" "$out"
	[ "$rc" -eq "$want" ]
}

is() {
	[ "$2" = "$3" ]
	tap_result $? "$1"
	[ "$2" = "$3" ] || diag "expected: $2" "got:      $3"
	[ "$2" = "$3" ]
}

like() {
	printf '%s' "$3" | grep -Eq -- "$2"
	local rc=$?
	tap_result "$rc" "$1"
	[ "$rc" -eq 0 ] || diag "expected to match: $2" "got: $3"
	return "$rc"
}

unlike() {
	printf '%s' "$3" | grep -Eq -- "$2"
	local rc=$?
	[ "$rc" -ne 0 ]
	tap_result $? "$1"
	[ "$rc" -ne 0 ] || diag "expected not to match: $2" "got: $3"
	[ "$rc" -ne 0 ]
}

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

done_testing() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
	exit $?
}

now_ms() { date +%s%3N; }

# Run COMMAND until it succeeds, at most SECONDS (default $SC_WAIT, else
# 20). Every wait in the tests is such a bounded poll for a condition; the
# short sleep is only the polling interval.
wait_until() { # [-t SECONDS] COMMAND...
	local limit=${SC_WAIT:-20} deadline
	if [ "$1" = -t ]; then
		limit=$2
		shift 2
	fi
	deadline=$(($(now_ms) + limit * 1000))
	until "$@"; do
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}
