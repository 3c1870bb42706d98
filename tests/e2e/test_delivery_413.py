"""A video Discord refuses with 413 even after the one re-encode: a delivery failure, refunded, with
the provider's link on the status message (README: failures are refunded; the link is a courtesy)."""

from __future__ import annotations

import io
import os

import av
import pytest
from PIL import Image

from tests.e2e.world import world

pytestmark = pytest.mark.timeout(120)

TOO_LARGE = {"message": "Request entity too large", "code": 40005}


def noisy_clip() -> bytes:
    """About 2.5 MB of lossless noise: under the 10 MiB limit, and re-encodable to half in a moment."""
    buf = io.BytesIO()
    width, height, fps = 320, 180, 12
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "0"}
        for _ in range(fps * 2):
            image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize("private", [False, True], ids=["in-channel", "private-by-dm"])
async def test_a_second_413_fails_the_delivery_with_the_providers_link_and_refunds(private: bool) -> None:
    clip = noisy_clip()
    async with world("relay", video_bytes=clip, run_seconds=1.0) as w:
        await w.sora("refused twice", duration=4, **({"private": True} if private else {}))
        (status,) = await w.discord.wait_for(w.status_messages, 30, what="the status message")
        uploads = "/messages"  # the channel's, or the requester's DM channel for a private job
        # Discord's real limit is lower than the bot believes: both the file and its re-encode bounce.
        w.discord.inject(413, TOO_LARGE, times=2, path_contains=uploads, method="POST")

        failed = await w.wait_status("Failed", timeout=60)
        assert failed.id == status.id
        ((task_id, error_class, message),) = w.db_rows("SELECT provider_job_id, error_class, error_message FROM jobs")
        link = w.video_fake.result_url(task_id)  # type: ignore[union-attr]
        assert error_class == "UploadRefused"
        refused = "The video was made, but Discord refused the upload even after it was re-encoded smaller."
        if private:
            # The status message is the channel's to see: a private video's link stays out of it.
            assert message == f"{refused} Your credits were refunded."
            assert link not in str(failed.embeds)
        else:
            offer = f"You can still download it from the provider: {link}"
            assert message == f"{refused} Your credits were refunded. {offer}"
            assert link in str(failed.embeds)

        tries = [r for r in w.discord.requests_to(uploads, "POST") if r.files]
        assert [r.status for r in tries] == [413, 413]
        first, second = (r.files[0].size for r in tries)
        assert first == len(clip) and second <= first // 2  # one smaller attempt, never a loop
        assert w.videos() == []
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == {"reserve": 4, "refund": 4}
