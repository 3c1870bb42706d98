"""Admin operations on the credit ledger: set extra, reset a user's day, per-user activity."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from bot.credits.ledger import CreditPolicy
from bot.errors import InsufficientCredits
from bot.jobs.model import State
from bot.jobs.store import Store
from bot.moderation.policy import CoolingDown, Limits, TooManyJobs, check_activity

NOW = dt.datetime(2026, 3, 14, 22, 30, tzinfo=dt.UTC).timestamp()
POLICY = CreditPolicy(daily_credits=10)


async def create(repo: Store, cost: int, *, now: float = NOW, **kw: Any) -> Any:
    return await repo.create_job(
        provider="demo",
        user_id=kw.pop("user", "u1"),
        guild_id="g1",
        prompt="a cat",
        seconds=4,
        size="1280x720",
        model="sora-2",
        cost=cost,
        policy=POLICY,
        now=now,
        **kw,
    )


async def rows(repo: Store, sql: str) -> list[tuple[Any, ...]]:
    async with repo.db.execute(sql) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def test_set_extra_writes_the_difference_with_the_actor(repo: Store) -> None:
    await repo.grant("g1", "u1", 7, actor_id="admin1", now=NOW)
    assert await repo.set_extra("g1", "u1", 20, actor_id="admin2", note="event prize", now=NOW) == 13
    assert (await repo.balance("g1", "u1", 10, now=NOW)).extra == 20
    assert await repo.set_extra("g1", "u1", 5, actor_id="admin3", now=NOW) == -15
    assert (await repo.balance("g1", "u1", 10, now=NOW)).extra == 5
    assert await repo.set_extra("g1", "u1", 5, actor_id="admin4", now=NOW) == 0  # still logged
    got = await rows(repo, "SELECT kind, pool, amount, actor_id, note FROM ledger ORDER BY id")
    assert got == [
        ("grant", "extra", 7, "admin1", ""),
        ("grant", "extra", 13, "admin2", "event prize"),
        ("grant", "extra", -15, "admin3", "set extra"),
        ("grant", "extra", 0, "admin4", "set extra"),
    ]


async def test_set_extra_accounts_for_spent_extra(repo: Store) -> None:
    await repo.grant("g1", "u1", 10, actor_id="a", now=NOW)
    job = await create(repo, 14)  # 10 daily + 4 extra
    await repo.finish_job(job.moved(State.FAILED, NOW), "capture")
    assert (await repo.balance("g1", "u1", 10, now=NOW)).extra == 6
    assert await repo.set_extra("g1", "u1", 10, actor_id="a", now=NOW) == 4
    assert (await repo.balance("g1", "u1", 10, now=NOW)).extra == 10


async def test_reset_day_restores_todays_allowance_with_the_actor(repo: Store) -> None:
    job = await create(repo, 8)
    await repo.settle(job.id, "capture", now=NOW)
    assert (await repo.balance("g1", "u1", 10, now=NOW)).daily_left == 2
    with pytest.raises(InsufficientCredits):
        await create(repo, 4)
    assert await repo.reset_day("g1", "u1", actor_id="mod", note="sorry", now=NOW) == 8
    assert (await repo.balance("g1", "u1", 10, now=NOW)).daily_left == 10
    await create(repo, 10)  # the full allowance is usable again
    got = await rows(repo, "SELECT kind, pool, amount, day, actor_id, note FROM ledger WHERE kind = 'grant'")
    assert got == [("grant", "daily", 8, "2026-03-14", "mod", "sorry")]


async def test_reset_day_leaves_open_reserves_alone(repo: Store) -> None:
    """A job still running when the day is reset: its refund must not lift the day above the allowance."""
    done = await create(repo, 4)
    await repo.settle(done.id, "capture", now=NOW)
    running = await create(repo, 4)
    assert await repo.reset_day("g1", "u1", actor_id="mod", now=NOW) == 4
    assert (await repo.balance("g1", "u1", 10, now=NOW)).daily_left == 6  # 4 still reserved
    await repo.settle(running.id, "refund", now=NOW)
    assert (await repo.balance("g1", "u1", 10, now=NOW)).daily_left == 10


async def test_reset_day_only_touches_today(repo: Store) -> None:
    yesterday = NOW - 86400
    job = await create(repo, 8, now=yesterday)
    await repo.settle(job.id, "capture", now=yesterday)
    assert await repo.reset_day("g1", "u1", actor_id="mod", now=NOW) == 0
    assert (await repo.balance("g1", "u1", 10, now=NOW)).daily_left == 10
    tomorrow = NOW + 86400
    assert (await repo.balance("g1", "u1", 10, now=tomorrow)).daily_left == 10


async def test_a_days_reset_does_not_carry_over(repo: Store) -> None:
    job = await create(repo, 10)
    await repo.settle(job.id, "capture", now=NOW)
    await repo.reset_day("g1", "u1", actor_id="mod", now=NOW)
    assert (await repo.balance("g1", "u1", 10, now=NOW + 86400)).daily_left == 10


async def test_allowance_zero_is_an_override_not_the_default(repo: Store) -> None:
    with pytest.raises(InsufficientCredits):
        await create(repo, 4, allowance=0)
    await repo.grant("g1", "u1", 4, actor_id="a", now=NOW)
    job = await create(repo, 4, allowance=0)
    assert await repo.settlements(job.id) == {"reserve": 4}
    assert await rows(repo, "SELECT pool FROM ledger") == [("extra",), ("extra",)]  # the grant, the reserve


async def test_user_activity_counts_unfinished_jobs_in_one_server(repo: Store) -> None:
    assert await repo.user_activity("g1", "u1") == (0, None)
    first = await create(repo, 1, now=NOW - 10)
    await create(repo, 1, now=NOW)
    await create(repo, 1, user="u2", now=NOW + 5)
    assert await repo.user_activity("g1", "u1") == (2, NOW)
    await repo.finish_job(first.moved(State.FAILED, NOW), "refund")
    assert await repo.user_activity("g1", "u1") == (1, NOW)
    assert await repo.user_activity("g2", "u1") == (0, None)


async def test_admission_runs_inside_the_reserving_transaction(repo: Store) -> None:
    limits = Limits(cooldown_seconds=0, max_jobs_per_user=1, pro_allowed=True, daily_allowance=10)

    def admission(unfinished: int, last: float | None) -> None:
        check_activity(limits, unfinished, last, NOW)

    await create(repo, 1, admission=admission)
    with pytest.raises(TooManyJobs):
        await create(repo, 1, admission=admission)
    assert await rows(repo, "SELECT COUNT(*) FROM jobs") == [(1,)]
    assert await rows(repo, "SELECT COUNT(*) FROM ledger") == [(1,)]


async def test_concurrent_requests_cannot_both_slip_under_the_limit(repo: Store) -> None:
    limits = Limits(cooldown_seconds=30, max_jobs_per_user=5, pro_allowed=True, daily_allowance=10)

    def admission(unfinished: int, last: float | None) -> None:
        check_activity(limits, unfinished, last, NOW)

    results = await asyncio.gather(*(create(repo, 1, admission=admission) for _ in range(8)), return_exceptions=True)
    assert len([r for r in results if not isinstance(r, BaseException)]) == 1, "the cooldown admits one"
    assert all(isinstance(r, CoolingDown) for r in results if isinstance(r, BaseException))
    assert await rows(repo, "SELECT COUNT(*), SUM(amount) FROM ledger") == [(1, 1)]
