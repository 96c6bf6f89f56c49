"""Verifying a node's audit log end to end, and saying precisely what is wrong (pure).

Theory of operation (audit draft §20.7).  The input is what an auditor can
read from a node's store: its records as ``(seq, bytes)`` in seq order, the
tree heads it signed in the order it stored them, its seal (the head over
the whole log it signs in every transaction that appends, §20.6), the
checkpoint the records start after (if any), and, optionally, heads of the
same node held elsewhere (its parent's witnessed heads).  The verifier
trusts none of it but the signatures:

1. **Heads.**  Each head (and the seal) is verified through the
   ``Directory``; a head that fails is ``bad-head`` and is used no further.
   Consecutive heads must chain: each names the size and root of the one
   before it, so a head removed from or slipped into the store is
   ``head-chain``.
2. **The checkpoint** must lead to its head's root (``bad-checkpoint``), and
   it counts only as far as a head the node signed names it: the node signs
   its seal in the very transaction that stores a checkpoint, and every
   later head names it too (``checkpoint_size``).  A checkpoint no verified
   head names was not made by the node's pruning -- anyone who can write
   the file can compute one from the stored records and a stored head --
   and is ``unsigned-checkpoint``.  Given witnessed heads, the largest must
   reach the checkpoint (``unwitnessed-checkpoint``: records were pruned
   that the parent never saw under a head).
3. **Records.**  Each record says its own seq and carries the leaf of the
   one before it (``prev``).  The records are laid out by the seq they say,
   and for each seq one record is *the* record: the one the next record's
   ``prev`` names.  From that layout each tampering is named once: a record
   that is no seq's record was ``inserted-record`` (one finding per run of
   them, and the records after it, stored one seq later than they say, are
   not findings of their own); seqs that no record says are
   ``deleted-record`` (one finding per run: a gap, or records renumbered to
   close it); a record stored under another seq than its neighbours'
   layout gives is ``reordered-record``; one that does not decode is
   ``malformed-record``; and a record whose successor's ``prev`` is not its
   leaf was ``changed-record``.  From ``ordered_from`` on (the store's
   record of when this software began writing the log), a record whose
   time is before its predecessor's is ``time-went-back``.
4. **Roots.**  The tree of the records *as stored* is built once
   (``MerkleLog``), and each head's root is compared with the tree's root
   at the head's size.  Heads covering more records than are stored are
   ``truncated`` (once, naming the largest).  A head whose root differs is
   ``root-mismatch`` -- unless a finding of step 3 lies in the records it
   adds, which then names the edit already.  If an earlier head differs but
   a later, larger head matches, the stored records are an honest log of
   the *later* history, and the node signed two histories: ``fork``.
5. **Coverage.**  Records beyond every signed head (seal and witnessed heads
   included) are ``unsigned-records``: nothing vouches for them, and a node
   that signed over them would make a forgery its own.

**Streaming** (issue 13, ``_verify_stream``).  Records and heads may come as callables that
read them afresh on each call (a store, a page at a time: ``_stored``).
First one pass walks both together in O(log n) memory: the tree's frontier,
the previous record and head, and a few running aggregates.  It proves
that none of the findings above applies -- every head verifies and chains,
the checkpoint counts, every record is laid out as written (stored under
the seq it says, one after the other from the checkpoint, naming its
predecessor's leaf, of this node, decoding, in time order), every head's
root is the records' root at its size, and every record lies under a head
-- and then the report is that pass's.  At the first thing it cannot
prove, it stops, and the steps above run on the whole log in memory: a log
with findings is diagnosed exactly as before, in memory proportional to its
length; a log without is verified in memory independent of it.

The heads are the security: SHA-256 and Ed25519 make every edit below a
signed size visible as a root mismatch, and the seal leaves no record
outside a signed size.  The ``prev`` chain and the seqs are the precision:
they name the record when the editor did not also rewrite every record
after it.  When it did, the report still bounds the edit by the heads
around it, and says so.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from exchnode.audit._log import Checkpoint, TreeHead, TreeHeadVerifier
from exchnode.audit._records import AuditRecord, decode_record, record_leaf
from exchnode.audit._verify_heads import (
    Start,
    check_chain,
    check_checkpoint_signed,
    start_at_checkpoint,
    verify_heads,
)
from exchnode.audit._verify_report import (
    Finding,
    HeadSource,
    RecordSource,
    StoredLog,
    Tamper,
    VerificationReport,
)
from exchnode.audit._verify_stream import NotProven as _NotProven
from exchnode.audit._verify_stream import verify_streaming as _verify_streaming
from exchnode.core import Directory, MerkleLog
from exchnode.errors import RejectedError

__all__ = ["Finding", "HeadSource", "RecordSource", "Tamper", "VerificationReport", "verify_log"]

# Findings about records that locate an edit: a head whose root differs over them needs no
# root-mismatch of its own.
_RECORD_KINDS = frozenset(
    {
        Tamper.CHANGED,
        Tamper.DELETED,
        Tamper.INSERTED,
        Tamper.REORDERED,
        Tamper.MALFORMED,
        Tamper.TIME_WENT_BACK,
    }
)


# --- 3. records ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    key: int  # the seq it is stored under
    leaf: bytes
    record: AuditRecord | None  # None: malformed, or another node's (a placeholder)


def _read_rows(
    node: str, records: Sequence[tuple[int, bytes]], base: int, findings: list[Finding]
) -> tuple[list[_Row], MerkleLog]:
    rows: list[_Row] = []
    leaves = MerkleLog()
    for key, data in records:
        if key < base:
            continue  # kept past the checkpoint: harmless
        leaf = record_leaf(data)
        leaves.append(leaf)
        try:
            record: AuditRecord | None = decode_record(data)
        except RejectedError as exc:
            findings.append(Finding(Tamper.MALFORMED, f"record {key}: {exc}", seq=key))
            record = None
        if record is not None and record.node != node:
            findings.append(
                Finding(Tamper.CHANGED, f"record {key} names node {record.node}", seq=key)
            )
            record = None
        rows.append(_Row(key, leaf, record))
    return rows, leaves


def _choose(
    rows: list[_Row], by_seq: dict[int, list[int]], referenced: set[bytes]
) -> dict[int, int]:
    """For each seq the records say, *the* record: the one the next record's ``prev`` names."""
    chosen: dict[int, int] = {}
    for seq, candidates in by_seq.items():
        if len(candidates) == 1:
            chosen[seq] = candidates[0]
            continue
        named = [i for i in candidates if rows[i].leaf in referenced]
        chosen[seq] = (named or candidates)[0]
    return chosen


