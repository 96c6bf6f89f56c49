"""Sealing, opening and every rejection path of an envelope (SPEC §5-§8)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchnode import errors
from exchnode.core import (
    TYPE_ENVELOPE,
    EnvelopeVerifier,
    FreshnessPolicy,
    Limits,
    LocalIdentity,
    NodeName,
    Opener,
    OpenPolicy,
    Outgoing,
    PeerIdentity,
    ReplayWindow,
    Seal,
    Sealer,
    SealPolicy,
    StaticDirectory,
    decode_envelope,
    decode_signed,
    encode_signed,
    hpke_open,
    hpke_seal,
    pack,
    sign_leaves,
    signed_leaf,
    wrap_info,
)
from exchnode.core._batch import signature_input
from exchnode.testing import SeededRandom, seeded_identity
from tests.cast import HUB, NOW, OTHER, RECIPIENT, SENDER


def seal_one(
    cast: dict[str, LocalIdentity],
    directory: StaticDirectory,
    payload: bytes = b"population record 42",
    recipients: tuple[str, ...] = (RECIPIENT,),
    **fields: Any,
) -> bytes:
    sealer = Sealer(cast[SENDER], directory, random=SeededRandom("seal_one"))
    return sealer.seal(Outgoing(recipients, payload, **fields), NOW).data


def body_fields(data: bytes) -> list[Any]:
    body, _ = decode_signed(data, TYPE_ENVELOPE, "envelope", 1 << 26)
    fields: list[Any] = msgpack.unpackb(body)
    return fields


def resign(fields: list[Any], signer: LocalIdentity) -> bytes:
    """Re-encode a body and sign it properly: reaches the checks behind the signature."""
    body = pack(fields)
    (seal,) = sign_leaves(signer.signing_private_key, 1, [signed_leaf(TYPE_ENVELOPE, body)])
    return encode_signed(TYPE_ENVELOPE, body, seal)


def opener(cast: dict[str, LocalIdentity], directory: StaticDirectory, name: str) -> Opener:
    return Opener(cast[name], directory)


# --- the happy paths ---------------------------------------------------------


def test_round_trip_single_recipient(cast, directory) -> None:
    data = seal_one(cast, directory, kind="catalog.update", content_type="application/json")
    opened = opener(cast, directory, RECIPIENT).open(data, NOW + 1)
    assert opened.plaintext == b"population record 42"
    header = opened.header
    assert header.sender == SENDER
    assert header.recipient_names == (RECIPIENT,)
    assert header.kind == "catalog.update"
    assert header.content_type == "application/json"
    assert header.created_ms == int(NOW * 1000)
    assert header.expires_ms == int(NOW * 1000) + 7 * 86400 * 1000
    assert header.plaintext_size == len(b"population record 42")
    assert opened.sender.name.department == "gongan"


def test_every_recipient_opens_the_same_envelope(cast, directory) -> None:
    data = seal_one(cast, directory, recipients=(RECIPIENT, OTHER, HUB))
    for name in (RECIPIENT, OTHER, HUB):
        assert opener(cast, directory, name).open(data, NOW).plaintext == b"population record 42"


def test_open_verified_finishes_what_a_verifier_started(cast, directory) -> None:
    # The node verifies on arrival and opens later from that result (SPEC §8.1 from step 7).
    data = seal_one(cast, directory, recipients=(RECIPIENT, OTHER))
    envelope, signer = EnvelopeVerifier(directory).verify_sender(data, NOW)
    opened = opener(cast, directory, OTHER).open_verified(envelope, signer, NOW)
    assert opened.plaintext == b"population record 42"
    with pytest.raises(errors.NotARecipientError):
        opener(cast, directory, HUB).open_verified(envelope, signer, NOW)


def test_recipients_are_sorted_on_the_wire(cast, directory) -> None:
    data = seal_one(cast, directory, recipients=(RECIPIENT, OTHER))
    assert decode_envelope(data).header.recipient_names == tuple(sorted((RECIPIENT, OTHER)))


def test_empty_and_large_payloads(cast, directory) -> None:
    for payload in (b"", bytes(range(256)) * 4096):
        data = seal_one(cast, directory, payload=payload)
        assert opener(cast, directory, RECIPIENT).open(data, NOW).plaintext == payload


def test_a_batch_opens_in_any_order_with_one_signature(cast, directory) -> None:
    sealer = Sealer(cast[SENDER], directory, random=SeededRandom("batch"))
    items = [Outgoing([RECIPIENT], f"record {i}".encode()) for i in range(100)]
    sealed = sealer.seal_batch(items, NOW)
    signatures = {decode_envelope(s.data).seal.signature for s in sealed}
    assert len(signatures) == 1
    order = list(range(100))
    random.Random(7).shuffle(order)
    receiver = opener(cast, directory, RECIPIENT)
    for i in order:
        assert receiver.open(sealed[i].data, NOW).plaintext == f"record {i}".encode()
        assert receiver.open(sealed[i].data, NOW).message_id == sealed[i].message_id


def test_batches_are_split_at_max_batch(cast, directory) -> None:
    sealer = Sealer(cast[SENDER], directory, SealPolicy(max_batch=8))
    sealed = sealer.seal_batch([Outgoing([RECIPIENT], b"x")] * 20, NOW)
    counts = [decode_envelope(s.data).seal.leaf_count for s in sealed]
    assert counts == [8] * 16 + [4] * 4


def test_digest_is_the_signed_leaf(cast, directory) -> None:
    sealer = Sealer(cast[SENDER], directory)
    sealed = sealer.seal(Outgoing([RECIPIENT], b"x"), NOW)
    assert decode_envelope(sealed.data).digest == sealed.digest
    assert opener(cast, directory, RECIPIENT).open(sealed.data, NOW).digest == sealed.digest


# --- content-key epochs (SPEC §7.4) -------------------------------------------


def wrapped_key(data: bytes) -> bytes:
    return decode_envelope(data).header.recipients[0].wrapped_key


def test_epoch_reuses_the_wrap_until_its_bounds(cast, directory) -> None:
    sealer = Sealer(cast[SENDER], directory, SealPolicy(epoch_max_messages=3, epoch_lifetime=60))
    first = [sealer.seal(Outgoing([RECIPIENT], b"x"), NOW).data for _ in range(4)]
    wraps = [wrapped_key(d) for d in first]
    assert wraps[0] == wraps[1] == wraps[2] != wraps[3]
    later = sealer.seal(Outgoing([RECIPIENT], b"x"), NOW + 61).data
    assert wrapped_key(later) != wraps[3]


def test_each_recipient_set_has_its_own_epoch(cast, directory) -> None:
    sealer = Sealer(cast[SENDER], directory)
    alone = sealer.seal(Outgoing([RECIPIENT], b"x"), NOW).data
    pair = sealer.seal(Outgoing([RECIPIENT, OTHER], b"x"), NOW).data
    assert wrapped_key(alone) != wrapped_key(pair)


def test_rotate_starts_a_fresh_epoch(cast, directory) -> None:
    sealer = Sealer(cast[SENDER], directory)
    before = sealer.seal(Outgoing([RECIPIENT], b"x"), NOW).data
    sealer.rotate()
    after = sealer.seal(Outgoing([RECIPIENT], b"x"), NOW).data
    assert wrapped_key(before) != wrapped_key(after)


# --- who can open what ---------------------------------------------------------


def test_a_hub_on_the_path_cannot_open(cast, directory) -> None:
    data = seal_one(cast, directory)
    with pytest.raises(errors.NotARecipientError):
        opener(cast, directory, HUB).open(data, NOW)


def test_a_hub_cannot_unwrap_the_content_key_even_presenting_a_wrap_as_its_own(
    cast, directory
) -> None:
    """THREATS T1 "read a payload": not only is the hub's name refused, its key opens nothing.

    The hub tries every wrapped key of the envelope with its own encryption
    key, under every HPKE ``info`` it could claim (the named recipient's, or
    its own name and key id), and then has its own opener treat the first
    wrap as addressed to it (name and key id rewritten, as if the recipient
    check were skipped).  Every unwrap fails: the wraps are sealed to the
    recipients' keys.
    """
    data = seal_one(cast, directory, recipients=(RECIPIENT, OTHER))
    envelope, sender = EnvelopeVerifier(directory).verify_sender(data, NOW)
    hub = cast[HUB]
    own_key_id = hub.peer.encryption_key_id
    for entry in envelope.header.recipients:
        for name, key_id in ((entry.name, entry.key_id), (HUB, own_key_id), (HUB, entry.key_id)):
            with pytest.raises(errors.DecryptionError, match="unwrap"):
                hpke_open(
                    hub.encryption_private_key,
                    entry.wrapped_key,
                    info=wrap_info(1, SENDER, name, key_id),
                )
    # The recipient's own key opens the same wrap: the attempt above was a real one.
    first = envelope.header.recipients[0]
    content_key = hpke_open(
        cast[first.name].encryption_private_key,
        first.wrapped_key,
        info=wrap_info(1, SENDER, first.name, first.key_id),
    )
    assert len(content_key) == 32
    as_if_addressed = envelope.header._replace(
        recipients=(first._replace(name=HUB, key_id=own_key_id),)
    )
    with pytest.raises(errors.DecryptionError, match="unwrap"):
        opener(cast, directory, HUB).open_verified(
            envelope._replace(header=as_if_addressed), sender, NOW
        )


def test_a_hub_verifies_the_sender_without_any_content_key(cast, directory) -> None:
    data = seal_one(cast, directory)
    envelope, sender = EnvelopeVerifier(directory).verify_sender(data, NOW)
    assert str(sender.name) == SENDER
    assert envelope.header.recipient_names == (RECIPIENT,)


def test_an_impostor_holding_the_name_but_not_the_key_cannot_open(cast, directory) -> None:
    data = seal_one(cast, directory)
    impostor = seeded_identity(RECIPIENT, seed="impostor")
    with pytest.raises(errors.DecryptionError, match="wrapped to encryption key"):
        Opener(impostor, directory).open(data, NOW)


def test_readdressing_to_a_third_party_breaks_the_signature(cast, directory) -> None:
    """Surreptitious forwarding: the recipient knows the content key and re-wraps it."""
    data = seal_one(cast, directory)
    fields = body_fields(data)
    third = cast[OTHER].peer
    content_key_holder = cast[RECIPIENT]
    # The legitimate recipient recovers the content key exactly as an opener would ...
    from exchnode.core import hpke_open

    entry = fields[4][0]
    info = wrap_info(1, SENDER, RECIPIENT, entry[1])
    content_key = hpke_open(content_key_holder.encryption_private_key, entry[2], info=info)
    # ... wraps it for a third party, and forwards it with the sender's seal intact.
    info = wrap_info(1, SENDER, OTHER, third.encryption_key_id)
    rewrapped = hpke_seal(third.encryption_key, content_key, info=info, random=SeededRandom("x"))
    fields[4] = [[OTHER, third.encryption_key_id, rewrapped]]
    _, seal = decode_signed(data, TYPE_ENVELOPE, "envelope", 1 << 26)
    forged = encode_signed(TYPE_ENVELOPE, pack(fields), seal)
    with pytest.raises(errors.BadSignatureError):
        opener(cast, directory, OTHER).open(forged, NOW)


def test_a_spoofed_sender_is_refused(cast, directory) -> None:
    fields = body_fields(seal_one(cast, directory))
    # Signed by another node but claiming to be SENDER with SENDER's key id.
    with pytest.raises(errors.BadSignatureError):
        EnvelopeVerifier(directory).verify(resign(fields, cast[OTHER]), NOW)
    # Claiming SENDER with the impostor's own key id: no such key for SENDER.
    fields[3] = cast[OTHER].peer.signing_key_id
    with pytest.raises(errors.UnknownSignerError):
        EnvelopeVerifier(directory).verify(resign(fields, cast[OTHER]), NOW)


def test_an_unknown_sender_is_refused(cast) -> None:
    only_recipient = StaticDirectory([cast[RECIPIENT].peer, cast[SENDER].peer])
    data = seal_one(cast, only_recipient)
    only_recipient.remove(SENDER)
    with pytest.raises(errors.UnknownSignerError, match=SENDER):
        Opener(cast[RECIPIENT], only_recipient).open(data, NOW)


def test_a_wrap_copied_into_another_senders_envelope_does_not_open(cast, directory) -> None:
    """The key cache is per sender: a wrap is only ever opened with its own HPKE context."""
    genuine = seal_one(cast, directory)
    receiver = opener(cast, directory, RECIPIENT)
    receiver.open(genuine, NOW)  # warms the content-key cache
    other_sealer = Sealer(cast[OTHER], directory)
    theirs = body_fields(other_sealer.seal(Outgoing([RECIPIENT], b"x"), NOW).data)
    theirs[4] = body_fields(genuine)[4]
    with pytest.raises(errors.DecryptionError):
        receiver.open(resign(theirs, cast[OTHER]), NOW)


def test_a_co_recipient_cannot_reuse_the_senders_wrap_as_its_own(cast, directory) -> None:
    """The wrap is bound to its sender (SPEC §7.2), not only to its recipient.

    OTHER shares an epoch with RECIPIENT, so it knows the content key; it
    copies SENDER's wrap for RECIPIENT into an envelope of its own, encrypts
    under that key and signs as itself.  Without the sender in the HPKE
    context RECIPIENT would accept the key as OTHER's.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from exchnode.core import hpke_open

    genuine = body_fields(seal_one(cast, directory, recipients=(RECIPIENT, OTHER)))
    theirs_entry = next(e for e in genuine[4] if e[0] == OTHER)
    content_key = hpke_open(
        cast[OTHER].encryption_private_key,
        theirs_entry[2],
        info=wrap_info(1, SENDER, OTHER, theirs_entry[1]),
    )
    crafted = body_fields(
        Sealer(cast[OTHER], directory).seal(Outgoing([RECIPIENT], b"x"), NOW).data
    )
    crafted[4] = [next(e for e in genuine[4] if e[0] == RECIPIENT)]
    crafted[11] = AESGCM(content_key).encrypt(crafted[10], b"y", crafted[1])
    forged = resign(crafted, cast[OTHER])
    warm = opener(cast, directory, RECIPIENT)
    warm.open(resign(genuine, cast[SENDER]), NOW)  # the unwrapped key is now cached
    for receiver in (opener(cast, directory, RECIPIENT), warm):
        with pytest.raises(errors.DecryptionError, match="unwrap"):
            receiver.open(forged, NOW)


