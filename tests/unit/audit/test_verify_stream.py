"""``verify_log`` reading records and heads as streams (issue 13): the same report, bounded memory.

The streaming pass decides alone for a log without findings; any other log
is read a second time, whole.  Whatever the tampering, the report must be
exactly the one the whole-log steps alone give (the pass forced off), and a
log without findings must be read once, lazily, a record and a head at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from exchnode.audit import Tamper, VerificationReport, verify_log
from exchnode.audit._verify import _NotProven
from tests.unit.audit.test_verify import (
    DIRECTORY,
    NAME,
    T0,
    edited,
    entries,
    generated,
    stored,
)


def both(
    rows: list[tuple[int, bytes]], heads: list[bytes], **kwargs: object
) -> tuple[VerificationReport, VerificationReport]:
    """The report with the streaming pass, and the one with the layout alone."""
    streamed = verify_log(NAME, lambda: iter(rows), lambda: iter(heads), DIRECTORY, **kwargs)  # type: ignore[arg-type]
    with mock.patch("exchnode.audit._verify._verify_streaming", side_effect=_NotProven):
        whole = verify_log(NAME, rows, heads, DIRECTORY, **kwargs)  # type: ignore[arg-type]
    return streamed, whole


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["change", "delete", "insert", "swap", "time", "garbage", "renumber"]),
        st.integers(0, 44),
        st.integers(0, 44),
    ),
    max_size=3,
)


def tamper(rows: list[tuple[int, bytes]], edits: list[tuple[str, int, int]]) -> None:
    for kind, i, j in edits:
        if not rows:
            return
        i, j = i % len(rows), j % len(rows)
        seq, data = rows[i]
        if kind in ("change", "time") and data.startswith(b"\xc1"):
            continue  # garbage already: nothing to edit
        if kind == "change":
            rows[i] = (seq, edited(data, action="envelope.other"))
        elif kind == "delete":
            del rows[i]
        elif kind == "insert":
            rows.insert(i, (seq, rows[j][1]))
        elif kind == "swap":
            rows[i], rows[j] = (seq, rows[j][1]), (rows[j][0], data)
        elif kind == "time":
            rows[i] = (seq, edited(data, time_ms=T0 - 1000))
        elif kind == "garbage":
            rows[i] = (seq, b"\xc1garbage")
        else:
            rows[i:] = [(s + 1, d) for s, d in rows[i:]]


@settings(max_examples=150, deadline=None)
@given(EDITS, st.booleans(), st.integers(0, 5))
def test_the_stream_reports_exactly_what_the_layout_reports(
    edits: list[tuple[str, int, int]], with_seal: bool, heads_kept: int
) -> None:
    log, records, heads = generated()
    more = log.append(entries(3, 40))
    seal = log.sign_seal(T0 + 100).data if with_seal else None
    rows = stored(records + more)
    tamper(rows, edits)
    signed = [h.data for h in heads[:heads_kept]]
    streamed, whole = both(rows, signed, seal=seal, ordered_from=10)
    assert streamed == whole


@settings(max_examples=60, deadline=None)
@given(EDITS, st.sampled_from([5, 12, 20, 31]))
def test_after_a_checkpoint_too(edits: list[tuple[str, int, int]], at: int) -> None:
    log, records, heads = generated()
    head = next(h for h in heads if h.tree_size == at)
    checkpoint = log.make_checkpoint(head)
    log.prune(checkpoint)
    seal = log.sign_seal(T0 + 100, checkpoint.size).data
    rows = stored(records[at - 2 :])  # two kept past the checkpoint: a pruning under way
    tamper(rows, edits)
    streamed, whole = both(rows, [h.data for h in heads], checkpoint=checkpoint, seal=seal)
    assert streamed == whole


def test_a_log_without_findings_is_read_once_lazily() -> None:
    _, records, heads = generated()
    rows = stored(records)
    reads: list[str] = []
    order: list[str] = []  # what was read, in order: records and heads interleave

    def record_source() -> Iterator[tuple[int, bytes]]:
        reads.append("records")
        for row in rows:
            order.append(f"r{row[0]}")
            yield row

    def head_source() -> Iterator[bytes]:
        reads.append("heads")
        for head in heads:
            order.append(f"h{head.tree_size}")
            yield head.data

    report = verify_log(NAME, record_source, head_source, DIRECTORY)
    assert report.ok, report.findings
    assert (report.records, report.heads, report.verified_size) == (40, 5, 40)
    assert sorted(reads) == ["heads", "records"]
    # Heads are read as the records reach them, not all first (nor records all first).
    assert order.index("h20") > order.index("r11")
    assert order.index("r12") > order.index("h12")


def test_a_tampered_log_is_read_again_for_its_layout() -> None:
    _, records, heads = generated()
    rows = stored(records)
    rows[7] = (7, edited(rows[7][1], action="envelope.other"))
    calls = []

    def source() -> list[tuple[int, bytes]]:
        calls.append(1)
        return rows

    report = verify_log(NAME, source, [h.data for h in heads], DIRECTORY)
    assert [(f.kind, f.seq) for f in report.findings] == [(Tamper.CHANGED, 7)]
    assert len(calls) == 2
