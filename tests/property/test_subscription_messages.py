"""Subscription messages decode or raise a rejection, whatever the bytes (issue 4, draft §19.3)."""

from __future__ import annotations

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchnode import errors
from exchnode.core import pack
from exchnode.sharing import KINDS, MaskSet, decode_message
from tests.unit.sharing.test_subscriptions import SAMPLES

common = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.sampled_from(["pending", "granted", "keep", "hash", "redact", "year_only", "expired"]),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=12,
)


def decodes_or_rejects(kind: str, data: bytes) -> None:
    try:
        message = decode_message(kind, data)
    except errors.RejectedError:
        return
    assert message.encode() == data  # what decodes is canonical


@common
@given(st.sampled_from(sorted(KINDS)), st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_are_rejected(kind: str, data: bytes) -> None:
    decodes_or_rejects(kind, data)


@common
@given(st.sampled_from(SAMPLES), st.data())
def test_any_field_replaced_by_any_value_decodes_or_is_rejected(
    sample: object, data: st.DataObject
) -> None:
    fields = msgpack.unpackb(sample.encode())  # type: ignore[attr-defined]
    index = data.draw(st.integers(0, len(fields) - 1))
    fields[index] = data.draw(wire_values)
    try:
        encoded = pack(fields)
    except (OverflowError, TypeError):
        return  # not representable in msgpack at all
    decodes_or_rejects(sample.KIND, encoded)  # type: ignore[attr-defined]


@common
@given(st.sampled_from(SAMPLES), st.data())
def test_bit_flips_decode_or_are_rejected(sample: object, data: st.DataObject) -> None:
    encoded = bytearray(sample.encode())  # type: ignore[attr-defined]
    position = data.draw(st.integers(0, len(encoded) * 8 - 1))
    encoded[position // 8] ^= 1 << (position % 8)
    decodes_or_rejects(sample.KIND, bytes(encoded))  # type: ignore[attr-defined]


@common
@given(wire_values)
def test_mask_sets_decode_or_are_rejected(value: object) -> None:
    try:
        data = pack(value)
    except (OverflowError, TypeError):
        return
    try:
        masks = MaskSet.decode(data)
    except errors.RejectedError:
        return
    assert masks.encode() == data
