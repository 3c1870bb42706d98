"""Job leases on one SQLite file shared by several runners (as several bot processes would share it).

Each runner here gets a plain owner id ("A", "B"): not ``host:pid:random``, so neither mistakes the
other for a dead process of this host and only lease expiry decides a takeover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.catalogue import Router
from bot.config import _parse
from bot.credits.ledger import CreditPolicy
from bot.domain import VideoRequest
from bot.errors import ConfigError, LeaseLost
from bot.jobs.leases import dead_local_owner, runner_id
from bot.jobs.model import Job, State
from bot.jobs.runner import JobRunner
from bot.jobs.service import JobService, NewJob
from bot.providers.relay import PATH, RelayProvider
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from tests.fakes.relay import FakeRelay
from tests.jobs.test_runner import RecordingNotifier

KEY = "sk-relay-SECRET-leases-0123456789"
ALLOWANCE = 40


async def new_job(repo: Repository, user: str = "u1") -> Job:
    policy = CreditPolicy(daily_credits=ALLOWANCE)
    return await repo.create_job(
        provider="relay", user_id=user, guild_id="g1", prompt="p", seconds=4, size="720x1280", model="sora-2",
        cost=4, policy=policy,
    )  # fmt: skip


async def lease(repo: Repository, job_id: int) -> tuple[str | None, float | None]:
    async with repo.db.execute("SELECT lease_owner, lease_expires_at FROM jobs WHERE id = ?", (job_id,)) as cur:
        row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.fixture
async def repos(tmp_path: Path) -> AsyncIterator[tuple[Repository, Repository]]:
    """Two connections to one file: what two processes have."""
    first = Repository(await connect(tmp_path / "bot.db"))
    second = Repository(await connect(tmp_path / "bot.db"))
    yield first, second
    await first.close()
    await second.close()


# --- the repository --------------------------------------------------------------------------


async def test_concurrent_claims_never_hand_a_job_to_two_owners(repos: tuple[Repository, Repository]) -> None:
    a, b = repos
    jobs = [await new_job(a, f"u{n}") for n in range(20)]

    async def claim(repo: Repository, owner: str) -> list[int]:
        got: list[int] = []
        for _ in range(30):
            got += [j.id for j in await repo.claim_jobs(owner, [State.QUEUED], lease_seconds=60, limit=1)]
            await asyncio.sleep(0.002)
        return got

    got_a, got_b = await asyncio.gather(claim(a, "A"), claim(b, "B"))
    assert not set(got_a) & set(got_b)
    assert sorted(got_a + got_b) == [j.id for j in jobs]
    assert got_a and got_b, "both owners took part"
    assert {(await lease(a, job_id))[0] for job_id in got_a} == {"A"}


async def test_a_live_lease_is_kept_and_an_expired_one_is_taken_over(repos: tuple[Repository, Repository]) -> None:
    a, b = repos
    job = await new_job(a)
    t = time.time()
    assert [j.id for j in await a.claim_jobs("A", [State.QUEUED], lease_seconds=10, now=t)] == [job.id]
    assert await b.claim_jobs("B", [State.QUEUED], lease_seconds=10, now=t + 5) == []
    assert await a.renew_leases("A", [job.id], lease_seconds=10, now=t + 5) == {job.id}
    assert await b.claim_jobs("B", [State.QUEUED], lease_seconds=10, now=t + 12) == []  # renewed until t+15
    taken = await b.claim_jobs("B", [State.QUEUED], lease_seconds=10, now=t + 16)
    assert [j.id for j in taken] == [job.id]
    assert await lease(a, job.id) == ("B", t + 26)
    assert await a.renew_leases("A", [job.id], lease_seconds=10) == set(), "A learns it lost the job"


async def test_a_fenced_write_after_a_takeover_raises_and_changes_nothing(repos: tuple[Repository, Repository]) -> None:
    a, b = repos
    job = await new_job(a)
    t = time.time()
    (mine,) = await a.claim_jobs("A", [State.QUEUED], lease_seconds=1, now=t - 5)
    running = mine.moved(State.SUBMITTING, t)
    await a.save_job(running, owner="A")  # expired but not yet taken: still A's
    (theirs,) = await b.claim_jobs("B", [State.SUBMITTING], lease_seconds=60)
    with pytest.raises(LeaseLost):
        await a.save_job(running.moved(State.RUNNING, t, provider_job_id="task-a"), owner="A")
    with pytest.raises(LeaseLost):
        await a.finish_job(running.moved(State.FAILED, t, error_message="x"), "refund", owner="A")
    stored = await b.get_job(job.id)
    assert stored is not None and stored.state is State.SUBMITTING and stored.provider_job_id is None
    assert await b.settlements(job.id) == {"reserve": 4}, "nothing settled by the loser"
    # The new owner's writes land; finishing ends the lease but keeps who finished it.
    assert await b.finish_job(theirs.moved(State.FAILED, t, error_message="x"), "refund", owner="B")
    assert await lease(b, job.id) == ("B", None)
    with pytest.raises(LeaseLost):  # finished: no fenced write lands any more, not even the owner's
        await b.save_job(theirs.moved(State.RUNNING, t), owner="B")


async def test_release_frees_unfinished_jobs_only(repos: tuple[Repository, Repository]) -> None:
    a, _ = repos
    first, second = await new_job(a), await new_job(a, "u2")
    await a.claim_jobs("A", [State.QUEUED], lease_seconds=60)
    await a.finish_job(second.moved(State.CANCELLED, time.time()), "refund", owner="A")
    assert await a.release_leases("A") == 1
    assert await lease(a, first.id) == (None, None)
    assert await lease(a, second.id) == ("A", None)


def test_owner_ids_tell_dead_local_processes_apart() -> None:
    me = runner_id()
    host = me.rsplit(":", 2)[0]
    assert not dead_local_owner(me, me)
    assert dead_local_owner(f"{host}:{me.rsplit(':', 2)[1]}:0000", me), "our pid, another runner: an old process"
    assert dead_local_owner(f"{host}:999999999:0000", me)
    assert not dead_local_owner(f"{host}:1:0000", me), "pid 1 is alive"
    assert not dead_local_owner("some-other-host:1234:0000", me)
    assert not dead_local_owner("A", me)


# --- runners -----------------------------------------------------------------------------------


@dataclass
class Bot:
    repo: Repository
    runner: JobRunner
    service: JobService
    notifier: RecordingNotifier


BotFactory = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def bots(tmp_path: Path, http_session: aiohttp.ClientSession) -> AsyncIterator[tuple[BotFactory, FakeRelay]]:
    """Makes runners sharing one database file, each with its own connection, work dir and owner."""
    made: list[Bot] = []
    async with FakeRelay(api_key=KEY, run_seconds=1.0) as relay:

        async def make(owner: str, **options: Any) -> Bot:
            repo = Repository(await connect(tmp_path / "bot.db"))
            provider = RelayProvider(http_session, api_key=KEY, base_url=relay.base_url, retry_base_delay=0.01)
            notifier = RecordingNotifier(tmp_path / f"delivered-{owner}")
            runner = JobRunner(
                repo, {provider.name: provider}, notifier, router=Router.for_providers([provider.name]),
                work_dir=tmp_path / f"results-{owner}", owner=owner,
                **{"typical_job_seconds": 1.0, "max_running": 4, "lease_seconds": 60.0, **options},
            )  # fmt: skip
            service = JobService(
                repo,
                {provider.name: provider},
                runner.router,
                runner,
                CreditPolicy(daily_credits=ALLOWANCE),
                data_dir=tmp_path,
            )
            bot = Bot(repo, runner, service, notifier)
            made.append(bot)
            await runner.start()
            return bot

        yield make, relay  # type: ignore[misc]
        for bot in reversed(made):
            await bot.runner.stop()
            await bot.repo.close()


async def submit(bot: Bot, user: str) -> Job:
    return await bot.service.submit(NewJob(VideoRequest("a cat", 4), user_id=user, guild_id="g1"))


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


async def all_finished(repo: Repository) -> bool:
    return not await repo.unfinished_jobs()


async def test_two_runners_share_the_queue_and_work_each_job_once(bots: tuple[BotFactory, FakeRelay]) -> None:
    make, relay = bots
    a, b = await make("A", max_running=2), await make("B", max_running=2)
    jobs = [await submit(a if n % 2 else b, f"u{n}") for n in range(6)]
    for bot in (a, b):
        bot.runner.wake()
    await until(lambda: all_finished(a.repo))
    delivered = [job_id for bot in (a, b) for job_id, _ in bot.notifier.deliveries]
    assert sorted(delivered) == [j.id for j in jobs], "every job delivered exactly once"
    assert a.notifier.deliveries and b.notifier.deliveries, "both runners worked"
    assert len(relay.requests_to(PATH, "POST")) == len(jobs), "each job submitted once"
    for job in jobs:
        assert await a.repo.settlements(job.id) == {"reserve": 4, "capture": 4}


async def test_a_stalled_runners_job_is_taken_over_and_finished_once(bots: tuple[BotFactory, FakeRelay]) -> None:
    make, relay = bots
    a = await make("A", lease_seconds=2.0)
    job = await submit(a, "u1")
    await until(lambda: _state_is(a.repo, job.id, State.RUNNING))
    # A crash, as the database sees it: A stops renewing and writing, without releasing anything.
    tasks = [a.runner._lease_task, a.runner._loop_task, *(r.task for r in a.runner._running.values())]
    for task in tasks:
        assert task is not None
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # type: ignore[arg-type]
    b = await make("B", lease_seconds=2.0)
    assert job.id not in b.runner._running, "A's lease is still live"
    await until(lambda: all_finished(b.repo))
    stored = await b.repo.get_job(job.id)
    assert stored is not None and stored.state is State.SUCCEEDED
    assert [d[0] for d in b.notifier.deliveries] == [job.id] and not a.notifier.deliveries
    assert len(relay.requests_to(PATH, "POST")) == 1, "resumed, never submitted again"
    assert await b.repo.settlements(job.id) == {"reserve": 4, "capture": 4}
    assert await lease(b.repo, job.id) == ("B", None)


@pytest.mark.parametrize("heartbeat", [True, False], ids=["by-heartbeat", "by-fenced-write"])
async def test_a_runner_that_lost_its_lease_stops_quietly(bots: tuple[BotFactory, FakeRelay], heartbeat: bool) -> None:
    make, _ = bots
    a = await make("A")
    job = await submit(a, "u1")
    await until(lambda: _state_is(a.repo, job.id, State.RUNNING))
    # B takes the job over as if A's lease had expired; A finds out at its next heartbeat or write.
    (taken,) = await a.repo.claim_jobs("B", [State.RUNNING], lease_seconds=60, free_owners=["A"])
    if heartbeat:
        await a.runner._heartbeat()
    await until(lambda: _no_task(a.runner, job.id))
    stored = await a.repo.get_job(job.id)
    assert stored is not None and stored.state is State.RUNNING, "A wrote nothing after losing the job"
    assert await a.repo.settlements(job.id) == {"reserve": 4}
    assert taken.provider_job_id == stored.provider_job_id


async def test_stop_releases_the_leases_so_another_runner_resumes_at_once(bots: tuple[BotFactory, FakeRelay]) -> None:
    make, relay = bots
    a = await make("A", lease_seconds=600.0)
    job = await submit(a, "u1")
    await until(lambda: _state_is(a.repo, job.id, State.RUNNING))
    await a.runner.stop()
    assert await lease(a.repo, job.id) == (None, None)
    b = await make("B", lease_seconds=600.0)
    assert job.id in b.runner._running, "resumed on start, not after the 600 s lease"
    await until(lambda: all_finished(b.repo))
    assert len(relay.requests_to(PATH, "POST")) == 1


async def _state_is(repo: Repository, job_id: int, state: State) -> bool:
    job = await repo.get_job(job_id)
    return job is not None and job.state is state


async def _no_task(runner: JobRunner, job_id: int) -> bool:
    return job_id not in runner._running


# --- settings ------------------------------------------------------------------------------------


def test_lease_and_shard_settings() -> None:
    plain = _parse({})
    assert (plain.lease_seconds, plain.shard_count, plain.shard_ids) == (60.0, None, None)
    sharded = _parse({"LEASE_SECONDS": "5", "SHARD_COUNT": "4", "SHARD_IDS": "2, 0"})
    assert (sharded.lease_seconds, sharded.shard_count, sharded.shard_ids) == (5.0, 4, (0, 2))
    assert _parse({"SHARD_COUNT": "2"}).shard_ids is None, "all shards of the count"
    for env, message in (
        ({"SHARD_IDS": "0"}, "SHARD_IDS needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "2"}, "from 0 to 1"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "a"}, "comma-separated"),
        ({"LEASE_SECONDS": "1"}, "LEASE_SECONDS must be a whole number >= 2"),
    ):
        with pytest.raises(ConfigError, match=message):
            _parse(env)
