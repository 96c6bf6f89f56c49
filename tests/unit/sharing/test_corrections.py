"""Correction feedback (校核): report, answer once, audit, persistence (draft §19.8)."""

from __future__ import annotations

import itertools

import pytest

from exchnode import errors
from exchnode.core._events import ListSink
from exchnode.sharing import (
    Correction,
    CorrectionAnswer,
    CorrectionDesk,
    CorrectionState,
    CorrectionTracker,
    decode_message,
)
from tests.unit.sharing.test_subscriptions import OPEN, PROVIDER, REQUESTER


def test_a_correction_is_reported_answered_once_and_persisted() -> None:
    counter = itertools.count(1)
    tracker_events, desk_events = ListSink(), ListSink()
    tracker = CorrectionTracker(
        REQUESTER, sink=tracker_events, random=lambda n: next(counter).to_bytes(n, "big")
    )
    desk = CorrectionDesk(PROVIDER, sink=desk_events)
    [out] = tracker.report(
        provider=PROVIDER,
        resource_code=OPEN.code,
        seq=7,
        items=["name", "address"],
        text="the address moved in 2025",
        operator="li",
        now_ms=10,
    )
    report = decode_message(out.kind, out.payload())
    assert isinstance(report, Correction)
    assert report.items == ("address", "name")
    with pytest.raises(errors.NotAuthorisedError):
        desk.on_correction(report, sender="520102.minzheng", now_ms=11)
    assert desk.on_correction(report, sender=REQUESTER, now_ms=11) == []
    assert desk.open() == [report]
    restored = CorrectionDesk.restore(desk.encode(), sink=ListSink())
    assert restored.encode() == desk.encode()
    [reply] = restored.answer(
        report.correction_id, operator="zhang", accepted=True, text="fixed", now_ms=12
    )
    answer = decode_message(reply.kind, reply.payload())
    assert isinstance(answer, CorrectionAnswer)
    with pytest.raises(errors.InvalidTransitionError):
        restored.answer(report.correction_id, operator="z", accepted=False, text="x", now_ms=13)
    with pytest.raises(errors.NotAuthorisedError):
        tracker.on_answer(answer, sender="520100", now_ms=13)
    assert tracker.on_answer(answer, sender=PROVIDER, now_ms=13) is True
    assert tracker.on_answer(answer, sender=PROVIDER, now_ms=14) is False
    assert tracker.state(report.correction_id) is CorrectionState.ACCEPTED
    again = CorrectionTracker.restore(tracker.encode(), sink=ListSink(), random=bytes)
    assert again.encode() == tracker.encode()
    assert again.answer(report.correction_id) == answer
    # A repeated report after the answer gets the answer again; another body is a conflict.
    assert restored.on_correction(report, sender=REQUESTER, now_ms=15) == [reply]
    with pytest.raises(errors.RequestConflictError):
        restored.on_correction(
            Correction(**{**_fields(report), "text": "other"}), sender=REQUESTER, now_ms=15
        )
    assert [(e.action, e.outcome) for e in tracker_events.events] == [
        ("sub.correction", "open"),
        ("sub.correction-answer", "accepted"),
    ]
    assert [(e.action, e.outcome) for e in desk_events.events] == [("sub.correction", "open")]
    assert all("address" not in repr(e) for e in tracker_events.events)


def _fields(report: Correction) -> dict[str, object]:
    return {name: getattr(report, name) for name in Correction.CODECS}