def _runs(keys: list[int]) -> list[tuple[int, int]]:
    """Sorted keys as runs of consecutive ones: ``[(first, end), ...]``."""
    out: list[tuple[int, int]] = []
    for key in keys:
        if out and out[-1][1] == key:
            out[-1] = (out[-1][0], key + 1)
        else:
            out.append((key, key + 1))
    return out


def _count(keys: list[int], low: int, high: int) -> int:
    """How many of the sorted ``keys`` lie strictly between ``low`` and ``high``."""
    return max(0, bisect_left(keys, high) - bisect_right(keys, low))


def _check_records(
    rows: list[_Row], start: Start, ordered_from: int, findings: list[Finding]
) -> int:
    """Step 3 of the module doc; the log's length as its records say (its next seq)."""
    by_seq: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        if row.record is not None:
            by_seq.setdefault(row.record.seq, []).append(i)
    referenced = {row.record.prev for row in rows if row.record is not None}
    chosen = _choose(rows, by_seq, referenced)
    placeholders = sorted(row.key for row in rows if row.record is None)

    # The log in seq order: after the record for seq s, the next is the record of the
    # smallest seq above s stored after it -- or of s + 1 wherever it is (a move).  A record
    # claiming a seq whose place has passed (stored before the log reached it) is no seq's.
    order: list[int] = []
    last_key, last_seq = start.base - 1, start.base - 1
    for seq in sorted(s for s in chosen if s >= start.base):
        index = chosen[seq]
        if rows[index].key > last_key or seq == last_seq + 1:
            order.append(index)
            last_seq, last_key = seq, max(last_key, rows[index].key)
    used = set(order)

    inserted = sorted(row.key for i, row in enumerate(rows) if row.record and i not in used)
    for first, end in _runs(inserted):
        what = f"record {first} is" if end == first + 1 else f"records {first}..{end - 1} are"
        findings.append(
            Finding(
                Tamper.INSERTED,
                f"{what} no seq's record in the log: inserted (the records after them "
                "may be stored later than they say; that is not a finding of its own)",
                seq=first,
                end=end,
            )
        )

    previous: _Row | None = None
    previous_seq = start.base - 1
    shift = 0  # stored seq minus the seq a record says, since the last insertion or loss
    for index in order:
        row = rows[index]
        record = row.record
        assert record is not None
        low = previous.key if previous is not None else start.base - 1
        holes = _count(placeholders, low, row.key)
        missing = record.seq - previous_seq - 1  # seqs between that no record says
        explained = _count(inserted, low, row.key) > 0
        if missing > holes:
            first = previous_seq + 1 + holes
            findings.append(
                Finding(
                    Tamper.DELETED,
                    f"records {first}..{record.seq - 1} are missing"
                    if record.seq - first > 1
                    else f"record {first} is missing",
                    seq=first,
                    end=record.seq,
                )
            )
            explained = True
        if explained:
            shift = row.key - record.seq
        elif row.key - record.seq != shift:
            findings.append(
                Finding(
                    Tamper.REORDERED,
                    f"the record stored as seq {row.key} says it is seq {record.seq}",
                    seq=row.key,
                )
            )
        if missing == 0:  # its predecessor is the record before: whose leaf is its ``prev``
            expected = previous.leaf if previous is not None else start.last_leaf
            if expected is not None and record.prev != expected:
                if previous is None:
                    message = (
                        f"record {row.key} does not follow the checkpoint"
                        if start.base
                        else f"record {row.key} does not start the log"
                    )
                    findings.append(Finding(Tamper.CHANGED, message, seq=row.key))
                else:
                    findings.append(
                        Finding(
                            Tamper.CHANGED,
                            f"record {previous.key} no longer hashes to the leaf record "
                            f"{row.key} names: changed",
                            seq=previous.key,
                        )
                    )
        before = previous.record if previous is not None else None
        if (
            before is not None
            and row.key >= ordered_from
            and record.entry.time_ms < before.entry.time_ms
        ):
            assert previous is not None
            back = before.entry.time_ms - record.entry.time_ms
            findings.append(
                Finding(
                    Tamper.TIME_WENT_BACK,
                    f"record {row.key} is timed {back} ms before record {previous.key}: a "
                    "node never writes a record older than the one before it",
                    seq=row.key,
                )
            )
        previous, previous_seq = row, record.seq
    # Malformed records after the last readable one still hold seqs of the log.
    return previous_seq + 1 + _count(placeholders, last_key, 1 << 62)


