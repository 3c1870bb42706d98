"""A fake fal.ai queue (PROVIDERS-LIVE.md §2, §10), checked against the official fal-client package.

* ``POST /{model id}`` (``Authorization: Key …``) validates the body against that endpoint's input
  schema (required fields, enums, types; unknown fields are refused, stricter than fal so that a
  misspelt field cannot go unnoticed) and answers ``request_id`` with the queue URLs, which drop the
  model's sub-path as fal's do (``fal-ai/kling-video/v3/pro/text-to-video`` ->
  ``fal-ai/kling-video/requests/{id}``).
* ``GET …/requests/{id}/status`` moves IN_QUEUE (with a falling ``queue_position``) -> IN_PROGRESS ->
  COMPLETED (with ``error`` when the job fails) on the clock; ``GET …/requests/{id}`` is the result
  (400 "still in progress" before that), whose ``video.url`` is a real MP4 served without a key.
* ``PUT …/requests/{id}/cancel``: 202 CANCELLATION_REQUESTED while queued; once processing, refused
  with 400 (``cancel_running = "refuse"``) or taken as a mere signal (``"signal"``: the job runs on and
  ends COMPLETED with an error).
* Errors: 401 bad key, 404 unknown model, 403 "Exhausted balance" (``exhausted``), 422
  ``content_policy_violation`` for a prompt containing ``blocked_word`` or an image URL containing it;
  any other answer (e.g. with ``X-Fal-Retryable``) via ``inject``.
* Webhooks: a submit with ``?fal_webhook=`` gets a POST on completion, signed with ``signing_key``,
  whose public half is served at ``/.well-known/jwks.json`` (``rotate_key`` replaces it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fakes.base import FakeServer
from tests.fakes.videos import tiny_mp4

_VEO = {
    "prompt": str,
    "aspect_ratio": ("16:9", "9:16"),
    "duration": ("4s", "6s", "8s"),
    "resolution": ("720p", "1080p", "4k"),
    "generate_audio": bool,
    "negative_prompt": str,
    "seed": int,
    "auto_fix": bool,
    "safety_tolerance": ("1", "2", "3", "4", "5", "6"),
}
_VEO_I2V = {**_VEO, "aspect_ratio": ("auto", "16:9", "9:16"), "image_url": str}
_KLING = {
    "prompt": str,
    "duration": tuple(str(s) for s in range(3, 16)),
    "negative_prompt": str,
    "cfg_scale": float,
    "generate_audio": bool,
    "shot_type": ("customize", "intelligent"),
}
_SEEDANCE = {
    "prompt": str,
    "aspect_ratio": ("auto", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16"),
    "duration": ("auto", *(str(s) for s in range(4, 16))),
    "resolution": ("480p", "720p", "1080p", "4k"),
    "generate_audio": bool,
    "bitrate_mode": str,
}
_HAILUO = {"prompt": str, "duration": ("6", "10"), "prompt_optimizer": bool}

SCHEMAS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    # endpoint -> (field types or allowed values, required fields)
    "fal-ai/veo3.1": (_VEO, ("prompt",)),
    "fal-ai/veo3.1/fast": (_VEO, ("prompt",)),
    "fal-ai/veo3.1/image-to-video": (_VEO_I2V, ("prompt", "image_url")),
    "fal-ai/veo3.1/fast/image-to-video": (_VEO_I2V, ("prompt", "image_url")),
    "fal-ai/kling-video/v3/pro/text-to-video": (
        {**_KLING, "aspect_ratio": ("16:9", "9:16", "1:1")},
        ("prompt",),
    ),
    "fal-ai/kling-video/v3/pro/image-to-video": (
        {**_KLING, "start_image_url": str, "end_image_url": str},
        ("prompt", "start_image_url"),
    ),
    "bytedance/seedance-2.0/text-to-video": (_SEEDANCE, ("prompt",)),
    "bytedance/seedance-2.0/image-to-video": (
        {**_SEEDANCE, "image_url": str, "end_image_url": str},
        ("prompt", "image_url"),
    ),
    "fal-ai/minimax/hailuo-2.3/standard/text-to-video": (_HAILUO, ("prompt",)),
    "fal-ai/minimax/hailuo-2.3/standard/image-to-video": ({**_HAILUO, "image_url": str}, ("prompt", "image_url")),
    # The pro endpoints make 1080p, where fal offers no 10 s clip.
    "fal-ai/minimax/hailuo-2.3/pro/text-to-video": ({**_HAILUO, "duration": ("6",)}, ("prompt",)),
    "fal-ai/minimax/hailuo-2.3/pro/image-to-video": (
        {**_HAILUO, "duration": ("6",), "image_url": str},
        ("prompt", "image_url"),
    ),
}
NAMESPACES = ("workflows", "comfy")
OUT_OF_BALANCE = "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
USER_ID = "fake-fal-user"


def app_of(model: str) -> str:
    """The queue path prefix of a model id: owner/alias (after a namespace), as fal's own URLs."""
    parts = model.split("/")
    return "/".join(parts[:3] if parts[0] in NAMESPACES else parts[:2])


