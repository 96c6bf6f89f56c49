"""Properties of the directory codec and verifier that must hold for every input (SPEC §14)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchnode import errors
from exchnode.core import pack
from exchnode.federation import verify_snapshot
from exchnode.federation._directory import decode_cache
from exchnode.federation._directory_wire import (
    DirectoryEntry,
    DirectorySnapshot,
    decode_snapshot,
    sign_snapshot,
)
from exchnode.testing import SyntheticPKI

PKI = SyntheticPKI()
ROOT = PKI.root("520000")
COUNTY = PKI.ca("520102", PKI.ca("520100", ROOT))
HUB = PKI.node("520102", COUNTY)
DEPT = PKI.node("520102.gongan", COUNTY)
NOW = (PKI.epoch + timedelta(days=1)).timestamp()
TRUST = PKI.trust_store([ROOT])
SNAPSHOT = sign_snapshot(
    HUB.identity,
    [
        DirectoryEntry.for_identity(HUB.identity, "https://520102.example"),
        DirectoryEntry.for_identity(DEPT.identity),
    ],
    TRUST.crls,
    NOW,
    86400.0,
)
common = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# msgpack-shaped values: what gets past the parser and into the schema checks.
scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.binary(max_size=64),
    st.text(max_size=24),
    st.sampled_from(["520102", "520102.gongan", "https://x.example", ""]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6), max_leaves=40)


def cache_of(items: list[object]) -> bytes:
    """A cache of the right version, so that the items themselves are checked."""
    return pack([1, items])


@common
@given(st.binary(max_size=512))
def test_decoding_arbitrary_bytes_raises_only_rejected_error(data: bytes) -> None:
    with contextlib.suppress(errors.RejectedError):
        assert isinstance(decode_snapshot(data), DirectorySnapshot)


@common
@given(values, st.binary(min_size=64, max_size=64))
def test_decoding_arbitrary_structures_raises_only_rejected_error(
    body: object, signature: bytes
) -> None:
    for data in (pack(body), pack([1, pack(body), signature])):
        with contextlib.suppress(errors.RejectedError):
            decode_snapshot(data)


@common
@given(st.lists(values, max_size=6))
def test_decoding_arbitrary_body_fields_raises_only_rejected_error(fields: list[object]) -> None:
    # Start from a genuine body's leading fields so the walk reaches entries and CRLs.
    genuine = decode_snapshot(SNAPSHOT)
    body = pack([*genuine[:4], *fields][:6])
    with contextlib.suppress(errors.RejectedError):
        decode_snapshot(pack([1, body, genuine.signature]))


@common
@given(st.data())
def test_no_single_bit_flip_of_a_snapshot_is_accepted(data: st.DataObject) -> None:
    bit = data.draw(st.integers(0, len(SNAPSHOT) * 8 - 1), label="bit")
    flipped = bytearray(SNAPSHOT)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        verify_snapshot(bytes(flipped), TRUST, NOW, "520102")
    except errors.RejectedError:
        return
    raise AssertionError(f"a snapshot with bit {bit} flipped was accepted")


@common
@given(st.one_of(st.binary(max_size=256), values.map(pack), st.lists(values).map(cache_of)))
def test_decoding_an_arbitrary_cache_raises_only_rejected_error(data: bytes) -> None:
    with contextlib.suppress(errors.RejectedError):
        decode_cache(data)
