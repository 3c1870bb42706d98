"""How a job talks to the outside world: the runner calls a Notifier, never Discord or a terminal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from bot.jobs.model import Job


@dataclass(frozen=True)
class Delivery:
    """Where the finished video ended up."""

    message_id: str | None = None
    url: str | None = None
    note: str | None = None
    """Anything the requester should know (shrunk to fit, posted as a link...)."""


@runtime_checkable
class Notifier(Protocol):
    async def job_changed(self, job: Job) -> None:
        """The job moved or made progress. Must not raise; may coalesce updates."""
        ...

    async def deliver(self, job: Job, video: Path) -> Delivery:
        """Hand the finished video over. Called again after a crash mid-delivery: must be idempotent."""
        ...
