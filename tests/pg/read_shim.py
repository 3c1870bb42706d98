"""A test-only stand-in for ``Repository.db`` on PostgreSQL, so the storage tests' raw row counts run on
both backends (their SQL is plain ``SELECT COUNT(*) FROM ledger``-style, valid in both dialects)."""

from __future__ import annotations

from typing import Any

import asyncpg


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
    """``db.execute(sql)`` over an asyncpg pool, read-only."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> _Rows:
        return _Rows(self.pool, sql, params)
