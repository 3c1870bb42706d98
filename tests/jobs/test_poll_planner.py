"""The poll planner's dynamic programme: optimal, conditional, scale-free, cached; learning a model's times."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from bot.jobs import poll_planner
from bot.jobs.poll_planner import Lognormal, plan_for, solve

SORA2 = Lognormal(180.0, 0.25)


def schedule(dist: Lognormal, cost: float, start: float = 0.0) -> list[float]:
    """The plan's poll times (seconds) from ``start`` until its tail."""
    plan = plan_for(dist, cost)
    times, x = [], start / dist.median
    while (x := plan.next_after(x)) is not None:  # type: ignore[assignment]
        times.append(x * dist.median)
    return times


def objective(times: list[float], dist: Lognormal, cost: float, start: float = 0.0) -> float:
    """E[delay] + cost·E[polls] of fixed poll ``times`` given T > ``start``, integrated independently
    (midpoint rule on the lognormal density; T beyond the last poll is left out)."""
    alive = dist.survival(start)
    total, previous = 0.0, start
    for t in times:
        # Each poll is paid if the job was still running at the previous one.
        total += cost * dist.survival(previous) / alive
        steps = 200
        width = (t - previous) / steps
        for k in range(steps):
            x = previous + (k + 0.5) * width
            density = math.exp(-0.5 * (math.log(x / dist.median) / dist.sigma) ** 2) / (
                x * dist.sigma * math.sqrt(2 * math.pi)
            )
            total += (t - x) * density * width / alive
        previous = t
    return total


def brute_force(sigma: float, cost: float, times: list[float]) -> tuple[list[float], list[int]]:
    """The same recursion on the same grid, every candidate tried, no algebra."""
    n = len(times)
    dist = Lognormal(1.0, sigma)
    cdf = [1 - dist.survival(x) for x in times]
    moment = [
        0.0 if x == 0 else math.exp(sigma * sigma / 2) * (1 - poll_planner._sf(math.log(x) / sigma - sigma))
        for x in times
    ]
    value, best = [0.0] * n, [n - 1] * n
    for i in range(n - 2, -1, -1):
        options = [
            (cost * (1 - cdf[i]) + times[j] * (cdf[j] - cdf[i]) - (moment[j] - moment[i]) + value[j], j)
            for j in range(i + 1, n)
        ]
        value[i], best[i] = min(options)
    return [v / (1 - c) for v, c in zip(value, cdf, strict=True)], best


