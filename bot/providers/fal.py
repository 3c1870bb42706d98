"""fal.ai's queue API: ``POST {base}/{model id}``, then the returned status / result / cancel URLs.

Wire facts: /work/shared/PROVIDERS-LIVE.md §2 and §10. Every catalogue model fal hosts is spoken the
same way; the catalogue's ``Host`` entry names the endpoint and spells the fields. The queue URLs fal
returns drop the model's sub-path (``fal-ai/kling-video/v3/pro/text-to-video`` is polled at
``fal-ai/kling-video/requests/{id}``), so the job id we hand back is that path relative to the base:
all a restarted bot needs. Those URLs are provider answers, so they are only followed on the
configured base origin. Results sit on public CDN hosts and are fetched without the key.
"""

from __future__ import annotations

import base64
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from bot.catalogue.spec import Host, ModelSpec
from bot.config import Settings
from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest
from bot.errors import (
    GenerationFailed,
    ModelUnavailable,
    ModerationRejected,
    ProviderError,
    ProviderOutOfCredits,
    ProviderRequestRejected,
    ProviderUnavailable,
    redact,
)
from bot.providers.base import CallbackSupport, Capabilities
from bot.providers.failures import classify_failure, moderation_stage
from bot.providers.fal_webhooks import DEFAULT_JWKS_URL, FalWebhookVerifier
from bot.providers.http import HttpClient

log = logging.getLogger(__name__)

NAME = "fal"
DEFAULT_BASE_URL = Settings.fal_base_url  # FAL_BASE_URL's declared default
_RESULT_CACHE_SIZE = 256
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_REQUEST_ID = re.compile(_SEGMENT)
_JOB_ID = re.compile(rf"(?:{_SEGMENT}/)+requests/({_SEGMENT})")
"""A job id: the request's queue path relative to the base, e.g. ``fal-ai/veo3.1/requests/<id>``."""
_APP_NAMESPACES = ("workflows", "comfy")  # fal_client's AppId: these prefix owner/alias
_OUT_OF_CREDITS = re.compile(r"exhausted balance|user is locked", re.IGNORECASE)
_STILL_RUNNING = re.compile(r"in progress|in queue|not (yet )?(completed|finished|ready)", re.IGNORECASE)


