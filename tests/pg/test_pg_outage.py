"""The real bot on PostgreSQL rides out database outages mid-job (issue 17): the job carries on where it
was once the database answers, with one submit, one post and one charge, and nothing is failed or
crashed for an error that was about the connection, not the job."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.world import world
from tests.pg.fixtures import require_binaries
from tests.pg.outage import (
    StoppedServer,
    TerminatedConnections,
    bot_role,
    fetch,
    outage_run,
    unretrieved,
)
from tests.pg.server import PgServer, find_bin_dir, running_server

pytestmark = pytest.mark.timeout(120)
LEASE_SECONDS = 60  # as tests/pg/outage.py starts the bot


@pytest.fixture
def own_server() -> Iterator[tuple[Path, PgServer]]:
    """A server of this test's own: stopping it must not disturb the other tests' shared one."""
    bin_dir = require_binaries(find_bin_dir(), os.environ)
    with running_server(bin_dir) as server:
        yield bin_dir, server


async def test_server_stopped_for_12_s_mid_job(own_server: tuple[Path, PgServer]) -> None:
    bin_dir, server = own_server
    report = await outage_run(server.dsn, StoppedServer(bin_dir, server), outage_seconds=12, run_seconds=4)
    assert report.job_states == ["succeeded"], "the request made during the outage created no job"
    assert report.submits == 1 and report.posts == 1
    assert report.ledger == {"reserve": 4, "capture": 4}, "charged once; nothing for the refused request"
    assert report.health_during == 503 and report.health_after == 200
    assert "Nothing was charged" in report.refusal and "try again in a moment" in report.refusal
    assert "database unavailable" in report.log, "the job met the outage"
    assert unretrieved(report.log) == []
    # Carried on by its own task, not taken over when its 60 s lease ran out (as it used to, 35 s late).
    # How soon it carries on is a speed figure, shown by bench/bench_db_outage.py (about 1.4 s), not here.
    assert report.recovery_seconds < LEASE_SECONDS / 2, report.recovery_seconds


async def test_every_connection_terminated_for_6_s_mid_job(pg_server: PgServer, pg_dsn: str) -> None:
    database = pg_dsn.rsplit("/", 1)[1]
    killer = TerminatedConnections(pg_server.dsn, database)
    report = await outage_run(await bot_role(pg_server.dsn, database), killer, outage_seconds=6, run_seconds=3)
    assert killer.terminated > 0
    assert report.job_states == ["succeeded"]
    assert report.submits == 1 and report.posts == 1
    assert report.ledger == {"reserve": 4, "capture": 4}
    assert report.health_during == 503 and report.health_after == 200
    assert "Nothing was charged" in report.refusal
    assert "database unavailable" in report.log
    assert unretrieved(report.log) == []
    assert report.recovery_seconds < LEASE_SECONDS / 2, report.recovery_seconds


# The first UPDATE that records progress on a running job kills its own session, once (a sequence is not
# rolled back with the transaction). The old runner took that for a crash and failed the job with the
# next write, though the provider was still making (and billing) the video.
REFUSE_ONE_PROGRESS_WRITE = """
CREATE SEQUENCE refusals;
CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'running' AND NEW.progress IS DISTINCT FROM OLD.progress AND OLD.state = 'running'
       AND nextval('refusals') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(5);  -- the termination lands here, before the row is written
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_once BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION refuse_once();
"""


async def test_a_refused_write_mid_generation_does_not_fail_the_job(pg_dsn: str) -> None:
    async with world("relay", env={"DATABASE_URL": pg_dsn}, run_seconds=3) as w:
        await _execute(pg_dsn, REFUSE_ONE_PROGRESS_WRITE)
        ia = await w.sora("a lighthouse in a storm", duration=4)
        assert "queued" in await w.followup_text(ia)
        await w.wait_video(timeout=30)
        await w.wait_status("Done")
        assert len(w.videos()) == 1 and w.submits() == 1
        log = w.bot.log_text()
    (refusal,) = await fetch(pg_dsn, "SELECT is_called FROM refusals")
    assert refusal[0], "the write was refused"
    states = [tuple(r) for r in await fetch(pg_dsn, "SELECT state, error_class FROM jobs")]
    assert states == [("succeeded", None)], "not failed: the refusal was about the connection"
    ledger = {r[0]: int(r[1]) for r in await fetch(pg_dsn, "SELECT kind, SUM(amount) FROM ledger GROUP BY kind")}
    assert ledger == {"reserve": 4, "capture": 4}
    assert "database unavailable" in log
    assert unretrieved(log) == [] and "failed:" not in log


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