def test_a_transplanted_seal_is_refused(cast, directory) -> None:
    sealer = Sealer(cast[SENDER], directory)
    one, two = sealer.seal_batch([Outgoing([RECIPIENT], b"a"), Outgoing([RECIPIENT], b"b")], NOW)
    other = sealer.seal(Outgoing([RECIPIENT], b"c"), NOW)
    body, _ = decode_signed(one.data, TYPE_ENVELOPE, "envelope", 1 << 26)
    _, foreign_seal = decode_signed(other.data, TYPE_ENVELOPE, "envelope", 1 << 26)
    _, sibling_seal = decode_signed(two.data, TYPE_ENVELOPE, "envelope", 1 << 26)
    receiver = opener(cast, directory, RECIPIENT)
    receiver.open(two.data, NOW)  # the batch is now cached as authenticated
    for seal in (foreign_seal, sibling_seal):
        with pytest.raises(errors.BadSignatureError):
            receiver.open(encode_signed(TYPE_ENVELOPE, body, seal), NOW)


def test_a_tampered_leaf_count_is_refused(cast, directory) -> None:
    sealer = Sealer(cast[SENDER], directory)
    sealed = sealer.seal_batch([Outgoing([RECIPIENT], b"x")] * 11, NOW)
    body, seal = decode_signed(sealed[6].data, TYPE_ENVELOPE, "envelope", 1 << 26)
    assert seal.leaf_count == 11
    recounted = encode_signed(TYPE_ENVELOPE, body, seal._replace(leaf_count=12))
    with pytest.raises(errors.BadSignatureError):
        opener(cast, directory, RECIPIENT).open(recounted, NOW)
    warm = opener(cast, directory, RECIPIENT)
    warm.open(sealed[0].data, NOW)
    with pytest.raises(errors.BadSignatureError):
        warm.open(recounted, NOW)


