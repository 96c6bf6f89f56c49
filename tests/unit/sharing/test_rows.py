"""The machines' state as rows: what a step changes, one row at a time (issue 13)."""

from __future__ import annotations

import msgpack
import pytest

from exchnode import errors
from exchnode.core._events import ListSink
from exchnode.sharing import (
    AtRestCipher,
    AuthorityDesk,
    CorrectionDesk,
    CorrectionTracker,
    RecordStream,
    SubscriberView,
    SubscriptionBook,
)
from exchnode.sharing._persistence import encode_row
from tests.unit.sharing.test_persistence import SECRET
from tests.unit.sharing.test_subscriptions import (
    AUTHORITY,
    CALENDAR,
    CATALOG,
    FRIDAY_3PM,
    OPEN,
    PROVIDER,
    RECORD,
    REQUESTER,
    World,
)


def new_book(**kwargs: object) -> SubscriptionBook:
    return SubscriptionBook(
        PROVIDER,
        CATALOG.get,
        sink=ListSink(),
        masking_secret=SECRET,
        calendar=CALENDAR,
        answer_days=5,
        **kwargs,  # type: ignore[arg-type]
    )


def loaded_book(rows: dict[str, bytes], **kwargs: object) -> SubscriptionBook:
    book = new_book(**kwargs)
    book.load_rows(sorted(rows.items()))
    return book


def many_subscribers(world: World, count: int) -> list[bytes]:
    """``count`` more grants of the open resource, from as many departments."""
    ids = []
    for n in range(count):
        view = SubscriberView(
            f"5201{n // 50 + 2:02d}.d{n % 50}",
            sink=ListSink(),
            random=lambda size, n=n: (10_000 + n).to_bytes(size, "big"),
        )
        [out] = view.request(OPEN, purpose="p", scope="s", items=["name"], operator="o", now_ms=1)
        world.book.on_request(out.message, sender=view.requester, now_ms=1)  # type: ignore[arg-type]
        ids.append(out.message.request_id)  # type: ignore[attr-defined]
    return ids


def test_a_step_changes_its_request_s_row_only_and_publishing_none_per_subscriber() -> None:
    world = World()
    rid = world.subscribe()
    others = many_subscribers(world, 120)
    first = world.book.take_changes()
    assert set(first) == {f"entry/{i.hex()}" for i in [rid, *others]}
    assert world.book.take_changes() == {}  # taken once

    world.provider_does(world.book.approve(rid, operator="z", now_ms=FRIDAY_3PM), FRIDAY_3PM)
    changes = world.book.take_changes()
    assert list(changes) == [f"entry/{rid.hex()}"]

    # One record to 120 grants: one counter and one window item, no row per subscriber.
    deliveries = world.book.publish(OPEN.code, RECORD, FRIDAY_3PM + 1)
    assert len(deliveries) == 120
    changes = world.book.take_changes()
    code = OPEN.code.encode().hex()
    assert sorted(changes) == [f"stream/last/{code}", f"stream/window/{code}/{1:016x}"]
    assert sum(len(k) + len(v or b"") for k, v in changes.items()) < 400


def test_rows_restore_the_same_book_as_its_whole_encoding() -> None:
    world = World()
    rid = world.subscribe()
    many_subscribers(world, 3)
    world.provider_does(world.book.approve(rid, operator="z", now_ms=FRIDAY_3PM), FRIDAY_3PM)
    world.book.publish(OPEN.code, RECORD, FRIDAY_3PM + 1)
    world.book.publish("101001/000001", RECORD, FRIDAY_3PM + 2)
    rows = world.book.rows()
    book = loaded_book(rows)
    # The same rows; the whole encoding may list resources in another order (rows have none).
    assert book.rows() == rows
    assert book.requests() == world.book.requests()
    assert book.take_changes() == {}  # loading changes nothing
    world.book.take_changes()
    assert book.publish(OPEN.code, RECORD, FRIDAY_3PM + 3) == world.book.publish(
        OPEN.code, RECORD, FRIDAY_3PM + 3
    )
    # The restored book writes the same rows for the same step as the original.
    assert book.take_changes() == world.book.take_changes()


