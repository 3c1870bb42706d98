"""A fake of the OpenAI-style ``/v1/videos`` API (PROVIDERS.md §5), faithful enough for the openai SDK.

Jobs move on a clock: ``queue_seconds`` queued, then in_progress with ``progress`` rising over
``run_seconds``, then completed (or failed with ``fail_code``/``fail_with``). Tests can jump the
clock with :meth:`FakeOpenAIVideos.advance` instead of sleeping.
"""

from __future__ import annotations

import email.parser
import email.policy
import functools
import io
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.base import FakeServer
from tests.fakes.videos import tiny_mp4

MODEL_SIZES: dict[str, tuple[str, ...]] = {
    "sora-2": ("720x1280", "1280x720"),
    "sora-2-pro": ("720x1280", "1280x720", "1024x1792", "1792x1024"),
}
SECONDS = ("4", "8", "12")
VARIANTS = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}


@dataclass(frozen=True)
class FormPart:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode()


def parse_multipart(content_type: str, body: bytes) -> dict[str, FormPart]:
    """Parse a multipart/form-data body (also usable on a recorded request in a test)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ValueError(f"not a multipart body: {content_type!r}")
    parts: dict[str, FormPart] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("multipart part without a name")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        content_type_header = part.get("content-type")
        parts[name] = FormPart(
            name, data, part.get_filename(), str(content_type_header) if content_type_header else None
        )
    return parts


@dataclass
class FakeVideo:
    id: str
    model: str
    seconds: str
    size: str
    prompt: str
    started: float
    """The fake's clock reading at creation."""
    created_at: int
    fail_code: str | None = None
    fail_with: str | None = None
    remixed_from_video_id: str | None = None


