"""Benchmark: shrink_to_fit (PyAV, in process) vs the ffmpeg command line, on the same ~25 MB clip.

Generates a 12 s 1280x720 clip with detailed, noisy content at a high bitrate (plus a tone), then
re-encodes it to fit 10 MiB both ways: ``shrink_to_fit`` and an equivalent single-pass libx264 ABR
ffmpeg command (same bitrate, maxrate/bufsize, preset, AAC bitrate, +faststart). Prints markdown
table rows. Run: ``python -m bench.bench_shrink`` (needs imageio-ffmpeg for the ffmpeg binary).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
from PIL import Image, ImageChops

from bot.media.video import MAX_FPS, probe, shrink_to_fit, shrink_to_fit_async

LIMIT = 10 * 1024 * 1024
SAFETY = 0.92
AUDIO_BPS = 96_000


def make_clip(dest: Path, *, seconds: int = 12, width: int = 1280, height: int = 720, fps: int = 24) -> None:
    """Noise over a moving gradient: realistic-ish detail that still costs many bits."""
    gradient = Image.linear_gradient("L").resize((2 * width, height)).convert("RGB")
    gradient = ImageChops.multiply(gradient, Image.new("RGB", gradient.size, (255, 180, 90)))
    noise = [
        Image.merge("RGB", [Image.effect_noise((width, height), 28 + 4 * c + i) for c in range(3)]) for i in range(8)
    ]
    with av.open(str(dest), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"preset": "ultrafast", "crf": "26"}
        sound = out.add_stream("aac", rate=48_000)
        sound.bit_rate = 128_000
        for i in range(seconds * fps):
            offset = (i * 8) % width
            base = gradient.crop((offset, 0, offset + width, height))
            frame = av.VideoFrame.from_image(Image.blend(base, noise[i % len(noise)], 0.35))
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        pos, total = 0, seconds * 48_000
        while pos < total:
            count = min(1024, total - pos)
            samples = array.array("f", (0.2 * math.sin(2 * math.pi * 440 * (pos + j) / 48_000) for j in range(count)))
            chunk = av.AudioFrame(format="flt", layout="mono", samples=count)
            chunk.planes[0].update(samples.tobytes())
            chunk.sample_rate, chunk.pts = 48_000, pos
            pos += count
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))


def run_ffmpeg(src: Path, dest: Path, duration: float) -> None:
    import imageio_ffmpeg

    video_bps = int(LIMIT * 8 * SAFETY / duration) - AUDIO_BPS
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-fpsmax", str(MAX_FPS),
        "-b:v", str(video_bps), "-maxrate", str(int(video_bps * 1.5)), "-bufsize", str(video_bps * 2),
        "-c:a", "aac", "-b:a", str(AUDIO_BPS), "-movflags", "+faststart", str(dest),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="keep the clips in this folder")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median time is shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shrink-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        src = folder / "source.mp4"
        started = time.perf_counter()
        make_clip(src)
        source = probe(src)
        print(
            f"source: {source.size_bytes / 1e6:.1f} MB, {source.duration:.1f} s, {source.width}x{source.height}, "
            f"made in {time.perf_counter() - started:.1f} s; limit {LIMIT} bytes",
            file=sys.stderr,
        )
        print("| method | seconds | output bytes | fits | time / clip duration |")
        print("| --- | ---: | ---: | :---: | ---: |")
        for name, run in (
            ("shrink_to_fit (PyAV)", lambda dest: shrink_to_fit(src, dest, LIMIT, safety=SAFETY)),
            (
                "shrink_to_fit_async (sandboxed child, as the bot runs it)",
                lambda dest: asyncio.run(shrink_to_fit_async(src, dest, LIMIT, safety=SAFETY)),
            ),
            ("ffmpeg CLI, 1-pass ABR", lambda dest: run_ffmpeg(src, dest, source.duration)),
        ):
            dest = folder / f"{name.split()[0]}.mp4"
            times = []
            for _ in range(max(1, args.repeat)):
                started = time.perf_counter()
                run(dest)
                times.append(time.perf_counter() - started)
            elapsed = statistics.median(times)
            size = dest.stat().st_size
            print(
                f"| {name} | {elapsed:.2f} | {size} | {'yes' if size <= LIMIT else 'NO'} | "
                f"{elapsed / source.duration:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
