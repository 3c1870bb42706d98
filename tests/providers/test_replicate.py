"""ReplicateProvider against the local fake, the fake against the official ``replicate`` package,
and Replicate's webhook signatures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import pytest
import replicate
from replicate.webhook import InvalidSignatureError, WebhookSigningSecret

from bot.catalogue import load_catalogue
from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import (
    BotError,
    GenerationFailed,
    InvalidRequest,
    ModerationRejected,
    ProviderOutOfCredits,
)
from bot.providers.base import VideoProvider
from bot.providers.replicate import (
    ReplicateProvider,
    output_url,
    parse_progress,
    parse_webhook,
    prediction_status,
    signing_key,
    verify_signature,
)
from tests.fakes.replicate import WEBHOOK_SECRET, FakeReplicate, sign
from tests.providers.polling import statuses_until_done as poll

TOKEN = "r8_SECRET-replicate-token-0123456789"
IMAGE_URL = "https://cdn.example.com/ref/frame.png"
KEY = signing_key(WEBHOOK_SECRET)


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    server = FakeReplicate(api_token=TOKEN, queue_seconds=0.05, run_seconds=0.3)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def provider(fake: FakeReplicate, http_session: aiohttp.ClientSession) -> ReplicateProvider:
    catalogue = load_catalogue()
    return ReplicateProvider(
        http_session,
        api_token=TOKEN,
        base_url=fake.base_url,
        retry_base_delay=0.01,
        hosts=catalogue.hosts_for("replicate"),
        specs=catalogue.models,
    )


def inputs(fake: FakeReplicate, model: str) -> list[dict[str, object]]:
    return [r.json() for r in fake.requests_to(f"/v1/models/{model}/predictions", "POST")]


async def test_is_a_video_provider_with_the_catalogue_models(provider: ReplicateProvider) -> None:
    assert isinstance(provider, VideoProvider)
    assert set(provider.capabilities.models) == {"veo-3.1", "kling-2.1-master", "wan-3"}
    assert provider.capabilities.can_cancel and provider.capabilities.reports_progress


@pytest.mark.parametrize(
    ("request_", "model", "expected"),
    [
        (
            VideoRequest("a heron", 6, "1080x1920", model="veo-3.1", audio=False),
            "google/veo-3.1",
            {
                "prompt": "a heron",
                "aspect_ratio": "9:16",
                "duration": 6,
                "resolution": "1080p",
                "generate_audio": False,
            },
        ),
        (
            VideoRequest("a heron", 8, "1280x720", model="veo-3.1", image=ReferenceImage(b"png", url=IMAGE_URL)),
            "google/veo-3.1",
            {
                "prompt": "a heron",
                "aspect_ratio": "16:9",
                "duration": 8,
                "resolution": "720p",
                "generate_audio": True,
                "image": IMAGE_URL,
            },
        ),
        (
            VideoRequest("a fox", 10, "960x960", model="kling-2.1-master"),
            "kwaivgi/kling-v2.1-master",
            {"prompt": "a fox", "duration": 10, "aspect_ratio": "1:1"},
        ),
        (
            VideoRequest("a fox", 5, "720x1280", model="kling-2.1-master", image=ReferenceImage(b"png", url=IMAGE_URL)),
            "kwaivgi/kling-v2.1-master",
            {"prompt": "a fox", "duration": 5, "start_image": IMAGE_URL},
        ),
        (
            VideoRequest("rain", 5, "1920x1080", model="wan-3"),
            "alibaba/wan-3",
            {"prompt": "rain", "duration": 5, "resolution": "1080p"},
        ),
        (
            VideoRequest("rain", 10, "1280x720", model="wan-3", image=ReferenceImage(b"\x89PNG", "image/png")),
            "alibaba/wan-3",
            {"prompt": "rain", "duration": 10, "resolution": "720p", "image": "data:image/png;base64,iVBORw=="},
        ),
    ],
)
async def test_exact_inputs_per_model_with_and_without_an_image(
    provider: ReplicateProvider, fake: FakeReplicate, request_: VideoRequest, model: str, expected: dict[str, object]
) -> None:
    job_id = await provider.submit(request_)
    assert inputs(fake, model) == [{"input": expected}]
    sent = fake.requests_to(f"/v1/models/{model}/predictions", "POST")[0]
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}" and "Prefer" not in sent.headers
    assert (await poll(provider, job_id))[-1].state is JobState.SUCCEEDED


async def test_lifecycle_progress_from_logs_and_a_playable_download(
    provider: ReplicateProvider, fake: FakeReplicate, tmp_path: Path
) -> None:
    job_id = await provider.submit(VideoRequest("a heron", 8, model="veo-3.1"))
    seen = await poll(provider, job_id)
    states = [s.state for s in seen]
    assert states[0] is JobState.QUEUED and JobState.RUNNING in states and states[-1] is JobState.SUCCEEDED
    progress = [s.progress for s in seen if s.state is JobState.RUNNING and s.progress is not None]
    assert progress and all(0 <= p < 100 for p in progress) and progress == sorted(progress)
    path = await provider.download(job_id, seen[-1], tmp_path / "out.mp4", 10_000_000)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames > 0
    # Resumed by a fresh provider (a restarted bot) from the prediction id alone.
    again = ReplicateProvider(provider._http.session, api_token=TOKEN, base_url=fake.base_url)
    assert (await again.status(job_id)).result_url == seen[-1].result_url


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("The input or output was flagged as sensitive (E005)", ModerationRejected),
        ("CUDA out of memory", GenerationFailed),
    ],
)
async def test_a_failed_prediction_is_typed_by_its_error(
    provider: ReplicateProvider, fake: FakeReplicate, error: str, kind: type[BotError]
) -> None:
    fake.fail_with = error
    seen = await poll(provider, await provider.submit(VideoRequest("x", 5, model="wan-3")))
    assert seen[-1].state is JobState.FAILED and type(seen[-1].error) is kind


async def test_402_is_out_of_credit_and_429_waits_as_told(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.out_of_credit = True
    with pytest.raises(ProviderOutOfCredits) as caught:
        await provider.submit(VideoRequest("x", 5, model="wan-3"))
    assert TOKEN not in caught.value.detail
    fake.out_of_credit = False
    fake.inject(429, {"detail": "Request was throttled. Your rate limit resets in ~1s."}, headers={"Retry-After": "0"})
    await provider.submit(VideoRequest("x", 5, model="wan-3"))
    assert len(fake.requests_to("/predictions", "POST")) == 3  # 402, then 429 and its retry


async def test_cancel_reaches_the_cancel_endpoint(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.run_seconds = 30
    job_id = await provider.submit(VideoRequest("x", 5, model="kling-2.1-master"))
    assert await provider.cancel(job_id) is True
    assert [r.path for r in fake.requests_to("/cancel", "POST")] == [f"/v1/predictions/{job_id}/cancel"]
    status = await provider.status(job_id)
    assert status.state is JobState.FAILED and isinstance(status.error, GenerationFailed)


async def test_refusals_before_any_request(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    for bad in (
        VideoRequest("x", 6, model="kling-2.1-master"),
        VideoRequest("x", 5, "1080x1920", model="wan-3"),
        VideoRequest("x", 8, model="gen-4.5"),
        VideoRequest("x", 5, model="wan-3", image=ReferenceImage(b"x" * 2_000_000)),
    ):
        with pytest.raises(InvalidRequest):
            await provider.submit(bad)
    assert fake.requests == []


def test_statuses_outputs_and_progress_parsing() -> None:
    assert parse_progress("  5%|▌         | 5/100\n 45%|████▌     | 45/100 [00:04<00:05]\n") == 45.0
    assert parse_progress("loading weights\n") is None and parse_progress(None) is None
    assert output_url(["https://r.example/a.mp4"]) == "https://r.example/a.mp4"
    assert output_url("file:///etc/passwd") is None
    assert prediction_status({"id": "p", "status": "queued-ish"}).state is JobState.RUNNING
    assert prediction_status({"id": "p", "status": "starting"}).state is JobState.QUEUED
    assert prediction_status({"id": "p", "status": "succeeded", "output": None}).state is JobState.FAILED
    assert parse_webhook({"id": "p", "status": "succeeded", "output": "https://r.example/v.mp4"}) == (
        "p",
        JobStatus(JobState.SUCCEEDED, result_url="https://r.example/v.mp4"),
    )
    assert parse_webhook({"status": "succeeded"}) is None


# --- webhooks -------------------------------------------------------------------------------------


async def test_the_webhook_and_only_completed_events_are_requested(
    provider: ReplicateProvider, fake: FakeReplicate
) -> None:
    hook = "https://bot.example.com/callbacks/s3cret"
    await provider.submit(VideoRequest("x", 5, model="wan-3", callback_url=hook))
    body = fake.requests_to("/predictions", "POST")[0].json()
    assert body["webhook"] == hook and body["webhook_events_filter"] == ["completed"]


def test_signature_checks() -> None:
    assert KEY is not None
    body = b'{"id":"p1","status":"succeeded"}'
    now = int(time.time())
    good = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(WEBHOOK_SECRET, "msg_1", now, body),
    }
    assert verify_signature(KEY, good, body)
    assert verify_signature(KEY, {k.title(): v for k, v in good.items()}, body)  # header case does not matter
    rotated = {**good, "webhook-signature": "v1,bm90IGl0 " + good["webhook-signature"]}
    assert verify_signature(KEY, rotated, body)  # any entry may match
    assert not verify_signature(KEY, good, body + b" ")
    assert not verify_signature(
        KEY, {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")}, body
    )
    assert not verify_signature(KEY, {**good, "webhook-id": "msg_2"}, body)
    stale = now - 301
    old = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stale),
        "webhook-signature": sign(WEBHOOK_SECRET, "msg_1", stale, body),
    }
    assert not verify_signature(KEY, old, body)
    assert not verify_signature(KEY, {"webhook-id": "msg_1"}, body)
    assert signing_key("not-a-secret") is None and signing_key("whsec_%%%") is None


async def test_the_signing_secret_is_fetched_once(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    body = json.dumps({"id": "p1", "status": "succeeded"}).encode()
    assert await provider.verify_webhook(fake.signed_headers(body), body)
    assert await provider.verify_webhook(fake.signed_headers(body), body)
    assert not await provider.verify_webhook(fake.signed_headers(body, secret="whsec_" + "QUJD" * 8), body)
    assert not await provider.verify_webhook(fake.signed_headers(body, timestamp=int(time.time()) - 600), body)
    secret_calls = fake.requests_to("/v1/webhooks/default/secret", "GET")
    assert len(secret_calls) == 1 and secret_calls[0].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_an_unreachable_secret_refuses_the_webhook(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.inject(401, {"detail": "bad token"}, path_contains="/webhooks/")
    body = b'{"id":"p1","status":"succeeded"}'
    assert not await provider.verify_webhook(fake.signed_headers(body), body)
    assert await provider.verify_webhook(fake.signed_headers(body), body)  # fetched again next time


# --- the fake against the official package -------------------------------------------------------


async def test_the_official_client_parses_the_fake(fake: FakeReplicate) -> None:
    client = replicate.Client(api_token=TOKEN, base_url=fake.base_url)
    prediction = await client.models.predictions.async_create(
        model="google/veo-3.1",
        input={"prompt": "a heron", "duration": 4, "resolution": "720p"},
        webhook="https://bot.example.com/hook",
        webhook_events_filter=["completed"],
    )
    assert prediction.status == "starting" and prediction.model == "google/veo-3.1"
    await asyncio.sleep(0.5)
    done = await client.predictions.async_get(prediction.id)
    assert done.status == "succeeded" and isinstance(done.output, str) and done.output.endswith(".mp4")
    fake.run_seconds = 30
    running = await client.models.predictions.async_create(model="alibaba/wan-3", input={"prompt": "rain"})
    canceled = await client.predictions.async_cancel(running.id)
    assert canceled.status == "canceled"
    secret = await client.webhooks.default.async_secret()
    body = json.dumps(fake.body_of(fake.predictions[done.id]))
    headers = fake.signed_headers(body.encode())
    client.webhooks.validate(headers=headers, body=body, secret=secret, tolerance=300)  # raises when invalid
    with pytest.raises(InvalidSignatureError):
        client.webhooks.validate(
            headers=fake.signed_headers(body.encode(), secret="whsec_" + "QUJD" * 8),
            body=body,
            secret=WebhookSigningSecret(key=WEBHOOK_SECRET),
        )
