#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# What securechatd and scctl say when the relay is run by hand and
# something is in the way, each time with what to do: no --state-directory
# as an ordinary user, the port taken, a key others may read, and scctl's
# admin verbs with no control socket where they look.
SC_SCRIPT=startup
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

# ---- the default state directory, as an ordinary user ----------------------------

# As root, the test plays an ordinary user (nobody) with setpriv.
as_user() {
	if [ "$(id -u)" = 0 ]; then
		setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
	else
		"$@"
	fi
}
if [ "$(id -u)" = 0 ] && ! command -v setpriv >/dev/null; then
	skip "no --state-directory as an ordinary user" "setpriv is not installed"
elif ! as_user test -x "$SECURECHATD"; then
	skip "no --state-directory as an ordinary user" "nobody cannot run $SECURECHATD (a private build directory)"
elif as_user test -w /var/lib || as_user test -w /var/lib/securechat; then
	skip "no --state-directory as an ordinary user" "this user may write /var/lib"
else
	out=$(as_user timeout "$SC_WAIT" "$SECURECHATD" --listen 127.0.0.1:0 -o key-bits=2048 \
		-o control="$T/nobody.control" 2>&1)
	is "no --state-directory as an ordinary user: exit status 1" 1 "$?"
	like "...saying which option to use" \
		"Failed to create state directory /var/lib/securechat: .*--state-directory DIR \\(for example --state-directory \\./state\\)" \
		"$out"
fi

# ---- the port taken -------------------------------------------------------------------

check "a relay starts" relay_start || done_testing
out=$(timeout "$SC_WAIT" "$SECURECHATD" --state-directory "$T/second" --listen "127.0.0.1:$SC_PORT" \
	-o key-bits=2048 -o control="$T/second.control" 2>&1)
is "a second one on its port: exit status 1" 1 "$?"
like "...saying which option to use" \
	"Failed to listen on 127\\.0\\.0\\.1:$SC_PORT: Address already in use\\. .*pick another with --listen ADDRESS:PORT" \
	"$out"
relay_stop

# ---- a key others may read ---------------------------------------------------------------

chmod 644 "$SC_STATE/identity.key"
out=$(timeout "$SC_WAIT" "$SECURECHATD" --state-directory "$SC_STATE" --listen 127.0.0.1:0 \
	-o control="$T/control" 2>&1)
is "an identity key of mode 0644: refused, exit status 1" 1 "$?"
like "...saying how to fix it" "Fix its mode with: chmod 600 $SC_STATE/identity\\.key" "$out"
chmod 600 "$SC_STATE/identity.key"
check "after chmod 600 the relay starts again" relay_start || done_testing

# ---- scctl's admin verbs, no control socket where they look -------------------------------

out=$("$SCCTL" --timeout "$SC_WAIT" status --control "$T/elsewhere" 2>&1)
is "scctl status with no control socket there: EXIT_CONNECT" "$EXIT_CONNECT" "$?"
like "...saying how to point at the relay's" \
	"No control socket at $T/elsewhere: .*-o control=PATH.*--control PATH" "$out"
out=$(SECURECHAT_CONTROL=$T/control "$SCCTL" --timeout "$SC_WAIT" status 2>&1)
is "...and with SECURECHAT_CONTROL naming the relay's, status works" 0 "$?"
relay_stop
done_testing
