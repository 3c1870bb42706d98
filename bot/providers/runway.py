"""Runway's task API: ``POST /v1/text_to_video`` or ``/v1/image_to_video``, then poll
``GET /v1/tasks/{id}``; ``DELETE /v1/tasks/{id}`` cancels.

Wire format: /work/shared/PROVIDERS-LIVE.md §5 and the ``runwayml`` SDK's types. Every call carries
``X-Runway-Version``. A running task reports ``progress`` (0-1), shown in the status message. A
failure's ``failureCode`` starting with ``SAFETY.`` is a moderation refusal (never retried). Output
URLs expire within a day or two, so the video is downloaded at once; an expired one is re-read from
the task. Runway has no webhooks: jobs are polled.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.catalogue.spec import Host, ModelSpec
from bot.config import Settings
from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import (
    GenerationFailed,
    InvalidRequest,
    ModerationRejected,
    ProviderError,
    ProviderOutOfCredits,
    ProviderRequestRejected,
    ProviderUnavailable,
)
from bot.providers.base import Capabilities
from bot.providers.failures import classify_failure
from bot.providers.http import HttpClient
from bot.providers.segmind import shipped_hosts

log = logging.getLogger(__name__)

NAME = "runway"
DEFAULT_BASE_URL = Settings.runway_base_url  # RUNWAY_BASE_URL's declared default
API_VERSION = "2024-11-06"
MAX_DATA_URI_CHARS = 5 * 1024 * 1024
_QUEUED = ("PENDING", "THROTTLED")
# Out-of-credit answers are undocumented (a 400 with a JSON error is expected): recognised by their text.
_NO_CREDITS = re.compile(r"enough credits|insufficient (credit|balance)|out of credits", re.IGNORECASE)


def task_status(body: Mapping[str, Any], *, provider: str = NAME) -> JobStatus:
    """A task as a neutral status. Unknown states count as running."""
    state = body.get("status")
    if state in _QUEUED:
        return JobStatus(JobState.QUEUED)
    if state == "SUCCEEDED":
        output = body.get("output")
        urls = (
            [u for u in output if isinstance(u, str) and u.startswith(("https://", "http://"))]
            if isinstance(output, list)
            else []
        )
        if not urls:
            return JobStatus(
                JobState.FAILED, error=GenerationFailed(f"{provider}: task {body.get('id')} succeeded without output")
            )
        return JobStatus(JobState.SUCCEEDED, result_url=urls[0])
    if state == "FAILED":
        return JobStatus(JobState.FAILED, error=failure_error(body, provider=provider))
    if state == "CANCELLED":
        return JobStatus(JobState.FAILED, error=GenerationFailed(f"{provider}: task was cancelled"))
    if state != "RUNNING":
        log.warning("%s task %s: unknown status %r; treating it as running", provider, body.get("id"), state)
    progress = body.get("progress")
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        return JobStatus(JobState.RUNNING, progress=max(0.0, min(100.0, float(progress) * 100)))
    return JobStatus(JobState.RUNNING)


def failure_error(body: Mapping[str, Any], *, provider: str = NAME) -> ProviderError:
    """``FAILED``: ``SAFETY.INPUT.*`` / ``SAFETY.OUTPUT.*`` are moderation; the rest go by their text."""
    code = str(body.get("failureCode") or "")
    reason = str(body.get("failure") or "no reason given")
    if code.upper().startswith("SAFETY."):
        stage = "finished video" if code.upper().startswith("SAFETY.OUTPUT") else None
        if stage is None and "IMAGE" in code.upper():
            stage = "reference image"
        return ModerationRejected(f"{provider}: job failed: {code} {reason}", stage=stage)
    return classify_failure(reason, provider=provider, code=code or None)


def _remap(error: ProviderError) -> ProviderError:
    if isinstance(error, ProviderRequestRejected) and _NO_CREDITS.search(error.detail):
        return ProviderOutOfCredits(error.detail, status=error.status)
    return error


class RunwayProvider:
    """Runway tasks for the catalogue models it hosts. Resumable: the task id is all a restart needs."""

    name = NAME

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        retry_base_delay: float = 0.5,
        max_retries: int = 4,
        hosts: Mapping[str, Host] | None = None,
        specs: Mapping[str, ModelSpec] | None = None,
    ) -> None:
        self._http = HttpClient(
            session,
            provider=self.name,
            secrets=(api_secret,),
            base_delay=retry_base_delay,
            max_retries=max_retries,
            remap=_remap,
            base_url=base_url,
        )
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_secret}", "X-Runway-Version": API_VERSION}
        if hosts is None or specs is None:
            hosts, specs = shipped_hosts(self.name)
        self._hosts, self._specs = hosts, specs
        hosted = [specs[m] for m in hosts if m in specs]
        self.capabilities = Capabilities(
            sizes={m.id: m.sizes for m in hosted},
            seconds={m.id: m.durations for m in hosted},
            image_mode="url",
            can_cancel=True,
            reports_progress=True,
            max_prompt_chars=1000,  # promptText: at most 1000 UTF-16 code units
            typical_seconds={m.id: m.typical_seconds for m in hosted},
        )

    def validate(self, request: VideoRequest) -> None:
        self.capabilities.validate(request, "Runway")
        units = len(request.prompt.encode("utf-16-le")) // 2
        if units > 1000:
            raise InvalidRequest(f"The prompt is too long for Runway ({units} UTF-16 units); the limit is 1000.")
        if request.image is not None and prompt_image(request.image) is None:
            raise InvalidRequest(
                "The reference image is too large for Runway (5 MB at most). Please use a smaller image.",
                detail="runway: reference image has no https URL and is too big for a data URI",
            )

    def request_body(self, request: VideoRequest) -> dict[str, Any]:
        host = self._hosts[request.model]
        spec = self._specs.get(request.model)
        image = prompt_image(request.image) if request.image is not None else None
        body = host.inputs(request, image=image, audio=spec.audio_for(request) if spec else None)
        return {"model": host.model_for(request), **body}

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        path = "image_to_video" if request.image is not None else "text_to_video"
        resp = await self._http.create(
            "POST", f"{self._base}/v1/{path}", headers=self._headers, json_body=self.request_body(request)
        )
        body = resp.body if isinstance(resp.body, Mapping) else {}
        task_id = body.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise GenerationFailed(f"runway: {path} answered {resp.status} without an id: {sorted(body)}")
        log.info("runway accepted %s task %s", request.model, task_id)
        return task_id

    async def status(self, job_id: str) -> JobStatus:
        resp = await self._http.request("GET", self._task_url(job_id), headers=self._headers)
        if not isinstance(resp.body, Mapping):
            raise ProviderUnavailable(f"runway: task {job_id}: unexpected {resp.status} body")
        return task_status(resp.body, provider=self.name)

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        async def refresh() -> str | None:
            return (await self.status(job_id)).result_url

        return await self._http.download_result(job_id, status.result_url, refresh, dest, max_bytes)

    async def cancel(self, job_id: str) -> bool:
        await self._http.request("DELETE", self._task_url(job_id), headers=self._headers)
        return True

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""

    def _task_url(self, job_id: str) -> str:
        return f"{self._base}/v1/tasks/{quote(job_id, safe='')}"


def prompt_image(image: ReferenceImage) -> str | None:
    """How Runway gets the reference: its https URL, else a data URI (None when too big for one).
    Runway refuses plain-http and local links, so those go as data too."""
    if image.url and image.url.startswith("https://"):
        return image.url
    uri = f"data:{image.content_type};base64,{base64.b64encode(image.data).decode()}"
    return uri if len(uri) <= MAX_DATA_URI_CHARS else None
