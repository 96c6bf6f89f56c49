"""Witnessing on a running node: a hub checks its children's tree heads (SPEC §20.8, §20.8.1).

Theory of operation
-------------------
A node can rewrite its own audit log and re-sign it, but it cannot make the
new heads consistent with heads it signed before (``audit_witness``).  So the
parent keeps them.  :class:`WitnessService` is a
:class:`~exchnode.aio.NodeService` attached to every node next to
its :class:`~exchnode.aio.AuditService`:

* **The child's side** (every node): one neighbour endpoint, ``GET
  /exchnode/v1/audit/head?since=N``, served to the node's parent only.  It
  answers with the node's newest signed head, as stored, and the RFC 9162
  consistency proof from size ``N`` to it (:class:`HeadAnswer`).  If ``N`` is
  below the checkpoint the head names, the records needed for that proof are
  pruned (§20.9), and the answer says ``pruned`` instead.
* **The hub's side** (a node with children): every ``interval`` seconds, and
  once soon after start, it asks each child for its head since the size of
  the last good head it keeps for that child.  It verifies the head
  (``audit_log.TreeHeadVerifier``: shape, the child's key, the seal) and
  judges it (:func:`judge`, pure: ``audit_witness.check_witness`` plus the
  cases the exchange adds).  Each verdict, good or bad, becomes a
  ``witness`` record in the hub's own log (``AuditService.append_entry``).
  A good head becomes the kept head; after a bad one the last *good* head
  stays the baseline, so a rewritten history is flagged at every round
  until an operator acts (:meth:`WitnessService.reset`).  A child that
  cannot be reached, or whose answer says nothing new, gives no verdict --
  but a child that gives no answer (unreachable, an HTTP error, an answer
  that does not decode) for ``silent_rounds`` rounds in a row gets one:
  ``silent`` (refused), recorded once, shown to operators until it answers
  again.  A child that stopped answering is a child whose log nobody checks:
  it may be down, or refusing to start over a changed log, or hiding one.

**Pruned history.**  Consistency from a kept size below the child's
checkpoint cannot be proven: the hashes are gone.  An honest child prunes
only records older than its retention, and every record above the kept size
was written after the kept head was signed.  So a ``pruned`` answer is
plausible only if the kept head is itself older than the retention period
(``retention``, the shortest retention the hub expects of its children: set
it a little below theirs).  Then the hub records ``pruned`` (outcome ``ok``:
the gap is on the record) and takes the child's head as the new baseline;
otherwise it records ``pruned-early`` (refused) and keeps the baseline.  A
child therefore cannot escape a check by pruning, unless its parent has not
witnessed it for a whole retention period.

The kept heads and last verdicts are stored in the node's store (meta key
``witness``) and restored at start; :meth:`WitnessService.witnessed` shows
them to operators, and a kept head can be handed to ``audit_verify.verify_log``
as a witnessed head.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from aiohttp import web

from exchnode.aio._service import ServiceMessage
from exchnode.aio._transport import Handler
from exchnode.aio._waiting import wait_event
from exchnode.audit import (
    MAX_PROOF,
    MAX_TREE_HEAD_BYTES,
    MAX_TREE_SIZE,
    Actor,
    AuditEntry,
    Category,
    Outcome,
    Role,
    Subject,
    SubjectKind,
    TreeHead,
    TreeHeadVerifier,
    WitnessResult,
    check_witness,
    decode_tree_head,
    details,
    witness_entry,
)
from exchnode.core import (
    EMPTY_ROOT,
    HASH_LENGTH,
    check_name,
    check_time,
    pack,
    require_canonical,
    unpack,
)
from exchnode.errors import (
    DirectoryExpiredError,
    ExchnodeError,
    MalformedError,
    RejectedError,
    UnknownSignerError,
    UnsupportedVersionError,
    UsageError,
)
from exchnode.federation import Relation

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = [
    "AUDIT_HEAD_PATH",
    "DEFAULT_RETENTION",
    "DEFAULT_SILENT_ROUNDS",
    "WITNESS_FORMAT",
    "AuditHeads",
    "HeadAnswer",
    "HeadStatus",
    "NoVerdict",
    "Verdict",
    "WitnessService",
    "WitnessStatus",
    "decode_head_answer",
    "decode_witness_state",
    "encode_head_answer",
    "encode_witness_state",
    "judge",
    "parse_since",
]

AUDIT_HEAD_PATH = "/exchnode/v1/audit/head"
WITNESS_FORMAT = 1
DEFAULT_RETENTION = 180 * 86400.0  # seconds: a little below the default 6 months (§20.9)
DEFAULT_SILENT_ROUNDS = 5  # rounds without an answer before a child is judged silent
SILENT = "silent"
MAX_ANSWER_BYTES = 4096  # a head (≤ 1024) and 64 hashes, with room to spare
MAX_STATE_BYTES = 4 << 20
MAX_CHILDREN = 4096
_CONTENT_TYPE = "application/vnd.exchnode.audit+msgpack"
_META_KEY = "witness"
_FIRST_ROUND = 5.0  # seconds after the node serves: the children are probably up by then
_SINCE = re.compile(r"0|[1-9][0-9]{0,15}")


# --- the wire form (SPEC §20.8.1) ----------------------------------------------------------


class HeadStatus(enum.Enum):
    HEAD = "head"  # the newest head, and the consistency proof from ``since``
    PRUNED = "pruned"  # ``since`` is below the checkpoint the head names: no proof possible
    NONE = "none"  # the node has signed no head yet


@dataclass(frozen=True, slots=True)
class HeadAnswer:
    """A child's answer to ``GET /exchnode/v1/audit/head?since=N``."""

    status: HeadStatus
    head: bytes = b""  # the signed head as stored; empty iff status is NONE
    proof: tuple[bytes, ...] = ()  # PROOF(since, D[tree_size]), bottom-up; only with HEAD

    def __post_init__(self) -> None:
        if (self.status is HeadStatus.NONE) != (not self.head):
            raise UsageError("a head answer carries a head unless its status is none")
        if self.proof and self.status is not HeadStatus.HEAD:
            raise UsageError("only a head answer of status head carries a proof")


