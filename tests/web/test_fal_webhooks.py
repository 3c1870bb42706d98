"""fal's signed webhooks through the real HTTP server, a real SQLite database and the fake fal queue.

The fake signs with a test Ed25519 key it serves from its own JWKS endpoint; ``wake`` records which
job the bot would wake (the runner's side is covered end to end in tests/e2e/).
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.callbacks import Callbacks
from bot.catalogue import load_catalogue
from bot.jobs.model import Job, State
from bot.metrics import Metrics
from bot.providers.base import VideoRequest
from bot.providers.fal import FalProvider, request_id_of
from bot.providers.fal_webhooks import FalWebhookVerifier, keys_from_jwks
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from bot.web.server import WebServer
from tests.fakes.fal import FakeFal


@dataclass
class World:
    repo: Repository
    fake: FakeFal
    provider: FalProvider
    callbacks: Callbacks
    server: WebServer
    woken: list[int]
    offset: float = 0.0
    """Seconds added to the verifier's clock (JWKS age and rate limit) and to forged timestamps."""

    def now(self) -> float:
        return time.time() + self.offset

    async def job(self) -> tuple[Job, str]:
        """A running fal job submitted with its callback URL; returns (job, secret callback URL)."""
        job = await self.repo.create_job(
            provider="fal", user_id="u1", prompt="a cat", seconds=8, size="1280x720", model="veo-3.1-fast"
        )
        job = job.moved(State.SUBMITTING, time.time())
        await self.repo.save_job(job)
        url = await self.callbacks.url_for(job)
        assert url is not None and url.startswith(f"http://127.0.0.1:{self.server.port}/callbacks/")
        request = VideoRequest("a cat", seconds=8, model="veo-3.1-fast", callback_url=url)
        job = job.moved(State.RUNNING, time.time(), provider_job_id=await self.provider.submit(request))
        await self.repo.save_job(job)
        return job, url

    async def webhook(self, job: Job) -> tuple[int, dict[str, str], bytes]:
        """Wait for the fake's own signed webhook for ``job``; (bot's answer, headers, body)."""
        assert job.provider_job_id is not None
        for _ in range(500):
            if self.fake.webhooks_sent:
                break
            await asyncio.sleep(0.01)
        [(_, status)] = self.fake.webhooks_sent
        fal_job = self.fake.jobs[request_id_of(job.provider_job_id)]
        body = self.fake.webhook_body(fal_job)
        return status, self.fake.signed_headers(body, request_id=fal_job.request_id), body

    def forged(
        self, job: Job, *, key: Ed25519PrivateKey | None = None, age: float = 0.0, request_id: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        assert job.provider_job_id is not None
        rid = request_id_of(job.provider_job_id)
        body = json.dumps({"request_id": rid, "status": "OK", "payload": {"video": {"url": "https://x"}}}).encode()
        headers = self.fake.signed_headers(body, request_id=request_id or rid, key=key, timestamp=int(self.now() - age))
        return headers, body


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    repo = Repository(await connect(tmp_path / "bot.db"))
    catalogue = load_catalogue()
    woken: list[int] = []
    async with FakeFal(queue_seconds=0.02, run_seconds=0.05) as fake, aiohttp.ClientSession() as session:
        assert isinstance(fake, FakeFal)
        provider = FalProvider(
            session,
            api_key=fake.api_key,
            base_url=fake.base_url,
            hosts=catalogue.hosts_for("fal"),
            specs=catalogue.models,
            jwks_url=fake.jwks_url,
        )
        callbacks = Callbacks(repo, "http://placeholder", {"fal": provider})
        server = WebServer(
            host="127.0.0.1", port=0, metrics=Metrics(), checks={}, callbacks=callbacks, wake=woken.append
        )
        await server.start()
        callbacks.public_base_url = f"http://127.0.0.1:{server.port}"
        state = World(repo, fake, provider, callbacks, server, woken)
        provider.webhooks.clock = state.now
        try:
            yield state
        finally:
            await server.stop()
            await repo.close()


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        return resp.status


def jwks_fetches(world: World) -> int:
    return len(world.fake.requests_to("/.well-known/jwks.json", "GET"))


async def test_a_signed_webhook_from_fal_wakes_its_job_once(world: World) -> None:
    job, url = await world.job()
    status, headers, body = await world.webhook(job)
    assert status == 202
    assert world.woken == [job.id]
    assert jwks_fetches(world) == 1
    # A replay of the finished-request webhook (fal retries; or an attacker) wakes nothing.
    assert await post(url, body, headers) == 409
    assert world.woken == [job.id]


async def test_a_bad_signature_is_401_and_changes_nothing(world: World) -> None:
    world.fake.webhook_delay = 30.0  # only our hand-made POSTs reach the bot
    job, url = await world.job()
    headers, body = world.forged(job, key=Ed25519PrivateKey.generate())
    assert await post(url, body, headers) == 401
    tampered_headers, _ = world.forged(job)
    assert await post(url, body.replace(b'"OK"', b'"ERROR"'), tampered_headers) == 401, "body changed after signing"
    other_id, _ = world.forged(job, request_id="another-request")
    assert await post(url, body, other_id) == 401, "headers must name the body's request"
    assert await post(url, body, {"Content-Type": "application/json"}) == 401, "unsigned"
    assert world.woken == []
    saved = await world.repo.get_job(job.id)
    assert saved is not None and saved.state is State.RUNNING
    # Refusals spend nothing: the genuine webhook still works.
    headers, body = world.forged(job)
    assert await post(url, body, headers) == 202
    assert world.woken == [job.id]


@pytest.mark.parametrize("age", [301.0, -301.0])
async def test_a_stale_or_future_timestamp_is_401_without_any_key_lookup(world: World, age: float) -> None:
    world.fake.webhook_delay = 30.0
    job, url = await world.job()
    headers, body = world.forged(job, age=age)
    assert await post(url, body, headers) == 401
    assert world.woken == []
    assert jwks_fetches(world) == 0


async def test_an_unknown_key_makes_one_rate_limited_jwks_refetch(world: World) -> None:
    world.fake.webhook_delay = 30.0
    job, url = await world.job()
    headers, body = world.forged(job)
    assert await post(url, body, headers) == 202
    assert jwks_fetches(world) == 1

    world.fake.rotate_key()  # fal rotates its key
    world.offset += 61.0
    job, url = await world.job()  # a finished-request webhook is taken once per job: a new job
    headers, body = world.forged(job)
    assert await post(url, body, headers) == 202, "the new key is fetched once and accepted"
    assert jwks_fetches(world) == 2

    # Forged POSTs cannot make us hammer the JWKS host: no refetch within the minute...
    job, url = await world.job()
    for _ in range(3):
        headers, body = world.forged(job, key=Ed25519PrivateKey.generate())
        assert await post(url, body, headers) == 401
    assert jwks_fetches(world) == 2
    # ...and one per minute after that.
    world.offset += 61.0
    headers, body = world.forged(job, key=Ed25519PrivateKey.generate())
    assert await post(url, body, headers) == 401
    assert jwks_fetches(world) == 3
    assert len(world.woken) == 2


async def test_the_jwks_is_cached_for_a_day(world: World) -> None:
    world.fake.webhook_delay = 30.0
    for _ in range(3):
        job, url = await world.job()
        headers, body = world.forged(job)
        assert await post(url, body, headers) == 202
    assert jwks_fetches(world) == 1
    world.offset += 24 * 3600 + 1
    job, url = await world.job()
    headers, body = world.forged(job)
    assert await post(url, body, headers) == 202
    assert jwks_fetches(world) == 2


async def test_a_broken_jwks_host_fails_closed(tmp_path: Path) -> None:
    async with FakeFal() as fake, aiohttp.ClientSession() as session:
        assert isinstance(fake, FakeFal)
        verifier = FalWebhookVerifier(session, f"{fake.base_url}/no-such-jwks")
        body = json.dumps({"request_id": "r1", "status": "OK"}).encode()
        assert await verifier.verify(fake.signed_headers(body, request_id="r1"), body) is False
        fake.inject(200, "not json", path_contains="jwks")
        verifier.jwks_url = fake.jwks_url
        verifier.refetch_interval = 0.0
        assert await verifier.verify(fake.signed_headers(body, request_id="r1"), body) is False
        assert await verifier.verify(fake.signed_headers(body, request_id="r1"), body) is True


def test_only_ed25519_keys_are_taken_from_the_jwks() -> None:
    good = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    document = {
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": good},
            {"kty": "OKP", "crv": "X25519", "x": good},
            {"kty": "RSA", "n": "x", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": "too-short"},
            "junk",
        ]
    }
    assert len(keys_from_jwks(document)) == 1
    assert keys_from_jwks({"keys": "nope"}) == [] and keys_from_jwks([]) == []
