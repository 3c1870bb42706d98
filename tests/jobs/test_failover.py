"""Failover between providers hosting the same model: the runner, a real SQLite file, two real
providers against their local fakes. A job moves once, and only on an answer proving nothing was taken."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.catalogue import Router, load_catalogue
from bot.credits.ledger import CreditPolicy
from bot.domain import VideoRequest
from bot.jobs.model import Job, State
from bot.jobs.runner import JobRunner
from bot.jobs.service import JobService, NewJob
from bot.providers.base import VideoProvider
from bot.providers.relay import PATH, RelayProvider
from bot.providers.segmind import SegmindProvider
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from tests.fakes.relay import FakeRelay
from tests.fakes.segmind import FakeSegmind
from tests.jobs.test_runner import RecordingNotifier


@dataclass
class Rig:
    segmind: FakeSegmind
    relay: FakeRelay
    repo: Repository
    router: Router
    service: JobService
    notifier: RecordingNotifier

    async def run(self, model: str = "sora-2") -> Job:
        job = await self.service.submit(
            NewJob(VideoRequest("a boat", 4, "1280x720", model), user_id="u1", guild_id="g")
        )
        for _ in range(500):
            current = await self.repo.get_job(job.id)
            assert current is not None
            # The terminal state and its settlement are one transaction, but this test reads on the
            # runner's own connection, which can see the state a moment before the ledger row.
            if current.state.terminal and set(await self.repo.settlements(job.id)) - {"reserve"}:
                return current
            await asyncio.sleep(0.02)
        raise AssertionError("the job never finished")

    def submits(self) -> tuple[int, int]:
        return len(self.segmind.requests_to("/v2/sora-2", "POST")), len(self.relay.requests_to(PATH, "POST"))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with (
        FakeSegmind(run_seconds=0.2) as segmind,
        FakeRelay(run_seconds=0.2) as relay,
        aiohttp.ClientSession() as session,
    ):
        repo = Repository(await connect(tmp_path / "bot.db"))
        catalogue = load_catalogue()
        providers: dict[str, VideoProvider] = {
            "segmind": SegmindProvider(session, api_key=segmind.api_key, base_url=segmind.base_url, retry_base_delay=0),
            "relay": RelayProvider(session, api_key=relay.api_key, base_url=relay.base_url, retry_base_delay=0),
        }
        router = Router(catalogue, ("segmind", "relay"))
        notifier = RecordingNotifier(tmp_path / "out")
        runner = JobRunner(
            repo, providers, notifier, router=router, work_dir=tmp_path / "results", typical_job_seconds=0.5
        )
        service = JobService(repo, providers, router, runner, CreditPolicy(daily_credits=100), data_dir=tmp_path)
        await runner.start()
        try:
            yield Rig(segmind, relay, repo, router, service, notifier)
        finally:
            await runner.stop()
            await repo.close()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (406, {"error": "Insufficient credits"}),  # Segmind's out-of-credit answer
        (401, {"error": "Invalid API key"}),
        (404, {"error": "Model sora-2 not found"}),
    ],
)
async def test_a_submit_that_took_nothing_moves_once_to_the_next_host(rig: Rig, status: int, body: object) -> None:
    rig.segmind.inject(status, body, path_contains="/v2/sora-2", method="POST", times=5)
    job = await rig.run()
    assert job.state is State.SUCCEEDED, job.error_message
    assert (job.provider, job.failover_from) == ("relay", "segmind")
    assert rig.submits() == (1, 1), "one submit to each provider, never two to one"
    assert await rig.repo.settlements(job.id) == {"reserve": 4, "capture": 4}
    shown = [j for j in rig.notifier.changes if j.id == job.id and j.failover_from]
    assert shown and shown[0].state is State.SUBMITTING, "the status message hears of the move"
    hidden = "segmind" not in [h.provider for h in rig.router.hosts("sora-2")]
    assert hidden == (status == 404), "only a model the provider says is gone is hidden there"


async def test_an_answer_that_may_have_been_taken_never_moves(rig: Rig) -> None:
    # A 500 may come after the provider created the job: moving would risk paying twice.
    rig.segmind.inject(500, {"error": "boom"}, path_contains="/v2/sora-2", method="POST")
    job = await rig.run()
    assert job.state is State.FAILED and job.provider == "segmind" and job.failover_from is None
    assert rig.submits() == (1, 0)
    assert await rig.repo.settlements(job.id) == {"reserve": 4, "refund": 4}


async def test_only_one_failover_per_job(rig: Rig) -> None:
    rig.segmind.inject(406, {"error": "Insufficient credits"}, path_contains="/v2/sora-2", method="POST")
    rig.relay.inject(429, {"error": {"message": "slow down"}}, path_contains=PATH, method="POST", times=10)
    job = await rig.run()
    assert job.state is State.FAILED and job.provider == "relay" and job.failover_from == "segmind"
    assert rig.submits()[0] == 1
    assert await rig.repo.settlements(job.id) == {"reserve": 4, "refund": 4}
