"""The bot's application-command tree: which servers may use commands, and the one error handler."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord_ui.replies import reply
from bot.errors import BotError

if TYPE_CHECKING:
    from bot.client import SoraBot

log = logging.getLogger(__name__)


class SoraTree(app_commands.CommandTree["SoraBot"]):
    async def interaction_check(self, interaction: discord.Interaction[SoraBot], /) -> bool:
        """Commands from a server outside ALLOWED_GUILD_IDS are answered with a refusal and not run."""
        if interaction.guild_id is None or self.client.guild_allowed(interaction.guild_id):
            return True
        name = getattr(interaction.command, "name", "?")
        log.info("ignored /%s from guild %s (not in ALLOWED_GUILD_IDS)", name, interaction.guild_id)
        return False

    async def on_error(self, interaction: discord.Interaction[SoraBot], error: app_commands.AppCommandError, /) -> None:
        """The one place an unexpected command error becomes a polite reply."""
        original = getattr(error, "original", error)
        if isinstance(original, BotError):
            message = original.user_message
        elif isinstance(error, app_commands.CheckFailure):
            message = "You are not allowed to use this command here."
        else:
            log.error("command %s failed", interaction.command and interaction.command.name, exc_info=original)
            message = "Something went wrong on our side. Nothing was charged; please try again."
        await reply(interaction, message)
