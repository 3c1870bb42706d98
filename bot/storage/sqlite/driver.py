"""The SQLite driver: one aiosqlite connection shared by every task, ``?`` placeholders as written, and
``BEGIN IMMEDIATE`` for every transaction (SQLite's single writer: nothing else to lock)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiosqlite

from bot.storage.driver import Row
from bot.storage.outage import sqlite_outage

# How long BEGIN IMMEDIATE is retried when SQLite refuses it at once (see SqliteDriver._begin).
BUSY_RETRY_SECONDS = 10.0


class SqliteConn:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        async with self.db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        async with self.db.execute(sql, params) as cur:
            return await cur.fetchone()

    async def execute(self, sql: str, *params: Any) -> int:
        cur = await self.db.execute(sql, params)
        return cur.rowcount

    async def lock(self, space: int, key: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already keeps every other writer out."""


class SqliteDriver:
    for_update = ""
    skip_locked = ""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self._conn = SqliteConn(db)
        # One connection is shared by every task: writes and transactions take turns, or a second
        # BEGIN would land inside the first one's transaction.
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConn]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes SQLite's write lock up front, so a read-check-write
        inside is atomic against other tasks and other processes on the same file."""
        async with self._write_lock:
            try:
                await self._begin()
            except asyncio.CancelledError:
                # The BEGIN may still run on aiosqlite's thread after we stop waiting: undo it, or the
                # shared connection stays inside a transaction that nobody will ever commit.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self.db.execute("ROLLBACK")
                raise
            try:
                yield self._conn
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    def write(self) -> contextlib.AbstractAsyncContextManager[SqliteConn]:
        # A transaction of its own: an autocommit write would hit the same instant SQLITE_BUSY as _begin.
        return self.transaction()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteConn]:
        yield self._conn

    async def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, tried again while SQLite refuses it without waiting.

        The busy timeout does not apply when this connection still has a read open for another task
        (a cursor between its execute and its fetch) while another connection holds the write lock:
        SQLite answers SQLITE_BUSY at once to avoid a deadlock. The read ends within moments.
        """
        delay, deadline = 0.002, time.monotonic() + BUSY_RETRY_SECONDS
        while True:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    def among(self, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
        return f"IN ({','.join('?' * len(values))})", list(values)

    def not_among(self, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
        return f"NOT IN ({','.join('?' * len(values))})", list(values)

    def is_outage(self, exc: BaseException) -> bool:
        return sqlite_outage(exc)

    async def ping(self) -> None:
        """Also checks the file is still where it was opened: a deleted or unmounted file keeps answering
        from the open handle, but nothing written survives."""
        async with self.db.execute("SELECT MAX(version) FROM schema_version") as cur:
            await cur.fetchone()
        async with self.db.execute("PRAGMA database_list") as cur:
            files = [row[2] for row in await cur.fetchall() if row[1] == "main" and row[2]]
        for file in files:
            if not await asyncio.to_thread(os.path.exists, file):
                raise FileNotFoundError(f"database file {file} is gone")

    async def close(self) -> None:
        await self.db.close()
