"""How a job talks to the outside world: the runner calls a Notifier, never Discord or a terminal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.jobs.model import Job


@dataclass(frozen=True)
class Delivery:
    """Where the finished video ended up."""

    message_id: str | None = None
    url: str | None = None
    note: str | None = None
    """Anything the requester should know (shrunk to fit, posted as a link...)."""


class Notifier(Protocol):
    async def job_changed(self, job: Job) -> None:
        """The job moved or made progress. Must not raise; may coalesce updates."""
        ...

    async def deliver(self, job: Job, video: Path) -> Delivery:
        """Hand the finished video over. Called again after a crash mid-delivery: must be idempotent."""
        ...


class GuildRouter:
    """Sends each job's updates and video to the notifier of the server it was asked in (the
    playground's jobs to its page, beside the Discord bot), every other job to ``default``.

    Routed by the job, not by what this process serves: a job resumed after a restart, or by
    another process on the same database, still ends up where it was asked."""

    def __init__(self, default: Notifier, by_guild: Mapping[str, Notifier]) -> None:
        self.default = default
        self.by_guild = dict(by_guild)

    def for_job(self, job: Job) -> Notifier:
        return self.by_guild.get(job.guild_id or "", self.default)

    async def job_changed(self, job: Job) -> None:
        await self.for_job(job).job_changed(job)

    async def deliver(self, job: Job, video: Path) -> Delivery:
        return await self.for_job(job).deliver(job, video)
