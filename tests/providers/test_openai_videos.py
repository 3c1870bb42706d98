"""OpenAIVideosProvider against a local fake of ``/v1/videos``, and the fake against the openai SDK."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
from PIL import Image

from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import (
    AuthenticationFailed,
    BotError,
    GenerationFailed,
    InvalidRequest,
    ModerationRejected,
    ProviderRequestRejected,
    ProviderUnavailable,
    RateLimited,
    ResultTooLarge,
)
from bot.providers.base import VideoProvider
from bot.providers.openai_videos import OpenAIVideosProvider
from tests.fakes.openai_videos import FakeOpenAIVideos, parse_multipart
from tests.fakes.videos import tiny_mp4

KEY = "sk-fake-openai-key-0123456789"


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIVideos]:
    server = FakeOpenAIVideos(api_key=KEY, queue_seconds=10, run_seconds=10, poll_after_ms=250)
    await server.start()
    yield server
    await server.stop()


def provider_for(
    session: aiohttp.ClientSession, fake: FakeOpenAIVideos, *, api_key: str = KEY, **kwargs: float
) -> OpenAIVideosProvider:
    options: dict = {"retry_base_delay": 0.01, "max_retries": 2, **kwargs}
    return OpenAIVideosProvider(session, api_key=api_key, base_url=f"{fake.base_url}/v1", **options)


@pytest.fixture
def provider(http_session: aiohttp.ClientSession, fake: FakeOpenAIVideos) -> OpenAIVideosProvider:
    return provider_for(http_session, fake)


def assert_no_key(err: BaseException, key: str = KEY) -> None:
    texts = [str(err), repr(err), getattr(err, "detail", ""), getattr(err, "user_message", "")]
    for text in texts:
        assert key not in text


# --- submit --------------------------------------------------------------------------------


async def test_is_a_video_provider(provider: OpenAIVideosProvider) -> None:
    assert isinstance(provider, VideoProvider)
    assert provider.capabilities.can_cancel and provider.capabilities.reports_progress
    assert KEY not in repr(provider)


async def test_submit_sends_multipart_fields_and_image(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    image = png(1792, 1024)
    request = VideoRequest(
        "a red fox in snow", seconds=8, size="1792x1024", model="sora-2-pro", image=ReferenceImage(image)
    )

    video_id = await provider.submit(request)

    assert video_id in fake.videos
    (recorded,) = fake.requests_to("/v1/videos", "POST")
    assert recorded.path == "/v1/videos"
    assert recorded.headers["Authorization"] == f"Bearer {KEY}"
    assert recorded.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    form = parse_multipart(recorded.headers["Content-Type"], recorded.body)
    assert {name: part.text for name, part in form.items() if name != "input_reference"} == {
        "prompt": "a red fox in snow",
        "model": "sora-2-pro",
        "seconds": "8",
        "size": "1792x1024",
    }
    reference = form["input_reference"]
    assert reference.filename == "reference.png"
    assert reference.content_type == "image/png"
    assert reference.data == image


async def test_submit_without_image_is_still_multipart(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    await provider.submit(VideoRequest("waves", seconds=4, size="720x1280"))

    (form,) = fake.forms
    assert set(form) == {"prompt", "model", "seconds", "size"}
    assert (form["model"].text, form["seconds"].text, form["size"].text) == ("sora-2", "4", "720x1280")


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (VideoRequest("x", seconds=8, size="1792x1024", model="sora-2"), "1792x1024"),
        (VideoRequest("x", seconds=16, size="1280x720"), "16 s"),
        (VideoRequest("x", seconds=8, size="1280x720", image=ReferenceImage(png(640, 360))), "1280x720"),
        (VideoRequest("x", seconds=8, size="720x1280", image=ReferenceImage(png(1280, 720))), "720x1280"),
    ],
)
async def test_refused_before_any_request(
    provider: OpenAIVideosProvider, fake: FakeOpenAIVideos, request_: VideoRequest, named: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await provider.submit(request_)

    assert named in caught.value.user_message
    assert fake.requests == []


async def test_wrong_image_size_message_says_exact_size(provider: OpenAIVideosProvider) -> None:
    request = VideoRequest("x", seconds=8, size="1280x720", image=ReferenceImage(png(640, 360)))
    with pytest.raises(InvalidRequest, match="exactly 1280x720") as caught:
        provider.validate(request)
    assert "640x360" in caught.value.user_message


async def test_unreadable_image_is_refused(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await provider.submit(VideoRequest("x", seconds=8, image=ReferenceImage(b"not an image")))
    assert "could not be read" in caught.value.user_message
    assert fake.requests == []


async def test_fake_refuses_mismatched_image_with_documented_error(
    http_session: aiohttp.ClientSession, fake: FakeOpenAIVideos
) -> None:
    # Bypass our own validation to prove the fake (like the API) refuses it too.
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in {"prompt": "x", "model": "sora-2", "seconds": "8", "size": "1280x720"}.items():
        form.add_field(name, value)
    form.add_field("input_reference", png(640, 360), filename="reference.png", content_type="image/png")
    headers = {"Authorization": f"Bearer {KEY}"}
    async with http_session.post(f"{fake.base_url}/v1/videos", data=form, headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body == {
        "error": {
            "message": "Inpaint image must match the requested width and height",
            "type": "invalid_request_error",
            "param": "input_reference",
            "code": None,
        }
    }
    assert fake.videos == {}


# --- status --------------------------------------------------------------------------------


async def test_status_lifecycle_with_progress_and_poll_hint(
    provider: OpenAIVideosProvider, fake: FakeOpenAIVideos
) -> None:
    video_id = await provider.submit(VideoRequest("x", seconds=8))

    queued = await provider.status(video_id)
    assert (queued.state, queued.progress, queued.poll_after) == (JobState.QUEUED, 0.0, 0.25)
    assert not queued.done

    fake.advance(12.5)
    running = await provider.status(video_id)
    assert running.state is JobState.RUNNING
    assert running.progress is not None and 20 <= running.progress < 30

    fake.advance(5)
    later = await provider.status(video_id)
    assert later.state is JobState.RUNNING
    assert later.progress is not None and later.progress > running.progress

    fake.advance(10)
    done = await provider.status(video_id)
    assert done.state is JobState.SUCCEEDED and done.done
    assert done.progress == 100.0
    assert done.result_url is None
    assert done.expires_at == fake.video_object(fake.videos[video_id])["expires_at"]
    assert done.expires_at is not None
    assert done.error is None
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in fake.requests)


async def test_status_without_poll_hint(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    fake.poll_after_ms = None
    video_id = await provider.submit(VideoRequest("x", seconds=4))
    assert (await provider.status(video_id)).poll_after is None


async def test_moderation_failure(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    fake.fail_with = "Your request was blocked by our moderation system."
    video_id = await provider.submit(VideoRequest("x", seconds=8))
    fake.advance(30)

    status = await provider.status(video_id)

    assert status.state is JobState.FAILED and status.done
    assert isinstance(status.error, ModerationRejected)
    assert "moderation_blocked" in status.error.detail
    assert not status.error.retryable


async def test_other_failure_is_generation_failed(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    fake.fail_with, fake.fail_code = "The render worker crashed.", "internal_error"
    video_id = await provider.submit(VideoRequest("x", seconds=8))
    fake.advance(30)

    status = await provider.status(video_id)

    assert isinstance(status.error, GenerationFailed)
    assert "render worker crashed" in status.error.detail


async def test_status_500_then_success_is_retried(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    video_id = await provider.submit(VideoRequest("x", seconds=8))
    fake.inject(500, {"error": {"message": "boom"}}, path_contains="/v1/videos/", method="GET")

    status = await provider.status(video_id)

    assert status.state is JobState.QUEUED
    assert len(fake.requests_to(f"/v1/videos/{video_id}", "GET")) == 2


async def test_status_dropped_connection_is_retried(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    video_id = await provider.submit(VideoRequest("x", seconds=8))
    fake.inject(0, path_contains="/v1/videos/", method="GET", drop_connection=True)

    assert (await provider.status(video_id)).state is JobState.QUEUED
    assert len(fake.requests_to(f"/v1/videos/{video_id}", "GET")) == 2


async def test_status_unknown_id_is_rejected(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    with pytest.raises(ProviderRequestRejected, match="not found"):
        await provider.status("video_nope")
    assert len(fake.requests) == 1


# --- retries on submit ---------------------------------------------------------------------


async def test_submit_429_with_retry_after_ms_then_success(
    http_session: aiohttp.ClientSession, fake: FakeOpenAIVideos
) -> None:
    # A 5 s base delay: only honouring the server's 10 ms hint finishes within the 2 s below.
    provider = provider_for(http_session, fake, retry_base_delay=5.0)
    image = png(1280, 720)
    fake.inject(
        429,
        {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
        headers={"retry-after-ms": "10"},
        path_contains="/v1/videos",
        method="POST",
    )

    video_id = await asyncio.wait_for(provider.submit(VideoRequest("x", seconds=8, image=ReferenceImage(image))), 2)

    first, second = fake.requests_to("/v1/videos", "POST")
    forms = [parse_multipart(r.headers["Content-Type"], r.body) for r in (first, second)]
    for form in forms:
        assert form["prompt"].text == "x" and form["seconds"].text == "8" and form["size"].text == "1280x720"
        assert form["input_reference"].data == image
    assert list(fake.videos) == [video_id]


async def test_submit_persistent_503_gives_up_after_max_retries(
    provider: OpenAIVideosProvider, fake: FakeOpenAIVideos
) -> None:
    fake.inject(503, {"error": {"message": "overloaded"}}, times=5, path_contains="/v1/videos", method="POST")

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.submit(VideoRequest("x", seconds=8))

    assert caught.value.status == 503
    assert len(fake.requests_to("/v1/videos", "POST")) == 3  # max_retries=2
    assert fake.videos == {}


async def test_submit_429_exhausted_is_rate_limited(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    fake.inject(429, {"error": {"message": "slow down"}}, times=3, headers={"retry-after-ms": "1"}, method="POST")

    with pytest.raises(RateLimited):
        await provider.submit(VideoRequest("x", seconds=8))
    assert len(fake.requests_to("/v1/videos", "POST")) == 3


async def test_submit_400_not_retried(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    fake.inject(400, {"error": {"message": "Invalid prompt", "type": "invalid_request_error"}}, method="POST")

    with pytest.raises(ProviderRequestRejected, match="Invalid prompt") as caught:
        await provider.submit(VideoRequest("x", seconds=8))

    assert caught.value.status == 400
    assert len(fake.requests) == 1


async def test_bad_key_not_retried_and_not_leaked(http_session: aiohttp.ClientSession, fake: FakeOpenAIVideos) -> None:
    wrong = "sk-wrong-key-abcdef123456"
    provider = provider_for(http_session, fake, api_key=wrong)

    with pytest.raises(AuthenticationFailed) as on_submit:
        await provider.submit(VideoRequest("x", seconds=8))
    with pytest.raises(AuthenticationFailed) as on_status:
        await provider.status("video_123")

    assert len(fake.requests) == 2
    for caught in (on_submit, on_status):
        assert caught.value.status == 401
        assert "Incorrect API key" in caught.value.detail
        assert_no_key(caught.value, wrong)
    # The fake really echoed the key: the scrubbing is what kept it out.
    assert wrong in fake.requests[0].headers["Authorization"]


async def test_submit_dropped_connection_is_not_resent(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    fake.inject(0, path_contains="/v1/videos", method="POST", drop_connection=True)

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.submit(VideoRequest("x", seconds=8))

    assert caught.value.status is None
    assert len(fake.requests_to("/v1/videos", "POST")) == 1


async def test_key_never_in_errors(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    leaky = {"error": {"message": f"upstream said: key {KEY} is odd"}}
    fake.inject(400, leaky, method="POST")
    fake.inject(500, leaky, times=3, method="GET")
    fake.inject(429, leaky, times=3, method="DELETE", headers={"retry-after-ms": "1"})
    errors: list[BotError] = []
    for call in (
        provider.submit(VideoRequest("x", seconds=8)),
        provider.status("video_1"),
        provider.cancel("video_1"),
    ):
        with pytest.raises(BotError) as caught:
            await call
        errors.append(caught.value)
    fake.fail_with = f"blocked, key {KEY}"
    video_id = await provider.submit(VideoRequest("x", seconds=8))
    fake.advance(30)
    failure = (await provider.status(video_id)).error
    assert failure is not None
    errors.append(failure)

    assert [type(e) for e in errors] == [ProviderRequestRejected, ProviderUnavailable, RateLimited, ModerationRejected]
    for err in errors:
        assert "upstream said" in err.detail or "blocked" in err.detail
        assert_no_key(err)


# --- download, cancel, remix ---------------------------------------------------------------


async def completed_video(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> tuple[str, JobStatus]:
    video_id = await provider.submit(VideoRequest("x", seconds=8))
    fake.advance(30)
    status = await provider.status(video_id)
    assert status.state is JobState.SUCCEEDED
    return video_id, status


async def test_download_streams_exact_bytes(
    provider: OpenAIVideosProvider, fake: FakeOpenAIVideos, tmp_path: Path
) -> None:
    fake.video_bytes = tiny_mp4() + os.urandom(300_000)  # several chunks
    video_id, status = await completed_video(provider, fake)
    dest = tmp_path / "out" / "video.mp4"

    path = await provider.download(video_id, status, dest, max_bytes=10_000_000)

    assert path == dest
    assert dest.read_bytes() == fake.video_bytes
    (recorded,) = fake.requests_to("/content", "GET")
    assert recorded.path == f"/v1/videos/{video_id}/content"
    assert recorded.query == {"variant": "video"}
    assert recorded.headers["Authorization"] == f"Bearer {KEY}"


async def test_download_over_cap_leaves_nothing(
    provider: OpenAIVideosProvider, fake: FakeOpenAIVideos, tmp_path: Path
) -> None:
    fake.video_bytes = os.urandom(200_000)
    video_id, status = await completed_video(provider, fake)
    dest = tmp_path / "video.mp4"

    with pytest.raises(ResultTooLarge):
        await provider.download(video_id, status, dest, max_bytes=100_000)

    assert list(tmp_path.iterdir()) == []


async def test_cancel(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    video_id = await provider.submit(VideoRequest("x", seconds=8))

    assert await provider.cancel(video_id) is True
    assert video_id not in fake.videos
    assert await provider.cancel(video_id) is False
    assert [r.method for r in fake.requests_to(f"/v1/videos/{video_id}")] == ["DELETE", "DELETE"]


async def test_remix(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    video_id, _ = await completed_video(provider, fake)

    new_id = await provider.remix(video_id, "same, but at night")

    assert new_id != video_id
    (recorded,) = fake.requests_to("/remix", "POST")
    assert recorded.path == f"/v1/videos/{video_id}/remix"
    assert recorded.json() == {"prompt": "same, but at night"}
    remixed = fake.video_object(fake.videos[new_id])
    assert (remixed["remixed_from_video_id"], remixed["prompt"], remixed["status"]) == (
        video_id,
        "same, but at night",
        "queued",
    )


async def test_remix_429_then_success(provider: OpenAIVideosProvider, fake: FakeOpenAIVideos) -> None:
    video_id, _ = await completed_video(provider, fake)
    fake.inject(429, {"error": {"message": "busy"}}, headers={"retry-after-ms": "1"}, path_contains="/remix")

    await provider.remix(video_id, "again")

    assert [r.json() for r in fake.requests_to("/remix", "POST")] == [{"prompt": "again"}] * 2


# --- the fake against the official SDK -----------------------------------------------------

sdk = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the Sora API deprecated


@pytest.fixture
async def client(fake: FakeOpenAIVideos) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key=KEY, base_url=f"{fake.base_url}/v1", max_retries=0) as sdk_client:
        yield sdk_client


@sdk
async def test_sdk_create_retrieve_download(client: openai.AsyncOpenAI, fake: FakeOpenAIVideos) -> None:
    image = png(1024, 1792)
    created = await client.videos.create(
        prompt="a lighthouse",
        model="sora-2-pro",
        seconds="12",
        size="1024x1792",
        input_reference=("ref.png", image, "image/png"),
    )
    assert (created.object, created.status, created.progress) == ("video", "queued", 0)
    assert (created.model, created.seconds, created.size) == ("sora-2-pro", "12", "1024x1792")
    (form,) = fake.forms
    assert form["input_reference"].data == image and form["seconds"].text == "12"

    fake.advance(15)
    raw = await client.videos.with_raw_response.retrieve(created.id)
    running = raw.parse()
    assert raw.headers["openai-poll-after-ms"] == "250"
    assert running.status == "in_progress" and 0 < running.progress < 100

    fake.advance(10)
    done = await client.videos.retrieve(created.id)
    assert (done.id, done.status, done.progress, done.error) == (created.id, "completed", 100, None)
    assert done.completed_at is not None and done.expires_at is not None

    content = await client.videos.download_content(created.id, variant="video")
    assert content.content == tiny_mp4()
    thumbnail = await client.videos.download_content(created.id, variant="thumbnail")
    assert thumbnail.content[:4] == b"RIFF"


@sdk
async def test_sdk_poll_helper_follows_poll_hint(client: openai.AsyncOpenAI, fake: FakeOpenAIVideos) -> None:
    fake.queue_seconds, fake.run_seconds, fake.poll_after_ms = 0.02, 0.05, 10
    video = await asyncio.wait_for(client.videos.create_and_poll(prompt="rain", seconds="4", size="1280x720"), 5)
    assert video.status == "completed"
    assert len(fake.requests_to(f"/v1/videos/{video.id}", "GET")) >= 2


@sdk
async def test_sdk_failed_video_remix_and_delete(client: openai.AsyncOpenAI, fake: FakeOpenAIVideos) -> None:
    fake.fail_with = "Blocked by moderation."
    bad = await client.videos.create(prompt="x", seconds="8", size="720x1280")
    fake.fail_with = None
    good = await client.videos.create(prompt="y", seconds="8", size="720x1280")
    fake.advance(30)

    failed = await client.videos.retrieve(bad.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == ("moderation_blocked", "Blocked by moderation.")

    remixed = await client.videos.remix(good.id, prompt="y at dusk")
    assert remixed.remixed_from_video_id == good.id and remixed.status == "queued"

    deleted = await client.videos.delete(good.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (good.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        await client.videos.retrieve(good.id)


@sdk
async def test_sdk_typed_errors(client: openai.AsyncOpenAI, fake: FakeOpenAIVideos) -> None:
    async with openai.AsyncOpenAI(api_key="sk-bad", base_url=f"{fake.base_url}/v1", max_retries=0) as bad_client:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad_client.videos.retrieve("video_1")
    assert auth.value.status_code == 401 and auth.value.code == "invalid_api_key"

    with pytest.raises(openai.BadRequestError) as size:
        await client.videos.create(
            prompt="x", seconds="8", size="1280x720", input_reference=("r.png", png(64, 64), "image/png")
        )
    assert size.value.param == "input_reference"
    assert "must match the requested width and height" in size.value.message

    with pytest.raises(openai.BadRequestError) as seconds:
        await client.videos.create(prompt="x", seconds="16")  # type: ignore[arg-type]
    assert seconds.value.param == "seconds"

    fake.inject(429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})
    with pytest.raises(openai.RateLimitError):
        await client.videos.retrieve("video_1")
