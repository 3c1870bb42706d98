"""The pure credit rules: cost, pool split, reset time, the user's message when short."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.credits.ledger import DAILY, EXTRA, Balance, CreditPolicy, SpendingCaps, next_reset, utc_day
from bot.errors import BudgetExhausted, InsufficientCredits, InvalidRequest

# 2026-03-14 22:30:00 UTC: 1 h 30 min before the daily reset.
NOW = dt.datetime(2026, 3, 14, 22, 30, tzinfo=dt.UTC).timestamp()


def balance(allowance: int = 40, daily_used: int = 0, extra: int = 0) -> Balance:
    return Balance(allowance=allowance, daily_used=daily_used, extra=extra, resets_at=next_reset(NOW), now=NOW)


@pytest.mark.parametrize(
    ("seconds", "model", "cost"),
    [(4, "sora-2", 4), (12, "sora-2", 12), (4, "sora-2-pro", 12), (25, "sora-2-pro", 75)],
)
def test_cost_is_seconds_times_rate_and_pro_multiplier(seconds: int, model: str, cost: int) -> None:
    assert CreditPolicy().cost(seconds, model) == cost


def test_cost_uses_the_configured_rates() -> None:
    policy = CreditPolicy(daily_credits=10, credits_per_second=2, pro_multiplier=5)
    assert policy.cost(4, "sora-2") == 8
    assert policy.cost(4, "sora-2-pro") == 40


def test_daily_pool_pays_first_then_extra() -> None:
    assert balance(daily_used=30, extra=20).split(8) == [(DAILY, 8)]
    assert balance(daily_used=36, extra=20).split(8) == [(DAILY, 4), (EXTRA, 4)]
    assert balance(daily_used=40, extra=20).split(8) == [(EXTRA, 8)]
    assert balance().split(0) == []


def test_totals_never_go_negative() -> None:
    b = balance(allowance=10, daily_used=25, extra=-3)
    assert b.daily_left == 0
    assert b.total == 0


def test_short_balance_raises_with_cost_balance_and_reset_time() -> None:
    with pytest.raises(InsufficientCredits) as caught:
        balance(daily_used=35, extra=2).split(12)
    message = caught.value.user_message
    assert "costs 12 credits" in message
    assert "you have 7 left" in message
    assert "00:00 UTC" in message
    assert "in 1 h 30 min" in message
    assert "12" in caught.value.detail and "7" in caught.value.detail


def test_exact_balance_is_enough() -> None:
    assert balance(daily_used=36, extra=4).split(8) == [(DAILY, 4), (EXTRA, 4)]


def test_utc_day_and_next_reset_are_utc() -> None:
    assert utc_day(NOW) == "2026-03-14"
    assert next_reset(NOW) == dt.datetime(2026, 3, 15, tzinfo=dt.UTC)
    just_after_midnight = dt.datetime(2026, 3, 15, 0, 0, 1, tzinfo=dt.UTC).timestamp()
    assert utc_day(just_after_midnight) == "2026-03-15"
    assert next_reset(just_after_midnight) == dt.datetime(2026, 3, 16, tzinfo=dt.UTC)


def test_spending_caps_name_the_budget_that_ran_out_and_when_it_resets() -> None:
    caps = SpendingCaps(server_daily=16, global_daily=100)
    caps.check(8, server_spent=8, global_spent=50, now=NOW)  # exactly at the cap is fine
    with pytest.raises(BudgetExhausted) as server:
        caps.check(8, server_spent=9, global_spent=50, now=NOW)
    assert "This server's video budget" in server.value.user_message
    assert "(in 1 h 30 min)" in server.value.user_message
    with pytest.raises(BudgetExhausted) as total:
        caps.check(8, server_spent=0, global_spent=93, now=NOW)
    assert "across all servers" in total.value.user_message
    SpendingCaps().check(10**9, server_spent=10**9, global_spent=10**9, now=NOW)  # no caps: never refused


def test_max_allowance_bounds_what_admins_may_set() -> None:
    SpendingCaps(max_allowance=50).check_allowance(50)
    SpendingCaps(max_allowance=50).check_allowance(None)  # back to the default: always allowed
    SpendingCaps().check_allowance(10**6)
    with pytest.raises(InvalidRequest) as refused:
        SpendingCaps(max_allowance=50).check_allowance(51)
    assert "at most 50 credits" in refused.value.user_message
