"""Every SQL statement of the PostgreSQL backend: the same public methods as ``bot.storage.repository``.

Concurrency differs from SQLite: there is no single writer. Each transaction runs on its own pooled
connection, so the read-check-write steps take explicit locks instead:

* a reserve (``create_job``), ``set_extra`` and ``reset_day`` hold a transaction-scoped advisory lock on
  (guild, user): two processes cannot both pass the balance check or the per-user admission;
* a reserve under a daily spending cap also holds the server's lock (SERVER_DAILY_CREDITS) and the
  global one (GLOBAL_DAILY_CREDITS), always in the order user, server, global, so none deadlock;
* a settle first locks the job's row (``SELECT ... FOR UPDATE``), so a capture and a refund of the same
  job cannot both happen; the unique index ``ledger_once_per_job`` backs this with ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from bot.credits.ledger import DAILY, EXTRA, Balance, CreditPolicy, SpendingCaps, next_reset, utc_day
from bot.errors import LeaseLost
from bot.jobs.model import ACTIVE, TERMINAL, Job, State
from bot.storage.job_rows import JOB_COLUMNS, job_from_row, job_values, new_job_columns
from bot.storage.outage import postgres_outage, raises_database_unavailable

_UNFINISHED = [s.value for s in State if s not in TERMINAL]
_TERMINAL = [s.value for s in TERMINAL]

# Advisory lock namespaces (the two-int form keeps them apart from each other and from MIGRATION_LOCK).
USER_LOCK_SPACE, GUILD_TERMS_LOCK_SPACE, SPEND_LOCK_SPACE = 1, 2, 3
# Serialises every balance check-then-write of one user in one server, across connections and processes.
_USER_LOCK = f"SELECT pg_advisory_xact_lock({USER_LOCK_SPACE}, hashtext($1::text || ':' || $2::text))"
# Serialises the reserves under a daily cap: per server ('g:<id>'), or of every server ('*').
_SPEND_LOCK = f"SELECT pg_advisory_xact_lock({SPEND_LOCK_SPACE}, hashtext($1::text))"
_INSERT_SETTLEMENT = (
    "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, job_id, day, created_at)"
    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (job_id, kind, pool) WHERE job_id IS NOT NULL DO NOTHING"
)
_INSERT_GRANT = (
    "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, day, actor_id, note, created_at)"
    " VALUES ($1,$2,'grant',$3,$4,$5,$6,$7,$8)"
)


def _job(row: asyncpg.Record) -> Job:
    return job_from_row(dict(row.items()))


def _changed(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 1`` or ``INSERT 0 1``."""
    return int(status.rsplit(" ", 1)[-1])


