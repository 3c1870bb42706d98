"""The Discord side of the job pipeline: keep each job's status message current, post the video."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import discord

from bot.discord_ui.coalescer import EditCoalescer
from bot.discord_ui.links import safe_url, shown
from bot.discord_ui.result_views import result_view
from bot.discord_ui.status import prompt_text, render_key, settings_line, status_embed
from bot.discord_ui.views import job_view
from bot.errors import DeliveryFailed, UploadRefused
from bot.jobs.model import Job, State
from bot.jobs.notifier import Delivery
from bot.jobs.store import GuildSettingsStore
from bot.media.video import CannotShrink, shrink_to_fit_async

log = logging.getLogger(__name__)

DELIVERY_ATTEMPTS = 4
DELIVERY_BACKOFF = 1.0
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Multipart framing and the JSON payload ride along with the file; keep clear of the exact limit.
UPLOAD_MARGIN = 64 * 1024
DMS_CLOSED_NOTE = "Your direct messages are closed, so your private video is posted here instead."


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def shareable_link(url: str | None) -> str | None:
    """The provider's result link if it is a plain http(s) URL fit to show (it is provider text)."""
    if not url or len(url) > 500 or not url.startswith(("https://", "http://")):
        return None
    if any(ch.isspace() or ch in "<>`" for ch in url):
        return None
    return url


