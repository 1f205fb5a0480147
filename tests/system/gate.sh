# SPDX-License-Identifier: MIT
#
# Whether the system tests run at all: not with SC_SKIP_SYSTEM_TESTS=1, and
# not in the build tree of "make distcheck" (builddir DISTDIR/_build/sub,
# srcdir DISTDIR), which would boot the same systems a second time. Sourced
# by lib.sh and by the tests that do without it.

. "$SC_SRCDIR/tests/tap.sh" || exit 99

[ "${SC_SKIP_SYSTEM_TESTS:-0}" = 1 ] && skip_all "SC_SKIP_SYSTEM_TESTS=1"
case $SC_BUILDDIR in
*/_build/sub)
	[ "$(cd "$SC_BUILDDIR/../.." && pwd -P)" = "$(cd "$SC_SRCDIR" && pwd -P)" ] &&
		skip_all "make distcheck: the system tests already ran in the main build"
	;;
esac
