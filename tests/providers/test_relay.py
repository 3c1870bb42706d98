"""RelayProvider against a local fake ``/v2/videos/generations`` relay."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from bot.domain import JobState, ReferenceImage, VideoRequest
from bot.errors import (
    AuthenticationFailed,
    BotError,
    GenerationFailed,
    InvalidRequest,
    ModerationRejected,
    ProviderOutOfCredits,
    ProviderRequestRejected,
    ProviderUnavailable,
    ResultTooLarge,
)
from bot.providers.base import VideoProvider
from bot.providers.relay import RelayProvider, parse_callback, parse_progress
from tests.fakes.clock import ManualClock
from tests.fakes.relay import SIZE_MISMATCH, FakeRelay
from tests.fakes.videos import tiny_mp4

KEY = "sk-relay-SECRET-0123456789"


@pytest.fixture
async def fake() -> AsyncIterator[FakeRelay]:
    server = FakeRelay(api_key=KEY, run_seconds=10.0)
    server.clock = ManualClock()
    async with server:
        yield server


def make(session: aiohttp.ClientSession, fake: FakeRelay, **kwargs: object) -> RelayProvider:
    return RelayProvider(session, api_key=KEY, base_url=fake.base_url, retry_base_delay=0.01, **kwargs)  # type: ignore[arg-type]


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def assert_no_key(err: BotError) -> None:
    assert KEY not in str(err) and KEY not in err.detail and KEY not in err.user_message


async def test_is_a_video_provider(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    assert isinstance(make(http_session, fake), VideoProvider)


async def test_field_mapping_pro_portrait_with_image(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.uploads["ref.png"] = png(720, 1280)
    image = ReferenceImage(data=b"", url=fake.upload_url("ref.png"))
    provider = make(http_session, fake, callback_url_for=lambda: "https://bot.example/hook/relay")
    request = VideoRequest("a red fox", seconds=12, size="720x1280", model="sora-2-pro", image=image)

    task_id = await provider.submit(request)

    (sent,) = fake.requests_to("/v2/videos/generations", "POST")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "prompt": "a red fox",
        "model": "sora-2-pro",
        "aspect_ratio": "9:16",
        "duration": "12",
        "hd": True,
        "images": [fake.upload_url("ref.png")],
        "notify_hook": "https://bot.example/hook/relay",
    }
    assert task_id in fake.tasks


async def test_field_mapping_text_only_landscape(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    await make(http_session, fake).submit(VideoRequest("waves", seconds=8, size="1280x720", model="sora-2"))

    body = fake.requests_to("/v2/videos/generations", "POST")[0].json()
    assert body == {"prompt": "waves", "model": "sora-2", "aspect_ratio": "16:9", "duration": "8", "hd": False}
    assert isinstance(body["duration"], str)


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (VideoRequest("x", seconds=8, size="1024x1792", model="sora-2-pro"), "1280x720 or 720x1280"),
        (VideoRequest("x", seconds=25, size="1280x720", model="sora-2"), "4 s, 8 s, 10 s, 12 s or 15 s"),
        (VideoRequest("x", seconds=8, model="sora-3"), "sora-2 or sora-2-pro"),
        (VideoRequest("x", seconds=8, image=ReferenceImage(data=b"png")), "public link"),
    ],
)
async def test_refuses_before_any_request(
    http_session: aiohttp.ClientSession, fake: FakeRelay, request_: VideoRequest, allowed: str
) -> None:
    provider = make(http_session, fake)
    with pytest.raises(InvalidRequest) as info:
        await provider.submit(request_)
    assert allowed in info.value.user_message
    assert fake.requests == []


async def test_lifecycle_progress_and_download(
    http_session: aiohttp.ClientSession, fake: FakeRelay, tmp_path: Path
) -> None:
    provider = make(http_session, fake)
    clock = fake.clock
    assert isinstance(clock, ManualClock)
    task_id = await provider.submit(VideoRequest("a cat", seconds=4))

    seen = []
    for now in (0.0, 3.0, 7.5, 10.0):
        clock.now = now
        seen.append(await provider.status(task_id))
    assert [s.state for s in seen] == [JobState.QUEUED, JobState.RUNNING, JobState.RUNNING, JobState.SUCCEEDED]
    assert [s.progress for s in seen] == [0.0, 30.0, 75.0, 100.0]
    assert seen[-1].result_url == fake.result_url(task_id)

    dest = await provider.download(task_id, seen[-1], tmp_path / "out.mp4", max_bytes=10_000_000)
    assert dest.read_bytes() == tiny_mp4()
    (fetch,) = fake.requests_to("/files/")
    assert "Authorization" not in fetch.headers  # the key never goes to the result host


async def test_wrapped_new_api_form(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.wrapped = True
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=4))
    fake.clock.now = 5.0  # type: ignore[attr-defined]
    assert (await provider.status(task_id)).progress == 50.0
    fake.clock.now = 11.0  # type: ignore[attr-defined]
    done = await provider.status(task_id)
    assert done.state is JobState.SUCCEEDED and done.result_url == fake.result_url(task_id)


async def test_success_without_url_keeps_polling(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.inject(200, {"task_id": "t1", "status": "SUCCESS", "progress": "100%", "data": {}}, method="GET")
    status = await make(http_session, fake).status("t1")
    assert status.state is JobState.RUNNING and status.progress == 100.0


async def test_output_moderation_after_90_percent(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.fail_with = "output video flagged by moderation"
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=4))
    fake.clock.now = 9.0  # type: ignore[attr-defined]
    running = await provider.status(task_id)
    assert running.state is JobState.RUNNING and running.progress == 90.0
    fake.clock.now = 9.6  # type: ignore[attr-defined]

    failed = await provider.status(task_id)

    assert failed.state is JobState.FAILED and failed.progress == 95.0
    assert isinstance(failed.error, ModerationRejected)
    assert failed.error.stage == "finished video"
    assert "finished video" in failed.error.user_message


async def test_plain_failure_is_generation_failed(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.fail_with = "upstream worker crashed"
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=4))
    fake.clock.now = 10.0  # type: ignore[attr-defined]
    status = await provider.status(task_id)
    assert status.state is JobState.FAILED and isinstance(status.error, GenerationFailed)


async def test_wrong_key_is_authentication_failed(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    provider = RelayProvider(http_session, api_key="sk-wrong-key-999", base_url=fake.base_url, retry_base_delay=0.01)
    with pytest.raises(AuthenticationFailed) as info:
        await provider.submit(VideoRequest("a cat", seconds=4))
    assert "Invalid token" in info.value.detail
    assert len(fake.requests) == 1


async def test_quota_403_is_out_of_credits(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.inject(403, {"error": {"message": "user quota is not enough", "type": "new_api_error"}}, method="POST")
    with pytest.raises(ProviderOutOfCredits):
        await make(http_session, fake).submit(VideoRequest("a cat", seconds=4))
    assert len(fake.requests) == 1


async def test_key_echoed_by_provider_is_scrubbed(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.inject(400, {"error": {"message": f"bad request for token {KEY}"}}, method="POST")
    with pytest.raises(ProviderRequestRejected) as info:
        await make(http_session, fake).submit(VideoRequest("a cat", seconds=4))
    assert_no_key(info.value)
    assert "***" in info.value.detail


async def test_429_retry_after_then_success_on_submit(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.inject(429, {"error": {"message": "slow down"}}, method="POST", headers={"Retry-After": "0.2"})
    started = time.monotonic()
    task_id = await make(http_session, fake).submit(VideoRequest("a cat", seconds=4))
    assert time.monotonic() - started >= 0.2  # the server's delay, not our 0.01 s backoff
    assert len(fake.requests_to("/v2/videos/generations", "POST")) == 2
    assert len(fake.tasks) == 1 and task_id in fake.tasks


async def test_500_then_success_on_status(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=4))
    fake.inject(500, {"error": {"message": "boom"}}, method="GET")
    status = await provider.status(task_id)
    assert status.state is JobState.QUEUED
    assert len(fake.requests_to(f"/v2/videos/generations/{task_id}", "GET")) == 2


async def test_dropped_connection_on_submit_is_not_resent(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.inject(0, method="POST", drop_connection=True)
    with pytest.raises(ProviderUnavailable) as info:
        await make(http_session, fake).submit(VideoRequest("a cat", seconds=4))
    assert len(fake.requests_to("/v2/videos/generations", "POST")) == 1
    assert_no_key(info.value)


async def test_dropped_connection_on_status_is_retried(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=4))
    fake.inject(0, method="GET", drop_connection=True)
    assert (await provider.status(task_id)).state is JobState.QUEUED
    assert len(fake.requests_to("/v2/videos/generations/", "GET")) == 2


async def test_unknown_task_is_rejected(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    with pytest.raises(ProviderRequestRejected) as info:
        await make(http_session, fake).status("nope")
    assert "task_not_exist" in info.value.detail


async def test_download_cap(http_session: aiohttp.ClientSession, fake: FakeRelay, tmp_path: Path) -> None:
    fake.video_bytes = b"\x00" * 200_000
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=4))
    fake.clock.now = 10.0  # type: ignore[attr-defined]
    status = await provider.status(task_id)

    with pytest.raises(ResultTooLarge):
        await provider.download(task_id, status, tmp_path / "big.mp4", max_bytes=100_000)
    assert list(tmp_path.iterdir()) == []

    dest = await provider.download(task_id, status, tmp_path / "ok.mp4", max_bytes=200_000)
    assert dest.read_bytes() == fake.video_bytes


async def test_wrong_image_size_is_a_clear_error(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.require_image_size = (720, 1280)
    fake.uploads["wrong.png"] = png(640, 480)
    image = ReferenceImage(data=b"", url=fake.upload_url("wrong.png"))
    request = VideoRequest("a cat", seconds=8, size="720x1280", image=image)

    with pytest.raises(ProviderRequestRejected) as info:
        await make(http_session, fake).submit(request)

    assert not isinstance(info.value, ModerationRejected)
    assert SIZE_MISMATCH in info.value.detail
    assert "exactly 720x1280 pixels" in info.value.user_message
    assert fake.fetched_images == [fake.upload_url("wrong.png")]
    assert fake.tasks == {}


async def test_right_image_size_is_accepted(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    fake.require_image_size = (720, 1280)
    fake.uploads["right.png"] = png(720, 1280)
    image = ReferenceImage(data=b"", url=fake.upload_url("right.png"))
    task_id = await make(http_session, fake).submit(VideoRequest("a cat", seconds=8, size="720x1280", image=image))
    assert task_id in fake.tasks


def test_size_mismatch_as_job_failure() -> None:
    parsed = parse_callback({"task_id": "t", "status": "FAILURE", "progress": "0%", "fail_reason": SIZE_MISMATCH})
    assert parsed is not None
    error = parsed[1].error
    assert isinstance(error, ProviderRequestRejected) and not isinstance(error, ModerationRejected)
    assert "reference image" in error.user_message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0%", 0.0),
        ("42%", 42.0),
        (" 7 % ", 7.0),
        (55, 55.0),
        (12.5, 12.5),
        ("150%", 100.0),
        ("-3", 0.0),
        ("", None),
        ("abc%", None),
        (None, None),
        (True, None),
        ([], None),
        ("nan", None),
    ],
)
def test_parse_progress(raw: object, expected: float | None) -> None:
    assert parse_progress(raw) == expected


async def test_parse_callback_both_shapes(http_session: aiohttp.ClientSession, fake: FakeRelay) -> None:
    task_id = await make(http_session, fake).submit(VideoRequest("a cat", seconds=4))
    fake.clock.now = 10.0  # type: ignore[attr-defined]
    flat = fake.task_object(task_id)

    for body in (flat, {"code": "success", "message": "", "data": flat}):
        parsed = parse_callback(body)
        assert parsed is not None
        got_id, status = parsed
        assert got_id == task_id
        assert status.state is JobState.SUCCEEDED and status.result_url == fake.result_url(task_id)

    failed = parse_callback({"task_id": "t2", "status": "FAILURE", "fail_reason": "prompt violates content policy"})
    assert failed is not None and isinstance(failed[1].error, ModerationRejected)
    assert failed[1].error.stage == "prompt"
    assert parse_callback({"hello": "world"}) is None
    assert parse_callback({"code": "success", "data": None}) is None
