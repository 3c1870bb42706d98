"""bot.media.video on real clips: probe, shrink (size, playability, faststart), last frame; and the demo
provider's renderer (bot/providers/demo_render.py), checked with the same probes."""

from __future__ import annotations

import array
import io
import logging
import math
import struct
from pathlib import Path

import av
import pytest
from PIL import Image

from bot.errors import MediaError
from bot.media.video import (
    CannotShrink,
    VideoInfo,
    last_frame,
    last_frame_async,
    probe,
    shrink_to_fit,
    shrink_to_fit_async,
    to_mp4,
)
from bot.providers.demo_render import RenderCancelled, render_text_video
from tests.fakes.videos import tiny_mp4


def noisy_clip(
    dest: Path,
    *,
    seconds: float,
    width: int,
    height: int,
    fps: int = 24,
    audio: bool = True,
    sample_rate: int = 48_000,
) -> None:
    """High-detail colour noise (it does not compress small) plus a 440 Hz tone."""
    frames = [
        Image.merge("RGB", [Image.effect_noise((width, height), 60 + 8 * c + 3 * i) for c in range(3)])
        for i in range(6)
    ]
    with av.open(str(dest), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"preset": "ultrafast", "crf": "34"}
        sound = out.add_stream("aac", rate=sample_rate) if audio else None  # every stream before the first packet
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_image(frames[i % len(frames)])
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            total, pos = int(seconds * sample_rate), 0
            while pos < total:
                count = min(1024, total - pos)
                samples = array.array(
                    "f", (0.2 * math.sin(2 * math.pi * 440 * (pos + j) / sample_rate) for j in range(count))
                )
                chunk = av.AudioFrame(format="flt", layout="mono", samples=count)
                chunk.planes[0].update(samples.tobytes())
                chunk.sample_rate, chunk.pts = sample_rate, pos
                pos += count
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))


def top_level_atoms(path: Path) -> list[str]:
    """The MP4's top-level box types, in file order (parsed, not searched for)."""
    atoms, data, pos = [], path.read_bytes(), 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        atoms.append(kind.decode("latin-1"))
        pos += size
    return atoms


def decoded_frames(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 20) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "noisy.mp4"
    noisy_clip(path, seconds=5, width=1280, height=720)
    return path


# --- probe ---------------------------------------------------------------------------------------


def test_probe_a_real_clip(tmp_path: Path) -> None:
    path = tmp_path / "tiny.mp4"
    path.write_bytes(tiny_mp4())
    info = probe(path)
    assert info == VideoInfo(1.0, 128, 72, "h264", None, len(tiny_mp4()))


def test_probe_sees_audio(big_clip: Path) -> None:
    info = probe(big_clip)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (1280, 720, "h264", "aac")
    assert info.duration == pytest.approx(5.0, abs=0.1)
    assert info.size_bytes > 4_000_000


