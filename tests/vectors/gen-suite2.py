#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# Generates tests/vectors/suite2-kdf.json and tests/vectors/suite2-session.json,
# the deterministic vectors of suite 2 (securechat-protocol(7), "SUITE 2
# (FORWARD SECRECY)"), from the page alone with python3-cryptography, so that
# tests/unit/test-suite2.c checks the C code against a second implementation.
# Nothing here is shared with common/suite2.c.
#
# Regenerate (only when the format changes on purpose, with the page):
#   apt-get install -y python3-cryptography     # 41 or later
#   python3 tests/vectors/gen-suite2.py tests/vectors
# CI does not run this script; it runs the C test over the committed files.
#
# Every key and random value is SHA-256 of a name, so the output is the same
# on every run. The OAEP block and the RSA-PSS signatures are random by their
# definition: the vectors carry a fixed stand-in for the OAEP block (the
# header only transports it) and the exact bytes the signature covers.

import hashlib
import hmac
import json
import struct
import sys

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SUITE = b"x25519-ratchet+des-ede3-cbc+hmac-sha256"


def fixed(name, n=32):
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"securechat suite2 vector %s %d" % (name.encode(), i)).digest()
        i += 1
    return out[:n]


def lp(x):
    return struct.pack(">I", len(x)) + x


def u32(n):
    return struct.pack(">I", n)


def u64(n):
    return struct.pack(">Q", n)


def pub(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def dh(priv, peer):
    return X25519PrivateKey.from_private_bytes(priv).exchange(
        X25519PublicKey.from_public_bytes(peer))


def hkdf(salt, ikm, info, n):
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt, info=info).derive(ikm)


def kdf_rk(rk, dh_out):
    okm = hkdf(rk, dh_out, b"securechat/2 ratchet", 64)
    return okm[:32], okm[32:]


def kdf_ck(ck):
    mk = hmac.new(ck, b"\x01", hashlib.sha256).digest()
    return hmac.new(ck, b"\x02", hashlib.sha256).digest(), mk


def message_keys(mk):
    okm = hkdf(b"\0" * 32, mk, b"securechat/2 message-keys", 64)
    return okm[:24], okm[24:56], okm[56:64]


def root_key(frm, to, ek, spk, opk, dh1, dh2, secret):
    info = (lp(b"securechat/2 root-key") + lp(frm) + lp(to) + lp(ek) + lp(spk) +
            lp(opk or b""))
    return hkdf(b"\0" * 32, dh1 + (dh2 or b"") + secret, info, 32)


def header(dh_pub, pn, n, start=None):
    h = bytes([1 if start else 0]) + dh_pub + u32(pn) + u32(n)
    if start:
        h += (start["ek"] + u32(start["spk_id"]) + bytes([1 if start["opk_id"] is not None else 0]) +
              u32(start["opk_id"] or 0) + lp(start["oaep"]))
    return h


def transcript(msg_id, frm, to, ts, hdr, ct):
    return (lp(b"securechat/2 message") + lp(SUITE) + lp(msg_id) + lp(frm) + lp(to) +
            u64(ts) + lp(hdr) + lp(ct))


