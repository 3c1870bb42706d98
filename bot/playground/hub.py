"""Fan-out of job updates to the open playground pages (one queue per server-sent-event stream)."""

from __future__ import annotations

import asyncio
import logging

from bot.jobs.model import Job

log = logging.getLogger(__name__)

QUEUE_SIZE = 256


class JobHub:
    """Each subscriber gets every published job, then ``None`` when the hub closes (shutdown)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Job | None]] = set()

    def subscribe(self) -> asyncio.Queue[Job | None]:
        queue: asyncio.Queue[Job | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Job | None]) -> None:
        self._queues.discard(queue)

    def close(self) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    def publish(self, job: Job) -> None:
        for queue in self._queues:
            if queue.full():
                # A stalled page: drop its oldest update; the newest state of a job is what matters.
                queue.get_nowait()
                log.debug("playground subscriber lagging; dropped an update")
            queue.put_nowait(job)

    @property
    def subscribers(self) -> int:
        return len(self._queues)