class FalHttpClient(HttpClient):
    """HttpClient reading fal's error bodies: 422 ``content_policy_violation`` items are moderation,
    403 "Exhausted balance" / "User is locked" is an empty account, ``X-Fal-Retryable`` decides retries."""

    def error(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> ProviderError:
        message = redact(fal_message(body), self.secrets)
        detail = f"{self.provider}: HTTP {status}: {message}"
        err: ProviderError
        stage = _policy_violation(body)
        if status == 422 and stage is not None:
            err = ModerationRejected(detail, stage=stage or None, status=status)
        elif status == 403 and _OUT_OF_CREDITS.search(message):
            err = ProviderOutOfCredits(detail, status=status)
        else:
            err = super().error(status, body, headers)
        hint = (headers or {}).get("x-fal-retryable")
        if hint is not None and hint.strip().lower() in ("true", "false"):
            err.retryable = hint.strip().lower() == "true"
        return err


def fal_message(body: Any) -> str:
    """The human text of a fal error body: ``detail`` as a string, or its items' ``msg``s."""
    detail = body.get("detail") if isinstance(body, Mapping) else body
    if isinstance(detail, list):
        parts = [str(item.get("msg") or item.get("type") or "") for item in detail if isinstance(item, Mapping)]
        return "; ".join(p for p in parts if p)[:500] or "no reason given"
    if isinstance(detail, str):
        return detail[:500]
    if isinstance(body, Mapping) and body.get("error"):
        return str(body["error"])[:500]
    return str(body)[:500] if body else "no reason given"


def _policy_violation(body: Any) -> str | None:
    """For a body naming a ``content_policy_violation``: the stage it hit ("" when unsaid), else None."""
    detail = body.get("detail") if isinstance(body, Mapping) else None
    if not isinstance(detail, list):
        return None
    for item in detail:
        if isinstance(item, Mapping) and item.get("type") == "content_policy_violation":
            loc = [str(part) for part in item.get("loc", ()) if isinstance(part, str | int)]
            if any("image" in part for part in loc):
                return "reference image"
            if "prompt" in loc:
                return "prompt"
            return moderation_stage(str(item.get("msg", ""))) or ""
    return None


def parse_webhook(body: Mapping[str, Any]) -> tuple[str, JobStatus] | None:
    """A fal webhook body -> (request id, status), or None when it is not one. Only a hint: the job
    asks fal itself once woken."""
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        return None
    if body.get("status") == "OK":
        return request_id, JobStatus(JobState.SUCCEEDED)
    if body.get("status") == "ERROR":
        return request_id, JobStatus(JobState.FAILED, error=GenerationFailed("fal: webhook reports an error"))
    return None


def request_id_of(job_id: str) -> str:
    """The request id fal's webhooks name, from our job id (a queue path ending in it)."""
    return job_id.rsplit("/", 1)[-1]


def canonical_job_id(model: str, request_id: str) -> str:
    """The queue path fal_client derives for a request (owner/alias, plus a namespace prefix)."""
    parts = model.split("/")
    app = parts[:3] if parts[0] in _APP_NAMESPACES else parts[:2]
    return "/".join([*app, "requests", request_id])


def data_uri(image: ReferenceImage) -> str:
    return f"data:{image.content_type};base64,{base64.b64encode(image.data).decode()}"


class FalProvider:
    """fal's queue (submit + poll, webhooks, cancel before processing). Resumable from the job id."""

    name = NAME

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        hosts: Mapping[str, Host],
        specs: Mapping[str, ModelSpec],
        jwks_url: str = DEFAULT_JWKS_URL,
        retry_base_delay: float = 0.5,
        max_retries: int = 4,
    ) -> None:
        self._http = FalHttpClient(
            session,
            provider=NAME,
            secrets=(api_key,),
            base_delay=retry_base_delay,
            max_retries=max_retries,
            base_url=base_url,
        )
        self._base = base_url.rstrip("/")
        split = urlsplit(self._base)
        self._origin = (split.scheme.lower(), split.netloc.lower())
        self._base_path = split.path.rstrip("/")
        self._headers = {"Authorization": f"Key {api_key}"}
        self._hosts = {m: h for m, h in hosts.items() if m in specs and not h.retired}
        self._specs = {m: specs[m] for m in self._hosts}
        self.webhooks = FalWebhookVerifier(session, jwks_url)
        # Completed jobs' URLs, so asking again after COMPLETED costs no request. Bounded: LRU.
        self._result_urls: OrderedDict[str, str] = OrderedDict()
        self.capabilities = Capabilities(
            sizes={m: s.sizes for m, s in self._specs.items()},
            seconds={m: s.durations for m, s in self._specs.items()},
            image_mode="url",
            can_cancel=True,
            resumable=True,
            reports_progress=False,
            typical_seconds={m: s.typical_seconds for m, s in self._specs.items()},
            callbacks=CallbackSupport(parse=parse_webhook, verify=self.webhooks.verify, task_id=request_id_of),
        )

    def validate(self, request: VideoRequest) -> None:
        self.capabilities.validate(request, "fal")
        self._specs[request.model].validate(request)

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        host, spec = self._hosts[request.model], self._specs[request.model]
        image = None
        if request.image is not None:
            # A public link when the front end made one; else the bytes inline, which fal also takes.
            image = request.image.url or data_uri(request.image)
        body = host.inputs(request, image=image, audio=spec.audio_for(request))
        model = host.model_for(request)
        url = f"{self._base}/{quote(model, safe='/')}"
        params = {"fal_webhook": request.callback_url} if request.callback_url else None
        try:
            # No idempotency key: only "not taken" answers are re-sent (HttpClient.create).
            resp = await self._http.create("POST", url, headers=self._headers, json_body=body, params=params)
        except ProviderRequestRejected as exc:
            if exc.status == 404:
                raise ModelUnavailable(exc.detail, status=404) from exc
            raise
        answer = resp.body if isinstance(resp.body, Mapping) else {}
        request_id = answer.get("request_id")
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise GenerationFailed(f"fal: submit answered {resp.status} without a usable request_id: {sorted(answer)}")
        job_id = self._job_id(answer, model, request_id)
        log.info("fal accepted %s (%s) as %s", request.model, model, job_id)
        return job_id

    def _job_id(self, answer: Mapping[str, Any], model: str, request_id: str) -> str:
        """The queue path of the returned ``response_url`` (or ``status_url``) when it lies on our base
        origin and names this request; else the path fal_client would derive."""
        for key, suffix in (("response_url", ""), ("status_url", "/status")):
            url = answer.get(key)
            if not isinstance(url, str):
                continue
            split = urlsplit(url)
            path = split.path.removesuffix(suffix) if suffix else split.path
            relative = path.removeprefix(self._base_path + "/") if path.startswith(self._base_path + "/") else None
            on_origin = (split.scheme.lower(), split.netloc.lower()) == self._origin
            match = _JOB_ID.fullmatch(relative or "")
            if on_origin and match and match[1] == request_id:
                return str(relative)
            log.warning("fal: ignoring %s %r (not a queue URL of request %s on our base)", key, url[:200], request_id)
        return canonical_job_id(model, request_id)

    def _url(self, job_id: str) -> str:
        if not _JOB_ID.fullmatch(job_id):
            raise GenerationFailed(f"fal: malformed job id {job_id[:200]!r}")
        return f"{self._base}/{job_id}"

    async def status(self, job_id: str) -> JobStatus:
        cached = self._result_urls.get(job_id)
        if cached is not None:
            return JobStatus(JobState.SUCCEEDED, result_url=cached)
        body = await self._status_body(job_id)
        if body is None:
            return JobStatus(JobState.FAILED, error=GenerationFailed(f"fal: request {job_id} unknown or expired"))
        state = body.get("status")
        if state == "IN_QUEUE":
            position = body.get("queue_position")
            valid = isinstance(position, int) and not isinstance(position, bool) and position >= 0
            return JobStatus(JobState.QUEUED, queue_position=position if valid else None)
        if state == "IN_PROGRESS":
            return JobStatus(JobState.RUNNING)
        if state == "COMPLETED":
            if body.get("error"):
                return JobStatus(JobState.FAILED, error=self._failure(body))
            return await self._result(job_id)
        log.warning("fal job %s: unknown status %r; treating it as running", job_id, str(state)[:40])
        return JobStatus(JobState.RUNNING)

    async def _status_body(self, job_id: str) -> Mapping[str, Any] | None:
        """The status object (a pending one may come as 200 or 202); None when fal does not know the id."""
        resp = await self._http.request(
            "GET", self._url(job_id) + "/status", headers=self._headers, params={"logs": "1"}, ok_statuses=(404,)
        )
        if resp.status == 404:
            return None
        if not isinstance(resp.body, Mapping):
            raise ProviderUnavailable(f"fal: status answered {resp.status} with a non-JSON body")
        return resp.body

    async def _result(self, job_id: str) -> JobStatus:
        resp = await self._http.request("GET", self._url(job_id), headers=self._headers, ok_statuses=(400, 422))
        body = resp.body
        if resp.status == 400:
            # Asked a moment too early (fal answers 400 "still in progress"): the next poll will do.
            if _STILL_RUNNING.search(fal_message(body)):
                return JobStatus(JobState.RUNNING)
            raise self._http.error(resp.status, body, resp.headers)
        if resp.status == 422:  # the request failed after all (the output was refused, ...)
            return JobStatus(JobState.FAILED, error=self._http.error(resp.status, body, resp.headers))
        if isinstance(body, Mapping) and body.get("status") in ("IN_QUEUE", "IN_PROGRESS"):
            return JobStatus(JobState.RUNNING)
        url = _video_url(body)
        if url is None:
            keys = sorted(body) if isinstance(body, Mapping) else type(body).__name__
            return JobStatus(JobState.FAILED, error=GenerationFailed(f"fal: job {job_id} has no video URL: {keys}"))
        self._result_urls[job_id] = url
        while len(self._result_urls) > _RESULT_CACHE_SIZE:
            self._result_urls.popitem(last=False)
        return JobStatus(JobState.SUCCEEDED, result_url=url)

    def _failure(self, body: Mapping[str, Any]) -> ProviderError:
        message = redact(str(body.get("error"))[:500], self._http.secrets)
        code = body.get("error_type")
        return classify_failure(message, provider=NAME, code=str(code)[:80] if code else None)

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        async def refresh() -> str | None:
            return (await self.status(job_id)).result_url

        url = status.result_url or self._result_urls.get(job_id)
        return await self._http.download_result(job_id, url, refresh, dest, max_bytes)

    async def cancel(self, job_id: str) -> bool:
        """True only when fal took the cancellation and the request is not being processed: a cancel
        once processing has started is refused (400) or only a signal, and the job is billed."""
        resp = await self._http.request(
            "PUT", self._url(job_id) + "/cancel", headers=self._headers, ok_statuses=(400, 404, 409)
        )
        body = resp.body if isinstance(resp.body, Mapping) else {}
        if resp.status != 202 or body.get("status") != "CANCELLATION_REQUESTED":
            log.info("fal: cancel %s refused (%s: %s)", job_id, resp.status, fal_message(resp.body)[:100])
            return False
        after = await self._status_body(job_id) or {}
        state = after.get("status")
        cancelled = state == "IN_QUEUE" or (state == "COMPLETED" and bool(after.get("error")))
        log.info("fal: cancel %s requested; request now %s -> %s", job_id, state, cancelled)
        return cancelled

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller, and no task runs in the background."""


def _video_url(body: Any) -> str | None:
    video = body.get("video") if isinstance(body, Mapping) else None
    url = video.get("url") if isinstance(video, Mapping) else None
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return url
    return None