@raises_database_unavailable(postgres_outage)
class PostgresRepository:
    """Jobs and the credit ledger on an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def close(self) -> None:
        await self.pool.close()

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
        """Store a new queued job and reserve its credits in one transaction, under the (guild, user)
        advisory lock, so neither the balance check nor ``admission`` can be passed twice at once.
        ``caps``: the operator's daily caps, checked under the server's and the global advisory lock."""
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
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_USER_LOCK, guild_id or "", user_id)
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
                f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({marks}) RETURNING *",  # noqa: S608 - names checked
                *columns.values(),
            )
            assert row is not None  # noqa: S101
            day = utc_day(now)
            for pool, amount in parts:
                await conn.execute(
                    "INSERT INTO ledger (guild_id, user_id, kind, pool, amount, job_id, day, created_at)"
                    " VALUES ($1,$2,'reserve',$3,$4,$5,$6,$7)",
                    guild_id or "",
                    user_id,
                    pool,
                    amount,
                    row["id"],
                    day,
                    now,
                )
        return _job(row)

    @classmethod
    async def _check_caps(
        cls, conn: asyncpg.Connection, caps: SpendingCaps, guild_id: str, cost: int, now: float
    ) -> None:
        """BudgetExhausted when ``cost`` would pass a daily cap. Takes the cap's lock first, so the
        sum read here cannot change before this transaction commits."""
        server = total = 0
        if caps.server_daily is not None:
            await conn.execute(_SPEND_LOCK, f"g:{guild_id}")
            server = await cls._spent_on_day(conn, guild_id, now)
        if caps.global_daily is not None:
            await conn.execute(_SPEND_LOCK, "*")
            total = await cls._spent_on_day(conn, None, now)
        caps.check(cost, server_spent=server, global_spent=total, now=now)

    async def spent_on_day(self, guild_id: str | None, now: float) -> int:
        """Credits spent on ``now``'s UTC day in one server (or, with None, in all of them): the day's
        reserves minus their refunds (a refund carries its reserve's day). Grants do not count."""
        async with self.pool.acquire() as conn:
            return await self._spent_on_day(conn, guild_id, now)

    @staticmethod
    async def _spent_on_day(conn: asyncpg.Connection, guild_id: str | None, now: float) -> int:
        value = await conn.fetchval(
            "SELECT COALESCE(SUM(CASE WHEN kind = 'reserve' THEN amount ELSE -amount END), 0) FROM ledger"
            " WHERE day = $1 AND kind IN ('reserve', 'refund') AND ($2::text IS NULL OR guild_id = $2)",
            utc_day(now),
            guild_id,
        )
        return int(value or 0)

    async def get_job(self, job_id: int) -> Job | None:
        row = await self.pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return _job(row) if row else None

    async def save_job(self, job: Job, *, owner: str | None = None) -> None:
        """Write every stored field of ``job`` (its state change included) in one statement.

        With ``owner`` the write is fenced: it lands only while that runner holds the job's lease and
        the job is unfinished, else LeaseLost (another process took the job over, or it was cancelled)."""
        async with self.pool.acquire() as conn:
            await self._store(conn, job, owner, terminal=False)

    async def finish_job(self, job: Job, settle: str, *, owner: str | None = None) -> bool:
        """Store a terminal ``job`` and capture or refund its credits in one transaction.
        ``owner`` fences it as in ``save_job``: a LeaseLost rolls back, nothing is settled."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._store(conn, job, owner, terminal=True)  # also locks the job's row
            return await self._settle(conn, job.id, settle, job.finished_at or time.time())

    async def cancel_job(self, job: Job, *, from_states: Iterable[State], owner: str, now: float | None = None) -> bool:
        """Store the cancelled ``job`` and refund its credits, in one statement fenced by the state and
        the lease: only while the row is still in ``from_states`` and no other live runner holds it
        (``owner`` may). False, with nothing written, when the job moved on (it may be posting: a
        refund then would be a free video) or another process works it."""
        now = time.time() if now is None else now
        n = len(JOB_COLUMNS)
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(JOB_COLUMNS, start=1))
        sql = (
            f"UPDATE jobs SET {assignments}, lease_expires_at = NULL WHERE id = ${n + 1}"  # noqa: S608 - names are ours
            f" AND state = ANY(${n + 2}::text[]) AND (lease_owner IS NULL OR lease_owner = ${n + 3}"
            f" OR lease_expires_at IS NULL OR lease_expires_at < ${n + 4})"
        )
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(sql, *job_values(job), job.id, [s.value for s in from_states], owner, now)
            if _changed(status) == 0:
                return False
            await self._settle(conn, job.id, "refund", job.finished_at or now)
        return True

    @staticmethod
    async def _store(conn: asyncpg.Connection, job: Job, owner: str | None, *, terminal: bool) -> None:
        """The UPDATE of save_job / finish_job. A finished job's lease ends (its owner stays, as a record)."""
        n = len(JOB_COLUMNS)
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(JOB_COLUMNS, start=1))
        sql = f"UPDATE jobs SET {assignments}{', lease_expires_at = NULL' if terminal else ''} WHERE id = ${n + 1}"  # noqa: S608
        params: list[Any] = [*job_values(job), job.id]
        if owner is not None:
            sql += f" AND lease_owner = ${n + 2} AND state <> ALL(${n + 3}::text[])"
            params += [owner, _TERMINAL]
        status = await conn.execute(sql, *params)
        if owner is not None and _changed(status) == 0:
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
        lowest id first. ``FOR UPDATE SKIP LOCKED``: two processes claiming at once never get the same job."""
        now = time.time() if now is None else now
        wanted = None if job_ids is None else list(job_ids)
        if wanted is not None and not wanted:
            return []
        rows = await self.pool.fetch(
            "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2 WHERE id IN ("
            " SELECT id FROM jobs WHERE state = ANY($3::text[])"
            " AND (lease_expires_at IS NULL OR lease_expires_at < $4 OR lease_owner = ANY($5::text[]))"
            " AND ($6::bigint[] IS NULL OR id = ANY($6::bigint[]))"
            " ORDER BY id LIMIT $7 FOR UPDATE SKIP LOCKED) RETURNING *",
            owner,
            now + lease_seconds,
            [s.value for s in states],
            now,
            list(free_owners),
            wanted,
            limit,
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
        rows = await self.pool.fetch(
            "UPDATE jobs SET lease_expires_at = $1 WHERE id = ANY($2::bigint[]) AND lease_owner = $3"
            " AND state <> ALL($4::text[]) RETURNING id",
            now + lease_seconds,
            ids,
            owner,
            _TERMINAL,
        )
        return {int(r[0]) for r in rows}

    async def release_leases(self, owner: str, job_ids: Iterable[int] | None = None) -> int:
        """Give up ``owner``'s leases on unfinished jobs (all, or ``job_ids``) so another process may
        take them at once; returns how many."""
        ids = None if job_ids is None else list(job_ids)
        if ids is not None and not ids:
            return 0
        status = await self.pool.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1"
            " AND state <> ALL($2::text[]) AND ($3::bigint[] IS NULL OR id = ANY($3::bigint[]))",
            owner,
            _TERMINAL,
            ids,
        )
        return _changed(status)

    async def lease_owners(self) -> list[str]:
        """Every runner that holds a live or expired lease on an unfinished job."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT lease_owner FROM jobs WHERE state = ANY($1::text[]) AND lease_expires_at IS NOT NULL"
            " AND lease_owner IS NOT NULL ORDER BY lease_owner",
            _UNFINISHED,
        )
        return [r[0] for r in rows]

    async def update_job(self, job_id: int, **fields: Any) -> None:
        """Set a few non-state fields (status message id, image path...)."""
        if not fields:
            return
        bad = set(fields) - set(JOB_COLUMNS) | ({"state"} & set(fields))
        if bad:
            raise ValueError(f"cannot update {sorted(bad)} this way")
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(fields, start=1))
        n = len(fields)
        await self.pool.execute(
            f"UPDATE jobs SET {assignments}, updated_at = ${n + 1} WHERE id = ${n + 2}",  # noqa: S608 - names checked
            *fields.values(),
            time.time(),
            job_id,
        )

    async def jobs_in(self, states: Iterable[State]) -> list[Job]:
        rows = await self.pool.fetch(
            "SELECT * FROM jobs WHERE state = ANY($1::text[]) ORDER BY id", [s.value for s in states]
        )
        return [_job(r) for r in rows]

    async def unfinished_jobs(self) -> list[Job]:
        return await self.jobs_in([s for s in State if s not in TERMINAL])

    async def active_jobs(self) -> list[Job]:
        return await self.jobs_in(ACTIVE)

    async def recent_jobs(self, user_id: str, *, limit: int = 10, offset: int = 0) -> list[Job]:
        rows = await self.pool.fetch(
            "SELECT * FROM jobs WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3", user_id, limit, offset
        )
        return [_job(r) for r in rows]

    async def count_jobs(self, user_id: str) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM jobs WHERE user_id = $1", user_id))

    async def guild_jobs(self, guild_id: str, *, limit: int = 10, offset: int = 0) -> list[Job]:
        """A server's jobs, newest first (the admin view of /jobs)."""
        rows = await self.pool.fetch(
            "SELECT * FROM jobs WHERE guild_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3", guild_id, limit, offset
        )
        return [_job(r) for r in rows]

    async def count_guild_jobs(self, guild_id: str) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM jobs WHERE guild_id = $1", guild_id))

    async def mark_result_deleted(self, job_id: int, *, now: float | None = None) -> bool:
        """Record that the posted video was removed; False if it already was."""
        now = time.time() if now is None else now
        status = await self.pool.execute(
            "UPDATE jobs SET result_deleted_at = $1, updated_at = $1 WHERE id = $2 AND result_deleted_at IS NULL",
            now,
            job_id,
        )
        return _changed(status) > 0

    async def recent_durations(self, provider: str, model: str, *, limit: int = 50) -> list[float]:
        """Submit-to-finish seconds of the last ``limit`` successful jobs of ``provider`` and ``model``,
        newest first: what the poll planner learns a model's completion times from."""
        rows = await self.pool.fetch(
            "SELECT finished_at - submitted_at FROM jobs WHERE provider = $1 AND model = $2 AND state = $3"
            " AND submitted_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY id DESC LIMIT $4",
            provider,
            model,
            State.SUCCEEDED.value,
            limit,
        )
        return [float(r[0]) for r in rows if r[0] and r[0] > 0]

    # --- credits ----------------------------------------------------------------------------

    async def balance(self, guild_id: str, user_id: str, allowance: int, now: float | None = None) -> Balance:
        async with self.pool.acquire() as conn:
            return await self._balance(conn, guild_id, user_id, allowance, time.time() if now is None else now)

    @staticmethod
    async def _balance(conn: asyncpg.Connection, guild_id: str, user_id: str, allowance: int, now: float) -> Balance:
        row = await conn.fetchrow(
            "SELECT"
            " COALESCE(SUM(amount) FILTER (WHERE pool = $1 AND day = $2 AND kind = 'reserve'), 0)"
            " - COALESCE(SUM(amount) FILTER (WHERE pool = $1 AND day = $2 AND kind IN ('refund', 'grant')), 0),"
            " COALESCE(SUM(amount) FILTER (WHERE pool = $3 AND kind IN ('grant', 'refund')), 0)"
            " - COALESCE(SUM(amount) FILTER (WHERE pool = $3 AND kind = 'reserve'), 0)"
            " FROM ledger WHERE guild_id = $4 AND user_id = $5",
            DAILY,
            utc_day(now),
            EXTRA,
            guild_id,
            user_id,
        )
        daily_used, extra = (int(row[0]), int(row[1])) if row else (0, 0)
        return Balance(allowance=allowance, daily_used=daily_used, extra=extra, resets_at=next_reset(now), now=now)

    async def settle(self, job_id: int, kind: str, *, now: float | None = None) -> bool:
        """Capture or refund every reserve of ``job_id`` exactly once; False if already settled."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._settle(conn, job_id, kind, time.time() if now is None else now)

    @staticmethod
    async def _settle(conn: asyncpg.Connection, job_id: int, kind: str, now: float) -> bool:
        """The body of ``settle``; the caller holds the transaction."""
        if kind not in ("capture", "refund"):
            raise ValueError(kind)
        # The job's row lock orders concurrent settles: the second one sees the first one's rows.
        await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        reserves = await conn.fetch(
            "SELECT guild_id, user_id, pool, amount, day FROM ledger r WHERE job_id = $1 AND kind = 'reserve'"
            " AND NOT EXISTS (SELECT 1 FROM ledger s WHERE s.job_id = r.job_id AND s.pool = r.pool"
            " AND s.kind IN ('capture', 'refund'))",
            job_id,
        )
        written = 0
        for guild_id, user_id, pool, amount, day in reserves:
            status = await conn.execute(_INSERT_SETTLEMENT, guild_id, user_id, kind, pool, amount, job_id, day, now)
            written += _changed(status)
        return written > 0

    async def grant(
        self, guild_id: str, user_id: str, amount: int, *, actor_id: str, note: str = "", now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        await self.pool.execute(_INSERT_GRANT, guild_id, user_id, EXTRA, amount, utc_day(now), actor_id, note, now)

    async def set_extra(
        self, guild_id: str, user_id: str, amount: int, *, actor_id: str, note: str = "", now: float | None = None
    ) -> int:
        """Make the user's extra balance exactly ``amount`` with one grant row of the difference."""
        now = time.time() if now is None else now
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_USER_LOCK, guild_id, user_id)
            difference = amount - (await self._balance(conn, guild_id, user_id, 0, now)).extra
            await conn.execute(
                _INSERT_GRANT, guild_id, user_id, EXTRA, difference, utc_day(now), actor_id, note or "set extra", now
            )
        return difference

    async def reset_day(
        self, guild_id: str, user_id: str, *, actor_id: str, note: str = "", now: float | None = None
    ) -> int:
        """Give back today's spent daily credits (open reserves excepted) with one daily grant row."""
        now = time.time() if now is None else now
        day = utc_day(now)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_USER_LOCK, guild_id, user_id)
            used = (await self._balance(conn, guild_id, user_id, 0, now)).daily_used
            open_reserves = await conn.fetchval(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger r WHERE guild_id = $1 AND user_id = $2 AND pool = $3"
                " AND day = $4 AND kind = 'reserve' AND NOT EXISTS (SELECT 1 FROM ledger s"
                " WHERE s.job_id = r.job_id AND s.pool = r.pool AND s.kind IN ('capture', 'refund'))",
                guild_id,
                user_id,
                DAILY,
                day,
            )
            amount = max(0, used - int(open_reserves))
            await conn.execute(_INSERT_GRANT, guild_id, user_id, DAILY, amount, day, actor_id, note or "reset day", now)
        return amount

    async def user_activity(self, guild_id: str, user_id: str) -> tuple[int, float | None]:
        """(unfinished jobs, creation time of the latest job) of a user in one server."""
        async with self.pool.acquire() as conn:
            return await self._user_activity(conn, guild_id, user_id)

    @staticmethod
    async def _user_activity(conn: asyncpg.Connection, guild_id: str, user_id: str) -> tuple[int, float | None]:
        row = await conn.fetchrow(
            "SELECT COUNT(*) FILTER (WHERE state = ANY($1::text[])), MAX(created_at)"
            " FROM jobs WHERE guild_id = $2 AND user_id = $3",
            _UNFINISHED,
            guild_id,
            user_id,
        )
        return (int(row[0]), row[1]) if row else (0, None)

    async def ledger_entries(self, guild_id: str, user_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT kind, pool, amount, job_id, day, actor_id, note, created_at FROM ledger"
            " WHERE guild_id = $1 AND user_id = $2 ORDER BY id DESC LIMIT $3",
            guild_id,
            user_id,
            limit,
        )
        return [dict(r) for r in rows]

    async def settlements(self, job_id: int) -> dict[str, int]:
        """kind -> total amount for one job (tests and /jobs use it)."""
        rows = await self.pool.fetch("SELECT kind, SUM(amount) FROM ledger WHERE job_id = $1 GROUP BY kind", job_id)
        return {r[0]: int(r[1]) for r in rows}

    # --- service: health and provider callbacks (migration 0003) -------------------------------

    async def ping(self) -> None:
        """Raise unless the server answers a query on the migrated schema."""
        await self.pool.fetchval("SELECT MAX(version) FROM schema_version")

    async def add_callback_secret(self, job_id: int, digest: str, *, now: float | None = None) -> None:
        """Store the digest of a job's callback secret (one per submit attempt)."""
        await self.pool.execute(
            "INSERT INTO callback_secrets (digest, job_id, created_at) VALUES ($1,$2,$3)",
            digest,
            job_id,
            time.time() if now is None else now,
        )

    async def callback_secret(self, digest: str) -> tuple[int, float | None] | None:
        """(job id, used_at) for a secret's digest, or None when unknown."""
        row = await self.pool.fetchrow("SELECT job_id, used_at FROM callback_secrets WHERE digest = $1", digest)
        return (int(row[0]), row[1]) if row else None

    async def use_callback_secret(self, digest: str, *, now: float | None = None) -> bool:
        """Mark a secret as spent on a finished-task callback; False if it already was (a replay)."""
        status = await self.pool.execute(
            "UPDATE callback_secrets SET used_at = $1 WHERE digest = $2 AND used_at IS NULL",
            time.time() if now is None else now,
            digest,
        )
        return _changed(status) > 0
