#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Run every libFuzzer target that was built for SECONDS seconds each
# (default 30), starting from a copy of its seed corpus so that the
# committed corpus stays as it is. Run from the build directory of a tree
# configured with --enable-fuzzing. Exits non-zero if any target found a
# crash, a leak or a timeout; the reproducer is kept and its path printed.
#
# Usage: fuzz/run-fuzzers.sh [SECONDS]

set -u

seconds=${1:-30}
case $seconds in
''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${SC_BUILDDIR:-.}
targets="frame codec envelope config suite2"

work=$(mktemp -d "${TMPDIR:-/tmp}/sc-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

failed=0
ran=0

for t in $targets; do
        bin=$builddir/fuzz/fuzz-$t
        if [ ! -x "$bin" ]; then
                echo "FAILED: fuzz-$t (not built)"
                failed=$((failed + 1))
                continue
        fi

        corpus=$work/corpus-$t
        mkdir -p "$corpus" "$work/artifacts-$t"
        if [ -d "$srcdir/fuzz/corpus/$t" ]; then
                cp "$srcdir/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null
        fi

        log=$work/fuzz-$t.log
        echo "fuzz-$t: running for ${seconds}s"
        "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$work/artifacts-$t/" \
                "$corpus" >"$log" 2>&1
        rc=$?
        ran=$((ran + 1))

        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
        if [ "$rc" -eq 0 ]; then
                echo "ok: fuzz-$t (${runs:-?} runs, ${cov:-cov: ?})"
        else
                failed=$((failed + 1))
                keep=$builddir/fuzz/artifacts-$t
                mkdir -p "$keep"
                cp "$work/artifacts-$t"/* "$keep"/ 2>/dev/null
                cp "$log" "$keep/fuzz-$t.log"
                echo "FAILED: fuzz-$t (exit $rc), reproducers and log in $keep"
                grep -m 5 -E '^(==[0-9]+==ERROR|SUMMARY)' "$log" | sed 's/^/    /'
        fi
done


if [ "$ran" -eq 0 ]; then
        echo "no fuzz target built: configure with CC=clang --enable-fuzzing" >&2
        exit 1
fi
[ "$failed" -eq 0 ]
