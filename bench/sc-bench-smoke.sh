#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/sc-bench --quick: every row of the benchmark table is still measured
# (its figures are for people, not for make check: no timing is judged).
# --no-pg: the rows of relays on PostgreSQL need the PostgreSQL store and
# the routing between nodes, which this tree has not (see the README); here
# they must be listed as skipped, saying why.
. "${SC_SRCDIR:?run this from make check}/tests/tap.sh" || exit 99

BENCH=$SC_BUILDDIR/bench/sc-bench
[ -x "$BENCH" ] || skip_all "$BENCH is not built (make check builds it)"
# With PostgreSQL (which CI installs) the quick run measures its rows too:
# sc-bench starts its own server.
if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	pg=yes
else
	pg=no
fi
# Prosody, the reference of issue 10, where it is installed (CI does not).
if command -v prosody >/dev/null; then
	prosody=yes
else
	prosody=no
fi
out=$("$BENCH" --builddir "$SC_BUILDDIR" --quick 2>&1)
rc=$?
is "sc-bench --quick exits 0 (every row measured)" 0 "$rc"
[ "$rc" -eq 0 ] || diag "$out"
for row in "routing, 1 sender -> 1 receiver" "routing, 2 senders -> 2 receivers" \
	"bare TLS relay, 1 pair, CPU per frame" "SQLite insert \\+ delete per message, 2 rows per commit" \
	"routing, 1 pair, against a TLS \\+ durable floor" "routing, 2 pairs, against a TLS \\+ durable floor" \
	"bare TLS relay, 2 pairs, CPU per message at 1 send in flight per sender" \
	"routing, 2 pairs, against a TLS \\+ durable floor under the same load" \
	"offline fill" "queue drain on login" "offline fill rate, [0-9]+ queued against [0-9]+" \
	"[0-9]+ idle receiving sessions" "[0-9]+ idle sending sessions" "logins/s" \
	"logins/s \\(TLS \\+ auth \\+ welcome\\), [0-9]+ clients \\(protocol 2 clients\\)" "one-shot scctl send" \
	"end-to-end scctl connect -> scctl listen, 2048-bit"; do
	like "the table has: $row" "^\| $row.* \| [0-9.e+]+ [a-zA-Z/-]+ \| .* \| [0-9.e+-]+x? \| " "$out"
done
like "it names the machine" "^machine: [0-9]+ CPUs, " "$out"
for row in "routing, 10 pairs, 1 node on PostgreSQL" \
	"routing, 10 pairs, 2 nodes on PostgreSQL \\(senders on node 1, receivers on node 2\\)"; do
	if [ "$pg" = yes ]; then
		like "the table has: $row" "^\| $row \| [0-9.e+]+ [a-zA-Z/-]+ \| .* \| [0-9.e+-]+x? \| " "$out"
	else
		like "the table lists, as skipped: $row" "^\| $row \| - \| - \| - \| - \| skipped: " "$out"
	fi
done
for row in "routing, 10 pairs, Prosody \\(XMPP, reference\\)" \
	"[0-9]+ idle receiving sessions, Prosody's memory per session \\(XMPP, reference\\)"; do
	if [ "$prosody" = yes ]; then
		like "the table has: $row" "^\| $row \| [0-9.e+]+ [a-zA-Z/-]+ \| .* \| [0-9.e+-]+x? \| " "$out"
	else
		like "the table lists, as skipped: $row" \
			"^\| $row \| - \| - \| - \| - \| skipped: Prosody is not installed" "$out"
	fi
done
json=$("$BENCH" --builddir "$SC_BUILDDIR" --quick --no-pg --json --pairs 1 2>/dev/null)
is "--json exits 0" 0 $?
like "--json is one object with the rows" '^\{"cpus":[0-9]+,.*"rows":\[\{"figure":' "$json"
like "--json has the floor row" '"figure":"routing, 1 pair, against a TLS \+ durable floor","measured":true' "$json"
like "--json has the PostgreSQL rows, skipped" \
	'"figure":"routing, 10 pairs, 2 nodes on PostgreSQL \(senders on node 1, receivers on node 2\)","measured":false,"skipped":true' \
	"$json"
like "--json has the end-to-end row" '"figure":"end-to-end scctl connect -> scctl listen, 2048-bit","measured":true' "$json"
done_testing
