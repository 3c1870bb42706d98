"""The HTTP port in-process: /healthz against a real SQLite file, /metrics from real collectors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.errors import ProviderRequestRejected, ProviderUnavailable
from bot.jobs.model import Job, State
from bot.metrics import DiscordRateLimitCounter, Metrics
from bot.providers.http import HttpClient
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from bot.web.server import WebServer
from tests.fakes.relay import FakeRelay


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[Repository]:
    repo = Repository(await connect(tmp_path / "bot.db"))
    yield repo
    await repo.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the exposition text: (sample name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def job(job_id: int, state: State, *, cost: int = 4, created: float = 1000.0, finished: float | None = None) -> Job:
    return Job(id=job_id, state=state, provider="relay", user_id="u", prompt="p", seconds=4, size="1280x720",
               model="sora-2", created_at=created, updated_at=created, cost=cost, finished_at=finished)  # fmt: skip


async def test_healthz_is_200_when_every_check_passes_and_503_naming_the_one_that_fails(
    repo: Repository, tmp_path: Path
) -> None:
    gateway = {"up": True}

    async def gateway_ok() -> bool:
        return gateway["up"]

    async def database_ok() -> bool:
        await repo.ping()
        return True

    server = WebServer(
        host="127.0.0.1", port=0, metrics=Metrics(), checks={"gateway": gateway_ok, "database": database_ok}
    )
    await server.start()
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert (resp.status, await resp.json()) == (200, {"gateway": True, "database": True})
            gateway["up"] = False
            async with http.get(url) as resp:
                assert (resp.status, await resp.json()) == (503, {"gateway": False, "database": True})
            gateway["up"] = True
            # The file deleted from under the open connection: it still answers, but nothing would survive.
            for suffix in ("", "-wal", "-shm"):
                (tmp_path / f"bot.db{suffix}").unlink(missing_ok=True)
            async with http.get(url) as resp:
                assert (resp.status, await resp.json()) == (503, {"gateway": True, "database": False})
            await repo.close()  # a closed connection fails too
            async with http.get(url) as resp:
                assert resp.status == 503
    finally:
        await server.stop()


async def test_a_hanging_check_is_bounded() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(60)
        return True

    server = WebServer(host="127.0.0.1", port=0, metrics=Metrics(), checks={"database": hangs}, check_timeout=0.2)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
            assert (resp.status, await resp.json()) == (503, {"database": False})
    finally:
        await server.stop()


def test_job_metrics_follow_the_runner_events() -> None:
    metrics = Metrics()
    running = job(1, State.RUNNING)
    metrics.job_taken(running)  # resumed after a restart: counted as active, not as a transition
    metrics.job_moved(job(1, State.DOWNLOADING))
    metrics.job_moved(job(1, State.DELIVERING))
    done = job(1, State.SUCCEEDED, finished=1100.0)
    metrics.job_moved(done)
    metrics.job_settled(done, "capture")
    metrics.job_polled(done, 7)
    failed = job(2, State.FAILED, finished=1010.0)
    metrics.job_moved(failed)  # failed without ever being taken (e.g. interrupted while submitting)
    metrics.job_settled(failed, "refund")

    got = samples(metrics.render().decode())
    active = {k: v for k, v in got.items() if k[0] == "sora_jobs_active"}
    assert set(active.values()) == {0.0}, "every active job left: no gauge may stay up or go negative"
    assert got[("sora_job_transitions_total", (("provider", "relay"), ("state", "succeeded")))] == 1
    assert got[("sora_job_transitions_total", (("provider", "relay"), ("state", "downloading")))] == 1
    assert ("sora_job_transitions_total", (("provider", "relay"), ("state", "running"))) not in got
    ok = (("outcome", "succeeded"), ("provider", "relay"))
    assert got[("sora_job_duration_seconds_sum", ok)] == 100.0
    assert got[("sora_job_duration_seconds_bucket", (("le", "60.0"), *ok))] == 0
    assert got[("sora_job_duration_seconds_bucket", (("le", "120.0"), *ok))] == 1
    assert got[("sora_job_polls_sum", (("provider", "relay"),))] == 7
    assert got[("sora_credits_spent_total", (("provider", "relay"),))] == 4
    assert got[("sora_credits_refunded_total", (("provider", "relay"),))] == 4


async def test_provider_requests_are_counted_once_per_attempt_with_their_error_class() -> None:
    metrics = Metrics()
    async with FakeRelay() as fake, aiohttp.ClientSession() as session:
        client = HttpClient(session, provider="relay", base_delay=0.01, on_request=metrics.provider_request)
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        fake.inject(503, {"error": {"message": "busy"}}, path_contains="/v2/")
        with pytest.raises(ProviderRequestRejected):  # retried once, then the real 404 (unknown task)
            await client.request("GET", f"{fake.base_url}/v2/videos/generations/nope", headers=headers)
        await client.request("POST", f"{fake.base_url}/v2/videos/generations", headers=headers,
                             json_body={"prompt": "a cat", "model": "sora-2"})  # fmt: skip
    got = samples(metrics.render().decode())
    relay = ("provider", "relay")
    assert got[("sora_provider_requests_total", (("code", "5xx"), relay))] == 1
    assert got[("sora_provider_requests_total", (("code", "4xx"), relay))] == 1
    assert got[("sora_provider_requests_total", (("code", "2xx"), relay))] == 1
    assert got[("sora_provider_errors_total", (("error", "ProviderUnavailable"), relay))] == 1
    assert got[("sora_provider_errors_total", (("error", "ProviderRequestRejected"), relay))] == 1


async def test_retries_and_connection_errors_each_count() -> None:
    metrics = Metrics()
    async with FakeRelay() as fake, aiohttp.ClientSession() as session:
        client = HttpClient(
            session, provider="relay", base_delay=0.01, max_retries=2, on_request=metrics.provider_request
        )
        fake.inject(503, {"error": {"message": "busy"}}, path_contains="/files/")
        response = await client.request("GET", f"{fake.base_url}/files/x.mp4", ok_statuses=(404,))
        assert response.status == 404  # the retry reached the real handler
        dead = f"http://127.0.0.1:{fake.port}"
    with pytest.raises(ProviderUnavailable):
        async with aiohttp.ClientSession() as session:
            client = HttpClient(session, provider="relay", max_retries=0, on_request=metrics.provider_request)
            await client.request("GET", f"{dead}/gone")  # the fake has stopped: connection refused
    got = samples(metrics.render().decode())
    relay = ("provider", "relay")
    assert got[("sora_provider_requests_total", (("code", "5xx"), relay))] == 1
    assert got[("sora_provider_requests_total", (("code", "4xx"), relay))] == 1
    assert got[("sora_provider_requests_total", (("code", "none"), relay))] == 1
    assert got[("sora_provider_errors_total", (("error", "ProviderUnavailable"), relay))] == 2


def test_discord_rate_limit_warnings_are_counted() -> None:
    metrics = Metrics()
    counter = DiscordRateLimitCounter(metrics)
    discord_logger = logging.getLogger("discord")
    discord_logger.addHandler(counter)
    try:
        # The exact calls discord.py 2.7 makes (http.py and webhook/async_.py).
        fmt = "We are being rate limited. %s %s responded with 429. Retrying in %.2f seconds."
        logging.getLogger("discord.http").warning(fmt, "PATCH", "https://discord.com/api/v10/x", 0.5)
        logging.getLogger("discord.http").warning("Global rate limit has been hit. Retrying in %.2f seconds.", 1.0)
        logging.getLogger("discord.webhook.async_").warning(
            "Webhook ID %s is rate limited. Retrying in %.2f seconds.", 1, 0.5
        )
        logging.getLogger("discord.http").warning("something else entirely")
    finally:
        discord_logger.removeHandler(counter)
    got = samples(metrics.render().decode())
    assert got[("sora_discord_rate_limits_total", (("route", "rest"),))] == 1
    assert got[("sora_discord_rate_limits_total", (("route", "webhook"),))] == 1


async def test_metrics_endpoint_serves_the_exposition_format() -> None:
    metrics = Metrics()
    metrics.job_moved(job(5, State.SUBMITTING, created=time.time()))
    server = WebServer(host="127.0.0.1", port=0, metrics=metrics, checks={})
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            got = samples(await resp.text())
    finally:
        await server.stop()
    assert got[("sora_jobs_active", (("provider", "relay"), ("state", "submitting")))] == 1


def test_service_settings() -> None:
    from bot.config import load_settings
    from bot.errors import ConfigError

    base = {"PROVIDER": "demo"}
    off = load_settings(base)
    assert (off.http_port, off.http_host, off.public_base_url, off.log_format) == (None, "127.0.0.1", "", "text")
    on = load_settings({**base, "HTTP_PORT": "8080", "HTTP_HOST": "10.0.0.5", "PUBLIC_BASE_URL": "https://b.example/",
                        "LOG_FORMAT": "JSON"})  # fmt: skip
    assert (on.http_port, on.http_host, on.public_base_url, on.log_format) == (
        8080,
        "10.0.0.5",
        "https://b.example",
        "json",
    )
    for name, value in (("HTTP_PORT", "http"), ("HTTP_PORT", "70000"), ("PUBLIC_BASE_URL", "bot.example.com"),
                        ("LOG_FORMAT", "xml")):  # fmt: skip
        with pytest.raises(ConfigError, match=name):
            load_settings({**base, name: value})


async def test_metrics_can_require_a_bearer_token() -> None:
    server = WebServer(host="127.0.0.1", port=0, metrics=Metrics(), checks={}, metrics_token="s3cret-token")
    await server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
                async with http.get(url, headers=headers) as resp:
                    assert resp.status == 401, headers
                    assert "sora_" not in await resp.text()
            async with http.get(url, headers={"Authorization": "Bearer s3cret-token"}) as resp:
                assert resp.status == 200
                assert "sora_jobs_active" in await resp.text()
            async with http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
                assert resp.status == 200  # health stays open for the container's HEALTHCHECK
    finally:
        await server.stop()
