"""PostgreSQL-only guarantees: migrations, several pools (= several bot processes) on one database,
exactly-once settlement under races, finish_job atomicity, callback secrets, and interface parity."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.config import Settings
from bot.errors import InsufficientCredits
from bot.jobs.model import State
from bot.moderation.policy import BlockedTerm, GuildSettings, MatchMode
from bot.storage.backend import open_storage
from bot.storage.postgres import PostgresGuildSettings, PostgresRepository, connect, migrate, migration_files
from bot.storage.sqlite import GuildSettingsRepository, Repository
from bot.storage.sqlite import db as sqlite_db
from tests.storage.test_repository import NOW, create

ALLOWANCE, COST, ATTEMPTS = 40, 3, 50


@pytest.fixture
async def repos(pg_dsn: str) -> AsyncIterator[list[PostgresRepository]]:
    """Eight repositories with pools of their own: eight bot processes on one database."""
    opened = [PostgresRepository(await connect(pg_dsn, max_size=4)) for _ in range(8)]
    yield opened
    for r in opened:
        await r.close()


async def count(repo: PostgresRepository, table: str) -> int:
    return int(await repo.pool.fetchval(f"SELECT COUNT(*) FROM {table}"))  # noqa: S608 - test constant


# --- schema -----------------------------------------------------------------------------------


def test_the_same_migrations_exist_for_both_dialects() -> None:
    assert [(n, name) for n, name, _ in migration_files()] == [(n, name) for n, name, _ in sqlite_db.migration_files()]


async def test_migrations_apply_once_and_are_idempotent(pg_dsn: str) -> None:
    latest = max(n for n, _, _ in migration_files())
    pool = await connect(pg_dsn)
    try:
        async with pool.acquire() as conn:
            assert await migrate(conn) == latest  # again: nothing to do
    finally:
        await pool.close()
    pool = await connect(pg_dsn)  # a restart
    try:
        versions = [r[0] for r in await pool.fetch("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [n for n, _, _ in migration_files()]
        tables = {r[0] for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"jobs", "ledger", "schema_version", "guild_settings", "callback_secrets"} <= tables
    finally:
        await pool.close()


async def test_processes_starting_together_migrate_once(pg_dsn: str) -> None:
    pools = await asyncio.gather(*(connect(pg_dsn, max_size=1) for _ in range(5)))
    try:
        versions = [r[0] for r in await pools[0].fetch("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [n for n, _, _ in migration_files()]
    finally:
        await asyncio.gather(*(p.close() for p in pools))


# --- credits across connections -----------------------------------------------------------------


async def test_concurrent_reservations_from_many_pools_never_overspend(repos: list[PostgresRepository]) -> None:
    async def attempt(n: int) -> bool:
        try:
            await create(repos[n % len(repos)], COST, allowance=ALLOWANCE)  # type: ignore[arg-type]
        except InsufficientCredits:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(n) for n in range(ATTEMPTS)))
    assert sum(outcomes) == ALLOWANCE // COST
    assert await count(repos[0], "jobs") == ALLOWANCE // COST
    assert (await repos[0].balance("g1", "u1", ALLOWANCE, now=NOW)).total == ALLOWANCE % COST


async def test_racing_capture_and_refund_settle_exactly_once(repos: list[PostgresRepository]) -> None:
    await repos[0].grant("g1", "u1", 5, actor_id="admin", now=NOW)
    jobs = [await create(repos[0], 3, allowance=100) for _ in range(10)]  # type: ignore[arg-type]
    for job in jobs:
        kinds = ["capture", "refund"] * 4
        results = await asyncio.gather(
            *(repos[i].settle(job.id, kind, now=NOW) for i, kind in enumerate(kinds)), return_exceptions=True
        )
        assert results.count(True) == 1, results  # one winner, no errors, the rest see it settled
        assert set(results) == {True, False}
        settled = await repos[0].settlements(job.id)
        assert settled["reserve"] == 3 and len(settled) == 2 and sum(settled.values()) == 6


async def test_finish_job_is_atomic(repo: PostgresRepository) -> None:
    job = await create(repo, 4)  # type: ignore[arg-type]
    running = job.moved(State.SUBMITTING, NOW).moved(State.RUNNING, NOW, provider_job_id="p")
    await repo.save_job(running)
    failed = running.moved(State.FAILED, NOW + 5, error_class="x")
    with pytest.raises(ValueError):
        await repo.finish_job(failed, "steal")  # the settle part fails: the state change must not stay
    assert (await repo.get_job(job.id)).state is State.RUNNING  # type: ignore[union-attr]
    assert await repo.finish_job(failed, "refund") is True
    assert (await repo.get_job(job.id)).state is State.FAILED  # type: ignore[union-attr]
    assert await repo.finish_job(failed, "refund") is False  # exactly once
    assert await repo.settlements(job.id) == {"reserve": 4, "refund": 4}


async def test_insufficient_credits_leaves_no_job_from_any_pool(repos: list[PostgresRepository]) -> None:
    await create(repos[0], 9)  # type: ignore[arg-type]
    with pytest.raises(InsufficientCredits):
        await create(repos[1], 2)  # type: ignore[arg-type]
    assert (await count(repos[2], "jobs"), await count(repos[2], "ledger")) == (1, 1)


# --- settings and callbacks ---------------------------------------------------------------------


async def test_guild_settings_round_trip_survives_reopening(pg_dsn: str) -> None:
    repo = PostgresRepository(await connect(pg_dsn))
    store = PostgresGuildSettings(repo)
    await store.update("g1", actor_id="admin", required_role_id="42", cooldown_seconds=0, pro_allowed=False)
    await store.update("g1", actor_id="admin", max_jobs_per_user=3, audit_channel_id="77", daily_allowance=0)
    assert await store.add_channel("g1", "100", actor_id="admin")
    assert not await store.add_channel("g1", "100", actor_id="admin")
    assert await store.add_blocked_term("g1", "gore", MatchMode.SUBSTRING, actor_id="admin")
    assert await store.add_blocked_term("g1", "blood bath", MatchMode.WORD, actor_id="admin")
    await store.add_channel("g2", "999", actor_id="other")
    await repo.close()
    repo = PostgresRepository(await connect(pg_dsn))
    try:
        assert await PostgresGuildSettings(repo).get("g1") == GuildSettings(
            "g1",
            allowed_channel_ids=frozenset({"100"}),
            required_role_id="42",
            blocked_terms=(BlockedTerm("blood bath", MatchMode.WORD), BlockedTerm("gore", MatchMode.SUBSTRING)),
            cooldown_seconds=0,
            max_jobs_per_user=3,
            pro_allowed=False,
            audit_channel_id="77",
            daily_allowance=0,
        )
    finally:
        await repo.close()


async def test_callback_secrets_are_spent_once(repo: PostgresRepository) -> None:
    job = await create(repo, 0)  # type: ignore[arg-type]
    await repo.add_callback_secret(job.id, "d1", now=NOW)
    assert await repo.callback_secret("d1") == (job.id, None)
    assert await repo.callback_secret("unknown") is None
    assert await repo.use_callback_secret("d1", now=NOW + 1) is True
    assert await repo.use_callback_secret("d1", now=NOW + 2) is False  # a replay
    assert await repo.callback_secret("d1") == (job.id, NOW + 1)
    with pytest.raises(asyncpg.UniqueViolationError):
        await repo.add_callback_secret(job.id, "d1")
    await repo.ping()


# --- one interface ------------------------------------------------------------------------------


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("sqlite_cls", "pg_cls"), [(Repository, PostgresRepository), (GuildSettingsRepository, PostgresGuildSettings)]
)
def test_both_backends_have_the_same_public_methods(sqlite_cls: type, pg_cls: type) -> None:
    ours, theirs = _public(pg_cls), _public(sqlite_cls)
    assert set(ours) == set(theirs)
    for name, signature in theirs.items():
        assert [(p.name, p.kind, p.default) for p in ours[name].parameters.values() if p.name != "self"] == [
            (p.name, p.kind, p.default) for p in signature.parameters.values() if p.name != "self"
        ], name
        assert str(ours[name].return_annotation) == str(signature.return_annotation), name


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_open_storage_picks_postgres_from_the_url(scheme: str, pg_dsn: str) -> None:
    url = pg_dsn.replace("postgresql://", f"{scheme}://")
    await _check_storage(url, (PostgresRepository, PostgresGuildSettings))


async def test_open_storage_picks_sqlite_from_the_url(tmp_path: Path) -> None:
    await _check_storage(f"sqlite:///{tmp_path}/bot.db", (Repository, GuildSettingsRepository))


async def _check_storage(url: str, expected: tuple[type, type]) -> None:
    repo, guilds = await open_storage(Settings(database_url=url))
    try:
        assert (type(repo), type(guilds)) == expected
        await repo.ping()
        assert (await guilds.get("g1")) == GuildSettings("g1")
    finally:
        await repo.close()