# --- freshness and replay (SPEC §8) -------------------------------------------


def test_expired_envelope(cast, directory) -> None:
    data = seal_one(cast, directory, ttl=60)
    with pytest.raises(errors.ExpiredError):
        opener(cast, directory, RECIPIENT).open(data, NOW + 60)


def test_envelope_from_the_future(cast, directory) -> None:
    data = seal_one(cast, directory)
    with pytest.raises(errors.NotYetValidError):
        opener(cast, directory, RECIPIENT).open(data, NOW - 301)
    assert opener(cast, directory, RECIPIENT).open(data, NOW - 299).plaintext


def test_lifetime_beyond_the_receivers_policy(cast, directory) -> None:
    data = seal_one(cast, directory, ttl=10 * 86400)
    strict = OpenPolicy(freshness=FreshnessPolicy(max_lifetime=86400))
    with pytest.raises(errors.LifetimeTooLongError):
        Opener(cast[RECIPIENT], directory, strict).open(data, NOW)


def test_replayed_envelope(cast, directory) -> None:
    data = seal_one(cast, directory)
    receiver = Opener(cast[RECIPIENT], directory, replay=ReplayWindow())
    receiver.open(data, NOW)
    with pytest.raises(errors.ReplayError):
        receiver.open(data, NOW + 5)


