"""HPKE base mode (RFC 9180) for wrapping content keys, with a chosen ephemeral key.

Why not simply call ``cryptography.hazmat.primitives.hpke.Suite.encrypt``?
It draws the ephemeral key itself, so nothing built on it can be reproduced
byte for byte, and the protocol's test vectors must be (SPEC §9).  So
*sealing* is composed here from the library's X25519, HKDF-Expand, HMAC
(HKDF-Extract) and AES-GCM, following RFC 9180 §4.1 and §5.1 exactly, with
the ephemeral private key taken from the caller's randomness.  *Opening*
uses the library's own HPKE implementation: every envelope a node opens
therefore cross-checks this composition against an independent one, and the
tests also pin it to the RFC's Appendix A.1 vector.

Only what exchnode uses is here: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
AES-GCM, mode_base, single-shot (sequence number 0).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives import hpke as _library_hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchnode.errors import DecryptionError, UsageError

__all__ = ["AEAD_AES_128_GCM", "AEAD_AES_256_GCM", "ENC_LENGTH", "hpke_open", "hpke_seal"]

KEM_X25519_HKDF_SHA256 = 0x0020
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_128_GCM = 0x0001
AEAD_AES_256_GCM = 0x0002
_KEY_LENGTH = {AEAD_AES_128_GCM: 16, AEAD_AES_256_GCM: 32}
_LIBRARY_AEAD = {
    AEAD_AES_128_GCM: _library_hpke.AEAD.AES_128_GCM,
    AEAD_AES_256_GCM: _library_hpke.AEAD.AES_256_GCM,
}
ENC_LENGTH = 32  # Nenc for X25519
_NONCE_LENGTH = 12
_MODE_BASE = b"\x00"
_VERSION_LABEL = b"HPKE-v1"
_KEM_SUITE_ID = b"KEM" + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")


def _hpke_suite_id(aead_id: int) -> bytes:
    return (
        b"HPKE"
        + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")
        + KDF_HKDF_SHA256.to_bytes(2, "big")
        + aead_id.to_bytes(2, "big")
    )


def _extract(salt: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract (RFC 5869 §2.2) is HMAC keyed with the salt; an empty salt
    # equals HashLen zero bytes because HMAC zero-pads short keys.
    mac = hmac.HMAC(salt, hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, _VERSION_LABEL + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + _VERSION_LABEL + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled_info).derive(prk)


def _raw(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def hpke_seal(
    recipient_key: X25519PublicKey,
    plaintext: bytes,
    *,
    info: bytes,
    random: Callable[[int], bytes],
    aad: bytes = b"",
    aead_id: int = AEAD_AES_256_GCM,
    ephemeral_key: X25519PrivateKey | None = None,
) -> bytes:
    """Single-shot HPKE base-mode seal; returns ``enc || ciphertext``.

    The ephemeral key comes from ``random`` (or is given, for the RFC vector
    test), which is what makes sealed envelopes reproducible from fixed seeds.
    """
    if aead_id not in _KEY_LENGTH:
        raise UsageError(f"unsupported HPKE AEAD id {aead_id:#06x}")
    if ephemeral_key is None:
        ephemeral_key = X25519PrivateKey.from_private_bytes(random(32))
    enc = _raw(ephemeral_key.public_key())
    try:
        dh = ephemeral_key.exchange(recipient_key)
    except ValueError as exc:  # low-order point: the library refuses an all-zero secret
        raise UsageError("recipient encryption key is not a valid X25519 public key") from exc
    # DHKEM ExtractAndExpand (RFC 9180 §4.1).
    kem_context = enc + _raw(recipient_key)
    eae_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, 32)
    # KeySchedule, mode_base with empty PSK (RFC 9180 §5.1).
    suite_id = _hpke_suite_id(aead_id)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, _KEY_LENGTH[aead_id])
    base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, _NONCE_LENGTH)
    # Sequence number 0: the nonce is base_nonce itself (RFC 9180 §5.2).
    return enc + AESGCM(key).encrypt(base_nonce, plaintext, aad)


def hpke_open(
    private_key: X25519PrivateKey,
    sealed: bytes,
    *,
    info: bytes,
    aead_id: int = AEAD_AES_256_GCM,
) -> bytes:
    """Open ``enc || ciphertext`` with the library's HPKE (empty AAD)."""
    suite = _library_hpke.Suite(
        _library_hpke.KEM.X25519, _library_hpke.KDF.HKDF_SHA256, _LIBRARY_AEAD[aead_id]
    )
    try:
        return suite.decrypt(sealed, private_key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("content-key unwrap failed (HPKE open)") from exc
