"""fal end to end: the real bot process with PROVIDER=fal, a fake Discord and the fake fal queue.

Every required catalogue model with and without a reference image (exact endpoint and fields, a
playable MP4 posted, the catalogue's price charged), the queue position in the status message, and
signed webhooks: a genuine one brings the video at once; forged and stale ones get 401 and change
nothing. One bot per module (polling) plus one for webhooks keeps it quick.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from tests.e2e.world import World, world
from tests.fakes.fal import FakeFal
from tests.fakes.segmind import FakeSegmind

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

CASES: dict[str, dict[str, Any]] = {
    # model -> the options sent, the endpoints (text, image), the image field, the other fields
    "veo-3.1": {
        "options": {"duration": 4, "size": "1280x720", "audio": False},
        "endpoints": ("fal-ai/veo3.1", "fal-ai/veo3.1/image-to-video"),
        "image_field": "image_url",
        "fields": {"duration": "4s", "aspect_ratio": "16:9", "resolution": "720p", "generate_audio": False},
        "cost": 16,
    },
    "veo-3.1-fast": {
        "options": {"duration": 6, "size": "720x1280"},
        "endpoints": ("fal-ai/veo3.1/fast", "fal-ai/veo3.1/fast/image-to-video"),
        "image_field": "image_url",
        "fields": {"duration": "6s", "aspect_ratio": "9:16", "resolution": "720p", "generate_audio": True},
        "cost": 18,
    },
    "kling-3-pro": {
        "options": {"duration": 5, "size": "960x960"},
        "endpoints": ("fal-ai/kling-video/v3/pro/text-to-video", "fal-ai/kling-video/v3/pro/image-to-video"),
        "image_field": "start_image_url",
        "fields": {"duration": "5", "generate_audio": True},
        "text_only": {"aspect_ratio": "1:1"},
        "cost": 20,
    },
    "seedance-2": {
        "options": {"duration": 4, "size": "1920x1080"},
        "endpoints": ("bytedance/seedance-2.0/text-to-video", "bytedance/seedance-2.0/image-to-video"),
        "image_field": "image_url",
        "fields": {"duration": "4", "aspect_ratio": "16:9", "resolution": "1080p", "generate_audio": True},
        "cost": 24,
    },
    "hailuo-2.3": {
        "options": {"duration": 6, "size": "1920x1080"},
        "endpoints": ("fal-ai/minimax/hailuo-2.3/pro/text-to-video", "fal-ai/minimax/hailuo-2.3/pro/image-to-video"),
        "image_field": "image_url",
        "fields": {"duration": "6", "prompt_optimizer": True},
        "cost": 12,
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fal(w: World) -> FakeFal:
    assert isinstance(w.video_fake, FakeFal)
    return w.video_fake


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def polled() -> AsyncIterator[World]:
    """PROVIDER=fal without a public URL: jobs are polled (TYPICAL_JOB_SECONDS=2)."""
    async with world(
        "fal", env={"MAX_RUNNING_JOBS_PER_USER": "4", "DAILY_CREDITS": "1000", "COOLDOWN_SECONDS": "0"}
    ) as w:
        yield w


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hooked() -> AsyncIterator[tuple[World, str]]:
    """PROVIDER=fal with PUBLIC_BASE_URL and HTTP_PORT: fal calls back. With a 600 s expected time
    the poller first looks after 5 s, so a video sooner than that came from the webhook."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"HTTP_PORT": str(port), "PUBLIC_BASE_URL": base, "TYPICAL_JOB_SECONDS": "600", "COOLDOWN_SECONDS": "0"}
    async with world("fal", env=env) as w:
        yield w, base


def attachment(w: World, colour: tuple[int, int, int]) -> dict[str, Any]:
    buf = io.BytesIO()
    Image.new("RGB", (640, 640), colour).save(buf, "PNG")
    return w.discord.upload_user_attachment(buf.getvalue(), "frame.png", "image/png", width=640, height=640)


