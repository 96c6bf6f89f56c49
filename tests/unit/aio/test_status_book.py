"""The sender's status book: which receipts count as delivery, and the record of those that do not.

A ``StatusBook`` over a ``MemoryStore`` holding the sender's own envelopes,
as a node's store holds them after ``send`` (SPEC §10.4, §16.3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio

from exchnode.aio._context import NodeContext
from exchnode.aio._status_book import StatusBook
from exchnode.audit import AuditEntry, Category
from exchnode.core import (
    LocalIdentity,
    Opener,
    Outgoing,
    ReceiptVerifier,
    SealedEnvelope,
    Sealer,
    StaticDirectory,
    issue_receipts,
)
from exchnode.store import AcceptItem, AuditRow, MemoryStore
from tests.cast import HUB, NOW, OTHER, RECIPIENT, SENDER


class Entries:
    """A custody log that only collects the records of no custody change (``append_entry``)."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def mark(self) -> object:
        return None

    def encode(self, entries: Sequence[AuditEntry]) -> list[AuditRow]:
        return []

    def rollback(self, mark: object) -> None:
        pass

    def append_entry(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    async def drained(self) -> None:
        pass


def taken(sealed: SealedEnvelope, **route: Any) -> AcceptItem:
    """``sealed`` as the store takes it from its sender, to go on as ``route`` says."""
    return AcceptItem(
        sender=SENDER,
        message_id=sealed.message_id,
        digest=sealed.digest,
        data=sealed.data,
        expires_ms=sealed.expires_ms,
        **route,
    )


@pytest_asyncio.fixture
async def book(
    cast: dict[str, LocalIdentity], directory: StaticDirectory
) -> AsyncIterator[tuple[StatusBook, NodeContext, Entries, list[SealedEnvelope]]]:
    context = NodeContext(SENDER, clock=lambda: NOW + 5)
    store = await context.open(MemoryStore())
    log = Entries()
    context.attach_custody_log(log)
    sealed = Sealer(cast[SENDER], directory).seal_batch(
        [Outgoing([RECIPIENT, OTHER], b"one"), Outgoing([RECIPIENT], b"two")], NOW
    )
    store.accept([taken(s, forward={"520102": s.recipients}) for s in sealed], int(NOW * 1000))
    try:
        yield StatusBook(context, ReceiptVerifier(directory)), context, log, sealed
    finally:
        await context.close()


def receipt_for(cast, directory, sealed: SealedEnvelope, name: str, at: float) -> bytes:
    opened = Opener(cast[name], directory).open(sealed.data, NOW)
    (receipt,) = issue_receipts(cast[name], [opened], at)
    return receipt


@pytest.mark.asyncio
async def test_each_recipients_first_receipt_counts_and_a_second_is_refused(
    cast, directory, book
) -> None:
    status_book, context, log, sealed = book
    first = receipt_for(cast, directory, sealed[0], RECIPIENT, NOW + 1)
    again = receipt_for(cast, directory, sealed[0], RECIPIENT, NOW + 2)  # acknowledged twice
    other = receipt_for(cast, directory, sealed[0], OTHER, NOW + 1)
    assert await status_book.take_receipt(first, RECIPIENT)
    assert not await status_book.take_receipt(first, RECIPIENT)  # the same bytes again
    assert not await status_book.take_receipt(again, RECIPIENT)
    assert await status_book.take_receipt(other, OTHER)
    status = await status_book.status(sealed[0].message_id)
    assert sorted(r.recipient for r in status.receipts) == [OTHER, RECIPIENT]
    assert status.settled([RECIPIENT, OTHER])
    assert context.counters["receipts_refused"] == 2
    assert [(e.outcome.code, e.get("peer")) for e in log.entries] == [
        ("replayed", RECIPIENT),
        ("replayed", RECIPIENT),
    ]


@pytest.mark.asyncio
async def test_a_refused_receipt_is_on_the_record_and_changes_no_status(
    cast, directory, book
) -> None:
    status_book, context, log, sealed = book
    genuine = receipt_for(cast, directory, sealed[1], RECIPIENT, NOW + 1)
    cases = [
        (genuine, HUB, "wrong-carrier"),
        (receipt_for(cast, directory, sealed[0], OTHER, NOW + 1), RECIPIENT, "wrong-carrier"),
        (b"\x94\x01\x02", RECIPIENT, "malformed"),
    ]
    for data, carrier, _ in cases:
        assert not await status_book.take_receipt(data, carrier)
    for s in sealed:
        assert (await status_book.status(s.message_id)).receipts == ()
    assert context.counters["receipts_refused"] == len(cases)
    for entry, (_, carrier, code) in zip(log.entries, cases, strict=True):
        assert entry.category is Category.ENVELOPE
        assert entry.action == "receipt"
        assert (entry.subject.value, entry.outcome.code) == (carrier, code)
    assert log.entries[0].get("messages") == (sealed[1].message_id,)
    assert log.entries[2].get("messages") is None  # undecodable: no id to name
    # The genuine receipt, carried by its signer, still counts afterwards.
    assert await status_book.take_receipt(genuine, RECIPIENT)
    assert (await status_book.status(sealed[1].message_id)).delivered_to == {RECIPIENT}


@pytest.mark.asyncio
async def test_a_receipt_the_node_owes_itself_has_no_carrier(cast, directory) -> None:
    """A message to itself: the node issues the receipt to itself (``carrier`` None)."""
    context = NodeContext(SENDER, clock=lambda: NOW + 5)
    store = await context.open(MemoryStore())
    try:
        sealed = Sealer(cast[SENDER], directory).seal(Outgoing([SENDER], b"note"), NOW)
        store.accept([taken(sealed, local=(SENDER,))], int(NOW * 1000))
        book = StatusBook(context, ReceiptVerifier(directory))
        assert await book.take_receipt(receipt_for(cast, directory, sealed, SENDER, NOW + 1))
        assert (await book.status(sealed.message_id)).delivered_to == {SENDER}
    finally:
        await context.close()
