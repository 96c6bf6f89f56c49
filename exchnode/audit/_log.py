"""The tamper-evident audit log of one node: signed tree heads, proofs, checkpoints (pure).

Theory of operation (audit draft §20).  The node's audit records
(``audit_records``) are the leaves of an RFC 9162 Merkle tree
(``merkle.MerkleLog``): record ``seq`` is leaf ``seq``.  From time to time
the node signs a **tree head** (STH): its name, the tree size and root, the
time, and the size and root of its previous head, as a signed item of type
4 (SPEC §5.1, §6), so it verifies like any other signed item, through a
``Directory``.  A signed head commits the node to every record below its
size: changing, removing, inserting or reordering any of them changes the
root, and a node that wants to rewrite history must sign a second head that
is not an extension of the first -- which a consistency proof (RFC 9162
§2.1.4) exposes to anyone holding both, such as its parent hub
(``audit_witness``).

:class:`AuditLogState` is the pure half of a node's log.  ``append`` takes a
batch of entries (the node calls it inside the store's group commit),
numbers them, chains each to the previous leaf, and returns the encoded
records for the store; ``sign_head`` issues a head; ``inclusion_proof`` and
``consistency_proof`` answer auditors.  It holds only hashes (the
``MerkleLog``); records live in the store.

Bounded memory (issue 13): given ``nodes`` (a reader of the tree's hashes
as the store keeps them: a record's leaf at level 0, a stored subtree
above), the state keeps only the frontier of its tree plus what was
appended since the last ``settle`` -- the caller settles between store
transactions, once what was appended is durable with its ``tree_rows``
(the interior nodes each record completes, stored in the same transaction).
Roots and proofs at past sizes read the O(log n) hashes they need through
``nodes``; hashes wholly below the checkpoint come from the checkpoint's
frontier, the only ones still needed there.  ``restore`` rebuilds the state
from the store in O(log n) reads (the frontier at the log's size), checked
against the stored seal and last head, instead of from every record.

Retention: a :class:`Checkpoint` is a signed head plus the frontier of its
tree (the O(log n) complete subtrees of its size) and the last leaf with its
inclusion path.  Records below the checkpoint's size may then be deleted:
the frontier reproduces the signed root, every later root, every
consistency proof from the checkpoint onwards and every inclusion proof of a
kept record; the last leaf continues the ``prev`` chain.  Every later head
names the checkpoint it builds on (``checkpoint_size``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from exchnode.audit._records import (
    GENESIS_PREV,
    AuditEntry,
    AuditRecord,
    decode_record,
    encode_record,
    entry_from_event,
    record_leaf,
)
from exchnode.core import (
    EMPTY_ROOT,
    HASH_LENGTH,
    KEY_ID_LENGTH,
    SUITE_X25519_AES256GCM_ED25519,
    TYPE_TREE_HEAD,
    AuditEvent,
    Directory,
    LocalIdentity,
    MerkleLog,
    NodeReader,
    Seal,
    SealVerifier,
    check_bytes,
    check_name,
    check_suite,
    check_time,
    decode_signed,
    encode_signed,
    pack,
    require_canonical,
    root_from_frontier,
    sign_leaves,
    signed_leaf,
    unpack,
    verify_inclusion,
)
from exchnode.errors import InconsistentLogError, MalformedError, UsageError

__all__ = [
    "CHECKPOINT_FORMAT",
    "MAX_PROOF",
    "MAX_TREE_HEAD_BYTES",
    "MAX_TREE_SIZE",
    "AuditLogState",
    "Checkpoint",
    "LogMark",
    "LoggedRecord",
    "TreeHead",
    "TreeHeadVerifier",
    "check_checkpoint",
    "decode_checkpoint",
    "decode_tree_head",
    "encode_checkpoint",
    "sign_tree_head",
]

MAX_TREE_HEAD_BYTES = 1024
MAX_TREE_SIZE = (1 << 53) - 1
MAX_PROOF = 64  # hashes in a proof or frontier: enough for any size below 2^53
CHECKPOINT_FORMAT = 1
_HEAD_FIELDS = 9
_CHECKPOINT_FIELDS = 5


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A decoded signed tree head (audit draft §20.4); ``data`` is the signed item."""

    suite: int
    node: str
    key_id: bytes
    tree_size: int
    root: bytes
    timestamp_ms: int
    previous_size: int
    previous_root: bytes
    checkpoint_size: int
    digest: bytes
    data: bytes

    def describe(self) -> str:
        return f"tree head of {self.node} at size {self.tree_size}"


