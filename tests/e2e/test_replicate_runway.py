"""Replicate and Runway end to end: the real bot process, a fake Discord and each provider's fake.

Every catalogue entry each of them hosts, with and without a reference image (exact fields, a playable
MP4 posted), Runway's progress in the status message, cancel reaching each provider's cancel call,
and a hard restart mid-job resuming with no second submission. One bot per provider per module.
"""

from __future__ import annotations

import io
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import av
import pytest
import pytest_asyncio
from PIL import Image

from tests.e2e.world import World, world
from tests.fakes.discord.state import Message
from tests.fakes.replicate import FakeReplicate
from tests.fakes.runway import FakeRunway

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

ENV = {
    "MAX_RUNNING_JOBS": "8",
    "MAX_RUNNING_JOBS_PER_USER": "4",
    "MAX_PENDING_JOBS_PER_USER": "8",
    "DAILY_CREDITS": "2000",
    "COOLDOWN_SECONDS": "0",
}

# model -> the /sora options, the provider's model id, the image field, the other fields sent.
REPLICATE: dict[str, dict[str, Any]] = {
    "veo-3.1": {
        "options": {"duration": 4, "size": "1920x1080", "audio": False},
        "slug": "google/veo-3.1",
        "image_field": "image",
        "fields": {"aspect_ratio": "16:9", "duration": 4, "resolution": "1080p", "generate_audio": False},
    },
    "kling-2.1-master": {
        "options": {"duration": 5, "size": "720x1280"},
        "slug": "kwaivgi/kling-v2.1-master",
        "image_field": "start_image",
        "fields": {"duration": 5},
        "text_only": {"aspect_ratio": "9:16"},
    },
    "wan-3": {
        "options": {"duration": 5, "size": "1280x720"},
        "slug": "alibaba/wan-3",
        "image_field": "image",
        "fields": {"duration": 5, "resolution": "720p"},
    },
}
RUNWAY: dict[str, dict[str, Any]] = {
    "gen-4.5": {
        "options": {"duration": 3, "size": "720x1280"},
        "slug": "gen4.5",
        "fields": {"ratio": "720:1280", "duration": 3},
    },
    "veo-3.1": {
        "options": {"duration": 8, "size": "1080x1920"},
        "slug": "veo3.1",
        "fields": {"ratio": "1080:1920", "duration": 8, "audio": True},
    },
    "veo-3.1-fast": {
        "options": {"duration": 4, "size": "1280x720", "audio": False},
        "slug": "veo3.1_fast",
        "fields": {"ratio": "1280:720", "duration": 4, "audio": False},
    },
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rep() -> AsyncIterator[World]:
    async with world("replicate", env=ENV) as w:
        yield w


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def run() -> AsyncIterator[World]:
    async with world("runway", env=ENV) as w:
        yield w


def attachment(w: World) -> dict[str, Any]:
    buf = io.BytesIO()
    Image.new("RGB", (640, 640), (20, 120, 220)).save(buf, "PNG")
    return w.discord.upload_user_attachment(buf.getvalue(), "frame.png", "image/png", width=640, height=640)


def playable(data: bytes) -> int:
    with av.open(io.BytesIO(data), mode="r") as container:
        return sum(1 for _ in container.decode(video=0))


async def text_and_image(w: World, model: str, options: dict[str, Any]) -> None:
    """/sora without and with a reference image; wait for both videos."""
    before = len(w.videos())
    ref = attachment(w)
    await w.sora(f"{model}: a lighthouse", model=model, **options)
    ia = await w.discord.send_interaction(
        command="sora",
        options={"prompt": f"{model}: make it move", "model": model, "image": ref["id"], **options},
        attachments=[ref],
    )
    await ia.wait_callback(timeout=3)
    await w.wait_video(before + 2, timeout=40)
    for message in w.videos()[before:]:
        assert playable(message.attachments[0].data) > 0


@pytest.mark.parametrize("model", list(REPLICATE))
async def test_replicate_each_model_with_and_without_a_reference_image(rep: World, model: str) -> None:
    case, fake = REPLICATE[model], rep.video_fake
    assert isinstance(fake, FakeReplicate)
    await text_and_image(rep, model, case["options"])
    sent = {r.json()["input"]["prompt"]: r.json() for r in fake.requests_to(f"/v1/models/{case['slug']}/predictions")}
    text, image = sent[f"{model}: a lighthouse"], sent[f"{model}: make it move"]
    assert text == {"input": {"prompt": f"{model}: a lighthouse", **case["fields"], **case.get("text_only", {})}}
    image_url = image["input"].pop(case["image_field"])
    assert image == {"input": {"prompt": f"{model}: make it move", **case["fields"]}}
    assert image_url.startswith(rep.discord.base_url + "/attachments/"), "the fitted frame, by public link"
    assert "webhook" not in text, "no PUBLIC_BASE_URL: no webhook"
    done = await rep.wait_status(model)
    assert "replicate" in str(done.embeds)


@pytest.mark.parametrize("model", list(RUNWAY))
async def test_runway_each_model_with_and_without_a_reference_image(run: World, model: str) -> None:
    case, fake = RUNWAY[model], run.video_fake
    assert isinstance(fake, FakeRunway)
    await text_and_image(run, model, case["options"])
    mine = [r for r in fake.requests_to("_to_video", "POST") if r.json()["model"] == case["slug"]]
    sent = {(r.path, r.json()["promptText"]): r.json() for r in mine}
    text = sent["/v1/text_to_video", f"{model}: a lighthouse"]
    image = sent["/v1/image_to_video", f"{model}: make it move"]
    assert text == {"model": case["slug"], "promptText": f"{model}: a lighthouse", **case["fields"]}
    # The fake Discord serves attachments over plain http, which Runway refuses: the frame goes as data.
    assert image.pop("promptImage").startswith("data:image/")
    assert image == {"model": case["slug"], "promptText": f"{model}: make it move", **case["fields"]}


async def test_runway_progress_is_shown_in_the_status_message(run: World) -> None:
    fake = run.video_fake
    assert isinstance(fake, FakeRunway)
    fake.run_seconds = 6.0
    try:
        await run.sora("slow and steady", model="gen-4.5", duration=5, size="1280x720")

        def with_progress() -> Message | None:
            for message in run.status_messages():
                text = str(message.embeds)
                found = re.search(r"`[█░]+` (\d+)%", text)
                if "slow and steady" in text and found and 0 < int(found[1]) < 100:
                    return message
            return None

        await run.discord.wait_for(with_progress, 30, what="a status message with Runway's progress")
        await run.wait_video(len(run.videos()) + 1, timeout=40)
    finally:
        fake.run_seconds = 1.5


async def cancel_running(w: World, prompt: str, model: str) -> None:
    await w.sora(prompt, model=model, duration=5)

    def running() -> Message | None:
        for message in w.status_messages():
            if prompt in str(message.embeds) and "Generating" in str(message.embeds) and message.components:
                return message
        return None

    status = await w.discord.wait_for(running, 30, what=f"{prompt!r} generating")
    custom_id = status.components[0]["components"][0]["custom_id"]
    ia = await w.discord.send_component(status.id, custom_id, user_id=w.discord.user.id)
    await ia.wait_callback(timeout=3)
    assert "refunded" in await w.followup_text(ia)


async def test_cancel_reaches_replicates_cancel_call(rep: World) -> None:
    fake = rep.video_fake
    assert isinstance(fake, FakeReplicate)
    fake.run_seconds = 60.0
    try:
        await cancel_running(rep, "replicate, stop", "wan-3")
        await rep.discord.wait_for(lambda: fake.requests_to("/cancel", "POST"), 10, what="the cancel call")
        (call,) = fake.requests_to("/cancel", "POST")
        assert fake.predictions[call.path.split("/")[3]].canceled
    finally:
        fake.run_seconds = 1.0


async def test_cancel_reaches_runways_delete_call(run: World) -> None:
    fake = run.video_fake
    assert isinstance(fake, FakeRunway)
    fake.run_seconds = 60.0
    try:
        await cancel_running(run, "runway, stop", "gen-4.5")
        await run.discord.wait_for(lambda: fake.requests_to("/v1/tasks/", "DELETE"), 10, what="the DELETE call")
        (call,) = fake.requests_to("/v1/tasks/", "DELETE")
        assert fake.tasks[call.path.rsplit("/", 1)[1]].cancelled
    finally:
        fake.run_seconds = 1.5


async def test_replicate_resumes_after_a_hard_restart_without_a_second_submission(rep: World) -> None:
    await restart_mid_job(rep, "wan-3")


async def test_runway_resumes_after_a_hard_restart_without_a_second_submission(run: World) -> None:
    await restart_mid_job(run, "gen-4.5")


async def restart_mid_job(w: World, model: str) -> None:
    fake = w.video_fake
    assert isinstance(fake, FakeReplicate | FakeRunway)
    old_run = fake.run_seconds
    fake.run_seconds = 5.0
    try:
        before_submits, before_videos = w.submits(), len(w.videos())
        await w.sora("survive a crash", model=model, duration=5, size="1280x720")
        # Restart once the provider's job id is stored (RUNNING), not in the instant between its answer and that.
        await w.discord.wait_for(
            lambda: w.db_rows(
                "SELECT 1 FROM jobs WHERE prompt = ? AND provider_job_id IS NOT NULL", ("survive a crash",)
            ),
            20,
            what="the submission stored",
        )
        await w.bot.restart(hard=True)
        await w.wait_video(before_videos + 1, timeout=40)
        assert w.submits() == before_submits + 1
        done = [("succeeded",)]
        await w.discord.wait_for(
            lambda: w.db_rows("SELECT state FROM jobs WHERE prompt = ?", ("survive a crash",)) == done, 10
        )
    finally:
        fake.run_seconds = old_run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_signed_replicate_webhook_gets_the_video_posted_with_few_status_requests() -> None:
    """With a 600 s expected time the poller's first look is seconds away, so a quick post came from
    the webhook (which still only wakes the job: the bot asks Replicate itself)."""
    port = free_port()
    env = {
        **ENV,
        "HTTP_PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TYPICAL_JOB_SECONDS": "600",
    }
    async with world("replicate", env=env) as w:
        fake = w.video_fake
        assert isinstance(fake, FakeReplicate)
        await w.sora("called back", model="wan-3", duration=5, size="1280x720")
        await w.wait_video(1, timeout=20)
        (sent,) = fake.requests_to("/predictions", "POST")
        assert sent.json()["webhook"].startswith(f"http://127.0.0.1:{port}/callbacks/")
        assert sent.json()["webhook_events_filter"] == ["completed"]
        assert fake.webhook_answers == [202]
        assert len(fake.requests_to("/v1/predictions/", "GET")) <= 3
