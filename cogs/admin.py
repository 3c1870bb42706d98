"""/sora-admin: a server's credits and moderation settings (bot/moderation/policy.py explains them).

Discord hides the group from members without Manage Server (``default_permissions``), but it does
not enforce that for requests made through the API, so every command checks the permission again
on our side (:meth:`AdminCog.interaction_check`, which discord.py runs before each of the group's commands).
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.errors import BotError
from bot.moderation.policy import Limits, MatchMode, clean_term
from cogs.credits import describe_balance

log = logging.getLogger(__name__)

MAX_CREDITS = 1_000_000
MODE_CHOICES = [
    app_commands.Choice(name="whole word or phrase", value=MatchMode.WORD.value),
    app_commands.Choice(name="anywhere, even inside words", value=MatchMode.SUBSTRING.value),
]


class NotServerManager(app_commands.CheckFailure, BotError):
    """Both a check failure (discord.py's flow) and a BotError (the bot's polite reply)."""

    def __init__(self, detail: str) -> None:
        BotError.__init__(
            self, detail, user_message="Only members with the Manage Server permission can use /sora-admin."
        )


def _quiet() -> discord.AllowedMentions:
    return discord.AllowedMentions.none()


async def _reply(interaction: discord.Interaction[SoraBot], text: str) -> None:
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=_quiet())


def _default_note(value: object, default: object, unit: str = "") -> str:
    return f"{value}{unit}" if value is not None else f"{default}{unit} (default)"


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(
    commands.GroupCog, group_name="sora-admin", group_description="Server settings for /sora (needs Manage Server)"
):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[SoraBot]) -> bool:  # type: ignore[override]
        perms = interaction.permissions  # what Discord computed for this member in this channel
        if interaction.guild_id is None or not (perms.manage_guild or perms.administrator):
            raise NotServerManager(f"user {interaction.user.id} lacks Manage Server")
        return True

    def _ids(self, interaction: discord.Interaction[SoraBot]) -> tuple[str, str]:
        return str(interaction.guild_id), str(interaction.user.id)

    def _audit(self, interaction: discord.Interaction[SoraBot], what: str, *args: object) -> None:
        log.info("admin %s in guild %s: " + what, interaction.user.id, interaction.guild_id, *args)  # noqa: G003

    # --- credits ------------------------------------------------------------------------------

    credits = app_commands.Group(name="credits", description="A member's credits")

    @credits.command(name="grant", description="Give a member extra credits (they do not expire)")
    @app_commands.describe(user="Who gets them", amount="How many", note="Why (shown in their /credits)")
    async def credits_grant(
        self,
        interaction: discord.Interaction[SoraBot],
        user: discord.User,
        amount: app_commands.Range[int, 1, MAX_CREDITS],
        note: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        guild_id, actor = self._ids(interaction)
        repo = self.bot.require_pipeline().repo
        await repo.grant(guild_id, str(user.id), amount, actor_id=actor, note=note or "grant")
        self._audit(interaction, "granted %s extra credits to %s", amount, user.id)
        await _reply(interaction, f"Granted {amount} extra credits to <@{user.id}>.")

    @credits.command(name="set", description="Set a member's extra credits to an exact amount")
    @app_commands.describe(user="Whose", amount="Their new extra balance", note="Why")
    async def credits_set(
        self,
        interaction: discord.Interaction[SoraBot],
        user: discord.User,
        amount: app_commands.Range[int, 0, MAX_CREDITS],
        note: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        guild_id, actor = self._ids(interaction)
        repo = self.bot.require_pipeline().repo
        change = await repo.set_extra(guild_id, str(user.id), amount, actor_id=actor, note=note or "set extra")
        self._audit(interaction, "set extra credits of %s to %s (%+d)", user.id, amount, change)
        await _reply(interaction, f"<@{user.id}> now has {amount} extra credits ({change:+d}).")

    @credits.command(name="reset-day", description="Give a member back the credits they spent today")
    @app_commands.describe(user="Whose day to reset", note="Why")
    async def credits_reset_day(
        self,
        interaction: discord.Interaction[SoraBot],
        user: discord.User,
        note: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        guild_id, actor = self._ids(interaction)
        repo = self.bot.require_pipeline().repo
        restored = await repo.reset_day(guild_id, str(user.id), actor_id=actor, note=note or "reset day")
        self._audit(interaction, "reset the day of %s (+%s)", user.id, restored)
        await _reply(interaction, f"Reset today's credits of <@{user.id}>: {restored} credits given back.")

    @credits.command(name="show", description="A member's balance and recent credit history")
    @app_commands.describe(user="Whose")
    async def credits_show(self, interaction: discord.Interaction[SoraBot], user: discord.User) -> None:
        guild_id, _ = self._ids(interaction)
        embed = await describe_balance(self.bot, guild_id, str(user.id), f"Credits of {user.id}")
        embed.description = f"<@{user.id}>: {embed.description}"
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=_quiet())

    @app_commands.command(name="allowance", description="Daily credits per member here (leave empty: default)")
    @app_commands.describe(credits="Credits per member per UTC day; empty = the bot's default")
    async def allowance(
        self, interaction: discord.Interaction[SoraBot], credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None
    ) -> None:
        guild_id, actor = self._ids(interaction)
        self.bot.require_pipeline().service.caps.check_allowance(credits)  # MAX_ALLOWANCE: the operator's bound
        await self.bot.require_guild_settings().update(guild_id, actor_id=actor, daily_allowance=credits)
        self._audit(interaction, "set the daily allowance to %s", credits)
        default = self.bot.policy_defaults.daily_allowance
        await _reply(interaction, f"Daily allowance: {_default_note(credits, default, ' credits')} per member.")

    # --- moderation ---------------------------------------------------------------------------

    channels = app_commands.Group(name="channels", description="Where /sora may be used (none listed: everywhere)")

    @channels.command(name="add", description="Allow /sora in a channel (and its threads)")
    async def channels_add(self, interaction: discord.Interaction[SoraBot], channel: discord.TextChannel) -> None:
        guild_id, actor = self._ids(interaction)
        added = await self.bot.require_guild_settings().add_channel(guild_id, str(channel.id), actor_id=actor)
        self._audit(interaction, "allowed channel %s", channel.id)
        text = f"/sora is now allowed in <#{channel.id}>." if added else f"<#{channel.id}> was already allowed."
        await _reply(interaction, text + " It works only in the listed channels now.")

    @channels.command(name="remove", description="Stop allowing /sora in a channel")
    async def channels_remove(self, interaction: discord.Interaction[SoraBot], channel: discord.TextChannel) -> None:
        guild_id, _ = self._ids(interaction)
        store = self.bot.require_guild_settings()
        removed = await store.remove_channel(guild_id, str(channel.id))
        self._audit(interaction, "removed channel %s", channel.id)
        left = (await store.get(guild_id)).allowed_channel_ids
        text = f"Removed <#{channel.id}>." if removed else f"<#{channel.id}> was not on the list."
        await _reply(interaction, text + ("" if left else " No channels are listed: /sora works everywhere."))

    @channels.command(name="list", description="Channels where /sora is allowed")
    async def channels_list(self, interaction: discord.Interaction[SoraBot]) -> None:
        settings = await self.bot.require_guild_settings().get(self._ids(interaction)[0])
        await _reply(interaction, _channels_text(settings.allowed_channel_ids))

    @app_commands.command(name="role", description="Require a role to use /sora (leave empty: no role needed)")
    async def role(self, interaction: discord.Interaction[SoraBot], role: discord.Role | None = None) -> None:
        guild_id, actor = self._ids(interaction)
        role_id = str(role.id) if role is not None else None
        await self.bot.require_guild_settings().update(guild_id, actor_id=actor, required_role_id=role_id)
        self._audit(interaction, "set the required role to %s", role_id)
        await _reply(interaction, f"/sora now needs <@&{role_id}>." if role_id else "/sora no longer needs a role.")

    blocked = app_commands.Group(name="blocked", description="Terms refused in prompts")

    @blocked.command(name="add", description="Refuse prompts containing a term (case-insensitive)")
    @app_commands.describe(term="A word or phrase", mode="Whole word (default) or anywhere, even inside words")
    @app_commands.choices(mode=MODE_CHOICES)
    async def blocked_add(
        self,
        interaction: discord.Interaction[SoraBot],
        term: app_commands.Range[str, 1, 100],
        mode: str = MatchMode.WORD.value,
    ) -> None:
        guild_id, actor = self._ids(interaction)
        value = clean_term(term)
        changed = await self.bot.require_guild_settings().add_blocked_term(
            guild_id, value, MatchMode(mode), actor_id=actor
        )
        self._audit(interaction, "blocked a term (%s)", mode)
        how = "as a whole word" if mode == MatchMode.WORD.value else "anywhere"
        text = f"Blocked `{_code(value)}` ({how})." if changed else f"`{_code(value)}` was already blocked that way."
        await _reply(interaction, text)

    @blocked.command(name="remove", description="Allow a blocked term again")
    async def blocked_remove(
        self, interaction: discord.Interaction[SoraBot], term: app_commands.Range[str, 1, 100]
    ) -> None:
        guild_id, _ = self._ids(interaction)
        value = clean_term(term)
        removed = await self.bot.require_guild_settings().remove_blocked_term(guild_id, value)
        self._audit(interaction, "unblocked a term")
        await _reply(interaction, f"Unblocked `{_code(value)}`." if removed else f"`{_code(value)}` was not blocked.")

    @blocked.command(name="list", description="The blocked terms")
    async def blocked_list(self, interaction: discord.Interaction[SoraBot]) -> None:
        settings = await self.bot.require_guild_settings().get(self._ids(interaction)[0])
        if not settings.blocked_terms:
            await _reply(interaction, "No blocked terms.")
            return
        lines = [f"`{_code(t.term)}` ({t.mode})" for t in settings.blocked_terms]
        await _reply(interaction, _fit(f"{len(lines)} blocked terms:\n" + "\n".join(lines)))

    @app_commands.command(name="cooldown", description="Seconds a member waits between videos (empty: default)")
    async def cooldown(
        self, interaction: discord.Interaction[SoraBot], seconds: app_commands.Range[int, 0, 86400] | None = None
    ) -> None:
        guild_id, actor = self._ids(interaction)
        await self.bot.require_guild_settings().update(guild_id, actor_id=actor, cooldown_seconds=seconds)
        self._audit(interaction, "set the cooldown to %s", seconds)
        default = self.bot.policy_defaults.cooldown_seconds
        await _reply(interaction, f"Cooldown: {_default_note(seconds, default, ' s')} between a member's videos.")

    @app_commands.command(name="max-jobs", description="Unfinished videos a member may have at once (empty: default)")
    async def max_jobs(
        self, interaction: discord.Interaction[SoraBot], count: app_commands.Range[int, 1, 50] | None = None
    ) -> None:
        guild_id, actor = self._ids(interaction)
        await self.bot.require_guild_settings().update(guild_id, actor_id=actor, max_jobs_per_user=count)
        self._audit(interaction, "set max jobs per user to %s", count)
        default = self.bot.policy_defaults.max_jobs_per_user
        await _reply(interaction, f"Each member may have {_default_note(count, default)} unfinished videos at once.")

    @app_commands.command(name="pro", description="Allow or forbid sora-2-pro here (empty: default)")
    async def pro(self, interaction: discord.Interaction[SoraBot], allowed: bool | None = None) -> None:
        guild_id, actor = self._ids(interaction)
        await self.bot.require_guild_settings().update(guild_id, actor_id=actor, pro_allowed=allowed)
        self._audit(interaction, "set pro allowed to %s", allowed)
        effective = self.bot.policy_defaults.pro_allowed if allowed is None else allowed
        await _reply(interaction, f"sora-2-pro is now {'allowed' if effective else 'switched off'} on this server.")

    @app_commands.command(name="audit-channel", description="Where to record who made which video (empty: off)")
    async def audit_channel(
        self, interaction: discord.Interaction[SoraBot], channel: discord.TextChannel | None = None
    ) -> None:
        guild_id, actor = self._ids(interaction)
        channel_id = str(channel.id) if channel is not None else None
        await self.bot.require_guild_settings().update(guild_id, actor_id=actor, audit_channel_id=channel_id)
        self._audit(interaction, "set the audit channel to %s", channel_id)
        text = f"Finished videos are now recorded in <#{channel_id}>." if channel_id else "The audit log is off."
        await _reply(interaction, text)

    @app_commands.command(name="settings", description="Show every /sora setting of this server")
    async def settings(self, interaction: discord.Interaction[SoraBot]) -> None:
        settings = await self.bot.require_guild_settings().get(self._ids(interaction)[0])
        defaults = self.bot.policy_defaults
        limits = Limits.of(settings, defaults)
        embed = discord.Embed(title="/sora settings on this server")
        embed.add_field(name="Channels", value=_channels_text(settings.allowed_channel_ids), inline=False)
        role = f"<@&{settings.required_role_id}>" if settings.required_role_id else "none"
        embed.add_field(name="Required role", value=role, inline=True)
        allowance = _default_note(settings.daily_allowance, defaults.daily_allowance)
        embed.add_field(name="Daily allowance", value=allowance, inline=True)
        embed.add_field(
            name="Cooldown", value=_default_note(settings.cooldown_seconds, defaults.cooldown_seconds, " s")
        )
        embed.add_field(
            name="Max unfinished videos", value=_default_note(settings.max_jobs_per_user, limits.max_jobs_per_user)
        )
        pro = "allowed" if limits.pro_allowed else "off"
        embed.add_field(name="sora-2-pro", value=pro if settings.pro_allowed is not None else f"{pro} (default)")
        audit = f"<#{settings.audit_channel_id}>" if settings.audit_channel_id else "off"
        embed.add_field(name="Audit channel", value=audit, inline=True)
        embed.add_field(name="Blocked terms", value=f"{len(settings.blocked_terms)} (/sora-admin blocked list)")
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=_quiet())


def _channels_text(channel_ids: frozenset[str]) -> str:
    if not channel_ids:
        return "All channels (none listed)."
    return "Only in: " + ", ".join(f"<#{c}>" for c in sorted(channel_ids))


def _code(text: str) -> str:
    """Safe inside single backticks."""
    return text.replace("`", "ˋ")


def _fit(text: str, limit: int = 1900) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(AdminCog(bot))
