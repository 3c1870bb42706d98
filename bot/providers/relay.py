"""A ``/v2/videos/generations`` relay (YutoAI and its new-api based siblings).

Wire format: PROVIDERS.md §4. ``POST /v2/videos/generations`` answers ``{task_id}``;
``GET /v2/videos/generations/{id}`` answers new-api's flat task object (``status``, ``progress``
as an ``"NN%"`` string, ``fail_reason``, ``data.output``), sometimes wrapped as
``{"code": "success", "data": {...}}``.

A reference image must have exactly the requested pixel size, or the relay fails with
"Inpaint image must match the requested width and height"; ``image_must_match_size`` tells the
media layer to fit the image before it is uploaded and its URL handed to us.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.domain import LANDSCAPE, PORTRAIT, JobState, JobStatus, VideoRequest, is_portrait
from bot.errors import (
    AuthenticationFailed,
    InvalidRequest,
    ProviderError,
    ProviderOutOfCredits,
    ProviderRequestRejected,
    ProviderUnavailable,
    redact,
)
from bot.providers.base import CallbackSupport, Capabilities
from bot.providers.failures import classify_failure
from bot.providers.http import HttpClient, error_message_from_body

log = logging.getLogger(__name__)

NAME = "relay"
DISPLAY_NAME = "the video relay"
PATH = "/v2/videos/generations"

CAPABILITIES = Capabilities(
    sizes={"sora-2": (LANDSCAPE, PORTRAIT), "sora-2-pro": (LANDSCAPE, PORTRAIT)},
    seconds={"sora-2": (4, 8, 10, 12, 15), "sora-2-pro": (4, 8, 10, 12, 15, 25)},
    image_mode="url",
    image_must_match_size=True,
    reports_progress=True,
    # Unsigned callbacks: bot/callbacks.py only wakes the job, which asks again. (Late-bound: defined below.)
    callbacks=CallbackSupport(parse=lambda body: parse_callback(body)),
)

_QUEUED = frozenset({"NOT_START", "SUBMITTED", "QUEUED"})
_SIZE_MISMATCH = re.compile(r"must match the requested width and height", re.IGNORECASE)
# new-api answers an empty account with 403 (or 400) and a quota sentence rather than 402.
_QUOTA = re.compile(r"insufficient[_ ](user[_ ])?(quota|balance|credit)|quota is not enough|额度不足|余额不足", re.I)


class RelayProvider:
    name = NAME
    capabilities = CAPABILITIES

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str,
        retry_base_delay: float = 0.5,
        max_retries: int = 4,
        callback_url_for: Callable[[], str | None] | None = None,
    ) -> None:
        self._api_key = api_key
        self._base = base_url.rstrip("/")
        self._callback_url_for = callback_url_for
        self._http = HttpClient(
            session,
            provider=NAME,
            secrets=(api_key,),
            out_of_credits=(402,),
            base_delay=retry_base_delay,
            max_retries=max_retries,
            remap=_remap,
            base_url=self._base,
        )

    def validate(self, request: VideoRequest) -> None:
        self.capabilities.validate(request, DISPLAY_NAME)
        if request.image is not None and not request.image.url:
            raise InvalidRequest("The video relay needs the reference image as a public link, and none was made.")

    def build_body(self, request: VideoRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "model": request.model,
            "aspect_ratio": "9:16" if is_portrait(request.size) else "16:9",
            "duration": str(request.seconds),  # the relay's enum is a string: "10", "15", "25"
            "hd": request.model == "sora-2-pro",  # HD is documented for sora-2-pro only
        }
        if request.image is not None and request.image.url:
            body["images"] = [request.image.url]
        callback = request.callback_url or (self._callback_url_for() if self._callback_url_for else None)
        if callback:
            body["notify_hook"] = callback
        return body

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        try:
            body = await self._call("POST", f"{self._base}{PATH}", json_body=self.build_body(request), resend=False)
        except ProviderRequestRejected as exc:
            if _SIZE_MISMATCH.search(exc.detail):
                raise _size_mismatch(exc.detail, request.size, exc.status) from exc
            raise
        task = _unwrap(body)
        task_id = task.get("task_id") or task.get("id")
        if not task_id:
            raise ProviderError(
                redact(f"{NAME}: submit answered without a task_id: {str(body)[:300]}", (self._api_key,))
            )
        log.info("%s: submitted task %s (%s, %s, %ss)", NAME, task_id, request.model, request.size, request.seconds)
        return str(task_id)

    async def status(self, job_id: str) -> JobStatus:
        body = await self._call("GET", f"{self._base}{PATH}/{quote(job_id, safe='')}", resend=True)
        task = _unwrap(body)
        if "status" not in task:
            message = redact(error_message_from_body(body), (self._api_key,))
            if isinstance(body.get("message") or body.get("error"), str | dict):
                # A 200 envelope carrying an error ("task not found"): asking again will not help.
                raise ProviderRequestRejected(f"{NAME}: task {job_id}: {message}")
            raise ProviderUnavailable(f"{NAME}: task {job_id}: answer has no status: {message[:200]}")
        return parse_task(task)

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        async def refresh() -> str | None:
            return (await self.status(job_id)).result_url

        return await self._http.download_result(job_id, status.result_url, refresh, dest, max_bytes)

    async def cancel(self, job_id: str) -> bool:
        return False

    async def aclose(self) -> None:
        return None

    async def _call(self, method: str, url: str, *, json_body: Any = None, resend: bool) -> dict[str, Any]:
        """One API call. ``resend=False`` (submit) re-sends only "not taken" answers (HttpClient.create)."""
        headers = {"Authorization": f"Bearer {self._api_key}"}
        send = self._http.request if resend else self._http.create
        response = await send(method, url, headers=headers, json_body=json_body)
        if not isinstance(response.body, dict):
            raise ProviderUnavailable(
                redact(f"{NAME}: {method} answered a non-JSON body: {str(response.body)[:200]}", (self._api_key,))
            )
        return response.body


def _remap(exc: ProviderError) -> ProviderError:
    if isinstance(exc, AuthenticationFailed | ProviderRequestRejected) and _QUOTA.search(exc.detail):
        return ProviderOutOfCredits(exc.detail, status=exc.status)
    return exc


def _size_mismatch(detail: str, size: str | None, status: int | None) -> ProviderRequestRejected:
    exactly = f"exactly {size} pixels" if size else "exactly the video's size"
    return ProviderRequestRejected(
        detail,
        user_message=(
            f"The video provider needs the reference image to be {exactly} and refused it. Your credits were refunded."
        ),
        status=status,
    )


# --- parsing (pure) ----------------------------------------------------------------------------


def _unwrap(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """new-api's ``{"code": "success", "data": {...task...}}`` -> the task; a flat task as is."""
    inner = body.get("data")
    if "status" not in body and "task_id" not in body and isinstance(inner, Mapping):
        return inner
    return body


