"""/sora: parse the command, hand it to the job service, answer in the channel and privately."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalogue import ModelSpec, Router
from bot.client import SoraBot
from bot.discord_ui.starter import job_link
from bot.domain import VideoRequest, is_portrait
from bot.errors import BotError

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord's limit per option


class SoraCog(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        self.command = build_sora_command(self, bot.require_pipeline().router)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)

    async def sora(
        self,
        interaction: discord.Interaction[SoraBot],
        prompt: str,
        duration: int | None,
        size: str | None,
        model: str | None,
        audio: bool | None,
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
            router = self.bot.require_pipeline().router
            model = model or router.default()
            spec = router.spec(model)  # an unknown or unavailable model is refused with the choices
            request = VideoRequest(
                prompt,
                duration if duration is not None else spec.durations[0],
                size or spec.sizes[0],
                model,
                audio=audio,
            )
            job = await self.bot.starter.start(interaction, request, attachment=image, private=private)
        except BotError as exc:
            log.info("refused /sora from %s: %s", interaction.user.id, exc.detail)
            await interaction.followup.send(exc.user_message, ephemeral=True)
            return
        link = job_link(job)
        where = " It will be sent to you by direct message." if private else ""
        await interaction.followup.send(
            f"Your video #{job.id} is queued ({job.model}, {job.cost} credits reserved). Progress: {link}{where}",
            ephemeral=True,
        )

    async def model_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """The models some configured provider can run now, filtered by what the member typed."""
        typed = current.casefold()
        found = [
            app_commands.Choice(name=_model_label(m), value=m.id)
            for m in self.bot.require_pipeline().router.available()
            if typed in m.id.casefold() or typed in m.name.casefold()
        ]
        return found[:MAX_CHOICES]


def _model_label(spec: ModelSpec) -> str:
    parts = [spec.label, "/".join(f"{s}" for s in spec.durations) + " s"]
    if spec.audio:
        parts.append("sound")
    return " · ".join(parts)[:100]


def _size_name(size: str) -> str:
    width, _, height = size.partition("x")
    shape = "square" if width == height else ("portrait" if is_portrait(size) else "landscape")
    return f"{size} {shape}"


def build_sora_command(cog: SoraCog, router: Router) -> app_commands.Command[Any, Any, None]:
    """/sora with duration and size choices from the models this bot can run (each is checked
    against the chosen model, and a refusal names that model's allowed values)."""
    models = router.available() or list(router.catalogue.models.values())
    seconds = sorted({s for m in models for s in m.durations})[:MAX_CHOICES]
    sizes = list(dict.fromkeys(s for m in models for s in m.sizes))[:MAX_CHOICES]
    duration_choices: list[app_commands.Choice[int]] = [
        app_commands.Choice(name=f"{s} seconds", value=s) for s in seconds
    ]
    size_choices: list[app_commands.Choice[str]] = [app_commands.Choice(name=_size_name(s), value=s) for s in sizes]

    @app_commands.command(name="sora", description="Make a short AI video")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What should the video show?",
        duration="Length of the clip (default: the model's shortest)",
        size="Frame size (default: the model's first, usually 1280x720 landscape)",
        model="Which video model makes it (default: the bot's default model)",
        audio="Make sound too (only models that can; may cost more)",
        image="Optional reference image for the first frame (PNG, JPEG or WebP)",
        private="Send the finished video to you by direct message instead of posting it here",
    )
    @app_commands.choices(duration=duration_choices, size=size_choices)  # type: ignore[misc]  # int and str at once
    async def sora(
        interaction: discord.Interaction[SoraBot],
        prompt: app_commands.Range[str, 1, 4000],
        duration: int | None = None,
        size: str | None = None,
        model: str | None = None,
        audio: bool | None = None,
        image: discord.Attachment | None = None,
        private: bool = False,
    ) -> None:
        await cog.sora(interaction, prompt, duration, size, model, audio, image, private)

    @sora.autocomplete("model")
    async def model_autocomplete(
        interaction: discord.Interaction[SoraBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await cog.model_choices(current)

    return sora


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(SoraCog(bot))