class DiscordNotifier:
    def __init__(self, client: discord.Client, coalescer: EditCoalescer) -> None:
        self.client = client
        self.coalescer = coalescer
        self._last_render: dict[int, tuple[object, ...]] = {}
        self.guild_settings: GuildSettingsStore | None = None
        """Set by the bot once storage is open: where each server wants its audit log."""

    # --- status message -------------------------------------------------------------------------

    async def job_changed(self, job: Job) -> None:
        if not (job.status_message_id and job.channel_id):
            return
        message_id = int(job.status_message_id)
        key = render_key(job)
        urgent = self._last_render.get(job.id) != key
        self._last_render[job.id] = key
        message = self.client.get_partial_messageable(int(job.channel_id)).get_partial_message(message_id)
        # The balance costs a database read: only the final render (once credits settled) shows it.
        balance = await self.balance_left(job) if job.state.terminal else None
        payload: dict[str, Any] = {"embed": status_embed(job, balance_left=balance), "view": job_view(job)}

        async def edit(content: dict[str, Any]) -> None:
            await message.edit(**content)

        final = job.state.terminal
        self.coalescer.submit(int(job.channel_id), message_id, payload, urgent=urgent, edit=edit, final=final)
        if final:
            self._last_render.pop(job.id, None)
        if job.state is State.SUCCEEDED:
            await self.audit(job)

    async def audit(self, job: Job) -> None:
        """Record who made what in the server's audit channel, if it has one. Never raises: a missing
        or forbidden audit channel must not disturb the job or its delivery."""
        if self.guild_settings is None or not job.guild_id:
            return
        try:
            settings = await self.guild_settings.get(job.guild_id)
            if not settings.audit_channel_id:
                return
            channel = self.client.get_partial_messageable(int(settings.audit_channel_id), guild_id=int(job.guild_id))
            embed = discord.Embed(
                title=f"Video #{job.id}",
                # The full prompt even for a private job: the audit log is the moderators' record.
                description=discord.utils.escape_markdown(job.prompt)[:1500],
                colour=discord.Colour.blurple(),
            )
            embed.add_field(name="By", value=f"<@{job.user_id}> ({job.user_id})", inline=True)
            embed.add_field(name="Settings", value=settings_line(job), inline=True)
            embed.add_field(name="Cost", value=f"{job.cost} credits", inline=True)
            result = shown(job.result_url, "—")
            embed.add_field(name="Result", value=f"{result} (sent privately)" if job.private else result, inline=False)
            await channel.send(
                embed=embed, nonce=f"sora-audit-{job.id}"[:25], allowed_mentions=discord.AllowedMentions.none()
            )
        except (discord.HTTPException, ValueError) as exc:
            log.warning("job %s: could not post to the audit channel: %s", job.id, exc)

    async def balance_left(self, job: Job) -> int | None:
        """The requester's credits left in the job's server, or None when they cannot be read."""
        pipeline = getattr(self.client, "pipeline", None)
        if pipeline is None:
            return None
        try:
            allowance = None
            if self.guild_settings is not None and job.guild_id:
                # The server's own daily allowance, when its admins set one.
                allowance = (await self.guild_settings.get(job.guild_id)).daily_allowance
            return (await pipeline.service.balance(job.guild_id, job.user_id, allowance=allowance)).total
        except Exception:  # a display detail: never let it break a status edit or a delivery
            log.exception("could not read the balance for job %s", job.id)
            return None

    async def _source_link(self, job: Job) -> str | None:
        """For a Continue: a link to the clip this one continues, if it is still posted."""
        pipeline = getattr(self.client, "pipeline", None)
        if job.kind != "continue" or job.source_job_id is None or pipeline is None:
            return None
        source = await pipeline.repo.get_job(job.source_job_id)
        if source is None or source.result_deleted_at or source.state is not State.SUCCEEDED:
            return f"video #{job.source_job_id}"
        link = safe_url(source.result_url)
        return f"video #{source.id} (<{link}>)" if link else f"video #{source.id}"

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
        dm = await self._dm_channel(job) if job.private else None
        # DMs have the base upload limit whatever the server's boost level.
        limit = (DEFAULT_UPLOAD_LIMIT if dm else self.upload_limit(job)) - UPLOAD_MARGIN
        size = (await asyncio.to_thread(video.stat)).st_size
        note: str | None = None
        upload: Path | None = video
        if size > limit:
            upload, note = await self._shrink(video, size, limit)
        extra = await self._extras(job)
        if dm is not None:
            try:
                message, note = await self._post_fitting(dm, job, video, size, upload, note, extra)
                return Delivery(message_id=str(message.id), url=message.jump_url, note=note)
            except (discord.Forbidden, discord.NotFound) as exc:
                # Usually 50007 (DMs closed); whatever the reason, the requester still gets the video.
                log.info(
                    "job %s: cannot DM user %s (%s %s); posting in the channel",
                    job.id,
                    job.user_id,
                    exc.status,
                    exc.code,
                )
        if job.private:
            note = f"{note} {DMS_CLOSED_NOTE}" if note else DMS_CLOSED_NOTE
        try:
            message, note = await self._post_fitting(channel, job, video, size, upload, note, extra)
        except (discord.NotFound, discord.Forbidden) as exc:
            raise DeliveryFailed(f"job {job.id}: cannot post in channel {job.channel_id}: {exc.status}") from exc
        return Delivery(message_id=str(message.id), url=message.jump_url, note=note)

    async def _post_fitting(
        self,
        channel: discord.abc.Messageable,
        job: Job,
        video: Path,
        size: int,
        upload: Path | None,
        note: str | None,
        extra: _Extras,
    ) -> tuple[discord.Message, str | None]:
        try:
            return await self._post_retrying(channel, job, upload, note, extra), note
        except discord.HTTPException as exc:
            if exc.status != 413 or upload is None:
                raise
            # Our idea of the limit was wrong; one smaller attempt, then the link. Never a loop.
            sent = (await asyncio.to_thread(upload.stat)).st_size
            log.warning("job %s: upload of %s refused with 413", job.id, mib(sent))
            upload, note = await self._shrink(video, size, sent // 2)
            try:
                return await self._post_retrying(channel, job, upload, note, extra), note
            except discord.HTTPException as again:
                if again.status != 413:
                    raise
                raise UploadRefused(
                    f"job {job.id}: upload refused with 413 again after re-encoding (first try {mib(sent)})",
                    # The status message is seen by the whole channel: a private job's link stays out of it.
                    link=None if job.private else shareable_link(job.result_url),
                    expires_at=job.result_expires_at,
                ) from again

    async def _post_retrying(
        self, channel: discord.abc.Messageable, job: Job, upload: Path | None, note: str | None, extra: _Extras
    ) -> discord.Message:
        """Send again after a 5xx or a lost connection. Safe: the nonce makes Discord answer a repeat
        with the message an earlier attempt stored, so the video is never posted twice."""
        for attempt in range(DELIVERY_ATTEMPTS):
            try:
                return await self._post(channel, job, upload, note, extra)
            except (discord.DiscordServerError, aiohttp.ClientError, OSError) as exc:
                if attempt == DELIVERY_ATTEMPTS - 1:
                    raise DeliveryFailed(f"job {job.id}: upload failed {DELIVERY_ATTEMPTS} times: {exc}") from exc
                delay = DELIVERY_BACKOFF * 2**attempt
                log.warning("job %s: upload failed (%s); again in %.0fs with the same nonce", job.id, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _dm_channel(self, job: Job) -> discord.DMChannel | None:
        """The requester's DM channel, or None when Discord will not open one (then: the channel)."""
        try:
            user = self.client.get_user(int(job.user_id)) or await self.client.fetch_user(int(job.user_id))
            return user.dm_channel or await user.create_dm()
        except discord.HTTPException as exc:
            log.info("job %s: cannot open a DM with %s: %s", job.id, job.user_id, exc.status)
            return None

    async def _extras(self, job: Job) -> _Extras:
        continues = None
        try:
            continues = await self._source_link(job)
        except Exception:  # a display detail, as above
            log.exception("could not read the source of job %s", job.id)
        return _Extras(balance_left=await self.balance_left(job), continues=continues)

    async def _shrink(self, video: Path, size: int, limit: int) -> tuple[Path | None, str]:
        shrunk = video.with_name(f"{video.stem}-fit.mp4")
        try:
            info = await shrink_to_fit_async(video, shrunk, limit)
        except CannotShrink as exc:
            log.warning("cannot shrink %s under %s: %s", video.name, mib(limit), exc.detail)
            return None, f"The video ({mib(size)}) is too large for this server's upload limit."
        return shrunk, f"Re-encoded from {mib(size)} to {mib(info.size_bytes)} to fit this server's upload limit."

    async def _post(
        self, channel: discord.abc.Messageable, job: Job, upload: Path | None, note: str | None, extra: _Extras
    ) -> discord.Message:
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(int(job.user_id))])
        in_dm = isinstance(channel, discord.DMChannel)
        # In the requester's DMs the prompt is theirs to see; in a channel a private one stays hidden.
        description = discord.utils.escape_markdown(job.prompt)[:1500] if in_dm else prompt_text(job)
        embed = discord.Embed(description=description, colour=discord.Colour.green())
        embed.add_field(name="Settings", value=settings_line(job), inline=False)
        embed.add_field(name="Cost", value=f"{job.cost} credits charged", inline=True)
        if extra.balance_left is not None:
            embed.add_field(name="Balance left", value=f"{extra.balance_left} credits", inline=True)
        if extra.continues:
            embed.add_field(name="Continues", value=extra.continues, inline=False)
        if note:
            embed.set_footer(text=note)
        content = f"<@{job.user_id}> your video #{job.id} is ready."
        if extra.continues:
            content += f" It continues {extra.continues}."
        view = result_view(job, uploaded=upload is not None)
        if upload is None:
            link = safe_url(job.result_url)
            if not link:
                raise DeliveryFailed(f"job {job.id}: too large to upload and no usable link to share")
            content += f"\nIt is too large to upload here; download it from the provider: <{link}>"
            if job.result_expires_at:
                content += f" (link expires <t:{int(job.result_expires_at)}:R>)"
            return await channel.send(
                content, embed=embed, view=view, nonce=job.delivery_nonce, allowed_mentions=mentions
            )
        file = discord.File(upload, filename=f"sora-{job.id}.mp4")
        return await channel.send(
            content, embed=embed, file=file, view=view, nonce=job.delivery_nonce, allowed_mentions=mentions
        )


@dataclass(frozen=True)
class _Extras:
    """What the result message shows beyond the job itself (each needs a database read)."""

    balance_left: int | None = None
    continues: str | None = None
