"""Runs jobs: one task per active job, a persisted queue behind global and per-user caps, and
recovery of every unfinished job after a restart (see bot/jobs/model.py for what is resumed).

Several bot processes may share one database: a runner works a job only while it holds the job's
lease (bot/jobs/leases.py). Everything the runner knows of a job it works is in one ``RunningJob``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from bot.catalogue import Router
from bot.config import Settings
from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import (
    AuthenticationFailed,
    BotError,
    DatabaseUnavailable,
    GenerationFailed,
    JobInterrupted,
    JobNotResumable,
    LeaseLost,
    ModelUnavailable,
    ProviderError,
    ProviderOutOfCredits,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from bot.jobs.fair_queue import fair_order
from bot.jobs.leases import Leases, runner_id
from bot.jobs.model import ACTIVE, Job, State
from bot.jobs.notifier import Notifier
from bot.jobs.poll_planner import DEFAULT_SPREAD, Lognormal
from bot.jobs.polling import DEFAULT_POLL_COST, AdaptivePoller, request_cost
from bot.jobs.retry import DATABASE_BACKOFF, DISK_BACKOFF, disk_full, until_database_answers
from bot.jobs.store import Store
from bot.media.video import check_result_async
from bot.providers.base import PushesUpdates, VideoProvider, remixer

log = logging.getLogger(__name__)

MAX_TRANSIENT_POLL_ERRORS = 12


class CancelRefused(BotError):
    user_message = "This job can no longer be cancelled."


class ProviderGone(BotError):
    """A job's provider is no longer configured (the operator removed its key since)."""

    user_message = (
        "The video provider this job was sent to is no longer set up on this bot. "
        "Your credits were refunded; please run it again."
    )


def nothing_taken(error: ProviderError) -> bool:
    """Whether a failed submit proves the provider took nothing, so another host may be tried
    without the risk of making (and paying for) the video twice."""
    if isinstance(error, ProviderOutOfCredits | ModelUnavailable | AuthenticationFailed):
        return True
    return isinstance(error, RateLimited | ProviderUnavailable) and error.status in (429, 502, 503)


class JobEvents(Protocol):
    """What the runner reports as it works (bot.metrics.Metrics implements it)."""

    def job_taken(self, job: Job) -> None: ...
    def job_moved(self, job: Job) -> None: ...
    def job_settled(self, job: Job, kind: str) -> None: ...
    def job_polled(self, job: Job, polls: int) -> None: ...


@dataclass(eq=False)
class RunningJob:
    """A job this runner works: its task and what the scheduler, wakes and metrics need of it."""

    job_id: int
    user_id: str
    guild_id: str
    """Its server ("" in DMs): queued jobs are started server by server (fair_order)."""
    task: asyncio.Task[None]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by a provider callback or push: the poll waits no longer."""
    polls: int | None = None
    """Status requests sent for it (metrics; None: it was never polled here)."""
    watched: tuple[str, str] | None = None
    """(provider, provider job id) while it is polled, for providers that push updates."""


@dataclass
class _Polling:
    """One poll loop's state: the plan, where the job is, and what the last answers said."""

    job: Job
    provider: VideoProvider
    poller: AdaptivePoller
    started: float
    delay: float
    transient: int = 0
    """Status requests failed in a row."""


