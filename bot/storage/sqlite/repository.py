"""The storage classes on one SQLite connection (the SQL itself is shared: bot/storage/sql.py, guilds.py)."""

from __future__ import annotations

import aiosqlite

from bot.storage.guilds import SqlGuildSettings
from bot.storage.sql import SqlRepository
from bot.storage.sqlite.driver import SqliteDriver


class Repository(SqlRepository):
    """Jobs and the credit ledger in SQLite."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        super().__init__(SqliteDriver(db))
        self.db = db


class GuildSettingsRepository(SqlGuildSettings):
    """Per-server settings in SQLite, on the repository's connection and write lock."""

    def __init__(self, repo: Repository) -> None:
        super().__init__(repo.driver)
