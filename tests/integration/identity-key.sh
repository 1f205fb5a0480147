#!/bin/bash
# SPDX-License-Identifier: MIT
#
# One identity key on every relay: relays sharing a database must present
# the key their clients pinned, whichever of them a client reaches. The key
# comes from identity-key=, else the systemd credential "identity-key",
# else the state directory (generated there on the first start). A key
# named by the first two is never generated: a missing one stops the relay,
# naming the file, and a state directory's own key it replaces is pointed
# out. The TLS certificate stays each relay's own.

SC_SCRIPT=identity-key
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

KEY=$T/shared.key
STATE1=$T/state1
STATE2=$T/state2

# The fingerprint a relay's log says it presents.
logged_fingerprint() { # LOG
	sed -n 's/.*Server identity \(SHA256:[^ ]*\) .*/\1/p' "$1" | tail -n 1
}
login() { # USER
	sc "$1" users >/dev/null
}

# ---- the key of the first relay, copied once ------------------------------

SC_STATE=$STATE1
check "a first relay starts and makes its identity key" relay_start || done_testing
FP=$(logged_fingerprint "$SC_RELAY_LOG")
like "...and logs its fingerprint and where it came from" \
	"Server identity SHA256:.* from $STATE1/identity\\.key \\(state directory\\)" "$(cat "$SC_RELAY_LOG")"
check "relay stops" relay_stop
cp "$STATE1/identity.key" "$KEY"
chmod 600 "$KEY"

# ---- two relays on the same file, side by side ------------------------------

check "relay 1 starts with identity-key=" relay_start -o identity-key="$KEY"
contains "...saying so" "from $KEY (identity-key=)" "$(cat "$SC_RELAY_LOG")"
is "...with the same fingerprint" "$FP" "$(logged_fingerprint "$SC_RELAY_LOG")"
ok "alice registers on relay 1 (pins its identity key)" sc_init alice
P1=$SC_PORT

"$SECURECHATD" --state-directory "$STATE2" --listen 127.0.0.1:0 -o key-bits=2048 -o tls="$SC_TLS" \
	-o control="$T/control2" -o identity-key="$KEY" >"$T/relay2.log" 2>&1 &
R2=$!
SC_PIDS="$SC_PIDS $R2"
wait_until relay_listening "$R2" "$T/relay2.log"
ok "relay 2 starts beside it on another state directory" grep -q "Listening on" "$T/relay2.log"
is "relay 2 presents the same fingerprint" "$FP" "$(logged_fingerprint "$T/relay2.log")"
ok "...and made no identity.key of its own" test ! -e "$STATE2/identity.key"
if [ "$SC_TLS" = yes ]; then
	ok "...but its own TLS certificate" test -s "$STATE2/tls.crt"
	ok "...not relay 1's" bash -c '! cmp -s "$1" "$2"' - "$STATE1/tls.crt" "$STATE2/tls.crt"
fi
check "relay 2 stops" bg_stop "$R2"

# ---- what alice pinned on relay 1 is accepted by relay 2 -------------------------

check "relay 1 stops" relay_stop
SC_STATE=$STATE2
check "relay 2 starts on relay 1's address (one DNS name, another node)" \
	relay_start -o identity-key="$KEY"
is "...on the same port" "$P1" "$SC_PORT"
ok "alice, who pinned relay 1's key, is accepted by relay 2" login alice
check "relay 2 stops" relay_stop

# Without the shared key the same place presents another key, and alice's
# client refuses it: the check above could fail.
SC_STATE=$T/state3
check "a relay with a state directory of its own starts there" relay_start
out=$(sc alice users 2>&1)
is "alice refuses its new identity key" "$EXIT_SERVER_KEY" "$?"
check "relay stops" relay_stop
OWN=$(logged_fingerprint "$SC_RELAY_LOG")
check "the same relay given the shared key starts" relay_start -o identity-key="$KEY"
ok "...and alice is accepted" login alice
contains "...but the relay warns that its own key is no longer used" \
	"$SC_STATE/identity.key holds another identity key, $OWN, no longer used" "$(cat "$SC_RELAY_LOG")"
check "relay stops" relay_stop
SC_STATE=$STATE1
check "relay 1 with identity-key= naming a copy of its own key starts" relay_start -o identity-key="$KEY"
ok "...without that warning" bash -c '! grep -q "no longer used" "$1"' - "$SC_RELAY_LOG"
check "relay stops" relay_stop