def sign_tree_head(
    identity: LocalIdentity,
    size: int,
    root: bytes,
    timestamp_ms: int,
    previous: tuple[int, bytes] = (0, EMPTY_ROOT),
    checkpoint_size: int = 0,
) -> TreeHead:
    """Sign one tree head (a batch of one, SPEC §6).  The values are the caller's to get right."""
    if not checkpoint_size <= previous[0] <= size or len(root) != HASH_LENGTH:
        raise UsageError("a tree head needs checkpoint_size <= previous size <= size, 32-byte root")
    fields = (
        SUITE_X25519_AES256GCM_ED25519,
        str(identity.name),
        identity.peer.signing_key_id,
        size,
        root,
        timestamp_ms,
        previous[0],
        previous[1],
        checkpoint_size,
    )
    body = pack(list(fields))
    digest = signed_leaf(TYPE_TREE_HEAD, body)
    (seal,) = sign_leaves(identity.signing_private_key, SUITE_X25519_AES256GCM_ED25519, [digest])
    # The head just signed, from the values that made it (what ``decode_tree_head`` of its
    # bytes gives, which a test holds it to): every transaction that appends audit records
    # signs one (the seal), so it is not encoded only to be parsed back.  The body is those
    # values in the head's field order, so one tuple serves both.
    return TreeHead(*fields, digest, encode_signed(TYPE_TREE_HEAD, body, seal))