def test_a_failed_open_is_not_recorded_as_seen(cast, directory) -> None:
    data = seal_one(cast, directory)
    window = ReplayWindow()
    with pytest.raises(errors.NotARecipientError):
        Opener(cast[HUB], directory, replay=window).open(data, NOW)
    assert len(window) == 0


def test_an_envelope_that_fails_to_decrypt_is_not_recorded_as_seen(cast, directory) -> None:
    """SPEC §8.1 step 12: the id is recorded only once the payload decrypted (steps 10-11).

    The sender's envelope was corrupted before it signed it (validly signed,
    undecryptable).  Were the id recorded before decryption, the sender's
    corrected envelope under the same id would then be refused as replayed.
    """
    message_id = b"\x42" * 16
    genuine = seal_one(cast, directory, message_id=message_id)
    corrupted = body_fields(genuine)
    corrupted[11] = bytes([corrupted[11][0] ^ 1]) + corrupted[11][1:]
    window = ReplayWindow()
    receiver = Opener(cast[RECIPIENT], directory, replay=window)
    with pytest.raises(errors.DecryptionError):
        receiver.open(resign(corrupted, cast[SENDER]), NOW)
    assert (SENDER, message_id) not in window
    assert receiver.open(genuine, NOW + 1).plaintext == b"population record 42"
    assert (SENDER, message_id) in window
    with pytest.raises(errors.ReplayError):  # and from now on it is a replay, even undecryptable
        receiver.open(resign(corrupted, cast[SENDER]), NOW + 2)


