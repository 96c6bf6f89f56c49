"""Properties of sealing and opening that must hold for every input (issue 2, SPEC §8)."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from exchnode import errors
from exchnode.core import (
    TYPE_ENVELOPE,
    TYPE_RECEIPT,
    EnvelopeVerifier,
    FreshnessPolicy,
    Opener,
    Outgoing,
    ReplayWindow,
    Seal,
    Sealer,
    StaticDirectory,
    decode_envelope,
    decode_receipt,
    decode_signed,
    encode_signed,
    hpke_open,
    hpke_seal,
    pack,
    wrap_info,
)
from exchnode.testing import SeededRandom, seeded_directory, seeded_identity
from tests.cast import HUB, NOW, OTHER, RECIPIENT, SENDER
from tests.property import strategies

NAMES = (SENDER, RECIPIENT, OTHER, HUB, "522301", "520000.tongji")
CAST = {name: seeded_identity(name) for name in NAMES}
DIRECTORY: StaticDirectory = seeded_directory(*CAST.values())
SEALER = Sealer(CAST[SENDER], DIRECTORY, random=SeededRandom("properties"))
ADDRESSABLE = [name for name in NAMES if name != SENDER]

recipient_sets = st.lists(st.sampled_from(ADDRESSABLE), min_size=1, unique=True)
payloads = st.binary(max_size=2048)
common = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def seal(recipients: list[str], payload: bytes) -> bytes:
    return SEALER.seal(Outgoing(recipients, payload), NOW).data


@common
@given(recipient_sets, payloads)
def test_every_recipient_opens_exactly_what_was_sealed(recipients, payload) -> None:
    data = seal(recipients, payload)
    for name in recipients:
        opened = Opener(CAST[name], DIRECTORY).open(data, NOW)
        assert opened.plaintext == payload
        assert opened.header.sender == SENDER
        assert opened.header.recipient_names == tuple(sorted(recipients))


@common
@given(recipient_sets, payloads, st.sampled_from(NAMES))
def test_no_one_else_opens_it(recipients, payload, outsider) -> None:
    assume(outsider not in recipients)
    data = seal(recipients, payload)
    try:
        Opener(CAST[outsider], DIRECTORY).open(data, NOW)
    except errors.NotARecipientError:
        return
    raise AssertionError(f"{outsider} opened an envelope addressed to {recipients}")


@common
@given(recipient_sets, st.binary(min_size=0, max_size=256), st.data())
def test_any_single_bit_flip_is_refused_with_a_typed_error(recipients, payload, data) -> None:
    envelope = seal(recipients, payload)
    bit = data.draw(st.integers(0, len(envelope) * 8 - 1), label="bit")
    flipped = bytearray(envelope)
    flipped[bit // 8] ^= 1 << (bit % 8)
    receiver = recipients[0]
    # Both a fresh opener and one that has already authenticated this batch.
    warm = Opener(CAST[receiver], DIRECTORY)
    warm.open(envelope, NOW)
    for opener in (Opener(CAST[receiver], DIRECTORY), warm):
        try:
            opener.open(bytes(flipped), NOW)
        except errors.RejectedError:
            continue
        raise AssertionError(f"bit {bit} flipped and the envelope still opened")


@common
@given(recipient_sets, payloads, st.sampled_from(ADDRESSABLE))
def test_readdressing_fails_even_with_the_content_key(recipients, payload, third) -> None:
    """A recipient re-wraps the content key to a third party: the sender's seal breaks."""
    assume(third not in recipients)
    data = seal(recipients, payload)
    body, seal_ = decode_signed(data, TYPE_ENVELOPE, "envelope", 1 << 26)
    fields = msgpack.unpackb(body)
    holder = recipients[0]
    entry = next(e for e in fields[4] if e[0] == holder)
    content_key = hpke_open(
        CAST[holder].encryption_private_key,
        entry[2],
        info=wrap_info(1, SENDER, holder, entry[1]),
    )
    peer = CAST[third].peer
    rewrapped = hpke_seal(
        peer.encryption_key,
        content_key,
        info=wrap_info(1, SENDER, third, peer.encryption_key_id),
        random=SeededRandom(third),
    )
    fields[4] = sorted([*fields[4], [third, peer.encryption_key_id, rewrapped]])
    forged = encode_signed(TYPE_ENVELOPE, pack(fields), seal_)
    try:
        Opener(CAST[third], DIRECTORY).open(forged, NOW)
    except errors.BadSignatureError:
        return
    raise AssertionError("a re-addressed envelope opened for the third party")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_typed_errors(blob) -> None:
    # Anything but a RejectedError escapes suppress() and fails the test.
    for decode in (decode_envelope, decode_receipt):
        with contextlib.suppress(errors.RejectedError):
            decode(blob)
    with contextlib.suppress(errors.RejectedError):
        EnvelopeVerifier(DIRECTORY).verify(blob, NOW)


