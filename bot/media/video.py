"""Videos: probe, shrink to an upload limit, convert any clip to MP4, grab the last frame, and render
the demo provider's clips.

All heavy work is synchronous and streams frame by frame (memory stays bounded whatever the length);
event-loop callers use the ``*_async`` wrappers, which run it in a child process with a time and a
memory limit (bot.media.sandbox): the files come from providers and are untrusted. Outputs are
written to a hidden temporary file next to ``dest`` and renamed into place only when complete, so a
failure never leaves a partial file behind.

Files are opened as MP4/MOV (ISO-BMFF) or WebM/Matroska, chosen from their first bytes, never by
FFmpeg's guess: that would also accept an ``ffconcat`` script or a playlist that reads other files.
"""

from __future__ import annotations

import base64
import colorsys
import io
import logging
import math
import os
import shutil
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageChops, ImageDraw, ImageFont

from bot.errors import MediaError, ResultNotAVideo
from bot.media.images import fit_image
from bot.media.sandbox import ChildLimits, ChildRefused, run_in_child

log = logging.getLogger(__name__)

MIN_VIDEO_BPS = 100_000
"""Below this a clip is mush at any size: refuse rather than deliver it."""
MIN_BITS_PER_PIXEL = 0.04
"""Per pixel per frame; below it we downscale (x264 at ~0.04 still looks fair at these sizes)."""
MAX_FPS = 30
_LONG_SIDES = (1920, 1280, 960, 854, 640, 480)
_STILL_IMAGE_CODECS = frozenset({"png", "mjpeg", "bmp", "webp", "tiff", "gif", "apng", "jpeg2000"})
_NOT_A_VIDEO = "That file is not a playable video."
MAX_VIDEO_PIXELS = 3840 * 2160
"""Width x height cap (4K): every provider's largest size is far below it."""
MAX_VIDEO_SECONDS = 120.0
MAX_VIDEO_FRAMES = int(MAX_VIDEO_SECONDS * 60)
PROBE_LIMITS = ChildLimits(seconds=60.0)
SHRINK_LIMITS = ChildLimits(seconds=600.0)
# First bytes -> the one demuxer allowed to read them. ISO-BMFF files start with a box: size, then type.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"


class CannotShrink(MediaError):
    """The video cannot be made small enough for the limit at a watchable quality."""


class RenderCancelled(Exception):
    """``render_text_video`` was asked to stop between frames."""


@dataclass(frozen=True)
class VideoInfo:
    duration: float
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    size_bytes: int


@dataclass(frozen=True)
class _Plan:
    width: int
    height: int
    video_bps: int
    audio_bps: int


# --- probe ---------------------------------------------------------------------------------------


def probe(path: Path) -> VideoInfo:
    """Duration, size and codecs of a video file; MediaError if it is not one, or is beyond the caps
    on pixels, duration and frames. The first frame is decoded: a header alone proves little."""
    with _open_input(path) as container:
        stream = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        info = VideoInfo(
            duration=_duration(container, stream),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            video_codec=stream.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
            size_bytes=path.stat().st_size,
        )
        _check_caps(path, info, stream)
        try:
            next(iter(container.decode(stream)))
        except (av.FFmpegError, StopIteration) as exc:
            raise MediaError(_NOT_A_VIDEO, f"{path.name}: no decodable frame: {exc!r}") from exc
        return info


def _check_caps(path: Path, info: VideoInfo, stream: av.video.stream.VideoStream) -> None:
    if info.width * info.height > MAX_VIDEO_PIXELS:
        raise MediaError(_NOT_A_VIDEO, f"{path.name}: {info.width}x{info.height} is over {MAX_VIDEO_PIXELS} pixels")
    if info.duration > MAX_VIDEO_SECONDS:
        raise MediaError(_NOT_A_VIDEO, f"{path.name}: {info.duration:.0f} s is over {MAX_VIDEO_SECONDS:.0f} s")
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    frames = max(stream.frames or 0, int(info.duration * rate))
    if frames > MAX_VIDEO_FRAMES:
        raise MediaError(_NOT_A_VIDEO, f"{path.name}: {frames} frames is over {MAX_VIDEO_FRAMES}")