def playable(data: bytes) -> float:
    """The duration in seconds of an MP4 PyAV can decode (raises on anything else)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = sum(1 for _ in container.decode(video=0))
        assert frames > 0
        return float(container.duration or 0) / av.time_base


@pytest.mark.parametrize("model", list(CASES))
async def test_each_model_with_and_without_a_reference_image(polled: World, model: str) -> None:
    w, case = polled, CASES[model]
    fake = fal(w)
    before_submits, before_videos = len(fake.submits), len(w.videos())
    ref = attachment(w, (20, 120, 220))
    text_ia = await w.sora(f"{model}: a lighthouse", model=model, **case["options"])
    image_ia = await w.discord.send_interaction(
        command="sora",
        options={"prompt": f"{model}: make it move", "model": model, "image": ref["id"], **case["options"]},
        attachments=[ref],
    )
    await image_ia.wait_callback(timeout=3)
    await w.wait_video(before_videos + 2, timeout=30)

    sent = {s.body["prompt"]: s for s in fake.submits[before_submits:]}
    text, image = sent[f"{model}: a lighthouse"], sent[f"{model}: make it move"]
    assert (text.model, image.model) == case["endpoints"]
    assert text.body == {"prompt": f"{model}: a lighthouse", **case["fields"], **case.get("text_only", {})}
    image_url = image.body.pop(case["image_field"])
    assert image.body == {"prompt": f"{model}: make it move", **case["fields"]}
    assert image_url.startswith(w.discord.base_url + "/attachments/"), "the fitted frame, by public link"
    assert text.query == image.query == {}, "no PUBLIC_BASE_URL: no webhook"

    for ia in (text_ia, image_ia):
        posted = [m for m in w.videos() if m.content.startswith(f"<@{ia.user_id}>")]
        assert posted
    assert playable(w.videos()[-1].attachments[0].data) > 0
    sql = "SELECT SUM(amount) FROM ledger WHERE kind = ? AND job_id IN (SELECT id FROM jobs WHERE model = ?)"
    assert w.db_rows(sql, ("reserve", model)) == [(2 * case["cost"],)], "the catalogue's price"
    # The capture is written just after the post: wait for it.
    await w.discord.wait_for(lambda: w.db_rows(sql, ("capture", model)) == [(2 * case["cost"],)], 5, what="captures")
    await w.wait_status(model)


async def test_the_queue_position_is_shown_while_fal_queues_the_job(polled: World) -> None:
    fake = fal(polled)
    videos = len(polled.videos())
    # Positions count down from 20 over 20 s: still at least 1 for all but the last second, so even a
    # first poll that a loaded machine delays by many seconds sees one.
    fake.queue_seconds, fake.queue_position = 20.0, 20
    try:
        await polled.sora("a long queue", model="veo-3.1-fast", duration=4, user_id=polled.discord.other_user.id)
        await polled.discord.wait_for(
            lambda: any(s.body["prompt"] == "a long queue" for s in fake.submits), 10, what="submit"
        )
    finally:
        fake.queue_seconds, fake.queue_position = 0.2, 3
    await polled.wait_status("In the provider's queue — position", timeout=30)
    await polled.wait_video(videos + 1, timeout=90)


async def test_a_signed_webhook_posts_the_video_with_few_status_requests(hooked: tuple[World, str]) -> None:
    w, base = hooked
    fake = fal(w)
    before = len(w.videos())
    await w.sora("a webhook race", model="veo-3.1-fast", duration=4)
    await w.discord.wait_for(lambda: len(fake.submits) == 1, 10, what="the submit")
    hook = fake.submits[0].query["fal_webhook"]
    assert hook.startswith(f"{base}/callbacks/")
    await w.wait_video(before + 1, timeout=4.5)  # polling alone would first look after 5 s
    posted = time.monotonic()
    [job] = [j for j in fake.jobs.values() if j.webhook == hook]
    rid = job.request_id
    done_at = job.created + job.queue_seconds + job.run_seconds
    print(f"fal completion -> video posted, with webhooks: {posted - done_at:.2f}s")
    assert fake.webhooks_sent == [(hook, 202)]
    assert fake.status_polls(rid) <= 3
    await w.wait_status("Done")


async def test_forged_and_stale_webhooks_get_401_and_change_nothing(hooked: tuple[World, str]) -> None:
    w, _ = hooked
    fake = fal(w)
    fake.run_seconds = 30.0  # this job stays in progress while we lie about it
    try:
        await w.sora("nobody may finish this for fal", model="veo-3.1", duration=4, user_id=w.discord.other_user.id)
        await w.discord.wait_for(lambda: any(j.run_seconds == 30.0 for j in fake.jobs.values()), 10, what="submit")
    finally:
        fake.run_seconds = 1.0
    [job] = [j for j in fake.jobs.values() if j.run_seconds == 30.0]
    assert job.webhook is not None
    videos, polls = len(w.videos()), fake.status_polls(job.request_id)
    body = json.dumps(
        {"request_id": job.request_id, "status": "OK", "payload": {"video": {"url": "https://evil.example/x.mp4"}}}
    ).encode()
    forged = fake.signed_headers(body, request_id=job.request_id, key=Ed25519PrivateKey.generate())
    stale = fake.signed_headers(body, request_id=job.request_id, timestamp=int(time.time()) - 400)
    async with aiohttp.ClientSession() as http:
        for headers in (forged, stale, {"Content-Type": "application/json"}):
            async with http.post(job.webhook, data=body, headers=headers) as resp:
                assert resp.status == 401
        await asyncio.sleep(1.0)
        assert fake.status_polls(job.request_id) == polls, "a refused webhook wakes nothing"
        # A genuinely signed one only wakes the job, which asks fal itself: still in progress.
        genuine = fake.signed_headers(body, request_id=job.request_id)
        async with http.post(job.webhook, data=body, headers=genuine) as resp:
            assert resp.status == 202
    await w.discord.wait_for(lambda: fake.status_polls(job.request_id) > polls, 3, what="a status check")
    await asyncio.sleep(0.5)
    assert len(w.videos()) == videos
    [(state,)] = w.db_rows("SELECT state FROM jobs WHERE prompt = ?", ("nobody may finish this for fal",))
    assert state == "running"


async def test_an_exhausted_fal_account_fails_over_to_segmind_once() -> None:
    async with FakeSegmind(run_seconds=1.0) as segmind:
        assert isinstance(segmind, FakeSegmind)
        env = {"PROVIDER": "", "SEGMIND_BASE_URL": segmind.base_url, "SEGMIND_API_KEY": segmind.api_key}
        async with world("fal", env=env) as w:
            fake = fal(w)
            fake.exhausted = True  # fal answers 403 "User is locked. Reason: Exhausted balance."
            await w.sora("a heron takes off", model="veo-3.1-fast", duration=4)
            await w.wait_video(timeout=30)
            assert len(fake.requests_to("/fal-ai/veo3.1/fast", "POST")) == 1
            assert len(segmind.requests_to("/v2/veo-3.1-fast", "POST")) == 1
            assert w.db_rows("SELECT provider, failover_from FROM jobs") == [("segmind", "fal")]
            sql = "SELECT kind, COUNT(*), SUM(amount) FROM ledger GROUP BY kind"
            await w.discord.wait_for(lambda: len(w.db_rows(sql)) == 2, 5, what="the capture")
            assert {kind: (n, total) for kind, n, total in w.db_rows(sql)} == {"reserve": (1, 12), "capture": (1, 12)}
