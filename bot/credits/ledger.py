"""Credit rules: what a job costs and which pool pays for it. Pure: the SQL lives in bot/storage.

A user has two pools per server: the daily allowance (resets at 00:00 UTC) and extra balance
granted by admins (never expires). A job is paid from the daily pool first, then from extra.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.config import Settings
from bot.errors import BudgetExhausted, InsufficientCredits, InvalidRequest

DAILY, EXTRA = "daily", "extra"


@dataclass(frozen=True)
class CreditPolicy:
    daily_credits: int = Settings.daily_credits
    credits_per_second: int = Settings.credits_per_second
    pro_multiplier: int = Settings.pro_credit_multiplier

    def daily(self, server_allowance: int | None) -> int:
        """A member's daily credits in a server: its own allowance when its admins set one."""
        return self.daily_credits if server_allowance is None else server_allowance

    def cost(self, seconds: int, model: str) -> int:
        base = seconds * self.credits_per_second
        return base * self.pro_multiplier if model == "sora-2-pro" else base


@dataclass(frozen=True)
class Balance:
    allowance: int
    daily_used: int
    extra: int
    resets_at: dt.datetime
    now: float

    @property
    def daily_left(self) -> int:
        return max(0, self.allowance - self.daily_used)

    @property
    def total(self) -> int:
        return self.daily_left + max(0, self.extra)

    def resets_in(self) -> str:
        return _resets_in(self.now, self.resets_at)

    def split(self, cost: int) -> list[tuple[str, int]]:
        """The (pool, amount) rows that pay ``cost``, or InsufficientCredits with the figures."""
        if cost > self.total:
            raise InsufficientCredits(
                f"cost {cost} > balance {self.total}",
                user_message=(
                    f"This video costs {cost} credits but you have {self.total} left. "
                    f"Your daily credits reset at 00:00 UTC ({self.resets_in()})."
                ),
            )
        from_daily = min(cost, self.daily_left)
        parts = [(DAILY, from_daily)] if from_daily else []
        if cost - from_daily:
            parts.append((EXTRA, cost - from_daily))
        return parts


@dataclass(frozen=True)
class SpendingCaps:
    """The operator's limits on what members may spend, whoever they are (None = no cap).

    ``server_daily`` / ``global_daily``: credits spent per UTC day in one server / in all servers
    together (reserves of the day minus their refunds); ``max_allowance``: the highest daily
    allowance a server's admins may set."""

    server_daily: int | None = None
    global_daily: int | None = None
    max_allowance: int | None = None

    def check(self, cost: int, *, server_spent: int, global_spent: int, now: float) -> None:
        """BudgetExhausted when ``cost`` more today would pass a cap; the sentence says which and when
        it resets. ``*_spent``: what the day has used so far (0 when that cap is not set)."""
        when = _resets_in(now, next_reset(now))
        if self.server_daily is not None and server_spent + cost > self.server_daily:
            raise BudgetExhausted(
                f"server cap: {server_spent} + {cost} > {self.server_daily}",
                user_message=(
                    f"This server's video budget for today is used up ({server_spent} of "
                    f"{self.server_daily} credits spent; this video costs {cost}). "
                    f"It resets at 00:00 UTC ({when})."
                ),
            )
        if self.global_daily is not None and global_spent + cost > self.global_daily:
            raise BudgetExhausted(
                f"global cap: {global_spent} + {cost} > {self.global_daily}",
                user_message=(
                    f"The bot's video budget for today is used up across all servers. It resets at 00:00 UTC ({when})."
                ),
            )

    def check_allowance(self, allowance: int | None) -> None:
        """InvalidRequest when a server's admins ask for a daily allowance above ``max_allowance``."""
        if allowance is not None and self.max_allowance is not None and allowance > self.max_allowance:
            raise InvalidRequest(
                f"The daily allowance on this bot can be at most {self.max_allowance} credits per member.",
                f"allowance {allowance} > MAX_ALLOWANCE {self.max_allowance}",
            )


def _resets_in(now: float, at: dt.datetime) -> str:
    minutes = max(0, int(at.timestamp() - now) // 60)
    return f"in {minutes // 60} h {minutes % 60} min"


def utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()


def next_reset(now: float) -> dt.datetime:
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0, 0), dt.UTC)
