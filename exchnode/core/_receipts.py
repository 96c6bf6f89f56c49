"""Signed delivery receipts (SPEC §10).

A receipt is the recipient's signed statement "I opened exactly this
envelope": it names the envelope by its digest (the Merkle leaf its sender
signed, which covers the header, every wrapped key and the ciphertext), and
commits to the plaintext by its SHA-256.  So the sender holds proof of
delivery that the recipient cannot later deny, and, by revealing the
plaintext, proof of *what* was delivered.  Because the plaintext digest lets
anyone holding the receipt confirm a guessed plaintext, receipts travel back
to the sender inside an envelope, never in clear (SPEC §10.3).

Receipts reuse the envelope's framing and batch signatures: a busy
recipient signs one Merkle root per batch of receipts, and the distinct leaf
label keeps a receipt from ever being read as an envelope.

    receipt = [format=1, type=2, body: bin, seal]
    body    = [suite, message_id, envelope_digest, sender, recipient,
               recipient_key_id, opened_ms, plaintext_digest]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from exchnode.core._batch import Seal, SealVerifier, sign_leaves
from exchnode.core._directory import Directory
from exchnode.core._encoding import pack, require_canonical, unpack
from exchnode.core._envelope import (
    SUITE_X25519_AES256GCM_ED25519,
    TYPE_RECEIPT,
    check_bytes,
    check_name,
    check_suite,
    check_time,
    decode_signed,
    encode_signed,
    signed_leaf,
)
from exchnode.core._identity import KEY_ID_LENGTH, LocalIdentity
from exchnode.core._merkle import HASH_LENGTH
from exchnode.core._sealing import Opened
from exchnode.errors import MalformedError

__all__ = ["MAX_RECEIPT_BYTES", "Receipt", "ReceiptVerifier", "decode_receipt", "issue_receipts"]

MAX_RECEIPT_BYTES = 4096
_FIELDS = 8


class Receipt(NamedTuple):
    suite: int
    message_id: bytes
    envelope_digest: bytes
    sender: str
    recipient: str
    recipient_key_id: bytes
    opened_ms: int
    plaintext_digest: bytes
    digest: bytes

    def confirms(self, envelope_digest: bytes, plaintext: bytes | None = None) -> bool:
        """True if this receipt is for ``envelope_digest`` (and, if given, this plaintext)."""
        if envelope_digest != self.envelope_digest:
            return False
        return plaintext is None or hashlib.sha256(plaintext).digest() == self.plaintext_digest


def issue_receipts(identity: LocalIdentity, opened: Sequence[Opened], now: float) -> list[bytes]:
    """Sign receipts for envelopes this identity opened, one signature per batch."""
    me = str(identity.name)
    opened_ms = int(now * 1000)
    bodies = []
    for item in opened:
        header = item.envelope.header
        if me not in header.recipient_names:
            raise ValueError(f"{me} is not a recipient of message {header.message_id.hex()}")
        bodies.append(
            pack(
                [
                    SUITE_X25519_AES256GCM_ED25519,
                    header.message_id,
                    item.envelope.digest,
                    header.sender,
                    me,
                    identity.peer.signing_key_id,
                    opened_ms,
                    hashlib.sha256(item.plaintext).digest(),
                ]
            )
        )
    if not bodies:
        return []
    leaves = [signed_leaf(TYPE_RECEIPT, body) for body in bodies]
    seals = sign_leaves(identity.signing_private_key, SUITE_X25519_AES256GCM_ED25519, leaves)
    return [
        encode_signed(TYPE_RECEIPT, body, seal) for body, seal in zip(bodies, seals, strict=True)
    ]


def decode_receipt(data: bytes) -> tuple[Receipt, Seal]:
    """Parse and shape-check a receipt; returns it with its seal (not yet verified)."""
    body, seal = decode_signed(data, TYPE_RECEIPT, "receipt", MAX_RECEIPT_BYTES)
    fields = unpack(body, what="receipt.body", max_size=len(body), max_array=_FIELDS)
    if type(fields) is not list or len(fields) != _FIELDS:
        raise MalformedError("receipt.body", f"expected an array of {_FIELDS} elements")
    suite, message_id, envelope_digest, sender, recipient, key_id, opened_ms, plaintext_digest = (
        fields
    )
    receipt = Receipt(
        check_suite(suite, "receipt.body.suite"),
        check_bytes(message_id, "receipt.body.message_id", 16),
        check_bytes(envelope_digest, "receipt.body.envelope_digest", HASH_LENGTH),
        check_name(sender, "receipt.body.sender"),
        check_name(recipient, "receipt.body.recipient"),
        check_bytes(key_id, "receipt.body.recipient_key_id", KEY_ID_LENGTH),
        check_time(opened_ms, "receipt.body.opened"),
        check_bytes(plaintext_digest, "receipt.body.plaintext_digest", HASH_LENGTH),
        signed_leaf(TYPE_RECEIPT, body),
    )
    require_canonical(fields, body, what="receipt.body")
    return receipt, seal


class ReceiptVerifier:
    """Verifies receipts against the directory's signing keys."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self._seals = SealVerifier()

    def verify(self, data: bytes) -> Receipt:
        receipt, seal = decode_receipt(data)
        signer = self.directory.signer(receipt.recipient, receipt.recipient_key_id)
        self._seals.verify(
            signer.signing_key,
            signer.signing_key_raw,
            receipt.suite,
            receipt.digest,
            seal,
            lambda: f"receipt for {receipt.message_id.hex()} from {receipt.recipient}",
        )
        return receipt
