"""Our RFC 9180 seal against the RFC's own vector and the library's implementation."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.core import hpke_open, hpke_seal
from exchnode.core._hpke import AEAD_AES_128_GCM
from exchnode.errors import DecryptionError
from exchnode.testing import SeededRandom

# RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
SK_E = "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736"
SK_R = "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8"
PK_R = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d"
INFO = "4f6465206f6e2061204772656369616e2055726e"
ENC = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431"
PT = "4265617574792069732074727574682c20747275746820626561757479"
AAD = "436f756e742d30"
CT = "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a"


def test_rfc9180_a1_1_sequence_0() -> None:
    recipient = X25519PrivateKey.from_private_bytes(bytes.fromhex(SK_R))
    assert recipient.public_key().public_bytes_raw().hex() == PK_R
    sealed = hpke_seal(
        recipient.public_key(),
        bytes.fromhex(PT),
        info=bytes.fromhex(INFO),
        random=os.urandom,
        aad=bytes.fromhex(AAD),
        aead_id=AEAD_AES_128_GCM,
        ephemeral_key=X25519PrivateKey.from_private_bytes(bytes.fromhex(SK_E)),
    )
    assert sealed[:32].hex() == ENC
    assert sealed[32:].hex() == CT


def test_library_opens_what_we_seal() -> None:
    recipient = X25519PrivateKey.generate()
    sealed = hpke_seal(recipient.public_key(), b"k" * 32, info=b"ctx", random=SeededRandom("a"))
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    assert suite.decrypt(sealed, recipient, info=b"ctx") == b"k" * 32


def test_we_open_what_the_library_seals() -> None:
    recipient = X25519PrivateKey.generate()
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    sealed = suite.encrypt(b"content key", recipient.public_key(), info=b"ctx")
    assert hpke_open(recipient, sealed, info=b"ctx") == b"content key"


def test_seal_is_reproducible_from_the_seed() -> None:
    recipient = X25519PrivateKey.generate().public_key()
    one = hpke_seal(recipient, b"k", info=b"i", random=SeededRandom("s"))
    two = hpke_seal(recipient, b"k", info=b"i", random=SeededRandom("s"))
    three = hpke_seal(recipient, b"k", info=b"i", random=SeededRandom("t"))
    assert one == two != three


@pytest.mark.parametrize("tamper", ["info", "key", "bit"])
def test_open_fails_closed(tamper: str) -> None:
    recipient = X25519PrivateKey.generate()
    sealed = hpke_seal(recipient.public_key(), b"k" * 32, info=b"ctx", random=os.urandom)
    info, key = b"ctx", recipient
    if tamper == "info":
        info = b"other context"
    elif tamper == "key":
        key = X25519PrivateKey.generate()
    else:
        sealed = sealed[:40] + bytes([sealed[40] ^ 1]) + sealed[41:]
    with pytest.raises(DecryptionError):
        hpke_open(key, sealed, info=info)
