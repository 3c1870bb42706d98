"""Start the playground on its own (no Discord): the pipeline, the web server, one line with the address.
Beside the Discord bot (PLAYGROUND=1), bot/client.py installs the same routes on the bot's pipeline."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bot.config import Settings
from bot.moderation.policy import Defaults
from bot.pipeline import Pipeline, open_pipeline
from bot.playground.actions import Playground
from bot.playground.hub import JobHub
from bot.playground.notifier import PlaygroundNotifier
from bot.playground.routes import PlaygroundRoutes
from bot.web.server import WebServer

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080


def playground_settings(settings: Settings) -> Settings:
    """On its own, the playground keeps its jobs and credits in a database of its own
    (``DATA_DIR/playground.db``): its runner must never resume, or deliver, the Discord bot's jobs."""
    return dataclasses.replace(settings, database_url=f"sqlite:///{settings.data_dir / 'playground.db'}")


def build(settings: Settings, pipeline: Pipeline, hub: JobHub) -> PlaygroundRoutes:
    """The playground's routes on ``pipeline`` (standalone, or beside the Discord bot with PLAYGROUND=1)."""
    defaults = Defaults(
        cooldown_seconds=settings.cooldown_seconds,
        max_jobs_per_user=settings.max_pending_jobs_per_user,
        daily_allowance=settings.daily_credits,
    )
    playground = Playground(
        pipeline, hub, defaults, videos_dir=videos_dir(settings), max_image_bytes=settings.max_image_bytes
    )
    return PlaygroundRoutes(
        playground,
        provider=", ".join(pipeline.providers),
        max_image_bytes=settings.max_image_bytes,
        public=settings.playground_public,
    )


def videos_dir(settings: Settings) -> Path:
    return settings.data_dir / "playground"


def address(web: WebServer) -> str:
    host = f"[{web.host}]" if ":" in web.host else web.host
    return f"http://{host}:{web.port}"


def run_playground(settings: Settings, *, reason: str) -> int:
    asyncio.run(
        serve(playground_settings(settings), announce=lambda url: print(f"Playground: {url} ({reason})", flush=True))
    )
    return 0


async def serve(settings: Settings, *, announce: Callable[[str], None]) -> None:
    hub = JobHub()
    notifier = PlaygroundNotifier(hub, videos_dir(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession() as session, open_pipeline(settings, session, notifier) as pipeline:

        async def database_ok() -> bool:
            await pipeline.repo.ping()
            return True

        web = WebServer(
            host=settings.http_host,
            port=settings.http_port or DEFAULT_PORT,
            metrics=pipeline.metrics,
            checks={"database": database_ok},
            callbacks=pipeline.callbacks,
            wake=pipeline.runner.wake,
        )
        build(settings, pipeline, hub).install(web.app)
        await web.start()
        announce(address(web))
        try:
            await stop.wait()
        finally:
            log.info("playground stopping (unfinished jobs are refunded or resumed on the next start)")
            hub.close()  # ends the pages' event streams so the server can stop
            await web.stop()
