"""A fake Replicate predictions API (PROVIDERS-LIVE.md §3), checked against the official ``replicate`` package.

Predictions move ``starting`` -> ``processing`` (tqdm lines in ``logs``) -> ``succeeded`` (``output``: one
URI string) or ``failed`` on the clock. With a ``webhook`` the fake POSTs the finished prediction there,
signed as Replicate signs (Standard Webhooks, HMAC-SHA256 with the key from
``GET /v1/webhooks/default/secret``), honouring ``webhook_events_filter``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.base import FakeServer
from tests.fakes.videos import tiny_mp4

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"replicate-test-signing-key-32by").decode()

# Each model's inputs as its Replicate API page lists them, with the values it takes.
MODELS: dict[str, dict[str, Any]] = {
    "google/veo-3.1": {
        "prompt": str,
        "aspect_ratio": ("16:9", "9:16"),
        "duration": (4, 6, 8),
        "resolution": ("720p", "1080p"),
        "generate_audio": bool,
        "image": "image",
        "last_frame": "image",
        "negative_prompt": str,
        "seed": int,
    },
    "kwaivgi/kling-v2.1-master": {
        "prompt": str,
        "aspect_ratio": ("16:9", "9:16", "1:1"),
        "duration": (5, 10),
        "start_image": "image",
        "negative_prompt": str,
    },
    "alibaba/wan-3": {
        "prompt": str,
        "image": "image",
        "resolution": ("720p", "1080p"),
        "aspect_ratio": ("adaptive", "16:9", "9:16", "1:1"),
        "duration": tuple(range(2, 31)),
        "enable_prompt_expansion": bool,
        "seed": int,
    },
}
VERSION = "5b1f4c2f0e3c4a7b9d1e0f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e"


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value Replicate sends for ``body``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakePrediction:
    id: str
    model: str
    input: dict[str, Any]
    created: float
    created_at: str
    fail_with: str | None
    webhook: str | None = None
    events: tuple[str, ...] = ()
    canceled: bool = False
    sent: list[str] = field(default_factory=list)


class FakeReplicate(FakeServer):
    """Knobs (plain attributes): ``fail_with`` (error text of predictions created from now on),
    ``out_of_credit`` (creates answer 402), ``send_webhooks`` (False: never call back)."""

    def __init__(
        self,
        *,
        api_token: str = "r8_test-replicate-token",  # noqa: S107 - the fake's own test token
        queue_seconds: float = 0.05,
        run_seconds: float = 0.2,
        secret: str = WEBHOOK_SECRET,
    ) -> None:
        self.api_key = api_token
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.secret = secret
        self.fail_with: str | None = None
        self.out_of_credit = False
        self.send_webhooks = True
        self.predictions: dict[str, FakePrediction] = {}
        self.webhook_answers: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create)
        app.router.add_get("/v1/predictions/{id}", self._get)
        app.router.add_post("/v1/predictions/{id}/cancel", self._cancel)
        app.router.add_get("/v1/webhooks/default/secret", self._secret)
        app.router.add_get("/files/{id}/output.mp4", self._file)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await super().stop()

    # --- state --------------------------------------------------------------------------------

    def state_of(self, p: FakePrediction) -> str:
        if p.canceled:
            return "canceled"
        elapsed = time.monotonic() - p.created
        if elapsed < self.queue_seconds:
            return "starting"
        if elapsed < self.queue_seconds + self.run_seconds:
            return "processing"
        return "failed" if p.fail_with else "succeeded"

    def body_of(self, p: FakePrediction) -> dict[str, Any]:
        state = self.state_of(p)
        logs = ""
        if state != "starting":
            done = (
                100
                if state in ("succeeded", "failed")
                else int(100 * (time.monotonic() - p.created - self.queue_seconds) / self.run_seconds)
            )
            steps = [s for s in (10, 40, 70, 100) if s <= done] or [0]
            logs = "".join(f"{s:3d}%|{'#' * (s // 10):<10}| {s}/100 [00:01<00:01, 9.9it/s]\n" for s in steps)
        finished = state in ("succeeded", "failed", "canceled")
        return {
            "id": p.id,
            "model": p.model,
            "version": VERSION,
            "status": state,
            "input": p.input,
            "output": f"{self.base_url}/files/{p.id}/output.mp4" if state == "succeeded" else None,
            "logs": logs,
            "error": p.fail_with if state == "failed" else None,
            "metrics": {"predict_time": self.run_seconds} if finished else {},
            "created_at": p.created_at,
            "started_at": p.created_at if state != "starting" else None,
            "completed_at": _now() if finished else None,
            "data_removed": False,
            "urls": {
                "get": f"{self.base_url}/v1/predictions/{p.id}",
                "cancel": f"{self.base_url}/v1/predictions/{p.id}/cancel",
                "web": f"https://replicate.com/p/{p.id}",
            },
        }

    # --- routes -------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    @staticmethod
    def _error(status: int, detail: str) -> web.Response:
        return web.json_response({"title": "Error", "detail": detail, "status": status}, status=status)

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "You did not pass a valid authentication token")
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        if model not in MODELS:
            return self._error(404, "The requested resource could not be found.")
        if self.out_of_credit:
            return self._error(402, "You have insufficient credit to run this model.")
        if "wait" in request.headers.get("Prefer", ""):
            return self._error(400, "this fake expects no Prefer: wait")
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "invalid JSON")
        inputs = body.get("input") if isinstance(body, dict) else None
        if not isinstance(inputs, dict):
            return self._error(422, "input is required")
        problem = input_problem(model, inputs)
        if problem:
            return self._error(422, problem)
        events = body.get("webhook_events_filter") or ["start", "output", "logs", "completed"]
        p = FakePrediction(
            id=uuid.uuid4().hex[:26],
            model=model,
            input=inputs,
            created=time.monotonic(),
            created_at=_now(),
            fail_with=self.fail_with,
            webhook=body.get("webhook"),
            events=tuple(events),
        )
        self.predictions[p.id] = p
        if p.webhook and self.send_webhooks:
            task = asyncio.create_task(self._call_back_when_done(p))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(self.body_of(p), status=201)

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "You did not pass a valid authentication token")
        p = self.predictions.get(request.match_info["id"])
        if p is None:
            return self._error(404, "Not found.")
        return web.json_response(self.body_of(p))

    async def _cancel(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "You did not pass a valid authentication token")
        p = self.predictions.get(request.match_info["id"])
        if p is None:
            return self._error(404, "Not found.")
        if self.state_of(p) in ("starting", "processing"):
            p.canceled = True
        return web.json_response(self.body_of(p))

    async def _secret(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "You did not pass a valid authentication token")
        return web.json_response({"key": self.secret})

    async def _file(self, request: web.Request) -> web.Response:
        p = self.predictions.get(request.match_info["id"])
        if p is None or self.state_of(p) != "succeeded":
            return web.Response(status=404, text="Not Found")
        return web.Response(body=tiny_mp4(), content_type="video/mp4")

    # --- webhooks -----------------------------------------------------------------------------

    def signed_headers(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        webhook_id = "msg_" + uuid.uuid4().hex
        stamp = int(time.time()) if timestamp is None else timestamp
        return {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(secret or self.secret, webhook_id, stamp, body),
        }

    async def _call_back_when_done(self, p: FakePrediction) -> None:
        await asyncio.sleep(self.queue_seconds + self.run_seconds + 0.01)
        if "completed" not in p.events or p.webhook is None:
            return
        body = json.dumps(self.body_of(p)).encode()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with (
                aiohttp.ClientSession() as session,
                session.post(p.webhook, data=body, headers=self.signed_headers(body)) as resp,
            ):
                self.webhook_answers.append(resp.status)
                p.sent.append("completed")


def input_problem(model: str, inputs: dict[str, Any]) -> str | None:
    """What Replicate's input validation would say about ``inputs``; None when they are fine."""
    schema = MODELS[model]
    unknown = set(inputs) - set(schema)
    if unknown:
        return f"input: unknown fields {sorted(unknown)}"
    if not isinstance(inputs.get("prompt"), str) or not inputs["prompt"].strip():
        return "input: prompt is required"
    for name, value in inputs.items():
        kind = schema[name]
        if kind == "image":
            if not (isinstance(value, str) and value.startswith(("http://", "https://", "data:image/"))):
                return f"input.{name}: must be a URI"
        elif isinstance(kind, tuple):
            if value not in kind or isinstance(value, bool):
                return f"input.{name}: must be one of {list(kind)}"
        elif kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            return f"input.{name}: must be an integer"
        elif not isinstance(value, kind):
            return f"input.{name}: must be {kind.__name__}"
    return None
