"""EditCoalescer on a virtual clock with an edit that blocks until the test lets it finish.

Only the end-to-end edit count watched the coalescer before; these pin each of its rules: one edit
in flight per message, only the latest content sent, the per-channel gap and the progress interval.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from bot.discord_ui.coalescer import EditCoalescer, EditFn
from tests.fakes.clock import VirtualClock

GAP = 1.2
INTERVAL = 5.0
CHANNEL = 10
OTHER_CHANNEL = 20


@dataclass
class Call:
    message_id: int
    payload: dict[str, Any]
    at: float


class BlockingEdits:
    """Fake ``message.edit``: records each call and holds it open while the message's gate is shut."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.calls: list[Call] = []
        self.in_flight: Counter[int] = Counter()
        self.max_in_flight: Counter[int] = Counter()
        self.gates: dict[int, asyncio.Event] = {}
        self.fail_with: dict[int, Exception] = {}

    def gate(self, message_id: int) -> asyncio.Event:
        if message_id not in self.gates:
            self.gates[message_id] = asyncio.Event()
            self.gates[message_id].set()
        return self.gates[message_id]

    def block(self, message_id: int) -> None:
        self.gate(message_id).clear()

    def release(self, message_id: int) -> None:
        self.gate(message_id).set()

    def for_message(self, message_id: int) -> EditFn:
        async def edit(payload: dict[str, Any]) -> None:
            self.in_flight[message_id] += 1
            self.max_in_flight[message_id] = max(self.max_in_flight[message_id], self.in_flight[message_id])
            self.calls.append(Call(message_id, payload, self.clock.now))
            try:
                await self.gate(message_id).wait()
                if message_id in self.fail_with:
                    raise self.fail_with[message_id]
            finally:
                self.in_flight[message_id] -= 1

        return edit

    def sent(self, message_id: int) -> list[Any]:
        return [c.payload["v"] for c in self.calls if c.message_id == message_id]

    def times(self, message_id: int) -> list[float]:
        return [round(c.at, 6) for c in self.calls if c.message_id == message_id]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def edits(clock: VirtualClock) -> BlockingEdits:
    return BlockingEdits(clock)


@pytest.fixture
async def coalescer(clock: VirtualClock) -> Any:
    c = EditCoalescer(progress_interval=INTERVAL, channel_gap=GAP, clock=clock, sleep=clock.sleep)
    yield c
    await c.aclose()


def submit(
    c: EditCoalescer,
    edits: BlockingEdits,
    message_id: int,
    value: object,
    *,
    urgent: bool = True,
    channel: int = CHANNEL,
    final: bool = False,
) -> None:
    c.submit(channel, message_id, {"v": value}, urgent=urgent, edit=edits.for_message(message_id), final=final)


async def test_one_edit_in_flight_per_message_and_only_the_latest_content_follows(
    clock: VirtualClock, edits: BlockingEdits, coalescer: EditCoalescer
) -> None:
    edits.block(1)
    submit(coalescer, edits, 1, "queued")
    await clock.advance(0)
    assert edits.sent(1) == ["queued"]

    # Three state changes while the first edit hangs: none may start a second edit of message 1.
    for value in ("submitting", "running", "downloading"):
        submit(coalescer, edits, 1, value)
        await clock.advance(3)
    assert edits.sent(1) == ["queued"]
    assert edits.in_flight[1] == 1

    edits.release(1)
    await clock.advance(10)
    assert edits.sent(1) == ["queued", "downloading"]  # the stale middle states were never sent
    assert edits.max_in_flight[1] == 1
    assert coalescer.edits_sent == 2


async def test_a_slow_message_does_not_hold_up_another_messages_edits(
    clock: VirtualClock, edits: BlockingEdits, coalescer: EditCoalescer
) -> None:
    edits.block(1)
    submit(coalescer, edits, 1, "a1")
    submit(coalescer, edits, 2, "b1", channel=OTHER_CHANNEL)
    await clock.advance(0)
    assert edits.sent(2) == ["b1"]
    submit(coalescer, edits, 2, "b2", channel=OTHER_CHANNEL)
    await clock.advance(GAP)
    assert edits.sent(2) == ["b1", "b2"]
    assert edits.sent(1) == ["a1"]


async def test_edits_in_one_channel_are_spaced_by_the_channel_gap(
    clock: VirtualClock, edits: BlockingEdits, coalescer: EditCoalescer
) -> None:
    for message_id in (1, 2, 3):
        submit(coalescer, edits, message_id, f"m{message_id}")
    submit(coalescer, edits, 4, "elsewhere", channel=OTHER_CHANNEL)
    await clock.advance(10)

    starts = sorted(c.at for c in edits.calls if c.message_id in (1, 2, 3))
    assert starts == pytest.approx([0.0, GAP, 2 * GAP])
    assert edits.times(4) == [0.0]  # another channel's bucket is not this one's


async def test_progress_waits_for_the_interval_but_a_state_change_only_for_the_channel_gap(
    clock: VirtualClock, edits: BlockingEdits, coalescer: EditCoalescer
) -> None:
    submit(coalescer, edits, 1, "running 0%")
    await clock.advance(0.5)
    for percent in (10, 20, 30):
        submit(coalescer, edits, 1, f"running {percent}%", urgent=False)
        await clock.advance(1)
    assert edits.sent(1) == ["running 0%"]
    await clock.advance(INTERVAL - clock.now)
    assert edits.sent(1) == ["running 0%", "running 30%"]
    assert edits.times(1) == [0.0, INTERVAL]

    # A progress tick right after is held for the interval; a state change overtakes it, but
    # still keeps the channel gap after the last edit.
    submit(coalescer, edits, 1, "running 40%", urgent=False)
    await clock.advance(0.2)
    submit(coalescer, edits, 1, "delivering", urgent=True)
    await clock.advance(INTERVAL)
    assert edits.sent(1) == ["running 0%", "running 30%", "delivering"]
    assert edits.times(1) == [0.0, INTERVAL, INTERVAL + GAP]


async def test_a_message_that_answers_404_is_never_edited_again(
    clock: VirtualClock, edits: BlockingEdits, coalescer: EditCoalescer
) -> None:
    response = type("R", (), {"status": 404, "reason": "Not Found"})()
    edits.fail_with[1] = discord.NotFound(response, {"message": "Unknown Message", "code": 10008})  # type: ignore[arg-type]
    submit(coalescer, edits, 1, "queued")
    await clock.advance(0)
    submit(coalescer, edits, 1, "running")
    await clock.advance(INTERVAL * 2)
    assert edits.sent(1) == ["queued"]
    assert coalescer.dead == {1}
