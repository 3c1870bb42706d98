"""/sora: parse the command, hand it to the job service, answer in the channel and privately."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.discord_ui.starter import job_link
from bot.errors import BotError
from bot.providers.base import LANDSCAPE, PORTRAIT, PRO_SIZES, VideoRequest

log = logging.getLogger(__name__)

SIZE_CHOICES = [
    app_commands.Choice(name="1280x720 landscape", value=LANDSCAPE),
    app_commands.Choice(name="720x1280 portrait", value=PORTRAIT),
    *(app_commands.Choice(name=f"{s} (sora-2-pro)", value=s) for s in PRO_SIZES),
]
MODEL_CHOICES = [app_commands.Choice(name=m, value=m) for m in ("sora-2", "sora-2-pro")]


class SoraCog(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        seconds = bot.require_pipeline().provider.capabilities.all_seconds()
        self.command = build_sora_command(self, seconds)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)

    async def sora(
        self,
        interaction: discord.Interaction[SoraBot],
        prompt: str,
        duration: int,
        size: str,
        model: str,
        image: discord.Attachment | None,
        private: bool = False,
    ) -> None:
        # Acknowledge first: Discord gives us 3 seconds, and everything below may take longer.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            if private and not self.bot.settings.allow_private_results:
                raise BotError(
                    "private results are switched off",
                    user_message="Private results are switched off on this bot; leave out private:true.",
                )
            job = await self.bot.starter.start(
                interaction, VideoRequest(prompt, duration, size, model), attachment=image, private=private
            )
        except BotError as exc:
            log.info("refused /sora from %s: %s", interaction.user.id, exc.detail)
            await interaction.followup.send(exc.user_message, ephemeral=True)
            return
        link = job_link(job)
        where = " It will be sent to you by direct message." if private else ""
        await interaction.followup.send(
            f"Your video #{job.id} is queued ({job.cost} credits reserved). Progress: {link}{where}", ephemeral=True
        )


def build_sora_command(cog: SoraCog, seconds: tuple[int, ...]) -> app_commands.Command[Any, Any, None]:
    """/sora with duration choices taken from the active provider."""
    duration_choices = [app_commands.Choice(name=f"{s} seconds", value=s) for s in seconds]
    default_seconds = min(seconds)

    @app_commands.command(name="sora", description="Make a short video with Sora 2")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What should the video show?",
        duration="Length of the clip",
        size="Frame size (the tall/wide pro sizes need sora-2-pro)",
        model="sora-2 (faster, cheaper) or sora-2-pro (higher quality)",
        image="Optional reference image for the first frame (PNG, JPEG or WebP)",
        private="Send the finished video to you by direct message instead of posting it here",
    )
    @app_commands.choices(duration=duration_choices, size=SIZE_CHOICES, model=MODEL_CHOICES)
    async def sora(
        interaction: discord.Interaction[SoraBot],
        prompt: app_commands.Range[str, 1, 4000],
        duration: int = default_seconds,
        size: str = LANDSCAPE,
        model: str = "sora-2",
        image: discord.Attachment | None = None,
        private: bool = False,
    ) -> None:
        await cog.sora(interaction, prompt, duration, size, model, image, private)

    return sora


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(SoraCog(bot))
