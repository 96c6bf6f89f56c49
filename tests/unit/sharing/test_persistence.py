"""Persisted subscription state: format, field-naming errors, no secret, no events (draft §19.9)."""

from __future__ import annotations

import msgpack
import pytest

from exchnode import errors
from exchnode.core import pack
from exchnode.core._events import ListSink
from exchnode.sharing import AuthorityDesk, SubscriberView, SubscriptionBook
from tests.unit.sharing.test_subscriptions import CALENDAR, CATALOG, FRIDAY_3PM, RECORD, World

SECRET = b"m" * 32


def restore_book(data: bytes, sink: ListSink | None = None) -> SubscriptionBook:
    return SubscriptionBook.restore(
        data,
        CATALOG.get,
        sink=sink or ListSink(),
        masking_secret=SECRET,
        calendar=CALENDAR,
        answer_days=5,
    )


def test_a_restored_book_continues_where_it_stopped_without_the_secret() -> None:
    world = World()
    rid = world.subscribe()
    world.provider_does(world.book.approve(rid, operator="z", now_ms=FRIDAY_3PM), FRIDAY_3PM)
    world.book.publish("101001/000001", RECORD, FRIDAY_3PM + 1)
    data = world.book.encode()
    assert SECRET not in data
    events = ListSink()
    book = restore_book(data, events)
    assert book.encode() == data
    assert events.events == []
    assert book.grant(rid) == world.book.grant(rid)
    assert book.publish("101001/000001", RECORD, FRIDAY_3PM + 2) == world.book.publish(
        "101001/000001", RECORD, FRIDAY_3PM + 2
    )
    view = SubscriberView.restore(world.view.encode(), sink=ListSink(), random=bytes)
    assert view.encode() == world.view.encode()
    assert view.held(FRIDAY_3PM) == world.view.held(FRIDAY_3PM)
    desk = AuthorityDesk.restore(world.desk.encode(), sink=ListSink())
    assert desk.encode() == world.desk.encode()


def test_damaged_state_is_refused_naming_the_field() -> None:
    world = World()
    world.subscribe()
    fields = msgpack.unpackb(world.book.encode())
    fields[3][0][2] = "sleeping"
    with pytest.raises(errors.MalformedError) as caught:
        restore_book(pack(fields))
    assert caught.value.field == "subscription-book.entries[0].state"
    fields = msgpack.unpackb(world.view.encode())
    fields[2][0][0][1] = b"short"
    with pytest.raises(errors.MalformedError) as caught:
        SubscriberView.restore(pack(fields), sink=ListSink(), random=bytes)
    assert caught.value.field == "subscriber-view.held[0].request.request_id"
    with pytest.raises(errors.UnsupportedVersionError):
        AuthorityDesk.restore(pack([2, "520100", []]), sink=ListSink())
    data = world.book.encode()
    with pytest.raises(errors.MalformedError, match="canonical"):
        restore_book(b"\xdc\x00\x04" + data[1:])
