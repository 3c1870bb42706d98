"""JobRunner end to end: a real SQLite file, real providers against local fake servers, a recording notifier.

``typical_job_seconds=1.0`` makes the poller work on a one-second scale (first look after 0.25 s,
then every 0.25 s), so every job here finishes in well under a second of wall time.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from bot.catalogue import Router
from bot.credits.ledger import CreditPolicy
from bot.errors import JobInterrupted, JobNotResumable, ProviderTimeout
from bot.jobs.model import ACTIVE, Job, State
from bot.jobs.notifier import Delivery
from bot.jobs.runner import CancelRefused, JobRunner
from bot.jobs.service import JobService, NewJob
from bot.providers.base import VideoProvider, VideoRequest
from bot.providers.demo import DemoProvider
from bot.providers.openai_videos import OpenAIVideosProvider
from bot.providers.relay import PATH, RelayProvider
from bot.providers.segmind import SegmindProvider
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.relay import FakeRelay
from tests.fakes.segmind import FakeSegmind
from tests.fakes.videos import tiny_mp4

KEY = "sk-relay-SECRET-runner-0123456789"
ALLOWANCE = 40
COST = 4  # a 4 s sora-2 clip at 1 credit per second
SUCCESS_PATH = [State.SUBMITTING, State.RUNNING, State.DOWNLOADING, State.DELIVERING, State.SUCCEEDED]


class Clock:
    """A hand-driven clock for FakeRelay's task lifecycle."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RecordingNotifier:
    """Collects every job_changed call and 'delivers' by copying the video out of the work dir."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.changes: list[Job] = []
        self.deliveries: list[tuple[int, Path]] = []
        self.delivering = asyncio.Event()
        self.hold: asyncio.Event | None = None
        """When set, deliver() waits on it (to stop the bot mid-delivery)."""

    async def job_changed(self, job: Job) -> None:
        self.changes.append(job)

    async def deliver(self, job: Job, video: Path) -> Delivery:
        self.delivering.set()
        if self.hold is not None:
            await self.hold.wait()
        dest = self.out_dir / f"delivered-{job.id}-{len(self.deliveries)}.mp4"
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, video, dest)
        self.deliveries.append((job.id, dest))
        return Delivery(message_id=f"msg-{job.id}", note="posted")

    def states(self, job_id: int) -> list[State]:
        """The job's states as notified, repeats (progress updates, queue positions) folded."""
        seen: list[State] = []
        for job in self.changes:
            if job.id == job_id and (not seen or seen[-1] is not job.state):
                seen.append(job.state)
        return seen

    def positions(self, job_id: int) -> list[int]:
        return [j.queue_position for j in self.changes if j.id == job_id and j.queue_position is not None]

    def max_active(self, user_id: str | None = None) -> int:
        """The most jobs (of ``user_id``, or of anyone) that were active at the same time."""
        current: dict[int, State] = {}
        peak = 0
        for job in self.changes:
            if user_id is None or job.user_id == user_id:
                current[job.id] = job.state
                peak = max(peak, sum(1 for s in current.values() if s in ACTIVE))
        return peak


