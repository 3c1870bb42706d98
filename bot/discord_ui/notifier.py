"""The Discord side of the job pipeline: keep each job's status message current, post the video."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import discord

from bot.discord_ui.coalescer import EditCoalescer
from bot.discord_ui.status import render_key, settings_line, short, status_embed
from bot.discord_ui.views import job_view
from bot.errors import DeliveryFailed
from bot.jobs.model import Job
from bot.jobs.notifier import Delivery
from bot.media.video import CannotShrink, shrink_to_fit_async

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Multipart framing and the JSON payload ride along with the file; keep clear of the exact limit.
UPLOAD_MARGIN = 64 * 1024


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


class DiscordNotifier:
    def __init__(self, client: discord.Client, coalescer: EditCoalescer) -> None:
        self.client = client
        self.coalescer = coalescer
        self._last_render: dict[int, tuple[object, ...]] = {}

    # --- status message -------------------------------------------------------------------------

    async def job_changed(self, job: Job) -> None:
        if not (job.status_message_id and job.channel_id):
            return
        message_id = int(job.status_message_id)
        key = render_key(job)
        urgent = self._last_render.get(job.id) != key
        self._last_render[job.id] = key
        message = self.client.get_partial_messageable(int(job.channel_id)).get_partial_message(message_id)
        payload: dict[str, Any] = {"embed": status_embed(job), "view": job_view(job)}

        async def edit(content: dict[str, Any]) -> None:
            await message.edit(**content)

        self.coalescer.submit(int(job.channel_id), message_id, payload, urgent=urgent, edit=edit)
        if job.state.terminal:
            self._last_render.pop(job.id, None)
            await self.coalescer.flush(message_id)
            self.coalescer.forget(message_id)

    # --- delivery -------------------------------------------------------------------------------

    def upload_limit(self, job: Job) -> int:
        guild = self.client.get_guild(int(job.guild_id)) if job.guild_id else None
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def deliver(self, job: Job, video: Path) -> Delivery:
        """Post the video once (a stable nonce makes a repeat after a crash return the same message).

        Too big for the server: shrink it to fit; cannot fit: post the provider's link; never retry
        a 413 in a loop.
        """
        if not job.channel_id:
            raise DeliveryFailed(f"job {job.id} has no channel")
        channel = self.client.get_partial_messageable(
            int(job.channel_id), guild_id=int(job.guild_id) if job.guild_id else None
        )
        limit = self.upload_limit(job) - UPLOAD_MARGIN
        size = (await asyncio.to_thread(video.stat)).st_size
        note: str | None = None
        upload: Path | None = video
        if size > limit:
            upload, note = await self._shrink(video, size, limit)
        try:
            try:
                message = await self._post(channel, job, upload, note)
            except discord.HTTPException as exc:
                if exc.status != 413 or upload is None:
                    raise
                # Our idea of the limit was wrong; one smaller attempt, then the link. Never a loop.
                log.warning("job %s: upload of %s refused with 413", job.id, mib(upload.stat().st_size))
                upload, note = await self._shrink(video, size, upload.stat().st_size // 2)
                message = await self._post(channel, job, upload, note)
        except (discord.NotFound, discord.Forbidden) as exc:
            raise DeliveryFailed(f"job {job.id}: cannot post in channel {job.channel_id}: {exc.status}") from exc
        return Delivery(message_id=str(message.id), url=message.jump_url, note=note)

    async def _shrink(self, video: Path, size: int, limit: int) -> tuple[Path | None, str]:
        shrunk = video.with_name(f"{video.stem}-fit.mp4")
        try:
            info = await shrink_to_fit_async(video, shrunk, limit)
        except CannotShrink as exc:
            log.warning("cannot shrink %s under %s: %s", video.name, mib(limit), exc.detail)
            return None, f"The video ({mib(size)}) is too large for this server's upload limit."
        return shrunk, f"Re-encoded from {mib(size)} to {mib(info.size_bytes)} to fit this server's upload limit."

    async def _post(
        self, channel: discord.PartialMessageable, job: Job, upload: Path | None, note: str | None
    ) -> discord.Message:
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(int(job.user_id))])
        embed = discord.Embed(
            description=short(discord.utils.escape_markdown(job.prompt), 1500), colour=discord.Colour.green()
        )
        embed.add_field(name="Settings", value=settings_line(job), inline=False)
        embed.add_field(name="Cost", value=f"{job.cost} credits", inline=True)
        if note:
            embed.set_footer(text=note)
        content = f"<@{job.user_id}> your video #{job.id} is ready."
        if upload is None:
            if not job.result_url:
                raise DeliveryFailed(f"job {job.id}: too large to upload and no link to share")
            content += f"\nIt is too large to upload here; download it from the provider: {job.result_url}"
            if job.result_expires_at:
                content += f" (link expires <t:{int(job.result_expires_at)}:R>)"
            return await channel.send(content, embed=embed, nonce=job.delivery_nonce, allowed_mentions=mentions)
        file = discord.File(upload, filename=f"sora-{job.id}.mp4")
        return await channel.send(content, embed=embed, file=file, nonce=job.delivery_nonce, allowed_mentions=mentions)
