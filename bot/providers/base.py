"""The one small interface every video provider implements, and what it declares it can do.

The request and status types it speaks are neutral, in bot/domain.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from bot.domain import MAX_PROMPT_CHARS, JobStatus, VideoRequest, one_of, shown_input
from bot.errors import InvalidRequest

ImageMode = Literal["url", "bytes"]


def _same_id(provider_job_id: str) -> str:
    return provider_job_id


@dataclass(frozen=True)
class CallbackSupport:
    """How a provider's callbacks are read (bot/callbacks.py asks a provider for this; none: it never calls back).

    ``parse`` turns a JSON body into ``(task id, status)`` or None when it is not a task callback;
    ``verify``, when set, checks the request's signature (False: refused with 401, nothing woken);
    ``task_id`` is the task id a callback names for a stored provider job id (fal's job id is a path
    that ends in the request id its webhooks carry)."""

    parse: Callable[[Mapping[str, Any]], tuple[str, JobStatus] | None]
    verify: Callable[[Mapping[str, str], bytes], Awaitable[bool]] | None = None
    task_id: Callable[[str], str] = _same_id


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do. Validation against it happens before any request is sent."""

    sizes: Mapping[str, tuple[str, ...]]
    """Allowed sizes per model."""
    seconds: Mapping[str, tuple[int, ...]]
    """Allowed durations per model."""
    image_mode: ImageMode = "url"
    image_must_match_size: bool = False
    can_cancel: bool = False
    can_remix: bool = False
    """The provider remakes a video it still holds with a new prompt (``Remixes.remix``)."""
    resumable: bool = True
    """False when a job cannot be asked about again after a restart (segmind-sync, demo)."""
    reports_progress: bool = False
    pushes_updates: bool = False
    """The provider calls back (``PushesUpdates.subscribe``) when a job may have finished: polls are a safety net."""
    max_prompt_chars: int = MAX_PROMPT_CHARS
    callbacks: CallbackSupport | None = None
    """Set when the provider can call back to ``VideoRequest.callback_url``."""
    typical_seconds: Mapping[str, float] = field(default_factory=lambda: {"sora-2": 180.0, "sora-2-pro": 400.0})
    """Typical wall-clock time of a job per model, seeds the adaptive poller."""
    any_model_seconds: float | None = None
    """Set by a provider that stands in for every model (the demo): its typical time for any of them."""

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def all_seconds(self) -> tuple[int, ...]:
        return tuple(sorted({s for values in self.seconds.values() for s in values}))

    def knows_duration(self, model: str) -> bool:
        """Whether this provider has its own typical time for ``model`` (else the catalogue's is used)."""
        return model in self.typical_seconds or self.any_model_seconds is not None

    def expected_duration(self, request: VideoRequest) -> float:
        base = self.typical_seconds.get(request.model, self.any_model_seconds or 180.0)
        # Longer clips take longer; the typical figure is for an 8 s clip.
        return base * (0.6 + 0.05 * request.seconds)

    def check_prompt(self, request: VideoRequest) -> None:
        """Refuse an empty or over-long prompt."""
        prompt = request.prompt.strip()
        if not prompt:
            raise InvalidRequest("The prompt is empty. Please describe the video you want.")
        if len(request.prompt) > self.max_prompt_chars:
            raise InvalidRequest(
                f"The prompt is {len(request.prompt)} characters long; the limit is {self.max_prompt_chars}."
            )

    def validate(self, request: VideoRequest, provider_name: str) -> None:
        """Refuse, with a sentence naming what is allowed, anything this provider cannot do."""
        self.check_prompt(request)
        if request.model not in self.sizes:
            raise InvalidRequest(
                f"Model {request.model!r} is not available with {provider_name}; choose {one_of(self.models)}."
            )
        sizes = self.sizes[request.model]
        if request.size not in sizes:
            raise InvalidRequest(
                f"Size {shown_input(request.size)} is not available for {request.model} with {provider_name}; "
                f"choose {one_of(sizes)}."
            )
        seconds = self.seconds[request.model]
        if request.seconds not in seconds:
            raise InvalidRequest(
                f"{request.seconds} s is not available for {request.model} with {provider_name}; "
                f"choose {one_of([f'{s} s' for s in seconds])}."
            )


@runtime_checkable
class Remixes(Protocol):
    """A provider with its own remix of a finished video (OpenAI's ``/videos/{id}/remix``)."""

    async def remix(self, job_id: str, prompt: str) -> str:
        """Start a remix of ``job_id`` with ``prompt``; returns the new job's id (same length and size)."""
        ...


def remixer(provider: VideoProvider | None) -> Remixes | None:
    """``provider`` when it declares ``can_remix`` (and has the method), else None."""
    if provider is None or not provider.capabilities.can_remix or not isinstance(provider, Remixes):
        return None
    return provider


@runtime_checkable
class PushesUpdates(Protocol):
    """A provider that hears about its jobs by itself (ComfyUI's websocket)."""

    def subscribe(self, wake: Callable[[str], None]) -> None:
        """Call ``wake(provider_job_id)`` whenever that job may have finished."""
        ...


@runtime_checkable
class VideoProvider(Protocol):
    """A video provider. Implementations live one per file in ``bot/providers/``.

    ``request.model`` is always a catalogue id (bot/catalogue); a provider built from the catalogue
    looks up how it names that model and spells its fields in its ``Host`` entries."""

    name: str
    capabilities: Capabilities

    def validate(self, request: VideoRequest) -> None:
        """Raise InvalidRequest for anything this provider cannot do. No I/O."""
        ...

    async def submit(self, request: VideoRequest) -> str:
        """Start a job and return the provider's job id. Never retried once the provider answered."""
        ...

    async def status(self, job_id: str) -> JobStatus:
        """Ask how the job is doing. Raises ProviderError on transport/auth trouble."""
        ...

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        """Stream the finished video to ``dest`` (never more than ``max_bytes``) and return it."""
        ...

    async def cancel(self, job_id: str) -> bool:
        """Ask the provider to stop; False when it cannot."""
        ...

    async def aclose(self) -> None:
        """Release what the provider holds (background tasks, temp files)."""
        ...
