"""The operator's daily spending caps and the fenced cancel, in the reserving transaction (issue 13 items 3, 4).

Run on both backends (tests/storage/conftest.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from bot.credits.ledger import CreditPolicy, SpendingCaps
from bot.errors import BudgetExhausted, InsufficientCredits
from bot.jobs.model import Job, State
from bot.jobs.store import Store

# 2026-03-14 22:30:00 UTC: 1 h 30 min before the reset.
NOW = dt.datetime(2026, 3, 14, 22, 30, tzinfo=dt.UTC).timestamp()
POLICY = CreditPolicy(daily_credits=100)


async def reserve(repo: Any, guild: str, user: str, cost: int = 8, *, caps: SpendingCaps, now: float = NOW) -> Job:
    job: Job = await repo.create_job(
        provider="demo",
        user_id=user,
        guild_id=guild,
        prompt="a cat",
        seconds=cost,
        size="1280x720",
        model="sora-2",
        cost=cost,
        policy=POLICY,
        caps=caps,
        now=now,
    )
    return job


async def test_a_servers_members_together_cannot_pass_its_daily_cap(repo: Store) -> None:
    caps = SpendingCaps(server_daily=16)
    await reserve(repo, "g1", "u1", caps=caps)
    await reserve(repo, "g1", "u2", caps=caps)  # another member: the cap is the server's, not the user's
    jobs_before = len(await repo.jobs_in([State.QUEUED]))
    with pytest.raises(BudgetExhausted) as refused:
        await reserve(repo, "g1", "u3", caps=caps)
    assert "This server's video budget for today is used up" in refused.value.user_message
    assert "00:00 UTC (in 1 h 30 min)" in refused.value.user_message
    assert isinstance(refused.value, InsufficientCredits)  # refused like any unaffordable request
    assert len(await repo.jobs_in([State.QUEUED])) == jobs_before  # nothing stored, nothing charged
    assert await repo.spent_on_day("g1", NOW) == 16
    await reserve(repo, "g2", "u3", caps=caps)  # another server has its own budget
    assert await repo.spent_on_day(None, NOW) == 24


async def test_refunds_give_the_budget_back_and_the_next_day_starts_afresh(repo: Store) -> None:
    caps = SpendingCaps(server_daily=16)
    first = await reserve(repo, "g1", "u1", caps=caps)
    await reserve(repo, "g1", "u1", caps=caps)
    assert await repo.settle(first.id, "refund", now=NOW)
    await reserve(repo, "g1", "u1", caps=caps)  # the refunded 8 are back in the budget
    with pytest.raises(BudgetExhausted):
        await reserve(repo, "g1", "u2", caps=caps)
    await reserve(repo, "g1", "u2", caps=caps, now=NOW + 2 * 3600)  # 00:30 the next UTC day


async def test_the_global_cap_counts_every_server(repo: Store) -> None:
    caps = SpendingCaps(global_daily=20)
    await reserve(repo, "g1", "u1", caps=caps)
    await reserve(repo, "g2", "u1", caps=caps)
    with pytest.raises(BudgetExhausted) as refused:
        await reserve(repo, "g3", "u1", caps=caps)
    assert "The bot's video budget for today is used up across all servers" in refused.value.user_message
    await reserve(repo, "g3", "u1", 4, caps=caps)  # what is left still fits


async def test_concurrent_reserves_never_pass_the_server_cap(repo: Store) -> None:
    caps = SpendingCaps(server_daily=24, global_daily=1000)
    results = await asyncio.gather(
        *(reserve(repo, "g1", f"u{n}", caps=caps) for n in range(10)), return_exceptions=True
    )
    assert sum(isinstance(r, Job) for r in results) == 3
    assert all(isinstance(r, (Job, BudgetExhausted)) for r in results), results
    assert await repo.spent_on_day("g1", NOW) == 24


async def test_cancel_is_fenced_by_state_and_lease(repo: Store) -> None:
    caps = SpendingCaps()
    queued = await reserve(repo, "g1", "u1", caps=caps)
    cancelled = queued.moved(State.CANCELLED, NOW)
    # Still queued and nobody's: cancelled and refunded.
    assert await repo.cancel_job(cancelled, from_states=[State.QUEUED], owner="me", now=NOW)
    assert (await repo.settlements(queued.id)).get("refund") == 8
    stored = await repo.get_job(queued.id)
    assert stored is not None and stored.state is State.CANCELLED

    # Posted meanwhile: a cancel that expected RUNNING writes nothing and refunds nothing.
    posted = await reserve(repo, "g1", "u1", caps=caps)
    running = posted.moved(State.SUBMITTING, NOW).moved(State.RUNNING, NOW, provider_job_id="p1")
    await repo.save_job(running)
    done = running.moved(State.DOWNLOADING, NOW).moved(State.DELIVERING, NOW).moved(State.SUCCEEDED, NOW)
    assert await repo.finish_job(done, "capture")
    assert not await repo.cancel_job(running.moved(State.CANCELLED, NOW), from_states=[State.RUNNING], owner="me")
    assert await repo.settlements(posted.id) == {"reserve": 8, "capture": 8}
    stored = await repo.get_job(posted.id)
    assert stored is not None and stored.state is State.SUCCEEDED

    # Leased by another live runner: refused; once that lease has expired, allowed.
    leased = await reserve(repo, "g1", "u1", caps=caps)
    assert await repo.claim_jobs("other", [State.QUEUED], lease_seconds=60, job_ids=[leased.id], now=NOW)
    cancel = leased.moved(State.CANCELLED, NOW)
    assert not await repo.cancel_job(cancel, from_states=[State.QUEUED], owner="me", now=NOW + 30)
    assert "refund" not in await repo.settlements(leased.id)
    assert await repo.cancel_job(cancel, from_states=[State.QUEUED], owner="me", now=NOW + 61)
    assert (await repo.settlements(leased.id)).get("refund") == 8