# --- malformed input names what is wrong (SPEC §5) ---------------------------


def outer(data: bytes) -> list[Any]:
    value: list[Any] = msgpack.unpackb(data)
    return value


def test_unsupported_format_version(cast, directory) -> None:
    value = outer(seal_one(cast, directory))
    value[0] = 2
    with pytest.raises(errors.UnsupportedVersionError):
        decode_envelope(pack(value))


def test_unsupported_suite(cast, directory) -> None:
    fields = body_fields(seal_one(cast, directory))
    fields[0] = 2
    with pytest.raises(errors.UnsupportedSuiteError):
        decode_envelope(resign(fields, cast[SENDER]))


def test_the_format_is_read_before_the_framing_is_parsed(cast, directory) -> None:
    """SPEC §5.1, §13: a format this node does not know may frame the rest differently."""
    value = outer(seal_one(cast, directory))
    for framing in ([2, *value[1:], 0], [2, 1], [2], [3, "anything", b"", [], 0]):
        with pytest.raises(errors.UnsupportedVersionError):
            decode_envelope(pack(framing))
    with pytest.raises(errors.UnsupportedVersionError):
        decode_envelope(pack([2, *value[1:]])[:-7])  # truncated as well
    with pytest.raises(errors.MalformedError, match="4 elements"):
        decode_envelope(pack([1, *value[1:], 0]))  # format 1 of the wrong length


