"""Correction feedback (校核): the provider's desk and the subscriber's tracker (pure).

Theory of operation
-------------------
"Whoever provides it answers for it": a subscriber that finds an error in a
record sends ``sub.correction`` (resource code, record number, the data
items in doubt, a text) to the provider; the provider's operator answers
once, ``accepted`` or ``rejected`` with a text (``sub.correction-answer``).

    open ── answer(accepted) ──▶ ACCEPTED (final)
    open ── answer(rejected) ──▶ REJECTED (final)

Each step is one audit event (``events``) whose ``request_id`` is the
correction id; as for subscriptions, the event carries no text.  A repeated
report with the same id and body is a duplicate; with another body it is a
``request-conflict``.  Both machines persist as ``subscription_persistence``
describes.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exchnode.core import AuditEvent, EventSink, check_name, pack, require_canonical
from exchnode.errors import (
    InvalidTransitionError,
    MalformedError,
    NotAuthorisedError,
    RequestConflictError,
    UnknownRequestError,
    UsageError,
)
from exchnode.sharing._codecs import REQUEST_ID_LENGTH
from exchnode.sharing._correction_messages import Correction, CorrectionAnswer, CorrectionOutcome
from exchnode.sharing._messages import Outgoing
from exchnode.sharing._persistence import (
    STATE_FORMAT,
    Changes,
    changed_rows,
    check_array,
    check_enum,
    check_list,
    check_node,
    every_row,
    load_id_rows,
    open_state,
)

__all__ = ["CorrectionDesk", "CorrectionState", "CorrectionTracker"]


class CorrectionState(enum.Enum):
    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


_ANSWERED = {
    CorrectionOutcome.ACCEPTED: CorrectionState.ACCEPTED,
    CorrectionOutcome.REJECTED: CorrectionState.REJECTED,
}
_STATE = check_enum(CorrectionState)


@dataclass(slots=True)
class _Case:
    correction: Correction
    state: CorrectionState = CorrectionState.OPEN
    answer: CorrectionAnswer | None = None


def _emit(
    sink: EventSink, case: _Case, action: str, actor: str, counterpart: str, now: int
) -> None:
    sink.emit(
        AuditEvent(
            at_ms=now,
            actor=actor,
            action=action,
            resource_code=case.correction.resource_code,
            request_id=case.correction.correction_id,
            outcome=case.state.value,
            counterpart=counterpart,
        )
    )


def _case_to_wire(case: _Case) -> list[Any]:
    return [
        case.correction.to_wire(),
        case.state.value,
        None if case.answer is None else case.answer.to_wire(),
    ]


def _cases_to_wire(cases: Iterable[_Case]) -> list[Any]:
    return [_case_to_wire(case) for case in cases]


def _case_from_wire(item: list[Any], at: str) -> _Case:
    case = _Case(Correction.from_wire(item[0], f"{at}.correction"), _STATE(item[1], f"{at}.state"))
    if item[2] is not None:
        case.answer = CorrectionAnswer.from_wire(item[2], f"{at}.answer")
    answered = case.answer is not None and _ANSWERED[case.answer.outcome] is case.state
    if answered != (case.state is not CorrectionState.OPEN):
        raise MalformedError(at, "an answered correction has its answer, an open one none")
    return case


def _cases_from_wire(value: object, what: str) -> list[_Case]:
    items = check_list(value, what, lambda v, w: check_array(v, w, 3))
    return [_case_from_wire(item, f"{what}[{i}]") for i, item in enumerate(items)]


_ROW = "case/"


class _Rows(abc.ABC):
    """The cases of a correction machine as rows (``case/<correction id hex>``), and which of
    them its steps changed (subscription_persistence)."""

    _cases: dict[bytes, _Case]
    _dirty: set[bytes]
    _what: str

    @abc.abstractmethod
    def _owns(self, case: _Case) -> bool:
        """Whether ``case`` is this machine's (its provider's, or its subscriber's)."""

    def take_changes(self) -> Changes:
        return changed_rows(_ROW, self._cases, self._dirty, _case_to_wire)

    def rows(self) -> dict[str, bytes]:
        return every_row(_ROW, self._cases, _case_to_wire)

    def load_rows(self, rows: Iterable[tuple[str, bytes]]) -> None:
        """Fill a new, empty machine from its rows; no audit event is emitted."""
        if self._cases:
            raise UsageError("rows are loaded into a new machine only")
        load_id_rows(
            self._cases,
            rows,
            _ROW,
            self._what,
            3,
            _case_from_wire,
            lambda case: case.correction.correction_id if self._owns(case) else None,
            "row name and id disagree, or the case is another's",
        )


