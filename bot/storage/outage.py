"""Which storage errors mean "the database is not answering" rather than "this request is wrong".

Both backends raise :class:`bot.errors.DatabaseUnavailable` for the first kind (the storage classes are
wrapped with :func:`raises_database_unavailable`, which asks their driver), so callers tell an outage from a real error
without knowing the driver: a job's step waits for the database (bot/jobs/retry.py), a command is
refused with "try again in a moment". Everything else (a constraint violated, a LeaseLost, a bug)
passes through unchanged.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import asyncpg

from bot.errors import DatabaseUnavailable
from bot.storage.driver import Driver

# Server-side answers that say the server (not the statement) is the problem: shutting down, restarting,
# out of connection slots, or a standby during a failover that refuses writes until it is promoted.
_PG_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: connection refused, lost, rejected
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ReadOnlySQLTransactionError,
)

# SQLite primary result codes about the file, not the statement: locked past the busy timeout, cannot
# open, I/O error, disk full.
_SQLITE_OUTAGES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL}
)


def postgres_outage(exc: BaseException) -> bool:
    """A refused, reset or timed-out connection (OSError, TimeoutError from a pool), or the server saying
    it cannot serve now."""
    if isinstance(exc, (OSError, *_PG_OUTAGES)):
        return True
    # The client's own words for a connection the server dropped: "connection is closed", or a protocol
    # left mid-operation by a termination ("cannot switch to state 12; another operation is in progress").
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection" in str(exc) and "closed" in str(exc)


def sqlite_outage(exc: BaseException) -> bool:
    """The file is locked, gone, unreadable or full (and OSError: the file vanished under us)."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _SQLITE_OUTAGES
        return any(text in str(exc) for text in ("locked", "unable to open", "disk I/O", "disk is full"))
    return False


class HasDriver(Protocol):
    driver: Driver


H = TypeVar("H", bound=HasDriver)


def raises_database_unavailable(cls: type[H]) -> type[H]:
    """Class decorator: every public coroutine method re-raises the errors its driver classifies as an
    outage as DatabaseUnavailable (the driver's error stays attached as ``__cause__`` for the log)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _translating(member))
    return cls


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(self: HasDriver, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            if self.driver.is_outage(exc):
                # Driver texts name host and port at most, never the DSN's password.
                raise DatabaseUnavailable(f"{method.__qualname__}: {type(exc).__name__}: {exc}") from exc
            raise

    return call
