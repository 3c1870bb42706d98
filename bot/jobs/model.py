"""A job's states and the legal moves between them. Pure: no I/O, no Discord, no HTTP.

    queued ──► submitting ──► running ──► downloading ──► delivering ──► succeeded
       │            │            │             │               │
       └────────────┴────────────┴─────────────┴───────────────┴──► failed | cancelled

* ``submitting`` is stored *before* the provider is called, so a crash there is visible on restart.
  Such a job is failed and refunded, never re-sent: the provider may or may not have it, and a second
  submit could cost twice (no provider offers idempotency keys).
* ``provider_job_id`` is stored in the same write that enters ``running``.
* A submit the provider refused in a way that proves it took nothing (out of credits, throttled,
  the model gone) may move the job, once, to the next provider hosting its model: ``submitting``
  again, with ``provider`` changed and ``failover_from`` naming the first.
* ``delivering`` is re-entered on restart; the Discord layer posts with a nonce derived from the
  job id, so a repeated post returns the earlier message instead of making a second one.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from typing import Any

from bot.domain import VideoRequest

KINDS: tuple[str, ...] = ("new", "retry", "remix", "continue")
# A Discord message link: https://discord.com/channels/<guild id or @me>/<channel id>/<message id>.
_MESSAGE_LINK = re.compile(r"https://(?:\w+\.)?discord(?:app)?\.com/channels/(?:@me|\d+)/(\d+)/(\d+)")


class State(enum.StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """Holds a running slot (counts against the concurrency caps)."""
        return self in ACTIVE


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
ACTIVE = frozenset({State.SUBMITTING, State.RUNNING, State.DOWNLOADING, State.DELIVERING})

_NEXT: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.SUBMITTING}),
    # Again submitting, on another host of the model, after an answer proving nothing was taken.
    State.SUBMITTING: frozenset({State.SUBMITTING, State.RUNNING}),
    State.RUNNING: frozenset({State.RUNNING, State.DOWNLOADING}),
    State.DOWNLOADING: frozenset({State.DOWNLOADING, State.DELIVERING}),
    # Back to downloading when a restart finds the downloaded file gone.
    State.DELIVERING: frozenset({State.DOWNLOADING, State.SUCCEEDED}),
}


class IllegalTransition(Exception):
    pass


def can_move(current: State, target: State) -> bool:
    if current.terminal:
        return False
    if target in (State.FAILED, State.CANCELLED):
        return True
    return target in _NEXT.get(current, frozenset())


@dataclass(frozen=True)
class Job:
    """One row of the ``jobs`` table."""

    id: int
    state: State
    provider: str
    user_id: str
    prompt: str
    seconds: int
    size: str
    model: str
    created_at: float
    updated_at: float
    guild_id: str | None = None
    channel_id: str | None = None
    provider_job_id: str | None = None
    image_path: str | None = None
    image_url: str | None = None
    cost: int = 0
    progress: float | None = None
    status_message_id: str | None = None
    result_message_id: str | None = None
    result_url: str | None = None
    result_expires_at: float | None = None
    delivery_note: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    # Lineage (migration 0004): how this job was made and from which one.
    kind: str = "new"
    """``new`` (/sora), ``retry``, ``remix`` or ``continue`` (buttons on a posted video)."""
    source_job_id: int | None = None
    source_provider_job_id: str | None = None
    """The provider's id of the source video when this remix runs as the provider's native remix."""
    private: bool = False
    """Deliver by direct message instead of in the channel."""
    result_deleted_at: float | None = None
    # Models (migration 0006).
    audio: bool | None = None
    """Sound on or off as the member asked; None: the model's default."""
    failover_from: str | None = None
    """The provider this job was first sent to, when it moved to another host of its model."""
    # Not stored: filled in by the runner for display.
    queue_position: int | None = field(default=None, compare=False)

    def moved(self, target: State, now: float, **changes: Any) -> Job:
        """This job in ``target`` state, or IllegalTransition."""
        if not can_move(self.state, target):
            raise IllegalTransition(f"job {self.id}: {self.state} -> {target}")
        if target.terminal:
            changes.setdefault("finished_at", now)
        if target is State.RUNNING and self.submitted_at is None:
            changes.setdefault("submitted_at", now)
        return replace(self, state=target, updated_at=now, **changes)

    @property
    def has_image(self) -> bool:
        return self.image_path is not None

    def request(self, image: Any = None) -> VideoRequest:
        return VideoRequest(
            prompt=self.prompt, seconds=self.seconds, size=self.size, model=self.model, image=image, audio=self.audio
        )

    @property
    def result_channel_id(self) -> str | None:
        """The channel holding the posted video: read from its stored link (a private result lives in
        the requester's DMs, not in ``channel_id``), else the job's channel."""
        if not self.result_message_id:
            return None
        match = _MESSAGE_LINK.fullmatch(self.result_url or "")
        if match and match[2] == self.result_message_id:
            return match[1]
        return self.channel_id

    @property
    def delivery_nonce(self) -> str:
        """Discord's idempotency key for this job's one post (≤ 25 characters)."""
        return f"sora-job-{self.id}"[:25]
