"""SegmindProvider (v2 submit + poll) against the local fake, and the fake against the official SDK."""

from __future__ import annotations

import asyncio
import email.utils
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from segmind import SegmindClient
from segmind.exceptions import SegmindError
from segmind.v2 import InferenceFailed

from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import (
    AuthenticationFailed,
    BotError,
    GenerationFailed,
    InvalidRequest,
    ModerationRejected,
    ProviderOutOfCredits,
    ProviderRequestRejected,
    ProviderUnavailable,
    RateLimited,
    ResultTooLarge,
)
from bot.providers.base import VideoProvider
from bot.providers.segmind import SegmindProvider, extract_output_url, parse_reset_at
from tests.fakes.base import RecordedRequest
from tests.fakes.segmind import FakeSegmind
from tests.providers.polling import statuses_until_done as poll

KEY = "sk-segmind-SECRET-0123456789abcdef"
IMAGE_URL = "https://cdn.example.com/ref/frame.png"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSegmind]:
    server = FakeSegmind(api_key=KEY, queue_seconds=0.05, run_seconds=0.1)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def provider(fake: FakeSegmind, http_session: aiohttp.ClientSession) -> SegmindProvider:
    return SegmindProvider(http_session, api_key=KEY, base_url=fake.base_url, retry_base_delay=0.01)


def assert_no_key(exc: BaseException) -> None:
    texts = [str(exc), repr(exc)]
    if isinstance(exc, BotError):
        texts += [exc.detail, exc.user_message]
    for text in texts:
        assert KEY not in text


def submits(fake: FakeSegmind) -> list[RecordedRequest]:
    return fake.requests_to("/v2/sora-2", method="POST")


# --- submit: field mapping and validation ---------------------------------------------------------


async def test_is_a_video_provider(provider: SegmindProvider) -> None:
    assert isinstance(provider, VideoProvider)
    caps = provider.capabilities
    assert caps.sizes["sora-2"] == ("1280x720", "720x1280")
    assert set(caps.sizes["sora-2-pro"]) == {"720x1280", "1280x720", "1024x1792", "1792x1024"}
    assert caps.seconds == {
        "veo-3.1-fast": (4, 6, 8),
        "veo-3.1": (4, 6, 8),
        "sora-2": (4, 8, 12),
        "sora-2-pro": (4, 8, 12),
    }
    assert (caps.image_mode, caps.can_cancel, caps.resumable, caps.reports_progress) == ("url", False, True, False)


@pytest.mark.parametrize("model", ["veo-3.1", "veo-3.1-fast"])
async def test_submit_maps_veo_fields_exactly(fake: FakeSegmind, provider: SegmindProvider, model: str) -> None:
    """Veo 3.1 on Segmind: its own slug and fields (prompt, aspect_ratio, duration int, resolution,
    generate_audio, image URL), never the Sora shape."""
    image = ReferenceImage(data=b"png", url="https://cdn.example/ref.png")
    await provider.submit(VideoRequest("a fox", 6, "1080x1920", model, image=image, audio=False))
    sent = fake.requests_to(f"/v2/{model}", "POST")[-1]
    assert sent.json() == {
        "prompt": "a fox",
        "duration": 6,
        "aspect_ratio": "9:16",
        "resolution": "1080p",
        "generate_audio": False,
        "image": "https://cdn.example/ref.png",
    }
    await provider.submit(VideoRequest("a fox", 8, "1280x720", model))
    assert fake.requests_to(f"/v2/{model}", "POST")[-1].json() == {
        "prompt": "a fox",
        "duration": 8,
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "generate_audio": True,
    }


async def test_submit_maps_fields_exactly(fake: FakeSegmind, provider: SegmindProvider) -> None:
    request = VideoRequest(
        prompt="a fox in the snow",
        seconds=12,
        size="1792x1024",
        model="sora-2-pro",
        image=ReferenceImage(data=b"png", url=IMAGE_URL),
    )
    job_id = await provider.submit(request)

    assert job_id in fake.jobs
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v2/sora-2-pro")
    assert sent.headers["x-api-key"] == KEY
    body = sent.json()
    assert body == {"prompt": "a fox in the snow", "duration": 12, "size": "1792x1024", "input_reference": IMAGE_URL}
    assert type(body["duration"]) is int


