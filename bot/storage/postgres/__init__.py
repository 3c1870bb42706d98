"""The PostgreSQL backend (asyncpg): same repository interface and numbered migrations as SQLite."""

from bot.storage.postgres.db import connect, migrate, migration_files
from bot.storage.postgres.guilds import PostgresGuildSettings
from bot.storage.postgres.repository import PostgresRepository

__all__ = ["PostgresGuildSettings", "PostgresRepository", "connect", "migrate", "migration_files"]
