"""How a Job maps to a ``jobs`` row: shared by the SQLite and PostgreSQL repositories (pure, no SQL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from bot.jobs.model import Job, State

JOB_COLUMNS = tuple(f.name for f in dataclasses.fields(Job) if f.name not in ("id", "queue_position"))
"""The stored columns a Job writes (``id`` is the database's, ``queue_position`` is display-only)."""
_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job))


def job_from_row(row: Mapping[str, Any]) -> Job:
    # Lease columns (migration 0005) belong to the runners, not to Job.
    data = {key: value for key, value in row.items() if key in _JOB_FIELDS}
    data["state"] = State(data["state"])
    if "private" in data:
        data["private"] = bool(data["private"])  # SQLite stores booleans as 0/1
    if data.get("audio") is not None:
        data["audio"] = bool(data["audio"])
    return Job(**data)


def job_values(job: Job) -> list[Any]:
    """``job``'s values in JOB_COLUMNS order, ready to bind."""
    return [getattr(job, c).value if c == "state" else getattr(job, c) for c in JOB_COLUMNS]


def new_job_columns(
    *,
    provider: str,
    user_id: str,
    prompt: str,
    seconds: int,
    size: str,
    model: str,
    guild_id: str | None,
    channel_id: str | None,
    cost: int,
    now: float,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The columns of a newly queued job; ValueError for an ``extra`` field that is not a column."""
    columns = {
        "state": State.QUEUED.value,
        "provider": provider,
        "user_id": user_id,
        "guild_id": guild_id,
        "channel_id": channel_id,
        "prompt": prompt,
        "seconds": seconds,
        "size": size,
        "model": model,
        "cost": cost,
        "created_at": now,
        "updated_at": now,
        **(extra or {}),
    }
    if not set(columns) <= set(JOB_COLUMNS):
        raise ValueError(f"unknown job fields {sorted(set(columns) - set(JOB_COLUMNS))}")
    return columns
