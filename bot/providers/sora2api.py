"""Sora2API (sora2api.ai): ``generate`` + ``record-info`` behind a ``{code, msg, data}`` envelope.

Wire format: PROVIDERS.md §3. The API has no model and no duration field: it takes
``aspectRatio`` landscape|portrait and ``quality`` standard|hd, so the bot maps sora-2 -> standard,
sora-2-pro -> hd, 1280x720 -> landscape, 720x1280 -> portrait (the pro-only 1024x1792/1792x1024
sizes do not exist here and are refused).

Clip length: Sora2API decides the clip length itself. The capabilities still accept 4, 8, 10
and 12 s so the /sora command keeps one set of choices, but here ``seconds`` only decides what
the bot charges in credits; it is not sent and does not change the video.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import Settings
from bot.domain import LANDSCAPE, PORTRAIT, JobState, JobStatus, VideoRequest, is_portrait
from bot.errors import (
    GenerationFailed,
    InvalidRequest,
    ProviderError,
    ProviderRequestRejected,
    ProviderUnavailable,
    redact,
)
from bot.providers.base import CallbackSupport, Capabilities
from bot.providers.failures import classify_failure
from bot.providers.http import CREATE_RETRY_STATUSES, HttpClient

log = logging.getLogger(__name__)

NAME = "sora2api"
DISPLAY_NAME = "Sora2API"
DEFAULT_PREFIX = Settings.sora2api_path_prefix  # SORA2API_PATH_PREFIX's declared default
RETENTION_S = 15 * 24 * 3600.0  # "Generated video files are retained for 15 days" (seed 003)
QUALITY = {"sora-2": "standard", "sora-2-pro": "hd"}
_SECONDS = (4, 8, 10, 12)

CAPABILITIES = Capabilities(
    sizes={"sora-2": (LANDSCAPE, PORTRAIT), "sora-2-pro": (LANDSCAPE, PORTRAIT)},
    seconds={"sora-2": _SECONDS, "sora-2-pro": _SECONDS},
    image_mode="url",
    reports_progress=False,
    # Unsigned callbacks: bot/callbacks.py only wakes the job, which asks again. (Late-bound: defined below.)
    callbacks=CallbackSupport(parse=lambda body: parse_callback(body)),
)


def envelope_code(body: Any) -> int | None:
    """The business ``code`` of a 2xx envelope when it is not 200 (None otherwise, or when unreadable)."""
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if code is None or isinstance(code, bool):
        return None
    try:
        value = int(code)  # some gateways send "402" as a string
    except (TypeError, ValueError):
        return None
    return None if value == 200 or value < 100 or value > 999 else value


def _remap(exc: ProviderError) -> ProviderError:
    """Sora2API's own codes that the generic HTTP mapping gets wrong (PROVIDERS.md §3)."""
    if exc.status == 455:  # maintenance: a 4xx-looking code for a temporary outage
        return ProviderUnavailable(exc.detail, status=455)
    if exc.status == 501:  # "generation failed": not a transport problem, never retried
        return GenerationFailed(exc.detail, status=501)
    if exc.status == 505:  # feature disabled on their side
        return ProviderRequestRejected(exc.detail, status=505)
    return exc


class Sora2ApiProvider:
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
        path_prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._api_key = api_key
        self._base = base_url.rstrip("/") + "/" + path_prefix.strip("/")
        self._callback_url_for = callback_url_for
        self._http = HttpClient(
            session,
            provider=NAME,
            secrets=(api_key,),
            out_of_credits=(402,),
            base_delay=retry_base_delay,
            max_retries=max_retries,
            remap=_remap,
            create_retry_statuses=CREATE_RETRY_STATUSES | {455},  # 455: down for maintenance, nothing taken
            base_url=base_url,
        )

    def validate(self, request: VideoRequest) -> None:
        self.capabilities.validate(request, DISPLAY_NAME)
        if request.image is not None and not request.image.url:
            raise InvalidRequest(f"{DISPLAY_NAME} needs the reference image as a public link, and none was made.")

    def build_body(self, request: VideoRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "aspectRatio": "portrait" if is_portrait(request.size) else "landscape",
            "quality": QUALITY[request.model],
        }
        if request.image is not None and request.image.url:
            body["imageUrls"] = [request.image.url]
        callback = request.callback_url or (self._callback_url_for() if self._callback_url_for else None)
        if callback:
            body["callBackUrl"] = callback
        return body

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        response = await self._call("POST", f"{self._base}/generate", json_body=self.build_body(request), resend=False)
        data = response.get("data")
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not task_id:
            raise ProviderError(
                redact(f"{NAME}: generate answered without a taskId: {str(response)[:300]}", (self._api_key,))
            )
        log.info("%s: submitted task %s (%s, %s)", NAME, task_id, request.model, request.size)
        return str(task_id)

    async def status(self, job_id: str) -> JobStatus:
        response = await self._call("GET", f"{self._base}/record-info", params={"taskId": job_id}, resend=True)
        data = response.get("data")
        if not isinstance(data, dict):
            raise ProviderUnavailable(f"{NAME}: record-info for {job_id} has no data object")
        return parse_record(data)

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        async def refresh() -> str | None:
            return (await self.status(job_id)).result_url

        return await self._http.download_result(job_id, status.result_url, refresh, dest, max_bytes)

    async def cancel(self, job_id: str) -> bool:
        return False

    async def aclose(self) -> None:
        return None

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        resend: bool,
    ) -> dict[str, Any]:
        """One API call. ``resend=False`` (generate) re-sends only "not taken" answers (HttpClient.create)."""
        headers = {"Authorization": f"Bearer {self._api_key}"}
        send = self._http.request if resend else self._http.create
        response = await send(
            method, url, headers=headers, json_body=json_body, params=params, envelope_status=envelope_code
        )
        body = response.body
        if not isinstance(body, dict):
            raise ProviderUnavailable(
                redact(f"{NAME}: {method} answered a non-JSON body: {str(body)[:200]}", (self._api_key,))
            )
        return body


