"""Benchmark: credit reserves per second under contention (50 tasks; SQLite file and PostgreSQL).

Each reserve is ``create_job`` with a cost: the balance check, the job row and the ledger rows in
one transaction. 50 asyncio tasks (one user each, so nobody runs out) reserve as fast as they can.

* SQLite: a) one shared connection (what the bot does: writes take turns on a lock) and b) 50
  connections to the same file (SQLite's own write lock and busy timeout arbitrate, as between
  processes).
* PostgreSQL (a throwaway server started like the tests', ``tests/pg/server.py``): a) one
  ``PostgresRepository`` whose asyncpg pool (the bot's default size, 10) all tasks share and b) 50
  repositories with a one-connection pool each (like 50 processes). Each reserve holds the per-(guild,
  user) advisory lock. The server runs with fsync and synchronous_commit off, as in the tests; SQLite
  runs WAL with synchronous=NORMAL (no fsync per commit either), so neither figure pays for a disk flush.

Every run checks that no credit was lost or spent twice. Prints markdown table rows.
Run: ``python -m bench.bench_credits [--tasks 50] [--per-task 40]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bot.credits.ledger import CreditPolicy
from bot.jobs.store import Store
from bot.storage.postgres import PostgresRepository
from bot.storage.postgres import connect as connect_pg
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect
from tests.pg.server import PgServer, find_bin_dir, running_server

log = logging.getLogger(__name__)

POLICY = CreditPolicy(daily_credits=1_000_000)
COST = 4
SHARED_POOL_SIZE = 10  # bot.storage.postgres.connect's default max_size: what the bot runs with


async def reserve_many(repo: Store, user: str, count: int) -> None:
    for n in range(count):
        await repo.create_job(
            provider="relay",
            user_id=user,
            guild_id="bench",
            prompt=f"clip {n}",
            seconds=4,
            size="1280x720",
            model="sora-2",
            cost=COST,
            policy=POLICY,
        )


async def timed(repos: Sequence[Store], per_task: int) -> float:
    """Seconds for every task (one user each) to make ``per_task`` reserves."""
    started = time.perf_counter()
    await asyncio.gather(*(reserve_many(repo, f"user{n}", per_task) for n, repo in enumerate(repos)))
    return time.perf_counter() - started


def check_ledger(row: Sequence[object], tasks: int, per_task: int) -> None:
    """Exactly one reserve of ``COST`` per job: nothing lost, nothing spent twice."""
    expected = (tasks * per_task, COST * tasks * per_task)
    if tuple(row) != expected:
        raise AssertionError(f"ledger has (count, sum) {tuple(row)}, expected {expected}")


async def run_sqlite(path: Path, tasks: int, per_task: int, shared: bool) -> float:
    first = Repository(await connect(path))
    repos = [first] * tasks if shared else [first, *[Repository(await connect(path)) for _ in range(tasks - 1)]]
    try:
        elapsed = await timed(repos, per_task)
        async with first.db.execute("SELECT COUNT(*), SUM(amount) FROM ledger WHERE kind = 'reserve'") as cur:
            row = await cur.fetchone()
        check_ledger(tuple(row or ()), tasks, per_task)
    finally:
        for repo in {id(r): r for r in repos}.values():
            await repo.close()
    return tasks * per_task / elapsed


async def run_postgres(server: PgServer, database: str, tasks: int, per_task: int, shared: bool) -> float:
    admin = await asyncpg.connect(server.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {database}")
    finally:
        await admin.close()
    dsn = server.dsn_for(database)
    # The first pool migrates the schema; the others then find it current.
    first = PostgresRepository(await connect_pg(dsn, min_size=1, max_size=SHARED_POOL_SIZE if shared else 1))
    repos: list[PostgresRepository] = [first] * tasks
    if not shared:
        more = await asyncio.gather(*(connect_pg(dsn, min_size=1, max_size=1) for _ in range(tasks - 1)))
        repos = [first, *(PostgresRepository(pool) for pool in more)]
    try:
        elapsed = await timed(repos, per_task)
        row = await first.pool.fetchrow("SELECT COUNT(*), SUM(amount) FROM ledger WHERE kind = 'reserve'")
        check_ledger(tuple(row or ()), tasks, per_task)
    finally:
        await asyncio.gather(*(repo.close() for repo in {id(r): r for r in repos}.values()))
    return tasks * per_task / elapsed


def row(backend: str, connections: str, tasks: int, reserves: int | str, rate: float | str) -> str:
    shown = f"{rate:.0f}" if isinstance(rate, float) else rate
    return f"| {backend} | {connections} | {tasks} | {reserves} | {shown} |"


def measure(
    backend: str, tasks: int, per_task: int, case: Callable[[bool], Coroutine[Any, Any, float]], pool_label: str
) -> list[str]:
    lines = []
    for shared in (True, False):
        rate = asyncio.run(case(shared))
        label = pool_label if shared else f"{tasks} (one per task)"
        lines.append(row(backend, label, tasks, tasks * per_task, rate))
    return lines


def postgres_rows(tasks: int, per_task: int) -> list[str]:
    backend = "PostgreSQL (asyncpg, loopback)"
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return [row(backend, "—", tasks, "—", "not available (no PostgreSQL binaries)")]
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_server(bin_dir))
        except (subprocess.CalledProcessError, OSError) as exc:
            # Binaries but no server (e.g. no postgres user to run initdb as): say so rather than fail.
            log.warning("PostgreSQL did not start: %s", exc)
            return [row(backend, "—", tasks, "—", f"not available (server did not start: {type(exc).__name__})")]
        # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> "15.18"
        version = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True).stdout
        number = re.search(r"\d+(?:\.\d+)+", version)
        backend = f"PostgreSQL {number.group(0) if number else ''} (asyncpg, loopback)"

        async def case(shared: bool) -> float:
            name = "bench_shared" if shared else "bench_many"
            return await run_postgres(server, name, tasks, per_task, shared)

        return measure(backend, tasks, per_task, case, f"1 pool of {SHARED_POOL_SIZE}, shared")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--per-task", type=int, default=40)
    args = parser.parse_args()
    print("| backend | connections | tasks | reserves | reserves / s |")
    print("| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="bench-credits-") as tmp:

        async def sqlite_case(shared: bool) -> float:
            path = Path(tmp) / f"{'shared' if shared else 'many'}.db"
            return await run_sqlite(path, args.tasks, args.per_task, shared)

        for line in measure("SQLite (WAL, file)", args.tasks, args.per_task, sqlite_case, "1 shared"):
            print(line, flush=True)
    for line in postgres_rows(args.tasks, args.per_task):
        print(line, flush=True)
    print(
        f"\nEach task is one user making {args.per_task} reserves of {COST} credits back to back. After every run the"
        f" ledger held exactly one reserve of {COST} per job (nothing lost, nothing spent twice). Neither backend"
        " flushes to disk per commit here: SQLite runs WAL with synchronous=NORMAL, the throwaway PostgreSQL server"
        " (tests/pg/server.py) runs with fsync and synchronous_commit off."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
