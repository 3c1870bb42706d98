"""FalProvider against the local fake fal queue, and the fake against the official fal-client package."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import fal_client
import fal_client.client
import pytest

from bot.catalogue import Catalogue, Host, load_catalogue
from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import (
    AuthenticationFailed,
    BotError,
    GenerationFailed,
    InvalidRequest,
    ModelUnavailable,
    ModerationRejected,
    ProviderOutOfCredits,
    ProviderRequestRejected,
    ProviderUnavailable,
    ResultTooLarge,
)
from bot.providers.base import VideoProvider
from bot.providers.fal import FalProvider, canonical_job_id, parse_webhook, request_id_of
from tests.fakes.fal import FakeFal
from tests.providers.polling import statuses_until_done as poll

KEY = "fal-key-SECRET-0123456789abcdef"
IMAGE_URL = "https://cdn.example.com/ref/frame.png"
IMAGE = ReferenceImage(data=b"\x89PNG fake bytes", url=IMAGE_URL)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture
async def fake() -> AsyncIterator[FakeFal]:
    server = FakeFal(api_key=KEY, queue_seconds=0.05, run_seconds=0.1)
    await server.start()
    yield server
    await server.stop()


def make_provider(fake: FakeFal, session: aiohttp.ClientSession, catalogue: Catalogue, **hosts: Host) -> FalProvider:
    return FalProvider(
        session,
        api_key=KEY,
        base_url=fake.base_url,
        hosts={**catalogue.hosts_for("fal"), **hosts},
        specs=catalogue.models,
        jwks_url=fake.jwks_url,
        retry_base_delay=0.01,
    )


@pytest.fixture
def provider(fake: FakeFal, http_session: aiohttp.ClientSession, catalogue: Catalogue) -> FalProvider:
    return make_provider(fake, http_session, catalogue)


def assert_no_key(exc: BaseException) -> None:
    texts = [str(exc), repr(exc)]
    if isinstance(exc, BotError):
        texts += [exc.detail, exc.user_message]
    assert all(KEY not in text for text in texts)


# --- capabilities and the exact fields per catalogue model ---------------------------------------


async def test_is_a_video_provider_built_from_the_catalogue(provider: FalProvider, catalogue: Catalogue) -> None:
    assert isinstance(provider, VideoProvider)
    caps = provider.capabilities
    assert set(caps.models) == {"veo-3.1", "veo-3.1-fast", "kling-3-pro", "seedance-2", "hailuo-2.3"}
    for model in caps.models:
        spec = catalogue.models[model]
        assert (caps.sizes[model], caps.seconds[model]) == (spec.sizes, spec.durations)
        assert caps.typical_seconds[model] == spec.typical_seconds
    assert (caps.image_mode, caps.can_cancel, caps.resumable) == ("url", True, True)
    assert caps.callbacks is not None and caps.callbacks.verify is not None


def veo(duration: str, aspect: str, resolution: str, audio: bool, **extra: Any) -> dict[str, Any]:
    body = {"duration": duration, "aspect_ratio": aspect, "resolution": resolution, "generate_audio": audio}
    return {**body, **extra}


FIELD_CASES = [
    # (model, size, seconds, image, audio, endpoint, body without the prompt)
    ("veo-3.1", "1280x720", 8, False, None, "fal-ai/veo3.1", veo("8s", "16:9", "720p", True)),
    (
        "veo-3.1",
        "1080x1920",
        6,
        True,
        False,
        "fal-ai/veo3.1/image-to-video",
        veo("6s", "9:16", "1080p", False, image_url=IMAGE_URL),
    ),
    ("veo-3.1-fast", "1920x1080", 4, False, False, "fal-ai/veo3.1/fast", veo("4s", "16:9", "1080p", False)),
    (
        "veo-3.1-fast",
        "720x1280",
        8,
        True,
        None,
        "fal-ai/veo3.1/fast/image-to-video",
        veo("8s", "9:16", "720p", True, image_url=IMAGE_URL),
    ),
    (
        "kling-3-pro",
        "960x960",
        10,
        False,
        None,
        "fal-ai/kling-video/v3/pro/text-to-video",
        {"duration": "10", "generate_audio": True, "aspect_ratio": "1:1"},
    ),
    (
        "kling-3-pro",
        "1280x720",
        5,
        True,
        False,
        "fal-ai/kling-video/v3/pro/image-to-video",
        {"duration": "5", "generate_audio": False, "start_image_url": IMAGE_URL},
    ),
    (
        "seedance-2",
        "1920x1080",
        12,
        False,
        None,
        "bytedance/seedance-2.0/text-to-video",
        {"duration": "12", "aspect_ratio": "16:9", "resolution": "1080p", "generate_audio": True},
    ),
    (
        "seedance-2",
        "720x1280",
        4,
        True,
        True,
        "bytedance/seedance-2.0/image-to-video",
        {"duration": "4", "aspect_ratio": "9:16", "resolution": "720p", "generate_audio": True, "image_url": IMAGE_URL},
    ),
    (
        "hailuo-2.3",
        "1280x720",
        10,
        False,
        None,
        "fal-ai/minimax/hailuo-2.3/standard/text-to-video",
        {"duration": "10", "prompt_optimizer": True},
    ),
    (
        "hailuo-2.3",
        "1280x720",
        6,
        True,
        None,
        "fal-ai/minimax/hailuo-2.3/standard/image-to-video",
        {"duration": "6", "prompt_optimizer": True, "image_url": IMAGE_URL},
    ),
    (
        "hailuo-2.3",
        "1920x1080",
        6,
        False,
        None,
        "fal-ai/minimax/hailuo-2.3/pro/text-to-video",
        {"duration": "6", "prompt_optimizer": True},
    ),
    (
        "hailuo-2.3",
        "1920x1080",
        6,
        True,
        None,
        "fal-ai/minimax/hailuo-2.3/pro/image-to-video",
        {"duration": "6", "prompt_optimizer": True, "image_url": IMAGE_URL},
    ),
]


@pytest.mark.parametrize(
    ("model", "size", "seconds", "image", "audio", "endpoint", "fields"),
    FIELD_CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}s-{'i2v' if c[3] else 't2v'}" for c in FIELD_CASES],
)
async def test_submit_sends_each_models_exact_fields(
    fake: FakeFal,
    provider: FalProvider,
    model: str,
    size: str,
    seconds: int,
    image: bool,
    audio: bool | None,
    endpoint: str,
    fields: dict[str, Any],
) -> None:
    request = VideoRequest(
        "a fox in the snow", seconds=seconds, size=size, model=model, image=IMAGE if image else None, audio=audio
    )
    job_id = await provider.submit(request)

    [sent] = fake.submits
    assert sent.model == endpoint
    assert sent.body == {"prompt": "a fox in the snow", **fields}
    assert sent.query == {}
    [post] = fake.requests_to(endpoint, "POST")
    assert post.headers["Authorization"] == f"Key {KEY}"
    # The queue path drops the model's sub-path, as fal's does; the job id is that path.
    assert job_id == canonical_job_id(endpoint, request_id_of(job_id))
    assert job_id.startswith("/".join(endpoint.split("/")[:2]) + "/requests/")


async def test_an_image_without_a_public_link_goes_inline_as_a_data_uri(fake: FakeFal, provider: FalProvider) -> None:
    image = ReferenceImage(data=b"\xff\xd8 jpeg bytes", content_type="image/jpeg")
    await provider.submit(VideoRequest("waves", seconds=8, model="veo-3.1-fast", image=image))
    [sent] = fake.submits
    prefix = "data:image/jpeg;base64,"
    assert sent.body["image_url"].startswith(prefix)
    assert base64.b64decode(sent.body["image_url"].removeprefix(prefix)) == image.data


async def test_the_callback_url_travels_as_fal_webhook(fake: FakeFal, provider: FalProvider) -> None:
    hook = "https://bot.example.com/callbacks/s3cr3t-token_x?a=b&c=d"
    await provider.submit(VideoRequest("a", seconds=8, model="veo-3.1", callback_url=hook))
    await provider.submit(VideoRequest("a", seconds=8, model="veo-3.1"))
    with_hook, without = fake.submits
    assert with_hook.query == {"fal_webhook": hook}
    assert without.query == {}


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (VideoRequest("x", seconds=10, size="1920x1080", model="hailuo-2.3"), "cannot make 10 s at 1080p"),
        (VideoRequest("x", seconds=5, model="veo-3.1"), "4 s, 6 s or 8 s"),
        (VideoRequest("x", seconds=5, size="1920x1080", model="kling-3-pro"), "1280x720, 720x1280 or 960x960"),
        (VideoRequest("x", seconds=6, model="hailuo-2.3", audio=True), "silent"),
        (VideoRequest("x", seconds=8, model="sora-2"), "veo-3.1"),
    ],
)
async def test_validation_refuses_before_any_request(
    fake: FakeFal, provider: FalProvider, request_: VideoRequest, allowed: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await provider.submit(request_)
    assert allowed in info.value.user_message
    assert fake.requests == []


# --- status ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pending_status", [200, 202])
async def test_lifecycle_queue_position_running_succeeded(
    fake: FakeFal, provider: FalProvider, pending_status: int
) -> None:
    fake.pending_status, fake.queue_seconds, fake.run_seconds, fake.queue_position = pending_status, 0.3, 0.2, 3
    job_id = await provider.submit(VideoRequest("a lighthouse", seconds=5, model="kling-3-pro"))
    seen = await poll(provider, job_id)

    states = [s.state for s in seen]
    assert states[0] is JobState.QUEUED and states[-1] is JobState.SUCCEEDED
    assert JobState.RUNNING in states
    assert states == sorted(states, key=[JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED].index)
    positions = [s.queue_position or 0 for s in seen if s.state is JobState.QUEUED]
    assert all(s.queue_position is not None for s in seen if s.state is JobState.QUEUED)
    assert all(p >= 0 for p in positions)
    assert positions == sorted(positions, reverse=True) and positions[0] >= 1
    assert seen[-1].result_url == fake.file_url(request_id_of(job_id))
    assert all(r.query == {"logs": "1"} for r in fake.requests_to("/status", "GET"))
    # Known result: asking again costs no request.
    before = len(fake.requests)
    assert (await provider.status(job_id)).result_url == seen[-1].result_url
    assert len(fake.requests) == before


@pytest.mark.parametrize(
    ("error", "error_type", "expected"),
    [
        ("Internal error while generating", "internal_error", GenerationFailed),
        ("Output flagged by the content checker", "content_policy_violation", ModerationRejected),
    ],
)
async def test_completed_with_an_error_is_a_failure(
    fake: FakeFal, provider: FalProvider, error: str, error_type: str, expected: type[BotError]
) -> None:
    fake.fail_with, fake.fail_type = error, error_type
    job_id = await provider.submit(VideoRequest("x", seconds=6, model="seedance-2"))
    final = (await poll(provider, job_id))[-1]
    assert final.state is JobState.FAILED
    assert type(final.error) is expected
    assert final.error is not None and error in final.error.detail
    assert fake.requests_to(f"/requests/{request_id_of(job_id)}", "GET")[-1].path.endswith("/status"), (
        "a failed request's result is never fetched"
    )


async def test_a_result_asked_too_early_means_still_running(fake: FakeFal, provider: FalProvider) -> None:
    fake.queue_seconds, fake.run_seconds = 0.0, 30.0
    job_id = await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    # One reading of §10: the status says COMPLETED a moment before the result is ready (400).
    fake.inject(200, {"status": "COMPLETED", "logs": [], "metrics": {}}, path_contains="/status")
    status = await provider.status(job_id)
    assert status.state is JobState.RUNNING
    [result] = [r for r in fake.requests_to(request_id_of(job_id), "GET") if not r.path.endswith("/status")]
    assert result.path == "/" + job_id


async def test_result_without_a_usable_video_url_fails(fake: FakeFal, provider: FalProvider) -> None:
    fake.queue_seconds = fake.run_seconds = 0.0
    job_id = await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    fake.result_override = {"video": {"url": "file:///etc/passwd"}}
    status = await provider.status(job_id)
    assert status.state is JobState.FAILED and isinstance(status.error, GenerationFailed)


async def test_an_unknown_request_id_fails_the_job(fake: FakeFal, provider: FalProvider) -> None:
    status = await provider.status("fal-ai/veo3.1/requests/00000000-0000-0000-0000-000000000000")
    assert status.state is JobState.FAILED and isinstance(status.error, GenerationFailed)


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "fal-ai/veo3.1/requests/../x", "http://evil/requests/x", ""])
async def test_malformed_job_ids_are_refused_without_a_request(
    fake: FakeFal, provider: FalProvider, job_id: str
) -> None:
    with pytest.raises(GenerationFailed):
        await provider.status(job_id)
    assert fake.requests == []


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "image", "stage"), [("a forbidden act", None, "prompt"), ("ok", "forbidden", "reference image")]
)
async def test_422_content_policy_violation_is_moderation_with_its_stage(
    fake: FakeFal, provider: FalProvider, prompt: str, image: str | None, stage: str
) -> None:
    ref = ReferenceImage(data=b"x", url=f"https://cdn.example.com/{image}.png") if image else None
    with pytest.raises(ModerationRejected) as info:
        await provider.submit(VideoRequest(prompt, seconds=8, model="veo-3.1", image=ref))
    assert info.value.stage == stage and info.value.status == 422
    assert stage in info.value.user_message
    assert fake.jobs == {} and len(fake.requests) == 1, "a refusal is never re-sent"


async def test_exhausted_balance_is_out_of_credits(fake: FakeFal, provider: FalProvider) -> None:
    fake.exhausted = True
    with pytest.raises(ProviderOutOfCredits) as info:
        await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1-fast"))
    assert info.value.status == 403 and "Exhausted balance" in info.value.detail
    assert len(fake.requests) == 1


async def test_other_403_and_a_bad_key_are_authentication_failures(
    fake: FakeFal, provider: FalProvider, http_session: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    fake.inject(403, {"detail": "Forbidden: this key cannot use this application"}, method="POST")
    with pytest.raises(AuthenticationFailed) as first:
        await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1-fast"))
    assert_no_key(first.value)
    fake.api_key = "another-key-entirely"
    with pytest.raises(AuthenticationFailed) as second:
        await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1-fast"))
    assert_no_key(second.value)


async def test_404_on_submit_is_model_unavailable(
    fake: FakeFal, http_session: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    gone = Host(provider="fal", model="fal-ai/veo2-retired", fields={"prompt": "{prompt}"})
    provider = make_provider(fake, http_session, catalogue, **{"veo-3.1": gone})
    with pytest.raises(ModelUnavailable) as info:
        await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    assert info.value.user_message == (
        "This model is no longer offered by the video provider. Your credits were refunded; "
        "please choose another model."
    )
    assert info.value.status == 404 and len(fake.requests) == 1


async def test_schema_refusals_are_request_rejections(fake: FakeFal, provider: FalProvider) -> None:
    fake.inject(422, {"detail": [{"loc": ["body", "duration"], "msg": "bad duration", "type": "type_error.enum"}]})
    with pytest.raises(ProviderRequestRejected) as info:
        await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    assert "bad duration" in info.value.detail and not isinstance(info.value, ModerationRejected)


async def test_submit_retries_only_what_proves_nothing_was_taken(fake: FakeFal, provider: FalProvider) -> None:
    request = VideoRequest("x", seconds=8, model="veo-3.1")
    fake.inject(503, {"detail": "busy"}, method="POST")
    await provider.submit(request)
    assert len(fake.requests_to("/fal-ai/veo3.1", "POST")) == 2 and len(fake.jobs) == 1

    fake.inject(503, {"detail": "busy"}, method="POST", headers={"X-Fal-Retryable": "false"})
    with pytest.raises(ProviderUnavailable):
        await provider.submit(request)
    assert len(fake.requests_to("/fal-ai/veo3.1", "POST")) == 3, "X-Fal-Retryable: false is never re-sent"

    fake.inject(500, {"detail": "oops"}, method="POST", headers={"X-Fal-Retryable": "true"})
    with pytest.raises(ProviderUnavailable):
        await provider.submit(request)
    assert len(fake.requests_to("/fal-ai/veo3.1", "POST")) == 4, "a 500 may have made the job: not re-sent"
    assert len(fake.jobs) == 1


async def test_status_checks_honour_x_fal_retryable(fake: FakeFal, provider: FalProvider) -> None:
    job_id = await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    fake.inject(400, {"detail": "transient"}, path_contains="/status", headers={"X-Fal-Retryable": "true"})
    assert (await provider.status(job_id)).state in (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)
    assert len(fake.requests_to("/status")) == 2

    fake.inject(502, {"detail": "bad gateway"}, path_contains="/status", headers={"X-Fal-Retryable": "false"})
    with pytest.raises(ProviderUnavailable) as info:
        await provider.status(job_id)
    assert not info.value.retryable
    assert len(fake.requests_to("/status")) == 3


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_before_processing_succeeds(fake: FakeFal, provider: FalProvider) -> None:
    fake.queue_seconds = 30.0
    job_id = await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    assert await provider.cancel(job_id) is True
    [put] = fake.requests_to("/cancel", "PUT")
    assert put.path == f"/{job_id}/cancel"
    status = await provider.status(job_id)
    assert status.state is JobState.FAILED


@pytest.mark.parametrize("reading", ["refuse", "signal"])
async def test_cancel_once_processing_is_not_confirmed(fake: FakeFal, provider: FalProvider, reading: str) -> None:
    fake.queue_seconds, fake.run_seconds, fake.cancel_running = 0.0, 30.0, reading
    job_id = await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    assert await provider.cancel(job_id) is False
    assert len(fake.requests_to("/cancel", "PUT")) == 1


async def test_cancel_after_completion_is_refused(fake: FakeFal, provider: FalProvider) -> None:
    fake.queue_seconds = fake.run_seconds = 0.0
    job_id = await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    assert await provider.cancel(job_id) is False


# --- resume, untrusted URLs, download --------------------------------------------------------


async def test_a_restarted_bot_resumes_from_the_job_id_alone(
    fake: FakeFal, http_session: aiohttp.ClientSession, catalogue: Catalogue, tmp_path: Path
) -> None:
    first = make_provider(fake, http_session, catalogue)
    job_id = await first.submit(VideoRequest("x", seconds=5, model="kling-3-pro", image=IMAGE))
    assert job_id.startswith("fal-ai/kling-video/requests/")
    restarted = make_provider(fake, http_session, catalogue)
    final = (await poll(restarted, job_id))[-1]
    assert final.state is JobState.SUCCEEDED
    path = await restarted.download(job_id, JobStatus(JobState.SUCCEEDED), tmp_path / "v.mp4", 10_000_000)
    assert path.read_bytes() == fake.video


async def test_queue_urls_off_the_base_origin_are_not_followed(fake: FakeFal, provider: FalProvider) -> None:
    fake.advertised_base = "http://169.254.169.254"
    job_id = await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1"))
    [rid] = fake.jobs
    assert job_id == f"fal-ai/veo3.1/requests/{rid}"
    assert (await poll(provider, job_id))[-1].state is JobState.SUCCEEDED


async def test_download_sends_no_key_and_respects_the_cap(fake: FakeFal, provider: FalProvider, tmp_path: Path) -> None:
    job_id = await provider.submit(VideoRequest("x", seconds=8, model="veo-3.1-fast"))
    final = (await poll(provider, job_id))[-1]
    path = await provider.download(job_id, final, tmp_path / "out.mp4", max_bytes=10_000_000)
    assert path.read_bytes() == fake.video and fake.video[4:8] == b"ftyp"
    [fetch] = fake.requests_to("/files/")
    assert "Authorization" not in fetch.headers
    with pytest.raises(ResultTooLarge):
        await provider.download(job_id, final, tmp_path / "small.mp4", max_bytes=100)
    assert not (tmp_path / "small.mp4").exists()


def test_webhook_bodies_parse_to_a_hint() -> None:
    ok = parse_webhook({"request_id": "abc-1", "status": "OK", "payload": {"video": {"url": "https://x"}}})
    assert ok is not None and ok[0] == "abc-1" and ok[1].state is JobState.SUCCEEDED
    err = parse_webhook({"request_id": "abc-1", "status": "ERROR", "payload": {"detail": "x"}})
    assert err is not None and err[1].state is JobState.FAILED
    assert parse_webhook({"request_id": "abc-1", "status": "WHATEVER"}) is None
    assert parse_webhook({"request_id": "../x", "status": "OK"}) is None
    assert parse_webhook({"status": "OK"}) is None
    assert request_id_of("fal-ai/kling-video/requests/abc-1") == "abc-1"


# --- the fake speaks fal's format: the official fal-client against it -----------------------


@pytest.fixture
def sdk(fake: FakeFal, monkeypatch: pytest.MonkeyPatch) -> fal_client.AsyncClient:
    # fal_client builds queue URLs from a module constant (https://{FAL_QUEUE_RUN_HOST}/).
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{fake.base_url}/")
    return fal_client.AsyncClient(key=KEY, default_timeout=10)


async def test_official_client_submits_polls_and_reads_the_result(
    fake: FakeFal, sdk: fal_client.AsyncClient, provider: FalProvider
) -> None:
    app = "fal-ai/kling-video/v3/pro/text-to-video"
    handle = await sdk.submit(app, {"prompt": "a cat", "duration": "5"}, webhook_url="https://bot.example/cb?x=1")
    assert fake.submits[0].query == {"fal_webhook": "https://bot.example/cb?x=1"}
    assert handle.status_url == f"{fake.base_url}/fal-ai/kling-video/requests/{handle.request_id}/status"
    first = await handle.status(with_logs=True)
    assert isinstance(first, fal_client.Queued | fal_client.InProgress | fal_client.Completed)
    result = await handle.get()
    assert result["video"]["url"] == fake.file_url(handle.request_id)
    completed = await sdk.status(app, handle.request_id, with_logs=True)
    assert isinstance(completed, fal_client.Completed) and completed.error is None
    # The SDK's derived handle (from_request_id) and our job id name the same queue path.
    derived = await sdk.get_handle(app, handle.request_id)
    assert derived.response_url == handle.response_url
    assert (await provider.status(canonical_job_id(app, handle.request_id))).state is JobState.SUCCEEDED


async def test_official_client_sees_failures_errors_and_cancel(fake: FakeFal, sdk: fal_client.AsyncClient) -> None:
    fake.fail_with = "generation failed"
    handle = await sdk.submit("fal-ai/veo3.1/fast", {"prompt": "x"})
    async for status in handle.iter_events(interval=0.02):
        last = status
    assert isinstance(last, fal_client.Completed) and last.error == "generation failed"

    fake.fail_with, fake.queue_seconds = None, 30.0
    queued = await sdk.submit("fal-ai/veo3.1", {"prompt": "x"})
    assert isinstance(await queued.status(), fal_client.Queued)
    await sdk.cancel("fal-ai/veo3.1", queued.request_id)
    assert isinstance(await queued.status(), fal_client.Completed)

    with pytest.raises(fal_client.client.FalClientHTTPError) as policy:
        await sdk.submit("fal-ai/veo3.1", {"prompt": "something forbidden"})
    assert policy.value.status_code == 422 and policy.value.message[0]["type"] == "content_policy_violation"  # type: ignore[index]
    fake.exhausted = True
    with pytest.raises(fal_client.client.FalClientHTTPError) as locked:
        await sdk.submit("fal-ai/veo3.1", {"prompt": "x"})
    assert locked.value.status_code == 403 and locked.value.error_type == "user_locked"
    with pytest.raises(fal_client.client.FalClientHTTPError) as missing:
        await sdk.submit("fal-ai/no-such-model", {"prompt": "x"})
    assert missing.value.status_code == 404
