"""Benchmark: status requests per job and completion-to-detection delay per provider and model, polled and
with webhooks (simulated time; nothing sleeps).

Each model's generation time is lognormal around its catalogue typical time and spread
(bot/catalogue/models.toml). The bot's AdaptivePoller is driven exactly as the runner drives it
(``bot.jobs.polling.request_cost`` decides λ for a job with or without a callback):

* polled: the provider's own figures only (Runway reports progress 0-1, linear in time here; fal's
  queue position and the others give no progress);
* webhook (fal, Replicate, with ``PUBLIC_BASE_URL``): the signed callback wakes the job as it ends, and
  the job asks once; the polls made before it count. The callback's own transit time is not simulated
  (tests/e2e/test_fal.py measures 0.04-0.05 s from fal's completion to the post on loopback);
* webhook lost: the same poller, but the callback never comes (the safety net alone).

The delay is from the job finishing to the status request that sees it; the post follows after the
download and the Discord upload (not simulated). Run: ``python -m bench.bench_providers``.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from bot.catalogue import load_catalogue
from bot.jobs.polling import DEFAULT_POLL_COST, AdaptivePoller, request_cost

CALLBACKS = frozenset({"fal", "replicate"})
PROGRESS = frozenset({"runway"})
PROVIDERS = ("fal", "replicate", "runway", "segmind")


@dataclass(frozen=True)
class Outcome:
    polls: int
    delay: float


def simulate(duration: float, median: float, sigma: float, *, progress: bool, callback: bool, lost: bool) -> Outcome:
    cost = request_cost(DEFAULT_POLL_COST, median, calls_back=callback)
    poller = AdaptivePoller(median=median, spread=sigma, request_cost=cost)
    now, polls = 0.0, 0
    delay = poller.next_delay(0.0)
    while True:
        if callback and not lost and now + delay >= duration:
            return Outcome(polls + 1, 0.0)  # woken at the end: one status request sees it done
        now += delay
        polls += 1
        if now >= duration:
            return Outcome(polls, now - duration)
        poller.observe(now, float(math.floor(100.0 * now / duration)) if progress else None)
        delay = poller.next_delay(now)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(samples: int, seed: int) -> str:
    catalogue = load_catalogue()
    lines = [
        f"{samples} simulated 8 s clips per model, generation times lognormal around the catalogue's typical "
        f"time; POLL_COST_SECONDS={DEFAULT_POLL_COST}.",
        "",
        "| provider | model | mode | typical (s) | polls/job mean | polls/job p95 | delay mean (s) | delay p95 (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    modes: list[tuple[str, Callable[[str], bool], dict[str, bool]]] = [
        ("polled", lambda p: True, {"callback": False, "lost": False}),
        ("webhook", lambda p: p in CALLBACKS, {"callback": True, "lost": False}),
        ("webhook lost", lambda p: p in CALLBACKS, {"callback": True, "lost": True}),
    ]
    for provider in PROVIDERS:
        for model_id in catalogue.hosts_for(provider):
            spec = catalogue.models[model_id]
            if spec.retired:
                continue
            median = spec.expected_seconds(8)
            for mode, applies, flags in modes:
                if not applies(provider):
                    continue
                rng = random.Random(seed)
                durations = [rng.lognormvariate(math.log(median), spec.spread) for _ in range(samples)]
                outcomes = [simulate(d, median, spec.spread, progress=provider in PROGRESS, **flags) for d in durations]
                polls = [float(o.polls) for o in outcomes]
                delays = [o.delay for o in outcomes]
                shown = mode + (" + progress" if provider in PROGRESS else "")
                lines.append(
                    f"| {provider} | {model_id} | {shown} | {median:.0f} | {statistics.fmean(polls):.1f} | "
                    f"{percentile(polls, 0.95):.0f} | {statistics.fmean(delays):.2f} | "
                    f"{percentile(delays, 0.95):.2f} |"
                )
    lines += [
        "",
        "With a webhook the poller keeps its early look (moderation refusals come within seconds) and plans the",
        "rest as a safety net: ≤ 3 status requests a job, detected as the callback arrives. When the callback is",
        "lost, the safety net still finds the video, later (the 'webhook lost' rows).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    print(run(args.samples, args.seed))


if __name__ == "__main__":
    main()