def error_body(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: Any = None
) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class FakeOpenAIVideos(FakeServer):
    def __init__(
        self,
        *,
        api_key: str = "sk-fake-openai-key-0123456789",
        queue_seconds: float = 0.05,
        run_seconds: float = 0.2,
        poll_after_ms: int | None = 1000,
        fail_with: str | None = None,
        fail_code: str = "moderation_blocked",
        video_bytes: bytes | None = None,
        expires_in: int = 3600,
    ) -> None:
        self.api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.poll_after_ms = poll_after_ms
        self.fail_with = fail_with
        self.fail_code = fail_code
        self.video_bytes = video_bytes
        self.expires_in = expires_in
        self.videos: dict[str, FakeVideo] = {}
        self.forms: list[dict[str, FormPart]] = []
        """Every parsed create body, in order (also the ones refused with 400)."""
        self._offset = 0.0
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/videos", self._create)
        app.router.add_get("/v1/videos/{video_id}", self._retrieve)
        app.router.add_delete("/v1/videos/{video_id}", self._delete)
        app.router.add_get("/v1/videos/{video_id}/content", self._content)
        app.router.add_post("/v1/videos/{video_id}/remix", self._remix)

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (jobs progress as if that much time had passed)."""
        self._offset += seconds

    def now(self) -> float:
        return time.monotonic() + self._offset

    # --- the video object ------------------------------------------------------------------

    def video_object(self, video: FakeVideo) -> dict[str, Any]:
        elapsed = self.now() - video.started
        run_elapsed = elapsed - self.queue_seconds
        status, progress, completed_at, expires_at, error = "queued", 0, None, None, None
        if run_elapsed >= self.run_seconds:
            finished = video.created_at + round(self.queue_seconds + self.run_seconds)
            if video.fail_with is not None:
                # Moderation also runs on the output: the job fails late, keeping its progress.
                status, progress = "failed", 99
                error = {"code": video.fail_code, "message": video.fail_with}
            else:
                status, progress, completed_at = "completed", 100, finished
                expires_at = finished + self.expires_in
        elif run_elapsed >= 0:
            fraction = run_elapsed / self.run_seconds if self.run_seconds > 0 else 1.0
            status, progress = "in_progress", max(0, min(99, int(100 * fraction)))
        return {
            "id": video.id,
            "object": "video",
            "status": status,
            "progress": progress,
            "created_at": video.created_at,
            "completed_at": completed_at,
            "expires_at": expires_at,
            "model": video.model,
            "seconds": video.seconds,
            "size": video.size,
            "prompt": video.prompt,
            "remixed_from_video_id": video.remixed_from_video_id,
            "error": error,
        }

    def _new_video(self, model: str, seconds: str, size: str, prompt: str, remixed_from: str | None) -> FakeVideo:
        video = FakeVideo(
            id=f"video_{uuid.uuid4().hex}",
            model=model,
            seconds=seconds,
            size=size,
            prompt=prompt,
            started=self.now(),
            created_at=int(time.time()),
            fail_code=self.fail_code if self.fail_with is not None else None,
            fail_with=self.fail_with,
            remixed_from_video_id=remixed_from,
        )
        self.videos[video.id] = video
        return video

    # --- handlers --------------------------------------------------------------------------

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if auth == f"Bearer {self.api_key}":
            return None
        presented = auth.removeprefix("Bearer ").strip()
        # The real API masks most of the key; echoing it whole proves our side scrubs it.
        message = f"Incorrect API key provided: {presented}. You can find your API key in your account settings."
        return web.json_response(error_body(message, code="invalid_api_key"), status=401)

    def _lookup(self, request: web.Request) -> FakeVideo | web.Response:
        video_id = request.match_info["video_id"]
        video = self.videos.get(video_id)
        if video is None:
            return web.json_response(
                error_body(f"Video with id '{video_id}' not found.", param="video_id", code="not_found"), status=404
            )
        return video

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if request.content_type != "multipart/form-data":
            # The typed SDKs send multipart; the fake insists on it to catch a client that does not.
            return web.json_response(error_body("Expected a multipart/form-data body."), status=400)
        try:
            form = parse_multipart(request.headers["Content-Type"], await request.read())
        except ValueError as exc:
            return web.json_response(error_body(f"Malformed multipart body: {exc}"), status=400)
        self.forms.append(form)
        fields = {name: part.text for name, part in form.items() if part.filename is None}
        prompt = fields.get("prompt", "")
        model = fields.get("model", "sora-2")
        seconds = fields.get("seconds", "4")
        size = fields.get("size", "720x1280")
        if not prompt.strip():
            return web.json_response(error_body("Missing required parameter: 'prompt'.", param="prompt"), status=400)
        if model not in MODEL_SIZES:
            return web.json_response(
                error_body(
                    f"Invalid value: '{model}'. Supported values are: 'sora-2' and 'sora-2-pro'.", param="model"
                ),
                status=400,
            )
        if seconds not in SECONDS:
            return web.json_response(
                error_body(
                    f"Invalid value: '{seconds}'. Supported values are: '4', '8', and '12'.",
                    param="seconds",
                    code="invalid_value",
                ),
                status=400,
            )
        if size not in MODEL_SIZES[model]:
            return web.json_response(
                error_body(
                    f"Invalid value: '{size}'. Supported sizes for {model} are: {', '.join(MODEL_SIZES[model])}.",
                    param="size",
                    code="invalid_value",
                ),
                status=400,
            )
        reference = form.get("input_reference")
        if reference is not None and _pixel_size(reference.data) != _parse_size(size):
            return web.json_response(
                error_body("Inpaint image must match the requested width and height", param="input_reference"),
                status=400,
            )
        video = self._new_video(model, seconds, size, prompt, None)
        return web.json_response(self.video_object(video))

    async def _retrieve(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        headers = {} if self.poll_after_ms is None else {"openai-poll-after-ms": str(self.poll_after_ms)}
        return web.json_response(self.video_object(found), headers=headers)

    async def _delete(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        del self.videos[found.id]
        return web.json_response({"id": found.id, "object": "video.deleted", "deleted": True})

    async def _content(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        variant = request.query.get("variant", "video")
        if variant not in VARIANTS:
            return web.json_response(
                error_body(
                    f"Invalid value: '{variant}'. Supported values are: {', '.join(VARIANTS)}.", param="variant"
                ),
                status=400,
            )
        if self.video_object(found)["status"] != "completed":
            return web.json_response(error_body(f"Video '{found.id}' is not ready yet.", param="video_id"), status=404)
        if variant == "video":
            data = self.video_bytes if self.video_bytes is not None else tiny_mp4()
        else:
            data = _preview_image("WEBP" if variant == "thumbnail" else "JPEG")
        return web.Response(body=data, content_type=VARIANTS[variant])

    async def _remix(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(error_body("Expected a JSON body."), status=400)
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            return web.json_response(error_body("Missing required parameter: 'prompt'.", param="prompt"), status=400)
        if self.video_object(found)["status"] != "completed":
            return web.json_response(
                error_body(f"Video '{found.id}' must be completed before it can be remixed.", param="video_id"),
                status=400,
            )
        video = self._new_video(found.model, found.seconds, found.size, prompt, found.id)
        return web.json_response(self.video_object(video))


def _parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def _pixel_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError):
        return None


@functools.cache
def _preview_image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (20, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()
