"""Start a job from a Discord interaction: the one path shared by /sora and every button that
makes a new video (so checks, charging and the status message behave the same everywhere)."""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import discord

from bot.discord_ui.status import status_embed
from bot.domain import ReferenceImage, VideoRequest
from bot.errors import BotCannotPost, BotError, WrongPlace
from bot.jobs.model import Job, State
from bot.jobs.prompts import clean_prompt
from bot.jobs.service import NewJob
from bot.media.images import check_declared
from bot.moderation.policy import Limits, Requester, check_activity, check_request
from bot.providers.base import VideoProvider

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
        private: bool = False,
        source: Job | None = None,
        kind: str = "new",
        source_provider_job_id: str | None = None,
    ) -> Job:
        """Validate, check the balance, fetch and fit the reference image, post the status message
        and queue the job. Raises BotError (with the sentence for the user) having charged nothing.

        With ``source`` (Retry/Remix/Continue) the new job lives where the source did: same server
        (its credits) and channel, even when the button was clicked in a direct message."""
        pipeline = self.bot.require_pipeline()
        service = pipeline.service
        request = dataclasses.replace(request, prompt=clean_prompt(request.prompt), image=None)
        if source is not None:
            guild_id = source.guild_id
        else:
            guild_id = str(interaction.guild_id) if interaction.guild_id else None
        if guild_id is None:
            # /sora is guild-only, but an interaction can claim anything: refuse rather than trust it.
            raise WrongPlace("no server", user_message="/sora works in a server's text channel, not here.")
        if not self.bot.guild_allowed(int(guild_id)):
            raise WrongPlace(f"guild {guild_id} not in ALLOWED_GUILD_IDS")
        # The server's rules first: a refused request costs nothing and uploads nothing.
        limits = await self._admit(interaction, request, guild_id, source)
        self._check_bot_can_post(interaction, guild_id, source, private=private)
        service.validate(request)
        allowance = limits.daily_allowance
        balance = await service.balance(guild_id, str(interaction.user.id), allowance=allowance)
        balance.split(service.cost(request))  # refuse early, before any upload; re-checked atomically below
        if attachment is not None:
            check_declared(
                attachment.size,
                attachment.content_type,
                attachment.filename,
                max_bytes=self.bot.settings.max_image_bytes,
            )
            # Attachment URLs expire: the bytes are fetched now and kept with the job.
            reference = await service.fit_reference(
                await _read_attachment(attachment), request.size, user_id=str(interaction.user.id)
            )
        channel: discord.abc.Messageable | None
        if source is not None and source.channel_id:
            channel = self.bot.get_partial_messageable(
                int(source.channel_id), guild_id=int(source.guild_id) if source.guild_id else None
            )
        else:
            channel = interaction.channel if isinstance(interaction.channel, discord.abc.Messageable) else None
        if channel is None:
            raise BotError("no channel", user_message="Please use this in a server text channel.")
        lineage = {"kind": kind, "source_job_id": source.id if source else None, "private": private}
        status = await self._post_status(channel, interaction, request, reference, lineage)
        if reference is not None and status.attachments:
            # URL-based providers fetch the reference from Discord's CDN: the fitted image just posted.
            reference = dataclasses.replace(reference, url=status.attachments[0].url)
        elif reference is not None and private and _needs_url(pipeline.providers.values()):
            try:
                url = await self._private_reference_url(interaction, reference)
                reference = dataclasses.replace(reference, url=url)
            except BaseException:
                await _delete_quietly(status)
                raise
        try:
            return await service.submit(
                NewJob(
                    dataclasses.replace(request, image=reference),
                    user_id=str(interaction.user.id),
                    guild_id=guild_id,
                    channel_id=str(status.channel.id),
                    status_message_id=str(status.id),
                    kind=kind,
                    source_job_id=source.id if source else None,
                    source_provider_job_id=source_provider_job_id,
                    private=private,
                ),
                allowance=allowance,
                admission=_admission(limits),
            )
        except BaseException:
            await _delete_quietly(status)
            raise

    async def _admit(
        self, interaction: discord.Interaction[Any], request: VideoRequest, guild_id: str, source: Job | None
    ) -> Limits:
        """Apply the server's /sora-admin rules (bot/moderation/policy.py); PolicyRefusal if refused.
        A click outside the job's server (a DM Retry) is judged as the member the user is in that
        server now, fetched from Discord: someone who left it, or lost its role, is refused."""
        settings = await self.bot.require_guild_settings().get(guild_id)
        limits = Limits.of(settings, self.bot.policy_defaults)
        in_guild = interaction.guild_id is not None and str(interaction.guild_id) == guild_id
        if source is not None and source.channel_id:
            channel_id: str | None = source.channel_id
        else:
            channel_id = str(interaction.channel_id) if interaction.channel_id else None
        if in_guild:
            parent_id = getattr(interaction.channel, "parent_id", None)
            roles = getattr(interaction.user, "roles", None)
        else:
            member = await self._member(guild_id, interaction.user.id)
            roles = member.roles
            parent_id = getattr(member.guild.get_channel_or_thread(int(channel_id or 0)), "parent_id", None)
        requester = Requester(
            user_id=str(interaction.user.id),
            channel_id=channel_id,
            parent_channel_id=str(parent_id) if parent_id else None,
            role_ids=frozenset(str(r.id) for r in roles) if roles is not None else None,
        )
        check_request(settings, limits, requester, request.prompt, request.model)
        unfinished, last = await self.bot.require_pipeline().repo.user_activity(guild_id, requester.user_id)
        check_activity(limits, unfinished, last, time.time())
        return limits

    async def _member(self, guild_id: str, user_id: int) -> discord.Member:
        """The user as a member of ``guild_id`` now (REST, not the cache: the bot keeps no member list)."""
        guild = self.bot.get_guild(int(guild_id))
        if guild is None:
            raise WrongPlace(
                f"bot is not in guild {guild_id}",
                user_message="I am no longer in the server this video was made in, so I can't make new ones for it.",
            )
        try:
            return await guild.fetch_member(user_id)
        except discord.NotFound as exc:
            raise WrongPlace(
                f"user {user_id} is not a member of guild {guild_id}",
                user_message="You are no longer a member of the server this video was made in, "
                "so you can't make new videos from it.",
            ) from exc

    def _check_bot_can_post(
        self, interaction: discord.Interaction[Any], guild_id: str, source: Job | None, *, private: bool
    ) -> None:
        """BotCannotPost when the bot may not post the status message and the video where the job
        will live: checked before charging, since a video made for nowhere is still billed."""
        channel_id = source.channel_id if source is not None and source.channel_id else str(interaction.channel_id)
        channel: object = None
        permissions: discord.Permissions | None = None
        if str(interaction.guild_id) == guild_id and str(interaction.channel_id) == channel_id:
            channel, permissions = interaction.channel, interaction.app_permissions
        else:
            guild = self.bot.get_guild(int(guild_id))
            channel = guild.get_channel_or_thread(int(channel_id)) if guild is not None else None
            if guild is not None and guild.me is not None and isinstance(channel, discord.abc.GuildChannel):
                permissions = channel.permissions_for(guild.me)
        if permissions is None:
            return  # unknown here: the status message below still fails politely if it cannot be sent
        needed = {"View Channel": permissions.view_channel, "Embed Links": permissions.embed_links}
        if isinstance(channel, discord.Thread):
            needed["Send Messages in Threads"] = permissions.send_messages_in_threads
        else:
            needed["Send Messages"] = permissions.send_messages
        if not private:  # a private video goes to the requester's DMs
            needed["Attach Files"] = permissions.attach_files
        missing = [name for name, ok in needed.items() if not ok]
        if missing:
            raise BotCannotPost(missing)

    async def _private_reference_url(self, interaction: discord.Interaction[Any], reference: ReferenceImage) -> str:
        """Where a URL-based provider fetches a private job's reference image: a direct message to the
        requester, never the channel (which would show what they keep private)."""
        try:
            message = await interaction.user.send(
                "The reference image of your private video:",
                file=discord.File(io.BytesIO(reference.data), filename=reference.filename),
            )
        except discord.HTTPException as exc:
            raise WrongPlace(
                f"cannot DM the private reference image: {exc.status}",
                user_message="A private video with a reference image needs your direct messages open (the image "
                "is kept there, not in the channel). Nothing was charged.",
            ) from exc
        return message.attachments[0].url

    async def _post_status(
        self,
        channel: discord.abc.Messageable,
        interaction: discord.Interaction[Any],
        request: VideoRequest,
        reference: ReferenceImage | None,
        lineage: dict[str, Any],
    ) -> discord.Message:
        """The channel message that shows this job's progress (sent with the bot token, not the
        interaction token, which dies after 15 minutes)."""
        pipeline = self.bot.require_pipeline()
        placeholder = Job(
            id=0,
            state=State.QUEUED,
            provider=pipeline.service.provider_for(request).name,
            user_id=str(interaction.user.id),
            prompt=request.prompt,
            seconds=request.seconds,
            size=request.size,
            model=request.model,
            created_at=interaction.created_at.timestamp(),
            updated_at=0,
            cost=pipeline.service.cost(request),
            **lineage,
        )
        embed = status_embed(placeholder)
        embed.title = "Video (starting)"
        # The fitted reference rides on the status message for every provider: URL-based providers
        # fetch it from there, and Retry/Remix find it there after the job's own copy is cleaned up.
        # A private job's reference never shows in the channel (see _private_reference_url).
        files = []
        if reference is not None and not lineage["private"]:
            files = [discord.File(io.BytesIO(reference.data), filename=reference.filename)]
        try:
            return await channel.send(embed=embed, files=files)
        except discord.Forbidden as exc:
            raise BotError(
                f"cannot post in channel: {exc.text}",
                user_message="I don't have permission to post in this channel (I need Send Messages, "
                "Embed Links and Attach Files).",
            ) from exc


def _admission(limits: Limits) -> Callable[[int, float | None], None]:
    """The per-user limits again, inside the reserving transaction: two quick requests cannot both
    slip under them."""
    in_force = limits

    def admit(unfinished: int, last_job_at: float | None) -> None:
        check_activity(in_force, unfinished, last_job_at, time.time())

    return admit


def _needs_url(providers: Iterable[VideoProvider]) -> bool:
    """Whether a provider the job may be routed to (failover included) fetches images by URL."""
    return any(p.capabilities.image_mode == "url" for p in providers)


async def _read_attachment(attachment: discord.Attachment) -> bytes:
    """The attached image's bytes, or a polite refusal when Discord's CDN does not hand them over."""
    try:
        return await attachment.read()
    except discord.HTTPException as exc:
        raise BotError(
            f"attachment {attachment.id} not readable: {exc}",
            user_message="I could not download your image from Discord. Nothing was charged; please attach it again.",
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
