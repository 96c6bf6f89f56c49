"""Receipts on real nodes: only a recipient's receipt for the envelope sent counts (SPEC §10.4).

A hub on the path relays the sender's envelope, so it knows the message id
and the digest; it can sign a receipt for it with its own key, and send it
back to the sender in an envelope of its own.  The sender must not count
that as delivery: it refuses the receipt (not a recipient), as it refuses
one the hub carries for the recipient (wrong carrier) and one about another
sender's message (unknown message), puts each refusal on its audit record,
and the message stays undelivered -- until the recipient's own receipt
comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from exchnode.aio import AuditService, LinkClient, Node, make_context
from exchnode.audit import Category, decode_record
from exchnode.core import (
    RECEIPT_CONTENT_TYPE,
    RECEIPT_KIND,
    TYPE_RECEIPT,
    LocalIdentity,
    Outgoing,
    Sealer,
    encode_receipt_bundle,
    encode_signed,
    pack,
    sign_leaves,
    signed_leaf,
)
from exchnode.federation import Item, Status, TransferRequest
from exchnode.store import OutboundEntry, SqliteStore
from tests.integration.federation import Federation
from tests.integration.test_node import collect

HUB, SENDER, RECIPIENT = "520102", "520102.gongan", "520102.minzheng"
NAMES = [HUB, SENDER, RECIPIENT]


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    """Wait for ``condition``, polling; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def forged_receipt(
    hub: LocalIdentity, entry: OutboundEntry, *, naming: str, sender: str = SENDER
) -> bytes:
    """What a hub holding ``entry`` can sign: a receipt body naming ``naming``, with its own key."""
    key_id = hub.peer.signing_key_id
    body = pack(
        [
            1,
            entry.message_id,
            entry.digest,
            sender,
            naming,
            key_id,
            int(time.time() * 1000),
            hashlib.sha256(b"a guess").digest(),
        ]
    )
    (seal,) = sign_leaves(hub.signing_private_key, 1, [signed_leaf(TYPE_RECEIPT, body)])
    return encode_signed(TYPE_RECEIPT, body, seal)


async def relayed_by(hub: Node, message_id: bytes) -> OutboundEntry:
    """The hub's queued copy of ``message_id`` (its next hop is down), once it holds it."""
    found: list[OutboundEntry] = []

    async def held() -> bool:
        entries = await hub.run_in_store(
            hub.store.pending, RECIPIENT, int(time.time() * 1000), 100, 1 << 20
        )
        found.extend(e for e in entries if e.message_id == message_id)
        return bool(found)

    await until(held, "the hub to hold the envelope")
    return found[0]


def refused_receipts(federation: Federation, name: str) -> list[tuple[str, str, bytes]]:
    """(carrier, code, message id) of each receipt refusal on ``name``'s audit record."""
    with SqliteStore(federation.directory / f"{name}.sqlite") as store:
        records = store.audit_records(0, 100_000)
    out = []
    for _, data in records:
        entry = decode_record(data).entry
        if entry.category is Category.ENVELOPE and entry.action == "receipt":
            (message_id,) = entry.get("messages")  # type: ignore[misc]
            out.append((str(entry.subject.value), entry.outcome.code, message_id))
    return sorted(out)


@pytest.mark.asyncio
async def test_a_hub_cannot_sign_delivery_of_what_it_relays(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    hub_identity = federation.nodes[HUB].identity
    audited = {"services": [AuditService(flush=0.05, head_interval=0.2)]}
    async with contextlib.AsyncExitStack() as stack:
        hub = await stack.enter_async_context(federation.node(HUB))
        sender = await stack.enter_async_context(federation.node(SENDER, **audited))
        sent = await sender.send([RECIPIENT], b"for minzheng only", receipt=True)
        entry = await relayed_by(hub, sent.message_id)  # the recipient is not running yet
        assert entry.digest == sent.digest

        # The hub signs three receipts it has no business signing and brings them itself.
        bundle = encode_receipt_bundle(
            [
                forged_receipt(hub_identity, entry, naming=HUB),
                forged_receipt(hub_identity, entry, naming=RECIPIENT),
                forged_receipt(hub_identity, entry, naming=HUB, sender=RECIPIENT),
            ]
        )
        envelope = (
            Sealer(hub_identity, federation.shared_directory)
            .seal(
                Outgoing([SENDER], bundle, kind=RECEIPT_KIND, content_type=RECEIPT_CONTENT_TYPE),
                time.time(),
            )
            .data
        )
        client = LinkClient(
            SENDER,
            federation.url(SENDER),
            make_context(federation.tls_files(HUB), server=False),
            federation.authenticate,
            timeout=10,
        )
        try:
            answer = await client.transfer(
                TransferRequest(HUB, b"\x02" * 16, (Item(envelope, (SENDER,)),))
            )
        finally:
            await client.close()
        assert [r.status for r in answer.results] == [Status.TAKEN]

        async def all_refused() -> bool:
            return (await sender.stats()).counters["receipts_refused"] == 3

        await until(all_refused, "the sender to refuse the three receipts")
        status = await sender.status(sent.message_id)
        assert status.receipts == ()
        assert not status.settled()
        assert not status.settled([RECIPIENT])

        # The recipient comes up, takes the message and acknowledges: its receipt counts.
        recipient = await stack.enter_async_context(federation.node(RECIPIENT))
        (delivery,) = await asyncio.wait_for(collect(recipient, 1), 20)
        assert delivery.message_id == sent.message_id
        status = await sender.wait_status(sent.message_id, [RECIPIENT], timeout=20)
        assert status.delivered_to == {RECIPIENT}
        assert status.receipts[0].confirms(sent.digest)
        assert (await sender.stats()).counters["receipts_refused"] == 3
    assert refused_receipts(federation, SENDER) == sorted(
        [
            (HUB, "not-a-recipient", sent.message_id),
            (HUB, "wrong-carrier", sent.message_id),
            (HUB, "unknown-message", sent.message_id),
        ]
    )