class CorrectionDesk(_Rows):
    """The provider's side: corrections reported against its records, and its answers."""

    _what = "correction-desk"

    def __init__(self, provider: str, *, sink: EventSink) -> None:
        self.provider = check_name(provider, "provider")
        self._sink = sink
        self._cases: dict[bytes, _Case] = {}
        self._dirty: set[bytes] = set()

    def _owns(self, case: _Case) -> bool:
        return case.correction.provider == self.provider

    def open(self) -> list[Correction]:
        return [c.correction for c in self._cases.values() if c.state is CorrectionState.OPEN]

    def answered(self) -> list[CorrectionAnswer]:
        return [c.answer for c in self._cases.values() if c.answer is not None]

    def state(self, correction_id: bytes) -> CorrectionState:
        case = self._cases.get(correction_id)
        if case is None:
            raise UsageError(f"no correction {correction_id.hex()} at {self.provider}")
        return case.state

    def on_correction(self, correction: Correction, *, sender: str, now_ms: int) -> list[Outgoing]:
        if sender != correction.subscriber:
            raise NotAuthorisedError(f"{sender} reported in the name of {correction.subscriber}")
        if correction.provider != self.provider:
            raise NotAuthorisedError(
                f"correction for {correction.provider} sent to {self.provider}"
            )
        held = self._cases.get(correction.correction_id)
        if held is not None:
            if held.correction == correction:
                return [] if held.answer is None else [Outgoing((sender,), held.answer)]
            raise RequestConflictError(f"correction id {correction.correction_id.hex()} reused")
        case = _Case(correction)
        self._cases[correction.correction_id] = case
        self._dirty.add(correction.correction_id)
        _emit(self._sink, case, Correction.KIND, sender, sender, now_ms)
        return []

    def answer(
        self, correction_id: bytes, *, operator: str, accepted: bool, text: str, now_ms: int
    ) -> list[Outgoing]:
        case = self._cases.get(correction_id)
        if case is None:
            raise UsageError(f"no correction {correction_id.hex()} at {self.provider}")
        if case.state is not CorrectionState.OPEN:
            raise InvalidTransitionError(
                f"correction {correction_id.hex()} is {case.state.value}: cannot answer"
            )
        outcome = CorrectionOutcome.ACCEPTED if accepted else CorrectionOutcome.REJECTED
        reported = case.correction
        answer = CorrectionAnswer(
            correction_id=correction_id,
            provider=self.provider,
            subscriber=reported.subscriber,
            resource_code=reported.resource_code,
            at_ms=now_ms,
            outcome=outcome,
            text=text,
        )
        case.state, case.answer = _ANSWERED[outcome], answer
        self._dirty.add(correction_id)
        _emit(self._sink, case, "answer", operator, reported.subscriber, now_ms)
        return [Outgoing((reported.subscriber,), answer)]

    def encode(self) -> bytes:
        return pack([STATE_FORMAT, self.provider, _cases_to_wire(self._cases.values())])

    @classmethod
    def restore(cls, data: bytes, *, sink: EventSink) -> CorrectionDesk:
        """The desk :meth:`encode` wrote; no audit event is emitted."""
        what = "correction-desk"
        value = open_state(data, what, 2)
        desk = cls(check_node(value[1], f"{what}.provider"), sink=sink)
        for case in _cases_from_wire(value[2], f"{what}.cases"):
            if case.correction.provider != desk.provider or case.correction.correction_id in (
                desk._cases
            ):
                raise MalformedError(f"{what}.cases", "another provider's, or an id repeated")
            desk._cases[case.correction.correction_id] = case
        require_canonical(value, data, what=what)
        return desk


