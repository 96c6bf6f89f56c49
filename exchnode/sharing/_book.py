"""The provider's book: requests for its resources, their decisions and grants (pure).

See ``subscriptions`` for the theory of operation.  The book applies the
transition table of ``subscription_states`` to the requests it receives and
to its operator's steps, returns the messages to send (:class:`Outgoing`),
emits one audit event per state change, and projects and masks every record
it publishes for the grants live at that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from exchnode.core import AuditEvent, EventSink, check_name, pack, require_canonical
from exchnode.errors import (
    ExchnodeError,
    InvalidTransitionError,
    MalformedError,
    NotAuthorisedError,
    RequestConflictError,
    UnexpectedMessageError,
    UnknownItemError,
    UnknownRequestError,
    UnknownResourceError,
    UsageError,
)
from exchnode.sharing._codecs import MAX_TEXT, REQUEST_ID_LENGTH
from exchnode.sharing._masking import Hash, MaskSet, Projection, Record, Value, grant_hash_key
from exchnode.sharing._messages import (
    Decision,
    Escalation,
    Expiry,
    Grant,
    Outgoing,
    Review,
    Revocation,
    SubscriptionRequest,
)
from exchnode.sharing._persistence import (
    STATE_FORMAT,
    Changes,
    changed_rows,
    check_array,
    check_counter,
    check_enum,
    check_items,
    check_masks,
    check_node,
    check_terms,
    check_time_ms,
    every_row,
    load_id_list,
    load_id_rows,
    open_state,
    optional,
    terms_to_wire,
)
from exchnode.sharing._record_messages import RecordBatch, RecordGap, Resend
from exchnode.sharing._record_streams import (
    DEFAULT_WINDOW,
    DEFAULT_WINDOW_BYTES,
    AtRestCipher,
    RecordDelivery,
    RecordStream,
    check_record,
    group_deliveries,
)
from exchnode.sharing._states import (
    ARRIVAL,
    Action,
    RequestState,
    ResourceTerms,
    ReviewOutcome,
    sharing_authority,
)
from exchnode.sharing._states import next_state as _next_state
from exchnode.sharing._workdays import DEFAULT_ANSWER_DAYS, WorkCalendar, check_answer_days

__all__ = ["SubscriptionBook", "check_reason", "grant_from_wire", "grant_to_wire", "unknown_items"]

_S = RequestState


@dataclass(slots=True)
class _Entry:
    request: SubscriptionRequest
    terms: ResourceTerms
    state: RequestState
    version: int = 0
    deadline_ms: int | None = None
    grant: Grant | None = None
    round: int = 0


def unknown_items(wanted: Iterable[str], allowed: frozenset[str]) -> list[str]:
    return sorted(set(wanted) - allowed)


def check_reason(reason: str, what: str) -> None:
    # Checked before the state changes, so a bad reason leaves nothing half done.
    if type(reason) is not str or not 0 < len(reason) <= MAX_TEXT:
        raise UsageError(f"{what} states its reason in 1..{MAX_TEXT} characters")


class SubscriptionBook:
    """The provider's table of requests and grants for its resources.

    ``resources`` looks a resource code up in the provider's catalog (None if
    unknown).  Operations return the messages to send; every state change is
    emitted to ``sink``.
    """

    def __init__(
        self,
        provider: str,
        resources: Callable[[str], ResourceTerms | None],
        *,
        sink: EventSink,
        masking_secret: bytes,
        calendar: WorkCalendar | None = None,
        answer_days: int = DEFAULT_ANSWER_DAYS,
        window: int = DEFAULT_WINDOW,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
    ) -> None:
        self.provider = check_name(provider, "provider")
        self.authority = sharing_authority(provider)
        self.calendar = calendar or WorkCalendar()
        self.answer_days = check_answer_days(answer_days)  # fail now on a bad answer_days
        self._resources = resources
        self._sink = sink
        self._secret = masking_secret
        grant_hash_key(masking_secret, bytes(REQUEST_ID_LENGTH))  # fail now on a short secret
        self._entries: dict[bytes, _Entry] = {}
        self._dirty: set[bytes] = set()  # entries changed since take_changes
        self._cipher = AtRestCipher(masking_secret)
        self._stream = RecordStream(window=window, window_bytes=window_bytes, cipher=self._cipher)

    # -- queries

    def state(self, request_id: bytes) -> RequestState:
        return self._local(request_id).state

    def deadline(self, request_id: bytes) -> int | None:
        return self._local(request_id).deadline_ms

    def grant(self, request_id: bytes) -> Grant | None:
        return self._local(request_id).grant

    def requests(self) -> list[SubscriptionRequest]:
        """Every request received, in order of arrival."""
        return [entry.request for entry in self._entries.values()]

    def knows(self, request_id: bytes) -> bool:
        return request_id in self._entries

    def live_grants(self, resource_code: str, now_ms: int) -> list[Grant]:
        return [
            entry.grant
            for entry in self._entries.values()
            if entry.state is _S.GRANTED
            and entry.grant is not None
            and entry.grant.resource_code == resource_code
            and entry.grant.live(now_ms)
        ]

    def next_timer(self) -> int | None:
        """When ``expire_due`` next has something to do (ms), or None."""
        due = [when for _, when in self._timers()]
        return min(due, default=None)

    # -- incoming

    def on_request(
        self, request: SubscriptionRequest, *, sender: str, now_ms: int
    ) -> list[Outgoing]:
        if sender != request.requester:
            raise NotAuthorisedError(f"{sender} sent a request in the name of {request.requester}")
        if request.provider != self.provider:
            raise NotAuthorisedError(
                f"request for provider {request.provider} sent to {self.provider}"
            )
        held = self._entries.get(request.request_id)
        if held is not None:
            if held.request == request:
                return []  # the same request again: already answered
            raise RequestConflictError(f"request id {request.request_id.hex()} reused")
        terms = self._terms(request.resource_code)
        unknown = unknown_items(request.items, terms.items)
        if unknown:
            raise UnknownItemError(unknown[0], f"is not an item of resource {terms.code}")
        entry = _Entry(request, terms, ARRIVAL[terms.share_type])
        if entry.state is _S.PENDING:
            # First: a deadline the calendar cannot count (CalendarCoverageError) leaves no entry.
            entry.deadline_ms = self.calendar.deadline(now_ms, self.answer_days)
        self._entries[request.request_id] = entry
        if entry.state is _S.GRANTED:
            entry.grant = self._new_grant(entry, request.items, MaskSet(), None, now_ms)
            message = self._decision(entry, now_ms)
        elif entry.state is _S.PENDING:
            message = self._decision(entry, now_ms)
        else:
            message = self._decision(entry, now_ms, reason=terms.conditions or "not shared")
        self._emit(entry, Action.REQUEST, request.requester, now_ms)
        return [Outgoing((request.requester,), message)]

    def on_escalation(self, escalation: Escalation, *, sender: str, now_ms: int) -> list[Outgoing]:
        entry = self._remote(escalation.request_id)
        request = entry.request
        if sender != request.requester or escalation.requester != request.requester:
            raise NotAuthorisedError(
                f"{sender} may not escalate request {request.request_id.hex()}"
            )
        if escalation.authority != self.authority or escalation.provider != self.provider:
            raise NotAuthorisedError(
                f"escalation not addressed to {self.authority} about {self.provider}"
            )
        if escalation.round <= entry.round:
            return []  # an earlier round again
        if escalation.round != entry.round + 1:
            raise UnexpectedMessageError(f"escalation round {escalation.round} skips a round")
        # The requester may count the deadline out before this node's expire_due has run.
        state = _S.EXPIRED if self._past_deadline(entry, now_ms) else entry.state
        if escalation.grounds is not state:
            raise UnexpectedMessageError(
                f"escalation of a {escalation.grounds.value} request that is {state.value}"
            )
        _next_state(state, Action.ESCALATE, request.request_id, UnexpectedMessageError)
        out = self._expire_if_due(entry, now_ms)
        self._move(entry, Action.ESCALATE, request.requester, now_ms, UnexpectedMessageError)
        entry.round = escalation.round
        return out

    def on_review(self, review: Review, *, sender: str, now_ms: int) -> list[Outgoing]:
        entry = self._remote(review.request_id)
        if sender != self.authority or review.authority != self.authority:
            raise NotAuthorisedError(f"{sender} is not the sharing authority {self.authority}")
        if review.round > entry.round:
            raise UnexpectedMessageError(
                f"review of round {review.round} before its escalation (round {entry.round})"
            )
        if review.round < entry.round or entry.state is not _S.ESCALATED:
            return []  # this round's review again, already applied
        if review.outcome is ReviewOutcome.UPHOLD:
            self._move(entry, Action.UPHOLD, sender, now_ms, UnexpectedMessageError)
            return []
        deadline_ms = self.calendar.deadline(now_ms, self.answer_days)  # before any change
        self._move(entry, Action.RE_REVIEW, sender, now_ms, UnexpectedMessageError)
        entry.deadline_ms = deadline_ms
        return [Outgoing((entry.request.requester,), self._decision(entry, now_ms))]

    # -- the operator's decisions

    def approve(
        self,
        request_id: bytes,
        *,
        operator: str,
        now_ms: int,
        items: Iterable[str] | None = None,
        masks: MaskSet | None = None,
        expires_ms: int | None = None,
    ) -> list[Outgoing]:
        """Grant all requested items, or a subset; the catalog's conditions are the ceiling."""
        entry = self._local(request_id)
        self._before_deadline(entry, now_ms)
        granted = entry.request.items if items is None else tuple(sorted(set(items)))
        beyond = unknown_items(granted, frozenset(entry.request.items))
        if not granted or beyond:
            raise UsageError(f"granted items must be requested items; not requested: {beyond}")
        if expires_ms is not None and expires_ms <= now_ms:
            raise UsageError("a grant's expiry must be after the time of granting")
        _next_state(entry.state, Action.GRANT, request_id, InvalidTransitionError)
        entry.grant = self._new_grant(entry, granted, masks or MaskSet(), expires_ms, now_ms)
        self._move(entry, Action.GRANT, operator, now_ms)
        return [Outgoing((entry.request.requester,), self._decision(entry, now_ms))]

    def refuse(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        entry = self._local(request_id)
        check_reason(reason, "a refusal")
        self._before_deadline(entry, now_ms)
        self._move(entry, Action.REFUSE, operator, now_ms)
        return [Outgoing((entry.request.requester,), self._decision(entry, now_ms, reason=reason))]

    def revoke(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        """End a grant now: the next record published is no longer sent under it."""
        entry = self._local(request_id)
        if entry.grant is not None and not entry.grant.live(now_ms) and entry.state is _S.GRANTED:
            raise InvalidTransitionError(f"grant {request_id.hex()} has lapsed; run expire_due")
        check_reason(reason, "a revocation")
        self._move(entry, Action.REVOKE, operator, now_ms)
        entry.version += 1
        message = Revocation(
            request_id=request_id,
            provider=self.provider,
            subscriber=entry.request.requester,
            resource_code=entry.terms.code,
            version=entry.version,
            at_ms=now_ms,
            reason=reason,
            last_seq=self._stream.last(entry.terms.code),
        )
        return [Outgoing((entry.request.requester,), message)]

    def expire_due(self, now_ms: int) -> list[Outgoing]:
        """Expire unanswered requests and lapse grants whose time is up."""
        out: list[Outgoing] = []
        for request_id, when in sorted(self._timers(), key=lambda pair: (pair[1], pair[0])):
            if when <= now_ms:
                entry = self._entries[request_id]
                if entry.state is _S.PENDING:
                    out += self._expire_if_due(entry, now_ms)
                else:
                    self._move(entry, Action.LAPSE, self.provider, now_ms)
        return out

    # -- records

    def last_seq(self, resource_code: str) -> int:
        """The number of the last record published of ``resource_code`` (0: none yet)."""
        return self._stream.last(resource_code)

    def publish(self, resource_code: str, record: Record, now_ms: int) -> list[RecordDelivery]:
        """Number one record and project it for every grant live at ``now_ms``."""
        return self.publish_many(resource_code, [record], now_ms)

    def publish_many(
        self, resource_code: str, records: Sequence[Record], now_ms: int
    ) -> list[RecordDelivery]:
        """Number records and project each for every grant live at ``now_ms``; all or nothing.

        Every record is checked and projected under every grant before the
        first is numbered, so a record that cannot be sent (a value of no wire
        type, a mask that does not apply to it) leaves no number behind.  Each
        distinct projection (a grant's own where it has a derived hash key) is
        made and applied once per call, so S grants with the same terms cost
        one projection per record.
        Each record is kept in the resend window (``record_streams``) with the
        items some live grant allows, and nothing when no grant is live: a grant
        is asked to resend only numbers from its ``first_seq`` on, so no later
        grant needs more.  :func:`~exchnode.sharing.group_deliveries` makes the
        wire bodies.
        """
        checked = [check_record(record, f"records[{i}]") for i, record in enumerate(records)]
        live = self.live_grants(resource_code, now_ms)
        # Grants with the same terms and no ``hash`` mask project a record alike: one
        # projection, applied once, per distinct terms (a hash mask has its grant's own key).
        distinct: dict[object, tuple[Projection, list[dict[str, Value]]]] = {}
        by_grant: list[tuple[Grant, list[dict[str, Value]]]] = []
        for grant in live:
            hashed = any(isinstance(rule, Hash) for _, rule in grant.masks.rules)
            same: object = grant.request_id if hashed else (grant.items, grant.masks.rules)
            found = distinct.get(same)
            if found is None:
                projection = self._projection(grant)
                found = distinct[same] = (projection, [projection.apply(f) for f in checked])
            by_grant.append((grant, found[1]))
        fingerprints: dict[tuple[Any, ...], bytes] = {}  # the terms of S grants, hashed once each
        needed = frozenset(item for grant in live for item in grant.items)
        projected = [
            [(grant, outs[index]) for grant, outs in by_grant] for index in range(len(checked))
        ]
        deliveries = []
        for fields, per_grant in zip(checked, projected, strict=True):
            seq = self._stream.assign(resource_code)
            kept = {item: value for item, value in fields.items() if item in needed}
            if kept:
                self._stream.keep_checked(resource_code, seq, kept, now_ms)
            deliveries += [
                self._delivery(grant, seq, out, fingerprints) for grant, out in per_grant
            ]
        return deliveries

    def on_resend(self, resend: Resend, *, sender: str, now_ms: int) -> list[Outgoing]:
        """Answer a subscriber's ``sub.resend`` from the window; ``sub.gap`` for the rest.

        Only a live grant is served, and only numbers it covers (from its
        ``first_seq`` to the last published); a number no longer in the window,
        or whose record can no longer be masked, is reported as a gap.
        """
        entry = self._remote(resend.request_id)
        request, grant = entry.request, entry.grant
        if sender != request.requester or resend.subscriber != request.requester:
            raise NotAuthorisedError(f"{sender} may not ask for request {request.request_id.hex()}")
        if resend.provider != self.provider or resend.resource_code != entry.terms.code:
            raise UnexpectedMessageError(
                f"sub.resend does not match request {request.request_id.hex()}"
            )
        if entry.state is not _S.GRANTED or grant is None or not grant.live(now_ms):
            raise UnexpectedMessageError(
                f"request {request.request_id.hex()} holds no live grant to resend under"
            )
        code = entry.terms.code
        first = max(resend.from_seq, grant.first_seq)
        last = min(resend.to_seq, self._stream.last(code))
        kept = {k.seq: k.record for k in self._stream.recent(code, first, last)}
        projection = self._projection(grant)
        found: list[RecordDelivery] = []
        gaps: list[list[int]] = []
        for seq in range(first, last + 1):
            try:
                fields = projection.apply(kept[seq]) if seq in kept else None
            except UsageError:
                fields = None
            if fields is not None:
                found.append(self._delivery(grant, seq, fields))
            elif gaps and gaps[-1][1] == seq - 1:
                gaps[-1][1] = seq
            else:
                gaps.append([seq, seq])
        out = [
            Outgoing((request.requester,), RecordBatch.decode(group.payload))
            for group in group_deliveries(found)
        ]
        out += [
            Outgoing(
                (request.requester,),
                RecordGap(
                    request_id=request.request_id,
                    provider=self.provider,
                    subscriber=request.requester,
                    resource_code=code,
                    from_seq=low,
                    to_seq=high,
                ),
            )
            for low, high in gaps
        ]
        return out

    # -- persistence (subscription_persistence)

    def encode(self) -> bytes:
        """Everything needed to continue after a restart, except the masking secret."""
        entries = [_entry_to_wire(entry) for entry in self._entries.values()]
        return pack([STATE_FORMAT, self.provider, self._stream.to_wire(), entries])

    def take_changes(self) -> Changes:
        """The rows the steps since the last call changed: ``entry/<request id hex>`` per request
        (its grant included) and ``stream/...`` (``RecordStream.take_changes``).  Publishing
        changes no entry, so it writes the stream's rows only, whatever the number of grants."""
        changes = changed_rows(_ENTRY, self._entries, self._dirty, _entry_to_wire)
        changes.update({_STREAM + k: v for k, v in self._stream.take_changes().items()})
        return changes

    def rows(self) -> dict[str, bytes]:
        """Every row of the book (to convert a whole encoding into rows, once)."""
        rows = every_row(_ENTRY, self._entries, _entry_to_wire)
        rows.update({_STREAM + k: v for k, v in self._stream.rows().items()})
        return rows

    def load_rows(self, rows: Iterable[tuple[str, bytes]]) -> None:
        """Fill a new, empty book from its rows; no audit event is emitted."""
        what = "subscription-book"
        if self._entries:
            raise UsageError("rows are loaded into a new book only")
        stream: list[tuple[str, bytes]] = []
        entries: list[tuple[str, bytes]] = []
        for name, data in rows:
            if name.startswith(_STREAM):
                stream.append((name[len(_STREAM) :], data))
            else:
                entries.append((name, data))
        load_id_rows(self._entries, entries, _ENTRY, what, 7, self._entry_from_wire, _entry_id)
        self._stream.load_rows(stream, f"{what}.stream")

    @classmethod
    def restore(
        cls,
        data: bytes,
        resources: Callable[[str], ResourceTerms | None],
        *,
        sink: EventSink,
        masking_secret: bytes,
        calendar: WorkCalendar | None = None,
        answer_days: int = DEFAULT_ANSWER_DAYS,
        window: int = DEFAULT_WINDOW,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
    ) -> Self:
        """The book :meth:`encode` wrote; configuration and the secret as at construction.

        No audit event is emitted: the steps that built this state emitted theirs.
        """
        what = "subscription-book"
        value = open_state(data, what, 3)
        provider = check_node(value[1], f"{what}.provider")
        book = cls(
            provider,
            resources,
            sink=sink,
            masking_secret=masking_secret,
            calendar=calendar,
            answer_days=answer_days,
            window=window,
            window_bytes=window_bytes,
        )
        stream = check_array(value[2], f"{what}.stream", 2)
        book._stream = RecordStream.from_wire(
            stream,
            f"{what}.stream",
            window=window,
            window_bytes=window_bytes,
            cipher=book._cipher,
        )
        load_id_list(
            book._entries,
            value[3],
            f"{what}.entries",
            _entry_fields,
            book._entry_from_wire,
            _entry_id,
            "request id repeated",
        )
        require_canonical(value, data, what=what)
        return book

    def _entry_from_wire(self, item: list[Any], what: str) -> _Entry:
        request = SubscriptionRequest.from_wire(item[0], f"{what}.request")
        code, provider, share_type, conditions, items = check_terms(item[1], f"{what}.terms")
        terms = ResourceTerms(
            code=code, provider=provider, share_type=share_type, conditions=conditions, items=items
        )
        if (
            request.provider != self.provider
            or provider != self.provider
            or (request.resource_code != code)
        ):
            raise MalformedError(what, "request and terms do not belong to this provider's entry")
        entry = _Entry(request, terms, _STATE(item[2], f"{what}.state"))
        entry.version = check_counter(item[3], f"{what}.version")
        entry.deadline_ms = optional(check_time_ms)(item[4], f"{what}.deadline_ms")
        if item[5] is not None:
            entry.grant = grant_from_wire(item[5], f"{what}.grant", request, self.provider)
        entry.round = check_counter(item[6], f"{what}.round")
        return entry

    def _delivery(
        self,
        grant: Grant,
        seq: int,
        fields: dict[str, Value],
        fingerprints: dict[tuple[Any, ...], bytes] | None = None,
    ) -> RecordDelivery:
        if fingerprints is None:
            terms = grant.fingerprint
        else:
            same = (grant.items, grant.masks.rules)
            terms = fingerprints.get(same) or fingerprints.setdefault(same, grant.fingerprint)
        return RecordDelivery(
            subscriber=grant.subscriber,
            request_id=grant.request_id,
            resource_code=grant.resource_code,
            seq=seq,
            fields=fields,
            provider=self.provider,
            terms=terms,
        )

    # -- internals

    def _terms(self, resource_code: str) -> ResourceTerms:
        terms = self._resources(resource_code)
        if terms is None:
            raise UnknownResourceError(f"{self.provider} lists no resource {resource_code!r}")
        if terms.provider != self.provider or terms.code != resource_code:
            raise UsageError(f"the catalog lookup for {resource_code!r} returned another entry")
        return terms

    def _local(self, request_id: bytes) -> _Entry:
        entry = self._entries.get(request_id)
        if entry is None:
            raise UsageError(f"no request {request_id.hex()} at {self.provider}")
        return entry

    def _remote(self, request_id: bytes) -> _Entry:
        entry = self._entries.get(request_id)
        if entry is None:
            raise UnknownRequestError(f"no request {request_id.hex()} at {self.provider}")
        return entry

    def _timers(self) -> Iterable[tuple[bytes, int]]:
        for request_id, entry in self._entries.items():
            if entry.state is _S.PENDING and entry.deadline_ms is not None:
                yield request_id, entry.deadline_ms
            elif entry.state is _S.GRANTED and entry.grant and entry.grant.expires_ms is not None:
                yield request_id, entry.grant.expires_ms

    @staticmethod
    def _past_deadline(entry: _Entry, now_ms: int) -> bool:
        deadline = entry.deadline_ms
        return entry.state is _S.PENDING and deadline is not None and now_ms >= deadline

    def _before_deadline(self, entry: _Entry, now_ms: int) -> None:
        # The rules set a time limit: an answer at or after it is too late,
        # even if expire_due has not run yet.
        if self._past_deadline(entry, now_ms):
            raise InvalidTransitionError(
                f"request {entry.request.request_id.hex()} passed its deadline; run expire_due"
            )

    def _expire_if_due(self, entry: _Entry, now_ms: int) -> list[Outgoing]:
        deadline = entry.deadline_ms
        if deadline is None or not self._past_deadline(entry, now_ms):
            return []
        self._move(entry, Action.EXPIRE, self.provider, now_ms)
        entry.version += 1
        message = Expiry(
            request_id=entry.request.request_id,
            provider=self.provider,
            requester=entry.request.requester,
            resource_code=entry.terms.code,
            version=entry.version,
            at_ms=now_ms,
            deadline_ms=deadline,
        )
        return [Outgoing((entry.request.requester,), message)]

    def _new_grant(
        self,
        entry: _Entry,
        items: tuple[str, ...],
        masks: MaskSet,
        expires_ms: int | None,
        now_ms: int,
    ) -> Grant:
        grant = Grant(
            request_id=entry.request.request_id,
            resource_code=entry.terms.code,
            provider=self.provider,
            subscriber=entry.request.requester,
            version=entry.version + 1,
            items=items,
            masks=masks,
            granted_ms=now_ms,
            expires_ms=expires_ms,
            first_seq=self._stream.last(entry.terms.code) + 1,
        )
        self._projection(grant)  # masks must fit the granted items before anything is sent
        return grant

    def _projection(self, grant: Grant) -> Projection:
        # The per-grant key is derived only where a ``hash`` mask uses it: publishing to S
        # grants without one derives none.
        hashed = any(isinstance(rule, Hash) for _, rule in grant.masks.rules)
        key = grant_hash_key(self._secret, grant.request_id) if hashed else None
        return Projection(frozenset(grant.items), grant.masks, key)

    def _decision(self, entry: _Entry, now_ms: int, *, reason: str = "") -> Decision:
        entry.version += 1
        request = entry.request
        grant = entry.grant if entry.state is _S.GRANTED else None
        return Decision(
            request_id=request.request_id,
            provider=self.provider,
            requester=request.requester,
            resource_code=entry.terms.code,
            version=entry.version,
            at_ms=now_ms,
            status=entry.state,
            answer_by_ms=entry.deadline_ms if entry.state is _S.PENDING else None,
            reason=reason[:MAX_TEXT],
            items=grant.items if grant else (),
            masks=grant.masks if grant else MaskSet(),
            expires_ms=grant.expires_ms if grant else None,
            first_seq=grant.first_seq if grant else 0,
        )

    def _move(
        self,
        entry: _Entry,
        action: Action,
        actor: str,
        now_ms: int,
        error: type[ExchnodeError] = InvalidTransitionError,
    ) -> None:
        entry.state = _next_state(entry.state, action, entry.request.request_id, error)
        self._emit(entry, action, actor, now_ms)

    def _emit(self, entry: _Entry, action: Action, actor: str, now_ms: int) -> None:
        # Every change of an entry is one event: the row to write is marked here.
        self._dirty.add(entry.request.request_id)
        self._sink.emit(
            AuditEvent(
                at_ms=now_ms,
                actor=actor,
                action=action.value,
                resource_code=entry.terms.code,
                request_id=entry.request.request_id,
                outcome=entry.state.value,
                counterpart=entry.request.requester,
            )
        )


_STATE = check_enum(RequestState)
_ENTRY = "entry/"
_STREAM = "stream/"


def _entry_to_wire(entry: _Entry) -> list[Any]:
    return [
        entry.request.to_wire(),
        terms_to_wire(entry.terms),
        entry.state.value,
        entry.version,
        entry.deadline_ms,
        None if entry.grant is None else grant_to_wire(entry.grant),
        entry.round,
    ]


def _entry_fields(value: object, what: str) -> list[Any]:
    return check_array(value, what, 7)


def _entry_id(entry: _Entry) -> bytes:
    return entry.request.request_id


def grant_to_wire(grant: Grant) -> list[Any]:
    return [
        grant.version,
        list(grant.items),
        grant.masks.to_wire(),
        grant.granted_ms,
        grant.expires_ms,
        grant.first_seq,
    ]


def grant_from_wire(value: object, what: str, request: SubscriptionRequest, provider: str) -> Grant:
    """A grant as :func:`grant_to_wire` wrote it; its parties come from the request."""
    version, items, masks, granted_ms, expires_ms, first_seq = check_array(value, what, 6)
    try:
        return Grant(
            request_id=request.request_id,
            resource_code=request.resource_code,
            provider=provider,
            subscriber=request.requester,
            version=check_counter(version, f"{what}.version"),
            items=check_items(items, f"{what}.items"),
            masks=check_masks(masks, f"{what}.masks"),
            granted_ms=check_time_ms(granted_ms, f"{what}.granted_ms"),
            expires_ms=optional(check_time_ms)(expires_ms, f"{what}.expires_ms"),
            first_seq=check_counter(first_seq, f"{what}.first_seq"),
        )
    except UsageError as exc:
        raise MalformedError(what, str(exc)) from None
