"""Issue 13 items 3-5 end to end: the operator's spending limits and allowed servers, Cancel that
never gives a billed video away, and checks that follow the job's server (the real bot process
against the fake Discord and a fake provider)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.e2e.test_creative_loop import button, click, reply, settled
from tests.e2e.test_credits_and_moderation import admin
from tests.e2e.world import World, world
from tests.fakes.discord.state import ATTACH_FILES, Message

pytestmark = pytest.mark.timeout(120)

ENV = {"COOLDOWN_SECONDS": "0"}


async def sora_in(w: World, guild_id: int | None, user_id: int, prompt: str, **options: object) -> str:
    """/sora (8 s) in ``guild_id`` (None: a direct message) and the text of the bot's answer."""
    ia = await w.discord.send_interaction(
        command="sora",
        options={"prompt": prompt, "duration": 8, **options},
        user_id=user_id,
        guild_id=guild_id,
        dm=guild_id is None,
    )
    await ia.wait_callback(timeout=3)
    return await w.followup_text(ia)


async def test_server_daily_cap_refuses_the_third_video_while_another_server_works() -> None:
    env = {**ENV, "SERVER_DAILY_CREDITS": "16", "MAX_ALLOWANCE": "50"}
    async with world("demo", env=env) as w:
        fake = w.discord
        other = fake.add_guild("Other server")
        await fake.join_guild(other)
        a = fake.guild.id
        assert "queued" in await sora_in(w, a, fake.user.id, "one")
        assert "queued" in await sora_in(w, a, fake.other_user.id, "two")
        refused = await sora_in(w, a, fake.owner.id, "three")
        assert "This server's video budget for today is used up" in refused, refused
        assert "resets at 00:00 UTC" in refused
        assert "queued" in await sora_in(w, other.id, fake.user.id, "elsewhere"), "another server still works"
        spent = dict(w.db_rows("SELECT guild_id, SUM(amount) FROM ledger WHERE kind = 'reserve' GROUP BY guild_id"))
        assert spent == {str(a): 16, str(other.id): 8}

        # Outside a server nothing is made, whatever the interaction claims.
        assert "server" in await sora_in(w, None, fake.user.id, "in a DM")
        assert len(w.db_rows("SELECT id FROM jobs")) == 3

        # MAX_ALLOWANCE bounds what a server's admins may hand out.
        ia = await admin(w, "allowance", credits=60)
        assert "at most 50" in str(ia.messages[-1].content if ia.messages else ia.callback_data)
        ia = await admin(w, "allowance", credits=50)
        assert "50" in str(ia.messages[-1].content if ia.messages else ia.callback_data)


async def test_the_bot_leaves_servers_outside_allowed_guild_ids() -> None:
    async with world("demo", env=ENV, fake_env=lambda fake: {"ALLOWED_GUILD_IDS": str(fake.guild.id)}) as w:
        fake = w.discord
        joined = fake.add_guild("Joined later")
        await fake.join_guild(joined)
        await fake.wait_for(lambda: joined.id in fake.left_guilds, 10, what="the bot to leave on join")
        at_start = fake.add_guild("There at start-up")  # not dispatched: seen in the next READY
        await w.bot.restart()
        await fake.wait_for(lambda: at_start.id in fake.left_guilds, 10, what="the bot to leave at start-up")
        assert fake.guild.id not in fake.left_guilds
        assert w.bot.log_text().count("not in ALLOWED_GUILD_IDS") >= 2


async def test_cancel_is_refused_once_a_relay_bills_and_moderators_act_only_in_their_own_server() -> None:
    async with world("relay", run_seconds=4.0, env=ENV) as w:
        fake = w.discord
        mallory = fake.add_user("mallory")  # a plain member here, owner of a server of her own
        hers = fake.add_guild("Mallory's server", owner=mallory)
        await fake.join_guild(hers)
        await w.sora("billed anyway", duration=4)
        status = await w.wait_status("Generating")
        custom_id = button(status, "cancel")

        # The real Cancel's custom id, on a message in her server, where she has Manage Messages.
        channel = hers.text_channels()[0]
        forged = Message(fake.snowflakes.next(), channel.id, hers.id, fake.bot_user, components=status.components)
        await fake.store_message(channel, forged)
        ia = await fake.send_component(forged.id, custom_id, user_id=mallory.id)
        await ia.wait_callback(timeout=3)
        assert "Only the person" in await w.followup_text(ia)

        ia = await fake.send_component(status.id, custom_id, user_id=fake.user.id)
        await ia.wait_callback(timeout=3)
        assert "it will be posted" in await w.followup_text(ia)
        await w.wait_video()
        await settled(w, 1)
        assert w.db_rows("SELECT state FROM jobs") == [("succeeded",)]
        assert dict(w.db_rows("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")) == {"reserve": 4, "capture": 4}

        # No Attach Files for the bot here: refused before anything is charged or sent.
        fake.forbid(fake.channel.id, deny=ATTACH_FILES)
        ia = await w.sora("nowhere to post", duration=4)
        assert "Attach Files" in await w.followup_text(ia)
        assert w.submits() == 1 and len(w.db_rows("SELECT id FROM jobs")) == 1


async def test_a_private_jobs_reference_image_stays_out_of_the_channel() -> None:
    async with world("relay", run_seconds=0.3, env=ENV) as w:
        fake, alice = w.discord, w.discord.user
        buf = io.BytesIO()
        Image.new("RGB", (640, 360), (200, 40, 20)).save(buf, "PNG")
        image = fake.upload_user_attachment(buf.getvalue(), "red.png", "image/png", width=640, height=360)
        ia = await fake.send_interaction(
            command="sora",
            options={"prompt": "a secret", "duration": 4, "image": image["id"], "private": True},
            attachments=[image],
        )
        await ia.wait_callback(timeout=3)
        dm = fake.dm_channel(alice.id)
        await fake.wait_for(
            lambda: any(m.attachments and m.attachments[0].filename.endswith(".mp4") for m in fake.messages(dm.id)),
            30,
            what="the private video",
        )
        in_channel = [a.filename for m in fake.messages(fake.channel.id) for a in m.attachments]
        assert in_channel == [], f"a private job's reference was posted in the channel: {in_channel}"
        (submit,) = [r.json() for r in w.video_fake.requests_to("/v2/videos/generations", "POST")]  # type: ignore[union-attr]
        assert f"/attachments/{dm.id}/" in submit["images"][0], "the provider fetches it from the requester's DM"


async def test_a_dm_retry_by_someone_who_left_the_server_is_refused() -> None:
    async with world("relay", run_seconds=0.3, env=ENV) as w:
        fake, alice = w.discord, w.discord.user
        dm = fake.dm_channel(alice.id)
        await w.sora("no image", duration=4, private=True)
        await fake.wait_for(lambda: [m for m in fake.messages(dm.id) if m.components], 30, what="the private video")
        await settled(w, 1)
        (video,) = [m for m in fake.messages(dm.id) if m.components]
        del fake.guild.members[alice.id]  # she left the server
        retry = await click(w, video, "retry")
        assert "no longer a member" in await reply(w, retry)
        assert len(w.db_rows("SELECT id FROM jobs")) == 1
