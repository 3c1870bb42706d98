"""When to ask a provider about a job next. Pure arithmetic, unit-tested and benchmarked.

Asking often wastes requests (and rate limit); asking rarely notices completion late. A video job
has a fairly predictable length, so the poller asks once early (moderation failures come fast),
rarely in the first half of the expected time, then every few seconds through the window where
completion is likely, slowing down again when the job overruns. When the provider reports
progress, the expected end is re-estimated from the progress rate. A server pacing hint
(``openai-poll-after-ms``) is a floor; rate limiting doubles the delay each time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AdaptivePoller:
    expected: float
    """Expected wall time of the whole job, in seconds (typical figure or learned median)."""
    first_poll: float = field(default=-1.0)
    """Default: 3 % of the expected time, between 0.25 and 5 s (moderation failures come early)."""
    near_interval: float = field(default=-1.0)
    """Spacing inside the likely-completion window: mean detection delay is about half of it.
    Default: 2.5 % of the expected time, between 0.25 and 4.5 s."""
    max_interval: float = field(default=-1.0)
    """Default: a sixth of the expected time, at most 30 s."""
    dense_from: float = 0.65
    """Fraction of the expected time at which dense polling starts (tuned in bench/bench_polling.py)."""
    dense_from_with_progress: float = 0.8
    """Later when a progress rate backs the estimate."""
    _samples: list[tuple[float, float]] = field(default_factory=list, repr=False)
    _rate_limited: int = field(default=0, repr=False)
    _asked: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        # Intervals scale with the job: a 3-minute video and a 2-second test fake get the same shape.
        if self.first_poll < 0:
            self.first_poll = min(max(0.03 * self.expected, 0.25), 5.0)
        if self.near_interval < 0:
            self.near_interval = min(max(0.025 * self.expected, 0.25), 4.5)
        if self.max_interval < 0:
            self.max_interval = max(min(self.expected / 6, 30.0), self.near_interval)

    def observe(self, elapsed: float, progress: float | None) -> None:
        """Record a progress reading (0..100) taken ``elapsed`` seconds after submit."""
        self._rate_limited = 0
        if progress is not None and 0 < progress < 100:
            self._samples.append((elapsed, progress))

    def estimated_total(self, elapsed: float) -> float:
        """Expected total time, refined by the progress rate once there is progress to go on."""
        if not self._samples:
            return self.expected
        t_last, p_last = self._samples[-1]
        t_first, p_first = self._samples[0]
        if len(self._samples) >= 2 and t_last > t_first and p_last > p_first:
            rate = (p_last - p_first) / (t_last - t_first)
        else:
            rate = p_last / max(t_last, 1e-6)
        estimate = t_last + (100 - p_last) / max(rate, 1e-6)
        # Progress figures are coarse and sometimes stall: trust them, but not beyond 3x the prior.
        return min(max(estimate, elapsed), self.expected * 3)

    def next_delay(self, elapsed: float, *, hint: float | None = None) -> float:
        """Seconds to wait before the next status request."""
        self._asked += 1
        if self._asked == 1:
            # First look soon after submit (a resumed job, long since submitted, is looked at at once).
            delay = max(self.first_poll - elapsed, 0.0)
        else:
            total = self.estimated_total(elapsed)
            fraction = self.dense_from_with_progress if len(self._samples) >= 2 else self.dense_from
            dense_start = fraction * total
            if elapsed < dense_start:
                delay = max(self.near_interval, (dense_start - elapsed) / 2)
            else:
                overrun = max(0.0, elapsed - total) / total
                delay = self.near_interval * (1 + 2 * overrun)
            delay = min(delay, self.max_interval)
        if hint is not None:
            delay = max(delay, hint)
        if self._rate_limited:
            delay = max(delay, min(self.near_interval * 2**self._rate_limited, 120.0))
        return delay

    def rate_limited(self, retry_after: float | None) -> float:
        """Note a 429 on a status request; returns how long to back off."""
        self._rate_limited += 1
        backoff = min(self.near_interval * 2**self._rate_limited, 120.0)
        return max(backoff, retry_after or 0.0)
