#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# daemon/securechatd.conf.example, installed as securechatd.conf, lists
# every key of the daemon's configuration table commented out, with the
# value the daemon really uses when the key is not set.
. "$SC_SRCDIR/tests/tap.sh" || exit 99

example=$SC_SRCDIR/daemon/securechatd.conf.example
daemon=$SC_BUILDDIR/securechatd
[ -x "$daemon" ] || skip_all "securechatd is not built"
T=$(mktemp -d "${TMPDIR:-/tmp}/sc-conf.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT

"$daemon" --check-config -c /dev/null >"$T/defaults"
is "securechatd --check-config prints the defaults" 0 "$?"
# The same with every commented-out key of the example set.
sed 's/^#\([a-z-]* =\)/\1/' "$example" >"$T/uncommented.conf"
"$daemon" --check-config -c "$T/uncommented.conf" >"$T/example" 2>&1
is "the example, uncommented, is a valid configuration" 0 "$?"
is "...and every value in it is the default" "$(cat "$T/defaults")" "$(cat "$T/example")"

keys() { sed -n 's/^#\{0,1\}\([a-z-]*\) =.*/\1/p' "$1" | sort; }
is "it lists every key of the daemon's table, once" "$(keys "$T/defaults")" "$(keys "$example")"
unlike "...all of them commented out" '^[a-z]' "$(grep -v '^\[server\]$' "$example")"
done_testing
