"""A fake Discord, a fake video provider and the real ``python -m bot`` process, wired together."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import BotProcess
from tests.fakes.base import FakeServer
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.state import Interaction, Message
from tests.fakes.fal import FakeFal
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.relay import FakeRelay
from tests.fakes.replicate import FakeReplicate
from tests.fakes.runway import FakeRunway
from tests.fakes.segmind import FakeSegmind
from tests.fakes.sora2api import FakeSora2Api

PROVIDERS = ("demo", "relay", "openai", "segmind", "segmind-sync", "sora2api")  # comfyui: tests/e2e/test_comfyui.py
COMFYUI_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "comfyui"
# Only the parts of each provider's submit path that are unique to it.
SUBMIT_PATHS = {
    "relay": ("/v2/videos/generations", "POST"),
    "openai": ("/v1/videos", "POST"),
    "segmind": ("/v2/sora-2", "POST"),
    "segmind-sync": ("/v1/sora-2", "POST"),
    "sora2api": ("/generate", "POST"),
    "replicate": ("/predictions", "POST"),  # /v1/models/{owner}/{name}/predictions
    "runway": ("_to_video", "POST"),  # /v1/text_to_video or /v1/image_to_video
    "comfyui": ("/prompt", "POST"),
}


def make_provider_fake(provider: str, **knobs: Any) -> FakeServer | None:
    if provider == "relay":
        return FakeRelay(**{"run_seconds": 1.0, **knobs})
    if provider == "openai":
        return FakeOpenAIVideos(**{"run_seconds": 1.0, "poll_after_ms": None, **knobs})
    if provider in ("segmind", "segmind-sync"):
        return FakeSegmind(**{"run_seconds": 1.0, "sync_delay": 1.0, **knobs})
    if provider == "sora2api":
        return FakeSora2Api(**{"run_seconds": 1.0, **knobs})
    if provider == "replicate":
        return FakeReplicate(**{"queue_seconds": 0.2, "run_seconds": 1.0, **knobs})
    if provider == "runway":
        return FakeRunway(**{"queue_seconds": 0.2, "run_seconds": 1.5, **knobs})
    if provider == "fal":
        return FakeFal(**{"queue_seconds": 0.2, "run_seconds": 1.0, **knobs})
    if provider == "comfyui":
        return FakeComfyUI(**{"run_seconds": 2.0, "steps": 10, **knobs})
    return None


def provider_env(provider: str, fake: FakeServer | None) -> dict[str, str]:
    env = {"PROVIDER": provider}
    if isinstance(fake, FakeRelay):
        env.update(RELAY_BASE_URL=fake.base_url, RELAY_API_KEY=fake.api_key)
    elif isinstance(fake, FakeOpenAIVideos):
        env.update(OPENAI_BASE_URL=fake.base_url + "/v1", OPENAI_API_KEY=fake.api_key)
    elif isinstance(fake, FakeSegmind):
        # These worlds test Segmind's Sora wire path; tests of its live models pass model= explicitly.
        env.update(SEGMIND_BASE_URL=fake.base_url, SEGMIND_API_KEY=fake.api_key, DEFAULT_MODEL="sora-2")
    elif isinstance(fake, FakeSora2Api):
        env.update(SORA2API_BASE_URL=fake.base_url, SORA2API_API_KEY=fake.api_key)
    elif isinstance(fake, FakeReplicate):
        env.update(REPLICATE_BASE_URL=fake.base_url, REPLICATE_API_TOKEN=fake.api_key)
    elif isinstance(fake, FakeRunway):
        env.update(RUNWAY_BASE_URL=fake.base_url, RUNWAYML_API_SECRET=fake.api_key)
    elif isinstance(fake, FakeFal):
        env.update(FAL_BASE_URL=fake.base_url, FAL_KEY=fake.api_key, FAL_JWKS_URL=fake.jwks_url)
    elif isinstance(fake, FakeComfyUI):
        # The shipped example, as an operator would set it up: its workflows and its catalogue entry.
        env.update(
            COMFYUI_URL=fake.base_url,
            COMFYUI_WORKFLOW=str(COMFYUI_EXAMPLE / "ltxv-text-to-video.json"),
            MODELS_FILE=str(COMFYUI_EXAMPLE / "models.toml"),
        )
    return env


@dataclass
class World:
    discord: FakeDiscord
    bot: BotProcess
    provider: str
    video_fake: FakeServer | None
    interactions: list[Interaction] = field(default_factory=list)

    async def sora(
        self, prompt: str = "a lighthouse in a storm", *, user_id: int | None = None, **options: Any
    ) -> Interaction:
        """Send /sora and wait for the acknowledgement."""
        ia = await self.discord.send_interaction(
            command="sora", options={"prompt": prompt, **options}, user_id=user_id or self.discord.user.id
        )
        self.interactions.append(ia)
        await ia.wait_callback(timeout=3)
        return ia

    async def followup_text(self, ia: Interaction, timeout: float = 15.0) -> str:
        message = await self.discord.wait_for(lambda: ia.followups and ia.followups[-1], timeout, what="a follow-up")
        return message.content

    def videos(self, channel_id: int | None = None) -> list[Message]:
        return [
            m
            for m in self.discord.messages(channel_id or self.discord.channel.id)
            if any(a.filename.endswith(".mp4") for a in m.attachments)
        ]

    async def wait_video(self, count: int = 1, timeout: float = 60.0) -> list[Message]:
        await self.discord.wait_for(lambda: len(self.videos()) >= count, timeout, what=f"{count} video post(s)")
        return self.videos()

    def status_messages(self) -> list[Message]:
        return [
            m
            for m in self.discord.messages(self.discord.channel.id)
            if m.embeds and str(m.embeds[0].get("title", "")).startswith("Video")
        ]

    async def wait_status(self, text: str, timeout: float = 60.0) -> Message:
        """Wait for a status message whose embed mentions ``text``."""

        def found() -> Message | None:
            for message in self.status_messages():
                if text in str(message.embeds):
                    return message
            return None

        return await self.discord.wait_for(found, timeout, what=f"a status message saying {text!r}")

    def submits(self) -> int:
        if self.video_fake is None:
            return 0
        if isinstance(self.video_fake, FakeFal):  # one path per model: the fake keeps a list
            return len(self.video_fake.submits)
        path, method = SUBMIT_PATHS[self.provider]
        return len([r for r in self.video_fake.requests_to(path, method) if r.path.endswith(path)])

    def db_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.bot.workdir / "data" / "bot.db")) as db:
            return db.execute(sql, params).fetchall()


@contextlib.asynccontextmanager
async def world(
    provider: str = "relay",
    *,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
    fake_env: Callable[[FakeDiscord], dict[str, str]] | None = None,
    **knobs: Any,
) -> AsyncIterator[World]:
    """``fake_env``: settings that name things of the fake Discord (server ids...), made once it exists."""
    video_fake = make_provider_fake(provider, **knobs)
    async with contextlib.AsyncExitStack() as stack:
        if video_fake is not None:
            await stack.enter_async_context(video_fake)
        fake = await stack.enter_async_context(FakeDiscord())
        bot_env = {
            "SYNC_COMMANDS": "1",
            "DISCORD_GUILD_ID": str(fake.guild.id),
            "TYPICAL_JOB_SECONDS": "2",
            **provider_env(provider, video_fake),
            **(env or {}),
            **(fake_env(fake) if fake_env else {}),
        }
        bot = await stack.enter_async_context(BotProcess.for_fake(fake, extra_env=bot_env, workdir=workdir))
        await bot.wait_ready(synced=True)
        yield World(fake, bot, provider, video_fake)
