#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A relay whose state directory fills up (issue 8, case 3), on a 24 MiB
# tmpfs: sends are refused with storage_full below min-free-disk; with the
# file system then filled to the last block by something else, expiry,
# acks and logins still work (the database deletes with the room of the
# reserve file); once space returns, sends are accepted again. Nothing
# accepted is lost. Also queue-max-bytes, on an ordinary directory.
#
# Mounting needs root (CI runs as root); otherwise the script skips.
# With SC_DATABASE=pg (disk-pg.sh) only queue-max-bytes runs: the small
# file system is about the SQLite file in the state directory, which a
# relay on PostgreSQL does not have (its queue is on the server's disk).

SC_SCRIPT=disk
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

# Hundreds of clients from one address, and messages as fast as they go:
# the per-address and per-user rates are limits.sh's subject, not this one's.
NO_RATES="-o trusted-networks=127.0.0.0/8 -o message-rate=0"

# ---- queue-max-bytes ---------------------------------------------------------------

check "relay starts with queue-max-bytes=64K" relay_start -o queue-max-bytes=64K $NO_RATES || done_testing
ok "alice registers" sc_init alice
ok "bob registers" sc_init bob
text_of_size q 12000 "$T/q"
# A message whose "accepted" the client will not trust: it sends the
# same frame again once the queue is full (below).
"$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" 127.0.0.1 "$SC_PORT" -e "key $T/retry.key 2048" \
	-e connect -e "auth retry send" -e "wait welcome" -e "send bob $(marker retried)" \
	-e "wait accepted" -e bye >"$T/retry1.out" 2>&1
ok "a raw client's message is accepted" grep -q '"type":"accepted"' "$T/retry1.out"
accepted=0
for i in 1 2 3 4 5 6 7 8; do
	out=$(sc alice send bob - <"$T/q" 2>"$T/q.err")
	rc=$?
	[ "$rc" -eq 0 ] || break
	accepted=$((accepted + 1))
done
is "sends beyond queue-max-bytes are refused with status $EXIT_REFUSED" "$EXIT_REFUSED" "$rc"
like "...saying storage_full: the relay's queue is full" "storage_full.*queue is full" "$(cat "$T/q.err")"
ok "...after at least 2 were accepted ($accepted)" [ "$accepted" -ge 2 ]
ok "...counted as limit-hit queue-max-bytes" relay_logged "reason=queue-max-bytes"
"$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" 127.0.0.1 "$SC_PORT" -e "key $T/retry.key 2048" \
	-e connect -e "auth retry send" -e "wait welcome" \
	-e "frame $(sed -n 's/^> \({"type":"send".*\)/\1/p' "$T/retry1.out")" -e "wait accepted" -e bye \
	>"$T/retry2.out" 2>&1
ok "...but the same message sent again is accepted again, not refused" \
	grep -q '"type":"accepted"' "$T/retry2.out"

# A flood of refused sends in one session: every one counted, a bounded
# number logged (at most 10 lines per limit and second, so the bound
# grows with how long the flood took on a busy machine; 200 refusals
# logged one by one stay far above it).
flood_start=$(date +%s)
"$SC_RAW" $SC_RAW_TLS --timeout "$SC_WAIT" 127.0.0.1 "$SC_PORT" -e "key $T/flood.key 2048" \
	-e connect -e "auth flood send" -e "wait welcome" -e "repeat 200 send bob $(head -c 12000 /dev/zero | tr '\0' x)" \
	-e "repeat 200 wait error storage_full" -e bye >/dev/null 2>"$T/flood.err"
is "200 sends in one session are refused with storage_full" 0 $? || diag "$(cat "$T/flood.err")"
flood_secs=$(($(date +%s) - flood_start))
hits=$(SECURECHAT_CONTROL=$T/control "$SCCTL" --timeout "$SC_WAIT" --json status |
	grep -o '"name":"queue-max-bytes","hits":[0-9]*' | grep -o '[0-9]*$')
ok "...all counted in scctl status ($hits hits)" [ "${hits:-0}" -ge 201 ]
lines=$(relay_count "reason=queue-max-bytes")
ok "...but at most a few logged ($lines lines in ${flood_secs} s)" [ "$lines" -le $((10 * (flood_secs + 2) + 1)) ]
# The first line of a later second says how many were left out (the
# flood may span two).
t1=$(now_ms)
wait_until eval '[ "$(now_ms)" -gt $((t1 + 1100)) ]'
sc alice send bob - <"$T/q" >/dev/null 2>&1
like "...the next line says how many were not" "queue-max-bytes.*and [0-9]+ more not logged" \
	"$(grep "reason=queue-max-bytes" "$SC_RELAY_LOG")"
sc bob --json inbox >"$T/q.json" 2>&1
is "bob's inbox gets the $accepted accepted, and the raw client's one, once" "$((accepted + 1))" \
	"$(json_count "$T/q.json" message)"
is "then alice can send again (the acks gave the bytes back)" queued "$(sc alice send bob - <"$T/q" 2>&1)"
sc bob inbox >/dev/null 2>&1
check "the relay exits 0 on SIGTERM" relay_stop

# ---- a small file system -------------------------------------------------------------

# The rest of the file as one skipped test, and the end.
skip_rest() { # REASON
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - the small file system # SKIP $*"
	done_testing
}

[ "$SC_DATABASE" = sqlite ] ||
	skip_rest "the database is PostgreSQL: min-free-disk and the reserve file keep room for SQLite's file"
