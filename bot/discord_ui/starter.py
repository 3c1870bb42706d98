"""Start a job from a Discord interaction: the one path shared by /sora and every button that
makes a new video (so checks, charging and the status message behave the same everywhere)."""

from __future__ import annotations

import dataclasses
import io
import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.discord_ui.status import status_embed
from bot.errors import BotError
from bot.jobs.model import Job, State
from bot.jobs.prompts import clean_prompt
from bot.jobs.service import NewJob
from bot.media.images import check_declared
from bot.providers.base import ReferenceImage, VideoRequest

if TYPE_CHECKING:
    from bot.client import SoraBot

log = logging.getLogger(__name__)


class JobStarter:
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    async def start(
        self,
        interaction: discord.Interaction[Any],
        request: VideoRequest,
        *,
        attachment: discord.Attachment | None = None,
        reference: ReferenceImage | None = None,
    ) -> Job:
        """Validate, check the balance, fetch and fit the reference image, post the status message
        and queue the job. Raises BotError (with the sentence for the user) having charged nothing."""
        pipeline = self.bot.require_pipeline()
        service = pipeline.service
        request = dataclasses.replace(request, prompt=clean_prompt(request.prompt), image=None)
        service.validate(request)
        guild_id = str(interaction.guild_id) if interaction.guild_id else None
        balance = await service.balance(guild_id, str(interaction.user.id))
        balance.split(service.cost(request))  # refuse early, before any upload; re-checked atomically below
        if attachment is not None:
            check_declared(
                attachment.size,
                attachment.content_type,
                attachment.filename,
                max_bytes=self.bot.settings.max_image_bytes,
            )
            # Attachment URLs expire: the bytes are fetched now and kept with the job.
            reference = await service.fit_reference(await attachment.read(), request.size)
        channel = interaction.channel
        if channel is None or not isinstance(channel, discord.abc.Messageable):
            raise BotError("no channel", user_message="Please use this in a server text channel.")
        status = await self._post_status(channel, interaction, request, reference)
        if reference is not None and status.attachments:
            # URL-based providers fetch the reference from Discord's CDN: the fitted image just posted.
            reference = dataclasses.replace(reference, url=status.attachments[0].url)
        try:
            return await service.submit(
                NewJob(
                    dataclasses.replace(request, image=reference),
                    user_id=str(interaction.user.id),
                    guild_id=guild_id,
                    channel_id=str(status.channel.id),
                    status_message_id=str(status.id),
                )
            )
        except BaseException:
            await _delete_quietly(status)
            raise

    async def _post_status(
        self,
        channel: discord.abc.Messageable,
        interaction: discord.Interaction[Any],
        request: VideoRequest,
        reference: ReferenceImage | None,
    ) -> discord.Message:
        """The channel message that shows this job's progress (sent with the bot token, not the
        interaction token, which dies after 15 minutes)."""
        pipeline = self.bot.require_pipeline()
        placeholder = Job(
            id=0,
            state=State.QUEUED,
            provider=pipeline.provider.name,
            user_id=str(interaction.user.id),
            prompt=request.prompt,
            seconds=request.seconds,
            size=request.size,
            model=request.model,
            created_at=interaction.created_at.timestamp(),
            updated_at=0,
            cost=pipeline.service.cost(request),
        )
        embed = status_embed(placeholder)
        embed.title = "Sora video (starting)"
        files = []
        if reference is not None and pipeline.provider.capabilities.image_mode == "url":
            files.append(discord.File(io.BytesIO(reference.data), filename=reference.filename))
        try:
            return await channel.send(embed=embed, files=files)
        except discord.Forbidden as exc:
            raise BotError(
                f"cannot post in channel: {exc.text}",
                user_message="I don't have permission to post in this channel (I need Send Messages, "
                "Embed Links and Attach Files).",
            ) from exc


def job_link(job: Job) -> str:
    if job.guild_id and job.channel_id and job.status_message_id:
        return f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.status_message_id}"
    return f"job #{job.id}"


async def _delete_quietly(message: discord.Message) -> None:
    try:
        await message.delete()
    except discord.HTTPException:
        log.info("could not delete status message %s", message.id)
