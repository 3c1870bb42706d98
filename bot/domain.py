"""The neutral request and status types every layer shares: what a video request is, what a provider
answers about a job. They know nothing of any provider, of Discord or of storage, so media, the
catalogue, the jobs layer and the providers all import them without importing each other."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from bot.errors import ProviderError

MODELS: tuple[str, ...] = ("sora-2", "sora-2-pro")
LANDSCAPE, PORTRAIT = "1280x720", "720x1280"
PRO_SIZES: tuple[str, ...] = ("1024x1792", "1792x1024")
ALL_SIZES: tuple[str, ...] = (LANDSCAPE, PORTRAIT, *PRO_SIZES)
MAX_PROMPT_CHARS = 2000


def parse_size(size: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``."""
    width, _, height = size.partition("x")
    return int(width), int(height)


def is_portrait(size: str) -> bool:
    width, height = parse_size(size)
    return height > width


@dataclass(frozen=True)
class ReferenceImage:
    """A reference frame, already validated and fitted to the request's size by ``bot.media``.

    ``url`` is a public address of exactly these bytes, for providers that take a URL; the Discord
    layer fills it by uploading the fitted image. Byte-based providers use ``data``.
    """

    data: bytes
    content_type: str = "image/png"
    url: str | None = None

    @property
    def filename(self) -> str:
        return "reference.png" if self.content_type == "image/png" else "reference.jpg"


@dataclass(frozen=True)
class VideoRequest:
    prompt: str
    seconds: int
    size: str = LANDSCAPE
    model: str = "sora-2"
    image: ReferenceImage | None = None
    callback_url: str | None = None
    """Where the provider may POST when the job changes (providers with callbacks; polling stays the fallback)."""
    audio: bool | None = None
    """Make sound (None: the model's default). Only models whose catalogue entry offers audio take it."""


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobStatus:
    """One answer to "how is job X doing?".

    ``progress`` is 0..100 when the provider reports one, else None. ``poll_after`` is the
    provider's own pacing hint in seconds (``openai-poll-after-ms``), if any. ``error`` is set
    when ``state`` is FAILED. ``result_url`` / ``expires_at`` (unix seconds) describe the result
    when the provider gives a link.
    """

    state: JobState
    progress: float | None = None
    result_url: str | None = None
    expires_at: float | None = None
    error: ProviderError | None = None
    poll_after: float | None = None
    queue_position: int | None = None
    """Where the job waits in the provider's own queue (fal's ``queue_position``), when it says."""

    @property
    def done(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED)


def shown_input(value: str) -> str:
    """User input echoed in a refusal: as typed when it is plain text, else quoted with escapes."""
    return value if value.isprintable() and len(value) <= 20 else repr(value[:20])


def one_of(items: Iterable[str]) -> str:
    """``a, b or c``: the allowed values named in a refusal."""
    listed = list(items)
    if len(listed) == 1:
        return listed[0]
    return ", ".join(listed[:-1]) + " or " + listed[-1]
