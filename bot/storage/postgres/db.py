"""Open an asyncpg pool on PostgreSQL and bring its schema up to date.

Migrations are ``bot/storage/migrations_pg/NNNN_name.sql``: the same numbers as the SQLite ones, in
PostgreSQL's dialect. Each is applied in its own transaction; ``schema_version`` records the numbers.
Several processes may start at once: a session advisory lock makes them migrate one after the other.
"""

from __future__ import annotations

import logging

import asyncpg

from bot.storage.schema import shipped_migrations

log = logging.getLogger(__name__)

# Key of the advisory lock held while migrating (any constant no other code uses).
MIGRATION_LOCK = 0x50524153  # "SORA"


def migration_files() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every PostgreSQL migration shipped with the package, in order."""
    return shipped_migrations("bot.storage.migrations_pg")


async def connect(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool on ``dsn`` (``postgresql://user:pass@host:port/db``) and migrate the schema."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
    except BaseException:
        await pool.close()
        raise
    return pool


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply pending migrations; return the schema version now in force."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for number, name, sql in migration_files():
            if number <= current:
                continue
            log.info("applying migration %s", name)
            async with conn.transaction():
                await conn.execute(sql)  # no parameters: the simple protocol runs every statement
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
            current = number
        return int(current)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