def _check_size(value: object, field: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_TREE_SIZE:
        raise MalformedError(field, f"must be an integer in 0..{MAX_TREE_SIZE}")
    return value


def decode_tree_head(data: bytes) -> tuple[TreeHead, Seal]:
    """Parse and shape-check a signed tree head; the seal is not verified."""
    body, seal = decode_signed(data, TYPE_TREE_HEAD, "tree_head", MAX_TREE_HEAD_BYTES)
    fields = unpack(body, what="tree_head.body", max_size=len(body), max_array=_HEAD_FIELDS)
    if type(fields) is not list or len(fields) != _HEAD_FIELDS:
        raise MalformedError("tree_head.body", f"expected an array of {_HEAD_FIELDS} elements")
    suite, node, key_id, size, root, timestamp, prev_size, prev_root, checkpoint = fields
    head = TreeHead(
        check_suite(suite, "tree_head.suite"),
        check_name(node, "tree_head.node"),
        check_bytes(key_id, "tree_head.key_id", KEY_ID_LENGTH),
        _check_size(size, "tree_head.tree_size"),
        check_bytes(root, "tree_head.root", HASH_LENGTH),
        check_time(timestamp, "tree_head.timestamp"),
        _check_size(prev_size, "tree_head.previous_size"),
        check_bytes(prev_root, "tree_head.previous_root", HASH_LENGTH),
        _check_size(checkpoint, "tree_head.checkpoint_size"),
        signed_leaf(TYPE_TREE_HEAD, body),
        bytes(data),
    )
    if head.previous_size > head.tree_size:
        raise MalformedError("tree_head.previous_size", "is greater than tree_size")
    if head.checkpoint_size > head.previous_size:
        raise MalformedError("tree_head.checkpoint_size", "is greater than previous_size")
    if head.tree_size == 0 and head.root != EMPTY_ROOT:
        raise MalformedError("tree_head.root", "must be SHA-256('') for an empty tree")
    require_canonical(fields, body, what="tree_head.body")
    return head, seal


class TreeHeadVerifier:
    """Verifies tree heads against the directory's signing keys (audit draft §20.4)."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self._seals = SealVerifier()

    def verify(self, data: bytes) -> TreeHead:
        """Decode, find the signer's key, check the seal; raises a ``RejectedError``.

        ``unknown-signer`` if the node has no key with that id, ``bad-signature``
        if the seal fails, ``malformed`` and its kin for bad bytes.
        """
        head, seal = decode_tree_head(data)
        signer = self.directory.signer(head.node, head.key_id)
        self._seals.verify(
            signer.signing_key, signer.signing_key_raw, head.suite, head.digest, seal, head.describe
        )
        return head


# --- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed head plus what it takes to carry on without the records below it."""

    head: TreeHead
    frontier: tuple[bytes, ...]
    last_leaf: bytes
    last_path: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return self.head.tree_size


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    return pack(
        [
            CHECKPOINT_FORMAT,
            checkpoint.head.data,
            list(checkpoint.frontier),
            checkpoint.last_leaf,
            list(checkpoint.last_path),
        ]
    )


def _hashes(value: object, field: str) -> tuple[bytes, ...]:
    if type(value) is not list or len(value) > MAX_PROOF:
        raise MalformedError(field, f"must be an array of at most {MAX_PROOF} hashes")
    return tuple(check_bytes(h, f"{field}[{i}]", HASH_LENGTH) for i, h in enumerate(value))


def decode_checkpoint(data: bytes, verifier: TreeHeadVerifier) -> Checkpoint:
    """Decode a checkpoint, verify its head's signature and that the rest matches the head.

    Raises ``inconsistent-log`` if the frontier or the last leaf does not
    lead to the signed root: a checkpoint is trusted only as far as its head.
    """
    fields = unpack(data, what="checkpoint", max_size=16 * 1024, max_array=MAX_PROOF)
    if type(fields) is not list or len(fields) != _CHECKPOINT_FIELDS:
        raise MalformedError("checkpoint", f"expected an array of {_CHECKPOINT_FIELDS} elements")
    fmt, head_data, frontier, last_leaf, last_path = fields
    if fmt != CHECKPOINT_FORMAT or type(fmt) is not int:
        raise MalformedError("checkpoint.format", f"must be {CHECKPOINT_FORMAT}")
    if type(head_data) is not bytes:
        raise MalformedError("checkpoint.head", "must be bytes (a signed tree head)")
    checkpoint = Checkpoint(
        verifier.verify(head_data),
        _hashes(frontier, "checkpoint.frontier"),
        check_bytes(last_leaf, "checkpoint.last_leaf", HASH_LENGTH),
        _hashes(last_path, "checkpoint.last_path"),
    )
    require_canonical(fields, data, what="checkpoint")
    check_checkpoint(checkpoint)
    return checkpoint


def check_checkpoint(checkpoint: Checkpoint) -> None:
    """Raise ``inconsistent-log`` unless frontier and last leaf lead to the head's root."""
    head = checkpoint.head
    if head.tree_size == 0:
        raise InconsistentLogError("a checkpoint of an empty log prunes nothing")
    if root_from_frontier(head.tree_size, checkpoint.frontier) != head.root:
        raise InconsistentLogError(
            f"checkpoint frontier does not give the root of {head.describe()}"
        )
    if not verify_inclusion(
        checkpoint.last_leaf, head.tree_size - 1, head.tree_size, checkpoint.last_path, head.root
    ):
        raise InconsistentLogError(f"checkpoint last leaf is not the last of {head.describe()}")


# --- the log ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """What the store keeps per record: its seq, its encoding, and its leaf."""

    seq: int
    data: bytes
    leaf: bytes


@dataclass(frozen=True, slots=True)
class LogMark:
    """A point of an ``AuditLogState`` to roll back to (see ``AuditLogState.mark``)."""

    size: int
    last_leaf: bytes
    last_head: TreeHead | None
    last_time_ms: int = 0


class AuditLogState:
    """One node's audit log, as hashes: appends, heads, proofs, checkpoints (see the module doc)."""

    def __init__(self, identity: LocalIdentity, *, nodes: NodeReader | None = None) -> None:
        """``nodes``: the store's hashes of this log (see the module doc); without it, every
        hash is held in memory (until ``settle``)."""
        self._identity = identity
        self._node = str(identity.name)
        self._nodes = nodes
        self._tree = MerkleLog(self._read_node if nodes is not None else None)
        self._last_leaf = GENESIS_PREV
        self._last_head: TreeHead | None = None
        self._checkpoint: Checkpoint | None = None
        self._last_time_ms = 0  # the last record's time: the next one's is never earlier
        self._last_signed_ms = 0  # the latest timestamp signed, in a head or a seal

    @property
    def node(self) -> str:
        return self._node

    @property
    def size(self) -> int:
        """The number of records ever appended: the next record's seq."""
        return self._tree.size

    @property
    def last_head(self) -> TreeHead | None:
        return self._last_head

    @property
    def checkpoint(self) -> Checkpoint | None:
        return self._checkpoint

    def append(self, entries: Sequence[AuditEntry]) -> list[LoggedRecord]:
        """Number, chain and encode a batch of entries; the caller stores the result durably.

        Record times never go back (SPEC §20.2): an entry stamped before the
        record before it (an event that waited for the flush while a custody
        record was written, or a clock stepped back) gets that record's time.
        """
        out = []
        for entry in entries:
            seq = self._tree.size
            if entry.time_ms < self._last_time_ms:
                entry = replace(entry, time_ms=self._last_time_ms)
            self._last_time_ms = entry.time_ms
            record = AuditRecord(seq=seq, node=self._node, prev=self._last_leaf, entry=entry)
            data = encode_record(record)
            leaf = record_leaf(data)
            self._tree.append(leaf)
            self._last_leaf = leaf
            out.append(LoggedRecord(seq, data, leaf))
        return out

    def append_events(self, events: Iterable[AuditEvent]) -> list[LoggedRecord]:
        return self.append([entry_from_event(event) for event in events])

    def tree_rows(self, first: int, end: int) -> list[bytes]:
        """The store's tree rows for records ``first .. end - 1`` (``store.AuditTreeSource``).

        One row per odd seq: the hashes of the subtrees that record completes,
        level 1 first.  The records must have been appended since the last
        ``settle`` (the store asks inside the transaction that stores them).
        """
        if not 0 <= first <= end <= self._tree.size:
            raise UsageError(f"no tree rows for records {first}..{end - 1} of {self._tree.size}")
        return [b"".join(self._tree.completed(seq)) for seq in range(first | 1, end, 2)]

    def settle(self) -> None:
        """Everything appended so far is stored with its tree rows: keep only the frontier.

        Call it between store transactions (never inside one): ``rollback``
        can then no longer go before this point.  Needs ``nodes``, else the
        past roots and proofs are gone.
        """
        if self._nodes is None:
            raise UsageError("a log without a node reader keeps its whole tree: nothing to settle")
        self._tree.settle()

    def _read_node(self, level: int, index: int) -> bytes:
        """A hash the tree no longer holds: the checkpoint's below its size, else the store's."""
        checkpoint = self._checkpoint
        if checkpoint is not None and (index + 1) << level <= checkpoint.size:
            size = checkpoint.size
            if size >> level & 1 and index == (size >> level) - 1:
                return checkpoint.frontier[(size >> (level + 1)).bit_count()]
            raise LookupError(
                f"subtree of {1 << level} records at {index << level} lies below the "
                f"checkpoint at {size}: pruned"
            )
        if self._nodes is None:
            raise LookupError(f"subtree of {1 << level} records at {index << level} is not held")
        return self._nodes(level, index)

    def root(self, size: int | None = None) -> bytes:
        return self._tree.root(size)

    def mark(self) -> LogMark:
        """Where the log is now: ``rollback`` returns to it if what follows is not stored."""
        return LogMark(self._tree.size, self._last_leaf, self._last_head, self._last_time_ms)

    def rollback(self, mark: LogMark) -> None:
        """Forget appends (and a head) made since ``mark``: the store did not keep them.

        A store transaction that fails after ``append`` numbered its records
        would otherwise leave the state ahead of the store, and every later
        record with a seq the store refuses.
        """
        if mark.size > self._tree.size:
            raise UsageError(f"cannot roll back to {mark.size}: the log holds {self._tree.size}")
        self._tree.truncate(mark.size)
        self._last_leaf = mark.last_leaf
        self._last_head = mark.last_head
        self._last_time_ms = mark.last_time_ms

    def sign_head(self, now_ms: int) -> TreeHead:
        """Sign a head over every record appended so far.

        The timestamp never goes back: a clock stepped backwards yields the
        previous head's time, so heads stay ordered by time and size.
        """
        head = self._sign(now_ms, self._checkpoint.size if self._checkpoint is not None else 0)
        self._last_head = head
        return head

    def sign_seal(self, now_ms: int, checkpoint_size: int | None = None) -> TreeHead:
        """Sign the **seal** (SPEC §20.6): a head over every record appended so far.

        Like ``sign_head``, it follows the last head signed (``previous_size``
        and ``previous_root`` are that head's), but it does not become the
        last head: the store keeps only the newest seal, replaced in every
        transaction that appends records, so no stored record is ever under
        no signature.  ``checkpoint_size``: the checkpoint the seal names
        (default the log's own); the seal written with a new checkpoint
        names it, and is the head that makes the checkpoint count (§20.9).
        """
        covered = self._checkpoint.size if self._checkpoint is not None else 0
        return self._sign(now_ms, covered if checkpoint_size is None else checkpoint_size)

    def _sign(self, now_ms: int, checkpoint_size: int) -> TreeHead:
        last = self._last_head
        previous = (last.tree_size, last.root) if last is not None else (0, EMPTY_ROOT)
        timestamp = max(now_ms, self._last_signed_ms, last.timestamp_ms if last else 0)
        head = sign_tree_head(
            self._identity,
            self._tree.size,
            self._tree.root(),
            timestamp,
            previous,
            checkpoint_size,
        )
        self._last_signed_ms = timestamp
        return head

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        """The RFC 9162 inclusion proof of record ``seq`` in the tree of ``size`` records."""
        return self._tree.inclusion_proof(seq, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The RFC 9162 consistency proof from ``old_size`` to ``new_size``."""
        return self._tree.consistency_proof(old_size, new_size)

    def make_checkpoint(self, head: TreeHead | None = None) -> Checkpoint:
        """A checkpoint at ``head`` (default: the last head signed), which must be this log's."""
        head = head if head is not None else self._last_head
        if head is None or head.tree_size == 0:
            raise UsageError("a checkpoint needs a signed head over at least one record")
        if head.node != self._node or self._tree.root(head.tree_size) != head.root:
            raise UsageError(f"{head.describe()} is not a head of this log")
        size = head.tree_size
        return Checkpoint(
            head,
            tuple(self._tree.frontier(size)),
            self._tree.leaf(size - 1),
            tuple(self._tree.inclusion_proof(size - 1, size)),
        )

    def prune(self, checkpoint: Checkpoint) -> None:
        """Forget the hashes a checkpoint makes unnecessary; records below it may be deleted."""
        if checkpoint.head.node != self._node:
            raise UsageError(f"{checkpoint.head.describe()} is not a head of this log")
        if self._tree.root(checkpoint.size) != checkpoint.head.root:
            raise UsageError(f"{checkpoint.head.describe()} does not match this log")
        self._tree.forget_before(checkpoint.size)
        self._checkpoint = checkpoint

    @classmethod
    def restore(
        cls,
        identity: LocalIdentity,
        nodes: NodeReader,
        size: int,
        last_record: bytes | None,
        *,
        seal: TreeHead | None = None,
        last_head: TreeHead | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> AuditLogState:
        """The state of a stored log of ``size`` records, read in O(log n) (the module doc).

        ``nodes``: the store's hashes; ``last_record``: the encoded record
        ``size - 1`` (None if the checkpoint covers every record).  The
        frontier read must give the root the ``seal`` (a head over all
        ``size`` records) signed, and the last head's root must be the
        tree's at its size; else ``inconsistent-log``: the stored tree is not
        the records' (verify the log first: ``verify_log`` names what changed).
        """
        state = cls(identity, nodes=nodes)
        state._load(size, last_record, seal=seal, last_head=last_head, checkpoint=checkpoint)
        return state

    def follow(
        self,
        nodes_now: NodeReader,
        size: int,
        last_record: bytes | None,
        *,
        seal: TreeHead | None = None,
        last_head: TreeHead | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        """Become the state of this log as stored now, after another writer appended to it.

        The workers of a hub share one log (``exchnode.aio.WorkerShare``): a
        worker's state is behind whenever another one committed records.  The
        store calls this inside the transaction that holds the log's lock, so
        ``nodes_now`` reads what that transaction sees; the state then reads
        through its own reader again.  The same O(log n) reads and checks as
        :meth:`restore`; the timestamps signed never go back.
        """
        own, signed = self._nodes, self._last_signed_ms
        self._nodes = nodes_now
        try:
            self._load(size, last_record, seal=seal, last_head=last_head, checkpoint=checkpoint)
        finally:
            self._nodes = own
        self._last_signed_ms = max(self._last_signed_ms, signed)

    def _load(
        self,
        size: int,
        last_record: bytes | None,
        *,
        seal: TreeHead | None,
        last_head: TreeHead | None,
        checkpoint: Checkpoint | None,
    ) -> None:
        self._checkpoint = None
        self._last_leaf = GENESIS_PREV
        self._last_head = None
        self._last_time_ms = 0
        base = 0
        if checkpoint is not None:
            check_checkpoint(checkpoint)
            self._checkpoint = checkpoint
            self._last_leaf = checkpoint.last_leaf
            base = checkpoint.size
        if size < base:
            raise InconsistentLogError(f"a log of {size} records below its checkpoint at {base}")
        try:
            frontier, start = [], 0
            for k in reversed(range(size.bit_length())):
                if size >> k & 1:
                    frontier.append(self._read_node(k, start >> k))
                    start += 1 << k
        except LookupError as exc:
            raise InconsistentLogError(f"the stored audit tree is incomplete: {exc}") from None
        self._tree = MerkleLog.from_frontier(
            size, frontier, reader=self._read_node, pruned_below=base
        )
        if size > base:
            if last_record is None:
                raise InconsistentLogError(f"audit record {size - 1} is not stored")
            try:
                record = decode_record(last_record)
            except MalformedError as exc:
                raise InconsistentLogError(f"audit record {size - 1}: {exc}") from None
            if record.seq != size - 1 or record.node != self._node:
                raise InconsistentLogError(f"audit record {size - 1} is not this log's last")
            self._last_leaf = record_leaf(last_record)
            self._last_time_ms = record.entry.time_ms
        if seal is not None and (
            seal.node != self._node or seal.tree_size != size or seal.root != self._tree.root()
        ):
            raise InconsistentLogError(f"the stored audit tree does not match {seal.describe()}")
        self._adopt_last_head(last_head)

    def _adopt_last_head(self, last_head: TreeHead | None) -> None:
        """The last stored head, checked against the tree, becomes the one the next follows."""
        if last_head is None:
            return
        if last_head.node != self._node or last_head.tree_size > self._tree.size:
            raise InconsistentLogError(f"{last_head.describe()} covers records not stored")
        try:
            root = self._tree.root(last_head.tree_size)
        except LookupError as exc:
            raise InconsistentLogError(f"the stored audit tree is incomplete: {exc}") from None
        if root != last_head.root:
            raise InconsistentLogError(f"stored records do not match {last_head.describe()}")
        self._last_head = last_head
        self._last_signed_ms = last_head.timestamp_ms

    @classmethod
    def resume(
        cls,
        identity: LocalIdentity,
        records: Iterable[tuple[int, bytes]],
        *,
        last_head: TreeHead | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> AuditLogState:
        """Rebuild the state from the stored records (after ``checkpoint``, if any), in seq order.

        Raises ``inconsistent-log`` at the first record that does not follow
        (wrong seq, node or chain) or if the last head's root is not the
        records' root: a node must not sign over a log that was tampered
        with while it was down.  ``audit_verify.verify_log`` says what happened.
        """
        state = cls(identity)
        if checkpoint is not None:
            check_checkpoint(checkpoint)
            state._tree = MerkleLog.from_frontier(checkpoint.size, checkpoint.frontier)
            state._last_leaf = checkpoint.last_leaf
            state._checkpoint = checkpoint
        for seq, data in records:
            expected = state._tree.size
            try:
                record = decode_record(data)
            except MalformedError as exc:
                raise InconsistentLogError(f"audit record {seq}: {exc}") from None
            if seq != expected or record.seq != expected:
                raise InconsistentLogError(
                    f"audit record stored as {seq} (says {record.seq}) where {expected} was due"
                )
            if record.node != state._node or record.prev != state._last_leaf:
                raise InconsistentLogError(f"audit record {seq} does not follow record {seq - 1}")
            leaf = record_leaf(data)
            state._tree.append(leaf)
            state._last_leaf = leaf
            state._last_time_ms = max(state._last_time_ms, record.entry.time_ms)
        state._adopt_last_head(last_head)
        return state
