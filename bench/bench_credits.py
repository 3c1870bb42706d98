"""Benchmark: credit reserves per second under contention (50 tasks, one SQLite file).

Each reserve is ``Repository.create_job`` with a cost: the balance check, the job row and the
ledger rows in one ``BEGIN IMMEDIATE`` transaction. 50 asyncio tasks (one user each, so nobody
runs out) reserve as fast as they can through a) one shared connection (what the bot does: writes
take turns on a lock) and b) 50 connections to the same file (SQLite's own write lock and busy
timeout arbitrate, as between processes). Postgres is listed as not available until a backend
exists. Every run also checks that no credit was lost or spent twice. Prints markdown table rows.
Run: ``python -m bench.bench_credits [--tasks 50] [--per-task 40]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bot.credits.ledger import CreditPolicy
from bot.storage.db import connect
from bot.storage.repository import Repository

POLICY = CreditPolicy(daily_credits=1_000_000)


async def reserve_many(repo: Repository, user: str, count: int) -> None:
    for n in range(count):
        await repo.create_job(
            provider="relay",
            user_id=user,
            guild_id="bench",
            prompt=f"clip {n}",
            seconds=4,
            size="1280x720",
            model="sora-2",
            cost=4,
            policy=POLICY,
        )


async def run(path: Path, tasks: int, per_task: int, shared: bool) -> float:
    first = Repository(await connect(path))
    repos = [first] * tasks if shared else [first, *[Repository(await connect(path)) for _ in range(tasks - 1)]]
    try:
        started = time.perf_counter()
        await asyncio.gather(*(reserve_many(repo, f"user{n}", per_task) for n, repo in enumerate(repos)))
        elapsed = time.perf_counter() - started
        async with first.db.execute("SELECT COUNT(*), SUM(amount) FROM ledger WHERE kind = 'reserve'") as cur:
            row = await cur.fetchone()
        assert row is not None and tuple(row) == (tasks * per_task, 4 * tasks * per_task), tuple(row or ())
    finally:
        for repo in {id(r): r for r in repos}.values():
            await repo.close()
    return tasks * per_task / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--per-task", type=int, default=40)
    args = parser.parse_args()
    print("| backend | connections | tasks | reserves | reserves / s |")
    print("| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="bench-credits-") as tmp:
        for shared in (True, False):
            path = Path(tmp) / f"{'shared' if shared else 'many'}.db"
            rate = asyncio.run(run(path, args.tasks, args.per_task, shared))
            label = "1 shared" if shared else f"{args.tasks} (one per task)"
            print(f"| SQLite (WAL, file) | {label} | {args.tasks} | {args.tasks * args.per_task} | {rate:.0f} |")
    print(f"| Postgres | — | {args.tasks} | — | not available yet (no Postgres backend) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
