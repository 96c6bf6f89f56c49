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
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    RecordPage,
    Summary,
    Wanted,
    decode_providers,
    decode_record,
    decode_records,
    decode_versions,
    decode_wanted,
)
from exchnode.catalog._state import within_subtree
from exchnode.core import NodeName
from exchnode.federation import Relation
from tests.property import strategies
from tests.unit.catalog.feeds import Feeds, lookup
from tests.unit.catalog.test_entry import DIRECTORY, body_of, make_entry, publish, sign_body
from tests.unit.catalog.test_state import _histories, pull

common = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
slow = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FEED = bytes(range(16))
HEADER = CatalogState("520000", feed_id=FEED).take_rows()["catalog.h"] or b""
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
    lambda data: CatalogState.from_snapshot(data, "520000", feed_id=FEED),
    lambda data: CatalogState.from_rows([("catalog.h", data)], "520000"),
    lambda data: CatalogState.from_rows(
        [("catalog.h", HEADER), ("catalog.r 520102.gongan 101001/000001", data)], "520000"
    ),
    FeedRequest.decode,
    RecordPage.decode,
    LookupRequest.decode,
    LookupAnswer.decode,
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


msgpack_values = strategies.msgpack_values(max_leaves=8)


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
    states = [CatalogState("520000", feed_id=FEED) for _ in range(n)]
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
def test_every_hub_ends_with_exactly_its_subtrees_catalog(data: st.DataObject) -> None:
    """Providers publish while feed pulls, cut short, run up the tree in any order.

    Some children speak format 1 (their hub pulls them by §18.7), and
    departments look up other branches' entries meanwhile: what they cache
    never climbs.  In the end every hub holds exactly the newest record of
    every resource of its subtree, and a department its own plus what it cached.
    """
    states = {name: CatalogState(name, feed_id=bytes([i]) * 16) for i, name in enumerate(NODES)}
    parent_of = {child: parent for parent, child in TREE}
    old = data.draw(st.sets(st.sampled_from(TREE)), label="format-1 edges")
    histories = list(HISTORIES.values())
    reached = [0] * len(histories)
    seeded: list[CatalogRecord] = []
    feeds = Feeds()

    def tick() -> None:  # every provider signs the next record of each history
        for i, history in enumerate(histories):
            if reached[i] < len(history):
                record = history[reached[i]]
                reached[i] += 1
                states[record.provider].apply(record)
                seeded.append(record)

    def up(edge: tuple[str, str], pages: int | None) -> None:
        parent, child = edge
        if edge in old:
            pull(states[parent], states[child], Relation.CHILD, VERIFIER, limit=pages)
        else:
            feeds.pull(states[parent], states[child], pages=pages, limit=2)

    def chain(name: str) -> list[CatalogState]:
        names = [name]
        while names[-1] in parent_of:
            names.append(parent_of[names[-1]])
        return [states[n] for n in names]

    tick()
    departments = [n for n in NODES if "." in n]
    looks = st.tuples(st.sampled_from(departments), st.sampled_from(POOL))
    steps = st.tuples(st.booleans(), st.sampled_from(TREE), st.none() | st.integers(1, 3))
    for publish_first, edge, pages in data.draw(st.lists(steps, max_size=60), label="steps"):
        if publish_first:
            tick()
        up(edge, pages)
        for state in states.values():
            _never_ahead_of_the_model(state, _as_state(seeded))
    for asker, record in data.draw(st.lists(looks, max_size=5), label="lookups"):
        lookup(chain(asker), [Wanted(record.provider, record.code, 0)])
    tick()
    order = data.draw(st.permutations(TREE))

    def sweep() -> None:
        for edge in order:
            up(edge, None)

    _until_stable(list(states.values()), sweep)
    model = _as_state(seeded)
    for name, state in states.items():
        me = NodeName.parse(name)
        expected = [r for r in model.records() if within_subtree(me, r.provider)]
        assert list(state.subtree()) == expected, name
        cached = [r for r in state.records() if r not in expected]
        assert len(cached) == state.cached  # the rest came from above, asked for
        assert not any(within_subtree(me, r.provider) for r in cached), name


def _as_state(records: list[CatalogRecord]) -> CatalogState:
    state = CatalogState("520000", feed_id=FEED)
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