@dataclass
class FalJob:
    request_id: str
    model: str
    body: dict[str, Any]
    created: float
    queue_seconds: float
    run_seconds: float
    queue_position: int
    fail_with: str | None = None
    error_type: str | None = None
    webhook: str | None = None
    cancelled: bool = False
    cancel_signalled: bool = False
    webhook_task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass
class Submit:
    model: str
    body: dict[str, Any]
    query: dict[str, str]


class FakeFal(FakeServer):
    """Plain attributes a test may change at any time: ``queue_seconds``, ``run_seconds``,
    ``queue_position`` (the first position reported), ``fail_with`` / ``fail_type`` (jobs submitted
    from now on end COMPLETED with that error), ``exhausted``, ``blocked_word``, ``cancel_running``,
    ``pending_status`` (the HTTP status of a pending status answer, 200 or 202), ``advertised_base``
    (the origin put in returned queue URLs), ``webhook_delay``, ``video_bytes``,
    ``result_override`` (served as every result)."""

    def __init__(self, *, api_key: str = "test-fal-key", queue_seconds: float = 0.05, run_seconds: float = 0.1) -> None:
        self.api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.queue_position = 3
        self.fail_with: str | None = None
        self.fail_type: str | None = None
        self.exhausted = False
        self.blocked_word = "forbidden"
        self.cancel_running = "refuse"
        self.pending_status = 202
        self.advertised_base: str | None = None
        self.webhook_delay = 0.0
        self.video_bytes: bytes | None = None
        self.result_override: dict[str, Any] | None = None
        self.jobs: dict[str, FalJob] = {}
        self.submits: list[Submit] = []
        self.webhooks_sent: list[tuple[str, int]] = []
        """(URL, HTTP status of the bot's answer) per webhook POST; status 0 when it could not connect."""
        self.signing_key = Ed25519PrivateKey.generate()
        self.served_keys = [self.signing_key]
        self._client: aiohttp.ClientSession | None = None
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/.well-known/jwks.json", self._jwks)
        app.router.add_get("/files/{request_id}.mp4", self._file)
        app.router.add_get(r"/{app:.+}/requests/{request_id}/status", self._status)
        app.router.add_put(r"/{app:.+}/requests/{request_id}/cancel", self._cancel)
        app.router.add_get(r"/{app:.+}/requests/{request_id}", self._result)
        app.router.add_post(r"/{model:.+}", self._submit)

    async def start(self) -> str:
        self._client = aiohttp.ClientSession()
        return await super().start()

    async def stop(self) -> None:
        for job in self.jobs.values():
            if job.webhook_task is not None:
                job.webhook_task.cancel()
        await super().stop()
        if self._client is not None:
            await self._client.close()

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    @property
    def video(self) -> bytes:
        return self.video_bytes if self.video_bytes is not None else tiny_mp4()

    def file_url(self, request_id: str) -> str:
        return f"{self.base_url}/files/{request_id}.mp4"

    def rotate_key(self) -> None:
        """Sign with a new key and serve only that one (a key rotation)."""
        self.signing_key = Ed25519PrivateKey.generate()
        self.served_keys = [self.signing_key]

    def state_of(self, job: FalJob) -> str:
        elapsed = time.monotonic() - job.created
        if job.cancelled or elapsed >= job.queue_seconds + job.run_seconds:
            return "COMPLETED"
        return "IN_QUEUE" if elapsed < job.queue_seconds else "IN_PROGRESS"

    def error_of(self, job: FalJob) -> str | None:
        if job.cancelled or job.cancel_signalled:
            return "Request was cancelled by the user"
        return job.fail_with

    def status_polls(self, request_id: str) -> int:
        return len([r for r in self.requests if r.method == "GET" and r.path.endswith(f"/{request_id}/status")])

    # --- signing -----------------------------------------------------------------------------

    def signed_headers(
        self,
        body: bytes,
        *,
        request_id: str,
        key: Ed25519PrivateKey | None = None,
        timestamp: int | None = None,
    ) -> dict[str, str]:
        """The headers fal sends with a webhook: Ed25519 over id, user, timestamp and the body's SHA-256."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = f"{request_id}\n{USER_ID}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        signature = (key or self.signing_key).sign(message)
        return {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": USER_ID,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature.hex(),
        }

    def webhook_body(self, job: FalJob) -> bytes:
        error = self.error_of(job)
        payload: dict[str, Any] = {"request_id": job.request_id, "gateway_request_id": job.request_id}
        if error:
            payload |= {"status": "ERROR", "error": error, "payload": {"detail": error}}
        else:
            payload |= {"status": "OK", "payload": self._output(job)}
        return json.dumps(payload).encode()

    async def post_webhook(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        assert self._client is not None
        try:
            async with self._client.post(url, data=body, headers=headers) as resp:
                status = resp.status
        except aiohttp.ClientError:
            status = 0
        self.webhooks_sent.append((url, status))
        return status

    async def _send_webhook_when_done(self, job: FalJob) -> None:
        await asyncio.sleep(max(0.0, job.created + job.queue_seconds + job.run_seconds - time.monotonic()))
        await asyncio.sleep(self.webhook_delay)
        assert job.webhook is not None
        body = self.webhook_body(job)
        await self.post_webhook(job.webhook, body, self.signed_headers(body, request_id=job.request_id))

    # --- routes ------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Key {self.api_key}"

    @staticmethod
    def _detail(status: int, detail: Any, **headers: str) -> web.Response:
        return web.json_response({"detail": detail}, status=status, headers=headers)

    def _urls(self, job: FalJob) -> dict[str, str]:
        base = f"{self.advertised_base or self.base_url}/{app_of(job.model)}/requests/{job.request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._detail(401, "Invalid API key")
        model = request.match_info["model"]
        if model not in SCHEMAS:
            return self._detail(404, f"Application '{model}' not found")
        if self.exhausted:
            return self._detail(403, OUT_OF_BALANCE, **{"X-Fal-Error-Type": "user_locked"})
        try:
            body = await request.json()
        except ValueError:
            return self._detail(422, [{"loc": ["body"], "msg": "invalid JSON", "type": "value_error.jsondecode"}])
        if not isinstance(body, dict):
            return self._detail(422, [{"loc": ["body"], "msg": "must be an object", "type": "type_error.dict"}])
        problems = _check(body, *SCHEMAS[model])
        if problems:
            return self._detail(422, problems)
        blocked = self._policy(body)
        if blocked:
            return self._detail(422, blocked)
        self.submits.append(Submit(model, body, dict(request.query)))
        job = FalJob(
            request_id=str(uuid.uuid4()),
            model=model,
            body=body,
            created=time.monotonic(),
            queue_seconds=self.queue_seconds,
            run_seconds=self.run_seconds,
            queue_position=self.queue_position,
            fail_with=self.fail_with,
            error_type=self.fail_type,
            webhook=request.query.get("fal_webhook"),
        )
        self.jobs[job.request_id] = job
        if job.webhook:
            job.webhook_task = asyncio.create_task(self._send_webhook_when_done(job))
        answer = {"request_id": job.request_id, "gateway_request_id": job.request_id, **self._urls(job)}
        return web.json_response({**answer, "status": "IN_QUEUE", "queue_position": job.queue_position})

    def _policy(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        word = self.blocked_word
        for name, value in body.items():
            if isinstance(value, str) and word and word in value:
                return [
                    {
                        "loc": ["body", name],
                        "msg": f"The content of {name} was flagged by the content checker.",
                        "type": "content_policy_violation",
                        "url": "https://docs.fal.ai/errors#content_policy_violation",
                        "input": value[:100],
                    }
                ]
        return []

    def _job(self, request: web.Request) -> FalJob | web.Response:
        if not self._authorized(request):
            return self._detail(401, "Invalid API key")
        job = self.jobs.get(request.match_info["request_id"])
        if job is None or app_of(job.model) != request.match_info["app"]:
            return self._detail(404, "Request not found")
        return job

    async def _status(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        state = self.state_of(job)
        logs = request.query.get("logs") in ("1", "true", "True")
        answer: dict[str, Any] = {"status": state, "request_id": job.request_id, **self._urls(job)}
        if state == "IN_QUEUE":
            left = 1 - (time.monotonic() - job.created) / job.queue_seconds
            answer["queue_position"] = max(0, math.ceil(left * job.queue_position) - 1)
            return web.json_response(answer, status=self.pending_status)
        answer["logs"] = (
            [{"message": "generating", "level": "INFO", "source": "user", "timestamp": "t"}] if logs else None
        )
        if state == "IN_PROGRESS":
            return web.json_response(answer, status=self.pending_status)
        answer["metrics"] = {"inference_time": job.run_seconds}
        error = self.error_of(job)
        if error:
            answer["error"] = error
            answer["error_type"] = job.error_type or ("request_cancelled" if job.cancelled else "internal_error")
        return web.json_response(answer)

    async def _result(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if self.state_of(job) != "COMPLETED":
            return self._detail(400, "Request is still in progress")
        error = self.error_of(job)
        if error:
            return self._detail(422, error)
        return web.json_response(self.result_override or self._output(job))

    def _output(self, job: FalJob) -> dict[str, Any]:
        video = {
            "url": self.file_url(job.request_id),
            "content_type": "video/mp4",
            "file_name": "output.mp4",
            "file_size": len(self.video),
        }
        return {"video": video, "seed": 42} if job.model.startswith("bytedance/") else {"video": video}

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        state = self.state_of(job)
        if state == "IN_QUEUE":
            job.cancelled = True
        elif state == "IN_PROGRESS" and self.cancel_running == "signal":
            job.cancel_signalled = True
        elif state == "IN_PROGRESS":
            return self._detail(400, "Request is already being processed and cannot be cancelled")
        else:
            return self._detail(400, "Request is already completed")
        return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["request_id"] not in self.jobs:
            return web.Response(status=404)
        return web.Response(body=self.video, content_type="video/mp4")

    async def _jwks(self, request: web.Request) -> web.Response:
        keys = []
        for key in self.served_keys:
            raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            keys.append({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": x[:8], "use": "sig"})
        # A key of another type is skipped by verifiers.
        keys.append({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"})
        return web.json_response({"keys": keys})


def _check(body: dict[str, Any], schema: dict[str, Any], required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Pydantic-style 422 items for missing, unknown or mistyped fields."""
    problems: list[dict[str, Any]] = []
    for name in required:
        if name not in body:
            problems.append({"loc": ["body", name], "msg": "field required", "type": "value_error.missing"})
    for name, value in body.items():
        rule = schema.get(name)
        if rule is None:
            problems.append({"loc": ["body", name], "msg": "extra fields not permitted", "type": "value_error.extra"})
        elif isinstance(rule, tuple):
            if value not in rule or not isinstance(value, str):
                allowed = ", ".join(rule)
                problems.append(
                    {"loc": ["body", name], "msg": f"value is not one of: {allowed}", "type": "type_error.enum"}
                )
        elif rule is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append({"loc": ["body", name], "msg": "value is not a number", "type": "type_error.float"})
        elif not isinstance(value, rule) or (rule is int and isinstance(value, bool)):
            problems.append(
                {"loc": ["body", name], "msg": f"value is not a {rule.__name__}", "type": f"type_error.{rule.__name__}"}
            )
        elif rule is str and not value.strip():
            problems.append({"loc": ["body", name], "msg": "must not be empty", "type": "value_error.any_str"})
    return problems
