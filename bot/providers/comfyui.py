"""A self-hosted ComfyUI server running the operator's own workflow (PROVIDERS-LIVE.md §7, §10).

The workflow is ComfyUI's API format ("Export (API)") with placeholders the bot fills: a string value
that is exactly ``"{{name}}"`` becomes the typed value (a number stays a number); ``{{name}}`` inside a
longer string is replaced by its text. Names: prompt, negative_prompt, seed, width, height, seconds,
fps, frames (``seconds * fps + 1``: the 8n+1 / 4n+1 lengths LTX-Video and Wan latents take), image (the
uploaded reference's name, for a LoadImage node), and any field of the model's catalogue host
(``fields = { fps = 16, steps = 30 }``), which also overrides the defaults.

Wire: ``POST /upload/image`` (multipart) for the reference, ``POST /prompt`` with our ``client_id``,
progress from one reconnecting ``/ws?clientId=`` per provider, the result from
``GET /history/{prompt_id}`` (the source of truth) fetched with ``GET /view``; cancel with
``POST /queue {"delete": [id]}`` while queued or ``POST /interrupt`` while running. The provider's job id
is the prompt id, so a restarted bot resumes from the history. Whatever the workflow saves (MP4, WebM,
animated WebP, GIF) is converted to an H.264 MP4 in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from bot.catalogue.spec import Host, ModelSpec
from bot.domain import JobState, JobStatus, ReferenceImage, VideoRequest, parse_size
from bot.errors import ConfigError, GenerationFailed, InvalidRequest, ProviderUnavailable, WorkflowRejected, redact
from bot.media.video import to_mp4_async
from bot.providers.base import Capabilities
from bot.providers.http import HttpClient, error_message_from_body

log = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
BUILTIN_PLACEHOLDERS = frozenset(
    {"prompt", "negative_prompt", "seed", "width", "height", "seconds", "fps", "frames", "image"}
)
DEFAULT_FPS = 24
# Output files worth posting, best first; still images only count when the node marks them animated.
_VIDEO_RANK = {".mp4": 0, ".webm": 1, ".mov": 1, ".mkv": 1, ".webp": 2, ".gif": 3, ".png": 4}
_REAL_VIDEO = frozenset({".mp4", ".webm", ".mov", ".mkv"})
_LIVE_CACHE = 1024
_PROGRESS_CAP = 99.0  # 100 only once the history says it is done
HISTORY_EVERY = 15.0
"""While the websocket follows a running prompt, the history is still asked this often (seconds)."""


@dataclass(frozen=True)
class Workflow:
    """One API-format workflow and the placeholder names it uses."""

    path: Path
    graph: Mapping[str, Any]
    placeholders: frozenset[str]


def load_workflow(path: Path, setting: str = "COMFYUI_WORKFLOW") -> Workflow:
    """Read and check a workflow file; ConfigError (one line) when it is missing or not API format."""
    where = f"{setting} {str(path)!r}"
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise ConfigError(f"{where} is in ComfyUI's UI format; save it with Workflow > Export (API) instead")
    if not isinstance(graph, dict) or not graph:
        raise ConfigError(f"{where} must be a JSON object of nodes (ComfyUI's API format)")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) or "inputs" not in node:
            raise ConfigError(f"{where}: node {node_id!r} has no class_type and inputs (not ComfyUI's API format)")
    names = frozenset(_placeholders(graph))
    if "prompt" not in names:
        raise ConfigError(f"{where} has no {{{{prompt}}}} placeholder: the member's prompt would be ignored")
    return Workflow(path, graph, names)


def load_workflows(default: Path, hosts: Mapping[str, Host]) -> tuple[Workflow, dict[str, Workflow]]:
    """COMFYUI_WORKFLOW and every workflow a catalogue host names (``model`` / ``image_model`` ending in
    ``.json``, relative to COMFYUI_WORKFLOW's folder), checked: ConfigError (one line) for a missing or
    malformed file, a placeholder nobody fills, or no comfyui model at all. Run at start-up."""
    if not hosts:
        raise ConfigError(
            "COMFYUI_URL is set but no model in the catalogue runs on comfyui: add one in MODELS_FILE "
            '(a [[models."id".hosts]] entry with provider = "comfyui"; see README, ComfyUI)'
        )
    main = load_workflow(default)
    named: dict[str, Workflow] = {}
    for model_id, host in hosts.items():
        for ref in {host.model, host.image_model or host.model}:
            if ref.endswith(".json") and ref not in named:
                # A relative path is read next to COMFYUI_WORKFLOW, where an operator keeps them together.
                named[ref] = load_workflow(default.parent / ref, f"model {model_id!r}: workflow")
        allowed = BUILTIN_PLACEHOLDERS | set(host.fields) | set(host.text_fields) | set(host.image_fields)
        for chosen in (workflow_for(host, False, main, named), workflow_for(host, True, main, named)):
            unknown = chosen.placeholders - allowed
            if unknown:
                raise ConfigError(
                    f"workflow {str(chosen.path)!r} (model {model_id!r}) has unknown placeholders "
                    f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}"
                )
    return main, named


def workflow_for(host: Host, with_image: bool, default: Workflow, named: Mapping[str, Workflow]) -> Workflow:
    """The workflow a request runs: the host's own (its image one with a reference), else COMFYUI_WORKFLOW."""
    ref = (host.image_model or host.model) if with_image else host.model
    return named.get(ref, default)


def _placeholders(value: Any) -> list[str]:
    if isinstance(value, str):
        return PLACEHOLDER.findall(value)
    if isinstance(value, dict):
        return [name for item in value.values() for name in _placeholders(item)]
    if isinstance(value, list):
        return [name for item in value for name in _placeholders(item)]
    return []


def fill_workflow(graph: Any, values: Mapping[str, Any]) -> Any:
    """A copy of ``graph`` with every placeholder replaced (see the module docstring)."""
    if isinstance(graph, str):
        whole = PLACEHOLDER.fullmatch(graph)
        if whole:
            return values[whole[1]]
        return PLACEHOLDER.sub(lambda m: str(values[m[1]]), graph)
    if isinstance(graph, dict):
        return {key: fill_workflow(item, values) for key, item in graph.items()}
    if isinstance(graph, list):
        return [fill_workflow(item, values) for item in graph]
    return graph


def placeholder_values(request: VideoRequest, host: Host | None, *, seed: int, image: str | None) -> dict[str, Any]:
    """What each placeholder becomes for ``request``: the built-ins, then the host's own fields over them."""
    width, height = parse_size(request.size)
    values: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": "",
        "seed": seed,
        "width": width,
        "height": height,
        "seconds": int(request.seconds),
        "fps": DEFAULT_FPS,
        "image": image,
    }
    extra = host.inputs(request) if host is not None else {}
    values.update(extra)
    if "frames" not in extra:
        values["frames"] = int(request.seconds) * int(values["fps"]) + 1
    return values


