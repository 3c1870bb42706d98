"""PLAYGROUND=1: the playground page beside the Discord bot, on the bot's own pipeline and database.
A real ``python -m bot`` process with the fake Discord and the fake relay: a Discord /sora and a page
job each end up where they were asked, and nowhere else."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_service import free_port
from tests.e2e.world import World, world

pytestmark = pytest.mark.timeout(120)


async def page_sora(base: str, prompt: str, member: str = "alice") -> int:
    """Press the page's /sora button (the same multipart form the page's script sends); the new job's id."""
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("member", member)
    form.add_field("prompt", prompt)
    async with aiohttp.ClientSession() as http, http.post(f"{base}/sora", data=form) as resp:
        answer = await resp.json()
    assert answer["ok"], answer
    found = re.search(r"Your video #(\d+) is queued", answer["html"])
    assert found, answer
    return int(found[1])


async def wait_file(path: Path, w: World, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert w.bot.running, w.bot.log_tail()
        assert time.monotonic() < deadline, f"{path} never appeared\n{w.bot.log_tail()}"
        await asyncio.sleep(0.1)


def playground_line(w: World) -> str:
    return next((x for x in w.bot.log_text().splitlines() if "Playground: http://" in x), "")


async def test_discord_and_page_jobs_are_each_delivered_where_they_were_asked() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with world("relay", env={"PLAYGROUND": "1", "HTTP_PORT": str(port)}) as w:
        assert f"Playground: {base} (PLAYGROUND=1" in playground_line(w), w.bot.log_tail()
        ia = await w.sora("a lighthouse in a storm")
        page_job = await page_sora(base, "a paper boat on a rainy street")
        (posted,) = await w.wait_video(1)
        async with aiohttp.ClientSession() as http:
            await wait_file(w.bot.workdir / "data" / "playground" / f"{page_job}.mp4", w)
            async with http.get(f"{base}/videos/{page_job}.mp4") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "video/mp4"
            async with http.get(f"{base}/?member=alice") as resp:
                page = await resp.text()
        discord_job = w.db_rows("SELECT id FROM jobs WHERE guild_id = ?", (str(w.discord.guild.id),))[0][0]
        assert f"#{discord_job} is ready" in posted.content
        # The page shows its own job, never the Discord one; Discord got one status message and one video.
        assert f'id="job-{page_job}"' in page and f'id="job-{discord_job}"' not in page
        assert len(w.status_messages()) == 1 and len(w.videos()) == 1
        rows = w.db_rows("SELECT state, guild_id, result_message_id FROM jobs WHERE id = ?", (page_job,))
        assert rows == [("succeeded", "playground", str(page_job))]
        assert ia.followups  # the Discord member was answered as usual
    assert "Traceback" not in w.bot.log_text()


async def test_a_page_job_resumed_without_the_playground_is_kept_for_the_page_not_posted() -> None:
    """Stopped mid-job and started again without PLAYGROUND=1: the job still finishes into the
    playground's folder (the page shows it next time) and nothing reaches Discord."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with world("relay", env={"PLAYGROUND": "1", "HTTP_PORT": str(port)}, run_seconds=4.0) as w:
        page_job = await page_sora(base, "a slow paper boat")
        await w.discord.wait_for(
            lambda: w.db_rows("SELECT provider_job_id FROM jobs WHERE id = ?", (page_job,))[0][0],
            20,
            what="the page job to reach the provider",
        )
        w.bot.env.pop("PLAYGROUND")
        await w.bot.restart()
        assert "Playground: http://" not in w.bot.log_text().split("===== start #2")[1]
        await wait_file(w.bot.workdir / "data" / "playground" / f"{page_job}.mp4", w)
        # The row turns succeeded once delivery has returned, just after the file appears.
        query = "SELECT state, result_message_id FROM jobs WHERE id = ?"
        await w.discord.wait_for(lambda: w.db_rows(query, (page_job,))[0][0] != "delivering", 10, what="settled")
        assert w.db_rows(query, (page_job,)) == [("succeeded", str(page_job))]
        assert w.discord.messages(w.discord.channel.id) == []
    assert "Traceback" not in w.bot.log_text()
