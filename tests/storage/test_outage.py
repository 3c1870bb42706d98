"""Which storage errors are an outage (DatabaseUnavailable) and which are about the request itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from bot.errors import DatabaseUnavailable, LeaseLost
from bot.jobs.model import State
from bot.storage.outage import postgres_outage, sqlite_outage
from bot.storage.sqlite import GuildSettingsRepository, Repository
from bot.storage.sqlite import driver as sqlite_driver
from bot.storage.sqlite.db import connect


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        ConnectionResetError(104, "reset by peer"),
        TimeoutError(),  # a pool or connect timeout
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.TooManyConnectionsError("too many connections for database"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute UPDATE in a read-only transaction"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    ],
)
def test_postgres_connection_errors_are_outages(error: BaseException) -> None:
    assert postgres_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.UndefinedTableError("relation does not exist"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        LeaseLost("job 1 is no longer leased"),
        ValueError("bad field"),
    ],
)
def test_errors_about_the_request_are_not(error: BaseException) -> None:
    assert not postgres_outage(error)
    assert not sqlite_outage(error)


def test_sqlite_errors_about_the_file_are_outages() -> None:
    def error(message: str, code: int) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError(message)
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        return exc

    assert sqlite_outage(error("database is locked", sqlite3.SQLITE_BUSY))
    assert sqlite_outage(error("disk I/O error", sqlite3.SQLITE_IOERR_WRITE))  # extended codes too
    assert sqlite_outage(error("unable to open database file", sqlite3.SQLITE_CANTOPEN))
    assert sqlite_outage(FileNotFoundError("database file is gone"))
    assert not sqlite_outage(error("no such table: jobs", sqlite3.SQLITE_ERROR))
    assert not sqlite_outage(sqlite3.IntegrityError("UNIQUE constraint failed"))


async def test_a_locked_sqlite_file_raises_database_unavailable_from_both_repositories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "BUSY_RETRY_SECONDS", 0.05)
    repo = Repository(await connect(tmp_path / "bot.db"))
    other = await aiosqlite.connect(tmp_path / "bot.db", isolation_level=None)
    try:
        await repo.db.execute("PRAGMA busy_timeout=20")
        job = await repo.create_job(provider="relay", user_id="u", prompt="p", seconds=4, size="s", model="m")
        await other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable) as raised:
            await repo.save_job(job.moved(State.SUBMITTING, 1.0))
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert "Nothing was charged" in raised.value.user_message
        with pytest.raises(DatabaseUnavailable):
            await GuildSettingsRepository(repo).add_channel("g", "c", actor_id="admin")
        assert (await repo.get_job(job.id)) == job, "reads still work (WAL) and nothing was written"
        await other.execute("COMMIT")
        await repo.save_job(job.moved(State.SUBMITTING, 1.0))  # the same call works once the file is free
        with pytest.raises(ValueError):  # a programming error stays what it is
            await repo.update_job(job.id, state="failed")
    finally:
        await other.close()
        await repo.close()