@pytest.mark.parametrize(
    "body",
    [
        [2, *range(12)],  # 13 elements
        [2],
        [7, "a", b"b", [1, [2, [3]]]],
        [0xFFFFFFFF, *range(40)],
        [-1, b""],
    ],
)
def test_the_suite_is_read_before_the_rest_of_the_body(cast, body) -> None:
    """SPEC §5.2: a suite this node does not know may lay out the body differently."""
    with pytest.raises(errors.UnsupportedSuiteError):
        decode_envelope(resign(body, cast[SENDER]))


def test_a_body_of_the_known_suite_and_the_wrong_length_is_malformed(cast, directory) -> None:
    fields = body_fields(seal_one(cast, directory))
    for body in ([*fields, 0], [1, *range(2000)]):  # a shape, however long: never too-large
        with pytest.raises(errors.MalformedError, match="12 elements") as caught:
            decode_envelope(resign(body, cast[SENDER]))
        assert caught.value.code == "malformed"
    wide_suite = b"\x9c\xcc\x02" + pack(fields)[2:]  # suite 2 written as uint8
    (seal,) = sign_leaves(cast[SENDER].signing_private_key, 1, [signed_leaf(1, wide_suite)])
    with pytest.raises(errors.UnsupportedSuiteError):  # read in any integer form
        decode_envelope(encode_signed(TYPE_ENVELOPE, wide_suite, seal))


def test_more_recipients_than_the_limit_is_too_large(cast, directory) -> None:
    """SPEC §4.3: the recipients limit is `too-large`, whether the parser or the schema sees it."""
    fields = body_fields(seal_one(cast, directory, recipients=(RECIPIENT, OTHER, HUB)))
    three = resign(fields, cast[SENDER])
    with pytest.raises(errors.TooLargeError) as caught:
        decode_envelope(three, Limits(max_recipients=2))
    assert (caught.value.code, caught.value.field) == ("too-large", "envelope.body.recipients")
    entry = fields[4][0]
    fields[4] = [[f"520102.d{i:04d}", entry[1], entry[2]] for i in range(1025)]
    with pytest.raises(errors.TooLargeError) as caught:  # beyond the parser's bound of 1024
        decode_envelope(resign(fields, cast[SENDER]))
    assert caught.value.code == "too-large"
    fields[4] = fields[4][:1024]
    with pytest.raises(errors.BadSignatureError):  # 1024 is within the limit
        EnvelopeVerifier(directory).verify(resign(fields, cast[OTHER]), NOW)


def test_seal_limits_are_too_large_and_other_seal_faults_malformed(cast, directory) -> None:
    body, seal = decode_signed(seal_one(cast, directory), TYPE_ENVELOPE, "envelope", 1 << 26)
    for changed, code in [
        (seal._replace(leaf_count=65537), "too-large"),
        (seal._replace(path=b"\x00" * 32 * 17), "too-large"),
        (seal._replace(leaf_count=0), "malformed"),
        (seal._replace(path=b"\x00" * 33), "malformed"),
    ]:
        with pytest.raises(errors.MalformedError) as caught:
            decode_envelope(encode_signed(TYPE_ENVELOPE, body, changed))
        assert caught.value.code == code, changed


