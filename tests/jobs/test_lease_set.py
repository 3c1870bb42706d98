"""bot.jobs.leases.Leases on a real SQLite file shared by two owners: claim, fence, heartbeat, release."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.credits.ledger import CreditPolicy
from bot.jobs.leases import Leases
from bot.jobs.model import Job, State
from bot.storage.sqlite import Repository
from bot.storage.sqlite.db import connect


async def new_job(repo: Repository, user: str) -> Job:
    return await repo.create_job(
        provider="relay", user_id=user, guild_id="g1", prompt="p", seconds=4, size="720x1280", model="sora-2",
        cost=4, policy=CreditPolicy(daily_credits=40),
    )  # fmt: skip


@pytest.fixture
async def repos(tmp_path: Path) -> AsyncIterator[tuple[Repository, Repository]]:
    """Two connections to one file: what two processes have."""
    first = Repository(await connect(tmp_path / "bot.db"))
    second = Repository(await connect(tmp_path / "bot.db"))
    yield first, second
    await first.close()
    await second.close()


async def test_claimed_jobs_are_held_and_fence_their_writes(repos: tuple[Repository, Repository]) -> None:
    a, _ = repos
    first, second = await new_job(a, "u1"), await new_job(a, "u2")
    leases = Leases(a, "A", lease_seconds=60)
    assert [j.id for j in await leases.claim_queued([first.id])] == [first.id]
    assert leases.holds(first.id) and leases.fence(first.id) == "A"
    assert not leases.holds(second.id) and leases.fence(second.id) is None, "not claimed: a write is unfenced"
    leases.drop(first.id)
    assert leases.fence(first.id) is None


async def test_heartbeat_reports_a_job_taken_over_but_not_one_finished(repos: tuple[Repository, Repository]) -> None:
    a, b = repos
    taken, finished, kept = await new_job(a, "u1"), await new_job(a, "u2"), await new_job(a, "u3")
    leases = Leases(a, "A", lease_seconds=60)
    await leases.claim_queued([taken.id, finished.id, kept.id])
    await b.claim_jobs("B", [State.QUEUED], lease_seconds=60, job_ids=[taken.id], free_owners=["A"])
    assert await a.finish_job(finished.moved(State.CANCELLED, time.time()), "refund", owner="A")
    lost: list[int] = []
    await leases.heartbeat(lost.append)
    assert lost == [taken.id]
    assert not leases.holds(taken.id) and not leases.holds(finished.id) and leases.holds(kept.id)


async def test_unworked_jobs_include_our_own_and_release_frees_them(repos: tuple[Repository, Repository]) -> None:
    a, b = repos
    job = await new_job(a, "u1")
    first = Leases(a, "A", lease_seconds=600)
    (claimed,) = await first.claim_queued([job.id])
    running = claimed.moved(State.SUBMITTING, time.time()).moved(State.RUNNING, time.time(), provider_job_id="t1")
    await a.save_job(running, owner="A")
    # A runner that restarted as the same owner takes its own job back at once (its lease counts as free).
    assert [j.id for j in await Leases(a, "A", lease_seconds=600).claim_unworked([State.RUNNING])] == [job.id]
    assert await Leases(b, "B", lease_seconds=600).claim_unworked([State.RUNNING]) == [], "A's lease is live"
    await first.release_all()
    assert [j.id for j in await Leases(b, "B", lease_seconds=600).claim_unworked([State.RUNNING])] == [job.id]
