"""A fake Segmind speaking v1 (blocking POST returning the MP4) and v2 (submit + poll), PROVIDERS.md §1-2.

Jobs move through QUEUED -> PROCESSING -> COMPLETED (or FAILED, served as HTTP 422) on the clock:
``queue_seconds`` then ``run_seconds`` after submission. Finished videos are served, without any
key check (they are public on the real service), from ``/files/{id}.mp4``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer
from tests.fakes.videos import tiny_mp4

SIZES = {
    "sora-2": ("720x1280", "1280x720"),
    "sora-2-pro": ("720x1280", "1280x720", "1024x1792", "1792x1024"),
}
DEFAULT_SIZE = {"sora-2": "720x1280", "sora-2-pro": "1280x720"}
DURATIONS = (4, 8, 12)
# Veo 3.1 on Segmind (PROVIDERS-LIVE.md §4): its own fields, duration an int.
VEO_MODELS = ("veo-3.1", "veo-3.1-fast")
VEO_FIELDS = {
    "prompt",
    "aspect_ratio",
    "duration",
    "resolution",
    "generate_audio",
    "negative_prompt",
    "seed",
    "image",
    "last_frame",
}
VEO_DURATIONS = (4, 6, 8)
COST = {"sora-2": 0.4, "sora-2-pro": 1.2, "veo-3.1": 3.2, "veo-3.1-fast": 1.2}


@dataclass
class FakeJob:
    request_id: str
    model: str
    body: dict[str, Any]
    created: float
    fail_with: str | None


class FakeSegmind(FakeServer):
    """Settings are plain attributes a test may change at any time:

    * ``fail_with``: the error text of v2 jobs submitted from now on (they end FAILED);
    * ``output_shape``: where the completed result puts the URL: ``"url"`` (``output`` string, plus a
      ``video`` object), ``"video"`` (only ``video.url``), ``"list"`` (``output[0]``), ``"object"``
      (``output.url``), ``"none"`` (no URL at all);
    * ``video_bytes``: what the v1 call and the file route serve (default: ``tiny_mp4()``).
    """

    def __init__(
        self,
        *,
        api_key: str = "test-segmind-key",
        queue_seconds: float = 0.05,
        run_seconds: float = 0.2,
        sync_delay: float = 0.05,
        credits: float = 100.0,
    ) -> None:
        self.api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.sync_delay = sync_delay
        self.credits = credits
        self.fail_with: str | None = None
        self.output_shape = "url"
        self.video_bytes: bytes | None = None
        self.retired: set[str] = set()
        """Slugs answered like unknown ones (404), as sora-2 is expected to be after 2026-09-24."""
        self.jobs: dict[str, FakeJob] = {}
        self._stopping = asyncio.Event()
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/{model}", self._v1_run)
        app.router.add_get("/v2/requests/{request_id}/status", self._v2_status)
        app.router.add_get("/v2/requests/{request_id}", self._v2_result)
        app.router.add_post("/v2/{model}", self._v2_submit)
        app.router.add_get("/files/{request_id}.mp4", self._file)

    async def stop(self) -> None:
        self._stopping.set()  # let pending v1 calls end instead of holding up the shutdown
        await super().stop()

    @property
    def video(self) -> bytes:
        return self.video_bytes if self.video_bytes is not None else tiny_mp4()

    def file_url(self, request_id: str) -> str:
        return f"{self.base_url}/files/{request_id}.mp4"

    def state_of(self, job: FakeJob) -> str:
        elapsed = time.monotonic() - job.created
        if elapsed < self.queue_seconds:
            return "QUEUED"
        if elapsed < self.queue_seconds + self.run_seconds:
            return "PROCESSING"
        return "FAILED" if job.fail_with else "COMPLETED"

    # --- shared checks -----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"x-remaining-credits": f"{self.credits:.2f}"}

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status, headers=self._headers())

    async def _check_submit(self, request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
        """Key, content type, model and body checks shared by v1 and v2; an error response or (model, body)."""
        if request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "Invalid API key")
        if request.content_type != "application/json":
            return self._error(406, "Content-Type must be application/json")
        model = request.match_info["model"]
        if (model not in SIZES and model not in VEO_MODELS) or model in self.retired:
            return self._error(404, f"Model {model} not found")
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "Request body is not valid JSON")
        if not isinstance(body, dict):
            return self._error(400, "Request body must be a JSON object")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._error(400, "prompt is required")
        if model in VEO_MODELS:
            problem = _veo_problem(body)
            return self._error(400, problem) if problem else (model, body)
        duration = body.get("duration", 8)
        try:
            duration = int(duration)  # the docs' own examples send "8"
        except (TypeError, ValueError):
            return self._error(400, f"duration must be one of {DURATIONS}")
        if duration not in DURATIONS:
            return self._error(400, f"duration must be one of {DURATIONS}")
        size = body.get("size", DEFAULT_SIZE[model])
        if size not in SIZES[model]:
            return self._error(400, f"size must be one of {SIZES[model]}")
        reference = body.get("input_reference")
        if reference is not None and not (isinstance(reference, str) and reference.startswith(("http://", "https://"))):
            return self._error(400, "input_reference must be an image URL")
        return model, body

    # --- v1 ----------------------------------------------------------------------------------

    async def _v1_run(self, request: web.Request) -> web.StreamResponse:
        checked = await self._check_submit(request)
        if isinstance(checked, web.Response):
            return checked
        model, _ = checked
        # The real call holds the connection for the whole generation. Stop early if the client
        # went away or the server is shutting down.
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=self.sync_delay)
            return self._error(503, "Server shutting down")
        except TimeoutError:
            pass
        self.credits -= COST[model]
        return web.Response(body=self.video, content_type="video/mp4", headers=self._headers())

    # --- v2 ----------------------------------------------------------------------------------

    async def _v2_submit(self, request: web.Request) -> web.Response:
        checked = await self._check_submit(request)
        if isinstance(checked, web.Response):
            return checked
        model, body = checked
        request_id = str(uuid.uuid4())
        self.jobs[request_id] = FakeJob(request_id, model, body, time.monotonic(), self.fail_with)
        return web.json_response(
            {
                "request_id": request_id,
                "status": "QUEUED",
                "poll_url": f"{self.base_url}/v1/requests/{request_id}",
                "status_url": f"{self.base_url}/v2/requests/{request_id}/status",
                "response_url": f"{self.base_url}/v2/requests/{request_id}",
            },
            headers=self._headers(),
        )

    def _lookup(self, request: web.Request) -> FakeJob | web.Response:
        if request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "Invalid API key")
        job = self.jobs.get(request.match_info["request_id"])
        if job is None:
            return self._error(404, "Request not found or expired")
        return job

    def _failed(self, job: FakeJob) -> web.Response:
        return web.json_response(
            {"status": "FAILED", "error": job.fail_with, "metrics": {"total_time": 1.5}, "request_id": job.request_id},
            status=422,
        )

    async def _v2_status(self, request: web.Request) -> web.Response:
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        state = self.state_of(job)
        if state == "FAILED":
            return self._failed(job)
        if state == "COMPLETED":
            return web.json_response(
                {"status": state, "request_id": job.request_id, "metrics": {"inference_time": self.run_seconds}}
            )
        return web.json_response(
            {
                "status": state,
                "request_id": job.request_id,
                "status_url": f"{self.base_url}/v2/requests/{job.request_id}/status",
                "response_url": f"{self.base_url}/v2/requests/{job.request_id}",
                "metrics": {},
            }
        )

    async def _v2_result(self, request: web.Request) -> web.Response:
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        state = self.state_of(job)
        if state == "FAILED":
            return self._failed(job)
        if state != "COMPLETED":
            return await self._v2_status(request)
        return web.json_response(self._completed_body(job))

    def _completed_body(self, job: FakeJob) -> dict[str, Any]:
        url = self.file_url(job.request_id)
        video = {
            "url": url,
            "content_type": "video/mp4",
            "file_name": f"{job.request_id}.mp4",
            "file_size": len(self.video),
        }
        body: dict[str, Any] = {
            "status": "COMPLETED",
            "request_id": job.request_id,
            "error": None,
            "metrics": {
                "cost": COST[job.model],
                "remaining_credits": self.credits,
                "inference_time": self.run_seconds,
                "queue_time": self.queue_seconds,
                "total_time": self.queue_seconds + self.run_seconds,
            },
        }
        shape = self.output_shape
        if shape == "url":
            body.update(output=url, video=video)
        elif shape == "video":
            body.update(output=None, video=video)
        elif shape == "list":
            body["output"] = [url]
        elif shape == "object":
            body["output"] = {"url": url}
        else:
            body["output"] = None
        return body

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["request_id"] not in self.jobs:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=self.video, content_type="video/mp4")


def _veo_problem(body: dict[str, Any]) -> str | None:
    """What a Veo 3.1 body gets wrong, as Segmind's validation would say it; None when it is fine."""
    unknown = set(body) - VEO_FIELDS
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16"):
        return "aspect_ratio must be 16:9 or 9:16"
    duration = body.get("duration", 8)
    if not isinstance(duration, int) or duration not in VEO_DURATIONS:
        return f"duration must be one of {VEO_DURATIONS}"
    if body.get("resolution", "720p") not in ("720p", "1080p"):
        return "resolution must be 720p or 1080p"
    if not isinstance(body.get("generate_audio", True), bool):
        return "generate_audio must be a boolean"
    for key in ("image", "last_frame"):
        if key in body and not (isinstance(body[key], str) and body[key].startswith(("http://", "https://"))):
            return f"{key} must be an image URL"
    return None
