"""Benchmark: status requests per job and completion-detection delay of polling policies (simulated time).

Job durations come from a lognormal spread around the typical time (median 180 s for sora-2,
400 s for sora-2-pro; sigma 0.25 by default). Policies compared:

* ``AdaptivePoller`` without progress reports (Segmind) and with them (OpenAI-style, relay);
  progress is reported as a whole percent, linear in time, as the relays do;
* a fixed 1 s interval (the openai SDK's ``create_and_poll`` default);
* a fixed 30 s interval (the seed's example bot).

Nothing sleeps: every poll is a point on a simulated clock. Prints a markdown table; ``--out FILE``
appends it to FILE as well. Run: ``python -m bench.bench_polling``.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.jobs.polling import AdaptivePoller

MODELS: dict[str, float] = {"sora-2": 180.0, "sora-2-pro": 400.0}


@dataclass(frozen=True)
class Outcome:
    polls: int
    delay: float
    """Seconds between the job finishing and the poll that noticed it."""


def adaptive(duration: float, expected: float, *, progress: bool) -> Outcome:
    poller = AdaptivePoller(expected=expected)
    now, polls = 0.0, 0
    delay = poller.next_delay(0.0)
    while True:
        now += delay
        polls += 1
        if now >= duration:
            return Outcome(polls, now - duration)
        poller.observe(now, float(math.floor(100.0 * now / duration)) if progress else None)
        delay = poller.next_delay(now)


def fixed(duration: float, interval: float) -> Outcome:
    polls = math.ceil(duration / interval)
    return Outcome(polls, polls * interval - duration)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(samples: int, sigma: float, seed: int) -> str:
    policies: dict[str, Callable[[float, float], Outcome]] = {
        "adaptive": lambda d, e: adaptive(d, e, progress=False),
        "adaptive + progress": lambda d, e: adaptive(d, e, progress=True),
        "fixed 1 s (openai SDK)": lambda d, e: fixed(d, 1.0),
        "fixed 30 s (seed example)": lambda d, e: fixed(d, 30.0),
    }
    lines = [
        f"Polling, {samples} simulated jobs per model, durations lognormal (median = typical time, sigma {sigma}).",
        "",
        "| model | policy | polls/job mean | polls/job p95 | detection delay mean (s) | delay p95 (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model, typical in MODELS.items():
        rng = random.Random(seed)
        durations = [rng.lognormvariate(math.log(typical), sigma) for _ in range(samples)]
        for name, policy in policies.items():
            outcomes = [policy(d, typical) for d in durations]
            polls = [float(o.polls) for o in outcomes]
            delays = [o.delay for o in outcomes]
            lines.append(
                f"| {model} | {name} | {statistics.fmean(polls):.1f} | {percentile(polls, 0.95):.0f} | "
                f"{statistics.fmean(delays):.2f} | {percentile(delays, 0.95):.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, help="append the table to this file too")
    args = parser.parse_args()
    table = run(args.samples, args.sigma, args.seed)
    print(table)
    if args.out:
        with args.out.open("a", encoding="utf-8") as out:
            out.write(table + "\n")


if __name__ == "__main__":
    main()
