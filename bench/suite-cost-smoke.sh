#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/suite-cost --quick: the suite benchmark still runs, with every
# message in the suite it claims and shown once (its figures are for
# people, not for make check).
. "${SC_SRCDIR:?run this from make check}/tests/tap.sh" || exit 99

command -v sqlite3 >/dev/null || skip_all "sqlite3 is not installed"
out=$("$SC_SRCDIR/bench/suite-cost" --builddir "$SC_BUILDDIR" --quick 2>&1)
rc=$?
is "bench/suite-cost --quick exits 0" 0 "$rc"
like "...and prints suite 1's rate" "^suite 1: [0-9.]+ msg/s" "$out"
like "...and suite 2's" "^suite 2: [0-9.]+ msg/s" "$out"
like "...and their ratio" "^ratio suite 2 / suite 1: [0-9.]+" "$out"
[ "$rc" -eq 0 ] || diag "$out"
done_testing