async def probe_async(path: Path) -> VideoInfo:
    """``probe`` in a child process (see bot.media.sandbox)."""
    return VideoInfo(**await run_in_child("probe", {"path": str(path)}, PROBE_LIMITS))


async def check_result_async(path: Path) -> VideoInfo:
    """Probe a provider's result before anything is posted: ResultNotAVideo (refunded) if it is not one."""
    try:
        return await probe_async(path)
    except MediaError as exc:
        raise ResultNotAVideo(f"result {path.name} refused: {exc.detail}") from exc


def probe_payload(path: str) -> dict[str, object]:
    return probe(Path(path)).__dict__


def _container_format(path: Path) -> str:
    """The demuxer for this file, from its first bytes; MediaError for anything but MP4/MOV/WebM."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as exc:
        raise MediaError(_NOT_A_VIDEO, f"cannot read {path.name}: {exc}") from exc
    if head[4:8] in _ISO_BOXES:
        return "mov"
    if head.startswith(_EBML_MAGIC):
        return "matroska"
    raise MediaError(_NOT_A_VIDEO, f"{path.name}: not MP4/MOV/WebM (starts {head[:12]!r})")


@contextmanager
def _open_input(path: Path) -> Iterator[av.container.InputContainer]:
    fmt_name = _container_format(path)
    # mov: never follow "external data references" (other files named inside the file).
    options = {"enable_drefs": "0"} if fmt_name == "mov" else {}
    try:
        container = av.open(str(path), mode="r", format=fmt_name, options=options)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(_NOT_A_VIDEO, f"cannot open {path.name}: {exc}") from exc
    try:
        video = container.streams.video
        fmt = container.format.name
        if not video or video[0].codec_context.name in _STILL_IMAGE_CODECS:
            raise MediaError(_NOT_A_VIDEO, f"{path.name}: format {fmt} has no usable video stream")
        if video[0].codec_context.width <= 0 or video[0].codec_context.height <= 0:
            raise MediaError(_NOT_A_VIDEO, f"{path.name}: video stream without a size")
        yield container
    finally:
        container.close()


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


# --- shrink ---------------------------------------------------------------------------------------


def shrink_to_fit(src: Path, dest: Path, max_bytes: int, *, safety: float = 0.92) -> VideoInfo:
    """Re-encode ``src`` (H.264 + AAC, MP4 with faststart) so that ``dest`` is at most ``max_bytes``.

    Single-pass x264 ABR with a VBV cap; downscales when the bitrate per pixel would be too low and
    caps the frame rate at 30. One retry at a lower bitrate if x264 overshoots. A source that already
    fits is copied as is. Raises CannotShrink when no watchable result can fit.
    """
    info = probe(src)
    if info.size_bytes <= max_bytes:
        _copy_atomic(src, dest)
        return probe(dest)
    if info.duration <= 0:
        raise CannotShrink("That video cannot be made small enough to upload.", f"{src.name}: unknown duration")
    plan = _plan(info, max_bytes * 8 * safety / info.duration, has_audio=info.audio_codec is not None)
    for attempt in (1, 2):
        size = _encode_to(src, dest, plan, max_bytes)
        if size <= max_bytes:
            log.info(
                "shrank %s: %d -> %d bytes (%dx%d, %d bps)",
                src.name,
                info.size_bytes,
                size,
                plan.width,
                plan.height,
                plan.video_bps,
            )
            return probe(dest)
        log.info("shrink attempt %d overshot: %d > %d bytes", attempt, size, max_bytes)
        # Aim under the limit by the observed overshoot plus a margin.
        total_bps = (plan.video_bps + plan.audio_bps) * (max_bytes / size) * 0.9
        plan = _plan(info, total_bps, has_audio=info.audio_codec is not None)
    raise CannotShrink(
        "That video cannot be made small enough to upload.", f"{src.name}: still over {max_bytes} bytes after retry"
    )


async def shrink_to_fit_async(src: Path, dest: Path, max_bytes: int, *, safety: float = 0.92) -> VideoInfo:
    """``shrink_to_fit`` in a child process (see bot.media.sandbox)."""
    args = {"src": str(src), "dest": str(dest), "max_bytes": max_bytes, "safety": safety}
    try:
        return VideoInfo(**await run_in_child("shrink", args, SHRINK_LIMITS))
    except ChildRefused as exc:
        if exc.kind == CannotShrink.__name__:  # callers fall back to a link on this one
            raise CannotShrink(exc.user_message, exc.detail) from exc
        raise


def shrink_payload(src: str, dest: str, max_bytes: int, safety: float) -> dict[str, object]:
    return shrink_to_fit(Path(src), Path(dest), max_bytes, safety=safety).__dict__


def _plan(info: VideoInfo, total_bps: float, *, has_audio: bool) -> _Plan:
    audio_bps = 0
    if has_audio:
        audio_bps = 96_000 if total_bps >= 1_500_000 else 64_000 if total_bps >= 400_000 else 48_000
    video_bps = int(total_bps - audio_bps)
    if video_bps < MIN_VIDEO_BPS:
        raise CannotShrink(
            "That video is too long to fit the upload limit at a watchable quality.",
            f"{info.duration:.1f} s would leave {video_bps} bps of video",
        )
    fps = MAX_FPS  # a conservative assumption: the real rate is at most this after the cap
    long_side, short_side = max(info.width, info.height), min(info.width, info.height)
    chosen = long_side
    for candidate in (long_side, *(s for s in _LONG_SIDES if s < long_side)):
        chosen = candidate
        pixels = candidate * candidate * short_side / long_side
        if video_bps / (pixels * fps) >= MIN_BITS_PER_PIXEL:
            break
    scale = chosen / long_side
    width, height = _even(info.width * scale), _even(info.height * scale)
    return _Plan(width=width, height=height, video_bps=video_bps, audio_bps=audio_bps)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _encode_to(src: Path, dest: Path, plan: _Plan, max_bytes: int) -> int:
    """One encode of ``src`` into ``dest`` following ``plan``; returns the output size."""
    with _atomic_output(dest) as tmp, _open_input(src) as inp:
        v_in = inp.streams.video[0]
        v_in.thread_type = "AUTO"
        a_in = inp.streams.audio[0] if inp.streams.audio and plan.audio_bps else None
        src_rate = v_in.average_rate or v_in.guessed_rate or Fraction(MAX_FPS)
        rate = min(Fraction(src_rate), Fraction(MAX_FPS))
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            v_out = out.add_stream("libx264", rate=rate)
            v_out.width, v_out.height, v_out.pix_fmt = plan.width, plan.height, "yuv420p"
            v_out.bit_rate = plan.video_bps
            v_out.codec_context.options = {
                "preset": "veryfast",
                "maxrate": str(int(plan.video_bps * 1.5)),
                "bufsize": str(plan.video_bps * 2),
            }
            a_out = None
            if a_in is not None:
                sample_rate = a_in.codec_context.sample_rate or 48_000
                a_out = out.add_stream("aac", rate=sample_rate if sample_rate <= 48_000 else 48_000)
                a_out.layout = "stereo" if a_in.codec_context.channels >= 2 else "mono"
                a_out.bit_rate = plan.audio_bps
            last_index, t0, samples, decoded = -1, None, 0, 0
            streams = [v_in] if a_in is None else [v_in, a_in]
            try:
                for packet in inp.demux(*streams):
                    for frame in packet.decode():
                        if isinstance(frame, av.VideoFrame):
                            decoded += 1
                            if decoded > MAX_VIDEO_FRAMES:  # the header may have lied about its length
                                raise MediaError(_NOT_A_VIDEO, f"{src.name}: over {MAX_VIDEO_FRAMES} frames")
                            t = frame.time if frame.time is not None else (last_index + 1) / rate
                            t0 = t if t0 is None else t0
                            # Frame index on the output clock: dropping frames that collide caps the fps.
                            # A tenth of a frame of slack: containers round times (WebM to the millisecond).
                            index = math.floor((t - t0) * rate + 0.1)
                            if index <= last_index:
                                continue
                            last_index = index
                            scaled = frame.reformat(plan.width, plan.height, "yuv420p", interpolation="AREA")
                            scaled.pts, scaled.time_base = index, 1 / rate
                            out.mux(v_out.encode(scaled))
                        elif a_out is not None and isinstance(frame, av.AudioFrame):
                            frame.pts, frame.time_base = samples, Fraction(1, frame.sample_rate)
                            samples += frame.samples
                            out.mux(a_out.encode(frame))
                out.mux(v_out.encode(None))
                if a_out is not None:
                    out.mux(a_out.encode(None))
            except av.FFmpegError as exc:
                raise MediaError("That video could not be converted.", f"{src.name}: {exc}") from exc
        size = tmp.stat().st_size
        if size > max_bytes:
            return size  # the context manager removes tmp: nothing partial or oversized is left
        os.replace(tmp, dest)
    return size


@contextmanager
def _atomic_output(dest: Path) -> Iterator[Path]:
    """A hidden temporary path next to ``dest``; whatever is left there at exit is removed."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _copy_atomic(src: Path, dest: Path) -> None:
    with _atomic_output(dest) as tmp:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


