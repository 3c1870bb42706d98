"""Provider chaos against the real relay client and the real runner (in process, real SQLite).

429s with and without Retry-After, 5xx, dropped connections, slow and truncated video bodies. The
rules checked: a status request may be retried freely; a submit is re-sent only after an answer
proving it was not taken (429/502/503), otherwise the job fails and is refunded; a truncated
download is detected and fetched again; what is delivered is byte for byte what the provider has.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from bot.catalogue import Router
from bot.credits.ledger import CreditPolicy
from bot.jobs.model import Job, State
from bot.jobs.notifier import Delivery
from bot.jobs.runner import JobRunner
from bot.jobs.service import JobService, NewJob
from bot.providers.base import VideoRequest
from bot.providers.relay import RelayProvider
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from tests.fakes.videos import tiny_mp4
from tests.faults import SUBMIT_PATH, ChaosRelay

pytestmark = pytest.mark.timeout(60)


@dataclass
class RecordingNotifier:
    """Keeps the bytes of every delivered video (a crash-free stand-in for the Discord notifier)."""

    delivered: dict[int, list[bytes]] = field(default_factory=dict)
    changes: list[Job] = field(default_factory=list)

    async def job_changed(self, job: Job) -> None:
        self.changes.append(job)

    async def deliver(self, job: Job, video: Path) -> Delivery:
        data = await asyncio.to_thread(video.read_bytes)
        self.delivered.setdefault(job.id, []).append(data)
        return Delivery(message_id=str(job.id))


@dataclass
class Rig:
    relay: ChaosRelay
    repo: Repository
    runner: JobRunner
    service: JobService
    notifier: RecordingNotifier
    work_dir: Path

    async def submit(self, prompt: str) -> Job:
        return await self.service.submit(NewJob(VideoRequest(prompt, 4), user_id="u1", guild_id="g1"))

    async def finished(self, job_ids: list[int], timeout: float = 30.0) -> list[Job]:
        async def all_done() -> list[Job]:
            while True:
                jobs = [await self.repo.get_job(i) for i in job_ids]
                if all(j is not None and j.state.terminal for j in jobs):
                    return [j for j in jobs if j is not None]
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(all_done(), timeout)

    def submits(self, prompt: str) -> int:
        return sum(1 for r in self.relay.requests_to(SUBMIT_PATH, "POST") if r.json().get("prompt") == prompt)

    def tasks(self, prompt: str) -> int:
        return sum(1 for t in self.relay.tasks.values() if t.params.get("prompt") == prompt)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with ChaosRelay(run_seconds=0.3) as relay, aiohttp.ClientSession() as session:
        repo = Repository(await connect(tmp_path / "bot.db"))
        provider = RelayProvider(session, api_key=relay.api_key, base_url=relay.base_url, retry_base_delay=0.01)
        notifier = RecordingNotifier()
        work_dir = tmp_path / "results"
        runner = JobRunner(
            repo,
            {provider.name: provider},
            notifier,
            router=Router.for_providers([provider.name]),
            work_dir=work_dir,
            max_running=8,
            max_running_per_user=8,
            typical_job_seconds=0.5,
        )
        service = JobService(
            repo, {provider.name: provider}, runner.router, runner, CreditPolicy(daily_credits=1000), data_dir=tmp_path
        )
        await runner.start()
        try:
            yield Rig(relay, repo, runner, service, notifier, work_dir)
        finally:
            await runner.stop()
            await repo.close()


async def ledger(rig: Rig, job: Job) -> dict[str, int]:
    return await rig.repo.settlements(job.id)


async def test_random_status_faults_are_retried_and_every_job_delivers_intact(rig: Rig) -> None:
    rng = random.Random(7)
    for _ in range(24):
        kind = rng.choice(("429-retry-after", "429-bare", "500", "502", "503", "drop"))
        if kind == "drop":
            rig.relay.inject(0, path_contains=SUBMIT_PATH + "/", method="GET", drop_connection=True)
        elif kind.startswith("429"):
            headers = {"Retry-After": "0"} if kind == "429-retry-after" else {}
            rig.relay.inject(429, {"error": {"message": "slow down"}}, path_contains=SUBMIT_PATH + "/", headers=headers)
        else:
            rig.relay.inject(int(kind), "upstream trouble", path_contains=SUBMIT_PATH + "/", method="GET")
    jobs = [await rig.submit(f"status chaos {n}") for n in range(6)]
    done = await rig.finished([j.id for j in jobs])
    assert [j.state for j in done] == [State.SUCCEEDED] * 6, [(j.state, j.error_message) for j in done]
    assert not rig.relay.faults, "every injected fault was met"
    for job in done:
        assert rig.notifier.delivered[job.id] == [tiny_mp4()]
        assert rig.submits(job.prompt) == 1
        assert await ledger(rig, job) == {"reserve": 4, "capture": 4}


@pytest.mark.parametrize(
    ("status", "headers", "resent"),
    [
        (429, {"Retry-After": "0"}, True),
        (429, {}, True),
        (503, {}, True),
        (502, {}, True),
        (500, {}, False),
        (504, {}, False),
        (None, {}, False),  # connection dropped: the provider may have the job
    ],
)
async def test_submit_is_resent_only_when_provably_not_taken(
    rig: Rig, status: int | None, headers: dict[str, str], resent: bool
) -> None:
    if status is None:
        rig.relay.inject(0, path_contains=SUBMIT_PATH, method="POST", drop_connection=True)
    else:
        rig.relay.inject(
            status, {"error": {"message": "busy"}}, path_contains=SUBMIT_PATH, method="POST", headers=headers
        )
    job = await rig.submit(f"submit chaos {status}")
    (done,) = await rig.finished([job.id])
    assert rig.tasks(job.prompt) <= 1
    if resent:
        assert done.state is State.SUCCEEDED, done.error_message
        assert rig.submits(job.prompt) == 2
        assert rig.notifier.delivered[job.id] == [tiny_mp4()]
        assert await ledger(rig, job) == {"reserve": 4, "capture": 4}
    else:
        assert done.state is State.FAILED
        assert done.error_message, "the user is told why"
        assert rig.submits(job.prompt) == 1, "never re-sent: it may have been taken"
        assert job.id not in rig.notifier.delivered
        assert await ledger(rig, job) == {"reserve": 4, "refund": 4}


async def test_truncated_and_slow_downloads_are_retried_and_never_delivered_broken(rig: Rig) -> None:
    rig.relay.file_faults.extend(["short", "cut", "slow"])
    rig.relay.inject(0, path_contains="/files/", drop_connection=True)
    rig.relay.inject(503, "cdn hiccup", path_contains="/files/")
    job = await rig.submit("truncated download")
    (done,) = await rig.finished([job.id])
    assert done.state is State.SUCCEEDED, done.error_message
    assert rig.notifier.delivered[job.id] == [tiny_mp4()]
    assert len(rig.relay.requests_to("/files/", "GET")) == 5  # drop, 503, short, cut, then the slow one
    assert not rig.relay.file_faults and not rig.relay.faults
    assert list(rig.work_dir.glob("*.part")) == [], "no partial file is left behind"


async def test_a_download_that_never_completes_fails_the_job_and_refunds(rig: Rig) -> None:
    rig.relay.file_faults.extend(["cut", "short"] * 5)
    job = await rig.submit("never whole")
    (done,) = await rig.finished([job.id])
    assert done.state is State.FAILED
    assert job.id not in rig.notifier.delivered
    assert await ledger(rig, job) == {"reserve": 4, "refund": 4}
    assert list(rig.work_dir.iterdir()) == [], "nothing broken is kept for a later delivery"