class Party:
    """Signal's double ratchet, from the page, with keys drawn from a list."""

    def __init__(self, me, peer, draws):
        self.me, self.peer, self.draws = me, peer, list(draws)
        self.dhs = self.dhr = self.cks = self.ckr = None
        self.ns = self.nr = self.pn = 0
        self.start = None
        self.skipped = {}

    def init_sender(self, sk, spk_pub, start):
        self.dhs = self.draws.pop(0)
        self.dhr = spk_pub
        self.rk, self.cks = kdf_rk(sk, dh(self.dhs, spk_pub))
        self.start = start

    def init_receiver(self, sk, spk_priv):
        self.dhs, self.rk = spk_priv, sk

    def seal(self, msg_id, ts, text):
        self.cks, mk = kdf_ck(self.cks)
        hdr = header(pub(self.dhs), self.pn, self.ns, self.start)
        self.ns += 1
        k_enc, k_mac, iv = message_keys(mk)
        padder = padding.PKCS7(64).padder()
        data = padder.update(text) + padder.finalize()
        enc = Cipher(TripleDES(k_enc), modes.CBC(iv)).encryptor()
        ct = enc.update(data) + enc.finalize()
        h = transcript(msg_id, self.me, self.peer, ts, hdr, ct)
        mac = hmac.new(k_mac, h, hashlib.sha256).digest()
        return {"id": msg_id.hex(), "from": self.me.decode(), "to": self.peer.decode(),
                "ts": ts, "text": text.decode(), "header": hdr.hex(), "ct": ct.hex(),
                "mac": mac.hex(), "transcript": h.hex(), "signed": (h + lp(mac)).hex(),
                "mk": mk.hex()}

    def open(self, m):
        hdr = bytes.fromhex(m["header"])
        dh_pub, (pn, n) = hdr[1:33], struct.unpack(">II", hdr[33:41])
        if (dh_pub, n) in self.skipped:
            mk = self.skipped.pop((dh_pub, n))
        else:
            if dh_pub != self.dhr:
                self.skip(pn)
                self.pn, self.ns, self.nr, self.dhr = self.ns, 0, 0, dh_pub
                self.rk, self.ckr = kdf_rk(self.rk, dh(self.dhs, self.dhr))
                self.dhs = self.draws.pop(0)
                self.rk, self.cks = kdf_rk(self.rk, dh(self.dhs, self.dhr))
            self.skip(n)
            self.ckr, mk = kdf_ck(self.ckr)
            self.nr += 1
        k_enc, k_mac, iv = message_keys(mk)
        ct = bytes.fromhex(m["ct"])
        h = transcript(bytes.fromhex(m["id"]), m["from"].encode(), m["to"].encode(), m["ts"],
                       hdr, ct)
        assert hmac.compare_digest(hmac.new(k_mac, h, hashlib.sha256).digest(),
                                   bytes.fromhex(m["mac"]))
        dec = Cipher(TripleDES(k_enc), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(64).unpadder()
        text = unpadder.update(dec.update(ct) + dec.finalize()) + unpadder.finalize()
        assert text.decode() == m["text"]
        self.start = None

    def skip(self, until):
        if self.ckr is None:
            return
        while self.nr < until:
            self.ckr, mk = kdf_ck(self.ckr)
            self.skipped[(self.dhr, self.nr)] = mk
            self.nr += 1


def kdf_vectors():
    ck = fixed("chain key")
    chain = []
    for _ in range(5):
        ck, mk = kdf_ck(ck)
        k_enc, k_mac, iv = message_keys(mk)
        chain.append({"ck": ck.hex(), "mk": mk.hex(), "k_enc": k_enc.hex(),
                      "k_mac": k_mac.hex(), "iv": iv.hex()})
    rk_steps = []
    rk = fixed("root key")
    for i in range(3):
        a, b = fixed("rk dh a %d" % i), fixed("rk dh b %d" % i)
        out = dh(a, pub(b))
        assert out == dh(b, pub(a))
        rk2, ck2 = kdf_rk(rk, out)
        rk_steps.append({"rk": rk.hex(), "priv": a.hex(), "peer_pub": pub(b).hex(),
                         "dh": out.hex(), "rk_out": rk2.hex(), "ck_out": ck2.hex()})
        rk = rk2
    return {"comment": "KDF_CK from ck0 (each step: next ck, mk and the message keys of mk) "
                       "and a KDF_RK chain over X25519 outputs; generated by gen-suite2.py",
            "kdf_ck": {"ck0": fixed("chain key").hex(), "steps": chain},
            "kdf_rk": rk_steps}


def session_vectors():
    alice, bob = b"alice", b"bob"
    spk_priv, opk_priv, ek_priv = fixed("bob spk"), fixed("bob opk"), fixed("alice ek")
    secret = fixed("session secret")
    spk_pub, opk_pub, ek_pub = pub(spk_priv), pub(opk_priv), pub(ek_priv)

    starts = []
    for with_opk in (True, False):
        dh1 = dh(ek_priv, spk_pub)
        dh2 = dh(ek_priv, opk_pub) if with_opk else None
        assert dh1 == dh(spk_priv, ek_pub)
        sk = root_key(alice, bob, ek_pub, spk_pub, opk_pub if with_opk else None, dh1, dh2,
                      secret)
        starts.append({"from": "alice", "to": "bob", "ek_priv": ek_priv.hex(),
                       "ek_pub": ek_pub.hex(), "spk_priv": spk_priv.hex(),
                       "spk_pub": spk_pub.hex(),
                       "opk_priv": opk_priv.hex() if with_opk else None,
                       "opk_pub": opk_pub.hex() if with_opk else None,
                       "secret": secret.hex(), "dh1": dh1.hex(),
                       "dh2": dh2.hex() if dh2 else None, "root_key": sk.hex()})

    sk = bytes.fromhex(starts[0]["root_key"])
    start = {"ek": ek_pub, "spk_id": 7, "opk_id": 4242, "oaep": fixed("oaep stand-in", 256)}
    a_draws = [fixed("alice ratchet %d" % i) for i in range(3)]
    b_draws = [fixed("bob ratchet %d" % i) for i in range(2)]
    a, b = Party(alice, bob, a_draws), Party(bob, alice, b_draws)
    a.init_sender(sk, spk_pub, start)
    b.init_receiver(sk, spk_priv)

    msgs = []

    def send(p, q, name, ts, text):
        m = p.seal(fixed("id " + name, 16), ts, text)
        msgs.append(m)
        return m

    # The order of events fixes which draw each ratchet step takes.
    m0 = send(a, b, "m0", 1700000000, b"hello bob")
    m1 = send(a, b, "m1", 1700000001, b"second, before any answer")
    b.open(m0)
    b.open(m1)
    m2 = send(b, a, "m2", 1700000002, "hi alice \u2713".encode())
    a.open(m2)
    m3 = send(a, b, "m3", 1700000003, b"sixteen bytes!!!")
    b.open(m3)
    m4 = send(b, a, "m4", 1700000004, b"")
    a.open(m4)

    return {"comment": "Root keys of a session start with and without an OPK, then one "
                       "conversation sealed in this order: alice m0 m1, bob opens both and "
                       "seals m2, alice opens m2 and seals m3, bob opens m3 and seals m4, "
                       "alice opens m4. The session uses the root key with the OPK. Each "
                       "party's X25519 ratchet keys are drawn in order from its list (raw "
                       "bytes, clamped per RFC 7748). generated by gen-suite2.py",
            "root_keys": starts,
            "start": {"ek_pub": ek_pub.hex(), "spk_id": 7, "opk_id": 4242,
                      "oaep": start["oaep"].hex()},
            "alice_ratchet_keys": [k.hex() for k in a_draws],
            "bob_ratchet_keys": [k.hex() for k in b_draws],
            "messages": msgs,
            "encodings": encodings()}


def encodings():
    spk_priv = fixed("bob spk")
    sig = fixed("signature stand-in", 256)
    spk = u32(7) + pub(spk_priv) + u64(1700000000) + lp(sig)
    opk = u32(4242) + pub(fixed("bob opk"))
    return {"spk_transcript": (lp(b"securechat/2 signed-prekey") + lp(b"bob") + u32(7) +
                               lp(pub(spk_priv)) + u64(1700000000)).hex(),
            "spk_sig": sig.hex(),
            "bundle_with_opk": (spk + b"\x01" + opk).hex(),
            "bundle_without_opk": (spk + b"\x00").hex()}


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/vectors"
    for name, data in (("suite2-kdf.json", kdf_vectors()),
                       ("suite2-session.json", session_vectors())):
        with open("%s/%s" % (outdir, name), "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