# --- any clip to MP4 -----------------------------------------------------------------------------

ANIMATION_FORMATS = frozenset({"GIF", "WEBP", "PNG"})
"""Pillow formats that may hold an animation (animated GIF, animated WebP, APNG)."""
_CONVERT_BITS_PER_PIXEL = 0.12
_CONVERT_MAX_BPS = 8_000_000


def to_mp4(src: Path, dest: Path) -> VideoInfo:
    """Whatever a workflow saved (MP4, WebM, MOV, animated WebP, GIF or APNG) as a playable MP4:
    H.264 yuv420p (+ AAC), faststart. An MP4 that already is one is copied as it is.

    Synchronous and streaming; event-loop callers use ``to_mp4_async``. MediaError when ``src`` is no
    video or animation (a single still image included)."""
    if _is_animation(src):
        _encode_animation(src, dest)
        return probe(dest)
    info = probe(src)
    if _playable_mp4(src, info):
        _copy_atomic(src, dest)
        return probe(dest)
    if info.duration <= 0:
        raise MediaError(_NOT_A_VIDEO, f"{src.name}: unknown duration")
    width, height = _even(info.width), _even(info.height)
    video_bps = int(min(_CONVERT_MAX_BPS, max(MIN_VIDEO_BPS, width * height * MAX_FPS * _CONVERT_BITS_PER_PIXEL)))
    plan = _Plan(width=width, height=height, video_bps=video_bps, audio_bps=128_000 if info.audio_codec else 0)
    _encode_to(src, dest, plan, max_bytes=1 << 62)
    return probe(dest)


