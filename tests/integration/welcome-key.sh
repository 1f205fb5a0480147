#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Protocol version 3: the relay signs the welcome with an Ed25519 key that
# its identity key certified (the welcome key). scctl must accept a good
# one and refuse, with EXIT_AUTH and a message naming what failed, a
# welcome signed by a key the statement is not on, by another key than
# the certified one, under an expired statement, over version 1's context,
# or without the statement at all (never falling back to the RSA welcome
# once the session is version 3); with a relay that offers only version 2
# it uses 2, and its RSA welcome. Then the real relay: scctl logs in with
# version 3, and a client of version 2 still gets the RSA welcome.

SC_SCRIPT=welcome-key
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

# ---- against a fake relay --------------------------------------------------------

DAY=86400

mkdir -p "$T/home-alice/identity" && chmod 700 "$T/home-alice" "$T/home-alice/identity"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/home-alice/identity/alice.key" 2>/dev/null
chmod 600 "$T/home-alice/identity/alice.key"

# One session per mode; the good ones first, so that alice pins the
# fake relay's key before the bad ones come.
modes="good good uncertified other-key expired v1-context no-key"
{
	echo "serverkey $T/fake.key"
	echo listen
	echo "persona bob $T/bob.key"
	for m in $modes; do
		echo "welcome $m"
		echo "accept $((7 * DAY))"
		echo eof
	done
	# A relay of version 2, whose welcome is RSA's.
	echo "offer 2"
	echo "accept $((7 * DAY))"
	echo eof
} >"$T/fake.script"
SC_BG_IN=$T/fake.script bg_start "$T/fake.out" "$T/fake.err" "$SC_RAW" $SC_RAW_TLS \
	--timeout "$SC_WAIT" 127.0.0.1 0
FAKE_PID=$SC_BG
if ! wait_until grep -q '^# port ' "$T/fake.out"; then
	diag "the fake relay did not listen:" "$(cat "$T/fake.err")"
	done_testing
fi
FAKE_PORT=$(sed -n 's/^# port //p' "$T/fake.out")

alice() { # ARGS...
	"$SCCTL" --server "127.0.0.1:$FAKE_PORT" --user alice --home "$T/home-alice" $SC_NOTLS \
		--timeout "$SC_WAIT" "$@"
}

# alice's send must fail with EXIT_AUTH, saying so, and send nothing.
refused() { # MODE REGEX
	local out rc
	out=$(alice send bob "$(marker "$1") must not leave" 2>&1)
	rc=$?
	is "welcome $1: scctl send exits with EXIT_AUTH" "$EXIT_AUTH" "$rc"
	like "...saying why" "$2" "$out"
	unlike "...sending nothing" "$(marker "$1")" "$(cat "$T/fake.out")"
}

out=$(alice send bob "$(marker good) over version 3" 2>&1)
is "a good version-3 welcome: scctl send exits 0" 0 $?
ok "...having asked for protocol 3" grep -q '^# client speaks protocol 3$' "$T/fake.out"
contains "...and the fake relay opened the message" "# opened send to bob: $(marker good) over version 3" \
	"$(cat "$T/fake.out")"
out=$(alice send bob "$(marker good2) again" 2>&1)
is "...and again, the relay's key pinned" 0 $?

refused uncertified "welcome key is not certified by its key SHA256:.*someone may be in the middle\. Not continuing\."
refused other-key "does not verify under its welcome key \(certified by its key SHA256:.*someone may be in the middle"
refused expired "welcome key expired at .* UTC \(it is .* UTC here\): check the clock of this machine and the relay's"
refused v1-context "does not verify under its welcome key \(certified by its key SHA256:.*someone may be in the middle"
refused no-key "welcome for protocol version 3 carries no welcome key: someone may be in the middle\. Not continuing\."

out=$(alice send bob "$(marker v2) to a relay of version 2" 2>&1)
is "a relay that offers version 2: scctl send exits 0" 0 $?
is "...having asked for protocol 2" 1 "$(grep -c '^# client speaks protocol 2$' "$T/fake.out")"
contains "...and the fake relay opened the message" "# opened send to bob: $(marker v2) to a relay of version 2" \
	"$(cat "$T/fake.out")"

bg_wait "$FAKE_PID"
is "the fake relay ran its whole script" 0 $?
[ -s "$T/fake.err" ] && diag "$(cat "$T/fake.err")"

# ---- the real relay ---------------------------------------------------------------

check "relay starts" relay_start || done_testing
ok "it made a welcome key at start, saying until when" \
	grep -Eq 'Made a new welcome key for protocol version 3 logins, certified until [0-9-]+ [0-9:]+ UTC' \
	"$SC_RELAY_LOG"
ok "carol registers" sc_init carol
ok "dave registers" sc_init dave
ok "...logging in with protocol 3" relay_logged "User carol logged in from .*, protocol 3\)"
check "dave listens" listen_start dave "$T/dave.json"
out=$(sc carol send dave "$(marker real) over version 3" 2>"$T/send.err")
is "carol's send to dave exits 0" "0 delivered" "$? $out"
wait_json "$T/dave.json" 1 message
is "dave's listen got it" "$(marker real) over version 3" "$("$SC_JSON" -n 1 message text <"$T/dave.json")"
ok "dave's listen logged in with protocol 3" relay_logged "User dave logged in from .* \(receiving session .*, protocol 3\)"
bg_stop "$SC_BG"

# sc-raw checks the welcome as scctl does, for the version it asks.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/erin.key" 2>/dev/null
raw() { # PROTO USER
	"$SC_RAW" $SC_RAW_TLS --timeout 15 127.0.0.1 "$SC_PORT" -e connect -e "key $T/erin.key" \
		-e "proto $1" -e "auth $2 send" -e "expect welcome" -e bye 2>&1
}
out=$(raw 2 erin)
like "a client of version 2 gets the RSA welcome, and it verifies" \
	"^# welcome signature verified \(RSA, protocol 2\)$" "$out"
unlike "...without a welcome_key" '"welcome_key"' "$out"
ok "...the relay logged protocol 2" relay_logged "User erin logged in from .*, protocol 2\)"
out=$(raw 1 erin)
like "a client of version 1 too" "^# welcome signature verified \(RSA, protocol 1\)$" "$out"
out=$(raw 3 erin)
like "a client of version 3 gets the Ed25519 welcome, and it verifies" \
	"^# welcome signature verified \(Ed25519 welcome key until [0-9]+, protocol 3\)$" "$out"
out=$(raw 9 erin)
like "a client asking for 9 gets 3" "^# welcome signature verified \(Ed25519 welcome key until [0-9]+, protocol 3\)$" "$out"
is "the welcome key was made once" 1 "$(relay_count 'Made a new welcome key')"

done_testing