class JobRunner:
    def __init__(
        self,
        repo: Store,
        providers: Mapping[str, VideoProvider],
        notifier: Notifier,
        *,
        router: Router,
        work_dir: Path,
        max_running: int = Settings.max_running_jobs,
        max_running_per_user: int = Settings.max_running_jobs_per_user,
        job_timeout: float = Settings.job_timeout_seconds,
        max_result_bytes: int = Settings.max_result_bytes,
        typical_job_seconds: float | None = None,
        poll_cost: float = DEFAULT_POLL_COST,
        events: JobEvents | None = None,
        callback_url: Callable[[Job], Awaitable[str | None]] | None = None,
        calls_back: Callable[[str], bool] | None = None,
        lease_seconds: float = Settings.lease_seconds,
        owner: str | None = None,
    ) -> None:
        self.repo = repo
        self.lease_seconds = lease_seconds
        self.owner = owner or runner_id()
        """Who holds this runner's leases (see bot/storage/migrations/0005_leases.sql)."""
        self._leases = Leases(repo, self.owner, lease_seconds)
        self.events = events
        self.callback_url = callback_url
        """Makes (and stores) a job's provider callback URL before it is submitted; see bot/callbacks.py."""
        self.calls_back = calls_back
        """Whether a provider's jobs are sent a callback URL (then polling is only the safety net)."""
        self.providers = providers
        """Every configured provider by name; a job runs on ``providers[job.provider]``."""
        self.router = router
        self.notifier = notifier
        self.work_dir = work_dir
        self.max_running = max_running
        self.max_running_per_user = max_running_per_user
        self.job_timeout = job_timeout
        self.max_result_bytes = max_result_bytes
        self.typical_job_seconds = typical_job_seconds
        self.poll_cost = poll_cost
        """Seconds of detection delay one status request is worth (bot/jobs/poll_planner.py)."""
        self._running: dict[int, RunningJob] = {}
        """The jobs this runner works, by job id."""
        self._wake = asyncio.Event()
        self._positions: dict[int, int] = {}
        """The queue position last shown for each waiting job."""
        self._cancelling: set[int] = set()
        """Jobs being cancelled (queued or running): the scheduler leaves them alone."""
        self._orphaned = asyncio.Event()
        """A job's task ended before finishing its job: the lease loop takes such jobs over again at once."""
        self._loop_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for name, provider in self.providers.items():
            if provider.capabilities.pushes_updates and isinstance(provider, PushesUpdates):
                provider.subscribe(functools.partial(self._pushed, name))
        # A database that is down as we start is waited for like any outage (a retry claims again what
        # an interrupted pass claimed: our own leases count as free).
        await until_database_answers(self._recover, what="resuming unfinished jobs")
        self._loop_task = asyncio.create_task(self._schedule_loop(), name="job-scheduler")
        self._lease_task = asyncio.create_task(self._lease_loop(), name="job-leases")

    async def stop(self) -> None:
        """Stop working; unfinished jobs stay in the database and resume on the next start (or in
        another process at once: their leases are released)."""
        running = [r.task for r in self._running.values()]
        tasks = [t for t in (self._loop_task, self._lease_task, *running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = self._lease_task = None
        try:
            # Bounded: a database that is down must not hold up the shutdown.
            await asyncio.wait_for(self._leases.release_all(), timeout=5)
        except Exception:
            # They expire by themselves; another process then takes the jobs over.
            log.warning("could not release job leases of %s", self.owner, exc_info=True)

    def _pushed(self, provider: str, provider_job_id: str) -> None:
        """A provider says one of its jobs may have finished: poll it now."""
        for running in self._running.values():
            if running.watched == (provider, provider_job_id):
                running.wake.set()

    def wake(self, job_id: int | None = None) -> None:
        """Something changed: a new job was queued, or a provider callback arrived for ``job_id``."""
        self._wake.set()
        running = self._running.get(job_id) if job_id is not None else None
        if running is not None:
            running.wake.set()

    async def wait_idle(self) -> None:
        """Until no job is queued or active (the CLI waits on this)."""
        while True:
            if not self._running and not await self.repo.jobs_in([State.QUEUED]):
                return
            await asyncio.sleep(0.05)

    # --- scheduling ---------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Resume every started job nobody works on: ours from before a restart, or (later, from the
        lease loop) those of a process that died or stalled past its leases."""
        for job in await self._leases.claim_unworked(ACTIVE):
            if job.id in self._running or job.id in self._cancelling:
                continue
            self._leases.hold(job.id)
            provider = self.providers.get(job.provider)
            if job.state is State.SUBMITTING:
                await self._fail(job.id, JobInterrupted(f"job {job.id} was submitting when the bot stopped"))
            elif provider is None:
                await self._fail(job.id, ProviderGone(f"job {job.id}: provider {job.provider} is not configured"))
            elif not provider.capabilities.resumable and not self._result_path(job).exists():
                await self._fail(job.id, JobNotResumable(f"{job.provider} job {job.provider_job_id} lost on restart"))
            else:
                log.info("resuming job %s (%s, provider id %s)", job.id, job.state, job.provider_job_id)
                self._spawn(job)

    async def _schedule_loop(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                await self._schedule_once()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable as exc:
                failures += 1
                if failures == 1:
                    log.warning("scheduler: database unavailable (%s); retrying", exc.detail)
            except Exception:
                failures += 1
                log.exception("scheduler pass failed; retrying")
            else:
                if failures:
                    log.info("scheduler: working again after %d failed passes", failures)
                failures = 0
            # After a failure, the next pass comes soon: queued jobs start once the database is back.
            timeout = DATABASE_BACKOFF.delay(failures) if failures else 30
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands as the
            # event fires (a wake right before stop()), and the loop then never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _lease_loop(self) -> None:
        """Renew our leases and take over jobs whose lease ran out, every third of a lease; at once when
        a job's task gave up; every moment while the database does not answer."""
        failures = 0
        while True:
            timeout = DATABASE_BACKOFF.delay(failures) if failures else self.lease_seconds / 3
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # see _schedule_loop: not wait_for
                    await self._orphaned.wait()
            self._orphaned.clear()
            try:
                await self._heartbeat()
                await self._recover()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable as exc:
                failures += 1
                if failures == 1:
                    log.warning("lease upkeep: database unavailable (%s); retrying", exc.detail)
                continue
            except Exception:
                failures += 1
                log.exception("lease upkeep failed; retrying")
            else:
                if failures:
                    log.info("lease upkeep: working again after %d failed passes", failures)
                failures = 0
            self._wake.set()  # queued jobs of another process may have become free too

    async def _heartbeat(self) -> None:
        def lost(job_id: int) -> None:
            running = self._running.get(job_id)
            if running is not None:
                running.task.cancel()

        await self._leases.heartbeat(lost)

    async def _schedule_once(self) -> None:
        # Per-user caps count this process's jobs only; several processes may each run one per user.
        running = Counter(r.user_id for r in self._running.values())
        waiting: list[Job] = []
        chosen: list[Job] = []
        queued = fair_order(
            await self.repo.jobs_in([State.QUEUED]), Counter(r.guild_id for r in self._running.values())
        )
        for job in queued:
            if job.id in self._running or job.id in self._cancelling:
                continue
            if job.image_path and not await self._image_here(job):
                continue  # another process's upload: that process sends it
            if len(self._running) + len(chosen) < self.max_running and running[job.user_id] < self.max_running_per_user:
                running[job.user_id] += 1
                chosen.append(job)
            else:
                waiting.append(job)
        if chosen:
            for job in await self._leases.claim_queued([job.id for job in chosen]):
                self._spawn(job)
        positions = {job.id: n for n, job in enumerate(waiting, start=1)}
        for job in waiting:
            if self._positions.get(job.id) != positions[job.id]:
                await self._notify(Job(**{**job.__dict__, "queue_position": positions[job.id]}))
        self._positions = positions

    def _spawn(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        running = RunningJob(job.id, job.user_id, job.guild_id or "", task)
        self._running[job.id] = running
        if self.events is not None:
            self.events.job_taken(job)

        def finished(task: asyncio.Task[None]) -> None:
            # Whatever ended the task, stop renewing: a lease left behind expires and is taken over.
            if self._leases.holds(job.id) and not task.cancelled() and job.id not in self._cancelling:
                self._orphaned.set()  # it gave up on an unfinished job: take it over again at once
            self._leases.drop(job.id)
            if self._running.get(job.id) is running:
                del self._running[job.id]
            self._wake.set()

        task.add_done_callback(finished)

    # --- one job ------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        """The job's task: never ends with an exception (nobody awaits it to retrieve one)."""
        try:
            await self._work(job)
        except LeaseLost as exc:
            # Another process works the job now; nothing of ours was written.
            log.warning("job %s: stopped here: %s", job.id, exc.detail)
        except Exception:
            # Even failing it went wrong. The job keeps our lease: the lease loop resumes it at once.
            log.exception("job %s: stopped by an unexpected error; it will be resumed", job.id)

    async def _work(self, job: Job) -> None:
        job_id = job.id
        failures = 0
        while True:
            try:
                await self._drive(job)
                return
            except (asyncio.CancelledError, LeaseLost):
                raise
            except DatabaseUnavailable as exc:
                # A read not retried in place (the typical duration): not the job's fault. Every state
                # write is retried where it is made (_move), so the stored state is where we were:
                # carry on from there once the database answers.
                failures += 1
                log.warning("job %s: database unavailable (%s); resuming from the stored state", job.id, exc.detail)
                await asyncio.sleep(DATABASE_BACKOFF.delay(failures))
            except OSError as exc:
                if not disk_full(exc):
                    return await self._crashed(job, exc)
                failures += 1
                delay = DISK_BACKOFF.delay(failures)
                log.error(
                    "job %s: the data directory %s is full (%s); free some space: trying this step again in %.0fs",
                    job.id,
                    self.work_dir,
                    exc.strerror,
                    delay,
                )
                await asyncio.sleep(delay)
            except BotError as exc:
                return await self._fail(job.id, exc)
            except Exception as exc:
                return await self._crashed(job, exc)
            stored = await until_database_answers(lambda: self.repo.get_job(job_id), what=f"job {job_id}")
            if stored is None or stored.state.terminal:
                return
            if stored.state is State.SUBMITTING:
                # Not expected (the database calls around a submit wait in place); never submit twice.
                return await self._fail(job_id, JobInterrupted(f"job {job_id} stopped while submitting"))
            job = stored

    async def _crashed(self, job: Job, exc: Exception) -> None:
        log.error("job %s crashed", job.id, exc_info=exc)
        await self._fail(job.id, GenerationFailed(f"internal error: {type(exc).__name__}: {exc}"))

    def _provider(self, job: Job) -> VideoProvider:
        provider = self.providers.get(job.provider)
        if provider is None:
            raise ProviderGone(f"job {job.id}: provider {job.provider} is not configured")
        return provider

    async def _drive(self, job: Job) -> None:
        if job.state is State.QUEUED:
            image = await asyncio.to_thread(self._load_image, job)
            if job.provider not in self.providers:
                # Queued before the operator changed providers: the model's first host now.
                job = replace(job, provider=self.router.first_host(job.model).provider)
            job = await self._move(job, State.SUBMITTING, provider=job.provider)
            job, provider_job_id = await self._submit(job, job.request(image))
            job = await self._move(job, State.RUNNING, provider_job_id=provider_job_id)
            log.info("job %s submitted to %s as %s", job.id, job.provider, provider_job_id)
        status = JobStatus(JobState.SUCCEEDED, result_url=job.result_url, expires_at=job.result_expires_at)
        if job.state is State.RUNNING:
            status = await self._poll(job)
            job = await self._move(
                job,
                State.DOWNLOADING,
                progress=100.0,
                result_url=status.result_url,
                result_expires_at=status.expires_at,
            )
        path = self._result_path(job)
        if job.state is State.DELIVERING and not path.exists():
            job = await self._move(job, State.DOWNLOADING)
        if job.state is State.DOWNLOADING:
            assert job.provider_job_id is not None  # noqa: S101 - stored with RUNNING
            await self._provider(job).download(job.provider_job_id, status, path, self.max_result_bytes)
            await check_result_async(path)  # only real videos are posted: refused ones are refunded
            job = await self._move(job, State.DELIVERING)
        delivery = await self.notifier.deliver(job, path)
        done = job.moved(
            State.SUCCEEDED,
            time.time(),
            result_message_id=delivery.message_id,
            delivery_note=delivery.note,
            result_url=delivery.url or job.result_url,
        )
        await self._finish(done, "capture")

    async def _submit(self, job: Job, request: VideoRequest) -> tuple[Job, str]:
        """Send the job to its provider; on an answer proving nothing was taken, once to the next
        provider hosting its model. Returns the job (its provider may have changed) and the
        provider's id for it."""
        while True:
            provider = self._provider(job)
            if self.callback_url is not None:
                # Stores the URL's secret: waits for the database here, as nothing was sent yet.
                make_url = functools.partial(self.callback_url, job)
                url = await until_database_answers(make_url, what=f"job {job.id}: callback")
                request = replace(request, callback_url=url)
            try:
                remix = remixer(provider)
                if job.kind == "remix" and job.source_provider_job_id and remix is not None:
                    # The provider's native remix of a video it still holds (same length and size).
                    return job, await remix.remix(job.source_provider_job_id, job.prompt)
                return job, await provider.submit(request)
            except ProviderError as exc:
                error: ProviderError = exc
                if isinstance(exc, ProviderRequestRejected) and exc.status == 404:
                    error = ModelUnavailable(exc.detail, status=404)  # the endpoint for this model is gone
                if isinstance(error, ModelUnavailable):
                    log.warning(
                        "job %s: %s says model %s no longer exists; hiding it there", job.id, job.provider, job.model
                    )
                    self.router.mark_gone(job.provider, job.model)
                after = None
                if job.failover_from is None and job.kind != "remix" and nothing_taken(error):
                    after = self.router.next_host(job.model, [job.provider])
                if after is None or after.provider not in self.providers:
                    raise error from exc
                log.warning(
                    "job %s: %s took nothing (%s); moving to %s", job.id, job.provider, error.detail, after.provider
                )
                job = await self._move(job, State.SUBMITTING, provider=after.provider, failover_from=job.provider)

    async def _poll(self, job: Job) -> JobStatus:
        """Ask the provider about ``job`` on the planned schedule until it is done: plan, then wait, ask
        and react until an answer ends it (or the job's time runs out)."""
        assert job.provider_job_id is not None  # noqa: S101
        running = self._running.get(job.id)
        if running is not None:
            running.watched = (job.provider, job.provider_job_id)
        try:
            polling = await self._plan(job)
            while True:
                await self._wait(polling, running)
                status = await self._ask(polling, running)
                if status is not None:
                    done = await self._react(polling, status)
                    if done is not None:
                        return done
        finally:
            if running is not None:
                running.watched = None

    async def _plan(self, job: Job) -> _Polling:
        """The poll schedule for ``job``: the model's typical time and spread (the provider's own time
        when it has one) as the prior, refined by what the model's recent jobs took; or the operator's
        figure as is."""
        provider = self._provider(job)
        spec = self.router.catalogue.get(job.model)
        if self.typical_job_seconds:
            median = self.typical_job_seconds
        elif spec is not None and not provider.capabilities.knows_duration(job.model):
            median = spec.expected_seconds(job.seconds)
        else:
            median = provider.capabilities.expected_duration(job.request())
        prior = Lognormal.clamped(median, spec.spread if spec is not None else DEFAULT_SPREAD)
        if not self.typical_job_seconds:
            prior = prior.refined(await self.repo.recent_durations(job.provider, job.model))
        calls_back = self.calls_back is not None and self.calls_back(job.provider)
        cost = request_cost(self.poll_cost, prior.median, calls_back=calls_back)
        poller = AdaptivePoller(median=prior.median, spread=prior.sigma, request_cost=cost)
        await asyncio.to_thread(poller.plan)  # a new distribution's plan takes milliseconds: not on the loop
        started = job.submitted_at or time.time()
        return _Polling(job, provider, poller, started, delay=poller.next_delay(time.time() - started))

    async def _wait(self, polling: _Polling, running: RunningJob | None) -> None:
        """Until the next planned look, or a wake; ProviderTimeout (after asking the provider to stop)
        once the job's time is up."""
        job = polling.job
        assert job.provider_job_id is not None  # noqa: S101
        remaining = polling.started + self.job_timeout - time.time()
        if remaining <= 0:
            with contextlib.suppress(ProviderError):
                await polling.provider.cancel(job.provider_job_id)
            raise ProviderTimeout(f"job {job.id} still not done after {self.job_timeout:.0f}s")
        if running is None:
            await asyncio.sleep(min(polling.delay, remaining))
            return
        # A wake (provider callback) cuts the wait short. Cleared after waiting, not before, so one
        # arriving during the status request that follows still counts for the next wait.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(polling.delay, remaining)):  # see _schedule_loop: not wait_for
                await running.wake.wait()
        running.wake.clear()

    async def _ask(self, polling: _Polling, running: RunningJob | None) -> JobStatus | None:
        """One status request; None when it failed in a way worth retrying (the next delay is set)."""
        job = polling.job
        assert job.provider_job_id is not None  # noqa: S101
        if running is not None:
            running.polls = (running.polls or 0) + 1
        try:
            status = await polling.provider.status(job.provider_job_id)
        except RateLimited as exc:
            polling.delay = polling.poller.rate_limited(exc.retry_after)
            log.info("job %s: status rate limited, backing off %.0fs", job.id, polling.delay)
            return None
        except ProviderError as exc:
            polling.transient += 1
            if not exc.retryable or polling.transient > MAX_TRANSIENT_POLL_ERRORS:
                raise
            # Grows with each failure, on the job's own time scale (5 s steps for a real video).
            polling.delay = min(polling.poller.first_poll * polling.transient, 60.0)
            log.warning("job %s: status check failed (%s); retry in %.0fs", job.id, exc.detail, polling.delay)
            return None
        polling.transient = 0
        return status

    async def _react(self, polling: _Polling, status: JobStatus) -> JobStatus | None:
        """Act on an answer: the final status when the job is done (GenerationFailed or the provider's
        error when it failed); else show its progress and plan the next look."""
        elapsed = time.time() - polling.started
        polling.poller.observe(elapsed, status.progress)
        if status.state is JobState.SUCCEEDED:
            return status
        if status.state is JobState.FAILED:
            raise status.error or GenerationFailed(f"job {polling.job.id} failed without a reason")
        job = polling.job
        if status.progress is not None and status.progress != job.progress:
            polling.job = await self._move(job, State.RUNNING, progress=status.progress)
        elif status.queue_position != job.queue_position:
            # The provider's own queue (display only, not stored): shown on the status message.
            polling.job = replace(job, queue_position=status.queue_position)
            await self._notify(polling.job)
        polling.delay = polling.poller.next_delay(elapsed, hint=status.poll_after)
        return None

    # --- transitions --------------------------------------------------------------------------

    async def _move(self, job: Job, target: State, **changes: object) -> Job:
        """Store the new state first, then tell the world."""
        moved = job.moved(target, time.time(), **changes)
        owner = self._leases.fence(job.id)
        # A write the database refused is made again once it answers: the job carries on from here.
        await until_database_answers(lambda: self.repo.save_job(moved, owner=owner), what=f"job {job.id}: {target}")
        if target is not job.state:
            log.info("job %s: %s -> %s", job.id, job.state, target, extra={"job_id": job.id, "state": target.value})
            if self.events is not None:
                self.events.job_moved(moved)
        await self._notify(moved)
        return moved

    async def _fail(self, job_id: int, error: BotError) -> None:
        job = await until_database_answers(lambda: self.repo.get_job(job_id), what=f"job {job_id}")
        if job is None or job.state.terminal:
            return
        log.warning("job %s failed: %s: %s", job_id, type(error).__name__, error.detail)
        failed = job.moved(
            State.FAILED, time.time(), error_class=type(error).__name__, error_message=error.user_message
        )
        await self._finish(failed, "refund")

    async def cancel(self, job_id: int) -> Job:
        """Cancel a queued job, or a running one the provider stops, and refund it; else CancelRefused."""
        # Keeps the scheduler from starting a queued job while we are cancelling it: it would then
        # submit (and pay for) a job whose row we are about to mark cancelled and refunded.
        self._cancelling.add(job_id)
        try:
            return await self._cancel(job_id)
        finally:
            self._cancelling.discard(job_id)

    async def _cancel(self, job_id: int) -> Job:
        """Only a job nobody is billed for yet is cancelled and refunded: one still queued, or one the
        provider confirms it stopped. A job generating at a provider that cannot stop it is billed
        anyway, so Cancel is refused and the video is posted (README, "Cancel")."""
        job = await self.repo.get_job(job_id)
        if job is None or job.state.terminal:
            raise CancelRefused(f"job {job_id} is finished")
        if job.state is State.RUNNING:
            await self._stop_at_provider(job)
        elif job.state is not State.QUEUED:
            raise CancelRefused(
                f"job {job_id} is {job.state}",
                user_message="This job is between steps and cannot be cancelled right now."
                if job.state is State.SUBMITTING
                else "The video is already done and being posted.",
            )
        cancelled = job.moved(State.CANCELLED, time.time(), error_message="Cancelled. Your credits were refunded.")
        # One statement fenced by the state and the lease: a job that moved on meanwhile (it may be
        # posting) or that another live process works is left alone, and nothing is refunded.
        if not await self.repo.cancel_job(cancelled, from_states=[job.state], owner=self.owner):
            current = await self.repo.get_job(job_id)
            if current is not None and current.state in (State.FAILED, State.CANCELLED):
                return current  # its runner saw the provider's cancel first: stopped and refunded all the same
            raise CancelRefused(
                f"job {job_id} moved on from {job.state} or is leased elsewhere",
                user_message="This job has just moved on (or another instance of the bot is working on it) "
                "and can no longer be cancelled.",
            )
        running = self._running.get(job_id)
        if running is not None:
            # Its next fenced write would fail anyway; stop it before it polls or uploads again.
            running.task.cancel()
            await asyncio.gather(running.task, return_exceptions=True)
        self._leases.drop(job_id)
        await self._finished(cancelled, "refund", settled=True, polls=running.polls if running is not None else None)
        self._wake.set()
        return cancelled

    async def _stop_at_provider(self, job: Job) -> None:
        """CancelRefused unless the provider confirms it stopped ``job``: otherwise it bills the video."""
        billed = CancelRefused(
            f"job {job.id}: {job.provider} cannot stop {job.provider_job_id}",
            user_message="This video is already generating and the provider cannot stop it, so it is paid for: "
            "it will be posted when it is ready.",
        )
        provider = self.providers.get(job.provider)
        if not job.provider_job_id or provider is None or not provider.capabilities.can_cancel:
            raise billed
        try:
            stopped = await provider.cancel(job.provider_job_id)
        except ProviderError as exc:
            log.warning("job %s: provider cancel failed: %s", job.id, exc.detail)
            stopped = False
        if not stopped:
            raise billed

    async def _finish(self, job: Job, settle: str) -> None:
        """Store the terminal state and settle credits atomically, then clean up and tell the world."""
        owner = self._leases.fence(job.id)
        tries = 0

        async def store() -> bool:
            nonlocal tries
            tries += 1
            try:
                return await self.repo.finish_job(job, settle, owner=owner)
            except LeaseLost:
                # An earlier try may have committed before its connection dropped: that was ours.
                if tries > 1 and owner is not None and await self._landed(job):
                    return True
                raise

        settled = await until_database_answers(store, what=f"job {job.id}: {job.state}")
        self._leases.drop(job.id)  # finished: nothing left to renew
        running = self._running.get(job.id)
        await self._finished(job, settle, settled=settled, polls=running.polls if running is not None else None)

    async def _finished(self, job: Job, settle: str, *, settled: bool, polls: int | None) -> None:
        """After a stored terminal state: log, metrics (``polls``: the status requests of a job worked
        here), files, and the status message."""
        log.info(
            "job %s: %s (credits: %s)", job.id, job.state, settle, extra={"job_id": job.id, "state": job.state.value}
        )
        if self.events is not None:
            self.events.job_moved(job)
            if settled:
                self.events.job_settled(job, settle)
            if polls is not None:
                self.events.job_polled(job, polls)
        await asyncio.to_thread(self._cleanup, job)
        await self._notify(job)

    async def _landed(self, job: Job) -> bool:
        stored = await self.repo.get_job(job.id)
        return stored is not None and stored.state is job.state and stored.finished_at == job.finished_at

    async def _notify(self, job: Job) -> None:
        try:
            await self.notifier.job_changed(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("notifier failed for job %s", job.id)

    # --- files --------------------------------------------------------------------------------

    def _result_path(self, job: Job) -> Path:
        return self.work_dir / f"job-{job.id}.mp4"

    async def _image_here(self, job: Job) -> bool:
        """Whether this process can send ``job``'s reference image. A process without a DATA_DIR shared
        with the one that stored it leaves the job to that one, unless it waited a whole lease (that
        process may be gone: trying, and failing with a refund, beats waiting forever)."""
        if time.time() - job.created_at > self.lease_seconds:
            return True
        return await asyncio.to_thread(Path(str(job.image_path)).exists)

    def _load_image(self, job: Job) -> ReferenceImage | None:
        if not job.image_path:
            return None
        return ReferenceImage(data=Path(job.image_path).read_bytes(), content_type="image/png", url=job.image_url)

    def _cleanup(self, job: Job) -> None:
        self._result_path(job).unlink(missing_ok=True)
        if job.image_path:
            Path(job.image_path).unlink(missing_ok=True)
