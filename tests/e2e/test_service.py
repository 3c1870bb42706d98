"""The bot as a service: its HTTP port (/healthz, /metrics, provider callbacks) and JSON logs, on the
real ``python -m bot`` process with a fake Discord and a fake relay."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.world import World, world
from tests.fakes.relay import FakeRelay

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await (resp.json() if resp.content_type == "application/json" else resp.text())


async def post(url: str, body: Any) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        return resp.status


async def wait_health(base: str, expected: dict[str, bool], timeout: float = 15.0) -> int:
    """Poll /healthz until it reports ``expected``; return its HTTP status."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, last = await get(f"{base}/healthz")
        if last == expected:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"/healthz never said {expected}; last answer {last}")


def relay(w: World) -> FakeRelay:
    assert isinstance(w.video_fake, FakeRelay)
    return w.video_fake


async def test_healthz_metrics_and_json_logs_after_one_job() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with world("relay", env={"HTTP_PORT": str(port), "LOG_FORMAT": "json"}) as w:
        assert await wait_health(base, {"gateway": True, "database": True}) == 200
        w.discord.inject(429, path_contains="/messages/", method="PATCH", times=1, headers={"Retry-After": "0.3"})
        await w.sora("a lighthouse in a storm", duration=4)
        await w.wait_video()
        await w.wait_status("Done")
        (job_id,) = [row[0] for row in w.db_rows("SELECT id FROM jobs")]

        status, text = await get(f"{base}/metrics")
        assert status == 200
        got = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        relay_label = ("provider", "relay")
        for state in ("submitting", "running", "downloading", "delivering", "succeeded"):
            assert got[("sora_job_transitions_total", (relay_label, ("state", state)))] == 1, state
        assert got[("sora_job_duration_seconds_count", (("outcome", "succeeded"), relay_label))] == 1
        assert ("sora_job_duration_seconds_bucket", (("le", "+Inf"), ("outcome", "succeeded"), relay_label)) in got
        assert got[("sora_provider_requests_total", (("code", "2xx"), relay_label))] >= 3  # submit, poll, download
        assert got[("sora_job_polls_count", (relay_label,))] == 1
        assert got[("sora_job_polls_sum", (relay_label,))] >= 1
        assert got[("sora_credits_spent_total", (relay_label,))] == 4
        assert got[("sora_jobs_active", (relay_label, ("state", "running")))] == 0
        assert got[("sora_discord_rate_limits_total", (("route", "rest"),))] >= 1

        # One JSON object per line, the state changes carrying the job id, and never the API key.
        lines = [line for line in w.bot.log_text().splitlines() if line and not line.startswith("=====")]
        records = [json.loads(line) for line in lines]
        moves = [r for r in records if r.get("job_id") == job_id and " -> " in r["message"]]
        assert [r["state"] for r in moves] == ["submitting", "running", "downloading", "delivering"]
        assert any(r.get("job_id") == job_id and r.get("state") == "succeeded" for r in records)
        assert relay(w).api_key not in w.bot.log_text()


async def test_healthz_is_503_when_the_gateway_or_the_database_is_gone() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with world("relay", env={"HTTP_PORT": str(port)}) as w:
        assert await wait_health(base, {"gateway": True, "database": True}) == 200
        # The database file removed from under the running bot (a lost volume).
        for suffix in ("", "-wal", "-shm"):
            (w.bot.workdir / "data" / f"bot.db{suffix}").unlink(missing_ok=True)
        assert await wait_health(base, {"gateway": True, "database": False}) == 503
        # Discord unreachable: the gateway drops and every reconnect is refused.
        await w.discord.stop()
        assert await wait_health(base, {"gateway": False, "database": False}) == 503


async def test_callback_wakes_the_job_at_once_and_forged_or_replayed_ones_are_refused() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"HTTP_PORT": str(port), "PUBLIC_BASE_URL": f"{base}/", "TYPICAL_JOB_SECONDS": "600"}
    # With a 600 s expected time the poller looks once after 5 s, then every 30 s.
    async with world("relay", env=env, run_seconds=600.0) as w:
        fake = relay(w)
        await w.sora("first: its callback lies", duration=4)
        await w.sora("second: its callback is genuine", duration=4, user_id=w.discord.other_user.id)
        await w.discord.wait_for(lambda: len(fake.tasks) == 2, 10, what="two submits")
        hooks = [r.json()["notify_hook"] for r in fake.requests_to("/v2/videos/generations", "POST")]
        assert all(h.startswith(f"{base}/callbacks/") for h in hooks) and len(set(hooks)) == 2
        liar_task, genuine_task = list(fake.tasks)
        polls = lambda task: len(fake.requests_to(f"/v2/videos/generations/{task}", "GET"))  # noqa: E731
        await w.discord.wait_for(lambda: polls(liar_task) >= 1 and polls(genuine_task) >= 1, 15, what="first polls")

        # A forged secret: refused, and nobody asks the provider anything.
        before = polls(genuine_task)
        assert await post(f"{base}/callbacks/forged-secret-0123456789abcdef", fake.task_object(genuine_task)) == 404
        await asyncio.sleep(1.0)
        assert polls(genuine_task) == before

        # A callback claiming success with someone else's video: the bot asks the provider, which
        # says the task is still running, so nothing is posted.
        before = polls(liar_task)
        lie = {**fake.task_object(liar_task), "status": "SUCCESS", "data": {"output": "https://evil.example/x.mp4"}}
        assert await post(hooks[0], lie) == 202
        await w.discord.wait_for(lambda: polls(liar_task) > before, 2, what="a status check after the callback")
        await asyncio.sleep(1.0)
        assert w.videos() == []

        # The genuine one: the job finishes at the provider and says so; the video follows at once.
        fake.finish(genuine_task)
        called_back = time.monotonic()
        assert await post(hooks[1], fake.task_object(genuine_task)) == 202
        await w.wait_video(timeout=10)  # polling alone would take ~30 s more
        latency = time.monotonic() - called_back
        print(f"callback -> video posted: {latency:.2f}s")
        assert latency < 10
        await w.wait_status("Done")

        # Replayed after the job finished: refused.
        assert await post(hooks[1], fake.task_object(genuine_task)) == 410
        assert await post(hooks[0], lie) == 409, "a secret is spent by its first finished-task callback"
        assert len(w.videos()) == 1