def encode_head_answer(answer: HeadAnswer) -> bytes:
    return pack([WITNESS_FORMAT, answer.status.value, answer.head, list(answer.proof)])


def decode_head_answer(data: bytes) -> HeadAnswer:
    """Parse an answer (shape only: the head is verified on its own); raises ``RejectedError``."""
    what = "witness.answer"
    fields = unpack(data, what=what, max_size=MAX_ANSWER_BYTES, max_array=MAX_PROOF)
    if type(fields) is not list or len(fields) != 4:
        raise MalformedError(what, "expected an array of 4 elements")
    fmt, status, head, proof = fields
    _check_format(fmt, f"{what}.format")
    try:
        kind = HeadStatus(status)
    except (ValueError, TypeError):
        raise MalformedError(f"{what}.status", "must be head, pruned or none") from None
    if type(head) is not bytes or len(head) > MAX_TREE_HEAD_BYTES:
        raise MalformedError(f"{what}.head", f"must be at most {MAX_TREE_HEAD_BYTES} bytes")
    if (kind is HeadStatus.NONE) != (not head):
        raise MalformedError(f"{what}.head", "must be empty exactly when the status is none")
    if type(proof) is not list:
        raise MalformedError(f"{what}.proof", f"must be an array of at most {MAX_PROOF} hashes")
    for i, item in enumerate(proof):
        if type(item) is not bytes or len(item) != HASH_LENGTH:
            raise MalformedError(f"{what}.proof[{i}]", f"must be {HASH_LENGTH} bytes")
    if proof and kind is not HeadStatus.HEAD:
        raise MalformedError(f"{what}.proof", "must be empty unless the status is head")
    require_canonical(fields, data, what=what)
    return HeadAnswer(kind, head, tuple(proof))


def parse_since(value: str | None) -> int:
    """The ``since`` query parameter: a size in decimal, no sign or leading zero; absent is 0."""
    if value is None:
        return 0
    if not _SINCE.fullmatch(value) or int(value) > MAX_TREE_SIZE:
        raise MalformedError("witness.since", f"must be a decimal integer in 0..{MAX_TREE_SIZE}")
    return int(value)


def _check_format(value: object, field: str) -> None:
    if type(value) is not int:
        raise MalformedError(field, "must be an integer")
    if value != WITNESS_FORMAT:
        raise UnsupportedVersionError(f"{field} {value} is not supported (only {WITNESS_FORMAT})")