def parse_progress(value: Any) -> float | None:
    """``"42%"``, ``"42"`` or ``42`` -> 42.0 (clamped to 0..100); anything unreadable -> None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip().rstrip("%").strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN
        return None
    return max(0.0, min(100.0, number))


def parse_task(task: Mapping[str, Any]) -> JobStatus:
    """A task object (status poll or notify_hook body) -> JobStatus."""
    state = str(task.get("status") or "").upper()
    progress = parse_progress(task.get("progress"))
    if state == "SUCCESS":
        url = result_url(task)
        if not url:  # success reported before the link is published: keep polling
            return JobStatus(JobState.RUNNING, progress=100.0)
        return JobStatus(JobState.SUCCEEDED, progress=100.0, result_url=url)
    if state == "FAILURE":
        reason = str(task.get("fail_reason") or "generation failed")
        if _SIZE_MISMATCH.search(reason):
            return JobStatus(
                JobState.FAILED, progress=progress, error=_size_mismatch(f"{NAME}: job failed: {reason}", None, None)
            )
        return JobStatus(JobState.FAILED, progress=progress, error=classify_failure(reason, provider=NAME))
    if state in _QUEUED:
        return JobStatus(JobState.QUEUED, progress=progress)
    return JobStatus(JobState.RUNNING, progress=progress)


def result_url(task: Mapping[str, Any]) -> str | None:
    data = task.get("data")
    candidates: list[Any] = []
    if isinstance(data, Mapping):
        candidates += [data.get("output"), _first(data.get("outputs"))]
    candidates += [task.get("output"), _first(task.get("outputs"))]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.startswith(("http://", "https://")):
            return candidate
    return None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def parse_callback(body: Mapping[str, Any]) -> tuple[str, JobStatus] | None:
    """A ``notify_hook`` POST body (the task object, flat or wrapped) -> (task_id, status), or None."""
    if not isinstance(body, Mapping):
        return None
    task = _unwrap(body)
    task_id = task.get("task_id") or task.get("id")
    if not task_id or "status" not in task:
        return None
    return str(task_id), parse_task(task)
