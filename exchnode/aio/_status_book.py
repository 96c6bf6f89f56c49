"""The status of the messages a node sent: receipts and non-delivery reports, kept (I/O edge).

Receipts (signed by the recipient once its application acknowledged) and
non-delivery reports (from whichever node gave up) come back to the sender
as ordinary envelopes of the node's reserved kinds.  The inbox hands them
here; each is checked and kept in the store under ``status:<message id>``,
so the :class:`~exchnode.aio.DeliveryStatus` of a message survives restarts.

A report must come from the node it names.  A receipt counts as delivery
only if it passes the sender's check of SPEC §10.4
(``ReceiptVerifier.verify_decoded``): about a message this node sent and
still holds, signed by one of that message's recipients, naming its digest,
carried by its signer, the first from that recipient.  What the sender
keeps of each message for that check is the dedup record of its own
envelope in its own store (digest, targets = the recipients, expiry): kept
until the message expires and pruned with it, so the check costs no storage
of its own.  A refused receipt changes no status; it is logged, counted
(``receipts_refused``) and put on the audit record (category ``envelope``,
action ``receipt``, outcome ``refused`` with the code).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from exchnode.aio._context import NodeContext
from exchnode.aio._delivery import DeliveryStatus
from exchnode.audit import Actor, AuditEntry, Category, Outcome, Subject, SubjectKind, details
from exchnode.core import (
    Opened,
    Receipt,
    ReceiptVerifier,
    SentMessage,
    decode_ndr,
    decode_receipt,
    decode_receipt_bundle,
    pack,
    unpack,
)
from exchnode.errors import RejectedError, ReplayError

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
        carrier = opened.header.sender
        try:
            receipts = decode_receipt_bundle(opened.plaintext)
        except RejectedError as exc:
            self._refused(exc, carrier, None)
            return
        for data in receipts:
            await self.take_receipt(data, carrier)

    async def take_receipt(self, data: bytes, carrier: str | None = None) -> bool:
        """One receipt; ``carrier`` is the node whose envelope brought it (None: this node).

        True if it was accepted and recorded; a refused one is logged,
        counted and audited (see the module docstring), and changes nothing.
        """
        context = self._context
        try:
            receipt, seal = decode_receipt(data)
        except RejectedError as exc:
            self._refused(exc, carrier, None)
            return False
        sent = await context.run(self._sent_record, receipt)
        try:
            self._receipts.verify_decoded(
                receipt, seal, sent, me=context.name, now=context.clock(), carrier=carrier
            )
        except RejectedError as exc:
            self._refused(exc, carrier, receipt)
            return False
        if not await self.record(receipt.message_id, receipt=data, recipient=receipt.recipient):
            replay = ReplayError(
                f"receipt for message {receipt.message_id.hex()} from {receipt.recipient}: "
                "a receipt from this recipient was already accepted"
            )
            self._refused(replay, carrier, receipt)
            return False
        return True

    def _sent_record(self, receipt: Receipt) -> SentMessage | None:
        """What this node holds of the message ``receipt`` names (store thread; SPEC §10.4)."""
        store = self._context.store
        if receipt.sender != self._context.name:
            return None
        seen = store.seen(receipt.sender, receipt.message_id)
        if seen is None:
            return None
        _, _, signers = _decode_status(store.get_meta(_STATUS_PREFIX + receipt.message_id.hex()))
        return SentMessage(
            receipt.message_id, seen.digest, seen.targets, seen.expires_ms, frozenset(signers)
        )

    def _refused(self, exc: RejectedError, carrier: str | None, receipt: Receipt | None) -> None:
        """A receipt that does not count: log line, counter, audit record (never its bytes)."""
        context = self._context
        context.counters["receipts_refused"] += 1
        context.log.warning(
            "receipt refused",
            carrier=carrier,
            signer=None if receipt is None else receipt.recipient,
            message_id=None if receipt is None else receipt.message_id.hex(),
            code=exc.code,
            reason=str(exc),
        )
        about = (
            details(count=1)
            if receipt is None
            else details(
                count=1,
                messages=(receipt.message_id,),
                peer=receipt.recipient,
                sender=receipt.sender,
            )
        )
        context.log_entries(
            [
                AuditEntry(
                    time_ms=context.now_ms(),
                    category=Category.ENVELOPE,
                    action="receipt",
                    actor=Actor.node(context.name),
                    subject=Subject(SubjectKind.NODE, carrier or context.name),
                    outcome=Outcome.refused(exc.code),
                    detail=about,
                )
            ]
        )

    async def record(
        self,
        message_id: bytes,
        *,
        receipt: bytes | None = None,
        ndr: bytes | None = None,
        recipient: str | None = None,
    ) -> bool:
        """Keep a verified receipt or report for ``message_id`` and wake its waiters.

        With ``recipient`` (the receipt's signer), a receipt is kept only if
        none from that recipient is held yet, checked in the same store call
        that writes it; False if one was (SPEC §10.4 step 12, ``replayed``).
        """
        key = _STATUS_PREFIX + message_id.hex()
        store = self._context.store

        def run() -> bool:
            receipts, reports, signers = _decode_status(store.get_meta(key))
            if receipt is not None:
                if recipient is not None and recipient in signers:
                    return False
                if receipt not in receipts:
                    receipts.append(receipt)
                    signers.append(recipient or decode_receipt(receipt)[0].recipient)
            if ndr is not None and ndr not in reports:
                reports.append(ndr)
            store.set_meta(key, pack([receipts, reports, signers]))
            return True

        kept = await self._context.run(run)
        for event in self._waiters.pop(message_id, []):
            event.set()
        return kept

    async def status(self, message_id: bytes) -> DeliveryStatus:
        """Receipts and non-delivery reports received so far for ``message_id``."""
        store = self._context.store
        raw = await self._context.run(store.get_meta, _STATUS_PREFIX + message_id.hex())
        receipts, reports, _ = _decode_status(raw)
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


def _decode_status(raw: bytes | None) -> tuple[list[bytes], list[bytes], list[str]]:
    """Receipts, reports and the recipients who signed the receipts, in order.

    The signers are kept beside the receipts so that checking a receipt does
    not decode every one held before it; a value written before they were
    (two elements) has them recomputed from its receipts.
    """
    if raw is None:
        return [], [], []
    value = unpack(raw, what="status", max_size=len(raw), max_array=1 << 16)
    receipts, reports, *rest = value
    signers = rest[0] if rest else [decode_receipt(r)[0].recipient for r in receipts]
    return list(receipts), list(reports), list(signers)
