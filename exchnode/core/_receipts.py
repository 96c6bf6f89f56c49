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

A valid signature is not yet proof of delivery: any node can sign a receipt
naming itself.  The sender accepts one only for a message it sent and still
holds (:class:`SentMessage`: digest, recipients, expiry), signed by one of
that message's recipients, naming that message's digest, and carried by its
signer -- in the order of SPEC §10.4 (:meth:`ReceiptVerifier.verify_for`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

from exchnode.core._batch import Seal, SealVerifier, sign_leaves
from exchnode.core._directory import Directory
from exchnode.core._encoding import pack, require_canonical, unpack
from exchnode.core._envelope import (
    SUITE_X25519_AES256GCM_ED25519,
    SUPPORTED_SUITES,
    TYPE_RECEIPT,
    check_bytes,
    check_name,
    check_suite,
    check_suite_first,
    check_time,
    decode_signed,
    encode_signed,
    signed_leaf,
)
from exchnode.core._identity import KEY_ID_LENGTH, LocalIdentity
from exchnode.core._merkle import HASH_LENGTH
from exchnode.core._replay import DEFAULT_FRESHNESS, FreshnessPolicy
from exchnode.core._sealing import Opened
from exchnode.errors import (
    ExpiredError,
    MalformedError,
    NotARecipientError,
    NotYetValidError,
    ReplayError,
    UnknownMessageError,
    UnsupportedSuiteError,
    WrongCarrierError,
    WrongDigestError,
)

__all__ = [
    "MAX_RECEIPT_BYTES",
    "Receipt",
    "ReceiptVerifier",
    "SentMessage",
    "decode_receipt",
    "issue_receipts",
]

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


class SentMessage(NamedTuple):
    """What a sender keeps of a message it sent, to check receipts for it (SPEC §10.4).

    Kept until the message expires: a node's own store already holds exactly
    this as the dedup record of its own envelope (digest, targets, expiry).
    ``receipted`` names the recipients whose receipt the sender has already
    accepted (a second one is ``replayed``).
    """

    message_id: bytes
    digest: bytes
    recipients: frozenset[str]
    expires_ms: int
    receipted: frozenset[str] = frozenset()


def decode_receipt(data: bytes) -> tuple[Receipt, Seal]:
    """Parse and shape-check a receipt; returns it with its seal (not yet verified).

    SPEC §10.4 steps 1-3: size, framing, then the body with its suite read
    first (a suite this code does not know is ``unsupported-suite`` whatever
    the rest of the body looks like).
    """
    body, seal = decode_signed(data, TYPE_RECEIPT, "receipt", MAX_RECEIPT_BYTES)
    check_suite_first(body, "receipt.body.suite")
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
    """Verifies receipts against the directory's signing keys.

    :meth:`verify` is what anyone holding a receipt can check: that its
    signer signed it.  :meth:`verify_for` is the sender's check before a
    receipt counts as delivery (SPEC §10.4): it must also be about a message
    the sender holds, from one of its recipients, name its digest, arrive in
    time, be carried by its signer, and be the first from that recipient.
    """

    def __init__(
        self,
        directory: Directory,
        *,
        freshness: FreshnessPolicy = DEFAULT_FRESHNESS,
        suites: frozenset[int] = SUPPORTED_SUITES,
    ) -> None:
        self.directory = directory
        self.freshness = freshness
        self.suites = suites
        self._seals = SealVerifier()

    def verify(self, data: bytes) -> Receipt:
        """A receipt on its own: shape, suite, signer and seal (SPEC §10.2)."""
        receipt, seal = decode_receipt(data)
        self._check_suite(receipt)
        self._check_seal(receipt, seal)
        return receipt

    def verify_for(
        self,
        data: bytes,
        sent: Callable[[bytes], SentMessage | None],
        *,
        me: str,
        now: float,
        carrier: str | None = None,
    ) -> Receipt:
        """The sender ``me``'s check of a receipt, in the order of SPEC §10.4.

        ``sent`` looks up what ``me`` keeps of the message a receipt names
        (None: it did not send it, or no longer holds it); ``carrier`` is the
        node whose envelope brought the receipt (None: ``me`` issued it to
        itself).  Raises the typed error of the first check that fails.
        """
        receipt, seal = decode_receipt(data)
        self._check_suite(receipt)
        record = sent(receipt.message_id) if receipt.sender == me else None
        return self.verify_decoded(receipt, seal, record, me=me, now=now, carrier=carrier)

    def verify_decoded(
        self,
        receipt: Receipt,
        seal: Seal,
        sent: SentMessage | None,
        *,
        me: str,
        now: float,
        carrier: str | None = None,
    ) -> Receipt:
        """SPEC §10.4 from step 4: a decoded receipt, with the ``sent`` record it names."""
        self._check_suite(receipt)
        about = f"receipt for message {receipt.message_id.hex()} from {receipt.recipient}"
        if receipt.sender != me or sent is None or sent.message_id != receipt.message_id:
            whose = "" if receipt.sender == me else f" (a message of {receipt.sender})"
            raise UnknownMessageError(f"{about}: {me} holds no such message it sent{whose}")
        now_ms = int(now * 1000)
        if now_ms >= sent.expires_ms:
            ago = (now_ms - sent.expires_ms) / 1000
            raise ExpiredError(f"{about}: the message expired {ago:.3f} s ago")
        if receipt.opened_ms > now_ms + self.freshness.clock_skew * 1000:
            raise NotYetValidError(
                f"{about}: opened {(receipt.opened_ms - now_ms) / 1000:.3f} s in the future, "
                f"beyond the allowed clock skew of {self.freshness.clock_skew:.0f} s"
            )
        if receipt.recipient not in sent.recipients:
            raise NotARecipientError(f"{about}: the signer is not a recipient of the message")
        if receipt.envelope_digest != sent.digest:
            raise WrongDigestError(f"{about}: names another envelope digest than the one sent")
        if carrier is not None and carrier != receipt.recipient:
            raise WrongCarrierError(f"{about}: carried by {carrier}, not by its signer")
        self._check_seal(receipt, seal)
        if receipt.recipient in sent.receipted:
            raise ReplayError(f"{about}: a receipt from this recipient was already accepted")
        return receipt

    def _check_suite(self, receipt: Receipt) -> None:
        if receipt.suite not in self.suites:
            raise UnsupportedSuiteError(f"suite {receipt.suite} is not accepted by this node")

    def _check_seal(self, receipt: Receipt, seal: Seal) -> None:
        signer = self.directory.signer(receipt.recipient, receipt.recipient_key_id)
        self._seals.verify(
            signer.signing_key,
            signer.signing_key_raw,
            receipt.suite,
            receipt.digest,
            seal,
            lambda: f"receipt for {receipt.message_id.hex()} from {receipt.recipient}",
        )