class CorrectionTracker(_Rows):
    """The subscriber's side: the corrections it reported and the answers it received."""

    _what = "correction-tracker"

    def __init__(self, subscriber: str, *, sink: EventSink, random: Callable[[int], bytes]) -> None:
        self.subscriber = check_name(subscriber, "subscriber")
        self._sink = sink
        self._random = random
        self._cases: dict[bytes, _Case] = {}
        self._dirty: set[bytes] = set()

    def _owns(self, case: _Case) -> bool:
        return case.correction.subscriber == self.subscriber

    def state(self, correction_id: bytes) -> CorrectionState:
        case = self._cases.get(correction_id)
        if case is None:
            raise UsageError(f"{self.subscriber} reported no correction {correction_id.hex()}")
        return case.state

    def answer(self, correction_id: bytes) -> CorrectionAnswer | None:
        self.state(correction_id)
        return self._cases[correction_id].answer

    def open(self) -> list[Correction]:
        return [c.correction for c in self._cases.values() if c.state is CorrectionState.OPEN]

    def reported(self) -> list[Correction]:
        """Every correction this subscriber reported, answered or not, in reporting order."""
        return [c.correction for c in self._cases.values()]

    def report(
        self,
        *,
        provider: str,
        resource_code: str,
        seq: int,
        items: Iterable[str],
        text: str,
        operator: str,
        now_ms: int,
    ) -> list[Outgoing]:
        correction = Correction(
            correction_id=self._random(REQUEST_ID_LENGTH),
            subscriber=self.subscriber,
            provider=provider,
            resource_code=resource_code,
            seq=seq,
            items=tuple(sorted(set(items))),
            text=text,
            at_ms=now_ms,
        )
        if correction.correction_id in self._cases:
            raise UsageError("the random source repeated a correction id")
        case = _Case(correction)
        self._cases[correction.correction_id] = case
        self._dirty.add(correction.correction_id)
        _emit(self._sink, case, Correction.KIND, operator, provider, now_ms)
        return [Outgoing((provider,), correction)]

    def on_answer(self, answer: CorrectionAnswer, *, sender: str, now_ms: int) -> bool:
        case = self._cases.get(answer.correction_id)
        if case is None:
            raise UnknownRequestError(f"{self.subscriber} reported no correction")
        reported = case.correction
        if sender != reported.provider or answer.provider != reported.provider:
            raise NotAuthorisedError(f"{sender} is not the provider the correction went to")
        if answer.subscriber != self.subscriber or answer.resource_code != reported.resource_code:
            raise UnknownRequestError("the answer does not match the correction")
        if case.answer is not None:
            return False  # answered once; a repeat is a duplicate
        case.state, case.answer = _ANSWERED[answer.outcome], answer
        self._dirty.add(answer.correction_id)
        _emit(self._sink, case, CorrectionAnswer.KIND, sender, sender, now_ms)
        return True

    def encode(self) -> bytes:
        return pack([STATE_FORMAT, self.subscriber, _cases_to_wire(self._cases.values())])

    @classmethod
    def restore(
        cls, data: bytes, *, sink: EventSink, random: Callable[[int], bytes]
    ) -> CorrectionTracker:
        """The tracker :meth:`encode` wrote; no audit event is emitted."""
        what = "correction-tracker"
        value = open_state(data, what, 2)
        tracker = cls(check_node(value[1], f"{what}.subscriber"), sink=sink, random=random)
        for case in _cases_from_wire(value[2], f"{what}.cases"):
            if case.correction.subscriber != tracker.subscriber or (
                case.correction.correction_id in tracker._cases
            ):
                raise MalformedError(f"{what}.cases", "another subscriber's, or an id repeated")
            tracker._cases[case.correction.correction_id] = case
        require_canonical(value, data, what=what)
        return tracker