# ---- a reload keeps the key in use -------------------------------------------------

printf '[server]\nidentity-key = %s\n' "$KEY" >"$T/sc.conf"
check "relay 1 starts with identity-key= in its configuration file" relay_start -c "$T/sc.conf"
printf '[server]\nidentity-key = %s\nnode-timeout = 20s\n' "$T/state3/identity.key" >"$T/sc.conf"
ok "a reload naming another key succeeds" \
	env SECURECHAT_CONTROL="$T/control" "$SCCTL" --timeout "$SC_WAIT" reload
ok "...saying that the key changes only with a restart" \
	wait_until relay_logged "Changing identity-key takes effect only after a restart"
ok "...and so does node-timeout" \
	wait_until relay_logged "Changing node-timeout takes effect only after a restart"
ok "...and alice is still accepted" login alice
check "relay stops" relay_stop

# ---- a named key that is not there, or that others may read ----------------------

out=$(timeout "$SC_WAIT" "$SECURECHATD" --state-directory "$T/state4" --listen 127.0.0.1:0 \
	-o key-bits=2048 -o control="$T/control" -o identity-key="$T/missing.key" 2>&1)
is "a missing identity-key file: exit status 1" 1 "$?"
contains "...naming the file" "$T/missing.key" "$out"
ok "...and no key was made in its place" test ! -e "$T/missing.key"
ok "...nor in the state directory" test ! -e "$T/state4/identity.key"
"$SECURECHATD" --check-config -o identity-key="$T/missing.key" >"$T/check.conf" 2>&1
is "--check-config does not read the file" 0 "$?"
contains "...and shows the key" "identity-key = $T/missing.key" "$(cat "$T/check.conf")"

cp "$KEY" "$T/open.key"
chmod 644 "$T/open.key"
out=$(timeout "$SC_WAIT" "$SECURECHATD" --state-directory "$T/state4" --listen 127.0.0.1:0 \
	-o key-bits=2048 -o control="$T/control" -o identity-key="$T/open.key" 2>&1)
is "an identity-key file of mode 0644: exit status 1" 1 "$?"
contains "...saying how to fix it" "chmod 600 $T/open.key" "$out"

printf 'not a key\n' >"$T/garbage.key"
chmod 600 "$T/garbage.key"
out=$(timeout "$SC_WAIT" "$SECURECHATD" --state-directory "$T/state4" --listen 127.0.0.1:0 \
	-o key-bits=2048 -o control="$T/control" -o identity-key="$T/garbage.key" 2>&1)
is "a file that holds no key: exit status 1" 1 "$?"
contains "...naming it" "Failed to load the identity key $T/garbage.key" "$out"

# ---- the systemd credential -----------------------------------------------------

mkdir -m 700 "$T/creds"
cp "$KEY" "$T/creds/identity-key"
chmod 400 "$T/creds/identity-key"
SC_STATE=$T/state5
export CREDENTIALS_DIRECTORY=$T/creds
check "a relay started with the credential identity-key" relay_start
unset CREDENTIALS_DIRECTORY
contains "...takes its key from there" "from $T/creds/identity-key (credential identity-key)" \
	"$(cat "$SC_RELAY_LOG")"
is "...the shared one" "$FP" "$(logged_fingerprint "$SC_RELAY_LOG")"
ok "...and made none in its state directory" test ! -e "$T/state5/identity.key"
ok "alice is accepted" login alice
check "relay stops" relay_stop

# identity-key= wins over the credential.
export CREDENTIALS_DIRECTORY=$T/creds
check "identity-key= and a credential: the relay starts" relay_start -o identity-key="$STATE1/identity.key"
unset CREDENTIALS_DIRECTORY
contains "...with the configured file" "from $STATE1/identity.key (identity-key=)" "$(cat "$SC_RELAY_LOG")"
check "relay stops" relay_stop

# A credential directory without that credential: the state directory's.
mkdir -m 700 "$T/other-creds"
export CREDENTIALS_DIRECTORY=$T/other-creds
check "a credential directory without identity-key: the relay starts" relay_start
unset CREDENTIALS_DIRECTORY
contains "...with the state directory's key" "from $T/state5/identity.key (state directory)" \
	"$(cat "$SC_RELAY_LOG")"
check "relay stops" relay_stop

done_testing