def find_output(outputs: Any) -> Mapping[str, str] | None:
    """The saved clip in a history entry's ``outputs``: ``{"filename", "subfolder", "type"}``.

    The key is node-specific (SaveVideo: ``images`` + ``animated``; SaveAnimatedWEBP: ``images`` +
    ``animated``; VHS_VideoCombine: ``gifs``; others ``videos``/``video``): any list of files counts, and
    a real video beats an animation, an ``output`` file a ``temp`` one."""
    best: tuple[int, int, int] | None = None
    chosen: Mapping[str, str] | None = None
    if not isinstance(outputs, Mapping):
        return None
    for order, node_output in enumerate(outputs.values()):
        if not isinstance(node_output, Mapping):
            continue
        animated = node_output.get("animated")
        for key, files in node_output.items():
            if not isinstance(files, list):
                continue
            for index, item in enumerate(files):
                if not isinstance(item, Mapping) or not isinstance(item.get("filename"), str):
                    continue
                suffix = PurePosixPath(item["filename"]).suffix.lower()
                if suffix not in _VIDEO_RANK:
                    continue
                flagged = isinstance(animated, list) and index < len(animated) and animated[index] is True
                if key == "images" and suffix not in _REAL_VIDEO and not flagged:
                    continue  # a preview or a still frame
                rank = (_VIDEO_RANK[suffix], 0 if item.get("type", "output") == "output" else 1, order)
                if best is None or rank < best:
                    best = rank
                    chosen = {
                        "filename": item["filename"],
                        "subfolder": str(item.get("subfolder") or ""),
                        "type": str(item.get("type") or "output"),
                    }
    return chosen


def comfyui_capabilities(hosts: Mapping[str, Host], specs: Mapping[str, ModelSpec]) -> Capabilities:
    hosted = [specs[m] for m in hosts if m in specs]
    return Capabilities(
        sizes={m.id: m.sizes for m in hosted},
        seconds={m.id: m.durations for m in hosted},
        image_mode="bytes",
        can_cancel=True,
        resumable=True,
        reports_progress=True,
        pushes_updates=True,
        typical_seconds={m.id: m.typical_seconds for m in hosted},
    )


