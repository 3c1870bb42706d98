"""Every SQL statement the bot runs. The rest of the code speaks in Job / Balance objects."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiosqlite

from bot.credits.ledger import DAILY, EXTRA, Balance, CreditPolicy, SpendingCaps, next_reset, utc_day
from bot.errors import LeaseLost
from bot.jobs.model import ACTIVE, TERMINAL, Job, State
from bot.storage.job_rows import JOB_COLUMNS, job_from_row, job_values, new_job_columns
from bot.storage.outage import raises_database_unavailable, sqlite_outage

# How long BEGIN IMMEDIATE is retried when SQLite refuses it at once (see Repository._begin).
BUSY_RETRY_SECONDS = 10.0

_TERMINAL = tuple(s.value for s in TERMINAL)
# A fenced write (see save_job) lands only while its runner still holds the lease of an unfinished job.
_FENCE = f" AND lease_owner = ? AND state NOT IN ({','.join('?' * len(_TERMINAL))})"


def _job(row: aiosqlite.Row) -> Job:
    return job_from_row({key: row[key] for key in row.keys()})


@raises_database_unavailable(sqlite_outage)
class Repository:
    """Jobs and the credit ledger on one SQLite connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        # One connection is shared by every task: writes and transactions take turns, or a second
        # BEGIN would land inside the first one's transaction.
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
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
                yield
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

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

    async def _write(self, sql: str, params: Iterable[Any]) -> None:
        # A transaction of its own: an autocommit write would hit the same instant SQLITE_BUSY as _begin.
        async with self._transaction():
            await self.db.execute(sql, tuple(params))

    async def close(self) -> None:
        await self.db.close()

    # --- jobs -------------------------------------------------------------------------------

    async def create_job(
        self,
        *,
        provider: str,
        user_id: str,
        prompt: str,
        seconds: int,
        size: str,
        model: str,
        guild_id: str | None = None,
        channel_id: str | None = None,
        cost: int = 0,
        policy: CreditPolicy | None = None,
        allowance: int | None = None,
        extra: dict[str, Any] | None = None,
        now: float | None = None,
        admission: Callable[[int, float | None], None] | None = None,
        caps: SpendingCaps | None = None,
    ) -> Job:
        """Store a new queued job and, when it costs anything, reserve its credits in the same
        ``BEGIN IMMEDIATE`` transaction as the balance check, so two requests cannot overspend.

        ``admission(unfinished_jobs, last_job_at)`` (the server's per-user limits) is called inside
        the same transaction, so two requests at once cannot both slip under the limit; it raises to refuse.
        ``caps`` (the operator's daily caps per server and in total) are checked there too: SQLite's
        single writer makes them exact across processes.
        """
        now = time.time() if now is None else now
        async with self._transaction():
            if admission is not None:
                admission(*await self.user_activity(guild_id or "", user_id))
            parts: list[tuple[str, int]] = []
            if cost > 0:
                assert policy is not None  # noqa: S101 - programming error, not input
                daily = policy.daily_credits if allowance is None else allowance
                balance = await self._balance(guild_id or "", user_id, daily, now)
                parts = balance.split(cost)  # raises InsufficientCredits: nothing written
                if caps is not None:
                    await self._check_caps(caps, guild_id or "", cost, now)
            columns = new_job_columns(
                provider=provider,
                user_id=user_id,
                prompt=prompt,
                seconds=seconds,
                size=size,
                model=model,
                guild_id=guild_id,
                channel_id=channel_id,
                cost=cost,
                now=now,
                extra=extra,
            )
            cur = await self.db.execute(
                f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",  # noqa: S608
                tuple(columns.values()),
            )
            job_id = cur.lastrowid
            day = utc_day(now)
            for pool, amount in parts:
                await self.db.execute(
                    "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, job_id, day, created_at)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (guild_id or "", user_id, "reserve", pool, amount, job_id, day, now),
                )
        job = await self.get_job(job_id)  # type: ignore[arg-type]
        assert job is not None  # noqa: S101
        return job

    async def _check_caps(self, caps: SpendingCaps, guild_id: str, cost: int, now: float) -> None:
        """BudgetExhausted when ``cost`` would pass a daily cap; the caller holds the transaction."""
        server = await self.spent_on_day(guild_id, now) if caps.server_daily is not None else 0
        total = await self.spent_on_day(None, now) if caps.global_daily is not None else 0
        caps.check(cost, server_spent=server, global_spent=total, now=now)

    async def spent_on_day(self, guild_id: str | None, now: float) -> int:
        """Credits spent on ``now``'s UTC day in one server (or, with None, in all of them): the day's
        reserves minus their refunds (a refund carries its reserve's day). Grants do not count."""
        sql = (
            "SELECT COALESCE(SUM(CASE WHEN kind = 'reserve' THEN amount ELSE -amount END), 0) FROM ledger"
            " WHERE day = ? AND kind IN ('reserve', 'refund')"
        )
        params: list[Any] = [utc_day(now)]
        if guild_id is not None:
            sql += " AND guild_id = ?"
            params.append(guild_id)
        async with self.db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def get_job(self, job_id: int) -> Job | None:
        async with self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _job(row) if row else None

    async def save_job(self, job: Job, *, owner: str | None = None) -> None:
        """Write every stored field of ``job`` (its state change included) in one statement.

        With ``owner`` the write is fenced: it lands only while that runner holds the job's lease and
        the job is unfinished, else LeaseLost (another process took the job over, or it was cancelled)."""
        async with self._transaction():
            await self._store(job, owner, terminal=False)

    async def finish_job(self, job: Job, settle: str, *, owner: str | None = None) -> bool:
        """Store a terminal ``job`` and capture or refund its credits in one transaction, so no crash
        can leave a finished job with its credits still reserved. Returns whether anything was settled.
        ``owner`` fences it as in ``save_job``: a LeaseLost rolls back, nothing is settled."""
        async with self._transaction():
            await self._store(job, owner, terminal=True)
            return await self._settle(job.id, settle, job.finished_at or time.time())

    async def cancel_job(self, job: Job, *, from_states: Iterable[State], owner: str, now: float | None = None) -> bool:
        """Store the cancelled ``job`` and refund its credits, in one statement fenced by the state and
        the lease: only while the row is still in ``from_states`` and no other live runner holds it
        (``owner`` may). False, with nothing written, when the job moved on (it may be posting: a
        refund then would be a free video) or another process works it."""
        now = time.time() if now is None else now
        states = [s.value for s in from_states]
        assignments = ", ".join(f"{c} = ?" for c in JOB_COLUMNS)
        sql = (
            f"UPDATE jobs SET {assignments}, lease_expires_at = NULL WHERE id = ?"  # noqa: S608 - names are ours
            f" AND state IN ({','.join('?' * len(states))})"
            " AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at IS NULL OR lease_expires_at < ?)"
        )
        async with self._transaction():
            cur = await self.db.execute(sql, (*job_values(job), job.id, *states, owner, now))
            if cur.rowcount == 0:
                return False
            await self._settle(job.id, "refund", job.finished_at or now)
        return True

    async def _store(self, job: Job, owner: str | None, *, terminal: bool) -> None:
        """The UPDATE of save_job / finish_job; the caller holds the transaction. A finished job's lease
        ends (its owner stays, as a record of who finished it)."""
        assignments = ", ".join(f"{c} = ?" for c in JOB_COLUMNS)
        values = job_values(job)
        sql = f"UPDATE jobs SET {assignments}{', lease_expires_at = NULL' if terminal else ''} WHERE id = ?"  # noqa: S608
        params: list[Any] = [*values, job.id]
        if owner is not None:
            sql += _FENCE
            params += [owner, *_TERMINAL]
        cur = await self.db.execute(sql, params)
        if owner is not None and cur.rowcount == 0:
            raise LeaseLost(f"job {job.id} is no longer leased by {owner}")

    # --- leases (several bot processes on one database; migration 0005) ------------------------

    async def claim_jobs(
        self,
        owner: str,
        states: Iterable[State],
        *,
        lease_seconds: float,
        limit: int | None = None,
        job_ids: Iterable[int] | None = None,
        free_owners: Iterable[str] = (),
        now: float | None = None,
    ) -> list[Job]:
        """Lease to ``owner`` the jobs in ``states`` (optionally only ``job_ids``, at most ``limit``)
        whose lease is free, expired, or held by one of ``free_owners`` (runners known to be dead),
        lowest id first. ``BEGIN IMMEDIATE`` makes the check-and-take atomic across processes."""
        now = time.time() if now is None else now
        state_values = [s.value for s in states]
        free = list(free_owners)
        sql = (
            f"SELECT id FROM jobs WHERE state IN ({','.join('?' * len(state_values))})"  # noqa: S608
            " AND (lease_expires_at IS NULL OR lease_expires_at < ?"
            + (f" OR lease_owner IN ({','.join('?' * len(free))})" if free else "")
            + ")"
        )
        params: list[Any] = [*state_values, now, *free]
        if job_ids is not None:
            wanted = list(job_ids)
            if not wanted:
                return []
            sql += f" AND id IN ({','.join('?' * len(wanted))})"
            params += wanted
        sql += " ORDER BY id" + (" LIMIT ?" if limit is not None else "")
        params += [limit] if limit is not None else []
        async with self._transaction():
            async with self.db.execute(sql, params) as cur:
                ids = [r[0] for r in await cur.fetchall()]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            await self.db.execute(
                f"UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id IN ({marks})",  # noqa: S608
                (owner, now + lease_seconds, *ids),
            )
            async with self.db.execute(f"SELECT * FROM jobs WHERE id IN ({marks}) ORDER BY id", ids) as cur:  # noqa: S608
                return [_job(r) for r in await cur.fetchall()]

    async def renew_leases(
        self, owner: str, job_ids: Iterable[int], *, lease_seconds: float, now: float | None = None
    ) -> set[int]:
        """Extend ``owner``'s leases on ``job_ids``; returns the ids it still holds (the rest were taken
        over or finished elsewhere)."""
        ids = list(job_ids)
        if not ids:
            return set()
        now = time.time() if now is None else now
        marks = ",".join("?" * len(ids))
        where = f"id IN ({marks}){_FENCE}"
        params = [*ids, owner, *_TERMINAL]
        async with self._transaction():
            await self.db.execute(
                f"UPDATE jobs SET lease_expires_at = ? WHERE {where}",  # noqa: S608
                (now + lease_seconds, *params),
            )
            async with self.db.execute(f"SELECT id FROM jobs WHERE {where}", params) as cur:  # noqa: S608
                return {r[0] for r in await cur.fetchall()}

    async def release_leases(self, owner: str, job_ids: Iterable[int] | None = None) -> int:
        """Give up ``owner``'s leases on unfinished jobs (all, or ``job_ids``) so another process may
        take them at once; returns how many."""
        sql = f"UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE 1 = 1{_FENCE}"  # noqa: S608
        params: list[Any] = [owner, *_TERMINAL]
        if job_ids is not None:
            ids = list(job_ids)
            if not ids:
                return 0
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params += ids
        async with self._transaction():
            cur = await self.db.execute(sql, params)
        return cur.rowcount

    async def lease_owners(self) -> list[str]:
        """Every runner that holds a live or expired lease on an unfinished job."""
        unfinished = [s.value for s in State if s not in TERMINAL]
        async with self.db.execute(
            f"SELECT DISTINCT lease_owner FROM jobs WHERE state IN ({','.join('?' * len(unfinished))})"  # noqa: S608
            " AND lease_expires_at IS NOT NULL AND lease_owner IS NOT NULL ORDER BY lease_owner",
            unfinished,
        ) as cur:
            return [r[0] for r in await cur.fetchall()]

    async def update_job(self, job_id: int, **fields: Any) -> None:
        """Set a few non-state fields (status message id, image path...)."""
        if not fields:
            return
        bad = set(fields) - set(JOB_COLUMNS) | ({"state"} & set(fields))
        if bad:
            raise ValueError(f"cannot update {sorted(bad)} this way")
        assignments = ", ".join(f"{c} = ?" for c in fields)
        await self._write(
            f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608 - names checked above
            (*fields.values(), time.time(), job_id),
        )

    async def jobs_in(self, states: Iterable[State]) -> list[Job]:
        states = list(states)
        marks = ",".join("?" * len(states))
        async with self.db.execute(
            f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id",  # noqa: S608
            [s.value for s in states],
        ) as cur:
            return [_job(r) for r in await cur.fetchall()]

    async def unfinished_jobs(self) -> list[Job]:
        return await self.jobs_in([s for s in State if s not in TERMINAL])

    async def active_jobs(self) -> list[Job]:
        return await self.jobs_in(ACTIVE)

    async def recent_jobs(self, user_id: str, *, limit: int = 10, offset: int = 0) -> list[Job]:
        async with self.db.execute(
            "SELECT * FROM jobs WHERE user_id = ? ORDER BY id DESC LIMIT ? OFFSET ?", (user_id, limit, offset)
        ) as cur:
            return [_job(r) for r in await cur.fetchall()]

    async def count_jobs(self, user_id: str) -> int:
        async with self.db.execute("SELECT COUNT(*) FROM jobs WHERE user_id = ?", (user_id,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def guild_jobs(self, guild_id: str, *, limit: int = 10, offset: int = 0) -> list[Job]:
        """A server's jobs, newest first (the admin view of /jobs)."""
        async with self.db.execute(
            "SELECT * FROM jobs WHERE guild_id = ? ORDER BY id DESC LIMIT ? OFFSET ?", (guild_id, limit, offset)
        ) as cur:
            return [_job(r) for r in await cur.fetchall()]

    async def count_guild_jobs(self, guild_id: str) -> int:
        async with self.db.execute("SELECT COUNT(*) FROM jobs WHERE guild_id = ?", (guild_id,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def mark_result_deleted(self, job_id: int, *, now: float | None = None) -> bool:
        """Record that the posted video was removed; False if it already was."""
        now = time.time() if now is None else now
        async with self._transaction():
            cur = await self.db.execute(
                "UPDATE jobs SET result_deleted_at = ?, updated_at = ? WHERE id = ? AND result_deleted_at IS NULL",
                (now, now, job_id),
            )
        return cur.rowcount > 0

    async def recent_durations(self, provider: str, model: str, *, limit: int = 50) -> list[float]:
        """Submit-to-finish seconds of the last ``limit`` successful jobs of ``provider`` and ``model``,
        newest first: what the poll planner learns a model's completion times from."""
        async with self.db.execute(
            "SELECT finished_at - submitted_at FROM jobs WHERE provider = ? AND model = ? AND state = ?"
            " AND submitted_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY id DESC LIMIT ?",
            (provider, model, State.SUCCEEDED.value, limit),
        ) as cur:
            return [float(r[0]) for r in await cur.fetchall() if r[0] and r[0] > 0]

    # --- credits ----------------------------------------------------------------------------

    async def balance(self, guild_id: str, user_id: str, allowance: int, now: float | None = None) -> Balance:
        return await self._balance(guild_id, user_id, allowance, time.time() if now is None else now)

    async def _balance(self, guild_id: str, user_id: str, allowance: int, now: float) -> Balance:
        day = utc_day(now)
        async with self.db.execute(
            "SELECT"
            " COALESCE(SUM(CASE WHEN pool = ? AND day = ? AND kind = 'reserve' THEN amount END), 0)"
            " - COALESCE(SUM(CASE WHEN pool = ? AND day = ? AND kind IN ('refund', 'grant') THEN amount END), 0),"
            " COALESCE(SUM(CASE WHEN pool = ? AND kind IN ('grant', 'refund') THEN amount END), 0)"
            " - COALESCE(SUM(CASE WHEN pool = ? AND kind = 'reserve' THEN amount END), 0)"
            " FROM ledger WHERE guild_id = ? AND user_id = ?",
            (DAILY, day, DAILY, day, EXTRA, EXTRA, guild_id, user_id),
        ) as cur:
            row = await cur.fetchone()
        daily_used, extra = (row[0], row[1]) if row else (0, 0)
        return Balance(allowance=allowance, daily_used=daily_used, extra=extra, resets_at=next_reset(now), now=now)

    async def settle(self, job_id: int, kind: str, *, now: float | None = None) -> bool:
        """Capture or refund every reserve of ``job_id`` exactly once; False if already settled.

        A refund goes back to the pool *and day* it was taken from. The unique index on
        (job_id, kind, pool) and the "not yet settled" check in one transaction make this idempotent.
        """
        async with self._transaction():
            return await self._settle(job_id, kind, time.time() if now is None else now)

    async def _settle(self, job_id: int, kind: str, now: float) -> bool:
        """The body of ``settle``; the caller holds the transaction."""
        if kind not in ("capture", "refund"):
            raise ValueError(kind)
        async with self.db.execute(
            "SELECT guild_id, user_id, pool, amount, day FROM ledger r WHERE job_id = ? AND kind = 'reserve'"
            " AND NOT EXISTS (SELECT 1 FROM ledger s WHERE s.job_id = r.job_id AND s.pool = r.pool"
            " AND s.kind IN ('capture', 'refund'))",
            (job_id,),
        ) as cur:
            reserves = await cur.fetchall()
        for guild_id, user_id, pool, amount, day in reserves:
            await self.db.execute(
                "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, job_id, day, created_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (guild_id, user_id, kind, pool, amount, job_id, day, now),
            )
        return bool(reserves)

    async def grant(
        self, guild_id: str, user_id: str, amount: int, *, actor_id: str, note: str = "", now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        await self._write(
            "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, day, actor_id, note, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (guild_id, user_id, "grant", EXTRA, amount, utc_day(now), actor_id, note, now),
        )

    async def set_extra(
        self, guild_id: str, user_id: str, amount: int, *, actor_id: str, note: str = "", now: float | None = None
    ) -> int:
        """Make the user's extra balance exactly ``amount`` with one grant row of the difference
        (negative to take some away); returns that difference. The row is written even when it is 0,
        so every admin action shows in the ledger."""
        now = time.time() if now is None else now
        async with self._transaction():
            current = (await self._balance(guild_id, user_id, 0, now)).extra
            difference = amount - current
            await self.db.execute(
                "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, day, actor_id, note, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (guild_id, user_id, "grant", EXTRA, difference, utc_day(now), actor_id, note or "set extra", now),
            )
        return difference

    async def reset_day(
        self, guild_id: str, user_id: str, *, actor_id: str, note: str = "", now: float | None = None
    ) -> int:
        """Give back today's spent daily credits with one daily-pool grant row for today; returns the amount.

        Credits still reserved by unfinished jobs are left out: such a job is later either captured
        (the credits stay spent) or refunded (they come back by themselves), so the day never ends up
        above its allowance.
        """
        now = time.time() if now is None else now
        day = utc_day(now)
        async with self._transaction():
            used = (await self._balance(guild_id, user_id, 0, now)).daily_used
            async with self.db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger r WHERE guild_id = ? AND user_id = ? AND pool = ?"
                " AND day = ? AND kind = 'reserve' AND NOT EXISTS (SELECT 1 FROM ledger s"
                " WHERE s.job_id = r.job_id AND s.pool = r.pool AND s.kind IN ('capture', 'refund'))",
                (guild_id, user_id, DAILY, day),
            ) as cur:
                row = await cur.fetchone()
            amount = max(0, used - (row[0] if row else 0))
            await self.db.execute(
                "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, day, actor_id, note, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (guild_id, user_id, "grant", DAILY, amount, day, actor_id, note or "reset day", now),
            )
        return amount

    async def user_activity(self, guild_id: str, user_id: str) -> tuple[int, float | None]:
        """(unfinished jobs, creation time of the latest job) of a user in one server, for the
        per-user limit and the cooldown."""
        unfinished = [s.value for s in State if s not in TERMINAL]
        async with self.db.execute(
            f"SELECT COALESCE(SUM(state IN ({','.join('?' * len(unfinished))})), 0), MAX(created_at)"  # noqa: S608
            " FROM jobs WHERE guild_id = ? AND user_id = ?",
            (*unfinished, guild_id, user_id),
        ) as cur:
            row = await cur.fetchone()
        return (int(row[0]), row[1]) if row else (0, None)

    async def ledger_entries(self, guild_id: str, user_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT kind, pool, amount, job_id, day, actor_id, note, created_at FROM ledger"
            " WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, user_id, limit),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def settlements(self, job_id: int) -> dict[str, int]:
        """kind -> total amount for one job (tests and /jobs use it)."""
        async with self.db.execute(
            "SELECT kind, SUM(amount) FROM ledger WHERE job_id = ? GROUP BY kind", (job_id,)
        ) as cur:
            return {r[0]: r[1] for r in await cur.fetchall()}

    # --- service: health and provider callbacks (migration 0003) -------------------------------

    async def ping(self) -> None:
        """Raise unless the database answers a query and (SQLite) its file is still where it was opened:
        a deleted or unmounted file keeps answering from the open handle, but nothing written survives."""
        async with self.db.execute("SELECT MAX(version) FROM schema_version") as cur:
            await cur.fetchone()
        async with self.db.execute("PRAGMA database_list") as cur:
            files = [row[2] for row in await cur.fetchall() if row[1] == "main" and row[2]]
        for file in files:
            if not await asyncio.to_thread(os.path.exists, file):
                raise FileNotFoundError(f"database file {file} is gone")

    async def add_callback_secret(self, job_id: int, digest: str, *, now: float | None = None) -> None:
        """Store the digest of a job's callback secret (one per submit attempt)."""
        await self._write(
            "INSERT INTO callback_secrets (digest, job_id, created_at) VALUES (?,?,?)",
            (digest, job_id, time.time() if now is None else now),
        )

    async def callback_secret(self, digest: str) -> tuple[int, float | None] | None:
        """(job id, used_at) for a secret's digest, or None when unknown."""
        async with self.db.execute("SELECT job_id, used_at FROM callback_secrets WHERE digest = ?", (digest,)) as cur:
            row = await cur.fetchone()
        return (int(row[0]), row[1]) if row else None

    async def use_callback_secret(self, digest: str, *, now: float | None = None) -> bool:
        """Mark a secret as spent on a finished-task callback; False if it already was (a replay)."""
        async with self._transaction():
            cur = await self.db.execute(
                "UPDATE callback_secrets SET used_at = ? WHERE digest = ? AND used_at IS NULL",
                (time.time() if now is None else now, digest),
            )
        return cur.rowcount > 0
