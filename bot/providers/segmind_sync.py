"""Segmind's v1 synchronous API: one ``POST /v1/{model}`` whose 200 body IS the MP4 (PROVIDERS.md §1).

The request stays open for the whole generation (minutes). To fit the submit/poll Protocol, ``submit``
starts a background task that makes the call and streams the video to a temp file, and returns a local
id at once. Nothing survives a restart: an id this process does not know raises JobNotResumable.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bot.catalogue.spec import Host, ModelSpec
from bot.config import Settings
from bot.domain import JobState, JobStatus, VideoRequest
from bot.errors import (
    GenerationFailed,
    JobNotResumable,
    ProviderError,
    ProviderUnavailable,
    ResultTooLarge,
    redact,
)
from bot.providers.failures import classify_failure
from bot.providers.http import (
    CREATE_RETRY_STATUSES,
    error_message_from_body,
    read_body,
    stream_to_file,
)
from bot.providers.segmind import (
    DEFAULT_BASE_URL,
    model_slug,
    request_body,
    segmind_capabilities,
    segmind_http,
    shipped_hosts,
    validate_segmind,
)

log = logging.getLogger(__name__)

MAX_FINISHED_JOBS = 256
"""Finished calls remembered for a later status or download; older ones are forgotten."""

DEFAULT_STREAM_CAP = Settings.max_result_bytes  # MAX_RESULT_MB's declared default


@dataclass
class _SyncJob:
    """One in-flight v1 call. ``error`` is set when it failed (or was cancelled)."""

    task: asyncio.Task[None]
    path: Path
    error: ProviderError | None = None
    finished: bool = False


class SegmindSyncProvider:
    """Segmind v1: a blocking call run in a background task per job. Cancellable, not resumable."""

    name = "segmind-sync"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        work_dir: Path | None = None,
        read_timeout: float = 900.0,
        stream_max_bytes: int = DEFAULT_STREAM_CAP,
        retry_base_delay: float = 0.5,
        max_retries: int = 4,
        hosts: Mapping[str, Host] | None = None,
        specs: Mapping[str, ModelSpec] | None = None,
    ) -> None:
        self._session = session
        if hosts is None or specs is None:
            hosts, specs = shipped_hosts(self.name)
        self._hosts, self._specs = hosts, specs
        self._http = segmind_http(session, self.name, api_key, retry_base_delay, max_retries, base_url)
        self._base = base_url.rstrip("/")
        self._headers = {"x-api-key": api_key}
        self._owns_work_dir = work_dir is None
        self._work_dir = Path(tempfile.mkdtemp(prefix="segmind-sync-")) if work_dir is None else work_dir
        self._read_timeout = read_timeout
        self._stream_max_bytes = stream_max_bytes
        self._jobs: dict[str, _SyncJob] = {}
        self._swept = False
        self.capabilities = segmind_capabilities(hosts, specs, resumable=False, can_cancel=True)

    def validate(self, request: VideoRequest) -> None:
        validate_segmind(self.capabilities, request)

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        if not self._swept:
            # Videos left by an earlier run can never be claimed (jobs do not survive a restart).
            self._swept = True
            await asyncio.to_thread(_sweep_stale, self._work_dir)
        await self._forget_finished()
        job_id = f"sync-{uuid.uuid4().hex}"
        path = self._work_dir / f"{job_id}.mp4"
        task = asyncio.create_task(self._run(job_id, request, path), name=f"segmind-sync {job_id}")
        self._jobs[job_id] = _SyncJob(task=task, path=path)
        log.info("segmind-sync started %s job %s", request.model, job_id)
        return job_id

    async def status(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        if job.error is not None:
            return JobStatus(JobState.FAILED, error=job.error)
        if job.finished:
            return JobStatus(JobState.SUCCEEDED)
        return JobStatus(JobState.RUNNING)

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        job = self._job(job_id)
        if job.error is not None:
            raise job.error
        if not job.finished:
            raise GenerationFailed(f"segmind-sync: job {job_id} is not finished")
        try:
            await asyncio.to_thread(_move_capped, job.path, dest, max_bytes)
        finally:
            await asyncio.to_thread(job.path.unlink, missing_ok=True)
            del self._jobs[job_id]
        return dest

    async def cancel(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.task.done():
            return False
        job.task.cancel()
        await asyncio.wait([job.task])
        job.error = GenerationFailed(f"segmind-sync: job {job_id} was cancelled")
        await asyncio.to_thread(job.path.unlink, missing_ok=True)
        log.info("segmind-sync cancelled job %s", job_id)
        return True

    async def aclose(self) -> None:
        tasks = [job.task for job in self._jobs.values() if not job.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait does not raise the tasks' CancelledError; if aclose itself is cancelled,
            # that CancelledError propagates from here as it must.
            await asyncio.wait(tasks)
        paths = [job.path for job in self._jobs.values()]
        self._jobs.clear()
        await asyncio.to_thread(_remove, paths, self._work_dir if self._owns_work_dir else None)

    async def _forget_finished(self) -> None:
        """Keep at most MAX_FINISHED_JOBS finished calls nobody downloaded; the oldest go, with their files."""
        done = [i for i, job in self._jobs.items() if job.task.done()]
        stale = [self._jobs.pop(i).path for i in done[: max(0, len(done) - MAX_FINISHED_JOBS)]]
        if stale:
            await asyncio.to_thread(_remove, stale, None)

    def _job(self, job_id: str) -> _SyncJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotResumable(f"segmind-sync: job {job_id} is unknown to this process (restarted?)")
        return job

    async def _run(self, job_id: str, request: VideoRequest, path: Path) -> None:
        """The background call. Stores the outcome on the job; only CancelledError escapes."""
        # submit() registers the job before its first await, so it is there when this task first runs.
        job = self._jobs[job_id]
        try:
            await self._call(request, path)
            job.finished = True
            log.info("segmind-sync job %s finished", job_id)
        except asyncio.CancelledError:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        except ProviderError as exc:
            job.error = exc
            log.info("segmind-sync job %s failed: %s", job_id, exc.detail)
        except Exception as exc:  # a bug must fail the job, not vanish in an unobserved task
            job.error = GenerationFailed(redact(f"segmind-sync: {type(exc).__name__}: {exc}", self._http.secrets))
            log.exception("segmind-sync job %s crashed", job_id)

    async def _call(self, request: VideoRequest, path: Path) -> None:
        url = f"{self._base}/v1/{quote(model_slug(request, self._hosts), safe='')}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self._read_timeout)
        http = self._http
        for attempt in range(http.max_retries + 1):
            # v1 has no idempotency: only an answer saying the job was NOT taken (CREATE_RETRY_STATUSES)
            # is retried. A connection error may come after the server started the (charged)
            # generation, so it fails the job instead of sending it twice.
            try:
                async with self._session.post(
                    url, json=request_body(request, self._hosts, self._specs), headers=self._headers, timeout=timeout
                ) as resp:
                    credits = resp.headers.get("x-remaining-credits")
                    if credits is not None:
                        log.info("segmind remaining credits: %s", credits)
                    if resp.status == 200 and "json" not in (resp.content_type or ""):
                        await stream_to_file(resp, path, max_bytes=self._stream_max_bytes, provider=self.name)
                        return
                    body = await read_body(resp)
                    if resp.status == 200:
                        # A JSON 200 is an error report, not a video.
                        message = redact(error_message_from_body(body), http.secrets)
                        raise classify_failure(message, provider=self.name)
                    error = http.error(resp.status, body, resp.headers)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                raise ProviderUnavailable(
                    redact(f"{self.name}: POST {url}: {type(exc).__name__}: {exc}", http.secrets)
                ) from exc
            if error.status not in CREATE_RETRY_STATUSES or attempt == http.max_retries:
                raise error
            delay = http.retry_delay(attempt, error.retry_after)
            log.info("segmind-sync call refused (%s); retry %d in %.1fs", error.detail, attempt + 1, delay)
            await http.sleep(delay)


def _move_capped(src: Path, dest: Path, max_bytes: int) -> None:
    size = src.stat().st_size
    if size > max_bytes:
        raise ResultTooLarge(f"segmind-sync: result is {size} bytes, cap {max_bytes}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(src, dest)


def _sweep_stale(work_dir: Path) -> None:
    if not work_dir.is_dir():
        return
    for path in work_dir.glob("sync-*.mp4*"):
        log.info("segmind-sync: removing %s, left by an earlier run", path.name)
        path.unlink(missing_ok=True)


def _remove(paths: list[Path], work_dir: Path | None) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".part").unlink(missing_ok=True)
    if work_dir is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
