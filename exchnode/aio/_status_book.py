"""The status of the messages a node sent: receipts and non-delivery reports, kept (I/O edge).

Receipts (signed by the recipient once its application acknowledged) and
non-delivery reports (from whichever node gave up) come back to the sender
as ordinary envelopes of the node's reserved kinds.  The inbox hands them
here; each is checked (a receipt verifies under the directory and must be
for a message this node sent, a report must come from the node it names)
and kept in the store under ``status:<message id>``, so the
:class:`~exchnode.aio.DeliveryStatus` of a message survives restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from exchnode.aio._context import NodeContext
from exchnode.aio._delivery import DeliveryStatus
from exchnode.core import Opened, ReceiptVerifier, decode_ndr, decode_receipt_bundle, pack, unpack
from exchnode.errors import RejectedError

__all__ = ["StatusBook"]

_STATUS_PREFIX = "status:"


class StatusBook:
    """What is known about the messages this node sent, and who waits to know more.

    Why a class of its own: the sender's side of receipts and reports is a
    small persistent record with waiters (``wait_status``), fed by the inbox
    (from other nodes), by the outbox (a report or receipt this node owes
    itself) and read by the application; none of that is custody.
    """

    def __init__(self, context: NodeContext, receipts: ReceiptVerifier) -> None:
        self._context = context
        self._receipts = receipts
        self._waiters: dict[bytes, list[asyncio.Event]] = {}

    async def take_report(self, opened: Opened) -> None:
        """A non-delivery report for one of this node's messages."""
        log = self._context.log
        try:
            report = decode_ndr(opened.plaintext)
        except RejectedError as exc:
            log.warning("bad report", reporter=opened.header.sender, reason=str(exc))
            return
        if report.reporter != opened.header.sender:
            log.warning("report names another reporter", signer=opened.header.sender)
            return
        log.warning(
            "non-delivery",
            message_id=report.message_id.hex(),
            reporter=report.reporter,
            code=report.code,
            targets=list(report.targets),
        )
        await self.record(report.message_id, ndr=opened.plaintext)

    async def take_receipts(self, opened: Opened) -> None:
        """A bundle of receipts, carried by the recipient that signed them."""
        try:
            receipts = decode_receipt_bundle(opened.plaintext)
        except RejectedError as exc:
            self._context.log.warning("bad receipts", sender=opened.header.sender, reason=str(exc))
            return
        for data in receipts:
            await self.take_receipt(data, opened.header.sender)

    async def take_receipt(self, data: bytes, carrier: str | None = None) -> None:
        """One receipt; ``carrier`` is the node whose envelope brought it (None: this node)."""
        log = self._context.log
        try:
            receipt = self._receipts.verify(data)
        except RejectedError as exc:
            log.warning("bad receipt", sender=carrier, code=exc.code, reason=str(exc))
            return
        if receipt.sender != self._context.name or (
            carrier is not None and receipt.recipient != carrier
        ):
            log.warning("receipt for someone else", recipient=receipt.recipient)
            return
        await self.record(receipt.message_id, receipt=data)

    async def record(
        self, message_id: bytes, *, receipt: bytes | None = None, ndr: bytes | None = None
    ) -> None:
        """Keep a verified receipt or report for ``message_id`` and wake its waiters."""
        key = _STATUS_PREFIX + message_id.hex()
        store = self._context.store

        def run() -> None:
            receipts, reports = _decode_status(store.get_meta(key))
            if receipt is not None and receipt not in receipts:
                receipts.append(receipt)
            if ndr is not None and ndr not in reports:
                reports.append(ndr)
            store.set_meta(key, pack([receipts, reports]))

        await self._context.run(run)
        for event in self._waiters.pop(message_id, []):
            event.set()

    async def status(self, message_id: bytes) -> DeliveryStatus:
        """Receipts and non-delivery reports received so far for ``message_id``."""
        store = self._context.store
        raw = await self._context.run(store.get_meta, _STATUS_PREFIX + message_id.hex())
        receipts, reports = _decode_status(raw)
        return DeliveryStatus(
            message_id,
            tuple(self._receipts.verify(r) for r in receipts),
            tuple(decode_ndr(r) for r in reports),
        )

    async def wait(
        self, message_id: bytes, recipients: Sequence[str] | None, timeout: float | None
    ) -> DeliveryStatus:
        """Wait until every one of ``recipients`` (any one, if None) has a receipt or report."""

        async def settled() -> DeliveryStatus:
            while True:
                event = asyncio.Event()
                self._waiters.setdefault(message_id, []).append(event)
                current = await self.status(message_id)
                if current.settled(recipients):
                    return current
                await event.wait()

        return await asyncio.wait_for(settled(), timeout)


def _decode_status(raw: bytes | None) -> tuple[list[bytes], list[bytes]]:
    if raw is None:
        return [], []
    value = unpack(raw, what="status", max_size=len(raw), max_array=1 << 16)
    receipts, reports = value
    return list(receipts), list(reports)
