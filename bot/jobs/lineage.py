"""Rules for videos made from another one (Retry, Remix, Continue), shared by every front end. Pure."""

from __future__ import annotations

import time

from bot.domain import VideoRequest
from bot.jobs.model import Job
from bot.providers.base import VideoProvider, remixer


def can_remix_natively(source: Job, request: VideoRequest, provider: VideoProvider | None) -> bool:
    """The provider's own remix works on a video it still holds, and keeps its length and size."""
    if remixer(provider) is None or provider is None or provider.name != source.provider:
        return False
    if not source.provider_job_id or (source.result_expires_at and source.result_expires_at <= time.time()):
        return False
    return (request.seconds, request.size, request.model) == (source.seconds, source.size, source.model)
