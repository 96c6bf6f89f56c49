"""Steps 1 and 2 of :func:`~exchnode.audit.verify_log`: the signed heads and the checkpoint (pure).

Each head (and the seal, and the witnessed heads) is verified and must be
the node's own; consecutive heads must chain.  The checkpoint must lead to
its head's root, and counts only as far as a head the node signed names it
(the module doc of ``_verify`` says why).  :func:`start_at_checkpoint` is
where the records start for both passes, the in-memory one and the
streaming one (``_verify_stream``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from exchnode.audit._log import (
    Checkpoint,
    TreeHead,
    TreeHeadVerifier,
    check_checkpoint,
    decode_checkpoint,
)
from exchnode.audit._records import GENESIS_PREV
from exchnode.audit._verify_report import Finding, Tamper
from exchnode.core import MerkleLog
from exchnode.errors import InconsistentLogError, RejectedError

__all__ = ["Start", "check_chain", "check_checkpoint_signed", "start_at_checkpoint", "verify_heads"]


# --- 1. heads ------------------------------------------------------------------------------


def verify_heads(
    node: str,
    heads: Sequence[tuple[str, bytes]],
    verifier: TreeHeadVerifier,
    findings: list[Finding],
) -> list[tuple[str, TreeHead]]:
    good = []
    for name, data in heads:
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


def check_chain(heads: list[tuple[str, TreeHead]], findings: list[Finding]) -> None:
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


# --- 2. the checkpoint ---------------------------------------------------------------------


@dataclass(slots=True)
class Start:
    """Where the records start: the checkpoint's size, its last leaf and frontier (if usable)."""

    base: int = 0
    last_leaf: bytes | None = GENESIS_PREV  # None: unknown (the checkpoint is unusable)
    tree: MerkleLog | None = field(default_factory=MerkleLog)  # None: roots cannot be checked


def start_at_checkpoint(
    node: str,
    checkpoint: Checkpoint | bytes | None,
    verifier: TreeHeadVerifier,
    first_key: int | None,
    findings: list[Finding],
) -> tuple[Start, Checkpoint | None]:
    if checkpoint is None:
        return Start(), None
    try:
        if isinstance(checkpoint, bytes):
            checkpoint = decode_checkpoint(checkpoint, verifier)
        if checkpoint.head.node != node:
            raise InconsistentLogError(f"the checkpoint is a head of {checkpoint.head.node}")
        check_checkpoint(checkpoint)
    except RejectedError as exc:  # inconsistent-log, or a head or encoding refused
        code = exc.code
        findings.append(Finding(Tamper.BAD_CHECKPOINT, f"the stored checkpoint ({code}): {exc}"))
        base = first_key if first_key is not None else 0
        if isinstance(checkpoint, Checkpoint):
            base = checkpoint.size
        return Start(base, None, None), None
    tree = MerkleLog.from_frontier(checkpoint.size, checkpoint.frontier)
    return Start(checkpoint.size, checkpoint.last_leaf, tree), checkpoint


def check_checkpoint_signed(
    checkpoint: Checkpoint | None,
    signed: list[tuple[str, TreeHead]],
    witnessed: list[tuple[str, TreeHead]],
    start: Start,
    findings: list[Finding],
) -> None:
    """Step 2 of the module doc: a checkpoint counts only as far as the node's heads name it.

    ``checkpoint`` is None if none is stored, or if the stored one is unusable
    (``start.tree`` is None then: already a ``bad-checkpoint``).
    """
    if checkpoint is None and start.tree is None:
        return
    size = checkpoint.size if checkpoint is not None else 0
    named = [(n, h) for n, h in signed if h.checkpoint_size > size]
    if named:
        name, head = max(named, key=lambda item: item[1].checkpoint_size)
        have = f"the store's is at {size}" if checkpoint is not None else "the store holds none"
        findings.append(
            Finding(
                Tamper.BAD_CHECKPOINT,
                f"{name} names a checkpoint at {head.checkpoint_size}, but {have}: the "
                "node's checkpoint was replaced or removed",
                head=name,
            )
        )
        if checkpoint is None:  # records below it were pruned: start there, roots unknown
            start.base, start.last_leaf, start.tree = head.checkpoint_size, None, None
    if checkpoint is None:
        return
    if not any(h.checkpoint_size == size for _, h in signed):
        findings.append(
            Finding(
                Tamper.UNSIGNED_CHECKPOINT,
                f"no head the node signed names the checkpoint at {size}: the node did not "
                f"make it when pruning, and the records below {size} were deleted without it",
                seq=0,
                end=size,
            )
        )
    if witnessed:
        reach = max(h.tree_size for _, h in witnessed)
        if reach < size:
            findings.append(
                Finding(
                    Tamper.UNWITNESSED_CHECKPOINT,
                    f"the checkpoint at {size} is beyond every witnessed head (largest "
                    f"{reach}): records {reach}..{size - 1} were pruned before the parent "
                    "saw them under a head",
                    seq=reach,
                    end=size,
                )
            )
