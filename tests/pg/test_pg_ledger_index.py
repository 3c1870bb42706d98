"""The ledger's unique index on its own (PostgreSQL), as tests/storage/test_ledger_index.py on SQLite:
duplicate job rows inserted by SQL, past the settle check that would otherwise hide a missing index."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.storage.postgres import PostgresRepository, connect
from tests.storage.test_repository import NOW, create

INSERT = (
    "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, job_id, day, created_at)"
    " VALUES ('g1', 'u1', $1, $2, $3, $4, '2026-03-14', $5)"
)


@pytest.fixture
async def repo(pg_dsn: str) -> AsyncIterator[PostgresRepository]:
    repository = PostgresRepository(await connect(pg_dsn))
    yield repository
    await repository.close()


async def duplicate(repo: PostgresRepository, kind: str, pool: str, amount: int, job_id: int | None) -> None:
    await repo.pool.execute(INSERT, kind, pool, amount, job_id, NOW)


async def rows(repo: PostgresRepository) -> int:
    return int(await repo.pool.fetchval("SELECT COUNT(*) FROM ledger"))


@pytest.mark.parametrize("kind", ["capture", "refund"])
async def test_a_second_settle_row_for_a_job_and_pool_is_refused(repo: PostgresRepository, kind: str) -> None:
    job = await create(repo, 4)  # type: ignore[arg-type]
    assert await repo.settle(job.id, kind, now=NOW) is True
    before = await rows(repo)

    with pytest.raises(asyncpg.UniqueViolationError, match="ledger_once_per_job"):
        await duplicate(repo, kind, "daily", 4, job.id)
    assert await rows(repo) == before
    assert await repo.settlements(job.id) == {"reserve": 4, kind: 4}


async def test_a_second_reserve_row_is_refused_too(repo: PostgresRepository) -> None:
    job = await create(repo, 4)  # type: ignore[arg-type]
    with pytest.raises(asyncpg.UniqueViolationError, match="ledger_once_per_job"):
        await duplicate(repo, "reserve", "daily", 4, job.id)
    assert await repo.settlements(job.id) == {"reserve": 4}


async def test_the_index_covers_job_rows_only(repo: PostgresRepository) -> None:
    job = await create(repo, 4)  # type: ignore[arg-type]
    await duplicate(repo, "capture", "extra", 1, job.id)
    await duplicate(repo, "grant", "extra", 5, None)
    await duplicate(repo, "grant", "extra", 5, None)
    assert await repo.settlements(job.id) == {"reserve": 4, "capture": 1}
