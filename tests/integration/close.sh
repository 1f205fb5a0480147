#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The relay's last word reaches the peer. A client that sends a frame
# over max-frame has written more than the relay reads: if the relay
# closed its socket with those bytes unread, the kernel would answer with
# a RST, and a RST makes the client's kernel throw away the error frame
# it had not read yet. The relay sends its error, ends its direction and
# reads what is left before closing, so the error arrives every time.

SC_SCRIPT=close
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

LOOPS=30
check "relay starts (tls=$SC_TLS)" relay_start -o trusted-networks=127.0.0.0/8 || done_testing

# A frame of some 68 KB (max-frame is 64 KiB), sent as one write.
big=$(head -c 68000 /dev/zero | tr '\0' a)
big="{\"type\":\"auth\",\"user\":\"$big\"}"

got=0
for i in $(seq "$LOOPS"); do
	if "$SC_RAW" $SC_RAW_TLS --timeout 15 127.0.0.1 "$SC_PORT" -e connect -e "expect hello" \
		-e "frame $big" -e "expect error bad_frame" -e eof >"$T/close.out" 2>&1; then
		got=$((got + 1))
	else
		diag "loop $i: $(grep '^sc-raw:' "$T/close.out")"
	fi
done
is "an oversized frame, $LOOPS times: error bad_frame every time, then an orderly close" \
	"$LOOPS" "$got"

# The relay still serves (nothing was left half-closed behind it).
out=$("$SC_RAW" $SC_RAW_TLS --timeout 15 127.0.0.1 "$SC_PORT" -e connect -e "expect hello" -e bye 2>&1)
is "a new connection still gets hello" 0 $?

relay_stop
is "the relay exits 0 on SIGTERM" 0 $?
unlike "the relay logged no sanitizer report" "AddressSanitizer|LeakSanitizer|runtime error" \
	"$(cat "$T"/relay.*.log)"

done_testing
