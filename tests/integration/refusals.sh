#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What must be refused, and how loudly: a second "alice" with another key,
# a relay whose key changed, a peer whose key changed (until scctl trust),
# registration=closed, and bad configurations.

SC_SCRIPT=refusals
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

# The exit statuses lib.sh (and so every test) checks against are the ones
# cli/exit-codes.h documents.
header_codes=$(sed -n 's/^ *\(EXIT_[A-Z_]*\) = \([0-9]*\),.*/\1=\2/p' "$SC_SRCDIR/cli/exit-codes.h" | sort)
lib_codes=$(set | grep -E '^EXIT_[A-Z_]+=[0-9]+$' | sort)
is "lib.sh's exit statuses are cli/exit-codes.h's" "$header_codes" "$lib_codes"

check "relay starts" relay_start || done_testing
SERVER_FP=$(sed -n 's/.*Server identity \(SHA256:[^ ]*\).*/\1/p' "$SC_RELAY_LOG")
ok "alice registers" sc_init alice
ok "bob registers" sc_init bob
BOB_FP=$(sc bob fingerprint)

# ---- a second alice, with another key --------------------------------------------

sc_at "$T/alice2" alice init --bits 2048 >"$T/alice2.out" 2>"$T/alice2.err"
is "a second alice (new home, new key): EXIT_AUTH" $EXIT_AUTH $?
like "...naming the relay's code key_mismatch" "key_mismatch" "$(cat "$T/alice2.err")"
is "...and printing no result" "" "$(cat "$T/alice2.out")"
ok "the relay logged the key-mismatch event for alice" \
	grep -Eq "event=key-mismatch user=alice " "$SC_RELAY_LOG"
sc_at "$T/alice2" alice send bob "$(marker impostor) from the impostor" >/dev/null 2>&1
is "the impostor cannot send either: EXIT_AUTH" $EXIT_AUTH $?
out=$(sc alice send bob "$(marker real) from the real alice" 2>/dev/null)
is "the real alice still can" "0 queued" "$? $out"
sc bob --json inbox >"$T/inbox1.json" 2>/dev/null
is "bob gets only the real alice's message" "$(marker real) from the real alice" \
	"$("$SC_JSON" message text <"$T/inbox1.json")"

# ---- registration = closed -----------------------------------------------------

relay_stop
check "relay restarts with registration=closed" relay_start -o registration=closed
sc carol init --bits 2048 >"$T/carol.out" 2>"$T/carol.err"
is "a new user (carol) is refused: EXIT_AUTH" $EXIT_AUTH $?
like "...naming registration_closed" "registration_closed" "$(cat "$T/carol.err")"
out=$(sc alice send bob "$(marker closed) while registration is closed" 2>/dev/null)
is "a registered user (alice) still sends" "0 queued" "$? $out"
sc bob --json inbox >"$T/inbox2.json" 2>/dev/null
is "...and bob, registered too, receives" "$(marker closed) while registration is closed" \
	"$("$SC_JSON" message text <"$T/inbox2.json")"
sc carol --json inbox >/dev/null 2>&1
is "carol is still refused afterwards (not registered by the attempt)" $EXIT_AUTH $?

# ---- the relay's key changed ------------------------------------------------------

relay_stop
mv "$SC_STATE" "$T/state.orig"
check "relay restarts on the same port with a fresh state directory (a new key)" relay_start
NEW_SERVER_FP=$(sed -n 's/.*Server identity \(SHA256:[^ ]*\).*/\1/p' "$SC_RELAY_LOG")
ok "the new relay key differs" test "$SERVER_FP" != "$NEW_SERVER_FP"
sc alice send bob "$(marker mitm) to a relay with another key" >"$T/mitm.out" 2>"$T/mitm.err"
is "alice stops with EXIT_SERVER_KEY" $EXIT_SERVER_KEY $?
contains "...naming the pinned fingerprint" "$SERVER_FP" "$(cat "$T/mitm.err")"
contains "...and the one the relay presented" "$NEW_SERVER_FP" "$(cat "$T/mitm.err")"
is "...printing no result" "" "$(cat "$T/mitm.out")"
ok "the other relay never saw alice log in" test "$(relay_count 'User alice logged in')" -eq 0
sc_argv bob
bg_start /dev/null "$T/mitm-listen.err" "${SC_ARGV[@]}" listen
bg_wait "$SC_BG" 20
is "bob's listen stops too, with EXIT_SERVER_KEY (no reconnect loop)" $EXIT_SERVER_KEY $?
relay_stop
rm -rf "$SC_STATE"
mv "$T/state.orig" "$SC_STATE"
check "the real relay is back" relay_start
out=$(sc alice send bob "$(marker back) to the real relay" 2>/dev/null)
is "alice sends again" "0 queued" "$? $out"
sc bob --json inbox >"$T/inbox3.json" 2>/dev/null
is "bob receives it" "$(marker back) to the real relay" "$("$SC_JSON" message text <"$T/inbox3.json")"

