"""gateway/window.py: fixed and adaptive micro-batch windows, on a real event loop."""

from __future__ import annotations

import asyncio

from gateway.window import Window


def _recorder() -> tuple[list[list[int]], asyncio.Event, callable]:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def run(batch: list[int]) -> None:
        batches.append(batch)
        await release.wait()  # a batch "being routed" until the test releases it

    return batches, release, run


async def _passes(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_fixed_window_waits_for_company() -> None:
    async def main() -> list[list[int]]:
        batches, release, run = _recorder()
        release.set()
        w = Window(0.05, 64, run)
        w.add(1)
        await _passes()
        assert batches == []  # still inside the window
        w.add(2)
        await asyncio.sleep(0.1)
        return batches

    assert asyncio.run(main()) == [[1, 2]]


def test_adaptive_window_sends_at_once_when_idle_and_gathers_while_busy() -> None:
    async def main() -> list[list[int]]:
        batches, release, run = _recorder()
        w = Window(10.0, 64, run, adaptive=True)  # the 10 s window never elapses in this test
        w.add(1)
        w.add(2)  # same pass of the loop: goes with 1
        await _passes()
        assert batches == [[1, 2]]
        for i in (3, 4, 5):  # arrive while [1, 2] is being routed
            w.add(i)
            await _passes()
        assert batches == [[1, 2]]
        release.set()  # the busy spell ends: what gathered goes at once
        await _passes(6)
        return batches

    assert asyncio.run(main()) == [[1, 2], [3, 4, 5]]


def test_adaptive_window_still_flushes_a_full_batch() -> None:
    async def main() -> list[list[int]]:
        batches, release, run = _recorder()
        w = Window(10.0, 2, run, adaptive=True)
        w.add(0)
        await _passes()
        for i in (1, 2, 3):
            w.add(i)
        await _passes()
        release.set()
        await _passes(6)
        return batches

    assert asyncio.run(main()) == [[0], [1, 2], [3]]
