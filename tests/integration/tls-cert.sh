#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The relay's TLS certificate, seen from outside with gnutls-cli: by default
# a self-signed Ed25519 certificate for tls.key (0600) in the state
# directory, not for the RSA identity key; a state directory from before
# tls.key (tls.crt made from the identity key) is upgraded at the next
# start; deleting the two files rotates them; a configured
# tls-certificate/tls-key pair is used as it is. Through all of it the
# client's pinned identity key stays valid: clients never look at the
# certificate.

SC_SCRIPT=tls-cert
. "${SC_SRCDIR:?run this from make check}/tests/integration/lib.sh" || exit 99

[ "$SC_TLS" = yes ] || skip_all "about TLS only"
for p in gnutls-cli certtool; do
	command -v "$p" >/dev/null || skip_all "$p is not installed (gnutls-bin)"
done

# What gnutls-cli says of the relay's certificate and the handshake (and
# the relay's hello frame, whose length header has NUL bytes).
peer() {
	timeout "$SC_WAIT" gnutls-cli --insecure --port "$SC_PORT" 127.0.0.1 </dev/null 2>&1 | tr -d '\0'
}
# The certificate's public key pin (SHA-256 of the SPKI), as gnutls-cli
# prints it.
peer_pin() {
	peer | sed -n 's/^[[:space:]]*pin-sha256:\(.*\)$/\1/p' | head -n 1
}
login() { # USER
	sc "$1" users >/dev/null
}

check "relay starts" relay_start || done_testing
OUT=$(peer)
contains "the certificate's key is Ed25519" "EdDSA (Ed25519) key" "$OUT"
contains "and TLS 1.3 signs with it" "(TLS1.3-X.509)-(ECDHE-" "$OUT"
contains "...Ed25519 in CertificateVerify" "-(EdDSA-Ed25519)-" "$OUT"
is "tls.key is 0600" 600 "$(stat -c %a "$SC_STATE/tls.key")"
ok "the relay said it made it" relay_logged "Created a self-signed Ed25519 TLS certificate"
ok "alice registers (pins the identity key)" sc_init alice
PIN1=$(peer_pin)
ok "alice logs in" login alice

# ---- a state directory from before tls.key ---------------------------------

check "relay stops" relay_stop
rm -f "$SC_STATE/tls.key"
cat >"$T/cert.tmpl" <<EOF
cn = securechatd
expiration_days = 30
signing_key
encryption_key
tls_www_server
EOF
ok "an old-style tls.crt for the RSA identity key" \
	certtool --generate-self-signed --load-privkey "$SC_STATE/identity.key" \
		--template "$T/cert.tmpl" --outfile "$SC_STATE/tls.crt"
check "relay starts on the old state directory" relay_start || done_testing
ok "it replaces the certificate, and says so" relay_logged "replacing the one for the identity key"
contains "the certificate's key is Ed25519 again" "EdDSA (Ed25519) key" "$(peer)"
ok "alice logs in: her pinned identity key is unchanged" login alice

# ---- rotation: delete the files ----------------------------------------------

PIN2=$(peer_pin)
check "relay stops" relay_stop
rm -f "$SC_STATE/tls.key" "$SC_STATE/tls.crt"
check "relay starts without tls.key and tls.crt" relay_start || done_testing
PIN3=$(peer_pin)
ok "a new key each time" test -n "$PIN1" -a "$PIN1" != "$PIN2" -a "$PIN2" != "$PIN3"
ok "alice logs in after the rotation" login alice

# ---- refusals ------------------------------------------------------------------

check "relay stops" relay_stop
chmod 0640 "$SC_STATE/tls.key"
"$SECURECHATD" --state-directory "$SC_STATE" --listen 127.0.0.1:0 -o key-bits=2048 \
	-o control="$T/control" >"$T/refused.log" 2>&1
rc=$?
ok "a tls.key others may read stops the relay" test "$rc" -ne 0
contains "...and it says why" "tls.key: readable or writable by group or others" "$(cat "$T/refused.log")"
chmod 0600 "$SC_STATE/tls.key"

# ---- a configured certificate ----------------------------------------------------

certtool --generate-privkey --key-type rsa --bits 2048 --outfile "$T/own.key" 2>/dev/null
ok "an RSA certificate of the operator's own" \
	certtool --generate-self-signed --load-privkey "$T/own.key" \
		--template "$T/cert.tmpl" --outfile "$T/own.crt"
check "relay starts with tls-certificate and tls-key" \
	relay_start -o tls-certificate="$T/own.crt" -o tls-key="$T/own.key" || done_testing
contains "it uses that certificate" "RSA key 2048 bits" "$(peer)"
ok "alice logs in" login alice
check "relay stops" relay_stop

done_testing
