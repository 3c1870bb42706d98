"""A fake Runway task API (PROVIDERS-LIVE.md §5), shaped after the ``runwayml`` SDK's types.

Tasks move ``PENDING`` (or ``THROTTLED``) -> ``RUNNING`` (``progress`` 0-1 rising with the clock) ->
``SUCCEEDED`` (``output``: a list of URLs) or ``FAILED`` (``failure``, ``failureCode``) on the clock;
``DELETE /v1/tasks/{id}`` cancels (``CANCELLED``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer
from tests.fakes.videos import tiny_mp4

API_VERSION = "2024-11-06"
VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")
# Per model and endpoint: allowed ratios and durations (runwayml types/*_create_params.py).
MODELS: dict[str, dict[str, Any]] = {
    "gen4.5": {
        "text_to_video": ("1280:720", "720:1280"),
        "image_to_video": ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672"),
        "durations": tuple(range(2, 11)),
        "audio": False,
    },
    "veo3.1": {"text_to_video": VEO_RATIOS, "image_to_video": VEO_RATIOS, "durations": (4, 6, 8), "audio": True},
    "veo3.1_fast": {"text_to_video": VEO_RATIOS, "image_to_video": VEO_RATIOS, "durations": (4, 6, 8), "audio": True},
}
FIELDS = {"model", "promptText", "ratio", "duration", "seed", "contentModeration", "audio", "negativePrompt"}


@dataclass
class FakeTask:
    id: str
    endpoint: str
    body: dict[str, Any]
    created: float
    created_at: str
    failure: tuple[str, str] | None
    cancelled: bool = False


class FakeRunway(FakeServer):
    """Knobs: ``fail_with`` = (failure, failureCode) for tasks created from now on; ``throttled``: tasks
    wait as THROTTLED instead of PENDING; ``out_of_credits``: creates answer 400 "not enough credits"."""

    def __init__(
        self, *, api_key: str = "key_test-runway-secret", queue_seconds: float = 0.05, run_seconds: float = 0.3
    ):
        self.api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.fail_with: tuple[str, str] | None = None
        self.throttled = False
        self.out_of_credits = False
        self.tasks: dict[str, FakeTask] = {}
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/text_to_video", self._create)
        app.router.add_post("/v1/image_to_video", self._create)
        app.router.add_get("/v1/tasks/{id}", self._get)
        app.router.add_delete("/v1/tasks/{id}", self._delete)
        app.router.add_get("/files/{id}.mp4", self._file)

    def state_of(self, task: FakeTask) -> str:
        if task.cancelled:
            return "CANCELLED"
        elapsed = time.monotonic() - task.created
        if elapsed < self.queue_seconds:
            return "THROTTLED" if self.throttled else "PENDING"
        if elapsed < self.queue_seconds + self.run_seconds:
            return "RUNNING"
        return "FAILED" if task.failure else "SUCCEEDED"

    def body_of(self, task: FakeTask) -> dict[str, Any]:
        state = self.state_of(task)
        body: dict[str, Any] = {"id": task.id, "createdAt": task.created_at, "status": state}
        credits = 10 * int(task.body.get("duration", 5))
        if state in ("PENDING", "THROTTLED", "RUNNING"):
            body["estimatedCost"] = {"credits": credits}
        else:
            body["cost"] = {"credits": 0 if state != "SUCCEEDED" else credits}
        if state == "RUNNING":
            elapsed = time.monotonic() - task.created - self.queue_seconds
            body["progress"] = round(min(0.99, max(0.0, elapsed / self.run_seconds)), 2)
        elif state == "SUCCEEDED":
            body["output"] = [f"{self.base_url}/files/{task.id}.mp4?_jwt=signed"]
        elif state == "FAILED":
            assert task.failure is not None
            body["failure"], body["failureCode"] = task.failure
        return body

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def _check_headers(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "Invalid API key")
        if request.headers.get("X-Runway-Version") != API_VERSION:
            return self._error(400, "X-Runway-Version header is required")
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._check_headers(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "Invalid JSON")
        endpoint = request.path.rsplit("/", 1)[-1]
        problem = body_problem(endpoint, body) if isinstance(body, dict) else "body must be an object"
        if problem:
            return self._error(400, problem)
        if self.out_of_credits:
            return self._error(400, "You do not have enough credits to run this task.")
        task = FakeTask(
            uuid.uuid4().hex, endpoint, body, time.monotonic(), datetime.now(UTC).isoformat(), self.fail_with
        )
        self.tasks[task.id] = task
        return web.json_response({"id": task.id})

    def _task(self, request: web.Request) -> FakeTask | web.Response:
        refused = self._check_headers(request)
        if refused is not None:
            return refused
        task = self.tasks.get(request.match_info["id"])
        return task if task is not None else self._error(404, "Task not found")

    async def _get(self, request: web.Request) -> web.Response:
        task = self._task(request)
        return task if isinstance(task, web.Response) else web.json_response(self.body_of(task))

    async def _delete(self, request: web.Request) -> web.Response:
        task = self._task(request)
        if isinstance(task, web.Response):
            return task
        if self.state_of(task) in ("PENDING", "THROTTLED", "RUNNING"):
            task.cancelled = True
        else:
            del self.tasks[task.id]  # a finished task is deleted
        return web.Response(status=204)

    async def _file(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if task is None or self.state_of(task) != "SUCCEEDED" or request.query.get("_jwt") != "signed":
            return web.Response(status=404, text="Not Found")
        return web.Response(body=tiny_mp4(), content_type="video/mp4")


def body_problem(endpoint: str, body: dict[str, Any]) -> str | None:
    """What Runway's validation would say about a create body; None when it is fine."""
    model = MODELS.get(str(body.get("model")))
    if model is None:
        return f"model: unknown model {body.get('model')!r}"
    allowed = FIELDS | ({"promptImage"} if endpoint == "image_to_video" else set())
    unknown = set(body) - allowed
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    text = body.get("promptText")
    if not isinstance(text, str) or not text.strip() or len(text.encode("utf-16-le")) // 2 > 1000:
        return "promptText: must be 1-1000 UTF-16 code units"
    if body.get("ratio") not in model[endpoint]:
        return f"ratio: must be one of {list(model[endpoint])}"
    duration = body.get("duration")
    if not isinstance(duration, int) or isinstance(duration, bool) or duration not in model["durations"]:
        return f"duration: must be one of {list(model['durations'])}"
    if "audio" in body and (not model["audio"] or not isinstance(body["audio"], bool)):
        return "audio: not accepted by this model" if not model["audio"] else "audio: must be a boolean"
    if endpoint == "image_to_video":
        image = body.get("promptImage")
        if not (isinstance(image, str) and image.startswith(("https://", "data:image/"))):
            return "promptImage: must be an HTTPS URL or a data URI"
    return None