def test_a_node_may_refuse_a_suite_it_otherwise_knows(cast, directory) -> None:
    policy = OpenPolicy(suites=frozenset())
    with pytest.raises(errors.UnsupportedSuiteError):
        Opener(cast[RECIPIENT], directory, policy).open(seal_one(cast, directory), NOW)


def test_too_large(cast, directory) -> None:
    data = seal_one(cast, directory, payload=b"x" * 5000)
    tight = OpenPolicy(limits=dataclasses.replace(OpenPolicy().limits, max_envelope_bytes=4096))
    with pytest.raises(errors.TooLargeError):
        Opener(cast[RECIPIENT], directory, tight).open(data, NOW)


def test_non_canonical_framing(cast, directory) -> None:
    data = seal_one(cast, directory)
    body, seal = decode_signed(data, TYPE_ENVELOPE, "envelope", 1 << 26)
    # The same values, with the body length written in a wider form than needed.
    framed = b"\x94\x01\x01\xc6" + len(body).to_bytes(4, "big") + body + pack(seal.to_wire())
    assert msgpack.unpackb(framed) == outer(data)
    with pytest.raises(errors.MalformedError, match="not canonical"):
        decode_envelope(framed)


def test_non_canonical_body(cast, directory) -> None:
    data = seal_one(cast, directory)
    fields = body_fields(data)
    body = pack(fields)
    wide = b"\xdc\x00\x0c" + body[1:]  # array16 header instead of fixarray
    (seal,) = sign_leaves(cast[SENDER].signing_private_key, 1, [signed_leaf(1, wide)])
    with pytest.raises(errors.MalformedError, match=r"envelope\.body: encoding is not canonical"):
        decode_envelope(encode_signed(TYPE_ENVELOPE, wide, seal))


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (1, b"short", "envelope.body.message_id"),
        (2, "520102.GongAn", "envelope.body.sender"),
        (2, 520102, "envelope.body.sender"),
        (3, b"", "envelope.body.sender_key_id"),
        (4, [], "envelope.body.recipients"),
        (5, -1, "envelope.body.created"),
        (7, "Data!", "envelope.body.kind"),
        (8, "\x00", "envelope.body.content_type"),
        (9, 3, "envelope.body.plaintext_size"),
        (10, b"\x00" * 8, "envelope.body.nonce"),
        (11, b"", "envelope.body.ciphertext"),
    ],
)
def test_malformed_field_is_named(cast, directory, index, value, field) -> None:
    fields = body_fields(seal_one(cast, directory))
    fields[index] = value
    with pytest.raises(errors.MalformedError) as caught:
        decode_envelope(resign(fields, cast[SENDER]))
    assert caught.value.field == field


def test_expiry_before_creation(cast, directory) -> None:
    fields = body_fields(seal_one(cast, directory))
    fields[6] = fields[5] - 1
    with pytest.raises(errors.MalformedError, match="before created"):
        decode_envelope(resign(fields, cast[SENDER]))


def test_unsorted_or_duplicate_recipients(cast, directory) -> None:
    fields = body_fields(seal_one(cast, directory, recipients=(RECIPIENT, OTHER)))
    fields[4] = list(reversed(fields[4]))
    with pytest.raises(errors.MalformedError, match="sorted and unique"):
        decode_envelope(resign(fields, cast[SENDER]))
    fields[4] = [fields[4][0], fields[4][0]]
    with pytest.raises(errors.MalformedError, match="sorted and unique"):
        decode_envelope(resign(fields, cast[SENDER]))


def test_malformed_seal_is_named(cast, directory) -> None:
    value = outer(seal_one(cast, directory))
    value[3][3] = b"\x00" * 63
    with pytest.raises(errors.MalformedError) as caught:
        decode_envelope(pack(value))
    assert caught.value.field == "envelope.seal.signature"


def test_deep_nesting_is_refused_before_the_schema() -> None:
    with pytest.raises(errors.MalformedError):
        decode_envelope(b"\x91" * 100_000 + b"\x00")
    with pytest.raises(errors.MalformedError):
        decode_envelope(pack([1, 1, pack([[[[[[1]]]]]]), [0, 1, b"", b"\x00" * 64]]))