msgpack_values = strategies.msgpack_values(max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(msgpack_values, msgpack_values)
def test_well_formed_msgpack_of_the_wrong_shape_raises_only_typed_errors(outer, body) -> None:
    """Structure-aware fuzzing: valid msgpack, plausible framing, hostile contents."""
    candidates = [msgpack.packb(outer), msgpack.packb([1, 1, msgpack.packb(body), outer])]
    for blob in candidates:
        with contextlib.suppress(errors.RejectedError):
            decode_envelope(blob)


unknown_numbers = st.integers(-(2**63), 2**64 - 1).filter(lambda n: n != 1)
ANY_SEAL = Seal(0, 1, b"", b"\x00" * 64)


@settings(max_examples=300, deadline=None)
@given(unknown_numbers, st.lists(msgpack_values, max_size=20))
def test_an_unknown_suite_is_refused_as_such_whatever_the_body_holds(suite, rest) -> None:
    """SPEC §5.2: the suite is read first; a body under an unknown suite is not parsed further."""
    body = msgpack.packb([suite, *rest])
    with pytest.raises(errors.UnsupportedSuiteError):
        decode_envelope(encode_signed(TYPE_ENVELOPE, body, ANY_SEAL))
    receipt = encode_signed(TYPE_RECEIPT, body, ANY_SEAL)
    if len(receipt) <= 4096:  # beyond, the size is checked first: too-large
        with pytest.raises(errors.UnsupportedSuiteError):
            decode_receipt(receipt)


@settings(max_examples=300, deadline=None)
@given(unknown_numbers, st.lists(msgpack_values, max_size=6))
def test_an_unknown_format_is_refused_as_such_whatever_follows_it(version, rest) -> None:
    """SPEC §5.1, §13: the format is read first; an item of an unknown one is not parsed."""
    blob = msgpack.packb([version, *rest])
    with pytest.raises(errors.UnsupportedVersionError):
        decode_envelope(blob)
    if len(blob) <= 4096:
        with pytest.raises(errors.UnsupportedVersionError):
            decode_receipt(blob)


@common
@given(recipient_sets, payloads, st.data())
def test_the_framing_decoder_accepts_only_canonical_encodings(recipients, payload, data) -> None:
    """After random mutations, an item either fails or is exactly the canonical encoding."""
    envelope = bytearray(seal(recipients, payload))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        position = data.draw(st.integers(0, len(envelope) - 1), label="position")
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="action")
        byte = data.draw(st.integers(0, 255), label="byte")
        if action == "replace":
            envelope[position] = byte
        elif action == "delete":
            del envelope[position]
        else:
            envelope.insert(position, byte)
    blob = bytes(envelope)
    try:
        body, seal_ = decode_signed(blob, TYPE_ENVELOPE, "envelope", 1 << 26)
    except errors.RejectedError:
        return
    assert pack([1, TYPE_ENVELOPE, body, seal_.to_wire()]) == blob


class ReplayModel(RuleBasedStateMachine):
    """The replay window against a model: a set of (sender, id) until expiry."""

    policy = FreshnessPolicy(clock_skew=5, max_lifetime=100)

    @initialize()
    def start(self) -> None:
        self.window = ReplayWindow(self.policy)
        self.now = NOW
        self.model: dict[tuple[str, bytes], int] = {}

    @rule(
        sender=st.sampled_from(NAMES[:3]),
        message_id=st.sampled_from([bytes([i]) * 16 for i in range(6)]),
        lifetime=st.integers(1, 100_000),
    )
    def arrive(self, sender: str, message_id: bytes, lifetime: int) -> None:
        created = int(self.now * 1000)
        expires = created + lifetime
        key = (sender, message_id)
        seen = key in self.model and self.model[key] > created
        try:
            self.window.check_and_record(sender, message_id, created, expires, self.now)
        except errors.ReplayError:
            assert seen, "refused an id the model had forgotten"
            return
        assert not seen, f"accepted a replay of {key}"
        self.model[key] = expires

    @rule(seconds=st.floats(0, 50))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        now_ms = int(self.now * 1000)
        self.window.prune(self.now)
        self.model = {k: e for k, e in self.model.items() if e > now_ms}

    @invariant()
    def bounded(self) -> None:
        assert len(self.window) == len(self.model)


TestReplayModel = ReplayModel.TestCase
TestReplayModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
