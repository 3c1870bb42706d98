"""Fixtures for the PostgreSQL backend: one throwaway server per xdist worker, one fresh database per test.

Without PostgreSQL binaries the tests are skipped locally, but FAIL when ``CI`` is set: CI installs the
server with ``.ci/pg`` and must never skip these silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.storage.postgres import PostgresGuildSettings, PostgresRepository, connect
from tests.pg.server import PgServer, find_bin_dir, running_server


def require_binaries(bin_dir: Path | None, environ: Mapping[str, str]) -> Path:
    """The bin dir; without one, skip locally but fail under CI (CI must never skip these silently)."""
    if bin_dir is None:
        reason = "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin); run .ci/pg to install them"
        if environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    return bin_dir


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with running_server(require_binaries(find_bin_dir(), os.environ)) as server:
        yield server


@pytest.fixture
async def pg_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """The DSN of an empty database made for this test alone."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield pg_server.dsn_for(name)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


class _Rows:
    """What the SQLite tests' raw-SQL helpers use: ``async with db.execute(sql) as cur: await cur.fetchall()``."""

    def __init__(self, pool: asyncpg.Pool, sql: str, params: tuple[Any, ...]) -> None:
        self.pool, self.sql, self.params = pool, sql, params
        self.rows: list[asyncpg.Record] = []

    async def __aenter__(self) -> _Rows:
        self.rows = await self.pool.fetch(self.sql, *self.params)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def fetchone(self) -> asyncpg.Record | None:
        return self.rows[0] if self.rows else None

    async def fetchall(self) -> list[asyncpg.Record]:
        return self.rows


class ReadShim:
    """Test-only stand-in for ``Repository.db`` so the shared SQLite tests' row counts run on PostgreSQL
    (their SQL is plain ``SELECT COUNT(*) FROM ledger``-style, valid in both dialects)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> _Rows:
        return _Rows(self.pool, sql, params)


@pytest.fixture
async def repo(pg_dsn: str) -> AsyncIterator[PostgresRepository]:
    repository = PostgresRepository(await connect(pg_dsn))
    repository.db = ReadShim(repository.pool)  # type: ignore[attr-defined]
    yield repository
    await repository.close()


@pytest.fixture
def guild_store(repo: PostgresRepository) -> PostgresGuildSettings:
    return PostgresGuildSettings(repo)