async def test_submit_without_image_sends_no_reference(fake: FakeSegmind, provider: SegmindProvider) -> None:
    await provider.submit(VideoRequest(prompt="waves", seconds=4, size="720x1280"))
    [sent] = fake.requests
    assert sent.path == "/v2/sora-2"
    assert sent.json() == {"prompt": "waves", "duration": 4, "size": "720x1280"}


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (VideoRequest(prompt="x", seconds=8, size="1024x1792", model="sora-2"), "1280x720 or 720x1280"),
        (VideoRequest(prompt="x", seconds=25, size="1280x720", model="sora-2-pro"), "4 s, 8 s or 12 s"),
        (VideoRequest(prompt="x", seconds=8, model="sora-3"), "sora-2 or sora-2-pro"),
    ],
)
async def test_validation_refuses_before_any_request(
    fake: FakeSegmind, provider: SegmindProvider, request_: VideoRequest, allowed: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await provider.submit(request_)
    assert allowed in info.value.user_message
    assert "Segmind" in info.value.user_message
    assert fake.requests == []


async def test_image_without_public_url_is_refused(fake: FakeSegmind, provider: SegmindProvider) -> None:
    request = VideoRequest(prompt="x", seconds=4, image=ReferenceImage(data=b"png"))
    with pytest.raises(InvalidRequest):
        provider.validate(request)
    with pytest.raises(InvalidRequest):
        await provider.submit(request)
    assert fake.requests == []


# --- status: every state ----------------------------------------------------------------------


async def test_lifecycle_queued_running_succeeded(fake: FakeSegmind, provider: SegmindProvider) -> None:
    fake.queue_seconds, fake.run_seconds = 0.25, 0.25
    job_id = await provider.submit(VideoRequest(prompt="a lighthouse", seconds=8))
    seen = await poll(provider, job_id)

    states = [s.state for s in seen]
    assert [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]] == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert seen[-1].result_url == fake.file_url(job_id)
    assert all(s.progress is None for s in seen)
    assert all(r.headers["x-api-key"] == KEY for r in fake.requests_to("/v2/requests/"))
    assert len(fake.requests_to(f"/v2/requests/{job_id}/status")) == len(seen)
    assert len([r for r in fake.requests if r.path == f"/v2/requests/{job_id}"]) == 1


async def test_completed_result_is_cached(fake: FakeSegmind, provider: SegmindProvider) -> None:
    job_id = await provider.submit(VideoRequest(prompt="a lighthouse", seconds=8))
    await poll(provider, job_id)
    before = len(fake.requests)
    for _ in range(3):
        status = await provider.status(job_id)
        assert status.state is JobState.SUCCEEDED
        assert status.result_url == fake.file_url(job_id)
    assert len(fake.requests) == before


@pytest.mark.parametrize("shape", ["url", "video", "list", "object"])
async def test_result_url_found_in_every_documented_shape(
    fake: FakeSegmind, provider: SegmindProvider, shape: str
) -> None:
    fake.output_shape = shape
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    final = (await poll(provider, job_id))[-1]
    assert final.state is JobState.SUCCEEDED
    assert final.result_url == fake.file_url(job_id)


async def test_completed_without_url_fails(fake: FakeSegmind, provider: SegmindProvider) -> None:
    fake.output_shape = "none"
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    final = (await poll(provider, job_id))[-1]
    assert final.state is JobState.FAILED
    assert isinstance(final.error, GenerationFailed)


def test_extract_output_url_prefers_output_string() -> None:
    body = {"output": "https://a/x.mp4", "video": {"url": "https://b/y.mp4"}}
    assert extract_output_url(body) == "https://a/x.mp4"
    assert extract_output_url({"output": "not a url", "video": {"url": "https://b/y.mp4"}}) == "https://b/y.mp4"
    assert extract_output_url({"output": [{"url": "https://c/z.mp4"}]}) == "https://c/z.mp4"
    assert extract_output_url({"output": "data:video/mp4;base64,AAAA"}) is None