[ "$(id -u)" = 0 ] || skip_rest "not root: cannot mount a small tmpfs for the state directory"
SMALL=$T/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=24m,mode=0700 sc-disk-test "$SMALL" 2>"$T/mount.err" ||
	skip_rest "cannot mount a tmpfs: $(cat "$T/mount.err")"
# The relay first, so that the file system is not busy; then lib.sh's cleanup.
trap 'relay_stop; umount "$SMALL" 2>/dev/null || umount -l "$SMALL"; sc_cleanup' EXIT
# The same identity as before, so that the clients' pins hold.
mkdir -m 0700 "$SMALL/state"
cp -p "$SC_STATE/identity.key" "$SC_STATE/tls.crt" "$SMALL/state/"
SC_STATE=$SMALL/state

printf '[server]\nqueue-ttl = 20s\n' >"$T/disk.conf"
check "relay starts on a 24M tmpfs (max-text=256K, min-free-disk=4M)" \
	relay_start -c "$T/disk.conf" -o max-frame=1M -o max-text=256K -o min-free-disk=4M $NO_RATES || done_testing
ok "...and sets aside its reserve file" [ -f "$SC_STATE/reserve" ]
# 20 MiB are left, enough for the 16 MiB log but not twice that.
wal=$(stat -c %s "$SC_STATE/securechatd.db-wal")
ok "...but does not write its log ahead, which would take most of the room left ($wal bytes)" \
	[ "$wal" -lt $((1024 * 1024)) ]
ok "carol and dave register" eval 'sc_init carol && sc_init dave'
ok "bob registers again (his first login here)" sc bob inbox

# Two messages that will expire while the disk is full (queue-ttl=20s),
# then everything else with a long queue-ttl.
t0=$(date +%s)
is "a message to carol is queued (queue-ttl 20s)" queued "$(sc alice send carol "$(marker carol1)" 2>/dev/null)"
is "...and another" queued "$(sc alice send carol "$(marker carol2)" 2>/dev/null)"
printf '[server]\nqueue-ttl = 1h\n' >"$T/disk.conf"
kill -HUP "$SC_RELAY_PID"
wait_until relay_logged "Configuration reloaded"

accepted=0
for i in $(seq 1 80); do
	text_of_size fill$i 262144 "$T/fill$i"
	out=$(sc alice send bob - <"$T/fill$i" 2>"$T/fill.err")
	rc=$?
	[ "$rc" -eq 0 ] || break
	accepted=$((accepted + 1))
done
diag "accepted $accepted messages of 256K; $(df -k "$SMALL" | tail -n 1)"
is "sends are refused below min-free-disk with status $EXIT_REFUSED" "$EXIT_REFUSED" "$rc"
like "...saying storage_full: out of disk space" "storage_full.*out of disk space" "$(cat "$T/fill.err")"
ok "...counted as limit-hit min-free-disk" relay_logged "reason=min-free-disk"
ok "...after some were accepted ($accepted)" [ "$accepted" -ge 3 ]

# Something else takes the rest, to the last block.
dd if=/dev/zero of="$SMALL/filler" bs=64k >/dev/null 2>&1
is "the file system is full" 0 "$(df -k --output=avail "$SMALL" | tail -n 1 | tr -d ' ')"
is "no expiry happened before the disk was full" 0 "$(relay_count "expired undelivered")"
sc alice send bob "$(marker late)" >/dev/null 2>"$T/late.err"
is "a send on the full disk is refused" "$EXIT_REFUSED" $?

# Expiry runs every queue-ttl/2 (at most 1 min): a reload to 20s again
# makes it run within 10s, once carol's two are due.
wait_until -t 60 eval '[ "$(date +%s)" -gt $((t0 + 21)) ]'
printf '[server]\nqueue-ttl = 20s\n' >"$T/disk.conf"
kill -HUP "$SC_RELAY_PID"
ok "carol's two messages expire on the full disk" \
	wait_until eval '[ "$(relay_count "expired undelivered")" -ge 2 ]'
is "dave logs in on the full disk" "No queued messages." "$(sc dave inbox 2>&1)"
sc erin init --bits 2048 >"$T/erin.err" 2>&1
is "a new user cannot register on the full disk: status $EXIT_REFUSED" "$EXIT_REFUSED" $?
like "...saying storage_full" "storage_full" "$(cat "$T/erin.err")"
sc bob --json inbox >"$T/full.json" 2>"$T/full.err"
is "bob's inbox on the full disk exits 0" 0 $? || diag "$(cat "$T/full.err")"
is "...with all $accepted messages" "$accepted" "$(json_count "$T/full.json" message)"
same=0
for i in $(seq 1 "$accepted"); do
	json_text "$T/full.json" "$i" "$T/got" && cmp -s "$T/fill$i" "$T/got" && same=$((same + 1))
done
is "...each exactly as sent" "$accepted" "$same"
is "the acks deleted them: a second inbox finds none" "No queued messages." "$(sc bob inbox 2>&1)"
if grep -q "released the reserve" "$T"/relay.*.log; then
	diag "the database needed the reserve to delete"
fi
ok "the relay is still running" relay_alive

rm -f "$SMALL/filler"
is "once space returns, a send is accepted again" queued "$(sc alice send bob "$(marker again)" 2>&1)"
ok "...and the reserve is set aside again" [ -f "$SC_STATE/reserve" ]
sc bob --json inbox >"$T/again.json" 2>&1
is "bob gets it" 1 "$(json_count "$T/again.json" message)"
check_privacy "$T/full.json" "$T/again.json"
check "the relay exits 0 on SIGTERM" relay_stop
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"
done_testing
