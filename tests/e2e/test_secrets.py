"""A provider that echoes its API key back: the key reaches neither the bot's output nor Discord.

Three ways in, one job each: an HTTP error body on submit (scrubbed by the HTTP layer), a job
failure reason (carried unscrubbed in the error detail, so only the log filter stands between it and
the log), and a result link that crashes the download, logging a traceback that holds the key.
"""

from __future__ import annotations

import pytest

from tests.e2e.world import World, world

pytestmark = pytest.mark.timeout(120)

KEY = "sk-relay-ECHOED-7f3a9c0d1e2b4a68"


async def run_to_failure(w: World, prompt: str, count: int) -> None:
    # A new requester each time: /sora has a per-user cooldown.
    await w.sora(prompt, duration=4, user_id=w.discord.add_user(f"user-{count}").id)
    await w.discord.wait_for(
        lambda: len([m for m in w.status_messages() if "Failed" in str(m.embeds)]) >= count,
        30,
        what=f"{count} failed status message(s)",
    )


async def test_an_echoed_api_key_reaches_neither_the_log_nor_discord() -> None:
    async with world("relay", api_key=KEY, run_seconds=0.6, env={"LOG_LEVEL": "DEBUG"}) as w:
        relay = w.video_fake
        assert relay is not None
        relay.inject(
            400,
            {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}},
            path_contains="/v2/videos/generations",
            method="POST",
        )
        await run_to_failure(w, "first", 1)

        relay.fail_with = f"upstream refused the key {KEY}"  # type: ignore[attr-defined]
        await run_to_failure(w, "second", 2)

        relay.fail_with = None  # type: ignore[attr-defined]
        # A link no HTTP client can open, with the key in it: the download blows up with a traceback.
        relay.result_url = lambda task_id: f"http://127.0.0.1:{KEY}/{task_id}.mp4"  # type: ignore[attr-defined]
        await run_to_failure(w, "third", 3)

        log = w.bot.log_text()
        leaks = [line[:200] for line in log.splitlines() if KEY in line]
        assert not leaks, leaks
        # Each way in really reached the log (scrubbed): otherwise this test could not fail.
        assert "Incorrect API key provided: ***" in log
        assert "upstream refused the key ***" in log
        assert "crashed" in log and "Traceback" in log and "http://127.0.0.1:***/" in log

        traffic = [str(r.json) + str(r.query) + r.path for r in w.discord.requests]
        assert traffic and not [t for t in traffic if KEY in t]
        shown = [m.content + str(m.embeds) for m in w.discord.messages(w.discord.channel.id)]
        assert len(shown) >= 3 and not [s for s in shown if KEY in s]