@pytest.mark.parametrize(("sigma", "cost"), [(0.25, 0.115 / 180), (0.5, 0.01), (0.1, 0.2)])
def test_the_hull_trick_finds_what_trying_every_next_poll_finds(
    sigma: float, cost: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(poll_planner, "_STEPS_PER_INTERVAL", 0.4)  # a coarse grid: brute force is O(n²)
    plan = solve(sigma, cost)
    expected, best = brute_force(sigma, cost, list(plan.times))
    assert len(plan.times) > 50
    for i in range(len(plan.times) - 1):
        assert plan.expected[i] == pytest.approx(expected[i], rel=1e-7, abs=1e-12)
        assert plan.after[i] == plan.times[best[i]]


def test_no_nearby_schedule_does_better() -> None:
    cost = 0.115
    best = schedule(SORA2, cost)
    optimum = objective(best, SORA2, cost)
    rng = random.Random(5)
    for _ in range(30):
        moved = sorted(t * (1 + rng.uniform(-0.03, 0.03)) for t in best)
        assert objective(moved, SORA2, cost) >= optimum * 0.999
    # Fewer or more polls are worse too: drop one, or add one halfway between two.
    middle = len(best) // 2
    assert objective(best[:middle] + best[middle + 1 :], SORA2, cost) > optimum
    extra = sorted([*best, (best[middle] + best[middle + 1]) / 2])
    assert objective(extra, SORA2, cost) > optimum


def test_the_plans_own_expected_cost_is_what_its_schedule_costs() -> None:
    cost = 0.115
    plan = plan_for(SORA2, cost)
    independent = objective(schedule(SORA2, cost), SORA2, cost)
    assert plan.expected_cost(0.0) * SORA2.median == pytest.approx(independent, rel=0.01)


def test_dearer_requests_buy_fewer_polls_and_later_notice() -> None:
    cheap, dear = schedule(SORA2, 0.05), schedule(SORA2, 0.5)
    assert len(dear) < len(cheap)
    assert min(b - a for a, b in itertools.pairwise(dear)) > min(b - a for a, b in itertools.pairwise(cheap))


def test_polls_are_sparse_early_and_dense_where_jobs_finish() -> None:
    times = schedule(SORA2, 0.115)
    assert 80.0 < times[0] < 140.0  # nothing finishes in the first half of a lognormal(180, 0.25)
    gaps = {round(t): b - t for t, b in itertools.pairwise(times)}
    near_median = min(gaps.items(), key=lambda item: abs(item[0] - 180.0))[1]
    assert near_median < 6.0
    assert near_median < times[1] - times[0]
    assert times[-1] >= SORA2.quantile_z(2.9)  # the plan covers all but one job in 740


def test_a_plan_is_scale_free_and_conditional_on_the_job_still_running() -> None:
    # Twice the median at twice the request cost: the same schedule, twice as long.
    double = schedule(Lognormal(360.0, 0.25), 0.23)
    assert double == pytest.approx([2 * t for t in schedule(SORA2, 0.115)])
    # Resumed at 150 s: the polls still to come are the optimum given T > 150 s.
    later = schedule(SORA2, 0.115, start=150.0)
    assert later[0] > 150.0 and later[0] - 150.0 < 10.0
    cost_later = objective(later, SORA2, 0.115, start=150.0)
    rng = random.Random(9)
    for _ in range(10):
        moved = sorted(150.0 + (t - 150.0) * (1 + rng.uniform(-0.05, 0.05)) for t in later)
        assert objective(moved, SORA2, 0.115, start=150.0) >= cost_later * 0.999


def test_plans_are_cached_per_distribution_and_nearby_ones_share() -> None:
    first = plan_for(SORA2, 0.115)
    assert plan_for(Lognormal(180.0, 0.25), 0.115) is first
    # Rounded (sigma to 0.01, cost to 2 %): medians within 1 % share one or two plans.
    assert len({id(plan_for(Lognormal(180.0 + k / 10, 0.2502), 0.115)) for k in range(18)}) <= 2
    assert plan_for(Lognormal(180.0, 0.3), 0.115) is not first
    assert plan_for(SORA2, 0.2) is not first


def test_past_the_tail_there_is_no_plan() -> None:
    plan = plan_for(SORA2, 0.115)
    assert plan.next_after(plan.tail / 1.001) is not None
    assert plan.next_after(plan.tail * 1.001) is None


@pytest.mark.parametrize("bad", [0.0, -5.0, math.inf, math.nan])
def test_a_distribution_needs_a_positive_median(bad: float) -> None:
    with pytest.raises(ValueError, match="median"):
        Lognormal(bad)
    with pytest.raises(ValueError, match="sigma"):
        Lognormal(180.0, 3.0)
    # A catalogue's odd spread is brought into range instead.
    assert Lognormal.clamped(180.0, 3.0).sigma == 1.5
    assert Lognormal.clamped(180.0, 0.0).sigma == 0.05
    assert Lognormal.clamped(180.0, math.nan).sigma == 0.25


@pytest.mark.parametrize("true_median", [90.0, 360.0])
def test_twenty_jobs_teach_a_prior_that_was_twice_wrong(true_median: float) -> None:
    rng = random.Random(11)
    durations = [rng.lognormvariate(math.log(true_median), 0.25) for _ in range(20)]
    learned = SORA2.refined(durations)
    assert learned.median == pytest.approx(true_median, rel=0.15)
    assert 0.15 < learned.sigma < 0.4


def test_learning_ignores_nonsense_and_shrugs_off_a_stuck_job() -> None:
    # No job finished yet: the prior's median, planned wider (it may be off).
    unknown = SORA2.refined([])
    assert unknown.median == SORA2.median and unknown.sigma > SORA2.sigma
    assert SORA2.refined([0.0, -3.0, math.nan, math.inf]) == unknown
    rng = random.Random(3)
    durations = [rng.lognormvariate(math.log(180.0), 0.25) for _ in range(20)]
    calm = SORA2.refined(durations)
    stuck = SORA2.refined([*durations, 1790.0, 1795.0])
    assert stuck.median == pytest.approx(calm.median, rel=0.1)
    assert stuck.sigma < 0.4
    # One or two jobs move the median part of the way only.
    one = SORA2.refined([360.0])
    assert 180.0 < one.median < 360.0
