"""Replicate's predictions API: ``POST /v1/models/{owner}/{name}/predictions``, then poll
``GET /v1/predictions/{id}``; cancel with ``POST /v1/predictions/{id}/cancel``.

Wire format: /work/shared/PROVIDERS-LIVE.md §3. The request body is ``{"input": ...}`` with each
model's own fields from its catalogue entry; no ``Prefer: wait`` (a held request may still come back
unfinished, and the poller does the waiting). Outputs are deleted after an hour, so the video is
downloaded as soon as the prediction succeeds. 402 means the account is out of credit.

With ``PUBLIC_BASE_URL`` a prediction carries ``webhook`` (the job's secret callback URL) and asks
only for the ``completed`` event. Webhooks are signed (Standard Webhooks): HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}`` with the account's key from
``GET /v1/webhooks/default/secret``, fetched once and kept.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.catalogue.spec import Host, ModelSpec
from bot.config import Settings
from bot.domain import JobState, JobStatus, VideoRequest
from bot.errors import GenerationFailed, InvalidRequest, ProviderError, ProviderUnavailable
from bot.providers.base import CallbackSupport, Capabilities
from bot.providers.failures import classify_failure
from bot.providers.http import HttpClient
from bot.providers.segmind import shipped_hosts

log = logging.getLogger(__name__)

NAME = "replicate"
DEFAULT_BASE_URL = Settings.replicate_base_url  # REPLICATE_BASE_URL's declared default
WEBHOOK_TOLERANCE_SECONDS = 300
# Replicate advises data URIs only for small files; a bigger reference must be a public URL.
MAX_DATA_URI_BYTES = 1024 * 1024
# The replicate SDK's progress parser (tqdm lines such as " 45%|████▌     | 45/100 [...]"), last match wins.
_PROGRESS = re.compile(r"^\s*(\d+)%\s*\|.+?\|\s*(\d+)/(\d+)", re.MULTILINE)
_RUNNING = {"starting": JobState.QUEUED, "processing": JobState.RUNNING}


def parse_progress(logs: object) -> float | None:
    """The last tqdm-style percentage in a prediction's ``logs`` (0..100), or None."""
    if not isinstance(logs, str):
        return None
    matches = _PROGRESS.findall(logs)
    if not matches:
        return None
    _, current, total = matches[-1]
    if int(total) <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * int(current) / int(total)))


def output_url(output: object) -> str | None:
    """The video's URI: ``output`` is one URI string, or a list whose first http(s) item is the video."""
    if isinstance(output, str):
        return output if output.startswith(("https://", "http://")) else None
    if isinstance(output, list):
        for item in output:
            if isinstance(item, str) and item.startswith(("https://", "http://")):
                return item
    return None


def prediction_status(body: Mapping[str, Any], *, provider: str = NAME) -> JobStatus:
    """A prediction (polled or from a webhook) as a neutral status. Unknown states count as running."""
    state = body.get("status")
    if state == "succeeded":
        url = output_url(body.get("output"))
        if url is None:
            return JobStatus(
                JobState.FAILED,
                error=GenerationFailed(f"{provider}: prediction {body.get('id')} succeeded without a video URI"),
            )
        return JobStatus(JobState.SUCCEEDED, result_url=url)
    if state == "failed":
        error = body.get("error")
        return JobStatus(JobState.FAILED, error=classify_failure(str(error or "no reason given"), provider=provider))
    if state == "canceled":
        return JobStatus(JobState.FAILED, error=GenerationFailed(f"{provider}: prediction was canceled"))
    if state not in _RUNNING:
        log.warning("%s prediction %s: unknown status %r; treating it as running", provider, body.get("id"), state)
    return JobStatus(_RUNNING.get(str(state), JobState.RUNNING), progress=parse_progress(body.get("logs")))


def parse_webhook(body: Mapping[str, Any]) -> tuple[str, JobStatus] | None:
    """A webhook body is the prediction itself: ``(prediction id, status)``, None if it is not one."""
    prediction_id = body.get("id")
    if not isinstance(prediction_id, str) or not prediction_id or not isinstance(body.get("status"), str):
        return None
    return prediction_id, prediction_status(body)


def signing_key(secret: str) -> bytes | None:
    """``whsec_<base64>`` -> the HMAC key bytes; None when it is not such a secret."""
    if not secret.startswith("whsec_"):
        return None
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return None