async def test_failed_is_read_from_a_422(fake: FakeSegmind, provider: SegmindProvider) -> None:
    fake.fail_with = "CUDA out of memory on worker 7"
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    seen = await poll(provider, job_id)
    final = seen[-1]

    assert final.state is JobState.FAILED
    assert type(final.error) is GenerationFailed
    assert "CUDA out of memory" in final.error.detail
    # The 422 was read as a FAILED body at once: one call per answer, no retry, no result fetch.
    assert len(fake.requests_to(f"/v2/requests/{job_id}/status")) == len(seen)
    assert [r for r in fake.requests if r.path == f"/v2/requests/{job_id}"] == []


async def test_moderation_failure_is_moderation_rejected(fake: FakeSegmind, provider: SegmindProvider) -> None:
    fake.fail_with = "Your prompt was blocked by our moderation system (content policy violation)."
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    final = (await poll(provider, job_id))[-1]
    assert final.state is JobState.FAILED
    assert isinstance(final.error, ModerationRejected)
    assert final.error.stage == "prompt"
    assert not final.error.retryable


async def test_failed_on_result_call_is_failed(fake: FakeSegmind, provider: SegmindProvider) -> None:
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    fake.inject(200, {"status": "COMPLETED", "request_id": job_id, "metrics": {}}, path_contains="/status")
    fake.inject(
        422,
        {"status": "FAILED", "error": "output flagged by safety filter", "metrics": {}, "request_id": job_id},
        path_contains=f"/v2/requests/{job_id}",
    )
    status = await provider.status(job_id)
    assert status.state is JobState.FAILED
    assert isinstance(status.error, ModerationRejected)
    assert status.error.stage == "finished video"
    assert [r.path for r in fake.requests[1:]] == [f"/v2/requests/{job_id}/status", f"/v2/requests/{job_id}"]


async def test_unknown_or_expired_id_is_failed(fake: FakeSegmind, provider: SegmindProvider) -> None:
    status = await provider.status("0e9d3c1a-0000-4000-8000-000000000000")
    assert status.state is JobState.FAILED
    assert isinstance(status.error, GenerationFailed)
    assert "unknown or expired" in status.error.detail
    assert len(fake.requests) == 1


async def test_422_without_failed_body_is_an_error(fake: FakeSegmind, provider: SegmindProvider) -> None:
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    fake.inject(422, {"error": "Unprocessable"}, path_contains="/status")
    with pytest.raises(ProviderRequestRejected):
        await provider.status(job_id)


# --- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 500, 503])
async def test_status_retries_transient_answers(fake: FakeSegmind, provider: SegmindProvider, code: int) -> None:
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    fake.inject(code, {"error": "try later"}, path_contains="/status")
    status = await provider.status(job_id)
    assert status.state is JobState.QUEUED
    assert len(fake.requests_to(f"/v2/requests/{job_id}/status")) == 2


async def test_status_401_is_not_retried(fake: FakeSegmind, http_session: aiohttp.ClientSession) -> None:
    good = SegmindProvider(http_session, api_key=KEY, base_url=fake.base_url, retry_base_delay=0.01)
    job_id = await good.submit(VideoRequest(prompt="p", seconds=4))
    bad = SegmindProvider(http_session, api_key="wrong-key-123456", base_url=fake.base_url, retry_base_delay=0.01)
    with pytest.raises(AuthenticationFailed):
        await bad.status(job_id)
    assert len(fake.requests_to("/status")) == 1


async def test_submit_429_without_retry_after_is_retried(fake: FakeSegmind, provider: SegmindProvider) -> None:
    reset_at = (datetime.now(UTC) + timedelta(milliseconds=50)).isoformat()
    fake.inject(
        429,
        {"error": "Rate limit exceeded"},
        path_contains="/v2/sora-2",
        method="POST",
        headers={"x-rate-limit-reset-at-utc": reset_at},
    )
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    assert job_id in fake.jobs
    assert len(submits(fake)) == 2
    assert len(fake.jobs) == 1


