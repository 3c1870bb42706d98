"""The fake Discord's CDN serves an attachment whatever its file name (as Discord's does)."""

from __future__ import annotations

import aiohttp

from tests.fakes.discord import FakeDiscord


async def test_an_attachment_named_with_braces_is_served(http_session: aiohttp.ClientSession) -> None:
    # Found by the fuzzer: "}" in a name made the route miss, so the bot saw a 404 for a real upload.
    async with FakeDiscord() as fake:
        channel = fake.channel.id
        attachment = fake.store_attachment(channel, "m§\U000b331c3Ā}{.jpg", b"bytes", "image/jpeg")
        async with http_session.get(attachment.url) as resp:
            assert resp.status == 200
            assert await resp.read() == b"bytes"
        gone = fake.store_attachment(channel, "x.jpg", b"old", "image/jpeg", ttl=-1)
        async with http_session.get(gone.url) as resp:
            assert resp.status == 404, "an expired link still fails"
