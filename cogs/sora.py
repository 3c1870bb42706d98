"""/sora: parse the command, hand it to the job service, answer in the channel and privately."""

from __future__ import annotations

import dataclasses
import io
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.discord_ui.status import status_embed
from bot.errors import BotError
from bot.jobs.model import Job, State
from bot.jobs.prompts import clean_prompt
from bot.jobs.service import NewJob
from bot.media.images import check_declared
from bot.providers.base import LANDSCAPE, PORTRAIT, PRO_SIZES, ReferenceImage, VideoRequest

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
    ) -> None:
        # Acknowledge first: Discord gives us 3 seconds, and everything below may take longer.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            job = await self._start_job(interaction, prompt, duration, size, model, image)
        except BotError as exc:
            log.info("refused /sora from %s: %s", interaction.user.id, exc.detail)
            await interaction.followup.send(exc.user_message, ephemeral=True)
            return
        link = job_link(job)
        await interaction.followup.send(
            f"Your video #{job.id} is queued ({job.cost} credits reserved). Progress: {link}", ephemeral=True
        )

    async def _start_job(
        self,
        interaction: discord.Interaction[SoraBot],
        prompt: str,
        duration: int,
        size: str,
        model: str,
        image: discord.Attachment | None,
    ) -> Job:
        pipeline = self.bot.require_pipeline()
        service = pipeline.service
        request = VideoRequest(clean_prompt(prompt), duration, size, model)
        service.validate(request)
        balance = await service.balance(_guild_id(interaction), str(interaction.user.id))
        balance.split(service.cost(request))  # refuse early, before any upload; re-checked atomically below
        reference: ReferenceImage | None = None
        if image is not None:
            check_declared(image.size, image.content_type, image.filename, max_bytes=self.bot.settings.max_image_bytes)
            # Attachment URLs expire: the bytes are fetched now and kept with the job.
            reference = await service.fit_reference(await image.read(), size)
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise BotError("no channel", user_message="Please use /sora in a server text channel.")
        status = await self._post_status(channel, interaction, request, reference)
        if reference is not None and status.attachments:
            # URL-based providers fetch the reference from Discord's CDN: the fitted image we just posted.
            reference = dataclasses.replace(reference, url=status.attachments[0].url)
        try:
            return await service.submit(
                NewJob(
                    dataclasses.replace(request, image=reference),
                    user_id=str(interaction.user.id),
                    guild_id=_guild_id(interaction),
                    channel_id=str(channel.id),  # type: ignore[union-attr]
                    status_message_id=str(status.id),
                )
            )
        except BaseException:
            await _delete_quietly(status)
            raise

    async def _post_status(
        self,
        channel: discord.abc.Messageable,
        interaction: discord.Interaction[SoraBot],
        request: VideoRequest,
        reference: ReferenceImage | None,
    ) -> discord.Message:
        """The channel message that shows this job's progress (sent with the bot token, not the
        interaction token, which dies after 15 minutes)."""
        placeholder = Job(
            id=0,
            state=State.QUEUED,
            provider="",
            user_id=str(interaction.user.id),
            prompt=request.prompt,
            seconds=request.seconds,
            size=request.size,
            model=request.model,
            created_at=interaction.created_at.timestamp(),
            updated_at=0,
            cost=self.bot.require_pipeline().service.cost(request),
        )
        embed = status_embed(placeholder)
        embed.title = "Sora video (starting)"
        files = []
        wants_url = self.bot.require_pipeline().provider.capabilities.image_mode == "url"
        if reference is not None and wants_url:
            files.append(discord.File(io.BytesIO(reference.data), filename=reference.filename))
        try:
            return await channel.send(embed=embed, files=files)
        except discord.Forbidden as exc:
            raise BotError(
                f"cannot post in channel: {exc.text}",
                user_message="I don't have permission to post in this channel (I need Send Messages, "
                "Embed Links and Attach Files).",
            ) from exc


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
    )
    @app_commands.choices(duration=duration_choices, size=SIZE_CHOICES, model=MODEL_CHOICES)
    async def sora(
        interaction: discord.Interaction[SoraBot],
        prompt: app_commands.Range[str, 1, 4000],
        duration: int = default_seconds,
        size: str = LANDSCAPE,
        model: str = "sora-2",
        image: discord.Attachment | None = None,
    ) -> None:
        await cog.sora(interaction, prompt, duration, size, model, image)

    return sora


def job_link(job: Job) -> str:
    if job.guild_id and job.channel_id and job.status_message_id:
        return f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.status_message_id}"
    return f"job #{job.id}"


def _guild_id(interaction: discord.Interaction[Any]) -> str | None:
    return str(interaction.guild_id) if interaction.guild_id else None


async def _delete_quietly(message: discord.Message) -> None:
    try:
        await message.delete()
    except discord.HTTPException:
        log.info("could not delete status message %s", message.id)


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(SoraCog(bot))
