"""A fake ComfyUI server (PROVIDERS-LIVE.md §7): the HTTP routes and websocket messages the bot uses.

One worker runs queued prompts in order, like ComfyUI: ``execution_start``, ``executing`` per node,
``progress`` value/max over ``run_seconds``, then the output file, the history entry,
``execution_success`` and ``executing {node: null}``. Messages go only to the websocket of the prompt's
``client_id``, as ComfyUI sends them. What the workflow "saves" is chosen by ``output``:

* ``webp``: SaveAnimatedWEBP (``images`` + ``animated``), an animated WebP made with Pillow;
* ``savevideo``: SaveVideo (``images`` + ``animated``), an MP4;
* ``vhs``: VHS_VideoCombine (``gifs``), an MP4;
* ``gif``: an animated GIF under ``images``; ``webm``: a VP9 WebM under ``videos``;
* ``none``: only a still preview PNG.

Every output also carries a still preview PNG in another node, as real workflows often do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import av
from aiohttp import WSMsgType, web
from PIL import Image

from tests.fakes.base import FakeServer
from tests.fakes.openai_videos import parse_multipart
from tests.fakes.videos import tiny_mp4

FRAMES, FRAME_MS, WIDTH, HEIGHT = 12, 125, 96, 64


@functools.cache
def animated_webp() -> bytes:
    """1.5 s of 12 frames at 8 fps, as SaveAnimatedWEBP writes them."""
    return _animation("WEBP")


@functools.cache
def animated_gif() -> bytes:
    return _animation("GIF")


def _animation(fmt: str) -> bytes:
    frames = [Image.new("RGB", (WIDTH, HEIGHT), (i * 20, 255 - i * 20, 90)) for i in range(FRAMES)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0)
    return buf.getvalue()


@functools.cache
def vp9_webm() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=12)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_image(Image.new("RGB", (WIDTH, HEIGHT), (0, i * 20, 200)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def still_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class FakePrompt:
    prompt_id: str
    number: int
    graph: dict[str, Any]
    client_id: str
    interrupted: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    messages: list[list[Any]] = field(default_factory=list)


class FakeComfyUI(FakeServer):
    """Plain attributes a test may change at any time: ``output`` (see the module docstring),
    ``run_seconds``, ``steps``, ``fail_with`` (an exception message: the next prompts end in
    ``execution_error``), ``paused`` (the worker starts nothing new while set)."""

    def __init__(
        self,
        *,
        output: str = "webp",
        run_seconds: float = 0.4,
        steps: int = 8,
        token: str | None = None,
        websocket: bool = True,
    ) -> None:
        self.output = output
        self.run_seconds = run_seconds
        self.steps = steps
        self.token = token
        self.websocket = websocket
        """False: /ws answers 404 (a proxy that passes no websockets); the bot must poll."""
        self.finished_at: dict[str, float] = {}
        """When each prompt's history entry appeared (time.monotonic())."""
        self.fail_with: str | None = None
        self.paused = False
        self.prompts: dict[str, FakePrompt] = {}
        self.pending: list[str] = []
        self.running: str | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.sent: list[tuple[str, dict[str, Any]]] = []
        """Every websocket message sent: (client id, message)."""
        self.deleted: list[str] = []
        self.interrupts: list[str | None] = []
        self._numbers = itertools.count(1)
        self._work = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/queue", self._queue)
        app.router.add_post("/queue", self._queue_edit)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_get("/view", self._view)
        app.router.add_get("/ws", self._ws)
        app.on_shutdown.append(self._close_sockets)

    async def start(self) -> str:
        url = await super().start()
        self._worker = asyncio.create_task(self._run_queue())
        return url

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await super().stop()

    def resume(self) -> None:
        self.paused = False
        self._work.set()

    def submitted(self) -> list[dict[str, Any]]:
        """The graphs of every POST /prompt the fake accepted, in order."""
        return [p.graph for p in sorted(self.prompts.values(), key=lambda p: p.number)]

    # --- HTTP ------------------------------------------------------------------------------------

    def _denied(self, request: web.Request) -> web.Response | None:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return None

    async def _prompt(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        body = json.loads(await request.read())
        graph, client_id = body.get("prompt"), body.get("client_id")
        if not isinstance(graph, dict) or not graph:
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided"}}, status=400)
        node_errors = _validate(graph)
        if node_errors:
            error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"}
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt = FakePrompt(uuid.uuid4().hex, next(self._numbers), graph, str(client_id or ""))
        self.prompts[prompt.prompt_id] = prompt
        self.pending.append(prompt.prompt_id)
        self._work.set()
        return web.json_response({"prompt_id": prompt.prompt_id, "number": prompt.number, "node_errors": {}})

    async def _history(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    def _entry(self, prompt_id: str) -> list[Any]:
        prompt = self.prompts[prompt_id]
        return [prompt.number, prompt_id, prompt.graph, {"client_id": prompt.client_id}, []]

    async def _queue(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        running = [self._entry(self.running)] if self.running else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [self._entry(p) for p in reversed(self.pending)]}
        )

    async def _queue_edit(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        body = json.loads(await request.read())
        for prompt_id in body.get("delete", []):
            if prompt_id in self.pending:
                self.pending.remove(prompt_id)
                self.deleted.append(prompt_id)
        return web.Response(status=200)

    async def _interrupt(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        raw = await request.read()
        target = json.loads(raw).get("prompt_id") if raw else None
        self.interrupts.append(target)
        if self.running is not None and target in (None, self.running):
            self.prompts[self.running].interrupted = True
            self.prompts[self.running].stop.set()
        return web.Response(status=200)

    async def _upload(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        parts = parse_multipart(request.headers["Content-Type"], await request.read())
        image = parts.get("image")
        if image is None or not image.filename:
            return web.Response(status=400)
        subfolder = parts["subfolder"].text if "subfolder" in parts else ""
        name = image.filename
        if name in self.uploads and (parts["overwrite"].text if "overwrite" in parts else "false") != "true":
            stem, _, suffix = name.rpartition(".")
            name = next(
                f"{stem} ({n}).{suffix}" for n in itertools.count(1) if f"{stem} ({n}).{suffix}" not in self.uploads
            )
        self.uploads[name] = image.data
        return web.json_response({"name": name, "subfolder": subfolder, "type": "input"})

    async def _view(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        key = (request.query.get("subfolder", ""), request.query.get("filename", ""), request.query.get("type", ""))
        data = self.files.get(key)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        if denied := self._denied(request):
            raise web.HTTPUnauthorized(text=denied.text)
        if not self.websocket:
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        await self._send(sid, "status", {"status": {"exec_info": {"queue_remaining": len(self.pending)}}, "sid": sid})
        try:
            async for message in ws:
                if message.type is WSMsgType.ERROR:
                    break
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    async def _close_sockets(self, _: web.Application) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()

    async def drop_sockets(self) -> None:
        """Close every websocket (the bot is expected to reconnect)."""
        await self._close_sockets(self.app)

    async def _send(self, client_id: str, kind: str, data: dict[str, Any]) -> None:
        message = {"type": kind, "data": data}
        self.sent.append((client_id, message))
        ws = self.sockets.get(client_id)
        if ws is not None and not ws.closed:
            await ws.send_str(json.dumps(message))

    # --- the worker --------------------------------------------------------------------------------

    async def _run_queue(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self.pending and not self.paused:
                self.running = self.pending.pop(0)
                try:
                    await self._execute(self.prompts[self.running])
                finally:
                    self.running = None

    async def _execute(self, prompt: FakePrompt) -> None:
        cid, pid = prompt.client_id, prompt.prompt_id
        prompt.messages.append(["execution_start", {"prompt_id": pid}])
        await self._send(cid, "execution_start", {"prompt_id": pid})
        nodes = list(prompt.graph)
        samplers = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
        sampler = next((n for n in nodes if prompt.graph[n]["class_type"] in samplers), nodes[0])
        for node in nodes:
            await self._send(cid, "executing", {"node": node, "display_node": node, "prompt_id": pid})
            if node != sampler:
                continue
            for step in range(1, self.steps + 1):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(prompt.stop.wait(), self.run_seconds / self.steps)
                if prompt.interrupted:
                    return await self._finish_error(
                        prompt, "execution_interrupted", {"prompt_id": pid, "node_id": node}
                    )
                await self._send(cid, "progress", {"value": step, "max": self.steps, "prompt_id": pid, "node": node})
        if self.fail_with is not None:
            data = {
                "prompt_id": pid,
                "node_id": sampler,
                "node_type": prompt.graph[sampler]["class_type"],
                "exception_message": self.fail_with,
                "exception_type": "RuntimeError",
                "traceback": [],
            }
            return await self._finish_error(prompt, "execution_error", data)
        outputs = self._outputs(pid, nodes[-1])
        prompt.messages.append(["execution_success", {"prompt_id": pid}])
        self.finished_at[pid] = time.monotonic()
        self.history[pid] = {
            "prompt": self._entry(pid),
            "outputs": outputs,
            "status": {"status_str": "success", "completed": True, "messages": prompt.messages},
            "meta": {},
        }
        await self._send(cid, "executed", {"node": nodes[-1], "output": outputs.get(nodes[-1], {}), "prompt_id": pid})
        await self._send(cid, "execution_success", {"prompt_id": pid})
        await self._send(cid, "executing", {"node": None, "prompt_id": pid})

    async def _finish_error(self, prompt: FakePrompt, kind: str, data: dict[str, Any]) -> None:
        prompt.messages.append([kind, data])
        self.history[prompt.prompt_id] = {
            "prompt": self._entry(prompt.prompt_id),
            "outputs": {},
            "status": {"status_str": "error", "completed": False, "messages": prompt.messages},
            "meta": {},
        }
        await self._send(prompt.client_id, kind, data)

    def _outputs(self, prompt_id: str, save_node: str) -> dict[str, Any]:
        stem = f"sora-bot/clip_{prompt_id[:8]}"
        preview = {"filename": f"preview_{prompt_id[:8]}.png", "subfolder": "", "type": "temp"}
        self.files[("", preview["filename"], "temp")] = still_png()
        outputs: dict[str, Any] = {"preview": {"images": [preview]}}
        kind = self.output
        if kind == "none":
            return outputs
        data, suffix, key = {
            "webp": (animated_webp(), ".webp", "images"),
            "gif": (animated_gif(), ".gif", "images"),
            "savevideo": (tiny_mp4(), ".mp4", "images"),
            "vhs": (tiny_mp4(), ".mp4", "gifs"),
            "webm": (vp9_webm(), ".webm", "videos"),
        }[kind]
        subfolder, _, name = f"{stem}{suffix}".rpartition("/")
        self.files[(subfolder, name, "output")] = data
        item: dict[str, Any] = {"filename": name, "subfolder": subfolder, "type": "output"}
        if kind == "vhs":
            item.update(format="video/h264-mp4", frame_rate=12)
        outputs[save_node] = {key: [item], **({"animated": [True]} if key == "images" else {})}
        return outputs


def _validate(graph: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI-like node_errors: a node without class_type/inputs, a link to a missing node, or a
    placeholder the bot left unfilled."""
    errors: dict[str, Any] = {}
    for node_id, node in graph.items():
        problems: list[dict[str, str]] = []
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs"), dict):
            problems.append({"message": "Invalid node", "details": "missing class_type or inputs"})
        else:
            for name, value in node["inputs"].items():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) not in graph:
                    problems.append({"message": "Required input is missing", "details": f"{name}: no node {value[0]}"})
                if isinstance(value, str) and "{{" in value:
                    problems.append({"message": "Value not in list", "details": f"{name}: {value!r}"})
        if problems:
            class_type = node.get("class_type", "?") if isinstance(node, dict) else "?"
            errors[node_id] = {"errors": problems, "dependent_outputs": [], "class_type": class_type}
    return errors
