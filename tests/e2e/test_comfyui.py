"""A self-hosted ComfyUI end to end: the real bot process, a fake Discord and the fake ComfyUI, set up
with the shipped example (examples/comfyui: the LTX-Video workflows and their catalogue entry)."""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
from pathlib import Path

import av
import pytest
from PIL import Image

from tests.e2e.harness import BotProcess
from tests.e2e.world import COMFYUI_EXAMPLE, world
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.discord import FakeDiscord

pytestmark = pytest.mark.timeout(120)

PROGRESS = re.compile(r"`[█░]+` (\d+)%")


def progress_shown(w_discord: FakeDiscord) -> list[int]:
    """Every progress figure the bot put on a status message (edits included), in order."""
    shown: list[int] = []
    for record in w_discord.requests:
        if record.method in ("PATCH", "POST") and "/messages" in record.path:
            shown += [int(n) for n in PROGRESS.findall(str(record.json))]
    return shown


async def test_videos_with_and_without_a_reference_image_with_progress_in_the_status_message() -> None:
    async with world("comfyui", output="webp") as w:
        fake = w.video_fake
        assert isinstance(fake, FakeComfyUI)
        await w.sora("a fox runs through snow", duration=4, size="768x512")
        await w.wait_video(1)
        buf = io.BytesIO()
        Image.new("RGB", (640, 640), (20, 90, 200)).save(buf, "PNG")
        attachment = w.discord.upload_user_attachment(buf.getvalue(), "ref.png", "image/png", width=640, height=640)
        ia = await w.discord.send_interaction(
            command="sora",
            options={"prompt": "it starts to snow", "duration": 2, "size": "512x768", "image": attachment["id"]},
            attachments=[attachment],
            user_id=w.discord.add_user("bob").id,
        )
        await ia.wait_callback(timeout=3)
        videos = await w.wait_video(2)
        text, image = fake.submitted()
        assert text["6"]["inputs"]["text"] == "a fox runs through snow"
        assert (text["70"]["inputs"]["width"], text["70"]["inputs"]["length"]) == (768, 97)
        [(name, uploaded)] = fake.uploads.items()
        assert image["78"]["inputs"]["image"] == name and image["77"]["inputs"]["height"] == 768
        with Image.open(io.BytesIO(uploaded)) as ref:
            assert ref.size == (512, 768)  # fitted to the requested size before upload
        for video in videos:
            with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
                f.write(video.attachments[0].data)
                f.flush()
                with av.open(f.name) as container:
                    assert container.streams.video[0].codec_context.name == "h264"
                    assert sum(1 for _ in container.decode(video=0)) >= 12
        shown = progress_shown(w.discord)
        assert any(0 < n < 100 for n in shown), shown
        done = await w.wait_status("Done")
        assert "ltx-video" in str(done.embeds) and "comfyui" in str(done.embeds)
        assert w.db_rows("SELECT cost FROM jobs") == [(0,), (0,)]  # the operator's own server: free


async def test_cancel_reaches_comfyui_and_refunds() -> None:
    async with world("comfyui", run_seconds=60.0) as w:
        fake = w.video_fake
        assert isinstance(fake, FakeComfyUI)
        await w.sora("cancel me", duration=2, size="768x512")
        status = await w.wait_status("Generating")
        await w.discord.wait_for(lambda: fake.running is not None, 10, what="the prompt running")
        custom_id = status.components[0]["components"][0]["custom_id"]
        ia = await w.discord.send_component(status.id, custom_id, user_id=w.discord.user.id)
        await ia.wait_callback(timeout=3)
        assert "refunded" in await w.followup_text(ia)
        await w.wait_status("Cancelled")
        [prompt_id] = list(fake.prompts)
        assert fake.interrupts == [prompt_id]
        await w.discord.wait_for(lambda: prompt_id in fake.history, 10, what="the interrupted prompt in the history")
        assert w.videos() == []


async def test_a_restart_mid_job_resumes_from_the_history_without_a_second_prompt() -> None:
    async with world("comfyui", run_seconds=6.0, steps=30) as w:
        fake = w.video_fake
        assert isinstance(fake, FakeComfyUI)
        await w.sora("survive a restart", duration=2, size="768x512")
        await w.discord.wait_for(lambda: fake.running is not None, 15, what="the prompt running")
        # Killed once the prompt id is stored (a kill between POST /prompt and that is refunded instead).
        await w.discord.wait_for(
            lambda: w.db_rows("SELECT 1 FROM jobs WHERE state = 'running' AND provider_job_id IS NOT NULL"),
            15,
            what="the job stored as running",
        )
        await w.bot.restart(hard=True)
        await w.wait_video()
        await w.wait_status("Done")
        await asyncio.sleep(0.5)
        assert w.submits() == 1 and len(w.videos()) == 1
        assert len(fake.requests_to("/ws", "GET")) >= 2  # a new websocket after the restart, same client id
        assert len({r.query["clientId"] for r in fake.requests_to("/ws", "GET")}) == 1


async def test_comfyui_without_a_model_in_the_catalogue_stops_start_up_with_one_line() -> None:
    bot = BotProcess(
        {
            "DISCORD_TOKEN": "x",
            "COMFYUI_URL": "http://127.0.0.1:9",
            "COMFYUI_WORKFLOW": str(COMFYUI_EXAMPLE / "ltxv-text-to-video.json"),
        }
    )
    await bot.start()
    assert await bot.wait_exit() == 2
    lines = [line for line in bot.log_text().splitlines() if line and not line.startswith("=====")]
    assert len(lines) == 1 and lines[0].startswith(
        "configuration error: COMFYUI_URL is set but no model in the catalogue runs on comfyui"
    ), lines


def test_the_example_workflows_exist() -> None:
    names = sorted(p.name for p in Path(COMFYUI_EXAMPLE).iterdir())
    assert names == ["ltxv-image-to-video.json", "ltxv-text-to-video.json", "models.toml"]