# --- 4. roots, 5. coverage -----------------------------------------------------------------


def _explained(findings: list[Finding], first: int, end: int) -> bool:
    """Does a finding about records name one in ``first .. end - 1``?"""
    return any(
        f.kind in _RECORD_KINDS
        and f.seq is not None
        and f.last is not None
        and f.seq < end
        and f.last > first
        for f in findings
    )


def _check_roots(
    heads: list[tuple[str, TreeHead]],
    start: Start,
    leaves: MerkleLog,
    log_end: int,
    findings: list[Finding],
) -> int:
    """Step 4 of the module doc; the verified size."""
    record_findings = list(findings)
    base, tree = start.base, start.tree
    if tree is None:
        return base  # no usable checkpoint: the roots cannot be computed
    for i in range(leaves.size):
        tree.append(leaves.leaf(i))
    ordered = sorted(heads, key=lambda item: item[1].tree_size)  # stable: stored order ties
    beyond = [(n, h) for n, h in ordered if h.tree_size > log_end]
    if beyond:
        name, head = beyond[-1]
        findings.append(
            Finding(
                Tamper.TRUNCATED,
                f"{name} covers {head.tree_size} records but the log holds {log_end}: "
                f"records from {log_end} were removed",
                seq=log_end,
                end=head.tree_size,
                head=name,
            )
        )
    matched: list[tuple[str, TreeHead]] = []
    mismatched: list[tuple[str, TreeHead]] = []
    for name, head in ordered:
        if head.tree_size < base or head.tree_size > log_end:
            continue  # below the checkpoint (gone by design), or truncated (above)
        if head.tree_size > tree.size:
            continue  # records are missing below it (a deleted-record finding): unknowable
        (matched if tree.root(head.tree_size) == head.root else mismatched).append((name, head))
    sizes = sorted({h.tree_size for _, h in matched})

    def matched_below(size: int) -> int:
        position = bisect_left(sizes, size)
        return sizes[position - 1] if position else base

    for name, head in mismatched:
        later = [(n, h) for n, h in matched if h.tree_size >= head.tree_size]
        if later:
            other, regrown = later[0]
            findings.append(
                Finding(
                    Tamper.FORK,
                    f"{other} (size {regrown.tree_size}) matches the records but is not an "
                    f"extension of {name} (size {head.tree_size}): the log was truncated and "
                    "regrown, and the node signed both histories",
                    seq=matched_below(head.tree_size),
                    end=head.tree_size,
                    head=name,
                )
            )
    plain = [
        (n, h)
        for n, h in mismatched
        if not any(h2.tree_size >= h.tree_size for _, h2 in matched)
        and not _explained(record_findings, matched_below(h.tree_size), h.tree_size)
    ]
    if plain:
        name, head = plain[0]
        first = matched_below(head.tree_size)
        more = f"; {len(plain) - 1} later heads differ too" if len(plain) > 1 else ""
        findings.append(
            Finding(
                Tamper.ROOT_MISMATCH,
                f"{name} (size {head.tree_size}) does not match the stored records: a record in "
                f"seq {first}..{head.tree_size - 1} was changed, deleted, inserted or moved{more}",
                seq=first,
                end=head.tree_size,
                head=name,
            )
        )
    return max(sizes, default=base)


