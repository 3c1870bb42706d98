"""Pick the storage driver from ``DATABASE_URL``: SQLite (``sqlite:///path``) or PostgreSQL
(``postgresql://`` / ``postgres://``). Both implement the jobs layer's
Protocols (bot/jobs/store.py)."""

from __future__ import annotations

import logging

from bot.config import Settings
from bot.jobs.store import GuildSettingsStore, Store
from bot.storage.postgres import PostgresGuildSettings, PostgresRepository
from bot.storage.postgres import connect as connect_postgres
from bot.storage.sqlite import GuildSettingsRepository, Repository
from bot.storage.sqlite.db import connect as connect_sqlite

log = logging.getLogger(__name__)

PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(database_url: str) -> bool:
    return database_url.startswith(PG_SCHEMES)


async def open_storage(settings: Settings) -> tuple[Store, GuildSettingsStore]:
    """Connect (and migrate) the database named by ``settings.database_url``; the caller closes the repository."""
    if is_postgres(settings.database_url):
        log.info("using PostgreSQL at %s", settings.database_url.split("@")[-1])  # never the password
        repo = PostgresRepository(await connect_postgres(settings.database_url))
        return repo, PostgresGuildSettings(repo)
    sqlite_repo = Repository(await connect_sqlite(settings.database_path))
    return sqlite_repo, GuildSettingsRepository(sqlite_repo)
