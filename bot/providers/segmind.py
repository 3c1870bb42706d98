"""Segmind's v2 asynchronous API: ``POST /v2/{model}``, then poll ``/v2/requests/{id}/status``.

Wire format: /work/shared/PROVIDERS.md §2. A FAILED job is served as HTTP 422 (on both the status and
the result call) with a body whose ``status`` is FAILED; an unknown or expired id is a 404 (the request
record lives one hour). The finished video sits on a public URL, so it is fetched without the key.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.catalogue.spec import Host, ModelSpec
from bot.config import Settings
from bot.domain import JobState, JobStatus, VideoRequest
from bot.errors import GenerationFailed, InvalidRequest, ProviderError, ProviderUnavailable, RateLimited, redact
from bot.providers.base import Capabilities
from bot.providers.failures import classify_failure
from bot.providers.http import HttpClient, error_message_from_body

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = Settings.segmind_base_url  # SEGMIND_BASE_URL's declared default
# Answers that prove the server did NOT take the job, so sending it again cannot double-submit.
_RESULT_CACHE_SIZE = 256


def segmind_capabilities(
    hosts: Mapping[str, Host], specs: Mapping[str, ModelSpec], *, resumable: bool = True, can_cancel: bool = False
) -> Capabilities:
    """What Segmind can run: the catalogue models it hosts, with their sizes and durations.
    Shared by v1 and v2."""
    hosted = [specs[m] for m in hosts if m in specs]
    return Capabilities(
        sizes={m.id: m.sizes for m in hosted},
        seconds={m.id: m.durations for m in hosted},
        image_mode="url",
        can_cancel=can_cancel,
        resumable=resumable,
        reports_progress=False,
        typical_seconds={m.id: m.typical_seconds for m in hosted},
    )


def shipped_hosts(provider: str) -> tuple[dict[str, Host], Mapping[str, ModelSpec]]:
    """The shipped catalogue's entries for ``provider`` (a provider built without a catalogue)."""
    from bot.catalogue import load_catalogue

    catalogue = load_catalogue()
    return catalogue.hosts_for(provider), catalogue.models


def validate_segmind(capabilities: Capabilities, request: VideoRequest) -> None:
    capabilities.validate(request, "Segmind")
    if request.image is not None and not request.image.url:
        # Segmind only takes a public image URL; the Discord layer is meant to have uploaded it.
        raise InvalidRequest(
            "The reference image could not be prepared for Segmind (it needs a public link). Please try again.",
            detail="segmind: reference image has no public URL",
        )


def model_slug(request: VideoRequest, hosts: Mapping[str, Host]) -> str:
    host = hosts.get(request.model)
    return host.model_for(request) if host is not None else request.model


def request_body(
    request: VideoRequest, hosts: Mapping[str, Host] | None = None, specs: Mapping[str, ModelSpec] | None = None
) -> dict[str, Any]:
    """The JSON body both API versions take: the model's own fields from its catalogue entry, else
    the Sora shape (``duration`` an int, as the API reference types it)."""
    host = (hosts or {}).get(request.model)
    spec = (specs or {}).get(request.model)
    if host is not None and host.fields:
        image = request.image.url if request.image is not None else None
        return host.inputs(request, image=image, audio=spec.audio_for(request) if spec else None)
    body: dict[str, Any] = {"prompt": request.prompt, "duration": int(request.seconds), "size": request.size}
    if request.image is not None and request.image.url:
        body["input_reference"] = request.image.url
    return body


def parse_reset_at(value: str | None, now: float | None = None) -> float | None:
    """Seconds until ``x-rate-limit-reset-at-utc``. Its format is undocumented: accept epoch
    seconds/milliseconds, ISO 8601 and HTTP dates; anything else gives None (own backoff)."""
    if not value:
        return None
    now = time.time() if now is None else now
    raw = value.strip()
    try:
        stamp = float(raw)
    except ValueError:
        stamp = None
    if stamp is not None:
        if stamp > 1e11:  # milliseconds
            stamp /= 1000
        return max(0.0, stamp - now)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # the header's name says UTC
    return max(0.0, parsed.timestamp() - now)


def segmind_http(
    session: aiohttp.ClientSession,
    provider: str,
    api_key: str,
    retry_base_delay: float,
    max_retries: int,
    base_url: str,
) -> HttpClient:
    """The HTTP client both Segmind providers use: 406 means the account is out of credits."""
    return SegmindHttpClient(
        session,
        provider=provider,
        secrets=(api_key,),
        out_of_credits=(406,),
        base_delay=retry_base_delay,
        max_retries=max_retries,
        base_url=base_url,
    )


