"""The PostgreSQL driver: an asyncpg pool, ``?`` numbered into ``$1``, lists bound as arrays, and locks
taken explicitly (advisory locks, ``FOR UPDATE``, ``SKIP LOCKED``) since there is no single writer."""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from bot.storage.driver import Row
from bot.storage.outage import postgres_outage

_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2...`` (the shared SQL has no ``?`` inside a literal)."""
    counter = itertools.count(1)
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def changed(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 1`` or ``INSERT 0 1``."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresConn:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        return list(await self.conn.fetch(numbered(sql), *params))

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        return await self.conn.fetchrow(numbered(sql), *params)

    async def execute(self, sql: str, *params: Any) -> int:
        return changed(await self.conn.execute(numbered(sql), *params))

    async def lock(self, space: int, key: str) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2::text))", space, key)


class PostgresDriver:
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConn]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PostgresConn(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[PostgresConn]:
        # One statement is atomic by itself: no transaction round trips.
        async with self.pool.acquire() as conn:
            yield PostgresConn(conn)

    def read(self) -> contextlib.AbstractAsyncContextManager[PostgresConn]:
        return self.write()

    def among(self, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
        return f"= ANY(?::{sql_type}[])", [list(values)]

    def not_among(self, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
        return f"<> ALL(?::{sql_type}[])", [list(values)]

    def is_outage(self, exc: BaseException) -> bool:
        return postgres_outage(exc)

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT MAX(version) FROM schema_version")

    async def close(self) -> None:
        await self.pool.close()
