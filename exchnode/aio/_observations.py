"""What a running node counts for its operators' monitoring, at no cost to the path (I/O edge).

Theory of operation
-------------------
Most of what an operator watches is state the node holds anyway (queue
depths, link states, the directory, the audit log's head): a monitoring
collector reads it when it is asked (:meth:`Node.metrics`).  This module
holds the few numbers that state does *not* hold, kept so that the hot path
pays an integer increment or an append, in the event loop's thread only
(no lock, no I/O, no allocation per message but the histogram's own):

* **When custody began** (:class:`CommitMarks`).  The store does not record
  when an entry was queued, and a column for it would cost a schema change
  and bytes per row.  But a store that numbers its entries (``SqliteStore``)
  numbers them in commit order, so one mark per commit -- the first seq it
  queued and the time it committed -- dates every entry of it: an entry's
  custody began at the mark with the greatest first seq not above its own.
  Marks are bounded (:data:`MAX_MARKS`); beyond, the older half is thinned
  (every other mark dropped, its range joining the mark before), so old
  entries are dated coarsely and never later than they were taken: an age
  computed from them errs long, on the alerting side.  An entry queued before
  the node started (or by a store that does not number what it queues: the
  PostgreSQL store) has no mark: its custody time is not known, and nothing
  is observed for it.
* **Custody time** (:class:`CustodyTimes`): from the commit that took an
  envelope into custody to its handover -- the next hop's TAKEN, or the
  application's acknowledgement or a service's consumption here -- as a
  histogram per destination (the next hop's relation, or ``local``), with
  fixed buckets from milliseconds to a day.  Per destination, not per peer: a
  hub with thousands of children would otherwise expose thousands of
  histograms.
* **Traffic per link** (:class:`LinkTraffic`): transfers and items each way,
  by outcome; plain integers on each neighbour's forwarder.
* **Refusals by reason** (:class:`RefusalCounts`): every refusal the node
  makes or receives -- of a link, of an item, of an item deferred because its
  signer cannot be verified yet -- by who refused, where and why.  Reasons
  are error codes; a peer's are not this node's to bound, so at most
  :data:`MAX_REASONS` keys are kept and the rest are counted as ``other``.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field

from exchnode.federation import PeerState

__all__ = [
    "CUSTODY_BUCKETS",
    "LOCAL",
    "MAX_MARKS",
    "MAX_REASONS",
    "CommitMarks",
    "CustodyTimes",
    "HistogramSnapshot",
    "LinkMetrics",
    "LinkTraffic",
    "NodeMetrics",
    "RefusalCounts",
]

#: Marks kept per queue kind before the older half is thinned.
MAX_MARKS = 4096
#: Distinct (by, kind, reason) refusal keys counted before the rest are ``other``.
MAX_REASONS = 256
#: Upper bounds (seconds) of the custody-time buckets; the last bucket is +Inf.
CUSTODY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
    21600.0,
    86400.0,
)
#: The destination of custody that ends at this node: the application or a service took it.
LOCAL = "local"
_TOKEN = re.compile(r"[a-z0-9][a-z0-9._:-]{0,63}\Z")


class CommitMarks:
    """When the entries of one queue kind (outbound, or the inbox) were taken into custody.

    :meth:`committed` after each commit that queued entries, :meth:`accepted_ms`
    to date an entry by its seq.  Loop thread only.
    """

    __slots__ = ("_limit", "_seqs", "_times")

    def __init__(self, limit: int = MAX_MARKS) -> None:
        self._seqs = array("q")
        self._times = array("q")
        self._limit = max(limit, 2)

    def __len__(self) -> int:
        return len(self._seqs)

    def committed(self, first_seq: int, at_ms: int) -> None:
        """A commit queued entries numbered ``first_seq`` and up, in custody from ``at_ms``."""
        seqs = self._seqs
        if seqs and first_seq <= seqs[-1]:
            return  # numbers out of commit order (several writers): not a mark to trust
        seqs.append(first_seq)
        self._times.append(at_ms)
        if len(seqs) > self._limit:
            self._thin()

    def accepted_ms(self, seq: int) -> int | None:
        """When the entry ``seq`` was taken into custody; None if no mark covers it."""
        index = bisect_right(self._seqs, seq) - 1
        return None if index < 0 else self._times[index]

    def _thin(self) -> None:
        """Drop every other mark of the older half: old entries dated coarsely, never late."""
        half = len(self._seqs) // 2
        keep = [i for i in range(half) if i % 2 == 0] + list(range(half, len(self._seqs)))
        self._seqs = array("q", (self._seqs[i] for i in keep))
        self._times = array("q", (self._times[i] for i in keep))


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram as read: counts per bucket (not cumulative; the last is above every bound)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float  # the sum of the observed values
    count: int


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(CUSTODY_BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(CUSTODY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(CUSTODY_BUCKETS, tuple(self.counts), self.total, self.count)


class CustodyTimes:
    """Custody per destination: the marks that date entries, and the histograms of handovers."""

    __slots__ = ("_histograms", "inbox", "outbound")

    def __init__(self) -> None:
        self.outbound = CommitMarks()
        self.inbox = CommitMarks()
        self._histograms: dict[str, _Histogram] = {}

    def ended(self, destination: str, marks: CommitMarks, seqs: list[int], now_ms: int) -> None:
        """Custody of the entries ``seqs`` (dated by ``marks``) ended at ``now_ms``."""
        histogram = self._histograms.get(destination)
        if histogram is None:
            histogram = self._histograms[destination] = _Histogram()
        accepted_ms = marks.accepted_ms
        for seq in seqs:
            since = accepted_ms(seq)
            if since is not None:
                histogram.observe(max(now_ms - since, 0) / 1000)

    def snapshot(self) -> dict[str, HistogramSnapshot]:
        return {name: h.snapshot() for name, h in sorted(self._histograms.items())}


class LinkTraffic:
    """Transfers and items over one link, each way, by outcome (loop thread, plain integers)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "items_in",
        "items_out",
        "transfers_failed",
        "transfers_in",
        "transfers_out",
    )

    def __init__(self) -> None:
        self.transfers_out = 0  # transfers the neighbour answered
        self.transfers_failed = 0  # transfers that failed (unreachable, an error, no answer)
        self.transfers_in = 0  # transfers the neighbour sent this node
        #: items sent and what became of them: taken, refused, deferred
        self.items_out = {"taken": 0, "refused": 0, "deferred": 0}
        #: items received and what this node answered
        self.items_in = {"taken": 0, "refused": 0, "deferred": 0}
        self.bytes_out = 0  # envelope bytes the neighbour took into custody
        self.bytes_in = 0  # envelope bytes received in its transfers


