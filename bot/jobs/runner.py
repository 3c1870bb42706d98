"""Runs jobs: one task per active job, a persisted queue behind global and per-user caps, and
recovery of every unfinished job after a restart (see bot/jobs/model.py for what is resumed).

Several bot processes may share one database. A runner works a job only while it holds the job's
lease (``claim_jobs``); a heartbeat renews its leases every ``lease_seconds / 3``, and every state
write is fenced by the lease, so a process that lost a job (it stalled past its lease and another
took over) can no longer move or settle it. A crashed process's jobs are taken over once their
leases expire (at once, when the dead process ran on this host)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from bot.errors import (
    BotError,
    GenerationFailed,
    JobInterrupted,
    JobNotResumable,
    LeaseLost,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)
from bot.jobs.fair_queue import fair_order
from bot.jobs.model import ACTIVE, Job, State
from bot.jobs.notifier import Notifier
from bot.jobs.polling import AdaptivePoller
from bot.providers.base import JobState, JobStatus, ReferenceImage, VideoProvider
from bot.storage.repository import Repository

log = logging.getLogger(__name__)

MAX_TRANSIENT_POLL_ERRORS = 12


def runner_id() -> str:
    """``host:pid:random``: unique per runner, and tells a runner on the same host whether we are alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def dead_local_owner(owner: str, me: str) -> bool:
    """Whether ``owner`` was a runner on this host whose process is gone (a crash or a restart within
    its lease): its jobs need not wait for the lease to expire."""
    parts = owner.rsplit(":", 2)
    if owner == me or len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return True  # an earlier process that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


class CancelRefused(BotError):
    user_message = "This job can no longer be cancelled."


class JobEvents(Protocol):
    """What the runner reports as it works (bot.metrics.Metrics implements it)."""

    def job_taken(self, job: Job) -> None: ...
    def job_moved(self, job: Job) -> None: ...
    def job_settled(self, job: Job, kind: str) -> None: ...
    def job_polled(self, job: Job, polls: int) -> None: ...