async def test_submit_429_exhausted_carries_reset_hint(fake: FakeSegmind, http_session: aiohttp.ClientSession) -> None:
    provider = SegmindProvider(http_session, api_key=KEY, base_url=fake.base_url, max_retries=0)
    reset_at = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    fake.inject(429, {"error": "Rate limit exceeded"}, headers={"x-rate-limit-reset-at-utc": reset_at})
    with pytest.raises(RateLimited) as info:
        await provider.submit(VideoRequest(prompt="p", seconds=4))
    assert info.value.retry_after is not None
    assert 25 < info.value.retry_after <= 30
    assert len(submits(fake)) == 1


async def test_submit_502_is_retried(fake: FakeSegmind, provider: SegmindProvider) -> None:
    fake.inject(502, "<html>Bad Gateway</html>", path_contains="/v2/sora-2", method="POST")
    await provider.submit(VideoRequest(prompt="p", seconds=4))
    assert len(submits(fake)) == 2


async def test_submit_connection_drop_is_never_resent(fake: FakeSegmind, provider: SegmindProvider) -> None:
    # The server may have taken the job before the connection died: re-sending could double-charge.
    fake.inject(200, drop_connection=True, path_contains="/v2/sora-2", method="POST")
    with pytest.raises(ProviderUnavailable) as info:
        await provider.submit(VideoRequest(prompt="p", seconds=4))
    assert info.value.status is None
    assert len(submits(fake)) == 1


async def test_submit_500_is_not_resent(fake: FakeSegmind, provider: SegmindProvider) -> None:
    fake.inject(500, {"error": "Internal Server Error"}, path_contains="/v2/sora-2", method="POST")
    with pytest.raises(ProviderUnavailable):
        await provider.submit(VideoRequest(prompt="p", seconds=4))
    assert len(submits(fake)) == 1


@pytest.mark.parametrize(
    ("code", "error_type"),
    [(400, ProviderRequestRejected), (401, AuthenticationFailed), (406, ProviderOutOfCredits)],
)
async def test_submit_client_errors_are_typed_and_not_retried(
    fake: FakeSegmind, provider: SegmindProvider, code: int, error_type: type[Exception]
) -> None:
    # The body echoes the key, as a careless server might: it must be scrubbed.
    fake.inject(code, {"error": f"rejected for key {KEY}"}, path_contains="/v2/sora-2", method="POST")
    with pytest.raises(error_type) as info:
        await provider.submit(VideoRequest(prompt="p", seconds=4))
    assert type(info.value) is error_type
    assert info.value.status == code
    assert "***" in info.value.detail
    assert_no_key(info.value)
    assert len(fake.requests) == 1


async def test_wrong_key_against_the_fake(fake: FakeSegmind, http_session: aiohttp.ClientSession) -> None:
    provider = SegmindProvider(http_session, api_key="nope-nope-nope", base_url=fake.base_url)
    with pytest.raises(AuthenticationFailed) as info:
        await provider.submit(VideoRequest(prompt="p", seconds=4))
    assert "Invalid API key" in info.value.detail
    assert len(fake.requests) == 1


def test_parse_reset_at_formats() -> None:
    now = 1_800_000_000.0
    assert parse_reset_at("1800000012", now) == 12.0
    assert parse_reset_at("1800000012000", now) == 12.0
    iso = datetime.fromtimestamp(now + 5, UTC)
    assert parse_reset_at(iso.isoformat(), now) == pytest.approx(5.0)
    assert parse_reset_at(iso.strftime("%Y-%m-%dT%H:%M:%SZ"), now) == pytest.approx(5.0)
    assert parse_reset_at(iso.replace(tzinfo=None).isoformat(), now) == pytest.approx(5.0)
    assert parse_reset_at(email.utils.formatdate(now + 7, usegmt=True), now) == pytest.approx(7.0)
    assert parse_reset_at("1799999990", now) == 0.0
    assert parse_reset_at("soon", now) is None
    assert parse_reset_at(None, now) is None


# --- download -----------------------------------------------------------------------------------