def load_client_id(path: Path) -> str:
    """The client id this bot's websocket uses, kept in DATA_DIR: ComfyUI sends a prompt's progress
    only to the client that queued it, so a restarted bot must come back as the same client."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = ""
    if re.fullmatch(r"[0-9a-f]{32}", value):
        return value
    value = uuid.uuid4().hex
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n", encoding="utf-8")
    return value


@dataclass
class _Live:
    """What the websocket said about one prompt (display only: the history decides)."""

    running: bool = False
    progress: float | None = None
    finished: bool = False
    checked_at: float = 0.0
    """When the history was last asked about it (monotonic)."""


class ComfyUIProvider:
    """ComfyUI over HTTP + one websocket. Resumable: the prompt id is all a restarted bot needs."""

    name = "comfyui"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        workflow: Path,
        hosts: Mapping[str, Host],
        specs: Mapping[str, ModelSpec],
        client_id: str | None = None,
        token: str = "",
        retry_base_delay: float = 0.5,
        max_retries: int = 4,
        ws_retry_delay: float = 1.0,
    ) -> None:
        self._session = session
        self._http = HttpClient(
            session,
            provider=self.name,
            secrets=(token,),
            base_delay=retry_base_delay,
            max_retries=max_retries,
            base_url=base_url,  # the operator's own server: its /view may be on a private address
        )
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._hosts = dict(hosts)
        self.client_id = client_id or uuid.uuid4().hex
        self.capabilities = comfyui_capabilities(hosts, specs)
        self._default, self._workflows = load_workflows(workflow, hosts)
        self._ws_retry_delay = ws_retry_delay
        self._ws_task: asyncio.Task[None] | None = None
        self._ws_live = False
        self._wakers: list[Callable[[str], None]] = []
        self._live: OrderedDict[str, _Live] = OrderedDict()

    # --- requests -------------------------------------------------------------------------------

    def _workflow(self, host: Host, with_image: bool) -> Workflow:
        return workflow_for(host, with_image, self._default, self._workflows)

    def validate(self, request: VideoRequest) -> None:
        self.capabilities.validate(request, "ComfyUI")
        workflow = self._workflow(self._hosts[request.model], request.image is not None)
        if request.image is not None and "image" not in workflow.placeholders:
            raise InvalidRequest(f"{request.model} cannot start from an image on this bot; leave out the image.")
        if request.image is None and "image" in workflow.placeholders:
            raise InvalidRequest(f"{request.model} needs a reference image on this bot; attach one.")

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)
        self._ensure_ws()
        host = self._hosts[request.model]
        image = await self._upload(request.image) if request.image is not None else None
        values = placeholder_values(request, host, seed=secrets.randbelow(2**32), image=image)
        graph = fill_workflow(self._workflow(host, request.image is not None).graph, values)
        resp = await self._http.create(
            "POST",
            self._url("/prompt"),
            headers=self._headers,
            json_body={"prompt": graph, "client_id": self.client_id},
            ok_statuses=(400,),
        )
        body = resp.body if isinstance(resp.body, Mapping) else {}
        if resp.status == 400:
            summary = redact(_node_errors(body), self._http.secrets)
            log.error("comfyui refused the workflow for %s: %s", request.model, summary)
            raise WorkflowRejected(f"comfyui: workflow refused: {summary}", status=400)
        prompt_id = body.get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id or len(prompt_id) > 200:
            raise GenerationFailed(f"comfyui: /prompt answered {resp.status} without a prompt_id: {sorted(body)}")
        if body.get("node_errors"):
            log.warning("comfyui queued %s with node errors: %s", prompt_id, _node_errors(body))
        self._remember(prompt_id)
        log.info("comfyui queued %s as prompt %s (number %s)", request.model, prompt_id, body.get("number"))
        return prompt_id

    async def _upload(self, image: ReferenceImage) -> str:
        """Put the reference into ComfyUI's input folder; the name a LoadImage node takes."""
        filename = f"sora-bot-{uuid.uuid4().hex}{Path(image.filename).suffix}"

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("image", image.data, filename=filename, content_type=image.content_type)
            data.add_field("type", "input")
            data.add_field("overwrite", "false")
            return data

        resp = await self._http.request("POST", self._url("/upload/image"), headers=self._headers, data=form)
        body = resp.body if isinstance(resp.body, Mapping) else {}
        name, subfolder = body.get("name"), body.get("subfolder") or ""
        if not isinstance(name, str) or not name or not isinstance(subfolder, str):
            raise ProviderUnavailable(f"comfyui: /upload/image answered without a name: {sorted(body)}")
        return f"{subfolder}/{name}" if subfolder else name

    def subscribe(self, wake: Callable[[str], None]) -> None:
        """``wake(prompt_id)`` is called when the websocket says a prompt finished."""
        self._wakers.append(wake)

    async def status(self, job_id: str) -> JobStatus:
        self._ensure_ws()
        live = self._live.get(job_id) or self._remember(job_id)  # a resumed job: listen for it too
        now = time.monotonic()
        if self._ws_live and live.running and not live.finished and now - live.checked_at < HISTORY_EVERY:
            # The open websocket follows it: no request. It says when the prompt ends (and wakes the job).
            return JobStatus(JobState.RUNNING, progress=live.progress)
        live.checked_at = now
        done = await self._history(job_id)
        if done is not None:
            return done
        if live.running and not live.finished:
            return JobStatus(JobState.RUNNING, progress=live.progress)
        # The websocket knows nothing (yet, or since a reconnect): ask the queue.
        queue = await self._queue()
        if job_id in queue.running:
            return JobStatus(JobState.RUNNING, progress=live.progress)
        if job_id in queue.pending:
            return JobStatus(JobState.QUEUED, queue_position=queue.pending.index(job_id) + 1)
        # Finished between the two requests, or the server lost it (a ComfyUI restart empties both).
        done = await self._history(job_id)
        if done is not None:
            return done
        return JobStatus(
            JobState.FAILED,
            error=GenerationFailed(f"comfyui: prompt {job_id} is neither queued, running nor in the history"),
        )

    async def _history(self, job_id: str) -> JobStatus | None:
        """The finished prompt's status from ``/history/{id}``; None while it is not finished."""
        resp = await self._http.request("GET", self._url(f"/history/{quote(job_id, safe='')}"), headers=self._headers)
        body = resp.body if isinstance(resp.body, Mapping) else {}
        entry = body.get(job_id)
        if not isinstance(entry, Mapping):
            return None
        self._forget(job_id)
        raw_status = entry.get("status")
        status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
        if status.get("status_str") == "error":
            return JobStatus(JobState.FAILED, error=GenerationFailed(f"comfyui: prompt {job_id}: {_failure(status)}"))
        output = find_output(entry.get("outputs"))
        if output is None:
            keys = sorted({k for v in (entry.get("outputs") or {}).values() if isinstance(v, Mapping) for k in v})
            return JobStatus(
                JobState.FAILED,
                error=GenerationFailed(f"comfyui: prompt {job_id} saved no video or animation (output keys {keys})"),
            )
        return JobStatus(JobState.SUCCEEDED, progress=100.0, result_url=self._url("/view?" + urlencode(output)))

    async def _queue(self) -> _Queue:
        resp = await self._http.request("GET", self._url("/queue"), headers=self._headers)
        body = resp.body if isinstance(resp.body, Mapping) else {}
        return _Queue(running=_queue_ids(body.get("queue_running")), pending=_queue_ids(body.get("queue_pending")))

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        url = status.result_url
        if not url:
            url = (await self.status(job_id)).result_url
        if not url or not url.startswith(self._url("/view?")):
            raise GenerationFailed(f"comfyui: prompt {job_id} has no result to fetch")
        source = dest.with_name(dest.name + ".source")
        try:
            await self._http.download(url, source, max_bytes=max_bytes, headers=self._headers)
            await to_mp4_async(source, dest)  # in a thread: never on the event loop
        finally:
            await asyncio.to_thread(source.unlink, missing_ok=True)
        return dest

    async def cancel(self, job_id: str) -> bool:
        """Take it out of the queue, or stop it when it is the one running (``prompt_id`` in the body
        makes newer ComfyUI builds interrupt only that prompt). False once it has finished."""
        queue = await self._queue()
        if job_id in queue.pending:
            await self._http.request("POST", self._url("/queue"), headers=self._headers, json_body={"delete": [job_id]})
        elif job_id in queue.running:
            await self._http.request(
                "POST", self._url("/interrupt"), headers=self._headers, json_body={"prompt_id": job_id}
            )
        else:
            return False
        self._forget(job_id)
        log.info("comfyui: cancelled prompt %s (%s)", job_id, "running" if job_id in queue.running else "queued")
        return True

    async def aclose(self) -> None:
        if self._ws_task is not None:
            self._ws_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ws_task
            self._ws_task = None

    def _url(self, path: str) -> str:
        return self._base + path

    # --- the websocket --------------------------------------------------------------------------

    def _ensure_ws(self) -> None:
        if self._ws_task is None or self._ws_task.done():
            self._ws_task = asyncio.create_task(self._ws_loop(), name="comfyui-ws")

    async def _ws_loop(self) -> None:
        """One websocket for every job, reconnecting with a growing pause; it only feeds progress."""
        url = re.sub(r"^http", "ws", self._base) + "/ws?" + urlencode({"clientId": self.client_id})
        delay = self._ws_retry_delay
        while True:
            try:
                async with self._session.ws_connect(url, headers=self._headers, heartbeat=30) as ws:
                    self._ws_live = True
                    delay = self._ws_retry_delay
                    async for message in ws:
                        if message.type is aiohttp.WSMsgType.TEXT:
                            self._on_message(message.data)
                        elif message.type is aiohttp.WSMsgType.ERROR:
                            break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("comfyui websocket: %s: %s; reconnecting in %.0fs", type(exc).__name__, exc, delay)
            except Exception:
                log.exception("comfyui websocket failed; reconnecting in %.0fs", delay)
            finally:
                self._ws_live = False
            # Messages may have been missed: what we knew is no longer known (the queue is asked instead).
            for live in self._live.values():
                live.running = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _on_message(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, Mapping) or not isinstance(message.get("data"), Mapping):
            return
        kind, data = message.get("type"), message["data"]
        live = self._live.get(str(data.get("prompt_id")))
        if live is None:
            return  # not one of ours, or already finished
        if kind in ("execution_start", "execution_cached", "executing"):
            live.running = True
            if kind == "executing" and data.get("node") is None:
                live.finished = True  # older builds end with {node: null}
        elif kind == "progress":
            value, maximum = data.get("value"), data.get("max")
            if isinstance(value, int | float) and isinstance(maximum, int | float) and maximum > 0:
                live.running = True
                share = min(_PROGRESS_CAP, 100.0 * value / maximum)
                live.progress = max(live.progress or 0.0, share)
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            live.finished = True
        if live.finished:
            for wake in self._wakers:
                wake(str(data.get("prompt_id")))

    def _remember(self, prompt_id: str) -> _Live:
        live = self._live[prompt_id] = _Live()
        while len(self._live) > _LIVE_CACHE:
            self._live.popitem(last=False)
        return live

    def _forget(self, prompt_id: str) -> None:
        self._live.pop(prompt_id, None)