# --- the hub's judgement (pure) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one witnessing: audited in the hub's log, good or bad."""

    child: str
    code: str  # a §20.8 result, pruned, pruned-early, no-head, or the head's rejection code
    ok: bool
    previous_size: int  # the kept head's size (0 if none)
    tree_size: int | None  # the child's head, when it could be read
    root: bytes | None
    keep: TreeHead | None  # the head to keep from now on (ok verdicts)
    result: WitnessResult | None = None  # when ``audit_witness.check_witness`` gave it

    def entry(self, hub: str, now_ms: int) -> AuditEntry:
        """The hub's ``witness`` record (SPEC §20.8)."""
        if self.result is not None:
            return witness_entry(hub, self.result, now_ms)
        if self.tree_size is None or self.root is None:  # a head that could not be read
            detail = details(previous_size=self.previous_size)
        else:
            detail = details(
                previous_size=self.previous_size, tree_size=self.tree_size, root=self.root
            )
        return AuditEntry(
            time_ms=now_ms,
            category=Category.WITNESS,
            action="witness",
            actor=Actor.node(hub),
            subject=Subject(SubjectKind.NODE, self.child),
            outcome=Outcome.ok(self.code) if self.ok else Outcome.refused(self.code),
            detail=detail,
        )


@dataclass(frozen=True, slots=True)
class NoVerdict:
    """Nothing to judge: the head is the kept one, or the answer cannot be judged yet."""

    reason: str
    problem: bool  # a warning (an answer that breaks the exchange) rather than news


def _from_result(result: WitnessResult, head: TreeHead, kept: TreeHead | None) -> Verdict:
    return Verdict(
        result.node,
        result.reason.value,
        result.ok,
        result.previous_size,
        result.tree_size,
        result.root,
        head if result.ok else kept,
        result,
    )


def judge(
    child: str,
    kept: TreeHead | None,
    answer: HeadAnswer,
    verifier: TreeHeadVerifier,
    *,
    now_ms: int,
    retention_ms: int,
) -> Verdict | NoVerdict:
    """Judge a child's answer against the head kept for it (SPEC §20.8, §20.8.1)."""
    previous_size = kept.tree_size if kept is not None else 0

    def refused(code: str, head: TreeHead | None = None) -> Verdict:
        size, root = (head.tree_size, head.root) if head is not None else (None, None)
        return Verdict(child, code, False, previous_size, size, root, kept)

    if answer.status is HeadStatus.NONE:
        if previous_size == 0:
            return NoVerdict("the child has signed no head yet", problem=False)
        # It signed the kept head once; a log that lost every head was truncated.
        return Verdict(child, "no-head", False, previous_size, 0, EMPTY_ROOT, kept)
    if kept is not None and answer.head == kept.data:
        return NoVerdict("unchanged", problem=False)
    try:
        head = verifier.verify(answer.head)
    except DirectoryExpiredError as exc:
        return NoVerdict(f"the directory cannot judge now: {exc}", problem=True)
    except UnknownSignerError as exc:
        if not _known(verifier, child):
            return NoVerdict(f"{child} is not in the directory yet: {exc}", problem=True)
        return refused(exc.code, _shape(answer.head))
    except RejectedError as exc:
        return refused(exc.code, _shape(answer.head))
    if head.node != child:
        return refused("other-node", head)
    if answer.status is HeadStatus.PRUNED:
        if kept is None or not previous_size < head.checkpoint_size:
            return NoVerdict("a pruned answer its own head does not support", problem=True)
        result = check_witness(kept, head, ())
        if result.reason.value in ("other-node", "shrunk", "time-went-back", "fork"):
            return _from_result(result, head, kept)
        if kept.timestamp_ms <= now_ms - retention_ms:
            return Verdict(child, "pruned", True, previous_size, head.tree_size, head.root, head)
        return refused("pruned-early", head)
    return _from_result(check_witness(kept, head, answer.proof), head, kept)


def _known(verifier: TreeHeadVerifier, child: str) -> bool:
    try:
        verifier.directory.recipient(child)
    except ExchnodeError:
        return False
    return True


def _shape(data: bytes) -> TreeHead | None:
    try:
        return decode_tree_head(data)[0]
    except RejectedError:
        return None


# --- the hub's state -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessStatus:
    """What a hub knows of one child's log, for operators and reports."""

    child: str
    head: TreeHead | None = None  # the last good head: the baseline of the next check
    accepted_ms: int | None = None  # when that head was accepted
    verdict: str | None = None  # the last verdict's code
    verdict_ms: int | None = None
    checked_ms: int | None = None  # the last answer judged (a verdict, or the kept head again)
    error: str | None = None  # why the last attempt gave no verdict; None once one works
    failures: int = 0  # attempts in a row without an answer that could be judged
    unanswered: int = 0  # rounds in a row the child gave no answer at all (``silent`` after N)

    @property
    def verdict_ok(self) -> bool | None:
        if self.verdict is None:
            return None
        return self.verdict in ("consistent", "first-head", "pruned")

    @property
    def size(self) -> int:
        return self.head.tree_size if self.head is not None else 0