# ---- a peer's key changed ------------------------------------------------------------
#
# bob lost his key: the administrator removes his registration (here with
# sqlite3 or psql on the stopped relay's database) and bob registers a new
# key. alice pinned the old one.

if db_available; then
	relay_stop
	db "DELETE FROM ${SC_TBL}users WHERE name = 'bob';"
	is "bob's registration removed from the database" 0 "$(db "SELECT count(*) FROM ${SC_TBL}users WHERE name = 'bob';")"
	rm -rf "$T/home-bob"
	check "relay starts" relay_start
	ok "bob registers a new key" sc_init bob
	NEW_BOB_FP=$(sc bob fingerprint)
	ok "...with another fingerprint" test "$BOB_FP" != "$NEW_BOB_FP"

	sc alice send bob "$(marker tonewbob) to the new key" >"$T/peer.out" 2>"$T/peer.err"
	is "alice's send to bob: EXIT_PEER_KEY" $EXIT_PEER_KEY $?
	contains "...naming the pinned fingerprint" "$BOB_FP" "$(cat "$T/peer.err")"
	contains "...and the new one" "$NEW_BOB_FP" "$(cat "$T/peer.err")"
	like "...and what to do" "scctl trust bob" "$(cat "$T/peer.err")"
	is "alice's pin is unchanged" "$BOB_FP" "$(sc alice fingerprint bob 2>/dev/null | sed -n 1p)"

	out=$(sc bob send alice "$(marker fromnewbob) from the new key" 2>/dev/null)
	is "bob (new key) sends to alice" "0 queued" "$? $out"
	sc alice --json inbox >"$T/alice-inbox1.json" 2>/dev/null
	is "alice's inbox exits 0" 0 $?
	is "...refusing bob's message as key_changed" "key_changed" \
		"$("$SC_JSON" -m from=bob rejected reason <"$T/alice-inbox1.json")"
	is "...without showing its text" 0 "$(json_count "$T/alice-inbox1.json" message)"
	unlike "...anywhere" "fromnewbob" "$(cat "$T/alice-inbox1.json")"

	sc alice trust bob </dev/null >/dev/null 2>"$T/trust.err"
	is "trust without --yes and without a terminal: EXIT_USAGE, nothing changed" \
		"$EXIT_USAGE $BOB_FP" "$? $(sc alice fingerprint bob 2>/dev/null | sed -n 1p)"
	out=$(sc alice trust --yes bob 2>"$T/trust.err")
	is "scctl trust --yes bob exits 0" 0 $?
	is "...and says which key replaced which" "bob is now trusted with key $NEW_BOB_FP (was $BOB_FP)" "$out"
	is "alice's pin is bob's new key" "$NEW_BOB_FP" "$(sc alice fingerprint bob 2>/dev/null | sed -n 1p)"

	T2="$(marker trusted) after trust"
	out=$(sc alice send bob "$T2" 2>/dev/null)
	is "alice's send to bob works now" "0 queued" "$? $out"
	sc bob --json inbox >"$T/inbox4.json" 2>/dev/null
	is "bob's inbox has exactly that message" "$T2" "$("$SC_JSON" message text <"$T/inbox4.json")"
	out=$(sc bob send alice "$(marker fromnewbob2) again" 2>/dev/null)
	is "bob sends to alice again" "0 queued" "$? $out"
	sc alice --json inbox >"$T/alice-inbox2.json" 2>/dev/null
	is "alice now reads it (and the refused one is gone)" "$(marker fromnewbob2) again" \
		"$("$SC_JSON" message text <"$T/alice-inbox2.json")"
	is "...rejecting nothing" 0 "$(json_count "$T/alice-inbox2.json" rejected)"
else
	diag "no $SC_DATABASE client (sqlite3, psql) is installed: skipping the peer-key change"
fi

# ---- a key of a size the protocol does not allow ----------------------------------

# 2056 bits is within 2048..4096 but not one of 2048, 3072, 4096: scctl
# loads such a file, and the relay must refuse to register it.
mkdir -p "$T/home-dave/identity" && chmod 700 "$T/home-dave" "$T/home-dave/identity"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2056 -out "$T/home-dave/identity/dave.key" 2>/dev/null
chmod 600 "$T/home-dave/identity/dave.key"
sc dave init >"$T/dave.out" 2>"$T/dave.err"
is "a 2056-bit key does not register: EXIT_AUTH" $EXIT_AUTH $?
like "...saying which sizes are allowed" "auth_failed.*2048, 3072 or 4096" "$(cat "$T/dave.err")"
ok "...and dave is not registered" relay_logged "auth_failed: key size not 2048, 3072 or 4096 bits"
unlike "...no registration logged" "Registered new user dave" "$(cat "$SC_RELAY_LOG")"

