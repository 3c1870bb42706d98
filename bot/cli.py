"""``python -m bot generate``: the whole job pipeline without Discord, progress in the terminal."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import aiohttp

from bot.config import PROVIDERS, Settings
from bot.domain import VideoRequest
from bot.errors import BotError
from bot.jobs.model import Job, State
from bot.jobs.notifier import Delivery
from bot.jobs.service import NewJob
from bot.pipeline import open_pipeline

BAR_WIDTH = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what the video should show")
    parser.add_argument("--provider", choices=PROVIDERS, help="default: PROVIDER from the environment / .env")
    parser.add_argument("--model", help="catalogue id, e.g. veo-3.1-fast (default: DEFAULT_MODEL; see `models`)")
    parser.add_argument("--seconds", type=int, help="clip length (default: the model's shortest)")
    parser.add_argument("--size", help="WxH, e.g. 1280x720 (default: the model's first size)")
    parser.add_argument(
        "--audio", action=argparse.BooleanOptionalAction, default=None, help="sound on/off (default: the model's)"
    )
    parser.add_argument("--image", type=Path, help="reference image (fitted to --size)")
    parser.add_argument("-o", "--output", type=Path, default=Path("sora.mp4"), help="where to write the MP4")


class TerminalNotifier:
    """Prints one updating progress line; 'delivers' by moving the file to the output path."""

    def __init__(self, output: Path, stream: TextIO = sys.stderr) -> None:
        self.output = output
        self.stream = stream
        self.started = time.monotonic()
        self.final: Job | None = None
        self.finished = asyncio.Event()

    async def job_changed(self, job: Job) -> None:
        elapsed = time.monotonic() - self.started
        if job.state.terminal:
            self.final = job
            self.finished.set()
        if job.progress is not None and job.state is State.RUNNING:
            filled = int(BAR_WIDTH * job.progress / 100)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            line = f"{job.state:<11} [{bar}] {job.progress:5.1f}%  {elapsed:5.0f}s"
        else:
            line = f"{job.state:<11} {elapsed:5.0f}s"
        end = "\n" if job.state.terminal or not self.stream.isatty() else ""
        self.stream.write(f"\r{line:<70}{end}")
        self.stream.flush()

    async def deliver(self, job: Job, video: Path) -> Delivery:
        await asyncio.to_thread(_move, video, self.output)
        return Delivery(url=str(self.output))


def _move(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


async def generate(args: argparse.Namespace, settings: Settings) -> int:
    if args.provider:
        settings = dataclasses.replace(settings, provider=args.provider)
    with tempfile.TemporaryDirectory(prefix="sora-cli-") as tmp:
        # The CLI charges no credits and keeps its bookkeeping out of the bot's database.
        settings = dataclasses.replace(
            settings, data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/cli.db", max_running_jobs_per_user=1
        )
        notifier = TerminalNotifier(args.output)
        async with aiohttp.ClientSession() as session, open_pipeline(settings, session, notifier, charge=False) as p:
            try:
                model = args.model or p.router.default()
                spec = p.router.spec(model)
                size = args.size or spec.sizes[0]
                seconds = args.seconds if args.seconds is not None else spec.durations[0]
                image = None
                if args.image:
                    data = await asyncio.to_thread(args.image.read_bytes)
                    image = await p.service.fit_reference(data, size)
                request = VideoRequest(args.prompt, seconds, size, model, image, audio=args.audio)
                job = await p.service.submit(NewJob(request, user_id="cli"))
            except BotError as exc:
                print(f"error: {exc.user_message}", file=sys.stderr)
                return 2
            print(f"job {job.id}: {job.provider}, {model}, {size}, {seconds} s", file=sys.stderr)
            await notifier.finished.wait()
    final = notifier.final
    assert final is not None  # noqa: S101 - set before finished
    if final.state is State.SUCCEEDED:
        print(f"wrote {args.output}")
        return 0
    print(f"error: {final.error_message}", file=sys.stderr)
    return 1


def print_models(settings: Settings, stream: TextIO = sys.stdout) -> int:
    """``python -m bot models``: the catalogue, and which models the configured providers can run."""
    from bot.catalogue import Router, load_catalogue

    catalogue = load_catalogue(settings.models_file, settings.enabled_models)
    router = Router(catalogue, settings.providers, default_model=settings.default_model)
    default = router.default()
    stream.write(f"providers configured: {', '.join(settings.providers)}\n\n")
    for spec in catalogue.models.values():
        hosts = [h.provider for h in router.hosts(spec.id)]
        mark = "*" if spec.id == default else " "
        where = f"runs on {', '.join(hosts)}" if hosts else "not available (no configured provider hosts it)"
        listed = ", ".join(h.provider for h in spec.hosts) or "-"
        stream.write(
            f"{mark} {spec.id:<14} {spec.label}\n"
            f"    durations {'/'.join(map(str, spec.durations))} s; sizes {', '.join(spec.sizes)}; "
            f"audio {'yes' if spec.audio else 'no'}; image {'yes' if spec.image else 'no'}\n"
            f"    hosts: {listed}; {where}\n"
        )
    stream.write("\n* = the default model\n")
    return 0