def encode_witness_state(statuses: Mapping[str, WitnessStatus]) -> bytes:
    """What a hub stores: per child, the kept head and the last verdict (not the errors)."""
    rows = [
        [
            child,
            status.head.data if status.head is not None else b"",
            status.accepted_ms or 0,
            status.verdict or "",
            status.verdict_ms or 0,
        ]
        for child, status in sorted(statuses.items())
    ]
    return pack([WITNESS_FORMAT, rows])


def decode_witness_state(data: bytes) -> dict[str, WitnessStatus]:
    what = "witness.state"
    value = unpack(data, what=what, max_size=MAX_STATE_BYTES, max_array=MAX_CHILDREN)
    if type(value) is not list or len(value) != 2:
        raise MalformedError(what, "expected an array of 2 elements")
    _check_format(value[0], f"{what}.format")
    if type(value[1]) is not list:
        raise MalformedError(f"{what}.children", "must be an array")
    out: dict[str, WitnessStatus] = {}
    for i, row in enumerate(value[1]):
        where = f"{what}.children[{i}]"
        if type(row) is not list or len(row) != 5:
            raise MalformedError(where, "expected an array of 5 elements")
        child, head, accepted, verdict, verdict_ms = row
        check_name(child, f"{where}.child")
        if type(head) is not bytes or type(verdict) is not str or len(verdict) > 64:
            raise MalformedError(where, "head must be bytes and verdict a short string")
        kept = decode_tree_head(head)[0] if head else None
        if kept is not None and kept.node != child:
            raise MalformedError(f"{where}.head", f"is a head of {kept.node}")
        out[child] = WitnessStatus(
            child,
            kept,
            check_time(accepted, f"{where}.accepted") or None,
            verdict or None,
            check_time(verdict_ms, f"{where}.verdict_ms") or None,
        )
    require_canonical(value, data, what=what)
    return out


# --- the service ---------------------------------------------------------------------------