class SegmindHttpClient(HttpClient):
    """HttpClient that also reads Segmind's 429 hint, ``x-rate-limit-reset-at-utc`` (no Retry-After)."""

    def error(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> ProviderError:
        err = super().error(status, body, headers)
        if isinstance(err, RateLimited) and err.retry_after is None and headers is not None:
            err.retry_after = parse_reset_at(headers.get("x-rate-limit-reset-at-utc"))
        return err


def extract_output_url(body: Mapping[str, Any]) -> str | None:
    """The video URL in a completed result: ``output`` if it is an http(s) string, else ``video.url``,
    else ``output[0]``, else ``output.url`` (the exact sora-2 body is unconfirmed; PROVIDERS.md §2)."""
    output = body.get("output")
    if _is_http(output):
        return output
    video = body.get("video")
    if isinstance(video, Mapping) and _is_http(video.get("url")):
        return video["url"]
    if isinstance(output, list) and output:
        first = output[0]
        if _is_http(first):
            return first
        if isinstance(first, Mapping) and _is_http(first.get("url")):
            return first["url"]
    if isinstance(output, Mapping) and _is_http(output.get("url")):
        return output["url"]
    return None


def _is_http(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


class SegmindProvider:
    """Segmind v2 (submit + poll). Resumable: the request id is all a restarted bot needs."""

    name = "segmind"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        retry_base_delay: float = 0.5,
        max_retries: int = 4,
        hosts: Mapping[str, Host] | None = None,
        specs: Mapping[str, ModelSpec] | None = None,
    ) -> None:
        self._http = segmind_http(session, self.name, api_key, retry_base_delay, max_retries, base_url)
        self._base = base_url.rstrip("/")
        self._headers = {"x-api-key": api_key}
        # Completed jobs' URLs, so polling again after COMPLETED costs no request. Bounded: LRU.
        self._result_urls: OrderedDict[str, str] = OrderedDict()
        if hosts is None or specs is None:
            hosts, specs = shipped_hosts(self.name)
        self._hosts, self._specs = hosts, specs
        self.capabilities = segmind_capabilities(hosts, specs)

    def validate(self, request: VideoRequest) -> None:
        validate_segmind(self.capabilities, request)

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        url = f"{self._base}/v2/{quote(model_slug(request, self._hosts), safe='')}"
        # No idempotency key: only "not taken" answers are re-sent (HttpClient.create).
        resp = await self._http.create(
            "POST", url, headers=self._headers, json_body=request_body(request, self._hosts, self._specs)
        )
        body = resp.body if isinstance(resp.body, Mapping) else {}
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise GenerationFailed(f"segmind: submit answered {resp.status} without a request_id: {sorted(body)}")
        log.info("segmind accepted %s job %s (status %s)", request.model, request_id, body.get("status"))
        return request_id

    async def status(self, job_id: str) -> JobStatus:
        cached = self._result_urls.get(job_id)
        if cached is not None:
            return JobStatus(JobState.SUCCEEDED, result_url=cached)
        body = await self._get_json(self._request_url(job_id) + "/status")
        if body is None:
            return _expired()
        state = body.get("status")
        if state == "QUEUED":
            return JobStatus(JobState.QUEUED)
        if state == "PROCESSING":
            return JobStatus(JobState.RUNNING)
        if state == "FAILED":
            return self._failed(body)
        if state == "COMPLETED":
            return await self._completed(job_id)
        log.warning("segmind job %s: unknown status %r; treating it as running", job_id, state)
        return JobStatus(JobState.RUNNING)

    async def _completed(self, job_id: str) -> JobStatus:
        body = await self._get_json(self._request_url(job_id))
        if body is None:
            return _expired()
        if body.get("status") == "FAILED":
            return self._failed(body)
        metrics = body.get("metrics")
        if isinstance(metrics, Mapping) and metrics.get("remaining_credits") is not None:
            log.info("segmind remaining credits: %s", metrics["remaining_credits"])
        url = extract_output_url(body)
        if url is None:
            return JobStatus(
                JobState.FAILED,
                error=GenerationFailed(f"segmind: job {job_id} completed without a video URL; keys {sorted(body)}"),
            )
        self._result_urls[job_id] = url
        while len(self._result_urls) > _RESULT_CACHE_SIZE:
            self._result_urls.popitem(last=False)
        return JobStatus(JobState.SUCCEEDED, result_url=url)

    async def _get_json(self, url: str) -> Mapping[str, Any] | None:
        """GET a status/result URL; None for 404 (unknown or expired id). 422 is FAILED's code."""
        resp = await self._http.request("GET", url, headers=self._headers, ok_statuses=(404, 422))
        if resp.status == 404:
            return None
        body = resp.body
        if resp.status == 422 and not (isinstance(body, Mapping) and body.get("status") == "FAILED"):
            raise self._http.error(resp.status, body, resp.headers)
        if not isinstance(body, Mapping):
            raise ProviderUnavailable(f"segmind: unexpected {resp.status} body: {error_message_from_body(body)}")
        return body

    def _request_url(self, job_id: str) -> str:
        return f"{self._base}/v2/requests/{quote(job_id, safe='')}"

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        async def refresh() -> str | None:
            return (await self.status(job_id)).result_url

        url = status.result_url or self._result_urls.get(job_id)
        return await self._http.download_result(job_id, url, refresh, dest, max_bytes)

    async def cancel(self, job_id: str) -> bool:
        return False  # Segmind v2 has no cancel call.

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller, and no task runs in the background."""

    def _failed(self, body: Mapping[str, Any]) -> JobStatus:
        message = error_message_from_body(body) if body.get("error") else "no reason given"
        message = redact(message, self._http.secrets)
        return JobStatus(JobState.FAILED, error=classify_failure(message, provider=self.name))


def _expired() -> JobStatus:
    return JobStatus(JobState.FAILED, error=GenerationFailed("segmind: request id unknown or expired"))
