"""Credits and server rules end to end: the real bot, the fake Discord, a fake relay.

Admin commands are sent as Discord sends them: ``/sora-admin <group> <command>`` as nested options
(type 2 group, type 1 subcommand) with users, channels and roles in ``resolved``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.world import World, world
from tests.fakes.discord.state import ADMINISTRATOR, MANAGE_GUILD, MEMBER_PERMISSIONS, Channel, Interaction, Role, User

pytestmark = pytest.mark.timeout(120)

NO_COOLDOWN = {"COOLDOWN_SECONDS": "0"}


def _option(w: World, name: str, value: Any, resolved: dict[str, Any]) -> dict[str, Any]:
    guild = w.discord.guild
    if isinstance(value, User):
        resolved.setdefault("users", {})[str(value.id)] = value.payload()
        member = {k: v for k, v in guild.members[value.id].payload().items() if k != "user"}
        resolved.setdefault("members", {})[str(value.id)] = member
        return {"name": name, "type": 6, "value": str(value.id)}
    if isinstance(value, Channel):
        perms = str(guild.channel_permissions(w.discord.user.id, value))
        resolved.setdefault("channels", {})[str(value.id)] = {**value.payload(), "permissions": perms}
        return {"name": name, "type": 7, "value": str(value.id)}
    if isinstance(value, Role):
        resolved.setdefault("roles", {})[str(value.id)] = value.payload()
        return {"name": name, "type": 8, "value": str(value.id)}
    kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
    return {"name": name, "type": kind, "value": value}


async def admin(
    w: World,
    *path: str,
    user_id: int | None = None,
    permissions: int | None = None,
    as_api_client: bool = False,
    **options: Any,
) -> Interaction:
    """``/sora-admin <path> option:value…`` as the owner by default.

    Like Discord's client, it refuses to send a command the member cannot see (PermissionError), unless
    ``as_api_client``: a raw API request, which Discord does not stop, so the bot must.
    """
    fake = w.discord
    uid = user_id or fake.owner.id
    cmd = fake.find_command("sora-admin", fake.guild.id)
    assert cmd is not None, "the bot did not sync /sora-admin"
    if not as_api_client:
        needed = int(cmd["default_member_permissions"])
        have = permissions if permissions is not None else fake.guild.base_permissions(uid)
        if have & needed != needed and not have & ADMINISTRATOR:
            raise PermissionError(f"Discord would not show /sora-admin to {uid}")
    resolved: dict[str, Any] = {}
    leaf = [_option(w, k, v, resolved) for k, v in options.items()]
    nested: list[dict[str, Any]] = [{"name": path[-1], "type": 1, "options": leaf}]
    if len(path) == 2:
        nested = [{"name": path[0], "type": 2, "options": nested}]
    data: dict[str, Any] = {"id": cmd["id"], "name": "sora-admin", "type": 1, "options": nested}
    if resolved:
        data["resolved"] = resolved
    if cmd.get("guild_id"):
        data["guild_id"] = cmd["guild_id"]
    ia = await fake._dispatch_interaction(2, data, uid, fake.guild.id, None, permissions, "en-US", None)
    await ia.wait_callback(timeout=3)
    return ia


async def reply(w: World, ia: Interaction, timeout: float = 10.0) -> str:
    """Everything the user saw in answer (content and embed text), once the bot has answered."""

    def seen() -> str | None:
        texts = [m.content + " " + str(m.embeds) for m in ia.messages if m.content or m.embeds]
        return "\n".join(texts) if texts else None

    return await w.discord.wait_for(seen, timeout, what="an answer")


def ledger(w: World) -> list[tuple[Any, ...]]:
    return w.db_rows("SELECT user_id, kind, pool, amount, actor_id, note FROM ledger ORDER BY id")


async def settled(w: World, count: int) -> None:
    """Wait until ``count`` jobs were captured or refunded (a video is posted just before its capture)."""
    sql = "SELECT COUNT(*) FROM ledger WHERE kind IN ('capture', 'refund')"
    await w.discord.wait_for(lambda: w.db_rows(sql)[0][0] >= count, 10, what=f"{count} settled jobs")


def assert_quiet(w: World) -> None:
    """Every message the bot sent anywhere restricts mentions: no @everyone/roles, at most its requester."""
    for channel in w.discord.channels.values():
        for message in channel.messages.values():
            if message.author.id != w.discord.bot_user.id:
                continue
            mentions = message.allowed_mentions
            assert mentions is not None and mentions.get("parse") == [], (message.content, mentions)
            assert len(mentions.get("users", [])) <= 1, mentions
            assert not mentions.get("roles"), mentions


async def test_quota_exhaustion_refuses_before_the_provider_while_others_still_can() -> None:
    async with world("relay", env={"DAILY_CREDITS": "4", **NO_COOLDOWN}) as w:
        first = await w.sora("a lighthouse", duration=4)
        assert "queued" in await w.followup_text(first)
        await w.wait_video()
        broke = await w.sora("another lighthouse", duration=4)
        text = await w.followup_text(broke)
        assert "costs 4 credits" in text and "you have 0 left" in text and "00:00 UTC" in text, text
        assert broke.followups[-1].ephemeral
        bob = await w.sora("a harbour", duration=4, user_id=w.discord.other_user.id)
        assert "queued" in await w.followup_text(bob)
        await w.wait_video(2)
        await settled(w, 2)
        assert w.submits() == 2, "the refused request must never reach the provider"
        alice, bob_id = str(w.discord.user.id), str(w.discord.other_user.id)
        assert [(r[0], r[1], r[3]) for r in ledger(w)] == [
            (alice, "reserve", 4),
            (alice, "capture", 4),
            (bob_id, "reserve", 4),
            (bob_id, "capture", 4),
        ]


async def test_refund_after_provider_moderation_lets_the_user_generate_again() -> None:
    knobs = {"fail_with": "output video flagged by moderation", "fail_at": 0.5}
    async with world("relay", env={"DAILY_CREDITS": "4", **NO_COOLDOWN}, **knobs) as w:
        await w.sora("something the provider dislikes", duration=4)
        failed = await w.wait_status("Failed")
        assert "safety system rejected" in str(failed.embeds) and "refunded" in str(failed.embeds)
        w.video_fake.fail_with = None  # type: ignore[union-attr] - only the first job fails
        again = await w.sora("something nicer", duration=4)
        assert "queued" in await w.followup_text(again)
        await w.wait_video()
        await settled(w, 2)
        kinds = [(r[1], r[3]) for r in ledger(w)]
        assert kinds == [("reserve", 4), ("refund", 4), ("reserve", 4), ("capture", 4)]


async def test_blocked_term_is_refused_without_charge_or_echo() -> None:
    async with world("relay", env=NO_COOLDOWN) as w:
        added = await admin(w, "blocked", "add", term="Zorblax")
        assert "Blocked" in await reply(w, added)
        substring = await admin(w, "blocked", "add", term="gore", mode="substring")
        assert "anywhere" in await reply(w, substring)
        ia = await w.sora("a ZORBLAX dancing", duration=4)
        text = await w.followup_text(ia)
        assert "blocked" in text and "zorblax" not in text.lower() and "Nothing was charged" in text, text
        inside = await w.sora("a gorealistic scene", duration=4)
        assert "blocked" in await w.followup_text(inside)
        await asyncio.sleep(0.3)
        assert w.status_messages() == [] and w.submits() == 0 and ledger(w) == []
        fine = await w.sora("zorblaxes are not a word match", duration=4)
        assert "queued" in await w.followup_text(fine)
        listed = await admin(w, "blocked", "list")
        assert "zorblax" in await reply(w, listed)
        removed = await admin(w, "blocked", "remove", term="ZORBLAX")
        assert "Unblocked" in await reply(w, removed)
        now_ok = await w.sora("a zorblax dancing", duration=4, user_id=w.discord.other_user.id)
        assert "queued" in await w.followup_text(now_ok)
        await w.wait_video(2)
        assert_quiet(w)


async def test_admin_commands_need_manage_server_even_through_the_api() -> None:
    async with world("relay") as w:
        (synced,) = [c for c in w.discord.synced_commands[w.discord.guild.id] if c["name"] == "sora-admin"]
        assert int(synced["default_member_permissions"]) == MANAGE_GUILD
        assert synced.get("dm_permission") is False or synced.get("contexts") == [0]
        alice = w.discord.user
        with pytest.raises(PermissionError):  # Discord hides the command from a plain member...
            await admin(w, "credits", "grant", user_id=alice.id, user=alice, amount=100)
        # ...but a raw API request still arrives: the bot itself must refuse it.
        attempts = [
            await admin(w, "credits", "grant", user_id=alice.id, as_api_client=True, user=alice, amount=100),
            await admin(w, "credits", "set", user_id=alice.id, as_api_client=True, user=alice, amount=100),
            await admin(w, "credits", "reset-day", user_id=alice.id, as_api_client=True, user=alice),
            await admin(w, "cooldown", user_id=alice.id, as_api_client=True, seconds=0),
            await admin(w, "allowance", user_id=alice.id, permissions=MEMBER_PERMISSIONS, as_api_client=True),
        ]
        for ia in attempts:
            text = await reply(w, ia)
            assert "Manage Server" in text, text
            assert ia.ephemeral
        assert ledger(w) == [] and w.db_rows("SELECT COUNT(*) FROM guild_settings") == [(0,)]

        # A moderator holding only Manage Server may; so may the owner.
        moderator = w.discord.add_user("mod")
        mod_ok = await admin(
            w,
            "credits",
            "grant",
            user_id=moderator.id,
            permissions=MEMBER_PERMISSIONS | MANAGE_GUILD,
            user=alice,
            amount=5,
        )
        assert "Granted 5" in await reply(w, mod_ok)
        owner_ok = await admin(w, "cooldown", seconds=0)
        assert "0 s" in await reply(w, owner_ok)
        assert ledger(w) == [(str(alice.id), "grant", "extra", 5, str(moderator.id), "grant")]
        assert "Traceback" not in w.bot.log_text()


async def test_credits_shows_balance_and_recent_entries() -> None:
    async with world("relay", env={"DAILY_CREDITS": "10", **NO_COOLDOWN}) as w:
        await w.sora("a kite", duration=4)
        await w.wait_video()
        await settled(w, 1)
        granted = await admin(w, "credits", "grant", user=w.discord.user, amount=3, note="contest winner")
        await reply(w, granted)
        ia = await w.discord.send_interaction(command="credits", options={})
        await ia.wait_callback(timeout=3)
        assert ia.ephemeral
        text = await reply(w, ia)
        assert "**9** credits available" in text, text  # 10 - 4 + 3
        assert "6 of 10 left" in text and "3 (does not expire)" in text and "00:00 UTC" in text
        assert "4 charged for video #1" in text and "reserved" not in text
        assert "+3 extra from" in text and "contest winner" in text
        assert_quiet(w)


async def test_grant_set_reset_and_show_are_logged_with_the_admin() -> None:
    async with world("relay", env={"DAILY_CREDITS": "4", **NO_COOLDOWN}) as w:
        alice, owner = w.discord.user, str(w.discord.owner.id)
        await w.sora("first", duration=4)
        await w.wait_video()
        broke = await w.sora("second", duration=4)
        assert "you have 0 left" in await w.followup_text(broke)

        assert "Granted 4" in await reply(w, await admin(w, "credits", "grant", user=alice, amount=4))
        paid = await w.sora("paid from extra", duration=4)
        assert "queued" in await w.followup_text(paid)
        await w.wait_video(2)
        await settled(w, 2)

        set_to = await admin(w, "credits", "set", user=alice, amount=10, note="moderator bonus")
        assert "10 extra credits (+10)" in await reply(w, set_to)
        reset = await admin(w, "credits", "reset-day", user=alice)
        assert "4 credits given back" in await reply(w, reset)
        shown = await reply(w, await admin(w, "credits", "show", user=alice))
        assert "**14** credits available" in shown and "4 of 4 left" in shown, shown

        admin_rows = [r for r in ledger(w) if r[1] == "grant"]
        assert admin_rows == [
            (str(alice.id), "grant", "extra", 4, owner, "grant"),
            (str(alice.id), "grant", "extra", 10, owner, "moderator bonus"),
            (str(alice.id), "grant", "daily", 4, owner, "reset day"),
        ]
        allowance = await admin(w, "allowance", credits=0)
        assert "0 credits" in await reply(w, allowance)
        # Allowance 0: only the extra balance is left to pay with.
        shown = await reply(w, await admin(w, "credits", "show", user=alice))
        assert "**10** credits available" in shown, shown
        assert_quiet(w)


async def test_server_rules_channels_role_pro_limits_and_cooldown() -> None:
    async with world("relay", run_seconds=4.0) as w:
        fake = w.discord
        alice, bob = fake.user, fake.other_user
        await reply(w, await admin(w, "channels", "add", channel=fake.videos_channel))
        wrong = await w.sora("in general", duration=4)
        assert "can't be made in this channel" in await w.followup_text(wrong)
        listed = await reply(w, await admin(w, "channels", "list"))
        assert f"<#{fake.videos_channel.id}>" in listed

        # A role the bot already knows (roles made later reach the bot through gateway events the fake
        # does not send).
        role = fake.admin_role
        await reply(w, await admin(w, "role", role=role))
        no_role = await fake.send_interaction(
            command="sora", options={"prompt": "x", "duration": 4}, channel_id=fake.videos_channel.id
        )
        assert f"<@&{role.id}>" in await w.followup_text(no_role)
        fake.guild.members[alice.id].role_ids.append(role.id)
        fake.guild.members[bob.id].role_ids.append(role.id)

        await reply(w, await admin(w, "pro", allowed=False))
        pro = await fake.send_interaction(
            command="sora",
            options={"prompt": "x", "duration": 4, "model": "sora-2-pro"},
            channel_id=fake.videos_channel.id,
        )
        assert "sora-2-pro is switched off" in await w.followup_text(pro)

        await reply(w, await admin(w, "max-jobs", count=1))
        await reply(w, await admin(w, "cooldown", seconds=0))
        ok = await fake.send_interaction(
            command="sora", options={"prompt": "first", "duration": 4}, channel_id=fake.videos_channel.id
        )
        assert "queued" in await w.followup_text(ok)
        busy = await fake.send_interaction(
            command="sora", options={"prompt": "second", "duration": 4}, channel_id=fake.videos_channel.id
        )
        assert "1 unfinished video;" in await w.followup_text(busy)

        await reply(w, await admin(w, "cooldown", seconds=600))
        first_bob = await fake.send_interaction(
            command="sora", options={"prompt": "b1", "duration": 4}, channel_id=fake.videos_channel.id, user_id=bob.id
        )
        assert "queued" in await w.followup_text(first_bob)
        await reply(w, await admin(w, "max-jobs", count=5))
        cooling = await fake.send_interaction(
            command="sora", options={"prompt": "b2", "duration": 4}, channel_id=fake.videos_channel.id, user_id=bob.id
        )
        assert "Please wait" in await w.followup_text(cooling)

        settings = await reply(w, await admin(w, "settings"))
        for expected in (f"<@&{role.id}>", "600 s", "'value': '5'", "off", f"<#{fake.videos_channel.id}>"):
            assert expected in settings, (expected, settings)
        assert w.db_rows("SELECT COUNT(*) FROM jobs") == [(2,)]
        await fake.wait_for(lambda: w.submits() == 2, 10, what="the two admitted jobs at the provider")
        assert_quiet(w)


async def test_audit_channel_records_who_made_what_and_never_blocks_delivery() -> None:
    async with world("relay", env=NO_COOLDOWN) as w:
        fake = w.discord
        audit = fake.videos_channel  # a channel the bot knows from its guild cache
        await reply(w, await admin(w, "audit-channel", channel=audit))
        await w.sora("a fox @everyone <@&1> jumps", duration=4)
        (video,) = await w.wait_video()
        record = await fake.wait_for(lambda: next(iter(audit.messages.values()), None), 10, what="an audit post")
        text = str(record.embeds)
        assert "a fox @everyone" in text and f"<@{fake.user.id}>" in text and "4 s" in text
        assert f"/{fake.channel.id}/{video.id}" in text, "the audit post links the result"
        mentions = record.allowed_mentions
        assert mentions is not None and mentions.get("parse") == [], mentions
        assert not mentions.get("users") and not mentions.get("roles"), "the audit log never pings anyone"

        fake.forbid(audit.id)  # the bot lost access to the audit channel: videos must still arrive
        await w.sora("a second fox", duration=4, user_id=fake.other_user.id)
        await w.wait_video(2)
        await settled(w, 2)
        await fake.wait_for(lambda: "could not post to the audit channel" in w.bot.log_text(), 5, what="the log")
        assert len(audit.messages) == 1
        assert w.db_rows("SELECT state FROM jobs ORDER BY id") == [("succeeded",), ("succeeded",)]
        assert_quiet(w)
