"""One ``repo`` fixture for every storage and ledger test, parametrized over both backends: SQLite in a
tmpdir and PostgreSQL on the throwaway server (tests/pg/fixtures.py). A new test here runs on each by
construction. Tests of SQLite itself (WAL, BEGIN IMMEDIATE, files) ask for ``sqlite_repo`` instead; their
PostgreSQL counterparts live in tests/pg.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.jobs.store import GuildSettingsStore, Store
from bot.storage.backend import PG_SCHEMES
from bot.storage.guilds import SqlGuildSettings
from bot.storage.postgres import PostgresRepository
from bot.storage.postgres import connect as connect_postgres
from bot.storage.sql import SqlRepository
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect as connect_sqlite
from tests.pg.read_shim import ReadShim

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the backend's empty database is: a SQLite file, or a fresh PostgreSQL database's DSN. Asked
    for here rather than in a signature, so the SQLite half needs no PostgreSQL server (and sync, because
    an async fixture cannot resolve another one this way)."""
    if request.param == "sqlite":
        return str(tmp_path / "bot.db")
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture
async def repo(database: str) -> AsyncIterator[Store]:
    """The repository of one backend on an empty, migrated database."""
    if database.startswith(PG_SCHEMES):
        pg = PostgresRepository(await connect_postgres(database))
        pg.db = ReadShim(pg.pool)  # type: ignore[attr-defined] # the tests' raw row counts
        repository: Store = pg
    else:
        repository = Repository(await connect_sqlite(Path(database)))
    yield repository
    await repository.close()


@pytest.fixture
async def sqlite_repo(tmp_path: Path) -> AsyncIterator[Repository]:
    """SQLite alone: for tests of SQLite's own behaviour."""
    repository = Repository(await connect_sqlite(tmp_path / "bot.db"))
    yield repository
    await repository.close()


def guild_settings(repo: Store) -> GuildSettingsStore:
    """The guild-settings store on ``repo``'s driver (its connection, and on SQLite its write lock)."""
    assert isinstance(repo, SqlRepository)
    return SqlGuildSettings(repo.driver)
