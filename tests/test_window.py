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


def test_adaptive_window_sends_a_lone_item_at_once_and_waits_when_company_can_come() -> None:
    async def main() -> list[list[int]]:
        batches, release, run = _recorder()
        release.set()
        others = {"n": 0}  # requests in flight besides the one adding
        w = Window(0.05, 64, run, alone=lambda: others["n"] == 0)
        w.add(1)
        w.add(2)  # same pass of the loop: goes with 1
        await _passes()
        assert batches == [[1, 2]]
        others["n"] = 3  # now others are in flight: the window opens
        w.add(3)
        await _passes()
        assert batches == [[1, 2]]
        w.add(4)
        await asyncio.sleep(0.1)
        return batches

    assert asyncio.run(main()) == [[1, 2], [3, 4]]


def test_adaptive_window_still_flushes_a_full_batch() -> None:
    async def main() -> list[list[int]]:
        batches, release, run = _recorder()
        release.set()
        w = Window(10.0, 2, run, alone=lambda: False)  # never alone: only max_batch flushes
        for i in (1, 2, 3, 4):
            w.add(i)
        await _passes()
        return batches

    assert asyncio.run(main()) == [[1, 2], [3, 4]]
