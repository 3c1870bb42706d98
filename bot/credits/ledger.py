"""Credit rules: what a job costs and which pool pays for it. Pure: the SQL lives in bot/storage.

A user has two pools per server: the daily allowance (resets at 00:00 UTC) and extra balance
granted by admins (never expires). A job is paid from the daily pool first, then from extra.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.errors import InsufficientCredits

DAILY, EXTRA = "daily", "extra"


@dataclass(frozen=True)
class CreditPolicy:
    daily_credits: int = 40
    credits_per_second: int = 1
    pro_multiplier: int = 3

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
        minutes = max(0, int(self.resets_at.timestamp() - self.now) // 60)
        return f"in {minutes // 60} h {minutes % 60} min"

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


def utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()


def next_reset(now: float) -> dt.datetime:
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0, 0), dt.UTC)
