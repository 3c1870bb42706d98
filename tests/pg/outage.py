"""A database outage in the middle of a job, against the real ``python -m bot`` process on PostgreSQL.

Two kinds of outage: the server stopped (``pg_ctl stop -m fast``: sessions end with "terminating
connection due to administrator command", new ones are refused) and started again on the same port;
or a superuser terminating every connection to the bot's database over and over (a proxy or pooler
restarting). :func:`outage_run` queues one /sora job, starts the outage once the job is running at the
provider, and reports what an operator would check: one submit, one post, one charge, how long after
the video could first be posted (database back and provider done) it was posted, /healthz during and
after. Shared by tests/pg/test_pg_outage.py, tests/faults/test_db_outage.py and bench/bench_db_outage.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncpg

from tests.e2e.test_service import free_port, get, wait_health
from tests.e2e.world import world
from tests.fakes.relay import FakeRelay
from tests.pg.server import PgServer, start_server, stop_server

UP = {"gateway": True, "database": True}
DB_DOWN = {"gateway": True, "database": False}


class Outage(Protocol):
    name: str

    async def begin(self) -> None: ...
    async def end(self) -> None: ...


class StoppedServer:
    """The whole server down, then up again on the same port with the same data."""

    name = "server stopped"

    def __init__(self, bin_dir: Path, server: PgServer) -> None:
        self.bin_dir, self.server = bin_dir, server

    async def begin(self) -> None:
        await asyncio.to_thread(stop_server, self.bin_dir, self.server)

    async def end(self) -> None:
        await asyncio.to_thread(start_server, self.bin_dir, self.server)


class TerminatedConnections:
    """Every session on ``database`` killed with pg_terminate_backend every ``interval`` seconds, and no
    new one admitted meanwhile (its connection limit at 0: "too many connections", as from a pooler that
    is out of slots). The bot must connect as a role that is not a superuser (see :func:`bot_role`):
    superusers are exempt from connection limits."""

    name = "connections terminated"

    def __init__(self, admin_dsn: str, database: str, interval: float = 0.05) -> None:
        self.admin_dsn, self.database, self.interval = admin_dsn, database, interval
        self.terminated = 0
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    async def begin(self) -> None:
        self._conn = await asyncpg.connect(self.admin_dsn)
        await self._conn.execute(f'ALTER DATABASE "{self.database}" CONNECTION LIMIT 0')
        self._task = asyncio.create_task(self._kill_loop())

    async def _kill_loop(self) -> None:
        assert self._conn is not None
        while True:
            killed = await self._conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.database,
            )
            self.terminated += int(killed or 0)
            await asyncio.sleep(self.interval)

    async def end(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            await self._conn.execute(f'ALTER DATABASE "{self.database}" CONNECTION LIMIT -1')
            await self._conn.close()


async def bot_role(admin_dsn: str, database: str) -> str:
    """A login role (not a superuser) that owns ``database``; returns its DSN for the bot (trust auth)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        role = f"bot_{database}"
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        await conn.execute(f'ALTER DATABASE "{database}" OWNER TO "{role}"')
    finally:
        await conn.close()
    return admin_dsn.replace("postgres@", f"{role}@", 1).rsplit("/", 1)[0] + f"/{database}"


@dataclass
class OutageReport:
    outage: str
    outage_seconds: float
    recovery_seconds: float
    """From the moment the video could first be posted (database back and provider done) to its post."""
    submits: int
    posts: int
    job_states: list[str]
    ledger: dict[str, int]
    health_during: int
    health_after: int
    refusal: str
    """The answer to a /sora sent during the outage."""
    log: str


async def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def outage_run(dsn: str, outage: Outage, *, outage_seconds: float, run_seconds: float) -> OutageReport:
    """One job through one outage; mid-outage, /healthz and a second /sora (another user) are asked."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"DATABASE_URL": dsn, "HTTP_PORT": str(port), "LEASE_SECONDS": "60"}
    async with world("relay", env=env, run_seconds=run_seconds) as w:
        relay = w.video_fake
        assert isinstance(relay, FakeRelay)
        assert await wait_health(base, UP) == 200
        ia = await w.sora("a lighthouse in a storm", duration=4)
        assert "queued" in await w.followup_text(ia)

        async def running() -> bool:
            return [r[0] for r in await fetch(dsn, "SELECT state FROM jobs")] == ["running"]

        await until(running, 20, "the job to run at the provider")
        began = time.time()
        await outage.begin()
        health_during = await wait_health(base, DB_DOWN)
        late = await w.sora("a second video", user_id=w.discord.other_user.id)  # acknowledged within 3 s
        refusal = await w.followup_text(late)
        await asyncio.sleep(max(0.0, began + outage_seconds - time.time()))
        await outage.end()
        back = time.time()
        (video,) = await w.wait_video(timeout=60)
        (task,) = relay.tasks.values()
        done = time.time() - (relay.clock() - task.started) + run_seconds  # the provider's finish, wall clock
        recovery = video.created_at - max(back, done)
        health_after = await wait_health(base, UP)
        status, _ = await get(f"{base}/healthz")
        assert status == health_after
        await w.wait_status("Done")
        with contextlib.suppress(TimeoutError):  # a duplicate post would show up within moments
            await w.discord.wait_for(lambda: len(w.videos()) > 1, 1.0, what="a second post")
        posts = len(w.videos())
        submits = w.submits()
        log = w.bot.log_text()
    states = [r[0] for r in await fetch(dsn, "SELECT state FROM jobs ORDER BY id")]
    ledger = {r[0]: int(r[1]) for r in await fetch(dsn, "SELECT kind, SUM(amount) FROM ledger GROUP BY kind")}
    return OutageReport(
        outage.name,
        outage_seconds,
        recovery,
        submits,
        posts,
        states,
        ledger,
        health_during,
        health_after,
        refusal,
        log,
    )


def unretrieved(log: str) -> list[str]:
    """Lines that say a task died with nobody to hear it, or a job was crashed by the outage."""
    return [line for line in log.splitlines() if "never retrieved" in line or "crashed" in line]
