"""Properties of the catalog: hostile bytes, and convergence of anti-entropy (SPEC §18)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchnode import errors
from exchnode.catalog import (
    CatalogRecord,
    CatalogState,
    CatalogVerifier,
    Summary,
    decode_providers,
    decode_record,
    decode_records,
    decode_versions,
    decode_wanted,
)
from exchnode.federation import Relation
from tests.unit.catalog.test_entry import DIRECTORY, body_of, make_entry, publish, sign_body
from tests.unit.catalog.test_state import _histories, pull

common = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
slow = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HISTORIES = _histories(7)
POOL: list[CatalogRecord] = [record for history in HISTORIES.values() for record in history]
VALID = publish(make_entry(), version=1)[0]
VERIFIER = CatalogVerifier(DIRECTORY)

DECODERS: list[Callable[[bytes], object]] = [
    decode_record,
    VERIFIER.verify,
    Summary.decode,
    decode_providers,
    decode_versions,
    decode_wanted,
    decode_records,
    lambda data: CatalogState.restore(data, "520000"),
]


def _refused_or_decoded(decode: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(errors.RejectedError):
        decode(data)


@common
@given(st.binary(max_size=1024), st.sampled_from(DECODERS))
def test_decoders_raise_only_rejections_on_any_bytes(data: bytes, decode: Any) -> None:
    _refused_or_decoded(decode, data)


@common
@given(
    st.integers(0, len(VALID.data) - 1),
    st.integers(1, 255),
    st.integers(0, len(VALID.data)),
    st.sampled_from([decode_record, VERIFIER.verify]),
)
def test_a_damaged_record_is_refused_or_still_the_same(
    position: int, flip: int, cut: int, decode: Any
) -> None:
    damaged = bytearray(VALID.data)
    damaged[position] ^= flip
    for data in (bytes(damaged), VALID.data[:cut]):
        try:
            record = decode(data)
        except errors.RejectedError:
            continue
        # What decodes from damaged bytes never verifies as the provider's record.
        assert decode is decode_record or record == VALID


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def _wire_body(record: CatalogRecord) -> list[Any]:
    """The body a decoded record stands for: what its provider signed, field by field."""
    detail = record.entry.detail() if record.entry is not None else record.reason
    head = [record.suite, record.signer, record.signer_key_id, record.provider, record.code]
    return [*head, record.version, record.issued_ms, record.status.value, detail]


@common
@given(st.integers(0, 8), st.integers(0, 13), msgpack_values)
def test_any_value_in_any_field_is_refused_with_a_rejection(
    field: int, detail_field: int, value: Any
) -> None:
    """Whatever value lands in whatever field: a rejection, or a record that is exactly it.

    A value that decodes must be taken as given -- not coerced, truncated or
    dropped -- so the decoded record stands for the very bytes that were
    signed, and the verifier agrees with the decoder.
    """
    body = body_of(VALID.data)
    if field == 8:
        if not 0 <= detail_field < len(body[8]):
            return
        body[8][detail_field] = value
    else:
        body[field] = value
    # A body that is not even an array of 9 is refused, whatever its one element.
    with contextlib.suppress(errors.RejectedError):
        decode_record(sign_body([value], VALID.provider))
        raise AssertionError("a one-element body decoded")
    signed = sign_body(body, VALID.provider)
    try:
        record = decode_record(signed)
    except errors.RejectedError:
        with contextlib.suppress(errors.RejectedError):
            VERIFIER.verify(signed)
            raise AssertionError("the verifier took what the decoder refused") from None
        return
    assert msgpack.packb(_wire_body(record)) == msgpack.packb(body)
    assert VERIFIER.verify(signed) == record


# --- convergence ----------------------------------------------------------------------


def _model(records: list[CatalogRecord]) -> Summary:
    """What every node must end with: the newest version of each resource seen anywhere."""
    return _as_state(records).summary()


def _never_ahead_of_the_model(state: CatalogState, model: CatalogState) -> None:
    for record in state.records():
        assert record in POOL
        assert record.version <= model.version(record.provider, record.code)


@slow
@given(st.data())
def test_peers_converge_under_partial_exchanges_in_any_order(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 5), label="states")
    states = [CatalogState("520000") for _ in range(n)]
    seeded: list[CatalogRecord] = []
    for state in states:
        for record in data.draw(st.lists(st.sampled_from(POOL), max_size=25)):
            state.apply(record)
            seeded.append(record)
    model = _as_state(seeded)
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.none() | st.integers(0, 4))
    for a, b, limit in data.draw(st.lists(pairs, max_size=20), label="partial exchanges"):
        if a != b:
            pull(states[a], states[b], verifier=VERIFIER, limit=limit)
            _never_ahead_of_the_model(states[a], model)
    order = data.draw(st.permutations([(a, b) for a in range(n) for b in range(n) if a != b]))
    _until_stable(states, lambda: [pull(states[a], states[b], verifier=VERIFIER) for a, b in order])
    expected = _model(seeded)
    assert [state.summary() for state in states] == [expected] * n


# A province with two cities, counties and departments; every edge is (parent, child).
TREE = [
    ("520000", "520100"),
    ("520000", "522300"),
    ("520000", "520000.tongji"),
    ("520100", "520102"),
    ("520100", "520103"),
    ("520100", "520100.fagai"),
    ("520102", "520102.gongan"),
    ("520102", "520102.minzheng"),
    ("520103", "520103.gongan"),
    ("522300", "522301"),
    ("522301", "522301.minzheng"),
]
NODES = sorted({name for edge in TREE for name in edge})


@slow
@given(st.data())
def test_a_hierarchy_converges_to_the_whole_catalog_at_every_node(data: st.DataObject) -> None:
    """Providers publish new versions while partial pulls run along the tree in any order."""
    states = {name: CatalogState(name) for name in NODES}
    histories = list(HISTORIES.values())
    reached = [0] * len(histories)
    seeded: list[CatalogRecord] = []

    def tick() -> None:  # every provider signs the next record of each history
        for i, history in enumerate(histories):
            if reached[i] < len(history):
                record = history[reached[i]]
                reached[i] += 1
                states[record.provider].apply(record)
                seeded.append(record)

    tick()
    pulls = [(p, c, Relation.CHILD) for p, c in TREE] + [(c, p, Relation.PARENT) for p, c in TREE]
    steps = st.tuples(st.booleans(), st.sampled_from(pulls), st.none() | st.integers(0, 3))
    for publish_first, (puller, source, relation), limit in data.draw(
        st.lists(steps, max_size=60), label="steps"
    ):
        if publish_first:
            tick()
        pull(states[puller], states[source], relation, VERIFIER, limit=limit)
        _never_ahead_of_the_model(states[puller], _as_state(seeded))
    tick()
    order = data.draw(st.permutations(pulls))
    _until_stable(
        list(states.values()),
        lambda: [pull(states[p], states[s], r, VERIFIER) for p, s, r in order],
    )
    expected = _model(seeded)
    assert {name: state.summary() for name, state in states.items()} == dict.fromkeys(
        NODES, expected
    )


def _as_state(records: list[CatalogRecord]) -> CatalogState:
    state = CatalogState("520000")
    for record in records:
        state.apply(record)
    return state


def _until_stable(states: list[CatalogState], sweep: Callable[[], object]) -> None:
    for _ in range(2 * len(states) + 2):
        before = [state.summary().top for state in states]
        sweep()
        if [state.summary().top for state in states] == before:
            return
    raise AssertionError("anti-entropy did not reach a fixed point")


def test_the_pool_is_signed_once_per_batch() -> None:
    signatures = {msgpack.unpackb(record.data)[3][3] for record in POOL}
    assert len(signatures) < len(POOL) / 2