@dataclass(frozen=True)
class _Queue:
    running: list[str]
    pending: list[str]
    """In the order ComfyUI will run them."""


def _queue_ids(items: Any) -> list[str]:
    """Prompt ids of ``/queue`` entries (``[number, prompt_id, prompt, extra, outputs]``), by number."""
    entries = [
        (item[0], item[1])
        for item in items or []
        if isinstance(item, list) and len(item) >= 2 and isinstance(item[0], int | float) and isinstance(item[1], str)
    ]
    return [prompt_id for _, prompt_id in sorted(entries)]


def _node_errors(body: Mapping[str, Any]) -> str:
    """``/prompt``'s 400 body as one operator line: the error, then each node's problems."""
    parts = [error_message_from_body(body)] if body.get("error") else []
    node_errors = body.get("node_errors")
    if isinstance(node_errors, Mapping):
        for node_id, info in node_errors.items():
            if not isinstance(info, Mapping):
                continue
            problems = [
                f"{e.get('message', '')}: {e.get('details', '')}".strip(": ")
                for e in info.get("errors") or []
                if isinstance(e, Mapping)
            ]
            parts.append(f"node {node_id} ({info.get('class_type', '?')}): {'; '.join(problems) or 'invalid'}")
    return " | ".join(parts)[:2000] or "no reason given"


def _failure(status: Mapping[str, Any]) -> str:
    """Why a prompt ended in error, from its history messages (``execution_error`` / ``_interrupted``)."""
    for item in status.get("messages") or []:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], Mapping)):
            continue
        kind, data = item
        if kind == "execution_error":
            where = f"node {data.get('node_id')} ({data.get('node_type')})"
            return f"{where}: {data.get('exception_type', 'error')}: {data.get('exception_message', '')}"[:1000]
        if kind == "execution_interrupted":
            return "interrupted"
    return "failed without a reason"
