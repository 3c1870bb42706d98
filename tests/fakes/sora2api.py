"""A local stand-in for Sora2API: ``generate`` + ``record-info`` in the ``{code, msg, data}`` envelope.

Like the real API, business errors come as HTTP 200 with a non-200 ``code``. The job lifecycle is
driven by ``clock`` (``time.monotonic`` unless a test swaps it): ``run_seconds`` after submission a
task succeeds, or fails with ``fail_with`` and ``fail_flag`` (3 = generation failed).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer
from tests.fakes.videos import tiny_mp4


@dataclass
class FakeTask:
    task_id: str
    params: dict[str, Any]
    started: float
    created_wall: float = field(default_factory=time.time)


def _stamp(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S")


class FakeSora2Api(FakeServer):
    def __init__(
        self,
        *,
        api_key: str = "test-key",
        prefix: str = "/api/v1/sora2api",
        run_seconds: float = 0.05,
        fail_with: str | None = None,
        fail_flag: int = 3,
        video_bytes: bytes | None = None,
    ) -> None:
        self.api_key = api_key
        self.prefix = "/" + prefix.strip("/")
        self.run_seconds = run_seconds
        self.fail_with = fail_with
        self.fail_flag = fail_flag
        self.video_bytes = video_bytes
        self.clock: Callable[[], float] = time.monotonic
        self.tasks: dict[str, FakeTask] = {}
        self.next_generate_code: int | None = None
        """When set, the next generate answers HTTP 200 with this business code (then it resets)."""
        self.next_generate_msg = "business error"
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(self.prefix + "/generate", self._generate)
        app.router.add_get(self.prefix + "/record-info", self._record_info)
        app.router.add_get("/files/{name}", self._file)

    # --- helpers for tests ---

    def result_url(self, task_id: str) -> str:
        return f"{self.base_url}/files/{task_id}.mp4"

    def record(self, task_id: str) -> dict[str, Any]:
        """The record-info ``data`` object of a task, as of now."""
        task = self.tasks[task_id]
        done = self.clock() - task.started >= self.run_seconds
        record: dict[str, Any] = {
            "taskId": task_id,
            "paramJson": json.dumps(task.params),
            "createTime": _stamp(task.created_wall),
            "completeTime": None,
            "response": None,
            "successFlag": 0,
            "errorCode": 0,
            "errorMessage": None,
        }
        if not done:
            return record
        record["completeTime"] = _stamp(task.created_wall + self.run_seconds)
        if self.fail_with is not None:
            record.update(successFlag=self.fail_flag, errorCode=501, errorMessage=self.fail_with)
        else:
            record.update(successFlag=1, response={"imageUrl": self.result_url(task_id)})
        return record

    def callback_body(self, task_id: str, *, style: str = "record") -> dict[str, Any]:
        """What the service POSTs to ``callBackUrl``: ``style`` "record" (Chinese docs) or "urls" (English)."""
        record = self.record(task_id)
        ok = record["successFlag"] == 1
        if style == "record":
            data: dict[str, Any] = record
        else:
            data = {"taskId": task_id, "promptJson": record["paramJson"], "resultUrls": []}
            if ok:
                data["resultUrls"] = [record["response"]["imageUrl"]]
        return {"code": 200 if ok else 500, "msg": "success" if ok else (self.fail_with or "failed"), "data": data}

    # --- handlers ---

    def _envelope(self, code: int, msg: str, data: Any = None, *, http: int = 200) -> web.Response:
        return web.json_response({"code": code, "msg": msg, "data": data}, status=http)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _generate(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._envelope(401, "Unauthorized: invalid API key", http=401)
        if self.next_generate_code is not None:
            code, self.next_generate_code = self.next_generate_code, None
            return self._envelope(code, self.next_generate_msg)
        try:
            body = await request.json()
        except ValueError:
            return self._envelope(400, "malformed JSON")
        problem = _check_generate(body)
        if problem:
            return self._envelope(400, problem)
        task_id = "sora2_task_" + uuid.uuid4().hex[:12]
        self.tasks[task_id] = FakeTask(task_id, body, self.clock())
        return self._envelope(200, "success", {"taskId": task_id})

    async def _record_info(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._envelope(401, "Unauthorized: invalid API key", http=401)
        task_id = request.query.get("taskId", "")
        if not task_id:
            return self._envelope(400, "taskId is required")
        if task_id not in self.tasks:
            return self._envelope(404, "task not found")
        return self._envelope(200, "success", self.record(task_id))

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name.removesuffix(".mp4") not in self.tasks:
            return web.Response(status=404, text="not found")
        data = self.video_bytes if self.video_bytes is not None else tiny_mp4()
        return web.Response(body=data, content_type="video/mp4")


def _check_generate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if body.get("aspectRatio", "landscape") not in ("landscape", "portrait"):
        return "aspectRatio must be landscape or portrait"
    if body.get("quality", "standard") not in ("standard", "hd"):
        return "quality must be standard or hd"
    urls = body.get("imageUrls")
    if urls is not None and (not isinstance(urls, list) or not all(isinstance(u, str) for u in urls)):
        return "imageUrls must be an array of URLs"
    if "callBackUrl" in body and not isinstance(body["callBackUrl"], str):
        return "callBackUrl must be a string"
    unknown = set(body) - {"prompt", "aspectRatio", "quality", "imageUrls", "watermark", "callBackUrl"}
    if unknown:
        return f"unknown fields: {sorted(unknown)}"
    return None