async def test_download_streams_exact_bytes_without_key(
    fake: FakeSegmind, provider: SegmindProvider, tmp_path: Path
) -> None:
    fake.video_bytes = os.urandom(300_000)  # several chunks
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    final = (await poll(provider, job_id))[-1]
    dest = tmp_path / "out" / "video.mp4"

    result = await provider.download(job_id, final, dest, max_bytes=1_000_000)

    assert result == dest
    assert dest.read_bytes() == fake.video_bytes
    [fetch] = fake.requests_to("/files/")
    assert "x-api-key" not in {name.lower() for name in fetch.headers}
    assert KEY not in str(fetch.headers)


async def test_download_over_cap_leaves_no_file(fake: FakeSegmind, provider: SegmindProvider, tmp_path: Path) -> None:
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    final = (await poll(provider, job_id))[-1]
    dest = tmp_path / "video.mp4"
    with pytest.raises(ResultTooLarge):
        await provider.download(job_id, final, dest, max_bytes=len(fake.video) - 1)
    assert list(tmp_path.iterdir()) == []


async def test_download_with_a_bare_status_asks_for_the_url(
    fake: FakeSegmind, provider: SegmindProvider, http_session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # After a restart the poller may hold only the id: download finds the URL itself.
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    await asyncio.sleep(fake.queue_seconds + fake.run_seconds + 0.02)
    fresh = SegmindProvider(http_session, api_key=KEY, base_url=fake.base_url)
    dest = await fresh.download(job_id, JobStatus(JobState.SUCCEEDED), tmp_path / "v.mp4", max_bytes=10**7)
    assert dest.read_bytes() == fake.video


async def test_cancel_is_not_supported(fake: FakeSegmind, provider: SegmindProvider) -> None:
    job_id = await provider.submit(VideoRequest(prompt="p", seconds=4))
    assert await provider.cancel(job_id) is False
    await provider.aclose()
    assert len(fake.requests) == 1


# --- the fake speaks the real format: the official SDK against it ---------------------------------


def sdk_client(fake: FakeSegmind, key: str = KEY) -> SegmindClient:
    # The SDK derives its v2 base by stripping the trailing /vN of base_url.
    return SegmindClient(api_key=key, base_url=f"{fake.base_url}/v1", timeout=10)


async def test_official_sdk_completes_against_the_fake(fake: FakeSegmind, provider: SegmindProvider) -> None:
    client = sdk_client(fake)

    def run() -> tuple[str, dict[str, object]]:
        job = client.submit_async("sora-2-pro", prompt="a druid", duration="8", size="1792x1024")
        return job.request_id, job.wait(timeout=10, interval=0.02)

    request_id, result = await asyncio.to_thread(run)

    assert result["status"] == "COMPLETED"
    assert result["output"] == fake.file_url(request_id)
    [sent] = fake.requests_to("/v2/sora-2-pro", method="POST")
    assert sent.json() == {"prompt": "a druid", "duration": "8", "size": "1792x1024"}
    # Our provider reads the SDK's job the same way.
    status = await provider.status(request_id)
    assert status.state is JobState.SUCCEEDED
    assert status.result_url == result["output"]


async def test_official_sdk_raises_inference_failed(fake: FakeSegmind) -> None:
    fake.fail_with = "Content blocked by safety system"
    client = sdk_client(fake)

    def run() -> dict[str, object]:
        return client.submit_async("sora-2", prompt="p", duration=4).wait(timeout=10, interval=0.02)

    with pytest.raises(InferenceFailed) as info:
        await asyncio.to_thread(run)
    assert info.value.detail == "Content blocked by safety system"
    assert info.value.status_body["status"] == "FAILED"


async def test_official_sdk_v1_and_errors(fake: FakeSegmind) -> None:
    response = await asyncio.to_thread(sdk_client(fake).run_sync, "sora-2", prompt="p", duration=4)
    assert response.content == fake.video
    assert float(response.headers["x-remaining-credits"]) < 100

    with pytest.raises(SegmindError) as info:
        await asyncio.to_thread(sdk_client(fake, "bad-key-0000").submit_async, "sora-2", prompt="p")
    assert (info.value.status, info.value.detail) == (401, "Invalid API key")

    with pytest.raises(SegmindError) as info:
        await asyncio.to_thread(sdk_client(fake).submit_async, "sora-2", prompt="p", size="1792x1024")
    assert info.value.status == 400
