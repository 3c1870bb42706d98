"""The creative loop end to end: Retry, Remix, Continue and Delete under a posted video, /jobs paging,
private delivery by DM. The real bot process against the fake Discord and a fake provider."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.media.video import last_frame
from tests.e2e.world import World, world
from tests.fakes.discord.state import MANAGE_GUILD, MANAGE_MESSAGES, MEMBER_PERMISSIONS, Interaction, Message
from tests.fakes.videos import tiny_mp4

pytestmark = pytest.mark.timeout(120)

# The server rules' cooldown (30 s by default) would refuse a quick second video.
ENV = {"COOLDOWN_SECONDS": "0"}
FAST = 0.3  # seconds a fake provider takes per video


def button(message: Message, action: str) -> str:
    for row in message.components:
        for component in row.get("components", []):
            if str(component.get("custom_id", "")).startswith(f"sora:{action}:"):
                return str(component["custom_id"])
    raise AssertionError(f"no {action} button on message {message.id}: {message.components}")


async def click(w: World, message: Message, action: str, user_id: int | None = None, **kw: Any) -> Interaction:
    ia = await w.discord.send_component(message.id, button(message, action), user_id=user_id or w.discord.user.id, **kw)
    await ia.wait_callback(timeout=3)
    return ia


async def reply(w: World, ia: Interaction) -> str:
    """The text the user saw in answer: a follow-up after a defer, or the immediate message."""

    def text() -> str | None:
        if ia.followups:
            return ia.followups[-1].content
        if ia.callback_type == 4 and ia.original is not None:
            return ia.original.content
        return None

    return await w.discord.wait_for(text, 15, what="a reply")


async def submit(w: World, opened: Interaction, values: dict[str, str], user_id: int | None = None) -> Interaction:
    assert opened.modal is not None, f"no modal opened (callback {opened.callback_type})"
    ia = await w.discord.send_modal_submit(
        opened.modal["custom_id"], values, modal=opened.modal, user_id=user_id or w.discord.user.id
    )
    await ia.wait_callback(timeout=3)
    return ia


async def first_video(w: World, prompt: str = "a paper boat", **options: Any) -> Message:
    await w.sora(prompt, duration=4, **options)
    (video,) = await w.wait_video()
    await settled(w, 1)
    return video


async def settled(w: World, count: int) -> None:
    """Until ``count`` jobs are finished in the database (the post appears just before that write)."""
    sql = "SELECT COUNT(*) FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')"
    await w.discord.wait_for(lambda: w.db_rows(sql)[0][0] >= count, 30, what=f"{count} finished jobs")


def jobs(w: World) -> list[tuple[Any, ...]]:
    return w.db_rows("SELECT id, state, kind, source_job_id, prompt, seconds, size FROM jobs ORDER BY id")


async def test_retry_makes_the_same_video_again_only_for_the_requester() -> None:
    async with world("relay", run_seconds=FAST, env=ENV) as w:
        video = await first_video(w)
        assert "Balance left" in str(video.embeds) and "36 credits" in str(video.embeds), video.embeds
        assert "4 credits charged" in str(video.embeds)
        done = await w.wait_status("Done")
        assert "36 credits" in str(done.embeds), "the final status shows the balance left"

        other = await click(w, video, "retry", user_id=w.discord.other_user.id)
        assert "Only the person who asked" in await reply(w, other)
        assert other.ephemeral

        mine = await click(w, video, "retry")
        assert "queued" in await reply(w, mine)
        await w.wait_video(2)
        await settled(w, 2)
        assert jobs(w)[1][1:] == ("succeeded", "retry", 1, "a paper boat", 4, "1280x720")
        assert w.submits() == 2
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == {"reserve": 8, "capture": 8}
        retried = w.videos()[1]
        assert "32 credits" in str(retried.embeds)


async def test_every_button_refuses_when_the_requester_cannot_afford_it() -> None:
    async with world("relay", run_seconds=FAST, env={**ENV, "DAILY_CREDITS": "6"}) as w:
        video = await first_video(w)
        for action in ("retry", "remix", "continue"):
            ia = await click(w, video, action)
            assert ia.callback_type != 9, f"{action}: no modal when it cannot be paid for"
            text = await reply(w, ia)
            assert "costs 4 credits but you have 2 left" in text, (action, text)
        assert len(jobs(w)) == 1 and w.submits() == 1


async def test_remix_uses_the_providers_native_remix_when_settings_are_unchanged() -> None:
    async with world("openai", run_seconds=FAST, env=ENV) as w:
        video = await first_video(w, "a red kite")
        opened = await click(w, video, "remix")
        assert opened.callback_type == 9
        assert opened.modal is not None and opened.modal["custom_id"].startswith("sora:modal:remix:")
        assert "a red kite" in str(opened.modal["components"]), "the prompt is pre-filled"
        done = await submit(w, opened, {"prompt": "a red kite at night", "duration": "4", "size": "1280x720"})
        assert "queued" in await reply(w, done)
        await w.wait_video(2)
        await settled(w, 2)
        source_video_id = w.db_rows("SELECT provider_job_id FROM jobs WHERE id = 1")[0][0]
        remixes = w.video_fake.requests_to(f"/v1/videos/{source_video_id}/remix", "POST")  # type: ignore[union-attr]
        assert len(remixes) == 1 and remixes[0].json()["prompt"] == "a red kite at night"
        assert len(w.video_fake.forms) == 1, "no second ordinary generation"  # type: ignore[union-attr]
        assert jobs(w)[1][1:5] == ("succeeded", "remix", 1, "a red kite at night")

        # A changed length cannot be a native remix: it runs as a new generation.
        opened = await click(w, w.videos()[0], "remix")
        await submit(w, opened, {"prompt": "a longer kite", "duration": "8", "size": "1280x720"})
        await w.wait_video(3)
        await settled(w, 3)
        form = w.video_fake.forms[-1]  # type: ignore[union-attr]
        assert form["prompt"].text == "a longer kite" and form["seconds"].text == "8"
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind"))["capture"] == 4 + 4 + 8


async def test_remix_refusals_not_the_requester_and_a_bad_size() -> None:
    async with world("relay", run_seconds=FAST, env=ENV) as w:
        video = await first_video(w)
        other = await click(w, video, "remix", user_id=w.discord.other_user.id)
        assert other.callback_type == 4 and "Only the person who asked" in await reply(w, other)
        opened = await click(w, video, "remix")
        # A modal submitted by someone else (custom ids are guessable) is refused too.
        stranger = await submit(
            w, opened, {"prompt": "mine now", "duration": "4", "size": "1280x720"}, user_id=w.discord.other_user.id
        )
        assert "Only the person who asked" in await reply(w, stranger)
        bad = await submit(w, opened, {"prompt": "tall", "duration": "4", "size": "1024x1792"})
        text = await reply(w, bad)
        assert "1024x1792" in text and "1280x720" in text, text
        await asyncio.sleep(0.3)
        assert len(jobs(w)) == 1


async def test_continue_sends_the_last_frame_fitted_to_the_size_and_links_the_source() -> None:
    async with world("relay", run_seconds=FAST, env=ENV, require_image_size=(1280, 720)) as w:
        video = await first_video(w, "a train leaves the station")
        opened = await click(w, video, "continue")
        assert opened.callback_type == 9 and opened.modal["custom_id"] == "sora:modal:continue:1"  # type: ignore[index]
        done = await submit(w, opened, {"prompt": "the train enters a tunnel", "duration": "4", "size": "1280x720"})
        assert "queued" in await reply(w, done)
        await w.wait_video(2)
        await settled(w, 2)
        assert jobs(w)[1][1:5] == ("succeeded", "continue", 1, "the train enters a tunnel")

        submit_body = w.video_fake.requests_to("/v2/videos/generations", "POST")[-1].json()  # type: ignore[union-attr]
        (url,) = submit_body["images"]
        assert w.video_fake.fetched_images == [url]  # type: ignore[union-attr]
        sent = next(a for a in w.discord.attachments.values() if a.url == url)
        with Image.open(io.BytesIO(sent.data)) as image:
            assert image.size == (1280, 720)
            got = image.convert("RGB").getpixel((640, 360))
        with tempfile.TemporaryDirectory() as tmp:
            clip = Path(tmp) / "served.mp4"
            clip.write_bytes(tiny_mp4())
            with Image.open(io.BytesIO(last_frame(clip))) as frame:
                expected = frame.convert("RGB").getpixel((64, 36))
                first = frame.convert("RGB").getpixel((0, 0))
        assert all(abs(a - b) <= 6 for a, b in zip(got, expected, strict=True)), (got, expected)
        assert expected != (0, 255, 128) and first == expected, "tiny_mp4's last frame is one solid colour"

        continued = w.videos()[1]
        assert "continues video #1 (<https://discord.com/channels/" in continued.content, continued.content
        assert str(video.id) in continued.content


async def test_continue_refuses_politely_when_the_source_video_is_gone() -> None:
    async with world("relay", run_seconds=FAST, env=ENV) as w:
        video = await first_video(w)
        opened = await click(w, video, "continue")
        for attachment in video.attachments:
            w.discord.expire_attachment(attachment.id)  # Discord's signed URL ran out
        done = await submit(w, opened, {"prompt": "and then", "duration": "4", "size": "1280x720"})
        assert "no longer available" in await reply(w, done)

        # Deleted with the Delete button: a modal still open elsewhere is refused as well.
        await reply(w, await click(w, video, "delete"))
        late = await submit(w, opened, {"prompt": "and then", "duration": "4", "size": "1280x720"})
        assert "no longer" in await reply(w, late)
        assert len(jobs(w)) == 1 and w.submits() == 1
        assert w.db_rows("SELECT COUNT(*) FROM ledger WHERE kind = 'reserve'") == [(1,)]


async def test_delete_removes_the_video_for_the_requester_or_a_moderator_only() -> None:
    async with world("relay", run_seconds=FAST, env=ENV) as w:
        video = await first_video(w)
        bob = w.discord.other_user.id
        refused = await click(w, video, "delete", user_id=bob, permissions=MEMBER_PERMISSIONS)
        assert "Only the person who asked" in await reply(w, refused)
        assert w.videos() == [video]

        moderator = await click(w, video, "delete", user_id=bob, permissions=MEMBER_PERMISSIONS | MANAGE_MESSAGES)
        assert "Deleted video #1" in await reply(w, moderator)
        assert w.videos() == [] and video in w.discord.deleted_messages
        (deleted_at,) = w.db_rows("SELECT result_deleted_at FROM jobs WHERE id = 1")[0]
        assert deleted_at is not None and deleted_at <= time.time()
        await w.wait_status("deleted")  # the status message no longer links to it


async def test_buttons_and_an_open_modal_still_work_after_a_restart() -> None:
    async with world("relay", run_seconds=FAST, env=ENV) as w:
        video = await first_video(w, "a snowy owl")
        opened = await click(w, video, "remix")
        await w.bot.restart()
        w.discord.expire_all_tokens()  # and long after the 15-minute interaction tokens died
        retry = await click(w, video, "retry")
        assert "queued" in await reply(w, retry)
        await w.wait_video(2)
        await settled(w, 2)
        remix = await submit(w, opened, {"prompt": "a snowy owl in flight", "duration": "4", "size": "1280x720"})
        assert "queued" in await reply(w, remix)
        await w.wait_video(3)
        await settled(w, 3)
        assert [row[2] for row in jobs(w)] == ["new", "retry", "remix"]


async def test_jobs_pages_with_buttons_and_the_server_view_is_for_managers() -> None:
    async with world("relay", run_seconds=FAST, env=ENV) as w:
        await first_video(w, "clip zero")
        alice = str(w.discord.user.id)
        now = time.time()
        with sqlite3.connect(w.bot.workdir / "data" / "bot.db") as db:
            db.executemany(
                "INSERT INTO jobs (state, provider, user_id, guild_id, prompt, seconds, size, model, created_at,"
                " updated_at) VALUES ('failed', 'relay', ?, ?, ?, 4, '1280x720', 'sora-2', ?, ?)",
                [(alice, str(w.discord.guild.id), f"old clip {i}", now, now) for i in range(1, 12)],
            )
        ia = await w.discord.send_interaction(command="jobs", options={}, user_id=w.discord.user.id)
        await ia.wait_callback(timeout=3)
        page1 = await w.discord.wait_for(lambda: ia.followups and ia.followups[-1], 10)
        assert "Page 1 of 2" in str(page1.embeds) and "old clip 11" in str(page1.embeds)
        assert "clip zero" not in str(page1.embeds)
        (row,) = page1.components
        previous, following = row["components"]
        assert previous.get("disabled") is True
        assert following["custom_id"] == f"sora:jobs:me:{alice}:2"

        nxt = await w.discord.send_component(page1.id, following["custom_id"], user_id=w.discord.user.id)
        assert await nxt.wait_callback(timeout=3) == 7, "the page is edited in place"
        assert "Page 2 of 2" in str(page1.embeds) and "clip zero" in str(page1.embeds)
        assert "video: <https://discord.com/channels/" in str(page1.embeds)

        denied = await w.discord.send_interaction(
            command="jobs", options={"scope": "server"}, user_id=w.discord.user.id
        )
        await denied.wait_callback(timeout=3)
        assert "Manage Server" in await reply(w, denied)
        admin = await w.discord.send_interaction(
            command="jobs",
            options={"scope": "server"},
            user_id=w.discord.other_user.id,
            permissions=MEMBER_PERMISSIONS | MANAGE_GUILD,
        )
        await admin.wait_callback(timeout=3)
        listing = await w.discord.wait_for(lambda: admin.followups and admin.followups[-1], 10)
        assert "This server's recent videos" in str(listing.embeds) and f"<@{alice}>" in str(listing.embeds)


async def test_private_results_go_by_dm_and_fall_back_to_the_channel_when_dms_are_closed() -> None:
    async with world("relay", run_seconds=FAST, env=ENV) as w:
        alice, bob = w.discord.user, w.discord.other_user
        ia = await w.sora("a secret garden", duration=4, private=True)
        assert "direct message" in await reply(w, ia)
        dm = w.discord.dm_channel(alice.id)
        video = await w.discord.wait_for(lambda: next(iter(w.discord.messages(dm.id)), None), 30, what="a DM")
        assert video.attachments and "a secret garden" in str(video.embeds)
        assert button(video, "retry") and button(video, "delete")
        status = await w.wait_status("Done")
        assert "a secret garden" not in str(status.embeds), "the channel never sees a private prompt"
        assert w.videos() == []

        w.discord.block_dms(bob.id)
        ia = await w.sora("another secret", duration=4, private=True, user_id=bob.id)
        await reply(w, ia)
        (fallback,) = await w.wait_video()
        assert fallback.content.startswith(f"<@{bob.id}>")
        assert "direct messages are closed" in str(fallback.embeds)
        assert "another secret" not in str(fallback.embeds)

        # Buttons under a DM'd video work there too; the new job is charged in the server it came from.
        retry = await click(w, video, "retry")
        assert "queued" in await reply(w, retry)
        await w.discord.wait_for(lambda: len(w.discord.messages(dm.id)) >= 2, 30, what="a second DM")
        assert w.db_rows("SELECT private, guild_id FROM jobs WHERE id = 3") == [(1, str(w.discord.guild.id))]

        deleted = await click(w, video, "delete")
        assert "Deleted" in await reply(w, deleted)
        assert video in w.discord.deleted_messages


async def test_retry_of_an_image_job_on_a_bytes_provider_sends_the_same_image_again() -> None:
    async with world("openai", run_seconds=FAST, env=ENV) as w:
        buf = io.BytesIO()
        Image.new("RGB", (640, 360), (20, 40, 220)).save(buf, "PNG")
        attachment = w.discord.upload_user_attachment(buf.getvalue(), "blue.png", "image/png", width=640, height=360)
        ia = await w.discord.send_interaction(
            command="sora",
            options={"prompt": "blue sky", "duration": 4, "image": attachment["id"]},
            attachments=[attachment],
        )
        await ia.wait_callback(timeout=3)
        (video,) = await w.wait_video()
        await settled(w, 1)
        mine = await click(w, video, "retry")
        assert "queued" in await reply(w, mine)
        await w.wait_video(2)
        first, second = w.video_fake.forms  # type: ignore[union-attr]
        assert second["input_reference"].data == first["input_reference"].data
