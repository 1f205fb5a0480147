#!/bin/bash
# SPDX-License-Identifier: MIT
#
# sdbox on machines where no box can boot: in a chroot, and as a root
# without capabilities (a container without the rights to make
# namespaces). "sdbox check" and "sdbox start" exit 77 and say why, and a
# system test skips with that reason instead of failing with an empty
# "sdbox start failed:".

. "$SC_SRCDIR/tests/system/gate.sh" || exit 99

[ "$(id -u)" = 0 ] || skip_all "needs root to make a chroot"
for tool in unshare chroot setpriv; do
	command -v "$tool" >/dev/null 2>&1 || skip_all "$tool is not installed"
done
SDBOX=$SC_SRCDIR/tests/system/sdbox
T=$(mktemp -d "${TMPDIR:-/tmp}/sc-sdbox.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT
export SDBOX_DIR=$T/box

# COMMAND in a chroot whose root is a directory, not a mount: the host's
# /usr, /etc and API file systems bound into a tmpfs, in a private mount
# namespace that goes away with the command.
in_chroot() { # COMMAND...
	unshare --mount --propagation private -- bash -c '
		r=$1/root
		shift
		mkdir -p "${r%/*}" && mount -t tmpfs sdbox-check-chroot "${r%/*}" && mkdir -p "$r" || exit 99
		for d in usr etc proc sys dev tmp run var; do
			mkdir -p "$r/$d" && mount --rbind "/$d" "$r/$d" || exit 99
		done
		for l in bin sbin lib lib64; do
			[ -e "/usr/$l" ] && ln -s "usr/$l" "$r/$l"
		done
		mkdir -p "$r$SC_SRCDIR" && mount --bind "$SC_SRCDIR" "$r$SC_SRCDIR" || exit 99
		exec chroot "$r" "$@"' _ "$T/chroot" "$@"
}

out=$(in_chroot "$SDBOX" check 2>&1)
is "in a chroot, sdbox check exits 77" 77 "$?"
is "...and says why" "sdbox: cannot boot here: / is not the root of a mount namespace (a chroot?)" "$out"
out=$(in_chroot "$SDBOX" start 2>&1)
is "sdbox start too" "77 sdbox: cannot boot here: / is not the root of a mount namespace (a chroot?)" "$? $out"

no_caps() { setpriv --bounding-set=-all --inh-caps=-all -- "$@"; }
out=$(no_caps "$SDBOX" check 2>&1)
is "as root without capabilities, sdbox check exits 77" 77 "$?"
like "...and says why" '^sdbox: cannot boot here: .+' "$out"

# A system test in the chroot: lib.sh skips it with sdbox's reason.
out=$(in_chroot env SC_SRCDIR="$SC_SRCDIR" SC_BUILDDIR="$SC_BUILDDIR" bash "$SC_SRCDIR/tests/system/units.sh" 2>/dev/null)
is "units.sh in a chroot: skipped, saying why" \
	"1..0 # SKIP sdbox: cannot boot here: / is not the root of a mount namespace (a chroot?)" \
	"$(printf '%s\n' "$out" | grep -v '^#')"
done_testing
