"""gateway/window.py: fixed and adaptive micro-batch windows, on a real event loop. Windows
that must not elapse are 60 s long and flushed by hand, so a stalled machine cannot reorder
anything."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway.window import Window

LONG = 60.0


def _recorder() -> tuple[list[list[int]], Callable[[list[int]], Awaitable[None]]]:
    batches: list[list[int]] = []

    async def run(batch: list[int]) -> None:
        batches.append(batch)

    return batches, run


async def _passes(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_fixed_window_waits_for_company_then_its_timer_fires() -> None:
    async def main() -> tuple[list[list[int]], list[list[int]]]:
        batches, run = _recorder()
        w = Window(LONG, 64, run)
        w.add(1)
        await _passes()
        assert batches == []  # inside the window
        w.add(2)
        w.flush()
        await _passes()
        timed, run2 = _recorder()
        short = Window(0.01, 64, run2)
        short.add(3)
        for _ in range(500):  # the timer fires by itself
            if timed:
                break
            await asyncio.sleep(0.01)
        return batches, timed

    assert asyncio.run(main()) == ([[1, 2]], [[3]])


def test_adaptive_window_sends_a_lone_item_at_once_and_waits_when_company_can_come() -> None:
    async def main() -> list[list[int]]:
        batches, run = _recorder()
        others = {"n": 0}  # requests on their way to routing besides the one adding
        w = Window(LONG, 64, run, alone=lambda: others["n"] == 0)
        w.add(1)
        w.add(2)  # same pass of the loop: goes with 1
        await _passes()
        assert batches == [[1, 2]]
        others["n"] = 3  # now others are coming: the window opens
        w.add(3)
        await _passes()
        w.add(4)
        await _passes()
        assert batches == [[1, 2]]
        w.flush()
        await _passes()
        return batches

    assert asyncio.run(main()) == [[1, 2], [3, 4]]


def test_adaptive_window_still_flushes_a_full_batch() -> None:
    async def main() -> list[list[int]]:
        batches, run = _recorder()
        w = Window(LONG, 2, run, alone=lambda: False)  # never alone: only max_batch flushes
        for i in (1, 2, 3, 4, 5):
            w.add(i)
        await _passes()
        return batches

    assert asyncio.run(main()) == [[1, 2], [3, 4]]
