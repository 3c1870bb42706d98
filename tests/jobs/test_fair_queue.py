"""fair_order: servers take turns for running slots (issue 13 item 3)."""

from __future__ import annotations

from bot.jobs.fair_queue import fair_order
from bot.jobs.model import Job, State


def job(job_id: int, guild: str | None) -> Job:
    return Job(
        id=job_id,
        state=State.QUEUED,
        provider="demo",
        user_id="u",
        prompt="p",
        seconds=4,
        size="1280x720",
        model="sora-2",
        created_at=0,
        updated_at=0,
        guild_id=guild,
    )


def ids(jobs: list[Job]) -> list[int]:
    return [j.id for j in jobs]


def test_a_backlog_is_interleaved_with_other_servers() -> None:
    queued = [job(1, "a"), job(2, "a"), job(3, "a"), job(4, "b"), job(5, "a"), job(6, "c")]
    assert ids(fair_order(queued, {})) == [1, 4, 6, 2, 3, 5]


def test_servers_with_running_jobs_wait_behind_idle_ones() -> None:
    queued = [job(1, "a"), job(2, "a"), job(3, "b")]
    # "a" already runs two: "b"'s job goes first even though it is the newest.
    assert ids(fair_order(queued, {"a": 2})) == [3, 1, 2]
    assert ids(fair_order(queued, {"b": 1})) == [1, 2, 3]


def test_jobs_outside_a_server_form_their_own_turn_and_order_is_stable() -> None:
    queued = [job(2, None), job(1, None), job(3, "a")]
    assert ids(fair_order(queued, {})) == [1, 3, 2]
    assert fair_order([], {"a": 3}) == []
