"""Which remixes use the provider's own remix: only a provider that declares it (Capabilities.can_remix)."""

from __future__ import annotations

from dataclasses import replace

from bot.domain import VideoRequest
from bot.jobs.lineage import can_remix_natively
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
