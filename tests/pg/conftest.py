"""Fixtures of the PostgreSQL-only tests: the repository and guild settings on a fresh database. The server
and ``pg_dsn`` come from tests/pg/fixtures.py (registered for the whole suite by tests/conftest.py); the
tests shared by both backends get theirs from tests/storage/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.storage.postgres import PostgresGuildSettings, PostgresRepository, connect


@pytest.fixture
async def repo(pg_dsn: str) -> AsyncIterator[PostgresRepository]:
    repository = PostgresRepository(await connect(pg_dsn))
    yield repository
    await repository.close()


@pytest.fixture
def guild_store(repo: PostgresRepository) -> PostgresGuildSettings:
    return PostgresGuildSettings(repo)