class AuditHeads(Protocol):
    """What witnessing needs of a node's audit log (``AuditService`` provides it)."""

    async def latest_head(self) -> bytes | None:
        """The newest signed head, encoded as stored; None before the first."""
        ...

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 ``PROOF(old_size, D[new_size])``; ``UsageError`` if it cannot be made."""
        ...

    def append_entry(self, entry: AuditEntry) -> None:
        """Log one record (stored within the audit log's flush interval)."""
        ...

    async def flush_now(self) -> None:
        """Store the records appended so far, now."""
        ...

    def note_witnessed(self, size: int) -> None:
        """The parent asked since ``size``: it keeps a head of that size (pruning stays below)."""
        ...


class WitnessService:
    """Witnessing on a node: see the module docstring."""

    kinds: frozenset[str] = frozenset()

    def __init__(
        self,
        audit: AuditHeads,
        *,
        interval: float = 60.0,
        retention: float = DEFAULT_RETENTION,
        silent_rounds: int = DEFAULT_SILENT_ROUNDS,
    ) -> None:
        """``audit``: this node's audit log (an ``AuditService``), which the verdicts go to.

        ``interval``: seconds between rounds.  ``retention``: the shortest retention
        (seconds) the hub expects of its children, below which it refuses a ``pruned``.
        ``silent_rounds``: rounds in a row without an answer after which a child is
        judged ``silent``.
        """
        if interval <= 0 or retention <= 0:
            raise UsageError("interval and retention are positive seconds")
        if type(silent_rounds) is not int or silent_rounds < 1:
            raise UsageError(f"silent_rounds is a number of rounds, 1 or more: {silent_rounds!r}")
        self.audit = audit
        self.interval = interval
        self.retention = retention
        self.silent_rounds = silent_rounds
        self._node: Node | None = None
        self._verifier: TreeHeadVerifier | None = None
        self._relations: dict[str, Relation] = {}
        self._looping = False
        self._status: dict[str, WitnessStatus] = {}
        self._lock = asyncio.Lock()  # one round (or reset) at a time
        self._wake = asyncio.Event()
        self._closing = False
        self.log: Any = structlog.get_logger("exchnode.witness")

    # --- the service seam ------------------------------------------------------------

    async def start(self, node: Node) -> None:
        self._node = node
        self.log = self.log.bind(node=node.name)
        self._verifier = TreeHeadVerifier(node.directory)
        self._relations = node.neighbours()
        stored = await node.get_meta(_META_KEY)
        if stored is not None:
            try:
                self._status = decode_witness_state(stored)
            except RejectedError as exc:
                # Our own store.  Failing the start would protect nothing: whoever can
                # damage this value can delete it.  The next round audits a first-head.
                self.log.error("stored witness state not used", code=exc.code, reason=str(exc))
        for child in self.children:
            self._status.setdefault(child, WitnessStatus(child))
        if self.children:
            self._looping = True
            node.run_task(self._run, "witness")

    async def peers_changed(self) -> None:
        """A child admitted or removed while the node runs: witnessed from the next round."""
        node = self._running()
        self._relations = node.neighbours()
        for child in self.children:
            self._status.setdefault(child, WitnessStatus(child))
        if self.children and not self._looping:
            self._looping = True
            node.run_task(self._run, "witness")

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {("GET", AUDIT_HEAD_PATH): self._serve_head}

    async def take(self, message: ServiceMessage) -> None:
        raise UsageError("the witness service takes no messages")  # kinds is empty

    async def close(self) -> None:
        """Stop judging: the audit log closes after this service.

        A verdict reached from now on is dropped, neither recorded nor applied,
        and the next start judges that head again.
        """
        self._closing = True

    # --- reading ---------------------------------------------------------------------

    @property
    def children(self) -> list[str]:
        return sorted(n for n, r in self._relations.items() if r is Relation.CHILD)

    def witnessed(self) -> Mapping[str, WitnessStatus]:
        """Per child (and former child still held): kept head, last verdict, last problem."""
        return dict(self._status)

    # --- the hub's loop --------------------------------------------------------------

    async def _run(self) -> None:
        node = self._running()
        await node.ready()
        await wait_event(self._wake, min(_FIRST_ROUND, self.interval))
        while True:
            self._wake.clear()
            await self.witness_now()
            await wait_event(self._wake, self.interval)

    async def witness_now(self) -> Mapping[str, WitnessStatus]:
        """One round over every child, now (the loop's step; also for operators and tests)."""
        node = self._running()
        async with self._lock:
            before = encode_witness_state(self._status)
            await asyncio.gather(*(self._witness(child) for child in self.children))
            after = encode_witness_state(self._status)
            if after != before:
                await (
                    self.audit.flush_now()
                )  # the verdicts are on the record before the baseline moves
                await node.set_meta(_META_KEY, after)
        return self.witnessed()

    async def _witness(self, child: str) -> None:
        node, verifier = self._running(), self._ready_verifier()
        status = self._status[child]
        path = f"{AUDIT_HEAD_PATH}?since={status.size}"
        try:
            answer = decode_head_answer(await node.request(child, "GET", path))
        except RejectedError as exc:
            self._no_verdict(child, NoVerdict(f"answer refused: {exc}", problem=True))
            self._unanswered(child)
            return
        except ExchnodeError as exc:  # unreachable, or it refused to answer: not a verdict
            self.log.info("child not witnessed", child=child, error=str(exc))
            self._status[child] = replace(status, error=str(exc), failures=status.failures + 1)
            self._unanswered(child)
            return
        now_ms = int(node.now() * 1000)
        outcome = judge(
            child,
            status.head,
            answer,
            verifier,
            now_ms=now_ms,
            retention_ms=int(self.retention * 1000),
        )
        if self._closing:
            return
        if (
            isinstance(outcome, NoVerdict)
            and outcome.reason == "unchanged"
            and status.verdict == SILENT
            and status.head is not None
        ):
            # Back, with the head kept: the silent verdict is over, on the record.
            outcome = _from_result(
                check_witness(status.head, status.head, ()), status.head, status.head
            )
        if isinstance(outcome, NoVerdict):
            self._no_verdict(child, outcome, now_ms)
            self._status[child] = replace(self._status[child], unanswered=0)
            return
        self.audit.append_entry(outcome.entry(node.name, now_ms))
        accepted = status.accepted_ms
        if outcome.ok and outcome.keep is not None and outcome.keep != status.head:
            accepted = now_ms
        self._status[child] = WitnessStatus(
            child, outcome.keep, accepted, outcome.code, now_ms, now_ms, None, 0
        )
        log = self.log.info if outcome.ok else self.log.warning
        log(
            "child witnessed",
            child=child,
            verdict=outcome.code,
            previous_size=outcome.previous_size,
            tree_size=outcome.tree_size,
        )

    def _unanswered(self, child: str) -> None:
        """One more round without an answer; at ``silent_rounds``, the verdict ``silent``."""
        if self._closing:
            return
        status = self._status[child]
        unanswered = status.unanswered + 1
        self._status[child] = status = replace(status, unanswered=unanswered)
        if unanswered != self.silent_rounds:
            return  # not yet, or already judged silent (recorded once)
        node = self._running()
        now_ms = int(node.now() * 1000)
        verdict = Verdict(child, SILENT, False, status.size, None, None, status.head)
        self.audit.append_entry(verdict.entry(node.name, now_ms))
        self._status[child] = replace(
            status, verdict=SILENT, verdict_ms=now_ms, checked_ms=status.checked_ms
        )
        self.log.warning(
            "child witnessed",
            child=child,
            verdict=SILENT,
            rounds=unanswered,
            previous_size=status.size,
        )

    def _no_verdict(self, child: str, outcome: NoVerdict, now_ms: int | None = None) -> None:
        status = self._status[child]
        if outcome.reason == "unchanged":
            self._status[child] = replace(status, checked_ms=now_ms, error=None, failures=0)
            return
        (self.log.warning if outcome.problem else self.log.info)(
            "child not witnessed", child=child, reason=outcome.reason
        )
        self._status[child] = replace(status, error=outcome.reason, failures=status.failures + 1)

    async def reset(self, child: str, *, operator: str, role: Role = Role.OPERATOR) -> None:
        """Drop the head kept for ``child``: the next round takes its head as a first head.

        For an operator who has dealt with a flagged child (or with one that was
        re-installed).  Audited, with the operator's name and the head dropped.
        """
        node = self._running()
        async with self._lock:
            status = self._status.get(child)
            if status is None:
                raise UsageError(f"{node.name} witnesses no child {child}")
            dropped = status.head
            self.audit.append_entry(
                AuditEntry(
                    time_ms=int(node.now() * 1000),
                    category=Category.WITNESS,
                    action="witness.reset",
                    actor=Actor(role, operator),
                    subject=Subject(SubjectKind.NODE, child),
                    outcome=Outcome.ok(),
                    detail=details(
                        previous_size=status.size,
                        root=dropped.root if dropped is not None else EMPTY_ROOT,
                    ),
                )
            )
            self._status[child] = WitnessStatus(child)
            await self.audit.flush_now()
            await node.set_meta(_META_KEY, encode_witness_state(self._status))

    # --- the child's side ------------------------------------------------------------

    async def _serve_head(self, name: str, request: web.Request) -> web.StreamResponse:
        if self._relations.get(name) is not Relation.PARENT:
            return web.Response(status=403, text=f"{name} is not this node's parent")
        try:
            since = parse_since(request.query.get("since"))
        except RejectedError as exc:
            return web.Response(status=400, text=str(exc))
        self.audit.note_witnessed(since)  # the parent keeps a head of that size
        try:
            answer = await self._answer(since)
        except ExchnodeError as exc:  # a checkpoint made meanwhile, or our store: ask again
            self.log.warning("audit head not served", neighbour=name, error=str(exc))
            return web.Response(status=503, text="no head now; ask again later")
        return web.Response(body=encode_head_answer(answer), content_type=_CONTENT_TYPE)

    async def _answer(self, since: int) -> HeadAnswer:
        data = await self.audit.latest_head()
        if data is None:
            return HeadAnswer(HeadStatus.NONE)
        head = decode_tree_head(data)[0]
        if since == 0 or since >= head.tree_size:
            return HeadAnswer(HeadStatus.HEAD, data)  # from nothing, or none needed (shrunk)
        if since < head.checkpoint_size:
            return HeadAnswer(HeadStatus.PRUNED, data)
        proof = await self.audit.consistency_proof(since, head.tree_size)
        return HeadAnswer(HeadStatus.HEAD, data, tuple(proof))

    # --- helpers ---------------------------------------------------------------------

    def _running(self) -> Node:
        if self._node is None:
            raise UsageError("the witness service is not attached to a running node")
        return self._node

    def _ready_verifier(self) -> TreeHeadVerifier:
        if self._verifier is None:
            raise UsageError("the witness service has not started")
        return self._verifier
