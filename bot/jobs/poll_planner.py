"""The poll schedule that minimises E[detection delay] + λ·E[status requests], by dynamic programming.

A job's completion time T is lognormal (a median and a spread sigma). After a status request at
time t found the job unfinished, the best next request time s solves

    W(t) = min over s > t of  λ·P(T > t) + E[(s - T); t < T <= s] + W(s)

(W is the cost still to come, weighted by the probability of getting there; W(t) / P(T > t) is the
expected cost given the job was still running at t, so one table answers every "not finished yet at
t" question, resumed jobs included). Times are measured in medians: the plan then depends only on
sigma and ``λ / median``, both rounded, so a few dozen plans serve every job and each is computed
once (a few milliseconds) and then looked up (microseconds).

The minimisation is over a grid of times, dense where polls will be dense. Writing the delay term
with the partial moments of T turns each candidate s into a straight line in P(T <= t), so the inner
minimum is a lower envelope of lines (the convex hull trick) and the whole table costs O(grid).
Pure arithmetic: no I/O, no clock.
"""

from __future__ import annotations

import functools
import math
import statistics
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SPREAD = 0.25
"""Lognormal sigma of a model's completion time when nothing better is known."""
MIN_SPREAD, MAX_SPREAD = 0.05, 1.5
PRIOR_LOCATION_SPREAD = 0.35
"""How far off a model's typical time may be (in log-time: about 1.4x either way), before any job of it
has finished: the first jobs are planned wider, and a few finished jobs outweigh the prior."""
PRIOR_SPREAD_WEIGHT = 8.0
"""How many finished jobs the prior's sigma counts as when pooled with the learned one."""
SPREAD_MARGIN = 1.15
"""A learned sigma is widened: planning too narrow (polls missing early or late jobs) costs far more
than planning too wide (bench/bench_polling.py's learning table)."""
_TRIM = 3.0
"""Durations further than this many robust sigmas from the median (stuck jobs) are not learned from."""

_Z_LO, _Z_HI = -6.0, 3.0
"""Grid span in standard deviations of log-time: nothing is worth a poll below -6; above 3 (one job in
740) the distribution is likely wrong for this job (or it is stuck): the caller backs off instead of
trusting a hazard rate that keeps rising."""
_STEPS_PER_INTERVAL = 6.0
"""Grid points per optimal poll interval where intervals are shortest: planned costs come within
about 1 % of the continuous optimum."""


