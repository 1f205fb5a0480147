# SPDX-License-Identifier: MIT
#
# System tests. catalog.sh and completion.sh run everywhere; units.sh and
# admin.sh boot a throw-away systemd (tests/system/sdbox) and install
# securechatd into it, so they need root and are skipped (TAP skip_all)
# without it, with SC_SKIP_SYSTEM_TESTS=1, and inside "make distcheck".

SYSTEM_TESTS = \
	tests/system/catalog.sh \
	tests/system/completion.sh \
	tests/system/units.sh \
	tests/system/admin.sh \
	tests/system/deb.sh \
	tests/system/sdbox-check.sh

TESTS += $(SYSTEM_TESTS)
EXTRA_DIST += $(SYSTEM_TESTS) tests/system/gate.sh tests/system/lib.sh tests/system/sdbox
