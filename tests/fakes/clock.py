"""Clocks tests drive by hand, so nothing in a test sleeps or races the wall clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class ManualClock:
    """A ``time.time`` stand-in that moves only when the test sets ``now`` (a fake's task lifecycle)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class VirtualClock(ManualClock):
    """Also an ``asyncio.sleep`` stand-in: sleepers wake in order of their deadline when the test
    calls ``advance``."""

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            wake_at, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake_at)
            if not future.done():
                future.set_result(None)
            await settle()
        self.now = target
        await settle()


async def settle() -> None:
    """Let every ready task run until it waits on the clock or a gate."""
    for _ in range(100):
        await asyncio.sleep(0)
