"""Idempotent sends (issue 12, item 10): a client that got no answer sends again, safely.

A client's send can be taken into custody and its answer lost (the
connection drops, the process restarts).  Sending again with the same
idempotency key returns the first message -- for as long as that message
lives, across a restart of the node -- and never makes a second; the same key
on a different message is refused.  On the library and on real daemons
(the operator API's ``Idempotency-Key`` header and ``exchnode send
--idempotency-key``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from exchnode.errors import UsageError
from tests.integration.daemons import DaemonFederation, node_cli
from tests.integration.federation import Federation

HUB, GONGAN, MINZHENG = "520102", "520102.gongan", "520102.minzheng"
NAMES = [HUB, GONGAN, MINZHENG]


@pytest.mark.asyncio
async def test_a_retry_under_the_same_key_is_the_first_message_even_after_a_restart(
    tmp_path: Path,
) -> None:
    federation = Federation(tmp_path, NAMES)
    async with federation.node(HUB), federation.node(MINZHENG) as receiver:
        async with federation.node(GONGAN) as sender:
            first = await sender.send([MINZHENG], b"payroll", idempotency_key="batch-42")
            again = await sender.send([MINZHENG], b"payroll", idempotency_key="batch-42")
            assert not first.repeated
            assert again.repeated
            assert (again.message_id, again.digest) == (first.message_id, first.digest)
            with pytest.raises(UsageError, match="already names a different message"):
                await sender.send([MINZHENG], b"other", idempotency_key="batch-42")
            other = await sender.send([MINZHENG], b"payroll", idempotency_key="batch-43")
            assert other.message_id != first.message_id
        # The answer was lost with the process: the restarted node still knows the key.
        async with federation.node(GONGAN) as sender:
            after = await sender.send([MINZHENG], b"payroll", idempotency_key="batch-42")
            assert after.repeated
            assert after.message_id == first.message_id
            got: list[bytes] = []

            async def receive_two() -> None:  # while the sender is up to forward its queue
                async for delivery in receiver.deliveries():
                    got.append(delivery.message_id)
                    await delivery.ack()
                    if len(got) == 2:
                        return

            try:
                await asyncio.wait_for(receive_two(), 30)
            except TimeoutError:
                stats = await receiver.stats()
                raise AssertionError(f"received {len(got)} of 2: {stats}") from None
            await asyncio.sleep(0.5)  # anything more would be a second copy: give it time
        assert sorted(got) == sorted([first.message_id, other.message_id])
        assert (await receiver.stats()).inbox.count == 0


def test_the_operator_api_and_the_cli_never_send_twice_under_one_key(tmp_path: Path) -> None:
    federation = DaemonFederation(tmp_path, NAMES)
    try:
        federation.start(HUB, GONGAN, MINZHENG)
        federation.wait_ready(HUB, GONGAN, MINZHENG)
        payload = tmp_path / "report.json"
        payload.write_bytes(b'{"report": 1}')
        argv = [
            "send",
            "--config",
            str(federation.config_path(GONGAN)),
            "--to",
            MINZHENG,
            "--idempotency-key",
            "report-2026-12",
            str(payload),
        ]
        first, again = node_cli(*argv), node_cli(*argv)
        assert first.returncode == again.returncode == 0, first.stderr + again.stderr
        assert first.stdout == again.stdout  # the same message id, printed twice

        async def over_the_api() -> None:
            config = federation.config(GONGAN)
            token = config.operator.token_file.read_text().strip()
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "api-1"}
            url = federation.operator_url(GONGAN) + f"/v1/send?to={MINZHENG}"
            async with aiohttp.ClientSession() as session:
                answers = []
                for body in (b"a", b"a", b"b"):
                    async with session.post(url, data=body, headers=headers) as response:
                        answers.append((response.status, await response.json()))
            (s1, a1), (s2, a2), (s3, a3) = answers
            assert (s1, s2, s3) == (200, 200, 400)
            assert a1["message_id"] == a2["message_id"]
            assert (a1["repeated"], a2["repeated"]) == (False, True)
            assert "different message" in a3["error"]
            assert "api-1" not in a3["error"]  # the key is never echoed

        asyncio.run(over_the_api())
        received = node_cli(
            "receive", "--config", str(federation.config_path(MINZHENG)), "--count", "2",
            "--timeout", "30", "--out", str(tmp_path / "inbox"),
        )
        assert received.returncode == 0, received.stderr
        assert len(list((tmp_path / "inbox").iterdir())) == 2  # one per key, never a second
    finally:
        federation.kill_all()
