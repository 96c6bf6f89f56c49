"""Custody in: what neighbours hand over, admitted and committed in one transaction (I/O edge).

Items arrive from neighbours (``LinkServer`` calls :meth:`Intake.custody`)
and from the node itself (its outbox: the application's messages, receipts,
reports).  Each received item is verified as a hub verifies (signature,
freshness; never a payload), checked against the neighbour's place
(``Router.accept``) and routed.  All items that arrived while the previous
commit ran go to the store in *one* transaction (``Batcher``: group
commit), with the audit log's record of them.  Only when that transaction
has returned is an item answered TAKEN.  A full node answers DEFERRED and
grants no credit: back-pressure, nothing dropped.  A failure that time cures
(a signer not known yet, a directory being refreshed) is deferred too, with
its code: the previous hop keeps the item and tries again.  A signer this
node knows to be *revoked* is not such a failure: nothing cures it, so the
item is refused (``revoked``) and the previous hop ends its custody.

A forwarder with nothing else to send may take an arrival's items for its
neighbour before their commit returns, and send them meanwhile (cut-through,
``_cut_through``): the answer to the previous hop still waits for the commit.

The credit a transfer's answer grants is the room left: in the store
(``max_queued_*``) and for request bytes in flight (``in_flight``, which the
link server reserves each request's size from before reading it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping

from exchnode.aio._batcher import Batcher
from exchnode.aio._config import NodeLimits
from exchnode.aio._context import NodeContext, RepeatedLog
from exchnode.aio._cut_through import EarlyBatch
from exchnode.aio._forwarder import Forwarder
from exchnode.aio._inbox import Inbox
from exchnode.aio._inflight import InFlight
from exchnode.aio._service import CustodyLog
from exchnode.core import EnvelopeVerifier, decode_envelope
from exchnode.errors import (
    CertificateRevokedError,
    DirectoryExpiredError,
    RejectedError,
    RoutingRefusedError,
    UnknownSignerError,
)
from exchnode.federation import (
    Credit,
    Item,
    ItemResult,
    Router,
    Status,
    TransferRequest,
    TransferResponse,
)
from exchnode.store import AcceptItem, AcceptOutcome, AcceptStatus, InboundEntry, OutboundEntry

__all__ = ["Intake"]

#: Seconds a lone commit may wait for more arrivals to share its flush, only while transfers
#: (and the node's own envelopes) arrive often (``Batcher``'s linger): never at a quiet node.
COMMIT_LINGER = 0.002

# Failures that time cures: the directory has not converged yet, or a cache is being refreshed.
# A custodian defers these (the previous hop retries) instead of refusing them for good.
_TEMPORARY = (UnknownSignerError, DirectoryExpiredError)
# An item's answer as the link's traffic counts it (``LinkTraffic.items_in``).
_OUTCOME = {Status.TAKEN: "taken", Status.REFUSED: "refused", Status.DEFERRED: "deferred"}


def _log_item(
    log_repeated: RepeatedLog, level: str, event: str, neighbour: str, exc: RejectedError
) -> None:
    """Log an item deferred or refused: once an interval per neighbour and code."""
    log_repeated(
        level, event, neighbour, exc.code, neighbour=neighbour, code=exc.code, reason=str(exc)
    )


class Intake:
    """Custody in: admission (room, verification, the neighbour's place) and the group commit.

    Why a class of its own: it is the one place that decides what this node
    takes custody of and answers for it, and it owns the state of that
    decision -- the commit batcher and the bytes admitted but not yet
    committed, which count against the node's room.  A commit wakes the
    forwarders and the inbox that gained entries.
    """

    def __init__(
        self,
        context: NodeContext,
        router: Router,
        verifier: EnvelopeVerifier,
        inbox: Inbox,
        forwarders: Mapping[str, Forwarder],
        limits: NodeLimits,
        deferred: Callable[[str, str], None] | None = None,
        *,
        cut_through: bool = True,
    ) -> None:
        """``forwarders``: the node's, by neighbour (filled at start, before anything arrives).

        ``cut_through``: offer arrivals to idle forwarders before their commit returns.

        ``deferred(neighbour, code)`` hears of each item deferred because it cannot be verified
        yet (the node's refusals: on the record, aggregated).
        """
        self._deferred = deferred
        self._context = context
        self._router = router
        self._verifier = verifier
        self._inbox = inbox
        self._forwarders = forwarders
        self._limits = limits
        #: request bytes held in memory, per neighbour and in all (reserved by the link server)
        self.in_flight = InFlight(
            limits.max_inflight_bytes_per_neighbour,
            limits.max_inflight_bytes,
            on_refused=self._pushed_back,
        )
        self._uncommitted = [0, 0]  # items and bytes admitted, their commit under way
        self._commits: Batcher[AcceptItem, AcceptOutcome] = Batcher(
            self._commit, max_items=4 * limits.transfer_items, linger=COMMIT_LINGER
        )
        self._cut_through = cut_through
        # Items a forwarder sent ahead of their commit, by id(item): read in the store thread
        # by the hand-over, which must not offer those entries to the forwarder a second time.
        self._early: dict[int, dict[str, EarlyBatch]] = {}

    def start(self) -> None:
        self._commits.start()

    def _pushed_back(self) -> None:
        self._context.counters["pushed_back"] += 1

    async def close(self) -> None:
        """Finish the commits under way; take nothing more."""
        await self._commits.close()

    async def commit(self, items: list[AcceptItem]) -> list[AcceptOutcome]:
        """Commit ``items`` with everything else that arrived meanwhile (one transaction).

        A forwarder with nothing else to send takes its part at once and sends
        it while the commit runs (cut-through); the outcomes are returned only
        once the commit has.
        """
        by_hop: dict[str, list[tuple[int, AcceptItem]]] = {}
        keyed: set[str] = set()  # hops that must wait for the commit
        for position, item in enumerate(items):
            for hop in item.forward:
                by_hop.setdefault(hop, []).append((position, item))
                if item.send_key is not None:
                    # A send with an idempotency key may be a retry, which the commit answers
                    # with the first message and does not queue: this envelope must not leave.
                    keyed.add(hop)
        if not by_hop:
            return await self._commits.submit(items)
        committed: asyncio.Future[list[AcceptOutcome] | None] = (
            asyncio.get_running_loop().create_future()
        )
        early = self._early
        waiting: list[Forwarder] = []  # forwarders that will read these items after the commit
        marked: list[int] = []
        for hop, hop_items in by_hop.items():
            forwarder = self._forwarders.get(hop)
            if forwarder is None:
                continue
            batch = (
                forwarder.take_early(hop_items, committed)
                if self._cut_through and hop not in keyed
                else None
            )
            if batch is None:
                forwarder.committing += 1
                waiting.append(forwarder)
                continue
            for _, item in hop_items:
                key = id(item)
                if key not in early:
                    early[key] = {}
                    marked.append(key)
                early[key][hop] = batch
        try:
            outcomes = await self._commits.submit(items)
        except BaseException:
            committed.set_result(None)
            raise
        else:
            committed.set_result(outcomes)
        finally:
            for forwarder in waiting:
                forwarder.committing -= 1
            for key in marked:
                del early[key]
        return outcomes

    def has_room(self, count: int, size: int) -> bool:
        limits, queued = self._limits, self._context.queued
        return (
            queued.count + self._uncommitted[0] + count <= limits.max_queued_items
            and queued.bytes + self._uncommitted[1] + size <= limits.max_queued_bytes
        )

    def credit(self, neighbour: str | None = None, answering: int = 0) -> Credit:
        """What a neighbour may send next: the room left, within one transfer.

        With ``neighbour``: also within the bytes in flight it may add once the
        transfer being answered (``answering`` bytes) is done.
        """
        limits, queued = self._limits, self._context.queued
        items = limits.max_queued_items - queued.count - self._uncommitted[0]
        size = min(
            limits.max_queued_bytes - queued.bytes - self._uncommitted[1], limits.transfer_bytes
        )
        if neighbour is not None:
            size = min(size, self.in_flight.room(neighbour, answering))
        return Credit(max(0, min(items, limits.transfer_items)), max(0, size))

    async def _commit(self, items: list[AcceptItem]) -> list[AcceptOutcome]:
        """One transaction for everything that arrived since the last one (group commit)."""
        context = self._context
        now_ms = context.now_ms()
        store, recorder = context.store, context.recorder

        def run(log: CustodyLog | None) -> list[AcceptOutcome]:
            try:
                if log is None:
                    outcomes = store.accept(items, now_ms)
                else:
                    outcomes = store.accept(
                        items,
                        now_ms,
                        audit=lambda found: log.encode(recorder.accepted(now_ms, items, found)),
                    )
                self._hand_over(items, outcomes)
            except BaseException:
                # Committed or not, handed over or not, who knows: every queue is read from
                # the store again.
                for forwarder in self._forwarders.values():
                    forwarder.fresh.forget()
                self._inbox.fresh.forget()
                raise
            context.refresh_totals()
            return outcomes

        try:
            outcomes: list[AcceptOutcome] = await context.run(context.audited, run)
        except BaseException:
            for forwarder in self._forwarders.values():
                forwarder.wake.set()  # what may have been committed is read from the store
            self._inbox.wake.set()
            raise
        counters = context.counters
        first_out: int | None = None  # the first seqs this commit queued: custody began now
        first_in: int | None = None
        for outcome in outcomes:
            if outcome.status is AcceptStatus.ACCEPTED:
                counters["accepted"] += 1
                for hop in outcome.forward:
                    self._forwarders[hop].wake.set()
                if outcome.local:
                    self._inbox.wake.set()
                if first_out is None and outcome.seqs:
                    first_out = min(outcome.seqs.values())
                if first_in is None and outcome.inbox_seq is not None:
                    first_in = outcome.inbox_seq
            elif outcome.status is AcceptStatus.DUPLICATE:
                counters["duplicates"] += 1
        if first_out is not None or first_in is not None:
            custody, at_ms = context.custody, context.now_ms()
            if first_out is not None:
                custody.outbound.committed(first_out, at_ms)
            if first_in is not None:
                custody.inbox.committed(first_in, at_ms)
        return outcomes

    def _hand_over(self, items: list[AcceptItem], outcomes: list[AcceptOutcome]) -> None:
        """The entries just queued, to their forwarders and the inbox (store thread, right
        after the commit).

        In commit order, so a forwarder, or the inbox's pump, that has read its
        queue to the end takes the rest from memory (``FreshEntries``); an entry
        whose seq the store did not say makes its reader read the store instead.
        Only for a reader that is caught up: it becomes so only in this thread.
        """
        forwarders = self._forwarders
        inbox_fresh = self._inbox.fresh
        to_inbox = inbox_fresh.active
        queued: dict[str, list[OutboundEntry]] = {}
        inbox: list[InboundEntry] = []
        early = self._early
        sent_early: dict[str, list[EarlyBatch]] = {}  # hop -> batches this commit numbered
        queued_hops: set[str] = set()  # hops this commit queued other entries for
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome.status is not AcceptStatus.ACCEPTED:
                continue
            went_early = early.get(id(item)) if early else None
            if outcome.local and to_inbox:
                if outcome.inbox_seq is None:
                    inbox_fresh.forget()
                    to_inbox = False
                else:
                    inbox.append(
                        InboundEntry(
                            seq=outcome.inbox_seq,
                            sender=item.sender,
                            message_id=item.message_id,
                            digest=item.digest,
                            targets=outcome.local,
                            expires_ms=item.expires_ms,
                            data=item.data,
                        )
                    )
            for hop, targets in outcome.forward.items():
                batch = went_early.get(hop) if went_early else None
                if batch is not None:
                    sent_early.setdefault(hop, []).append(batch)
                    continue  # its forwarder has it: it settles it with the number below
                queued_hops.add(hop)
                forwarder = forwarders.get(hop)
                if forwarder is None or not forwarder.fresh.active:
                    continue
                seq = outcome.seqs.get(hop)
                if seq is None:
                    forwarder.fresh.forget()
                    continue
                queued.setdefault(hop, []).append(
                    OutboundEntry(
                        seq=seq,
                        sender=item.sender,
                        message_id=item.message_id,
                        digest=item.digest,
                        targets=targets,
                        expires_ms=item.expires_ms,
                        data=item.data,
                        next_hop=hop,
                    )
                )
        for hop, entries in queued.items():
            forwarders[hop].fresh.offer(entries)
        for hop, batches in sent_early.items():
            if hop in queued_hops:  # entries queued beside the early ones: order is not kept
                for batch in batches:
                    batch.mixed = True
        if inbox and to_inbox:
            inbox_fresh.offer(inbox)

    async def custody(self, neighbour: str, request: TransferRequest) -> TransferResponse:
        """Decide every item of a transfer; TAKEN only once the store holds it."""
        context = self._context
        counters, log_repeated = context.counters, context.log_repeated
        forwarder = self._forwarders.get(neighbour)
        if forwarder is None:
            log_repeated(
                "warning",
                "transfer refused",
                neighbour,
                neighbour=neighbour,
                code="routing-refused",
            )
            refusal = ItemResult(
                Status.REFUSED,
                "routing-refused",
                f"{neighbour} is not a neighbour of {context.name}",
            )
            counters["refused"] += len(request.items)
            context.refusal_counts.add(
                by_peer=False, kind="item", reason="routing-refused", count=len(request.items)
            )
            context.log_entries(
                context.recorder.refused(
                    context.now_ms(),
                    neighbour,
                    [("routing-refused", _peek_id(item.envelope)) for item in request.items],
                )
            )
            return TransferResponse(
                request.transfer_id, tuple(refusal for _ in request.items), Credit(0, 0)
            )
        if forwarder.state.failures:
            # It reached us, so it is up: serve its queue now, not after the backoff.
            forwarder.poke()
        now = context.clock()
        results: list[ItemResult] = [ItemResult(Status.DEFERRED)] * len(request.items)
        items: list[AcceptItem] = []
        positions: list[int] = []
        refusals: list[tuple[str, bytes | None]] = []
        count, size, received = 0, 0, 0
        for position, item in enumerate(request.items):
            received += len(item.envelope)
            if not self.has_room(count + 1, size + len(item.envelope)):
                counters["deferred"] += 1
                continue  # DEFERRED: the sender keeps it and slows down
            try:
                try:
                    accept_item = self._check_item(neighbour, item, now)
                except UnknownSignerError as exc:
                    raise _revoked_or(exc, item.envelope, context.revoked_keys) from None
            except _TEMPORARY as exc:
                counters["deferred"] += 1
                if self._deferred is not None:
                    self._deferred(neighbour, exc.code)
                results[position] = ItemResult(Status.DEFERRED, exc.code, str(exc))
                _log_item(log_repeated, "info", "item deferred", neighbour, exc)
                continue
            except RejectedError as exc:
                results[position] = ItemResult(Status.REFUSED, exc.code, str(exc))
                refusals.append((exc.code, _peek_id(item.envelope)))
                counters["refused"] += 1
                _log_item(log_repeated, "warning", "item refused", neighbour, exc)
                continue
            items.append(accept_item)
            positions.append(position)
            count += 1
            size += len(item.envelope)
        if refusals:
            context.log_entries(context.recorder.refused(context.now_ms(), neighbour, refusals))
            for code, _ in refusals:
                context.refusal_counts.add(by_peer=False, kind="item", reason=code)
        if items:
            self._uncommitted[0] += count
            self._uncommitted[1] += size
            try:
                outcomes = await self.commit(items)
            finally:
                self._uncommitted[0] -= count
                self._uncommitted[1] -= size
            for position, outcome in zip(positions, outcomes, strict=True):
                result = results[position] = _answer(outcome)
                if result.status is Status.REFUSED:  # expired or replayed: refused after all
                    context.refusal_counts.add(by_peer=False, kind="item", reason=result.code)
        traffic = forwarder.traffic
        traffic.transfers_in += 1
        traffic.bytes_in += received
        answered = traffic.items_in
        for result in results:
            answered[_OUTCOME[result.status]] += 1
        credit = self.credit(neighbour, answering=min(received, self.in_flight.held(neighbour)))
        return TransferResponse(request.transfer_id, tuple(results), credit)

    def _check_item(self, neighbour: str, item: Item, now: float) -> AcceptItem:
        envelope, signer = self._verifier.verify_sender(item.envelope, now)
        header = envelope.header
        router = self._router
        relation = router.accept(neighbour, header.sender, header.recipient_names, item.targets)
        route = router.route(item.targets, came_from=relation)
        if route.unroutable:
            raise RoutingRefusedError(
                f"{self._context.name} has no route to {', '.join(route.unroutable)}"
            )
        if route.local:
            self._inbox.remember_verified(envelope, signer)
        return AcceptItem.from_route(
            sender=header.sender,
            message_id=header.message_id,
            digest=envelope.digest,
            data=item.envelope,
            expires_ms=header.expires_ms,
            route=route,
            came_from=neighbour,
        )


def _revoked_or(
    exc: UnknownSignerError, data: bytes, revoked_keys: Callable[[str], Collection[bytes]]
) -> RejectedError:
    """``revoked`` if this node knows the unknown signer to be revoked, else ``exc`` (temporary).

    An unknown signer may become known (the directory converges), so it is
    deferred; a revoked one never will, so the item is refused for good.
    """
    try:
        header = decode_envelope(data).header
    except RejectedError:
        return exc
    if header.sender_key_id in revoked_keys(header.sender):
        return CertificateRevokedError(
            f"the certificate of {header.sender} that signed it is revoked; it cannot verify"
        )
    return exc


def _peek_id(data: bytes) -> bytes | None:
    """The message id of a refused envelope, for the audit record, if it can be read at all."""
    try:
        return decode_envelope(data).header.message_id
    except RejectedError:
        return None


def _answer(outcome: AcceptOutcome) -> ItemResult:
    if outcome.acknowledge:
        return ItemResult(Status.TAKEN)
    if outcome.status is AcceptStatus.EXPIRED:
        return ItemResult(Status.REFUSED, "expired", "the envelope expired before it was taken")
    return ItemResult(
        Status.REFUSED, "replayed", "another envelope with this sender and id was taken first"
    )
