"""The status message against a slow Discord: edits of one message never overlap."""

from __future__ import annotations

import pytest

from tests.e2e.world import world
from tests.fakes.discord import RateLimitRule

pytestmark = pytest.mark.timeout(120)


async def test_edits_of_one_status_message_never_overlap_on_a_slow_discord() -> None:
    async with world("relay", run_seconds=3.0) as w:
        # Each PATCH takes longer than the coalescer's channel gap (1.2 s): an edit started as soon
        # as the gap allows, without waiting for the one in flight, would overlap it.
        w.discord.edit_delay = 1.5
        # Announced limits, as real Discord sends them: discord.py then lets requests in one bucket
        # run side by side, so only the bot's own coalescing keeps a message's edits in single file.
        w.discord.edit_rule = RateLimitRule(limit=5, per=5.0, advertise=True)
        await w.sora("slow edits", duration=4)
        await w.wait_video()
        done = await w.wait_status("Done", timeout=60)
        edits = w.discord.requests_to(f"/messages/{done.id}", "PATCH")
        assert len(edits) >= 3, "the job's state changes must reach the message"
        assert w.discord.max_edits_in_flight[f"/api/v10/channels/{done.channel_id}/messages/{done.id}"] == 1
        assert w.discord.edits_in_flight.total() == 0