@dataclass
class Rig:
    repo: Repository
    provider: VideoProvider
    notifier: RecordingNotifier
    runner: JobRunner
    service: JobService
    closed: bool = field(default=False)

    async def submit(self, *, user: str = "u1", prompt: str = "a cat on a skateboard", seconds: int = 4) -> Job:
        return await self.service.submit(NewJob(VideoRequest(prompt, seconds), user_id=user, guild_id="g1"))

    async def job(self, job_id: int) -> Job:
        job = await self.repo.get_job(job_id)
        assert job is not None
        return job

    async def until(self, job_id: int, check: Callable[[Job], bool], timeout: float = 5.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if check(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never got there; last seen {job.state} {job.progress}")
            await asyncio.sleep(0.02)

    async def idle(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.runner.wait_idle(), timeout)

    async def credits(self, user: str = "u1") -> int:
        return (await self.repo.balance("g1", user, ALLOWANCE)).total

    async def close(self) -> None:
        """What a shutdown (or a crash, as far as the database is concerned) leaves behind."""
        if not self.closed:
            self.closed = True
            await self.runner.stop()
            await self.provider.aclose()
            await self.repo.close()


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[RigFactory]:
    """Makes bots sharing one database file and work dir: a second one is the first after a restart."""
    made: list[Rig] = []

    async def make(provider: VideoProvider, *, start: bool = True, **runner_options: Any) -> Rig:
        repo = Repository(await connect(tmp_path / "bot.db"))
        notifier = RecordingNotifier(tmp_path / "delivered")
        options: dict[str, Any] = {"typical_job_seconds": 1.0, "max_running": 4, "max_running_per_user": 1}
        runner = JobRunner(
            repo,
            {provider.name: provider},
            notifier,
            router=Router.for_providers([provider.name]),
            work_dir=tmp_path / "results",
            **{**options, **runner_options},
        )
        service = JobService(
            repo,
            {provider.name: provider},
            runner.router,
            runner,
            CreditPolicy(daily_credits=ALLOWANCE),
            data_dir=tmp_path,
        )
        rig = Rig(repo, provider, notifier, runner, service)
        made.append(rig)
        if start:
            await runner.start()
        return rig

    yield make
    for rig in reversed(made):
        await rig.close()


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    async with FakeRelay(api_key=KEY, run_seconds=0.1) as server:
        yield server  # type: ignore[misc]


def relay_provider(session: aiohttp.ClientSession, fake: FakeRelay) -> RelayProvider:
    return RelayProvider(session, api_key=KEY, base_url=fake.base_url, retry_base_delay=0.01, max_retries=2)


def status_polls(fake: FakeRelay) -> list[str]:
    return [r.path for r in fake.requests_to(f"{PATH}/", "GET")]


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


# --- one job ----------------------------------------------------------------------------------


async def test_happy_path(rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession) -> None:
    rig = await rigs(relay_provider(http_session, relay))
    queued = await rig.submit()
    assert queued.state is State.QUEUED and queued.cost == COST
    await rig.idle()

    job = await rig.job(queued.id)
    assert job.state is State.SUCCEEDED
    assert rig.notifier.states(job.id) == SUCCESS_PATH
    posts = relay.requests_to(PATH, "POST")
    assert len(posts) == 1 and posts[0].json()["duration"] == "4"
    assert job.provider_job_id == next(iter(relay.tasks))
    assert set(status_polls(relay)) == {f"{PATH}/{job.provider_job_id}"}
    assert len(relay.requests_to("/files/")) == 1
    assert job.result_message_id == f"msg-{job.id}" and job.delivery_note == "posted"
    assert job.submitted_at is not None and job.finished_at is not None and job.submitted_at <= job.finished_at
    assert job.error_class is None
    # Credits: reserved at submit, captured once at the end.
    assert await rig.repo.settlements(job.id) == {"reserve": COST, "capture": COST}
    assert await rig.credits() == ALLOWANCE - COST
    # Delivered once, the real video; the work file is gone.
    [(delivered_id, path)] = rig.notifier.deliveries
    assert delivered_id == job.id and path.read_bytes() == tiny_mp4()
    assert not list((rig.runner.work_dir).glob("*.mp4"))


async def test_without_a_typical_time_jobs_are_planned_from_what_earlier_ones_took(
    rigs: RigFactory, http_session: aiohttp.ClientSession
) -> None:
    # Segmind reports no progress: only the completion-time distribution decides when to look.
    async with FakeSegmind(api_key=KEY, queue_seconds=0.05, run_seconds=0.45) as fake:
        provider = SegmindProvider(http_session, api_key=KEY, base_url=fake.base_url, retry_base_delay=0.01)
        # A typical time of 10 s: a first look at 0.3 s, the next one not before 5 s.
        provider.capabilities = replace(provider.capabilities, typical_seconds={"sora-2": 12.5})
        rig = await rigs(provider, typical_job_seconds=None, start=False)
        # Earlier jobs of this provider and model took about half a second (stored: a restart keeps them).
        for took in (0.45, 0.5, 0.55, 0.5, 0.6):
            past = await rig.repo.create_job(
                provider=provider.name, user_id="u0", prompt="p", seconds=4, size="1280x720", model="sora-2"
            )
            past = past.moved(State.SUBMITTING, 1000.0).moved(State.RUNNING, 1000.0, provider_job_id="old")
            past = past.moved(State.DOWNLOADING, 1000.0).moved(State.DELIVERING, 1000.0)
            await rig.repo.save_job(past.moved(State.SUCCEEDED, 1000.0 + took))
        await rig.runner.start()
        queued = await rig.submit()
        await rig.idle(timeout=4)  # planned from the 10 s prior, it would still be waiting
        job = await rig.job(queued.id)
        assert job.state is State.SUCCEEDED, job.error_message
        assert len(fake.requests_to("/v2/requests/", "GET")) >= 2  # the first look came before the end


async def test_demo_provider_end_to_end(rigs: RigFactory, tmp_path: Path) -> None:
    rig = await rigs(DemoProvider(work_dir=tmp_path / "demo", fps=4))
    queued = await rig.submit(prompt="a lighthouse at dusk")
    await rig.idle(timeout=30)
    job = await rig.job(queued.id)
    assert job.state is State.SUCCEEDED, job.error_message
    assert rig.notifier.states(job.id) == SUCCESS_PATH
    [(_, path)] = rig.notifier.deliveries

    def probe() -> tuple[str, int, int, float]:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.name, stream.width, stream.height, float(container.duration or 0) / 1e6

    codec, width, height, seconds = await asyncio.to_thread(probe)
    assert (codec, width, height) == ("h264", 1280, 720)
    assert seconds == pytest.approx(4.0, abs=0.5)
    assert await rig.repo.settlements(job.id) == {"reserve": COST, "capture": COST}


async def test_moderation_failure_fails_with_its_message_and_refunds(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    relay.fail_with = "Your request was blocked by our moderation system: the generated video violates policy"
    rig = await rigs(relay_provider(http_session, relay))
    queued = await rig.submit()
    await rig.idle()
    job = await rig.job(queued.id)
    assert job.state is State.FAILED
    assert job.error_class == "ModerationRejected"
    assert job.error_message == (
        "The video provider's safety system rejected the finished video. Your credits were refunded."
    )
    assert rig.notifier.states(job.id)[-1] is State.FAILED
    assert State.DOWNLOADING not in rig.notifier.states(job.id)
    assert rig.notifier.changes[-1].error_message == job.error_message
    assert await rig.repo.settlements(job.id) == {"reserve": COST, "refund": COST}
    assert await rig.credits() == ALLOWANCE
    assert not rig.notifier.deliveries and not relay.requests_to("/files/")


async def test_submit_rejected_with_401_fails_and_refunds(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    relay.inject(
        401, {"error": {"message": "Invalid token", "type": "new_api_error"}}, path_contains=PATH, method="POST"
    )
    rig = await rigs(relay_provider(http_session, relay))
    queued = await rig.submit()
    await rig.idle()
    job = await rig.job(queued.id)
    assert job.state is State.FAILED
    assert job.error_class == "AuthenticationFailed"
    assert "refunded" in (job.error_message or "") and KEY not in (job.error_message or "")
    assert rig.notifier.states(job.id) == [State.SUBMITTING, State.FAILED]
    assert len(relay.requests_to(PATH, "POST")) == 1  # a 401 is never sent again
    assert job.provider_job_id is None
    assert await rig.repo.settlements(job.id) == {"reserve": COST, "refund": COST}
    assert await rig.credits() == ALLOWANCE


async def test_timeout_fails_with_provider_timeout_and_refunds(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    relay.run_seconds = 1000.0
    rig = await rigs(relay_provider(http_session, relay), job_timeout=0.6)
    queued = await rig.submit()
    await rig.idle()
    job = await rig.job(queued.id)
    assert job.state is State.FAILED
    assert job.error_class == "ProviderTimeout"
    assert job.error_message == ProviderTimeout.user_message
    assert job.finished_at is not None and job.submitted_at is not None
    assert job.finished_at - job.submitted_at == pytest.approx(0.6, abs=0.5)
    assert await rig.repo.settlements(job.id) == {"reserve": COST, "refund": COST}


async def test_transient_status_errors_are_survived(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    # Seven 500s in a row outlast the provider's own retries (3 tries per status call) twice over,
    # so the runner itself has to keep polling through two failed status checks.
    relay.inject(500, {"error": {"message": "upstream exploded"}}, times=7, path_contains=f"{PATH}/", method="GET")
    rig = await rigs(relay_provider(http_session, relay))
    queued = await rig.submit()
    await rig.idle()
    job = await rig.job(queued.id)
    assert job.state is State.SUCCEEDED, job.error_message
    assert len(status_polls(relay)) >= 8
    assert not relay.faults
    assert len(relay.requests_to(PATH, "POST")) == 1
    assert await rig.repo.settlements(job.id) == {"reserve": COST, "capture": COST}


async def test_rate_limited_status_checks_back_off_and_carry_on(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    relay.inject(
        429,
        {"error": {"message": "slow down"}},
        times=3,
        path_contains=f"{PATH}/",
        method="GET",
        headers={"Retry-After": "0"},
    )
    rig = await rigs(relay_provider(http_session, relay))
    queued = await rig.submit()
    await rig.idle()
    assert (await rig.job(queued.id)).state is State.SUCCEEDED
    assert len(status_polls(relay)) >= 4


# --- caps and queue ---------------------------------------------------------------------------


async def test_global_cap(rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession) -> None:
    relay.run_seconds = 0.3
    rig = await rigs(relay_provider(http_session, relay), max_running=2, max_running_per_user=1)
    jobs = [await rig.submit(user=f"u{n}") for n in range(4)]
    await rig.idle()
    assert rig.notifier.max_active() == 2
    for job in jobs:
        assert (await rig.job(job.id)).state is State.SUCCEEDED
    assert len(relay.requests_to(PATH, "POST")) == 4
    # The two that waited were told their place in the queue.
    assert rig.notifier.positions(jobs[2].id)[0] == 1
    assert rig.notifier.positions(jobs[3].id)[0] == 2


async def test_per_user_cap_runs_one_at_a_time_and_reports_queue_positions(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    rig = await rigs(relay_provider(http_session, relay), max_running=4, max_running_per_user=1)
    first, second, third = [await rig.submit(user="u1") for _ in range(3)]
    other = await rig.submit(user="u2")  # another user is not held up
    await rig.idle()
    assert rig.notifier.max_active(user_id="u1") == 1
    assert rig.notifier.max_active() == 2
    finished = [await rig.job(j.id) for j in (first, second, third, other)]
    assert all(j.state is State.SUCCEEDED for j in finished)
    # In order: each started only after the previous one had finished.
    assert finished[0].finished_at <= finished[1].submitted_at  # type: ignore[operator]
    assert finished[1].finished_at <= finished[2].submitted_at  # type: ignore[operator]
    assert rig.notifier.positions(first.id) == []
    assert rig.notifier.positions(second.id) == [1]
    assert rig.notifier.positions(third.id) == [2, 1]
    assert rig.notifier.positions(other.id) == []
    assert await rig.credits("u1") == ALLOWANCE - 3 * COST


# --- cancel -----------------------------------------------------------------------------------


async def test_cancel_a_queued_job(rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession) -> None:
    relay.run_seconds = 0.5
    rig = await rigs(relay_provider(http_session, relay), max_running_per_user=1)
    running = await rig.submit()
    waiting = await rig.submit()
    await rig.until(running.id, lambda j: j.state is State.RUNNING)
    assert (await rig.job(waiting.id)).state is State.QUEUED
    cancelled = await rig.service.cancel(waiting.id)
    assert cancelled.state is State.CANCELLED
    await rig.idle()
    assert (await rig.job(waiting.id)).state is State.CANCELLED
    assert (await rig.job(running.id)).state is State.SUCCEEDED
    assert len(relay.requests_to(PATH, "POST")) == 1  # the cancelled one never reached the provider
    assert await rig.repo.settlements(waiting.id) == {"reserve": COST, "refund": COST}
    assert await rig.credits() == ALLOWANCE - COST
    assert rig.notifier.states(waiting.id)[-1] is State.CANCELLED
    with pytest.raises(CancelRefused):
        await rig.service.cancel(waiting.id)
    with pytest.raises(CancelRefused):
        await rig.service.cancel(running.id)  # already finished


async def test_cancel_of_a_job_generating_at_a_provider_without_cancel_is_refused_and_charged(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    """The relay bills a submitted job whatever we do: a refund would be a free video (issue 13 item 4)."""
    clock = Clock()
    relay.clock = clock
    relay.run_seconds = 10.0
    rig = await rigs(relay_provider(http_session, relay))
    queued = await rig.submit()
    await rig.until(queued.id, lambda j: j.state is State.RUNNING)
    await eventually(lambda: status_polls(relay))  # cancelled while being polled
    with pytest.raises(CancelRefused) as refused:
        await rig.service.cancel(queued.id)
    assert "it will be posted" in refused.value.user_message
    assert (await rig.job(queued.id)).state is State.RUNNING
    assert await rig.repo.settlements(queued.id) == {"reserve": COST}
    clock.now = 11.0  # the relay finishes: the video is posted and paid for
    await rig.idle()
    assert (await rig.job(queued.id)).state is State.SUCCEEDED
    assert [job_id for job_id, _ in rig.notifier.deliveries] == [queued.id]
    assert await rig.repo.settlements(queued.id) == {"reserve": COST, "capture": COST}


async def test_cancel_the_provider_did_not_confirm_is_refused(
    rigs: RigFactory, http_session: aiohttp.ClientSession
) -> None:
    async with FakeOpenAIVideos(run_seconds=1000.0, poll_after_ms=None) as fake:
        provider = OpenAIVideosProvider(
            http_session, api_key=fake.api_key, base_url=f"{fake.base_url}/v1", retry_base_delay=0.01
        )
        rig = await rigs(provider)
        queued = await rig.submit()
        await rig.until(queued.id, lambda j: j.state is State.RUNNING)

        async def not_stopped(job_id: str) -> bool:
            return False

        provider.cancel = not_stopped  # type: ignore[method-assign]
        with pytest.raises(CancelRefused):
            await rig.service.cancel(queued.id)
        assert await rig.repo.settlements(queued.id) == {"reserve": COST}
        assert (await rig.job(queued.id)).state is State.RUNNING
        await rig.close()


async def test_servers_take_turns_for_running_slots(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    relay.clock = clock
    relay.run_seconds = 10.0
    rig = await rigs(relay_provider(http_session, relay), start=False, max_running=2, max_running_per_user=5)
    busy = [
        await rig.service.submit(NewJob(VideoRequest(f"busy {n}", 4), user_id=f"u{n}", guild_id="busy"))
        for n in range(4)
    ]
    quiet = await rig.service.submit(NewJob(VideoRequest("quiet", 4), user_id="q", guild_id="quiet"))
    await rig.runner.start()
    await rig.until(quiet.id, lambda j: j.state is State.RUNNING)  # one of the two slots, despite the backlog
    assert (await rig.job(busy[0].id)).state is State.RUNNING
    assert [(await rig.job(j.id)).state for j in busy[1:]] == [State.QUEUED] * 3
    relay.clock, relay.run_seconds = time.monotonic, 0.1  # let everything finish
    await rig.idle()


async def test_cancel_a_running_job_cancels_it_at_the_provider(
    rigs: RigFactory, http_session: aiohttp.ClientSession
) -> None:
    async with FakeOpenAIVideos(run_seconds=1000.0, poll_after_ms=None) as fake:
        provider = OpenAIVideosProvider(
            http_session, api_key=fake.api_key, base_url=f"{fake.base_url}/v1", retry_base_delay=0.01
        )
        rig = await rigs(provider)
        queued = await rig.submit()
        job = await rig.until(queued.id, lambda j: j.state is State.RUNNING)
        await eventually(lambda: fake.requests_to("/v1/videos/", "GET"))
        cancelled = await rig.service.cancel(queued.id)
        assert cancelled.state is State.CANCELLED
        deletes = fake.requests_to("/v1/videos/", "DELETE")
        assert [r.path for r in deletes] == [f"/v1/videos/{job.provider_job_id}"]
        assert await rig.repo.settlements(queued.id) == {"reserve": COST, "refund": COST}
        await rig.close()


# --- restarts ---------------------------------------------------------------------------------


async def test_restart_mid_running_resumes_polling_without_resubmitting(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    relay.clock = clock
    relay.run_seconds = 10.0
    before = await rigs(relay_provider(http_session, relay))
    queued = await before.submit()
    running = await before.until(queued.id, lambda j: j.state is State.RUNNING)
    clock.now = 5.0  # the task is half done
    await before.until(queued.id, lambda j: j.progress == 50.0)
    await before.close()  # the bot stops
    polls_before = len(status_polls(relay))

    clock.now = 10.0  # finished while the bot was down
    after = await rigs(relay_provider(http_session, relay))
    await after.idle()
    job = await after.job(queued.id)
    assert job.state is State.SUCCEEDED
    assert job.provider_job_id == running.provider_job_id
    assert len(relay.requests_to(PATH, "POST")) == 1  # never submitted again
    assert len(status_polls(relay)) > polls_before
    assert set(status_polls(relay)) == {f"{PATH}/{running.provider_job_id}"}
    assert before.notifier.deliveries == [] and len(after.notifier.deliveries) == 1
    assert after.notifier.states(job.id) == [State.DOWNLOADING, State.DELIVERING, State.SUCCEEDED]
    assert await after.repo.settlements(job.id) == {"reserve": COST, "capture": COST}


async def test_restart_during_submit_fails_the_job_and_refunds(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    # The row a crash between "submitting" and the provider's answer leaves behind.
    before = await rigs(relay_provider(http_session, relay), start=False)
    queued = await before.submit()
    await before.repo.save_job(queued.moved(State.SUBMITTING, time.time()))
    await before.close()

    after = await rigs(relay_provider(http_session, relay))
    await after.idle()
    job = await after.job(queued.id)
    assert job.state is State.FAILED
    assert job.error_class == "JobInterrupted"
    assert job.error_message == JobInterrupted.user_message
    assert not relay.requests  # never re-sent: it might have cost twice
    assert await after.repo.settlements(job.id) == {"reserve": COST, "refund": COST}
    assert after.notifier.states(job.id) == [State.FAILED]


async def test_restart_of_a_non_resumable_provider_fails_and_refunds(rigs: RigFactory, tmp_path: Path) -> None:
    before = await rigs(DemoProvider(work_dir=tmp_path / "demo", min_seconds=60.0, fps=4))
    queued = await before.submit()
    await before.until(queued.id, lambda j: j.state is State.RUNNING)
    await before.close()

    after = await rigs(DemoProvider(work_dir=tmp_path / "demo", fps=4))
    await after.idle()
    job = await after.job(queued.id)
    assert job.state is State.FAILED
    assert job.error_class == "JobNotResumable"
    assert job.error_message == JobNotResumable.user_message
    assert await after.repo.settlements(job.id) == {"reserve": COST, "refund": COST}
    assert await after.credits() == ALLOWANCE
    assert after.notifier.states(job.id) == [State.FAILED]


async def test_restart_while_delivering_delivers_the_kept_file_without_downloading_again(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    before = await rigs(relay_provider(http_session, relay))
    before.notifier.hold = asyncio.Event()  # never set: the bot stops mid-delivery
    queued = await before.submit()
    await asyncio.wait_for(before.notifier.delivering.wait(), 5)
    await before.close()
    kept = before.runner.work_dir / f"job-{queued.id}.mp4"
    assert kept.exists()
    assert len(relay.requests_to("/files/")) == 1

    after = await rigs(relay_provider(http_session, relay))
    assert (await after.job(queued.id)).state in (State.DELIVERING, State.SUCCEEDED)
    await after.idle()
    job = await after.job(queued.id)
    assert job.state is State.SUCCEEDED
    assert len(relay.requests_to("/files/")) == 1  # not downloaded again
    assert len(relay.requests_to(PATH, "POST")) == 1
    assert before.notifier.deliveries == [] and len(after.notifier.deliveries) == 1
    assert after.notifier.deliveries[0][1].read_bytes() == tiny_mp4()
    assert not kept.exists()
    assert await after.repo.settlements(job.id) == {"reserve": COST, "capture": COST}


async def test_restart_while_delivering_with_the_file_gone_downloads_again(
    rigs: RigFactory, relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    before = await rigs(relay_provider(http_session, relay))
    before.notifier.hold = asyncio.Event()
    queued = await before.submit()
    await asyncio.wait_for(before.notifier.delivering.wait(), 5)
    await before.close()
    (before.runner.work_dir / f"job-{queued.id}.mp4").unlink()

    after = await rigs(relay_provider(http_session, relay))
    await after.idle()
    job = await after.job(queued.id)
    assert job.state is State.SUCCEEDED
    assert len(relay.requests_to("/files/")) == 2
    assert after.notifier.states(job.id) == [State.DOWNLOADING, State.DELIVERING, State.SUCCEEDED]
    assert len(after.notifier.deliveries) == 1


async def test_openai_poll_after_ms_spaces_the_status_checks(
    rigs: RigFactory, http_session: aiohttp.ClientSession
) -> None:
    # The poller alone would look every 0.25 s (about 5 looks at this 1 s job); the server's
    # 800 ms pacing hint, learned from the first answer, leaves room for at most 2 more.
    async with FakeOpenAIVideos(run_seconds=1.0, poll_after_ms=800) as fake:
        provider = OpenAIVideosProvider(
            http_session, api_key=fake.api_key, base_url=f"{fake.base_url}/v1", retry_base_delay=0.01
        )
        rig = await rigs(provider)
        queued = await rig.submit()
        await rig.idle()
        assert (await rig.job(queued.id)).state is State.SUCCEEDED
        polls = [r for r in fake.requests_to("/v1/videos/", "GET") if not r.path.endswith("/content")]
        assert 2 <= len(polls) <= 3, len(polls)
