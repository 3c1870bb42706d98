"""AdaptivePoller on simulated time: request count, detection delay, first look, resumes, overdue jobs,
hints, rate limits, progress."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from bot.jobs.poll_planner import Lognormal, plan_for
from bot.jobs.polling import DEFAULT_POLL_COST, MAX_BACKOFF, AdaptivePoller


def simulate(
    duration: float,
    median: float,
    *,
    progress: bool = False,
    hint: float | None = None,
    poller: AdaptivePoller | None = None,
) -> tuple[int, float]:
    """Poll a job that finishes after ``duration`` simulated seconds; (status requests, detection delay)."""
    poller = poller or AdaptivePoller(median=median)
    now, polls = 0.0, 0
    delay = poller.next_delay(0.0, hint=hint)
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


def expectations(poller: AdaptivePoller, dist: Lognormal) -> tuple[float, float]:
    """Exact E[status requests] and E[detection delay] of a poller without progress figures, whose
    schedule is fixed: integrated with the lognormal's partial moments, no sampling noise."""
    times, now = [], 0.0
    while dist.survival(now) > 1e-9:
        now += poller.next_delay(now)
        poller.observe(now, None)
        times.append(now)

    def cdf(t: float) -> float:
        return 1 - dist.survival(t)

    def moment(t: float) -> float:  # E[T; T <= t]
        if t <= 0:
            return 0.0
        z = math.log(t / dist.median) / dist.sigma - dist.sigma
        return dist.median * math.exp(dist.sigma**2 / 2) * 0.5 * math.erfc(-z / math.sqrt(2))

    polls = delay = 0.0
    previous = 0.0
    for t in times:
        polls += dist.survival(previous)
        delay += t * (cdf(t) - cdf(previous)) - (moment(t) - moment(previous))
        previous = t
    return polls, delay


def test_sora2_jobs_take_at_most_twenty_polls_noticed_within_2_2_s() -> None:
    polls, delay = expectations(AdaptivePoller(median=180.0), Lognormal(180.0, 0.25))
    assert polls <= 20.0
    assert delay <= 2.2
    # The same figures by simulation (within sampling error).
    results = [simulate(d, 180.0) for d in spread(180.0)]
    assert statistics.fmean(p for p, _ in results) == pytest.approx(polls, rel=0.03)
    assert statistics.fmean(d for _, d in results) == pytest.approx(delay, rel=0.05)


@pytest.mark.parametrize("progress", [False, True])
def test_lognormal_spread_around_the_median(progress: bool) -> None:
    for median in (90.0, 420.0):
        results = [simulate(d, median, progress=progress) for d in spread(median, n=500)]
        assert statistics.fmean(p for p, _ in results) <= 0.1 * median + 5
        assert statistics.fmean(d for _, d in results) <= 0.02 * median + 0.5


def test_much_better_than_fixed_intervals() -> None:
    durations = spread(180.0, n=500)
    planned = [simulate(d, 180.0) for d in durations]
    # A fixed interval making the same number of requests notices about twice as late.
    interval = statistics.fmean(durations) / statistics.fmean(p for p, _ in planned)
    fixed_delay = statistics.fmean(math.ceil(d / interval) * interval - d for d in durations)
    assert statistics.fmean(d for _, d in planned) < fixed_delay / 1.5


def test_first_poll_comes_early_even_a_moment_after_submit() -> None:
    # Moderation refusals come within seconds; the runner asks a few ms after submit, never at exactly 0.
    poller = AdaptivePoller(median=180.0)
    assert poller.next_delay(0.003) == pytest.approx(5.0 - 0.003)
    # The plan takes over after it: nothing else until the time jobs start finishing.
    assert poller.next_delay(5.0) > 60.0
    # A job resumed long after submit is looked at straight away.
    assert AdaptivePoller(median=180.0).next_delay(500.0) == 0.0


def test_the_first_look_scales_with_the_job() -> None:
    assert AdaptivePoller(median=2.0).first_poll == 0.25
    assert AdaptivePoller(median=100.0).first_poll == pytest.approx(3.0)
    assert AdaptivePoller(median=400.0).first_poll == 5.0


def test_a_resumed_job_is_planned_from_its_real_age() -> None:
    fresh, resumed = AdaptivePoller(median=180.0), AdaptivePoller(median=180.0)
    fresh.next_delay(0.0)
    resumed.next_delay(170.0)  # looked at at once
    # At 170 s the job is in the dense window: a short wait, unlike a fresh job's at 10 s.
    assert resumed.next_delay(170.0) < 8.0 < fresh.next_delay(10.0)
    plan = plan_for(Lognormal(180.0), DEFAULT_POLL_COST)
    assert resumed.next_delay(170.0) == pytest.approx((plan.next_after(170.0 / 180.0) or 0) * 180.0 - 170.0)


