"""Replicate's signed webhooks through the real HTTP server, a real SQLite database and the fake Replicate.

The fake POSTs the finished prediction to the job's callback URL, signed with the key it serves at
``/v1/webhooks/default/secret``; ``wake`` records which job the bot would wake.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.callbacks import Callbacks
from bot.catalogue import load_catalogue
from bot.jobs.model import Job, State
from bot.metrics import Metrics
from bot.providers.base import VideoRequest
from bot.providers.replicate import ReplicateProvider
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from bot.web.server import WebServer
from tests.fakes.replicate import FakeReplicate


@dataclass
class World:
    repo: Repository
    fake: FakeReplicate
    callbacks: Callbacks
    woken: list[int]

    async def job(self) -> tuple[Job, str]:
        """A running Replicate job submitted with its callback URL; returns (job, callback URL)."""
        job = await self.repo.create_job(
            provider="replicate", user_id="u1", prompt="a cat", seconds=5, size="1280x720", model="wan-3"
        )
        job = job.moved(State.SUBMITTING, time.time())
        await self.repo.save_job(job)
        url = await self.callbacks.url_for(job)
        assert url is not None
        provider = self.callbacks.providers["replicate"]
        request = VideoRequest("a cat", seconds=5, model="wan-3", callback_url=url)
        job = job.moved(State.RUNNING, time.time(), provider_job_id=await provider.submit(request))
        await self.repo.save_job(job)
        return job, url


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    repo = Repository(await connect(tmp_path / "bot.db"))
    catalogue = load_catalogue()
    woken: list[int] = []
    async with FakeReplicate(queue_seconds=0.02, run_seconds=0.05) as fake, aiohttp.ClientSession() as session:
        assert isinstance(fake, FakeReplicate)
        provider = ReplicateProvider(
            session,
            api_token=fake.api_key,
            base_url=fake.base_url,
            hosts=catalogue.hosts_for("replicate"),
            specs=catalogue.models,
        )
        callbacks = Callbacks(repo, "http://placeholder", {"replicate": provider})
        server = WebServer(
            host="127.0.0.1", port=0, metrics=Metrics(), checks={}, callbacks=callbacks, wake=woken.append
        )
        await server.start()
        callbacks.public_base_url = f"http://127.0.0.1:{server.port}"
        try:
            yield World(repo, fake, callbacks, woken)
        finally:
            await server.stop()
            await repo.close()


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        return resp.status


async def test_a_signed_completed_webhook_wakes_its_job(world: World) -> None:
    job, _ = await world.job()
    for _ in range(300):
        if world.fake.webhook_answers:
            break
        await asyncio.sleep(0.01)
    assert world.fake.webhook_answers == [202]
    assert world.woken == [job.id]
    sent = world.fake.requests_to("/predictions", "POST")[0].json()
    assert sent["webhook_events_filter"] == ["completed"]
    assert len(world.fake.requests_to("/v1/webhooks/default/secret")) == 1


@pytest.mark.parametrize("forgery", ["wrong key", "stale", "tampered body", "no signature"])
async def test_forged_or_stale_webhooks_get_401_and_wake_nothing(world: World, forgery: str) -> None:
    world.fake.send_webhooks = False
    job, url = await world.job()
    assert job.provider_job_id is not None
    prediction = world.fake.predictions[job.provider_job_id]
    body = json.dumps({**world.fake.body_of(prediction), "status": "succeeded"}).encode()
    headers = world.fake.signed_headers(body)
    if forgery == "wrong key":
        headers = world.fake.signed_headers(body, secret="whsec_" + "QUJD" * 8)
    elif forgery == "stale":
        headers = world.fake.signed_headers(body, timestamp=int(time.time()) - 301)
    elif forgery == "tampered body":
        body = body.replace(b"succeeded", b"failed")
    else:
        headers = {"Content-Type": "application/json"}
    assert await post(url, body, headers) == 401
    assert world.woken == []
    stored = await world.repo.get_job(job.id)
    assert stored is not None and stored.state is State.RUNNING
    # The genuine one still works afterwards: the forgery used nothing up.
    genuine = json.dumps(world.fake.body_of(prediction)).encode()
    assert await post(url, genuine, world.fake.signed_headers(genuine)) == 202
    assert world.woken == [job.id]