def _check_coverage(
    heads: list[tuple[str, TreeHead]], base: int, log_end: int, findings: list[Finding]
) -> None:
    """Step 5 of the module doc: every stored record lies under a head the node signed."""
    signed = max((h.tree_size for _, h in heads), default=0)
    first = max(signed, base)
    if log_end <= first:
        return
    what = f"record {first}" if log_end == first + 1 else f"records {first}..{log_end - 1}"
    findings.append(
        Finding(
            Tamper.UNSIGNED_RECORDS,
            f"{what} lie beyond every head the node signed (largest: {signed}): nothing "
            "vouches for them (written without the node's key, or its seal was replaced)",
            seq=first,
            end=log_end,
        )
    )


def verify_log(
    node: str,
    records: Sequence[tuple[int, bytes]] | RecordSource,
    heads: Sequence[bytes] | HeadSource,
    directory: Directory,
    *,
    checkpoint: Checkpoint | bytes | None = None,
    witnessed: Sequence[bytes] = (),
    seal: bytes | None = None,
    ordered_from: int = 0,
) -> VerificationReport:
    """Check ``node``'s stored records against its signed heads; see the module doc.

    ``records`` and ``heads``: as stored, or sources that read them afresh on
    each call (a log without findings is read once, as a stream; one with
    findings a second time, whole).  ``checkpoint``: the stored checkpoint,
    decoded or as stored (then it is decoded and verified here).  ``seal``:
    the stored seal (SPEC §20.6).  ``witnessed``: heads of this node its
    parent kept.  ``ordered_from``: the seq from which record times are
    checked (``AuditStore.audit_ordered_from``).
    """
    log = StoredLog(
        node,
        records if callable(records) else (lambda: records),
        heads if callable(heads) else (lambda: heads),
        checkpoint,
        witnessed,
        seal,
        ordered_from,
    )
    try:
        return _verify_streaming(log, directory)
    except _NotProven:
        pass
    return _verify_in_memory(log, directory)


def _verify_in_memory(log: StoredLog, directory: Directory) -> VerificationReport:
    """Steps 1 to 5 of the module doc on the whole log, in memory."""
    node, seal = log.node, log.seal
    records = list(log.read_records())
    heads = [(f"heads[{i}]", h) for i, h in enumerate(log.read_heads())]
    findings: list[Finding] = []
    verifier = TreeHeadVerifier(directory)
    own = verify_heads(node, heads, verifier, findings)
    sealed = verify_heads(node, [("seal", seal)] if seal is not None else [], verifier, findings)
    others = verify_heads(
        node, [(f"witnessed[{i}]", h) for i, h in enumerate(log.witnessed)], verifier, findings
    )
    check_chain(own, findings)
    first_key = next((key for key, _ in records), None)
    start, usable = start_at_checkpoint(node, log.checkpoint, verifier, first_key, findings)
    signed = own + sealed + others
    check_checkpoint_signed(usable, signed, others, start, findings)

    rows, leaves = _read_rows(node, records, start.base, findings)
    end = _check_records(rows, start, log.ordered_from, findings)
    verified = _check_roots(signed, start, leaves, end, findings)
    _check_coverage(signed, start.base, end, findings)
    return VerificationReport(node, start.base, len(rows), len(signed), verified, tuple(findings))
