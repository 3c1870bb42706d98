"""Which remixes use the provider's own remix: only a provider that declares it (Capabilities.can_remix)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.domain import ReferenceImage, VideoRequest
from bot.errors import Refused
from bot.jobs.lineage import can_remix_natively, check_requester, retry_reference, usable_source
from bot.jobs.model import Job, State
from bot.providers.base import remixer
from bot.providers.demo import DemoProvider
from bot.providers.openai_videos import CAPABILITIES as OPENAI_CAPABILITIES


class Remixing(DemoProvider):
    """A provider with a remix method; whether it is used depends on what it declares."""

    async def remix(self, job_id: str, prompt: str) -> str:
        return f"remix-of-{job_id}"


def source(provider: str) -> Job:
    return Job(
        id=1,
        user_id="7",
        prompt="a fox",
        seconds=4,
        size="1280x720",
        model="sora-2",
        state=State.SUCCEEDED,
        provider=provider,
        provider_job_id="video_1",
        created_at=0.0,
        updated_at=0.0,
    )


def test_a_provider_is_asked_to_remix_only_when_it_declares_it() -> None:
    undeclared = Remixing()
    assert remixer(undeclared) is None  # has the method, but its capabilities do not say so
    declared = Remixing()
    declared.capabilities = replace(declared.capabilities, can_remix=True)
    assert remixer(declared) is declared
    assert remixer(DemoProvider()) is None and remixer(None) is None
    assert OPENAI_CAPABILITIES.can_remix


def test_native_remix_needs_the_same_provider_length_and_size() -> None:
    provider = Remixing()
    provider.capabilities = replace(provider.capabilities, can_remix=True)
    job = source(provider.name)
    same = VideoRequest("a fox at night", seconds=4, size="1280x720", model="sora-2")
    assert can_remix_natively(job, same, provider)
    assert not can_remix_natively(job, replace(same, seconds=8), provider)
    assert not can_remix_natively(replace(job, provider="elsewhere"), same, provider)
    assert not can_remix_natively(job, same, Remixing())  # not declared


@pytest.mark.parametrize(
    ("state", "action", "refusal"),
    [
        (State.RUNNING, "retry", "did not finish, so it cannot be used for a retry"),
        (State.FAILED, "remix", "did not finish, so it cannot be used for a remix"),
        (State.DELIVERING, "continue", "is still being posted"),
        (State.DELIVERING, "delete", "is still being posted"),
        (State.SUCCEEDED, "continue", None),
        (State.DELIVERING, "retry", None),
        (State.RUNNING, "delete", None),
    ],
)
def test_which_videos_the_buttons_act_on(state: State, action: str, refusal: str | None) -> None:
    job = replace(source("demo"), state=state)
    if refusal is None:
        assert usable_source(job, action) is job
    else:
        with pytest.raises(Refused, match=refusal):
            usable_source(job, action)
    with pytest.raises(Refused, match="That video no longer exists"):
        usable_source(None, action)


def test_only_the_requester_makes_a_video_from_theirs_and_a_retry_needs_its_image() -> None:
    job = source("demo")
    check_requester("7", job, "retry")
    with pytest.raises(Refused, match=r"Only the person who asked for video #1 can remix it"):
        check_requester("8", job, "remix")
    image = ReferenceImage(data=b"png")
    assert retry_reference(job, None) is None  # no image to begin with
    with_image = replace(job, image_path="/gone.png")
    assert retry_reference(with_image, image) is image
    with pytest.raises(Refused, match="reference image of video #1 is no longer available"):
        retry_reference(with_image, None)
