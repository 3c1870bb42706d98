"""Where image work leaves the event loop (see bot.media.images for the work itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from bot.errors import MediaError

T = TypeVar("T")


class ImageGate:
    """Where image work leaves the event loop: at most ``concurrency`` decodes at once for the whole
    bot (each may need a full-size buffer), and one in flight per member (a second is refused)."""

    def __init__(self, concurrency: int = 2) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._members: set[str] = set()

    async def run(self, user_id: str | None, work: Callable[[], T]) -> T:
        if user_id is not None:
            if user_id in self._members:
                raise MediaError(
                    "Your previous picture is still being prepared; please wait a moment and try again.",
                    f"user {user_id} already has an image in flight",
                )
            self._members.add(user_id)
        try:
            async with self._slots:
                thread = asyncio.ensure_future(asyncio.to_thread(work))
                try:
                    return await asyncio.shield(thread)
                except asyncio.CancelledError:
                    # A thread cannot be stopped: hold the slot until it really ends, or the bound is void.
                    await asyncio.gather(thread, return_exceptions=True)
                    raise
        finally:
            if user_id is not None:
                self._members.discard(user_id)
