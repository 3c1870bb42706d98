"""The demo provider's renderer: a real H.264 MP4 showing the prompt (runs in a worker thread)."""

from __future__ import annotations

import colorsys
import io
import logging
import math
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import av
from PIL import Image, ImageChops, ImageDraw, ImageFont

from bot.errors import MediaError
from bot.media.images import fit_image
from bot.media.video import atomic_output

log = logging.getLogger(__name__)


class RenderCancelled(Exception):
    """``render_text_video`` was asked to stop between frames."""


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
    with atomic_output(dest) as tmp:
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