def _sf(z: float) -> float:
    """P(Z > z) for a standard normal, accurate in the far tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class Lognormal:
    """A completion-time distribution: ``ln T`` is normal around ``ln median`` with spread ``sigma``."""

    median: float
    sigma: float = DEFAULT_SPREAD

    def __post_init__(self) -> None:
        if not (self.median > 0 and math.isfinite(self.median)):
            raise ValueError(f"median must be a positive number of seconds, not {self.median!r}")
        if not (MIN_SPREAD <= self.sigma <= MAX_SPREAD):
            raise ValueError(f"sigma must lie in [{MIN_SPREAD}, {MAX_SPREAD}], not {self.sigma!r}")

    @classmethod
    def clamped(cls, median: float, sigma: float) -> Lognormal:
        """A catalogue's or an operator's figures, sigma brought into the range plans are made for."""
        return cls(median, min(max(sigma, MIN_SPREAD), MAX_SPREAD) if math.isfinite(sigma) else DEFAULT_SPREAD)

    def survival(self, t: float) -> float:
        return 1.0 if t <= 0 else _sf(math.log(t / self.median) / self.sigma)

    def quantile_z(self, z: float) -> float:
        return self.median * math.exp(self.sigma * z)

    @property
    def tail(self) -> float:
        """Beyond this time the plan ends (the job is slower than 739 in 740)."""
        return self.quantile_z(_Z_HI)

    def refined(self, durations: Sequence[float]) -> Lognormal:
        """The distribution of the next job, given this prior and the durations of recent jobs of the
        same model: the conjugate normal model of log-durations (the prior's median uncertain by
        PRIOR_LOCATION_SPREAD, its sigma worth PRIOR_SPREAD_WEIGHT jobs), predictive for one more job,
        with SPREAD_MARGIN. Jobs far off the rest (stuck ones) are left out."""
        logs = [math.log(d) for d in durations if d > 0 and math.isfinite(d)]
        if len(logs) >= 3:
            centre = statistics.median(logs)
            robust = 1.4826 * statistics.median(abs(v - centre) for v in logs)
            logs = [v for v in logs if abs(v - centre) <= _TRIM * max(robust, MIN_SPREAD)]
        n = len(logs)
        tau2 = PRIOR_LOCATION_SPREAD**2
        if n == 0:
            return Lognormal(self.median, min(math.sqrt(self.sigma**2 + tau2), MAX_SPREAD))
        mean = statistics.fmean(logs)
        squares = sum((v - mean) ** 2 for v in logs)
        variance = (PRIOR_SPREAD_WEIGHT * self.sigma**2 + squares) / (PRIOR_SPREAD_WEIGHT + n - 1)
        precision = 1 / tau2 + n / variance
        mu = (math.log(self.median) / tau2 + n * mean / variance) / precision
        sigma = SPREAD_MARGIN * math.sqrt(variance + 1 / precision)
        return Lognormal(math.exp(mu), min(max(sigma, MIN_SPREAD), MAX_SPREAD))


@dataclass(frozen=True)
class Plan:
    """Optimal poll times for a lognormal of median 1 and spread ``sigma``, at request cost ``cost``
    (in medians). Index 0 is the time of submission; ``after[i]`` is where to poll next when the
    last look, at ``times[i]``, found the job still running."""

    sigma: float
    cost: float
    times: array[float]
    after: array[float]
    expected: array[float]
    """Expected remaining delay + cost·polls, in medians, given not finished at ``times[i]``."""

    @property
    def tail(self) -> float:
        return self.times[-1]

    def next_after(self, x: float) -> float | None:
        """The next poll time (in medians) after a look at ``x`` found the job running; None past the tail."""
        i = bisect_right(self.times, x) - 1
        if i >= len(self.times) - 1:
            return None
        return self.after[max(i, 0)]

    def expected_cost(self, x: float) -> float:
        i = max(bisect_right(self.times, x) - 1, 0)
        return self.expected[i]


def _grid(sigma: float, cost: float) -> list[float]:
    """Times (medians) uniform in log-time, fine enough for the shortest optimal interval.

    Where the hazard rate is h the best interval is about sqrt(2·cost/h); for a lognormal
    h = m(z) / (x·sigma), m the inverse Mills ratio. A log-time step dz is x·sigma·dz long."""
    dz = 0.05
    z = -2.0
    while z <= _Z_HI:
        x = math.exp(sigma * z)
        mills = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) / _sf(z)
        interval = math.sqrt(2 * cost * x * sigma / mills)  # optimal spacing in time, medians
        dz = min(dz, interval / (x * sigma) / _STEPS_PER_INTERVAL)
        z += 0.25
    dz = max(dz, 0.002)
    count = math.ceil((_Z_HI - _Z_LO) / dz)
    return [0.0] + [math.exp(sigma * (_Z_LO + k * (_Z_HI - _Z_LO) / count)) for k in range(count + 1)]


def solve(sigma: float, cost: float) -> Plan:
    """The dynamic programme on the grid (not cached; ``plan_for`` is the cached entry point)."""
    times = _grid(sigma, cost)
    n = len(times)
    # F: P(T <= x); M: E[T; T <= x] (partial first moment), both for median 1.
    cdf = [0.0] + [1.0 - _sf(math.log(x) / sigma) for x in times[1:]]
    moment_total = math.exp(0.5 * sigma * sigma)
    moment = [0.0] + [moment_total * (1.0 - _sf(math.log(x) / sigma - sigma)) for x in times[1:]]
    survival = [1.0] + [_sf(math.log(x) / sigma) for x in times[1:]]
    # W[i] = cost·S_i + M_i + min_{j>i} (B_j - x_j·F_i),  B_j = x_j·F_j - M_j + W_j.
    # Lines y = B_j - x_j·q, added with rising slopes (j descending), queried at falling q = F_i.
    value = [0.0] * n
    best = [n - 1] * n
    lines_m: list[float] = []
    lines_b: list[float] = []
    lines_j: list[int] = []
    head = 0
    for i in range(n - 2, -1, -1):
        j = i + 1
        m, b = -times[j], times[j] * cdf[j] - moment[j] + value[j]
        # Drop lines from the back that the new one makes useless for every query.
        while len(lines_m) - head >= 2:
            m1, b1, m2, b2 = lines_m[-2], lines_b[-2], lines_m[-1], lines_b[-1]
            if (b - b2) * (m1 - m2) >= (b2 - b1) * (m2 - m):
                lines_m.pop()
                lines_b.pop()
                lines_j.pop()
            else:
                break
        lines_m.append(m)
        lines_b.append(b)
        lines_j.append(j)
        q = cdf[i]
        # Queries only fall: lines best for larger ones are never needed again.
        while (
            len(lines_m) - head >= 2 and lines_b[head + 1] + lines_m[head + 1] * q <= lines_b[head] + lines_m[head] * q
        ):
            head += 1
        value[i] = cost * survival[i] + moment[i] + lines_b[head] + lines_m[head] * q
        best[i] = lines_j[head]
    expected = array("d", (v / s if s > 0 else 0.0 for v, s in zip(value, survival, strict=True)))
    return Plan(sigma, cost, array("d", times), array("d", (times[j] for j in best)), expected)


def _round_key(sigma: float, cost: float) -> tuple[float, float]:
    """Nearby distributions share a plan: sigma to 0.01, cost to 2 % (the objective is flat at its optimum)."""
    step = math.log(1.02)
    return round(min(max(sigma, MIN_SPREAD), MAX_SPREAD), 2), math.exp(round(math.log(cost) / step) * step)


@functools.lru_cache(maxsize=128)
def _cached(sigma: float, cost: float) -> Plan:
    return solve(sigma, cost)


def plan_for(distribution: Lognormal, request_cost: float) -> Plan:
    """The (cached) plan for ``distribution`` when one status request is worth ``request_cost``
    seconds of detection delay."""
    cost = min(max(request_cost / distribution.median, 1e-6), 10.0)
    return _cached(*_round_key(distribution.sigma, cost))
