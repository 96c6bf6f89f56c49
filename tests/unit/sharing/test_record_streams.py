"""Records on the wire, grouping for multi-recipient envelopes, resend and gaps (draft §19.6)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace

import msgpack
import pytest

from exchnode import errors
from exchnode.core import pack
from exchnode.core._events import ListSink
from exchnode.sharing import (
    GapTracker,
    Hash,
    Keep,
    MaskSet,
    RecordBatch,
    RecordGap,
    Resend,
    SubscriberView,
    SubscriptionBook,
    decode_message,
    group_deliveries,
)
from exchnode.sharing._record_messages import terms_fingerprint
from exchnode.sharing._record_streams import AtRestCipher, RecordDelivery, RecordStream
from exchnode.sharing._states import ShareType
from tests.unit.sharing.test_subscriptions import OPEN, PROVIDER, RECORD

OTHERS = ("520102.minzheng", "520103.gongan", "520102.gongan")
SECRET = b"m" * 32


def book(**kwargs: object) -> SubscriptionBook:
    return SubscriptionBook(
        PROVIDER, {OPEN.code: OPEN}.get, sink=ListSink(), masking_secret=SECRET, **kwargs
    )


def subscribe(provider: SubscriptionBook, who: str, items: tuple[str, ...]) -> SubscriberView:
    # Request ids distinct per subscriber whatever PYTHONHASHSEED is (hash() of a str is not).
    counter = itertools.count()
    view = SubscriberView(
        who,
        sink=ListSink(),
        random=lambda n: hashlib.sha256(f"{who} {next(counter)}".encode()).digest()[:n],
    )
    [out] = view.request(OPEN, purpose="p", scope="s", items=items, operator="o", now_ms=1)
    [answer] = provider.on_request(out.message, sender=who, now_ms=1)  # type: ignore[arg-type]
    view.on_decision(answer.message, sender=PROVIDER, now_ms=1)  # type: ignore[arg-type]
    return view


def test_identical_projections_share_one_body_that_names_no_subscriber() -> None:
    provider = book()
    views = [subscribe(provider, who, ("name",)) for who in OTHERS[:2]]
    views.append(subscribe(provider, OTHERS[2], ("id_number", "name")))
    deliveries = provider.publish(OPEN.code, RECORD, 2)
    groups = group_deliveries(deliveries)
    assert [len(g.recipients) for g in groups] == [2, 1]
    shared = groups[0]
    assert shared.recipients == tuple(sorted(OTHERS[:2]))
    assert shared.kind == "sub.records"
    batch = decode_message(shared.kind, shared.payload)
    assert isinstance(batch, RecordBatch)
    assert batch.records == ((1, {"name": RECORD["name"]}),)
    # Nothing in the body is specific to one recipient: no names, no request ids.
    for request_id in shared.request_ids:
        assert request_id not in shared.payload
    for who in OTHERS:
        assert who.encode() not in shared.payload
    # Each subscriber finds its own grant by provider, resource and terms.
    for view in views[:2]:
        [grant] = view.grants_for(batch, sender=PROVIDER, now_ms=2)
        assert grant.request_id in shared.request_ids
        assert view.covers(grant.request_id, 1)
    assert views[2].grants_for(batch, sender=PROVIDER, now_ms=2) == []
    with pytest.raises(errors.NotAuthorisedError):
        views[0].grants_for(batch, sender="520100", now_ms=2)


def test_hashed_items_never_group_across_grants() -> None:
    provider = book()
    for who in OTHERS[:2]:
        subscribe(provider, who, ("id_number",))
    masks = MaskSet.of({"id_number": Hash()})
    assert terms_fingerprint(["id_number"], masks) != terms_fingerprint(["id_number"], MaskSet())
    deliveries = [
        replace(d, fields={"id_number": f"h{i}"}, terms=terms_fingerprint(["id_number"], masks))
        for i, d in enumerate(provider.publish(OPEN.code, RECORD, 2))
    ]
    assert [len(g.recipients) for g in group_deliveries(deliveries)] == [1, 1]


def test_bodies_are_cut_by_count_and_size_by_one_rule() -> None:
    provider = book()
    subscribe(provider, OTHERS[0], ("address", "name"))
    subscribe(provider, OTHERS[1], ("address", "name"))
    deliveries = [d for _ in range(40) for d in provider.publish(OPEN.code, RECORD, 2)]
    groups = group_deliveries(deliveries, max_body=300)
    assert len(groups) > 1
    assert all(len(g.payload) <= 300 and len(g.recipients) == 2 for g in groups)
    seqs = [s for g in groups for s, _ in RecordBatch.decode(g.payload).records]
    assert seqs == list(range(1, 41))
    with pytest.raises(errors.UsageError, match="alone exceeds"):
        group_deliveries(deliveries, max_body=40)
    with pytest.raises(errors.UsageError, match="provider"):
        group_deliveries([replace(deliveries[0], provider="")])


def test_record_values_of_every_type_round_trip_and_bad_fields_are_named() -> None:
    values = {"a": "text", "b": -5, "c": 1.5, "d": True, "e": b"\x00", "f": None}
    batch = RecordBatch(
        provider=PROVIDER, resource_code=OPEN.code, terms=b"t" * 16, records=((3, values),)
    )
    assert RecordBatch.decode(batch.encode()) == batch
    wire = msgpack.unpackb(batch.encode())
    broken = [*wire[:4], [[3, [["b", 1], ["a", 2]]]]]
    with pytest.raises(errors.MalformedError) as caught:
        RecordBatch.decode(pack(broken))
    assert caught.value.field == "sub.records.records[0].fields[1].item"
    broken = [*wire[:4], [[3, [["a", [1]]]]]]
    with pytest.raises(errors.MalformedError) as caught:
        RecordBatch.decode(pack(broken))
    assert caught.value.field == "sub.records.records[0].fields[0].value"
    broken = [*wire[:4], [[3, []], [3, []]]]
    with pytest.raises(errors.MalformedError, match="increase"):
        RecordBatch.decode(pack(broken))
    with pytest.raises(errors.MalformedError, match=r"1\.\.1024 records"):
        RecordBatch.decode(pack([*wire[:4], []]))
    with pytest.raises(errors.UsageError):
        Resend(
            request_id=b"r" * 16,
            subscriber=OTHERS[0],
            provider=PROVIDER,
            resource_code=OPEN.code,
            from_seq=5,
            to_seq=4,
        )


def test_resend_answers_from_the_window_and_reports_the_rest_as_a_gap() -> None:
    provider = book(window=3)
    view = subscribe(provider, OTHERS[0], ("id_number", "name"))
    [grant] = view.held(2)
    for _ in range(6):
        provider.publish(OPEN.code, RECORD, 2)
    [ask] = view.resend(grant.request_id, 1, 9)
    assert ask.recipients == (PROVIDER,)
    out = provider.on_resend(ask.message, sender=OTHERS[0], now_ms=3)  # type: ignore[arg-type]
    batch, gap = (decode_message(o.kind, o.payload()) for o in out)
    assert isinstance(batch, RecordBatch)
    assert isinstance(gap, RecordGap)
    assert [seq for seq, _ in batch.records] == [4, 5, 6]
    assert (gap.from_seq, gap.to_seq) == (1, 3)
    tracker = GapTracker()
    tracker.observe(5)
    assert view.on_gap(gap, sender=PROVIDER) == (1, 3)
    tracker.give_up(3)
    assert tracker.missing() == [(4, 4)]
    with pytest.raises(errors.NotAuthorisedError):
        provider.on_resend(ask.message, sender=OTHERS[1], now_ms=3)  # type: ignore[arg-type]


def test_window_is_bounded_in_bytes_too_and_survives_a_restart() -> None:
    stream = RecordStream(window=100, window_bytes=200)
    for _ in range(10):
        seq = stream.assign("101001/1")
        stream.keep("101001/1", seq, {"a": "y" * 50}, 7)
    assert stream.oldest("101001/1") == 8  # 3 records of ~60 bytes fit in 200
    restored = RecordStream.restore(stream.encode(), window=100, window_bytes=200)
    assert restored.encode() == stream.encode()
    assert [k.seq for k in restored.recent("101001/1", 1, 10)] == [8, 9, 10]


def test_gap_trackers_persist() -> None:
    tracker = GapTracker(after=4)
    for seq in (5, 8, 11):
        tracker.observe(seq)
    again = GapTracker.restore(tracker.encode())
    assert (again.high_water, again.missing()) == (5, [(6, 7), (9, 10)])
    with pytest.raises(errors.MalformedError) as caught:
        GapTracker.restore(pack([1, 5, [6]]))
    assert caught.value.field == "gap-tracker.ahead"
    with pytest.raises(errors.UnsupportedVersionError):
        GapTracker.restore(pack([2, 5, []]))


def test_keep_mask_projection_is_what_the_subscriber_receives_on_resend() -> None:
    provider = book()
    view = subscribe(provider, OTHERS[0], ("id_number",))
    del view
    assert OPEN.share_type is ShareType.UNCONDITIONAL
    assert Keep().apply("id", "110101199003071234", None) == "110101********1234"


# --- the resend window at rest (issue 12, item 11) ------------------------------------


def _published_state(provider: SubscriptionBook) -> bytes:
    for _ in range(3):
        provider.publish(OPEN.code, RECORD, 2)
    return provider.encode()


def test_the_window_keeps_only_granted_items_and_none_of_them_in_clear() -> None:
    provider = book()
    view = subscribe(provider, OTHERS[0], ("name",))
    state = _published_state(provider)
    for value in RECORD.values():  # granted or not, no value of the record is stored in clear
        assert value.encode("utf-8") not in state, value
    # What is kept is what a resend needs: the granted item, and it comes back whole.
    kept = provider._stream.recent(OPEN.code, 1, 3)
    assert [set(k.record) for k in kept] == [{"name"}] * 3
    [grant] = view.held(2)
    [ask] = view.resend(grant.request_id, 1, 3)
    [out] = provider.on_resend(ask.message, sender=OTHERS[0], now_ms=3)  # type: ignore[arg-type]
    batch = decode_message(out.kind, out.payload())
    assert isinstance(batch, RecordBatch)
    assert [dict(fields) for _, fields in batch.records] == [{"name": "张三"}] * 3


def test_a_restored_window_still_answers_resends() -> None:
    provider = book()
    view = subscribe(provider, OTHERS[0], ("id_number", "name"))
    state = _published_state(provider)
    again = SubscriptionBook.restore(
        state, {OPEN.code: OPEN}.get, sink=ListSink(), masking_secret=SECRET
    )
    assert again.encode() == state
    [grant] = view.held(2)
    [ask] = view.resend(grant.request_id, 2, 3)
    [out] = again.on_resend(ask.message, sender=OTHERS[0], now_ms=3)  # type: ignore[arg-type]
    batch = decode_message(out.kind, out.payload())
    assert isinstance(batch, RecordBatch)
    assert [seq for seq, _ in batch.records] == [2, 3]


def test_with_no_live_grant_nothing_is_kept() -> None:
    provider = book()
    provider.publish(OPEN.code, RECORD, 2)
    assert provider._stream.recent(OPEN.code, 1, 1) == []
    assert provider._stream.last(OPEN.code) == 1


def test_under_another_secret_the_window_is_dropped_and_resends_become_gaps() -> None:
    provider = book()
    view = subscribe(provider, OTHERS[0], ("name",))
    state = _published_state(provider)
    other = SubscriptionBook.restore(
        state, {OPEN.code: OPEN}.get, sink=ListSink(), masking_secret=b"n" * 32
    )
    assert other._stream.dropped == 3
    [grant] = view.held(2)
    [ask] = view.resend(grant.request_id, 1, 3)
    [out] = other.on_resend(ask.message, sender=OTHERS[0], now_ms=3)  # type: ignore[arg-type]
    gap = decode_message(out.kind, out.payload())
    assert isinstance(gap, RecordGap)
    assert (gap.from_seq, gap.to_seq) == (1, 3)


def test_a_window_stored_in_clear_by_an_older_node_is_read_and_then_stored_sealed() -> None:
    plain = RecordStream()
    seq = plain.assign(OPEN.code)
    plain.keep(OPEN.code, seq, {"name": "张三"}, 7)
    data = plain.encode()
    assert "张三".encode() in data
    sealed = RecordStream.restore(data, cipher=AtRestCipher(SECRET))
    assert [k.record for k in sealed.recent(OPEN.code, 1, 1)] == [{"name": "张三"}]
    assert "张三".encode() not in sealed.encode()
    with pytest.raises(errors.MalformedError, match="no key"):
        RecordStream.restore(sealed.encode())


def test_more_subscribers_than_an_envelope_takes_are_split_and_all_receive() -> None:
    """Issue 13: 1,025 subscribers with identical terms once made an envelope over the limit of
    1,024 recipients, and nobody received anything."""
    deliveries = [
        RecordDelivery(
            subscriber=f"5201{n // 50:02d}.dept{n % 50:02d}",
            request_id=n.to_bytes(16, "big"),
            resource_code=OPEN.code,
            seq=1,
            fields={"name": "张三"},
            provider=PROVIDER,
            terms=b"t" * 16,
        )
        for n in range(2000)
    ]
    groups = group_deliveries(deliveries)
    assert [len(g.recipients) for g in groups] == [1024, 976]
    assert len({g.payload for g in groups}) == 1  # one body, sent in two envelopes
    everyone = [r for g in groups for r in g.recipients]
    assert sorted(everyone) == sorted(d.subscriber for d in deliveries)
    assert sorted(r for g in groups for r in g.request_ids) == sorted(
        d.request_id for d in deliveries
    )
    with pytest.raises(errors.UsageError, match="recipients"):
        group_deliveries(deliveries, max_recipients=2000)
