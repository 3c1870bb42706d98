"""Provider callbacks through the real HTTP server and a real SQLite database.

The job runner's side (a wake makes the poll loop ask the provider at once) is covered end to end
in tests/e2e/test_service.py; here ``wake`` records which job would be woken.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.callbacks import Callbacks, digest
from bot.jobs.model import Job, State
from bot.metrics import Metrics
from bot.providers.base import VideoRequest
from bot.providers.openai_videos import OpenAIVideosProvider
from bot.providers.relay import RelayProvider
from bot.providers.sora2api import Sora2ApiProvider
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from bot.web.server import WebServer
from tests.fakes.relay import FakeRelay
from tests.fakes.sora2api import FakeSora2Api

BASE = "https://bot.example.com"


class Bot:
    """The pieces the HTTP port needs: repository, callbacks, server, and the wakes it asked for."""

    def __init__(self, repo: Repository, server: WebServer, woken: list[int], db_path: Path) -> None:
        self.repo, self.server, self.woken, self.db_path = repo, server, woken, db_path
        self.callbacks = server.callbacks
        assert self.callbacks is not None

    def local(self, url: str) -> str:
        """The public callback URL as reached on the local port."""
        assert url.startswith(BASE + "/callbacks/")
        return f"http://127.0.0.1:{self.server.port}{url.removeprefix(BASE)}"

    async def job(self, provider: str, *, state: State = State.RUNNING, task_id: str | None = "task-1") -> Job:
        job = await self.repo.create_job(
            provider=provider, user_id="u1", prompt="a cat", seconds=4, size="1280x720", model="sora-2"
        )
        now = time.time()
        if state is not State.QUEUED:
            job = job.moved(State.SUBMITTING, now)
            await self.repo.save_job(job)
        if state in (State.RUNNING, State.SUCCEEDED):
            job = job.moved(State.RUNNING, now, provider_job_id=task_id)
            await self.repo.save_job(job)
        if state is State.SUCCEEDED:
            for step in (State.DOWNLOADING, State.DELIVERING, State.SUCCEEDED):
                job = job.moved(step, now)
            await self.repo.finish_job(job, "capture")
        return job


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    repo = Repository(await connect(tmp_path / "bot.db"))
    woken: list[int] = []
    async with aiohttp.ClientSession() as session:
        # The providers that declare callbacks (the openai one does not); no request is ever sent.
        providers = {
            "relay": RelayProvider(session, api_key="k", base_url="http://127.0.0.1:9"),
            "sora2api": Sora2ApiProvider(session, api_key="k", base_url="http://127.0.0.1:9"),
            "openai": OpenAIVideosProvider(session, api_key="k", base_url="http://127.0.0.1:9"),
        }
        callbacks = Callbacks(repo, BASE, providers)
        server = WebServer(
            host="127.0.0.1", port=0, metrics=Metrics(), checks={}, callbacks=callbacks, wake=woken.append
        )
        await server.start()
        try:
            yield Bot(repo, server, woken, tmp_path / "bot.db")
        finally:
            await server.stop()
            await repo.close()


async def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as http, http.post(url, data=data) as resp:
        return resp.status, (await resp.json()) if resp.content_type == "application/json" else {}


def relay_task(task_id: str, status: str = "SUCCESS", **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "status": status, "progress": "100%", "data": {"output": "https://cdn/x.mp4"}, **extra}


async def test_a_valid_callback_wakes_its_job_and_a_replay_is_refused(bot: Bot) -> None:
    job = await bot.job("relay")
    url = await bot.callbacks.url_for(job)  # type: ignore[union-attr]
    assert url is not None
    progress = {"task_id": "task-1", "status": "IN_PROGRESS", "progress": "40%"}
    assert (await post(bot.local(url), progress))[0] == 202
    assert (await post(bot.local(url), {"code": "success", "data": relay_task("task-1")}))[0] == 202  # wrapped shape
    assert bot.woken == [job.id, job.id]
    status, body = await post(bot.local(url), relay_task("task-1"))
    assert (status, body) == (409, {"status": "callback already received"})
    assert bot.woken == [job.id, job.id], "a replay wakes nothing"


async def test_unknown_secret_is_404_and_wakes_nothing(bot: Bot) -> None:
    job = await bot.job("relay")
    url = await bot.callbacks.url_for(job)  # type: ignore[union-attr]
    assert url is not None
    forged = url[:-4] + ("aaaa" if not url.endswith("aaaa") else "bbbb")
    assert (await post(bot.local(forged), relay_task("task-1")))[0] == 404
    assert (await post(f"http://127.0.0.1:{bot.server.port}/callbacks/", relay_task("task-1")))[0] in (404, 405)
    assert bot.woken == []


async def test_callback_for_a_finished_job_is_gone(bot: Bot) -> None:
    job = await bot.job("relay")
    url = await bot.callbacks.url_for(job)  # type: ignore[union-attr]
    assert url is not None
    done = await bot.repo.get_job(job.id)
    assert done is not None
    finished = done
    for step in (State.DOWNLOADING, State.DELIVERING, State.SUCCEEDED):
        finished = finished.moved(step, time.time())
    await bot.repo.finish_job(finished, "capture")
    assert (await post(bot.local(url), relay_task("task-1")))[0] == 410
    assert bot.woken == []


async def test_bodies_that_are_not_this_jobs_task_are_refused(bot: Bot) -> None:
    job = await bot.job("relay")
    url = await bot.callbacks.url_for(job)  # type: ignore[union-attr]
    assert url is not None
    assert (await post(bot.local(url), relay_task("someone-elses-task")))[0] == 400
    assert (await post(bot.local(url), b"not json at all"))[0] == 400
    assert (await post(bot.local(url), [1, 2, 3]))[0] == 400
    assert (await post(bot.local(url), {"hello": "world"}))[0] == 400
    assert (await post(bot.local(url), b"x" * (300 * 1024)))[0] == 413
    assert bot.woken == []
    # Still usable afterwards: refusals spend nothing.
    assert (await post(bot.local(url), relay_task("task-1")))[0] == 202


async def test_a_callback_racing_the_submit_answer_still_wakes(bot: Bot) -> None:
    job = await bot.job("relay", state=State.SUBMITTING, task_id=None)
    url = await bot.callbacks.url_for(job)  # type: ignore[union-attr]
    assert url is not None
    assert (await post(bot.local(url), relay_task("task-not-yet-stored", status="IN_PROGRESS")))[0] == 202
    assert bot.woken == [job.id]


@pytest.mark.parametrize("style", ["record", "urls"])
@pytest.mark.parametrize("outcome", ["success", "failure"])
async def test_both_documented_sora2api_shapes_are_accepted(bot: Bot, style: str, outcome: str) -> None:
    async with FakeSora2Api(run_seconds=0.0, fail_with="generation failed" if outcome == "failure" else None) as fake:
        async with aiohttp.ClientSession() as session:
            provider = Sora2ApiProvider(session, api_key=fake.api_key, base_url=fake.base_url)
            task_id = await provider.submit(VideoRequest("a cat", seconds=8))
        job = await bot.job("sora2api", task_id=task_id)
        url = await bot.callbacks.url_for(job)  # type: ignore[union-attr]
        assert url is not None
        status, _ = await post(bot.local(url), fake.callback_body(task_id, style=style))
    assert status == 202
    assert bot.woken == [job.id]


async def test_urls_are_only_made_for_providers_that_call_back_and_only_digests_are_stored(
    bot: Bot, tmp_path: Path
) -> None:
    relay_job = await bot.job("relay", state=State.QUEUED)
    openai_job = await bot.job("openai", state=State.QUEUED)
    assert bot.callbacks is not None
    url = await bot.callbacks.url_for(relay_job)
    assert url is not None and url.startswith(f"{BASE}/callbacks/")
    secret = url.rsplit("/", 1)[1]
    assert len(secret) >= 32
    assert await bot.callbacks.url_for(openai_job) is None
    assert await Callbacks(bot.repo, "").url_for(relay_job) is None, "no PUBLIC_BASE_URL: no callbacks"
    second = await bot.callbacks.url_for(relay_job)
    assert second is not None and second != url, "every URL is a fresh secret"
    with sqlite3.connect(bot.db_path) as db:
        rows = db.execute("SELECT digest, job_id FROM callback_secrets ORDER BY rowid").fetchall()
    assert rows[0] == (digest(secret), relay_job.id)
    assert all(secret not in str(row) for row in rows)


async def test_providers_send_the_request_callback_url() -> None:
    hook = f"{BASE}/callbacks/abc"
    async with FakeRelay() as relay_fake, FakeSora2Api() as sora_fake, aiohttp.ClientSession() as session:
        relay = RelayProvider(session, api_key=relay_fake.api_key, base_url=relay_fake.base_url)
        await relay.submit(VideoRequest("a cat", seconds=4, callback_url=hook))
        await relay.submit(VideoRequest("a cat", seconds=4))
        sora = Sora2ApiProvider(session, api_key=sora_fake.api_key, base_url=sora_fake.base_url)
        await sora.submit(VideoRequest("a cat", seconds=8, callback_url=hook))
    with_hook, without = (r.json() for r in relay_fake.requests_to("/v2/videos/generations", "POST"))
    assert with_hook["notify_hook"] == hook and "notify_hook" not in without
    (generate,) = sora_fake.requests_to("/generate", "POST")
    assert generate.json()["callBackUrl"] == hook
