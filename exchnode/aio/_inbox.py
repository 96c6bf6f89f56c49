"""Delivery: a node's inbox opened and handed to the application, a service or the node (I/O edge).

A pump opens inbox entries in order (``Opener`` without a replay window:
the store's dedup record is the persisted window).  What it opens goes to
one of three places: a message of a kind a service consumes to that
service (``NodeService.take``), a receipt or non-delivery report to the
status book, anything else to the application (:meth:`Inbox.deliveries`).
An entry the node consumes leaves the inbox at once; an application's
entry leaves only when the application acknowledges it, and then a
receipt, if the sender asked for one, is signed and sent back in the same
step.  An entry that cannot be opened *yet* (an unknown signer, an expired
directory) stays, and is tried again every ``inbox_rescan`` seconds or as
soon as the directory learns new keys (:meth:`Inbox.rescan`).  Once the pump
has read the inbox to its end, what the intake commits to it is handed over
in the store thread (``FreshEntries``) instead of read back; a rescan reads
the store again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from functools import partial

from exchnode.aio._batcher import Batcher
from exchnode.aio._config import NodeLimits, NodeTimers
from exchnode.aio._context import FreshEntries, NodeContext
from exchnode.aio._delivery import Delivery
from exchnode.aio._observations import LOCAL
from exchnode.aio._outbox import Outbox
from exchnode.aio._service import CustodyLog, NodeService, ServiceMessage
from exchnode.aio._status_book import StatusBook
from exchnode.aio._waiting import wait_event
from exchnode.core import (
    NDR_KIND,
    RECEIPT_KIND,
    Envelope,
    Header,
    Opened,
    Opener,
    PeerIdentity,
    decode_app_message,
)
from exchnode.errors import (
    DecryptionError,
    ExchnodeError,
    MalformedError,
    RejectedError,
    UsageError,
)
from exchnode.store import InboundEntry

__all__ = ["Inbox"]

_VERIFIED_CACHE = 8192  # envelopes verified on arrival, awaiting the pump
_PAGE = 256  # inbox entries the pump takes at a time
_NO_LIMIT = 1 << 62  # bytes: the inbox is read by count alone


class Inbox:
    """The node's inbox: opened by a pump, delivered, acknowledged, consumed.

    Why a class of its own: delivery has its own state -- the entries handed
    to the application and not yet acknowledged, the envelopes already
    verified on arrival (opened without a second parse), the one consumer
    of :meth:`deliveries` -- and its own loop, and it is where the node's
    services receive their messages.
    """

    def __init__(
        self,
        context: NodeContext,
        opener: Opener,
        outbox: Outbox,
        status: StatusBook,
        services: Mapping[str, NodeService],
        *,
        limits: NodeLimits,
        timers: NodeTimers,
    ) -> None:
        self._context = context
        self._opener = opener
        self._outbox = outbox
        self._status = status
        self._service_for = services
        self._timers = timers
        self.wake = asyncio.Event()  # set when the inbox gains entries
        self._rescan = False
        # Envelopes verified on arrival and waiting in the inbox: opened without a second parse.
        self._verified: OrderedDict[tuple[str, bytes], tuple[Envelope, PeerIdentity]] = (
            OrderedDict()
        )
        self._deliveries: asyncio.Queue[Delivery | None] = asyncio.Queue(limits.deliveries_buffered)
        #: what the intake committed to the inbox since the pump last read it to its end
        self.fresh: FreshEntries[InboundEntry] = FreshEntries(_PAGE, limits.transfer_bytes)
        self._handed: set[int] = set()
        self._consuming = False
        self._acks: Batcher[Delivery, None] = Batcher(self._acknowledge, max_items=1024)

    def start(self) -> None:
        self._acks.start()

    async def close(self) -> None:
        """Finish the acknowledgements under way."""
        await self._acks.close()

    def end(self) -> None:
        """The node has closed: end :meth:`deliveries` (if its buffer has room to say so)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._deliveries.put_nowait(None)

    def rescan(self) -> None:
        """Try every entry again at once: the keys to open some may have arrived."""
        self._rescan = True
        self.wake.set()

    def remember_verified(self, envelope: Envelope, signer: PeerIdentity) -> None:
        """An envelope for this node, verified on arrival: the pump need not parse it again."""
        verified = self._verified
        verified[(envelope.header.sender, envelope.header.message_id)] = (envelope, signer)
        if len(verified) > _VERIFIED_CACHE:
            verified.popitem(last=False)

    # --- to the application --------------------------------------------------------------

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Messages for the application, oldest first; one consumer at a time."""
        if self._consuming:
            raise UsageError("deliveries() already has a consumer")
        self._consuming = True
        try:
            while True:
                delivery = await self._deliveries.get()
                if delivery is None:
                    return
                yield delivery
        finally:
            self._consuming = False

    async def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge deliveries: they leave the inbox, and receipts go out where asked."""
        batch = list(deliveries)
        for delivery in batch:
            if not isinstance(delivery, Delivery):
                raise UsageError(f"ack takes Delivery values, got {type(delivery).__name__}")
        await self._acks.submit(batch)

    async def _ack_one(self, delivery: Delivery) -> None:
        await self._acks.submit([delivery])

    async def _acknowledge(self, batch: list[Delivery]) -> list[None]:
        context = self._context
        fresh = [d for d in batch if d.seq in self._handed]
        now = context.clock()
        wanting = [d for d in fresh if d.receipt_requested]
        if wanting:
            await self._outbox.send_receipts([d.opened for d in wanting], now)
        seqs = [d.seq for d in fresh]
        if seqs:
            now_ms = context.now_ms()
            ids = [d.message_id for d in fresh]
            remove = partial(
                self._remove_delivered, seqs=seqs, ids=ids, now_ms=now_ms, consumed=False
            )
            removed = await context.run(context.audited, remove)
            context.counters["delivered"] += removed  # after the await: no count lost
            self._handed.difference_update(seqs)
            custody = context.custody
            custody.ended(LOCAL, custody.inbox, seqs, context.now_ms())
            context.space.set()
        return [None] * len(batch)

    def _remove_delivered(
        self,
        log: CustodyLog | None,
        seqs: list[int],
        ids: list[bytes],
        now_ms: int,
        consumed: bool,
    ) -> int:
        """Inbox entries done with (store thread), with their record in the same transaction."""
        context = self._context
        records = (
            []
            if log is None
            else log.encode(context.recorder.delivered(now_ms, ids, consumed=consumed))
        )
        removed = context.store.delivered(seqs, audit=records)
        context.refresh_totals()
        return removed

    # --- the pump ------------------------------------------------------------------------

    async def pump(self) -> None:
        """Open inbox entries; hand application messages over, consume the node's own."""
        context, fresh = self._context, self.fresh
        after = 0
        last_scan = context.clock()
        fresh.forget()  # (re)started: read the inbox from the store
        while True:
            if self._rescan or context.clock() - last_scan >= self._timers.inbox_rescan:
                # Retry what could not be opened yet (e.g. its signer was not known).
                after, last_scan, self._rescan = 0, context.clock(), False
                fresh.forget()
            self.wake.clear()
            now_ms = context.now_ms()
            # Read to its end: what the intake committed since is at hand, in the store's order.
            entries = fresh.take(now_ms, _PAGE, _NO_LIMIT)
            if entries is None:
                entries = await context.run(self._read, now_ms, after)
            if not entries:
                await wait_event(self.wake, self._timers.inbox_rescan)
                continue
            consumed: list[int] = []
            ids: list[bytes] = []
            for entry in entries:
                after = entry.seq
                if entry.seq in self._handed:
                    continue
                done = await self._open_entry(entry)
                if done:
                    consumed.append(entry.seq)
                    ids.append(entry.message_id)
            if consumed:
                remove = partial(
                    self._remove_delivered,
                    seqs=consumed,
                    ids=ids,
                    now_ms=context.now_ms(),
                    consumed=True,
                )
                await context.run(context.audited, remove)
                custody = context.custody
                custody.ended(LOCAL, custody.inbox, consumed, context.now_ms())

    def oldest_handed_ms(self) -> int | None:
        """When the oldest delivery the application holds unacknowledged was taken (ms).

        None if it holds none, or if that one was queued before the node started.
        """
        if not self._handed:
            return None
        return self._context.custody.inbox.accepted_ms(min(self._handed))

    def _read(self, now_ms: int, after: int) -> list[InboundEntry]:
        """The inbox's next entries from the store (store thread); at its end, :attr:`fresh`."""
        context = self._context
        entries = context.store.inbox(now_ms, _PAGE, after=after)
        if not entries and context.sole_writer:
            self.fresh.caught_up()
        return entries

    def _open(self, entry: InboundEntry, now: float) -> Opened:
        """Open an inbox entry, reusing its verification on arrival when it is still at hand.

        The cached envelope is used only for the very bytes stored (same
        digest); after a restart, or once it has left the cache, the entry is
        parsed and verified again from the store.
        """
        cached = self._verified.pop((entry.sender, entry.message_id), None)
        if cached is not None and cached[0].digest == entry.digest:
            return self._opener.open_verified(cached[0], cached[1], now)
        return self._opener.open(entry.data, now)

    async def _open_entry(self, entry: InboundEntry) -> bool:
        """Handle one inbox entry; True if the node consumed it (remove it from the inbox)."""
        log = self._context.log
        now = self._context.clock()
        try:
            opened = self._open(entry, now)
        except ExchnodeError as exc:
            # Undecryptable or malformed after passing the signature check on the way in: the
            # sender sealed it wrongly and retrying cannot help.  Anything else (an unknown
            # signer, an expired directory) may heal: keep it for the next scan.
            permanent = isinstance(exc, DecryptionError | MalformedError)
            (log.error if permanent else log.warning)(
                "undeliverable" if permanent else "cannot open yet",
                sender=entry.sender,
                message_id=entry.message_id.hex(),
                code=exc.code,
                reason=str(exc),
            )
            return permanent
        header = opened.header
        service = self._service_for.get(header.kind)
        if service is not None:
            return await self._to_service(service, opened)
        if header.kind == NDR_KIND:
            await self._status.take_report(opened)
            return True
        if header.kind == RECEIPT_KIND:
            await self._status.take_receipts(opened)
            return True
        try:
            message = decode_app_message(opened.plaintext)
        except RejectedError as exc:
            log.error("undeliverable", sender=header.sender, code=exc.code, reason=str(exc))
            return True
        self._handed.add(entry.seq)
        await self._deliveries.put(
            Delivery(
                **_received(header, message.payload)._asdict(),
                receipt_requested=message.want_receipt,
                seq=entry.seq,
                opened=opened,
                _ack=self._ack_one,
            )
        )
        return False

    async def _to_service(self, service: NodeService, opened: Opened) -> bool:
        header = opened.header
        log = self._context.log
        try:
            message = decode_app_message(opened.plaintext)
            await service.take(_received(header, message.payload))
        except RejectedError as exc:
            # The message itself is wrong: offering it again cannot help.
            log.error(
                "service message refused", sender=header.sender, code=exc.code, reason=str(exc)
            )
            return True
        except Exception:
            log.exception(
                "service message not taken; kept for the next scan",
                sender=header.sender,
                kind=header.kind,
            )
            return False
        return True


def _received(header: Header, payload: bytes) -> ServiceMessage:
    """What a service, or the application (a :class:`Delivery` adds to it), is told of a
    message: its header's fields and its payload."""
    return ServiceMessage(
        sender=header.sender,
        message_id=header.message_id,
        kind=header.kind,
        content_type=header.content_type,
        payload=payload,
        created_ms=header.created_ms,
        expires_ms=header.expires_ms,
    )
