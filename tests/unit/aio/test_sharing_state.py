"""The sharing service's stored state as rows: keys, the outbox sealed, an older node's value."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from exchnode.aio._sharing_state import (
    LEGACY_KEY,
    ROW_PREFIX,
    Send,
    SharingState,
    StateContext,
)
from exchnode.core._events import ListSink
from exchnode.errors import MalformedError
from exchnode.sharing import AtRestCipher, RequestState, WorkCalendar

LEGACY = Path(__file__).parents[2] / "integration" / "test_sharing_rows_data"
PROVIDER = "522301.minzheng"
REQUESTER = "520102.gongan"
CODE = "101001/000001"


def context(name: str) -> StateContext:
    counter = itertools.count(1)
    return StateContext(
        terms=lambda code: None,
        sink=ListSink(),
        masking_secret=name.encode().ljust(32, b"k"),  # as the legacy files were written
        calendar=WorkCalendar(),
        answer_days=10,
        random=lambda n: next(counter).to_bytes(n, "big"),
    )


def cipher(name: str) -> AtRestCipher:
    return AtRestCipher(name.encode().ljust(32, b"k"))


def test_the_outbox_is_rows_sealed_at_rest_and_a_message_handed_over_leaves() -> None:
    ctx = context(REQUESTER)
    state = SharingState.fresh(REQUESTER, ctx)
    secret_payload = "核验标记-outbox-7f3a".encode()
    numbers = state.queue(
        [Send((PROVIDER,), "sub.request", secret_payload), Send((PROVIDER,), "sub.resend", b"x")],
        ctx.random,
    )
    assert numbers == [1, 2]
    changes = state.take_changes(cipher(REQUESTER))
    assert sorted(changes) == [f"{ROW_PREFIX}outbox/{n:016x}" for n in numbers]
    assert all(secret_payload not in (value or b"") for value in changes.values())
    assert state.take_changes(cipher(REQUESTER)) == {}

    state.handed_over(1)
    parked = state.park(2, "usage", "recipient unknown", 5)
    assert state.pending_deletions()
    changes = state.take_changes(cipher(REQUESTER))
    assert changes[f"{ROW_PREFIX}outbox/{1:016x}"] is None
    assert changes[f"{ROW_PREFIX}outbox/{2:016x}"] is None
    assert changes[f"{ROW_PREFIX}parked/{2:016x}"] is not None
    assert not state.pending_deletions()

    rows = sorted(state.rows(cipher(REQUESTER)).items())
    loaded = SharingState.load(REQUESTER, rows, context(REQUESTER))
    assert loaded.parked == {2: parked}
    assert loaded.outbox == {}
    assert loaded.queue([Send((PROVIDER,), "sub.request", b"y")], ctx.random) == [3]
    # Under another secret the sealed rows do not open: a clear error, not garbage.
    with pytest.raises(MalformedError, match="masking secret"):
        SharingState.load(REQUESTER, rows, context(PROVIDER))


def test_a_tracker_row_is_what_a_delivery_read_writes() -> None:
    state = SharingState.fresh(REQUESTER, context(REQUESTER))
    state.take_changes(cipher(REQUESTER))
    tracker = state.tracker(PROVIDER, CODE, after=0)
    tracker.observe(1)
    changes = state.take_changes(cipher(REQUESTER))
    key = f"{ROW_PREFIX}tracker/{PROVIDER}/{CODE.encode().hex()}"
    assert list(changes) == [key]
    loaded = SharingState.load(REQUESTER, [(key, changes[key] or b"")], context(REQUESTER))
    assert loaded.trackers[(PROVIDER, CODE)].high_water == 1


def test_an_older_node_s_whole_value_becomes_rows() -> None:
    """provider.state and requester.state were written by commit 8c13651 (see generate.py)."""
    for name in (PROVIDER, REQUESTER):
        data = (LEGACY / ("provider.state" if name == PROVIDER else "requester.state")).read_bytes()
        whole = SharingState.restore_whole(data, context(name))
        rows = whole.rows(cipher(name))
        assert all(key.startswith(ROW_PREFIX) for key in rows)
        assert LEGACY_KEY not in rows
        loaded = SharingState.load(name, sorted(rows.items()), context(name))
        assert loaded.rows(cipher(name)) == rows
        if name == PROVIDER:
            assert loaded.book is not None
            [request] = loaded.book.requests()
            assert loaded.book.state(request.request_id) is RequestState.GRANTED
            assert loaded.book.last_seq(CODE) == 3
            assert [q.send.kind for q in loaded.outbox.values()] == ["sub.records"]
            assert loaded.corrections_in is not None
            assert len(loaded.corrections_in.open()) == 1
        else:
            assert loaded.view is not None
            assert len(loaded.view.held(0)) == 1
            assert loaded.trackers[(PROVIDER, CODE)].high_water == 1


def test_a_row_of_no_part_of_the_state_is_refused() -> None:
    with pytest.raises(MalformedError, match="no row"):
        SharingState.load(REQUESTER, [(f"{ROW_PREFIX}elsewhere/1", b"")], context(REQUESTER))
    # A hub has no book: a department's row at a hub is refused, not ignored.
    with pytest.raises(MalformedError, match="no row"):
        SharingState.load("520100", [(f"{ROW_PREFIX}book/entry/00", b"")], context("520100"))
    with pytest.raises(MalformedError, match="message row"):
        SharingState.load(REQUESTER, [(f"{ROW_PREFIX}outbox/12", b"")], context(REQUESTER))
