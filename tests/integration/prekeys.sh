#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The relay's side of suite 2 through the real securechatd, spoken frame by
# frame with sc-raw: hello lists suite 2; welcome says how many one-time
# prekeys (OPKs) the relay holds and how many it keeps; publish stores an
# SPK only when its owner signed it, and OPKs up to max-prekeys; lookup
# with prekeys hands each OPK out once, then the SPK alone, and nothing
# for a user who never published; prekeys survive a restart and go with a
# key reset; a suite-2 envelope is queued and delivered like any other.

SC_SCRIPT=prekeys
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

export SECURECHAT_CONTROL=$T/control
SUITE2=x25519-ratchet+des-ede3-cbc+hmac-sha256

check "relay starts (max-prekeys=5, tls=$SC_TLS)" \
	relay_start -o max-prekeys=5 -o trusted-networks=127.0.0.0/8 || done_testing

raw() { # COMMAND...: sc-raw with each argument a script line
	local a=()
	for c; do a+=(-e "$c"); done
	"$SC_RAW" $SC_RAW_TLS --timeout 15 127.0.0.1 "$SC_PORT" "${a[@]}"
}

as() { # USER COMMAND...: a sending session of USER (key $T/USER.key), then COMMANDs
	local user=$1
	shift
	raw connect "key $T/$user.key 2048" "auth $user send" "wait welcome" "$@" bye
}

bundles() { # USER N: N bundle lookups of USER as bob; the "# bundle" lines
	local cmds=() i
	for ((i = 0; i < $2; i++)); do cmds+=("bundle $1" "wait key"); done
	as bob "${cmds[@]}" | sed -n 's/^# bundle of //p' | paste -sd, -
}

contains "hello lists suite 2 after suite 1" \
	"\"suites\":[\"rsa-oaep-sha256+des-ede3-cbc+hmac-sha256\",\"$SUITE2\"]" \
	"$(raw connect 'expect hello' 2>&1)"
out=$(as alice 2>&1)
like "welcome: alice holds no OPKs, the relay keeps 5" '"opks":0.*"max_opks":5|"max_opks":5.*"opks":0' "$out"
ok "bob registers" as bob
is "before alice published, her lookup has no bundle" "" "$(bundles alice 1)"

out=$(as alice "publish 1 10 3" "wait published" 2>&1)
like "alice publishes an SPK and 3 OPKs: the relay holds 3" '"type":"published","id":[0-9]+,"opks":3' "$out"
is "bob's lookups get each OPK once, oldest first, then the SPK alone" \
	"alice: spk 1 opk 10,alice: spk 1 opk 11,alice: spk 1 opk 12,alice: spk 1 opk none" "$(bundles alice 4)"
out=$(as bob lookup\ alice "wait key" 2>&1)
unlike "a lookup without prekeys has no bundle" '"bundle"' "$out"
out=$(as alice "bundle alice" "wait key" 2>&1)
like "alice's lookup of herself gets her SPK" "# bundle of alice: spk 1 opk none" "$out"

ok "an SPK signed by another key is refused (bad_request), the session goes on" \
	as alice "publish 2 20 1 forged" "wait error bad_request"
is "...and nothing of it was stored" "alice: spk 1 opk none" "$(bundles alice 1)"

out=$(as alice "publish 3 20 4" "wait published" 2>&1)
like "4 more OPKs are taken" '"opks":4' "$out"
ok "2 more than max-prekeys are refused (too_large), an id held already too (bad_request)" \
	as alice "publish 4 30 2" "wait error too_large" "publish 5 22 1" "wait error bad_request"
ok "the relay counted the refusal under max-prekeys" relay_logged 'max-prekeys'
is "the refused publications changed nothing" "alice: spk 3 opk 20" "$(bundles alice 1)"

# ---- durability ---------------------------------------------------------------

relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
check "...and starts again (message-burst=3)" relay_start -o max-prekeys=5 -o trusted-networks=127.0.0.0/8 \
	-o message-rate=1/min -o message-burst=3 || done_testing
like "welcome after the restart: alice's 3 OPKs are still there" '"opks":3' "$(as alice 2>&1)"
is "...handed out where it left off" "alice: spk 3 opk 21" "$(bundles alice 1)"
ok "bundle lookups take tokens of the message rate: bob's fourth is refused (rate_limited)" \
	as bob "bundle alice" "wait key" "bundle alice" "wait key" "bundle alice" "wait error rate_limited"

# ---- a suite-2 envelope ---------------------------------------------------------

b64() { head -c "$1" /dev/urandom | base64 -w0; }
send2() { # ID [MEMBER]: a send frame of an ENVELOPE2 from alice to bob, random bytes of the right sizes
	printf 'frame {"type":"send","id":%s,"envelope":{"v":1,"suite":"%s","id":"%s","from":"alice","to":"bob","ts":%s,%s"hdr":"%s","ct":"%s","mac":"%s","sig":"%s"}}' \
		"$1" "$SUITE2" "$(b64 16)" "$(date +%s)" "$2" "$(b64 41)" "$(b64 16)" "$(b64 32)" "$(b64 256)"
}
out=$(as alice "$(send2 1)" "wait accepted" 2>&1)
like "a suite-2 envelope is accepted and queued" '"type":"accepted","id":1,.*"queued":true' "$out"
out=$(raw connect "key $T/bob.key" "auth bob" "wait deliver" 2>&1)
contains "...and delivered" "\"suite\":\"$SUITE2\"" "$out"
out=$(raw connect "key $T/alice.key" "auth alice send" "wait welcome" "$(send2 2 '"iv":"AAAAAAAAAAA=",')" eof 2>&1)
like "one with a member of suite 1 besides is refused (bad_frame)" '"id":2,"code":"bad_frame"' "$out"

# ---- a key reset drops them ------------------------------------------------------

ok "an administrator resets alice's key" "$SCCTL" --timeout "$SC_WAIT" reset-key alice
relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
is "alice's prekeys went with her key" "0 0" \
	"$(db "SELECT count(*) FROM ${SC_TBL}signed_prekeys WHERE name = 'alice'") $(db "SELECT count(*) FROM ${SC_TBL}one_time_prekeys WHERE name = 'alice'")"
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
