"""The creative loop: Retry, Remix, Continue and Delete under every posted video.

New videos go through ``bot.starter.start`` like /sora (same checks, same charging, same status
message). Retry, Remix and Continue are for the requester only, because the new video is charged
to whoever asks; Delete is for the requester or anyone with Manage Messages.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

import discord
from discord.ext import commands

from bot.client import SoraBot
from bot.discord_ui.modals import PromptSubmit, parse_submit, prompt_modal
from bot.discord_ui.replies import reply
from bot.discord_ui.result_views import CREATIVE_COG, ResultButton
from bot.discord_ui.starter import job_link
from bot.discord_ui.status import status_embed
from bot.discord_ui.views import may_manage
from bot.domain import ReferenceImage, VideoRequest
from bot.errors import BotError, Refused
from bot.jobs.lineage import can_remix_natively, check_requester, retry_reference, usable_source
from bot.jobs.model import Job
from bot.media.video import last_frame_async

log = logging.getLogger(__name__)

SORRY = "Something went wrong on our side. Nothing was charged; please try again."


class CreativeCog(commands.Cog, name=CREATIVE_COG):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ResultButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ResultButton)

    # --- buttons ----------------------------------------------------------------------------------

    async def on_result_button(self, interaction: discord.Interaction[SoraBot], action: str, job_id: int) -> None:
        opens_modal = action in ("remix", "continue")
        if not opens_modal:
            # Acknowledge first (3 s budget); a modal must be the first answer, so those do quick checks only.
            await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            source = await self._source(job_id, action)
            if action == "delete":
                await self._delete(interaction, source)
                return
            check_requester(str(interaction.user.id), source, action)
            if action == "retry":
                await self._retry(interaction, source)
                return
            if action == "continue" and (source.result_deleted_at or not source.result_message_id):
                raise Refused(f"Video #{source.id} is no longer posted, so it cannot be continued.")
            pipeline = self.bot.require_pipeline()
            spec = pipeline.router.spec(source.model)  # refused politely if the model is gone since
            seconds, sizes = spec.durations, spec.sizes
            # Refuse before the user types anything if even the shortest clip is out of reach.
            cheapest = pipeline.service.cost(
                VideoRequest(source.prompt, min(seconds), source.size, source.model, audio=source.audio)
            )
            allowance = await self._allowance(source.guild_id)
            balance = await pipeline.service.balance(source.guild_id, str(interaction.user.id), allowance=allowance)
            balance.split(cheapest)
            await interaction.response.send_modal(prompt_modal(action, source, seconds=seconds, sizes=sizes))
        except BotError as exc:
            log.info("refused %s on job %s for %s: %s", action, job_id, interaction.user.id, exc.detail)
            await reply(interaction, exc.user_message)
        except discord.HTTPException as exc:
            log.warning("%s on job %s failed talking to Discord: %s %s", action, job_id, exc.status, exc.text)
            await reply(interaction, "Discord did not accept that just now. Nothing was charged; please try again.")
        except Exception:
            log.exception("%s on job %s failed", action, job_id)
            await reply(interaction, SORRY)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[SoraBot]) -> None:
        """Submits of the Remix/Continue modal, before or after a restart alike (see bot/discord_ui/modals.py)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        submit = parse_submit(interaction.data)
        if submit is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            source = await self._source(submit.job_id, submit.action)
            check_requester(str(interaction.user.id), source, submit.action)
            if submit.action == "remix":
                await self._remix(interaction, source, submit)
            else:
                await self._continue(interaction, source, submit)
        except BotError as exc:
            log.info("refused %s of job %s for %s: %s", submit.action, submit.job_id, interaction.user.id, exc.detail)
            await reply(interaction, exc.user_message)
        except discord.HTTPException as exc:
            log.warning(
                "%s of job %s failed talking to Discord: %s %s", submit.action, submit.job_id, exc.status, exc.text
            )
            await reply(interaction, "Discord did not accept that just now. Nothing was charged; please try again.")
        except Exception:
            log.exception("%s of job %s failed", submit.action, submit.job_id)
            await reply(interaction, SORRY)

    # --- actions ----------------------------------------------------------------------------------

    async def _retry(self, interaction: discord.Interaction[SoraBot], source: Job) -> None:
        found = await self._source_reference(source, source.size) if source.has_image else None
        await self._start(interaction, source, source.request(), "retry", reference=retry_reference(source, found))

    async def _remix(self, interaction: discord.Interaction[SoraBot], source: Job, submit: PromptSubmit) -> None:
        pipeline = self.bot.require_pipeline()
        request = VideoRequest(submit.prompt, submit.seconds(), submit.frame_size(), source.model, audio=source.audio)
        native = None
        if can_remix_natively(source, request, pipeline.providers.get(source.provider)):
            native = source.provider_job_id  # the provider keeps the length, size and first frame
            reference = None
        else:
            # A fresh generation; the source's reference image rides along while it can be found.
            reference = await self._source_reference(source, request.size) if source.has_image else None
        await self._start(interaction, source, request, "remix", reference=reference, native=native)

    async def _continue(self, interaction: discord.Interaction[SoraBot], source: Job, submit: PromptSubmit) -> None:
        pipeline = self.bot.require_pipeline()
        request = VideoRequest(submit.prompt, submit.seconds(), submit.frame_size(), source.model, audio=source.audio)
        pipeline.service.validate(request)  # a wrong size or length is refused before any download
        frame = await self._last_frame(source)
        reference = await pipeline.service.fit_reference(frame, request.size, user_id=str(interaction.user.id))
        await self._start(interaction, source, request, "continue", reference=reference)

    async def _delete(self, interaction: discord.Interaction[SoraBot], source: Job) -> None:
        if not may_manage(interaction, source, channel_id=source.result_channel_id):
            raise Refused("Only the person who asked for this video (or a moderator) can delete it.")
        if source.result_deleted_at or not source.result_message_id:
            raise Refused(f"Video #{source.id} has already been deleted.")
        channel_id = source.result_channel_id
        assert channel_id is not None  # noqa: S101 - set with result_message_id
        message = self.bot.get_partial_messageable(int(channel_id)).get_partial_message(int(source.result_message_id))
        try:
            await message.delete()
        except discord.NotFound:
            log.info("job %s: video message %s was already gone", source.id, source.result_message_id)
        except discord.Forbidden as exc:
            raise Refused("I am not allowed to delete that message here (I need Manage Messages).") from exc
        pipeline = self.bot.require_pipeline()
        await pipeline.repo.mark_result_deleted(source.id)
        log.info("job %s: video deleted by %s (requester %s)", source.id, interaction.user.id, source.user_id)
        await self._audit_delete(source, str(interaction.user.id))
        await self._mark_status_deleted(source.id)
        await reply(interaction, f"Deleted video #{source.id}.")

    # --- helpers ----------------------------------------------------------------------------------

    async def _start(
        self,
        interaction: discord.Interaction[SoraBot],
        source: Job,
        request: VideoRequest,
        kind: str,
        *,
        reference: ReferenceImage | None = None,
        native: str | None = None,
    ) -> None:
        private = source.private and self.bot.settings.allow_private_results
        job = await self.bot.starter.start(
            interaction,
            request,
            reference=reference,
            private=private,
            source=source,
            kind=kind,
            source_provider_job_id=native,
        )
        how = " with the provider's own remix" if native else ""
        await reply(
            interaction,
            f"Your video #{job.id} ({kind} of #{source.id}{how}) is queued ({job.cost} credits reserved). "
            f"Progress: {job_link(job)}",
        )

    async def _mark_status_deleted(self, job_id: int) -> None:
        """The job's status message stops linking to the deleted post (one direct edit: the job is over,
        so the notifier's coalescer no longer tracks that message)."""
        job = await self.bot.require_pipeline().repo.get_job(job_id)
        if job is None or not (job.status_message_id and job.channel_id):
            return
        channel = self.bot.get_partial_messageable(int(job.channel_id))
        balance = await self._balance_left(job)
        try:
            await channel.get_partial_message(int(job.status_message_id)).edit(
                embed=status_embed(job, balance_left=balance), view=None
            )
        except discord.HTTPException as exc:
            log.info("job %s: status message not updated after delete: %s", job.id, exc.status)

    async def _balance_left(self, job: Job) -> int | None:
        pipeline = self.bot.require_pipeline()
        allowance = await self._allowance(job.guild_id)
        return (await pipeline.service.balance(job.guild_id, job.user_id, allowance=allowance)).total

    async def _allowance(self, guild_id: str | None) -> int | None:
        """The server's own daily allowance when its admins set one (else the bot's default)."""
        if guild_id is None or self.bot.guild_settings is None:
            return None
        return (await self.bot.guild_settings.get(guild_id)).daily_allowance

    async def _audit_delete(self, source: Job, actor_id: str) -> None:
        """A line in the server's audit channel, if it has one. Never raises."""
        if source.guild_id is None or self.bot.guild_settings is None:
            return
        try:
            channel_id = (await self.bot.guild_settings.get(source.guild_id)).audit_channel_id
            if not channel_id:
                return
            who = "its requester" if actor_id == source.user_id else "a moderator"
            embed = discord.Embed(
                title=f"Video #{source.id} deleted",
                description=f"Deleted by <@{actor_id}> ({who}); requested by <@{source.user_id}>.",
                colour=discord.Colour.dark_grey(),
            )
            channel = self.bot.get_partial_messageable(int(channel_id), guild_id=int(source.guild_id))
            await channel.send(embed=embed, allowed_mentions=discord.AllowedMentions.none())
        except (discord.HTTPException, ValueError) as exc:
            log.warning("job %s: could not post the deletion to the audit channel: %s", source.id, exc)

    async def _source(self, job_id: int, action: str) -> Job:
        return usable_source(await self.bot.require_pipeline().repo.get_job(job_id), action)

    async def _last_frame(self, source: Job) -> bytes:
        """The final frame of the posted video, read back from Discord (the bot keeps no copy)."""
        gone = Refused(f"Video #{source.id} is no longer available on Discord, so it cannot be continued.")
        channel_id = source.result_channel_id
        if not channel_id or not source.result_message_id or source.result_deleted_at:
            raise gone
        channel = self.bot.get_partial_messageable(int(channel_id))
        try:
            message = await channel.fetch_message(int(source.result_message_id))
            video = next((a for a in message.attachments if a.filename.endswith(".mp4")), None)
            if video is None:
                raise gone
            if video.size > self.bot.settings.max_result_bytes:
                raise Refused(f"Video #{source.id} is too large to read back, so it cannot be continued.")
            data = await video.read()
        except (discord.NotFound, discord.Forbidden) as exc:
            raise gone from exc
        work = self.bot.settings.data_dir / "frames"
        path = await asyncio.to_thread(_write_temp, work, data)
        try:
            return await last_frame_async(path)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def _source_reference(self, source: Job, size: str) -> ReferenceImage | None:
        """The source job's reference image, fitted to ``size``: from the file while it is kept, else
        from its status message (where the starter posts it). None when neither exists any more."""
        service = self.bot.require_pipeline().service
        data: bytes | None = None
        kept = Path(source.image_path) if source.image_path else None
        if kept is not None and await asyncio.to_thread(kept.exists):
            data = await asyncio.to_thread(kept.read_bytes)
        elif source.status_message_id and source.channel_id:
            channel = self.bot.get_partial_messageable(int(source.channel_id))
            try:
                status = await channel.fetch_message(int(source.status_message_id))
                if status.attachments:
                    data = await status.attachments[0].read()
            except discord.HTTPException as exc:
                log.info("job %s: reference image not readable: %s", source.id, exc.status)
        if data is None:
            return None
        return await service.fit_reference(data, size)


def _write_temp(folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".mp4", delete=False) as handle:
        handle.write(data)
    return Path(handle.name)


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(CreativeCog(bot))
