"""The sharing service's outbox on a running node: storing a change, then handing its messages over.

:class:`SharingOutbox` is the half of :class:`~exchnode.aio.SharingService`
that talks to the node about what a change produced.  A change's rows and
its outbox rows are written in one ``update_meta`` transaction, before
anything is sent (``commit``); each outbox message is then handed to the
node on its own, with its row's tag as idempotency key, so a repeat after a
crash returns the first message.

**Messages the node will not take.**  A refusal that will not pass by
waiting (the node raised ``UsageError`` or a rejection: an unknown or
unroutable recipient, a message too large) *parks* the message: it is
logged once (kind, recipients, error; never the payload), audited
(``outbox.refused``), moved to a ``parked`` row, and no longer tried every
second.  ``parked()`` lists them; ``retry()`` and ``drop()`` are the
operator's; the service's timers also try them again every
:data:`PARKED_RETRY` seconds and at start, quietly (``due``), since their
cause (a directory that did not know the recipient yet) may have passed.
Anything else (the store failing, a stale directory) is transient: the
message stays in the outbox and the timers retry it with a backoff from
1 s up to :data:`RETRY_MAX` s.

Every method but ``parked`` and ``attach`` is called with the service's
lock held: the outbox is the service's state, not a second writer of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from exchnode.aio._delivery import Message
from exchnode.aio._sharing_state import Queued, Send, SharingState
from exchnode.core import AuditEvent, EventSink
from exchnode.errors import DirectoryExpiredError, ExchnodeError, RejectedError, UsageError
from exchnode.sharing import CONTENT_TYPE, AtRestCipher

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = ["PARKED_RETRY", "RETRY_MAX", "ParkedMessage", "SharingOutbox"]

RETRY_MAX = 60.0  # seconds: the longest wait before handing a message over again
PARKED_RETRY = 600.0  # seconds between quiet retries of parked messages


class ParkedMessage(NamedTuple):
    """A message the node refused for good, as the operator sees it (never its payload)."""

    number: int
    kind: str
    recipients: tuple[str, ...]
    code: str  # the node's error code
    reason: str  # the node's error message
    at_ms: int
    size: int  # payload bytes


class SharingOutbox:
    """Stores the service's changes and hands their messages to the node: see the module doc."""

    def __init__(
        self,
        state: SharingState,
        cipher: AtRestCipher,
        events: EventSink,
        random: Callable[[int], bytes],
        log: Any,
    ) -> None:
        self.state = state
        self.closing = False  # the node refuses because it stops: nothing is parked for it
        self.log = log
        self._cipher = cipher
        self._events = events
        self._random = random
        self._node: Node | None = None
        self._retry_at = 0.0  # node time before which a transient failure is not retried
        self._failures = 0  # transient failures in a row
        self._parked_at = 0.0  # node time of the last quiet retry of parked messages

    def attach(self, node: Node, state: SharingState, log: Any) -> None:
        """Work for ``node`` on the state the service restored or created."""
        self._node, self.state, self.log = node, state, log
        # Parked before a restart (the cause may be gone): tried once at the timers' first run.
        self._parked_at = -PARKED_RETRY if state.parked else node.now()

    # --- a change ------------------------------------------------------------------------

    async def commit(self, sends: Sequence[Send]) -> None:
        """Store the rows the change touched with what it must send, then send it."""
        self.state.queue(sends, self._random)
        await self.write()
        await self.send()

    async def write(self) -> None:
        changes = self.state.take_changes(self._cipher)
        if changes:
            await self._running().update_meta(changes)

    async def send(self) -> None:
        """Hand each outbox message to the node; park what it refuses for good.

        The change that produced them is stored already, outbox included:
        failing here must not undo it, nor lose the messages.  A transient
        failure leaves them for the timers, after a backoff.
        """
        numbers = sorted(self.state.outbox)
        if not numbers:
            return
        results = await self._hand_over([self.state.outbox[n] for n in numbers])
        transient: list[ExchnodeError] = []
        parked = False
        now_ms = self._now_ms()
        for number, result in zip(numbers, results, strict=True):
            if result is None:
                self.state.handed_over(number)
            elif self.closing or not _refused_for_good(result):
                transient.append(result)
            else:
                self._park(number, result, now_ms)
                parked = True
        if parked:
            await self.write()  # reported once: the parked rows are stored now
        if not transient:
            self._failures, self._retry_at = 0, 0.0
            return
        self._failures += 1
        wait = min(RETRY_MAX, 2.0 ** (self._failures - 1))
        self._retry_at = now_ms / 1000 + wait
        if self._failures & (self._failures - 1) == 0:  # the 1st, 2nd, 4th, 8th... in a row
            self.log.warning(
                "sharing messages not sent yet",
                count=len(transient),
                error=str(transient[0]),
                failures=self._failures,
                retry_in=wait,
            )

    async def due(self, now_ms: int) -> None:
        """The timers' turn: what a crash or a transient failure left, and now and then the
        parked messages."""
        if self.state.outbox and now_ms >= self._retry_at * 1000:
            await self.send()
        if self.state.parked and now_ms >= (self._parked_at + PARKED_RETRY) * 1000:
            self._parked_at = now_ms / 1000
            await self.retry(sorted(self.state.parked))

    # --- parked messages -------------------------------------------------------------------

    def parked(self) -> list[ParkedMessage]:
        return [
            ParkedMessage(
                number,
                p.queued.send.kind,
                p.queued.send.recipients,
                p.code,
                p.reason,
                p.at_ms,
                len(p.queued.send.payload),
            )
            for number, p in sorted(self.state.parked.items())
        ]

    def parked_numbers(self, numbers: Iterable[int] | None) -> list[int]:
        """``numbers`` (all, if None), each checked to name a parked message."""
        if numbers is None:
            return sorted(self.state.parked)
        wanted = sorted(set(numbers))
        unknown = [n for n in wanted if n not in self.state.parked]
        if unknown:
            raise UsageError(f"no parked sharing message numbered {unknown[0]}")
        return wanted

    async def retry(self, numbers: Sequence[int]) -> list[int]:
        """Try parked messages again; unpark those the node takes."""
        queued = [self.state.parked[n].queued for n in numbers]
        results = await self._hand_over(queued)
        taken = []
        for number, result in zip(numbers, results, strict=True):
            if result is None:
                self.state.unpark(number)
                taken.append(number)
        if taken:
            self.log.info("parked sharing messages sent", numbers=taken)
        return taken

    async def drop(self, numbers: Sequence[int], *, operator: str) -> None:
        """Give parked messages up for good; each drop is audited."""
        now_ms = self._now_ms()
        for number in numbers:
            send = self.state.parked[number].queued.send
            self.state.unpark(number)
            self._audit(now_ms, operator, f"outbox.dropped {send.kind}", "dropped", send)
            self.log.warning(
                "sharing message dropped",
                number=number,
                kind=send.kind,
                recipients=list(send.recipients),
                operator=operator,
            )
        await self.write()

    # --- handing over -----------------------------------------------------------------------

    async def _hand_over(self, queued: Sequence[Queued]) -> list[ExchnodeError | None]:
        """Each message on its own (None: the node took it), sealed together by the node's
        batcher; the tag makes a repeat after a crash return the first message."""
        node = self._running()
        results = await asyncio.gather(
            *(
                node.send_many(
                    [
                        Message(
                            recipients=list(q.send.recipients),
                            payload=q.send.payload,
                            kind=q.send.kind,
                            content_type=CONTENT_TYPE,
                            idempotency_key=q.idempotency_key,
                        )
                    ]
                )
                for q in queued
            ),
            return_exceptions=True,
        )
        out: list[ExchnodeError | None] = []
        for result in results:
            if isinstance(result, ExchnodeError):
                out.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                out.append(None)
        return out

    def _park(self, number: int, error: ExchnodeError, now_ms: int) -> None:
        parked = self.state.park(number, error.code, str(error), now_ms)
        send = parked.queued.send
        self.log.warning(
            "sharing message refused by the node: parked",
            number=number,
            kind=send.kind,
            recipients=list(send.recipients),
            code=error.code,
            error=str(error),
        )
        self._audit(now_ms, self._running().name, f"outbox.refused {send.kind}", error.code, send)

    def _audit(self, now_ms: int, actor: str, action: str, outcome: str, send: Send) -> None:
        """An outbox message's fate on the record: its kind and recipients, never its payload."""
        self._events.emit(
            AuditEvent(
                at_ms=now_ms,
                actor=actor,
                action=action,
                resource_code="",
                request_id=b"",
                outcome=outcome,
                counterpart=send.recipients[0],
                count=len(send.recipients),
            )
        )

    def _running(self) -> Node:
        if self._node is None:
            raise UsageError("the sharing service is not attached to a running node")
        return self._node

    def _now_ms(self) -> int:
        return int(self._running().now() * 1000)


def _refused_for_good(error: ExchnodeError) -> bool:
    """Whether waiting will not help: the node found the message wrong for it (a recipient it
    does not know or cannot route to, a size or kind it refuses).  A stale directory and the
    store failing pass with time."""
    if isinstance(error, DirectoryExpiredError):
        return False
    return isinstance(error, UsageError | RejectedError)
