"""The storage classes on an asyncpg pool (the SQL itself is shared: bot/storage/sql.py, guilds.py)."""

from __future__ import annotations

import asyncpg

from bot.storage.guilds import SqlGuildSettings
from bot.storage.postgres.driver import PostgresDriver
from bot.storage.sql import SqlRepository


class PostgresRepository(SqlRepository):
    """Jobs and the credit ledger in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(PostgresDriver(pool))
        self.pool = pool


class PostgresGuildSettings(SqlGuildSettings):
    """Per-server settings in PostgreSQL, on the repository's pool."""

    def __init__(self, repo: PostgresRepository) -> None:
        super().__init__(repo.driver)
