"""Every SQL statement on jobs and the credit ledger, written once for both backends (bot/storage/sqlite,
bot/storage/postgres). The rest of the code speaks in Job / Balance objects through bot/jobs/store.py.

Concurrency: a read-check-write runs in ``driver.transaction()``. On SQLite that is ``BEGIN IMMEDIATE``
(one writer at a time, across processes), on PostgreSQL a transaction on a pooled connection that takes
explicit locks:

* a reserve (``create_job``), ``set_extra`` and ``reset_day`` lock (guild, user): two processes cannot
  both pass the balance check or the per-user admission; a reserve under a daily cap locks the cap too;
* a settle first locks the job's row, so a capture and a refund of the same job cannot both happen; the
  unique index ``ledger_once_per_job`` backs this with ON CONFLICT DO NOTHING;
* a claim passes over rows another claim holds (``SKIP LOCKED``): two processes never get the same job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from bot.credits.ledger import DAILY, EXTRA, Balance, CreditPolicy, SpendingCaps, next_reset, utc_day
from bot.errors import LeaseLost
from bot.jobs.model import ACTIVE, TERMINAL, Job, State
from bot.storage.driver import SPEND_LOCK, USER_LOCK, Conn, Driver, Row
from bot.storage.job_rows import JOB_COLUMNS, job_from_row, job_values, new_job_columns
from bot.storage.outage import raises_database_unavailable

_UNFINISHED = [s.value for s in State if s not in TERMINAL]
_TERMINAL = [s.value for s in TERMINAL]
_INSERT_LEDGER = (
    "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, job_id, day, created_at) VALUES (?,?,?,?,?,?,?,?)"
)
_INSERT_GRANT = (
    "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, day, actor_id, note, created_at)"
    " VALUES (?,?,'grant',?,?,?,?,?,?)"
)
_OPEN_RESERVE = (
    "kind = 'reserve' AND NOT EXISTS (SELECT 1 FROM ledger s WHERE s.job_id = r.job_id AND s.pool = r.pool"
    " AND s.kind IN ('capture', 'refund'))"
)


def _job(row: Row) -> Job:
    return job_from_row(dict(row))


@raises_database_unavailable
class SqlRepository:
    """Jobs and the credit ledger over one backend's driver."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    async def close(self) -> None:
        await self.driver.close()

    def _fence(self) -> tuple[str, list[Any]]:
        """A fenced write (see save_job) lands only while its runner holds the lease of an unfinished job:
        the condition after the owner's placeholder, and its parameters after the owner."""
        unfinished, params = self.driver.not_among(_TERMINAL, "text")
        return f" AND lease_owner = ? AND state {unfinished}", params

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
        transaction as the balance check, so two requests cannot overspend.

        ``admission(unfinished_jobs, last_job_at)`` (the server's per-user limits) is called inside
        the same transaction, so two requests at once cannot both slip under the limit; it raises to refuse.
        ``caps`` (the operator's daily caps per server and in total) are checked there too, under their locks.
        """
        now = time.time() if now is None else now
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
        async with self.driver.transaction() as conn:
            await conn.lock(USER_LOCK, f"{guild_id or ''}:{user_id}")
            if admission is not None:
                admission(*await self._user_activity(conn, guild_id or "", user_id))
            parts: list[tuple[str, int]] = []
            if cost > 0:
                assert policy is not None  # noqa: S101 - programming error, not input
                daily = policy.daily_credits if allowance is None else allowance
                balance = await self._balance(conn, guild_id or "", user_id, daily, now)
                parts = balance.split(cost)  # raises InsufficientCredits: the transaction rolls back
                if caps is not None:
                    await self._check_caps(conn, caps, guild_id or "", cost, now)
            row = await conn.fetchrow(
                f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) RETURNING *",  # noqa: S608 - names checked
                *columns.values(),
            )
            assert row is not None  # noqa: S101
            day = utc_day(now)
            for pool, amount in parts:
                await conn.execute(
                    _INSERT_LEDGER, guild_id or "", user_id, "reserve", pool, amount, row["id"], day, now
                )
        return _job(row)

    async def _check_caps(self, conn: Conn, caps: SpendingCaps, guild_id: str, cost: int, now: float) -> None:
        """BudgetExhausted when ``cost`` would pass a daily cap. Takes the cap's lock first, so the sum
        read here cannot change before this transaction commits."""
        server = total = 0
        if caps.server_daily is not None:
            await conn.lock(SPEND_LOCK, f"g:{guild_id}")
            server = await self._spent_on_day(conn, guild_id, now)
        if caps.global_daily is not None:
            await conn.lock(SPEND_LOCK, "*")
            total = await self._spent_on_day(conn, None, now)
        caps.check(cost, server_spent=server, global_spent=total, now=now)

    async def spent_on_day(self, guild_id: str | None, now: float) -> int:
        """Credits spent on ``now``'s UTC day in one server (or, with None, in all of them): the day's
        reserves minus their refunds (a refund carries its reserve's day). Grants do not count."""
        async with self.driver.read() as conn:
            return await self._spent_on_day(conn, guild_id, now)

    @staticmethod
    async def _spent_on_day(conn: Conn, guild_id: str | None, now: float) -> int:
        sql = (
            "SELECT COALESCE(SUM(CASE WHEN kind = 'reserve' THEN amount ELSE -amount END), 0) FROM ledger"
            " WHERE day = ? AND kind IN ('reserve', 'refund')"
        )
        params: list[Any] = [utc_day(now)]
        if guild_id is not None:
            sql += " AND guild_id = ?"
            params.append(guild_id)
        row = await conn.fetchrow(sql, *params)
        return int(row[0]) if row else 0

    async def get_job(self, job_id: int) -> Job | None:
        async with self.driver.read() as conn:
            row = await conn.fetchrow("SELECT * FROM jobs WHERE id = ?", job_id)
        return _job(row) if row else None

    async def save_job(self, job: Job, *, owner: str | None = None) -> None:
        """Write every stored field of ``job`` (its state change included) in one statement.

        With ``owner`` the write is fenced: it lands only while that runner holds the job's lease and
        the job is unfinished, else LeaseLost (another process took the job over, or it was cancelled)."""
        async with self.driver.write() as conn:
            await self._store(conn, job, owner, terminal=False)

    async def finish_job(self, job: Job, settle: str, *, owner: str | None = None) -> bool:
        """Store a terminal ``job`` and capture or refund its credits in one transaction, so no crash
        can leave a finished job with its credits still reserved. Returns whether anything was settled.
        ``owner`` fences it as in ``save_job``: a LeaseLost rolls back, nothing is settled."""
        async with self.driver.transaction() as conn:
            await self._store(conn, job, owner, terminal=True)  # also locks the job's row
            return await self._settle(conn, job.id, settle, job.finished_at or time.time())

    async def cancel_job(self, job: Job, *, from_states: Iterable[State], owner: str, now: float | None = None) -> bool:
        """Store the cancelled ``job`` and refund its credits, in one statement fenced by the state and
        the lease: only while the row is still in ``from_states`` and no other live runner holds it
        (``owner`` may). False, with nothing written, when the job moved on (it may be posting: a
        refund then would be a free video) or another process works it."""
        now = time.time() if now is None else now
        states, state_params = self.driver.among([s.value for s in from_states], "text")
        assignments = ", ".join(f"{c} = ?" for c in JOB_COLUMNS)
        sql = (
            f"UPDATE jobs SET {assignments}, lease_expires_at = NULL WHERE id = ? AND state {states}"  # noqa: S608 - names are ours
            " AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at IS NULL OR lease_expires_at < ?)"
        )
        async with self.driver.transaction() as conn:
            if await conn.execute(sql, *job_values(job), job.id, *state_params, owner, now) == 0:
                return False
            await self._settle(conn, job.id, "refund", job.finished_at or now)
        return True

    async def _store(self, conn: Conn, job: Job, owner: str | None, *, terminal: bool) -> None:
        """The UPDATE of save_job / finish_job. A finished job's lease ends (its owner stays, as a record
        of who finished it)."""
        assignments = ", ".join(f"{c} = ?" for c in JOB_COLUMNS)
        sql = f"UPDATE jobs SET {assignments}{', lease_expires_at = NULL' if terminal else ''} WHERE id = ?"  # noqa: S608
        params: list[Any] = [*job_values(job), job.id]
        if owner is not None:
            fence, fence_params = self._fence()
            sql += fence
            params += [owner, *fence_params]
        if await conn.execute(sql, *params) == 0 and owner is not None:
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
        lowest id first, in one statement: two processes claiming at once never get the same job."""
        now = time.time() if now is None else now
        wanted = None if job_ids is None else list(job_ids)
        if wanted is not None and not wanted:
            return []
        in_states, params = self.driver.among([s.value for s in states], "text")
        sql = f"SELECT id FROM jobs WHERE state {in_states} AND (lease_expires_at IS NULL OR lease_expires_at < ?"  # noqa: S608
        params.append(now)
        free = list(free_owners)
        if free:
            in_free, free_params = self.driver.among(free, "text")
            sql += f" OR lease_owner {in_free}"
            params += free_params
        sql += ")"
        if wanted is not None:
            in_wanted, wanted_params = self.driver.among(wanted, "bigint")
            sql += f" AND id {in_wanted}"
            params += wanted_params
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        async with self.driver.write() as conn:
            rows = await conn.fetch(
                "UPDATE jobs SET lease_owner = ?, lease_expires_at = ?"  # noqa: S608 - fragments are ours
                f" WHERE id IN ({sql}{self.driver.skip_locked}) RETURNING *",
                owner,
                now + lease_seconds,
                *params,
            )
        return sorted((_job(r) for r in rows), key=lambda job: job.id)

    async def renew_leases(
        self, owner: str, job_ids: Iterable[int], *, lease_seconds: float, now: float | None = None
    ) -> set[int]:
        """Extend ``owner``'s leases on ``job_ids``; returns the ids it still holds (the rest were taken
        over or finished elsewhere)."""
        ids = list(job_ids)
        if not ids:
            return set()
        now = time.time() if now is None else now
        in_ids, id_params = self.driver.among(ids, "bigint")
        fence, fence_params = self._fence()
        async with self.driver.write() as conn:
            rows = await conn.fetch(
                f"UPDATE jobs SET lease_expires_at = ? WHERE id {in_ids}{fence} RETURNING id",  # noqa: S608
                now + lease_seconds,
                *id_params,
                owner,
                *fence_params,
            )
        return {int(r[0]) for r in rows}

    async def release_leases(self, owner: str, job_ids: Iterable[int] | None = None) -> int:
        """Give up ``owner``'s leases on unfinished jobs (all, or ``job_ids``) so another process may
        take them at once; returns how many."""
        fence, fence_params = self._fence()
        sql = f"UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE 1 = 1{fence}"  # noqa: S608
        params: list[Any] = [owner, *fence_params]
        if job_ids is not None:
            ids = list(job_ids)
            if not ids:
                return 0
            in_ids, id_params = self.driver.among(ids, "bigint")
            sql += f" AND id {in_ids}"
            params += id_params
        async with self.driver.write() as conn:
            return await conn.execute(sql, *params)

    async def lease_owners(self) -> list[str]:
        """Every runner that holds a live or expired lease on an unfinished job."""
        unfinished, params = self.driver.among(_UNFINISHED, "text")
        async with self.driver.read() as conn:
            rows = await conn.fetch(
                f"SELECT DISTINCT lease_owner FROM jobs WHERE state {unfinished}"  # noqa: S608
                " AND lease_expires_at IS NOT NULL AND lease_owner IS NOT NULL ORDER BY lease_owner",
                *params,
            )
        return [r[0] for r in rows]

    async def update_job(self, job_id: int, **fields: Any) -> None:
        """Set a few non-state fields (status message id, image path...)."""
        if not fields:
            return
        bad = set(fields) - set(JOB_COLUMNS) | ({"state"} & set(fields))
        if bad:
            raise ValueError(f"cannot update {sorted(bad)} this way")
        assignments = ", ".join(f"{c} = ?" for c in fields)
        async with self.driver.write() as conn:
            await conn.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608 - names checked above
                *fields.values(),
                time.time(),
                job_id,
            )

    async def jobs_in(self, states: Iterable[State]) -> list[Job]:
        in_states, params = self.driver.among([s.value for s in states], "text")
        async with self.driver.read() as conn:
            rows = await conn.fetch(f"SELECT * FROM jobs WHERE state {in_states} ORDER BY id", *params)  # noqa: S608
        return [_job(r) for r in rows]

    async def unfinished_jobs(self) -> list[Job]:
        return await self.jobs_in([s for s in State if s not in TERMINAL])

    async def active_jobs(self) -> list[Job]:
        return await self.jobs_in(ACTIVE)

    async def recent_jobs(self, user_id: str, *, limit: int = 10, offset: int = 0) -> list[Job]:
        return await self._jobs_of("user_id", user_id, limit, offset)

    async def count_jobs(self, user_id: str) -> int:
        return await self._count_of("user_id", user_id)

    async def guild_jobs(self, guild_id: str, *, limit: int = 10, offset: int = 0) -> list[Job]:
        """A server's jobs, newest first (the admin view of /jobs)."""
        return await self._jobs_of("guild_id", guild_id, limit, offset)

    async def count_guild_jobs(self, guild_id: str) -> int:
        return await self._count_of("guild_id", guild_id)

    async def _jobs_of(self, column: str, value: str, limit: int, offset: int) -> list[Job]:
        async with self.driver.read() as conn:
            rows = await conn.fetch(
                f"SELECT * FROM jobs WHERE {column} = ? ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608 - ours
                value,
                limit,
                offset,
            )
        return [_job(r) for r in rows]

    async def _count_of(self, column: str, value: str) -> int:
        async with self.driver.read() as conn:
            row = await conn.fetchrow(f"SELECT COUNT(*) FROM jobs WHERE {column} = ?", value)  # noqa: S608 - ours
        return int(row[0]) if row else 0

    async def mark_result_deleted(self, job_id: int, *, now: float | None = None) -> bool:
        """Record that the posted video was removed; False if it already was."""
        now = time.time() if now is None else now
        async with self.driver.write() as conn:
            changed = await conn.execute(
                "UPDATE jobs SET result_deleted_at = ?, updated_at = ? WHERE id = ? AND result_deleted_at IS NULL",
                now,
                now,
                job_id,
            )
        return changed > 0

    async def recent_durations(self, provider: str, model: str, *, limit: int = 50) -> list[float]:
        """Submit-to-finish seconds of the last ``limit`` successful jobs of ``provider`` and ``model``,
        newest first: what the poll planner learns a model's completion times from."""
        async with self.driver.read() as conn:
            rows = await conn.fetch(
                "SELECT finished_at - submitted_at FROM jobs WHERE provider = ? AND model = ? AND state = ?"
                " AND submitted_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY id DESC LIMIT ?",
                provider,
                model,
                State.SUCCEEDED.value,
                limit,
            )
        return [float(r[0]) for r in rows if r[0] and r[0] > 0]

    # --- credits ----------------------------------------------------------------------------

    async def balance(self, guild_id: str, user_id: str, allowance: int, now: float | None = None) -> Balance:
        async with self.driver.read() as conn:
            return await self._balance(conn, guild_id, user_id, allowance, time.time() if now is None else now)

    @staticmethod
    async def _balance(conn: Conn, guild_id: str, user_id: str, allowance: int, now: float) -> Balance:
        day = utc_day(now)
        row = await conn.fetchrow(
            "SELECT"
            " COALESCE(SUM(amount) FILTER (WHERE pool = ? AND day = ? AND kind = 'reserve'), 0)"
            " - COALESCE(SUM(amount) FILTER (WHERE pool = ? AND day = ? AND kind IN ('refund', 'grant')), 0),"
            " COALESCE(SUM(amount) FILTER (WHERE pool = ? AND kind IN ('grant', 'refund')), 0)"
            " - COALESCE(SUM(amount) FILTER (WHERE pool = ? AND kind = 'reserve'), 0)"
            " FROM ledger WHERE guild_id = ? AND user_id = ?",
            DAILY,
            day,
            DAILY,
            day,
            EXTRA,
            EXTRA,
            guild_id,
            user_id,
        )
        daily_used, extra = (int(row[0]), int(row[1])) if row else (0, 0)
        return Balance(allowance=allowance, daily_used=daily_used, extra=extra, resets_at=next_reset(now), now=now)

    async def settle(self, job_id: int, kind: str, *, now: float | None = None) -> bool:
        """Capture or refund every reserve of ``job_id`` exactly once; False if already settled.

        A refund goes back to the pool *and day* it was taken from. The unique index on
        (job_id, kind, pool) and the "not yet settled" check in one transaction make this idempotent.
        """
        async with self.driver.transaction() as conn:
            return await self._settle(conn, job_id, kind, time.time() if now is None else now)

    async def _settle(self, conn: Conn, job_id: int, kind: str, now: float) -> bool:
        """The body of ``settle``; the caller holds the transaction."""
        if kind not in ("capture", "refund"):
            raise ValueError(kind)
        # The job's row lock orders concurrent settles: the second one sees the first one's rows.
        await conn.fetch(f"SELECT 1 FROM jobs WHERE id = ?{self.driver.for_update}", job_id)  # noqa: S608
        reserves = await conn.fetch(
            f"SELECT guild_id, user_id, pool, amount, day FROM ledger r WHERE job_id = ? AND {_OPEN_RESERVE}",  # noqa: S608
            job_id,
        )
        written = 0
        for guild_id, user_id, pool, amount, day in reserves:
            written += await conn.execute(
                f"{_INSERT_LEDGER} ON CONFLICT (job_id, kind, pool) WHERE job_id IS NOT NULL DO NOTHING",
                guild_id,
                user_id,
                kind,
                pool,
                amount,
                job_id,
                day,
                now,
            )
        return written > 0

    async def grant(
        self, guild_id: str, user_id: str, amount: int, *, actor_id: str, note: str = "", now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        async with self.driver.write() as conn:
            await conn.execute(_INSERT_GRANT, guild_id, user_id, EXTRA, amount, utc_day(now), actor_id, note, now)

    async def set_extra(
        self, guild_id: str, user_id: str, amount: int, *, actor_id: str, note: str = "", now: float | None = None
    ) -> int:
        """Make the user's extra balance exactly ``amount`` with one grant row of the difference
        (negative to take some away); returns that difference. The row is written even when it is 0,
        so every admin action shows in the ledger."""
        now = time.time() if now is None else now
        async with self.driver.transaction() as conn:
            await conn.lock(USER_LOCK, f"{guild_id}:{user_id}")
            difference = amount - (await self._balance(conn, guild_id, user_id, 0, now)).extra
            await conn.execute(
                _INSERT_GRANT, guild_id, user_id, EXTRA, difference, utc_day(now), actor_id, note or "set extra", now
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
        async with self.driver.transaction() as conn:
            await conn.lock(USER_LOCK, f"{guild_id}:{user_id}")
            used = (await self._balance(conn, guild_id, user_id, 0, now)).daily_used
            row = await conn.fetchrow(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger r WHERE guild_id = ? AND user_id = ? AND pool = ?"  # noqa: S608
                f" AND day = ? AND {_OPEN_RESERVE}",
                guild_id,
                user_id,
                DAILY,
                day,
            )
            amount = max(0, used - (int(row[0]) if row else 0))
            await conn.execute(_INSERT_GRANT, guild_id, user_id, DAILY, amount, day, actor_id, note or "reset day", now)
        return amount

    async def user_activity(self, guild_id: str, user_id: str) -> tuple[int, float | None]:
        """(unfinished jobs, creation time of the latest job) of a user in one server, for the
        per-user limit and the cooldown."""
        async with self.driver.read() as conn:
            return await self._user_activity(conn, guild_id, user_id)

    async def _user_activity(self, conn: Conn, guild_id: str, user_id: str) -> tuple[int, float | None]:
        unfinished, params = self.driver.among(_UNFINISHED, "text")
        row = await conn.fetchrow(
            f"SELECT COUNT(*) FILTER (WHERE state {unfinished}), MAX(created_at)"  # noqa: S608
            " FROM jobs WHERE guild_id = ? AND user_id = ?",
            *params,
            guild_id,
            user_id,
        )
        return (int(row[0]), row[1]) if row else (0, None)

    async def ledger_entries(self, guild_id: str, user_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
        async with self.driver.read() as conn:
            rows = await conn.fetch(
                "SELECT kind, pool, amount, job_id, day, actor_id, note, created_at FROM ledger"
                " WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?",
                guild_id,
                user_id,
                limit,
            )
        return [dict(r) for r in rows]

    async def settlements(self, job_id: int) -> dict[str, int]:
        """kind -> total amount for one job (tests and /jobs use it)."""
        async with self.driver.read() as conn:
            rows = await conn.fetch("SELECT kind, SUM(amount) FROM ledger WHERE job_id = ? GROUP BY kind", job_id)
        return {r[0]: int(r[1]) for r in rows}

    # --- service: health and provider callbacks (migration 0003) -------------------------------

    async def ping(self) -> None:
        """Raise unless the database answers (and, for SQLite, its file is still where it was opened)."""
        await self.driver.ping()

    async def add_callback_secret(self, job_id: int, digest: str, *, now: float | None = None) -> None:
        """Store the digest of a job's callback secret (one per submit attempt)."""
        async with self.driver.write() as conn:
            await conn.execute(
                "INSERT INTO callback_secrets (digest, job_id, created_at) VALUES (?,?,?)",
                digest,
                job_id,
                time.time() if now is None else now,
            )

    async def callback_secret(self, digest: str) -> tuple[int, float | None] | None:
        """(job id, used_at) for a secret's digest, or None when unknown."""
        async with self.driver.read() as conn:
            row = await conn.fetchrow("SELECT job_id, used_at FROM callback_secrets WHERE digest = ?", digest)
        return (int(row[0]), row[1]) if row else None

    async def use_callback_secret(self, digest: str, *, now: float | None = None) -> bool:
        """Mark a secret as spent on a finished-task callback; False if it already was (a replay)."""
        async with self.driver.write() as conn:
            changed = await conn.execute(
                "UPDATE callback_secrets SET used_at = ? WHERE digest = ? AND used_at IS NULL",
                time.time() if now is None else now,
                digest,
            )
        return changed > 0