def verify_signature(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = WEBHOOK_TOLERANCE_SECONDS,
) -> bool:
    """Whether a webhook is signed with ``key`` and was sent within ``tolerance`` seconds.

    ``webhook-signature`` holds space-separated ``v1,<base64>`` entries (several during a key
    rotation); any one matching is enough. Header names are looked up case-insensitively."""
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = lowered.get("webhook-id", "")
    timestamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not webhook_id or not timestamp or not signatures:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in signatures.split():
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


class ReplicateProvider:
    """Replicate predictions for the catalogue models it hosts. Resumable: the prediction id is enough."""

    name = NAME

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_token: str,
        base_url: str = DEFAULT_BASE_URL,
        retry_base_delay: float = 0.5,
        max_retries: int = 4,
        hosts: Mapping[str, Host] | None = None,
        specs: Mapping[str, ModelSpec] | None = None,
    ) -> None:
        self._http = HttpClient(
            session,
            provider=self.name,
            secrets=(api_token,),
            out_of_credits=(402,),
            base_delay=retry_base_delay,
            max_retries=max_retries,
            base_url=base_url,
        )
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_token}"}
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
            callbacks=CallbackSupport(parse=parse_webhook, verify=self.verify_webhook),
            typical_seconds={m.id: m.typical_seconds for m in hosted},
        )
        self._signing_key: bytes | None = None
        self._key_lock = asyncio.Lock()

    def validate(self, request: VideoRequest) -> None:
        self.capabilities.validate(request, "Replicate")
        if request.image is not None and not request.image.url and len(request.image.data) > MAX_DATA_URI_BYTES:
            raise InvalidRequest(
                "The reference image could not be prepared for Replicate (it needs a public link). Please try again.",
                detail="replicate: reference image has no public URL and is too big for a data URI",
            )

    def request_body(self, request: VideoRequest) -> dict[str, Any]:
        host = self._hosts[request.model]
        spec = self._specs.get(request.model)
        image = None
        if request.image is not None:
            image = request.image.url or _data_uri(request.image.data, request.image.content_type)
        body: dict[str, Any] = {
            "input": host.inputs(request, image=image, audio=spec.audio_for(request) if spec else None)
        }
        if request.callback_url:
            body["webhook"] = request.callback_url
            body["webhook_events_filter"] = ["completed"]
        return body

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        owner, _, model = self._hosts[request.model].model_for(request).partition("/")
        url = f"{self._base}/v1/models/{quote(owner, safe='')}/{quote(model, safe='')}/predictions"
        resp = await self._http.create("POST", url, headers=self._headers, json_body=self.request_body(request))
        body = resp.body if isinstance(resp.body, Mapping) else {}
        prediction_id = body.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise GenerationFailed(f"replicate: create answered {resp.status} without an id: {sorted(body)}")
        log.info("replicate accepted %s prediction %s (%s)", request.model, prediction_id, body.get("status"))
        return prediction_id

    async def _prediction(self, job_id: str) -> Mapping[str, Any]:
        resp = await self._http.request("GET", self._prediction_url(job_id), headers=self._headers)
        if not isinstance(resp.body, Mapping):
            raise ProviderUnavailable(f"replicate: prediction {job_id}: unexpected {resp.status} body")
        return resp.body

    async def status(self, job_id: str) -> JobStatus:
        return prediction_status(await self._prediction(job_id), provider=self.name)

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        async def refresh() -> str | None:
            return (await self.status(job_id)).result_url

        return await self._http.download_result(job_id, status.result_url, refresh, dest, max_bytes)

    async def cancel(self, job_id: str) -> bool:
        await self._http.request("POST", self._prediction_url(job_id) + "/cancel", headers=self._headers)
        return True

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""

    # --- webhooks ---------------------------------------------------------------------------

    async def signing_key(self) -> bytes | None:
        """The account's webhook key, fetched once (None when the API gives no usable one)."""
        async with self._key_lock:
            if self._signing_key is None:
                resp = await self._http.request(
                    "GET", f"{self._base}/v1/webhooks/default/secret", headers=self._headers
                )
                secret = resp.body.get("key") if isinstance(resp.body, Mapping) else None
                self._signing_key = signing_key(secret) if isinstance(secret, str) else None
                if self._signing_key is None:
                    log.warning("replicate: the webhook signing secret is missing or malformed")
            return self._signing_key

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether a webhook POST is signed by Replicate and fresh. Never raises: False refuses it."""
        try:
            key = await self.signing_key()
        except ProviderError as exc:
            log.warning("replicate: could not fetch the webhook signing secret: %s", exc.detail)
            return False
        return key is not None and verify_signature(key, headers, body)

    def _prediction_url(self, job_id: str) -> str:
        return f"{self._base}/v1/predictions/{quote(job_id, safe='')}"


def _data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"
