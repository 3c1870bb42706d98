"""The job state machine: every (state, target) pair against an independent table."""

from __future__ import annotations

import itertools

import pytest

from bot.jobs.model import ACTIVE, TERMINAL, IllegalTransition, Job, State, can_move

Q, SUB, RUN, DL, DLV, OK, FAIL, CXL = (
    State.QUEUED,
    State.SUBMITTING,
    State.RUNNING,
    State.DOWNLOADING,
    State.DELIVERING,
    State.SUCCEEDED,
    State.FAILED,
    State.CANCELLED,
)

# Written out by hand from the diagram in bot/jobs/model.py, not derived from its tables.
LEGAL: dict[State, set[State]] = {
    Q: {SUB, FAIL, CXL},
    SUB: {SUB, RUN, FAIL, CXL},  # SUB -> SUB: failover to another host of the model
    RUN: {RUN, DL, FAIL, CXL},  # RUN -> RUN: a progress update
    DL: {DL, DLV, FAIL, CXL},
    DLV: {DL, OK, FAIL, CXL},  # back to downloading when a restart finds the file gone
    OK: set(),
    FAIL: set(),
    CXL: set(),
}


def job(state: State = Q, **changes: object) -> Job:
    base = Job(
        id=7,
        state=state,
        provider="demo",
        user_id="u1",
        prompt="a cat",
        seconds=4,
        size="1280x720",
        model="sora-2",
        created_at=100.0,
        updated_at=100.0,
    )
    return Job(**{**base.__dict__, **changes})


@pytest.mark.parametrize(("current", "target"), list(itertools.product(State, State)))
def test_transition_table(current: State, target: State) -> None:
    legal = target in LEGAL[current]
    assert can_move(current, target) is legal
    if legal:
        moved = job(current).moved(target, 200.0)
        assert moved.state is target
        assert moved.updated_at == 200.0
    else:
        with pytest.raises(IllegalTransition, match=f"job 7: {current} -> {target}"):
            job(current).moved(target, 200.0)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_absorb_nothing(terminal: State) -> None:
    assert terminal.terminal and not terminal.active
    for target in State:
        assert not can_move(terminal, target)


def test_active_states_are_the_ones_holding_a_slot() -> None:
    assert {s for s in State if s.active} == {SUB, RUN, DL, DLV} == set(ACTIVE)
    assert not Q.active and not Q.terminal


def test_running_sets_submitted_at_once() -> None:
    running = job(Q).moved(SUB, 110.0).moved(RUN, 120.0, provider_job_id="p-1")
    assert running.submitted_at == 120.0 and running.provider_job_id == "p-1"
    progressed = running.moved(RUN, 150.0, progress=40.0)
    assert progressed.submitted_at == 120.0  # not moved by later updates
    assert progressed.progress == 40.0
    assert progressed.finished_at is None


@pytest.mark.parametrize("terminal", [OK, FAIL, CXL])
def test_terminal_moves_set_finished_at(terminal: State) -> None:
    start = job(DLV) if terminal is OK else job(RUN)
    done = start.moved(terminal, 300.0)
    assert done.finished_at == 300.0
    explicit = start.moved(terminal, 300.0, finished_at=299.0)
    assert explicit.finished_at == 299.0


def test_moved_returns_a_new_job_and_leaves_the_old_one() -> None:
    original = job(Q)
    moved = original.moved(SUB, 200.0)
    assert original.state is Q and original.updated_at == 100.0
    assert moved is not original


def test_request_and_nonce() -> None:
    request = job().request()
    assert (request.prompt, request.seconds, request.size, request.model) == ("a cat", 4, "1280x720", "sora-2")
    assert job(id=123456789012345678).delivery_nonce == "sora-job-1234567890123456"[:25]
    assert len(job(id=10**30).delivery_nonce) <= 25
