#!/bin/bash
# SPDX-License-Identifier: MIT
#
# completion/scctl.bash: commands, options, option values (identities for
# --user, relays from known_servers for --server, key sizes), user names
# from the pinned peers of the selected relay, and the pieces bash splits
# off at "=" and ":". Calls the completion function the way bash does
# (COMP_LINE, COMP_POINT), so it needs neither a terminal nor the
# bash-completion package.

. "$SC_SRCDIR/tests/tap.sh" || exit 99
. "$SC_SRCDIR/completion/scctl.bash"

T=$(mktemp -d "${TMPDIR:-/tmp}/sc-completion.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT

H=$T/home
mkdir -p "$H/identity" "$H/peers/localhost_5000" "$H/peers/127.0.0.1_5977" "$H/peers/[::1]_6000"
touch "$H/identity/alice.key" "$H/identity/bob.key"
touch "$H/peers/localhost_5000/carol" "$H/peers/localhost_5000/dave" \
	"$H/peers/127.0.0.1_5977/erin" "$H/peers/127.0.0.1_5977/carol" "$H/peers/[::1]_6000/frank"
printf '%s\n' "localhost:5000 SHA256:AAAA" "127.0.0.1:5977 SHA256:BBBB" >"$H/known_servers"

# The candidates bash would be offered for LINE (cursor at the end),
# sorted, on one line.
complete_line() { # LINE
	local COMP_LINE=$1 COMP_POINT=${#1} COMP_WORDBREAKS=$' \t\n"\'><=;|&(:'
	COMPREPLY=()
	_scctl scctl
	printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'
}

is "commands" "connect fingerprint help inbox init kick listen monitor prekeys reload reset-key rotate-key send sessions status trust users" \
	"$(complete_line "scctl ")"
is "prekeys: rotate" "rotate" "$(complete_line "scctl prekeys ")"
is "a command's prefix" "reload reset-key" "$(complete_line "scctl re")"
like "global options, --version before the command" "^--config .*--server .*--version$" \
	"$(complete_line "scctl --")"
unlike "no --version after a command" "--version" "$(complete_line "scctl users --")"
like "init takes --bits" "(^| )--bits( |$)" "$(complete_line "scctl init --")"
is "key sizes for --bits" "2048 3072 4096" "$(complete_line "scctl init --bits ")"
like "rotate-key takes --bits" "(^| )--bits( |$)" "$(complete_line "scctl rotate-key --")"
is "send --wait and --wait=" "--wait --wait=" "$(complete_line "scctl send --w")"
is "users --registered" "--registered" "$(complete_line "scctl users --reg")"
is "admin commands take --control" "--control|--control|--control|--control|--control|--control|--control" \
	"$(for v in status sessions monitor kick reset-key reload users; do complete_line "scctl $v --cont"; echo; done | paste -sd'|')"
unlike "chat commands do not" "--control" "$(complete_line "scctl send --")"
is "--control before the command too" "--control" "$(complete_line "scctl --cont")"
mkdir -p "$T/run/securechat" && touch "$T/run/securechat/control"
is "--control completes file names" "$T/run/securechat/control" \
	"$(complete_line "scctl status --control $T/run/securechat/c")"
is "...and kick's user name comes after it" "carol dave" \
	"$(complete_line "scctl --home $H --server localhost kick --control $T/run/securechat/control ")"
is "trust --yes" "--yes" "$(complete_line "scctl trust --y")"

is "--user: the identities in --home" "alice bob" "$(complete_line "scctl --home $H --user ")"
is "--user=: the same after =" "alice" "$(complete_line "scctl --home=$H --user=a")"
is "--server: relays from known_servers" "127.0.0.1:5977 localhost:5000" \
	"$(complete_line "scctl --home $H --server ")"
is "--server after the ':' bash split off" "5977" "$(complete_line "scctl --home $H --server 127.0.0.1:59")"
is "--server=: the part after =" "localhost:5000" "$(complete_line "scctl --home $H --server=lo")"

is "send: pinned peers of every relay without --server" "carol dave erin frank" \
	"$(complete_line "scctl --home $H send ")"
is "send: only the relay's peers with --server HOST:PORT" "carol erin" \
	"$(complete_line "scctl --home $H --server 127.0.0.1:5977 send ")"
is "...with --server HOST (default port 5000)" "carol dave" \
	"$(complete_line "scctl --server=LocalHost --home $H send ")"
is "...with an IPv6 --server" "frank" "$(complete_line "scctl --home $H --server [::1]:6000 send ")"
is "...and a prefix" "dave" "$(complete_line "scctl --home $H --server localhost send d")"
is "kick, reset-key, trust, fingerprint complete user names too" "erin|erin|erin|erin" \
	"$(for v in kick reset-key trust fingerprint; do complete_line "scctl --home $H $v e"; echo; done | paste -sd'|')"
is "nothing after send's user (the text)" "" "$(complete_line "scctl --home $H send carol ")"
is "...no options either: send reads none there" "" "$(complete_line "scctl --home $H send carol --")"
is "...nor option values" "" "$(complete_line "scctl --home $H send carol --home ")"
is "...nor after =" "" "$(complete_line "scctl --home $H send carol --home=$T/")"
is "a command's unique prefix: its options" "--registered" "$(complete_line "scctl us --reg")"
is "...and its user names" "carol dave" "$(complete_line "scctl --home $H --server localhost ki ")"
is "...and send's text" "" "$(complete_line "scctl --home $H sen carol --")"
is "an ambiguous prefix: no user names" "" "$(complete_line "scctl --home $H --server localhost se ")"
is "help: commands" "kick" "$(complete_line "scctl help ki")"
is "SECURECHAT_HOME when there is no --home" "carol dave" \
	"$(SECURECHAT_HOME=$H complete_line "scctl --server localhost:5000 send ")"
is "an empty state directory: no names, no errors" "" \
	"$(complete_line "scctl --home $T/nothing send " 2>&1)"

done_testing
