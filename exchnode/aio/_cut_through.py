"""Cut-through: a hop transfers what just arrived while its own commit of it runs (SPEC §16.4).

Theory of operation
-------------------
Every node on a path stores an envelope durably before it answers the
previous hop TAKEN.  If it also waited for that commit before offering the
envelope to the next hop, the fsyncs of a path would add up: four synced
commits in series over three hops, which alone is 4-16 ms here.  Instead, a
forwarder with nothing else to send -- its queue read to the end, no commit
holding entries for it under way, its neighbour due -- takes the items of a
transfer that routes to it *as the transfer arrives*, and sends them while the
intake commits them.  Custody rules do not change:

* this node answers the previous hop only once its own commit has returned
  (the intake awaits it as before), so a crash before that commit leaves the
  previous hop holding the envelope, which it resends; the next hop's dedup
  answers the resend TAKEN, so the copy that went ahead early is never a
  second delivery;
* an entry leaves this node's queue only once *both* the next hop answered
  and this node's commit queued it (:meth:`EarlyBatch.numbered` matches the
  answer to the queue numbers the commit gave); an item the commit did not
  queue (a duplicate, an expired or replayed copy) was never this node's to
  move, and the early answer is dropped;
* a send with an idempotency key is never sent early: the commit may find it
  a retry and answer with the first message, and the envelope the retry
  sealed is new to every other node (the intake keeps such a hop waiting);
* what the early transfer did not settle (a failure, a DEFERRED item) is read
  back from the store once the commit has returned, as any unsettled entry.

Order is kept: an early batch is taken only when no commit holding entries for
that hop is under way (:attr:`~exchnode.aio._forwarder.Forwarder.committing`),
so nothing queued before it is still to be sent.  One case breaks that: the
group commit may put items of a later transfer for the same hop in the early
batch's transaction; the intake marks the batch ``mixed`` (in the store
thread), and the forwarder then cannot read its queue past the early entries
while their removal waits (entries below them are still to send): it passes
over them by number instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from exchnode.store import AcceptItem, AcceptOutcome, AcceptStatus, OutboundEntry

__all__ = ["UNNUMBERED", "EarlyBatch"]

#: The queue number of an entry sent before its commit returned (numbered afterwards).
UNNUMBERED = -1


@dataclass(eq=False, slots=True)
class EarlyBatch:
    """The items of one arrival a forwarder sends before the intake's commit of them returns.

    ``positions``: where each entry's item stands in the list the intake
    submitted, so that its outcome can be found; ``committed``: resolved by
    the intake with that list's outcomes, or None if the commit failed;
    ``mixed``: set in the store thread when the same transaction queued other
    entries for this hop (see the module docstring).
    """

    hop: str
    positions: list[int]
    entries: list[OutboundEntry]
    committed: asyncio.Future[list[AcceptOutcome] | None]
    mixed: bool = field(default=False)

    @classmethod
    def of(
        cls,
        hop: str,
        items: Sequence[tuple[int, AcceptItem]],
        committed: asyncio.Future[list[AcceptOutcome] | None],
    ) -> EarlyBatch:
        entries = [
            OutboundEntry(
                seq=UNNUMBERED,
                sender=item.sender,
                message_id=item.message_id,
                digest=item.digest,
                targets=item.forward[hop],
                expires_ms=item.expires_ms,
                data=item.data,
                next_hop=hop,
            )
            for _, item in items
        ]
        return cls(hop, [position for position, _ in items], entries, committed)

    def numbered(
        self, outcomes: Sequence[AcceptOutcome]
    ) -> tuple[list[tuple[int, OutboundEntry]], bool]:
        """The entries the commit queued for this hop, numbered, with their place in the batch.

        Also whether an entry was queued without a number (a store that does
        not say): its forwarder must read its queue from the store again.
        """
        numbered: list[tuple[int, OutboundEntry]] = []
        unnumbered = False
        for index, (position, entry) in enumerate(zip(self.positions, self.entries, strict=True)):
            outcome = outcomes[position]
            if outcome.status is not AcceptStatus.ACCEPTED:
                continue
            targets = outcome.forward.get(self.hop)
            if targets is None:
                continue  # every target for this hop was held already: not queued here
            seq = outcome.seqs.get(self.hop)
            if seq is None:
                unnumbered = True
                continue
            numbered.append((index, replace(entry, seq=seq, targets=targets)))
        return numbered, unnumbered
