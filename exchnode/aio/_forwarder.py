"""Custody out: one forwarder per neighbour moves that neighbour's queue (I/O edge).

A forwarder takes the oldest entries of its neighbour's queue (within the
credit the neighbour last granted), transfers them, and removes exactly
those answered TAKEN (``store.forwarded``, with the relay's audit record in
the same transaction).  The removals of the transfers answered within
``timers.removal_delay`` share one commit (a hub with many quiet children
would otherwise commit twice per message, one fsync for each way); the queue
is read past them while they wait.  A refusal ends the item with a non-delivery report
to its sender; a failure to connect backs off (persisted, jittered) until
the neighbour is due again -- or until it reaches *us*, which proves it is
back and makes it due at once (:meth:`Forwarder.poke`).  A neighbour that
defers everything (it is full), or pushes a transfer back unread (HTTP 429:
too many bytes in flight there), is left a pause that doubles while it stays
full.

**What it reads.**  The store is the queue; but once a read finds nothing
more, what the intake commits for this neighbour is handed over in the store
thread, right after each commit (``FreshEntries``, :attr:`Forwarder.fresh`),
and taken from memory in the store's order: a quiet link no longer reads back
each message it was just given (a trip to the store thread and a query).  A
transfer not wholly settled, a restart or a store several workers share sends
it back to reading the store.

**What wakes it.**  Two events: ``wake`` (the queue gained entries) and the
poke (the neighbour is back).  While the neighbour is due, the forwarder
sleeps on ``wake`` when its queue is empty.  While it is *not* due -- in
backoff, or in a pause after everything was deferred -- new entries change
nothing, so it sleeps until the attempt is due or the neighbour is poked,
and no arrival can turn that sleep into a busy loop (the review saw a hub
spin 333,054 times in 4 s, answering nothing else, while its parent was in
backoff and traffic for it kept arriving).  A partition still heals without
new traffic: the attempt falls due, or the neighbour's hello pokes it.

**Cut-through** (``NodeConfig.cut_through``, SPEC §16.4, ``_cut_through``).
A forwarder waiting on an empty queue may be handed the items of an arrival
before the intake's commit of them returns (:meth:`Forwarder.take_early`), and
sends them at once; it settles them only when that commit has numbered them.

**Revoked senders.**  An envelope whose sender's certificate this node knows
to be revoked (``NodeContext.revoked_keys``) can never verify again, anywhere:
the forwarder ends its custody once, with a ``drop`` record (``refused
revoked``) in the transaction that removes it, instead of offering it until it
expires; a neighbour that refuses one as ``revoked`` is believed the same way.
No non-delivery report goes to a revoked sender.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from exchnode.aio._config import NodeLimits, NodeTimers
from exchnode.aio._context import FreshEntries, NodeContext
from exchnode.aio._cut_through import EarlyBatch
from exchnode.aio._observations import LinkTraffic
from exchnode.aio._outbox import Lost
from exchnode.aio._service import CustodyLog
from exchnode.aio._transport import LinkBusy, LinkClient, LinkError
from exchnode.aio._waiting import wait_event
from exchnode.core import decode_envelope
from exchnode.errors import CertificateRevokedError, ExchnodeError, RejectedError
from exchnode.federation import (
    BackoffPolicy,
    Credit,
    Item,
    ItemResult,
    PeerState,
    Status,
    TransferRequest,
    TransferResponse,
    came_back,
    due,
    failed,
    succeeded,
)
from exchnode.store import AcceptItem, AcceptOutcome, AuditRow, OutboundEntry, QueueDepth

__all__ = ["Forwarder"]

Report = Callable[[list[Lost], list[tuple[str, str]]], Awaitable[None]]

#: The code of an item whose sender is revoked (SPEC §3.8): custody ends without a report.
REVOKED = CertificateRevokedError.code


class Forwarder:
    """Custody out to one neighbour: its queue, its link state and its backoff.

    Why one per neighbour: each queue moves on its own task, so a neighbour
    that is slow or down holds up only its own traffic; and the state that
    decides when to try it again (failures, next attempt; persisted) changes
    only here -- on a transfer, or when the neighbour shows it is up.
    """

    def __init__(
        self,
        context: NodeContext,
        client: LinkClient,
        state: PeerState,
        *,
        limits: NodeLimits,
        timers: NodeTimers,
        backoff: BackoffPolicy,
        random: Callable[[int], bytes],
        report: Report,
        relation: str = "link",
    ) -> None:
        """``relation``: the neighbour's (parent, child, link), the custody times' destination."""
        self.hop = client.neighbour
        self.relation = relation
        self._context = context
        self._client = client
        self._limits = limits
        self._timers = timers
        self._backoff = backoff
        self._random = random
        self._report = report
        self.state = state
        #: envelopes and bytes the neighbour took into custody (None: no transfer yet)
        self.handed_over: QueueDepth | None = None
        #: transfers and items each way, for monitoring (the intake counts what comes in)
        self.traffic = LinkTraffic()
        #: when the oldest entry waiting for the neighbour was taken into custody (ms), as of
        #: the last read of its queue; None: nothing waited then, or it is not known
        self.oldest_ms: int | None = None
        self._oldest_seq = -1
        # Settled (taken or refused for good) but not yet removed from the store: removals
        # wait up to ``timers.removal_delay`` so that several transfers' go in one commit.
        self._removing: list[_Settled] = []
        self._read_after = 0  # while removals wait: the queue is read past what they hold
        # Settled out of the queue's order (cut-through), waiting to be removed: a read of the
        # queue passes over these by number, since ``_read_after`` cannot (``_settle``).
        self._settled_unordered: set[int] = set()
        self._flushing: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()  # set when the queue gains entries or the neighbour is back
        self._poked = asyncio.Event()  # set when the neighbour is back: ends a backoff or pause
        #: what the intake committed for this neighbour since its queue was last read to the end
        self.fresh: FreshEntries[OutboundEntry] = FreshEntries(
            limits.transfer_items, limits.transfer_bytes
        )
        #: what the neighbour will take in the next transfer, as it last said
        self._credit = Credit(limits.transfer_items, limits.transfer_bytes)
        #: commits under way that queue entries for this neighbour (kept by the intake)
        self.committing = 0
        self._idle = False  # waiting on an empty queue: an arrival may go through at once
        self._early: EarlyBatch | None = None  # taken, to be sent (cut-through)

    def set_state(self, state: PeerState) -> None:
        previous = self.state
        self.state = state
        if (previous.failures, previous.next_attempt_ms) != (
            state.failures,
            state.next_attempt_ms,
        ):
            # Persist only transitions: a write per transfer would cost a flush each.
            context = self._context
            asyncio.get_running_loop().create_task(
                context.run(context.store.set_peer_state, self.hop, state)
            )

    def poke(self) -> None:
        """Treat the neighbour as reachable now: try its queue at once."""
        self.set_state(came_back(self.state, self._context.now_ms()))
        self._poked.set()
        self.wake.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless the neighbour is poked meanwhile; new entries do not count."""
        self._poked.clear()
        await wait_event(self._poked, seconds)

    def take_early(
        self,
        items: Sequence[tuple[int, AcceptItem]],
        committed: asyncio.Future[list[AcceptOutcome] | None],
    ) -> EarlyBatch | None:
        """Send these items (position in the intake's submission, item) before their commit
        returns, if this forwarder has nothing else to send; None: they wait for the commit.

        Only when everything committed for the neighbour has been sent
        (``fresh`` drained), no other commit for it is under way (order), the
        neighbour is due and the items fit its last credit (one item always
        may, as in any transfer).
        """
        if not (
            self._idle
            and self._early is None
            and self.committing == 0
            and self.fresh.drained
            and due(self.state, self._context.now_ms())
        ):
            return None
        credit = self._credit
        if len(items) > 1 and (
            len(items) > credit.items or sum(len(item.data) for _, item in items) > credit.bytes
        ):
            return None
        batch = self._early = EarlyBatch.of(self.hop, items, committed)
        self.wake.set()
        return batch

    async def run(self) -> None:
        context, hop, wake, fresh = self._context, self.hop, self.wake, self.fresh
        pause = self._timers.deferred_pause
        fresh.forget()  # (re)started: a transfer may have been cut short; the store says
        while True:
            state = self.state
            now_ms = context.now_ms()
            if not due(state, now_ms):
                # In backoff: sleep until the attempt is due or the neighbour is back.
                await self._pause((state.next_attempt_ms - now_ms) / 1000)
                continue
            wake.clear()
            early, self._early = self._early, None
            entries: list[OutboundEntry] | None
            if early is not None:
                entries = early.entries  # verified as they arrived, just now
                context.counters["cut_through"] += len(entries)
            else:
                credit = self._credit
                count, size = max(credit.items, 1), max(credit.bytes, 1)
                # Caught up: what the intake committed since is at hand, in the store's order.
                entries = fresh.take(now_ms, count, size)
                if entries is None:
                    entries = await context.run(
                        self._read,
                        now_ms,
                        count,
                        size,
                        self._read_after,
                        frozenset(self._settled_unordered),
                    )
                self._note_oldest(entries)
                if not entries:
                    self._idle = True
                    try:
                        await wake.wait()
                    finally:
                        self._idle = False
                    continue
                entries = await self._drop_revoked(entries)
                if not entries:
                    continue  # all of them were a revoked sender's: the next ones, now
            request = TransferRequest(
                context.name,
                self._random(16),
                tuple(Item(entry.data, entry.targets) for entry in entries),
            )
            try:
                response = await self._client.transfer(request)
            except LinkBusy as exc:
                fresh.forget()  # not taken: read from the store again
                if early is not None:
                    await early.committed  # ... once this node's commit has queued them
                # It answered, unread: too many bytes in flight there.  Back-pressure, not a
                # failure: the items stay here, the link stays up, and we wait as if deferred.
                context.log_repeated(
                    "info",
                    "neighbour pushed back",
                    hop,
                    neighbour=hop,
                    retry_after=exc.retry_after,
                )
                await self._pause(min(max(pause, exc.retry_after), self._timers.deferred_pause_max))
                pause = min(pause * 2, self._timers.deferred_pause_max)
                continue
            except (LinkError, ExchnodeError) as exc:
                fresh.forget()  # not taken: read from the store again
                if early is not None:
                    await early.committed  # ... once this node's commit has queued them
                context.counters["link_failures"] += 1
                self.traffic.transfers_failed += 1
                new_state = failed(state, now_ms, self._random, self._backoff)
                if not state.failures:  # it worked (or was never tried): now it is down
                    context.log_entries([context.recorder.link(now_ms, hop, up=False, failures=1)])
                self.set_state(new_state)
                context.log_repeated(
                    "warning",
                    "link failed",
                    hop,
                    neighbour=hop,
                    error=str(exc),
                    failures=new_state.failures,
                    retry_in_ms=new_state.next_attempt_ms - now_ms,
                )
                continue
            if state.failures or state.last_ok_ms is None:
                if state.failures:
                    context.log.info("link restored", neighbour=hop, after_failures=state.failures)
                context.log_entries(
                    [context.recorder.link(now_ms, hop, up=True, failures=state.failures)]
                )
                self.set_state(succeeded(state, now_ms))
            if early is None:
                await self._settle(entries, response)
            else:
                await self._settle_early(early, response)
            self._credit = response.credit
            deferred = [r for r in response.results if r.status is Status.DEFERRED]
            if deferred:
                codes = sorted({r.code or "full" for r in deferred})
                context.log_repeated(
                    "info",
                    "neighbour deferred items",
                    hop,
                    *codes,
                    neighbour=hop,
                    count=len(deferred),
                    codes=codes,
                )
            if deferred and not any(r.status is Status.TAKEN for r in response.results):
                await self._pause(pause)  # the neighbour is full: slow down
                pause = min(pause * 2, self._timers.deferred_pause_max)
            else:
                pause = self._timers.deferred_pause

    async def _settle_early(self, early: EarlyBatch, response: TransferResponse) -> None:
        """Settle what went ahead of its commit, once that commit has numbered it.

        What the commit did not queue here (a duplicate, an expired or replayed
        copy, a failed commit) was never this node's to move: the answer is
        dropped, and a failed commit's entries are read from the store.
        """
        outcomes = await early.committed
        if outcomes is None:
            self.fresh.forget()  # committed or not, who knows: the store says
            self.traffic.transfers_out += 1
            return
        numbered, unnumbered = early.numbered(outcomes)
        if unnumbered:
            self.fresh.forget()
        if not numbered:
            self.traffic.transfers_out += 1
            return
        results = response.results
        await self._settle(
            [entry for _, entry in numbered],
            TransferResponse(
                response.transfer_id,
                tuple(results[index] for index, _ in numbered),
                response.credit,
            ),
            in_order=not early.mixed,
        )

    def _note_oldest(self, entries: list[OutboundEntry]) -> None:
        """The first entry read is the oldest waiting (those before it are settled): date it.

        Once per read, not per entry; an entry queued before the node started
        has no commit mark, and is dated by its envelope's creation instead (as
        long as it has been in custody here, at most).
        """
        if not entries:
            self.oldest_ms, self._oldest_seq = None, -1
            return
        head = entries[0]
        if head.seq == self._oldest_seq:
            return
        self._oldest_seq = head.seq
        since = self._context.custody.outbound.accepted_ms(head.seq)
        if since is None:
            try:
                since = decode_envelope(head.data).header.created_ms
            except RejectedError:
                since = None
        self.oldest_ms = since

    def _read(
        self,
        now_ms: int,
        max_count: int,
        max_bytes: int,
        after: int,
        settled: frozenset[int] = frozenset(),
    ) -> list[OutboundEntry]:
        """The queue's next entries from the store (store thread), past those ``settled``.

        Nothing left to read: from here on, what the intake commits for this
        neighbour is handed to :attr:`fresh` in the store thread, in commit
        order, so the next entries are taken from memory instead of read back
        -- if this node is the only one that writes its store (a store that
        other workers share gets entries this node never sees: read it).
        """
        context = self._context
        while True:
            entries = context.store.pending(self.hop, now_ms, max_count, max_bytes, after=after)
            if not entries:
                if context.sole_writer:
                    self.fresh.caught_up()
                return entries
            if not settled:
                return entries
            unsettled = [entry for entry in entries if entry.seq not in settled]
            if unsettled:
                return unsettled
            after = entries[-1].seq  # all of them settled already: the next ones

    async def _drop_revoked(self, entries: list[OutboundEntry]) -> list[OutboundEntry]:
        """End custody of the entries whose sender is revoked; the others, to transfer.

        One transaction removes them with their ``drop`` record; no report.
        """
        context, hop = self._context, self.hop
        revoked_keys = context.revoked_keys
        keep: list[OutboundEntry] = []
        dropped: list[OutboundEntry] = []
        for entry in entries:
            keys = revoked_keys(entry.sender)
            if keys and _signer_key(entry.data) in keys:
                dropped.append(entry)
            else:
                keep.append(entry)
        if not dropped:
            return entries
        now_ms = context.now_ms()
        seqs = [entry.seq for entry in dropped]
        ids = [entry.message_id for entry in dropped]

        def run(log: CustodyLog | None) -> int:
            records: list[AuditRow] = []
            if log is not None:
                records = log.encode(context.recorder.dropped(now_ms, hop, REVOKED, ids))
            removed = context.store.forwarded(hop, seqs, audit=records)
            context.refresh_totals()
            return removed

        removed = await context.run(context.audited, run)
        context.counters["revoked"] += removed
        context.log_repeated(
            "warning",
            "custody ended: sender revoked",
            hop,
            neighbour=hop,
            count=removed,
            senders=sorted({entry.sender for entry in dropped}),
        )
        context.space.set()
        return keep

    async def _settle(
        self, entries: list[OutboundEntry], response: TransferResponse, *, in_order: bool = True
    ) -> None:
        """Forget what the neighbour took; report what it refused for good.

        ``in_order``: every entry queued before these has been settled, so the
        queue may be read past them while their removal waits; otherwise
        (cut-through put entries of a later arrival in the same commit) reads
        pass over them by number.
        """
        context, hop = self._context, self.hop
        done: list[int] = []
        refused: list[tuple[OutboundEntry, ItemResult]] = []
        taken_ids: list[bytes] = []  # for the relay's audit record
        taken_bytes = 0
        taken_seqs: list[int] = []
        for entry, result in zip(entries, response.results, strict=True):
            if result.status is Status.TAKEN:
                done.append(entry.seq)
                taken_seqs.append(entry.seq)
                taken_ids.append(entry.message_id)
                taken_bytes += len(entry.data)
            elif result.status is Status.REFUSED:
                refused.append((entry, result))
                done.append(entry.seq)
        traffic = self.traffic
        traffic.transfers_out += 1
        traffic.bytes_out += taken_bytes
        sent = traffic.items_out
        sent["taken"] += len(taken_seqs)
        sent["refused"] += len(refused)
        sent["deferred"] += len(entries) - len(done)
        if taken_seqs:
            custody = context.custody
            custody.ended(self.relation, custody.outbound, taken_seqs, context.now_ms())
        for _, result in refused:
            context.refusal_counts.add(by_peer=True, kind="item", reason=result.code)
        if refused:
            codes = sorted({r.code for _, r in refused})
            context.log_repeated(
                "warning",
                "neighbour refused items",
                hop,
                *codes,
                neighbour=hop,
                count=len(refused),
                codes=codes,
            )
            # A revoked sender gets no report: it may not be sealed to, and it is no longer
            # a member of the federation (the refusal is on the relay's record).
            reported = [(entry, result) for entry, result in refused if result.code != REVOKED]
            context.counters["revoked"] += len(refused) - len(reported)
            if reported:
                await self._report(
                    [
                        (entry.sender, entry.message_id, entry.digest, entry.targets, entry.data)
                        for entry, _ in reported
                    ],
                    [(result.code, f"{hop} refused it: {result.reason}") for _, result in reported],
                )
        before = self.handed_over or QueueDepth(0, 0)
        self.handed_over = QueueDepth(before.count + len(taken_ids), before.bytes + taken_bytes)
        if not done:
            self.fresh.forget()  # all deferred: they stay queued, read the store again
            return
        refused_ids = [(result.code, entry.message_id) for entry, result in refused]
        self._removing.append(_Settled(context.now_ms(), done, taken_ids, refused_ids))
        delay = self._timers.removal_delay
        if len(done) < len(entries):
            self.fresh.forget()  # what was deferred stays queued: read the store again
        if delay <= 0 or len(done) < len(entries):
            # Something stays (deferred): read the queue from its start again, after this.
            await self.flush_removals()
            return
        if in_order:
            self._read_after = max(self._read_after, max(entry.seq for entry in entries))
        else:
            self._settled_unordered.update(done)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(
                self._flush_later(delay), name=f"removals-{hop}"
            )

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._flushing = None
        await self.flush_removals()

    async def flush_removals(self) -> None:
        """Remove what the neighbour settled, in one transaction with the relay's records.

        Until then the entries stay in the store and are read past: custody has
        moved (the neighbour answered TAKEN only once it held them durably), so a
        crash before this commit costs a resend the neighbour's dedup answers
        TAKEN again, never a loss.  Called before expiry and when the node closes,
        so nothing taken is reported expired.
        """
        if self._flushing is not None and self._flushing is not asyncio.current_task():
            self._flushing.cancel()
            self._flushing = None
        settled, self._removing = self._removing, []
        if not settled:
            return
        context, hop = self._context, self.hop
        seqs = [seq for batch in settled for seq in batch.seqs]

        def run(log: CustodyLog | None) -> int:
            records: list[AuditRow] = []
            if log is not None:
                entries = [
                    entry
                    for batch in settled
                    for entry in context.recorder.relayed(
                        batch.at_ms, hop, batch.taken, batch.refused
                    )
                ]
                records = log.encode(entries)
            removed = context.store.forwarded(hop, seqs, audit=records)
            context.refresh_totals()
            return removed

        try:
            removed = await context.run(context.audited, run)
        except BaseException:
            self._removing[:0] = settled  # not removed: the next flush tries again
            raise
        # Counted after the await: two flushes may overlap (one deferred transfer flushes at
        # once while the delayed flush is in the store), and ``+= await`` would lose a count.
        context.counters["forwarded"] += removed
        if self._settled_unordered:
            self._settled_unordered.difference_update(seqs)
        if not self._removing:
            self._read_after = 0
        context.space.set()


class _Settled(NamedTuple):
    """One transfer's entries the neighbour settled, waiting to be removed."""

    at_ms: int
    seqs: Sequence[int]
    taken: Sequence[bytes]
    refused: Sequence[tuple[str, bytes | None]]


def _signer_key(data: bytes) -> bytes | None:
    """The signing key id an envelope names (None if it cannot be read: it was verified once)."""
    try:
        return decode_envelope(data).header.sender_key_id
    except RejectedError:
        return None
