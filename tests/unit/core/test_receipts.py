"""Signed delivery receipts (SPEC §10)."""

from __future__ import annotations

import msgpack
import pytest

from exchnode import errors
from exchnode.core import (
    Opener,
    Outgoing,
    ReceiptVerifier,
    Sealer,
    decode_receipt,
    issue_receipts,
    pack,
)
from tests.cast import HUB, NOW, RECIPIENT, SENDER


@pytest.fixture
def delivered(cast, directory):
    sealer = Sealer(cast[SENDER], directory)
    sealed = sealer.seal_batch([Outgoing([RECIPIENT], f"r{i}".encode()) for i in range(5)], NOW)
    opener = Opener(cast[RECIPIENT], directory)
    return sealed, [opener.open(s.data, NOW) for s in sealed]


def test_receipts_bind_the_exact_envelope_and_plaintext(cast, directory, delivered) -> None:
    sealed, opened = delivered
    receipts = issue_receipts(cast[RECIPIENT], opened, NOW + 2)
    verifier = ReceiptVerifier(directory)
    for data, envelope in zip(receipts, sealed, strict=True):
        receipt = verifier.verify(data)
        assert receipt.sender == SENDER
        assert receipt.recipient == RECIPIENT
        assert receipt.message_id == envelope.message_id
        assert receipt.opened_ms == int((NOW + 2) * 1000)
        assert receipt.confirms(envelope.digest)
        assert receipt.confirms(envelope.digest, b"r" + str(sealed.index(envelope)).encode())
        assert not receipt.confirms(envelope.digest, b"something else")
        assert not receipt.confirms(sealed[0].digest if envelope is not sealed[0] else b"")


def test_one_signature_covers_a_batch_of_receipts(cast, delivered) -> None:
    receipts = issue_receipts(cast[RECIPIENT], delivered[1], NOW)
    signatures = {msgpack.unpackb(r)[3][3] for r in receipts}
    assert len(signatures) == 1


def test_a_receipt_cannot_be_forged_or_altered(cast, directory, delivered) -> None:
    (receipt,) = issue_receipts(cast[RECIPIENT], delivered[1][:1], NOW)
    value = msgpack.unpackb(receipt)
    body = msgpack.unpackb(value[2])
    body[6] += 1  # claim another opening time
    value[2] = pack(body)
    with pytest.raises(errors.BadSignatureError):
        ReceiptVerifier(directory).verify(pack(value))


def test_only_a_recipient_can_issue_a_receipt(cast, delivered) -> None:
    with pytest.raises(ValueError, match="not a recipient"):
        issue_receipts(cast[HUB], delivered[1][:1], NOW)


def test_an_envelope_is_not_a_receipt(cast, directory) -> None:
    sealed = Sealer(cast[SENDER], directory).seal(Outgoing([RECIPIENT], b"x"), NOW)
    with pytest.raises(errors.MalformedError, match=r"receipt\.type"):
        decode_receipt(sealed.data)