@pytest.mark.parametrize(
    "content",
    [b"hello, not a video", b"", Image.new("RGB", (8, 8)).tobytes()],
    ids=["text", "empty", "raw"],
)
def test_probe_refuses_non_videos(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as err:
        probe(path)
    assert err.value.user_message == "That file is not a playable video."


def test_probe_refuses_a_still_image_named_mp4(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(out, format="PNG")
    path = tmp_path / "still.mp4"
    path.write_bytes(out.getvalue())
    with pytest.raises(MediaError):
        probe(path)


# --- shrink --------------------------------------------------------------------------------------


def test_shrink_fits_the_limit_plays_and_has_faststart(big_clip: Path, tmp_path: Path) -> None:
    source = probe(big_clip)
    limit = 1_500_000
    assert source.size_bytes > 3 * limit
    dest = tmp_path / "small.mp4"
    info = shrink_to_fit(big_clip, dest, limit)
    assert dest.stat().st_size == info.size_bytes <= limit
    assert info.size_bytes > limit * 0.6  # it used the budget rather than crushing the clip
    played = probe(dest)
    assert (played.video_codec, played.audio_codec) == ("h264", "aac")
    assert played.duration == pytest.approx(source.duration, abs=0.15)
    assert (played.width, played.height) == (1280, 720)  # enough bits per pixel: no downscale
    atoms = top_level_atoms(dest)
    assert atoms.index("moov") < atoms.index("mdat")
    assert len(decoded_frames(dest)) == 5 * 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.mp4"]


def test_shrink_downscales_when_bits_per_pixel_are_too_low(big_clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "tiny.mp4"
    info = shrink_to_fit(big_clip, dest, 500_000)
    assert info.size_bytes <= 500_000
    assert info.width < 1280 and info.width % 2 == 0 and info.height % 2 == 0
    assert info.width / info.height == pytest.approx(16 / 9, rel=0.02)


async def test_shrink_retries_once_after_an_overshoot(
    big_clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # safety > 1 makes the first attempt aim over the limit on purpose, so the retry path must save it.
    caplog.set_level(logging.INFO, logger="bot.media.video")
    dest = tmp_path / "retried.mp4"
    info = await shrink_to_fit_async(big_clip, dest, 1_000_000, safety=1.6)
    assert info.size_bytes <= 1_000_000
    assert any("overshot" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["retried.mp4"]


def test_shrink_caps_the_frame_rate_at_30_and_keeps_odd_audio(tmp_path: Path) -> None:
    src = tmp_path / "sixty.mp4"
    noisy_clip(src, seconds=2, width=320, height=180, fps=60, sample_rate=44_100)
    source = probe(src)
    dest = tmp_path / "thirty.mp4"
    info = shrink_to_fit(src, dest, source.size_bytes // 3)
    assert info.size_bytes <= source.size_bytes // 3
    assert info.duration == pytest.approx(2.0, abs=0.05)
    with av.open(str(dest)) as container:
        assert container.streams.video[0].average_rate == 30
        assert container.streams.audio[0].sample_rate == 44_100
    assert len(decoded_frames(dest)) == 60


def test_shrink_refuses_an_impossible_limit_and_leaves_nothing(big_clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "never.mp4"
    with pytest.raises(CannotShrink) as err:
        shrink_to_fit(big_clip, dest, 40_000)
    assert "upload limit" in err.value.user_message
    assert isinstance(err.value, MediaError)
    assert list(tmp_path.iterdir()) == []


def test_shrink_copies_a_clip_that_already_fits(tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    src.write_bytes(tiny_mp4())
    info = shrink_to_fit(src, tmp_path / "out.mp4", 10_000_000)
    assert (tmp_path / "out.mp4").read_bytes() == tiny_mp4()
    assert info.size_bytes == len(tiny_mp4())


def test_shrink_refuses_a_non_video(tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    src.write_bytes(b"\x00" * 5000)
    with pytest.raises(MediaError):
        shrink_to_fit(src, tmp_path / "out.mp4", 1000)
    assert not (tmp_path / "out.mp4").exists()


# --- last frame ----------------------------------------------------------------------------------


def test_last_frame_of_tiny_mp4(tmp_path: Path) -> None:
    path = tmp_path / "tiny.mp4"
    path.write_bytes(tiny_mp4())
    image = Image.open(io.BytesIO(last_frame(path)))
    assert image.format == "PNG"
    assert image.size == (128, 72)
    # tiny_mp4 paints frame i with shade (i * 16) % 256; 12 frames, so the last shade is 176.
    assert close(image.convert("RGB").getpixel((64, 36)), (176, 255 - 176, 128))


async def test_last_frame_uses_the_seek_path_on_a_longer_clip(tmp_path: Path) -> None:
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "g": "12"}  # a keyframe every second
        total = 12 * 6
        for i in range(total):
            colour = (240, 20, 20) if i == total - 1 else (20, 20, 200 + i % 40)
            frame = av.VideoFrame.from_image(Image.new("RGB", (160, 90), colour))
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    image = Image.open(io.BytesIO(await last_frame_async(path))).convert("RGB")
    assert image.size == (160, 90)
    assert close(image.getpixel((80, 45)), (240, 20, 20), tol=30)


def test_last_frame_refuses_a_non_video(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(b"nope")
    with pytest.raises(MediaError):
        last_frame(path)


# --- demo rendering ------------------------------------------------------------------------------


def test_render_text_video_makes_the_requested_clip(tmp_path: Path) -> None:
    dest = tmp_path / "demo.mp4"
    progress: list[float] = []
    render_text_video(
        dest,
        prompt="a red fox in the snow " * 20,
        seconds=4,
        width=720,
        height=1280,
        fps=12,
        on_progress=progress.append,
    )
    info = probe(dest)
    assert (info.width, info.height, info.video_codec) == (720, 1280, "h264")
    assert info.duration == pytest.approx(4.0, abs=0.01)
    assert progress == sorted(progress) and progress[-1] == 100.0 and len(progress) == 48
    atoms = top_level_atoms(dest)
    assert atoms.index("moov") < atoms.index("mdat")
    frames = decoded_frames(dest)
    assert frames[0].tobytes() != frames[-1].tobytes()  # it moves


def test_render_shows_the_reference_image_first(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (640, 360), (250, 200, 0)).save(out, format="PNG")
    dest = tmp_path / "ref.mp4"
    render_text_video(dest, prompt="x", seconds=4, width=1280, height=720, fps=6, image=out.getvalue())
    frames = decoded_frames(dest)
    assert close(frames[0].convert("RGB").getpixel((40, 40)), (250, 200, 0))
    assert not close(frames[-1].convert("RGB").getpixel((40, 40)), (250, 200, 0))


def test_render_stops_when_asked_and_leaves_nothing(tmp_path: Path) -> None:
    calls: list[float] = []
    with pytest.raises(RenderCancelled):
        render_text_video(
            tmp_path / "stop.mp4",
            prompt="stop me",
            seconds=12,
            width=1280,
            height=720,
            on_progress=calls.append,
            should_stop=lambda: len(calls) >= 3,
        )
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_to_mp4_copies_a_playable_mp4_and_refuses_a_still_image(tmp_path: Path) -> None:
    src = tmp_path / "ok.mp4"
    src.write_bytes(tiny_mp4())
    info = to_mp4(src, tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == src.read_bytes() and info.video_codec == "h264"
    still = tmp_path / "still.png"
    Image.new("RGB", (64, 48)).save(still)
    with pytest.raises(MediaError):
        to_mp4(still, tmp_path / "no.mp4")
    assert not (tmp_path / "no.mp4").exists()


def test_to_mp4_shows_each_animation_frame_for_its_own_duration(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (65, 49), (i * 60, 0, 0)) for i in range(4)]
    src = tmp_path / "anim.gif"
    frames[0].save(src, "GIF", save_all=True, append_images=frames[1:], duration=[100, 300, 100, 500], loop=0)
    info = to_mp4(src, tmp_path / "anim.mp4")
    assert (info.width, info.height) == (64, 48)  # even sides for yuv420p
    assert len(decoded_frames(tmp_path / "anim.mp4")) == 10  # 1 s at 10 fps: 1 + 3 + 1 + 5 frames
