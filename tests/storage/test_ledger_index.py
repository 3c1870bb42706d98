"""The ledger's unique index on its own (SQLite): the settle check in front of it must not hide it.

``Repository.settle`` looks before it writes, so no settle test can tell whether the index exists;
these insert the duplicate rows by SQL. tests/pg/test_pg_ledger_index.py does the same on PostgreSQL.
"""

from __future__ import annotations

import sqlite3

import pytest

from bot.storage.sqlite import Repository
from tests.storage.test_repository import NOW, count, create

INSERT = (
    "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, job_id, day, created_at)"
    " VALUES ('g1', 'u1', ?, ?, ?, ?, '2026-03-14', ?)"
)


@pytest.fixture
def repo(sqlite_repo: Repository) -> Repository:
    """SQLite alone: these write by SQL in SQLite's dialect (tests/pg/test_pg_ledger_index.py on PostgreSQL)."""
    return sqlite_repo


async def duplicate(repo: Repository, kind: str, pool: str, amount: int, job_id: int | None) -> None:
    await repo.db.execute(INSERT, (kind, pool, amount, job_id, NOW))


@pytest.mark.parametrize("kind", ["capture", "refund"])
async def test_a_second_settle_row_for_a_job_and_pool_is_refused(repo: Repository, kind: str) -> None:
    job = await create(repo, 4)
    assert await repo.settle(job.id, kind, now=NOW) is True
    rows = await count(repo, "ledger")

    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await duplicate(repo, kind, "daily", 4, job.id)
    await repo.db.rollback()
    assert await count(repo, "ledger") == rows
    assert await repo.settlements(job.id) == {"reserve": 4, kind: 4}


async def test_a_second_reserve_row_is_refused_too(repo: Repository) -> None:
    job = await create(repo, 4)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await duplicate(repo, "reserve", "daily", 4, job.id)
    await repo.db.rollback()
    assert await repo.settlements(job.id) == {"reserve": 4}


async def test_the_index_covers_job_rows_only(repo: Repository) -> None:
    job = await create(repo, 4)
    # Another pool of the same job, and any number of grants (no job): all allowed.
    await duplicate(repo, "capture", "extra", 1, job.id)
    await duplicate(repo, "grant", "extra", 5, None)
    await duplicate(repo, "grant", "extra", 5, None)
    await repo.db.commit()
    assert await repo.settlements(job.id) == {"reserve": 4, "capture": 1}
