"""The playground's HTTP side, added to the bot's aiohttp app (bot/web/server.py):

* ``GET /`` the channel page for ``?member=``; ``GET /events?member=`` its live updates (server-sent events);
* ``POST /sora`` the form; ``POST /jobs/{id}/{retry|remix|continue|delete|cancel}`` the buttons —
  both answer ``{"ok": bool, "html": reply}``, the reply being what Discord would show only to the clicker;
* ``GET /videos/{id}.mp4`` a delivered video (with Range requests, so the page can seek);
* ``GET /static/playground.{js,css}``.

Every field is untrusted: members, models, numbers and images are checked before anything else runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web

from bot.config import is_loopback
from bot.errors import BotError, InvalidRequest
from bot.jobs.model import Job
from bot.playground import views
from bot.playground.actions import Playground, Upload
from bot.playground.members import GUILD_ID, Member, member
from bot.playground.notifier import video_path

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
MAX_FIELD_BYTES = 64 * 1024
STATIC = {"playground.js": "text/javascript", "playground.css": "text/css"}
ACTIONS = ("retry", "remix", "continue", "delete", "cancel")
# The page loads nothing from anywhere else (and could not, if a prompt smuggled markup in).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SORRY = "Something went wrong on our side. Nothing was charged; please try again."


class PlaygroundRoutes:
    def __init__(self, playground: Playground, *, provider: str, max_image_bytes: int, public: bool = False) -> None:
        self.playground = playground
        self.provider = provider
        self.max_image_bytes = max_image_bytes
        self.public = public
        """PLAYGROUND_PUBLIC=1: any Host header is served (else only names of this machine)."""

    def install(self, app: web.Application) -> None:
        guard = (lambda handler: handler) if self.public else _local_host_only
        app.router.add_get("/", guard(self._page))
        app.router.add_get("/events", guard(self._events))
        app.router.add_post("/sora", guard(self._sora))
        app.router.add_post(r"/jobs/{job_id:\d{1,12}}/{action}", guard(self._button))
        app.router.add_get(r"/videos/{job_id:\d{1,12}}.mp4", guard(self._video))
        app.router.add_get("/static/{name}", guard(self._static))
        app.on_response_prepare.append(_secure)

    # --- pages --------------------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        who = member(request.query.get("member"))
        p = self.playground
        router = p.pipeline.router
        html = views.page(
            who, router.available(), router.default(), await p.channel(), await p.member_state(who), self.provider
        )
        return web.Response(text=html, content_type="text/html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        text = resources.files("bot.playground").joinpath("static", name).read_text(encoding="utf-8")
        return web.Response(text=text, content_type=STATIC[name])

    async def _video(self, request: web.Request) -> web.StreamResponse:
        path = video_path(self.playground.videos_dir, int(request.match_info["job_id"]))
        if not await asyncio.to_thread(path.is_file):
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        who = member(request.query.get("member"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue = self.playground.hub.subscribe()
        try:
            while True:
                try:
                    job = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if job is None:  # shutting down
                    break
                if job.guild_id != GUILD_ID:
                    continue
                await _send(response, "job", views.card(job, who))
                if job.user_id == who.id:
                    await _send(response, "panel", views.panel(who, await self.playground.member_state(who)))
        except (ConnectionResetError, BrokenPipeError):
            log.debug("playground page closed its event stream")
        finally:
            self.playground.hub.unsubscribe(queue)
        return response

    # --- the form and the buttons -------------------------------------------------------------------

    async def _sora(self, request: web.Request) -> web.Response:
        async def run() -> str:
            fields, upload = await self._read_form(request)
            who = member(fields.get("member"))
            req = self.playground.request_for(
                fields.get("prompt", ""),
                fields.get("model") or None,
                _number(fields.get("duration"), "duration"),
                fields.get("size") or None,
                _audio(fields.get("audio")),
            )
            job = await self.playground.start(who, req, upload=upload)
            return f"Your video #{job.id} is queued ({job.model}, {job.cost} credits reserved)."

        return await _answer(request, run)

    async def _button(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        job_id = int(request.match_info["job_id"])
        if action not in ACTIONS:
            raise web.HTTPNotFound()

        async def run() -> str:
            fields, _ = await self._read_form(request)
            who = member(fields.get("member"))
            return await self._act(who, action, job_id, fields)

        return await _answer(request, run)

    async def _act(self, who: Member, action: str, job_id: int, fields: dict[str, str]) -> str:
        p = self.playground
        if action == "delete":
            await p.delete(who, job_id)
            return f"Deleted video #{job_id}."
        if action == "cancel":
            job = await p.cancel(who, job_id)
            return f"Cancelled video #{job.id}; {job.cost} credits were refunded."
        new: Job
        if action == "retry":
            new = await p.retry(who, job_id)
        else:
            prompt = fields.get("prompt", "")
            seconds = _number(fields.get("duration"), "duration")
            size = fields.get("size") or None
            follow = p.remix if action == "remix" else p.continue_
            new = await follow(who, job_id, prompt, seconds, size)
        return f"Your video #{new.id} ({action} of #{job_id}) is queued ({new.cost} credits reserved)."

    async def _read_form(self, request: web.Request) -> tuple[dict[str, str], Upload | None]:
        """Text fields and at most one image, each bounded while it streams in."""
        if not request.content_type.startswith("multipart/"):
            raise InvalidRequest("The form could not be read; please reload the page.")
        fields: dict[str, str] = {}
        upload: Upload | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            if part.name == "image":
                data = await _read_part(part, self.max_image_bytes + 1)
                if data:
                    # Too big is refused by the same check as a Discord attachment (check_declared).
                    upload = Upload(data, part.headers.get("Content-Type"), part.filename)
                continue
            raw = await _read_part(part, MAX_FIELD_BYTES)
            fields[part.name] = raw.decode("utf-8", errors="replace")
        return fields, upload


async def _answer(request: web.Request, run: Callable[[], Awaitable[str]]) -> web.Response:
    """Run a form or button action; refusals become the polite reply shown in the page."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return web.json_response({"ok": False, "html": views.reply("Requests from other sites are refused.", True)})
    try:
        text = await run()
    except BotError as exc:
        log.info("playground refused %s: %s", request.path, exc.detail)
        return web.json_response({"ok": False, "html": views.reply(exc.user_message, True)})
    except Exception:
        log.exception("playground %s failed", request.path)
        return web.json_response({"ok": False, "html": views.reply(SORRY, True)})
    return web.json_response({"ok": True, "html": views.reply(text, False)})


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > limit:
            # Keep only as much as proves it is too big; the rest is drained unread.
            chunks.append(chunk[: max(0, limit - (size - len(chunk)))])
            while await part.read_chunk():
                pass
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _number(raw: str | None, name: str) -> int | None:
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"The {name} must be a whole number of seconds.") from None


def _audio(raw: str | None) -> bool | None:
    return None if not raw else raw == "1"


async def _send(response: web.StreamResponse, event: str, data: str) -> None:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    await response.write(f"event: {event}\n{lines}\n".encode())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _local_host_only(handler: Handler) -> Handler:
    """Refuse a request whose Host is not a name of this machine: a hostile web page could otherwise
    reach the loopback playground through DNS rebinding (its own name resolving to 127.0.0.1)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not is_loopback(urlsplit(f"//{request.host}").hostname or ""):
            log.warning("playground: refused a request for host %r", request.host)
            return web.Response(status=421, text="The playground answers only on this machine's own address.")
        return await handler(request)

    return guarded


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