async def to_mp4_async(src: Path, dest: Path) -> VideoInfo:
    """``to_mp4`` in a child process (see bot.media.sandbox): what a workflow saved is decoded there."""
    return VideoInfo(**await run_in_child("to_mp4", {"src": str(src), "dest": str(dest)}, SHRINK_LIMITS))


def to_mp4_payload(src: str, dest: str) -> dict[str, object]:
    return to_mp4(Path(src), Path(dest)).__dict__


def _is_animation(path: Path) -> bool:
    """Whether Pillow reads ``path`` as an image with more than one frame (FFmpeg's WebP decoder reads no
    animation, so these go through Pillow)."""
    try:
        with Image.open(path) as image:
            return image.format in ANIMATION_FORMATS and getattr(image, "n_frames", 1) > 1
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _playable_mp4(path: Path, info: VideoInfo) -> bool:
    if info.video_codec != "h264" or info.audio_codec not in (None, "aac"):
        return False
    with path.open("rb") as head:
        start = head.read(12)
    if start[4:8] != b"ftyp" or start[8:12] == b"qt  ":  # an ISO MP4, not a QuickTime movie
        return False
    with _open_input(path) as container:
        return container.streams.video[0].codec_context.pix_fmt in ("yuv420p", "yuvj420p")


def _encode_animation(src: Path, dest: Path) -> None:
    """Frames of an animated image onto a constant-rate H.264 clock: each source frame is shown for
    its own duration (frames repeated or dropped), at the first frame's rate capped to 30 fps."""
    with Image.open(src) as image, _atomic_output(dest) as tmp:
        width, height = _even(image.width), _even(image.height)
        image.load()  # WebP states a frame's duration only once the frame is loaded
        fps = max(1, min(MAX_FPS, round(1000 / max(1, image.info.get("duration") or 100))))
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.options = {"preset": "veryfast", "crf": "20"}
            start_ms, written, count = 0.0, 0, int(getattr(image, "n_frames", 1))
            for index in range(count):
                image.seek(index)
                image.load()
                end_ms = start_ms + (image.info.get("duration") or 1000 / fps)
                until = max(math.ceil(end_ms * fps / 1000), written + 1 if index == count - 1 else 0)
                if until > written:
                    rgb = image.convert("RGB")
                    if rgb.size != (width, height):
                        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
                    frame = av.VideoFrame.from_image(rgb)
                    for pts in range(written, until):
                        frame.pts = pts
                        out.mux(stream.encode(frame))
                    written = until
                start_ms = end_ms
            out.mux(stream.encode(None))
        os.replace(tmp, dest)


