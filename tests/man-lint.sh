#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every manual page renders without a warning from groff or man.
. "$SC_SRCDIR/tests/tap.sh" || exit 99

command -v groff >/dev/null || skip_all "groff is not installed"

lint() { # PAGE
	local out
	out=$(groff -ww -man -z "$1" 2>&1) || return 1
	[ -z "$out" ] || { echo "$out"; return 1; }
	if command -v man >/dev/null; then
		out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$1" 2>&1 >/dev/null)
		[ -z "$out" ] || { echo "$out"; return 1; }
	fi
}

for page in scctl.1 securechatd.8 securechatd.conf.5 securechat-protocol.7; do
	ok "man/$page renders without warnings" lint "$SC_SRCDIR/man/$page"
done
done_testing