class RefusalCounts:
    """Refusals by (who refused: ``node`` or ``peer``, where, reason), bounded (loop thread)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}

    def add(self, *, by_peer: bool, kind: str, reason: str, count: int = 1) -> None:
        if count <= 0:
            return
        if not _TOKEN.match(reason):
            reason = "other"
        key = ("peer" if by_peer else "node", kind, reason)
        counts = self._counts
        if key not in counts and len(counts) >= MAX_REASONS:
            key = (key[0], key[1], "other")
        counts[key] = counts.get(key, 0) + count

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        return dict(self._counts)


@dataclass(frozen=True, slots=True)
class LinkMetrics:
    """One neighbour as monitoring sees it (:meth:`Node.metrics`)."""

    name: str
    relation: str  # parent, child, link
    state: PeerState
    transfers_out: int
    transfers_failed: int
    transfers_in: int
    items_out: Mapping[str, int]
    items_in: Mapping[str, int]
    bytes_out: int
    bytes_in: int
    #: when the oldest entry waiting for it was taken into custody (ms); None: none is
    #: waiting, or it is not known (queued before the start, or not read since)
    oldest_ms: int | None


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """What the node counts for monitoring, read from memory (:meth:`Node.metrics`)."""

    links: Mapping[str, LinkMetrics]
    #: when the oldest delivery handed to the application and not yet acknowledged was
    #: taken into custody (ms); None if none is waiting or it is not known
    inbox_oldest_ms: int | None
    custody: Mapping[str, HistogramSnapshot]
    refusals: Mapping[tuple[str, str, str], int]
    counters: Mapping[str, int] = field(default_factory=dict)
