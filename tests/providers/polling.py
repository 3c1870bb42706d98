"""Asking a provider about a job until it is done: shared by the provider tests."""

from __future__ import annotations

import asyncio
import time

from bot.domain import JobStatus
from bot.providers.base import VideoProvider


async def statuses_until_done(provider: VideoProvider, job_id: str, timeout: float = 5.0) -> list[JobStatus]:
    """Every status the provider gave for ``job_id``, the last one done; AssertionError after ``timeout``."""
    seen: list[JobStatus] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(await provider.status(job_id))
        if seen[-1].done:
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} not done after {timeout}s: {seen[-1]}")