# ---- configuration errors ------------------------------------------------------------

C=$T/conf
mkdir -p "$C/securechatd.conf.d"
printf '[server]\n# a comment\nlisten = 127.0.0.1:0\nmax-frame = banana\n' >"$C/bad-value.conf"
"$SECURECHATD" -c "$C/bad-value.conf" --check-config >"$T/cc.out" 2>"$T/cc.err"
is "--check-config, bad value: exit status 1" 1 $?
like "...naming file and line" "$C/bad-value.conf:4: .*banana.*max-frame" "$(cat "$T/cc.err")"
printf '[server]\nlisten = 127.0.0.1:0\n\nno-such-key = 1\n' >"$C/bad-key.conf"
"$SECURECHATD" -c "$C/bad-key.conf" --check-config >"$T/cc.out" 2>"$T/cc.err"
is "--check-config, unknown key: exit status 1" 1 $?
like "...naming file, line and key" "$C/bad-key.conf:4: .*no-such-key" "$(cat "$T/cc.err")"
printf '[server]\nlisten = 127.0.0.1:0\n[chat]\nx = 1\n' >"$C/bad-section.conf"
"$SECURECHATD" -c "$C/bad-section.conf" --check-config >"$T/cc.out" 2>"$T/cc.err"
is "--check-config, unknown section: exit status 1" 1 $?
like "...naming file and line" "$C/bad-section.conf:3: .*chat" "$(cat "$T/cc.err")"
"$SECURECHATD" --state-directory "$T/nostate" -o no-such-key=1 --check-config >"$T/cc.out" 2>"$T/cc.err"
is "an unknown -o key: exit status 1" 1 $?
like "...naming it" "no-such-key" "$(cat "$T/cc.err")"
"$SECURECHATD" --state-directory "$T/nostate" -o handshake-timeout=soon --check-config >"$T/cc.out" 2>"$T/cc.err"
is "a bad -o value: exit status 1" 1 $?
like "...naming key and value" "handshake-timeout.*soon|soon.*handshake-timeout" "$(cat "$T/cc.err")"
printf '[server]\nlisten = 127.0.0.1:0\nmax-text = 2000\n' >"$C/securechatd.conf"
printf '[server]\nmax-text = 3000\n' >"$C/securechatd.conf.d/50-text.conf"
"$SECURECHATD" -c "$C/securechatd.conf" --state-directory "$T/nostate" --check-config >"$T/cc.out" 2>"$T/cc.err"
is "a good file with a drop-in: exit status 0" 0 $?
ok "...printing the effective value (the drop-in's)" grep -qx "max-text = 3000" "$T/cc.out"
printf '[server]\nmax-text = lots\n' >"$C/securechatd.conf.d/60-bad.conf"
"$SECURECHATD" -c "$C/securechatd.conf" --state-directory "$T/nostate" --check-config >"$T/cc.out" 2>"$T/cc.err"
is "a bad drop-in: exit status 1" 1 $?
like "...naming the drop-in and its line" "60-bad.conf:2: " "$(cat "$T/cc.err")"
ok "--check-config created no state directory" test ! -e "$T/nostate"
# A path as long as a line allows ("control = " + 189 characters
# = 199) prints a file that reads back; one character more is refused.
long=/$(printf 'p%.0s' $(seq 190))
"$SECURECHATD" --state-directory "$T/nostate" -o "control=${long:0:189}" --check-config \
	>"$T/long.conf" 2>"$T/cc.err"
is "-o with the longest path a line holds: exit status 0" 0 $?
"$SECURECHATD" -c "$T/long.conf" --check-config >"$T/cc.out" 2>"$T/cc.err"
rc=$?
is "...and what --check-config printed reads back" "0 $(cat "$T/long.conf")" "$rc $(cat "$T/cc.out")"
"$SECURECHATD" --state-directory "$T/nostate" -o "control=${long:0:190}" --check-config \
	>"$T/cc.out" 2>"$T/cc.err"
is "-o with a path one character longer: exit status 1" 1 $?
like "...saying the path is too long" "control.*too long|too long.*control" "$(cat "$T/cc.err")"
"$SECURECHATD" --state-directory "$SC_STATE" --listen 127.0.0.1:0 -o no-such-key=1 >"$T/cc.out" 2>"$T/cc.err"
is "the daemon itself refuses to start with an unknown -o key" 1 $?

check_privacy "$T"/inbox*.json "$T"/alice-inbox*.json
relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
