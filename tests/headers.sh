#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every header of common/, daemon/ and cli/ compiles on its own, included
# first, with the flags the programs are built with: a header that leans
# on what its includer happened to include before it breaks the next
# includer, far from the header itself.
. "$SC_SRCDIR/tests/tap.sh" || exit 99

[ -n "$SC_HEADER_CC" ] || skip_all "run through make check (SC_HEADER_CC is not set)"

out=$(mktemp -d) || exit 99
trap 'rm -rf "$out"' EXIT

compiles() { # HEADER
	# shellcheck disable=SC2086  # the flags are words on purpose
	printf '#include "%s"\n' "$1" |
		$SC_HEADER_CC $SC_HEADER_CFLAGS -I"$SC_SRCDIR/common" -I"$SC_SRCDIR/daemon" \
			-I"$SC_SRCDIR/cli" -x c -c -o "$out/h.o" -
}

for dir in common daemon cli; do
	for h in "$SC_SRCDIR/$dir"/*.h; do
		ok "$dir/${h##*/} compiles alone" compiles "$h"
	done
done
done_testing
