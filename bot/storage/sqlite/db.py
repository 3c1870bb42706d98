"""Open the SQLite database and bring its schema up to date.

Migrations are the numbered ``migrations/NNNN_name.sql`` files, applied in order inside one
transaction each; ``schema_version`` records the highest applied number.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiosqlite

from bot.storage.schema import shipped_migrations

log = logging.getLogger(__name__)


def migration_files() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every migration shipped with the package, in order."""
    return shipped_migrations("bot.storage.migrations")


async def connect(path: Path) -> aiosqlite.Connection:
    """Open (creating if needed) the database at ``path`` with WAL, a busy timeout and foreign keys."""
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None)  # autocommit: we BEGIN explicitly
    db.row_factory = aiosqlite.Row
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA busy_timeout=10000")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.execute("PRAGMA synchronous=NORMAL")
    await migrate(db)
    return db


async def migrate(db: aiosqlite.Connection) -> int:
    """Apply pending migrations; return the schema version now in force."""
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
        row = await cur.fetchone()
    current = row[0] if row and row[0] is not None else 0
    for number, name, sql in migration_files():
        if number <= current:
            continue
        log.info("applying migration %s", name)
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                await db.execute(statement)
            await db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        current = number
    return current


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (ours hold no semicolons inside strings or triggers)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
