"""Signed delivery receipts (SPEC §10)."""

from __future__ import annotations

import msgpack
import pytest

from exchnode import errors
from exchnode.core import (
    TYPE_RECEIPT,
    FreshnessPolicy,
    Opener,
    Outgoing,
    ReceiptVerifier,
    Sealer,
    SentMessage,
    decode_receipt,
    encode_signed,
    issue_receipts,
    pack,
    sign_leaves,
    signed_leaf,
)
from tests.cast import HUB, NOW, OTHER, RECIPIENT, SENDER


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


# --- the sender's check: a receipt counts only from a recipient, for the envelope sent -----


def held(sealed, recipients=(RECIPIENT,), receipted=()):
    """What the sender keeps of its messages (SPEC §10.4), as a lookup by message id."""
    records = {
        s.message_id: SentMessage(
            s.message_id, s.digest, frozenset(recipients), s.expires_ms, frozenset(receipted)
        )
        for s in sealed
    }
    return records.get


def checked_by_sender(directory, data, sealed, *, carrier=RECIPIENT):
    """The sender's check (SPEC §10.4) of a receipt ``carrier`` brought, soon after delivery."""
    return ReceiptVerifier(directory).verify_for(
        data, held(sealed), me=SENDER, now=NOW + 3, carrier=carrier
    )


def forge(signer, message_id, digest, *, sender=SENDER, opened_ms=int(NOW * 1000)) -> bytes:
    """A receipt built and signed by hand: what a hub on the path could sign."""
    body = pack(
        [1, message_id, digest, sender, str(signer.name), signer.peer.signing_key_id,
         opened_ms, b"\x00" * 32]
    )  # fmt: skip
    (seal,) = sign_leaves(signer.signing_private_key, 1, [signed_leaf(TYPE_RECEIPT, body)])
    return encode_signed(TYPE_RECEIPT, body, seal)


def test_the_sender_counts_a_receipt_from_a_recipient_for_the_envelope_it_sent(
    cast, directory, delivered
) -> None:
    sealed, opened = delivered
    receipts = issue_receipts(cast[RECIPIENT], opened, NOW + 2)
    verifier = ReceiptVerifier(directory)
    for data, envelope in zip(receipts, sealed, strict=True):
        receipt = verifier.verify_for(data, held(sealed), me=SENDER, now=NOW + 3, carrier=RECIPIENT)
        assert (receipt.message_id, receipt.recipient) == (envelope.message_id, RECIPIENT)


def test_a_receipt_signed_by_a_hub_on_the_path_does_not_count(cast, directory, delivered) -> None:
    """The issue's attack: a validly signed receipt, by a node that was not a recipient."""
    sealed, _ = delivered
    data = forge(cast[HUB], sealed[0].message_id, sealed[0].digest)
    assert ReceiptVerifier(directory).verify(data).recipient == HUB  # the signature is genuine
    with pytest.raises(errors.NotARecipientError, match="not a recipient"):
        checked_by_sender(directory, data, sealed, carrier=HUB)


def test_a_receipt_naming_another_envelope_digest_does_not_count(
    cast, directory, delivered
) -> None:
    sealed, _ = delivered
    data = forge(cast[RECIPIENT], sealed[0].message_id, sealed[1].digest)
    with pytest.raises(errors.WrongDigestError) as caught:
        checked_by_sender(directory, data, sealed)
    assert caught.value.code == "wrong-digest"


def test_a_receipt_about_another_senders_message_does_not_count(cast, directory, delivered) -> None:
    """Even when the sender used the same message id for a message of its own."""
    sealed, _ = delivered
    theirs = Sealer(cast[OTHER], directory).seal(
        Outgoing([RECIPIENT], b"theirs", message_id=sealed[0].message_id), NOW
    )
    opened = Opener(cast[RECIPIENT], directory).open(theirs.data, NOW)
    (data,) = issue_receipts(cast[RECIPIENT], [opened], NOW + 2)
    with pytest.raises(errors.UnknownMessageError, match=OTHER):
        checked_by_sender(directory, data, sealed)


def test_a_receipt_for_a_message_the_sender_does_not_hold_does_not_count(
    cast, directory, delivered
) -> None:
    sealed, opened = delivered
    (data,) = issue_receipts(cast[RECIPIENT], opened[:1], NOW + 2)
    with pytest.raises(errors.UnknownMessageError):
        checked_by_sender(directory, data, sealed[1:])


def test_a_receipt_carried_by_another_node_than_its_signer_does_not_count(
    cast, directory, delivered
) -> None:
    sealed, opened = delivered
    (data,) = issue_receipts(cast[RECIPIENT], opened[:1], NOW + 2)
    with pytest.raises(errors.WrongCarrierError):
        checked_by_sender(directory, data, sealed, carrier=HUB)
    # Issued by the sender to itself (no carrier): the carrier rule does not apply.
    assert checked_by_sender(directory, data, sealed, carrier=None).recipient == RECIPIENT


def test_a_receipt_is_fresh_only_while_the_message_is_held_and_not_from_the_future(
    cast, directory, delivered
) -> None:
    sealed, opened = delivered
    (data,) = issue_receipts(cast[RECIPIENT], opened[:1], NOW + 2)
    verifier = ReceiptVerifier(directory, freshness=FreshnessPolicy(clock_skew=10))
    expiry = sealed[0].expires_ms / 1000
    verifier.verify_for(data, held(sealed), me=SENDER, now=expiry - 0.001, carrier=RECIPIENT)
    with pytest.raises(errors.ExpiredError):  # expiry is exclusive
        verifier.verify_for(data, held(sealed), me=SENDER, now=expiry, carrier=RECIPIENT)
    verifier.verify_for(data, held(sealed), me=SENDER, now=NOW + 2 - 10, carrier=RECIPIENT)
    with pytest.raises(errors.NotYetValidError):
        verifier.verify_for(data, held(sealed), me=SENDER, now=NOW + 2 - 10.001, carrier=RECIPIENT)


def test_a_second_receipt_from_the_same_recipient_is_a_replay(cast, directory, delivered) -> None:
    sealed, opened = delivered
    (data,) = issue_receipts(cast[RECIPIENT], opened[:1], NOW + 2)
    (again,) = issue_receipts(cast[RECIPIENT], opened[:1], NOW + 9)  # re-acknowledged later
    verifier = ReceiptVerifier(directory)
    lookup = held(sealed, receipted=[RECIPIENT])
    for receipt in (data, again):
        with pytest.raises(errors.ReplayError):
            verifier.verify_for(receipt, lookup, me=SENDER, now=NOW + 10, carrier=RECIPIENT)


def test_the_suite_of_a_receipt_is_read_before_its_body(cast) -> None:
    body = pack([2, b"\x00" * 16])  # an unknown suite, and a body no suite-1 receipt has
    (seal,) = sign_leaves(cast[RECIPIENT].signing_private_key, 2, [signed_leaf(2, body)])
    with pytest.raises(errors.UnsupportedSuiteError):
        decode_receipt(encode_signed(TYPE_RECEIPT, body, seal))
    with pytest.raises(errors.TooLargeError):
        decode_receipt(b"\x94\x01\x02" + b"\x00" * 4094)
