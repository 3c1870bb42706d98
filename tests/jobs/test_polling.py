"""AdaptivePoller on simulated time: request count, detection delay, hints, rate limits, progress."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from bot.jobs.polling import AdaptivePoller


def simulate(
    duration: float, expected: float, *, progress: bool = False, hint: float | None = None
) -> tuple[int, float]:
    """Poll a job that finishes after ``duration`` simulated seconds; (status requests, detection delay)."""
    poller = AdaptivePoller(expected=expected)
    now, polls = 0.0, 0
    delay = poller.next_delay(0.0)
    while True:
        now += delay
        polls += 1
        if now >= duration:
            return polls, now - duration
        poller.observe(now, 100.0 * now / duration if progress else None)
        delay = poller.next_delay(now, hint=hint)
        assert delay > 0


def spread(median: float, n: int = 2000, sigma: float = 0.25, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(median), sigma) for _ in range(n)]


def test_a_three_minute_job_takes_few_polls_and_is_noticed_quickly() -> None:
    polls, delay = simulate(180.0, 180.0)
    assert polls <= 25
    assert delay <= 4.5  # one near-window interval at most


@pytest.mark.parametrize("progress", [False, True])
def test_lognormal_spread_around_the_expected_time(progress: bool) -> None:
    results = [simulate(d, 180.0, progress=progress) for d in spread(180.0)]
    mean_polls = statistics.fmean(p for p, _ in results)
    mean_delay = statistics.fmean(d for _, d in results)
    assert mean_polls <= 25
    assert mean_delay <= 3.0


def test_much_better_than_fixed_intervals() -> None:
    durations = spread(180.0, n=500)
    adaptive_polls = statistics.fmean(simulate(d, 180.0)[0] for d in durations)
    fixed_1s_polls = statistics.fmean(math.ceil(d) for d in durations)  # the openai SDK's default
    assert adaptive_polls < fixed_1s_polls / 5


def test_first_poll_comes_early_even_a_moment_after_submit() -> None:
    # Moderation refusals come within seconds; the runner asks a few ms after submit, never at exactly 0.
    poller = AdaptivePoller(expected=180.0)
    assert poller.next_delay(0.003) == pytest.approx(5.0 - 0.003)
    # A job resumed long after submit is looked at straight away.
    assert AdaptivePoller(expected=180.0).next_delay(500.0) == 0.0


def test_intervals_scale_with_the_expected_time() -> None:
    small = AdaptivePoller(expected=2.0)
    assert small.first_poll == 0.25 and small.near_interval == 0.25
    big = AdaptivePoller(expected=400.0)
    assert big.first_poll == 5.0 and big.near_interval == 4.5 and big.max_interval == 30.0


def test_no_delay_exceeds_the_maximum_interval_before_an_overrun() -> None:
    poller = AdaptivePoller(expected=400.0)
    poller.next_delay(0.0)
    for elapsed in range(1, 400, 7):
        assert poller.next_delay(float(elapsed)) <= poller.max_interval


def test_poll_after_hint_is_a_floor() -> None:
    poller = AdaptivePoller(expected=180.0)
    assert poller.next_delay(0.0, hint=12.0) == 12.0  # above the 5 s first poll
    for elapsed in (20.0, 120.0, 170.0, 250.0):
        assert poller.next_delay(elapsed, hint=12.0) >= 12.0
    # A hint below the poller's own delay changes nothing.
    assert poller.next_delay(20.0, hint=0.5) == AdaptivePoller(expected=180.0, _asked=1).next_delay(20.0)


def test_hint_floor_in_simulation_bounds_the_poll_count() -> None:
    polls, _ = simulate(180.0, 180.0, hint=20.0)
    assert polls <= math.ceil(180.0 / 20.0) + 1


def test_rate_limiting_increases_delays_until_a_good_answer() -> None:
    poller = AdaptivePoller(expected=180.0)
    poller.next_delay(0.0)
    normal = poller.next_delay(150.0)
    backoffs = [poller.rate_limited(None) for _ in range(4)]
    assert backoffs == sorted(backoffs) and backoffs[0] < backoffs[-1]
    assert backoffs[0] > normal
    assert poller.next_delay(150.0) >= backoffs[-1]  # still backing off
    assert poller.rate_limited(100.0) >= 100.0  # the server's Retry-After wins when longer
    assert max(poller.rate_limited(None) for _ in range(20)) <= 120.0
    poller.observe(160.0, None)  # a successful answer ends the back-off
    assert poller.next_delay(160.0) == pytest.approx(normal)


def test_progress_samples_re_estimate_the_end() -> None:
    poller = AdaptivePoller(expected=180.0)
    assert poller.estimated_total(10.0) == 180.0
    poller.observe(20.0, 20.0)
    poller.observe(40.0, 40.0)  # 1 %/s: done at 100 s, not 180 s
    assert poller.estimated_total(40.0) == pytest.approx(100.0)
    slow = AdaptivePoller(expected=180.0)
    slow.observe(60.0, 10.0)
    slow.observe(120.0, 20.0)  # 1/6 %/s: 600 s, but never trusted beyond 3x the prior
    assert slow.estimated_total(120.0) == 540.0
    # 0 and 100 % are not rate samples.
    flat = AdaptivePoller(expected=180.0)
    flat.observe(5.0, 0.0)
    flat.observe(10.0, 100.0)
    assert flat.estimated_total(10.0) == 180.0


def test_progress_brings_dense_polling_forward_for_a_fast_job() -> None:
    without = AdaptivePoller(expected=180.0)
    without.next_delay(0.0)
    with_progress = AdaptivePoller(expected=180.0)
    with_progress.next_delay(0.0)
    with_progress.observe(20.0, 25.0)
    with_progress.observe(40.0, 50.0)  # done at 80 s
    assert with_progress.next_delay(70.0) == with_progress.near_interval
    assert without.next_delay(70.0) > with_progress.next_delay(70.0)


@pytest.mark.parametrize("median", [100.0, 250.0])
def test_progress_helps_when_the_job_is_off_its_usual_time(median: float) -> None:
    # Faster than usual: noticed sooner. Slower than usual: fewer wasted polls, still noticed quickly.
    durations = spread(median, n=500)
    blind = [simulate(d, 180.0) for d in durations]
    informed = [simulate(d, 180.0, progress=True) for d in durations]
    assert statistics.fmean(d for _, d in informed) < statistics.fmean(d for _, d in blind)
    assert statistics.fmean(d for _, d in informed) <= 3.0
    if median > 180.0:
        assert statistics.fmean(p for p, _ in informed) < statistics.fmean(p for p, _ in blind)
