"""The SQLite backend (aiosqlite): a driver for the shared SQL, and the numbered migrations in migrations/."""

from bot.storage.sqlite.db import connect, migrate, migration_files
from bot.storage.sqlite.repository import GuildSettingsRepository, Repository

__all__ = ["GuildSettingsRepository", "Repository", "connect", "migrate", "migration_files"]
