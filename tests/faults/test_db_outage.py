"""Database outages at random moments of several jobs' lives, against the real bot on PostgreSQL.

One world: the real bot (as a role that is not a superuser), FakeDiscord, a FakeRelay, a throwaway
PostgreSQL. Each trial queues a few /sora jobs from different users, waits a random moment (the jobs
are then queued, submitting, polling, downloading or posting), and takes the database away for a random
1-3 s: every session terminated over and over, no new one admitted (tests/pg/outage.py). A /sora sent
during the outage must be answered, either refused with "nothing was charged" or queued. At the end
every job must have succeeded with one submit, one post and one capture, and no job task may have
crashed or died unheard. ``FAULT_SEED`` replays a run; ``DB_OUTAGE_TRIALS`` sets the number of outages.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter

import pytest

from tests.e2e.world import world
from tests.pg.outage import TerminatedConnections, bot_role, fetch, unretrieved, until
from tests.pg.server import PgServer

TRIALS = int(os.environ.get("DB_OUTAGE_TRIALS", "4"))
SEED = int(os.environ.get("FAULT_SEED", str(random.SystemRandom().randrange(1_000_000))))
JOBS_PER_TRIAL = 2

pytestmark = pytest.mark.timeout(60 + 15 * TRIALS)


async def test_database_outages_at_random_moments(pg_server: PgServer, pg_dsn: str) -> None:
    rng = random.Random(SEED)
    database = pg_dsn.rsplit("/", 1)[1]
    env = {"DATABASE_URL": await bot_role(pg_server.dsn, database), "COOLDOWN_SECONDS": "0"}
    answers: Counter[str] = Counter()
    outage_total = 0.0
    async with world("relay", env=env, run_seconds=1.5) as w:
        users = [w.discord.add_user(f"user{n}").id for n in range(JOBS_PER_TRIAL * TRIALS + TRIALS)]
        for trial in range(TRIALS):
            for n in range(JOBS_PER_TRIAL):
                ia = await w.sora(f"trial {trial} clip {n}", user_id=users.pop(), duration=4)
                assert "queued" in await w.followup_text(ia)
                answers["queued before"] += 1
            await asyncio.sleep(rng.uniform(0.0, 2.0))  # somewhere in the jobs' lives
            killer = TerminatedConnections(pg_server.dsn, database)
            length = rng.uniform(1.0, 3.0)
            began = time.monotonic()
            await killer.begin()
            try:
                late = await w.sora(f"trial {trial} during the outage", user_id=users.pop(), duration=4)
                text = await w.followup_text(late)
                if "queued" in text:
                    answers["queued during"] += 1  # it slipped in before the first termination
                else:
                    assert "Nothing was charged" in text and "try again in a moment" in text, text
                    answers["refused during"] += 1
                await asyncio.sleep(max(0.0, began + length - time.monotonic()))
            finally:
                await killer.end()
            outage_total += time.monotonic() - began

        async def all_done() -> bool:
            states = [r[0] for r in await fetch(pg_dsn, "SELECT state FROM jobs")]
            return all(s in ("succeeded", "failed", "cancelled") for s in states)

        await until(all_done, 60, "every job to finish")
        jobs = answers["queued before"] + answers["queued during"]
        await w.wait_video(jobs, timeout=10)
        log = w.bot.log_text()
        posts = len(w.videos())
        submits = w.submits()
    states = Counter(r[0] for r in await fetch(pg_dsn, "SELECT state FROM jobs"))
    ledger = await fetch(pg_dsn, "SELECT job_id, kind, COUNT(*) FROM ledger GROUP BY job_id, kind")
    per_job = Counter((r[1], int(r[2])) for r in ledger)
    waits = log.count("database unavailable")
    print(
        f"DB OUTAGE SUMMARY seed={SEED} outages={TRIALS} outage_seconds={outage_total:.1f} jobs={jobs} "
        f"succeeded={states['succeeded']} posts={posts} submits={submits} refused_during={answers['refused during']} "
        f"queued_during={answers['queued during']} waits_logged={waits}"
    )
    assert states == Counter({"succeeded": jobs}), f"seed {SEED}: {states}"
    assert posts == jobs and submits == jobs, f"seed {SEED}: one post and one submit per job"
    assert per_job == Counter({("reserve", 1): jobs, ("capture", 1): jobs}), f"seed {SEED}: {per_job}"
    assert waits > 0, "the outages reached the bot"
    assert unretrieved(log) == [], f"seed {SEED}"
