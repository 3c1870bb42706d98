"""Repository on real SQLite files: migrations, jobs, the credit ledger and its concurrency guarantees."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.credits.ledger import CreditPolicy
from bot.errors import InsufficientCredits
from bot.jobs.model import State
from bot.jobs.store import Store
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect, migrate, migration_files

# 2026-03-14 22:30:00 UTC, 1 h 30 min before the daily reset: every test pins the clock to it.
NOW = dt.datetime(2026, 3, 14, 22, 30, tzinfo=dt.UTC).timestamp()
POLICY = CreditPolicy(daily_credits=10)


async def create(repo: Store, cost: int, *, user: str = "u1", allowance: int | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return await repo.create_job(
        provider="demo",
        user_id=user,
        guild_id="g1",
        prompt="a cat",
        seconds=4,
        size="1280x720",
        model="sora-2",
        cost=cost,
        policy=POLICY,
        allowance=allowance,
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


async def count(repo: Store, table: str) -> int:
    async with repo.db.execute(f"SELECT COUNT(*) FROM {table}") as cur:  # noqa: S608 - test constant
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def total(repo: Store, *, user: str = "u1", allowance: int = 10) -> int:
    return (await repo.balance("g1", user, allowance, now=NOW)).total


# --- schema -----------------------------------------------------------------------------------


async def test_migrations_apply_once_and_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "bot.db"
    latest = max(number for number, _, _ in migration_files())
    first = await connect(path)  # creates the directory and the schema
    try:
        assert await migrate(first) == latest  # again on the same connection: nothing to do
    finally:
        await first.close()
    second = await connect(path)  # a restart
    try:
        async with second.execute("SELECT version FROM schema_version ORDER BY version") as cur:
            versions = [r[0] for r in await cur.fetchall()]
        assert versions == [n for n, _, _ in migration_files()]
        async with second.execute("PRAGMA journal_mode") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0].lower() == "wal"
        async with second.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
            tables = {r[0] for r in await cur.fetchall()}
        assert {"jobs", "ledger", "schema_version"} <= tables
    finally:
        await second.close()


# --- jobs -------------------------------------------------------------------------------------


async def test_created_job_is_queued_and_round_trips(repo: Store) -> None:
    job = await create(repo, 0, extra={"status_message_id": "m1", "image_url": "https://x/y.png"})
    assert job.state is State.QUEUED
    assert job.status_message_id == "m1" and job.image_url == "https://x/y.png"
    moved = job.moved(State.SUBMITTING, NOW + 1).moved(State.RUNNING, NOW + 2, provider_job_id="p-1", progress=5.0)
    await repo.save_job(moved)
    stored = await repo.get_job(job.id)
    assert stored == moved
    assert stored is not None and stored.submitted_at == NOW + 2
    assert [j.id for j in await repo.active_jobs()] == [job.id]
    assert [j.id for j in await repo.unfinished_jobs()] == [job.id]
    await repo.update_job(job.id, status_message_id="m2")
    assert (await repo.get_job(job.id)).status_message_id == "m2"  # type: ignore[union-attr]


async def test_unknown_or_state_fields_are_refused(repo: Store) -> None:
    with pytest.raises(ValueError, match="unknown job fields"):
        await create(repo, 0, extra={"nonsense": 1})
    job = await create(repo, 0)
    with pytest.raises(ValueError, match="state"):
        await repo.update_job(job.id, state="succeeded")
    assert await count(repo, "jobs") == 1


async def test_recent_durations_are_the_models_successes_newest_first(repo: Store) -> None:
    """What the poll planner learns from: kept in the database, so a restart keeps it."""

    async def finished(took: float, *, provider: str = "demo", model: str = "sora-2", ok: bool = True) -> None:
        job = await repo.create_job(
            provider=provider, user_id="u1", prompt="a cat", seconds=4, size="1280x720", model=model, now=NOW
        )
        job = job.moved(State.SUBMITTING, NOW).moved(State.RUNNING, NOW, provider_job_id="x")
        if ok:
            job = job.moved(State.DOWNLOADING, NOW).moved(State.DELIVERING, NOW).moved(State.SUCCEEDED, NOW + took)
        else:
            job = job.moved(State.FAILED, NOW + took, error_message="no")
        await repo.save_job(job)

    assert await repo.recent_durations("demo", "sora-2") == []
    await finished(100.0)
    await finished(50.0, ok=False)
    await finished(300.0, model="sora-2-pro")
    await finished(400.0, provider="segmind")
    await finished(200.0)
    await finished(150.0)
    assert await repo.recent_durations("demo", "sora-2") == [150.0, 200.0, 100.0]
    assert await repo.recent_durations("demo", "sora-2", limit=2) == [150.0, 200.0]
    assert await repo.recent_durations("demo", "sora-2-pro") == [300.0]
    assert await repo.recent_durations("segmind", "sora-2") == [400.0]


# --- credits ----------------------------------------------------------------------------------


async def test_create_job_reserves_from_daily_then_extra(repo: Store) -> None:
    first = await create(repo, 4)
    assert await repo.settlements(first.id) == {"reserve": 4}
    assert await total(repo) == 6
    await repo.grant("g1", "u1", 20, actor_id="admin", note="prize", now=NOW)
    assert await total(repo) == 26
    second = await create(repo, 10)  # 6 left in the daily pool, 4 from extra
    entries = await repo.ledger_entries("g1", "u1", limit=10)
    reserves = sorted((e["pool"], e["amount"]) for e in entries if e["job_id"] == second.id)
    assert reserves == [("daily", 6), ("extra", 4)]
    balance = await repo.balance("g1", "u1", 10, now=NOW)
    assert (balance.daily_left, balance.extra, balance.total) == (0, 16, 16)
    # Another user and another server are untouched.
    assert await total(repo, user="u2") == 10
    assert (await repo.balance("g2", "u1", 10, now=NOW)).total == 10


async def test_explicit_allowance_overrides_the_policy(repo: Store) -> None:
    await create(repo, 15, allowance=20)
    assert (await repo.balance("g1", "u1", 20, now=NOW)).total == 5
    # An allowance of 0 (a server that gives no daily credits) means 0, not "the policy's default".
    with pytest.raises(InsufficientCredits):
        await create(repo, 1, user="u2", allowance=0)


async def test_insufficient_credits_writes_nothing_and_explains(repo: Store) -> None:
    await create(repo, 7)
    jobs_before, ledger_before = await count(repo, "jobs"), await count(repo, "ledger")
    with pytest.raises(InsufficientCredits) as caught:
        await create(repo, 4)
    assert (await count(repo, "jobs"), await count(repo, "ledger")) == (jobs_before, ledger_before)
    message = caught.value.user_message
    assert "costs 4 credits" in message and "you have 3 left" in message
    assert "00:00 UTC" in message and "in 1 h 30 min" in message
    # The failed transaction was rolled back cleanly: the connection still works.
    await create(repo, 3)
    assert await total(repo) == 0


async def test_daily_pool_resets_the_next_utc_day(repo: Store) -> None:
    await create(repo, 10)
    assert await total(repo) == 0
    tomorrow = NOW + 2 * 3600
    assert (await repo.balance("g1", "u1", 10, now=tomorrow)).total == 10


async def test_settle_capture_exactly_once(repo: Store) -> None:
    await repo.grant("g1", "u1", 5, actor_id="admin", now=NOW)
    job = await create(repo, 12)  # 10 daily + 2 extra: two reserve rows
    assert await repo.settle(job.id, "capture", now=NOW) is True
    rows = await count(repo, "ledger")
    assert await repo.settle(job.id, "capture", now=NOW) is False
    assert await repo.settle(job.id, "refund", now=NOW) is False  # captured jobs cannot be refunded
    assert await count(repo, "ledger") == rows
    assert await repo.settlements(job.id) == {"reserve": 12, "capture": 12}
    assert await total(repo) == 3


async def test_settle_refund_exactly_once_restores_the_balance(repo: Store) -> None:
    await repo.grant("g1", "u1", 5, actor_id="admin", now=NOW)
    job = await create(repo, 12)
    assert await total(repo) == 3
    assert await repo.settle(job.id, "refund", now=NOW) is True
    assert await total(repo) == 15
    rows = await count(repo, "ledger")
    assert await repo.settle(job.id, "refund", now=NOW) is False
    assert await repo.settle(job.id, "capture", now=NOW) is False
    assert await count(repo, "ledger") == rows
    assert await total(repo) == 15
    balance = await repo.balance("g1", "u1", 10, now=NOW)
    assert (balance.daily_left, balance.extra) == (10, 5)  # each part went back to its own pool


async def test_settle_of_a_free_job_or_bad_kind(repo: Store) -> None:
    job = await create(repo, 0)
    assert await repo.settle(job.id, "capture", now=NOW) is False
    with pytest.raises(ValueError):
        await repo.settle(job.id, "steal", now=NOW)


async def test_cancelled_begin_leaves_no_open_transaction(sqlite_repo: Repository) -> None:
    """A task cancelled while its BEGIN IMMEDIATE is in flight must not leave the shared connection
    inside a transaction (every later write would then fail or never commit)."""
    repo = sqlite_repo
    job = await create(repo, 4)
    task = asyncio.create_task(repo.settle(job.id, "capture", now=NOW))
    await asyncio.sleep(0)  # the task is now waiting on its BEGIN
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # The cancelled capture was rolled back whole: the job is still unsettled, so the refund lands.
    assert await repo.settle(job.id, "refund", now=NOW) is True
    assert not repo.db.in_transaction
    assert await repo.settlements(job.id) == {"reserve": 4, "refund": 4}
    assert await total(repo) == 10


# --- concurrency ------------------------------------------------------------------------------

ALLOWANCE, COST, ATTEMPTS = 40, 3, 50


async def _race(repos: list[Repository]) -> list[bool]:
    async def attempt(n: int) -> bool:
        try:
            await create(repos[n % len(repos)], COST, allowance=ALLOWANCE)
        except InsufficientCredits:
            return False
        return True

    return await asyncio.gather(*(attempt(n) for n in range(ATTEMPTS)))


async def _check_no_overspend(repo: Store, outcomes: list[bool]) -> None:
    assert sum(outcomes) == ALLOWANCE // COST
    assert await count(repo, "jobs") == ALLOWANCE // COST
    assert (await repo.balance("g1", "u1", ALLOWANCE, now=NOW)).total == ALLOWANCE % COST


async def test_concurrent_reservations_on_one_repository_never_overspend(repo: Store) -> None:
    outcomes = await _race([repo])
    await _check_no_overspend(repo, outcomes)


async def test_concurrent_reservations_from_many_connections_never_overspend(tmp_path: Path) -> None:
    # Separate connections to one file stand in for separate processes (two bot instances).
    path = tmp_path / "bot.db"
    repos = [Repository(await connect(path)) for _ in range(8)]
    try:
        outcomes = await _race(repos)
        await _check_no_overspend(repos[0], outcomes)
    finally:
        for r in repos:
            await r.close()


# --- property: the ledger always adds up ----------------------------------------------------


@dataclass
class LedgerModel:
    """The balance worked out independently: allowance + grants - captures - open reserves."""

    allowance: int
    grants: int = 0
    captured: int = 0
    open: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.allowance + self.grants - self.captured - sum(self.open.values())


operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(min_value=1, max_value=25)),
        st.tuples(st.just("capture"), st.integers(min_value=0, max_value=30)),
        st.tuples(st.just("refund"), st.integers(min_value=0, max_value=30)),
        st.tuples(st.just("grant"), st.integers(min_value=1, max_value=30)),
    ),
    max_size=25,
)


async def _run_operations(path: Path, allowance: int, ops: list[tuple[str, int]]) -> None:
    repo = Repository(await connect(path))
    policy = CreditPolicy(daily_credits=allowance)
    model = LedgerModel(allowance)
    jobs: list[int] = []
    try:
        for kind, value in ops:
            if kind == "reserve":
                try:
                    job = await repo.create_job(
                        provider="demo",
                        user_id="u",
                        prompt="p",
                        seconds=4,
                        size="1280x720",
                        model="sora-2",
                        cost=value,
                        policy=policy,
                        now=NOW,
                    )
                except InsufficientCredits:
                    assert value > model.total
                else:
                    assert value <= model.total
                    model.open[job.id] = value
                    jobs.append(job.id)
            elif kind in ("capture", "refund"):
                if not jobs:
                    continue
                job_id = jobs[value % len(jobs)]
                settled = await repo.settle(job_id, kind, now=NOW)
                assert settled == (job_id in model.open)
                if settled:
                    cost = model.open.pop(job_id)
                    model.captured += cost if kind == "capture" else 0
            else:
                await repo.grant("", "u", value, actor_id="admin", now=NOW)
                model.grants += value
            balance = await repo.balance("", "u", allowance, now=NOW)
            assert balance.total == model.total
            assert balance.total >= 0
    finally:
        await repo.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(allowance=st.integers(min_value=0, max_value=40), ops=operations)
def test_ledger_balance_matches_an_independent_model(allowance: int, ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run_operations(Path(tmp) / "bot.db", allowance, ops))
