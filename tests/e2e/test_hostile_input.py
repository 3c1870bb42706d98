"""Hostile input through the fake Discord and the real bot: each gets a clear ephemeral answer, costs
nothing, crashes nothing, and the bot goes on serving the next person.

Product decision checked here: a CMYK JPEG is converted to RGB (not refused), as bot/media/images.py says.
"""

from __future__ import annotations

import asyncio
import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from PIL import Image

from tests.e2e.world import World, world

pytestmark = pytest.mark.timeout(120)

# A 1 MB image cap keeps the "too big" attachment small; another user proves the bot still serves.
ENV = {"MAX_IMAGE_MB": "1"}


def png(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def bomb_png() -> bytes:
    """A 1x1 PNG whose IHDR claims 40000x40000 (1.6 gigapixels), CRC fixed so decoders believe it."""
    data = bytearray(png((1, 1)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", 40000, 40000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def cmyk_jpeg(size: tuple[int, int] = (400, 300)) -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", size, (0, 200, 200, 0)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    prompt: str
    expected: str
    attachment: Callable[[], tuple[bytes, str, str | None]] | None = None
    downloads: bool | None = None
    """Whether the bot may fetch the attachment from the CDN (None: not checked)."""


CASES = {
    "whitespace prompt": Case(" \t \n  ", "prompt is empty"),
    "only control characters": Case("\x00\x07\u200b\u202e\x7f", "prompt is empty"),
    "prompt over the provider's limit": Case("a slow pan " * 300, "the limit is 2000"),
    "non-image attachment": Case(
        "animate this",
        "not an image",
        lambda: (b"just some notes\n" * 10, "notes.txt", "text/plain"),
        downloads=False,
    ),
    "bytes do not match the name and type": Case(
        "animate this",
        "not an image",
        lambda: (b"PK\x03\x04" + os.urandom(2000), "cat.png", "image/png"),
        downloads=True,
    ),
    "image over the byte cap": Case(
        "animate this",
        "the limit is 1 MB",
        lambda: (os.urandom(1_600_000), "huge.png", "image/png"),
        downloads=False,
    ),
    "decompression bomb": Case(
        "animate this", "too many pixels", lambda: (bomb_png(), "bomb.png", "image/png"), downloads=True
    ),
    "animated PNG": Case(
        "animate this", "Animated images cannot be used", lambda: (animated("PNG"), "anim.png", "image/png")
    ),
    "animated GIF": Case(
        "animate this", "GIF images are not supported", lambda: (animated("GIF"), "anim.gif", "image/gif")
    ),
}


def cdn_requests(w: World) -> int:
    return len([r for r in w.discord.requests if "/attachments/" in r.path])


async def still_serving(w: World) -> None:
    """Another member gets a video right after: the refusal broke nothing."""
    ia = await w.sora("a calm sea at dawn", duration=4, user_id=w.discord.other_user.id)
    assert "queued" in await w.followup_text(ia)
    await w.wait_video()


def assert_quiet(w: World) -> None:
    """Every message the bot posted (channel posts and interaction replies) restricts mentions: no
    @everyone/@here or roles, and at most the requester it answers among users."""
    for channel in w.discord.channels.values():
        for message in channel.messages.values():
            if message.author.id != w.discord.bot_user.id:
                continue
            mentions = message.allowed_mentions
            assert mentions is not None and mentions.get("parse") == [], (message.content, mentions)
            assert not mentions.get("roles"), mentions
            users = [str(u) for u in mentions.get("users", [])]
            # At most the member the message answers (its content starts by addressing them).
            assert len(users) <= 1 and all(message.content.startswith(f"<@{u}>") for u in users), message.content
    for ia in w.interactions:
        for message in ia.messages:
            assert message.allowed_mentions is None or message.allowed_mentions.get("parse") == [], message


@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_input_is_refused_politely_for_free(name: str) -> None:
    case = CASES[name]
    async with world("relay", env=ENV) as w:
        options: dict[str, object] = {"prompt": case.prompt, "duration": 4}
        attachments = []
        if case.attachment is not None:
            data, filename, content_type = case.attachment()
            attachment = w.discord.upload_user_attachment(data, filename, content_type)
            options["image"] = attachment["id"]
            attachments.append(attachment)
        ia = await w.discord.send_interaction(command="sora", options=options, attachments=attachments or None)
        w.interactions.append(ia)
        await ia.wait_callback(timeout=3)
        text = await w.followup_text(ia)
        assert case.expected in text, text
        assert ia.followups[-1].ephemeral, "refusals are private"
        if case.downloads is not None:
            assert (cdn_requests(w) > 0) is case.downloads, f"CDN requests: {cdn_requests(w)}"
        await asyncio.sleep(0.2)
        assert w.status_messages() == [] and w.submits() == 0
        assert w.db_rows("SELECT COUNT(*) FROM ledger") == [(0,)], "a refusal must cost nothing"
        assert w.db_rows("SELECT COUNT(*) FROM jobs") == [(0,)]
        await still_serving(w)
        assert "Traceback" not in w.bot.log_text()
        assert_quiet(w)


async def test_control_characters_are_cleaned_not_refused() -> None:
    async with world("relay", env=ENV) as w:
        ia = await w.sora("a cat\x00 on a\u202e boat\x07\u200b", duration=4)
        assert "queued" in await w.followup_text(ia)
        await w.wait_video()
        (submit,) = w.video_fake.requests_to("/v2/videos/generations", "POST")  # type: ignore[union-attr]
        assert submit.json()["prompt"] == "a cat on a boat"


async def test_mentions_in_the_prompt_never_ping() -> None:
    async with world("relay", env=ENV) as w:
        fake = w.discord
        prompt = f"@everyone @here <@&{fake.admin_role.id}> <@{fake.other_user.id}> dance"
        ia = await w.sora(prompt, duration=4)
        assert "queued" in await w.followup_text(ia)
        (video,) = await w.wait_video()
        await w.wait_status("Done")
        assert [str(u) for u in video.allowed_mentions["users"]] == [str(fake.user.id)]  # type: ignore[index]
        assert_quiet(w)
        # The same rule on the wire: every message the bot created, and every edit carrying text that
        # could mention someone (status edits carry only embeds, which never ping).
        checked = 0
        for request in fake.requests:
            body = request.json if isinstance(request.json, dict) else None
            creates = request.method == "POST" and request.path.endswith("/messages")
            if body and (creates or body.get("content")):
                assert body.get("allowed_mentions", {}).get("parse") == [], (request.path, body)
                checked += 1
        assert checked >= 2, "expected at least the status message and the video post"


async def test_cmyk_jpeg_is_accepted_and_the_provider_gets_rgb_of_the_exact_size() -> None:
    """A product decision: print-style CMYK JPEGs are converted, not refused."""
    async with world("openai", env=ENV) as w:
        attachment = w.discord.upload_user_attachment(cmyk_jpeg(), "print.jpg", "image/jpeg", width=400, height=300)
        ia = await w.discord.send_interaction(
            command="sora",
            options={"prompt": "make it move", "duration": 4, "image": attachment["id"]},
            attachments=[attachment],
        )
        await ia.wait_callback(timeout=3)
        assert "queued" in await w.followup_text(ia)
        await w.wait_video()
        (form,) = w.video_fake.forms  # type: ignore[union-attr]
        with Image.open(io.BytesIO(form["input_reference"].data)) as sent:
            assert sent.mode == "RGB" and sent.size == (1280, 720)
            red, green, blue = sent.getpixel((640, 360))  # type: ignore[misc]
            assert red > 150 and green < 120 and blue < 120, (red, green, blue)  # CMYK (0, 200, 200, 0) is red


async def test_an_attachment_the_cdn_no_longer_serves_is_refused_politely_for_free() -> None:
    async with world("relay", env=ENV) as w:
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "PNG")
        attachment = w.discord.upload_user_attachment(buf.getvalue(), "gone.png", "image/png", width=64, height=64)
        w.discord.expire_attachment(attachment["id"])  # the signed URL ran out, or the CDN lost it
        ia = await w.discord.send_interaction(
            command="sora",
            options={"prompt": "a cat", "duration": 4, "image": attachment["id"]},
            attachments=[attachment],
        )
        await ia.wait_callback(timeout=3)
        text = await w.followup_text(ia)
        assert "could not download your image from Discord" in text and "Nothing was charged" in text, text
        assert w.db_rows("SELECT COUNT(*) FROM ledger") == [(0,)]
        await still_serving(w)
