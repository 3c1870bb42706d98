"""Benchmark: status requests per job and completion-detection delay of the planned poller, against the
best possible schedule computed here, independently of bot/jobs/poll_planner.py.

Job durations are lognormal (median = the model's typical time, sigma 0.25): sora-2 (3 min), a fast
model (90 s) and a pro model (7 min). For each, the optimum is the schedule minimising
E[delay] + λ·E[polls] at the poller's λ (``DEFAULT_POLL_COST``), found by a brute-force dynamic programme
on a uniform grid of seconds with cell masses (no closed forms, no hull trick). Every fixed schedule
(no progress figures: Segmind, relays) is scored exactly by integration over a fine grid; p95 delays
come from 20,000 sampled jobs. Then the learning: a prior 2x too long or too short, jobs run one
after another, each planned from the durations of those before it (as the runner does from the
database); the table shows how close to the optimum for the true distribution it gets.

Nothing sleeps: every poll is a point on a simulated clock. Prints markdown; ``--out FILE`` appends
it to FILE as well. Run: ``python -m bench.bench_polling``.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bot.jobs.poll_planner import Lognormal, plan_for, solve
from bot.jobs.polling import DEFAULT_POLL_COST, AdaptivePoller

PRIORS: dict[str, tuple[float, float]] = {
    "sora-2": (180.0, 0.25),
    "fast (90 s)": (90.0, 0.25),
    "pro (7 min)": (420.0, 0.25),
}
SAMPLES = 20_000


def cdf(median: float, sigma: float, t: float) -> float:
    return 0.0 if t <= 0 else 0.5 * math.erfc(-math.log(t / median) / (sigma * math.sqrt(2)))


def optimum(median: float, sigma: float, lam: float, *, cells: int = 2400) -> list[float]:
    """Best poll times from submission, by brute force on a uniform grid reaching 4.5 sigma.

    State i: the last poll was at grid time t_i and the job was still running. Choosing the next
    poll at t_j costs lam (if running at t_i) plus the delay of jobs ending in (t_i, t_j], each
    counted at its cell's midpoint; V[i] is that cost summed along the best path, unconditioned."""
    horizon = median * math.exp(4.5 * sigma)
    h = horizon / cells
    grid = [k * h for k in range(cells + 1)]
    c = [cdf(median, sigma, t) for t in grid]
    mass = [0.0] + [c[k] - c[k - 1] for k in range(1, cells + 1)]  # mass of cell (t_{k-1}, t_k]
    mid = [0.0] + [(k - 0.5) * h for k in range(1, cells + 1)]
    cum_mass, cum_mid = [0.0] * (cells + 1), [0.0] * (cells + 1)
    for k in range(1, cells + 1):
        cum_mass[k] = cum_mass[k - 1] + mass[k]
        cum_mid[k] = cum_mid[k - 1] + mass[k] * mid[k]
    value = [0.0] * (cells + 1)
    choice = [cells] * (cells + 1)
    for i in range(cells - 1, -1, -1):
        alive = 1.0 - c[i]
        best, best_j = math.inf, cells
        for j in range(i + 1, cells + 1):
            delay = grid[j] * (cum_mass[j] - cum_mass[i]) - (cum_mid[j] - cum_mid[i])
            total = lam * alive + delay + value[j]
            if total < best:
                best, best_j = total, j
        value[i], choice[i] = best, best_j
    times, i = [], 0
    while i < cells:
        i = choice[i]
        times.append(grid[i])
    return times


def score(times: list[float], median: float, sigma: float) -> tuple[float, float]:
    """Exact (fine-grid) E[polls] and E[delay] of fixed poll ``times``; jobs ending after the last poll
    are counted as noticed by it (the schedules here all reach beyond 4.5 sigma)."""
    polls = delay = 0.0
    previous = 0.0
    for t in times:
        polls += 1.0 - cdf(median, sigma, previous)
        steps = max(4, math.ceil((t - previous) / (median * 0.0005)))
        width = (t - previous) / steps
        for k in range(steps):
            a = previous + k * width
            p = cdf(median, sigma, a + width) - cdf(median, sigma, a)
            delay += p * (t - a - width / 2)
        previous = t
    return polls, delay


