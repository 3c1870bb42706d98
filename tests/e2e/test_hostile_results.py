"""Hostile provider results through the real bot: never posted, never fetched from inside, refunded."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.e2e.world import world
from tests.fakes.base import FakeServer

pytestmark = pytest.mark.timeout(120)

REFUND = {"reserve": 4, "refund": 4}


class Inside(FakeServer):
    """A service on another loopback port: "inside the bot's network"."""

    def setup_routes(self, app: web.Application) -> None:
        async def anything(request: web.Request) -> web.Response:
            return web.Response(body=b"internal", content_type="video/mp4")

        app.router.add_get("/{tail:.*}", anything)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        # FFmpeg's guess would read this as a playlist of other files in the bot's work directory.
        ("ffconcat", b"ffconcat version 1.0\nfile 'job-1.mp4'\nfile 'job-2.mp4'\n"),
        ("html", b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n"),
    ],
)
async def test_a_result_that_is_not_a_video_is_refused_and_refunded(name: str, body: bytes) -> None:
    async with world("relay", video_bytes=body) as w:
        await w.sora(f"not a video: {name}", duration=4)
        failed = await w.wait_status("Failed")
        assert "not a playable video" in str(failed.embeds) and "refunded" in str(failed.embeds)
        assert w.videos() == []
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == REFUND
        assert "ResultNotAVideo" in w.bot.log_text()


async def test_a_result_redirecting_inside_is_refused_unfetched_and_refunded() -> None:
    async with Inside() as inside, world("relay", result_location=f"{inside.base_url}/latest/meta-data") as w:
        await w.sora("sneaky", duration=4)
        failed = await w.wait_status("Failed")
        assert "will not open" in str(failed.embeds) and "refunded" in str(failed.embeds)
        assert inside.requests == []
        assert w.videos() == []
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == REFUND
