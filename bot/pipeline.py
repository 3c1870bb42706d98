"""Wire the job pipeline (storage, provider, runner, service) from settings. Shared by both front ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from bot.callbacks import Callbacks
from bot.catalogue import Catalogue, Router, load_catalogue
from bot.config import Settings
from bot.credits.ledger import CreditPolicy, SpendingCaps
from bot.jobs.notifier import Notifier
from bot.jobs.runner import JobRunner
from bot.jobs.service import JobService
from bot.jobs.store import GuildSettingsStore, Store
from bot.metrics import Metrics
from bot.providers.base import VideoProvider
from bot.providers.registry import build_providers
from bot.storage.backend import open_storage


@dataclass
class Pipeline:
    repo: Store
    providers: dict[str, VideoProvider]
    """Every configured provider by name, most preferred first."""
    router: Router
    runner: JobRunner
    service: JobService
    metrics: Metrics
    callbacks: Callbacks
    guild_settings: GuildSettingsStore

    @property
    def catalogue(self) -> Catalogue:
        return self.router.catalogue


@contextlib.asynccontextmanager
async def open_pipeline(
    settings: Settings,
    session: aiohttp.ClientSession,
    notifier: Notifier,
    *,
    charge: bool = True,
    provider: VideoProvider | None = None,
    start_runner: bool = True,
    metrics: Metrics | None = None,
) -> AsyncIterator[Pipeline]:
    """Connect the database, build the providers, start the runner (resuming unfinished jobs).
    ``provider``: run everything on this one instead (tests and benchmarks)."""
    metrics = metrics or Metrics()
    catalogue = load_catalogue(settings.models_file, settings.enabled_models)
    repo, guild_settings = await open_storage(settings)  # SQLite or PostgreSQL, from DATABASE_URL
    if provider is not None:
        providers: dict[str, VideoProvider] = {provider.name: provider}
    else:
        providers = build_providers(settings, session, catalogue, on_request=metrics.provider_request)
    router = Router.for_providers(providers, catalogue, default_model=settings.default_model)
    callbacks = Callbacks(repo, settings.public_base_url, providers)
    runner = JobRunner(
        repo,
        providers,
        notifier,
        router=router,
        work_dir=settings.data_dir / "results",
        max_running=settings.max_running_jobs,
        max_running_per_user=settings.max_running_jobs_per_user,
        job_timeout=settings.job_timeout_seconds,
        max_result_bytes=settings.max_result_bytes,
        typical_job_seconds=settings.typical_job_seconds,
        poll_cost=settings.poll_cost_seconds,
        events=metrics,
        callback_url=callbacks.url_for,
        calls_back=callbacks.enabled_for,
        lease_seconds=settings.lease_seconds,  # several processes on one database: see README
    )
    policy = CreditPolicy(settings.daily_credits, settings.credits_per_second, settings.pro_credit_multiplier)
    caps = SpendingCaps(settings.server_daily_credits, settings.global_daily_credits, settings.max_allowance)
    service = JobService(repo, providers, router, runner, policy, data_dir=settings.data_dir, charge=charge, caps=caps)
    try:
        if start_runner:
            await runner.start()
        yield Pipeline(repo, providers, router, runner, service, metrics, callbacks, guild_settings)
    finally:
        await runner.stop()
        for each in providers.values():
            await each.aclose()
        await repo.close()
