"""Real, tiny MP4 files for the fakes to serve (PyAV, H.264)."""

from __future__ import annotations

import functools
import io

import av
from PIL import Image


@functools.cache
def tiny_mp4(seconds: float = 1.0, width: int = 128, height: int = 72, fps: int = 12) -> bytes:
    """A playable H.264 MP4 whose colour changes every frame. Cached: the same bytes every call."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(max(1, int(seconds * fps))):
            shade = (i * 16) % 256
            image = Image.new("RGB", (width, height), (shade, 255 - shade, 128))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
