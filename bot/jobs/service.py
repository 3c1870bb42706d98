"""The front door of the job pipeline, shared by the Discord cogs and the CLI."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.catalogue import Router
from bot.credits.ledger import Balance, CreditPolicy, SpendingCaps
from bot.jobs.model import Job
from bot.jobs.runner import JobRunner
from bot.jobs.store import Store
from bot.media.gate import ImageGate
from bot.media.images import prepare_reference
from bot.providers.base import ReferenceImage, VideoProvider, VideoRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewJob:
    """A validated request plus who asked and where."""

    request: VideoRequest
    user_id: str
    guild_id: str | None = None
    channel_id: str | None = None
    status_message_id: str | None = None
    kind: str = "new"
    """``new`` or how it was made from ``source_job_id``: ``retry``, ``remix``, ``continue``."""
    source_job_id: int | None = None
    source_provider_job_id: str | None = None
    """Set for a remix the provider can do natively (the runner then calls its ``remix``)."""
    private: bool = False


class JobService:
    def __init__(
        self,
        repo: Store,
        providers: Mapping[str, VideoProvider],
        router: Router,
        runner: JobRunner,
        policy: CreditPolicy,
        *,
        data_dir: Path,
        charge: bool = True,
        caps: SpendingCaps | None = None,
    ) -> None:
        self.repo = repo
        self.providers = providers
        self.router = router
        self.runner = runner
        self.policy = policy
        self.images_dir = data_dir / "images"
        self.charge = charge
        self.caps = caps or SpendingCaps()
        """The operator's daily caps, checked in the reserving transaction."""
        self.images = ImageGate()

    def validate(self, request: VideoRequest) -> None:
        """Raise InvalidRequest, naming what is allowed, for anything the request's model (and the
        provider that would run it) cannot do. No I/O."""
        self.router.validate(request)
        self.providers[self.router.first_host(request.model).provider].validate(request)

    def provider_for(self, request: VideoRequest) -> VideoProvider:
        """The provider a new job for ``request`` goes to first (the runner may fail over)."""
        return self.providers[self.router.first_host(request.model).provider]

    def cost(self, request: VideoRequest) -> int:
        """Credits for ``request``: the model's own price, else CREDITS_PER_SECOND."""
        if not self.charge:
            return 0
        spec = self.router.catalogue.get(request.model)
        if spec is None:
            return self.policy.cost(request.seconds, request.model)
        return spec.cost(
            request, default_rate=self.policy.credits_per_second, pro_multiplier=self.policy.pro_multiplier
        )

    async def balance(self, guild_id: str | None, user_id: str, *, allowance: int | None = None) -> Balance:
        """``allowance``: the server's daily allowance when its admins changed it."""
        daily = self.policy.daily_credits if allowance is None else allowance
        return await self.repo.balance(guild_id or "", user_id, daily)

    async def fit_reference(self, data: bytes, size: str, *, user_id: str | None = None) -> ReferenceImage:
        """Validate a reference image by its bytes and fit it to ``size`` (off the event loop, bounded;
        ``user_id``: one preparation in flight per member)."""
        return await self.images.run(user_id, lambda: prepare_reference(data, size))

    async def submit(
        self,
        new: NewJob,
        *,
        allowance: int | None = None,
        admission: Callable[[int, float | None], None] | None = None,
    ) -> Job:
        """Validate, reserve credits and store the job atomically, then wake the runner.

        ``allowance`` overrides the daily allowance (a server's setting); ``admission`` is the server's
        per-user limit check, run in the reserving transaction (see Store.create_job).
        Raises InvalidRequest, InsufficientCredits or the admission's refusal with nothing stored and
        nothing charged.
        """
        request = new.request
        self.validate(request)
        image_path: Path | None = None
        if request.image is not None:
            # Written before the row exists, so the runner never sees a job whose image is missing.
            image_path = self.images_dir / f"{uuid.uuid4().hex}.png"
            await asyncio.to_thread(_write_file, image_path, request.image.data)
        try:
            job = await self.repo.create_job(
                provider=self.provider_for(request).name,
                user_id=new.user_id,
                guild_id=new.guild_id,
                channel_id=new.channel_id,
                prompt=request.prompt,
                seconds=request.seconds,
                size=request.size,
                model=request.model,
                cost=self.cost(request),
                policy=self.policy,
                allowance=allowance,
                admission=admission,
                caps=self.caps,
                extra={
                    "image_path": str(image_path) if image_path else None,
                    "image_url": request.image.url if request.image else None,
                    "status_message_id": new.status_message_id,
                    "kind": new.kind,
                    "source_job_id": new.source_job_id,
                    "source_provider_job_id": new.source_provider_job_id,
                    "private": new.private,
                    "audio": request.audio,
                },
            )
        except BaseException:
            if image_path is not None:
                image_path.unlink(missing_ok=True)
            raise
        log.info("job %s queued for user %s (%s credits)", job.id, new.user_id, job.cost)
        self.runner.wake()
        return job

    async def cancel(self, job_id: int) -> Job:
        return await self.runner.cancel(job_id)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
