from __future__ import annotations

import io
import os

import av
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def big_clip() -> bytes:
    """A ~25 MB H.264 MP4 (4 s of noise at a near-lossless quantiser): too big for a 10 MiB upload."""
    buf = io.BytesIO()
    width, height, fps = 640, 360, 24
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "0"}
        for _ in range(fps * 4):
            image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = buf.getvalue()
    assert len(data) > 20 * 1024 * 1024, len(data)
    return data
