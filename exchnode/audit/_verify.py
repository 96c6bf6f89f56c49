"""Verifying a node's audit log end to end, and saying precisely what is wrong (pure).

Theory of operation (audit draft §20.7).  The input is what an auditor can
read from a node's store: its records as ``(seq, bytes)`` in seq order, the
tree heads it signed in the order it stored them, the checkpoint the
records start after (if any), and, optionally, heads of the same node held
elsewhere (its parent's witnessed heads).  The verifier trusts none of it
but the signatures:

1. **Heads.**  Each head is verified through the ``Directory``; a head that
   fails is ``bad-head`` and is used no further.  Consecutive heads must
   chain: each names the size and root of the one before it, so a head
   removed from or slipped into the store is ``head-chain``.
2. **Records, one by one.**  Seqs must run on from the checkpoint without
   gaps (``deleted-record``) or repeats (``inserted-record``); each record
   must decode (``malformed-record``), say the seq it is stored under
   (``reordered-record``: it was moved) and name the node.  Each record
   carries the leaf of the one before it (``prev``), so a record edited in
   place no longer hashes to what its successor says: ``changed-record``
   names its seq.
3. **Roots.**  The tree of the records *as stored* is built once
   (``MerkleLog``), and each head's root is compared with the tree's root
   at the head's size.  A head covering more records than are stored is
   ``truncated``.  A head whose root differs is ``root-mismatch`` and
   bounds the damage to the records after the last head that matched.  If
   an earlier head differs but a later, larger head matches, the stored
   records are an honest log of the *later* history, and the node signed
   two histories: ``fork`` (truncate-and-regrow).

The heads are the security: SHA-256 and Ed25519 make every edit below a
signed size visible as a root mismatch.  The ``prev`` chain and the seqs are
the precision: they name the record when the editor did not also rewrite
every record after it.  When it did, the report still bounds the edit by
the heads around it, and says so.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from exchnode.audit._log import Checkpoint, TreeHead, TreeHeadVerifier, check_checkpoint
from exchnode.audit._records import GENESIS_PREV, decode_record, record_leaf
from exchnode.core import Directory, MerkleLog
from exchnode.errors import InconsistentLogError, RejectedError

__all__ = ["Finding", "Tamper", "VerificationReport", "verify_log"]


class Tamper(enum.Enum):
    CHANGED = "changed-record"
    DELETED = "deleted-record"
    INSERTED = "inserted-record"
    REORDERED = "reordered-record"
    MALFORMED = "malformed-record"
    ROOT_MISMATCH = "root-mismatch"
    TRUNCATED = "truncated"
    FORK = "fork"
    BAD_HEAD = "bad-head"
    HEAD_CHAIN = "head-chain"
    BAD_CHECKPOINT = "bad-checkpoint"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong: ``seq`` (and ``end``, exclusive, for a range) and/or ``head``."""

    kind: Tamper
    message: str
    seq: int | None = None
    end: int | None = None
    head: str | None = None  # "heads[i]" or "witnessed[i]"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "message": self.message}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.end is not None:
            out["end"] = self.end
        if self.head is not None:
            out["head"] = self.head
        return out


