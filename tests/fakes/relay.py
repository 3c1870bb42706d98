"""A local stand-in for a ``/v2/videos/generations`` relay (new-api task model).

The lifecycle is driven by ``clock`` (``time.monotonic`` unless a test swaps it): QUEUED for the
first tenth of ``run_seconds``, then IN_PROGRESS with a ``"NN%"`` progress string, then SUCCESS
with ``data.output`` pointing at this server's ``/files/`` route. With ``fail_with`` set, the task
ends FAILURE with that ``fail_reason`` once progress reaches ``fail_at`` (the relay's output
moderation fails jobs after 90 %). Tests serve reference images from ``/uploads/{name}`` by
filling ``uploads``; with ``require_image_size`` the fake fetches them and refuses a wrong size.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

from tests.fakes.base import FakeServer
from tests.fakes.videos import tiny_mp4

DURATIONS = ("4", "8", "10", "12", "15", "25")
SIZE_MISMATCH = "Inpaint image must match the requested width and height"


@dataclass
class FakeTask:
    task_id: str
    params: dict[str, Any]
    started: float
    submit_time: int


def _error(status: int, message: str, *, kind: str = "invalid_request_error", code: str = "") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": "", "code": code or None}}
    return web.json_response(body, status=status)


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


class FakeRelay(FakeServer):
    def __init__(
        self,
        *,
        api_key: str = "test-key",
        run_seconds: float = 0.05,
        fail_with: str | None = None,
        fail_at: float = 0.95,
        require_image_size: tuple[int, int] | None = None,
        wrapped: bool = False,
        video_bytes: bytes | None = None,
        result_location: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.run_seconds = run_seconds
        self.fail_with = fail_with
        self.fail_at = fail_at
        self.require_image_size = require_image_size
        self.wrapped = wrapped
        """Answer polls in new-api's ``{"code": "success", "data": {...}}`` form."""
        self.video_bytes = video_bytes
        self.result_location = result_location
        """When set, result files answer ``302`` to this URL instead of the video (a hostile relay)."""
        self.clock: Callable[[], float] = time.monotonic
        self.tasks: dict[str, FakeTask] = {}
        self.uploads: dict[str, bytes] = {}
        self.fetched_images: list[str] = []
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/videos/generations", self._create)
        app.router.add_get("/v2/videos/generations/{task_id}", self._get)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/uploads/{name}", self._upload)

    # --- helpers for tests ---

    def upload_url(self, name: str) -> str:
        return f"{self.base_url}/uploads/{name}"

    def result_url(self, task_id: str) -> str:
        return f"{self.base_url}/files/{task_id}.mp4"

    def finish(self, task_id: str) -> None:
        """End the task now (as if ``run_seconds`` had passed): polls answer SUCCESS (or FAILURE)."""
        task = self.tasks[task_id]
        task.started = self.clock() - max(self.run_seconds, 0.0)

    def task_object(self, task_id: str) -> dict[str, Any]:
        """The flat task object as of now (also what a notify_hook receives)."""
        task = self.tasks[task_id]
        fraction = (self.clock() - task.started) / self.run_seconds if self.run_seconds > 0 else 1.0
        obj: dict[str, Any] = {
            "task_id": task_id,
            "status": "QUEUED",
            "progress": "0%",
            "fail_reason": "",
            "submit_time": task.submit_time,
            "start_time": 0,
            "finish_time": 0,
            "data": None,
        }
        if fraction < 0.1:
            return obj
        obj["start_time"] = task.submit_time
        if self.fail_with is not None and fraction >= self.fail_at:
            obj.update(status="FAILURE", progress=f"{int(self.fail_at * 100)}%", fail_reason=self.fail_with)
            obj["finish_time"] = task.submit_time + 1
        elif fraction >= 1.0:
            obj.update(status="SUCCESS", progress="100%", data={"output": self.result_url(task_id)})
            obj["finish_time"] = task.submit_time + 1
        else:
            obj.update(status="IN_PROGRESS", progress=f"{int(fraction * 100)}%")
        return obj

    # --- handlers ---

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "Invalid token", kind="new_api_error", code="invalid_token")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid JSON body")
        problem = _check_create(body)
        if problem:
            return _error(400, problem)
        if self.require_image_size and body.get("images"):
            for url in body["images"]:
                size = await self._fetch_size(url)
                if size != self.require_image_size:
                    return _error(400, SIZE_MISMATCH)
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = FakeTask(task_id, body, self.clock(), int(time.time()))
        return web.json_response({"task_id": task_id})

    async def _fetch_size(self, url: str) -> tuple[int, int] | None:
        self.fetched_images.append(url)
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            if resp.status != 200:
                return None
            data = await resp.read()
        try:
            return await asyncio.to_thread(_image_size, data)
        except OSError:
            return None

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "Invalid token", kind="new_api_error", code="invalid_token")
        task_id = request.match_info["task_id"]
        if task_id not in self.tasks:
            return _error(404, "task_not_exist", code="task_not_exist")
        obj = self.task_object(task_id)
        return web.json_response({"code": "success", "message": "", "data": obj} if self.wrapped else obj)

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["name"].removesuffix(".mp4") not in self.tasks:
            return web.Response(status=404, text="not found")
        if self.result_location is not None:
            raise web.HTTPFound(self.result_location)
        data = self.video_bytes if self.video_bytes is not None else tiny_mp4()
        return web.Response(body=data, content_type="video/mp4")

    async def _upload(self, request: web.Request) -> web.Response:
        data = self.uploads.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="image/png")


def _check_create(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    model = body.get("model")
    if model not in ("sora-2", "sora-2-pro"):
        return f"model must be sora-2 or sora-2-pro, got {model!r}"
    if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16"):
        return "aspect_ratio must be 16:9 or 9:16"
    duration = body.get("duration", "10")
    if not isinstance(duration, str):
        return "duration must be a string"
    if duration not in DURATIONS or (duration == "25" and model != "sora-2-pro"):
        return f"duration {duration} is not supported for {model}"
    hd = body.get("hd", False)
    if not isinstance(hd, bool):
        return "hd must be a boolean"
    if hd and model != "sora-2-pro":
        return "hd is supported only by sora-2-pro"
    images = body.get("images")
    if images is not None and (not isinstance(images, list) or not all(isinstance(u, str) for u in images)):
        return "images must be an array of strings"
    if "notify_hook" in body and not isinstance(body["notify_hook"], str):
        return "notify_hook must be a string"
    return None