# --- last frame -----------------------------------------------------------------------------------


def last_frame(path: Path) -> bytes:
    """PNG bytes of the final frame: seek to a keyframe near the end, decode forward from there."""
    with _open_input(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frame = None
        end = _duration(container, stream)
        if end > 2 and stream.time_base:
            try:
                container.seek(int((end - 2) / stream.time_base) + (stream.start_time or 0), stream=stream)
                frame = _decode_last(container, stream)
            except av.FFmpegError as exc:
                log.debug("seek failed in %s, decoding from the start: %s", path.name, exc)
        if frame is None:
            container.seek(0)
            frame = _decode_last(container, stream)
        if frame is None:
            raise MediaError(_NOT_A_VIDEO, f"{path.name}: no decodable frame")
        out = io.BytesIO()
        frame.to_image().save(out, format="PNG", compress_level=1)
        return out.getvalue()


async def last_frame_async(path: Path) -> bytes:
    """``last_frame`` in a child process (see bot.media.sandbox)."""
    return base64.b64decode(await run_in_child("last_frame", {"path": str(path)}, PROBE_LIMITS))


def last_frame_payload(path: str) -> str:
    return base64.b64encode(last_frame(Path(path))).decode()


def _decode_last(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> av.VideoFrame | None:
    last = None
    try:
        for count, frame in enumerate(container.decode(stream), start=1):
            if count > MAX_VIDEO_FRAMES:
                break
            last = frame  # only the newest frame is kept: memory stays flat
    except av.FFmpegError as exc:
        # A damaged tail: the last good frame is still the best answer.
        log.debug("decode stopped early: %s", exc)
    return last


# --- demo rendering -------------------------------------------------------------------------------


def render_text_video(
    dest: Path,
    *,
    prompt: str,
    seconds: int,
    width: int,
    height: int,
    fps: int = 24,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    image: bytes | None = None,
) -> None:
    """A real H.264 MP4 (yuv420p, faststart) showing ``prompt`` over a drifting colour gradient.

    ``image`` (a reference picture) is shown for the first second, then fades out. ``should_stop`` is
    checked between frames; when it returns True, RenderCancelled is raised and nothing is left.
    """
    total = max(1, int(seconds * fps))
    background = _gradient_strip(width, height)
    text_layer = _text_layer(prompt, width, height)
    reference = _reference_frame(image, width, height) if image else None
    small = ImageFont.load_default(size=max(12, min(width, height) // 30))
    with _atomic_output(dest) as tmp:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.options = {"preset": "ultrafast", "crf": "28"}
            for index in range(total):
                if should_stop is not None and should_stop():
                    raise RenderCancelled
                t = index / fps
                frame = _compose(background, text_layer, reference, small, t, seconds, width, height)
                video_frame = av.VideoFrame.from_image(frame)
                video_frame.pts = index
                out.mux(stream.encode(video_frame))
                if on_progress is not None:
                    on_progress(100.0 * (index + 1) / total)
            out.mux(stream.encode(None))
        os.replace(tmp, dest)


def _gradient_strip(width: int, height: int) -> Image.Image:
    """Twice the frame width of periodic hues, shaded top to bottom; frames are moving crops of it."""
    row = Image.new("RGB", (2 * width, 1))
    row.putdata(
        [tuple(int(c * 255) for c in colorsys.hsv_to_rgb((x % width) / width, 0.55, 0.75)) for x in range(2 * width)]
    )
    strip = row.resize((2 * width, height), Image.Resampling.NEAREST)
    shade = Image.linear_gradient("L").resize((2 * width, height)).point(lambda v: 255 - v // 2)
    return ImageChops.multiply(strip, Image.merge("RGB", (shade, shade, shade)))


def _text_layer(prompt: str, width: int, height: int) -> Image.Image:
    """The wrapped prompt on a translucent dark panel (RGBA), drawn once per clip."""
    font = ImageFont.load_default(size=max(14, min(width, height) // 18))
    sample = "the quick brown fox jumps over the lazy dog "
    columns = max(10, int(width * 0.8 / max(1.0, font.getlength(sample) / len(sample))))
    lines = textwrap.wrap(" ".join(prompt.split()), columns) or [" "]
    if len(lines) > 8:  # a long prompt: show its start, and say there is more
        lines = [*lines[:7], lines[7] + " …"]
    line_height = int(getattr(font, "size", 11) * 1.3)  # the bitmap fallback font has no size: ~11 px
    panel_h = line_height * len(lines) + line_height
    layer = Image.new("RGBA", (width, panel_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rounded_rectangle(
        (width // 20, 0, width - width // 20, panel_h - 1), radius=line_height // 2, fill=(0, 0, 0, 150)
    )
    for i, line in enumerate(lines):
        draw.text((width // 2, line_height // 2 + i * line_height), line, font=font, fill="white", anchor="ma")
    return layer


def _reference_frame(image: bytes, width: int, height: int) -> Image.Image | None:
    try:
        return Image.open(io.BytesIO(fit_image(image, width, height, mode="letterbox"))).convert("RGB")
    except MediaError as exc:
        log.info("demo render ignores an unusable reference image: %s", exc.detail)
        return None


def _compose(
    background: Image.Image,
    text_layer: Image.Image,
    reference: Image.Image | None,
    small: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    t: float,
    seconds: int,
    width: int,
    height: int,
) -> Image.Image:
    offset = int(width * (t / 12.0)) % width  # one full hue cycle every 12 s
    frame = background.crop((offset, 0, offset + width, height))
    if reference is not None and t < 1.5:
        frame = reference.copy() if t < 1.0 else Image.blend(reference, frame, (t - 1.0) / 0.5)
    bob = int(height * 0.01 * math.sin(2 * math.pi * t / 3))
    frame.paste(text_layer, (0, (height - text_layer.height) // 2 + bob), text_layer)
    draw = ImageDraw.Draw(frame)
    margin, bar_h = width // 20, max(4, height // 80)
    bar_y = height - margin
    draw.rectangle((margin, bar_y, width - margin, bar_y + bar_h), outline="white")
    draw.rectangle((margin, bar_y, margin + int((width - 2 * margin) * t / seconds), bar_y + bar_h), fill="white")
    draw.text((margin, bar_y - 4), f"demo · {t:4.1f} s / {seconds} s", font=small, fill="white", anchor="ld")
    return frame
