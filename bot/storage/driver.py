"""What the shared SQL (bot/storage/sql.py, guilds.py) needs from a database backend, and nothing more.

The SQL is written once, with ``?`` placeholders, in the dialect SQLite and PostgreSQL agree on. A driver
supplies only what differs: how placeholders are spelled, how a transaction locks (SQLite's single
writer versus PostgreSQL's advisory and row locks), how a list is bound, and which errors mean the
database is not answering.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Any
"""A result row: by column name (``row["id"]``) and by position (``row[0]``) on both drivers."""

# Advisory lock namespaces for ``Conn.lock`` (PostgreSQL's two-int form keeps them apart from each other
# and from the migration lock).
USER_LOCK = 1
"""Every balance check-then-write of one user in one server (key ``guild:user``)."""
GUILD_TERMS_LOCK = 2
"""One server's blocked-term changes (key: the guild id)."""
SPEND_LOCK = 3
"""The reserves under a daily cap: per server (``g:<id>``), or of every server (``*``)."""


class Conn(Protocol):
    """One connection, inside or outside a transaction. SQL uses ``?`` placeholders."""

    async def fetch(self, sql: str, *params: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *params: Any) -> Row | None: ...

    async def execute(self, sql: str, *params: Any) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def lock(self, space: int, key: str) -> None:
        """Serialise this transaction against every other one holding (``space``, ``key``) until it ends.
        A no-op where the transaction already excludes every other writer (SQLite)."""
        ...


class Driver(Protocol):
    for_update: str
    """Appended to a SELECT whose rows the transaction will change (`` FOR UPDATE`` or nothing)."""
    skip_locked: str
    """Appended to a SELECT of rows to claim: rows another transaction holds are passed over."""

    def transaction(self) -> AbstractAsyncContextManager[Conn]:
        """A transaction whose reads and writes are atomic against every other connection and process."""
        ...

    def write(self) -> AbstractAsyncContextManager[Conn]:
        """A connection for one self-contained write statement."""
        ...

    def read(self) -> AbstractAsyncContextManager[Conn]:
        """A connection for reads."""
        ...

    def among(self, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
        """``IN`` a list, as an SQL fragment (``IN (?,?)`` or ``= ANY(?::text[])``) and its parameters."""
        ...

    def not_among(self, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
        """``NOT IN`` a list, as ``among``."""
        ...

    def is_outage(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the database is not answering (rather than that the request is wrong)."""
        ...

    async def ping(self) -> None:
        """Raise unless the database answers a query (and, for a file, the file is still there)."""
        ...

    async def close(self) -> None: ...
