"""The virtual clock: waits become jumps, executor work runs inline, CPU goes to its node."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from exchnode.sim import CURRENT_NODE, SimulationStalled, VirtualClockLoop


def run(main: object) -> object:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main)  # type: ignore[arg-type]
    finally:
        loop.close()


def test_six_hours_pass_at_once_and_timers_fire_in_order() -> None:
    fired: list[tuple[str, float]] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()

        async def later(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            fired.append((name, loop.time()))

        await asyncio.gather(later("b", 7200), later("a", 3600), later("c", 6 * 3600))
        return loop.time()

    started = time.perf_counter()
    assert run(main()) == 6 * 3600
    assert time.perf_counter() - started < 1.0
    assert fired == [("a", 3600), ("b", 7200), ("c", 6 * 3600)]


def test_a_timeout_fires_in_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 30.0)
        return loop.time()

    assert run(main()) == 30.0


def test_executor_work_runs_inline_in_order_and_yields() -> None:
    order: list[str] = []

    def work(label: str) -> str:
        order.append(f"{label}:{threading.current_thread() is threading.main_thread()}")
        if label == "bad":
            raise ValueError("refused")
        return label.upper()

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        first = loop.run_in_executor(None, work, "one")
        order.append("submitted")  # the call ran when submitted, before this line
        results: list[object] = [await first, await asyncio.to_thread(work, "two")]
        try:
            await loop.run_in_executor(None, work, "bad")
        except ValueError as exc:
            results.append(str(exc))
        return results

    assert run(main()) == ["ONE", "TWO", "refused"]
    assert order == ["one:True", "submitted", "two:True", "bad:True"]


def test_cpu_goes_to_the_node_whose_context_runs() -> None:
    async def busy() -> None:
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:
            pass
        await asyncio.sleep(1)

    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        context = contextvars.copy_context()
        context.run(CURRENT_NODE.set, "520100")
        await loop.create_task(busy(), context=context)
        return dict(loop.cpu_by_node)

    cpu = run(main())
    assert isinstance(cpu, dict)
    assert cpu["520100"] >= 0.05
    assert cpu.get("", 0.0) < 0.05


def test_waiting_for_what_nothing_will_do_is_an_error_not_a_hang() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(SimulationStalled, match="nothing is ready and no timer is set"):
        run(main())
