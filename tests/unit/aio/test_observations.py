"""What the node counts for monitoring (``aio._observations``): dates, histograms, bounds."""

from __future__ import annotations

from exchnode.aio._observations import (
    CUSTODY_BUCKETS,
    LOCAL,
    MAX_REASONS,
    CommitMarks,
    CustodyTimes,
    RefusalCounts,
)


def test_an_entry_is_dated_by_the_commit_that_queued_it() -> None:
    marks = CommitMarks()
    assert marks.accepted_ms(5) is None  # before any commit of this run: not known
    marks.committed(10, 1_000)  # seqs 10.. at 1.000 s
    marks.committed(13, 2_000)  # seqs 13.. at 2.000 s
    assert marks.accepted_ms(9) is None  # queued before the first mark (an earlier run)
    assert [marks.accepted_ms(seq) for seq in (10, 12, 13, 99)] == [1_000, 1_000, 2_000, 2_000]
    marks.committed(12, 3_000)  # numbers out of commit order: not trusted, ignored
    assert marks.accepted_ms(12) == 1_000
    assert len(marks) == 2


def test_thinned_marks_date_old_entries_coarsely_but_never_later() -> None:
    limit = 64
    marks = CommitMarks(limit)
    truth = {}
    for commit in range(1_000):
        first = commit * 3
        marks.committed(first, commit * 100)
        truth.update({seq: commit * 100 for seq in range(first, first + 3)})
    assert len(marks) <= limit
    newest = max(truth)
    for seq, accepted in truth.items():
        dated = marks.accepted_ms(seq)
        assert dated is not None
        assert dated <= accepted  # an age from it errs long, never short
    assert marks.accepted_ms(newest) == truth[newest]  # the recent ones exactly


def test_custody_times_are_a_histogram_per_destination() -> None:
    custody = CustodyTimes()
    custody.outbound.committed(1, 10_000)
    custody.inbox.committed(1, 10_000)
    custody.ended("parent", custody.outbound, [1, 2], 10_003)  # 3 ms
    custody.ended("parent", custody.outbound, [3], 12_000)  # 2 s
    custody.ended("parent", custody.outbound, [0], 12_000)  # undated: not observed
    custody.ended(LOCAL, custody.inbox, [1], 10_000 + 90_000_000)  # a day and more
    snapshot = custody.snapshot()
    assert sorted(snapshot) == [LOCAL, "parent"]
    parent = snapshot["parent"]
    assert parent.count == 3
    assert abs(parent.total - (0.003 + 0.003 + 2.0)) < 1e-9
    assert parent.bounds == CUSTODY_BUCKETS
    assert len(parent.counts) == len(CUSTODY_BUCKETS) + 1
    assert parent.counts[CUSTODY_BUCKETS.index(0.005)] == 2
    assert parent.counts[CUSTODY_BUCKETS.index(2.5)] == 1
    assert snapshot[LOCAL].counts[-1] == 1  # above every bound: +Inf only


def test_refusals_are_counted_by_reason_within_bounds() -> None:
    counts = RefusalCounts()
    counts.add(by_peer=False, kind="neighbour", reason="not-a-neighbour")
    counts.add(by_peer=False, kind="neighbour", reason="not-a-neighbour", count=2)
    counts.add(by_peer=True, kind="item", reason="routing-refused")
    counts.add(by_peer=True, kind="link", reason="Bad Reason <script>")  # not a code
    counts.add(by_peer=True, kind="link", reason="x", count=0)  # nothing
    assert counts.snapshot() == {
        ("node", "neighbour", "not-a-neighbour"): 3,
        ("peer", "item", "routing-refused"): 1,
        ("peer", "link", "other"): 1,
    }
    for number in range(2 * MAX_REASONS):  # a peer inventing codes cannot grow the series
        counts.add(by_peer=True, kind="link", reason=f"code-{number}")
    snapshot = counts.snapshot()
    assert len(snapshot) == MAX_REASONS  # beyond, counted as "other" (a key already held)
    assert snapshot[("peer", "link", "other")] > 1
    assert sum(snapshot.values()) == 5 + 2 * MAX_REASONS