def test_an_overdue_job_backs_off_boundedly_and_is_still_noticed() -> None:
    poller = AdaptivePoller(median=180.0)
    poller.next_delay(0.0)
    elapsed, delays = Lognormal(180.0).tail, []
    while elapsed < 3600.0:
        delays.append(poller.next_delay(elapsed))
        elapsed += delays[-1]
    assert delays == sorted(delays)
    assert delays[0] >= 0.01 * 180.0 and delays[-1] == MAX_BACKOFF == max(delays)
    # Ten times slower than its median (stuck, or a wrong prior): past the plan's tail the polls
    # thin out geometrically, and the end is still noticed within a tenth of the job's age.
    in_plan, _ = simulate(Lognormal(180.0).tail, 180.0)
    polls, delay = simulate(1800.0, 180.0)
    assert delay <= 0.1 * 1800.0 and polls - in_plan < 40
    # A tiny median (test fakes) backs off on its own scale, not by a minute.
    small = AdaptivePoller(median=0.5)
    small.next_delay(0.0)
    assert small.next_delay(5.0) <= 0.5


def test_poll_after_hint_is_a_floor() -> None:
    poller = AdaptivePoller(median=180.0)
    assert poller.next_delay(0.0, hint=12.0) == 12.0  # above the 5 s first poll
    for elapsed in (20.0, 120.0, 170.0, 250.0):
        assert poller.next_delay(elapsed, hint=12.0) >= 12.0
    # A hint below the poller's own delay changes nothing.
    assert poller.next_delay(150.0, hint=0.5) == poller.planned_delay(150.0)


def test_hint_floor_in_simulation_bounds_the_poll_count() -> None:
    polls, _ = simulate(180.0, 180.0, hint=20.0)
    assert polls <= math.ceil(180.0 / 20.0) + 1


def test_rate_limiting_increases_delays_until_a_good_answer() -> None:
    poller = AdaptivePoller(median=180.0)
    poller.next_delay(0.0)
    normal = poller.next_delay(150.0)
    backoffs = [poller.rate_limited(None) for _ in range(4)]
    assert backoffs == sorted(backoffs) and backoffs[0] < backoffs[-1]
    assert backoffs[0] > normal
    assert poller.next_delay(150.0) >= backoffs[-1]  # still backing off
    assert poller.rate_limited(100.0) >= 100.0  # the server's Retry-After wins when longer
    assert max(poller.rate_limited(None) for _ in range(20)) <= 120.0
    poller.observe(160.0, None)  # a successful answer ends the back-off
    assert poller.next_delay(150.0) == pytest.approx(normal)


def test_progress_samples_re_estimate_the_end() -> None:
    poller = AdaptivePoller(median=180.0)
    assert poller.estimated_total(10.0) == 180.0
    poller.observe(20.0, 20.0)
    poller.observe(40.0, 40.0)  # 1 %/s: done at 100 s, not 180 s
    assert poller.estimated_total(40.0) == pytest.approx(100.0)
    assert 100.0 < poller.distribution().median < 115.0  # mostly the progress, a little the prior
    assert poller.distribution().sigma < poller.prior.sigma
    slow = AdaptivePoller(median=180.0)
    slow.observe(60.0, 10.0)
    slow.observe(120.0, 20.0)  # 1/6 %/s: 600 s, but never trusted beyond 3x the prior
    assert slow.estimated_total(120.0) == 540.0
    # 0 and 100 % are not rate samples.
    flat = AdaptivePoller(median=180.0)
    flat.observe(5.0, 0.0)
    flat.observe(10.0, 100.0)
    assert flat.estimated_total(10.0) == 180.0
    assert flat.distribution() == flat.prior


def test_progress_brings_dense_polling_forward_for_a_fast_job() -> None:
    without = AdaptivePoller(median=180.0)
    without.next_delay(0.0)
    with_progress = AdaptivePoller(median=180.0)
    with_progress.next_delay(0.0)
    with_progress.observe(20.0, 25.0)
    with_progress.observe(40.0, 50.0)  # done at 80 s
    assert with_progress.next_delay(75.0) < 5.0
    assert without.next_delay(75.0) > 5 * with_progress.next_delay(75.0)


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