def test_not_bytes_at_all() -> None:
    with pytest.raises(errors.MalformedError):
        decode_envelope("not bytes")  # type: ignore[arg-type]


# --- the hand-written framing is exactly what msgpack writes ------------------


@pytest.mark.parametrize("body_length", [0, 1, 255, 256, 65535, 65536])
@pytest.mark.parametrize(
    ("index", "count"), [(0, 1), (127, 128), (128, 129), (255, 256), (256, 65536)]
)
def test_framing_is_canonical_msgpack(body_length, index, count) -> None:
    seal = Seal(index, count, b"\x11" * 32 * (3 if count > 1 else 0), b"\x22" * 64)
    body = b"\x33" * body_length
    framed = encode_signed(TYPE_ENVELOPE, body, seal)
    assert framed == pack([1, TYPE_ENVELOPE, body, seal.to_wire()])
    assert decode_signed(framed, TYPE_ENVELOPE, "envelope", 1 << 20) == (body, seal)


# --- the sealer refuses what a receiver would refuse --------------------------


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (Outgoing([], b"x"), "recipients"),
        (Outgoing([RECIPIENT, RECIPIENT], b"x"), "duplicate"),
        (Outgoing(["not a name"], b"x"), "recipient 'not a name'"),
        (Outgoing(["520102.nobody"], b"x"), "not in the directory"),
        (Outgoing([RECIPIENT], "text"), "payload must be bytes"),  # type: ignore[arg-type]
        (Outgoing([RECIPIENT], b"x", kind="Bad Kind"), "kind"),
        (Outgoing([RECIPIENT], b"x", content_type=""), "content_type"),
        (Outgoing([RECIPIENT], b"x", ttl=0), "ttl"),
        (Outgoing([RECIPIENT], b"x", ttl=31 * 86400), "ttl"),
        (Outgoing([RECIPIENT], b"x", message_id=b"short"), "message_id"),
    ],
)
def test_sealer_usage_errors(cast, directory, item, message) -> None:
    with pytest.raises(errors.UsageError, match=message):
        Sealer(cast[SENDER], directory).seal(item, NOW)


def test_caller_chosen_message_id_is_used(cast, directory) -> None:
    sealed = Sealer(cast[SENDER], directory).seal(
        Outgoing([RECIPIENT], b"x", message_id=b"\x07" * 16), NOW
    )
    assert sealed.message_id == b"\x07" * 16
    assert decode_envelope(sealed.data).header.message_id == b"\x07" * 16


# --- Ed25519 strictness (SPEC §6.3) ---------------------------------------------------

SMALL_ORDER_KEYS = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # the identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # identity, y = p + 1
]


@pytest.mark.parametrize("raw", SMALL_ORDER_KEYS)
def test_no_signature_is_accepted_under_a_weak_signing_key(cast, directory, raw) -> None:
    """OpenSSL accepts (R = identity, S = 0) under a small-order key for any message; we do not.

    A node with such a key in its certificate could sign anything and deny
    it after: a receipt under it would prove nothing.  The seal check refuses
    the key (``bad-signature``) whatever the signature.
    """
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw))
    weak = PeerIdentity(NodeName.parse(SENDER), key, cast[SENDER].peer.encryption_key)
    peers = StaticDirectory([cast[RECIPIENT].peer, weak])
    fields = body_fields(seal_one(cast, directory))
    fields[3] = weak.signing_key_id
    body = pack(fields)
    forged = b"\x01" + b"\x00" * 63  # R = identity, S = 0
    if raw in (SMALL_ORDER_KEYS[0], SMALL_ORDER_KEYS[-1]):  # the library takes it: ours refuses
        key.verify(forged, signature_input(1, 1, signed_leaf(TYPE_ENVELOPE, body)))
    data = encode_signed(TYPE_ENVELOPE, body, Seal(0, 1, b"", forged))
    with pytest.raises(errors.BadSignatureError, match="small order or not canonical"):
        EnvelopeVerifier(peers).verify(data, NOW)
