"""Fault-injection suite: crashes, provider chaos, Discord chaos and fuzzed commands.

Shared here: ``ChaosRelay`` (a FakeRelay whose submit, download and body can be slowed down,
truncated or cut), ``chaos_world`` (tests/e2e/world.py's ``world("relay")`` built on it) and
``audit`` (the end-to-end invariants, read from the bot's database, the fake Discord and the fake
provider, never from the bot's own idea of what happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.e2e.harness import BotProcess
from tests.e2e.world import World, provider_env
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.state import Fault
from tests.fakes.relay import FakeRelay
from tests.fakes.videos import tiny_mp4

SUBMIT_PATH = "/v2/videos/generations"
STORE_THEN_FAIL = "store-then-fail"
"""Body marker for ``ChaosDiscord.inject``: do the request for real, then answer the fault's status."""
POST_RE = re.compile(r"your video #(\d+) is ready")
TERMINAL = ("succeeded", "failed", "cancelled")


class ChaosRelay(FakeRelay):
    """FakeRelay plus one-shot faults the base fake cannot express (all consumed in order).

    ``submit_delays``: seconds to sit on a submit *after* the task exists (the provider has the job,
    the bot does not know its id yet). ``file_faults``: per download, ``"short"`` (Content-Length
    larger than the body), ``"cut"`` (connection closed mid-body), ``"slow"`` (body trickled out),
    or a float (seconds to wait before answering).
    """

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.submit_delays: list[float] = []
        self.file_faults: list[str | float] = []
        self.downloads_served: Counter[str] = Counter()

    async def _create(self, request: web.Request) -> web.Response:
        response = await super()._create(request)
        if self.submit_delays and response.status == 200:
            await asyncio.sleep(self.submit_delays.pop(0))
        return response

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"].removesuffix(".mp4")
        if name not in self.tasks:
            return web.Response(status=404, text="not found")
        data = self.video_bytes if self.video_bytes is not None else tiny_mp4()
        fault = self.file_faults.pop(0) if self.file_faults else None
        if isinstance(fault, float):
            await asyncio.sleep(fault)
            fault = None
        if fault is None:
            self.downloads_served[name] += 1
            return web.Response(body=data, content_type="video/mp4")
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.content_length = len(data) + (4096 if fault == "short" else 0)
        await resp.prepare(request)
        if fault == "slow":
            step = max(1, len(data) // 8)
            for start in range(0, len(data), step):
                await resp.write(data[start : start + step])
                await asyncio.sleep(0.05)
            await resp.write_eof()
            self.downloads_served[name] += 1
            return resp
        await resp.write(data if fault == "short" else data[: len(data) // 2])
        assert request.transport is not None
        request.transport.close()
        return resp


class ChaosDiscord(FakeDiscord):
    """FakeDiscord plus faults that happen *after* the work: ``inject(500, STORE_THEN_FAIL, ...)`` stores
    the message and then answers 500 (or the status given), like a Discord whose answer is lost."""

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.Response:
        if fault.body != STORE_THEN_FAIL:
            return await super()._fault_response(request, fault)
        done = await request.match_info.handler(request)
        assert done.status < 300, done.status
        return web.json_response({"message": f"{fault.status}: Server Error", "code": 0}, status=fault.status)


@contextlib.asynccontextmanager
async def chaos_world(
    *, env: dict[str, str] | None = None, workdir: Path | None = None, channels: int = 0, **knobs: Any
) -> AsyncIterator[World]:
    """``world("relay", ...)`` with a ChaosRelay (``w.video_fake``) and ``channels`` more text channels
    (made before the bot connects; status edits are paced per channel, so busy tests spread out)."""
    relay = ChaosRelay(**{"run_seconds": 1.0, **knobs})
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(relay)
        fake = await stack.enter_async_context(ChaosDiscord())
        for n in range(channels):
            fake.add_channel(fake.guild, f"chaos-{n}")
        bot_env = {
            "SYNC_COMMANDS": "1",
            "DISCORD_GUILD_ID": str(fake.guild.id),
            "TYPICAL_JOB_SECONDS": "2",
            # Server rules meant for people: these tests send many requests per member on purpose.
            "COOLDOWN_SECONDS": "0",
            "MAX_PENDING_JOBS_PER_USER": "1000",
            **provider_env("relay", relay),
            **(env or {}),
        }
        bot = await stack.enter_async_context(BotProcess.for_fake(fake, extra_env=bot_env, workdir=workdir))
        await bot.wait_ready(synced=True)
        yield World(fake, bot, "relay", relay)


def video_posts(w: World) -> Counter[int]:
    """Job id -> number of live messages in any channel carrying that job's MP4."""
    posts: Counter[int] = Counter()
    for channel_id in list(w.discord.channels):
        for message in w.discord.messages(channel_id):
            found = POST_RE.search(message.content)
            if found and any(a.filename.endswith(".mp4") for a in message.attachments):
                posts[int(found.group(1))] += 1
    return posts


def submits_by_prompt(relay: FakeRelay) -> Counter[str]:
    counts: Counter[str] = Counter()
    for request in relay.requests_to(SUBMIT_PATH, "POST"):
        if request.path == SUBMIT_PATH:
            counts[str(request.json().get("prompt"))] += 1
    return counts


@dataclass
class Audit:
    """Invariant counts over every job in the database. ``problems`` lists each violation."""

    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    unfinished: int = 0
    posts: int = 0
    double_posts: int = 0
    missing_posts: int = 0
    stray_posts: int = 0
    double_charges: int = 0
    unsettled: int = 0
    resubmits: int = 0
    orphan_submits: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self, **extra: object) -> str:
        figures = {
            **extra,
            "jobs": self.jobs,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "unfinished": self.unfinished,
            "posts": self.posts,
            "double_posts": self.double_posts,
            "missing_posts": self.missing_posts,
            "stray_posts": self.stray_posts,
            "double_charges": self.double_charges,
            "unsettled": self.unsettled,
            "resubmits": self.resubmits,
            "orphan_submits": self.orphan_submits,
        }
        return "FAULT SUMMARY " + " ".join(f"{k}={v}" for k, v in figures.items())


def audit(w: World) -> Audit:
    """Check every job: one terminal state, one post per success (none otherwise), credits reserved
    once and then captured xor refunded, one provider submit per job that reached ``running``.
    Submits are matched to jobs by prompt: give every job its own prompt."""
    result = Audit()
    posts = video_posts(w)
    relay = w.video_fake
    assert isinstance(relay, FakeRelay)
    submits = submits_by_prompt(relay)
    ledger: dict[int, Counter[str]] = {}
    for job_id, kind, count in w.db_rows(
        "SELECT job_id, kind, COUNT(*) FROM ledger WHERE job_id IS NOT NULL GROUP BY job_id, kind"
    ):
        ledger.setdefault(job_id, Counter())[kind] = count
    rows = w.db_rows("SELECT id, state, prompt, provider_job_id, cost FROM jobs ORDER BY id")
    known = {row[0] for row in rows}
    for job_id, state, prompt, provider_job_id, cost in rows:
        result.jobs += 1
        kinds = ledger.get(job_id, Counter())
        n_posts = posts.get(job_id, 0)
        result.posts += n_posts
        if state not in TERMINAL:
            result.unfinished += 1
            result.problems.append(f"job {job_id} still {state}")
            continue
        setattr(result, state, getattr(result, state) + 1)
        if state == "succeeded":
            if n_posts == 0:
                result.missing_posts += 1
                result.problems.append(f"job {job_id} succeeded without a video post")
            elif n_posts > 1:
                result.double_posts += 1
                result.problems.append(f"job {job_id} posted {n_posts} times")
        elif n_posts:
            result.stray_posts += 1
            result.problems.append(f"job {job_id} is {state} but its video was posted {n_posts} time(s)")
        if kinds["capture"] > 1 or kinds["refund"] > 1 or (kinds["capture"] and kinds["refund"]):
            result.double_charges += 1
            result.problems.append(f"job {job_id} settled twice: {dict(kinds)}")
        expected = "capture" if state == "succeeded" else "refund"
        if cost and (kinds["reserve"] != 1 or kinds[expected] != 1):
            result.unsettled += 1
            result.problems.append(f"job {job_id} ({state}, cost {cost}) has ledger {dict(kinds)}")
        sent = submits.get(prompt, 0)
        if provider_job_id is not None and sent != 1:
            result.resubmits += sent > 1
            result.problems.append(f"job {job_id} reached running but the provider saw {sent} submits")
        elif provider_job_id is None:
            if sent > 1:
                result.resubmits += 1
                result.problems.append(f"job {job_id} was submitted {sent} times")
            result.orphan_submits += sent
    for job_id in set(posts) - known:
        result.problems.append(f"a video was posted for unknown job {job_id}")
    return result


def text_channels(w: World) -> list[int]:
    return [c.id for c in w.discord.guild.text_channels()]


def runner_started(w: World) -> bool:
    """The current process has resumed its jobs (the runner starts ~2 s after READY)."""
    return w.bot.log_text().count("job runner started") >= w.bot.starts


async def wait_all_terminal(w: World, timeout: float) -> None:
    marks = ",".join("?" * len(TERMINAL))
    await w.discord.wait_for(
        lambda: w.db_rows(f"SELECT COUNT(*) FROM jobs WHERE state NOT IN ({marks})", TERMINAL) == [(0,)],  # noqa: S608
        timeout,
        what="every job to finish",
    )
