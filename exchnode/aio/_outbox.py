"""A node's own envelopes: the application's messages, receipts and non-delivery reports (I/O edge).

Whatever the node itself signs goes one way: checked (a route, a known
recipient), sealed as one batch (one signature for all, ``Sealer``),
and offered to the node's own store like any arrival (the group commit of
``_node``), where it is routed to the neighbours' queues or the local inbox.
The application's messages are gathered by a :class:`Batcher`, so messages
sent concurrently share a signature and a commit.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

from exchnode.aio._batcher import Batcher
from exchnode.aio._context import NodeContext
from exchnode.aio._delivery import Message, Sent
from exchnode.aio._service import CustodyLog
from exchnode.aio._status_book import StatusBook
from exchnode.core import (
    NDR_KIND,
    NDR_TTL,
    RECEIPT_CONTENT_TYPE,
    RECEIPT_KIND,
    RESERVED_KINDS,
    Directory,
    LocalIdentity,
    Opened,
    Outgoing,
    SealedEnvelope,
    Sealer,
    decode_envelope,
    encode_app_message,
    encode_receipt_bundle,
    issue_receipts,
    ndr_outgoing,
    pack,
)
from exchnode.errors import ExchnodeError, RejectedError, UsageError
from exchnode.federation import Route, Router
from exchnode.store import AcceptItem, AcceptOutcome, AcceptStatus, ExpiredEntry, SendKey

__all__ = ["Lost", "Outbox", "send_key"]

#: Seconds a lone ``send`` may wait for others to share its seal and commit, only while
#: sends arrive often (``Batcher``'s linger): never at a quiet node.
SEND_LINGER = 0.002
_KEY_LABEL = b"exchnode/send-key/v1\x00"
_REQUEST_LABEL = b"exchnode/send-request/v1\x00"


def send_key(message: Message) -> SendKey | None:
    """What the store keeps of a message's idempotency key: never the key itself.

    ``request`` digests what the message asks (recipients as a set, kind,
    content type, receipt flag, payload), so a retry matches its first send
    and the same key on another message does not; not the TTL, which a
    client may compute anew on a retry.
    """
    if message.idempotency_key is None:
        return None
    asked = pack(
        [
            sorted(set(message.recipients)),
            message.kind,
            message.content_type,
            message.receipt,
            hashlib.sha256(message.payload).digest(),
        ]
    )
    return SendKey(
        key=hashlib.sha256(_KEY_LABEL + message.idempotency_key.encode("ascii")).digest(),
        request=hashlib.sha256(_REQUEST_LABEL + asked).digest(),
    )


#: an envelope the node gave up on: (sender, message id, digest, targets, envelope bytes)
Lost = tuple[str, bytes, bytes, tuple[str, ...], bytes]
Commit = Callable[[list[AcceptItem]], Awaitable[list[AcceptOutcome]]]


class Outbox:
    """Seals what this node says and commits it: messages, receipts, non-delivery reports.

    Why one place: every envelope the node signs is checked, sealed in a
    batch and committed the same way, and the rules of what the node itself
    says live here -- never a report on a report or a receipt, and a report
    or receipt the node owes itself is recorded in its status book, not sent.
    """

    def __init__(
        self,
        context: NodeContext,
        identity: LocalIdentity,
        sealer: Sealer,
        router: Router,
        directory: Directory,
        commit: Commit,
        status: StatusBook,
    ) -> None:
        self._context = context
        self._identity = identity
        self._sealer = sealer
        self._router = router
        self._directory = directory
        self._commit = commit
        self._status = status
        self._sends: Batcher[Message, Sent | ExchnodeError] = Batcher(
            self._seal_and_commit, max_items=sealer.policy.max_batch, linger=SEND_LINGER
        )

    def start(self) -> None:
        self._sends.start()

    async def close(self) -> None:
        await self._sends.close()

    async def send(self, messages: list[Message]) -> list[Sent | ExchnodeError]:
        """Seal and commit the application's messages (with those sent meanwhile)."""
        return await self._sends.submit(messages)

    # --- the application's messages -----------------------------------------------------

    def _prepare(self, message: Message) -> tuple[Outgoing, Route]:
        """Check a message before sealing it; its route is kept for the commit."""
        recipients = tuple(dict.fromkeys(message.recipients))
        if not recipients:
            raise UsageError("a message needs at least one recipient")
        route = self._router.route(recipients)
        if route.unroutable:
            raise UsageError(
                f"{self._context.name} has no route to {', '.join(route.unroutable)}: "
                "not in its scope and no parent or link leads there"
            )
        for recipient in recipients:
            self._directory.recipient(recipient)  # unknown or expired: fail before sealing
        outgoing = Outgoing(
            recipients,
            encode_app_message(message.payload, want_receipt=message.receipt),
            kind=message.kind,
            content_type=message.content_type,
            ttl=message.ttl,
        )
        return outgoing, route

    def own_item(
        self, envelope: SealedEnvelope, route: Route, send_key: SendKey | None = None
    ) -> AcceptItem:
        """An envelope this node sealed, offered to its own store like any arrival."""
        return AcceptItem.from_route(
            sender=self._context.name,
            message_id=envelope.message_id,
            digest=envelope.digest,
            data=envelope.data,
            expires_ms=envelope.expires_ms,
            route=route,
            send_key=send_key,
        )

    async def _seal_and_commit(self, messages: list[Message]) -> list[Sent | ExchnodeError]:
        results: list[Sent | ExchnodeError | None] = [None] * len(messages)
        ready: list[tuple[int, Outgoing, Route]] = []
        for index, message in enumerate(messages):
            try:
                ready.append((index, *self._prepare(message)))
            except ExchnodeError as exc:
                results[index] = exc
        sealed = self._seal_each(ready, results)
        if sealed:
            outcomes = await self._commit(
                [
                    self.own_item(envelope, route, send_key(messages[index]))
                    for index, envelope, route in sealed
                ]
            )
            for (index, envelope, _), outcome in zip(sealed, outcomes, strict=True):
                if outcome.original is not None:  # the same send again: the first message
                    results[index] = Sent(
                        outcome.original.message_id,
                        outcome.original.digest,
                        envelope.recipients,
                        outcome.original.expires_ms,
                        repeated=True,
                    )
                elif outcome.status is AcceptStatus.KEY_REUSED:
                    results[index] = UsageError(
                        "this idempotency key already names a different message (until that one "
                        "expires): choose a new key for a new message"
                    )
                elif outcome.acknowledge:
                    results[index] = Sent(
                        envelope.message_id,
                        envelope.digest,
                        envelope.recipients,
                        envelope.expires_ms,
                    )
                else:  # pragma: no cover - fresh ids do not collide or expire at once
                    results[index] = UsageError(f"the store refused the message: {outcome.status}")
        return [r if r is not None else UsageError("not sealed") for r in results]

    def _seal_each(
        self,
        ready: list[tuple[int, Outgoing, Route]],
        results: list[Sent | ExchnodeError | None],
    ) -> list[tuple[int, SealedEnvelope, Route]]:
        """Seal as one batch; if the batch fails, one by one to find the culprits."""
        if not ready:
            return []
        now = self._context.clock()
        try:
            envelopes = self._sealer.seal_batch([outgoing for _, outgoing, _ in ready], now)
            return [
                (index, envelope, route)
                for (index, _, route), envelope in zip(ready, envelopes, strict=True)
            ]
        except ExchnodeError:
            sealed = []
            for index, outgoing, route in ready:
                try:
                    sealed.append((index, self._sealer.seal(outgoing, now), route))
                except ExchnodeError as exc:
                    results[index] = exc
            return sealed

    # --- expiry ------------------------------------------------------------------------

    async def expire(
        self, interval: float, settle: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Every ``interval`` s: take what expired in a queue and report it to its sender.

        ``settle`` first removes what neighbours took but whose removal waits
        (``Forwarder.flush_removals``): it is not expired, it was handed over.
        """
        context = self._context
        store, recorder = context.store, context.recorder
        while True:
            await asyncio.sleep(interval)
            if settle is not None:
                await settle()
            now_ms = context.now_ms()

            def run(log: CustodyLog | None, now_ms: int = now_ms) -> list[ExpiredEntry]:
                expired = store.take_expired(
                    now_ms,
                    1000,
                    audit=None
                    if log is None
                    else lambda found: log.encode(recorder.expired(now_ms, found)),
                )
                store.prune(now_ms)
                context.refresh_totals()
                return expired

            expired = await context.run(context.audited, run)
            if not expired:
                continue
            context.log.info("expired", count=len(expired))
            await self.report(
                [(e.sender, e.message_id, e.digest, e.targets, e.data) for e in expired],
                [
                    (
                        "expired-in-queue",
                        f"expired at {context.name} waiting for "
                        + (e.next_hop if e.next_hop else "the recipient's application"),
                    )
                    for e in expired
                ],
            )
            context.space.set()

    # --- non-delivery reports ----------------------------------------------------------

    async def report(self, lost: list[Lost], reasons: list[tuple[str, str]]) -> None:
        """Tell each lost envelope's sender; never report on a report or a receipt."""
        context = self._context
        now = context.clock()
        outgoing: list[Outgoing] = []
        for (sender, message_id, digest, targets, data), (code, reason) in zip(
            lost, reasons, strict=True
        ):
            try:
                kind = decode_envelope(data).header.kind
            except RejectedError:  # pragma: no cover - it was verified on the way in
                kind = NDR_KIND
            if kind in RESERVED_KINDS:
                continue
            item = ndr_outgoing(
                sender=sender,
                message_id=message_id,
                digest=digest,
                targets=targets,
                code=code,
                reason=reason,
                reporter=context.name,
                now=now,
            )
            if sender == context.name:
                await self._status.record(message_id, ndr=item.payload)
                continue
            try:
                self._directory.recipient(sender)
                route = self._router.route([sender])
            except ExchnodeError as exc:
                context.log.warning("report not sent", sender=sender, error=str(exc))
                continue
            if route.unroutable:
                context.log.warning("report not sent", sender=sender, error="no route")
                continue
            outgoing.append(item)
        if not outgoing:
            return
        envelopes = self._sealer.seal_batch(outgoing, now)
        items = [
            self.own_item(envelope, self._router.route(item.recipients))
            for envelope, item in zip(envelopes, outgoing, strict=True)
        ]
        await self._commit(items)
        context.counters["reports_sent"] += len(items)

    # --- receipts ----------------------------------------------------------------------

    async def send_receipts(self, opened: list[Opened], now: float) -> None:
        """Sign a receipt for each acknowledged message and send it back, one bundle per sender."""
        context = self._context
        signed = issue_receipts(self._identity, opened, now)
        by_sender: dict[str, list[bytes]] = {}
        for item, receipt in zip(opened, signed, strict=True):
            by_sender.setdefault(item.header.sender, []).append(receipt)
        outgoing = []
        for sender, receipts in by_sender.items():
            if sender == context.name:
                for receipt in receipts:
                    await self._status.take_receipt(receipt)
                continue
            outgoing.append(
                Outgoing(
                    [sender],
                    encode_receipt_bundle(receipts),
                    kind=RECEIPT_KIND,
                    content_type=RECEIPT_CONTENT_TYPE,
                    ttl=NDR_TTL,
                )
            )
        if not outgoing:
            return
        envelopes = self._sealer.seal_batch(outgoing, now)
        items = []
        for envelope, bundle in zip(envelopes, outgoing, strict=True):
            route = self._router.route(bundle.recipients)
            if route.unroutable:
                context.log.warning(
                    "receipt not sent", sender=bundle.recipients[0], error="no route"
                )
                continue
            items.append(self.own_item(envelope, route))
        if items:
            await self._commit(items)
            context.counters["receipts_sent"] += len(items)
