"""RunwayProvider against the local fake, and the fake against the ``runwayml`` SDK."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import pytest
from runwayml import AsyncRunwayML

from bot.catalogue import load_catalogue
from bot.domain import JobState, ReferenceImage, VideoRequest
from bot.errors import BotError, GenerationFailed, InvalidRequest, ModerationRejected, ProviderOutOfCredits
from bot.providers.base import VideoProvider
from bot.providers.runway import RunwayProvider, task_status
from tests.fakes.runway import FakeRunway
from tests.providers.polling import statuses_until_done as poll

SECRET = "key_SECRET-runway-0123456789abcdef"
IMAGE_URL = "https://cdn.example.com/ref/frame.png"


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunway]:
    server = FakeRunway(api_key=SECRET, queue_seconds=0.05, run_seconds=0.3)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def provider(fake: FakeRunway, http_session: aiohttp.ClientSession) -> RunwayProvider:
    catalogue = load_catalogue()
    return RunwayProvider(
        http_session,
        api_secret=SECRET,
        base_url=fake.base_url,
        retry_base_delay=0.01,
        hosts=catalogue.hosts_for("runway"),
        specs=catalogue.models,
    )


async def test_is_a_video_provider_with_the_catalogue_models(provider: RunwayProvider) -> None:
    assert isinstance(provider, VideoProvider)
    assert set(provider.capabilities.models) == {"gen-4.5", "veo-3.1", "veo-3.1-fast"}
    assert provider.capabilities.can_cancel and provider.capabilities.reports_progress


PNG = b"\x89PNG\r\n"
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.mark.parametrize(
    ("request_", "path", "expected"),
    [
        (
            VideoRequest("a heron", 2, "720x1280", model="gen-4.5"),
            "/v1/text_to_video",
            {"model": "gen4.5", "promptText": "a heron", "ratio": "720:1280", "duration": 2},
        ),
        (
            VideoRequest("a heron", 10, "1280x720", model="gen-4.5", image=ReferenceImage(PNG, url=IMAGE_URL)),
            "/v1/image_to_video",
            {"model": "gen4.5", "promptText": "a heron", "ratio": "1280:720", "duration": 10, "promptImage": IMAGE_URL},
        ),
        (
            VideoRequest("rain", 6, "1920x1080", model="veo-3.1", audio=False),
            "/v1/text_to_video",
            {"model": "veo3.1", "promptText": "rain", "ratio": "1920:1080", "duration": 6, "audio": False},
        ),
        (
            # A plain-http link (Runway refuses those) goes as a data URI.
            VideoRequest(
                "rain", 4, "1080x1920", model="veo-3.1-fast", image=ReferenceImage(PNG, url="http://127.0.0.1/a.png")
            ),
            "/v1/image_to_video",
            {
                "model": "veo3.1_fast",
                "promptText": "rain",
                "ratio": "1080:1920",
                "duration": 4,
                "audio": True,
                "promptImage": DATA_URI,
            },
        ),
    ],
)
async def test_exact_fields_per_model_with_and_without_an_image(
    provider: RunwayProvider, fake: FakeRunway, request_: VideoRequest, path: str, expected: dict[str, object]
) -> None:
    job_id = await provider.submit(request_)
    (sent,) = fake.requests_to("/v1/", "POST")
    assert sent.path == path and sent.json() == expected
    assert sent.headers["Authorization"] == f"Bearer {SECRET}" and sent.headers["X-Runway-Version"] == "2024-11-06"
    assert (await poll(provider, job_id))[-1].state is JobState.SUCCEEDED


async def test_lifecycle_progress_and_a_playable_download(
    provider: RunwayProvider, fake: FakeRunway, tmp_path: Path
) -> None:
    fake.throttled = True
    job_id = await provider.submit(VideoRequest("a heron", 5, model="gen-4.5"))
    seen = await poll(provider, job_id)
    assert seen[0].state is JobState.QUEUED and seen[-1].state is JobState.SUCCEEDED  # THROTTLED = queued
    progress = [s.progress for s in seen if s.state is JobState.RUNNING]
    assert progress and all(p is not None and 0 <= p < 100 for p in progress) and progress == sorted(progress)
    assert any(p and p > 1 for p in progress)  # 0-1 on the wire, a percentage here
    path = await provider.download(job_id, seen[-1], tmp_path / "out.mp4", 10_000_000)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames > 0
    again = RunwayProvider(provider._http.session, api_secret=SECRET, base_url=fake.base_url)  # a restarted bot
    assert (await again.status(job_id)).result_url == seen[-1].result_url


@pytest.mark.parametrize(
    ("failure", "kind", "stage"),
    [
        (("Input flagged by moderation", "SAFETY.INPUT.TEXT"), ModerationRejected, None),
        (("Output flagged", "SAFETY.OUTPUT.VIDEO"), ModerationRejected, "finished video"),
        (("Internal error", "INTERNAL.BAD_OUTPUT.CODE01"), GenerationFailed, None),
    ],
)
async def test_failures_are_typed_by_failure_code(
    provider: RunwayProvider, fake: FakeRunway, failure: tuple[str, str], kind: type[BotError], stage: str | None
) -> None:
    fake.fail_with = failure
    seen = await poll(provider, await provider.submit(VideoRequest("x", 5, model="gen-4.5")))
    error = seen[-1].error
    assert seen[-1].state is JobState.FAILED and type(error) is kind
    if isinstance(error, ModerationRejected):
        assert not error.retryable and (stage is None or stage in error.user_message)


async def test_out_of_credits(provider: RunwayProvider, fake: FakeRunway) -> None:
    fake.out_of_credits = True
    with pytest.raises(ProviderOutOfCredits) as caught:
        await provider.submit(VideoRequest("x", 5, model="gen-4.5"))
    assert SECRET not in caught.value.detail
    assert len(fake.requests_to("/v1/text_to_video")) == 1


async def test_cancel_deletes_the_task(provider: RunwayProvider, fake: FakeRunway) -> None:
    fake.run_seconds = 30
    job_id = await provider.submit(VideoRequest("x", 8, model="veo-3.1"))
    assert await provider.cancel(job_id) is True
    assert [r.path for r in fake.requests_to("/v1/tasks/", "DELETE")] == [f"/v1/tasks/{job_id}"]
    status = await provider.status(job_id)
    assert status.state is JobState.FAILED and isinstance(status.error, GenerationFailed)


async def test_refusals_before_any_request(provider: RunwayProvider, fake: FakeRunway) -> None:
    for bad in (
        VideoRequest("x", 1, model="gen-4.5"),
        VideoRequest("x", 5, "1920x1080", model="gen-4.5"),
        VideoRequest("x", 5, model="veo-3.1"),
        VideoRequest("x" * 1001, 5, model="gen-4.5"),
        VideoRequest("😀" * 501, 5, model="gen-4.5"),  # 1002 UTF-16 units
        VideoRequest("x", 5, model="wan-3"),
    ):
        with pytest.raises(InvalidRequest):
            await provider.submit(bad)
    assert fake.requests == []


def test_unknown_states_count_as_running() -> None:
    assert task_status({"id": "t", "status": "WARMING"}).state is JobState.RUNNING
    assert task_status({"id": "t", "status": "SUCCEEDED", "output": []}).state is JobState.FAILED
    assert task_status({"id": "t", "status": "RUNNING", "progress": 0.42}).progress == pytest.approx(42.0)


async def test_the_sdk_parses_the_fake(fake: FakeRunway) -> None:
    client = AsyncRunwayML(api_key=SECRET, base_url=fake.base_url, max_retries=0)
    created = await client.text_to_video.create(model="gen4.5", prompt_text="a heron", ratio="1280:720", duration=5)
    running = await client.tasks.retrieve(created.id)
    assert running.status in ("PENDING", "RUNNING")
    await asyncio.sleep(0.5)
    done = await client.tasks.retrieve(created.id)
    assert done.status == "SUCCEEDED" and done.output[0].startswith(fake.base_url)  # type: ignore[union-attr]
    fake.run_seconds = 30
    other = await client.image_to_video.create(
        model="veo3.1", prompt_image=DATA_URI, prompt_text="rain", ratio="720:1280", duration=4, audio=False
    )
    await client.tasks.delete(other.id)
    assert (await client.tasks.retrieve(other.id)).status == "CANCELLED"
    fake.fail_with = ("flagged", "SAFETY.INPUT.IMAGE")
    failed = await client.text_to_video.create(model="veo3.1_fast", prompt_text="x", ratio="1920:1080", duration=8)
    fake.run_seconds = 0.05
    await asyncio.sleep(0.3)
    task = await client.tasks.retrieve(failed.id)
    assert task.status == "FAILED" and task.failure_code == "SAFETY.INPUT.IMAGE"  # type: ignore[union-attr]
    await client.close()
