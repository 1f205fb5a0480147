# SPDX-License-Identifier: MIT
# Program pages are listed next to their program (daemon/local.mk,
# cli/local.mk); the protocol page belongs to both.
dist_man_MANS += man/securechat-protocol.7
TESTS += tests/man-lint.sh
EXTRA_DIST += tests/man-lint.sh
