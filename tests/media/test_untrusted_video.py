"""Untrusted results (issue 13, item 2): explicit container formats, caps, and a bounded child process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import av
import pytest
from PIL import Image

from bot.errors import MediaError, ResultNotAVideo
from bot.media import video
from bot.media.sandbox import ChildFailed, ChildLimits, run_in_child
from bot.media.video import check_result_async, probe, probe_async
from tests.fakes.videos import tiny_mp4


def one_frame_clip(dest: Path, width: int, height: int, fmt: str = "mp4", codec: str = "libx264") -> Path:
    with av.open(str(dest), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.codec_context.options = {"preset": "ultrafast"}
        frame = av.VideoFrame.from_image(Image.new("RGB", (width, height), (40, 90, 200)))
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dest


def sandbox_children() -> list[int]:
    """Our live ``bot.media.sandbox`` children (from /proc: no process-listing dependency)."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"bot.media.sandbox" in cmdline:
                found.append(int(pid))
    return found


async def test_an_ffconcat_script_is_refused_even_next_to_real_videos(tmp_path: Path) -> None:
    (tmp_path / "job-1.mp4").write_bytes(tiny_mp4())  # another job's result it would read
    script = tmp_path / "job-2.mp4"
    script.write_bytes(b"ffconcat version 1.0\nfile 'job-1.mp4'\n")
    with pytest.raises(MediaError) as refused:
        await probe_async(script)
    assert refused.value.user_message == "That file is not a playable video."
    with pytest.raises(ResultNotAVideo) as info:
        await check_result_async(script)
    assert "refunded" in info.value.user_message


async def test_mp4_and_webm_results_pass(tmp_path: Path) -> None:
    mp4 = tmp_path / "ok.mp4"
    mp4.write_bytes(tiny_mp4())
    assert (await check_result_async(mp4)).width == 128
    webm = one_frame_clip(tmp_path / "ok.webm", 64, 48, fmt="webm", codec="libvpx")
    assert (await check_result_async(webm)).video_codec == "vp8"


async def test_a_video_beyond_the_pixel_cap_is_refused(tmp_path: Path) -> None:
    huge = one_frame_clip(tmp_path / "huge.mp4", 4096, 2304)
    with pytest.raises(ResultNotAVideo, match="pixels"):
        await check_result_async(huge)


def test_duration_and_frame_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = tmp_path / "tiny.mp4"
    clip.write_bytes(tiny_mp4())  # 1 s at 24 fps
    monkeypatch.setattr(video, "MAX_VIDEO_SECONDS", 0.5)
    with pytest.raises(MediaError, match="s is over"):
        probe(clip)
    monkeypatch.setattr(video, "MAX_VIDEO_SECONDS", 120.0)
    monkeypatch.setattr(video, "MAX_VIDEO_FRAMES", 10)
    with pytest.raises(MediaError, match="frames"):
        probe(clip)


async def test_a_child_over_its_time_limit_is_killed(tmp_path: Path) -> None:
    clip = tmp_path / "tiny.mp4"
    clip.write_bytes(tiny_mp4())
    with pytest.raises(ChildFailed, match="killed"):
        # Far less time than starting Python and FFmpeg takes.
        await run_in_child("probe", {"path": str(clip)}, ChildLimits(seconds=0.01))
    assert sandbox_children() == []


async def test_a_child_over_its_memory_limit_fails_cleanly(tmp_path: Path) -> None:
    clip = tmp_path / "tiny.mp4"
    clip.write_bytes(tiny_mp4())
    with pytest.raises(MediaError):
        await run_in_child("probe", {"path": str(clip)}, ChildLimits(memory_bytes=48 * 1024 * 1024))
    assert sandbox_children() == []


async def test_cancelling_the_caller_kills_the_child(tmp_path: Path) -> None:
    clip = tmp_path / "tiny.mp4"
    clip.write_bytes(tiny_mp4())
    task = asyncio.create_task(probe_async(clip))
    for _ in range(500):
        if sandbox_children():
            break
        await asyncio.sleep(0.01)
    (pid,) = sandbox_children()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sandbox_children() == []
    assert not Path(f"/proc/{pid}").exists()


async def test_cannot_shrink_keeps_its_type_across_the_child(tmp_path: Path) -> None:
    clip = tmp_path / "tiny.mp4"
    clip.write_bytes(tiny_mp4())
    # The notifier posts the provider's link on CannotShrink: a plain MediaError would fail the delivery.
    with pytest.raises(video.CannotShrink):
        await video.shrink_to_fit_async(clip, tmp_path / "out.mp4", 100)
    assert not (tmp_path / "out.mp4").exists()