def test_window_items_are_sealed_rows_and_leave_with_a_deletion() -> None:
    world = World()
    world.book = new_book(window=2)
    world.subscribe(OPEN)
    world.book.take_changes()
    for n in range(3):
        world.book.publish(OPEN.code, {**RECORD, "name": f"marker-{n}"}, FRIDAY_3PM + n)
    changes = world.book.take_changes()
    code = OPEN.code.encode().hex()
    assert changes[f"stream/window/{code}/{1:016x}"] is None  # fell out of the window
    assert changes[f"stream/window/{code}/{3:016x}"] is not None
    assert not any(b"marker-" in (v or b"") for v in changes.values())
    rows = world.book.rows()
    assert len([k for k in rows if "/window/" in k]) == 2
    # Under another secret the kept records cannot be opened: dropped, and deleted.
    other = SubscriptionBook(
        PROVIDER, CATALOG.get, sink=ListSink(), masking_secret=b"x" * 32, window=2
    )
    other.load_rows(rows.items())
    deleted = other.take_changes()
    assert sorted(deleted) == sorted(k for k in rows if "/window/" in k)
    assert set(deleted.values()) == {None}


def test_a_record_stream_restores_its_rows_in_any_order() -> None:
    cipher = AtRestCipher(SECRET)
    stream = RecordStream(cipher=cipher)
    for code in ("a/1", "a/10", "b"):
        for n in range(3):
            stream.keep(code, stream.assign(code), {"n": n}, n)
    rows = stream.rows()
    loaded = RecordStream(cipher=cipher)
    loaded.load_rows(reversed(sorted(rows.items())), "stream")
    assert loaded.rows() == rows
    assert loaded.take_changes() == {}
    assert [k.seq for k in loaded.recent("a/1", 1, 3)] == [1, 2, 3]
    assert loaded.last("a/10") == 3


def test_the_view_desk_and_correction_machines_change_one_row_per_step() -> None:
    world = World()
    rid = world.subscribe()
    assert list(world.view.take_changes()) == [f"held/{rid.hex()}"]
    view = SubscriberView(REQUESTER, sink=ListSink(), random=bytes)
    view.load_rows(world.view.rows().items())
    assert view.encode() == world.view.encode()

    desk = AuthorityDesk(AUTHORITY, sink=ListSink())
    desk.load_rows(world.desk.rows().items())
    assert desk.encode() == world.desk.encode()

    counter = iter(range(1, 100))
    tracker = CorrectionTracker(
        REQUESTER, sink=ListSink(), random=lambda n: bytes([next(counter)]) * n
    )
    [report] = tracker.report(
        provider=PROVIDER,
        resource_code=OPEN.code,
        seq=1,
        items=["name"],
        text="t",
        operator="o",
        now_ms=1,
    )
    provider = CorrectionDesk(PROVIDER, sink=ListSink())
    provider.on_correction(report.message, sender=REQUESTER, now_ms=2)  # type: ignore[arg-type]
    correction_id = report.message.correction_id  # type: ignore[attr-defined]
    assert (
        list(tracker.take_changes())
        == list(provider.take_changes())
        == [f"case/{correction_id.hex()}"]
    )
    provider.answer(correction_id, operator="o", accepted=True, text="ok", now_ms=3)
    assert list(provider.take_changes()) == [f"case/{correction_id.hex()}"]
    restored = CorrectionDesk(PROVIDER, sink=ListSink())
    restored.load_rows(provider.rows().items())
    assert restored.encode() == provider.encode()
    # A case of another provider is refused by the row it came in.
    with pytest.raises(errors.MalformedError, match="another's"):
        CorrectionDesk("520100.other", sink=ListSink()).load_rows(provider.rows().items())


def test_a_damaged_row_is_refused_naming_it() -> None:
    world = World()
    rid = world.subscribe()
    rows = world.book.rows()
    key = f"entry/{rid.hex()}"
    fields = msgpack.unpackb(rows[key])
    fields[3] = "sleeping"
    with pytest.raises(errors.MalformedError) as caught:
        loaded_book({key: encode_row(*fields[1:])})
    assert caught.value.field == f"subscription-book[{key!r}].state"
    with pytest.raises(errors.MalformedError, match="disagree"):
        loaded_book({"entry/" + "00" * 16: rows[key]})
    with pytest.raises(errors.MalformedError, match="hex id"):
        loaded_book({"entry/zz": rows[key]})
    with pytest.raises(errors.MalformedError, match="row of format"):
        loaded_book({key: b"\x91\x01"})
    with pytest.raises(errors.UsageError, match="new book"):
        world.book.load_rows(rows.items())
