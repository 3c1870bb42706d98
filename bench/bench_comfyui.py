"""Benchmark: ComfyUI status requests per job and completion-to-post delay, through the real pipeline.

The real job runner, ComfyUIProvider and media conversion against the fake ComfyUI (tests/fakes), with
the shipped example workflow (it saves an animated WebP, converted to MP4 before "posting"). Jobs run
one after another, as on one GPU, each for a lognormal time (median ``--median`` s, sigma 0.25); the
poller is told that median (as ``TYPICAL_JOB_SECONDS`` would). Two set-ups:

* websocket: progress and completion come over ``/ws`` (the runner is woken when a prompt ends);
* polling only: ``/ws`` refused (a proxy without websockets), so every status call asks the history.

"Status requests" counts ``GET /history/{id}`` and ``GET /queue``; "completion to post" is from the
fake writing the history entry to the notifier receiving the MP4 (download + conversion included).
Real time: about ``2 × jobs × median`` seconds. Run: ``python -m bench.bench_comfyui``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.config import Settings
from bot.domain import VideoRequest
from bot.jobs.model import Job, State
from bot.jobs.notifier import Delivery
from bot.jobs.service import NewJob
from bot.pipeline import open_pipeline
from tests.fakes.comfyui import FakeComfyUI

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "comfyui"


class Recorder:
    """A notifier that notes when each job's video arrives."""

    def __init__(self) -> None:
        self.posted: dict[str, float] = {}
        self.done: dict[int, asyncio.Event] = {}
        self.final: dict[int, Job] = {}

    async def job_changed(self, job: Job) -> None:
        if job.state.terminal:
            self.final[job.id] = job
            self.done.setdefault(job.id, asyncio.Event()).set()

    async def deliver(self, job: Job, video: Path) -> Delivery:
        self.posted[str(job.provider_job_id)] = time.monotonic()
        return Delivery(url=str(video))


@dataclass(frozen=True)
class Result:
    requests: list[float]
    delays: list[float]


async def run_setup(durations: list[float], median: float, *, websocket: bool) -> Result:
    fake = FakeComfyUI(steps=20, websocket=websocket)
    recorder = Recorder()
    async with fake, aiohttp.ClientSession() as session:
        with tempfile.TemporaryDirectory(prefix="bench-comfyui-") as tmp:
            settings = Settings(
                provider="comfyui",
                comfyui_url=fake.base_url,
                comfyui_workflow=EXAMPLE / "ltxv-text-to-video.json",
                models_file=EXAMPLE / "models.toml",
                data_dir=Path(tmp),
                database_url=f"sqlite:///{tmp}/bench.db",
                typical_job_seconds=median,
            )
            async with open_pipeline(settings, session, recorder, charge=False) as pipeline:
                for seconds in durations:
                    fake.run_seconds = seconds
                    request = VideoRequest("a fox runs through snow", 2, "768x512", "ltx-video")
                    job = await pipeline.service.submit(NewJob(request, user_id="bench"))
                    await recorder.done.setdefault(job.id, asyncio.Event()).wait()
                    if recorder.final[job.id].state is not State.SUCCEEDED:
                        raise SystemExit(f"job {job.id} ended {recorder.final[job.id].state}")
    requests: list[float] = []
    delays: list[float] = []
    for prompt_id, finished in fake.finished_at.items():
        history = len(fake.requests_to(f"/history/{prompt_id}", "GET"))
        requests.append(history)
        delays.append(recorder.posted[prompt_id] - finished)
    queue = len(fake.requests_to("/queue", "GET"))
    # /queue is not per prompt: share it out evenly (it is asked only while a prompt is not followed).
    return Result([r + queue / len(requests) for r in requests], delays)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(jobs: int, median: float, seed: int) -> str:
    rng = random.Random(seed)
    durations = [rng.lognormvariate(math.log(median), 0.25) for _ in range(jobs)]
    lines = [
        f"ComfyUI, {jobs} jobs one after another, run time lognormal (median {median:g} s, sigma 0.25), "
        "real pipeline and fake server.",
        "",
        "| set-up | status requests/job mean | max | completion → post mean (s) | p95 (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, websocket in (("websocket (progress + wake)", True), ("polling only (no websocket)", False)):
        result = await run_setup(durations, median, websocket=websocket)
        lines.append(
            f"| {name} | {statistics.fmean(result.requests):.1f} | {max(result.requests):.0f} | "
            f"{statistics.fmean(result.delays):.2f} | {percentile(result.delays, 0.95):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--median", type=float, default=3.0, help="median run time of a job, seconds")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    print(asyncio.run(run(args.jobs, args.median, args.seed)))


if __name__ == "__main__":
    main()
