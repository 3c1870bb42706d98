"""The demo provider: no key, no network, real videos.

Each job renders an actual H.264 MP4 of the requested size and length showing the prompt (see
:func:`bot.media.video.render_text_video`), so the whole pipeline (progress, download, upload,
shrinking, credits) can be tried without a provider account.

To try the failure path, put the word ``moderation-test`` in the prompt: the job starts, then fails
like a real provider's safety refusal (``ModerationRejected`` at the ``prompt`` stage).

Jobs live in memory only: after a restart :meth:`DemoProvider.status` raises JobNotResumable.

A catalogue model hosted by the demo may ask each of its jobs to last at least some seconds
(``fields = { min_seconds = 30 }`` in its ``[[models."id".hosts]]`` entry, e.g. from MODELS_FILE):
time to watch the progress, or to press Cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.catalogue import Host
from bot.errors import ConfigError, GenerationFailed, JobNotResumable, ModerationRejected, ProviderError, ResultTooLarge
from bot.media.video import RenderCancelled, render_text_video
from bot.providers.base import (
    LANDSCAPE,
    PORTRAIT,
    PRO_SIZES,
    Capabilities,
    JobState,
    JobStatus,
    VideoRequest,
    parse_size,
)

log = logging.getLogger(__name__)

MAX_FINISHED_JOBS = 256
"""Finished jobs remembered for a later status or download; older ones are forgotten."""

MODERATION_TRIGGER = "moderation-test"

CAPABILITIES = Capabilities(
    sizes={"sora-2": (LANDSCAPE, PORTRAIT), "sora-2-pro": (LANDSCAPE, PORTRAIT, *PRO_SIZES)},
    seconds={"sora-2": (4, 8, 12), "sora-2-pro": (4, 8, 12)},
    image_mode="bytes",
    image_must_match_size=True,
    can_cancel=True,
    resumable=False,
    reports_progress=True,
    typical_seconds={"sora-2": 10.0, "sora-2-pro": 15.0},
    any_model_seconds=10.0,
)


@dataclass
class _Job:
    request: VideoRequest
    path: Path
    created: float
    min_wall: float
    """Wall-clock seconds the job lasts at least."""
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    """Written by the render thread (a float store is atomic), read by status()."""
    error: ProviderError | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None


class DemoProvider:
    """Renders videos locally. ``min_seconds`` stretches a job so its progress can be watched.

    ``speed`` divides that stretch (2.0 = twice as fast; handy to slow or speed up a demo without
    touching ``min_seconds``); ``fps`` is the frame rate of the rendered clips. ``hosts``: the catalogue
    models the demo hosts; one with a ``min_seconds`` field is stretched to that (the longer wins).
    """

    name = "demo"
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        work_dir: Path | None = None,
        speed: float = 1.0,
        min_seconds: float = 0.0,
        fps: int = 24,
        hosts: Mapping[str, Host] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._work_dir = work_dir
        self._own_dir: Path | None = None
        self._speed = speed
        self._min_seconds = max(0.0, min_seconds)
        self._model_min_seconds = {m: _min_seconds(m, h) for m, h in (hosts or {}).items() if "min_seconds" in h.fields}
        self._fps = fps
        self._jobs: dict[str, _Job] = {}

    def validate(self, request: VideoRequest) -> None:
        # The demo stands in for every catalogue model, whose entry has already checked the request.
        if request.model in self.capabilities.sizes:
            self.capabilities.validate(request, self.name)
        else:
            self.capabilities.check_prompt(request)

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        await self._forget_finished()
        job_id = f"demo-{uuid.uuid4().hex}"
        stretch = max(self._min_seconds, self._model_min_seconds.get(request.model, 0.0))
        job = _Job(
            request=request,
            path=self._dir() / f"{job_id}.mp4",
            created=time.monotonic(),
            min_wall=stretch / self._speed,
        )
        self._jobs[job_id] = job
        job.task = asyncio.create_task(self._run(job_id, job), name=f"demo-render-{job_id}")
        log.info("demo job %s: %s %s %d s", job_id, request.model, request.size, request.seconds)
        return job_id

    async def status(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        if job.state is JobState.SUCCEEDED:
            return JobStatus(JobState.SUCCEEDED, progress=100.0)
        if job.state is JobState.FAILED:
            return JobStatus(JobState.FAILED, progress=job.progress, error=job.error)
        if job.state is JobState.QUEUED:
            return JobStatus(JobState.QUEUED, progress=0.0)
        progress = job.progress
        if job.min_wall > 0:
            # Progress follows the slower of the render and the stretched clock.
            progress = min(progress, 100.0 * (time.monotonic() - job.created) / job.min_wall)
        return JobStatus(JobState.RUNNING, progress=round(min(progress, 99.0), 1))

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        job = self._job(job_id)
        if job.state is not JobState.SUCCEEDED or not job.path.exists():
            raise GenerationFailed(f"demo: job {job_id} has no result to download (state {job.state})")
        size = job.path.stat().st_size
        if size > max_bytes:
            raise ResultTooLarge(f"demo: result is {size} bytes > cap {max_bytes}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.move, job.path, dest)
        # The file is handed over: forget the job so a long-running bot keeps nothing behind.
        del self._jobs[job_id]
        return dest

    async def cancel(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state in (JobState.SUCCEEDED, JobState.FAILED):
            return False
        job.stop.set()
        if job.task is not None:
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task
        job.state = JobState.FAILED
        job.error = GenerationFailed(f"demo: job {job_id} cancelled", user_message="The video was cancelled.")
        return True

    async def aclose(self) -> None:
        for job in self._jobs.values():
            job.stop.set()
            if job.task is not None:
                job.task.cancel()
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for job in self._jobs.values():
            job.path.unlink(missing_ok=True)
        self._jobs.clear()
        if self._own_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._own_dir, True)
            self._own_dir = None

    # --- internals -----------------------------------------------------------------------------

    async def _forget_finished(self) -> None:
        """Keep at most MAX_FINISHED_JOBS finished jobs nobody downloaded (failed, cancelled, or
        abandoned by the runner): the oldest go, with their files."""
        done = [i for i, j in self._jobs.items() if j.state in (JobState.SUCCEEDED, JobState.FAILED)]
        stale = [self._jobs.pop(i) for i in done[: max(0, len(done) - MAX_FINISHED_JOBS)]]
        for job in stale:
            await asyncio.to_thread(job.path.unlink, missing_ok=True)

    def _job(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotResumable(f"demo: unknown job {job_id} (jobs live in memory only)")
        return job

    def _dir(self) -> Path:
        if self._work_dir is not None:
            self._work_dir.mkdir(parents=True, exist_ok=True)
            return self._work_dir
        if self._own_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="sora-demo-"))
        return self._own_dir

    async def _run(self, job_id: str, job: _Job) -> None:
        request = job.request
        await asyncio.sleep(0)  # let submit() return while the job is visibly queued
        job.state = JobState.RUNNING
        try:
            if MODERATION_TRIGGER in request.prompt.lower():
                await asyncio.sleep(min(0.5, job.min_wall / 2))
                raise ModerationRejected(f"demo: prompt contains {MODERATION_TRIGGER!r}", stage="prompt")
            await self._render(job)
            remaining = job.min_wall - (time.monotonic() - job.created)
            if remaining > 0:
                await asyncio.sleep(remaining)
        except asyncio.CancelledError:
            job.path.unlink(missing_ok=True)
            raise
        except ProviderError as exc:
            job.state, job.error = JobState.FAILED, exc
            log.info("demo job %s failed: %s", job_id, exc.detail)
            return
        except Exception as exc:  # a render bug must surface as a failed job, not a silent dead task
            log.exception("demo job %s crashed", job_id)
            job.state, job.error = JobState.FAILED, GenerationFailed(f"demo: render failed: {exc!r}")
            job.path.unlink(missing_ok=True)
            return
        job.progress, job.state = 100.0, JobState.SUCCEEDED

    async def _render(self, job: _Job) -> None:
        request = job.request
        width, height = parse_size(request.size)

        def on_progress(value: float) -> None:
            job.progress = value

        render = asyncio.ensure_future(
            asyncio.to_thread(
                render_text_video,
                job.path,
                prompt=request.prompt,
                seconds=request.seconds,
                width=width,
                height=height,
                fps=self._fps,
                on_progress=on_progress,
                should_stop=job.stop.is_set,
                image=request.image.data if request.image is not None else None,
            )
        )
        try:
            await asyncio.shield(render)
        except asyncio.CancelledError:
            # The thread cannot be cancelled: ask it to stop and wait (at most one frame) so no file is left.
            job.stop.set()
            with contextlib.suppress(RenderCancelled):
                await render
            raise


def _min_seconds(model: str, host: Host) -> float:
    raw = host.fields["min_seconds"]
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw < 86400:
        raise ConfigError(f"model {model}: the demo host's min_seconds must be a number of seconds, got {raw!r}")
    return float(raw)