def poller_schedule(poller: AdaptivePoller, until: float) -> list[float]:
    """The poll times of a poller that never sees progress (its schedule is then fixed)."""
    times, now = [], 0.0
    while now < until:
        now += poller.next_delay(now)
        poller.observe(now, None)
        times.append(now)
    return times


def fixed_schedule(interval: float, until: float) -> list[float]:
    return [interval * k for k in range(1, math.ceil(until / interval) + 1)]


def delays_of(times: list[float], durations: list[float]) -> list[float]:
    return [times[min(bisect.bisect_left(times, d), len(times) - 1)] - d for d in durations]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def with_progress(duration: float, median: float, sigma: float) -> tuple[int, float]:
    """A provider reporting whole-percent progress, linear in time: (polls, delay)."""
    poller = AdaptivePoller(median=median, spread=sigma)
    now, polls = 0.0, 0
    delay = poller.next_delay(0.0)
    while True:
        now += delay
        polls += 1
        if now >= duration:
            return polls, now - duration
        poller.observe(now, float(math.floor(100.0 * now / duration)))
        delay = poller.next_delay(now)


@dataclass(frozen=True)
class Row:
    polls: float
    delay: float
    p95: float

    @property
    def product(self) -> float:
        return self.polls * self.delay


def priors_table(lam: float, seed: int) -> tuple[str, dict[str, Row]]:
    lines = [
        f"λ = {lam} s per status request (`POLL_COST_SECONDS`); durations lognormal, sigma 0.25; means exact, "
        f"p95 over {SAMPLES:,} sampled jobs.",
        "",
        "| prior | policy | polls/job | delay mean (s) | delay p95 (s) | polls × delay | ratio to optimum |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    optima: dict[str, Row] = {}
    for name, (median, sigma) in PRIORS.items():
        rng = random.Random(seed)
        durations = [rng.lognormvariate(math.log(median), sigma) for _ in range(SAMPLES)]
        until = median * math.exp(5.0 * sigma)
        best = optimum(median, sigma, lam)
        schedules: dict[str, list[float]] = {
            "optimum (bench DP)": best,
            "planned poller": poller_schedule(AdaptivePoller(median=median, spread=sigma, request_cost=lam), until),
            "fixed 1 s (openai SDK)": fixed_schedule(1.0, until),
            "fixed 30 s (seed example)": fixed_schedule(30.0, until),
        }
        rows: dict[str, Row] = {}
        for policy, times in schedules.items():
            if times[-1] < until:  # the DP stops at 4.5 sigma: one poll more catches the rest
                times = [*times, until]
            polls, delay = score(times, median, sigma)
            rows[policy] = Row(polls, delay, percentile(delays_of(times, durations), 0.95))
        outcomes = [with_progress(d, median, sigma) for d in durations[:5000]]
        rows["planned poller + progress"] = Row(
            statistics.fmean(p for p, _ in outcomes),
            statistics.fmean(d for _, d in outcomes),
            percentile([d for _, d in outcomes], 0.95),
        )
        optima[name] = rows["optimum (bench DP)"]
        for policy, row in rows.items():
            ratio = "—" if "progress" in policy else f"{row.product / optima[name].product:.3f}"
            lines.append(
                f"| {name} | {policy} | {row.polls:.2f} | {row.delay:.2f} | {row.p95:.2f} | "
                f"{row.product:.1f} | {ratio} |"
            )
    return "\n".join(lines) + "\n", optima


def learning_table(lam: float, seed: int, optimum_row: Row, *, histories: int = 20) -> str:
    """Prior 2x off: run jobs one after another, each planned from the jobs before it."""
    median, sigma = PRIORS["sora-2"]
    checkpoints = (0, 1, 5, 10, 20, 40)
    until = median * math.exp(5.0 * sigma)
    lines = [
        f"Learning (true: sora-2, median {median:.0f} s, sigma {sigma}); {histories} histories of "
        f"{checkpoints[-1]} jobs each. After k finished jobs, the poller planned from what they took "
        "(submit to detection, as the runner learns it) is scored exactly against the true distribution; "
        "ratio = its polls × delay over the optimum's. Before any job (k = 0) the prior is planned wider, "
        "as it may be off: that costs the right prior a little on a model's first jobs.",
        "",
        "| prior median | after k jobs | polls/job | delay mean (s) | ratio mean | ratio worst |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for prior_median in (2 * median, median / 2, median):
        prior = Lognormal(prior_median, sigma)
        found: dict[int, list[tuple[float, float]]] = {k: [] for k in checkpoints}
        for history in range(histories):
            rng = random.Random(seed * 1000 + history)
            seen: list[float] = []
            for k in range(checkpoints[-1] + 1):
                learned = prior.refined(seen)
                poller = AdaptivePoller(median=learned.median, spread=learned.sigma, request_cost=lam)
                times = poller_schedule(poller, until)
                if k in found:
                    found[k].append(score([*times, until] if times[-1] < until else times, median, sigma))
                duration = rng.lognormvariate(math.log(median), sigma)
                noticed = times[min(bisect.bisect_left(times, duration), len(times) - 1)]
                seen.append(max(noticed, duration))
        for k in checkpoints:
            ratios = [p * d / optimum_row.product for p, d in found[k]]
            lines.append(
                f"| {prior_median:.0f} s | {k} | {statistics.fmean(p for p, _ in found[k]):.2f} | "
                f"{statistics.fmean(d for _, d in found[k]):.2f} | {statistics.fmean(ratios):.3f} | {max(ratios):.3f} |"
            )
    return "\n".join(lines) + "\n"


def timing_line(lam: float) -> str:
    """Cold plan (one new distribution) and warm "when next?" calls."""
    started = time.perf_counter()
    solve(0.25, lam / 180.0)
    cold = time.perf_counter() - started
    poller = AdaptivePoller(median=180.0, request_cost=lam)
    poller.plan()
    poller.next_delay(0.0)
    calls = 20_000
    started = time.perf_counter()
    for k in range(calls):
        poller.next_delay(100.0 + (k % 80))
    warm = (time.perf_counter() - started) / calls
    started = time.perf_counter()
    for _ in range(calls):
        plan_for(Lognormal(180.0, 0.25), lam)
    lookup = (time.perf_counter() - started) / calls
    return (
        f"Planning cost: a new distribution's plan {cold * 1000:.1f} ms (computed once, then cached); "
        f'a cached plan lookup {lookup * 1e6:.1f} µs; a "when next?" answer {warm * 1e6:.1f} µs.'
    )


def run(lam: float, seed: int) -> str:
    started = time.perf_counter()
    table, optima = priors_table(lam, seed)
    learning = learning_table(lam, seed, optima["sora-2"])
    frontier = frontier_line(seed)
    return "\n".join(
        [table, learning, frontier, timing_line(lam), f"\n(bench computed in {time.perf_counter() - started:.0f} s)"]
    )


def frontier_line(seed: int) -> str:
    """The optimum for other λ on the sora-2 prior: polls × delay is nearly constant along it."""
    median, sigma = PRIORS["sora-2"]
    parts = []
    for lam in (0.05, 0.2):
        polls, delay = score(optimum(median, sigma, lam, cells=1200), median, sigma)
        parts.append(f"λ {lam}: {polls:.1f} polls at {delay:.2f} s (product {polls * delay:.1f})")
    return "Optimum frontier on the sora-2 prior (bench DP): " + "; ".join(parts) + ".\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cost", type=float, default=DEFAULT_POLL_COST, help="λ, seconds per status request")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, help="append the output to this file too")
    args = parser.parse_args()
    text = run(args.cost, args.seed)
    print(text)
    if args.out:
        with args.out.open("a", encoding="utf-8") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
