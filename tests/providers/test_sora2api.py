"""Sora2ApiProvider against a local fake Sora2API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

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
from bot.providers.sora2api import Sora2ApiProvider, envelope_code, parse_callback
from tests.fakes.clock import ManualClock
from tests.fakes.sora2api import FakeSora2Api
from tests.fakes.videos import tiny_mp4

KEY = "sk-sora2api-SECRET-abcdef"
RETENTION = 15 * 24 * 3600


@pytest.fixture
async def fake() -> AsyncIterator[FakeSora2Api]:
    server = FakeSora2Api(api_key=KEY, run_seconds=10.0)
    server.clock = ManualClock()
    async with server:
        yield server


def make(session: aiohttp.ClientSession, fake: FakeSora2Api, **kwargs: object) -> Sora2ApiProvider:
    return Sora2ApiProvider(
        session,
        api_key=KEY,
        base_url=fake.base_url,
        retry_base_delay=0.01,
        path_prefix=fake.prefix,
        **kwargs,  # type: ignore[arg-type]
    )


def advance(fake: FakeSora2Api, now: float) -> None:
    clock = fake.clock
    assert isinstance(clock, ManualClock)
    clock.now = now


def assert_no_key(err: BotError) -> None:
    assert KEY not in str(err) and KEY not in err.detail and KEY not in err.user_message


async def test_is_a_video_provider(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    assert isinstance(make(http_session, fake), VideoProvider)


async def test_field_mapping_pro_portrait_with_image(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    image = ReferenceImage(data=b"", url="https://cdn.example/ref.png")
    provider = make(http_session, fake, callback_url_for=lambda: "https://bot.example/hook/sora2api")
    request = VideoRequest("a red fox", seconds=12, size="720x1280", model="sora-2-pro", image=image)

    task_id = await provider.submit(request)

    (sent,) = fake.requests_to("/generate", "POST")
    assert sent.path == "/api/v1/sora2api/generate"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "prompt": "a red fox",
        "aspectRatio": "portrait",
        "quality": "hd",
        "imageUrls": ["https://cdn.example/ref.png"],
        "callBackUrl": "https://bot.example/hook/sora2api",
    }
    assert task_id in fake.tasks


async def test_field_mapping_standard_landscape(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    provider = make(http_session, fake, callback_url_for=lambda: None)
    await provider.submit(VideoRequest("waves", seconds=8, size="1280x720", model="sora-2"))
    body = fake.requests_to("/generate", "POST")[0].json()
    assert body == {"prompt": "waves", "aspectRatio": "landscape", "quality": "standard"}


async def test_configurable_prefix(http_session: aiohttp.ClientSession) -> None:
    async with FakeSora2Api(api_key=KEY, prefix="/api/v1/sora2") as server:
        provider = Sora2ApiProvider(
            http_session, api_key=KEY, base_url=server.base_url + "/", path_prefix="api/v1/sora2"
        )
        task_id = await provider.submit(VideoRequest("waves", seconds=8))
        assert (await provider.status(task_id)).state in (JobState.RUNNING, JobState.SUCCEEDED)
        assert [r.path for r in server.requests] == ["/api/v1/sora2/generate", "/api/v1/sora2/record-info"]


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (VideoRequest("x", seconds=8, size="1792x1024", model="sora-2-pro"), "1280x720 or 720x1280"),
        (VideoRequest("x", seconds=25, model="sora-2-pro"), "4 s, 8 s, 10 s or 12 s"),
        (VideoRequest("x", seconds=8, model="sora-1"), "sora-2 or sora-2-pro"),
        (VideoRequest("   ", seconds=8), "prompt is empty"),
        (VideoRequest("x", seconds=8, image=ReferenceImage(data=b"png")), "public link"),
    ],
)
async def test_refuses_before_any_request(
    http_session: aiohttp.ClientSession, fake: FakeSora2Api, request_: VideoRequest, allowed: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await make(http_session, fake).submit(request_)
    assert allowed in info.value.user_message
    assert fake.requests == []


async def test_lifecycle_and_download(http_session: aiohttp.ClientSession, fake: FakeSora2Api, tmp_path: Path) -> None:
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=8))

    advance(fake, 5.0)
    running = await provider.status(task_id)
    assert running.state is JobState.RUNNING and running.progress is None and running.result_url is None

    advance(fake, 10.0)
    done = await provider.status(task_id)
    assert done.state is JobState.SUCCEEDED
    assert done.result_url == fake.result_url(task_id)
    complete = datetime.strptime(fake.record(task_id)["completeTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert done.expires_at == complete.timestamp() + RETENTION
    assert fake.requests_to("/record-info")[0].query == {"taskId": task_id}

    dest = await provider.download(task_id, done, tmp_path / "out.mp4", max_bytes=10_000_000)
    assert dest.read_bytes() == tiny_mp4()
    (fetch,) = fake.requests_to("/files/")
    assert "Authorization" not in fetch.headers  # the key never goes to the result host


async def test_success_without_url_keeps_polling(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    record = {"taskId": "t1", "successFlag": 1, "response": {"imageUrl": None}}
    fake.inject(200, {"code": 200, "msg": "success", "data": record}, path_contains="/record-info")
    assert (await make(http_session, fake).status("t1")).state is JobState.RUNNING


async def test_result_urls_form_is_accepted(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    record = {"taskId": "t1", "successFlag": "1", "response": {"resultUrls": ["https://cdn.example/v.mp4"]}}
    fake.inject(200, {"code": "200", "msg": "success", "data": record}, path_contains="/record-info")
    status = await make(http_session, fake).status("t1")
    assert status.state is JobState.SUCCEEDED and status.result_url == "https://cdn.example/v.mp4"
    assert status.expires_at is None  # no timestamps to go by


@pytest.mark.parametrize(
    ("message", "flag", "stage"),
    [
        ("Your prompt was flagged by content moderation", 3, "prompt"),
        ("output video flagged by moderation at 95%", 3, "finished video"),
        ("The uploaded image contains a real person", 2, "reference image"),
    ],
)
async def test_moderation_failure(
    http_session: aiohttp.ClientSession, fake: FakeSora2Api, message: str, flag: int, stage: str
) -> None:
    fake.fail_with, fake.fail_flag = message, flag
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=8))
    advance(fake, 10.0)

    status = await provider.status(task_id)

    assert status.state is JobState.FAILED
    assert isinstance(status.error, ModerationRejected)
    assert status.error.stage == stage
    assert message in status.error.detail


async def test_plain_failure_is_generation_failed(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    fake.fail_with = "internal render error"
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=8))
    advance(fake, 10.0)
    status = await provider.status(task_id)
    assert status.state is JobState.FAILED and isinstance(status.error, GenerationFailed)


@pytest.mark.parametrize(
    ("code", "error_type", "requests"),
    [
        (402, ProviderOutOfCredits, 1),
        (401, AuthenticationFailed, 1),
        (400, ProviderRequestRejected, 1),
        (501, GenerationFailed, 1),
        (505, ProviderRequestRejected, 1),
        (455, ProviderUnavailable, 3),  # maintenance: retried like a 503, then given up
    ],
)
async def test_business_error_with_http_200(
    http_session: aiohttp.ClientSession, fake: FakeSora2Api, code: int, error_type: type[BotError], requests: int
) -> None:
    fake.inject(200, {"code": code, "msg": f"business error {code}", "data": None}, times=5, path_contains="/generate")
    provider = make(http_session, fake, max_retries=2)
    with pytest.raises(error_type) as info:
        await provider.submit(VideoRequest("a cat", seconds=8))
    assert type(info.value) is error_type
    assert f"business error {code}" in info.value.detail
    assert len(fake.requests_to("/generate")) == requests


async def test_next_generate_code_knob(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    fake.next_generate_code = 402
    provider = make(http_session, fake)
    with pytest.raises(ProviderOutOfCredits):
        await provider.submit(VideoRequest("a cat", seconds=8))
    assert await provider.submit(VideoRequest("a cat", seconds=8)) in fake.tasks


async def test_wrong_key_is_authentication_failed(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    provider = Sora2ApiProvider(http_session, api_key="sk-wrong-key", base_url=fake.base_url, retry_base_delay=0.01)
    with pytest.raises(AuthenticationFailed):
        await provider.submit(VideoRequest("a cat", seconds=8))
    assert len(fake.requests) == 1


async def test_key_echoed_by_provider_is_scrubbed(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    fake.inject(200, {"code": 400, "msg": f"bad key {KEY}", "data": None}, path_contains="/generate")
    with pytest.raises(ProviderRequestRejected) as info:
        await make(http_session, fake).submit(VideoRequest("a cat", seconds=8))
    assert_no_key(info.value)


async def test_429_retry_after_then_success_on_submit(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    fake.inject(
        429, {"code": 429, "msg": "too many requests"}, path_contains="/generate", headers={"Retry-After": "0.2"}
    )
    started = time.monotonic()
    task_id = await make(http_session, fake).submit(VideoRequest("a cat", seconds=8))
    assert time.monotonic() - started >= 0.2
    assert len(fake.requests_to("/generate")) == 2
    assert list(fake.tasks) == [task_id]


async def test_500_then_success_on_status(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=8))
    fake.inject(500, {"code": 500, "msg": "oops"}, path_contains="/record-info")
    assert (await provider.status(task_id)).state is JobState.RUNNING
    assert len(fake.requests_to("/record-info")) == 2


async def test_504_on_submit_is_not_resent(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    fake.inject(504, "gateway timeout", path_contains="/generate")
    with pytest.raises(ProviderUnavailable):
        await make(http_session, fake).submit(VideoRequest("a cat", seconds=8))
    assert len(fake.requests_to("/generate")) == 1


async def test_dropped_connection_on_submit_is_not_resent(
    http_session: aiohttp.ClientSession, fake: FakeSora2Api
) -> None:
    fake.inject(0, path_contains="/generate", drop_connection=True)
    with pytest.raises(ProviderUnavailable) as info:
        await make(http_session, fake).submit(VideoRequest("a cat", seconds=8))
    assert len(fake.requests_to("/generate")) == 1
    assert_no_key(info.value)


async def test_unknown_task_is_rejected(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    with pytest.raises(ProviderRequestRejected) as info:
        await make(http_session, fake).status("nope")
    assert "task not found" in info.value.detail
    assert len(fake.requests) == 1


async def test_download_cap(http_session: aiohttp.ClientSession, fake: FakeSora2Api, tmp_path: Path) -> None:
    fake.video_bytes = b"\x01" * 150_000
    provider = make(http_session, fake)
    task_id = await provider.submit(VideoRequest("a cat", seconds=8))
    advance(fake, 10.0)
    status = await provider.status(task_id)

    with pytest.raises(ResultTooLarge):
        await provider.download(task_id, status, tmp_path / "big.mp4", max_bytes=100_000)
    assert list(tmp_path.iterdir()) == []

    dest = await provider.download(task_id, status, tmp_path / "ok.mp4", max_bytes=150_000)
    assert dest.read_bytes() == fake.video_bytes


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"code": 402}, 402),
        ({"code": 200}, None),
        ({"code": "455"}, 455),
        ({"code": "oops"}, None),
        ({"code": None}, None),
        ({"code": True}, None),
        ({"code": 1.5}, None),
        ({"code": 0}, None),
        ("text", None),
        ([], None),
    ],
)
def test_envelope_code_never_crashes(body: object, expected: int | None) -> None:
    assert envelope_code(body) == expected


async def test_odd_envelope_code_is_not_an_error(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    fake.inject(200, {"code": "OK", "msg": "success", "data": {"taskId": "t-odd"}}, path_contains="/generate")
    assert await make(http_session, fake).submit(VideoRequest("a cat", seconds=8)) == "t-odd"


async def test_parse_callback_both_shapes(http_session: aiohttp.ClientSession, fake: FakeSora2Api) -> None:
    task_id = await make(http_session, fake).submit(VideoRequest("a cat", seconds=8))
    advance(fake, 10.0)

    for style in ("record", "urls"):
        parsed = parse_callback(fake.callback_body(task_id, style=style))
        assert parsed is not None, style
        got_id, status = parsed
        assert got_id == task_id
        assert status.state is JobState.SUCCEEDED and status.result_url == fake.result_url(task_id)

    fake.fail_with = "prompt violates content policy"
    for style in ("record", "urls"):
        parsed = parse_callback(fake.callback_body(task_id, style=style))
        assert parsed is not None
        assert parsed[1].state is JobState.FAILED and isinstance(parsed[1].error, ModerationRejected)

    assert parse_callback({"code": 200, "msg": "ok"}) is None
    assert parse_callback({"code": 200, "data": {"resultUrls": ["https://x/v.mp4"]}}) is None
    english_json_string = {"code": 200, "data": {"taskId": "t9", "resultUrls": '["https://x/v.mp4"]'}}
    parsed = parse_callback(english_json_string)
    assert parsed is not None and parsed[0] == "t9" and parsed[1].result_url == "https://x/v.mp4"
