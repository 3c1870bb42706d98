"""The PostgreSQL backend (asyncpg): a driver for the shared SQL, and the numbered migrations in migrations_pg/."""

from bot.storage.postgres.db import connect, migrate, migration_files
from bot.storage.postgres.repository import PostgresGuildSettings, PostgresRepository

__all__ = ["PostgresGuildSettings", "PostgresRepository", "connect", "migrate", "migration_files"]