@dataclass(frozen=True, slots=True)
class VerificationReport:
    node: str
    first_seq: int  # the checkpoint's size, or 0
    records: int  # records read (from first_seq on)
    heads: int  # heads whose signature verified
    verified_size: int  # the largest head size whose root the records reproduce
    findings: tuple[Finding, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.findings

    def kinds(self) -> set[Tamper]:
        return {f.kind for f in self.findings}

    def of(self, kind: Tamper) -> list[Finding]:
        return [f for f in self.findings if f.kind is kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "ok": self.ok,
            "first_seq": self.first_seq,
            "records": self.records,
            "heads": self.heads,
            "verified_size": self.verified_size,
            "findings": [f.to_json() for f in self.findings],
        }


def _verify_heads(
    node: str,
    heads: Sequence[bytes],
    label: str,
    verifier: TreeHeadVerifier,
    findings: list[Finding],
) -> list[tuple[str, TreeHead]]:
    good = []
    for i, data in enumerate(heads):
        name = f"{label}[{i}]"
        try:
            head = verifier.verify(data)
        except RejectedError as exc:
            findings.append(
                Finding(Tamper.BAD_HEAD, f"{name} refused ({exc.code}): {exc}", head=name)
            )
            continue
        if head.node != node:
            findings.append(
                Finding(Tamper.BAD_HEAD, f"{name} is a head of {head.node}, not {node}", head=name)
            )
            continue
        good.append((name, head))
    return good


def _check_chain(heads: list[tuple[str, TreeHead]], findings: list[Finding]) -> None:
    for (_, before), (name, head) in pairwise(heads):
        if (head.previous_size, head.previous_root) == (before.tree_size, before.root):
            if head.timestamp_ms < before.timestamp_ms:
                findings.append(
                    Finding(
                        Tamper.HEAD_CHAIN, f"{name} is older than the head before it", head=name
                    )
                )
            continue
        if head.previous_size == before.tree_size:
            findings.append(
                Finding(
                    Tamper.FORK,
                    f"{name} extends another tree of size {before.tree_size} than the head "
                    "stored before it: the node signed two histories",
                    seq=before.tree_size,
                    head=name,
                )
            )
            continue
        findings.append(
            Finding(
                Tamper.HEAD_CHAIN,
                f"{name} follows a head of size {head.previous_size}, but the head stored "
                f"before it has size {before.tree_size}: a head was removed or inserted",
                head=name,
            )
        )


def verify_log(
    node: str,
    records: Sequence[tuple[int, bytes]],
    heads: Sequence[bytes],
    directory: Directory,
    *,
    checkpoint: Checkpoint | None = None,
    witnessed: Sequence[bytes] = (),
) -> VerificationReport:
    """Check ``node``'s stored records against its signed heads; see the module doc."""
    findings: list[Finding] = []
    verifier = TreeHeadVerifier(directory)
    own = _verify_heads(node, heads, "heads", verifier, findings)
    others = _verify_heads(node, witnessed, "witnessed", verifier, findings)
    _check_chain(own, findings)

    base, last_leaf, tree = 0, GENESIS_PREV, MerkleLog()
    if checkpoint is not None:
        try:
            if checkpoint.head.node != node:
                raise InconsistentLogError(f"the checkpoint is a head of {checkpoint.head.node}")
            check_checkpoint(checkpoint)
            base, last_leaf = checkpoint.size, checkpoint.last_leaf
            tree = MerkleLog.from_frontier(base, checkpoint.frontier)
        except InconsistentLogError as exc:
            findings.append(Finding(Tamper.BAD_CHECKPOINT, str(exc)))

    read = _check_records(node, records, base, last_leaf, tree, findings)

    # 3. Roots, in size order (stable, so stored order breaks ties).
    all_heads = sorted(own + others, key=lambda item: item[1].tree_size)
    matched: list[tuple[str, TreeHead]] = []
    mismatched: list[tuple[str, TreeHead]] = []
    for name, head in all_heads:
        if head.tree_size < base:
            continue  # below the checkpoint: its records are gone by design
        if head.tree_size > tree.size:
            findings.append(
                Finding(
                    Tamper.TRUNCATED,
                    f"{name} covers {head.tree_size} records but the log holds {tree.size}: "
                    f"records from {tree.size} were removed",
                    seq=tree.size,
                    end=head.tree_size,
                    head=name,
                )
            )
            continue
        (matched if tree.root(head.tree_size) == head.root else mismatched).append((name, head))
    verified = max((h.tree_size for _, h in matched), default=base)
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
                    seq=max(
                        (h.tree_size for _, h in matched if h.tree_size < head.tree_size),
                        default=base,
                    ),
                    end=head.tree_size,
                    head=name,
                )
            )
    plain = [
        (n, h) for n, h in mismatched if not any(h2.tree_size >= h.tree_size for _, h2 in matched)
    ]
    if plain:
        name, head = plain[0]
        start = max((h.tree_size for _, h in matched if h.tree_size < head.tree_size), default=base)
        more = f"; {len(plain) - 1} later heads differ too" if len(plain) > 1 else ""
        findings.append(
            Finding(
                Tamper.ROOT_MISMATCH,
                f"{name} (size {head.tree_size}) does not match the stored records: a record in "
                f"seq {start}..{head.tree_size - 1} was changed, deleted, inserted or moved{more}",
                seq=start,
                end=head.tree_size,
                head=name,
            )
        )
    return VerificationReport(node, base, read, len(own) + len(others), verified, tuple(findings))


def _check_records(
    node: str,
    records: Sequence[tuple[int, bytes]],
    base: int,
    last_leaf: bytes,
    tree: MerkleLog,
    findings: list[Finding],
) -> int:
    """Step 2 of the module doc; appends every stored record's leaf to ``tree``, as stored."""
    expected = base
    previous_key: int | None = None
    suspect: set[int] = set()  # records already explained by a finding
    breaks: list[int] = []  # keys whose prev is not the leaf stored before them
    read = 0
    for key, data in records:
        if key < base:
            continue  # kept past the checkpoint: harmless
        read += 1
        if previous_key is not None and key <= previous_key:
            findings.append(
                Finding(Tamper.INSERTED, f"a second record is stored as seq {key}", seq=key)
            )
            suspect.update((key, key + 1))
        elif key > expected:
            findings.append(
                Finding(
                    Tamper.DELETED,
                    f"records {expected}..{key - 1} are missing"
                    if key - expected > 1
                    else f"record {expected} is missing",
                    seq=expected,
                    end=key,
                )
            )
            suspect.add(key)
        previous_key = key
        expected = max(expected, key + 1)
        leaf = record_leaf(data)
        tree.append(leaf)
        try:
            record = decode_record(data)
        except RejectedError as exc:
            findings.append(Finding(Tamper.MALFORMED, f"record {key}: {exc}", seq=key))
            suspect.update((key, key + 1))
            last_leaf = leaf
            continue
        if record.seq != key:
            findings.append(
                Finding(
                    Tamper.REORDERED,
                    f"the record stored as seq {key} says it is seq {record.seq}",
                    seq=key,
                )
            )
            suspect.update((key, key + 1))
        elif record.node != node:
            findings.append(
                Finding(Tamper.CHANGED, f"record {key} names node {record.node}", seq=key)
            )
            suspect.update((key, key + 1))
        if record.prev != last_leaf:
            breaks.append(key)
        last_leaf = leaf
    for key in breaks:
        if key in suspect or key - 1 in suspect:
            continue
        if key == base:  # the first record after a checkpoint: the checkpoint names its prev
            findings.append(
                Finding(Tamper.CHANGED, f"record {key} does not follow the checkpoint", seq=key)
            )
            continue
        findings.append(
            Finding(
                Tamper.CHANGED,
                f"record {key - 1} no longer hashes to the leaf record {key} names: changed",
                seq=key - 1,
            )
        )
        suspect.add(key)
    return read
