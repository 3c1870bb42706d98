"""Several bot processes on one PostgreSQL database: job leases and shared credits.

The end-to-end tests run two real ``python -m bot`` processes against one FakeDiscord, one FakeRelay and
one database. The first runs them as two Discord shards (``SHARD_COUNT=2``, one guild per shard), kills
one process mid-job and checks the other finishes every job with one post, one charge and one submit.
The second routes one server's commands to both processes in turn, as if Discord could, to show the
balance check holds across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bot.errors import LeaseLost
from bot.jobs.model import State
from bot.storage.postgres import PostgresRepository, connect
from tests.e2e.harness import BotProcess
from tests.e2e.test_service import free_port, wait_health
from tests.e2e.world import provider_env
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.state import Guild, Interaction
from tests.fakes.relay import FakeRelay

pytestmark = pytest.mark.timeout(120)

SUBMIT_PATH = "/v2/videos/generations"


# --- the repository across pools (a pool per process) ------------------------------------------


@pytest.fixture
async def pools(pg_dsn: str) -> AsyncIterator[list[PostgresRepository]]:
    repos = [PostgresRepository(await connect(pg_dsn, max_size=4)) for _ in range(3)]
    yield repos
    await asyncio.gather(*(r.close() for r in repos))


async def _queue(repo: PostgresRepository, n: int) -> list[int]:
    ids = []
    for i in range(n):
        job = await repo.create_job(
            provider="relay", user_id=f"u{i}", guild_id="g", prompt="p", seconds=4, size="720x1280", model="sora-2"
        )
        ids.append(job.id)
    return ids


async def test_concurrent_claims_from_many_pools_hand_out_each_job_once(pools: list[PostgresRepository]) -> None:
    ids = await _queue(pools[0], 30)

    async def claim(repo: PostgresRepository, owner: str) -> list[int]:
        got: list[int] = []
        for _ in range(20):
            got += [j.id for j in await repo.claim_jobs(owner, [State.QUEUED], lease_seconds=60, limit=1)]
        return got

    results = await asyncio.gather(*(claim(repo, f"owner-{n}") for n, repo in enumerate(pools) for _ in range(2)))
    flat = [job_id for got in results for job_id in got]
    assert sorted(flat) == ids, "every job exactly once"
    owners = await pools[0].pool.fetch("SELECT lease_owner, COUNT(*) FROM jobs GROUP BY lease_owner")
    assert len(owners) > 1


async def test_expiry_takeover_and_fencing_on_postgres(pools: list[PostgresRepository]) -> None:
    a, b, _ = pools
    (job_id,) = await _queue(a, 1)
    t = time.time()
    (mine,) = await a.claim_jobs("A", [State.QUEUED], lease_seconds=10, now=t)
    assert await b.claim_jobs("B", [State.QUEUED], lease_seconds=10, now=t + 9) == []
    (theirs,) = await b.claim_jobs("B", [State.QUEUED], lease_seconds=10, now=t + 11)
    assert theirs.id == job_id
    with pytest.raises(LeaseLost):
        await a.save_job(mine.moved(State.SUBMITTING, t), owner="A")
    with pytest.raises(LeaseLost):
        await a.finish_job(mine.moved(State.FAILED, t), "refund", owner="A")
    assert await a.renew_leases("A", [job_id], lease_seconds=10) == set()
    assert await b.renew_leases("B", [job_id], lease_seconds=10) == {job_id}
    stored = await a.get_job(job_id)
    assert stored is not None and stored.state is State.QUEUED
    await b.save_job(theirs.moved(State.SUBMITTING, t), owner="B")
    assert await b.lease_owners() == ["B"]
    assert await b.release_leases("B") == 1
    assert await b.lease_owners() == []


# --- two real bot processes ---------------------------------------------------------------------


def _guild_on_other_shard(fake: FakeDiscord) -> Guild:
    """A second guild whose id lands on the other of two shards than ``fake.guild``."""
    shard = (fake.guild.id >> 22) % 2
    while True:
        guild = fake.add_guild("Second Guild")
        if (guild.id >> 22) % 2 != shard:
            return guild
        time.sleep(0.002)  # the next snowflake carries another millisecond


@contextlib.asynccontextmanager
async def two_bots(
    dsn: str, relay: FakeRelay, fake: FakeDiscord, envs: list[dict[str, str]]
) -> AsyncIterator[list[BotProcess]]:
    base = {
        "DATABASE_URL": dsn,
        "SYNC_COMMANDS": "1",  # global commands: every guild has them
        "TYPICAL_JOB_SECONDS": "2",
        "COOLDOWN_SECONDS": "0",
        "LEASE_SECONDS": "3",
        **provider_env("relay", relay),
    }
    async with contextlib.AsyncExitStack() as stack:
        bots = []
        for env in envs:
            bot = await stack.enter_async_context(BotProcess.for_fake(fake, extra_env={**base, **env}))
            await bot.wait_ready(synced=True, timeout=30)
            bots.append(bot)
        yield bots


async def _sora(fake: FakeDiscord, guild: Guild, user_id: int, **options: Any) -> Interaction:
    channel = next(iter(guild.channels.values()))
    ia = await fake.send_interaction(
        command="sora",
        options={"prompt": "a lighthouse in a storm", **options},
        user_id=user_id,
        guild_id=guild.id,
        channel_id=channel.id,
    )
    await ia.wait_callback(timeout=5)
    return ia


async def _rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _videos(fake: FakeDiscord, guild: Guild) -> list[Any]:
    channel = next(iter(guild.channels.values()))
    return [m for m in fake.messages(channel.id) if any(a.filename.endswith(".mp4") for a in m.attachments)]


async def test_a_killed_shards_jobs_are_finished_by_the_other_process(pg_dsn: str) -> None:
    async with FakeRelay(run_seconds=6.0) as relay, FakeDiscord() as fake:
        users = [fake.user, fake.other_user, fake.add_user("carol")]
        second = _guild_on_other_shard(fake)
        port = free_port()
        envs = [{"SHARD_COUNT": "2", "SHARD_IDS": "0"}, {"SHARD_COUNT": "2", "SHARD_IDS": "1", "HTTP_PORT": str(port)}]
        async with two_bots(pg_dsn, relay, fake, envs) as bots:
            # A sharded process is healthy once its own shard is connected.
            assert await wait_health(f"http://127.0.0.1:{port}", {"gateway": True, "database": True}) == 200
            assert sorted(tuple(i["shard"]) for i in fake.gateway.identifies) == [(0, 2), (1, 2)]
            for guild in (fake.guild, second):
                for user in users:
                    ia = await _sora(fake, guild, user.id, duration=4)
                    await fake.wait_for(lambda ia=ia: ia.followups, 15, what="a follow-up")
                    assert "queued" in ia.followups[-1].content

            async def all_running() -> list[asyncpg.Record] | None:
                rows = await _rows(pg_dsn, "SELECT id, state, lease_owner, guild_id FROM jobs ORDER BY id")
                return rows if len(rows) == 6 and all(r["state"] == "running" for r in rows) else None

            rows = await _until(all_running, 20, "six running jobs")
            by_guild = {r["guild_id"]: {x["lease_owner"] for x in rows if x["guild_id"] == r["guild_id"]} for r in rows}
            assert len({r["lease_owner"] for r in rows}) == 2, "jobs spread over both processes"
            assert all(len(owners) == 1 for owners in by_guild.values()), "each shard's jobs run in its process"

            bots[0].kill()  # SIGKILL mid-job: no release, no goodbye
            await bots[0].wait_exit()

            async def all_done() -> bool:
                states = await _rows(pg_dsn, "SELECT state FROM jobs")
                return all(r["state"] == "succeeded" for r in states)

            await _until(all_done, 40, "every job to succeed")
            survivor = {r["lease_owner"] for r in await _rows(pg_dsn, "SELECT lease_owner FROM jobs")}
            assert len(survivor) == 1, "the survivor finished them all"
            assert "lease lost" not in bots[1].log_text()

        for guild in (fake.guild, second):
            assert len(_videos(fake, guild)) == 3, "one post per job"
        assert len([r for r in relay.requests_to(SUBMIT_PATH, "POST") if r.path.endswith(SUBMIT_PATH)]) == 6
    ledger = await _rows(pg_dsn, "SELECT job_id, kind, COUNT(*), SUM(amount) FROM ledger GROUP BY job_id, kind")
    per_job: dict[int, dict[str, tuple[int, int]]] = {}
    for row in ledger:
        per_job.setdefault(row[0], {})[row[1]] = (row[2], row[3])
    assert len(per_job) == 6
    assert all(kinds == {"reserve": (1, 4), "capture": (1, 4)} for kinds in per_job.values()), per_job


async def test_reserves_from_both_processes_never_overspend(pg_dsn: str) -> None:
    async with FakeRelay(run_seconds=1.0) as relay, FakeDiscord() as fake:
        env = {"DAILY_CREDITS": "8", "MAX_PENDING_JOBS_PER_USER": "20"}
        async with two_bots(pg_dsn, relay, fake, [env, env]) as bots:
            sessions = list(fake.gateway.sessions.values())
            assert len(sessions) == 2
            # As if Discord sent this server's commands to either process: strictly in turn.
            turns = itertools.cycle(sessions)
            fake.gateway.current_session = lambda guild_id: next(turns)  # type: ignore[method-assign]
            sent = await asyncio.gather(*(_sora(fake, fake.guild, fake.user.id, duration=4) for _ in range(8)))
            for ia in sent:
                await fake.wait_for(lambda ia=ia: ia.followups or ia.original, 15, what="an answer")
            for session in sessions:
                assert any(p.get("t") == "INTERACTION_CREATE" for _, p in session.sent), "both processes served"

            async def settled() -> bool:
                rows = await _rows(pg_dsn, "SELECT state FROM jobs")
                return bool(rows) and all(r["state"] in ("succeeded", "failed") for r in rows)

            await _until(settled, 30, "the accepted jobs to finish")
            assert all(bot.running for bot in bots)
    jobs = await _rows(pg_dsn, "SELECT state FROM jobs")
    reserved = await _rows(pg_dsn, "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE kind = 'reserve'")
    assert len(jobs) == 2, "8 credits pay for two 4-second videos, no more"
    assert reserved[0][0] == 8
