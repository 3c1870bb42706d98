"""The demo provider end to end: real renders, progress, download, moderation path, cancel, cleanup."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest
from PIL import Image

from bot.catalogue import Host
from bot.errors import ConfigError, InvalidRequest, JobNotResumable, ModerationRejected, ResultTooLarge
from bot.media.images import prepare_reference
from bot.media.video import probe
from bot.providers import demo as demo_module
from bot.providers.base import JobState, JobStatus, VideoProvider, VideoRequest
from bot.providers.demo import DemoProvider


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoProvider]:
    provider = DemoProvider(work_dir=tmp_path / "work")
    yield provider
    await provider.aclose()


async def wait_done(provider: DemoProvider, job_id: str, timeout: float = 20.0) -> list[JobStatus]:
    seen: list[JobStatus] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await provider.status(job_id)
        seen.append(status)
        if status.done:
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"job not done in {timeout} s: {seen[-1]}")


def test_it_is_a_video_provider() -> None:
    provider = DemoProvider()
    assert isinstance(provider, VideoProvider)
    caps = provider.capabilities
    assert provider.name == "demo"
    assert caps.sizes["sora-2"] == ("1280x720", "720x1280")
    assert set(caps.sizes["sora-2-pro"]) == {"1280x720", "720x1280", "1024x1792", "1792x1024"}
    assert caps.all_seconds() == (4, 8, 12)
    assert (caps.image_mode, caps.resumable, caps.can_cancel, caps.reports_progress) == ("bytes", False, True, True)


async def test_submit_progress_succeed_download(demo: DemoProvider, tmp_path: Path) -> None:
    job_id = await demo.submit(VideoRequest(prompt="A lighthouse in a storm", seconds=4, size="1280x720"))
    assert job_id.startswith("demo-") and len(job_id) == 5 + 32
    seen = await wait_done(demo, job_id)
    states = [s.state for s in seen]
    assert states[-1] is JobState.SUCCEEDED, seen[-1]
    assert JobState.RUNNING in states
    progress = [s.progress for s in seen if s.state is JobState.RUNNING]
    assert progress == sorted(progress)
    assert any(0 < p < 100 for p in progress if p is not None)
    assert seen[-1].progress == 100.0

    dest = tmp_path / "out" / "video.mp4"
    assert await demo.download(job_id, seen[-1], dest, max_bytes=50_000_000) == dest
    info = probe(dest)
    assert (info.width, info.height, info.video_codec) == (1280, 720, "h264")
    assert info.duration == pytest.approx(4.0, abs=0.05)
    assert list((tmp_path / "work").iterdir()) == []  # moved, not copied
    with pytest.raises(JobNotResumable):
        await demo.status(job_id)  # handed over and forgotten


async def test_reference_image_opens_the_clip(demo: DemoProvider, tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 300), (250, 200, 0)).save(out, format="JPEG")
    image = prepare_reference(out.getvalue(), "720x1280")
    job_id = await demo.submit(VideoRequest(prompt="sunflowers", seconds=4, size="720x1280", image=image))
    seen = await wait_done(demo, job_id)
    dest = await demo.download(job_id, seen[-1], tmp_path / "ref.mp4", max_bytes=50_000_000)
    with av.open(str(dest)) as container:
        first = next(container.decode(video=0)).to_image().convert("RGB")
    assert first.size == (720, 1280)
    assert all(abs(a - b) < 25 for a, b in zip(first.getpixel((360, 100)), (250, 200, 0), strict=True))


async def test_min_seconds_stretches_the_job(tmp_path: Path) -> None:
    provider = DemoProvider(work_dir=tmp_path, min_seconds=2.4, speed=2.0, fps=6)  # at least 1.2 s of wall time
    try:
        started = time.monotonic()
        job_id = await provider.submit(VideoRequest(prompt="slow", seconds=4))
        seen = await wait_done(provider, job_id)
        assert time.monotonic() - started >= 1.2
        running = [s.progress for s in seen if s.state is JobState.RUNNING]
        assert running == sorted(running)
        assert len({round(p or 0) for p in running}) > 3  # visibly climbing
        assert seen[-1].state is JobState.SUCCEEDED
    finally:
        await provider.aclose()


async def test_a_catalogue_model_can_ask_for_slow_demo_jobs(tmp_path: Path) -> None:
    """``fields = { min_seconds = N }`` on a demo host (MODELS_FILE) stretches that model's jobs only."""
    hosts = {"slow": Host("demo", "slow", fields={"min_seconds": 3600}), "demo": Host("demo", "demo")}
    provider = DemoProvider(work_dir=tmp_path, fps=6, hosts=hosts)
    try:
        slow = await provider.submit(VideoRequest(prompt="slow", seconds=4, model="slow"))
        quick = await provider.submit(VideoRequest(prompt="quick", seconds=4, model="demo"))
        assert (await wait_done(provider, quick))[-1].state is JobState.SUCCEEDED
        # The slow one rendered alongside, but holds on, its progress following the long clock.
        status = await provider.status(slow)
        assert status.state is JobState.RUNNING and (status.progress or 0) < 1, status
        assert await provider.cancel(slow)
        assert (await provider.status(slow)).state is JobState.FAILED
    finally:
        await provider.aclose()


