"""SegmindSyncProvider (v1: one blocking POST whose body is the MP4) against the local fake."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import (
    AuthenticationFailed,
    GenerationFailed,
    InvalidRequest,
    JobNotResumable,
    ModerationRejected,
    ProviderOutOfCredits,
    ProviderUnavailable,
    ResultTooLarge,
)
from bot.providers import segmind_sync
from bot.providers.base import VideoProvider
from bot.providers.segmind_sync import SegmindSyncProvider
from tests.fakes.segmind import FakeSegmind

KEY = "sk-segmind-SECRET-sync-0123456789"
REQUEST = VideoRequest(prompt="a paper boat on a river", seconds=8, size="1280x720")


@pytest.fixture
async def fake() -> AsyncIterator[FakeSegmind]:
    server = FakeSegmind(api_key=KEY, sync_delay=0.05)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def provider(
    fake: FakeSegmind, http_session: aiohttp.ClientSession, tmp_path: Path
) -> AsyncIterator[SegmindSyncProvider]:
    sync = SegmindSyncProvider(
        http_session, api_key=KEY, base_url=fake.base_url, work_dir=tmp_path / "work", retry_base_delay=0.01
    )
    yield sync
    await sync.aclose()


async def wait_done(provider: SegmindSyncProvider, job_id: str, timeout: float = 5.0) -> list[JobStatus]:
    seen: list[JobStatus] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await provider.status(job_id)
        seen.append(status)
        if status.done:
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} not done after {timeout}s")


def work_files(tmp_path: Path) -> list[Path]:
    work = tmp_path / "work"
    return sorted(work.iterdir()) if work.exists() else []


async def test_happy_path(fake: FakeSegmind, provider: SegmindSyncProvider, tmp_path: Path) -> None:
    fake.sync_delay = 0.3
    fake.video_bytes = os.urandom(200_000)
    request = VideoRequest(
        prompt="a paper boat",
        seconds=12,
        size="1024x1792",
        model="sora-2-pro",
        image=ReferenceImage(data=b"png", url="https://cdn.example.com/a.png"),
    )
    started = time.monotonic()
    job_id = await provider.submit(request)
    assert time.monotonic() - started < 0.2  # returns at once, long before the call ends
    assert job_id.startswith("sync-")
    assert (await provider.status(job_id)).state is JobState.RUNNING

    seen = await wait_done(provider, job_id)
    assert seen[0].state is JobState.RUNNING
    assert seen[-1] == JobStatus(JobState.SUCCEEDED)
    dest = await provider.download(job_id, seen[-1], tmp_path / "out" / "v.mp4", max_bytes=10**7)
    assert dest.read_bytes() == fake.video_bytes

    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/sora-2-pro")
    assert sent.headers["x-api-key"] == KEY
    assert sent.json() == {
        "prompt": "a paper boat",
        "duration": 12,
        "size": "1024x1792",
        "input_reference": "https://cdn.example.com/a.png",
    }
    assert work_files(tmp_path) == []  # moved, not copied
    with pytest.raises(JobNotResumable):  # a downloaded job is forgotten
        await provider.status(job_id)


async def test_capabilities_and_protocol(provider: SegmindSyncProvider) -> None:
    assert isinstance(provider, VideoProvider)
    assert provider.name == "segmind-sync"
    caps = provider.capabilities
    assert (caps.resumable, caps.can_cancel, caps.image_mode) == (False, True, "url")
    assert caps.sizes["sora-2"] == ("1280x720", "720x1280")


async def test_remaining_credits_logged(
    fake: FakeSegmind, provider: SegmindSyncProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.providers.segmind_sync")
    job_id = await provider.submit(REQUEST)
    await wait_done(provider, job_id)
    assert any("remaining credits: 99.60" in r.getMessage() for r in caplog.records)
    assert all(KEY not in r.getMessage() for r in caplog.records)


async def test_out_of_credits(fake: FakeSegmind, provider: SegmindSyncProvider) -> None:
    fake.inject(406, {"error": "Insufficient credits"}, path_contains="/v1/")
    job_id = await provider.submit(REQUEST)
    final = (await wait_done(provider, job_id))[-1]
    assert final.state is JobState.FAILED
    assert isinstance(final.error, ProviderOutOfCredits)
    assert final.error.status == 406
    assert len(fake.requests) == 1


async def test_bad_key_not_retried_and_scrubbed(fake: FakeSegmind, provider: SegmindSyncProvider) -> None:
    fake.inject(401, {"error": f"Invalid API key {KEY}"}, path_contains="/v1/")
    job_id = await provider.submit(REQUEST)
    final = (await wait_done(provider, job_id))[-1]
    assert isinstance(final.error, AuthenticationFailed)
    assert KEY not in final.error.detail and KEY not in final.error.user_message
    assert len(fake.requests) == 1


@pytest.mark.parametrize("code", [429, 502, 503])
async def test_refusals_are_retried(fake: FakeSegmind, provider: SegmindSyncProvider, code: int) -> None:
    fake.inject(code, {"error": "busy"}, path_contains="/v1/")
    job_id = await provider.submit(REQUEST)
    final = (await wait_done(provider, job_id))[-1]
    assert final.state is JobState.SUCCEEDED
    assert len(fake.requests) == 2


async def test_connection_drop_is_never_resent(fake: FakeSegmind, provider: SegmindSyncProvider) -> None:
    fake.inject(200, drop_connection=True, path_contains="/v1/")
    job_id = await provider.submit(REQUEST)
    final = (await wait_done(provider, job_id))[-1]
    assert final.state is JobState.FAILED
    assert isinstance(final.error, ProviderUnavailable)
    assert len(fake.requests) == 1


async def test_json_200_is_an_error_not_a_video(
    fake: FakeSegmind, provider: SegmindSyncProvider, tmp_path: Path
) -> None:
    fake.inject(200, {"error": "The prompt violates our content policy"}, path_contains="/v1/")
    job_id = await provider.submit(REQUEST)
    final = (await wait_done(provider, job_id))[-1]
    assert final.state is JobState.FAILED
    assert isinstance(final.error, ModerationRejected)
    with pytest.raises(ModerationRejected):
        await provider.download(job_id, final, tmp_path / "unused.mp4", max_bytes=10**6)


async def test_unknown_id_is_not_resumable(provider: SegmindSyncProvider, tmp_path: Path) -> None:
    with pytest.raises(JobNotResumable) as info:
        await provider.status("sync-0123456789abcdef")
    assert "restarted" in info.value.user_message
    with pytest.raises(JobNotResumable):
        await provider.download("sync-0123456789abcdef", JobStatus(JobState.SUCCEEDED), tmp_path / "x", 10**6)
    assert await provider.cancel("sync-0123456789abcdef") is False


async def test_cancel_stops_the_call(fake: FakeSegmind, provider: SegmindSyncProvider, tmp_path: Path) -> None:
    fake.sync_delay = 30
    job_id = await provider.submit(REQUEST)
    while not fake.requests:  # the call has reached the server
        await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await provider.cancel(job_id) is True
    assert time.monotonic() - started < 1
    status = await provider.status(job_id)
    assert status.state is JobState.FAILED
    assert isinstance(status.error, GenerationFailed)
    assert work_files(tmp_path) == []
    assert await provider.cancel(job_id) is False


async def test_validation_before_any_request(fake: FakeSegmind, provider: SegmindSyncProvider) -> None:
    with pytest.raises(InvalidRequest) as info:
        await provider.submit(VideoRequest(prompt="x", seconds=8, size="1024x1792", model="sora-2"))
    assert "1280x720 or 720x1280" in info.value.user_message
    with pytest.raises(InvalidRequest) as info:
        await provider.submit(VideoRequest(prompt="x", seconds=25))
    assert "4 s, 8 s or 12 s" in info.value.user_message
    await asyncio.sleep(0.05)
    assert fake.requests == []


async def test_download_cap_leaves_no_file(fake: FakeSegmind, provider: SegmindSyncProvider, tmp_path: Path) -> None:
    job_id = await provider.submit(REQUEST)
    final = (await wait_done(provider, job_id))[-1]
    dest = tmp_path / "out.mp4"
    with pytest.raises(ResultTooLarge):
        await provider.download(job_id, final, dest, max_bytes=len(fake.video) - 1)
    assert not dest.exists()
    assert work_files(tmp_path) == []


async def test_stream_cap_fails_the_job(fake: FakeSegmind, http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    sync = SegmindSyncProvider(
        http_session, api_key=KEY, base_url=fake.base_url, work_dir=tmp_path / "work", stream_max_bytes=1000
    )
    job_id = await sync.submit(REQUEST)
    final = (await wait_done(sync, job_id))[-1]
    assert isinstance(final.error, ResultTooLarge)
    assert work_files(tmp_path) == []
    await sync.aclose()


async def test_aclose_cancels_and_cleans_up(fake: FakeSegmind, http_session: aiohttp.ClientSession) -> None:
    sync = SegmindSyncProvider(http_session, api_key=KEY, base_url=fake.base_url, retry_base_delay=0.01)
    fake.sync_delay = 0.0
    done_id = await sync.submit(REQUEST)
    await wait_done(sync, done_id)
    fake.sync_delay = 30
    running_id = await sync.submit(REQUEST)
    work_dir = sync._work_dir
    assert any(work_dir.iterdir())  # the finished video waits there
    started = time.monotonic()
    await sync.aclose()
    assert time.monotonic() - started < 1
    assert not work_dir.exists()  # its own temp dir is removed
    with pytest.raises(JobNotResumable):
        await sync.status(running_id)


async def test_aclose_propagates_its_own_cancellation(
    fake: FakeSegmind, http_session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sync = SegmindSyncProvider(http_session, api_key=KEY, base_url=fake.base_url, work_dir=tmp_path)
    fake.sync_delay = 30
    await sync.submit(REQUEST)
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(sync.aclose())
    await asyncio.sleep(0)  # aclose is now waiting for the job's task
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await sync.aclose()
    assert list(tmp_path.iterdir()) == []


async def test_leftovers_of_an_earlier_run_are_removed(
    fake: FakeSegmind, provider: SegmindSyncProvider, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    stale = [work / "sync-deadbeef.mp4", work / "sync-cafe.mp4.part"]
    for path in stale:
        path.write_bytes(b"old")
    keep = work / "notes.txt"
    keep.write_text("not ours")
    job_id = await provider.submit(REQUEST)
    await wait_done(provider, job_id)
    assert not any(path.exists() for path in stale)
    assert keep.exists()


async def test_finished_calls_nobody_downloads_are_forgotten_beyond_a_bound(
    fake: FakeSegmind, provider: SegmindSyncProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segmind_sync, "MAX_FINISHED_JOBS", 2)
    ids = []
    for _ in range(4):
        ids.append(await provider.submit(REQUEST))
        await wait_done(provider, ids[-1])  # finished, never downloaded (the runner gave up, say)
    await wait_done(provider, await provider.submit(REQUEST))
    for forgotten in ids[:2]:
        with pytest.raises(JobNotResumable):
            await provider.status(forgotten)
    for kept in ids[2:]:
        assert (await provider.status(kept)).state is JobState.SUCCEEDED
