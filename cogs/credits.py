"""/credits: the requester's balance in this server, when it resets, and the latest ledger rows."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.credits.ledger import DAILY, Balance
from bot.errors import BotError

log = logging.getLogger(__name__)

RECENT = 8


def entry_line(entry: dict[str, Any], settled: set[int]) -> str | None:
    """One ledger row as a line of /credits, or None for a reserve that a later row settled."""
    kind, amount, job_id = entry["kind"], int(entry["amount"]), entry["job_id"]
    when = f"<t:{int(entry['created_at'])}:R>"
    pool = "today's credits" if entry["pool"] == DAILY else "extra"
    if kind == "reserve":
        if job_id in settled:
            return None  # the capture or refund below tells the story
        return f"🕓 {amount} reserved for video #{job_id} ({pool}) {when}"
    if kind == "capture":
        return f"➖ {amount} charged for video #{job_id} ({pool}) {when}"
    if kind == "refund":
        return f"↩️ {amount} refunded for video #{job_id} ({pool}) {when}"
    actor = f"<@{entry['actor_id']}>" if entry.get("actor_id") else "an admin"
    note = f" — {discord.utils.escape_markdown(str(entry['note']))[:80]}" if entry.get("note") else ""
    if entry["pool"] == DAILY:
        return f"🔄 day reset by {actor} (+{amount}){note} {when}"
    sign = "+" if amount >= 0 else "−"
    return f"🎁 {sign}{abs(amount)} extra from {actor}{note} {when}"


def balance_embed(title: str, balance: Balance, entries: list[dict[str, Any]], costs: str) -> discord.Embed:
    embed = discord.Embed(title=title, description=f"**{balance.total}** credits available now.")
    embed.add_field(name="Today", value=f"{balance.daily_left} of {balance.allowance} left", inline=True)
    embed.add_field(name="Extra", value=f"{max(0, balance.extra)} (does not expire)", inline=True)
    reset = int(balance.resets_at.timestamp())
    embed.add_field(name="Daily reset", value=f"<t:{reset}:R> (00:00 UTC)", inline=True)
    settled = {e["job_id"] for e in entries if e["kind"] in ("capture", "refund") and e["job_id"] is not None}
    lines = [line for e in entries if (line := entry_line(e, settled))][:RECENT]
    embed.add_field(name="Recent", value="\n".join(lines) if lines else "Nothing yet.", inline=False)
    embed.set_footer(text=costs)
    return embed


async def describe_balance(bot: SoraBot, guild_id: str, user_id: str, title: str) -> discord.Embed:
    """The /credits embed of ``user_id`` in ``guild_id``, with the server's own allowance."""
    pipeline = bot.require_pipeline()
    settings = await bot.require_guild_settings().get(guild_id)
    balance = await pipeline.service.balance(guild_id, user_id, allowance=settings.daily_allowance)
    entries = await pipeline.repo.ledger_entries(guild_id, user_id, limit=3 * RECENT)
    policy = pipeline.service.policy
    costs = f"A video costs {policy.credits_per_second} credit(s) per second"
    if policy.pro_multiplier != 1:
        costs += f", ×{policy.pro_multiplier} with sora-2-pro"
    return balance_embed(title, balance, entries, costs + ".")


class CreditsCog(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    @app_commands.command(name="credits", description="Your video credits on this server")
    @app_commands.guild_only()
    async def credits(self, interaction: discord.Interaction[SoraBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            embed = await describe_balance(
                self.bot, str(interaction.guild_id), str(interaction.user.id), "Your credits on this server"
            )
        except BotError as exc:
            await interaction.followup.send(exc.user_message, ephemeral=True)
            return
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(CreditsCog(bot))
