#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/flood --smoke: the flood benchmark still runs (its figures are for
# people, not for make check).
. "${SC_SRCDIR:?run this from make check}/tests/tap.sh" || exit 99

[ -x "$SC_BUILDDIR/tests/integration/sc-raw" ] || skip_all "sc-raw is not built (make check builds it)"
out=$("$SC_SRCDIR/bench/flood" --builddir "$SC_BUILDDIR" --smoke 2>&1)
rc=$?
is "bench/flood --smoke exits 0" 0 "$rc"
like "...and prints the ratio with its target" "^ratio: [0-9.]+ \(target <= 2\)" "$out"
[ "$rc" -eq 0 ] || diag "$out"
done_testing
