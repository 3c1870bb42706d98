"""Coalesced message edits: at most one edit in flight per message, always the latest content.

Discord shares one edit bucket per channel (about 5 edits per 5 s). Progress ticks therefore wait
``progress_interval`` after the message's last edit, every edit in a channel waits ``channel_gap``
after the previous one, and an update that arrives while an edit is in flight simply replaces the
pending content. State changes skip the per-message wait (but not the channel gap), so they show
promptly. A message that answers 404 or 403 is dead: it is never touched again (repeated 4xx count
towards Discord's invalid-request ban).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.bounded import RecentSet

log = logging.getLogger(__name__)

EditFn = Callable[[dict[str, Any]], Awaitable[object]]
MAX_DEAD_MESSAGES = 10_000
"""Dead message ids remembered; an older one touched again costs at most one more 404."""


@dataclass
class _Slot:
    channel_id: int
    edit: EditFn
    pending: dict[str, Any] | None = None
    urgent: bool = False
    last_edit: float = -1e9
    task: asyncio.Task[None] | None = None
    final: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by an urgent update: it must not sit out a progress wait already begun."""


class EditCoalescer:
    def __init__(
        self,
        *,
        progress_interval: float = 5.0,
        channel_gap: float = 1.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.progress_interval = progress_interval
        self.channel_gap = channel_gap
        # Injectable so unit tests can hold the spacing rules on a fake clock.
        self._clock = clock
        self._sleep = sleep
        self._slots: dict[int, _Slot] = {}
        self._channel_free_at: dict[int, float] = {}
        self.dead: RecentSet[int] = RecentSet(MAX_DEAD_MESSAGES)
        self.edits_sent = 0

    def submit(
        self,
        channel_id: int,
        message_id: int,
        payload: dict[str, Any],
        *,
        urgent: bool,
        edit: EditFn,
        final: bool = False,
    ) -> None:
        """Queue ``payload`` as the message's next content (replacing any not yet sent).

        ``final``: the message's last content (its job is over); its bookkeeping is dropped once sent.
        The caller never waits for the edit: a finished job must not hold its slot for the edit budget."""
        if message_id in self.dead:
            return
        slot = self._slots.get(message_id)
        if slot is None:
            slot = self._slots[message_id] = _Slot(channel_id, edit)
        slot.edit = edit
        slot.pending = payload
        slot.urgent = slot.urgent or urgent
        slot.final = slot.final or final
        if urgent:
            slot.wake.set()
        if slot.task is None or slot.task.done():
            slot.task = asyncio.create_task(self._pump(message_id, slot), name=f"edit-{message_id}")

    def _forget_idle_channels(self, now: float) -> None:
        """A channel whose gap has passed needs no entry (missing means free): keeps the map small."""
        if len(self._channel_free_at) > 1024:
            for channel_id in [c for c, free_at in self._channel_free_at.items() if free_at <= now]:
                del self._channel_free_at[channel_id]

    async def aclose(self) -> None:
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(self, message_id: int, slot: _Slot) -> None:
        while slot.pending is not None:
            now = self._clock()
            ready_at = self._channel_free_at.get(slot.channel_id, 0.0)
            if not slot.urgent:
                ready_at = max(ready_at, slot.last_edit + self.progress_interval)
            if ready_at > now:
                await self._wait(slot, ready_at - now)
                continue  # newer content (or urgency) may have arrived meanwhile
            payload, slot.pending, slot.urgent = slot.pending, None, False
            self._forget_idle_channels(now)
            self._channel_free_at[slot.channel_id] = now + self.channel_gap
            slot.last_edit = now
            try:
                await slot.edit(payload)
                self.edits_sent += 1
            except (discord.NotFound, discord.Forbidden) as exc:
                log.warning("message %s is gone or forbidden (%s); no more edits", message_id, exc.status)
                self.dead.add(message_id)
                slot.pending = None
            except discord.HTTPException as exc:
                # discord.py already waited out 429s; anything else is logged and the next update retries.
                log.warning("editing message %s failed: %s %s", message_id, exc.status, exc.text)
        if slot.final and self._slots.get(message_id) is slot:
            del self._slots[message_id]

    async def _wait(self, slot: _Slot, delay: float) -> None:
        """Sleep ``delay``, or less if an urgent update arrives meanwhile."""
        if slot.urgent:
            await self._sleep(delay)  # only the channel gap is left to wait: nothing can shorten it
            return
        slot.wake.clear()
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(slot.wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