class JobRunner:
    def __init__(
        self,
        repo: Repository,
        provider: VideoProvider,
        notifier: Notifier,
        *,
        work_dir: Path,
        max_running: int = 4,
        max_running_per_user: int = 1,
        job_timeout: float = 1800.0,
        max_result_bytes: int = 512 * 1024 * 1024,
        typical_job_seconds: float | None = None,
        events: JobEvents | None = None,
        callback_url: Callable[[Job], Awaitable[str | None]] | None = None,
        lease_seconds: float = 60.0,
        owner: str | None = None,
    ) -> None:
        self.repo = repo
        self.lease_seconds = lease_seconds
        self.owner = owner or runner_id()
        """Who holds this runner's leases (see bot/storage/migrations/0005_leases.sql)."""
        self.events = events
        self.callback_url = callback_url
        """Makes (and stores) a job's provider callback URL before it is submitted; see bot/callbacks.py."""
        self.provider = provider
        self.notifier = notifier
        self.work_dir = work_dir
        self.max_running = max_running
        self.max_running_per_user = max_running_per_user
        self.job_timeout = job_timeout
        self.max_result_bytes = max_result_bytes
        self.typical_job_seconds = typical_job_seconds
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._owners: dict[int, str] = {}
        self._guilds: dict[int, str] = {}
        """The server of each running job: queued jobs are started server by server (fair_order)."""
        self._wake = asyncio.Event()
        self._job_events: dict[int, asyncio.Event] = {}
        self._polls: dict[int, int] = {}
        self._positions: dict[int, int] = {}
        self._cancelling: set[int] = set()
        self._leased: set[int] = set()
        """Jobs whose lease this runner holds and renews; their writes are fenced by it."""
        self._dead_owners: list[str] = []
        """Lease holders known dead (processes of this host that are gone): their leases count as free."""
        self._loop_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        await self._recover()
        self._loop_task = asyncio.create_task(self._schedule_loop(), name="job-scheduler")
        self._lease_task = asyncio.create_task(self._lease_loop(), name="job-leases")

    async def stop(self) -> None:
        """Stop working; unfinished jobs stay in the database and resume on the next start (or in
        another process at once: their leases are released)."""
        tasks = [t for t in (self._loop_task, self._lease_task, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = self._lease_task = None
        try:
            # Bounded: a database that is down must not hold up the shutdown.
            await asyncio.wait_for(self.repo.release_leases(self.owner), timeout=5)
        except Exception:
            # They expire by themselves; another process then takes the jobs over.
            log.warning("could not release job leases of %s", self.owner, exc_info=True)

    def wake(self, job_id: int | None = None) -> None:
        """Something changed: a new job was queued, or a provider callback arrived for ``job_id``."""
        self._wake.set()
        if job_id is not None and job_id in self._job_events:
            self._job_events[job_id].set()

    async def wait_idle(self) -> None:
        """Until no job is queued or active (the CLI waits on this)."""
        while True:
            if not self._tasks and not await self.repo.jobs_in([State.QUEUED]):
                return
            await asyncio.sleep(0.05)

    # --- scheduling ---------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Resume every started job nobody works on: ours from before a restart, or (later, from the
        lease loop) those of a process that died or stalled past its leases."""
        self._dead_owners = [o for o in await self.repo.lease_owners() if dead_local_owner(o, self.owner)]
        claimed = await self.repo.claim_jobs(
            self.owner, ACTIVE, lease_seconds=self.lease_seconds, free_owners=self._dead_owners
        )
        for job in claimed:
            if job.id in self._tasks:  # cannot happen: our own live leases are never claimable
                continue
            self._leased.add(job.id)
            if job.state is State.SUBMITTING:
                await self._fail(job.id, JobInterrupted(f"job {job.id} was submitting when the bot stopped"))
            elif not self.provider.capabilities.resumable and not self._result_path(job).exists():
                await self._fail(job.id, JobNotResumable(f"{job.provider} job {job.provider_job_id} lost on restart"))
            else:
                log.info("resuming job %s (%s, provider id %s)", job.id, job.state, job.provider_job_id)
                self._spawn(job)

    async def _schedule_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._schedule_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed; retrying")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands as the
            # event fires (a wake right before stop()), and the loop then never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await self._wake.wait()

    async def _lease_loop(self) -> None:
        """Renew our leases and take over jobs whose lease ran out, every third of a lease."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._heartbeat()
                await self._recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease upkeep failed; retrying")
            self._wake.set()  # queued jobs of another process may have become free too

    async def _heartbeat(self) -> None:
        held = set(self._leased)
        if not held:
            return
        kept = await self.repo.renew_leases(self.owner, held, lease_seconds=self.lease_seconds)
        for job_id in held - kept:
            # A job we finished a moment ago is no longer renewable either: look before stopping it.
            current = await self.repo.get_job(job_id)
            if job_id not in self._leased or current is None or current.state.terminal:
                self._leased.discard(job_id)
                continue
            log.warning("job %s: lease lost (another process took it over); stopping work on it here", job_id)
            self._leased.discard(job_id)
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()

    async def _schedule_once(self) -> None:
        # Per-user caps count this process's jobs only; several processes may each run one per user.
        running = Counter(self._owners.values())
        waiting: list[Job] = []
        chosen: list[Job] = []
        queued = fair_order(await self.repo.jobs_in([State.QUEUED]), Counter(self._guilds.values()))
        for job in queued:
            if job.id in self._tasks or job.id in self._cancelling:
                continue
            if job.image_path and not await self._image_here(job):
                continue  # another process's upload: that process sends it
            if len(self._tasks) + len(chosen) < self.max_running and running[job.user_id] < self.max_running_per_user:
                running[job.user_id] += 1
                chosen.append(job)
            else:
                waiting.append(job)
        if chosen:
            # Another process may claim some of them first: it then runs them.
            ids = [job.id for job in chosen]
            for job in await self.repo.claim_jobs(
                self.owner, [State.QUEUED], lease_seconds=self.lease_seconds, job_ids=ids, free_owners=self._dead_owners
            ):
                self._leased.add(job.id)
                self._spawn(job)
        positions = {job.id: n for n, job in enumerate(waiting, start=1)}
        for job in waiting:
            if self._positions.get(job.id) != positions[job.id]:
                await self._notify(Job(**{**job.__dict__, "queue_position": positions[job.id]}))
        self._positions = positions

    def _spawn(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._tasks[job.id] = task
        self._owners[job.id] = job.user_id
        self._guilds[job.id] = job.guild_id or ""
        self._job_events[job.id] = asyncio.Event()
        if self.events is not None:
            self.events.job_taken(job)

        def finished(_: asyncio.Task[None]) -> None:
            # Whatever ended the task, stop renewing: a lease left behind expires and is taken over.
            self._leased.discard(job.id)
            self._tasks.pop(job.id, None)
            self._owners.pop(job.id, None)
            self._guilds.pop(job.id, None)
            self._job_events.pop(job.id, None)
            self._wake.set()

        task.add_done_callback(finished)

    # --- one job ------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        try:
            await self._work(job)
        except LeaseLost as exc:
            # Another process works the job now; nothing of ours was written.
            log.warning("job %s: stopped here: %s", job.id, exc.detail)

    async def _work(self, job: Job) -> None:
        try:
            await self._drive(job)
        except (asyncio.CancelledError, LeaseLost):
            raise
        except BotError as exc:
            await self._fail(job.id, exc)
        except Exception as exc:
            log.exception("job %s crashed", job.id)
            await self._fail(job.id, GenerationFailed(f"internal error: {type(exc).__name__}: {exc}"))

    async def _drive(self, job: Job) -> None:
        if job.state is State.QUEUED:
            image = await asyncio.to_thread(self._load_image, job)
            request = job.request(image)
            if self.callback_url is not None:
                request = replace(request, callback_url=await self.callback_url(job))
            job = await self._move(job, State.SUBMITTING)
            remix = getattr(self.provider, "remix", None)
            if job.kind == "remix" and job.source_provider_job_id and remix is not None:
                # The provider's native remix of a video it still holds (same length and size).
                provider_job_id = await remix(job.source_provider_job_id, job.prompt)
            else:
                provider_job_id = await self.provider.submit(request)
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
            await self.provider.download(job.provider_job_id, status, path, self.max_result_bytes)
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

    async def _poll(self, job: Job) -> JobStatus:
        assert job.provider_job_id is not None  # noqa: S101
        started = job.submitted_at or time.time()
        # The operator's figure, else what recent jobs took, else the provider's typical time.
        expected = self.typical_job_seconds or await self.repo.typical_duration(job.provider, job.model)
        poller = AdaptivePoller(expected=expected or self.provider.capabilities.expected_duration(job.request()))
        hint: float | None = None
        transient = 0
        delay = poller.next_delay(time.time() - started)
        while True:
            remaining = started + self.job_timeout - time.time()
            if remaining <= 0:
                with contextlib.suppress(ProviderError):
                    await self.provider.cancel(job.provider_job_id)
                raise ProviderTimeout(f"job {job.id} still not done after {self.job_timeout:.0f}s")
            event = self._job_events.get(job.id)
            if event is not None:
                # A wake (provider callback) cuts the wait short. Cleared after waiting, not before,
                # so one arriving during the status request below still counts for the next wait.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, remaining)):  # see _schedule_loop: not wait_for
                        await event.wait()
                event.clear()
            else:
                await asyncio.sleep(min(delay, remaining))
            self._polls[job.id] = self._polls.get(job.id, 0) + 1
            try:
                status = await self.provider.status(job.provider_job_id)
            except RateLimited as exc:
                delay = poller.rate_limited(exc.retry_after)
                log.info("job %s: status rate limited, backing off %.0fs", job.id, delay)
                continue
            except ProviderError as exc:
                transient += 1
                if not exc.retryable or transient > MAX_TRANSIENT_POLL_ERRORS:
                    raise
                # Grows with each failure, on the job's own time scale (5 s steps for a real video).
                delay = min(poller.first_poll * transient, 60.0)
                log.warning("job %s: status check failed (%s); retry in %.0fs", job.id, exc.detail, delay)
                continue
            transient = 0
            elapsed = time.time() - started
            poller.observe(elapsed, status.progress)
            hint = status.poll_after
            if status.state is JobState.SUCCEEDED:
                return status
            if status.state is JobState.FAILED:
                raise status.error or GenerationFailed(f"job {job.id} failed without a reason")
            if status.progress is not None and status.progress != job.progress:
                job = await self._move(job, State.RUNNING, progress=status.progress)
            delay = poller.next_delay(elapsed, hint=hint)

    # --- transitions --------------------------------------------------------------------------

    async def _move(self, job: Job, target: State, **changes: object) -> Job:
        """Store the new state first, then tell the world."""
        moved = job.moved(target, time.time(), **changes)
        await self.repo.save_job(moved, owner=self._fence(job.id))
        if target is not job.state:
            log.info("job %s: %s -> %s", job.id, job.state, target, extra={"job_id": job.id, "state": target.value})
            if self.events is not None:
                self.events.job_moved(moved)
        await self._notify(moved)
        return moved

    async def _fail(self, job_id: int, error: BotError) -> None:
        job = await self.repo.get_job(job_id)
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
        task = self._tasks.get(job_id)
        if task is not None:
            # Its next fenced write would fail anyway; stop it before it polls or uploads again.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._leased.discard(job_id)
        await self._finished(cancelled, "refund", settled=True)
        self._wake.set()
        return cancelled

    async def _stop_at_provider(self, job: Job) -> None:
        """CancelRefused unless the provider confirms it stopped ``job``: otherwise it bills the video."""
        billed = CancelRefused(
            f"job {job.id}: {job.provider} cannot stop {job.provider_job_id}",
            user_message="This video is already generating and the provider cannot stop it, so it is paid for: "
            "it will be posted when it is ready.",
        )
        if not job.provider_job_id or not self.provider.capabilities.can_cancel:
            raise billed
        try:
            stopped = await self.provider.cancel(job.provider_job_id)
        except ProviderError as exc:
            log.warning("job %s: provider cancel failed: %s", job.id, exc.detail)
            stopped = False
        if not stopped:
            raise billed

    async def _finish(self, job: Job, settle: str) -> None:
        """Store the terminal state and settle credits atomically, then clean up and tell the world."""
        settled = await self.repo.finish_job(job, settle, owner=self._fence(job.id))
        self._leased.discard(job.id)  # finished: nothing left to renew
        await self._finished(job, settle, settled=settled)

    async def _finished(self, job: Job, settle: str, *, settled: bool) -> None:
        """After a stored terminal state: log, metrics, files, and the status message."""
        log.info(
            "job %s: %s (credits: %s)", job.id, job.state, settle, extra={"job_id": job.id, "state": job.state.value}
        )
        polls = self._polls.pop(job.id, None)
        if self.events is not None:
            self.events.job_moved(job)
            if settled:
                self.events.job_settled(job, settle)
            if polls is not None:
                self.events.job_polled(job, polls)
        await asyncio.to_thread(self._cleanup, job)
        await self._notify(job)

    def _fence(self, job_id: int) -> str | None:
        """The owner a write of ``job_id`` is fenced by: ours while we hold its lease, else none (a cancel
        of a job no runner here works)."""
        return self.owner if job_id in self._leased else None

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