@pytest.mark.parametrize("value", ["soon", -1, True])
def test_a_wrong_min_seconds_names_the_model(value: object) -> None:
    with pytest.raises(ConfigError, match="model slow: the demo host's min_seconds"):
        DemoProvider(hosts={"slow": Host("demo", "slow", fields={"min_seconds": value})})


async def test_moderation_test_prompt_fails_like_a_safety_refusal(demo: DemoProvider, tmp_path: Path) -> None:
    job_id = await demo.submit(VideoRequest(prompt="please run the Moderation-Test path", seconds=4))
    seen = await wait_done(demo, job_id)
    final = seen[-1]
    assert final.state is JobState.FAILED
    assert isinstance(final.error, ModerationRejected)
    assert final.error.stage == "prompt"
    assert "rejected the prompt" in final.error.user_message
    assert not list((tmp_path / "work").iterdir())


async def test_cancel_stops_the_render_and_cleans_up(demo: DemoProvider, tmp_path: Path) -> None:
    job_id = await demo.submit(VideoRequest(prompt="long one", seconds=12, size="1792x1024", model="sora-2-pro"))
    while (await demo.status(job_id)).progress in (None, 0.0):
        await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await demo.cancel(job_id) is True
    assert time.monotonic() - started < 2.0  # the thread stopped at the next frame, not at the end
    status = await demo.status(job_id)
    assert status.state is JobState.FAILED
    assert status.error is not None and "cancelled" in status.error.user_message
    assert list((tmp_path / "work").iterdir()) == []
    assert await demo.cancel(job_id) is False  # already over
    assert await demo.cancel("demo-unknown") is False


async def test_unknown_job_is_not_resumable(demo: DemoProvider, tmp_path: Path) -> None:
    with pytest.raises(JobNotResumable) as err:
        await demo.status("demo-0123")
    assert "restarted" in err.value.user_message
    with pytest.raises(JobNotResumable):
        await demo.download("demo-0123", JobStatus(JobState.SUCCEEDED), tmp_path / "x.mp4", 1000)


async def test_download_respects_the_cap(demo: DemoProvider, tmp_path: Path) -> None:
    job_id = await demo.submit(VideoRequest(prompt="capped", seconds=4, size="720x1280"))
    seen = await wait_done(demo, job_id)
    with pytest.raises(ResultTooLarge):
        await demo.download(job_id, seen[-1], tmp_path / "x.mp4", max_bytes=1000)
    assert not (tmp_path / "x.mp4").exists()
    assert (await demo.status(job_id)).state is JobState.SUCCEEDED  # still there for a bigger cap


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (VideoRequest(prompt="x", seconds=4, size="1792x1024", model="sora-2"), "Size 1792x1024"),
        (VideoRequest(prompt="x", seconds=5), "5 s is not available"),
        (VideoRequest(prompt="   ", seconds=4), "prompt is empty"),
        (VideoRequest(prompt="x" * 2001, seconds=4), "limit is 2000"),
    ],
)
async def test_validation_refuses_before_any_job(demo: DemoProvider, request_: VideoRequest, needle: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        await demo.submit(request_)
    assert needle in err.value.user_message
    assert "demo" in err.value.user_message or needle in ("prompt is empty", "limit is 2000")
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("demo-render")] == []


async def test_aclose_cancels_everything_and_removes_its_temp_dir() -> None:
    provider = DemoProvider()  # no work_dir: it makes and owns a temporary one
    ids = [await provider.submit(VideoRequest(prompt=f"job {i}", seconds=12, size="1280x720")) for i in range(2)]
    await asyncio.sleep(0.2)
    work_dir = next(iter(provider._jobs.values())).path.parent
    assert work_dir.exists()
    started = time.monotonic()
    await provider.aclose()
    assert time.monotonic() - started < 3.0
    assert not work_dir.exists()
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("demo-render")] == []
    for job_id in ids:
        with pytest.raises(JobNotResumable):
            await provider.status(job_id)


async def test_finished_jobs_nobody_downloads_are_forgotten_beyond_a_bound(
    demo: DemoProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_module, "MAX_FINISHED_JOBS", 2)
    ids = []
    for _ in range(4):
        ids.append(await demo.submit(VideoRequest("x", seconds=4)))
        await demo.cancel(ids[-1])  # finished (failed), never downloaded
    await demo.submit(VideoRequest("x", seconds=4))
    for forgotten in ids[:2]:
        with pytest.raises(JobNotResumable):
            await demo.status(forgotten)
    for kept in ids[2:]:
        assert (await demo.status(kept)).state is JobState.FAILED
