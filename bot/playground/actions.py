"""What the playground's form and buttons do: the same admission, validation, charging and lineage as
/sora and the buttons under a Discord video (bot/discord_ui/starter.py, cogs/creative.py), for local
members in the "playground" server. No Discord, no HTTP: the routes call these and show the errors."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.credits.ledger import Balance
from bot.domain import ReferenceImage, VideoRequest
from bot.errors import InvalidRequest, Refused
from bot.jobs.lineage import can_remix_natively, check_requester, retry_reference, usable_source
from bot.jobs.model import Job
from bot.jobs.prompts import clean_prompt
from bot.jobs.service import NewJob
from bot.media.images import check_declared
from bot.media.video import last_frame_async
from bot.moderation.policy import Defaults, Limits, Requester, check_activity, check_request
from bot.pipeline import Pipeline
from bot.playground.hub import JobHub
from bot.playground.members import CHANNEL_ID, GUILD_ID, Member, may_manage
from bot.playground.notifier import video_path

log = logging.getLogger(__name__)

HISTORY = 10
LEDGER_ROWS = 24


@dataclass(frozen=True)
class Upload:
    """A reference image from the form, as the browser declared it (untrusted)."""

    data: bytes
    content_type: str | None
    filename: str | None


@dataclass(frozen=True)
class MemberState:
    """What the credits panel, the quota line and the history show for one member."""

    balance: Balance
    ledger: list[dict[str, Any]]
    unfinished: int
    limits: Limits
    ready_at: float | None
    """When the cooldown lets this member start another video (None: now)."""
    history: list[Job]


class Playground:
    def __init__(
        self,
        pipeline: Pipeline,
        hub: JobHub,
        defaults: Defaults,
        *,
        videos_dir: Path,
        max_image_bytes: int,
    ) -> None:
        self.pipeline = pipeline
        self.hub = hub
        self.defaults = defaults
        self.videos_dir = videos_dir
        self.refs_dir = videos_dir / "references"
        self.max_image_bytes = max_image_bytes

    # --- /sora ------------------------------------------------------------------------------------

    def request_for(
        self, prompt: str, model: str | None, seconds: int | None, size: str | None, audio: bool | None
    ) -> VideoRequest:
        """The form's fields with the model's own defaults for those left empty (as /sora does)."""
        router = self.pipeline.router
        model = model or router.default()
        spec = router.spec(model)  # an unknown or unavailable model is refused with the choices
        if not prompt.strip():
            raise InvalidRequest("Please describe the video in the prompt.")
        return VideoRequest(
            prompt, seconds if seconds is not None else spec.durations[0], size or spec.sizes[0], model, audio=audio
        )

    async def start(
        self,
        who: Member,
        request: VideoRequest,
        *,
        upload: Upload | None = None,
        reference: ReferenceImage | None = None,
        source: Job | None = None,
        kind: str = "new",
        native: str | None = None,
    ) -> Job:
        """Rules, validation, balance, image, then submit: the order of the Discord starter, so a
        refusal costs nothing and stores nothing."""
        service = self.pipeline.service
        request = dataclasses.replace(request, prompt=clean_prompt(request.prompt), image=None)
        limits = await self._admit(who, request)
        service.validate(request)
        balance = await service.balance(GUILD_ID, who.id, allowance=limits.daily_allowance)
        balance.split(service.cost(request))
        if upload is not None:
            check_declared(len(upload.data), upload.content_type, upload.filename, max_bytes=self.max_image_bytes)
            reference = await service.fit_reference(upload.data, request.size)
        job = await service.submit(
            NewJob(
                dataclasses.replace(request, image=reference),
                user_id=who.id,
                guild_id=GUILD_ID,
                channel_id=CHANNEL_ID,
                kind=kind,
                source_job_id=source.id if source else None,
                source_provider_job_id=native,
            ),
            allowance=limits.daily_allowance,
            admission=lambda unfinished, last: check_activity(limits, unfinished, last, time.time()),
        )
        if reference is not None:
            # Kept for Retry/Remix after the runner has cleaned up the job's own copy.
            await asyncio.to_thread(_write, self.refs_dir / f"{job.id}.png", reference.data)
        self.hub.publish(job)
        log.info("playground job %s started by %s (%s)", job.id, who.id, kind)
        return job

    async def _admit(self, who: Member, request: VideoRequest) -> Limits:
        settings = await self.pipeline.guild_settings.get(GUILD_ID)
        limits = Limits.of(settings, self.defaults)
        requester = Requester(user_id=who.id, channel_id=CHANNEL_ID, role_ids=frozenset())
        check_request(settings, limits, requester, request.prompt, request.model)
        unfinished, last = await self.pipeline.repo.user_activity(GUILD_ID, who.id)
        check_activity(limits, unfinished, last, time.time())
        return limits

    # --- the buttons ------------------------------------------------------------------------------

    async def retry(self, who: Member, job_id: int) -> Job:
        source = await self._source(job_id, "retry")
        check_requester(who.id, source, "retry")
        found = await self._source_reference(source, source.size) if source.has_image else None
        reference = retry_reference(source, found)
        return await self.start(who, source.request(), reference=reference, source=source, kind="retry")

    async def remix(self, who: Member, job_id: int, prompt: str, seconds: int | None, size: str | None) -> Job:
        source = await self._source(job_id, "remix")
        check_requester(who.id, source, "remix")
        request = self._follow_up(source, prompt, seconds, size)
        provider = self.pipeline.providers.get(source.provider)
        native = None
        reference = None
        if can_remix_natively(source, request, provider):
            native = source.provider_job_id
        elif source.has_image:
            reference = await self._source_reference(source, request.size)
        return await self.start(who, request, reference=reference, source=source, kind="remix", native=native)

    async def continue_(self, who: Member, job_id: int, prompt: str, seconds: int | None, size: str | None) -> Job:
        source = await self._source(job_id, "continue")
        check_requester(who.id, source, "continue")
        path = video_path(self.videos_dir, source.id)
        if source.result_deleted_at or not source.result_message_id or not await asyncio.to_thread(path.exists):
            raise Refused(f"Video #{source.id} is no longer posted, so it cannot be continued.")
        request = self._follow_up(source, prompt, seconds, size)
        self.pipeline.service.validate(request)  # a wrong size or length is refused before any decoding
        frame = await last_frame_async(path)
        reference = await self.pipeline.service.fit_reference(frame, request.size)
        return await self.start(who, request, reference=reference, source=source, kind="continue")

    async def delete(self, who: Member, job_id: int) -> Job:
        source = await self._source(job_id, "delete")
        if not may_manage(who, source.user_id):
            raise Refused("Only the person who asked for this video (or a moderator) can delete it.")
        if source.result_deleted_at or not source.result_message_id:
            raise Refused(f"Video #{source.id} has already been deleted.")
        await asyncio.to_thread(video_path(self.videos_dir, source.id).unlink, missing_ok=True)
        await self.pipeline.repo.mark_result_deleted(source.id)
        log.info("playground job %s: video deleted by %s (requester %s)", source.id, who.id, source.user_id)
        return await self._republish(source.id)

    async def cancel(self, who: Member, job_id: int) -> Job:
        job = await self._job(job_id)
        if not may_manage(who, job.user_id):
            raise Refused("Only the person who asked for this video (or a moderator) can cancel it.")
        await self.pipeline.service.cancel(job_id)
        return await self._republish(job_id)

    # --- what the page shows ----------------------------------------------------------------------

    async def member_state(self, who: Member) -> MemberState:
        settings = await self.pipeline.guild_settings.get(GUILD_ID)
        limits = Limits.of(settings, self.defaults)
        repo = self.pipeline.repo
        balance = await self.pipeline.service.balance(GUILD_ID, who.id, allowance=limits.daily_allowance)
        unfinished, last = await repo.user_activity(GUILD_ID, who.id)
        ready_at = last + limits.cooldown_seconds if last is not None and limits.cooldown_seconds else None
        if ready_at is not None and ready_at <= time.time():
            ready_at = None
        history = [j for j in await repo.recent_jobs(who.id, limit=HISTORY * 2) if j.guild_id == GUILD_ID]
        ledger = await repo.ledger_entries(GUILD_ID, who.id, limit=LEDGER_ROWS)
        return MemberState(balance, ledger, unfinished, limits, ready_at, history[:HISTORY])

    async def channel(self, limit: int = 30) -> list[Job]:
        """The channel's messages: the latest jobs of the playground server, oldest first."""
        return list(reversed(await self.pipeline.repo.guild_jobs(GUILD_ID, limit=limit)))

    async def job(self, job_id: int) -> Job:
        return await self._job(job_id)

    # --- helpers ----------------------------------------------------------------------------------

    async def _job(self, job_id: int) -> Job:
        job = await self.pipeline.repo.get_job(job_id)
        if job is None or job.guild_id != GUILD_ID:
            raise Refused("That video no longer exists.")
        return job

    async def _republish(self, job_id: int) -> Job:
        job = await self._job(job_id)
        self.hub.publish(job)
        return job

    async def _source(self, job_id: int, action: str) -> Job:
        job = await self.pipeline.repo.get_job(job_id)
        return usable_source(job if job is not None and job.guild_id == GUILD_ID else None, action)

    def _follow_up(self, source: Job, prompt: str, seconds: int | None, size: str | None) -> VideoRequest:
        """A Remix/Continue request: the new prompt, the source's model and sound, the chosen length and size."""
        if not prompt.strip():
            raise InvalidRequest("Please describe the video in the prompt.")
        return VideoRequest(
            prompt,
            seconds if seconds is not None else source.seconds,
            size or source.size,
            source.model,
            audio=source.audio,
        )

    async def _source_reference(self, source: Job, size: str) -> ReferenceImage | None:
        """The source's reference image fitted to ``size``: the job's own file while kept, else the
        playground's copy. None when neither exists any more."""
        kept = [Path(source.image_path)] if source.image_path else []
        for candidate in [*kept, self.refs_dir / f"{source.id}.png"]:
            if await asyncio.to_thread(candidate.is_file):
                data = await asyncio.to_thread(candidate.read_bytes)
                return await self.pipeline.service.fit_reference(data, size)
        return None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
