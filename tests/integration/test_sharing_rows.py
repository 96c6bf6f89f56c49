"""Issue 13: sharing state as rows on real nodes: conversion, parked messages, what is written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exchnode.aio import Message
from exchnode.audit import entry_from_event
from exchnode.catalog import ShareType
from exchnode.errors import UsageError
from exchnode.sharing import RequestState
from exchnode.store import SqliteStore
from tests.integration.test_sharing import (
    PROVIDER,
    REQUESTER,
    WAIT,
    Sharing,
    federation,
    next_records,
    pending_request,
    publish,
    request,
)

LEGACY = Path(__file__).parent / "test_sharing_rows_data"
S = RequestState


def seed(tmp_path: Path, name: str, file: str) -> None:
    """Put an older release's whole value where the node's store will be."""
    with SqliteStore(tmp_path / f"{name}.sqlite") as store:
        store.set_meta("sharing", (LEGACY / file).read_bytes())


async def rows(world: Sharing, name: str) -> dict[str, bytes]:
    return dict(await world.nodes[name].meta_range("sharing/", limit=100_000))


@pytest.mark.asyncio
async def test_an_older_node_s_state_becomes_rows_and_its_outbox_is_delivered(
    tmp_path: Path,
) -> None:
    """provider.state and requester.state were written by commit 8c13651 (``generate.py``)."""
    seed(tmp_path, PROVIDER, "provider.state")
    seed(tmp_path, REQUESTER, "requester.state")
    async with federation(tmp_path) as world:
        provider, requester = world.sharing[PROVIDER], world.sharing[REQUESTER]
        for name in (PROVIDER, REQUESTER):
            assert await world.nodes[name].get_meta("sharing") is None
        stored = await rows(world, PROVIDER)
        assert any(key.startswith("sharing/book/entry/") for key in stored)
        assert any(key.startswith("sharing/book/stream/window/") for key in stored)
        [received] = provider.requests()
        assert provider.state(received.request_id) is S.GRANTED
        assert len(provider.corrections()) == 1
        assert len(requester.reported_corrections()) == 1
        # Records 2 and 3 were in the provider's outbox when it stopped: they arrive now.
        got = await next_records(world.nodes[REQUESTER], requester)
        assert [seq for seq, _ in got.records] == [2, 3]
        assert got.records[0][1] == {"姓名": "迁移测试2", "出生日期": "1990-01-01"}
        assert got.missing == ()
        # Restarted from its rows, the provider holds the same state and writes no whole value.
        await world.stop(PROVIDER)
        await world.start(PROVIDER)
        provider = world.sharing[PROVIDER]
        assert [r.request_id for r in provider.requests()] == [received.request_id]
        assert provider.state(received.request_id) is S.GRANTED
        assert await world.nodes[PROVIDER].get_meta("sharing") is None
        assert (await rows(world, PROVIDER)).keys() >= {
            k for k in stored if not k.startswith("sharing/outbox/")
        }


@pytest.mark.asyncio
async def test_a_message_the_node_refuses_for_good_is_parked_reported_once_and_retried_on_call(
    tmp_path: Path,
) -> None:
    async with federation(tmp_path) as world:
        _code, request_id, provider, requester = await pending_request(world, ["姓名"])

        node = world.nodes[PROVIDER]
        calls: list[tuple[str, ...]] = []

        async def unknown_recipient(messages: list[Message]) -> object:
            calls.append(tuple(m.kind for m in messages))
            raise UsageError(f"recipient {REQUESTER} is not in the directory: no key to encrypt to")

        node.send_many = unknown_recipient  # type: ignore[method-assign]
        await provider.approve(request_id, operator="director-wang")  # stored, refused
        await asyncio.sleep(2.5)  # the timers run every second: a parked message is not retried
        assert calls == [("sub.decision",)]
        [parked] = provider.parked()
        assert (parked.kind, parked.recipients, parked.code) == (
            "sub.decision",
            (REQUESTER,),
            "usage",
        )
        events = world.events[PROVIDER].events
        [refused] = [e for e in events if e.action.startswith("outbox.refused")]
        assert (refused.action, refused.outcome, refused.counterpart) == (
            "outbox.refused sub.decision",
            "usage",
            REQUESTER,
        )
        assert entry_from_event(refused).outcome.status.value == "refused"
        assert requester.state(request_id) is S.PENDING

        # Kept across a restart, as a row; the operator retries it once the cause is gone.
        await world.stop(PROVIDER)
        await world.start(PROVIDER)
        provider = world.sharing[PROVIDER]
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)  # tried at start
        assert provider.parked() == []


@pytest.mark.asyncio
async def test_the_operator_retries_or_drops_parked_messages(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.CONDITIONAL)
        first = await request(world, code, ["姓名"])
        second = await request(world, code, ["出生日期"])
        provider, requester = world.sharing[PROVIDER], world.sharing[REQUESTER]
        for request_id in (first, second):
            await provider.wait_state(request_id, S.PENDING, timeout=WAIT)
        node = world.nodes[PROVIDER]
        real = node.send_many

        async def too_large(messages: list[Message]) -> object:
            raise UsageError("payload of 70000000 bytes is over the limit of 67108864")

        node.send_many = too_large  # type: ignore[method-assign]
        await provider.approve(first, operator="director-wang")
        await provider.refuse(second, operator="director-wang", reason="超出范围 out of scope")
        numbers = [p.number for p in provider.parked()]
        assert len(numbers) == 2
        with pytest.raises(UsageError, match="no parked sharing message"):
            await provider.retry_parked([max(numbers) + 1])
        assert await provider.retry_parked() == []  # still refused: still parked
        assert len(provider.parked()) == 2

        node.send_many = real  # type: ignore[method-assign]
        await provider.drop_parked([numbers[1]], operator="director-wang")
        assert await provider.retry_parked() == [numbers[0]]
        assert provider.parked() == []
        await requester.wait_state(first, S.GRANTED, timeout=WAIT)
        assert requester.state(second) is S.PENDING  # its refusal was dropped
        dropped = [e for e in world.events[PROVIDER].events if e.action.startswith("outbox.")]
        assert [e.action for e in dropped] == [
            "outbox.refused sub.decision",
            "outbox.refused sub.decision",
            "outbox.dropped sub.decision",
        ]
        for event in dropped:
            entry_from_event(event)
        assert not any(key.startswith("sharing/parked/") for key in await rows(world, PROVIDER))


@pytest.mark.asyncio
async def test_a_delivery_read_writes_only_the_tracker_row(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.UNCONDITIONAL, share_conditions="")
        request_id = await request(world, code, ["姓名"])
        provider, requester = world.sharing[PROVIDER], world.sharing[REQUESTER]
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)
        await provider.publish_records(code, [{"姓名": "张三"}])
        node = world.nodes[REQUESTER]
        real = node.update_meta
        written: list[list[str]] = []

        async def counting(changes: dict[str, bytes | None]) -> None:
            written.append(sorted(changes))
            await real(changes)

        node.update_meta = counting  # type: ignore[method-assign]
        got = await next_records(node, requester)
        assert [seq for seq, _ in got.records] == [1]
        tracker = f"sharing/tracker/{PROVIDER}/{code.encode().hex()}"
        # The read's one write: the tracker row (and deletions of messages handed over, if due).
        [keys] = [keys for keys in written if tracker in keys]
        assert all(k == tracker or k.startswith("sharing/outbox/") for k in keys), keys
