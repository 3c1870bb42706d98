"""Rules for videos made from another one (Retry, Remix, Continue), shared by every front end. Pure."""

from __future__ import annotations

import time

from bot.domain import ReferenceImage, VideoRequest
from bot.errors import Refused
from bot.jobs.model import Job, State
from bot.providers.base import VideoProvider, remixer


def usable_source(job: Job | None, action: str) -> Job:
    """The video a Retry/Remix/Continue/Delete acts on, or Refused saying why it cannot."""
    if job is None:
        raise Refused("That video no longer exists.")
    # DELIVERING: the post is up but its success not yet stored (a click within a moment of it).
    if job.state not in (State.SUCCEEDED, State.DELIVERING) and action != "delete":
        raise Refused(f"Video #{job.id} did not finish, so it cannot be used for a {action}.")
    if job.state is State.DELIVERING and action in ("continue", "delete"):
        raise Refused(f"Video #{job.id} is still being posted; please try again in a moment.")
    return job


def check_requester(user_id: str, source: Job, action: str) -> None:
    """Only the requester makes a new video from theirs: it is charged to them."""
    if user_id != source.user_id:
        raise Refused(
            f"Only the person who asked for video #{source.id} can {action} it "
            "(the new video is charged to them). Use /sora to make your own."
        )


def retry_reference(source: Job, reference: ReferenceImage | None) -> ReferenceImage | None:
    """A Retry makes the same video again: with the source's reference image, or not at all."""
    if source.has_image and reference is None:
        raise Refused(
            f"The reference image of video #{source.id} is no longer available, so it cannot be made "
            "again exactly. Please use /sora with the image."
        )
    return reference


def can_remix_natively(source: Job, request: VideoRequest, provider: VideoProvider | None) -> bool:
    """The provider's own remix works on a video it still holds, and keeps its length and size."""
    if remixer(provider) is None or provider is None or provider.name != source.provider:
        return False
    if not source.provider_job_id or (source.result_expires_at and source.result_expires_at <= time.time()):
        return False
    return (request.seconds, request.size, request.model) == (source.seconds, source.size, source.model)