# --- parsing (pure) ----------------------------------------------------------------------------


def parse_record(data: Mapping[str, Any]) -> JobStatus:
    """A record-info ``data`` object (also the Chinese callback's ``data``) -> JobStatus."""
    flag = _int_or_none(data.get("successFlag"))
    if flag == 1:
        url = _result_url(data)
        if not url:  # success reported before the link is published: keep polling
            return JobStatus(JobState.RUNNING)
        return JobStatus(JobState.SUCCEEDED, progress=100.0, result_url=url, expires_at=_expires_at(data))
    if flag in (2, 3):
        default = "task creation failed" if flag == 2 else "generation failed"
        message = str(data.get("errorMessage") or default)
        return JobStatus(JobState.FAILED, error=classify_failure(message, provider=NAME, code=data.get("errorCode")))
    return JobStatus(JobState.RUNNING)


def parse_callback(body: Mapping[str, Any]) -> tuple[str, JobStatus] | None:
    """A callback POST body -> (taskId, status), or None when it is not a task callback.

    Two documented shapes: ``data`` = the full record-info object (Chinese docs), or
    ``data`` = ``{taskId, promptJson, resultUrls}`` (English docs). Top-level ``code`` 200 means
    success, anything else failure. Callbacks are unsigned: re-check with record-info before trusting.
    """
    if not isinstance(body, Mapping):
        return None
    data = body.get("data")
    if not isinstance(data, Mapping):
        return None
    task_id = data.get("taskId") or body.get("taskId")
    if not task_id:
        return None
    if "successFlag" in data:
        return str(task_id), parse_record(data)
    code = _int_or_none(body.get("code"))
    if code == 200:
        url = _result_url(data)
        if not url:
            return str(task_id), JobStatus(JobState.RUNNING)
        return str(task_id), JobStatus(JobState.SUCCEEDED, progress=100.0, result_url=url, expires_at=_expires_at(data))
    message = str(data.get("errorMessage") or body.get("msg") or "generation failed")
    return str(task_id), JobStatus(JobState.FAILED, error=classify_failure(message, provider=NAME, code=code))


def _result_url(data: Mapping[str, Any]) -> str | None:
    response = data.get("response")
    candidates: list[Any] = []
    if isinstance(response, Mapping):
        candidates += [response.get("imageUrl"), _first(response.get("resultUrls"))]
    candidates += [_first(data.get("resultUrls")), data.get("imageUrl")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.startswith(("http://", "https://")):
            return candidate
    return None


def _first(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):  # some kie.ai-style APIs send a JSON string
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list) and value:
        return value[0]
    return value if isinstance(value, str) else None


def _expires_at(data: Mapping[str, Any]) -> float | None:
    for key in ("completeTime", "createTime"):
        stamp = _timestamp(data.get(key))
        if stamp is not None:
            return stamp + RETENTION_S
    return None


def _timestamp(value: Any) -> float | None:
    """Unix seconds from ``"2024-03-20 10:30:00"`` (assumed UTC), ISO 8601, or epoch s/ms."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int | float):
        seconds = float(value) / 1000 if value > 1e11 else float(value)
        return seconds if seconds > 0 else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # The docs give no zone; an hour-level error on a 15-day retention does not matter.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
