"""The runner rides out trouble that is not the job's fault, on a real SQLite file and a real fake relay:
the file locked by another process past the busy timeout, the data directory full while downloading,
a job whose task gave up. See tests/pg/test_pg_outage.py for PostgreSQL stopped and restarted."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiosqlite
import pytest

from bot.jobs.model import State
from bot.storage.sqlite import driver as sqlite_driver
from tests.fakes.relay import FakeRelay
from tests.jobs.test_runner import COST, KEY, RigFactory, eventually, relay, relay_provider, rigs

__all__ = ["relay", "rigs"]  # the shared fixtures


@pytest.fixture
async def slow_relay() -> AsyncIterator[FakeRelay]:
    async with FakeRelay(api_key=KEY, run_seconds=2.0) as server:
        yield server  # type: ignore[misc]


async def test_a_file_locked_past_the_busy_timeout_is_waited_out(
    rigs: RigFactory,
    slow_relay: FakeRelay,
    http_session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Give up on the lock in 0.1 s instead of 10 s, so the outage is short.
    monkeypatch.setattr(sqlite_driver, "BUSY_RETRY_SECONDS", 0.1)
    rig = await rigs(relay_provider(http_session, slow_relay))
    await rig.repo.db.execute("PRAGMA busy_timeout=50")
    queued = await rig.submit()
    await rig.until(queued.id, lambda j: j.state is State.RUNNING)
    caplog.set_level(logging.WARNING)
    other = await aiosqlite.connect(tmp_path / "bot.db", isolation_level=None)  # another process
    try:
        await other.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock: every write of ours is refused
        await eventually(lambda: "database unavailable" in caplog.text, timeout=10)
        await other.execute("COMMIT")
    finally:
        await other.close()
    await rig.idle()
    job = await rig.job(queued.id)
    assert job.state is State.SUCCEEDED and job.error_class is None
    assert len(slow_relay.requests_to("/v2/videos/generations", "POST")) == 1
    assert [job_id for job_id, _ in rig.notifier.deliveries] == [job.id]
    assert await rig.repo.settlements(job.id) == {"reserve": COST, "capture": COST}
    assert "crashed" not in caplog.text


async def test_a_full_disk_while_downloading_retries_only_the_download(
    rigs: RigFactory,
    relay: FakeRelay,
    http_session: aiohttp.ClientSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    # The download's part file writes to /dev/full: ENOSPC, as on a full data directory. The download
    # removes its part file when it fails, so the next try writes a real file.
    (results / "job-1.mp4.part").symlink_to("/dev/full")
    rig = await rigs(relay_provider(http_session, relay))
    queued = await rig.submit()
    assert queued.id == 1
    await rig.idle()
    job = await rig.job(queued.id)
    assert job.state is State.SUCCEEDED
    assert len(relay.requests_to("/v2/videos/generations", "POST")) == 1, "submitted once"
    assert len(relay.requests_to("/files/")) == 2, "downloaded again after the full disk"
    assert [job_id for job_id, _ in rig.notifier.deliveries] == [job.id]
    assert f"the data directory {results} is full" in caplog.text
    assert await rig.repo.settlements(job.id) == {"reserve": COST, "capture": COST}


async def test_a_job_whose_task_gave_up_is_taken_over_at_once(
    rigs: RigFactory, slow_relay: FakeRelay, http_session: aiohttp.ClientSession
) -> None:
    # Lease upkeep every 20 s: the job must not wait for it, nor for its 60 s lease to run out.
    rig = await rigs(relay_provider(http_session, slow_relay), lease_seconds=60.0)
    queued = await rig.submit()
    await rig.until(queued.id, lambda j: j.state is State.RUNNING)
    runner = rig.runner
    # Its task stops; the job stays leased by us in the database with no task here to work it.
    task = runner._tasks[queued.id]
    task.cancel()
    await eventually(lambda: queued.id not in runner._tasks)
    runner._orphaned.set()  # what a task that gave up on its job says
    await eventually(lambda: queued.id in runner._tasks, timeout=2)
    await rig.idle()
    job = await rig.job(queued.id)
    assert job.state is State.SUCCEEDED
    assert len(slow_relay.requests_to("/v2/videos/generations", "POST")) == 1
    assert [job_id for job_id, _ in rig.notifier.deliveries] == [job.id]
