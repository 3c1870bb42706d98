"""When to ask a provider about a job next. Pure arithmetic, unit-tested and benchmarked.

Asking often wastes requests (and rate limit); asking rarely notices completion late. The trade is
made by bot/jobs/poll_planner.py: from the job's completion-time distribution (its model's prior,
refined by recent jobs) it picks the poll times minimising E[delay] + λ·E[polls], λ being what one
status request is worth in seconds of delay. This class adds what a real job needs around that plan:

* the first look comes early whatever the plan says (moderation refusals come within seconds); a
  resumed job, long since submitted, is looked at at once and then planned from its real age;
* progress readings re-estimate the end (from the progress rate) and narrow the distribution;
* a job past the distribution's tail is polled with a backoff growing with its age, bounded;
* a server's pacing hint (``openai-poll-after-ms``, ``Retry-After``) is a floor; rate limiting
  doubles the delay each time until a good answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bot.config import DEFAULT_POLL_COST  # the setting's default, declared with the setting
from bot.jobs.poll_planner import DEFAULT_SPREAD, MIN_SPREAD, Lognormal, Plan, plan_for

PROGRESS_SPREAD = 0.1
"""Spread of the end estimated from a progress rate (coarse, sometimes uneven figures)."""
MAX_BACKOFF = 60.0
"""Longest wait between two looks at an overdue job (and the rate-limit backoff cap is 120 s)."""


def request_cost(poll_cost: float, median: float, *, calls_back: bool) -> float:
    """λ for one job. When the provider calls back as the job ends (the wake-up cuts the wait short),
    a status request is only the safety net for a lost callback: worth a whole median of delay, so
    the plan keeps the early look and about two more (≤ 3 requests a job with the callback)."""
    return max(poll_cost, median) if calls_back else poll_cost


@dataclass
class AdaptivePoller:
    median: float
    """Median wall time of the whole job, in seconds (the model's typical time or the learned median)."""
    spread: float = DEFAULT_SPREAD
    """Lognormal sigma of the job's wall time."""
    request_cost: float = DEFAULT_POLL_COST
    """λ: seconds of detection delay one status request is worth."""
    first_poll: float = field(default=-1.0)
    """Default: 3 % of the median, between 0.25 and 5 s (moderation failures come early)."""
    _samples: list[tuple[float, float]] = field(default_factory=list, repr=False)
    _rate_limited: int = field(default=0, repr=False)
    _asked: int = field(default=0, repr=False)
    _last: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.prior = Lognormal.clamped(self.median, self.spread)
        if self.first_poll < 0:
            self.first_poll = min(max(0.03 * self.median, 0.25), 5.0)

    @property
    def base_interval(self) -> float:
        """The time scale of backoffs after errors: 2.5 % of the median, between 0.25 and 4.5 s."""
        return min(max(0.025 * self.median, 0.25), 4.5)

    def plan(self) -> Plan:
        """The prior's plan (computing it may take milliseconds the first time: call in a thread)."""
        return plan_for(self.prior, self.request_cost)

    def observe(self, elapsed: float, progress: float | None) -> None:
        """Record an answer (progress 0..100, or None) taken ``elapsed`` seconds after submit."""
        self._rate_limited = 0
        if progress is not None and 0 < progress < 100:
            self._samples.append((elapsed, progress))

    def estimated_total(self, elapsed: float) -> float:
        """Expected total time, refined by the progress rate once there is progress to go on."""
        return max(self._progress_end(), elapsed) if self._samples else self.median

    def _progress_end(self) -> float:
        """When the progress rate says the job ends (possibly already past)."""
        t_last, p_last = self._samples[-1]
        t_first, p_first = self._samples[0]
        if len(self._samples) >= 2 and t_last > t_first and p_last > p_first:
            rate = (p_last - p_first) / (t_last - t_first)
        else:
            rate = p_last / max(t_last, 1e-6)
        estimate = t_last + (100 - p_last) / max(rate, 1e-6)
        # Progress figures are coarse and sometimes stall: trust them, but not beyond 3x the prior.
        return min(estimate, self.median * 3)

    def distribution(self) -> Lognormal:
        """What the job's completion time looks like now: the prior, combined (as two lognormal
        measurements of the same end) with the end the progress rate predicts, once there is one."""
        if not self._samples:
            return self.prior
        end = max(self._progress_end(), 1e-3 * self.median)
        span = self._samples[-1][1] - (self._samples[0][1] if len(self._samples) >= 2 else 0.0)
        # Whole-percent figures are ±0.5 % over the span measured; never trusted beyond PROGRESS_SPREAD.
        measured = max(PROGRESS_SPREAD, 0.5 / max(span, 0.5))
        w_prior, w_progress = self.prior.sigma**-2, measured**-2
        mu = (w_prior * math.log(self.prior.median) + w_progress * math.log(end)) / (w_prior + w_progress)
        # Not conditioned on ``elapsed``: the plan is, and a job later than its progress promised is overdue.
        return Lognormal(math.exp(mu), max((w_prior + w_progress) ** -0.5, MIN_SPREAD))

    def planned_delay(self, elapsed: float) -> float:
        """The plan's answer alone: how long after ``elapsed`` (a look that found the job running)."""
        dist = self.distribution()
        x = elapsed / dist.median
        nxt = plan_for(dist, self.request_cost).next_after(x)
        if nxt is None:
            # Past the tail: the distribution is wrong for this job (or it is stuck). Back off from the
            # plan's last interval by a quarter each time, within a tenth of the job's age and a minute.
            grown = max(1.25 * self._last, 0.01 * dist.median)
            return min(grown, max(0.1 * elapsed, 0.01 * dist.median), MAX_BACKOFF)
        return max((nxt - x) * dist.median, 1e-3 * dist.median)

    def next_delay(self, elapsed: float, *, hint: float | None = None) -> float:
        """Seconds to wait before the next status request, ``elapsed`` seconds after submit."""
        self._asked += 1
        if self._asked == 1:
            # First look soon after submit (a resumed job, long since submitted, is looked at at once).
            delay = max(self.first_poll - elapsed, 0.0)
        else:
            delay = self.planned_delay(elapsed)
            self._last = delay
        if hint is not None:
            delay = max(delay, hint)
        if self._rate_limited:
            delay = max(delay, min(self.base_interval * 2**self._rate_limited, 120.0))
        return delay

    def rate_limited(self, retry_after: float | None) -> float:
        """Note a 429 on a status request; returns how long to back off."""
        self._rate_limited += 1
        backoff = min(self.base_interval * 2**self._rate_limited, 120.0)
        return max(backoff, retry_after or 0.0)
